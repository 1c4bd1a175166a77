//! Booting the kernel under QEMU (PVH, the SVM machine) or Bochs (GRUB ISO,
//! the VMX machine), capturing the serial console and deciding the verdict.
//!
//! The kernel's last line is `tarn: exit status <N>`; it then writes N to
//! QEMU's isa-debug-exit port (QEMU exits with `(N << 1) | 1`) and executes
//! Bochs' magic breakpoint `xchg bx, bx` (the debugger script then quits).
//!
//! A QEMU run may type commands into the guest's serial console: xtask then
//! owns QEMU's stdin and answers each console prompt with the next command
//! (see [`feed_console`]).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tarn_tests::{exit_status_line, Emulator, CONSOLE_PROMPT};

use crate::ctx::{describe, Result};
use crate::deps::{vga_bios, BOCHS_BIOS};

/// How often running emulators are polled.
const POLL: Duration = Duration::from_millis(25);

/// How long Bochs may keep running after the verdict line before it is
/// stopped (it should stop at the magic breakpoint right away).
const BOCHS_GRACE: Duration = Duration::from_secs(5);

/// Guest memory in MiB, on both emulators.
const MEMORY_MIB: u32 = 256;
/// Guest memory when the config archive carries guest images (larger than
/// [`IMAGE_ARCHIVE_BYTES`]): room for the archive and a few Linux guests.
const LARGE_MEMORY_MIB: u32 = 1024;
/// A config archive above this size carries guest images.
const IMAGE_ARCHIVE_BYTES: u64 = 1 << 20;

/// The machine's memory for a boot with config archive `initrd`.
pub fn memory_mib(initrd: Option<&Path>) -> u32 {
    let large = initrd
        .and_then(|path| std::fs::metadata(path).ok())
        .is_some_and(|m| m.len() > IMAGE_ARCHIVE_BYTES);
    if large {
        LARGE_MEMORY_MIB
    } else {
        MEMORY_MIB
    }
}

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
    /// Bochs' emulated instructions per second (`cpu: ips=`; see
    /// [`tarn_tests::DEFAULT_BOCHS_IPS`]).
    pub bochs_ips: u32,
    /// QEMU: the second serial port (the control channel) as this Unix
    /// socket (`None`: the scenario's work directory holds one).
    pub control: Option<PathBuf>,
    /// QEMU `-initrd`: a config archive replacing the built-in configs.
    pub initrd: Option<PathBuf>,
    /// QEMU: NUMA nodes (`-numa`, which gives the firmware an SRAT); 0 or
    /// 1: none. CPUs and memory are split evenly, the last node taking any
    /// remainder.
    pub numa_nodes: u32,
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
    /// Commands to type into the guest's serial console, one after each
    /// [`CONSOLE_PROMPT`] (QEMU only; overrides `interactive`).
    pub console: &'a [String],
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
    /// How feeding the serial console went (None: no console commands).
    pub console: Option<ConsoleProgress>,
}

/// How far [`feed_console`] got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsoleProgress {
    /// The commands to send, in order.
    pub commands: Vec<String>,
    /// How many prompts appeared on the serial output.
    pub prompts: usize,
    /// How many commands were written to the guest.
    pub sent: usize,
    /// Why writing to the guest's serial input failed, if it did.
    pub write_error: Option<String>,
}

impl ConsoleProgress {
    /// Why not every command was sent, or None when all were.
    pub fn shortfall(&self) -> Option<String> {
        let total = self.commands.len();
        if let Some(why) = &self.write_error {
            return Some(format!(
                "writing console command {} `{}` to the guest failed ({why}); {} of {total} \
                 commands sent",
                self.sent + 1,
                self.commands.get(self.sent).map_or("", String::as_str),
                self.sent
            ));
        }
        if self.sent >= total {
            return None;
        }
        Some(if self.prompts == 0 {
            format!(
                "the console never prompted (no `{CONSOLE_PROMPT}` on the serial output), so \
                 none of the {total} console commands was sent"
            )
        } else {
            format!(
                "the console did not prompt again after command {} `{}`; {} of {total} console \
                 commands sent",
                self.sent,
                self.commands[self.sent - 1],
                self.sent
            )
        })
    }

