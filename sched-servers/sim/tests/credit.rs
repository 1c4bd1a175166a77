//! Credit policy scenarios: weights, caps, work conservation, scheduling
//! groups, pool parameters. Each asserts the measured number.

use tarn_sched_servers::credit::Credit;
use tarn_sched_servers::{DomainId, DomainParams, Policy, PolicyError, PoolParams};
use tarn_sched_sim::{
    expected_shares, simulate, Action, DomainSpec, Report, Scenario, Workload, MS, SEC,
};

fn run(scenario: &Scenario) -> Report {
    let report = simulate(&mut Credit::new(), scenario).expect("scenario starts");
    println!("{report}");
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
    report
}

fn cpu_bound(id: u32, weight: u32) -> DomainSpec {
    DomainSpec::new(id)
        .weight(weight)
        .threads(1, Workload::CpuBound)
}

fn assert_near(what: &str, got: f64, want: f64, tolerance: f64) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got:.2}% is not within ±{tolerance} of {want:.2}%"
    );
}

#[test]
fn three_weights_on_two_cpus() {
    let report = run(&Scenario::new(2, 3 * SEC)
        .domain(cpu_bound(1, 256))
        .domain(cpu_bound(2, 512))
        .domain(cpu_bound(3, 1024)));
    // A single thread cannot use more than one CPU: 1024 is held to 100 %,
    // and the other CPU is split 1:2.
    assert_near("weight 256", report.share(1), 100.0 / 3.0, 2.0);
    assert_near("weight 512", report.share(2), 200.0 / 3.0, 2.0);
    assert_near("weight 1024", report.share(3), 100.0, 2.0);
}

#[test]
fn six_weights_on_four_cpus_with_single_thread_ceiling() {
    let weights = [128, 256, 256, 512, 1024, 2048];
    let mut scenario = Scenario::new(4, 3 * SEC);
    for (i, &w) in weights.iter().enumerate() {
        scenario = scenario.domain(cpu_bound(i as u32 + 1, w));
    }
    let report = run(&scenario);
    let claims: Vec<(u32, u32, u32)> = weights.iter().map(|&w| (w, 1, 0)).collect();
    // 22.2, 44.4, 44.4, 88.9, 100, 100.
    let expected = expected_shares(4, &claims);
    for (i, want) in expected.iter().enumerate() {
        assert_near(
            &format!("weight {}", weights[i]),
            report.shares()[i],
            *want,
            2.0,
        );
    }
}

#[test]
fn six_multithread_domains_follow_weights_without_ceiling() {
    // Four threads each: no domain is limited by its thread count, so the
    // shares are purely proportional: 400 % × w / 4224.
    let weights = [128, 256, 256, 512, 1024, 2048];
    let mut scenario = Scenario::new(4, 3 * SEC);
    for (i, &w) in weights.iter().enumerate() {
        scenario = scenario.domain(
            DomainSpec::new(i as u32 + 1)
                .weight(w)
                .threads(4, Workload::CpuBound),
        );
    }
    let report = run(&scenario);
    let total: u32 = weights.iter().sum();
    for (i, &w) in weights.iter().enumerate() {
        let want = 400.0 * f64::from(w) / f64::from(total);
        assert_near(&format!("weight {w}"), report.shares()[i], want, 2.0);
    }
}

#[test]
fn weight_belongs_to_the_domain_not_to_each_thread() {
    // One CPU: a two-thread domain and a one-thread domain of equal weight
    // get half each.
    let report = run(&Scenario::new(1, 3 * SEC)
        .domain(
            DomainSpec::new(1)
                .weight(256)
                .threads(2, Workload::CpuBound),
        )
        .domain(cpu_bound(2, 256)));
    assert_near("two threads", report.share(1), 50.0, 2.0);
    assert_near("one thread", report.share(2), 50.0, 2.0);
}

