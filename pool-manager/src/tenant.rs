//! What a tenant may do with its pool capability: one decision,
//! [`authorize`], from the whole parsed [`Command`] and every object it
//! names.
//!
//! A tenant holds a capability to one pool (`cpupool-delegate P D`). Its
//! *scope* is that pool and the sub-pools it carved from it. A command is
//! allowed only if every domain it names is a domain of the scope (or does
//! not exist, so the command fails), every pool it names is in the scope,
//! and it has no effect outside it; commands that read the whole machine
//! (`list`, `cpupool-list`) are narrowed to the scope. A sub-pool is carved
//! only from the delegated pool's own CPUs, which must keep one; only a
//! carved sub-pool can be given back. Everything else, and anything this
//! function cannot prove safe (config files, machine-wide commands, CPUs,
//! loans, delegation, fault injection, `repeat`), is refused with why.
//!
//! The decision is made on the typed command the parser produced, and the
//! console runs that same value: no text is parsed twice, so a flag the
//! decision did not look at cannot change what runs.

use crate::command::{Command, DomainSource, PoolSource};
use crate::pools::{CpuRequest, PoolId, PoolManager, PoolSpec, PoolState, POOL0};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// What a tenant's command becomes once allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantOp {
    /// Run this command (narrowed to the scope where it reads more).
    Run(Command),
    /// Carve a sub-pool with exactly these CPUs from the delegated pool.
    Carve(PoolSpec),
    /// Give a carved sub-pool's CPUs back to the delegated pool and forget it.
    Uncarve(PoolId),
}

/// The pools a tenant of `pool` manages: `pool` (it must be active) and the
/// active sub-pools carved from it (`carved`: sub-pool → parent).
pub fn scope(
    manager: &PoolManager,
    carved: &BTreeMap<PoolId, PoolId>,
    pool: PoolId,
) -> Result<Vec<PoolId>, String> {
    let active = |id: PoolId| {
        manager
            .pool(id)
            .is_some_and(|p| p.state == PoolState::Active)
    };
    if !active(pool) {
        return Err(String::from("the delegated cpupool is not active"));
    }
    Ok(core::iter::once(pool)
        .chain(
            carved
                .iter()
                .filter(|(sub, parent)| **parent == pool && active(**sub))
                .map(|(sub, _)| *sub),
        )
        .collect())
}

