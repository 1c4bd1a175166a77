//! The tenant rule, table-driven: every command of the console's table,
//! with hostile argument combinations, sent as a tenant of pool `lic`; each
//! must be refused or touch nothing outside `lic` and its sub-pool `sub`.
//!
//! A new command cannot slip past: a table entry the parser does not know
//! fails `command::tests`, and a new `Command` variant does not compile
//! until both `authorize` and this test's own account of what each command
//! touches ([`effects`], an exhaustive match) say what it may do.

use super::*;
use crate::command::{self, ServerFault, ALIASES, COMMANDS, NOT_BUILT};
use crate::pools::{DomainId, DomainParams, DomainSpec, Sched, POOL0};
use alloc::format;
use alloc::string::ToString;
use alloc::vec;

/// Eight CPUs: Pool-0 {0,1}, lic {2,3,4} (the tenant's), sub {5} carved
/// from lic, far {6,7}, idle (defined, no CPUs); domains a (lic), s (sub),
/// x (Pool-0), o (far) and Domain-0.
struct World {
    manager: PoolManager,
    carved: BTreeMap<PoolId, PoolId>,
    lic: PoolId,
    sub: PoolId,
}

fn spec(name: &str, cpus: &[u32]) -> PoolSpec {
    PoolSpec {
        name: name.to_string(),
        sched: Sched::credit(),
        cpus: CpuRequest::List(cpus.iter().copied().collect()),
        other_config: Vec::new(),
    }
}

fn world() -> World {
    let mut manager = PoolManager::new(8, Some(2)).unwrap();
    let (lic, _) = manager.create(spec("lic", &[2, 3, 4])).unwrap();
    let (sub, _) = manager.create(spec("sub", &[5])).unwrap();
    let (far, _) = manager.create(spec("far", &[6, 7])).unwrap();
    manager.define(spec("idle", &[1])).unwrap();
    for (name, pool) in [("a", lic), ("s", sub), ("x", POOL0), ("o", far)] {
        manager
            .create_domain(DomainSpec {
                name: name.to_string(),
                pool,
                vcpus: 1,
                params: DomainParams::default(),
            })
            .unwrap();
    }
    let mut carved = BTreeMap::new();
    carved.insert(sub, lic);
    World {
        manager,
        carved,
        lic,
        sub,
    }
}

/// What a command reads or changes, by the test's own account (an
/// exhaustive match: a new command must be described here).
#[derive(Debug)]
enum Effect {
    Domain(String),
    Pool(String),
    AllDomains,
    AllPools,
    Cpus,
    Machine,
    File,
}

fn effects(command: &Command) -> Vec<Effect> {
    use Effect::*;
    let d = |n: &String| Domain(n.clone());
    let p = |n: &String| Pool(n.clone());
    match command {
        Command::Help => vec![],
        Command::Info | Command::Poweroff | Command::Sleep(_) | Command::Repeat { .. } => {
            vec![Machine]
        }
        Command::Top { .. } => vec![AllDomains, Machine],
        Command::List {
            pool: None,
            domain: None,
            ..
        }
        | Command::CreditShow { pool: None }
        | Command::SedfShow { pool: None } => vec![AllDomains],
        Command::List {
            pool: Some(n),
            domain: None,
            ..
        }
        | Command::CreditShow { pool: Some(n) }
        | Command::SedfShow { pool: Some(n) } => vec![p(n)],
        Command::List {
            pool,
            domain: Some(n),
            ..
        } => {
            let mut all = vec![d(n)];
            all.extend(pool.iter().map(p));
            all
        }
        Command::PoolList { pools, .. } if pools.is_empty() => vec![AllPools],
        Command::PoolList { pools, .. } => pools.iter().map(p).collect(),
        Command::Create(DomainSource::File(_))
        | Command::PoolCreate(PoolSource::File(_))
        | Command::PoolNew(PoolSource::File(_)) => vec![File],
        Command::Create(DomainSource::Inline(c)) => vec![
            Domain(c.name.clone()),
            Pool(c.pool.clone().unwrap_or_else(|| "Pool-0".to_string())),
        ],
        Command::Destroy(n) | Command::Pause(n) | Command::Unpause(n) => vec![d(n)],
        // The machine's serial console.
        Command::Console(n) => vec![d(n), Machine],
        Command::VcpuList(Some(n))
        | Command::VcpuPin { domain: n, .. }
        | Command::VcpuSet { domain: n, .. } => vec![d(n)],
        Command::VcpuList(None) => vec![AllDomains],
        Command::PoolCreate(PoolSource::Inline(_)) | Command::PoolNew(PoolSource::Inline(_)) => {
            vec![AllPools, Cpus]
        }
        Command::PoolStart(n) | Command::PoolDestroy(n) | Command::PoolDelete(n) => {
            vec![p(n), Cpus]
        }
        Command::PoolRename { pool, .. } => vec![p(pool), AllPools],
        Command::CpuAdd { pool, .. } | Command::CpuRemove { pool, .. } => vec![p(pool), Cpus],
        Command::Migrate { domain, pool } => vec![d(domain), p(pool)],
        Command::Loan { pool, .. } => vec![p(pool), Cpus],
        Command::LoanEnd { .. } => vec![Cpus],
        Command::Delegate { pool, domain } | Command::Undelegate { pool, domain } => {
            vec![p(pool), d(domain), Machine]
        }
        Command::PoolSched { pool, .. } => vec![p(pool)],
        Command::NumaSplit => vec![Cpus, Machine],
        Command::CreditDomain { domain, .. } | Command::SedfDomain { domain, .. } => {
            vec![d(domain)]
        }
        Command::CreditPool {
            pool: Some(pool), ..
        }
        | Command::ParamPool { pool, .. } => {
            vec![p(pool)]
        }
        Command::CreditPool { pool: None, .. } => vec![Pool("Pool-0".to_string())],
        Command::ParamDomain { domain, .. } => vec![d(domain)],
        Command::Group { domain, master } => {
            let mut all = vec![d(domain)];
            all.extend(master.iter().map(d));
            all
        }
        Command::ServerFault { pool, fault } => {
            let _: ServerFault = *fault;
            vec![p(pool), Machine]
        }
    }
}

