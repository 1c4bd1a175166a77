//! `tarn-sim`: runs a scheduling policy in the deterministic simulator from
//! the command line (see `tarn-sim --help` and the `tarn_sched_sim` docs).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = tarn_sched_sim::cli::parse(&args).and_then(|cli| tarn_sched_sim::cli::run(&cli));
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("tarn-sim: {why}");
            ExitCode::from(2)
        }
    }
}
