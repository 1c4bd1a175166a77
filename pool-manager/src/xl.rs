//! xl's output formats: the lines `xl list`, `xl cpupool-list`,
//! `xl sched-credit`, `xl sched-sedf` (Xen 4.5's) and `xl info` print,
//! column for column, from the values the console has gathered. Each
//! function here is one of xl's `printf` formats (tools/xl/xl_info.c,
//! xl_cpupool.c, xl_sched.c; tools/libxl/xl_cmdimpl.c of Xen 4.5 for
//! SEDF), with xl's tabs expanded to 8-column stops (the console prints
//! no tabs). Tarn's additions (the `-l` JSON, `top`, `sched-param`, the
//! `Active` column's `n` for a defined pool) are printed by the console
//! beside these, never instead of them.

use crate::pools::PoolInfo;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// A domain's state as `xl list` prints it: six letters, each `-` when
/// not so (`r-----`, `-b----`, `--p---`, `---sc-`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainState {
    /// `r`: running or runnable (xl: running on a CPU).
    pub running: bool,
    /// `b`: blocked, waiting for an event.
    pub blocked: bool,
    /// `p`: paused (`pause D`).
    pub paused: bool,
    /// `s` and `c`: shut down because it crashed (its thread faulted);
    /// it stays listed until destroyed, as xl's `on_crash="preserve"`.
    pub crashed: bool,
}

impl DomainState {
    /// The six letters: running, blocked, paused, shutdown, shutdown
    /// reason (`c`: crash), dying.
    pub fn letters(&self) -> String {
        let flag = |on: bool, c: char| if on { c } else { '-' };
        let mut out = String::new();
        out.push(flag(self.running, 'r'));
        out.push(flag(self.blocked, 'b'));
        out.push(flag(self.paused, 'p'));
        out.push(flag(self.crashed, 's'));
        out.push(flag(self.crashed, 'c'));
        out.push('-');
        out
    }
}

/// One row of `xl list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRow<'a> {
    /// Name.
    pub name: &'a str,
    /// Domain id.
    pub id: u32,
    /// Memory (MiB).
    pub mem_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// State.
    pub state: DomainState,
    /// CPU time (ns).
    pub cpu_ns: u64,
    /// Its cpupool's name (printed with `-c`).
    pub pool: &'a str,
}

