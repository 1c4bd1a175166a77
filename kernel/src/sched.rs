//! The system FIFO: the kernel's own round-robin over threads that no
//! user-mode scheduler has adopted (the root task, the pool manager, policy
//! servers' agents and request threads). Each thread runs on the one CPU it
//! was given; a runnable thread waits in that CPU's FIFO and runs for at
//! most [`SYSTEM_SLICE_NS`] before the next one. This is the only place the
//! kernel picks who runs.
//!
//! **Confinement.** A thread confined to a Scheduler (`TcbConfine`: a
//! policy server's threads, [`crate::dispatch`]) runs in the FIFO only of a
//! CPU bound to that Scheduler: made runnable on any other CPU, it goes to
//! the lowest CPU its Scheduler has (so when a CPU leaves a pool, its
//! runnable confined threads move to the pool's next CPU; blocked ones move
//! when they wake, so an agent asleep on a removed CPU is still there if
//! the CPU comes back). While its Scheduler has no CPU at all (a server
//! starting before its pool's CPUs are handed to it, an empty pool's
//! server), it runs in the *idle class* of the CPU it was last on: a
//! second queue that runs only when that CPU has no system thread and no
//! dispatched entry to run, preempted by either at the next scheduling
//! pass. So a confined thread takes time ahead of dispatched threads only
//! on its own pool's CPUs; elsewhere it only uses time nobody else wants
//! (an empty pool's server answers its manager in idle time: a CPU kept
//! busy by others delays that answer, which the manager's deadline bounds).
//!
//! **Watchdog.** A confined system thread that runs
//! [`tarn_ipc_schema::sched::WATCHDOG_NS`] of its own time without
//! blocking and without a `SchedulerDispatch` is stopped with a
//! `WATCHDOG` fault to its fault endpoint (checked at the timer interrupt,
//! which comes at least every system slice while it runs: it fires within
//! one slice of the bound). Its run time is what [`ran_tsc`] counts since
//! it last woke from blocking ([`make_runnable`]: confined threads never
//! take the IPC fastpath, which wakes threads without it) or dispatched,
//! and at least one timer interrupt per system slice of the bound must
//! have found it running meanwhile: time its CPU spent waiting for the
//! kernel lock, or stalled by an emulator's host, is charged to the
//! running thread too, but comes in one piece, seen by one interrupt.
//!
//! Also here: per-CPU timeouts (notification waits with a deadline) and the
//! idle loop.

use crate::arch::lock::{self, BklCell, KernelGuard};
use crate::arch::percpu::{self, MAX_CPUS};
use crate::arch::{apic, cpu, timer, trap, user};
use crate::invariants::{ensure, Live, Verdict};
use crate::object::tcb;
use tarn_ipc_schema::invocation::ThreadState;

/// Longest a system thread runs before the next runnable one on its CPU.
pub const SYSTEM_SLICE_NS: u64 = 5_000_000;

/// One CPU's scheduling state.
#[derive(Clone, Copy, Default)]
pub struct CpuSched {
    /// The thread running (or about to run) on this CPU (TCB phys, 0 = idle).
    pub current: u64,
    run_head: u64,
    run_tail: u64,
    timeout_head: u64,
    /// TSC at which the current thread's slice ends.
    slice_end: u64,
    /// The thread whose FPU state is in this CPU's registers (lazy switch:
    /// another thread runs with CR0.TS set until it touches the FPU).
    fpu_owner: u64,
    /// The TSC value the one-shot timer is armed for (0 = not armed).
    armed_for: u64,
    /// Where this CPU's time went (TSC ticks): idle, system threads,
    /// dispatched threads; and since when the current kind has run.
    spent: [u64; 3],
    spent_kind: usize,
    spent_since: u64,
    /// The thread charged since `spent_since` (0 = none).
    spent_thread: u64,
}

static CPUS: BklCell<[CpuSched; MAX_CPUS]> = BklCell::new(
    [CpuSched {
        current: 0,
        run_head: 0,
        run_tail: 0,
        timeout_head: 0,
        slice_end: 0,
        fpu_owner: 0,
        armed_for: 0,
        spent: [0; 3],
        spent_kind: 0,
        spent_since: 0,
        spent_thread: 0,
    }; MAX_CPUS],
);

/// One CPU's idle class: confined threads whose Scheduler has no CPU, run
/// only when nothing else would (kept apart from [`CpuSched`], which the
/// scheduling paths copy).
#[derive(Clone, Copy, Default)]
struct IdleClass {
    head: u64,
    tail: u64,
}

static IDLE: BklCell<[IdleClass; MAX_CPUS]> =
    BklCell::new([IdleClass { head: 0, tail: 0 }; MAX_CPUS]);

/// This CPU's index.
#[inline(always)]
pub fn this_cpu() -> usize {
    percpu::index()
}

/// The thread running on CPU `cpu` (0 = none).
pub fn current_on(guard: &mut KernelGuard, cpu: usize) -> u64 {
    CPUS.get(guard)[cpu].current
}

