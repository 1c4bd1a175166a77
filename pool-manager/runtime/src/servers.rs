//! Scheduler servers: how a pool gets one, and what happens when one dies.
//!
//! Each active pool has a `Scheduler` object the manager creates and keeps
//! (the original capability, in a cell of its own), and a scheduler server
//! process of its policy holding a copy of it (`policies.rs` finds the
//! server's ELF). A new server must answer `Describe` with its policy's
//! name within [`GREET_DEADLINE_NS`] and describe every parameter it
//! declares ([`Pools::greet`]); one that does not is stopped.
//!
//! **Failure.** A server that faults (its fault message reaches the
//! watcher thread, [`watch_faults`], and [`Pools::handle_faults`]), or does
//! not answer a request within [`REQUEST_DEADLINE_NS`] (5 s of kernel
//! time: generous, because an emulator with more vCPUs than host cores can
//! stall a CPU for long), is replaced ([`Pools::replace_server`]): the
//! manager revokes the server's `Scheduler` and `Cpu` copies, starts a new
//! server on the *same* `Scheduler`, hands it the pool's CPUs and re-adopts
//! every domain ([`Pools::rebuild`]; the kernel keeps them adopted
//! meanwhile). A server that cannot be replaced falls back to
//! [`FALLBACK_POLICY`] ([`Pools::fall_back`]). A live policy change
//! (`cpupool-sched`, [`Pools::change_scheduler`]) is the same hand-over to
//! a server of another policy; if that one cannot serve, the pool goes back
//! to the policy it had.
//!
//! **Confinement.** Each server is confined to its pool's `Scheduler`
//! before it first runs (`TcbConfine`: its threads run only on the pool's
//! CPUs); one whose thread the kernel's watchdog stopped (a `WATCHDOG`
//! fault: it spun) goes to the fallback policy at once instead of being
//! replaced by its own.
//!
//! Not built yet: liveness probes while idle (a hung server is noticed at
//! its next request).
//!
//! [`GREET_DEADLINE_NS`]: crate::courier::GREET_DEADLINE_NS
//! [`REQUEST_DEADLINE_NS`]: crate::courier::REQUEST_DEADLINE_NS

use crate::cells::{release_if_empty, Cell};
use crate::courier::{Answer, ParamInfo};
use crate::manager::Pools;
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;
use tarn_pool_manager::pools::{DomainId, PoolId, Sched, CONTROL_DOMAIN};
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::sched_protocol::{Misbehaviour, SchedRequest};
use tarn_rt::abi::{fault, CPtr, Error, ObjectType, Rights};
use tarn_rt::layout::slot;
use tarn_rt::{invoke, syscall, CapGrant, ProcessConfig, Resources, UntypedGrant};
use tarn_vmm::platform::VM_ENDED_LABEL;

/// The policy a pool falls back to when its own policy's server cannot be
/// started or replaced.
pub const FALLBACK_POLICY: &str = "credit";

/// Most parameters of each kind a policy may declare (a server declaring
/// more is not believed).
pub(crate) const MAX_DECLARED_PARAMS: u32 = 64;

/// Where a server finds its request endpoint and the pool's `Scheduler`.
pub(crate) const SERVER_ENDPOINT_SLOT: u64 = 9;

pub(crate) const SERVER_SCHEDULER_SLOT: u64 = 11;

/// Where a server finds the manager's fault endpoint, badged for it (for
/// its agent threads).
pub(crate) const SERVER_FAULT_SLOT: u64 = 12;

/// Memory a server gets (log2 bytes).
pub(crate) const SERVER_MEMORY_BITS: u64 = 22;

/// The memory a scheduler server is built in (log2 bytes): its process, the
/// memory it is given and its endpoint.
pub(crate) const SERVER_CELL_BITS: u64 = 23;

/// The memory a pool's `Scheduler` object is made in (the smallest block).
pub(crate) const SCHEDULER_CELL_BITS: u64 = tarn_rt::buddy::MIN_BLOCK_BITS;

/// Fault badges: which server or domain a fault message comes from.
pub(crate) const BADGE_SERVER: u64 = 1 << 32;

