//! `prio`: fixed-priority scheduling. Each domain has a priority (`prio`,
//! 0..=99, default 0); a CPU always runs the highest-priority runnable
//! thread, threads of equal priority share round robin with the pool's
//! `timeslice_ms`, and a thread that wakes above a running one preempts it.
//! A lower priority runs only on CPUs the higher ones leave idle.
//!
//! A policy crate of its own, outside Tarn's workspace: the policy (this
//! file, `no_std`), its simulator tests (`tests/`), a simulator binary
//! (`src/bin/prio-sim.rs`) and a server binary (`server/`, built for
//! `x86_64-unknown-none`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cmp::Reverse;

use tarn_sched_servers::params::{self, ParamError, ParamKind, ParamSpec, ParamValue, Values};
use tarn_sched_servers::{
    CpuId, Decision, Dispatch, DomainId, Event, EventKind, Policy, PolicyError, ThreadId,
};

const DOMAIN_PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "prio",
    kind: ParamKind::Int { min: 0, max: 99 },
    default: ParamValue::Int(0),
    help: "priority: higher runs first, equal ones share round robin",
}];

const POOL_PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "timeslice_ms",
    kind: ParamKind::Int { min: 1, max: 1000 },
    default: ParamValue::Int(10),
    help: "budget of every entry (ms)",
}];

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Blocked,
    /// Waiting in the queue under this key.
    Queued(QueueKey),
    Running,
}

/// Queue order: highest priority first, then first come first served.
type QueueKey = (Reverse<u32>, u64);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cpu {
    /// Nothing to run: kicked when work arrives.
    Idle,
    /// `pick_next` is due (kicked, or an entry just ended).
    Picking,
    /// Running a thread of this priority; `preempted` once asked to stop.
    Running { prio: u32, preempted: bool },
}

/// The fixed-priority policy.
pub struct Prio {
    timeslice_ms: u32,
    prio: BTreeMap<DomainId, u32>,
    threads: BTreeMap<ThreadId, (DomainId, State)>,
    queue: BTreeMap<QueueKey, ThreadId>,
    next_seq: u64,
    cpus: BTreeMap<CpuId, Cpu>,
    decisions: Vec<Decision>,
}

impl Default for Prio {
    fn default() -> Self {
        Self {
            timeslice_ms: 10,
            prio: BTreeMap::new(),
            threads: BTreeMap::new(),
            queue: BTreeMap::new(),
            next_seq: 0,
            cpus: BTreeMap::new(),
            decisions: Vec::new(),
        }
    }
}

impl Prio {
    fn prio_of(&self, domain: DomainId) -> u32 {
        self.prio.get(&domain).copied().unwrap_or(0)
    }

    /// Queues a runnable thread, then finds it a CPU: an idle one, or the
    /// one running the lowest priority below its own.
    fn enqueue(&mut self, thread: ThreadId) {
        let Some(&(domain, _)) = self.threads.get(&thread) else {
            return;
        };
        let prio = self.prio_of(domain);
        let key = (Reverse(prio), self.next_seq);
        self.next_seq += 1;
        self.queue.insert(key, thread);
        self.threads.insert(thread, (domain, State::Queued(key)));
        self.find_cpu(prio);
    }

    fn find_cpu(&mut self, prio: u32) {
        if let Some((&cpu, state)) = self.cpus.iter_mut().find(|(_, c)| **c == Cpu::Idle) {
            *state = Cpu::Picking;
            self.decisions.push(Decision::Kick { cpu });
            return;
        }
        let victim = self
            .cpus
            .iter()
            .filter_map(|(&cpu, c)| match *c {
                Cpu::Running {
                    prio: running,
                    preempted: false,
                } if running < prio => Some((running, cpu)),
                _ => None,
            })
            .min();
        if let Some((running, cpu)) = victim {
            self.cpus.insert(
                cpu,
                Cpu::Running {
                    prio: running,
                    preempted: true,
                },
            );
            self.decisions.push(Decision::Preempt { cpu });
        }
    }

    fn dequeue(&mut self, thread: ThreadId) {
        if let Some(&(_, State::Queued(key))) = self.threads.get(&thread) {
            self.queue.remove(&key);
        }
    }
}

