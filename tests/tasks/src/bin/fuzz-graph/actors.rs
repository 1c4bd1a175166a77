//! The fuzzer's actors: threads that put graph objects in use while the
//! driver changes the graph under them.
//!
//! - the *receiver* waits in `Recv` (or `ReplyRecv`) on an endpoint of the
//!   graph with a receive window in the fuzz slots, or in `Wait` on a
//!   notification, as the driver asks, and replies to what it receives;
//! - the *vCPU runner* runs a Vcpu of the graph (real-mode segments, then
//!   `VcpuRun` with a timeout) each time the driver asks;
//! - the *spinner* counts and yields forever: the driver adopts it into a
//!   Scheduler of the graph and dispatches it on bound CPUs.
//!
//! Each counts its own system calls into the coverage table.

use crate::coverage::{note, syscall};
use core::sync::atomic::{AtomicU64, Ordering};
use tarn_rt::abi::invocation::Invocation;
use tarn_rt::abi::vcpu::{attributes, Reg, Segment, REGISTER_COUNT};
use tarn_rt::abi::{fault, CPtr, Error, MessageInfo, Syscall};
use tarn_rt::invoke::{self, VcpuRunArgs};
use tarn_rt::ipc_buffer;

/// Receiver commands (`Shared::r_cmd[0]`).
pub const R_RECV: u64 = 1;
pub const R_WAIT: u64 = 2;

/// Receiver phases (`Shared::r_phase`).
pub const PHASE_IDLE: u64 = 0;
pub const PHASE_RECV: u64 = 1;
pub const PHASE_WAIT: u64 = 2;
pub const PHASE_REPLY_RECV: u64 = 3;

/// Where the guest's code is loaded (guest-physical).
pub const GUEST_LOAD: u64 = 0x8000;

/// The register file a bound Vcpu's guest starts with (written into its
/// register page by the driver): real mode at `GUEST_LOAD`.
pub fn initial_registers() -> [u64; REGISTER_COUNT] {
    let mut registers = [0u64; REGISTER_COUNT];
    registers[Reg::Rip as usize] = GUEST_LOAD;
    registers[Reg::Rsp as usize] = GUEST_LOAD;
    registers[Reg::Rflags as usize] = 2;
    registers[Reg::Cr0 as usize] = 1 << 4;
    registers
}

/// What the driver and the actors share.
pub struct Shared {
    /// Receiver: command words, command sequence number, phase, reports.
    pub r_cmd: [AtomicU64; 6],
    pub r_seq: AtomicU64,
    pub r_phase: AtomicU64,
    pub r_reports: AtomicU64,
    /// Last report: result code, extra caps, label.
    pub r_out: [AtomicU64; 3],
    /// vCPU runner: Vcpu cptr, timeout; sequence numbers posted and done.
    pub v_cmd: [AtomicU64; 2],
    pub v_seq: AtomicU64,
    pub v_done: AtomicU64,
    /// Last run: result code.
    pub v_out: [AtomicU64; 1],
    /// Spinner: rounds.
    pub d_count: AtomicU64,
    /// Driver: steps begun, and the operation of the current one.
    pub step: AtomicU64,
    pub op: AtomicU64,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            r_cmd: core::array::from_fn(|_| AtomicU64::new(0)),
            r_seq: AtomicU64::new(0),
            r_phase: AtomicU64::new(PHASE_IDLE),
            r_reports: AtomicU64::new(0),
            r_out: core::array::from_fn(|_| AtomicU64::new(0)),
            v_cmd: core::array::from_fn(|_| AtomicU64::new(0)),
            v_seq: AtomicU64::new(0),
            v_done: AtomicU64::new(0),
            v_out: core::array::from_fn(|_| AtomicU64::new(0)),
            d_count: AtomicU64::new(0),
            step: AtomicU64::new(0),
            op: AtomicU64::new(0),
        }
    }
}

