//! The vocabulary shared by policies and their drivers: identifiers, kernel
//! events, dispatch answers, decisions, parameters and the one error enum.

use alloc::collections::BTreeSet;
use core::fmt;

/// A CPU of the pool, as the driver names it (a pool-local index is fine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuId(pub u32);

/// A thread adopted by the scheduler: an opaque handle chosen by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(pub u64);

/// A domain (native task or VM); weights, caps and reservations belong to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u32);

/// A thread's hard affinity: the CPUs it may run on (`None`: every CPU of
/// the pool). The rule every policy applies ([`Affinity::allows`]): CPUs of
/// the set that are not in the pool are ignored, and a set with no CPU in
/// the pool is *broken*: the thread may then run on any CPU of the pool
/// (as Xen breaks a vCPU's affinity when a cpupool loses its CPUs) until a
/// CPU of the set joins again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Affinity(Option<BTreeSet<CpuId>>);

impl Affinity {
    /// Every CPU of the pool.
    pub const fn any() -> Self {
        Self(None)
    }

    /// The affinity `cpus` names (`None`: every CPU of the pool). An empty
    /// set is refused ([`PolicyError::EmptyAffinity`]): a thread must be
    /// allowed somewhere.
    pub fn new(thread: ThreadId, cpus: Option<&[CpuId]>) -> Result<Self, PolicyError> {
        match cpus {
            None => Ok(Self(None)),
            Some([]) => Err(PolicyError::EmptyAffinity { thread }),
            Some(cpus) => Ok(Self(Some(cpus.iter().copied().collect()))),
        }
    }

    /// The CPUs named, or `None` for every CPU of the pool.
    pub const fn cpus(&self) -> Option<&BTreeSet<CpuId>> {
        self.0.as_ref()
    }

    /// Whether this is a restriction at all.
    pub const fn is_any(&self) -> bool {
        self.0.is_none()
    }

    /// Whether none of the set's CPUs is in the pool (`in_pool` says which
    /// CPUs are), so the restriction is suspended.
    pub fn broken(&self, in_pool: impl Fn(CpuId) -> bool) -> bool {
        self.0
            .as_ref()
            .is_some_and(|set| !set.iter().any(|&cpu| in_pool(cpu)))
    }

    /// Whether the thread may run on `cpu` of the pool: `cpu` is in the set,
    /// or there is no set, or the set is broken.
    pub fn allows(&self, cpu: CpuId, in_pool: impl Fn(CpuId) -> bool) -> bool {
        match &self.0 {
            None => true,
            Some(set) => set.contains(&cpu) || !set.iter().any(|&c| in_pool(c)),
        }
    }
}

impl fmt::Display for CpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu {}", self.0)
    }
}

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "thread {}", self.0)
    }
}

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "domain {}", self.0)
    }
}

/// What happened, as the kernel's per-CPU event ring reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A blocked thread became runnable (`ran_ns` is 0). `cpu` is the CPU
    /// whose ring carried the event; it says nothing about where to run it.
    Woken,
    /// The running thread blocked: its entry ended after `ran_ns`.
    Blocked,
    /// The running thread yielded: its entry ended, the thread stays runnable.
    Yielded,
    /// The entry spent its budget (or was preempted on a [`Decision::Preempt`]):
    /// the thread stays runnable.
    BudgetExpired,
    /// The thread was suspended or destroyed: its entry (if any) ended and it
    /// is not runnable. Policies keep it (a resumed thread comes back with
    /// `Woken`) until `remove_thread`.
    Exited,
    /// The running thread faulted: its entry ended and the thread waits for
    /// its fault handler (a later `Woken` brings it back).
    Faulted,
    /// A timer tick on `cpu` (periodic, or one armed by [`Decision::Timer`]).
    /// `thread` is the thread running there, if any, with `ran_ns` the time it
    /// has run in its current entry so far (cumulative, not since the last
    /// tick).
    Tick,
    /// An entry was removed without finishing (its CPU was revoked, or the
    /// driver ended it to apply a preemption): the thread stays runnable.
    Evicted,
    /// The CPU's dispatch queue ran dry; the driver calls `pick_next` for it.
    QueueEmpty,
}

impl EventKind {
    /// Whether this event ends the thread's current entry.
    pub const fn ends_entry(self) -> bool {
        matches!(
            self,
            Self::Blocked
                | Self::Yielded
                | Self::BudgetExpired
                | Self::Exited
                | Self::Faulted
                | Self::Evicted
        )
    }

    /// Whether the thread is still runnable after this entry-ending event.
    pub const fn leaves_runnable(self) -> bool {
        matches!(self, Self::Yielded | Self::BudgetExpired | Self::Evicted)
    }

