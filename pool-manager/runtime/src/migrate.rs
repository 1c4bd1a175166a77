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
        let (ran, _, _) = self.domain_time(domain);
        let Some(id) = self.domains.get(&domain).map(|d| d.thread_id) else {
            return Ok(());
        };
        let released = self.request(from, &SchedRequest::RemoveThread { thread_id: id }, 0);
        if let Some(d) = self.domains.get_mut(&domain) {
            d.carried_ns = ran;
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
                let _ = invoke::scheduler_release(p.scheduler, d.tcb);
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
