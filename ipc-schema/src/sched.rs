//! The scheduling mechanism's shared memory: the per-CPU event ring through
//! which the kernel tells a scheduler server what happened on a CPU bound to
//! it. One 4 KiB frame per CPU, single producer (the kernel) and single
//! consumer (the server's agent for that CPU).
//!
//! The kernel writes `events[head % RING_CAPACITY]` then advances `head`; the
//! server reads from `tail` up to `head` and advances `tail`. When the ring is
//! full the kernel drops the event and sets `overflow`; the server then
//! resynchronises with `SchedulerQueryThread` and clears the flag.

/// Entries in a CPU's dispatch queue.
pub const DISPATCH_QUEUE_LEN: usize = 8;
/// Events one ring holds.
pub const RING_CAPACITY: usize = 126;
/// The watchdog's bound: a confined thread (a policy server's agent or
/// request thread, `TcbConfine`) that runs this long as a system thread
/// without blocking and without a `SchedulerDispatch` is stopped with a
/// [`crate::fault::WATCHDOG`] fault. An honest agent's pass (drain the ring,
/// `pick_next`, dispatch) is tens of microseconds of real CPU, but time
/// here is TSC time, and under an emulator without icount on a loaded host
/// honest work stretches: a server's start (mapping its memory, spawning
/// its agents, a system call after another) was measured at 89 ms without
/// a block, and single "runs" of 50-65 ms were a CPU waiting for the kernel
/// lock or stalled by its host. One second is ten times the longest honest
/// run seen there and 200 system slices; a stuck agent costs only its own
/// pool that long (confinement keeps every other pool's CPUs out of its
/// reach). The kernel also requires one timer interrupt per system slice
/// of the bound to have found the thread running meanwhile, so that a
/// stall charged in one piece never counts as a run. One kernel constant,
/// not a per-Scheduler setting: it tells a stuck agent from a working one,
/// it does not tune a policy.
pub const WATCHDOG_NS: u64 = 1_000_000_000;

/// What happened.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// An adopted thread became runnable (it is in no queue).
    Woken = 1,
    /// A dispatched thread blocked; its entry ended.
    Blocked = 2,
    /// A dispatched thread yielded; its entry ended, it is still runnable.
    Yielded = 3,
    /// A dispatched thread spent its budget; still runnable.
    BudgetExpired = 4,
    /// A dispatched or queued thread was suspended or destroyed.
    Exited = 5,
    /// A dispatched thread faulted (its fault handler has the message).
    Faulted = 6,
    /// The CPU's periodic tick (`SchedulerSetTick`).
    Tick = 7,
    /// An entry removed because the CPU was unbound or revoked.
    Evicted = 8,
    /// The CPU's dispatch queue ran dry (reported once until the next dispatch).
    QueueEmpty = 9,
    /// The server ended the running entry early (`SchedulerPreempt`).
    Preempted = 10,
}

impl EventKind {
    /// Decodes an event kind.
    pub fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::Woken,
            2 => Self::Blocked,
            3 => Self::Yielded,
            4 => Self::BudgetExpired,
            5 => Self::Exited,
            6 => Self::Faulted,
            7 => Self::Tick,
            8 => Self::Evicted,
            9 => Self::QueueEmpty,
            10 => Self::Preempted,
            _ => return None,
        })
    }
}

/// One event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// [`EventKind`].
    pub kind: u32,
    /// The CPU (index) it happened on.
    pub cpu: u32,
    /// The thread id given at adoption (0 for CPU events: tick, queue-empty).
    pub thread: u64,
    /// When, in ns since boot.
    pub timestamp_ns: u64,
    /// For entry ends: exact ns the thread ran in this entry.
    pub ran_ns: u64,
}
const _: () = assert!(core::mem::size_of::<Event>() == 32);

/// The ring's indices.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RingHeader {
    /// Events written (kernel).
    pub head: u64,
    /// Events consumed (server).
    pub tail: u64,
    /// Non-zero when an event was dropped because the ring was full.
    pub overflow: u64,
    /// [`RING_CAPACITY`].
    pub capacity: u64,
    reserved: [u64; 4],
}

/// The event-ring frame.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventRing {
    /// Indices.
    pub header: RingHeader,
    /// The events.
    pub events: [Event; RING_CAPACITY],
}
const _: () = assert!(core::mem::size_of::<EventRing>() == 4096);
