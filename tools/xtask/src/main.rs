//! `cargo xtask`: builds Tarn, boots it under QEMU (SVM) or Bochs (VMX),
//! runs the test suite and the benchmarks. Run `cargo xtask help`.
#![forbid(unsafe_code)]

mod ctx;
mod deps;
mod emu;
mod images;
mod linux;
mod newpolicy;
mod suite;

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tarn_tests::{split_commands, Emulator, Image, CONSOLE_PROMPT};

use ctx::{run_checked, Ctx, Result};
use emu::{Boot, Session};
use images::{KERNEL_PACKAGE, TARGET};
use suite::{BenchOptions, TestOptions};

/// Exit status of `run` when the kernel gave no verdict (timeout, triple
/// fault, emulator failure). Kernel statuses that QEMU can report are 0..=127.
const NO_VERDICT: u8 = 125;

/// Default `run` timeout when stdin is not a terminal (scripts, CI).
const NONINTERACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// The kernel command line `run` uses without `--append` (3+ CPUs): Pool-0
/// keeps two CPUs, the demo's second pool takes the others, and the PIT
/// paces QEMU's icount turns.
const DEMO_APPEND: &str = "pool0_cpus=2 pace_hz=10000";

/// Default `run --exec` timeout.
const EXEC_TIMEOUT: Duration = Duration::from_secs(120);

const HELP: &str = "\
cargo xtask <command> [options]

