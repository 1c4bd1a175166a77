//! The [`Pools`] type: the pool manager at work. It holds the rules'
//! state ([`PoolManager`]) and what the kernel and the servers hold for
//! it, starts Pool-0 at boot, and carries out the [`Action`]s each rule
//! returns: [`Pools::apply`] hands every action to the file of its concern
//! (`servers.rs`: start, stop and change a pool's scheduler; `cpus.rs`:
//! bind and revoke a CPU; `domains.rs`: adopt and release a domain;
//! `migrate.rs`: move one between pools). [`Pools::service`] runs between
//! commands: it replaces servers that failed, ends loans that are due and
//! handles the faults the watcher saw.
//!
//! Everything the manager says (a server replaced, a loan ended) goes
//! through `output.rs`, to the console or to the capture of the
//! command that caused it.

use crate::courier::Courier;
use crate::domains::DomainRt;
use crate::policies::policy_modules;
use crate::say;
use crate::servers::{watch_faults, FaultNote, PoolRt};
use crate::tenants::{serve_tenants, TenantMail};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;
use tarn_pool_manager::pools::{Action, DomainId, PoolError, PoolId, PoolManager};
use tarn_rt::abi::boot::BootInfo;
use tarn_rt::abi::{CPtr, Error, ObjectType};
use tarn_rt::layout::slot;
use tarn_rt::{invoke, BuddyAllocator, KernelUntyped, Resources, ThreadOptions};

/// Memory for the manager's own lasting objects, made after it starts
/// (courier threads).
pub(crate) const ROOT_MEMORY_BITS: u64 = 20;

/// The kernel's clock (ns since boot, the time event rings carry), read
/// through the Machine capability.
#[derive(Clone, Copy)]
pub struct Clock;

impl Clock {
    /// Now, in µs.
    pub fn now_us(&self) -> u64 {
        invoke::machine_times(slot::MACHINE).map_or(0, |t| t.now_ns / 1000)
    }
}

/// The pool manager's runtime state.
///
/// Its maps are `BTreeMap`s on purpose: iteration is ordered and the same
/// on every run (servers that failed are replaced in pool order, a
/// tenant's delegations are found in order), and an emptied one gives its
/// memory back (`cells::release_if_empty`), which the soak's
/// exact heap comparison needs. Lookups by id are O(log n); names are
/// looked up by the rules ([`PoolManager`]).
pub struct Pools {
    /// The rules and the pool/domain state.
    pub manager: PoolManager,
    pub(crate) info: &'static BootInfo,
    pub(crate) pools: BTreeMap<PoolId, PoolRt>,
    pub(crate) domains: BTreeMap<DomainId, DomainRt>,
    pub(crate) fault_endpoint: CPtr,
    pub(crate) faults: Arc<Mutex<Vec<FaultNote>>>,
    /// Pools whose server did not answer a request, with why: replaced by
    /// the next [`Pools::service`].
    pub(crate) failing: BTreeMap<PoolId, String>,
    /// The serial number of the last server started.
    pub(crate) server_serial: u64,
    /// The endpoint tenants' pool capabilities name (badge = pool id + 1).
    pub(crate) tenant_endpoint: CPtr,
    pub(crate) tenant_mail: Arc<Mutex<TenantMail>>,
    /// Signalled when a tenant's answer is ready.
    pub(crate) tenant_done: CPtr,
    /// Delegations: (pool, tenant domain) → the manager's badged capability
    /// the tenant's copy derives from (revoking it ends the tenancy).
    pub(crate) delegations: BTreeMap<(PoolId, DomainId), CPtr>,
    /// Sub-pools a tenant carved from its delegated pool: sub → parent.
    pub(crate) carved: BTreeMap<PoolId, PoolId>,
    /// The memory cells are built in: every free byte the root task had
    /// when the manager started, as buddy blocks (freed cells merge back).
    pub(crate) memory: BuddyAllocator,
    /// The threads that call servers.
    pub(crate) couriers: Vec<Courier>,
    /// Policy servers loaded at run time (`tarnctl load-policy`): name → ELF.
    pub(crate) loaded: BTreeMap<String, Vec<u8>>,
    /// The load in progress: name, size, bytes so far.
    pub(crate) loading: Option<(String, u32, Vec<u8>)>,
    /// The cell-memory block the root task's CNode lies in once it has
    /// grown (`None`: the CNode the kernel built at boot).
    pub(crate) cspace_block: Option<CPtr>,
    /// Virtual time.
    pub clock: Clock,
}

