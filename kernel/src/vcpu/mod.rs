//! Virtual CPUs: the `Vcpu` object, its binding to a thread and a
//! `GuestSpace`, `VcpuRun` and the normalised exit record (the ABI is in
//! `tarn_ipc_schema::vcpu`). The backend is chosen once at boot by CPUID:
//! SVM (AMD, nested paging; `svm`) or VMX (Intel, EPT, VPID, unrestricted
//! guest; `vmx`). Without either `VcpuBind` answers `NotSupported`.
//!
//! A thread in `VcpuRun` is an ordinary runnable thread to both schedulers:
//! `sched::enter` sends it into the guest instead of user mode, and any exit
//! the kernel handles itself (an external interrupt: timer, IPI, device)
//! goes through the normal scheduling path, which re-enters the guest if the
//! thread is still the one to run. Every other exit completes the
//! `VcpuRun` call with the exit record, and the thread returns to user mode.
//! Both ways a system VMM thread skips the scheduling pass when the pass
//! would only choose it again: `VcpuRun` through the fastpath entry
//! ([`run_fast`]) enters the guest at once, and an exit for the VMM
//! returns to it directly (`continues_without_pass`).
//!
//! A Vcpu object (16 KiB) holds: page 0 the VMCB or VMCS, page 1 [`VcpuState`]
//! (refcount header, binding, queued events, the guest's general registers,
//! the slots keeping the GuestSpace and the register page alive), page 2
//! the guest's FPU state (lazily switched like a thread's, see
//! `sched::claim_fpu_for_guest`).
//!
//! The exit record and the register file are exchanged through the
//! register page (`tarn_ipc_schema::vcpu::RegisterPage`), a frame the VMM
//! maps and the kernel reads and writes through the direct map: the
//! kernel holds it through a copy of its capability in the Vcpu's page
//! slot, and `VcpuState::page` caches its address beside that slot
//! (cleared with it, `page_cap_deleted`).

pub mod svm;
pub mod vmx;

use crate::arch::cpu::{self, GuestDebugRegisters, GUEST_SYSCALL_MSRS};
use crate::arch::lock::{BklCell, KernelGuard};
use crate::arch::objmem::{self, KernelObject};
use crate::arch::paging::PAGE_SIZE;
use crate::arch::percpu::{self, MAX_CPUS};
use crate::arch::timer;
use crate::invariants::{ensure, Live, Verdict};
use crate::object::tcb;
use crate::object::{insert_cap, read_cap, Cap, ObjectHeader, Slot};
use crate::sched;
use crate::syscall::Caller;
use core::sync::atomic::{AtomicU8, Ordering};
use tarn_ipc_schema::invocation::Invocation;
use tarn_ipc_schema::vcpu::{
    run_flags, Exit, Reg, RegisterPage, Segment, GUEST_PHYS_END, INJECT_VALID, REGISTER_COUNT,
};
use tarn_ipc_schema::{Error, MessageInfo, ObjectType, Rights};

/// The hardware that runs guests on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// None Tarn drives.
    None = 0,
    /// AMD SVM with nested paging.
    Svm = 1,
    /// Intel VMX with EPT, VPID and unrestricted guest.
    Vmx = 2,
}

static BACKEND: AtomicU8 = AtomicU8::new(Backend::None as u8);

/// The backend chosen at boot.
pub fn backend() -> Backend {
    match BACKEND.load(Ordering::Relaxed) {
        1 => Backend::Svm,
        2 => Backend::Vmx,
        _ => Backend::None,
    }
}

/// Chooses the backend (boot CPU, once; SVM's per-CPU host pages for the
/// machine's `cpus` CPUs) and enables it on the boot CPU.
pub fn init(features: &cpu::Features, cpus: usize) {
    if features.svm && crate::arch::svm::supported() && crate::arch::svm::reserve_host_areas(cpus) {
        BACKEND.store(Backend::Svm as u8, Ordering::Relaxed);
    } else if features.vmx && vmx::supported() {
        BACKEND.store(Backend::Vmx as u8, Ordering::Relaxed);
    }
    if !init_this_cpu() {
        crate::kprintln!("tarn: VMXON failed on the boot CPU; no virtual CPUs");
        BACKEND.store(Backend::None as u8, Ordering::Relaxed);
    }
}

/// Enables the chosen backend on this CPU; `false` if the processor
/// refused (VMXON failed: guests entered on this CPU then exit with
/// `InvalidState`).
pub fn init_this_cpu() -> bool {
    match backend() {
        Backend::Svm => {
            crate::arch::svm::init_this_cpu();
            true
        }
        Backend::Vmx => vmx::init_this_cpu(),
        Backend::None => true,
    }
}

/// Byte offset of [`VcpuState`] in a Vcpu object.
const STATE_OFFSET: u64 = PAGE_SIZE;
/// Byte offset of the guest FPU area in a Vcpu object.
const FPU_OFFSET: u64 = 2 * PAGE_SIZE;

/// The guest's general registers the hardware does not save, in the order
/// of `tarn_ipc_schema::vcpu::Reg` (RAX's slot unused under SVM, where RAX
/// is in the VMCB). svm.S and vmx.S depend on this layout.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GuestGprs(pub [u64; 15]);

