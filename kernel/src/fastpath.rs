//! The IPC fastpath (as seL4's `fastpath_call` / `fastpath_reply_recv`): a
//! `Call` to a waiting server, or a server's `ReplyRecv` to a waiting caller,
//! with a register-only message (≤ 4 words, no capabilities) on this CPU,
//! switches straight to the partner. Every condition is an early exit to the
//! general path in `ipc.rs`, which handles everything the fastpath declines
//! with identical results.
//!
//! The two system calls have kernel entries of their own (as seL4's
//! `c_handle_fastpath_call` / `c_handle_fastpath_reply_recv`): user.S
//! saves the frame as for every system call, tests the number and calls
//! [`call_entry`] or [`reply_recv_entry`] with the capability pointer and
//! message info still in their argument registers. Each is a small
//! function of its own (its frame and saved registers only what its path
//! needs, not the general path's), takes the kernel lock, and leaves
//! through `sched::switch_to`; what it declines goes to
//! `syscall::general` with the same saved frame.
//!
//! The server is always a system thread. The caller is either a system
//! thread too, or a thread adopted by a user-mode scheduler that is running
//! its CPU's head dispatch entry: then the server runs on that entry (IPC
//! donation, as MCS passes a scheduling context), exactly as the general
//! path's `dispatch::donate` arranges, and the reply hands the entry back,
//! both without a scheduling pass. The entry's clock keeps running across
//! both switches (its budget and run time include the server's work), the
//! one-shot timer stays armed for the entry's budget (its expiry ends the
//! entry through the timer path, and the server finishes as a system
//! thread), and each switch charges the thread that ran as a scheduling
//! pass would (`sched::charge_switch`). The fastpath declines whenever
//! the general path would do anything else: a system thread waiting in this
//! CPU's FIFO (it would run first), the entry lent already, the caller not
//! the running entry, the server on another CPU.
//!
//! `VcpuRun` (a `Call` on a Vcpu capability with that label) has its entry
//! here too: started without the general invocation decode and entered
//! without a scheduling pass when the pass would pick the caller again
//! (`crate::vcpu::run_fast`, which declines, changing nothing, otherwise).
//!
//! One case where the two paths differ, older than the donation fastpath:
//! a server running on a lent entry that itself calls (or replies to)
//! another system thread switches to it directly here, so that thread's
//! work runs on, and is charged to, the lent entry; the general path would
//! queue it in the FIFO and stop the entry's clock while it runs.

