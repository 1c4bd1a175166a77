use super::*;
use alloc::vec;

fn parsed(line: &str) -> Command {
    parse(line)
        .unwrap_or_else(|e| panic!("{line}: {e}"))
        .unwrap_or_else(|| panic!("{line}: empty"))
}

fn refused(line: &str) -> String {
    match parse(line) {
        Err(why) => why,
        Ok(c) => panic!("{line}: accepted as {c:?}"),
    }
}

/// Feeds `bytes` to a fresh editor; returns the echo and the line's end.
fn type_in(bytes: &[u8]) -> (String, Option<Result<String, String>>) {
    let mut editor = LineEditor::new();
    let mut echo = String::new();
    let mut end = None;
    for &b in bytes {
        match editor.feed(b) {
            Edit::Echo(c) => echo.push(char::from(c)),
            Edit::Erase => {
                echo.pop();
            }
            Edit::Line(line) => end = Some(line),
            Edit::Nothing => {}
        }
    }
    (echo, end)
}

#[test]
fn every_table_entry_and_alias_names_a_command_the_parser_knows() {
    for (usage, _) in COMMANDS {
        let name = usage.split(' ').next().unwrap();
        if let Err(why) = parse(name) {
            assert!(!why.starts_with("unknown command"), "{name}: {why}");
        }
    }
    for (alias, name) in ALIASES {
        assert_eq!(usage(alias), usage(name));
        assert!(!refused(alias).starts_with("unknown command"));
    }
    assert_eq!(
        refused("frobnicate 1"),
        "unknown command 'frobnicate' (try help)"
    );
}

#[test]
fn a_long_line_is_refused_whole_not_cut() {
    // Issue 10: a trailing pool=rt past 256 characters was dropped.
    let mut line = String::from("create name=d image=spin cmdline=");
    while line.len() < MAX_LINE {
        line.push('x');
    }
    line.push_str(" pool=rt\r");
    let (_, end) = type_in(line.as_bytes());
    assert_eq!(
        end,
        Some(Err(String::from(
            "line too long (more than 256 characters); nothing was run"
        )))
    );
    assert!(check_line(&line[..line.len() - 1]).is_err());
    // Exactly the limit is fine.
    let exact = "x".repeat(MAX_LINE);
    assert_eq!(
        type_in(format!("{exact}\r").as_bytes()).1,
        Some(Ok(exact.clone()))
    );
    assert_eq!(check_line(&exact), Ok(exact));
}

#[test]
fn bytes_outside_printable_ascii_refuse_the_line() {
    // Issue 10: `create name=dömäin` created `dmin`.
    let (echo, end) = type_in("create name=dömäin\r".as_bytes());
    assert_eq!(echo, "create name=dmin");
    assert_eq!(
        end,
        Some(Err(String::from(
            "character 0xc3 at column 14 is not printable ASCII; nothing was run"
        )))
    );
    assert!(check_line("create name=dömäin").is_err());
    assert!(check_line("list\x1b[2J").is_err());
    let (_, end) = type_in(b"list\x1b[A\r");
    assert!(matches!(end, Some(Err(_))));
}

#[test]
fn a_tab_counts_as_a_space() {
    // Issue 10: a tab joined `cpupool-list` and `-c`.
    assert_eq!(
        type_in(b"cpupool-list\t-c\r").1,
        Some(Ok(String::from("cpupool-list -c")))
    );
    assert_eq!(
        check_line("cpupool-list\t-c"),
        Ok(String::from("cpupool-list -c"))
    );
    assert_eq!(
        parsed("cpupool-list -c"),
        Command::PoolList {
            cpus: true,
            long: false,
            pools: vec![]
        }
    );
}

#[test]
fn backspace_edits_and_the_editor_starts_afresh_after_each_line() {
    let (echo, end) = type_in(b"lisx\x08t\r");
    assert_eq!(
        (echo.as_str(), end),
        ("list", Some(Ok(String::from("list"))))
    );
    let mut editor = LineEditor::new();
    for b in b"\xffbad\r" {
        editor.feed(*b);
    }
    let mut last = Edit::Nothing;
    for b in b"info\r" {
        last = editor.feed(*b);
    }
    assert_eq!(last, Edit::Line(Ok(String::from("info"))));
}

