//! The virtual-CPU ABI: how a VMM thread runs a guest with `VcpuRun` and
//! what it gets back. One interface for both backends (AMD SVM and Intel
//! VMX); the kernel translates the hardware's exit information into the
//! normalised [`Exit`] record.
//!
//! # Life of a virtual CPU
//!
//! 1. Retype a `GuestSpace` and map frames into it with `FrameMap` (the
//!    address is guest-physical; below [`GUEST_PHYS_END`]).
//! 2. Retype a `Vcpu` and `VcpuBind` it to a thread, the GuestSpace and
//!    its **register page** (MR0, MR1, MR2: a Frame capability with read
//!    and write rights; the VMM maps the frame in its own address space).
//!    It starts like a processor after reset but at `CS:IP = 0:0` (real
//!    mode, flat 64 KiB segments, `CR0 = ET`, `RFLAGS = 2`, no interrupts
//!    pending).
//! 3. That thread sets segments (`VcpuWriteSegment`) and registers (the
//!    register file, below) and calls `VcpuRun` until it wants to stop.
//!
//! # The register page
//!
//! `VcpuRun` exchanges the exit record and the guest's registers through
//! the register page ([`RegisterPage`]), which the kernel reads and writes
//! in place: nothing is copied through message registers. The kernel
//! keeps a copy of the page's capability (a child of the one `VcpuBind`
//! was given), so deleting or revoking that capability, or the memory it
//! came from, ends the kernel's use of the page at once: `VcpuRun` then
//! fails with `ObjectDeleted` (a run in progress too, when it ends),
//! and the kernel never writes the memory again. Moving the capability
//! changes nothing.
//!
//! # The register file
//!
//! [`RegisterPage::registers`], in the order of [`Reg`]. On every return the
//! kernel writes the whole file; on entry it reads all of it when MR0 has
//! [`run_flags::LOAD_REGISTERS`], only the registers named in MR0's load
//! mask ([`run_flags::load`]: bit `32 + Reg`) otherwise, and none when both
//! are clear (the guest continues with its own state). A VMM that changed
//! only RIP after an exit loads RIP alone: the other registers are not
//! read. The kernel keeps the bits the hardware requires (`RFLAGS` bit 1;
//! `EFER.SVME` under SVM). Inconsistent control registers are not an error
//! of the call: the guest then exits at once with [`Exit::InvalidState`].
//!
//! # Exits
//!
//! `VcpuRun` returns with no message words; the exit is in the register
//! page: [`RegisterPage::exit`] = [`Exit`], [`RegisterPage::fields`] = its
//! fields (below: field 0..3), [`RegisterPage::next_rip`] = the guest RIP
//! after the exiting instruction (for exits caused by an instruction the
//! VMM emulates: I/O, CPUID, RDMSR, WRMSR, HLT, hypercall; 0 otherwise; the
//! register file's RIP still points at the instruction, so setting RIP to
//! it completes it), [`RegisterPage::injection_pending`] = 1 while an
//! injected interrupt waits for the guest to accept it. External
//! interrupts, the kernel's timer and budget expiry during guest execution
//! never reach the VMM: the kernel handles them and the thread is
//! preempted like any other.
//!
//! # HLT
//!
//! `HLT` returns an [`Exit::Hlt`] to the VMM (it does not block in the
//! kernel): the VMM owns the guest's timers, so it waits for its next event
//! itself (for instance `Wait` with a timeout), then injects the interrupt
//! and runs the guest again. A waiting VMM thread uses no CPU time.
//!
//! # Interrupts
//!
//! MR1 of `VcpuRun` queues one external interrupt; the kernel delivers it
//! once, as soon as the guest can take it (RFLAGS.IF set, no interrupt
//! shadow). Injecting while one is still queued
//! is `IllegalState`. With [`run_flags::WINDOW_EXIT`] the VMM is told by an
//! [`Exit::InterruptWindow`] exit when the guest can take an interrupt.

/// Guest-physical addresses end here (4-level nested/extended page tables).
pub const GUEST_PHYS_END: u64 = 1 << 47;

/// Words in the register file.
pub const REGISTER_COUNT: usize = 23;

/// The register page (see the module documentation): the frame a Vcpu is
/// bound with, at offset 0. The kernel writes every field at each exit and
/// reads only the registers a `VcpuRun` loads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegisterPage {
    /// The last exit's [`Exit`] number.
    pub exit: u64,
    /// Its fields 0..3 (see [`Exit`]).
    pub fields: [u64; 4],
    /// The RIP after the exiting instruction (0: not an emulated one).
    pub next_rip: u64,
    /// 1 while an injected interrupt waits for the guest to accept it.
    pub injection_pending: u64,
    /// Zero (the register file starts on the next cache line).
    pub reserved: u64,
    /// The register file, in the order of [`Reg`].
    pub registers: [u64; REGISTER_COUNT],
}
// The smallest frame holds it.
const _: () = assert!(core::mem::size_of::<RegisterPage>() <= 4096);

