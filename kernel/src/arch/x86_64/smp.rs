//! Application-processor bring-up: INIT-SIPI-SIPI through the x2APIC ICR,
//! through the real-mode trampoline (trampoline.S) copied to
//! `AP_TRAMPOLINE_BASE`. Every AP gets its INIT first and the protocol's
//! 10 ms INIT wait is paid once for all of them ([`init_aps`]); then each
//! gets its start-up IPIs in turn ([`start_ap`]), since they share the
//! trampoline's parameter block, and the boot CPU moves on as soon as the
//! AP reports, instead of waiting out the fixed delays. Each AP gets its own kernel stack with an unmapped
//! guard page below it, switches to the kernel page tables, and calls `ap_main`.

use super::paging::{self, flags, phys_to_virt, PageTables, KERNEL_STACKS, PAGE_SIZE};
use super::{apic, cpu, timer};
use crate::arch::frame::FRAMES;
use core::sync::atomic::{AtomicU32, Ordering};

/// Physical address the trampoline runs at (SIPI vector 0x08).
pub const AP_TRAMPOLINE_BASE: u64 = 0x8000;
/// Kernel stack size per CPU.
pub const KERNEL_STACK_BYTES: u64 = 64 * 1024;
/// Virtual distance between two CPUs' stacks (stack plus guard page).
const KERNEL_STACK_STRIDE: u64 = KERNEL_STACK_BYTES + PAGE_SIZE;

extern "C" {
    static ap_trampoline_begin: u8;
    static ap_trampoline_end: u8;
    static ap_param_boot_cr3: u64;
    static ap_param_efer: u64;
    static ap_param_arg: u64;
    static ap_param_kernel_cr3: u64;
    static ap_param_stack: u64;
    static boot_pml4: u8;
}

/// The index of the last AP that finished starting (handshake with `ap_main`).
static LAST_STARTED: AtomicU32 = AtomicU32::new(0);

/// Why an AP did not come up.
#[derive(Debug, Clone, Copy)]
pub enum StartError {
    /// No memory for its stack.
    OutOfMemory,
    /// It did not answer within the timeout.
    Timeout,
}

/// The top of CPU `index`'s kernel stack (mapped by [`map_kernel_stack`]).
pub fn kernel_stack_top(index: u32) -> u64 {
    KERNEL_STACKS + u64::from(index) * KERNEL_STACK_STRIDE + PAGE_SIZE + KERNEL_STACK_BYTES
}

/// Maps the kernel stack of CPU `index` (with a guard page below it) and
/// returns its top.
pub fn map_kernel_stack(tables: &PageTables, index: u32) -> Result<u64, StartError> {
    let base = kernel_stack_top(index) - KERNEL_STACK_BYTES;
    let phys = crate::arch::frame::alloc_zeroed(KERNEL_STACK_BYTES / PAGE_SIZE)
        .ok_or(StartError::OutOfMemory)?;
    let mut frames = FRAMES.lock();
    tables
        .map_range(
            base,
            phys..phys + KERNEL_STACK_BYTES,
            flags::WRITABLE | flags::NO_EXECUTE | flags::GLOBAL,
            &mut *frames,
        )
        .map_err(|_| StartError::OutOfMemory)?;
    Ok(base + KERNEL_STACK_BYTES)
}

fn symbol_address<T>(symbol: &T) -> u64 {
    symbol as *const T as u64
}

fn spin_for_tsc(ticks: u64) {
    let start = cpu::rdtsc();
    while cpu::rdtsc() - start < ticks {
        cpu::pause();
    }
}

/// Copies the trampoline below 1 MiB. Call once before [`start_ap`].
pub fn install_trampoline() {
    // SAFETY: the linker script places the trampoline in .boot (identity:
    // virtual = physical) between these two symbols.
    let (start, end) = unsafe {
        (
            symbol_address(&ap_trampoline_begin),
            symbol_address(&ap_trampoline_end),
        )
    };
    assert!(
        end - start <= PAGE_SIZE,
        "AP trampoline larger than one page"
    );
    // SAFETY: the source is the kernel image (direct-mapped); the destination
    // page at AP_TRAMPOLINE_BASE lies in the first MiB, which the frame
    // allocator never hands out.
    unsafe {
        core::ptr::copy_nonoverlapping(
            phys_to_virt(start) as *const u8,
            phys_to_virt(AP_TRAMPOLINE_BASE) as *mut u8,
            (end - start) as usize,
        );
    }
}

