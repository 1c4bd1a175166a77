//! The console's commands: the table from each typed command
//! (`tarn_pool_manager::command::Command`, parsed and checked from the
//! line) to its handler, which calls the manager ([`Pools`]: its rules
//! and its runtime) and prints what xl prints. The usage text and help of
//! every command live with the parser (`tarn_pool_manager::command::
//! COMMANDS`: `help` prints it, parse errors quote it, and the host tests
//! send every command of it as a tenant). The table is a `match`, so the
//! compiler checks that every command has exactly one handler.

use super::views::{cpupool_list, credit_table, list_command, print_params, sedf_table, vcpu_list};
use super::{topology, topology_now, Console};
use crate::manager::Pools;
use crate::say;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use tarn_pool_manager::command::{Command, DomainSource, PoolSource, ServerFault};
use tarn_pool_manager::config;
use tarn_pool_manager::pools::{self as rules, DomainParams};
use tarn_rt::abi::sched_protocol::Misbehaviour;
use tarn_rt::Resources;

impl Console {
    pub(crate) fn pool_command(
        &mut self,
        res: &mut Resources,
        pools: &mut Pools,
        command: Command,
    ) -> Result<(), String> {
        let domain = |pools: &Pools, name: &str| {
            pools
                .manager
                .domain_id(name)
                .map_err(|e| format!("{name}: {e}"))
        };
        let pool = |pools: &Pools, name: &str| {
            pools
                .manager
                .pool_id(name)
                .map_err(|e| format!("{name}: {e}"))
        };
        match command {
            Command::List { long, pool } => list_command(pools, long, pool.as_deref()),
            Command::Create(source) => create_domain(res, pools, source),
            Command::Destroy(d) => {
                let id = domain(pools, &d)?;
                pools.destroy(res, id).map_err(|e| format!("{d}: {e}"))
            }
            Command::Console(d) => {
                let id = domain(pools, &d)?;
                let ring = crate::linux::console(id.0)
                    .ok_or_else(|| format!("{d}: not a Linux domain (no UART to attach to)"))?;
                if crate::output::capturing() {
                    return Err(String::from(
                        "console: attach from the serial console (the control channel carries no terminal)",
                    ));
                }
                ring.set_attached(true);
                self.attached = Some(id.0);
                say!("Connected to {d}'s console; Ctrl-] detaches");
                Ok(())
            }
            Command::Pause(d) => {
                let id = domain(pools, &d)?;
                pools.set_paused(id, true)
            }
            Command::Unpause(d) => {
                let id = domain(pools, &d)?;
                pools.set_paused(id, false)
            }
            Command::PoolCreate(source) => {
                let Some(spec) = pool_spec(source, &topology_now(self.info, pools))? else {
                    return Ok(());
                };
                // xl's lines, before it creates the pool.
                let n_cpus = match &spec.cpus {
                    rules::CpuRequest::Count(n) => *n as usize,
                    rules::CpuRequest::List(cpus) => cpus.len(),
                };
                say!("cpupool name:   {}", spec.name);
                say!("scheduler:      {}", spec.sched.name());
                say!("number of cpus: {n_cpus}");
                let name = spec.name.clone();
                pools.activate(res, &name, true, |m| {
                    m.create(spec).map(|(_, actions)| actions)
                })?;
                Ok(())
            }
            Command::PoolNew(source) => {
                let Some(spec) = pool_spec(source, &topology_now(self.info, pools))? else {
                    return Ok(());
                };
                let name = spec.name.clone();
                pools
                    .manager
                    .define(spec)
                    .map_err(|e| format!("{name}: {e}"))?;
                Ok(())
            }
            Command::PoolStart(p) => {
                let id = pool(pools, &p)?;
                pools.activate(res, &p, false, |m| m.activate(id))?;
                Ok(())
            }
            Command::PoolDestroy(p) => {
                let id = pool(pools, &p)?;
                pools.operate(res, &p, |m| m.deactivate(id))
            }
            Command::PoolDelete(p) => {
                let id = pool(pools, &p)?;
                pools.manager.delete(id).map_err(|e| format!("{p}: {e}"))
            }
            Command::NumaSplit => pools.numa_split(res, &topology(self.info)),
            Command::PoolRename { pool: p, name } => {
                let id = pool(pools, &p)?;
                pools
                    .manager
                    .rename(id, &name)
                    .map_err(|e| format!("{p}: {e}"))
            }
            Command::CpuAdd { pool: p, cpus } => {
                let id = pool(pools, &p)?;
                let list: Vec<u32> = cpus.into_iter().collect();
                let report = pools
                    .manager
                    .cpu_add(id, &list)
                    .map_err(|e| format!("{p}: {e}"))?;
                for (cpu, result) in &report.results {
                    if let Err(e) = result {
                        say!("error: CPU {cpu}: {e}");
                    }
                }
                pools.apply(res, report.actions);
                Ok(())
            }
            Command::CpuRemove { pool: p, cpus } => {
                let id = pool(pools, &p)?;
                for cpu in cpus {
                    pools.operate(res, &p, |m| m.cpu_remove(id, cpu))?;
                }
                Ok(())
            }
            Command::Migrate { domain: d, pool: p } => {
                let did = domain(pools, &d)?;
                let pid = pool(pools, &p)?;
                pools.operate(res, &d, |m| m.migrate(did, pid))
            }
            Command::Loan { cpu, pool: p, ms } => {
                let id = pool(pools, &p)?;
                let from = pools.lend(res, cpu, id, ms)?;
                say!("loan: CPU {cpu} lent by {from} to {p} for {ms} ms");
                Ok(())
            }
            Command::LoanEnd { cpu } => {
                pools.end_loan(res, cpu)?;
                say!("loan: CPU {cpu} returned");
                Ok(())
            }
            Command::Delegate { pool: p, domain: d } => {
                let pid = pool(pools, &p)?;
                let did = domain(pools, &d)?;
                pools
                    .delegate(res, pid, did)
                    .map_err(|e| format!("{d}: {e}"))?;
                say!("{d} now manages {p}");
                Ok(())
            }
            Command::Undelegate { pool: p, domain: d } => {
                let pid = pool(pools, &p)?;
                let did = domain(pools, &d)?;
                pools
                    .undelegate(res, pid, did)
                    .map_err(|e| format!("{d}: {e}"))?;
                say!("{d} no longer manages {p}");
                Ok(())
            }
            Command::PoolSched { pool: p, sched } => {
                let id = pool(pools, &p)?;
                pools.operate(res, &p, |m| m.set_scheduler(id, sched))
            }
            Command::PoolList {
                cpus,
                long,
                pools: names,
            } => cpupool_list(pools, cpus, long, &names),
            Command::CreditTable => {
                credit_table(pools);
                Ok(())
            }
            Command::CreditDomain {
                domain: d,
                weight,
                cap_pct,
            } => {
                let id = domain(pools, &d)?;
                let mut changes = DomainParams::new();
                if let Some(w) = weight {
                    changes.set("weight", &format!("{w}"));
                }
                if let Some(c) = cap_pct {
                    changes.set("cap", &format!("{c}"));
                }
                pools
                    .set_params(id, changes, false)
                    .map_err(|e| format!("{d}: {e}"))
            }
            Command::CreditPool {
                pool: p,
                timeslice_ms,
                ratelimit_us,
            } => {
                let id = pool(pools, &p)?;
                let mut pairs = Vec::new();
                if let Some(t) = timeslice_ms {
                    pairs.push(format!("timeslice_ms={t}"));
                }
                if let Some(r) = ratelimit_us {
                    pairs.push(format!("ratelimit_us={r}"));
                }
                pools
                    .set_pool_params(id, &pairs.join(" "))
                    .map_err(|e| format!("{p}: {e}"))
            }
            Command::SedfTable => {
                sedf_table(pools);
                Ok(())
            }
            Command::SedfDomain {
                domain: d,
                period_ms,
                slice_ms,
                extra,
            } => {
                let id = domain(pools, &d)?;
                let mut changes = DomainParams::new();
                changes.set("period", &format!("{period_ms}"));
                changes.set("slice", &format!("{slice_ms}"));
                changes.set("extra", if extra { "1" } else { "0" });
                pools
                    .set_params(id, changes, false)
                    .map_err(|e| format!("{d}: {e}"))
            }
            Command::ParamDomain { domain: d, params } => {
                let id = domain(pools, &d)?;
                if params.is_empty() {
                    let pool = pools
                        .manager
                        .domain(id)
                        .map(|x| x.pool)
                        .ok_or("no such domain")?;
                    let (policy, list) = pools
                        .param_list(pool, Some(id))
                        .map_err(|e| format!("{d}: {e}"))?;
                    print_params(&format!("{d} (policy {policy})"), &list);
                    return Ok(());
                }
                let mut changes = DomainParams::new();
                for (key, value) in &params {
                    changes.set(key, value);
                }
                pools
                    .set_params(id, changes, true)
                    .map_err(|e| format!("{d}: {e}"))
            }
            Command::ParamPool { pool: p, params } => {
                let id = pool(pools, &p)?;
                if params.is_empty() {
                    let (policy, list) = pools
                        .param_list(id, None)
                        .map_err(|e| format!("{p}: {e}"))?;
                    print_params(&format!("cpupool {p} (policy {policy})"), &list);
                    return Ok(());
                }
                let text: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                pools
                    .set_pool_params(id, &text.join(" "))
                    .map_err(|e| format!("{p}: {e}"))
            }
            Command::Group { domain: d, master } => {
                let id = domain(pools, &d)?;
                let master = match master {
                    Some(m) => Some(domain(pools, &m)?),
                    None => None,
                };
                pools.set_group(id, master)
            }
            Command::VcpuList(only) => {
                let only = match only {
                    Some(d) => Some(domain(pools, &d)?),
                    None => None,
                };
                vcpu_list(pools, only);
                Ok(())
            }
            Command::Top { json, ms } => self.top(res, pools, json, ms),
            Command::ServerFault { pool: p, fault } => {
                let id = pool(pools, &p)?;
                let how = match fault {
                    ServerFault::Crash => Misbehaviour::Crash,
                    ServerFault::Hang => Misbehaviour::Hang,
                    ServerFault::IgnoreRemove => Misbehaviour::IgnoreRemoveCpu,
                };
                pools.misbehave(id, how)?;
                // A crash shows up as a fault message: give the watcher a moment.
                let _ = tarn_rt::sleep(self.sleeper, 5_000_000);
                pools.service(res);
                Ok(())
            }
            // Handled by `run` without the pools.
            Command::Help
            | Command::Info
            | Command::Sleep(_)
            | Command::Repeat { .. }
            | Command::Poweroff => Ok(()),
        }
    }
}

