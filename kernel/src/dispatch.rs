//! User-mode scheduling, the kernel half: `Cpu` capabilities, `Scheduler`
//! objects, per-CPU dispatch queues and event rings. The kernel never picks
//! an adopted thread on its own: it runs the entries a scheduler server put in
//! a CPU's queue, in order, each for at most its budget, and reports what
//! happened (with exact run time) in that CPU's event ring.
//!
//! Isolation: a CPU runs only entries of the scheduler it is bound to, and an
//! entry names only a thread that scheduler adopted; both are checked at
//! dispatch. Unbinding a CPU (also by deleting or revoking the `Cpu`
//! capability that bound it) evicts its queue under the kernel lock, so
//! revocation is atomic with respect to dispatch. System threads (never
//! adopted) keep running in the system FIFO (`sched.rs`), ahead of entries.
//!
//! Confinement (`TcbConfine`): a Scheduler also keeps a list of the threads
//! confined to it (a policy server's, so that a user's policy is untrusted
//! code). Such a thread runs as a system thread only on a CPU bound to its
//! Scheduler ([`confinement_allows`]; where it goes otherwise, and the idle
//! class while the Scheduler has no CPU, is `sched.rs`'s). Every change of
//! a Scheduler's CPUs places its runnable confined threads again
//! ([`place_confined`]); a thread a confined thread retypes is confined
//! likewise ([`inherit_confinement`]); a confined thread confines nothing,
//! and confinement is never changed or lifted; no other Scheduler adopts a
//! confined thread, and donation lends no entry to one outside its CPUs.
//! Destroying the Scheduler suspends its confined threads for good
//! ([`ORPHANED`]): there is no CPU left where they may run.

use crate::arch::lock::{BklCell, KernelGuard};
use crate::arch::objmem::{self, KernelObject};
use crate::arch::percpu::{self, MAX_CPUS};
use crate::arch::{apic, cpu, timer, trap};
use crate::invariants::{ensure, Live, Verdict};
use crate::object::held::{self, BindingRole};
use crate::object::tcb;
use crate::object::{read_cap, Cap, ObjectHeader};
use crate::sched;
use crate::syscall::Caller;
use tarn_ipc_schema::invocation::{Invocation, ThreadState};
use tarn_ipc_schema::sched::{Event, EventKind, EventRing, DISPATCH_QUEUE_LEN, RING_CAPACITY};
use tarn_ipc_schema::{CpuSet, Error, Rights};

/// A Scheduler object.
#[repr(C)]
#[derive(Clone, Copy)]
struct Scheduler {
    header: ObjectHeader,
    /// The CPUs bound to this scheduler.
    cpus: CpuSet,
    /// Adopted threads (a list through `Control::adopted_next/prev`).
    first_thread: u64,
    /// Confined threads (a list through `tcb::Confinement`).
    first_confined: u64,
}
impl KernelObject for Scheduler {}
const _: () =
    assert!(core::mem::size_of::<Scheduler>() <= 1 << tarn_ipc_schema::SCHEDULER_SIZE_BITS);

struct Ring(EventRing);
impl KernelObject for Ring {}

#[derive(Clone, Copy, Default)]
struct Entry {
    thread: u64,
    budget_ns: u64,
}

/// One CPU's binding and dispatch queue.
#[derive(Clone, Copy)]
struct CpuDispatch {
    /// The bound Scheduler (header phys, 0 = unbound).
    scheduler: u64,
    // The Cpu capability that bound it (as the parent of the kernel's copy),
    // the event ring and the notification signalled on new events are the
    // capabilities of the CPU's binding record (`held::binding`).
    /// The event ring's address, copied from the record's capability for the
    /// dispatch path (0 once that capability is deleted: cleared in the
    /// same step, `binding_cap_deleted`).
    ring: u64,
    /// The notification's address and badge, likewise.
    notify: u64,
    notify_badge: u64,
    queue: [Entry; DISPATCH_QUEUE_LEN],
    head: usize,
    len: usize,
    /// TSC when the head entry last started running (0 = not running).
    started: u64,
    /// ns the head entry has run so far.
    ran_ns: u64,
    /// `QueueEmpty` already reported since the last dispatch.
    empty_reported: bool,
    /// Tick period and next tick (TSC), 0 = none.
    tick_ticks: u64,
    next_tick: u64,
    /// The system thread running on the head entry's time while the entry's
    /// thread waits for its reply (IPC donation; 0 = none).
    donated_to: u64,
}

const UNBOUND: CpuDispatch = CpuDispatch {
    scheduler: 0,
    ring: 0,
    notify: 0,
    notify_badge: 0,
    queue: [Entry {
        thread: 0,
        budget_ns: 0,
    }; DISPATCH_QUEUE_LEN],
    head: 0,
    len: 0,
    started: 0,
    ran_ns: 0,
    empty_reported: false,
    tick_ticks: 0,
    next_tick: 0,
    donated_to: 0,
};

static CPUS: BklCell<[CpuDispatch; MAX_CPUS]> = BklCell::new([UNBOUND; MAX_CPUS]);

/// The part of a CPU's dispatch state the scheduling paths read (a copy of
/// the whole record would copy its queue on every pass).
#[derive(Clone, Copy)]
struct Head {
    scheduler: u64,
    len: usize,
    /// The head entry (meaningless when `len` is 0).
    entry: Entry,
    started: u64,
    ran_ns: u64,
    empty_reported: bool,
    tick_ticks: u64,
    next_tick: u64,
    donated_to: u64,
}

/// CPU `cpu`'s [`Head`].
#[inline(always)]
fn head(guard: &mut KernelGuard, cpu: usize) -> Head {
    let d = &CPUS.get(guard)[cpu];
    Head {
        scheduler: d.scheduler,
        len: d.len,
        entry: d.queue[d.head],
        started: d.started,
        ran_ns: d.ran_ns,
        empty_reported: d.empty_reported,
        tick_ticks: d.tick_ticks,
        next_tick: d.next_tick,
        donated_to: d.donated_to,
    }
}

