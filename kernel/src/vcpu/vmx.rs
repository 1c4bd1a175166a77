//! The VMX backend's policy: which VMCS controls are set (derived from the
//! capability MSRs), the EPT pointer, how events are injected and how exits
//! become [`ExitRecord`]s (Intel SDM Vol. 3C, chapters 24-28; exit reasons
//! in appendix C). The instructions themselves are in `arch::x86_64::vmx`.
//!
//! Exits: external interrupts and NMIs (for the host; not acknowledged on
//! exit, so the host takes them as ordinary interrupts), the interrupt
//! window when asked for, CPUID, HLT, INVD, VMCALL and the other VMX
//! instructions (unconditional), every I/O port (unconditional I/O exiting,
//! no bitmaps) and every MSR but those the guest owns (the MSR bitmap:
//! `arch::cpu::GUEST_OWNED_MSRS`; FS/GS base and SYSENTER are VMCS fields,
//! KERNEL_GS_BASE is switched by vmx.S, STAR/LSTAR/CSTAR/FMASK by MSR
//! lists in the Vcpu's state page), MOV to/from CR8, MONITOR,
//! MWAIT, XSETBV, triple fault. Unrestricted guest lets real-mode and
//! unpaged guests run on EPT; VPID 1 tags every guest's TLB entries, which
//! are flushed whenever another virtual CPU ran on this CPU in between or a
//! GuestSpace lost a mapping (`super::enter_guest`), as under SVM.
//!
//! CR0 and CR4 bits VMX fixes (IA32_VMX_CR0/CR4_FIXED0/1, e.g. CR0.NE and
//! CR4.VMXE) are owned by the host (guest/host mask): the guest reads what
//! it (or the VMM) wrote, from the read shadow. A guest write that would
//! change a host-owned bit exits as `Unsupported` (control-register access).
//!
//! An inconsistent guest state makes VM entry fail: the VMM gets
//! `InvalidState` with field 0 = the basic exit reason (33 invalid guest state,
//! 34 MSR loading, 41 machine check) or, when VMLAUNCH or VMRESUME itself failed
//! (VMfail), field 0 = the VM-instruction error and field 1 = 1.

use super::{page, page_register, state, ExitRecord, MsrEntry, Outcome};
use crate::arch::cpu::GUEST_SYSCALL_MSRS;
use crate::arch::lock::KernelGuard;
use crate::arch::vmx::{
    self as hw, ActiveVmcs, InvalidateEpt, InvalidateVpid, VmFail, VmcsField as F, VmxMsr,
};
use tarn_ipc_schema::vcpu::{access, io, Exit, Reg, Segment, REGISTER_COUNT};
use tarn_kernel_core::vmx::{
    access_rights, adjust_controls as adjust, ept_violation, EptAccess, IoExit,
};
use x86::bits64::rflags::RFlags;
use x86::controlregs::Cr0;
use x86::vmx::vmcs::control::{
    EntryControls as Entry, ExitControls as ExitCtl, PinbasedControls as Pin,
    PrimaryControls as Primary, SecondaryControls as Secondary,
};

/// The pin-based controls Tarn needs (SDM 24.6.1): external interrupts and
/// NMIs exit; the VMX-preemption timer is taken where the processor has it.
const PIN_WANTED: Pin = Pin::EXTERNAL_INTERRUPT_EXITING.union(Pin::NMI_EXITING);

/// The primary processor-based controls Tarn needs (SDM 24.6.2, table
/// 24-6): HLT, MWAIT, MONITOR and MOV CR8 exit, every I/O port
/// exits (no bitmaps), secondary controls on.
const PROC1_WANTED: Primary = Primary::HLT_EXITING
    .union(Primary::MWAIT_EXITING)
    .union(Primary::CR8_LOAD_EXITING)
    .union(Primary::CR8_STORE_EXITING)
    .union(Primary::UNCOND_IO_EXITING)
    .union(Primary::MONITOR_EXITING)
    .union(Primary::USE_MSR_BITMAPS)
    .union(Primary::SECONDARY_CONTROLS);

/// CR3 accesses that exit: with EPT the guest owns its CR3, so a processor
/// that forces either is refused.
const PROC1_CR3_EXITING: Primary = Primary::CR3_LOAD_EXITING.union(Primary::CR3_STORE_EXITING);

/// The secondary controls Tarn needs (SDM 24.6.2, table 24-7); RDTSCP is
/// enabled where allowed.
const PROC2_WANTED: Secondary = Secondary::ENABLE_EPT
    .union(Secondary::ENABLE_VPID)
    .union(Secondary::UNRESTRICTED_GUEST);

