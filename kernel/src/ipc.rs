//! Endpoints and notifications: message transfer, capability grant, badges,
//! call/reply, faults delivered as messages, and the notification word.
//!
//! An endpoint holds one queue of blocked threads, all senders or all
//! receivers. A message is MR0..MR3 (in the sender's saved registers), MR4..
//! (in its IPC buffer) and up to three capabilities (granted only through an
//! endpoint capability with GRANT). A fault is sent as if the faulting thread
//! had called its fault endpoint; its message lives in the TCB.

use crate::arch::lock::KernelGuard;
use crate::arch::objmem::{self, KernelObject};
use crate::invariants::{ensure, Live, Verdict};
use crate::object::tcb::{self, ipc_flag};
use crate::object::{self, cnode, read_cap, Cap, ObjectHeader};
use crate::sched;
use tarn_ipc_schema::invocation::ThreadState;
use tarn_ipc_schema::{
    fault, Error, IpcBuffer, MessageInfo, Rights, MAX_EXTRA_CAPS, MAX_MESSAGE_WORDS,
};

/// An endpoint: a queue of blocked senders or receivers.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Endpoint {
    header: ObjectHeader,
    /// 0 idle, [`QUEUE_SENDERS`] or [`QUEUE_RECEIVERS`].
    queue_kind: u64,
    head: u64,
    tail: u64,
}
impl KernelObject for Endpoint {}

/// A notification: a signal word and a queue of waiters. A signal pends
/// even through an unbadged capability (word 0): `pending` records it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Notification {
    header: ObjectHeader,
    word: u64,
    head: u64,
    tail: u64,
    bound_tcb: u64,
    pending: u64,
}
impl KernelObject for Notification {}
const _: () =
    assert!(core::mem::size_of::<Endpoint>() <= 64 && core::mem::size_of::<Notification>() <= 64);

const QUEUE_SENDERS: u64 = 1;
const QUEUE_RECEIVERS: u64 = 2;

struct Buffer(IpcBuffer);
impl KernelObject for Buffer {}

/// A queue head: endpoint or notification (both keep head/tail at the same
/// place relative to their own layout, so the queue code takes accessors).
#[derive(Clone, Copy)]
enum Queue {
    Endpoint(u64),
    Notification(u64),
}

impl Queue {
    fn ends(self, guard: &mut KernelGuard) -> (u64, u64) {
        match self {
            Queue::Endpoint(e) => {
                let e = objmem::object::<Endpoint>(guard, e);
                (e.head, e.tail)
            }
            Queue::Notification(n) => {
                let n = objmem::object::<Notification>(guard, n);
                (n.head, n.tail)
            }
        }
    }

    fn set_ends(self, guard: &mut KernelGuard, head: u64, tail: u64) {
        match self {
            Queue::Endpoint(e) => {
                let e = objmem::object::<Endpoint>(guard, e);
                e.head = head;
                e.tail = tail;
                if head == 0 {
                    e.queue_kind = 0;
                }
            }
            Queue::Notification(n) => {
                let n = objmem::object::<Notification>(guard, n);
                n.head = head;
                n.tail = tail;
            }
        }
    }

    fn push(self, guard: &mut KernelGuard, thread: u64) {
        let (head, tail) = self.ends(guard);
        {
            let t = tcb::ctl(guard, thread);
            t.ipc_next = 0;
            t.ipc_prev = tail;
        }
        if tail != 0 {
            tcb::ctl(guard, tail).ipc_next = thread;
        }
        self.set_ends(guard, if head == 0 { thread } else { head }, thread);
    }

    fn remove(self, guard: &mut KernelGuard, thread: u64) {
        let (prev, next) = {
            let t = tcb::ctl(guard, thread);
            (t.ipc_prev, t.ipc_next)
        };
        let (mut head, mut tail) = self.ends(guard);
        if prev == 0 {
            head = next;
        } else {
            tcb::ctl(guard, prev).ipc_next = next;
        }
        if next == 0 {
            tail = prev;
        } else {
            tcb::ctl(guard, next).ipc_prev = prev;
        }
        self.set_ends(guard, head, tail);
        let t = tcb::ctl(guard, thread);
        t.ipc_next = 0;
        t.ipc_prev = 0;
        t.blocked_on = 0;
    }

    fn pop(self, guard: &mut KernelGuard) -> Option<u64> {
        let (head, _) = self.ends(guard);
        (head != 0).then(|| {
            self.remove(guard, head);
            head
        })
    }
}

