//! The root task: the first user program. It reports what it was given,
//! then acts on the kernel command line:
//!
//! - `test`: starts the `test-suite` module (with the `test-helper` module
//!   passed on) and serves its faults;
//! - `fuzz`: starts the `fuzz` module and serves its faults;
//! - `fuzzgraph`: starts the `fuzz-graph` module (the stateful fuzzer,
//!   with IRQ control) and serves its faults;
//! - `schedtest`: starts `sched-shares` (credit on metal, measured shares);
//! - `vmtest=GUEST,...`: starts the `vmm` module, which runs those guests;
//! - `bench`: starts the `bench` module (passing it on, as the IPC server's
//!   program) and serves its faults;
//! - otherwise prints `root: ready` and, with `poweroff`, powers off (status
//!   0); without it, becomes the pool manager: it starts the console's input
//!   (whose notification the manager's threads signal), the manager
//!   (`tarn_pool_runtime`, under `pool-manager/runtime/`: Pool-0 from boot,
//!   with every `Cpu` capability and the memory left), the boot-time configs
//!   (`autostart.rs`) and the archive's `autorun.cmds`, then serves the
//!   serial console.
//!
//! A started child gets all untyped memory but half of the largest region
//! (which the root keeps to build the child), copies of the CPU capabilities,
//! the Machine
//! capability, a narrow I/O-port range, IRQ control (test suite and stateful fuzzer
//! only), and a
//! badged copy of the root's fault endpoint; its arguments are the root's
//! own command line (see `tarn_rt`'s start-page convention).

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod autostart;

use alloc::vec::Vec;
use tarn_pool_manager::pools::{PoolManager, POOL0};
use tarn_pool_runtime::{Clock, Console, Pools};
use tarn_rt::abi::boot::{BootInfo, ModuleDesc, MAX_UNTYPED};
use tarn_rt::abi::{fault, CPtr, Error, ObjectType, Rights};
use tarn_rt::invoke;
use tarn_rt::layout::slot;
use tarn_rt::{println, CapGrant, Message, ProcessConfig, Resources, UntypedGrant};

tarn_rt::entry!(main);

/// Badge of the fault-endpoint copy the started child's thread uses.
const CHILD_FAULT_BADGE: u64 = 1;
/// The I/O ports the test suite may use (POST code and DMA page registers,
/// harmless to read and write).
const SUITE_PORTS: (u64, u64) = (0x80, 0x8F);
/// The one I/O port the fuzzer may use.
const FUZZ_PORTS: (u64, u64) = (0x80, 0x80);
/// Main-thread stack of a started child (the root's own size).
const CHILD_STACK_PAGES: u64 = 64;
/// Page-table memory of a started child (log2 bytes).
const CHILD_VSPACE_BITS: u64 = 21;
/// log2 bytes of the region a child gets for its heap besides its memory.
const CHILD_HEAP_BITS: u64 = 23;
/// The root task's heap may grow to 1/32 of the memory it was given (in
/// whole 2 MiB frames, a power of two of them), at least 2 MiB and at most
/// 32 MiB: its state grows with the domains and pools it manages
/// (~1.4 KiB per domain), beyond the initial 512 KiB at ~370 domains, and
/// `top` holds two reports of every domain while it measures (with 1 000
/// domains the 2 MiB that 1/64 of 256 MiB gave ran out in `top`).
const HEAP_LIMIT_SHARE: u64 = 32;
const HEAP_LIMIT_MIN: u64 = 2 << 20;
const HEAP_LIMIT_MAX: u64 = 32 << 20;

fn main(arg: u64) {
    let Some(info) = tarn_rt::start_info(arg) else {
        println!("root: no boot information at {arg:#x}");
        return;
    };
    let untyped_bytes: u64 = info.untyped().iter().map(|u| 1u64 << u.size_bits).sum();
    let names: Vec<&str> = info.modules().iter().map(|m| m.name()).collect();
    println!(
        "root: {} cpus, {} MiB untyped, modules: {}",
        info.cpu_count,
        untyped_bytes >> 20,
        names.join(" ")
    );

    let mut resources = Resources::from_boot_info(info);
    let words: Vec<&str> = info.cmdline().split_whitespace().collect();
    if words.contains(&"test") {
        run_child(
            info,
            &mut resources,
            "test-suite",
            &["test-helper", "policy-credit"],
            SUITE_PORTS,
            true,
        );
    } else if words.contains(&"fuzz") {
        run_child(info, &mut resources, "fuzz", &[], FUZZ_PORTS, false);
    } else if words.contains(&"fuzzgraph") {
        run_child(info, &mut resources, "fuzz-graph", &[], FUZZ_PORTS, true);
    } else if words
        .iter()
        .any(|w| *w == "schedtest" || w.starts_with("schedtest="))
    {
        run_child(info, &mut resources, "sched-shares", &[], FUZZ_PORTS, false);
    } else if words.iter().any(|w| w.starts_with("vmtest=")) {
        run_child(info, &mut resources, "vmm", &[], FUZZ_PORTS, false);
    } else if words.contains(&"bench") {
        run_child(info, &mut resources, "bench", &["bench"], FUZZ_PORTS, false);
    } else {
        println!("root: ready");
        if words.contains(&"poweroff") {
            power_off(0);
        }
        let pools = pool0(info, &words);
        run_manager(info, &mut resources, pools);
    }
}

