//! Host tests of the pool state machine: one test per Xen rule, then a seeded
//! random walk checking the invariants and "a refusal changes nothing".

use super::*;
use alloc::string::ToString;
use alloc::vec;

fn spec(name: &str, cpus: CpuRequest) -> PoolSpec {
    PoolSpec {
        name: name.to_string(),
        sched: Sched::credit(),
        cpus,
        other_config: Vec::new(),
    }
}

fn list(cpus: &[u32]) -> CpuRequest {
    CpuRequest::List(cpus.iter().copied().collect())
}

fn dom(name: &str, pool: PoolId) -> DomainSpec {
    DomainSpec {
        name: name.to_string(),
        pool,
        vcpus: 1,
        params: DomainParams::default(),
    }
}

/// `pool0_cpus=2` of 4: the licence case's starting point.
fn four_two() -> PoolManager {
    PoolManager::new(4, Some(2)).unwrap()
}

/// Run `op`; it must fail with `want` and leave the manager unchanged.
fn refused<T: core::fmt::Debug>(
    m: &mut PoolManager,
    want: PoolError,
    op: impl FnOnce(&mut PoolManager) -> Result<T, PoolError>,
) {
    let before = m.clone();
    assert_eq!(op(m).unwrap_err(), want);
    assert_eq!(*m, before, "a refused operation changed the state");
}