commands:
  build                 build both kernel images (and the user images they embed)
                        and print their paths: the system image (what `run`
                        boots) and the test image (adds the test tasks)
  run [options]         build, then boot under QEMU (default) or Bochs (--vmx);
                        boots the system image, or the test image when the
                        command line starts a test task (test, fuzz, bench,
                        schedtest)
      --smp N           CPUs (default 4; 2 with --vmx)
      --append ARGS     kernel command line (default, with 3 or more CPUs: the
                        demo, `pool0_cpus=2 pace_hz=10000` under --icount, so
                        the second pool finds free CPUs and `top` shows the
                        schedulers rather than the host's load)
      --config DIR      pack DIR's pools/ and domains/ configs (and their auto/)
                        and autorun.cmds into a cpio archive and boot with it
                        (QEMU -initrd, a GRUB module under --vmx): it replaces
                        root-task/config (the demo)
      --numa N          QEMU: N NUMA nodes (2..8; CPUs and memory split evenly;
                        the firmware's SRAT tells the kernel)
      --icount          QEMU -icount shift=0,sleep=off (TSC counts instructions)
      --vmx             boot under Bochs through a GRUB ISO (VMX machine)
      --ips N           with --vmx: Bochs' emulated instructions per second
                        (default 4000000; higher makes each instruction a
                        smaller share of emulated time, boots more slowly)
      --gdb             QEMU -s -S: wait for `gdb target/x86_64-unknown-none/kernel/tarn-kernel
                        -ex 'target remote :1234'`
      --timeout SECS    kill the emulator after SECS (default: none on a terminal,
                        300 otherwise; 120 with --exec)
      --elf PATH        boot this ELF instead of building (also for `test`;
                        it then serves as both images)
      --exec \"CMD; CMD\" QEMU only: type commands into the root task's serial
                        console instead of connecting the terminal to it. xtask
                        waits for each `tarn> ` prompt on the serial output and
                        answers it with the next command and a carriage return;
                        after the last one it waits for the kernel's verdict or
                        the timeout (end with `poweroff`). Commands are split on
                        `;` (and line breaks) and trimmed; empty ones are
                        skipped; a repeated --exec appends. The output is still
                        shown live. Fails (125) if the console never prompts in
                        time; warns if the kernel exits before all were sent.
                        e.g. cargo xtask run --exec \"help; info; poweroff\"
    exit status: the kernel's exit status, or 125 without a verdict
  test [options]        host unit tests (cargo test), then every boot scenario
      --filter SUBSTR   only scenarios whose name contains SUBSTR
      --no-host         skip the host unit tests
      --jobs N          emulators running at once (default 2)
      --elf PATH        boot this ELF instead of building
  bench [options]       boot `bench` under QEMU with icount on 2 CPUs (and the VM-exit
                        guest under QEMU and Bochs); print the figures
      --json            one JSON object per figure
      --compare FILE    fail when a figure grows by more than 2 % over FILE's (the
                        committed figures: tests/bench-figures.txt), or when FILE
                        and the run do not name the same figures
      --write FILE      write the figures to FILE in that format
  lint                  cargo fmt --check and clippy -D warnings (host crates and kernel)
  deps                  run tools/install-deps.sh (QEMU >= 8.1, Bochs, GRUB tools)
  new-policy NAME       create a scheduling-policy crate outside the workspace
      --path DIR        where (default ./NAME): the policy, simulator tests, a
                        simulator binary, the server binary (`cargo server`)
  help                  this text";

/// Options of `cargo xtask run`.
struct RunOptions {
    smp: Option<u32>,
    append: Option<String>,
    config: Option<PathBuf>,
    icount: bool,
    vmx: bool,
    /// Bochs' instructions per emulated second (`--ips`).
    ips: Option<u32>,
    gdb: bool,
    timeout: Option<Duration>,
    elf: Option<PathBuf>,
    /// Console commands to type after each prompt (`--exec`).
    exec: Vec<String>,
    /// NUMA nodes (`--numa`, QEMU).
    numa: Option<u32>,
}

/// A parsed command line.
enum Command {
    Build,
    Run(RunOptions),
    Test(TestOptions),
    Bench(BenchOptions),
    Lint,
    Deps,
    /// `new-policy NAME [--path DIR]`.
    NewPolicy(String, Option<PathBuf>),
    LinuxFetch,
    Help,
}

/// Splits `--name=value` and `--name value` options.
struct Args {
    words: std::vec::IntoIter<String>,
}

impl Args {
    /// The next option: its name and an inline `=value`, if any.
    fn next_option(&mut self) -> Option<(String, Option<String>)> {
        let word = self.words.next()?;
        Some(match word.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (word, None),
        })
    }

    /// The value of option `name` (inline or the next word).
    fn value(&mut self, name: &str, inline: Option<String>) -> Result<String> {
        inline
            .or_else(|| self.words.next())
            .ok_or_else(|| format!("{name} needs a value"))
    }

    /// A numeric option value.
    fn number(&mut self, name: &str, inline: Option<String>) -> Result<u64> {
        let value = self.value(name, inline)?;
        value
            .parse()
            .map_err(|_| format!("{name}: `{value}` is not a number"))
    }
}

/// Rejects an inline value on a flag that takes none.
fn no_value(name: &str, inline: Option<String>) -> Result<()> {
    match inline {
        Some(_) => Err(format!("{name} takes no value")),
        None => Ok(()),
    }
}