pub(crate) const BADGE_DOMAIN: u64 = 2 << 32;

pub(crate) const BADGE_ID_MASK: u64 = 0xFFFF_FFFF;

/// A server's fault badge also carries its serial number (bits 40..64),
/// so the fault of a server already replaced is not taken for its
/// successor's.
pub(crate) const BADGE_SERIAL_SHIFT: u32 = 40;

pub(crate) const BADGE_SERIAL_MASK: u64 = 0xFF_FFFF;

/// A pool's server process.
pub(crate) struct Server {
    /// The policy it runs (as it named itself).
    pub(crate) policy: String,
    /// The parameters its policy declares, per domain and per pool.
    pub(crate) domain_params: Vec<ParamInfo>,
    pub(crate) pool_params: Vec<ParamInfo>,
    /// The main thread (the request loop).
    pub(crate) tcb: CPtr,
    /// Its request endpoint (the manager's capability).
    pub(crate) endpoint: CPtr,
    /// A call it did not answer in time: (courier, that courier's call
    /// count then). Until it comes back the server is not answering.
    pub(crate) stuck: Option<(usize, u64)>,
    /// What it was built in: the process, its memory and its endpoint
    /// (emptying it ends a courier's call the server never answered).
    pub(crate) cell: Cell,
    /// Its serial number (in its fault badge, [`BADGE_SERIAL_SHIFT`]).
    pub(crate) serial: u64,
}

/// What the manager keeps per active pool.
pub(crate) struct PoolRt {
    /// The original `Scheduler` capability (servers get copies), and the
    /// cell it was made in.
    pub(crate) scheduler: CPtr,
    pub(crate) scheduler_cell: Cell,
    pub(crate) server: Option<Server>,
}

/// A fault message the watcher thread saw.
#[derive(Clone, Copy)]
pub(crate) struct FaultNote {
    pub(crate) badge: u64,
    pub(crate) label: u64,
    pub(crate) rip: u64,
    pub(crate) address: u64,
}

impl Pools {
    /// `StartScheduler`: the pool's `Scheduler` (in a cell of its own),
    /// then a server of the pool's policy on it, which must greet; one that
    /// does not is stopped and the pool has no server.
    pub(crate) fn start_scheduler(
        &mut self,
        res: &mut Resources,
        pool: PoolId,
    ) -> Result<(), (PoolId, String)> {
        let sched = self
            .manager
            .pool(pool)
            .map(|p| p.spec.sched.clone())
            .ok_or((pool, String::from("no such pool")))?;
        let (scheduler, scheduler_cell) = self
            .build_in_cell(res, SCHEDULER_CELL_BITS, |res| {
                res.create(ObjectType::Scheduler, 0)
            })
            .map_err(|e| (pool, format!("cannot create its Scheduler: {e:?}")))?;
        self.pools.insert(
            pool,
            PoolRt {
                scheduler,
                scheduler_cell,
                server: None,
            },
        );
        let server = self
            .start_server(res, pool, &sched)
            .map_err(|e| (pool, format!("cannot start its scheduler server: {e:?}")))?;
        if let Some(p) = self.pools.get_mut(&pool) {
            p.server = Some(server);
        }
        if let Err(why) = self.greet(pool, &sched) {
            // Not a server of this protocol: the pool has none.
            if let Some(rt) = self.pools.get_mut(&pool) {
                let scheduler = rt.scheduler;
                if let Some(old) = rt.server.take() {
                    stop_server(&old, scheduler);
                    self.empty_cell(res, old.cell);
                }
            }
            return Err((pool, why));
        }
        Ok(())
    }

    /// Stops `pool`'s server (if any) and forgets its `Scheduler`: the
    /// server's cell and the `Scheduler`'s are emptied.
    pub(crate) fn stop_scheduler(&mut self, res: &mut Resources, pool: PoolId) {
        if let Some(p) = self.pools.remove(&pool) {
            if let Some(server) = p.server {
                stop_server(&server, p.scheduler);
                self.empty_cell(res, server.cell);
            }
            self.empty_cell(res, p.scheduler_cell);
        }
    }