/// The thread running on this CPU (0 = none).
#[inline(always)]
pub fn current(guard: &mut KernelGuard) -> u64 {
    CPUS.get(guard)[this_cpu()].current
}

/// Whether no system thread waits in CPU `cpu`'s FIFO.
#[inline(always)]
pub fn fifo_empty(guard: &mut KernelGuard, cpu: usize) -> bool {
    CPUS.get(guard)[cpu].run_head == 0
}

/// Makes `thread` runnable and queues it on its CPU (kicking that CPU).
pub fn make_runnable(guard: &mut KernelGuard, thread: u64) {
    let t = tcb::ctl(guard, thread);
    let was_runnable = t.state == ThreadState::Runnable as u64;
    t.state = ThreadState::Runnable as u64;
    let cpu = t.cpu as usize;
    if t.confined != 0 {
        return make_confined_runnable(guard, thread, was_runnable);
    }
    if t.scheduler != 0 {
        // Adopted: its scheduler decides where and when it runs.
        if !was_runnable && t.entry_cpu == 0 {
            crate::dispatch::on_woken(guard, thread);
        }
        return;
    }
    if CPUS.get(guard)[cpu].current == thread {
        return;
    }
    enqueue(guard, cpu, thread);
    kick(cpu);
}

/// [`make_runnable`] for a confined thread (apart, so that the common path
/// stays as short as it was): its watchdog restarts if it woke; then it
/// goes to a CPU of its Scheduler, or to the idle class.
#[cold]
#[inline(never)]
fn make_confined_runnable(guard: &mut KernelGuard, thread: u64, was_runnable: bool) {
    let t = *tcb::ctl(guard, thread);
    if !was_runnable {
        // It blocked (or was stopped) and wakes: its watchdog starts again.
        restart_watchdog(guard, thread, t.ran_tsc);
    }
    if t.scheduler != 0 {
        if !was_runnable && t.entry_cpu == 0 {
            crate::dispatch::on_woken(guard, thread);
        }
        return;
    }
    let mut cpu = t.cpu as usize;
    if CPUS.get(guard)[cpu].current == thread {
        return;
    }
    match crate::dispatch::confined_home(guard, t.confined, cpu) {
        Some(home) if home != cpu => {
            set_cpu(guard, thread, home as u64);
            cpu = home;
        }
        Some(_) => {}
        None => {
            enqueue_idle(guard, cpu, thread);
            kick(cpu);
            return;
        }
    }
    enqueue(guard, cpu, thread);
    kick(cpu);
}

/// Makes CPU `cpu` look at its queues again (no-op for this CPU, which
/// schedules on its way out of the kernel).
#[inline(always)]
fn kick(cpu: usize) {
    if cpu != this_cpu() {
        if let Some(target) = percpu::get(cpu as u32) {
            apic::send_ipi(target.apic_id, trap::VECTOR_IPI_KICK);
        }
    }
}

/// `Control::queued` of a thread in a CPU's idle class.
const IN_IDLE_CLASS: u64 = 2;

fn enqueue_idle(guard: &mut KernelGuard, cpu: usize, thread: u64) {
    let tail = IDLE.get(guard)[cpu].tail;
    {
        let t = tcb::ctl(guard, thread);
        t.sched_next = 0;
        t.sched_prev = tail;
        t.queued = IN_IDLE_CLASS;
    }
    if tail == 0 {
        IDLE.get(guard)[cpu].head = thread;
    } else {
        tcb::ctl(guard, tail).sched_next = thread;
    }
    IDLE.get(guard)[cpu].tail = thread;
}

/// Whether `thread` waits or runs in a CPU's idle class (a confined thread
/// running where its Scheduler has no CPU runs there).
pub fn in_idle_class(guard: &mut KernelGuard, thread: u64) -> bool {
    let t = *tcb::ctl(guard, thread);
    let cpu = t.cpu as usize;
    t.queued == IN_IDLE_CLASS
        || CPUS.get(guard)[cpu].current == thread
            && !crate::dispatch::confinement_allows(guard, thread, cpu)
}

fn enqueue(guard: &mut KernelGuard, cpu: usize, thread: u64) {
    let tail = CPUS.get(guard)[cpu].run_tail;
    {
        let t = tcb::ctl(guard, thread);
        t.sched_next = 0;
        t.sched_prev = tail;
        t.queued = 1;
    }
    if tail == 0 {
        CPUS.get(guard)[cpu].run_head = thread;
    } else {
        tcb::ctl(guard, tail).sched_next = thread;
    }
    CPUS.get(guard)[cpu].run_tail = thread;
}

/// Removes `thread` from its CPU's run queue if it is queued, and from
/// `current` if it is running there (the CPU then reschedules).
///
/// The test is inlined, the unlinking is not: the IPC and notification
/// paths call this on the current thread as it blocks, which is never
/// queued. (Out of line as a whole, it cost the general path's round trip
/// 56 instructions and the donation fastpath's 26; inlined as a whole, it
/// pushed `ipc::wait` out of line, 20 more per notification wait.)
#[inline(always)]
pub fn dequeue(guard: &mut KernelGuard, thread: u64) {
    if tcb::ctl(guard, thread).queued != 0 {
        unlink(guard, thread);
    }
}

