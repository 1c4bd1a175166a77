//! Hard affinity (`Policy::set_affinity`) under every built-in policy: the
//! simulator checks each dispatch against the thread's affinity, so a run
//! with random events, pinned threads, affinity changes and a CPU leaving
//! and coming back must end with no violation; credit's shares with a
//! pinned domain; SEDF admission of a pinned reservation; the contract's
//! preemption and refusals, and the default refusal of a policy without
//! affinity.

use tarn_sched_servers::credit::Credit;
use tarn_sched_servers::rr::RoundRobin;
use tarn_sched_servers::sedf::Sedf;
use tarn_sched_servers::{
    CpuId, Decision, Dispatch, DomainId, DomainParams, Event, Policy, PolicyError, ThreadId,
};
use tarn_sched_sim::{cpu_mask, simulate, Action, DomainSpec, Report, Scenario, Workload, MS, SEC};

const BURSTY: Workload = Workload::Bursty {
    run_min_ns: MS,
    run_max_ns: 20 * MS,
    sleep_min_ns: MS,
    sleep_max_ns: 30 * MS,
};

/// A policy's per-domain parameters for the mixed scenario (`None`: its
/// defaults).
type Params = fn(u32) -> Option<DomainParams>;

/// Five domains on 4 CPUs, most of them pinned, with CPU 3 leaving at
/// 500 ms (domain 3's only CPU: its affinity breaks) and returning at
/// 1200 ms, CPU 1 leaving at 1500 ms and returning at 2000 ms, and
/// affinity changes while threads run.
fn mixed(seed: u64, params: Params) -> Scenario {
    let domain = |id: u32| {
        let spec = DomainSpec::new(id);
        match params(id) {
            Some(p) => spec.param(p),
            None => spec,
        }
    };
    let scenario = Scenario::new(4, 3 * SEC)
        .seed(seed)
        .domain(domain(1).threads(2, BURSTY).pinned(&[0]))
        .domain(domain(2).threads(3, BURSTY).pinned(&[1, 2]))
        .domain(domain(3).threads(1, Workload::CpuBound).pinned(&[3]))
        .domain(
            domain(4)
                .threads(4, BURSTY)
                .threads(1, Workload::CpuBound)
                .pin_thread(4, &[0, 3]),
        )
        .domain(
            domain(5)
                .threads(1, Workload::Yielder { run_ns: 3 * MS })
                .pinned(&[2, 3]),
        );
    let d4 = scenario.thread_id(3, 0);
    let d1 = [scenario.thread_id(0, 0), scenario.thread_id(0, 1)];
    scenario
        .at(500 * MS, Action::RemoveCpu(3))
        .at(800 * MS, Action::SetAffinity(d4, Some(cpu_mask(&[0]))))
        .at(
            1000 * MS,
            Action::SetAffinity(d1[0], Some(cpu_mask(&[1, 2]))),
        )
        .at(1000 * MS, Action::SetAffinity(d1[1], Some(cpu_mask(&[2]))))
        .at(1200 * MS, Action::AddCpu(3))
        .at(1500 * MS, Action::RemoveCpu(1))
        .at(1800 * MS, Action::SetAffinity(d4, None))
        .at(2000 * MS, Action::AddCpu(1))
        .at(2500 * MS, Action::SetAffinity(d1[0], Some(cpu_mask(&[3]))))
}

fn check_clean(report: &Report) {
    println!("{report}");
    assert_eq!(
        report.affinity_violations, 0,
        "{:?}",
        report.protocol_errors
    );
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
    assert!(
        report.action_errors.is_empty(),
        "{:?}",
        report.action_errors
    );
    for d in &report.domains {
        assert!(d.cpu_ns > 0, "{} never ran", d.name);
    }
}

fn no_params(_: u32) -> Option<DomainParams> {
    None
}

#[test]
fn credit_never_dispatches_outside_affinity() {
    for seed in 1..=4 {
        let weights = |id: u32| {
            Some(DomainParams::Credit {
                weight: 128 * id,
                cap_pct: 0,
            })
        };
        check_clean(&simulate(&mut Credit::new(), &mixed(seed, weights)).expect("starts"));
    }
}

#[test]
fn sedf_never_dispatches_outside_affinity() {
    for seed in 1..=4 {
        // Domains 1-3 reserve 10 ms every 50 ms per thread (with extra
        // time), the others are best effort.
        let reservations = |id: u32| {
            (id <= 3).then_some(DomainParams::Sedf {
                period_ns: 50 * MS,
                slice_ns: 10 * MS,
                extra: true,
            })
        };
        check_clean(&simulate(&mut Sedf::new(), &mixed(seed, reservations)).expect("starts"));
    }
}

