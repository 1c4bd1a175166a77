//! The stateful fuzzer (`fuzzgraph seed=N steps=N`). It builds a real
//! object graph by retyping its own untyped memory (an arena split into
//! regions), keeps a model of it ([`model`]), puts the objects in use
//! through actors ([`actors`]: a receiver in `Recv`/`ReplyRecv`/`Wait`, a
//! vCPU runner in a guest, a spinner dispatched on bound CPUs; graph
//! threads blocked sending faults with graph IPC buffers), and at random
//! deletes, revokes, moves, copies, mints and retypes underneath them.
//!
//! After every step it checks (the first two every `walk=N` steps and at
//! every arena reset when N is given, for long runs):
//! - `MachineCheckInvariants` says consistent;
//! - the kernel's live capability and object counts moved exactly as the
//!   model's did;
//! - every fuzz slot holds what the model says (empty or not; a
//!   per-type probe: frame address, CPU index, thread, untyped, CNode,
//!   Scheduler, Vcpu, endpoint or notification, I/O port);
//! - every CPU's `CpuInfo` bound flag is the model's;
//! - sentinel frames (retyped right after a revoke, where freed objects
//!   lived, filled with a pattern and never handed to anything that
//!   writes) still hold their pattern (a sample each step, all of it every
//!   64 steps and at the end);
//! - a `VcpuRun` with a 5 ms timeout returns within 3 s of being asked (or
//!   of its thread's resume).
//!
//! The vCPU runner, which acts while the driver goes on, invokes a copy in
//! a run slot of its own (`Loc::Runner`), never a fuzz slot the driver may
//! refill meanwhile. The watchdog fails the run after 60 s without a step.
//! At the end the fuzzer prints the kernel time per step by part (the
//! action, the invariant walk, the slot probes, the rest).
//!
//! At the end it prints the coverage table and
//! `fuzz-graph: summary seed=S steps=N invocations=A/40 syscalls=B/12
//! errors=C/22 result=ok` and powers off with 0; it fails (status 1) on the
//! first broken check, or if an invocation (other than `MachinePowerOff`,
//! whose success ends the run) never succeeded.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod actors;
mod coverage;
mod model;

use actors::{Shared, GUEST_LOAD};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use coverage::{note, syscall};
use model::{Kind, Loc, Model, Obj};
use tarn_rt::abi::boot::BootInfo;
use tarn_rt::abi::invocation::{Invocation, ThreadState};
use tarn_rt::abi::{CPtr, Error, MessageInfo, ObjectType, Rights, Syscall};
use tarn_rt::arch::{probe_read, probe_write};
use tarn_rt::invoke::{self, Registers, TcbConfig};
use tarn_rt::layout::{self, slot, PAGE_SIZE};
use tarn_rt::{println, Resources, Thread, ThreadOptions};

tarn_rt::entry!(main);

const DEFAULT_SEED: u64 = 1;
const DEFAULT_STEPS: u64 = 3000;
/// Fuzz slots in the driver's CNode.
const SLOTS: u64 = 96;
/// The arena (log2 bytes) and the regions it is split into.
const ARENA_BITS: u64 = 23;
const REGION_BITS: [u64; 4] = [22, 21, 20, 20];
/// Steps between two revocations of the whole arena.
const RESET_EVERY: u64 = 400;
/// Sentinel frames at most.
const MAX_SENTINELS: usize = 12;
/// Where the driver maps sentinel frames.
const SENTINEL_BASE: u64 = layout::FREE_WINDOW_BASE + 0x3_0000_0000;
/// IRQs the fuzzer may take (unused ISA lines on the QEMU and Bochs PCs).
const IRQS: [u64; 3] = [5, 9, 10];
/// `VcpuRun` timeout, and how long a run may take in all.
const RUN_TIMEOUT_NS: u64 = 5_000_000;
const RUN_LIMIT_NS: u64 = 3_000_000_000;

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
        println!("fuzz-graph: FAILED: no start page at {arg:#x}");
        power_off(1);
    };
    let seed = option(info.cmdline(), "seed=").unwrap_or(DEFAULT_SEED);
    let steps = option(info.cmdline(), "steps=").unwrap_or(DEFAULT_STEPS);
    let walk = option(info.cmdline(), "walk=").unwrap_or(1).max(1);
    println!(
        "fuzz-graph: seed {seed}, {steps} steps, {} cpus, invariant walk every {walk} steps",
        info.cpu_count
    );
    let outcome = Fuzz::new(info, seed).and_then(|mut fuzz| fuzz.run(steps));
    coverage::print_table();
    let missing = coverage::never_succeeded();
    let syscalls_missing = coverage::syscalls_never_succeeded();
    let errors_missing = coverage::errors_never_returned();
    println!(
        "fuzz-graph: never succeeded: invocations [{}] syscalls [{}]; errors never returned: [{}]",
        coverage::names(&missing),
        coverage::names(&syscalls_missing),
        coverage::names(&errors_missing)
    );
    let verdict = match outcome {
        Err(why) => Err(why),
        Ok(()) if !missing.is_empty() => Err(format!(
            "{} invocations never succeeded: {}",
            missing.len(),
            coverage::names(&missing)
        )),
        Ok(()) => Ok(()),
    };
    // Every invocation but `MachinePowerOff` (its success ends the run).
    let invocations = coverage::LABELS.len() - 1;
    let syscalls = coverage::SYSCALLS.len();
    let errors = coverage::ERRORS_ALL.len();
    println!(
        "fuzz-graph: summary seed={seed} steps={steps} invocations={}/{invocations} syscalls={}/{syscalls} errors={}/{errors} result={}",
        invocations - missing.len(),
        syscalls - syscalls_missing.len(),
        errors - errors_missing.len(),
        if verdict.is_ok() { "ok" } else { "failed" }
    );
    match verdict {
        Ok(()) => power_off(0),
        Err(why) => {
            println!("fuzz-graph: FAILED: {why}");
            power_off(1)
        }
    }
}

fn power_off(status: u64) -> ! {
    let result = invoke::machine_power_off(slot::MACHINE, status);
    println!("fuzz-graph: power-off failed: {result:?}");
    tarn_rt::exit()
}

/// xorshift64* (Vigna).
struct Rng(u64);

impl Rng {
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
    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.below(items.len() as u64) as usize])
        }
    }
}

fn check<T>(result: Result<T, Error>, what: &str) -> Result<T, String> {
    result.map_err(|error| format!("{what}: {error:?}"))
}

struct Fuzz {
    info: &'static BootInfo,
    rng: Rng,
    model: Model,
    res: Resources,
    arena: CPtr,
    arena_phys: u64,
    shared: Arc<Shared>,
    receiver: Thread,
    runner: Thread,
    spinner: Thread,
    r_bell: CPtr,
    v_bell: CPtr,
    /// A notification outside the graph the driver sleeps on.
    sleeper: CPtr,
    scratch: CPtr,
    /// The slot the vCPU runner invokes (`Loc::Runner`).
    run_slot: CPtr,
    /// Kernel counts minus model counts (capabilities, objects).
    base: (i64, i64),
    next_sentinel: u64,
    /// The vCPU run in progress: (sequence, start ns); runner suspended.
    run: Option<(u64, u64)>,
    /// The driver's last look at that run, and the longest time between
    /// two looks (a driver that did not look for long, held up itself,
    /// tells a stall of the whole machine from the runner's own).
    run_looked: (u64, u64),
    runner_suspended: bool,
    spinner_suspended: bool,
    step: u64,
    sentinels_made: u64,
    resets: u64,
    /// 1 ms sleeps waiting for actors.
    naps: u64,
    /// Receiver reports the model has accounted for.
    r_reports_seen: u64,
    /// Print every step (`trace=1`).
    trace: bool,
    /// The kernel's invariant walk (and the count comparison it reports)
    /// after every this many steps and at every arena reset (`walk=N`;
    /// 1, every step, unless given: long runs use it, see README).
    walk_every: u64,
    /// Empty slots `of` chose this step (to provoke errors): `empty` does
    /// not hand them out, so nothing fills one before the step invokes it
    /// (an endpoint retyped there would make the invocation IPC, a `Call`
    /// that waits for a receiver forever).
    aimed: Vec<usize>,
    /// A check that failed where no error could be returned (`make`).
    broken: Option<String>,
    /// Kernel time (ns) spent in the steps' actions, the invariant walk,
    /// the slot probes, and the `CpuInfo` and sentinel checks.
    spent: [u64; 4],
}

impl Fuzz {
    fn new(info: &'static BootInfo, seed: u64) -> Result<Fuzz, String> {
        let mut res = Resources::from_boot_info(info);
        let first = check(res.slots.alloc_range(SLOTS), "fuzz slots")?;
        let scratch = check(res.alloc_slot(), "scratch slot")?;
        let run_slot = check(res.alloc_slot(), "run slot")?;
        let (arena, arena_phys) = check(res.create_untyped(ARENA_BITS), "arena")?;
        let r_bell = check(res.create(ObjectType::Notification, 0), "doorbell")?;
        let v_bell = check(res.create(ObjectType::Notification, 0), "doorbell")?;
        let sleeper = check(res.create(ObjectType::Notification, 0), "sleeper")?;
        let shared = Arc::new(Shared::new());
        let s = shared.clone();
        let receiver = check(
            tarn_rt::spawn_thread(&mut res, ThreadOptions::default(), move || {
                actors::receiver(&s, r_bell)
            }),
            "receiver",
        )?;
        let s = shared.clone();
        let runner = check(
            tarn_rt::spawn_thread(
                &mut res,
                ThreadOptions {
                    cpu: Some(info.cpu_count - 1),
                    ..Default::default()
                },
                move || actors::vcpu_runner(&s, v_bell),
            ),
            "vcpu runner",
        )?;
        let s = shared.clone();
        let spinner = check(
            tarn_rt::spawn_thread(&mut res, ThreadOptions::default(), move || {
                actors::spinner(&s)
            }),
            "spinner",
        )?;
        let s = shared.clone();
        let watch_sleeper = check(res.create(ObjectType::Notification, 0), "sleeper")?;
        let (receiver_tcb, runner_tcb) = (receiver.tcb, runner.tcb);
        check(
            tarn_rt::spawn_thread(&mut res, ThreadOptions::default(), move || {
                actors::watchdog(&s, watch_sleeper, slot::ROOT_TCB, receiver_tcb, runner_tcb)
            }),
            "watchdog",
        )?;
        let mut fuzz = Fuzz {
            info,
            rng: Rng(if seed == 0 { 0x5EED } else { seed }),
            model: Model::new(first, SLOTS, info.cpu_count as usize),
            res,
            arena,
            arena_phys,
            shared,
            receiver,
            runner,
            spinner,
            r_bell,
            v_bell,
            sleeper,
            scratch,
            run_slot,
            base: (0, 0),
            next_sentinel: SENTINEL_BASE,
            run: None,
            run_looked: (0, 0),
            runner_suspended: false,
            spinner_suspended: false,
            step: 0,
            sentinels_made: 0,
            resets: 0,
            r_reports_seen: 0,
            naps: 0,
            trace: option(info.cmdline(), "trace=").is_some_and(|t| t != 0),
            walk_every: option(info.cmdline(), "walk=").unwrap_or(1).max(1),
            spent: [0; 4],
            aimed: Vec::new(),
            broken: None,
        };
        fuzz.regions()?;
        if fuzz.trace {
            println!("fuzz-graph: regions made");
        }
        let report = check(
            invoke::machine_check_invariants(slot::MACHINE),
            "invariants",
        )?;
        let (caps, objects) = fuzz.model.counts();
        fuzz.base = (
            report.live_caps as i64 - caps as i64,
            report.live_objects as i64 - objects as i64,
        );
        Ok(fuzz)
    }