/// [`dequeue`] of a queued thread: out of its CPU's FIFO or idle class.
#[inline(never)]
fn unlink(guard: &mut KernelGuard, thread: u64) {
    let (cpu, queued, prev, next) = {
        let t = tcb::ctl(guard, thread);
        (t.cpu as usize, t.queued, t.sched_prev, t.sched_next)
    };
    if queued == IN_IDLE_CLASS {
        let q = &mut IDLE.get(guard)[cpu];
        if prev == 0 {
            q.head = next;
        }
        if next == 0 {
            q.tail = prev;
        }
    } else {
        let s = &mut CPUS.get(guard)[cpu];
        if prev == 0 {
            s.run_head = next;
        }
        if next == 0 {
            s.run_tail = prev;
        }
    }
    if prev != 0 {
        tcb::ctl(guard, prev).sched_next = next;
    }
    if next != 0 {
        tcb::ctl(guard, next).sched_prev = prev;
    }
    let t = tcb::ctl(guard, thread);
    t.queued = 0;
    t.sched_next = 0;
    t.sched_prev = 0;
}

/// Takes `thread`, the head of CPU `cpu`'s FIFO, out of it (a scheduling
/// pass picking it: [`dequeue`] without the tests that cannot fail here).
/// Out of line: inlined, it saved the general IPC path 12 instructions but
/// cost `dispatch_switch` 3 (register allocation in `schedule`).
#[inline(never)]
fn take_fifo_head(guard: &mut KernelGuard, cpu: usize, thread: u64) {
    let next = {
        let t = tcb::ctl(guard, thread);
        let next = t.sched_next;
        t.queued = 0;
        t.sched_next = 0;
        t.sched_prev = 0;
        next
    };
    let s = &mut CPUS.get(guard)[cpu];
    s.run_head = next;
    if next == 0 {
        s.run_tail = 0;
    } else {
        tcb::ctl(guard, next).sched_prev = 0;
    }
}

/// Stops `thread` from running: out of the run queue, and if it is running
/// on another CPU, that CPU is interrupted and waited for until its registers
/// are saved (it then reschedules when it gets the kernel lock).
pub fn stop(guard: &mut KernelGuard, thread: u64) {
    dequeue(guard, thread);
    for cpu in 0..percpu::online() as usize {
        if CPUS.get(guard)[cpu].current != thread {
            continue;
        }
        CPUS.get(guard)[cpu].current = 0;
        // Its FPU state stays in that CPU's registers (`fpu_owner`): saved
        // when that CPU next switches FPU owners, or fetched from it by the
        // CPU where the thread next touches the FPU (`fetch_fpu_state`).
        if cpu != this_cpu() {
            stall(cpu as u32);
            restart_system_call_in_flight(guard, thread);
        }
    }
}

/// `thread`, current on another CPU, was just stopped there: `stall` made
/// that CPU enter the kernel (or found it there), so the thread's frame
/// holds its latest entry, which that CPU has not handled (it waits for
/// the lock held here). If that entry is a system call (not a `VcpuRun`
/// it is inside, whose guest exited), the call will find no current thread
/// and never happen; the thread would later resume after the `syscall`
/// instruction with its arguments as results (`rax` still the call's
/// number). Instead its saved RIP goes back to the instruction, and it
/// makes the call again, with the same registers, when it next runs: the
/// stop took effect just before the call. (An interrupt or exception
/// frame already resumes at the right instruction.)
fn restart_system_call_in_flight(guard: &mut KernelGuard, thread: u64) {
    if crate::vcpu::in_guest(guard, thread) {
        return;
    }
    let frame = tcb::frame(guard, thread);
    if frame.vector == trap::SYSCALL_VECTOR {
        frame.rip = frame.rip.wrapping_sub(trap::SYSCALL_LENGTH);
    }
}

/// Makes sure `thread`'s saved registers are current: if it is running on
/// another CPU, that CPU is made to enter the kernel first.
pub fn stop_for_inspection(guard: &mut KernelGuard, thread: u64) {
    for cpu in 0..percpu::online() as usize {
        if cpu != this_cpu() && CPUS.get(guard)[cpu].current == thread {
            stall(cpu as u32);
        }
    }
}

/// Moves `thread` (not running, not queued) to CPU `cpu`, with its timeout.
pub fn set_cpu(guard: &mut KernelGuard, thread: u64, cpu: u64) {
    let deadline = tcb::ctl(guard, thread).deadline;
    cancel_timeout(guard, thread);
    tcb::ctl(guard, thread).cpu = cpu;
    if deadline != 0 {
        add_timeout(guard, thread, deadline);
    }
}

