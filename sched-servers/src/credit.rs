//! Credit: Xen's proportional-share scheduler (seeds 001, 003), with exact
//! accounting and scheduling groups (seed 000).
//!
//! * **Weight** 1..=65535 (default 256) and **cap** in percent of one CPU
//!   (0 = none; enforced even when CPUs idle) per domain.
//! * **Credit** is nanoseconds of CPU. Every [`ACCOUNTING_PERIOD_NS`] (30 ms)
//!   the pool's capacity (CPUs × period) is handed out to the *active*
//!   accounts (runnable now, or ran during the period) in proportion to their
//!   weights, water-filled: an account never receives more than its threads
//!   can run (one CPU per active thread) nor more than its cap, and what it
//!   cannot take goes to the others by weight ([`fair_shares`]). An account
//!   holds at most one period of that limit, so a sleeper cannot bank credit.
//! * **Exact accounting:** running time is charged from the kernel's `ran_ns`
//!   when entries end, and in-progress entries are charged at each accounting
//!   (ticks also charge, if the runtime delivers them), never sampled.
//! * **Priorities:** BOOST (woke with credit left, for its first
//!   [`BOOST_NS`] of running) > UNDER (credit left) > OVER (credit spent).
//!   Each CPU has a FIFO run queue; the best priority runs, and a thread goes
//!   after all others of its priority. A capped account out of credit is
//!   *parked*: its threads wait for the next accounting even if CPUs idle.
//! * **Budgets:** the pool's time slice (1..=1000 ms, default 30); an UNDER
//!   entry ends when its credit would run out (so OVER threads never hold a
//!   CPU that UNDER work wants for a whole slice), but not before the rate
//!   limit; a capped entry never exceeds the account's remaining credit, so
//!   a cap holds to within [`MIN_CAPPED_ENTRY_NS`] per period.
//! * **Wake-up preemption:** a woken thread goes to an idle CPU if there is
//!   one (kick), else preempts a CPU running a lower priority (its previous
//!   CPU first) once the running entry has run the rate limit
//!   (0 or 100..=500000 µs, default 1000 µs).
//! * **Load balancing:** a CPU whose queue has no UNDER (or BOOST) thread
//!   takes the best UNDER thread queued on another CPU; a CPU about to idle
//!   takes any runnable thread from another CPU; an idle CPU is kicked
//!   whenever a runnable, unparked thread waits. No CPU idles while such a
//!   thread waits in the pool.
//! * **Scheduling groups:** a domain joins a master's group with
//!   [`DomainParams::Group`]. Members draw on the master's credit (weight and
//!   cap are the master's; a member's own are kept for when it leaves). One
//!   master per group; a domain is master or member, never both.
//!
//! Deviation from Xen's credit1 code, on purpose: a domain's share follows
//! its weight whatever its number of active vCPUs (credit1 multiplies the
//! weight by the active vCPU count, which is why a group of several domains
//! would otherwise outweigh a lone domain of the master's weight). The credit
//! of a domain is pooled across its threads ("split over its threads").

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use crate::types::{
    CpuId, Decision, Dispatch, DomainId, DomainParams, Event, EventKind, PolicyError, PoolParams,
    ThreadId,
};
use crate::Policy;

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

