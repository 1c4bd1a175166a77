//! A seeded system-call fuzzer. A *fuzzing thread* issues random system
//! calls (valid and invalid numbers, random message-info words, message
//! registers biased towards interesting values, capability pointers mostly
//! naming populated slots) from a CSpace of its own that holds nothing but
//! fuzz targets: an untyped chunk, CNodes (its own CSpace among them),
//! endpoints, notifications, frames, a VSpace, a GuestSpace, a Vcpu, a
//! victim thread and an I/O
//! port (0x80 only). Its own TCB, VSpace and IPC buffer, and the Machine
//! capability, are out of its reach in the driver's CSpace.
//!
//! The driver (the main thread) keeps the original of every target and, each
//! [`REFILL_EVERY`] calls, while the fuzzing thread waits, empties the fuzz
//! CSpace and fills it again with fresh copies, so the fuzzer keeps finding
//! live targets. It watches progress and the fuzzing thread's faults; at the
//! end it checks the kernel's invariants, revokes all the memory it was
//! given, and checks that the live object count is back to its starting
//! value. It prints `fuzz: N calls, invariants ok` and powers off with 0, or
//! a `fuzz: FAILED: ...` line and powers off with 1.
//!
//! Blocking calls never wait for a partner nobody provides: a blocking
//! `Send`/`Recv`/`Call`/`ReplyRecv`/`Wait` is first probed with its
//! non-blocking twin; if that would block, the blocking call is not made
//! (`Wait` gets a short timeout instead). When the probe fails with an
//! error, the blocking call is made too and must fail the same way.
//!
//! The seed comes from a `seed=N` word on the command line (decimal or
//! `0x` hex), the call count from `calls=N` (default 100 000). A run is a
//! function of the seed: the driver's refills happen at fixed call counts.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use tarn_rt::abi::boot::BootInfo;
use tarn_rt::abi::invocation::Invocation;
use tarn_rt::abi::{CPtr, Error, MessageInfo, ObjectType, Rights, Syscall};
use tarn_rt::invoke::{self, Registers, TcbConfig};
use tarn_rt::layout::{self, slot};
use tarn_rt::{ipc_buffer, println, syscall, Resources, ThreadOptions};

tarn_rt::entry!(main);

/// Default seed when the command line has none.
const DEFAULT_SEED: u64 = 0x5EED_F00D_2024_0001;
/// Default number of calls.
const DEFAULT_CALLS: u64 = 100_000;
/// Calls between two refills of the fuzz CSpace.
const REFILL_EVERY: u64 = 2_000;
/// log2 slots of the fuzzing thread's CSpace.
const FUZZ_CNODE_BITS: u64 = 8;
/// Slots of the fuzz CSpace.
const FUZZ_SLOTS: u64 = 1 << FUZZ_CNODE_BITS;
/// Slots `1..POPULATED_END` of the fuzz CSpace hold the targets.
const POPULATED_END: u64 = 24;
/// Where the fuzzing thread's received capabilities go.
const RECEIVE_WINDOW: u64 = 40;
/// Nanoseconds a `Wait` that would block waits instead.
const SHORT_TIMEOUT_NS: u64 = 2_000;
/// log2 bytes of the untyped chunk the fuzzer retypes from (fresh each refill).
const CHUNK_BITS: u64 = 18;

/// Slots of the fuzz CSpace after each refill.
mod target {
    pub const SELF_CNODE: u64 = 1;
    pub const UNTYPED_CHUNK: u64 = 2;
    pub const SUB_CNODE: u64 = 3;
    pub const ENDPOINT: u64 = 4;
    pub const ENDPOINT_BADGED: u64 = 5;
    pub const ENDPOINT_NO_GRANT: u64 = 6;
    pub const NOTIFICATION: u64 = 7;
    pub const NOTIFICATION_BADGED: u64 = 8;
    pub const NOTIFICATION_READ: u64 = 9;
    pub const FRAMES: u64 = 10; // 10..14
    pub const FRAME_COUNT: u64 = 4;
    pub const LARGE_FRAME: u64 = 14;
    pub const VSPACE: u64 = 15;
    pub const VICTIM: u64 = 16;
    pub const IO_PORT: u64 = 17;
    pub const SPARE_UNTYPED: u64 = 18;
    pub const SECOND_VSPACE: u64 = 19;
    pub const SCHEDULER: u64 = 20;
    pub const CPU: u64 = 21;
    pub const GUEST_SPACE: u64 = 22;
    pub const VCPU: u64 = 23;
}

/// What the fuzzing thread and the driver share.
struct Progress {
    calls: AtomicU64,
    done: AtomicU64,
    /// Set by the fuzzing thread when it wants a refill; cleared by the driver.
    refill: AtomicU64,
    mismatches: AtomicU64,
    bad_codes: AtomicU64,
    last: [AtomicU64; 4],
    /// How often each error code came back (index 0 = success).
    results: [AtomicU64; 23],
    /// Successful invocations per label (index = label, up to 127).
    invocations: [AtomicU64; 128],
}