use crate::arch::lock::KernelGuard;
use crate::dispatch;
use crate::ipc;
use crate::object;
use crate::object::tcb;
use crate::sched;
use core::sync::atomic::{AtomicBool, Ordering};
use tarn_ipc_schema::invocation::{Invocation, ThreadState};
use tarn_ipc_schema::{MessageInfo, Rights};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the fastpath off (kernel option `ipc_fastpath=off`, for measuring
/// the general path).
pub fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// Whether `info` describes a register-only message (at most four words,
/// no capabilities) and the fastpath is on. (One test: the capability count
/// sits just above the 7-bit length.)
#[inline(always)]
fn fits(info: MessageInfo) -> bool {
    info.0 & 0x1FF <= 4 && ENABLED.load(Ordering::Relaxed)
}

/// `Call`'s entry (`cptr`, `info`: the thread's `rdi` and `rsi`): the IPC
/// fastpath to a waiting server, or `VcpuRun`'s, switching without
/// returning; anything else, and anything they decline, takes the general
/// path with the same saved registers.
#[inline(always)]
pub fn call_entry(mut guard: KernelGuard, cptr: u64, info: u64) -> ! {
    let thread = sched::current(&mut guard);
    let info = MessageInfo(info);
    if thread == 0 {
        crate::syscall::general(guard, thread)
    }
    if fits(info) {
        let cspace = tcb::slot_address(thread, tcb::slot::CSPACE);
        match object::endpoint_at(&mut guard, cspace, cptr) {
            Some(cap) => {
                let (adopted, confined) = {
                    let t = tcb::ctl(&mut guard, thread);
                    (t.scheduler, t.confined)
                };
                // (Confined threads, caller or server, take the general
                // path: it places them by their confinement and wakes them
                // through `sched::make_runnable`, where their watchdog
                // restarts.)
                let switch = if confined != 0 {
                    None
                } else if adopted != 0 {
                    // A thread adopted by a user-mode scheduler runs only
                    // from its dispatch entry, which it lends to the server.
                    call::<true>(&mut guard, thread, cap, info)
                } else {
                    call::<false>(&mut guard, thread, cap, info)
                };
                if let Some((next, root)) = switch {
                    sched::switch_to(guard, next, root)
                }
            }
            // Out of line, with the capability decoded again there: with
            // the Vcpu case sharing the endpoint's decode, the IPC round
            // trip measured about 30 instructions slower (register pressure
            // in the inlined fastpath).
            None if info.label() == Invocation::VcpuRun as u64
                && vcpu_run(&mut guard, thread, cspace, cptr) =>
            {
                crate::vcpu::enter_guest(guard, thread)
            }
            None => {}
        }
    }
    crate::syscall::general(guard, thread)
}

/// `ReplyRecv`'s entry, as [`call_entry`].
#[inline(always)]
pub fn reply_recv_entry(mut guard: KernelGuard, cptr: u64, info: u64) -> ! {
    let thread = sched::current(&mut guard);
    let info = MessageInfo(info);
    if thread == 0 {
        crate::syscall::general(guard, thread)
    }
    if fits(info) {
        let cspace = tcb::slot_address(thread, tcb::slot::CSPACE);
        if let Some(cap) = object::endpoint_at(&mut guard, cspace, cptr) {
            if let Some((next, root)) = reply_recv(&mut guard, thread, cap, info) {
                sched::switch_to(guard, next, root)
            }
        }
    }
    crate::syscall::general(guard, thread)
}

/// `VcpuRun` (a `Call` on a Vcpu capability with that label and at most
/// the four register words it reads), without the general invocation
/// decode and without a scheduling pass: the vcpu module takes it when
/// the pass would only pick the caller again.
#[inline(never)]
fn vcpu_run(guard: &mut KernelGuard, thread: u64, cspace: u64, cptr: u64) -> bool {
    let Some(vcpu) = object::vcpu_at(guard, cspace, cptr) else {
        return false;
    };
    let f = tcb::frame(guard, thread);
    let words = [f.rdx, f.r10, f.r8, f.r9];
    crate::vcpu::run_fast(guard, thread, vcpu, words)
}

/// Copies the register message of `from` into `to`'s saved registers.
#[inline]
fn copy_registers(guard: &mut KernelGuard, from: u64, to: u64, badge: u64, info: MessageInfo) {
    let source = tcb::frame(guard, from);
    let message = [source.rdx, source.r10, source.r8, source.r9];
    let dest = tcb::frame(guard, to);
    dest.rax = 0;
    dest.rdi = badge;
    dest.rsi = MessageInfo::new(info.label(), 0, info.length() as u64).0;
    [dest.rdx, dest.r10, dest.r8, dest.r9] = message;
}

/// `Call` by a system thread (`DONATE` false) or by a dispatched thread
/// running its CPU's head entry, which it lends to the server (`DONATE`
/// true; one instance each, so the system path carries none of the
/// donation's checks). Inlined: out of line, its result went through
/// memory and its registers were saved around it.
#[inline(always)]
fn call<const DONATE: bool>(
    guard: &mut KernelGuard,
    caller: u64,
    (endpoint, badge, rights): (u64, u64, Rights),
    info: MessageInfo,
) -> Option<(u64, u64)> {
    if !rights.contains(Rights::WRITE) {
        return None;
    }
    let server = ipc::waiting_receiver(guard, endpoint)?;
    let s = tcb::ctl(guard, server);
    let cpu = sched::this_cpu();
    // (A server that still owes a reply takes the general path, which
    // tells that caller.)
    // (A confined server takes the general path too.)
    if s.cpu != cpu as u64 || (s.scheduler | s.reply_to | s.confined) != 0 {
        return None;
    }
    // A dispatched caller lends its running entry, as `dispatch::donate`
    // would, when nothing else would run first.
    if DONATE && !(dispatch::can_lend(guard, cpu, caller) && sched::fifo_empty(guard, cpu)) {
        return None;
    }
    let root = tcb::runnable_root(guard, server)?;
    // Commit: nothing below can fail.
    ipc::take_receiver(guard, endpoint, server);
    copy_registers(guard, caller, server, badge, info);
    let s = tcb::ctl(guard, server);
    s.reply_to = caller;
    s.state = ThreadState::Runnable as u64;
    let c = tcb::ctl(guard, caller);
    c.state = ThreadState::BlockedOnReply as u64;
    c.reply_from = server;
    c.ipc_flags = 0;
    if DONATE {
        dispatch::lend(guard, cpu, server);
        sched::charge_switch(guard, server, false);
    }
    Some((server, root))
}

fn reply_recv(
    guard: &mut KernelGuard,
    server: u64,
    (endpoint, _, rights): (u64, u64, Rights),
    info: MessageInfo,
) -> Option<(u64, u64)> {
    if !rights.contains(Rights::READ) {
        return None;
    }
    let (caller, bound, adopted, confined) = {
        let s = tcb::ctl(guard, server);
        (s.reply_to, s.bound_notification, s.scheduler, s.confined)
    };
    // (A server adopted by a user-mode scheduler takes the general path:
    // switching from its entry to a system thread would not stop the
    // entry's clock.)
    if caller == 0 || (bound | adopted | confined) != 0 || ipc::has_senders(guard, endpoint) {
        return None;
    }
    let cpu = sched::this_cpu();
    let c = tcb::ctl(guard, caller);
    if c.state != ThreadState::BlockedOnReply as u64
        || c.reply_from != server
        || (c.ipc_flags | c.confined) != 0
        || c.cpu != cpu as u64
    {
        return None;
    }
    if c.scheduler != 0 {
        return reply_to_dispatched(guard, server, caller, endpoint, info, cpu);
    }
    let root = tcb::runnable_root(guard, caller)?;
    // Commit.
    complete_reply(guard, server, caller, endpoint, info);
    Some((caller, root))
}

/// The rest of `ReplyRecv` to `caller`, a dispatched thread blocked on this
/// server's reply: it gets its entry back if this server runs on it and
/// nothing else would run first (as `dispatch::head_entry` would pick it
/// next); otherwise the general path decides. (Inlined into `ReplyRecv`'s
/// own entry: out of line, its result went through memory.)
#[inline(always)]
fn reply_to_dispatched(
    guard: &mut KernelGuard,
    server: u64,
    caller: u64,
    endpoint: u64,
    info: MessageInfo,
    cpu: usize,
) -> Option<(u64, u64)> {
    if !(dispatch::lent_to(guard, cpu, server, caller) && sched::fifo_empty(guard, cpu)) {
        return None;
    }
    let root = tcb::runnable_root(guard, caller)?;
    // Commit.
    complete_reply(guard, server, caller, endpoint, info);
    dispatch::end_loan(guard, cpu);
    sched::charge_switch(guard, caller, true);
    Some((caller, root))
}

/// Delivers `server`'s reply to `caller` and blocks `server` on `endpoint`.
#[inline(always)]
fn complete_reply(
    guard: &mut KernelGuard,
    server: u64,
    caller: u64,
    endpoint: u64,
    info: MessageInfo,
) {
    copy_registers(guard, server, caller, 0, info);
    let c = tcb::ctl(guard, caller);
    c.reply_from = 0;
    c.state = ThreadState::Runnable as u64;
    tcb::ctl(guard, server).reply_to = 0;
    ipc::block_receiver(guard, server, endpoint);
}