/// Checks one allowed operation against the scope; `Err` says what leaked.
fn stays_inside(w: &World, op: &TenantOp) -> Result<(), String> {
    let in_scope = |id: PoolId| id == w.lic || id == w.sub;
    match op {
        TenantOp::Run(command) => {
            for effect in effects(command) {
                let fine = match &effect {
                    Effect::Domain(name) => match w.manager.domain_id(name) {
                        Ok(id) => in_scope(w.manager.domain(id).unwrap().pool),
                        Err(_) => true,
                    },
                    Effect::Pool(name) => w.manager.pool_id(name).is_ok_and(in_scope),
                    _ => false,
                };
                if !fine {
                    return Err(format!("{effect:?}"));
                }
            }
            Ok(())
        }
        TenantOp::Carve(spec) => {
            let lic = &w.manager.pool(w.lic).unwrap().cpus;
            match &spec.cpus {
                CpuRequest::List(cpus)
                    if cpus.iter().all(|c| lic.contains(c)) && cpus.len() < lic.len() =>
                {
                    Ok(())
                }
                other => Err(format!("carve of {other:?}")),
            }
        }
        TenantOp::Uncarve(id) if *id == w.sub => Ok(()),
        TenantOp::Uncarve(id) => Err(format!("uncarve of {id:?}")),
    }
}

/// Words a hostile tenant tries: other pools and domains, numeric ids,
/// every flag, config keys naming other pools, files.
const WORDS: &[&str] = &[
    "lic",
    "sub",
    "Pool-0",
    "far",
    "idle",
    "nope",
    "a",
    "s",
    "x",
    "o",
    "Domain-0",
    "0",
    "1",
    "5",
    "7",
    "512",
    "99999999999",
    "-d",
    "-p",
    "-s",
    "-t",
    "-r",
    "-w",
    "-c",
    "-m",
    "-n",
    "-e",
    "-l",
    "--json",
    "--pool=Pool-0",
    "--pool=lic",
    "--pool=far",
    "name=z",
    "name=x",
    "pool=Pool-0",
    "pool=lic",
    "pool=sub",
    "pool=far",
    "image=spin",
    "cpus=2",
    "cpus=5",
    "cpus=0-7",
    "cpus=1",
    "cpus=2-4",
    "x.cfg",
    "crash",
    "credit",
    "|",
    "#",
];

