//! The contract every boundary in Tarn compiles against: syscall numbers and
//! register conventions, the error enum, object types, rights, the
//! message-info word, invocation labels, the IPC buffer, fault messages and the
//! root task's boot information. The kernel and all user code share this one
//! definition; it is `no_std`, free of `unsafe`, and tested on the host.
//!
//! # System call convention (x86-64 `syscall`)
//!
//! | register | in | out |
//! | --- | --- | --- |
//! | `rax` | [`Syscall`] number | [`Error`] code (0 = success) |
//! | `rdi` | capability pointer (slot index in the caller's root CNode) | badge of the sender (receives) |
//! | `rsi` | [`MessageInfo`] word | [`MessageInfo`] word |
//! | `rdx`, `r10`, `r8`, `r9` | message registers MR0..MR3 | MR0..MR3 |
//!
//! `rcx` and `r11` are clobbered (the `syscall` instruction uses them); every
//! other register is preserved. Message registers MR4 and up live in the
//! thread's [`IpcBuffer`]. `Wait` takes a relative timeout in `rdx` (0 = none);
//! `DebugWrite` takes a user pointer in `rdi` and a length in `rsi`.
//!
//! # Invocations
//!
//! Operations on kernel objects (retype, copy a capability, map a frame, ...)
//! are a `Call` on the object's capability: the message label names the
//! operation ([`Invocation`]), the message registers carry the arguments, and
//! the kernel answers at once with the result in `rax` and MR0... A `Call` on
//! an endpoint capability is IPC to whoever receives on it.
//!
//! # Virtual CPUs
//!
//! A `Vcpu` bound to a thread runs its guest when that thread calls
//! `VcpuRun`; the call returns with a normalised exit record and the guest's
//! registers in the thread's IPC buffer. The whole ABI (register file,
//! segments, exit kinds and their fields, interrupt injection, HLT) is in
//! [`vcpu`].

#![no_std]
#![forbid(unsafe_code)]

pub mod boot;
pub mod control;
pub mod cpuset;
pub mod invocation;
pub mod sched;
pub mod sched_protocol;
pub mod vcpu;

pub use cpuset::{CpuSet, MAX_CPUS};
pub use invocation::Invocation;

/// Capability pointer: an index into the caller's root CNode.
pub type CPtr = u64;

/// Most message words a message may carry (MR0..MR63).
pub const MAX_MESSAGE_WORDS: usize = 64;
/// Message words passed in registers.
pub const REGISTER_MESSAGE_WORDS: usize = 4;
/// Most capabilities one message may carry.
pub const MAX_EXTRA_CAPS: usize = 3;
/// Longest text one `DebugWrite` prints.
pub const MAX_DEBUG_WRITE: usize = 512;

/// Bytes of one capability slot (a CNode of 2^n slots is 2^(n+6) bytes).
pub const SLOT_BYTES: u64 = 64;
/// log2 bytes of a TCB.
pub const TCB_SIZE_BITS: u64 = 11;
/// Bytes of an endpoint or a notification.
pub const IPC_OBJECT_BYTES: u64 = 64;
/// log2 bytes of a Scheduler (its header, its CPU set and two lists).
pub const SCHEDULER_SIZE_BITS: u64 = 7;
/// log2 bytes of a virtual CPU (its VMCB or VMCS page, its software state
/// and its guest FPU area).
pub const VCPU_SIZE_BITS: u64 = 14;

/// Bytes an object of `object_type` with `size_bits` (as in `UntypedRetype`)
/// occupies in untyped memory; `None` for types that are not retyped or a
/// size outside the type's range.
pub const fn object_size(object_type: ObjectType, size_bits: u64) -> Option<u64> {
    match object_type {
        ObjectType::Untyped if size_bits >= 12 && size_bits <= 40 => Some(1 << size_bits),
        ObjectType::CNode if size_bits >= 1 && size_bits <= 16 => Some(SLOT_BYTES << size_bits),
        ObjectType::Tcb => Some(1 << TCB_SIZE_BITS),
        ObjectType::Endpoint | ObjectType::Notification => Some(IPC_OBJECT_BYTES),
        ObjectType::Frame4K => Some(4096),
        ObjectType::Frame2M => Some(2 << 20),
        ObjectType::VSpace if size_bits >= 15 && size_bits <= 24 => Some(1 << size_bits),
        ObjectType::Scheduler => Some(1 << SCHEDULER_SIZE_BITS),
        ObjectType::GuestSpace if size_bits >= 15 && size_bits <= 24 => Some(1 << size_bits),
        ObjectType::Vcpu => Some(1 << VCPU_SIZE_BITS),
        _ => None,
    }
}