/// Scheduling priority, lowest first (`Ord` follows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Credit spent: runs only when no UNDER or BOOST thread wants the CPU.
    Over,
    /// Credit left.
    Under,
    /// Woke up with credit left; keeps it for [`BOOST_NS`] of running.
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
            for &i in &open {
                let share = u128::from(remaining) * u128::from(claims[i].weight) / total_weight;
                grants[i] = u64::try_from(share).unwrap_or(u64::MAX);
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

/// A domain: its parameters, and (for a lone domain or a group master) the
/// credit its threads draw on.
#[derive(Clone, Debug)]
struct Domain {
    weight: u32,
    cap_pct: u32,
    /// Credit of the account this domain heads (unused while a member).
    credit_ns: i64,
    /// The master of its group, while a member.
    master: Option<DomainId>,
    /// Number of members, while a master.
    members: u32,
    /// The account's last grant split over its active threads: the longest
    /// UNDER entry one of its threads gets, so that threads sharing the
    /// account take turns instead of the first one spending it all.
    allowance_ns: u64,
}

impl Domain {
    const fn new() -> Self {
        Self {
            weight: DEFAULT_WEIGHT,
            cap_pct: 0,
            credit_ns: 0,
            master: None,
            members: 0,
            allowance_ns: 0,
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
    place: Place,
    last_cpu: Option<CpuId>,
    /// Woke with credit: BOOST for its next entry.
    boost: bool,
    /// Yielded: ranks after its equals at the next pick.
    yielded: bool,
    /// Queue order (FIFO within a priority).
    seq: u64,
    /// Ran, or was runnable, since the last accounting.
    active: bool,
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

#[derive(Clone, Debug)]
struct Cpu {
    state: CpuState,
    queue: VecDeque<ThreadId>,
    /// The timer armed on this CPU.
    timer_at_ns: Option<u64>,
    /// A preemption held back by the rate limit is re-examined then.
    recheck_at_ns: Option<u64>,
    /// A `Preempt` was sent and its entry has not ended yet.
    preempting: bool,
}

impl Cpu {
    const fn new() -> Self {
        Self {
            state: CpuState::Idle,
            queue: VecDeque::new(),
            timer_at_ns: None,
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
    domains: BTreeMap<DomainId, Domain>,
    threads: BTreeMap<ThreadId, Thread>,
    cpus: BTreeMap<CpuId, Cpu>,
    homeless: VecDeque<ThreadId>,
    /// When the next accounting is due (`None` until the first CPU arrives).
    next_accounting_ns: Option<u64>,
    /// Whether any accounting ran yet: the first runs at the first
    /// `pick_next`, when the initial threads are known.
    accounted: bool,
    next_seq: u64,
    decisions: Vec<Decision>,
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
            domains: BTreeMap::new(),
            threads: BTreeMap::new(),
            cpus: BTreeMap::new(),
            homeless: VecDeque::new(),
            next_accounting_ns: None,
            accounted: false,
            next_seq: 0,
            decisions: Vec::new(),
        }
    }

    /// The credit an account holds now (charged time only), for inspection.
    pub fn credit_ns(&self, domain: DomainId) -> Option<i64> {
        let account = self.account_of(domain);
        self.domains.get(&account).map(|d| d.credit_ns)
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

    /// Credit left to `account` at `now_ns`: its credit less the uncharged
    /// run time of its running entries; for a capped account also less the
    /// rest of their budgets (so concurrent entries cannot overrun the cap).
    fn available_ns(&self, account: DomainId, now_ns: u64) -> i64 {
        let domain = self.account_domain(account);
        let capped = domain.cap_pct > 0;
        let mut available = domain.credit_ns;
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
            if self.account_of(t.domain) != account {
                continue;
            }
            let outstanding = if capped {
                entry.budget_ns.saturating_sub(entry.charged_ns)
            } else {
                now_ns
                    .saturating_sub(entry.since_ns)
                    .saturating_sub(entry.charged_ns)
            };
            available = available.saturating_sub(to_i64(outstanding));
        }
        available
    }

    /// A waiting thread's priority, or `None` while its capped account is
    /// parked.
    fn queued_priority(&self, thread: &Thread, now_ns: u64) -> Option<Priority> {
        let account = self.account_of(thread.domain);
        let available = self.available_ns(account, now_ns);
        if self.account_domain(account).cap_pct > 0 && available < to_i64(MIN_CAPPED_ENTRY_NS) {
            return None;
        }
        Some(if available < 0 {
            Priority::Over
        } else if thread.boost {
            Priority::Boost
        } else {
            Priority::Under
        })
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
        let account = self.account_of(t.domain);
        Some(if self.available_ns(account, now_ns) < 0 {
            Priority::Over
        } else if now_ns < entry.boost_until_ns {
            Priority::Boost
        } else {
            Priority::Under
        })
    }

    /// The best waiting thread in `queue` with its priority: highest priority,
    /// then not yielded, then oldest.
    fn best_in(&self, cpu: CpuId, now_ns: u64) -> Option<(Priority, bool, ThreadId)> {
        let mut best: Option<(Priority, bool, u64, ThreadId)> = None;
        for &thread in &self.cpus.get(&cpu)?.queue {
            let t = &self.threads[&thread];
            let Some(priority) = self.queued_priority(t, now_ns) else {
                continue;
            };
            let fresh = !t.yielded;
            let better = match best {
                None => true,
                Some((p, f, seq, _)) => {
                    (priority, fresh) > (p, f) || ((priority, fresh) == (p, f) && t.seq < seq)
                }
            };
            if better {
                best = Some((priority, fresh, t.seq, thread));
            }
        }
        best.map(|(p, f, _, thread)| (p, f, thread))
    }

    /// The best thread queued on another CPU than `cpu` with at least
    /// priority `floor`.
    fn best_elsewhere(&self, cpu: CpuId, floor: Priority, now_ns: u64) -> Option<ThreadId> {
        let mut best: Option<(Priority, bool, u64, ThreadId)> = None;
        // Look at peers starting after `cpu`, wrapping, so no CPU is always
        // robbed first.
        let after = self.cpus.range(cpu..).skip(1).map(|(&c, _)| c);
        let before = self.cpus.range(..cpu).map(|(&c, _)| c);
        for peer in after.chain(before) {
            let Some((priority, fresh, thread)) = self.best_in(peer, now_ns) else {
                continue;
            };
            if priority < floor {
                continue;
            }
            let seq = self.threads[&thread].seq;
            let better = match best {
                None => true,
                Some((p, f, s, _)) => {
                    (priority, fresh) > (p, f) || ((priority, fresh) == (p, f) && seq < s)
                }
            };
            if better {
                best = Some((priority, fresh, seq, thread));
            }
        }
        best.map(|(_, _, _, thread)| thread)
    }

    /// Puts a runnable thread at the tail of `cpu`'s queue.
    fn enqueue(&mut self, thread: ThreadId, cpu: CpuId) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(t) = self.threads.get_mut(&thread) {
            t.place = Place::Queued(cpu);
            t.seq = seq;
            t.active = true;
        }
        if let Some(c) = self.cpus.get_mut(&cpu) {
            c.queue.push_back(thread);
        }
    }

    /// Takes a thread out of whatever queue holds it.
    fn dequeue(&mut self, thread: ThreadId) {
        let Some(t) = self.threads.get(&thread) else {
            return;
        };
        match t.place {
            Place::Queued(cpu) => {
                if let Some(c) = self.cpus.get_mut(&cpu) {
                    c.queue.retain(|&q| q != thread);
                }
            }
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
        let last = t.last_cpu.filter(|c| self.cpus.contains_key(c));
        let idle = |c: &CpuId| {
            self.cpus
                .get(c)
                .is_some_and(|cpu| cpu.state == CpuState::Idle)
        };
        let target = last
            .filter(idle)
            .or_else(|| self.cpus.keys().copied().find(idle))
            .or(last)
            .or_else(|| self.cpus.keys().next().copied());
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
        let Some(priority) = self.queued_priority(&self.threads[&thread], now_ns) else {
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
            .filter(|&c| !self.cpus[&c].preempting && beats(c))
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

    /// Keeps UNDER work from waiting behind OVER work: while UNDER (or
    /// BOOST) threads wait and CPUs run OVER entries, preempt as many of
    /// those CPUs (they then take the UNDER work, locally or by stealing).
    fn preempt_over(&mut self, now_ns: u64) {
        let waiting_under = self
            .cpus
            .values()
            .flat_map(|c| c.queue.iter())
            .filter(|&&thread| {
                self.queued_priority(&self.threads[&thread], now_ns)
                    .is_some_and(|p| p >= Priority::Under)
            })
            .count();
        if waiting_under == 0 {
            return;
        }
        let pending = self
            .cpus
            .values()
            .filter(|c| c.state == CpuState::Pending || c.preempting)
            .count();
        let victims: Vec<CpuId> = self
            .cpus
            .iter()
            .filter(|(_, c)| !c.preempting && c.recheck_at_ns.is_none())
            .map(|(&id, _)| id)
            .filter(|&id| self.running_priority(id, now_ns) == Some(Priority::Over))
            .take(waiting_under.saturating_sub(pending))
            .collect();
        for cpu in victims {
            self.preempt(cpu, now_ns);
        }
    }

    /// Re-examines a preemption the rate limit held back: preempt if a
    /// waiting thread on `cpu` outranks its running entry.
    fn recheck(&mut self, cpu: CpuId, now_ns: u64) {
        let running = self.running_priority(cpu, now_ns);
        let waiting = self.best_in(cpu, now_ns).map(|(p, _, _)| p);
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
        let domain = t.domain;
        let account = self.account_of(domain);
        if let Some(d) = self.domains.get_mut(&account) {
            d.credit_ns = d.credit_ns.saturating_sub(delta);
        }
    }

    /// Ends `thread`'s entry (after charging it): frees its CPU for the
    /// `pick_next` the driver makes next.
    fn end_entry(&mut self, thread: ThreadId, event_cpu: CpuId) {
        let Some(Place::Running(entry)) = self.threads.get(&thread).map(|t| t.place) else {
            return;
        };
        if let Some(c) = self.cpus.get_mut(&entry.cpu) {
            if c.state == CpuState::Busy(thread) {
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
        if let Some(t) = self.threads.get_mut(&thread) {
            t.place = Place::Blocked;
        }
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
        // Active threads per account.
        let mut active: BTreeMap<DomainId, u64> = BTreeMap::new();
        for t in self.threads.values() {
            let runnable = !matches!(t.place, Place::Blocked);
            if t.active || runnable {
                *active.entry(self.account_of(t.domain)).or_default() += 1;
            }
        }
        let limits: Vec<(DomainId, u64)> = active
            .iter()
            .map(|(&account, &threads)| {
                let d = self.account_domain(account);
                let peak = threads * period;
                let limit = if d.cap_pct > 0 {
                    peak.min(cap_grant_ns(d.cap_pct))
                } else {
                    peak
                };
                (account, limit)
            })
            .collect();
        let claims: Vec<Claim> = limits
            .iter()
            .map(|&(account, limit_ns)| Claim {
                weight: u64::from(self.account_domain(account).weight),
                limit_ns,
            })
            .collect();
        let grants = fair_shares(cpus * period, &claims);
        let floor = -to_i64(cpus.max(1) * period);
        for (&(account, limit), grant) in limits.iter().zip(grants) {
            let threads = active.get(&account).copied().unwrap_or(1).max(1);
            if let Some(d) = self.domains.get_mut(&account) {
                d.credit_ns = d
                    .credit_ns
                    .saturating_add(to_i64(grant))
                    .min(to_i64(limit))
                    .max(floor);
                d.allowance_ns = grant / threads;
            }
        }
        for t in self.threads.values_mut() {
            t.active = false;
        }
        self.accounted = true;
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
        let waiting = self
            .cpus
            .keys()
            .flat_map(|c| self.cpus[c].queue.iter())
            .chain(self.homeless.iter())
            .filter(|&&thread| {
                self.queued_priority(&self.threads[&thread], now_ns)
                    .is_some()
            })
            .count();
        let idle: Vec<CpuId> = self
            .cpus
            .iter()
            .filter(|(_, c)| c.state == CpuState::Idle)
            .map(|(&id, _)| id)
            .take(waiting)
            .collect();
        for cpu in idle {
            self.kick(cpu);
        }
        self.preempt_over(now_ns);
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
        if self.domains.get(&domain).is_some_and(|d| d.members > 0) {
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
                m.members -= 1;
            }
        }
        if let Some(new) = master {
            if let Some(m) = self.domains.get_mut(&new) {
                m.members += 1;
            }
        }
        self.domains
            .entry(domain)
            .or_insert_with(Domain::new)
            .master = master;
    }
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
        self.finish(now_ns);
    }

    fn remove_cpu(&mut self, cpu: CpuId, now_ns: u64) {
        self.advance(now_ns);
        let Some(removed) = self.cpus.remove(&cpu) else {
            return;
        };
        for thread in removed.queue {
            if let Some(t) = self.threads.get_mut(&thread) {
                t.place = Place::Blocked;
            }
            self.place(thread, now_ns);
        }
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
        self.domains.entry(domain).or_insert_with(Domain::new);
        self.threads.insert(
            thread,
            Thread {
                domain,
                place: Place::Blocked,
                last_cpu: None,
                boost: false,
                yielded: false,
                seq: 0,
                active: false,
            },
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
            self.end_entry(thread, entry.cpu);
        }
        self.threads.remove(&thread);
        self.finish(now_ns);
    }

    fn remove_domain(&mut self, domain: DomainId, now_ns: u64) {
        let threads: Vec<ThreadId> = self
            .threads
            .iter()
            .filter(|(_, t)| t.domain == domain)
            .map(|(&id, _)| id)
            .collect();
        for thread in threads {
            self.remove_thread(thread, now_ns);
        }
        self.set_group(domain, None);
        let members: Vec<DomainId> = self
            .domains
            .iter()
            .filter(|(_, d)| d.master == Some(domain))
            .map(|(&id, _)| id)
            .collect();
        for member in members {
            self.set_group(member, None);
        }
        self.domains.remove(&domain);
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
                        let account = self.account_of(self.threads[&thread].domain);
                        let boost = self.available_ns(account, now_ns) > 0;
                        if let Some(t) = self.threads.get_mut(&thread) {
                            t.boost = boost;
                            t.yielded = false;
                        }
                        self.place(thread, now_ns);
                    }
                }
                EventKind::Blocked | EventKind::Faulted | EventKind::Exited => {
                    if running {
                        self.charge(thread, event.ran_ns);
                        self.end_entry(thread, event.cpu);
                    } else {
                        self.dequeue(thread);
                        if let Some(t) = self.threads.get_mut(&thread) {
                            t.place = Place::Blocked;
                        }
                    }
                    if event.kind == EventKind::Exited {
                        self.threads.remove(&thread);
                    }
                }
                EventKind::Yielded | EventKind::BudgetExpired | EventKind::Evicted => {
                    if running {
                        self.charge(thread, event.ran_ns);
                        let Place::Running(entry) = place else {
                            unreachable!("checked running")
                        };
                        self.end_entry(thread, event.cpu);
                        if let Some(t) = self.threads.get_mut(&thread) {
                            t.yielded = event.kind == EventKind::Yielded;
                        }
                        if self.cpus.contains_key(&entry.cpu) {
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
        let local = self.best_in(cpu, now_ns);
        let chosen = match local {
            Some((priority, _, thread)) if priority >= Priority::Under => Some(thread),
            _ => self
                .best_elsewhere(cpu, Priority::Under, now_ns)
                .or(local.map(|(_, _, thread)| thread))
                .or_else(|| self.best_elsewhere(cpu, Priority::Over, now_ns)),
        };
        // Yielding only counts for the pick that follows it.
        let queued: Vec<ThreadId> = self.cpus[&cpu].queue.iter().copied().collect();
        for thread in queued {
            if let Some(t) = self.threads.get_mut(&thread) {
                t.yielded = false;
            }
        }
        let Some(thread) = chosen else {
            if let Some(c) = self.cpus.get_mut(&cpu) {
                c.state = CpuState::Idle;
            }
            self.finish(now_ns);
            return None;
        };
        let priority = self
            .queued_priority(&self.threads[&thread], now_ns)
            .expect("chosen threads are not parked");
        let account = self.account_of(self.threads[&thread].domain);
        let available = self.available_ns(account, now_ns);
        let timeslice = self.timeslice_ns();
        let allowance = match self.account_domain(account).allowance_ns {
            0 => timeslice,
            allowance => allowance,
        };
        let available = u64::try_from(available).unwrap_or(0);
        let budget_ns = if self.account_domain(account).cap_pct > 0 {
            timeslice
                .min(available)
                .min(allowance.max(MIN_CAPPED_ENTRY_NS))
        } else if priority == Priority::Over {
            timeslice
        } else {
            let floor = self.ratelimit_ns().max(MIN_ENTRY_NS).min(timeslice);
            available.min(allowance).clamp(floor, timeslice)
        };
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
        }
        self.finish(now_ns);
        Some(Dispatch { thread, budget_ns })
    }

    fn take_decisions(&mut self, out: &mut Vec<Decision>) {
        out.append(&mut self.decisions);
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
                let d = self.domains.entry(domain).or_insert_with(Domain::new);
                d.weight = weight;
                d.cap_pct = cap_pct;
                if cap_pct > 0 {
                    let grant = to_i64(cap_grant_ns(cap_pct));
                    d.credit_ns = d.credit_ns.min(grant);
                }
            }
            DomainParams::Group { master } => {
                self.validate_group(domain, master)?;
                self.advance(now_ns);
                self.set_group(domain, master);
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
        Ok(())
    }

    fn pool_params(&self) -> PoolParams {
        PoolParams::Credit {
            timeslice_ms: self.timeslice_ms,
            ratelimit_us: self.ratelimit_us,
        }
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