    /// `ChangeScheduler` (`cpupool-sched`): the pool's domains and CPUs go
    /// to a server of its new policy on the same `Scheduler`; if it cannot
    /// serve, back to the policy that did (or the fallback).
    pub(crate) fn change_scheduler(
        &mut self,
        res: &mut Resources,
        pool: PoolId,
    ) -> Result<(), (PoolId, String)> {
        let to = self
            .manager
            .pool(pool)
            .map(|p| p.spec.sched.clone())
            .ok_or((pool, String::from("no such pool")))?;
        let from = self.policy_of(pool);
        let started = self.clock.now_us();
        if let Err(why) = self.rebuild(res, pool, &to) {
            // The new policy cannot serve: back to the one that did
            // (or the fallback), every domain handed over again.
            let back = Sched::from_name(&from)
                .filter(|old| self.manager.set_scheduler(pool, old.clone()).is_ok());
            let restored = match &back {
                Some(old) => self.rebuild(res, pool, old).map(|n| (n, from.clone())),
                None => Err(String::from("no policy to go back to")),
            };
            if restored.is_ok() {
                // The failed server's timeouts are dealt with.
                self.failing.remove(&pool);
            }
            return match restored {
                // Refused, and nothing lost: no server to replace.
                Ok((domains, old)) => {
                    crate::output::say_line(&format!(
                        "error: pool {}: policy change to {} failed ({why}): back on {old}, {domains} domains running",
                        self.pool_name(pool),
                        to.name()
                    ));
                    Ok(())
                }
                Err(again) => {
                    self.fall_back(res, pool, &from);
                    Err((
                        pool,
                        format!(
                            "policy change to {} failed ({why}); {from}: {again}",
                            to.name()
                        ),
                    ))
                }
            };
        }
        crate::output::say_line(&format!(
            "pool {}: now {} (hand-over took {} us)",
            self.pool_name(pool),
            to.name(),
            self.clock.now_us() - started
        ));
        Ok(())
    }

    /// The name of the policy `pool`'s server runs (`?` without a server).
    pub(crate) fn policy_of(&self, pool: PoolId) -> String {
        self.pools
            .get(&pool)
            .and_then(|p| p.server.as_ref())
            .map_or_else(|| String::from("?"), |s| s.policy.clone())
    }

    /// Asks a new server what it is: its policy's name must be the one the
    /// pool asked for, and it must describe every parameter it declares.
    /// A server that does not is not speaking the protocol.
    pub(crate) fn greet(&mut self, pool: PoolId, sched: &Sched) -> Result<(), String> {
        let wrong = |why: String| {
            format!(
                "the {} server does not speak the protocol: {why}",
                sched.name()
            )
        };
        let (name, domain_count, pool_count) = match self.request(pool, &SchedRequest::Describe, 0)
        {
            Ok(Answer::Policy(name, d, p)) => (name, d, p),
            Ok(other) => return Err(wrong(format!("Describe answered {other:?}"))),
            Err(why) => return Err(wrong(why)),
        };
        if name != sched.name() {
            return Err(wrong(format!("it runs policy '{name}'")));
        }
        let mut lists = (Vec::new(), Vec::new());
        for (of_pool, count) in [(false, domain_count), (true, pool_count)] {
            if count > MAX_DECLARED_PARAMS {
                return Err(wrong(format!("{count} parameters declared")));
            }
            for index in 0..count {
                let request = SchedRequest::DescribeParam {
                    pool: of_pool,
                    index,
                };
                match self.request(pool, &request, 0) {
                    Ok(Answer::Param(info)) => {
                        let list = if of_pool { &mut lists.1 } else { &mut lists.0 };
                        list.push(info);
                    }
                    Ok(other) => return Err(wrong(format!("DescribeParam answered {other:?}"))),
                    Err(why) => return Err(wrong(why)),
                }
            }
        }
        if let Some(server) = self.pools.get_mut(&pool).and_then(|p| p.server.as_mut()) {
            server.policy = name;
            (server.domain_params, server.pool_params) = lists;
        }
        Ok(())
    }

