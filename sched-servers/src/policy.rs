//! The `Policy` trait: the pure state machine every scheduler server runs.

use alloc::vec::Vec;

use crate::params::{self, ParamError, ParamSpec, Values};
use crate::types::{
    Affinity, CpuId, Decision, Dispatch, DomainId, DomainParams, Event, PolicyError, PoolParams,
    ThreadId,
};

/// A scheduling policy for one pool: events in, dispatch decisions out.
///
/// Pure and deterministic: no syscalls, no clock reads (every call carries
/// the time), no randomness. The on-metal server runtime and the simulator
/// drive it the same way; the crate documentation states the driver's rules.
pub trait Policy {
    /// Sets `thread`'s hard affinity: the CPUs it may run on (`None`: every
    /// CPU of the pool). The crate documentation states the rule (7. Hard
    /// affinity): never dispatched outside it, moved or preempted when it
    /// changes, CPUs outside the pool ignored, broken when none of the set
    /// is in the pool. Fails with [`PolicyError::UnknownThread`],
    /// [`PolicyError::EmptyAffinity`], or a policy's own refusal (SEDF:
    /// the reservation fits on no allowed CPU); nothing changes on failure.
    /// Default: refused with [`PolicyError::AffinityUnsupported`], so a
    /// policy without affinity support is never silently ignored.
    fn set_affinity(
        &mut self,
        thread: ThreadId,
        cpus: Option<&[CpuId]>,
        now_ns: u64,
    ) -> Result<(), PolicyError> {
        let _ = (thread, cpus, now_ns);
        Err(PolicyError::AffinityUnsupported {
            policy: self.name(),
        })
    }

    /// Sets `thread`'s soft affinity: the CPUs it prefers (`None`: no
    /// preference). A preference, never a restriction (the crate
    /// documentation states the rule, 8. Soft affinity): it is considered
    /// only where it intersects the hard affinity and the pool, and never
    /// costs a thread its share. Fails with [`PolicyError::UnknownThread`]
    /// or [`PolicyError::EmptyAffinity`]; nothing changes on failure.
    /// Default: accepted and ignored (a policy may run a thread anywhere its
    /// hard affinity allows), after the same checks.
    fn set_soft_affinity(
        &mut self,
        thread: ThreadId,
        cpus: Option<&[CpuId]>,
        now_ns: u64,
    ) -> Result<(), PolicyError> {
        let _ = now_ns;
        Affinity::new(thread, cpus).map(|_| ())
    }

    /// Whether `thread`'s hard affinity is broken: none of its CPUs is in the
    /// pool, so it runs on any CPU of the pool for now. Default: `false` (a
    /// policy without affinity has nothing to break).
    fn affinity_broken(&self, thread: ThreadId) -> bool {
        let _ = thread;
        false
    }

    /// Human-readable name (`"credit"`, `"sedf"`, `"rr"`).
    fn name(&self) -> &'static str;

    /// A CPU joins the pool. It starts idle: the policy sends
    /// [`Decision::Kick`] when it has work for it.
    fn add_cpu(&mut self, cpu: CpuId, now_ns: u64);

    /// A CPU leaves the pool. Threads queued there are re-homed internally; a
    /// thread still running there stays the policy's until its entry's end
    /// event (normally `Evicted`) arrives, and is then re-homed.
    fn remove_cpu(&mut self, cpu: CpuId, now_ns: u64);

    /// A thread joins (adoption) in `domain`, runnable or blocked. An unknown
    /// domain is created with the policy's default parameters. Fails with
    /// [`PolicyError::DuplicateThread`], or when admission control refuses
    /// it ([`PolicyError::Infeasible`]); nothing changes on failure.
    fn add_thread(
        &mut self,
        thread: ThreadId,
        domain: DomainId,
        runnable: bool,
        now_ns: u64,
    ) -> Result<(), PolicyError>;

    /// A thread leaves (release, migration to another pool). The driver has
    /// already ended its entry; if it was running, the driver then calls
    /// `pick_next` for that CPU, as after any entry end. Later events about
    /// it are ignored.
    fn remove_thread(&mut self, thread: ThreadId, now_ns: u64);

    /// A domain leaves the pool: its remaining threads are removed, its
    /// parameters and reservations released, its group dissolved (if master)
    /// or left (if member).
    fn remove_domain(&mut self, domain: DomainId, now_ns: u64);

