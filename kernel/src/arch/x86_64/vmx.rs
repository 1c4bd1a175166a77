//! Intel VMX, the hardware half: VMX operation on each CPU (VMXON), the
//! capability MSRs, the VMCS fields as one typed enum, one wrapper per VMX
//! instruction (VMXON, VMCLEAR, VMPTRLD, VMREAD, VMWRITE, INVEPT, INVVPID;
//! VMLAUNCH in vmx.S) with its VMfail handling, the host state, and the world
//! switch. The policy (controls, what exits mean) lives in
//! `crate::vcpu::vmx`. References: Intel SDM Vol. 3C, chapters 24 (VMCS),
//! 25-28 (controls, entry, exit) and 31 (VMX instructions); appendix A
//! (capability MSRs) and B (field encodings).
//!
//! Field encodings and MSR numbers come from the `x86` crate. The
//! instruction wrappers are Tarn's, not `x86::bits64::vmx`'s: those read
//! RFLAGS in a second `asm!` statement after the instruction (nothing
//! guarantees the flags survive between two statements), report VMfailValid
//! without its error number, and there is no INVEPT or INVVPID; here each
//! wrapper captures CF/ZF in the instruction's own statement (VMREAD's
//! needs no flags: its destination, preset to 0, stays 0 when it fails,
//! which is all its callers want to know). Bit layouts
//! the crate does not define (IA32_VMX_BASIC, IA32_FEATURE_CONTROL,
//! IA32_VMX_EPT_VPID_CAP, exit reasons, interruption information) are named
//! where they are used.
//!
//! **Which VMCS is current where.** A VMCS stays current (active) on the
//! CPU it last ran on, as in NOVA, Xen and KVM: each CPU records the one
//! VMCS it has active ([`CpuVmcs::current`], at most one: the old one is
//! cleared before another is loaded) and whether that VMCS is launched
//! there, so that the next entry of the same Vcpu on the same CPU needs no
//! VMPTRLD, rewrites no host state (all of it is this CPU's and constant,
//! HOST_RSP included, except CR3, which is written when it changed) and is
//! a VMRESUME; reading and writing its fields (exit decoding, the register
//! file) needs nothing either. A VMCS is cleared (VMCLEAR) only when
//! another must become current on its CPU, when it is to be used on
//! another CPU ([`ActiveVmcs::load`] there), when its Vcpu is destroyed or
//! bound afresh ([`clear`]), and after a failed entry. A CPU clears only
//! its own VMCS: another CPU that needs it cleared asks it to (an IPI,
//! `PerCpu::vmclear_remotely`) and waits, holding the kernel lock.
//!
//! Soundness: (1) a VMCS is active on at most one CPU: it is loaded only
//! by [`ActiveVmcs::load`], under the lock, after every other CPU whose
//! record names it has cleared it; and every VMCS not active anywhere has
//! its launch state clear (it is made inactive only by VMCLEAR). (2) The
//! records change only on their own CPU: under the lock, or in
//! [`clear_for_lock_holder`] on behalf of the lock holder waiting for it;
//! so the lock holder reads them stably. (3) The memory of an active VMCS
//! is never freed or reused: a Vcpu object's memory is released only after
//! `crate::vcpu::destroy`, which clears its VMCS everywhere ([`clear`])
//! first, and binding zeroes the page only after the same. (4) Waiting for
//! another CPU with the lock held cannot deadlock: that CPU does not hold
//! the lock, and serves the request wherever it is: from its IPI handler
//! (user mode, idle, the interrupt window right after a guest exit; a
//! guest running there exits on the IPI first) or from its wait for the
//! lock, which polls the requests (`lock::acquire`).

use super::cpu::{self, msr};
use super::lock::{self, KernelGuard};
use super::objmem::{self, KernelObject};
use super::paging::{kernel_virt_to_phys, phys_to_virt, PAGE_SIZE};
use super::percpu::{self, MAX_CPUS};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use x86::controlregs::{Cr0, Cr4};
use x86::vmx::vmcs::{control, guest, host, ro};

/// The VMX capability and control MSRs (SDM Vol. 3D, appendix A), numbered
/// by `x86::msr`. A closed enum rather than the crate's bare `u32`s:
/// [`read_msr`] is safe because it can only name an MSR that VMX support
/// implies.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxMsr {
    /// IA32_FEATURE_CONTROL: lock (bit 0), VMX outside SMX (bit 2).
    FeatureControl = msr::IA32_FEATURE_CONTROL,
    /// IA32_VMX_BASIC: revision (0..31), region size (32..45), memory
    /// type (50..54), TRUE_* controls exist (55).
    Basic = msr::IA32_VMX_BASIC,
    /// Pin-based controls: allowed 0-settings (low half), allowed 1-settings (high).
    PinBased = msr::IA32_VMX_PINBASED_CTLS,
    /// Primary processor-based controls.
    ProcBased = msr::IA32_VMX_PROCBASED_CTLS,
    /// VM-exit controls.
    Exit = msr::IA32_VMX_EXIT_CTLS,
    /// VM-entry controls.
    Entry = msr::IA32_VMX_ENTRY_CTLS,
    /// Miscellaneous data: the preemption timer's rate (bits 0..5: it
    /// counts down once every 2^rate TSC ticks).
    Misc = msr::IA32_VMX_MISC,
    /// CR0 bits fixed to 1 in VMX operation.
    Cr0Fixed0 = msr::IA32_VMX_CR0_FIXED0,
    /// CR0 bits allowed to be 1 in VMX operation.
    Cr0Fixed1 = msr::IA32_VMX_CR0_FIXED1,
    /// CR4 bits fixed to 1 in VMX operation.
    Cr4Fixed0 = msr::IA32_VMX_CR4_FIXED0,
    /// CR4 bits allowed to be 1 in VMX operation.
    Cr4Fixed1 = msr::IA32_VMX_CR4_FIXED1,
    /// Secondary processor-based controls.
    ProcBased2 = msr::IA32_VMX_PROCBASED_CTLS2,
    /// EPT and VPID capabilities.
    EptVpidCap = msr::IA32_VMX_EPT_VPID_CAP,
    /// Pin-based controls without the default-1 class forced.
    TruePinBased = msr::IA32_VMX_TRUE_PINBASED_CTLS,
    /// Primary processor-based controls without the default-1 class forced.
    TrueProcBased = msr::IA32_VMX_TRUE_PROCBASED_CTLS,
    /// VM-exit controls without the default-1 class forced.
    TrueExit = msr::IA32_VMX_TRUE_EXIT_CTLS,
    /// VM-entry controls without the default-1 class forced.
    TrueEntry = msr::IA32_VMX_TRUE_ENTRY_CTLS,
}