impl Policy for Prio {
    fn name(&self) -> &'static str {
        "prio"
    }

    fn add_cpu(&mut self, cpu: CpuId, _now_ns: u64) {
        if self.queue.is_empty() {
            self.cpus.insert(cpu, Cpu::Idle);
        } else {
            self.cpus.insert(cpu, Cpu::Picking);
            self.decisions.push(Decision::Kick { cpu });
        }
    }

    fn remove_cpu(&mut self, cpu: CpuId, _now_ns: u64) {
        self.cpus.remove(&cpu);
    }

    fn add_thread(
        &mut self,
        thread: ThreadId,
        domain: DomainId,
        runnable: bool,
        _now_ns: u64,
    ) -> Result<(), PolicyError> {
        if self.threads.contains_key(&thread) {
            return Err(PolicyError::DuplicateThread { thread });
        }
        self.threads.insert(thread, (domain, State::Blocked));
        if runnable {
            self.enqueue(thread);
        }
        Ok(())
    }

    fn remove_thread(&mut self, thread: ThreadId, _now_ns: u64) {
        self.dequeue(thread);
        self.threads.remove(&thread);
    }

    fn remove_domain(&mut self, domain: DomainId, now_ns: u64) {
        let gone: Vec<ThreadId> = self
            .threads
            .iter()
            .filter(|(_, (d, _))| *d == domain)
            .map(|(&t, _)| t)
            .collect();
        for thread in gone {
            self.remove_thread(thread, now_ns);
        }
        self.prio.remove(&domain);
    }

    fn on_event(&mut self, event: &Event) {
        if event.kind == EventKind::QueueEmpty || event.kind.ends_entry() {
            if let Some(cpu) = self.cpus.get_mut(&event.cpu) {
                *cpu = Cpu::Picking;
            }
        }
        let Some(thread) = event.thread else { return };
        let Some(&(_, state)) = self.threads.get(&thread) else {
            return;
        };
        match event.kind {
            EventKind::Woken if state == State::Blocked => self.enqueue(thread),
            kind if kind.leaves_runnable() && state == State::Running => self.enqueue(thread),
            kind if kind.leaves_blocked() => {
                self.dequeue(thread);
                if let Some(entry) = self.threads.get_mut(&thread) {
                    entry.1 = State::Blocked;
                }
            }
            _ => {}
        }
    }

    fn pick_next(&mut self, cpu: CpuId, _now_ns: u64) -> Option<Dispatch> {
        let next = self.queue.pop_first();
        let Some(((Reverse(prio), _), thread)) = next else {
            if let Some(state) = self.cpus.get_mut(&cpu) {
                *state = Cpu::Idle;
            }
            return None;
        };
        if let Some(state) = self.cpus.get_mut(&cpu) {
            *state = Cpu::Running {
                prio,
                preempted: false,
            };
        }
        if let Some(entry) = self.threads.get_mut(&thread) {
            entry.1 = State::Running;
        }
        let budget_ns = u64::from(self.timeslice_ms) * 1_000_000;
        Some(Dispatch { thread, budget_ns })
    }

    fn take_decisions(&mut self, out: &mut Vec<Decision>) {
        out.append(&mut self.decisions);
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
        _now_ns: u64,
    ) -> Result<(), ParamError> {
        let prio = params::u32_or(values, "prio", self.prio_of(domain));
        self.prio.insert(domain, prio);
        // Its queued threads take their new place in the queue.
        let queued: Vec<ThreadId> = self
            .threads
            .iter()
            .filter(|(_, (d, s))| *d == domain && matches!(s, State::Queued(_)))
            .map(|(&t, _)| t)
            .collect();
        for thread in queued {
            self.dequeue(thread);
            self.enqueue(thread);
        }
        Ok(())
    }

    fn domain_values(&self, domain: DomainId) -> Values {
        alloc::vec![("prio", ParamValue::Int(i64::from(self.prio_of(domain))))]
    }

    fn set_pool_values(&mut self, values: &Values, _now_ns: u64) -> Result<(), ParamError> {
        self.timeslice_ms = params::u32_or(values, "timeslice_ms", self.timeslice_ms);
        Ok(())
    }

    fn pool_values(&self) -> Values {
        alloc::vec![(
            "timeslice_ms",
            ParamValue::Int(i64::from(self.timeslice_ms))
        )]
    }
}
