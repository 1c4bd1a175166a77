//! The cpupool state machine: pools, CPUs, domains and the Xen rules that
//! govern them. Pure: every operation validates fully (`check`), then changes
//! the state in a step that cannot fail, and returns the [`Action`]s the runtime
//! must perform against the kernel and the scheduler servers. A refused
//! operation returns a [`PoolError`] and leaves the state exactly as it was.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use hashbrown::HashMap;

/// Most physical CPUs the pool manager handles (bounds config ranges).
pub const MAX_CPUS: u32 = 1024;
/// Longest pool or domain name accepted.
pub const MAX_NAME_LEN: usize = 64;
/// Default credit weight (Xen's).
pub const DEFAULT_WEIGHT: u32 = 256;
/// Most vCPUs a domain has (each is a thread its pool's server schedules;
/// thread ids give a domain 8 bits of vCPU number).
pub const MAX_VCPUS: u32 = 64;

/// Identity of a pool. Pool-0 is `PoolId(0)`; ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolId(pub u32);

/// Identity of a domain. The control domain is `DomainId(0)`; ids are never
/// reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u32);

/// Pool-0, created at boot, never deactivated or deleted.
pub const POOL0: PoolId = PoolId(0);
/// The control domain (root task and pool manager): always in Pool-0.
pub const CONTROL_DOMAIN: DomainId = DomainId(0);
/// Name Pool-0 has at boot.
pub const POOL0_NAME: &str = "Pool-0";
/// Name of the control domain (Xen's dom0 name).
pub const CONTROL_DOMAIN_NAME: &str = "Domain-0";

/// Longest policy name accepted.
pub const MAX_POLICY_NAME_LEN: usize = 32;

/// A pool's scheduling policy, by name: the policy server module of that
/// name (`credit`, `sedf`, `rr`, or a user's). Which names exist is the
/// runtime's to say ([`PoolManager::set_policies`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sched(String);

impl Sched {
    /// Xen's credit scheduler, the default.
    pub fn credit() -> Sched {
        Sched(String::from("credit"))
    }

    /// The name (`credit`, `sedf`, ...).
    pub fn name(&self) -> &str {
        &self.0
    }

    /// A policy name: 1 to 32 lower-case letters, digits, `-` and `_`,
    /// starting with a letter. Whether such a policy exists is checked when
    /// a pool is defined or changed.
    pub fn from_name(name: &str) -> Option<Sched> {
        let valid = (1..=MAX_POLICY_NAME_LEN).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        valid.then(|| Sched(String::from(name)))
    }
}

/// Which CPUs a pool asks for when it is activated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuRequest {
    /// These CPUs (a list or a range in the config); every one must be free.
    List(BTreeSet<u32>),
    /// Any this many free CPUs (the lowest-numbered are taken).
    Count(u32),
}

impl CpuRequest {
    /// Number of CPUs requested.
    pub fn len(&self) -> u32 {
        match self {
            CpuRequest::List(cpus) => cpus.len() as u32,
            CpuRequest::Count(n) => *n,
        }
    }

    /// True when no CPU is requested.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The attributes of a pool (what `pool-new` / an xlcpupool.cfg defines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// Unique name.
    pub name: String,
    /// Policy.
    pub sched: Sched,
    /// CPUs to take at activation.
    pub cpus: CpuRequest,
    /// `other_config` entries, kept verbatim.
    pub other_config: Vec<String>,
}

/// Lifecycle state of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolState {
    /// Attributes only: no CPUs, no scheduler, no domains.
    Defined,
    /// CPUs assigned and the scheduler running.
    Active,
}

/// One pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Its id.
    pub id: PoolId,
    /// Its attributes; `spec.cpus` is what the next activation asks for.
    pub spec: PoolSpec,
    /// Defined or active.
    pub state: PoolState,
    /// CPUs it owns (empty unless active; an active pool without domains
    /// may have none, as xl lets its last CPU go).
    pub cpus: BTreeSet<u32>,
    /// Made by `cpupool-create` (define and activate in one): destroying it
    /// forgets it, as xl does; a pool defined with `cpupool-new` stays
    /// defined when destroyed.
    pub created: bool,
}

/// Scheduling parameters of a domain: `key=value` pairs in the keys of the
/// policies (credit's `weight`, `cap`, `group`; SEDF's `period`, `slice`,
/// `extra`; a user policy's own). The manager keeps them across pool and
/// policy changes; the runtime hands a pool's server the keys its policy
/// declares, and the policy validates them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainParams(BTreeMap<String, String>);

impl DomainParams {
    /// No parameters: every policy's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: &str, value: &str) {
        self.0.insert(String::from(key), String::from(value));
    }

    /// Forgets `key`.
    pub fn unset(&mut self, key: &str) {
        self.0.remove(key);
    }

    /// These parameters with `other`'s set on top.
    pub fn merged(&self, other: &DomainParams) -> DomainParams {
        let mut out = self.clone();
        out.0
            .extend(other.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    /// Every pair, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `key=value` text of the pairs whose key `keep` accepts (by key).
    pub fn text(&self, keep: impl Fn(&str) -> bool) -> String {
        let mut out = String::new();
        for (key, value) in self.iter().filter(|(k, _)| keep(k)) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(key);
            out.push('=');
            out.push_str(value);
        }
        out
    }

    /// No pair at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a domain is made of, as far as pools are concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    /// Unique name.
    pub name: String,
    /// Pool to start it in (must be active).
    pub pool: PoolId,
    /// Number of vCPUs (threads), ≥ 1.
    pub vcpus: u32,
    /// Scheduling parameters.
    pub params: DomainParams,
}

/// One domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// Its id.
    pub id: DomainId,
    /// Its name.
    pub name: String,
    /// The pool it runs in.
    pub pool: PoolId,
    /// Number of vCPUs (xl's `maxvcpus`: the most `vcpu-set` brings online).
    pub vcpus: u32,
    /// vCPUs online (`vcpu-set`): vCPUs `0..online` run, the others are
    /// offline (not scheduled, xl's `--p` in `vcpu-list`).
    pub online: u32,
    /// Each vCPU's hard affinity (`vcpu-pin`), `None` for every CPU. A set
    /// always has a CPU of the domain's pool when it is made; a CPU that
    /// leaves the pool stays in it, unless it was the last one of the pool
    /// (then the affinity is broken: reset to every CPU, as Xen does).
    pub affinity: Vec<Option<BTreeSet<u32>>>,
    /// Each vCPU's soft affinity (`vcpu-pin`'s fourth argument, xl.cfg's
    /// `cpus_soft`), `None` for no preference: any CPUs of the machine; the
    /// policy considers the ones in the hard affinity and the pool.
    pub soft_affinity: Vec<Option<BTreeSet<u32>>>,
    /// Scheduling parameters.
    pub params: DomainParams,
}

