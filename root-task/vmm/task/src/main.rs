//! The `vmm` task: runs the guests named by `vmtest=NAME,NAME,...` on the
//! command line (names from `tarn_vmm::guest::Guest`), each as a VM `vmN`
//! with one virtual CPU on its own thread (spread over the CPUs), and its
//! console output prefixed `[vmN]`. The platform and all policy come from
//! `tarn-vmm`; this file does the system calls.
//!
//! As a domain (`domain=NAME guest=GUEST`, how the pool manager starts a
//! `type="hvm"` domain), it runs that one guest on its main thread, which
//! the pool manager has handed to the pool's scheduler server: the VM is
//! scheduled, weighted, capped and migrated like any domain. Its console
//! lines are prefixed `[NAME]`; when the guest stops, the thread ends.
//!
//! When every guest other than the spinning `long64` ones has halted or
//! been stopped, the spinners must keep reporting progress (they are then
//! stopped by the VMM). It then prints one summary line per VM, checks the
//! idle guest's CPU use (< 1 %, from the kernel's per-thread run time) and
//! prints the benchmark figure if `bench64` ran, then powers off: status 0,
//! or 1 after a `vmm: FAILED` line.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tarn_rt::abi::{CPtr, Error, ObjectType, Rights};
use tarn_rt::invoke::{self, VcpuRunArgs};
use tarn_rt::layout::slot;
use tarn_rt::vcpu::RegisterPage;
use tarn_rt::{println, syscall, Resources, ThreadOptions};
use tarn_vmm::guest::{initial_state, Guest, SegmentState, GUEST_RAM_BYTES, LOAD_ADDRESS};
use tarn_vmm::platform::{Action, Platform, StopReason};

tarn_rt::entry!(main);

/// Longest a VM thread stays in the guest without looking at its stop flag.
const POLL_NS: u64 = 50_000_000;
/// Progress reports a spinning guest must make after the others stopped.
const PROGRESS_AFTER: u64 = 3;
/// Give up waiting for guests after this long.
const DEADLINE_MS: u64 = 60_000;
/// Largest acceptable CPU share of the idle guest, in hundredths of a percent.
const IDLE_LIMIT_CENTI_PCT: u64 = 100;
/// Guest-space table memory (log2 bytes).
const GUEST_SPACE_BITS: u64 = 15;

/// What a VM thread tells the main thread.
#[derive(Default)]
struct Shared {
    done: AtomicBool,
    stop: AtomicBool,
    progress_reports: AtomicU64,
    started_ns: AtomicU64,
    ended_ns: AtomicU64,
    ticks: AtomicU64,
    bench: AtomicU64,
    outcome: spin::Mutex<Option<String>>,
    reason: spin::Mutex<Option<StopReason>>,
    /// A Linux guest's console input page (mapped here; see `console_io`).
    console: Option<u64>,
    /// A Linux guest's benchmark (`bench=1`): its figures from its lines.
    linux_bench: spin::Mutex<Option<LinuxBench>>,
}

struct Vm {
    name: String,
    guest: Guest,
    tcb: CPtr,
    shared: Arc<Shared>,
}

/// Nanoseconds per TSC tick in 32.32 fixed point (from [`calibrate`]): the
/// run loop reads the clock twice per exit, by a multiplication rather
/// than a 128-bit division.
static NS_PER_TICK_Q32: AtomicU64 = AtomicU64::new(1_000_000 << 32);

fn now_ns() -> u64 {
    let ticks = u128::from(tarn_rt::arch::rdtsc());
    ((ticks * u128::from(NS_PER_TICK_Q32.load(Ordering::Relaxed))) >> 32) as u64
}

fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

fn main(arg: u64) {
    let Some(info) = tarn_rt::start_info(arg) else {
        println!("vmm: FAILED: no start information");
        return;
    };
    let mut resources = Resources::from_boot_info(info);
    if let Some(name) = setting(info.cmdline(), "domain=") {
        if setting(info.cmdline(), "linux=").is_some() {
            run_linux(info.cmdline(), name, &mut resources);
        } else {
            run_domain(info.cmdline(), name, &mut resources);
        }
        return;
    }
    let status = match run(info.cmdline(), info.cpu_count, &mut resources) {
        Ok(()) => 0,
        Err(why) => {
            println!("vmm: FAILED: {why}");
            1
        }
    };
    let _ = invoke::machine_power_off(slot::MACHINE, status);
}

