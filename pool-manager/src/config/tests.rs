//! Host tests of the config parsers: each accepted form, each error naming
//! its line and key, and a seeded fuzz that no input panics.

use super::*;
use alloc::vec;

/// The spec of a pool file (its warnings are tested on their own).
fn parse_pool_config(text: &str) -> Result<PoolSpec, ConfigError> {
    super::parse_pool_config(text, &Topology::default()).map(|(spec, _)| spec)
}

/// The inline form on a machine whose topology is not known.
fn parse_pool_inline(text: &str) -> Result<PoolSpec, ConfigError> {
    super::parse_pool_inline(text, &Topology::default())
}

fn set(cpus: &[u32]) -> CpuRequest {
    CpuRequest::List(cpus.iter().copied().collect())
}

fn err(line: u32, key: Option<&str>, kind: ConfigErrorKind) -> ConfigError {
    ConfigError {
        line,
        key: key.map(String::from),
        kind,
    }
}

#[test]
fn pool_file_with_list_comments_and_other_config() {
    let text = "# licence pool\n\
                name = \"lic\"   # the product's pool\n\
                sched='credit'\n\
                \n\
                cpus = [\"2\", \"3\"]\n\
                other_config = [ \"a=1\",\n   'b=2', # second\n ]\n";
    let spec = parse_pool_config(text).unwrap();
    assert_eq!(spec.name, "lic");
    assert_eq!(spec.sched, Sched::credit());
    assert_eq!(spec.cpus, set(&[2, 3]));
    assert_eq!(
        spec.other_config,
        vec!["a=1".to_string(), "b=2".to_string()]
    );
}

#[test]
fn pool_cpus_as_range_count_and_list_forms() {
    assert_eq!(
        parse_pool_config("name=\"p\"\ncpus=\"2-3\"").unwrap().cpus,
        set(&[2, 3])
    );
    assert_eq!(
        parse_pool_config("name=\"p\"\ncpus=\"0,2-4\"")
            .unwrap()
            .cpus,
        set(&[0, 2, 3, 4])
    );
    assert_eq!(
        parse_pool_config("name=\"p\"\ncpus = 2").unwrap().cpus,
        CpuRequest::Count(2)
    );
    assert_eq!(
        parse_pool_config("name=\"p\"\ncpus = \"2\"").unwrap().cpus,
        set(&[2])
    );
    // Duplicates in a list are harmless (xl accepts them).
    assert_eq!(
        parse_pool_config("name=\"p\"\ncpus=[\"3\",\"3\",4]")
            .unwrap()
            .cpus,
        set(&[3, 4])
    );
}

#[test]
fn pool_defaults_are_credit_and_one_cpu() {
    let spec = parse_pool_config("name = \"p\"\n").unwrap();
    assert_eq!(spec.sched, Sched::credit());
    assert_eq!(spec.cpus, CpuRequest::Count(1));
    assert!(spec.other_config.is_empty());
}

#[test]
fn inline_form_equals_file_form() {
    let inline = parse_pool_inline("name=p1 sched=sedf cpus=2-3").unwrap();
    let file = parse_pool_config("name = \"p1\"\nsched = \"sedf\"\ncpus = \"2-3\"\n").unwrap();
    assert_eq!(inline, file);
    let quoted = parse_pool_inline("name=\"p1\" sched='sedf' cpus=[\"2\", \"3\"]").unwrap();
    assert_eq!(quoted, file);
}