impl Progress {
    fn new() -> Arc<Self> {
        Arc::new(Progress {
            calls: AtomicU64::new(0),
            done: AtomicU64::new(0),
            refill: AtomicU64::new(0),
            mismatches: AtomicU64::new(0),
            bad_codes: AtomicU64::new(0),
            last: core::array::from_fn(|_| AtomicU64::new(0)),
            results: core::array::from_fn(|_| AtomicU64::new(0)),
            invocations: core::array::from_fn(|_| AtomicU64::new(0)),
        })
    }
}

/// xorshift64* (Vigna): small, fast, good enough to pick fuzz inputs.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(if seed == 0 { DEFAULT_SEED } else { seed })
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn option(cmdline: &str, key: &str) -> Option<u64> {
    cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix(key).and_then(parse_number))
}

fn main(arg: u64) {
    let Some(info) = tarn_rt::start_info(arg) else {
        println!("fuzz: FAILED: no start page at {arg:#x}");
        power_off(1);
    };
    let seed = option(info.cmdline(), "seed=").unwrap_or(DEFAULT_SEED);
    let calls = option(info.cmdline(), "calls=").unwrap_or(DEFAULT_CALLS);
    println!(
        "fuzz: seed {seed} ({seed:#x}), {calls} calls, {} cpus",
        info.cpu_count
    );
    match run(info, seed, calls) {
        Ok(()) => {
            println!("fuzz: {calls} calls, invariants ok");
            power_off(0);
        }
        Err(why) => {
            println!("fuzz: FAILED: {why}");
            power_off(1);
        }
    }
}

fn check<T>(result: Result<T, Error>, what: &str) -> Result<T, String> {
    result.map_err(|error| format!("{what}: {error:?}"))
}

/// The originals of the fuzz targets, in the driver's CSpace.
struct Reserve {
    /// The fuzz CSpace.
    cnode: CPtr,
    sub_cnode: CPtr,
    endpoint: CPtr,
    notification: CPtr,
    frames: CPtr,
    large_frame: CPtr,
    vspace: CPtr,
    second_vspace: CPtr,
    victim: CPtr,
    io_port: CPtr,
    /// A Scheduler, and a Cpu capability for the victim's CPU (0 = none given).
    scheduler: CPtr,
    cpu: CPtr,
    /// Untyped memory the fuzzer's chunks come from (revoked at each refill).
    arena: CPtr,
    /// The victim's CPU.
    victim_cpu: u64,
    /// A guest-physical address space and a virtual CPU.
    guest_space: CPtr,
    vcpu: CPtr,
}

impl Reserve {
    /// Makes the targets and the victim thread.
    fn create(res: &mut Resources, cpus: u64, first_cpu_slot: u64) -> Result<Reserve, String> {
        let mut create =
            |object_type, size_bits| check(res.create(object_type, size_bits), "create");
        let cnode = create(ObjectType::CNode, FUZZ_CNODE_BITS)?;
        let sub_cnode = create(ObjectType::CNode, 4)?;
        let endpoint = create(ObjectType::Endpoint, 0)?;
        let notification = create(ObjectType::Notification, 0)?;
        let large_frame = create(ObjectType::Frame2M, 0)?;
        let vspace = create(ObjectType::VSpace, 16)?;
        let second_vspace = create(ObjectType::VSpace, 15)?;
        let victim = create(ObjectType::Tcb, 0)?;
        let scheduler = create(ObjectType::Scheduler, 0)?;
        let guest_space = create(ObjectType::GuestSpace, 15)?;
        let vcpu = create(ObjectType::Vcpu, 0)?;
        let frames = check(
            res.create_many(ObjectType::Frame4K, 0, target::FRAME_COUNT),
            "frames",
        )?;
        // Port 0x80 only (the root already narrowed the fuzzer's range to it).
        let io_port = check(res.alloc_slot(), "slot")?;
        check(
            invoke::ioport_issue(slot::IO_PORTS, 0x80, 0x80, io_port),
            "issue port 0x80",
        )?;
        let (arena, _) = check(res.create_untyped(CHUNK_BITS + 1), "arena")?;
        let cpu = if first_cpu_slot == 0 {
            0
        } else {
            first_cpu_slot + cpus - 1
        };
        let reserve = Reserve {
            cnode,
            sub_cnode,
            endpoint,
            notification,
            frames,
            large_frame,
            vspace,
            second_vspace,
            victim,
            io_port,
            scheduler,
            cpu,
            arena,
            victim_cpu: cpus - 1,
            guest_space,
            vcpu,
        };
        reserve.start_victim()?;
        Ok(reserve)
    }