#[test]
fn light_threads_leave_their_share_to_their_siblings() {
    // Domain 1: one CPU-bound thread and three threads using 10 % each;
    // domain 2: two CPU-bound threads. Equal weights on two CPUs: 100 % each,
    // the light threads' unused credit going to their CPU-bound sibling.
    let report = run(&Scenario::new(2, 3 * SEC)
        .domain(
            DomainSpec::new(1)
                .weight(256)
                .threads(1, Workload::CpuBound)
                .threads(
                    3,
                    Workload::DutyCycle {
                        run_ns: MS,
                        sleep_ns: 9 * MS,
                    },
                ),
        )
        .domain(
            DomainSpec::new(2)
                .weight(256)
                .threads(2, Workload::CpuBound),
        ));
    assert_near("mixed domain", report.share(1), 100.0, 2.0);
    assert_near("cpu-bound domain", report.share(2), 100.0, 2.0);
}

#[test]
fn cap_50_alone_on_two_idle_cpus() {
    let report = run(&Scenario::new(2, 3 * SEC).domain(
        DomainSpec::new(1)
            .param(DomainParams::Credit {
                weight: 256,
                cap_pct: 50,
            })
            .threads(1, Workload::CpuBound),
    ));
    let share = report.share(1);
    assert!(share <= 50.5, "capped share {share:.2}% exceeds 50.5%");
    assert!(
        share >= 49.0,
        "capped share {share:.2}% is far below the cap"
    );
}

#[test]
fn cap_holds_for_a_multithread_domain_among_others() {
    // Cap 150 over four threads, beside an uncapped domain: the capped one
    // stays at 150 % although its weight would give it more.
    let report = run(&Scenario::new(4, 3 * SEC)
        .domain(
            DomainSpec::new(1)
                .param(DomainParams::Credit {
                    weight: 1024,
                    cap_pct: 150,
                })
                .threads(4, Workload::CpuBound),
        )
        .domain(
            DomainSpec::new(2)
                .weight(256)
                .threads(4, Workload::CpuBound),
        ));
    let capped = report.share(1);
    assert!(capped <= 150.5, "capped domain got {capped:.2}%");
    assert!(capped >= 148.0, "capped domain got only {capped:.2}%");
    assert_near("uncapped takes the rest", report.share(2), 250.0, 2.0);
}

fn mixed_workloads(cpus: u32) -> Scenario {
    Scenario::new(cpus, 3 * SEC)
        .seed(42)
        .domain(DomainSpec::new(1).weight(256).threads(
            2,
            Workload::DutyCycle {
                run_ns: 3 * MS,
                sleep_ns: 7 * MS,
            },
        ))
        .domain(DomainSpec::new(2).weight(512).threads(
            4,
            Workload::Bursty {
                run_min_ns: MS,
                run_max_ns: 20 * MS,
                sleep_min_ns: MS,
                sleep_max_ns: 30 * MS,
            },
        ))
        .domain(
            DomainSpec::new(3)
                .weight(128)
                .threads(1, Workload::CpuBound),
        )
        .domain(
            DomainSpec::new(4)
                .weight(256)
                .threads(1, Workload::Yielder { run_ns: 2 * MS }),
        )
        .domain(DomainSpec::new(5).weight(1024).threads(
            16,
            Workload::DutyCycle {
                run_ns: MS,
                sleep_ns: 9 * MS,
            },
        ))
}

#[test]
fn work_conserving_under_mixed_workloads() {
    for cpus in [2, 4] {
        let report = run(&mixed_workloads(cpus));
        let waste = report.idle_while_waiting_pct();
        assert!(
            waste < 1.0,
            "{cpus} CPUs: idle while work waited {waste:.3}% of CPU time"
        );
    }
}

#[test]
fn work_conserving_with_context_switch_cost() {
    let report = run(&mixed_workloads(4).switch_cost(20_000));
    assert!(report.switch_ns > 0);
    let waste = report.idle_while_waiting_pct();
    assert!(waste < 1.0, "idle while work waited {waste:.3}%");
}

#[test]
fn group_shares_the_masters_time() {
    // One CPU: master (256) and member (its own weight 1024 is ignored while
    // in the group) together get what a lone domain of weight 256 gets.
    let report = run(&Scenario::new(1, 3 * SEC)
        .domain(cpu_bound(1, 256).named("master"))
        .domain(
            DomainSpec::new(2)
                .named("member")
                .weight(1024)
                .param(DomainParams::Group {
                    master: Some(DomainId(1)),
                })
                .threads(1, Workload::CpuBound),
        )
        .domain(cpu_bound(3, 256).named("lone")));
    let group = report.share(1) + report.share(2);
    assert_near("group", group, 50.0, 2.0);
    assert_near("lone", report.share(3), 50.0, 2.0);
    assert_near("master", report.share(1), 25.0, 2.0);
    assert_near("member", report.share(2), 25.0, 2.0);
}

