//! The simulator proper: a discrete-event model of the kernel's side of the
//! contract (dispatch entries with budgets, events with exact `ran_ns`,
//! timers, kicks, preemptions, CPU revocation) driving any [`Policy`] the
//! way the on-metal runtime does (see `tarn_sched_servers`' crate docs).
//!
//! Time is integer nanoseconds; simultaneous happenings are ordered by a
//! fixed rule (entry ends by CPU, then actions, then wake-ups and job
//! releases by thread, then timers by CPU), so a scenario always produces
//! the same report.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use tarn_sched_servers::params::parse_values;
use tarn_sched_servers::{
    CpuId, Decision, Dispatch, DomainId, Event, EventKind, ParamError, Policy, PolicyError,
    ThreadId,
};

use crate::report::{DomainReport, Mark, Report, Slice};
use crate::rng::Rng;
use crate::scenario::{mask_cpus, Action, Scenario, Workload};

/// Why a scenario could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimError {
    /// The policy refused the pool parameters.
    Pool(PolicyError),
    /// The policy refused a domain's parameters.
    Domain(DomainId, PolicyError),
    /// The policy refused a thread.
    Thread(ThreadId, PolicyError),
    /// The scenario itself is malformed.
    Scenario(String),
    /// The policy refused open (`key=value`) parameters of the pool
    /// (`None`) or of a domain.
    Values(Option<DomainId>, ParamError),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pool(error) => write!(f, "pool parameters refused: {error}"),
            Self::Domain(domain, error) => write!(f, "{domain}: parameters refused: {error}"),
            Self::Thread(thread, error) => write!(f, "{thread} refused: {error}"),
            Self::Scenario(why) => write!(f, "bad scenario: {why}"),
            Self::Values(None, error) => write!(f, "pool parameters refused: {error}"),
            Self::Values(Some(domain), error) => {
                write!(f, "{domain}: parameters refused: {error}")
            }
        }
    }
}

impl std::error::Error for SimError {}

/// Runs `scenario` under `policy` and reports what happened.
pub fn simulate(policy: &mut dyn Policy, scenario: &Scenario) -> Result<Report, SimError> {
    let mut engine = Engine::new(policy, scenario)?;
    engine.run(scenario.duration_ns);
    Ok(engine.finish())
}

/// Guard against a policy that never settles (kick or preempt loops).
const MAX_STEPS_PER_INSTANT: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct SimEntry {
    thread: usize,
    start_ns: u64,
    budget_ns: u64,
}

#[derive(Clone, Debug)]
struct SimCpu {
    in_pool: bool,
    entry: Option<SimEntry>,
    timer_at_ns: Option<u64>,
    last_thread: Option<usize>,
}

#[derive(Clone, Debug)]
struct SimThread {
    id: ThreadId,
    domain: usize,
    workload: Workload,
    runnable: bool,
    running_on: Option<u32>,
    last_cpu: Option<u32>,
    /// CPU time until the current burst ends (`u64::MAX`: never).
    burst_left_ns: u64,
    wake_at_ns: Option<u64>,
    next_release_ns: Option<u64>,
    jobs: u64,
    misses: u64,
    cpu_ns: u64,
    /// Hard affinity (CPU mask; `None`: any CPU of the pool).
    affinity: Option<u64>,
}

/// What happens next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Happening {
    EntryEnd(u32),
    Action(usize),
    ThreadTimer(usize),
    CpuTimer(u32),
    PeriodicTick,
}

struct Engine<'a> {
    policy: &'a mut dyn Policy,
    now_ns: u64,
    rng: Rng,
    switch_cost_ns: u64,
    cpus: Vec<SimCpu>,
    threads: Vec<SimThread>,
    by_id: BTreeMap<ThreadId, usize>,
    actions: Vec<(u64, Action)>,
    next_action: usize,
    pick_pending: BTreeSet<u32>,
    decisions: VecDeque<Decision>,
    buffer: Vec<Decision>,
    record_trace: bool,
    sample_ns: u64,
    /// Per window, per domain: ns received.
    window_ns: Vec<Vec<u64>>,
    report: Report,
    /// The policy did not settle: the run stops.
    aborted: bool,
    /// Periodic tick length and the next tick, when ticks replace timers.
    periodic_tick_ns: Option<u64>,
    next_tick_ns: u64,
}

