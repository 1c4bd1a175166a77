//! The local APIC in x2APIC mode (SDM Vol. 3A, 11.12): every register is an
//! MSR (numbers and the ICR encoding from the `x86` crate).
//!
//! Not `x86::apic::x2apic::X2APIC`: its `attach` fixes the spurious vector
//! at 15 and programs LINT0, and its `send_ipi` clears the error register
//! twice and polls the ICR's delivery-status bit, which x2APIC mode does not
//! have (SDM 11.12.9): three MSR accesses more on every IPI, the remote-wake
//! path. An ICR write here is the one `wrmsr` the architecture needs.
//! Not the `x2apic` crate either: it brings the `x86_64` crate beside `x86`,
//! and its `LocalApic::enable` starts a periodic timer with required timer,
//! error and spurious vectors, where Tarn arms a one-shot timer per deadline.

use super::cpu::{msr, rdmsr, wrmsr};
use super::trap::VECTOR_SPURIOUS;
use x86::apic::{
    ApicId, DeliveryMode, DeliveryStatus, DestinationMode, DestinationShorthand, Icr, Level,
    TriggerMode,
};

/// LVT timer register.
pub const LVT_TIMER: u32 = msr::IA32_X2APIC_LVT_TIMER;
/// Timer initial count.
pub const TIMER_INITIAL: u32 = msr::IA32_X2APIC_INIT_COUNT;
/// Timer divide configuration.
pub const TIMER_DIVIDE: u32 = msr::IA32_X2APIC_DIV_CONF;

/// IA32_APIC_BASE bits (SDM Vol. 3A, 11.4.4, 11.12.1).
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
/// Spurious-interrupt vector register: APIC software enable.
const SVR_ENABLE: u64 = 1 << 8;

/// Switches this CPU's local APIC to x2APIC mode and software-enables it with
/// the spurious vector. (From disabled, go through xAPIC first: 00 → 10 → 11.)
pub fn enable_x2apic() {
    // SAFETY: IA32_APIC_BASE exists on every x2APIC-capable CPU (checked at boot);
    // the enable sequence follows SDM 11.12.5.
    unsafe {
        let base = rdmsr(msr::IA32_APIC_BASE);
        wrmsr(msr::IA32_APIC_BASE, base | APIC_BASE_ENABLE);
        wrmsr(
            msr::IA32_APIC_BASE,
            base | APIC_BASE_ENABLE | APIC_BASE_X2APIC,
        );
        wrmsr(msr::IA32_X2APIC_TPR, 0);
        wrmsr(
            msr::IA32_X2APIC_SIVR,
            SVR_ENABLE | u64::from(VECTOR_SPURIOUS),
        );
    }
}

/// This CPU's x2APIC id.
pub fn id() -> u32 {
    // SAFETY: x2APIC mode is enabled before any caller asks.
    unsafe { rdmsr(msr::IA32_X2APIC_APICID) as u32 }
}

/// Signals end of interrupt.
pub fn eoi() {
    // SAFETY: writing 0 to the EOI register acknowledges the in-service interrupt.
    unsafe { wrmsr(msr::IA32_X2APIC_EOI, 0) };
}

/// An ICR value for one physical destination (no shorthand).
fn icr(
    destination: u32,
    vector: u8,
    mode: DeliveryMode,
    level: Level,
    trigger: TriggerMode,
) -> Icr {
    Icr::for_x2apic(
        vector,
        ApicId::X2Apic(destination),
        DestinationShorthand::NoShorthand,
        mode,
        DestinationMode::Physical,
        DeliveryStatus::Idle,
        level,
        trigger,
    )
}

/// Writes the interrupt command register (x2APIC: one 64-bit write, no
/// delivery-status bit to poll).
#[inline(always)]
fn write_icr(icr: Icr) {
    // SAFETY: ICR writes only send interrupts; destinations come from the MADT.
    unsafe {
        wrmsr(
            msr::IA32_X2APIC_ICR,
            u64::from(icr.upper()) << 32 | u64::from(icr.lower()),
        )
    };
}

/// Sends a fixed interrupt `vector` to the CPU with x2APIC id `destination`.
#[inline(always)]
pub fn send_ipi(destination: u32, vector: u8) {
    write_icr(icr(
        destination,
        vector,
        DeliveryMode::Fixed,
        Level::Assert,
        TriggerMode::Edge,
    ));
}

/// Sends INIT (level assert) to `destination`.
pub fn send_init(destination: u32) {
    write_icr(icr(
        destination,
        0,
        DeliveryMode::Init,
        Level::Assert,
        TriggerMode::Level,
    ));
}

/// Sends a start-up IPI: the CPU starts in real mode at `page << 12`.
pub fn send_startup(destination: u32, page: u8) {
    write_icr(icr(
        destination,
        page,
        DeliveryMode::StartUp,
        Level::Assert,
        TriggerMode::Edge,
    ));
}

/// Writes a timer register.
pub fn write_timer_register(register: u32, value: u64) {
    // SAFETY: callers pass only the LVT timer / count / divide registers.
    unsafe { wrmsr(register, value) };
}