/// Interrupts CPU `cpu` if it runs user code and waits until it has entered
/// the kernel (its user registers are then saved in its thread's TCB).
pub fn stall(cpu: u32) {
    let Some(target) = percpu::get(cpu) else {
        return;
    };
    if target.in_user() {
        apic::send_ipi(target.apic_id, trap::VECTOR_IPI_KICK);
        while target.in_user() {
            cpu::pause();
        }
    }
}

/// Adds `thread` to its CPU's timeout list, to be woken with `Timeout` at
/// TSC `deadline`.
pub fn add_timeout(guard: &mut KernelGuard, thread: u64, deadline: u64) {
    let cpu = tcb::ctl(guard, thread).cpu as usize;
    let head = CPUS.get(guard)[cpu].timeout_head;
    {
        let t = tcb::ctl(guard, thread);
        t.deadline = deadline;
        t.timeout_next = head;
        t.timeout_prev = 0;
        t.timeout_cpu = cpu as u64;
    }
    if head != 0 {
        tcb::ctl(guard, head).timeout_prev = thread;
    }
    CPUS.get(guard)[cpu].timeout_head = thread;
}

/// Removes `thread` from its timeout list (no-op if it has no deadline).
pub fn cancel_timeout(guard: &mut KernelGuard, thread: u64) {
    let t = *tcb::ctl(guard, thread);
    if t.deadline == 0 {
        return;
    }
    if t.timeout_prev == 0 {
        // The list it was added to, not the CPU it runs on now.
        CPUS.get(guard)[t.timeout_cpu as usize].timeout_head = t.timeout_next;
    } else {
        tcb::ctl(guard, t.timeout_prev).timeout_next = t.timeout_next;
    }
    if t.timeout_next != 0 {
        tcb::ctl(guard, t.timeout_next).timeout_prev = t.timeout_prev;
    }
    let t = tcb::ctl(guard, thread);
    t.deadline = 0;
    t.timeout_next = 0;
    t.timeout_prev = 0;
}

/// Wakes every thread on this CPU whose deadline has passed.
fn expire_timeouts(guard: &mut KernelGuard) {
    let now = cpu::rdtsc();
    let mut thread = CPUS.get(guard)[this_cpu()].timeout_head;
    while thread != 0 {
        let t = *tcb::ctl(guard, thread);
        // (A `VcpuRun` deadline is on no list: `vcpu::enter_guest`.)
        if t.deadline <= now {
            crate::ipc::cancel_ipc(guard, thread);
            tcb::set_result(guard, thread, Err(tarn_ipc_schema::Error::Timeout));
            make_runnable(guard, thread);
        }
        thread = t.timeout_next;
    }
}

/// Whether every CPU's timeout list is well formed: each entry has a
/// deadline and names this CPU as the list holding it, its back link names
/// the entry before it, and the list ends (no cycle longer than every TCB
/// there could be).
pub fn timeouts_consistent(guard: &mut KernelGuard) -> bool {
    const MAX_ENTRIES: usize = 1 << 20;
    for cpu in 0..percpu::online() as usize {
        let mut previous = 0;
        let mut thread = CPUS.get(guard)[cpu].timeout_head;
        let mut seen = 0;
        while thread != 0 {
            let t = tcb::ctl(guard, thread);
            seen += 1;
            if t.deadline == 0
                || t.timeout_cpu != cpu as u64
                || t.timeout_prev != previous
                || seen > MAX_ENTRIES
            {
                return false;
            }
            previous = thread;
            thread = t.timeout_next;
        }
    }
    true
}

#[inline(always)]
fn earliest_deadline(guard: &mut KernelGuard) -> u64 {
    let mut earliest = u64::MAX;
    let mut thread = CPUS.get(guard)[this_cpu()].timeout_head;
    while thread != 0 {
        let t = tcb::ctl(guard, thread);
        earliest = earliest.min(t.deadline);
        thread = t.timeout_next;
    }
    earliest
}

/// The current thread, entering its guest (`vcpu::enter_guest`), has a
/// `VcpuRun` deadline at `deadline` (on no timeout list): the one-shot
/// timer is armed as the pass would arm it with that deadline listed,
/// unless it is armed already to fire no later (an earlier expiry is an
/// ordinary timer interrupt, after which the pass arms it again and the
/// guest's next entry lowers it to the deadline).
pub fn timeout_added(guard: &mut KernelGuard, deadline: u64) {
    let state = CPUS.get(guard)[this_cpu()];
    if state.armed_for != 0 && state.armed_for <= deadline {
        return;
    }
    let wake_at = state
        .slice_end
        .min(deadline)
        .min(earliest_deadline(guard))
        .min(crate::dispatch::next_tick(guard));
    timer::arm_at_tsc(wake_at);
    CPUS.get(guard)[this_cpu()].armed_for = wake_at;
}