impl<'a> Engine<'a> {
    fn new(policy: &'a mut dyn Policy, scenario: &Scenario) -> Result<Self, SimError> {
        if scenario.sample_ns == 0 {
            return Err(SimError::Scenario("sample_ns must be > 0".into()));
        }
        let mut slots = scenario.cpus;
        for (_, action) in &scenario.actions {
            if let Action::AddCpu(n) | Action::RemoveCpu(n) = action {
                slots = slots.max(n + 1);
            }
        }
        let mut actions = scenario.actions.clone();
        actions.sort_by_key(|&(time, _)| time);
        let report = Report {
            policy: policy.name().to_owned(),
            cpus: scenario.cpus,
            duration_ns: scenario.duration_ns,
            domains: scenario
                .domains
                .iter()
                .map(|d| DomainReport {
                    id: d.id,
                    name: d.name.clone(),
                    threads: d.threads.len(),
                    cpu_ns: 0,
                    share_pct: 0.0,
                    jobs: 0,
                    deadline_misses: 0,
                })
                .collect(),
            idle_ns: 0,
            idle_while_waiting_ns: 0,
            pool_cpu_ns: 0,
            switch_ns: 0,
            migrations: 0,
            context_switches: 0,
            dispatches: 0,
            preemptions: 0,
            affinity_violations: 0,
            protocol_errors: Vec::new(),
            action_errors: Vec::new(),
            sample_ns: scenario.sample_ns,
            samples: Vec::new(),
            slices: Vec::new(),
            marks: Vec::new(),
        };
        let windows = scenario.duration_ns.div_ceil(scenario.sample_ns);
        let mut engine = Self {
            policy,
            now_ns: 0,
            rng: Rng::new(scenario.seed),
            switch_cost_ns: scenario.switch_cost_ns,
            cpus: (0..slots)
                .map(|_| SimCpu {
                    in_pool: false,
                    entry: None,
                    timer_at_ns: None,
                    last_thread: None,
                })
                .collect(),
            threads: Vec::new(),
            by_id: BTreeMap::new(),
            actions,
            next_action: 0,
            pick_pending: BTreeSet::new(),
            decisions: VecDeque::new(),
            buffer: Vec::new(),
            record_trace: scenario.record_trace,
            sample_ns: scenario.sample_ns,
            window_ns: vec![vec![0; scenario.domains.len()]; usize::try_from(windows).unwrap_or(0)],
            report,
            aborted: false,
            periodic_tick_ns: scenario.periodic_tick_ns.filter(|&t| t > 0),
            next_tick_ns: scenario.periodic_tick_ns.unwrap_or(0),
        };
        engine.setup(scenario)?;
        Ok(engine)
    }