#[test]
fn pool_errors_name_line_and_key() {
    // The inline form stays strict: a key it does not use is a typo.
    assert_eq!(
        parse_pool_inline("name=p sched=credit colour=blue").unwrap_err(),
        err(3, Some("colour"), ConfigErrorKind::UnknownKey)
    );
    assert_eq!(
        parse_pool_config("name=\"p\"\nname=\"q\"\n").unwrap_err(),
        err(2, Some("name"), ConfigErrorKind::DuplicateKey)
    );
    assert_eq!(
        parse_pool_config("name=\"p\"\nsched=\"Credit 2\"\n").unwrap_err(),
        err(
            2,
            Some("sched"),
            ConfigErrorKind::BadValue(
                "a policy name (a lower-case letter, then letters, digits, - or _)"
            )
        )
    );
    assert_eq!(
        parse_pool_config("# c\nname=\"p\ncpus=2\n").unwrap_err(),
        err(2, Some("name"), ConfigErrorKind::UnterminatedString)
    );
    assert_eq!(
        parse_pool_config("name=\"p\"\ncpus=[\"2\",\n\"3\"\n").unwrap_err(),
        err(2, Some("cpus"), ConfigErrorKind::UnterminatedList)
    );
    assert_eq!(
        parse_pool_config("name=\"p\"\ncpus=\"3-2\"")
            .unwrap_err()
            .line,
        2
    );
    assert_eq!(
        parse_pool_config("name=\"p\"\ncpus=0")
            .unwrap_err()
            .key
            .as_deref(),
        Some("cpus")
    );
    assert_eq!(
        parse_pool_config("sched=\"credit\"").unwrap_err(),
        err(0, Some("name"), ConfigErrorKind::MissingKey)
    );
    assert_eq!(
        parse_pool_config("name \"p\"").unwrap_err(),
        err(1, Some("name"), ConfigErrorKind::Syntax("expected ="))
    );
    assert_eq!(
        parse_pool_config("name=\"p\" x").unwrap_err().kind,
        ConfigErrorKind::Syntax("text after the value")
    );
    assert_eq!(
        parse_pool_inline("name=p1 cpus=2-3 bogus=1").unwrap_err(),
        err(3, Some("bogus"), ConfigErrorKind::UnknownKey)
    );
    assert_eq!(
        parse_pool_inline("name=p1 cpus=99999999999999999999").unwrap_err(),
        err(
            2,
            Some("cpus"),
            ConfigErrorKind::BadValue("number too large")
        )
    );
}

#[test]
fn domain_config_reads_xl_keys() {
    let text = "name = \"web\"\npool = \"lic\"\nkernel = \"spin\"\nvcpus = 2\n\
                memory = 64\ncpu_weight = 512\ncpu_cap = 50\ntype = \"hvm\"\n\
                period = 100\nslice = 30\nextra = 1;\n";
    let d = parse_domain_config(text).unwrap();
    assert_eq!(d.name, "web");
    assert_eq!(d.pool.as_deref(), Some("lic"));
    assert_eq!(d.image, "spin");
    assert_eq!(d.kind, DomainType::Hvm);
    assert_eq!(d.vcpus, 2);
    assert_eq!(d.memory_mib, Some(64));
    // xl's keys become the policies' own.
    assert_eq!(
        d.params.text(|_| true),
        "cap=50 extra=1 period=100 slice=30 weight=512"
    );
    assert!(d.policy_params.is_empty());
    // SEDF's keys under xl.cfg's names (Xen 4.5: period and slice in ms as
    // libxl reads them, extratime 0 or 1; latency is warned about, unused).
    let xl_sedf = parse_domain_config(
        "name = \"s\"\nkernel = \"spin\"\nperiod = 100\nslice = 30\n\
         extratime = 1\nlatency = 10\nextra = \"console=ttyS0\"\n",
    )
    .unwrap();
    assert_eq!(xl_sedf.params.text(|_| true), "extra=1 period=100 slice=30");
    assert_eq!(xl_sedf.cmdline.as_deref(), Some("console=ttyS0"));
    assert!(xl_sedf.policy_params.is_empty());
    assert_eq!(xl_sedf.warnings.len(), 1);
    assert_eq!(xl_sedf.warnings[0].key, "latency");
    assert!(parse_domain_inline("name=s image=spin period=100 slice=30 extratime=2").is_err());
    assert!(
        parse_domain_inline("name=s image=spin period=100 slice=30 extratime=1 extra=1").is_err()
    );
    // Any other key is a parameter of the pool's policy, kept verbatim for
    // the runtime to check against the policy's declarations.
    let own = parse_domain_inline("name=p image=spin prio=3 order=lifo").unwrap();
    assert_eq!(own.policy_params.text(|_| true), "order=lifo prio=3");
    assert!(own.params.is_empty());
    assert!(parse_domain_inline("name=p image=spin prio=\"a b\"").is_err());
    let minimal = parse_domain_inline("name=d image=spin").unwrap();
    assert_eq!(minimal.kind, DomainType::Native);
    assert_eq!(minimal.vcpus, 1);
    assert_eq!(minimal.params, DomainParams::default());
    assert_eq!(minimal.pool, None);
}