/// IA32_VMX_BASIC bit 55: the TRUE_* control MSRs exist.
pub const BASIC_TRUE_CONTROLS: u64 = 1 << 55;
/// Host selectors (`gdt`): VM exit needs RPL 0 and TI 0 in all of them.
const HOST_CS: u64 = super::gdt::KERNEL_CODE as u64;
const HOST_SS: u64 = super::gdt::KERNEL_DATA as u64;
const HOST_TR: u64 = super::gdt::TSS as u64;

/// Whether the processor reports VMX (CPUID.1:ECX[5]) and the firmware left
/// it usable outside SMX (IA32_FEATURE_CONTROL unlocked, or locked with
/// bit 2 set).
pub fn available() -> bool {
    let cpuid = x86::cpuid::CpuId::new();
    if !cpuid.get_feature_info().is_some_and(|f| f.has_vmx()) {
        return false;
    }
    let control = read_msr(VmxMsr::FeatureControl);
    control & 1 == 0 || control & (1 << 2) != 0
}

/// Reads a VMX capability MSR. Only meaningful once [`available`] said yes.
pub fn read_msr(which: VmxMsr) -> u64 {
    // SAFETY: CPUID.1:ECX[5] implies IA32_FEATURE_CONTROL and the basic VMX
    // capability MSRs; the optional ones (secondary controls, EPT/VPID,
    // TRUE_*) are read by the policy only after the bits that announce them.
    // Reading an MSR has no side effects.
    unsafe { cpu::rdmsr(which as u32) }
}

/// The VMCS revision identifier (IA32_VMX_BASIC bits 0..31).
pub fn revision_id() -> u32 {
    (read_msr(VmxMsr::Basic) & 0x7FFF_FFFF) as u32
}

/// Why a VMX instruction failed (SDM Vol. 3C, 31.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmFail {
    /// VMfailInvalid: no current VMCS, or the operand is not a usable region.
    Invalid,
    /// VMfailValid: the VM-instruction error number (SDM 31.4).
    Valid(u32),
}

impl VmFail {
    /// A raw number for exit records: the instruction error, or 0 for VMfailInvalid.
    pub fn raw(self) -> u64 {
        match self {
            VmFail::Invalid => 0,
            VmFail::Valid(number) => u64::from(number),
        }
    }
}

/// Decodes RFLAGS after a VMX instruction: CF = VMfailInvalid, ZF = VMfailValid.
fn check(carry: u8, zero: u8) -> Result<(), VmFail> {
    if carry != 0 {
        Err(VmFail::Invalid)
    } else if zero != 0 {
        // The error field is readable exactly when VMfailValid was reported.
        Err(VmFail::Valid(vmread(VmcsField::VmInstructionError) as u32))
    } else {
        Ok(())
    }
}

/// VMXON with the region at `phys`.
///
/// # Safety
/// `phys` must be this CPU's own page-aligned VMXON region holding the
/// revision id, never used for anything else; CR0/CR4 must meet the fixed
/// bits (CR4.VMXE set).
unsafe fn vmxon(phys: u64) -> Result<(), VmFail> {
    let (carry, zero): (u8, u8);
    // SAFETY: the caller guarantees the region and the control registers.
    unsafe {
        asm!("vmxon [{p}]", "setc {c}", "setz {z}", p = in(reg) &phys,
             c = out(reg_byte) carry, z = out(reg_byte) zero, options(nostack))
    };
    check(carry, zero)
}

/// VMCLEAR of the VMCS at `phys`: its data is written back to memory and
/// its launch state becomes clear.
///
/// # Safety
/// `phys` must be a page-aligned VMCS region of a live Vcpu object.
unsafe fn vmclear(phys: u64) -> Result<(), VmFail> {
    let (carry, zero): (u8, u8);
    // SAFETY: the caller guarantees the region; the processor writes only it.
    unsafe {
        asm!("vmclear [{p}]", "setc {c}", "setz {z}", p = in(reg) &phys,
             c = out(reg_byte) carry, z = out(reg_byte) zero, options(nostack))
    };
    check(carry, zero)
}

/// VMPTRLD: makes the VMCS at `phys` current on this CPU.
///
/// # Safety
/// As for [`vmclear`], and the VMCS must not be active on another CPU.
unsafe fn vmptrld(phys: u64) -> Result<(), VmFail> {
    let (carry, zero): (u8, u8);
    // SAFETY: the caller guarantees the region and that no other CPU has it.
    unsafe {
        asm!("vmptrld [{p}]", "setc {c}", "setz {z}", p = in(reg) &phys,
             c = out(reg_byte) carry, z = out(reg_byte) zero, options(nostack))
    };
    check(carry, zero)
}

/// VMREAD of `field` from the current VMCS; 0 if it fails (no current
/// VMCS, or a field this processor lacks): VMfail leaves the destination
/// as it was, so the flags need no test (every caller wants 0 then).
#[inline(always)]
fn vmread(field: VmcsField) -> u64 {
    let mut value = 0;
    // SAFETY: VMREAD only reads the current VMCS into a register; without a
    // current VMCS or with an unsupported field it fails (flags, clobbered
    // here), it does not fault, in VMX root operation at CPL 0.
    unsafe {
        asm!("vmread {v}, {f}", f = in(reg) field as u64, v = inout(reg) value,
             options(nostack))
    };
    value
}