    fn setup(&mut self, scenario: &Scenario) -> Result<(), SimError> {
        for n in 0..scenario.cpus {
            self.cpus[n as usize].in_pool = true;
            self.policy.add_cpu(CpuId(n), 0);
            self.collect();
        }
        if let Some(params) = &scenario.pool_params {
            self.policy
                .set_pool_params(params)
                .map_err(SimError::Pool)?;
        }
        let values = parse_values(self.policy.pool_param_specs(), &scenario.pool_values)
            .map_err(|e| SimError::Values(None, e))?;
        self.policy
            .set_pool_values(&values, 0)
            .map_err(|e| SimError::Values(None, e))?;
        for domain in &scenario.domains {
            for params in &domain.params {
                self.policy
                    .set_domain_params(domain.id, params, 0)
                    .map_err(|e| SimError::Domain(domain.id, e))?;
                self.collect();
            }
            let refused = |e| SimError::Values(Some(domain.id), e);
            let values =
                parse_values(self.policy.domain_param_specs(), &domain.values).map_err(refused)?;
            if !values.is_empty() {
                self.policy
                    .set_domain_values(domain.id, &values, 0)
                    .map_err(refused)?;
                self.collect();
            }
        }
        for (index, domain) in scenario.domains.iter().enumerate() {
            for (n, &workload) in domain.threads.iter().enumerate() {
                let id = ThreadId(self.threads.len() as u64 + 1);
                let mut thread = SimThread {
                    id,
                    domain: index,
                    workload,
                    runnable: true,
                    running_on: None,
                    last_cpu: None,
                    burst_left_ns: u64::MAX,
                    wake_at_ns: None,
                    next_release_ns: None,
                    jobs: 0,
                    misses: 0,
                    cpu_ns: 0,
                    affinity: domain.affinity.get(n).copied().flatten(),
                };
                self.start_burst(&mut thread);
                if let Workload::Periodic { period_ns, .. } = workload {
                    thread.next_release_ns = Some(period_ns);
                    thread.jobs = 1;
                }
                self.by_id.insert(id, self.threads.len());
                self.threads.push(thread);
                self.policy
                    .add_thread(id, domain.id, true, 0)
                    .map_err(|e| SimError::Thread(id, e))?;
                self.collect();
            }
        }
        for index in 0..self.threads.len() {
            let (id, affinity) = (self.threads[index].id, self.threads[index].affinity);
            if let Some(mask) = affinity {
                self.policy
                    .set_affinity(id, Some(&mask_cpus(mask)), 0)
                    .map_err(|e| SimError::Thread(id, e))?;
                self.collect();
            }
        }
        let soft = scenario
            .domains
            .iter()
            .flat_map(|d| (0..d.threads.len()).map(move |n| d.soft.get(n).copied().flatten()));
        for (index, soft) in soft.enumerate() {
            if let Some(mask) = soft {
                let id = self.threads[index].id;
                self.policy
                    .set_soft_affinity(id, Some(&mask_cpus(mask)), 0)
                    .map_err(|e| SimError::Thread(id, e))?;
                self.collect();
            }
        }
        self.settle();
        Ok(())
    }

    /// Gives a thread its next burst of CPU work.
    fn start_burst(&mut self, thread: &mut SimThread) {
        thread.burst_left_ns = match thread.workload {
            Workload::CpuBound => u64::MAX,
            Workload::DutyCycle { run_ns, .. } | Workload::Yielder { run_ns } => run_ns.max(1),
            Workload::Bursty {
                run_min_ns,
                run_max_ns,
                ..
            } => self.rng.range(run_min_ns, run_max_ns).max(1),
            Workload::Periodic { work_ns, .. } => work_ns.max(1),
        };
    }

    fn run(&mut self, end_ns: u64) {
        loop {
            let Some((time_ns, happening)) = self.next_happening() else {
                self.advance_to(end_ns);
                return;
            };
            if time_ns >= end_ns || self.aborted {
                self.advance_to(end_ns);
                return;
            }
            self.advance_to(time_ns);
            self.handle(happening);
            self.settle();
        }
    }

    fn entry_end_ns(&self, entry: &SimEntry) -> u64 {
        // The budget counts from the start; the burst left from now.
        let left = self.threads[entry.thread].burst_left_ns;
        let by_budget = entry.start_ns.saturating_add(entry.budget_ns);
        let by_burst = entry.start_ns.max(self.now_ns).saturating_add(left);
        by_budget.min(by_burst)
    }

    fn next_happening(&self) -> Option<(u64, Happening)> {
        let mut best: Option<(u64, Happening)> = None;
        let mut consider = |time_ns: u64, happening: Happening| {
            let candidate = (time_ns, happening);
            if best.is_none_or(|b| candidate < b) {
                best = Some(candidate);
            }
        };
        for (n, cpu) in self.cpus.iter().enumerate() {
            if let Some(entry) = &cpu.entry {
                consider(self.entry_end_ns(entry), Happening::EntryEnd(n as u32));
            }
            if let Some(at_ns) = cpu.timer_at_ns {
                consider(at_ns.max(self.now_ns), Happening::CpuTimer(n as u32));
            }
        }
        if self.periodic_tick_ns.is_some() {
            consider(self.next_tick_ns, Happening::PeriodicTick);
        }
        if let Some(&(time_ns, _)) = self.actions.get(self.next_action) {
            consider(
                time_ns.max(self.now_ns),
                Happening::Action(self.next_action),
            );
        }
        for (index, thread) in self.threads.iter().enumerate() {
            let due = match (thread.wake_at_ns, thread.next_release_ns) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(time_ns) = due {
                consider(time_ns, Happening::ThreadTimer(index));
            }
        }
        best
    }

