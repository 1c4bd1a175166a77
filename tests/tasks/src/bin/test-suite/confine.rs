//! Confinement of threads to a Scheduler (`TcbConfine`), the rule that
//! keeps a policy server's threads on its pool's CPUs: affinity outside the
//! Scheduler's CPUs is refused, threads a confined thread makes are
//! confined likewise, a thread whose Scheduler loses its last CPU runs only
//! in idle time (and moves to a CPU still bound when one is unbound), and
//! the watchdog stops a confined thread that runs too long without
//! blocking or dispatching.

use crate::harness::{code, decode, Check, Env, Outcome, Pass, Shared, Test};
use crate::sched::Bound;
use crate::{ensure, expect, expect_err};
use alloc::string::String;
use alloc::sync::Arc;
use tarn_rt::abi::fault::WATCHDOG;
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::sched::WATCHDOG_NS;
use tarn_rt::abi::{Error, ObjectType, Rights};
use tarn_rt::invoke;
use tarn_rt::layout::slot;
use tarn_rt::{Thread, ThreadOptions};

pub const TESTS: &[Test] = &[
    ("confine_affinity_adoption_and_destruction", rules),
    ("confine_inherited_by_new_threads", inherited),
    ("confine_unbound_cpu_moves_then_idle_class", unbound),
    ("confine_watchdog_stops_a_spinning_thread", watchdog),
];

/// The suite's badge on watchdog faults.
const WATCHDOG_BADGE: u64 = 0xF2;

/// A thread that waits forever on a fresh notification (not started).
fn sleeper(env: &mut Env) -> Result<Thread, String> {
    let never = env.notification()?;
    env.spawn(
        ThreadOptions {
            cpu: Some(0),
            start: false,
            ..Default::default()
        },
        move || loop {
            let _ = tarn_rt::syscall::wait(never, 0);
        },
    )
}

/// A thread on `cpu` (not started) that counts in word 0 in short bursts,
/// napping between them (so it blocks often: no watchdog), until word 1 is
/// set.
fn napping_counter(
    env: &mut Env,
    cpu: u64,
    fault_endpoint: u64,
) -> Result<(Thread, Arc<Shared>), String> {
    let shared = Shared::new();
    let s = shared.clone();
    let nap = env.notification()?;
    let thread = env.spawn(
        ThreadOptions {
            cpu: Some(cpu),
            start: false,
            fault_endpoint,
            ..Default::default()
        },
        move || {
            while s.get(1) == 0 {
                for _ in 0..200 {
                    s.bump(0);
                }
                let _ = tarn_rt::sleep(nap, 50_000);
            }
        },
    )?;
    Ok((thread, shared))
}

/// The kernel's clock.
fn now_ns() -> Result<u64, String> {
    invoke::machine_times(slot::MACHINE)
        .map(|times| times.now_ns)
        .ctx("read the clock")
}

/// Keeps this CPU busy (never blocking) for `ns`.
fn busy(ns: u64) -> Result<(), String> {
    let until = now_ns()? + ns;
    while now_ns()? < until {}
    Ok(())
}

/// How long the suite keeps CPU 0 busy to see who else runs there: several
/// system slices (5 ms), so that a thread beside it in the system FIFO
/// would get turns.
const BUSY_NS: u64 = 30_000_000;

fn rules(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let bound = Bound::new(env, 0)?;
    let empty = env.create(ObjectType::Scheduler, 0)?;
    let thread = sleeper(env)?;
    let nap = env.notification()?;
    expect_err!(invoke::tcb_confine(thread.tcb, nap), Error::WrongType);
    expect!(invoke::tcb_confine(thread.tcb, bound.scheduler), Ok(()));
    // Never changed, never widened.
    expect_err!(
        invoke::tcb_confine(thread.tcb, bound.scheduler),
        Error::IllegalState
    );
    expect_err!(invoke::tcb_confine(thread.tcb, empty), Error::IllegalState);
    // Its Scheduler's CPU, and no other.
    expect!(invoke::tcb_set_affinity(thread.tcb, 0), Ok(()));
    if env.cpus > 1 {
        expect_err!(invoke::tcb_set_affinity(thread.tcb, 1), Error::NotOwned);
    }
    expect_err!(invoke::tcb_set_affinity(thread.tcb, 999), Error::OutOfRange);
    // No other Scheduler adopts it; its own does.
    expect_err!(
        invoke::scheduler_adopt(empty, thread.tcb, 1),
        Error::NotOwned
    );
    expect!(
        invoke::scheduler_adopt(bound.scheduler, thread.tcb, 1),
        Ok(())
    );
    expect!(
        invoke::scheduler_release(bound.scheduler, thread.tcb),
        Ok(())
    );
    // Confined to a Scheduler with no CPU: no CPU at all.
    let other = sleeper(env)?;
    expect!(invoke::tcb_confine(other.tcb, empty), Ok(()));
    expect_err!(invoke::tcb_set_affinity(other.tcb, 0), Error::NotOwned);
    // Its Scheduler destroyed, it runs nowhere: suspended for good.
    expect!(invoke::tcb_resume(other.tcb), Ok(()));
    env.wait_state(other.tcb, ThreadState::BlockedOnNotification)?;
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, empty), Ok(()));
    expect!(
        invoke::tcb_read_registers(other.tcb).map(|s| s.state()),
        Ok(Some(ThreadState::Inactive))
    );
    expect_err!(invoke::tcb_resume(other.tcb), Error::IllegalState);
    expect!(invoke::tcb_suspend(thread.tcb), Ok(()));
    Ok(Pass::Ok)
}

