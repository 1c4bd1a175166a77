//! The in-image test suite. It exercises every system call, every
//! capability operation and every documented error of `tarn_ipc_schema`,
//! each test asserting the exact result. One line per test:
//! `test <name> ... ok` (or `ok (skipped: <why>)`, or `FAILED: <why>`), then
//! `N passed, M failed`, then it powers the machine off with status 0 if
//! nothing failed and 1 otherwise.
//!
//! All objects the tests make come from the untyped memory the root task
//! handed over; the last test revokes it and checks that the kernel's live
//! object count is back where it started and its invariants hold.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod cnode;
mod confine;
mod devices;
mod fault;
mod frame;
mod harness;
mod heap;
mod ipc;
mod ntfn;
mod process;
mod retype;
mod sched;
mod smp;
mod soundness;
mod syscalls;
mod tcb;

use harness::{Env, Outcome, Pass, Test};
use tarn_rt::invoke;
use tarn_rt::layout::slot;
use tarn_rt::println;
use tarn_rt::Resources;

tarn_rt::entry!(main);

/// Every test, in order (the cleanup check runs after these).
const GROUPS: &[&[Test]] = &[
    syscalls::TESTS,
    retype::TESTS,
    cnode::TESTS,
    ipc::TESTS,
    ntfn::TESTS,
    tcb::TESTS,
    frame::TESTS,
    fault::TESTS,
    smp::TESTS,
    sched::TESTS,
    confine::TESTS,
    devices::TESTS,
    process::TESTS,
    heap::TESTS,
    soundness::TESTS,
];

/// Counts of passed and failed tests.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    fn record(&mut self, name: &str, outcome: Outcome) {
        match outcome {
            Ok(Pass::Ok) => {
                self.passed += 1;
                println!("test {name} ... ok");
            }
            Ok(Pass::Skipped(why)) => {
                self.passed += 1;
                println!("test {name} ... ok (skipped: {why})");
            }
            Err(why) => {
                self.failed += 1;
                println!("test {name} ... FAILED: {why}");
            }
        }
    }
}

fn main(arg: u64) {
    let Some(info) = tarn_rt::start_info(arg) else {
        println!("test-suite: no start page at {arg:#x}");
        power_off(1);
    };
    let mut res = Resources::from_boot_info(info);
    give_heap_a_region(&mut res);
    let start_objects = match invoke::machine_check_invariants(slot::MACHINE) {
        Ok(report) => report.live_objects,
        Err(error) => {
            println!("test-suite: cannot check the kernel's invariants: {error:?}");
            power_off(1);
        }
    };
    let mut env = match Env::new(info, res) {
        Ok(env) => env,
        Err(why) => {
            println!("test-suite: cannot set up: {why}");
            power_off(1);
        }
    };
    let total = GROUPS.iter().map(|group| group.len()).sum::<usize>() + 1;
    println!("test-suite: {total} tests, {} cpus", env.cpus);
    let mut tally = Tally::default();
    for (name, test) in GROUPS.iter().flat_map(|group| group.iter()) {
        let outcome = test(&mut env);
        tally.record(name, outcome);
    }
    tally.record(
        "cleanup_restores_live_objects",
        cleanup(&mut env, start_objects),
    );
    println!("{} passed, {} failed", tally.passed, tally.failed);
    power_off(if tally.failed == 0 { 0 } else { 1 });
}

/// Gives the heap the smallest untyped region of at least 4 MiB the start
/// page lists (the root task passes one on for it), taken out of `res` so
/// the cleanup's revocation spares it: the heap's frames stay mapped to the
/// end. Without one the heap tests skip.
fn give_heap_a_region(res: &mut Resources) {
    let Some(region) = res
        .untyped
        .regions()
        .iter()
        .filter(|r| r.size_bits >= 22 && r.watermark == 0)
        .min_by_key(|r| r.size_bits)
        .copied()
    else {
        return;
    };
    res.untyped.remove(region.cptr);
    if let Err(error) = tarn_rt::heap::grow_from(res, region) {
        println!("test-suite: cannot give the heap its region: {error:?}");
        res.untyped.add(region.cptr, region.phys, region.size_bits);
    }
}

/// Revokes all the suite's untyped memory (destroying every object the
/// tests made, helper processes and threads included) and checks the
/// kernel's accounting.
fn cleanup(env: &mut Env, start_objects: u64) -> Outcome {
    let regions: alloc::vec::Vec<u64> = env.res.untyped.regions().iter().map(|r| r.cptr).collect();
    for cptr in regions {
        invoke::cnode_revoke(slot::ROOT_CNODE, cptr)
            .map_err(|e| alloc::format!("revoke untyped {cptr}: {e:?}"))?;
        env.res.untyped.reset(cptr);
    }
    let report = invoke::machine_check_invariants(slot::MACHINE)
        .map_err(|e| alloc::format!("check invariants: {e:?}"))?;
    ensure!(
        report.consistent,
        "the kernel reports inconsistent state after cleanup"
    );
    // (The heap's frames, made after the count and kept, are memory, not
    // objects the kernel counts.)
    expect!(report.live_objects, start_objects);
    Ok(Pass::Ok)
}

fn power_off(status: u64) -> ! {
    let result = invoke::machine_power_off(slot::MACHINE, status);
    println!("test-suite: power-off failed: {result:?}");
    tarn_rt::exit()
}
