//! The kernel half of user-mode scheduling: Cpu capabilities, Scheduler
//! objects, dispatch queues with budgets, event rings, and the isolation
//! rules (a CPU runs only its scheduler's entries; an entry names only a
//! thread that scheduler adopted). The suite plays the scheduler server.

use crate::harness::{Check, Env, Outcome, Pass, Shared, Test};
use crate::{ensure, expect, expect_err};
use alloc::string::String;
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::sched::{Event, EventKind, DISPATCH_QUEUE_LEN};
use tarn_rt::abi::sched_protocol::{self, SchedError, SchedReply, SchedRequest};
use tarn_rt::abi::vcpu::{attributes, Exit, Reg, Segment};
use tarn_rt::abi::{Error, ObjectType, Rights};
use tarn_rt::invoke::{self, VcpuRunArgs};
use tarn_rt::layout::slot;
use tarn_rt::sched::RingReader;
use tarn_rt::vcpu::RegisterPage;
use tarn_rt::{println, ThreadOptions};

pub const TESTS: &[Test] = &[
    ("sched_cpu_info", cpu_info),
    ("sched_bind_rules", bind_rules),
    ("sched_dispatch_runs_adopted_thread", dispatch_runs),
    ("sched_budget_expiry_reports_exact_time", budget_expiry),
    ("sched_isolation_foreign_thread_and_cpu", isolation),
    ("sched_queue_full_and_bad_budget", queue_limits),
    ("sched_revoke_cpu_evicts_queue", revoke_evicts),
    ("sched_release_returns_to_system_fifo", release),
    ("sched_preempt_ends_running_entry", preempt),
    ("sched_call_donates_entry_to_server", donation),
    ("sched_calls_on_one_cpu_keep_the_entry", donation_same_cpu),
    ("sched_budget_expires_while_lent", donation_budget_expiry),
    ("sched_dispatch_wait_queues_then_waits", dispatch_wait),
    ("sched_server_process_protocol", server_process),
    (
        "sched_moved_thread_timeout_keeps_other_cpu_timeouts",
        moved_timeout,
    ),
    ("vcpu_load_mask_loads_only_named_registers", load_mask),
    ("vcpu_debug_registers_are_each_guests_own", debug_registers),
    ("vcpu_exits_keep_the_timer", exits_keep_timer),
    (
        "vcpu_thread_moves_between_cpus_between_exits",
        moves_between_cpus,
    ),
    ("vcpu_two_guests_alternate_on_one_cpu", alternate_on_one_cpu),
];

/// A server-side view of one bound CPU: its ring, mapped in the suite.
pub(crate) struct Bound {
    pub(crate) scheduler: u64,
    pub(crate) cpu_cap: u64,
    notify: u64,
    ring: RingReader,
}

impl Bound {
    /// Creates a Scheduler and binds CPU `index` to it.
    pub(crate) fn new(env: &mut Env, index: u64) -> Result<Bound, String> {
        let scheduler = env.create(ObjectType::Scheduler, 0)?;
        Bound::to(env, scheduler, index)
    }

    /// Binds CPU `index` to `scheduler`.
    pub(crate) fn to(env: &mut Env, scheduler: u64, index: u64) -> Result<Bound, String> {
        let Some(first) = env.cpu_caps else {
            return Err(String::from("the suite got no Cpu capabilities"));
        };
        let cpu_cap = env.copy(first + index, Rights::ALL)?;
        let (ring, ring_vaddr) = env.mapped_frame()?;
        let notify = env.notification()?;
        invoke::scheduler_bind_cpu(scheduler, cpu_cap, ring, notify)
            .map_err(|e| alloc::format!("bind: {e:?}"))?;
        Bound::over(scheduler, cpu_cap, ring_vaddr, notify)
    }

    /// The view of a CPU bound elsewhere in the test.
    fn over(scheduler: u64, cpu_cap: u64, ring_vaddr: u64, notify: u64) -> Result<Bound, String> {
        let ring = RingReader::new(ring_vaddr)
            .ok_or_else(|| String::from("ring outside the free window"))?;
        Ok(Bound {
            scheduler,
            cpu_cap,
            notify,
            ring,
        })
    }

    /// The next event, waiting up to ~5 s.
    fn next(&mut self, env: &Env) -> Result<Event, String> {
        let mut event = None;
        env.wait_until("an event", || {
            event = self.ring.pop();
            event.is_some()
        })?;
        event.ok_or_else(|| String::from("no event"))
    }

    /// Skips events until one of `kind` (for `thread`, 0 = any) arrives.
    fn expect(&mut self, env: &Env, kind: EventKind, thread: u64) -> Result<Event, String> {
        for _ in 0..64 {
            let event = self.next(env)?;
            if event.kind == kind as u32 && (thread == 0 || event.thread == thread) {
                return Ok(event);
            }
        }
        Err(alloc::format!("no {kind:?} event for thread {thread}"))
    }
}

impl Bound {
    /// A counter thread (see [`counter`]) adopted as `id` and resumed; with
    /// `woken`, waits for its `Woken` event.
    fn adopted_counter(
        &mut self,
        env: &mut Env,
        shared: &alloc::sync::Arc<Shared>,
        id: u64,
        woken: bool,
    ) -> Result<tarn_rt::Thread, String> {
        let thread = counter(env, shared)?;
        expect!(
            invoke::scheduler_adopt(self.scheduler, thread.tcb, id),
            Ok(())
        );
        expect!(invoke::tcb_resume(thread.tcb), Ok(()));
        if woken {
            self.expect(env, EventKind::Woken, id)?;
        }
        Ok(thread)
    }
}

impl Drop for Bound {
    /// Each test leaves its CPU unbound for the next (also on failure).
    fn drop(&mut self) {
        let _ = invoke::scheduler_unbind_cpu(self.scheduler, self.cpu_cap);
    }
}

fn cpu_info(env: &mut Env) -> Outcome {
    let Some(first) = env.cpu_caps else {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    };
    for index in 0..env.cpus {
        let (reported, _, bound) =
            invoke::cpu_info(first + index).map_err(|e| alloc::format!("{e:?}"))?;
        expect!(reported, index);
        expect!(bound, false);
    }
    Ok(Pass::Ok)
}

fn bind_rules(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let bound = Bound::new(env, 0)?;
    let other = env.create(ObjectType::Scheduler, 0)?;
    let (ring, _) = env.mapped_frame()?;
    // A bound CPU cannot be bound again.
    expect_err!(
        invoke::scheduler_bind_cpu(other, bound.cpu_cap, ring, bound.notify),
        Error::IllegalState
    );
    // Wrong types.
    expect_err!(
        invoke::scheduler_bind_cpu(other, ring, ring, bound.notify),
        Error::WrongType
    );
    expect_err!(
        invoke::scheduler_bind_cpu(other, bound.cpu_cap, bound.notify, bound.notify),
        Error::WrongType
    );
    // A read-only ring is refused.
    let read_only = env.copy(ring, Rights::READ)?;
    let cpu_copy = env.copy(bound.cpu_cap, Rights::ALL)?;
    expect_err!(
        invoke::scheduler_bind_cpu(other, cpu_copy, read_only, bound.notify),
        Error::InsufficientRights
    );
    // Only the owner unbinds.
    expect_err!(
        invoke::scheduler_unbind_cpu(other, bound.cpu_cap),
        Error::NotOwned
    );
    let (_, _, is_bound) = invoke::cpu_info(bound.cpu_cap).map_err(|e| alloc::format!("{e:?}"))?;
    expect!(is_bound, true);
    expect!(
        invoke::scheduler_unbind_cpu(bound.scheduler, bound.cpu_cap),
        Ok(())
    );
    let (_, _, is_bound) = invoke::cpu_info(bound.cpu_cap).map_err(|e| alloc::format!("{e:?}"))?;
    expect!(is_bound, false);
    Ok(Pass::Ok)
}

/// A thread that counts in shared word 0 until told to stop (word 1).
fn counter(env: &mut Env, shared: &alloc::sync::Arc<Shared>) -> Result<tarn_rt::Thread, String> {
    let s = shared.clone();
    env.spawn(
        ThreadOptions {
            cpu: Some(0),
            start: false,
            ..Default::default()
        },
        move || {
            while s.get(1) == 0 {
                s.bump(0);
            }
        },
    )
}

