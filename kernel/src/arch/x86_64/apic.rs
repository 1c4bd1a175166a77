//! The local APIC in x2APIC mode (SDM Vol. 3A, 11.12): every register is an
//! MSR at 0x800 + (xAPIC offset >> 4).

use super::cpu::{msr, rdmsr, wrmsr};
use super::trap::VECTOR_SPURIOUS;

const ID: u32 = 0x802;
const TPR: u32 = 0x808;
const EOI: u32 = 0x80B;
const SVR: u32 = 0x80F;
const ICR: u32 = 0x830;
/// LVT timer register.
pub const LVT_TIMER: u32 = 0x832;
/// Timer initial count.
pub const TIMER_INITIAL: u32 = 0x838;
/// Timer divide configuration.
pub const TIMER_DIVIDE: u32 = 0x83E;

const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

/// Switches this CPU's local APIC to x2APIC mode and software-enables it with
/// the spurious vector. (From disabled, go through xAPIC first: 00 → 10 → 11.)
pub fn enable_x2apic() {
    // SAFETY: IA32_APIC_BASE exists on every x2APIC-capable CPU (checked at boot);
    // the enable sequence follows SDM 11.12.5.
    unsafe {
        let base = rdmsr(msr::APIC_BASE);
        wrmsr(msr::APIC_BASE, base | APIC_BASE_ENABLE);
        wrmsr(msr::APIC_BASE, base | APIC_BASE_ENABLE | APIC_BASE_X2APIC);
        wrmsr(TPR, 0);
        wrmsr(SVR, 0x100 | u64::from(VECTOR_SPURIOUS));
    }
}

/// This CPU's x2APIC id.
pub fn id() -> u32 {
    // SAFETY: x2APIC mode is enabled before any caller asks.
    unsafe { rdmsr(ID) as u32 }
}

/// Signals end of interrupt.
pub fn eoi() {
    // SAFETY: writing 0 to the EOI register acknowledges the in-service interrupt.
    unsafe { wrmsr(EOI, 0) };
}

/// Writes the interrupt command register (x2APIC: one 64-bit write, no
/// delivery-status bit to poll).
fn write_icr(destination: u32, low: u32) {
    // SAFETY: ICR writes only send interrupts; destinations come from the MADT.
    unsafe { wrmsr(ICR, (u64::from(destination) << 32) | u64::from(low)) };
}

/// Sends a fixed interrupt `vector` to the CPU with x2APIC id `destination`.
pub fn send_ipi(destination: u32, vector: u8) {
    write_icr(destination, u32::from(vector));
}

/// Sends INIT (level assert) to `destination`.
pub fn send_init(destination: u32) {
    write_icr(destination, 0x4500);
}

/// Sends a start-up IPI: the CPU starts in real mode at `page << 12`.
pub fn send_startup(destination: u32, page: u8) {
    write_icr(destination, 0x4600 | u32::from(page));
}

/// Writes a timer register.
pub fn write_timer_register(register: u32, value: u64) {
    // SAFETY: callers pass only the LVT timer / count / divide registers.
    unsafe { wrmsr(register, value) };
}
