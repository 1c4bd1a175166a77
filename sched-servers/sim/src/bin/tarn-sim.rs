//! `tarn-sim`: runs a scheduling policy in the deterministic simulator from
//! the command line (see `tarn-sim --help` and the `tarn_sched_sim` docs).

fn main() -> std::process::ExitCode {
    tarn_sched_sim::cli::cli_main(&[])
}