/// VMWRITE of `value` to `field` of the current VMCS.
fn vmwrite(field: VmcsField, value: u64) -> Result<(), VmFail> {
    let (carry, zero): (u8, u8);
    // SAFETY: VMWRITE changes only the current VMCS (processor-internal
    // data for the next VM entry); nothing runs with it until VMLAUNCH,
    // where the processor checks every field.
    unsafe {
        asm!("vmwrite {f}, {v}", "setc {c}", "setz {z}", f = in(reg) field as u64,
             v = in(reg) value, c = out(reg_byte) carry, z = out(reg_byte) zero,
             options(nostack))
    };
    check(carry, zero)
}

/// INVEPT types (SDM 31.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidateEpt {
    /// Mappings derived from one EPTP.
    SingleContext = 1,
    /// Every EPT-derived mapping.
    AllContexts = 2,
}

/// INVEPT: drops guest-physical and combined mappings.
pub fn invept(kind: InvalidateEpt, eptp: u64) -> Result<(), VmFail> {
    let descriptor: [u64; 2] = [eptp, 0];
    let (carry, zero): (u8, u8);
    // SAFETY: INVEPT only invalidates cached translations; the descriptor
    // is a live local. The policy issues it only when IA32_VMX_EPT_VPID_CAP
    // reports the type.
    unsafe {
        asm!("invept {t}, [{d}]", "setc {c}", "setz {z}", t = in(reg) kind as u64,
             d = in(reg) &descriptor, c = out(reg_byte) carry, z = out(reg_byte) zero,
             options(nostack))
    };
    check(carry, zero)
}

/// INVVPID types (SDM 31.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidateVpid {
    /// Mappings tagged with one VPID.
    SingleContext = 1,
    /// Mappings of every VPID but 0.
    AllContexts = 2,
}

/// INVVPID: drops linear and combined mappings tagged with `vpid`.
pub fn invvpid(kind: InvalidateVpid, vpid: u16) -> Result<(), VmFail> {
    let descriptor: [u64; 2] = [u64::from(vpid), 0];
    let (carry, zero): (u8, u8);
    // SAFETY: as for `invept`.
    unsafe {
        asm!("invvpid {t}, [{d}]", "setc {c}", "setz {z}", t = in(reg) kind as u64,
             d = in(reg) &descriptor, c = out(reg_byte) carry, z = out(reg_byte) zero,
             options(nostack))
    };
    check(carry, zero)
}

