//! `tarnctl`: the pool manager's console commands from the host, over the
//! control channel of a running Tarn (`cargo xtask run` exposes QEMU's
//! second serial port as the Unix socket `target/xtask/control.sock`).
//!
//! ```text
//! tarnctl [--socket PATH] [--json] COMMAND [ARGS...]
//! tarnctl --json cpupool-list          # one JSON document
//! tarnctl cpupool-create name=p1 sched=credit cpus=2-3
//! tarnctl load-policy prio target/x86_64-unknown-none/release/prio
//! ```
//!
//! `load-policy NAME FILE` sends a policy server's ELF over the channel:
//! afterwards pools can use policy NAME (`cpupool-sched P NAME`).
//!
//! The exit status is 0 when the command succeeded, 1 when it answered an
//! error, 2 when the channel failed.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: tarnctl [--socket PATH] [--json] COMMAND [ARGS...]\n\
    COMMAND is any console command (list, cpupool-list, cpupool-create ..., top, help),\n\
    or load-policy NAME FILE (a policy server ELF, then usable as sched=NAME);\n\
    --json asks list, cpupool-list and top for their JSON form.";

fn default_socket() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("xtask").join("control.sock")
}

fn main() -> ExitCode {
    let mut socket = default_socket();
    let mut json = false;
    let mut words = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--socket" => match args.next() {
                Some(path) => socket = path.into(),
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--json" => json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => words.push(arg),
        }
    }
    if words.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let load = match words.as_slice() {
        [command, name, file] if command == "load-policy" => match std::fs::read(file) {
            Ok(elf) => Some((name.clone(), elf)),
            Err(e) => {
                eprintln!("tarnctl: {file}: {e}");
                return ExitCode::from(2);
            }
        },
        [command, ..] if command == "load-policy" => {
            eprintln!("usage: tarnctl load-policy NAME FILE");
            return ExitCode::from(2);
        }
        _ => None,
    };
    let line = tarnctl::command_line(&words, json);
    let mut stream = match UnixStream::connect(&socket) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!(
                "tarnctl: cannot connect to {}: {e} (is `cargo xtask run` running?)",
                socket.display()
            );
            return ExitCode::from(2);
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let id = std::process::id().max(1);
    let answer = match &load {
        Some((name, elf)) => {
            tarnctl::load_policy(&mut stream, id, name, elf, Duration::from_secs(60))
        }
        None => tarnctl::run(&mut stream, id, &line, Duration::from_secs(60)),
    };
    match answer {
        Ok(answer) => {
            print!("{}", answer.output);
            if answer.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("tarnctl: {e}");
            ExitCode::from(2)
        }
    }
}