/// Checks the message-info word of a send: at most 64 words and 3 capabilities.
pub fn check_info(info: MessageInfo) -> Result<(), Error> {
    if info.length() > MAX_MESSAGE_WORDS || (info.0 >> 7) & 0x3 > MAX_EXTRA_CAPS as u64 {
        return Err(Error::MessageTooLong);
    }
    Ok(())
}

/// The message a thread is sending: label/info and its words.
struct Outgoing {
    info: MessageInfo,
    words: [u64; MAX_MESSAGE_WORDS],
    fault: bool,
}

fn outgoing(guard: &mut KernelGuard, sender: u64, info: MessageInfo) -> Outgoing {
    let t = *tcb::ctl(guard, sender);
    let mut words = [0u64; MAX_MESSAGE_WORDS];
    if t.ipc_flags & ipc_flag::FAULT != 0 {
        let fault = *tcb::fault(guard, sender);
        words[..4].copy_from_slice(&fault.words);
        return Outgoing {
            info: MessageInfo::new(fault.label, 0, 4),
            words,
            fault: true,
        };
    }
    let f = tcb::frame(guard, sender);
    words[..4].copy_from_slice(&[f.rdx, f.r10, f.r8, f.r9]);
    let mut length = info.length().min(MAX_MESSAGE_WORDS);
    if length > 4 {
        match tcb::ipc_buffer(guard, sender) {
            None => length = 4,
            Some(buffer) => {
                let buffer = &objmem::object::<Buffer>(guard, buffer).0;
                words[4..length].copy_from_slice(&buffer.mrs[4..length]);
            }
        }
    }
    Outgoing {
        info: MessageInfo::new(info.label(), info.extra_caps() as u64, length as u64),
        words,
        fault: false,
    }
}

/// Delivers `sender`'s message to `receiver` (whose receive completes).
/// `endpoint` is the endpoint header (for unwrapping), `grant` whether
/// capabilities may travel.
fn transfer(
    guard: &mut KernelGuard,
    sender: u64,
    receiver: u64,
    info: MessageInfo,
    badge: u64,
    endpoint: u64,
    grant: bool,
) {
    let message = outgoing(guard, sender, info);
    let mut length = message.info.length();
    let receiver_buffer = if length > 4 {
        tcb::ipc_buffer(guard, receiver)
    } else {
        None
    };
    if receiver_buffer.is_none() {
        length = length.min(4);
    }
    let mut delivered = 0u64;
    let mut unwrapped = 0u64;
    if grant && !message.fault && message.info.extra_caps() > 0 {
        (delivered, unwrapped) =
            transfer_caps(guard, sender, receiver, message.info.extra_caps(), endpoint);
    }
    if let (true, Some(buffer)) = (length > 4, receiver_buffer) {
        let buffer = &mut objmem::object::<Buffer>(guard, buffer).0;
        buffer.mrs[4..length].copy_from_slice(&message.words[4..length]);
    }
    let out = MessageInfo::new(message.info.label(), delivered, length as u64)
        .with_caps_unwrapped(unwrapped);
    let f = tcb::frame(guard, receiver);
    f.rax = 0;
    f.rdi = badge;
    f.rsi = out.0;
    f.rdx = message.words[0];
    f.r10 = message.words[1];
    f.r8 = message.words[2];
    f.r9 = message.words[3];
}

