//! The console's commands as data: the command table ([`COMMANDS`]: what
//! `help` prints), the input rules for a command line ([`LineEditor`],
//! [`check_line`]) and the parser from a line to a typed [`Command`]
//! ([`parse`]), which checks every argument: unknown or repeated flags,
//! stray words, numbers that are not numbers or out of range, malformed
//! configs. Whatever runs a command (the console, the control channel, a
//! tenant's request after [`crate::tenant::authorize`]) runs the typed
//! value, never the text again, so what was checked is what runs.
//!
//! # Input rules
//!
//! - A line is at most [`MAX_LINE`] characters; a longer one is refused
//!   whole (`line too long`), never cut.
//! - Only printable ASCII (0x20-0x7E) is accepted; a tab counts as a
//!   space; any other byte refuses the line, naming the byte.
//! - Numbers are decimal and must fit their field: a value that overflows
//!   or lies outside the field's range is refused, never wrapped or clamped.
//!
//! Error texts here carry no `error:` prefix; the console adds it to the
//! line it prints.

use crate::config::{self, DomainConfig, Topology};
use crate::pools::{PoolSpec, Sched, MAX_LOAN_MS};
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Longest command line (characters).
pub const MAX_LINE: usize = 256;
/// Longest wait `sleep` and `top -d` accept (ms): an hour.
pub const MAX_WAIT_MS: u64 = 3_600_000;
/// Most rounds one `repeat` runs.
pub const MAX_REPEAT: u64 = 1_000_000;

/// The commands, with their usage and one line of help each (`help`
/// prints this table). The name is the usage's first word.
pub const COMMANDS: &[(&str, &str)] = &[
    ("help", "list the commands"),
    (
        "info",
        "CPUs, memory, boot modules, free CPUs, kernel objects, the root task's resources",
    ),
    (
        "list [-l] [-c] [--pool=P] [D]",
        "domains as xl lists them: name, id, memory (MiB), vCPUs, state, CPU time (-c/--cpupool: and the pool, -l: JSON, --pool=P: P's only, D: that domain only)",
    ),
    (
        "create KEY=VALUE... | [-n] [-f] FILE [KEY=VALUE...]",
        "start a domain (-n: print the config only; xl.cfg keys: name pool image|kernel type vcpus cpus memory cpu_weight cap period slice extra cmdline root ramdisk, and the pool policy's own; other xl keys warned)",
    ),
    ("destroy D", "stop a domain and forget it"),
    ("pause D", "stop a domain's vCPUs"),
    ("unpause D", "restart a paused domain's vCPUs"),
    (
        "cpupool-create KEY=VALUE... | [-n] [-f] FILE [KEY=VALUE...]",
        "define and activate a pool (name sched cpus other_config; FILE with or without .cfg, KEY=VALUE overrides it, -n: print the config only)",
    ),
    (
        "cpupool-new KEY=VALUE... | [-f] FILE [KEY=VALUE...]",
        "define a pool (also pool-new)",
    ),
    ("cpupool-start P", "activate a defined pool"),
    (
        "cpupool-destroy P",
        "deactivate a pool without domains (CPUs become free); a pool made by cpupool-create is forgotten, one from cpupool-new stays defined",
    ),
    ("cpupool-delete P", "forget a deactivated pool"),
    ("cpupool-rename P NAME", "rename a pool"),
    (
        "cpupool-cpu-add P CPUS",
        "add free CPUs (an xl CPU list: 2-3, 0-3,^1, all, node:1, nodes:0-1,^node:1)",
    ),
    (
        "cpupool-cpu-remove P CPUS",
        "take CPUs back (negotiated with the pool's server); a pool without domains may give up its last",
    ),
    (
        "cpupool-migrate D P",
        "move a running domain to another pool",
    ),
    (
        "cpupool-cpu-loan CPU P MS",
        "lend CPU to pool P for MS ms; it returns by itself",
    ),
    ("cpupool-cpu-loan-end CPU", "end a loan now"),
    (
        "cpupool-delegate P D",
        "give domain D (a tenant) a capability to manage pool P",
    ),
    ("cpupool-undelegate P D", "revoke that capability"),
    ("cpupool-sched P POLICY", "change a pool's policy (info lists them)"),
    (
        "cpupool-numa-split",
        "one pool per NUMA node, as xl: Pool-0 becomes Pool-node0 with node 0's CPUs, Pool-nodeN gets node N's (only Pool-0 may exist)",
    ),
    (
        "cpupool-list [-c] [-l] [P...]",
        "pools: name, CPUs, scheduler, active, domains (-c: CPU lists, -l: JSON)",
    ),
    (
        "sched-credit [-d D [-w W] [-c CAP]] | [-p P] [-s [-t MS] [-r US]]",
        "credit: a domain's weight and cap (shown without -w/-c), a pool's tslice and ratelimit (-s; Pool-0 without -p), alone every credit pool and its domains (-p: one pool); long options --domain= --weight= --cap= --cpupool= --schedparam --tslice_ms= --ratelimit_us=",
    ),
    (
        "sched-sedf [-d D [-p MS] [-s MS] [-e 0|1]] | [-c P]",
        "sedf (Xen 4.5's xl): a domain's period, slice, extra time (shown without -p/-s/-e; what is not given stays), alone every sedf pool and its domains (-c: one pool); -l and -w are not built",
    ),
    (
        "sched-group -d D (-m MASTER | -n)",
        "credit scheduling groups",
    ),
    (
        "sched-param (-d D | -p P) [KEY=VALUE...]",
        "set a domain's or a pool's policy parameters; alone: list them (value, range, help)",
    ),
    (
        "vcpu-list [D]",
        "vCPUs as xl lists them: domain, vCPU, CPU, state (--p: offline), run time, hard / soft affinity",
    ),
    (
        "vcpu-pin D V|all CPUS|- [CPUS|-]",
        "hard affinity of vCPU V (or all): an xl CPU list with a CPU of D's pool (all, 0-3,^1, node:1), and soft affinity (the CPUs it prefers; all: none); - keeps one",
    ),
    (
        "vcpu-set [-i] D N",
        "vCPUs 0..N-1 online, the others offline (N up to the domain's vcpus; more than the machine's CPUs needs -i)",
    ),
    (
        "top [--json] [-d MS]",
        "CPU share of each domain over MS (default 1000)",
    ),
    (
        "server-fault P crash|hang|ignore-remove",
        "fault injection: make a pool's scheduler server misbehave",
    ),
    (
        "console D",
        "attach the serial console to Linux domain D's UART; Ctrl-] detaches",
    ),
    ("sleep MS", "wait MS milliseconds"),
    (
        "repeat N CMD [| CMD...]",
        "run the commands N times (# is the round number); stops at the first error",
    ),
    ("poweroff", "power the machine off (exit status 0)"),
];

