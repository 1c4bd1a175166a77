//! Per-CPU GDT and TSS. Selectors: 0x08 kernel code, 0x10 kernel data,
//! 0x1B user data, 0x23 user code (the order SYSRET expects), 0x28 TSS.
//! The TSS carries the interrupt stacks: IST1 NMI, IST2 double fault, IST3
//! machine check, so those three always run on a known-good stack.

use core::arch::asm;
use core::mem::size_of;

/// Kernel code selector.
pub const KERNEL_CODE: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DATA: u16 = 0x10;
/// TSS selector.
pub const TSS: u16 = 0x28;

/// IST slot (1-based, as the IDT encodes it) for NMI.
pub const IST_NMI: u8 = 1;
/// IST slot for double fault.
pub const IST_DOUBLE_FAULT: u8 = 2;
/// IST slot for machine check.
pub const IST_MACHINE_CHECK: u8 = 3;

/// Bytes of each interrupt stack.
pub const IST_STACK_BYTES: usize = 16 * 1024;

/// The 64-bit task-state segment (SDM Vol. 3A, 8.7).
#[repr(C, packed(4))]
#[derive(Clone, Copy)]
pub struct TaskStateSegment {
    reserved0: u32,
    /// Stack pointers for privilege levels 0..2 (RSP0 is the kernel entry stack).
    pub rsp: [u64; 3],
    reserved1: u64,
    /// Interrupt stack table, IST1..IST7.
    pub ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    /// Offset of the I/O permission bitmap (beyond the limit: no bitmap).
    pub iomap_base: u16,
}
const _: () = assert!(size_of::<TaskStateSegment>() == 104);

impl TaskStateSegment {
    /// An empty TSS with no I/O bitmap.
    pub const fn new() -> Self {
        Self {
            reserved0: 0,
            rsp: [0; 3],
            reserved1: 0,
            ist: [0; 7],
            reserved2: 0,
            reserved3: 0,
            iomap_base: size_of::<TaskStateSegment>() as u16,
        }
    }
}

impl Default for TaskStateSegment {
    fn default() -> Self {
        Self::new()
    }
}

/// One CPU's descriptor table.
#[repr(C, align(16))]
pub struct Gdt {
    entries: [u64; 7],
}

impl Gdt {
    /// A GDT whose TSS descriptor points at `tss`.
    pub fn new(tss: *const TaskStateSegment) -> Self {
        let base = tss as u64;
        let limit = (size_of::<TaskStateSegment>() - 1) as u64;
        let tss_low = (limit & 0xFFFF)
            | ((base & 0xFF_FFFF) << 16)
            | (0x89 << 40) // present, 64-bit TSS (available)
            | (((limit >> 16) & 0xF) << 48)
            | (((base >> 24) & 0xFF) << 56);
        let tss_high = base >> 32;
        Self {
            entries: [
                0,
                0x00AF_9A00_0000_FFFF, // kernel code, 64-bit
                0x00CF_9200_0000_FFFF, // kernel data
                0x00CF_F200_0000_FFFF, // user data, DPL 3
                0x00AF_FA00_0000_FFFF, // user code, 64-bit, DPL 3
                tss_low,
                tss_high,
            ],
        }
    }

    /// Loads this GDT, reloads the segment registers and the task register.
    ///
    /// # Safety
    /// `self` and the TSS it points at must stay alive and unmoved for as long
    /// as this CPU runs (they are per-CPU data that is never freed).
    pub unsafe fn load(&'static self) {
        #[repr(C, packed)]
        struct Pointer {
            limit: u16,
            base: u64,
        }
        let pointer = Pointer {
            limit: (size_of::<Self>() - 1) as u16,
            base: self as *const Self as u64,
        };
        // SAFETY: the table is valid and 'static; the selectors name its entries.
        // GS/FS are zeroed here; the caller sets GS_BASE afterwards via the MSR.
        unsafe {
            asm!(
                "lgdt [{ptr}]",
                "push {code}",
                "lea {tmp}, [rip + 2f]",
                "push {tmp}",
                "retfq",
                "2:",
                "mov ds, {data:x}",
                "mov es, {data:x}",
                "mov ss, {data:x}",
                "ltr {tss:x}",
                ptr = in(reg) &pointer,
                code = in(reg) u64::from(KERNEL_CODE),
                data = in(reg) u64::from(KERNEL_DATA),
                tss = in(reg) u64::from(TSS),
                tmp = out(reg) _,
            );
        }
    }
}
