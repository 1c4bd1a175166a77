//! How SEDF and credit fare when timers are served by a periodic tick
//! instead of one-shot timers: `cargo run -p tarn-sched-sim --example ticks`.

use tarn_sched_servers::credit::Credit;
use tarn_sched_servers::sedf::Sedf;
use tarn_sched_servers::DomainParams;
use tarn_sched_sim::{simulate, DomainSpec, Scenario, Workload, MS, SEC};

fn jobs(id: u32, slice_ms: u64, period_ms: u64) -> DomainSpec {
    DomainSpec::new(id)
        .sedf(slice_ms * MS, period_ms * MS, false)
        .threads(
            1,
            Workload::Periodic {
                period_ns: period_ms * MS,
                work_ns: slice_ms * MS,
            },
        )
}

fn main() {
    for tick in [None, Some(MS / 10), Some(MS), Some(3 * MS), Some(7 * MS)] {
        let mut scenario = Scenario::new(2, 10 * SEC)
            .domain(jobs(1, 10, 100))
            .domain(jobs(2, 30, 50))
            .domain(jobs(3, 20, 40))
            .domain(DomainSpec::new(4).threads(2, Workload::CpuBound));
        scenario.periodic_tick_ns = tick;
        let sedf = simulate(&mut Sedf::new(), &scenario).expect("starts");
        // CPU-bound reservations without extra time: released by timers only.
        let mut scenario = Scenario::new(2, 10 * SEC)
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
            );
        scenario.periodic_tick_ns = tick;
        let reserved = simulate(&mut Sedf::new(), &scenario).expect("starts");
        let mut scenario = Scenario::new(2, 3 * SEC)
            .domain(
                DomainSpec::new(1)
                    .param(DomainParams::Credit {
                        weight: 256,
                        cap_pct: 50,
                    })
                    .threads(1, Workload::CpuBound),
            )
            .domain(
                DomainSpec::new(2)
                    .weight(256)
                    .threads(1, Workload::CpuBound),
            )
            .domain(DomainSpec::new(3).weight(512).threads(
                1,
                Workload::DutyCycle {
                    run_ns: 3 * MS,
                    sleep_ns: 7 * MS,
                },
            ));
        scenario.periodic_tick_ns = tick;
        let credit = simulate(&mut Credit::new(), &scenario).expect("starts");
        println!(
            "timers {:>12}: sedf misses {:>3} (of {}), cpu-bound reservations {:.2} / {:.2} / {:.2} (of 10/60/50), \
             credit shares {:.2} / {:.2} / {:.2}",
            tick.map_or("one-shot".to_owned(), |t| format!("tick {} us", t / 1000)),
            sedf.deadline_misses(),
            sedf.domains.iter().map(|d| d.jobs).sum::<u64>(),
            reserved.share(1),
            reserved.share(2),
            reserved.share(3),
            credit.share(1),
            credit.share(2),
            credit.share(3),
        );
    }
}
