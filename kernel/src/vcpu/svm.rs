//! The SVM backend's policy: how a VMCB is set up, what is intercepted, how
//! events are injected and how exits become [`ExitRecord`]s (AMD APM Vol. 2,
//! chapter 15; exit codes in appendix C). The instructions themselves are
//! in `arch::x86_64::svm`.
//!
//! Intercepted: external interrupts, NMI, SMI and INIT (for the host), the
//! virtual-interrupt window when asked for, CPUID, HLT, every I/O port and
//! every MSR but those the guest owns (its syscall, segment-base and
//! SYSENTER MSRs, switched by VMLOAD/VMSAVE: `arch::cpu::GUEST_OWNED_MSRS`),
//! triple fault (SHUTDOWN), and the
//! instructions a guest must not use (VMRUN, VMMCALL as the hypercall,
//! VMLOAD, VMSAVE, STGI, CLGI, SKINIT, INVD, MONITOR, MWAIT, XSETBV).
//! Physical interrupts are masked by the host's IF only (V_INTR_MASKING),
//! so a guest with interrupts off is still preempted.
//!
//! The VMM's interrupt is a virtual interrupt (V_IRQ with its vector, APM
//! 15.21.4), which the processor delivers once the guest's IF and interrupt
//! shadow allow; EVENTINJ carries only an event the last exit interrupted.
//! An external interrupt through EVENTINJ is taken at VMRUN whatever the
//! guest's state, and QEMU's TCG (10.0, `helper_vmrun`) leaves its vector
//! as the CPU's pending exception after delivering it: the next time its
//! execution loop stops for something other than an interrupt or a #VMEXIT
//! (an icount deadline, a round-robin kick), it delivers the vector again,
//! wherever the guest is, interrupts off or not. Linux then took a second
//! timer interrupt inside its timekeeping update and spun on the seqcount
//! the interrupted update held.
//!
//! QEMU under TCG has no nRIP save: the next RIP of an emulated instruction
//! comes from EXITINFO2 (I/O) or the instruction's fixed length.

use super::{page, page_register, state, ExitRecord, Outcome};
use crate::arch::lock::KernelGuard;
use crate::arch::objmem;
use crate::arch::svm::{self as hw, Vmcb, VmcbWord};
use tarn_ipc_schema::vcpu::{access, io, Exit, Reg, Segment, REGISTER_COUNT};

/// Misc intercepts, first vector (the high half of word 0x008).
mod misc1 {
    pub const INTR: u64 = 1 << 0;
    pub const NMI: u64 = 1 << 1;
    pub const SMI: u64 = 1 << 2;
    pub const INIT: u64 = 1 << 3;
    pub const VINTR: u64 = 1 << 4;
    pub const CPUID: u64 = 1 << 18;
    pub const INVD: u64 = 1 << 22;
    pub const HLT: u64 = 1 << 24;
    pub const IOIO: u64 = 1 << 27;
    pub const MSR: u64 = 1 << 28;
    pub const SHUTDOWN: u64 = 1 << 31;
    pub const ALWAYS: u64 = INTR | NMI | SMI | INIT | CPUID | INVD | HLT | IOIO | MSR | SHUTDOWN;
}

/// Misc intercepts, second vector (word 0x010).
mod misc2 {
    pub const VMRUN: u64 = 1 << 0;
    pub const VMMCALL: u64 = 1 << 1;
    pub const VMLOAD: u64 = 1 << 2;
    pub const VMSAVE: u64 = 1 << 3;
    pub const STGI: u64 = 1 << 4;
    pub const CLGI: u64 = 1 << 5;
    pub const SKINIT: u64 = 1 << 6;
    pub const MONITOR: u64 = 1 << 10;
    pub const MWAIT: u64 = 1 << 11;
    pub const XSETBV: u64 = 1 << 13;
    pub const ALWAYS: u64 =
        VMRUN | VMMCALL | VMLOAD | VMSAVE | STGI | CLGI | SKINIT | MONITOR | MWAIT | XSETBV;
}