#[test]
fn rr_never_dispatches_outside_affinity() {
    for seed in 1..=4 {
        check_clean(
            &simulate(&mut RoundRobin::default(), &mixed(seed, no_params)).expect("starts"),
        );
    }
}

#[test]
fn a_broken_affinity_runs_anywhere_until_its_cpu_returns() {
    // Domain 1 is pinned to CPU 1, which leaves at 1 s and returns at 2 s.
    // Meanwhile none of its CPUs is in the pool, so it runs on CPU 0 (and
    // the policy says its affinity is broken); afterwards on CPU 1 again
    // (a dispatch elsewhere would be a violation).
    let policies: [Box<dyn Policy>; 3] = [
        Box::new(Credit::new()),
        Box::new(Sedf::new()),
        Box::new(RoundRobin::default()),
    ];
    for mut policy in policies {
        let scenario = Scenario::new(2, 3 * SEC)
            .domain(
                DomainSpec::new(1)
                    .threads(1, Workload::CpuBound)
                    .pinned(&[1]),
            )
            .domain(DomainSpec::new(2).threads(1, Workload::CpuBound))
            .at(SEC, Action::RemoveCpu(1))
            .at(2 * SEC, Action::AddCpu(1));
        let report = simulate(policy.as_mut(), &scenario).expect("starts");
        check_clean(&report);
        // 100 ms windows: 11..19 lie inside the second CPU's absence.
        let shares: Vec<f64> = (11..19).map(|w| report.samples[w][0]).collect();
        assert!(
            shares.iter().all(|&s| s > 10.0),
            "{}: the pinned domain starved while its CPU was away: {shares:?}",
            policy.name()
        );
    }
    let mut credit = Credit::new();
    credit.add_cpu(CpuId(0), 0);
    credit.add_cpu(CpuId(1), 0);
    credit
        .add_thread(ThreadId(1), DomainId(1), true, 0)
        .unwrap();
    credit
        .set_affinity(ThreadId(1), Some(&[CpuId(1)]), 0)
        .unwrap();
    assert!(!credit.affinity_broken(ThreadId(1)));
    credit.remove_cpu(CpuId(1), 1);
    assert!(credit.affinity_broken(ThreadId(1)));
    credit.add_cpu(CpuId(1), 2);
    assert!(!credit.affinity_broken(ThreadId(1)));
}

#[test]
fn credit_shares_with_a_domain_pinned_to_one_cpu() {
    // Equal weights, one CPU-bound thread each, 2 CPUs: by weight each
    // domain is owed 2/3 of a CPU. Domain 1 is pinned to CPU 0, which can
    // give it that: it takes 2/3 of CPU 0, and domains 2 and 3 share the
    // other third of CPU 0 and all of CPU 1. So pinning must not change
    // the shares: 66.7 % each.
    let cpu_bound = |id| {
        DomainSpec::new(id)
            .weight(256)
            .threads(1, Workload::CpuBound)
    };
    let scenario = Scenario::new(2, 6 * SEC)
        .domain(cpu_bound(1).pinned(&[0]))
        .domain(cpu_bound(2))
        .domain(cpu_bound(3));
    let report = simulate(&mut Credit::new(), &scenario).expect("starts");
    check_clean(&report);
    for id in 1..=3 {
        let share = report.share(id);
        assert!(
            (share - 200.0 / 3.0).abs() <= 2.0,
            "domain {id}: {share:.2}% is not 66.67 ± 2"
        );
    }
    // Domains 1 and 2 both pinned to CPU 0: weights would give each 2/3,
    // but together they can only have CPU 0, which they split by weight
    // (50 % each); domain 3 alone may use CPU 1 and has it all (100 %).
    let scenario = Scenario::new(2, 6 * SEC)
        .domain(cpu_bound(1).pinned(&[0]))
        .domain(cpu_bound(2).pinned(&[0]))
        .domain(cpu_bound(3));
    let report = simulate(&mut Credit::new(), &scenario).expect("starts");
    check_clean(&report);
    for (id, want) in [(1, 50.0), (2, 50.0), (3, 100.0)] {
        let share = report.share(id);
        assert!(
            (share - want).abs() <= 2.0,
            "domain {id}: {share:.2}% is not {want} ± 2"
        );
    }
}

