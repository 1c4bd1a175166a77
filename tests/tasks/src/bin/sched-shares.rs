//! Credit on metal: the scheduler-server runtime with the credit policy
//! drives CPU-bound domains through the kernel's dispatch queues, and the
//! shares each domain got are measured from the kernel's exact accounting
//! (`SchedulerQueryThread`). Started by the root task for `schedtest`.
//!
//! Scenario: three single-thread CPU-bound domains with weights 256, 512 and
//! 1024 on the pool's CPUs (all CPUs online, at most 2) must get their
//! weight-proportional share of the pool, a single thread never more than
//! one CPU (on 2 CPUs: 33.3 %, 66.7 % and 100 %; on 1: 14.3 %, 28.6 % and
//! 57.1 %) within ±2 points over 3 s; then a cap of 50 on one domain alone
//! must hold it at or below 50.5 %; the kernel's invariants (isolation
//! included) must hold. One line per check,
//! `sched-shares: N passed, M failed`, and power-off with the verdict.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use tarn_rt::abi::ObjectType;
use tarn_rt::layout::{slot, FREE_WINDOW_BASE};
use tarn_rt::{invoke, println, Resources, ThreadOptions};
use tarn_sched_server::{Pool, PoolCpu};
use tarn_sched_servers::credit::Credit;
use tarn_sched_servers::{DomainId, DomainParams};

tarn_rt::entry!(main);

/// How long each measurement runs.
const MEASURE_NS: u64 = 3_000_000_000;

struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    fn record(&mut self, name: &str, ok: bool) {
        println!(
            "sched-shares: {name} ... {}",
            if ok { "ok" } else { "FAILED" }
        );
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }

    fn check(&mut self, name: &str, share_permille: u64, low: u64, high: u64) {
        let ok = (low..=high).contains(&share_permille);
        println!(
            "sched-shares: {name}: {}.{} % (expected {}.{}..{}.{} %) ... {}",
            share_permille / 10,
            share_permille % 10,
            low / 10,
            low % 10,
            high / 10,
            high % 10,
            if ok { "ok" } else { "FAILED" }
        );
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }
}

/// A CPU-bound thread (not started: the pool adopts it first).
fn spinner(res: &mut Resources, stop: &Arc<AtomicU64>) -> tarn_rt::Thread {
    let stop = stop.clone();
    let options = ThreadOptions {
        start: false,
        cpu: Some(0),
        ..ThreadOptions::default()
    };
    tarn_rt::spawn_thread(res, options, move || {
        let mut spins = 0u64;
        while stop.load(Ordering::Relaxed) == 0 {
            spins = core::hint::black_box(spins + 1);
        }
    })
    .expect("spawn a spinner")
}

fn ran_ns<P: tarn_sched_servers::Policy + Send>(pool: &Pool<P>, tcb: u64) -> u64 {
    invoke::scheduler_query_thread(pool.scheduler(), tcb)
        .map(|q| q.ran_ns)
        .unwrap_or(0)
}

