//! Deterministic host simulator for Tarn scheduling policies: runs any
//! [`Policy`](tarn_sched_servers::Policy) on N simulated CPUs under seeded
//! workloads, the way the on-metal server runtime drives it, and reports
//! what a policy writer needs to see.
//!
//! * **Model.** The kernel's side of the contract in `tarn_sched_servers`:
//!   one dispatch entry per CPU with a budget; entries end on block, yield or
//!   budget exhaustion with the exact `ran_ns`; `QueueEmpty` follows; kicks,
//!   preemptions (reported as `BudgetExpired`) and per-CPU one-shot timers
//!   (`Tick` with the running thread and its run so far); CPUs joining and
//!   leaving (the entry there ends with `Evicted`); a context-switch cost
//!   (default 0) charged to nobody. [`Scenario::periodic_tick_ns`] serves
//!   timers with a periodic tick instead, as a runtime without one-shot
//!   timers does (`examples/ticks.rs` compares the two). Dispatches the kernel would refuse (an
//!   unknown, blocked or already running thread, a zero budget, a CPU outside
//!   the pool) are recorded as protocol errors.
//! * **Hard affinity.** Threads may be pinned ([`DomainSpec::pinned`],
//!   [`DomainSpec::pin_thread`], [`Action::SetAffinity`], `--pin`); every
//!   dispatch to a CPU outside the thread's affinity while one of its CPUs
//!   is in the pool is counted in [`Report::affinity_violations`] and
//!   recorded as a protocol error.
//! * **Workloads** ([`Workload`]): CPU-bound, duty cycle (run X ms, sleep
//!   Y ms), bursty (seeded random bursts and sleeps), periodic real-time jobs
//!   with deadlines, and yielders; any number of threads per domain.
//! * **Determinism.** Integer nanoseconds, a seeded SplitMix64, no wall
//!   clock, a fixed order for simultaneous happenings: the same scenario gives
//!   the same [`Report`], bit for bit.
//! * **Report** ([`Report`]): per-domain share in percent of one CPU,
//!   deadline misses (a periodic job not finished by the next release), idle
//!   time while a runnable thread waited (work conservation) in percent of
//!   the pool's CPU time, migrations, context switches, preemptions, and the
//!   shares per time window. [`trace::write_chrome_trace`] writes a
//!   Perfetto/Chrome trace (one track per CPU, one slice per run);
//!   [`svg::write_svg`] an SVG chart of the shares over time.
//!
//! # Use from a test
//!
//! ```
//! use tarn_sched_servers::credit::Credit;
//! use tarn_sched_sim::{simulate, DomainSpec, Scenario, Workload, SEC};
//!
//! let scenario = Scenario::new(2, SEC)
//!     .domain(DomainSpec::new(1).weight(256).threads(1, Workload::CpuBound))
//!     .domain(DomainSpec::new(2).weight(512).threads(1, Workload::CpuBound))
//!     .domain(DomainSpec::new(3).weight(1024).threads(1, Workload::CpuBound));
//! let report = simulate(&mut Credit::new(), &scenario).unwrap();
//! assert!((report.share(3) - 100.0).abs() < 2.0);
//! assert!(report.protocol_errors.is_empty());
//! ```
//!
//! # The `tarn-sim` command
//!
//! ```text
//! cargo run -p tarn-sched-sim -- --policy credit --cpus 2 --domains 256,512,1024 \
//!     --seconds 3 --trace out.json --svg out.svg
//! cargo run -p tarn-sched-sim -- --policy sedf --cpus 2 --seconds 10 \
//!     --domains 10/100:work=jobs,30/50:work=jobs,20/40:work=jobs,-:threads=2
//! cargo run -p tarn-sched-sim -- --policy credit --cpus 4 \
//!     --domains 256:cap=50,512:work=duty3/7,1024:threads=4:work=bursty1-20/1-30
//! ```
//!
//! `--help` lists every option ([`cli::USAGE`]). A domain is
//! `PARAM[:KEY=VALUE...]`: a weight for credit and rr, `SLICE/PERIOD[x]` (ms,
//! `x` = extra time) or `-` for sedf; keys `cap=`, `threads=`, `work=`
//! (`cpu`, `dutyR/S`, `burstyA-B/C-D`, `jobs`, `yieldR`), `group=K` (credit:
//! member of domain K's group) and `name=`; `--pin [MS:]D@CPUS` pins domain
//! D's threads (from the start, or at MS; `all` unpins).

pub mod cli;
pub mod engine;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod svg;
pub mod trace;

pub use engine::{simulate, SimError};
pub use report::{expected_shares, DomainReport, Mark, Report, Slice};
pub use scenario::{cpu_mask, mask_cpus, Action, DomainSpec, Scenario, Workload, MS, SEC};