fn code<T>(result: &Result<T, Error>) -> u64 {
    match result {
        Ok(_) => 0,
        Err(error) => *error as u64,
    }
}

/// The receiver's body. `doorbell` is a notification outside the graph.
pub fn receiver(shared: &Shared, doorbell: CPtr) -> ! {
    let mut last = 0;
    loop {
        shared.r_phase.store(PHASE_IDLE, Ordering::SeqCst);
        let woken = tarn_rt::wait(doorbell, 0);
        syscall(Syscall::Wait, &woken);
        let seq = shared.r_seq.load(Ordering::SeqCst);
        if seq == last {
            continue;
        }
        last = seq;
        let cmd: [u64; 6] = core::array::from_fn(|i| shared.r_cmd[i].load(Ordering::SeqCst));
        match cmd[0] {
            R_RECV => {
                let (endpoint, window, count, reply_recv, second) =
                    (cmd[1], cmd[2], cmd[3], cmd[4] != 0, cmd[5]);
                ipc_buffer::set_receive_window(window, count);
                shared.r_phase.store(PHASE_RECV, Ordering::SeqCst);
                let mut result = tarn_rt::recv(endpoint);
                syscall(Syscall::Recv, &result);
                loop {
                    let (extra, label) = result
                        .as_ref()
                        .map_or((0, 0), |m| (m.info.extra_caps() as u64, m.label()));
                    shared.r_out[0].store(code(&result), Ordering::SeqCst);
                    shared.r_out[1].store(extra, Ordering::SeqCst);
                    shared.r_out[2].store(label, Ordering::SeqCst);
                    let fault = label == fault::PAGE_FAULT || label == fault::EXCEPTION;
                    if result.is_err() || fault {
                        // A faulted thread is left waiting for a reply. A
                        // `ReplyRecv` whose receive capability the kernel
                        // cannot look up fails before replying (bad input
                        // changes nothing): the caller is answered here.
                        if result.is_err() && reply_recv {
                            let replied = tarn_rt::reply(MessageInfo::new(0, 0, 1), [7, 0, 0, 0]);
                            syscall(Syscall::Reply, &replied);
                        }
                        shared.r_reports.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    if reply_recv {
                        ipc_buffer::set_receive_window(window, count);
                        shared.r_phase.store(PHASE_REPLY_RECV, Ordering::SeqCst);
                        shared.r_reports.fetch_add(1, Ordering::SeqCst);
                        result =
                            tarn_rt::reply_recv(second, MessageInfo::new(0, 0, 1), [7, 0, 0, 0]);
                        syscall(Syscall::ReplyRecv, &result);
                        continue;
                    }
                    let replied = tarn_rt::reply(MessageInfo::new(0, 0, 1), [7, 0, 0, 0]);
                    syscall(Syscall::Reply, &replied);
                    shared.r_reports.fetch_add(1, Ordering::SeqCst);
                    break;
                }
            }
            R_WAIT => {
                shared.r_phase.store(PHASE_WAIT, Ordering::SeqCst);
                let result = tarn_rt::wait(cmd[1], cmd[2]);
                syscall(Syscall::Wait, &result);
                shared.r_out[0].store(code(&result), Ordering::SeqCst);
                shared.r_out[1].store(0, Ordering::SeqCst);
                shared.r_out[2].store(0, Ordering::SeqCst);
                shared.r_reports.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

/// Real-mode segments for a guest at `GUEST_LOAD` (only the bound thread
/// may write them).
fn real_mode_segments(vcpu: CPtr) -> Result<(), Error> {
    let segments = [
        (Segment::Cs, attributes::CODE16),
        (Segment::Ds, attributes::DATA16),
        (Segment::Es, attributes::DATA16),
        (Segment::Ss, attributes::DATA16),
        (Segment::Fs, attributes::DATA16),
        (Segment::Gs, attributes::DATA16),
        (Segment::Tr, attributes::TSS_BUSY),
        (Segment::Ldtr, attributes::LDT),
    ];
    for (segment, attributes) in segments {
        note(
            Invocation::VcpuWriteSegment,
            invoke::vcpu_write_segment(vcpu, segment, 0, 0, 0xFFFF, attributes),
        )?;
    }
    Ok(())
}

/// The vCPU runner's body.
pub fn vcpu_runner(shared: &Shared, doorbell: CPtr) -> ! {
    let mut last = 0;
    loop {
        let woken = tarn_rt::wait(doorbell, 0);
        syscall(Syscall::Wait, &woken);
        let seq = shared.v_seq.load(Ordering::SeqCst);
        if seq == last {
            continue;
        }
        last = seq;
        let vcpu = shared.v_cmd[0].load(Ordering::SeqCst);
        let timeout_ns = shared.v_cmd[1].load(Ordering::SeqCst);
        // The registers come from the register page (the driver wrote the
        // guest's initial ones there at `VcpuBind`); the exit stays there
        // unread: the driver may revoke the page at any time.
        let args = VcpuRunArgs {
            load: true,
            timeout_ns,
            ..VcpuRunArgs::default()
        };
        let result = real_mode_segments(vcpu)
            .and_then(|()| note(Invocation::VcpuRun, invoke::vcpu_run_in_place(vcpu, &args)));
        shared.v_out[0].store(code(&result), Ordering::SeqCst);
        shared.v_done.store(seq, Ordering::SeqCst);
    }
}

/// The spinner's body.
pub fn spinner(shared: &Shared) -> ! {
    loop {
        shared.d_count.fetch_add(1, Ordering::Relaxed);
        tarn_rt::yield_now();
        crate::coverage::count_ok(Syscall::Yield);
    }
}

/// Watchdog periods (10 s each) without a new step before the run fails.
const STALL_PERIODS: u32 = 6;

/// The watchdog's body: every 10 s (of kernel time) without a new step it
/// prints where the driver is (its operation and thread state, the
/// receiver's and the runner's), so a hang names its place; after a minute
/// it fails the run (a driver that panicked or waits forever would
/// otherwise hold it until the emulator's timeout).
pub fn watchdog(shared: &Shared, sleeper: CPtr, driver: CPtr, receiver: CPtr, runner: CPtr) -> ! {
    let mut last = u64::MAX;
    let mut stalled = 0;
    loop {
        let _ = tarn_rt::sleep(sleeper, 10_000_000_000);
        let step = shared.step.load(Ordering::SeqCst);
        stalled = if step == last { stalled + 1 } else { 0 };
        if stalled > 0 {
            let state = |tcb: CPtr| invoke::tcb_read_registers(tcb).map(|s| (s.state(), s.rip));
            tarn_rt::println!(
                "fuzz-graph: watchdog: no progress at step {step} (op {}): driver {:?}, receiver {:?} phase {} (command {} #{}, {} reports, the last: code {} caps {} label {:#x}), runner {:?} run {}/{}",
                shared.op.load(Ordering::SeqCst),
                state(driver),
                state(receiver),
                shared.r_phase.load(Ordering::SeqCst),
                shared.r_cmd[0].load(Ordering::SeqCst),
                shared.r_seq.load(Ordering::SeqCst),
                shared.r_reports.load(Ordering::SeqCst),
                shared.r_out[0].load(Ordering::SeqCst),
                shared.r_out[1].load(Ordering::SeqCst),
                shared.r_out[2].load(Ordering::SeqCst),
                state(runner),
                shared.v_done.load(Ordering::SeqCst),
                shared.v_seq.load(Ordering::SeqCst)
            );
        }
        if stalled == STALL_PERIODS {
            tarn_rt::println!(
                "fuzz-graph: FAILED: no progress for {} s at step {step}",
                10 * STALL_PERIODS
            );
            let result = invoke::machine_power_off(tarn_rt::layout::slot::MACHINE, 1);
            tarn_rt::println!("fuzz-graph: power-off failed: {result:?}");
        }
        last = step;
    }
}
