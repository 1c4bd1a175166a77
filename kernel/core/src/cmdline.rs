//! The kernel command line: `key` and `key=value` options separated by ASCII
//! whitespace.
//!
//! There is no quoting: `key="a b"` is two tokens, `key="a` and `b"`. No
//! option takes a value with spaces, so none is needed. Unknown options, bad
//! values and duplicates are reported through a warning callback and never
//! stop the boot: a bad value keeps the previous (default) value, and of
//! duplicates the last valid one wins.

use core::fmt;

/// Which deliberate CPU exception `selftest=` triggers after boot, to prove
/// the exception path end to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selftest {
    /// `selftest=pagefault`: a page fault (#PF).
    PageFault,
    /// `selftest=gpf`: a general-protection fault (#GP).
    GeneralProtection,
    /// `selftest=divide`: a divide error (#DE).
    DivideError,
    /// `selftest=ud`: an invalid opcode (#UD).
    InvalidOpcode,
    /// `selftest=breakpoint`: a breakpoint (#BP).
    Breakpoint,
    /// `selftest=doublefault`: a double fault (#DF).
    DoubleFault,
}

impl Selftest {
    /// Every variant, in declaration order.
    pub const ALL: [Selftest; 6] = [
        Selftest::PageFault,
        Selftest::GeneralProtection,
        Selftest::DivideError,
        Selftest::InvalidOpcode,
        Selftest::Breakpoint,
        Selftest::DoubleFault,
    ];

    /// The value spelling used on the command line (`pagefault`, `gpf`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Selftest::PageFault => "pagefault",
            Selftest::GeneralProtection => "gpf",
            Selftest::DivideError => "divide",
            Selftest::InvalidOpcode => "ud",
            Selftest::Breakpoint => "breakpoint",
            Selftest::DoubleFault => "doublefault",
        }
    }

    /// The variant spelled `name` on the command line.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// How much the kernel logs; ordered from quietest to most verbose, so
/// `message_level <= args.loglevel` decides whether to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `loglevel=error`: failures only.
    Error,
    /// `loglevel=warn`: failures and suspicious input.
    Warn,
    /// `loglevel=info` (default): boot progress.
    #[default]
    Info,
    /// `loglevel=debug`: everything.
    Debug,
}

impl LogLevel {
    /// Every variant, quietest first.
    pub const ALL: [LogLevel; 4] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
    ];

    /// The value spelling used on the command line (`error`, `warn`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }

    /// The variant spelled `name` on the command line.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }
}

/// The parsed kernel options. `Default` is what an empty command line gives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelArgs<'a> {
    /// The command line as parsed (cut at the first NUL), for logging.
    pub line: &'a str,
    /// `poweroff`: power the machine off instead of idling once boot is done.
    pub poweroff: bool,
    /// `selftest=...`: the exception to trigger deliberately, if any.
    pub selftest: Option<Selftest>,
    /// `test`: run the in-image test suite.
    pub test: bool,
    /// `bench`: run the in-image benchmarks.
    pub bench: bool,
    /// `pool0_cpus=N` (N >= 1): CPUs given to the first pool; `None` lets the
    /// kernel choose.
    pub pool0_cpus: Option<u32>,
    /// `loglevel=error|warn|info|debug`, default `info`.
    pub loglevel: LogLevel,
    /// `fuzz`: run the syscall fuzzer (a root-task option).
    pub fuzz: bool,
    /// `schedtest` or `schedtest=credit|sedf`: run a policy on metal and
    /// measure shares (a root-task option; `schedtest` alone is credit).
    pub schedtest: Option<&'a str>,
    /// `seed=N`: the fuzzer's seed (a root-task option).
    pub seed: Option<u64>,
    /// `ipc_fastpath=on|off`: whether the IPC fastpath is used (default on).
    pub ipc_fastpath: Option<bool>,
    /// `pace_hz=N` (100..=100000): run the PIT at N Hz with its interrupt
    /// masked. Nothing in Tarn sees it; under QEMU's icount it bounds the
    /// emulator's round-robin turns (every PIT edge is a timer deadline), so
    /// a CPU waiting for the kernel lock waits out a short turn of the
    /// holder, as on parallel hardware, not a long one.
    pub pace_hz: Option<u32>,
    /// `noauto`: the root task skips the boot-time pool and domain configs
    /// (a root-task option).
    pub noauto: bool,
    /// `vmtest=GUEST,...`: the guests the VMM runs (a root-task option).
    pub vmtest: Option<&'a str>,
    /// `root_cnode_bits=N` (12..=16): log2 slots of the root task's initial
    /// CNode, instead of `ROOT_CNODE_SIZE_BITS` (a smaller one makes the
    /// root task grow its CSpace sooner: the test of that growth).
    pub root_cnode_bits: Option<u8>,
}