    /// One line for logs: what was sent.
    pub fn summary(&self) -> String {
        format!(
            "{} of {} commands sent after {} prompts: {:?}",
            self.sent,
            self.commands.len(),
            self.prompts,
            self.commands
        )
    }
}

/// Console script lines that go over the control channel instead of the
/// console (`@ctl cpupool-list -l`).
pub const CONTROL_PREFIX: &str = "@ctl ";

/// Console script lines that type nothing but wait until the output (after
/// the last command typed) shows a text (`@wait [deb] vm ended`); the next
/// command is typed then, without waiting for another prompt. A wait right
/// after a command starts as soon as it is typed (the command may print no
/// prompt: `console D` attaches to a guest).
pub const WAIT_PREFIX: &str = "@wait ";

/// Runs one `@ctl` script line over the control socket; the transcript that
/// goes into the run's output.
fn control_request(socket: Option<&Path>, id: u32, line: &str) -> String {
    let answer = socket
        .ok_or_else(|| String::from("no control socket"))
        .and_then(|path| {
            let mut stream = std::os::unix::net::UnixStream::connect(path)
                .map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            // `load-policy NAME FILE`: the file (relative to the current
            // directory) goes over in pieces, as `tarnctl load-policy` sends it.
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["load-policy", name, file] = words.as_slice() {
                let elf = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
                return tarnctl::load_policy(&mut stream, id, name, &elf, Duration::from_secs(60))
                    .map_err(|e| e.to_string());
            }
            tarnctl::run(&mut stream, id, line, Duration::from_secs(60)).map_err(|e| e.to_string())
        });
    match answer {
        Ok(answer) => format!(
            "ctl> {line}\n{}ctl: {}\n",
            answer.output,
            if answer.ok { "ok" } else { "error" }
        ),
        Err(why) => format!("ctl> {line}\nctl: channel failed: {why}\n"),
    }
}