/// System call numbers (`rax`).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    /// Send a message on an endpoint (blocks until a receiver takes it), or
    /// signal a notification.
    Send = 1,
    /// Send only if a receiver is waiting; otherwise fail with `WouldBlock`.
    NbSend = 2,
    /// Send and wait for the reply (IPC), or invoke a kernel object. The
    /// call ends with `ObjectDeleted` if the reply can no longer come: the
    /// server is destroyed, or receives another call before replying.
    Call = 3,
    /// Wait for a message on an endpoint (or a signal on a notification).
    Recv = 4,
    /// Receive only if a sender is waiting (poll); otherwise `WouldBlock`.
    NbRecv = 5,
    /// Reply to the thread whose `Call` this thread received last.
    Reply = 6,
    /// Reply, then wait on the endpoint in `rdi` (the server loop). If the
    /// capability in `rdi` cannot be looked up, the call fails before
    /// replying (nothing changes; a plain `Reply` still answers the caller).
    ReplyRecv = 7,
    /// Signal a notification: OR the capability's badge into its word.
    Signal = 8,
    /// Wait for a notification's word to become non-zero, optionally with a
    /// relative timeout in nanoseconds (`rdx`, 0 = none; `Timeout` on expiry).
    /// The word arrives in `rdi` (and is cleared). A `Recv` on an endpoint
    /// woken by the thread's bound notification looks the same: `rdi` = the
    /// word, message-info 0.
    Wait = 9,
    /// Read-and-clear a notification's word without blocking (`WouldBlock` if 0).
    Poll = 10,
    /// Give up the rest of this time slice.
    Yield = 11,
    /// Print text on the kernel console as one line (`rdi` pointer, `rsi`
    /// length ≤ [`MAX_DEBUG_WRITE`], else `InvalidArgument`; a newline is added
    /// unless the text ends with one).
    DebugWrite = 12,
}

impl Syscall {
    /// Every system call, in number order (what [`Syscall::from_u64`]
    /// decodes; a host test keeps the two in step).
    pub const ALL: &'static [Syscall] = &[
        Self::Send,
        Self::NbSend,
        Self::Call,
        Self::Recv,
        Self::NbRecv,
        Self::Reply,
        Self::ReplyRecv,
        Self::Signal,
        Self::Wait,
        Self::Poll,
        Self::Yield,
        Self::DebugWrite,
    ];

    /// Decodes a syscall number.
    pub fn from_u64(value: u64) -> Option<Self> {
        Some(match value {
            1 => Self::Send,
            2 => Self::NbSend,
            3 => Self::Call,
            4 => Self::Recv,
            5 => Self::NbRecv,
            6 => Self::Reply,
            7 => Self::ReplyRecv,
            8 => Self::Signal,
            9 => Self::Wait,
            10 => Self::Poll,
            11 => Self::Yield,
            12 => Self::DebugWrite,
            _ => return None,
        })
    }
}