fn setting<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline.split_whitespace().find_map(|w| w.strip_prefix(key))
}

/// One guest as a domain, on this (the main) thread.
fn run_domain(cmdline: &str, name: &str, resources: &mut Resources) {
    let guest = match setting(cmdline, "guest=").and_then(Guest::from_name) {
        Some(guest) => guest,
        None => {
            println!("[{name}] vmm: no guest=NAME (or no such guest) on the command line");
            return;
        }
    };
    let started = (|| -> Result<(CPtr, CPtr, InitialVcpu), Error> {
        let sleeper = resources.create(ObjectType::Notification, 0)?;
        calibrate(sleeper)?;
        let (vcpu, initial) = build_vm(resources, guest, slot::ROOT_TCB)?;
        Ok((vcpu, sleeper, initial))
    })();
    match started {
        Ok((vcpu, sleeper, initial)) => {
            let shared = Shared::default();
            run_vcpu(name, vcpu, sleeper, initial, &shared);
            let outcome = shared.outcome.lock().clone().unwrap_or_default();
            println!("[{name}] vm ended: {outcome}");
        }
        Err(e) => println!("[{name}] vmm: cannot build the vm: {e:?}"),
    }
}

/// A Linux guest's figures, taken at the lines its `/init` prints in
/// benchmark mode (`tarn.bench`): VM exits and instructions (the TSC under
/// QEMU's icount) from the first entry to the marker, then the exit rate
/// while it sleeps (`tarn-idle` .. `tarn-busy`) and while a shell loop runs
/// (`tarn-busy` .. `tarn-busy-end`).
struct LinuxBench {
    started_tsc: u64,
    mark: Option<(u64, u64)>,
}

/// What `/init` prints first (`cargo xtask linux-fetch`).
const LINUX_MARKER: &str = "TARN-LINUX-INIT";

impl LinuxBench {
    fn line(&mut self, line: &str, exits: u64, now_ns: u64) {
        let rate = |mark: Option<(u64, u64)>| {
            mark.map(|(e, t)| (exits - e) * 1_000_000_000 / now_ns.saturating_sub(t).max(1))
        };
        match line.trim() {
            LINUX_MARKER => {
                println!("bench: linux_boot_exits {exits} exits");
                println!(
                    "bench: linux_boot_insns {} insns",
                    tarn_rt::arch::rdtsc() - self.started_tsc
                );
            }
            "tarn-idle" => self.mark = Some((exits, now_ns)),
            "tarn-busy" => {
                if let Some(r) = rate(self.mark) {
                    println!("bench: linux_idle_exits_per_s {r} exits/s");
                }
                self.mark = Some((exits, now_ns));
            }
            "tarn-busy-end" => {
                if let Some(r) = rate(self.mark) {
                    println!("bench: linux_busy_exits_per_s {r} exits/s");
                }
            }
            _ => {}
        }
    }
}

/// The slot of the console input page the pool manager shares with a
/// Linux domain's VMM, and of the notification it signals after input
/// (this VMM's sleeper).
const LINUX_RING_SLOT: u64 = tarn_rt::layout::slot::FIRST_PARENT + 2;
const LINUX_WAKE_SLOT: u64 = tarn_rt::layout::slot::FIRST_PARENT + 3;
/// The serial console's notification (signalled when output is waiting).
const CONSOLE_WAKE_SLOT: u64 = tarn_rt::layout::slot::FIRST_PARENT + 4;
/// Where the console input page is mapped.
const RING_VADDR: u64 = tarn_rt::layout::FREE_WINDOW_BASE;
/// First word of the input bytes in the page, and how many it holds (the
/// pool manager's `vm::ConsoleRing` writes them).
const RING_FIRST: u64 = 8;
const RING_BYTES: u64 = 256 - RING_FIRST;
/// The output's words (bytes written, bytes taken, first byte) and size.
const OUT_HEAD: u64 = 256;
const OUT_TAIL: u64 = 257;
const OUT_FIRST: u64 = 264;
const OUT_BYTES: u64 = 512 - OUT_FIRST;

