//! Threads. A TCB holds the thread's saved user registers (the frame user.S
//! and the CPU push on kernel entry), its FPU state, its IPC and scheduling
//! links, and four capability slots that keep what it runs on alive: its
//! CSpace root, VSpace, IPC-buffer frame and fault endpoint.

use super::{insert_cap, read_cap, Cap, ObjectHeader, Slot, SLOT_BYTES};
use crate::arch::lock::KernelGuard;
use crate::arch::objmem::{self, KernelObject};
use crate::arch::trap::TrapFrame;
use crate::arch::user;
use crate::invariants::{ensure, Live, Verdict};
use crate::syscall::Caller;
use tarn_ipc_schema::invocation::{Invocation, ThreadState};
use tarn_ipc_schema::{Error, ObjectType, Rights};

/// log2 of a TCB's size.
pub const TCB_SIZE_BITS: u8 = tarn_ipc_schema::TCB_SIZE_BITS as u8;

/// Indices of the TCB's own capability slots.
pub mod slot {
    /// CSpace root (a CNode).
    pub const CSPACE: usize = 0;
    /// Address space.
    pub const VSPACE: usize = 1;
    /// IPC-buffer frame.
    pub const IPC_BUFFER: usize = 2;
    /// Fault endpoint.
    pub const FAULT_ENDPOINT: usize = 3;
}

/// IPC flags of a blocked sender.
pub mod ipc_flag {
    /// The send is a `Call` (the sender waits for a reply).
    pub const CALL: u64 = 1;
    /// The endpoint capability used carries GRANT.
    pub const GRANT: u64 = 2;
    /// The message is a fault message (in `fault_label`/`fault_mrs`).
    pub const FAULT: u64 = 4;
}

/// A thread's scheduling and IPC state (the part of a TCB the kernel copies
/// and inspects on every IPC; the register frame and FPU area stay in place).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Control {
    /// [`ThreadState`].
    pub state: u64,
    /// The CPU it runs on.
    pub cpu: u64,
    /// Whether it is in a run queue.
    pub queued: u64,
    /// Run-queue links.
    pub sched_next: u64,
    /// Run-queue links.
    pub sched_prev: u64,
    /// Endpoint/notification queue links.
    pub ipc_next: u64,
    /// Endpoint/notification queue links.
    pub ipc_prev: u64,
    /// The endpoint or notification it is blocked on.
    pub blocked_on: u64,
    /// [`ipc_flag`] bits of a blocked send.
    pub ipc_flags: u64,
    /// Badge of the endpoint capability a blocked sender used.
    pub ipc_badge: u64,
    /// The caller waiting for this thread's reply (0 = none).
    pub reply_to: u64,
    /// While blocked on a reply: the thread that owes it.
    pub reply_from: u64,
    /// Timeout deadline (TSC, 0 = none).
    pub deadline: u64,
    /// Timeout list links.
    pub timeout_next: u64,
    /// Timeout list links.
    pub timeout_prev: u64,
    /// The CPU whose timeout list holds it (the thread may run elsewhere
    /// meanwhile: a dispatched thread moves between its pool's CPUs).
    pub timeout_cpu: u64,
    /// Bound notification (header phys, 0 = none).
    pub bound_notification: u64,
    /// Where the IPC buffer starts in the frame in slot [`slot::IPC_BUFFER`]
    /// (its address is derived from that slot at each use: [`ipc_buffer`]).
    pub ipc_buffer_offset: u64,
    /// The Scheduler that adopted it (header phys, 0 = a system thread).
    pub scheduler: u64,
    /// Its id in that scheduler's events.
    pub thread_id: u64,
    /// The scheduler's list of adopted threads.
    pub adopted_next: u64,
    /// The scheduler's list of adopted threads.
    pub adopted_prev: u64,
    /// CPU index + 1 of the dispatch queue holding it (0 = none).
    pub entry_cpu: u64,
    /// CPU index + 1 of the last dispatch queue that held it since its
    /// adoption (0 = none yet): xl's vCPU `CPU` column, Xen's
    /// `v->processor`.
    pub last_cpu: u64,
    /// Total ns run while adopted.
    pub adopted_ran_ns: u64,
    /// The Vcpu bound to this thread (0 = none).
    pub vcpu: u64,
    /// Inside `VcpuRun`: scheduling it enters the guest.
    pub in_guest: u64,
    /// TSC ticks it has run since it was created.
    pub ran_tsc: u64,
    /// The Scheduler it is confined to (header phys; 0 = none,
    /// [`crate::dispatch::ORPHANED`] = that Scheduler was destroyed; the
    /// rest is in [`Confinement`]).
    pub confined: u64,
}
impl KernelObject for Control {}