/// VM-exit controls (SDM 24.7.1): a 64-bit host, guest PAT and EFER saved,
/// the host's loaded.
const EXIT_WANTED: ExitCtl = ExitCtl::HOST_ADDRESS_SPACE_SIZE
    .union(ExitCtl::SAVE_IA32_PAT)
    .union(ExitCtl::LOAD_IA32_PAT)
    .union(ExitCtl::SAVE_IA32_EFER)
    .union(ExitCtl::LOAD_IA32_EFER);

/// VM-entry controls (SDM 24.8.1): the guest's PAT and EFER loaded
/// (IA-32e mode guest follows EFER.LMA, in [`write_registers`]).
const ENTRY_WANTED: Entry = Entry::LOAD_IA32_PAT.union(Entry::LOAD_IA32_EFER);

/// IA32_VMX_EPT_VPID_CAP bits (SDM appendix A.10; not in the `x86` crate).
mod ept_cap {
    pub const WALK_4: u64 = 1 << 6;
    pub const WRITE_BACK: u64 = 1 << 14;
    pub const PAGE_2M: u64 = 1 << 16;
    pub const INVEPT: u64 = 1 << 20;
    pub const INVEPT_SINGLE: u64 = 1 << 25;
    pub const INVEPT_ALL: u64 = 1 << 26;
    pub const INVVPID: u64 = 1 << 32;
    pub const INVVPID_SINGLE: u64 = 1 << 41;
    pub const INVVPID_ALL: u64 = 1 << 42;
    pub const REQUIRED: u64 = WALK_4 | WRITE_BACK | PAGE_2M | INVEPT | INVVPID;
}

/// Basic exit reasons (SDM appendix C; not in the `x86` crate).
mod reason {
    pub const EXCEPTION_OR_NMI: u64 = 0;
    pub const EXTERNAL_INTERRUPT: u64 = 1;
    pub const TRIPLE_FAULT: u64 = 2;
    pub const INIT: u64 = 3;
    pub const IO_SMI: u64 = 5;
    pub const OTHER_SMI: u64 = 6;
    pub const INTERRUPT_WINDOW: u64 = 7;
    pub const PREEMPTION_TIMER: u64 = 52;
    pub const CPUID: u64 = 10;
    pub const HLT: u64 = 12;
    pub const VMCALL: u64 = 18;
    pub const IO: u64 = 30;
    pub const RDMSR: u64 = 31;
    pub const WRMSR: u64 = 32;
    pub const EPT_VIOLATION: u64 = 48;
    /// Bit 31 of the exit reason: VM entry failed.
    pub const ENTRY_FAILURE: u64 = 1 << 31;
}

/// Interruption-information valid bit (SDM 24.8.3, 24.9.2).
const EVENT_VALID: u64 = 1 << 31;
/// Interruption-information: an error code is delivered.
const EVENT_ERROR_CODE: u64 = 1 << 11;
/// The interruption type in bits 8..11 (2: NMI).
const EVENT_TYPE_NMI: u64 = 2;
/// Bits of interruption information VM entry accepts (vector, type, error
/// code, valid); the stored re-injection keeps the instruction length in
/// bits 12..16 and the error code in bits 32..64.
const EVENT_ENTRY_BITS: u64 = 0x8000_0FFF;
/// The VPID every guest uses (0 is the host's).
const GUEST_VPID: u16 = 1;
/// EPTP: write-back paging structures, 4-level walk (SDM 24.6.11).
const EPTP_WB_4LEVEL: u64 = 6 | (3 << 3);
/// EPT leaf entries: memory type write-back (bits 3..6).
const EPT_MEMORY_WB: u64 = 6 << 3;
/// PAT after reset.
const RESET_PAT: u64 = 0x0007_0406_0007_0406;
/// CR0.PE and CR0.PG, which unrestricted guests may clear.
const CR0_PE_PG: u64 = Cr0::CR0_PROTECTED_MODE.union(Cr0::CR0_ENABLE_PAGING).bits() as u64;
/// EFER.LMA (the crate names the EFER MSR, not its bits).
const EFER_LMA: u64 = 1 << 10;
/// RFLAGS.IF.
const RFLAGS_IF: u64 = RFlags::FLAGS_IF.bits();
/// The VMX-preemption timer ends every guest run after this long (when
/// the processor has the timer): the kernel then looks at its timers as
/// after an interrupt. External-interrupt exiting alone would do on
/// hardware, but Bochs 2.7 re-evaluates interrupt blocking at VM entry only
/// when RFLAGS.IF changes, so a guest that never touches IF (interrupts
/// off from its start) would otherwise keep the CPU until it exits.
const GUEST_QUANTUM_US: u64 = 1000;