/// What the runtime must do to make the kernel match the new state, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start the pool's scheduler server with its policy (the pool's
    /// `spec.sched`; on the pool's `Scheduler` object) before any CPU is
    /// bound to it.
    StartScheduler {
        /// The pool.
        pool: PoolId,
    },
    /// Stop the pool's scheduler server (all its CPUs are already revoked).
    StopScheduler {
        /// The pool.
        pool: PoolId,
    },
    /// Replace a live pool's server by one of its new policy (the pool's
    /// `spec.sched` now) on the same `Scheduler`; its domains keep running
    /// (hand-over as for a failed server).
    ChangeScheduler {
        /// The pool.
        pool: PoolId,
    },
    /// Bind this free CPU to the pool's `Scheduler`.
    BindCpu {
        /// The CPU.
        cpu: u32,
        /// The pool.
        pool: PoolId,
    },
    /// Take this CPU from the pool: ask the server to release it, revoke after
    /// the deadline. The CPU is free afterwards.
    RevokeCpu {
        /// The CPU.
        cpu: u32,
        /// The pool losing it.
        pool: PoolId,
    },
    /// Have the pool's server adopt a newly built domain's threads.
    AdoptDomain {
        /// The domain.
        domain: DomainId,
        /// Its pool.
        pool: PoolId,
    },
    /// Have the pool's server release a destroyed domain's threads.
    ReleaseDomain {
        /// The domain.
        domain: DomainId,
        /// Its pool.
        pool: PoolId,
    },
    /// A CPU leaving the pool was the last CPU of the pool in this vCPU's
    /// hard affinity: the affinity is broken (the rules reset it to every
    /// CPU, as Xen's `cpu_disable_scheduler` does); the runtime says so on
    /// one line and hands the pool's server the reset affinity. Comes
    /// before the CPU's `RevokeCpu`.
    BreakAffinity {
        /// The domain.
        domain: DomainId,
        /// Its vCPU.
        vcpu: u32,
        /// Its pool.
        pool: PoolId,
        /// The CPU leaving.
        cpu: u32,
    },
    /// Source server releases the domain's threads, destination adopts them.
    MoveDomain {
        /// The domain.
        domain: DomainId,
        /// Pool it leaves.
        from: PoolId,
        /// Pool it joins.
        to: PoolId,
    },
}

/// Why an operation was refused. Each variant is one Xen rule; the state is
/// unchanged whenever one is returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// `new`: Pool-0 size 0 or above the CPU count, or no CPU at all.
    BadPool0Size {
        /// CPUs asked for Pool-0.
        requested: u32,
        /// CPUs present.
        total: u32,
    },
    /// Name empty, longer than [`MAX_NAME_LEN`], or with whitespace, quotes or
    /// control characters.
    InvalidName,
    /// define/create/rename: another pool has this name.
    PoolNameTaken(String),
    /// domain create: another domain has this name.
    DomainNameTaken(String),
    /// No pool with this id or name.
    NoSuchPool,
    /// No domain with this id.
    NoSuchDomain,
    /// The CPU number is not below the CPU count.
    NoSuchCpu(u32),
    /// define/create: the pool asks for no CPU (count 0 or empty list).
    EmptyCpuRequest,
    /// activate: the pool is already active.
    PoolAlreadyActive,
    /// The operation needs an active pool (cpu add/remove, domain create,
    /// migrate target, deactivate).
    PoolNotActive,
    /// activate/cpu-add: the CPU belongs to a pool (only free CPUs can join).
    CpuNotFree {
        /// The CPU.
        cpu: u32,
        /// Its owner.
        owner: PoolId,
    },
    /// activate with a count: fewer free CPUs than requested.
    NotEnoughFreeCpus {
        /// Requested.
        requested: u32,
        /// Free now.
        free: u32,
    },
    /// deactivate: the pool still has domains.
    PoolHasDomains(u32),
    /// delete: the pool must be deactivated first.
    PoolStillActive,
    /// Pool-0 cannot be deactivated or deleted.
    Pool0Protected,
    /// cpu-remove: the CPU is not in this pool.
    CpuNotInPool(u32),
    /// cpu-remove: the last CPU of a pool with domains cannot be removed
    /// (cpu-loan: the last CPU of any pool).
    LastCpu(u32),
    /// domain create / migrate: the pool has no CPU to run it on.
    PoolWithoutCpus,
    /// The control domain cannot be migrated or destroyed.
    ControlDomain,
    /// domain create: vcpus must be 1..=[`MAX_VCPUS`].
    InvalidVcpus,
    /// vcpu-pin: the domain has no such vCPU.
    NoSuchVcpu {
        /// The vCPU named.
        vcpu: u32,
        /// The domain's vCPUs.
        vcpus: u32,
    },
    /// vcpu-pin: a hard affinity with no CPU of the domain's pool (Xen's
    /// `vcpu_set_hard_affinity`: `-EINVAL` when it does not intersect the
    /// cpupool).
    AffinityOutsidePool {
        /// The CPUs named (xl's list form).
        cpus: String,
        /// The pool.
        pool: String,
        /// The pool's CPUs (xl's list form).
        pool_cpus: String,
    },
    /// vcpu-set: online vCPUs must be 1..=the vCPUs the domain was
    /// created with.
    InvalidOnline {
        /// Asked for.
        requested: u32,
        /// The domain's vCPUs.
        vcpus: u32,
    },
    /// vcpu-pin / vcpu-set: the control domain's vCPU is a system task,
    /// not scheduled by a pool's server.
    ControlDomainVcpu,
    /// No policy of that name (the names that exist are listed).
    UnknownPolicy {
        /// The name asked for.
        name: String,
        /// The policies there are.
        available: Vec<String>,
    },
    /// cpu-loan: the CPU is free (add it to a pool instead).
    CpuFree(u32),
    /// The CPU is on loan (or, for a pool, one of its CPUs is lent or
    /// borrowed): end the loan first.
    CpuOnLoan(u32),
    /// cpu-loan: to the pool that owns the CPU.
    LoanToOwner(u32),
    /// cpu-loan-end: no loan of this CPU runs.
    NotOnLoan(u32),
    /// cpu-loan: no time, or longer than [`MAX_LOAN_MS`].
    InvalidLoan,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::BadPool0Size { requested, total } => {
                write!(f, "Pool-0 cannot have {requested} of {total} CPUs")
            }
            PoolError::InvalidName => f.write_str("invalid name"),
            PoolError::PoolNameTaken(n) => write!(f, "a pool named {n} already exists"),
            PoolError::DomainNameTaken(n) => write!(f, "a domain named {n} already exists"),
            PoolError::NoSuchPool => f.write_str("no such cpupool"),
            PoolError::NoSuchDomain => f.write_str("no such domain"),
            PoolError::NoSuchCpu(c) => write!(f, "no CPU {c}"),
            PoolError::EmptyCpuRequest => f.write_str("a pool needs at least one CPU"),
            PoolError::PoolAlreadyActive => f.write_str("cpupool already active"),
            PoolError::PoolNotActive => f.write_str("cpupool not active"),
            PoolError::CpuNotFree { cpu, owner } => {
                write!(f, "CPU {cpu} is not free (in pool {})", owner.0)
            }
            PoolError::NotEnoughFreeCpus { requested, free } => {
                write!(f, "{requested} CPUs requested, {free} free")
            }
            PoolError::PoolHasDomains(n) => write!(f, "cpupool has {n} active domains"),
            PoolError::PoolStillActive => f.write_str("cpupool must be destroyed first"),
            PoolError::Pool0Protected => f.write_str("Pool-0 cannot be destroyed or deleted"),
            PoolError::CpuNotInPool(c) => write!(f, "CPU {c} is not in this cpupool"),
            PoolError::LastCpu(c) => write!(f, "CPU {c} is the last CPU of the cpupool"),
            PoolError::PoolWithoutCpus => f.write_str("cpupool has no CPUs"),
            PoolError::ControlDomain => f.write_str("the control domain stays in Pool-0"),
            PoolError::InvalidVcpus => write!(f, "vcpus must be 1..{MAX_VCPUS}"),
            PoolError::NoSuchVcpu { vcpu, vcpus } => {
                write!(f, "no vCPU {vcpu} (the domain has vCPUs 0..{})", vcpus - 1)
            }
            PoolError::AffinityOutsidePool {
                cpus,
                pool,
                pool_cpus,
            } => write!(
                f,
                "CPUs {cpus} are not in cpupool {pool} (its CPUs: {pool_cpus}): a hard affinity needs one of them"
            ),
            PoolError::InvalidOnline { requested, vcpus } => write!(
                f,
                "{requested} vCPUs online: the domain has 1..{vcpus} (its vcpus)"
            ),
            PoolError::ControlDomainVcpu => f.write_str(
                "the control domain is a system task, not scheduled by a pool's server",
            ),
            PoolError::UnknownPolicy { name, available } => write!(
                f,
                "no policy '{name}' (available: {})",
                available.join(", ")
            ),
            PoolError::CpuFree(c) => write!(f, "CPU {c} is free: add it to a pool instead"),
            PoolError::CpuOnLoan(c) => write!(f, "CPU {c} is on loan: end the loan first"),
            PoolError::LoanToOwner(c) => write!(f, "CPU {c} already belongs to that cpupool"),
            PoolError::NotOnLoan(c) => write!(f, "CPU {c} is not on loan"),
            PoolError::InvalidLoan => write!(f, "a loan lasts 1 ms to {} ms", MAX_LOAN_MS),
        }
    }
}