/// Entries found naming a thread of another scheduler (always 0 unless the
/// kernel is wrong; part of the invariant check).
static ISOLATION_VIOLATIONS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Whether no CPU was ever about to run a thread outside its scheduler.
pub fn isolation_held() -> bool {
    ISOLATION_VIOLATIONS.load(core::sync::atomic::Ordering::Relaxed) == 0
}

fn now_ns() -> u64 {
    timer::tsc_to_ns(cpu::rdtsc())
}

/// Appends an event to CPU `cpu`'s ring (dropping it with `overflow` set when
/// the ring is full) and signals the scheduler's notification: those the
/// capabilities of the CPU's binding record name. An unbound CPU has no
/// ring; while a binding ends because its ring's capability was deleted,
/// events are dropped, and because its notification's was, they are not
/// signalled.
fn push_event(guard: &mut KernelGuard, cpu: usize, kind: EventKind, thread: u64, ran_ns: u64) {
    let d = &CPUS.get(guard)[cpu];
    let (ring, notify, badge) = (d.ring, d.notify, d.notify_badge);
    if ring == 0 {
        return;
    }
    let thread_id = if thread == 0 {
        0
    } else {
        tcb::ctl(guard, thread).thread_id
    };
    write_event(guard, ring, cpu, kind, thread_id, ran_ns);
    if notify != 0 {
        crate::ipc::signal_object(guard, notify, badge);
    }
}

/// Writes one event into the ring frame at `ring`.
#[inline]
fn write_event(
    guard: &mut KernelGuard,
    ring: u64,
    cpu: usize,
    kind: EventKind,
    thread_id: u64,
    ran_ns: u64,
) {
    let ring = &mut objmem::object::<Ring>(guard, ring).0;
    let (head, tail) = (ring.header.head, ring.header.tail);
    // The tail is written by user code: an impossible value counts as full.
    if head.wrapping_sub(tail) >= RING_CAPACITY as u64 {
        ring.header.overflow = 1;
    } else {
        ring.events[(head % RING_CAPACITY as u64) as usize] = Event {
            kind: kind as u32,
            cpu: cpu as u32,
            thread: thread_id,
            timestamp_ns: now_ns(),
            ran_ns,
        };
        ring.header.head = head.wrapping_add(1);
    }
}

/// The CPU whose ring hears about `thread` when it is on none: this CPU if
/// bound to the thread's scheduler, else the lowest bound one.
fn home_cpu(guard: &mut KernelGuard, scheduler: u64) -> Option<usize> {
    let here = sched::this_cpu();
    if CPUS.get(guard)[here].scheduler == scheduler {
        return Some(here);
    }
    objmem::object::<Scheduler>(guard, scheduler).cpus.first()
}

/// Whether `thread` was adopted by a scheduler.
pub fn is_adopted(guard: &mut KernelGuard, thread: u64) -> bool {
    tcb::ctl(guard, thread).scheduler != 0
}

/// An adopted thread became runnable: tell its scheduler.
pub fn on_woken(guard: &mut KernelGuard, thread: u64) {
    let scheduler = tcb::ctl(guard, thread).scheduler;
    if let Some(cpu) = home_cpu(guard, scheduler) {
        push_event(guard, cpu, EventKind::Woken, thread, 0);
    }
}

/// The entry CPU `cpu` should run now: (thread, TSC deadline of its budget).
/// Ends entries whose thread can no longer run (reporting why).
pub fn head_entry(guard: &mut KernelGuard, cpu: usize) -> Option<(u64, u64)> {
    loop {
        // (An unbound CPU, the common case of a system thread's pass,
        // leaves before anything else is read.)
        if CPUS.get(guard)[cpu].scheduler == 0 {
            return None;
        }
        let d = head(guard, cpu);
        if d.len == 0 {
            if !d.empty_reported {
                CPUS.get(guard)[cpu].empty_reported = true;
                push_event(guard, cpu, EventKind::QueueEmpty, 0, 0);
            }
            return None;
        }
        let entry = d.entry;
        // Isolation, checked where it matters: a CPU only ever starts a
        // thread of the scheduler it is bound to. (Dispatch and release keep
        // this true; a violation is a kernel bug, counted for the invariant
        // check, and the entry is dropped instead of run.)
        if tcb::ctl(guard, entry.thread).scheduler != d.scheduler {
            ISOLATION_VIOLATIONS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            end_entry(guard, cpu, EventKind::Evicted);
            continue;
        }
        let mut run = entry.thread;
        if tcb::ctl(guard, entry.thread).state != ThreadState::Runnable as u64 {
            // Still lent to a server that owes the entry's thread its reply?
            let server = d.donated_to;
            let lent = server != 0 && {
                let caller = *tcb::ctl(guard, entry.thread);
                caller.state == ThreadState::BlockedOnReply as u64
                    && caller.reply_from == server
                    && tcb::ctl(guard, server).state == ThreadState::Runnable as u64
            };
            if !lent {
                end_entry(guard, cpu, EventKind::Blocked);
                continue;
            }
            run = server;
        } else if d.donated_to != 0 {
            CPUS.get(guard)[cpu].donated_to = 0;
        }
        let now = cpu::rdtsc();
        let remaining = entry.budget_ns.saturating_sub(d.ran_ns);
        if remaining == 0 {
            end_entry(guard, cpu, EventKind::BudgetExpired);
            continue;
        }
        let state = &mut CPUS.get(guard)[cpu];
        if state.started == 0 {
            state.started = now;
        }
        let deadline = state.started + timer::ns_to_tsc(remaining).max(1);
        tcb::ctl(guard, run).cpu = cpu as u64;
        return Some((run, deadline));
    }
}