    /// (Re)configures and starts the victim thread: its own empty address
    /// space, the sub-CNode as its CSpace, faults to the fuzz endpoint. It
    /// starts at an unmapped address, so it faults at once and waits for the
    /// fuzzer to answer.
    fn start_victim(&self) -> Result<(), String> {
        let config = TcbConfig {
            cnode: self.sub_cnode,
            vspace: self.vspace,
            fault_endpoint: self.endpoint,
            ..TcbConfig::default()
        };
        check(
            invoke::tcb_configure(self.victim, &config),
            "configure the victim",
        )?;
        let registers = Registers {
            rip: 0x1000,
            rsp: 0x2000,
            rflags: 0x202,
            ..Registers::default()
        };
        check(
            invoke::tcb_write_registers(self.victim, &registers),
            "victim registers",
        )?;
        // A fuzzed `TcbConfine` may have confined the victim: it then takes
        // only its Scheduler's CPUs (`NotOwned`), and once that Scheduler
        // is destroyed it stays suspended for good (`IllegalState`).
        match invoke::tcb_set_affinity(self.victim, self.victim_cpu) {
            Ok(()) | Err(Error::NotOwned) => {}
            Err(error) => return Err(format!("victim affinity: {error:?}")),
        }
        match invoke::tcb_resume(self.victim) {
            Ok(()) | Err(Error::IllegalState) => Ok(()),
            Err(error) => Err(format!("resume the victim: {error:?}")),
        }
    }

    /// Empties the fuzz CSpace and fills it with fresh copies (and a fresh
    /// untyped chunk).
    fn refill(&self) -> Result<(), String> {
        for index in 1..FUZZ_SLOTS {
            check(
                invoke::cnode_delete(self.cnode, index),
                "empty the fuzz CSpace",
            )?;
        }
        let copy = |dest: u64, source: CPtr, rights: Rights, badge: u64| {
            let result = if badge == 0 {
                invoke::cnode_copy(self.cnode, dest, slot::ROOT_CNODE, source, rights)
            } else {
                invoke::cnode_mint(self.cnode, dest, slot::ROOT_CNODE, source, rights, badge)
            };
            check(result, "refill")
        };
        let read_write = Rights::READ.union(Rights::WRITE);
        copy(target::SELF_CNODE, self.cnode, Rights::ALL, 0)?;
        copy(target::SUB_CNODE, self.sub_cnode, Rights::ALL, 0)?;
        copy(target::ENDPOINT, self.endpoint, Rights::ALL, 0)?;
        copy(target::ENDPOINT_BADGED, self.endpoint, Rights::ALL, 0xE1)?;
        copy(target::ENDPOINT_NO_GRANT, self.endpoint, read_write, 0)?;
        copy(target::NOTIFICATION, self.notification, Rights::ALL, 0)?;
        copy(
            target::NOTIFICATION_BADGED,
            self.notification,
            Rights::WRITE,
            0x4,
        )?;
        copy(
            target::NOTIFICATION_READ,
            self.notification,
            Rights::READ,
            0,
        )?;
        for index in 0..target::FRAME_COUNT {
            copy(target::FRAMES + index, self.frames + index, Rights::ALL, 0)?;
        }
        copy(target::LARGE_FRAME, self.large_frame, Rights::ALL, 0)?;
        copy(target::VSPACE, self.vspace, Rights::ALL, 0)?;
        copy(target::SECOND_VSPACE, self.second_vspace, Rights::ALL, 0)?;
        copy(target::VICTIM, self.victim, Rights::ALL, 0)?;
        copy(target::IO_PORT, self.io_port, Rights::ALL, 0)?;
        copy(target::SCHEDULER, self.scheduler, Rights::ALL, 0)?;
        copy(target::GUEST_SPACE, self.guest_space, Rights::ALL, 0)?;
        copy(target::VCPU, self.vcpu, Rights::ALL, 0)?;
        if self.cpu != 0 {
            // Deleting this copy at the next refill unbinds the CPU if the
            // fuzzer bound it: revocation is part of what is fuzzed.
            copy(target::CPU, self.cpu, Rights::ALL, 0)?;
        }
        // Untyped capabilities cannot be copied: fresh ones each time, from
        // an arena whose revocation first destroyed everything the fuzzer
        // built from the previous ones.
        check(
            invoke::cnode_revoke(slot::ROOT_CNODE, self.arena),
            "revoke the arena",
        )?;
        let arena = |size_bits: u64, dest: u64| {
            let result = invoke::untyped_retype(
                self.arena,
                ObjectType::Untyped,
                size_bits,
                self.cnode,
                dest,
                1,
            );
            check(result, "refill untyped")
        };
        arena(CHUNK_BITS, target::UNTYPED_CHUNK)?;
        arena(14, target::SPARE_UNTYPED)?;
        // The victim restarts with a fault endpoint and its own VSpace.
        check(invoke::tcb_suspend(self.victim), "suspend the victim")?;
        self.start_victim()?;
        Ok(())
    }
}

