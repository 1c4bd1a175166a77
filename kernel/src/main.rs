//! Tarn: a capability microhypervisor for x86-64.
//!
//! Design principles (the whole of `ARCHITECTURE.md` in five lines):
//! 1. Mechanism in the kernel, policy in user-mode servers: the kernel never
//!    decides who runs next; it executes what the holder of a CPU capability said.
//! 2. Authority is a capability; revocation takes it back atomically.
//! 3. Nothing is lost when a policy server fails.
//! 4. Unsafe code lives only in `arch/` (and the user runtime); everything
//!    that can be pure lives in `tarn-kernel-core` and is tested on the host.
//! 5. Deterministic when tested: under `-icount` time is instruction count.
//!
//! This file is the boot sequence: boot information, memory, CPU tables,
//! ACPI, the local APICs, the timer, then every other CPU.

#![no_std]
#![no_main]

extern crate alloc;

#[macro_use]
mod console;
#[path = "arch/x86_64/mod.rs"]
mod arch;
mod bench;
mod boot;
mod devices;
mod dispatch;
mod fastpath;
mod invariants;
mod ipc;
mod object;
mod rootserver;
mod sched;
mod selftest;
mod syscall;
mod vcpu;

use arch::frame::FRAMES;
use arch::paging::{
    self, flags, kernel_virt_to_phys, phys_to_virt, PageTables, KERNEL_VMA, LARGE_PAGE_SIZE,
};
use arch::percpu;
use arch::{apic, cpu, lock, objmem, smp, timer, trap, user};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Once;
use tarn_kernel_core::acpi;
use tarn_kernel_core::cmdline::KernelArgs;
use tarn_kernel_core::srat;
use x86::controlregs::Cr4;

/// Bytes of kernel heap.
const HEAP_BYTES: u64 = 8 * 1024 * 1024;

/// The kernel's own page tables (every CPU runs on them in kernel mode).
static KERNEL_TABLES: Once<PageTables> = Once::new();
/// CPU features of the boot CPU (all CPUs are assumed alike).
static FEATURES: Once<cpu::Features> = Once::new();
static EXITING: AtomicBool = AtomicBool::new(false);

extern "C" {
    static __kernel_phys_start: u8;
    static __kernel_phys_end: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
}

fn symbol<T>(s: &T) -> u64 {
    s as *const T as u64
}

/// Entered from boot.S on the boot CPU, in long mode on the boot page tables.
#[no_mangle]
extern "C" fn kernel_entry(protocol: u32, info_phys: u32) -> ! {
    arch::serial::init();
    let entry_tsc = cpu::rdtsc();
    let info = match boot::gather(protocol, info_phys) {
        Ok(info) => info,
        Err(error) => {
            kprintln!("tarn: cannot read the boot information: {error}");
            exit(1);
        }
    };
    let args = KernelArgs::parse(info.cmdline, |warning| kprintln!("tarn: {warning}"));
    console::set_level(args.loglevel);
    if args.ipc_fastpath == Some(false) {
        fastpath::disable();
    }
    kinfo!(
        "booting via {:?}, {} MiB of RAM, command line \"{}\"",
        info.protocol,
        info.memory_map.total_usable() >> 20,
        info.cmdline
    );

    let features = *FEATURES.call_once(cpu::Features::detect);
    if !features.x2apic {
        kprintln!("tarn: this CPU has no x2APIC; Tarn needs one (QEMU: -cpu qemu64,+x2apic)");
        exit(1);
    }
    init_memory(&info);
    setup_cpu_control(&features);
    // Kernel entries from user mode use a guarded per-CPU stack; the boot
    // stack is left behind when the boot CPU first enters user mode.
    let tables = *KERNEL_TABLES
        .get()
        .expect("kernel tables exist after init_memory");
    let Ok(bsp_stack_top) = smp::map_kernel_stack(&tables, 0) else {
        kprintln!("tarn: no memory for the boot CPU's kernel stack");
        exit(1);
    };
    percpu::install(0, 0, bsp_stack_top);
    trap::load_idt();
    user::init_this_cpu();
    let madt = match find_madt(&info) {
        Ok(madt) => madt,
        Err(error) => {
            kprintln!("tarn: no usable ACPI MADT ({error:?}); starting only the boot CPU");
            None
        }
    };
    vcpu::init(
        &features,
        madt.as_ref().map_or(1, |m| m.enabled_cpus().count()),
    );
    arch::pit::mask_legacy_pic();
    apic::enable_x2apic();
    if let Some(hz) = args.pace_hz {
        arch::pit::start_pacer(hz);
        kinfo!("PIT pacing at {hz} Hz (interrupt masked)");
    }
    let bsp_apic_id = apic::id();
    let per_ms = timer::calibrate(features.tsc_deadline);
    timer::init_this_cpu();
    kdebug!(
        "TSC {} kHz, timer {}",
        per_ms,
        if timer::deadline_mode() {
            "TSC-deadline"
        } else {
            "one-shot"
        }
    );

    start_other_cpus(madt.as_ref(), bsp_apic_id);
    if let Some(madt) = madt.as_ref() {
        devices::init_irqs(madt, bsp_apic_id);
    }
    kprintln!("tarn: {} cpus online", percpu::online());
    // The SRAT is optional: without one the machine is a single node.
    let srat = find_srat(&info);
    if let Some(srat) = srat.as_ref() {
        kprintln!("tarn: {} NUMA nodes (ACPI SRAT)", srat.node_count());
    }
    kprintln!("tarn: virtualization: {}", features.virtualization());
    kdebug!(
        "boot took {} TSC ticks from kernel entry",
        cpu::rdtsc() - entry_tsc
    );

    if let Some(test) = args.selftest {
        selftest::run(test);
    }
    if args.bench {
        bench::run(entry_tsc);
    }
    if rootserver::modules().is_empty() {
        // A kernel built without user images (e.g. `cargo build -p tarn-kernel`).
        if args.poweroff {
            exit(0);
        }
        kinfo!("no root task in this boot image: idling (build with `cargo xtask build`)");
        idle()
    }
    let mut guard = lock::acquire();
    object::held::init(&mut guard);
    let initrd = (info.loader_range_count > 0).then(|| info.loader_ranges[0].clone());
    if let Err(error) = rootserver::start(
        &mut guard,
        info.cmdline,
        args.root_cnode_bits
            .unwrap_or(tarn_ipc_schema::boot::ROOT_CNODE_SIZE_BITS as u8),
        initrd,
        srat.as_ref(),
    ) {
        kprintln!("tarn: cannot start the root task: {error}");
        exit(1);
    }
    sched::schedule(guard)
}