/// Every error a system call returns (`rax`). Each names the one condition
/// that raises it; on any error the call changed nothing.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `rax` is not a [`Syscall`] number.
    InvalidSyscall = 1,
    /// The capability pointer is outside the CNode or names an empty slot.
    InvalidCapability = 2,
    /// The capability is of a type this operation does not take.
    WrongType = 3,
    /// The capability lacks a right the operation needs.
    InsufficientRights = 4,
    /// An argument is malformed (bad object type, bad size, misaligned address...).
    InvalidArgument = 5,
    /// A user pointer is not mapped user memory with the needed access.
    InvalidAddress = 6,
    /// The message is longer than [`MAX_MESSAGE_WORDS`] or carries more than
    /// [`MAX_EXTRA_CAPS`] capabilities.
    MessageTooLong = 7,
    /// The destination slot already holds a capability.
    SlotOccupied = 8,
    /// The untyped region has too little free memory for the request.
    OutOfMemory = 9,
    /// The label is not an operation of this object type.
    IllegalOperation = 10,
    /// A non-blocking operation found no partner (or a zero notification word).
    WouldBlock = 11,
    /// A wait's timeout expired first.
    Timeout = 12,
    /// The object the thread was blocked on was deleted (for a `Call`: the
    /// server that owed the reply, or its reply, is gone; for `VcpuRun`: the
    /// Vcpu or its GuestSpace).
    ObjectDeleted = 13,
    /// `Reply` with no caller waiting for this thread's reply.
    NoReplyTarget = 14,
    /// The virtual address is already mapped (map) or the frame is mapped
    /// elsewhere already.
    AlreadyMapped = 15,
    /// The frame is not mapped (unmap).
    NotMapped = 16,
    /// A numeric argument is out of range (CPU index, IRQ, I/O port, a retype
    /// destination range past the end of the CNode). A single slot index
    /// outside its CNode is `InvalidCapability`.
    OutOfRange = 17,
    /// The object is in a state that forbids the operation (e.g. resuming a
    /// thread with no address space, configuring a running thread, binding a
    /// notification that is already bound, re-badging a badged capability,
    /// claiming an IRQ that has a handler).
    IllegalState = 18,
    /// The VSpace has no table memory left for a new mapping.
    OutOfTableMemory = 19,
    /// Scheduling isolation: the thread is not adopted by this scheduler, or
    /// the CPU is not bound to it; a confined thread (`TcbConfine`) given a
    /// CPU its Scheduler does not have, or offered to another Scheduler.
    NotOwned = 20,
    /// The CPU's dispatch queue is full.
    QueueFull = 21,
    /// The machine has no hardware virtualization Tarn drives (neither VMX
    /// with EPT nor SVM with nested paging).
    NotSupported = 22,
}

impl Error {
    /// Every error code, in code order (what [`Error::from_u64`] decodes; a
    /// host test keeps the two in step).
    pub const ALL: &'static [Error] = &[
        Self::InvalidSyscall,
        Self::InvalidCapability,
        Self::WrongType,
        Self::InsufficientRights,
        Self::InvalidArgument,
        Self::InvalidAddress,
        Self::MessageTooLong,
        Self::SlotOccupied,
        Self::OutOfMemory,
        Self::IllegalOperation,
        Self::WouldBlock,
        Self::Timeout,
        Self::ObjectDeleted,
        Self::NoReplyTarget,
        Self::AlreadyMapped,
        Self::NotMapped,
        Self::OutOfRange,
        Self::IllegalState,
        Self::OutOfTableMemory,
        Self::NotOwned,
        Self::QueueFull,
        Self::NotSupported,
    ];

    /// Decodes an error code (0 and unknown codes give `None`).
    pub fn from_u64(value: u64) -> Option<Self> {
        Some(match value {
            1 => Self::InvalidSyscall,
            2 => Self::InvalidCapability,
            3 => Self::WrongType,
            4 => Self::InsufficientRights,
            5 => Self::InvalidArgument,
            6 => Self::InvalidAddress,
            7 => Self::MessageTooLong,
            8 => Self::SlotOccupied,
            9 => Self::OutOfMemory,
            10 => Self::IllegalOperation,
            11 => Self::WouldBlock,
            12 => Self::Timeout,
            13 => Self::ObjectDeleted,
            14 => Self::NoReplyTarget,
            15 => Self::AlreadyMapped,
            16 => Self::NotMapped,
            17 => Self::OutOfRange,
            18 => Self::IllegalState,
            19 => Self::OutOfTableMemory,
            20 => Self::NotOwned,
            21 => Self::QueueFull,
            22 => Self::NotSupported,
            _ => return None,
        })
    }

    /// Turns a raw `rax` into a result.
    pub fn check(raw: u64) -> Result<(), Self> {
        match raw {
            0 => Ok(()),
            other => Err(Self::from_u64(other).unwrap_or(Self::InvalidSyscall)),
        }
    }
}

