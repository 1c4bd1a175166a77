//! Boot-time benchmarks (`bench` on the command line). Under
//! `-icount shift=0,sleep=off` the TSC counts instructions, so every figure
//! here is an exact instruction count. Lines: `bench: <name> <value> <unit>`.

use crate::arch::percpu;
use crate::arch::{apic, cpu, timer, trap};

/// Runs the benchmarks and prints one line per figure.
pub fn run(entry_tsc: u64) {
    kprintln!(
        "bench: boot_to_online_insns {} insns",
        cpu::rdtsc() - entry_tsc
    );
    if let Some(target) = percpu::get(1) {
        let rounds = 16u64;
        let mut total = 0;
        for _ in 0..rounds {
            let before = target.kicks();
            let start = cpu::rdtsc();
            apic::send_ipi(target.apic_id, trap::VECTOR_IPI_KICK);
            while target.kicks() == before {
                cpu::pause();
            }
            total += cpu::rdtsc() - start;
        }
        kprintln!("bench: ipi_remote_wake_insns {} insns", total / rounds);
    }
    let me = percpu::current();
    let rounds = 16u64;
    let mut total = 0;
    cpu::enable_interrupts();
    for _ in 0..rounds {
        let before = me.timer_interrupts();
        let start = cpu::rdtsc();
        timer::arm_at_tsc(start + 1);
        while me.timer_interrupts() == before {
            cpu::pause();
        }
        total += cpu::rdtsc() - start;
    }
    cpu::disable_interrupts();
    kprintln!("bench: timer_oneshot_fire_insns {} insns", total / rounds);
}