/// A VMCS field, by its encoding (SDM Vol. 3D, appendix B), grouped as the
/// SDM groups them: width (16-bit, 64-bit, 32-bit, natural), then control,
/// read-only exit information, guest state, host state. The encodings are
/// the `x86` crate's (`x86::vmx::vmcs::{control, ro, guest, host}`); the
/// enum holds the fields Tarn uses, so that VMREAD/VMWRITE take only a field
/// this processor model is known to have (the crate's are bare `u32`s, any
/// number accepted). 64-bit fields are named by their `_FULL` encoding
/// (VMREAD/VMWRITE in 64-bit mode move all 64 bits).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmcsField {
    // B.1.1 16-bit control fields.
    /// The virtual-processor identifier.
    VirtualProcessorId = control::VPID,
    // B.1.2 16-bit guest-state fields.
    /// Guest ES selector.
    GuestEsSelector = guest::ES_SELECTOR,
    /// Guest CS selector.
    GuestCsSelector = guest::CS_SELECTOR,
    /// Guest SS selector.
    GuestSsSelector = guest::SS_SELECTOR,
    /// Guest DS selector.
    GuestDsSelector = guest::DS_SELECTOR,
    /// Guest FS selector.
    GuestFsSelector = guest::FS_SELECTOR,
    /// Guest GS selector.
    GuestGsSelector = guest::GS_SELECTOR,
    /// Guest LDTR selector.
    GuestLdtrSelector = guest::LDTR_SELECTOR,
    /// Guest TR selector.
    GuestTrSelector = guest::TR_SELECTOR,
    // B.1.3 16-bit host-state fields.
    /// Host ES selector.
    HostEsSelector = host::ES_SELECTOR,
    /// Host CS selector.
    HostCsSelector = host::CS_SELECTOR,
    /// Host SS selector.
    HostSsSelector = host::SS_SELECTOR,
    /// Host DS selector.
    HostDsSelector = host::DS_SELECTOR,
    /// Host FS selector.
    HostFsSelector = host::FS_SELECTOR,
    /// Host GS selector.
    HostGsSelector = host::GS_SELECTOR,
    /// Host TR selector.
    HostTrSelector = host::TR_SELECTOR,
    // B.2.1 64-bit control fields (in encoding order).
    /// Physical address of the MSR bitmap.
    MsrBitmap = control::MSR_BITMAPS_ADDR_FULL,
    /// Physical address of the VM-exit MSR-store list.
    ExitMsrStoreAddress = control::VMEXIT_MSR_STORE_ADDR_FULL,
    /// Physical address of the VM-exit MSR-load list.
    ExitMsrLoadAddress = control::VMEXIT_MSR_LOAD_ADDR_FULL,
    /// Physical address of the VM-entry MSR-load list.
    EntryMsrLoadAddress = control::VMENTRY_MSR_LOAD_ADDR_FULL,
    /// The EPT pointer.
    EptPointer = control::EPTP_FULL,
    // B.2.2 64-bit read-only data fields.
    /// The guest-physical address of an EPT violation.
    GuestPhysicalAddress = ro::GUEST_PHYSICAL_ADDR_FULL,
    // B.2.3 64-bit guest-state fields.
    /// VMCS link pointer (all ones: none).
    VmcsLinkPointer = guest::LINK_PTR_FULL,
    /// Guest IA32_DEBUGCTL.
    GuestDebugCtl = guest::IA32_DEBUGCTL_FULL,
    /// Guest IA32_PAT.
    GuestPat = guest::IA32_PAT_FULL,
    /// Guest IA32_EFER.
    GuestEfer = guest::IA32_EFER_FULL,
    // B.2.4 64-bit host-state fields.
    /// Host IA32_PAT.
    HostPat = host::IA32_PAT_FULL,
    /// Host IA32_EFER.
    HostEfer = host::IA32_EFER_FULL,
    // B.3.1 32-bit control fields.
    /// Pin-based VM-execution controls.
    PinBasedControls = control::PINBASED_EXEC_CONTROLS,
    /// Primary processor-based VM-execution controls.
    ProcBasedControls = control::PRIMARY_PROCBASED_EXEC_CONTROLS,
    /// Exception bitmap.
    ExceptionBitmap = control::EXCEPTION_BITMAP,
    /// Page-fault error-code mask.
    PageFaultErrorMask = control::PAGE_FAULT_ERR_CODE_MASK,
    /// Page-fault error-code match.
    PageFaultErrorMatch = control::PAGE_FAULT_ERR_CODE_MATCH,
    /// CR3-target count.
    Cr3TargetCount = control::CR3_TARGET_COUNT,
    /// VM-exit controls.
    ExitControls = control::VMEXIT_CONTROLS,
    /// VM-exit MSR-store count.
    ExitMsrStoreCount = control::VMEXIT_MSR_STORE_COUNT,
    /// VM-exit MSR-load count.
    ExitMsrLoadCount = control::VMEXIT_MSR_LOAD_COUNT,
    /// VM-entry controls.
    EntryControls = control::VMENTRY_CONTROLS,
    /// VM-entry MSR-load count.
    EntryMsrLoadCount = control::VMENTRY_MSR_LOAD_COUNT,
    /// VM-entry interruption-information (the event to inject).
    EntryInterruptionInfo = control::VMENTRY_INTERRUPTION_INFO_FIELD,
    /// VM-entry exception error code.
    EntryExceptionErrorCode = control::VMENTRY_EXCEPTION_ERR_CODE,
    /// VM-entry instruction length (software interrupts and exceptions).
    EntryInstructionLength = control::VMENTRY_INSTRUCTION_LEN,
    /// Secondary processor-based VM-execution controls.
    ProcBasedControls2 = control::SECONDARY_PROCBASED_EXEC_CONTROLS,
    // B.3.2 32-bit read-only data fields.
    /// VM-instruction error.
    VmInstructionError = ro::VM_INSTRUCTION_ERROR,
    /// Exit reason.
    ExitReason = ro::EXIT_REASON,
    /// VM-exit interruption information.
    ExitInterruptionInfo = ro::VMEXIT_INTERRUPTION_INFO,
    /// VM-exit interruption error code.
    ExitInterruptionErrorCode = ro::VMEXIT_INTERRUPTION_ERR_CODE,
    /// IDT-vectoring information (an event the exit interrupted).
    IdtVectoringInfo = ro::IDT_VECTORING_INFO,
    /// IDT-vectoring error code.
    IdtVectoringErrorCode = ro::IDT_VECTORING_ERR_CODE,
    /// VM-exit instruction length.
    ExitInstructionLength = ro::VMEXIT_INSTRUCTION_LEN,
    // B.3.3 32-bit guest-state fields.
    /// Guest ES limit.
    GuestEsLimit = guest::ES_LIMIT,
    /// Guest CS limit.
    GuestCsLimit = guest::CS_LIMIT,
    /// Guest SS limit.
    GuestSsLimit = guest::SS_LIMIT,
    /// Guest DS limit.
    GuestDsLimit = guest::DS_LIMIT,
    /// Guest FS limit.
    GuestFsLimit = guest::FS_LIMIT,
    /// Guest GS limit.
    GuestGsLimit = guest::GS_LIMIT,
    /// Guest LDTR limit.
    GuestLdtrLimit = guest::LDTR_LIMIT,
    /// Guest TR limit.
    GuestTrLimit = guest::TR_LIMIT,
    /// Guest GDTR limit.
    GuestGdtrLimit = guest::GDTR_LIMIT,
    /// Guest IDTR limit.
    GuestIdtrLimit = guest::IDTR_LIMIT,
    /// Guest ES access rights.
    GuestEsAccessRights = guest::ES_ACCESS_RIGHTS,
    /// Guest CS access rights.
    GuestCsAccessRights = guest::CS_ACCESS_RIGHTS,
    /// Guest SS access rights.
    GuestSsAccessRights = guest::SS_ACCESS_RIGHTS,
    /// Guest DS access rights.
    GuestDsAccessRights = guest::DS_ACCESS_RIGHTS,
    /// Guest FS access rights.
    GuestFsAccessRights = guest::FS_ACCESS_RIGHTS,
    /// Guest GS access rights.
    GuestGsAccessRights = guest::GS_ACCESS_RIGHTS,
    /// Guest LDTR access rights.
    GuestLdtrAccessRights = guest::LDTR_ACCESS_RIGHTS,
    /// Guest TR access rights.
    GuestTrAccessRights = guest::TR_ACCESS_RIGHTS,
    /// Guest interruptibility state (blocking by STI bit 0, by MOV SS bit 1).
    GuestInterruptibility = guest::INTERRUPTIBILITY_STATE,
    /// Guest activity state (0 active).
    GuestActivityState = guest::ACTIVITY_STATE,
    /// Guest IA32_SYSENTER_CS.
    GuestSysenterCs = guest::IA32_SYSENTER_CS,
    /// VMX-preemption timer value.
    GuestPreemptionTimer = guest::VMX_PREEMPTION_TIMER_VALUE,
    // B.3.4 32-bit host-state field.
    /// Host IA32_SYSENTER_CS.
    HostSysenterCs = host::IA32_SYSENTER_CS,
    // B.4.1 natural-width control fields.
    /// CR0 guest/host mask (bits the host owns).
    Cr0GuestHostMask = control::CR0_GUEST_HOST_MASK,
    /// CR4 guest/host mask.
    Cr4GuestHostMask = control::CR4_GUEST_HOST_MASK,
    /// CR0 read shadow (what the guest sees of the host-owned bits).
    Cr0ReadShadow = control::CR0_READ_SHADOW,
    /// CR4 read shadow.
    Cr4ReadShadow = control::CR4_READ_SHADOW,
    // B.4.2 natural-width read-only data fields.
    /// Exit qualification.
    ExitQualification = ro::EXIT_QUALIFICATION,
    // B.4.3 natural-width guest-state fields.
    /// Guest CR0.
    GuestCr0 = guest::CR0,
    /// Guest CR3.
    GuestCr3 = guest::CR3,
    /// Guest CR4.
    GuestCr4 = guest::CR4,
    /// Guest ES base.
    GuestEsBase = guest::ES_BASE,
    /// Guest CS base.
    GuestCsBase = guest::CS_BASE,
    /// Guest SS base.
    GuestSsBase = guest::SS_BASE,
    /// Guest DS base.
    GuestDsBase = guest::DS_BASE,
    /// Guest FS base.
    GuestFsBase = guest::FS_BASE,
    /// Guest GS base.
    GuestGsBase = guest::GS_BASE,
    /// Guest LDTR base.
    GuestLdtrBase = guest::LDTR_BASE,
    /// Guest TR base.
    GuestTrBase = guest::TR_BASE,
    /// Guest GDTR base.
    GuestGdtrBase = guest::GDTR_BASE,
    /// Guest IDTR base.
    GuestIdtrBase = guest::IDTR_BASE,
    /// Guest DR7.
    GuestDr7 = guest::DR7,
    /// Guest RSP.
    GuestRsp = guest::RSP,
    /// Guest RIP.
    GuestRip = guest::RIP,
    /// Guest RFLAGS.
    GuestRflags = guest::RFLAGS,
    /// Guest pending debug exceptions.
    GuestPendingDebugExceptions = guest::PENDING_DBG_EXCEPTIONS,
    /// Guest IA32_SYSENTER_ESP.
    GuestSysenterEsp = guest::IA32_SYSENTER_ESP,
    /// Guest IA32_SYSENTER_EIP.
    GuestSysenterEip = guest::IA32_SYSENTER_EIP,
    // B.4.4 natural-width host-state fields.
    /// Host CR0.
    HostCr0 = host::CR0,
    /// Host CR3.
    HostCr3 = host::CR3,
    /// Host CR4.
    HostCr4 = host::CR4,
    /// Host FS base.
    HostFsBase = host::FS_BASE,
    /// Host GS base.
    HostGsBase = host::GS_BASE,
    /// Host TR base.
    HostTrBase = host::TR_BASE,
    /// Host GDTR base.
    HostGdtrBase = host::GDTR_BASE,
    /// Host IDTR base.
    HostIdtrBase = host::IDTR_BASE,
    /// Host IA32_SYSENTER_ESP.
    HostSysenterEsp = host::IA32_SYSENTER_ESP,
    /// Host IA32_SYSENTER_EIP.
    HostSysenterEip = host::IA32_SYSENTER_EIP,
    /// Host RSP (written by vmx.S right before VMLAUNCH).
    HostRsp = host::RSP,
    /// Host RIP: where VM exits continue (`vmx_exit_asm`).
    HostRip = host::RIP,
}