/// Outcome of `cpu_add` with several CPUs: which were added, which refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuAddReport {
    /// One entry per requested CPU, in request order.
    pub results: Vec<(u32, Result<(), PoolError>)>,
    /// `BindCpu` for each CPU added.
    pub actions: Vec<Action>,
}

/// One row of `cpupool-list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInfo {
    /// Id.
    pub id: PoolId,
    /// Name.
    pub name: String,
    /// CPUs owned (active) — empty when defined.
    pub cpus: Vec<u32>,
    /// CPUs: the count owned when active, the count requested when defined.
    pub cpu_count: u32,
    /// Policy.
    pub sched: Sched,
    /// Active or merely defined.
    pub active: bool,
    /// Number of domains.
    pub domain_count: u32,
}

/// A CPU lent by one pool to another until a deadline (seed 004's "CPU
/// borrowing"): it belongs to `to` meanwhile and returns to `from` by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loan {
    /// The CPU.
    pub cpu: u32,
    /// The pool that lent it.
    pub from: PoolId,
    /// The pool that has it now.
    pub to: PoolId,
    /// When it goes back (the runtime's clock, ms).
    pub until_ms: u64,
}

/// Longest loan (ms): one hour.
pub const MAX_LOAN_MS: u64 = 3_600_000;

/// All pools and domains, and the rules between them.
///
/// Pools and domains are kept in id order (`BTreeMap`): `list`,
/// `cpupool-list` and `top` print in that order, and the scenario checks
/// rely on it. Their names are indexed in hash maps (`hashbrown`): every
/// command names its objects, and `create` checks a name is free, so with
/// thousands of domains a lookup by name must not walk them all. Nothing
/// iterates the indexes; [`PoolManager::check_invariants`] checks they
/// name exactly the objects there are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolManager {
    total_cpus: u32,
    pools: BTreeMap<PoolId, Pool>,
    domains: BTreeMap<DomainId, Domain>,
    pool_names: HashMap<String, PoolId>,
    domain_names: HashMap<String, DomainId>,
    loans: BTreeMap<u32, Loan>,
    next_pool: u32,
    next_domain: u32,
    /// The policy names pools may use (empty: any).
    policies: Vec<String>,
}

/// A name of a pool or domain: 1 to [`MAX_NAME_LEN`] characters, no
/// whitespace, control characters or quotes, and not all digits (a number
/// names an id, as in xl).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.bytes().all(|b| b.is_ascii_digit())
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '\'')
}

/// `text` as an id, when it is a decimal number (`Some(u32::MAX)` for one
/// too large: no such object, rather than a name lookup).
/// Sets vCPU `vcpu`'s set (every vCPU's: `None`) in `sets` to `cpus`;
/// returns the sets they had (`vcpu-pin`, hard or soft).
fn replace_sets(
    sets: &mut [Option<BTreeSet<u32>>],
    vcpu: Option<u32>,
    cpus: Option<BTreeSet<u32>>,
) -> Vec<Option<BTreeSet<u32>>> {
    let old = sets.to_vec();
    for (v, set) in sets.iter_mut().enumerate() {
        if vcpu.is_none_or(|only| only as usize == v) {
            *set = cpus.clone();
        }
    }
    old
}

/// Puts back the sets [`replace_sets`] returned (if they still fit the
/// domain's vCPUs).
fn restore_sets(sets: &mut Vec<Option<BTreeSet<u32>>>, saved: Vec<Option<BTreeSet<u32>>>) {
    if saved.len() == sets.len() {
        *sets = saved;
    }
}

fn decimal_id(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u32::MAX))
}

