//! Round robin: the template to copy when writing a policy. One FIFO of
//! runnable threads for the whole pool; every entry gets the same slice;
//! domains are ignored. A thread with a hard affinity waits in the FIFO
//! until a CPU it may run on asks; soft affinity is ignored (the trait's
//! default accepts it). Every line says what it does and why.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use crate::params::{self, ParamError, ParamKind, ParamSpec, ParamValue, Values};
use crate::types::*; // ids, events, decisions, parameters, errors
use crate::Policy;

type Outcome = Result<(), PolicyError>; // what thread changes return

/// The pool parameters this policy declares: name, range, default, help.
const POOL_PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "timeslice_ms",                       // the key in `key=value`
    kind: ParamKind::Int { min: 1, max: 1000 }, // parsed and range-checked for us
    default: ParamValue::Int(10),               // what a new pool has
    help: "budget of every entry (ms)",         // shown by `sched-param -p`
}];

/// Where a thread is, as far as this policy knows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Blocked,        // not runnable: waits for a `Woken` event
    Queued,         // in `queue`, waiting for a CPU
    Running(CpuId), // running an entry this policy dispatched, on that CPU
}

/// The round-robin policy.
pub struct RoundRobin {
    timeslice_ms: u32,                      // budget of every entry (pool parameter)
    queue: VecDeque<ThreadId>,              // runnable threads not running, oldest first
    threads: BTreeMap<ThreadId, State>,     // every thread of the pool
    affinity: BTreeMap<ThreadId, Affinity>, // hard affinities (absent: any CPU)
    cpus: BTreeMap<CpuId, bool>,            // every CPU: busy (running, or a pick is due)?
    decisions: Vec<Decision>,               // waiting for `take_decisions`
}

impl Default for RoundRobin {
    /// A round-robin policy with a 10 ms slice and no CPUs.
    fn default() -> Self {
        Self {
            timeslice_ms: 10,
            queue: VecDeque::new(),
            threads: BTreeMap::new(),
            affinity: BTreeMap::new(),
            cpus: BTreeMap::new(),
            decisions: Vec::new(),
        }
    }
}

impl RoundRobin {
    /// Whether `thread` may run on `cpu` (its affinity, see [`Affinity`]).
    fn allowed(&self, thread: ThreadId, cpu: CpuId) -> bool {
        self.affinity
            .get(&thread)
            .is_none_or(|a| a.allows(cpu, |c| self.cpus.contains_key(&c)))
    }

    /// Queues a runnable thread and kicks one idle CPU, if any, to run it.
    fn enqueue(&mut self, thread: ThreadId) {
        self.threads.insert(thread, State::Queued); // remember it waits
        self.queue.push_back(thread); // FIFO: behind everyone already waiting
        self.kick_for(thread);
    }

    /// Kicks one idle CPU that `thread` may run on, if any.
    fn kick_for(&mut self, thread: ThreadId) {
        let idle = self
            .cpus
            .iter()
            .find(|(&cpu, busy)| !**busy && self.allowed(thread, cpu));
        if let Some((&cpu, _)) = idle {
            self.cpus.insert(cpu, true); // one kick per idle CPU is enough
            self.decisions.push(Decision::Kick { cpu }); // the driver calls pick_next(cpu)
        }
    }

    /// After the pool or an affinity changed: preempts every thread running
    /// where it may no longer run, and kicks idle CPUs for waiting threads
    /// they may now take.
    fn enforce_affinity(&mut self) {
        let outside: Vec<CpuId> = self
            .threads
            .iter()
            .filter_map(|(&thread, state)| match *state {
                // (A CPU already gone ends its entry with `Evicted` anyway.)
                State::Running(cpu)
                    if self.cpus.contains_key(&cpu) && !self.allowed(thread, cpu) =>
                {
                    Some(cpu)
                }
                _ => None,
            })
            .collect();
        for cpu in outside {
            self.decisions.push(Decision::Preempt { cpu }); // its end event re-queues it
        }
        let waiting: Vec<ThreadId> = self.queue.iter().copied().collect();
        for thread in waiting {
            self.kick_for(thread);
        }
    }
}

impl Policy for RoundRobin {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn add_cpu(&mut self, cpu: CpuId, _now_ns: u64) {
        let work_waits = !self.queue.is_empty(); // anything for it to run?
        self.cpus.insert(cpu, work_waits); // busy if kicked right now
        if work_waits {
            self.decisions.push(Decision::Kick { cpu }); // the driver calls pick_next(cpu)
        }
        self.enforce_affinity(); // a broken affinity may hold again
    }

    fn remove_cpu(&mut self, cpu: CpuId, _now_ns: u64) {
        self.cpus.remove(&cpu); // its running thread comes back through `Evicted`
        self.enforce_affinity(); // an affinity may be broken now: any CPU will do
    }