/// Types `commands` into a guest's serial console: reads the guest's serial
/// `output` to its end, handing every piece read to `sink` (the live echo),
/// and each time another [`CONSOLE_PROMPT`] appears in it (also when split
/// across reads) writes the next command and `\r` to `input`. Never writes
/// ahead of a prompt; a prompt after the last command gets nothing. Returns
/// everything read and how far it got. A write error stops the feeding but
/// not the reading (the guest's output is still wanted).
pub fn feed_console(
    mut output: impl Read,
    mut input: impl Write,
    commands: &[String],
    control: Option<&Path>,
    mut sink: impl FnMut(&[u8]),
) -> (Vec<u8>, ConsoleProgress) {
    let prompt = CONSOLE_PROMPT.as_bytes();
    let mut progress = ConsoleProgress {
        commands: commands.to_vec(),
        ..ConsoleProgress::default()
    };
    let mut all = Vec::new();
    // Output before `scanned` holds no (start of a) prompt not yet counted.
    let mut scanned = 0;
    // An `@wait TEXT` line being waited for: the text, and where in the
    // output its search starts (after the command before it was sent).
    let mut waiting: Option<(String, usize)> = None;
    let mut sent_at = 0;
    let mut buffer = [0u8; 4096];
    // At a prompt (or a satisfied wait): runs `@ctl` lines, starts an
    // `@wait`, or types the next command.
    let mut serve = |all: &mut Vec<u8>,
                     progress: &mut ConsoleProgress,
                     waiting: &mut Option<(String, usize)>,
                     sent_at: &mut usize,
                     sink: &mut dyn FnMut(&[u8])| {
        loop {
            let Some(command) = commands.get(progress.sent) else {
                return;
            };
            if let Some(line) = command.strip_prefix(CONTROL_PREFIX) {
                let transcript = control_request(control, progress.sent as u32 + 1, line);
                sink(transcript.as_bytes());
                all.extend_from_slice(transcript.as_bytes());
                progress.sent += 1;
                continue;
            }
            if let Some(text) = command.strip_prefix(WAIT_PREFIX) {
                progress.sent += 1;
                let found = all[*sent_at..]
                    .windows(text.len().max(1))
                    .any(|w| w == text.as_bytes());
                if found {
                    continue;
                }
                *waiting = Some((text.to_string(), *sent_at));
                return;
            }
            let mut line = command.clone().into_bytes();
            line.push(b'\r');
            match input.write_all(&line).and_then(|()| input.flush()) {
                Ok(()) => {
                    progress.sent += 1;
                    *sent_at = all.len();
                    // A wait right after a command starts now: the command
                    // may print no prompt (`console D` attaches).
                    if commands
                        .get(progress.sent)
                        .is_some_and(|c| c.starts_with(WAIT_PREFIX))
                    {
                        continue;
                    }
                }
                Err(e) => progress.write_error = Some(e.to_string()),
            }
            return;
        }
    };
    loop {
        let n = match output.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        sink(&buffer[..n]);
        all.extend_from_slice(&buffer[..n]);
        while let Some(at) = all[scanned..]
            .windows(prompt.len())
            .position(|w| w == prompt)
        {
            scanned += at + prompt.len();
            progress.prompts += 1;
            if progress.write_error.is_some() || waiting.is_some() {
                continue;
            }
            serve(
                &mut all,
                &mut progress,
                &mut waiting,
                &mut sent_at,
                &mut sink,
            );
        }
        let satisfied = waiting.as_ref().is_some_and(|(text, from)| {
            all[*from..]
                .windows(text.len().max(1))
                .any(|w| w == text.as_bytes())
        });
        if satisfied && progress.write_error.is_none() {
            waiting = None;
            serve(
                &mut all,
                &mut progress,
                &mut waiting,
                &mut sent_at,
                &mut sink,
            );
        }
        // Keep a possible prompt prefix at the end for the next read.
        scanned = scanned.max((all.len() + 1).saturating_sub(prompt.len()));
    }
    (all, progress)
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
        &format!("{}M", memory_mib(boot.initrd.as_deref())),
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
    args.extend(
        numa_args(boot.smp, boot.numa_nodes)
            .into_iter()
            .map(OsString::from),
    );
    if boot.gdb {
        args.extend(["-s", "-S"].map(OsString::from));
    }
    if let Some(initrd) = &boot.initrd {
        args.push("-initrd".into());
        args.push(initrd.into());
    }
    if let Some(socket) = &boot.control {
        let mut spec = OsString::from("unix:");
        spec.push(socket);
        spec.push(",server=on,wait=off");
        args.push("-serial".into());
        args.push(spec);
    }
    args.push("-kernel".into());
    args.push(elf.into());
    args.push("-append".into());
    args.push(boot.append.clone().into());
    args
}

/// QEMU's `-object memory-backend-ram` and `-numa node` arguments for
/// `nodes` nodes over `smp` CPUs and [`MEMORY_MIB`] (none below 2 nodes).
fn numa_args(smp: u32, nodes: u32) -> Vec<String> {
    if nodes < 2 {
        return Vec::new();
    }
    let nodes = nodes.min(smp);
    let mut args = Vec::new();
    let cpus_each = smp / nodes;
    let memory_each = MEMORY_MIB / nodes;
    for node in 0..nodes {
        let first = node * cpus_each;
        let last = if node + 1 == nodes {
            smp - 1
        } else {
            first + cpus_each - 1
        };
        let memory = if node + 1 == nodes {
            MEMORY_MIB - memory_each * (nodes - 1)
        } else {
            memory_each
        };
        args.push("-object".into());
        args.push(format!("memory-backend-ram,id=m{node},size={memory}M"));
        args.push("-numa".into());
        args.push(format!(
            "node,nodeid={node},cpus={first}-{last},memdev=m{node}"
        ));
    }
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
pub fn grub_cfg(append: &str, module: Option<&str>) -> String {
    let mut line = String::from("multiboot2 /boot/tarn.elf");
    for word in append.split_whitespace() {
        line.push(' ');
        line.push_str(&grub_quote(word));
    }
    if let Some(module) = module {
        line.push_str(&format!("\n    module2 {module}"));
    }
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial\n\
         terminal_output serial\n\
         set timeout=0\n\
         menuentry tarn {{\n    {line}\n    boot\n}}\n"
    )
}

