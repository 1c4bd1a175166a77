//! Open parameters: credit, SEDF and rr set through `key=value` text, as the
//! protocol, xl.cfg and `sched-param` carry them. Every refusal names its key
//! and changes nothing.

use tarn_sched_servers::credit::Credit;
use tarn_sched_servers::params::{format_values, parse_values};
use tarn_sched_servers::rr::RoundRobin;
use tarn_sched_servers::sedf::Sedf;
use tarn_sched_servers::{CpuId, DomainId, DomainParams, Policy, ThreadId};

/// Parses `text` against the policy's domain specs and applies it.
fn set_domain<P: Policy>(policy: &mut P, domain: u32, text: &str) -> Result<(), String> {
    let values = parse_values(policy.domain_param_specs(), text).map_err(|e| e.to_string())?;
    policy
        .set_domain_values(DomainId(domain), &values, 0)
        .map_err(|e| e.to_string())
}

fn set_pool<P: Policy>(policy: &mut P, text: &str) -> Result<(), String> {
    let values = parse_values(policy.pool_param_specs(), text).map_err(|e| e.to_string())?;
    policy
        .set_pool_values(&values, 0)
        .map_err(|e| e.to_string())
}

fn domain_text<P: Policy>(policy: &P, domain: u32) -> String {
    format_values(&policy.domain_values(DomainId(domain)))
}

#[test]
fn credit_through_key_values() {
    let mut credit = Credit::new();
    credit.add_cpu(CpuId(0), 0);
    assert_eq!(domain_text(&credit, 1), "weight=256 cap=0 group=0");
    set_domain(&mut credit, 1, "weight=512").unwrap();
    set_domain(&mut credit, 1, "cap=50").unwrap();
    assert_eq!(domain_text(&credit, 1), "weight=512 cap=50 group=0");
    assert_eq!(
        credit.domain_params(DomainId(1)),
        Some(DomainParams::Credit {
            weight: 512,
            cap_pct: 50
        })
    );
    // Refusals: the key is named, nothing changes (not even the valid
    // weight given with the bad cap).
    for (text, error) in [
        ("weight=0", "weight: 0 is outside 1..=65535"),
        (
            "weight=100 cap=150",
            "cap: cap 150% exceeds 100% (100% per CPU of the pool)",
        ),
        ("group=1", "group: domain 1 cannot join its own group"),
        (
            "slice=5",
            "slice: unknown parameter (known: weight, cap, group)",
        ),
    ] {
        assert_eq!(set_domain(&mut credit, 1, text).unwrap_err(), error);
        assert_eq!(domain_text(&credit, 1), "weight=512 cap=50 group=0");
    }
    set_domain(&mut credit, 2, "group=1").unwrap();
    assert_eq!(domain_text(&credit, 2), "weight=256 cap=0 group=1");
    assert_eq!(credit.group_master(DomainId(2)), Some(DomainId(1)));
    set_domain(&mut credit, 2, "group=0").unwrap();
    assert_eq!(credit.group_master(DomainId(2)), None);

    assert_eq!(
        format_values(&credit.pool_values()),
        "timeslice_ms=30 ratelimit_us=1000"
    );
    set_pool(&mut credit, "timeslice_ms=5").unwrap();
    assert_eq!(
        set_pool(&mut credit, "ratelimit_us=50").unwrap_err(),
        "ratelimit_us: rate limit 50 us is neither 0 nor within 100..=500000 us \
         and no longer than the 5 ms time slice"
    );
    assert_eq!(
        format_values(&credit.pool_values()),
        "timeslice_ms=5 ratelimit_us=1000"
    );
}

#[test]
fn sedf_through_key_values() {
    let mut sedf = Sedf::new();
    sedf.add_cpu(CpuId(0), 0);
    // Reservations are per thread: admission control needs the threads.
    sedf.add_thread(ThreadId(1), DomainId(1), true, 0).unwrap();
    sedf.add_thread(ThreadId(2), DomainId(2), true, 0).unwrap();
    assert_eq!(domain_text(&sedf, 1), "period=100 slice=0 extra=1");
    set_domain(&mut sedf, 1, "period=100 slice=60 extra=0").unwrap();
    assert_eq!(domain_text(&sedf, 1), "period=100 slice=60 extra=0");
    let error = set_domain(&mut sedf, 2, "period=50 slice=25 extra=0").unwrap_err();
    assert!(
        error.starts_with("the reservation does not fit the pool (domain 2"),
        "{error}"
    );
    assert_eq!(domain_text(&sedf, 2), "period=100 slice=0 extra=1");
    assert_eq!(
        set_domain(&mut sedf, 1, "slice=200").unwrap_err(),
        "slice: slice 200000000 ns must be at most the period (100000000 ns), \
         and 0 only with extra time"
    );
    assert_eq!(domain_text(&sedf, 1), "period=100 slice=60 extra=0");
    set_domain(&mut sedf, 1, "slice=20").unwrap();
    assert_eq!(domain_text(&sedf, 1), "period=100 slice=20 extra=0");
    set_pool(&mut sedf, "extra_quantum_ms=5").unwrap();
    assert_eq!(format_values(&sedf.pool_values()), "extra_quantum_ms=5");
}

#[test]
fn rr_has_a_pool_parameter_only() {
    let mut rr = RoundRobin::default();
    assert!(rr.domain_param_specs().is_empty());
    assert_eq!(
        set_domain(&mut rr, 1, "weight=5").unwrap_err(),
        "weight: unknown parameter (this policy has none here)"
    );
    set_domain(&mut rr, 1, "").unwrap();
    set_pool(&mut rr, "timeslice_ms=3").unwrap();
    assert_eq!(
        set_pool(&mut rr, "timeslice_ms=0").unwrap_err(),
        "timeslice_ms: 0 is outside 1..=1000"
    );
    assert_eq!(format_values(&rr.pool_values()), "timeslice_ms=3");
}