/// Parses the command line (without the program name).
fn parse(words: Vec<String>) -> Result<Command> {
    let mut args = Args {
        words: words.into_iter(),
    };
    let Some((command, _)) = args.next_option() else {
        return Ok(Command::Help);
    };
    let unknown = |option: &str| {
        Err(format!(
            "unknown option `{option}` for `{command}` (see `cargo xtask help`)"
        ))
    };
    match command.as_str() {
        "linux-fetch" => Ok(Command::LinuxFetch),
        "build" | "lint" | "deps" | "help" | "-h" | "--help" => {
            if let Some((option, _)) = args.next_option() {
                return unknown(&option);
            }
            Ok(match command.as_str() {
                "build" => Command::Build,
                "lint" => Command::Lint,
                "deps" => Command::Deps,
                _ => Command::Help,
            })
        }
        "new-policy" => {
            let mut name = None;
            let mut path = None;
            while let Some((option, inline)) = args.next_option() {
                match option.as_str() {
                    "--path" => path = Some(PathBuf::from(args.value("--path", inline)?)),
                    word if !word.starts_with('-') && name.is_none() => {
                        no_value(word, inline)?;
                        name = Some(word.to_owned());
                    }
                    other => return unknown(other),
                }
            }
            let name = name.ok_or("new-policy needs a NAME")?;
            Ok(Command::NewPolicy(name, path))
        }
        "run" => {
            let mut run = RunOptions {
                smp: None,
                append: None,
                config: None,
                icount: false,
                vmx: false,
                ips: None,
                gdb: false,
                timeout: None,
                elf: None,
                exec: Vec::new(),
                numa: None,
            };
            while let Some((option, inline)) = args.next_option() {
                match option.as_str() {
                    "-h" | "--help" => return Ok(Command::Help),
                    "--smp" => {
                        let smp = args.number(&option, inline)?;
                        run.smp = Some(
                            u32::try_from(smp)
                                .ok()
                                .filter(|n| (1..=255).contains(n))
                                .ok_or("--smp must be between 1 and 255")?,
                        );
                    }
                    "--append" => run.append = Some(args.value(&option, inline)?),
                    "--numa" => {
                        let nodes = args.number(&option, inline)?;
                        run.numa = Some(
                            u32::try_from(nodes)
                                .ok()
                                .filter(|n| (2..=8).contains(n))
                                .ok_or("--numa must be between 2 and 8")?,
                        );
                    }
                    "--config" => run.config = Some(args.value(&option, inline)?.into()),
                    "--exec" => {
                        let list = args.value(&option, inline)?;
                        let commands = split_commands(&list);
                        if commands.is_empty() {
                            return Err(format!("--exec: no command in {list:?}"));
                        }
                        run.exec.extend(commands);
                    }
                    "--elf" => run.elf = Some(args.value(&option, inline)?.into()),
                    "--timeout" => {
                        run.timeout = Some(Duration::from_secs(args.number(&option, inline)?));
                    }
                    "--icount" => {
                        no_value(&option, inline)?;
                        run.icount = true;
                    }
                    "--vmx" => {
                        no_value(&option, inline)?;
                        run.vmx = true;
                    }
                    "--gdb" => {
                        no_value(&option, inline)?;
                        run.gdb = true;
                    }
                    "--ips" => {
                        let ips = args.number(&option, inline)?;
                        run.ips = Some(
                            u32::try_from(ips)
                                .ok()
                                .filter(|n| (1_000_000..=1_000_000_000).contains(n))
                                .ok_or("--ips must be between 1000000 and 1000000000")?,
                        );
                    }
                    other => return unknown(other),
                }
            }
            if run.vmx && run.icount {
                return Err(
                    "--icount does not apply to --vmx: Bochs is already clocked by \
                            instructions (clock: sync=none, fixed ips)"
                        .to_owned(),
                );
            }
            if run.vmx && !run.exec.is_empty() {
                return Err(
                    "--exec is QEMU-only: Bochs has no serial input here (its COM1 is an \
                     output-only file), so xtask cannot type into the console; drop --vmx"
                        .to_owned(),
                );
            }
            if run.ips.is_some() && !run.vmx {
                return Err("--ips sets Bochs' clock; it needs --vmx".to_owned());
            }
            if run.vmx && run.gdb {
                return Err(
                    "--gdb is QEMU-only (Bochs here has its own debugger, not a gdb stub)"
                        .to_owned(),
                );
            }
            Ok(Command::Run(run))
        }
        "test" => {
            let mut test = TestOptions {
                filter: None,
                host: true,
                jobs: 2,
                elf: None,
            };
            while let Some((option, inline)) = args.next_option() {
                match option.as_str() {
                    "-h" | "--help" => return Ok(Command::Help),
                    "--filter" => test.filter = Some(args.value(&option, inline)?),
                    "--elf" => test.elf = Some(args.value(&option, inline)?.into()),
                    "--no-host" => {
                        no_value(&option, inline)?;
                        test.host = false;
                    }
                    "--jobs" => {
                        let jobs = args.number(&option, inline)?;
                        test.jobs = usize::try_from(jobs).unwrap_or(1).max(1);
                    }
                    other => return unknown(other),
                }
            }
            Ok(Command::Test(test))
        }
        "bench" => {
            let mut bench = BenchOptions::default();
            while let Some((option, inline)) = args.next_option() {
                match option.as_str() {
                    "-h" | "--help" => return Ok(Command::Help),
                    "--json" => {
                        no_value(&option, inline)?;
                        bench.json = true;
                    }
                    "--compare" => bench.compare = Some(args.value(&option, inline)?.into()),
                    "--write" => bench.write = Some(args.value(&option, inline)?.into()),
                    other => return unknown(other),
                }
            }
            Ok(Command::Bench(bench))
        }
        other => Err(format!(
            "unknown command `{other}` (see `cargo xtask help`)"
        )),
    }
}

