//! Operations on kernel objects: the label of a `Call` on an object's
//! capability, with its arguments (MR0..) and results (reply MR0..).
//! Slot arguments are indices in the caller's root CNode unless a CNode
//! capability is named explicitly.

/// An object operation (the message label of a `Call` on a non-endpoint capability).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Untyped. MR0 = [`crate::ObjectType`], MR1 = size_bits (CNode: log2 slots,
    /// 1..=16; VSpace: log2 bytes, 15..=24, the first page being the PML4 and
    /// the rest page-table memory for its mappings; Untyped: log2 bytes,
    /// 12..=40; others ignore it), MR2 = destination CNode cptr, MR3 =
    /// first destination slot, MR4 = count (1..=256). The slots must be empty.
    /// Objects are placed at the untyped's watermark, aligned to their size,
    /// and start zeroed. Sizes: [`crate::object_size`]. Revoking the untyped
    /// capability destroys everything made from it and resets the watermark.
    UntypedRetype = 1,

    /// CNode (destination). MR0 = destination slot, MR1 = source CNode cptr,
    /// MR2 = source slot, MR3 = rights mask (the copy gets source ∩ mask).
    /// The copy is a child of the source in the derivation tree.
    CNodeCopy = 2,
    /// CNode (destination). MR0 = destination slot, MR1 = source CNode cptr,
    /// MR2 = source slot, MR3 = rights mask, MR4 = badge (endpoint and
    /// notification capabilities only: a non-zero badge on a badged source is
    /// `IllegalState`; a badge on another type is `InvalidArgument`; badge 0
    /// makes a plain copy).
    /// Untyped and IrqHandler capabilities are never copied or minted
    /// (`IllegalOperation`): move them instead.
    CNodeMint = 3,
    /// CNode (destination). MR0 = destination slot, MR1 = source CNode cptr,
    /// MR2 = source slot. Moves the capability and its place in the tree.
    CNodeMove = 4,
    /// CNode. MR0 = slot. Deletes the capability (an empty slot is fine);
    /// deleting the last capability to an object destroys the object.
    CNodeDelete = 5,
    /// CNode. MR0 = slot (must hold a capability). Deletes every capability
    /// derived from this one, in every CNode; the capability itself stays.
    CNodeRevoke = 6,
    /// CNode (the one to grow, OLD). MR0 = slot (in the caller's CSpace)
    /// of the only capability to an empty CNode with more slots (NEW,
    /// retyped by the caller). In one step: every capability in OLD moves
    /// to the same index in NEW, with its place in the derivation tree (as
    /// `CNodeMove`); every capability naming OLD (threads' CSpace roots
    /// among them) then names NEW, and the one that named NEW names OLD,
    /// each taking the other's place in the tree (so NEW stays a child of
    /// the memory it was retyped from). No capability pointer changes:
    /// what a thread looked up before the call and what it looks up after
    /// are the same capabilities. The capability in MR0's slot is left
    /// naming the emptied OLD (delete it, or revoke OLD's memory, to free
    /// it). Errors: MR0 not a CNode (`WrongType`); NEW not larger than OLD
    /// (`InvalidArgument`); a capability to NEW besides MR0's, or a
    /// capability to OLD that is not in the derivation subtree of the
    /// topmost one above the invoked capability (`IllegalState`: the kernel
    /// rewrites exactly one such family); a capability in NEW at an index
    /// below OLD's size (`SlotOccupied`). Costs one step per slot of OLD
    /// under the kernel lock (README, "Scale"), so CNodes of at most 2^16
    /// slots grow.
    CNodeGrow = 7,

    /// Tcb. MR0 = CNode cptr (the thread's cspace), MR1 = VSpace cptr, MR2 =
    /// IPC-buffer frame cptr (0 = none), MR3 = IPC-buffer virtual address,
    /// MR4 = fault endpoint cptr (0 = none). The thread keeps copies of these
    /// capabilities (children of the ones given: deleting or revoking those,
    /// or their untyped memory, takes the copies too); it must be suspended
    /// (never resumed, or suspended). Once its IPC-buffer copy is gone the
    /// thread has no buffer: messages to and from it carry MR0..MR3 only.
    TcbConfigure = 10,
    /// Tcb. MR0 = RIP, MR1 = RSP, MR2 = RFLAGS (IF is always set, IOPL
    /// cleared), MR3 = RDI, MR4 = RSI, MR5 = RDX (the thread's first arguments).
    TcbWriteRegisters = 11,
    /// Tcb. Reply MR0 = RIP, MR1 = RSP, MR2 = RFLAGS, MR3 = RAX, MR4 = RDI,
    /// MR5 = state ([`ThreadState`] as u64), MR6 = ns the thread has run
    /// since it was created (in user mode or in a guest).
    TcbReadRegisters = 12,
    /// Tcb. Makes a suspended, configured thread runnable.
    TcbResume = 13,
    /// Tcb. Stops the thread (aborting any IPC it is blocked in). A thread
    /// inside `VcpuRun` leaves the guest, and that call is over: once
    /// resumed, it returns from `VcpuRun` with a
    /// [`crate::vcpu::Exit::Timeout`] exit whose field 0 is 1.
    TcbSuspend = 14,
    /// Tcb. MR0 = CPU index the thread runs on (`OutOfRange` past the online
    /// CPUs). A thread confined to a Scheduler ([`Invocation::TcbConfine`])
    /// takes only a CPU bound to that Scheduler now: any other is `NotOwned`
    /// (also while the Scheduler has no CPU at all).
    TcbSetAffinity = 15,
    /// Tcb. MR0 = notification cptr: signals to it also wake the thread when
    /// it waits on an endpoint (the badge arrives with the `Recv`).
    TcbBindNotification = 16,
    /// Tcb. Removes the bound notification.
    TcbUnbindNotification = 17,
    /// Tcb. MR0 = Scheduler cptr. Confines the thread to that Scheduler for
    /// the rest of its life: it runs only on CPUs bound to the Scheduler
    /// (`TcbSetAffinity` elsewhere is `NotOwned`; a CPU unbound from it
    /// sends its runnable confined threads to the lowest CPU still bound),
    /// and while the Scheduler has no CPU at all, only in the idle time of
    /// the CPU it was last on (behind every system thread and dispatched
    /// entry there). Every thread a confined thread retypes from untyped
    /// memory is confined to the same Scheduler. Another Scheduler cannot
    /// adopt it (`SchedulerAdopt`: `NotOwned`). A confined thread that runs
    /// [`crate::sched::WATCHDOG_NS`] as a system thread without blocking
    /// and without a `SchedulerDispatch` is stopped with a
    /// [`crate::fault::WATCHDOG`] fault. When the Scheduler is destroyed,
    /// its confined threads are suspended for good (`TcbResume`:
    /// `IllegalState`). Errors: a confined caller (`IllegalOperation`: a
    /// confined thread can neither confine nor widen anything), a thread
    /// confined already (`IllegalState`: confinement is never changed or
    /// lifted), a thread adopted by another Scheduler (`NotOwned`).
    TcbConfine = 18,

    /// Frame. MR0 = VSpace cptr, MR1 = virtual address (aligned to the frame
    /// size, below 0x0000_8000_0000_0000), MR2 = rights (subset of the cap's:
    /// READ, WRITE, EXECUTE). A frame capability maps at most once; copy the
    /// capability to map a frame twice.
    FrameMap = 20,
    /// Frame. Unmaps this capability's mapping.
    FrameUnmap = 21,
    /// Frame. Reply MR0 = physical address (for device and VMM use).
    FrameGetAddress = 22,

    /// IrqControl. MR0 = IRQ (0..=15: ISA IRQs, routed through the ACPI
    /// overrides; 16..=23: GSIs), MR1 = destination slot. One handler per IRQ
    /// (`IllegalState` if taken). The line stays masked until a notification
    /// is set; each interrupt masks it again until `IrqHandlerAck`.
    IrqControlGet = 30,
    /// IrqHandler. MR0 = notification cptr (the badge of that capability is
    /// signalled on each interrupt).
    IrqHandlerSetNotification = 31,
    /// IrqHandler. Unmasks the line after the driver handled it.
    IrqHandlerAck = 32,

    /// IoPort. MR0 = port, MR1 = width (1, 2, 4). Reply MR0 = value.
    IoPortIn = 40,
    /// IoPort. MR0 = port, MR1 = width (1, 2, 4), MR2 = value.
    IoPortOut = 41,
    /// IoPort. MR0 = first port, MR1 = last port (inclusive, inside this
    /// capability's range), MR2 = destination slot. Makes a narrower child.
    IoPortIssue = 42,

    /// Machine. MR0 = exit status. Prints `tarn: exit status N` and powers off.
    MachinePowerOff = 50,
    /// Machine. Checks the kernel's invariants over the whole system (no
    /// bound: every capability through the derivation tree and every slot
    /// of every live CNode, TCB and Vcpu; reference counts; that no live
    /// object lies in retypable memory; and every reference the kernel keeps
    /// between objects: IPC buffers, queues, reply links, bindings,
    /// Scheduler lists, dispatch queues, timeouts, Vcpus, interrupt lines,
    /// the VSpace table; and that no CPU ever started a thread of a
    /// scheduler it is not bound to). The kernel prints the first broken
    /// invariant (`tarn: warning: invariant broken: ...`). Reply MR0 = live
    /// objects, MR1 = live capabilities, MR2 = 1 if every invariant holds,
    /// MR3 = CPUs online, MR4..MR6 = ns all CPUs spent idle, in system
    /// threads and in dispatched threads since boot (up to now, the current
    /// spans included), MR7 = bytes all untyped capabilities can still
    /// retype (each its size minus its watermark; 0 if MR2 is 0).
    MachineCheckInvariants = 51,
    /// Machine. The clock and the time split alone (no invariant walk):
    /// reply MR0 = now (ns, the clock event rings use), MR1..MR3 = ns all
    /// CPUs spent idle, in system threads and in dispatched threads.
    MachineTimes = 52,

    /// Scheduler. MR0 = Cpu cptr, MR1 = event-ring frame cptr (4 KiB,
    /// READ|WRITE; laid out as [`crate::sched::EventRing`]), MR2 = notification
    /// cptr (WRITE) the kernel signals when it adds events. The CPU must be
    /// unbound (`IllegalState`). Deleting or revoking the Cpu capability used
    /// here unbinds the CPU. The kernel keeps copies of the ring and
    /// notification capabilities (children of those given): deleting or
    /// revoking either of those, or their untyped memory, unbinds the CPU
    /// too, and nothing is written to the ring after that; the notification
    /// stays alive until the CPU is unbound.
    SchedulerBindCpu = 60,
    /// Scheduler. MR0 = Cpu cptr. Evicts the CPU's queue (`Evicted` events)
    /// and unbinds it: it runs only system threads until bound again.
    SchedulerUnbindCpu = 61,
    /// Scheduler. MR0 = Tcb cptr, MR1 = thread id (non-zero; events name the
    /// thread by it). The thread leaves the system FIFO and runs only when
    /// dispatched; if runnable, a `Woken` event follows. Adopting a thread
    /// this scheduler already has gives it the new id (and a `Woken` event if
    /// it is runnable and not queued): how a replacement server takes over.
    /// A thread of another scheduler is `IllegalState`.
    SchedulerAdopt = 62,
    /// Scheduler. MR0 = Tcb cptr. The thread returns to the system FIFO.
    SchedulerRelease = 63,
    /// Scheduler. MR0 = CPU index, MR1 = Tcb cptr, MR2 = budget in ns (> 0).
    /// Appends `(thread, budget)` to the CPU's dispatch queue. The CPU must be
    /// bound to this scheduler and the thread adopted by it (`NotOwned`),
    /// runnable and in no queue (`IllegalState`); `QueueFull` at
    /// [`crate::sched::DISPATCH_QUEUE_LEN`] entries.
    SchedulerDispatch = 64,
    /// Scheduler. MR0 = CPU index (bound to this scheduler), MR1 = tick
    /// period in ns (0 = no tick): a `Tick` event every period.
    SchedulerSetTick = 65,
    /// Scheduler. MR0 = Tcb cptr (adopted by this scheduler). Reply MR0 =
    /// [`ThreadState`], MR1 = thread id, MR2 = CPU index + 1 of the queue it is
    /// in (0 = none), MR3 = total ns it has run while adopted (including the
    /// entry in progress), MR4 = CPU index + 1 of the last queue that held
    /// it since its adoption (0 = none yet). For resynchronising after an
    /// event-ring overflow, and `vcpu-list`'s CPU column.
    SchedulerQueryThread = 66,
    /// Scheduler. MR0 = CPU index (bound to this scheduler). Ends the CPU's
    /// running entry now (reported as `Preempted` with its run time); the
    /// next entry, if any, starts.
    SchedulerPreempt = 67,
    /// Scheduler. `SchedulerDispatch` (MR0..MR2 as there), then MR3 =
    /// notification cptr: the caller waits on it as `Wait` does, without a
    /// timeout (an agent's loop in one system call). Both halves are checked
    /// before either takes effect: the notification must be one
    /// (`WrongType`), readable (`InsufficientRights`) and bound to no other
    /// thread (`IllegalState`), besides `SchedulerDispatch`'s own errors; on
    /// any error nothing is queued and the caller does not wait. The result
    /// is the `Wait`'s: the notification word (in the badge register).
    SchedulerDispatchWait = 68,
    /// Cpu. Reply MR0 = CPU index, MR1 = x2APIC id, MR2 = 1 if bound to a
    /// scheduler.
    CpuInfo = 70,

    /// Vcpu. MR0 = Tcb cptr (the thread that will run it; it must have no
    /// virtual CPU yet), MR1 = GuestSpace cptr (its guest-physical memory),
    /// MR2 = Frame cptr (the register page, [`crate::vcpu::RegisterPage`]:
    /// `WrongType` for anything but a frame, `InsufficientRights` without
    /// read and write rights). The virtual CPU must be unbound
    /// (`IllegalState`). It starts in the state [`crate::vcpu`] describes;
    /// the Vcpu keeps copies of the GuestSpace and frame capabilities.
    /// `NotSupported` on a machine without SVM or VMX.
    VcpuBind = 80,
    /// Vcpu. MR0 = [`crate::vcpu::Segment`], MR1 = selector, MR2 = base,
    /// MR3 = limit, MR4 = attributes (the 12-bit packed form of
    /// [`crate::vcpu::attributes`]; ignored for GDTR and IDTR). Only the
    /// thread the Vcpu is bound to may call it (`IllegalState` for any other
    /// thread, and for an unbound Vcpu).
    VcpuWriteSegment = 81,
    /// Vcpu. Enters the guest on the calling thread, which must be the one
    /// the Vcpu is bound to. MR0 = [`crate::vcpu::run_flags`], MR1 = an
    /// interrupt to inject ([`crate::vcpu::INJECT_VALID`] | vector, 0 =
    /// none), MR2 = timeout in ns (0 = none; a [`crate::vcpu::Exit::Timeout`]
    /// exit when it passes), MR3 = exception intercept bitmap (bit v: guest
    /// exception v exits as [`crate::vcpu::Exit::Exception`]). Returns on
    /// the first exit the kernel does not handle itself, with no message
    /// words: the exit record and the guest registers are in the register
    /// page (see [`crate::vcpu`]). A `TcbSuspend` of the thread ends the
    /// call (a `Timeout` exit with field 0 = 1 when it is resumed), so the
    /// guest never runs past the timeout asked for. `ObjectDeleted` (also
    /// while in the guest) once the Vcpu's copy of its GuestSpace
    /// capability is gone (that capability or its memory was revoked): the
    /// guest never runs on freed page tables; and once its copy of the
    /// register page's capability is gone: the kernel never writes a page
    /// it no longer holds.
    VcpuRun = 82,
}