    /// Lets time pass: threads run, CPUs idle, statistics accumulate.
    fn advance_to(&mut self, time_ns: u64) {
        let from = self.now_ns;
        if time_ns <= from {
            return;
        }
        let span = time_ns - from;
        let waiting = self
            .threads
            .iter()
            .filter(|t| t.runnable && t.running_on.is_none())
            .count() as u64;
        let mut idle_cpus = 0u64;
        for n in 0..self.cpus.len() {
            if !self.cpus[n].in_pool {
                continue;
            }
            self.report.pool_cpu_ns += span;
            let Some(entry) = self.cpus[n].entry else {
                idle_cpus += 1;
                self.report.idle_ns += span;
                continue;
            };
            let run_from = entry.start_ns.max(from);
            self.report.switch_ns += run_from.min(time_ns) - from;
            if time_ns > run_from {
                let ran = time_ns - run_from;
                let thread = &mut self.threads[entry.thread];
                thread.cpu_ns += ran;
                if thread.burst_left_ns != u64::MAX {
                    thread.burst_left_ns = thread.burst_left_ns.saturating_sub(ran);
                }
                let domain = thread.domain;
                self.report.domains[domain].cpu_ns += ran;
                self.add_to_windows(domain, run_from, time_ns);
            }
        }
        self.report.idle_while_waiting_ns += idle_cpus.min(waiting) * span;
        self.now_ns = time_ns;
    }

    fn add_to_windows(&mut self, domain: usize, from_ns: u64, to_ns: u64) {
        let mut start = from_ns;
        while start < to_ns {
            let window = (start / self.sample_ns) as usize;
            let window_end = ((start / self.sample_ns) + 1) * self.sample_ns;
            let end = window_end.min(to_ns);
            if let Some(row) = self.window_ns.get_mut(window) {
                row[domain] += end - start;
            }
            start = end;
        }
    }

    fn handle(&mut self, happening: Happening) {
        match happening {
            Happening::EntryEnd(cpu) => {
                let entry = self.cpus[cpu as usize].entry.expect("entry ends");
                let thread = &mut self.threads[entry.thread];
                let kind = if thread.burst_left_ns == 0 {
                    if let Workload::Yielder { .. } = thread.workload {
                        EventKind::Yielded
                    } else {
                        EventKind::Blocked
                    }
                } else {
                    EventKind::BudgetExpired
                };
                self.end_entry(cpu, kind);
            }
            Happening::Action(index) => {
                self.next_action = index + 1;
                let (_, action) = self.actions[index];
                self.apply_action(action);
            }
            Happening::ThreadTimer(index) => self.thread_timer(index),
            Happening::CpuTimer(cpu) => {
                self.cpus[cpu as usize].timer_at_ns = None;
                self.tick(cpu);
            }
            Happening::PeriodicTick => {
                self.next_tick_ns += self.periodic_tick_ns.unwrap_or(u64::MAX);
                for cpu in 0..self.cpus.len() as u32 {
                    if self.cpus[cpu as usize].in_pool {
                        self.tick(cpu);
                        self.settle();
                    }
                }
            }
        }
    }

    /// Delivers a `Tick` on `cpu`.
    fn tick(&mut self, cpu: u32) {
        let (thread, ran_ns) = match self.cpus[cpu as usize].entry {
            Some(entry) if self.now_ns >= entry.start_ns => (
                Some(self.threads[entry.thread].id),
                self.now_ns - entry.start_ns,
            ),
            _ => (None, 0),
        };
        let event = Event {
            kind: EventKind::Tick,
            cpu: CpuId(cpu),
            thread,
            timestamp_ns: self.now_ns,
            ran_ns,
        };
        self.policy.on_event(&event);
        self.collect();
    }

