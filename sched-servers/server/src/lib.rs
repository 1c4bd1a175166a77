//! The scheduler-server runtime: runs any [`Policy`] on metal. It binds the
//! pool's CPUs to a `Scheduler`, starts one agent thread per CPU (a system
//! thread on that CPU, so it runs ahead of dispatched threads whenever it has
//! work; started by a pool manager, the process is confined to the pool's
//! `Scheduler`, so its threads run only on the pool's CPUs, and the
//! kernel's watchdog stops one that runs `WATCHDOG_NS` without blocking or
//! dispatching: agents get the fault endpoint [`Pool::set_fault_endpoint`]
//! names, so the manager hears of it), and drives the policy from the kernel's event rings: every event
//! goes to `on_event`, every idle CPU gets `pick_next` from its own agent
//! (woken by whichever agent noticed), every `Preempt` decision becomes
//! `SchedulerPreempt`, issued by the agent of the CPU it concerns (a preemption from another CPU stalls the target CPU until it
//! enters the kernel; its own agent is already there). The policy state is
//! shared by the agents under one lock.
//!
//! Time is event time: the policy sees the kernel's timestamps, never a clock
//! of its own, exactly as in the simulator. A `Decision::Timer` programs the
//! CPU's kernel tick to fire when it is due, unless the next tick comes
//! within the policy's timer slack (then the tick falls back to a slow
//! safety period, [`TICK_NS`]); an idle CPU's agent asks the policy for work
//! only when the CPU's entry ended, its queue ran empty or the policy kicked
//! it, so an idle pool costs nothing but the safety tick.
//!
//! CPUs come and go while the pool runs ([`Pool::add_cpu`],
//! [`Pool::remove_cpu`]): that is how a pool manager grows and shrinks a pool
//! by negotiation. A pool can also start on a `Scheduler` it is given, so a
//! replacement server can take over a pool whose server failed.
//!
//! Hard affinity ([`Pool::set_affinity`]) is the policy's to keep; the
//! runtime checks it too: a dispatch the policy asks for outside a thread's
//! affinity (while a CPU of it is in the pool) is not made, but counted
//! ([`Pool::affinity_errors`]), and the policy hears the entry end at once
//! (`Evicted`, ran 0) so that it places the thread again. Soft affinity
//! ([`Pool::set_soft_affinity`]) is a preference, the policy's alone: the
//! runtime does not check it.
//!
//! Limits (documented, not hidden): at most one entry is queued per CPU at a
//! time (the agent refills on each entry end), and a timer is programmed from
//! the latest event time the server has seen (it fires late by however stale
//! that is).

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;
use tarn_rt::abi::sched::{Event as RingEvent, EventKind as RingKind};
use tarn_rt::abi::{CPtr, Error, ObjectType, Rights};
use tarn_rt::sched::RingReader;
use tarn_rt::{invoke, syscall, Resources, ThreadOptions};
use tarn_sched_servers::params::{self, ParamError, ParamSpec};
use tarn_sched_servers::{
    CpuId, Decision, DomainId, DomainParams, Event, EventKind, Policy, PolicyError, ThreadId,
};

mod serve;
pub use serve::{serve, REQUEST_ENDPOINT};

/// The safety tick every pool CPU gets while the policy has no timer due.
pub const TICK_NS: u64 = 10_000_000;
/// The shortest tick the kernel takes.
const MIN_TIMER_NS: u64 = 100_000;

/// One CPU of the pool.
#[derive(Clone, Copy, Debug)]
pub struct PoolCpu {
    /// Physical CPU index.
    pub index: u64,
    /// Its Cpu capability.
    pub cap: CPtr,
}

