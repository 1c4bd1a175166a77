//! The x86-64 architecture layer: every privileged instruction, descriptor
//! table, interrupt entry and device register the kernel touches lives here.
//! This is one of the two places in Tarn where `unsafe` is allowed.

pub mod apic;
pub mod cpu;
pub mod frame;
pub mod gdt;
pub mod heap;
pub mod ioapic;
pub mod lock;
pub mod objmem;
pub mod paging;
pub mod percpu;
pub mod pit;
pub mod port;
pub mod selftest;
pub mod serial;
pub mod smp;
pub mod svm;
pub mod timer;
pub mod trap;
pub mod user;
pub mod vmx;

core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));
core::arch::global_asm!(include_str!("trampoline.S"), options(att_syntax));
core::arch::global_asm!(
    concat!(
        include_str!("frame.S"),
        include_str!("entry.S"),
        include_str!("user.S"),
        include_str!("svm.S"),
        include_str!("vmx.S")
    ),
    options(att_syntax)
);
core::arch::global_asm!(
    include_str!(concat!(env!("OUT_DIR"), "/vectors.S")),
    options(att_syntax)
);

/// How the loader entered the kernel (set by boot.S in `protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// Xen PVH (`qemu -kernel`): the info pointer is an `hvm_start_info`.
    Pvh,
    /// Multiboot2 (GRUB): the info pointer is the boot information structure.
    Multiboot2,
}

impl BootProtocol {
    /// Decodes the protocol number boot.S passes to `kernel_entry`.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Pvh),
            2 => Some(Self::Multiboot2),
            _ => None,
        }
    }
}
