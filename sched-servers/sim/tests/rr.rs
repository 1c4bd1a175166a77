//! The round-robin template: fairness, work conservation, parameters.

use tarn_sched_servers::rr::RoundRobin;
use tarn_sched_servers::{Policy, PolicyError, PoolParams};
use tarn_sched_sim::{simulate, DomainSpec, Report, Scenario, Workload, MS, SEC};

fn run(scenario: &Scenario) -> Report {
    let report = simulate(&mut RoundRobin::default(), scenario).expect("scenario starts");
    println!("{report}");
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
    report
}

#[test]
fn cpu_bound_threads_share_equally() {
    for (cpus, threads) in [(1, 3), (2, 3), (2, 5), (4, 6)] {
        let mut scenario = Scenario::new(cpus, 3 * SEC);
        for id in 1..=threads {
            scenario = scenario.domain(DomainSpec::new(id).threads(1, Workload::CpuBound));
        }
        let report = run(&scenario);
        let fair = 100.0 * f64::from(cpus) / f64::from(threads);
        for share in report.shares() {
            assert!(
                (share - fair).abs() <= 2.0,
                "{cpus} CPUs, {threads} threads: {share:.2}% vs {fair:.2}%"
            );
        }
    }
}

#[test]
fn rr_is_work_conserving() {
    let report = run(&Scenario::new(2, 3 * SEC)
        .seed(5)
        .domain(DomainSpec::new(1).threads(
            3,
            Workload::DutyCycle {
                run_ns: 2 * MS,
                sleep_ns: 5 * MS,
            },
        ))
        .domain(DomainSpec::new(2).threads(
            3,
            Workload::Bursty {
                run_min_ns: MS,
                run_max_ns: 15 * MS,
                sleep_min_ns: MS,
                sleep_max_ns: 20 * MS,
            },
        ))
        .domain(DomainSpec::new(3).threads(1, Workload::CpuBound)));
    let waste = report.idle_while_waiting_pct();
    assert!(waste < 1.0, "idle while work waited {waste:.3}%");
}

#[test]
fn rr_validates_its_time_slice() {
    let mut rr = RoundRobin::default();
    assert_eq!(
        rr.set_pool_params(&PoolParams::RoundRobin { timeslice_ms: 0 }),
        Err(PolicyError::InvalidTimeslice { timeslice_ms: 0 })
    );
    assert_eq!(
        rr.set_pool_params(&PoolParams::Credit {
            timeslice_ms: 30,
            ratelimit_us: 0
        }),
        Err(PolicyError::WrongPolicy { policy: "rr" })
    );
    assert_eq!(
        rr.pool_params(),
        Some(PoolParams::RoundRobin { timeslice_ms: 10 })
    );
    rr.set_pool_params(&PoolParams::RoundRobin { timeslice_ms: 2 })
        .unwrap();
    let report = run(&Scenario::new(1, SEC)
        .traced()
        .pool(PoolParams::RoundRobin { timeslice_ms: 2 })
        .domain(DomainSpec::new(1).threads(2, Workload::CpuBound)));
    assert!(report
        .slices
        .iter()
        .all(|s| s.end_ns - s.start_ns <= 2 * MS));
}