/// Stops the clock of CPU `cpu`'s running entry (a system thread preempts it,
/// or it ends).
pub fn pause(guard: &mut KernelGuard, cpu: usize) {
    let d = &mut CPUS.get(guard)[cpu];
    if d.started != 0 {
        let ran = timer::tsc_to_ns(cpu::rdtsc().saturating_sub(d.started));
        d.ran_ns += ran;
        d.started = 0;
    }
}

/// A dispatched `caller`, running its entry on this CPU, has just called
/// `server`, which received the message: if `server` is a system thread, it
/// runs on the caller's entry (its CPU, budget and account) until it replies,
/// and `true` is returned; otherwise the caller takes the normal path.
pub fn donate(guard: &mut KernelGuard, caller: u64, server: u64) -> bool {
    let cpu = sched::this_cpu();
    if running_entry(guard, cpu) != Some(caller)
        || tcb::ctl(guard, server).scheduler != 0
        || !confinement_allows(guard, server, cpu)
    {
        return false;
    }
    let s = tcb::ctl(guard, server);
    s.state = ThreadState::Runnable as u64;
    s.cpu = cpu as u64;
    let ran = s.ran_tsc;
    // (It woke, as `sched::make_runnable` says for a confined thread.)
    sched::restart_watchdog(guard, server, ran);
    CPUS.get(guard)[cpu].donated_to = server;
    true
}

/// Whether `caller` runs CPU `cpu`'s head entry, lent to no one (the IPC
/// fastpath may then lend it to a server, [`lend`]). (`head` is below the
/// queue's length; the modulo only spares the bounds test.)
#[inline(always)]
pub fn can_lend(guard: &mut KernelGuard, cpu: usize, caller: u64) -> bool {
    let d = &CPUS.get(guard)[cpu];
    d.donated_to == 0
        && d.len > 0
        && d.started != 0
        && d.queue[d.head % DISPATCH_QUEUE_LEN].thread == caller
}

/// Lends CPU `cpu`'s running entry to `server` (the IPC fastpath's
/// [`donate`]: the server is this CPU's, runnable and about to run).
#[inline(always)]
pub fn lend(guard: &mut KernelGuard, cpu: usize, server: u64) {
    CPUS.get(guard)[cpu].donated_to = server;
}

/// Whether CPU `cpu`'s running entry, that of `caller`, is lent to `server`
/// (the IPC fastpath may then hand it back, [`end_loan`]).
#[inline(always)]
pub fn lent_to(guard: &mut KernelGuard, cpu: usize, server: u64, caller: u64) -> bool {
    let d = &CPUS.get(guard)[cpu];
    d.donated_to == server
        && d.len > 0
        && d.started != 0
        && d.queue[d.head % DISPATCH_QUEUE_LEN].thread == caller
}

/// The server replied: CPU `cpu`'s entry runs its own thread again (as
/// [`head_entry`] does when it finds the entry's thread runnable).
#[inline(always)]
pub fn end_loan(guard: &mut KernelGuard, cpu: usize) {
    CPUS.get(guard)[cpu].donated_to = 0;
}

/// Ends CPU `cpu`'s head entry and reports `kind` with its run time.
fn end_entry(guard: &mut KernelGuard, cpu: usize, kind: EventKind) {
    pause(guard, cpu);
    let donated_to = core::mem::take(&mut CPUS.get(guard)[cpu].donated_to);
    if donated_to != 0 && tcb::ctl(guard, donated_to).state == ThreadState::Runnable as u64 {
        // The entry ends while its server still runs: the server finishes
        // as what it is, a system thread (on this CPU's FIFO).
        if sched::current_on(guard, cpu) != donated_to {
            sched::make_runnable(guard, donated_to);
        }
    }
    let d = &mut CPUS.get(guard)[cpu];
    if d.len == 0 {
        return;
    }
    let entry = d.queue[d.head];
    let ran = d.ran_ns;
    d.head = (d.head + 1) % DISPATCH_QUEUE_LEN;
    d.len -= 1;
    d.ran_ns = 0;
    let t = tcb::ctl(guard, entry.thread);
    t.entry_cpu = 0;
    t.adopted_ran_ns += ran;
    push_event(guard, cpu, kind, entry.thread, ran);
}

/// The running entry's thread on this CPU yielded.
pub fn on_yield(guard: &mut KernelGuard, thread: u64) {
    let cpu = sched::this_cpu();
    if running_entry(guard, cpu) == Some(thread) {
        end_entry(guard, cpu, EventKind::Yielded);
    }
}

/// The running entry's thread on this CPU faulted.
pub fn on_fault(guard: &mut KernelGuard, thread: u64) {
    let cpu = sched::this_cpu();
    if running_entry(guard, cpu) == Some(thread) {
        end_entry(guard, cpu, EventKind::Faulted);
    }
}

fn running_entry(guard: &mut KernelGuard, cpu: usize) -> Option<u64> {
    let d = head(guard, cpu);
    (d.len > 0 && d.started != 0).then_some(d.entry.thread)
}

/// Timer work for this CPU: budget expiry of the running entry, the tick.
pub fn on_timer(guard: &mut KernelGuard) {
    let cpu = sched::this_cpu();
    let now = cpu::rdtsc();
    let d = head(guard, cpu);
    if d.len > 0 && d.started != 0 {
        let entry = d.entry;
        if d.ran_ns + timer::tsc_to_ns(now - d.started) >= entry.budget_ns {
            end_entry(guard, cpu, EventKind::BudgetExpired);
        }
    }
    if d.tick_ticks != 0 && now >= d.next_tick {
        CPUS.get(guard)[cpu].next_tick = now + d.tick_ticks;
        push_event(guard, cpu, EventKind::Tick, 0, 0);
    }
}

/// The next tick on this CPU (TSC, `u64::MAX` = none).
#[inline(always)]
pub fn next_tick(guard: &mut KernelGuard) -> u64 {
    let d = &CPUS.get(guard)[sched::this_cpu()];
    if d.scheduler != 0 && d.tick_ticks != 0 {
        d.next_tick
    } else {
        u64::MAX
    }
}