/// Queues the guest's output for the attached console: as much of
/// `pending` as the page has room for (the rest waits for the next call);
/// signals the console when it queued any.
fn console_output(vaddr: u64, pending: &mut alloc::collections::VecDeque<u8>) {
    use tarn_rt::arch::{probe_read, probe_write};
    if pending.is_empty() {
        return;
    }
    let mut head = probe_read(vaddr + OUT_HEAD * 8);
    let tail = probe_read(vaddr + OUT_TAIL * 8);
    let room = OUT_BYTES.saturating_sub(head.wrapping_sub(tail));
    let mut queued = false;
    for _ in 0..room {
        let Some(byte) = pending.pop_front() else {
            break;
        };
        probe_write(vaddr + (OUT_FIRST + head % OUT_BYTES) * 8, u64::from(byte));
        head = head.wrapping_add(1);
        queued = true;
    }
    if queued {
        probe_write(vaddr + OUT_HEAD * 8, head);
        let _ = syscall::signal(CONSOLE_WAKE_SLOT);
    }
}

/// The console between the pool manager and the guest's UART: input the
/// manager queued goes into the UART's receive FIFO as far as it has room;
/// while the serial console is attached, the guest's output goes out raw.
/// Returns whether the console is attached.
fn console_io(vaddr: u64, platform: &mut Platform) -> bool {
    use tarn_rt::arch::{probe_read, probe_write};
    let head = probe_read(vaddr);
    let mut tail = probe_read(vaddr + 8);
    let room = platform.uart.rx_room() as u64;
    let available = head.wrapping_sub(tail).min(RING_BYTES);
    let mut bytes = Vec::new();
    for _ in 0..available.min(room) {
        bytes.push(probe_read(vaddr + (RING_FIRST + tail % RING_BYTES) * 8) as u8);
        tail = tail.wrapping_add(1);
    }
    if !bytes.is_empty() {
        platform.uart.receive(&bytes);
        probe_write(vaddr + 8, tail);
    }
    probe_read(vaddr + 16) != 0
}

/// The slot where the pool manager puts a Linux guest's GuestSpace.
const LINUX_SPACE_SLOT: u64 = tarn_rt::layout::slot::FIRST_PARENT;
/// The slot of the domain's (badged) fault endpoint, where the VMM says
/// that its guest ended.
const LINUX_ENDED_SLOT: u64 = tarn_rt::layout::slot::FIRST_PARENT + 1;

/// A Linux guest as a domain, on this (the main) thread: `linux=LOAD`
/// (hex: where the kernel was loaded). The pool manager has built the
/// guest's memory (kernel, initrd, zero page, tables: `tarn_vmm::linux`)
/// in a GuestSpace it hands over in slot 9; this binds a Vcpu to it and
/// starts at the 64-bit entry.
fn run_linux(cmdline: &str, name: &str, resources: &mut Resources) {
    let started = (|| -> Result<(CPtr, CPtr, InitialVcpu), String> {
        let load = setting(cmdline, "linux=")
            .and_then(|a| u64::from_str_radix(a, 16).ok())
            .ok_or("no linux=LOAD_ADDRESS")?;
        let sleeper = LINUX_WAKE_SLOT;
        invoke::frame_map(
            LINUX_RING_SLOT,
            resources.vspace,
            RING_VADDR,
            Rights::READ.union(Rights::WRITE),
        )
        .map_err(|e| format!("console page: {e:?}"))?;
        calibrate(sleeper).map_err(|e| format!("sleep: {e:?}"))?;
        let vcpu = resources
            .create(ObjectType::Vcpu, 0)
            .map_err(|e| format!("vcpu: {e:?}"))?;
        let mut page = RegisterPage::new(resources).map_err(|e| format!("register page: {e:?}"))?;
        invoke::vcpu_bind(vcpu, slot::ROOT_TCB, LINUX_SPACE_SLOT, page.frame())
            .map_err(|e| format!("bind: {e:?}"))?;
        let state = tarn_vmm::linux::entry_state(load);
        *page.registers() = state.registers;
        Ok((vcpu, sleeper, (page, state.segments)))
    })();
    match started {
        Ok((vcpu, sleeper, initial)) => {
            let shared = Shared {
                console: Some(RING_VADDR),
                ..Shared::default()
            };
            if setting(cmdline, "bench=").is_some() {
                *shared.linux_bench.lock() = Some(LinuxBench {
                    started_tsc: tarn_rt::arch::rdtsc(),
                    mark: None,
                });
            }
            run_vcpu(name, vcpu, sleeper, initial, &shared);
            let outcome = shared.outcome.lock().clone().unwrap_or_default();
            println!("[{name}] vm ended: {outcome}");
            // The pool manager ends the domain (xl's default `destroy`).
            let reason = shared
                .reason
                .lock()
                .unwrap_or(StopReason::UnknownExit { kind: 0 });
            let (kind, detail) = reason.encode();
            let info = tarn_rt::abi::MessageInfo::new(tarn_vmm::platform::VM_ENDED_LABEL, 0, 2);
            let _ = syscall::send(LINUX_ENDED_SLOT, info, [kind, detail, 0, 0]);
        }
        Err(why) => println!("[{name}] vmm: cannot start the vm: {why}"),
    }
}