/// Interrupt control (word 0x060; V_INTR_VECTOR in bits 32..40).
mod int_ctl {
    pub const V_IRQ: u64 = 1 << 8;
    pub const V_IGN_TPR: u64 = 1 << 20;
    pub const V_INTR_MASKING: u64 = 1 << 24;
    pub const V_INTR_VECTOR_SHIFT: u64 = 32;
}

/// Exit codes (APM appendix C).
mod code {
    pub const EXCEPTION_FIRST: u64 = 0x40;
    pub const EXCEPTION_LAST: u64 = 0x5F;
    pub const INTR: u64 = 0x60;
    pub const INIT: u64 = 0x63;
    pub const VINTR: u64 = 0x64;
    pub const CPUID: u64 = 0x72;
    pub const HLT: u64 = 0x78;
    pub const IOIO: u64 = 0x7B;
    pub const MSR: u64 = 0x7C;
    pub const SHUTDOWN: u64 = 0x7F;
    pub const VMMCALL: u64 = 0x81;
    pub const NPF: u64 = 0x400;
    pub const INVALID: u64 = 0xFFFF_FFFF;
}

/// EVENTINJ / EXITINTINFO valid bit.
const EVENT_VALID: u64 = 1 << 31;
/// The one ASID every guest uses: the guest TLB is flushed whenever another
/// virtual CPU ran on this CPU in between (`super::enter_guest`).
const GUEST_ASID: u64 = 1;
/// TLB_CONTROL: flush the whole TLB on VMRUN.
const TLB_FLUSH_ALL: u64 = 1;
/// PAT after reset.
const RESET_PAT: u64 = 0x0007_0406_0007_0406;

fn vmcb(guard: &mut KernelGuard, vcpu: u64) -> &mut Vmcb {
    objmem::object::<Vmcb>(guard, vcpu)
}

fn segment_word(segment: Segment) -> VmcbWord {
    match segment {
        Segment::Es => VmcbWord::Es,
        Segment::Cs => VmcbWord::Cs,
        Segment::Ss => VmcbWord::Ss,
        Segment::Ds => VmcbWord::Ds,
        Segment::Fs => VmcbWord::Fs,
        Segment::Gs => VmcbWord::Gs,
        Segment::Ldtr => VmcbWord::Ldtr,
        Segment::Tr => VmcbWord::Tr,
        Segment::Gdtr => VmcbWord::Gdtr,
        Segment::Idtr => VmcbWord::Idtr,
    }
}

fn pack_segment(selector: u64, attributes: u64, limit: u64) -> u64 {
    selector | attributes << 16 | limit << 32
}

/// Sets up the VMCB of a newly bound Vcpu: intercepts, permission maps,
/// nested paging over `npt_root`, and the reset state at `CS:IP = 0:0`.
pub fn init(guard: &mut KernelGuard, vcpu: u64, npt_root: u64) {
    let v = vmcb(guard, vcpu);
    *v = Vmcb::zeroed();
    v.set(VmcbWord::InterceptExceptionsMisc1, misc1::ALWAYS << 32);
    v.set(VmcbWord::InterceptMisc2, misc2::ALWAYS);
    v.set(VmcbWord::IopmBase, hw::iopm_phys());
    v.set(VmcbWord::MsrpmBase, hw::msrpm_phys());
    v.set(VmcbWord::AsidTlbControl, GUEST_ASID | TLB_FLUSH_ALL << 32);
    v.set(VmcbWord::InterruptControl, int_ctl::V_INTR_MASKING);
    v.set(VmcbWord::NestedControl, 1);
    v.set(VmcbWord::NestedCr3, npt_root);
    for word in [
        VmcbWord::Es,
        VmcbWord::Ss,
        VmcbWord::Ds,
        VmcbWord::Fs,
        VmcbWord::Gs,
    ] {
        v.set(word, pack_segment(0, 0x93, 0xFFFF));
    }
    v.set(VmcbWord::Cs, pack_segment(0, 0x9B, 0xFFFF));
    v.set(VmcbWord::Gdtr, pack_segment(0, 0, 0xFFFF));
    v.set(VmcbWord::Idtr, pack_segment(0, 0, 0xFFFF));
    v.set(VmcbWord::Ldtr, pack_segment(0, 0x82, 0xFFFF));
    v.set(VmcbWord::Tr, pack_segment(0, 0x8B, 0xFFFF));
    v.set(VmcbWord::Efer, hw::EFER_SVME);
    v.set(VmcbWord::Cr0, 0x10);
    v.set(VmcbWord::Dr6, 0xFFFF_0FF0);
    v.set(VmcbWord::Dr7, 0x400);
    v.set(VmcbWord::Rflags, 2);
    v.set(VmcbWord::GuestPat, RESET_PAT);
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
    let (selector, attributes) = match segment {
        Segment::Gdtr | Segment::Idtr => (0, 0),
        _ => (selector, attributes),
    };
    let word = segment_word(segment);
    let v = vmcb(guard, vcpu);
    v.set(word, pack_segment(selector, attributes, limit));
    v.set_next(word, base);
}

