//! What the console shows: `list`, `cpupool-list`, `top`, `info`,
//! `vcpu-list`, the `sched-credit`/`sched-sedf` tables and `sched-param`'s
//! list, as text in xl's layout or as JSON (`-l`, `--json`). Each reads
//! the manager ([`Pools::stats`] and the rules' state); none changes it.

use super::io::emit_line;
use super::Console;
use crate::courier::ParamInfo;
use crate::domains::DomainStat;
use crate::manager::Pools;
use crate::say;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use tarn_pool_manager::pools::{self as rules, DomainId, DomainParams, PoolId};
use tarn_pool_manager::xl;
use tarn_rt::layout::slot;
use tarn_rt::{invoke, Resources};

impl Console {
    /// `top [--json] [-d MS]`: each domain's share of one CPU over `ms`.
    pub(crate) fn top(
        &mut self,
        res: &mut Resources,
        pools: &mut Pools,
        json: bool,
        ms: u64,
    ) -> Result<(), String> {
        let split = || {
            invoke::machine_times(slot::MACHINE)
                .map(|t| [t.idle_ns, t.system_ns, t.dispatched_ns])
                .unwrap_or_default()
        };
        let before = pools.stats();
        let split_before = split();
        let start = self.clock.now_us();
        self.pause(res, Some(&mut *pools), ms);
        let after = pools.stats();
        let split_after = split();
        // Where all CPUs' time went: idle, system threads (servers, the
        // manager), dispatched domains; in ‰ of all CPU time.
        let spent: Vec<u64> = (0..3)
            .map(|i| split_after[i].saturating_sub(split_before[i]))
            .collect();
        let total = spent.iter().sum::<u64>().max(1);
        let part = |i: usize| (u128::from(spent[i]) * 1000 / u128::from(total)) as u64;
        let elapsed_ns = (self.clock.now_us() - start).max(1) * 1000;
        // One lookup per domain, not a walk of all of them (top is
        // quadratic otherwise: 10^6 comparisons at 1000 domains).
        let was: BTreeMap<DomainId, u64> = before.iter().map(|b| (b.id, b.cpu_ns)).collect();
        let rows: Vec<(&DomainStat, u64)> = after
            .iter()
            .map(|a| {
                (
                    a,
                    a.cpu_ns
                        .saturating_sub(was.get(&a.id).copied().unwrap_or(0)),
                )
            })
            .collect();
        // Per mille of one CPU, rounded.
        let share = |ran: u64| {
            (u128::from(ran) * 1000 + u128::from(elapsed_ns) / 2) / u128::from(elapsed_ns)
        };
        if json {
            let items: Vec<String> = rows
                .iter()
                .map(|(s, ran)| {
                    let pm = share(*ran);
                    format!(
                        "{{\"domid\":{},\"name\":{},\"pool\":{},\"state\":\"{}\",\"cpu_pct\":{}.{},\"cpu_ns\":{ran}}}",
                        s.id.0,
                        json_str(&s.name),
                        json_str(&s.pool),
                        s.state,
                        pm / 10,
                        pm % 10
                    )
                })
                .collect();
            emit_line(&format!(
                "{{\"interval_ms\":{},\"domains\":[{}],\"machine\":{{\"idle_pct\":{}.{},\"system_pct\":{}.{},\"domains_pct\":{}.{}}}}}",
                elapsed_ns / 1_000_000,
                items.join(","),
                part(0) / 10,
                part(0) % 10,
                part(1) / 10,
                part(1) % 10,
                part(2) / 10,
                part(2) % 10
            ));
        } else {
            say!(
                "{:<20} {:>3} {:>5} {:>7}  Pool",
                "Name",
                "ID",
                "State",
                "CPU(%)"
            );
            for (s, ran) in rows {
                let pm = share(ran);
                say!(
                    "{:<20} {:>3} {:>5} {:>5}.{}  {}",
                    s.name,
                    s.id.0,
                    s.state,
                    pm / 10,
                    pm % 10,
                    s.pool
                );
            }
            say!(
                "all CPUs: idle {}.{} %, system {}.{} %, domains {}.{} %",
                part(0) / 10,
                part(0) % 10,
                part(1) / 10,
                part(1) % 10,
                part(2) / 10,
                part(2) % 10
            );
        }
        Ok(())
    }