fn dispatch_runs(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let mut bound = Bound::new(env, 0)?;
    let shared = Shared::new();
    let thread = counter(env, &shared)?;
    expect!(
        invoke::scheduler_adopt(bound.scheduler, thread.tcb, 7),
        Ok(())
    );
    // Its own scheduler may adopt it again (a replacement server taking
    // over); another may not.
    expect!(
        invoke::scheduler_adopt(bound.scheduler, thread.tcb, 7),
        Ok(())
    );
    let other = env.create(ObjectType::Scheduler, 0)?;
    expect_err!(
        invoke::scheduler_adopt(other, thread.tcb, 7),
        Error::IllegalState
    );
    expect!(invoke::tcb_resume(thread.tcb), Ok(()));
    // Adopted and runnable but not dispatched: it does not run.
    bound.expect(env, EventKind::Woken, 7)?;
    env.sleep_ns(20_000_000);
    expect!(shared.get(0), 0);
    // Dispatched with a budget: it runs, then the entry ends.
    expect!(
        invoke::scheduler_dispatch(bound.scheduler, 0, thread.tcb, 2_000_000),
        Ok(())
    );
    // Queued already: a second dispatch is refused.
    expect_err!(
        invoke::scheduler_dispatch(bound.scheduler, 0, thread.tcb, 2_000_000),
        Error::IllegalState
    );
    env.wait_until("the counter to run", || shared.get(0) > 0)?;
    let ended = bound.expect(env, EventKind::BudgetExpired, 7)?;
    ensure!(ended.cpu == 0, "event on cpu {}", ended.cpu);
    // Stop it for good.
    shared.set(1, 1);
    expect!(invoke::tcb_suspend(thread.tcb), Ok(()));
    Ok(Pass::Ok)
}

fn budget_expiry(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let mut bound = Bound::new(env, 0)?;
    let shared = Shared::new();
    let thread = bound.adopted_counter(env, &shared, 9, true)?;
    let budget = 3_000_000;
    expect!(
        invoke::scheduler_dispatch(bound.scheduler, 0, thread.tcb, budget),
        Ok(())
    );
    let ended = bound.expect(env, EventKind::BudgetExpired, 9)?;
    // Never cut short; late only by the timer interrupt's delivery (which
    // under plain TCG depends on the host, so the bound is loose).
    println!("sched: a {budget} ns budget ran {} ns", ended.ran_ns);
    ensure!(
        ended.ran_ns >= budget && ended.ran_ns < budget * 10,
        "ran {} ns on a {budget} ns budget",
        ended.ran_ns
    );
    let query = invoke::scheduler_query_thread(bound.scheduler, thread.tcb)
        .map_err(|e| alloc::format!("{e:?}"))?;
    expect!(query.thread_id, 9);
    expect!(query.queued_on, 0);
    // Out of every queue, it remembers the CPU it last ran on (xl's
    // vcpu-list CPU).
    expect!(query.last_cpu, 1);
    expect!(query.ran_ns, ended.ran_ns);
    expect!(query.state_raw, ThreadState::Runnable as u64);
    shared.set(1, 1);
    expect!(invoke::tcb_suspend(thread.tcb), Ok(()));
    Ok(Pass::Ok)
}

fn isolation(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let bound = Bound::new(env, 0)?;
    let stranger = env.create(ObjectType::Scheduler, 0)?;
    let shared = Shared::new();
    let thread = counter(env, &shared)?;
    // Not adopted by anyone: no dispatch.
    expect_err!(
        invoke::scheduler_dispatch(bound.scheduler, 0, thread.tcb, 1_000_000),
        Error::NotOwned
    );
    expect!(invoke::scheduler_adopt(stranger, thread.tcb, 1), Ok(()));
    // Adopted by another scheduler: still refused.
    expect_err!(
        invoke::scheduler_dispatch(bound.scheduler, 0, thread.tcb, 1_000_000),
        Error::NotOwned
    );
    // The other scheduler has no CPU: refused too.
    expect_err!(
        invoke::scheduler_dispatch(stranger, 0, thread.tcb, 1_000_000),
        Error::NotOwned
    );
    expect_err!(
        invoke::scheduler_dispatch(stranger, 999, thread.tcb, 1_000_000),
        Error::OutOfRange
    );
    expect_err!(
        invoke::scheduler_release(bound.scheduler, thread.tcb),
        Error::NotOwned
    );
    expect!(invoke::scheduler_release(stranger, thread.tcb), Ok(()));
    expect!(shared.get(0), 0);
    shared.set(1, 1);
    Ok(Pass::Ok)
}

fn queue_limits(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let mut bound = Bound::new(env, 0)?;
    // The suite itself keeps CPU 0 busy enough: threads that only block.
    let mut threads = alloc::vec::Vec::new();
    let shared = Shared::new();
    for id in 0..=DISPATCH_QUEUE_LEN as u64 {
        threads.push(bound.adopted_counter(env, &shared, 100 + id, false)?);
    }
    shared.set(1, 1);
    expect_err!(
        invoke::scheduler_dispatch(bound.scheduler, 0, threads[0].tcb, 0),
        Error::InvalidArgument
    );
    for thread in &threads[..DISPATCH_QUEUE_LEN] {
        expect!(
            invoke::scheduler_dispatch(bound.scheduler, 0, thread.tcb, 50_000_000),
            Ok(())
        );
    }
    expect_err!(
        invoke::scheduler_dispatch(
            bound.scheduler,
            0,
            threads[DISPATCH_QUEUE_LEN].tcb,
            50_000_000
        ),
        Error::QueueFull
    );
    // Every queued thread runs to its end (word 1 is set); the one that did
    // not fit in the queue never runs.
    for thread in &threads[..DISPATCH_QUEUE_LEN] {
        env.join(thread)?;
    }
    ensure!(
        !threads[DISPATCH_QUEUE_LEN].is_finished(),
        "an undispatched adopted thread ran"
    );
    bound.expect(env, EventKind::QueueEmpty, 0)?;
    for thread in &threads {
        let _ = invoke::tcb_suspend(thread.tcb);
    }
    Ok(Pass::Ok)
}

fn revoke_evicts(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    // The pool manager's move: bind with a derived Cpu capability, then revoke it.
    let Some(first) = env.cpu_caps else {
        unreachable!()
    };
    let original = env.copy(first, Rights::ALL)?;
    let derived = env.copy(original, Rights::ALL)?;
    let scheduler = env.create(ObjectType::Scheduler, 0)?;
    let (ring, ring_vaddr) = env.mapped_frame()?;
    let notify = env.notification()?;
    expect!(
        invoke::scheduler_bind_cpu(scheduler, derived, ring, notify),
        Ok(())
    );
    let mut bound = Bound::over(scheduler, derived, ring_vaddr, notify)?;
    let shared = Shared::new();
    let thread = bound.adopted_counter(env, &shared, 5, true)?;
    // A long budget: it would run for a second.
    expect!(
        invoke::scheduler_dispatch(scheduler, 0, thread.tcb, 1_000_000_000),
        Ok(())
    );
    env.wait_until("the counter to run", || shared.get(0) > 0)?;
    expect!(
        invoke::cnode_revoke(tarn_rt::layout::slot::ROOT_CNODE, original),
        Ok(())
    );
    let evicted = bound.expect(env, EventKind::Evicted, 5)?;
    ensure!(evicted.ran_ns > 0, "the evicted entry had run");
    let (_, _, is_bound) = invoke::cpu_info(original).map_err(|e| alloc::format!("{e:?}"))?;
    expect!(is_bound, false);
    // The CPU no longer runs the thread.
    let before = shared.get(0);
    env.sleep_ns(20_000_000);
    expect!(shared.get(0), before);
    expect_err!(
        invoke::scheduler_dispatch(scheduler, 0, thread.tcb, 1_000_000),
        Error::NotOwned
    );
    shared.set(1, 1);
    expect!(invoke::tcb_suspend(thread.tcb), Ok(()));
    Ok(Pass::Ok)
}

fn release(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let mut bound = Bound::new(env, 0)?;
    let shared = Shared::new();
    let thread = bound.adopted_counter(env, &shared, 3, false)?;
    env.sleep_ns(10_000_000);
    expect!(shared.get(0), 0);
    // Released: the system FIFO runs it again.
    expect!(
        invoke::scheduler_release(bound.scheduler, thread.tcb),
        Ok(())
    );
    env.wait_until("the released counter to run", || shared.get(0) > 0)?;
    shared.set(1, 1);
    expect!(invoke::tcb_suspend(thread.tcb), Ok(()));
    Ok(Pass::Ok)
}

