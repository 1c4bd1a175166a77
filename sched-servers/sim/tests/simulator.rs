//! The simulator itself: its kernel checks, outputs and determinism.

use tarn_sched_servers::credit::Credit;
use tarn_sched_servers::{
    CpuId, Decision, Dispatch, DomainId, DomainParams, Event, Policy, PolicyError, PoolParams,
    ThreadId,
};
use tarn_sched_sim::{simulate, svg, trace, DomainSpec, Scenario, Workload, MS, SEC};

/// A broken policy: always dispatches thread 1, even when it is blocked or
/// already running elsewhere. Kicks both CPUs once, or after every call.
struct Stubborn {
    kicks_forever: bool,
    kicked: bool,
}

impl Policy for Stubborn {
    fn name(&self) -> &'static str {
        "stubborn"
    }
    fn add_cpu(&mut self, _cpu: CpuId, _now_ns: u64) {}
    fn remove_cpu(&mut self, _cpu: CpuId, _now_ns: u64) {}
    fn add_thread(
        &mut self,
        _t: ThreadId,
        _d: DomainId,
        _r: bool,
        _now_ns: u64,
    ) -> Result<(), PolicyError> {
        Ok(())
    }
    fn remove_thread(&mut self, _thread: ThreadId, _now_ns: u64) {}
    fn remove_domain(&mut self, _domain: DomainId, _now_ns: u64) {}
    fn on_event(&mut self, _event: &Event) {}
    fn pick_next(&mut self, _cpu: CpuId, _now_ns: u64) -> Option<Dispatch> {
        Some(Dispatch {
            thread: ThreadId(1),
            budget_ns: MS,
        })
    }
    fn take_decisions(&mut self, out: &mut Vec<Decision>) {
        if self.kicks_forever || !self.kicked {
            self.kicked = true;
            out.push(Decision::Kick { cpu: CpuId(0) });
            out.push(Decision::Kick { cpu: CpuId(1) });
        }
    }
    fn set_domain_params(
        &mut self,
        _d: DomainId,
        _p: &DomainParams,
        _now_ns: u64,
    ) -> Result<(), PolicyError> {
        Ok(())
    }
    fn set_pool_params(&mut self, _params: &PoolParams) -> Result<(), PolicyError> {
        Ok(())
    }
}

#[test]
fn contract_violations_are_reported() {
    let scenario = Scenario::new(2, 100 * MS).domain(DomainSpec::new(1).threads(
        1,
        Workload::DutyCycle {
            run_ns: MS,
            sleep_ns: MS,
        },
    ));
    let report = simulate(
        &mut Stubborn {
            kicks_forever: false,
            kicked: false,
        },
        &scenario,
    )
    .unwrap();
    let errors = report.protocol_errors.join("\n");
    assert!(
        errors.contains("dispatch of thread 1 on cpu 1 while it runs on cpu 0"),
        "{errors}"
    );
    assert!(errors.contains("dispatch of blocked thread 1"), "{errors}");
    // A policy that kicks forever is stopped, and said to be.
    let report = simulate(
        &mut Stubborn {
            kicks_forever: true,
            kicked: false,
        },
        &scenario,
    )
    .unwrap();
    let errors = report.protocol_errors.join("\n");
    assert!(errors.contains("does not settle"), "{errors}");
}

fn traced() -> Scenario {
    Scenario::new(2, 600 * MS)
        .traced()
        .domain(
            DomainSpec::new(1)
                .named("web")
                .weight(256)
                .threads(1, Workload::CpuBound),
        )
        .domain(DomainSpec::new(2).named("db").weight(512).threads(
            2,
            Workload::DutyCycle {
                run_ns: 4 * MS,
                sleep_ns: 4 * MS,
            },
        ))
}

#[test]
fn trace_has_one_track_per_cpu_and_a_slice_per_run() {
    let report = simulate(&mut Credit::new(), &traced()).unwrap();
    let mut json = Vec::new();
    trace::write_chrome_trace(&report, &mut json).unwrap();
    let json = String::from_utf8(json).unwrap();
    assert!(json.starts_with("{\"displayTimeUnit\":\"ns\",\"traceEvents\":["));
    assert!(json.trim_end().ends_with("]}"));
    assert!(json.contains("\"name\":\"CPU 0\"") && json.contains("\"name\":\"CPU 1\""));
    assert_eq!(json.matches("\"ph\":\"X\"").count(), report.slices.len());
    assert!(!report.slices.is_empty());
    // Slices are where the time went: they add up to the domains' CPU time.
    let sliced: u64 = report.slices.iter().map(|s| s.end_ns - s.start_ns).sum();
    let used: u64 = report.domains.iter().map(|d| d.cpu_ns).sum();
    assert_eq!(sliced, used);
    // Brackets and braces balance (a cheap well-formedness check).
    assert_eq!(json.matches('{').count(), json.matches('}').count());
    assert_eq!(json.matches('[').count(), json.matches(']').count());
}

#[test]
fn svg_draws_a_line_per_domain() {
    let report = simulate(&mut Credit::new(), &traced()).unwrap();
    let text = svg::render(&report);
    assert!(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(text.trim_end().ends_with("</svg>"));
    assert_eq!(text.matches("<polyline").count(), 2);
    assert!(text.contains(">web ") && text.contains(">db "));
    assert_eq!(report.samples.len(), 6, "600 ms in 100 ms windows");
    // Each window's shares add up to at most the CPUs.
    for window in &report.samples {
        assert!(window.iter().sum::<f64>() <= 200.0 + 1e-9);
    }
}

#[test]
fn reports_are_reproducible() {
    let scenario = Scenario::new(4, SEC)
        .seed(99)
        .domain(DomainSpec::new(1).threads(
            12,
            Workload::Bursty {
                run_min_ns: MS,
                run_max_ns: 9 * MS,
                sleep_min_ns: MS,
                sleep_max_ns: 9 * MS,
            },
        ));
    let first = simulate(&mut Credit::new(), &scenario).unwrap();
    let second = simulate(&mut Credit::new(), &scenario).unwrap();
    assert_eq!(first, second);
}

#[test]
fn refused_setup_is_an_error() {
    let scenario =
        Scenario::new(1, SEC).domain(DomainSpec::new(1).weight(0).threads(1, Workload::CpuBound));
    let error = simulate(&mut Credit::new(), &scenario).unwrap_err();
    assert_eq!(
        error.to_string(),
        "domain 1: parameters refused: weight 0 is outside 1..=65535"
    );
    let scenario = Scenario::new(1, SEC).domain(DomainSpec::new(1).sedf(MS, 10 * MS, false));
    assert!(simulate(&mut Credit::new(), &scenario).is_err());
    let _ = SEC;
}