/// The spec of `cpupool-create` / `cpupool-new`: given, or read from a
/// config file of the boot image with its `var=value` overrides (one
/// warning line per key it does not use). `None` for a dry run (`-n`),
/// which prints the resulting config instead.
pub(crate) fn pool_spec(
    source: PoolSource,
    topology: &config::Topology,
) -> Result<Option<rules::PoolSpec>, String> {
    match source {
        PoolSource::Inline(spec) => Ok(Some(spec)),
        PoolSource::File(file) => {
            let name = &file.name;
            let text = crate::configs::config_file(true, name)
                .ok_or_else(|| format!("no pool config file {name} (see info)"))?;
            let (spec, warnings) = config::parse_pool_config_with(&text, &file.overrides, topology)
                .map_err(|e| format!("{name}: {e}"))?;
            say!("Using config file \"{name}\"");
            for w in &warnings {
                say!("warning: {name}: {w}");
            }
            if file.dry_run {
                for line in config::format_pool_config(&spec).lines() {
                    say!("{line}");
                }
                return Ok(None);
            }
            Ok(Some(spec))
        }
    }
}

pub(crate) fn create_domain(
    res: &mut Resources,
    pools: &mut Pools,
    source: DomainSource,
) -> Result<(), String> {
    let (config, origin) = match source {
        DomainSource::Inline(config) => {
            let origin = config.name.clone();
            (config, origin)
        }
        DomainSource::File(file) => {
            let name = file.name;
            let body = crate::configs::config_file(false, &name)
                .ok_or_else(|| format!("no domain config file {name} (see info)"))?;
            let config = config::parse_domain_config_with(&body, &file.overrides)
                .map_err(|e| format!("{name}: {e}"))?;
            (config, name)
        }
    };
    pools.create_from_config(res, &config, &origin)
}