impl Invocation {
    /// Every invocation, in label order (what [`Invocation::from_u64`]
    /// decodes; a host test keeps the two in step), for the fuzzers'
    /// coverage tables.
    pub const ALL: &'static [Invocation] = &[
        Self::UntypedRetype,
        Self::CNodeCopy,
        Self::CNodeMint,
        Self::CNodeMove,
        Self::CNodeDelete,
        Self::CNodeRevoke,
        Self::CNodeGrow,
        Self::TcbConfigure,
        Self::TcbWriteRegisters,
        Self::TcbReadRegisters,
        Self::TcbResume,
        Self::TcbSuspend,
        Self::TcbSetAffinity,
        Self::TcbBindNotification,
        Self::TcbUnbindNotification,
        Self::TcbConfine,
        Self::FrameMap,
        Self::FrameUnmap,
        Self::FrameGetAddress,
        Self::IrqControlGet,
        Self::IrqHandlerSetNotification,
        Self::IrqHandlerAck,
        Self::IoPortIn,
        Self::IoPortOut,
        Self::IoPortIssue,
        Self::MachinePowerOff,
        Self::MachineCheckInvariants,
        Self::MachineTimes,
        Self::SchedulerBindCpu,
        Self::SchedulerUnbindCpu,
        Self::SchedulerAdopt,
        Self::SchedulerRelease,
        Self::SchedulerDispatch,
        Self::SchedulerSetTick,
        Self::SchedulerQueryThread,
        Self::SchedulerPreempt,
        Self::SchedulerDispatchWait,
        Self::CpuInfo,
        Self::VcpuBind,
        Self::VcpuWriteSegment,
        Self::VcpuRun,
    ];

    /// Decodes a label.
    pub fn from_u64(value: u64) -> Option<Self> {
        Some(match value {
            1 => Self::UntypedRetype,
            2 => Self::CNodeCopy,
            3 => Self::CNodeMint,
            4 => Self::CNodeMove,
            5 => Self::CNodeDelete,
            6 => Self::CNodeRevoke,
            7 => Self::CNodeGrow,
            10 => Self::TcbConfigure,
            11 => Self::TcbWriteRegisters,
            12 => Self::TcbReadRegisters,
            13 => Self::TcbResume,
            14 => Self::TcbSuspend,
            15 => Self::TcbSetAffinity,
            16 => Self::TcbBindNotification,
            17 => Self::TcbUnbindNotification,
            18 => Self::TcbConfine,
            20 => Self::FrameMap,
            21 => Self::FrameUnmap,
            22 => Self::FrameGetAddress,
            30 => Self::IrqControlGet,
            31 => Self::IrqHandlerSetNotification,
            32 => Self::IrqHandlerAck,
            40 => Self::IoPortIn,
            41 => Self::IoPortOut,
            42 => Self::IoPortIssue,
            50 => Self::MachinePowerOff,
            51 => Self::MachineCheckInvariants,
            52 => Self::MachineTimes,
            60 => Self::SchedulerBindCpu,
            61 => Self::SchedulerUnbindCpu,
            62 => Self::SchedulerAdopt,
            63 => Self::SchedulerRelease,
            64 => Self::SchedulerDispatch,
            65 => Self::SchedulerSetTick,
            66 => Self::SchedulerQueryThread,
            67 => Self::SchedulerPreempt,
            68 => Self::SchedulerDispatchWait,
            70 => Self::CpuInfo,
            80 => Self::VcpuBind,
            81 => Self::VcpuWriteSegment,
            82 => Self::VcpuRun,
            _ => return None,
        })
    }
}

/// A thread's scheduling state, as `TcbReadRegisters` reports it.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// Not running: never resumed, suspended, or stopped after a fault.
    Inactive = 0,
    /// Runnable (running or queued).
    Runnable = 1,
    /// Blocked sending on an endpoint.
    BlockedOnSend = 2,
    /// Blocked receiving on an endpoint.
    BlockedOnReceive = 3,
    /// Blocked waiting for the reply to a `Call` (or to a fault message).
    BlockedOnReply = 4,
    /// Blocked waiting on a notification.
    BlockedOnNotification = 5,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_labels_round_trip() {
        for n in 0..1024 {
            if let Some(i) = Invocation::from_u64(n) {
                assert_eq!(i as u64, n);
            }
        }
        assert_eq!(Invocation::ALL.len(), 41);
        assert!(
            (0..1024)
                .filter_map(Invocation::from_u64)
                .eq(Invocation::ALL.iter().copied()),
            "ALL lists what from_u64 decodes"
        );
    }
}