/// Other names of commands of [`COMMANDS`]: (alias, command).
pub const ALIASES: &[(&str, &str)] = &[("pool-new", "cpupool-new")];

/// Commands that belong to the console but are not built yet.
pub const NOT_BUILT: &[&str] = &[];

/// The usage of `command` from the table (`see help` if unknown).
pub fn usage(command: &str) -> &'static str {
    let command = ALIASES
        .iter()
        .find(|(alias, _)| *alias == command)
        .map_or(command, |(_, name)| name);
    COMMANDS
        .iter()
        .find(|(usage, _)| usage.split(' ').next() == Some(command))
        .map_or("see help", |(usage, _)| usage)
}

/// A config file named on the command line, as xl takes it: `[-n] [-f]
/// FILE [var=value...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFile {
    /// The file, with or without `.cfg` (`rt`, `rt.cfg`).
    pub name: String,
    /// `var=value` settings that replace the file's (or are added).
    pub overrides: Vec<config::Setting>,
    /// `-n`: print the resulting config, change nothing.
    pub dry_run: bool,
}

impl ConfigFile {
    /// Just the file.
    pub fn named(name: &str) -> ConfigFile {
        ConfigFile {
            name: name.to_string(),
            overrides: Vec::new(),
            dry_run: false,
        }
    }
}

/// Where a domain's config comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainSource {
    /// Given on the line (`name=d pool=p image=spin`), parsed.
    Inline(DomainConfig),
    /// A config file of the boot image (`spinner-vm.cfg`), read when run.
    File(ConfigFile),
}

/// Where a pool's config comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolSource {
    /// Given on the line (`name=p sched=credit cpus=2-3`), parsed.
    Inline(PoolSpec),
    /// A config file of the boot image (`rt.cfg`), read when run.
    File(ConfigFile),
}

/// What `server-fault` makes a server do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerFault {
    /// Crash after answering.
    Crash,
    /// Stop answering.
    Hang,
    /// Ignore the next CPU release.
    IgnoreRemove,
}