/// The MSR bitmap (SDM 24.6.9): one bit per MSR and direction, set = the
/// access exits; clear for the MSRs the guest owns
/// ([`cpu::GUEST_OWNED_MSRS`]). Read bits of MSRs 0..0x1FFF from byte 0 and
/// of 0xC000_0000..0xC000_1FFF from byte 1024, write bits from bytes 2048
/// and 3072.
#[repr(C, align(4096))]
struct MsrBitmap([u8; PAGE_SIZE as usize]);
static MSR_BITMAP: MsrBitmap = MsrBitmap(msr_bitmap());

const fn msr_bitmap() -> [u8; PAGE_SIZE as usize] {
    let mut map = [0xFF; PAGE_SIZE as usize];
    let mut i = 0;
    while i < cpu::GUEST_OWNED_MSRS.len() {
        let msr = cpu::GUEST_OWNED_MSRS[i];
        let (base, index) = if msr >= 0xC000_0000 {
            (1024, msr - 0xC000_0000)
        } else {
            (0, msr)
        };
        let byte = base + index as usize / 8;
        let bit = 1 << (index % 8);
        map[byte] &= !bit;
        map[byte + 2048] &= !bit;
        i += 1;
    }
    map
}

/// Physical address of the MSR bitmap.
pub fn msr_bitmap_phys() -> u64 {
    kernel_virt_to_phys(&MSR_BITMAP as *const MsrBitmap as u64)
}

/// The host's values of [`cpu::GUEST_SYSCALL_MSRS`], the same on every CPU
/// (the kernel's syscall entry), for a VM-exit MSR-load list.
pub fn host_syscall_msrs() -> [u64; cpu::GUEST_SYSCALL_MSRS.len()] {
    // SAFETY: STAR, LSTAR, CSTAR and FMASK exist on every x86-64 CPU;
    // reading them has no side effects.
    cpu::GUEST_SYSCALL_MSRS.map(|msr| unsafe { cpu::rdmsr(msr) })
}