/// Removes `thread` from whichever queue holds it, reporting `kind`.
fn remove_entry(guard: &mut KernelGuard, thread: u64, kind: EventKind) {
    let entry_cpu = tcb::ctl(guard, thread).entry_cpu;
    if entry_cpu == 0 {
        return;
    }
    let cpu = (entry_cpu - 1) as usize;
    let d = CPUS.get(guard)[cpu];
    if d.len > 0 && d.queue[d.head].thread == thread {
        sched::stop(guard, thread);
        end_entry(guard, cpu, kind);
        return;
    }
    let mut kept = [Entry::default(); DISPATCH_QUEUE_LEN];
    let mut count = 0;
    for i in 0..d.len {
        let entry = d.queue[(d.head + i) % DISPATCH_QUEUE_LEN];
        if entry.thread != thread {
            kept[count] = entry;
            count += 1;
        }
    }
    let state = &mut CPUS.get(guard)[cpu];
    for (i, entry) in kept.iter().enumerate().take(count) {
        state.queue[(state.head + i) % DISPATCH_QUEUE_LEN] = *entry;
    }
    state.len = count;
    tcb::ctl(guard, thread).entry_cpu = 0;
    push_event(guard, cpu, kind, thread, 0);
}

/// A thread is being suspended: its entries end with `Exited`.
pub fn on_suspend(guard: &mut KernelGuard, thread: u64) {
    remove_entry(guard, thread, EventKind::Exited);
}

/// A TCB is being destroyed: it leaves its scheduler.
pub fn on_destroy(guard: &mut KernelGuard, thread: u64) {
    remove_entry(guard, thread, EventKind::Exited);
    unlink(guard, thread);
    unlink_confined(guard, thread);
    // An entry lent to it is lent to no one (its caller, told by
    // `ipc::forget_thread`, runs on the entry again).
    for d in CPUS.get(guard).iter_mut() {
        if d.donated_to == thread {
            d.donated_to = 0;
        }
    }
}

fn unlink(guard: &mut KernelGuard, thread: u64) {
    let t = *tcb::ctl(guard, thread);
    if t.scheduler == 0 {
        return;
    }
    if t.adopted_prev == 0 {
        objmem::object::<Scheduler>(guard, t.scheduler).first_thread = t.adopted_next;
    } else {
        tcb::ctl(guard, t.adopted_prev).adopted_next = t.adopted_next;
    }
    if t.adopted_next != 0 {
        tcb::ctl(guard, t.adopted_next).adopted_prev = t.adopted_prev;
    }
    let t = tcb::ctl(guard, thread);
    t.scheduler = 0;
    t.thread_id = 0;
    t.adopted_next = 0;
    t.adopted_prev = 0;
}

/// Unbinds CPU `cpu`: its entries are evicted (reported to the old server),
/// a running entry is stopped, the capabilities of its binding record are
/// deleted, and the CPU runs only system threads. (Objects this destroys are
/// queued: the caller drains them.)
fn unbind(guard: &mut KernelGuard, cpu: usize) {
    let d = CPUS.get(guard)[cpu];
    if d.scheduler == 0 {
        return;
    }
    if d.len > 0 {
        sched::stop(guard, d.queue[d.head].thread);
    }
    while CPUS.get(guard)[cpu].len > 0 {
        end_entry(guard, cpu, EventKind::Evicted);
    }
    objmem::object::<Scheduler>(guard, d.scheduler)
        .cpus
        .remove(cpu);
    CPUS.get(guard)[cpu] = UNBOUND;
    place_confined(guard, d.scheduler);
    for role in [
        BindingRole::Cpu,
        BindingRole::Ring,
        BindingRole::Notification,
    ] {
        crate::object::delete_one(guard, held::binding(cpu, role));
    }
    if cpu != sched::this_cpu() {
        if let Some(target) = percpu::get(cpu as u32) {
            apic::send_ipi(target.apic_id, trap::VECTOR_IPI_KICK);
        }
    }
}

/// The Cpu capability in `slot` is being deleted: if it is the one that
/// bound its CPU (the parent of the binding record's copy, wherever a move
/// put it), the CPU is unbound. (Revoking it, or anything it came from,
/// deletes the record's copy first, which unbinds the CPU too.)
pub fn cpu_cap_deleted(guard: &mut KernelGuard, index: u32, slot: u64) {
    let cpu = index as usize;
    if cpu < MAX_CPUS && binding_parent(guard, cpu) == slot {
        unbind(guard, cpu);
    }
}

/// The slot of the Cpu capability that bound CPU `cpu` (0 = unbound).
fn binding_parent(guard: &mut KernelGuard, cpu: usize) -> u64 {
    let record = held::binding(cpu, BindingRole::Cpu);
    if objmem::object::<crate::object::Slot>(guard, record).words == [0; 3] {
        return 0;
    }
    objmem::object::<crate::object::Slot>(guard, record).links[0]
}

/// The `role` capability of CPU `cpu`'s binding record was deleted (the
/// server's capability it was copied from, or that one's untyped memory,
/// went): nothing more goes where it led, and the binding ends at once.
pub fn binding_cap_deleted(guard: &mut KernelGuard, cpu: usize, role: BindingRole) {
    let d = &mut CPUS.get(guard)[cpu];
    if d.scheduler == 0 {
        return;
    }
    match role {
        BindingRole::Ring => d.ring = 0,
        BindingRole::Notification => d.notify = 0,
        BindingRole::Cpu => {}
    }
    unbind(guard, cpu);
}