    /// Ends the entry on `cpu` with `kind`, tells the policy, and queues the
    /// `pick_next` the contract calls for.
    fn end_entry(&mut self, cpu: u32, kind: EventKind) {
        let Some(entry) = self.cpus[cpu as usize].entry.take() else {
            return;
        };
        let ran_ns = self.now_ns.saturating_sub(entry.start_ns);
        let now_ns = self.now_ns;
        if self.record_trace && ran_ns > 0 {
            self.report.slices.push(Slice {
                cpu,
                thread: self.threads[entry.thread].id,
                domain: self.threads[entry.thread].domain,
                start_ns: entry.start_ns,
                end_ns: now_ns,
            });
        }
        let mut next_burst = false;
        let thread = &mut self.threads[entry.thread];
        thread.running_on = None;
        thread.last_cpu = Some(cpu);
        match kind {
            EventKind::Blocked => {
                thread.runnable = false;
                match thread.workload {
                    Workload::DutyCycle { sleep_ns, .. } => {
                        thread.wake_at_ns = Some(now_ns + sleep_ns);
                    }
                    Workload::Bursty {
                        sleep_min_ns,
                        sleep_max_ns,
                        ..
                    } => {
                        let sleep = self.rng.range(sleep_min_ns, sleep_max_ns);
                        self.threads[entry.thread].wake_at_ns = Some(now_ns + sleep);
                    }
                    // Periodic threads wake at their next release.
                    _ => {}
                }
            }
            EventKind::Yielded => next_burst = true,
            _ => {}
        }
        if next_burst {
            let mut thread = self.threads[entry.thread].clone();
            self.start_burst(&mut thread);
            self.threads[entry.thread] = thread;
        }
        let event = Event::new(
            kind,
            CpuId(cpu),
            self.threads[entry.thread].id,
            now_ns,
            ran_ns,
        );
        self.policy.on_event(&event);
        self.collect();
        if self.cpus[cpu as usize].in_pool {
            let empty = Event {
                kind: EventKind::QueueEmpty,
                cpu: CpuId(cpu),
                thread: None,
                timestamp_ns: now_ns,
                ran_ns: 0,
            };
            self.policy.on_event(&empty);
            self.collect();
            self.pick_pending.insert(cpu);
        }
    }

    /// A sleeping thread wakes, or a periodic thread releases a job.
    fn thread_timer(&mut self, index: usize) {
        let now_ns = self.now_ns;
        let thread = &mut self.threads[index];
        let mut wake = false;
        if thread.wake_at_ns.is_some_and(|t| t <= now_ns) {
            thread.wake_at_ns = None;
            wake = true;
        }
        if let (Some(release), Workload::Periodic { period_ns, work_ns }) =
            (thread.next_release_ns, thread.workload)
        {
            if release <= now_ns {
                // The previous job's deadline is now.
                if thread.burst_left_ns > 0 && (thread.runnable || thread.running_on.is_some()) {
                    thread.misses += 1;
                    let domain = thread.domain;
                    self.report.domains[domain].deadline_misses += 1;
                    if self.record_trace {
                        let cpu = self.threads[index].last_cpu.unwrap_or(0);
                        let name = self.report.domains[domain].name.clone();
                        self.report.marks.push(Mark {
                            cpu,
                            time_ns: now_ns,
                            what: format!("deadline miss {name}"),
                        });
                    }
                }
                let thread = &mut self.threads[index];
                thread.jobs += 1;
                thread.next_release_ns = Some(release + period_ns);
                if thread.runnable {
                    thread.burst_left_ns = thread.burst_left_ns.saturating_add(work_ns);
                } else {
                    thread.burst_left_ns = work_ns.max(1);
                    wake = true;
                }
            }
        }
        if !wake {
            return;
        }
        let thread = &mut self.threads[index];
        if thread.runnable {
            return;
        }
        thread.runnable = true;
        if !matches!(thread.workload, Workload::Periodic { .. }) {
            let mut copy = self.threads[index].clone();
            self.start_burst(&mut copy);
            self.threads[index] = copy;
        }
        let cpu = self.threads[index]
            .last_cpu
            .filter(|&c| self.cpus[c as usize].in_pool)
            .or_else(|| self.cpus.iter().position(|c| c.in_pool).map(|c| c as u32))
            .unwrap_or(0);
        let event = Event::new(
            EventKind::Woken,
            CpuId(cpu),
            self.threads[index].id,
            now_ns,
            0,
        );
        self.policy.on_event(&event);
        self.collect();
    }