/// Bochs' configuration for `smp` CPUs at `ips` emulated instructions per
/// second with `memory` MiB, with file names relative to the run directory.
pub fn bochsrc(smp: u32, ips: u32, memory: u32, bios: &str, vga_bios: &str) -> String {
    format!(
        "# Generated by `cargo xtask` for one run.\n\
         plugin_ctrl: speaker=0\n\
         display_library: term\n\
         memory: guest={memory}, host={memory}\n\
         cpu: model=corei7_skylake_x, count={smp}, ips={ips}, reset_on_triple_fault=0\n\
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
    let feeding = !session.console.is_empty();
    // Every run has its control socket: the scenario's, or the one asked for.
    let mut boot = boot.clone();
    let socket = boot
        .control
        .get_or_insert_with(|| session.work_dir.join("control.sock"))
        .clone();
    let _ = std::fs::create_dir_all(&session.work_dir);
    let _ = std::fs::remove_file(&socket);
    let boot = &boot;
    let monitor = session.interactive && !feeding;
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(qemu_args(session.elf, boot, monitor))
        .stdin(if feeding {
            Stdio::piped()
        } else if monitor {
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
    let guest_output = child.stdout.take().expect("piped");
    let stdout = if feeding {
        let guest_input = child.stdin.take().expect("piped");
        let commands = session.console.to_vec();
        let live = session.live;
        thread::spawn(move || {
            let (output, progress) = feed_console(
                guest_output,
                guest_input,
                &commands,
                Some(&socket),
                |bytes| {
                    if live {
                        echo(bytes);
                    }
                },
            );
            (output, Some(progress))
        })
    } else {
        let collector = collect(guest_output, session.live, false);
        thread::spawn(move || (collector.join().unwrap_or_default(), None))
    };
    let stderr = collect(child.stderr.take().expect("piped"), session.live, true);
    let deadline = session.timeout.map(|t| started + t);
    let status = wait_until(&mut child, deadline).map_err(|e| format!("waiting for qemu: {e}"))?;
    let timed_out = status.is_none();
    if timed_out {
        terminate(&mut child);
    }
    let elapsed = started.elapsed();
    let (output, console) = stdout.join().unwrap_or_default();
    let output = String::from_utf8_lossy(&output).into_owned();
    let mut diagnostics = format!("$ {}\n", describe(&command));
    diagnostics.push_str(&String::from_utf8_lossy(&stderr.join().unwrap_or_default()));
    let shortfall = console.as_ref().and_then(ConsoleProgress::shortfall);
    let (verdict, warning) = match (status, &shortfall) {
        (None, None) if feeding => (
            Err(format!(
                "{}; all {} console commands were sent (end them with `poweroff` to get a \
                 verdict)",
                timeout_message(session.timeout, "qemu"),
                session.console.len()
            )),
            None,
        ),
        (None, None) => (Err(timeout_message(session.timeout, "qemu")), None),
        (None, Some(shortfall)) => (
            Err(format!(
                "timed out after {} s: {shortfall}; qemu was killed",
                session.timeout.map_or(0, |t| t.as_secs())
            )),
            None,
        ),
        (Some(status), _) => {
            let (verdict, warning) = qemu_verdict(status.code(), exit_status_line(&output));
            match (verdict, &shortfall) {
                (Err(why), Some(shortfall)) => (Err(format!("{why}; {shortfall}")), warning),
                // The kernel stopped before every command was typed: a script
                // must not mistake that for success.
                (Ok(status), Some(shortfall)) => (
                    Err(format!(
                        "the kernel stopped (exit status {status}) before every console \
                         command was sent: {shortfall}"
                    )),
                    warning,
                ),
                (verdict, None) => (verdict, warning),
            }
        }
    };
    Ok(Outcome {
        output,
        diagnostics,
        verdict,
        warning,
        elapsed,
        console,
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
    // The config archive travels as a multiboot2 module (the kernel passes
    // the first module on as `initrd`, as with QEMU's -initrd).
    let module = match &boot.initrd {
        Some(archive) => {
            fs::copy(archive, iso_root.join("boot/config.cpio"))
                .map_err(|e| io_error("copying the config archive", e))?;
            Some("/boot/config.cpio")
        }
        None => None,
    };
    fs::write(
        iso_root.join("boot/grub/grub.cfg"),
        grub_cfg(&boot.append, module),
    )
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
    fs::write(
        dir.join("bochsrc"),
        bochsrc(
            boot.smp,
            boot.bochs_ips,
            memory_mib(boot.initrd.as_deref()),
            BOCHS_BIOS,
            vga,
        ),
    )
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
        console: None,
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
        Emulator::Bochs if !session.console.is_empty() => Err(
            "console commands need QEMU: Bochs has no serial input here (its COM1 is an \
             output-only file)"
                .to_owned(),
        ),
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
    if let Some(console) = &outcome.console {
        let _ = writeln!(text, "=== console: {}", console.summary());
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
            bochs_ips: tarn_tests::DEFAULT_BOCHS_IPS,
            control: None,
            initrd: None,
            numa_nodes: 0,
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
        let cfg = grub_cfg("poweroff  frobnicate=1 odd'word", None);
        assert!(cfg.contains("serial --unit=0 --speed=115200\n"));
        assert!(cfg.contains("terminal_input serial\nterminal_output serial\n"));
        assert!(cfg.contains("set timeout=0\n"));
        assert!(cfg.contains(
            "menuentry tarn {\n    multiboot2 /boot/tarn.elf poweroff frobnicate=1 'odd'\\''word'\n    boot\n}\n"
        ));
        assert!(grub_cfg("", None).contains("multiboot2 /boot/tarn.elf\n"));
        assert!(grub_cfg("", Some("/boot/config.cpio"))
            .contains("multiboot2 /boot/tarn.elf\n    module2 /boot/config.cpio\n    boot"));
    }

    #[test]
    fn bochs_config() {
        let rc = bochsrc(2, 4_000_000, MEMORY_MIB, "/b", "/v");
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

    /// A fake guest console: its serial output is scripted in pieces, and
    /// each line it receives produces a reply. Reader and writer share it.
    #[derive(Default)]
    struct FakeGuest {
        /// Output not yet read, in the pieces `read` returns.
        pending: std::collections::VecDeque<Vec<u8>>,
        /// Everything written to the guest's serial input.
        input: Vec<u8>,
        /// How much of `input` the guest has consumed.
        consumed: usize,
        /// Whether a prompt is showing (a command may be written).
        prompting: bool,
        /// Prompts to print in all (the console stops answering after them).
        prompt_budget: usize,
        /// Reply to `poweroff` with the verdict and end the output.
        powered_off: bool,
    }

    impl FakeGuest {
        fn prompt(&mut self) {
            if self.prompt_budget > 0 {
                self.prompt_budget -= 1;
                self.prompting = true;
                // Split the prompt over two reads, as a UART may.
                self.pending.push_back(b"tar".to_vec());
                self.pending.push_back(b"n> ".to_vec());
            }
        }

        /// Consumes complete input lines (echo, then the reply and a prompt).
        fn answer(&mut self) {
            while let Some(end) = self.input[self.consumed..].iter().position(|&b| b == b'\r') {
                assert!(self.prompting, "a command was written before a prompt");
                self.prompting = false;
                let line = self.input[self.consumed..self.consumed + end].to_vec();
                self.consumed += end + 1;
                let command = String::from_utf8(line).unwrap();
                self.pending
                    .push_back(format!("{command}\r\n").into_bytes());
                match command.as_str() {
                    "poweroff" => {
                        self.pending.push_back(b"tarn: exit status 0\n".to_vec());
                        self.powered_off = true;
                    }
                    "help" => self.pending.push_back(b"commands: help info\r\n".to_vec()),
                    other => self.pending.push_back(
                        format!("error: unknown command '{other}' (try help)\r\n").into_bytes(),
                    ),
                }
                if !self.powered_off {
                    self.prompt();
                }
            }
        }
    }

    type Shared = std::rc::Rc<std::cell::RefCell<FakeGuest>>;
    struct GuestOutput(Shared);
    struct GuestInput(Shared);

    impl Read for GuestOutput {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut guest = self.0.borrow_mut();
            guest.answer();
            // Nothing left: the emulator exited (or was killed).
            let Some(piece) = guest.pending.pop_front() else {
                return Ok(0);
            };
            buf[..piece.len()].copy_from_slice(&piece);
            Ok(piece.len())
        }
    }

    impl Write for GuestInput {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().input.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Boots a fake guest that prints `banner`, then at most `prompts`
    /// prompts, and feeds it `commands`.
    fn feed_fake(banner: &str, prompts: usize, commands: &[&str]) -> (String, ConsoleProgress) {
        let guest = Shared::default();
        {
            let mut g = guest.borrow_mut();
            g.prompt_budget = prompts;
            if !banner.is_empty() {
                g.pending.push_back(banner.as_bytes().to_vec());
            }
            g.prompt();
        }
        let commands: Vec<String> = commands.iter().map(|&c| c.to_owned()).collect();
        let mut echoed = Vec::new();
        let (output, progress) = feed_console(
            GuestOutput(guest.clone()),
            GuestInput(guest.clone()),
            &commands,
            None,
            |bytes| echoed.extend_from_slice(bytes),
        );
        assert_eq!(echoed, output, "everything read is echoed");
        let input = String::from_utf8(guest.borrow().input.clone()).unwrap();
        let sent: Vec<String> = commands[..progress.sent]
            .iter()
            .map(|c| format!("{c}\r"))
            .collect();
        assert_eq!(
            input,
            sent.concat(),
            "exactly the sent commands, each with \\r"
        );
        (String::from_utf8(output).unwrap(), progress)
    }

    #[test]
    fn console_gets_one_command_per_prompt() {
        let (output, progress) = feed_fake("root: ready\n", 10, &["help", "frob", "poweroff"]);
        assert_eq!(progress.sent, 3);
        assert_eq!(progress.prompts, 3);
        assert_eq!(progress.shortfall(), None);
        assert_eq!(
            output,
            "root: ready\ntarn> help\r\ncommands: help info\r\n\
             tarn> frob\r\nerror: unknown command 'frob' (try help)\r\n\
             tarn> poweroff\r\ntarn: exit status 0\n"
        );
        assert_eq!(exit_status_line(&output), Some(0));
    }

    #[test]
    fn a_prompt_after_the_last_command_gets_nothing() {
        let (output, progress) = feed_fake("", 10, &["help"]);
        assert_eq!((progress.sent, progress.prompts), (1, 2));
        assert_eq!(progress.shortfall(), None);
        assert!(output.ends_with("commands: help info\r\ntarn> "));
    }

    #[test]
    fn console_that_never_prompts() {
        let (output, progress) = feed_fake("root: ready\n", 0, &["help", "poweroff"]);
        assert_eq!(output, "root: ready\n");
        assert_eq!((progress.sent, progress.prompts), (0, 0));
        let why = progress.shortfall().unwrap();
        assert!(why.contains("the console never prompted"), "{why}");
        assert!(why.contains("none of the 2 console commands"), "{why}");
    }

    #[test]
    fn console_that_stops_prompting() {
        let (_, progress) = feed_fake("", 2, &["help", "info", "poweroff"]);
        assert_eq!((progress.sent, progress.prompts), (2, 2));
        let why = progress.shortfall().unwrap();
        assert!(
            why.contains("did not prompt again after command 2 `info`; 2 of 3"),
            "{why}"
        );
    }

    #[test]
    fn prompts_are_found_in_any_split() {
        // Every way of cutting the output into two reads, prompt included.
        let text = b"boot\ntarn> x\r\ntarn> tarn> ";
        for cut in 0..=text.len() {
            let pieces = [text[..cut].to_vec(), text[cut..].to_vec()];
            let mut written = Vec::new();
            let chained = pieces
                .iter()
                .fold(Box::new(io::empty()) as Box<dyn Read>, |r, p| {
                    Box::new(r.chain(io::Cursor::new(p.clone())))
                });
            let commands = [
                "a".to_owned(),
                "b".to_owned(),
                "c".to_owned(),
                "d".to_owned(),
            ];
            let (output, progress) = feed_console(chained, &mut written, &commands, None, |_| {});
            assert_eq!(output, text, "cut {cut}");
            assert_eq!(progress.prompts, 3, "cut {cut}");
            assert_eq!(written, b"a\rb\rc\r", "cut {cut}");
        }
    }

    #[test]
    fn wait_lines_hold_the_next_command_until_the_text_appears() {
        // The text comes after the prompt, in a later read: the next command
        // goes out then, without another prompt; a text already there
        // (after the last command) does not hold anything.
        let pieces: Vec<Vec<u8>> = vec![
            b"tarn> ".to_vec(),
            b"tarn> [g] bo".to_vec(),
            b"oted\n".to_vec(),
            b"tarn> ".to_vec(),
        ];
        let chained = pieces
            .iter()
            .fold(Box::new(io::empty()) as Box<dyn Read>, |r, p| {
                Box::new(r.chain(io::Cursor::new(p.clone())))
            });
        let commands = ["create g", "@wait booted", "list", "@wait tarn", "x"].map(String::from);
        let mut written = Vec::new();
        let (_, progress) = feed_console(chained, &mut written, &commands, None, |_| {});
        assert_eq!(written, b"create g\rlist\rx\r");
        assert_eq!(progress.sent, 5);
        // Never seen: the command after it is never typed.
        let commands = ["a", "@wait never", "b"].map(String::from);
        let mut written = Vec::new();
        feed_console(
            &b"tarn> tarn> tarn> "[..],
            &mut written,
            &commands,
            None,
            |_| {},
        );
        assert_eq!(written, b"a\r");
    }

    #[test]
    fn a_write_error_stops_feeding_but_not_reading() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let text = b"tarn> tarn> tarn: exit status 3\n";
        let commands = ["help".to_owned()];
        let (output, progress) = feed_console(&text[..], Broken, &commands, None, |_| {});
        assert_eq!(output, text);
        assert_eq!((progress.sent, progress.prompts), (0, 2));
        let why = progress.shortfall().unwrap();
        assert!(why.contains("writing console command 1 `help`"), "{why}");
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

    #[test]
    fn numa_nodes_split_cpus_and_memory() {
        assert!(numa_args(4, 0).is_empty() && numa_args(4, 1).is_empty());
        assert_eq!(
            numa_args(5, 2),
            [
                "-object",
                "memory-backend-ram,id=m0,size=128M",
                "-numa",
                "node,nodeid=0,cpus=0-1,memdev=m0",
                "-object",
                "memory-backend-ram,id=m1,size=128M",
                "-numa",
                "node,nodeid=1,cpus=2-4,memdev=m1",
            ]
        );
        // Never more nodes than CPUs.
        assert_eq!(numa_args(2, 4).len(), 8);
    }
}