#[test]
fn domain_config_reads_a_linux_guest_as_xl_does() {
    let text = "name = \"deb\"\ntype = \"pvh\"\nkernel = \"linux/vmlinuz\"\n\
                ramdisk = \"linux/initrd.cpio\"\nextra = \"console=ttyS0 quiet\"\n\
                memory = 120\n";
    let d = parse_domain_config(text).unwrap();
    assert_eq!(d.kind, DomainType::Hvm);
    assert_eq!(d.image, "linux/vmlinuz");
    assert_eq!(d.ramdisk.as_deref(), Some("linux/initrd.cpio"));
    assert_eq!(d.cmdline.as_deref(), Some("console=ttyS0 quiet"));
    assert_eq!(d.memory_mib, Some(120));
    assert_eq!(
        d.params.get("extra"),
        None,
        "a string extra is the command line"
    );
}

#[test]
fn domain_errors_name_line_and_key() {
    assert_eq!(
        parse_domain_config("name=\"d\"\nimage=\"x\"\ncpu_weight=0\n").unwrap_err(),
        err(
            3,
            Some("cpu_weight"),
            ConfigErrorKind::BadValue("weight must be 1..65535")
        )
    );
    assert_eq!(
        parse_domain_config("name=\"d\"\nimage=\"x\"\nkernel=\"y\"\n").unwrap_err(),
        err(
            3,
            Some("kernel"),
            ConfigErrorKind::BadValue("give image or kernel, not both")
        )
    );
    assert_eq!(
        parse_domain_config("name=\"d\"\n").unwrap_err(),
        err(0, Some("image"), ConfigErrorKind::MissingKey)
    );
    assert_eq!(
        parse_domain_config("name=\"d\"\nimage=\"x\"\nperiod=10\nslice=20\n").unwrap_err(),
        err(
            4,
            Some("slice"),
            ConfigErrorKind::BadValue("slice must not exceed period")
        )
    );
    assert_eq!(
        parse_domain_config("name=\"d\"\nimage=\"x\"\nextra=1\n").unwrap_err(),
        err(0, Some("period"), ConfigErrorKind::MissingKey)
    );
    assert_eq!(
        parse_domain_config("name=\"d\"\nimage=\"x\"\ntype=\"pv2\"\n")
            .unwrap_err()
            .line,
        3
    );
    assert_eq!(
        parse_domain_config("name=\"d\"\nkernel=\"k\"\nramdisk=\"r\"\n").unwrap_err(),
        err(
            3,
            Some("ramdisk"),
            ConfigErrorKind::BadValue("ramdisk needs type = \"pvh\" or \"hvm\"")
        )
    );
    assert_eq!(
        parse_domain_config("name=\"d\"\nkernel=\"k\"\ntype=\"pvh\"\ncmdline=\"a\"\nextra=\"b\"\n")
            .unwrap_err(),
        err(
            5,
            Some("extra"),
            ConfigErrorKind::BadValue("give cmdline or extra, not both")
        )
    );
    assert_eq!(
        parse_domain_config("name=\"d\"\nimage=\"x\"\ncap=\"50\"\n").unwrap_err(),
        err(
            3,
            Some("cap"),
            ConfigErrorKind::BadValue("cap in percent of one CPU")
        )
    );
    assert_eq!(
        parse_domain_config("name=\"d\"\nimage=\"x\"\ncap=5\ncpu_cap=5\n").unwrap_err(),
        err(
            4,
            Some("cpu_cap"),
            ConfigErrorKind::BadValue("give cap or cpu_cap, not both")
        )
    );
    assert_eq!(
        parse_domain_config("name=\"d\"\nimage=\"x\"\nvcpus=\"2\"\n")
            .unwrap_err()
            .line,
        3
    );
}