struct CpuState {
    index: u64,
    /// In the pool now (a removed CPU keeps its slot, agent, ring and
    /// notification for when it comes back; its agent just sleeps).
    member: bool,
    /// The server's `Cpu` capability (0 while not a member).
    cap: CPtr,
    /// The CPU's event ring, its frame and where that is mapped.
    ring: RingReader,
    frame: CPtr,
    ring_vaddr: u64,
    /// The thread of the entry queued or running there (the driver keeps
    /// one entry per CPU). Only that thread's end event frees the CPU: see
    /// [`State::absorb`].
    entry: Option<u64>,
    /// `pick_next` is due: the entry ended, the queue ran empty, the policy
    /// kicked the CPU, or it just joined.
    due: bool,
    /// The policy's timer for this CPU (event time, ns), if one is pending.
    timer_at: Option<u64>,
    /// The kernel tick's period now, and when it fires next (event time).
    period: u64,
    fires_at: u64,
    /// The policy's timer is earlier than the next tick: the CPU's own agent
    /// reprograms the tick (a remote one would interrupt the CPU).
    timer_dirty: bool,
    /// The policy asked to preempt this CPU: its own agent does it (a
    /// preemption from another CPU would make this one wait for it).
    preempt_requested: bool,
    /// The CPU's agent notification.
    notify: CPtr,
    /// The agent's TCB (0 until it is made).
    agent: CPtr,
}

struct State<P> {
    policy: P,
    scheduler: CPtr,
    /// Each thread's TCB capability and domain.
    tcbs: BTreeMap<u64, (CPtr, DomainId)>,
    cpus: Vec<CpuState>,
    now_ns: u64,
    decisions: Vec<Decision>,
    dispatch_errors: u64,
    /// Hard affinities the policy accepted (physical CPU indices).
    affinity: BTreeMap<u64, Vec<u64>>,
    /// Dispatches refused because they were outside the thread's affinity.
    affinity_errors: u64,
    /// Events seen, by ring event kind (index = kind).
    event_counts: [u64; 16],
    preempts: u64,
}

/// A running pool: the policy, its agents and its threads.
pub struct Pool<P: Policy + Send + 'static> {
    state: Arc<Mutex<State<P>>>,
    scheduler: CPtr,
    /// Where the next new CPU's ring frame is mapped.
    next_ring_vaddr: u64,
    /// What the caller's thread sleeps on while an agent holds the state.
    sleeper: CPtr,
    /// The fault endpoint agents are made with (0 = none): a pool
    /// manager's, so it hears of an agent that faults or that the kernel's
    /// watchdog stops.
    fault_endpoint: CPtr,
}

/// Why the pool could not start or an operation failed.
#[derive(Debug)]
pub enum ServerError {
    /// A kernel operation failed.
    Kernel(Error),
    /// The policy refused.
    Policy(PolicyError),
}

impl From<Error> for ServerError {
    fn from(error: Error) -> Self {
        ServerError::Kernel(error)
    }
}

impl From<PolicyError> for ServerError {
    fn from(error: PolicyError) -> Self {
        ServerError::Policy(error)
    }
}

fn convert(event: &RingEvent) -> Option<Event> {
    let kind = match RingKind::from_u32(event.kind)? {
        RingKind::Woken => EventKind::Woken,
        RingKind::Blocked => EventKind::Blocked,
        RingKind::Yielded => EventKind::Yielded,
        RingKind::BudgetExpired => EventKind::BudgetExpired,
        RingKind::Exited => EventKind::Exited,
        RingKind::Faulted => EventKind::Faulted,
        RingKind::Tick => EventKind::Tick,
        RingKind::Evicted | RingKind::Preempted => EventKind::Evicted,
        RingKind::QueueEmpty => EventKind::QueueEmpty,
    };
    Some(Event {
        kind,
        cpu: CpuId(event.cpu),
        thread: (event.thread != 0).then_some(ThreadId(event.thread)),
        timestamp_ns: event.timestamp_ns,
        ran_ns: event.ran_ns,
    })
}

/// Whether a ring event ends the CPU's current entry.
fn ends_entry(kind: u32) -> bool {
    matches!(
        RingKind::from_u32(kind),
        Some(
            RingKind::QueueEmpty
                | RingKind::Blocked
                | RingKind::Yielded
                | RingKind::BudgetExpired
                | RingKind::Exited
                | RingKind::Faulted
                | RingKind::Evicted
                | RingKind::Preempted
        )
    )
}

impl<P: Policy> State<P> {
    /// Feeds every event waiting in CPU `cpu`'s ring to the policy.
    fn drain(&mut self, cpu: u64) {
        let Some(i) = self.cpus.iter().position(|c| c.index == cpu) else {
            return;
        };
        while let Some(event) = self.cpus[i].ring.pop() {
            self.absorb(&event);
        }
        if self.cpus[i].ring.take_overflow() {
            self.resync(i);
        }
    }