/// Whole argument lists: a tenant's own work, and the same reaching out.
const TAILS: &[&str] = &[
    "name=z pool=lic image=spin",
    "a 0 1",
    "a all 0-7",
    "x 0 0",
    "-i a 2",
    "name=z pool=sub image=spin cpu_weight=512",
    "name=z pool=Pool-0 image=spin",
    "name=z image=spin",
    "name=a pool=lic image=spin",
    "name=z pool=far type=hvm kernel=long64",
    "name=z sched=credit cpus=1",
    "name=z sched=credit cpus=0-1",
    "name=z cpus=2-4",
    "-d a -w 512 -c 50",
    "-d x -w 512",
    "-d a -s -p Pool-0 -t 1 -r 0",
    "-s -p lic -t 10 -r 100",
    "-s -p far -t 10",
    "-d a -p 100 -s 10 -e 1",
    "-d o -p 100 -s 10",
    "-d a -m s",
    "-d a -m x",
    "-d x -n",
    "a sub",
    "a far",
    "o lic",
    "sub",
    "far",
    "Pool-0",
    "-c -l",
    "-c lic Pool-0",
    "-l --pool=lic",
    "--pool=Pool-0 -l",
];

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Every command name the console knows: the table, its aliases, the
/// commands not built yet.
fn every_command() -> Vec<&'static str> {
    COMMANDS
        .iter()
        .map(|(usage, _)| usage.split(' ').next().unwrap())
        .chain(ALIASES.iter().map(|(alias, _)| *alias))
        .chain(NOT_BUILT.iter().copied())
        .collect()
}

/// Sends `line` as the tenant of lic; checks the verdict. Returns whether
/// it was allowed.
fn send(w: &World, line: &str) -> bool {
    let Ok(Some(command)) = command::parse(line) else {
        return false;
    };
    match authorize(&w.manager, &w.carved, w.lic, command) {
        Ok(op) => {
            if let Err(leak) = stays_inside(w, &op) {
                panic!("`{line}` reaches outside lic: {leak} ({op:?})");
            }
            true
        }
        Err(why) => {
            assert!(!why.is_empty(), "`{line}`: refused without a reason");
            false
        }
    }
}

#[test]
fn every_console_command_from_a_tenant_is_refused_or_stays_in_its_pool() {
    let w = world();
    let mut allowed = BTreeMap::new();
    let mut rng = Rng(0x5EED_0010);
    for name in every_command() {
        let mut lines = vec![name.to_string()];
        // Whole commands a tenant might need, and their hostile twins.
        for tail in TAILS {
            lines.push(format!("{name} {tail}"));
        }
        for a in WORDS {
            lines.push(format!("{name} {a}"));
            for b in WORDS {
                lines.push(format!("{name} {a} {b}"));
            }
        }
        for _ in 0..4000 {
            let n = 3 + rng.below(5);
            let words: Vec<&str> = (0..n).map(|_| WORDS[rng.below(WORDS.len())]).collect();
            lines.push(format!("{name} {}", words.join(" ")));
        }
        let count = lines.iter().filter(|line| send(&w, line)).count();
        allowed.insert(name, count);
    }
    // The rule is not "refuse everything": what a tenant needs passes.
    for name in [
        "help",
        "list",
        "create",
        "destroy",
        "pause",
        "unpause",
        "cpupool-create",
        "cpupool-destroy",
        "cpupool-migrate",
        "cpupool-list",
        "sched-credit",
        "sched-sedf",
        "sched-group",
        "vcpu-list",
        "vcpu-pin",
        "vcpu-set",
    ] {
        assert!(allowed[name] > 0, "{name}: nothing allowed");
    }
    for name in [
        "info",
        "poweroff",
        "sleep",
        "top",
        "repeat",
        "server-fault",
        "cpupool-cpu-loan",
    ] {
        assert_eq!(allowed[name], 0, "{name}");
    }
}

#[test]
fn the_escape_of_issue_10_is_refused() {
    let w = world();
    // `-d a` is the tenant's domain; `-s -p Pool-0` changed Pool-0.
    assert!(!send(&w, "sched-credit -d a -s -p Pool-0 -t 1 -r 0"));
    assert!(!send(&w, "sched-credit -s -p Pool-0 -t 1 -r 0 -d a"));
    assert!(!send(&w, "sched-credit -s -p Pool-0 -t 1"));
    assert!(!send(&w, "sched-credit -d x -w 512"));
    assert!(!send(&w, "sched-group -d a -m x"));
    assert!(!send(&w, "cpupool-migrate a Pool-0"));
    assert!(!send(&w, "cpupool-migrate x lic"));
    assert!(!send(&w, "create name=z image=spin"));
    assert!(!send(&w, "create name=x pool=lic image=spin"));
    assert!(!send(&w, "cpupool-destroy far"));
    assert!(!send(&w, "cpupool-destroy lic"));
    assert!(!send(&w, "cpupool-create name=z cpus=0-1"));
    assert!(!send(&w, "cpupool-create name=z cpus=2-4"));
    assert!(!send(&w, "cpupool-create name=z cpus=4-5"));
    assert!(!send(&w, "list --pool=Pool-0"));
    assert!(!send(&w, "cpupool-list lic Pool-0"));
    assert!(!send(&w, "vcpu-list"));
    assert!(!send(&w, "vcpu-pin x 0 0"));
    assert!(!send(&w, "vcpu-pin o all 6"));
    assert!(!send(&w, "vcpu-set x 1"));
    assert!(send(&w, "vcpu-pin a 0 1"));
    assert!(send(&w, "vcpu-set s 1"));
}

