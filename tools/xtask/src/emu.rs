//! Booting the kernel under QEMU (PVH, the SVM machine) or Bochs (GRUB ISO,
//! the VMX machine), capturing the serial console and deciding the verdict.
//!
//! The kernel's last line is `tarn: exit status <N>`; it then writes N to
//! QEMU's isa-debug-exit port (QEMU exits with `(N << 1) | 1`) and executes
//! Bochs' magic breakpoint `xchg bx, bx` (the debugger script then quits).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tarn_tests::{exit_status_line, Emulator};

use crate::ctx::{describe, Result};
use crate::deps::{vga_bios, BOCHS_BIOS};

/// How often running emulators are polled.
const POLL: Duration = Duration::from_millis(25);

/// How long Bochs may keep running after the verdict line before it is
/// stopped (it should stop at the magic breakpoint right away).
const BOCHS_GRACE: Duration = Duration::from_secs(5);

/// Bochs' instructions per emulated second (higher only slows the BIOS and
/// GRUB busy-waits).
const BOCHS_IPS: u32 = 4_000_000;

/// Guest memory in MiB, on both emulators.
const MEMORY_MIB: u32 = 256;

/// One boot: machine and command line.
#[derive(Clone, Debug)]
pub struct Boot {
    /// QEMU or Bochs.
    pub emulator: Emulator,
    /// Number of CPUs.
    pub smp: u32,
    /// The kernel command line.
    pub append: String,
    /// QEMU `-icount shift=0,sleep=off`.
    pub icount: bool,
    /// QEMU `-s -S` (gdb server on :1234, wait for the debugger).
    pub gdb: bool,
}

/// How a boot is run.
pub struct Session<'a> {
    /// The kernel ELF.
    pub elf: &'a Path,
    /// A directory for this run's generated files (ISO, bochsrc, serial file).
    pub work_dir: PathBuf,
    /// Kill the emulator after this long (the run then has no verdict).
    pub timeout: Option<Duration>,
    /// Copy the serial console to our stdout (and emulator messages to our
    /// stderr) while it runs.
    pub live: bool,
    /// Connect our stdin to the guest's serial port (QEMU only).
    pub interactive: bool,
}

/// What a boot produced.
pub struct Outcome {
    /// The serial console output (terminal escape sequences removed).
    pub output: String,
    /// The emulator's own messages (QEMU's stderr, Bochs' log paths).
    pub diagnostics: String,
    /// The kernel's exit status, or why there is none.
    pub verdict: std::result::Result<i32, String>,
    /// Something odd that did not change the verdict.
    pub warning: Option<String>,
    /// Wall-clock time from start to exit.
    pub elapsed: Duration,
}

/// QEMU's command line for `boot` of `elf`. With `monitor` (an interactive
/// terminal) the serial console shares stdio with QEMU's monitor: Ctrl-C
/// goes to the guest and Ctrl-A X quits.
pub fn qemu_args(elf: &Path, boot: &Boot, monitor: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-machine",
        "pc",
        // `+tsc-deadline` is not accepted under TCG (QEMU warns and drops it).
        "-cpu",
        "qemu64,+x2apic,+svm,+npt",
        "-smp",
        &boot.smp.to_string(),
        "-m",
        &format!("{MEMORY_MIB}M"),
        "-display",
        "none",
        "-serial",
        if monitor { "mon:stdio" } else { "stdio" },
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    if boot.icount {
        args.extend(["-icount", "shift=0,sleep=off"].map(OsString::from));
    }
    if boot.gdb {
        args.extend(["-s", "-S"].map(OsString::from));
    }
    args.push("-kernel".into());
    args.push(elf.into());
    args.push("-append".into());
    args.push(boot.append.clone().into());
    args
}

/// The kernel's verdict from QEMU's exit `code` (None: killed by a signal)
/// and the status on the kernel's `tarn: exit status` line, plus a warning
/// when the two disagree (QEMU wins).
pub fn qemu_verdict(
    code: Option<i32>,
    line: Option<i32>,
) -> (std::result::Result<i32, String>, Option<String>) {
    let Some(code) = code else {
        return (Err("qemu was killed by a signal".to_owned()), None);
    };
    if code & 1 == 0 {
        let why = if code == 0 {
            " (a triple fault with -no-reboot, a shutdown, or Ctrl-A X)"
        } else {
            ""
        };
        return (
            Err(format!(
                "qemu exited without a verdict from the kernel (status {code}){why}"
            )),
            None,
        );
    }
    let status = code >> 1;
    match line {
        None => (
            Err(format!(
                "qemu exited with status {code} but the kernel printed no `tarn: exit status` \
                 line (qemu itself probably failed; see its messages)"
            )),
            None,
        ),
        Some(line) if line != status => (
            Ok(status),
            Some(format!(
                "the kernel printed `tarn: exit status {line}` but wrote {status} to \
                 isa-debug-exit; using {status}"
            )),
        ),
        Some(_) => (Ok(status), None),
    }
}