/// The controls Tarn uses on this processor, and its fixed CR bits. The
/// controls are raw words, not the crate's flag types: they include the
/// default-1 bits the capability MSRs force, which the crate does not name
/// (`from_bits_truncate` would drop them).
#[derive(Clone, Copy, Debug)]
struct Controls {
    pin: u32,
    proc1: u32,
    proc2: u32,
    exit: u32,
    entry: u32,
    cr0_fixed0: u64,
    cr0_fixed1: u64,
    cr4_fixed0: u64,
    cr4_fixed1: u64,
}

impl Controls {
    /// The CR0 bits the host owns (guest/host mask): those VMX fixes.
    fn cr0_mask(&self) -> u64 {
        self.cr0_fixed0 | !self.cr0_fixed1
    }

    /// The CR4 bits the host owns.
    fn cr4_mask(&self) -> u64 {
        self.cr4_fixed0 | !self.cr4_fixed1
    }
}

/// [`derive_controls`], once: the capability MSRs never change.
static CONTROLS: spin::Once<Option<Controls>> = spin::Once::new();

/// The controls Tarn uses on this processor (`None`: it lacks one).
fn controls() -> Option<Controls> {
    *CONTROLS.call_once(derive_controls)
}

/// The controls, derived from the capability MSRs (SDM A.2: with
/// IA32_VMX_BASIC bit 55 the TRUE_* MSRs give the real allowed 0-settings).
fn derive_controls() -> Option<Controls> {
    let basic = hw::read_msr(VmxMsr::Basic);
    let true_msrs = basic & hw::BASIC_TRUE_CONTROLS != 0;
    let pick = |plain, truer| hw::read_msr(if true_msrs { truer } else { plain });
    let proc1 = adjust(
        pick(VmxMsr::ProcBased, VmxMsr::TrueProcBased),
        PROC1_WANTED.bits(),
        0,
    )?;
    if proc1 & PROC1_CR3_EXITING.bits() != 0 {
        return None;
    }
    Some(Controls {
        pin: adjust(
            pick(VmxMsr::PinBased, VmxMsr::TruePinBased),
            PIN_WANTED.bits(),
            Pin::VMX_PREEMPTION_TIMER.bits(),
        )?,
        proc1,
        proc2: adjust(
            hw::read_msr(VmxMsr::ProcBased2),
            PROC2_WANTED.bits(),
            Secondary::ENABLE_RDTSCP.bits(),
        )?,
        exit: adjust(pick(VmxMsr::Exit, VmxMsr::TrueExit), EXIT_WANTED.bits(), 0)?,
        entry: adjust(
            pick(VmxMsr::Entry, VmxMsr::TrueEntry),
            ENTRY_WANTED.bits(),
            0,
        )?,
        cr0_fixed0: hw::read_msr(VmxMsr::Cr0Fixed0) & !CR0_PE_PG,
        cr0_fixed1: hw::read_msr(VmxMsr::Cr0Fixed1),
        cr4_fixed0: hw::read_msr(VmxMsr::Cr4Fixed0),
        cr4_fixed1: hw::read_msr(VmxMsr::Cr4Fixed1),
    })
}

/// Whether this processor has what the backend needs: VMX usable, a
/// write-back VMCS of at most a page, secondary controls with EPT (4-level,
/// write-back, 2 MiB pages, INVEPT), VPID (INVVPID) and unrestricted guest,
/// and every other control in [`controls`].
pub fn supported() -> bool {
    if !hw::available() {
        return false;
    }
    let basic = hw::read_msr(VmxMsr::Basic);
    let region_bytes = (basic >> 32) & 0x1FFF;
    let memory_type = (basic >> 50) & 0xF;
    if region_bytes > 4096 || memory_type != 6 {
        return false;
    }
    // The secondary controls (and their MSR) exist only if allowed.
    if hw::read_msr(VmxMsr::ProcBased) >> 32 & u64::from(Primary::SECONDARY_CONTROLS.bits()) == 0 {
        return false;
    }
    let caps = hw::read_msr(VmxMsr::EptVpidCap);
    if caps & ept_cap::REQUIRED != ept_cap::REQUIRED
        || caps & (ept_cap::INVEPT_SINGLE | ept_cap::INVEPT_ALL) == 0
        || caps & (ept_cap::INVVPID_SINGLE | ept_cap::INVVPID_ALL) == 0
    {
        return false;
    }
    controls().is_some()
}

/// Enters VMX operation on this CPU; `false` if VMXON failed.
pub fn init_this_cpu() -> bool {
    hw::init_this_cpu().is_ok()
}