/// Moves up to `count` capabilities named in the sender's IPC buffer into the
/// receiver's receive window. Returns (how many went, unwrapped-badge mask).
fn transfer_caps(
    guard: &mut KernelGuard,
    sender: u64,
    receiver: u64,
    count: usize,
    endpoint: u64,
) -> (u64, u64) {
    let (Some(sender_buffer), Some(receiver_buffer)) = (
        tcb::ipc_buffer(guard, sender),
        tcb::ipc_buffer(guard, receiver),
    ) else {
        return (0, 0);
    };
    let cptrs = objmem::object::<Buffer>(guard, sender_buffer)
        .0
        .caps_or_badges;
    let (window, window_count) = {
        let b = &objmem::object::<Buffer>(guard, receiver_buffer).0;
        (b.receive_index, b.receive_count)
    };
    let sender_cspace = tcb::cspace(guard, sender);
    let receiver_cspace = tcb::cspace(guard, receiver);
    let mut badges = [0u64; MAX_EXTRA_CAPS];
    let (mut delivered, mut unwrapped, mut placed) = (0u64, 0u64, 0u64);
    for (i, &cptr) in cptrs.iter().enumerate().take(count) {
        let Ok(source) = object::slot_address(sender_cspace, cptr) else {
            break;
        };
        let cap = read_cap(guard, source);
        if let Cap::Endpoint { phys, badge, .. } = cap {
            if phys == endpoint {
                badges[i] = badge;
                unwrapped |= 1 << i;
                delivered += 1;
                continue;
            }
        }
        if placed >= window_count {
            break;
        }
        let Ok(dest) = object::slot_address(receiver_cspace, window + placed) else {
            break;
        };
        if read_cap(guard, dest) != Cap::Null {
            break;
        }
        let Ok(copy) = cnode::derive(cap, Rights::ALL, 0) else {
            break;
        };
        object::insert_cap(guard, dest, copy, source);
        placed += 1;
        delivered += 1;
    }
    // (Inserting capabilities deletes none: the buffer's frame is still there.)
    let b = &mut objmem::object::<Buffer>(guard, receiver_buffer).0;
    for (i, badge) in badges.iter().enumerate() {
        if unwrapped & (1 << i) != 0 {
            b.caps_or_badges[i] = *badge;
        }
    }
    (delivered, unwrapped)
}

/// Completes a rendezvous of `sender` (sending `info` with `badge`, `flags`)
/// and `receiver` on `endpoint`.
fn rendezvous(
    guard: &mut KernelGuard,
    sender: u64,
    receiver: u64,
    info: MessageInfo,
    badge: u64,
    flags: u64,
    endpoint: u64,
) {
    transfer(
        guard,
        sender,
        receiver,
        info,
        badge,
        endpoint,
        flags & ipc_flag::GRANT != 0,
    );
    if flags & ipc_flag::CALL != 0 {
        // A reply it still owed can no longer come: that caller is told.
        if tcb::ctl(guard, receiver).reply_to != 0 {
            forget_thread(guard, receiver);
        }
        tcb::ctl(guard, receiver).reply_to = sender;
        let s = tcb::ctl(guard, sender);
        s.state = ThreadState::BlockedOnReply as u64;
        s.reply_from = receiver;
        s.ipc_flags = flags & ipc_flag::FAULT;
        sched::dequeue(guard, sender);
    } else {
        tcb::set_result(guard, sender, Ok(()));
        if tcb::ctl(guard, sender).state != ThreadState::Runnable as u64 {
            sched::make_runnable(guard, sender);
        }
    }
}

/// `Send`/`NbSend`/`Call` on an endpoint by the current thread `sender`.
/// Returns whether the sender keeps running (its result is written).
pub fn send(
    guard: &mut KernelGuard,
    sender: u64,
    endpoint: Cap,
    info: MessageInfo,
    blocking: bool,
    call: bool,
) -> Result<(), Error> {
    let Cap::Endpoint {
        phys,
        badge,
        rights,
    } = endpoint
    else {
        return Err(Error::WrongType);
    };
    if !rights.contains(Rights::WRITE) {
        return Err(Error::InsufficientRights);
    }
    check_info(info)?;
    let flags = if call { ipc_flag::CALL } else { 0 }
        | if rights.contains(Rights::GRANT) {
            ipc_flag::GRANT
        } else {
            0
        };
    tcb::ctl(guard, sender).ipc_flags = flags;
    let ep = *objmem::object::<Endpoint>(guard, phys);
    if ep.queue_kind == QUEUE_RECEIVERS {
        let receiver = Queue::Endpoint(phys)
            .pop(guard)
            .expect("receiver queue is non-empty");
        rendezvous(guard, sender, receiver, info, badge, flags, phys);
        // A dispatched caller lends its entry to a system server: the server
        // runs on the caller's CPU, budget and account (IPC donation).
        if !(call && crate::dispatch::donate(guard, sender, receiver)) {
            sched::make_runnable(guard, receiver);
        }
        return Ok(());
    }
    if !blocking {
        return Err(Error::WouldBlock);
    }
    block_sender(guard, sender, phys, badge, flags);
    Ok(())
}

