//! The privileged instructions and registers the kernel uses, through the
//! `x86` crate (MSR numbers and access, control registers with their typed
//! bits, port I/O, TLB, interrupts; CPUID through its `raw-cpuid`): each
//! wrapper here only states why its use is safe, so the rest of the kernel
//! calls safe functions. Kept as Tarn's own: `rdtsc` (the core intrinsic,
//! inlined on the hot paths), the atomic `sti; hlt` idle, and Bochs' magic
//! breakpoint, which the crate does not offer.

use core::arch::asm;
use x86::bits64::rflags::{self, RFlags};
use x86::controlregs::{self, Cr0, Cr4};
use x86::cpuid::CpuId;

pub use x86::msr;

/// MSRs a guest reads and writes without an exit, under SVM and VMX alike:
/// its syscall, segment-base and SYSENTER MSRs. A guest OS writes them at
/// boot and on every context switch; as exits they would cost a round trip
/// to the VMM each and could not reach the hardware. SVM switches them with
/// VMLOAD/VMSAVE (svm.S); VMX keeps FS/GS base and SYSENTER in the VMCS,
/// KERNEL_GS_BASE is switched by vmx.S, and the four syscall MSRs
/// ([`GUEST_SYSCALL_MSRS`]) by the VMCS's MSR-load and MSR-store lists.
pub const GUEST_OWNED_MSRS: [u32; 10] = [
    msr::IA32_SYSENTER_CS,
    msr::IA32_SYSENTER_ESP,
    msr::IA32_SYSENTER_EIP,
    msr::IA32_STAR,
    msr::IA32_LSTAR,
    msr::IA32_CSTAR,
    msr::IA32_FMASK,
    msr::IA32_FS_BASE,
    msr::IA32_GS_BASE,
    msr::IA32_KERNEL_GSBASE,
];

/// The guest-owned MSRs VMX switches through MSR lists (SDM 24.7.2, 24.8.2,
/// 27.4): in no VMCS field, and the host's own syscall entry needs its
/// values back before it returns to user mode.
pub const GUEST_SYSCALL_MSRS: [u32; 4] = [
    msr::IA32_STAR,
    msr::IA32_LSTAR,
    msr::IA32_CSTAR,
    msr::IA32_FMASK,
];

/// A guest's debug registers the hardware does not switch: DR0-DR3 (the
/// breakpoint addresses) and DR6 (its status; in the VMCB under SVM, in no
/// VMCS field under VMX). DR7 is switched by VM entry and exit on both.
pub type GuestDebugRegisters = [u64; 5];

/// DR6's value at reset: the bits that always read as 1 (SDM 18.2.3).
pub const DR6_RESET: u64 = 0xFFFF_0FF0;

/// Reads DR0-DR3 and DR6: what the guest that just exited left there.
#[inline]
pub fn read_guest_debug_registers() -> GuestDebugRegisters {
    use x86::debugregs as dr;
    // SAFETY: reading debug registers needs CPL 0, which the kernel has,
    // and has no side effects (DR7.GD, the only trap on it, is never set
    // in the host: VM exits load DR7 = 0x400).
    unsafe {
        [
            dr::dr0() as u64,
            dr::dr1() as u64,
            dr::dr2() as u64,
            dr::dr3() as u64,
            dr::dr6().bits() as u64,
        ]
    }
}