/// The leaf bits of an EPT entry for a GuestSpace mapping: readable
/// (the page-table code's PRESENT bit 0), writable (bit 1) as `write`,
/// executable (bit 2, the USER position) as `execute`, write-back.
/// Intermediate entries (PRESENT | WRITABLE | USER) read as R/W/X.
pub fn leaf_flags(write: bool, execute: bool) -> u64 {
    use crate::arch::paging::flags;
    EPT_MEMORY_WB | if write { flags::WRITABLE } else { 0 } | if execute { flags::USER } else { 0 }
}

/// Runs `body` with the Vcpu's VMCS current; a VMCS that cannot be loaded
/// (VMfail) changes nothing and is reported.
fn with_vmcs<T>(
    guard: &mut KernelGuard,
    vcpu: u64,
    body: impl FnOnce(&mut ActiveVmcs) -> Result<T, VmFail>,
) -> Result<T, VmFail> {
    let mut vmcs = ActiveVmcs::load(guard, vcpu)?;
    body(&mut vmcs)
}

/// The selector, base, limit and access-rights fields of a segment
/// (`None` for GDTR/IDTR's selector and attributes).
fn segment_fields(segment: Segment) -> (Option<(F, F)>, F, F) {
    match segment {
        Segment::Es => (
            Some((F::GuestEsSelector, F::GuestEsAccessRights)),
            F::GuestEsBase,
            F::GuestEsLimit,
        ),
        Segment::Cs => (
            Some((F::GuestCsSelector, F::GuestCsAccessRights)),
            F::GuestCsBase,
            F::GuestCsLimit,
        ),
        Segment::Ss => (
            Some((F::GuestSsSelector, F::GuestSsAccessRights)),
            F::GuestSsBase,
            F::GuestSsLimit,
        ),
        Segment::Ds => (
            Some((F::GuestDsSelector, F::GuestDsAccessRights)),
            F::GuestDsBase,
            F::GuestDsLimit,
        ),
        Segment::Fs => (
            Some((F::GuestFsSelector, F::GuestFsAccessRights)),
            F::GuestFsBase,
            F::GuestFsLimit,
        ),
        Segment::Gs => (
            Some((F::GuestGsSelector, F::GuestGsAccessRights)),
            F::GuestGsBase,
            F::GuestGsLimit,
        ),
        Segment::Ldtr => (
            Some((F::GuestLdtrSelector, F::GuestLdtrAccessRights)),
            F::GuestLdtrBase,
            F::GuestLdtrLimit,
        ),
        Segment::Tr => (
            Some((F::GuestTrSelector, F::GuestTrAccessRights)),
            F::GuestTrBase,
            F::GuestTrLimit,
        ),
        Segment::Gdtr => (None, F::GuestGdtrBase, F::GuestGdtrLimit),
        Segment::Idtr => (None, F::GuestIdtrBase, F::GuestIdtrLimit),
    }
}

fn write_segment_fields(
    vmcs: &mut ActiveVmcs,
    segment: Segment,
    selector: u64,
    base: u64,
    limit: u64,
    attributes: u64,
) -> Result<(), VmFail> {
    let (named, base_field, limit_field) = segment_fields(segment);
    if let Some((selector_field, rights_field)) = named {
        vmcs.write(selector_field, selector)?;
        vmcs.write(rights_field, access_rights(attributes))?;
    }
    vmcs.write(base_field, base)?;
    vmcs.write(limit_field, limit)
}