#[test]
fn group_on_two_cpus_equals_the_lone_domain() {
    let report = run(&Scenario::new(2, 3 * SEC)
        .domain(cpu_bound(1, 256))
        .domain(
            DomainSpec::new(2)
                .weight(256)
                .param(DomainParams::Group {
                    master: Some(DomainId(1)),
                })
                .threads(1, Workload::CpuBound),
        )
        .domain(cpu_bound(3, 256)));
    let group = report.share(1) + report.share(2);
    assert_near("group vs lone", group, report.share(3), 2.0);
    assert_near("group", group, 100.0, 2.0);
}

#[test]
fn leaving_a_group_restores_the_own_weight() {
    let report = run(&Scenario::new(1, 3 * SEC)
        .domain(cpu_bound(1, 256))
        .domain(
            DomainSpec::new(2)
                .weight(256)
                .param(DomainParams::Group {
                    master: Some(DomainId(1)),
                })
                .threads(1, Workload::CpuBound),
        )
        .domain(cpu_bound(3, 256))
        .at(
            SEC,
            Action::SetDomainParams(DomainId(2), DomainParams::Group { master: None }),
        ));
    // First second: 25/25/50; then three equal domains: 33.3 each.
    let want = |first: f64| (first + 2.0 * 100.0 / 3.0) / 3.0;
    assert_near("master", report.share(1), want(25.0), 2.0);
    assert_near("member", report.share(2), want(25.0), 2.0);
    assert_near("lone", report.share(3), want(50.0), 2.0);
}

#[test]
fn group_rules_are_enforced_without_side_effects() {
    let mut credit = Credit::new();
    for d in 1..=4 {
        credit
            .set_domain_params(
                DomainId(d),
                &DomainParams::Credit {
                    weight: 256,
                    cap_pct: 0,
                },
                0,
            )
            .unwrap();
    }
    let join = |master| DomainParams::Group {
        master: Some(DomainId(master)),
    };
    assert_eq!(
        credit.set_domain_params(DomainId(1), &join(1), 0),
        Err(PolicyError::GroupSelf {
            domain: DomainId(1)
        })
    );
    assert_eq!(
        credit.set_domain_params(DomainId(1), &join(9), 0),
        Err(PolicyError::UnknownDomain {
            domain: DomainId(9)
        })
    );
    credit.set_domain_params(DomainId(2), &join(1), 0).unwrap();
    assert_eq!(credit.group_master(DomainId(2)), Some(DomainId(1)));
    // 2 is a member: it cannot be a master.
    assert_eq!(
        credit.set_domain_params(DomainId(3), &join(2), 0),
        Err(PolicyError::MasterIsMember {
            master: DomainId(2),
            its_master: DomainId(1)
        })
    );
    // 1 is a master: it cannot become a member.
    assert_eq!(
        credit.set_domain_params(DomainId(1), &join(3), 0),
        Err(PolicyError::MemberIsMaster {
            domain: DomainId(1)
        })
    );
    // One group at a time.
    credit.set_domain_params(DomainId(4), &join(3), 0).unwrap();
    assert_eq!(
        credit.set_domain_params(DomainId(4), &join(1), 0),
        Err(PolicyError::AlreadyMember {
            domain: DomainId(4),
            master: DomainId(3)
        })
    );
    assert_eq!(
        credit.group_master(DomainId(4)),
        Some(DomainId(3)),
        "unchanged"
    );
    assert_eq!(credit.group_master(DomainId(3)), None);
    // Joining the same group again is a no-op; leaving works.
    credit.set_domain_params(DomainId(2), &join(1), 0).unwrap();
    credit
        .set_domain_params(DomainId(2), &DomainParams::Group { master: None }, 0)
        .unwrap();
    assert_eq!(credit.group_master(DomainId(2)), None);
}