    /// After events were lost to a full ring: asks the kernel whether CPU
    /// `i`'s entry is still queued there, and ends it for the driver and
    /// the policy if not (as an eviction, its run time unknown), so that
    /// the CPU is not left waiting for an end event that was dropped. (The
    /// policy may have missed other threads' wake-ups too; they are seen
    /// again at their next event.)
    fn resync(&mut self, i: usize) {
        let c = &self.cpus[i];
        let Some(thread) = c.entry else {
            return;
        };
        let Some(&(tcb, _)) = self.tcbs.get(&thread) else {
            return;
        };
        let queued_here = invoke::scheduler_query_thread(self.scheduler, tcb)
            .is_ok_and(|t| t.queued_on == c.index + 1);
        if !queued_here {
            let cpu = c.index;
            self.cpus[i].entry = None;
            self.cpus[i].due = true;
            self.policy.on_event(&Event {
                kind: EventKind::Evicted,
                cpu: CpuId(cpu as u32),
                thread: Some(ThreadId(thread)),
                timestamp_ns: self.now_ns,
                ran_ns: 0,
            });
        }
    }

    /// Feeds one ring event to the policy.
    fn absorb(&mut self, raw: &RingEvent) {
        self.now_ns = self.now_ns.max(raw.timestamp_ns);
        if let Some(count) = self.event_counts.get_mut(raw.kind as usize) {
            *count += 1;
        }
        if ends_entry(raw.kind) {
            if let Some(cpu) = self
                .cpus
                .iter_mut()
                .find(|c| c.member && c.index == u64::from(raw.cpu))
            {
                if raw.kind == RingKind::QueueEmpty as u32 {
                    if cpu.entry.is_some() {
                        // Stale: the kernel found the queue empty before the
                        // entry dispatched since arrived (every entry's end
                        // is reported with its thread, before the queue is
                        // found empty). Taking it as the entry's end would
                        // dispatch a second entry behind the first, and the
                        // policy would lose track of which thread runs.
                        return;
                    }
                    cpu.due = true;
                } else if cpu.entry == Some(raw.thread) {
                    cpu.entry = None;
                    cpu.due = true;
                }
            }
        }
        if raw.kind == RingKind::Tick as u32 {
            if let Some(i) = self
                .cpus
                .iter()
                .position(|c| c.member && c.index == u64::from(raw.cpu))
            {
                let now = self.now_ns;
                let slack = self.policy.timer_slack_ns();
                let c = &mut self.cpus[i];
                c.fires_at = now + c.period;
                if c.timer_at.is_some_and(|at| at <= now) {
                    c.timer_at = None;
                }
                let wanted = c
                    .timer_at
                    .is_some_and(|at| at.saturating_add(slack) < c.fires_at);
                if wanted || (c.timer_at.is_none() && c.period != TICK_NS) {
                    self.program_timer(i);
                }
            }
        }
        if let Some(event) = convert(raw) {
            self.policy.on_event(&event);
        }
    }

    /// Programs CPU `i`'s kernel tick: when its policy timer is due, or the
    /// safety period without one.
    fn program_timer(&mut self, i: usize) {
        let now = self.now_ns;
        let c = &mut self.cpus[i];
        let period = match c.timer_at {
            Some(at) => at.saturating_sub(now).clamp(MIN_TIMER_NS, TICK_NS),
            None => TICK_NS,
        };
        c.timer_dirty = false;
        if invoke::scheduler_set_tick(self.scheduler, c.index, period).is_ok() {
            c.period = period;
            c.fires_at = now + period;
        }
    }