/// The software half of a virtual CPU (page 1 of the object).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct VcpuState {
    /// Refcount header.
    pub header: ObjectHeader,
    /// The bound thread (0 = unbound).
    pub tcb: u64,
    /// Root of the bound GuestSpace's page tables.
    pub space_root: u64,
    /// An interrupt queued by the VMM (`INJECT_VALID | vector`, 0 = none).
    pub pending: u64,
    /// An event whose delivery the last exit interrupted (hardware format,
    /// re-injected on the next entry; 0 = none).
    pub reinject: u64,
    /// The VMM asked for an interrupt-window exit.
    pub window_exit: u64,
    /// Exceptions the VMM intercepts (bit per vector).
    pub exception_bitmap: u64,
    /// The thread was suspended inside the `VcpuRun` in progress, which
    /// therefore ends at the next entry instead of entering the guest.
    pub suspended: u64,
    /// The TSC deadline of the `VcpuRun` in progress (0 = none). It is on
    /// no timeout list: `enter_guest` ends the call once it has passed and
    /// arms the one-shot timer for it (`sched::timeout_added`), so neither
    /// an exit nor the next `VcpuRun` takes anything off a list or puts it
    /// back.
    pub deadline: u64,
    /// CPU index + 1 it last ran on (0 = never).
    pub last_cpu: u64,
    /// The guest-TLB epoch it last ran with.
    pub tlb_epoch: u64,
    /// Guest general registers.
    pub gprs: GuestGprs,
    /// Guest CR2 (VMX: not in the VMCS; vmx.S switches it).
    pub cr2: u64,
    /// Guest IA32_KERNEL_GS_BASE (VMX: switched by vmx.S).
    pub kernel_gs_base: u64,
    /// Keeps the bound GuestSpace alive.
    pub space_slot: Slot,
    /// Keeps the register page alive (a copy of the Frame capability
    /// `VcpuBind` was given).
    pub page_slot: Slot,
    /// Physical address of the register page (0 = none: never bound, or
    /// its capability was deleted; cleared with `page_slot`'s capability).
    pub page: u64,
    /// VMX: the guest's syscall MSRs (`arch::cpu::GUEST_SYSCALL_MSRS`), the
    /// VM-exit MSR-store list and the VM-entry MSR-load list both.
    pub guest_msrs: [MsrEntry; GUEST_SYSCALL_MSRS.len()],
    /// VMX: the host's values of the same MSRs, the VM-exit MSR-load list.
    pub host_msrs: [MsrEntry; GUEST_SYSCALL_MSRS.len()],
    /// The guest's DR0-DR3 and DR6, saved at each exit and loaded again
    /// when another Vcpu ran on the CPU in between (see [`enter_guest`]).
    pub debug: GuestDebugRegisters,
}
impl KernelObject for VcpuState {}

/// One entry of a VMX MSR list (SDM 24.7.2): the MSR, 32 reserved bits,
/// its value; the processor reads and writes the lists by physical address.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct MsrEntry {
    /// The MSR's number.
    pub index: u32,
    /// Zero.
    pub reserved: u32,
    /// Its value.
    pub value: u64,
}
const _: () = assert!(core::mem::size_of::<VcpuState>() <= PAGE_SIZE as usize);
// vmx.S finds CR2 and KERNEL_GS_BASE right after the 15 general registers.
const _: () = assert!(
    core::mem::offset_of!(VcpuState, cr2) == core::mem::offset_of!(VcpuState, gprs) + 120
        && core::mem::offset_of!(VcpuState, kernel_gs_base)
            == core::mem::offset_of!(VcpuState, gprs) + 128
);

/// One exit, normalised for the VMM.
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    /// The kind.
    pub kind: Exit,
    /// Fields 0..3.
    pub fields: [u64; 4],
    /// The RIP after the exiting instruction (0 = not an emulated instruction).
    pub next_rip: u64,
}

impl ExitRecord {
    /// A record with fields and no next RIP.
    pub fn new(kind: Exit, fields: [u64; 4]) -> Self {
        ExitRecord {
            kind,
            fields,
            next_rip: 0,
        }
    }
}

/// What a hardware exit means.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// An external interrupt (or NMI, INIT, SMI) for the host.
    Interrupted,
    /// The interrupt window the kernel opened is open.
    WindowOpen,
    /// An exit for the VMM.
    Exit(ExitRecord),
}

/// Per CPU: the Vcpu in the guest right now, and the last one that ran here
/// (its guest-TLB entries may still be cached).
#[derive(Clone, Copy)]
struct CpuGuest {
    running: u64,
    last_vcpu: u64,
}

struct Guests {
    cpus: [CpuGuest; MAX_CPUS],
    /// Bumped on every unmap from a GuestSpace: each Vcpu flushes its guest
    /// TLB before it next runs.
    tlb_epoch: u64,
}

static GUESTS: BklCell<Guests> = BklCell::new(Guests {
    cpus: [CpuGuest {
        running: 0,
        last_vcpu: 0,
    }; MAX_CPUS],
    tlb_epoch: 0,
});

/// The register page as the kernel sees it.
struct Page(RegisterPage);
impl KernelObject for Page {}

