//! `cargo xtask test` (host unit tests, then the boot scenarios) and
//! `cargo xtask bench`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use tarn_tests::{bench_results, check, check_output, scenarios, Emulator, Image, Scenario};

use crate::ctx::{run_checked, Ctx, Result};
use crate::deps::ensure_emulators;
use crate::emu::{self, write_log, Boot, Session};
use crate::images::build_or_use;

/// Options of `cargo xtask test`.
pub struct TestOptions {
    /// Run only scenarios whose name contains this.
    pub filter: Option<String>,
    /// Run the host unit tests first.
    pub host: bool,
    /// How many emulators run at once.
    pub jobs: usize,
    /// Boot this ELF instead of building the images.
    pub elf: Option<PathBuf>,
}

/// The scenarios `filter` selects (without a filter: all but those that
/// run only on request, `Scenario::on_request`).
pub fn select(all: Vec<Scenario>, filter: Option<&str>) -> Vec<Scenario> {
    all.into_iter()
        .filter(|s| filter.map_or(!s.on_request, |f| s.name.contains(f)))
        .collect()
}

/// The boot configuration of a scenario.
fn boot_of(scenario: &Scenario, initrd: Option<PathBuf>) -> Boot {
    Boot {
        emulator: scenario.emulator,
        smp: scenario.smp,
        append: scenario.append.clone(),
        icount: scenario.icount,
        gdb: false,
        bochs_ips: scenario.bochs_ips,
        control: None,
        initrd,
        numa_nodes: scenario.numa_nodes,
    }
}

/// Whether a scenario's run passed: a verdict the scenario accepts, the
/// expected output, and every console command sent (a console that stopped
/// prompting early fails the scenario even when the kernel then exited 0).
fn judge(scenario: &Scenario, outcome: &emu::Outcome) -> std::result::Result<(), String> {
    let shortfall = outcome
        .console
        .as_ref()
        .and_then(emu::ConsoleProgress::shortfall);
    let problem = match (&outcome.verdict, shortfall) {
        // The verdict's message already names a console shortfall.
        (Err(why), _) => why.clone(),
        (Ok(status), None) => return check(scenario, &outcome.output, *status),
        (Ok(_), Some(shortfall)) => shortfall,
    };
    Err(match check_output(scenario, &outcome.output) {
        Ok(()) => problem,
        Err(also) => format!("{problem}; {also}"),
    })
}

/// Boots one scenario, writes its log, and checks it.
fn run_scenario(
    ctx: &Ctx,
    elf: &Path,
    scenario: &Scenario,
) -> (std::result::Result<(), String>, Duration) {
    let work_dir = ctx.xtask_dir().join("runs").join(&scenario.name);
    // A scenario's config directory travels as the boot's `-initrd`.
    let initrd = match &scenario.config {
        Some(dir) => {
            match crate::images::pack_config(
                ctx,
                &ctx.root.join(dir),
                &work_dir.join("config.cpio"),
            ) {
                Ok(path) => Some(path),
                Err(why) => return (Err(why), Duration::ZERO),
            }
        }
        None => None,
    };
    let session = Session {
        elf,
        work_dir,
        timeout: Some(scenario.timeout),
        live: false,
        interactive: false,
        console: &scenario.console,
    };
    let outcome = match emu::run(&session, &boot_of(scenario, initrd)) {
        Ok(outcome) => outcome,
        Err(why) => return (Err(why), Duration::ZERO),
    };
    let result = judge(scenario, &outcome);
    let title = format!(
        "scenario {} ({}, smp {}, append {:?}{}{})",
        scenario.name,
        scenario.emulator,
        scenario.smp,
        scenario.append,
        if scenario.icount { ", icount" } else { "" },
        if scenario.console.is_empty() {
            String::new()
        } else {
            format!(", console {:?}", scenario.console)
        }
    );
    let summary = match &result {
        Ok(()) => "PASS".to_owned(),
        Err(why) => format!("FAIL: {why}"),
    };
    let result = match write_log(&ctx.log_path(&scenario.name), &title, &outcome, &summary) {
        Ok(()) => result,
        Err(why) => result.and(Err(why)),
    };
    (result, outcome.elapsed)
}