fn run(info: &'static BootInfo, seed: u64, calls: u64) -> Result<(), String> {
    let start = check(
        invoke::machine_check_invariants(slot::MACHINE),
        "check invariants",
    )?;
    let mut res = Resources::from_boot_info(info);
    let reserve = Reserve::create(&mut res, info.cpu_count, info.first_cpu_slot)?;
    reserve.refill()?;

    let faults = check(res.create(ObjectType::Endpoint, 0), "fault endpoint")?;
    let sleeper = check(
        res.create(ObjectType::Notification, 0),
        "sleep notification",
    )?;
    let progress = Progress::new();
    let shared = progress.clone();
    let cpus = info.cpu_count;
    let options = ThreadOptions {
        cspace: Some(reserve.cnode),
        fault_endpoint: faults,
        ..Default::default()
    };
    let fuzzer = check(
        tarn_rt::spawn_thread(&mut res, options, move || fuzz(seed, calls, cpus, &shared)),
        "start the fuzzing thread",
    )?;

    // Watch: refill requests, faults of the fuzzing thread, a stall limit.
    let mut last_calls = 0;
    let mut quiet_rounds = 0;
    while progress.done.load(Ordering::Acquire) == 0 {
        if progress.refill.load(Ordering::Acquire) != 0 {
            reserve.refill()?;
            progress.refill.store(0, Ordering::Release);
        }
        let _ = tarn_rt::sleep(sleeper, 1_000_000);
        if let Ok(fault) = tarn_rt::nb_recv(faults) {
            return Err(format!(
                "the fuzzing thread faulted after {} calls: label {:#x}, rip {:#x}, address {:#x}, vector {}",
                progress.calls.load(Ordering::Relaxed),
                fault.label(),
                fault.mrs[0],
                fault.mrs[1],
                fault.mrs[3]
            ));
        }
        let now = progress.calls.load(Ordering::Relaxed);
        if now == last_calls && progress.refill.load(Ordering::Acquire) == 0 {
            quiet_rounds += 1;
        } else {
            quiet_rounds = 0;
            last_calls = now;
        }
        if quiet_rounds >= 10_000 {
            let state = invoke::tcb_read_registers(fuzzer.tcb).map(|s| s.state());
            let last: [u64; 4] = core::array::from_fn(|i| progress.last[i].load(Ordering::Relaxed));
            return Err(format!(
                "no progress for 10 s after {now} calls (fuzzing thread state {state:?}; \
                 last call: number {}, cptr {}, info {:#x}, mr0 {:#x})",
                last[0], last[1], last[2], last[3]
            ));
        }
    }
    print_statistics(&progress);
    let mismatches = progress.mismatches.load(Ordering::Relaxed);
    if mismatches != 0 {
        return Err(format!(
            "{mismatches} blocking calls failed differently from their non-blocking probes"
        ));
    }
    let bad_codes = progress.bad_codes.load(Ordering::Relaxed);
    if bad_codes != 0 {
        return Err(format!("{bad_codes} calls returned an unknown error code"));
    }

    let report = check(
        invoke::machine_check_invariants(slot::MACHINE),
        "check invariants",
    )?;
    if !report.consistent {
        return Err(format!(
            "the kernel reports inconsistent state after fuzzing ({report:?})"
        ));
    }
    // Stop the fuzzing thread, then take back all memory (the issued port
    // capability is not derived from it: delete it by hand).
    check(fuzzer.destroy(&mut res), "delete the fuzzing thread")?;
    check(res.delete(reserve.io_port), "delete the port capability")?;
    let regions: alloc::vec::Vec<CPtr> = res.untyped.regions().iter().map(|r| r.cptr).collect();
    for cptr in regions {
        check(
            invoke::cnode_revoke(slot::ROOT_CNODE, cptr),
            "revoke untyped",
        )?;
    }
    let end = check(
        invoke::machine_check_invariants(slot::MACHINE),
        "check invariants",
    )?;
    if !end.consistent {
        return Err(format!(
            "the kernel reports inconsistent state after cleanup ({end:?})"
        ));
    }
    if end.live_objects != start.live_objects {
        return Err(format!(
            "{} live objects after cleanup, {} before fuzzing",
            end.live_objects, start.live_objects
        ));
    }
    Ok(())
}

