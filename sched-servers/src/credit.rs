//! Credit: Xen's proportional-share scheduler (seeds 001, 003), with exact
//! accounting and scheduling groups (seed 000).
//!
//! * **Weight** 1..=65535 (default 256) and **cap** in percent of one CPU
//!   (0 = none, at most 100 × the pool's CPUs; enforced even when CPUs idle)
//!   per domain. A lone domain, or a group master with its members, is an
//!   *account*.
//! * **Credit** is nanoseconds of CPU. Every [`ACCOUNTING_PERIOD_NS`] (30 ms)
//!   the pool's capacity (CPUs × period, less the time its threads lost in
//!   the period to the system: between entries and inside them, as the
//!   entries' lengths and the kernel's run times tell) is handed out to the *active*
//!   accounts (a thread runnable now, or that ran during the period) in
//!   proportion to their weights, water-filled ([`fair_shares`]): an account
//!   never receives more than its threads can run (one CPU per active
//!   thread) nor more than its cap, and what it cannot take goes to the
//!   others by weight. An account's grant is split equally over its active
//!   threads, as Xen splits a domain's credit over its vCPUs; a thread holds
//!   at most twice its part, or the time slice if more, never more than a
//!   period (Xen: one time slice), and what it cannot hold goes to its
//!   account's other threads, so a domain keeps its share when some of its
//!   threads are light. Debt carries over (bounded by one
//!   period of the whole pool), which is what makes long-run shares exact.
//! * **Exact accounting:** run time is charged from the kernel's `ran_ns`
//!   when entries end; in-progress entries are charged at each accounting
//!   (and at ticks, which carry the run so far), then corrected by the exact
//!   figure. Nothing is sampled: a thread cannot escape by yielding early.
//! * **Priorities:** BOOST (woke with credit ≥ 0, for its first [`BOOST_NS`]
//!   of running) > UNDER (credit ≥ 0) > OVER (credit < 0). Each CPU has a
//!   FIFO run queue; the best priority runs, and a thread goes after all
//!   others of its priority (a thread that yielded also after its equals that
//!   did not). While UNDER work waits, no CPU keeps running an OVER entry: it
//!   is preempted (after the rate limit), which is Xen's tickle applied as
//!   soon as priorities change rather than at the next 10 ms tick.
//! * **Caps:** a capped account also has a cap budget, refilled each period
//!   to `cap% × period` (unused cap time is not banked). Entries never exceed
//!   what is left of it, counting the other running entries of the account;
//!   when it is spent the account is *parked* until the next accounting,
//!   even if CPUs idle. A cap is never exceeded, and under-used by less than
//!   [`MIN_CAPPED_ENTRY_NS`] per period.
//! * **Budgets:** the pool's time slice (1..=1000 ms, default 30); an UNDER
//!   entry ends when the thread's credit would run out (but lasts at least
//!   the rate limit), so priorities change at the right moment instead of a
//!   slice later.
//! * **Wake-up preemption:** a woken thread goes to an idle CPU if there is
//!   one (kick), else preempts a CPU running a lower priority (its previous
//!   CPU first) once the running entry has run the rate limit
//!   (0 or 100..=500000 µs, default 1000 µs, at most the time slice).
//! * **Load balancing:** a CPU whose queue has no UNDER (or BOOST) thread
//!   takes the best UNDER thread queued on another CPU; a CPU about to idle
//!   takes any runnable thread from another CPU; an idle CPU is kicked
//!   whenever a runnable, unparked thread waits. No CPU idles while such a
//!   thread waits in the pool.
//! * **Hard affinity** ([`Policy::set_affinity`]): a thread is queued only
//!   on a CPU its affinity allows ([`Affinity::allows`]), so a pick takes
//!   it only there; `place`, stealing and the balancing kicks and
//!   preemptions only consider the CPUs it may run on; a change (or a CPU
//!   joining or leaving) moves a queued thread now and preempts a running
//!   one at once (not held back by the rate limit). Credit is handed out
//!   by weight as without affinity: a pinned account gets its share as
//!   long as its CPUs can give it (the others take what it leaves there).
//! * **Soft affinity** ([`Policy::set_soft_affinity`]): the CPUs a thread
//!   prefers, counted only where they meet its hard affinity and the pool
//!   (Xen: "soft affinity is considered only if it intersects hard
//!   affinity"). Xen's two balance steps, soft then hard: `place` takes an
//!   idle CPU the thread prefers first, else a CPU it prefers whose running
//!   thread prefers other CPUs (preempted: the two swap, which Xen leaves
//!   to the next idle moment), else any idle CPU, else the queue of a CPU
//!   it prefers (Xen: its previous CPU's); an entry that ends on a CPU the
//!   thread does not prefer is placed again rather than queued there; a
//!   CPU about to idle or short of UNDER work steals a thread that prefers
//!   it first, and does not take one waiting on a CPU it prefers that is
//!   about to pick. Nothing waits for a preferred CPU while another is
//!   idle, and credit is handed out as without it, so a preference never
//!   costs a share.
//! * **Scheduling groups:** a domain joins a master's group with
//!   [`DomainParams::Group`]. Its threads then belong to the master's
//!   account: the group shares the master's time (weight and cap are the
//!   master's; a member's own are kept for when it leaves). One master per
//!   group; a domain is master or member, never both; errors name the rule.
//! * **Timers:** the policy asks for a [`Decision::Timer`] on the pool's
//!   first CPU for each accounting, and on a CPU whose preemption the rate
//!   limit held back. Late timers are tolerated: every call first catches up
//!   with the accountings due. The first accounting runs at the first
//!   `pick_next`, when the initial threads are known.
//!
//! Deviation from Xen's credit1 code, on purpose: an account's share follows
//! its weight whatever its number of active vCPUs (credit1 multiplies the
//! weight by the active vCPU count), as the Xen documentation describes
//! weights ("512 gets twice the CPU of 256") and as scheduling groups need
//! (a group of two domains must not outweigh a lone domain of the master's
//! weight).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::ToString;
use alloc::vec::Vec;
use core::cmp::Reverse;

use crate::idmap::IdMap;
use crate::params::{self, ParamError, ParamKind, ParamSpec, ParamValue, Values};
use crate::types::{
    Affinity, CpuId, Decision, Dispatch, DomainId, DomainParams, Event, EventKind, PolicyError,
    PoolParams, ThreadId,
};
use crate::Policy;

/// Credit's per-domain parameters.
pub const DOMAIN_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "weight",
        kind: ParamKind::Int {
            min: 1,
            max: MAX_WEIGHT as i64,
        },
        default: ParamValue::Int(DEFAULT_WEIGHT as i64),
        help: "relative share of a contended pool",
    },
    ParamSpec {
        name: "cap",
        kind: ParamKind::Int {
            min: 0,
            max: 102_400,
        },
        default: ParamValue::Int(0),
        help: "most CPU in percent of one CPU, even when idle (0: no cap; at most 100 x CPUs)",
    },
    ParamSpec {
        name: "group",
        kind: ParamKind::Int {
            min: 0,
            max: u32::MAX as i64,
        },
        default: ParamValue::Int(0),
        help: "the master domain whose group (and credit) it shares (0: none)",
    },
];

/// Credit's pool parameters.
pub const POOL_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "timeslice_ms",
        kind: ParamKind::Int { min: 1, max: 1000 },
        default: ParamValue::Int(DEFAULT_TIMESLICE_MS as i64),
        help: "longest entry a thread gets (ms)",
    },
    ParamSpec {
        name: "ratelimit_us",
        kind: ParamKind::Int {
            min: 0,
            max: 500_000,
        },
        default: ParamValue::Int(DEFAULT_RATELIMIT_US as i64),
        help: "least run time before a wake-up preempts (us; 0 or 100..=500000, at most the slice)",
    },
];

/// Default domain weight.
pub const DEFAULT_WEIGHT: u32 = 256;
/// Largest domain weight.
pub const MAX_WEIGHT: u32 = 65_535;
/// Accounting period: credit is handed out this often.
pub const ACCOUNTING_PERIOD_NS: u64 = 30_000_000;
/// How long a woken thread keeps BOOST priority once running (Xen's tick).
pub const BOOST_NS: u64 = 10_000_000;
/// Default time slice.
pub const DEFAULT_TIMESLICE_MS: u32 = 30;
/// Default rate limit.
pub const DEFAULT_RATELIMIT_US: u32 = 1_000;
/// A capped account with less credit than this is parked: shorter entries
/// would cost more in switching than they run.
pub const MIN_CAPPED_ENTRY_NS: u64 = 50_000;
/// Shortest entry for an uncapped UNDER thread when the rate limit is off.
const MIN_ENTRY_NS: u64 = 100_000;

/// A waiting thread's rank: priority, not just yielded, debt in whole time
/// slices (OVER only; less is greater), queue order (older is greater), and
/// the thread.
type Rank = (Priority, bool, i64, Reverse<u64>, ThreadId);

/// Scheduling priority, lowest first (`Ord` follows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Credit < 0: runs only when no UNDER or BOOST thread wants the CPU.
    Over,
    /// Credit ≥ 0.
    Under,
    /// Woke up with credit ≥ 0; keeps it for [`BOOST_NS`] of running.
    Boost,
}

/// One claim on the pool's capacity, for [`fair_shares`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Relative weight (0 = takes nothing).
    pub weight: u64,
    /// The most the claimant can use (ns per period).
    pub limit_ns: u64,
}

/// Splits `capacity_ns` over `claims` in proportion to their weights,
/// water-filling: no claim gets more than its limit, and what a limited
/// claim leaves goes to the others by weight. Returns one grant per claim
/// (rounded down: at most a few ns per claim stay unassigned).
pub fn fair_shares(capacity_ns: u64, claims: &[Claim]) -> Vec<u64> {
    let mut grants = alloc::vec![0u64; claims.len()];
    let mut open: Vec<usize> = (0..claims.len())
        .filter(|&i| claims[i].weight > 0 && claims[i].limit_ns > 0)
        .collect();
    let mut remaining = capacity_ns;
    while !open.is_empty() && remaining > 0 {
        let total_weight: u128 = open.iter().map(|&i| u128::from(claims[i].weight)).sum();
        // A claim is saturated when its proportional share reaches its limit.
        let (saturated, unsaturated): (Vec<usize>, Vec<usize>) = open.iter().partition(|&&i| {
            u128::from(claims[i].limit_ns) * total_weight
                <= u128::from(remaining) * u128::from(claims[i].weight)
        });
        if saturated.is_empty() {
            // In 64 bits when the products fit (a pool's capacity per period
            // times a weight does, by far): a 128-bit division is a library
            // call, once per claim.
            let narrow = u64::try_from(total_weight).ok().filter(|_| {
                open.iter()
                    .all(|&i| remaining.checked_mul(claims[i].weight).is_some())
            });
            for &i in &open {
                grants[i] = match narrow {
                    Some(total) => remaining * claims[i].weight / total,
                    None => {
                        let share =
                            u128::from(remaining) * u128::from(claims[i].weight) / total_weight;
                        u64::try_from(share).unwrap_or(u64::MAX)
                    }
                };
            }
            break;
        }
        for &i in &saturated {
            grants[i] = claims[i].limit_ns;
            remaining -= claims[i].limit_ns;
        }
        open = unsaturated;
    }
    grants
}