fn preempt(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let mut bound = Bound::new(env, 0)?;
    let shared = Shared::new();
    let thread = counter(env, &shared)?;
    expect!(
        invoke::scheduler_adopt(bound.scheduler, thread.tcb, 11),
        Ok(())
    );
    expect!(invoke::tcb_resume(thread.tcb), Ok(()));
    bound.expect(env, EventKind::Woken, 11)?;
    expect!(
        invoke::scheduler_dispatch(bound.scheduler, 0, thread.tcb, 1_000_000_000),
        Ok(())
    );
    env.wait_until("the counter to run", || shared.get(0) > 0)?;
    expect!(invoke::scheduler_preempt(bound.scheduler, 0), Ok(()));
    let ended = bound.expect(env, EventKind::Preempted, 11)?;
    ensure!(
        ended.ran_ns > 0 && ended.ran_ns < 1_000_000_000,
        "preempted after {} ns",
        ended.ran_ns
    );
    // No longer queued: it stops counting, and can be dispatched again.
    let before = shared.get(0);
    env.sleep_ns(10_000_000);
    expect!(shared.get(0), before);
    let query = invoke::scheduler_query_thread(bound.scheduler, thread.tcb)
        .map_err(|e| alloc::format!("{e:?}"))?;
    expect!(query.queued_on, 0);
    expect_err!(
        invoke::scheduler_preempt(bound.scheduler, 99),
        Error::OutOfRange
    );
    shared.set(1, 1);
    expect!(invoke::tcb_suspend(thread.tcb), Ok(()));
    Ok(Pass::Ok)
}

fn donation(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let mut bound = Bound::new(env, 0)?;
    let endpoint = env.endpoint()?;
    // A system-thread server (its home CPU is the last one) that does a
    // fixed amount of work per request (about a million instructions),
    // counted in shared word 2.
    let shared = Shared::new();
    let server_shared = shared.clone();
    let home = env.cpus - 1;
    let server = env.spawn(
        ThreadOptions {
            cpu: Some(home),
            ..Default::default()
        },
        move || {
            let mut message = tarn_rt::recv(endpoint);
            while message.is_ok() {
                for _ in 0..100_000 {
                    server_shared.bump(2);
                }
                message =
                    tarn_rt::reply_recv(endpoint, tarn_rt::abi::MessageInfo::new(0, 0, 0), [0; 4]);
            }
        },
    )?;
    env.wait_state(server.tcb, ThreadState::BlockedOnReceive)?;
    // The dispatched caller: one call, then it yields (ending its entry).
    let caller_shared = shared.clone();
    let caller = env.spawn(
        ThreadOptions {
            cpu: Some(0),
            start: false,
            ..Default::default()
        },
        move || {
            let _ = tarn_rt::call(endpoint, tarn_rt::abi::MessageInfo::new(0, 0, 0), [0; 4]);
            caller_shared.set(3, 1);
            tarn_rt::yield_now();
            while caller_shared.get(1) == 0 {
                tarn_rt::yield_now();
            }
        },
    )?;
    expect!(
        invoke::scheduler_adopt(bound.scheduler, caller.tcb, 21),
        Ok(())
    );
    expect!(invoke::tcb_resume(caller.tcb), Ok(()));
    bound.expect(env, EventKind::Woken, 21)?;
    expect!(
        invoke::scheduler_dispatch(bound.scheduler, 0, caller.tcb, 1_000_000_000),
        Ok(())
    );
    // With donation the server works on the caller's entry: the entry does
    // not end when the caller blocks in its call; it ends at the yield, and
    // its run time includes the server's work.
    let ended = bound.next(env)?;
    ensure!(
        ended.kind == EventKind::Yielded as u32 && ended.thread == 21,
        "the caller's entry ended with kind {} (thread {}) instead of its yield",
        ended.kind,
        ended.thread
    );
    ensure!(
        shared.get(3) == 1 && shared.get(2) > 0,
        "the call did not complete"
    );
    // The caller itself runs a few microseconds; the server's million
    // instructions are in the entry's account.
    ensure!(
        ended.ran_ns >= 200_000,
        "the entry ran {} ns, without the server's work",
        ended.ran_ns
    );
    shared.set(1, 1);
    let _ = invoke::scheduler_release(bound.scheduler, caller.tcb);
    let _ = invoke::tcb_suspend(caller.tcb);
    let _ = invoke::tcb_suspend(server.tcb);
    Ok(Pass::Ok)
}

/// A system-thread server on CPU 0 answering each call with its first word
/// plus one, after `work` increments of shared word 2.
fn adder_server(
    env: &mut Env,
    endpoint: u64,
    shared: &alloc::sync::Arc<Shared>,
    work: u64,
) -> Result<tarn_rt::Thread, String> {
    let server_shared = shared.clone();
    let server = env.spawn(
        ThreadOptions {
            cpu: Some(0),
            ..Default::default()
        },
        move || {
            let mut message = tarn_rt::recv(endpoint);
            while let Ok(request) = message {
                for _ in 0..work {
                    server_shared.bump(2);
                }
                message = tarn_rt::reply_recv(
                    endpoint,
                    tarn_rt::abi::MessageInfo::new(0, 0, 1),
                    [request.mrs[0] + 1, 0, 0, 0],
                );
            }
        },
    )?;
    env.wait_state(server.tcb, ThreadState::BlockedOnReceive)?;
    Ok(server)
}

/// A dispatched caller on CPU 0 making `calls` calls to `endpoint` (each
/// checks its reply: shared word 4 counts the right ones, word 5 the
/// wrong), then setting word 3 and yielding until word 1 is set.
fn adder_caller(
    env: &mut Env,
    endpoint: u64,
    shared: &alloc::sync::Arc<Shared>,
    calls: u64,
) -> Result<tarn_rt::Thread, String> {
    let caller_shared = shared.clone();
    env.spawn(
        ThreadOptions {
            cpu: Some(0),
            start: false,
            ..Default::default()
        },
        move || {
            for i in 0..calls {
                let reply = tarn_rt::call(
                    endpoint,
                    tarn_rt::abi::MessageInfo::new(0, 0, 1),
                    [i, 0, 0, 0],
                );
                match reply {
                    Ok(reply) if reply.mrs[0] == i + 1 => caller_shared.bump(4),
                    _ => caller_shared.bump(5),
                }
            }
            caller_shared.set(3, 1);
            tarn_rt::yield_now();
            while caller_shared.get(1) == 0 {
                tarn_rt::yield_now();
            }
        },
    )
}

/// A dispatched thread calls a system server on its own CPU many times (the
/// IPC fastpath's donation when nothing else waits there): the entry is
/// lent and handed back on every call without ending, every reply arrives,
/// and the entry's run time includes all the server's work.
fn donation_same_cpu(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    const CALLS: u64 = 20;
    let mut bound = Bound::new(env, 0)?;
    let endpoint = env.endpoint()?;
    let shared = Shared::new();
    let server = adder_server(env, endpoint, &shared, 20_000)?;
    let caller = adder_caller(env, endpoint, &shared, CALLS)?;
    expect!(
        invoke::scheduler_adopt(bound.scheduler, caller.tcb, 22),
        Ok(())
    );
    expect!(invoke::tcb_resume(caller.tcb), Ok(()));
    bound.expect(env, EventKind::Woken, 22)?;
    expect!(
        invoke::scheduler_dispatch(bound.scheduler, 0, caller.tcb, 1_000_000_000),
        Ok(())
    );
    let ended = bound.next(env)?;
    ensure!(
        ended.kind == EventKind::Yielded as u32 && ended.thread == 22,
        "the caller's entry ended with kind {} (thread {}) instead of its yield",
        ended.kind,
        ended.thread
    );
    expect!(shared.get(4), CALLS);
    expect!(shared.get(5), 0);
    expect!(shared.get(2), CALLS * 20_000);
    // 20 × 20 000 locked increments (several instructions each) ran on the
    // entry; the caller's own part is a few thousand instructions.
    ensure!(
        ended.ran_ns >= 400_000,
        "the entry ran {} ns, without the server's work",
        ended.ran_ns
    );
    shared.set(1, 1);
    let _ = invoke::scheduler_release(bound.scheduler, caller.tcb);
    let _ = invoke::tcb_suspend(caller.tcb);
    let _ = invoke::tcb_suspend(server.tcb);
    Ok(Pass::Ok)
}