    pub(crate) fn start_server(
        &mut self,
        res: &mut Resources,
        pool: PoolId,
        policy: &Sched,
    ) -> Result<Server, Error> {
        let elf = self
            .policy_elf(policy.name())
            .ok_or(Error::InvalidArgument)?;
        let scheduler = self
            .pools
            .get(&pool)
            .ok_or(Error::InvalidArgument)?
            .scheduler;
        let fault_source = self.fault_endpoint;
        self.server_serial = self.server_serial.wrapping_add(1) & BADGE_SERIAL_MASK;
        let serial = self.server_serial;
        let cmdline = format!("scheduler={SERVER_SCHEDULER_SLOT} fault={SERVER_FAULT_SLOT}");
        let elf: &[u8] = &elf;
        // The request thread runs on the pool's first CPU (its agents run
        // on the pool's CPUs too): a server that spins instead of serving
        // takes time from its own pool, not from the manager's CPU.
        let home = self
            .manager
            .pool(pool)
            .and_then(|p| p.cpus.iter().next().copied())
            .map(u64::from);
        let ((tcb, endpoint), cell) = self.build_in_cell(res, SERVER_CELL_BITS, |res| {
            // The largest object first: the cell's watermark only grows, and
            // an aligned untyped placed after small objects would waste the
            // space below it.
            let (memory, phys) = res.create_untyped(SERVER_MEMORY_BITS)?;
            let endpoint = res.create(ObjectType::Endpoint, 0)?;
            let fault = crate::cells::mint_fault_endpoint(
                res,
                fault_source,
                BADGE_SERVER | u64::from(pool.0) | (serial << BADGE_SERIAL_SHIFT),
            )?;
            let caps = [
                CapGrant {
                    source: endpoint,
                    dest: SERVER_ENDPOINT_SLOT,
                    rights: Rights::READ,
                    badge: 0,
                },
                CapGrant {
                    source: scheduler,
                    dest: SERVER_SCHEDULER_SLOT,
                    rights: Rights::ALL,
                    badge: 0,
                },
                CapGrant {
                    source: fault,
                    dest: SERVER_FAULT_SLOT,
                    rights: Rights::WRITE,
                    badge: 0,
                },
            ];
            let untyped = [UntypedGrant {
                cptr: memory,
                phys,
                size_bits: SERVER_MEMORY_BITS,
            }];
            let config = ProcessConfig {
                elf,
                caps: &caps,
                untyped: &untyped,
                cmdline: &cmdline,
                cpu_count: 0,
                cpu: home,
                fault_endpoint: fault,
                suspended: true,
                ..ProcessConfig::default()
            };
            let process = tarn_rt::spawn_process(res, &config)?;
            // Confined to the pool's Scheduler before it first runs: it and
            // every thread it makes run only on the pool's CPUs (in idle
            // time elsewhere while the pool has none), under the kernel's
            // watchdog.
            invoke::tcb_confine(process.tcb, scheduler)?;
            invoke::tcb_resume(process.tcb)?;
            // Wait until it serves (or a second of kernel time has passed:
            // a server that spins instead of serving may share this CPU,
            // and each sleep then lasts a time slice, not a millisecond).
            let sleeper = res.create(ObjectType::Notification, 0)?;
            let now = || invoke::machine_times(slot::MACHINE).map_or(0, |t| t.now_ns);
            let until = now().saturating_add(1_000_000_000);
            for _ in 0..1000 {
                let state = invoke::tcb_read_registers(process.tcb)?.state_raw;
                if state == ThreadState::BlockedOnReceive as u64 || now() >= until {
                    break;
                }
                let _ = tarn_rt::sleep(sleeper, 1_000_000);
            }
            Ok((process.tcb, endpoint))
        })?;
        Ok(Server {
            policy: String::from(policy.name()),
            domain_params: Vec::new(),
            pool_params: Vec::new(),
            tcb,
            endpoint,
            stuck: None,
            cell,
            serial,
        })
    }

