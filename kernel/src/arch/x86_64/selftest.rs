//! The faulting instructions behind `selftest=...`.

use core::arch::asm;
use tarn_kernel_core::cmdline::Selftest;

/// Executes the instruction that raises the exception `test` names.
pub fn trigger(test: Selftest, unmapped: u64) {
    // SAFETY: each of these deliberately faults; the exception handler reports
    // and ends the run, so no state after the fault is ever used.
    unsafe {
        match test {
            Selftest::PageFault => {
                let _ = core::ptr::read_volatile(unmapped as *const u64);
            }
            Selftest::GeneralProtection => {
                let _ = core::ptr::read_volatile(0x8000_0000_0000_0000u64 as *const u64);
            }
            Selftest::DivideError => {
                asm!("xor edx, edx", "xor eax, eax", "div eax", out("eax") _, out("edx") _)
            }
            Selftest::InvalidOpcode => asm!("ud2"),
            Selftest::Breakpoint => asm!("int3"),
            // A push onto an unmapped stack: the #PF cannot be delivered on the
            // same stack, so the CPU raises #DF on its IST stack.
            Selftest::DoubleFault => {
                asm!("mov rsp, {}", "push rax", in(reg) unmapped, options(noreturn))
            }
        }
    }
}