/// How good waiting thread `id` is to run next (greater is better), or
/// `None` while its account is `parked`: priority first; then not having
/// just yielded; among OVER threads the least indebted, counted in whole
/// time slices (`slice_ns`); then the oldest in the queue (FIFO, as Xen).
///
/// The debt keeps spare time following credit, not turns: OVER threads
/// taken in plain FIFO order ran in turn however deep their debt, so a
/// thread could sink to the debt bound (one pool-period) and then wait for
/// most of a minute while it was repaid at 1 000 domains (one of them at
/// 0.64 of its share over 10 s). Counted in slices rather than
/// nanoseconds, an accounting moves only the threads whose priority or
/// slice count it changed, not every OVER thread.
fn rank_of(id: ThreadId, t: &Thread, parked: bool, slice_ns: u64) -> Option<Rank> {
    let priority = priority_of(t, parked)?;
    let debt = if priority == Priority::Over {
        t.credit_ns.div_euclid(to_i64(slice_ns.max(1)))
    } else {
        0
    };
    Some((priority, !t.yielded, debt, Reverse(t.seq), id))
}

/// A waiting thread's priority, or `None` while its account is `parked`.
fn priority_of(t: &Thread, parked: bool) -> Option<Priority> {
    if parked {
        return None;
    }
    Some(if t.credit_ns < 0 {
        Priority::Over
    } else if t.boost {
        Priority::Boost
    } else {
        Priority::Under
    })
}

/// A domain: its parameters and, for a lone domain or a group master (an
/// *account*), the cap budget its threads draw on.
#[derive(Clone, Debug)]
struct Domain {
    weight: u32,
    cap_pct: u32,
    /// Run time the account may still use this period under its cap.
    cap_credit_ns: i64,
    /// The master of its group, while a member.
    master: Option<DomainId>,
    /// Its members, while a master (in domain order).
    members: Vec<DomainId>,
    /// Its threads (the index that finds an account's waiting threads when
    /// the account parks or unparks).
    threads: Vec<ThreadId>,
    /// Whether the account was parked when its waiting threads were last
    /// ranked (see [`Credit::refresh_parked`]).
    parked: bool,
}

impl Domain {
    const fn new() -> Self {
        Self {
            weight: DEFAULT_WEIGHT,
            cap_pct: 0,
            cap_credit_ns: 0,
            master: None,
            members: Vec::new(),
            threads: Vec::new(),
            parked: false,
        }
    }
}

/// Where a thread is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Not runnable.
    Blocked,
    /// Runnable, in `cpu`'s queue.
    Queued(CpuId),
    /// Runnable, but the pool has no CPU.
    Homeless,
    /// Running an entry.
    Running(Entry),
}

/// A running entry, as dispatched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    cpu: CpuId,
    since_ns: u64,
    budget_ns: u64,
    /// Run time already charged (at ticks and accountings).
    charged_ns: u64,
    /// BOOST priority lasts until then.
    boost_until_ns: u64,
}

#[derive(Clone, Debug)]
struct Thread {
    domain: DomainId,
    /// Its domain's account: the domain, or its group's master (kept by
    /// [`Credit::set_group`]).
    account: DomainId,
    place: Place,
    last_cpu: Option<CpuId>,
    /// Woke with credit: BOOST for its next entry.
    boost: bool,
    /// Yielded: ranks after its equals at the next pick.
    yielded: bool,
    /// Queue order (FIFO within a priority).
    seq: u64,
    /// While queued: its key in its CPU's `ranked` set (`None`: it waits
    /// in `parked`). Kept equal to [`Credit::rank`] by [`Credit::rekey`]
    /// whenever something the rank reads changes.
    key: Option<Rank>,
    /// Ran, or was runnable, since the last accounting.
    active: bool,
    /// Its credit: its share of its account's grants less its run time.
    credit_ns: i64,
    /// The CPUs it may run on.
    affinity: Affinity,
    /// The CPUs it prefers (considered where they meet `affinity`).
    soft: Affinity,
}

/// What a CPU is doing, as far as the policy knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CpuState {
    /// No entry, no `pick_next` expected: may be kicked.
    Idle,
    /// `pick_next` is due (kicked, or its entry ended).
    Pending,
    /// Running an entry of this thread.
    Busy(ThreadId),
}

/// One CPU's run queue is sorted, as Xen's is: waiting threads are kept in
/// rank order, so the best one is found without looking at the others, and
/// counts are kept for the balancing decisions. Every operation on a queue
/// costs O(log n) in the number of waiting threads; only the accounting
/// (every 30 ms) re-ranks them all.
#[derive(Clone, Debug)]
struct Cpu {
    state: CpuState,
    /// Waiting threads that may run, by rank (best last).
    ranked: BTreeSet<Rank>,
    /// How many of `ranked` are UNDER or BOOST.
    under: usize,
    /// Waiting threads whose capped account is parked, in queue order.
    parked: BTreeSet<(u64, ThreadId)>,
    /// Waiting threads that had yielded when queued here: their flag
    /// lasts until this CPU's next pick (may hold threads since moved).
    yielded: Vec<ThreadId>,
    /// The timer armed on this CPU.
    timer_at_ns: Option<u64>,
    /// Since when it has waited for its next entry with work to run
    /// (its entry ended; until the next dispatch, a pick that finds
    /// nothing, or an accounting).
    free_since_ns: Option<u64>,
    /// A preemption held back by the rate limit is re-examined then.
    recheck_at_ns: Option<u64>,
    /// A `Preempt` was sent and its entry has not ended yet.
    preempting: bool,
}

impl Cpu {
    const fn new() -> Self {
        Self {
            state: CpuState::Idle,
            ranked: BTreeSet::new(),
            under: 0,
            parked: BTreeSet::new(),
            yielded: Vec::new(),
            timer_at_ns: None,
            free_since_ns: None,
            recheck_at_ns: None,
            preempting: false,
        }
    }
}

/// The credit policy.
#[derive(Clone, Debug)]
pub struct Credit {
    timeslice_ms: u32,
    ratelimit_us: u32,
    domains: IdMap<DomainId, Box<Domain>>,
    /// (Hash maps, as `domains`: a pick, an event and an accounting look
    /// threads and accounts up by id, hundreds of times a period at 1 000
    /// threads. Their entries are boxed: a map doubles its table as it
    /// grows, and a table of whole records, the old one beside the new,
    /// outgrew a 512 KiB heap at 500 threads.)
    threads: IdMap<ThreadId, Box<Thread>>,
    cpus: BTreeMap<CpuId, Cpu>,
    homeless: VecDeque<ThreadId>,
    /// When the next accounting is due (`None` until the first CPU arrives).
    next_accounting_ns: Option<u64>,
    /// Whether any accounting ran yet: the first runs at the first
    /// `pick_next`, when the initial threads are known.
    accounted: bool,
    /// CPU time the threads lost since the last accounting: between an
    /// entry's end and the CPU's next one, and inside entries (their
    /// length less their run time: the system ran ahead of them).
    lost_ns: u64,
    next_seq: u64,
    decisions: Vec<Decision>,
    /// Threads with a hard affinity (0: the affinity checks are skipped).
    pinned: usize,
    /// Threads with a soft affinity (0: the preference checks are skipped).
    softened: usize,
}

impl Default for Credit {
    fn default() -> Self {
        Self::new()
    }
}

impl Credit {
    /// A credit policy with Xen's defaults and no CPUs.
    pub fn new() -> Self {
        Self {
            timeslice_ms: DEFAULT_TIMESLICE_MS,
            ratelimit_us: DEFAULT_RATELIMIT_US,
            domains: IdMap::default(),
            threads: IdMap::default(),
            cpus: BTreeMap::new(),
            homeless: VecDeque::new(),
            next_accounting_ns: None,
            accounted: false,
            lost_ns: 0,
            next_seq: 0,
            decisions: Vec::new(),
            pinned: 0,
            softened: 0,
        }
    }

    /// A thread's credit (charged run time only), for inspection.
    pub fn credit_ns(&self, thread: ThreadId) -> Option<i64> {
        self.threads.get(&thread).map(|t| t.credit_ns)
    }

    fn timeslice_ns(&self) -> u64 {
        u64::from(self.timeslice_ms) * 1_000_000
    }

    fn ratelimit_ns(&self) -> u64 {
        u64::from(self.ratelimit_us) * 1_000
    }

    /// The domain whose credit `domain`'s threads use.
    fn account_of(&self, domain: DomainId) -> DomainId {
        self.domains
            .get(&domain)
            .and_then(|d| d.master)
            .unwrap_or(domain)
    }

    fn account_domain(&self, account: DomainId) -> &Domain {
        self.domains
            .get(&account)
            .expect("every thread's domain and master exist")
    }

    /// Cap budget left to a capped `account`: its cap credit less the rest
    /// of the budgets of its running entries (so that concurrent entries
    /// cannot overrun the cap).
    fn cap_available_ns(&self, account: DomainId) -> i64 {
        let mut available = self.account_domain(account).cap_credit_ns;
        for cpu in self.cpus.values() {
            let CpuState::Busy(thread) = cpu.state else {
                continue;
            };
            let Some(t) = self.threads.get(&thread) else {
                continue;
            };
            let Place::Running(entry) = t.place else {
                continue;
            };
            if t.account == account {
                let outstanding = entry.budget_ns.saturating_sub(entry.charged_ns);
                available = available.saturating_sub(to_i64(outstanding));
            }
        }
        available
    }

    /// `cpus` checked as `thread`'s new affinity (hard or soft), once the
    /// accountings due are caught up; nothing changes on a refusal.
    fn new_affinity(
        &mut self,
        thread: ThreadId,
        cpus: Option<&[CpuId]>,
        now_ns: u64,
    ) -> Result<Affinity, PolicyError> {
        if !self.threads.contains_key(&thread) {
            return Err(PolicyError::UnknownThread { thread });
        }
        let affinity = Affinity::new(thread, cpus)?;
        self.advance(now_ns);
        Ok(affinity)
    }

    /// Whether a capped account has spent its cap for this period.
    fn parked(&self, account: DomainId) -> bool {
        self.account_domain(account).cap_pct > 0
            && self.cap_available_ns(account) < to_i64(MIN_CAPPED_ENTRY_NS)
    }

    /// A waiting thread's priority, or `None` while its capped account is
    /// parked.
    fn queued_priority(&self, thread: &Thread) -> Option<Priority> {
        priority_of(thread, self.parked(thread.account))
    }

    /// The priority of the entry running on `cpu`, if any.
    fn running_priority(&self, cpu: CpuId, now_ns: u64) -> Option<Priority> {
        let CpuState::Busy(thread) = self.cpus.get(&cpu)?.state else {
            return None;
        };
        let t = self.threads.get(&thread)?;
        let Place::Running(entry) = t.place else {
            return None;
        };
        let uncharged = now_ns
            .saturating_sub(entry.since_ns)
            .saturating_sub(entry.charged_ns);
        Some(if t.credit_ns.saturating_sub(to_i64(uncharged)) < 0 {
            Priority::Over
        } else if now_ns < entry.boost_until_ns {
            Priority::Boost
        } else {
            Priority::Under
        })
    }

    /// How good a waiting thread is to run next ([`rank_of`]).
    fn rank(&self, thread: ThreadId) -> Option<Rank> {
        let t = self.threads.get(&thread)?;
        rank_of(thread, t, self.parked(t.account), self.timeslice_ns())
    }