    /// Replaces `pool`'s server after a failure (same policy).
    pub(crate) fn replace_server(&mut self, res: &mut Resources, pool: PoolId, reason: &str) {
        self.failing.remove(&pool);
        release_if_empty(&mut self.failing);
        self.spare_courier(res);
        let Some(policy) = self.manager.pool(pool).map(|p| p.spec.sched.clone()) else {
            return;
        };
        if !self.pools.contains_key(&pool) {
            return;
        }
        let started = self.clock.now_us();
        match self.rebuild(res, pool, &policy) {
            Ok(domains) => crate::output::say_line(&format!(
                "pool {}: scheduler server replaced in {} us ({reason}); {domains} domains running again",
                self.pool_name(pool),
                self.clock.now_us() - started
            )),
            Err(why) => {
                crate::output::say_line(&format!(
                    "error: pool {}: cannot replace the scheduler server: {why}",
                    self.pool_name(pool)
                ));
                self.fall_back(res, pool, policy.name());
            }
        }
    }

    /// `pool`'s policy `failed` cannot serve it: the pool goes to the
    /// fallback policy (its domains are handed over as on a replacement).
    pub(crate) fn fall_back(&mut self, res: &mut Resources, pool: PoolId, failed: &str) {
        let Some(fallback) = Sched::from_name(FALLBACK_POLICY) else {
            return;
        };
        if failed == FALLBACK_POLICY {
            return;
        }
        let _ = self.manager.set_scheduler(pool, fallback.clone());
        let outcome = self.rebuild(res, pool, &fallback);
        if outcome.is_ok() {
            self.failing.remove(&pool);
        }
        crate::output::say_line(&match outcome {
            Ok(domains) => format!(
                "pool {}: policy {failed} failed: falling back to {FALLBACK_POLICY}; {domains} domains running",
                self.pool_name(pool)
            ),
            Err(why) => format!(
                "error: pool {}: the fallback policy {FALLBACK_POLICY} failed too: {why}",
                self.pool_name(pool)
            ),
        });
    }

    /// Takes everything from `pool`'s server (if any) and gives it to a new
    /// `policy` server on the same `Scheduler`: its CPUs, then its domains.
    /// Returns the number of domains handed over.
    pub(crate) fn rebuild(
        &mut self,
        res: &mut Resources,
        pool: PoolId,
        policy: &Sched,
    ) -> Result<usize, String> {
        let Some(rt) = self.pools.get_mut(&pool) else {
            return Err(String::from("the pool is not active"));
        };
        let scheduler = rt.scheduler;
        if let Some(old) = rt.server.take() {
            stop_server(&old, scheduler);
            self.empty_cell(res, old.cell);
        }
        // A courier left in a call to the old server (it never answered) is
        // released by emptying its cell, but may not have come back yet:
        // the new server's greeting must not fail for want of a courier.
        self.spare_courier(res);
        let cpus: BTreeSet<u32> = self
            .manager
            .pool(pool)
            .map(|p| p.cpus.clone())
            .unwrap_or_default();
        for &cpu in &cpus {
            let _ = invoke::cnode_revoke(slot::ROOT_CNODE, self.cpu_cap(cpu));
        }
        let server = self
            .start_server(res, pool, policy)
            .map_err(|e| format!("cannot start a {} server: {e:?}", policy.name()))?;
        if let Some(rt) = self.pools.get_mut(&pool) {
            rt.server = Some(server);
        }
        self.greet(pool, policy)?;
        for &cpu in &cpus {
            let cap = self.cpu_cap(cpu);
            self.request(pool, &SchedRequest::AddCpu { cpu }, cap)
                .map_err(|why| format!("CPU {cpu}: {why}"))?;
        }
        let members: Vec<DomainId> = self
            .manager
            .domains()
            .filter(|d| d.pool == pool && d.id != CONTROL_DOMAIN)
            .map(|d| d.id)
            .collect();
        for &domain in &members {
            self.adopt(pool, domain)
                .map_err(|why| format!("domain {}: {why}", domain.0))?;
        }
        Ok(members.len())
    }