#[test]
fn sedf_admission_of_a_pinned_reservation() {
    let mut sedf = Sedf::new();
    sedf.add_cpu(CpuId(0), 0);
    sedf.add_cpu(CpuId(1), 0);
    let reserve = |slice_ms| DomainParams::Sedf {
        period_ns: 100 * MS,
        slice_ns: slice_ms * MS,
        extra: false,
    };
    sedf.set_domain_params(DomainId(1), &reserve(60), 0)
        .unwrap();
    sedf.set_domain_params(DomainId(2), &reserve(50), 0)
        .unwrap();
    sedf.add_thread(ThreadId(1), DomainId(1), true, 0).unwrap();
    sedf.add_thread(ThreadId(2), DomainId(2), true, 0).unwrap();
    // Worst-fit: 60 % on CPU 0, 50 % on CPU 1.
    assert_eq!(sedf.home(ThreadId(1)), Some(CpuId(0)));
    assert_eq!(sedf.home(ThreadId(2)), Some(CpuId(1)));
    // Thread 2 pinned to CPU 0: 60 + 50 > 100 %, refused, nothing changed.
    let refused = sedf.set_affinity(ThreadId(2), Some(&[CpuId(0)]), 1);
    assert_eq!(
        refused,
        Err(PolicyError::AffinityInfeasible {
            thread: ThreadId(2),
            slice_ns: 50 * MS,
            period_ns: 100 * MS,
            free_ppm: 400_000,
        })
    );
    assert_eq!(
        refused.unwrap_err().to_string(),
        "thread 2: slice 50.000 ms / period 100.000 ms = 50.0% does not fit on the CPUs \
         of its affinity: the least-loaded of them has 40.0% free"
    );
    assert_eq!(sedf.home(ThreadId(2)), Some(CpuId(1)));
    assert_eq!(sedf.utilisation_ppb(CpuId(0)), Some(600_000_000));
    assert_eq!(sedf.utilisation_ppb(CpuId(1)), Some(500_000_000));
    // Still unpinned: it may be moved to CPU 0 by nothing, and runs there
    // only when stolen. Pinned to CPU 1 (its home) it stays.
    sedf.set_affinity(ThreadId(2), Some(&[CpuId(1)]), 2)
        .unwrap();
    assert_eq!(sedf.home(ThreadId(2)), Some(CpuId(1)));
    // A reservation that fits on the allowed CPU moves there: a 30 %
    // thread, homed worst-fit on CPU 1 (50 % used vs 60 %), pinned to 0.
    sedf.set_domain_params(DomainId(3), &reserve(30), 0)
        .unwrap();
    sedf.add_thread(ThreadId(3), DomainId(3), true, 3).unwrap();
    assert_eq!(sedf.home(ThreadId(3)), Some(CpuId(1)));
    sedf.set_affinity(ThreadId(3), Some(&[CpuId(0)]), 4)
        .unwrap();
    assert_eq!(sedf.home(ThreadId(3)), Some(CpuId(0)));
    assert_eq!(sedf.utilisation_ppb(CpuId(0)), Some(900_000_000));
    assert_eq!(sedf.utilisation_ppb(CpuId(1)), Some(500_000_000));
    // A domain-wide change re-admits among allowed CPUs only: 45 % for
    // thread 3 does not fit on CPU 0 (60 % used by thread 1).
    assert!(matches!(
        sedf.set_domain_params(DomainId(3), &reserve(45), 5),
        Err(PolicyError::Infeasible { .. })
    ));
    assert_eq!(sedf.utilisation_ppb(CpuId(0)), Some(900_000_000));
}

/// Drives `policy` to run threads 1 and 2 on CPUs 0 and 1 and returns
/// which thread runs on CPU 1.
fn two_running(policy: &mut dyn Policy) -> ThreadId {
    policy.add_cpu(CpuId(0), 0);
    policy.add_cpu(CpuId(1), 0);
    policy
        .add_thread(ThreadId(1), DomainId(1), true, 0)
        .unwrap();
    policy
        .add_thread(ThreadId(2), DomainId(2), true, 0)
        .unwrap();
    let mut decisions = Vec::new();
    policy.take_decisions(&mut decisions);
    let first = policy.pick_next(CpuId(0), 0).map(|d: Dispatch| d.thread);
    let second = policy.pick_next(CpuId(1), 0).map(|d: Dispatch| d.thread);
    policy.take_decisions(&mut decisions);
    assert!(first.is_some() && second.is_some() && first != second);
    second.unwrap()
}

