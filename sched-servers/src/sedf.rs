//! SEDF: Xen's simple earliest-deadline-first scheduler (seed 001) with
//! admission control and balancing across the pool's CPUs.
//!
//! * Per domain: **period** `p`, **slice** `s` (each of the domain's threads
//!   gets `s` of CPU in every period of length `p`) and the **extra** flag
//!   (may run in idle time beyond its slice). Defaults: no reservation, extra
//!   time only (best effort).
//! * **Admission control — partitioned EDF.** Each thread with a slice is a
//!   reservation of utilisation `s/p` (parts per billion, rounded up) on one
//!   *home* CPU, placed worst-fit (the least-utilised CPU, which also
//!   balances the load). A request is admitted only if its home keeps a total
//!   utilisation ≤ 100 %; otherwise [`PolicyError::Infeasible`] names the
//!   domain and thread that do not fit, and nothing changes. Worst-fit is
//!   exact for one request: it fits somewhere iff it fits on the
//!   least-utilised CPU.
//! * **Why no deadline is missed.** On each CPU the home reservations are
//!   scheduled by EDF, preemptively; uniprocessor EDF meets every deadline
//!   of a set with total utilisation ≤ 1 (Liu & Layland 1973). A home job is
//!   never delayed by anything else: extra time and work stolen from other
//!   CPUs run on a CPU only while none of its home jobs is ready, their
//!   budgets end at the CPU's next home release, and a home job that wakes
//!   preempts them. Work done for a job on another CPU only reduces what its
//!   home still owes it. Wake-ups follow the constant-bandwidth-server rule
//!   (Abeni & Buttazzo 1998): a thread waking with more budget than it could
//!   use at its reserved rate before its deadline starts a fresh period, so a
//!   sleeper cannot claim more than `s/p` of its home.
//! * **Deadlines:** a runnable thread's deadline moves forward by whole
//!   periods; its budget is refilled to `s` at each new period. A `Yielded`
//!   event ends the thread's slice for the current period.
//! * **Balancing:** a CPU with no home job ready takes the earliest-deadline
//!   ready job homed elsewhere (its home is busy with an earlier one), and
//!   otherwise gives extra time. Idle CPUs are kicked whenever such work
//!   waits: with extra-time domains the pool is work conserving.
//! * **Extra time** goes to the ready extra-time thread that has received the
//!   least of it (a woken sleeper is not owed more than one quantum), in
//!   quanta of the pool's `extra_quantum_ms` (default 10 ms).
//! * **Hard affinity** ([`Policy::set_affinity`]): a thread's reservation
//!   is homed on a CPU of its affinity (worst-fit among the allowed CPUs;
//!   refused with [`PolicyError::AffinityInfeasible`] when it fits on none
//!   of them, nothing changed); stealing, extra time and kicks only use
//!   CPUs it may run on; a thread running outside a new affinity is
//!   preempted. When a CPU joins and a broken affinity holds again, a home
//!   outside it is given up and the thread re-admitted on its CPUs (demoted
//!   to extra time if it fits on none of them for now).
//! * **Soft affinity** is accepted and ignored (the trait's default): a
//!   reservation's home is chosen for fit, and Xen's SEDF had none.
//! * **Losing a CPU:** its reservations are re-placed worst-fit; one that
//!   fits nowhere is *demoted* to extra time (so it still runs) and
//!   re-admitted when a CPU joins ([`Sedf::demoted`]).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;

use crate::math::{ceil_ratio_ppb, mul_div, mul_div_ceil, PPB_ONE};
use crate::params::{self, ParamError, ParamKind, ParamSpec, ParamValue, Values};
use crate::types::{
    Affinity, CpuId, Decision, Dispatch, DomainId, DomainParams, Event, EventKind, PolicyError,
    PoolParams, ThreadId,
};
use crate::Policy;

const NS_PER_MS: u64 = 1_000_000;

/// SEDF's per-domain parameters (xl's units: milliseconds).
pub const DOMAIN_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "period",
        kind: ParamKind::Int {
            min: 1,
            max: 3_600_000,
        },
        default: ParamValue::Int((BEST_EFFORT_PERIOD_NS / NS_PER_MS) as i64),
        help: "length of a period (ms)",
    },
    ParamSpec {
        name: "slice",
        kind: ParamKind::Int {
            min: 0,
            max: 3_600_000,
        },
        default: ParamValue::Int(0),
        help: "CPU time reserved per period for each thread (ms, <= period; 0: best effort, needs extra)",
    },
    ParamSpec {
        name: "extra",
        kind: ParamKind::Bool,
        default: ParamValue::Bool(true),
        help: "may run in idle time beyond its slice",
    },
];

/// SEDF's pool parameters.
pub const POOL_PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "extra_quantum_ms",
    kind: ParamKind::Int { min: 1, max: 1000 },
    default: ParamValue::Int(DEFAULT_EXTRA_QUANTUM_MS as i64),
    help: "longest entry of extra (idle) time (ms)",
}];

/// Default extra-time quantum.
pub const DEFAULT_EXTRA_QUANTUM_MS: u32 = 10;
/// Period of a domain without parameters (it has no reservation).
const BEST_EFFORT_PERIOD_NS: u64 = 100_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Domain {
    period_ns: u64,
    slice_ns: u64,
    extra: bool,
}

impl Domain {
    const BEST_EFFORT: Self = Self {
        period_ns: BEST_EFFORT_PERIOD_NS,
        slice_ns: 0,
        extra: true,
    };

    fn utilisation_ppb(&self) -> u64 {
        if self.slice_ns == 0 {
            0
        } else {
            ceil_ratio_ppb(self.slice_ns, self.period_ns)
        }
    }
}