    /// The best waiting thread in `cpu`'s queue.
    fn best_in(&self, cpu: CpuId) -> Option<Rank> {
        self.cpus.get(&cpu)?.ranked.last().copied()
    }

    /// Files a thread whose place is `Queued(cpu)` in that CPU's queue
    /// under its current rank.
    fn file(&mut self, thread: ThreadId) {
        let Some(t) = self.threads.get(&thread) else {
            return;
        };
        let Place::Queued(cpu) = t.place else {
            return;
        };
        let seq = t.seq;
        let key = self.rank(thread);
        if let Some(t) = self.threads.get_mut(&thread) {
            t.key = key;
        }
        let Some(c) = self.cpus.get_mut(&cpu) else {
            return;
        };
        match key {
            Some(rank) => {
                c.under += usize::from(rank.0 >= Priority::Under);
                c.ranked.insert(rank);
            }
            None => {
                c.parked.insert((seq, thread));
            }
        }
    }

    /// Takes a queued thread out of its CPU's queue (its place is left as
    /// it is).
    fn unfile(&mut self, thread: ThreadId) {
        let Some(t) = self.threads.get_mut(&thread) else {
            return;
        };
        let Place::Queued(cpu) = t.place else {
            return;
        };
        let key = t.key.take();
        let seq = t.seq;
        let Some(c) = self.cpus.get_mut(&cpu) else {
            return;
        };
        match key {
            Some(rank) => {
                if c.ranked.remove(&rank) {
                    c.under -= usize::from(rank.0 >= Priority::Under);
                }
            }
            None => {
                c.parked.remove(&(seq, thread));
            }
        }
    }

    /// Re-files a queued thread after something its rank reads changed.
    fn rekey(&mut self, thread: ThreadId) {
        self.unfile(thread);
        self.file(thread);
    }

    /// Re-ranks the waiting threads after an accounting, a parameter or
    /// group change, or a CPU leaving: credits and parked accounts may all
    /// have changed. A rank reads the priority and an OVER thread's debt in
    /// whole slices, not its credit to the nanosecond, so only the threads
    /// whose priority, parked state or slice count changed are re-filed
    /// (Xen re-sorts a run queue after its accounting by moving its UNDER
    /// vCPUs ahead of the OVER ones); the others keep their places. (OVER
    /// threads were ranked by credit, so every one of them was re-filed at
    /// every accounting: most of an accounting's cost at 1 000 threads.)
    fn rekey_all(&mut self) {
        // Only a capped account can be parked (the others are cleared in
        // one pass, without a lookup each).
        let capped: Vec<DomainId> = self
            .domains
            .iter_mut()
            .filter_map(|(&id, d)| {
                d.parked = false;
                (d.cap_pct > 0).then_some(id)
            })
            .collect();
        let mut any_parked = false;
        for account in capped {
            let parked = self.parked(account);
            any_parked |= parked;
            if let Some(d) = self.domains.get_mut(&account) {
                d.parked = parked;
            }
        }
        let domains = &self.domains;
        let slice_ns = self.timeslice_ns();
        let moved: Vec<ThreadId> = self
            .threads
            .iter()
            .filter(|(_, t)| matches!(t.place, Place::Queued(_)))
            .filter(|&(&id, t)| {
                // (A lookup a thread, skipped when no account is parked:
                // the common case, with no caps.)
                let account_parked =
                    any_parked && domains.get(&t.account).is_some_and(|d| d.parked);
                rank_of(id, t, account_parked, slice_ns) != t.key
            })
            .map(|(&id, _)| id)
            .collect();
        for thread in moved {
            self.rekey(thread);
        }
    }

    /// After the cap budget available to `account` changed (an entry of it
    /// started, was charged or ended): if that parked or unparked it,
    /// re-ranks its waiting threads.
    fn refresh_parked(&mut self, account: DomainId) {
        let Some(d) = self.domains.get(&account) else {
            return;
        };
        if d.cap_pct == 0 && !d.parked {
            return;
        }
        let parked = self.parked(account);
        if parked == d.parked {
            return;
        }
        let mut threads = d.threads.clone();
        for member in d.members.iter().filter_map(|m| self.domains.get(m)) {
            threads.extend_from_slice(&member.threads);
        }
        if let Some(d) = self.domains.get_mut(&account) {
            d.parked = parked;
        }
        for thread in threads {
            self.rekey(thread);
        }
    }

    /// Whether every queued thread's key is its rank, every count right
    /// (checked after each call in debug builds).
    fn queues_consistent(&self) -> bool {
        let mut filed = 0;
        for (&id, c) in &self.cpus {
            if c.under != c.ranked.iter().filter(|r| r.0 >= Priority::Under).count() {
                return false;
            }
            for rank in &c.ranked {
                let t = &self.threads[&rank.4];
                if t.place != Place::Queued(id) || t.key != Some(*rank) || !self.allowed(rank.4, id)
                {
                    return false;
                }
            }
            for &(seq, thread) in &c.parked {
                let t = &self.threads[&thread];
                if t.place != Place::Queued(id)
                    || t.seq != seq
                    || t.key.is_some()
                    || !self.allowed(thread, id)
                {
                    return false;
                }
            }
            filed += c.ranked.len() + c.parked.len();
        }
        let queued = self
            .threads
            .values()
            .filter(|t| matches!(t.place, Place::Queued(cpu) if self.cpus.contains_key(&cpu)));
        let mut count = 0;
        for t in queued {
            count += 1;
            let rank = t.key.and_then(|k| self.rank(k.4).filter(|r| *r == k));
            if t.key.is_some() && rank.is_none() {
                return false;
            }
            if t.key.is_none() && self.queued_priority(t).is_some() {
                return false;
            }
        }
        count == filed
    }

    /// Whether `thread` may run on `cpu` (its hard affinity).
    fn allowed(&self, thread: ThreadId, cpu: CpuId) -> bool {
        self.pinned == 0
            || self
                .threads
                .get(&thread)
                .is_none_or(|t| t.affinity.allows(cpu, |c| self.cpus.contains_key(&c)))
    }

    /// Whether `thread` prefers `cpu`: its soft affinity names it, and its
    /// hard affinity allows it. False for every CPU when the soft set meets
    /// no CPU the hard one allows in the pool (the preference is then
    /// ignored, Xen's rule), or when there is none.
    fn prefers(&self, thread: ThreadId, cpu: CpuId) -> bool {
        self.softened > 0
            && self.threads.get(&thread).is_some_and(|t| {
                t.soft.cpus().is_some_and(|set| set.contains(&cpu))
                    && self.cpus.contains_key(&cpu)
                    && self.allowed(thread, cpu)
            })
    }

    /// Whether `thread` runs or waits on `cpu` against its soft affinity:
    /// it prefers other CPUs of the pool, not this one.
    fn misplaced(&self, thread: ThreadId, cpu: CpuId) -> bool {
        self.softened > 0
            && !self.prefers(thread, cpu)
            && self.threads.get(&thread).is_some_and(|t| {
                t.soft
                    .cpus()
                    .is_some_and(|set| set.iter().any(|&c| self.prefers(thread, c)))
            })
    }

    /// Whether `cpu` runs a thread that prefers other CPUs and is not
    /// already being preempted: a thread preferring `cpu` may take its place.
    fn runs_misplaced(&self, cpu: CpuId) -> bool {
        self.cpus.get(&cpu).is_some_and(|c| {
            !c.preempting
                && matches!(c.state, CpuState::Busy(running) if self.misplaced(running, cpu))
        })
    }

    /// Whether `cpu` may take `thread` from the queue it waits in: its hard
    /// affinity allows `cpu`, and it is not waiting on a CPU it prefers
    /// that is about to pick (which takes it there; taking it elsewhere
    /// would undo the soft placement that put it there).
    fn may_take(&self, thread: ThreadId, cpu: CpuId) -> bool {
        if !self.allowed(thread, cpu) {
            return false;
        }
        if self.softened == 0 {
            return true;
        }
        let Some(Place::Queued(home)) = self.threads.get(&thread).map(|t| t.place) else {
            return true;
        };
        home == cpu
            || !self.prefers(thread, home)
            || self
                .cpus
                .get(&home)
                .is_none_or(|c| c.state != CpuState::Pending && !c.preempting)
    }

    /// The best thread queued on another CPU than `cpu` with at least
    /// priority `floor` that may run on `cpu`. With soft affinities, Xen's
    /// two balance steps: first the best such thread that prefers `cpu`,
    /// then the best that may run there ([`Credit::may_take`]).
    fn best_elsewhere(&self, cpu: CpuId, floor: Priority) -> Option<ThreadId> {
        let peers = self.cpus.iter().filter(|&(&peer, _)| peer != cpu);
        if self.pinned == 0 && self.softened == 0 {
            return peers
                .filter_map(|(_, c)| c.ranked.last())
                .filter(|rank| rank.0 >= floor)
                .max()
                .map(|rank| rank.4);
        }
        let best = |wanted: &dyn Fn(ThreadId) -> bool| {
            peers
                .clone()
                .filter_map(|(_, c)| {
                    c.ranked
                        .iter()
                        .rev()
                        .take_while(|rank| rank.0 >= floor)
                        .find(|rank| wanted(rank.4))
                })
                .max()
                .map(|rank| rank.4)
        };
        if self.softened > 0 {
            if let Some(thread) = best(&|thread| self.prefers(thread, cpu)) {
                return Some(thread);
            }
        }
        best(&|thread| self.may_take(thread, cpu))
    }

    /// After an affinity changed or a CPU joined or left: moves every
    /// thread queued on a CPU it may no longer run on, and preempts every
    /// one running there (at once: the rate limit does not hold it there).
    fn enforce_affinity(&mut self, now_ns: u64) {
        if self.pinned == 0 {
            return;
        }
        let mut moved = Vec::new();
        let mut outside = Vec::new();
        for (&id, t) in &self.threads {
            match t.place {
                Place::Queued(cpu) if !self.allowed(id, cpu) => moved.push(id),
                Place::Running(entry)
                    if self.cpus.contains_key(&entry.cpu) && !self.allowed(id, entry.cpu) =>
                {
                    outside.push(entry.cpu);
                }
                _ => {}
            }
        }
        // In id order (the map's order is not), and each CPU preempted once.
        moved.sort_unstable();
        outside.sort_unstable();
        outside.dedup();
        for thread in moved {
            self.dequeue(thread);
            if let Some(t) = self.threads.get_mut(&thread) {
                t.place = Place::Blocked;
            }
            self.place(thread, now_ns);
        }
        for cpu in outside {
            if let Some(c) = self.cpus.get_mut(&cpu) {
                if !c.preempting {
                    c.preempting = true;
                    c.recheck_at_ns = None;
                    self.decisions.push(Decision::Preempt { cpu });
                }
            }
        }
    }