/// Decides a tenant's command: `pool` is the pool its capability names,
/// `carved` the sub-pools carved so far (sub-pool → parent).
pub fn authorize(
    manager: &PoolManager,
    carved: &BTreeMap<PoolId, PoolId>,
    pool: PoolId,
    command: Command,
) -> Result<TenantOp, String> {
    let scope = scope(manager, carved, pool)?;
    let name_of = |id: PoolId| manager.pool(id).map(|p| p.spec.name.clone());
    let names: Vec<String> = scope.iter().filter_map(|&id| name_of(id)).collect();
    let own = names[0].clone();
    let refused = || {
        let subs = if names.len() > 1 {
            format!(" and its sub-pools {}", names[1..].join(" "))
        } else {
            String::new()
        };
        format!("not allowed: this capability manages cpupool {own}{subs} only")
    };
    // A pool of the scope, by name or id.
    let pool_ok = |name: &str| manager.pool_id(name).is_ok_and(|id| scope.contains(&id));
    // A domain of the scope, or none at all (the command then fails as for
    // anyone: no such domain).
    let domain_ok = |name: &str| match manager.domain_id(name) {
        Ok(id) => manager.domain(id).is_some_and(|d| scope.contains(&d.pool)),
        Err(_) => true,
    };
    let allow = |ok: bool, command: Command| {
        if ok {
            Ok(TenantOp::Run(command))
        } else {
            Err(refused())
        }
    };
    match command {
        Command::Help => Ok(TenantOp::Run(Command::Help)),
        Command::List {
            long,
            pool,
            cpupool,
            domain,
        } => {
            let ok = pool.as_deref().is_none_or(pool_ok) && domain.as_deref().is_none_or(domain_ok);
            allow(
                ok,
                Command::List {
                    long,
                    pool: Some(pool.unwrap_or_else(|| own.clone())),
                    cpupool,
                    domain,
                },
            )
        }
        Command::CreditShow { pool } => {
            let ok = pool.as_deref().is_none_or(pool_ok);
            allow(
                ok,
                Command::CreditShow {
                    pool: Some(pool.unwrap_or_else(|| own.clone())),
                },
            )
        }
        Command::SedfShow { pool } => {
            let ok = pool.as_deref().is_none_or(pool_ok);
            allow(
                ok,
                Command::SedfShow {
                    pool: Some(pool.unwrap_or_else(|| own.clone())),
                },
            )
        }
        Command::PoolList { cpus, long, pools } => {
            if pools.is_empty() {
                Ok(TenantOp::Run(Command::PoolList {
                    cpus,
                    long,
                    pools: names.clone(),
                }))
            } else {
                let ok = pools.iter().all(|p| pool_ok(p));
                allow(ok, Command::PoolList { cpus, long, pools })
            }
        }
        Command::Create(DomainSource::Inline(config)) => {
            // No pool means Pool-0: a tenant names its pool.
            let ok = config.pool.as_deref().is_some_and(pool_ok) && domain_ok(&config.name);
            allow(ok, Command::Create(DomainSource::Inline(config)))
        }
        Command::Destroy(d) => {
            let ok = domain_ok(&d);
            allow(ok, Command::Destroy(d))
        }
        Command::Pause(d) => {
            let ok = domain_ok(&d);
            allow(ok, Command::Pause(d))
        }
        Command::Unpause(d) => {
            let ok = domain_ok(&d);
            allow(ok, Command::Unpause(d))
        }
        Command::VcpuList(Some(d)) => {
            let ok = domain_ok(&d);
            allow(ok, Command::VcpuList(Some(d)))
        }
        // A hard affinity has effect only within the domain's pool (the
        // rules refuse a set without a CPU of it; CPUs outside are unused);
        // a soft one only where it meets the hard one.
        Command::VcpuPin {
            domain,
            vcpu,
            cpus,
            soft,
        } => {
            let ok = domain_ok(&domain);
            allow(
                ok,
                Command::VcpuPin {
                    domain,
                    vcpu,
                    cpus,
                    soft,
                },
            )
        }
        Command::VcpuSet {
            domain,
            online,
            ignore_host,
        } => {
            let ok = domain_ok(&domain);
            allow(
                ok,
                Command::VcpuSet {
                    domain,
                    online,
                    ignore_host,
                },
            )
        }
        Command::Migrate { domain, pool } => {
            let ok = domain_ok(&domain) && pool_ok(&pool);
            allow(ok, Command::Migrate { domain, pool })
        }
        Command::CreditDomain {
            domain,
            weight,
            cap_pct,
        } => {
            let ok = domain_ok(&domain);
            allow(
                ok,
                Command::CreditDomain {
                    domain,
                    weight,
                    cap_pct,
                },
            )
        }
        Command::CreditPool {
            pool,
            timeslice_ms,
            ratelimit_us,
        } => {
            // No pool is Pool-0, as in xl.
            let ok = pool.as_deref().map_or(scope.contains(&POOL0), pool_ok);
            allow(
                ok,
                Command::CreditPool {
                    pool,
                    timeslice_ms,
                    ratelimit_us,
                },
            )
        }
        Command::SedfDomain {
            domain,
            period_ms,
            slice_ms,
            extra,
        } => {
            let ok = domain_ok(&domain);
            allow(
                ok,
                Command::SedfDomain {
                    domain,
                    period_ms,
                    slice_ms,
                    extra,
                },
            )
        }
        Command::ParamDomain { domain, params } => {
            let ok = domain_ok(&domain);
            allow(ok, Command::ParamDomain { domain, params })
        }
        Command::ParamPool { pool, params } => {
            let ok = pool_ok(&pool);
            allow(ok, Command::ParamPool { pool, params })
        }
        Command::Group { domain, master } => {
            let ok = domain_ok(&domain) && master.as_deref().is_none_or(domain_ok);
            allow(ok, Command::Group { domain, master })
        }
        Command::PoolCreate(PoolSource::Inline(spec)) => carve(manager, pool, spec),
        Command::PoolDestroy(p) => match manager.pool_id(&p) {
            Ok(id) if carved.get(&id) == Some(&pool) => Ok(TenantOp::Uncarve(id)),
            Ok(_) => Err(refused()),
            Err(e) => Err(format!("{p}: {e}")),
        },
        // Whole-machine reads, config files, CPUs, loans, delegation, pool
        // definitions, policies, fault injection, waits and scripts are the
        // administrator's.
        Command::Info
        | Command::Create(DomainSource::File(_))
        | Command::PoolCreate(PoolSource::File(_))
        | Command::PoolNew(_)
        | Command::PoolStart(_)
        | Command::PoolDelete(_)
        | Command::PoolRename { .. }
        | Command::CpuAdd { .. }
        | Command::CpuRemove { .. }
        | Command::Loan { .. }
        | Command::LoanEnd { .. }
        | Command::Delegate { .. }
        | Command::Undelegate { .. }
        | Command::PoolSched { .. }
        | Command::NumaSplit
        | Command::VcpuList(None)
        | Command::Top { .. }
        | Command::ServerFault { .. }
        | Command::Sleep(_)
        | Command::Console(_)
        | Command::Repeat { .. }
        | Command::Poweroff => Err(refused()),
    }
}

/// A tenant's `cpupool-create`: a sub-pool from CPUs of its pool (a list or
/// range of them, or a count: its highest ones); the pool keeps one.
fn carve(manager: &PoolManager, parent: PoolId, spec: PoolSpec) -> Result<TenantOp, String> {
    let name = spec.name.clone();
    let owned: BTreeSet<u32> = manager
        .pool(parent)
        .map(|p| p.cpus.clone())
        .unwrap_or_default();
    let wanted: BTreeSet<u32> = match &spec.cpus {
        CpuRequest::List(list) => list.clone(),
        CpuRequest::Count(n) => owned.iter().rev().take(*n as usize).copied().collect(),
    };
    if let Some(cpu) = wanted.iter().find(|c| !owned.contains(c)) {
        return Err(format!("{name}: CPU {cpu} is not in your pool"));
    }
    if wanted.len() >= owned.len() || wanted.is_empty() {
        return Err(format!("{name}: your pool must keep at least one CPU"));
    }
    if manager.pool_id(&name).is_ok() {
        return Err(format!("{name}: a pool named {name} already exists"));
    }
    Ok(TenantOp::Carve(PoolSpec {
        cpus: CpuRequest::List(wanted),
        ..spec
    }))
}

#[cfg(test)]
mod tests;