/// Kernel object types (the argument of `UntypedRetype` and what a
/// capability refers to).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    /// Raw memory; retype makes the other objects from it.
    Untyped = 1,
    /// A table of 2^size_bits capability slots.
    CNode = 2,
    /// A thread.
    Tcb = 3,
    /// A synchronous IPC rendezvous.
    Endpoint = 4,
    /// An asynchronous signal word.
    Notification = 5,
    /// A 4 KiB page.
    Frame4K = 6,
    /// A 2 MiB page.
    Frame2M = 7,
    /// An address space: 2^size_bits bytes holding its PML4 and page tables.
    VSpace = 8,
    /// Authority to create IRQ handlers (given only to the root task).
    IrqControl = 9,
    /// Delivery of one interrupt line to a notification.
    IrqHandler = 10,
    /// Access to a range of I/O ports.
    IoPort = 11,
    /// Whole-machine operations: power off, kernel statistics.
    Machine = 12,
    /// Authority over one physical CPU (bind it to a scheduler).
    Cpu = 13,
    /// One scheduling domain: CPUs bind to it, threads are adopted into it.
    Scheduler = 14,
    /// A guest-physical address space: 2^size_bits bytes holding its nested
    /// (NPT, SVM) or extended (EPT, VMX) page tables. Frames are mapped into
    /// it with `FrameMap` (the address is guest-physical).
    GuestSpace = 15,
    /// A virtual CPU (see [`crate::vcpu`]).
    Vcpu = 16,
}

impl ObjectType {
    /// Decodes an object type.
    pub fn from_u64(value: u64) -> Option<Self> {
        Some(match value {
            1 => Self::Untyped,
            2 => Self::CNode,
            3 => Self::Tcb,
            4 => Self::Endpoint,
            5 => Self::Notification,
            6 => Self::Frame4K,
            7 => Self::Frame2M,
            8 => Self::VSpace,
            9 => Self::IrqControl,
            10 => Self::IrqHandler,
            11 => Self::IoPort,
            12 => Self::Machine,
            13 => Self::Cpu,
            14 => Self::Scheduler,
            15 => Self::GuestSpace,
            16 => Self::Vcpu,
            _ => return None,
        })
    }
}

/// Capability rights (a bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Rights(pub u64);

impl Rights {
    /// Receive on an endpoint / wait on a notification / map a frame readable.
    pub const READ: Rights = Rights(1);
    /// Send on an endpoint / signal a notification / map a frame writable.
    pub const WRITE: Rights = Rights(2);
    /// Transfer capabilities in messages sent through this endpoint
    /// capability. Without it the message still arrives, without the
    /// capabilities (`extra_caps` 0 at the receiver).
    pub const GRANT: Rights = Rights(4);
    /// Map a frame executable.
    pub const EXECUTE: Rights = Rights(8);
    /// Every right.
    pub const ALL: Rights = Rights(15);
    /// No right.
    pub const NONE: Rights = Rights(0);

    /// Whether every right in `other` is in `self`.
    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    /// The rights in both.
    pub const fn intersect(self, other: Rights) -> Rights {
        Rights(self.0 & other.0)
    }

    /// The rights in either.
    pub const fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }
}

/// The message-info word (`rsi`): `label:52 | caps_unwrapped:3 | extra_caps:2 | length:7`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MessageInfo(pub u64);

impl MessageInfo {
    /// Builds a message-info word. `length` and `extra_caps` are masked to
    /// their fields; the kernel rejects values above the maxima.
    pub const fn new(label: u64, extra_caps: u64, length: u64) -> Self {
        MessageInfo((label << 12) | ((extra_caps & 0x3) << 7) | (length & 0x7F))
    }

    /// The label (an [`Invocation`] for kernel objects; free for user protocols).
    pub const fn label(self) -> u64 {
        self.0 >> 12
    }

    /// Message words (MR0..MR(length-1)).
    pub const fn length(self) -> usize {
        (self.0 & 0x7F) as usize
    }

    /// Capabilities the sender attached.
    pub const fn extra_caps(self) -> usize {
        ((self.0 >> 7) & 0x3) as usize
    }

    /// Bit i set: the i-th attached capability was an endpoint capability the
    /// receiver received through, so only its badge was delivered (in
    /// `IpcBuffer::caps_or_badges[i]`) instead of a new capability.
    pub const fn caps_unwrapped(self) -> u64 {
        (self.0 >> 9) & 0x7
    }

    /// The same word with `caps_unwrapped` set.
    pub const fn with_caps_unwrapped(self, mask: u64) -> Self {
        MessageInfo((self.0 & !(0x7 << 9)) | ((mask & 0x7) << 9))
    }
}

