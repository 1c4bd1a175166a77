//! Every output form of the console that xl has, rendered here and
//! compared line by line with what xl's own `printf` formats give for the
//! same values (the expected lines were produced by those formats, C's
//! `%-40s %5d ...`, with xl's tabs at 8-column stops).

use super::*;
use crate::pools::{PoolId, Sched};
use alloc::string::ToString;
use alloc::vec;

fn row<'a>(
    name: &'a str,
    id: u32,
    mem_mib: u64,
    vcpus: u32,
    state: DomainState,
    cpu_ns: u64,
    pool: &'a str,
) -> ListRow<'a> {
    ListRow {
        name,
        id,
        mem_mib,
        vcpus,
        state,
        cpu_ns,
        pool,
    }
}

fn pool(id: u32, name: &str, cpus: &[u32], sched: &str, active: bool, domains: u32) -> PoolInfo {
    PoolInfo {
        id: PoolId(id),
        name: name.to_string(),
        cpus: cpus.to_vec(),
        cpu_count: cpus.len() as u32,
        sched: Sched::from_name(sched).expect("a policy"),
        active,
        domain_count: domains,
    }
}

#[test]
fn each_form_prints_xls_lines() {
    let running = DomainState {
        running: true,
        ..DomainState::default()
    };
    let blocked = DomainState {
        blocked: true,
        ..DomainState::default()
    };
    let paused = DomainState {
        paused: true,
        ..DomainState::default()
    };
    let crashed = DomainState {
        crashed: true,
        ..DomainState::default()
    };
    let rows = vec![
        row("Domain-0", 0, 0, 1, running, 12_340_000_000, "Pool-0"),
        row("spin1", 1, 4, 1, blocked, 960_000_000, "Pool-0"),
        row("web", 2, 8, 2, paused, 0, "rt"),
        row("bad", 3, 4, 1, crashed, 3_060_000_000, "rt"),
    ];
    let pools = vec![
        pool(0, "Pool-0", &[0, 1], "credit", true, 2),
        pool(1, "rt", &[2, 3, 5], "sedf", true, 2),
    ];
    // (form, what Tarn prints, what xl prints), line by line.
    let table: &[(&str, String, &[&str])] = &[
        (
            "list",
            render_list(&rows, false),
            &[
                "Name                                        ID   Mem VCPUs      State   Time(s)",
                "Domain-0                                     0     0     1     r-----      12.3",
                "spin1                                        1     4     1     -b----       1.0",
                "web                                          2     8     2     --p---       0.0",
                "bad                                          3     4     1     ---sc-       3.1",
            ],
        ),
        (
            "list -c",
            render_list(&rows[..3], true),
            &[
                "Name                                        ID   Mem VCPUs      State   Time(s)         Cpupool",
                "Domain-0                                     0     0     1     r-----      12.3          Pool-0",
                "spin1                                        1     4     1     -b----       1.0          Pool-0",
                "web                                          2     8     2     --p---       0.0              rt",
            ],
        ),
        (
            "cpupool-list",
            render_cpupool_list(&pools, false),
            &[
                "Name               CPUs   Sched     Active   Domain count",
                "Pool-0               2    credit       y          2",
                "rt                   3      sedf       y          2",
            ],
        ),
        (
            "cpupool-list -c",
            render_cpupool_list(&pools, true),
            &["Name               CPU list", "Pool-0             0,1", "rt                 2,3,5"],
        ),
        (
            "sched-credit -d spin1",
            [credit_domain_header(), credit_domain_line("spin1", 1, "512", "50")].join("\n"),
            &[
                "Name                                ID Weight  Cap",
                "spin1                                1    512   50",
            ],
        ),
        (
            "sched-credit -s",
            credit_pool_line("Pool-0", "30", "1000", 0),
            &["Cpupool Pool-0: tslice=30ms ratelimit=1000us migration-delay=0us"],
        ),
        (
            "sched-sedf -d web",
            [
                sedf_domain_header(),
                sedf_domain_line("web", 2, "100", "20", 0, "1", 0),
            ]
            .join("\n"),
            &[
                "Name                                ID Period Slice  Latency Extra Weight",
                "web                                  2    100     20       0     1      0",
            ],
        ),
        ("sched-sedf", sedf_pool_line("rt"), &["Cpupool rt:"]),
        (
            "cpupool-create",
            cpupool_create_lines("rt", "sedf", 2),
            &["cpupool name:   rt", "scheduler:      sedf", "number of cpus: 2"],
        ),
        (
            "info",
            [
                info_line("nr_cpus", "4"),
                info_line("free_cpus", "2"),
                info_line("xen_scheduler", "credit"),
            ]
            .join("\n"),
            &[
                "nr_cpus                : 4",
                "free_cpus              : 2",
                "xen_scheduler          : credit",
            ],
        ),
    ];
    for (form, ours, xl) in table {
        let ours: Vec<&str> = ours.lines().collect();
        assert_eq!(
            ours.len(),
            xl.len(),
            "{form}: line count\n{}",
            ours.join("\n")
        );
        for (n, (a, b)) in ours.iter().zip(xl.iter()).enumerate() {
            assert_eq!(a, b, "{form}: line {}", n + 1);
        }
    }
}

