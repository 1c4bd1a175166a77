//! SEDF scenarios: no deadline misses for a feasible set, admission control
//! naming the request that does not fit, extra time, work conservation.

use tarn_sched_servers::sedf::Sedf;
use tarn_sched_servers::{
    CpuId, DomainId, DomainParams, Policy, PolicyError, PoolParams, ThreadId,
};
use tarn_sched_sim::{simulate, Action, DomainSpec, Report, Scenario, Workload, MS, SEC};

fn run(scenario: &Scenario) -> Report {
    let report = simulate(&mut Sedf::new(), scenario).expect("scenario starts");
    println!("{report}");
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
    report
}

fn jobs(id: u32, slice_ms: u64, period_ms: u64, extra: bool) -> DomainSpec {
    DomainSpec::new(id)
        .sedf(slice_ms * MS, period_ms * MS, extra)
        .threads(
            1,
            Workload::Periodic {
                period_ns: period_ms * MS,
                work_ns: slice_ms * MS,
            },
        )
}

fn assert_near(what: &str, got: f64, want: f64, tolerance: f64) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got:.3}% is not within ±{tolerance} of {want:.3}%"
    );
}

/// The set: 10/100, 30/50, 20/40 ms (utilisation 1.2) on 2 CPUs.
fn the_set() -> Scenario {
    Scenario::new(2, 10 * SEC)
        .domain(jobs(1, 10, 100, false))
        .domain(jobs(2, 30, 50, false))
        .domain(jobs(3, 20, 40, false))
}

#[test]
fn feasible_set_misses_no_deadline_over_ten_seconds() {
    let report = run(&the_set());
    assert_eq!(report.deadline_misses(), 0);
    // Every job whose deadline passed was counted: 99 + 199 + 249.
    assert_eq!(report.domain(1).jobs, 99);
    assert_eq!(report.domain(2).jobs, 199);
    assert_eq!(report.domain(3).jobs, 249);
    assert_near("10/100", report.share(1), 10.0, 0.2);
    assert_near("30/50", report.share(2), 60.0, 0.2);
    assert_near("20/40", report.share(3), 50.0, 0.2);
}

#[test]
fn feasible_set_misses_no_deadline_beside_cpu_hogs_and_sleepers() {
    // The same reservations, now competing with best-effort CPU hogs (which
    // soak up the idle time), a bursty extra-time domain and a switch cost.
    let report = run(&the_set()
        .switch_cost(5_000)
        .seed(7)
        .domain(DomainSpec::new(4).threads(3, Workload::CpuBound))
        .domain(DomainSpec::new(5).sedf(0, 10 * MS, true).threads(
            2,
            Workload::Bursty {
                run_min_ns: MS / 2,
                run_max_ns: 8 * MS,
                sleep_min_ns: 0,
                sleep_max_ns: 12 * MS,
            },
        )));
    assert_eq!(report.deadline_misses(), 0);
    assert_eq!(
        report.domain(1).jobs + report.domain(2).jobs + report.domain(3).jobs,
        547
    );
    // The hogs and the bursty domain use the 80 % left over (less switches).
    let rest = report.share(4) + report.share(5);
    assert!(rest > 78.0, "extra time used: {rest:.2}%");
    assert!(report.idle_while_waiting_pct() < 1.0);
}

#[test]
fn reservations_of_cpu_bound_domains_are_exact() {
    // CPU-bound threads without extra time get exactly their slice.
    let report = run(&Scenario::new(2, 10 * SEC)
        .domain(
            DomainSpec::new(1)
                .sedf(10 * MS, 100 * MS, false)
                .threads(1, Workload::CpuBound),
        )
        .domain(
            DomainSpec::new(2)
                .sedf(30 * MS, 50 * MS, false)
                .threads(1, Workload::CpuBound),
        )
        .domain(
            DomainSpec::new(3)
                .sedf(20 * MS, 40 * MS, false)
                .threads(1, Workload::CpuBound),
        ));
    assert_near("10/100", report.share(1), 10.0, 0.1);
    assert_near("30/50", report.share(2), 60.0, 0.1);
    assert_near("20/40", report.share(3), 50.0, 0.1);
}