/// The register file (in `Reg` order).
pub fn read_registers(guard: &mut KernelGuard, vcpu: u64, r: &mut [u64; REGISTER_COUNT]) {
    r[..15].copy_from_slice(&state(guard, vcpu).gprs.0);
    let v = vmcb(guard, vcpu);
    r[Reg::Rax as usize] = v.get(VmcbWord::Rax);
    r[Reg::Rsp as usize] = v.get(VmcbWord::Rsp);
    r[Reg::Rip as usize] = v.get(VmcbWord::Rip);
    r[Reg::Rflags as usize] = v.get(VmcbWord::Rflags);
    r[Reg::Cr0 as usize] = v.get(VmcbWord::Cr0);
    r[Reg::Cr3 as usize] = v.get(VmcbWord::Cr3);
    r[Reg::Cr4 as usize] = v.get(VmcbWord::Cr4);
    r[Reg::Efer as usize] = v.get(VmcbWord::Efer) & !hw::EFER_SVME;
    r[Reg::Cr2 as usize] = v.get(VmcbWord::Cr2);
}

/// Stores the register file in the register page at `at`, word by word
/// from the state page and the VMCB (no intermediate copy).
#[inline(always)]
pub fn store_registers(guard: &mut KernelGuard, vcpu: u64, at: u64) {
    for r in 1..15 {
        let value = state(guard, vcpu).gprs.0[r];
        page(guard, at).registers[r] = value;
    }
    for (reg, word) in [
        (Reg::Rax, VmcbWord::Rax),
        (Reg::Rsp, VmcbWord::Rsp),
        (Reg::Rip, VmcbWord::Rip),
        (Reg::Rflags, VmcbWord::Rflags),
        (Reg::Cr0, VmcbWord::Cr0),
        (Reg::Cr3, VmcbWord::Cr3),
        (Reg::Cr4, VmcbWord::Cr4),
        (Reg::Efer, VmcbWord::Efer),
        (Reg::Cr2, VmcbWord::Cr2),
    ] {
        let mut value = vmcb(guard, vcpu).get(word);
        if reg == Reg::Efer {
            value &= !hw::EFER_SVME;
        }
        page(guard, at).registers[reg as usize] = value;
    }
}