    /// Retypes the arena into the regions (at watermark 0).
    fn regions(&mut self) -> Result<(), String> {
        let mut offset = 0;
        for bits in REGION_BITS {
            let Some(index) = self.rng.pick(&self.model.empty_slots()) else {
                return Err(String::from("no fuzz slot for a region"));
            };
            let cptr = self.model.cptr(index);
            check(
                note(
                    Invocation::UntypedRetype,
                    invoke::untyped_retype(
                        self.arena,
                        ObjectType::Untyped,
                        bits,
                        slot::ROOT_CNODE,
                        cptr,
                        1,
                    ),
                ),
                "retype a region",
            )?;
            let mut obj = Obj::new(Kind::Untyped);
            obj.phys = self.arena_phys + offset;
            obj.size_bits = bits;
            offset += 1 << bits;
            let obj = self.model.add_obj(obj);
            let node = self.model.add(Loc::Slot(cptr), obj, None, Rights::ALL);
            self.model.nodes[node].as_mut().expect("node").under_arena = true;
        }
        Ok(())
    }

    fn now_ns(&self) -> u64 {
        invoke::machine_times(slot::MACHINE).map_or(0, |t| t.now_ns)
    }

    fn run(&mut self, steps: u64) -> Result<(), String> {
        let started = self.now_ns();
        for step in 0..steps {
            self.step = step;
            let begun = self.now_ns();
            if step > 0 && step % RESET_EVERY == 0 {
                self.reset()
            } else {
                self.one_step()
            }
            .map_err(|why| format!("step {step}: {why}"))?;
            if let Some(why) = self.broken.take() {
                return Err(format!("step {step}: {why}"));
            }
            self.spent[0] += self.now_ns().saturating_sub(begun);
            let walk = step % self.walk_every == 0 || step % RESET_EVERY == 0;
            self.check_all(step % 64 == 0, walk)
                .map_err(|why| format!("step {step}: {why}"))?;
            if (step + 1) % 250 == 0 {
                println!(
                    "fuzz-graph: {} steps, {} objects destroyed, {} sentinels, {} resets, heap {} bytes",
                    step + 1,
                    self.model.destroyed,
                    self.sentinels_made,
                    self.resets,
                    tarn_rt::heap_used_bytes()
                );
            }
        }
        // Finish: let the vCPU run end, then a full check.
        self.finish_run(true)?;
        self.check_all(true, true)?;
        let ended = self.now_ns();
        println!(
            "fuzz-graph: {steps} steps in {} ms of kernel time ({} waits of 1 ms for actors), {} objects destroyed, {} sentinel frames, {} arena resets, spinner ran {} rounds",
            ended.saturating_sub(started) / 1_000_000,
            self.naps,
            self.model.destroyed,
            self.sentinels_made,
            self.resets,
            self.shared.d_count.load(Ordering::Relaxed)
        );
        let per_step = |ns: u64| ns / steps.max(1) / 1000;
        println!(
            "fuzz-graph: kernel time per step: action {} us, invariant walk {} us, slot probes {} us, CpuInfo and sentinels {} us",
            per_step(self.spent[0]),
            per_step(self.spent[1]),
            per_step(self.spent[2]),
            per_step(self.spent[3])
        );
        Ok(())
    }

    // ---- choices -------------------------------------------------------

    fn any_slot(&mut self) -> usize {
        self.rng.below(SLOTS) as usize
    }

    fn occupied(&mut self) -> Option<usize> {
        let full: Vec<usize> = (0..SLOTS as usize)
            .filter(|&i| self.model.slots[i].is_some())
            .collect();
        self.rng.pick(&full)
    }

    fn empty(&mut self) -> Option<usize> {
        let mut empty = self.model.empty_slots();
        empty.retain(|i| !self.aimed.contains(i));
        self.rng.pick(&empty)
    }

    /// A slot of `kind` (now and then any slot, to provoke errors). When
    /// the graph has none, one is retyped for the purpose.
    /// (Never an endpoint for another kind: a `Call` on an endpoint
    /// capability is IPC, not an invocation, and would wait for a receiver.)
    fn of(&mut self, kind: Kind) -> Option<usize> {
        if self.rng.chance(8) {
            let any = self.any_slot();
            let endpoint = self
                .model
                .obj_of(any)
                .is_some_and(|(_, o)| o.kind == Kind::Endpoint);
            if !endpoint || kind == Kind::Endpoint {
                if self.model.slots[any].is_none() {
                    self.aimed.push(any);
                }
                return Some(any);
            }
        }
        let slots = self.model.slots_of(kind);
        if slots.is_empty() {
            return self.make(kind);
        }
        self.rng.pick(&slots)
    }

    /// Retypes one object of `kind` from some untyped memory of the graph.
    fn make(&mut self, kind: Kind) -> Option<usize> {
        let (object_type, size_bits) = match kind {
            Kind::Untyped => (ObjectType::Untyped, 14),
            Kind::CNode => (ObjectType::CNode, 3),
            Kind::Tcb => (ObjectType::Tcb, 0),
            Kind::Endpoint => (ObjectType::Endpoint, 0),
            Kind::Notification => (ObjectType::Notification, 0),
            Kind::Frame => (ObjectType::Frame4K, 0),
            Kind::VSpace => (ObjectType::VSpace, 15),
            Kind::GuestSpace => (ObjectType::GuestSpace, 15),
            Kind::Scheduler => (ObjectType::Scheduler, 0),
            Kind::Vcpu => (ObjectType::Vcpu, 0),
            Kind::Cpu | Kind::IrqHandler | Kind::IoPort => return None,
        };
        let untyped = self.model.slots_of(Kind::Untyped);
        let source = self.rng.pick(&untyped)?;
        let dest = self.empty()?;
        if let Err(why) = self.retype(source, object_type, size_bits, kind, dest, 1, false) {
            // A broken prediction fails the step (`run` looks here).
            self.broken.get_or_insert(why);
            return None;
        }
        self.model.at(dest).map(|_| dest)
    }

    /// A frame slot that is no sentinel (so it may be written).
    fn writable_frame(&mut self) -> Option<usize> {
        let slots: Vec<usize> = self
            .model
            .slots_of(Kind::Frame)
            .into_iter()
            .filter(|&i| !self.model.obj_of(i).is_some_and(|(_, o)| o.sentinel))
            .collect();
        if slots.is_empty() {
            return self.make(Kind::Frame);
        }
        self.rng.pick(&slots)
    }

    fn cptr(&self, index: usize) -> CPtr {
        self.model.cptr(index)
    }

    // ---- steps ---------------------------------------------------------

    fn one_step(&mut self) -> Result<(), String> {
        self.aimed.clear();
        self.finish_run(false)?;
        let op = self.rng.below(100);
        self.shared.step.store(self.step, Ordering::SeqCst);
        self.shared.op.store(op, Ordering::SeqCst);
        if self.trace {
            println!("fuzz-graph: step {} op {op}", self.step);
        }
        match op {
            0..=17 => self.op_retype(),
            18..=25 => self.op_copy(),
            26..=28 => self.op_move(),
            29 => self.op_grow(),
            30..=35 => self.op_delete(),
            36..=40 => self.op_revoke(),
            41..=50 => self.op_tcb(),
            51..=57 => self.op_frame(),
            58..=69 => self.op_sched(),
            70..=78 => self.op_vcpu(),
            79..=93 => self.op_ipc(),
            94..=97 => self.op_devices(),
            _ => self.op_cpu_copy(),
        }
    }

    /// Revokes the whole arena (everything the graph built from it goes)
    /// and splits it into regions again.
    fn reset(&mut self) -> Result<(), String> {
        self.finish_run(true)?;
        check(
            note(
                Invocation::CNodeRevoke,
                invoke::cnode_revoke(slot::ROOT_CNODE, self.arena),
            ),
            "revoke the arena",
        )?;
        let doomed: Vec<usize> = (0..self.model.nodes.len())
            .filter(|&n| self.model.nodes[n].is_some() && self.model.under_arena(n))
            .collect();
        for node in doomed {
            if self.model.nodes[node].is_some() {
                self.model.delete(node);
            }
        }
        self.resets += 1;
        self.regions()
    }

    fn op_retype(&mut self) -> Result<(), String> {
        let Some(source) = self.of(Kind::Untyped) else {
            return Ok(());
        };
        let untyped_bits = 12 + self.rng.below(5);
        let cnode_bits = 2 + self.rng.below(3);
        let (object_type, size_bits, kind) = self
            .rng
            .pick(&[
                (ObjectType::Untyped, untyped_bits, Kind::Untyped),
                (ObjectType::CNode, cnode_bits, Kind::CNode),
                (ObjectType::Tcb, 0, Kind::Tcb),
                (ObjectType::Tcb, 0, Kind::Tcb),
                (ObjectType::Endpoint, 0, Kind::Endpoint),
                (ObjectType::Endpoint, 0, Kind::Endpoint),
                (ObjectType::Notification, 0, Kind::Notification),
                (ObjectType::Notification, 0, Kind::Notification),
                (ObjectType::Frame4K, 0, Kind::Frame),
                (ObjectType::Frame4K, 0, Kind::Frame),
                (ObjectType::Frame4K, 0, Kind::Frame),
                (ObjectType::Frame2M, 0, Kind::Frame),
                (ObjectType::VSpace, 15, Kind::VSpace),
                (ObjectType::GuestSpace, 15, Kind::GuestSpace),
                (ObjectType::Scheduler, 0, Kind::Scheduler),
                (ObjectType::Scheduler, 0, Kind::Scheduler),
                (ObjectType::Vcpu, 0, Kind::Vcpu),
            ])
            .expect("types");
        let Some(first) = self.empty() else {
            return Ok(());
        };
        let count = if first + 1 < SLOTS as usize
            && self.model.slots[first + 1].is_none()
            && self.rng.chance(30)
        {
            2
        } else {
            1
        };
        self.retype(source, object_type, size_bits, kind, first, count, false)
    }