/// Runs the host unit tests and the selected boot scenarios; true when all
/// passed.
pub fn test(ctx: &Ctx, options: &TestOptions) -> Result<bool> {
    let selected = select(scenarios(), options.filter.as_deref());
    if selected.is_empty() {
        return Err(format!(
            "no boot scenario matches {:?}",
            options.filter.as_deref().unwrap_or("")
        ));
    }
    let mut host_ok = true;
    if options.host {
        println!("== host unit tests (cargo test)");
        if let Err(why) = run_checked(ctx.cargo().arg("test")) {
            println!("host unit tests FAILED: {why}");
            host_ok = false;
        }
    }
    let needs_bochs = selected.iter().any(|s| s.emulator == Emulator::Bochs);
    ensure_emulators(ctx, needs_bochs)?;
    let mut wanted: Vec<Image> = selected
        .iter()
        .map(|scenario| Image::for_cmdline(&scenario.append))
        .collect();
    wanted.dedup();
    let images = build_or_use(ctx, options.elf.as_deref(), &wanted)?;
    let jobs = options.jobs.clamp(1, selected.len());
    println!(
        "== boot tests ({} scenarios, {jobs} at a time; logs in {})",
        selected.len(),
        ctx.xtask_dir().join("logs").display()
    );
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let print = Mutex::new(());
    thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(scenario) = selected.get(index) else {
                    break;
                };
                let kernel = images.kernel(Image::for_cmdline(&scenario.append));
                let (result, elapsed) = run_scenario(ctx, kernel, scenario);
                let _guard = print.lock().unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok(()) => println!("PASS {} ({:.1} s)", scenario.name, elapsed.as_secs_f64()),
                    Err(why) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        println!(
                            "FAIL {}: {why} ({:.1} s; log: {})",
                            scenario.name,
                            elapsed.as_secs_f64(),
                            ctx.log_path(&scenario.name).display()
                        );
                    }
                }
            });
        }
    });
    let failed = failed.into_inner();
    println!(
        "boot tests: {} passed, {failed} failed",
        selected.len() - failed
    );
    if !host_ok {
        println!("host unit tests: FAILED");
    }
    Ok(host_ok && failed == 0)
}

/// Formats benchmark results as a table or a JSON object.
pub fn format_bench(results: &[tarn_tests::BenchResult], json: bool) -> String {
    let mut text = String::new();
    if json {
        // One JSON object per line: {"name": ..., "value": ..., "unit": ...}.
        for r in results {
            let escape = |t: &str| t.replace('\\', "\\\\").replace('"', "\\\"");
            let unit = r
                .unit
                .as_deref()
                .map_or("null".to_owned(), |u| format!("\"{}\"", escape(u)));
            let _ = writeln!(
                text,
                "{{\"name\": \"{}\", \"value\": {}, \"unit\": {unit}}}",
                escape(&r.name),
                r.value
            );
        }
    } else {
        let width = results
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(0)
            .max(4);
        let value_width = results
            .iter()
            .map(|r| r.value.to_string().len())
            .max()
            .unwrap_or(0)
            .max(5);
        let _ = writeln!(text, "{:width$}  {:>value_width$}", "name", "value");
        for r in results {
            let unit = r
                .unit
                .as_deref()
                .map(|u| format!(" {u}"))
                .unwrap_or_default();
            let _ = writeln!(text, "{:width$}  {:>value_width$}{unit}", r.name, r.value);
        }
    }
    text
}

/// Boots `bench` under QEMU with icount on 2 CPUs and prints the figures;
/// the VM-exit benchmark also runs under Bochs (VMX, 2 CPUs).
/// Options of `cargo xtask bench`.
#[derive(Debug, Default)]
pub struct BenchOptions {
    /// Print JSON lines instead of a table.
    pub json: bool,
    /// Compare with the committed figures in this file.
    pub compare: Option<PathBuf>,
    /// Write the figures to this file (the committed format).
    pub write: Option<PathBuf>,
}