/// Destroys a Scheduler whose last capability was deleted: its CPUs are
/// unbound and its threads return to the system FIFO.
pub fn destroy_scheduler(guard: &mut KernelGuard, scheduler: u64) {
    let cpus = objmem::object::<Scheduler>(guard, scheduler).cpus;
    for cpu in cpus.iter() {
        unbind(guard, cpu);
    }
    loop {
        let thread = objmem::object::<Scheduler>(guard, scheduler).first_thread;
        if thread == 0 {
            break;
        }
        release(guard, thread);
    }
    // Its confined threads can run nowhere now: suspended for good.
    loop {
        let thread = objmem::object::<Scheduler>(guard, scheduler).first_confined;
        if thread == 0 {
            break;
        }
        unlink_confined(guard, thread);
        tcb::ctl(guard, thread).confined = ORPHANED;
        tcb::suspend(guard, thread);
    }
}

/// Returns an adopted thread to the system FIFO.
fn release(guard: &mut KernelGuard, thread: u64) {
    remove_entry(guard, thread, EventKind::Exited);
    unlink(guard, thread);
    if tcb::ctl(guard, thread).state == ThreadState::Runnable as u64 {
        sched::make_runnable(guard, thread);
    }
}

fn cpu_owned(guard: &mut KernelGuard, scheduler: u64, cpu: u64) -> Result<usize, Error> {
    if cpu >= u64::from(percpu::online()) {
        return Err(Error::OutOfRange);
    }
    if CPUS.get(guard)[cpu as usize].scheduler != scheduler {
        return Err(Error::NotOwned);
    }
    Ok(cpu as usize)
}

fn adopted_tcb(
    guard: &mut KernelGuard,
    caller: &Caller,
    scheduler: u64,
    cptr: u64,
) -> Result<u64, Error> {
    let Cap::Tcb { phys } = caller.lookup(guard, cptr)? else {
        return Err(Error::WrongType);
    };
    if tcb::ctl(guard, phys).scheduler != scheduler {
        return Err(Error::NotOwned);
    }
    Ok(phys)
}

/// Handles an invocation on a Scheduler capability.
pub fn invoke_scheduler(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    scheduler: u64,
    label: Invocation,
) -> Result<(), Error> {
    match label {
        Invocation::SchedulerBindCpu => {
            let cpu_slot = caller.lookup_slot(guard, caller.mr(0))?;
            let Cap::Cpu { index } = read_cap(guard, cpu_slot) else {
                return Err(Error::WrongType);
            };
            let ring_slot = caller.lookup_slot(guard, caller.mr(1))?;
            let ring_cap = read_cap(guard, ring_slot);
            let Cap::Frame {
                phys: ring,
                large: false,
                rights,
                ..
            } = ring_cap
            else {
                return Err(Error::WrongType);
            };
            if !rights.contains(Rights::READ.union(Rights::WRITE)) {
                return Err(Error::InsufficientRights);
            }
            let notify_slot = caller.lookup_slot(guard, caller.mr(2))?;
            let notify_cap = read_cap(guard, notify_slot);
            let Cap::Notification {
                phys: notify,
                badge: notify_badge,
                rights,
            } = notify_cap
            else {
                return Err(Error::WrongType);
            };
            if !rights.contains(Rights::WRITE) {
                return Err(Error::InsufficientRights);
            }
            let cpu = index as usize;
            if CPUS.get(guard)[cpu].scheduler != 0 {
                return Err(Error::IllegalState);
            }
            // Invoke. The binding record keeps copies of the ring and the
            // notification (children of the server's: deleting or revoking
            // those, or their memory, ends the binding).
            objmem::zero(guard, ring, 4096);
            objmem::object::<Ring>(guard, ring).0.header.capacity = RING_CAPACITY as u64;
            for (role, cap, source) in [
                (BindingRole::Cpu, Cap::Cpu { index }, cpu_slot),
                (BindingRole::Ring, ring_cap, ring_slot),
                (BindingRole::Notification, notify_cap, notify_slot),
            ] {
                let copy = crate::object::cnode::derive(cap, Rights::ALL, 0)
                    .expect("Cpu, frame and notification capabilities derive without a badge");
                crate::object::insert_cap(guard, held::binding(cpu, role), copy, source);
            }
            CPUS.get(guard)[cpu] = CpuDispatch {
                scheduler,
                ring,
                notify,
                notify_badge,
                ..UNBOUND
            };
            objmem::object::<Scheduler>(guard, scheduler)
                .cpus
                .insert(cpu);
            place_confined(guard, scheduler);
            Ok(())
        }
        Invocation::SchedulerUnbindCpu => {
            let Cap::Cpu { index } = caller.lookup(guard, caller.mr(0))? else {
                return Err(Error::WrongType);
            };
            cpu_owned(guard, scheduler, u64::from(index))?;
            unbind(guard, index as usize);
            crate::object::drain_zombies(guard);
            Ok(())
        }
        Invocation::SchedulerAdopt => {
            let Cap::Tcb { phys: thread } = caller.lookup(guard, caller.mr(0))? else {
                return Err(Error::WrongType);
            };
            let id = caller.mr(1);
            if id == 0 {
                return Err(Error::InvalidArgument);
            }
            let confined = tcb::ctl(guard, thread).confined;
            if confined != 0 && confined != scheduler {
                return Err(Error::NotOwned);
            }
            let current = tcb::ctl(guard, thread).scheduler;
            if current == scheduler {
                // Adopted again by its own scheduler (a replacement server
                // taking over): it gets the new id and, if runnable and not
                // queued, is reported woken to the new server.
                tcb::ctl(guard, thread).thread_id = id;
                let t = *tcb::ctl(guard, thread);
                if t.state == ThreadState::Runnable as u64 && t.entry_cpu == 0 {
                    on_woken(guard, thread);
                }
                return Ok(());
            }
            if current != 0 {
                return Err(Error::IllegalState);
            }
            // Out of the system FIFO (stopping it if it runs there now).
            sched::stop(guard, thread);
            let first = objmem::object::<Scheduler>(guard, scheduler).first_thread;
            {
                let t = tcb::ctl(guard, thread);
                t.scheduler = scheduler;
                t.thread_id = id;
                t.adopted_next = first;
                t.adopted_prev = 0;
                t.adopted_ran_ns = 0;
                t.last_cpu = 0;
            }
            if first != 0 {
                tcb::ctl(guard, first).adopted_prev = thread;
            }
            objmem::object::<Scheduler>(guard, scheduler).first_thread = thread;
            if tcb::ctl(guard, thread).state == ThreadState::Runnable as u64 {
                on_woken(guard, thread);
            }
            Ok(())
        }
        Invocation::SchedulerRelease => {
            let thread = adopted_tcb(guard, caller, scheduler, caller.mr(0))?;
            release(guard, thread);
            Ok(())
        }
        Invocation::SchedulerDispatch => dispatch(guard, caller, scheduler),
        Invocation::SchedulerSetTick => {
            let cpu = cpu_owned(guard, scheduler, caller.mr(0))?;
            let period = caller.mr(1);
            if period != 0 && period < 100_000 {
                return Err(Error::InvalidArgument);
            }
            let ticks = timer::ns_to_tsc(period);
            let d = &mut CPUS.get(guard)[cpu];
            d.tick_ticks = ticks;
            d.next_tick = if ticks == 0 { 0 } else { cpu::rdtsc() + ticks };
            if cpu != sched::this_cpu() {
                if let Some(target) = percpu::get(cpu as u32) {
                    apic::send_ipi(target.apic_id, trap::VECTOR_IPI_KICK);
                }
            }
            Ok(())
        }
        Invocation::SchedulerPreempt => {
            let cpu = cpu_owned(guard, scheduler, caller.mr(0))?;
            let d = CPUS.get(guard)[cpu];
            // The head entry has begun (it may be paused behind a system thread).
            if d.len > 0 && (d.started != 0 || d.ran_ns > 0) {
                sched::stop(guard, d.queue[d.head].thread);
                end_entry(guard, cpu, EventKind::Preempted);
                if cpu != sched::this_cpu() {
                    if let Some(target) = percpu::get(cpu as u32) {
                        apic::send_ipi(target.apic_id, trap::VECTOR_IPI_KICK);
                    }
                }
            }
            Ok(())
        }
        Invocation::SchedulerQueryThread => {
            let thread = adopted_tcb(guard, caller, scheduler, caller.mr(0))?;
            let t = *tcb::ctl(guard, thread);
            // Exact to now: finished entries plus the one in progress.
            let mut ran = t.adopted_ran_ns;
            if t.entry_cpu != 0 {
                let d = CPUS.get(guard)[(t.entry_cpu - 1) as usize];
                if d.len > 0 && d.queue[d.head].thread == thread {
                    ran += d.ran_ns;
                    if d.started != 0 {
                        ran += timer::tsc_to_ns(cpu::rdtsc().saturating_sub(d.started));
                    }
                }
            }
            caller.set_reply(guard, &[t.state, t.thread_id, t.entry_cpu, ran, t.last_cpu]);
            Ok(())
        }
        _ => Err(Error::IllegalOperation),
    }
}