/// Loads the register file. RFLAGS keeps bit 1 set and its reserved bits
/// clear, EFER keeps SVME (the hardware requires both); anything else
/// inconsistent makes VMRUN fail, which the VMM sees as `InvalidState`.
pub fn write_registers(guard: &mut KernelGuard, vcpu: u64, r: &[u64; REGISTER_COUNT]) {
    let mut gprs = [0u64; 15];
    gprs.copy_from_slice(&r[..15]);
    state(guard, vcpu).gprs.0 = gprs;
    let v = vmcb(guard, vcpu);
    v.set(VmcbWord::Rax, r[Reg::Rax as usize]);
    v.set(VmcbWord::Rsp, r[Reg::Rsp as usize]);
    v.set(VmcbWord::Rip, r[Reg::Rip as usize]);
    v.set(
        VmcbWord::Rflags,
        (r[Reg::Rflags as usize] & 0x003F_7FD5) | 2,
    );
    v.set(VmcbWord::Cr0, r[Reg::Cr0 as usize]);
    v.set(VmcbWord::Cr3, r[Reg::Cr3 as usize]);
    v.set(VmcbWord::Cr4, r[Reg::Cr4 as usize]);
    v.set(VmcbWord::Efer, r[Reg::Efer as usize] | hw::EFER_SVME);
    v.set(VmcbWord::Cr2, r[Reg::Cr2 as usize]);
}

/// Loads the registers in `mask` (only general registers, RSP, RIP and
/// RFLAGS: `super::LOAD_ONE_BY_ONE`) from the register file in the
/// register page at `page`, with RFLAGS kept valid as in [`write_registers`].
#[inline(always)]
pub fn write_some(guard: &mut KernelGuard, vcpu: u64, page: u64, mask: u64) {
    // One pass over the named registers (usually RIP alone, or RAX and RIP).
    let mut bits = mask;
    while bits != 0 {
        let r = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        let value = page_register(guard, page, r);
        let word = match r {
            r if r == Reg::Rax as usize => VmcbWord::Rax,
            r if r == Reg::Rsp as usize => VmcbWord::Rsp,
            r if r == Reg::Rip as usize => VmcbWord::Rip,
            r if r == Reg::Rflags as usize => {
                vmcb(guard, vcpu).set(VmcbWord::Rflags, (value & 0x003F_7FD5) | 2);
                continue;
            }
            r if r < 15 => {
                state(guard, vcpu).gprs.0[r] = value;
                continue;
            }
            // (Not a register this load takes: `super::LOAD_ONE_BY_ONE`.)
            _ => continue,
        };
        vmcb(guard, vcpu).set(word, value);
    }
}

/// Prepares the VMCB for the next VMRUN: TLB flush, the event to
/// re-inject, the pending interrupt (a virtual interrupt: the processor
/// takes it when the guest can, and `decode_exit` sees it taken), the
/// interrupt window, the exception intercepts.
pub fn prepare_entry(guard: &mut KernelGuard, vcpu: u64, flush_tlb: bool) {
    let s = *state(guard, vcpu);
    let v = vmcb(guard, vcpu);
    let event = if s.reinject & EVENT_VALID != 0 {
        s.reinject
    } else {
        0
    };
    let window = s.window_exit != 0;
    v.set(VmcbWord::EventInjection, event);
    v.set(
        VmcbWord::AsidTlbControl,
        GUEST_ASID | if flush_tlb { TLB_FLUSH_ALL << 32 } else { 0 },
    );
    let misc = misc1::ALWAYS | if window { misc1::VINTR } else { 0 };
    v.set(
        VmcbWord::InterceptExceptionsMisc1,
        misc << 32 | (s.exception_bitmap & 0xFFFF_FFFF),
    );
    // With the VINTR intercept (the VMM's window) the processor exits
    // instead of taking the interrupt; it stays pending.
    let virtual_interrupt = if s.pending != 0 {
        int_ctl::V_IRQ | int_ctl::V_IGN_TPR | (s.pending & 0xFF) << int_ctl::V_INTR_VECTOR_SHIFT
    } else if window {
        int_ctl::V_IRQ | int_ctl::V_IGN_TPR
    } else {
        0
    };
    v.set(
        VmcbWord::InterruptControl,
        int_ctl::V_INTR_MASKING | virtual_interrupt,
    );
    v.set(VmcbWord::CleanBits, 0);
    state(guard, vcpu).reinject = 0;
}

