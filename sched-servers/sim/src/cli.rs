//! The `tarn-sim` command line: parses options into a [`Scenario`] and a
//! policy, runs it, prints the report, writes the trace and the chart.

use std::fs::File;
use std::io::BufWriter;

use tarn_sched_servers::credit::Credit;
use tarn_sched_servers::rr::RoundRobin;
use tarn_sched_servers::sedf::Sedf;
use tarn_sched_servers::{DomainId, DomainParams, Policy, PoolParams};

use crate::report::expected_shares;
use crate::scenario::{Action, DomainSpec, Scenario, Workload, MS};
use crate::{simulate, svg, trace};

/// The help text.
pub const USAGE: &str = "\
tarn-sim: run a scheduling policy on simulated CPUs (deterministic)

usage: tarn-sim [options]
  --policy NAME             policy to run: credit (default), sedf, rr, or one a
                            program registered (tarn_sched_sim::cli::cli_main)
  --cpus N                  CPUs in the pool (default 2)
  --seconds S               simulated time, decimals allowed (default 3)
  --domains LIST            comma-separated domains (default 256,512,1024)
  --workload W              workload of domains that name none (default cpu)
  --timeslice-ms N          credit time slice / rr slice (1..1000)
  --ratelimit-us N          credit rate limit (0 or 100..500000)
  --quantum-ms N            sedf extra-time quantum (1..1000)
  --param KEY=VALUE         a pool parameter the policy declares (repeatable)
  --seed N                  workload seed (default 1)
  --switch-cost-ns N        context-switch cost (default 0)
  --sample-ms N             chart window (default 100)
  --tick-us N               serve timers with a periodic tick (as a runtime
                            without one-shot timers does) instead
  --remove-cpu MS@CPU       CPU leaves the pool at MS (repeatable)
  --add-cpu MS@CPU          CPU joins the pool at MS (repeatable)
  --pin [MS:]D@CPUS         hard affinity of every thread of domain D
                            (1-based) to CPUS (e.g. 0 or 0-1,3; all: any CPU
                            of the pool), from the start or at MS
                            (repeatable); the simulator checks every dispatch
  --soft [MS:]D@CPUS        soft affinity (preferred CPUs) of every thread of
                            domain D, as --pin (all: no preference)
  --trace FILE              write a Perfetto/Chrome trace JSON
  --svg FILE                write an SVG chart of shares over time
  -h, --help                this text

A domain is PARAM[:KEY=VALUE...]:
  PARAM   credit and rr: a weight (e.g. 512); sedf: SLICE/PERIOD in ms, with
          a trailing x for extra time (e.g. 20/40x), or - for best effort
  cap=PCT       credit cap in % of one CPU
  threads=N     threads (default 1)
  work=W        cpu | dutyRUN/SLEEP | burstyMIN-MAX/MIN-MAX | jobs | yieldRUN
                (ms; jobs = a job of SLICE released every PERIOD, for sedf)
  group=K       credit: member of the group of domain K (1-based)
  name=NAME     name in the report
  KEY=VALUE     any other key: a parameter the policy declares (for a
                registered policy the first part may be KEY=VALUE or -)

example: tarn-sim --policy credit --cpus 2 --domains 256,512,1024 --seconds 3 \\
           --trace out.json --svg out.svg";

/// Which policy to run.
#[derive(Clone, Copy, Debug)]
pub enum PolicyKind {
    /// [`Credit`].
    Credit,
    /// [`Sedf`].
    Sedf,
    /// [`RoundRobin`].
    RoundRobin,
    /// A policy a program registered (see [`cli_main`]).
    Registered(&'static str, MakePolicy),
}

impl PolicyKind {
    /// Its name (`credit`, `sedf`, `rr`, or the registered name).
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Credit => "credit",
            PolicyKind::Sedf => "sedf",
            PolicyKind::RoundRobin => "rr",
            PolicyKind::Registered(name, _) => name,
        }
    }
}

/// Policies are told apart by name (a registered policy's constructor is
/// found by it).
impl PartialEq for PolicyKind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for PolicyKind {}

/// Makes a fresh instance of a policy.
pub type MakePolicy = fn() -> Box<dyn Policy>;

