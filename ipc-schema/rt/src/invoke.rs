//! Object invocations: one function per `Invocation`, each a `Call` on the
//! object's capability with the arguments in MR0.. and the result in `rax`
//! and the reply's MR0... Arguments past MR3 travel in the IPC buffer.

use crate::ipc_buffer;
use crate::syscall::{self, Message};
use crate::vcpu::RegisterPage;
use tarn_ipc_schema::invocation::{Invocation, ThreadState};
use tarn_ipc_schema::vcpu::{run_flags, Exit, Segment, INJECT_VALID, REGISTER_COUNT};
use tarn_ipc_schema::{CPtr, Error, MessageInfo, ObjectType, Rights};

/// Invokes `cap` with a raw `label` and `args` (MR0..): for labels the
/// typed functions below do not cover, such as wrong ones in tests.
/// (It and the two wrappers below are inlined: with the invocation's words
/// known at the call site, `load` folds into a few stores.)
#[inline]
pub fn invoke_raw(cap: CPtr, label: u64, args: &[u64]) -> Result<Message, Error> {
    let (info, registers) = syscall::load(label, args, &[]);
    syscall::call(cap, info, registers)
}

#[inline]
fn invoke(cap: CPtr, label: Invocation, args: &[u64]) -> Result<Message, Error> {
    invoke_raw(cap, label as u64, args)
}

#[inline]
fn invoke_unit(cap: CPtr, label: Invocation, args: &[u64]) -> Result<(), Error> {
    invoke(cap, label, args).map(|_| ())
}

/// Retypes part of `untyped` into `count` objects of `object_type` (with
/// `size_bits` where the type takes one) in slots `first..first + count` of
/// the CNode `dest_cnode`.
pub fn untyped_retype(
    untyped: CPtr,
    object_type: ObjectType,
    size_bits: u64,
    dest_cnode: CPtr,
    first: u64,
    count: u64,
) -> Result<(), Error> {
    untyped_retype_raw(
        untyped,
        object_type as u64,
        size_bits,
        dest_cnode,
        first,
        count,
    )
}

/// [`untyped_retype`] with a raw object-type number.
pub fn untyped_retype_raw(
    untyped: CPtr,
    object_type: u64,
    size_bits: u64,
    dest_cnode: CPtr,
    first: u64,
    count: u64,
) -> Result<(), Error> {
    invoke_unit(
        untyped,
        Invocation::UntypedRetype,
        &[object_type, size_bits, dest_cnode, first, count],
    )
}

/// Copies the capability in `src_cnode[src_slot]` to `dest_cnode[dest_slot]`
/// with rights reduced to `rights`.
pub fn cnode_copy(
    dest_cnode: CPtr,
    dest_slot: u64,
    src_cnode: CPtr,
    src_slot: u64,
    rights: Rights,
) -> Result<(), Error> {
    invoke_unit(
        dest_cnode,
        Invocation::CNodeCopy,
        &[dest_slot, src_cnode, src_slot, rights.0],
    )
}

/// Like [`cnode_copy`], and sets `badge` on an unbadged endpoint or
/// notification capability.
pub fn cnode_mint(
    dest_cnode: CPtr,
    dest_slot: u64,
    src_cnode: CPtr,
    src_slot: u64,
    rights: Rights,
    badge: u64,
) -> Result<(), Error> {
    invoke_unit(
        dest_cnode,
        Invocation::CNodeMint,
        &[dest_slot, src_cnode, src_slot, rights.0, badge],
    )
}

/// Moves the capability in `src_cnode[src_slot]` to `dest_cnode[dest_slot]`.
pub fn cnode_move(
    dest_cnode: CPtr,
    dest_slot: u64,
    src_cnode: CPtr,
    src_slot: u64,
) -> Result<(), Error> {
    invoke_unit(
        dest_cnode,
        Invocation::CNodeMove,
        &[dest_slot, src_cnode, src_slot],
    )
}

/// Deletes the capability in `cnode[slot]`.
pub fn cnode_delete(cnode: CPtr, slot: u64) -> Result<(), Error> {
    invoke_unit(cnode, Invocation::CNodeDelete, &[slot])
}

/// Deletes every capability derived from the one in `cnode[slot]`.
pub fn cnode_revoke(cnode: CPtr, slot: u64) -> Result<(), Error> {
    invoke_unit(cnode, Invocation::CNodeRevoke, &[slot])
}

