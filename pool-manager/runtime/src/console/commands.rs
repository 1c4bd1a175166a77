//! The console's commands: a table from each typed command
//! (`tarn_pool_manager::command::Command`, parsed and checked from the
//! line) to its handler ([`Console::run`]), then the handlers, each under
//! its usage line. A handler calls the manager ([`Pools`]: its rules and
//! its runtime) and prints what xl prints; it decides nothing about pools
//! itself. The usage text and help of every command are defined once,
//! with the parser (`tarn_pool_manager::command::COMMANDS`: `help` prints
//! them, parse errors quote them, the host tests send every command of
//! them as a tenant). The table is a `match`, so the compiler checks that
//! every command has exactly one handler.

use super::views::{
    cpupool_list, credit_domain_text, credit_pool_text, credit_show, list_command, print_params,
    sedf_domain_text, sedf_show, vcpu_list,
};
use super::{topology, topology_now, Console};
use crate::manager::Pools;
use crate::say;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use tarn_pool_manager::command::{
    Command, DomainSource, PoolSource, ServerFault, COMMANDS, NOT_BUILT,
};
use tarn_pool_manager::config;
use tarn_pool_manager::pools::{self as rules, DomainId, DomainParams, PoolId, CONTROL_DOMAIN};
use tarn_pool_manager::xl;
use tarn_rt::abi::sched_protocol::Misbehaviour;
use tarn_rt::layout::slot;
use tarn_rt::{invoke, Resources};

impl Console {
    /// Runs one parsed command: the table of xl commands. `help`, `info`,
    /// `sleep`, `repeat` and `poweroff` run without pools; the others need
    /// them.
    pub(crate) fn run(
        &mut self,
        res: &mut Resources,
        pools: Option<&mut Pools>,
        command: Command,
    ) -> Result<(), String> {
        match command {
            Command::Help => help(),
            Command::Info => {
                self.info_command(res, pools.as_deref());
                Ok(())
            }
            Command::Sleep(ms) => {
                self.pause(res, pools, ms);
                Ok(())
            }
            Command::Repeat { count, commands } => self.repeat(res, pools, count, &commands),
            Command::Poweroff => poweroff(),
            Command::List {
                long,
                pool,
                cpupool,
                domain,
            } => list_command(
                need(pools)?,
                long,
                pool.as_deref(),
                cpupool,
                domain.as_deref(),
            ),
            Command::Create(source) => create(res, need(pools)?, source),
            Command::Destroy(d) => destroy(res, need(pools)?, &d),
            Command::Console(d) => self.attach(need(pools)?, &d),
            Command::Pause(d) => pause(need(pools)?, &d, true),
            Command::Unpause(d) => pause(need(pools)?, &d, false),
            Command::PoolCreate(source) => self.pool_create(res, need(pools)?, source),
            Command::PoolNew(source) => self.pool_new(need(pools)?, source),
            Command::PoolStart(p) => pool_start(res, need(pools)?, &p),
            Command::PoolDestroy(p) => pool_destroy(res, need(pools)?, &p),
            Command::PoolDelete(p) => pool_delete(need(pools)?, &p),
            Command::NumaSplit => need(pools)?.numa_split(res, &topology(self.info)),
            Command::PoolRename { pool, name } => pool_rename(need(pools)?, &pool, &name),
            Command::CpuAdd { pool, cpus } => cpu_add(res, need(pools)?, &pool, cpus),
            Command::CpuRemove { pool, cpus } => cpu_remove(res, need(pools)?, &pool, cpus),
            Command::Migrate { domain, pool } => migrate(res, need(pools)?, &domain, &pool),
            Command::Loan { cpu, pool, ms } => loan(res, need(pools)?, cpu, &pool, ms),
            Command::LoanEnd { cpu } => loan_end(res, need(pools)?, cpu),
            Command::Delegate { pool, domain } => delegate(res, need(pools)?, &pool, &domain),
            Command::Undelegate { pool, domain } => undelegate(res, need(pools)?, &pool, &domain),
            Command::PoolSched { pool, sched } => pool_sched(res, need(pools)?, &pool, sched),
            Command::PoolList {
                cpus,
                long,
                pools: names,
            } => cpupool_list(need(pools)?, cpus, long, &names),
            Command::CreditShow { pool } => {
                let pools = need(pools)?;
                let only = match pool {
                    Some(p) => Some(pool_id(pools, &p)?),
                    None => None,
                };
                credit_show(pools, only)
            }
            Command::CreditDomain {
                domain,
                weight,
                cap_pct,
            } => credit_domain(need(pools)?, &domain, weight, cap_pct),
            Command::CreditPool {
                pool,
                timeslice_ms,
                ratelimit_us,
            } => credit_pool(need(pools)?, pool.as_deref(), timeslice_ms, ratelimit_us),
            Command::SedfShow { pool } => {
                let pools = need(pools)?;
                let only = match pool {
                    Some(p) => Some(pool_id(pools, &p)?),
                    None => None,
                };
                sedf_show(pools, only)
            }
            Command::SedfDomain {
                domain,
                period_ms,
                slice_ms,
                extra,
            } => sedf_domain(need(pools)?, &domain, period_ms, slice_ms, extra),
            Command::ParamDomain { domain, params } => param_domain(need(pools)?, &domain, &params),
            Command::ParamPool { pool, params } => param_pool(need(pools)?, &pool, &params),
            Command::Group { domain, master } => group(need(pools)?, &domain, master.as_deref()),
            Command::VcpuList(only) => {
                vcpu_list_of(need(pools)?, only.as_deref(), self.info.cpu_count as u32)
            }
            Command::VcpuPin {
                domain,
                vcpu,
                cpus,
                soft,
            } => {
                let pools = need(pools)?;
                let id = domain_id(pools, &domain)?;
                pools
                    .pin(id, vcpu, cpus, soft)
                    .map_err(|e| format!("{domain}: {e}"))
            }
            Command::VcpuSet {
                domain,
                online,
                ignore_host,
            } => {
                let pools = need(pools)?;
                let id = domain_id(pools, &domain)?;
                let host_cpus = self.info.cpu_count as u32;
                pools
                    .set_online(id, online, ignore_host, host_cpus)
                    .map_err(|e| format!("{domain}: {e}"))
            }
            Command::Top { json, ms } => self.top(res, need(pools)?, json, ms),
            Command::ServerFault { pool, fault } => {
                self.server_fault(res, need(pools)?, &pool, fault)
            }
        }
    }