/// The built-in policies' names.
pub const BUILTIN: &[&str] = &["credit", "sedf", "rr"];

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cli {
    /// The policy.
    pub policy: PolicyKind,
    /// The scenario to run.
    pub scenario: Scenario,
    /// Where to write the trace.
    pub trace: Option<String>,
    /// Where to write the chart.
    pub svg: Option<String>,
    /// Whether help was asked for.
    pub help: bool,
}

/// Parses the arguments (without the program name), built-in policies only.
pub fn parse(args: &[String]) -> Result<Cli, String> {
    parse_with(args, &[])
}

/// Parses the arguments; `--policy` also finds the `registered` policies.
pub fn parse_with(
    args: &[String],
    registered: &[(&'static str, MakePolicy)],
) -> Result<Cli, String> {
    let mut policy = PolicyKind::Credit;
    let mut cpus = 2u32;
    let mut seconds = "3".to_owned();
    let mut domains: Option<String> = None;
    let mut workload = Workload::CpuBound;
    let mut timeslice_ms: Option<u32> = None;
    let mut ratelimit_us: Option<u32> = None;
    let mut quantum_ms: Option<u32> = None;
    let mut pool_values: Vec<String> = Vec::new();
    let mut seed = 1u64;
    let mut switch_cost_ns = 0u64;
    let mut sample_ms = 100u64;
    let mut tick_us: Option<u64> = None;
    let mut actions = Vec::new();
    // (soft, when, domain, mask) of each --pin and --soft.
    let mut pins: Vec<(bool, Option<u64>, usize, Option<u64>)> = Vec::new();
    let mut trace = None;
    let mut svg = None;
    let mut help = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => help = true,
            "--policy" => {
                policy = match value()?.as_str() {
                    "credit" => PolicyKind::Credit,
                    "sedf" => PolicyKind::Sedf,
                    "rr" => PolicyKind::RoundRobin,
                    other => match registered.iter().find(|(name, _)| *name == other) {
                        Some(&(name, make)) => PolicyKind::Registered(name, make),
                        None => {
                            let mut names: Vec<&str> = BUILTIN.to_vec();
                            names.extend(registered.iter().map(|(name, _)| *name));
                            return Err(format!("unknown policy {other:?} ({})", names.join(", ")));
                        }
                    },
                }
            }
            "--cpus" => cpus = number(&value()?, "--cpus")?,
            "--seconds" => seconds = value()?,
            "--domains" => domains = Some(value()?),
            "--workload" => workload = parse_workload(&value()?)?,
            "--timeslice-ms" => timeslice_ms = Some(number(&value()?, arg)?),
            "--ratelimit-us" => ratelimit_us = Some(number(&value()?, arg)?),
            "--quantum-ms" => quantum_ms = Some(number(&value()?, arg)?),
            "--param" => {
                let pair = value()?;
                if !pair.contains('=') {
                    return Err(format!("--param wants KEY=VALUE, not {pair:?}"));
                }
                pool_values.push(pair);
            }
            "--seed" => seed = number(&value()?, arg)?,
            "--switch-cost-ns" => switch_cost_ns = number(&value()?, arg)?,
            "--sample-ms" => sample_ms = number(&value()?, arg)?,
            "--tick-us" => tick_us = Some(number(&value()?, arg)?),
            "--remove-cpu" | "--add-cpu" => {
                let spec = value()?;
                let (at, cpu) = spec
                    .split_once('@')
                    .ok_or_else(|| format!("{arg} wants MS@CPU, not {spec:?}"))?;
                let at_ns = number::<u64>(at, arg)? * MS;
                let cpu = number(cpu, arg)?;
                actions.push((
                    at_ns,
                    if arg == "--add-cpu" {
                        Action::AddCpu(cpu)
                    } else {
                        Action::RemoveCpu(cpu)
                    },
                ));
            }
            "--pin" | "--soft" => {
                let (at_ns, domain, mask) = parse_pin(&value()?, arg)?;
                pins.push((arg == "--soft", at_ns, domain, mask));
            }
            "--trace" => trace = Some(value()?),
            "--svg" => svg = Some(value()?),
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    if sample_ms == 0 {
        return Err("--sample-ms must be > 0".into());
    }
    let duration_ns = parse_seconds(&seconds)?;
    let domains = domains.unwrap_or_else(|| match policy {
        PolicyKind::Sedf => "10/100,30/50,20/40,-".to_owned(),
        PolicyKind::Registered(..) => "-,-,-".to_owned(),
        _ => "256,512,1024".to_owned(),
    });
    let mut scenario = Scenario::new(cpus, duration_ns).seed(seed);
    scenario.switch_cost_ns = switch_cost_ns;
    scenario.sample_ns = sample_ms * MS;
    scenario.record_trace = trace.is_some();
    scenario.periodic_tick_ns = tick_us.filter(|&t| t > 0).map(|t| t * 1000);
    scenario.actions = actions;
    scenario.pool_params = match policy {
        PolicyKind::Credit => Some(PoolParams::Credit {
            timeslice_ms: timeslice_ms.unwrap_or(30),
            ratelimit_us: ratelimit_us.unwrap_or(1000),
        }),
        PolicyKind::Sedf => Some(PoolParams::Sedf {
            extra_quantum_ms: quantum_ms.unwrap_or(10),
        }),
        PolicyKind::RoundRobin => Some(PoolParams::RoundRobin {
            timeslice_ms: timeslice_ms.unwrap_or(10),
        }),
        PolicyKind::Registered(..) => None,
    };
    scenario.pool_values = pool_values.join(" ");
    for (index, spec) in domains.split(',').enumerate() {
        let id = u32::try_from(index + 1).map_err(|_| "too many domains".to_owned())?;
        scenario
            .domains
            .push(parse_domain(id, spec.trim(), policy, workload)?);
    }
    for (soft, at_ns, domain, mask) in pins {
        let option = if soft { "--soft" } else { "--pin" };
        let index = domain
            .checked_sub(1)
            .filter(|&i| i < scenario.domains.len())
            .ok_or_else(|| format!("{option}: there is no domain {domain}"))?;
        match at_ns {
            None => {
                let spec = &mut scenario.domains[index];
                let masks = if soft {
                    &mut spec.soft
                } else {
                    &mut spec.affinity
                };
                masks.iter_mut().for_each(|a| *a = mask);
            }
            Some(at_ns) => {
                for n in 0..scenario.domains[index].threads.len() {
                    let thread = scenario.thread_id(index, n);
                    let action = if soft {
                        Action::SetSoftAffinity(thread, mask)
                    } else {
                        Action::SetAffinity(thread, mask)
                    };
                    scenario.actions.push((at_ns, action));
                }
            }
        }
    }
    Ok(Cli {
        policy,
        scenario,
        trace,
        svg,
        help,
    })
}

/// `[MS:]D@CPUS` (of `option`, `--pin` or `--soft`): when (`None`: from
/// the start), which domain (1-based), and the CPU mask (`None` for `all`).
fn parse_pin(text: &str, option: &str) -> Result<(Option<u64>, usize, Option<u64>), String> {
    let bad = || format!("{option} wants [MS:]D@CPUS, not {text:?}");
    let (head, cpus) = text.split_once('@').ok_or_else(bad)?;
    let (at_ns, domain) = match head.split_once(':') {
        Some((at, domain)) => (Some(number::<u64>(at, option)? * MS), domain),
        None => (None, head),
    };
    let domain = number::<usize>(domain, option)?;
    if cpus == "all" {
        return Ok((at_ns, domain, None));
    }
    let mut mask = 0u64;
    for part in cpus.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (number::<u32>(a, option)?, number::<u32>(b, option)?),
            None => {
                let n = number::<u32>(part, option)?;
                (n, n)
            }
        };
        if first > last || last >= 64 {
            return Err(format!("{option}: CPUs {part:?} (0..=63, low-high)"));
        }
        for cpu in first..=last {
            mask |= 1 << cpu;
        }
    }
    Ok((at_ns, domain, Some(mask)))
}

fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{what}: {text:?} is not a valid number"))
}

/// Seconds with up to nine decimals, as nanoseconds.
fn parse_seconds(text: &str) -> Result<u64, String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 9 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("--seconds: {text:?} is not a valid duration"));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        number(whole, "--seconds")?
    };
    let padded = format!("{fraction:0<9}");
    let fraction: u64 = number(&padded, "--seconds")?;
    let ns = whole * 1_000_000_000 + fraction;
    if ns == 0 {
        return Err("--seconds must be > 0".into());
    }
    Ok(ns)
}

/// `cpu`, `dutyR/S`, `burstyA-B/C-D`, `jobs` (periodic, filled in by the
/// domain), `yieldR`; times in ms.
fn parse_workload(text: &str) -> Result<Workload, String> {
    let bad = || format!("unknown workload {text:?} (cpu, dutyR/S, burstyA-B/C-D, jobs, yieldR)");
    if text == "cpu" {
        return Ok(Workload::CpuBound);
    }
    if text == "jobs" {
        // Period and work come from the domain's SEDF parameters.
        return Ok(Workload::Periodic {
            period_ns: 0,
            work_ns: 0,
        });
    }
    if let Some(rest) = text.strip_prefix("duty") {
        let (run, sleep) = rest.split_once('/').ok_or_else(bad)?;
        return Ok(Workload::DutyCycle {
            run_ns: number::<u64>(run, "duty")? * MS,
            sleep_ns: number::<u64>(sleep, "duty")? * MS,
        });
    }
    if let Some(rest) = text.strip_prefix("bursty") {
        let (run, sleep) = rest.split_once('/').ok_or_else(bad)?;
        let (run_min, run_max) = run.split_once('-').ok_or_else(bad)?;
        let (sleep_min, sleep_max) = sleep.split_once('-').ok_or_else(bad)?;
        return Ok(Workload::Bursty {
            run_min_ns: number::<u64>(run_min, "bursty")? * MS,
            run_max_ns: number::<u64>(run_max, "bursty")? * MS,
            sleep_min_ns: number::<u64>(sleep_min, "bursty")? * MS,
            sleep_max_ns: number::<u64>(sleep_max, "bursty")? * MS,
        });
    }
    if let Some(rest) = text.strip_prefix("yield") {
        return Ok(Workload::Yielder {
            run_ns: number::<u64>(rest, "yield")? * MS,
        });
    }
    Err(bad())
}