fn block_sender(guard: &mut KernelGuard, sender: u64, endpoint: u64, badge: u64, flags: u64) {
    {
        let t = tcb::ctl(guard, sender);
        t.state = ThreadState::BlockedOnSend as u64;
        t.blocked_on = endpoint;
        t.ipc_badge = badge;
        t.ipc_flags = flags;
    }
    sched::dequeue(guard, sender);
    Queue::Endpoint(endpoint).push(guard, sender);
    objmem::object::<Endpoint>(guard, endpoint).queue_kind = QUEUE_SENDERS;
}

/// `Recv`/`NbRecv` on an endpoint (or a notification) by `receiver`.
pub fn receive(
    guard: &mut KernelGuard,
    receiver: u64,
    cap: Cap,
    blocking: bool,
) -> Result<(), Error> {
    if let Cap::Notification { .. } = cap {
        return wait(
            guard,
            receiver,
            cap,
            if blocking {
                WaitMode::Block { timeout_ticks: 0 }
            } else {
                WaitMode::Poll
            },
        );
    }
    let Cap::Endpoint { phys, rights, .. } = cap else {
        return Err(Error::WrongType);
    };
    if !rights.contains(Rights::READ) {
        return Err(Error::InsufficientRights);
    }
    // A pending signal on the bound notification comes first.
    let bound = tcb::ctl(guard, receiver).bound_notification;
    if bound != 0 {
        if let Some(word) = take_pending(guard, bound) {
            deliver_signal(guard, receiver, word);
            return Ok(());
        }
    }
    let ep = *objmem::object::<Endpoint>(guard, phys);
    if ep.queue_kind == QUEUE_SENDERS {
        let sender = Queue::Endpoint(phys)
            .pop(guard)
            .expect("sender queue is non-empty");
        let s = *tcb::ctl(guard, sender);
        let info = MessageInfo(tcb::frame(guard, sender).rsi);
        rendezvous(
            guard,
            sender,
            receiver,
            info,
            s.ipc_badge,
            s.ipc_flags,
            phys,
        );
        return Ok(());
    }
    if !blocking {
        return Err(Error::WouldBlock);
    }
    block_receiver(guard, receiver, phys);
    Ok(())
}

/// The first receiver waiting on `endpoint`, if receivers are queued.
pub fn waiting_receiver(guard: &mut KernelGuard, endpoint: u64) -> Option<u64> {
    let ep = objmem::object::<Endpoint>(guard, endpoint);
    (ep.queue_kind == QUEUE_RECEIVERS).then_some(ep.head)
}

/// Removes `receiver`, the head of `endpoint`'s receiver queue
/// ([`waiting_receiver`]), from that queue: it is about to run. (The
/// fastpath's; `Queue::remove` for the head, inlined.)
#[inline(always)]
pub fn take_receiver(guard: &mut KernelGuard, endpoint: u64, receiver: u64) {
    let next = {
        let t = tcb::ctl(guard, receiver);
        debug_assert_eq!(t.ipc_prev, 0);
        t.blocked_on = 0;
        core::mem::take(&mut t.ipc_next)
    };
    let e = objmem::object::<Endpoint>(guard, endpoint);
    debug_assert_eq!(e.head, receiver);
    e.head = next;
    if next == 0 {
        e.tail = 0;
        e.queue_kind = 0;
    } else {
        tcb::ctl(guard, next).ipc_prev = 0;
    }
}

/// Whether senders wait on `endpoint`.
pub fn has_senders(guard: &mut KernelGuard, endpoint: u64) -> bool {
    objmem::object::<Endpoint>(guard, endpoint).queue_kind == QUEUE_SENDERS
}

/// Blocks the current thread `receiver` on `endpoint`. (Always inlined:
/// the fastpath's `ReplyRecv` ends here, and out of line it cost that
/// round trip 12 instructions.)
#[inline(always)]
pub fn block_receiver(guard: &mut KernelGuard, receiver: u64, endpoint: u64) {
    {
        let t = tcb::ctl(guard, receiver);
        t.state = ThreadState::BlockedOnReceive as u64;
        t.blocked_on = endpoint;
    }
    sched::dequeue(guard, receiver);
    Queue::Endpoint(endpoint).push(guard, receiver);
    objmem::object::<Endpoint>(guard, endpoint).queue_kind = QUEUE_RECEIVERS;
}