/// Prints how the calls ended, and which invocations succeeded how often.
fn print_statistics(progress: &Progress) {
    let mut line = String::from("fuzz: results:");
    for (code, count) in progress.results.iter().enumerate() {
        let count = count.load(Ordering::Relaxed);
        if count == 0 {
            continue;
        }
        match Error::from_u64(code as u64) {
            Some(error) => line.push_str(&format!(" {error:?} {count},")),
            None => line.push_str(&format!(" ok {count},")),
        }
    }
    println!("{}", line.trim_end_matches(','));
    let mut line = String::from("fuzz: successful invocations:");
    for &label in LABELS {
        let count = progress.invocations[label as usize].load(Ordering::Relaxed);
        line.push_str(&format!(" {label:?} {count},"));
    }
    println!("{}", line.trim_end_matches(','));
}

/// The labels of every invocation (the ABI's own list).
const LABELS: &[Invocation] = Invocation::ALL;

/// Generates capability pointers and argument words.
struct Generator {
    rng: Rng,
    cpus: u64,
}

impl Generator {
    /// A capability pointer into the fuzz CSpace: mostly populated slots.
    fn cptr(&mut self) -> u64 {
        match self.rng.below(100) {
            0..=74 => 1 + self.rng.below(POPULATED_END - 1),
            75..=79 => 0,
            80..=91 => POPULATED_END + self.rng.below(FUZZ_SLOTS - POPULATED_END),
            92..=96 => FUZZ_SLOTS + self.rng.below(1 << 20),
            _ => self.rng.next(),
        }
    }

    /// One of `options`, or now and then any capability pointer.
    fn choose(&mut self, options: &[u64]) -> u64 {
        let any = self.cptr();
        let index = self.rng.below(options.len() as u64 + 1) as usize;
        options.get(index).copied().unwrap_or(any)
    }

    /// The capability an invocation with `label` is most likely meant for.
    fn target(&mut self, label: Invocation) -> u64 {
        if self.rng.chance(25) {
            return self.cptr();
        }
        let frame = target::FRAMES + self.rng.below(target::FRAME_COUNT);
        match label {
            Invocation::UntypedRetype => self.rng.pick(&[
                target::UNTYPED_CHUNK,
                target::UNTYPED_CHUNK,
                target::SPARE_UNTYPED,
            ]),
            Invocation::CNodeCopy
            | Invocation::CNodeMint
            | Invocation::CNodeMove
            | Invocation::CNodeDelete
            | Invocation::CNodeRevoke => self.rng.pick(&[target::SELF_CNODE, target::SUB_CNODE]),
            Invocation::TcbConfigure
            | Invocation::TcbWriteRegisters
            | Invocation::TcbReadRegisters
            | Invocation::TcbResume
            | Invocation::TcbSuspend
            | Invocation::TcbSetAffinity
            | Invocation::TcbBindNotification
            | Invocation::TcbUnbindNotification => target::VICTIM,
            Invocation::FrameMap | Invocation::FrameUnmap | Invocation::FrameGetAddress => {
                if self.rng.chance(15) {
                    target::LARGE_FRAME
                } else {
                    frame
                }
            }
            Invocation::IoPortIn | Invocation::IoPortOut | Invocation::IoPortIssue => {
                target::IO_PORT
            }
            Invocation::SchedulerBindCpu
            | Invocation::SchedulerUnbindCpu
            | Invocation::SchedulerAdopt
            | Invocation::SchedulerRelease
            | Invocation::SchedulerDispatch
            | Invocation::SchedulerSetTick
            | Invocation::SchedulerQueryThread
            | Invocation::SchedulerPreempt => target::SCHEDULER,
            Invocation::CpuInfo => target::CPU,
            Invocation::VcpuBind | Invocation::VcpuWriteSegment | Invocation::VcpuRun => {
                target::VCPU
            }
            _ => self.cptr(),
        }
    }

    /// A slot index inside the CNode an operation names (the fuzz CSpace or
    /// the 16-slot sub-CNode): populated, empty, or out of range.
    fn slot_index(&mut self) -> u64 {
        match self.rng.below(10) {
            0..=3 => self.rng.below(18),
            4..=8 => POPULATED_END + self.rng.below(FUZZ_SLOTS - POPULATED_END),
            _ => self.wild(),
        }
    }

    /// An address: aligned, unaligned, large-page aligned, kernel half, edges.
    fn address(&mut self) -> u64 {
        let page = 0x1000 * (1 + self.rng.below(64));
        match self.rng.below(8) {
            0 | 1 => layout::FREE_WINDOW_BASE + page,
            2 => 0x20_0000 * (1 + self.rng.below(8)),
            3 => layout::FREE_WINDOW_BASE + page + 1 + self.rng.below(0xFFF),
            4 => 0xFFFF_8000_0000_0000 + page,
            5 => layout::USER_END - 0x1000 * self.rng.below(3),
            6 => self.rng.below(1 << 47) & !0xFFF,
            _ => self.rng.next(),
        }
    }