fn inherited(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let bound = Bound::new(env, 0)?;
    let other = env.create(ObjectType::Scheduler, 0)?;
    let untyped = env.untyped(12)?;
    let child = env.slot()?;
    let shared = Shared::new();
    let out = shared.clone();
    let maker = env.spawn(
        ThreadOptions {
            cpu: Some(0),
            start: false,
            ..Default::default()
        },
        move || {
            let made =
                invoke::untyped_retype(untyped, ObjectType::Tcb, 0, slot::ROOT_CNODE, child, 1);
            out.set(0, code(&made));
            // A confined thread confines nothing (not even its child).
            out.set(1, code(&invoke::tcb_confine(child, other)));
            out.set(2, 1);
        },
    )?;
    expect!(invoke::tcb_confine(maker.tcb, bound.scheduler), Ok(()));
    expect!(invoke::tcb_resume(maker.tcb), Ok(()));
    env.wait_until("the confined thread's retype", || shared.get(2) == 1)?;
    expect!(decode(shared.get(0)), Ok(()));
    expect!(decode(shared.get(1)), Err(Error::IllegalOperation));
    // The thread it made is confined to the same Scheduler.
    expect_err!(invoke::tcb_confine(child, other), Error::IllegalState);
    expect_err!(invoke::scheduler_adopt(other, child, 1), Error::NotOwned);
    expect!(invoke::tcb_set_affinity(child, 0), Ok(()));
    if env.cpus > 1 {
        expect_err!(invoke::tcb_set_affinity(child, 1), Error::NotOwned);
    }
    Ok(Pass::Ok)
}

fn unbound(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let bound = Bound::new(env, 0)?;
    // With a second CPU: the thread starts there, and when that CPU is
    // unbound it moves to CPU 0, the Scheduler's lowest CPU left.
    let second = if env.cpus > 1 {
        Some(Bound::to(env, bound.scheduler, 1)?)
    } else {
        None
    };
    let home = if second.is_some() { 1 } else { 0 };
    let (thread, shared) = napping_counter(env, home, 0)?;
    expect!(invoke::tcb_confine(thread.tcb, bound.scheduler), Ok(()));
    expect!(invoke::tcb_resume(thread.tcb), Ok(()));
    env.wait_until("the counter to run", || shared.get(0) > 0)?;
    drop(second);
    // On its Scheduler's CPU 0, a system thread beside the suite: it gets
    // turns while the suite keeps the CPU busy.
    let before = shared.get(0);
    busy(BUSY_NS)?;
    ensure!(
        shared.get(0) > before,
        "the confined thread did not run beside the suite on its CPU"
    );
    // Its Scheduler's last CPU goes: it runs only in CPU 0's idle time, so
    // not while the suite keeps the CPU busy (had it stayed on CPU 1, or
    // run as a plain system thread, it would count on)...
    expect!(
        invoke::scheduler_unbind_cpu(bound.scheduler, bound.cpu_cap),
        Ok(())
    );
    env.sleep_ns(1_000_000);
    let before = shared.get(0);
    busy(BUSY_NS)?;
    expect!(shared.get(0), before);
    // ...but while the suite sleeps.
    env.sleep_ns(BUSY_NS);
    ensure!(
        shared.get(0) > before,
        "the confined thread did not run in idle time"
    );
    // A CPU bound again: back beside the suite.
    let again = Bound::to(env, bound.scheduler, 0)?;
    let before = shared.get(0);
    busy(BUSY_NS)?;
    ensure!(
        shared.get(0) > before,
        "the confined thread did not run beside the suite once its Scheduler had a CPU again"
    );
    shared.set(1, 1);
    env.join(&thread)?;
    drop(again);
    Ok(Pass::Ok)
}

fn watchdog(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let bound = Bound::new(env, 0)?;
    let endpoint = env.endpoint()?;
    let badged = env.mint(endpoint, Rights::ALL, WATCHDOG_BADGE)?;
    // One that blocks every few microseconds runs on for longer than the
    // bound without being stopped: the watchdog counts from its last block.
    let (napper, naps) = napping_counter(env, 0, badged)?;
    expect!(invoke::tcb_confine(napper.tcb, bound.scheduler), Ok(()));
    expect!(invoke::tcb_resume(napper.tcb), Ok(()));
    env.sleep_ns(3 * WATCHDOG_NS);
    ensure!(naps.get(0) > 0, "the napping thread did not run");
    expect_err!(tarn_rt::nb_recv(endpoint), Error::WouldBlock);
    naps.set(1, 1);
    env.join(&napper)?;
    // One that spins is stopped, with a watchdog fault to its endpoint.
    let shared = Shared::new();
    let s = shared.clone();
    let spinner = env.spawn(
        ThreadOptions {
            cpu: Some(0),
            start: false,
            fault_endpoint: badged,
            ..Default::default()
        },
        move || loop {
            s.bump(0);
        },
    )?;
    expect!(invoke::tcb_confine(spinner.tcb, bound.scheduler), Ok(()));
    expect!(invoke::tcb_resume(spinner.tcb), Ok(()));
    let fault = env.recv_within(endpoint)?;
    expect!(
        (fault.label(), fault.badge, fault.length()),
        (WATCHDOG, WATCHDOG_BADGE, 4)
    );
    let [_, ran_ns, _, _] = fault.mrs;
    ensure!(
        (WATCHDOG_NS..2 * WATCHDOG_NS).contains(&ran_ns),
        "stopped after {ran_ns} ns"
    );
    expect!(
        invoke::tcb_read_registers(spinner.tcb).map(|s| s.state()),
        Ok(Some(ThreadState::BlockedOnReply))
    );
    let counted = shared.get(0);
    ensure!(counted > 0, "the spinning thread did not run");
    env.sleep_ns(10_000_000);
    expect!(shared.get(0), counted);
    expect!(invoke::tcb_suspend(spinner.tcb), Ok(()));
    Ok(Pass::Ok)
}