    fn add_thread(&mut self, thread: ThreadId, _: DomainId, runnable: bool, _: u64) -> Outcome {
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
        self.affinity.remove(&thread);
        self.queue.retain(|&queued| queued != thread); // and never dispatch it
    }

    fn remove_domain(&mut self, _domain: DomainId, _now_ns: u64) {} // no per-domain state

    fn on_event(&mut self, event: &Event) {
        if event.kind == EventKind::QueueEmpty || event.kind.ends_entry() {
            if let Some(busy) = self.cpus.get_mut(&event.cpu) {
                *busy = true; // the driver calls pick_next(cpu) next: no kick needed
            }
        }
        let Some(thread) = event.thread else { return }; // ticks, queue-empty: done
        let state = self.threads.get(&thread).copied(); // `None`: unknown, ignored below
        match event.kind {
            EventKind::Woken if state == Some(State::Blocked) => self.enqueue(thread), // in line
            // Its entry ended but it is still runnable: to the tail.
            kind if kind.leaves_runnable() && matches!(state, Some(State::Running(_))) => {
                self.enqueue(thread);
            }
            kind if kind.leaves_blocked() && state.is_some() => {
                self.queue.retain(|&queued| queued != thread); // (suspended while queued)
                self.threads.insert(thread, State::Blocked); // waits for `Woken`
            }
            _ => {} // redundant events and ticks change nothing here
        }
    }

    fn pick_next(&mut self, cpu: CpuId, _now_ns: u64) -> Option<Dispatch> {
        // The oldest waiter that may run here, if any.
        let position = self.queue.iter().position(|&t| self.allowed(t, cpu));
        let thread = position.and_then(|i| self.queue.remove(i));
        if let Some(busy) = self.cpus.get_mut(&cpu) {
            *busy = thread.is_some(); // idle CPUs are the ones `enqueue` kicks
        }
        let thread = thread?; // nothing waits: the CPU idles
        self.threads.insert(thread, State::Running(cpu)); // it runs until its end event
        let budget_ns = u64::from(self.timeslice_ms) * 1_000_000; // the slice, in ns
        Some(Dispatch { thread, budget_ns })
    }

    fn take_decisions(&mut self, out: &mut Vec<Decision>) {
        out.append(&mut self.decisions); // hand everything over, keep nothing
    }

    fn set_affinity(&mut self, thread: ThreadId, cpus: Option<&[CpuId]>, _: u64) -> Outcome {
        if !self.threads.contains_key(&thread) {
            return Err(PolicyError::UnknownThread { thread }); // validate before changing
        }
        let affinity = Affinity::new(thread, cpus)?; // an empty set is refused
        if affinity.is_any() {
            self.affinity.remove(&thread); // no restriction: nothing to keep
        } else {
            self.affinity.insert(thread, affinity);
        }
        self.enforce_affinity(); // preempt it if it runs outside, kick a CPU it may use
        Ok(())
    }

    fn affinity_broken(&self, thread: ThreadId) -> bool {
        self.affinity
            .get(&thread)
            .is_some_and(|a| a.broken(|c| self.cpus.contains_key(&c)))
    }

    fn pool_param_specs(&self) -> &'static [ParamSpec] {
        POOL_PARAMS // no per-domain parameters: the default `domain_param_specs` is empty
    }

    fn set_pool_values(&mut self, values: &Values, _now_ns: u64) -> Result<(), ParamError> {
        // Values come parsed against POOL_PARAMS (declared key, in range):
        // nothing else to check, so apply.
        self.timeslice_ms = params::u32_or(values, "timeslice_ms", self.timeslice_ms);
        Ok(())
    }

    fn pool_values(&self) -> Values {
        let timeslice_ms = i64::from(self.timeslice_ms); // the only pool parameter
        alloc::vec![("timeslice_ms", ParamValue::Int(timeslice_ms))]
    }

    fn set_pool_params(&mut self, params: &PoolParams) -> Outcome {
        let PoolParams::RoundRobin { timeslice_ms } = *params else {
            return Err(PolicyError::WrongPolicy { policy: "rr" }); // not ours
        };
        if !(1..=1000).contains(&timeslice_ms) {
            return Err(PolicyError::InvalidTimeslice { timeslice_ms }); // refuse, change nothing
        }
        self.timeslice_ms = timeslice_ms; // valid: apply
        Ok(())
    }

    fn pool_params(&self) -> Option<PoolParams> {
        let timeslice_ms = self.timeslice_ms; // the typed form the simulator uses
        Some(PoolParams::RoundRobin { timeslice_ms })
    }
}
