//! `prio-sim`: Tarn's simulator command line with this crate's policy
//! registered (`prio-sim --policy prio --cpus 1 --domains prio=2,prio=2,prio=1`).

fn main() -> std::process::ExitCode {
    tarn_sched_sim::cli::cli_main(&[("prio", || Box::new(tarn_policy_prio::Prio::default()))])
}