    fn apply_action(&mut self, action: Action) {
        let now_ns = self.now_ns;
        match action {
            Action::AddCpu(n) => {
                if !self.cpus[n as usize].in_pool {
                    self.cpus[n as usize].in_pool = true;
                    self.policy.add_cpu(CpuId(n), now_ns);
                    self.collect();
                }
            }
            Action::RemoveCpu(n) => {
                if self.cpus[n as usize].in_pool {
                    self.cpus[n as usize].in_pool = false;
                    self.cpus[n as usize].timer_at_ns = None;
                    self.pick_pending.remove(&n);
                    self.policy.remove_cpu(CpuId(n), now_ns);
                    self.collect();
                    self.end_entry(n, EventKind::Evicted);
                }
            }
            Action::SetDomainParams(domain, params) => {
                if let Err(error) = self.policy.set_domain_params(domain, &params, now_ns) {
                    self.report
                        .action_errors
                        .push((now_ns, format!("{domain}: {error}")));
                }
                self.collect();
            }
            Action::SetPoolParams(params) => {
                if let Err(error) = self.policy.set_pool_params(&params) {
                    self.report.action_errors.push((now_ns, error.to_string()));
                }
                self.collect();
            }
            Action::SetSoftAffinity(thread, mask) => {
                let cpus = mask.map(mask_cpus);
                if let Err(error) = self
                    .policy
                    .set_soft_affinity(thread, cpus.as_deref(), now_ns)
                {
                    self.report.action_errors.push((now_ns, error.to_string()));
                }
                self.collect();
            }
            Action::SetAffinity(thread, mask) => {
                let cpus = mask.map(mask_cpus);
                match self.policy.set_affinity(thread, cpus.as_deref(), now_ns) {
                    Ok(()) => {
                        if let Some(&index) = self.by_id.get(&thread) {
                            self.threads[index].affinity = mask;
                        }
                    }
                    Err(error) => self.report.action_errors.push((now_ns, error.to_string())),
                }
                self.collect();
            }
        }
    }

    /// Moves the policy's decisions into the engine's queue.
    fn collect(&mut self) {
        self.policy.take_decisions(&mut self.buffer);
        self.decisions.extend(self.buffer.drain(..));
    }

    /// Applies decisions and makes the picks due until nothing is left.
    fn settle(&mut self) {
        let mut steps = 0;
        loop {
            steps += 1;
            if steps > MAX_STEPS_PER_INSTANT {
                self.protocol_error(
                    "the policy does not settle (decision loop): run stopped".into(),
                );
                self.decisions.clear();
                self.pick_pending.clear();
                self.aborted = true;
                return;
            }
            if let Some(decision) = self.decisions.pop_front() {
                self.apply(decision);
                continue;
            }
            if let Some(cpu) = self.pick_pending.pop_first() {
                let slot = &self.cpus[cpu as usize];
                if slot.in_pool && slot.entry.is_none() {
                    let dispatch = self.policy.pick_next(CpuId(cpu), self.now_ns);
                    self.collect();
                    if let Some(dispatch) = dispatch {
                        self.dispatch(cpu, dispatch);
                    }
                }
                continue;
            }
            return;
        }
    }

    fn apply(&mut self, decision: Decision) {
        match decision {
            Decision::Kick { cpu: CpuId(n) } => match self.cpus.get(n as usize) {
                Some(slot) if slot.in_pool => {
                    if slot.entry.is_none() {
                        self.pick_pending.insert(n);
                    }
                }
                _ => self.protocol_error(format!("kick of cpu {n}, not in the pool")),
            },
            Decision::Preempt { cpu: CpuId(n) } => match self.cpus.get(n as usize) {
                Some(slot) if slot.in_pool => {
                    if slot.entry.is_some() {
                        self.report.preemptions += 1;
                        if self.record_trace {
                            self.report.marks.push(Mark {
                                cpu: n,
                                time_ns: self.now_ns,
                                what: "preempt".into(),
                            });
                        }
                        self.end_entry(n, EventKind::BudgetExpired);
                    }
                }
                _ => self.protocol_error(format!("preemption of cpu {n}, not in the pool")),
            },
            Decision::Timer {
                cpu: CpuId(n),
                at_ns,
            } => match self.cpus.get_mut(n as usize) {
                Some(slot) if slot.in_pool => {
                    if self.periodic_tick_ns.is_none() {
                        slot.timer_at_ns = Some(at_ns);
                    }
                }
                _ => self.protocol_error(format!("timer on cpu {n}, not in the pool")),
            },
        }
    }