/// The budget of a lent entry runs out while the server works: the entry
/// ends (`BudgetExpired`), the server finishes as a system thread, its
/// reply wakes the caller (`Woken`), and the next dispatch continues it.
fn donation_budget_expiry(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let mut bound = Bound::new(env, 0)?;
    let endpoint = env.endpoint()?;
    let shared = Shared::new();
    // About 20 M instructions of work: far beyond a 200 µs budget.
    let server = adder_server(env, endpoint, &shared, 2_000_000)?;
    let caller = adder_caller(env, endpoint, &shared, 1)?;
    expect!(
        invoke::scheduler_adopt(bound.scheduler, caller.tcb, 23),
        Ok(())
    );
    expect!(invoke::tcb_resume(caller.tcb), Ok(()));
    bound.expect(env, EventKind::Woken, 23)?;
    expect!(
        invoke::scheduler_dispatch(bound.scheduler, 0, caller.tcb, 200_000),
        Ok(())
    );
    let ended = bound.next(env)?;
    ensure!(
        ended.kind == EventKind::BudgetExpired as u32 && ended.thread == 23,
        "the lent entry ended with kind {} (thread {}) instead of its budget",
        ended.kind,
        ended.thread
    );
    ensure!(
        ended.ran_ns >= 200_000,
        "the entry ended after {} ns, before its budget",
        ended.ran_ns
    );
    // The server goes on as a system thread and replies; the reply makes
    // the caller runnable, which its scheduler hears about.
    bound.expect(env, EventKind::Woken, 23)?;
    expect!(shared.get(2), 2_000_000);
    expect!(shared.get(3), 0);
    expect!(
        invoke::scheduler_dispatch(bound.scheduler, 0, caller.tcb, 1_000_000_000),
        Ok(())
    );
    bound.expect(env, EventKind::Yielded, 23)?;
    expect!(shared.get(3), 1);
    expect!(shared.get(4), 1);
    expect!(shared.get(5), 0);
    shared.set(1, 1);
    let _ = invoke::scheduler_release(bound.scheduler, caller.tcb);
    let _ = invoke::tcb_suspend(caller.tcb);
    let _ = invoke::tcb_suspend(server.tcb);
    Ok(Pass::Ok)
}

/// `SchedulerDispatchWait`: a bad notification changes nothing (the thread
/// is not queued, the caller does not wait); a good one queues the entry,
/// then the caller waits and gets the word (at once when it is pending,
/// else when signalled).
fn dispatch_wait(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let mut bound = Bound::new(env, 0)?;
    let shared = Shared::new();
    let thread = bound.adopted_counter(env, &shared, 32, true)?;
    let endpoint = env.endpoint()?;
    let wake = env.notification()?;
    let wake_no_read = env.copy(wake, Rights::WRITE)?;
    let queued = |bound: &Bound| {
        invoke::scheduler_query_thread(bound.scheduler, thread.tcb)
            .map(|q| q.queued_on)
            .map_err(|e| alloc::format!("{e:?}"))
    };
    expect_err!(
        invoke::scheduler_dispatch_wait(bound.scheduler, 0, thread.tcb, 1_000_000, endpoint),
        Error::WrongType
    );
    expect_err!(
        invoke::scheduler_dispatch_wait(bound.scheduler, 0, thread.tcb, 1_000_000, wake_no_read),
        Error::InsufficientRights
    );
    expect_err!(
        invoke::scheduler_dispatch_wait(bound.scheduler, 0, thread.tcb, 0, wake),
        Error::InvalidArgument
    );
    expect!(queued(&bound)?, 0);
    // A pending word: queued, and the wait returns it at once.
    let badged = env.mint(wake, Rights::WRITE, 0x24)?;
    expect!(tarn_rt::signal(badged), Ok(()));
    expect!(
        invoke::scheduler_dispatch_wait(bound.scheduler, 0, thread.tcb, 1_000_000, wake),
        Ok(0x24)
    );
    // The entry runs (the suite's thread waited for nothing): it ends on
    // its budget.
    bound.expect(env, EventKind::BudgetExpired, 32)?;
    expect!(queued(&bound)?, 0);
    // No word pending: a helper on CPU 0 dispatches and waits until the
    // suite signals.
    let helper_shared = shared.clone();
    let scheduler = bound.scheduler;
    let tcb = thread.tcb;
    let helper = env.spawn(
        ThreadOptions {
            cpu: Some(0),
            ..Default::default()
        },
        move || {
            let word = invoke::scheduler_dispatch_wait(scheduler, 0, tcb, 1_000_000, wake);
            helper_shared.set(6, word.unwrap_or(u64::MAX));
        },
    )?;
    env.wait_state(helper.tcb, ThreadState::BlockedOnNotification)?;
    bound.expect(env, EventKind::BudgetExpired, 32)?;
    expect!(shared.get(6), 0);
    let badged = env.mint(wake, Rights::WRITE, 0x300)?;
    expect!(tarn_rt::signal(badged), Ok(()));
    env.wait_until("the helper's wait to return", || shared.get(6) != 0)?;
    expect!(shared.get(6), 0x300);
    shared.set(1, 1);
    let _ = invoke::scheduler_release(bound.scheduler, thread.tcb);
    let _ = invoke::tcb_suspend(thread.tcb);
    Ok(Pass::Ok)
}

/// A reply as the tests compare it (replies borrow their text from the
/// message they were decoded from).
fn shown(reply: SchedReply) -> String {
    alloc::format!("{reply:?}")
}

/// One request to the scheduler-server process; its reply, shown.
fn ask(endpoint: u64, label: u64, words: &[u64], caps: &[u64]) -> Result<String, String> {
    let (info, registers) = tarn_rt::syscall::load(label, words, caps);
    let reply =
        tarn_rt::call(endpoint, info, registers).map_err(|e| alloc::format!("call: {e:?}"))?;
    let mut out = [0u64; sched_protocol::MAX_WORDS];
    let length = reply.words(&mut out).min(sched_protocol::MAX_WORDS);
    let mut scratch = [0u8; sched_protocol::MAX_WORDS * 8];
    sched_protocol::decode::<SchedReply>(&out[..length], &mut scratch)
        .map(shown)
        .ok_or_else(|| String::from("undecodable reply"))
}

fn request(endpoint: u64, request: &SchedRequest, caps: &[u64]) -> Result<String, String> {
    let mut words = [0u64; sched_protocol::MAX_WORDS];
    let count =
        sched_protocol::encode(request, &mut words).ok_or_else(|| String::from("encode"))?;
    ask(endpoint, sched_protocol::LABEL, &words[..count], caps)
}