/// One CPU's VMX state (changed only on that CPU: see the module docs).
struct CpuVmcs {
    /// The VMCS active and current on this CPU (physical address, 0 = none).
    current: AtomicU64,
    /// Whether `current` has been launched (entries are then VMRESUMEs).
    launched: AtomicBool,
    /// The host CR3 written into `current`.
    host_cr3: AtomicU64,
    /// The VM-instruction error of an entry that failed (VMfailValid as
    /// `1 << 32 | number`, VMfailInvalid as `1 << 33`; 0 = it entered).
    entry_failure: AtomicU64,
}

static CPUS: [CpuVmcs; MAX_CPUS] = [const {
    CpuVmcs {
        current: AtomicU64::new(0),
        launched: AtomicBool::new(false),
        host_cr3: AtomicU64::new(0),
        entry_failure: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// This CPU's record.
fn this_cpu() -> &'static CpuVmcs {
    &CPUS[percpu::index()]
}

/// The VMCS current on CPU `cpu` (0 = none), for the invariant check.
pub fn current_on(_guard: &mut KernelGuard, cpu: usize) -> u64 {
    CPUS[cpu].current.load(Ordering::Relaxed)
}

/// Enters VMX operation on this CPU: CR0/CR4 get the bits VMX fixes
/// (IA32_VMX_CR0/CR4_FIXED0/1), IA32_FEATURE_CONTROL is locked with VMX on
/// if the firmware left it open, then VMXON. The caller checked
/// [`available`] on the boot CPU.
pub fn init_this_cpu() -> Result<(), VmFail> {
    let control = read_msr(VmxMsr::FeatureControl);
    if control & 1 == 0 {
        // SAFETY: an unlocked IA32_FEATURE_CONTROL may be written once;
        // enabling VMX outside SMX and locking changes nothing else.
        unsafe { cpu::wrmsr(VmxMsr::FeatureControl as u32, control | 1 | 1 << 2) };
    }
    let fixed = |value: usize, fixed0: VmxMsr, fixed1: VmxMsr| {
        (value as u64 | read_msr(fixed0)) & read_msr(fixed1)
    };
    let cr0 = fixed(cpu::read_cr0().bits(), VmxMsr::Cr0Fixed0, VmxMsr::Cr0Fixed1);
    let cr4 = fixed(
        (cpu::read_cr4() | Cr4::CR4_ENABLE_VMX).bits(),
        VmxMsr::Cr4Fixed0,
        VmxMsr::Cr4Fixed1,
    );
    // The VMXON region: a page of its own, the processor's for good (4 KiB
    // per online CPU, not per possible one).
    let region = super::frame::alloc_zeroed(1).ok_or(VmFail::Invalid)?;
    // SAFETY: the fixed-1 bits of CR0 in VMX operation (PE, NE, PG) are
    // already set in a long-mode kernel or harmless (NE: native FPU error
    // reporting); CR4.VMXE only permits VMXON. The region is this CPU's own
    // page: the write of the revision id happens before the processor owns it.
    unsafe {
        // (The crate's flags name every architectural CR0 bit and every CR4
        // bit up to PKE; VMX fixes none beyond them.)
        cpu::write_cr0(Cr0::from_bits_truncate(cr0 as usize));
        cpu::write_cr4(Cr4::from_bits_truncate(cr4 as usize));
        (phys_to_virt(region) as *mut u32).write_volatile(revision_id());
        vmxon(region)
    }
}

/// A VMCS region: the first page of a Vcpu object under VMX.
#[repr(C, align(4096))]
struct VmcsRegion {
    revision: u32,
    abort: u32,
    data: [u8; PAGE_SIZE as usize - 8],
}
impl KernelObject for VmcsRegion {}

/// Makes the page at `phys` (a Vcpu object's first page, whose guest runs
/// nowhere) a fresh VMCS: cleared wherever a previous binding left it
/// current, zeroed, the revision id, launch state clear (VMCLEAR).
pub fn init_vmcs(guard: &mut KernelGuard, phys: u64) -> Result<(), VmFail> {
    clear(guard, phys);
    objmem::zero(guard, phys, PAGE_SIZE);
    objmem::object::<VmcsRegion>(guard, phys).revision = revision_id();
    // SAFETY: the page is a Vcpu object's VMCS page, now a valid region,
    // active on no CPU (just cleared everywhere).
    unsafe { vmclear(phys) }
}

/// The VMCS of a Vcpu, current on this CPU. The borrow of the lock keeps
/// it so (no other CPU can take it meanwhile).
pub struct ActiveVmcs<'a> {
    _guard: core::marker::PhantomData<&'a mut KernelGuard>,
}

impl<'a> ActiveVmcs<'a> {
    /// Makes the VMCS at `phys` (a Vcpu object's first page, set up by
    /// [`init_vmcs`], whose guest runs nowhere) current on this CPU: nothing
    /// to do if it is already; otherwise the CPU that has it clears it, this
    /// CPU clears its own, loads this one (VMPTRLD) and writes its host state.
    #[inline]
    pub fn load(guard: &'a mut KernelGuard, phys: u64) -> Result<Self, VmFail> {
        let here = this_cpu();
        if here.current.load(Ordering::Relaxed) != phys {
            make_current(guard, phys)?;
        }
        Ok(Self::token())
    }

    /// The VMCS at `phys` if it is still current on this CPU (exit decoding:
    /// another CPU may have taken it since the guest exited here).
    pub fn here(_guard: &'a mut KernelGuard, phys: u64) -> Option<Self> {
        (this_cpu().current.load(Ordering::Relaxed) == phys).then(Self::token)
    }

    fn token() -> Self {
        ActiveVmcs {
            _guard: core::marker::PhantomData,
        }
    }

    /// Reads a field (0 if this processor does not have it).
    pub fn read(&self, field: VmcsField) -> u64 {
        vmread(field)
    }

    /// Writes a field.
    pub fn write(&mut self, field: VmcsField, value: u64) -> Result<(), VmFail> {
        vmwrite(field, value)
    }
}

/// The slow half of [`ActiveVmcs::load`].
#[cold]
fn make_current(guard: &mut KernelGuard, phys: u64) -> Result<(), VmFail> {
    clear_elsewhere(guard, phys);
    clear_current(guard);
    // SAFETY: `phys` is the VMCS page of a live Vcpu (the caller's), active
    // on no CPU now: every other CPU whose record named it has cleared it,
    // and this CPU has just cleared its own (soundness (1), module docs).
    unsafe { vmptrld(phys)? };
    let here = this_cpu();
    here.current.store(phys, Ordering::Relaxed);
    here.launched.store(false, Ordering::Relaxed);
    write_host_state()
}

/// Makes every CPU but this one that has the VMCS at `phys` current clear
/// it, waiting for each.
fn clear_elsewhere(_guard: &mut KernelGuard, phys: u64) {
    let me = percpu::index();
    let online = percpu::online() as usize;
    for (cpu, record) in CPUS.iter().enumerate().take(online) {
        if cpu != me && record.current.load(Ordering::Relaxed) == phys {
            if let Some(target) = percpu::get(cpu as u32) {
                target.vmclear_remotely(phys);
            }
        }
    }
}

/// Clears the VMCS current on this CPU, if any (another is to be loaded,
/// or an entry with it failed: the next entry loads and launches it anew).
pub fn clear_current(_guard: &mut KernelGuard) {
    let here = this_cpu();
    let phys = here.current.swap(0, Ordering::Relaxed);
    if phys != 0 {
        // SAFETY: the VMCS current here, of a live Vcpu (soundness (3)).
        // VMCLEAR of a valid VMCS cannot fail.
        let _ = unsafe { vmclear(phys) };
    }
}

/// Makes the VMCS at `phys` current nowhere (its Vcpu is destroyed, or
/// its page is to be set up afresh), waiting for the CPU that has it.
/// The caller has made every CPU running its guest leave it.
pub fn clear(guard: &mut KernelGuard, phys: u64) {
    clear_elsewhere(guard, phys);
    if this_cpu().current.load(Ordering::Relaxed) == phys {
        clear_current(guard);
    }
}

/// Clears the VMCS at `phys` if it is the one current on this CPU, for the
/// lock holder that asked (`PerCpu::vmclear_remotely`) and waits.
pub fn clear_for_lock_holder(phys: u64) {
    let here = this_cpu();
    if here.current.load(Ordering::Relaxed) == phys {
        // SAFETY: the VMCS current on this CPU, of a Vcpu the asking CPU
        // keeps alive (it holds the lock until this is done). Whatever this
        // CPU was interrupted in does not use it: VMX instructions run only
        // under the lock (which the asking CPU holds) or in the world
        // switch, with interrupts off up to the entry (an entry that failed
        // then reads only the error number, 0 once the VMCS is cleared).
        let _ = unsafe { vmclear(phys) };
        here.current.store(0, Ordering::Relaxed);
    }
}

/// The base of the TSS the task register names (from this CPU's GDT).
fn task_register_base(gdt_base: u64) -> u64 {
    let descriptor = gdt_base + HOST_TR;
    // SAFETY: the GDT is this CPU's live, 'static table (`gdt::Gdt::load`)
    // and its TSS descriptor is 16 bytes at the TR selector.
    let (low, high) = unsafe {
        (
            (descriptor as *const u64).read_volatile(),
            ((descriptor + 8) as *const u64).read_volatile(),
        )
    };
    ((low >> 16) & 0xFF_FFFF) | ((low >> 56) & 0xFF) << 24 | (high & 0xFFFF_FFFF) << 32
}

/// The bases of this CPU's GDT and IDT (SGDT, SIDT).
fn descriptor_table_bases() -> (u64, u64) {
    let mut gdtr = [0u8; 10];
    let mut idtr = [0u8; 10];
    // SAFETY: SGDT/SIDT store 10 bytes into the given local buffers.
    unsafe {
        asm!("sgdt [{}]", "sidt [{}]", in(reg) gdtr.as_mut_ptr(), in(reg) idtr.as_mut_ptr(),
             options(nostack, preserves_flags))
    };
    let base = |bytes: [u8; 10]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[2..]);
        u64::from_le_bytes(word)
    };
    (base(gdtr), base(idtr))
}