fn parse_domain(
    id: u32,
    spec: &str,
    policy: PolicyKind,
    default_workload: Workload,
) -> Result<DomainSpec, String> {
    let mut parts = spec.split(':');
    let param = parts.next().unwrap_or_default();
    let mut domain = DomainSpec::new(id);
    let mut weight = None;
    let mut cap_pct = 0u32;
    let mut sedf: Option<(u64, u64, bool)> = None;
    match policy {
        PolicyKind::Sedf => {
            if param != "-" {
                let extra = param.ends_with('x');
                let (slice, period) =
                    param.trim_end_matches('x').split_once('/').ok_or_else(|| {
                        format!("sedf domain {id}: want SLICE/PERIOD[x] or -, not {param:?}")
                    })?;
                sedf = Some((
                    number::<u64>(slice, "slice")? * MS,
                    number::<u64>(period, "period")? * MS,
                    extra,
                ));
            }
        }
        PolicyKind::Credit | PolicyKind::RoundRobin => {
            weight = Some(number::<u32>(param, "weight")?);
        }
        PolicyKind::Registered(..) => {
            if param != "-" && !param.is_empty() {
                if !param.contains('=') {
                    return Err(format!("domain {id}: want KEY=VALUE or -, not {param:?}"));
                }
                domain = domain.values(param);
            }
        }
    }
    let mut threads = 1usize;
    let mut workload = default_workload;
    let mut group = None;
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("domain {id}: {part:?} is not KEY=VALUE"))?;
        match key {
            "cap" => cap_pct = number(value, "cap")?,
            "threads" => threads = number(value, "threads")?,
            "work" => workload = parse_workload(value)?,
            "group" => group = Some(DomainId(number(value, "group")?)),
            "name" => domain.name = value.to_owned(),
            // Anything else is the policy's own (it refuses keys it does
            // not declare when the simulation starts).
            _ => domain = domain.values(part),
        }
    }
    if let Workload::Periodic { .. } = workload {
        let (slice_ns, period_ns, _) =
            sedf.ok_or_else(|| format!("domain {id}: work=jobs needs SEDF SLICE/PERIOD"))?;
        workload = Workload::Periodic {
            period_ns,
            work_ns: slice_ns,
        };
    }
    if policy == PolicyKind::Credit {
        domain = domain.param(DomainParams::Credit {
            weight: weight.unwrap_or(256),
            cap_pct,
        });
    } else if cap_pct != 0 {
        return Err(format!("domain {id}: cap= is a credit parameter"));
    }
    if let Some((slice_ns, period_ns, extra)) = sedf {
        domain = domain.sedf(slice_ns, period_ns, extra);
    }
    if let Some(master) = group {
        if policy != PolicyKind::Credit {
            return Err(format!("domain {id}: group= is a credit parameter"));
        }
        domain = domain.param(DomainParams::Group {
            master: Some(master),
        });
    }
    Ok(domain.threads(threads, workload))
}