/// `Reply` by `replier` with message `info`.
pub fn reply(guard: &mut KernelGuard, replier: u64, info: MessageInfo) -> Result<(), Error> {
    check_info(info)?;
    let caller = core::mem::take(&mut tcb::ctl(guard, replier).reply_to);
    if caller == 0 {
        return Err(Error::NoReplyTarget);
    }
    let c = *tcb::ctl(guard, caller);
    if c.state != ThreadState::BlockedOnReply as u64 || c.reply_from != replier {
        return Err(Error::NoReplyTarget);
    }
    tcb::ctl(guard, caller).reply_from = 0;
    if c.ipc_flags & ipc_flag::FAULT != 0 {
        tcb::ctl(guard, caller).ipc_flags = 0;
        if info.label() == fault::FAULT_REPLY_RESUME {
            sched::make_runnable(guard, caller);
        } else {
            tcb::ctl(guard, caller).state = ThreadState::Inactive as u64;
        }
        return Ok(());
    }
    // A reply is a plain message without capabilities.
    tcb::ctl(guard, replier).ipc_flags = 0;
    transfer(
        guard,
        replier,
        caller,
        MessageInfo::new(info.label(), 0, info.length() as u64),
        0,
        0,
        false,
    );
    sched::make_runnable(guard, caller);
    Ok(())
}

/// Whether `waiter` may wait on `cap` (a readable notification bound to no
/// other thread); the notification's address.
#[inline(always)]
pub fn check_wait(guard: &mut KernelGuard, waiter: u64, cap: Cap) -> Result<u64, Error> {
    let Cap::Notification { phys, rights, .. } = cap else {
        return Err(Error::WrongType);
    };
    if !rights.contains(Rights::READ) {
        return Err(Error::InsufficientRights);
    }
    let bound = objmem::object::<Notification>(guard, phys).bound_tcb;
    if bound != 0 && bound != waiter {
        return Err(Error::IllegalState);
    }
    Ok(phys)
}

/// How a notification wait behaves when the word is zero.
#[derive(Clone, Copy)]
pub enum WaitMode {
    /// Return `WouldBlock`.
    Poll,
    /// Block, with a timeout in TSC ticks (0 = none).
    Block {
        /// Timeout in TSC ticks (0 = none).
        timeout_ticks: u64,
    },
}

/// `Wait`/`Poll` on a notification by `waiter`.
pub fn wait(guard: &mut KernelGuard, waiter: u64, cap: Cap, mode: WaitMode) -> Result<(), Error> {
    let phys = check_wait(guard, waiter, cap)?;
    if let Some(word) = take_pending(guard, phys) {
        deliver_signal(guard, waiter, word);
        return Ok(());
    }
    let WaitMode::Block { timeout_ticks } = mode else {
        return Err(Error::WouldBlock);
    };
    {
        let t = tcb::ctl(guard, waiter);
        t.state = ThreadState::BlockedOnNotification as u64;
        t.blocked_on = phys;
    }
    sched::dequeue(guard, waiter);
    Queue::Notification(phys).push(guard, waiter);
    if timeout_ticks != 0 {
        sched::add_timeout(
            guard,
            waiter,
            crate::arch::cpu::rdtsc().saturating_add(timeout_ticks),
        );
    }
    Ok(())
}

/// Consumes a pending signal: the word, or `None` if nothing is pending.
fn take_pending(guard: &mut KernelGuard, ntfn: u64) -> Option<u64> {
    let n = objmem::object::<Notification>(guard, ntfn);
    if n.pending == 0 {
        return None;
    }
    n.pending = 0;
    Some(core::mem::take(&mut n.word))
}

fn deliver_signal(guard: &mut KernelGuard, thread: u64, word: u64) {
    let f = tcb::frame(guard, thread);
    f.rax = 0;
    f.rdi = word;
    f.rsi = 0;
}

/// `Signal` on a notification capability.
pub fn signal(guard: &mut KernelGuard, cap: Cap) -> Result<(), Error> {
    let Cap::Notification {
        phys,
        badge,
        rights,
    } = cap
    else {
        return Err(Error::WrongType);
    };
    if !rights.contains(Rights::WRITE) {
        return Err(Error::InsufficientRights);
    }
    signal_object(guard, phys, badge);
    Ok(())
}