/// Starts the pool manager on `pools` (the boot state of the pools), the
/// boot-time configs and the autorun script, then serves the console
/// forever. The console's input comes first: the manager's threads (fault
/// watcher, tenants) wake the console through its notification.
fn run_manager(
    info: &'static BootInfo,
    resources: &mut Resources,
    pools: Option<PoolManager>,
) -> ! {
    let untyped_bytes: u64 = info.untyped().iter().map(|u| 1u64 << u.size_bits).sum();
    let limit = (untyped_bytes / HEAP_LIMIT_SHARE).clamp(HEAP_LIMIT_MIN, HEAP_LIMIT_MAX);
    match resources
        .sync_untyped()
        .and_then(|()| tarn_rt::heap::set_aside(resources, limit))
    {
        Ok(()) => println!(
            "root: heap: {} KiB, grows to {} KiB more",
            tarn_rt::INITIAL_HEAP_BYTES >> 10,
            tarn_rt::heap::stats().limit_bytes >> 10
        ),
        Err(error) => println!("error: root: the heap cannot grow: {error:?}"),
    }
    let mut console = Console::new(info, resources);
    let mut pools = pools.and_then(|manager| {
        match Pools::start(info, resources, manager, console.wake(), Clock) {
            Ok(pools) => Some(pools),
            Err(error) => {
                println!("error: root: cannot start the pool manager: {error:?}");
                None
            }
        }
    });
    if let Some(p) = &pools {
        let cpus = p.manager.pool(POOL0).map_or(0, |p| p.cpus.len());
        println!("root: Pool-0: credit on {cpus} cpus");
    }
    autostart::load(info);
    if let Some(p) = pools.as_mut() {
        p.refresh_policies();
        autostart::run(
            resources,
            p,
            info.cmdline(),
            &tarn_pool_runtime::console::topology(info),
        );
    }
    if !info.cmdline().split_whitespace().any(|w| w == "noauto") {
        let script = tarn_pool_runtime::configs::autorun();
        console.run_script(resources, pools.as_mut(), &script);
    }
    console.serve(resources, pools)
}

/// Starts module `name` as a process and serves its faults forever.
fn run_child(
    info: &BootInfo,
    resources: &mut Resources,
    name: &str,
    pass_on: &[&str],
    ports: (u64, u64),
    irq_control: bool,
) -> ! {
    let Some(module) = info.module(name) else {
        // The system image carries no test task (`cargo xtask run` boots
        // the test image when the command line starts one).
        println!("root: FAILED: no module called {name} in this image");
        power_off(1);
    };
    match start_child(info, resources, module, pass_on, ports, irq_control) {
        Ok(fault_endpoint) => {
            println!("root: started {name}");
            serve_faults(fault_endpoint, name)
        }
        Err(error) => {
            println!("root: FAILED: cannot start {name}: {error:?}");
            power_off(1);
        }
    }
}

