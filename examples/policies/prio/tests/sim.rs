//! The prio policy in Tarn's deterministic simulator.

use tarn_policy_prio::Prio;
use tarn_sched_sim::{simulate, DomainSpec, Scenario, Workload, MS, SEC};

fn cpu_bound(id: u32, prio: &str) -> DomainSpec {
    DomainSpec::new(id)
        .values(prio)
        .threads(1, Workload::CpuBound)
}

#[test]
fn the_top_priority_shares_one_cpu_and_the_lower_one_starves() {
    let scenario = Scenario::new(1, 3 * SEC)
        .domain(cpu_bound(1, "prio=2"))
        .domain(cpu_bound(2, "prio=2"))
        .domain(cpu_bound(3, "prio=1"));
    let report = simulate(&mut Prio::default(), &scenario).unwrap();
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
    let shares: Vec<f64> = report.domains.iter().map(|d| d.share_pct).collect();
    println!("{report}");
    assert!((shares[0] - 50.0).abs() < 1.0, "{shares:?}");
    assert!((shares[1] - 50.0).abs() < 1.0, "{shares:?}");
    assert!(shares[2] < 0.5, "{shares:?}");
}

#[test]
fn three_cpus_run_all_three() {
    let scenario = Scenario::new(3, 2 * SEC)
        .domain(cpu_bound(1, "prio=2"))
        .domain(cpu_bound(2, "prio=2"))
        .domain(cpu_bound(3, "prio=1"));
    let report = simulate(&mut Prio::default(), &scenario).unwrap();
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
    for d in &report.domains {
        assert!(d.share_pct > 99.0, "{report}");
    }
    assert!(report.idle_while_waiting_pct() < 1.0);
}

#[test]
fn a_waking_higher_priority_preempts() {
    // A low-priority hog and a high-priority thread running 2 ms of every
    // 10: the high one gets all it asks for (20 %), the hog the rest.
    let scenario = Scenario::new(1, 2 * SEC)
        .domain(cpu_bound(1, "prio=0"))
        .domain(DomainSpec::new(2).values("prio=5").threads(
            1,
            Workload::DutyCycle {
                run_ns: 2 * MS,
                sleep_ns: 8 * MS,
            },
        ));
    let report = simulate(&mut Prio::default(), &scenario).unwrap();
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
    let high = report.domains[1].share_pct;
    assert!((high - 20.0).abs() < 1.0, "{report}");
    assert!(report.idle_while_waiting_pct() < 1.0);
}

#[test]
fn parameters_are_checked_against_the_declaration() {
    let scenario = Scenario::new(1, SEC).domain(cpu_bound(1, "prio=100"));
    let error = simulate(&mut Prio::default(), &scenario).unwrap_err();
    assert_eq!(
        error.to_string(),
        "domain 1: parameters refused: prio: 100 is outside 0..=99"
    );
}