/// Writes the host-state fields into the VMCS just made current: the state
/// this CPU has, which a VM exit restores (SDM 27.5). Each value is this
/// CPU's for good (the GDT, IDT and TSS are per CPU, FS base and GS base
/// change only at boot, the control registers' bits only at boot; CR0.TS
/// is clear at every entry, `sched::claim_fpu_for_guest`, and so written
/// clear whenever this runs), except CR3: a
/// user address space may be loaded, which [`run`] writes when it changed.
/// HOST_RSP is constant too: vmx.S starts every entry at the stack top.
fn write_host_state() -> Result<(), VmFail> {
    let (gdt_base, idt_base) = descriptor_table_bases();
    // SAFETY: FS_BASE, GS_BASE, EFER and PAT exist on every x86-64 CPU with
    // VMX; reading them has no side effects.
    let (fs_base, gs_base, efer, pat) = unsafe {
        (
            cpu::rdmsr(msr::IA32_FS_BASE),
            cpu::rdmsr(msr::IA32_GS_BASE),
            cpu::rdmsr(msr::IA32_EFER),
            cpu::rdmsr(msr::IA32_PAT),
        )
    };
    let cr3 = cpu::read_cr3();
    this_cpu().host_cr3.store(cr3, Ordering::Relaxed);
    let stack_top = percpu::current().kernel_stack_top;
    let fields = [
        // TS as every entry has it (this may run before the guest's FPU
        // claim, with TS still set for a thread's lazy switch).
        (
            VmcsField::HostCr0,
            (cpu::read_cr0() - Cr0::CR0_TASK_SWITCHED).bits() as u64,
        ),
        (VmcsField::HostCr3, cr3),
        (VmcsField::HostCr4, cpu::read_cr4().bits() as u64),
        (VmcsField::HostCsSelector, HOST_CS),
        (VmcsField::HostSsSelector, HOST_SS),
        (VmcsField::HostDsSelector, 0),
        (VmcsField::HostEsSelector, 0),
        (VmcsField::HostFsSelector, 0),
        (VmcsField::HostGsSelector, 0),
        (VmcsField::HostTrSelector, HOST_TR),
        (VmcsField::HostFsBase, fs_base),
        (VmcsField::HostGsBase, gs_base),
        (VmcsField::HostTrBase, task_register_base(gdt_base)),
        (VmcsField::HostGdtrBase, gdt_base),
        (VmcsField::HostIdtrBase, idt_base),
        (VmcsField::HostSysenterCs, 0),
        (VmcsField::HostSysenterEsp, 0),
        (VmcsField::HostSysenterEip, 0),
        (VmcsField::HostEfer, efer),
        (VmcsField::HostPat, pat),
        (VmcsField::HostRip, vmx_exit_asm as *const () as u64),
        (VmcsField::HostRsp, stack_top - LAUNCH_FRAME_BYTES),
    ];
    for (field, value) in fields {
        vmwrite(field, value)?;
    }
    Ok(())
}