/// Builds the policy.
pub fn make_policy(kind: PolicyKind) -> Box<dyn Policy> {
    match kind {
        PolicyKind::Credit => Box::new(Credit::new()),
        PolicyKind::Sedf => Box::new(Sedf::new()),
        PolicyKind::RoundRobin => Box::new(RoundRobin::default()),
        PolicyKind::Registered(_, make) => make(),
    }
}

/// A `tarn-sim` for a policy crate of its own: the whole `main` of its
/// simulator binary is
///
/// ```ignore
/// fn main() -> std::process::ExitCode {
///     tarn_sched_sim::cli::cli_main(&[("prio", || Box::new(Prio::default()))])
/// }
/// ```
///
/// and `--policy prio` (besides the built-ins) runs it with every option of
/// `tarn-sim`.
pub fn cli_main(registered: &[(&'static str, MakePolicy)]) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_with(&args, registered).and_then(|cli| run(&cli)) {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("tarn-sim: {why}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs a parsed command line; the text to print.
pub fn run(cli: &Cli) -> Result<String, String> {
    if cli.help {
        return Ok(USAGE.to_owned());
    }
    let mut policy = make_policy(cli.policy);
    let report = simulate(policy.as_mut(), &cli.scenario).map_err(|e| e.to_string())?;
    let mut text = report.to_string();
    let all_cpu_bound = cli
        .scenario
        .domains
        .iter()
        .all(|d| d.threads.iter().all(|w| *w == Workload::CpuBound));
    let grouped = cli.scenario.domains.iter().any(|d| {
        d.params
            .iter()
            .any(|p| matches!(p, DomainParams::Group { .. }))
    });
    if cli.policy == PolicyKind::Credit
        && all_cpu_bound
        && !grouped
        && cli.scenario.actions.is_empty()
    {
        let weights: Vec<(u32, u32, u32)> = cli
            .scenario
            .domains
            .iter()
            .map(|d| {
                let (weight, cap) = d
                    .params
                    .iter()
                    .find_map(|p| match *p {
                        DomainParams::Credit { weight, cap_pct } => Some((weight, cap_pct)),
                        _ => None,
                    })
                    .unwrap_or((256, 0));
                (
                    weight,
                    u32::try_from(d.threads.len()).unwrap_or(u32::MAX),
                    cap,
                )
            })
            .collect();
        let expected = expected_shares(cli.scenario.cpus, &weights);
        text.push_str("expected (weights, water-filled):");
        for (domain, share) in cli.scenario.domains.iter().zip(expected) {
            text.push_str(&format!(" {} {share:.2}%", domain.name));
        }
        text.push('\n');
    }
    if let Some(path) = &cli.trace {
        let file = File::create(path).map_err(|e| format!("{path}: {e}"))?;
        trace::write_chrome_trace(&report, &mut BufWriter::new(file))
            .map_err(|e| format!("{path}: {e}"))?;
        text.push_str(&format!("trace written to {path}\n"));
    }
    if let Some(path) = &cli.svg {
        let file = File::create(path).map_err(|e| format!("{path}: {e}"))?;
        svg::write_svg(&report, &mut BufWriter::new(file)).map_err(|e| format!("{path}: {e}"))?;
        text.push_str(&format!("chart written to {path}\n"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tarn_sched_servers::ThreadId;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_the_documented_example() {
        let cli = parse(&args(
            "--policy credit --cpus 2 --domains 256,512,1024 --seconds 3 --trace out.json --svg out.svg",
        ))
        .unwrap();
        assert_eq!(cli.policy, PolicyKind::Credit);
        assert_eq!(cli.scenario.cpus, 2);
        assert_eq!(cli.scenario.duration_ns, 3_000_000_000);
        assert_eq!(cli.scenario.domains.len(), 3);
        assert_eq!(
            cli.scenario.domains[1].params,
            vec![DomainParams::Credit {
                weight: 512,
                cap_pct: 0
            }]
        );
        assert!(cli.scenario.record_trace);
        assert_eq!(cli.trace.as_deref(), Some("out.json"));
    }

    #[test]
    fn parses_pins() {
        let cli = parse(&args(
            "--domains 256,256:threads=2,256 --pin 1@0 --pin 2@0-1,3 --pin 500:2@all",
        ))
        .expect("parses");
        let domains = &cli.scenario.domains;
        assert_eq!(domains[0].affinity, vec![Some(0b1)]);
        assert_eq!(domains[1].affinity, vec![Some(0b1011); 2]);
        assert_eq!(domains[2].affinity, vec![None]);
        assert_eq!(
            cli.scenario.actions,
            vec![
                (500 * MS, Action::SetAffinity(ThreadId(2), None)),
                (500 * MS, Action::SetAffinity(ThreadId(3), None)),
            ]
        );
    }

    #[test]
    fn parses_domain_keys_and_workloads() {
        let cli = parse(&args(
            "--policy sedf --seconds 0.5 --domains 20/40x:work=jobs,-:threads=2:work=duty3/7:name=be",
        ))
        .unwrap();
        assert_eq!(cli.scenario.duration_ns, 500_000_000);
        let rt = &cli.scenario.domains[0];
        assert_eq!(
            rt.params,
            vec![DomainParams::Sedf {
                period_ns: 40 * MS,
                slice_ns: 20 * MS,
                extra: true
            }]
        );
        assert_eq!(
            rt.threads,
            vec![Workload::Periodic {
                period_ns: 40 * MS,
                work_ns: 20 * MS
            }]
        );
        let be = &cli.scenario.domains[1];
        assert_eq!(be.name, "be");
        assert!(be.params.is_empty());
        assert_eq!(be.threads.len(), 2);
        assert_eq!(
            parse_workload("bursty1-20/2-30").unwrap(),
            Workload::Bursty {
                run_min_ns: MS,
                run_max_ns: 20 * MS,
                sleep_min_ns: 2 * MS,
                sleep_max_ns: 30 * MS
            }
        );
    }

    #[test]
    fn refuses_nonsense() {
        assert!(parse(&args("--policy fifo")).is_err());
        assert!(parse(&args("--cpus")).is_err());
        assert!(parse(&args("--seconds 0")).is_err());
        assert!(parse(&args("--domains 256:cap")).is_err());
        assert!(parse(&args("--policy rr --domains 256:cap=50")).is_err());
        assert!(parse(&args("--workload warp")).is_err());
        assert!(parse(&args("--pin 4@0")).is_err()); // three domains by default
        assert!(parse(&args("--pin 1@64")).is_err());
        assert!(parse(&args("--pin 1@1-0")).is_err());
        assert!(parse(&args("--pin 1")).is_err());
        let cli = parse(&args("--pin 1@0-1 --soft 1@1 --soft 500:2@all")).expect("parses");
        assert_eq!(cli.scenario.domains[0].affinity, vec![Some(0b11)]);
        assert_eq!(cli.scenario.domains[0].soft, vec![Some(0b10)]);
        assert_eq!(
            cli.scenario.actions,
            vec![(500 * MS, Action::SetSoftAffinity(ThreadId(2), None))]
        );
        assert!(parse(&args("--soft 4@0")).is_err());
    }
}