/// Sets up the VMCS of a newly bound Vcpu: controls, EPT over `ept_root`,
/// VPID, the host-owned CR bits, and the reset state at `CS:IP = 0:0`. A
/// processor that refuses (VMfail) leaves the VMCS so that the first entry
/// fails with `InvalidState`.
pub fn init(guard: &mut KernelGuard, vcpu: u64, ept_root: u64) {
    if hw::init_vmcs(guard, vcpu).is_err() {
        return;
    }
    let Some(c) = controls() else {
        return;
    };
    // The guest's syscall MSRs start at 0 (their reset value), the host's
    // are this kernel's; the guest's are stored at each exit and loaded at
    // each entry, the host's loaded at each exit.
    let host = hw::host_syscall_msrs();
    let s = state(guard, vcpu);
    for (i, &index) in GUEST_SYSCALL_MSRS.iter().enumerate() {
        s.guest_msrs[i] = MsrEntry {
            index,
            reserved: 0,
            value: 0,
        };
        s.host_msrs[i] = MsrEntry {
            index,
            reserved: 0,
            value: host[i],
        };
    }
    let msr_count = GUEST_SYSCALL_MSRS.len() as u64;
    let _ = with_vmcs(guard, vcpu, |v| {
        let (cr0_mask, cr4_mask) = (c.cr0_mask(), c.cr4_mask());
        let fields = [
            (F::VirtualProcessorId, u64::from(GUEST_VPID)),
            (F::EptPointer, ept_root | EPTP_WB_4LEVEL),
            (F::VmcsLinkPointer, u64::MAX),
            (F::PinBasedControls, u64::from(c.pin)),
            (F::ProcBasedControls, u64::from(c.proc1)),
            (F::ProcBasedControls2, u64::from(c.proc2)),
            (F::ExitControls, u64::from(c.exit)),
            (F::EntryControls, u64::from(c.entry)),
            (F::ExceptionBitmap, 0),
            (F::PageFaultErrorMask, 0),
            (F::PageFaultErrorMatch, 0),
            (F::Cr3TargetCount, 0),
            (F::MsrBitmap, hw::msr_bitmap_phys()),
            (F::ExitMsrStoreCount, msr_count),
            (F::ExitMsrStoreAddress, super::guest_msrs_phys(vcpu)),
            (F::ExitMsrLoadCount, msr_count),
            (F::ExitMsrLoadAddress, super::host_msrs_phys(vcpu)),
            (F::EntryMsrLoadCount, msr_count),
            (F::EntryMsrLoadAddress, super::guest_msrs_phys(vcpu)),
            (F::EntryInterruptionInfo, 0),
            (F::Cr0GuestHostMask, cr0_mask),
            (F::Cr4GuestHostMask, cr4_mask),
            (F::Cr0ReadShadow, 0x10),
            (F::Cr4ReadShadow, 0),
            (F::GuestCr0, (0x10 | c.cr0_fixed0) & c.cr0_fixed1),
            (F::GuestCr3, 0),
            (F::GuestCr4, c.cr4_fixed0 & c.cr4_fixed1),
            (F::GuestDr7, 0x400),
            (F::GuestRsp, 0),
            (F::GuestRip, 0),
            (F::GuestRflags, 2),
            (F::GuestPendingDebugExceptions, 0),
            (F::GuestInterruptibility, 0),
            (F::GuestActivityState, 0),
            (F::GuestDebugCtl, 0),
            (F::GuestSysenterCs, 0),
            (F::GuestSysenterEsp, 0),
            (F::GuestSysenterEip, 0),
            (F::GuestPat, RESET_PAT),
            (F::GuestEfer, 0),
        ];
        for (field, value) in fields {
            v.write(field, value)?;
        }
        if c.pin & Pin::VMX_PREEMPTION_TIMER.bits() != 0 {
            v.write(F::GuestPreemptionTimer, preemption_ticks())?;
        }
        for segment in [
            Segment::Es,
            Segment::Ss,
            Segment::Ds,
            Segment::Fs,
            Segment::Gs,
        ] {
            write_segment_fields(v, segment, 0, 0, 0xFFFF, 0x93)?;
        }
        write_segment_fields(v, Segment::Cs, 0, 0, 0xFFFF, 0x9B)?;
        write_segment_fields(v, Segment::Gdtr, 0, 0, 0xFFFF, 0)?;
        write_segment_fields(v, Segment::Idtr, 0, 0, 0xFFFF, 0)?;
        write_segment_fields(v, Segment::Ldtr, 0, 0, 0xFFFF, 0x82)?;
        write_segment_fields(v, Segment::Tr, 0, 0, 0xFFFF, 0x8B)
    });
    let s = state(guard, vcpu);
    s.cr2 = 0;
    s.kernel_gs_base = 0;
}

/// Writes one segment or descriptor-table register.
pub fn write_segment(
    guard: &mut KernelGuard,
    vcpu: u64,
    segment: Segment,
    selector: u64,
    base: u64,
    limit: u64,
    attributes: u64,
) {
    let _ = with_vmcs(guard, vcpu, |v| {
        write_segment_fields(v, segment, selector, base, limit, attributes)
    });
}

/// The register file (in `Reg` order). CR0 and CR4 as the guest sees them.
pub fn read_registers(guard: &mut KernelGuard, vcpu: u64, r: &mut [u64; REGISTER_COUNT]) {
    // The fields read one by one: the state is most of a page.
    let s = state(guard, vcpu);
    r[..15].copy_from_slice(&s.gprs.0);
    r[Reg::Cr2 as usize] = s.cr2;
    let _ = with_vmcs(guard, vcpu, |v| {
        let guest_view = |value: F, shadow: F, mask: F| {
            let mask = v.read(mask);
            (v.read(value) & !mask) | (v.read(shadow) & mask)
        };
        r[Reg::Cr0 as usize] = guest_view(F::GuestCr0, F::Cr0ReadShadow, F::Cr0GuestHostMask);
        r[Reg::Cr4 as usize] = guest_view(F::GuestCr4, F::Cr4ReadShadow, F::Cr4GuestHostMask);
        r[Reg::Rsp as usize] = v.read(F::GuestRsp);
        r[Reg::Rip as usize] = v.read(F::GuestRip);
        r[Reg::Rflags as usize] = v.read(F::GuestRflags);
        r[Reg::Cr3 as usize] = v.read(F::GuestCr3);
        r[Reg::Efer as usize] = v.read(F::GuestEfer);
        Ok(())
    });
}