    /// Puts a runnable thread at the tail of `cpu`'s queue.
    fn enqueue(&mut self, thread: ThreadId, cpu: CpuId) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let Some(t) = self.threads.get_mut(&thread) else {
            return;
        };
        t.place = Place::Queued(cpu);
        t.seq = seq;
        t.active = true;
        let yielded = t.yielded;
        if let Some(c) = self.cpus.get_mut(&cpu) {
            if yielded {
                c.yielded.push(thread);
            }
        }
        self.file(thread);
    }

    /// Takes a thread out of whatever queue holds it.
    fn dequeue(&mut self, thread: ThreadId) {
        let Some(t) = self.threads.get(&thread) else {
            return;
        };
        match t.place {
            Place::Queued(_) => self.unfile(thread),
            Place::Homeless => self.homeless.retain(|&q| q != thread),
            Place::Blocked | Place::Running(_) => {}
        }
    }

    /// Finds a home for a runnable thread that has none (woken, added,
    /// evicted from a departed CPU): an idle CPU (kicked), else its previous
    /// CPU, preempting there or elsewhere if it outranks a running entry.
    fn place(&mut self, thread: ThreadId, now_ns: u64) {
        let Some(t) = self.threads.get(&thread) else {
            return;
        };
        let ok = |c: &CpuId| self.cpus.contains_key(c) && self.allowed(thread, *c);
        let last = t.last_cpu.filter(ok);
        let idle = |c: &CpuId| {
            ok(c)
                && self
                    .cpus
                    .get(c)
                    .is_some_and(|cpu| cpu.state == CpuState::Idle)
        };
        // Soft affinity first (Xen's BALANCE_SOFT_AFFINITY step): an idle
        // CPU it prefers, else one it prefers whose running thread prefers
        // other CPUs (that thread is preempted and finds its own place);
        // with no idle CPU, a queue of a CPU it prefers.
        let prefers = |c: &CpuId| self.prefers(thread, *c);
        let soft_idle = |c: &CpuId| prefers(c) && idle(c);
        let soft = self.softened > 0 && self.cpus.keys().any(prefers);
        let parked = self.queued_priority(t).is_none();
        let swap = if soft && !parked && !self.cpus.keys().any(soft_idle) {
            self.cpus
                .keys()
                .copied()
                .find(|&c| prefers(&c) && self.runs_misplaced(c))
        } else {
            None
        };
        if let Some(swap) = swap {
            self.enqueue(thread, swap);
            self.preempt(swap, now_ns);
            return;
        }
        let soft_target = if soft {
            last.filter(soft_idle)
                .or_else(|| self.cpus.keys().copied().find(soft_idle))
        } else {
            None
        };
        let target = soft_target
            .or_else(|| last.filter(idle))
            .or_else(|| self.cpus.keys().copied().find(idle))
            .or_else(|| last.filter(prefers))
            .or_else(|| self.cpus.keys().copied().find(prefers))
            .or(last)
            .or_else(|| self.cpus.keys().copied().find(ok));
        let Some(target) = target else {
            if let Some(t) = self.threads.get_mut(&thread) {
                t.place = Place::Homeless;
                t.active = true;
            }
            self.homeless.push_back(thread);
            return;
        };
        self.enqueue(thread, target);
        if self.cpus[&target].state == CpuState::Idle {
            self.kick(target);
            return;
        }
        let Some(priority) = self.queued_priority(&self.threads[&thread]) else {
            return;
        };
        let beats = |cpu: CpuId| {
            self.running_priority(cpu, now_ns)
                .is_some_and(|running| running < priority)
        };
        if beats(target) {
            self.preempt(target, now_ns);
            return;
        }
        // Somewhere else a lower priority runs? Move there and preempt the
        // lowest (lowest-numbered among equals).
        let victim = self
            .cpus
            .keys()
            .copied()
            .filter(|&c| !self.cpus[&c].preempting && beats(c) && self.allowed(thread, c))
            .min_by_key(|&c| (self.running_priority(c, now_ns), c));
        if let Some(victim) = victim {
            self.dequeue(thread);
            self.enqueue(thread, victim);
            self.preempt(victim, now_ns);
        }
    }

    fn kick(&mut self, cpu: CpuId) {
        if let Some(c) = self.cpus.get_mut(&cpu) {
            if c.state == CpuState::Idle {
                c.state = CpuState::Pending;
                self.decisions.push(Decision::Kick { cpu });
            }
        }
    }

    /// Preempts `cpu` now, or when its entry has run the rate limit.
    fn preempt(&mut self, cpu: CpuId, now_ns: u64) {
        let ratelimit_ns = self.ratelimit_ns();
        let Some(c) = self.cpus.get(&cpu) else {
            return;
        };
        if c.preempting {
            return;
        }
        let CpuState::Busy(thread) = c.state else {
            return;
        };
        let since_ns = match self.threads.get(&thread).map(|t| t.place) {
            Some(Place::Running(entry)) => entry.since_ns,
            _ => return,
        };
        let allowed_at = since_ns.saturating_add(ratelimit_ns);
        let c = self.cpus.get_mut(&cpu).expect("checked above");
        if now_ns < allowed_at {
            c.recheck_at_ns = Some(c.recheck_at_ns.map_or(allowed_at, |t| t.min(allowed_at)));
        } else {
            c.preempting = true;
            self.decisions.push(Decision::Preempt { cpu });
        }
    }

    /// Kicks idle CPUs while unparked threads wait, and keeps UNDER work
    /// from waiting behind OVER work: while UNDER (or BOOST) threads wait and
    /// CPUs run OVER entries, preempts as many of those CPUs (they then take
    /// the UNDER work, locally or by stealing). CPUs about to pick count as
    /// taking waiting work.
    fn balance(&mut self, idle: usize, over: &[CpuId], now_ns: u64) {
        if self.pinned > 0 || self.softened > 0 {
            self.balance_pinned(over, now_ns);
            return;
        }
        let mut waiting: usize = self.cpus.values().map(|c| c.ranked.len()).sum();
        let mut waiting_under: usize = self.cpus.values().map(|c| c.under).sum();
        for &thread in &self.homeless {
            if let Some(priority) = self
                .threads
                .get(&thread)
                .and_then(|t| self.queued_priority(t))
            {
                waiting += 1;
                if priority >= Priority::Under {
                    waiting_under += 1;
                }
            }
        }
        let pending = self
            .cpus
            .values()
            .filter(|c| c.state == CpuState::Pending)
            .count();
        if idle > 0 {
            let kicked: Vec<CpuId> = self
                .cpus
                .iter()
                .filter(|(_, c)| c.state == CpuState::Idle)
                .map(|(&id, _)| id)
                .take(waiting.saturating_sub(pending))
                .collect();
            for cpu in kicked {
                self.kick(cpu);
            }
        }
        let taking = self
            .cpus
            .values()
            .filter(|c| c.state == CpuState::Pending || c.preempting)
            .count();
        for &cpu in over.iter().take(waiting_under.saturating_sub(taking)) {
            self.preempt(cpu, now_ns);
        }
    }

    /// [`Credit::balance`] when threads have hard or soft affinities: each
    /// waiting thread (best first) is matched with a CPU that may take it
    /// ([`Credit::may_take`]) and is about to pick, else an idle one
    /// (kicked); each waiting UNDER (or BOOST) thread left over with a CPU
    /// it may run on that runs OVER work (preempted). A CPU is kicked or preempted only for a thread its pick
    /// will find, so no kick is wasted and none repeats.
    fn balance_pinned(&mut self, over: &[CpuId], now_ns: u64) {
        let mut waiting: Vec<Rank> = self
            .cpus
            .values()
            .flat_map(|c| c.ranked.iter().copied())
            .collect();
        waiting.sort_unstable_by(|a, b| b.cmp(a));
        let mut taking: Vec<CpuId> = self
            .cpus
            .iter()
            .filter(|(_, c)| c.state == CpuState::Pending || c.preempting)
            .map(|(&id, _)| id)
            .collect();
        let mut idle: Vec<CpuId> = self
            .cpus
            .iter()
            .filter(|(_, c)| c.state == CpuState::Idle)
            .map(|(&id, _)| id)
            .collect();
        let mut over: Vec<CpuId> = over.to_vec();
        for rank in waiting {
            let thread = rank.4;
            if let Some(i) = taking.iter().position(|&c| self.may_take(thread, c)) {
                taking.swap_remove(i);
                continue;
            }
            if let Some(i) = idle.iter().position(|&c| self.may_take(thread, c)) {
                let cpu = idle.remove(i);
                self.kick(cpu);
                continue;
            }
            if rank.0 >= Priority::Under {
                if let Some(i) = over.iter().position(|&c| self.allowed(thread, c)) {
                    let cpu = over.remove(i);
                    self.preempt(cpu, now_ns);
                }
            }
        }
    }

    /// Re-examines a preemption the rate limit held back: preempt if a
    /// waiting thread on `cpu` outranks its running entry.
    fn recheck(&mut self, cpu: CpuId, now_ns: u64) {
        let running = self.running_priority(cpu, now_ns);
        let waiting = self.best_in(cpu).map(|rank| rank.0);
        if let (Some(running), Some(waiting)) = (running, waiting) {
            if waiting > running {
                self.preempt(cpu, now_ns);
            }
        }
    }

    /// Charges a running thread's run time up to `ran_ns` (cumulative for its
    /// entry) to its account.
    fn charge(&mut self, thread: ThreadId, ran_ns: u64) {
        let Some(t) = self.threads.get_mut(&thread) else {
            return;
        };
        let Place::Running(ref mut entry) = t.place else {
            return;
        };
        // May be negative: an estimate charged at accounting is corrected by
        // the kernel's exact figure.
        let delta = to_i64(ran_ns).saturating_sub(to_i64(entry.charged_ns));
        entry.charged_ns = ran_ns;
        t.active = true;
        t.credit_ns = t.credit_ns.saturating_sub(delta);
        let account = t.account;
        if let Some(d) = self.domains.get_mut(&account) {
            if d.cap_pct > 0 {
                d.cap_credit_ns = d.cap_credit_ns.saturating_sub(delta);
            }
        }
        self.refresh_parked(account);
    }

    /// Ends `thread`'s entry at `now_ns` (after charging it): frees its CPU
    /// for the `pick_next` the driver makes next.
    fn end_entry(&mut self, thread: ThreadId, event_cpu: CpuId, now_ns: u64) {
        let Some(Place::Running(entry)) = self.threads.get(&thread).map(|t| t.place) else {
            return;
        };
        let length = now_ns.saturating_sub(entry.since_ns);
        self.lost_ns += length.saturating_sub(entry.charged_ns);
        if let Some(c) = self.cpus.get_mut(&entry.cpu) {
            if c.state == CpuState::Busy(thread) {
                c.free_since_ns = Some(now_ns);
                c.preempting = false;
                c.recheck_at_ns = None;
                // The driver picks for the event's CPU; a CPU that is not the
                // event's must become kickable again.
                c.state = if entry.cpu == event_cpu {
                    CpuState::Pending
                } else {
                    CpuState::Idle
                };
            }
        }
        let Some(t) = self.threads.get_mut(&thread) else {
            return;
        };
        t.place = Place::Blocked;
        let account = t.account;
        self.refresh_parked(account);
    }

    /// Hands out credit for one accounting period (see the module docs).
    fn account(&mut self, now_ns: u64) {
        let period = ACCOUNTING_PERIOD_NS;
        let cpus = self.cpus.len() as u64;
        // Charge running entries up to now, so the clamps see true credit.
        let running: Vec<(ThreadId, u64)> = self
            .threads
            .iter()
            .filter_map(|(&id, t)| match t.place {
                Place::Running(entry) => Some((id, now_ns.saturating_sub(entry.since_ns))),
                _ => None,
            })
            .collect();
        for (thread, ran_ns) in running {
            self.charge(thread, ran_ns);
        }
        // Each account's active threads (its own, then its members', in
        // domain order), found from the domains' thread lists, and its
        // claim: its weight, and at most one CPU per active thread or its
        // cap. (The active threads were collected from the thread map and
        // sorted by account: a sort of every thread each period.)
        let mut threads: Vec<ThreadId> = Vec::new();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut claims: Vec<Claim> = Vec::new();
        for d in self.domains.values().filter(|d| d.master.is_none()) {
            let start = threads.len();
            let members = d.members.iter().filter_map(|m| self.domains.get(m));
            for list in core::iter::once(&d.threads).chain(members.map(|m| &m.threads)) {
                threads.extend(list.iter().copied().filter(|id| {
                    self.threads
                        .get(id)
                        .is_some_and(|t| t.active || !matches!(t.place, Place::Blocked))
                }));
            }
            let count = threads.len() - start;
            if count == 0 {
                continue;
            }
            let peak = count as u64 * period;
            let limit_ns = if d.cap_pct > 0 {
                peak.min(cap_grant_ns(d.cap_pct))
            } else {
                peak
            };
            spans.push((start, threads.len()));
            claims.push(Claim {
                weight: u64::from(d.weight),
                limit_ns,
            });
        }
        // After the first, the capacity less the time the threads lost
        // (to the policy's own agents and the system, between entries and
        // inside them), which every account then loses by its weight.
        // Handing out the whole capacity inflated credit by that time,
        // until the accounts whose grant exceeds an equal share sat UNDER
        // together, taking turns in FIFO order as if they weighed the
        // same: the lighter accounts kept their share and the heavier ones
        // lost all the system's time (300 domains, weights 256/512, on 4
        // CPUs: weight-512 domains down to 51 % of their share). Time with
        // nothing to run is not lost: it is handed out as before.
        for c in self.cpus.values_mut() {
            if let Some(since) = c.free_since_ns.as_mut() {
                self.lost_ns += now_ns.saturating_sub(*since);
                *since = now_ns;
            }
        }
        let lost = core::mem::take(&mut self.lost_ns);
        let capacity = if self.accounted {
            (cpus * period).saturating_sub(lost)
        } else {
            cpus * period
        };
        let grants = fair_shares(capacity, &claims);
        for (&(start, end), grant) in spans.iter().zip(grants) {
            self.split_grant(&threads[start..end], grant, cpus);
        }
        for d in self.domains.values_mut() {
            if d.cap_pct > 0 {
                // Unused cap time is not banked; overruns are repaid.
                let grant = to_i64(cap_grant_ns(d.cap_pct));
                d.cap_credit_ns = d.cap_credit_ns.saturating_add(grant).min(grant);
            }
        }
        for t in self.threads.values_mut() {
            t.active = false;
        }
        self.accounted = true;
        self.rekey_all();
    }

    /// Splits an account's grant equally over its active threads (Xen's
    /// per-vCPU split). A thread holds at most twice its part of the grant,
    /// or the time slice if that is more, and never more than a period (one
    /// CPU for the whole period: more it could not use); what it cannot hold
    /// goes to its account's other threads. Debt is bounded by one
    /// pool-period.
    ///
    /// (The bound was a period for every thread. A CPU-bound thread whose
    /// entries the system's threads kept pausing, as while the pool
    /// manager created hundreds of domains beside the first ones, then
    /// banked up to 30 ms: with 300 domains on 4 CPUs and a 1 ms slice,
    /// where a weight-256 domain's part is 0.27 ms a period, the first ones
    /// still held it after a second and got 1.30 of their share over the
    /// next 10 s. Xen's credit1 bounds credit at one time slice, which is
    /// also its accounting period.)
    fn split_grant(&mut self, threads: &[ThreadId], grant: u64, cpus: u64) {
        let count = threads.len() as u64;
        if count == 0 {
            return;
        }
        let ceiling = to_i64(
            self.timeslice_ns()
                .max((grant / count).saturating_mul(2))
                .min(ACCOUNTING_PERIOD_NS),
        );
        let floor = -to_i64(cpus.max(1) * ACCOUNTING_PERIOD_NS);
        if let [thread] = threads {
            // A lone thread (the common account): what it cannot hold has
            // nowhere to go.
            if let Some(t) = self.threads.get_mut(thread) {
                t.credit_ns = t
                    .credit_ns
                    .saturating_add(to_i64(grant))
                    .clamp(floor, ceiling);
            }
            return;
        }
        let mut spare = 0i64;
        for (index, thread) in threads.iter().enumerate() {
            let share = grant / count + u64::from((index as u64) < grant % count);
            if let Some(t) = self.threads.get_mut(thread) {
                t.credit_ns = t.credit_ns.saturating_add(to_i64(share));
                if t.credit_ns > ceiling {
                    spare += t.credit_ns - ceiling;
                    t.credit_ns = ceiling;
                }
            }
        }
        // Hand the spare to threads below the ceiling, lowest credit first.
        if spare == 0 {
            return self.floor_credit(threads, floor);
        }
        let mut open: Vec<ThreadId> = threads
            .iter()
            .copied()
            .filter(|t| self.threads.get(t).is_some_and(|t| t.credit_ns < ceiling))
            .collect();
        open.sort_by_key(|t| (self.threads[t].credit_ns, *t));
        for (index, thread) in open.iter().enumerate() {
            let remaining = (open.len() - index) as i64;
            let offer = spare / remaining;
            if let Some(t) = self.threads.get_mut(thread) {
                let taken = offer.min(ceiling - t.credit_ns);
                t.credit_ns += taken;
                spare -= taken;
            }
        }
        self.floor_credit(threads, floor);
    }

    /// Bounds the debt of `threads` at `floor`.
    fn floor_credit(&mut self, threads: &[ThreadId], floor: i64) {
        for thread in threads {
            if let Some(t) = self.threads.get_mut(thread) {
                t.credit_ns = t.credit_ns.max(floor);
            }
        }
    }

    /// Catches up with accountings due by `now_ns`.
    fn advance(&mut self, now_ns: u64) {
        let Some(mut due) = self.next_accounting_ns else {
            return;
        };
        let mut rounds = 0;
        while now_ns >= due {
            if rounds == 4 {
                // Far behind (a stalled timer): restart the rhythm from now.
                due = now_ns + ACCOUNTING_PERIOD_NS;
                break;
            }
            self.account(now_ns);
            due += ACCOUNTING_PERIOD_NS;
            rounds += 1;
        }
        self.next_accounting_ns = Some(due);
    }

    /// Kicks idle CPUs while unparked threads wait, arms the timers.
    fn finish(&mut self, now_ns: u64) {
        debug_assert!(self.queues_consistent(), "credit's run queues");
        let idle = self
            .cpus
            .values()
            .filter(|c| c.state == CpuState::Idle)
            .count();
        // CPUs running OVER entries (not already being preempted).
        let over: Vec<CpuId> = self
            .cpus
            .iter()
            .filter(|(_, c)| !c.preempting && c.recheck_at_ns.is_none())
            .map(|(&id, _)| id)
            .filter(|&id| self.running_priority(id, now_ns) == Some(Priority::Over))
            .collect();
        if idle > 0 || !over.is_empty() {
            self.balance(idle, &over, now_ns);
        }
        let accounting_cpu = self.cpus.keys().next().copied();
        let accounting = self.next_accounting_ns;
        for (&id, c) in self.cpus.iter_mut() {
            let mut want = c.recheck_at_ns;
            if Some(id) == accounting_cpu {
                want = match (want, accounting) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            if let Some(at_ns) = want {
                if c.timer_at_ns != Some(at_ns) {
                    c.timer_at_ns = Some(at_ns);
                    self.decisions.push(Decision::Timer { cpu: id, at_ns });
                }
            }
        }
    }

    fn validate_group(
        &self,
        domain: DomainId,
        master: Option<DomainId>,
    ) -> Result<(), PolicyError> {
        let current = self.domains.get(&domain).and_then(|d| d.master);
        let Some(master) = master else {
            return Ok(());
        };
        if master == domain {
            return Err(PolicyError::GroupSelf { domain });
        }
        let Some(m) = self.domains.get(&master) else {
            return Err(PolicyError::UnknownDomain { domain: master });
        };
        if let Some(its_master) = m.master {
            return Err(PolicyError::MasterIsMember { master, its_master });
        }
        if self
            .domains
            .get(&domain)
            .is_some_and(|d| !d.members.is_empty())
        {
            return Err(PolicyError::MemberIsMaster { domain });
        }
        match current {
            Some(current) if current != master => Err(PolicyError::AlreadyMember {
                domain,
                master: current,
            }),
            _ => Ok(()),
        }
    }

    fn set_group(&mut self, domain: DomainId, master: Option<DomainId>) {
        let current = self.domains.get(&domain).and_then(|d| d.master);
        if current == master {
            return;
        }
        if let Some(old) = current {
            if let Some(m) = self.domains.get_mut(&old) {
                m.members.retain(|&member| member != domain);
            }
        }
        if let Some(new) = master {
            if let Some(m) = self.domains.get_mut(&new) {
                let at = m.members.partition_point(|&member| member < domain);
                m.members.insert(at, domain);
            }
        }
        let d = self
            .domains
            .entry(domain)
            .or_insert_with(|| Box::new(Domain::new()));
        d.master = master;
        let account = master.unwrap_or(domain);
        for thread in &d.threads {
            if let Some(t) = self.threads.get_mut(thread) {
                t.account = account;
            }
        }
    }
}