/// A problem with one command-line token; parsing continues after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning<'a> {
    /// The option's key is not one the kernel knows.
    UnknownOption(&'a str),
    /// A known option with a value it cannot take (or a flag given a value,
    /// or a valued option given none: `value` is then `""`).
    BadValue {
        /// The option's key.
        option: &'a str,
        /// The rejected value.
        value: &'a str,
    },
    /// The option appeared before; this later occurrence overrides it.
    Duplicate(&'a str),
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnknownOption(option) => {
                write!(f, "warning: unknown kernel option '{option}'")
            }
            Warning::BadValue { option, value } => {
                write!(
                    f,
                    "warning: bad value '{value}' for kernel option '{option}'"
                )
            }
            Warning::Duplicate(option) => {
                write!(
                    f,
                    "warning: duplicate kernel option '{option}', the last one wins"
                )
            }
        }
    }
}

/// The options the parser knows, as bits for duplicate detection.
#[derive(Clone, Copy)]
enum Key {
    Poweroff = 1 << 0,
    Selftest = 1 << 1,
    Test = 1 << 2,
    Bench = 1 << 3,
    Pool0Cpus = 1 << 4,
    LogLevel = 1 << 5,
    Fuzz = 1 << 6,
    Seed = 1 << 7,
    IpcFastpath = 1 << 8,
    SchedTest = 1 << 9,
    NoAuto = 1 << 10,
    VmTest = 1 << 11,
    PaceHz = 1 << 12,
    RootCnodeBits = 1 << 13,
}

impl Key {
    fn from_name(name: &str) -> Option<Key> {
        Some(match name {
            "poweroff" => Key::Poweroff,
            "selftest" => Key::Selftest,
            "test" => Key::Test,
            "bench" => Key::Bench,
            "pool0_cpus" => Key::Pool0Cpus,
            "loglevel" => Key::LogLevel,
            "fuzz" => Key::Fuzz,
            "schedtest" => Key::SchedTest,
            "seed" => Key::Seed,
            "ipc_fastpath" => Key::IpcFastpath,
            "noauto" => Key::NoAuto,
            "vmtest" => Key::VmTest,
            "pace_hz" => Key::PaceHz,
            "root_cnode_bits" => Key::RootCnodeBits,
            _ => return None,
        })
    }
}

impl<'a> KernelArgs<'a> {
    /// Parses `line`, calling `warn` once per problem in command-line order.
    ///
    /// `line` may carry the boot loader's NUL terminator and padding: it is
    /// cut at the first NUL. Never fails; an empty line gives the defaults.
    pub fn parse(line: &'a str, mut warn: impl FnMut(Warning<'a>)) -> KernelArgs<'a> {
        let line = match line.find('\0') {
            Some(nul) => &line[..nul],
            None => line,
        };
        let mut args = KernelArgs {
            line,
            ..KernelArgs::default()
        };
        let mut seen = 0u32;
        for token in line.split_ascii_whitespace() {
            let (option, value) = match token.split_once('=') {
                Some((option, value)) => (option, Some(value)),
                None => (token, None),
            };
            let Some(key) = Key::from_name(option) else {
                warn(Warning::UnknownOption(option));
                continue;
            };
            if seen & key as u32 != 0 {
                warn(Warning::Duplicate(option));
            }
            seen |= key as u32;
            if args.apply(key, value).is_err() {
                warn(Warning::BadValue {
                    option,
                    value: value.unwrap_or(""),
                });
            }
        }
        args
    }

    /// Sets the field for `key` from `value`, or leaves it alone and fails.
    fn apply(&mut self, key: Key, value: Option<&'a str>) -> Result<(), ()> {
        let flag = |value: Option<&str>| match value {
            None => Ok(true),
            Some(_) => Err(()),
        };
        match key {
            Key::Poweroff => self.poweroff = flag(value)?,
            Key::Test => self.test = flag(value)?,
            Key::Bench => self.bench = flag(value)?,
            Key::Fuzz => self.fuzz = flag(value)?,
            Key::NoAuto => self.noauto = flag(value)?,
            Key::SchedTest => {
                self.schedtest = Some(match value {
                    None | Some("credit") => "credit",
                    Some("sedf") => "sedf",
                    Some(_) => return Err(()),
                });
            }
            Key::VmTest => self.vmtest = Some(value.filter(|v| !v.is_empty()).ok_or(())?),
            Key::Seed => self.seed = Some(value.and_then(|v| v.parse::<u64>().ok()).ok_or(())?),
            Key::IpcFastpath => {
                self.ipc_fastpath = Some(match value {
                    Some("on") => true,
                    Some("off") => false,
                    _ => return Err(()),
                });
            }
            Key::Selftest => {
                self.selftest = Some(value.and_then(Selftest::from_name).ok_or(())?);
            }
            Key::LogLevel => self.loglevel = value.and_then(LogLevel::from_name).ok_or(())?,
            Key::PaceHz => {
                let hz = value
                    .and_then(|v| v.parse::<u32>().ok())
                    .filter(|hz| (100..=100_000).contains(hz))
                    .ok_or(())?;
                self.pace_hz = Some(hz);
            }
            Key::RootCnodeBits => {
                let bits = value
                    .and_then(|v| v.parse::<u8>().ok())
                    .filter(|bits| (12..=16).contains(bits))
                    .ok_or(())?;
                self.root_cnode_bits = Some(bits);
            }
            Key::Pool0Cpus => {
                let cpus = value
                    .and_then(|v| v.parse::<u32>().ok())
                    .filter(|&n| n > 0)
                    .ok_or(())?;
                self.pool0_cpus = Some(cpus);
            }
        }
        Ok(())
    }
}

