//! What a run measured: per-domain shares and deadline misses, idle time
//! while work waited, migrations, and the raw material of the trace and the
//! chart.

use std::fmt::{self, Write as _};

use tarn_sched_servers::{DomainId, ThreadId};

/// One domain's results.
#[derive(Clone, Debug, PartialEq)]
pub struct DomainReport {
    /// Its identifier.
    pub id: DomainId,
    /// Its name.
    pub name: String,
    /// Number of threads.
    pub threads: usize,
    /// CPU time its threads received.
    pub cpu_ns: u64,
    /// `cpu_ns` in percent of one CPU over the run.
    pub share_pct: f64,
    /// Periodic jobs released (deadlines that passed).
    pub jobs: u64,
    /// Jobs not finished by their deadline.
    pub deadline_misses: u64,
}

/// One run slice of a thread on a CPU, for the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// The CPU.
    pub cpu: u32,
    /// The thread.
    pub thread: ThreadId,
    /// Index of its domain in [`Report::domains`].
    pub domain: usize,
    /// When it started running (after any switch cost).
    pub start_ns: u64,
    /// When its entry ended.
    pub end_ns: u64,
}

/// A point event for the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The CPU it concerns.
    pub cpu: u32,
    /// When.
    pub time_ns: u64,
    /// What.
    pub what: String,
}

/// Everything a run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The policy's name.
    pub policy: String,
    /// CPUs at the start.
    pub cpus: u32,
    /// Simulated time.
    pub duration_ns: u64,
    /// Per domain, in scenario order.
    pub domains: Vec<DomainReport>,
    /// CPU time spent idle (CPUs in the pool only).
    pub idle_ns: u64,
    /// Idle CPU time while a runnable thread waited (counted per idle CPU, at
    /// most one per waiting thread). Includes threads a policy holds back on
    /// purpose (a capped domain out of credit, SEDF without extra time).
    pub idle_while_waiting_ns: u64,
    /// Pool CPU time in total (sum over CPUs of their time in the pool).
    pub pool_cpu_ns: u64,
    /// Time lost to context switches.
    pub switch_ns: u64,
    /// Dispatches that put a thread on another CPU than its last one.
    pub migrations: u64,
    /// Dispatches that changed the CPU's thread.
    pub context_switches: u64,
    /// Entries dispatched.
    pub dispatches: u64,
    /// Preemptions the policy asked for.
    pub preemptions: u64,
    /// Dispatches of a thread to a CPU outside its hard affinity (while a
    /// CPU of its affinity was in the pool); each is also a protocol error.
    pub affinity_violations: u64,
    /// Contract violations by the policy (each described); a correct policy
    /// has none.
    pub protocol_errors: Vec<String>,
    /// Errors returned by timed actions (time, description).
    pub action_errors: Vec<(u64, String)>,
    /// Width of the chart windows.
    pub sample_ns: u64,
    /// Per window, per domain: percent of one CPU received in the window.
    pub samples: Vec<Vec<f64>>,
    /// Run slices (when the scenario records a trace).
    pub slices: Vec<Slice>,
    /// Point events (preemptions, deadline misses) when recording a trace.
    pub marks: Vec<Mark>,
}

impl Report {
    /// [`Report::idle_while_waiting_ns`] in percent of the pool's CPU time.
    pub fn idle_while_waiting_pct(&self) -> f64 {
        if self.pool_cpu_ns == 0 {
            return 0.0;
        }
        self.idle_while_waiting_ns as f64 * 100.0 / self.pool_cpu_ns as f64
    }

    /// The share of the domain `id` in percent of one CPU.
    pub fn share(&self, id: u32) -> f64 {
        self.domain(id).share_pct
    }

    /// The report of domain `id`. Panics if there is none (tests use it).
    pub fn domain(&self, id: u32) -> &DomainReport {
        self.domains
            .iter()
            .find(|d| d.id == DomainId(id))
            .unwrap_or_else(|| panic!("no domain {id} in the report"))
    }

    /// Deadline misses over all domains.
    pub fn deadline_misses(&self) -> u64 {
        self.domains.iter().map(|d| d.deadline_misses).sum()
    }