/// Grows the CNode `cnode` into the larger, empty CNode whose only
/// capability is in `new` (the caller's CSpace); `new` then names the old,
/// emptied CNode (see [`Invocation::CNodeGrow`]).
pub fn cnode_grow(cnode: CPtr, new: CPtr) -> Result<(), Error> {
    invoke_unit(cnode, Invocation::CNodeGrow, &[new])
}

/// What a thread runs on (the arguments of `TcbConfigure`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcbConfig {
    /// The thread's CSpace root (a CNode capability in the caller's CSpace).
    pub cnode: CPtr,
    /// Its address space.
    pub vspace: CPtr,
    /// Its IPC-buffer frame (0 = none).
    pub ipc_buffer_frame: CPtr,
    /// Where that frame is mapped in the thread's address space.
    pub ipc_buffer_vaddr: u64,
    /// The endpoint its faults go to (0 = none).
    pub fault_endpoint: CPtr,
}

/// Configures a suspended thread.
pub fn tcb_configure(tcb: CPtr, config: &TcbConfig) -> Result<(), Error> {
    invoke_unit(
        tcb,
        Invocation::TcbConfigure,
        &[
            config.cnode,
            config.vspace,
            config.ipc_buffer_frame,
            config.ipc_buffer_vaddr,
            config.fault_endpoint,
        ],
    )
}

/// The registers `TcbWriteRegisters` sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Flags (the kernel always sets IF and clears IOPL).
    pub rflags: u64,
    /// First argument.
    pub rdi: u64,
    /// Second argument.
    pub rsi: u64,
    /// Third argument.
    pub rdx: u64,
}

/// Sets a thread's registers.
pub fn tcb_write_registers(tcb: CPtr, registers: &Registers) -> Result<(), Error> {
    invoke_unit(
        tcb,
        Invocation::TcbWriteRegisters,
        &[
            registers.rip,
            registers.rsp,
            registers.rflags,
            registers.rdi,
            registers.rsi,
            registers.rdx,
        ],
    )
}

/// What `TcbReadRegisters` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadStatus {
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Flags.
    pub rflags: u64,
    /// `rax` (a blocked thread's pending result).
    pub rax: u64,
    /// First argument register.
    pub rdi: u64,
    /// The scheduling state as the kernel reported it.
    pub state_raw: u64,
    /// ns the thread has run since it was created.
    pub ran_ns: u64,
}

impl ThreadStatus {
    /// The scheduling state (`None` for a number the ABI does not know).
    pub fn state(&self) -> Option<ThreadState> {
        thread_state(self.state_raw)
    }
}

/// Decodes a [`ThreadState`] number.
pub fn thread_state(value: u64) -> Option<ThreadState> {
    Some(match value {
        0 => ThreadState::Inactive,
        1 => ThreadState::Runnable,
        2 => ThreadState::BlockedOnSend,
        3 => ThreadState::BlockedOnReceive,
        4 => ThreadState::BlockedOnReply,
        5 => ThreadState::BlockedOnNotification,
        _ => return None,
    })
}

/// Reads a thread's registers and state.
pub fn tcb_read_registers(tcb: CPtr) -> Result<ThreadStatus, Error> {
    let reply = invoke(tcb, Invocation::TcbReadRegisters, &[])?;
    Ok(ThreadStatus {
        rip: reply.mrs[0],
        rsp: reply.mrs[1],
        rflags: reply.mrs[2],
        rax: reply.mrs[3],
        rdi: ipc_buffer::mr(4),
        state_raw: ipc_buffer::mr(5),
        ran_ns: ipc_buffer::mr(6),
    })
}

/// Makes a suspended, configured thread runnable.
pub fn tcb_resume(tcb: CPtr) -> Result<(), Error> {
    invoke_unit(tcb, Invocation::TcbResume, &[])
}

/// Stops a thread (aborting any IPC it is blocked in).
pub fn tcb_suspend(tcb: CPtr) -> Result<(), Error> {
    invoke_unit(tcb, Invocation::TcbSuspend, &[])
}

/// Moves a thread to CPU `cpu`.
pub fn tcb_set_affinity(tcb: CPtr, cpu: u64) -> Result<(), Error> {
    invoke_unit(tcb, Invocation::TcbSetAffinity, &[cpu])
}

/// Confines a thread to a Scheduler for good: it runs only on the CPUs
/// bound to it, and so does every thread it creates (`TcbConfine`).
pub fn tcb_confine(tcb: CPtr, scheduler: CPtr) -> Result<(), Error> {
    invoke_unit(tcb, Invocation::TcbConfine, &[scheduler])
}