    /// Gives every idle CPU its next entry and applies the policy's
    /// decisions; `here` is the CPU of the calling agent.
    fn fill(&mut self, here: Option<u64>) {
        self.policy.take_decisions(&mut self.decisions);
        for decision in core::mem::take(&mut self.decisions) {
            match decision {
                Decision::Preempt { cpu } => {
                    if let Some(c) = self
                        .cpus
                        .iter_mut()
                        .find(|c| c.member && c.index == u64::from(cpu.0) && c.entry.is_some())
                    {
                        c.preempt_requested = true;
                        c.due = true;
                        if Some(c.index) != here {
                            let _ = syscall::signal(c.notify);
                        }
                    }
                }
                Decision::Kick { cpu } => {
                    if let Some(c) = self
                        .cpus
                        .iter_mut()
                        .find(|c| c.member && c.index == u64::from(cpu.0))
                    {
                        c.due = true;
                    }
                }
                Decision::Timer { cpu, at_ns } => {
                    if let Some(i) = self
                        .cpus
                        .iter()
                        .position(|c| c.member && c.index == u64::from(cpu.0))
                    {
                        let slack = self.policy.timer_slack_ns();
                        let c = &mut self.cpus[i];
                        c.timer_at = Some(at_ns);
                        if at_ns.saturating_add(slack) < c.fires_at {
                            if Some(c.index) == here {
                                self.program_timer(i);
                            } else {
                                c.timer_dirty = true;
                                let _ = syscall::signal(c.notify);
                            }
                        }
                    }
                }
            }
        }
        if let Some(i) = self
            .cpus
            .iter()
            .position(|c| Some(c.index) == here && c.member && c.timer_dirty)
        {
            self.program_timer(i);
        }
        if let Some(c) = self
            .cpus
            .iter_mut()
            .find(|c| Some(c.index) == here && c.preempt_requested)
        {
            c.preempt_requested = false;
            if c.entry.is_some() {
                self.preempts += 1;
                let _ = invoke::scheduler_preempt(self.scheduler, c.index);
            }
        }
        let members = self.cpus.iter().filter(|c| c.member).count();
        for i in 0..self.cpus.len() {
            // An idle CPU asks the policy only when it is due (its entry
            // ended, its queue ran empty, or the policy kicked it): `None`
            // from `pick_next` means idle until the next kick. Asking
            // otherwise would make idle agents wake each other for nothing.
            let c = &self.cpus[i];
            if c.entry.is_some() || !c.member || !c.due {
                continue;
            }
            let index = c.index;
            // Every CPU is filled by its own agent: a dispatch to another CPU
            // would interrupt it (and, under QEMU's icount, make both wait for
            // each other); its agent is woken instead.
            if here.is_some_and(|h| h != index) || (here.is_none() && members > 1) {
                let _ = syscall::signal(c.notify);
                continue;
            }
            self.cpus[i].due = false;
            let Some(next) = self.policy.pick_next(CpuId(index as u32), self.now_ns) else {
                continue;
            };
            let Some(&(tcb, _)) = self.tcbs.get(&next.thread.0) else {
                continue;
            };
            if !self.may_run(next.thread.0, index) {
                // Defence in depth: the policy broke its affinity rule. The
                // entry is not made; the policy hears it ended at once and
                // places the thread again (the CPU asks again next time).
                self.affinity_errors += 1;
                self.policy.on_event(&Event {
                    kind: EventKind::Evicted,
                    cpu: CpuId(index as u32),
                    thread: Some(next.thread),
                    timestamp_ns: self.now_ns,
                    ran_ns: 0,
                });
                self.cpus[i].due = true;
                continue;
            }
            match invoke::scheduler_dispatch(self.scheduler, index, tcb, next.budget_ns.max(1)) {
                Ok(()) => self.cpus[i].entry = Some(next.thread.0),
                Err(_) => {
                    // The thread cannot run (released, stopped or destroyed
                    // meanwhile): the policy hears it exited, and stops
                    // picking it until it is woken again.
                    self.dispatch_errors += 1;
                    self.policy.on_event(&Event {
                        kind: EventKind::Exited,
                        cpu: CpuId(index as u32),
                        thread: Some(next.thread),
                        timestamp_ns: self.now_ns,
                        ran_ns: 0,
                    });
                    self.cpus[i].due = true;
                }
            }
        }
    }
}

impl<P: Policy> State<P> {
    /// An affinity request for thread `thread_id` (CPUs as physical
    /// indices, `None` for none) in the policy's terms, or the refusal of
    /// a thread the pool does not have.
    fn affinity_request(
        &self,
        thread_id: u64,
        cpus: Option<&[u64]>,
    ) -> Result<Option<Vec<CpuId>>, ServerError> {
        if !self.tcbs.contains_key(&thread_id) {
            return Err(ServerError::Policy(PolicyError::UnknownThread {
                thread: ThreadId(thread_id),
            }));
        }
        Ok(cpus.map(|cpus| {
            cpus.iter()
                .filter_map(|&cpu| u32::try_from(cpu).ok().map(CpuId))
                .collect()
        }))
    }