    /// Retypes `count` objects from the untyped in slot `source` into
    /// slots `first..`; checks the kernel's answer against the model's
    /// watermark. Returns the new slots through the model.
    #[allow(clippy::too_many_arguments)]
    fn retype(
        &mut self,
        source: usize,
        object_type: ObjectType,
        size_bits: u64,
        kind: Kind,
        first: usize,
        count: usize,
        sentinel: bool,
    ) -> Result<(), String> {
        let result = note(
            Invocation::UntypedRetype,
            invoke::untyped_retype(
                self.cptr(source),
                object_type,
                size_bits,
                slot::ROOT_CNODE,
                self.cptr(first),
                count as u64,
            ),
        );
        let bytes = tarn_rt::abi::object_size(object_type, size_bits).expect("valid sizes");
        let predicted = match self.model.obj_of(source) {
            Some((untyped, u)) if u.kind == Kind::Untyped => {
                let start = (u.phys + u.watermark).next_multiple_of(bytes);
                let end = start + bytes * count as u64;
                let fits = end <= u.phys + (1 << u.size_bits)
                    && !(object_type == ObjectType::Untyped && size_bits > u.size_bits);
                fits.then_some((untyped, start, end))
            }
            _ => None,
        };
        match (predicted, &result) {
            (Some((untyped, start, end)), Ok(())) => {
                let u = &mut self.model.objs[untyped];
                u.watermark = end - u.phys;
                let parent = self.model.at(source);
                for i in 0..count {
                    let mut obj = Obj::new(kind);
                    obj.phys = start + i as u64 * bytes;
                    obj.size_bits = size_bits;
                    obj.sentinel = sentinel;
                    let obj = self.model.add_obj(obj);
                    let cptr = self.cptr(first + i);
                    self.model.add(Loc::Slot(cptr), obj, parent, Rights::ALL);
                    if kind == Kind::Frame {
                        let address = note(
                            Invocation::FrameGetAddress,
                            invoke::frame_get_address(cptr),
                        );
                        if address != Ok(self.model.objs[obj].phys) {
                            return Err(format!(
                                "a frame retyped at {:#x} reports address {address:x?}",
                                self.model.objs[obj].phys
                            ));
                        }
                    }
                }
                Ok(())
            }
            (None, Err(_)) => Ok(()),
            (Some(_), Err(Error::OutOfMemory))
                if matches!(object_type, ObjectType::VSpace | ObjectType::GuestSpace) =>
            {
                // The kernel's VSpace table is full (not modelled).
                Ok(())
            }
            (predicted, result) => Err(format!(
                "retype {object_type:?} x{count} from slot {source}: the model predicted {} but the kernel answered {result:?}",
                if predicted.is_some() { "success" } else { "failure" }
            )),
        }
    }

    fn op_copy(&mut self) -> Result<(), String> {
        let Some(source) = self.occupied() else {
            return Ok(());
        };
        let Some(dest) = self.empty() else {
            return Ok(());
        };
        let mask = Rights(self.rng.pick(&[15, 15, 7, 3, 1, 2, 11]).expect("mask"));
        let mint = self.rng.chance(40);
        let badge = if mint {
            self.rng.pick(&[0, 1, 0x77]).expect("badge")
        } else {
            0
        };
        let (label, result) = if mint {
            (
                Invocation::CNodeMint,
                invoke::cnode_mint(
                    slot::ROOT_CNODE,
                    self.cptr(dest),
                    slot::ROOT_CNODE,
                    self.cptr(source),
                    mask,
                    badge,
                ),
            )
        } else {
            (
                Invocation::CNodeCopy,
                invoke::cnode_copy(
                    slot::ROOT_CNODE,
                    self.cptr(dest),
                    slot::ROOT_CNODE,
                    self.cptr(source),
                    mask,
                ),
            )
        };
        let result = note(label, result);
        let node = self.model.at(source).expect("occupied");
        let n = self.model.node(node);
        let kind = self.model.objs[n.obj].kind;
        let badgeable = matches!(kind, Kind::Endpoint | Kind::Notification);
        let predicted = kind.copyable() && (badge == 0 || (badgeable && n.badge == 0));
        if predicted != result.is_ok() {
            return Err(format!(
                "{label:?} of a {kind:?} (badge {:#x}, new badge {badge:#x}): predicted {} but got {result:?}",
                n.badge,
                if predicted { "success" } else { "failure" }
            ));
        }
        if result.is_ok() {
            let new = self.model.add(
                Loc::Slot(self.cptr(dest)),
                n.obj,
                Some(node),
                n.rights.intersect(mask),
            );
            if badge != 0 {
                self.model.nodes[new].as_mut().expect("new").badge = badge;
            }
        }
        Ok(())
    }

    fn op_move(&mut self) -> Result<(), String> {
        let Some(source) = self.occupied() else {
            return Ok(());
        };
        let dest = if self.rng.chance(85) {
            match self.empty() {
                Some(d) => d,
                None => return Ok(()),
            }
        } else {
            self.any_slot()
        };
        let result = note(
            Invocation::CNodeMove,
            invoke::cnode_move(
                slot::ROOT_CNODE,
                self.cptr(dest),
                slot::ROOT_CNODE,
                self.cptr(source),
            ),
        );
        let predicted = self.model.slots[dest].is_none();
        if predicted != result.is_ok() {
            return Err(format!(
                "move {source} -> {dest}: predicted {predicted} but got {result:?}"
            ));
        }
        if result.is_ok() {
            let node = self.model.slots[source].take().expect("occupied");
            self.model.slots[dest] = Some(node);
            self.model.nodes[node].as_mut().expect("node").loc = Loc::Slot(self.cptr(dest));
        }
        Ok(())
    }

    /// `CNodeGrow` of a graph CNode into another (sometimes anything, to
    /// provoke its refusals). The model predicts the kernel's answer from
    /// its rules (two CNodes, the new one larger, named by one capability,
    /// the old one's capabilities one family: one of them derives from no
    /// other naming it); graph CNodes hold no capabilities, so the move of
    /// their contents is empty and the model swaps the two objects and the
    /// tree places of the family's top and the new CNode's capability.
    fn op_grow(&mut self) -> Result<(), String> {
        let Some(old) = self.of(Kind::CNode) else {
            return Ok(());
        };
        let new = match self.model.obj_of(old) {
            // Mostly a CNode made for the purpose, one size up.
            Some((_, o)) if o.kind == Kind::CNode && self.rng.chance(70) => {
                let (Some(source), Some(dest)) = (self.of(Kind::Untyped), self.empty()) else {
                    return Ok(());
                };
                self.retype(
                    source,
                    ObjectType::CNode,
                    o.size_bits + 1,
                    Kind::CNode,
                    dest,
                    1,
                    false,
                )?;
                dest
            }
            _ => match self.of(Kind::CNode) {
                Some(new) => new,
                None => return Ok(()),
            },
        };
        let result = note(
            Invocation::CNodeGrow,
            invoke::cnode_grow(self.cptr(old), self.cptr(new)),
        );
        let family = |model: &Model, obj: usize| -> Vec<usize> {
            (0..model.nodes.len())
                .filter(|&n| model.nodes[n].is_some_and(|node| node.obj == obj))
                .collect()
        };
        let predicted = match (self.model.obj_of(old), self.model.obj_of(new)) {
            (Some((x, ox)), Some((y, oy)))
                if ox.kind == Kind::CNode
                    && oy.kind == Kind::CNode
                    && oy.size_bits > ox.size_bits
                    && family(&self.model, y).len() == 1 =>
            {
                let tops: Vec<usize> = family(&self.model, x)
                    .into_iter()
                    .filter(|&n| {
                        self.model
                            .node(n)
                            .parent
                            .is_none_or(|p| self.model.node(p).obj != x)
                    })
                    .collect();
                (tops.len() == 1).then(|| (x, y, tops[0], family(&self.model, y)[0]))
            }
            _ => None,
        };
        match (predicted, &result) {
            (Some((x, y, top, named_new)), Ok(())) => {
                self.model.objs.swap(x, y);
                let (a, b) = (self.model.node(top), self.model.node(named_new));
                let top_node = self.model.nodes[top].as_mut().expect("node");
                (top_node.parent, top_node.under_arena) = (b.parent, b.under_arena);
                let new_node = self.model.nodes[named_new].as_mut().expect("node");
                (new_node.parent, new_node.under_arena) = (a.parent, a.under_arena);
                Ok(())
            }
            (None, Err(_)) => Ok(()),
            (predicted, result) => Err(format!(
                "grow slot {old} into slot {new}: the model predicted {} but the kernel answered {result:?}",
                if predicted.is_some() { "success" } else { "failure" }
            )),
        }
    }

    fn op_delete(&mut self) -> Result<(), String> {
        let index = if self.rng.chance(90) {
            match self.occupied() {
                Some(i) => i,
                None => return Ok(()),
            }
        } else {
            self.any_slot()
        };
        check(
            note(
                Invocation::CNodeDelete,
                invoke::cnode_delete(slot::ROOT_CNODE, self.cptr(index)),
            ),
            "delete",
        )?;
        if let Some(node) = self.model.at(index) {
            self.model.delete(node);
        }
        Ok(())
    }

