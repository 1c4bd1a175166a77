//! `cpupool-migrate`: a domain moves to another pool while it runs. The
//! rules check the move and return `MoveDomain`; here the domain is held
//! (suspended: it runs in neither pool meanwhile, and never as an
//! unadopted thread), released by the source pool's server, its run time
//! so far carried over, its scheduling group left (a group is the source
//! pool's), adopted by the destination's server with its parameters, and
//! resumed. If the source's server fails to release it, the kernel's
//! adoption is ended directly and the source's server is replaced without
//! the domain.

use crate::manager::Pools;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use tarn_pool_manager::pools::{DomainId, PoolId};
use tarn_rt::abi::sched_protocol::SchedRequest;
use tarn_rt::invoke;

impl Pools {
    pub(crate) fn move_domain(
        &mut self,
        domain: DomainId,
        from: PoolId,
        to: PoolId,
    ) -> Result<(), (PoolId, String)> {
        // Held while it changes hands: it runs in neither pool meanwhile,
        // and never as an unadopted thread.
        self.hold(domain);
        // From the pool it leaves: the rules already put it in `to`.
        let times = self.vcpu_times_in(domain, from);
        let Some(ids) = self
            .domains
            .get(&domain)
            .map(|d| d.vcpus.iter().map(|v| v.thread_id).collect::<Vec<u64>>())
        else {
            return Ok(());
        };
        let mut released = Ok(());
        for thread_id in ids {
            let result = self.request(from, &SchedRequest::RemoveThread { thread_id }, 0);
            if result.is_err() {
                released = result.map(|_| ());
                break;
            }
        }
        if let Some(d) = self.domains.get_mut(&domain) {
            for (v, (ran, _, _)) in d.vcpus.iter_mut().zip(times) {
                v.carried_ns = ran;
            }
        }
        // A scheduling group is the source pool's: the domain leaves it.
        if let Some(mut params) = self.manager.domain(domain).map(|d| d.params.clone()) {
            params.unset("group");
            let _ = self.manager.set_domain_params(domain, params);
        }
        if let Err(why) = released {
            // The source server failed; it is replaced without this domain.
            // The kernel still has the thread adopted by the source's
            // Scheduler: release it there directly.
            if let (Some(p), Some(d)) = (self.pools.get(&from), self.domains.get(&domain)) {
                for v in &d.vcpus {
                    let _ = invoke::scheduler_release(p.scheduler, v.tcb);
                }
            }
            self.adopt(to, domain)
                .map_err(|w| (to, format!("domain not adopted: {w}")))?;
            self.release_hold(domain);
            return Err((from, format!("domain not released: {why}")));
        }
        let adopted = self.adopt(to, domain);
        self.release_hold(domain);
        adopted.map_err(|why| (to, format!("domain not adopted: {why}")))
    }
}