/// What a running entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The thread's reserved slice (on its home or stolen by another CPU).
    Reserved,
    /// Idle time beyond the slice.
    Extra,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    cpu: CpuId,
    charged_ns: u64,
    mode: Mode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Blocked,
    Ready,
    Running(Entry),
}

#[derive(Clone, Debug)]
struct Thread {
    domain: DomainId,
    place: Place,
    /// The CPU holding its reservation (`None`: no reservation).
    home: Option<CpuId>,
    /// Utilisation reserved on `home`.
    utilisation_ppb: u64,
    /// Lost its reservation with a CPU; runs in extra time until re-admitted.
    demoted: bool,
    deadline_ns: u64,
    remaining_ns: u64,
    /// Reserved time run beyond the slice (an entry that ended late): taken
    /// from the next periods' slices, so the long-run share stays exact.
    overrun_ns: u64,
    /// Extra time received (fair sharing of idle time).
    extra_ns: u64,
    /// The CPUs it may run on.
    affinity: Affinity,
}

impl Thread {
    /// A new period's budget: the slice less what earlier periods overran.
    fn refill(&mut self, slice_ns: u64) -> u64 {
        let paid = self.overrun_ns.min(slice_ns);
        self.overrun_ns -= paid;
        slice_ns - paid
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CpuState {
    Idle,
    Pending,
    Busy(ThreadId),
}

#[derive(Clone, Debug)]
struct Cpu {
    state: CpuState,
    utilisation_ppb: u64,
    timer_at_ns: Option<u64>,
    preempting: bool,
}

/// The SEDF policy.
#[derive(Clone, Debug)]
pub struct Sedf {
    extra_quantum_ms: u32,
    domains: BTreeMap<DomainId, Domain>,
    threads: BTreeMap<ThreadId, Thread>,
    cpus: BTreeMap<CpuId, Cpu>,
    decisions: Vec<Decision>,
}

impl Default for Sedf {
    fn default() -> Self {
        Self::new()
    }
}

impl Sedf {
    /// An SEDF policy with no CPUs.
    pub fn new() -> Self {
        Self {
            extra_quantum_ms: DEFAULT_EXTRA_QUANTUM_MS,
            domains: BTreeMap::new(),
            threads: BTreeMap::new(),
            cpus: BTreeMap::new(),
            decisions: Vec::new(),
        }
    }

    /// Reserved utilisation of `cpu` in parts per billion.
    pub fn utilisation_ppb(&self, cpu: CpuId) -> Option<u64> {
        self.cpus.get(&cpu).map(|c| c.utilisation_ppb)
    }

    /// The CPU holding `thread`'s reservation.
    pub fn home(&self, thread: ThreadId) -> Option<CpuId> {
        self.threads.get(&thread).and_then(|t| t.home)
    }

    /// Threads whose reservation was lost with a CPU and does not fit on the
    /// remaining ones (they run in extra time until re-admitted).
    pub fn demoted(&self) -> impl Iterator<Item = ThreadId> + '_ {
        self.threads
            .iter()
            .filter(|(_, t)| t.demoted)
            .map(|(&id, _)| id)
    }

    fn domain(&self, domain: DomainId) -> Domain {
        self.domains
            .get(&domain)
            .copied()
            .unwrap_or(Domain::BEST_EFFORT)
    }

    fn extra_quantum_ns(&self) -> u64 {
        u64::from(self.extra_quantum_ms) * 1_000_000
    }

    /// Worst-fit: the least-utilised CPU in `utilisation` if `wanted` fits
    /// there; else the free utilisation of that CPU (ppm) as the error.
    fn worst_fit(utilisation: &BTreeMap<CpuId, u64>, wanted_ppb: u64) -> Result<CpuId, u32> {
        Self::worst_fit_among(utilisation, wanted_ppb, |_| true)
    }

    /// [`Sedf::worst_fit`] among the CPUs `allowed` accepts.
    fn worst_fit_among(
        utilisation: &BTreeMap<CpuId, u64>,
        wanted_ppb: u64,
        allowed: impl Fn(CpuId) -> bool,
    ) -> Result<CpuId, u32> {
        let least = utilisation
            .iter()
            .filter(|(&cpu, _)| allowed(cpu))
            .min_by_key(|(&cpu, &u)| (u, cpu))
            .map(|(&cpu, &u)| (cpu, u));
        match least {
            Some((cpu, used)) if used + wanted_ppb <= PPB_ONE => Ok(cpu),
            Some((_, used)) => Err(u32::try_from(PPB_ONE.saturating_sub(used) / 1000).unwrap_or(0)),
            None => Err(0),
        }
    }

    /// Whether `thread` may run on `cpu` (its hard affinity).
    fn allowed(&self, thread: ThreadId, cpu: CpuId) -> bool {
        self.threads
            .get(&thread)
            .is_none_or(|t| self.allows(t, cpu))
    }

    /// Whether thread `t` may run on `cpu`.
    fn allows(&self, t: &Thread, cpu: CpuId) -> bool {
        t.affinity.is_any() || t.affinity.allows(cpu, |c| self.cpus.contains_key(&c))
    }

    /// Worst-fit among the CPUs `thread` may run on.
    fn fit_for(
        &self,
        utilisation: &BTreeMap<CpuId, u64>,
        thread: ThreadId,
        wanted_ppb: u64,
    ) -> Result<CpuId, u32> {
        Self::worst_fit_among(utilisation, wanted_ppb, |cpu| self.allowed(thread, cpu))
    }

    /// After an affinity changed or a CPU joined: a reservation homed where
    /// its thread may no longer run is given up (the thread is demoted and
    /// re-admitted on its CPUs by [`Sedf::readmit`]), and a thread running
    /// outside its affinity is preempted.
    fn enforce_affinity(&mut self) {
        let mut outside = Vec::new();
        let mut rehome = Vec::new();
        for (&id, t) in &self.threads {
            if t.home.is_some_and(|home| !self.allowed(id, home)) {
                rehome.push(id);
            }
            if let Place::Running(entry) = t.place {
                if self.cpus.contains_key(&entry.cpu) && !self.allowed(id, entry.cpu) {
                    outside.push(entry.cpu);
                }
            }
        }
        for thread in rehome {
            self.unreserve(thread);
            if let Some(t) = self.threads.get_mut(&thread) {
                t.demoted = true;
                t.remaining_ns = 0;
            }
        }
        for cpu in outside {
            self.preempt(cpu);
        }
    }

    fn utilisation_map(&self) -> BTreeMap<CpuId, u64> {
        self.cpus
            .iter()
            .map(|(&id, c)| (id, c.utilisation_ppb))
            .collect()
    }

    /// Starts a new period for a thread at `now_ns`.
    fn new_period(&mut self, thread: ThreadId, now_ns: u64) {
        let Some(domain) = self.threads.get(&thread).map(|t| self.domain(t.domain)) else {
            return;
        };
        if let Some(t) = self.threads.get_mut(&thread) {
            t.deadline_ns = now_ns + domain.period_ns;
            t.remaining_ns = if t.home.is_some() {
                t.refill(domain.slice_ns)
            } else {
                0
            };
        }
    }

    /// Moves ready reserved threads' deadlines past `now_ns`, refilling
    /// their budgets.
    fn refresh(&mut self, now_ns: u64) {
        let domains = &self.domains;
        for t in self.threads.values_mut() {
            // A running thread's period advances when its entry ends (its
            // budget never reaches past its deadline).
            if t.home.is_none() || t.place != Place::Ready || now_ns < t.deadline_ns {
                continue;
            }
            let domain = domains
                .get(&t.domain)
                .copied()
                .unwrap_or(Domain::BEST_EFFORT);
            let periods = (now_ns - t.deadline_ns) / domain.period_ns + 1;
            t.deadline_ns += periods * domain.period_ns;
            t.remaining_ns = t.refill(domain.slice_ns);
        }
    }

    /// The constant-bandwidth-server wake-up rule.
    fn wake(&mut self, thread: ThreadId, now_ns: u64) {
        let min_extra = self.min_extra_ns();
        let quantum = self.extra_quantum_ns();
        let Some(t) = self.threads.get(&thread) else {
            return;
        };
        let domain = self.domain(t.domain);
        let fresh = now_ns >= t.deadline_ns
            || t.remaining_ns > mul_div(t.deadline_ns - now_ns, domain.slice_ns, domain.period_ns);
        if fresh {
            self.new_period(thread, now_ns);
        }
        if let Some(t) = self.threads.get_mut(&thread) {
            t.place = Place::Ready;
            t.extra_ns = t.extra_ns.max(min_extra.saturating_sub(quantum));
        }
    }

    fn min_extra_ns(&self) -> u64 {
        self.threads
            .values()
            .filter(|t| t.place != Place::Blocked)
            .map(|t| t.extra_ns)
            .min()
            .unwrap_or(0)
    }

    fn wants_extra(&self, t: &Thread) -> bool {
        t.demoted || (self.domain(t.domain).extra && (t.home.is_none() || t.remaining_ns == 0))
    }

    fn reserved_ready(t: &Thread) -> bool {
        t.place == Place::Ready && t.home.is_some() && t.remaining_ns > 0
    }

    /// The earliest-deadline ready reserved thread with `home` matching
    /// that may run on `cpu`.
    fn earliest(&self, cpu: CpuId, home: impl Fn(Option<CpuId>) -> bool) -> Option<ThreadId> {
        self.threads
            .iter()
            .filter(|(_, t)| Self::reserved_ready(t) && home(t.home) && self.allows(t, cpu))
            .min_by_key(|(&id, t)| (t.deadline_ns, id))
            .map(|(&id, _)| id)
    }

    /// The ready thread owed extra time the most that may run on `cpu`.
    fn neediest_extra(&self, cpu: CpuId) -> Option<ThreadId> {
        self.threads
            .iter()
            .filter(|(_, t)| t.place == Place::Ready && self.wants_extra(t) && self.allows(t, cpu))
            .min_by_key(|(&id, t)| (t.extra_ns, id))
            .map(|(&id, _)| id)
    }

    /// When `cpu`'s next home job is released (budget spent, period running).
    fn next_home_release(&self, cpu: CpuId) -> Option<u64> {
        self.threads
            .values()
            .filter(|t| t.home == Some(cpu) && t.place != Place::Blocked && t.remaining_ns == 0)
            .map(|t| t.deadline_ns)
            .min()
    }

    /// Whether the entry running on `cpu` yields to a ready home job with
    /// deadline `deadline_ns` (`None`: any reserved job, for stealing).
    fn runs_worse(&self, cpu: CpuId, deadline_ns: Option<u64>) -> bool {
        let Some(c) = self.cpus.get(&cpu) else {
            return false;
        };
        let CpuState::Busy(thread) = c.state else {
            return false;
        };
        let Some(t) = self.threads.get(&thread) else {
            return false;
        };
        let Place::Running(entry) = t.place else {
            return false;
        };
        match (entry.mode, deadline_ns) {
            (Mode::Extra, _) => true,
            (Mode::Reserved, None) => false,
            (Mode::Reserved, Some(deadline)) => t.home != Some(cpu) || deadline < t.deadline_ns,
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

    fn preempt(&mut self, cpu: CpuId) {
        if let Some(c) = self.cpus.get_mut(&cpu) {
            if matches!(c.state, CpuState::Busy(_)) && !c.preempting {
                c.preempting = true;
                self.decisions.push(Decision::Preempt { cpu });
            }
        }
    }

    /// Finds CPUs for ready work: each ready reserved job (earliest deadline
    /// first) claims its home (kicked if idle, preempted if it runs something
    /// worse), else an idle CPU, else a CPU giving extra time; then idle CPUs
    /// are kicked for extra-time work. Arms the release timers.
    fn tickle(&mut self, now_ns: u64) {
        self.refresh(now_ns);
        let mut claimed: Vec<CpuId> = self
            .cpus
            .iter()
            .filter(|(_, c)| c.preempting)
            .map(|(&id, _)| id)
            .collect();
        let mut jobs: Vec<(u64, ThreadId, CpuId)> = self
            .threads
            .iter()
            .filter(|(_, t)| Self::reserved_ready(t))
            .filter_map(|(&id, t)| t.home.map(|home| (t.deadline_ns, id, home)))
            .collect();
        jobs.sort_unstable();
        for (deadline_ns, thread, home) in jobs {
            let free = |cpu: &CpuId| !claimed.contains(cpu) && self.allowed(thread, *cpu);
            let state = |cpu: CpuId| self.cpus.get(&cpu).map(|c| c.state);
            if free(&home) {
                match state(home) {
                    Some(CpuState::Idle) => {
                        claimed.push(home);
                        self.kick(home);
                        continue;
                    }
                    Some(CpuState::Pending) => {
                        claimed.push(home);
                        continue;
                    }
                    Some(CpuState::Busy(_)) if self.runs_worse(home, Some(deadline_ns)) => {
                        claimed.push(home);
                        self.preempt(home);
                        continue;
                    }
                    _ => {}
                }
            }
            let other = self
                .cpus
                .iter()
                .filter(|(id, c)| free(id) && matches!(c.state, CpuState::Idle | CpuState::Pending))
                .map(|(&id, _)| id)
                .next();
            if let Some(cpu) = other {
                claimed.push(cpu);
                self.kick(cpu);
                continue;
            }
            let victim = self
                .cpus
                .keys()
                .copied()
                .find(|cpu| free(cpu) && self.runs_worse(*cpu, None));
            if let Some(cpu) = victim {
                claimed.push(cpu);
                self.preempt(cpu);
            }
        }
        let extra: Vec<ThreadId> = self
            .threads
            .iter()
            .filter(|(_, t)| t.place == Place::Ready && self.wants_extra(t))
            .map(|(&id, _)| id)
            .collect();
        // Unclaimed CPUs about to pick take extra work too.
        let pending = self
            .cpus
            .iter()
            .filter(|(id, c)| !claimed.contains(id) && c.state == CpuState::Pending)
            .count();
        // Only CPUs some extra-time thread may run on (their pick finds it).
        let idle: Vec<CpuId> = self
            .cpus
            .iter()
            .filter(|(id, c)| !claimed.contains(id) && c.state == CpuState::Idle)
            .map(|(&id, _)| id)
            .filter(|&cpu| extra.iter().any(|&t| self.allowed(t, cpu)))
            .take(extra.len().saturating_sub(pending))
            .collect();
        for cpu in idle {
            self.kick(cpu);
        }
        let timers: Vec<(CpuId, u64)> = self
            .cpus
            .keys()
            .filter_map(|&cpu| self.next_home_release(cpu).map(|at| (cpu, at)))
            .collect();
        for (cpu, at_ns) in timers {
            if let Some(c) = self.cpus.get_mut(&cpu) {
                if c.timer_at_ns != Some(at_ns) {
                    c.timer_at_ns = Some(at_ns);
                    self.decisions.push(Decision::Timer { cpu, at_ns });
                }
            }
        }
    }

    fn charge(&mut self, thread: ThreadId, ran_ns: u64) {
        let Some(t) = self.threads.get_mut(&thread) else {
            return;
        };
        let Place::Running(ref mut entry) = t.place else {
            return;
        };
        let delta = ran_ns.saturating_sub(entry.charged_ns);
        entry.charged_ns = entry.charged_ns.max(ran_ns);
        match entry.mode {
            Mode::Reserved => {
                t.overrun_ns += delta.saturating_sub(t.remaining_ns);
                t.remaining_ns = t.remaining_ns.saturating_sub(delta);
            }
            Mode::Extra => t.extra_ns += delta,
        }
    }

    fn end_entry(&mut self, thread: ThreadId, event_cpu: CpuId, next: Place) {
        let Some(Place::Running(entry)) = self.threads.get(&thread).map(|t| t.place) else {
            return;
        };
        if let Some(c) = self.cpus.get_mut(&entry.cpu) {
            if c.state == CpuState::Busy(thread) {
                c.preempting = false;
                c.state = if entry.cpu == event_cpu {
                    CpuState::Pending
                } else {
                    CpuState::Idle
                };
            }
        }
        if let Some(t) = self.threads.get_mut(&thread) {
            t.place = next;
        }
    }

    /// Releases a thread's reservation.
    fn unreserve(&mut self, thread: ThreadId) {
        let Some(t) = self.threads.get_mut(&thread) else {
            return;
        };
        if let Some(home) = t.home.take() {
            if let Some(c) = self.cpus.get_mut(&home) {
                c.utilisation_ppb = c.utilisation_ppb.saturating_sub(t.utilisation_ppb);
            }
        }
        t.utilisation_ppb = 0;
    }

    /// Reserves `utilisation_ppb` for a thread on `cpu`.
    fn reserve(&mut self, thread: ThreadId, cpu: CpuId, utilisation_ppb: u64) {
        if let Some(c) = self.cpus.get_mut(&cpu) {
            c.utilisation_ppb += utilisation_ppb;
        }
        if let Some(t) = self.threads.get_mut(&thread) {
            t.home = Some(cpu);
            t.utilisation_ppb = utilisation_ppb;
            t.demoted = false;
        }
    }

    /// Re-admits demoted threads (after a CPU joined), in thread order.
    fn readmit(&mut self, now_ns: u64) {
        let demoted: Vec<ThreadId> = self.demoted().collect();
        for thread in demoted {
            let wanted = self.domain(self.threads[&thread].domain).utilisation_ppb();
            if let Ok(cpu) = self.fit_for(&self.utilisation_map(), thread, wanted) {
                self.reserve(thread, cpu, wanted);
                self.new_period(thread, now_ns);
            }
        }
    }
}

impl Policy for Sedf {
    fn name(&self) -> &'static str {
        "sedf"
    }

    fn add_cpu(&mut self, cpu: CpuId, now_ns: u64) {
        self.cpus.entry(cpu).or_insert(Cpu {
            state: CpuState::Idle,
            utilisation_ppb: 0,
            timer_at_ns: None,
            preempting: false,
        });
        self.enforce_affinity();
        self.readmit(now_ns);
        self.tickle(now_ns);
    }

    fn remove_cpu(&mut self, cpu: CpuId, now_ns: u64) {
        if self.cpus.remove(&cpu).is_none() {
            return;
        }
        let homed: Vec<ThreadId> = self
            .threads
            .iter()
            .filter(|(_, t)| t.home == Some(cpu))
            .map(|(&id, _)| id)
            .collect();
        for thread in homed {
            let wanted = self.threads[&thread].utilisation_ppb;
            if let Some(t) = self.threads.get_mut(&thread) {
                t.home = None;
                t.utilisation_ppb = 0;
            }
            match self.fit_for(&self.utilisation_map(), thread, wanted) {
                Ok(new_home) => self.reserve(thread, new_home, wanted),
                Err(_) => {
                    if let Some(t) = self.threads.get_mut(&thread) {
                        t.demoted = true;
                        t.remaining_ns = 0;
                    }
                }
            }
        }
        self.tickle(now_ns);
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
        let params = self.domain(domain);
        let wanted = params.utilisation_ppb();
        let home = if wanted > 0 {
            let cpu = Self::worst_fit(&self.utilisation_map(), wanted).map_err(|free_ppm| {
                PolicyError::Infeasible {
                    domain,
                    thread: Some(thread),
                    slice_ns: params.slice_ns,
                    period_ns: params.period_ns,
                    free_ppm,
                }
            })?;
            Some(cpu)
        } else {
            None
        };
        self.domains.entry(domain).or_insert(params);
        let extra_ns = self.min_extra_ns();
        self.threads.insert(
            thread,
            Thread {
                domain,
                place: Place::Blocked,
                home: None,
                utilisation_ppb: 0,
                demoted: false,
                deadline_ns: now_ns,
                remaining_ns: 0,
                overrun_ns: 0,
                extra_ns,
                affinity: Affinity::any(),
            },
        );
        if let Some(cpu) = home {
            self.reserve(thread, cpu, wanted);
        }
        self.new_period(thread, now_ns);
        if runnable {
            if let Some(t) = self.threads.get_mut(&thread) {
                t.place = Place::Ready;
            }
        }
        self.tickle(now_ns);
        Ok(())
    }

    fn remove_thread(&mut self, thread: ThreadId, now_ns: u64) {
        if let Some(Place::Running(entry)) = self.threads.get(&thread).map(|t| t.place) {
            self.end_entry(thread, entry.cpu, Place::Blocked);
        }
        self.unreserve(thread);
        self.threads.remove(&thread);
        self.tickle(now_ns);
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
        self.domains.remove(&domain);
    }

    fn on_event(&mut self, event: &Event) {
        let now_ns = event.timestamp_ns;
        if matches!(event.kind, EventKind::QueueEmpty) || event.kind.ends_entry() {
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
        if let Some(thread) = event.thread.filter(|t| self.threads.contains_key(t)) {
            let place = self.threads[&thread].place;
            let running = matches!(place, Place::Running(_));
            match event.kind {
                EventKind::Woken => {
                    if place == Place::Blocked {
                        self.wake(thread, now_ns);
                    }
                }
                EventKind::Blocked | EventKind::Faulted | EventKind::Exited => {
                    if running {
                        self.charge(thread, event.ran_ns);
                        self.end_entry(thread, event.cpu, Place::Blocked);
                    } else if let Some(t) = self.threads.get_mut(&thread) {
                        t.place = Place::Blocked;
                    }
                }
                EventKind::Yielded | EventKind::BudgetExpired | EventKind::Evicted => {
                    if running {
                        self.charge(thread, event.ran_ns);
                        self.end_entry(thread, event.cpu, Place::Ready);
                        if event.kind == EventKind::Yielded {
                            if let Some(t) = self.threads.get_mut(&thread) {
                                t.remaining_ns = 0;
                            }
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
        self.tickle(now_ns);
    }

    fn pick_next(&mut self, cpu: CpuId, now_ns: u64) -> Option<Dispatch> {
        if !self.cpus.contains_key(&cpu) {
            return None;
        }
        self.refresh(now_ns);
        let home_release = self.next_home_release(cpu).unwrap_or(u64::MAX);
        let local = self.earliest(cpu, |home| home == Some(cpu));
        let chosen = local
            .map(|thread| (thread, Mode::Reserved))
            .or_else(|| {
                self.earliest(cpu, |home| home != Some(cpu))
                    .map(|thread| (thread, Mode::Reserved))
            })
            .or_else(|| self.neediest_extra(cpu).map(|thread| (thread, Mode::Extra)));
        let Some((thread, mode)) = chosen else {
            if let Some(c) = self.cpus.get_mut(&cpu) {
                c.state = CpuState::Idle;
            }
            self.tickle(now_ns);
            return None;
        };
        let t = &self.threads[&thread];
        let until_deadline = t.deadline_ns.saturating_sub(now_ns);
        let mut budget_ns = match mode {
            Mode::Reserved => t.remaining_ns.min(until_deadline),
            Mode::Extra => {
                let mut budget = self.extra_quantum_ns();
                if t.home.is_some() {
                    // Back to reserved time at its own next release.
                    budget = budget.min(until_deadline);
                }
                budget
            }
        };
        if local.is_none() {
            // Stolen or extra work gives way at this CPU's next home release.
            budget_ns = budget_ns.min(home_release.saturating_sub(now_ns));
        }
        let budget_ns = budget_ns.max(1);
        if let Some(t) = self.threads.get_mut(&thread) {
            t.place = Place::Running(Entry {
                cpu,
                charged_ns: 0,
                mode,
            });
        }
        if let Some(c) = self.cpus.get_mut(&cpu) {
            c.state = CpuState::Busy(thread);
            c.preempting = false;
        }
        self.tickle(now_ns);
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
        let Some(t) = self.threads.get(&thread) else {
            return Err(PolicyError::UnknownThread { thread });
        };
        let affinity = Affinity::new(thread, cpus)?;
        let in_pool = |c: CpuId| self.cpus.contains_key(&c);
        let allows = |cpu: CpuId| affinity.allows(cpu, in_pool);
        // Admission first: the reservation (a demoted one too) must fit on
        // a CPU of the new affinity; its current home is kept if allowed.
        let domain = self.domain(t.domain);
        let wanted = domain.utilisation_ppb();
        let mut new_home = None;
        if wanted > 0 && !self.cpus.is_empty() {
            let mut utilisation = self.utilisation_map();
            if let Some(home) = t.home {
                if let Some(u) = utilisation.get_mut(&home) {
                    *u = u.saturating_sub(t.utilisation_ppb);
                }
            }
            let home = match t.home.filter(|&home| allows(home)) {
                Some(home) => home,
                None => {
                    Self::worst_fit_among(&utilisation, wanted, allows).map_err(|free_ppm| {
                        PolicyError::AffinityInfeasible {
                            thread,
                            slice_ns: domain.slice_ns,
                            period_ns: domain.period_ns,
                            free_ppm,
                        }
                    })?
                }
            };
            new_home = Some(home);
        }
        // Nothing below fails.
        let moved = new_home.is_some() && new_home != t.home;
        if let Some(t) = self.threads.get_mut(&thread) {
            t.affinity = affinity;
        }
        if moved {
            self.unreserve(thread);
            if let Some(home) = new_home {
                self.reserve(thread, home, wanted);
            }
            self.new_period(thread, now_ns);
        }
        self.enforce_affinity();
        self.tickle(now_ns);
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
        if values.is_empty() {
            return Ok(());
        }
        let current = self
            .domains
            .get(&domain)
            .copied()
            .unwrap_or(Domain::BEST_EFFORT);
        let ms = |key: &str, current_ns: u64| {
            params::find(values, key)
                .and_then(ParamValue::int)
                .map_or(current_ns, |v| v.unsigned_abs() * NS_PER_MS)
        };
        let wanted = DomainParams::Sedf {
            period_ns: ms("period", current.period_ns),
            slice_ns: ms("slice", current.slice_ns),
            extra: params::find(values, "extra")
                .and_then(ParamValue::flag)
                .unwrap_or(current.extra),
        };
        self.set_domain_params(domain, &wanted, now_ns)
            .map_err(|e| match e {
                PolicyError::InvalidPeriod { .. } => ParamError::new("period", e.to_string()),
                PolicyError::Infeasible { .. } => {
                    ParamError::request(format!("the reservation does not fit the pool ({e})"))
                }
                _ => ParamError::new("slice", e.to_string()),
            })
    }

    fn domain_values(&self, domain: DomainId) -> Values {
        let d = self
            .domains
            .get(&domain)
            .copied()
            .unwrap_or(Domain::BEST_EFFORT);
        let ms = |ns: u64| ParamValue::Int(i64::try_from(ns / NS_PER_MS).unwrap_or(i64::MAX));
        alloc::vec![
            ("period", ms(d.period_ns)),
            ("slice", ms(d.slice_ns)),
            ("extra", ParamValue::Bool(d.extra)),
        ]
    }

    fn set_pool_values(&mut self, values: &Values, _now_ns: u64) -> Result<(), ParamError> {
        let extra_quantum_ms = params::u32_or(values, "extra_quantum_ms", self.extra_quantum_ms);
        self.set_pool_params(&PoolParams::Sedf { extra_quantum_ms })
            .map_err(|e| ParamError::new("extra_quantum_ms", e.to_string()))
    }

    fn pool_values(&self) -> Values {
        let quantum = i64::from(self.extra_quantum_ms);
        alloc::vec![("extra_quantum_ms", ParamValue::Int(quantum))]
    }

    fn set_domain_params(
        &mut self,
        domain: DomainId,
        params: &DomainParams,
        now_ns: u64,
    ) -> Result<(), PolicyError> {
        let DomainParams::Sedf {
            period_ns,
            slice_ns,
            extra,
        } = *params
        else {
            return Err(PolicyError::WrongPolicy { policy: "sedf" });
        };
        if period_ns == 0 {
            return Err(PolicyError::InvalidPeriod { period_ns });
        }
        if slice_ns > period_ns || (slice_ns == 0 && !extra) {
            return Err(PolicyError::InvalidSlice {
                slice_ns,
                period_ns,
            });
        }
        let new = Domain {
            period_ns,
            slice_ns,
            extra,
        };
        let wanted = new.utilisation_ppb();
        // Decode: place every thread of the domain on a copy of the
        // utilisations, without this domain's current reservations.
        let mut utilisation = self.utilisation_map();
        let threads: Vec<ThreadId> = self
            .threads
            .iter()
            .filter(|(_, t)| t.domain == domain)
            .map(|(&id, _)| id)
            .collect();
        for thread in &threads {
            let t = &self.threads[thread];
            if let Some(home) = t.home {
                if let Some(u) = utilisation.get_mut(&home) {
                    *u = u.saturating_sub(t.utilisation_ppb);
                }
            }
        }
        let infeasible = |thread: Option<ThreadId>, free_ppm: u32| PolicyError::Infeasible {
            domain,
            thread,
            slice_ns,
            period_ns,
            free_ppm,
        };
        let mut homes: Vec<(ThreadId, Option<CpuId>)> = Vec::new();
        for &thread in &threads {
            if wanted == 0 {
                homes.push((thread, None));
                continue;
            }
            let current = self.threads[&thread]
                .home
                .filter(|home| utilisation.get(home).is_some_and(|u| u + wanted <= PPB_ONE));
            let current = current.filter(|&home| self.allowed(thread, home));
            let home = match current {
                Some(home) => home,
                None => self
                    .fit_for(&utilisation, thread, wanted)
                    .map_err(|free| infeasible(Some(thread), free))?,
            };
            *utilisation.entry(home).or_default() += wanted;
            homes.push((thread, Some(home)));
        }
        if threads.is_empty() && wanted > 0 {
            Self::worst_fit(&utilisation, wanted).map_err(|free| infeasible(None, free))?;
        }
        // Invoke: nothing below fails.
        self.domains.insert(domain, new);
        for (thread, home) in homes {
            self.unreserve(thread);
            if let Some(home) = home {
                self.reserve(thread, home, wanted);
            }
            if let Some(t) = self.threads.get_mut(&thread) {
                t.demoted = false;
            }
            self.new_period(thread, now_ns);
        }
        self.tickle(now_ns);
        Ok(())
    }

    fn domain_params(&self, domain: DomainId) -> Option<DomainParams> {
        self.domains.get(&domain).map(|d| DomainParams::Sedf {
            period_ns: d.period_ns,
            slice_ns: d.slice_ns,
            extra: d.extra,
        })
    }

    fn set_pool_params(&mut self, params: &PoolParams) -> Result<(), PolicyError> {
        let PoolParams::Sedf { extra_quantum_ms } = *params else {
            return Err(PolicyError::WrongPolicy { policy: "sedf" });
        };
        if !(1..=1000).contains(&extra_quantum_ms) {
            return Err(PolicyError::InvalidTimeslice {
                timeslice_ms: extra_quantum_ms,
            });
        }
        self.extra_quantum_ms = extra_quantum_ms;
        Ok(())
    }

    fn pool_params(&self) -> Option<PoolParams> {
        Some(PoolParams::Sedf {
            extra_quantum_ms: self.extra_quantum_ms,
        })
    }
}

/// Whether `slice_ns / period_ns` reservations fit on `cpus` CPUs under this
/// policy's admission test, placing them in order (worst-fit). A planning
/// helper for tools; the policy applies the same test incrementally.
pub fn feasible(cpus: usize, reservations: &[(u64, u64)]) -> bool {
    let mut utilisation: BTreeMap<CpuId, u64> = (0..cpus)
        .map(|n| (CpuId(u32::try_from(n).unwrap_or(u32::MAX)), 0))
        .collect();
    reservations.iter().all(|&(slice_ns, period_ns)| {
        if period_ns == 0 || slice_ns > period_ns {
            return false;
        }
        let wanted = mul_div_ceil(slice_ns, PPB_ONE, period_ns);
        match Sedf::worst_fit(&utilisation, wanted) {
            Ok(cpu) => {
                *utilisation.entry(cpu).or_default() += wanted;
                true
            }
            Err(_) => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn worst_fit_admission_is_exact_for_one_request() {
        assert!(feasible(
            2,
            &[(10 * MS, 100 * MS), (30 * MS, 50 * MS), (20 * MS, 40 * MS)]
        ));
        assert!(!feasible(
            2,
            &[(30 * MS, 50 * MS), (30 * MS, 50 * MS), (30 * MS, 50 * MS)]
        ));
        assert!(feasible(1, &[(MS, 3 * MS), (MS, 3 * MS)]));
        assert!(
            !feasible(1, &[(MS, 3 * MS), (MS, 3 * MS), (MS, 3 * MS)]),
            "rounding up is conservative"
        );
        assert!(
            feasible(1, &[(50 * MS, 100 * MS), (50 * MS, 100 * MS)]),
            "exactly 100 %"
        );
        assert!(!feasible(0, &[(MS, 10 * MS)]));
        assert!(!feasible(4, &[(2 * MS, MS)]));
    }

    fn sedf_with(cpus: u32) -> Sedf {
        let mut sedf = Sedf::new();
        for n in 0..cpus {
            sedf.add_cpu(CpuId(n), 0);
        }
        sedf
    }

    fn reserve(sedf: &mut Sedf, domain: u32, slice: u64, period: u64, extra: bool) {
        let params = DomainParams::Sedf {
            period_ns: period,
            slice_ns: slice,
            extra,
        };
        sedf.set_domain_params(DomainId(domain), &params, 0)
            .unwrap();
    }

    #[test]
    fn earliest_deadline_runs_first_for_its_slice() {
        let mut sedf = sedf_with(1);
        reserve(&mut sedf, 1, 10 * MS, 100 * MS, false);
        reserve(&mut sedf, 2, 5 * MS, 20 * MS, false);
        sedf.add_thread(ThreadId(1), DomainId(1), true, 0).unwrap();
        sedf.add_thread(ThreadId(2), DomainId(2), true, 0).unwrap();
        let first = sedf.pick_next(CpuId(0), 0).unwrap();
        assert_eq!(
            first,
            Dispatch {
                thread: ThreadId(2),
                budget_ns: 5 * MS
            }
        );
        sedf.on_event(&Event::new(
            EventKind::BudgetExpired,
            CpuId(0),
            ThreadId(2),
            5 * MS,
            5 * MS,
        ));
        let second = sedf.pick_next(CpuId(0), 5 * MS).unwrap();
        assert_eq!(second.thread, ThreadId(1));
        // Thread 2's next release (20 ms) ends the entry of thread 1? No:
        // thread 1 runs its own reservation; a release preempts it only if the
        // new deadline (40 ms) is earlier than thread 1's (100 ms): it is.
        let mut decisions = Vec::new();
        sedf.take_decisions(&mut decisions);
        assert!(decisions.contains(&Decision::Timer {
            cpu: CpuId(0),
            at_ns: 20 * MS
        }));
        sedf.on_event(&Event {
            kind: EventKind::Tick,
            cpu: CpuId(0),
            thread: Some(ThreadId(1)),
            timestamp_ns: 20 * MS,
            ran_ns: 10 * MS,
        });
        decisions.clear();
        sedf.take_decisions(&mut decisions);
        assert!(decisions.contains(&Decision::Preempt { cpu: CpuId(0) }));
    }

    #[test]
    fn an_entry_that_overran_its_slice_pays_it_back_next_period() {
        let mut sedf = sedf_with(1);
        reserve(&mut sedf, 1, 20 * MS, 100 * MS, false);
        sedf.add_thread(ThreadId(1), DomainId(1), false, 0).unwrap();
        sedf.on_event(&Event::new(EventKind::Woken, CpuId(0), ThreadId(1), 0, 0));
        let d = sedf.pick_next(CpuId(0), 0).unwrap();
        assert_eq!(d.budget_ns, 20 * MS);
        // The budget's end was noticed late: it ran 23 ms.
        sedf.on_event(&Event::new(
            EventKind::BudgetExpired,
            CpuId(0),
            ThreadId(1),
            23 * MS,
            23 * MS,
        ));
        assert_eq!(sedf.pick_next(CpuId(0), 23 * MS), None);
        sedf.on_event(&Event {
            kind: EventKind::Tick,
            cpu: CpuId(0),
            thread: None,
            timestamp_ns: 100 * MS,
            ran_ns: 0,
        });
        // The next period's slice is 3 ms shorter: 20 % over both periods.
        let d = sedf.pick_next(CpuId(0), 100 * MS).unwrap();
        assert_eq!(d.budget_ns, 17 * MS);
    }

    #[test]
    fn wakeups_follow_the_cbs_rule() {
        let mut sedf = sedf_with(1);
        reserve(&mut sedf, 1, 10 * MS, 100 * MS, false);
        sedf.add_thread(ThreadId(1), DomainId(1), false, 0).unwrap();
        // Woken at 95 ms with 10 ms of budget and 5 ms to its deadline: it
        // would claim 200 % of the CPU, so a fresh period starts.
        sedf.on_event(&Event::new(
            EventKind::Woken,
            CpuId(0),
            ThreadId(1),
            95 * MS,
            0,
        ));
        let d = sedf.pick_next(CpuId(0), 95 * MS).unwrap();
        assert_eq!(d.budget_ns, 10 * MS);
        assert_eq!(sedf.threads[&ThreadId(1)].deadline_ns, 195 * MS);
        // Blocks after 2 ms; woken at 100 ms with 8 ms left and 95 ms to go:
        // within its bandwidth, so the period and budget are kept.
        sedf.on_event(&Event::new(
            EventKind::Blocked,
            CpuId(0),
            ThreadId(1),
            97 * MS,
            2 * MS,
        ));
        sedf.on_event(&Event::new(
            EventKind::Woken,
            CpuId(0),
            ThreadId(1),
            100 * MS,
            0,
        ));
        let t = &sedf.threads[&ThreadId(1)];
        assert_eq!((t.deadline_ns, t.remaining_ns), (195 * MS, 8 * MS));
    }

    #[test]
    fn without_extra_a_spent_slice_waits_for_the_next_period() {
        let mut sedf = sedf_with(1);
        reserve(&mut sedf, 1, 10 * MS, 50 * MS, false);
        reserve(&mut sedf, 2, 10 * MS, 50 * MS, true);
        sedf.add_thread(ThreadId(1), DomainId(1), true, 0).unwrap();
        sedf.add_thread(ThreadId(2), DomainId(2), true, 0).unwrap();
        for _ in 0..2 {
            let d = sedf.pick_next(CpuId(0), 0).unwrap();
            assert_eq!(d.budget_ns, 10 * MS);
            sedf.on_event(&Event::new(
                EventKind::BudgetExpired,
                CpuId(0),
                d.thread,
                0,
                10 * MS,
            ));
        }
        // Only the extra-time thread may go on, until the next release.
        let d = sedf.pick_next(CpuId(0), 20 * MS).unwrap();
        assert_eq!(d.thread, ThreadId(2));
        assert!(d.budget_ns <= 30 * MS);
    }

    #[test]
    fn refused_changes_leave_everything_as_it_was() {
        let mut sedf = sedf_with(1);
        reserve(&mut sedf, 1, 60 * MS, 100 * MS, false);
        sedf.add_thread(ThreadId(1), DomainId(1), true, 0).unwrap();
        let request = DomainParams::Sedf {
            period_ns: 100 * MS,
            slice_ns: 50 * MS,
            extra: true,
        };
        let error = sedf
            .set_domain_params(DomainId(2), &request, 0)
            .unwrap_err();
        assert_eq!(
            error,
            PolicyError::Infeasible {
                domain: DomainId(2),
                thread: None,
                slice_ns: 50 * MS,
                period_ns: 100 * MS,
                free_ppm: 400_000,
            }
        );
        assert_eq!(sedf.utilisation_ppb(CpuId(0)), Some(600_000_000));
        assert_eq!(sedf.domain_params(DomainId(2)), None);
    }
}
