//! Scratch.
use tarn_sched_servers::credit::Credit;
use tarn_sched_servers::{DomainId, DomainParams};
use tarn_sched_sim::*;
fn main() {
    let s = Scenario::new(2, 3000 * MS)
        .traced()
        .domain(
            DomainSpec::new(1)
                .weight(256)
                .threads(1, Workload::CpuBound),
        )
        .domain(
            DomainSpec::new(2)
                .weight(256)
                .param(DomainParams::Group {
                    master: Some(DomainId(1)),
                })
                .threads(1, Workload::CpuBound),
        )
        .domain(
            DomainSpec::new(3)
                .weight(256)
                .threads(1, Workload::CpuBound),
        );
    let r = simulate(&mut Credit::new(), &s).unwrap();
    for sl in &r.slices {
        println!(
            "cpu{} d{} {:.3}-{:.3}",
            sl.cpu,
            sl.domain + 1,
            sl.start_ns as f64 / 1e6,
            sl.end_ns as f64 / 1e6
        );
    }
}
