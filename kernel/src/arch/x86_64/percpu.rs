//! Per-CPU data, reached through the GS base (`gs:[0]` holds a pointer to the
//! CPU's own [`PerCpu`]). Each CPU's record lives for the life of the kernel.

extern crate alloc;

use crate::arch::cpu::{self, msr};
use crate::arch::gdt::{self, Gdt, TaskStateSegment};
use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Most CPUs Tarn brings up (the ABI's limit: a `CpuSet` holds that many).
pub const MAX_CPUS: usize = tarn_ipc_schema::MAX_CPUS;

/// Offsets into [`PerCpu`] that user.S reads through `gs`.
pub mod offsets {
    /// `kernel_stack_top`.
    pub const KERNEL_STACK_TOP: usize = 16;
    /// `user_rsp_scratch`.
    pub const USER_RSP_SCRATCH: usize = 24;
    /// `context_end`.
    pub const CONTEXT_END: usize = 32;
}

/// One CPU's kernel data. The first fields are read by assembly (see [`offsets`]).
#[repr(C)]
pub struct PerCpu {
    self_ptr: *const PerCpu,
    /// Dense CPU index (boot CPU = 0), the number users see.
    pub index: u32,
    /// The CPU's x2APIC id.
    pub apic_id: u32,
    /// Top of this CPU's kernel stack.
    pub kernel_stack_top: u64,
    /// The user RSP while the syscall entry switches stacks.
    user_rsp_scratch: AtomicU64,
    /// End of the current thread's saved-register area (the syscall entry
    /// pushes the user frame below it; it is also TSS.RSP0).
    context_end: AtomicU64,
    /// Whether this CPU is executing user code (cleared on every kernel entry
    /// before the kernel lock is taken).
    in_user: AtomicBool,
    /// The user page-table root loaded on this CPU (0 = kernel tables only).
    loaded_root: AtomicU64,
    /// TLB-flush requests received / served (a request is served when equal).
    flush_requested: AtomicU64,
    flush_served: AtomicU64,
    /// With a flush request: leave this address space (load kernel tables).
    drop_root: AtomicU64,
    /// Save this CPU's FPU registers into the area at the argument
    /// (direct-map address).
    fpu_save: RemoteCall,
    /// VMCLEAR the VMCS at the argument (physical address) if it is the
    /// one current on this CPU (`super::vmx`).
    vmclear: RemoteCall,
    timer_interrupts: AtomicU64,
    /// A timer interrupt was taken and the scheduler has not handled it yet
    /// (`crate::sched::on_timer` clears it).
    timer_unhandled: AtomicBool,
    kicks: AtomicU64,
    tss: UnsafeCell<TaskStateSegment>,
    gdt: Gdt,
}

/// A request the kernel-lock holder makes of another CPU and waits for:
/// one argument word, and the requests made and served so far (served when
/// equal). Only the lock holder posts, so one argument slot suffices.
struct RemoteCall {
    requested: AtomicU64,
    served: AtomicU64,
    argument: AtomicU64,
}

impl RemoteCall {
    const fn new() -> Self {
        RemoteCall {
            requested: AtomicU64::new(0),
            served: AtomicU64::new(0),
            argument: AtomicU64::new(0),
        }
    }

    /// Posts a request; returns its number.
    fn post(&self, argument: u64) -> u64 {
        self.argument.store(argument, Ordering::Release);
        self.requested.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Whether request `number` has been served.
    fn served(&self, number: u64) -> bool {
        self.served.load(Ordering::Acquire) >= number
    }

    /// Runs `work` with the argument if a request is pending (on the CPU
    /// asked).
    fn serve(&self, work: fn(u64)) {
        let requested = self.requested.load(Ordering::Acquire);
        if self.served.load(Ordering::Acquire) < requested {
            work(self.argument.load(Ordering::Acquire));
            self.served.store(requested, Ordering::Release);
        }
    }
}

// SAFETY: the raw self pointer is only a back-reference to this record; every
// mutable field is atomic except the TSS, which only its own CPU writes.
unsafe impl Sync for PerCpu {}
// SAFETY: as above; the record is never moved after installation.
unsafe impl Send for PerCpu {}

static CPUS: [AtomicPtr<PerCpu>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];
static ONLINE: AtomicU32 = AtomicU32::new(0);

impl PerCpu {
    /// Counts a timer interrupt (and marks it unhandled).
    pub fn note_timer(&self) {
        self.timer_interrupts.fetch_add(1, Ordering::Relaxed);
        self.timer_unhandled.store(true, Ordering::Relaxed);
    }

    /// Whether a timer interrupt was taken since the last call (the
    /// scheduler's timer work then runs): read and cleared with interrupts
    /// off, so a plain load and store (only this CPU's interrupts set it).
    #[inline(always)]
    pub fn take_unhandled_timer(&self) -> bool {
        let taken = self.timer_unhandled.load(Ordering::Relaxed);
        if taken {
            self.timer_unhandled.store(false, Ordering::Relaxed);
        }
        taken
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

    /// Whether this CPU is running user code right now.
    pub fn in_user(&self) -> bool {
        self.in_user.load(Ordering::Acquire)
    }

    /// Marks entry into (false) or exit to (true) user mode.
    pub fn set_in_user(&self, value: bool) {
        self.in_user.store(value, Ordering::Release);
    }

    /// The user page-table root this CPU has loaded (0 = none).
    pub fn loaded_root(&self) -> u64 {
        self.loaded_root.load(Ordering::Acquire)
    }

    /// Records the user page-table root now loaded.
    pub fn set_loaded_root(&self, root: u64) {
        self.loaded_root.store(root, Ordering::Release);
    }

    /// Points the syscall entry and TSS.RSP0 at the end of the next thread's
    /// saved-register area.
    pub fn set_context_end(&self, end: u64) {
        self.context_end.store(end, Ordering::Relaxed);
        // SAFETY: only this CPU writes its own TSS (this runs on the CPU that
        // owns `self`, with interrupts off); the CPU reads RSP0 only on the
        // next privilege change. The field is unaligned in the packed TSS.
        unsafe {
            core::ptr::addr_of_mut!((*self.tss.get()).rsp)
                .cast::<u64>()
                .write_unaligned(end)
        };
    }

    /// Asks this CPU to flush its TLB; returns the request number to wait for.
    pub fn request_flush(&self) -> u64 {
        self.flush_requested.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Asks this CPU to stop using address space `root` (it loads the kernel
    /// tables if `root` is loaded); returns the request number to wait for.
    pub fn request_drop_root(&self, root: u64) -> u64 {
        self.drop_root.store(root, Ordering::Release);
        self.request_flush()
    }

    /// Whether flush request `number` has been served.
    pub fn flush_served(&self, number: u64) -> bool {
        self.flush_served.load(Ordering::Acquire) >= number
    }

    /// Makes this CPU (another one) save its FPU registers into the
    /// 512-byte area at direct-map address `area`, and waits until it has.
    /// The caller holds the kernel lock, which keeps the area's object alive
    /// and unused by anyone else meanwhile.
    pub fn save_fpu_remotely(&self, area: u64) {
        self.call(&self.fpu_save, area);
    }

    /// Makes this CPU (another one) VMCLEAR the VMCS at `phys` if that is
    /// the one current on it, and waits until it has. The caller holds the
    /// kernel lock, which keeps the Vcpu object alive meanwhile.
    pub fn vmclear_remotely(&self, phys: u64) {
        self.call(&self.vmclear, phys);
    }

    /// Posts `argument` to `call`, interrupts this CPU and waits until it
    /// has served the request (from its IPI handler, its exit from a guest
    /// or its wait for the kernel lock: it cannot hold the lock, which the
    /// caller holds, so it never waits for the caller).
    fn call(&self, call: &RemoteCall, argument: u64) {
        let ticket = call.post(argument);
        super::apic::send_ipi(self.apic_id, super::trap::VECTOR_IPI_FLUSH);
        while !call.served(ticket) {
            cpu::pause();
        }
    }

    /// Serves pending cross-CPU requests (called from the IPI handler and
    /// while waiting for the kernel lock).
    pub fn serve_remote_requests(&self) {
        self.fpu_save.serve(super::user::save_fpu_for_lock_holder);
        self.vmclear.serve(super::vmx::clear_for_lock_holder);
        let requested = self.flush_requested.load(Ordering::Acquire);
        if self.flush_served.load(Ordering::Acquire) < requested {
            let drop = self.drop_root.swap(0, Ordering::AcqRel);
            if drop != 0 && self.loaded_root() == drop {
                super::user::load_kernel_tables(super::paging::kernel_root());
            } else {
                super::cpu::flush_tlb();
            }
            self.flush_served.store(requested, Ordering::Release);
        }
    }
}

/// Creates this CPU's record (GDT, TSS with IST stacks), loads the GDT and
/// TSS, and points GS at the record. Called once per CPU, on that CPU.
pub fn install(index: u32, apic_id: u32, kernel_stack_top: u64) -> &'static PerCpu {
    // From the kernel's frames, as the kernel stacks (48 KiB a CPU: the
    // 8 MiB kernel heap would end before 256 CPUs).
    let ist_stack = || {
        let bytes = gdt::IST_STACK_BYTES as u64;
        let frame = super::frame::alloc_zeroed(bytes / super::paging::PAGE_SIZE)
            .expect("memory for a CPU's IST stacks at boot");
        super::paging::phys_to_virt(frame) + bytes
    };
    let mut tss = gdt::empty_tss();
    // `set_ist` counts from 0; the IDT names IST slots from 1.
    tss.set_ist(usize::from(gdt::IST_NMI) - 1, ist_stack());
    tss.set_ist(usize::from(gdt::IST_DOUBLE_FAULT) - 1, ist_stack());
    tss.set_ist(usize::from(gdt::IST_MACHINE_CHECK) - 1, ist_stack());
    tss.set_rsp(x86::Ring::Ring0, kernel_stack_top);
    let record = Box::leak(Box::new(PerCpu {
        self_ptr: core::ptr::null(),
        index,
        apic_id,
        kernel_stack_top,
        user_rsp_scratch: AtomicU64::new(0),
        context_end: AtomicU64::new(0),
        in_user: AtomicBool::new(false),
        loaded_root: AtomicU64::new(0),
        flush_requested: AtomicU64::new(0),
        flush_served: AtomicU64::new(0),
        drop_root: AtomicU64::new(0),
        fpu_save: RemoteCall::new(),
        vmclear: RemoteCall::new(),
        timer_interrupts: AtomicU64::new(0),
        timer_unhandled: AtomicBool::new(false),
        kicks: AtomicU64::new(0),
        tss: UnsafeCell::new(tss),
        gdt: Gdt::new(core::ptr::null()),
    }));
    record.self_ptr = record as *const PerCpu;
    record.gdt = Gdt::new(record.tss.get());
    let record: &'static PerCpu = record;
    // SAFETY: the GDT and TSS live in a leaked (never freed, never moved) record.
    unsafe { record.gdt.load() };
    // SAFETY: GS_BASE now points at this CPU's record, which `current` relies on.
    unsafe { cpu::wrmsr(msr::IA32_GS_BASE, record as *const PerCpu as u64) };
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
        // (`pure, nomem`: the value is constant on a CPU, so the compiler
        // may read it once per function.)
        core::arch::asm!("mov {}, gs:[0]", out(reg) pointer, options(pure, nomem, nostack, preserves_flags));
        &*pointer
    }
}

/// This CPU's index (below [`MAX_CPUS`]), read once per function.
#[inline(always)]
pub fn index() -> usize {
    let index: u32;
    // SAFETY: as in `current`: gs:[8] is this CPU's `index`, which never
    // changes once installed (`pure, nomem`: the value is constant on a CPU).
    unsafe {
        core::arch::asm!("mov {:e}, gs:[8]", out(reg) index, options(pure, nomem, nostack, preserves_flags));
        // SAFETY: `install` indexed `CPUS` with it, so it is below MAX_CPUS.
        core::hint::assert_unchecked((index as usize) < MAX_CPUS);
    }
    index as usize
}

/// This CPU's index, or 0 before per-CPU data exists (early boot, boot CPU).
pub fn index_or_boot() -> u32 {
    // SAFETY: IA32_GS_BASE exists on every x86-64 CPU.
    if unsafe { cpu::rdmsr(msr::IA32_GS_BASE) } == 0 {
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

const _: () = {
    assert!(core::mem::offset_of!(PerCpu, kernel_stack_top) == offsets::KERNEL_STACK_TOP);
    assert!(core::mem::offset_of!(PerCpu, user_rsp_scratch) == offsets::USER_RSP_SCRATCH);
    assert!(core::mem::offset_of!(PerCpu, context_end) == offsets::CONTEXT_END);
    assert!(core::mem::offset_of!(PerCpu, index) == 8);
};