    /// Any word, biased towards values that mean something somewhere.
    fn wild(&mut self) -> u64 {
        match self.rng.below(12) {
            0 => 0,
            1 => 1 + self.rng.below(16),
            2 => self.cptr(),
            3 => self.rng.next(),
            4 => u64::MAX - self.rng.below(4),
            5 => self.address(),
            6 => 1 << self.rng.below(64),
            7 => self.rng.below(32),
            8 => 0x7F + self.rng.below(4),
            9 => self.cpus + self.rng.below(3),
            10 => 63 + self.rng.below(4),
            _ => self.rng.below(1 << 16),
        }
    }

    /// Argument `index` shaped for invocation `label`.
    fn argument(&mut self, label: Invocation, index: usize) -> u64 {
        use Invocation::*;
        match (label, index) {
            (UntypedRetype, 0) => self.rng.pick(&[1, 2, 3, 4, 5, 6, 6, 7, 8, 9, 12, 13, 0]),
            (UntypedRetype, 1) => self.rng.pick(&[0, 1, 4, 12, 14, 15, 16, 17, 21, 41]),
            (UntypedRetype, 2) => self.choose(&[target::SELF_CNODE, target::SUB_CNODE]),
            (UntypedRetype, 3) => self.slot_index(),
            (UntypedRetype, 4) => self.rng.pick(&[1, 1, 1, 2, 3, 0, 257]),
            (CNodeCopy | CNodeMint | CNodeMove, 0) => self.slot_index(),
            (CNodeCopy | CNodeMint | CNodeMove, 1) => {
                self.choose(&[target::SELF_CNODE, target::SUB_CNODE])
            }
            (CNodeCopy | CNodeMint | CNodeMove, 2) => {
                if self.rng.chance(60) {
                    1 + self.rng.below(POPULATED_END - 1)
                } else {
                    self.slot_index()
                }
            }
            (CNodeCopy | CNodeMint, 3) => self.rng.below(16),
            (CNodeMint, 4) => self.rng.pick(&[0, 1, 0xB, 1 << 40]),
            (CNodeDelete | CNodeRevoke, 0) => self.slot_index(),
            (TcbConfigure, 0) => self.choose(&[target::SUB_CNODE, target::SELF_CNODE]),
            (TcbConfigure, 1) => self.choose(&[target::VSPACE, target::SECOND_VSPACE]),
            (TcbConfigure, 2) => self.choose(&[0, target::FRAMES]),
            (TcbConfigure, 4) => self.choose(&[target::ENDPOINT, target::ENDPOINT_BADGED]),
            (TcbConfigure, 3) | (TcbWriteRegisters, 0 | 1) => self.address(),
            (TcbSetAffinity, 0) => self.rng.below(self.cpus + 2),
            (TcbBindNotification, 0) => {
                self.choose(&[target::NOTIFICATION, target::NOTIFICATION_READ])
            }
            (FrameMap, 0) => {
                self.choose(&[target::VSPACE, target::SECOND_VSPACE, target::GUEST_SPACE])
            }
            (VcpuBind, 0) => self.choose(&[target::VICTIM]),
            (VcpuBind, 1) => self.choose(&[target::GUEST_SPACE, target::VSPACE]),
            (VcpuBind, 2) => self.choose(&[target::FRAMES, target::LARGE_FRAME, target::VSPACE]),
            (VcpuWriteSegment, 0) => self.rng.below(12),
            (VcpuWriteSegment, 1 | 3 | 4) => self.rng.pick(&[0, 0x10, 0xFFFF, 0x9B, 0xC9B, 0x1000]),
            (VcpuRun, 0) => self.rng.below(5),
            (VcpuRun, 1) => self
                .rng
                .pick(&[0, 0x8000_0020, 0x20, 0x8000_0100, 0x8000_0008]),
            (VcpuRun, 2) => self.rng.pick(&[0, 1, 1_000_000]),
            (VcpuRun, 3) => self.rng.pick(&[0, 1 << 6, 1 << 32]),
            (FrameMap, 1) => self.address(),
            (FrameMap, 2) => self.rng.pick(&[1, 3, 9, 11, 2, 8, 0, 16]),
            (IoPortIn | IoPortOut, 0) => self.rng.pick(&[0x80, 0x80, 0x7F, 0x81, 0xFFFF, 0x10000]),
            (IoPortIn | IoPortOut, 1) => self.rng.pick(&[1, 2, 4, 1, 0, 3, 8]),
            (IoPortIssue, 0 | 1) => self.rng.pick(&[0x80, 0x80, 0x7F, 0x81, 0]),
            (IoPortIssue, 2) => self.slot_index(),
            (SchedulerBindCpu | SchedulerUnbindCpu, 0) => self.choose(&[target::CPU]),
            (SchedulerBindCpu, 1) => self.choose(&[target::FRAMES, target::LARGE_FRAME]),
            (SchedulerBindCpu, 2) => {
                self.choose(&[target::NOTIFICATION, target::NOTIFICATION_BADGED])
            }
            (SchedulerAdopt | SchedulerRelease | SchedulerQueryThread, 0) => {
                self.choose(&[target::VICTIM])
            }
            (SchedulerAdopt, 1) => self.rng.pick(&[0, 1, 7, u64::MAX]),
            (SchedulerDispatch | SchedulerSetTick | SchedulerPreempt, 0) => {
                self.rng.below(self.cpus + 2)
            }
            (SchedulerDispatch, 1) => self.choose(&[target::VICTIM]),
            (SchedulerDispatch, 2) => self.rng.pick(&[0, 1, 1000, 1_000_000, u64::MAX]),
            (SchedulerSetTick, 1) => self.rng.pick(&[0, 1, 99_999, 100_000, 1_000_000]),
            (IrqControlGet, 0) => self.rng.below(32),
            (IrqControlGet, 1) => self.slot_index(),
            _ => self.wild(),
        }
    }