/// Reads the exit from the VMCB: what it means, and any event it
/// interrupted (kept for re-injection).
pub fn decode_exit(guard: &mut KernelGuard, vcpu: u64) -> Outcome {
    let v = *vmcb(guard, vcpu);
    let interrupted = v.get(VmcbWord::ExitInterruptInfo);
    if interrupted & EVENT_VALID != 0 {
        state(guard, vcpu).reinject = interrupted;
    }
    // The processor clears V_IRQ when it takes the virtual interrupt (if
    // this exit interrupted its delivery, it is in `reinject` now).
    if v.get(VmcbWord::InterruptControl) & int_ctl::V_IRQ == 0 {
        state(guard, vcpu).pending = 0;
    }
    let exit_code = v.get(VmcbWord::ExitCode);
    let info1 = v.get(VmcbWord::ExitInfo1);
    let info2 = v.get(VmcbWord::ExitInfo2);
    let rip = v.get(VmcbWord::Rip);
    let rax = v.get(VmcbWord::Rax);
    let gprs = state(guard, vcpu).gprs.0;
    let (rcx, rdx) = (gprs[Reg::Rcx as usize], gprs[Reg::Rdx as usize]);
    // Without nRIP save the next RIP is the fixed instruction length on.
    let next = |length: u64| match v.get(VmcbWord::NextRip) {
        0 => rip.wrapping_add(length),
        next => next,
    };
    let instruction = |kind: Exit, fields: [u64; 4], length: u64| {
        Outcome::Exit(ExitRecord {
            kind,
            fields,
            next_rip: next(length),
        })
    };
    if exit_code & 0xFFFF_FFFF == code::INVALID {
        return Outcome::Exit(ExitRecord::new(Exit::InvalidState, [exit_code, 0, 0, 0]));
    }
    match exit_code {
        code::INTR..=code::INIT => Outcome::Interrupted,
        code::VINTR => Outcome::WindowOpen,
        code::EXCEPTION_FIRST..=code::EXCEPTION_LAST => Outcome::Exit(ExitRecord::new(
            Exit::Exception,
            [exit_code - code::EXCEPTION_FIRST, info1 & 0xFFFF_FFFF, 0, 0],
        )),
        code::CPUID => instruction(Exit::Cpuid, [rax & 0xFFFF_FFFF, rcx & 0xFFFF_FFFF, 0, 0], 2),
        code::MSR if info1 == 0 => instruction(Exit::Rdmsr, [rcx & 0xFFFF_FFFF, 0, 0, 0], 2),
        code::MSR => instruction(
            Exit::Wrmsr,
            [rcx & 0xFFFF_FFFF, (rdx << 32) | (rax & 0xFFFF_FFFF), 0, 0],
            2,
        ),
        code::HLT => instruction(Exit::Hlt, [0; 4], 1),
        code::VMMCALL => instruction(Exit::Hypercall, [0; 4], 3),
        code::IOIO => {
            let size = if info1 & 0x10 != 0 {
                1
            } else if info1 & 0x20 != 0 {
                2
            } else {
                4
            };
            let input = info1 & 1 != 0;
            let flags = (u64::from(input) * io::IN)
                | (((info1 >> 2) & 1) * io::STRING)
                | (((info1 >> 3) & 1) * io::REP);
            let mask = (1u64 << (8 * size)) - 1;
            let value = if input { 0 } else { rax & mask };
            Outcome::Exit(ExitRecord {
                kind: Exit::Io,
                fields: [(info1 >> 16) & 0xFFFF, size, flags, value],
                next_rip: info2,
            })
        }
        code::SHUTDOWN => Outcome::Exit(ExitRecord::new(Exit::Shutdown, [0; 4])),
        code::NPF => {
            let kind = if info1 & 0x10 != 0 {
                access::EXECUTE
            } else if info1 & 0x2 != 0 {
                access::WRITE
            } else {
                access::READ
            };
            Outcome::Exit(ExitRecord::new(
                Exit::MemoryFault,
                [info2, kind, info1 & 1, 0],
            ))
        }
        other => Outcome::Exit(ExitRecord::new(Exit::Unsupported, [other, 0, 0, 0])),
    }
}
