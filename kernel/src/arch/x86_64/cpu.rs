//! One-line wrappers for the privileged instructions and registers the kernel
//! uses (MSRs, control registers, CPUID, port I/O, TSC, halting).

use core::arch::asm;

/// Model-specific register numbers (SDM Vol. 4).
pub mod msr {
    /// IA32_APIC_BASE: x2APIC enable (bit 10), xAPIC global enable (bit 11).
    pub const APIC_BASE: u32 = 0x1B;
    /// IA32_TSC_DEADLINE: the local APIC timer's deadline in TSC-deadline mode.
    pub const TSC_DEADLINE: u32 = 0x6E0;
    /// IA32_EFER: long mode, NX, SYSCALL enable.
    pub const EFER: u32 = 0xC000_0080;
    /// IA32_GS_BASE: the kernel's per-CPU pointer.
    pub const GS_BASE: u32 = 0xC000_0101;
}

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU (reading a missing MSR raises #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists; rdmsr has no memory effects.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` must exist and `value` must be valid for it; the write may change how
/// the CPU behaves (the caller owns that consequence).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the MSR and value are valid.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// The result of one CPUID leaf.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuidResult {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// Executes CPUID for `leaf`/`subleaf`.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    CpuidResult {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// Reads the time-stamp counter (under `-icount shift=0` it counts instructions).
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is unprivileged unless CR4.TSD is set, which Tarn never sets.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Reads CR0.
pub fn read_cr0() -> u64 {
    let v;
    // SAFETY: reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR2 (the faulting address of the last page fault).
pub fn read_cr2() -> u64 {
    let v;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR3 (the current top-level page table).
pub fn read_cr3() -> u64 {
    let v;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Loads CR3.
///
/// # Safety
/// `value` must point at a page table that maps the running code, its stack
/// and everything the kernel uses afterwards.
pub unsafe fn write_cr3(value: u64) {
    // SAFETY: the caller guarantees the new tables map the kernel.
    unsafe { asm!("mov cr3, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Reads CR4.
pub fn read_cr4() -> u64 {
    let v;
    // SAFETY: reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Loads CR4.
///
/// # Safety
/// Every bit set must be supported by this CPU and consistent with the kernel
/// (e.g. SMAP only once no kernel path touches user memory without `stac`).
pub unsafe fn write_cr4(value: u64) {
    // SAFETY: the caller guarantees the bits are supported and consistent.
    unsafe { asm!("mov cr4, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port write must not break an invariant of the device behind it.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller owns the device semantics.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Reading may have device side effects (e.g. acknowledging data).
pub unsafe fn inb(port: u16) -> u8 {
    let v;
    // SAFETY: the caller owns the device semantics.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Flushes this CPU's non-global TLB entries (reloads CR3).
pub fn flush_tlb() {
    // SAFETY: reloading the current CR3 value changes no mapping.
    unsafe { write_cr3(read_cr3()) };
}

/// Invalidates the TLB entry for one virtual address.
pub fn invlpg(virt: u64) {
    // SAFETY: invalidating a TLB entry never breaks memory safety.
    unsafe { asm!("invlpg [{}]", in(reg) virt, options(nostack, preserves_flags)) };
}

/// Enables interrupts and halts until the next one (atomically: `sti; hlt`).
pub fn enable_interrupts_and_halt() {
    // SAFETY: the kernel's interrupt handlers are installed before any CPU idles.
    unsafe { asm!("sti; hlt", options(nomem, nostack)) };
}

/// Enables interrupts.
pub fn enable_interrupts() {
    // SAFETY: the IDT is loaded before interrupts are first enabled.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

/// Disables interrupts.
pub fn disable_interrupts() {
    // SAFETY: masking interrupts cannot break memory safety.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Whether interrupts are enabled (RFLAGS.IF).
pub fn interrupts_enabled() -> bool {
    let flags: u64;
    // SAFETY: reading RFLAGS has no side effects.
    unsafe { asm!("pushfq; pop {}", out(reg) flags, options(nomem, preserves_flags)) };
    flags & (1 << 9) != 0
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
        let l1 = cpuid(1, 0);
        let max = cpuid(0, 0).eax;
        let l7 = if max >= 7 {
            cpuid(7, 0)
        } else {
            CpuidResult::default()
        };
        let max_ext = cpuid(0x8000_0000, 0).eax;
        let e1 = if max_ext >= 0x8000_0001 {
            cpuid(0x8000_0001, 0)
        } else {
            CpuidResult::default()
        };
        Self {
            x2apic: l1.ecx & (1 << 21) != 0,
            tsc_deadline: l1.ecx & (1 << 24) != 0,
            vmx: l1.ecx & (1 << 5) != 0,
            svm: e1.ecx & (1 << 2) != 0,
            nx: e1.edx & (1 << 20) != 0,
            smep: l7.ebx & (1 << 7) != 0,
            smap: l7.ebx & (1 << 20) != 0,
            pge: l1.edx & (1 << 13) != 0,
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