/// `cargo xtask run`: build, boot, return the kernel's exit status.
fn run(ctx: &Ctx, options: &RunOptions) -> Result<u8> {
    deps::ensure_emulators(ctx, options.vmx)?;
    let initrd = match &options.config {
        Some(dir) => Some(images::pack_config(
            ctx,
            dir,
            // One archive per process: runs side by side must not boot
            // each other's configs.
            &ctx.xtask_dir()
                .join(format!("config-{}.cpio", std::process::id())),
        )?),
        None => None,
    };
    let emulator = if options.vmx {
        Emulator::Bochs
    } else {
        Emulator::Qemu
    };
    let smp = options.smp.unwrap_or(if options.vmx { 2 } else { 4 });
    // The demo (no --append, QEMU) runs under icount: with more vCPUs than
    // host cores, the host would preempt vCPUs that hold the kernel lock and
    // `top` would show the emulator, not the schedulers.
    let demo = options.append.is_none() && !options.vmx && smp >= 3;
    let boot = Boot {
        emulator,
        smp,
        append: options
            .append
            .clone()
            .unwrap_or_else(|| String::from(if smp >= 3 { DEMO_APPEND } else { "" })),
        icount: options.icount || (demo && !options.gdb),
        gdb: options.gdb,
        bochs_ips: options.ips.unwrap_or(tarn_tests::DEFAULT_BOCHS_IPS),
        control: (emulator == Emulator::Qemu).then(|| ctx.xtask_dir().join("control.sock")),
        initrd,
        numa_nodes: options.numa.unwrap_or(0),
    };
    // The system image unless the command line starts a test task.
    let image = Image::for_cmdline(&boot.append);
    let images = images::build_or_use(ctx, options.elf.as_deref(), &[image])?;
    let kernel = images.kernel(image);
    let feeding = !options.exec.is_empty();
    let interactive = std::io::stdin().is_terminal() && !feeding;
    let timeout = match options.timeout {
        Some(timeout) => Some(timeout),
        // A debugging session is not cut short.
        None if options.gdb => None,
        None if feeding => Some(EXEC_TIMEOUT),
        None if interactive => None,
        None => Some(NONINTERACTIVE_TIMEOUT),
    };
    if options.gdb {
        eprintln!(
            "xtask: QEMU waits for a debugger; attach with:\n  gdb {} -ex 'target remote :1234'",
            kernel.display()
        );
    }
    eprintln!(
        "xtask: booting the {} image under {emulator} with {} cpus, append {:?}{}",
        match image {
            Image::System => "system",
            Image::Test => "test",
        },
        boot.smp,
        boot.append,
        match emulator {
            Emulator::Qemu if boot.icount => String::from(", icount"),
            Emulator::Qemu => String::new(),
            Emulator::Bochs => format!(", {} instructions per second", boot.bochs_ips),
        }
    );
    if let Some(socket) = &boot.control {
        eprintln!(
            "xtask: control channel on {} (cargo run -p tarnctl -- --json cpupool-list)",
            socket.display()
        );
    }
    if emulator == Emulator::Bochs && interactive {
        eprintln!("xtask: (Bochs' serial port is output-only here; stdin is not connected)");
    }
    if feeding {
        eprintln!(
            "xtask: typing {} console command(s) {:?}, each after a `{CONSOLE_PROMPT}` prompt{}",
            options.exec.len(),
            options.exec,
            timeout.map_or(String::new(), |t| format!("; timeout {} s", t.as_secs()))
        );
    }
    let session = Session {
        elf: kernel,
        work_dir: ctx.xtask_dir().join("runs").join("run"),
        timeout,
        live: true,
        interactive: interactive && emulator == Emulator::Qemu,
        console: &options.exec,
    };
    let outcome = emu::run(&session, &boot);
    if let Some(archive) = &boot.initrd {
        let _ = std::fs::remove_file(archive);
    }
    let outcome = outcome?;
    if !outcome.output.is_empty() && !outcome.output.ends_with('\n') {
        println!();
    }
    let summary = match &outcome.verdict {
        Ok(status) => format!("exit status {status}"),
        Err(why) => why.clone(),
    };
    let log = ctx.log_path("run");
    let title = if feeding {
        format!("cargo xtask run --exec {:?}", options.exec.join("; "))
    } else {
        "cargo xtask run".to_owned()
    };
    let _ = emu::write_log(&log, &title, &outcome, &summary);
    if let Some(warning) = &outcome.warning {
        eprintln!("xtask: warning: {warning}");
    }
    match outcome.verdict {
        Ok(status) => Ok(u8::try_from(status).unwrap_or(NO_VERDICT)),
        Err(why) => {
            eprintln!("xtask: {why} (log: {})", log.display());
            Ok(NO_VERDICT)
        }
    }
}