impl Pools {
    /// Boot: Pool-0 per `manager` (its server on its CPUs), and the fault
    /// watcher, which signals `wake` when a fault arrives.
    pub fn start(
        info: &'static BootInfo,
        res: &mut Resources,
        mut manager: PoolManager,
        wake: CPtr,
        clock: Clock,
    ) -> Result<Pools, Error> {
        manager.set_policies(policy_modules(info));
        // Every byte not used yet becomes cell memory; the manager's own
        // lasting objects (threads, endpoints, couriers) get a block of it.
        let mut memory = BuddyAllocator::new();
        memory.take_unused(res)?;
        let own = memory.alloc(&mut KernelUntyped(res), ROOT_MEMORY_BITS)?;
        res.untyped.add(own.cptr, own.phys, own.bits);
        let fault_endpoint = res.create(ObjectType::Endpoint, 0)?;
        let faults = Arc::new(Mutex::new(Vec::new()));
        let shared = faults.clone();
        tarn_rt::spawn_thread(res, ThreadOptions::default(), move || {
            watch_faults(fault_endpoint, shared, wake)
        })?;
        let tenant_endpoint = res.create(ObjectType::Endpoint, 0)?;
        let tenant_done = res.create(ObjectType::Notification, 0)?;
        let tenant_mail = Arc::new(Mutex::new(TenantMail::default()));
        let mail = tenant_mail.clone();
        tarn_rt::spawn_thread(res, ThreadOptions::default(), move || {
            serve_tenants(tenant_endpoint, mail, wake, tenant_done)
        })?;
        let mut pools = Pools {
            manager,
            info,
            pools: BTreeMap::new(),
            domains: BTreeMap::new(),
            fault_endpoint,
            faults,
            failing: BTreeMap::new(),
            server_serial: 0,
            tenant_endpoint,
            tenant_mail,
            tenant_done,
            delegations: BTreeMap::new(),
            carved: BTreeMap::new(),
            memory,
            couriers: Vec::new(),
            loaded: BTreeMap::new(),
            loading: None,
            cspace_block: None,
            clock,
        };
        let pool0 = tarn_pool_manager::pools::POOL0;
        let cpus: Vec<u32> = pools
            .manager
            .pool(pool0)
            .map(|p| p.cpus.iter().copied().collect())
            .unwrap_or_default();
        pools.apply(res, alloc::vec![Action::StartScheduler { pool: pool0 }]);
        let binds = cpus
            .iter()
            .map(|&cpu| Action::BindCpu { cpu, pool: pool0 })
            .collect();
        pools.apply(res, binds);
        Ok(pools)
    }

    /// Doubles the root task's CNode once fewer than 1/8 of its slots are
    /// free ([`Resources::cspace_low`]), in a cell-memory block of the new
    /// CNode's size: no capability pointer changes (`CNodeGrow`), and the
    /// old CNode's block goes back to the cells. The CNode the kernel
    /// built at boot lies in the kernel's memory, outside every untyped:
    /// the root task keeps it (a live object, 1 MiB at 2^14 slots) rather
    /// than lose its memory. Safe at any time, with the other threads of
    /// the root task running: the kernel makes the change in one step.
    fn grow_cspace(&mut self, res: &mut Resources) {
        if !res.cspace_low() {
            return;
        }
        let bits = res.cnode_bits + 1 + u64::from(tarn_rt::abi::SLOT_BYTES.trailing_zeros());
        let block = match self.memory.alloc(&mut KernelUntyped(res), bits) {
            Ok(block) => block,
            Err(error) => {
                say!("error: root: the CSpace cannot grow: no memory ({error:?})");
                return;
            }
        };
        match res.grow_cspace(block.cptr) {
            Ok(old) => {
                if let Some(previous) = self.cspace_block.replace(block.cptr) {
                    // Revoking the block destroys the old CNode.
                    let _ = self.memory.free(&mut KernelUntyped(res), previous);
                    res.slots.free(old);
                }
                say!("root: CSpace grown to {} slots", 1u64 << res.cnode_bits);
            }
            Err(error) => {
                let _ = self.memory.free(&mut KernelUntyped(res), block.cptr);
                say!("error: root: the CSpace cannot grow: {error:?}");
            }
        }
    }

    pub(crate) fn pool_name(&self, pool: PoolId) -> String {
        self.manager
            .pool(pool)
            .map_or_else(|| format!("pool {}", pool.0), |p| p.spec.name.clone())
    }

    /// Runs a pool operation: first the rules (`op` on the manager; a
    /// refusal changes nothing and is named after `what`), then the actions
    /// they call for.
    pub fn operate(
        &mut self,
        res: &mut Resources,
        what: &str,
        op: impl FnOnce(&mut PoolManager) -> Result<Vec<Action>, PoolError>,
    ) -> Result<(), String> {
        let actions = op(&mut self.manager).map_err(|e| format!("{what}: {e}"))?;
        self.apply(res, actions);
        Ok(())
    }