impl PoolManager {
    /// The boot state: Pool-0 (credit, active) with CPUs `0..pool0_cpus`
    /// (all `total_cpus` when `None`), the rest free, and the control domain
    /// in Pool-0.
    pub fn new(total_cpus: u32, pool0_cpus: Option<u32>) -> Result<Self, PoolError> {
        let n = pool0_cpus.unwrap_or(total_cpus);
        if n == 0 || n > total_cpus || total_cpus > MAX_CPUS {
            return Err(PoolError::BadPool0Size {
                requested: n,
                total: total_cpus,
            });
        }
        let cpus: BTreeSet<u32> = (0..n).collect();
        let pool0 = Pool {
            id: POOL0,
            spec: PoolSpec {
                name: String::from(POOL0_NAME),
                sched: Sched::credit(),
                cpus: CpuRequest::List(cpus.clone()),
                other_config: Vec::new(),
            },
            state: PoolState::Active,
            cpus,
            created: false,
        };
        let control = Domain {
            id: CONTROL_DOMAIN,
            name: String::from(CONTROL_DOMAIN_NAME),
            pool: POOL0,
            vcpus: 1,
            online: 1,
            affinity: alloc::vec![None],
            soft_affinity: alloc::vec![None],
            params: DomainParams::default(),
        };
        let pool_names = HashMap::from_iter([(pool0.spec.name.clone(), POOL0)]);
        let domain_names = HashMap::from_iter([(control.name.clone(), CONTROL_DOMAIN)]);
        let mut pools = BTreeMap::new();
        pools.insert(POOL0, pool0);
        let mut domains = BTreeMap::new();
        domains.insert(CONTROL_DOMAIN, control);
        Ok(PoolManager {
            total_cpus,
            pools,
            domains,
            pool_names,
            domain_names,
            loans: BTreeMap::new(),
            next_pool: 1,
            next_domain: 1,
            policies: Vec::new(),
        })
    }

    /// Number of physical CPUs.
    pub fn total_cpus(&self) -> u32 {
        self.total_cpus
    }

    /// A pool by id.
    pub fn pool(&self, id: PoolId) -> Option<&Pool> {
        self.pools.get(&id)
    }