#[test]
fn numbers_that_overflow_or_leave_their_range_are_refused() {
    // Issue 10: `sleep 18446744073709551615` wrapped and returned at once.
    assert_eq!(
        refused("sleep 18446744073709551615"),
        "sleep: 18446744073709551615 is out of range (0..3600000)"
    );
    assert_eq!(
        refused("sleep 99999999999999999999999"),
        "sleep: 99999999999999999999999 is out of range (0..3600000)"
    );
    assert_eq!(
        refused("sleep x"),
        "sleep: 'x' is not a number of milliseconds"
    );
    assert_eq!(
        refused("sleep -5"),
        "sleep: '-5' is not a number of milliseconds"
    );
    assert_eq!(parsed("sleep 20"), Command::Sleep(20));
    // Issue 10: a huge `top -d` printed a bogus table.
    assert_eq!(
        refused("top -d 18446744073709551615"),
        "-d: 18446744073709551615 is out of range (1..3600000)"
    );
    assert_eq!(refused("top -d 0"), "-d: 0 is out of range (1..3600000)");
    assert_eq!(refused("top -d zero"), "-d: 'zero' is not a number");
    assert_eq!(
        refused("sched-credit -d a -w 4294967296"),
        "-w: 4294967296 is out of range (0..4294967295)"
    );
    assert_eq!(
        refused("cpupool-cpu-loan 99999999999 Pool-0 10"),
        "CPU: 99999999999 is out of range (0..4294967295)"
    );
    assert_eq!(
        refused("repeat 0 info"),
        "repeat: 0 is out of range (1..1000000)"
    );
}

#[test]
fn flags_are_checked_whole() {
    // Issue 10's tenant escape: -d with -s -p is refused, as xl does.
    assert_eq!(
        refused("sched-credit -d a -s -p Pool-0 -t 1 -r 0"),
        "Specifying a cpupool or schedparam is not allowed with domain options."
    );
    assert!(refused("sched-credit -d a -d b -w 5").contains("given twice"));
    assert!(refused("sched-credit -d a --domain=b").contains("given twice"));
    assert!(refused("sched-credit -d a -w").contains("needs a value"));
    assert!(refused("sched-credit -d a -q 1").contains("unexpected '-q'"));
    assert!(refused("sched-credit --dom=a").contains("unexpected '--dom=a'"));
    assert!(refused("sched-credit --schedparam=1").contains("takes no value"));
    assert_eq!(
        refused("sched-credit -p lic -t 5"),
        "Must specify schedparam to set schedule parameter values."
    );
    assert_eq!(
        parsed("sched-credit -s -p lic -t 5"),
        Command::CreditPool {
            pool: Some(String::from("lic")),
            timeslice_ms: Some(5),
            ratelimit_us: None
        }
    );
    assert_eq!(parsed("sched-credit"), Command::CreditShow { pool: None });
    assert_eq!(
        parsed("sched-group -d a -m b"),
        Command::Group {
            domain: String::from("a"),
            master: Some(String::from("b"))
        }
    );
    assert!(refused("sched-group -d a -m b -n").starts_with("usage:"));
    assert!(refused("sched-sedf -d a -p 10 -s 5 -e 2").contains("out of range"));
    assert!(refused("list -l -l").starts_with("usage:"));
    assert!(refused("list a b").starts_with("usage:"));
    assert!(refused("list --pool=a --pool=b").starts_with("usage:"));
    assert!(refused("cpupool-list -x").starts_with("usage:"));
    assert!(refused("destroy a b").starts_with("usage:"));
}

