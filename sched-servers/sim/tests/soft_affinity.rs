//! Soft affinity (`Policy::set_soft_affinity`) under credit: a preference,
//! never a restriction. CPU-bound domains run on the CPUs they prefer
//! (from the start, and after their preferences swap while both run on
//! the other's CPU); a soft-pinned domain among others keeps the share its
//! weight gives it; a soft set outside the hard one is ignored.

use tarn_sched_servers::credit::Credit;
use tarn_sched_sim::{cpu_mask, simulate, Action, DomainSpec, Report, Scenario, Workload, MS, SEC};

fn cpu_bound(id: u32) -> DomainSpec {
    DomainSpec::new(id)
        .weight(256)
        .threads(1, Workload::CpuBound)
}

/// Percent of domain `id`'s (1-based) run time between `from_ns` and
/// `to_ns` that it ran on `cpu` (the report's slices: the scenario must
/// record a trace).
fn on_cpu_pct(report: &Report, id: usize, cpu: u32, from_ns: u64, to_ns: u64) -> f64 {
    let mut total = 0u64;
    let mut there = 0u64;
    for slice in report.slices.iter().filter(|s| s.domain == id - 1) {
        let ran = slice
            .end_ns
            .min(to_ns)
            .saturating_sub(slice.start_ns.max(from_ns));
        total += ran;
        if slice.cpu == cpu {
            there += ran;
        }
    }
    assert!(total > 0, "domain {id} did not run in the window");
    there as f64 * 100.0 / total as f64
}

fn check_clean(report: &Report) {
    println!("{report}");
    assert_eq!(report.affinity_violations, 0);
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
}

#[test]
fn credit_runs_each_domain_on_the_cpu_it_prefers() {
    // Domain 1 prefers CPU 1 and domain 2 CPU 0, each one CPU-bound
    // thread on 2 CPUs: without the preference credit puts the first
    // thread on the first idle CPU (0). At 1 s the preferences swap while
    // each runs on the CPU it preferred: no CPU is ever idle, so only the
    // swap (a preferred CPU running a thread that prefers another) moves
    // them.
    let mut scenario = Scenario::new(2, 3 * SEC)
        .domain(cpu_bound(1).prefers(&[1]))
        .domain(cpu_bound(2).prefers(&[0]));
    let (a, b) = (scenario.thread_id(0, 0), scenario.thread_id(1, 0));
    scenario = scenario
        .at(SEC, Action::SetSoftAffinity(a, Some(cpu_mask(&[0]))))
        .at(SEC, Action::SetSoftAffinity(b, Some(cpu_mask(&[1]))));
    scenario.record_trace = true;
    let report = simulate(&mut Credit::new(), &scenario).expect("starts");
    check_clean(&report);
    for id in [1, 2] {
        let share = report.share(id);
        assert!(
            (share - 100.0).abs() <= 1.0,
            "domain {id}: {share:.2}% is not 100 ± 1"
        );
    }
    let after = SEC + 100 * MS;
    for (id, cpu, pct) in [
        (1, 1, on_cpu_pct(&report, 1, 1, 0, SEC)),
        (2, 0, on_cpu_pct(&report, 2, 0, 0, SEC)),
        (1, 0, on_cpu_pct(&report, 1, 0, after, 3 * SEC)),
        (2, 1, on_cpu_pct(&report, 2, 1, after, 3 * SEC)),
    ] {
        println!("domain {id}: {pct:.2}% on cpu {cpu}");
        assert!(
            pct >= 95.0,
            "domain {id} ran {pct:.1}% of its time on its preferred cpu {cpu}"
        );
    }
}

#[test]
fn credit_soft_affinity_never_costs_a_share() {
    // Equal weights, one CPU-bound thread each, 2 CPUs: each domain is
    // owed 2/3 of a CPU. Domain 1 prefers CPU 0 and runs there (CPU 0 can
    // give it 2/3), the shares stay 66.7 % each, and no CPU idles while a
    // thread waits.
    let mut scenario = Scenario::new(2, 6 * SEC)
        .domain(cpu_bound(1).prefers(&[0]))
        .domain(cpu_bound(2))
        .domain(cpu_bound(3));
    scenario.record_trace = true;
    let report = simulate(&mut Credit::new(), &scenario).expect("starts");
    check_clean(&report);
    for id in 1..=3 {
        let share = report.share(id);
        assert!(
            (share - 200.0 / 3.0).abs() <= 2.0,
            "domain {id}: {share:.2}% is not 66.67 ± 2"
        );
    }
    assert!(
        report.idle_while_waiting_pct() < 0.5,
        "idle while waiting: {:.2}%",
        report.idle_while_waiting_pct()
    );
    // Mostly there: priority comes before preference, so when an
    // accounting makes it UNDER while its CPU runs UNDER work and the other
    // runs OVER work, it preempts the other CPU rather than wait (Xen's
    // order; measured 85.9 % with OVER threads ranked by whole slices of
    // debt, then in FIFO order; over 95 % when they were ranked by credit
    // to the nanosecond).
    let pct = on_cpu_pct(&report, 1, 0, 0, 6 * SEC);
    println!("domain 1: {pct:.2}% on cpu 0");
    assert!(pct >= 80.0, "domain 1 ran {pct:.1}% of its time on cpu 0");
    // Two domains preferring different CPUs among weights 256, 512, 1024:
    // the shares credit gives without preferences (water-filled: 100 % to
    // the heaviest, the rest 1:2), each preference kept or not.
    let scenario = Scenario::new(2, 6 * SEC)
        .domain(cpu_bound(1).prefers(&[1]))
        .domain(
            DomainSpec::new(2)
                .weight(512)
                .threads(1, Workload::CpuBound)
                .prefers(&[1]),
        )
        .domain(
            DomainSpec::new(3)
                .weight(1024)
                .threads(1, Workload::CpuBound),
        );
    let report = simulate(&mut Credit::new(), &scenario).expect("starts");
    check_clean(&report);
    for (id, want) in [(1, 100.0 / 3.0), (2, 200.0 / 3.0), (3, 100.0)] {
        let share = report.share(id);
        assert!(
            (share - want).abs() <= 2.0,
            "domain {id}: {share:.2}% is not {want:.2} ± 2"
        );
    }
}

#[test]
fn a_soft_set_outside_the_hard_one_is_ignored() {
    // Domain 1 is pinned to CPU 0 and prefers CPU 1: the preference does
    // not meet its hard affinity, so it is ignored (it never runs on 1);
    // domain 2, preferring CPU 0, still gets CPU 1 rather than waiting.
    let mut scenario = Scenario::new(2, 2 * SEC)
        .domain(cpu_bound(1).pinned(&[0]).prefers(&[1]))
        .domain(cpu_bound(2).prefers(&[0]));
    scenario.record_trace = true;
    let report = simulate(&mut Credit::new(), &scenario).expect("starts");
    check_clean(&report);
    assert_eq!(on_cpu_pct(&report, 1, 0, 0, 2 * SEC), 100.0);
    for id in [1, 2] {
        let share = report.share(id);
        assert!(
            (share - 100.0).abs() <= 1.0,
            "domain {id}: {share:.2}% is not 100 ± 1"
        );
    }
}