    /// One kernel event. Redundant or stale events (a `Woken` for a runnable
    /// thread, an event about an unknown thread) are ignored.
    fn on_event(&mut self, event: &Event);

    /// `cpu` has no entry (its queue ran dry, it was kicked or preempted):
    /// what should it run, and for how long? `None` leaves it idle until the
    /// next [`Decision::Kick`].
    fn pick_next(&mut self, cpu: CpuId, now_ns: u64) -> Option<Dispatch>;

    /// Moves the decisions made since the last call into `out` (appending).
    fn take_decisions(&mut self, out: &mut Vec<Decision>);

    /// The parameters each domain has (name, kind, default, help). Default:
    /// none.
    fn domain_param_specs(&self) -> &'static [ParamSpec] {
        &[]
    }

    /// The pool-wide parameters. Default: none.
    fn pool_param_specs(&self) -> &'static [ParamSpec] {
        &[]
    }

    /// Sets some of a domain's parameters (creating the domain if it is
    /// new); the others keep their values. Every value has been parsed
    /// against [`Policy::domain_param_specs`] (declared key, right kind,
    /// within range: [`params::parse_values`]); the policy checks the rest
    /// (values that depend on each other or on the pool) and refuses with
    /// one error naming the key, or applies them all. On error nothing
    /// changes. Default: only an empty list is accepted.
    fn set_domain_values(
        &mut self,
        domain: DomainId,
        values: &Values,
        now_ns: u64,
    ) -> Result<(), ParamError> {
        let _ = (domain, now_ns);
        refuse_undeclared(values, self.domain_param_specs())
    }

    /// A domain's parameters, every declared one with its current value (a
    /// domain the policy does not know has the defaults).
    fn domain_values(&self, domain: DomainId) -> Values {
        let _ = domain;
        params::defaults(self.domain_param_specs())
    }

    /// Sets some of the pool-wide parameters, as
    /// [`Policy::set_domain_values`] does for a domain.
    fn set_pool_values(&mut self, values: &Values, now_ns: u64) -> Result<(), ParamError> {
        let _ = now_ns;
        refuse_undeclared(values, self.pool_param_specs())
    }

    /// The pool-wide parameters with their current values.
    fn pool_values(&self) -> Values {
        params::defaults(self.pool_param_specs())
    }

    /// Sets a domain's parameters from the typed vocabulary the built-in
    /// policies and the simulator share (creating the domain if it is new).
    /// Validates everything first: on error nothing changes. Default: the
    /// policy has none of them ([`PolicyError::WrongPolicy`]).
    fn set_domain_params(
        &mut self,
        domain: DomainId,
        params: &DomainParams,
        now_ns: u64,
    ) -> Result<(), PolicyError> {
        let _ = (domain, params, now_ns);
        Err(PolicyError::WrongPolicy {
            policy: self.name(),
        })
    }

    /// A domain's current typed parameters; `None` if the domain is unknown
    /// or the policy has none.
    fn domain_params(&self, domain: DomainId) -> Option<DomainParams> {
        let _ = domain;
        None
    }

    /// Sets the typed pool-wide parameters. Validates first: on error
    /// nothing changes. Default: [`PolicyError::WrongPolicy`].
    fn set_pool_params(&mut self, params: &PoolParams) -> Result<(), PolicyError> {
        let _ = params;
        Err(PolicyError::WrongPolicy {
            policy: self.name(),
        })
    }

    /// The current typed pool-wide parameters, if the policy has them.
    fn pool_params(&self) -> Option<PoolParams> {
        None
    }

    /// How late a [`Decision::Timer`] may fire (ns). A runtime may round a
    /// timer up to its next periodic tick when that comes within the slack,
    /// saving a reprogrammed timer and an interruption. Default 0: exact.
    fn timer_slack_ns(&self) -> u64 {
        0
    }

    /// The master of `domain`'s scheduling group, if it is a member of one
    /// (policies without groups: always `None`).
    fn group_master(&self, domain: DomainId) -> Option<DomainId> {
        let _ = domain;
        None
    }
}

/// The default `set_*_values`: nothing to set is fine; anything else names
/// its key as unknown.
fn refuse_undeclared(values: &Values, specs: &[ParamSpec]) -> Result<(), ParamError> {
    match values.first() {
        None => Ok(()),
        Some((key, _)) => Err(ParamError::new(key, params::unknown_reason(specs))),
    }
}