    /// Eight argument words for `label`, each now and then wild.
    fn arguments(&mut self, label: Invocation) -> [u64; 8] {
        if label == Invocation::UntypedRetype && self.rng.chance(60) {
            // A type with a size that suits it, into a likely-empty slot.
            let (object_type, size_bits) = self.rng.pick(&[
                (ObjectType::Endpoint, 0),
                (ObjectType::Notification, 0),
                (ObjectType::Tcb, 0),
                (ObjectType::Frame4K, 0),
                (ObjectType::CNode, 2),
                (ObjectType::VSpace, 15),
                (ObjectType::Untyped, 12),
                (ObjectType::Frame2M, 0),
            ]);
            let first = POPULATED_END + self.rng.below(FUZZ_SLOTS - POPULATED_END - 4);
            let count = 1 + self.rng.below(3);
            let dest = self.choose(&[target::SELF_CNODE]);
            return [object_type as u64, size_bits, dest, first, count, 0, 0, 0];
        }
        core::array::from_fn(|index| {
            if self.rng.chance(85) {
                self.argument(label, index)
            } else {
                self.wild()
            }
        })
    }

    /// A system-call number: mostly `Call`, every other one often, some invalid.
    fn syscall_number(&mut self) -> u64 {
        match self.rng.below(100) {
            0..=39 => Syscall::Call as u64,
            40..=91 => 1 + self.rng.below(12),
            92..=96 => self.rng.pick(&[0, 13, 14, 64, 255]),
            _ => self.rng.next(),
        }
    }
}

/// The fuzzing thread's body.
fn fuzz(seed: u64, calls: u64, cpus: u64, progress: &Progress) {
    let mut generator = Generator {
        rng: Rng::new(seed),
        cpus,
    };
    for call in 0..calls {
        if call > 0 && call % REFILL_EVERY == 0 {
            progress.refill.store(1, Ordering::Release);
            while progress.refill.load(Ordering::Acquire) != 0 {
                tarn_rt::yield_now();
            }
        }
        one_call(&mut generator, progress);
        let done = call + 1;
        progress.calls.store(done, Ordering::Relaxed);
        if done % 10_000 == 0 {
            println!("fuzz: {done} calls");
        }
    }
    progress.done.store(1, Ordering::Release);
    // This thread cannot name its own TCB: wait to be deleted.
    loop {
        tarn_rt::yield_now();
    }
}