fn server_process(env: &mut Env) -> Outcome {
    let (Some(first), Some(elf)) = (env.cpu_caps, env.sched_server_elf) else {
        return Ok(Pass::Skipped(
            "no Cpu capabilities or no sched-server module",
        ));
    };
    // The server gets the last CPU (its capability derived from the suite's,
    // so revoking the suite's takes the CPU back) and a request endpoint.
    let endpoint = env.endpoint()?;
    let caps = [tarn_rt::CapGrant {
        source: endpoint,
        dest: 9,
        rights: Rights::READ,
        badge: 0,
    }];
    let cpu = env.cpus - 1;
    let (memory, phys) = env
        .res
        .create_untyped(21)
        .map_err(|e| alloc::format!("untyped: {e:?}"))?;
    let untyped = [tarn_rt::UntypedGrant {
        cptr: memory,
        phys,
        size_bits: 21,
    }];
    let config = tarn_rt::ProcessConfig {
        elf,
        caps: &caps,
        untyped: &untyped,
        cmdline: "",
        cpu_count: 1,
        cpu_caps: Some(first + cpu),
        ..tarn_rt::ProcessConfig::default()
    };
    let process = tarn_rt::spawn_process(&mut env.res, &config)
        .map_err(|e| alloc::format!("spawn: {e:?}"))?;
    let client = env.copy(endpoint, Rights::WRITE.union(Rights::GRANT))?;
    env.wait_state(process.tcb, ThreadState::BlockedOnReceive)?;
    // Garbage and foreign labels are refused, the server stays up.
    expect!(
        ask(client, sched_protocol::LABEL, &[u64::MAX; 3], &[])?,
        shown(SchedReply::Error(SchedError::Malformed))
    );
    expect!(
        ask(client, 0x1234, &[], &[])?,
        shown(SchedReply::Error(SchedError::Malformed))
    );
    // Invalid parameters are refused with one line naming the key, and
    // nothing changes.
    let weight0 = SchedRequest::SetDomainParams {
        domain: 1,
        params: "weight=512 cap=0 weight=0",
    };
    expect!(
        request(client, &weight0, &[])?,
        shown(SchedReply::Refused("weight: given twice"))
    );
    let weight0 = SchedRequest::SetDomainParams {
        domain: 1,
        params: "cap=10 weight=0",
    };
    expect!(
        request(client, &weight0, &[])?,
        shown(SchedReply::Refused("weight: 0 is outside 1..=65535"))
    );
    let sedf = SchedRequest::SetDomainParams {
        domain: 1,
        params: "period=10 slice=5",
    };
    expect!(
        request(client, &sedf, &[])?,
        shown(SchedReply::Refused(
            "period: unknown parameter (known: weight, cap, group)"
        ))
    );
    expect!(
        request(client, &SchedRequest::GetDomainParams { domain: 1 }, &[])?,
        shown(SchedReply::Values("weight=256 cap=0 group=0"))
    );
    expect!(
        request(client, &SchedRequest::Describe, &[])?,
        shown(SchedReply::Policy {
            name: "credit",
            domain_params: 3,
            pool_params: 2
        })
    );
    expect!(
        request(
            client,
            &SchedRequest::DescribeParam {
                pool: true,
                index: 2
            },
            &[]
        )?,
        shown(SchedReply::Error(SchedError::NoSuchParam))
    );
    let add = SchedRequest::AddThread {
        thread_id: 5,
        domain: 1,
    };
    expect!(
        request(client, &add, &[])?,
        shown(SchedReply::Error(SchedError::NoThreadCapability))
    );
    // A thread handed over runs on the server's CPU, under its policy.
    let shared = Shared::new();
    let counter_shared = shared.clone();
    let thread = env.spawn(
        ThreadOptions {
            cpu: Some(cpu),
            start: false,
            ..Default::default()
        },
        move || {
            while counter_shared.get(1) == 0 {
                counter_shared.bump(0);
            }
        },
    )?;
    expect!(
        request(
            client,
            &SchedRequest::SetDomainParams {
                domain: 1,
                params: "weight=512",
            },
            &[]
        )?,
        shown(SchedReply::Ok)
    );
    expect!(request(client, &add, &[thread.tcb])?, shown(SchedReply::Ok));
    let again = SchedRequest::AddThread {
        thread_id: 5,
        domain: 1,
    };
    let other = env.copy(thread.tcb, Rights::ALL)?;
    expect!(
        request(client, &again, &[other])?,
        shown(SchedReply::Error(SchedError::BadThreadId))
    );
    expect!(invoke::tcb_resume(thread.tcb), Ok(()));
    env.wait_until("the handed-over thread to run", || shared.get(0) > 0)?;
    let time = request(client, &SchedRequest::QueryThread { thread_id: 5 }, &[])?;
    ensure!(
        time.starts_with("ThreadTime") && time != shown(SchedReply::ThreadTime { ran_ns: 0 }),
        "query: no run time reported: {time}"
    );
    expect!(
        request(client, &SchedRequest::QueryThread { thread_id: 6 }, &[])?,
        shown(SchedReply::Error(SchedError::UnknownThread))
    );
    expect!(
        request(client, &SchedRequest::RemoveThread { thread_id: 5 }, &[])?,
        shown(SchedReply::Ok)
    );
    shared.set(1, 1);
    let _ = invoke::tcb_suspend(thread.tcb);
    // Take the CPU back: revoking the suite's capability unbinds it.
    let _ = invoke::tcb_suspend(process.tcb);
    expect!(
        invoke::cnode_revoke(tarn_rt::layout::slot::ROOT_CNODE, first + cpu),
        Ok(())
    );
    let (_, _, bound) = invoke::cpu_info(first + cpu).map_err(|e| alloc::format!("{e:?}"))?;
    expect!(bound, false);
    Ok(Pass::Ok)
}

/// How long the guest of [`moved_timeout`] may run (its `VcpuRun` timeout).
const GUEST_TIMEOUT_NS: u64 = 100_000_000;
/// The timed wait on the other CPU: it begins before the guest's timeout and
/// must end after it.
const WAIT_TIMEOUT_NS: u64 = 300_000_000;
/// How late the timed wait may end (timer delivery under emulation).
const WAIT_SLACK_NS: u64 = 200_000_000;

/// The kernel's clock.
fn now_ns() -> Result<u64, String> {
    invoke::machine_times(slot::MACHINE)
        .map(|times| times.now_ns)
        .ctx("read the clock")
}

/// Maps a page holding a real-mode guest that spins at 0x8000 (`jmp $`)
/// into the GuestSpace `space`; returns the guest's initial register file.
pub(crate) fn spinning_guest(env: &mut Env, space: u64) -> Result<RegisterPage, String> {
    real_mode_guest(env, space, &[0xEB, 0xFE])
}

/// Maps a page holding the real-mode guest `code` at 0x8000 into the
/// GuestSpace `space`; returns the guest's initial register file.
pub(crate) fn real_mode_guest(
    env: &mut Env,
    space: u64,
    code: &[u8],
) -> Result<RegisterPage, String> {
    const LOAD: u64 = 0x8000;
    let frame = env.frame()?;
    tarn_rt::process::fill_frame(&env.res, frame, |bytes| {
        bytes[..code.len()].copy_from_slice(code);
    })
    .ctx("fill the guest page")?;
    invoke::frame_map(
        frame,
        space,
        LOAD,
        Rights::READ.union(Rights::WRITE).union(Rights::EXECUTE),
    )
    .ctx("map the guest page")?;
    let mut page = RegisterPage::new(&mut env.res).ctx("the register page")?;
    let registers = page.registers();
    registers[Reg::Rip as usize] = LOAD;
    registers[Reg::Rsp as usize] = LOAD;
    registers[Reg::Rflags as usize] = 2;
    registers[Reg::Cr0 as usize] = 1 << 4; // ET
    Ok(page)
}

/// `VcpuRun`'s load mask: after an I/O exit the thread sets RIP past the
/// `out` and changes RBX in its register file, and runs again loading RIP
/// alone. The guest must go on at the next instruction (RIP was loaded)
/// and keep its own RBX (RBX was not); a load-mask bit past the register
/// file is `InvalidArgument`. (Without the mask the guest would run the
/// `out` again; loading the whole file would give it the changed RBX.)
fn load_mask(env: &mut Env) -> Outcome {
    const PORT: u64 = 0x510;
    let space = env.create(ObjectType::GuestSpace, 15)?;
    // out dx, al; hlt
    let mut page = real_mode_guest(env, space, &[0xEE, 0xF4])?;
    page.registers()[Reg::Rdx as usize] = PORT;
    page.registers()[Reg::Rbx as usize] = 0x1234;
    let frame = page.frame();
    let vcpu = env.create(ObjectType::Vcpu, 0)?;
    // Words: 0 = done; 1, 2 = the first exit's kind + 1000 (or error + 1)
    // and next RIP; 3, 4, 5 = the second's kind, RBX and RIP; 6 = the third
    // call's error + 1 (0 if it succeeded).
    let shared = Shared::new();
    let out = shared.clone();
    let guest = env.spawn(
        ThreadOptions {
            cpu: Some(env.cpus - 1),
            start: false,
            ..Default::default()
        },
        move || {
            let mut page = page;
            let result = |r: Result<tarn_rt::invoke::VcpuExit, Error>| match r {
                Ok(exit) => (exit.kind_raw + 1000, exit.next_rip),
                Err(error) => (error as u64 + 1, 0),
            };
            if real_mode_segments(vcpu).is_ok() {
                let args = VcpuRunArgs {
                    load: true,
                    timeout_ns: GUEST_TIMEOUT_NS,
                    ..VcpuRunArgs::default()
                };
                let (kind, next_rip) = result(invoke::vcpu_run(vcpu, &args, &mut page));
                out.set(1, kind);
                out.set(2, next_rip);
                page.registers()[Reg::Rip as usize] = next_rip;
                page.registers()[Reg::Rbx as usize] = 0xBAD;
                let args = VcpuRunArgs {
                    load_mask: 1 << Reg::Rip as u32,
                    timeout_ns: GUEST_TIMEOUT_NS,
                    ..VcpuRunArgs::default()
                };
                let (kind, _) = result(invoke::vcpu_run(vcpu, &args, &mut page));
                out.set(3, kind);
                out.set(4, page.registers()[Reg::Rbx as usize]);
                out.set(5, page.registers()[Reg::Rip as usize]);
                let args = VcpuRunArgs {
                    flags: 1 << 55,
                    timeout_ns: GUEST_TIMEOUT_NS,
                    ..VcpuRunArgs::default()
                };
                let third = invoke::vcpu_run(vcpu, &args, &mut page);
                out.set(6, third.err().map_or(0, |e| e as u64 + 1));
            }
            out.set(0, 1);
        },
    )?;
    match invoke::vcpu_bind(vcpu, guest.tcb, space, frame) {
        Err(Error::NotSupported) => return Ok(Pass::Skipped("no SVM or VMX")),
        other => expect!(other, Ok(())),
    }
    expect!(invoke::tcb_resume(guest.tcb), Ok(()));
    env.join(&guest)?;
    expect!(shared.get(0), 1);
    expect!(shared.get(1), Exit::Io as u64 + 1000);
    expect!(shared.get(2), 0x8001);
    expect!(shared.get(3), Exit::Hlt as u64 + 1000);
    expect!(shared.get(4), 0x1234);
    expect!(shared.get(5), 0x8001);
    expect!(shared.get(6), Error::InvalidArgument as u64 + 1);
    let _ = invoke::cnode_delete(slot::ROOT_CNODE, vcpu);
    Ok(Pass::Ok)
}

