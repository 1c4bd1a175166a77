//! Tenants: what a domain holding a delegated pool may do. `cpupool-delegate
//! P D` installs in domain D's CSpace ([`TENANT_POOL_SLOT`]) a badged
//! endpoint capability naming pool P; D sends console command lines over
//! it. A thread of the manager ([`serve_tenants`]) receives each and hands
//! it to the console's thread, which owns the pools; the console decides on
//! the parsed command with the one rule, `tarn_pool_manager::tenant::
//! authorize` (every object it names must be P's or its sub-pools'), and
//! runs what was decided. A tenant's `cpupool-create` carves a sub-pool from
//! P's CPUs ([`Pools::carve`]); its `cpupool-destroy` gives them back.
//! `cpupool-undelegate` revokes the capability and the tenancy ends.

use crate::cells::release_if_empty;
use crate::manager::Pools;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;
use tarn_pool_manager::pools::{DomainId, PoolId, PoolState};
use tarn_rt::abi::control::{self, ControlRequest};
use tarn_rt::abi::sched_protocol::{self, MAX_WORDS};
use tarn_rt::abi::{CPtr, Rights};
use tarn_rt::layout::slot;
use tarn_rt::{invoke, syscall, Resources};

/// The slot of a tenant's pool capability in its CSpace.
pub const TENANT_POOL_SLOT: u64 = 9;

/// A tenant's request waiting for the console thread, and its answer.
#[derive(Default)]
pub(crate) struct TenantMail {
    /// (badge, command line).
    pub(crate) request: Option<(u64, String)>,
    /// (ok, output).
    pub(crate) answer: Option<(bool, String)>,
}

impl Pools {
    /// `cpupool-delegate`: gives tenant domain `tenant` a capability to pool
    /// `pool` (slot 9 of its CSpace): with it the tenant runs console
    /// commands that stay inside that pool.
    pub fn delegate(
        &mut self,
        res: &mut Resources,
        pool: PoolId,
        tenant: DomainId,
    ) -> Result<(), String> {
        if self.manager.pool(pool).map(|p| p.state) != Some(PoolState::Active) {
            return Err(String::from("cpupool not active"));
        }
        let cnode = self
            .domains
            .get(&tenant)
            .map(|d| d.objects[0])
            .ok_or("no such domain (the control domain needs no delegation)")?;
        if self.delegations.keys().any(|(_, t)| *t == tenant) {
            return Err(String::from(
                "the domain holds a pool capability already (undelegate it first)",
            ));
        }
        let source = res.alloc_slot().map_err(|e| format!("{e:?}"))?;
        invoke::cnode_mint(
            res.cnode,
            source,
            res.cnode,
            self.tenant_endpoint,
            Rights::WRITE,
            u64::from(pool.0) + 1,
        )
        .map_err(|e| {
            res.slots.free(source);
            format!("{e:?}")
        })?;
        if let Err(e) =
            invoke::cnode_copy(cnode, TENANT_POOL_SLOT, res.cnode, source, Rights::WRITE)
        {
            let _ = res.delete(source);
            return Err(format!("cannot install the capability: {e:?}"));
        }
        self.delegations.insert((pool, tenant), source);
        Ok(())
    }

    /// `cpupool-undelegate`: revokes the tenant's capability to the pool.
    pub fn undelegate(
        &mut self,
        res: &mut Resources,
        pool: PoolId,
        tenant: DomainId,
    ) -> Result<(), String> {
        let source = self
            .delegations
            .remove(&(pool, tenant))
            .ok_or("no such delegation")?;
        let _ = invoke::cnode_revoke(slot::ROOT_CNODE, source);
        let _ = invoke::cnode_delete(slot::ROOT_CNODE, source);
        res.slots.free(source);
        Ok(())
    }

    /// The sub-pools carved so far: sub-pool → the pool it came from.
    pub fn carved(&self) -> &BTreeMap<PoolId, PoolId> {
        &self.carved
    }