/// The register page at `page`.
#[inline(always)]
fn page(guard: &mut KernelGuard, page: u64) -> &mut RegisterPage {
    &mut objmem::object::<Page>(guard, page).0
}

/// The [`VcpuState`] of the Vcpu at `vcpu`.
pub fn state(guard: &mut KernelGuard, vcpu: u64) -> &mut VcpuState {
    objmem::object::<VcpuState>(guard, vcpu + STATE_OFFSET)
}

/// The refcount header of the Vcpu at `vcpu`.
pub const fn header(vcpu: u64) -> u64 {
    vcpu + STATE_OFFSET
}

/// Physical address of the guest's MSR list (see [`VcpuState::guest_msrs`]).
pub fn guest_msrs_phys(vcpu: u64) -> u64 {
    vcpu + STATE_OFFSET + core::mem::offset_of!(VcpuState, guest_msrs) as u64
}

/// Physical address of the host's MSR list (see [`VcpuState::host_msrs`]).
pub fn host_msrs_phys(vcpu: u64) -> u64 {
    vcpu + STATE_OFFSET + core::mem::offset_of!(VcpuState, host_msrs) as u64
}

/// The physical address of the guest registers svm.S and vmx.S load and save.
pub fn gprs_phys(vcpu: u64) -> u64 {
    vcpu + STATE_OFFSET + core::mem::offset_of!(VcpuState, gprs) as u64
}

/// The slot that keeps the bound GuestSpace alive.
pub fn space_slot(vcpu: u64) -> u64 {
    vcpu + STATE_OFFSET + core::mem::offset_of!(VcpuState, space_slot) as u64
}

/// The slot that keeps the register page alive.
pub fn page_slot(vcpu: u64) -> u64 {
    vcpu + STATE_OFFSET + core::mem::offset_of!(VcpuState, page_slot) as u64
}

/// The guest FPU area of the Vcpu at `vcpu`.
pub const fn fpu_area(vcpu: u64) -> u64 {
    vcpu + FPU_OFFSET
}

/// The FPU-owner tag of a Vcpu's guest state (odd; threads are even).
pub const fn fpu_tag(vcpu: u64) -> u64 {
    vcpu | 1
}

/// Initialises a freshly zeroed Vcpu object.
pub fn init_object(guard: &mut KernelGuard, vcpu: u64) {
    crate::object::init_header(
        guard,
        header(vcpu),
        ObjectType::Vcpu,
        tarn_ipc_schema::VCPU_SIZE_BITS as u8,
    );
    crate::arch::user::init_fpu(guard, fpu_area(vcpu));
    crate::object::held::set_holder(
        guard,
        space_slot(vcpu),
        crate::object::held::Holder::VcpuSpace,
    );
    crate::object::held::set_holder(
        guard,
        page_slot(vcpu),
        crate::object::held::Holder::VcpuPage,
    );
}

/// Whether `thread` is inside `VcpuRun` (sched enters the guest for it).
pub fn in_guest(guard: &mut KernelGuard, thread: u64) -> bool {
    tcb::ctl(guard, thread).in_guest != 0
}

/// The leaf bits of a GuestSpace mapping in this backend's format (the
/// page-table code adds PRESENT, and LARGE for 2 MiB): x86 page-table bits
/// for SVM's nested paging (user-accessible, NX unless executable), EPT
/// bits for VMX (readable, writable, executable, write-back).
pub fn guest_leaf_flags(write: bool, execute: bool) -> u64 {
    use crate::arch::paging::flags;
    match backend() {
        Backend::Vmx => vmx::leaf_flags(write, execute),
        Backend::Svm | Backend::None => {
            flags::USER
                | if write { flags::WRITABLE } else { 0 }
                | if execute { 0 } else { flags::NO_EXECUTE }
        }
    }
}

/// The backend's half of binding: a fresh VMCB or VMCS over `root`.
fn backend_init(guard: &mut KernelGuard, vcpu: u64, root: u64) {
    match backend() {
        Backend::Vmx => vmx::init(guard, vcpu, root),
        Backend::Svm | Backend::None => svm::init(guard, vcpu, root),
    }
}

fn read_registers(guard: &mut KernelGuard, vcpu: u64) -> [u64; REGISTER_COUNT] {
    let mut registers = [0; REGISTER_COUNT];
    match backend() {
        Backend::Vmx => vmx::read_registers(guard, vcpu, &mut registers),
        Backend::Svm | Backend::None => svm::read_registers(guard, vcpu, &mut registers),
    }
    registers
}

/// Stores the guest's register file in the register page at `at`.
#[inline(always)]
fn store_registers(guard: &mut KernelGuard, vcpu: u64, at: u64) {
    match backend() {
        Backend::Vmx => vmx::store_registers(guard, vcpu, at),
        Backend::Svm | Backend::None => svm::store_registers(guard, vcpu, at),
    }
}

fn write_registers(guard: &mut KernelGuard, vcpu: u64, registers: &[u64; REGISTER_COUNT]) {
    match backend() {
        Backend::Vmx => vmx::write_registers(guard, vcpu, registers),
        Backend::Svm | Backend::None => svm::write_registers(guard, vcpu, registers),
    }
}