/// A confined thread's list links and watchdog base: kept apart from
/// [`Control`], which the IPC and scheduling paths copy whole.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Confinement {
    /// Its Scheduler's list of confined threads.
    pub next: u64,
    /// Its Scheduler's list of confined threads.
    pub prev: u64,
    /// `Control::ran_tsc` when it last woke from blocking or dispatched
    /// (the watchdog counts from there).
    pub watch_base_tsc: u64,
    /// Timer interrupts that found it running since then.
    pub watch_ticks: u64,
}
impl KernelObject for Confinement {}

/// A pending fault message.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FaultMessage {
    /// Fault message label.
    pub label: u64,
    /// Fault message words.
    pub words: [u64; 4],
}
impl KernelObject for FaultMessage {}

/// A thread control block.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct Tcb {
    /// Refcount header.
    pub header: ObjectHeader,
    /// Scheduling and IPC state.
    pub ctl: Control,
    /// The fault message while one is pending.
    pub fault: FaultMessage,
    /// Confinement links and watchdog base.
    pub confinement: Confinement,
    /// Saved user registers.
    pub frame: TrapFrame,
    /// Saved FPU/SSE state.
    pub fpu: user::FpuArea,
    /// CSpace, VSpace, IPC buffer, fault endpoint.
    pub slots: [Slot; 4],
}
impl KernelObject for Tcb {}
const _: () = assert!(core::mem::size_of::<Tcb>() <= 1 << TCB_SIZE_BITS);
const _: () = assert!(core::mem::offset_of!(Tcb, fpu) % 16 == 0);
impl KernelObject for TrapFrame {}

/// Physical address of slot `index` of the TCB at `tcb`.
pub fn slot_address(tcb: u64, index: usize) -> u64 {
    tcb + core::mem::offset_of!(Tcb, slots) as u64 + index as u64 * SLOT_BYTES
}

/// The scheduling and IPC state of the TCB at `tcb`.
#[inline(always)]
pub fn ctl(guard: &mut KernelGuard, tcb: u64) -> &mut Control {
    objmem::object::<Control>(guard, tcb + core::mem::offset_of!(Tcb, ctl) as u64)
}

/// The confinement links and watchdog base of the TCB at `tcb`.
#[inline(always)]
pub fn confinement(guard: &mut KernelGuard, tcb: u64) -> &mut Confinement {
    objmem::object::<Confinement>(guard, tcb + core::mem::offset_of!(Tcb, confinement) as u64)
}

/// The pending fault message of the TCB at `tcb`.
pub fn fault(guard: &mut KernelGuard, tcb: u64) -> &mut FaultMessage {
    objmem::object::<FaultMessage>(guard, tcb + core::mem::offset_of!(Tcb, fault) as u64)
}

/// Physical address of the TCB's saved frame.
pub fn frame_address(tcb: u64) -> u64 {
    tcb + core::mem::offset_of!(Tcb, frame) as u64
}

/// Physical address of the TCB's FPU area.
pub fn fpu_area(tcb: u64) -> u64 {
    tcb + core::mem::offset_of!(Tcb, fpu) as u64
}