    /// Runs a pool activation (`cpupool-create`, `cpupool-start`, a
    /// tenant's sub-pool): first the rules (`op`; a refusal changes
    /// nothing), then the pool's `Scheduler`, its server and its CPUs. If
    /// the pool ends up without a server (it cannot be started, or it failed
    /// taking the CPUs and no replacement could start), the activation is
    /// undone completely: the CPUs are revoked and free again, the cells
    /// are emptied, the pool is defined again, and with `forget` (it was
    /// created by this command) deleted, so its name is free. Returns the
    /// pool, or the error line's text.
    pub fn activate(
        &mut self,
        res: &mut Resources,
        what: &str,
        forget: bool,
        op: impl FnOnce(&mut PoolManager) -> Result<Vec<Action>, PoolError>,
    ) -> Result<PoolId, String> {
        let actions = op(&mut self.manager).map_err(|e| format!("{what}: {e}"))?;
        let pool = actions
            .iter()
            .find_map(|a| match a {
                Action::StartScheduler { pool, .. } => Some(*pool),
                _ => None,
            })
            .ok_or_else(|| format!("{what}: nothing to activate"))?;
        let mut why = None;
        for action in actions {
            let starting = matches!(action, Action::StartScheduler { .. });
            if let Err((p, reason)) = self.apply_one(res, action) {
                if starting {
                    why = Some(reason);
                    break;
                }
                crate::output::say_line(&format!("error: pool {}: {reason}", self.pool_name(p)));
                self.replace_server(res, p, &reason);
            }
        }
        let served = self.pools.get(&pool).is_some_and(|p| p.server.is_some());
        if served {
            return Ok(pool);
        }
        let why = why.unwrap_or_else(|| String::from("no scheduler server could be started"));
        let cpus: Vec<u32> = self
            .manager
            .pool(pool)
            .map(|p| p.cpus.iter().copied().collect())
            .unwrap_or_default();
        for cpu in cpus {
            let _ = invoke::cnode_revoke(slot::ROOT_CNODE, self.cpu_cap(cpu));
        }
        self.stop_scheduler(res, pool);
        let _ = self.manager.abort_activation(pool);
        if forget {
            let _ = self.manager.delete(pool);
        }
        Err(format!("{what}: {why}; nothing changed"))
    }

    /// Carries out `actions` in order. A server that fails one is replaced.
    pub fn apply(&mut self, res: &mut Resources, actions: Vec<Action>) {
        for action in actions {
            if let Err((pool, why)) = self.apply_one(res, action) {
                crate::output::say_line(&format!("error: pool {}: {why}", self.pool_name(pool)));
                self.replace_server(res, pool, &why);
            }
        }
    }

    /// Carries out one action, in the file of its concern; an error names
    /// the pool whose server failed it.
    fn apply_one(&mut self, res: &mut Resources, action: Action) -> Result<(), (PoolId, String)> {
        self.spare_courier(res);
        match action {
            Action::StartScheduler { pool } => self.start_scheduler(res, pool),
            Action::BindCpu { cpu, pool } => self.bind_cpu(cpu, pool),
            Action::RevokeCpu { cpu, pool } => self.revoke_cpu(cpu, pool),
            Action::StopScheduler { pool } => {
                self.stop_scheduler(res, pool);
                Ok(())
            }
            Action::ChangeScheduler { pool } => self.change_scheduler(res, pool),
            Action::AdoptDomain { domain, pool } => self
                .adopt(pool, domain)
                .map_err(|why| (pool, format!("domain not adopted: {why}"))),
            Action::ReleaseDomain { domain, pool } => self.release_domain(domain, pool),
            Action::MoveDomain { domain, from, to } => self.move_domain(domain, from, to),
            Action::BreakAffinity {
                domain,
                vcpu,
                pool,
                cpu,
            } => self.break_affinity(domain, vcpu, pool, cpu),
        }
    }

    /// Runs between commands: grows the root task's CNode when it runs
    /// low, replaces the servers that did not answer a request, ends the
    /// loans that are due, and handles what the fault watcher saw
    /// (`servers.rs`).
    pub fn service(&mut self, res: &mut Resources) {
        self.grow_cspace(res);
        self.spare_courier(res);
        while let Some((pool, why)) = self.failing.pop_first() {
            self.replace_server(res, pool, &why);
        }
        self.end_due_loans(res);
        self.handle_faults(res);
    }
}