    /// All pools, by id.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values()
    }

    /// The id of the pool with this name, or of the pool whose id this
    /// decimal number is (xl takes either; names are never all digits).
    pub fn pool_id(&self, name: &str) -> Result<PoolId, PoolError> {
        if let Some(id) = decimal_id(name) {
            return self
                .pools
                .contains_key(&PoolId(id))
                .then_some(PoolId(id))
                .ok_or(PoolError::NoSuchPool);
        }
        self.pool_names
            .get(name)
            .copied()
            .ok_or(PoolError::NoSuchPool)
    }

    /// A domain by id.
    pub fn domain(&self, id: DomainId) -> Option<&Domain> {
        self.domains.get(&id)
    }

    /// All domains, by id.
    pub fn domains(&self) -> impl Iterator<Item = &Domain> {
        self.domains.values()
    }

    /// The id of the domain with this name, or of the domain whose id this
    /// decimal number is (xl takes either; names are never all digits).
    pub fn domain_id(&self, name: &str) -> Result<DomainId, PoolError> {
        if let Some(id) = decimal_id(name) {
            return self
                .domains
                .contains_key(&DomainId(id))
                .then_some(DomainId(id))
                .ok_or(PoolError::NoSuchDomain);
        }
        self.domain_names
            .get(name)
            .copied()
            .ok_or(PoolError::NoSuchDomain)
    }

    /// The pool owning `cpu`, or `None` when the CPU is free (or absent).
    pub fn cpu_owner(&self, cpu: u32) -> Option<PoolId> {
        self.pools
            .values()
            .find(|p| p.cpus.contains(&cpu))
            .map(|p| p.id)
    }

    /// CPUs in no pool, ascending.
    pub fn free_cpus(&self) -> Vec<u32> {
        (0..self.total_cpus)
            .filter(|c| self.cpu_owner(*c).is_none())
            .collect()
    }

    fn domain_count(&self, pool: PoolId) -> u32 {
        self.domains.values().filter(|d| d.pool == pool).count() as u32
    }

    fn pool_ref(&self, id: PoolId) -> Result<&Pool, PoolError> {
        self.pools.get(&id).ok_or(PoolError::NoSuchPool)
    }

    /// The policies pools may name (the runtime's policy server modules);
    /// an empty list (the default) accepts every name.
    pub fn set_policies(&mut self, names: Vec<String>) {
        self.policies = names;
    }

    /// The policies pools may name, as set by [`PoolManager::set_policies`].
    pub fn policies(&self) -> &[String] {
        &self.policies
    }

    fn check_policy(&self, sched: &Sched) -> Result<(), PoolError> {
        if self.policies.is_empty() || self.policies.iter().any(|p| p == sched.name()) {
            return Ok(());
        }
        Err(PoolError::UnknownPolicy {
            name: String::from(sched.name()),
            available: self.policies.clone(),
        })
    }

    fn check_spec(&self, spec: &PoolSpec) -> Result<(), PoolError> {
        if !valid_name(&spec.name) {
            return Err(PoolError::InvalidName);
        }
        self.check_policy(&spec.sched)?;
        if self.pool_names.contains_key(&spec.name) {
            return Err(PoolError::PoolNameTaken(spec.name.clone()));
        }
        if spec.cpus.is_empty() {
            return Err(PoolError::EmptyCpuRequest);
        }
        if let CpuRequest::List(cpus) = &spec.cpus {
            if let Some(&cpu) = cpus.iter().find(|&&c| c >= self.total_cpus) {
                return Err(PoolError::NoSuchCpu(cpu));
            }
        }
        Ok(())
    }

    /// The CPUs an activation of `request` would take, or why it cannot.
    fn pick_cpus(&self, request: &CpuRequest) -> Result<BTreeSet<u32>, PoolError> {
        match request {
            CpuRequest::List(cpus) => {
                for &cpu in cpus {
                    if cpu >= self.total_cpus {
                        return Err(PoolError::NoSuchCpu(cpu));
                    }
                    if let Some(owner) = self.cpu_owner(cpu) {
                        return Err(PoolError::CpuNotFree { cpu, owner });
                    }
                }
                Ok(cpus.clone())
            }
            CpuRequest::Count(n) => {
                let free = self.free_cpus();
                if (free.len() as u32) < *n {
                    return Err(PoolError::NotEnoughFreeCpus {
                        requested: *n,
                        free: free.len() as u32,
                    });
                }
                Ok(free.into_iter().take(*n as usize).collect())
            }
        }
    }

    fn install(&mut self, spec: PoolSpec, created: bool) -> PoolId {
        let id = PoolId(self.next_pool);
        self.next_pool += 1;
        self.pool_names.insert(spec.name.clone(), id);
        self.pools.insert(
            id,
            Pool {
                id,
                spec,
                state: PoolState::Defined,
                cpus: BTreeSet::new(),
                created,
            },
        );
        id
    }

    fn start(&mut self, id: PoolId, cpus: BTreeSet<u32>) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(pool) = self.pools.get_mut(&id) {
            actions.push(Action::StartScheduler { pool: id });
            actions.extend(cpus.iter().map(|&cpu| Action::BindCpu { cpu, pool: id }));
            pool.cpus = cpus;
            pool.state = PoolState::Active;
        }
        actions
    }

    /// `cpupool-new`: record a pool's attributes; no CPU, no scheduler yet.
    pub fn define(&mut self, spec: PoolSpec) -> Result<PoolId, PoolError> {
        self.check_spec(&spec)?;
        Ok(self.install(spec, false))
    }

    /// `cpupool-start`: take the requested CPUs (all must be free; for a count,
    /// enough free ones) and start the scheduler.
    pub fn activate(&mut self, id: PoolId) -> Result<Vec<Action>, PoolError> {
        let pool = self.pool_ref(id)?;
        if pool.state == PoolState::Active {
            return Err(PoolError::PoolAlreadyActive);
        }
        let cpus = self.pick_cpus(&pool.spec.cpus)?;
        Ok(self.start(id, cpus))
    }

    /// `cpupool-create`: define and activate in one step (both or neither).
    pub fn create(&mut self, spec: PoolSpec) -> Result<(PoolId, Vec<Action>), PoolError> {
        self.check_spec(&spec)?;
        let cpus = self.pick_cpus(&spec.cpus)?;
        let id = self.install(spec, true);
        Ok((id, self.start(id, cpus)))
    }

    /// `cpupool-destroy`: release the CPUs (they become free) and stop the
    /// scheduler. Only without domains; never Pool-0. A pool made by
    /// `cpupool-create` is forgotten then (its name is free), as xl does; one
    /// defined with `cpupool-new` stays defined (`cpupool-start` activates
    /// it again, `cpupool-delete` forgets it).
    pub fn deactivate(&mut self, id: PoolId) -> Result<Vec<Action>, PoolError> {
        let pool = self.pool_ref(id)?;
        if id == POOL0 {
            return Err(PoolError::Pool0Protected);
        }
        if pool.state != PoolState::Active {
            return Err(PoolError::PoolNotActive);
        }
        let count = self.domain_count(id);
        if count > 0 {
            return Err(PoolError::PoolHasDomains(count));
        }
        if let Some(cpu) = self.loan_of(id) {
            return Err(PoolError::CpuOnLoan(cpu));
        }
        let mut actions: Vec<Action> = pool
            .cpus
            .iter()
            .map(|&cpu| Action::RevokeCpu { cpu, pool: id })
            .collect();
        actions.push(Action::StopScheduler { pool: id });
        if pool.created {
            self.forget_pool(id);
        } else if let Some(pool) = self.pools.get_mut(&id) {
            pool.cpus.clear();
            pool.state = PoolState::Defined;
        }
        Ok(actions)
    }

    /// Undoes an activation whose scheduler could not be started: the pool
    /// is defined again and its CPUs are free (the runtime has revoked
    /// them). Only a pool without domains or loans, never Pool-0; the
    /// runtime stops whatever of the scheduler it had started.
    pub fn abort_activation(&mut self, id: PoolId) -> Result<(), PoolError> {
        let pool = self.pool_ref(id)?;
        if id == POOL0 {
            return Err(PoolError::Pool0Protected);
        }
        if pool.state != PoolState::Active {
            return Err(PoolError::PoolNotActive);
        }
        let count = self.domain_count(id);
        if count > 0 {
            return Err(PoolError::PoolHasDomains(count));
        }
        if let Some(cpu) = self.loan_of(id) {
            return Err(PoolError::CpuOnLoan(cpu));
        }
        if let Some(pool) = self.pools.get_mut(&id) {
            pool.cpus.clear();
            pool.state = PoolState::Defined;
        }
        Ok(())
    }

    /// `cpupool-delete`: forget a deactivated pool. Never Pool-0.
    pub fn delete(&mut self, id: PoolId) -> Result<(), PoolError> {
        let pool = self.pool_ref(id)?;
        if id == POOL0 {
            return Err(PoolError::Pool0Protected);
        }
        if pool.state == PoolState::Active {
            return Err(PoolError::PoolStillActive);
        }
        self.forget_pool(id);
        Ok(())
    }

    fn forget_pool(&mut self, id: PoolId) {
        if let Some(pool) = self.pools.remove(&id) {
            self.pool_names.remove(&pool.spec.name);
            // A hash map keeps its capacity; memory must come back whole
            // when the objects go (the leaks and soak scenarios count the
            // heap). Reallocates only when a smaller table would do, so
            // rarely: amortised O(1).
            self.pool_names.shrink_to_fit();
        }
    }

    /// `cpupool-rename`: any pool, Pool-0 included (as xl allows); the new name
    /// must be unique. Pool-0 stays `POOL0` whatever its name.
    pub fn rename(&mut self, id: PoolId, name: &str) -> Result<(), PoolError> {
        self.pool_ref(id)?;
        if !valid_name(name) {
            return Err(PoolError::InvalidName);
        }
        if self.pool_names.get(name).is_some_and(|&other| other != id) {
            return Err(PoolError::PoolNameTaken(String::from(name)));
        }
        if let Some(pool) = self.pools.get_mut(&id) {
            self.pool_names.remove(&pool.spec.name);
            pool.spec.name = String::from(name);
            self.pool_names.insert(pool.spec.name.clone(), id);
        }
        Ok(())
    }

    /// `cpupool-cpu-loan`: lend `cpu` by the pool that owns it to active
    /// pool `to` for `duration_ms`; it comes back by itself at `now_ms +
    /// duration_ms` ([`PoolManager::loans_due`], [`PoolManager::end_loan`]).
    /// The lender keeps at least one CPU; a CPU on loan is not lent again.
    pub fn lend(
        &mut self,
        cpu: u32,
        to: PoolId,
        now_ms: u64,
        duration_ms: u64,
    ) -> Result<Vec<Action>, PoolError> {
        if cpu >= self.total_cpus {
            return Err(PoolError::NoSuchCpu(cpu));
        }
        if self.loans.contains_key(&cpu) {
            return Err(PoolError::CpuOnLoan(cpu));
        }
        let from = self.cpu_owner(cpu).ok_or(PoolError::CpuFree(cpu))?;
        if self.pool_ref(to)?.state != PoolState::Active {
            return Err(PoolError::PoolNotActive);
        }
        if from == to {
            return Err(PoolError::LoanToOwner(cpu));
        }
        if duration_ms == 0 || duration_ms > MAX_LOAN_MS {
            return Err(PoolError::InvalidLoan);
        }
        if self.own_cpus(from) == 1 {
            return Err(PoolError::LastCpu(cpu));
        }
        if let Some(pool) = self.pools.get_mut(&from) {
            pool.cpus.remove(&cpu);
        }
        if let Some(pool) = self.pools.get_mut(&to) {
            pool.cpus.insert(cpu);
        }
        self.loans.insert(
            cpu,
            Loan {
                cpu,
                from,
                to,
                until_ms: now_ms.saturating_add(duration_ms),
            },
        );
        let mut actions = self.break_affinities(from, cpu);
        actions.extend([
            Action::RevokeCpu { cpu, pool: from },
            Action::BindCpu { cpu, pool: to },
        ]);
        Ok(actions)
    }

    /// The loans whose time is up at `now_ms`.
    pub fn loans_due(&self, now_ms: u64) -> Vec<u32> {
        self.loans
            .values()
            .filter(|l| l.until_ms <= now_ms)
            .map(|l| l.cpu)
            .collect()
    }

    /// The loans running now.
    pub fn loans(&self) -> impl Iterator<Item = &Loan> {
        self.loans.values()
    }

    /// `cpupool-cpu-loan-end` (or the deadline): `cpu` goes back to the pool
    /// that lent it.
    pub fn end_loan(&mut self, cpu: u32) -> Result<Vec<Action>, PoolError> {
        let loan = self.loans.remove(&cpu).ok_or(PoolError::NotOnLoan(cpu))?;
        if let Some(pool) = self.pools.get_mut(&loan.to) {
            pool.cpus.remove(&cpu);
        }
        if let Some(pool) = self.pools.get_mut(&loan.from) {
            pool.cpus.insert(cpu);
        }
        let mut actions = self.break_affinities(loan.to, cpu);
        actions.extend([
            Action::RevokeCpu { cpu, pool: loan.to },
            Action::BindCpu {
                cpu,
                pool: loan.from,
            },
        ]);
        Ok(actions)
    }

    /// How many of `pool`'s CPUs are its own, not borrowed. A pool with
    /// domains keeps one (its last own CPU is neither removed nor lent, and
    /// domains go only to a pool that has one), so a loan's end never
    /// leaves domains without a CPU.
    fn own_cpus(&self, pool: PoolId) -> usize {
        self.pools.get(&pool).map_or(0, |p| {
            p.cpus
                .iter()
                .filter(|cpu| self.loans.get(cpu).is_none_or(|l| l.to != pool))
                .count()
        })
    }

    /// A loan `pool` takes part in (lent or borrowed), if any.
    fn loan_of(&self, pool: PoolId) -> Option<u32> {
        self.loans
            .values()
            .find(|l| l.from == pool || l.to == pool)
            .map(|l| l.cpu)
    }

    /// `cpupool-cpu-add`: add each free CPU to an active pool; a CPU that
    /// cannot be added gets its own error and does not stop the others.
    pub fn cpu_add(&mut self, id: PoolId, cpus: &[u32]) -> Result<CpuAddReport, PoolError> {
        if self.pool_ref(id)?.state != PoolState::Active {
            return Err(PoolError::PoolNotActive);
        }
        let mut report = CpuAddReport {
            results: Vec::new(),
            actions: Vec::new(),
        };
        for &cpu in cpus {
            let result = if cpu >= self.total_cpus {
                Err(PoolError::NoSuchCpu(cpu))
            } else if let Some(owner) = self.cpu_owner(cpu) {
                Err(PoolError::CpuNotFree { cpu, owner })
            } else {
                if let Some(pool) = self.pools.get_mut(&id) {
                    pool.cpus.insert(cpu);
                }
                report.actions.push(Action::BindCpu { cpu, pool: id });
                Ok(())
            };
            report.results.push((cpu, result));
        }
        Ok(report)
    }

    /// `cpupool-cpu-remove`: the CPU leaves the pool and becomes free. The
    /// last CPU of a pool with domains stays; a pool without domains may
    /// give up its last one (as xl allows) and stays active without CPUs.
    pub fn cpu_remove(&mut self, id: PoolId, cpu: u32) -> Result<Vec<Action>, PoolError> {
        let pool = self.pool_ref(id)?;
        if pool.state != PoolState::Active {
            return Err(PoolError::PoolNotActive);
        }
        if cpu >= self.total_cpus {
            return Err(PoolError::NoSuchCpu(cpu));
        }
        if !pool.cpus.contains(&cpu) {
            return Err(PoolError::CpuNotInPool(cpu));
        }
        if self.loans.contains_key(&cpu) {
            return Err(PoolError::CpuOnLoan(cpu));
        }
        if self.own_cpus(id) == 1 && self.domain_count(id) > 0 {
            return Err(PoolError::LastCpu(cpu));
        }
        if let Some(pool) = self.pools.get_mut(&id) {
            pool.cpus.remove(&cpu);
        }
        let mut actions = self.break_affinities(id, cpu);
        actions.push(Action::RevokeCpu { cpu, pool: id });
        Ok(actions)
    }

    /// CPU `cpu` has left pool `id` (removed, lent or a loan's end): as
    /// Xen's `cpu_disable_scheduler`, a vCPU's hard affinity left with no
    /// CPU of the pool is broken, reset to every CPU; one
    /// [`Action::BreakAffinity`] each.
    fn break_affinities(&mut self, id: PoolId, cpu: u32) -> Vec<Action> {
        let Some(pool_cpus) = self.pools.get(&id).map(|p| &p.cpus) else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        for d in self.domains.values_mut().filter(|d| d.pool == id) {
            for (vcpu, affinity) in d.affinity.iter_mut().enumerate() {
                let broken = affinity
                    .as_ref()
                    .is_some_and(|set| set.contains(&cpu) && set.is_disjoint(pool_cpus));
                if broken {
                    *affinity = None;
                    actions.push(Action::BreakAffinity {
                        domain: d.id,
                        vcpu: vcpu as u32,
                        pool: id,
                        cpu,
                    });
                }
            }
        }
        actions
    }

    /// `cpupool-migrate`: move a domain to another active pool. The control
    /// domain never moves; moving to its own pool does nothing.
    pub fn migrate(&mut self, domain: DomainId, to: PoolId) -> Result<Vec<Action>, PoolError> {
        let from = self
            .domains
            .get(&domain)
            .ok_or(PoolError::NoSuchDomain)?
            .pool;
        if domain == CONTROL_DOMAIN {
            return Err(PoolError::ControlDomain);
        }
        let target = self.pool_ref(to)?;
        if target.state != PoolState::Active {
            return Err(PoolError::PoolNotActive);
        }
        if self.own_cpus(to) == 0 {
            return Err(PoolError::PoolWithoutCpus);
        }
        if from == to {
            return Ok(Vec::new());
        }
        if let Some(d) = self.domains.get_mut(&domain) {
            d.pool = to;
            // Xen's `sched_move_domain` resets every vCPU's affinity, hard
            // and soft.
            d.affinity.iter_mut().for_each(|a| *a = None);
            d.soft_affinity.iter_mut().for_each(|a| *a = None);
        }
        Ok(alloc::vec![Action::MoveDomain { domain, from, to }])
    }

    /// `create` (domain): a new domain in an active pool.
    pub fn create_domain(
        &mut self,
        spec: DomainSpec,
    ) -> Result<(DomainId, Vec<Action>), PoolError> {
        if !valid_name(&spec.name) {
            return Err(PoolError::InvalidName);
        }
        if self.domain_names.contains_key(&spec.name) {
            return Err(PoolError::DomainNameTaken(spec.name));
        }
        let pool = self.pool_ref(spec.pool)?;
        if pool.state != PoolState::Active {
            return Err(PoolError::PoolNotActive);
        }
        if self.own_cpus(spec.pool) == 0 {
            return Err(PoolError::PoolWithoutCpus);
        }
        if !(1..=MAX_VCPUS).contains(&spec.vcpus) {
            return Err(PoolError::InvalidVcpus);
        }
        let id = DomainId(self.next_domain);
        self.next_domain += 1;
        let pool = spec.pool;
        self.domain_names.insert(spec.name.clone(), id);
        self.domains.insert(
            id,
            Domain {
                id,
                name: spec.name,
                pool,
                vcpus: spec.vcpus,
                online: spec.vcpus,
                affinity: alloc::vec![None; spec.vcpus as usize],
                soft_affinity: alloc::vec![None; spec.vcpus as usize],
                params: spec.params,
            },
        );
        Ok((id, alloc::vec![Action::AdoptDomain { domain: id, pool }]))
    }

    /// `destroy` (domain): forget a domain; never the control domain.
    pub fn destroy_domain(&mut self, domain: DomainId) -> Result<Vec<Action>, PoolError> {
        let pool = self
            .domains
            .get(&domain)
            .ok_or(PoolError::NoSuchDomain)?
            .pool;
        if domain == CONTROL_DOMAIN {
            return Err(PoolError::ControlDomain);
        }
        if let Some(d) = self.domains.remove(&domain) {
            self.domain_names.remove(&d.name);
            // As for pools (`forget_pool`): the heap comes back whole.
            self.domain_names.shrink_to_fit();
        }
        Ok(alloc::vec![Action::ReleaseDomain { domain, pool }])
    }

    /// `sched-credit` / `sched-sedf`: record a domain's new parameters (the
    /// runtime hands them to the pool's server, which may still refuse them,
    /// e.g. SEDF admission control; the caller then restores the old ones).
    /// Returns the parameters it had.
    pub fn set_domain_params(
        &mut self,
        domain: DomainId,
        params: DomainParams,
    ) -> Result<DomainParams, PoolError> {
        let d = self
            .domains
            .get_mut(&domain)
            .ok_or(PoolError::NoSuchDomain)?;
        Ok(core::mem::replace(&mut d.params, params))
    }

    /// `vcpu-pin D V|all CPUS`: records the hard affinity of one vCPU (or
    /// of all, `vcpu: None`); `cpus: None` is every CPU (xl's `all`, also
    /// when the set names every CPU of the machine). Xen's rule
    /// (`vcpu_set_hard_affinity`): the set must have a CPU of the domain's
    /// pool; CPUs outside it are kept but not used while they are
    /// outside. Returns the affinities it had (for the runtime to restore
    /// if the pool's server refuses the new one).
    pub fn pin(
        &mut self,
        domain: DomainId,
        vcpu: Option<u32>,
        cpus: Option<BTreeSet<u32>>,
    ) -> Result<Vec<Option<BTreeSet<u32>>>, PoolError> {
        let d = self.pinnable(domain, vcpu)?;
        let pool = self.pool_ref(d.pool)?;
        let cpus = match cpus {
            Some(set) => {
                if let Some(&c) = set.iter().find(|&&c| c >= self.total_cpus) {
                    return Err(PoolError::NoSuchCpu(c));
                }
                if set.is_disjoint(&pool.cpus) {
                    let list =
                        |s: &BTreeSet<u32>| format_cpu_list(&s.iter().copied().collect::<Vec<_>>());
                    return Err(PoolError::AffinityOutsidePool {
                        cpus: list(&set),
                        pool: pool.spec.name.clone(),
                        pool_cpus: list(&pool.cpus),
                    });
                }
                (set.len() < self.total_cpus as usize).then_some(set)
            }
            None => None,
        };
        let d = self
            .domains
            .get_mut(&domain)
            .ok_or(PoolError::NoSuchDomain)?;
        Ok(replace_sets(&mut d.affinity, vcpu, cpus))
    }

    /// `vcpu-pin D V|all HARD SOFT`: records the soft affinity of one vCPU
    /// (or of all, `vcpu: None`); `cpus: None` is no preference (xl's
    /// `all`, also when the set names every CPU of the machine). A
    /// preference may name any CPUs of the machine (Xen's
    /// `vcpu_set_soft_affinity`): the policy considers the ones in the
    /// hard affinity and the pool. Returns the soft affinities it had.
    pub fn pin_soft(
        &mut self,
        domain: DomainId,
        vcpu: Option<u32>,
        cpus: Option<BTreeSet<u32>>,
    ) -> Result<Vec<Option<BTreeSet<u32>>>, PoolError> {
        self.pinnable(domain, vcpu)?;
        if let Some(&c) = cpus.iter().flatten().find(|&&c| c >= self.total_cpus) {
            return Err(PoolError::NoSuchCpu(c));
        }
        let cpus = cpus.filter(|set| set.len() < self.total_cpus as usize);
        let d = self
            .domains
            .get_mut(&domain)
            .ok_or(PoolError::NoSuchDomain)?;
        Ok(replace_sets(&mut d.soft_affinity, vcpu, cpus))
    }

    /// The domain whose vCPU `vcpu` (all: `None`) `vcpu-pin` may set: not
    /// the control domain, and a vCPU it has.
    fn pinnable(&self, domain: DomainId, vcpu: Option<u32>) -> Result<&Domain, PoolError> {
        let d = self.domains.get(&domain).ok_or(PoolError::NoSuchDomain)?;
        if domain == CONTROL_DOMAIN {
            return Err(PoolError::ControlDomainVcpu);
        }
        if let Some(v) = vcpu.filter(|&v| v >= d.vcpus) {
            return Err(PoolError::NoSuchVcpu {
                vcpu: v,
                vcpus: d.vcpus,
            });
        }
        Ok(d)
    }

    /// Restores the soft affinities [`PoolManager::pin_soft`] returned.
    pub fn restore_soft_affinity(
        &mut self,
        domain: DomainId,
        soft: Vec<Option<BTreeSet<u32>>>,
    ) -> Result<(), PoolError> {
        let d = self
            .domains
            .get_mut(&domain)
            .ok_or(PoolError::NoSuchDomain)?;
        restore_sets(&mut d.soft_affinity, soft);
        Ok(())
    }

    /// Restores the affinities [`PoolManager::pin`] returned (the pool's
    /// server refused the new ones).
    pub fn restore_affinity(
        &mut self,
        domain: DomainId,
        affinity: Vec<Option<BTreeSet<u32>>>,
    ) -> Result<(), PoolError> {
        let d = self
            .domains
            .get_mut(&domain)
            .ok_or(PoolError::NoSuchDomain)?;
        restore_sets(&mut d.affinity, affinity);
        Ok(())
    }

    /// `vcpu-set D N`: vCPUs `0..N` online, the others offline. `N` is
    /// 1..=the vCPUs the domain was created with (xl's `maxvcpus`).
    /// Returns the count it had.
    pub fn set_online(&mut self, domain: DomainId, online: u32) -> Result<u32, PoolError> {
        let d = self
            .domains
            .get_mut(&domain)
            .ok_or(PoolError::NoSuchDomain)?;
        if domain == CONTROL_DOMAIN {
            return Err(PoolError::ControlDomainVcpu);
        }
        if !(1..=d.vcpus).contains(&online) {
            return Err(PoolError::InvalidOnline {
                requested: online,
                vcpus: d.vcpus,
            });
        }
        Ok(core::mem::replace(&mut d.online, online))
    }

    /// `cpupool-sched`: change a pool's policy. A defined pool just records
    /// it; an active pool's server is replaced while its domains keep running.
    /// The same policy again does nothing.
    pub fn set_scheduler(&mut self, id: PoolId, sched: Sched) -> Result<Vec<Action>, PoolError> {
        let pool = self.pool_ref(id)?;
        if pool.spec.sched == sched {
            return Ok(Vec::new());
        }
        self.check_policy(&sched)?;
        let active = pool.state == PoolState::Active;
        if let Some(pool) = self.pools.get_mut(&id) {
            pool.spec.sched = sched;
        }
        Ok(if active {
            alloc::vec![Action::ChangeScheduler { pool: id }]
        } else {
            Vec::new()
        })
    }

    /// `cpupool-list`: one row per pool, by id.
    pub fn list(&self) -> Vec<PoolInfo> {
        self.pools
            .values()
            .map(|p| PoolInfo {
                id: p.id,
                name: p.spec.name.clone(),
                cpus: p.cpus.iter().copied().collect(),
                cpu_count: if p.state == PoolState::Active {
                    p.cpus.len() as u32
                } else {
                    p.spec.cpus.len()
                },
                sched: p.spec.sched.clone(),
                active: p.state == PoolState::Active,
                domain_count: self.domain_count(p.id),
            })
            .collect()
    }

    /// Check every invariant; `Err` names the first one broken. Holds after
    /// every operation, refused or not.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let mut seen = BTreeSet::new();
        let mut names = BTreeSet::new();
        for (id, pool) in &self.pools {
            if *id != pool.id {
                return Err("pool filed under another id");
            }
            if !names.insert(pool.spec.name.as_str()) {
                return Err("two pools with one name");
            }
            if self.pool_names.get(&pool.spec.name) != Some(id) {
                return Err("a pool missing from the name index");
            }
            match pool.state {
                PoolState::Defined if !pool.cpus.is_empty() => {
                    return Err("defined pool owns CPUs")
                }
                PoolState::Active if self.own_cpus(*id) == 0 && self.domain_count(*id) > 0 => {
                    return Err("active pool with domains but without a CPU of its own")
                }
                _ => {}
            }
            for &cpu in &pool.cpus {
                if cpu >= self.total_cpus {
                    return Err("pool owns a CPU that does not exist");
                }
                if !seen.insert(cpu) {
                    return Err("CPU in two pools");
                }
            }
        }
        if self.pool_names.len() != self.pools.len() {
            return Err("a name index entry for no pool");
        }
        match self.pools.get(&POOL0) {
            Some(p) if p.state == PoolState::Active => {}
            _ => return Err("Pool-0 missing or not active"),
        }
        let mut domain_names = BTreeSet::new();
        for (id, d) in &self.domains {
            if *id != d.id {
                return Err("domain filed under another id");
            }
            if !domain_names.insert(d.name.as_str()) {
                return Err("two domains with one name");
            }
            if self.domain_names.get(&d.name) != Some(id) {
                return Err("a domain missing from the name index");
            }
            match self.pools.get(&d.pool) {
                Some(p) if p.state == PoolState::Active => {}
                _ => return Err("domain outside an active pool"),
            }
            if d.affinity.len() != d.vcpus as usize
                || d.soft_affinity.len() != d.vcpus as usize
                || !(1..=d.vcpus).contains(&d.online)
            {
                return Err("a domain's vCPU records disagree with its vcpus");
            }
            let pool_cpus = &self.pools[&d.pool].cpus;
            if d.affinity
                .iter()
                .flatten()
                .any(|set| set.is_disjoint(pool_cpus))
            {
                return Err("a hard affinity with no CPU of its pool");
            }
        }
        if self.domain_names.len() != self.domains.len() {
            return Err("a name index entry for no domain");
        }
        for loan in self.loans.values() {
            let active = |id| {
                self.pools
                    .get(&id)
                    .is_some_and(|p| p.state == PoolState::Active)
            };
            if !active(loan.from) || !active(loan.to) {
                return Err("a loan between pools not both active");
            }
            if !self.pools[&loan.to].cpus.contains(&loan.cpu) {
                return Err("a lent CPU not in the borrowing pool");
            }
        }
        match self.domains.get(&CONTROL_DOMAIN) {
            Some(d) if d.pool == POOL0 => Ok(()),
            _ => Err("control domain missing or outside Pool-0"),
        }
    }
}

/// Format a CPU set the way xl does (`0-3,6`).
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&format!("{start}"));
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