/// `cargo xtask bench`: boots the benchmarks and prints the figures.
/// Returns `false` when `--compare` found a regression.
pub fn bench(ctx: &Ctx, options: &BenchOptions) -> Result<bool> {
    ensure_emulators(ctx, true)?;
    let images = build_or_use(ctx, None, &[Image::System, Image::Test])?;
    // Boots: everything with the IPC fastpath on, then the IPC round trip
    // again through the general path (`ipc_fastpath=off`).
    let mut results: Vec<tarn_tests::BenchResult> = Vec::new();
    // A third runs the VM-exit benchmark guest under the VMM (SVM), a
    // fourth the same guest under Bochs (VMX; TSC ticks, not instructions),
    // a fifth boots Linux (`tests/configs/linux-bench`: the kernel and
    // initramfs `cargo xtask linux-fetch` caches) to its /init, lets it
    // idle and then spin, and waits for the domain's end to power off. A
    // sixth boots 64 CPUs and keeps only the boot figure, as
    // `boot_to_online_64cpu_insns` (AP bring-up cost).
    let linux_console = ["@wait destroyed".to_owned(), "poweroff".to_owned()];
    for (run, append, emulator, smp) in [
        ("bench", "bench", Emulator::Qemu, 2),
        (
            "bench-slowpath",
            "bench ipc_fastpath=off",
            Emulator::Qemu,
            2,
        ),
        ("bench-vm", "vmtest=bench64", Emulator::Qemu, 2),
        ("bench-vm-vmx", "vmtest=bench64", Emulator::Bochs, 2),
        ("bench-linux", "pool0_cpus=1", Emulator::Qemu, 2),
        ("bench-64cpu", "bench", Emulator::Qemu, 64),
    ] {
        let linux = run == "bench-linux";
        let initrd = if linux {
            Some(crate::images::pack_config(
                ctx,
                &ctx.root.join("tests/configs/linux-bench"),
                &ctx.xtask_dir().join("runs").join(run).join("config.cpio"),
            )?)
        } else {
            None
        };
        let icount = emulator == Emulator::Qemu;
        let boot = Boot {
            emulator,
            smp,
            append: append.into(),
            icount,
            gdb: false,
            bochs_ips: tarn_tests::DEFAULT_BOCHS_IPS,
            control: None,
            initrd,
            numa_nodes: 0,
        };
        let session = Session {
            elf: images.kernel(Image::for_cmdline(append)),
            work_dir: ctx.xtask_dir().join("runs").join(run),
            timeout: Some(Duration::from_secs(300)),
            live: false,
            interactive: false,
            console: if linux { &linux_console } else { &[] },
        };
        let outcome = emu::run(&session, &boot)?;
        let log = ctx.log_path(run);
        let found = match (&outcome.verdict, bench_results(&outcome.output)) {
            (Ok(0), Ok(found)) if !found.is_empty() => Ok(found),
            (Ok(0), Ok(_)) => Err("the kernel printed no `bench:` line".to_owned()),
            (Ok(0), Err(why)) => Err(why),
            (Ok(status), _) => Err(format!("the bench run failed with exit status {status}")),
            (Err(why), _) => Err(why.clone()),
        };
        let summary = match &found {
            Ok(_) => "PASS".to_owned(),
            Err(why) => format!("FAIL: {why}"),
        };
        let machine = if icount {
            format!("qemu, smp {smp}, icount")
        } else {
            format!("bochs, smp {smp}")
        };
        write_log(&log, &format!("{run} ({machine})"), &outcome, &summary)?;
        let found = found.map_err(|why| {
            let tail: Vec<&str> = outcome.output.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!(
                "{why}\nlast serial lines:\n{}\nfull log: {}",
                tail.join("\n"),
                log.display()
            )
        })?;
        let found = if smp == 2 {
            found
        } else {
            found
                .into_iter()
                .filter(|r| r.name == "boot_to_online_insns")
                .map(|r| tarn_tests::BenchResult {
                    name: format!("boot_to_online_{smp}cpu_insns"),
                    ..r
                })
                .collect()
        };
        for result in found {
            if !results.iter().any(|r| r.name == result.name) {
                results.push(result);
            }
        }
    }
    print!("{}", format_bench(&results, options.json));
    if let Some(path) = &options.write {
        std::fs::write(path, tarn_tests::format_committed_bench(&results))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("bench: figures written to {}", path.display());
    }
    let Some(path) = &options.compare else {
        return Ok(true);
    };
    let committed =
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let comparison = tarn_tests::compare_bench(&committed, &results)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    for line in &comparison.improvements {
        eprintln!(
            "bench: improved: {line} (update {} to claim it)",
            path.display()
        );
    }
    for line in &comparison.regressions {
        eprintln!("bench: REGRESSION: {line}");
    }
    if comparison.regressions.is_empty() {
        eprintln!(
            "bench: every figure within {} % of {}",
            tarn_tests::BENCH_TOLERANCE_PCT,
            path.display()
        );
    }
    Ok(comparison.regressions.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tarn_tests::BenchResult;

    #[test]
    fn filter_selects_by_substring() {
        let all = || scenarios();
        let on_request = all().iter().filter(|s| s.on_request).count();
        assert!(on_request > 0);
        assert_eq!(select(all(), None).len(), all().len() - on_request);
        assert!(select(all(), None).iter().all(|s| !s.on_request));
        assert_eq!(select(all(), Some("scale_1000")).len(), 2);
        let boots = select(all(), Some("boot_smp"));
        assert_eq!(boots.len(), 4);
        assert!(select(all(), Some("no such scenario")).is_empty());
        assert_eq!(select(all(), Some("bochs"))[0].emulator, Emulator::Bochs);
    }

    fn outcome(
        output: &str,
        verdict: std::result::Result<i32, String>,
        sent: usize,
        prompts: usize,
    ) -> emu::Outcome {
        emu::Outcome {
            output: output.into(),
            diagnostics: String::new(),
            verdict,
            warning: None,
            elapsed: Duration::ZERO,
            console: Some(emu::ConsoleProgress {
                commands: vec!["help".into(), "poweroff".into()],
                prompts,
                sent,
                write_error: None,
            }),
        }
    }

    #[test]
    fn console_scenarios_need_every_command_sent() {
        let s = Scenario::qemu("c", 1, "")
            .exec(&["help", "poweroff"])
            .expect("tarn> help")
            .expect("tarn: exit status 0");
        let full = "tarn> help\r\n  help\r\ntarn> poweroff\r\ntarn: exit status 0\n";
        assert_eq!(judge(&s, &outcome(full, Ok(0), 2, 2)), Ok(()));
        assert!(judge(&s, &outcome(full, Ok(1), 2, 2))
            .unwrap_err()
            .contains("exit status 1, expected 0"));
        let why = judge(&s, &outcome("tarn: exit status 0\n", Ok(0), 0, 0)).unwrap_err();
        assert!(why.starts_with("the console never prompted"), "{why}");
        assert!(why.contains("missing expected line `tarn> help`"), "{why}");
        let why = judge(
            &s,
            &outcome("tarn> help\ntarn: exit status 0\n", Ok(0), 1, 1),
        );
        assert!(why
            .unwrap_err()
            .contains("did not prompt again after command 1 `help`"));
        let mut plain = outcome(full, Ok(0), 0, 0);
        plain.console = None;
        assert_eq!(
            judge(&s, &plain),
            Ok(()),
            "no console progress: nothing to check"
        );
        let why = judge(&s, &outcome(full, Err("timed out".into()), 2, 2)).unwrap_err();
        assert_eq!(why, "timed out");
    }

    #[test]
    fn bench_formats() {
        let results = vec![
            BenchResult {
                name: "boot".into(),
                value: 1234,
                unit: Some("insns".into()),
            },
            BenchResult {
                name: "ipi_remote_wake".into(),
                value: 5,
                unit: None,
            },
        ];
        assert_eq!(
            format_bench(&results, true),
            "{\"name\": \"boot\", \"value\": 1234, \"unit\": \"insns\"}\n\
             {\"name\": \"ipi_remote_wake\", \"value\": 5, \"unit\": null}\n"
        );
        let table = format_bench(&results, false);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "name             value");
        assert_eq!(lines[1], "boot              1234 insns");
        assert_eq!(lines[2], "ipi_remote_wake      5");
    }
}