#[test]
fn configs_and_files_are_told_apart() {
    assert_eq!(
        parsed("create spinner-vm.cfg"),
        Command::Create(DomainSource::File(ConfigFile::named("spinner-vm.cfg")))
    );
    match parsed("create name=d pool=lic image=spin") {
        Command::Create(DomainSource::Inline(c)) => {
            assert_eq!((c.name.as_str(), c.pool.as_deref()), ("d", Some("lic")))
        }
        other => panic!("{other:?}"),
    }
    // A key xl.cfg does not have is a parameter of the pool's policy: the
    // runtime refuses it unless that policy declares it.
    match parsed("create name=d image=spin colour=blue") {
        Command::Create(DomainSource::Inline(c)) => {
            assert_eq!(c.policy_params.text(|_| true), "colour=blue")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        refused("create name=d image=spin colour=\"sky blue\""),
        "colour: bad value: a policy parameter is one word or number"
    );
    assert_eq!(
        parsed("sched-param -d web weight=512 cap=50"),
        Command::ParamDomain {
            domain: String::from("web"),
            params: vec![
                (String::from("weight"), String::from("512")),
                (String::from("cap"), String::from("50"))
            ],
        }
    );
    assert_eq!(
        parsed("sched-param -p Pool-0"),
        Command::ParamPool {
            pool: String::from("Pool-0"),
            params: vec![],
        }
    );
    assert_eq!(
        refused("sched-param -d web weight=1 weight=2"),
        "weight: given twice"
    );
    assert!(refused("sched-param -d web weight").contains("is not KEY=VALUE"));
    assert!(refused("sched-param web").starts_with("usage: sched-param"));
    assert_eq!(
        parsed("pool-new rt.cfg"),
        Command::PoolNew(PoolSource::File(ConfigFile::named("rt.cfg")))
    );
    assert!(refused("create").starts_with("usage:"));
}

#[test]
fn repeat_checks_every_command_before_running_any() {
    assert_eq!(
        parsed("repeat 3 create name=d# image=spin | destroy d#"),
        Command::Repeat {
            count: 3,
            commands: vec![
                String::from("create name=d# image=spin"),
                String::from("destroy d#")
            ]
        }
    );
    assert_eq!(
        refused("repeat 3 info | frobnicate"),
        "repeat: 'frobnicate': unknown command 'frobnicate' (try help)"
    );
    assert_eq!(
        refused("repeat 3 repeat 2 info"),
        "repeat: commands cannot repeat themselves"
    );
    assert!(refused("repeat 3 info |").starts_with("usage:"));
}

/// xl's config-file arguments: `[-n] [-f] FILE [var=value...]`, FILE with
/// or without `.cfg`.
#[test]
fn config_files_take_xl_options_and_overrides() {
    let file = |name: &str, overrides: &str, dry_run: bool| ConfigFile {
        name: name.to_string(),
        overrides: config::parse_overrides(overrides).unwrap(),
        dry_run,
    };
    assert_eq!(
        parsed("cpupool-create cpupool"),
        Command::PoolCreate(PoolSource::File(file("cpupool", "", false)))
    );
    assert_eq!(
        parsed("cpupool-create -n -f rt.cfg name=rt2 cpus=\"3\""),
        Command::PoolCreate(PoolSource::File(file(
            "rt.cfg",
            "name=rt2 cpus=\"3\"",
            true
        )))
    );
    assert_eq!(
        parsed("cpupool-create rt name=rt2"),
        Command::PoolCreate(PoolSource::File(file("rt", "name=rt2", false)))
    );
    assert_eq!(
        parsed("create -f web.cfg cpu_weight=512"),
        Command::Create(DomainSource::File(file("web.cfg", "cpu_weight=512", false)))
    );
    assert!(refused("cpupool-create -n name=x cpus=2").starts_with("-n needs a config FILE"));
    assert!(refused("cpupool-create -f").starts_with("-f needs a FILE"));
    assert!(refused("cpupool-create rt.cfg -n").starts_with("unexpected '-n'"));
    assert!(refused("cpupool-new -n rt.cfg").starts_with("unexpected '-n'"));
    assert_eq!(
        parsed("create -n web.cfg memory=64"),
        Command::Create(DomainSource::File(file("web.cfg", "memory=64", true)))
    );
    assert!(refused("create -n name=x").starts_with("-n needs a config FILE"));
    assert_eq!(
        refused("cpupool-create rt.cfg name=\"x"),
        "name: unterminated string"
    );
}

/// Console CPU lists take xl's syntax against the machine's topology.
#[test]
fn console_cpu_lists_use_the_topology() {
    let t = config::Topology::new(vec![0, 0, 1, 1]);
    let add = |line: &str| match parse_in(line, &t) {
        Ok(Some(Command::CpuAdd { cpus, .. })) => cpus.into_iter().collect::<Vec<_>>(),
        other => panic!("{line}: {other:?}"),
    };
    assert_eq!(add("cpupool-cpu-add p node:1"), vec![2, 3]);
    assert_eq!(add("cpupool-cpu-add p all,^0"), vec![1, 2, 3]);
    assert_eq!(add("cpupool-cpu-add p 0-3,^1"), vec![0, 2, 3]);
    assert!(parse_in("cpupool-cpu-add p node:2", &t)
        .unwrap_err()
        .contains("no node 2"));
    assert!(parse_in("cpupool-cpu-add p 1,^1", &t)
        .unwrap_err()
        .contains("names no CPU"));
    assert!(refused("cpupool-cpu-add p all").contains("not known"));
    assert_eq!(parsed("cpupool-numa-split"), Command::NumaSplit);
    assert!(refused("cpupool-numa-split 2").starts_with("usage:"));
    match parse_in("cpupool-create name=n cpus=node:1", &t) {
        Ok(Some(Command::PoolCreate(PoolSource::Inline(spec)))) => {
            assert_eq!(
                spec.cpus,
                crate::pools::CpuRequest::List([2, 3].into_iter().collect())
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn long_options_map_to_their_flags_and_named_flags_stay() {
    assert_eq!(
        parsed("sched-credit --domain=a --weight 384 --cap=50"),
        Command::CreditDomain {
            domain: String::from("a"),
            weight: Some(384),
            cap_pct: Some(50)
        }
    );
    assert_eq!(
        parsed("sched-credit --schedparam --cpupool=rt --tslice_ms=10 --ratelimit_us=500"),
        Command::CreditPool {
            pool: Some(String::from("rt")),
            timeslice_ms: Some(10),
            ratelimit_us: Some(500)
        }
    );
    assert!(refused("sched-credit --domain=").contains("needs a value"));
    // A flag the command names with two dashes is itself, not a long form.
    assert_eq!(
        parsed("top --json -d 500"),
        Command::Top {
            json: true,
            ms: 500
        }
    );
    assert_eq!(
        parsed("sched-sedf -d s -p 50"),
        Command::SedfDomain {
            domain: String::from("s"),
            period_ms: Some(50),
            slice_ms: None,
            extra: None
        }
    );
    assert_eq!(
        refused("sched-sedf -c rt -d s"),
        "Specifying a cpupool is not allowed with other options."
    );
    assert!(refused("sched-sedf -d s -l 5").starts_with("-l/--latency: not built"));
    assert_eq!(
        parsed("list -c 3"),
        Command::List {
            long: false,
            pool: None,
            cpupool: true,
            domain: Some(String::from("3"))
        }
    );
    assert!(refused("list -v").contains("not built"));
}

#[test]
fn vcpu_pin_takes_a_hard_and_a_soft_affinity_either_kept_with_a_dash() {
    let set = |cpus: &[u32]| Some(cpus.iter().copied().collect::<BTreeSet<u32>>());
    let pin = |line: &str| match parsed(line) {
        Command::VcpuPin {
            domain,
            vcpu,
            cpus,
            soft,
        } => (domain, vcpu, cpus, soft),
        other => panic!("{line}: {other:?}"),
    };
    // xl's four forms: `3,4`, `3,4 -`, `- 6-9`, `3,4 6-9`.
    assert_eq!(
        pin("vcpu-pin d 0 3,4"),
        ("d".into(), Some(0), set(&[3, 4]), None)
    );
    assert_eq!(
        pin("vcpu-pin d 0 3,4 -"),
        ("d".into(), Some(0), set(&[3, 4]), None)
    );
    assert_eq!(
        pin("vcpu-pin d all - 6-9"),
        ("d".into(), None, None, set(&[6, 7, 8, 9]))
    );
    assert_eq!(
        pin("vcpu-pin d 1 3 1"),
        ("d".into(), Some(1), set(&[3]), set(&[1]))
    );
    assert!(refused("vcpu-pin d 0 - -").contains("nothing to change"));
    assert!(refused("vcpu-pin d 0 - 3-2").contains("3-2"));
    assert!(refused("vcpu-pin d 0 1 2 3").contains("usage"));
}