    /// Whether `thread` may run on CPU `index` under the affinity the policy
    /// accepted: in its set, or none of its set is in the pool.
    fn may_run(&self, thread: u64, index: u64) -> bool {
        self.affinity.get(&thread).is_none_or(|set| {
            set.contains(&index)
                || !set
                    .iter()
                    .any(|&cpu| self.cpus.iter().any(|c| c.index == cpu && c.member))
        })
    }
}

/// Takes the shared state. Agents and the request thread run on different
/// CPUs (or the same): a busy lock is waited for by sleeping briefly, never
/// by spinning, which would steal the CPU from the thread dispatched there,
/// or from the holder itself when it is on the same CPU.
fn lock<'a, P>(state: &'a Mutex<State<P>>, sleeper: CPtr) -> spin::MutexGuard<'a, State<P>> {
    loop {
        if let Some(guard) = state.try_lock() {
            return guard;
        }
        let _ = tarn_rt::sleep(sleeper, LOCK_BACKOFF_NS);
    }
}

/// How long a contending agent sleeps before trying the lock again.
const LOCK_BACKOFF_NS: u64 = 20_000;

fn agent<P: Policy + Send + 'static>(
    state: Arc<Mutex<State<P>>>,
    cpu: u64,
    notify: CPtr,
    sleeper: CPtr,
) {
    loop {
        if syscall::wait(notify, 0).is_err() {
            return;
        }
        let mut s = lock(&state, sleeper);
        s.drain(cpu);
        if s.cpus.iter().any(|c| c.index == cpu && c.member) {
            s.fill(Some(cpu));
        }
    }
}