    fn op_revoke(&mut self) -> Result<(), String> {
        // Mostly untyped memory (everything made from it goes).
        let index = if self.rng.chance(50) {
            self.of(Kind::Untyped)
        } else {
            self.occupied()
        };
        let Some(index) = index else {
            return Ok(());
        };
        let result = note(
            Invocation::CNodeRevoke,
            invoke::cnode_revoke(slot::ROOT_CNODE, self.cptr(index)),
        );
        match (self.model.at(index), result) {
            (Some(node), Ok(())) => {
                let kind = self.model.objs[self.model.node(node).obj].kind;
                self.model.revoke(node);
                if kind == Kind::Untyped && self.rng.chance(70) {
                    self.sentinels(index)?;
                }
                Ok(())
            }
            (None, Err(_)) => Ok(()),
            (node, result) => Err(format!(
                "revoke of slot {index} (model: {}) answered {result:?}",
                if node.is_some() { "occupied" } else { "empty" }
            )),
        }
    }

    /// Retypes sentinel frames from the just-revoked untyped in `source`
    /// (where the revoked objects lived), maps them into the driver and
    /// fills them with their pattern.
    fn sentinels(&mut self, source: usize) -> Result<(), String> {
        let live = self
            .model
            .objs
            .iter()
            .filter(|o| o.live && o.sentinel_node.is_some())
            .count();
        for _ in 0..2 {
            if live >= MAX_SENTINELS {
                return Ok(());
            }
            let Some(dest) = self.empty() else {
                return Ok(());
            };
            let before = self.model.at(dest);
            self.retype(source, ObjectType::Frame4K, 0, Kind::Frame, dest, 1, true)?;
            let Some(node) = self.model.at(dest) else {
                return Ok(());
            };
            if before.is_some() {
                return Ok(());
            }
            let obj = self.model.node(node).obj;
            let vaddr = self.next_sentinel;
            self.next_sentinel += PAGE_SIZE;
            check(
                note(
                    Invocation::FrameMap,
                    invoke::frame_map(
                        self.cptr(dest),
                        slot::ROOT_VSPACE,
                        vaddr,
                        Rights::READ.union(Rights::WRITE),
                    ),
                ),
                "map a sentinel",
            )?;
            self.model.nodes[node].as_mut().expect("node").mapped = true;
            let phys = self.model.objs[obj].phys;
            for word in 0..PAGE_SIZE / 8 {
                probe_write(vaddr + word * 8, pattern(phys, word));
            }
            let o = &mut self.model.objs[obj];
            o.vaddr = vaddr;
            o.sentinel_node = Some(node);
            self.sentinels_made += 1;
        }
        Ok(())
    }

    fn op_tcb(&mut self) -> Result<(), String> {
        let Some(tcb) = self.of(Kind::Tcb) else {
            return Ok(());
        };
        let t = self.cptr(tcb);
        match self.rng.below(10) {
            0 | 1 => {
                // Configure with graph objects (suspend first).
                let _ = note(Invocation::TcbSuspend, invoke::tcb_suspend(t));
                let cnode = self.of(Kind::CNode);
                let vspace = self.of(Kind::VSpace);
                let buffer = if self.rng.chance(80) {
                    self.writable_frame()
                } else {
                    None
                };
                let fault = if self.rng.chance(80) {
                    self.of(Kind::Endpoint)
                } else {
                    None
                };
                let (Some(cnode), Some(vspace)) = (cnode, vspace) else {
                    return Ok(());
                };
                let config = TcbConfig {
                    cnode: self.cptr(cnode),
                    vspace: self.cptr(vspace),
                    ipc_buffer_frame: buffer.map_or(0, |b| self.cptr(b)),
                    ipc_buffer_vaddr: 0x10_0000,
                    fault_endpoint: fault.map_or(0, |f| self.cptr(f)),
                };
                let result = note(Invocation::TcbConfigure, invoke::tcb_configure(t, &config));
                if result.is_ok() {
                    let tcb_obj = self.model.node(self.model.at(tcb).expect("tcb")).obj;
                    for index in 0..4u8 {
                        let held = (0..self.model.nodes.len()).find(|&n| {
                            matches!(self.model.nodes[n], Some(x) if x.loc == Loc::TcbSlot { tcb: tcb_obj, index })
                        });
                        if let Some(held) = held {
                            self.model.delete(held);
                        }
                    }
                    // The TCB itself may be gone if it held its own last capability.
                    if self.model.objs[tcb_obj].live {
                        for (index, given) in [
                            (0u8, Some(cnode)),
                            (1, Some(vspace)),
                            (2, buffer),
                            (3, fault),
                        ] {
                            if let Some(given) = given {
                                let node = self.model.at(given).expect("given");
                                let n = self.model.node(node);
                                self.model.add(
                                    Loc::TcbSlot {
                                        tcb: tcb_obj,
                                        index,
                                    },
                                    n.obj,
                                    Some(node),
                                    n.rights,
                                );
                            }
                        }
                        self.model.objs[tcb_obj].resumed = false;
                    }
                    self.model.collect();
                }
            }
            2 => {
                let registers = Registers {
                    rip: 0x1000,
                    rsp: 0x2000,
                    rflags: 0x202,
                    ..Registers::default()
                };
                let _ = note(
                    Invocation::TcbWriteRegisters,
                    invoke::tcb_write_registers(t, &registers),
                );
            }
            3 => {
                let _ = note(Invocation::TcbReadRegisters, invoke::tcb_read_registers(t));
            }
            4 => {
                let _ = note(Invocation::TcbResume, invoke::tcb_resume(t));
            }
            5 => {
                let _ = note(Invocation::TcbSuspend, invoke::tcb_suspend(t));
            }
            6 => {
                let cpu = self.rng.below(self.info.cpu_count + 1);
                let _ = note(Invocation::TcbSetAffinity, invoke::tcb_set_affinity(t, cpu));
            }
            7 => {
                if let Some(n) = self.of(Kind::Notification) {
                    let _ = note(
                        Invocation::TcbBindNotification,
                        invoke::tcb_bind_notification(t, self.cptr(n)),
                    );
                }
            }
            8 => {
                // Confinement is a reference the kernel clears (the
                // Scheduler's destructor suspends the thread for good, the
                // TCB's leaves the list): nothing for the model to track;
                // the invariant check walks it.
                if let Some(s) = self.of(Kind::Scheduler) {
                    let _ = note(Invocation::TcbConfine, invoke::tcb_confine(t, self.cptr(s)));
                }
            }
            _ => {
                let _ = note(
                    Invocation::TcbUnbindNotification,
                    invoke::tcb_unbind_notification(t),
                );
            }
        }
        Ok(())
    }

    fn op_frame(&mut self) -> Result<(), String> {
        let mapped: Vec<usize> = self
            .model
            .slots_of(Kind::Frame)
            .into_iter()
            .filter(|&i| {
                let node = self.model.node(self.model.at(i).expect("frame"));
                node.mapped && !self.model.objs[node.obj].sentinel
            })
            .collect();
        let frame = if self.rng.chance(30) {
            self.rng.pick(&mapped)
        } else {
            self.writable_frame()
        };
        let Some(frame) = frame else {
            return Ok(());
        };
        let f = self.cptr(frame);
        match self.rng.below(4) {
            0 | 1 => {
                let space = if self.rng.chance(50) {
                    self.of(Kind::VSpace)
                } else {
                    self.of(Kind::GuestSpace)
                };
                let Some(space) = space else {
                    return Ok(());
                };
                // Near addresses, or far apart ones that need new page
                // tables (a small VSpace runs out: `OutOfTableMemory`).
                let vaddr = if self.rng.chance(60) {
                    0x1000 * (1 + self.rng.below(16))
                } else {
                    (self.rng.below(64) << 39) | (self.rng.below(512) << 30) | 0x20_0000
                };
                let result = note(
                    Invocation::FrameMap,
                    invoke::frame_map(
                        f,
                        self.cptr(space),
                        vaddr,
                        Rights::READ.union(Rights::WRITE),
                    ),
                );
                if result.is_ok() {
                    let node = self.model.at(frame).expect("frame");
                    self.model.nodes[node].as_mut().expect("node").mapped = true;
                }
            }
            2 => {
                let result = note(Invocation::FrameUnmap, invoke::frame_unmap(f));
                if result.is_ok() {
                    let node = self.model.at(frame).expect("frame");
                    self.model.nodes[node].as_mut().expect("node").mapped = false;
                }
            }
            _ => {
                let (_, o) = self.model.obj_of(frame).expect("frame");
                let address = note(Invocation::FrameGetAddress, invoke::frame_get_address(f));
                if address != Ok(o.phys) {
                    return Err(format!("FrameGetAddress {address:x?}, model {:#x}", o.phys));
                }
            }
        }
        Ok(())
    }