/// A guest's debug registers are its own: guest A writes DR0 and halts;
/// guest B then runs on the same CPU and reads DR0 (0: nothing of A's);
/// then A runs again and reads DR0 back (its own value, although B ran on
/// the CPU in between). Without the kernel's switch of DR0-DR3 B would
/// read A's breakpoint address; the hardware does not switch them.
fn debug_registers(env: &mut Env) -> Outcome {
    const DR0: u64 = 0x1234_5678;
    // A: mov eax, DR0; mov dr0, eax; hlt; mov ecx, dr0; hlt
    let a_code = [
        0x66, 0xB8, 0x78, 0x56, 0x34, 0x12, 0x0F, 0x23, 0xC0, 0xF4, 0x0F, 0x21, 0xC1, 0xF4,
    ];
    // B: mov ebx, dr0; hlt
    let b_code = [0x0F, 0x21, 0xC3, 0xF4];
    let cpu = Some(env.cpus - 1);
    let a_space = env.create(ObjectType::GuestSpace, 15)?;
    let mut a_page = real_mode_guest(env, a_space, &a_code)?;
    a_page.registers()[Reg::Rcx as usize] = 0xFFFF;
    let b_space = env.create(ObjectType::GuestSpace, 15)?;
    let mut b_page = real_mode_guest(env, b_space, &b_code)?;
    b_page.registers()[Reg::Rbx as usize] = 0xFFFF;
    let (a_frame, b_frame) = (a_page.frame(), b_page.frame());
    let a_vcpu = env.create(ObjectType::Vcpu, 0)?;
    let b_vcpu = env.create(ObjectType::Vcpu, 0)?;
    let go_on = env.notification()?;
    // Words: 0 = A's first exit kind + 1000 (or error + 1), 1 = A done
    // with its first run, 2 = A's second exit, 3 = A's RCX, 4 = B's exit,
    // 5 = B's RBX.
    let shared = Shared::new();
    let run = |vcpu, page: &mut RegisterPage, load| {
        let args = VcpuRunArgs {
            load,
            load_mask: if load { 0 } else { 1 << Reg::Rip as u32 },
            timeout_ns: GUEST_TIMEOUT_NS,
            ..VcpuRunArgs::default()
        };
        match invoke::vcpu_run(vcpu, &args, page) {
            Ok(exit) => (exit.kind_raw + 1000, exit.next_rip),
            Err(error) => (error as u64 + 1, 0),
        }
    };
    let out = shared.clone();
    let a = env.spawn(
        ThreadOptions {
            cpu,
            start: false,
            ..Default::default()
        },
        move || {
            let mut page = a_page;
            if real_mode_segments(a_vcpu).is_ok() {
                let (kind, next_rip) = run(a_vcpu, &mut page, true);
                out.set(0, kind);
                out.set(1, 1);
                let _ = tarn_rt::syscall::wait(go_on, 0);
                page.registers()[Reg::Rip as usize] = next_rip;
                let (kind, _) = run(a_vcpu, &mut page, false);
                out.set(2, kind);
                out.set(3, page.registers()[Reg::Rcx as usize]);
            }
        },
    )?;
    let out = shared.clone();
    let b = env.spawn(
        ThreadOptions {
            cpu,
            start: false,
            ..Default::default()
        },
        move || {
            let mut page = b_page;
            if real_mode_segments(b_vcpu).is_ok() {
                let (kind, _) = run(b_vcpu, &mut page, true);
                out.set(4, kind);
                out.set(5, page.registers()[Reg::Rbx as usize]);
            }
        },
    )?;
    match invoke::vcpu_bind(a_vcpu, a.tcb, a_space, a_frame) {
        Err(Error::NotSupported) => return Ok(Pass::Skipped("no SVM or VMX")),
        other => expect!(other, Ok(())),
    }
    expect!(invoke::vcpu_bind(b_vcpu, b.tcb, b_space, b_frame), Ok(()));
    expect!(invoke::tcb_resume(a.tcb), Ok(()));
    env.wait_until("guest A's first run", || shared.get(1) == 1)?;
    expect!(shared.get(0), Exit::Hlt as u64 + 1000);
    expect!(invoke::tcb_resume(b.tcb), Ok(()));
    env.join(&b)?;
    expect!(shared.get(4), Exit::Hlt as u64 + 1000);
    expect!(shared.get(5), 0);
    expect!(tarn_rt::syscall::signal(go_on), Ok(()));
    env.join(&a)?;
    expect!(shared.get(2), Exit::Hlt as u64 + 1000);
    expect!(shared.get(3), DR0);
    for vcpu in [a_vcpu, b_vcpu] {
        let _ = invoke::cnode_delete(slot::ROOT_CNODE, vcpu);
    }
    Ok(Pass::Ok)
}

/// Gives `vcpu` real-mode segments (called by the thread it is bound to:
/// only that thread may).
pub(crate) fn real_mode_segments(vcpu: u64) -> Result<(), Error> {
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
        invoke::vcpu_write_segment(vcpu, segment, 0, 0, 0xFFFF, attributes)?;
    }
    Ok(())
}