/// `VcpuRun` MR1: the interrupt in bits 0..8 is to be injected.
pub const INJECT_VALID: u64 = 1 << 31;

/// `VcpuRun` MR0 bits.
pub mod run_flags {
    /// Load the whole register file from the register page before entering.
    pub const LOAD_REGISTERS: u64 = 1;
    /// Exit with `InterruptWindow` once the guest can take an interrupt.
    pub const WINDOW_EXIT: u64 = 2;
    /// First bit of the load mask: bit `LOAD_SHIFT + r` loads register
    /// `r` (a [`Reg`](super::Reg)) from the register file before entering.
    pub const LOAD_SHIFT: u32 = 32;
    /// The load mask's bits.
    pub const LOAD_MASK: u64 = ((1 << super::REGISTER_COUNT) - 1) << LOAD_SHIFT;
    /// The load-mask bits for the registers in `mask` (bit `r` = [`Reg`](super::Reg) `r`).
    pub const fn load(mask: u32) -> u64 {
        ((mask as u64) << LOAD_SHIFT) & LOAD_MASK
    }
    /// Every defined flag.
    pub const ALL: u64 = LOAD_REGISTERS | WINDOW_EXIT | LOAD_MASK;
}

/// Positions in the register file.
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Reg {
    Rax = 0,
    Rbx = 1,
    Rcx = 2,
    Rdx = 3,
    Rsi = 4,
    Rdi = 5,
    Rbp = 6,
    R8 = 7,
    R9 = 8,
    R10 = 9,
    R11 = 10,
    R12 = 11,
    R13 = 12,
    R14 = 13,
    R15 = 14,
    Rsp = 15,
    Rip = 16,
    Rflags = 17,
    Cr0 = 18,
    Cr3 = 19,
    Cr4 = 20,
    Efer = 21,
    /// CR2 (the guest's last page-fault address).
    Cr2 = 22,
}
const _: () = assert!(Reg::Cr2 as usize + 1 == REGISTER_COUNT);

/// Segment and descriptor-table registers (`VcpuWriteSegment` MR0).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Segment {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
    Ldtr = 6,
    Tr = 7,
    Gdtr = 8,
    Idtr = 9,
}

impl Segment {
    /// Decodes a segment number.
    pub fn from_u64(value: u64) -> Option<Self> {
        Some(match value {
            0 => Self::Es,
            1 => Self::Cs,
            2 => Self::Ss,
            3 => Self::Ds,
            4 => Self::Fs,
            5 => Self::Gs,
            6 => Self::Ldtr,
            7 => Self::Tr,
            8 => Self::Gdtr,
            9 => Self::Idtr,
            _ => return None,
        })
    }
}

/// Segment attributes in their packed 12-bit form: the descriptor's access
/// byte (type, S, DPL, P) in bits 0..8 and its flags (AVL, L, D/B, G) in
/// bits 8..12 (the layout of an SVM VMCB segment).
pub mod attributes {
    /// Present.
    pub const PRESENT: u64 = 1 << 7;
    /// Code or data (not a system segment).
    pub const CODE_DATA: u64 = 1 << 4;
    /// Type: read/write data, accessed.
    pub const DATA_RW: u64 = 0x3;
    /// Type: execute/read code, accessed.
    pub const CODE_RX: u64 = 0xB;
    /// 64-bit code segment.
    pub const LONG: u64 = 1 << 9;
    /// 32-bit default operand size.
    pub const DEFAULT_32: u64 = 1 << 10;
    /// 4 KiB limit granularity.
    pub const GRANULARITY: u64 = 1 << 11;
    /// A real-mode or 16-bit data segment.
    pub const DATA16: u64 = PRESENT | CODE_DATA | DATA_RW;
    /// A real-mode or 16-bit code segment.
    pub const CODE16: u64 = PRESENT | CODE_DATA | CODE_RX;
    /// A flat 32-bit data segment.
    pub const DATA32: u64 = DATA16 | DEFAULT_32 | GRANULARITY;
    /// A flat 32-bit code segment.
    pub const CODE32: u64 = CODE16 | DEFAULT_32 | GRANULARITY;
    /// A 64-bit code segment.
    pub const CODE64: u64 = CODE16 | LONG | GRANULARITY;
    /// A busy 32/64-bit TSS.
    pub const TSS_BUSY: u64 = PRESENT | 0xB;
    /// An LDT.
    pub const LDT: u64 = PRESENT | 0x2;
}