/// Binds a notification to a thread (its signals also end the thread's
/// endpoint receives).
pub fn tcb_bind_notification(tcb: CPtr, notification: CPtr) -> Result<(), Error> {
    invoke_unit(tcb, Invocation::TcbBindNotification, &[notification])
}

/// Removes a thread's bound notification.
pub fn tcb_unbind_notification(tcb: CPtr) -> Result<(), Error> {
    invoke_unit(tcb, Invocation::TcbUnbindNotification, &[])
}

/// Maps a frame into `vspace` at `vaddr` with `rights` (READ, WRITE, EXECUTE).
pub fn frame_map(frame: CPtr, vspace: CPtr, vaddr: u64, rights: Rights) -> Result<(), Error> {
    invoke_unit(frame, Invocation::FrameMap, &[vspace, vaddr, rights.0])
}

/// Removes this frame capability's mapping.
pub fn frame_unmap(frame: CPtr) -> Result<(), Error> {
    invoke_unit(frame, Invocation::FrameUnmap, &[])
}

/// The frame's physical address.
pub fn frame_get_address(frame: CPtr) -> Result<u64, Error> {
    invoke(frame, Invocation::FrameGetAddress, &[]).map(|reply| reply.mrs[0])
}

/// Makes a handler capability for interrupt line `irq` in slot `dest_slot`.
pub fn irq_control_get(irq_control: CPtr, irq: u64, dest_slot: u64) -> Result<(), Error> {
    invoke_unit(irq_control, Invocation::IrqControlGet, &[irq, dest_slot])
}

/// Routes the handler's interrupt to `notification` (its badge is signalled).
pub fn irq_handler_set_notification(handler: CPtr, notification: CPtr) -> Result<(), Error> {
    invoke_unit(
        handler,
        Invocation::IrqHandlerSetNotification,
        &[notification],
    )
}

/// Unmasks the handler's line after the interrupt was handled.
pub fn irq_handler_ack(handler: CPtr) -> Result<(), Error> {
    invoke_unit(handler, Invocation::IrqHandlerAck, &[])
}

/// Reads `width` bytes (1, 2 or 4) from I/O port `port`.
pub fn ioport_in(ioport: CPtr, port: u64, width: u64) -> Result<u64, Error> {
    invoke(ioport, Invocation::IoPortIn, &[port, width]).map(|reply| reply.mrs[0])
}

/// Writes `width` bytes (1, 2 or 4) of `value` to I/O port `port`.
pub fn ioport_out(ioport: CPtr, port: u64, width: u64, value: u64) -> Result<(), Error> {
    invoke_unit(ioport, Invocation::IoPortOut, &[port, width, value])
}

/// Makes a capability for ports `first..=last` (inside this one's range) in
/// slot `dest_slot`.
pub fn ioport_issue(ioport: CPtr, first: u64, last: u64, dest_slot: u64) -> Result<(), Error> {
    invoke_unit(ioport, Invocation::IoPortIssue, &[first, last, dest_slot])
}

/// Powers the machine off with exit status `status`; returns only on error.
pub fn machine_power_off(machine: CPtr, status: u64) -> Result<(), Error> {
    invoke_unit(machine, Invocation::MachinePowerOff, &[status])
}

/// What `MachineCheckInvariants` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Invariants {
    /// Live kernel objects.
    pub live_objects: u64,
    /// Live capabilities.
    pub live_caps: u64,
    /// Whether every invariant holds.
    pub consistent: bool,
    /// CPUs online.
    pub cpus: u64,
    /// ns all CPUs spent idle since boot.
    pub idle_ns: u64,
    /// ns all CPUs spent in system threads.
    pub system_ns: u64,
    /// ns all CPUs spent in dispatched threads.
    pub dispatched_ns: u64,
    /// Bytes all untyped capabilities can still retype (0 when the check
    /// failed).
    pub free_untyped_bytes: u64,
}

/// Checks the kernel's invariants.
pub fn machine_check_invariants(machine: CPtr) -> Result<Invariants, Error> {
    let reply = invoke(machine, Invocation::MachineCheckInvariants, &[])?;
    Ok(Invariants {
        live_objects: reply.mrs[0],
        live_caps: reply.mrs[1],
        consistent: reply.mrs[2] == 1,
        cpus: reply.mrs[3],
        idle_ns: ipc_buffer::mr(4),
        system_ns: ipc_buffer::mr(5),
        dispatched_ns: ipc_buffer::mr(6),
        free_untyped_bytes: ipc_buffer::mr(7),
    })
}