/// The text of a NUL-terminated boot-loader string: `bytes` cut at the first
/// NUL (or whole if there is none), then cut to its longest valid UTF-8
/// prefix so that a stray byte loses the tail rather than the whole string.
pub fn str_from_c_bytes(bytes: &[u8]) -> &str {
    let bytes = match bytes.iter().position(|&b| b == 0) {
        Some(nul) => &bytes[..nul],
        None => bytes,
    };
    match core::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => core::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn parse(line: &str) -> (KernelArgs<'_>, Vec<Warning<'_>>) {
        let mut warnings = Vec::new();
        let args = KernelArgs::parse(line, |w| warnings.push(w));
        (args, warnings)
    }

    #[test]
    fn empty_line_gives_defaults_without_warnings() {
        for line in ["", "   ", "\0", "\0\0\0", " \t\n "] {
            let (args, warnings) = parse(line);
            assert!(!args.line.contains('\0'));
            assert_eq!(
                args,
                KernelArgs {
                    line: args.line,
                    ..KernelArgs::default()
                }
            );
            assert!(warnings.is_empty(), "{line:?}: {warnings:?}");
        }
        assert_eq!(KernelArgs::default().loglevel, LogLevel::Info);
    }

    #[test]
    fn every_option_is_recognised() {
        let (args, warnings) = parse(
            "poweroff selftest=gpf test bench pool0_cpus=3 loglevel=debug noauto pace_hz=10000 root_cnode_bits=12",
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(args.poweroff && args.test && args.bench);
        assert_eq!(args.selftest, Some(Selftest::GeneralProtection));
        assert_eq!(args.pool0_cpus, Some(3));
        assert!(args.noauto);
        assert_eq!(args.pace_hz, Some(10_000));
        assert_eq!(args.root_cnode_bits, Some(12));
        assert_eq!(args.loglevel, LogLevel::Debug);
    }

    #[test]
    fn every_selftest_and_loglevel_name_round_trips() {
        for test in Selftest::ALL {
            let line = std::format!("selftest={}", test.name());
            assert_eq!(parse(&line).0.selftest, Some(test));
        }
        for level in LogLevel::ALL {
            let line = std::format!("loglevel={}", level.name());
            assert_eq!(parse(&line).0.loglevel, level);
        }
        assert!(LogLevel::Error < LogLevel::Warn && LogLevel::Info < LogLevel::Debug);
    }

    #[test]
    fn unknown_option_warns_with_its_key_and_is_ignored() {
        let (args, warnings) = parse("frobnicate=7 poweroff quux");
        assert!(args.poweroff);
        assert_eq!(
            warnings,
            [
                Warning::UnknownOption("frobnicate"),
                Warning::UnknownOption("quux")
            ]
        );
    }

    #[test]
    fn bad_values_warn_and_keep_the_default() {
        let (args, warnings) = parse(
            "pool0_cpus=x pool0_cpus=0 pool0_cpus=-1 pool0_cpus=99999999999 \
             loglevel=loud selftest=reboot selftest poweroff=1 test= bench=yes \
             root_cnode_bits=11 root_cnode_bits=17",
        );
        assert_eq!(
            args,
            KernelArgs {
                line: args.line,
                ..KernelArgs::default()
            }
        );
        let bad: Vec<_> = warnings
            .iter()
            .filter_map(|w| match w {
                Warning::BadValue { option, value } => Some((*option, *value)),
                _ => None,
            })
            .collect();
        assert_eq!(
            bad,
            [
                ("pool0_cpus", "x"),
                ("pool0_cpus", "0"),
                ("pool0_cpus", "-1"),
                ("pool0_cpus", "99999999999"),
                ("loglevel", "loud"),
                ("selftest", "reboot"),
                ("selftest", ""),
                ("poweroff", "1"),
                ("test", ""),
                ("bench", "yes"),
                ("root_cnode_bits", "11"),
                ("root_cnode_bits", "17"),
            ]
        );
    }

    #[test]
    fn duplicate_warns_and_the_last_valid_value_wins() {
        let (args, warnings) = parse("loglevel=warn loglevel=error pool0_cpus=2 pool0_cpus=bad");
        assert_eq!(args.loglevel, LogLevel::Error);
        assert_eq!(
            args.pool0_cpus,
            Some(2),
            "a bad later value keeps the earlier one"
        );
        assert_eq!(
            warnings,
            [
                Warning::Duplicate("loglevel"),
                Warning::Duplicate("pool0_cpus"),
                Warning::BadValue {
                    option: "pool0_cpus",
                    value: "bad"
                },
            ]
        );
    }

    #[test]
    fn trailing_nuls_and_mixed_whitespace_are_tolerated() {
        let (args, warnings) = parse("\tpoweroff\n\r  bench \0\0\0garbage");
        assert!(args.poweroff && args.bench);
        assert_eq!(args.line, "\tpoweroff\n\r  bench ");
        assert!(warnings.is_empty());
    }

    #[test]
    fn quotes_are_not_special() {
        let (_, warnings) = parse("key=\"a b\"");
        assert_eq!(
            warnings,
            [Warning::UnknownOption("key"), Warning::UnknownOption("b\"")]
        );
    }

    #[test]
    fn value_may_contain_equals_sign_and_key_may_be_empty() {
        let (_, warnings) = parse("loglevel=info=debug =x");
        assert_eq!(
            warnings,
            [
                Warning::BadValue {
                    option: "loglevel",
                    value: "info=debug"
                },
                Warning::UnknownOption(""),
            ]
        );
    }

    #[test]
    fn long_lines_parse_without_allocation_limits() {
        let mut line = String::new();
        for i in 0..1000 {
            line.push_str(if i % 2 == 0 { "bench " } else { "x=y " });
        }
        line.push_str("loglevel=warn");
        assert!(line.len() > 4096);
        let mut count = 0;
        let args = KernelArgs::parse(&line, |_| count += 1);
        assert!(args.bench);
        assert_eq!(args.loglevel, LogLevel::Warn);
        assert_eq!(count, 500 + 499, "500 unknown `x`, 499 duplicate `bench`");
    }

    #[test]
    fn warnings_display_as_kernel_log_lines() {
        assert_eq!(
            Warning::UnknownOption("frobnicate").to_string(),
            "warning: unknown kernel option 'frobnicate'"
        );
        assert_eq!(
            Warning::BadValue {
                option: "pool0_cpus",
                value: "x"
            }
            .to_string(),
            "warning: bad value 'x' for kernel option 'pool0_cpus'"
        );
        assert_eq!(
            Warning::Duplicate("loglevel").to_string(),
            "warning: duplicate kernel option 'loglevel', the last one wins"
        );
    }

    #[test]
    fn c_strings_stop_at_nul_and_keep_the_valid_utf8_prefix() {
        assert_eq!(str_from_c_bytes(b"abc\0def"), "abc");
        assert_eq!(str_from_c_bytes(b"abc"), "abc");
        assert_eq!(str_from_c_bytes(b""), "");
        assert_eq!(str_from_c_bytes(b"\0"), "");
        assert_eq!(str_from_c_bytes(b"ok\xffbad\0"), "ok");
        assert_eq!(str_from_c_bytes("h\u{e9}\0".as_bytes()), "h\u{e9}");
    }

    #[test]
    fn fuzz_random_lines_never_panic() {
        let mut rng = crate::testutil::Rng::new(1);
        let alphabet = b"abcdelopstuxw_=0123456789 \t\0";
        for _ in 0..2000 {
            let len = rng.below(64);
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let line = String::from_utf8(bytes).unwrap();
            let mut n = 0;
            let _ = KernelArgs::parse(&line, |_| n += 1);
            assert!(n <= line.len());
        }
    }

    #[test]
    fn root_task_options_and_fastpath_switch() {
        let mut warnings = std::vec::Vec::new();
        let args = KernelArgs::parse("fuzz seed=42 ipc_fastpath=off", |w| warnings.push(w));
        assert!(warnings.is_empty());
        assert!(args.fuzz);
        assert_eq!(args.seed, Some(42));
        assert_eq!(args.ipc_fastpath, Some(false));
        let args = KernelArgs::parse("seed=x ipc_fastpath=maybe fuzz=1", |w| warnings.push(w));
        assert_eq!(warnings.len(), 3);
        assert_eq!(
            (args.seed, args.ipc_fastpath, args.fuzz),
            (None, None, false)
        );
    }
}