/// `cargo xtask lint`.
fn lint(ctx: &Ctx) -> Result<()> {
    deps::ensure_rust_target(ctx)?;
    run_checked(ctx.cargo().args(["fmt", "--all", "--check"]))?;
    run_checked(
        ctx.cargo()
            .args(["clippy", "--all-targets", "--", "-D", "warnings"]),
    )?;
    let mut command = ctx.cargo();
    command.args([
        "clippy",
        "--target",
        TARGET,
        "-p",
        KERNEL_PACKAGE,
        "-p",
        "tarn-rt",
    ]);
    for package in images::user_packages() {
        command.args(["-p", package]);
    }
    run_checked(command.args(["--", "-D", "warnings"]))
}

/// Runs a parsed command; the process exit code.
fn execute(command: Command) -> Result<ExitCode> {
    let ctx = Ctx::new();
    match command {
        Command::Help => {
            let _ = writeln!(std::io::stdout(), "{HELP}");
        }
        Command::Build => {
            let both = [Image::System, Image::Test];
            let images = images::build_or_use(&ctx, None, &both)?;
            for image in both {
                println!("{}", images.kernel(image).display());
            }
        }
        Command::Run(options) => return Ok(ExitCode::from(run(&ctx, &options)?)),
        Command::Test(options) => {
            if !suite::test(&ctx, &options)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Bench(options) => {
            if !suite::bench(&ctx, &options)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Lint => lint(&ctx)?,
        Command::Deps => deps::install(&ctx)?,
        Command::NewPolicy(name, path) => newpolicy::new_policy(&ctx, &name, path)?,
        Command::LinuxFetch => {
            linux::fetch()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    match parse(words).and_then(execute) {
        Ok(code) => code,
        Err(why) => {
            eprintln!("xtask: error: {why}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn run_options_parse() {
        let Ok(Command::Run(run)) =
            parse(words("run --smp 2 --append=poweroff --icount --timeout 9"))
        else {
            panic!("run did not parse");
        };
        assert_eq!(run.smp, Some(2));
        assert_eq!(run.append.as_deref(), Some("poweroff"));
        assert!(run.icount && !run.vmx && !run.gdb);
        assert_eq!(run.timeout, Some(Duration::from_secs(9)));
        let mut with_spaces = words("run --append");
        with_spaces.push("poweroff frobnicate=1".into());
        let Ok(Command::Run(run)) = parse(with_spaces) else {
            panic!("run did not parse");
        };
        assert_eq!(run.append.as_deref(), Some("poweroff frobnicate=1"));
        let Ok(Command::Run(run)) = parse(words("run --vmx --ips=20000000")) else {
            panic!("run --ips did not parse");
        };
        assert_eq!(run.ips, Some(20_000_000));
    }

    #[test]
    fn exec_parses() {
        let mut line = words("run --exec");
        line.push(" help ;; sleep 10;poweroff ".into());
        let Ok(Command::Run(run)) = parse(line) else {
            panic!("run --exec did not parse");
        };
        assert_eq!(run.exec, ["help", "sleep 10", "poweroff"]);
        let Ok(Command::Run(run)) = parse(words("run --exec=info --exec a;b --timeout 5")) else {
            panic!("run --exec= did not parse");
        };
        assert_eq!(run.exec, ["info", "a", "b"], "repeated --exec appends");
        assert_eq!(run.timeout, Some(Duration::from_secs(5)));
        let Ok(Command::Run(run)) = parse(words("run")) else {
            panic!("run did not parse");
        };
        assert!(run.exec.is_empty());
        let vmx = parse(words("run --vmx --exec help")).err().unwrap();
        assert!(vmx.contains("Bochs has no serial input"), "{vmx}");
        assert!(parse(words("run --exec")).is_err());
        assert!(parse(words("run --exec ;;"))
            .err()
            .unwrap()
            .contains("no command"));
    }

    #[test]
    fn help_documents_exec() {
        assert!(matches!(parse(words("run --help")), Ok(Command::Help)));
        assert!(matches!(parse(words("run --smp 2 -h")), Ok(Command::Help)));
        assert!(matches!(parse(words("test --help")), Ok(Command::Help)));
        assert!(HELP.contains("--exec \"CMD; CMD\""));
        assert!(HELP.contains("`tarn> ` prompt"));
    }

    #[test]
    fn bad_command_lines_are_errors() {
        assert!(parse(words("run --vmx --icount")).is_err());
        assert!(parse(words("run --vmx --gdb")).is_err());
        assert!(
            parse(words("run --ips 20000000")).is_err(),
            "--ips needs --vmx"
        );
        assert!(parse(words("run --vmx --ips 1000")).is_err());
        assert!(parse(words("run --smp")).is_err());
        assert!(parse(words("run --smp x")).is_err());
        assert!(parse(words("run --smp 0")).is_err());
        assert!(parse(words("run --frob")).is_err());
        assert!(parse(words("run --icount=1")).is_err());
        assert!(parse(words("build extra")).is_err());
        assert!(parse(words("explode")).is_err());
    }

    #[test]
    fn test_and_bench_options_parse() {
        let Ok(Command::Test(test)) = parse(words("test --filter boot --no-host --jobs 1")) else {
            panic!("test did not parse");
        };
        assert_eq!(test.filter.as_deref(), Some("boot"));
        assert!(!test.host);
        assert_eq!(test.jobs, 1);
        assert!(matches!(
            parse(words("bench --json")),
            Ok(Command::Bench(BenchOptions { json: true, .. }))
        ));
        let Ok(Command::Bench(bench)) = parse(words("bench --compare tests/bench-figures.txt"))
        else {
            panic!("bench --compare did not parse");
        };
        assert_eq!(
            bench.compare,
            Some(PathBuf::from("tests/bench-figures.txt"))
        );
        assert!(parse(words("bench --compare")).is_err());
        assert!(matches!(parse(Vec::new()), Ok(Command::Help)));
    }
}