/// The TSC rate, against the kernel's timer (20 ms).
fn calibrate(sleeper: CPtr) -> Result<(), Error> {
    let before = tarn_rt::arch::rdtsc();
    syscall::sleep(sleeper, 20_000_000)?;
    let per_ms = ((tarn_rt::arch::rdtsc() - before) / 20).max(1);
    NS_PER_TICK_Q32.store((1_000_000u64 << 32) / per_ms, Ordering::Relaxed);
    Ok(())
}

fn run(cmdline: &str, cpus: u64, resources: &mut Resources) -> Result<(), String> {
    let list = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("vmtest="))
        .ok_or("no vmtest=GUEST,... on the command line")?;
    let mut guests = Vec::new();
    for name in list.split(',') {
        guests.push(Guest::from_name(name).ok_or(format!("no guest called {name:?}"))?);
    }
    let sleeper = resources
        .create(ObjectType::Notification, 0)
        .map_err(|e| format!("notification: {e:?}"))?;
    calibrate(sleeper).map_err(|e| format!("sleep: {e:?}"))?;
    let mut vms = Vec::new();
    for (index, guest) in guests.iter().enumerate() {
        let name = format!("vm{}", index + 1);
        let cpu = (index as u64 + 1) % cpus;
        let vm = start_vm(resources, &name, *guest, cpu)
            .map_err(|e| format!("cannot start {name} ({}): {e:?}", guest.name()))?;
        println!("vmm: {name}: {} on cpu {cpu}", guest.name());
        vms.push(vm);
    }
    let deadline = now_ms() + DEADLINE_MS;
    let is_spinner = |vm: &Vm| vm.guest == Guest::Long64;
    wait_until(sleeper, deadline, || {
        vms.iter()
            .filter(|vm| !is_spinner(vm))
            .all(|vm| vm.shared.done.load(Ordering::Acquire))
    });
    let mut failures = Vec::new();
    let spinners_alone = vms.iter().any(|vm| !is_spinner(vm));
    for vm in vms.iter().filter(|vm| is_spinner(vm)) {
        let before = vm.shared.progress_reports.load(Ordering::Relaxed);
        wait_until(sleeper, deadline, || {
            vm.shared.progress_reports.load(Ordering::Relaxed) >= before + PROGRESS_AFTER
                || vm.shared.done.load(Ordering::Acquire)
        });
        let gained = vm.shared.progress_reports.load(Ordering::Relaxed) - before;
        if gained >= PROGRESS_AFTER && spinners_alone {
            println!(
                "vmm: {} kept running after the other guests stopped (+{gained} progress reports)",
                vm.name
            );
        } else if gained < PROGRESS_AFTER {
            failures.push(format!("{} made no progress", vm.name));
        }
        vm.shared.stop.store(true, Ordering::Release);
    }
    wait_until(sleeper, deadline, || {
        vms.iter().all(|vm| vm.shared.done.load(Ordering::Acquire))
    });
    for vm in &vms {
        let outcome = vm
            .shared
            .outcome
            .lock()
            .clone()
            .unwrap_or_else(|| String::from("still running at the deadline"));
        println!("vmm: {} {}: {outcome}", vm.name, vm.guest.name());
        if !vm.shared.done.load(Ordering::Acquire) {
            failures.push(format!("{} did not finish", vm.name));
        }
        match vm.guest {
            Guest::Idle16 => idle_report(vm, &mut failures),
            Guest::Bench64 => match vm.shared.bench.load(Ordering::Relaxed) {
                0 => failures.push(format!("{} reported no benchmark", vm.name)),
                // Under QEMU's icount the TSC counts instructions; Bochs'
                // TSC does not (see the README), so the VMX figure is
                // named for what it is: TSC ticks.
                ticks if host_has_vmx() => {
                    println!("bench: vmexit_io_roundtrip_tsc_vmx {ticks} ticks")
                }
                insns => println!("bench: vmexit_io_roundtrip_insns {insns} insns"),
            },
            _ => {}
        }
    }
    println!("vmm: {} vms done", vms.len());
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(first.clone()),
    }
}