/// Initialises a freshly zeroed TCB on CPU 0.
pub fn init(guard: &mut KernelGuard, tcb: u64) {
    super::init_header(guard, tcb, tarn_ipc_schema::ObjectType::Tcb, TCB_SIZE_BITS);
    for index in 0..4 {
        let holder = super::held::Holder::Tcb { index: index as u8 };
        super::held::set_holder(guard, slot_address(tcb, index), holder);
    }
    let frame = objmem::object::<TrapFrame>(guard, frame_address(tcb));
    user::sanitize_frame(frame);
    user::init_fpu(guard, fpu_area(tcb));
}

/// The thread's saved frame.
#[inline(always)]
pub fn frame(guard: &mut KernelGuard, tcb: u64) -> &mut TrapFrame {
    objmem::object::<TrapFrame>(guard, frame_address(tcb))
}

/// Writes a system call's result into the thread's saved `rax`.
pub fn set_result(guard: &mut KernelGuard, tcb: u64, result: Result<(), Error>) {
    frame(guard, tcb).rax = match result {
        Ok(()) => 0,
        Err(e) => e as u64,
    };
}

/// The physical address of `tcb`'s IPC buffer, read through the frame
/// capability in its IPC-buffer slot at each use; `None` once that slot is
/// empty (its frame deleted or revoked): the thread then has no buffer.
#[inline]
pub fn ipc_buffer(guard: &mut KernelGuard, tcb: u64) -> Option<u64> {
    let words = objmem::object::<Slot>(guard, slot_address(tcb, slot::IPC_BUFFER)).words;
    let tag = words[0] & 0xFF;
    let frame = tag == ObjectType::Frame4K as u64 || tag == ObjectType::Frame2M as u64;
    frame.then(|| words[1] + ctl(guard, tcb).ipc_buffer_offset)
}

/// The CR3 to run `tcb` with, if its VSpace slot holds a VSpace.
#[inline]
pub fn runnable_root(guard: &mut KernelGuard, tcb: u64) -> Option<u64> {
    super::vspace_root_at(guard, slot_address(tcb, slot::VSPACE))
}

/// The thread's CSpace root capability (a CNode; `Cap::Null` for anything
/// else).
#[inline]
pub fn cspace(guard: &mut KernelGuard, tcb: u64) -> Cap {
    // Only a CNode capability is ever a CSpace root (anything else names
    // no CSpace): decoded without the general decode's dispatch on the
    // type, as every system call's lookup starts here.
    let words = objmem::object::<Slot>(guard, slot_address(tcb, slot::CSPACE)).words;
    if words[0] & 0xFF == ObjectType::CNode as u64 {
        Cap::CNode {
            phys: words[1],
            size_bits: (words[0] >> 16) as u8,
        }
    } else {
        Cap::Null
    }
}