/// One console command, every argument checked (see [`parse`]). Names of
/// pools and domains are kept as given; they are looked up when it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `help`.
    Help,
    /// `info`.
    Info,
    /// `list [-l] [-c] [--pool=P] [D]`.
    List {
        /// `-l`: JSON.
        long: bool,
        /// Only this pool's domains.
        pool: Option<String>,
        /// `-c` / `--cpupool`: xl's Cpupool column.
        cpupool: bool,
        /// Only this domain (`list D`).
        domain: Option<String>,
    },
    /// `create ...`.
    Create(DomainSource),
    /// `destroy D`.
    Destroy(String),
    /// `console D`: attach the serial console to a Linux domain's UART
    /// (Ctrl-] detaches).
    Console(String),
    /// `pause D`.
    Pause(String),
    /// `unpause D`.
    Unpause(String),
    /// `cpupool-create ...`.
    PoolCreate(PoolSource),
    /// `cpupool-new ...` / `pool-new ...`.
    PoolNew(PoolSource),
    /// `cpupool-start P`.
    PoolStart(String),
    /// `cpupool-destroy P`.
    PoolDestroy(String),
    /// `cpupool-delete P`.
    PoolDelete(String),
    /// `cpupool-rename P NAME`.
    PoolRename {
        /// The pool.
        pool: String,
        /// Its new name.
        name: String,
    },
    /// `cpupool-cpu-add P CPUS`.
    CpuAdd {
        /// The pool.
        pool: String,
        /// The CPUs.
        cpus: BTreeSet<u32>,
    },
    /// `cpupool-cpu-remove P CPUS`.
    CpuRemove {
        /// The pool.
        pool: String,
        /// The CPUs.
        cpus: BTreeSet<u32>,
    },
    /// `cpupool-migrate D P`.
    Migrate {
        /// The domain.
        domain: String,
        /// Its new pool.
        pool: String,
    },
    /// `cpupool-cpu-loan CPU P MS`.
    Loan {
        /// The CPU.
        cpu: u32,
        /// The borrowing pool.
        pool: String,
        /// How long.
        ms: u64,
    },
    /// `cpupool-cpu-loan-end CPU`.
    LoanEnd {
        /// The CPU.
        cpu: u32,
    },
    /// `cpupool-delegate P D`.
    Delegate {
        /// The pool.
        pool: String,
        /// The tenant domain.
        domain: String,
    },
    /// `cpupool-undelegate P D`.
    Undelegate {
        /// The pool.
        pool: String,
        /// The tenant domain.
        domain: String,
    },
    /// `cpupool-sched P credit|sedf`.
    PoolSched {
        /// The pool.
        pool: String,
        /// Its new policy.
        sched: Sched,
    },
    /// `cpupool-numa-split`: one pool per NUMA node (Pool-0 keeps node 0).
    NumaSplit,
    /// `cpupool-list [-c] [-l] [P...]`.
    PoolList {
        /// `-c`: CPU lists.
        cpus: bool,
        /// `-l`: JSON.
        long: bool,
        /// Only these pools (all when empty).
        pools: Vec<String>,
    },
    /// `sched-credit [-p P]`: every credit pool's parameters and its
    /// domains' weights and caps (only pool P's with `-p`).
    CreditShow {
        /// `-p P`.
        pool: Option<String>,
    },
    /// `sched-credit -d D [-w W] [-c CAP]`: neither `-w` nor `-c` shows
    /// the domain's line.
    CreditDomain {
        /// The domain.
        domain: String,
        /// New weight.
        weight: Option<u32>,
        /// New cap (%).
        cap_pct: Option<u32>,
    },
    /// `sched-credit -s [-p P] [-t MS] [-r US]`: neither `-t` nor `-r`
    /// shows the pool's parameters.
    CreditPool {
        /// The pool (Pool-0 when not given, as xl's pool id 0).
        pool: Option<String>,
        /// Time slice.
        timeslice_ms: Option<u32>,
        /// Rate limit.
        ratelimit_us: Option<u32>,
    },
    /// `sched-sedf [-c P]`: every SEDF pool and its domains' reservations
    /// (only pool P's with `-c`).
    SedfShow {
        /// `-c P`.
        pool: Option<String>,
    },
    /// `sched-sedf -d D [-p MS] [-s MS] [-e 0|1]`: what is not given keeps
    /// its value; nothing given shows the domain's line.
    SedfDomain {
        /// The domain.
        domain: String,
        /// Period.
        period_ms: Option<u32>,
        /// Slice.
        slice_ms: Option<u32>,
        /// Extra time allowed.
        extra: Option<bool>,
    },
    /// `sched-group -d D (-m MASTER | -n)`.
    Group {
        /// The domain.
        domain: String,
        /// The group's master (`None`: leave the group).
        master: Option<String>,
    },
    /// `sched-param -d D [KEY=VALUE...]`: set a domain's policy parameters,
    /// or list them (no pairs).
    ParamDomain {
        /// The domain.
        domain: String,
        /// The pairs, in order (each key once).
        params: Vec<(String, String)>,
    },
    /// `sched-param -p P [KEY=VALUE...]`: the same for a pool.
    ParamPool {
        /// The pool.
        pool: String,
        /// The pairs, in order (each key once).
        params: Vec<(String, String)>,
    },
    /// `vcpu-list [D]`.
    VcpuList(Option<String>),
    /// `vcpu-pin D V|all HARD [SOFT]`: a hard and a soft affinity.
    VcpuPin {
        /// The domain.
        domain: String,
        /// The vCPU (`None`: all).
        vcpu: Option<u32>,
        /// The hard affinity's CPUs (every CPU of the machine for xl's
        /// `all`); `None`: kept (`-`).
        cpus: Option<BTreeSet<u32>>,
        /// The soft affinity's CPUs (every CPU of the machine for `all`:
        /// no preference); `None`: kept (`-` or not given).
        soft: Option<BTreeSet<u32>>,
    },
    /// `vcpu-set [-i] D N`.
    VcpuSet {
        /// The domain.
        domain: String,
        /// vCPUs online.
        online: u32,
        /// `-i` (`--ignore-host`): more vCPUs than the machine has CPUs.
        ignore_host: bool,
    },
    /// `top [--json] [-d MS]`.
    Top {
        /// `--json`.
        json: bool,
        /// Interval.
        ms: u64,
    },
    /// `server-fault P crash|hang|ignore-remove`.
    ServerFault {
        /// The pool.
        pool: String,
        /// What its server does.
        fault: ServerFault,
    },
    /// `sleep MS`.
    Sleep(u64),
    /// `repeat N CMD | CMD...`: the commands as text, each checked (with
    /// `#` as 1) before any runs.
    Repeat {
        /// Rounds.
        count: u64,
        /// The commands.
        commands: Vec<String>,
    },
    /// `poweroff`.
    Poweroff,
}