/// Entered from trampoline.S on each application processor.
#[no_mangle]
extern "C" fn ap_main(arg: u64) -> ! {
    let index = arg as u32;
    let apic_id = (arg >> 32) as u32;
    if let Some(features) = FEATURES.get() {
        setup_cpu_control(features);
    }
    apic::enable_x2apic();
    percpu::install(index, apic_id, smp::kernel_stack_top(index));
    trap::load_idt();
    user::init_this_cpu();
    if !vcpu::init_this_cpu() {
        kprintln!("tarn: cpu {index}: VMXON failed; guests cannot run on it");
    }
    timer::init_this_cpu();
    smp::report_started(index);
    sched::schedule(lock::acquire())
}

/// Halts until an interrupt, forever (boot CPU without a root task).
fn idle() -> ! {
    loop {
        cpu::enable_interrupts_and_halt();
    }
}

/// Enables the CR4 protections this CPU has: global pages, SMEP, SMAP.
fn setup_cpu_control(features: &cpu::Features) {
    let mut cr4 = cpu::read_cr4();
    cr4.set(Cr4::CR4_ENABLE_GLOBAL_PAGES, features.pge);
    cr4.set(Cr4::CR4_ENABLE_SMEP, features.smep);
    cr4.set(Cr4::CR4_ENABLE_SMAP, features.smap);
    // SAFETY: only bits CPUID reports are set; the kernel touches no user
    // memory yet, so SMAP cannot fault a kernel path.
    unsafe { cpu::write_cr4(cr4) };
}