/// `SchedulerDispatch`: appends (thread, budget) to a CPU's queue.
fn dispatch(guard: &mut KernelGuard, caller: &mut Caller, scheduler: u64) -> Result<(), Error> {
    // Decode.
    let cpu = cpu_owned(guard, scheduler, caller.mr(0))?;
    let thread = adopted_tcb(guard, caller, scheduler, caller.mr(1))?;
    let budget_ns = caller.mr(2);
    if budget_ns == 0 {
        return Err(Error::InvalidArgument);
    }
    let t = *tcb::ctl(guard, thread);
    if t.state != ThreadState::Runnable as u64 || t.entry_cpu != 0 {
        return Err(Error::IllegalState);
    }
    if CPUS.get(guard)[cpu].len == DISPATCH_QUEUE_LEN {
        return Err(Error::QueueFull);
    }
    // Invoke.
    let d = &mut CPUS.get(guard)[cpu];
    d.queue[(d.head + d.len) % DISPATCH_QUEUE_LEN] = Entry { thread, budget_ns };
    d.len += 1;
    d.empty_reported = false;
    let t = tcb::ctl(guard, thread);
    t.entry_cpu = cpu as u64 + 1;
    t.last_cpu = t.entry_cpu;
    // The dispatching agent made progress: its watchdog starts again.
    sched::reset_watchdog(guard, caller.thread());
    if cpu != sched::this_cpu() {
        if let Some(target) = percpu::get(cpu as u32) {
            apic::send_ipi(target.apic_id, trap::VECTOR_IPI_KICK);
        }
    }
    Ok(())
}

/// `SchedulerDispatchWait` by `thread`: `SchedulerDispatch`, then `thread`
/// waits on the notification MR3 names (as `Wait`, no timeout); its result
/// is the wait's. The notification is checked before the dispatch, and the
/// dispatch checks everything before it queues, so on any error nothing
/// happens.
pub fn dispatch_and_wait(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    thread: u64,
    scheduler: u64,
) -> Result<(), Error> {
    let notification = caller.lookup(guard, caller.mr(3))?;
    crate::ipc::check_wait(guard, thread, notification)?;
    dispatch(guard, caller, scheduler)?;
    let waited = crate::ipc::wait(
        guard,
        thread,
        notification,
        crate::ipc::WaitMode::Block { timeout_ticks: 0 },
    );
    debug_assert!(waited.is_ok(), "checked before the dispatch");
    Ok(())
}

/// `Control::confined` of a thread whose Scheduler was destroyed: it stays
/// suspended for good (it may run on no CPU at all).
pub const ORPHANED: u64 = 1;

/// The CPUs bound to the Scheduler a thread is confined to (`confined`, as
/// in `Control::confined`, not 0): none for an orphan.
#[inline]
fn confined_cpus(guard: &mut KernelGuard, confined: u64) -> CpuSet {
    if confined == ORPHANED {
        CpuSet::EMPTY
    } else {
        objmem::object::<Scheduler>(guard, confined).cpus
    }
}