/// The kernel's clock and where all CPUs' time went (`MachineTimes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineTimes {
    /// Now (ns since boot; the clock event rings use).
    pub now_ns: u64,
    /// ns all CPUs spent idle.
    pub idle_ns: u64,
    /// ns all CPUs spent in system threads.
    pub system_ns: u64,
    /// ns all CPUs spent in dispatched threads.
    pub dispatched_ns: u64,
}

/// Reads the kernel's clock and time split.
pub fn machine_times(machine: CPtr) -> Result<MachineTimes, Error> {
    let reply = invoke(machine, Invocation::MachineTimes, &[])?;
    Ok(MachineTimes {
        now_ns: reply.mrs[0],
        idle_ns: reply.mrs[1],
        system_ns: reply.mrs[2],
        dispatched_ns: reply.mrs[3],
    })
}

/// The message-info word of an invocation with `length` arguments.
pub fn invocation_info(label: Invocation, length: u64) -> MessageInfo {
    MessageInfo::new(label as u64, 0, length)
}

/// Binds CPU `cpu` (a Cpu capability) to `scheduler`, with the event-ring
/// frame `ring` and the notification `notify` signalled on new events.
pub fn scheduler_bind_cpu(
    scheduler: CPtr,
    cpu: CPtr,
    ring: CPtr,
    notify: CPtr,
) -> Result<(), Error> {
    invoke_unit(
        scheduler,
        Invocation::SchedulerBindCpu,
        &[cpu, ring, notify],
    )
}

/// Unbinds CPU `cpu` (a Cpu capability) from `scheduler`, evicting its queue.
pub fn scheduler_unbind_cpu(scheduler: CPtr, cpu: CPtr) -> Result<(), Error> {
    invoke_unit(scheduler, Invocation::SchedulerUnbindCpu, &[cpu])
}

/// Adopts thread `tcb` into `scheduler` under `thread_id`.
pub fn scheduler_adopt(scheduler: CPtr, tcb: CPtr, thread_id: u64) -> Result<(), Error> {
    invoke_unit(scheduler, Invocation::SchedulerAdopt, &[tcb, thread_id])
}

/// Returns thread `tcb` to the system FIFO.
pub fn scheduler_release(scheduler: CPtr, tcb: CPtr) -> Result<(), Error> {
    invoke_unit(scheduler, Invocation::SchedulerRelease, &[tcb])
}

/// Queues `(tcb, budget_ns)` on CPU index `cpu`.
pub fn scheduler_dispatch(
    scheduler: CPtr,
    cpu: u64,
    tcb: CPtr,
    budget_ns: u64,
) -> Result<(), Error> {
    invoke_unit(
        scheduler,
        Invocation::SchedulerDispatch,
        &[cpu, tcb, budget_ns],
    )
}

/// [`scheduler_dispatch`], then waits on `notification` (as
/// [`crate::syscall::wait`] without a timeout) in the same system call;
/// returns the notification word. On an error nothing was dispatched.
pub fn scheduler_dispatch_wait(
    scheduler: CPtr,
    cpu: u64,
    tcb: CPtr,
    budget_ns: u64,
    notification: CPtr,
) -> Result<u64, Error> {
    invoke(
        scheduler,
        Invocation::SchedulerDispatchWait,
        &[cpu, tcb, budget_ns, notification],
    )
    .map(|reply| reply.badge)
}

/// Sets CPU index `cpu`'s tick period (0 = off).
pub fn scheduler_set_tick(scheduler: CPtr, cpu: u64, period_ns: u64) -> Result<(), Error> {
    invoke_unit(scheduler, Invocation::SchedulerSetTick, &[cpu, period_ns])
}

/// What `SchedulerQueryThread` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdoptedThread {
    /// Raw [`ThreadState`].
    pub state_raw: u64,
    /// Its id.
    pub thread_id: u64,
    /// CPU index + 1 of the queue holding it (0 = none).
    pub queued_on: u64,
    /// Total ns run while adopted.
    pub ran_ns: u64,
    /// CPU index + 1 of the last queue that held it since its adoption
    /// (0 = none yet).
    pub last_cpu: u64,
}

/// Queries an adopted thread (resynchronisation after ring overflow).
pub fn scheduler_query_thread(scheduler: CPtr, tcb: CPtr) -> Result<AdoptedThread, Error> {
    let r = invoke(scheduler, Invocation::SchedulerQueryThread, &[tcb])?;
    Ok(AdoptedThread {
        state_raw: r.mrs[0],
        thread_id: r.mrs[1],
        queued_on: r.mrs[2],
        ran_ns: r.mrs[3],
        last_cpu: ipc_buffer::mr(4),
    })
}

