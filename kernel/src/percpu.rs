//! Per-CPU data, reached through the GS base (`gs:[0]` holds a pointer to the
//! CPU's own [`PerCpu`]). Each CPU's record lives for the life of the kernel.

extern crate alloc;

use crate::arch::cpu::{self, msr};
use crate::arch::gdt::{self, Gdt, TaskStateSegment};
use alloc::boxed::Box;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Most CPUs Tarn brings up.
pub const MAX_CPUS: usize = 64;

/// One CPU's kernel data.
#[repr(C)]
pub struct PerCpu {
    self_ptr: *const PerCpu,
    /// Dense CPU index (boot CPU = 0), the number users see.
    pub index: u32,
    /// The CPU's x2APIC id.
    pub apic_id: u32,
    /// Top of this CPU's kernel stack.
    pub kernel_stack_top: u64,
    timer_interrupts: AtomicU64,
    kicks: AtomicU64,
    tss: TaskStateSegment,
    gdt: Gdt,
}

// SAFETY: the raw self pointer is only a back-reference to this immutable
// record; every mutable field is atomic.
unsafe impl Sync for PerCpu {}
// SAFETY: as above; the record is never moved after installation.
unsafe impl Send for PerCpu {}

static CPUS: [AtomicPtr<PerCpu>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];
static ONLINE: AtomicU32 = AtomicU32::new(0);

impl PerCpu {
    /// Counts a timer interrupt.
    pub fn note_timer(&self) {
        self.timer_interrupts.fetch_add(1, Ordering::Relaxed);
    }

    /// Timer interrupts taken so far.
    pub fn timer_interrupts(&self) -> u64 {
        self.timer_interrupts.load(Ordering::Acquire)
    }

    /// Counts a kick IPI.
    pub fn note_kick(&self) {
        self.kicks.fetch_add(1, Ordering::Release);
    }

    /// Kick IPIs received so far.
    pub fn kicks(&self) -> u64 {
        self.kicks.load(Ordering::Acquire)
    }
}

/// Creates this CPU's record (GDT, TSS with IST stacks), loads the GDT and
/// TSS, and points GS at the record. Called once per CPU, on that CPU.
pub fn install(index: u32, apic_id: u32, kernel_stack_top: u64) -> &'static PerCpu {
    let ist_stack = || {
        let stack: &'static mut [u8] =
            Box::leak(alloc::vec![0u8; gdt::IST_STACK_BYTES].into_boxed_slice());
        (stack.as_ptr() as u64 + stack.len() as u64) & !0xF
    };
    let mut tss = TaskStateSegment::new();
    tss.ist[usize::from(gdt::IST_NMI) - 1] = ist_stack();
    tss.ist[usize::from(gdt::IST_DOUBLE_FAULT) - 1] = ist_stack();
    tss.ist[usize::from(gdt::IST_MACHINE_CHECK) - 1] = ist_stack();
    tss.rsp[0] = kernel_stack_top;
    let record = Box::leak(Box::new(PerCpu {
        self_ptr: core::ptr::null(),
        index,
        apic_id,
        kernel_stack_top,
        timer_interrupts: AtomicU64::new(0),
        kicks: AtomicU64::new(0),
        tss,
        gdt: Gdt::new(core::ptr::null()),
    }));
    record.self_ptr = record as *const PerCpu;
    record.gdt = Gdt::new(&record.tss);
    let record: &'static PerCpu = record;
    // SAFETY: the GDT and TSS live in a leaked (never freed, never moved) record.
    unsafe { record.gdt.load() };
    // SAFETY: GS_BASE now points at this CPU's record, which `current` relies on.
    unsafe { cpu::wrmsr(msr::GS_BASE, record as *const PerCpu as u64) };
    CPUS[index as usize].store(record as *const PerCpu as *mut PerCpu, Ordering::Release);
    ONLINE.fetch_add(1, Ordering::AcqRel);
    record
}

/// This CPU's record.
#[inline(always)]
pub fn current() -> &'static PerCpu {
    let pointer: *const PerCpu;
    // SAFETY: `install` ran on this CPU before anything calls `current`, so
    // gs:[0] holds the pointer to a leaked, immutable-except-atomics record.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) pointer, options(nostack, readonly, preserves_flags));
        &*pointer
    }
}

/// This CPU's index, or 0 before per-CPU data exists (early boot, boot CPU).
pub fn index_or_boot() -> u32 {
    // SAFETY: IA32_GS_BASE exists on every x86-64 CPU.
    if unsafe { cpu::rdmsr(msr::GS_BASE) } == 0 {
        0
    } else {
        current().index
    }
}

/// The record of CPU `index`, if it is online.
pub fn get(index: u32) -> Option<&'static PerCpu> {
    let pointer = CPUS.get(index as usize)?.load(Ordering::Acquire);
    // SAFETY: non-null entries point at leaked records.
    (!pointer.is_null()).then(|| unsafe { &*pointer })
}

/// Number of CPUs online.
pub fn online() -> u32 {
    ONLINE.load(Ordering::Acquire)
}
