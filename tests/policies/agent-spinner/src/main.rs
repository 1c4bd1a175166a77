//! Started as a pool's scheduler server, it serves the pool manager's
//! protocol as round robin does (it is round robin under another name),
//! until [`SPIN_AFTER_NS`] after the first event it sees (long enough for the
//! manager to hand it the pool's domains and call the switch done) and its
//! policy has a thread to run: then the agent that asked (`pick_next`)
//! spins forever instead of dispatching, the way a policy stuck in a loop
//! would (holding the server's state, so the request thread waits too). Its pool's CPU is its own, so nothing but
//! that pool waits; the kernel's watchdog stops the agent and the pool
//! manager sends the pool to its fallback policy.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use tarn_sched_servers::rr::RoundRobin;
use tarn_sched_servers::{
    CpuId, Decision, Dispatch, DomainId, Event, Policy, PolicyError, ThreadId,
};

tarn_rt::entry!(main);

fn main(_: u64) {
    tarn_sched_server::serve(AgentSpinner::default());
}

/// Event time after its first event from which it spins.
const SPIN_AFTER_NS: u64 = 200_000_000;

/// Round robin, spinning at its first dispatch [`SPIN_AFTER_NS`] after its
/// first event.
#[derive(Default)]
struct AgentSpinner {
    rr: RoundRobin,
    first_event_ns: Option<u64>,
}

impl Policy for AgentSpinner {
    fn name(&self) -> &'static str {
        "agent-spinner"
    }
    fn add_cpu(&mut self, cpu: CpuId, now_ns: u64) {
        self.rr.add_cpu(cpu, now_ns);
    }
    fn remove_cpu(&mut self, cpu: CpuId, now_ns: u64) {
        self.rr.remove_cpu(cpu, now_ns);
    }
    fn add_thread(
        &mut self,
        thread: ThreadId,
        domain: DomainId,
        runnable: bool,
        now_ns: u64,
    ) -> Result<(), PolicyError> {
        self.rr.add_thread(thread, domain, runnable, now_ns)
    }
    fn remove_thread(&mut self, thread: ThreadId, now_ns: u64) {
        self.rr.remove_thread(thread, now_ns);
    }
    fn remove_domain(&mut self, domain: DomainId, now_ns: u64) {
        self.rr.remove_domain(domain, now_ns);
    }
    fn on_event(&mut self, event: &Event) {
        self.first_event_ns.get_or_insert(event.timestamp_ns);
        self.rr.on_event(event);
    }
    fn pick_next(&mut self, cpu: CpuId, now_ns: u64) -> Option<Dispatch> {
        let pick = self.rr.pick_next(cpu, now_ns);
        let due = self
            .first_event_ns
            .is_some_and(|first| now_ns >= first + SPIN_AFTER_NS);
        if pick.is_some() && due {
            // Stuck: never blocks, never dispatches.
            let mut turns: u64 = 0;
            loop {
                turns = core::hint::black_box(turns.wrapping_add(1));
            }
        }
        pick
    }
    fn take_decisions(&mut self, out: &mut Vec<Decision>) {
        self.rr.take_decisions(out);
    }
}
