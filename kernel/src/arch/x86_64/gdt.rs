//! Per-CPU GDT and TSS. Selectors: 0x08 kernel code, 0x10 kernel data,
//! 0x1B user data, 0x23 user code (the order SYSRET expects), 0x28 TSS.
//! The TSS carries the interrupt stacks: IST1 NMI, IST2 double fault, IST3
//! machine check, so those three always run on a known-good stack.

use core::mem::size_of;
use x86::bits64::segmentation::{load_cs, Descriptor64};
use x86::dtables::{lgdt, DescriptorTablePointer};
use x86::segmentation::{
    load_ds, load_es, load_ss, BuildDescriptor, CodeSegmentType, DataSegmentType, Descriptor,
    DescriptorBuilder, GateDescriptorBuilder, SegmentDescriptorBuilder, SegmentSelector,
};
use x86::task::load_tr;
use x86::Ring;

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

/// The 64-bit task-state segment (SDM Vol. 3A, 8.7), the `x86` crate's.
pub use x86::bits64::task::TaskStateSegment;

/// An empty TSS with no I/O bitmap (its offset lies past the limit).
pub const fn empty_tss() -> TaskStateSegment {
    let mut tss = TaskStateSegment::new();
    tss.iomap_base = size_of::<TaskStateSegment>() as u16;
    tss
}
const _: () = assert!(size_of::<TaskStateSegment>() == 104);

/// One CPU's descriptor table.
#[repr(C, align(16))]
pub struct Gdt {
    entries: [u64; 7],
}

/// A flat 64-bit code segment of privilege `dpl`.
fn code_segment(dpl: Ring) -> u64 {
    let descriptor: Descriptor =
        DescriptorBuilder::code_descriptor(0, 0xF_FFFF, CodeSegmentType::ExecuteRead)
            .present()
            .dpl(dpl)
            .l()
            .limit_granularity_4kb()
            .finish();
    descriptor.as_u64()
}

/// A flat data segment of privilege `dpl`.
fn data_segment(dpl: Ring) -> u64 {
    let descriptor: Descriptor =
        DescriptorBuilder::data_descriptor(0, 0xF_FFFF, DataSegmentType::ReadWrite)
            .present()
            .dpl(dpl)
            .db()
            .limit_granularity_4kb()
            .finish();
    descriptor.as_u64()
}

impl Gdt {
    /// A GDT whose TSS descriptor points at `tss`.
    pub fn new(tss: *const TaskStateSegment) -> Self {
        let tss: Descriptor64 = <DescriptorBuilder as GateDescriptorBuilder<u64>>::tss_descriptor(
            tss as u64,
            (size_of::<TaskStateSegment>() - 1) as u64,
            true,
        )
        .present()
        .finish();
        // SAFETY: a 64-bit system descriptor is 16 plain bytes (two GDT
        // slots); reading it as two words copies them.
        let [tss_low, tss_high] = unsafe { core::mem::transmute::<Descriptor64, [u64; 2]>(tss) };
        Self {
            entries: [
                0,
                code_segment(Ring::Ring0),
                data_segment(Ring::Ring0),
                data_segment(Ring::Ring3),
                code_segment(Ring::Ring3),
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
        let pointer = DescriptorTablePointer::new(&self.entries);
        let data = SegmentSelector::from_raw(KERNEL_DATA);
        // SAFETY: the table is valid and 'static; the selectors name its
        // entries (code, data, TSS). GS/FS keep their bases; the caller sets
        // GS_BASE afterwards via the MSR.
        unsafe {
            lgdt(&pointer);
            load_cs(SegmentSelector::from_raw(KERNEL_CODE));
            load_ds(data);
            load_es(data);
            load_ss(data);
            load_tr(SegmentSelector::from_raw(TSS));
        }
    }
}