#[test]
fn invalid_parameters_are_refused_and_change_nothing() {
    let mut credit = Credit::new();
    credit.add_cpu(tarn_sched_servers::CpuId(0), 0);
    credit.add_cpu(tarn_sched_servers::CpuId(1), 0);
    let d = DomainId(1);
    credit
        .set_domain_params(
            d,
            &DomainParams::Credit {
                weight: 300,
                cap_pct: 40,
            },
            0,
        )
        .unwrap();
    let before = credit.domain_params(d);
    for (params, error) in [
        (
            DomainParams::Credit {
                weight: 0,
                cap_pct: 0,
            },
            PolicyError::InvalidWeight { weight: 0 },
        ),
        (
            DomainParams::Credit {
                weight: 65_536,
                cap_pct: 0,
            },
            PolicyError::InvalidWeight { weight: 65_536 },
        ),
        (
            DomainParams::Credit {
                weight: 256,
                cap_pct: 201,
            },
            PolicyError::InvalidCap {
                cap_pct: 201,
                max_pct: 200,
            },
        ),
        (
            DomainParams::Sedf {
                period_ns: 10,
                slice_ns: 1,
                extra: false,
            },
            PolicyError::WrongPolicy { policy: "credit" },
        ),
    ] {
        assert_eq!(credit.set_domain_params(d, &params, 0), Err(error));
        assert_eq!(credit.domain_params(d), before);
    }
    credit
        .set_domain_params(
            d,
            &DomainParams::Credit {
                weight: 65_535,
                cap_pct: 200,
            },
            0,
        )
        .unwrap();

    credit
        .set_pool_params(&PoolParams::Credit {
            timeslice_ms: 10,
            ratelimit_us: 500,
        })
        .unwrap();
    let before = credit.pool_params();
    for (timeslice_ms, ratelimit_us, error) in [
        (0, 1000, PolicyError::InvalidTimeslice { timeslice_ms: 0 }),
        (
            1001,
            1000,
            PolicyError::InvalidTimeslice { timeslice_ms: 1001 },
        ),
        (
            30,
            99,
            PolicyError::InvalidRatelimit {
                ratelimit_us: 99,
                timeslice_ms: 30,
            },
        ),
        (
            1000,
            500_001,
            PolicyError::InvalidRatelimit {
                ratelimit_us: 500_001,
                timeslice_ms: 1000,
            },
        ),
        // The rate limit may not exceed the time slice.
        (
            1,
            2000,
            PolicyError::InvalidRatelimit {
                ratelimit_us: 2000,
                timeslice_ms: 1,
            },
        ),
    ] {
        let params = PoolParams::Credit {
            timeslice_ms,
            ratelimit_us,
        };
        assert_eq!(credit.set_pool_params(&params), Err(error));
        assert_eq!(credit.pool_params(), before, "no state change");
    }
    assert_eq!(
        credit.set_pool_params(&PoolParams::RoundRobin { timeslice_ms: 5 }),
        Err(PolicyError::WrongPolicy { policy: "credit" })
    );
    // Both ends of the ranges, and rate limiting off.
    for (timeslice_ms, ratelimit_us) in [(1, 0), (1, 100), (1000, 500_000), (30, 1000)] {
        credit
            .set_pool_params(&PoolParams::Credit {
                timeslice_ms,
                ratelimit_us,
            })
            .unwrap();
        assert_eq!(
            credit.pool_params(),
            Some(PoolParams::Credit {
                timeslice_ms,
                ratelimit_us
            })
        );
    }
}

#[test]
fn timeslice_bounds_every_entry() {
    let scenario = Scenario::new(1, SEC)
        .traced()
        .pool(PoolParams::Credit {
            timeslice_ms: 5,
            ratelimit_us: 0,
        })
        .domain(cpu_bound(1, 256))
        .domain(cpu_bound(2, 256));
    let report = run(&scenario);
    let longest = report
        .slices
        .iter()
        .map(|s| s.end_ns - s.start_ns)
        .max()
        .unwrap();
    assert!(
        longest <= 5 * MS,
        "an entry ran {longest} ns with a 5 ms slice"
    );
    assert_near("equal weights", report.share(1), 50.0, 2.0);
}