    fn op_sched(&mut self) -> Result<(), String> {
        let Some(scheduler) = self.of(Kind::Scheduler) else {
            return Ok(());
        };
        let s = self.cptr(scheduler);
        let cpus = self.info.cpu_count;
        match self.rng.below(10) {
            0..=2 => self.bind(scheduler)?,
            3 => {
                // Mostly a binding the model has (a Scheduler capability
                // and a Cpu capability of a CPU bound to it): any other
                // pair is `NotOwned`.
                let mut pairs = Vec::new();
                for c in self.model.slots_of(Kind::Cpu) {
                    let index = self.model.obj_of(c).map(|(_, o)| o.index as usize);
                    let Some(owner) = index.and_then(|i| self.model.bindings[i]) else {
                        continue;
                    };
                    for t in self.model.slots_of(Kind::Scheduler) {
                        if self.model.obj_of(t).map(|(o, _)| o) == Some(owner) {
                            pairs.push((t, c));
                        }
                    }
                }
                let (s, cpu) = match self.rng.pick(&pairs) {
                    Some((t, c)) if self.rng.chance(80) => (self.cptr(t), Some(c)),
                    _ => (s, self.of(Kind::Cpu)),
                };
                let Some(cpu) = cpu else {
                    return Ok(());
                };
                let result = note(
                    Invocation::SchedulerUnbindCpu,
                    invoke::scheduler_unbind_cpu(s, self.cptr(cpu)),
                );
                if result.is_ok() {
                    let (_, c) = self.model.obj_of(cpu).expect("cpu");
                    self.model.unbind(c.index as usize);
                    self.model.collect();
                }
            }
            4 => {
                let result = note(
                    Invocation::SchedulerAdopt,
                    invoke::scheduler_adopt(s, self.spinner.tcb, 1 + self.rng.below(9)),
                );
                if result.is_ok() {
                    self.model.adopted_by = self.model.obj_of(scheduler).map(|(o, _)| o);
                }
            }
            5 => {
                let result = note(
                    Invocation::SchedulerRelease,
                    invoke::scheduler_release(s, self.spinner.tcb),
                );
                if result.is_ok() {
                    self.model.adopted_by = None;
                }
            }
            6 | 7 => {
                // Mostly where it can run: the adopting Scheduler, a CPU bound to it.
                let (mut s, mut cpu) = (s, self.rng.below(cpus));
                if let Some(adopter) = self.model.adopted_by {
                    let via: Vec<usize> = (0..SLOTS as usize)
                        .filter(|&i| self.model.obj_of(i).map(|(o, _)| o) == Some(adopter))
                        .collect();
                    let bound: Vec<u64> = (0..cpus)
                        .filter(|&c| self.model.bindings[c as usize] == Some(adopter))
                        .collect();
                    if let (Some(v), true) = (self.rng.pick(&via), self.rng.chance(80)) {
                        if bound.is_empty() {
                            self.bind(v)?;
                        }
                        let bound: Vec<u64> = (0..cpus)
                            .filter(|&c| self.model.bindings[c as usize] == Some(adopter))
                            .collect();
                        if let Some(c) = self.rng.pick(&bound) {
                            s = self.cptr(v);
                            cpu = c;
                        }
                        if self.spinner_suspended
                            && note(Invocation::TcbResume, invoke::tcb_resume(self.spinner.tcb))
                                .is_ok()
                        {
                            self.spinner_suspended = false;
                        }
                    }
                }
                let budget = 200_000 + self.rng.below(2_000_000);
                if self.rng.chance(30) {
                    // Dispatch and wait in one call, a word already pending on
                    // the driver's own notification so that the wait returns
                    // at once; a refused call changes nothing, so the word is
                    // taken back.
                    let _ = tarn_rt::signal(self.sleeper);
                    let result = note(
                        Invocation::SchedulerDispatchWait,
                        invoke::scheduler_dispatch_wait(
                            s,
                            cpu,
                            self.spinner.tcb,
                            budget,
                            self.sleeper,
                        ),
                    );
                    if result.is_err() {
                        let _ = tarn_rt::poll(self.sleeper);
                    }
                } else {
                    let _ = note(
                        Invocation::SchedulerDispatch,
                        invoke::scheduler_dispatch(s, cpu, self.spinner.tcb, budget),
                    );
                }
            }
            8 => {
                let adopter: Vec<usize> = (0..SLOTS as usize)
                    .filter(|&i| {
                        self.model.adopted_by.is_some()
                            && self.model.obj_of(i).map(|(o, _)| o) == self.model.adopted_by
                    })
                    .collect();
                let q = self.rng.pick(&adopter).map_or(s, |a| self.cptr(a));
                let _ = note(
                    Invocation::SchedulerQueryThread,
                    invoke::scheduler_query_thread(q, self.spinner.tcb),
                );
                let _ = note(
                    Invocation::SchedulerSetTick,
                    invoke::scheduler_set_tick(s, self.rng.below(cpus), 500_000),
                );
            }
            _ => {
                let _ = note(
                    Invocation::SchedulerPreempt,
                    invoke::scheduler_preempt(s, self.rng.below(cpus)),
                );
                if self.rng.chance(40) {
                    let result = if self.spinner_suspended {
                        note(Invocation::TcbResume, invoke::tcb_resume(self.spinner.tcb))
                    } else {
                        note(
                            Invocation::TcbSuspend,
                            invoke::tcb_suspend(self.spinner.tcb),
                        )
                    };
                    if result.is_ok() {
                        self.spinner_suspended = !self.spinner_suspended;
                    }
                }
            }
        }
        Ok(())
    }

    /// `SchedulerBindCpu` on the Scheduler in slot `scheduler` with graph
    /// objects (a Cpu capability, a ring frame, a notification).
    fn bind(&mut self, scheduler: usize) -> Result<(), String> {
        let s = self.cptr(scheduler);
        let (Some(cpu), Some(ring), Some(notify)) = (
            self.of(Kind::Cpu),
            self.writable_frame(),
            self.of(Kind::Notification),
        ) else {
            return Ok(());
        };
        let result = note(
            Invocation::SchedulerBindCpu,
            invoke::scheduler_bind_cpu(s, self.cptr(cpu), self.cptr(ring), self.cptr(notify)),
        );
        if result.is_ok() {
            let (_, c) = self.model.obj_of(cpu).expect("cpu");
            let index = c.index as usize;
            if self.model.bindings[index].is_some() {
                return Err(format!(
                    "SchedulerBindCpu bound CPU {index}, which the model has bound"
                ));
            }
            let sched_obj = self.model.obj_of(scheduler).expect("scheduler").0;
            self.model.bindings[index] = Some(sched_obj);
            for (role, given) in [(0u8, cpu), (1, ring), (2, notify)] {
                let node = self.model.at(given).expect("given");
                let n = self.model.node(node);
                self.model.add(
                    Loc::Binding { cpu: index, role },
                    n.obj,
                    Some(node),
                    n.rights,
                );
            }
            let _ = note(
                Invocation::SchedulerSetTick,
                invoke::scheduler_set_tick(s, c.index, 1_000_000),
            );
        }
        Ok(())
    }

    fn op_cpu_copy(&mut self) -> Result<(), String> {
        if self.info.first_cpu_slot == 0 {
            return Ok(());
        }
        let Some(dest) = self.empty() else {
            return Ok(());
        };
        let cpu = self.rng.below(self.info.cpu_count);
        check(
            note(
                Invocation::CNodeCopy,
                invoke::cnode_copy(
                    slot::ROOT_CNODE,
                    self.cptr(dest),
                    slot::ROOT_CNODE,
                    self.info.first_cpu_slot + cpu,
                    Rights::ALL,
                ),
            ),
            "copy a Cpu capability",
        )?;
        let mut obj = Obj::new(Kind::Cpu);
        obj.index = cpu;
        let obj = self.model.add_obj(obj);
        self.model
            .add(Loc::Slot(self.cptr(dest)), obj, None, Rights::ALL);
        let _ = note(Invocation::CpuInfo, invoke::cpu_info(self.cptr(dest)));
        Ok(())
    }

    /// Waits for the vCPU run in progress (all of it with `wait`, else only
    /// if it is done); fails if it took too long.
    fn finish_run(&mut self, wait: bool) -> Result<(), String> {
        let Some((seq, started)) = self.run else {
            return Ok(());
        };
        if wait && self.runner_suspended {
            check(
                note(Invocation::TcbResume, invoke::tcb_resume(self.runner.tcb)),
                "resume the runner",
            )?;
            self.runner_suspended = false;
            self.run = Some((seq, self.now_ns()));
            self.run_looked = (0, 0);
            return self.finish_run(true);
        }
        loop {
            if self.shared.v_done.load(Ordering::SeqCst) == seq {
                self.run = None;
                return self.drop_run_cap();
            }
            if self.runner_suspended {
                return Ok(());
            }
            let now = self.now_ns();
            let (last, gap) = self.run_looked;
            self.run_looked = (now, gap.max(now.saturating_sub(last.max(started))));
            if now.saturating_sub(started) > RUN_LIMIT_NS {
                let state = invoke::tcb_read_registers(self.runner.tcb).map(|s| (s.state(), s.rip));
                // Where the CPUs' time goes meanwhile (idle, system threads
                // and guests, dispatched threads), over 100 ms of the
                // driver's sleep: a guest that never exits shows as system
                // time, a runner nobody runs as idle time.
                let before = invoke::machine_times(slot::MACHINE);
                let _ = tarn_rt::sleep(self.sleeper, 100_000_000);
                let after = invoke::machine_times(slot::MACHINE);
                let split = match (before, after) {
                    (Ok(b), Ok(a)) => format!(
                        "idle {} ms, system {} ms, dispatched {} ms of {} ms",
                        (a.idle_ns - b.idle_ns) / 1_000_000,
                        (a.system_ns - b.system_ns) / 1_000_000,
                        (a.dispatched_ns - b.dispatched_ns) / 1_000_000,
                        (a.now_ns - b.now_ns) / 1_000_000
                    ),
                    _ => String::from("no times"),
                };
                let cpus: Vec<bool> = (0..self.info.cpu_count)
                    .map(|c| self.model.bindings[c as usize].is_some())
                    .collect();
                return Err(format!(
                    "VcpuRun with a {} ms timeout has not returned after {} ms (the driver's longest time between two looks {} ms; runner state and rip {state:x?}, runner {}, run {}/{}; CPUs bound {cpus:?}; spinner adopted {} suspended {}; then {split})",
                    RUN_TIMEOUT_NS / 1_000_000,
                    now.saturating_sub(started) / 1_000_000,
                    self.run_looked.1 / 1_000_000,
                    if self.runner_suspended { "suspended" } else { "not suspended" },
                    self.shared.v_done.load(Ordering::SeqCst),
                    self.shared.v_seq.load(Ordering::SeqCst),
                    self.model.adopted_by.is_some(),
                    self.spinner_suspended
                ));
            }
            if !wait {
                return Ok(());
            }
            self.nap();
        }
    }

    /// Deletes the run slot's capability (the last one to a Vcpu destroys it).
    fn drop_run_cap(&mut self) -> Result<(), String> {
        let Some(node) = self.model.find(Loc::Runner) else {
            return Ok(());
        };
        check(
            note(
                Invocation::CNodeDelete,
                invoke::cnode_delete(slot::ROOT_CNODE, self.run_slot),
            ),
            "delete the run slot's capability",
        )?;
        self.model.delete(node);
        Ok(())
    }

    /// Fills the run slot with a copy of fuzz slot `index` (a capability
    /// that cannot be copied leaves it empty: the runner's calls then fail).
    fn fill_run_slot(&mut self, index: usize) -> Result<(), String> {
        let copied = note(
            Invocation::CNodeCopy,
            invoke::cnode_copy(
                slot::ROOT_CNODE,
                self.run_slot,
                slot::ROOT_CNODE,
                self.cptr(index),
                Rights::ALL,
            ),
        );
        let node = self.model.at(index).expect("occupied");
        let n = self.model.node(node);
        let predicted = self.model.objs[n.obj].kind.copyable();
        if copied.is_ok() != predicted {
            return Err(format!(
                "copying slot {index} (a {:?}) into the run slot answered {copied:?}",
                self.model.objs[n.obj].kind
            ));
        }
        if copied.is_ok() {
            self.model.add(Loc::Runner, n.obj, Some(node), n.rights);
        }
        Ok(())
    }