/// A timeout is cancelled from the list that holds it, not from its
/// thread's current CPU. A dispatched vCPU thread enters its guest on CPU 0
/// with a `VcpuRun` timeout (which goes on CPU 0's list), is preempted and
/// dispatched onto CPU 1 (its CPU changes, the timeout stays on CPU 0's
/// list), and the timeout expires there while the guest runs on CPU 1. A
/// timed wait on CPU 1, begun before, must still end on time with
/// `Timeout`, the guest must see its own timeout, and every timeout list
/// must stay well formed. (Cancelling through the thread's current CPU
/// emptied CPU 1's list instead: the wait there never ended.) Since a
/// `VcpuRun` deadline is kept in its Vcpu, on no list, the guest's timeout
/// no longer sits on CPU 0's list: the test now checks that a vCPU thread
/// moved between CPUs still gets its own timeout and leaves the other
/// CPU's timed wait alone, and no longer reaches a cancel from another
/// CPU's list.
fn moved_timeout(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    if env.cpus < 2 {
        return Ok(Pass::Skipped("needs two CPUs"));
    }
    let scheduler = env.create(ObjectType::Scheduler, 0)?;
    let mut cpu0 = Bound::to(env, scheduler, 0)?;
    let _cpu1 = Bound::to(env, scheduler, 1)?;
    // Shared words: 0 = the vCPU thread is about to enter its guest, 1 = its
    // exit kind + 1 (or error code + 1000), 2 = the waiter's result code + 1,
    // 3 = when its wait began, 4 = when it ended.
    let shared = Shared::new();
    let space = env.create(ObjectType::GuestSpace, 15)?;
    let page = spinning_guest(env, space)?;
    let frame = page.frame();
    let vcpu = env.create(ObjectType::Vcpu, 0)?;
    let guest_shared = shared.clone();
    let guest = env.spawn(
        ThreadOptions {
            cpu: Some(0),
            start: false,
            ..Default::default()
        },
        move || {
            let mut page = page;
            let args = VcpuRunArgs {
                load: true,
                timeout_ns: GUEST_TIMEOUT_NS,
                ..VcpuRunArgs::default()
            };
            let result = real_mode_segments(vcpu).and_then(|()| {
                guest_shared.set(0, 1);
                invoke::vcpu_run(vcpu, &args, &mut page)
            });
            guest_shared.set(
                1,
                match result {
                    Ok(exit) => exit.kind_raw + 1,
                    Err(error) => error as u64 + 1000,
                },
            );
        },
    )?;
    invoke::vcpu_bind(vcpu, guest.tcb, space, frame).ctx("bind the vcpu")?;
    expect!(invoke::scheduler_adopt(scheduler, guest.tcb, 31), Ok(()));
    expect!(invoke::tcb_resume(guest.tcb), Ok(()));
    cpu0.expect(env, EventKind::Woken, 31)?;
    // The timed wait on CPU 1 (a system thread there).
    let idle = env.notification()?;
    let waiter_shared = shared.clone();
    let waiter = env.spawn(
        ThreadOptions {
            cpu: Some(1),
            ..Default::default()
        },
        move || {
            waiter_shared.set(3, now_ns().unwrap_or(0));
            let result = tarn_rt::wait(idle, WAIT_TIMEOUT_NS);
            waiter_shared.set(4, now_ns().unwrap_or(0));
            waiter_shared.set(2, crate::harness::code(&result) + 1);
        },
    )?;
    env.wait_state(waiter.tcb, ThreadState::BlockedOnNotification)?;
    // The guest enters on CPU 0 (which runs it while the suite sleeps).
    expect!(
        invoke::scheduler_dispatch(scheduler, 0, guest.tcb, 1_000_000_000),
        Ok(())
    );
    env.wait_until("the vcpu thread to run", || shared.get(0) != 0)?;
    env.sleep_ns(5_000_000);
    // From here until the guest's timeout has passed the suite takes no
    // timeout on CPU 0: the guest's stays the first on that list.
    let preempted_at = now_ns()?;
    expect!(invoke::scheduler_preempt(scheduler, 0), Ok(()));
    cpu0.expect(env, EventKind::Preempted, 31)?;
    ensure!(
        shared.get(1) == 0,
        "the guest exited early: {}",
        shared.get(1)
    );
    let ran_on_cpu0 = invoke::scheduler_query_thread(scheduler, guest.tcb)
        .ctx("query the vcpu thread")?
        .ran_ns;
    expect!(
        invoke::scheduler_dispatch(scheduler, 1, guest.tcb, 1_000_000_000),
        Ok(())
    );
    let guest_deadline = preempted_at + GUEST_TIMEOUT_NS;
    loop {
        let ran = invoke::scheduler_query_thread(scheduler, guest.tcb)
            .ctx("query the vcpu thread")?
            .ran_ns;
        let now = now_ns()?;
        if ran > ran_on_cpu0 {
            // Its guest runs on CPU 1 before its timeout (on CPU 0) expired.
            ensure!(
                now < guest_deadline && shared.get(1) == 0,
                "CPU 1 took the vcpu thread too late for the test to mean anything"
            );
            break;
        }
        ensure!(now < guest_deadline, "CPU 1 never ran the vcpu thread");
        tarn_rt::yield_now();
    }
    while now_ns()? < guest_deadline + 1_000_000 {
        tarn_rt::yield_now();
    }
    // The wait on CPU 1 ends with its own timeout, on time.
    let waited = env.wait_until("the timed wait on CPU 1 to time out", || shared.get(2) != 0);
    let invariants = invoke::machine_check_invariants(slot::MACHINE).ctx("check invariants")?;
    if waited.is_err() {
        let _ = tarn_rt::signal(idle);
        return Err(alloc::format!(
            "the {WAIT_TIMEOUT_NS} ns timed wait on CPU 1 never ended (kernel invariants {})",
            if invariants.consistent {
                "hold"
            } else {
                "broken"
            }
        ));
    }
    expect!(
        crate::harness::decode(shared.get(2) - 1),
        Err(Error::Timeout)
    );
    let (began, ended) = (shared.get(3), shared.get(4));
    ensure!(
        ended >= guest_deadline,
        "the wait on CPU 1 ended before the guest's timeout, proving nothing"
    );
    ensure!(
        ended - began >= WAIT_TIMEOUT_NS && ended - began < WAIT_TIMEOUT_NS + WAIT_SLACK_NS,
        "a {WAIT_TIMEOUT_NS} ns timed wait took {} ns",
        ended - began
    );
    // The guest saw its own timeout on CPU 1.
    env.wait_until("the guest to exit", || shared.get(1) != 0)?;
    expect!(shared.get(1), Exit::Timeout as u64 + 1);
    ensure!(invariants.consistent, "the kernel's invariants do not hold");
    let _ = invoke::scheduler_release(scheduler, guest.tcb);
    let _ = invoke::tcb_suspend(guest.tcb);
    Ok(Pass::Ok)
}

/// A timer interrupt that arrives while the kernel leaves a guest after an
/// exit of another kind (an I/O exit here) is taken at the world switch's
/// STGI (VMX: its sti/nop/cli), before the exit is decoded: it must still
/// count as the CPU's timer (timeouts expire, slices end, the one-shot
/// timer is armed again). On the last CPU a VMM thread runs a guest that
/// exits on `out` at once, each `VcpuRun` with a deadline a few
/// microseconds away (a timer interrupt every few exits, at a point of the
/// exit path that moves a little each time), while a thread beside it
/// sleeps 1 ms, 20 times: every sleep must end (within 0.5 s: each waits
/// at most a system slice behind the VMM thread). When the exit path took
/// such an interrupt as nothing, the CPU believed its timer still armed
/// for a time already past and never armed it again: the sleeper never
/// woke, and a dispatched guest ran on past its budget until some other
/// interrupt came (a Linux guest took a pool's CPU for seconds that way).
fn exits_keep_timer(env: &mut Env) -> Outcome {
    const SLEEPS: u64 = 20;
    let cpu = env.cpus - 1;
    let space = env.create(ObjectType::GuestSpace, 15)?;
    // 0x8000: out dx, al; jmp 0x8000
    let mut page = real_mode_guest(env, space, &[0xEE, 0xEB, 0xFD])?;
    page.registers()[Reg::Rdx as usize] = 0x510;
    let frame = page.frame();
    let vcpu = env.create(ObjectType::Vcpu, 0)?;
    // Words: 0 = stop, 1 = exits, 2 = the first VcpuRun error + 1,
    // 3 = sleeps done.
    let shared = Shared::new();
    let vm_shared = shared.clone();
    let vm = env.spawn(
        ThreadOptions {
            cpu: Some(cpu),
            start: false,
            ..Default::default()
        },
        move || {
            let mut page = page;
            if let Err(e) = real_mode_segments(vcpu) {
                vm_shared.set(2, e as u64 + 1);
                return;
            }
            let mut exits = 0u64;
            while vm_shared.get(0) == 0 {
                // The guest runs its `out` again at each entry.
                let args = VcpuRunArgs {
                    load: exits == 0,
                    timeout_ns: 3_000 + exits % 64 * 17,
                    ..VcpuRunArgs::default()
                };
                if let Err(e) = invoke::vcpu_run(vcpu, &args, &mut page) {
                    vm_shared.set(2, e as u64 + 1);
                    return;
                }
                exits += 1;
                vm_shared.set(1, exits);
            }
        },
    )?;
    match invoke::vcpu_bind(vcpu, vm.tcb, space, frame) {
        Err(Error::NotSupported) => return Ok(Pass::Skipped("no SVM or VMX")),
        other => expect!(other, Ok(())),
    }
    let sleeper_shared = shared.clone();
    let pause = env.notification()?;
    let sleeper = env.spawn(
        ThreadOptions {
            cpu: Some(cpu),
            ..Default::default()
        },
        move || {
            for done in 1..=SLEEPS {
                let _ = tarn_rt::sleep(pause, 1_000_000);
                sleeper_shared.set(3, done);
            }
        },
    )?;
    expect!(invoke::tcb_resume(vm.tcb), Ok(()));
    // Not `wait_until`'s 5 s: the guest's exits make virtual time slow to
    // emulate.
    let start = now_ns()?;
    while shared.get(3) != SLEEPS && shared.get(2) == 0 && now_ns()? - start < 500_000_000 {
        env.sleep_ns(5_000_000);
    }
    shared.set(0, 1);
    let (exits, sleeps) = (shared.get(1), shared.get(3));
    if sleeps != SLEEPS && shared.get(2) == 0 {
        // The sleeper never woke: the VMM thread still runs (it sees the
        // stop word); if it does not stop either, the suite cannot go on.
        let _ = invoke::tcb_suspend(sleeper.tcb);
        let _ = invoke::tcb_suspend(vm.tcb);
        return Err(alloc::format!(
            "{sleeps} of {SLEEPS} 1 ms sleeps ended beside a guest making exits ({exits} exits): the CPU lost its timer"
        ));
    }
    expect!(shared.get(2), 0);
    env.join(&vm)?;
    env.join(&sleeper)?;
    ensure!(exits > 0, "the guest made no exits");
    let _ = invoke::cnode_delete(slot::ROOT_CNODE, vcpu);
    Ok(Pass::Ok)
}