fn record(progress: &Progress, out: &syscall::RawResult) {
    match progress.results.get(out.rax as usize) {
        Some(count) if out.rax == 0 || Error::from_u64(out.rax).is_some() => {
            count.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            progress.bad_codes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A blocking call's result must equal its failed probe's.
fn compare(
    progress: &Progress,
    number: u64,
    probe: &syscall::RawResult,
    real: &syscall::RawResult,
) {
    record(progress, real);
    if probe.rax != real.rax {
        println!(
            "fuzz: syscall {number}: the probe returned {} but the blocking call {}",
            probe.rax, real.rax
        );
        progress.mismatches.fetch_add(1, Ordering::Relaxed);
    }
}

fn one_call(g: &mut Generator, progress: &Progress) {
    let number = g.syscall_number();
    let label = g.rng.pick(LABELS);
    let cptr = if number == Syscall::Call as u64 {
        g.target(label)
    } else {
        g.cptr()
    };
    let length = match g.rng.below(20) {
        0 => 64,
        1 => 65 + g.rng.below(63),
        2 => g.rng.below(64),
        _ => g.rng.below(9),
    };
    let extra_caps = if g.rng.chance(80) { 0 } else { g.rng.below(4) };
    let raw_label = if g.rng.chance(90) {
        label as u64
    } else {
        g.wild() & ((1 << 52) - 1)
    };
    let mut info = MessageInfo::new(raw_label, extra_caps, 0).0 | length;
    if g.rng.chance(3) {
        info = g.rng.next();
    }
    let words = g.arguments(label);
    for (index, word) in words.iter().enumerate() {
        ipc_buffer::set_mr(index, *word);
    }
    for index in 0..3 {
        let cap = g.cptr();
        ipc_buffer::set_cap(index, cap);
    }
    let window = RECEIVE_WINDOW + g.rng.below(8);
    let window_count = g.rng.below(3);
    ipc_buffer::set_receive_window(window, window_count);
    let mut mrs = [words[0], words[1], words[2], words[3]];
    for (index, value) in [number, cptr, info, mrs[0]].into_iter().enumerate() {
        progress.last[index].store(value, Ordering::Relaxed);
    }

    let raw =
        |n: Syscall, cptr: u64, info: u64, mrs: [u64; 4]| syscall::raw(n as u64, cptr, info, mrs);
    let would_block = Error::WouldBlock as u64;
    match Syscall::from_u64(number) {
        Some(Syscall::Send) => {
            let probe = raw(Syscall::NbSend, cptr, info, mrs);
            record(progress, &probe);
            if probe.rax != 0 && probe.rax != would_block {
                compare(
                    progress,
                    number,
                    &probe,
                    &syscall::raw(number, cptr, info, mrs),
                );
            }
        }
        Some(Syscall::Call) => {
            // An endpoint (or notification) that takes a send would block a
            // call; anything else is an invocation or fails at once.
            let probe = raw(Syscall::NbSend, cptr, 0, [0; 4]);
            if probe.rax != 0 && probe.rax != would_block {
                let out = syscall::raw(number, cptr, info, mrs);
                record(progress, &out);
                let label = MessageInfo(info).label();
                if out.rax == 0 && (label as usize) < progress.invocations.len() {
                    progress.invocations[label as usize].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Some(Syscall::Recv) => {
            let probe = raw(Syscall::NbRecv, cptr, info, mrs);
            record(progress, &probe);
            if probe.rax != 0 && probe.rax != would_block {
                compare(
                    progress,
                    number,
                    &probe,
                    &syscall::raw(number, cptr, info, mrs),
                );
            }
        }
        Some(Syscall::ReplyRecv) => {
            let probe = raw(Syscall::NbRecv, cptr, 0, [0; 4]);
            record(progress, &probe);
            let out = if probe.rax != 0 && probe.rax != would_block {
                // Fails at the receive (after replying, if there was a caller).
                syscall::raw(number, cptr, info, mrs)
            } else {
                raw(Syscall::Reply, 0, info, mrs)
            };
            record(progress, &out);
        }
        Some(Syscall::Wait) => {
            let probe = raw(Syscall::Poll, cptr, 0, [0; 4]);
            record(progress, &probe);
            if probe.rax == would_block {
                mrs[0] = 1 + g.rng.below(SHORT_TIMEOUT_NS);
                let out = syscall::raw(number, cptr, info, mrs);
                record(progress, &out);
            } else if probe.rax != 0 {
                mrs[0] = if g.rng.chance(50) {
                    0
                } else {
                    1 + g.rng.below(SHORT_TIMEOUT_NS)
                };
                compare(
                    progress,
                    number,
                    &probe,
                    &syscall::raw(number, cptr, info, mrs),
                );
            }
        }
        Some(Syscall::DebugWrite) => {
            // Never valid text (the suite covers printing): bad pointers, or
            // a valid pointer with a length over the limit.
            let (pointer, length) = match g.rng.below(4) {
                0 => (FUZZ_TEXT.as_ptr() as u64, 513 + g.rng.below(1 << 12)),
                1 => (
                    0xFFFF_8000_0000_0000 + g.rng.below(1 << 30),
                    1 + g.rng.below(512),
                ),
                2 => (g.rng.below(0x1000), 1 + g.rng.below(512)),
                _ => (
                    layout::FREE_WINDOW_BASE + g.rng.below(1 << 30),
                    1 + g.rng.below(512),
                ),
            };
            let out = syscall::raw(number, pointer, length, mrs);
            record(progress, &out);
        }
        _ => {
            let out = syscall::raw(number, cptr, info, mrs);
            record(progress, &out);
        }
    }
}

/// A valid user buffer for `DebugWrite` length checks.
static FUZZ_TEXT: [u8; 16] = *b"fuzz: not shown\n";

fn power_off(status: u64) -> ! {
    let result = invoke::machine_power_off(slot::MACHINE, status);
    println!("fuzz: power-off failed: {result:?}");
    tarn_rt::exit()
}