    pub(crate) fn info_command(&self, res: &Resources, pools: Option<&Pools>) {
        let info = self.info;
        let untyped: u64 = info.untyped().iter().map(|u| 1u64 << u.size_bits).sum();
        let modules: Vec<&str> = info.modules().iter().map(|m| m.name()).collect();
        // xl info's lines first, as xl prints them; Tarn's after them.
        say!(
            "{}",
            xl::info_line("nr_cpus", &format!("{}", info.cpu_count))
        );
        say!(
            "{}",
            xl::info_line("nr_nodes", &format!("{}", info.node_count))
        );
        if let Some(pools) = pools {
            let free = pools.manager.free_cpus().len();
            say!("{}", xl::info_line("free_cpus", &format!("{free}")));
            if let Some(pool0) = pools.manager.pool(rules::POOL0) {
                say!(
                    "{}",
                    xl::info_line("xen_scheduler", pool0.spec.sched.name())
                );
            }
        }
        say!("cpus            : {}", info.cpu_count);
        let nodes: Vec<String> = (0..info.node_count as u32)
            .map(|node| {
                let cpus: Vec<u32> = (0..info.cpu_count as u32)
                    .filter(|&cpu| info.cpu_node(cpu) == node)
                    .collect();
                format!("{node}: cpus {}", rules::format_cpu_list(&cpus))
            })
            .collect();
        say!(
            "numa nodes      : {} ({})",
            info.node_count,
            nodes.join(", ")
        );
        say!("untyped memory  : {} MiB at boot", untyped >> 20);
        say!("boot modules    : {}", modules.join(" "));
        let (pool_files, domain_files) = crate::configs::config_files();
        say!("pool configs    : {}", pool_files.join(" "));
        say!("domain configs  : {}", domain_files.join(" "));
        if let Some(pools) = pools {
            say!("policies        : {}", pools.manager.policies().join(" "));
            say!("cpupools        : {}", pools.manager.pools().count());
            say!("domains         : {}", pools.manager.domains().count());
            say!(
                "free cpus       : {}",
                rules::format_cpu_list(&pools.manager.free_cpus())
            );
        }
        if let Ok(i) = invoke::machine_check_invariants(slot::MACHINE) {
            say!(
                "kernel objects  : {} live, {} capabilities",
                i.live_objects,
                i.live_caps
            );
            say!(
                "invariants      : {}",
                if i.consistent { "hold" } else { "BROKEN" }
            );
        }
        let cells = pools.map_or(0, Pools::free_cell_bytes);
        say!(
            "root resources  : {} free slots of {}, {} heap bytes, {} free untyped bytes",
            res.slots.remaining(),
            1u64 << res.cnode_bits,
            tarn_rt::heap_used_bytes(),
            res.untyped.free_bytes() + cells
        );
    }
}