/// Handles this CPU's timer interrupt: timeouts, then the slice. (The
/// one-shot timer has fired: it is armed again by the next pass.)
pub fn on_timer(guard: &mut KernelGuard) {
    CPUS.get(guard)[this_cpu()].armed_for = 0;
    timer_work(guard);
    let cpu = this_cpu();
    let state = CPUS.get(guard)[cpu];
    let now = cpu::rdtsc();
    if state.current != 0
        && !crate::dispatch::is_adopted(guard, state.current)
        && tcb::ctl(guard, state.current).confined != 0
        && watchdog_expired(guard, state.current)
    {
        // Stopped and reported; the scheduling pass runs something else.
        let ran_ns = timer::tsc_to_ns(
            ran_tsc(guard, state.current) - tcb::confinement(guard, state.current).watch_base_tsc,
        );
        let rip = tcb::frame(guard, state.current).rip;
        crate::ipc::deliver_fault(
            guard,
            state.current,
            tarn_ipc_schema::fault::WATCHDOG,
            [rip, ran_ns, 0, 0],
        );
        return;
    }
    if state.current != 0
        && !crate::dispatch::is_adopted(guard, state.current)
        && now >= state.slice_end
    {
        if state.run_head != 0 {
            // Round robin: the running thread goes behind the others (a
            // confined one where its confinement puts it: the scheduling
            // pass would move it anyway).
            CPUS.get(guard)[cpu].current = 0;
            make_runnable(guard, state.current);
        } else {
            // Alone on this CPU: a fresh slice (and no timer storm from a
            // slice end in the past).
            CPUS.get(guard)[cpu].slice_end = now + timer::ns_to_tsc(SYSTEM_SLICE_NS);
        }
    }
}

/// Timer interrupts that must find a confined thread running (since it
/// last woke or dispatched) before the watchdog stops it: one per system
/// slice of the bound.
const WATCHDOG_TICKS: u64 = tarn_ipc_schema::sched::WATCHDOG_NS / SYSTEM_SLICE_NS;

/// The confined system thread `thread`, running on this CPU, was found
/// there by a timer interrupt: whether it has now run
/// [`tarn_ipc_schema::sched::WATCHDOG_NS`] since it last woke or
/// dispatched, across [`WATCHDOG_TICKS`] such interrupts. (Run time alone
/// would also count time its CPU spent waiting for the kernel lock, or
/// descheduled by an emulator's host, which one interrupt then sees as a
/// long run; a thread that spins is interrupted every slice.)
fn watchdog_expired(guard: &mut KernelGuard, thread: u64) -> bool {
    let watch = tcb::confinement(guard, thread);
    watch.watch_ticks += 1;
    let (base, ticks) = (watch.watch_base_tsc, watch.watch_ticks);
    let ran = ran_tsc(guard, thread).saturating_sub(base);
    ticks >= WATCHDOG_TICKS && ran >= timer::ns_to_tsc(tarn_ipc_schema::sched::WATCHDOG_NS)
}

/// `thread` woke (or was confined): its watchdog counts from `ran_tsc`.
pub fn restart_watchdog(guard: &mut KernelGuard, thread: u64, ran_tsc: u64) {
    let watch = tcb::confinement(guard, thread);
    watch.watch_base_tsc = ran_tsc;
    watch.watch_ticks = 0;
}

/// `thread`, running on this CPU, made progress (it dispatched): its
/// watchdog counts from now. Only confined threads are watched.
#[inline(always)]
pub fn reset_watchdog(guard: &mut KernelGuard, thread: u64) {
    if tcb::ctl(guard, thread).confined == 0 {
        return;
    }
    let s = CPUS.get(guard)[this_cpu()];
    let running = if s.spent_thread == thread && s.spent_since != 0 {
        cpu::rdtsc().saturating_sub(s.spent_since)
    } else {
        0
    };
    let ran = tcb::ctl(guard, thread).ran_tsc;
    restart_watchdog(guard, thread, ran + running);
}

/// Gives up the rest of the current thread's slice.
pub fn yield_current(guard: &mut KernelGuard) {
    let cpu = this_cpu();
    let state = CPUS.get(guard)[cpu];
    if state.current != 0 && crate::dispatch::is_adopted(guard, state.current) {
        crate::dispatch::on_yield(guard, state.current);
        return;
    }
    if state.current != 0 && state.run_head != 0 {
        CPUS.get(guard)[cpu].current = 0;
        make_runnable(guard, state.current);
    }
}