/// Registers a partial load writes one by one (the general registers, RSP,
/// RIP, RFLAGS); a mask with any other register goes the whole-file way.
const LOAD_ONE_BY_ONE: u64 = (1 << (Reg::Rflags as u64 + 1)) - 1;

/// Loads the registers in `mask` (bit `r` = `Reg` `r`) from the register
/// file in the register page at `at`; the others keep the guest's values.
/// Each word is read once (the VMM may change the page meanwhile).
/// (Inlined into `VcpuRun`'s paths: out of line, its frame cost the exit
/// round trip 15 steps.)
#[inline(always)]
fn load_some(guard: &mut KernelGuard, vcpu: u64, at: u64, mask: u64) {
    if mask & !LOAD_ONE_BY_ONE != 0 {
        return load_through_file(guard, vcpu, at, mask);
    }
    // One by one, straight from the page (no register-file copy).
    match backend() {
        Backend::Vmx => vmx::write_some(guard, vcpu, at, mask),
        Backend::Svm | Backend::None => svm::write_some(guard, vcpu, at, mask),
    }
}

/// [`load_some`] with a control register in `mask`: through the whole
/// file, so that the backend checks them together (CR0, CR4 and EFER
/// depend on each other).
#[inline(never)]
fn load_through_file(guard: &mut KernelGuard, vcpu: u64, at: u64, mask: u64) {
    let mut registers = read_registers(guard, vcpu);
    let mut bits = mask;
    while bits != 0 {
        let r = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        registers[r] = page_register(guard, at, r);
    }
    write_registers(guard, vcpu, &registers);
}

/// Register `r` (a `Reg`) of the register file in the register page at
/// `at` (for the backends' `write_some`).
#[inline(always)]
fn page_register(guard: &mut KernelGuard, at: u64, r: usize) -> u64 {
    page(guard, at).registers[r]
}

fn decode_exit(guard: &mut KernelGuard, vcpu: u64) -> Outcome {
    match backend() {
        Backend::Vmx => vmx::decode_exit(guard, vcpu),
        Backend::Svm | Backend::None => svm::decode_exit(guard, vcpu),
    }
}

/// Handles an invocation on a Vcpu capability. `Ok(true)`: the reply comes
/// later (the thread entered the guest).
pub fn invoke(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    thread: u64,
    vcpu: u64,
    label: Invocation,
) -> Result<bool, Error> {
    match label {
        Invocation::VcpuBind => bind(guard, caller, vcpu).map(|()| false),
        Invocation::VcpuWriteSegment => write_segment(guard, caller, thread, vcpu).map(|()| false),
        Invocation::VcpuRun => run(guard, caller, thread, vcpu).map(|()| true),
        _ => Err(Error::IllegalOperation),
    }
}

fn bind(guard: &mut KernelGuard, caller: &mut Caller, vcpu: u64) -> Result<(), Error> {
    // Decode.
    if backend() == Backend::None {
        return Err(Error::NotSupported);
    }
    if state(guard, vcpu).tcb != 0 {
        return Err(Error::IllegalState);
    }
    let Cap::Tcb { phys: thread } = caller.lookup(guard, caller.mr(0))? else {
        return Err(Error::WrongType);
    };
    if tcb::ctl(guard, thread).vcpu != 0 {
        return Err(Error::IllegalState);
    }
    let source = caller.lookup_slot(guard, caller.mr(1))?;
    let space = read_cap(guard, source);
    let Cap::GuestSpace { phys: root, .. } = space else {
        return Err(Error::WrongType);
    };
    // The register page: any frame (the smallest holds a `RegisterPage`)
    // the caller may read and write, as the kernel will on its behalf.
    let page_source = caller.lookup_slot(guard, caller.mr(2))?;
    let page_cap = read_cap(guard, page_source);
    let Cap::Frame {
        phys: page, rights, ..
    } = page_cap
    else {
        return Err(Error::WrongType);
    };
    if !rights.contains(Rights::READ.union(Rights::WRITE)) {
        return Err(Error::InsufficientRights);
    }
    // Invoke. (The slots may still hold the capabilities of a binding
    // whose thread was destroyed.)
    for (slot, cap, source) in [
        (space_slot(vcpu), space, source),
        (page_slot(vcpu), page_cap, page_source),
    ] {
        crate::object::delete_cap(guard, slot);
        let copy = crate::object::cnode::derive(cap, Rights::ALL, 0)
            .expect("GuestSpace and frame capabilities derive without a badge");
        insert_cap(guard, slot, copy, source);
    }
    let s = state(guard, vcpu);
    s.tcb = thread;
    s.space_root = root;
    s.page = page;
    s.pending = 0;
    s.reinject = 0;
    s.window_exit = 0;
    s.exception_bitmap = 0;
    s.suspended = 0;
    s.deadline = 0;
    s.last_cpu = 0;
    s.gprs = GuestGprs([0; 15]);
    s.debug = [0, 0, 0, 0, cpu::DR6_RESET];
    tcb::ctl(guard, thread).vcpu = vcpu;
    backend_init(guard, vcpu, root);
    Ok(())
}