#[test]
fn domain_config_resolves_pool_names() {
    let mut m = PoolManager::new(4, Some(2)).unwrap();
    let (lic, _) = m
        .create(parse_pool_inline("name=lic cpus=2-3").unwrap())
        .unwrap();
    let d = parse_domain_inline("name=d pool=lic image=spin").unwrap();
    assert_eq!(d.to_spec(&m).unwrap().pool, lic);
    let d0 = parse_domain_inline("name=d image=spin").unwrap();
    m.rename(POOL0, "main").unwrap();
    assert_eq!(d0.to_spec(&m).unwrap().pool, POOL0);
    let lost = parse_domain_inline("name=d pool=nope image=spin").unwrap();
    assert_eq!(lost.to_spec(&m).unwrap_err(), PoolError::NoSuchPool);
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SEEDS: &[&str] = &[
    "name = \"lic\"\nsched = \"credit\"\ncpus = [\"2\", \"3\"]\nother_config = [\"a=1\"]\n",
    "name=p1 sched=sedf cpus=2-3",
    "name = \"web\"\npool = \"lic\"\nimage = \"spin\"\nvcpus = 2\ncpu_weight = 512\nperiod = 100\nslice = 30\nextra = 1\n",
];

const ALPHABET: &[char] = &[
    'a', 'n', '=', '"', '\'', '[', ']', ',', '#', '\n', ' ', '\t', '-', '0', '9', ';', '\\', 'é',
    '\r', '_',
];

/// Every parse of arbitrary text returns (never panics), and an error's line
/// lies within the text.
fn parse_all(text: &str) -> usize {
    let lines = text
        .split('\n')
        .count()
        .max(text.split_whitespace().count()) as u32
        + 1;
    let mut errors = 0;
    for result in [
        parse_pool_config(text).map(|_| ()),
        parse_pool_inline(text).map(|_| ()),
        parse_domain_config(text).map(|_| ()),
        parse_domain_inline(text).map(|_| ()),
    ] {
        if let Err(e) = result {
            assert!(e.line <= lines, "line {} beyond the text: {text:?}", e.line);
            errors += 1;
        }
    }
    errors
}

#[test]
fn fuzzed_and_mutated_inputs_never_panic() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut errors = 0;
    let mut oks = 0;
    for _ in 0..3000 {
        // Random text from the syntax's own characters.
        let len = rng.below(40) as usize;
        let text: String = (0..len)
            .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
            .collect();
        errors += parse_all(&text);
        // A valid config with a few characters inserted, deleted or replaced.
        let mut chars: Vec<char> = SEEDS[rng.below(SEEDS.len() as u64) as usize]
            .chars()
            .collect();
        for _ in 0..=rng.below(3) {
            let at = rng.below(chars.len() as u64 + 1) as usize;
            let c = ALPHABET[rng.below(ALPHABET.len() as u64) as usize];
            match rng.below(4) {
                0 => chars.insert(at, c),
                1 if at < chars.len() => {
                    chars.remove(at);
                }
                2 if at < chars.len() => chars[at] = c,
                _ => chars.truncate(at),
            }
        }
        let text: String = chars.into_iter().collect();
        let before = errors;
        errors += parse_all(&text);
        oks += 4 - (errors - before);
    }
    // Mutations must hit both outcomes for the fuzz to mean anything.
    assert!(errors > 1000, "{errors} errors");
    assert!(oks > 100, "{oks} successful parses");
}