/// Picks what this CPU runs next and leaves the kernel into it (or idles).
pub fn schedule(mut guard: KernelGuard) -> ! {
    loop {
        let cpu = this_cpu();
        let mut state = CPUS.get(&mut guard)[cpu];
        if state.current != 0
            && tcb::ctl(&mut guard, state.current).state != ThreadState::Runnable as u64
        {
            CPUS.get(&mut guard)[cpu].current = 0;
            state.current = 0;
        }
        let (mut current_adopted, current_confined) = if state.current != 0 {
            let t = tcb::ctl(&mut guard, state.current);
            (t.scheduler != 0, t.confined != 0)
        } else {
            (false, false)
        };
        // A confined thread running in the idle class, or one whose CPU
        // left its Scheduler, is placed again (behind the others of the
        // idle class, or on a CPU of its Scheduler).
        if current_confined
            && !current_adopted
            && !crate::dispatch::confinement_allows(&mut guard, state.current, cpu)
        {
            CPUS.get(&mut guard)[cpu].current = 0;
            make_runnable(&mut guard, state.current);
            state = CPUS.get(&mut guard)[cpu];
        }
        // System threads run ahead of dispatched entries.
        if current_adopted && state.run_head != 0 {
            crate::dispatch::pause(&mut guard, cpu);
            CPUS.get(&mut guard)[cpu].current = 0;
            state.current = 0;
            current_adopted = false;
        }
        if state.current == 0 && state.run_head != 0 {
            let next = state.run_head;
            // A system thread of this CPU's own: the entry's clock stops.
            crate::dispatch::pause(&mut guard, cpu);
            take_fifo_head(&mut guard, cpu, next);
            let s = &mut CPUS.get(&mut guard)[cpu];
            s.current = next;
            s.slice_end = cpu::rdtsc() + timer::ns_to_tsc(SYSTEM_SLICE_NS);
            state = *s;
        } else if state.current == 0 || current_adopted {
            // The head of this CPU's dispatch queue, with its budget.
            let entry = crate::dispatch::head_entry(&mut guard, cpu);
            let s = &mut CPUS.get(&mut guard)[cpu];
            (s.current, s.slice_end) = entry.unwrap_or((0, u64::MAX));
            state = *s;
        }
        if state.current == 0 && IDLE.get(&mut guard)[cpu].head != 0 {
            // Nothing else to run: the idle class.
            let next = IDLE.get(&mut guard)[cpu].head;
            dequeue(&mut guard, next);
            let s = &mut CPUS.get(&mut guard)[cpu];
            s.current = next;
            s.slice_end = cpu::rdtsc() + timer::ns_to_tsc(SYSTEM_SLICE_NS);
            state = *s;
        }
        if state.current != 0 {
            let thread = state.current;
            let Some(root) = tcb::runnable_root(&mut guard, thread) else {
                kwarn!("thread {thread:#x} has no address space; suspending it");
                tcb::ctl(&mut guard, thread).state = ThreadState::Inactive as u64;
                CPUS.get(&mut guard)[cpu].current = 0;
                continue;
            };
            let wake_at = state
                .slice_end
                .min(earliest_deadline(&mut guard))
                .min(crate::dispatch::next_tick(&mut guard));
            if state.armed_for != wake_at {
                timer::arm_at_tsc(wake_at);
                CPUS.get(&mut guard)[cpu].armed_for = wake_at;
            }
            let kind = if crate::dispatch::is_adopted(&mut guard, thread) {
                2
            } else {
                1
            };
            account(&mut guard, kind, thread);
            enter(guard, thread, root, state.fpu_owner);
        }
        // Nothing to run: idle until an interrupt, then look again.
        let deadline = earliest_deadline(&mut guard).min(crate::dispatch::next_tick(&mut guard));
        if deadline != u64::MAX {
            timer::arm_at_tsc(deadline);
        }
        CPUS.get(&mut guard)[cpu].armed_for = 0;
        account(&mut guard, 0, 0);
        user::load_kernel_tables(crate::arch::paging::kernel_root());
        drop(guard);
        cpu::enable_interrupts_and_halt();
        cpu::disable_interrupts();
        guard = lock::acquire();
        timer_work(&mut guard);
    }
}

/// The timer work of [`on_timer`] that does not involve a running thread
/// (all of it for an idle CPU, whose `armed_for` is already 0): the mark
/// of an unhandled timer interrupt cleared, timeouts, the dispatch
/// budget and tick.
#[inline(always)]
fn timer_work(guard: &mut KernelGuard) {
    percpu::current().take_unhandled_timer();
    expire_timeouts(guard);
    crate::dispatch::on_timer(guard);
}

/// Charges the time since the last switch to what ran (and to the thread
/// that ran), and starts charging `kind` (0 idle, 1 system thread, 2
/// dispatched thread) and `thread` (0 = none).
#[inline(always)]
fn account(guard: &mut KernelGuard, kind: usize, thread: u64) {
    let now = cpu::rdtsc();
    let s = &mut CPUS.get(guard)[this_cpu()];
    let previous = s.spent_thread;
    let elapsed = if s.spent_since != 0 {
        now - s.spent_since
    } else {
        0
    };
    s.spent[s.spent_kind] += elapsed;
    s.spent_kind = kind;
    s.spent_since = now;
    s.spent_thread = thread;
    if previous != 0 {
        tcb::ctl(guard, previous).ran_tsc += elapsed;
    }
}

/// TSC ticks `thread` has run, including the stretch in progress.
pub fn ran_tsc(guard: &mut KernelGuard, thread: u64) -> u64 {
    let now = cpu::rdtsc();
    let mut total = tcb::ctl(guard, thread).ran_tsc;
    for cpu in 0..percpu::online() as usize {
        let s = CPUS.get(guard)[cpu];
        if s.spent_thread == thread && s.spent_since != 0 {
            total += now.saturating_sub(s.spent_since);
        }
    }
    total
}