/// Quotes one word for a GRUB command line (GRUB's shell-like quoting).
fn grub_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "=,._-/:+@%".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// GRUB's configuration: serial console, no menu delay, boot the kernel
/// through multiboot2 with `append`.
pub fn grub_cfg(append: &str) -> String {
    let mut line = String::from("multiboot2 /boot/tarn.elf");
    for word in append.split_whitespace() {
        line.push(' ');
        line.push_str(&grub_quote(word));
    }
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial\n\
         terminal_output serial\n\
         set timeout=0\n\
         menuentry tarn {{\n    {line}\n    boot\n}}\n"
    )
}

/// Bochs' configuration, with file names relative to the run directory.
pub fn bochsrc(smp: u32, bios: &str, vga_bios: &str) -> String {
    format!(
        "# Generated by `cargo xtask` for one run.\n\
         plugin_ctrl: speaker=0\n\
         display_library: term\n\
         memory: guest={MEMORY_MIB}, host={MEMORY_MIB}\n\
         cpu: model=corei7_skylake_x, count={smp}, ips={BOCHS_IPS}, reset_on_triple_fault=0\n\
         romimage: file={bios}\n\
         vgaromimage: file={vga_bios}\n\
         ata0-master: type=cdrom, path=tarn.iso, status=inserted\n\
         boot: cdrom\n\
         com1: enabled=1, mode=file, dev=serial.txt\n\
         clock: sync=none\n\
         magic_break: enabled=1\n\
         log: bochs.log\n\
         panic: action=fatal\n\
         error: action=report\n"
    )
}

/// Removes terminal escape sequences (CSI `ESC [ ... final`, and two-byte
/// `ESC x`) and carriage returns from a byte stream fed in pieces.
#[derive(Default)]
pub struct EscapeStripper {
    state: EscapeState,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum EscapeState {
    #[default]
    Text,
    Escape,
    Csi,
}

impl EscapeStripper {
    /// Strips `input`, keeping state across calls.
    pub fn feed(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        for &byte in input {
            self.state = match (self.state, byte) {
                (EscapeState::Text, 0x1b) => EscapeState::Escape,
                (EscapeState::Text, b'\r') => EscapeState::Text,
                (EscapeState::Text, _) => {
                    out.push(byte);
                    EscapeState::Text
                }
                (EscapeState::Escape, b'[') => EscapeState::Csi,
                (EscapeState::Escape, _) => EscapeState::Text,
                (EscapeState::Csi, 0x40..=0x7e) => EscapeState::Text,
                (EscapeState::Csi, _) => EscapeState::Csi,
            };
        }
        out
    }
}

/// Writes to our stdout right away.
fn echo(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// Reads `source` to its end on a thread, echoing when `live`.
fn collect<R: Read + Send + 'static>(
    mut source: R,
    live: bool,
    to_stderr: bool,
) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match source.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    if live {
                        if to_stderr {
                            let _ = io::stderr().write_all(&buffer[..n]);
                        } else {
                            echo(&buffer[..n]);
                        }
                    }
                    all.extend_from_slice(&buffer[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        all
    })
}

/// Waits for `child` until `deadline`; None when it is still running then.
fn wait_until(child: &mut Child, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        thread::sleep(POLL);
    }
}

/// Stops QEMU: SIGTERM first (it then restores the terminal it may have put
/// into raw mode), SIGKILL if it is still there two seconds later.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(2);
    if !matches!(wait_until(child, Some(deadline)), Ok(Some(_))) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Boots under QEMU.