#[test]
fn what_a_tenant_needs_is_allowed_and_narrowed() {
    let w = world();
    let op = |line: &str| {
        authorize(
            &w.manager,
            &w.carved,
            w.lic,
            command::parse(line).unwrap().unwrap(),
        )
    };
    assert_eq!(
        op("list"),
        Ok(TenantOp::Run(Command::List {
            long: false,
            pool: Some("lic".to_string()),
            cpupool: false,
            domain: None,
        }))
    );
    assert_eq!(
        op("cpupool-list -c"),
        Ok(TenantOp::Run(Command::PoolList {
            cpus: true,
            long: false,
            pools: vec!["lic".to_string(), "sub".to_string()]
        }))
    );
    assert!(matches!(
        op("sched-credit -d a -w 512"),
        Ok(TenantOp::Run(_))
    ));
    assert!(matches!(
        op("sched-credit -s -p sub -t 5"),
        Ok(TenantOp::Run(_))
    ));
    assert!(matches!(
        op("create name=c pool=sub image=spin"),
        Ok(TenantOp::Run(_))
    ));
    assert!(matches!(op("cpupool-migrate a sub"), Ok(TenantOp::Run(_))));
    assert_eq!(op("cpupool-destroy sub"), Ok(TenantOp::Uncarve(w.sub)));
    match op("cpupool-create name=z sched=sedf cpus=1") {
        Ok(TenantOp::Carve(spec)) => {
            assert_eq!(spec.cpus, CpuRequest::List([4].into_iter().collect()))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        op("cpupool-create name=all cpus=3"),
        Err("all: your pool must keep at least one CPU".to_string())
    );
    assert_eq!(
        op("cpupool-create name=z cpus=6-7"),
        Err("z: CPU 6 is not in your pool".to_string())
    );
    assert_eq!(
        op("destroy x"),
        Err(
            "not allowed: this capability manages cpupool lic and its sub-pools sub only"
                .to_string()
        )
    );
}

#[test]
fn an_inactive_delegated_pool_allows_nothing() {
    let mut w = world();
    let s = w.manager.domain_id("s").unwrap();
    w.manager.destroy_domain(s).unwrap();
    let actions = w.manager.deactivate(w.sub).unwrap();
    assert!(!actions.is_empty());
    let idle = w.manager.pool_id("idle").unwrap();
    assert_eq!(
        authorize(&w.manager, &w.carved, idle, Command::Help),
        Err("the delegated cpupool is not active".to_string())
    );
    // The deactivated sub-pool left the scope.
    assert_eq!(scope(&w.manager, &w.carved, w.lic), Ok(vec![w.lic]));
}

/// xl's numeric ids name the same objects as their names, under the same
/// rule: inside the tenant's scope allowed, outside refused.
#[test]
fn numeric_ids_follow_the_tenant_rule() {
    let w = world();
    let op = |line: &str| {
        authorize(
            &w.manager,
            &w.carved,
            w.lic,
            command::parse(line).unwrap().unwrap(),
        )
    };
    let dom = |name: &str| w.manager.domain_id(name).unwrap().0;
    let pool = |name: &str| w.manager.pool_id(name).unwrap().0;
    let (a, x) = (dom("a"), dom("x"));
    let (sub, far) = (pool("sub"), pool("far"));
    assert_eq!(w.manager.domain_id(&format!("{a}")), Ok(DomainId(a)));
    assert_eq!(w.manager.pool_id(&format!("{far}")), Ok(PoolId(far)));
    assert!(w.manager.domain_id("99").is_err());
    assert!(w.manager.pool_id("99999999999999999999").is_err());
    assert!(matches!(
        op(&format!("cpupool-migrate {a} {sub}")),
        Ok(TenantOp::Run(_))
    ));
    assert!(matches!(
        op(&format!("sched-credit -d {a} -w 300")),
        Ok(TenantOp::Run(_))
    ));
    assert!(op(&format!("destroy {x}")).is_err());
    assert!(op(&format!("cpupool-migrate {a} {far}")).is_err());
    assert!(op(&format!("list --pool={far}")).is_err());
    assert_eq!(
        op(&format!("cpupool-destroy {sub}")),
        Ok(TenantOp::Uncarve(w.sub))
    );
}