/// Loads DR0-DR3 and DR6 of the guest about to enter.
#[inline]
pub fn write_guest_debug_registers(values: &GuestDebugRegisters) {
    use x86::debugregs as dr;
    // SAFETY: CPL 0. The host never enables a breakpoint (its DR7 is
    // 0x400 after every VM exit and never written), so addresses loaded
    // here fire only in the guest, under the guest's own DR7.
    unsafe {
        dr::dr0_write(values[0] as usize);
        dr::dr1_write(values[1] as usize);
        dr::dr2_write(values[2] as usize);
        dr::dr3_write(values[3] as usize);
        dr::dr6_write(dr::Dr6::from_bits_truncate(values[4] as usize));
    }
}

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU (reading a missing MSR raises #GP).
#[inline(always)]
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: the caller guarantees the MSR exists.
    unsafe { msr::rdmsr(msr) }
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` must exist and `value` must be valid for it; the write may change how
/// the CPU behaves (the caller owns that consequence).
#[inline(always)]
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the MSR and value are valid.
    unsafe { msr::wrmsr(msr, value) }
}

/// Reads the time-stamp counter (under `-icount shift=0` it counts instructions).
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is unprivileged unless CR4.TSD is set, which Tarn never sets.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Reads CR0.
pub fn read_cr0() -> Cr0 {
    // SAFETY: reading CR0 has no side effects.
    unsafe { controlregs::cr0() }
}

/// Loads CR0.
///
/// # Safety
/// The bits must keep paging and protected mode on and be consistent with
/// the kernel (e.g. TS only as the lazy FPU hand-over uses it).
pub unsafe fn write_cr0(value: Cr0) {
    // SAFETY: the caller guarantees the bits are consistent.
    unsafe { controlregs::cr0_write(value) }
}

/// Reads CR2 (the faulting address of the last page fault).
pub fn read_cr2() -> u64 {
    // SAFETY: reading CR2 has no side effects.
    unsafe { controlregs::cr2() as u64 }
}

/// Reads CR3 (the current top-level page table).
pub fn read_cr3() -> u64 {
    // SAFETY: reading CR3 has no side effects.
    unsafe { controlregs::cr3() }
}

/// Loads CR3.
///
/// # Safety
/// `value` must point at a page table that maps the running code, its stack
/// and everything the kernel uses afterwards.
#[inline(always)]
pub unsafe fn write_cr3(value: u64) {
    // SAFETY: the caller guarantees the new tables map the kernel.
    unsafe { controlregs::cr3_write(value) }
}

/// Reads CR4.
pub fn read_cr4() -> Cr4 {
    // SAFETY: reading CR4 has no side effects.
    unsafe { controlregs::cr4() }
}

/// Loads CR4.
///
/// # Safety
/// Every bit set must be supported by this CPU and consistent with the kernel
/// (e.g. SMAP only once no kernel path touches user memory without `stac`).
pub unsafe fn write_cr4(value: Cr4) {
    // SAFETY: the caller guarantees the bits are supported and consistent.
    unsafe { controlregs::cr4_write(value) }
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port write must not break an invariant of the device behind it.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller owns the device semantics.
    unsafe { x86::io::outb(port, value) }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Reading may have device side effects (e.g. acknowledging data).
pub unsafe fn inb(port: u16) -> u8 {
    // SAFETY: the caller owns the device semantics.
    unsafe { x86::io::inb(port) }
}

/// Flushes this CPU's non-global TLB entries (reloads CR3).
pub fn flush_tlb() {
    // SAFETY: reloading the current CR3 value changes no mapping.
    unsafe { x86::tlb::flush_all() };
}

/// Invalidates the TLB entry for one virtual address.
pub fn invlpg(virt: u64) {
    // SAFETY: invalidating a TLB entry never breaks memory safety.
    unsafe { x86::tlb::flush(virt as usize) };
}

/// Enables interrupts and halts until the next one (atomically: `sti; hlt`).
pub fn enable_interrupts_and_halt() {
    // SAFETY: the kernel's interrupt handlers are installed before any CPU idles.
    unsafe { asm!("sti; hlt", options(nomem, nostack)) };
}

/// Enables interrupts.
pub fn enable_interrupts() {
    // SAFETY: the IDT is loaded before interrupts are first enabled.
    unsafe { x86::irq::enable() };
}

/// Disables interrupts.
pub fn disable_interrupts() {
    // SAFETY: masking interrupts cannot break memory safety.
    unsafe { x86::irq::disable() };
}

/// Whether interrupts are enabled (RFLAGS.IF).
pub fn interrupts_enabled() -> bool {
    rflags::read().contains(RFlags::FLAGS_IF)
}

/// Stops this CPU for good (interrupts off, halt in a loop).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli; hlt only stops this CPU.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// Hint to the CPU inside spin-wait loops.
#[inline(always)]
pub fn pause() {
    core::hint::spin_loop();
}

/// Bochs' magic breakpoint (`xchg bx, bx`): a no-op elsewhere; with
/// `magic_break: enabled=1` Bochs stops into its debugger, whose script quits.
pub fn bochs_magic_break() {
    // SAFETY: exchanging BX with itself changes nothing.
    unsafe { asm!("xchg bx, bx", options(nomem, nostack, preserves_flags)) };
}

/// CPU features Tarn cares about, read once on the boot CPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct Features {
    /// x2APIC (CPUID.1:ECX[21]).
    pub x2apic: bool,
    /// TSC-deadline timer mode (CPUID.1:ECX[24]).
    pub tsc_deadline: bool,
    /// Intel VMX (CPUID.1:ECX[5]).
    pub vmx: bool,
    /// AMD SVM (CPUID.80000001h:ECX[2]).
    pub svm: bool,
    /// No-execute pages (CPUID.80000001h:EDX[20]).
    pub nx: bool,
    /// Supervisor-mode execution prevention (CPUID.7.0:EBX[7]).
    pub smep: bool,
    /// Supervisor-mode access prevention (CPUID.7.0:EBX[20]).
    pub smap: bool,
    /// Global pages (CPUID.1:EDX[13]).
    pub pge: bool,
}

impl Features {
    /// Reads the features of the running CPU.
    pub fn detect() -> Self {
        let cpuid = CpuId::new();
        let basic = cpuid.get_feature_info();
        let extended = cpuid.get_extended_feature_info();
        let amd = cpuid.get_extended_processor_and_feature_identifiers();
        let basic_has = |f: fn(&x86::cpuid::FeatureInfo) -> bool| basic.as_ref().is_some_and(f);
        let extended_has =
            |f: fn(&x86::cpuid::ExtendedFeatures) -> bool| extended.as_ref().is_some_and(f);
        let amd_has = |f: fn(&x86::cpuid::ExtendedProcessorFeatureIdentifiers) -> bool| {
            amd.as_ref().is_some_and(f)
        };
        Self {
            x2apic: basic_has(|f| f.has_x2apic()),
            tsc_deadline: basic_has(|f| f.has_tsc_deadline()),
            vmx: basic_has(|f| f.has_vmx()),
            svm: amd_has(|f| f.has_svm()),
            nx: amd_has(|f| f.has_execute_disable()),
            smep: extended_has(|f| f.has_smep()),
            smap: extended_has(|f| f.has_smap()),
            pge: basic_has(|f| f.has_pge()),
        }
    }

    /// The hardware virtualization this CPU offers, as the boot log names it.
    pub fn virtualization(&self) -> &'static str {
        if self.vmx {
            "vmx"
        } else if self.svm {
            "svm"
        } else {
            "none"
        }
    }
}