    /// `console D`: the serial console attaches to Linux domain D's UART.
    fn attach(&mut self, pools: &mut Pools, d: &str) -> Result<(), String> {
        let id = domain_id(pools, d)?;
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

    /// `cpupool-create KEY=VALUE... | [-n] [-f] FILE [KEY=VALUE...]`.
    fn pool_create(
        &mut self,
        res: &mut Resources,
        pools: &mut Pools,
        source: PoolSource,
    ) -> Result<(), String> {
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

    /// `cpupool-new KEY=VALUE... | [-f] FILE [KEY=VALUE...]` (also
    /// `pool-new`).
    fn pool_new(&mut self, pools: &mut Pools, source: PoolSource) -> Result<(), String> {
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

    /// `server-fault P crash|hang|ignore-remove`: fault injection.
    fn server_fault(
        &mut self,
        res: &mut Resources,
        pools: &mut Pools,
        p: &str,
        fault: ServerFault,
    ) -> Result<(), String> {
        let id = pool_id(pools, p)?;
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
}

/// The pools, for a command that needs them.
fn need(pools: Option<&mut Pools>) -> Result<&mut Pools, String> {
    pools.ok_or_else(|| String::from("no pools on this machine"))
}

/// The domain named `name` (or numbered).
fn domain_id(pools: &Pools, name: &str) -> Result<DomainId, String> {
    pools
        .manager
        .domain_id(name)
        .map_err(|e| format!("{name}: {e}"))
}

/// The pool named `name` (or numbered).
fn pool_id(pools: &Pools, name: &str) -> Result<PoolId, String> {
    pools
        .manager
        .pool_id(name)
        .map_err(|e| format!("{name}: {e}"))
}

/// `help`.
fn help() -> Result<(), String> {
    for (usage, what) in COMMANDS {
        say!("  {usage:<28} {what}");
    }
    if !NOT_BUILT.is_empty() {
        say!("  (not built yet: {})", NOT_BUILT.join(" "));
    }
    Ok(())
}

/// `poweroff`.
fn poweroff() -> Result<(), String> {
    let _ = invoke::machine_power_off(slot::MACHINE, 0);
    Err(String::from("poweroff failed"))
}

/// `destroy D`.
fn destroy(res: &mut Resources, pools: &mut Pools, d: &str) -> Result<(), String> {
    let id = domain_id(pools, d)?;
    pools.destroy(res, id).map_err(|e| format!("{d}: {e}"))
}

/// `pause D` / `unpause D`.
fn pause(pools: &mut Pools, d: &str, paused: bool) -> Result<(), String> {
    let id = domain_id(pools, d)?;
    pools.set_paused(id, paused)
}

/// `cpupool-start P`.
fn pool_start(res: &mut Resources, pools: &mut Pools, p: &str) -> Result<(), String> {
    let id = pool_id(pools, p)?;
    pools.activate(res, p, false, |m| m.activate(id))?;
    Ok(())
}

/// `cpupool-destroy P`.
fn pool_destroy(res: &mut Resources, pools: &mut Pools, p: &str) -> Result<(), String> {
    let id = pool_id(pools, p)?;
    pools.operate(res, p, |m| m.deactivate(id))
}

/// `cpupool-delete P`.
fn pool_delete(pools: &mut Pools, p: &str) -> Result<(), String> {
    let id = pool_id(pools, p)?;
    pools.manager.delete(id).map_err(|e| format!("{p}: {e}"))
}

/// `cpupool-rename P NAME`.
fn pool_rename(pools: &mut Pools, p: &str, name: &str) -> Result<(), String> {
    let id = pool_id(pools, p)?;
    pools
        .manager
        .rename(id, name)
        .map_err(|e| format!("{p}: {e}"))
}

/// `cpupool-cpu-add P CPUS`: each CPU refused is reported, the others are
/// added.
fn cpu_add(
    res: &mut Resources,
    pools: &mut Pools,
    p: &str,
    cpus: impl IntoIterator<Item = u32>,
) -> Result<(), String> {
    let id = pool_id(pools, p)?;
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

/// `cpupool-cpu-remove P CPUS`: one at a time, each negotiated.
fn cpu_remove(
    res: &mut Resources,
    pools: &mut Pools,
    p: &str,
    cpus: impl IntoIterator<Item = u32>,
) -> Result<(), String> {
    let id = pool_id(pools, p)?;
    for cpu in cpus {
        pools.operate(res, p, |m| m.cpu_remove(id, cpu))?;
    }
    Ok(())
}

/// `cpupool-migrate D P` (`migrate.rs` carries it out).
fn migrate(res: &mut Resources, pools: &mut Pools, d: &str, p: &str) -> Result<(), String> {
    let did = domain_id(pools, d)?;
    let pid = pool_id(pools, p)?;
    pools.operate(res, d, |m| m.migrate(did, pid))
}

/// `cpupool-cpu-loan CPU P MS` (`loans.rs`).
fn loan(res: &mut Resources, pools: &mut Pools, cpu: u32, p: &str, ms: u64) -> Result<(), String> {
    let id = pool_id(pools, p)?;
    let from = pools.lend(res, cpu, id, ms)?;
    say!("loan: CPU {cpu} lent by {from} to {p} for {ms} ms");
    Ok(())
}

/// `cpupool-cpu-loan-end CPU`.
fn loan_end(res: &mut Resources, pools: &mut Pools, cpu: u32) -> Result<(), String> {
    pools.end_loan(res, cpu)?;
    say!("loan: CPU {cpu} returned");
    Ok(())
}

/// `cpupool-delegate P D` (`tenants.rs`).
fn delegate(res: &mut Resources, pools: &mut Pools, p: &str, d: &str) -> Result<(), String> {
    let pid = pool_id(pools, p)?;
    let did = domain_id(pools, d)?;
    pools
        .delegate(res, pid, did)
        .map_err(|e| format!("{d}: {e}"))?;
    say!("{d} now manages {p}");
    Ok(())
}

/// `cpupool-undelegate P D`.
fn undelegate(res: &mut Resources, pools: &mut Pools, p: &str, d: &str) -> Result<(), String> {
    let pid = pool_id(pools, p)?;
    let did = domain_id(pools, d)?;
    pools
        .undelegate(res, pid, did)
        .map_err(|e| format!("{d}: {e}"))?;
    say!("{d} no longer manages {p}");
    Ok(())
}

/// `cpupool-sched P SCHED`: a live policy change (`servers.rs`).
fn pool_sched(
    res: &mut Resources,
    pools: &mut Pools,
    p: &str,
    sched: rules::Sched,
) -> Result<(), String> {
    let id = pool_id(pools, p)?;
    pools.operate(res, p, |m| m.set_scheduler(id, sched))
}

/// The pool of domain `d` (`id`), which must run `policy` (xl refuses
/// another scheduler's parameters; nothing is stored then).
fn pool_running(pools: &Pools, id: DomainId, d: &str, policy: &str) -> Result<PoolId, String> {
    if id == CONTROL_DOMAIN {
        return Err(format!(
            "{d}: the control domain is a system task, not scheduled by a pool's server"
        ));
    }
    let pool = pools
        .manager
        .domain(id)
        .map(|x| x.pool)
        .ok_or_else(|| format!("{d}: no such domain"))?;
    let running = pools.policy_of(pool);
    if running != policy {
        let name = pools
            .manager
            .pool(pool)
            .map_or("?", |p| p.spec.name.as_str());
        return Err(format!(
            "{d}: scheduler of the domain is {running} not {policy} (cpupool {name}); nothing was changed"
        ));
    }
    Ok(pool)
}

/// `sched-credit -d D [-w W] [-c CAP]`: without `-w`/`-c`, the domain's
/// line; a weight outside 1..65535 or a cap above 100 per vCPU is refused
/// with libxl's words.
fn credit_domain(
    pools: &mut Pools,
    d: &str,
    weight: Option<u32>,
    cap_pct: Option<u32>,
) -> Result<(), String> {
    let id = domain_id(pools, d)?;
    let pool = pool_running(pools, id, d, "credit")?;
    if weight.is_none() && cap_pct.is_none() {
        let line = credit_domain_text(pools, pool, id, d)?;
        say!("{}", xl::credit_domain_header());
        say!("{line}");
        return Ok(());
    }
    let vcpus = pools.manager.domain(id).map_or(1, |x| x.vcpus);
    let mut changes = DomainParams::new();
    if let Some(w) = weight {
        if !(1..=65535).contains(&w) {
            return Err(format!(
                "{d}: Cpu weight out of range, valid values are within range from 1 to 65535"
            ));
        }
        changes.set("weight", &format!("{w}"));
    }
    if let Some(c) = cap_pct {
        let most = u64::from(vcpus) * 100;
        if u64::from(c) > most {
            return Err(format!(
                "{d}: Cpu cap out of range, valid range is from 0 to {most} for specified number of vcpus"
            ));
        }
        changes.set("cap", &format!("{c}"));
    }
    pools
        .set_params(id, changes, false)
        .map_err(|e| format!("{d}: {e}"))
}

/// `sched-credit -s [-p P] [-t MS] [-r US]`: Pool-0 without `-p`, as xl's
/// pool id 0; without `-t`/`-r`, the pool's line.
fn credit_pool(
    pools: &mut Pools,
    p: Option<&str>,
    timeslice_ms: Option<u32>,
    ratelimit_us: Option<u32>,
) -> Result<(), String> {
    let id = match p {
        Some(p) => pool_id(pools, p)?,
        None => rules::POOL0,
    };
    let name = pools
        .manager
        .pool(id)
        .map(|x| x.spec.name.clone())
        .unwrap_or_default();
    let running = pools.policy_of(id);
    if running != "credit" {
        return Err(format!(
            "{name}: cpupool runs {running} not credit; nothing was changed"
        ));
    }
    if timeslice_ms.is_none() && ratelimit_us.is_none() {
        let line = credit_pool_text(pools, id, &name)?;
        say!("{line}");
        return Ok(());
    }
    let mut pairs = Vec::new();
    if let Some(t) = timeslice_ms {
        pairs.push(format!("timeslice_ms={t}"));
    }
    if let Some(r) = ratelimit_us {
        pairs.push(format!("ratelimit_us={r}"));
    }
    pools
        .set_pool_params(id, &pairs.join(" "))
        .map_err(|e| format!("{name}: {e}"))
}

/// `sched-sedf -d D [-p PERIOD] [-s SLICE] [-e EXTRA]`: what is not given
/// keeps its value; nothing given shows the domain's line.
fn sedf_domain(
    pools: &mut Pools,
    d: &str,
    period_ms: Option<u32>,
    slice_ms: Option<u32>,
    extra: Option<bool>,
) -> Result<(), String> {
    let id = domain_id(pools, d)?;
    let pool = pool_running(pools, id, d, "sedf")?;
    if period_ms.is_none() && slice_ms.is_none() && extra.is_none() {
        let line = sedf_domain_text(pools, pool, id, d)?;
        say!("{}", xl::sedf_domain_header());
        say!("{line}");
        return Ok(());
    }
    let mut changes = DomainParams::new();
    if let Some(period) = period_ms {
        changes.set("period", &format!("{period}"));
    }
    if let Some(slice) = slice_ms {
        changes.set("slice", &format!("{slice}"));
    }
    if let Some(extra) = extra {
        changes.set("extra", if extra { "1" } else { "0" });
    }
    pools
        .set_params(id, changes, false)
        .map_err(|e| format!("{d}: {e}"))
}

/// `sched-param -d D [KEY=VALUE...]`: without pairs, the list.
fn param_domain(pools: &mut Pools, d: &str, params: &[(String, String)]) -> Result<(), String> {
    let id = domain_id(pools, d)?;
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
    for (key, value) in params {
        changes.set(key, value);
    }
    pools
        .set_params(id, changes, true)
        .map_err(|e| format!("{d}: {e}"))
}

/// `sched-param -p P [KEY=VALUE...]`: without pairs, the list.
fn param_pool(pools: &mut Pools, p: &str, params: &[(String, String)]) -> Result<(), String> {
    let id = pool_id(pools, p)?;
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

/// `sched-group D [MASTER]`.
fn group(pools: &mut Pools, d: &str, master: Option<&str>) -> Result<(), String> {
    let id = domain_id(pools, d)?;
    let master = match master {
        Some(m) => Some(domain_id(pools, m)?),
        None => None,
    };
    pools.set_group(id, master)
}

/// `vcpu-list [D]`.
fn vcpu_list_of(pools: &mut Pools, only: Option<&str>, nr_cpus: u32) -> Result<(), String> {
    let only = match only {
        Some(d) => Some(domain_id(pools, d)?),
        None => None,
    };
    vcpu_list(pools, only, nr_cpus);
    Ok(())
}

/// The spec of `cpupool-create` / `cpupool-new`: given, or read from a
/// config file of the boot image with its `var=value` overrides (one
/// warning line per key it does not use). `None` for a dry run (`-n`),
/// which prints the resulting config instead.
fn pool_spec(
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

/// `create KEY=VALUE... | [-n] [-f] FILE [KEY=VALUE...]`: a domain from an
/// inline config or a config file, built by the manager; with `-n` the
/// file's resulting config is printed and nothing is created.
fn create(res: &mut Resources, pools: &mut Pools, source: DomainSource) -> Result<(), String> {
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
            if file.dry_run {
                say!("Parsing config from {name}");
                for w in &config.warnings {
                    say!("warning: {name}: {w}");
                }
                for line in config::format_domain_config(&config).lines() {
                    say!("{line}");
                }
                return Ok(());
            }
            (config, name)
        }
    };
    pools.create_from_config(res, &config, &origin)
}
