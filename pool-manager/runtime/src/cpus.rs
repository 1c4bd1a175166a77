//! CPUs: how one is handed over. The manager holds every `Cpu` capability
//! (the kernel's boot slots); a pool's server gets a CPU by `AddCpu`, with
//! a derived copy of the capability travelling in the message, and loses
//! it by `RemoveCpu`, a negotiation: the server moves its threads off and
//! answers, or the deadline (`courier.rs`) passes. Either way the manager
//! then revokes its own capability, which deletes every copy (and so
//! unbinds the CPU, if the server had not). Which CPU goes where is the
//! rules' decision (`tarn_pool_manager::pools`: `BindCpu` and `RevokeCpu`
//! actions); `cpupool-numa-split`, which moves CPUs by NUMA node, is here
//! too.

use crate::manager::Pools;
use crate::say;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use tarn_pool_manager::config::Topology;
use tarn_pool_manager::pools::{self as rules, PoolId};
use tarn_rt::abi::sched_protocol::SchedRequest;
use tarn_rt::abi::CPtr;
use tarn_rt::layout::slot;
use tarn_rt::{invoke, Resources};

impl Pools {
    pub(crate) fn cpu_cap(&self, cpu: u32) -> CPtr {
        self.info.first_cpu_slot + u64::from(cpu)
    }

    /// `BindCpu`: `pool`'s server takes CPU `cpu` (`AddCpu`, with a copy of
    /// its capability).
    pub(crate) fn bind_cpu(&mut self, cpu: u32, pool: PoolId) -> Result<(), (PoolId, String)> {
        let cap = self.cpu_cap(cpu);
        self.request(pool, &SchedRequest::AddCpu { cpu }, cap)
            .map(|_| ())
            .map_err(|why| (pool, format!("CPU {cpu} not taken: {why}")))
    }

    /// `RevokeCpu`: `pool`'s server is asked to give CPU `cpu` back
    /// (`RemoveCpu`); answered or not, the manager's capability is revoked
    /// then, which takes every copy.
    pub(crate) fn revoke_cpu(&mut self, cpu: u32, pool: PoolId) -> Result<(), (PoolId, String)> {
        let result = self.request(pool, &SchedRequest::RemoveCpu { cpu }, 0);
        // Whatever the server said, the CPU is taken back now.
        let _ = invoke::cnode_revoke(slot::ROOT_CNODE, self.cpu_cap(cpu));
        result.map(|_| ()).map_err(|why| {
            (
                pool,
                format!("CPU {cpu} not released ({why}): revoked after the deadline"),
            )
        })
    }

    /// `cpupool-numa-split`, as xl does it: only Pool-0 may exist; it gets the
    /// free CPUs of CPU 0's node and is renamed `Pool-nodeN`; every other node
    /// with CPUs becomes a pool `Pool-nodeM` of its CPUs, with Pool-0's
    /// scheduler (its CPUs leave Pool-0 first, negotiated as
    /// `cpupool-cpu-remove`).
    pub fn numa_split(&mut self, res: &mut Resources, topology: &Topology) -> Result<(), String> {
        if self.manager.pools().count() > 1 {
            return Err(String::from(
                "cpupool-numa-split: splitting not possible, already cpupools in use",
            ));
        }
        let home = topology.node_of(0).unwrap_or(0);
        let sched = self
            .manager
            .pool(rules::POOL0)
            .map(|p| p.spec.sched.clone())
            .ok_or("cpupool-numa-split: no Pool-0")?;
        let free: Vec<u32> = self.manager.free_cpus();
        let add: Vec<u32> = topology
            .node_cpus(home)
            .into_iter()
            .filter(|c| free.contains(c))
            .collect();
        if !add.is_empty() {
            let report = self
                .manager
                .cpu_add(rules::POOL0, &add)
                .map_err(|e| format!("Pool-0: {e}"))?;
            for (cpu, result) in &report.results {
                if let Err(e) = result {
                    return Err(format!("Pool-0: CPU {cpu}: {e}"));
                }
            }
            self.apply(res, report.actions);
        }
        let pool0_name = format!("Pool-node{home}");
        self.manager
            .rename(rules::POOL0, &pool0_name)
            .map_err(|e| format!("Pool-0: {e}"))?;
        say!("cpupool-numa-split: Pool-0 is now {pool0_name}");
        for node in 0..topology.node_count() {
            let cpus = topology.node_cpus(node);
            if node == home || cpus.is_empty() {
                continue;
            }
            for &cpu in &cpus {
                if self.manager.cpu_owner(cpu) == Some(rules::POOL0) {
                    self.operate(res, &pool0_name, |m| m.cpu_remove(rules::POOL0, cpu))?;
                }
            }
            let name = format!("Pool-node{node}");
            let spec = rules::PoolSpec {
                name: name.clone(),
                sched: sched.clone(),
                cpus: rules::CpuRequest::List(cpus.clone()),
                other_config: Vec::new(),
            };
            self.activate(res, &name, true, |m| m.create(spec).map(|(_, a)| a))?;
            say!(
                "cpupool-numa-split: {name} with CPUs {}",
                rules::format_cpu_list(&cpus.into_iter().collect::<Vec<_>>())
            );
        }
        Ok(())
    }
}
