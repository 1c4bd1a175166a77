//! Time: the TSC as the clock (calibrated against the PIT at boot) and a
//! per-CPU one-shot timer on the local APIC, in TSC-deadline mode when the CPU
//! has it, otherwise one-shot mode with a count calibrated against the TSC.

use super::apic;
use super::cpu::{msr, rdtsc, wrmsr};
use super::trap::VECTOR_TIMER;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static TSC_PER_MS: AtomicU64 = AtomicU64::new(0);
static DEADLINE_MODE: AtomicBool = AtomicBool::new(false);

/// The conversions as 32.32 fixed-point factors, set once at calibration,
/// so that the scheduling paths multiply and shift instead of calling the
/// 128-bit division routine (issue 14: three on the dispatch path, each
/// dozens of instructions). ns → TSC ticks: `tsc_per_ms / 10^6`.
static NS_TO_TSC: AtomicU64 = AtomicU64::new(0);
/// TSC ticks → ns: `10^6 / tsc_per_ms`.
static TSC_TO_NS: AtomicU64 = AtomicU64::new(0);
/// TSC ticks → APIC timer ticks (one-shot mode): `apic_per_ms / tsc_per_ms`.
static TSC_TO_APIC: AtomicU64 = AtomicU64::new(0);

/// Fractional bits of the conversion factors.
const FIXED_SHIFT: u32 = 32;

/// `numerator / denominator` as a 32.32 fixed-point factor (saturated).
fn fixed_ratio(numerator: u64, denominator: u64) -> u64 {
    ((u128::from(numerator) << FIXED_SHIFT) / u128::from(denominator.max(1)))
        .min(u128::from(u64::MAX)) as u64
}

/// `value` times a 32.32 fixed-point `factor`, saturated to `u64`: one
/// 64×64→128 multiplication and a shift.
#[inline(always)]
fn scale(value: u64, factor: u64) -> u64 {
    ((u128::from(value) * u128::from(factor)) >> FIXED_SHIFT).min(u128::from(u64::MAX)) as u64
}

/// Records the calibration and derives the conversion factors.
fn set_calibration(tsc_per_ms: u64, apic_ticks_per_ms: u64) {
    TSC_PER_MS.store(tsc_per_ms, Ordering::Relaxed);
    NS_TO_TSC.store(fixed_ratio(tsc_per_ms, 1_000_000), Ordering::Relaxed);
    TSC_TO_NS.store(fixed_ratio(1_000_000, tsc_per_ms), Ordering::Relaxed);
    TSC_TO_APIC.store(
        fixed_ratio(apic_ticks_per_ms, tsc_per_ms),
        Ordering::Relaxed,
    );
}

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
    set_calibration(per_ms, 0);
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
        set_calibration(per_ms, ticks_per_ms as u64);
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

/// Converts nanoseconds to TSC ticks, rounded down (the 32.32 factor's own
/// rounding can take at most `ns / 2^32` ticks more off the exact result).
#[inline]
pub fn ns_to_tsc(ns: u64) -> u64 {
    scale(ns, NS_TO_TSC.load(Ordering::Relaxed))
}

/// Converts TSC ticks to nanoseconds, rounded down (the 32.32 factor's own
/// rounding can take at most `ticks / 2^32` ns more off the exact result).
#[inline]
pub fn tsc_to_ns(ticks: u64) -> u64 {
    scale(ticks, TSC_TO_NS.load(Ordering::Relaxed))
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
        let ticks = scale(delta, TSC_TO_APIC.load(Ordering::Relaxed)).clamp(1, u64::from(u32::MAX));
        apic::write_timer_register(apic::TIMER_INITIAL, ticks);
    }
}

/// The timer interrupt: counted per CPU (the scheduling layer hooks in here).
pub fn on_interrupt() {
    crate::arch::percpu::current().note_timer();
}