/// `VcpuWriteSegment` by `thread`, which must be the one the Vcpu is bound
/// to (as for `VcpuRun`): no other thread changes a guest's state.
fn write_segment(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    thread: u64,
    vcpu: u64,
) -> Result<(), Error> {
    let segment = Segment::from_u64(caller.mr(0)).ok_or(Error::InvalidArgument)?;
    let [selector, base, limit, attributes] =
        [caller.mr(1), caller.mr(2), caller.mr(3), caller.mr(4)];
    if selector > 0xFFFF || limit > 0xFFFF_FFFF || attributes > 0xFFF || !canonical(base) {
        return Err(Error::InvalidArgument);
    }
    if state(guard, vcpu).tcb != thread || in_guest(guard, thread) {
        return Err(Error::IllegalState);
    }
    match backend() {
        Backend::Vmx => vmx::write_segment(guard, vcpu, segment, selector, base, limit, attributes),
        Backend::Svm | Backend::None => {
            svm::write_segment(guard, vcpu, segment, selector, base, limit, attributes)
        }
    }
    Ok(())
}

fn canonical(address: u64) -> bool {
    let top = address >> 47;
    top == 0 || top == (1 << 17) - 1
}

fn run(guard: &mut KernelGuard, caller: &mut Caller, thread: u64, vcpu: u64) -> Result<(), Error> {
    let words = [caller.mr(0), caller.mr(1), caller.mr(2), caller.mr(3)];
    let request = check_run(guard, thread, vcpu, words)?;
    start_run(guard, thread, vcpu, request);
    Ok(())
}

/// `VcpuRun` from the fastpath (`crate::fastpath`; the message words
/// MR0..MR3 as `words`): started as [`run`] starts it, and `true` if the
/// caller may enter its guest at once, as the scheduling pass after the
/// general path would decide: a system thread (an adopted one's dispatch
/// entry is the pass's business) on this CPU with no system thread
/// waiting in its FIFO. `false` (and nothing changed) otherwise, or when
/// the request is refused: the general path then decides, and reports.
#[inline]
pub fn run_fast(guard: &mut KernelGuard, thread: u64, vcpu: u64, words: [u64; 4]) -> bool {
    let cpu = sched::this_cpu();
    let t = tcb::ctl(guard, thread);
    if t.scheduler != 0 || t.cpu != cpu as u64 || !sched::fifo_empty(guard, cpu) {
        return false;
    }
    let Ok(request) = check_run(guard, thread, vcpu, words) else {
        return false;
    };
    start_run(guard, thread, vcpu, request);
    true
}

/// A `VcpuRun` request that passed its checks.
struct RunRequest {
    flags: u64,
    inject: u64,
    timeout_ns: u64,
    exceptions: u64,
    page: u64,
}

/// Checks `thread`'s `VcpuRun` on `vcpu` with message words `words`
/// (flags, injection, timeout, exception bitmap); changes nothing.
#[inline(always)]
fn check_run(
    guard: &mut KernelGuard,
    thread: u64,
    vcpu: u64,
    words: [u64; 4],
) -> Result<RunRequest, Error> {
    // The fields read one by one: the state is most of a page.
    let s = state(guard, vcpu);
    let (bound, pending, space_root, page) = (s.tcb, s.pending, s.space_root, s.page);
    if bound != thread {
        return Err(Error::IllegalState);
    }
    let [flags, inject, timeout_ns, exceptions] = words;
    if flags & !run_flags::ALL != 0 || exceptions >> 32 != 0 {
        return Err(Error::InvalidArgument);
    }
    if inject != 0 && (inject & INJECT_VALID == 0 || inject & !(INJECT_VALID | 0xFF) != 0) {
        return Err(Error::InvalidArgument);
    }
    if inject != 0 && pending != 0 {
        return Err(Error::IllegalState);
    }
    if space_root == 0 || page == 0 {
        // Its GuestSpace or register page was deleted (`space_cap_deleted`,
        // `page_cap_deleted`).
        return Err(Error::ObjectDeleted);
    }
    Ok(RunRequest {
        flags,
        inject,
        timeout_ns,
        exceptions,
        page,
    })
}

/// Starts a checked `VcpuRun`: the registers it loads, the event, the
/// exits asked for, its deadline; the thread is then in `VcpuRun`.
#[inline(always)]
fn start_run(guard: &mut KernelGuard, thread: u64, vcpu: u64, request: RunRequest) {
    let RunRequest {
        flags,
        inject,
        timeout_ns,
        exceptions,
        page: at,
    } = request;
    if flags & run_flags::LOAD_REGISTERS != 0 {
        let registers = page(guard, at).registers;
        write_registers(guard, vcpu, &registers);
    } else if flags & run_flags::LOAD_MASK != 0 {
        load_some(guard, vcpu, at, flags >> run_flags::LOAD_SHIFT);
    }
    let s = state(guard, vcpu);
    if inject != 0 {
        s.pending = inject;
    }
    s.window_exit = u64::from(flags & run_flags::WINDOW_EXIT != 0);
    s.exception_bitmap = exceptions;
    s.suspended = 0;
    s.deadline = if timeout_ns != 0 {
        cpu::rdtsc().saturating_add(timer::ns_to_tsc(timeout_ns).max(1))
    } else {
        0
    };
    tcb::ctl(guard, thread).in_guest = 1;
}