/// Called when a TCB is destroyed: no CPU charges time to it any more.
pub fn forget_accounting(guard: &mut KernelGuard, thread: u64) {
    for cpu in 0..percpu::online() as usize {
        if CPUS.get(guard)[cpu].spent_thread == thread {
            CPUS.get(guard)[cpu].spent_thread = 0;
        }
    }
}

/// Nanoseconds each CPU spent idle, in system threads and in dispatched
/// threads since boot (`MachineCheckInvariants` reports the totals).
pub fn time_split(guard: &mut KernelGuard) -> [u64; 3] {
    let now = cpu::rdtsc();
    let mut total = [0u64; 3];
    for cpu in 0..percpu::online() as usize {
        let s = CPUS.get(guard)[cpu];
        let mut spent = s.spent;
        // The span in progress (a halted CPU's idle time, above all).
        if s.spent_since != 0 {
            spent[s.spent_kind] += now.saturating_sub(s.spent_since);
        }
        for (sum, spent) in total.iter_mut().zip(spent) {
            *sum += timer::tsc_to_ns(spent);
        }
    }
    total
}

/// Leaves the kernel into `thread` (on page tables `root`), with CR0.TS set
/// unless its FPU state is the one in the registers. (Inlined into its
/// callers, with [`switch_to`] and `user::return_to_user`: each call level
/// on the way out cost every switch a few instructions.)
#[inline(always)]
fn enter(mut guard: KernelGuard, thread: u64, root: u64, fpu_owner: u64) -> ! {
    if crate::vcpu::in_guest(&mut guard, thread) {
        crate::vcpu::enter_guest(guard, thread)
    }
    user::set_fpu_trap(fpu_owner != thread);
    user::return_to_user(guard, tcb::frame_address(thread), root)
}

/// Switches this CPU straight to `thread` on page tables `root` (the IPC
/// fastpath: it continues the current slice), without the run queue.
/// `thread` is not in a guest: both partners of a fastpath IPC are blocked
/// in IPC, and a VM exit's thread has just left `VcpuRun`
/// (`vcpu::complete`), so the test [`enter`] makes is not made here.
#[inline(always)]
pub fn switch_to(mut guard: KernelGuard, thread: u64, root: u64) -> ! {
    debug_assert!(!crate::vcpu::in_guest(&mut guard, thread));
    let state = &mut CPUS.get(&mut guard)[this_cpu()];
    state.current = thread;
    let fpu_owner = state.fpu_owner;
    user::set_fpu_trap(fpu_owner != thread);
    user::return_to_user(guard, tcb::frame_address(thread), root)
}

/// For the IPC fastpath's donation, before [`switch_to`]: charges the time
/// since the last switch to the thread that ran and starts charging
/// `thread` (a dispatched thread if `dispatched`, else a system thread: the
/// fastpath knows which), as a scheduling pass does.
#[inline(always)]
pub fn charge_switch(guard: &mut KernelGuard, thread: u64, dispatched: bool) {
    debug_assert_eq!(tcb::ctl(guard, thread).scheduler != 0, dispatched);
    account(guard, if dispatched { 2 } else { 1 }, thread);
}

/// The current thread touched the FPU while CR0.TS was set (#NM): give it
/// the FPU, saving the previous owner's state.
pub fn fpu_trap(guard: &mut KernelGuard) {
    let cpu = this_cpu();
    let state = CPUS.get(guard)[cpu];
    user::set_fpu_trap(false);
    if state.fpu_owner == state.current {
        return;
    }
    if state.fpu_owner != 0 {
        user::save_fpu(guard, fpu_area_of(state.fpu_owner));
    }
    if state.current != 0 {
        fetch_fpu_state(guard, state.current);
        user::restore_fpu(guard, tcb::fpu_area(state.current));
    }
    CPUS.get(guard)[cpu].fpu_owner = state.current;
}

/// Makes `owner`'s saved FPU area current before this CPU loads it: if
/// another CPU still holds `owner`'s state in its registers (lazy switching:
/// the thread or guest ran there last and that CPU has not switched FPU
/// owners since), that CPU is interrupted and saves them into the area,
/// while this CPU waits with the kernel lock held; it then owns nothing.
fn fetch_fpu_state(guard: &mut KernelGuard, owner: u64) {
    let me = this_cpu();
    for cpu in 0..percpu::online() as usize {
        if cpu == me || CPUS.get(guard)[cpu].fpu_owner != owner {
            continue;
        }
        if let Some(target) = percpu::get(cpu as u32) {
            target.save_fpu_remotely(crate::arch::paging::phys_to_virt(fpu_area_of(owner)));
        }
        CPUS.get(guard)[cpu].fpu_owner = 0;
    }
}

