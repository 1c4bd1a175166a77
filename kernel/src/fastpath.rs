//! The IPC fastpath (as seL4's `fastpath_call` / `fastpath_reply_recv`): a
//! `Call` to a waiting server, or a server's `ReplyRecv` to a waiting caller,
//! with a register-only message (≤ 4 words, no capabilities) between two
//! system threads on this CPU, switches straight to the partner. (Threads
//! adopted by a user-mode scheduler take the general path: they run only from
//! dispatch entries.) Every condition is
//! an early exit to the general path in `ipc.rs`, which handles everything
//! the fastpath declines with identical results.

use crate::arch::lock::KernelGuard;
use crate::ipc;
use crate::object;
use crate::object::tcb;
use crate::sched;
use core::sync::atomic::{AtomicBool, Ordering};
use tarn_ipc_schema::invocation::ThreadState;
use tarn_ipc_schema::{MessageInfo, Rights, Syscall};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the fastpath off (kernel option `ipc_fastpath=off`, for measuring
/// the general path).
pub fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// Tries the fastpath for `thread`'s pending syscall; returns the thread to
/// switch to and its page-table root, having completed the IPC, or `None` to
/// take the general path.
#[inline(always)]
pub fn attempt(guard: &mut KernelGuard, thread: u64) -> Option<(u64, u64)> {
    // The syscall number first: every other syscall leaves at once.
    let f = tcb::frame(guard, thread);
    let (number, cptr, info) = (f.rax, f.rdi, MessageInfo(f.rsi));
    let is_call = number == Syscall::Call as u64;
    if !is_call && number != Syscall::ReplyRecv as u64 {
        return None;
    }
    if info.extra_caps() != 0 || info.length() > 4 || !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    // Threads adopted by a user-mode scheduler run only from dispatch
    // entries; switching to or from them directly would bypass that.
    if tcb::ctl(guard, thread).scheduler != 0 {
        return None;
    }
    let cap = object::endpoint_at(guard, tcb::slot_address(thread, tcb::slot::CSPACE), cptr)?;
    if is_call {
        call(guard, thread, cap, info)
    } else {
        reply_recv(guard, thread, cap, info)
    }
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

fn call(
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
    // (A server that still owes a reply takes the general path, which
    // tells that caller.)
    if s.cpu != sched::this_cpu() as u64 || s.scheduler != 0 || s.reply_to != 0 {
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
    let (caller, bound) = {
        let s = tcb::ctl(guard, server);
        (s.reply_to, s.bound_notification)
    };
    if caller == 0 || bound != 0 || ipc::has_senders(guard, endpoint) {
        return None;
    }
    let this_cpu = sched::this_cpu() as u64;
    let c = tcb::ctl(guard, caller);
    if c.state != ThreadState::BlockedOnReply as u64
        || c.reply_from != server
        || c.ipc_flags != 0
        || c.cpu != this_cpu
        || c.scheduler != 0
    {
        return None;
    }
    let root = tcb::runnable_root(guard, caller)?;
    // Commit.
    copy_registers(guard, server, caller, 0, info);
    let c = tcb::ctl(guard, caller);
    c.reply_from = 0;
    c.state = ThreadState::Runnable as u64;
    tcb::ctl(guard, server).reply_to = 0;
    ipc::block_receiver(guard, server, endpoint);
    Some((caller, root))
}