    fn op_vcpu(&mut self) -> Result<(), String> {
        match self.rng.below(6) {
            0 => {
                // Bind a Vcpu of the graph to the runner (once the runner is idle).
                if self.run.is_some() {
                    return Ok(());
                }
                let (Some(vcpu), Some(space)) = (self.of(Kind::Vcpu), self.of(Kind::GuestSpace))
                else {
                    return Ok(());
                };
                // The register page: the first frame in the graph (chosen
                // without a draw, so that the rest of the run's choices
                // stay those of its seed).
                let Some(page) = self
                    .model
                    .slots_of(Kind::Frame)
                    .into_iter()
                    .find(|&i| !self.model.obj_of(i).is_some_and(|(_, o)| o.sentinel))
                else {
                    return Ok(());
                };
                // The register page: the guest's initial registers, which
                // the runner's runs load (the kernel writes them back at
                // each exit).
                let initial = actors::initial_registers();
                let filled = tarn_rt::process::fill_frame(&self.res, self.cptr(page), |bytes| {
                    let at = core::mem::offset_of!(tarn_rt::abi::vcpu::RegisterPage, registers);
                    for (chunk, word) in bytes[at..].chunks_exact_mut(8).zip(initial) {
                        chunk.copy_from_slice(&word.to_le_bytes());
                    }
                });
                if filled.is_err() {
                    return Ok(());
                }
                let result = note(
                    Invocation::VcpuBind,
                    invoke::vcpu_bind(
                        self.cptr(vcpu),
                        self.runner.tcb,
                        self.cptr(space),
                        self.cptr(page),
                    ),
                );
                if result == Err(Error::NotSupported) {
                    return Ok(());
                }
                if result.is_ok() {
                    let vcpu_obj = self.model.obj_of(vcpu).expect("vcpu").0;
                    if self.model.actor_vcpu.is_some() {
                        return Err(String::from(
                            "VcpuBind bound the runner, which the model has bound",
                        ));
                    }
                    self.model.actor_vcpu = Some(vcpu_obj);
                    self.model.objs[vcpu_obj].bound_to_actor = true;
                    for (loc, source) in [
                        (Loc::VcpuSpace { vcpu: vcpu_obj }, space),
                        (Loc::VcpuPage { vcpu: vcpu_obj }, page),
                    ] {
                        let node = self.model.at(source).expect("bound capability");
                        let n = self.model.node(node);
                        self.model.add(loc, n.obj, Some(node), n.rights);
                    }
                }
            }
            1 => {
                // Code for a guest: a frame with `jmp $`, mapped at the load address.
                let (Some(frame), Some(space), Some(dest)) = (
                    self.writable_frame(),
                    self.of(Kind::GuestSpace),
                    self.empty(),
                ) else {
                    return Ok(());
                };
                let filled = tarn_rt::process::fill_frame(&self.res, self.cptr(frame), |bytes| {
                    bytes[..2].copy_from_slice(&[0xEB, 0xFE]);
                });
                if filled.is_err() {
                    return Ok(());
                }
                let copy = note(
                    Invocation::CNodeCopy,
                    invoke::cnode_copy(
                        slot::ROOT_CNODE,
                        self.cptr(dest),
                        slot::ROOT_CNODE,
                        self.cptr(frame),
                        Rights::ALL,
                    ),
                );
                if copy.is_ok() {
                    let node = self.model.at(frame).expect("frame");
                    let n = self.model.node(node);
                    let new =
                        self.model
                            .add(Loc::Slot(self.cptr(dest)), n.obj, Some(node), n.rights);
                    let mapped = note(
                        Invocation::FrameMap,
                        invoke::frame_map(
                            self.cptr(dest),
                            self.cptr(space),
                            GUEST_LOAD,
                            Rights::ALL,
                        ),
                    );
                    if mapped.is_ok() {
                        self.model.nodes[new].as_mut().expect("new").mapped = true;
                    }
                }
            }
            2 | 3 => {
                // Run the bound Vcpu: the runner invokes a copy of some
                // fuzz slot's capability, made in the run slot.
                if self.run.is_some() {
                    return Ok(());
                }
                // Mostly through a capability to the Vcpu bound to the runner.
                let bound: Vec<usize> = (0..SLOTS as usize)
                    .filter(|&i| {
                        self.model.actor_vcpu.is_some()
                            && self.model.obj_of(i).map(|(o, _)| o) == self.model.actor_vcpu
                    })
                    .collect();
                let vcpu = if self.rng.chance(85) && !bound.is_empty() {
                    self.rng.pick(&bound)
                } else {
                    self.of(Kind::Vcpu)
                };
                let Some(vcpu) = vcpu else {
                    return Ok(());
                };
                if self.model.slots[vcpu].is_some() {
                    self.fill_run_slot(vcpu)?;
                }
                let seq = self.shared.v_seq.load(Ordering::SeqCst) + 1;
                self.shared.v_cmd[0].store(self.run_slot, Ordering::SeqCst);
                self.shared.v_cmd[1].store(RUN_TIMEOUT_NS, Ordering::SeqCst);
                self.shared.v_seq.store(seq, Ordering::SeqCst);
                let signalled = tarn_rt::signal(self.v_bell);
                syscall(Syscall::Signal, &signalled);
                self.run = Some((seq, self.now_ns()));
                self.run_looked = (0, 0);
            }
            4 => {
                // Delete the capability the runner is invoking, underneath it.
                if self.run.is_some() && self.rng.chance(25) {
                    return self.drop_run_cap();
                }
                // Suspend the runner (inside VcpuRun or not), or resume it.
                let result = if self.runner_suspended {
                    note(Invocation::TcbResume, invoke::tcb_resume(self.runner.tcb))
                } else {
                    note(Invocation::TcbSuspend, invoke::tcb_suspend(self.runner.tcb))
                };
                if result.is_ok() {
                    self.runner_suspended = !self.runner_suspended;
                    if !self.runner_suspended {
                        if let Some((seq, _)) = self.run {
                            self.run = Some((seq, self.now_ns()));
                            self.run_looked = (0, 0);
                        }
                    }
                }
            }
            _ => {
                // Only the bound thread may write segments.
                if let Some(vcpu) = self.of(Kind::Vcpu) {
                    let _ = note(
                        Invocation::VcpuWriteSegment,
                        invoke::vcpu_write_segment(
                            self.cptr(vcpu),
                            tarn_rt::abi::vcpu::Segment::Cs,
                            0,
                            0,
                            0xFFFF,
                            0x9B,
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Sleeps 1 ms (waiting for an actor), and counts it.
    fn nap(&mut self) {
        self.naps += 1;
        let _ = tarn_rt::sleep(self.sleeper, 1_000_000);
    }

    /// The receiver's thread state.
    fn receiver_state(&self) -> Option<ThreadState> {
        invoke::tcb_read_registers(self.receiver.tcb)
            .ok()
            .and_then(|s| s.state())
    }

    /// Waits (up to 2 s) until the receiver has reported `reports` times and
    /// is blocked (idle on its doorbell, or in a receive).
    fn settle_receiver(&mut self, reports: u64) -> Result<(), String> {
        for _ in 0..2000 {
            let phase = self.shared.r_phase.load(Ordering::SeqCst);
            let done = self.shared.r_reports.load(Ordering::SeqCst) >= reports;
            let state = self.receiver_state();
            let blocked = matches!(
                state,
                Some(ThreadState::BlockedOnNotification | ThreadState::BlockedOnReceive)
            );
            if blocked && (done || phase == actors::PHASE_RECV || phase == actors::PHASE_WAIT) {
                return Ok(());
            }
            self.nap();
        }
        Err(format!(
            "the receiver did not settle (phase {}, reports {}, state {:?})",
            self.shared.r_phase.load(Ordering::SeqCst),
            self.shared.r_reports.load(Ordering::SeqCst),
            self.receiver_state()
        ))
    }

    /// After the receiver settled: what it waits on now.
    fn receiver_waits_on(&mut self, endpoint_obj: Option<usize>, second_obj: Option<usize>) {
        self.r_reports_seen = self.shared.r_reports.load(Ordering::SeqCst);
        let phase = self.shared.r_phase.load(Ordering::SeqCst);
        let receiving = self.receiver_state() == Some(ThreadState::BlockedOnReceive);
        self.model.receiver_on = match (phase, receiving) {
            (actors::PHASE_RECV, true) => endpoint_obj,
            (actors::PHASE_REPLY_RECV, true) => second_obj,
            _ => None,
        };
    }

    fn op_ipc(&mut self) -> Result<(), String> {
        match self.rng.below(10) {
            0 | 1 => self.receiver_recv(),
            2..=4 => self.send_to_receiver(),
            5 => {
                // The receiver waits on a notification with a timeout; a signal may come.
                if self.shared.r_phase.load(Ordering::SeqCst) != actors::PHASE_IDLE
                    || self.receiver_state() != Some(ThreadState::BlockedOnNotification)
                {
                    return Ok(());
                }
                let Some(n) = self.of(Kind::Notification) else {
                    return Ok(());
                };
                let reports = self.shared.r_reports.load(Ordering::SeqCst) + 1;
                self.post_receiver([actors::R_WAIT, self.cptr(n), 1_000_000, 0, 0, 0]);
                if self.rng.chance(60) {
                    let r = tarn_rt::signal(self.cptr(n));
                    syscall(Syscall::Signal, &r);
                }
                self.settle_receiver(reports)?;
                self.receiver_waits_on(None, None);
                Ok(())
            }
            6 => {
                if let Some(n) = self.of(Kind::Notification) {
                    let r = tarn_rt::signal(self.cptr(n));
                    syscall(Syscall::Signal, &r);
                    let r = tarn_rt::poll(self.cptr(n));
                    syscall(Syscall::Poll, &r);
                    let r = tarn_rt::wait(self.cptr(n), 10_000);
                    syscall(Syscall::Wait, &r);
                }
                Ok(())
            }
            7 => {
                // Take a fault message a graph thread sent (the driver then
                // owes it the reply; `Reply` below resumes it).
                let endpoints = self.model.slots_of(Kind::Endpoint);
                for &e in &endpoints {
                    let r = tarn_rt::nb_recv(self.cptr(e));
                    syscall(Syscall::NbRecv, &r);
                    if r.is_ok() {
                        break;
                    }
                }
                // Malformed calls: an unknown system call number, a message
                // longer than 64 words, text outside the caller's memory.
                if let Some(e) = self.rng.pick(&endpoints) {
                    let r = syscall_raw(99, 0, 0);
                    syscall(Syscall::Yield, &r);
                    let r = syscall_raw(
                        Syscall::NbSend as u64,
                        self.cptr(e),
                        MessageInfo::new(1, 0, 0).0 | 100,
                    );
                    syscall(Syscall::NbSend, &r);
                    let r = syscall_raw(Syscall::DebugWrite as u64, 0xFFFF_8000_0000_0000, 16);
                    syscall(Syscall::DebugWrite, &r);
                }
                Ok(())
            }
            8 => {
                tarn_rt::yield_now();
                coverage::count_ok(Syscall::Yield);
                let r = tarn_rt::syscall::debug_write("fuzz-graph: .\n");
                syscall(Syscall::DebugWrite, &r);
                let r = note(
                    Invocation::MachineTimes,
                    invoke::machine_times(slot::MACHINE),
                );
                r.map(|_| ()).map_err(|e| format!("MachineTimes: {e:?}"))
            }
            _ => {
                // A reply with no caller is an error; a send on a notification signals it.
                let r = tarn_rt::reply(MessageInfo::new(0, 0, 0), [0; 4]);
                syscall(Syscall::Reply, &r);
                if let Some(n) = self.of(Kind::Notification) {
                    let r = tarn_rt::nb_send(self.cptr(n), MessageInfo::new(0, 0, 0), [0; 4]);
                    syscall(Syscall::NbSend, &r);
                }
                Ok(())
            }
        }
    }

    /// Whether a thread of the graph is runnable.
    /// An `NbSend` to the receiver's endpoint found no receiver, though
    /// the kernel had it in `Recv` just before (`seen`: its reports then):
    /// it must report a graph thread's fault message that came first.
    fn receiver_taken_first(&mut self, seen: u64) -> Result<(), String> {
        for _ in 0..2000 {
            if self.shared.r_reports.load(Ordering::SeqCst) != seen {
                break;
            }
            self.nap();
        }
        let reports = self.shared.r_reports.load(Ordering::SeqCst);
        let label = self.shared.r_out[2].load(Ordering::SeqCst);
        let code = self.shared.r_out[0].load(Ordering::SeqCst);
        let fault = code == 0
            && [
                tarn_rt::abi::fault::PAGE_FAULT,
                tarn_rt::abi::fault::EXCEPTION,
                tarn_rt::abi::fault::WATCHDOG,
            ]
            .contains(&label);
        if reports == seen || !fault {
            return Err(format!(
                "NbSend to the receiver in Recv answered WouldBlock, and the receiver reported {} (code {code}, label {label:#x}; state now {:?})",
                if reports == seen { "nothing" } else { "something else" },
                self.receiver_state()
            ));
        }
        println!(
            "fuzz-graph: step {}: a graph thread's fault (label {label:#x}) reached the receiver before the driver's NbSend",
            self.step
        );
        self.settle_receiver(reports)?;
        self.model.receiver_on = None;
        self.r_reports_seen = reports;
        Ok(())
    }

    fn graph_thread_runnable(&self) -> bool {
        self.model.slots_of(Kind::Tcb).into_iter().any(|i| {
            invoke::tcb_read_registers(self.cptr(i)).map_or(true, |s| {
                s.state() != Some(ThreadState::Inactive)
                    && s.state() != Some(ThreadState::BlockedOnSend)
                    && s.state() != Some(ThreadState::BlockedOnReply)
            })
        })
    }

    fn post_receiver(&mut self, cmd: [u64; 6]) {
        for (i, word) in cmd.iter().enumerate() {
            self.shared.r_cmd[i].store(*word, Ordering::SeqCst);
        }
        self.shared.r_seq.fetch_add(1, Ordering::SeqCst);
        let r = tarn_rt::signal(self.r_bell);
        syscall(Syscall::Signal, &r);
    }

    /// Asks the idle receiver to receive on a graph endpoint, with a
    /// receive window in the fuzz slots (often not empty).
    fn receiver_recv(&mut self) -> Result<(), String> {
        if self.shared.r_phase.load(Ordering::SeqCst) != actors::PHASE_IDLE
            || self.receiver_state() != Some(ThreadState::BlockedOnNotification)
        {
            return Ok(());
        }
        let (Some(endpoint), Some(second)) = (self.of(Kind::Endpoint), self.of(Kind::Endpoint))
        else {
            return Ok(());
        };
        let window = self.any_slot();
        let count = self.rng.below(4).min(SLOTS - window as u64);
        let reply_recv = u64::from(self.rng.chance(40));
        let endpoint_obj = self.model.obj_of(endpoint).map(|(o, _)| o);
        let second_obj = self.model.obj_of(second).map(|(o, _)| o);
        let reports = self.shared.r_reports.load(Ordering::SeqCst);
        self.post_receiver([
            actors::R_RECV,
            self.cptr(endpoint),
            self.cptr(window),
            count,
            reply_recv,
            self.cptr(second),
        ]);
        // It either blocks in the receive or reports at once.
        for _ in 0..2000 {
            let state = self.receiver_state();
            let phase = self.shared.r_phase.load(Ordering::SeqCst);
            let reported = self.shared.r_reports.load(Ordering::SeqCst) > reports;
            if (phase == actors::PHASE_RECV && state == Some(ThreadState::BlockedOnReceive))
                || (reported
                    && matches!(
                        state,
                        Some(ThreadState::BlockedOnNotification | ThreadState::BlockedOnReceive)
                    ))
            {
                self.receiver_waits_on(endpoint_obj, second_obj);
                if let Some(obj) = self.model.receiver_on {
                    if self.model.objs[obj].kind != Kind::Endpoint {
                        return Err(format!(
                            "the receiver blocks in Recv on a {:?}",
                            self.model.objs[obj].kind
                        ));
                    }
                }
                return Ok(());
            }
            if phase == actors::PHASE_RECV
                && state == Some(ThreadState::BlockedOnNotification)
                && !reported
                && self.model.obj_of(endpoint).map(|(_, o)| o.kind) == Some(Kind::Notification)
            {
                // `Recv` on a notification waits on it (with no timeout).
                // Signal it through a capability that may, and let the
                // receiver report; with none, it waits until a later
                // signal (the model has it on no endpoint meanwhile).
                let notification = self.model.obj_of(endpoint).map(|(o, _)| o);
                let writer = (0..SLOTS as usize).find(|&i| {
                    self.model.obj_of(i).map(|(o, _)| o) == notification
                        && self
                            .model
                            .node(self.model.at(i).expect("occupied"))
                            .rights
                            .contains(Rights::WRITE)
                });
                if let Some(writer) = writer {
                    let r = tarn_rt::signal(self.cptr(writer));
                    syscall(Syscall::Signal, &r);
                    check(r, "signal the notification the receiver waits on")?;
                    self.settle_receiver(reports + 1)?;
                }
                self.receiver_waits_on(None, second_obj);
                return Ok(());
            }
            self.nap();
        }
        Err(format!(
            "the receiver neither blocked nor reported (Recv on slot {endpoint}, a {:?}; phase {}, state {:?}, reports {} then {})",
            self.model.obj_of(endpoint).map(|(_, o)| o.kind),
            self.shared.r_phase.load(Ordering::SeqCst),
            self.receiver_state(),
            reports,
            self.shared.r_reports.load(Ordering::SeqCst)
        ))
    }

    /// Sends (`Send`, `NbSend` or `Call`) up to three capabilities to the
    /// receiver waiting on a graph endpoint; predicts where they land.
    fn send_to_receiver(&mut self) -> Result<(), String> {
        let Some(target) = self.model.receiver_on else {
            // Nobody receives: a non-blocking send finds no receiver.
            if let Some(e) = self.of(Kind::Endpoint) {
                let r = tarn_rt::nb_send(self.cptr(e), MessageInfo::new(1, 0, 0), [0; 4]);
                syscall(Syscall::NbSend, &r);
            }
            return Ok(());
        };
        if self.receiver_state() != Some(ThreadState::BlockedOnReceive) {
            // A graph thread's fault may have reached it a moment ago: let
            // it report before judging.
            for _ in 0..2000 {
                if self.shared.r_reports.load(Ordering::SeqCst) != self.r_reports_seen {
                    break;
                }
                self.nap();
            }
        }
        if self.shared.r_reports.load(Ordering::SeqCst) != self.r_reports_seen {
            // It received something the driver did not send: only a graph
            // thread's fault message can come (a thread resumed or
            // configured with that fault endpoint; a confined one that
            // spins is stopped by the watchdog).
            let label = self.shared.r_out[2].load(Ordering::SeqCst);
            let code = self.shared.r_out[0].load(Ordering::SeqCst);
            if code == 0
                && label != tarn_rt::abi::fault::PAGE_FAULT
                && label != tarn_rt::abi::fault::EXCEPTION
                && label != tarn_rt::abi::fault::WATCHDOG
            {
                return Err(format!(
                    "the receiver got a message nobody sent (label {label:#x})"
                ));
            }
            let reports = self.shared.r_reports.load(Ordering::SeqCst);
            self.settle_receiver(reports)?;
            self.model.receiver_on = None;
            self.r_reports_seen = reports;
            return Ok(());
        }
        if self.receiver_state() != Some(ThreadState::BlockedOnReceive) {
            return Err(String::from(
                "the model has the receiver in Recv, the kernel does not",
            ));
        }
        let with: Vec<usize> = (0..SLOTS as usize)
            .filter(|&i| matches!(self.model.obj_of(i), Some((o, _)) if o == target))
            .collect();
        let Some(via) = self.rng.pick(&with) else {
            return Ok(());
        };
        let via_node = self.model.node(self.model.at(via).expect("via"));
        let ncaps = self.rng.below(4) as usize;
        let caps: Vec<usize> = (0..ncaps).map(|_| self.any_slot()).collect();
        for (i, c) in caps.iter().enumerate() {
            tarn_rt::ipc_buffer::set_cap(i, self.cptr(*c));
        }
        let info = MessageInfo::new(3, ncaps as u64, 2);
        let words = [0xAB, 0xCD, 0, 0];
        let (window, count) = (
            self.model
                .index(self.shared.r_cmd[2].load(Ordering::SeqCst)),
            self.shared.r_cmd[3].load(Ordering::SeqCst) as usize,
        );
        let reports = self.shared.r_reports.load(Ordering::SeqCst) + 1;
        // A blocking send only when no graph thread can take the receiver
        // first (a runnable one may fault to this endpoint any moment).
        let kind = if self.graph_thread_runnable() {
            1
        } else {
            self.rng.below(3)
        };
        let result = match kind {
            0 => {
                let r = tarn_rt::send(self.cptr(via), info, words);
                syscall(Syscall::Send, &r);
                r
            }
            1 => {
                let r = tarn_rt::nb_send(self.cptr(via), info, words);
                syscall(Syscall::NbSend, &r);
                r
            }
            _ => {
                let r = tarn_rt::call(self.cptr(via), info, words);
                syscall(Syscall::Call, &r);
                r.map(|_| ())
            }
        };
        let can_send = via_node.rights.contains(Rights::WRITE);
        if can_send && kind == 1 && result == Err(Error::WouldBlock) {
            // A runnable graph thread's fault may have reached the
            // receiver between the look at its state and the send: then
            // it reports that message. Anything else is the kernel's.
            return self.receiver_taken_first(reports - 1);
        }
        if result.is_ok() != can_send {
            return Err(format!(
                "a send through a capability with rights {:#x} answered {result:?}",
                via_node.rights.0
            ));
        }
        if result.is_err() {
            return Ok(());
        }
        // Capabilities land as the kernel's transfer rule says.
        if via_node.rights.contains(Rights::GRANT) {
            let mut placed = 0;
            for c in caps {
                let Some(node) = self.model.at(c) else {
                    break;
                };
                let n = self.model.node(node);
                if n.obj == target {
                    continue; // unwrapped: the badge arrives instead
                }
                if placed >= count {
                    break;
                }
                let dest = window + placed;
                if dest >= SLOTS as usize
                    || self.model.slots[dest].is_some()
                    || !self.model.objs[n.obj].kind.copyable()
                {
                    break;
                }
                self.model
                    .add(Loc::Slot(self.cptr(dest)), n.obj, Some(node), n.rights);
                placed += 1;
            }
        }
        let endpoint_obj = Some(target);
        let second_obj = self
            .model
            .index(self.shared.r_cmd[5].load(Ordering::SeqCst));
        let second_obj = self.model.obj_of(second_obj).map(|(o, _)| o);
        self.settle_receiver(reports)?;
        let _ = endpoint_obj;
        self.receiver_waits_on(None, second_obj);
        Ok(())
    }

    fn op_devices(&mut self) -> Result<(), String> {
        match self.rng.below(4) {
            0 => {
                let Some(dest) = self.empty() else {
                    return Ok(());
                };
                let irq = self.rng.pick(&IRQS).expect("irqs");
                let result = note(
                    Invocation::IrqControlGet,
                    invoke::irq_control_get(slot::IRQ_CONTROL, irq, self.cptr(dest)),
                );
                if result.is_ok() {
                    let mut obj = Obj::new(Kind::IrqHandler);
                    obj.index = irq;
                    let obj = self.model.add_obj(obj);
                    self.model
                        .add(Loc::Slot(self.cptr(dest)), obj, None, Rights::ALL);
                }
            }
            1 => {
                if let (Some(h), Some(n)) = (self.of(Kind::IrqHandler), self.of(Kind::Notification))
                {
                    let _ = note(
                        Invocation::IrqHandlerSetNotification,
                        invoke::irq_handler_set_notification(self.cptr(h), self.cptr(n)),
                    );
                    let _ = note(
                        Invocation::IrqHandlerAck,
                        invoke::irq_handler_ack(self.cptr(h)),
                    );
                }
            }
            2 => {
                let _ = note(
                    Invocation::IoPortIn,
                    invoke::ioport_in(slot::IO_PORTS, 0x80, 1),
                );
                let _ = note(
                    Invocation::IoPortOut,
                    invoke::ioport_out(slot::IO_PORTS, 0x80, 1, self.step & 0xFF),
                );
            }
            _ => {
                let Some(dest) = self.empty() else {
                    return Ok(());
                };
                let result = note(
                    Invocation::IoPortIssue,
                    invoke::ioport_issue(slot::IO_PORTS, 0x80, 0x80, self.cptr(dest)),
                );
                if result.is_ok() {
                    let obj = self.model.add_obj(Obj::new(Kind::IoPort));
                    self.model
                        .add(Loc::Slot(self.cptr(dest)), obj, None, Rights::ALL);
                    let _ = note(
                        Invocation::IoPortIn,
                        invoke::ioport_in(self.cptr(dest), 0x80, 1),
                    );
                }
            }
        }
        Ok(())
    }

    // ---- checks --------------------------------------------------------

    /// `MachineCheckInvariants` says consistent, and the kernel's live
    /// capability and object counts moved exactly as the model's did.
    fn check_walk(&mut self) -> Result<(), String> {
        let begun = self.now_ns();
        let report = check(
            note(
                Invocation::MachineCheckInvariants,
                invoke::machine_check_invariants(slot::MACHINE),
            ),
            "MachineCheckInvariants",
        )?;
        if !report.consistent {
            return Err(String::from(
                "MachineCheckInvariants reports an inconsistency (the kernel printed it)",
            ));
        }
        let (caps, objects) = self.model.counts();
        let kernel = (
            report.live_caps as i64 - caps as i64,
            report.live_objects as i64 - objects as i64,
        );
        if kernel != self.base {
            return Err(format!(
                "the kernel has {} capabilities and {} objects, the model {caps} and {objects} (off by {} and {} from the start)",
                report.live_caps,
                report.live_objects,
                kernel.0 - self.base.0,
                kernel.1 - self.base.1
            ));
        }
        self.spent[1] += self.now_ns().saturating_sub(begun);
        Ok(())
    }

    /// The checks after a step; `walk`: the kernel's invariant walk and
    /// the counts too.
    fn check_all(&mut self, full: bool, walk: bool) -> Result<(), String> {
        if walk {
            self.check_walk()?;
        }
        let walked = self.now_ns();
        for index in 0..SLOTS as usize {
            self.check_slot(index)?;
        }
        let probed = self.now_ns();
        self.spent[2] += probed.saturating_sub(walked);
        if self.info.first_cpu_slot != 0 {
            for cpu in 0..self.info.cpu_count {
                let (_, _, bound) =
                    check(invoke::cpu_info(self.info.first_cpu_slot + cpu), "CpuInfo")?;
                if bound != self.model.bindings[cpu as usize].is_some() {
                    return Err(format!(
                        "CpuInfo says CPU {cpu} bound = {bound}, the model {}",
                        self.model.bindings[cpu as usize].is_some()
                    ));
                }
            }
        }
        for o in self
            .model
            .objs
            .iter()
            .filter(|o| o.live && o.sentinel_node.is_some())
        {
            let stride = if full { 1 } else { 17 };
            let mut word = self.step % stride;
            while word < PAGE_SIZE / 8 {
                let found = probe_read(o.vaddr + word * 8);
                if found != pattern(o.phys, word) {
                    return Err(format!(
                        "the kernel wrote into sentinel frame {:#x} (retyped from revoked memory): word {word} is {found:#x}",
                        o.phys
                    ));
                }
                word += stride;
            }
        }
        self.spent[3] += self.now_ns().saturating_sub(probed);
        Ok(())
    }

    /// Checks fuzz slot `index` against the model (probes are not counted
    /// in the coverage table).
    fn check_slot(&mut self, index: usize) -> Result<(), String> {
        let cptr = self.cptr(index);
        let copied = invoke::cnode_copy(
            slot::ROOT_CNODE,
            self.scratch,
            slot::ROOT_CNODE,
            cptr,
            Rights::ALL,
        );
        if copied.is_ok() {
            check(
                invoke::cnode_delete(slot::ROOT_CNODE, self.scratch),
                "delete the probe copy",
            )?;
        }
        let Some((_, o)) = self.model.obj_of(index) else {
            return match copied {
                Err(Error::InvalidCapability) => Ok(()),
                other => Err(format!(
                    "slot {index} should be empty; copying it gives {other:?}"
                )),
            };
        };
        let expect_copy = o.kind.copyable();
        if copied.is_ok() != expect_copy {
            return Err(format!(
                "slot {index} should hold a {:?}; copying it gives {copied:?}",
                o.kind
            ));
        }
        let ok = match o.kind {
            Kind::Frame => invoke::frame_get_address(cptr) == Ok(o.phys),
            Kind::Tcb => invoke::tcb_read_registers(cptr).is_ok(),
            Kind::Cpu => matches!(invoke::cpu_info(cptr), Ok((i, _, _)) if i == o.index),
            Kind::Untyped => {
                invoke::untyped_retype(cptr, ObjectType::Untyped, 0, slot::ROOT_CNODE, 0, 1)
                    == Err(Error::InvalidArgument)
            }
            Kind::CNode => invoke::cnode_delete(cptr, 0)
                .is_err_and(|e| e != Error::IllegalOperation && e != Error::WrongType),
            Kind::Scheduler => invoke::scheduler_set_tick(cptr, 1000, 0)
                .is_err_and(|e| e != Error::IllegalOperation && e != Error::WrongType),
            Kind::Vcpu => {
                invoke::vcpu_write_segment(cptr, tarn_rt::abi::vcpu::Segment::Cs, 0x1_0000, 0, 0, 0)
                    == Err(Error::InvalidArgument)
            }
            // (A call on these is IPC: `Poll` tells them apart instead.)
            Kind::Endpoint => tarn_rt::poll(cptr) == Err(Error::WrongType),
            Kind::Notification => !matches!(
                tarn_rt::poll(cptr),
                Err(Error::WrongType | Error::InvalidCapability)
            ),
            Kind::IoPort => invoke::ioport_in(cptr, 0x80, 1).is_ok(),
            Kind::IrqHandler => {
                invoke::irq_handler_ack(cptr)
                    .is_err_and(|e| e != Error::IllegalOperation && e != Error::WrongType)
                    || invoke::irq_handler_ack(cptr).is_ok()
            }
            Kind::VSpace | Kind::GuestSpace => {
                invoke::cnode_delete(cptr, 1) == Err(Error::IllegalOperation)
            }
        };
        if !ok {
            return Err(format!(
                "slot {index} does not behave as the {:?} the model has there",
                o.kind
            ));
        }
        Ok(())
    }
}

/// A system call with raw arguments: its error, if any (the kernel
/// validates them all; see `tarn_rt::syscall::raw`).
fn syscall_raw(number: u64, cptr: u64, info: u64) -> Result<(), Error> {
    Error::check(tarn_rt::syscall::raw(number, cptr, info, [0; 4]).rax)
}

/// The pattern of word `index` of the sentinel frame at `phys`.
fn pattern(phys: u64, index: u64) -> u64 {
    0x5E17_0000_0000_0000 ^ (phys << 4) ^ index
}