/// A count of threads with a restricted set (`pinned`, `softened`) after
/// one thread's set went from `old` to `new`.
fn recount(count: usize, old: &Affinity, new: &Affinity) -> usize {
    count + usize::from(!new.is_any()) - usize::from(!old.is_any())
}

/// A cap's credit per accounting period.
fn cap_grant_ns(cap_pct: u32) -> u64 {
    u64::from(cap_pct) * ACCOUNTING_PERIOD_NS / 100
}

fn to_i64(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

impl Policy for Credit {
    fn name(&self) -> &'static str {
        "credit"
    }

    fn add_cpu(&mut self, cpu: CpuId, now_ns: u64) {
        self.advance(now_ns);
        self.cpus.entry(cpu).or_insert_with(Cpu::new);
        if self.next_accounting_ns.is_none() {
            self.next_accounting_ns = Some(now_ns + ACCOUNTING_PERIOD_NS);
        }
        let homeless: Vec<ThreadId> = self.homeless.drain(..).collect();
        for thread in homeless {
            self.enqueue(thread, cpu);
        }
        self.enforce_affinity(now_ns);
        self.finish(now_ns);
    }

    fn remove_cpu(&mut self, cpu: CpuId, now_ns: u64) {
        self.advance(now_ns);
        let Some(removed) = self.cpus.remove(&cpu) else {
            return;
        };
        // Its waiting threads in queue order, as they were queued.
        let mut waiting: Vec<(u64, ThreadId)> = removed.parked.into_iter().collect();
        waiting.extend(removed.ranked.iter().map(|rank| (rank.3 .0, rank.4)));
        waiting.sort_unstable();
        // An entry still running there no longer counts against its cap.
        self.rekey_all();
        for (_, thread) in waiting {
            if let Some(t) = self.threads.get_mut(&thread) {
                t.place = Place::Blocked;
                t.key = None;
            }
            self.place(thread, now_ns);
        }
        self.enforce_affinity(now_ns);
        if self.cpus.is_empty() {
            self.next_accounting_ns = None;
        }
        self.finish(now_ns);
    }

    fn add_thread(
        &mut self,
        thread: ThreadId,
        domain: DomainId,
        runnable: bool,
        now_ns: u64,
    ) -> Result<(), PolicyError> {
        if self.threads.contains_key(&thread) {
            return Err(PolicyError::DuplicateThread { thread });
        }
        self.advance(now_ns);
        self.domains
            .entry(domain)
            .or_insert_with(|| Box::new(Domain::new()))
            .threads
            .push(thread);
        let account = self.account_of(domain);
        self.threads.insert(
            thread,
            Box::new(Thread {
                domain,
                account,
                place: Place::Blocked,
                last_cpu: None,
                boost: false,
                yielded: false,
                seq: 0,
                key: None,
                active: false,
                credit_ns: 0,
                affinity: Affinity::any(),
                soft: Affinity::any(),
            }),
        );
        if runnable {
            self.place(thread, now_ns);
        }
        self.finish(now_ns);
        Ok(())
    }

    fn remove_thread(&mut self, thread: ThreadId, now_ns: u64) {
        self.advance(now_ns);
        self.dequeue(thread);
        if let Some(Place::Running(entry)) = self.threads.get(&thread).map(|t| t.place) {
            // The driver picks for this CPU next (its entry is gone).
            self.end_entry(thread, entry.cpu, now_ns);
        }
        if let Some(t) = self.threads.remove(&thread) {
            self.pinned -= usize::from(!t.affinity.is_any());
            self.softened -= usize::from(!t.soft.is_any());
            if let Some(d) = self.domains.get_mut(&t.domain) {
                d.threads.retain(|&other| other != thread);
            }
        }
        self.finish(now_ns);
    }

    fn remove_domain(&mut self, domain: DomainId, now_ns: u64) {
        let mut threads = self
            .domains
            .get(&domain)
            .map(|d| d.threads.clone())
            .unwrap_or_default();
        threads.sort_unstable();
        for thread in threads {
            self.remove_thread(thread, now_ns);
        }
        self.set_group(domain, None);
        let members = self
            .domains
            .get(&domain)
            .map(|d| d.members.clone())
            .unwrap_or_default();
        for member in members {
            self.set_group(member, None);
        }
        self.domains.remove(&domain);
        self.rekey_all();
        self.finish(now_ns);
    }

    fn on_event(&mut self, event: &Event) {
        let now_ns = event.timestamp_ns;
        self.advance(now_ns);
        if event.kind == EventKind::QueueEmpty {
            if let Some(c) = self.cpus.get_mut(&event.cpu) {
                if c.state == CpuState::Idle {
                    c.state = CpuState::Pending;
                }
            }
        }
        if event.kind == EventKind::Tick {
            if let Some(c) = self.cpus.get_mut(&event.cpu) {
                if c.timer_at_ns.is_some_and(|at| at <= now_ns) {
                    c.timer_at_ns = None;
                }
            }
        }
        let thread = event.thread.filter(|t| self.threads.contains_key(t));
        if let Some(thread) = thread {
            let place = self.threads[&thread].place;
            let running = matches!(place, Place::Running(_));
            match event.kind {
                EventKind::Woken => {
                    if place == Place::Blocked {
                        if let Some(t) = self.threads.get_mut(&thread) {
                            t.boost = t.credit_ns >= 0;
                            t.yielded = false;
                        }
                        self.place(thread, now_ns);
                    }
                }
                EventKind::Blocked | EventKind::Faulted | EventKind::Exited => {
                    if running {
                        self.charge(thread, event.ran_ns);
                        self.end_entry(thread, event.cpu, now_ns);
                    } else {
                        self.dequeue(thread);
                        if let Some(t) = self.threads.get_mut(&thread) {
                            t.place = Place::Blocked;
                        }
                    }
                }
                EventKind::Yielded | EventKind::BudgetExpired | EventKind::Evicted => {
                    if running {
                        self.charge(thread, event.ran_ns);
                        let Place::Running(entry) = place else {
                            unreachable!("checked running")
                        };
                        self.end_entry(thread, event.cpu, now_ns);
                        if let Some(t) = self.threads.get_mut(&thread) {
                            t.yielded = event.kind == EventKind::Yielded;
                        }
                        if self.cpus.contains_key(&entry.cpu)
                            && self.allowed(thread, entry.cpu)
                            && !self.misplaced(thread, entry.cpu)
                        {
                            self.enqueue(thread, entry.cpu);
                        } else {
                            self.place(thread, now_ns);
                        }
                    }
                }
                EventKind::Tick => {
                    if running {
                        self.charge(thread, event.ran_ns);
                    }
                }
                EventKind::QueueEmpty => {}
            }
        }
        if event.kind.ends_entry() {
            // An end event for an entry the policy had already forgotten
            // still means the CPU wants a pick.
            if let Some(c) = self.cpus.get_mut(&event.cpu) {
                if c.state == CpuState::Idle {
                    c.state = CpuState::Pending;
                }
            }
        }
        if event.kind == EventKind::Tick {
            let due = self
                .cpus
                .get(&event.cpu)
                .and_then(|c| c.recheck_at_ns)
                .is_some_and(|at| at <= now_ns);
            if due {
                if let Some(c) = self.cpus.get_mut(&event.cpu) {
                    c.recheck_at_ns = None;
                }
                self.recheck(event.cpu, now_ns);
            }
        }
        self.finish(now_ns);
    }

    fn pick_next(&mut self, cpu: CpuId, now_ns: u64) -> Option<Dispatch> {
        if !self.accounted {
            self.next_accounting_ns = Some(now_ns);
        }
        self.advance(now_ns);
        if !self.cpus.contains_key(&cpu) {
            return None;
        }
        let local = self.best_in(cpu);
        let chosen = match local {
            Some(rank) if rank.0 >= Priority::Under => Some(rank.4),
            _ => self
                .best_elsewhere(cpu, Priority::Under)
                .or(local.map(|rank| rank.4))
                .or_else(|| self.best_elsewhere(cpu, Priority::Over)),
        };
        // Yielding only counts for the pick that follows it.
        let yielded = self
            .cpus
            .get_mut(&cpu)
            .map(|c| core::mem::take(&mut c.yielded))
            .unwrap_or_default();
        for thread in yielded {
            let Some(t) = self.threads.get_mut(&thread) else {
                continue;
            };
            if t.place == Place::Queued(cpu) && t.yielded {
                t.yielded = false;
                self.rekey(thread);
            }
        }
        let Some(thread) = chosen else {
            if let Some(c) = self.cpus.get_mut(&cpu) {
                c.state = CpuState::Idle;
                if let Some(since) = c.free_since_ns.take() {
                    self.lost_ns += now_ns.saturating_sub(since);
                }
            }
            self.finish(now_ns);
            return None;
        };
        let priority = self
            .queued_priority(&self.threads[&thread])
            .expect("chosen threads are not parked");
        let account = self.threads[&thread].account;
        let timeslice = self.timeslice_ns();
        let credit = u64::try_from(self.threads[&thread].credit_ns).unwrap_or(0);
        let mut budget_ns = if priority == Priority::Over {
            timeslice
        } else {
            let floor = self.ratelimit_ns().max(MIN_ENTRY_NS).min(timeslice);
            credit.clamp(floor, timeslice)
        };
        if self.account_domain(account).cap_pct > 0 {
            let cap_left = u64::try_from(self.cap_available_ns(account)).unwrap_or(0);
            budget_ns = budget_ns.min(cap_left);
        }
        self.dequeue(thread);
        let boost_until_ns = if priority == Priority::Boost {
            now_ns + BOOST_NS
        } else {
            now_ns
        };
        if let Some(t) = self.threads.get_mut(&thread) {
            t.place = Place::Running(Entry {
                cpu,
                since_ns: now_ns,
                budget_ns,
                charged_ns: 0,
                boost_until_ns,
            });
            t.last_cpu = Some(cpu);
            t.boost = false;
            t.yielded = false;
            t.active = true;
        }
        if let Some(c) = self.cpus.get_mut(&cpu) {
            c.state = CpuState::Busy(thread);
            c.preempting = false;
            if let Some(since) = c.free_since_ns.take() {
                self.lost_ns += now_ns.saturating_sub(since);
            }
        }
        self.refresh_parked(account);
        self.finish(now_ns);
        Some(Dispatch { thread, budget_ns })
    }

    fn take_decisions(&mut self, out: &mut Vec<Decision>) {
        out.append(&mut self.decisions);
    }

    fn set_affinity(
        &mut self,
        thread: ThreadId,
        cpus: Option<&[CpuId]>,
        now_ns: u64,
    ) -> Result<(), PolicyError> {
        let affinity = self.new_affinity(thread, cpus, now_ns)?;
        let Some(t) = self.threads.get_mut(&thread) else {
            return Err(PolicyError::UnknownThread { thread });
        };
        let old = core::mem::replace(&mut t.affinity, affinity);
        self.pinned = recount(self.pinned, &old, &t.affinity);
        // (A thread just unpinned may stay where it is: every CPU is fine.)
        self.enforce_affinity(now_ns);
        self.finish(now_ns);
        Ok(())
    }

    fn set_soft_affinity(
        &mut self,
        thread: ThreadId,
        cpus: Option<&[CpuId]>,
        now_ns: u64,
    ) -> Result<(), PolicyError> {
        let soft = self.new_affinity(thread, cpus, now_ns)?;
        let Some(t) = self.threads.get_mut(&thread) else {
            return Err(PolicyError::UnknownThread { thread });
        };
        let old = core::mem::replace(&mut t.soft, soft);
        self.softened = recount(self.softened, &old, &t.soft);
        // A waiting thread moves to a CPU it prefers now; a running one at
        // the end of its entry (a preference never preempts by itself).
        if let Some(Place::Queued(cpu)) = self.threads.get(&thread).map(|t| t.place) {
            if self.misplaced(thread, cpu) {
                self.dequeue(thread);
                if let Some(t) = self.threads.get_mut(&thread) {
                    t.place = Place::Blocked;
                }
                self.place(thread, now_ns);
            }
        }
        self.finish(now_ns);
        Ok(())
    }

    fn affinity_broken(&self, thread: ThreadId) -> bool {
        self.threads
            .get(&thread)
            .is_some_and(|t| t.affinity.broken(|c| self.cpus.contains_key(&c)))
    }

    fn domain_param_specs(&self) -> &'static [ParamSpec] {
        DOMAIN_PARAMS
    }

    fn pool_param_specs(&self) -> &'static [ParamSpec] {
        POOL_PARAMS
    }

    fn set_domain_values(
        &mut self,
        domain: DomainId,
        values: &Values,
        now_ns: u64,
    ) -> Result<(), ParamError> {
        let (weight, cap_pct, master) = self
            .domains
            .get(&domain)
            .map_or((DEFAULT_WEIGHT, 0, None), |d| {
                (d.weight, d.cap_pct, d.master)
            });
        let weight = params::u32_or(values, "weight", weight);
        let cap_pct = params::u32_or(values, "cap", cap_pct);
        let credit = DomainParams::Credit { weight, cap_pct };
        let group = params::find(values, "group").map(|_| {
            let master = params::u32_or(values, "group", master.map_or(0, |m| m.0));
            (master != 0).then_some(DomainId(master))
        });
        // Check everything before changing anything.
        if let Some(master) = group {
            self.validate_group(domain, master)
                .map_err(|e| ParamError::new("group", e.to_string()))?;
        }
        if !(1..=MAX_WEIGHT).contains(&weight) {
            let error = PolicyError::InvalidWeight { weight };
            return Err(ParamError::new("weight", error.to_string()));
        }
        let cpus = u32::try_from(self.cpus.len().max(1)).unwrap_or(u32::MAX);
        let max_pct = cpus.saturating_mul(100);
        if cap_pct > max_pct {
            let error = PolicyError::InvalidCap { cap_pct, max_pct };
            return Err(ParamError::new("cap", error.to_string()));
        }
        if params::find(values, "weight").is_some() || params::find(values, "cap").is_some() {
            self.set_domain_params(domain, &credit, now_ns)
                .map_err(|e| ParamError::new("weight", e.to_string()))?;
        }
        if let Some(master) = group {
            self.set_domain_params(domain, &DomainParams::Group { master }, now_ns)
                .map_err(|e| ParamError::new("group", e.to_string()))?;
        }
        Ok(())
    }

    fn domain_values(&self, domain: DomainId) -> Values {
        let (weight, cap_pct, master) = self
            .domains
            .get(&domain)
            .map_or((DEFAULT_WEIGHT, 0, None), |d| {
                (d.weight, d.cap_pct, d.master)
            });
        alloc::vec![
            ("weight", ParamValue::Int(i64::from(weight))),
            ("cap", ParamValue::Int(i64::from(cap_pct))),
            (
                "group",
                ParamValue::Int(i64::from(master.map_or(0, |m| m.0)))
            ),
        ]
    }

    fn set_pool_values(&mut self, values: &Values, _now_ns: u64) -> Result<(), ParamError> {
        let timeslice_ms = params::u32_or(values, "timeslice_ms", self.timeslice_ms);
        let ratelimit_us = params::u32_or(values, "ratelimit_us", self.ratelimit_us);
        self.set_pool_params(&PoolParams::Credit {
            timeslice_ms,
            ratelimit_us,
        })
        .map_err(|e| match e {
            PolicyError::InvalidTimeslice { .. } => ParamError::new("timeslice_ms", e.to_string()),
            _ => ParamError::new("ratelimit_us", e.to_string()),
        })
    }

    fn pool_values(&self) -> Values {
        alloc::vec![
            (
                "timeslice_ms",
                ParamValue::Int(i64::from(self.timeslice_ms))
            ),
            (
                "ratelimit_us",
                ParamValue::Int(i64::from(self.ratelimit_us))
            ),
        ]
    }

    fn set_domain_params(
        &mut self,
        domain: DomainId,
        params: &DomainParams,
        now_ns: u64,
    ) -> Result<(), PolicyError> {
        match *params {
            DomainParams::Credit { weight, cap_pct } => {
                if !(1..=MAX_WEIGHT).contains(&weight) {
                    return Err(PolicyError::InvalidWeight { weight });
                }
                let cpus = u32::try_from(self.cpus.len().max(1)).unwrap_or(u32::MAX);
                let max_pct = cpus.saturating_mul(100);
                if cap_pct > max_pct {
                    return Err(PolicyError::InvalidCap { cap_pct, max_pct });
                }
                self.advance(now_ns);
                let d = self
                    .domains
                    .entry(domain)
                    .or_insert_with(|| Box::new(Domain::new()));
                d.weight = weight;
                d.cap_pct = cap_pct;
                if cap_pct > 0 {
                    let grant = to_i64(cap_grant_ns(cap_pct));
                    d.cap_credit_ns = d.cap_credit_ns.min(grant);
                }
                // A rank reads no weight: only a cap that parks or unparks
                // the account changes its threads' ranks. (Re-ranking every
                // thread here made creating N domains cost N accountings'
                // worth of sorting: 0.66 G instructions for 1 000.)
                let account = self.account_of(domain);
                self.refresh_parked(account);
            }
            DomainParams::Group { master } => {
                self.validate_group(domain, master)?;
                self.advance(now_ns);
                self.set_group(domain, master);
                self.rekey_all();
            }
            _ => return Err(PolicyError::WrongPolicy { policy: "credit" }),
        }
        self.finish(now_ns);
        Ok(())
    }

    fn domain_params(&self, domain: DomainId) -> Option<DomainParams> {
        self.domains.get(&domain).map(|d| DomainParams::Credit {
            weight: d.weight,
            cap_pct: d.cap_pct,
        })
    }

    fn set_pool_params(&mut self, params: &PoolParams) -> Result<(), PolicyError> {
        let PoolParams::Credit {
            timeslice_ms,
            ratelimit_us,
        } = *params
        else {
            return Err(PolicyError::WrongPolicy { policy: "credit" });
        };
        validate_pool(timeslice_ms, ratelimit_us)?;
        self.timeslice_ms = timeslice_ms;
        self.ratelimit_us = ratelimit_us;
        // (OVER threads' ranks count their debt in slices.)
        self.rekey_all();
        Ok(())
    }

    /// Credit's timers (the 30 ms accounting, rate-limit rechecks) are
    /// bookkeeping, not guarantees: Xen runs them off a 10 ms tick, and so
    /// may a runtime.
    fn timer_slack_ns(&self) -> u64 {
        10_000_000
    }

    fn pool_params(&self) -> Option<PoolParams> {
        Some(PoolParams::Credit {
            timeslice_ms: self.timeslice_ms,
            ratelimit_us: self.ratelimit_us,
        })
    }

    fn group_master(&self, domain: DomainId) -> Option<DomainId> {
        self.domains.get(&domain).and_then(|d| d.master)
    }
}