#[test]
fn a_thread_running_outside_its_new_affinity_is_preempted_at_once() {
    let policies: [Box<dyn Policy>; 3] = [
        Box::new(Credit::new()),
        Box::new(Sedf::new()),
        Box::new(RoundRobin::default()),
    ];
    for mut policy in policies {
        let on_cpu1 = two_running(policy.as_mut());
        // 100 µs later (within credit's 1 ms rate limit: not held back).
        policy
            .set_affinity(on_cpu1, Some(&[CpuId(0)]), 100_000)
            .unwrap();
        let mut decisions = Vec::new();
        policy.take_decisions(&mut decisions);
        assert!(
            decisions.contains(&Decision::Preempt { cpu: CpuId(1) }),
            "{}: {decisions:?}",
            policy.name()
        );
        // Its entry ends; CPU 1 must not get it back.
        policy.on_event(&Event::new(
            tarn_sched_servers::EventKind::BudgetExpired,
            CpuId(1),
            on_cpu1,
            100_000,
            100_000,
        ));
        let next = policy.pick_next(CpuId(1), 100_000);
        assert_ne!(next.map(|d| d.thread), Some(on_cpu1), "{}", policy.name());
    }
}

#[test]
fn bad_affinity_requests_are_refused_and_change_nothing() {
    let policies: [Box<dyn Policy>; 3] = [
        Box::new(Credit::new()),
        Box::new(Sedf::new()),
        Box::new(RoundRobin::default()),
    ];
    for mut policy in policies {
        let on_cpu1 = two_running(policy.as_mut());
        assert_eq!(
            policy.set_affinity(ThreadId(9), Some(&[CpuId(0)]), 1),
            Err(PolicyError::UnknownThread {
                thread: ThreadId(9)
            })
        );
        assert_eq!(
            policy.set_affinity(on_cpu1, Some(&[]), 1),
            Err(PolicyError::EmptyAffinity { thread: on_cpu1 })
        );
        let mut decisions = Vec::new();
        policy.take_decisions(&mut decisions);
        assert!(
            !decisions
                .iter()
                .any(|d| matches!(d, Decision::Preempt { .. })),
            "{}: {decisions:?}",
            policy.name()
        );
        // CPUs outside the pool are ignored: {1, 7} is CPU 1 here.
        policy
            .set_affinity(on_cpu1, Some(&[CpuId(1), CpuId(7)]), 1)
            .unwrap();
        policy.take_decisions(&mut decisions);
        assert!(
            !decisions
                .iter()
                .any(|d| matches!(d, Decision::Preempt { .. })),
            "{}: {decisions:?}",
            policy.name()
        );
    }
}

/// A policy that implements only what the trait requires.
struct Minimal;

impl Policy for Minimal {
    fn name(&self) -> &'static str {
        "minimal"
    }
    fn add_cpu(&mut self, _: CpuId, _: u64) {}
    fn remove_cpu(&mut self, _: CpuId, _: u64) {}
    fn add_thread(&mut self, _: ThreadId, _: DomainId, _: bool, _: u64) -> Result<(), PolicyError> {
        Ok(())
    }
    fn remove_thread(&mut self, _: ThreadId, _: u64) {}
    fn remove_domain(&mut self, _: DomainId, _: u64) {}
    fn on_event(&mut self, _: &Event) {}
    fn pick_next(&mut self, _: CpuId, _: u64) -> Option<Dispatch> {
        None
    }
    fn take_decisions(&mut self, _: &mut Vec<Decision>) {}
}

#[test]
fn a_policy_without_affinity_refuses_it() {
    let mut policy = Minimal;
    policy
        .add_thread(ThreadId(1), DomainId(1), true, 0)
        .unwrap();
    let refused = policy.set_affinity(ThreadId(1), Some(&[CpuId(0)]), 0);
    assert_eq!(
        refused,
        Err(PolicyError::AffinityUnsupported { policy: "minimal" })
    );
    assert_eq!(
        refused.unwrap_err().to_string(),
        "the minimal policy does not support hard affinity"
    );
    // And the simulator refuses a scenario that pins its threads.
    let scenario = Scenario::new(1, SEC).domain(
        DomainSpec::new(1)
            .threads(1, Workload::CpuBound)
            .pinned(&[0]),
    );
    assert!(simulate(&mut Minimal, &scenario).is_err());
}