    /// Handles what the fault watcher saw: a server that faulted is
    /// replaced, a domain that faulted is marked crashed, a VM whose guest
    /// ended is destroyed.
    pub(crate) fn handle_faults(&mut self, res: &mut Resources) {
        let notes: Vec<FaultNote> = core::mem::take(&mut *self.faults.lock());
        for note in notes {
            let id = (note.badge & BADGE_ID_MASK) as u32;
            let what = describe_fault(&note);
            if note.badge & BADGE_SERVER != 0 {
                let pool = PoolId(id);
                let serial = (note.badge >> BADGE_SERIAL_SHIFT) & BADGE_SERIAL_MASK;
                // A server replaced meanwhile (it failed its greeting, say)
                // is gone already: its fault says nothing of the current one.
                let current = self
                    .pools
                    .get(&pool)
                    .and_then(|p| p.server.as_ref())
                    .is_some_and(|s| s.serial == serial);
                if current {
                    crate::output::say_line(&format!(
                        "pool {}: scheduler server faulted: {what}",
                        self.pool_name(pool)
                    ));
                    // A policy that spins in its agent would spin again:
                    // the pool goes to the fallback (as when a replacement
                    // fails); the fallback itself is replaced.
                    let policy = self.policy_of(pool);
                    if note.label == fault::WATCHDOG && policy != FALLBACK_POLICY {
                        self.failing.remove(&pool);
                        self.fall_back(res, pool, &policy);
                    } else {
                        self.replace_server(res, pool, "server fault");
                    }
                }
            } else if note.badge & BADGE_DOMAIN != 0 && note.label == VM_ENDED_LABEL {
                self.vm_ended(res, DomainId(id), &note);
            } else if note.badge & BADGE_DOMAIN != 0 {
                let domain = DomainId(id);
                let name = self
                    .manager
                    .domain(domain)
                    .map_or_else(String::new, |d| d.name.clone());
                if let Some(d) = self.domains.get_mut(&domain) {
                    d.crashed = true;
                    crate::output::say_line(&format!("domain {name} crashed: {what}"));
                }
                // Its other vCPUs stop with it (xl's `on_crash="preserve"`).
                self.hold(domain);
            }
        }
    }

    /// Fault injection (`server-fault`): makes `pool`'s server misbehave.
    pub fn misbehave(&mut self, pool: PoolId, how: Misbehaviour) -> Result<(), String> {
        self.request(pool, &SchedRequest::Misbehave(how), 0)
            .map(|_| ())
    }

    /// The policy a pool's server runs now (for `cpupool-list -l`).
    pub fn server_policy(&self, pool: PoolId) -> Option<String> {
        self.pools
            .get(&pool)
            .and_then(|p| p.server.as_ref())
            .map(|s| s.policy.clone())
    }
}

/// Stops a server: its `Scheduler` copy goes (it can dispatch no more) and
/// its request thread stops. Its CPUs are revoked by the caller.
pub(crate) fn stop_server(server: &Server, scheduler: CPtr) {
    let _ = invoke::cnode_revoke(slot::ROOT_CNODE, scheduler);
    let _ = invoke::tcb_suspend(server.tcb);
}

pub(crate) fn describe_fault(note: &FaultNote) -> String {
    match note.label {
        fault::PAGE_FAULT => format!("page fault at {:#x}, rip {:#x}", note.address, note.rip),
        fault::EXCEPTION => format!("exception at rip {:#x}", note.rip),
        fault::WATCHDOG => format!(
            "watchdog: ran {} ms without blocking or dispatching, at rip {:#x}",
            note.address / 1_000_000,
            note.rip
        ),
        other => format!("fault message {other:#x}"),
    }
}

/// The fault watcher: records every fault message and wakes the console.
pub(crate) fn watch_faults(endpoint: CPtr, faults: Arc<Mutex<Vec<FaultNote>>>, wake: CPtr) {
    loop {
        let Ok(message) = tarn_rt::recv(endpoint) else {
            return;
        };
        let [rip, address, _, _] = message.mrs;
        faults.lock().push(FaultNote {
            badge: message.badge,
            label: message.label(),
            rip,
            address,
        });
        let _ = syscall::signal(wake);
    }
}