/// `thread` is being suspended (`TcbSuspend`, or on its way to
/// destruction). If it is inside `VcpuRun`, that call is over (entering
/// the guest again at resume would run it past whatever the caller
/// expected of the call while it stood still). Once resumed, the thread
/// returns from `VcpuRun` with a `Timeout` exit whose field 0 is 1, without
/// entering the guest (the guest's state stays in the Vcpu, and the
/// instruction an unprocessed exit stopped at runs again on the next
/// `VcpuRun`). Called under the lock before the thread is stopped; a CPU
/// running the guest exits it when `sched::stop` stalls it.
pub fn on_suspend(guard: &mut KernelGuard, thread: u64) {
    let t = *tcb::ctl(guard, thread);
    if t.in_guest != 0 && t.vcpu != 0 {
        state(guard, t.vcpu).suspended = 1;
    }
}

/// Enters the guest for `thread` (current on this CPU, in `VcpuRun`).
pub fn enter_guest(mut guard: KernelGuard, thread: u64) -> ! {
    let vcpu = tcb::ctl(&mut guard, thread).vcpu;
    if vcpu == 0 {
        // Unbound while in `VcpuRun` (its Vcpu was deleted).
        tcb::ctl(&mut guard, thread).in_guest = 0;
        tcb::set_result(&mut guard, thread, Err(Error::ObjectDeleted));
        sched::schedule(guard)
    }
    if state(&mut guard, vcpu).space_root == 0 {
        // Its GuestSpace was deleted while it was in `VcpuRun`.
        tcb::ctl(&mut guard, thread).in_guest = 0;
        tcb::set_result(&mut guard, thread, Err(Error::ObjectDeleted));
        sched::schedule(guard)
    }
    // Suspended inside the call (field 0 = 1), or its deadline passed
    // (field 0 = 0): the call ends; otherwise the timer is armed for the
    // deadline unless it fires no later anyway.
    let (suspended, deadline) = {
        let s = state(&mut guard, vcpu);
        (s.suspended, s.deadline)
    };
    if suspended != 0 || (deadline != 0 && cpu::rdtsc() >= deadline) {
        complete(
            &mut guard,
            thread,
            vcpu,
            ExitRecord::new(Exit::Timeout, [suspended, 0, 0, 0]),
        );
        sched::schedule(guard)
    }
    if deadline != 0 {
        sched::timeout_added(&mut guard, deadline);
    }
    let cpu = sched::this_cpu();
    let guests = GUESTS.get(&mut guard);
    let epoch = guests.tlb_epoch;
    let last_vcpu = guests.cpus[cpu].last_vcpu;
    let s = state(&mut guard, vcpu);
    // Another Vcpu ran here since this one did, or this one ran elsewhere:
    // the CPU's guest TLB entries and debug registers are not its own.
    let elsewhere = last_vcpu != vcpu || s.last_cpu != cpu as u64 + 1;
    if elsewhere {
        cpu::write_guest_debug_registers(&s.debug);
    }
    let flush_tlb = elsewhere || s.tlb_epoch != epoch;
    s.last_cpu = cpu as u64 + 1;
    s.tlb_epoch = epoch;
    let vmx = backend() == Backend::Vmx;
    if vmx {
        vmx::prepare_entry(&mut guard, vcpu, flush_tlb);
    } else {
        svm::prepare_entry(&mut guard, vcpu, flush_tlb);
    }
    sched::claim_fpu_for_guest(&mut guard, fpu_tag(vcpu));
    let here = &mut GUESTS.get(&mut guard).cpus[cpu];
    here.running = vcpu;
    here.last_vcpu = vcpu;
    if vmx {
        crate::arch::vmx::run(guard, vcpu, gprs_phys(vcpu))
    } else {
        crate::arch::svm::run(guard, vcpu, gprs_phys(vcpu))
    }
}

/// Continues after the guest on this CPU exited (lock held again).
pub fn on_exit(mut guard: KernelGuard) -> ! {
    let cpu = sched::this_cpu();
    // A timer interrupt that came as the guest exited for another reason
    // was taken at the world switch's STGI (VMX: its sti/nop/cli), before
    // this: it is this CPU's timer all the same. (Taken as nothing, it left
    // the CPU sure that its one-shot timer was still armed, for a time
    // already past, so no pass armed it again: the guest ran with no timer,
    // past its budget and every timeout on the CPU, until some other
    // interrupt came.) Tested in each arm below, where it is needed (read
    // once here it cost the round trip 4 more instructions).
    let here = crate::arch::percpu::current();
    let vcpu = core::mem::replace(&mut GUESTS.get(&mut guard).cpus[cpu].running, 0);
    if vcpu == 0 {
        // Its Vcpu was deleted while the guest ran.
        if here.take_unhandled_timer() {
            sched::on_timer(&mut guard);
        }
        sched::schedule(guard)
    }
    state(&mut guard, vcpu).debug = cpu::read_guest_debug_registers();
    let outcome = decode_exit(&mut guard, vcpu);
    let thread = state(&mut guard, vcpu).tcb;
    let current = thread != 0
        && sched::current(&mut guard) == thread
        && tcb::ctl(&mut guard, thread).vcpu == vcpu
        && in_guest(&mut guard, thread);
    match outcome {
        Outcome::Interrupted => sched::on_timer(&mut guard),
        Outcome::WindowOpen => {
            if current && state(&mut guard, vcpu).window_exit != 0 {
                state(&mut guard, vcpu).window_exit = 0;
                let record = ExitRecord::new(Exit::InterruptWindow, [0; 4]);
                complete(&mut guard, thread, vcpu, record);
            }
            if here.take_unhandled_timer() {
                sched::on_timer(&mut guard);
            }
        }
        // A thread stopped meanwhile re-executes the instruction later.
        Outcome::Exit(record) if current => {
            complete(&mut guard, thread, vcpu, record);
            if here.take_unhandled_timer() {
                sched::on_timer(&mut guard);
            } else if let Some(root) = continues_without_pass(&mut guard, cpu, thread) {
                sched::switch_to(guard, thread, root)
            }
        }
        Outcome::Exit(_) => {
            if here.take_unhandled_timer() {
                sched::on_timer(&mut guard);
            }
        }
    }
    sched::schedule(guard)
}