/// Frame allocator, the kernel page tables (W^X image, NX direct map), heap.
fn init_memory(info: &boot::BootInfo) {
    // SAFETY: taking addresses of linker-defined symbols.
    let (image_start, image_end) =
        unsafe { (symbol(&__kernel_phys_start), symbol(&__kernel_phys_end)) };
    let mut reserved = [const { 0..0 }; 10];
    reserved[0] = 0..0x10_0000;
    reserved[1] = image_start..image_end;
    for (slot, range) in reserved[2..]
        .iter_mut()
        .zip(&info.loader_ranges[..info.loader_range_count])
    {
        *slot = range.clone();
    }
    let mut free = [const { 0..0 }; arch::frame::MAX_RANGES];
    let count = info
        .memory_map
        .free_ranges(&reserved[..2 + info.loader_range_count], &mut free);
    FRAMES.lock().init(&free[..count]);

    let mut frames = FRAMES.lock();
    let tables = PageTables::new(&mut *frames).expect("memory for the kernel's root page table");
    let global = if FEATURES.get().is_some_and(|f| f.pge) {
        flags::GLOBAL
    } else {
        0
    };
    let nx = if FEATURES.get().is_some_and(|f| f.nx) {
        flags::NO_EXECUTE
    } else {
        0
    };
    // SAFETY: taking addresses of linker-defined symbols.
    let sections = unsafe {
        [
            (symbol(&__text_start), symbol(&__text_end), global),
            (symbol(&__rodata_start), symbol(&__rodata_end), global | nx),
            (
                symbol(&__data_start),
                symbol(&__data_end),
                global | nx | flags::WRITABLE,
            ),
        ]
    };
    for (start, end, section_flags) in sections {
        tables
            .map_range(
                start,
                kernel_virt_to_phys(start)..kernel_virt_to_phys(end),
                section_flags,
                &mut *frames,
            )
            .expect("memory for the kernel image mappings");
    }
    let direct_map_end = info
        .memory_map
        .max_usable_phys()
        .max(4 << 30)
        .next_multiple_of(LARGE_PAGE_SIZE);
    let mut phys = 0;
    while phys < direct_map_end {
        tables
            .map(
                phys_to_virt(phys),
                phys,
                flags::WRITABLE | nx | global,
                true,
                &mut *frames,
            )
            .expect("memory for the direct map");
        phys += LARGE_PAGE_SIZE;
    }
    debug_assert!(KERNEL_VMA > phys_to_virt(direct_map_end));
    objmem::set_direct_map_end(direct_map_end);
    paging::set_kernel_root(tables.root);
    let heap = frames
        .alloc_contiguous(HEAP_BYTES / paging::PAGE_SIZE)
        .expect("memory for the kernel heap");
    kdebug!(
        "{} MiB of RAM left for user memory",
        frames.available_bytes() >> 20
    );
    drop(frames);
    // SAFETY: the new tables map the kernel image, the boot stack (in .bss),
    // and all physical memory through the direct map, which is everything
    // the kernel touches from here on.
    unsafe { tables.activate() };
    KERNEL_TABLES.call_once(|| tables);
    arch::heap::init(heap, HEAP_BYTES as usize);
}

/// Finds and parses the MADT through the RSDP.
fn find_madt(info: &boot::BootInfo) -> Result<Option<acpi::Madt>, acpi::AcpiError> {
    let Some(rsdp) = info.rsdp.as_ref() else {
        return Ok(None);
    };
    let table = acpi::find_table(rsdp, b"APIC", &objmem::firmware_bytes)?;
    acpi::parse_madt(table).map(Some)
}

/// Finds and parses the SRAT through the RSDP; `None` when the firmware has
/// none (one node) or it is malformed (reported, then one node).
fn find_srat(info: &boot::BootInfo) -> Option<srat::Srat> {
    let rsdp = info.rsdp.as_ref()?;
    match acpi::find_table(rsdp, b"SRAT", &objmem::firmware_bytes).and_then(srat::parse_srat) {
        Ok(srat) => Some(srat),
        Err(acpi::AcpiError::NotFound) => None,
        Err(error) => {
            kprintln!("tarn: ignoring the ACPI SRAT ({error}); one NUMA node");
            None
        }
    }
}

/// Starts every enabled CPU in the MADT other than the boot CPU.
fn start_other_cpus(madt: Option<&acpi::Madt>, bsp_apic_id: u32) {
    let Some(madt) = madt else { return };
    let tables = KERNEL_TABLES
        .get()
        .expect("kernel tables exist after init_memory");
    smp::install_trampoline();
    let others = || madt.enabled_cpus().filter(|e| e.apic_id != bsp_apic_id);
    for entry in others().skip(percpu::MAX_CPUS - 1) {
        kwarn!(
            "more than {} CPUs; ignoring x2APIC id {}",
            percpu::MAX_CPUS,
            entry.apic_id
        );
    }
    let starting = || others().take(percpu::MAX_CPUS - 1);
    smp::init_aps(starting().map(|entry| entry.apic_id));
    let mut index = 1;
    for entry in starting() {
        match smp::start_ap(tables, index, entry.apic_id) {
            Ok(()) => index += 1,
            Err(error) => kwarn!(
                "cpu with x2APIC id {} did not start: {error:?}",
                entry.apic_id
            ),
        }
    }
}

/// Ends the run: prints the verdict line, drains the UART, and stops the
/// machine (QEMU's isa-debug-exit, then Bochs' magic breakpoint, then halt).
pub fn exit(status: u8) -> ! {
    if EXITING.swap(true, Ordering::AcqRel) {
        cpu::halt_forever();
    }
    console::force_write(format_args!("tarn: exit status {status}\n"));
    arch::serial::drain();
    // SAFETY: port 0xF4 is QEMU's isa-debug-exit device (absent elsewhere,
    // where the write is ignored); the machine stops on this path anyway.
    unsafe { cpu::outb(0xF4, status) };
    cpu::bochs_magic_break();
    cpu::halt_forever()
}

#[panic_handler]
fn panic(panic_info: &core::panic::PanicInfo<'_>) -> ! {
    cpu::disable_interrupts();
    console::force_write(format_args!(
        "tarn: kernel panic on cpu {}: {panic_info}\n",
        percpu::index_or_boot()
    ));
    exit(1)
}