/// Xen's rules for the pool parameters: time slice 1..=1000 ms; rate limit
/// 0 (off) or 100..=500000 µs and no longer than the time slice.
pub fn validate_pool(timeslice_ms: u32, ratelimit_us: u32) -> Result<(), PolicyError> {
    if !(1..=1000).contains(&timeslice_ms) {
        return Err(PolicyError::InvalidTimeslice { timeslice_ms });
    }
    let in_range = ratelimit_us == 0 || (100..=500_000).contains(&ratelimit_us);
    if !in_range || u64::from(ratelimit_us) > u64::from(timeslice_ms) * 1000 {
        return Err(PolicyError::InvalidRatelimit {
            ratelimit_us,
            timeslice_ms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn claims(list: &[(u64, u64)]) -> Vec<Claim> {
        list.iter()
            .map(|&(weight, limit_ns)| Claim { weight, limit_ns })
            .collect()
    }

    #[test]
    fn fair_shares_follow_weights() {
        assert_eq!(
            fair_shares(700, &claims(&[(1, 1000), (2, 1000), (4, 1000)])),
            vec![100, 200, 400]
        );
    }

    #[test]
    fn fair_shares_water_fill_the_limits() {
        // 2 CPUs × 30 ms; single threads of weight 256, 512, 1024.
        let p = ACCOUNTING_PERIOD_NS;
        let grants = fair_shares(2 * p, &claims(&[(256, p), (512, p), (1024, p)]));
        assert_eq!(grants, vec![p / 3, 2 * p / 3, p]);
        // Six domains on 4 CPUs: 2048 and 1024 saturate, the rest is split.
        let grants = fair_shares(
            4 * p,
            &claims(&[(128, p), (256, p), (256, p), (512, p), (1024, p), (2048, p)]),
        );
        assert_eq!(grants[4], p);
        assert_eq!(grants[5], p);
        assert_eq!(grants[0], 2 * p * 128 / 1152);
        assert_eq!(grants[3], 2 * p * 512 / 1152);
        // Capacity beyond every limit is left over; zero weights get nothing.
        assert_eq!(fair_shares(10 * p, &claims(&[(1, p), (0, p)])), vec![p, 0]);
        assert_eq!(fair_shares(p, &[]), Vec::<u64>::new());
    }

    #[test]
    fn pool_parameter_ranges_are_xens() {
        assert!(validate_pool(1, 0).is_ok());
        assert!(validate_pool(1000, 500_000).is_ok());
        assert!(validate_pool(30, 1000).is_ok());
        assert!(validate_pool(0, 0).is_err());
        assert!(validate_pool(1001, 0).is_err());
        assert!(validate_pool(30, 99).is_err());
        assert!(
            validate_pool(1, 1001).is_err(),
            "rate limit above the slice"
        );
    }

    fn event(kind: EventKind, cpu: u32, thread: u64, at: u64, ran: u64) -> Event {
        Event::new(kind, CpuId(cpu), ThreadId(thread), at, ran)
    }

    /// Credit with `timeslice_ms` and `ratelimit_us` on CPU 0, and
    /// `threads` runnable one-thread domains (thread and domain ids 1..).
    fn one_cpu(timeslice_ms: u32, ratelimit_us: u32, threads: u64) -> Credit {
        let mut credit = Credit::new();
        credit
            .set_pool_params(&PoolParams::Credit {
                timeslice_ms,
                ratelimit_us,
            })
            .unwrap();
        credit.add_cpu(CpuId(0), 0);
        for t in 1..=threads {
            credit
                .add_thread(ThreadId(t), DomainId(t as u32), true, 0)
                .unwrap();
        }
        credit
    }

    fn drain(policy: &mut Credit) -> Vec<Decision> {
        let mut out = Vec::new();
        policy.take_decisions(&mut out);
        out
    }

    #[test]
    fn new_work_kicks_an_idle_cpu_once() {
        let mut credit = Credit::new();
        credit.add_cpu(CpuId(0), 0);
        credit.add_cpu(CpuId(1), 0);
        drain(&mut credit);
        credit
            .add_thread(ThreadId(1), DomainId(1), true, 0)
            .unwrap();
        let kicks: Vec<Decision> = drain(&mut credit)
            .into_iter()
            .filter(|d| matches!(d, Decision::Kick { .. }))
            .collect();
        assert_eq!(kicks, vec![Decision::Kick { cpu: CpuId(0) }]);
        let dispatch = credit.pick_next(CpuId(0), 0).unwrap();
        assert_eq!(dispatch.thread, ThreadId(1));
        assert!(dispatch.budget_ns <= 30_000_000);
        assert_eq!(credit.pick_next(CpuId(1), 0), None, "nothing else to run");
    }

    #[test]
    fn threads_on_each_others_preferred_cpus_swap() {
        let kicks_and_preemptions = |credit: &mut Credit| -> Vec<Decision> {
            drain(credit)
                .into_iter()
                .filter(|d| !matches!(d, Decision::Timer { .. }))
                .collect()
        };
        // Thread 1 runs on CPU 0 and prefers CPU 1; thread 2 runs on CPU 1
        // and prefers CPU 0; no CPU is idle.
        let mut credit = Credit::new();
        credit.add_cpu(CpuId(0), 0);
        credit.add_cpu(CpuId(1), 0);
        for thread in [1, 2] {
            credit
                .add_thread(ThreadId(thread), DomainId(thread as u32), true, 0)
                .unwrap();
        }
        assert_eq!(credit.pick_next(CpuId(0), 0).unwrap().thread, ThreadId(1));
        assert_eq!(credit.pick_next(CpuId(1), 0).unwrap().thread, ThreadId(2));
        drain(&mut credit);
        credit
            .set_soft_affinity(ThreadId(1), Some(&[CpuId(1)]), 0)
            .unwrap();
        credit
            .set_soft_affinity(ThreadId(2), Some(&[CpuId(0)]), 0)
            .unwrap();
        assert_eq!(
            kicks_and_preemptions(&mut credit),
            vec![],
            "a preference never preempts"
        );
        // Thread 1's entry ends: it waits on CPU 1, whose thread prefers
        // another CPU and is preempted; CPU 0 leaves thread 1 to CPU 1.
        let at = 30_000_000;
        credit.on_event(&event(EventKind::BudgetExpired, 0, 1, at, at));
        assert_eq!(
            kicks_and_preemptions(&mut credit),
            vec![Decision::Preempt { cpu: CpuId(1) }]
        );
        assert_eq!(credit.pick_next(CpuId(0), at), None);
        assert_eq!(
            kicks_and_preemptions(&mut credit),
            vec![],
            "no kick for a thread it would not take"
        );
        // Thread 2's entry ends: it goes to idle CPU 0, and CPU 1 runs 1.
        credit.on_event(&event(EventKind::BudgetExpired, 1, 2, at, at));
        assert_eq!(
            kicks_and_preemptions(&mut credit),
            vec![Decision::Kick { cpu: CpuId(0) }]
        );
        assert_eq!(credit.pick_next(CpuId(1), at).unwrap().thread, ThreadId(1));
        assert_eq!(credit.pick_next(CpuId(0), at).unwrap().thread, ThreadId(2));
    }

    #[test]
    fn a_thread_the_system_keeps_pausing_banks_little_credit() {
        // Ten CPU-bound threads on one CPU with a 1 ms slice: each one's
        // part of a period is 3 ms. Thread 1's entries are mostly paused by
        // system threads (charged 0.1 ms of each 1 ms), so it runs far less
        // than its grants. It may bank twice its part, 6 ms, not a period
        // (30 ms, which it reached before the bound: then spent in one go
        // once the system let it run, far over its share).
        let mut credit = one_cpu(1, 1000, 10);
        let mut at = 0;
        let mut most = 0;
        for _ in 0..1200 {
            let next = credit.pick_next(CpuId(0), at).unwrap();
            at += 1_000_000;
            let ran = if next.thread == ThreadId(1) {
                100_000
            } else {
                1_000_000
            };
            credit.on_event(&event(EventKind::BudgetExpired, 0, next.thread.0, at, ran));
            drain(&mut credit);
            most = most.max(credit.credit_ns(ThreadId(1)).unwrap());
        }
        assert!(most > 2_000_000, "thread 1 banks some credit: {most}");
        assert!(most <= 6_000_000, "thread 1 banked {most} ns");
    }

    #[test]
    fn run_time_is_charged_exactly() {
        let mut credit = Credit::new();
        credit.add_cpu(CpuId(0), 0);
        credit
            .add_thread(ThreadId(1), DomainId(1), true, 0)
            .unwrap();
        credit
            .add_thread(ThreadId(2), DomainId(2), true, 0)
            .unwrap();
        // The first pick runs the first accounting: 15 ms each.
        let first = credit.pick_next(CpuId(0), 0).unwrap();
        assert_eq!(credit.credit_ns(first.thread), Some(15_000_000));
        // It blocks after 1234567 ns: exactly that is charged.
        credit.on_event(&event(
            EventKind::Blocked,
            0,
            first.thread.0,
            1_234_567,
            1_234_567,
        ));
        assert_eq!(credit.credit_ns(first.thread), Some(15_000_000 - 1_234_567));
    }

    #[test]
    fn over_threads_wait_by_debt_in_slices_then_in_fifo_order() {
        // Threads 2 and 3 wait in that order (30 ms slices): owing 20 ms
        // and 1 ms they are both within one slice of debt and the older
        // runs first (Xen's FIFO order); owing 40 ms, thread 2 is a slice
        // deeper and waits behind thread 3. (OVER threads were ranked by
        // credit to the nanosecond, so that every accounting re-filed all
        // of them; in plain FIFO order a thread ran its turns whatever its
        // debt.)
        for (debt_ns, first) in [(20_000_000, 2), (40_000_000, 3)] {
            let mut credit = one_cpu(30, 0, 3);
            assert_eq!(credit.pick_next(CpuId(0), 0).unwrap().thread, ThreadId(1));
            credit.threads.get_mut(&ThreadId(2)).unwrap().credit_ns = -debt_ns;
            credit.threads.get_mut(&ThreadId(3)).unwrap().credit_ns = -1_000_000;
            credit.rekey_all();
            assert!(credit.queues_consistent());
            credit.on_event(&event(EventKind::Blocked, 0, 1, 1_000_000, 1_000_000));
            let next = credit.pick_next(CpuId(0), 1_000_000).unwrap();
            assert_eq!(next.thread, ThreadId(first), "owing {debt_ns} ns");
        }
    }

    #[test]
    fn a_woken_thread_is_boosted_and_preempts_an_over_thread() {
        let mut credit = Credit::new();
        credit
            .set_pool_params(&PoolParams::Credit {
                timeslice_ms: 30,
                ratelimit_us: 0,
            })
            .unwrap();
        credit.add_cpu(CpuId(0), 0);
        credit
            .add_thread(ThreadId(1), DomainId(1), true, 0)
            .unwrap();
        credit
            .add_thread(ThreadId(2), DomainId(2), false, 0)
            .unwrap();
        let hog = credit.pick_next(CpuId(0), 0).unwrap();
        assert_eq!(hog.thread, ThreadId(1));
        // The hog overran its credit (charged at a tick).
        credit.on_event(&event(EventKind::Tick, 0, 1, 29_000_000, 29_000_000));
        drain(&mut credit);
        credit.on_event(&event(EventKind::Woken, 0, 2, 29_000_000, 0));
        assert!(drain(&mut credit).contains(&Decision::Preempt { cpu: CpuId(0) }));
        credit.on_event(&event(EventKind::Evicted, 0, 1, 29_000_001, 29_000_001));
        let next = credit.pick_next(CpuId(0), 29_000_001).unwrap();
        assert_eq!(next.thread, ThreadId(2), "the boosted thread runs first");
    }

    #[test]
    fn a_cpu_without_under_work_steals_it() {
        let mut credit = Credit::new();
        credit.add_cpu(CpuId(0), 0);
        credit.add_cpu(CpuId(1), 0);
        for t in 1..=3 {
            credit
                .add_thread(ThreadId(t), DomainId(t as u32), true, 0)
                .unwrap();
        }
        let a = credit.pick_next(CpuId(0), 0).unwrap();
        let b = credit.pick_next(CpuId(1), 0).unwrap();
        assert_ne!(a.thread, b.thread);
        // CPU 1's thread blocks; the third thread waits in CPU 0's queue and
        // is taken by CPU 1.
        credit.on_event(&event(
            EventKind::Blocked,
            1,
            b.thread.0,
            1_000_000,
            1_000_000,
        ));
        let stolen = credit.pick_next(CpuId(1), 1_000_000).unwrap();
        assert!(stolen.thread != a.thread && stolen.thread != b.thread);
    }

    #[test]
    fn a_parked_capped_domain_waits_for_its_next_period() {
        let mut credit = Credit::new();
        credit.add_cpu(CpuId(0), 0);
        let cap = DomainParams::Credit {
            weight: 256,
            cap_pct: 10,
        };
        credit.set_domain_params(DomainId(1), &cap, 0).unwrap();
        credit
            .add_thread(ThreadId(1), DomainId(1), true, 0)
            .unwrap();
        let entry = credit.pick_next(CpuId(0), 0).unwrap();
        assert_eq!(entry.budget_ns, 3_000_000, "10 % of a 30 ms period");
        credit.on_event(&event(EventKind::BudgetExpired, 0, 1, 3_000_000, 3_000_000));
        assert_eq!(credit.pick_next(CpuId(0), 3_000_000), None, "parked");
        // The next accounting (a timer tick) unparks it and kicks the CPU.
        let decisions = drain(&mut credit);
        assert!(decisions.contains(&Decision::Timer {
            cpu: CpuId(0),
            at_ns: ACCOUNTING_PERIOD_NS
        }));
        credit.on_event(&Event {
            kind: EventKind::Tick,
            cpu: CpuId(0),
            thread: None,
            timestamp_ns: ACCOUNTING_PERIOD_NS,
            ran_ns: 0,
        });
        assert!(drain(&mut credit).contains(&Decision::Kick { cpu: CpuId(0) }));
        assert!(credit.pick_next(CpuId(0), ACCOUNTING_PERIOD_NS).is_some());
    }

    #[test]
    fn an_entry_evicted_before_or_after_its_cpu_leaves_is_rehomed() {
        for evicted_first in [true, false] {
            let mut credit = Credit::new();
            credit.add_cpu(CpuId(0), 0);
            credit.add_cpu(CpuId(1), 0);
            credit
                .add_thread(ThreadId(1), DomainId(1), true, 0)
                .unwrap();
            credit
                .add_thread(ThreadId(2), DomainId(2), true, 0)
                .unwrap();
            let a = credit.pick_next(CpuId(0), 0).unwrap();
            let b = credit.pick_next(CpuId(1), 0).unwrap();
            drain(&mut credit);
            let evicted = event(EventKind::Evicted, 1, b.thread.0, 5_000_000, 5_000_000);
            if evicted_first {
                credit.on_event(&evicted);
                credit.remove_cpu(CpuId(1), 5_000_000);
            } else {
                credit.remove_cpu(CpuId(1), 5_000_000);
                credit.on_event(&evicted);
            }
            // CPU 0's entry ends: the evicted thread is waiting there.
            credit.on_event(&event(
                EventKind::BudgetExpired,
                0,
                a.thread.0,
                30_000_000,
                30_000_000,
            ));
            let next = credit.pick_next(CpuId(0), 30_000_000).unwrap();
            assert_eq!(next.thread, b.thread, "evicted first: {evicted_first}");
            for decision in drain(&mut credit) {
                if let Decision::Kick { cpu } | Decision::Preempt { cpu } = decision {
                    assert_eq!(cpu, CpuId(0), "nothing is asked of the departed CPU");
                }
            }
        }
    }

    #[test]
    fn stale_and_unknown_events_are_harmless() {
        let mut credit = Credit::new();
        credit.add_cpu(CpuId(0), 0);
        credit
            .add_thread(ThreadId(1), DomainId(1), true, 0)
            .unwrap();
        credit.on_event(&event(EventKind::Woken, 0, 1, 1, 0));
        credit.on_event(&event(EventKind::Blocked, 0, 99, 1, 5));
        credit.on_event(&event(EventKind::Yielded, 0, 1, 1, 5));
        let d = credit.pick_next(CpuId(0), 2).unwrap();
        assert_eq!(d.thread, ThreadId(1));
        assert_eq!(credit.pick_next(CpuId(0), 3), None, "queued once only");
        // Suspension keeps the thread: it comes back on Woken.
        credit.on_event(&event(EventKind::Exited, 0, 1, 4, 2));
        credit.on_event(&event(EventKind::Woken, 0, 1, 5, 0));
        assert_eq!(
            credit.pick_next(CpuId(0), 5).map(|d| d.thread),
            Some(ThreadId(1))
        );
        assert_eq!(
            credit.add_thread(ThreadId(1), DomainId(1), true, 6),
            Err(PolicyError::DuplicateThread {
                thread: ThreadId(1)
            })
        );
    }
}