/// Handles an invocation on a TCB capability.
pub fn invoke(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    target: u64,
    label: Invocation,
) -> Result<(), Error> {
    match label {
        Invocation::TcbConfigure => configure(guard, caller, target),
        Invocation::TcbWriteRegisters => {
            crate::sched::stop_for_inspection(guard, target);
            let [rip, rsp, rflags, rdi] = [caller.mr(0), caller.mr(1), caller.mr(2), caller.mr(3)];
            let [rsi, rdx] = [caller.mr(4), caller.mr(5)];
            if rip >= crate::arch::paging::USER_END || rsp >= crate::arch::paging::USER_END {
                return Err(Error::InvalidArgument);
            }
            let f = frame(guard, target);
            f.rip = rip;
            f.rsp = rsp;
            f.rflags = rflags;
            f.rdi = rdi;
            f.rsi = rsi;
            f.rdx = rdx;
            f.vector = 0;
            user::sanitize_frame(f);
            Ok(())
        }
        Invocation::TcbReadRegisters => {
            crate::sched::stop_for_inspection(guard, target);
            let f = *frame(guard, target);
            let state = ctl(guard, target).state;
            let ran_ns = crate::arch::timer::tsc_to_ns(crate::sched::ran_tsc(guard, target));
            caller.set_reply(
                guard,
                &[f.rip, f.rsp, f.rflags, f.rax, f.rdi, state, ran_ns],
            );
            Ok(())
        }
        Invocation::TcbResume => {
            let t = *ctl(guard, target);
            if t.state != ThreadState::Inactive as u64 {
                return Ok(());
            }
            if runnable_root(guard, target).is_none()
                || !matches!(cspace(guard, target), Cap::CNode { .. })
                || t.confined == crate::dispatch::ORPHANED
            {
                return Err(Error::IllegalState);
            }
            crate::sched::make_runnable(guard, target);
            Ok(())
        }
        Invocation::TcbSuspend => {
            suspend(guard, target);
            Ok(())
        }
        Invocation::TcbSetAffinity => {
            let cpu = caller.mr(0);
            if cpu >= u64::from(crate::arch::percpu::online()) {
                return Err(Error::OutOfRange);
            }
            if !crate::dispatch::confinement_allows(guard, target, cpu as usize) {
                return Err(Error::NotOwned);
            }
            let state = ctl(guard, target).state;
            let runnable = state == ThreadState::Runnable as u64;
            if runnable {
                crate::sched::stop(guard, target);
            }
            crate::sched::set_cpu(guard, target, cpu);
            if runnable {
                crate::sched::make_runnable(guard, target);
            }
            Ok(())
        }
        Invocation::TcbBindNotification => {
            let cap = caller.lookup(guard, caller.mr(0))?;
            let Cap::Notification { phys, rights, .. } = cap else {
                return Err(Error::WrongType);
            };
            if !rights.contains(Rights::READ) {
                return Err(Error::InsufficientRights);
            }
            if ctl(guard, target).bound_notification != 0 || crate::ipc::bound_tcb(guard, phys) != 0
            {
                return Err(Error::IllegalState);
            }
            crate::ipc::bind(guard, target, phys);
            Ok(())
        }
        Invocation::TcbConfine => crate::dispatch::confine_invocation(guard, caller, target),
        Invocation::TcbUnbindNotification => {
            if ctl(guard, target).bound_notification == 0 {
                return Err(Error::IllegalState);
            }
            crate::ipc::unbind(guard, target);
            Ok(())
        }
        _ => Err(Error::IllegalOperation),
    }
}

fn configure(guard: &mut KernelGuard, caller: &mut Caller, target: u64) -> Result<(), Error> {
    // Decode: every capability first.
    if ctl(guard, target).state != ThreadState::Inactive as u64 {
        return Err(Error::IllegalState);
    }
    let cnode_slot = caller.lookup_slot(guard, caller.mr(0))?;
    let cnode = read_cap(guard, cnode_slot);
    if !matches!(cnode, Cap::CNode { .. }) {
        return Err(Error::WrongType);
    }
    let vspace_slot = caller.lookup_slot(guard, caller.mr(1))?;
    if !matches!(read_cap(guard, vspace_slot), Cap::VSpace { .. }) {
        return Err(Error::WrongType);
    }
    let buffer_cptr = caller.mr(2);
    let buffer_vaddr = caller.mr(3);
    let buffer = if buffer_cptr == 0 {
        None
    } else {
        let s = caller.lookup_slot(guard, buffer_cptr)?;
        let Cap::Frame { large, rights, .. } = read_cap(guard, s) else {
            return Err(Error::WrongType);
        };
        if !rights.contains(Rights::READ.union(Rights::WRITE)) {
            return Err(Error::InsufficientRights);
        }
        if !buffer_vaddr.is_multiple_of(4096) {
            return Err(Error::InvalidArgument);
        }
        let size = if large { 2 << 20 } else { 4096 };
        Some((s, buffer_vaddr & (size - 1)))
    };
    let fault_cptr = caller.mr(4);
    let fault = if fault_cptr == 0 {
        None
    } else {
        let s = caller.lookup_slot(guard, fault_cptr)?;
        let Cap::Endpoint { rights, .. } = read_cap(guard, s) else {
            return Err(Error::WrongType);
        };
        if !rights.contains(Rights::WRITE) {
            return Err(Error::InsufficientRights);
        }
        Some(s)
    };
    // Invoke: replace the four slots with children of the given capabilities.
    // Deleting the old ones may destroy the objects they kept alive and,
    // through those, even the calling thread and its CSpace, where the new
    // ones come from: the target and that CSpace are pinned meanwhile.
    let cspace = caller
        .cspace()
        .counted_object()
        .expect("the caller's CSpace root is a CNode")
        .1;
    super::pin(guard, target);
    super::pin(guard, cspace);
    for index in 0..4 {
        super::delete_cap(guard, slot_address(target, index));
    }
    let copy = |guard: &mut KernelGuard, from: u64, index: usize| {
        // A plain copy, as CNodeCopy makes it (a frame copy is unmapped).
        let cap = super::cnode::derive(read_cap(guard, from), Rights::ALL, 0)
            .expect("decode checked the types: CNode, VSpace, Frame, Endpoint");
        insert_cap(guard, slot_address(target, index), cap, from);
    };
    copy(guard, cnode_slot, slot::CSPACE);
    copy(guard, vspace_slot, slot::VSPACE);
    let mut buffer_offset = 0;
    if let Some((s, offset)) = buffer {
        copy(guard, s, slot::IPC_BUFFER);
        buffer_offset = offset;
    }
    if let Some(s) = fault {
        copy(guard, s, slot::FAULT_ENDPOINT);
    }
    ctl(guard, target).ipc_buffer_offset = buffer_offset;
    super::unpin(guard, cspace);
    super::unpin(guard, target);
    super::drain_zombies(guard);
    Ok(())
}