fn main(arg: u64) {
    let Some(info) = tarn_rt::start_info(arg) else {
        return;
    };
    let mut res = Resources::from_boot_info(info);
    let mut tally = Tally {
        passed: 0,
        failed: 0,
    };
    if info.first_cpu_slot == 0 {
        println!("sched-shares: needs the CPU capabilities");
        let _ = invoke::machine_power_off(slot::MACHINE, 1);
        return;
    }
    let sleeper = res
        .create(ObjectType::Notification, 0)
        .expect("notification");
    if info
        .cmdline()
        .split_whitespace()
        .any(|w| w == "schedtest=sedf")
    {
        sedf(&mut res, info, sleeper, &mut tally);
        finish(&tally);
        return;
    }
    let pool_cpus = info.cpu_count.min(2);
    let cpus: Vec<PoolCpu> = (0..pool_cpus)
        .map(|i| PoolCpu {
            index: i,
            cap: info.first_cpu_slot + i,
        })
        .collect();
    println!("sched-shares: credit pool on {pool_cpus} CPUs");
    let pool = match Pool::start(
        &mut res,
        Credit::new(),
        None,
        &cpus,
        FREE_WINDOW_BASE + 0x4000_0000,
    ) {
        Ok(pool) => pool,
        Err(error) => {
            println!("sched-shares: FAILED to start the pool: {error:?}");
            let _ = invoke::machine_power_off(slot::MACHINE, 1);
            return;
        }
    };

    // Weights 256 / 512 / 1024 on 2 CPUs.
    let stop = Arc::new(AtomicU64::new(0));
    let weights = [256u32, 512, 1024];
    let mut threads = Vec::new();
    for (i, weight) in weights.iter().enumerate() {
        let domain = DomainId(i as u32 + 1);
        let thread = spinner(&mut res, &stop);
        pool.set_domain_params(
            domain,
            &DomainParams::Credit {
                weight: *weight,
                cap_pct: 0,
            },
        )
        .expect("weight");
        pool.add_thread(thread.tcb, i as u64 + 1, domain)
            .expect("add thread");
        invoke::tcb_resume(thread.tcb).expect("resume");
        threads.push(thread);
    }
    pool.kick();
    let _ = tarn_rt::sleep(sleeper, 100_000_000); // settle
    let before: Vec<u64> = threads.iter().map(|t| ran_ns(&pool, t.tcb)).collect();
    let split_before = invoke::machine_check_invariants(slot::MACHINE).ok();
    let _ = tarn_rt::sleep(sleeper, MEASURE_NS);
    if let (Some(a), Ok(b)) = (
        split_before,
        invoke::machine_check_invariants(slot::MACHINE),
    ) {
        println!(
            "sched-shares: CPU time over the run: idle {} ms, system threads {} ms, dispatched {} ms",
            (b.idle_ns - a.idle_ns) / 1_000_000,
            (b.system_ns - a.system_ns) / 1_000_000,
            (b.dispatched_ns - a.dispatched_ns) / 1_000_000
        );
    }
    let after: Vec<u64> = threads.iter().map(|t| ran_ns(&pool, t.tcb)).collect();
    let expected = water_fill(&weights, pool_cpus);
    for i in 0..3 {
        let share = (after[i] - before[i]) * 1000 / MEASURE_NS;
        let name = alloc::format!("weight {} share", weights[i]);
        tally.check(
            &name,
            share,
            expected[i].saturating_sub(20),
            expected[i] + 20,
        );
    }
    stop.store(1, Ordering::Relaxed);

    // Cap 50 on a CPU-bound domain alone on 2 idle CPUs.
    let stop_capped = Arc::new(AtomicU64::new(0));
    let capped = spinner(&mut res, &stop_capped);
    let domain = DomainId(10);
    pool.set_domain_params(
        domain,
        &DomainParams::Credit {
            weight: 256,
            cap_pct: 50,
        },
    )
    .expect("cap");
    pool.add_thread(capped.tcb, 10, domain).expect("add capped");
    invoke::tcb_resume(capped.tcb).expect("resume");
    pool.kick();
    let _ = tarn_rt::sleep(sleeper, 100_000_000);
    let before = ran_ns(&pool, capped.tcb);
    let _ = tarn_rt::sleep(sleeper, MEASURE_NS);
    let share = (ran_ns(&pool, capped.tcb) - before) * 1000 / MEASURE_NS;
    let name = alloc::format!("cap 50 alone on {pool_cpus} idle CPU(s)");
    tally.check(&name, share, 0, 505);
    stop_capped.store(1, Ordering::Relaxed);

    // No CPU ever started a thread outside its scheduler, and the kernel's
    // other invariants hold.
    let consistent = invoke::machine_check_invariants(slot::MACHINE).is_ok_and(|i| i.consistent);
    tally.record("kernel invariants and isolation hold", consistent);
    let (events, preempts) = pool.counters();
    println!(
        "sched-shares: events by kind {:?}, {preempts} preemptions",
        &events[..11]
    );
    let errors = pool.dispatch_errors();
    println!("sched-shares: {errors} dispatch errors");
    finish(&tally);
}