#[test]
fn a_defined_pool_shows_n_where_xl_has_y() {
    let rows = vec![pool(4, "later", &[], "credit", false, 0)];
    assert_eq!(
        render_cpupool_list(&rows, false).lines().nth(1),
        Some("later                0    credit       n          0")
    );
}

#[test]
fn time_rounds_to_the_nearest_tenth() {
    assert_eq!(seconds_tenths(0), "0.0");
    assert_eq!(seconds_tenths(49_999_999), "0.0");
    assert_eq!(seconds_tenths(50_000_000), "0.1");
    assert_eq!(seconds_tenths(123_449_999_999), "123.4");
    assert_eq!(seconds_tenths(u64::MAX), "18446744073.7");
}

#[test]
fn cpu_sets_print_as_xls_print_bitmap() {
    assert_eq!(cpu_bitmap_text(&[0, 1, 2, 3], 4), "all");
    assert_eq!(cpu_bitmap_text(&[1, 2, 3], 4), "1-3");
    assert_eq!(cpu_bitmap_text(&[0, 1], 4), "0-1");
    assert_eq!(cpu_bitmap_text(&[0, 2, 3, 5], 8), "0,2-3,5");
    assert_eq!(cpu_bitmap_text(&[7], 8), "7");
    assert_eq!(cpu_bitmap_text(&[], 8), "none");
    // CPUs the machine does not have are not printed.
    assert_eq!(cpu_bitmap_text(&[1, 9], 4), "1");
}

#[test]
fn vcpu_list_prints_xls_columns() {
    // `printf("%-32s %5s %5s %5s %5s %9s %s\n", ...)` and
    // `print_vcpuinfo`'s `%-32s %5u %5u` `%5u %3c%c- ` `%9.1f  `.
    assert_eq!(
        vcpu_header(),
        "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)"
    );
    let running = VcpuRow {
        name: "Domain-0",
        id: 0,
        vcpu: 0,
        cpu: Some(3),
        running: true,
        blocked: false,
        online: true,
        cpu_ns: 12_340_000_000,
        hard: None,
        soft: None,
    };
    assert_eq!(
        vcpu_line(&running, 4),
        "Domain-0                             0     0    3   r--      12.3  all / all"
    );
    let pinned = VcpuRow {
        name: "web",
        id: 12,
        vcpu: 1,
        cpu: None,
        running: false,
        blocked: true,
        online: true,
        cpu_ns: 50_000_000,
        hard: Some(&[2, 3]),
        soft: None,
    };
    assert_eq!(
        vcpu_line(&pinned, 8),
        "web                                 12     1    -   -b-       0.1  2-3 / all"
    );
    // `vcpu-pin web 2 1,3-5,7`: print_bitmap's ranges; CPU 1 of 8.
    let pinned_to_one = VcpuRow {
        vcpu: 2,
        cpu: Some(1),
        running: true,
        blocked: false,
        hard: Some(&[1, 3, 4, 5, 7]),
        ..pinned.clone()
    };
    assert_eq!(
        vcpu_line(&pinned_to_one, 8),
        "web                                 12     2    1   r--       0.1  1,3-5,7 / all"
    );
    // `vcpu-pin web 2 - 4-5`: the soft set as the hard one is printed.
    let preferring = VcpuRow {
        soft: Some(&[4, 5]),
        ..pinned_to_one.clone()
    };
    assert_eq!(
        vcpu_line(&preferring, 8),
        "web                                 12     2    1   r--       0.1  1,3-5,7 / 4-5"
    );
    // Offline after `vcpu-set web 2` (xl: `%5c %3c%cp `), whatever it last
    // ran on.
    let offline = VcpuRow {
        vcpu: 3,
        cpu: Some(2),
        online: false,
        hard: Some(&[0]),
        ..pinned.clone()
    };
    assert_eq!(
        vcpu_line(&offline, 8),
        "web                                 12     3    -   --p       0.1  0 / all"
    );
}