/// Stores the register file in the register page at `at`.
pub fn store_registers(guard: &mut KernelGuard, vcpu: u64, at: u64) {
    let mut registers = [0; REGISTER_COUNT];
    read_registers(guard, vcpu, &mut registers);
    page(guard, at).registers = registers;
}

/// Loads the register file. RFLAGS keeps bit 1 set and its reserved bits
/// clear; CR0/CR4 get the bits VMX fixes (the guest still reads the values
/// given, from the read shadows); the IA-32e mode guest entry control
/// follows EFER.LMA. Anything else inconsistent makes VM entry fail, which
/// the VMM sees as `InvalidState`.
pub fn write_registers(guard: &mut KernelGuard, vcpu: u64, r: &[u64; REGISTER_COUNT]) {
    let mut gprs = [0u64; 15];
    gprs.copy_from_slice(&r[..15]);
    let s = state(guard, vcpu);
    s.gprs.0 = gprs;
    s.cr2 = r[Reg::Cr2 as usize];
    let Some(c) = controls() else {
        return;
    };
    let _ = with_vmcs(guard, vcpu, |v| {
        let (cr0, cr4, efer) = (
            r[Reg::Cr0 as usize],
            r[Reg::Cr4 as usize],
            r[Reg::Efer as usize],
        );
        let ia32e = u64::from(Entry::IA32E_MODE_GUEST.bits());
        let entry =
            v.read(F::EntryControls) & !ia32e | if efer & EFER_LMA != 0 { ia32e } else { 0 };
        let fields = [
            (F::GuestRsp, r[Reg::Rsp as usize]),
            (F::GuestRip, r[Reg::Rip as usize]),
            (F::GuestRflags, (r[Reg::Rflags as usize] & 0x003F_7FD5) | 2),
            (F::Cr0ReadShadow, cr0),
            (F::GuestCr0, (cr0 | c.cr0_fixed0) & c.cr0_fixed1),
            (F::GuestCr3, r[Reg::Cr3 as usize]),
            (F::Cr4ReadShadow, cr4),
            (F::GuestCr4, (cr4 | c.cr4_fixed0) & c.cr4_fixed1),
            (F::GuestEfer, efer),
            (F::EntryControls, entry),
        ];
        for (field, value) in fields {
            v.write(field, value)?;
        }
        Ok(())
    });
}

/// Loads the registers in `mask` (only general registers, RSP, RIP and
/// RFLAGS: `super::LOAD_ONE_BY_ONE`) from the register file in the
/// register page at `page`: the general registers in the state page, the others
/// in one VMCS access, RFLAGS kept valid as in [`write_registers`].
pub fn write_some(guard: &mut KernelGuard, vcpu: u64, page: u64, mask: u64) {
    let mut bits = mask & ((1 << 15) - 1);
    while bits != 0 {
        let i = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        let value = page_register(guard, page, i);
        state(guard, vcpu).gprs.0[i] = value;
    }
    if mask >> Reg::Rsp as u64 == 0 {
        return;
    }
    let mut vmcs_fields = [
        (Reg::Rsp, F::GuestRsp, 0),
        (Reg::Rip, F::GuestRip, 0),
        (Reg::Rflags, F::GuestRflags, 0),
    ];
    for (reg, _, value) in &mut vmcs_fields {
        if mask & (1 << *reg as u64) != 0 {
            *value = page_register(guard, page, *reg as usize);
        }
    }
    vmcs_fields[2].2 = (vmcs_fields[2].2 & 0x003F_7FD5) | 2;
    let _ = with_vmcs(guard, vcpu, |v| {
        for (reg, field, value) in vmcs_fields {
            if mask & (1 << reg as u64) != 0 {
                v.write(field, value)?;
            }
        }
        Ok(())
    });
}

