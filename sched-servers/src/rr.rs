//! Round robin: the template to copy when writing a policy. One FIFO of
//! runnable threads for the whole pool; every entry gets the same slice.
//! Domains are ignored. Every line says what it does and why.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use crate::types::{
    CpuId, Decision, Dispatch, DomainId, DomainParams, Event, EventKind, PolicyError, PoolParams,
    ThreadId,
};
use crate::Policy;

/// Where a thread is, as far as this policy knows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not runnable: waits for a `Woken` event.
    Blocked,
    /// In `queue`, waiting for a CPU.
    Queued,
    /// Running an entry this policy dispatched.
    Running,
}

/// The round-robin policy.
pub struct RoundRobin {
    /// Budget of every entry; a pool parameter.
    timeslice_ms: u32,
    /// Runnable threads not running, oldest first.
    queue: VecDeque<ThreadId>,
    /// Every thread of the pool and its state.
    threads: BTreeMap<ThreadId, State>,
    /// Every CPU of the pool: `true` while it runs an entry or is about to be
    /// asked `pick_next` (so it needs no kick).
    cpus: BTreeMap<CpuId, bool>,
    /// Decisions waiting for `take_decisions`.
    decisions: Vec<Decision>,
}

impl RoundRobin {
    /// A round-robin policy with a 10 ms slice and no CPUs.
    pub fn new() -> Self {
        Self {
            timeslice_ms: 10,
            queue: VecDeque::new(),
            threads: BTreeMap::new(),
            cpus: BTreeMap::new(),
            decisions: Vec::new(),
        }
    }

    /// Queues a runnable thread and kicks one idle CPU, if any, to run it.
    fn enqueue(&mut self, thread: ThreadId) {
        self.threads.insert(thread, State::Queued); // remember it waits
        self.queue.push_back(thread); // FIFO: behind everyone already waiting
        if let Some((&cpu, busy)) = self.cpus.iter_mut().find(|(_, busy)| !**busy) {
            *busy = true; // one kick per idle CPU is enough
            self.decisions.push(Decision::Kick { cpu }); // driver calls pick_next(cpu)
        }
    }
}

impl Default for RoundRobin {
    fn default() -> Self {
        Self::new()
    }
}

impl Policy for RoundRobin {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn add_cpu(&mut self, cpu: CpuId, _now_ns: u64) {
        self.cpus.insert(cpu, !self.queue.is_empty()); // busy if it gets a kick now
        if !self.queue.is_empty() {
            self.decisions.push(Decision::Kick { cpu }); // work is waiting: take it
        }
    }

    fn remove_cpu(&mut self, cpu: CpuId, _now_ns: u64) {
        self.cpus.remove(&cpu); // its running thread comes back through `Evicted`
    }

    fn add_thread(
        &mut self,
        thread: ThreadId,
        _domain: DomainId,
        runnable: bool,
        _now_ns: u64,
    ) -> Result<(), PolicyError> {
        if self.threads.contains_key(&thread) {
            return Err(PolicyError::DuplicateThread { thread }); // validate before changing anything
        }
        self.threads.insert(thread, State::Blocked); // known from now on
        if runnable {
            self.enqueue(thread); // runnable threads wait in the FIFO
        }
        Ok(())
    }

    fn remove_thread(&mut self, thread: ThreadId, _now_ns: u64) {
        self.threads.remove(&thread); // forget it: later events are ignored
        self.queue.retain(|&queued| queued != thread); // and never dispatch it
    }

    fn remove_domain(&mut self, _domain: DomainId, _now_ns: u64) {} // no per-domain state

    fn on_event(&mut self, event: &Event) {
        if matches!(event.kind, EventKind::QueueEmpty) || event.kind.ends_entry() {
            if let Some(busy) = self.cpus.get_mut(&event.cpu) {
                *busy = true; // the driver calls pick_next(cpu) next: no kick needed
            }
        }
        let Some(thread) = event.thread else { return }; // ticks and queue-empty: done
        let Some(&state) = self.threads.get(&thread) else {
            return;
        }; // unknown: ignore
        match event.kind {
            EventKind::Woken if state == State::Blocked => self.enqueue(thread), // back in line
            EventKind::Yielded | EventKind::BudgetExpired | EventKind::Evicted
                if state == State::Running =>
            {
                self.enqueue(thread)
            } // still runnable: to the tail
            EventKind::Blocked | EventKind::Faulted => {
                self.threads.insert(thread, State::Blocked); // waits for `Woken`
            }
            EventKind::Exited => self.remove_thread(thread, event.timestamp_ns), // gone for good
            _ => {} // redundant events and ticks change nothing here
        }
    }

    fn pick_next(&mut self, cpu: CpuId, _now_ns: u64) -> Option<Dispatch> {
        let thread = self.queue.pop_front(); // the oldest waiter, if any
        if let Some(busy) = self.cpus.get_mut(&cpu) {
            *busy = thread.is_some(); // idle CPUs are the ones `enqueue` kicks
        }
        let thread = thread?; // nothing waits: the CPU idles
        self.threads.insert(thread, State::Running); // it runs until its end event
        let budget_ns = u64::from(self.timeslice_ms) * 1_000_000; // slices are in ms
        Some(Dispatch { thread, budget_ns })
    }

    fn take_decisions(&mut self, out: &mut Vec<Decision>) {
        out.append(&mut self.decisions); // hand everything over, keep nothing
    }

    fn set_domain_params(
        &mut self,
        _domain: DomainId,
        _params: &DomainParams,
        _now_ns: u64,
    ) -> Result<(), PolicyError> {
        Err(PolicyError::WrongPolicy { policy: "rr" }) // round robin has no domain parameters
    }

    fn domain_params(&self, _domain: DomainId) -> Option<DomainParams> {
        None // nothing per domain
    }

    fn set_pool_params(&mut self, params: &PoolParams) -> Result<(), PolicyError> {
        let PoolParams::RoundRobin { timeslice_ms } = *params else {
            return Err(PolicyError::WrongPolicy { policy: "rr" }); // not ours
        };
        if !(1..=1000).contains(&timeslice_ms) {
            return Err(PolicyError::InvalidTimeslice { timeslice_ms }); // refuse, change nothing
        }
        self.timeslice_ms = timeslice_ms; // valid: apply
        Ok(())
    }

    fn pool_params(&self) -> PoolParams {
        PoolParams::RoundRobin {
            timeslice_ms: self.timeslice_ms,
        }
    }
}