#[test]
fn boot_state_has_pool0_with_requested_cpus_and_control_domain() {
    let m = four_two();
    let p0 = m.pool(POOL0).unwrap();
    assert_eq!(p0.spec.name, "Pool-0");
    assert_eq!(p0.spec.sched, Sched::credit());
    assert_eq!(p0.state, PoolState::Active);
    assert_eq!(p0.cpus.iter().copied().collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(m.free_cpus(), vec![2, 3]);
    assert_eq!(m.domain(CONTROL_DOMAIN).unwrap().pool, POOL0);
    let all = PoolManager::new(4, None).unwrap();
    assert!(all.free_cpus().is_empty());
    m.check_invariants().unwrap();
}

#[test]
fn pool0_size_must_be_between_one_and_total() {
    assert_eq!(
        PoolManager::new(4, Some(0)).unwrap_err(),
        PoolError::BadPool0Size {
            requested: 0,
            total: 4
        }
    );
    assert!(PoolManager::new(4, Some(5)).is_err());
    assert!(PoolManager::new(0, None).is_err());
}

#[test]
fn define_records_attributes_only() {
    let mut m = four_two();
    let id = m.define(spec("p1", list(&[2, 3]))).unwrap();
    let p = m.pool(id).unwrap();
    assert_eq!(p.state, PoolState::Defined);
    assert!(p.cpus.is_empty());
    assert_eq!(m.free_cpus(), vec![2, 3]);
}

#[test]
fn define_refuses_duplicate_name_bad_name_empty_and_absent_cpus() {
    let mut m = four_two();
    m.define(spec("p1", list(&[2]))).unwrap();
    refused(&mut m, PoolError::PoolNameTaken("p1".into()), |m| {
        m.define(spec("p1", list(&[3])))
    });
    refused(&mut m, PoolError::PoolNameTaken("Pool-0".into()), |m| {
        m.define(spec("Pool-0", list(&[3])))
    });
    refused(&mut m, PoolError::InvalidName, |m| {
        m.define(spec("", list(&[3])))
    });
    refused(&mut m, PoolError::InvalidName, |m| {
        m.define(spec("a b", list(&[3])))
    });
    // A number is an id (xl's `cpupool-migrate 3 1`), never a name.
    refused(&mut m, PoolError::InvalidName, |m| {
        m.define(spec("7", list(&[3])))
    });
    refused(&mut m, PoolError::EmptyCpuRequest, |m| {
        m.define(spec("p2", CpuRequest::Count(0)))
    });
    refused(&mut m, PoolError::EmptyCpuRequest, |m| {
        m.define(spec("p2", list(&[])))
    });
    refused(&mut m, PoolError::NoSuchCpu(4), |m| {
        m.define(spec("p2", list(&[3, 4])))
    });
}

#[test]
fn activate_binds_requested_cpus_after_starting_scheduler() {
    let mut m = four_two();
    let id = m.define(spec("p1", list(&[2, 3]))).unwrap();
    let actions = m.activate(id).unwrap();
    assert_eq!(
        actions,
        vec![
            Action::StartScheduler { pool: id },
            Action::BindCpu { cpu: 2, pool: id },
            Action::BindCpu { cpu: 3, pool: id },
        ]
    );
    assert_eq!(m.cpu_owner(3), Some(id));
    assert!(m.free_cpus().is_empty());
    refused(&mut m, PoolError::PoolAlreadyActive, |m| m.activate(id));
}

#[test]
fn activate_refuses_when_a_listed_cpu_is_not_free() {
    let mut m = four_two();
    let id = m.define(spec("p1", list(&[1, 2]))).unwrap();
    refused(
        &mut m,
        PoolError::CpuNotFree {
            cpu: 1,
            owner: POOL0,
        },
        |m| m.activate(id),
    );
    // Nothing half-done: CPU 2 is still free.
    assert_eq!(m.free_cpus(), vec![2, 3]);
}

#[test]
fn activate_with_count_takes_lowest_free_or_refuses() {
    let mut m = PoolManager::new(8, Some(2)).unwrap();
    let a = m.define(spec("a", CpuRequest::Count(3))).unwrap();
    m.activate(a).unwrap();
    assert_eq!(
        m.pool(a).unwrap().cpus.iter().copied().collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    let b = m.define(spec("b", CpuRequest::Count(4))).unwrap();
    refused(
        &mut m,
        PoolError::NotEnoughFreeCpus {
            requested: 4,
            free: 3,
        },
        |m| m.activate(b),
    );
}

#[test]
fn create_is_all_or_nothing() {
    let mut m = four_two();
    refused(
        &mut m,
        PoolError::CpuNotFree {
            cpu: 0,
            owner: POOL0,
        },
        |m| m.create(spec("p1", list(&[0, 2]))),
    );
    assert!(
        m.pool_id("p1").is_err(),
        "refused create left a defined pool"
    );
    let (id, actions) = m.create(spec("p1", list(&[2, 3]))).unwrap();
    assert_eq!(actions.len(), 3);
    assert_eq!(m.pool(id).unwrap().state, PoolState::Active);
}

#[test]
fn deactivate_frees_cpus_revoking_before_stopping_scheduler() {
    let mut m = four_two();
    let id = m.define(spec("p1", list(&[2, 3]))).unwrap();
    m.activate(id).unwrap();
    let actions = m.deactivate(id).unwrap();
    assert_eq!(
        actions,
        vec![
            Action::RevokeCpu { cpu: 2, pool: id },
            Action::RevokeCpu { cpu: 3, pool: id },
            Action::StopScheduler { pool: id },
        ]
    );
    assert_eq!(m.free_cpus(), vec![2, 3]);
    assert_eq!(m.pool(id).unwrap().state, PoolState::Defined);
    // It can be started again with its recorded request.
    m.activate(id).unwrap();
    assert_eq!(m.cpu_owner(2), Some(id));
}

#[test]
fn an_aborted_activation_frees_the_cpus_and_a_created_pool_can_go() {
    let mut m = four_two();
    let (id, _) = m.create(spec("p", list(&[2, 3]))).unwrap();
    m.abort_activation(id).unwrap();
    assert_eq!(m.pool(id).unwrap().state, PoolState::Defined);
    assert_eq!(m.free_cpus(), [2, 3]);
    m.check_invariants().unwrap();
    // cpupool-create failed as a whole: the name is free again.
    m.delete(id).unwrap();
    assert_eq!(m.pool_id("p"), Err(PoolError::NoSuchPool));
    let (again, _) = m.create(spec("p", list(&[2, 3]))).unwrap();
    m.create_domain(dom("d", again)).unwrap();
    let before = m.clone();
    assert_eq!(m.abort_activation(again), Err(PoolError::PoolHasDomains(1)));
    assert_eq!(m.abort_activation(POOL0), Err(PoolError::Pool0Protected));
    assert_eq!(m, before);
}

#[test]
fn destroying_a_created_pool_forgets_it_and_a_defined_one_stays_defined() {
    let mut m = four_two();
    // cpupool-create, then cpupool-destroy: gone, as xl does it.
    let (created, _) = m.create(spec("made", list(&[2]))).unwrap();
    let actions = m.deactivate(created).unwrap();
    assert_eq!(
        actions,
        vec![
            Action::RevokeCpu {
                cpu: 2,
                pool: created
            },
            Action::StopScheduler { pool: created },
        ]
    );
    assert!(m.pool(created).is_none());
    assert_eq!(m.pool_id("made"), Err(PoolError::NoSuchPool));
    assert!(m.list().iter().all(|r| r.name != "made"));
    assert_eq!(m.free_cpus(), vec![2, 3]);
    m.check_invariants().unwrap();
    // Its name is free.
    let (again, _) = m.create(spec("made", list(&[2]))).unwrap();
    assert_ne!(again, created);
    // cpupool-new + cpupool-start, then cpupool-destroy: defined again.
    let defined = m.define(spec("kept", list(&[3]))).unwrap();
    m.activate(defined).unwrap();
    m.deactivate(defined).unwrap();
    assert_eq!(m.pool(defined).unwrap().state, PoolState::Defined);
    assert_eq!(m.pool_id("kept"), Ok(defined));
    m.check_invariants().unwrap();
}

#[test]
fn deactivate_refuses_with_domains_inactive_and_pool0() {
    let mut m = four_two();
    let (id, _) = m.create(spec("p1", list(&[2, 3]))).unwrap();
    m.create_domain(dom("d1", id)).unwrap();
    refused(&mut m, PoolError::PoolHasDomains(1), |m| m.deactivate(id));
    refused(&mut m, PoolError::Pool0Protected, |m| m.deactivate(POOL0));
    let defined = m.define(spec("p2", CpuRequest::Count(1))).unwrap();
    refused(&mut m, PoolError::PoolNotActive, |m| m.deactivate(defined));
    refused(&mut m, PoolError::NoSuchPool, |m| m.deactivate(PoolId(99)));
}

#[test]
fn delete_only_when_deactivated_and_never_pool0() {
    let mut m = four_two();
    let id = m.define(spec("p1", list(&[2]))).unwrap();
    m.activate(id).unwrap();
    refused(&mut m, PoolError::PoolStillActive, |m| m.delete(id));
    refused(&mut m, PoolError::Pool0Protected, |m| m.delete(POOL0));
    m.deactivate(id).unwrap();
    m.delete(id).unwrap();
    assert!(m.pool(id).is_none());
    refused(&mut m, PoolError::NoSuchPool, |m| m.delete(id));
    // The name is free again; ids are not reused.
    let again = m.define(spec("p1", list(&[2]))).unwrap();
    assert_ne!(again, id);
}

#[test]
fn rename_needs_a_unique_name_and_pool0_keeps_its_identity() {
    let mut m = four_two();
    let (id, _) = m.create(spec("p1", list(&[2]))).unwrap();
    refused(&mut m, PoolError::PoolNameTaken("Pool-0".into()), |m| {
        m.rename(id, "Pool-0")
    });
    refused(&mut m, PoolError::InvalidName, |m| m.rename(id, "x\"y"));
    m.rename(id, "p1").unwrap(); // its own name: fine
    m.rename(POOL0, "main").unwrap();
    assert_eq!(m.pool_id("main").unwrap(), POOL0);
    // The old name is free again and names nothing.
    assert_eq!(m.pool_id("Pool-0"), Err(PoolError::NoSuchPool));
    m.rename(id, "Pool-0").unwrap();
    assert_eq!(m.pool_id("Pool-0").unwrap(), id);
    assert_eq!(m.pool_id("p1"), Err(PoolError::NoSuchPool));
    m.check_invariants().unwrap();
    refused(&mut m, PoolError::Pool0Protected, |m| m.deactivate(POOL0));
}

#[test]
fn cpu_add_adds_free_cpus_and_reports_each_refused_one() {
    let mut m = PoolManager::new(6, Some(2)).unwrap();
    let (id, _) = m.create(spec("p1", list(&[2]))).unwrap();
    let report = m.cpu_add(id, &[3, 0, 9, 4, 2]).unwrap();
    assert_eq!(
        report.results,
        vec![
            (3, Ok(())),
            (
                0,
                Err(PoolError::CpuNotFree {
                    cpu: 0,
                    owner: POOL0
                })
            ),
            (9, Err(PoolError::NoSuchCpu(9))),
            (4, Ok(())),
            (2, Err(PoolError::CpuNotFree { cpu: 2, owner: id })),
        ]
    );
    assert_eq!(
        report.actions,
        vec![
            Action::BindCpu { cpu: 3, pool: id },
            Action::BindCpu { cpu: 4, pool: id }
        ]
    );
    assert_eq!(m.free_cpus(), vec![5]);
    let defined = m.define(spec("p2", CpuRequest::Count(1))).unwrap();
    refused(&mut m, PoolError::PoolNotActive, |m| {
        m.cpu_add(defined, &[5])
    });
}

#[test]
fn cpu_remove_frees_the_cpu_but_never_the_last() {
    let mut m = four_two();
    let actions = m.cpu_remove(POOL0, 1).unwrap();
    assert_eq!(
        actions,
        vec![Action::RevokeCpu {
            cpu: 1,
            pool: POOL0
        }]
    );
    assert_eq!(m.free_cpus(), vec![1, 2, 3]);
    refused(&mut m, PoolError::LastCpu(0), |m| m.cpu_remove(POOL0, 0));
    refused(&mut m, PoolError::CpuNotInPool(2), |m| {
        m.cpu_remove(POOL0, 2)
    });
    refused(&mut m, PoolError::NoSuchCpu(7), |m| m.cpu_remove(POOL0, 7));
}

#[test]
fn the_last_cpu_of_a_pool_without_domains_may_go() {
    let mut m = four_two();
    let (p, _) = m.create(spec("p", list(&[2]))).unwrap();
    // A domain keeps the last CPU in.
    let (d, _) = m.create_domain(dom("d", p)).unwrap();
    refused(&mut m, PoolError::LastCpu(2), |m| m.cpu_remove(p, 2));
    m.destroy_domain(d).unwrap();
    // Without domains xl lets it go; the pool stays active, CPU-less.
    assert_eq!(
        m.cpu_remove(p, 2).unwrap(),
        vec![Action::RevokeCpu { cpu: 2, pool: p }]
    );
    let pool = m.pool(p).unwrap();
    assert_eq!(pool.state, PoolState::Active);
    assert!(pool.cpus.is_empty());
    assert_eq!(m.free_cpus(), vec![2, 3]);
    m.check_invariants().unwrap();
    // Nothing can run there until a CPU comes back.
    refused(&mut m, PoolError::PoolWithoutCpus, |m| {
        m.create_domain(dom("e", p))
    });
    let (other, _) = m.create_domain(dom("f", POOL0)).unwrap();
    refused(&mut m, PoolError::PoolWithoutCpus, |m| m.migrate(other, p));
    m.cpu_add(p, &[3]).unwrap();
    m.create_domain(dom("e", p)).unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn migrate_moves_to_active_pools_but_never_the_control_domain() {
    let mut m = four_two();
    let (lic, _) = m.create(spec("lic", list(&[2, 3]))).unwrap();
    let (d, _) = m.create_domain(dom("d1", POOL0)).unwrap();
    assert_eq!(
        m.migrate(d, lic).unwrap(),
        vec![Action::MoveDomain {
            domain: d,
            from: POOL0,
            to: lic
        }]
    );
    assert_eq!(m.domain(d).unwrap().pool, lic);
    assert!(m.migrate(d, lic).unwrap().is_empty());
    refused(&mut m, PoolError::ControlDomain, |m| {
        m.migrate(CONTROL_DOMAIN, lic)
    });
    let defined = m.define(spec("p2", CpuRequest::Count(1))).unwrap();
    refused(&mut m, PoolError::PoolNotActive, |m| m.migrate(d, defined));
    refused(&mut m, PoolError::NoSuchDomain, |m| {
        m.migrate(DomainId(77), lic)
    });
    refused(&mut m, PoolError::NoSuchPool, |m| m.migrate(d, PoolId(77)));
}

#[test]
fn domains_start_only_in_active_pools_with_valid_params() {
    let mut m = four_two();
    let defined = m.define(spec("p1", list(&[2]))).unwrap();
    refused(&mut m, PoolError::PoolNotActive, |m| {
        m.create_domain(dom("d1", defined))
    });
    let (d, actions) = m.create_domain(dom("d1", POOL0)).unwrap();
    assert_eq!(
        actions,
        vec![Action::AdoptDomain {
            domain: d,
            pool: POOL0
        }]
    );
    refused(&mut m, PoolError::DomainNameTaken("d1".into()), |m| {
        m.create_domain(dom("d1", POOL0))
    });
    let mut s = dom("d2", POOL0);
    s.vcpus = 0;
    refused(&mut m, PoolError::InvalidVcpus, |m| m.create_domain(s));
}

#[test]
fn destroy_domain_releases_it_but_never_the_control_domain() {
    let mut m = four_two();
    let (d, _) = m.create_domain(dom("d1", POOL0)).unwrap();
    assert_eq!(
        m.destroy_domain(d).unwrap(),
        vec![Action::ReleaseDomain {
            domain: d,
            pool: POOL0
        }]
    );
    assert!(m.domain(d).is_none());
    // Its name names nothing and may be taken again.
    assert_eq!(m.domain_id("d1"), Err(PoolError::NoSuchDomain));
    let (again, _) = m.create_domain(dom("d1", POOL0)).unwrap();
    assert_eq!(m.domain_id("d1").unwrap(), again);
    m.check_invariants().unwrap();
    refused(&mut m, PoolError::ControlDomain, |m| {
        m.destroy_domain(CONTROL_DOMAIN)
    });
    refused(&mut m, PoolError::NoSuchDomain, |m| m.destroy_domain(d));
}

/// The name indexes give their memory back: after 40 domains and 40 pools
/// come and go the tables are as small as before (the leaks scenario
/// counts the root task's heap; a hash map keeps its capacity otherwise).
#[test]
fn name_indexes_shrink_back() {
    let mut m = four_two();
    let (domains, pools) = (m.domain_names.capacity(), m.pool_names.capacity());
    let ids: Vec<_> = (0..40)
        .map(|i| m.create_domain(dom(&format!("d{i}"), POOL0)).unwrap().0)
        .collect();
    let pool_ids: Vec<_> = (0..40)
        .map(|i| m.define(spec(&format!("p{i}"), list(&[2]))).unwrap())
        .collect();
    assert!(m.domain_names.capacity() > domains);
    for id in ids {
        m.destroy_domain(id).unwrap();
    }
    for id in pool_ids {
        m.delete(id).unwrap();
    }
    assert_eq!(m.domain_names.capacity(), domains);
    assert_eq!(m.pool_names.capacity(), pools);
}

#[test]
fn live_scheduler_change_keeps_domains_in_place() {
    let mut m = four_two();
    let (id, _) = m.create(spec("p1", list(&[2, 3]))).unwrap();
    let (d, _) = m.create_domain(dom("d1", id)).unwrap();
    assert_eq!(
        m.set_scheduler(id, sedf()).unwrap(),
        vec![Action::ChangeScheduler { pool: id }]
    );
    assert_eq!(m.pool(id).unwrap().spec.sched, sedf());
    assert_eq!(m.domain(d).unwrap().pool, id);
    assert!(m.set_scheduler(id, sedf()).unwrap().is_empty());
    let defined = m.define(spec("p2", CpuRequest::Count(1))).unwrap();
    assert!(m.set_scheduler(defined, sedf()).unwrap().is_empty());
    assert_eq!(m.pool(defined).unwrap().spec.sched, sedf());
}

#[test]
fn list_shows_xl_columns() {
    let mut m = four_two();
    let (id, _) = m.create(spec("lic", list(&[2, 3]))).unwrap();
    m.create_domain(dom("d1", id)).unwrap();
    m.define(spec("later", CpuRequest::Count(2))).unwrap();
    let rows = m.list();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].name, "lic");
    assert_eq!(rows[1].cpus, vec![2, 3]);
    assert!(rows[1].active);
    assert_eq!(rows[1].domain_count, 1);
    assert_eq!(rows[0].domain_count, 1); // the control domain
    assert!(!rows[2].active);
    assert_eq!(rows[2].cpu_count, 2);
    assert_eq!(format_cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
}

/// xorshift64*: deterministic, seedable, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Apply one random operation (valid or not). Returns the operation kind and
/// whether it changed anything allowed to change (for `cpu_add`: at least one
/// CPU added).
fn random_op(m: &mut PoolManager, rng: &mut Rng) -> (usize, bool) {
    let pool = PoolId(rng.below(5) as u32);
    let cpu = rng.below(m.total_cpus() as u64 + 1) as u32;
    let names = ["a", "b", "c", "Pool-0", "", "d e"];
    let name = names[rng.below(names.len() as u64) as usize];
    let cpus = match rng.below(3) {
        0 => CpuRequest::Count(rng.below(4) as u32),
        _ => CpuRequest::List((0..rng.below(3)).map(|_| rng.below(10) as u32).collect()),
    };
    let sched = if rng.below(2) == 0 {
        Sched::credit()
    } else {
        sedf()
    };
    let domain = DomainId(rng.below(6) as u32);
    let dom_names = ["x", "y", "z", "Domain-0"];
    let kind = rng.below(OP_KINDS as u64) as usize;
    let ok = match kind {
        0 => m
            .define(PoolSpec {
                name: name.to_string(),
                sched,
                cpus,
                other_config: Vec::new(),
            })
            .is_ok(),
        1 => m
            .create(PoolSpec {
                name: name.to_string(),
                sched,
                cpus,
                other_config: Vec::new(),
            })
            .is_ok(),
        2 => m.activate(pool).is_ok(),
        3 => m.deactivate(pool).is_ok(),
        4 => m.delete(pool).is_ok(),
        5 => m.rename(pool, name).is_ok(),
        6 => {
            let extra = rng.below(10) as u32;
            match m.cpu_add(pool, &[cpu, extra]) {
                Ok(r) => r.results.iter().any(|(_, res)| res.is_ok()),
                Err(_) => false,
            }
        }
        7 => m.cpu_remove(pool, cpu).is_ok(),
        8 => m.migrate(domain, pool).is_ok(),
        9 => m
            .create_domain(DomainSpec {
                name: dom_names[rng.below(4) as usize].to_string(),
                pool,
                vcpus: rng.below(3) as u32,
                params: {
                    let mut params = DomainParams::new();
                    let weight = ["0", "256", "512", "70000"][rng.below(4) as usize];
                    params.set("weight", weight);
                    params
                },
            })
            .is_ok(),
        10 => m.destroy_domain(domain).is_ok(),
        11 => {
            let vcpu = [None, Some(0), Some(1), Some(3)][rng.below(4) as usize];
            let pin = (rng.below(4) != 0)
                .then(|| (0..1 + rng.below(2)).map(|_| rng.below(5) as u32).collect());
            m.pin(domain, vcpu, pin).is_ok()
        }
        12 => m.set_online(domain, rng.below(4) as u32).is_ok(),
        13 => m.lend(cpu, pool, 0, 1 + rng.below(1000)).is_ok(),
        14 => m.end_loan(cpu).is_ok(),
        _ => m.set_scheduler(pool, sched).is_ok(),
    };
    (kind, ok)
}

const OP_KINDS: usize = 16;

#[test]
fn random_operations_keep_invariants_and_refusals_change_nothing() {
    let mut successes = [0u32; OP_KINDS];
    let mut refusals = [0u32; OP_KINDS];
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut m = PoolManager::new(6, Some(1 + rng.below(6) as u32)).unwrap();
        for step in 0..1000 {
            let before = m.clone();
            let (kind, changed_ok) = random_op(&mut m, &mut rng);
            if let Err(why) = m.check_invariants() {
                panic!("seed {seed} step {step}: invariant broken: {why}");
            }
            if changed_ok {
                successes[kind] += 1;
            } else {
                refusals[kind] += 1;
                assert_eq!(m, before, "seed {seed} step {step}: refusal changed state");
            }
        }
    }
    // The walk must exercise both paths of every operation to mean anything.
    for kind in 0..OP_KINDS {
        assert!(successes[kind] > 20, "op {kind}: {successes:?} successes");
        assert!(refusals[kind] > 20, "op {kind}: {refusals:?} refusals");
    }
}

#[test]
fn invariant_checker_catches_a_cpu_in_two_pools() {
    let mut m = four_two();
    let (id, _) = m.create(spec("p1", list(&[2]))).unwrap();
    m.pools.get_mut(&id).unwrap().cpus.insert(0);
    assert_eq!(m.check_invariants(), Err("CPU in two pools"));
}

#[test]
fn domain_params_are_recorded_and_the_old_ones_returned() {
    // The manager keeps them; the pool's policy validates them (the
    // runtime restores the old ones when the policy refuses).
    let mut m = four_two();
    let (d, _) = m.create_domain(dom("d1", POOL0)).expect("created");
    let mut heavy = DomainParams::new();
    heavy.set("weight", "1024");
    heavy.set("cap", "50");
    assert_eq!(
        m.set_domain_params(d, heavy.clone()),
        Ok(DomainParams::default())
    );
    assert_eq!(m.domain(d).map(|x| x.params.clone()), Some(heavy.clone()));
    refused(&mut m, PoolError::NoSuchDomain, |m| {
        m.set_domain_params(DomainId(99), heavy)
    });
}

#[test]
fn pools_name_only_policies_that_exist() {
    let mut m = four_two();
    m.set_policies(vec!["credit".into(), "rr".into(), "sedf".into()]);
    let mut bogus = spec("p1", list(&[2]));
    bogus.sched = Sched::from_name("lottery").unwrap();
    let unknown = PoolError::UnknownPolicy {
        name: "lottery".into(),
        available: vec!["credit".into(), "rr".into(), "sedf".into()],
    };
    assert_eq!(
        unknown.to_string(),
        "no policy 'lottery' (available: credit, rr, sedf)"
    );
    refused(&mut m, unknown.clone(), |m| m.create(bogus.clone()));
    refused(&mut m, unknown.clone(), |m| m.define(bogus.clone()));
    let (id, _) = m.create(spec("p1", list(&[2]))).unwrap();
    refused(&mut m, unknown, |m| {
        m.set_scheduler(id, Sched::from_name("lottery").unwrap())
    });
    assert_eq!(
        m.set_scheduler(id, Sched::from_name("rr").unwrap())
            .unwrap(),
        vec![Action::ChangeScheduler { pool: id }]
    );
    assert!(Sched::from_name("Bad Name").is_none());
    assert!(Sched::from_name("9lives").is_none());
    assert!(Sched::from_name(&"x".repeat(33)).is_none());
}

#[test]
fn a_loan_moves_a_cpu_and_brings_it_back() {
    let mut m = four_two();
    let (p, _) = m.create(spec("p", list(&[2, 3]))).unwrap();
    let actions = m.lend(3, POOL0, 1000, 500).unwrap();
    assert_eq!(
        actions,
        vec![
            Action::RevokeCpu { cpu: 3, pool: p },
            Action::BindCpu {
                cpu: 3,
                pool: POOL0
            }
        ]
    );
    assert_eq!(m.cpu_owner(3), Some(POOL0));
    m.check_invariants().unwrap();
    assert!(m.loans_due(1499).is_empty());
    assert_eq!(m.loans_due(1500), vec![3]);
    // While it runs: not lent twice, not removed, neither pool deactivated.
    refused(&mut m, PoolError::CpuOnLoan(3), |m| m.lend(3, p, 1000, 10));
    refused(&mut m, PoolError::CpuOnLoan(3), |m| m.cpu_remove(POOL0, 3));
    refused(&mut m, PoolError::CpuOnLoan(3), |m| m.deactivate(p));
    let back = m.end_loan(3).unwrap();
    assert_eq!(
        back,
        vec![
            Action::RevokeCpu {
                cpu: 3,
                pool: POOL0
            },
            Action::BindCpu { cpu: 3, pool: p }
        ]
    );
    assert_eq!(m.cpu_owner(3), Some(p));
    assert!(m.loans().next().is_none());
    m.check_invariants().unwrap();
}

#[test]
fn loans_follow_the_rules() {
    let mut m = four_two();
    let (p, _) = m.create(spec("p", list(&[2]))).unwrap();
    refused(&mut m, PoolError::NoSuchCpu(9), |m| m.lend(9, p, 0, 10));
    refused(&mut m, PoolError::CpuFree(3), |m| m.lend(3, p, 0, 10));
    refused(&mut m, PoolError::LoanToOwner(2), |m| m.lend(2, p, 0, 10));
    refused(&mut m, PoolError::LastCpu(2), |m| m.lend(2, POOL0, 0, 10));
    refused(&mut m, PoolError::InvalidLoan, |m| m.lend(1, p, 0, 0));
    refused(&mut m, PoolError::InvalidLoan, |m| {
        m.lend(1, p, 0, MAX_LOAN_MS + 1)
    });
    refused(&mut m, PoolError::NotOnLoan(1), |m| m.end_loan(1));
    let q = m.define(spec("q", list(&[3]))).unwrap();
    refused(&mut m, PoolError::PoolNotActive, |m| m.lend(1, q, 0, 10));
}

/// A borrowed CPU is not a pool's own: a pool with domains keeps a CPU of
/// its own, so the loan's end never leaves its domains without one (the
/// random walk broke that before: a pool lent a CPU removed its own, then
/// the loan ended).
#[test]
fn a_pool_with_domains_keeps_a_cpu_of_its_own() {
    let mut m = four_two();
    let (p, _) = m.create(spec("p", list(&[2]))).unwrap();
    m.lend(1, p, 0, 10).unwrap();
    m.create_domain(dom("d", p)).unwrap();
    refused(&mut m, PoolError::LastCpu(2), |m| m.cpu_remove(p, 2));
    refused(&mut m, PoolError::LastCpu(2), |m| m.lend(2, POOL0, 0, 10));
    m.end_loan(1).unwrap();
    m.check_invariants().unwrap();
    // A pool whose only CPU is borrowed takes no domain.
    let (q, _) = m.create(spec("q", list(&[3]))).unwrap();
    m.cpu_remove(q, 3).unwrap();
    m.lend(1, q, 0, 10).unwrap();
    refused(&mut m, PoolError::PoolWithoutCpus, |m| {
        m.create_domain(dom("e", q)).map(|_| ())
    });
    let d = m.domain_id("d").unwrap();
    refused(&mut m, PoolError::PoolWithoutCpus, |m| m.migrate(d, q));
}

fn sedf() -> Sched {
    Sched::from_name("sedf").expect("a policy name")
}

fn dom_vcpus(name: &str, pool: PoolId, vcpus: u32) -> DomainSpec {
    DomainSpec {
        vcpus,
        ..dom(name, pool)
    }
}

fn cpus(list: &[u32]) -> BTreeSet<u32> {
    list.iter().copied().collect()
}

#[test]
fn vcpu_pin_needs_a_cpu_of_the_pool_and_a_vcpu_of_the_domain() {
    // Pool-0 has CPUs 0-1 of 4.
    let mut m = four_two();
    let (d, _) = m.create_domain(dom_vcpus("d", POOL0, 2)).unwrap();
    assert_eq!(m.domain(d).unwrap().affinity, vec![None, None]);
    assert_eq!(m.domain(d).unwrap().online, 2);
    // Xen's EINVAL: no CPU of the pool in the set.
    refused(
        &mut m,
        PoolError::AffinityOutsidePool {
            cpus: "2-3".to_string(),
            pool: "Pool-0".to_string(),
            pool_cpus: "0-1".to_string(),
        },
        |m| m.pin(d, Some(0), Some(cpus(&[2, 3]))),
    );
    refused(&mut m, PoolError::NoSuchCpu(4), |m| {
        m.pin(d, Some(0), Some(cpus(&[0, 4])))
    });
    refused(&mut m, PoolError::NoSuchVcpu { vcpu: 2, vcpus: 2 }, |m| {
        m.pin(d, Some(2), Some(cpus(&[0])))
    });
    refused(&mut m, PoolError::ControlDomainVcpu, |m| {
        m.pin(CONTROL_DOMAIN, None, Some(cpus(&[0])))
    });
    refused(&mut m, PoolError::NoSuchDomain, |m| {
        m.pin(DomainId(9), None, None)
    });
    // One vCPU; a set with a CPU outside the pool keeps it (Xen does).
    let old = m.pin(d, Some(1), Some(cpus(&[1, 2]))).unwrap();
    assert_eq!(old, vec![None, None]);
    assert_eq!(
        m.domain(d).unwrap().affinity,
        vec![None, Some(cpus(&[1, 2]))]
    );
    // All vCPUs; every CPU of the machine is `all` (None).
    m.pin(d, None, Some(cpus(&[0]))).unwrap();
    assert_eq!(m.domain(d).unwrap().affinity, vec![Some(cpus(&[0])); 2]);
    m.pin(d, Some(0), Some(cpus(&[0, 1, 2, 3]))).unwrap();
    assert_eq!(m.domain(d).unwrap().affinity[0], None);
    let old = m.pin(d, None, None).unwrap();
    m.restore_affinity(d, old).unwrap();
    assert_eq!(m.domain(d).unwrap().affinity, vec![None, Some(cpus(&[0]))]);
    m.check_invariants().unwrap();
}

#[test]
fn migrate_resets_affinity_as_xen_does() {
    let mut m = four_two();
    let (p, _) = m.create(spec("p", list(&[2, 3]))).unwrap();
    let (d, _) = m.create_domain(dom_vcpus("d", POOL0, 2)).unwrap();
    m.pin(d, None, Some(cpus(&[1]))).unwrap();
    m.pin_soft(d, Some(1), Some(cpus(&[0]))).unwrap();
    m.migrate(d, p).unwrap();
    assert_eq!(m.domain(d).unwrap().affinity, vec![None, None]);
    assert_eq!(m.domain(d).unwrap().soft_affinity, vec![None, None]);
    m.check_invariants().unwrap();
}

#[test]
fn soft_affinity_is_any_cpus_of_the_machine() {
    let mut m = four_two();
    let (p, _) = m.create(spec("p", list(&[2, 3]))).unwrap();
    let (d, _) = m.create_domain(dom_vcpus("d", p, 2)).unwrap();
    // Outside the pool is a preference like any other (the policy
    // considers only its CPUs); every CPU is no preference.
    let old = m.pin_soft(d, Some(0), Some(cpus(&[0]))).unwrap();
    assert_eq!(old, vec![None, None]);
    m.pin_soft(d, Some(1), Some(cpus(&[0, 1, 2, 3]))).unwrap();
    assert_eq!(
        m.domain(d).unwrap().soft_affinity,
        vec![Some(cpus(&[0])), None]
    );
    // Refused, nothing changed: a CPU the machine lacks, a vCPU the
    // domain lacks, the control domain.
    let before = m.clone();
    assert_eq!(
        m.pin_soft(d, None, Some(cpus(&[4]))),
        Err(PoolError::NoSuchCpu(4))
    );
    assert!(m.pin_soft(d, Some(2), None).is_err());
    assert!(m.pin_soft(CONTROL_DOMAIN, None, None).is_err());
    assert_eq!(m, before);
    m.restore_soft_affinity(d, old).unwrap();
    assert_eq!(m.domain(d).unwrap().soft_affinity, vec![None, None]);
    m.check_invariants().unwrap();
}

#[test]
fn a_cpu_leaving_breaks_only_the_affinities_it_empties() {
    let mut m = PoolManager::new(4, Some(3)).unwrap();
    let (d, _) = m.create_domain(dom_vcpus("d", POOL0, 3)).unwrap();
    m.pin(d, Some(0), Some(cpus(&[2]))).unwrap();
    m.pin(d, Some(1), Some(cpus(&[1, 2]))).unwrap();
    let actions = m.cpu_remove(POOL0, 2).unwrap();
    // Broken first (the server gets the reset affinity while the CPU is
    // still there), then the CPU goes.
    assert_eq!(
        actions,
        vec![
            Action::BreakAffinity {
                domain: d,
                vcpu: 0,
                pool: POOL0,
                cpu: 2
            },
            Action::RevokeCpu {
                cpu: 2,
                pool: POOL0
            },
        ]
    );
    // vCPU 1 keeps CPU 2 in its set (xl lists it), vCPU 2 had none.
    assert_eq!(
        m.domain(d).unwrap().affinity,
        vec![None, Some(cpus(&[1, 2])), None]
    );
    // A loan takes a CPU away too.
    m.pin(d, Some(0), Some(cpus(&[1]))).unwrap();
    let (p, _) = m.create(spec("p", list(&[3]))).unwrap();
    let actions = m.lend(1, p, 0, 10).unwrap();
    assert_eq!(
        actions[0],
        Action::BreakAffinity {
            domain: d,
            vcpu: 0,
            pool: POOL0,
            cpu: 1
        }
    );
    m.check_invariants().unwrap();
}

#[test]
fn vcpu_set_brings_1_to_vcpus_online() {
    let mut m = four_two();
    let (d, _) = m.create_domain(dom_vcpus("d", POOL0, 3)).unwrap();
    assert_eq!(m.set_online(d, 1).unwrap(), 3);
    assert_eq!(m.domain(d).unwrap().online, 1);
    for n in [0, 4] {
        refused(
            &mut m,
            PoolError::InvalidOnline {
                requested: n,
                vcpus: 3,
            },
            |m| m.set_online(d, n),
        );
    }
    refused(&mut m, PoolError::ControlDomainVcpu, |m| {
        m.set_online(CONTROL_DOMAIN, 1)
    });
    refused(&mut m, PoolError::InvalidVcpus, |m| {
        m.create_domain(dom_vcpus("e", POOL0, MAX_VCPUS + 1))
    });
    m.check_invariants().unwrap();
}
