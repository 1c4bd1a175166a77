//! What to simulate: CPUs, domains with their parameters and workloads, and
//! timed actions (CPUs joining or leaving, parameter and affinity changes).

use tarn_sched_servers::{CpuId, DomainId, DomainParams, PoolParams, ThreadId};

/// Nanoseconds per millisecond.
pub const MS: u64 = 1_000_000;
/// Nanoseconds per second.
pub const SEC: u64 = 1_000_000_000;

/// How a simulated thread behaves. Run times are CPU time the thread needs;
/// sleep times are wall time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Always runnable (the `spin` task).
    CpuBound,
    /// Runs `run_ns`, sleeps `sleep_ns`, forever (the `burst` task).
    DutyCycle {
        /// CPU time per burst.
        run_ns: u64,
        /// Sleep between bursts.
        sleep_ns: u64,
    },
    /// Random bursts and sleeps, uniform in the given ranges (seeded).
    Bursty {
        /// Shortest burst.
        run_min_ns: u64,
        /// Longest burst.
        run_max_ns: u64,
        /// Shortest sleep.
        sleep_min_ns: u64,
        /// Longest sleep.
        sleep_max_ns: u64,
    },
    /// A real-time job of `work_ns` released every `period_ns` from the
    /// thread's start; its deadline is the next release. A job not finished
    /// by then is a deadline miss (its work is still done, late).
    Periodic {
        /// Release period (and relative deadline).
        period_ns: u64,
        /// CPU time each job needs.
        work_ns: u64,
    },
    /// CPU-bound, but yields after every `run_ns` of running.
    Yielder {
        /// CPU time between yields.
        run_ns: u64,
    },
}

/// One domain of the scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    /// Its identifier.
    pub id: DomainId,
    /// Its name in reports.
    pub name: String,
    /// Parameters set before any thread is added, in order.
    pub params: Vec<DomainParams>,
    /// Open parameters (`key=value` text, the policy's declared keys), set
    /// after `params` and before any thread is added.
    pub values: String,
    /// One workload per thread.
    pub threads: Vec<Workload>,
    /// One hard affinity per thread (a CPU mask, bit n = CPU n; `None`:
    /// every CPU of the pool), set right after the threads are added.
    pub affinity: Vec<Option<u64>>,
    /// One soft affinity per thread (a CPU mask; `None`: no preference),
    /// set right after the hard ones.
    pub soft: Vec<Option<u64>>,
}

impl DomainSpec {
    /// A domain named `d<id>` with no parameters and no threads.
    pub fn new(id: u32) -> Self {
        Self {
            id: DomainId(id),
            name: format!("d{id}"),
            params: Vec::new(),
            values: String::new(),
            threads: Vec::new(),
            affinity: Vec::new(),
            soft: Vec::new(),
        }
    }

    /// Sets open parameters (`key=value` text), as the protocol, xl.cfg and
    /// `sched-param` carry them: `DomainSpec::new(1).values("prio=3")`.
    #[must_use]
    pub fn values(mut self, text: &str) -> Self {
        if !self.values.is_empty() {
            self.values.push(' ');
        }
        self.values.push_str(text);
        self
    }

    /// Renames it.
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Adds a parameter setting.
    #[must_use]
    pub fn param(mut self, params: DomainParams) -> Self {
        self.params.push(params);
        self
    }

    /// Credit weight (no cap).
    #[must_use]
    pub fn weight(self, weight: u32) -> Self {
        self.param(DomainParams::Credit { weight, cap_pct: 0 })
    }

    /// SEDF reservation.
    #[must_use]
    pub fn sedf(self, slice_ns: u64, period_ns: u64, extra: bool) -> Self {
        self.param(DomainParams::Sedf {
            period_ns,
            slice_ns,
            extra,
        })
    }

    /// Adds `count` threads running `workload`.
    #[must_use]
    pub fn threads(mut self, count: usize, workload: Workload) -> Self {
        self.threads.extend(std::iter::repeat_n(workload, count));
        self.affinity.extend(std::iter::repeat_n(None, count));
        self.soft.extend(std::iter::repeat_n(None, count));
        self
    }

    /// Pins every thread added so far to `cpus` (hard affinity).
    #[must_use]
    pub fn pinned(mut self, cpus: &[u32]) -> Self {
        let mask = cpu_mask(cpus);
        self.affinity.iter_mut().for_each(|a| *a = Some(mask));
        self
    }

    /// Gives every thread added so far a soft affinity for `cpus` (a
    /// preference, not a restriction).
    #[must_use]
    pub fn prefers(mut self, cpus: &[u32]) -> Self {
        let mask = cpu_mask(cpus);
        self.soft.iter_mut().for_each(|a| *a = Some(mask));
        self
    }