/// Whether `thread` may run on CPU `cpu` as a system thread, ahead of that
/// CPU's dispatched entries: it is confined to no Scheduler, or to the one
/// `cpu` is bound to.
#[inline]
pub fn confinement_allows(guard: &mut KernelGuard, thread: u64, cpu: usize) -> bool {
    let confined = tcb::ctl(guard, thread).confined;
    confined == 0 || confined != ORPHANED && CPUS.get(guard)[cpu].scheduler == confined
}

/// Where a runnable confined system thread on CPU `cpu` goes: `Some(cpu)`
/// itself, or the lowest CPU bound to its Scheduler when `cpu` is not, or
/// `None` when its Scheduler has no CPU (it then runs only in `cpu`'s idle
/// time, [`sched`]'s idle class).
#[inline]
pub fn confined_home(guard: &mut KernelGuard, confined: u64, cpu: usize) -> Option<usize> {
    if confined != ORPHANED && CPUS.get(guard)[cpu].scheduler == confined {
        Some(cpu)
    } else {
        confined_cpus(guard, confined).first()
    }
}

/// `TcbConfine` on `target`: decode (the caller is not confined itself,
/// the Scheduler capability, the target neither confined nor adopted by
/// another Scheduler), then confine it.
pub fn confine_invocation(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    target: u64,
) -> Result<(), Error> {
    if tcb::ctl(guard, caller.thread()).confined != 0 {
        return Err(Error::IllegalOperation);
    }
    let Cap::Scheduler { phys: scheduler } = caller.lookup(guard, caller.mr(0))? else {
        return Err(Error::WrongType);
    };
    let t = *tcb::ctl(guard, target);
    if t.confined != 0 {
        return Err(Error::IllegalState);
    }
    if t.scheduler != 0 && t.scheduler != scheduler {
        return Err(Error::NotOwned);
    }
    confine(guard, target, scheduler);
    Ok(())
}

/// A TCB `child` was just made from untyped memory by `creator`: if the
/// creator is confined, so is the child, to the same Scheduler (a confined
/// process cannot escape by making threads).
pub fn inherit_confinement(guard: &mut KernelGuard, creator: u64, child: u64) {
    let confined = tcb::ctl(guard, creator).confined;
    if confined != 0 && confined != ORPHANED {
        confine(guard, child, confined);
    }
}

/// Confines `thread` to `scheduler` (a list the Scheduler keeps: its
/// destructor finds them there) and, if it runs as a system thread now,
/// moves it where the rule lets it run.
fn confine(guard: &mut KernelGuard, thread: u64, scheduler: u64) {
    let first = objmem::object::<Scheduler>(guard, scheduler).first_confined;
    let ran = sched::ran_tsc(guard, thread);
    tcb::ctl(guard, thread).confined = scheduler;
    *tcb::confinement(guard, thread) = tcb::Confinement {
        next: first,
        prev: 0,
        watch_base_tsc: ran,
        watch_ticks: 0,
    };
    if first != 0 {
        tcb::confinement(guard, first).prev = thread;
    }
    objmem::object::<Scheduler>(guard, scheduler).first_confined = thread;
    place(guard, thread);
}

/// Takes `thread` off its Scheduler's confined list (it keeps its
/// `confined` value: a TCB being destroyed, or one being orphaned).
fn unlink_confined(guard: &mut KernelGuard, thread: u64) {
    let confined = tcb::ctl(guard, thread).confined;
    if confined == 0 || confined == ORPHANED {
        return;
    }
    let links = *tcb::confinement(guard, thread);
    if links.prev == 0 {
        objmem::object::<Scheduler>(guard, confined).first_confined = links.next;
    } else {
        tcb::confinement(guard, links.prev).next = links.next;
    }
    if links.next != 0 {
        tcb::confinement(guard, links.next).prev = links.prev;
    }
    let t = tcb::confinement(guard, thread);
    t.next = 0;
    t.prev = 0;
}

/// `scheduler`'s CPUs changed: each of its confined threads that runs as a
/// system thread where it may no longer (or only in idle time where it now
/// has a CPU) is placed again. Blocked ones are placed when they wake
/// ([`sched::make_runnable`]), so an agent sleeping on a CPU that was
/// removed is still there if the CPU comes back.
fn place_confined(guard: &mut KernelGuard, scheduler: u64) {
    let mut thread = objmem::object::<Scheduler>(guard, scheduler).first_confined;
    while thread != 0 {
        let next = tcb::confinement(guard, thread).next;
        place(guard, thread);
        thread = next;
    }
}

/// Places a runnable, unadopted confined thread again if it is where the
/// rule does not let it run (or in idle time while it has a CPU).
fn place(guard: &mut KernelGuard, thread: u64) {
    let t = *tcb::ctl(guard, thread);
    if t.state != ThreadState::Runnable as u64 || t.scheduler != 0 {
        return;
    }
    let cpu = t.cpu as usize;
    let allowed = confinement_allows(guard, thread, cpu);
    let idle = sched::in_idle_class(guard, thread);
    if allowed && !idle || !allowed && idle && confined_cpus(guard, t.confined).is_empty() {
        return;
    }
    sched::stop(guard, thread);
    sched::make_runnable(guard, thread);
}