fn set_param(symbol: u64, value: u64) {
    // SAFETY: reading the address of a linker symbol.
    let start = unsafe { symbol_address(&ap_trampoline_begin) };
    let target = phys_to_virt(AP_TRAMPOLINE_BASE + (symbol - start)) as *mut u64;
    // SAFETY: `symbol` is a parameter slot inside the trampoline page copied
    // to AP_TRAMPOLINE_BASE; no AP is reading it (they get their start-up
    // IPIs one at a time, after the previous one reported).
    unsafe { core::ptr::write_volatile(target, value) };
}

/// Sends INIT to each AP in `apic_ids` and waits the 10 ms the
/// multiprocessor start-up protocol asks after INIT (Intel SDM Vol. 3A,
/// 9.4.4.1), once for all of them: an AP that got INIT waits for its
/// start-up IPI however long that takes.
pub fn init_aps(apic_ids: impl Iterator<Item = u32>) {
    for apic_id in apic_ids {
        apic::send_init(apic_id);
    }
    spin_for_tsc(10 * timer::tsc_per_ms().max(1));
}

/// Whether CPU `index` reported within `ticks` TSC ticks. The boot CPU
/// halts between looks, woken by its timer every 10 us: a boot CPU that
/// polled kept its processor, and where the CPUs take turns on one host
/// thread (QEMU's TCG) each AP then waited for the boot CPU's turn to end
/// (the first AP 9-11 M instructions of virtual time after its start-up
/// IPI, for some 100 instructions of trampoline and 7 500 of its own).
fn reported_within(index: u32, ticks: u64) -> bool {
    let deadline = cpu::rdtsc() + ticks;
    let poll = (timer::tsc_per_ms() / 100).max(1);
    loop {
        if LAST_STARTED.load(Ordering::Acquire) == index {
            return true;
        }
        let now = cpu::rdtsc();
        if now >= deadline {
            return false;
        }
        timer::arm_at_tsc(deadline.min(now + poll));
        cpu::enable_interrupts_and_halt();
        cpu::disable_interrupts();
    }
}

/// Starts CPU `index` (x2APIC id `apic_id`, already through [`init_aps`])
/// and waits until it is online: a start-up IPI, a second one if it has not
/// reported after 200 us (as the protocol asks), then up to a second.
pub fn start_ap(tables: &PageTables, index: u32, apic_id: u32) -> Result<(), StartError> {
    let stack_top = map_kernel_stack(tables, index)?;
    // SAFETY: taking addresses of linker-defined symbols.
    let (boot_cr3, slots) = unsafe {
        (
            paging::kernel_virt_to_phys(symbol_address(&boot_pml4)),
            [
                symbol_address(&ap_param_boot_cr3),
                symbol_address(&ap_param_efer),
                symbol_address(&ap_param_arg),
                symbol_address(&ap_param_kernel_cr3),
                symbol_address(&ap_param_stack),
            ],
        )
    };
    // SAFETY: IA32_EFER exists; we copy only its NXE bit for the AP.
    let efer_nx = unsafe { cpu::rdmsr(cpu::msr::IA32_EFER) } & (1 << 11);
    let values = [
        boot_cr3,
        efer_nx,
        u64::from(index) | (u64::from(apic_id) << 32),
        tables.root,
        stack_top,
    ];
    for (slot, value) in slots.into_iter().zip(values) {
        set_param(slot, value);
    }

    let per_ms = timer::tsc_per_ms().max(1);
    let page = (AP_TRAMPOLINE_BASE >> 12) as u8;
    apic::send_startup(apic_id, page);
    if reported_within(index, per_ms / 5 + 1) {
        return Ok(());
    }
    // A start-up IPI to a CPU already past it is ignored, so the second
    // one cannot restart an AP that is merely slow to report.
    apic::send_startup(apic_id, page);
    if reported_within(index, 1000 * per_ms) {
        Ok(())
    } else {
        Err(StartError::Timeout)
    }
}

/// Called by `ap_main` once the AP is fully set up.
pub fn report_started(index: u32) {
    LAST_STARTED.store(index, Ordering::Release);
}