#[test]
fn ratelimit_delays_wakeup_preemption() {
    // A frequently waking thread preempts a CPU hog; with a 10 ms rate limit
    // the hog keeps the CPU at least 10 ms per entry.
    let scenario = |ratelimit_us| {
        Scenario::new(1, SEC)
            .traced()
            .pool(PoolParams::Credit {
                timeslice_ms: 30,
                ratelimit_us,
            })
            .domain(cpu_bound(1, 256))
            .domain(DomainSpec::new(2).weight(256).threads(
                1,
                Workload::DutyCycle {
                    run_ns: MS / 2,
                    sleep_ns: 2 * MS,
                },
            ))
    };
    let shortest_hog_entry = |report: &Report| {
        report
            .slices
            .iter()
            .filter(|s| s.domain == 0 && s.end_ns < SEC)
            .map(|s| s.end_ns - s.start_ns)
            .min()
            .unwrap()
    };
    let free = run(&scenario(100));
    let limited = run(&scenario(10_000));
    assert!(shortest_hog_entry(&free) < 10 * MS);
    assert!(
        shortest_hog_entry(&limited) >= 10 * MS,
        "{}",
        shortest_hog_entry(&limited)
    );
    assert!(limited.preemptions < free.preemptions);
}

#[test]
fn cpus_leave_and_join_while_running() {
    let report = run(&Scenario::new(2, 3 * SEC)
        .domain(cpu_bound(1, 256))
        .domain(cpu_bound(2, 512))
        .domain(cpu_bound(3, 256))
        .at(SEC, Action::RemoveCpu(1))
        .at(2 * SEC, Action::AddCpu(1)));
    // 1 s on 2 CPUs (50/100/50), 1 s on 1 CPU (25/50/25), 1 s on 2 CPUs.
    assert_near("d1", report.share(1), (50.0 + 25.0 + 50.0) / 3.0, 2.0);
    assert_near("d2", report.share(2), (100.0 + 50.0 + 100.0) / 3.0, 2.0);
    assert_near("d3", report.share(3), (50.0 + 25.0 + 50.0) / 3.0, 2.0);
}

#[test]
fn same_scenario_same_report() {
    let a = run(&mixed_workloads(4));
    let b = run(&mixed_workloads(4));
    assert_eq!(a, b);
    let c = run(&mixed_workloads(4).seed(43));
    assert_ne!(
        a.shares(),
        c.shares(),
        "the seed drives the bursty workload"
    );
}

#[test]
fn many_threads_follow_the_weights() {
    // 8 domains × 16 threads (128 threads) on 8 CPUs, weights 128..1024,
    // half of them CPU-bound, half bursty with short sleeps.
    let mut scenario = Scenario::new(8, 2 * SEC).seed(9);
    for d in 1..=8u32 {
        let workload = if d % 2 == 0 {
            Workload::CpuBound
        } else {
            Workload::Bursty {
                run_min_ns: MS,
                run_max_ns: 10 * MS,
                sleep_min_ns: 0,
                sleep_max_ns: MS,
            }
        };
        scenario = scenario.domain(DomainSpec::new(d).weight(128 * d).threads(16, workload));
    }
    let report = run(&scenario);
    assert!(report.idle_while_waiting_pct() < 1.0);
    // All are saturated (demand far above 800 %): shares follow the weights.
    for d in 1..=8u32 {
        let want = 800.0 * f64::from(d) / 36.0;
        assert_near(&format!("weight {}", 128 * d), report.share(d), want, 2.0);
    }
}

#[test]
fn weights_hold_when_switches_cost_time() {
    // 100 CPU-bound domains, weights 256/512 alternating, on 4 CPUs with a
    // 1 ms slice; every switch costs 50 µs (5 % of an entry), time no
    // domain gets. That loss must be shared by weight: each domain gets
    // its weight's part of what the domains ran in all.
    let mut scenario = Scenario::new(4, 4 * SEC)
        .switch_cost(50_000)
        .pool(PoolParams::Credit {
            timeslice_ms: 1,
            ratelimit_us: 1000,
        });
    for d in 1..=100u32 {
        let weight = if d % 2 == 1 { 256 } else { 512 };
        scenario = scenario.domain(cpu_bound(d, weight));
    }
    let report = run(&scenario);
    let total: f64 = (1..=100).map(|d| report.share(d)).sum();
    assert!(total < 390.0, "the switches cost time: {total:.1} %");
    for d in 1..=100u32 {
        let weight = if d % 2 == 1 { 1.0 } else { 2.0 };
        let want = total * weight / 150.0;
        assert_near(&format!("domain {d}"), report.share(d), want, want * 0.03);
    }
}