    /// Pins thread `index` (0-based, in the order added) to `cpus`.
    #[must_use]
    pub fn pin_thread(mut self, index: usize, cpus: &[u32]) -> Self {
        if let Some(a) = self.affinity.get_mut(index) {
            *a = Some(cpu_mask(cpus));
        }
        self
    }
}

/// A CPU mask (bit n = CPU n) of `cpus`; the simulator has CPUs 0..=63.
pub fn cpu_mask(cpus: &[u32]) -> u64 {
    cpus.iter()
        .filter(|&&c| c < 64)
        .fold(0, |mask, &c| mask | 1 << c)
}

/// The CPUs of a mask, lowest first.
pub fn mask_cpus(mask: u64) -> Vec<CpuId> {
    (0..64)
        .filter(|n| mask & (1 << n) != 0)
        .map(CpuId)
        .collect()
}

/// Something that happens during the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// CPU `n` joins the pool.
    AddCpu(u32),
    /// CPU `n` leaves the pool (its entry is evicted).
    RemoveCpu(u32),
    /// New parameters for a domain.
    SetDomainParams(DomainId, DomainParams),
    /// New pool parameters.
    SetPoolParams(PoolParams),
    /// A thread's new hard affinity (a CPU mask, [`cpu_mask`]; `None`: every
    /// CPU of the pool). Threads are numbered from 1 in scenario order
    /// ([`Scenario::thread_id`]).
    SetAffinity(ThreadId, Option<u64>),
    /// A thread's new soft affinity (a CPU mask; `None`: no preference).
    SetSoftAffinity(ThreadId, Option<u64>),
}

/// A complete, deterministic simulation input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// CPUs in the pool at the start (numbered from 0).
    pub cpus: u32,
    /// Simulated time.
    pub duration_ns: u64,
    /// Seed of the random workloads.
    pub seed: u64,
    /// Cost of switching a CPU to another thread (time that runs nothing).
    pub switch_cost_ns: u64,
    /// Width of the windows of the shares-over-time chart.
    pub sample_ns: u64,
    /// Whether to keep every run slice for the trace.
    pub record_trace: bool,
    /// Serve timers with a periodic tick of this length on every CPU instead
    /// of one-shot timers (`Decision::Timer` is then ignored), as a runtime
    /// that only has the kernel's periodic tick does.
    pub periodic_tick_ns: Option<u64>,
    /// Pool parameters set at the start.
    pub pool_params: Option<PoolParams>,
    /// Open pool parameters (`key=value` text), set after `pool_params`.
    pub pool_values: String,
    /// The domains.
    pub domains: Vec<DomainSpec>,
    /// Timed actions, applied in time order.
    pub actions: Vec<(u64, Action)>,
}

impl Scenario {
    /// `cpus` CPUs for `duration_ns`, seed 1, no switch cost, 100 ms windows.
    pub fn new(cpus: u32, duration_ns: u64) -> Self {
        Self {
            cpus,
            duration_ns,
            seed: 1,
            switch_cost_ns: 0,
            sample_ns: 100 * MS,
            record_trace: false,
            periodic_tick_ns: None,
            pool_params: None,
            pool_values: String::new(),
            domains: Vec::new(),
            actions: Vec::new(),
        }
    }

    /// Adds a domain.
    #[must_use]
    pub fn domain(mut self, domain: DomainSpec) -> Self {
        self.domains.push(domain);
        self
    }

    /// Sets the pool parameters.
    #[must_use]
    pub fn pool(mut self, params: PoolParams) -> Self {
        self.pool_params = Some(params);
        self
    }

    /// The id the simulator gives thread `index` (0-based) of the domain at
    /// `domain` (0-based position in [`Scenario::domains`]): threads are
    /// numbered from 1 in scenario order.
    pub fn thread_id(&self, domain: usize, index: usize) -> ThreadId {
        let before: usize = self.domains[..domain].iter().map(|d| d.threads.len()).sum();
        ThreadId((before + index + 1) as u64)
    }

    /// Adds a timed action.
    #[must_use]
    pub fn at(mut self, time_ns: u64, action: Action) -> Self {
        self.actions.push((time_ns, action));
        self
    }

    /// Sets the seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the context-switch cost.
    #[must_use]
    pub fn switch_cost(mut self, switch_cost_ns: u64) -> Self {
        self.switch_cost_ns = switch_cost_ns;
        self
    }

    /// Serves timers with a periodic tick (see [`Scenario::periodic_tick_ns`]).
    #[must_use]
    pub fn periodic_tick(mut self, tick_ns: u64) -> Self {
        self.periodic_tick_ns = Some(tick_ns);
        self
    }

    /// Keeps run slices for a trace.
    #[must_use]
    pub fn traced(mut self) -> Self {
        self.record_trace = true;
        self
    }
}