/// Prepares the VMCS for the next entry: TLB flush, the event to inject,
/// the interrupt window, the exception exits. (The VMX-preemption timer
/// needs nothing: its field keeps the value [`init`] wrote, as no exit
/// control saves the timer into it.)
pub fn prepare_entry(guard: &mut KernelGuard, vcpu: u64, flush_tlb: bool) {
    // The fields read one by one: the state is most of a page.
    let s = state(guard, vcpu);
    let (space_root, reinject, mut pending, window_exit, exceptions) = (
        s.space_root,
        s.reinject,
        s.pending,
        s.window_exit,
        s.exception_bitmap,
    );
    if flush_tlb {
        flush_guest_tlb(space_root);
    }
    let _ = with_vmcs(guard, vcpu, |v| {
        let can_take_interrupt = |v: &ActiveVmcs| {
            v.read(F::GuestRflags) & RFLAGS_IF != 0 && v.read(F::GuestInterruptibility) & 3 == 0
        };
        let event = if reinject & EVENT_VALID != 0 {
            Some((
                reinject & EVENT_ENTRY_BITS,
                reinject >> 32,
                (reinject >> 12) & 0xF,
            ))
        } else if pending != 0 && can_take_interrupt(v) {
            // Type 0: external interrupt.
            let vector = pending & 0xFF;
            pending = 0;
            Some((vector | EVENT_VALID, 0, 0))
        } else {
            None
        };
        // Without an event the error code and length are not looked at.
        let (info, error_code, length) = event.unwrap_or_default();
        v.write(F::EntryInterruptionInfo, info)?;
        if event.is_some() {
            v.write(F::EntryExceptionErrorCode, error_code)?;
            v.write(F::EntryInstructionLength, length)?;
        }
        let window = pending != 0 || window_exit != 0;
        let window_exiting = u64::from(Primary::INTERRUPT_WINDOW_EXITING.bits());
        let proc1 = v.read(F::ProcBasedControls);
        if (proc1 & window_exiting != 0) != window {
            v.write(F::ProcBasedControls, proc1 ^ window_exiting)?;
        }
        v.write(F::ExceptionBitmap, exceptions & 0xFFFF_FFFF)
    });
    let s = state(guard, vcpu);
    s.pending = pending;
    s.reinject = 0;
}

/// The longest a guest runs without an exit: [`GUEST_QUANTUM_US`] in
/// VMX-preemption timer ticks.
fn preemption_ticks() -> u64 {
    let rate = hw::read_msr(VmxMsr::Misc) & 0x1F;
    let tsc = crate::arch::timer::ns_to_tsc(GUEST_QUANTUM_US * 1000);
    (tsc >> rate).clamp(1, u64::from(u32::MAX))
}

/// Drops the guest TLB entries of VPID 1 and of the GuestSpace at
/// `ept_root`, with the narrowest INVVPID/INVEPT type the processor has.
fn flush_guest_tlb(ept_root: u64) {
    let caps = hw::read_msr(VmxMsr::EptVpidCap);
    let _ = if caps & ept_cap::INVEPT_SINGLE != 0 {
        hw::invept(InvalidateEpt::SingleContext, ept_root | EPTP_WB_4LEVEL)
    } else {
        hw::invept(InvalidateEpt::AllContexts, 0)
    };
    let _ = if caps & ept_cap::INVVPID_SINGLE != 0 {
        hw::invvpid(InvalidateVpid::SingleContext, GUEST_VPID)
    } else {
        hw::invvpid(InvalidateVpid::AllContexts, 0)
    };
}