/// ORs `badge` into the notification at `phys` and wakes a waiter.
pub fn signal_object(guard: &mut KernelGuard, phys: u64, badge: u64) {
    let word = {
        let n = objmem::object::<Notification>(guard, phys);
        n.word |= badge;
        n.pending = 1;
        n.word
    };
    if let Some(waiter) = Queue::Notification(phys).pop(guard) {
        let n = objmem::object::<Notification>(guard, phys);
        n.word = 0;
        n.pending = 0;
        sched::cancel_timeout(guard, waiter);
        deliver_signal(guard, waiter, word);
        sched::make_runnable(guard, waiter);
        return;
    }
    let bound = objmem::object::<Notification>(guard, phys).bound_tcb;
    if bound != 0 && tcb::ctl(guard, bound).state == ThreadState::BlockedOnReceive as u64 {
        let n = objmem::object::<Notification>(guard, phys);
        n.word = 0;
        n.pending = 0;
        cancel_ipc(guard, bound);
        deliver_signal(guard, bound, word);
        sched::make_runnable(guard, bound);
    }
}

/// Binds notification `ntfn` to `thread`.
pub fn bind(guard: &mut KernelGuard, thread: u64, ntfn: u64) {
    tcb::ctl(guard, thread).bound_notification = ntfn;
    objmem::object::<Notification>(guard, ntfn).bound_tcb = thread;
}

/// Unbinds `thread`'s notification.
pub fn unbind(guard: &mut KernelGuard, thread: u64) {
    let ntfn = core::mem::take(&mut tcb::ctl(guard, thread).bound_notification);
    if ntfn != 0 {
        objmem::object::<Notification>(guard, ntfn).bound_tcb = 0;
    }
}

/// The thread bound to notification `ntfn` (0 = none).
pub fn bound_tcb(guard: &mut KernelGuard, ntfn: u64) -> u64 {
    objmem::object::<Notification>(guard, ntfn).bound_tcb
}

/// Aborts whatever IPC `thread` is blocked in (it stays blocked-state-less:
/// the caller decides what happens next).
pub fn cancel_ipc(guard: &mut KernelGuard, thread: u64) {
    let t = *tcb::ctl(guard, thread);
    sched::cancel_timeout(guard, thread);
    match t.state {
        s if s == ThreadState::BlockedOnSend as u64
            || s == ThreadState::BlockedOnReceive as u64 =>
        {
            Queue::Endpoint(t.blocked_on).remove(guard, thread);
        }
        s if s == ThreadState::BlockedOnNotification as u64 => {
            Queue::Notification(t.blocked_on).remove(guard, thread);
        }
        s if s == ThreadState::BlockedOnReply as u64 => {
            if t.reply_from != 0 && tcb::ctl(guard, t.reply_from).reply_to == thread {
                tcb::ctl(guard, t.reply_from).reply_to = 0;
            }
            tcb::ctl(guard, thread).reply_from = 0;
        }
        _ => {}
    }
}

/// Unblocks a thread whose partner object vanished: `ObjectDeleted`, or for a
/// pending fault, the thread stays stopped.
fn abort_blocked(guard: &mut KernelGuard, thread: u64) {
    let flags = tcb::ctl(guard, thread).ipc_flags;
    tcb::ctl(guard, thread).ipc_flags = 0;
    if flags & ipc_flag::FAULT != 0 {
        tcb::ctl(guard, thread).state = ThreadState::Inactive as u64;
        return;
    }
    tcb::set_result(guard, thread, Err(Error::ObjectDeleted));
    sched::make_runnable(guard, thread);
}

/// `thread` will never send the reply it owes (it is destroyed, or takes a
/// new call first): the caller waiting for it gets `ObjectDeleted` (a
/// faulted one stays stopped), so no caller keeps naming a server that no
/// longer answers it.
#[cold]
pub fn forget_thread(guard: &mut KernelGuard, thread: u64) {
    let caller = core::mem::take(&mut tcb::ctl(guard, thread).reply_to);
    if caller != 0 {
        let c = *tcb::ctl(guard, caller);
        if c.state == ThreadState::BlockedOnReply as u64 && c.reply_from == thread {
            tcb::ctl(guard, caller).reply_from = 0;
            abort_blocked(guard, caller);
        }
    }
}

/// Destroys an endpoint: every queued thread gets `ObjectDeleted`.
pub fn destroy_endpoint(guard: &mut KernelGuard, endpoint: u64) {
    while let Some(thread) = Queue::Endpoint(endpoint).pop(guard) {
        abort_blocked(guard, thread);
    }
}

/// Destroys a notification: waiters get `ObjectDeleted`; the binding goes.
pub fn destroy_notification(guard: &mut KernelGuard, ntfn: u64) {
    while let Some(thread) = Queue::Notification(ntfn).pop(guard) {
        sched::cancel_timeout(guard, thread);
        abort_blocked(guard, thread);
    }
    let bound = objmem::object::<Notification>(guard, ntfn).bound_tcb;
    if bound != 0 {
        unbind(guard, bound);
    }
    crate::devices::forget_notification(guard, ntfn);
}

