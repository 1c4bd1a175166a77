//! Policy SDK for Tarn's user-mode scheduler servers: the [`Policy`] trait,
//! its vocabulary, and the policies [`rr`] (the template), [`credit`] (Xen
//! credit with scheduling groups) and [`sedf`] (Xen SEDF with admission
//! control).
//!
//! A policy is a pure state machine: kernel events in, dispatch decisions
//! out. It makes no syscalls and reads no clock (time always comes in as an
//! argument), uses no floating point (integer nanoseconds: the on-metal
//! target is soft-float, and results must be bit-for-bit reproducible) and no
//! randomness. Maps are `BTreeMap`s, or hash maps with a hasher that has no
//! seed ([`idmap`]) where lookups are hot, so iteration order, and therefore
//! every decision, depends only on the inputs. The same code runs inside a server
//! on metal and inside the host simulator (`tarn-sched-sim`).
//!
//! # The driver's contract
//!
//! The kernel keeps, per CPU, a queue of `(thread, budget_ns)` entries; an
//! entry ends when its thread blocks, yields, exits, faults or spends its
//! budget, and the kernel reports each event with the exact nanoseconds run.
//! A *driver* (the server runtime, or the simulator) connects kernel and
//! policy with these rules:
//!
//! 1. **Setup.** `add_cpu` for each CPU bound to the scheduler,
//!    `set_pool_params`/`set_domain_params` as configured, `add_thread` for
//!    each adopted thread. New CPUs are idle; the policy kicks them.
//! 2. **Events.** Every ring event goes to [`Policy::on_event`], in ring
//!    order per CPU. After an entry-ending event (`Blocked`, `Yielded`,
//!    `BudgetExpired`, `Exited`, `Faulted`, `Evicted`) or `QueueEmpty` on a
//!    CPU still in the pool, the driver calls [`Policy::pick_next`] for that
//!    CPU (once, even if both arrive) unless the CPU already has an entry.
//! 3. **Dispatch.** `pick_next`'s answer is dispatched at once as the CPU's
//!    only entry. The policies here keep one entry per CPU: the runtime must
//!    not queue a second one, and calls `pick_next` for a CPU only when it has
//!    no entry (it may call it for every such CPU after each batch of events;
//!    that is harmless). `None` means idle until a [`Decision::Kick`]. If the
//!    kernel refuses a dispatch because of the thread (it was released or
//!    destroyed meanwhile), deliver `Exited` (ran 0) for it on that CPU: the
//!    policy stops running it until a `Woken`, and the CPU is asked again. If
//!    it refuses because the CPU is gone, call `remove_cpu` and deliver
//!    `Evicted` (ran 0): the thread stays runnable and is re-homed.
//! 4. **Decisions.** After *every* call into the policy the driver drains
//!    [`Policy::take_decisions`] and applies them in order:
//!    [`Decision::Kick`] → `pick_next(cpu)` if the CPU has no entry;
//!    [`Decision::Preempt`] → end the CPU's entry now, deliver its end as
//!    `BudgetExpired` (or `Evicted`; the kernel's `Preempted` maps to either)
//!    with the exact `ran_ns`, then `pick_next(cpu)`; [`Decision::Timer`] →
//!    deliver a `Tick` on that CPU at that time (one pending timer per CPU; a
//!    new one replaces the old). A runtime that only has a periodic tick may
//!    serve timers with it: decisions that depend on time are then late by
//!    up to one tick (the simulator's `periodic_tick_ns` measures the effect).
//! 5. **Leaving.** `remove_thread` after the kernel released the thread (if
//!    it was running, `pick_next` follows for its CPU). `remove_cpu` when the
//!    CPU leaves; the entry still running there ends with `Evicted` (before or
//!    after the call: both work).
//! 6. **Lost events.** After a ring overflow, deliver a synthetic `Woken`
//!    (ran 0) for every runnable thread and `Blocked` (ran 0) for every
//!    blocked one that is not running; policies ignore redundant events.
//!
//! 7. **Hard affinity.** [`Policy::set_affinity`] restricts a thread to a
//!    set of CPUs ([`Affinity`]). The policy never dispatches a thread to a
//!    CPU outside its affinity; when the affinity changes, a thread queued
//!    outside it is moved and one running outside it is preempted
//!    ([`Decision::Preempt`]). CPUs of the set that are not (or no longer)
//!    in the pool are ignored; when none of the set is in the pool the
//!    affinity is *broken* and the thread may run on any CPU of the pool
//!    until a CPU of its set joins again (then it is moved back, as on a
//!    change). The driver learns of it by asking
//!    [`Policy::affinity_broken`] after `remove_cpu` (Xen reports a broken
//!    affinity on cpupool CPU removal the same way). A policy without
//!    affinity support refuses with [`PolicyError::AffinityUnsupported`].
//!    A driver may check every dispatch against the affinities it set
//!    (the simulator counts violations; the server refuses them).
//! 8. **Soft affinity.** [`Policy::set_soft_affinity`] names the CPUs a
//!    thread prefers: a preference, never a restriction. It counts only
//!    where it intersects the hard affinity and the pool (Xen's rule: "soft
//!    affinity is considered only if it intersects hard affinity"); a
//!    policy that honours it chooses among those CPUs first, and never
//!    leaves a CPU idle or a share unpaid for it. Credit honours it (Xen's
//!    two balance steps, soft then hard); SEDF and rr accept and ignore it.
//!
//! One policy instance serves one pool; on metal its agents share it behind
//! a lock. A policy never names a CPU outside the pool or a thread it was
//! not given, so the kernel's isolation checks never fire for a correct one.
//!
//! # Writing a policy
//!
//! Copy [`rr`], keep the contract above, and test it in the simulator; the
//! crate README walks through it.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod credit;
pub mod idmap;
pub mod math;
pub mod params;
mod policy;
pub mod rr;
pub mod sedf;
mod types;

pub use params::{ParamError, ParamKind, ParamSpec, ParamValue, Values};
pub use policy::Policy;
pub use types::{
    Affinity, CpuId, Decision, Dispatch, DomainId, DomainParams, Event, EventKind, PolicyError,
    PoolParams, ThreadId,
};