    /// The shares in scenario order.
    pub fn shares(&self) -> Vec<f64> {
        self.domains.iter().map(|d| d.share_pct).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "policy {} on {} CPUs for {}.{:03} s",
            self.policy,
            self.cpus,
            self.duration_ns / 1_000_000_000,
            self.duration_ns / 1_000_000 % 1000
        )?;
        writeln!(
            f,
            "{:<12} {:>7} {:>12} {:>9} {:>7} {:>7}",
            "domain", "threads", "cpu ms", "share %", "jobs", "missed"
        )?;
        for d in &self.domains {
            writeln!(
                f,
                "{:<12} {:>7} {:>12.3} {:>9.2} {:>7} {:>7}",
                d.name,
                d.threads,
                d.cpu_ns as f64 / 1e6,
                d.share_pct,
                d.jobs,
                d.deadline_misses
            )?;
        }
        let mut line = String::new();
        let _ = write!(
            line,
            "idle {:.2}% of CPU time; idle while work waited {:.3}%; ",
            self.idle_ns as f64 * 100.0 / self.pool_cpu_ns.max(1) as f64,
            self.idle_while_waiting_pct()
        );
        let _ = write!(
            line,
            "{} dispatches, {} context switches, {} migrations, {} preemptions",
            self.dispatches, self.context_switches, self.migrations, self.preemptions
        );
        if self.affinity_violations > 0 {
            let _ = write!(line, ", {} affinity violations", self.affinity_violations);
        }
        writeln!(f, "{line}")?;
        for error in &self.protocol_errors {
            writeln!(f, "protocol error: {error}")?;
        }
        for (time_ns, error) in &self.action_errors {
            writeln!(f, "action at {time_ns} ns refused: {error}")?;
        }
        Ok(())
    }
}

/// Expected long-run shares (percent of one CPU) of CPU-bound domains under a
/// weighted fair policy on `cpus` CPUs: proportional to weight, water-filled
/// so that a domain gets at most `100 × threads` (and at most its cap when
/// non-zero). Each entry is `(weight, threads, cap_pct)`. Independent of the
/// policy code (floating point), for tests and the CLI.
pub fn expected_shares(cpus: u32, domains: &[(u32, u32, u32)]) -> Vec<f64> {
    let mut shares = vec![0.0; domains.len()];
    let mut open: Vec<usize> = (0..domains.len()).collect();
    let mut remaining = f64::from(cpus) * 100.0;
    while !open.is_empty() && remaining > 1e-9 {
        let total: f64 = open.iter().map(|&i| f64::from(domains[i].0)).sum();
        let limit = |i: usize| {
            let (_, threads, cap) = domains[i];
            let peak = f64::from(threads) * 100.0;
            if cap > 0 {
                peak.min(f64::from(cap))
            } else {
                peak
            }
        };
        let saturated: Vec<usize> = open
            .iter()
            .copied()
            .filter(|&i| remaining * f64::from(domains[i].0) / total >= limit(i))
            .collect();
        if saturated.is_empty() {
            for &i in &open {
                shares[i] = remaining * f64::from(domains[i].0) / total;
            }
            break;
        }
        for &i in &saturated {
            shares[i] = limit(i);
            remaining -= limit(i);
        }
        open.retain(|i| !saturated.contains(i));
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_shares_water_fill() {
        let s = expected_shares(2, &[(256, 1, 0), (512, 1, 0), (1024, 1, 0)]);
        assert!((s[0] - 100.0 / 3.0).abs() < 1e-9);
        assert!((s[1] - 200.0 / 3.0).abs() < 1e-9);
        assert!((s[2] - 100.0).abs() < 1e-9);
        let s = expected_shares(
            4,
            &[
                (128, 1, 0),
                (256, 1, 0),
                (256, 1, 0),
                (512, 1, 0),
                (1024, 1, 0),
                (2048, 1, 0),
            ],
        );
        let want = [
            200.0 / 9.0,
            400.0 / 9.0,
            400.0 / 9.0,
            800.0 / 9.0,
            100.0,
            100.0,
        ];
        for (got, want) in s.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{s:?}");
        }
        let s = expected_shares(2, &[(256, 1, 50)]);
        assert!((s[0] - 50.0).abs() < 1e-9);
    }
}