#[test]
fn infeasible_request_is_refused_by_name() {
    let mut sedf = Sedf::new();
    sedf.add_cpu(CpuId(0), 0);
    sedf.add_cpu(CpuId(1), 0);
    let set = [(1, 10, 100), (2, 30, 50), (3, 20, 40)];
    for (n, (domain, slice, period)) in set.into_iter().enumerate() {
        let params = DomainParams::Sedf {
            period_ns: period * MS,
            slice_ns: slice * MS,
            extra: false,
        };
        sedf.set_domain_params(DomainId(domain), &params, 0)
            .unwrap();
        sedf.add_thread(ThreadId(n as u64 + 1), DomainId(domain), true, 0)
            .unwrap();
    }
    let before = [
        sedf.utilisation_ppb(CpuId(0)),
        sedf.utilisation_ppb(CpuId(1)),
    ];
    // 45/50 = 90 % fits on neither CPU (each has 40 % left).
    let request = DomainParams::Sedf {
        period_ns: 50 * MS,
        slice_ns: 45 * MS,
        extra: false,
    };
    let error = sedf
        .set_domain_params(DomainId(4), &request, 0)
        .unwrap_err();
    assert_eq!(
        error,
        PolicyError::Infeasible {
            domain: DomainId(4),
            thread: None,
            slice_ns: 45 * MS,
            period_ns: 50 * MS,
            free_ppm: 400_000
        }
    );
    let message = error.to_string();
    println!("{message}");
    assert!(message.contains("domain 4"), "{message}");
    assert!(
        message.contains("45.000 ms / period 50.000 ms = 90.0%"),
        "{message}"
    );
    assert!(message.contains("40.0% free"), "{message}");
    assert_eq!(
        sedf.domain_params(DomainId(4)),
        None,
        "refused: not recorded"
    );
    assert_eq!(
        [
            sedf.utilisation_ppb(CpuId(0)),
            sedf.utilisation_ppb(CpuId(1))
        ],
        before
    );

    // A second thread of domain 2 (another 60 %) does not fit either.
    let error = sedf
        .add_thread(ThreadId(9), DomainId(2), true, 0)
        .unwrap_err();
    assert!(matches!(
        error,
        PolicyError::Infeasible {
            domain: DomainId(2),
            thread: Some(ThreadId(9)),
            ..
        }
    ));
    assert!(error.to_string().contains("domain 2 (thread 9)"), "{error}");
    // Growing domain 3 to 40/40 (a whole CPU) fits nowhere.
    let grow = DomainParams::Sedf {
        period_ns: 40 * MS,
        slice_ns: 40 * MS,
        extra: false,
    };
    assert!(matches!(
        sedf.set_domain_params(DomainId(3), &grow, 0),
        Err(PolicyError::Infeasible {
            domain: DomainId(3),
            thread: Some(ThreadId(3)),
            ..
        })
    ));
    assert_eq!(
        [
            sedf.utilisation_ppb(CpuId(0)),
            sedf.utilisation_ppb(CpuId(1))
        ],
        before
    );
    // 20/50 (40 %) fits, exactly.
    let fits = DomainParams::Sedf {
        period_ns: 50 * MS,
        slice_ns: 20 * MS,
        extra: false,
    };
    sedf.set_domain_params(DomainId(4), &fits, 0).unwrap();
    sedf.add_thread(ThreadId(4), DomainId(4), true, 0).unwrap();
}

#[test]
fn invalid_parameters_are_refused_and_change_nothing() {
    let mut sedf = Sedf::new();
    sedf.add_cpu(CpuId(0), 0);
    let d = DomainId(1);
    let good = DomainParams::Sedf {
        period_ns: 100 * MS,
        slice_ns: 10 * MS,
        extra: true,
    };
    sedf.set_domain_params(d, &good, 0).unwrap();
    for (params, error) in [
        (
            DomainParams::Sedf {
                period_ns: 10 * MS,
                slice_ns: 20 * MS,
                extra: false,
            },
            PolicyError::InvalidSlice {
                slice_ns: 20 * MS,
                period_ns: 10 * MS,
            },
        ),
        (
            DomainParams::Sedf {
                period_ns: 0,
                slice_ns: 0,
                extra: true,
            },
            PolicyError::InvalidPeriod { period_ns: 0 },
        ),
        (
            DomainParams::Sedf {
                period_ns: 10 * MS,
                slice_ns: 0,
                extra: false,
            },
            PolicyError::InvalidSlice {
                slice_ns: 0,
                period_ns: 10 * MS,
            },
        ),
        (
            DomainParams::Credit {
                weight: 256,
                cap_pct: 0,
            },
            PolicyError::WrongPolicy { policy: "sedf" },
        ),
        (
            DomainParams::Group { master: None },
            PolicyError::WrongPolicy { policy: "sedf" },
        ),
    ] {
        assert_eq!(sedf.set_domain_params(d, &params, 0), Err(error));
        assert_eq!(sedf.domain_params(d), Some(good));
    }
    assert_eq!(
        sedf.set_pool_params(&PoolParams::Sedf {
            extra_quantum_ms: 0
        }),
        Err(PolicyError::InvalidTimeslice { timeslice_ms: 0 })
    );
    assert_eq!(
        sedf.set_pool_params(&PoolParams::Credit {
            timeslice_ms: 30,
            ratelimit_us: 1000
        }),
        Err(PolicyError::WrongPolicy { policy: "sedf" })
    );
    assert_eq!(
        sedf.pool_params(),
        Some(PoolParams::Sedf {
            extra_quantum_ms: 10
        })
    );
    sedf.set_pool_params(&PoolParams::Sedf {
        extra_quantum_ms: 5,
    })
    .unwrap();
    assert_eq!(
        sedf.pool_params(),
        Some(PoolParams::Sedf {
            extra_quantum_ms: 5
        })
    );
}

