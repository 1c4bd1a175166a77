//! Tarn's user-mode VMM, the pure half: the test guests and the CPU state
//! they start in ([`guest`]), the emulated platform (a 16550 UART, an 8254
//! PIT, an 8259 PIC) and the policy for CPUID, MSRs, unhandled ports and
//! misbehaving guests ([`platform`]). It turns each normalised exit of
//! `tarn_ipc_schema::vcpu` into register updates and an [`platform::Action`]
//! and never calls the kernel; the `vmm` task (`task/`) does the system
//! calls. That split lets the host test every device and decision.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod devices;
pub mod guest;
pub mod linux;
pub mod platform;