/// The per-thread IPC buffer: one 4 KiB-aligned page the thread maps and names
/// in `TcbConfigure`. The kernel reads and writes it only during that thread's
/// system calls.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IpcBuffer {
    /// Message registers; MR0..MR3 also travel in registers, MR4.. only here.
    pub mrs: [u64; MAX_MESSAGE_WORDS],
    /// Send: capability pointers of the attached capabilities. Receive: the
    /// badges of unwrapped capabilities.
    pub caps_or_badges: [u64; MAX_EXTRA_CAPS],
    /// Receive: first slot (in the receiver's root CNode) that takes
    /// transferred capabilities; slots `receive_index..receive_index +
    /// receive_count` must be empty.
    pub receive_index: u64,
    /// Receive: how many capabilities the receiver accepts (0 = none).
    pub receive_count: u64,
    /// Free for the user runtime (e.g. thread-local pointer).
    pub user_data: u64,
}
const _: () = assert!(core::mem::size_of::<IpcBuffer>() <= 4096);

/// Labels of the fault messages the kernel sends to a thread's fault endpoint
/// (as if the faulting thread had called it). MR0 = RIP, MR1 = fault address
/// (CR2, page faults only), MR2 = error code, MR3 = vector. Replying with
/// label [`FAULT_REPLY_RESUME`] resumes the thread at its (unchanged) RIP; any
/// other reply label, or deleting the thread, leaves it suspended.
pub mod fault {
    /// A page fault.
    pub const PAGE_FAULT: u64 = 0xFA01;
    /// Any other CPU exception (divide error, #UD, #GP, breakpoint...).
    pub const EXCEPTION: u64 = 0xFA02;
    /// The watchdog stopped a confined thread (`TcbConfine`) that ran
    /// [`crate::sched::WATCHDOG_NS`] as a system thread without blocking and
    /// without a `SchedulerDispatch`: MR0 = RIP, MR1 = ns it ran so,
    /// MR2 = MR3 = 0.
    pub const WATCHDOG: u64 = 0xFA03;
    /// Reply label that resumes the faulting thread.
    pub const FAULT_REPLY_RESUME: u64 = 0;
    /// Reply label that leaves the faulting thread suspended.
    pub const FAULT_REPLY_SUSPEND: u64 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_and_error_lists_match_their_decoders() {
        assert!((0..1024)
            .filter_map(Syscall::from_u64)
            .eq(Syscall::ALL.iter().copied()));
        assert!(Syscall::ALL
            .iter()
            .all(|&s| Syscall::from_u64(s as u64) == Some(s)));
        assert!((0..1024)
            .filter_map(Error::from_u64)
            .eq(Error::ALL.iter().copied()));
        assert!(Error::ALL
            .iter()
            .all(|&e| Error::from_u64(e as u64) == Some(e)));
    }

    #[test]
    fn message_info_fields_round_trip() {
        let info = MessageInfo::new(0xABCDE, 3, 64);
        assert_eq!(info.label(), 0xABCDE);
        assert_eq!(info.extra_caps(), 3);
        assert_eq!(info.length(), 64);
        assert_eq!(info.caps_unwrapped(), 0);
        let unwrapped = info.with_caps_unwrapped(0b101);
        assert_eq!(unwrapped.caps_unwrapped(), 0b101);
        assert_eq!(unwrapped.label(), 0xABCDE);
        assert_eq!(unwrapped.length(), 64);
    }

    #[test]
    fn message_info_masks_oversized_fields() {
        let info = MessageInfo::new(1, 7, 0xFF);
        assert_eq!(info.extra_caps(), 3);
        assert_eq!(info.length(), 0x7F);
        assert_eq!(info.label(), 1);
    }

    #[test]
    fn syscall_and_error_numbers_round_trip() {
        for n in 0..64 {
            if let Some(s) = Syscall::from_u64(n) {
                assert_eq!(s as u64, n);
            }
            if let Some(e) = Error::from_u64(n) {
                assert_eq!(e as u64, n);
                assert_eq!(Error::check(n), Err(e));
            }
            if let Some(t) = ObjectType::from_u64(n) {
                assert_eq!(t as u64, n);
            }
        }
        assert_eq!(Error::check(0), Ok(()));
        assert!(Syscall::from_u64(0).is_none());
        assert!(Syscall::from_u64(13).is_none());
    }

    #[test]
    fn rights_algebra() {
        let rw = Rights::READ.union(Rights::WRITE);
        assert!(rw.contains(Rights::READ));
        assert!(!rw.contains(Rights::GRANT));
        assert_eq!(rw.intersect(Rights::WRITE), Rights::WRITE);
        assert!(Rights::ALL.contains(rw));
    }
}