/// The idle guest's CPU share: its thread's run time (the kernel's
/// accounting) over its wall time.
fn idle_report(vm: &Vm, failures: &mut Vec<String>) {
    let ran_ns = match invoke::tcb_read_registers(vm.tcb) {
        Ok(status) => status.ran_ns,
        Err(e) => {
            failures.push(format!("{}: cannot read its run time: {e:?}", vm.name));
            return;
        }
    };
    let wall_ns = vm
        .shared
        .ended_ns
        .load(Ordering::Relaxed)
        .saturating_sub(vm.shared.started_ns.load(Ordering::Relaxed))
        .max(1);
    let centi_pct = (u128::from(ran_ns) * 10_000 / u128::from(wall_ns)) as u64;
    println!(
        "vmm: {} idle: {} timer ticks, cpu {}.{:02}% of {} ms",
        vm.name,
        vm.shared.ticks.load(Ordering::Relaxed),
        centi_pct / 100,
        centi_pct % 100,
        wall_ns / 1_000_000
    );
    if centi_pct >= IDLE_LIMIT_CENTI_PCT {
        failures.push(format!(
            "{} used {centi_pct} / 10000 of a cpu while idle",
            vm.name
        ));
    }
}

/// Whether the kernel runs guests with VMX (CPUID.1:ECX[5]), so that the
/// guests make hypercalls with VMCALL rather than VMMCALL.
fn host_has_vmx() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 5) != 0
}

fn wait_until(sleeper: CPtr, deadline_ms: u64, mut ready: impl FnMut() -> bool) {
    while !ready() && now_ms() < deadline_ms {
        let _ = syscall::sleep(sleeper, 10_000_000);
    }
}

/// Builds a VM: guest memory with the image, a Vcpu bound to a new thread
/// on `cpu`, its initial segments; then starts the thread.
fn start_vm(resources: &mut Resources, name: &str, guest: Guest, cpu: u64) -> Result<Vm, Error> {
    let sleeper = resources.create(ObjectType::Notification, 0)?;
    let shared = Arc::new(Shared::default());
    let thread_shared = shared.clone();
    let vm_name = String::from(name);
    let vcpu_slot = resources.alloc_slot()?;
    let registers_slot = Arc::new(spin::Mutex::new(None));
    let thread_registers = registers_slot.clone();
    let thread = tarn_rt::spawn_thread(
        resources,
        ThreadOptions {
            stack_pages: 12,
            cpu: Some(cpu),
            start: false,
            ..ThreadOptions::default()
        },
        move || {
            if let Some(initial) = thread_registers.lock().take() {
                run_vcpu(&vm_name, vcpu_slot, sleeper, initial, &thread_shared);
            }
        },
    )?;
    let (vcpu, initial) = build_vm(resources, guest, thread.tcb)?;
    invoke::cnode_move(slot::ROOT_CNODE, vcpu_slot, slot::ROOT_CNODE, vcpu)?;
    *registers_slot.lock() = Some(initial);
    invoke::tcb_resume(thread.tcb)?;
    Ok(Vm {
        name: String::from(name),
        guest,
        tcb: thread.tcb,
        shared,
    })
}