    /// Starts an entry, checking what the kernel would check.
    fn dispatch(&mut self, cpu: u32, dispatch: Dispatch) {
        let Some(&index) = self.by_id.get(&dispatch.thread) else {
            self.protocol_error(format!("dispatch of unknown {}", dispatch.thread));
            return;
        };
        let thread = &self.threads[index];
        if !thread.runnable {
            self.protocol_error(format!("dispatch of blocked {} on cpu {cpu}", thread.id));
            return;
        }
        if let Some(other) = thread.running_on {
            self.protocol_error(format!(
                "dispatch of {} on cpu {cpu} while it runs on cpu {other}",
                thread.id
            ));
            return;
        }
        if dispatch.budget_ns == 0 {
            self.protocol_error(format!("dispatch of {} with a zero budget", thread.id));
            return;
        }
        if let Some(mask) = thread.affinity {
            let in_pool = |n: u32| self.cpus.get(n as usize).is_some_and(|c| c.in_pool);
            let enforced = (0..64u32).any(|n| mask & (1 << n) != 0 && in_pool(n));
            if enforced && (cpu >= 64 || mask & (1 << cpu) == 0) {
                let what = format!(
                    "dispatch of {} on cpu {cpu}, outside its affinity {:?}",
                    thread.id,
                    mask_cpus(mask).iter().map(|c| c.0).collect::<Vec<_>>()
                );
                self.report.affinity_violations += 1;
                self.protocol_error(what);
            }
        }
        let thread = &self.threads[index];
        self.report.dispatches += 1;
        if thread.last_cpu.is_some_and(|last| last != cpu) {
            self.report.migrations += 1;
        }
        let slot = &mut self.cpus[cpu as usize];
        let start_ns = if slot.last_thread == Some(index) {
            self.now_ns
        } else {
            self.report.context_switches += 1;
            self.now_ns + self.switch_cost_ns
        };
        slot.last_thread = Some(index);
        slot.entry = Some(SimEntry {
            thread: index,
            start_ns,
            budget_ns: dispatch.budget_ns,
        });
        self.threads[index].running_on = Some(cpu);
    }

    fn protocol_error(&mut self, what: String) {
        // Keep the first 20 of a kind (the text before " on "/" of ").
        let kind = what.split(" thread").next().unwrap_or(&what).to_owned();
        let same = self
            .report
            .protocol_errors
            .iter()
            .filter(|e| e.contains(&kind))
            .count();
        if same < 20 {
            self.report
                .protocol_errors
                .push(format!("at {} ns: {what}", self.now_ns));
        }
    }

    fn finish(mut self) -> Report {
        let duration_ns = self.report.duration_ns;
        // Close the slices still running for the trace.
        if self.record_trace {
            for (n, cpu) in self.cpus.iter().enumerate() {
                if let Some(entry) = cpu.entry {
                    if duration_ns > entry.start_ns {
                        self.report.slices.push(Slice {
                            cpu: n as u32,
                            thread: self.threads[entry.thread].id,
                            domain: self.threads[entry.thread].domain,
                            start_ns: entry.start_ns,
                            end_ns: duration_ns,
                        });
                    }
                }
            }
        }
        for domain in &mut self.report.domains {
            domain.share_pct = if duration_ns == 0 {
                0.0
            } else {
                domain.cpu_ns as f64 * 100.0 / duration_ns as f64
            };
        }
        for thread in &self.threads {
            if matches!(thread.workload, Workload::Periodic { .. }) {
                // Jobs whose deadline passed within the run.
                self.report.domains[thread.domain].jobs += thread.jobs.saturating_sub(1);
            }
        }
        let sample_ns = self.sample_ns;
        self.report.samples = self
            .window_ns
            .iter()
            .enumerate()
            .map(|(w, row)| {
                let start = w as u64 * sample_ns;
                let width = sample_ns.min(duration_ns - start).max(1);
                row.iter()
                    .map(|&ns| ns as f64 * 100.0 / width as f64)
                    .collect()
            })
            .collect();
        self.report
    }
}