    /// Whether the thread is not runnable after this event (it blocked,
    /// faulted, or was suspended or destroyed).
    pub const fn leaves_blocked(self) -> bool {
        matches!(self, Self::Blocked | Self::Faulted | Self::Exited)
    }
}

/// One kernel event, with exact times in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The CPU whose ring reported it (where the entry ran, for entry ends).
    pub cpu: CpuId,
    /// The thread concerned; `None` for `QueueEmpty` and for a tick on an
    /// idle CPU.
    pub thread: Option<ThreadId>,
    /// When it happened (the driver's monotonic clock).
    pub timestamp_ns: u64,
    /// For entry-ending events: the time the thread ran since its entry
    /// started (exact, measured by the kernel). For `Tick`: run so far in the
    /// current entry. Zero otherwise.
    pub ran_ns: u64,
}

impl Event {
    /// An event about `thread` on `cpu`.
    pub const fn new(
        kind: EventKind,
        cpu: CpuId,
        thread: ThreadId,
        timestamp_ns: u64,
        ran_ns: u64,
    ) -> Self {
        Self {
            kind,
            cpu,
            thread: Some(thread),
            timestamp_ns,
            ran_ns,
        }
    }
}

/// `pick_next`'s answer: run `thread` on the asking CPU for at most
/// `budget_ns` (always > 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// The thread to run.
    pub thread: ThreadId,
    /// The most it may run before the kernel ends the entry with
    /// [`EventKind::BudgetExpired`].
    pub budget_ns: u64,
}

/// A decision that is not an answer to `pick_next`, drained by the driver
/// with `take_decisions` after every call into the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Decision {
    /// `cpu` is idle (or was never started) and there is work it should take:
    /// call `pick_next(cpu)`. Ignore it if the CPU has an entry or a
    /// `pick_next` for it is already due.
    Kick {
        /// The CPU to wake.
        cpu: CpuId,
    },
    /// End the entry running on `cpu` now (a better thread waits): report the
    /// ended entry as `BudgetExpired` or `Evicted` with its exact `ran_ns`,
    /// then call `pick_next(cpu)`. If the entry already ended, the ordinary
    /// end event and `pick_next` suffice.
    Preempt {
        /// The CPU whose running entry must end.
        cpu: CpuId,
    },
    /// Deliver a [`EventKind::Tick`] on `cpu` at `at_ns` (or as soon as
    /// possible after). One timer per CPU: a later `Timer` for the same CPU
    /// replaces the earlier one. Early or spurious ticks are harmless.
    Timer {
        /// The CPU whose agent receives the tick.
        cpu: CpuId,
        /// The time it is due.
        at_ns: u64,
    },
}

/// Per-domain parameters. One enum for every policy, so that a server can
/// hold any policy as `Box<dyn Policy>` and change it while running; a
/// policy answers [`PolicyError::WrongPolicy`] to parameters it does not own.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainParams {
    /// Credit: `weight` 1..=65535 (default 256), `cap_pct` in percent of one
    /// CPU (0 = no cap, at most 100 × the pool's CPUs).
    Credit {
        /// Relative share on a contended pool.
        weight: u32,
        /// Upper limit in percent of one CPU, enforced even on idle CPUs.
        cap_pct: u32,
    },
    /// SEDF: `slice_ns` of CPU every `period_ns` for each of the domain's
    /// threads; `extra` lets it use idle time beyond its slice.
    Sedf {
        /// Length of a period (> 0).
        period_ns: u64,
        /// Reserved time per period (≤ period; 0 means best effort, which
        /// requires `extra`).
        slice_ns: u64,
        /// Whether the domain may run in idle time beyond its slice.
        extra: bool,
    },
    /// Scheduling groups (seed 000): `Some(master)` makes the domain a member
    /// of `master`'s group (members share the master's credit); `None` leaves
    /// its group.
    Group {
        /// The group's master, or `None` to leave.
        master: Option<DomainId>,
    },
}

/// Per-pool parameters.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolParams {
    /// Credit: time slice 1..=1000 ms (default 30); rate limit 0 (off) or
    /// 100..=500000 µs (default 1000), never longer than the time slice.
    Credit {
        /// Longest entry a thread gets.
        timeslice_ms: u32,
        /// Shortest time a thread runs before a wake-up may preempt it.
        ratelimit_us: u32,
    },
    /// SEDF: the quantum of extra (idle) time, 1..=1000 ms (default 10).
    Sedf {
        /// Longest entry of extra time.
        extra_quantum_ms: u32,
    },
    /// Round robin: the time slice, 1..=1000 ms (default 10).
    RoundRobin {
        /// Longest entry a thread gets.
        timeslice_ms: u32,
    },
}