/// Weight-proportional shares (per mille of one CPU) of `cpus` CPUs, no
/// single thread above one CPU: the excess is shared again among the others.
fn water_fill(weights: &[u32], cpus: u64) -> Vec<u64> {
    let mut shares = alloc::vec![0u64; weights.len()];
    let mut open: Vec<usize> = (0..weights.len()).collect();
    let mut capacity = cpus * 1000;
    loop {
        let total: u64 = open.iter().map(|&i| u64::from(weights[i])).sum();
        let saturated: Vec<usize> = open
            .iter()
            .copied()
            .filter(|&i| capacity * u64::from(weights[i]) / total >= 1000)
            .collect();
        if saturated.is_empty() {
            for &i in &open {
                shares[i] = capacity * u64::from(weights[i]) / total;
            }
            return shares;
        }
        for &i in &saturated {
            shares[i] = 1000;
            capacity -= 1000;
        }
        open.retain(|i| !saturated.contains(i));
        if open.is_empty() {
            return shares;
        }
    }
}

fn finish(tally: &Tally) {
    println!(
        "sched-shares: {} passed, {} failed",
        tally.passed, tally.failed
    );
    let _ = invoke::machine_power_off(slot::MACHINE, if tally.failed == 0 { 0 } else { 1 });
}

/// SEDF on metal (one CPU): reservations of 10 ms every 100 ms and 30 ms
/// every 50 ms, no extra time, are admitted and each CPU-bound domain gets
/// exactly its reservation (10 % and 60 %); a third of 20 ms every 40 ms
/// does not fit (the CPU would be 120 % booked) and is refused, naming it.
fn sedf(res: &mut Resources, info: &tarn_rt::abi::boot::BootInfo, sleeper: u64, tally: &mut Tally) {
    use tarn_sched_server::ServerError;
    use tarn_sched_servers::sedf::Sedf;
    use tarn_sched_servers::PolicyError;
    const MS: u64 = 1_000_000;
    let cpus = [PoolCpu {
        index: 0,
        cap: info.first_cpu_slot,
    }];
    println!("sched-shares: sedf pool on 1 CPU");
    let pool = match Pool::start(
        res,
        Sedf::new(),
        None,
        &cpus,
        FREE_WINDOW_BASE + 0x4000_0000,
    ) {
        Ok(pool) => pool,
        Err(error) => {
            println!("sched-shares: FAILED to start the pool: {error:?}");
            tally.failed += 1;
            return;
        }
    };
    let reservations = [(1u32, 10 * MS, 100 * MS), (2, 30 * MS, 50 * MS)];
    let stop = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (domain, slice_ns, period_ns) in reservations {
        let params = DomainParams::Sedf {
            period_ns,
            slice_ns,
            extra: false,
        };
        tally.record(
            &alloc::format!(
                "reservation {}/{} ms admitted",
                slice_ns / MS,
                period_ns / MS
            ),
            pool.set_domain_params(DomainId(domain), &params).is_ok(),
        );
        let thread = spinner(res, &stop);
        pool.add_thread(thread.tcb, u64::from(domain), DomainId(domain))
            .expect("add thread");
        invoke::tcb_resume(thread.tcb).expect("resume");
        threads.push(thread);
    }
    let refused = pool.set_domain_params(
        DomainId(3),
        &DomainParams::Sedf {
            period_ns: 40 * MS,
            slice_ns: 20 * MS,
            extra: false,
        },
    );
    match &refused {
        Err(ServerError::Policy(error @ PolicyError::Infeasible { .. })) => {
            println!("sched-shares: refused: {error}")
        }
        other => println!("sched-shares: 20/40 ms answered {other:?}"),
    }
    tally.record(
        "reservation 20/40 ms refused as infeasible",
        matches!(
            refused,
            Err(ServerError::Policy(PolicyError::Infeasible { .. }))
        ),
    );
    pool.kick();
    let _ = tarn_rt::sleep(sleeper, 100 * MS);
    let before: Vec<u64> = threads.iter().map(|t| ran_ns(&pool, t.tcb)).collect();
    let _ = tarn_rt::sleep(sleeper, MEASURE_NS);
    for (i, (_, slice_ns, period_ns)) in reservations.iter().enumerate() {
        let share = (ran_ns(&pool, threads[i].tcb) - before[i]) * 1000 / MEASURE_NS;
        let expected = slice_ns * 1000 / period_ns;
        let name = alloc::format!("sedf {}/{} ms share", slice_ns / MS, period_ns / MS);
        tally.check(&name, share, expected.saturating_sub(10), expected + 10);
    }
    stop.store(1, Ordering::Relaxed);
}