/// Reads the exit from the VMCS: what it means, and any event it
/// interrupted (kept for re-injection).
pub fn decode_exit(guard: &mut KernelGuard, vcpu: u64) -> Outcome {
    if let Some(why) = hw::take_entry_failure() {
        hw::clear_current(guard);
        return Outcome::Exit(ExitRecord::new(Exit::InvalidState, [why.raw(), 1, 0, 0]));
    }
    let gprs = state(guard, vcpu).gprs.0;
    // Still current here unless another CPU took the VMCS since the exit
    // (its thread was stopped here and ran there before this CPU got the
    // lock): the exit is then no longer this CPU's to report, and its
    // record is dropped as for any thread stopped at an exit (`on_exit`:
    // not current here); the guest executes the instruction again. (An
    // event whose delivery that exit interrupted is dropped with it: the
    // other CPU does not read this exit's information.)
    let Some(v) = ActiveVmcs::here(guard, vcpu) else {
        return Outcome::Exit(ExitRecord::new(Exit::InvalidState, [0, 1, 0, 0]));
    };
    // Only the exit information the reason needs is read.
    let (exit_reason, vectoring) = (v.read(F::ExitReason), v.read(F::IdtVectoringInfo));
    let code = exit_reason & 0xFFFF;
    let instruction_exit = matches!(
        code,
        reason::CPUID | reason::RDMSR | reason::WRMSR | reason::HLT | reason::VMCALL | reason::IO
    );
    let (length, rip) = if instruction_exit || vectoring & EVENT_VALID != 0 {
        (v.read(F::ExitInstructionLength), v.read(F::GuestRip))
    } else {
        (0, 0)
    };
    let vectoring_error =
        if vectoring & (EVENT_VALID | EVENT_ERROR_CODE) == EVENT_VALID | EVENT_ERROR_CODE {
            v.read(F::IdtVectoringErrorCode)
        } else {
            0
        };
    let (qualification, info, error_code, gpa) = match code {
        reason::EXCEPTION_OR_NMI => (
            0,
            v.read(F::ExitInterruptionInfo),
            v.read(F::ExitInterruptionErrorCode),
            0,
        ),
        reason::IO => (v.read(F::ExitQualification), 0, 0, 0),
        reason::EPT_VIOLATION => (
            v.read(F::ExitQualification),
            0,
            0,
            v.read(F::GuestPhysicalAddress),
        ),
        _ => (0, 0, 0, 0),
    };
    if exit_reason & reason::ENTRY_FAILURE != 0 {
        // The next entry loads and launches the VMCS anew.
        hw::clear_current(guard);
        return Outcome::Exit(ExitRecord::new(
            Exit::InvalidState,
            [exit_reason & 0xFFFF, 0, 0, 0],
        ));
    }
    if vectoring & EVENT_VALID != 0 {
        state(guard, vcpu).reinject =
            (vectoring & EVENT_ENTRY_BITS) | (length & 0xF) << 12 | vectoring_error << 32;
    }
    let (rax, rcx, rdx) = (
        gprs[Reg::Rax as usize],
        gprs[Reg::Rcx as usize],
        gprs[Reg::Rdx as usize],
    );
    let instruction = |kind: Exit, fields: [u64; 4]| {
        Outcome::Exit(ExitRecord {
            kind,
            fields,
            next_rip: rip.wrapping_add(length),
        })
    };
    match code {
        reason::EXCEPTION_OR_NMI if (info >> 8) & 7 == EVENT_TYPE_NMI => {
            hw::deliver_host_nmi();
            Outcome::Interrupted
        }
        reason::EXCEPTION_OR_NMI => {
            let code = if info & EVENT_ERROR_CODE != 0 {
                error_code & 0xFFFF_FFFF
            } else {
                0
            };
            Outcome::Exit(ExitRecord::new(Exit::Exception, [info & 0xFF, code, 0, 0]))
        }
        reason::EXTERNAL_INTERRUPT
        | reason::INIT
        | reason::IO_SMI
        | reason::OTHER_SMI
        | reason::PREEMPTION_TIMER => Outcome::Interrupted,
        reason::INTERRUPT_WINDOW => Outcome::WindowOpen,
        reason::TRIPLE_FAULT => Outcome::Exit(ExitRecord::new(Exit::Shutdown, [0; 4])),
        reason::CPUID => instruction(Exit::Cpuid, [rax & 0xFFFF_FFFF, rcx & 0xFFFF_FFFF, 0, 0]),
        reason::RDMSR => instruction(Exit::Rdmsr, [rcx & 0xFFFF_FFFF, 0, 0, 0]),
        reason::WRMSR => instruction(
            Exit::Wrmsr,
            [rcx & 0xFFFF_FFFF, (rdx << 32) | (rax & 0xFFFF_FFFF), 0, 0],
        ),
        reason::HLT => instruction(Exit::Hlt, [0; 4]),
        reason::VMCALL => instruction(Exit::Hypercall, [0; 4]),
        reason::IO => {
            let exit = IoExit::decode(qualification);
            let size = u64::from(exit.size);
            let flags = (u64::from(exit.input) * io::IN)
                | (u64::from(exit.string) * io::STRING)
                | (u64::from(exit.rep) * io::REP);
            let mask = (1u64 << (8 * size)) - 1;
            let value = if exit.input { 0 } else { rax & mask };
            instruction(Exit::Io, [u64::from(exit.port), size, flags, value])
        }
        reason::EPT_VIOLATION => {
            let (kind, mapped) = ept_violation(qualification);
            let kind = match kind {
                EptAccess::Read => access::READ,
                EptAccess::Write => access::WRITE,
                EptAccess::Execute => access::EXECUTE,
            };
            Outcome::Exit(ExitRecord::new(
                Exit::MemoryFault,
                [gpa, kind, u64::from(mapped), 0],
            ))
        }
        other => Outcome::Exit(ExitRecord::new(Exit::Unsupported, [other, 0, 0, 0])),
    }
}