/// Whether the VMM thread `thread`, whose `VcpuRun` just ended on `cpu`,
/// returns to user mode without a scheduling pass (with its page-table
/// root), as the pass would choose it anyway: it is a system thread (an
/// adopted one's dispatch entry is the pass's business) still running,
/// current and placed here (not moved to another CPU meanwhile), and no
/// system thread waits in this CPU's FIFO. Its slice
/// goes on; the one-shot timer stays armed for the slice's end or the
/// `VcpuRun` deadline `complete` just cancelled, whichever came first (an
/// early expiry is an ordinary timer interrupt: its pass arms the timer
/// again). The thread is still the one charged for the time.
#[inline(always)]
fn continues_without_pass(guard: &mut KernelGuard, cpu: usize, thread: u64) -> Option<u64> {
    let t = tcb::ctl(guard, thread);
    let system_runnable = t.scheduler == 0
        && t.state == tarn_ipc_schema::invocation::ThreadState::Runnable as u64
        && t.queued == 0
        && t.cpu == cpu as u64;
    if !(system_runnable && sched::fifo_empty(guard, cpu)) {
        return None;
    }
    tcb::runnable_root(guard, thread)
}

/// Ends `thread`'s `VcpuRun` with `record`, written with the register file
/// into the register page; an empty reply. Without a page (its capability
/// was deleted meanwhile) the call fails with `ObjectDeleted` and nothing
/// is written. (Inlined into its three callers, as `continues_without_pass`
/// is into `on_exit`: out of line, the record went through the stack, and
/// the two calls and frames cost the exit round trip 31 steps, 799 to 768.)
#[inline(always)]
fn complete(guard: &mut KernelGuard, thread: u64, vcpu: u64, record: ExitRecord) {
    let s = state(guard, vcpu);
    let (at, pending) = (s.page, u64::from(s.pending != 0));
    s.suspended = 0;
    s.window_exit = 0;
    tcb::ctl(guard, thread).in_guest = 0;
    if at == 0 {
        tcb::set_result(guard, thread, Err(Error::ObjectDeleted));
        return;
    }
    let f = tcb::frame(guard, thread);
    f.rax = 0;
    f.rsi = MessageInfo::new(0, 0, 0).0;
    let p = page(guard, at);
    p.exit = record.kind as u64;
    p.fields = record.fields;
    p.next_rip = record.next_rip;
    p.injection_pending = pending;
    store_registers(guard, vcpu, at);
}

/// A mapping was removed from a GuestSpace: every Vcpu flushes its guest
/// TLB before it runs again, and guests running now are made to exit first.
pub fn guest_space_changed(guard: &mut KernelGuard) {
    let guests = GUESTS.get(guard);
    guests.tlb_epoch += 1;
    let running: [u64; MAX_CPUS] = core::array::from_fn(|cpu| guests.cpus[cpu].running);
    for (cpu, vcpu) in running.iter().enumerate().take(percpu::online() as usize) {
        if *vcpu != 0 && cpu != sched::this_cpu() {
            sched::stall(cpu as u32);
        }
    }
}

/// The capability in the GuestSpace slot of the Vcpu at `vcpu` was deleted
/// (the GuestSpace capability it was copied from, or its memory, was
/// revoked; or the Vcpu is rebound or destroyed): the Vcpu no longer enters
/// that GuestSpace. A CPU running the guest now is made to leave it before
/// this returns, so no CPU translates through page tables that may be
/// retyped; the thread's `VcpuRun` then ends with `ObjectDeleted`.
pub fn space_cap_deleted(guard: &mut KernelGuard, vcpu: u64) {
    state(guard, vcpu).space_root = 0;
    for cpu in 0..percpu::online() as usize {
        if GUESTS.get(guard).cpus[cpu].running == vcpu && cpu != sched::this_cpu() {
            sched::stall(cpu as u32);
        }
    }
}

/// The capability in the register-page slot of the Vcpu at `vcpu` was
/// deleted (the frame capability it was copied from, or its memory, was
/// revoked; or the Vcpu is rebound or destroyed): the kernel no longer
/// reads or writes that page. It writes the page only under the lock when
/// a `VcpuRun` ends, so no CPU is made to leave the guest: the run in
/// progress ends with `ObjectDeleted` at its next exit for the VMM.
pub fn page_cap_deleted(guard: &mut KernelGuard, vcpu: u64) {
    state(guard, vcpu).page = 0;
}