/// Every error a policy returns. Each variant names the condition that
/// raises it; a call that returns an error has changed nothing.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// The parameters are another policy's (e.g. SEDF parameters sent to the
    /// credit policy); `policy` is the name of the policy that refused them.
    WrongPolicy {
        /// The refusing policy's name.
        policy: &'static str,
    },
    /// Credit weight outside 1..=65535.
    InvalidWeight {
        /// The refused weight.
        weight: u32,
    },
    /// Credit cap above 100 × the pool's CPUs.
    InvalidCap {
        /// The refused cap.
        cap_pct: u32,
        /// The largest cap the pool allows now.
        max_pct: u32,
    },
    /// Time slice (or SEDF extra quantum) outside 1..=1000 ms.
    InvalidTimeslice {
        /// The refused value.
        timeslice_ms: u32,
    },
    /// Rate limit neither 0 nor within 100..=500000 µs, or longer than the
    /// time slice it would go with.
    InvalidRatelimit {
        /// The refused rate limit.
        ratelimit_us: u32,
        /// The time slice it was checked against.
        timeslice_ms: u32,
    },
    /// SEDF period of 0.
    InvalidPeriod {
        /// The refused period.
        period_ns: u64,
    },
    /// SEDF slice longer than its period, or 0 without the extra flag (such
    /// a domain would never run).
    InvalidSlice {
        /// The refused slice.
        slice_ns: u64,
        /// Its period.
        period_ns: u64,
    },
    /// SEDF admission control: this request's reservation fits on no CPU of
    /// the pool (every CPU's utilisation must stay ≤ 100 %).
    Infeasible {
        /// The domain whose request does not fit.
        domain: DomainId,
        /// The thread that could not be placed (`None` when the domain has no
        /// thread and only its parameters were checked).
        thread: Option<ThreadId>,
        /// The requested slice.
        slice_ns: u64,
        /// The requested period.
        period_ns: u64,
        /// The largest free utilisation on any CPU, in parts per million.
        free_ppm: u32,
    },
    /// The policy has no hard affinity (`set_affinity` is not implemented):
    /// the request is refused rather than ignored.
    AffinityUnsupported {
        /// The refusing policy's name.
        policy: &'static str,
    },
    /// A hard affinity with no CPU at all.
    EmptyAffinity {
        /// The thread.
        thread: ThreadId,
    },
    /// A request names a thread the policy does not have.
    UnknownThread {
        /// The thread.
        thread: ThreadId,
    },
    /// SEDF admission control: the thread's reservation fits on none of the
    /// CPUs its hard affinity allows.
    AffinityInfeasible {
        /// The thread.
        thread: ThreadId,
        /// The requested slice.
        slice_ns: u64,
        /// The requested period.
        period_ns: u64,
        /// The largest free utilisation on an allowed CPU, in parts per
        /// million.
        free_ppm: u32,
    },
    /// `add_thread` for a thread the policy already has.
    DuplicateThread {
        /// The thread.
        thread: ThreadId,
    },
    /// A group request names a master domain the policy does not know.
    UnknownDomain {
        /// The unknown domain.
        domain: DomainId,
    },
    /// A domain asked to join its own group.
    GroupSelf {
        /// The domain.
        domain: DomainId,
    },
    /// The requested master is itself a member of another group (a domain is
    /// master or member, never both).
    MasterIsMember {
        /// The requested master.
        master: DomainId,
        /// The master of the group it belongs to.
        its_master: DomainId,
    },
    /// The domain is the master of a group with members, so it cannot become
    /// a member (a domain is master or member, never both).
    MemberIsMaster {
        /// The domain.
        domain: DomainId,
    },
    /// The domain already belongs to another group (leave it first: one group
    /// per domain, one master per group).
    AlreadyMember {
        /// The domain.
        domain: DomainId,
        /// The master of its current group.
        master: DomainId,
    },
}

/// A SEDF reservation as its refusals name it: `slice 20.000 ms / period
/// 40.000 ms = 50.0%` (the share rounded up to a tenth of a percent).
fn write_reservation(f: &mut fmt::Formatter<'_>, slice_ns: u64, period_ns: u64) -> fmt::Result {
    write!(
        f,
        "slice {}.{:03} ms / period {}.{:03} ms = ",
        slice_ns / 1_000_000,
        slice_ns / 1000 % 1000,
        period_ns / 1_000_000,
        period_ns / 1000 % 1000,
    )?;
    write_percent(f, crate::math::ceil_ratio_ppm(slice_ns, period_ns))
}