/// A guest's initial state: its register page (with the initial registers)
/// and the segments the thread bound to its Vcpu sets (only that thread
/// may).
type InitialVcpu = (RegisterPage, Vec<SegmentState>);

/// Guest memory with the image and a Vcpu bound to thread `tcb`; returns
/// the Vcpu and the guest's initial state.
fn build_vm(
    resources: &mut Resources,
    guest: Guest,
    tcb: CPtr,
) -> Result<(CPtr, InitialVcpu), Error> {
    let state = initial_state(guest, host_has_vmx());
    let space = resources.create(ObjectType::GuestSpace, GUEST_SPACE_BITS)?;
    let pages = GUEST_RAM_BYTES / 4096;
    let first_frame = resources.create_many(ObjectType::Frame4K, 0, pages)?;
    let image = guest.image();
    for page in 0..pages {
        let frame = first_frame + page;
        let gpa = page * 4096;
        let image_page = gpa <= LOAD_ADDRESS && LOAD_ADDRESS < gpa + 4096;
        let table = state.pages.iter().find(|(at, _)| *at == gpa);
        if image_page || table.is_some() {
            tarn_rt::process::fill_frame(resources, frame, |bytes| {
                if let Some((_, contents)) = table {
                    bytes.copy_from_slice(contents);
                }
                if image_page {
                    let offset = (LOAD_ADDRESS - gpa) as usize;
                    bytes[offset..offset + image.len()].copy_from_slice(image);
                }
            })?;
        }
        invoke::frame_map(
            frame,
            space,
            gpa,
            Rights::READ.union(Rights::WRITE).union(Rights::EXECUTE),
        )?;
    }
    let vcpu = resources.create(ObjectType::Vcpu, 0)?;
    let mut page = RegisterPage::new(resources)?;
    invoke::vcpu_bind(vcpu, tcb, space, page.frame())?;
    *page.registers() = state.registers;
    Ok((vcpu, (page, state.segments)))
}