fn mixed_extra(cpus: u32) -> Scenario {
    Scenario::new(cpus, 5 * SEC)
        .seed(3)
        .domain(jobs(1, 10, 100, true))
        .domain(jobs(2, 30, 50, true))
        .domain(
            DomainSpec::new(3)
                .sedf(20 * MS, 40 * MS, true)
                .threads(1, Workload::CpuBound),
        )
        .domain(DomainSpec::new(4).sedf(2 * MS, 20 * MS, true).threads(
            3,
            Workload::DutyCycle {
                run_ns: 3 * MS,
                sleep_ns: 7 * MS,
            },
        ))
        .domain(DomainSpec::new(5).threads(
            4,
            Workload::Bursty {
                run_min_ns: MS,
                run_max_ns: 20 * MS,
                sleep_min_ns: MS,
                sleep_max_ns: 40 * MS,
            },
        ))
        .domain(DomainSpec::new(6).threads(8, Workload::Yielder { run_ns: MS }))
}

#[test]
fn work_conserving_with_extra_time() {
    for cpus in [2, 4] {
        let report = run(&mixed_extra(cpus));
        let waste = report.idle_while_waiting_pct();
        assert!(
            waste < 1.0,
            "{cpus} CPUs: idle while work waited {waste:.3}% of CPU time"
        );
        assert_eq!(report.deadline_misses(), 0, "{cpus} CPUs");
    }
}

#[test]
fn extra_time_is_shared() {
    // 60 % of one CPU is reserved; two best-effort hogs share the other
    // 140 % equally.
    let report = run(&Scenario::new(2, 5 * SEC)
        .domain(
            DomainSpec::new(1)
                .sedf(30 * MS, 50 * MS, false)
                .threads(1, Workload::CpuBound),
        )
        .domain(DomainSpec::new(2).threads(1, Workload::CpuBound))
        .domain(DomainSpec::new(3).threads(1, Workload::CpuBound)));
    assert_near("reserved", report.share(1), 60.0, 0.1);
    assert_near("hog 2", report.share(2), 70.0, 2.0);
    assert_near("hog 3", report.share(3), 70.0, 2.0);
}

#[test]
fn losing_a_cpu_demotes_what_no_longer_fits_and_joining_readmits_it() {
    let mut sedf = Sedf::new();
    sedf.add_cpu(CpuId(0), 0);
    sedf.add_cpu(CpuId(1), 0);
    for n in 1..=2 {
        let params = DomainParams::Sedf {
            period_ns: 50 * MS,
            slice_ns: 30 * MS,
            extra: false,
        };
        sedf.set_domain_params(DomainId(n), &params, 0).unwrap();
        sedf.add_thread(ThreadId(u64::from(n)), DomainId(n), true, 0)
            .unwrap();
    }
    assert_ne!(
        sedf.home(ThreadId(1)),
        sedf.home(ThreadId(2)),
        "worst-fit spreads them"
    );
    sedf.remove_cpu(CpuId(1), 0);
    assert_eq!(sedf.demoted().count(), 1);
    sedf.add_cpu(CpuId(1), 0);
    assert_eq!(sedf.demoted().count(), 0);
    assert!(sedf.home(ThreadId(1)).is_some() && sedf.home(ThreadId(2)).is_some());
}

#[test]
fn reservations_survive_a_cpu_leaving_when_they_still_fit() {
    // 3 CPUs, 1.2 CPUs reserved; one CPU leaves at 2 s and comes back at 6 s.
    let report = run(&the_set()
        .domain(DomainSpec::new(4).threads(2, Workload::CpuBound))
        .at(0, Action::AddCpu(2))
        .at(2 * SEC, Action::RemoveCpu(0))
        .at(6 * SEC, Action::AddCpu(0)));
    assert_eq!(report.deadline_misses(), 0);
}

#[test]
fn a_sleeper_cannot_claim_more_than_its_bandwidth() {
    // A reserved bursty thread (wakes at random points of its period) beside
    // a full set of periodic jobs: the CBS wake-up rule keeps it from
    // crowding the others out.
    let report = run(&Scenario::new(1, 10 * SEC)
        .seed(11)
        .domain(jobs(1, 20, 40, false))
        .domain(jobs(2, 15, 50, false))
        .domain(DomainSpec::new(3).sedf(20 * MS, 100 * MS, false).threads(
            1,
            Workload::Bursty {
                run_min_ns: MS,
                run_max_ns: 30 * MS,
                sleep_min_ns: MS,
                sleep_max_ns: 60 * MS,
            },
        )));
    assert_eq!(
        report.domain(1).deadline_misses + report.domain(2).deadline_misses,
        0
    );
    assert!(
        report.share(3) <= 20.0 + 0.01,
        "the sleeper got {:.3}%",
        report.share(3)
    );
}