/// Parts per million as a percent with one decimal (`50.0%`, truncated).
fn write_percent(f: &mut fmt::Formatter<'_>, ppm: u32) -> fmt::Result {
    write!(f, "{}.{}%", ppm / 10_000, ppm / 1000 % 10)
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::WrongPolicy { policy } => {
                write!(f, "these parameters are not the {policy} policy's")
            }
            Self::InvalidWeight { weight } => {
                write!(f, "weight {weight} is outside 1..=65535")
            }
            Self::InvalidCap { cap_pct, max_pct } => write!(
                f,
                "cap {cap_pct}% exceeds {max_pct}% (100% per CPU of the pool)"
            ),
            Self::InvalidTimeslice { timeslice_ms } => {
                write!(f, "time slice {timeslice_ms} ms is outside 1..=1000 ms")
            }
            Self::InvalidRatelimit {
                ratelimit_us,
                timeslice_ms,
            } => write!(
                f,
                "rate limit {ratelimit_us} us is neither 0 nor within 100..=500000 us \
                 and no longer than the {timeslice_ms} ms time slice"
            ),
            Self::InvalidPeriod { period_ns } => {
                write!(f, "period {period_ns} ns must be greater than 0")
            }
            Self::InvalidSlice {
                slice_ns,
                period_ns,
            } => write!(
                f,
                "slice {slice_ns} ns must be at most the period ({period_ns} ns), \
                 and 0 only with extra time"
            ),
            Self::Infeasible {
                domain,
                thread,
                slice_ns,
                period_ns,
                free_ppm,
            } => {
                write!(f, "{domain}")?;
                if let Some(thread) = thread {
                    write!(f, " ({thread})")?;
                }
                f.write_str(": ")?;
                write_reservation(f, slice_ns, period_ns)?;
                f.write_str(" does not fit: the least-loaded CPU has ")?;
                write_percent(f, free_ppm)?;
                f.write_str(" free")
            }
            Self::AffinityUnsupported { policy } => {
                write!(f, "the {policy} policy does not support hard affinity")
            }
            Self::EmptyAffinity { thread } => {
                write!(f, "{thread}: a hard affinity needs at least one CPU")
            }
            Self::UnknownThread { thread } => write!(f, "{thread} is not scheduled here"),
            Self::AffinityInfeasible {
                thread,
                slice_ns,
                period_ns,
                free_ppm,
            } => {
                write!(f, "{thread}: ")?;
                write_reservation(f, slice_ns, period_ns)?;
                f.write_str(
                    " does not fit on the CPUs of its affinity: the least-loaded of them has ",
                )?;
                write_percent(f, free_ppm)?;
                f.write_str(" free")
            }
            Self::DuplicateThread { thread } => write!(f, "{thread} is already scheduled here"),
            Self::UnknownDomain { domain } => write!(f, "{domain} is unknown to this policy"),
            Self::GroupSelf { domain } => write!(f, "{domain} cannot join its own group"),
            Self::MasterIsMember { master, its_master } => write!(
                f,
                "{master} cannot be a master: it is a member of {its_master}'s group"
            ),
            Self::MemberIsMaster { domain } => write!(
                f,
                "{domain} is the master of a group and cannot also be a member"
            ),
            Self::AlreadyMember { domain, master } => write!(
                f,
                "{domain} already belongs to {master}'s group (leave it first)"
            ),
        }
    }
}

impl core::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn errors_say_what_was_wrong() {
        let infeasible = PolicyError::Infeasible {
            domain: DomainId(7),
            thread: Some(ThreadId(3)),
            slice_ns: 20_000_000,
            period_ns: 40_000_000,
            free_ppm: 300_000,
        };
        assert_eq!(
            infeasible.to_string(),
            "domain 7 (thread 3): slice 20.000 ms / period 40.000 ms = 50.0% does not fit: \
             the least-loaded CPU has 30.0% free"
        );
        assert_eq!(
            PolicyError::InvalidWeight { weight: 0 }.to_string(),
            "weight 0 is outside 1..=65535"
        );
        assert!(PolicyError::MasterIsMember {
            master: DomainId(2),
            its_master: DomainId(1)
        }
        .to_string()
        .contains("member of domain 1's group"));
    }

    #[test]
    fn event_kind_classes() {
        for kind in [
            EventKind::Blocked,
            EventKind::Yielded,
            EventKind::BudgetExpired,
            EventKind::Exited,
            EventKind::Faulted,
            EventKind::Evicted,
        ] {
            assert!(kind.ends_entry());
            assert_ne!(kind.leaves_runnable(), kind.leaves_blocked());
        }
        for kind in [EventKind::Woken, EventKind::Tick, EventKind::QueueEmpty] {
            assert!(!kind.ends_entry() && !kind.leaves_runnable() && !kind.leaves_blocked());
        }
    }
}