/// Checks a whole command line against the input rules (see the module
/// docs); returns it with tabs as spaces.
pub fn check_line(line: &str) -> Result<String, String> {
    if line.chars().count() > MAX_LINE {
        return Err(format!(
            "line too long (more than {MAX_LINE} characters); nothing was run"
        ));
    }
    let mut out = String::with_capacity(line.len());
    for (column, c) in line.chars().enumerate() {
        match c {
            '\t' => out.push(' '),
            ' '..='~' => out.push(c),
            other => return Err(not_printable(other as u32, column + 1)),
        }
    }
    Ok(out)
}

fn not_printable(code: u32, column: usize) -> String {
    format!("character {code:#04x} at column {column} is not printable ASCII; nothing was run")
}

/// What the console does with one input byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Nothing to show.
    Nothing,
    /// Show this byte.
    Echo(u8),
    /// Erase the last character shown.
    Erase,
    /// The line ended: the command line, or why it is refused.
    Line(Result<String, String>),
}

/// The console's line editor: bytes in, [`Edit`]s out, under the input
/// rules. A line past [`MAX_LINE`] or with a byte outside printable ASCII
/// is refused whole when it ends.
#[derive(Clone, Debug, Default)]
pub struct LineEditor {
    line: String,
    /// Characters typed past [`MAX_LINE`] (not kept).
    overflow: usize,
    /// The first byte refused, and its column.
    refused: Option<(u8, usize)>,
}

impl LineEditor {
    /// An empty line.
    pub const fn new() -> Self {
        LineEditor {
            line: String::new(),
            overflow: 0,
            refused: None,
        }
    }

    /// Takes one byte.
    pub fn feed(&mut self, byte: u8) -> Edit {
        match byte {
            b'\r' | b'\n' => {
                let line = core::mem::take(&mut self.line);
                let overflow = core::mem::take(&mut self.overflow);
                let refused = self.refused.take();
                Edit::Line(if overflow > 0 {
                    Err(format!(
                        "line too long (more than {MAX_LINE} characters); nothing was run"
                    ))
                } else if let Some((byte, column)) = refused {
                    Err(not_printable(u32::from(byte), column))
                } else {
                    Ok(line)
                })
            }
            0x08 | 0x7F => {
                if self.overflow > 0 {
                    self.overflow -= 1;
                    Edit::Nothing
                } else if self.line.pop().is_some() {
                    Edit::Erase
                } else {
                    Edit::Nothing
                }
            }
            b'\t' => self.printable(b' '),
            0x20..=0x7E => self.printable(byte),
            other => {
                let column = self.line.len() + self.overflow + 1;
                self.refused.get_or_insert((other, column));
                Edit::Nothing
            }
        }
    }

    fn printable(&mut self, byte: u8) -> Edit {
        if self.line.len() < MAX_LINE && self.overflow == 0 {
            self.line.push(char::from(byte));
            Edit::Echo(byte)
        } else {
            self.overflow += 1;
            Edit::Nothing
        }
    }
}

/// A decimal number for field `what`, in `min..=max`; `noun` names what it
/// should be (`a number of milliseconds`).
pub fn number<T>(text: &str, what: &str, noun: &str, min: T, max: T) -> Result<T, String>
where
    T: core::str::FromStr + PartialOrd + core::fmt::Display + Copy,
{
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what}: '{text}' is not {noun}"));
    }
    match text.parse::<T>() {
        Ok(value) if value >= min && value <= max => Ok(value),
        _ => Err(format!("{what}: {text} is out of range ({min}..{max})")),
    }
}

/// Flags of a command: `-x VALUE` pairs and lone switches, each at most
/// once, and their long forms as xl's getopt takes them (`--domain=D` or
/// `--domain D`, `--schedparam`); anything else is refused.
struct Flags<'a> {
    values: Vec<(&'a str, &'a str)>,
    switches: Vec<&'a str>,
}