/// JSON string (names are validated, but escape anyway).
pub(crate) fn json_str(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A domain's parameters as a JSON object (numbers as numbers).
pub(crate) fn params_json(params: &DomainParams) -> String {
    let fields: Vec<String> = params
        .iter()
        .map(|(key, value)| match value.parse::<i64>() {
            Ok(n) => format!("{}:{n}", json_str(key)),
            Err(_) => format!("{}:{}", json_str(key), json_str(value)),
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// `list [-l] [-c] [--pool=P] [D]`: xl's columns (`-c`: and the pool's),
/// or the JSON of `-l`.
pub(crate) fn list_command(
    pools: &Pools,
    long: bool,
    only: Option<&str>,
    cpupool: bool,
    domain: Option<&str>,
) -> Result<(), String> {
    let only = match only {
        Some(name) => Some(
            pools
                .manager
                .pool_id(name)
                .map_err(|e| format!("{name}: {e}"))?,
        ),
        None => None,
    };
    let domain = match domain {
        Some(name) => Some(
            pools
                .manager
                .domain_id(name)
                .map_err(|e| format!("{name}: {e}"))?,
        ),
        None => None,
    };
    let stats: Vec<DomainStat> = pools
        .stats()
        .into_iter()
        .filter(|s| only.is_none_or(|p| pools.manager.domain(s.id).map(|d| d.pool) == Some(p)))
        .filter(|s| domain.is_none_or(|d| d == s.id))
        .collect();
    if long {
        let items: Vec<String> = stats
            .iter()
            .map(|s| {
                format!(
                    "{{\"domid\":{},\"name\":{},\"pool\":{},\"image\":{},\"vcpus\":{},\"memory_mib\":{},\"memory_kib\":{},\"state\":\"{}\",\"cpu_time_ns\":{},\"thread_time_ns\":{},\"sched_params\":{},\"group_master\":{}}}",
                    s.id.0,
                    json_str(&s.name),
                    json_str(&s.pool),
                    json_str(&s.image),
                    s.vcpus,
                    s.mem_kib.div_ceil(1024),
                    s.mem_kib,
                    s.state,
                    s.cpu_ns,
                    s.thread_ns,
                    params_json(&s.params),
                    s.group.as_deref().map_or_else(|| String::from("null"), json_str)
                )
            })
            .collect();
        emit_line(&format!("[{}]", items.join(",")));
    } else {
        let rows: Vec<xl::ListRow> = stats
            .iter()
            .map(|s| xl::ListRow {
                name: &s.name,
                id: s.id.0,
                // xl's MiB, rounded up: a cell of 128 KiB shows 1.
                mem_mib: s.mem_kib.div_ceil(1024),
                vcpus: s.vcpus,
                state: xl_state(s.state),
                cpu_ns: s.cpu_ns,
                pool: &s.pool,
            })
            .collect();
        for line in xl::render_list(&rows, cpupool).lines() {
            say!("{line}");
        }
    }
    Ok(())
}

/// A domain's state letter as xl's six: the control domain (`-`) is the
/// root task, running the command that lists it.
fn xl_state(state: char) -> xl::DomainState {
    xl::DomainState {
        running: matches!(state, 'r' | '-'),
        blocked: state == 'b',
        paused: state == 'p',
        crashed: state == 'c',
    }
}

pub(crate) fn cpupool_list(
    pools: &Pools,
    cpus: bool,
    long: bool,
    names: &[String],
) -> Result<(), String> {
    let mut only = Vec::new();
    for name in names {
        only.push(
            pools
                .manager
                .pool_id(name)
                .map_err(|e| format!("{name}: {e}"))?,
        );
    }
    let rows: Vec<_> = pools
        .manager
        .list()
        .into_iter()
        .filter(|r| only.is_empty() || only.contains(&r.id))
        .collect();
    if long {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                let cpus: Vec<String> = r.cpus.iter().map(|c| c.to_string()).collect();
                let domains: Vec<String> = pools
                    .manager
                    .domains()
                    .filter(|d| d.pool == r.id)
                    .map(|d| json_str(&d.name))
                    .collect();
                let tenants: Vec<String> = pools
                    .delegations()
                    .filter(|(p, _)| *p == r.id)
                    .filter_map(|(_, t)| pools.manager.domain(*t))
                    .map(|d| json_str(&d.name))
                    .collect();
                format!(
                    "{{\"cpupool_id\":{},\"name\":{},\"sched\":\"{}\",\"active\":{},\"n_cpus\":{},\"cpus\":[{}],\"domains\":[{}],\"tenants\":[{}],\"server\":{}}}",
                    r.id.0,
                    json_str(&r.name),
                    r.sched.name(),
                    r.active,
                    r.cpu_count,
                    cpus.join(","),
                    domains.join(","),
                    tenants.join(","),
                    pools
                        .server_policy(r.id)
                        .map_or_else(|| String::from("null"), |s| format!("\"{s}\""))
                )
            })
            .collect();
        emit_line(&format!("[{}]", items.join(",")));
    } else {
        let table = xl::render_cpupool_list(&rows, cpus);
        for line in table.lines() {
            say!("{line}");
        }
    }
    Ok(())
}

/// `sched-param` with no pairs: each parameter, its value, range, default
/// and help.
pub(crate) fn print_params(title: &str, list: &[(ParamInfo, String)]) {
    say!("{title}: {} parameters", list.len());
    for (info, value) in list {
        say!(
            "  {}={value}  ({}, default {}) {}",
            info.name,
            info.range,
            info.default,
            info.help
        );
    }
}

/// The values of `pool`'s policy parameters, for `domain` (or the pool),
/// as its server reports them: `(key, value)`.
pub(crate) fn values(
    pools: &mut Pools,
    pool: PoolId,
    domain: Option<rules::DomainId>,
) -> Result<Vec<(String, String)>, String> {
    let (_, list) = pools.param_list(pool, domain)?;
    Ok(list
        .into_iter()
        .map(|(info, value)| (info.name, value))
        .collect())
}

/// The value of `key` in `values` (`?` if the server gave none).
pub(crate) fn value<'a>(values: &'a [(String, String)], key: &str) -> &'a str {
    values
        .iter()
        .find(|(k, _)| k == key)
        .map_or("?", |(_, v)| v.as_str())
}

/// A pool's id and name, and its domains' ids and names.
type PoolDomains = (PoolId, String, Vec<(rules::DomainId, String)>);