/// A real-mode guest that counts on a port: `out dx, al; inc al; jmp` back
/// to the `out`. Each run exits at the `out` with AL one more than the last.
const COUNTING_GUEST: [u8; 5] = [0xEE, 0xFE, 0xC0, 0xEB, 0xFB];

/// One `VcpuRun` of a [`COUNTING_GUEST`] (the whole register file loaded
/// if `first`, else only RIP, set past the last `out`): `Ok` if it exited
/// at the `out` to `port` with AL = `value`, else what it did instead.
fn count_once(
    vcpu: u64,
    page: &mut RegisterPage,
    first: bool,
    port: u64,
    value: u64,
) -> Result<(), String> {
    let args = VcpuRunArgs {
        load: first,
        load_mask: if first { 0 } else { 1 << Reg::Rip as u32 },
        timeout_ns: GUEST_TIMEOUT_NS,
        ..VcpuRunArgs::default()
    };
    match invoke::vcpu_run(vcpu, &args, page) {
        Ok(exit) if exit.kind_raw == Exit::Io as u64 && exit.fields[0] == port => {
            if exit.fields[3] != value {
                return Err(alloc::format!(
                    "the guest on port {port:#x} wrote {:#x}, not {value:#x}",
                    exit.fields[3]
                ));
            }
            page.registers()[Reg::Rip as usize] = exit.next_rip;
            Ok(())
        }
        Ok(exit) => Err(alloc::format!(
            "the guest on port {port:#x} (expecting {value:#x}) exited with kind {} fields {:x?}",
            exit.kind_raw,
            exit.fields
        )),
        Err(error) => Err(alloc::format!("VcpuRun failed: {error:?}")),
    }
}

/// A [`COUNTING_GUEST`] in a fresh GuestSpace, writing to `port` and
/// starting from AL = `start`: (its register page, its GuestSpace, a
/// fresh Vcpu for it).
fn counting_guest(
    env: &mut Env,
    port: u64,
    start: u64,
) -> Result<(RegisterPage, u64, u64), String> {
    let space = env.create(ObjectType::GuestSpace, 15)?;
    let mut page = real_mode_guest(env, space, &COUNTING_GUEST)?;
    page.registers()[Reg::Rdx as usize] = port;
    page.registers()[Reg::Rax as usize] = start;
    let vcpu = env.create(ObjectType::Vcpu, 0)?;
    Ok((page, space, vcpu))
}

/// A vCPU thread that moves to the other CPU after each exit
/// (`TcbSetAffinity` on itself) keeps running its guest: the counting guest
/// exits with 1, 2, 3, ... in turn, on whichever CPU each run happens, and
/// the kernel's invariants hold afterwards. (VMX keeps a VMCS current on
/// the CPU it last ran on: each move makes the new CPU have the old one
/// clear it before loading it; loading it while the old CPU still has it,
/// or launching it as if never launched, fails the entry, `InvalidState`.)
fn moves_between_cpus(env: &mut Env) -> Outcome {
    const PORT: u64 = 0x530;
    const ROUNDS: u64 = 12;
    if env.cpus < 2 {
        return Ok(Pass::Skipped("one CPU"));
    }
    let cpus = env.cpus;
    let (page, space, vcpu) = counting_guest(env, PORT, 1)?;
    let frame = page.frame();
    // Words: 0 = the thread's TCB capability (set before it starts), 1 =
    // rounds that went as expected.
    let shared = Shared::new();
    let failure = alloc::sync::Arc::new(spin::Mutex::new(None::<String>));
    let (out, failed) = (shared.clone(), failure.clone());
    let guest = env.spawn(
        ThreadOptions {
            cpu: Some(cpus - 1),
            start: false,
            ..Default::default()
        },
        move || {
            let mut page = page;
            let me = out.get(0);
            let result = real_mode_segments(vcpu)
                .map_err(|e| alloc::format!("segments: {e:?}"))
                .and_then(|()| {
                    for round in 0..ROUNDS {
                        count_once(vcpu, &mut page, round == 0, PORT, round + 1)?;
                        out.bump(1);
                        let next = if round % 2 == 0 { cpus - 2 } else { cpus - 1 };
                        invoke::tcb_set_affinity(me, next)
                            .map_err(|e| alloc::format!("move to CPU {next}: {e:?}"))?;
                    }
                    Ok(())
                });
            if let Err(why) = result {
                *failed.lock() = Some(why);
            }
        },
    )?;
    match invoke::vcpu_bind(vcpu, guest.tcb, space, frame) {
        Err(Error::NotSupported) => return Ok(Pass::Skipped("no SVM or VMX")),
        other => expect!(other, Ok(())),
    }
    shared.set(0, guest.tcb);
    expect!(invoke::tcb_resume(guest.tcb), Ok(()));
    env.join(&guest)?;
    if let Some(why) = failure.lock().take() {
        return Err(alloc::format!("round {}: {why}", shared.get(1) + 1));
    }
    expect!(shared.get(1), ROUNDS);
    invariants_hold("after the moves")?;
    let _ = invoke::cnode_delete(slot::ROOT_CNODE, vcpu);
    Ok(Pass::Ok)
}

/// Two guests alternate on one CPU, one exit each in turn (their threads
/// hand over through two notifications): each counting guest goes on where
/// it left off, on its own port from its own start, and the invariants
/// hold. (Under VMX each switch clears the VMCS current on the CPU before
/// the other is loaded: keeping both active, or taking a VMCS loaded anew
/// as launched, fails an entry.)
fn alternate_on_one_cpu(env: &mut Env) -> Outcome {
    const ROUNDS: u64 = 8;
    let cpu = Some(env.cpus - 1);
    let guests = [(0x540, 0x10), (0x550, 0x80)];
    let gates = [env.notification()?, env.notification()?];
    // Words 0 and 1: each thread's rounds that went as expected.
    let shared = Shared::new();
    let failure = alloc::sync::Arc::new(spin::Mutex::new(None::<String>));
    let mut threads = alloc::vec::Vec::new();
    for (index, (port, start)) in guests.into_iter().enumerate() {
        let (page, space, vcpu) = counting_guest(env, port, start)?;
        let frame = page.frame();
        let (out, failed) = (shared.clone(), failure.clone());
        let (mine, next) = (gates[index], gates[1 - index]);
        let thread = env.spawn(
            ThreadOptions {
                cpu,
                start: false,
                ..Default::default()
            },
            move || {
                let mut page = page;
                let mut result =
                    real_mode_segments(vcpu).map_err(|e| alloc::format!("segments: {e:?}"));
                // After a failure the thread still hands over, so that
                // the other one finishes too.
                for round in 0..ROUNDS {
                    let _ = tarn_rt::syscall::wait(mine, 0);
                    if result.is_ok() {
                        result = count_once(vcpu, &mut page, round == 0, port, start + round);
                    }
                    if result.is_ok() {
                        out.bump(index);
                    }
                    let _ = tarn_rt::syscall::signal(next);
                }
                if let Err(why) = result {
                    failed.lock().get_or_insert(why);
                }
            },
        )?;
        match invoke::vcpu_bind(vcpu, thread.tcb, space, frame) {
            Err(Error::NotSupported) => return Ok(Pass::Skipped("no SVM or VMX")),
            other => expect!(other, Ok(())),
        }
        expect!(invoke::tcb_resume(thread.tcb), Ok(()));
        threads.push((thread, vcpu));
    }
    expect!(tarn_rt::syscall::signal(gates[0]), Ok(()));
    for (thread, _) in &threads {
        env.join(thread)?;
    }
    if let Some(why) = failure.lock().take() {
        return Err(why);
    }
    expect!(shared.get(0), ROUNDS);
    expect!(shared.get(1), ROUNDS);
    invariants_hold("after the guests alternated")?;
    for (_, vcpu) in threads {
        let _ = invoke::cnode_delete(slot::ROOT_CNODE, vcpu);
    }
    Ok(Pass::Ok)
}

/// Fails unless the kernel's invariant check holds now.
fn invariants_hold(when: &str) -> Result<(), String> {
    let report = invoke::machine_check_invariants(slot::MACHINE).ctx("check invariants")?;
    ensure!(
        report.consistent,
        "the kernel's invariants do not hold {when} (its console line names the first broken one)"
    );
    Ok(())
}