/// Builds the child; returns the fault endpoint the root listens on.
fn start_child(
    info: &BootInfo,
    resources: &mut Resources,
    module: &ModuleDesc,
    pass_on: &[&str],
    ports: (u64, u64),
    irq_control: bool,
) -> Result<CPtr, Error> {
    // Memory: every untyped region but the largest moves to the child whole;
    // the largest (where the kernel built the root's own objects) gives half.
    resources.sync_untyped()?;
    let largest = resources
        .untyped
        .regions()
        .iter()
        .max_by_key(|r| (r.size_bits, r.phys))
        .copied()
        .ok_or(Error::OutOfMemory)?;
    let mut untyped = Vec::new();
    let others: Vec<_> = resources
        .untyped
        .regions()
        .iter()
        .filter(|r| r.cptr != largest.cptr && r.watermark == 0)
        .copied()
        .collect();
    for region in others.into_iter().take(MAX_UNTYPED - 2) {
        resources.untyped.remove(region.cptr);
        untyped.push(UntypedGrant {
            cptr: region.cptr,
            phys: region.phys,
            size_bits: region.size_bits,
        });
    }
    if let Ok((share, phys)) = resources.create_untyped(largest.size_bits - 1) {
        untyped.push(UntypedGrant {
            cptr: share,
            phys,
            size_bits: largest.size_bits - 1,
        });
    }
    // A region of its own the child may give its heap (the test suite does,
    // and keeps it out of the memory its cleanup revokes).
    if let Ok((heap, phys)) = resources.create_untyped(CHILD_HEAP_BITS) {
        untyped.push(UntypedGrant {
            cptr: heap,
            phys,
            size_bits: CHILD_HEAP_BITS,
        });
    }

    let fault_endpoint = resources.create(ObjectType::Endpoint, 0)?;
    let child_fault = resources.alloc_slot()?;
    invoke::cnode_mint(
        resources.cnode,
        child_fault,
        resources.cnode,
        fault_endpoint,
        Rights::ALL,
        CHILD_FAULT_BADGE,
    )?;

    let io_ports = resources.alloc_slot()?;
    invoke::ioport_issue(slot::IO_PORTS, ports.0, ports.1, io_ports)?;

    let mut caps = Vec::new();
    caps.push(CapGrant {
        source: slot::MACHINE,
        dest: slot::MACHINE,
        rights: Rights::ALL,
        badge: 0,
    });
    caps.push(CapGrant {
        source: io_ports,
        dest: slot::IO_PORTS,
        rights: Rights::ALL,
        badge: 0,
    });
    if irq_control {
        caps.push(CapGrant {
            source: slot::IRQ_CONTROL,
            dest: slot::IRQ_CONTROL,
            rights: Rights::ALL,
            badge: 0,
        });
    }
    let modules: Vec<ModuleDesc> = pass_on
        .iter()
        .filter_map(|name| info.module(name))
        .copied()
        .collect();
    let config = ProcessConfig {
        elf: tarn_rt::module_bytes(module),
        vspace_bits: CHILD_VSPACE_BITS,
        cnode_bits: tarn_rt::layout::PROCESS_CNODE_SIZE_BITS,
        stack_pages: CHILD_STACK_PAGES,
        fault_endpoint: child_fault,
        caps: &caps,
        untyped: &untyped,
        memory_bits: 0,
        modules: &modules,
        cmdline: info.cmdline(),
        cpu_count: info.cpu_count,
        cpu: None,
        cpu_caps: (info.first_cpu_slot != 0).then_some(info.first_cpu_slot),
        suspended: false,
    };
    tarn_rt::spawn_process(resources, &config)?;
    Ok(fault_endpoint)
}

/// Reports every fault message that arrives; the faulting thread stays stopped.
fn serve_faults(endpoint: CPtr, name: &str) -> ! {
    loop {
        match tarn_rt::recv(endpoint) {
            Ok(message) => report_fault(name, &message),
            Err(error) => {
                println!("root: cannot receive faults: {error:?}");
                loop {
                    tarn_rt::yield_now();
                }
            }
        }
    }
}

fn report_fault(name: &str, message: &Message) {
    let task = if message.badge == CHILD_FAULT_BADGE {
        name
    } else {
        "an unknown task"
    };
    let [rip, address, error_code, vector] = message.mrs;
    match message.label() {
        fault::PAGE_FAULT => {
            println!("root: fault in {task}: page fault at address {address:#x}, rip {rip:#x}, error code {error_code:#x}")
        }
        fault::EXCEPTION => println!(
            "root: fault in {task}: exception {vector} at rip {rip:#x}, error code {error_code:#x}"
        ),
        label => println!("root: fault in {task}: unexpected message label {label:#x}"),
    }
}

/// Waits forever on a notification nobody signals.
fn power_off(status: u64) -> ! {
    let result = invoke::machine_power_off(slot::MACHINE, status);
    println!("root: power-off failed: {result:?}");
    tarn_rt::exit()
}

/// The boot state of the pools: Pool-0 with every CPU (or the first
/// `pool0_cpus=N`), the rest free. The console starts the pool manager's
/// runtime on it (Pool-0's credit server, then the auto configs).
fn pool0(info: &BootInfo, words: &[&str]) -> Option<PoolManager> {
    if info.module("policy-credit").is_none() || info.first_cpu_slot == 0 {
        println!("root: no scheduler server or no CPU capabilities; no pools");
        return None;
    }
    let pool0_cpus = words
        .iter()
        .find_map(|w| w.strip_prefix("pool0_cpus="))
        .and_then(|n| n.parse().ok());
    match PoolManager::new(info.cpu_count as u32, pool0_cpus) {
        Ok(pools) => Some(pools),
        Err(error) => {
            println!("error: root: pool0_cpus: {error}; no pools");
            None
        }
    }
}