/// Stops a thread: aborts its IPC, leaves it inactive.
pub fn suspend(guard: &mut KernelGuard, tcb: u64) {
    crate::dispatch::on_suspend(guard, tcb);
    crate::vcpu::on_suspend(guard, tcb);
    crate::ipc::cancel_ipc(guard, tcb);
    crate::sched::cancel_timeout(guard, tcb);
    crate::sched::stop(guard, tcb);
    ctl(guard, tcb).state = ThreadState::Inactive as u64;
}

/// Destroys a TCB whose last capability was deleted.
pub fn destroy(guard: &mut KernelGuard, tcb: u64) {
    suspend(guard, tcb);
    crate::dispatch::on_destroy(guard, tcb);
    crate::ipc::forget_thread(guard, tcb);
    crate::sched::forget_fpu_owner(guard, tcb);
    crate::sched::forget_accounting(guard, tcb);
    crate::vcpu::on_tcb_destroyed(guard, tcb);
    if ctl(guard, tcb).bound_notification != 0 {
        crate::ipc::unbind(guard, tcb);
    }
    for index in 0..4 {
        super::delete_one(guard, slot_address(tcb, index));
    }
}

/// Checks the references of the live TCB `tcb` (the invariant check): its
/// slots hold what they are for, its IPC buffer lies in the frame its slot
/// names, and every thread, endpoint, notification, Scheduler or Vcpu it
/// names is live and names it back where links come in pairs.
pub fn check(guard: &mut KernelGuard, tcb: u64, live: &Live) -> Verdict {
    let t = *ctl(guard, tcb);
    ensure(
        t.state <= ThreadState::BlockedOnNotification as u64,
        "a thread's state is no state",
        tcb,
    )?;
    let kind = |guard: &mut KernelGuard, index: usize| read_cap(guard, slot_address(tcb, index));
    ensure(
        matches!(kind(guard, slot::CSPACE), Cap::Null | Cap::CNode { .. })
            && matches!(kind(guard, slot::VSPACE), Cap::Null | Cap::VSpace { .. })
            && matches!(
                kind(guard, slot::FAULT_ENDPOINT),
                Cap::Null | Cap::Endpoint { .. }
            ),
        "a thread's slot holds a capability of the wrong type",
        tcb,
    )?;
    let buffer = kind(guard, slot::IPC_BUFFER);
    ensure(
        matches!(buffer, Cap::Null | Cap::Frame { .. }),
        "a thread's IPC-buffer slot holds no frame",
        tcb,
    )?;
    if let Cap::Frame { large, rights, .. } = buffer {
        let bytes = if large { 2 << 20 } else { 4096 };
        ensure(
            t.ipc_buffer_offset + core::mem::size_of::<tarn_ipc_schema::IpcBuffer>() as u64
                <= bytes
                && rights.contains(Rights::READ.union(Rights::WRITE)),
            "a thread's IPC buffer lies outside the frame its slot names",
            tcb,
        )?;
    }
    let blocked_on_ok = match t.state {
        s if s == ThreadState::BlockedOnSend as u64
            || s == ThreadState::BlockedOnReceive as u64 =>
        {
            live.is_endpoint(t.blocked_on)
        }
        s if s == ThreadState::BlockedOnNotification as u64 => live.is_notification(t.blocked_on),
        _ => t.blocked_on == 0,
    };
    ensure(
        blocked_on_ok,
        "a thread is blocked on no live endpoint or notification",
        tcb,
    )?;
    if t.reply_to != 0 {
        ensure(
            live.is_tcb(t.reply_to),
            "a thread owes a reply to no live thread",
            tcb,
        )?;
        let caller = *ctl(guard, t.reply_to);
        ensure(
            caller.state == ThreadState::BlockedOnReply as u64 && caller.reply_from == tcb,
            "a thread owes a reply to a thread that does not wait for it",
            tcb,
        )?;
    }
    if t.reply_from != 0 {
        ensure(
            t.state == ThreadState::BlockedOnReply as u64 && live.is_tcb(t.reply_from),
            "a thread waits for a reply from no live thread",
            tcb,
        )?;
        ensure(
            ctl(guard, t.reply_from).reply_to == tcb,
            "a thread waits for a reply its server does not owe it",
            tcb,
        )?;
    }
    if t.bound_notification != 0 {
        ensure(
            live.is_notification(t.bound_notification)
                && crate::ipc::bound_tcb(guard, t.bound_notification) == tcb,
            "a thread's bound notification is not bound to it",
            tcb,
        )?;
    }
    ensure(
        t.scheduler == 0 || live.is_scheduler(t.scheduler),
        "a thread is adopted by no live Scheduler",
        tcb,
    )?;
    ensure(
        t.entry_cpu <= crate::arch::percpu::MAX_CPUS as u64
            && (t.entry_cpu == 0 || t.scheduler != 0),
        "a thread in a dispatch queue is not adopted",
        tcb,
    )?;
    if t.vcpu != 0 {
        ensure(
            live.is_vcpu(t.vcpu) && crate::vcpu::state(guard, t.vcpu).tcb == tcb,
            "a thread's Vcpu is not bound to it",
            tcb,
        )?;
    }
    ensure(
        t.confined == 0 || t.confined == crate::dispatch::ORPHANED || live.is_scheduler(t.confined),
        "a thread is confined to no live Scheduler",
        tcb,
    )?;
    ensure(
        t.confined != crate::dispatch::ORPHANED || t.state == ThreadState::Inactive as u64,
        "a thread whose Scheduler is gone is not suspended",
        tcb,
    )?;
    ensure(
        t.in_guest == 0 || t.vcpu != 0,
        "a thread in VcpuRun has no Vcpu",
        tcb,
    )?;
    // (`sched::switch_to`, which the IPC fastpath uses, relies on this.)
    ensure(
        t.in_guest == 0
            || ![
                ThreadState::BlockedOnSend as u64,
                ThreadState::BlockedOnReceive as u64,
                ThreadState::BlockedOnReply as u64,
            ]
            .contains(&t.state),
        "a thread in VcpuRun is blocked in IPC",
        tcb,
    )?;
    ensure(
        t.deadline == 0 || t.timeout_cpu < u64::from(crate::arch::percpu::online()),
        "a thread's timeout is on no CPU's list",
        tcb,
    )
}