impl<'a> Flags<'a> {
    fn parse(
        args: &[&'a str],
        with_value: &[&'static str],
        switches: &[&'static str],
        usage: &str,
    ) -> Result<Flags<'a>, String> {
        Flags::parse_long(args, with_value, switches, &[], usage)
    }

    /// [`Flags::parse`] with long options: `long` maps each long name
    /// (`--domain`) to its short flag (`-d`), under which it is kept.
    fn parse_long(
        args: &[&'a str],
        with_value: &[&'static str],
        switches: &[&'static str],
        long: &[(&str, &'static str)],
        usage: &str,
    ) -> Result<Flags<'a>, String> {
        let mut flags = Flags {
            values: Vec::new(),
            switches: Vec::new(),
        };
        let mut words = args.iter();
        while let Some(&word) = words.next() {
            let known = with_value.iter().chain(switches).find(|f| **f == word);
            let (flag, inline): (&'a str, Option<&'a str>) = match (known, word.starts_with("--")) {
                // A flag as the command names it (`-d`, `--json`).
                (Some(flag), _) => (flag, None),
                (None, true) => {
                    let (name, inline) = match word.split_once('=') {
                        Some((name, value)) => (name, Some(value)),
                        None => (word, None),
                    };
                    let short = long
                        .iter()
                        .find(|(l, _)| *l == name)
                        .map(|(_, s)| *s)
                        .ok_or_else(|| format!("unexpected '{word}' (usage: {usage})"))?;
                    (short, inline)
                }
                (None, false) => return Err(format!("unexpected '{word}' (usage: {usage})")),
            };
            let repeated =
                flags.values.iter().any(|(f, _)| *f == flag) || flags.switches.contains(&flag);
            if repeated {
                return Err(format!("{flag} given twice (usage: {usage})"));
            }
            if with_value.contains(&flag) {
                let value = match inline {
                    Some(value) => value,
                    None => words
                        .next()
                        .copied()
                        .ok_or_else(|| format!("{word} needs a value (usage: {usage})"))?,
                };
                if value.is_empty() {
                    return Err(format!("{word} needs a value (usage: {usage})"));
                }
                flags.values.push((flag, value));
            } else if inline.is_some() {
                return Err(format!("{flag} takes no value (usage: {usage})"));
            } else {
                flags.switches.push(flag);
            }
        }
        Ok(flags)
    }

    fn value(&self, flag: &str) -> Option<&'a str> {
        self.values
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, v)| *v)
    }

    fn has(&self, flag: &str) -> bool {
        self.switches.contains(&flag) || self.values.iter().any(|(f, _)| *f == flag)
    }

    fn u32(&self, flag: &str, min: u32, max: u32) -> Result<Option<u32>, String> {
        self.value(flag)
            .map(|v| number(v, flag, "a number", min, max))
            .transpose()
    }
}

/// A config error in a one-line command: the key and what is wrong (the
/// parser's setting position adds nothing on one line).
pub fn inline_error(error: config::ConfigError) -> String {
    format!("{}", config::ConfigError { line: 0, ..error })
}

/// xl's config-file arguments: `[-n] [-f FILE | FILE] [var=value...]`.
/// `None` when no file is named (the inline form); `-n` without a file is
/// refused (a dry run prints a file's resulting config).
fn config_file(args: &[&str], usage: &str) -> Result<Option<ConfigFile>, String> {
    let mut dry_run = false;
    let mut file: Option<&str> = None;
    let mut rest: Vec<&str> = Vec::new();
    let mut words = args.iter();
    while let Some(&word) = words.next() {
        match word {
            "-n" if !dry_run && file.is_none() => dry_run = true,
            "-f" if file.is_none() && rest.is_empty() => {
                file = Some(
                    words
                        .next()
                        .copied()
                        .ok_or_else(|| format!("-f needs a FILE (usage: {usage})"))?,
                );
            }
            w if w.starts_with('-') => return Err(format!("unexpected '{w}' (usage: {usage})")),
            w if !w.contains('=') && file.is_none() && rest.is_empty() => file = Some(w),
            w => rest.push(w),
        }
    }
    let Some(name) = file else {
        return if dry_run {
            Err(format!("-n needs a config FILE (usage: {usage})"))
        } else {
            Ok(None)
        };
    };
    if name.contains('=') || name.contains(['"', '\'']) {
        return Err(format!(
            "'{name}' is not a config file name (usage: {usage})"
        ));
    }
    let overrides = config::parse_overrides(&rest.join(" ")).map_err(inline_error)?;
    Ok(Some(ConfigFile {
        name: name.to_string(),
        overrides,
        dry_run,
    }))
}

/// An xl CPU list (`2`, `2-3`, `0-3,^1`, `all`, `node:1`), non-empty.
fn cpu_list(text: &str, topology: &Topology) -> Result<BTreeSet<u32>, String> {
    let cpus = config::parse_cpu_list(text, topology)?;
    if cpus.is_empty() {
        return Err(format!("'{text}' names no CPU"));
    }
    Ok(cpus)
}

/// Parses one command line (already through [`check_line`] or the
/// [`LineEditor`]) for a machine whose topology is not known: CPU lists
/// with `all` or `node:` are refused (see [`parse_in`]). `Ok(None)` for an
/// empty line.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    parse_in(line, &Topology::default())
}

/// Parses one command line for the machine `topology` describes (CPU
/// lists with `all`, `node:N` and `nodes:` resolve against it).
pub fn parse_in(line: &str, topology: &Topology) -> Result<Option<Command>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&name, args)) = words.split_first() else {
        return Ok(None);
    };
    let rest = line
        .trim_start()
        .split_once(char::is_whitespace)
        .map_or("", |(_, rest)| rest.trim());
    let usage_error = || format!("usage: {}", usage(name));
    let one = |args: &[&str]| match args {
        [only] => Ok(only.to_string()),
        _ => Err(usage_error()),
    };
    let two = |args: &[&str]| match args {
        [a, b] => Ok((a.to_string(), b.to_string())),
        _ => Err(usage_error()),
    };
    let none = |args: &[&str]| {
        if args.is_empty() {
            Ok(())
        } else {
            Err(usage_error())
        }
    };
    let command = match name {
        "help" => none(args).map(|()| Command::Help)?,
        "info" => none(args).map(|()| Command::Info)?,
        "poweroff" => none(args).map(|()| Command::Poweroff)?,
        "cpupool-numa-split" => none(args).map(|()| Command::NumaSplit)?,
        "list" => {
            let mut long = false;
            let mut cpupool = false;
            let mut pool = None;
            let mut domain = None;
            for arg in args {
                match (*arg, arg.strip_prefix("--pool=")) {
                    ("-l" | "--long", _) if !long => long = true,
                    ("-c" | "--cpupool", _) if !cpupool => cpupool = true,
                    ("-v" | "--verbose" | "-Z" | "--context" | "-n" | "--numa", _) => {
                        return Err(format!(
                            "list {arg}: not built (domains have no UUID, security label or NUMA affinity)"
                        ))
                    }
                    (_, Some(p)) if pool.is_none() && !p.is_empty() => pool = Some(p.to_string()),
                    (d, None) if domain.is_none() && !d.starts_with('-') => {
                        domain = Some(d.to_string())
                    }
                    _ => return Err(usage_error()),
                }
            }
            Command::List {
                long,
                pool,
                cpupool,
                domain,
            }
        }
        "create" if rest.is_empty() => return Err(usage_error()),
        "create" => match config_file(args, usage(name))? {
            Some(file) => Command::Create(DomainSource::File(file)),
            None => Command::Create(DomainSource::Inline(
                config::parse_domain_inline(rest).map_err(inline_error)?,
            )),
        },
        "cpupool-create" | "cpupool-new" | "pool-new" => {
            let source = if rest.is_empty() {
                return Err(usage_error());
            } else if let Some(file) = config_file(args, usage(name))? {
                if file.dry_run && name != "cpupool-create" {
                    return Err(format!("unexpected '-n' (usage: {})", usage(name)));
                }
                PoolSource::File(file)
            } else {
                PoolSource::Inline(config::parse_pool_inline(rest, topology).map_err(inline_error)?)
            };
            if name == "cpupool-create" {
                Command::PoolCreate(source)
            } else {
                Command::PoolNew(source)
            }
        }
        "destroy" => Command::Destroy(one(args)?),
        "console" => Command::Console(one(args)?),
        "pause" => Command::Pause(one(args)?),
        "unpause" => Command::Unpause(one(args)?),
        "cpupool-start" => Command::PoolStart(one(args)?),
        "cpupool-destroy" => Command::PoolDestroy(one(args)?),
        "cpupool-delete" => Command::PoolDelete(one(args)?),
        "cpupool-rename" => {
            let (pool, name) = two(args)?;
            Command::PoolRename { pool, name }
        }
        "cpupool-cpu-add" | "cpupool-cpu-remove" => {
            let (pool, cpus) = two(args)?;
            let cpus = cpu_list(&cpus, topology)?;
            if name == "cpupool-cpu-add" {
                Command::CpuAdd { pool, cpus }
            } else {
                Command::CpuRemove { pool, cpus }
            }
        }
        "cpupool-migrate" => {
            let (domain, pool) = two(args)?;
            Command::Migrate { domain, pool }
        }
        "cpupool-cpu-loan" => match args {
            [cpu, pool, ms] => Command::Loan {
                cpu: number(cpu, "CPU", "a CPU number", 0, u32::MAX)?,
                pool: pool.to_string(),
                ms: number(ms, "loan", "a number of milliseconds", 0, MAX_LOAN_MS)?,
            },
            _ => return Err(usage_error()),
        },
        "cpupool-cpu-loan-end" => Command::LoanEnd {
            cpu: number(&one(args)?, "CPU", "a CPU number", 0, u32::MAX)?,
        },
        "cpupool-delegate" | "cpupool-undelegate" => {
            let (pool, domain) = two(args)?;
            if name == "cpupool-delegate" {
                Command::Delegate { pool, domain }
            } else {
                Command::Undelegate { pool, domain }
            }
        }
        "cpupool-sched" => {
            let (pool, sched) = two(args)?;
            let sched = Sched::from_name(&sched)
                .ok_or_else(|| format!("'{sched}' is not a policy name"))?;
            Command::PoolSched { pool, sched }
        }
        "cpupool-list" => {
            let mut cpus = false;
            let mut long = false;
            let mut pools = Vec::new();
            for arg in args {
                match *arg {
                    "-c" if !cpus => cpus = true,
                    "-l" if !long => long = true,
                    p if !p.starts_with('-') => pools.push(p.to_string()),
                    _ => return Err(usage_error()),
                }
            }
            Command::PoolList { cpus, long, pools }
        }
        "sched-credit" => {
            let usage = usage(name);
            let flags = Flags::parse_long(
                args,
                &["-d", "-w", "-c", "-p", "-t", "-r", "-m"],
                &["-s"],
                &[
                    ("--domain", "-d"),
                    ("--weight", "-w"),
                    ("--cap", "-c"),
                    ("--cpupool", "-p"),
                    ("--schedparam", "-s"),
                    ("--tslice_ms", "-t"),
                    ("--ratelimit_us", "-r"),
                    ("--migration_delay_us", "-m"),
                ],
                usage,
            )?;
            let domain_options = flags.has("-d") || flags.has("-w") || flags.has("-c");
            // xl's refusals, in its order and words.
            if (flags.has("-p") || flags.has("-s")) && domain_options {
                return Err(String::from(
                    "Specifying a cpupool or schedparam is not allowed with domain options.",
                ));
            }
            if !flags.has("-d") && domain_options {
                return Err(String::from("Must specify a domain."));
            }
            let pool_values = flags.has("-t") || flags.has("-r") || flags.has("-m");
            if !flags.has("-s") && pool_values {
                return Err(String::from(
                    "Must specify schedparam to set schedule parameter values.",
                ));
            }
            if flags.has("-m") {
                return Err(String::from(
                    "-m/--migration_delay_us: not built (credit here has no migration delay; it stays 0us)",
                ));
            }
            let pool = flags.value("-p").map(str::to_string);
            if flags.has("-s") {
                Command::CreditPool {
                    pool,
                    timeslice_ms: flags.u32("-t", 1, u32::MAX)?,
                    ratelimit_us: flags.u32("-r", 0, u32::MAX)?,
                }
            } else if let Some(domain) = flags.value("-d") {
                Command::CreditDomain {
                    domain: domain.to_string(),
                    weight: flags.u32("-w", 0, u32::MAX)?,
                    cap_pct: flags.u32("-c", 0, u32::MAX)?,
                }
            } else {
                Command::CreditShow { pool }
            }
        }
        "sched-sedf" => {
            let usage = usage(name);
            let flags = Flags::parse_long(
                args,
                &["-d", "-p", "-s", "-l", "-e", "-w", "-c"],
                &[],
                &[
                    ("--period", "-p"),
                    ("--slice", "-s"),
                    ("--latency", "-l"),
                    ("--extra", "-e"),
                    ("--weight", "-w"),
                    ("--cpupool", "-c"),
                ],
                usage,
            )?;
            let domain_values = ["-p", "-s", "-l", "-e", "-w"].iter().any(|f| flags.has(f));
            // Xen 4.5's xl refusals, in its order and words.
            if flags.has("-c") && (flags.has("-d") || domain_values) {
                return Err(String::from(
                    "Specifying a cpupool is not allowed with other options.",
                ));
            }
            if !flags.has("-d") && domain_values {
                return Err(String::from("Must specify a domain."));
            }
            if flags.has("-l") {
                return Err(String::from(
                    "-l/--latency: not built (SEDF here has no latency scaling of extra time); nothing was changed",
                ));
            }
            if flags.has("-w") {
                return Err(String::from(
                    "-w/--weight: not built (SEDF here shares extra time equally, without weights); nothing was changed",
                ));
            }
            match flags.value("-d") {
                Some(domain) => Command::SedfDomain {
                    domain: domain.to_string(),
                    period_ms: flags.u32("-p", 0, u32::MAX)?,
                    slice_ms: flags.u32("-s", 0, u32::MAX)?,
                    extra: flags.u32("-e", 0, 1)?.map(|e| e == 1),
                },
                None => Command::SedfShow {
                    pool: flags.value("-c").map(str::to_string),
                },
            }
        }
        "sched-group" => {
            let usage = usage(name);
            let flags = Flags::parse(args, &["-d", "-m"], &["-n"], usage)?;
            let domain = flags.value("-d").ok_or_else(|| format!("usage: {usage}"))?;
            let master = match (flags.value("-m"), flags.has("-n")) {
                (Some(m), false) => Some(m.to_string()),
                (None, true) => None,
                _ => return Err(format!("usage: {usage}")),
            };
            Command::Group {
                domain: domain.to_string(),
                master,
            }
        }
        "sched-param" => {
            let usage = usage(name);
            let (flag, target, pairs) = match args {
                [flag @ ("-d" | "-p"), target, pairs @ ..] => (*flag, target.to_string(), pairs),
                _ => return Err(format!("usage: {usage}")),
            };
            let mut params: Vec<(String, String)> = Vec::new();
            for pair in pairs {
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(format!("'{pair}' is not KEY=VALUE (usage: {usage})"));
                };
                if key.is_empty() || value.is_empty() || value.contains('=') {
                    return Err(format!("'{pair}' is not KEY=VALUE (usage: {usage})"));
                }
                if params.iter().any(|(k, _)| k == key) {
                    return Err(format!("{key}: given twice"));
                }
                params.push((key.to_string(), value.to_string()));
            }
            if flag == "-d" {
                Command::ParamDomain {
                    domain: target,
                    params,
                }
            } else {
                Command::ParamPool {
                    pool: target,
                    params,
                }
            }
        }
        "vcpu-list" => match args {
            [] => Command::VcpuList(None),
            [d] => Command::VcpuList(Some(d.to_string())),
            _ => return Err(usage_error()),
        },
        "vcpu-pin" => {
            let (domain, vcpu, hard, soft) = match args {
                [d, v, hard] => (d, v, *hard, "-"),
                [d, v, hard, soft] => (d, v, *hard, *soft),
                _ => return Err(usage_error()),
            };
            if hard == "-" && soft == "-" {
                return Err(String::from(
                    "vcpu-pin: nothing to change (- keeps an affinity: give the hard or the soft one)",
                ));
            }
            let keep_or_list = |text: &str| match text {
                "-" => Ok(None),
                list => cpu_list(list, topology).map(Some),
            };
            let vcpu = match *vcpu {
                "all" => None,
                v => Some(number(v, "vcpu-pin", "a vCPU number or all", 0, u32::MAX)?),
            };
            Command::VcpuPin {
                domain: domain.to_string(),
                vcpu,
                cpus: keep_or_list(hard)?,
                soft: keep_or_list(soft)?,
            }
        }
        "vcpu-set" => {
            let (ignore_host, rest) = match args {
                ["-i" | "--ignore-host", rest @ ..] => (true, rest),
                rest => (false, rest),
            };
            let (domain, online) = two(rest)?;
            Command::VcpuSet {
                domain,
                online: number(&online, "vcpu-set", "a number of vCPUs", 1, u32::MAX)?,
                ignore_host,
            }
        }
        "top" => {
            let flags = Flags::parse(args, &["-d"], &["--json"], usage(name))?;
            let ms = match flags.value("-d") {
                Some(ms) => number(ms, "-d", "a number", 1, MAX_WAIT_MS)?,
                None => 1000,
            };
            Command::Top {
                json: flags.has("--json"),
                ms,
            }
        }
        "server-fault" => {
            let (pool, how) = two(args)?;
            let fault = match how.as_str() {
                "crash" => ServerFault::Crash,
                "hang" => ServerFault::Hang,
                "ignore-remove" => ServerFault::IgnoreRemove,
                other => {
                    return Err(format!(
                        "unknown fault '{other}' (crash, hang, ignore-remove)"
                    ))
                }
            };
            Command::ServerFault { pool, fault }
        }
        "sleep" => Command::Sleep(number(
            &one(args)?,
            "sleep",
            "a number of milliseconds",
            0,
            MAX_WAIT_MS,
        )?),
        "repeat" => {
            let count = args.first().ok_or_else(usage_error)?;
            let count = number(count, "repeat", "a count", 1, MAX_REPEAT)?;
            let body = rest
                .strip_prefix(args[0])
                .map(str::trim)
                .unwrap_or_default();
            let commands: Vec<String> = body.split('|').map(|c| c.trim().to_string()).collect();
            for command in &commands {
                match parse_in(&command.replace('#', "1"), topology) {
                    Ok(Some(Command::Repeat { .. })) => {
                        return Err(String::from("repeat: commands cannot repeat themselves"))
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(usage_error()),
                    Err(why) => return Err(format!("repeat: '{command}': {why}")),
                }
            }
            Command::Repeat { count, commands }
        }
        other if NOT_BUILT.contains(&other) => return Err(format!("'{other}': not built yet")),
        other => return Err(format!("unknown command '{other}' (try help)")),
    };
    Ok(Some(command))
}

#[cfg(test)]
mod tests;