/// Seconds with one decimal, as C's `%.1f` (rounded to the nearest tenth).
pub fn seconds_tenths(ns: u64) -> String {
    let tenths = (u128::from(ns) + 50_000_000) / 100_000_000;
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// `xl list`'s header (`-c`: with the Cpupool column).
pub fn list_header(cpupool: bool) -> String {
    // "Name...ID   Mem VCPUs\tState\tTime(s)", tabs at columns 58 and 69.
    let mut out = format!(
        "{:<44}ID   Mem VCPUs{}State{}Time(s)",
        "Name",
        " ".repeat(6),
        " ".repeat(3)
    );
    if cpupool {
        out.push_str("         Cpupool");
    }
    out
}

/// One `xl list` line: `%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f`, and
/// with `-c` `%16s` for the pool.
pub fn list_line(row: &ListRow, cpupool: bool) -> String {
    let mut out = format!(
        "{:<40} {:>5} {:>5} {:>5}     {}  {:>8}",
        row.name,
        row.id,
        row.mem_mib,
        row.vcpus,
        row.state.letters(),
        seconds_tenths(row.cpu_ns)
    );
    if cpupool {
        out.push_str(&format!("{:>16}", row.pool));
    }
    out
}

/// `xl list` whole.
pub fn render_list(rows: &[ListRow], cpupool: bool) -> String {
    let mut out = list_header(cpupool);
    out.push('\n');
    for row in rows {
        out.push_str(&list_line(row, cpupool));
        out.push('\n');
    }
    out
}

/// `xl sched-credit`'s domain header: `%-33s %4s %6s %4s`.
pub fn credit_domain_header() -> String {
    format!("{:<33} {:>4} {:>6} {:>4}", "Name", "ID", "Weight", "Cap")
}

/// One domain's `xl sched-credit` line: `%-33s %4d %6d %4d`.
pub fn credit_domain_line(name: &str, id: u32, weight: &str, cap: &str) -> String {
    format!("{name:<33} {id:>4} {weight:>6} {cap:>4}")
}

/// A pool's `xl sched-credit` line (`-s`, and before its domains):
/// `Cpupool %s: tslice=%dms ratelimit=%dus migration-delay=%dus`.
pub fn credit_pool_line(pool: &str, tslice_ms: &str, ratelimit_us: &str, delay_us: u32) -> String {
    format!("Cpupool {pool}: tslice={tslice_ms}ms ratelimit={ratelimit_us}us migration-delay={delay_us}us")
}

/// Xen 4.5's `xl sched-sedf` domain header:
/// `%-33s %4s %6s %-6s %7s %5s %6s`.
pub fn sedf_domain_header() -> String {
    format!(
        "{:<33} {:>4} {:>6} {:<6} {:>7} {:>5} {:>6}",
        "Name", "ID", "Period", "Slice", "Latency", "Extra", "Weight"
    )
}

/// One SEDF line (Xen 4.5's `%-33s %4d %6d %6d %7d %5d %6d`): period,
/// slice and latency in ms, extra 0 or 1, weight.
pub fn sedf_domain_line(
    name: &str,
    id: u32,
    period_ms: &str,
    slice_ms: &str,
    latency_ms: u32,
    extra: &str,
    weight: u32,
) -> String {
    format!(
        "{name:<33} {id:>4} {period_ms:>6} {slice_ms:>6} {latency_ms:>7} {extra:>5} {weight:>6}"
    )
}

/// Xen 4.5's line before a pool's SEDF domains: `Cpupool %s:`.
pub fn sedf_pool_line(pool: &str) -> String {
    format!("Cpupool {pool}:")
}

/// `xl cpupool-list` (Name, CPUs, Sched, Active, Domain count) or, with
/// `cpu_list`, `xl cpupool-list -c` (Name, CPU list: every CPU, comma
/// separated, as xl prints it). A pool only defined (Tarn's
/// `cpupool-new`; xl has no such state) shows `n` where xl prints `y`.
pub fn render_cpupool_list(rows: &[PoolInfo], cpu_list: bool) -> String {
    let mut out = format!("{:<19}", "Name");
    if cpu_list {
        out.push_str("CPU list\n");
    } else {
        out.push_str("CPUs   Sched     Active   Domain count\n");
    }
    for r in rows {
        out.push_str(&format!("{:<19}", r.name));
        if cpu_list {
            let cpus: Vec<String> = r.cpus.iter().map(|c| format!("{c}")).collect();
            out.push_str(&cpus.join(","));
        } else {
            out.push_str(&format!(
                "{:>3} {:>9}       {}       {:>4}",
                r.cpu_count,
                r.sched.name(),
                if r.active { "y" } else { "n" },
                r.domain_count
            ));
        }
        out.push('\n');
    }
    out
}

/// The lines `xl cpupool-create` prints before it creates the pool.
pub fn cpupool_create_lines(name: &str, sched: &str, n_cpus: usize) -> String {
    format!("cpupool name:   {name}\nscheduler:      {sched}\nnumber of cpus: {n_cpus}\n")
}

/// One `xl info` line: the key padded to 23 columns, `: `, the value.
pub fn info_line(key: &str, value: &str) -> String {
    format!("{key:<23}: {value}")
}

#[cfg(test)]
mod tests;

/// A CPU set as xl's `print_bitmap` writes it (tools/xl/xl_utils.c):
/// ranges `a-b` and single CPUs joined by commas, `all` for every CPU of
/// the `nr_cpus` the machine has, `none` for none. `cpus` is sorted.
pub fn cpu_bitmap_text(cpus: &[u32], nr_cpus: u32) -> String {
    let present: Vec<u32> = cpus.iter().copied().filter(|&c| c < nr_cpus).collect();
    if present.is_empty() {
        return String::from("none");
    }
    if present.len() == nr_cpus as usize {
        return String::from("all");
    }
    let mut out = String::new();
    let mut i = 0;
    while i < present.len() {
        let first = present[i];
        let mut last = first;
        while i + 1 < present.len() && present[i + 1] == last + 1 {
            i += 1;
            last = present[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if last > first {
            out.push_str(&format!("{first}-{last}"));
        } else {
            out.push_str(&format!("{first}"));
        }
        i += 1;
    }
    out
}

/// One row of `xl vcpu-list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuRow<'a> {
    /// Its domain's name.
    pub name: &'a str,
    /// Its domain's id.
    pub id: u32,
    /// vCPU number within the domain.
    pub vcpu: u32,
    /// The CPU it runs or last ran on (`None`: not yet run).
    pub cpu: Option<u32>,
    /// Running or runnable.
    pub running: bool,
    /// Blocked.
    pub blocked: bool,
    /// Online (`vcpu-set`); an offline vCPU shows `-` for its CPU and
    /// `--p` for its state.
    pub online: bool,
    /// Run time (ns).
    pub cpu_ns: u64,
    /// Hard affinity (`None`: every CPU).
    pub hard: Option<&'a [u32]>,
    /// Soft affinity (`None`: every CPU).
    pub soft: Option<&'a [u32]>,
}

/// `xl vcpu-list`'s header: `%-32s %5s %5s %5s %5s %9s %s`.
pub fn vcpu_header() -> String {
    format!(
        "{:<32} {:>5} {:>5} {:>5} {:>5} {:>9} {}",
        "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity (Hard / Soft)"
    )
}

/// One `xl vcpu-list` line (tools/xl/xl_vcpu.c, `print_vcpuinfo`):
/// `%-32s %5u %5u`, then `%5u %3c%c- ` (the CPU, `r`, `b`), `%9.1f  `
/// and the hard and soft affinities as `print_bitmap` writes them,
/// joined by ` / `. A vCPU that has not run yet shows `-` for its CPU;
/// an offline one `%5c %3c%cp ` (`-`, `--p`).
pub fn vcpu_line(row: &VcpuRow, nr_cpus: u32) -> String {
    let all: Vec<u32> = (0..nr_cpus).collect();
    let cpu = row
        .cpu
        .filter(|_| row.online)
        .map_or_else(|| String::from("-"), |c| format!("{c}"));
    let flag = |on: bool, c: char| if on && row.online { c } else { '-' };
    format!(
        "{:<32} {:>5} {:>5}{:>5} {:>3}{}{} {:>9}  {} / {}",
        row.name,
        row.id,
        row.vcpu,
        cpu,
        flag(row.running, 'r'),
        flag(row.blocked, 'b'),
        if row.online { '-' } else { 'p' },
        seconds_tenths(row.cpu_ns),
        cpu_bitmap_text(row.hard.unwrap_or(&all), nr_cpus),
        cpu_bitmap_text(row.soft.unwrap_or(&all), nr_cpus)
    )
}