/// Xen's example files (`tools/examples/xlexample.pvhlinux`, `cpupool`)
/// load as xl reads them: what Tarn honours is honoured, every other xl
/// key is warned once, a key xl does not have is warned too (a domain's is
/// kept as a policy parameter candidate, decided by the pool's policy).
#[test]
fn xen_example_files_load_with_one_warning_per_unused_key() {
    let text = "type = \"pvh\"\n\
                name = \"example.pvhlinux\"\n\
                kernel = \"/boot/vmlinuz\"\n\
                extra = \"console=hvc0\"\n\
                root = \"/dev/xvda1\"\n\
                memory = 512\n\
                maxmem = 1024\n\
                vcpus = 1\n\
                cap = 50\n\
                vif = [ '' ]\n\
                disk = [ '/dev/zvol/tank/guest-volume,raw,xvda,rw' ]\n\
                on_poweroff = \"destroy\"\n\
                colour = [ 'blue' ]\n\
                prio = 3\n";
    let c = parse_domain_config(text).unwrap();
    assert_eq!(c.kind, DomainType::Hvm);
    assert_eq!(c.image, "/boot/vmlinuz");
    assert_eq!(c.cmdline.as_deref(), Some("root=/dev/xvda1 console=hvc0"));
    assert_eq!(c.memory_mib, Some(512));
    assert_eq!(c.params.get("cap"), Some("50"));
    let warned: Vec<String> = c.warnings.iter().map(|w| format!("{w}")).collect();
    assert_eq!(
        warned,
        vec![
            "line 7: maxmem: an xl key not used by Tarn, ignored".to_string(),
            "line 10: vif: an xl key not used by Tarn, ignored".to_string(),
            "line 11: disk: an xl key not used by Tarn, ignored".to_string(),
            "line 12: on_poweroff: an xl key not used by Tarn, ignored".to_string(),
            "line 13: colour: not an xl key, ignored".to_string(),
        ]
    );
    assert_eq!(c.policy_params.text(|_| true), "prio=3");
    assert_eq!(c.param_lines, vec![("prio".to_string(), 14)]);

    let pool = "# the name of the new cpupool\n\
                name = \"Example-Cpupool\"\n\
                sched = \"credit\"\n\
                cpus = [\"2\", \"3\"]\n\
                colour = \"blue\"\n";
    let (spec, warnings) = super::parse_pool_config(pool, &Topology::default()).unwrap();
    assert_eq!(spec.name, "Example-Cpupool");
    assert_eq!(spec.cpus, set(&[2, 3]));
    let warned: Vec<String> = warnings.iter().map(|w| format!("{w}")).collect();
    assert_eq!(
        warned,
        vec!["line 5: colour: not an xl key, ignored".to_string()]
    );
}

/// `cpupool-create FILE var=value`: an override replaces the file's
/// setting or adds one; `-n`'s text parses back to the same spec.
#[test]
fn overrides_replace_settings_and_the_dry_run_text_parses_back() {
    let file = "name = \"rt\"\nsched = \"sedf\"\ncpus = 2\n";
    let overrides = parse_overrides("name=rt2 cpus=\"1,3\" other_config=[\"a=1\"]").unwrap();
    let (spec, warnings) = parse_pool_config_with(file, &overrides, &Topology::default()).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(spec.name, "rt2");
    assert_eq!(spec.sched, Sched::from_name("sedf").unwrap());
    assert_eq!(spec.cpus, set(&[1, 3]));
    let text = format_pool_config(&spec);
    assert_eq!(
        text,
        "name = \"rt2\"\nsched = \"sedf\"\ncpus = [\"1\", \"3\"]\nother_config = [\"a=1\"]\n"
    );
    assert_eq!(
        super::parse_pool_config(&text, &Topology::default()).unwrap(),
        (spec, Vec::new())
    );
    let bad = parse_overrides("cpus=\"x\"").unwrap();
    assert_eq!(
        parse_pool_config_with(file, &bad, &Topology::default())
            .unwrap_err()
            .key
            .as_deref(),
        Some("cpus")
    );
    let c = parse_domain_config_with(
        "name=\"d\"\nimage=\"spin\"\ncpu_weight=256\n",
        &parse_overrides("cpu_weight=512").unwrap(),
    )
    .unwrap();
    assert_eq!(c.params.get("weight"), Some("512"));
}

/// Two nodes of four CPUs each, as QEMU's `-numa` gives them.
fn two_nodes() -> Topology {
    Topology::new(vec![0, 0, 0, 0, 1, 1, 1, 1])
}