/// Sends a fault message for `thread` to its fault endpoint, or stops it
/// with a console report when it has none.
pub fn deliver_fault(guard: &mut KernelGuard, thread: u64, label: u64, words: [u64; 4]) {
    crate::dispatch::on_fault(guard, thread);
    let handler = read_cap(guard, tcb::slot_address(thread, tcb::slot::FAULT_ENDPOINT));
    let Cap::Endpoint { phys, badge, .. } = handler else {
        let name = match label {
            fault::PAGE_FAULT => "page fault",
            fault::WATCHDOG => "watchdog",
            _ => "exception",
        };
        kprintln!(
            "tarn: thread {thread:#x} stopped: {name} (vector {}) at rip {:#x}, address {:#x}, error {:#x}; it has no fault endpoint",
            words[3], words[0], words[1], words[2]
        );
        tcb::suspend(guard, thread);
        return;
    };
    *tcb::fault(guard, thread) = tcb::FaultMessage { label, words };
    let flags = ipc_flag::CALL | ipc_flag::FAULT;
    tcb::ctl(guard, thread).ipc_flags = flags;
    let ep = *objmem::object::<Endpoint>(guard, phys);
    if ep.queue_kind == QUEUE_RECEIVERS {
        let receiver = Queue::Endpoint(phys)
            .pop(guard)
            .expect("receiver queue is non-empty");
        rendezvous(
            guard,
            thread,
            receiver,
            MessageInfo::default(),
            badge,
            flags,
            phys,
        );
        sched::make_runnable(guard, receiver);
    } else {
        block_sender(guard, thread, phys, badge, flags);
    }
}

/// Walks one queue (the invariant check): every thread in it is a live TCB
/// blocked in `state` on `object`, its back link names the thread before
/// it, and the tail is the last. Returns its length.
fn check_queue(
    guard: &mut KernelGuard,
    live: &Live,
    queue: Queue,
    object: u64,
    state: ThreadState,
) -> Verdict<u64> {
    let (head, tail) = queue.ends(guard);
    let (mut previous, mut thread, mut length) = (0u64, head, 0u64);
    while thread != 0 {
        length += 1;
        ensure(
            live.is_tcb(thread) && length <= live.tcbs.len() as u64,
            "a queue holds no live thread, or loops",
            object,
        )?;
        let t = *tcb::ctl(guard, thread);
        ensure(
            t.state == state as u64 && t.blocked_on == object && t.ipc_prev == previous,
            "a queued thread is not blocked on its queue's object",
            thread,
        )?;
        previous = thread;
        thread = t.ipc_next;
    }
    ensure(
        tail == previous,
        "a queue's tail is not its last thread",
        object,
    )?;
    Ok(length)
}

/// Checks every endpoint's and notification's queue and every notification
/// binding (the invariant check). Returns how many threads the queues hold.
pub fn check(guard: &mut KernelGuard, live: &Live) -> Verdict<u64> {
    let mut queued = 0;
    for &endpoint in &live.endpoints {
        let kind = objmem::object::<Endpoint>(guard, endpoint).queue_kind;
        let state = match kind {
            QUEUE_SENDERS => ThreadState::BlockedOnSend,
            QUEUE_RECEIVERS => ThreadState::BlockedOnReceive,
            _ => ThreadState::Inactive,
        };
        let length = check_queue(guard, live, Queue::Endpoint(endpoint), endpoint, state)?;
        ensure(
            (kind == 0) == (length == 0) && kind <= QUEUE_RECEIVERS,
            "an endpoint's queue kind does not match its queue",
            endpoint,
        )?;
        queued += length;
    }
    for &ntfn in &live.notifications {
        queued += check_queue(
            guard,
            live,
            Queue::Notification(ntfn),
            ntfn,
            ThreadState::BlockedOnNotification,
        )?;
        let bound = objmem::object::<Notification>(guard, ntfn).bound_tcb;
        ensure(
            bound == 0 || (live.is_tcb(bound) && tcb::ctl(guard, bound).bound_notification == ntfn),
            "a notification is bound to a thread not bound to it",
            ntfn,
        )?;
    }
    Ok(queued)
}