    /// A tenant's `cpupool-create`, as `tarn_pool_manager::tenant`
    /// allowed it: a sub-pool with exactly `spec`'s CPU list, taken from
    /// the tenant's pool `parent`. The CPUs leave the parent by the usual
    /// negotiation, then the pool is created with them (if it cannot start,
    /// they go back). Returns its name.
    pub fn carve(
        &mut self,
        res: &mut Resources,
        parent: PoolId,
        spec: tarn_pool_manager::pools::PoolSpec,
    ) -> Result<String, String> {
        use tarn_pool_manager::pools::CpuRequest;
        let name = spec.name.clone();
        let CpuRequest::List(wanted) = &spec.cpus else {
            return Err(format!("{name}: a sub-pool names its CPUs"));
        };
        let wanted = wanted.clone();
        // Check the spec itself before any CPU moves (nothing changes on error).
        let mut probe = self.manager.clone();
        for &cpu in &wanted {
            probe
                .cpu_remove(parent, cpu)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        probe
            .create(spec.clone())
            .map_err(|e| format!("{name}: {e}"))?;
        for &cpu in &wanted {
            self.operate(res, &name, |m| m.cpu_remove(parent, cpu))?;
        }
        match self.activate(res, &name, true, |m| {
            m.create(spec).map(|(_, actions)| actions)
        }) {
            Ok(id) => {
                self.carved.insert(id, parent);
                Ok(name)
            }
            Err(why) => {
                // The CPUs go back to the tenant's pool.
                let cpus: Vec<u32> = wanted.iter().copied().collect();
                let _ = self.operate(res, &name, |m| m.cpu_add(parent, &cpus).map(|r| r.actions));
                Err(why)
            }
        }
    }

    /// A tenant's `cpupool-destroy` of a sub-pool it carved: the sub-pool
    /// (without domains) is deactivated and deleted, its CPUs go back to the
    /// parent.
    pub fn uncarve(&mut self, res: &mut Resources, sub: PoolId) -> Result<(), String> {
        let parent = *self.carved.get(&sub).ok_or("not a carved sub-pool")?;
        let name = self.pool_name(sub);
        let cpus: Vec<u32> = self
            .manager
            .pool(sub)
            .map(|p| p.cpus.iter().copied().collect())
            .unwrap_or_default();
        self.operate(res, &name, |m| m.deactivate(sub))?;
        let _ = self.manager.delete(sub);
        self.carved.remove(&sub);
        release_if_empty(&mut self.carved);
        self.operate(res, &name, |m| m.cpu_add(parent, &cpus).map(|r| r.actions))
    }

    /// The delegations: (pool, tenant).
    pub fn delegations(&self) -> impl Iterator<Item = &(PoolId, DomainId)> {
        self.delegations.keys()
    }

    /// A tenant's request, if one waits: (its pool, the command line).
    pub fn take_tenant_request(&mut self) -> Option<(PoolId, String)> {
        let (badge, line) = self.tenant_mail.lock().request.take()?;
        Some((PoolId(badge.saturating_sub(1) as u32), line))
    }

    /// Answers the waiting tenant.
    pub fn answer_tenant(&mut self, ok: bool, output: String) {
        self.tenant_mail.lock().answer = Some((ok, output));
        let _ = syscall::signal(self.tenant_done);
    }
}

/// Serves tenants' requests: each is handed to the console thread (which
/// owns the pools) through `mail`, and its answer goes back as the reply.
pub(crate) fn serve_tenants(endpoint: CPtr, mail: Arc<Mutex<TenantMail>>, wake: CPtr, done: CPtr) {
    let mut message = syscall::recv(endpoint);
    loop {
        let Ok(request) = message else {
            return;
        };
        let mut words = [0u64; MAX_WORDS];
        let length = request.words(&mut words).min(MAX_WORDS);
        let mut scratch = [0u8; MAX_WORDS * 8];
        let decoded = (request.info.label() == control::TENANT_LABEL)
            .then(|| sched_protocol::decode::<ControlRequest>(&words[..length], &mut scratch))
            .flatten();
        let (ok, output) = match decoded {
            Some(ControlRequest::Run { line, .. }) if request.badge != 0 => {
                mail.lock().request = Some((request.badge, String::from(line)));
                let _ = syscall::signal(wake);
                let _ = syscall::wait(done, 0);
                mail.lock()
                    .answer
                    .take()
                    .unwrap_or((false, String::from("error: no answer\n")))
            }
            Some(ControlRequest::LoadPolicy { .. }) => (
                false,
                String::from(
                    "error: not allowed: loading a policy is the pool manager's (control channel only)\n",
                ),
            ),
            _ => (false, String::from("error: garbled request\n")),
        };
        // As much of the output as one message holds.
        let mut text = output.as_str();
        let mut out = [0u64; MAX_WORDS];
        let mut count = 0;
        let mut truncated = false;
        loop {
            let answer = control::TenantAnswer {
                ok,
                truncated,
                text,
            };
            if let Some(n) = sched_protocol::encode(&answer, &mut out) {
                count = n;
                break;
            }
            truncated = true;
            let mut cut = text.len().saturating_sub(16);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text = &text[..cut];
            if text.is_empty() {
                break;
            }
        }
        let (info, registers) = syscall::load(control::TENANT_LABEL, &out[..count], &[]);
        message = syscall::reply_recv(endpoint, info, registers);
    }
}