/// What vmx.S pushes at the top of the kernel stack before each entry (the
/// host KERNEL_GS_BASE's two halves and the guest register area), where the
/// exit finds them.
const LAUNCH_FRAME_BYTES: u64 = 24;

extern "C" {
    fn vmx_launch_asm(gprs: u64, resume: u32) -> !;
    fn vmx_exit_asm() -> !;
}

/// Enters the guest of the VMCS at `vmcs_phys` (prepared by the policy),
/// with its general registers, CR2 and KERNEL_GS_BASE at `gprs_phys` (the
/// layout vmx.S expects: RAX..R15 without RSP, then CR2, KERNEL_GS_BASE).
/// Releases the kernel lock; continues in `crate::vcpu::on_exit` with the
/// lock held again once the guest exits or the entry failed. The VMCS
/// stays current on this CPU afterwards.
pub fn run(mut guard: KernelGuard, vmcs_phys: u64, gprs_phys: u64) -> ! {
    let here = this_cpu();
    here.entry_failure.store(0, Ordering::Relaxed);
    if let Err(why) = ActiveVmcs::load(&mut guard, vmcs_phys).and_then(|_| update_host_cr3()) {
        // The entry cannot even be tried: report it like a failed VMLAUNCH.
        here.entry_failure
            .store(failure_word(why), Ordering::Relaxed);
        crate::vcpu::on_exit(guard)
    }
    // Launched once entered; an entry that fails clears the VMCS
    // (`clear_current`, from the exit decoding).
    let resume = here.launched.swap(true, Ordering::Relaxed);
    // The guest counts as user mode: `sched::stall` kicks it out and waits.
    let cpu = percpu::current();
    cpu.set_in_user(true);
    drop(guard);
    // SAFETY: the VMCS is a page of a live Vcpu object, current on this CPU
    // (launched on it if `resume`), with controls from `crate::vcpu::vmx`
    // (external interrupts and NMIs exit, EPT over a GuestSpace, all I/O
    // and MSR accesses exit) and this CPU's host state; the register area
    // is part of the same object and interrupts are off. The object stays
    // allocated until the guest exits: deleting it stalls this CPU first
    // (`crate::vcpu::destroy`), then clears the VMCS here ([`clear`]).
    unsafe { vmx_launch_asm(phys_to_virt(gprs_phys), u32::from(resume)) }
}

/// Writes the host CR3 into the current VMCS if it is not the one there.
#[inline(always)]
fn update_host_cr3() -> Result<(), VmFail> {
    let cr3 = cpu::read_cr3();
    let here = this_cpu();
    if here.host_cr3.load(Ordering::Relaxed) != cr3 {
        vmwrite(VmcsField::HostCr3, cr3)?;
        here.host_cr3.store(cr3, Ordering::Relaxed);
    }
    Ok(())
}

fn failure_word(why: VmFail) -> u64 {
    match why {
        VmFail::Invalid => 1 << 33,
        VmFail::Valid(number) => 1 << 32 | u64::from(number),
    }
}

/// How the last entry on this CPU failed, if it did: the VMfail.
pub fn take_entry_failure() -> Option<VmFail> {
    let word = this_cpu().entry_failure.swap(0, Ordering::Relaxed);
    match word {
        0 => None,
        w if w & 1 << 33 != 0 => Some(VmFail::Invalid),
        w => Some(VmFail::Valid(w as u32)),
    }
}

/// Continues after a VM exit (from vmx.S), on a fresh kernel stack.
#[no_mangle]
extern "C" fn vmx_guest_exited() -> ! {
    percpu::current().set_in_user(false);
    let guard = lock::acquire();
    crate::vcpu::on_exit(guard)
}

/// Continues after VMLAUNCH or VMRESUME failed (from vmx.S, `rflags` right
/// after it).
#[no_mangle]
extern "C" fn vmx_entry_failed(rflags: u64) -> ! {
    let why = if rflags & 1 != 0 {
        VmFail::Invalid
    } else {
        VmFail::Valid(vmread(VmcsField::VmInstructionError) as u32)
    };
    this_cpu()
        .entry_failure
        .store(failure_word(why), Ordering::Relaxed);
    vmx_guest_exited()
}

/// Raises an NMI the guest's exit consumed on the host (the host's NMI
/// handler runs as if the NMI had arrived here).
pub fn deliver_host_nmi() {
    // SAFETY: INT 2 runs the host's own NMI handler on its IST stack, as a
    // real NMI would have.
    unsafe { asm!("int 2", options(nostack)) };
}