/// The body of a VM thread: run, handle the exit, repeat.
fn run_vcpu(name: &str, vcpu: CPtr, sleeper: CPtr, initial: InitialVcpu, shared: &Shared) {
    let (mut page, segments) = initial;
    let mut platform = Platform::new();
    let mut last_line = String::new();
    let mut queued: Option<u8> = None;
    // A Linux guest's benchmark counts its exits by kind and port (printed
    // with the boot's figures).
    let mut tally: Option<alloc::collections::BTreeMap<(u64, u64), u64>> = shared
        .linux_bench
        .lock()
        .is_some()
        .then(alloc::collections::BTreeMap::new);
    // Guest output not yet taken by the attached console.
    let mut pending_output = alloc::collections::VecDeque::new();
    // The line in progress was (partly) shown raw to the attached console:
    // once it completes it is not printed again as a `[name]` line (the
    // console detached before the guest ended it).
    let mut partial_shown = false;
    let mut kernel_pending = false;
    // The guest's segments: this thread is the one bound to the Vcpu.
    let segments_set = segments.iter().try_for_each(|s| {
        invoke::vcpu_write_segment(vcpu, s.segment, s.selector, s.base, s.limit, s.attributes)
    });
    if let Err(e) = segments_set {
        *shared.outcome.lock() = Some(format!("VcpuWriteSegment failed: {e:?}"));
        shared.done.store(true, Ordering::Release);
        return;
    }
    // The time, read once a round: after each exit, for the exit and for
    // the next entry's interrupt and timeout (read again after output,
    // whose printing takes time, and after a sleep).
    let mut now = now_ns();
    shared.started_ns.store(now, Ordering::Relaxed);
    let mut first_run = true;
    let mut load_mask = 0;
    let outcome = loop {
        if shared.stop.load(Ordering::Acquire) {
            break format!(
                "stopped by the vmm after {} progress reports",
                platform.progress_reports
            );
        }
        // One interrupt at a time is acknowledged at the PIC: the next only
        // once the kernel has delivered the last.
        if queued.is_none() && !kernel_pending {
            queued = platform.take_due_interrupt(now);
        } else {
            platform.advance(now);
        }
        let inject = if kernel_pending { None } else { queued.take() };
        let timeout_ns = platform.next_tick_ns().map_or(POLL_NS, |due| {
            due.saturating_sub(now).clamp(10_000, POLL_NS)
        });
        // The whole register file the first time, then only what the
        // VMM changed at the last exit (the kernel wrote the rest back).
        let args = VcpuRunArgs {
            load: first_run,
            load_mask,
            inject,
            timeout_ns,
            ..VcpuRunArgs::default()
        };
        let exit = match invoke::vcpu_run(vcpu, &args, &mut page) {
            Ok(exit) => exit,
            Err(e) => break format!("VcpuRun failed: {e:?}"),
        };
        now = now_ns();
        first_run = false;
        kernel_pending = exit.injection_pending;
        if let Some(tally) = tally.as_mut() {
            let port = if exit.kind_raw == tarn_rt::abi::vcpu::Exit::Io as u64 {
                exit.fields[0]
            } else {
                u64::MAX
            };
            *tally.entry((exit.kind_raw, port)).or_insert(0u64) += 1;
        }
        let action = platform.handle(
            exit.kind_raw,
            exit.fields,
            exit.next_rip,
            page.registers(),
            now,
        );
        load_mask = Platform::changed_registers(exit.kind_raw);
        // Input for a Linux guest's UART (a few reads of the shared page).
        let attached = shared
            .console
            .is_some_and(|vaddr| console_io(vaddr, &mut platform));
        if platform.has_output() {
            let raw = platform.take_output();
            // (`None`: no bytes this time, the line in progress is as it was.)
            let ends_line = raw.last().map(|&b| b == b'\n');
            if attached {
                pending_output.extend(raw);
            }
            for line in platform.take_lines() {
                if !attached && !core::mem::take(&mut partial_shown) {
                    println!("[{name}] {line}");
                }
                if let Some(bench) = shared.linux_bench.lock().as_mut() {
                    if line.trim() == LINUX_MARKER {
                        if let Some(tally) = tally.as_ref() {
                            let mut top: Vec<_> = tally.iter().collect();
                            top.sort_by_key(|(_, n)| core::cmp::Reverse(**n));
                            for ((kind, port), n) in top.iter().take(8) {
                                if *port == u64::MAX {
                                    println!("[{name}] exits to /init: kind {kind}: {n}");
                                } else {
                                    println!("[{name}] exits to /init: port {port:#x}: {n}");
                                }
                            }
                        }
                    }
                    bench.line(&line, platform.exits, now_ns());
                }
                last_line = line;
            }
            if let (true, Some(ends_line)) = (attached, ends_line) {
                partial_shown = !ends_line;
            }
            for note in platform.take_notes() {
                println!("[{name}] {note}");
            }
            now = now_ns();
        }
        if attached && !pending_output.is_empty() {
            if let Some(vaddr) = shared.console {
                console_output(vaddr, &mut pending_output);
            }
        }
        shared
            .progress_reports
            .store(platform.progress_reports, Ordering::Relaxed);
        match action {
            Action::Continue => {}
            Action::WaitForInterrupt => {
                now = now_ns();
                platform.advance(now);
                if !kernel_pending && queued.is_none() && !platform.interrupt_pending() {
                    if let Some(due) = platform.next_tick_ns() {
                        let _ = syscall::sleep(sleeper, due.saturating_sub(now).max(1));
                        // After sleeping until the timer was due, it is due
                        // (the clock may be a hair behind the kernel's timer).
                        now = now_ns().max(due);
                    }
                }
            }
            Action::Stop(StopReason::Halted) => {
                *shared.reason.lock() = Some(StopReason::Halted);
                break format!("halted, last line {last_line:?}");
            }
            Action::Stop(reason) => {
                *shared.reason.lock() = Some(reason);
                println!("[{name}] stopped: {reason}");
                break format!("stopped: {reason}");
            }
        }
    };
    shared.ended_ns.store(now_ns(), Ordering::Relaxed);
    shared
        .ticks
        .store(platform.ticks_delivered, Ordering::Relaxed);
    if let Some((ticks, rounds)) = platform.bench {
        shared.bench.store(ticks / rounds.max(1), Ordering::Relaxed);
    }
    *shared.outcome.lock() = Some(outcome);
    shared.done.store(true, Ordering::Release);
}