impl<P: Policy + Send + 'static> Pool<P> {
    /// Starts a pool on `scheduler` (a new one if `None`: a pool manager
    /// passes its own so that a replacement server can take the pool over)
    /// and adds `cpus` as [`Pool::add_cpu`] does. Ring frames are mapped from
    /// `ring_vaddr` on (one page per CPU, inside the runtime's free window).
    pub fn start(
        res: &mut Resources,
        policy: P,
        scheduler: Option<CPtr>,
        cpus: &[PoolCpu],
        ring_vaddr: u64,
    ) -> Result<Self, ServerError> {
        let scheduler = match scheduler {
            Some(cap) => cap,
            None => res.create(ObjectType::Scheduler, 0)?,
        };
        let state = Arc::new(Mutex::new(State {
            policy,
            scheduler,
            tcbs: BTreeMap::new(),
            cpus: Vec::new(),
            now_ns: 0,
            decisions: Vec::new(),
            dispatch_errors: 0,
            affinity: BTreeMap::new(),
            affinity_errors: 0,
            event_counts: [0; 16],
            preempts: 0,
        }));
        let mut pool = Pool {
            state,
            scheduler,
            next_ring_vaddr: ring_vaddr,
            sleeper: res.create(ObjectType::Notification, 0)?,
            fault_endpoint: 0,
        };
        for &cpu in cpus {
            pool.add_cpu(res, cpu)?;
        }
        Ok(pool)
    }

    /// Agents made from now on report their faults (a crash, or the
    /// kernel's watchdog stopping one that spins) to `endpoint` (a slot of
    /// this process; 0 = none).
    pub fn set_fault_endpoint(&mut self, endpoint: CPtr) {
        self.fault_endpoint = endpoint;
    }

    /// Takes CPU `cpu` into the pool: binds it to the `Scheduler` with its
    /// ring and agent (made the first time this CPU joins), turns its tick
    /// on, and hands it to the policy.
    pub fn add_cpu(&mut self, res: &mut Resources, cpu: PoolCpu) -> Result<(), ServerError> {
        let known = {
            let s = lock(&self.state, self.sleeper);
            if s.cpus.iter().any(|c| c.index == cpu.index && c.member) {
                return Err(ServerError::Kernel(Error::IllegalState));
            }
            s.cpus
                .iter()
                .find(|c| c.index == cpu.index)
                .map(|c| (c.notify, c.frame, c.ring_vaddr, c.agent))
        };
        let (notify, frame, frame_vaddr, agent_tcb) = match known {
            Some((notify, frame, vaddr, agent)) => (notify, frame, vaddr, agent),
            None => {
                let vaddr = self.next_ring_vaddr;
                let frame = res.create(ObjectType::Frame4K, 0)?;
                invoke::frame_map(
                    frame,
                    tarn_rt::layout::slot::ROOT_VSPACE,
                    vaddr,
                    Rights::READ.union(Rights::WRITE),
                )?;
                self.next_ring_vaddr += 4096;
                let notify = res.create(ObjectType::Notification, 0)?;
                (notify, frame, vaddr, 0)
            }
        };
        invoke::scheduler_bind_cpu(self.scheduler, cpu.cap, frame, notify)?;
        // Binding zeroes the ring: read it from the start again.
        let ring = RingReader::new(frame_vaddr).ok_or(Error::InvalidArgument)?;
        if let Err(error) = invoke::scheduler_set_tick(self.scheduler, cpu.index, TICK_NS) {
            let _ = invoke::scheduler_unbind_cpu(self.scheduler, cpu.cap);
            return Err(error.into());
        }
        {
            let mut s = lock(&self.state, self.sleeper);
            let now = s.now_ns;
            let slot = CpuState {
                index: cpu.index,
                member: true,
                cap: cpu.cap,
                ring,
                frame,
                ring_vaddr: frame_vaddr,
                entry: None,
                due: true,
                timer_at: None,
                period: TICK_NS,
                fires_at: now + TICK_NS,
                timer_dirty: false,
                preempt_requested: false,
                notify,
                agent: agent_tcb,
            };
            match s.cpus.iter_mut().find(|c| c.index == cpu.index) {
                Some(c) => *c = slot,
                None => s.cpus.push(slot),
            }
            s.policy.add_cpu(CpuId(cpu.index as u32), now);
        }
        if agent_tcb != 0 {
            // The CPU comes back: its agent, confined to the pool's CPUs, was
            // moved off it when it left; it fills this CPU from this CPU
            // again (from another one it would race the CPU's own queue
            // checks, and interrupt it for every dispatch).
            let _ = invoke::tcb_set_affinity(agent_tcb, cpu.index);
        } else {
            let shared = self.state.clone();
            let sleeper = res.create(ObjectType::Notification, 0)?;
            let options = ThreadOptions {
                cpu: Some(cpu.index),
                fault_endpoint: self.fault_endpoint,
                ..ThreadOptions::default()
            };
            let index = cpu.index;
            let thread =
                tarn_rt::spawn_thread(res, options, move || agent(shared, index, notify, sleeper))?;
            let mut s = lock(&self.state, self.sleeper);
            if let Some(c) = s.cpus.iter_mut().find(|c| c.index == index) {
                c.agent = thread.tcb;
            }
        }
        let _ = syscall::signal(notify);
        Ok(())
    }

    /// Gives CPU `index` back: unbinds it (its queue is evicted; the policy
    /// sees the evictions while the CPU is still its own), then the policy
    /// moves the CPU's threads to the pool's other CPUs, and the CPU's
    /// capability is deleted. Its agent sleeps until the CPU returns.
    /// Returns the slot the capability was in (empty now, for the caller's
    /// slot allocator).
    pub fn remove_cpu(&self, index: u64) -> Result<CPtr, ServerError> {
        let mut s = lock(&self.state, self.sleeper);
        let Some(i) = s.cpus.iter().position(|c| c.index == index && c.member) else {
            return Err(ServerError::Kernel(Error::InvalidArgument));
        };
        let cap = s.cpus[i].cap;
        invoke::scheduler_unbind_cpu(self.scheduler, cap)?;
        s.drain(index);
        let now = s.now_ns;
        s.policy.remove_cpu(CpuId(index as u32), now);
        let c = &mut s.cpus[i];
        c.member = false;
        c.entry = None;
        c.due = false;
        c.timer_at = None;
        c.preempt_requested = false;
        c.cap = 0;
        let _ = invoke::cnode_delete(tarn_rt::layout::slot::ROOT_CNODE, cap);
        s.fill(None);
        Ok(cap)
    }

    /// The CPUs in the pool now.
    pub fn cpus(&self) -> Vec<u64> {
        let s = lock(&self.state, self.sleeper);
        s.cpus
            .iter()
            .filter(|c| c.member)
            .map(|c| c.index)
            .collect()
    }

    /// Adds thread `tcb` (in the caller's CSpace) to the pool as `thread_id`
    /// of `domain`; it is adopted, so it runs only when the policy says.
    pub fn add_thread(
        &self,
        tcb: CPtr,
        thread_id: u64,
        domain: DomainId,
    ) -> Result<(), ServerError> {
        {
            let mut s = lock(&self.state, self.sleeper);
            let now = s.now_ns;
            s.policy
                .add_thread(ThreadId(thread_id), domain, false, now)?;
            s.tcbs.insert(thread_id, (tcb, domain));
            // The policy may want to act (kick an idle CPU) on the new thread.
            s.fill(None);
        }
        // Adoption reports `Woken` for a runnable thread: the agents take it from there.
        invoke::scheduler_adopt(self.scheduler, tcb, thread_id)?;
        Ok(())
    }

    /// Sets a domain's parameters (validated by the policy; nothing changes
    /// on error).
    pub fn set_domain_params(
        &self,
        domain: DomainId,
        params: &DomainParams,
    ) -> Result<(), ServerError> {
        let mut s = lock(&self.state, self.sleeper);
        let now = s.now_ns;
        s.policy.set_domain_params(domain, params, now)?;
        s.fill(None);
        Ok(())
    }

    /// Sets some of a domain's parameters from `key=value` text: parsed
    /// against the policy's declarations, then checked and applied (or
    /// refused) by the policy. One error naming the key; nothing changes on
    /// error.
    pub fn set_domain_text(&self, domain: DomainId, text: &str) -> Result<(), ParamError> {
        let mut s = lock(&self.state, self.sleeper);
        let values = params::parse_values(s.policy.domain_param_specs(), text)?;
        let now = s.now_ns;
        s.policy.set_domain_values(domain, &values, now)?;
        s.fill(None);
        Ok(())
    }

    /// Sets some of the pool's parameters from `key=value` text.
    pub fn set_pool_text(&self, text: &str) -> Result<(), ParamError> {
        let mut s = lock(&self.state, self.sleeper);
        let values = params::parse_values(s.policy.pool_param_specs(), text)?;
        let now = s.now_ns;
        s.policy.set_pool_values(&values, now)?;
        s.fill(None);
        Ok(())
    }

    /// A domain's parameters as `key=value` text.
    pub fn domain_text(&self, domain: DomainId) -> String {
        params::format_values(&lock(&self.state, self.sleeper).policy.domain_values(domain))
    }

    /// The pool's parameters as `key=value` text.
    pub fn pool_text(&self) -> String {
        params::format_values(&lock(&self.state, self.sleeper).policy.pool_values())
    }

    /// The policy's name and its declared domain and pool parameters.
    pub fn policy_info(&self) -> (&'static str, &'static [ParamSpec], &'static [ParamSpec]) {
        let s = lock(&self.state, self.sleeper);
        (
            s.policy.name(),
            s.policy.domain_param_specs(),
            s.policy.pool_param_specs(),
        )
    }

    /// Releases thread `thread_id`: it leaves the policy and returns to the
    /// system FIFO, and the pool's TCB capability to it is deleted; the
    /// domain's last thread takes the domain's state in the policy with it
    /// (domains come and go for as long as the pool runs). Returns the slot
    /// that capability was in (empty now, for the caller's slot allocator),
    /// also when the release itself failed.
    pub fn remove_thread(&self, thread_id: u64) -> Result<CPtr, (CPtr, ServerError)> {
        let mut s = lock(&self.state, self.sleeper);
        let (tcb, domain) = s
            .tcbs
            .remove(&thread_id)
            .ok_or((0, ServerError::Kernel(Error::InvalidCapability)))?;
        s.affinity.remove(&thread_id);
        let now = s.now_ns;
        s.policy.remove_thread(ThreadId(thread_id), now);
        if !s.tcbs.values().any(|&(_, d)| d == domain) {
            s.policy.remove_domain(domain, now);
        }
        let released = invoke::scheduler_release(self.scheduler, tcb);
        let _ = invoke::cnode_delete(tarn_rt::layout::slot::ROOT_CNODE, tcb);
        s.fill(None);
        released.map(|()| tcb).map_err(|e| (tcb, e.into()))
    }

    /// The TCB capability of thread `thread_id`, if it is in the pool.
    pub fn thread(&self, thread_id: u64) -> Option<CPtr> {
        lock(&self.state, self.sleeper)
            .tcbs
            .get(&thread_id)
            .map(|&(tcb, _)| tcb)
    }

    /// Sets the pool's parameters (validated by the policy).
    pub fn set_pool_params(
        &self,
        params: &tarn_sched_servers::PoolParams,
    ) -> Result<(), ServerError> {
        let mut s = lock(&self.state, self.sleeper);
        s.policy.set_pool_params(params)?;
        s.fill(None);
        Ok(())
    }

    /// Sets thread `thread_id`'s hard affinity to the CPUs (physical
    /// indices) `cpus`, `None` for every CPU of the pool: the policy applies
    /// it (moving or preempting the thread) or refuses it, and then nothing
    /// changes. CPUs not in the pool are ignored; when none of the set is
    /// in the pool the thread runs on any (see the policy SDK).
    pub fn set_affinity(&self, thread_id: u64, cpus: Option<&[u64]>) -> Result<(), ServerError> {
        let mut s = lock(&self.state, self.sleeper);
        let ids = s.affinity_request(thread_id, cpus)?;
        let now = s.now_ns;
        s.policy
            .set_affinity(ThreadId(thread_id), ids.as_deref(), now)?;
        match cpus {
            Some(cpus) => s.affinity.insert(thread_id, cpus.to_vec()),
            None => s.affinity.remove(&thread_id),
        };
        s.fill(None);
        Ok(())
    }

    /// Sets thread `thread_id`'s soft affinity to the CPUs (physical
    /// indices) `cpus`, `None` for no preference: the policy prefers them
    /// where they meet the hard affinity, or ignores them (see the policy
    /// SDK); an empty set is refused and nothing changes.
    pub fn set_soft_affinity(
        &self,
        thread_id: u64,
        cpus: Option<&[u64]>,
    ) -> Result<(), ServerError> {
        let mut s = lock(&self.state, self.sleeper);
        let ids = s.affinity_request(thread_id, cpus)?;
        let now = s.now_ns;
        s.policy
            .set_soft_affinity(ThreadId(thread_id), ids.as_deref(), now)?;
        s.fill(None);
        Ok(())
    }

    /// Whether thread `thread_id`'s affinity is broken (none of its CPUs is
    /// in the pool, so it runs on any): ask after removing a CPU.
    pub fn affinity_broken(&self, thread_id: u64) -> bool {
        lock(&self.state, self.sleeper)
            .policy
            .affinity_broken(ThreadId(thread_id))
    }

    /// Dispatches refused because the policy chose a CPU outside the
    /// thread's affinity (0 with a correct policy).
    pub fn affinity_errors(&self) -> u64 {
        lock(&self.state, self.sleeper).affinity_errors
    }

    /// Dispatch calls the kernel refused (isolation or state errors; 0 in a
    /// healthy pool).
    pub fn dispatch_errors(&self) -> u64 {
        lock(&self.state, self.sleeper).dispatch_errors
    }

    /// Events seen by kind (index = `tarn_ipc_schema::sched::EventKind` value)
    /// and preemptions requested: for diagnostics.
    pub fn counters(&self) -> ([u64; 16], u64) {
        let s = lock(&self.state, self.sleeper);
        (s.event_counts, s.preempts)
    }

    /// The pool's Scheduler capability.
    pub fn scheduler(&self) -> CPtr {
        self.scheduler
    }

    /// Wakes every agent (e.g. after adding threads).
    pub fn kick(&self) {
        let s = lock(&self.state, self.sleeper);
        for c in s.cpus.iter().filter(|c| c.member) {
            let _ = syscall::signal(c.notify);
        }
    }
}
