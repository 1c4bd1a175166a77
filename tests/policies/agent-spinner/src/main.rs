//! Started as a pool's scheduler server, it serves the pool manager's
//! protocol as round robin does (it is round robin under another name),
//! until the first time its policy has a thread to run: then the agent
//! that asked (`pick_next`) spins forever instead of dispatching, the way a
//! policy stuck in a loop would. Its pool's CPU is its own, so nothing but
//! that pool waits; the kernel's watchdog stops the agent and the pool
//! manager sends the pool to its fallback policy.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use tarn_sched_servers::rr::RoundRobin;
use tarn_sched_servers::{CpuId, Decision, Dispatch, DomainId, Event, Policy, PolicyError, ThreadId};

tarn_rt::entry!(main);

fn main(_: u64) {
    tarn_sched_server::serve(AgentSpinner::default());
}

/// Round robin, spinning at its first dispatch.
#[derive(Default)]
struct AgentSpinner(RoundRobin);

impl Policy for AgentSpinner {
    fn name(&self) -> &'static str {
        "agent-spinner"
    }
    fn add_cpu(&mut self, cpu: CpuId, now_ns: u64) {
        self.0.add_cpu(cpu, now_ns);
    }
    fn remove_cpu(&mut self, cpu: CpuId, now_ns: u64) {
        self.0.remove_cpu(cpu, now_ns);
    }
    fn add_thread(
        &mut self,
        thread: ThreadId,
        domain: DomainId,
        runnable: bool,
        now_ns: u64,
    ) -> Result<(), PolicyError> {
        self.0.add_thread(thread, domain, runnable, now_ns)
    }
    fn remove_thread(&mut self, thread: ThreadId, now_ns: u64) {
        self.0.remove_thread(thread, now_ns);
    }
    fn remove_domain(&mut self, domain: DomainId, now_ns: u64) {
        self.0.remove_domain(domain, now_ns);
    }
    fn on_event(&mut self, event: &Event) {
        self.0.on_event(event);
    }
    fn pick_next(&mut self, cpu: CpuId, now_ns: u64) -> Option<Dispatch> {
        let pick = self.0.pick_next(cpu, now_ns);
        if pick.is_some() {
            // Stuck: never blocks, never dispatches.
            let mut turns: u64 = 0;
            loop {
                turns = core::hint::black_box(turns.wrapping_add(1));
            }
        }
        pick
    }
    fn take_decisions(&mut self, out: &mut Vec<Decision>) {
        self.0.take_decisions(out);
    }
}