/// The FPU area of an FPU owner: a thread, or a guest ([`crate::vcpu::fpu_tag`]).
fn fpu_area_of(owner: u64) -> u64 {
    if owner & 1 != 0 {
        crate::vcpu::fpu_area(owner & !1)
    } else {
        tcb::fpu_area(owner)
    }
}

/// Gives this CPU's FPU to a guest (tag [`crate::vcpu::fpu_tag`]) before it
/// runs: the owner's state is saved, the guest's loaded, CR0.TS cleared (the
/// guest runs with its own CR0; the host's TS would not stop it).
pub fn claim_fpu_for_guest(guard: &mut KernelGuard, tag: u64) {
    let cpu = this_cpu();
    let owner = CPUS.get(guard)[cpu].fpu_owner;
    user::set_fpu_trap(false);
    if owner == tag {
        return;
    }
    if owner != 0 {
        user::save_fpu(guard, fpu_area_of(owner));
    }
    fetch_fpu_state(guard, tag);
    user::restore_fpu(guard, fpu_area_of(tag));
    CPUS.get(guard)[cpu].fpu_owner = tag;
}

/// Called when the FPU owner's TCB (or Vcpu) is destroyed (its state must not be saved
/// into freed memory).
pub fn forget_fpu_owner(guard: &mut KernelGuard, thread: u64) {
    for cpu in 0..percpu::online() as usize {
        if CPUS.get(guard)[cpu].fpu_owner == thread {
            CPUS.get(guard)[cpu].fpu_owner = 0;
        }
    }
}

/// Checks every CPU's scheduling references (the invariant check): the
/// running thread, the FIFO, the timeout list, the FPU owner and the thread
/// being charged are live; each FIFO entry says it is queued on that CPU,
/// each timeout entry has a deadline on that CPU's list. Returns how many
/// threads the FIFOs hold and how many the timeout lists.
pub fn check(guard: &mut KernelGuard, live: &Live) -> Verdict<(u64, u64)> {
    let (mut run_queued, mut timeouts) = (0u64, 0u64);
    let limit = live.tcbs.len() as u64;
    for cpu in 0..percpu::online() as usize {
        let s = CPUS.get(guard)[cpu];
        ensure(
            s.current == 0 || live.is_tcb(s.current),
            "a CPU runs no live thread",
            cpu as u64,
        )?;
        ensure(
            s.spent_thread == 0 || live.is_tcb(s.spent_thread),
            "a CPU charges its time to no live thread",
            cpu as u64,
        )?;
        let owner_live = match s.fpu_owner {
            0 => true,
            owner if owner & 1 != 0 => live.is_vcpu(owner & !1),
            owner => live.is_tcb(owner),
        };
        ensure(
            owner_live,
            "a CPU's FPU state belongs to no live thread or guest",
            cpu as u64,
        )?;
        let (mut previous, mut thread) = (0u64, s.run_head);
        while thread != 0 {
            run_queued += 1;
            ensure(
                live.is_tcb(thread) && run_queued <= limit,
                "a system FIFO holds no live thread, or loops",
                cpu as u64,
            )?;
            let t = *tcb::ctl(guard, thread);
            ensure(
                t.queued == 1 && t.cpu == cpu as u64 && t.sched_prev == previous,
                "a system FIFO holds a thread that is not queued there",
                thread,
            )?;
            ensure(
                crate::dispatch::confinement_allows(guard, thread, cpu),
                "a system FIFO holds a thread confined to another CPU",
                thread,
            )?;
            previous = thread;
            thread = t.sched_next;
        }
        ensure(
            s.run_tail == previous,
            "a system FIFO's tail is not its last thread",
            cpu as u64,
        )?;
        let idle = IDLE.get(guard)[cpu];
        let (mut previous, mut thread) = (0u64, idle.head);
        while thread != 0 {
            run_queued += 1;
            ensure(
                live.is_tcb(thread) && run_queued <= limit,
                "an idle class holds no live thread, or loops",
                cpu as u64,
            )?;
            let t = *tcb::ctl(guard, thread);
            ensure(
                t.queued == IN_IDLE_CLASS && t.cpu == cpu as u64 && t.sched_prev == previous,
                "an idle class holds a thread that is not queued there",
                thread,
            )?;
            ensure(
                t.confined != 0 && crate::dispatch::confined_home(guard, t.confined, cpu).is_none(),
                "an idle class holds a thread that may run ahead of others",
                thread,
            )?;
            previous = thread;
            thread = t.sched_next;
        }
        ensure(
            idle.tail == previous,
            "an idle class's tail is not its last thread",
            cpu as u64,
        )?;
        let mut thread = s.timeout_head;
        while thread != 0 {
            timeouts += 1;
            ensure(
                live.is_tcb(thread) && timeouts <= limit,
                "a timeout list holds no live thread, or loops",
                cpu as u64,
            )?;
            thread = tcb::ctl(guard, thread).timeout_next;
        }
    }
    ensure(timeouts_consistent(guard), "a timeout list is malformed", 0)?;
    Ok((run_queued, timeouts))
}