/// Checks every Scheduler's confined list (the invariant check): each names
/// a live thread confined to it, linked both ways, and a runnable system
/// thread among them runs only where the rule allows. Returns how many
/// threads the lists hold.
fn check_confined(guard: &mut KernelGuard, live: &Live, scheduler: u64) -> Verdict<u64> {
    let s = *objmem::object::<Scheduler>(guard, scheduler);
    let (mut previous, mut thread, mut length) = (0u64, s.first_confined, 0u64);
    while thread != 0 {
        length += 1;
        ensure(
            live.is_tcb(thread) && length <= live.tcbs.len() as u64,
            "a Scheduler's confined list holds no live thread, or loops",
            scheduler,
        )?;
        let t = *tcb::ctl(guard, thread);
        ensure(
            t.confined == scheduler && tcb::confinement(guard, thread).prev == previous,
            "a Scheduler's confined list holds a thread not confined to it",
            thread,
        )?;
        ensure(
            t.scheduler == 0 || t.scheduler == scheduler,
            "a confined thread is adopted by another Scheduler",
            thread,
        )?;
        if t.state == ThreadState::Runnable as u64 && t.scheduler == 0 {
            let allowed = s.cpus.contains(t.cpu as usize);
            let idle = sched::in_idle_class(guard, thread);
            ensure(
                allowed && !idle || s.cpus.is_empty() && idle,
                "a confined thread runs outside its Scheduler's CPUs",
                thread,
            )?;
        }
        previous = thread;
        thread = tcb::confinement(guard, thread).next;
    }
    Ok(length)
}

/// Handles an invocation on a Cpu capability.
pub fn invoke_cpu(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    index: u32,
    label: Invocation,
) -> Result<(), Error> {
    match label {
        Invocation::CpuInfo => {
            let apic_id = percpu::get(index).map_or(0, |p| u64::from(p.apic_id));
            let bound = u64::from(CPUS.get(guard)[index as usize].scheduler != 0);
            caller.set_reply(guard, &[u64::from(index), apic_id, bound]);
            Ok(())
        }
        _ => Err(Error::IllegalOperation),
    }
}

/// Checks every Scheduler's thread list and CPU set and every CPU's binding
/// and dispatch queue (the invariant check): each names live objects of the
/// right type, each entry a thread its CPU's scheduler adopted, each
/// confined thread where confinement lets it run. Returns how many threads
/// the Schedulers' lists hold (adopted, confined) and how many entries the
/// queues.
pub fn check(guard: &mut KernelGuard, live: &Live) -> Verdict<(u64, u64, u64)> {
    ensure(
        isolation_held(),
        "a CPU was about to run a thread of another scheduler",
        0,
    )?;
    let (mut adopted, mut confined) = (0u64, 0u64);
    for &scheduler in &live.schedulers {
        confined += check_confined(guard, live, scheduler)?;
        let s = *objmem::object::<Scheduler>(guard, scheduler);
        let (mut previous, mut thread, mut length) = (0u64, s.first_thread, 0u64);
        while thread != 0 {
            length += 1;
            ensure(
                live.is_tcb(thread) && length <= live.tcbs.len() as u64,
                "a Scheduler's list holds no live thread, or loops",
                scheduler,
            )?;
            let t = *tcb::ctl(guard, thread);
            ensure(
                t.scheduler == scheduler && t.adopted_prev == previous,
                "a Scheduler's list holds a thread it did not adopt",
                thread,
            )?;
            previous = thread;
            thread = t.adopted_next;
        }
        adopted += length;
        for cpu in 0..MAX_CPUS {
            let bound_here = CPUS.get(guard)[cpu].scheduler == scheduler;
            ensure(
                s.cpus.contains(cpu) == bound_here,
                "a Scheduler's CPU set differs from the CPUs bound to it",
                scheduler,
            )?;
        }
    }
    let mut entries = 0u64;
    for cpu in 0..MAX_CPUS {
        let d = CPUS.get(guard)[cpu];
        let copy = read_cap(guard, held::binding(cpu, BindingRole::Cpu));
        let ring = read_cap(guard, held::binding(cpu, BindingRole::Ring));
        let notify = read_cap(guard, held::binding(cpu, BindingRole::Notification));
        if d.scheduler == 0 {
            ensure(
                d.len == 0
                    && d.donated_to == 0
                    && d.ring == 0
                    && d.notify == 0
                    && copy == Cap::Null
                    && ring == Cap::Null
                    && notify == Cap::Null,
                "an unbound CPU keeps a binding",
                cpu as u64,
            )?;
            continue;
        }
        ensure(
            live.is_scheduler(d.scheduler),
            "a CPU is bound to no live Scheduler",
            cpu as u64,
        )?;
        ensure(
            matches!(ring, Cap::Frame { phys, large: false, rights, .. }
                if phys == d.ring && rights.contains(Rights::READ.union(Rights::WRITE))),
            "a bound CPU's record holds no event ring, or another than it writes",
            cpu as u64,
        )?;
        ensure(
            matches!(notify, Cap::Notification { phys, badge, rights }
                if phys == d.notify && badge == d.notify_badge && rights.contains(Rights::WRITE)),
            "a bound CPU's record holds no event notification, or another than it signals",
            cpu as u64,
        )?;
        let parent = binding_parent(guard, cpu);
        ensure(
            copy == Cap::Cpu { index: cpu as u32 }
                && held::holder_of(guard, parent) == Some(held::Holder::CNode)
                && read_cap(guard, parent) == copy,
            "a bound CPU's record holds no copy of the Cpu capability that bound it",
            cpu as u64,
        )?;
        ensure(
            d.len <= DISPATCH_QUEUE_LEN && d.head < DISPATCH_QUEUE_LEN,
            "a dispatch queue's bounds are broken",
            cpu as u64,
        )?;
        for i in 0..d.len {
            let entry = d.queue[(d.head + i) % DISPATCH_QUEUE_LEN];
            ensure(
                live.is_tcb(entry.thread),
                "a dispatch queue names no live thread",
                cpu as u64,
            )?;
            let t = *tcb::ctl(guard, entry.thread);
            ensure(
                t.scheduler == d.scheduler && t.entry_cpu == cpu as u64 + 1,
                "a dispatch queue names a thread that is not its scheduler's, or not queued there",
                entry.thread,
            )?;
        }
        entries += d.len as u64;
        ensure(
            d.donated_to == 0 || live.is_tcb(d.donated_to),
            "a CPU's entry is lent to no live thread",
            cpu as u64,
        )?;
    }
    Ok((adopted, confined, entries))
}
