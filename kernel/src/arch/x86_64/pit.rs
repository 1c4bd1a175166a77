//! The 8254 PIT, used once at boot as a reference clock to calibrate the TSC
//! (channel 2, gated through port 0x61, polled; no interrupt).

use super::cpu::{inb, outb, rdtsc};

/// PIT input clock in Hz.
const PIT_HZ: u64 = 1_193_182;

/// Counts TSC ticks across `ms` milliseconds of PIT time (`ms` ≤ 50).
pub fn tsc_ticks_over_ms(ms: u64) -> u64 {
    let count = (PIT_HZ * ms / 1000) as u16;
    // SAFETY: ports 0x42/0x43/0x61 are the PIT and speaker gate, which nothing
    // else in Tarn uses; channel 2 drives no interrupt.
    unsafe {
        let gate = inb(0x61);
        outb(0x61, (gate & !0x02) | 0x01); // speaker off, gate on
        outb(0x43, 0xB0); // channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count)
        outb(0x42, count as u8);
        outb(0x42, (count >> 8) as u8);
        // Restart the count by toggling the gate.
        let gate = inb(0x61);
        outb(0x61, gate & !0x01);
        outb(0x61, gate | 0x01);
        let start = rdtsc();
        while inb(0x61) & 0x20 == 0 {
            core::hint::spin_loop();
        }
        rdtsc() - start
    }
}

/// Runs channel 0 as a rate generator at about `hz` (its IRQ 0 stays masked
/// at the legacy PIC and unrouted at the I/O APIC: no interrupt arrives).
/// Only an emulator pacer (kernel option `pace_hz`).
pub fn start_pacer(hz: u32) {
    let divisor = (PIT_HZ / u64::from(hz.max(19))).clamp(2, 0xFFFF) as u16;
    // SAFETY: ports 0x40/0x43 are PIT channel 0 and its mode register; the
    // TSC calibration uses channel 2 only, and channel 0's interrupt line is
    // masked (`mask_legacy_pic`) and never routed at the I/O APIC.
    unsafe {
        outb(0x43, 0x34); // channel 0, lobyte/hibyte, mode 2 (rate generator)
        outb(0x40, divisor as u8);
        outb(0x40, (divisor >> 8) as u8);
    }
}

/// Masks every line of the legacy 8259 PICs (Tarn uses the local APICs).
pub fn mask_legacy_pic() {
    // SAFETY: writing the PIC interrupt-mask registers only masks legacy IRQs.
    unsafe {
        outb(0x21, 0xFF);
        outb(0xA1, 0xFF);
    }
}
