//! The I/O APIC (82093AA): routes device interrupt lines (GSIs) to local-APIC
//! vectors. Tarn uses the first I/O APIC, lines 0..[`MAX_LINES`], each on
//! vector `VECTOR_BASE + gsi`, delivered to the boot CPU, masked until a
//! driver binds a notification.

use super::paging::phys_to_virt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Lines Tarn routes.
pub const MAX_LINES: u32 = 24;
/// Vector of GSI 0.
pub const VECTOR_BASE: u8 = 0x30;

static BASE: AtomicU64 = AtomicU64::new(0);
static GSI_BASE: AtomicU32 = AtomicU32::new(0);
static LINES: AtomicU32 = AtomicU32::new(0);

fn write(register: u32, value: u32) {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: BASE is the I/O APIC's MMIO page (from the MADT), inside the
    // direct map; IOREGSEL/IOWIN accesses are 32-bit and have no memory effects.
    unsafe {
        core::ptr::write_volatile(phys_to_virt(base) as *mut u32, register);
        core::ptr::write_volatile(phys_to_virt(base + 0x10) as *mut u32, value);
    }
}

fn read(register: u32) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: as for `write`.
    unsafe {
        core::ptr::write_volatile(phys_to_virt(base) as *mut u32, register);
        core::ptr::read_volatile(phys_to_virt(base + 0x10) as *const u32)
    }
}

/// Records the I/O APIC at `address` (serving GSIs from `gsi_base`) and
/// masks every line.
pub fn init(address: u64, gsi_base: u32) {
    BASE.store(address, Ordering::Relaxed);
    GSI_BASE.store(gsi_base, Ordering::Relaxed);
    let lines = ((read(1) >> 16) & 0xFF) + 1;
    LINES.store(lines.min(MAX_LINES), Ordering::Relaxed);
    for line in 0..lines {
        write(0x10 + 2 * line, 1 << 16);
        write(0x11 + 2 * line, 0);
    }
}

/// Whether `gsi` is a line Tarn can route.
pub fn has_line(gsi: u32) -> bool {
    BASE.load(Ordering::Relaxed) != 0
        && gsi >= GSI_BASE.load(Ordering::Relaxed)
        && gsi - GSI_BASE.load(Ordering::Relaxed) < LINES.load(Ordering::Relaxed)
}

/// Programs `gsi` to vector `VECTOR_BASE + gsi` on CPU `apic_id` (masked).
pub fn route(gsi: u32, apic_id: u32, level_triggered: bool, active_low: bool) {
    let line = gsi - GSI_BASE.load(Ordering::Relaxed);
    let mut low = u32::from(VECTOR_BASE) + gsi;
    if active_low {
        low |= 1 << 13;
    }
    if level_triggered {
        low |= 1 << 15;
    }
    write(0x11 + 2 * line, apic_id << 24);
    write(0x10 + 2 * line, low | 1 << 16);
}

/// Masks (true) or unmasks (false) `gsi`.
pub fn set_masked(gsi: u32, masked: bool) {
    let line = gsi - GSI_BASE.load(Ordering::Relaxed);
    let low = read(0x10 + 2 * line);
    write(
        0x10 + 2 * line,
        if masked {
            low | 1 << 16
        } else {
            low & !(1 << 16)
        },
    );
}