/// xl's CPU list syntax: `all`, `^` exclusions applied left to right,
/// `node:`/`nodes:` from the topology passed in.
#[test]
fn cpu_lists_as_xl_writes_them() {
    let t = two_nodes();
    let list = |text: &str| -> Vec<u32> { parse_cpu_list(text, &t).unwrap().into_iter().collect() };
    assert_eq!(list("0-3,^1"), vec![0, 2, 3]);
    assert_eq!(list("all"), (0..8).collect::<Vec<_>>());
    assert_eq!(list("all,^0"), (1..8).collect::<Vec<_>>());
    assert_eq!(list("node:1"), vec![4, 5, 6, 7]);
    assert_eq!(list("nodes:0-1,^node:1"), vec![0, 1, 2, 3]);
    assert_eq!(list("nodes:1,^5-6,2"), vec![2, 4, 7]);
    // Left to right: a later item adds back what an earlier one took out.
    assert_eq!(list("^1,0-1"), vec![0, 1]);
    assert_eq!(list("0,^0"), Vec::<u32>::new());
    for bad in [
        "",
        "x",
        "3-1",
        "^",
        "node:",
        "node:2",
        "nodes:0-2",
        "node:x",
        "1,,2",
        "all-1",
    ] {
        assert!(parse_cpu_list(bad, &t).is_err(), "{bad:?} accepted");
    }
    // Without a topology, numbers still work; all and nodes are refused.
    let none = Topology::default();
    assert_eq!(parse_cpu_list("0-3,^1", &none).unwrap().len(), 3);
    assert!(parse_cpu_list("all", &none).is_err());
    assert!(parse_cpu_list("node:0", &none).is_err());
    // In a pool config, and xlcpupool.cfg's nodes= (the free CPUs of the
    // nodes, when which are free is known).
    let (spec, _) = super::parse_pool_config("name=\"p\"\ncpus=\"node:1,^4\"\n", &t).unwrap();
    assert_eq!(spec.cpus, set(&[5, 6, 7]));
    let (spec, _) = super::parse_pool_config("name=\"p\"\nnodes=1\n", &t).unwrap();
    assert_eq!(spec.cpus, set(&[4, 5, 6, 7]));
    let partly_free = two_nodes().with_free([0, 1, 6, 7].into_iter().collect());
    let (spec, _) =
        super::parse_pool_config("name=\"p\"\nnodes=[\"0\", 1]\n", &partly_free).unwrap();
    assert_eq!(spec.cpus, set(&[0, 1, 6, 7]));
    assert_eq!(
        super::parse_pool_config("name=\"p\"\nnodes=2\n", &t).unwrap_err(),
        err(
            2,
            Some("nodes"),
            ConfigErrorKind::BadValue("no such NUMA node")
        )
    );
    assert_eq!(
        super::parse_pool_config("name=\"p\"\ncpus=1\nnodes=1\n", &t)
            .unwrap_err()
            .kind,
        ConfigErrorKind::BadValue("give cpus or nodes, not both")
    );
    let none_free = two_nodes().with_free(BTreeSet::new());
    assert_eq!(
        super::parse_pool_config("name=\"p\"\nnodes=0\n", &none_free)
            .unwrap_err()
            .kind,
        ConfigErrorKind::BadValue("no free CPU in those nodes")
    );
}

#[test]
fn a_domain_config_prints_as_xl_cfg_text_that_reads_back() {
    let text = "name = \"web\"\npool = \"rt\"\ntype = \"pvh\"\nkernel = \"bzImage\"\n\
                vcpus = 2\nmemory = 96\ncmdline = \"console=ttyS0 quiet\"\nramdisk = \"initrd\"\n\
                cpu_weight = 512\ncap = 150\nboost = 3\nmode = \"fast\"\nvif = [ 'bridge=xenbr0' ]\n";
    let config = parse_domain_config(text).unwrap();
    let printed = format_domain_config(&config);
    assert_eq!(
        printed,
        "name = \"web\"\npool = \"rt\"\ntype = \"hvm\"\nkernel = \"bzImage\"\nvcpus = 2\n\
         memory = 96\ncmdline = \"console=ttyS0 quiet\"\nramdisk = \"initrd\"\ncap = 150\n\
         cpu_weight = 512\nboost = 3\nmode = \"fast\"\n"
    );
    let again = parse_domain_config(&printed).unwrap();
    assert_eq!(
        DomainConfig {
            param_lines: Vec::new(),
            warnings: Vec::new(),
            ..again
        },
        DomainConfig {
            param_lines: Vec::new(),
            warnings: Vec::new(),
            ..config
        }
    );
    // SEDF's keys too.
    let sedf = parse_domain_config(
        "name = \"s\"\nkernel = \"spin\"\nperiod = 100\nslice = 20\nextra = 1\n",
    )
    .unwrap();
    let printed = format_domain_config(&sedf);
    assert!(printed.contains("period = 100\nslice = 20\n") && printed.contains("extratime = 1\n"));
    assert_eq!(parse_domain_config(&printed).unwrap().params, sedf.params);
}