fn run_qemu(session: &Session, boot: &Boot) -> Result<Outcome> {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(qemu_args(session.elf, boot, session.interactive))
        .stdin(if session.interactive {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", describe(&command)))?;
    let stdout = collect(child.stdout.take().expect("piped"), session.live, false);
    let stderr = collect(child.stderr.take().expect("piped"), session.live, true);
    let deadline = session.timeout.map(|t| started + t);
    let status = wait_until(&mut child, deadline).map_err(|e| format!("waiting for qemu: {e}"))?;
    let timed_out = status.is_none();
    if timed_out {
        terminate(&mut child);
    }
    let elapsed = started.elapsed();
    let output = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
    let mut diagnostics = format!("$ {}\n", describe(&command));
    diagnostics.push_str(&String::from_utf8_lossy(&stderr.join().unwrap_or_default()));
    let (verdict, warning) = match status {
        None => (Err(timeout_message(session.timeout, "qemu")), None),
        Some(status) => qemu_verdict(status.code(), exit_status_line(&output)),
    };
    Ok(Outcome {
        output,
        diagnostics,
        verdict,
        warning,
        elapsed,
    })
}

/// The message for a run stopped by its timeout.
fn timeout_message(timeout: Option<Duration>, emulator: &str) -> String {
    let secs = timeout.map_or(0, |t| t.as_secs());
    format!("timed out after {secs} s without a verdict from the kernel; {emulator} was killed")
}

/// Why xtask stopped Bochs itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// It kept running after the verdict line.
    Grace,
    /// The run's timeout passed.
    Timeout,
}

/// Builds the GRUB ISO and the Bochs files in `dir`.
fn prepare_bochs(dir: &Path, elf: &Path, boot: &Boot) -> Result<()> {
    let io_error = |what: &str, e: io::Error| format!("{what} in {}: {e}", dir.display());
    let iso_root = dir.join("iso");
    let _ = fs::remove_dir_all(&iso_root);
    fs::create_dir_all(iso_root.join("boot/grub")).map_err(|e| io_error("mkdir", e))?;
    fs::copy(elf, iso_root.join("boot/tarn.elf")).map_err(|e| io_error("copying the kernel", e))?;
    fs::write(iso_root.join("boot/grub/grub.cfg"), grub_cfg(&boot.append))
        .map_err(|e| io_error("writing grub.cfg", e))?;
    let mut mkrescue = Command::new("grub-mkrescue");
    if Path::new("/usr/lib/grub/i386-pc").is_dir() {
        mkrescue.args(["-d", "/usr/lib/grub/i386-pc"]);
    }
    mkrescue
        .arg("-o")
        .arg("tarn.iso")
        .arg("iso")
        .current_dir(dir);
    let output = mkrescue
        .output()
        .map_err(|e| format!("cannot run grub-mkrescue: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{}` failed ({}):\n{}",
            describe(&mkrescue),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let vga = vga_bios().ok_or("no VGA BIOS image found (install vgabios)")?;
    fs::write(dir.join("bochsrc"), bochsrc(boot.smp, BOCHS_BIOS, vga))
        .map_err(|e| io_error("writing bochsrc", e))?;
    fs::write(dir.join("debugger.rc"), "c\nquit\n").map_err(|e| io_error("writing the rc", e))?;
    Ok(())
}

/// Boots under Bochs through a GRUB ISO. The verdict comes from the serial
/// output: Bochs' own exit status says nothing about the guest.
fn run_bochs(session: &Session, boot: &Boot) -> Result<Outcome> {
    let dir = &session.work_dir;
    fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    prepare_bochs(dir, session.elf, boot)?;
    let serial_path = dir.join("serial.txt");
    File::create(&serial_path).map_err(|e| format!("{}: {e}", serial_path.display()))?;
    let console_path = dir.join("bochs.out");
    let console =
        File::create(&console_path).map_err(|e| format!("{}: {e}", console_path.display()))?;
    let console_err = console
        .try_clone()
        .map_err(|e| format!("{}: {e}", console_path.display()))?;
    let mut command = Command::new("bochs");
    command
        .args(["-q", "-f", "bochsrc", "-rc", "debugger.rc"])
        .current_dir(dir)
        .env("TERM", "dumb")
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(console_err);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", describe(&command)))?;
    let mut serial =
        File::open(&serial_path).map_err(|e| format!("{}: {e}", serial_path.display()))?;
    let mut stripper = EscapeStripper::default();
    let mut output = Vec::new();
    let mut verdict_seen_at: Option<Instant> = None;
    let deadline = session.timeout.map(|t| started + t);
    let mut read_serial = |output: &mut Vec<u8>| {
        let mut chunk = Vec::new();
        let _ = serial.read_to_end(&mut chunk);
        let clean = stripper.feed(&chunk);
        if session.live {
            echo(&clean);
        }
        output.extend_from_slice(&clean);
    };
    let mut stopped_by_us: Option<Stop> = None;
    let exit = loop {
        read_serial(&mut output);
        if verdict_seen_at.is_none()
            && exit_status_line(&String::from_utf8_lossy(&output)).is_some()
        {
            verdict_seen_at = Some(Instant::now());
        }
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                return Err(format!("waiting for bochs: {e}"));
            }
        }
        if verdict_seen_at.is_some_and(|t| t.elapsed() >= BOCHS_GRACE) {
            stopped_by_us = Some(Stop::Grace);
        } else if deadline.is_some_and(|d| Instant::now() >= d) {
            stopped_by_us = Some(Stop::Timeout);
        }
        if stopped_by_us.is_some() {
            // Bochs ignores SIGTERM (its debugger catches it); SIGKILL it.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(POLL);
    };
    read_serial(&mut output);
    let elapsed = started.elapsed();
    let output = String::from_utf8_lossy(&output).into_owned();
    let diagnostics = format!(
        "$ (cd {} && TERM=dumb {})\nbochs exit: {}\nbochs console: {}\nbochs log: {}\nraw serial: {}\n",
        dir.display(),
        describe(&command),
        exit.map_or("killed by xtask".to_owned(), |s| s.to_string()),
        console_path.display(),
        dir.join("bochs.log").display(),
        serial_path.display()
    );
    let line = exit_status_line(&output);
    let (verdict, warning) = match (line, stopped_by_us) {
        (Some(status), Some(Stop::Grace)) => (
            Ok(status),
            Some(format!(
                "bochs kept running {} s after the verdict line (no magic breakpoint?); killed it",
                BOCHS_GRACE.as_secs()
            )),
        ),
        (Some(status), _) => (Ok(status), None),
        (None, Some(_)) => (Err(timeout_message(session.timeout, "bochs")), None),
        (None, None) => {
            let console_text = fs::read(&console_path).unwrap_or_default();
            let why = bochs_exit_message(&String::from_utf8_lossy(&console_text))
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            (
                Err(format!(
                    "bochs exited without a verdict from the kernel (no `tarn: exit status` \
                     line){why}; see {}",
                    console_path.display()
                )),
                None,
            )
        }
    };
    Ok(Outcome {
        output,
        diagnostics,
        verdict,
        warning,
        elapsed,
    })
}

/// The reason Bochs gave for exiting on its own (a panic such as a triple
/// fault), from its console output.
pub fn bochs_exit_message(console: &str) -> Option<String> {
    let mut lines = console.lines();
    if lines
        .find(|l| l.contains("Bochs is exiting with the following message"))
        .is_some()
    {
        return lines.next().map(|l| l.trim().to_owned());
    }
    console.contains("Magic breakpoint").then(|| {
        "it stopped at a magic breakpoint (`xchg bx, bx`) before the verdict line".to_owned()
    })
}

/// Boots once and returns what happened.
pub fn run(session: &Session, boot: &Boot) -> Result<Outcome> {
    match boot.emulator {
        Emulator::Qemu => run_qemu(session, boot),
        Emulator::Bochs => run_bochs(session, boot),
    }
}

/// Writes a run's log: serial output, emulator messages, verdict.
pub fn write_log(path: &Path, title: &str, outcome: &Outcome, result: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    let mut text = String::new();
    let _ = writeln!(text, "=== {title}");
    let _ = writeln!(text, "=== serial output");
    text.push_str(&outcome.output);
    if !outcome.output.ends_with('\n') {
        text.push('\n');
    }
    let _ = writeln!(text, "=== emulator");
    text.push_str(&outcome.diagnostics);
    if !outcome.diagnostics.ends_with('\n') {
        text.push('\n');
    }
    let _ = writeln!(
        text,
        "=== verdict: {}",
        match &outcome.verdict {
            Ok(status) => format!("exit status {status}"),
            Err(why) => why.clone(),
        }
    );
    if let Some(warning) = &outcome.warning {
        let _ = writeln!(text, "=== warning: {warning}");
    }
    let _ = writeln!(
        text,
        "=== result: {result} ({:.1} s)",
        outcome.elapsed.as_secs_f64()
    );
    fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(emulator: Emulator) -> Boot {
        Boot {
            emulator,
            smp: 4,
            append: "poweroff".into(),
            icount: false,
            gdb: false,
        }
    }

    #[test]
    fn qemu_command_line() {
        let mut b = boot(Emulator::Qemu);
        let args: Vec<String> = qemu_args(Path::new("/k"), &b, false)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(joined.starts_with("-machine pc -cpu qemu64,+x2apic,+svm,+npt -smp 4 -m 256M"));
        assert!(joined.contains("-serial stdio -no-reboot"));
        assert!(joined.contains("-device isa-debug-exit,iobase=0xf4,iosize=0x04"));
        assert!(joined.ends_with("-kernel /k -append poweroff"));
        assert!(!joined.contains("icount") && !joined.contains("-S"));
        b.icount = true;
        b.gdb = true;
        b.append = "a b".into();
        let args: Vec<String> = qemu_args(Path::new("/k"), &b, true)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert!(args.join(" ").contains("-serial mon:stdio"));
        assert!(args.join(" ").contains("-icount shift=0,sleep=off -s -S"));
        assert_eq!(args.last().unwrap(), "a b", "append stays one argument");
    }

    #[test]
    fn qemu_status_decoding() {
        assert_eq!(qemu_verdict(Some(1), Some(0)), (Ok(0), None));
        assert_eq!(qemu_verdict(Some(3), Some(1)), (Ok(1), None));
        assert_eq!(qemu_verdict(Some(15), Some(7)), (Ok(7), None));
        let (verdict, warning) = qemu_verdict(Some(3), Some(0));
        assert_eq!(verdict, Ok(1), "qemu's status wins");
        assert!(warning.is_some());
        assert!(
            qemu_verdict(Some(1), None).0.is_err(),
            "qemu failing alone is no verdict"
        );
        let (verdict, _) = qemu_verdict(Some(0), Some(0));
        assert!(verdict
            .unwrap_err()
            .contains("without a verdict from the kernel (status 0)"));
        assert!(qemu_verdict(Some(2), None).0.is_err());
        assert!(qemu_verdict(None, Some(0)).0.is_err());
    }

    #[test]
    fn grub_config() {
        let cfg = grub_cfg("poweroff  frobnicate=1 odd'word");
        assert!(cfg.contains("serial --unit=0 --speed=115200\n"));
        assert!(cfg.contains("terminal_input serial\nterminal_output serial\n"));
        assert!(cfg.contains("set timeout=0\n"));
        assert!(cfg.contains(
            "menuentry tarn {\n    multiboot2 /boot/tarn.elf poweroff frobnicate=1 'odd'\\''word'\n    boot\n}\n"
        ));
        assert!(grub_cfg("").contains("multiboot2 /boot/tarn.elf\n"));
    }

    #[test]
    fn bochs_config() {
        let rc = bochsrc(2, "/b", "/v");
        for line in [
            "display_library: term\n",
            "cpu: model=corei7_skylake_x, count=2, ips=4000000, reset_on_triple_fault=0\n",
            "romimage: file=/b\n",
            "vgaromimage: file=/v\n",
            "com1: enabled=1, mode=file, dev=serial.txt\n",
            "magic_break: enabled=1\n",
            "clock: sync=none\n",
        ] {
            assert!(rc.contains(line), "{line}");
        }
    }

    #[test]
    fn bochs_exit_reason() {
        let console = "x\n=====\nBochs is exiting with the following message:\n\
                       [CPU0  ] exception(): 3rd (13) exception with no resolution\n=====\n";
        assert_eq!(
            bochs_exit_message(console).as_deref(),
            Some("[CPU0  ] exception(): 3rd (13) exception with no resolution")
        );
        assert_eq!(bochs_exit_message("Next at t=0\n"), None);
        assert!(bochs_exit_message("(0) Magic breakpoint\nNext at t=5\n")
            .unwrap()
            .contains("magic breakpoint"));
    }

    #[test]
    fn escape_sequences_are_stripped_across_pieces() {
        let mut s = EscapeStripper::default();
        let mut out = s.feed(b"\x1b[H\x1b[J\x1b[1;");
        out.extend(s.feed(b"1H  Booting `tarn'\r\n\r\rtarn: ok\n\x1b"));
        out.extend(s.feed(b"7x"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "  Booting `tarn'\ntarn: ok\nx"
        );
    }
}