/// (CPU index, x2APIC id, bound to a scheduler) of a Cpu capability.
pub fn cpu_info(cpu: CPtr) -> Result<(u64, u64, bool), Error> {
    let r = invoke(cpu, Invocation::CpuInfo, &[])?;
    Ok((r.mrs[0], r.mrs[1], r.mrs[2] != 0))
}

/// Ends CPU index `cpu`'s running entry now (`Preempted` event).
pub fn scheduler_preempt(scheduler: CPtr, cpu: u64) -> Result<(), Error> {
    invoke_unit(scheduler, Invocation::SchedulerPreempt, &[cpu])
}

/// Binds virtual CPU `vcpu` to thread `tcb`, guest memory `guest_space`
/// and the register page in frame `page` (see [`RegisterPage`]).
pub fn vcpu_bind(vcpu: CPtr, tcb: CPtr, guest_space: CPtr, page: CPtr) -> Result<(), Error> {
    invoke_unit(vcpu, Invocation::VcpuBind, &[tcb, guest_space, page])
}

/// Sets a segment or descriptor-table register of `vcpu` (`attributes` in
/// the packed form of [`tarn_ipc_schema::vcpu::attributes`]).
pub fn vcpu_write_segment(
    vcpu: CPtr,
    segment: Segment,
    selector: u64,
    base: u64,
    limit: u64,
    attributes: u64,
) -> Result<(), Error> {
    invoke_unit(
        vcpu,
        Invocation::VcpuWriteSegment,
        &[segment as u64, selector, base, limit, attributes],
    )
}

/// What one `VcpuRun` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRunArgs {
    /// [`tarn_ipc_schema::vcpu::run_flags`] (LOAD_REGISTERS is set by
    /// [`vcpu_run`] when `load` is true).
    pub flags: u64,
    /// Load the whole register file before entering.
    pub load: bool,
    /// Without `load`: load only these registers (bit `r` = `Reg` `r`);
    /// the others keep the guest's values. The VMM names the registers it
    /// changed since the last exit.
    pub load_mask: u32,
    /// An interrupt vector to inject.
    pub inject: Option<u8>,
    /// Timeout in ns (0 = none).
    pub timeout_ns: u64,
    /// Exceptions to intercept (bit per vector).
    pub exception_bitmap: u32,
}

/// A normalised exit (the register page's exit record).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuExit {
    /// The raw [`Exit`] number.
    pub kind_raw: u64,
    /// Its fields.
    pub fields: [u64; 4],
    /// RIP after the exiting instruction (0 = not applicable).
    pub next_rip: u64,
    /// An injected interrupt is still waiting for the guest.
    pub injection_pending: bool,
}

impl VcpuExit {
    /// The exit kind (`None` for a number this ABI does not know).
    pub fn kind(&self) -> Option<Exit> {
        Exit::from_u64(self.kind_raw)
    }
}

/// Runs `vcpu` (bound to the calling thread, with `page` its register
/// page) until an exit for the VMM. The register file in `page` is loaded
/// into the guest when `args.load` (only the registers in `args.load_mask`
/// otherwise), and always overwritten with the guest's registers at the
/// exit; the exit is read from the page.
#[inline]
pub fn vcpu_run(
    vcpu: CPtr,
    args: &VcpuRunArgs,
    page: &mut RegisterPage,
) -> Result<VcpuExit, Error> {
    vcpu_run_in_place(vcpu, args)?;
    let p = page.get();
    Ok(VcpuExit {
        kind_raw: p.exit,
        fields: p.fields,
        next_rip: p.next_rip,
        injection_pending: p.injection_pending != 0,
    })
}

/// [`vcpu_run`] without reading the exit: it stays in the Vcpu's register
/// page (which need not be mapped here).
#[inline]
pub fn vcpu_run_in_place(vcpu: CPtr, args: &VcpuRunArgs) -> Result<(), Error> {
    let mut flags = args.flags;
    if args.load {
        flags |= run_flags::LOAD_REGISTERS;
    } else {
        flags |= run_flags::load(args.load_mask & ((1 << REGISTER_COUNT) - 1));
    }
    let inject = args
        .inject
        .map_or(0, |vector| INJECT_VALID | u64::from(vector));
    // The four words travel in registers only (the kernel reads MR0..MR3
    // of an invocation from them); the reply has none.
    let info = MessageInfo::new(Invocation::VcpuRun as u64, 0, 4);
    syscall::call(
        vcpu,
        info,
        [
            flags,
            inject,
            args.timeout_ns,
            u64::from(args.exception_bitmap),
        ],
    )
    .map(|_| ())
}
