//! Time: the TSC as the clock (calibrated against the PIT at boot) and a
//! per-CPU one-shot timer on the local APIC, in TSC-deadline mode when the CPU
//! has it, otherwise one-shot mode with a count calibrated against the TSC.

use super::apic;
use super::cpu::{msr, rdtsc, wrmsr};
use super::trap::VECTOR_TIMER;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static TSC_PER_MS: AtomicU64 = AtomicU64::new(0);
static APIC_TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);
static DEADLINE_MODE: AtomicBool = AtomicBool::new(false);

/// LVT timer mode field (bits 18:17).
const LVT_ONE_SHOT: u64 = 0;
const LVT_TSC_DEADLINE: u64 = 0b10 << 17;
/// Divide configuration value for divide-by-1.
const DIVIDE_BY_1: u64 = 0b1011;

/// Calibrates the TSC (and, without TSC-deadline, the APIC timer) on the boot
/// CPU (needs this CPU's per-CPU data, IDT and x2APIC). Returns TSC ticks
/// per millisecond.
pub fn calibrate(tsc_deadline: bool) -> u64 {
    let per_ms = (super::pit::tsc_ticks_over_ms(10) / 10).max(1);
    TSC_PER_MS.store(per_ms, Ordering::Relaxed);
    DEADLINE_MODE.store(tsc_deadline, Ordering::Relaxed);
    if !tsc_deadline {
        // Calibrate by letting a known count expire and timing the interrupt:
        // reading the current-count register instead (an RDMSR of the APIC's
        // clock) aborts QEMU under -icount ("Bad icount read"), because TCG
        // does not treat RDMSR as an I/O instruction.
        const CALIBRATION_COUNT: u64 = 1 << 22;
        let me = crate::arch::percpu::current();
        apic::write_timer_register(apic::TIMER_DIVIDE, DIVIDE_BY_1);
        apic::write_timer_register(apic::LVT_TIMER, LVT_ONE_SHOT | u64::from(VECTOR_TIMER));
        let before = me.timer_interrupts();
        let was_enabled = super::cpu::interrupts_enabled();
        super::cpu::enable_interrupts();
        let start = rdtsc();
        apic::write_timer_register(apic::TIMER_INITIAL, CALIBRATION_COUNT);
        while me.timer_interrupts() == before {
            core::hint::spin_loop();
        }
        let elapsed = (rdtsc() - start).max(1);
        if !was_enabled {
            super::cpu::disable_interrupts();
        }
        let ticks_per_ms =
            (u128::from(CALIBRATION_COUNT) * u128::from(per_ms) / u128::from(elapsed)).max(1);
        APIC_TICKS_PER_MS.store(ticks_per_ms as u64, Ordering::Relaxed);
    }
    per_ms
}

/// Whether the one-shot timer uses TSC-deadline mode.
pub fn deadline_mode() -> bool {
    DEADLINE_MODE.load(Ordering::Relaxed)
}

/// TSC ticks per millisecond (0 before calibration).
pub fn tsc_per_ms() -> u64 {
    TSC_PER_MS.load(Ordering::Relaxed)
}

/// Converts nanoseconds to TSC ticks.
pub fn ns_to_tsc(ns: u64) -> u64 {
    ((u128::from(ns) * u128::from(tsc_per_ms())) / 1_000_000).min(u128::from(u64::MAX)) as u64
}

/// Converts TSC ticks to nanoseconds.
pub fn tsc_to_ns(ticks: u64) -> u64 {
    ((u128::from(ticks) * 1_000_000) / u128::from(tsc_per_ms().max(1))).min(u128::from(u64::MAX))
        as u64
}

/// Programs this CPU's LVT timer entry for one-shot use (masked until armed).
pub fn init_this_cpu() {
    if deadline_mode() {
        apic::write_timer_register(apic::LVT_TIMER, LVT_TSC_DEADLINE | u64::from(VECTOR_TIMER));
    } else {
        apic::write_timer_register(apic::TIMER_DIVIDE, DIVIDE_BY_1);
        apic::write_timer_register(apic::LVT_TIMER, LVT_ONE_SHOT | u64::from(VECTOR_TIMER));
    }
}

/// Arms this CPU's one-shot timer to fire at TSC value `deadline`.
pub fn arm_at_tsc(deadline: u64) {
    if deadline_mode() {
        // SAFETY: IA32_TSC_DEADLINE exists when CPUID reports TSC-deadline mode.
        unsafe { wrmsr(msr::TSC_DEADLINE, deadline.max(1)) };
    } else {
        let delta = deadline.saturating_sub(rdtsc()).max(1);
        let ticks = (u128::from(delta) * u128::from(APIC_TICKS_PER_MS.load(Ordering::Relaxed))
            / u128::from(tsc_per_ms().max(1)))
        .clamp(1, u128::from(u32::MAX));
        apic::write_timer_register(apic::TIMER_INITIAL, ticks as u64);
    }
}

/// The timer interrupt: counted per CPU (the scheduling layer hooks in here).
pub fn on_interrupt() {
    crate::arch::percpu::current().note_timer();
}