#[test]
fn xl_cfg_cpus_is_each_vcpus_hard_affinity() {
    let set = |cpus: &[u32]| Some(cpus.iter().copied().collect::<BTreeSet<u32>>());
    // A string: every vCPU; resolved against the machine (`all`, `node:`).
    let every =
        parse_domain_config("name=\"d\"\nkernel=\"spin\"\nvcpus=3\ncpus=\"node:1,^5\"\n").unwrap();
    assert!(every.warnings.is_empty());
    assert_eq!(
        every.affinity(&two_nodes()).unwrap(),
        vec![set(&[4, 6, 7]); 3]
    );
    // A list: one per vCPU, the others keep every CPU.
    let each =
        parse_domain_config("name=\"d\"\nkernel=\"spin\"\nvcpus=3\ncpus=[\"2\", 3]\n").unwrap();
    assert_eq!(
        each.affinity(&two_nodes()).unwrap(),
        vec![set(&[2]), set(&[3]), None]
    );
    // Errors name the line and the key.
    let long = parse_domain_config("name=\"d\"\nkernel=\"spin\"\ncpus=[\"2\", \"3\"]\n").unwrap();
    let error = long.affinity(&two_nodes()).unwrap_err();
    assert_eq!((error.line, error.key.as_deref()), (3, Some("cpus")));
    let bad = parse_domain_config("name=\"d\"\nkernel=\"spin\"\n\ncpus=\"3-2\"\n").unwrap();
    let error = bad.affinity(&two_nodes()).unwrap_err();
    assert_eq!((error.line, error.key.as_deref()), (4, Some("cpus")));
    assert_eq!(
        parse_domain_config("name=\"d\"\nkernel=\"spin\"\n")
            .unwrap()
            .affinity(&two_nodes())
            .unwrap(),
        vec![None]
    );
    // `create -n` prints it back as written.
    for config in [every, each] {
        let printed = format_domain_config(&config);
        let back = parse_domain_config(&printed).unwrap().cpus.unwrap();
        let cpus = config.cpus.unwrap();
        assert_eq!((back.every, back.lists), (cpus.every, cpus.lists));
    }
}

#[test]
fn xl_cfg_cpus_soft_and_maxvcpus() {
    let set = |cpus: &[u32]| Some(cpus.iter().copied().collect::<BTreeSet<u32>>());
    // `cpus_soft` is written as `cpus`, one list per vCPU up to maxvcpus;
    // neither key is warned about any more.
    let text = "name=\"d\"\nkernel=\"spin\"\nvcpus=1\nmaxvcpus=3\ncpus_soft=[\"1\", \"node:1\"]\n";
    let config = parse_domain_config(text).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!((config.vcpus, config.max_vcpus()), (1, 3));
    assert_eq!(
        config.soft_affinity(&two_nodes()).unwrap(),
        vec![set(&[1]), set(&[4, 5, 6, 7]), None]
    );
    assert_eq!(config.affinity(&two_nodes()).unwrap(), vec![None; 3]);
    // `create -n` prints it back as written.
    let back = parse_domain_config(&format_domain_config(&config)).unwrap();
    assert_eq!(back.maxvcpus, Some(3));
    assert_eq!(
        back.cpus_soft.unwrap().lists,
        config.cpus_soft.unwrap().lists
    );
    // xl: "maxvcpus < vcpus" is refused; errors name the line and key.
    let error =
        parse_domain_config("name=\"d\"\nkernel=\"spin\"\nvcpus=2\nmaxvcpus=1\n").unwrap_err();
    assert_eq!((error.line, error.key.as_deref()), (4, Some("maxvcpus")));
    let bad = parse_domain_config("name=\"d\"\nkernel=\"spin\"\ncpus_soft=\"x\"\n").unwrap();
    let error = bad.soft_affinity(&two_nodes()).unwrap_err();
    assert_eq!((error.line, error.key.as_deref()), (3, Some("cpus_soft")));
    // Without maxvcpus, the domain has its vcpus.
    let plain = parse_domain_config("name=\"d\"\nkernel=\"spin\"\nvcpus=2\n").unwrap();
    assert_eq!(plain.max_vcpus(), 2);
}