/// Pools running `policy` (only `only` if given), by id, and each one's
/// domains scheduled by its server (the control domain is a system task,
/// not listed).
fn pools_running(pools: &Pools, policy: &str, only: Option<PoolId>) -> Vec<PoolDomains> {
    pools
        .manager
        .pools()
        .filter(|p| p.state == rules::PoolState::Active)
        .filter(|p| only.is_none_or(|o| o == p.id) && pools.policy_of(p.id) == policy)
        .map(|p| {
            let domains = pools
                .manager
                .domains()
                .filter(|d| d.pool == p.id && d.id != rules::CONTROL_DOMAIN)
                .map(|d| (d.id, d.name.clone()))
                .collect();
            (p.id, p.spec.name.clone(), domains)
        })
        .collect()
}

/// `sched-credit [-p P]`: as xl, each credit pool's parameters, then its
/// domains' weights and caps.
pub(crate) fn credit_show(pools: &mut Pools, only: Option<PoolId>) -> Result<(), String> {
    for (pool, name, domains) in pools_running(pools, "credit", only) {
        say!("{}", credit_pool_text(pools, pool, &name)?);
        say!("{}", xl::credit_domain_header());
        for (id, domain) in domains {
            say!("{}", credit_domain_text(pools, pool, id, &domain)?);
        }
    }
    Ok(())
}

/// A credit pool's `Cpupool P: tslice=...` line.
pub(crate) fn credit_pool_text(
    pools: &mut Pools,
    pool: PoolId,
    name: &str,
) -> Result<String, String> {
    let v = values(pools, pool, None).map_err(|e| format!("{name}: {e}"))?;
    // Credit here has no migration delay: it is 0, as a pool without one.
    Ok(xl::credit_pool_line(
        name,
        value(&v, "timeslice_ms"),
        value(&v, "ratelimit_us"),
        0,
    ))
}

/// A credit domain's line.
pub(crate) fn credit_domain_text(
    pools: &mut Pools,
    pool: PoolId,
    id: rules::DomainId,
    name: &str,
) -> Result<String, String> {
    let v = values(pools, pool, Some(id)).map_err(|e| format!("{name}: {e}"))?;
    Ok(xl::credit_domain_line(
        name,
        id.0,
        value(&v, "weight"),
        value(&v, "cap"),
    ))
}

/// `sched-sedf [-c P]`: as Xen 4.5's xl, each SEDF pool, then its domains'
/// reservations.
pub(crate) fn sedf_show(pools: &mut Pools, only: Option<PoolId>) -> Result<(), String> {
    for (pool, name, domains) in pools_running(pools, "sedf", only) {
        say!("{}", xl::sedf_pool_line(&name));
        say!("{}", xl::sedf_domain_header());
        for (id, domain) in domains {
            say!("{}", sedf_domain_text(pools, pool, id, &domain)?);
        }
    }
    Ok(())
}

/// A SEDF domain's line: period, slice, extra as its server has them;
/// latency and weight 0 (SEDF here has neither: xl's values for none).
pub(crate) fn sedf_domain_text(
    pools: &mut Pools,
    pool: PoolId,
    id: rules::DomainId,
    name: &str,
) -> Result<String, String> {
    let v = values(pools, pool, Some(id)).map_err(|e| format!("{name}: {e}"))?;
    Ok(xl::sedf_domain_line(
        name,
        id.0,
        value(&v, "period"),
        value(&v, "slice"),
        0,
        value(&v, "extra"),
        0,
    ))
}

/// `vcpu-list [D]`, in xl's columns: one row per vCPU, its hard and soft
/// affinities as `vcpu-pin` (or xl.cfg's `cpus`, `cpus_soft`) set them.
pub(crate) fn vcpu_list(pools: &Pools, only: Option<rules::DomainId>, nr_cpus: u32) {
    say!("{}", xl::vcpu_header());
    for s in pools
        .stats()
        .iter()
        .filter(|s| only.is_none_or(|d| d == s.id))
    {
        for (vcpu, v) in s.vcpu_stats.iter().enumerate() {
            let row = xl::VcpuRow {
                name: &s.name,
                id: s.id.0,
                vcpu: vcpu as u32,
                cpu: v.cpu.and_then(|c| u32::try_from(c).ok()),
                running: v.runnable && s.state == 'r',
                blocked: !v.runnable && matches!(s.state, 'r' | 'b'),
                online: v.online,
                cpu_ns: v.cpu_ns,
                hard: v.affinity.as_deref(),
                soft: v.soft.as_deref(),
            };
            say!("{}", xl::vcpu_line(&row, nr_cpus));
        }
    }
}