/// Why `VcpuRun` returned ([`RegisterPage::exit`]), with its fields 0..3
/// ([`RegisterPage::fields`]).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// IN or OUT. Field 0 = port, 1 = size in bytes (1, 2, 4), 2 =
    /// [`io`] flags, 3 = the value written (OUT; masked to the size).
    /// For IN the VMM puts the value in RAX (low `size` bytes).
    Io = 1,
    /// A guest-physical access no mapping allows (MMIO, or memory the guest
    /// does not have). Field 0 = guest-physical address, 1 = [`access`]
    /// bits, 2 = 1 if a mapping exists but forbids the access.
    MemoryFault = 2,
    /// CPUID. Field 0 = leaf (EAX), 1 = subleaf (ECX). The VMM sets
    /// RAX..RDX.
    Cpuid = 3,
    /// RDMSR. Field 0 = MSR (ECX). The VMM sets EDX:EAX (or injects #GP).
    Rdmsr = 4,
    /// WRMSR. Field 0 = MSR, 1 = value (EDX:EAX).
    Wrmsr = 5,
    /// HLT (see the module documentation).
    Hlt = 6,
    /// VMMCALL (SVM) or VMCALL (VMX). The arguments are the guest's
    /// registers (by convention RAX = call number).
    Hypercall = 7,
    /// A guest exception the VMM asked to intercept (`VcpuRun` MR3). Field
    /// 0 = vector, 1 = error code (0 if none).
    Exception = 8,
    /// Triple fault: the guest is in shutdown state and cannot continue
    /// until the VMM resets its state.
    Shutdown = 9,
    /// The hardware refused to enter the guest because its state is
    /// inconsistent. Field 0 = the backend's raw reason (SVM: the exit code;
    /// VMX: the basic exit reason or instruction error).
    InvalidState = 10,
    /// The guest can take an interrupt now ([`run_flags::WINDOW_EXIT`]).
    InterruptWindow = 11,
    /// The `VcpuRun` timeout passed (field 0 = 0), or the calling thread
    /// was suspended (`TcbSuspend`) while inside `VcpuRun` (field 0 = 1): suspension
    /// ends the call, and the thread returns with this exit once it is
    /// resumed, without entering the guest again (the guest's state stays
    /// in the Vcpu; run it again with another `VcpuRun`).
    Timeout = 12,
    /// The guest executed an instruction Tarn does not let guests use
    /// (virtualization instructions, INVD, XSETBV). Field 0 = the backend's raw
    /// exit code. The VMM usually injects #UD or stops the guest.
    Unsupported = 13,
}

impl Exit {
    /// Decodes an exit kind.
    pub fn from_u64(value: u64) -> Option<Self> {
        Some(match value {
            1 => Self::Io,
            2 => Self::MemoryFault,
            3 => Self::Cpuid,
            4 => Self::Rdmsr,
            5 => Self::Wrmsr,
            6 => Self::Hlt,
            7 => Self::Hypercall,
            8 => Self::Exception,
            9 => Self::Shutdown,
            10 => Self::InvalidState,
            11 => Self::InterruptWindow,
            12 => Self::Timeout,
            13 => Self::Unsupported,
            _ => return None,
        })
    }
}

/// [`Exit::Io`] field 2 bits.
pub mod io {
    /// IN (otherwise OUT).
    pub const IN: u64 = 1;
    /// A string instruction (INS/OUTS).
    pub const STRING: u64 = 2;
    /// With a REP prefix.
    pub const REP: u64 = 4;
}

/// [`Exit::MemoryFault`] field 1 bits.
pub mod access {
    /// A read.
    pub const READ: u64 = 1;
    /// A write.
    pub const WRITE: u64 = 2;
    /// An instruction fetch.
    pub const EXECUTE: u64 = 4;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for n in 0..32 {
            if let Some(e) = Exit::from_u64(n) {
                assert_eq!(e as u64, n);
            }
            if let Some(s) = Segment::from_u64(n) {
                assert_eq!(s as u64, n);
            }
        }
        assert!(Exit::from_u64(0).is_none());
        assert_eq!(Segment::from_u64(9), Some(Segment::Idtr));
        assert!(Segment::from_u64(10).is_none());
    }

    #[test]
    fn load_mask_names_registers_above_the_flags() {
        assert_eq!(run_flags::load(1 << Reg::Rip as u32), 1 << 48);
        assert_eq!(run_flags::load(u32::MAX), run_flags::LOAD_MASK);
        assert_eq!(
            run_flags::LOAD_MASK & (run_flags::LOAD_REGISTERS | run_flags::WINDOW_EXIT),
            0
        );
        assert_eq!(
            run_flags::LOAD_MASK >> run_flags::LOAD_SHIFT,
            (1 << REGISTER_COUNT) - 1
        );
    }

    #[test]
    fn attributes_pack_like_descriptors() {
        assert_eq!(attributes::CODE16, 0x9B);
        assert_eq!(attributes::DATA16, 0x93);
        assert_eq!(attributes::CODE32, 0xC9B);
        assert_eq!(attributes::CODE64, 0xA9B);
    }
}