/// The thread `thread` is being destroyed: its Vcpu becomes unbound.
pub fn on_tcb_destroyed(guard: &mut KernelGuard, thread: u64) {
    let vcpu = core::mem::replace(&mut tcb::ctl(guard, thread).vcpu, 0);
    tcb::ctl(guard, thread).in_guest = 0;
    if vcpu != 0 {
        state(guard, vcpu).tcb = 0;
    }
}

/// Destroys a Vcpu whose last capability was deleted: it leaves the guest
/// on every CPU (waiting for the exit), its VMCS is current on no CPU
/// (VMX), its thread's `VcpuRun` ends with `ObjectDeleted`, and the
/// GuestSpace and register-page copies are dropped.
pub fn destroy(guard: &mut KernelGuard, header_phys: u64) {
    let vcpu = header_phys - STATE_OFFSET;
    for cpu in 0..percpu::online() as usize {
        let here = &mut GUESTS.get(guard).cpus[cpu];
        if here.last_vcpu == vcpu {
            here.last_vcpu = 0;
        }
        if here.running == vcpu {
            here.running = 0;
            if cpu != sched::this_cpu() {
                sched::stall(cpu as u32);
            }
        }
    }
    if backend() == Backend::Vmx {
        // Its VMCS stays current on the CPU it last ran on: cleared there
        // (waiting for that CPU) before the object's memory can be reused.
        crate::arch::vmx::clear(guard, vcpu);
    }
    let thread = core::mem::replace(&mut state(guard, vcpu).tcb, 0);
    if thread != 0 {
        let t = tcb::ctl(guard, thread);
        t.vcpu = 0;
        if t.in_guest != 0 {
            t.in_guest = 0;
            tcb::set_result(guard, thread, Err(Error::ObjectDeleted));
        }
    }
    sched::forget_fpu_owner(guard, fpu_tag(vcpu));
    crate::object::delete_one(guard, space_slot(vcpu));
    crate::object::delete_one(guard, page_slot(vcpu));
}

/// Checks a guest-physical mapping address (frame-aligned, below the end).
pub fn guest_address_ok(address: u64, size: u64) -> bool {
    address.is_multiple_of(size)
        && address
            .checked_add(size)
            .is_some_and(|end| end <= GUEST_PHYS_END)
}

/// Checks every Vcpu's references (the invariant check): its thread is live
/// and bound to it, the GuestSpace root it enters with is the one its slot
/// keeps alive, the register page it writes is the frame its page slot
/// keeps alive (with read and write rights), every CPU's running and
/// last Vcpu is live, and (VMX) every CPU's current VMCS is a live Vcpu's,
/// current on no other CPU.
pub fn check(guard: &mut KernelGuard, live: &Live) -> Verdict {
    for &vcpu in &live.vcpus {
        let s = *state(guard, vcpu);
        ensure(
            s.tcb == 0 || (live.is_tcb(s.tcb) && tcb::ctl(guard, s.tcb).vcpu == vcpu),
            "a Vcpu's thread is not bound to it",
            vcpu,
        )?;
        let space = read_cap(guard, space_slot(vcpu));
        ensure(
            matches!(space, Cap::Null | Cap::GuestSpace { .. }),
            "a Vcpu's GuestSpace slot holds something else",
            vcpu,
        )?;
        if s.space_root != 0 {
            ensure(
                matches!(space, Cap::GuestSpace { phys, .. } if phys == s.space_root),
                "a Vcpu enters a GuestSpace its slot does not keep alive",
                vcpu,
            )?;
        }
        let page = read_cap(guard, page_slot(vcpu));
        ensure(
            matches!(page, Cap::Null | Cap::Frame { .. }),
            "a Vcpu's register-page slot holds something else",
            vcpu,
        )?;
        ensure(
            s.page == 0
                || matches!(page, Cap::Frame { phys, rights, .. }
                    if phys == s.page && rights.contains(Rights::READ.union(Rights::WRITE))),
            "a Vcpu writes a register page its slot does not keep alive",
            vcpu,
        )?;
    }
    for cpu in 0..percpu::online() as usize {
        let here = GUESTS.get(guard).cpus[cpu];
        ensure(
            (here.running == 0 || live.is_vcpu(here.running))
                && (here.last_vcpu == 0 || live.is_vcpu(here.last_vcpu)),
            "a CPU's guest is no live Vcpu",
            cpu as u64,
        )?;
        if backend() == Backend::Vmx {
            let vmcs = crate::arch::vmx::current_on(guard, cpu);
            ensure(
                vmcs == 0 || live.is_vcpu(vmcs),
                "a CPU's current VMCS is no live Vcpu's",
                cpu as u64,
            )?;
            let twice = (0..cpu).any(|other| crate::arch::vmx::current_on(guard, other) == vmcs);
            ensure(
                vmcs == 0 || !twice,
                "a VMCS is current on two CPUs",
                cpu as u64,
            )?;
        }
    }
    Ok(())
}
