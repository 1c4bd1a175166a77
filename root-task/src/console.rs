//! The serial console: a command line on COM1, with xl's command names. The
//! root task owns the UART's input (receive interrupts on IRQ 4, delivered
//! to a notification); the kernel keeps writing its own lines to the same
//! UART. Input is echoed, backspace edits, and each line is one command.
//! Unknown commands and malformed arguments get a clear error and change
//! nothing.
//!
//! The same commands arrive two other ways, with their output captured
//! instead of printed: over the control channel on COM2 (frames of
//! `tarn_ipc_schema::control`, from the host's `tarnctl`), and from tenants
//! holding a delegated pool's capability (only commands that stay inside
//! that pool, see [`tenant_scope`]). While a command waits (`sleep`, `top`),
//! tenants are still answered and loans still end on time.

use crate::pools::{Clock, DomainStat, Pools};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use tarn_pool_manager::config::{self, DomainType};
use tarn_pool_manager::pools::{
    self as rules, DomainParams, PoolId, PoolManager, Sched, SedfParams,
};
use tarn_rt::abi::boot::BootInfo;
use tarn_rt::abi::control::{self, ControlReply, ControlRequest};
use tarn_rt::abi::sched_protocol::Misbehaviour;
use tarn_rt::abi::{CPtr, ObjectType};
use tarn_rt::layout::slot;
use tarn_rt::{invoke, println, Resources};

/// Output of the command running now: the console's UART, or a buffer
/// when the command came over the control channel.
static CAPTURE: spin::Mutex<Option<String>> = spin::Mutex::new(None);

/// `println!` for command output: captured for the control channel while
/// it runs a command, the console otherwise.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::say_line(&alloc::format!($($arg)*))
    };
}

/// One line of command output (see [`say!`]).
pub fn say_line(text: &str) {
    let mut capture = CAPTURE.lock();
    match capture.as_mut() {
        Some(buffer) => {
            buffer.push_str(text);
            buffer.push('\n');
        }
        None => {
            drop(capture);
            println!("{text}");
        }
    }
}

/// The UARTs: COM1 (the console) and COM2 (the control channel).
const COM1: u64 = 0x3F8;
const COM2: u64 = 0x2F8;
/// A 16550's registers, from its base port.
const RBR_THR: u64 = 0;
const IER: u64 = 1;
const MCR: u64 = 4;
const LSR: u64 = 5;
/// Their ISA IRQs.
const COM1_IRQ: u64 = 4;
const COM2_IRQ: u64 = 3;
/// The prompt (no newline: input follows it on the same line).
pub const PROMPT: &str = "tarn> ";
/// Longest command line kept.
const MAX_LINE: usize = 256;

/// Commands the console knows, with one line of help each.
const COMMANDS: &[(&str, &str)] = &[
    ("help", "list the commands"),
    (
        "info",
        "CPUs, memory, boot modules, free CPUs, kernel objects",
    ),
    (
        "list [-l] [--pool=P]",
        "domains: name, id, vCPUs, state, CPU time, pool (-l: JSON)",
    ),
    (
        "create KEY=VALUE... | FILE.cfg",
        "start a domain (xl.cfg keys: name pool image|kernel type vcpus cpu_weight cpu_cap period slice extra)",
    ),
    ("destroy D", "stop a domain and forget it"),
    ("pause D / unpause D", "stop / restart a domain's vCPUs"),
    (
        "cpupool-create KEY=VALUE... | FILE.cfg",
        "define and activate a pool (name sched cpus other_config)",
    ),
    ("cpupool-new KEY=VALUE...", "define a pool (also pool-new)"),
    ("cpupool-start P", "activate a defined pool"),
    (
        "cpupool-destroy P",
        "deactivate a pool without domains (CPUs become free)",
    ),
    ("cpupool-delete P", "forget a deactivated pool"),
    ("cpupool-rename P NAME", "rename a pool"),
    (
        "cpupool-cpu-add P CPUS",
        "add free CPUs (a list, a range or a count)",
    ),
    (
        "cpupool-cpu-remove P CPUS",
        "take CPUs back (negotiated with the pool's server)",
    ),
    (
        "cpupool-migrate D P",
        "move a running domain to another pool",
    ),
    (
        "cpupool-cpu-loan CPU P MS",
        "lend CPU to pool P for MS ms; it returns by itself",
    ),
    ("cpupool-cpu-loan-end CPU", "end a loan now"),
    (
        "cpupool-delegate P D",
        "give domain D (a tenant) a capability to manage pool P",
    ),
    ("cpupool-undelegate P D", "revoke that capability"),
    ("cpupool-sched P credit|sedf", "change a live pool's policy"),
    (
        "cpupool-list [-c] [-l] [P...]",
        "pools: name, CPUs, scheduler, active, domains (-c: CPU lists, -l: JSON)",
    ),
    (
        "sched-credit [-d D [-w W] [-c CAP]] [-s -p P [-t MS] [-r US]]",
        "credit parameters of a domain or a pool",
    ),
    (
        "sched-sedf [-d D -p MS -s MS [-e 0|1]]",
        "sedf reservation of a domain",
    ),
    (
        "sched-group -d D (-m MASTER | -n)",
        "credit scheduling groups",
    ),
    ("vcpu-list [D]", "vCPUs: domain, CPU, state, time in its pools, the thread's whole run time"),
    (
        "top [--json] [-d MS]",
        "CPU share of each domain over MS (default 1000)",
    ),
    (
        "server-fault P crash|hang|ignore-remove",
        "fault injection: make a pool's scheduler server misbehave",
    ),
    ("sleep MS", "wait MS milliseconds"),
    (
        "repeat N CMD [| CMD...]",
        "run the commands N times (# is the round number); stops at the first error",
    ),
    ("poweroff", "power the machine off (exit status 0)"),
];

/// Commands that belong to the console but are not built yet.
const NOT_BUILT: &[&str] = &["vcpu-pin"];

/// A 16550 UART at `base`.
struct Uart {
    ports: CPtr,
    base: u64,
}

impl Uart {
    const fn com1() -> Uart {
        Uart {
            ports: slot::IO_PORTS,
            base: COM1,
        }
    }

    const fn com2() -> Uart {
        Uart {
            ports: slot::IO_PORTS,
            base: COM2,
        }
    }

    fn read(&self, register: u64) -> u8 {
        invoke::ioport_in(self.ports, self.base + register, 1).unwrap_or(0) as u8
    }

    fn write_byte(&self, byte: u8) {
        while self.read(LSR) & 0x20 == 0 {}
        let _ = invoke::ioport_out(self.ports, self.base + RBR_THR, 1, u64::from(byte));
    }

    fn write(&self, text: &str) {
        self.write_bytes(text.as_bytes());
    }

    fn write_bytes(&self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_byte(byte);
        }
    }

    /// The next received byte, if one is waiting.
    fn receive(&self) -> Option<u8> {
        (self.read(LSR) & 1 != 0).then(|| self.read(RBR_THR))
    }

    /// Receive-data interrupts on; OUT2 gates the UART's IRQ line.
    fn enable_interrupts(&self) {
        let _ = invoke::ioport_out(self.ports, self.base + IER, 1, 0x01);
        let _ = invoke::ioport_out(self.ports, self.base + MCR, 1, 0x0B);
    }
}

/// How input arrives: interrupts (COM1's IRQ 4 and COM2's IRQ 3 to one
/// notification), or polling when the interrupts cannot be had.
enum Input {
    Interrupt {
        handlers: Vec<CPtr>,
        notification: CPtr,
    },
    Poll {
        sleeper: CPtr,
    },
}

impl Input {
    fn setup(resources: &mut Resources, uarts: &[(&Uart, u64)]) -> Input {
        let sleeper = resources.create(ObjectType::Notification, 0).unwrap_or(0);
        let Ok(notification) = resources.create(ObjectType::Notification, 0) else {
            return Input::Poll { sleeper };
        };
        let mut handlers = Vec::new();
        for (uart, irq) in uarts {
            let handler = (|| {
                let handler = resources.alloc_slot().ok()?;
                invoke::irq_control_get(slot::IRQ_CONTROL, *irq, handler).ok()?;
                invoke::irq_handler_set_notification(handler, notification).ok()?;
                Some(handler)
            })();
            match handler {
                Some(handler) => {
                    uart.enable_interrupts();
                    handlers.push(handler);
                }
                None => return Input::Poll { sleeper },
            }
        }
        Input::Interrupt {
            handlers,
            notification,
        }
    }

    /// The notification `wait` waits on (others may signal it to wake the
    /// console, e.g. when a fault arrives).
    fn notification(&self) -> CPtr {
        match self {
            Input::Interrupt { notification, .. } => *notification,
            Input::Poll { sleeper } => *sleeper,
        }
    }

    /// Waits for input to (possibly) be there, or `timeout_ns` (0: no limit).
    fn wait(&self, timeout_ns: u64) {
        match self {
            Input::Interrupt {
                handlers,
                notification,
            } => {
                let _ = tarn_rt::wait(*notification, timeout_ns);
                for &handler in handlers {
                    let _ = invoke::irq_handler_ack(handler);
                }
            }
            Input::Poll { sleeper } => {
                let limit = if timeout_ns == 0 {
                    10_000_000
                } else {
                    timeout_ns
                };
                let _ = tarn_rt::sleep(*sleeper, limit.min(10_000_000));
            }
        }
    }
}

/// The control channel on COM2 (`tarn_ipc_schema::control`): frames of
/// COBS-encoded requests, each a console command line; the output goes back
/// in frames.
struct ControlPort {
    uart: Uart,
    frame: Vec<u8>,
    /// The frame being read grew past `MAX_FRAME`: skip to its end.
    overlong: bool,
}

impl ControlPort {
    /// Reads what COM2 has; returns each complete frame.
    fn receive(&mut self) -> Option<Vec<u8>> {
        while let Some(byte) = self.uart.receive() {
            if byte == 0 {
                let mut frame = core::mem::take(&mut self.frame);
                frame.push(0);
                if core::mem::take(&mut self.overlong) {
                    frame.clear();
                }
                return Some(frame);
            }
            if self.frame.len() >= control::MAX_FRAME {
                self.overlong = true;
                self.frame.clear();
            }
            if !self.overlong {
                self.frame.push(byte);
            }
        }
        None
    }

    fn send(&self, reply: &ControlReply) {
        let mut buffer = [0u8; control::MAX_FRAME];
        if let Some(frame) = control::encode(reply, &mut buffer) {
            self.uart.write_bytes(frame);
        }
    }

    /// Answers one frame: runs its command with the output captured.
    fn serve(
        &self,
        mut frame: Vec<u8>,
        console: &mut Console,
        resources: &mut Resources,
        pools: Option<&mut Pools>,
    ) {
        let Some(ControlRequest::Run { id, line }) = control::decode::<ControlRequest>(&mut frame)
        else {
            self.send(&ControlReply::Output {
                id: 0,
                text: "error: control: garbled or oversized frame\n",
            });
            self.send(&ControlReply::Done { id: 0, ok: false });
            return;
        };
        let line = String::from(line);
        *CAPTURE.lock() = Some(String::new());
        let mut pools = pools;
        console.execute(resources, pools.as_deref_mut(), line.trim());
        if let Some(p) = pools {
            p.service(resources);
        }
        let output = CAPTURE.lock().take().unwrap_or_default();
        let ok = !output.lines().any(|l| l.starts_with("error:"));
        let mut rest = output.as_str();
        while !rest.is_empty() {
            let mut cut = rest.len().min(control::MAX_OUTPUT_PIECE);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            self.send(&ControlReply::Output {
                id,
                text: &rest[..cut],
            });
            rest = &rest[cut..];
        }
        self.send(&ControlReply::Done { id, ok });
    }
}

/// Runs the console forever (or until `poweroff`). `pools` is the boot
/// state of the pools; the runtime starts here, once the console can be
/// woken by the fault watcher.
pub fn run(info: &'static BootInfo, resources: &mut Resources, pools: Option<PoolManager>) -> ! {
    let uart = Uart::com1();
    let mut control_port = ControlPort {
        uart: Uart::com2(),
        frame: Vec::new(),
        overlong: false,
    };
    let input = Input::setup(
        resources,
        &[(&uart, COM1_IRQ), (&control_port.uart, COM2_IRQ)],
    );
    let sleeper = resources.create(ObjectType::Notification, 0).unwrap_or(0);
    let clock = Clock;
    let mut pools = pools.and_then(|manager| {
        match Pools::start(info, resources, manager, input.notification(), clock) {
            Ok(pools) => Some(pools),
            Err(error) => {
                println!("root: cannot start the pool manager: {error:?}");
                None
            }
        }
    });
    if let Some(p) = &pools {
        let cpus = p.manager.pool(rules::POOL0).map_or(0, |p| p.cpus.len());
        println!("root: Pool-0: credit on {cpus} cpus");
    }
    let mut console = Console {
        info,
        sleeper,
        clock,
        input,
    };
    crate::autostart::load(info);
    if let Some(p) = pools.as_mut() {
        crate::autostart::run(resources, p, info.cmdline());
    }
    if !info.cmdline().split_whitespace().any(|w| w == "noauto") {
        for command in crate::autostart::autorun() {
            println!("{PROMPT}{command}");
            console.execute(resources, pools.as_mut(), &command);
            if let Some(p) = pools.as_mut() {
                p.service(resources);
            }
        }
    }
    let mut line = String::new();
    uart.write(PROMPT);
    loop {
        if let Some(p) = pools.as_mut() {
            p.service(resources);
        }
        while let Some(frame) = control_port.receive() {
            control_port.serve(frame, &mut console, resources, pools.as_mut());
        }
        if let Some(p) = pools.as_mut() {
            console.serve_tenants(resources, p);
        }
        while let Some(byte) = uart.receive() {
            match byte {
                b'\r' | b'\n' => {
                    uart.write("\r\n");
                    let command = core::mem::take(&mut line);
                    console.execute(resources, pools.as_mut(), command.trim());
                    if let Some(p) = pools.as_mut() {
                        p.service(resources);
                    }
                    uart.write(PROMPT);
                }
                0x08 | 0x7F if line.pop().is_some() => uart.write("\x08 \x08"),
                byte if (0x20..0x7F).contains(&byte) && line.len() < MAX_LINE => {
                    line.push(char::from(byte));
                    uart.write_byte(byte);
                }
                _ => {}
            }
        }
        // Wake for the next loan's end too.
        console.input.wait(
            pools
                .as_ref()
                .and_then(Pools::next_loan_end_ns)
                .unwrap_or(0),
        );
    }
}

/// What commands need besides the pools.
pub struct Console {
    info: &'static BootInfo,
    sleeper: CPtr,
    clock: Clock,
    input: Input,
}

/// The value after `flag` in `args` (`-d D`).
fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == name)
        .and_then(|i| args.get(i + 1))
        .copied()
}

fn number<T: core::str::FromStr>(text: Option<&str>, what: &str) -> Result<Option<T>, String> {
    match text {
        None => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|_| format!("{what}: '{t}' is not a number")),
    }
}

/// JSON string (names are validated, but escape anyway).
fn json_str(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn params_json(params: &DomainParams) -> String {
    let sedf = match params.sedf {
        Some(s) => format!(
            "{{\"period_ms\":{},\"slice_ms\":{},\"extra\":{}}}",
            s.period_ms, s.slice_ms, s.extra
        ),
        None => String::from("null"),
    };
    format!(
        "{{\"weight\":{},\"cap\":{},\"sedf\":{sedf}}}",
        params.weight, params.cap_pct
    )
}

fn ns_to_s(ns: u64) -> String {
    format!("{}.{:03}", ns / 1_000_000_000, (ns / 1_000_000) % 1000)
}

impl Console {
    /// Runs one command line.
    pub fn execute(&mut self, res: &mut Resources, pools: Option<&mut Pools>, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&command, args)) = words.split_first() else {
            return;
        };
        let result = match (command, pools) {
            ("help", _) => {
                for (name, what) in COMMANDS {
                    say!("  {name:<28} {what}");
                }
                say!("  (not built yet: {})", NOT_BUILT.join(" "));
                Ok(())
            }
            ("info", pools) => {
                self.info_command(res, pools.as_deref());
                Ok(())
            }
            ("sleep", pools) => match args {
                [ms] => match ms.parse::<u64>() {
                    Ok(ms) => {
                        self.pause(res, pools, ms);
                        Ok(())
                    }
                    Err(_) => Err(format!("sleep: '{ms}' is not a number of milliseconds")),
                },
                _ => Err(String::from("usage: sleep MS")),
            },
            ("repeat", pools) => self.repeat(res, pools, args, line),
            ("poweroff", _) => {
                if args.is_empty() {
                    let _ = invoke::machine_power_off(slot::MACHINE, 0);
                    Err(String::from("poweroff failed"))
                } else {
                    Err(String::from("usage: poweroff"))
                }
            }
            (other, _) if NOT_BUILT.contains(&other) => Err(format!("'{other}': not built yet")),
            (other, _)
                if !COMMANDS
                    .iter()
                    .any(|(n, _)| n.split(' ').next() == Some(other))
                    && !matches!(other, "pool-new" | "unpause") =>
            {
                Err(format!("unknown command '{other}' (try help)"))
            }
            (other, None) => Err(format!("{other}: no pools on this machine")),
            (_, Some(pools)) => self.pool_command(res, pools, command, args, line),
        };
        if let Err(why) = result {
            say!("error: {why}");
        }
    }

    /// `repeat N CMD | CMD...`: runs the commands (each exactly as if typed)
    /// N times in order, every `#` replaced by the round number, their
    /// output kept back; stops at the first command that fails and shows
    /// its output.
    fn repeat(
        &mut self,
        res: &mut Resources,
        mut pools: Option<&mut Pools>,
        args: &[&str],
        line: &str,
    ) -> Result<(), String> {
        const USAGE: &str = "usage: repeat N CMD [| CMD...]";
        let count: u64 = match args.first() {
            Some(n) => n
                .parse()
                .map_err(|_| format!("repeat: '{n}' is not a count"))?,
            None => return Err(String::from(USAGE)),
        };
        let body = line
            .trim_start()
            .strip_prefix("repeat")
            .and_then(|rest| rest.trim_start().strip_prefix(args[0]))
            .unwrap_or("");
        let commands: Vec<&str> = body.split('|').map(str::trim).collect();
        if commands.iter().any(|c| c.is_empty()) {
            return Err(String::from(USAGE));
        }
        if commands
            .iter()
            .any(|c| c.split_whitespace().next() == Some("repeat"))
        {
            return Err(String::from("repeat: commands cannot repeat themselves"));
        }
        for round in 1..=count {
            for command in &commands {
                let command = command.replace('#', &format!("{round}"));
                let outer = CAPTURE.lock().replace(String::new());
                self.execute(res, pools.as_deref_mut(), &command);
                if let Some(p) = pools.as_deref_mut() {
                    p.service(res);
                }
                let output = core::mem::replace(&mut *CAPTURE.lock(), outer).unwrap_or_default();
                if output.lines().any(|l| l.starts_with("error:")) {
                    for l in output.lines() {
                        say!("{l}");
                    }
                    return Err(format!("repeat: round {round}: '{command}' failed"));
                }
            }
        }
        say!("repeat: {count} rounds done");
        Ok(())
    }

    fn pool_command(
        &mut self,
        res: &mut Resources,
        pools: &mut Pools,
        command: &str,
        args: &[&str],
        line: &str,
    ) -> Result<(), String> {
        let rest = line
            .split_once(char::is_whitespace)
            .map_or("", |(_, rest)| rest.trim());
        let domain = |pools: &Pools, name: &str| {
            pools
                .manager
                .domain_id(name)
                .map_err(|e| format!("{name}: {e}"))
        };
        let pool = |pools: &Pools, name: &str| {
            pools
                .manager
                .pool_id(name)
                .map_err(|e| format!("{name}: {e}"))
        };
        match (command, args) {
            ("list", _) => list_command(pools, args),
            ("create", []) => Err(String::from("usage: create KEY=VALUE...")),
            ("create", _) => create_domain(res, pools, rest),
            ("destroy", [d]) => {
                let id = domain(pools, d)?;
                pools.destroy(res, id).map_err(|e| format!("{d}: {e}"))
            }
            ("pause", [d]) | ("unpause", [d]) => {
                let id = domain(pools, d)?;
                pools.set_paused(id, command == "pause")
            }
            ("cpupool-create", _) | ("cpupool-new", _) | ("pool-new", _) => {
                let spec = match args {
                    [file] if file.ends_with(".cfg") => {
                        let text = crate::autostart::config_file(true, file)
                            .ok_or_else(|| format!("no pool config file {file} (see info)"))?;
                        config::parse_pool_config(&text).map_err(|e| format!("{file}: {e}"))?
                    }
                    _ => config::parse_pool_inline(rest).map_err(inline_error)?,
                };
                let name = spec.name.clone();
                if command == "cpupool-create" {
                    pools.activate(res, &name, true, |m| {
                        m.create(spec).map(|(_, actions)| actions)
                    })?;
                } else {
                    pools
                        .manager
                        .define(spec)
                        .map_err(|e| format!("{name}: {e}"))?;
                }
                Ok(())
            }
            ("cpupool-start", [p]) => {
                let id = pool(pools, p)?;
                pools.activate(res, p, false, |m| m.activate(id))?;
                Ok(())
            }
            ("cpupool-destroy", [p]) => {
                let id = pool(pools, p)?;
                pools.operate(res, p, |m| m.deactivate(id))?;
                Ok(())
            }
            ("cpupool-delete", [p]) => {
                let id = pool(pools, p)?;
                pools.manager.delete(id).map_err(|e| format!("{p}: {e}"))
            }
            ("cpupool-rename", [p, name]) => {
                let id = pool(pools, p)?;
                pools
                    .manager
                    .rename(id, name)
                    .map_err(|e| format!("{p}: {e}"))
            }
            ("cpupool-cpu-add", [p, cpus]) => {
                let id = pool(pools, p)?;
                let list: Vec<u32> = config::parse_cpu_list(cpus)
                    .ok_or_else(|| format!("'{cpus}' is not a CPU list or range"))?
                    .into_iter()
                    .collect();
                let report = pools
                    .manager
                    .cpu_add(id, &list)
                    .map_err(|e| format!("{p}: {e}"))?;
                for (cpu, result) in &report.results {
                    if let Err(e) = result {
                        say!("error: CPU {cpu}: {e}");
                    }
                }
                pools.apply(res, report.actions);
                Ok(())
            }
            ("cpupool-cpu-loan", [cpu, p, ms]) => {
                let cpu: u32 = cpu
                    .parse()
                    .map_err(|_| format!("'{cpu}' is not a CPU number"))?;
                let id = pool(pools, p)?;
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("'{ms}' is not a number of milliseconds"))?;
                let now_ms = self.clock.now_us() / 1000;
                let from = pools.manager.cpu_owner(cpu);
                pools.operate(res, &format!("CPU {cpu}"), |m| m.lend(cpu, id, now_ms, ms))?;
                let from = from
                    .and_then(|f| pools.manager.pool(f))
                    .map_or_else(String::new, |f| f.spec.name.clone());
                say!("loan: CPU {cpu} lent by {from} to {p} for {ms} ms");
                Ok(())
            }
            ("cpupool-delegate", [p, d]) | ("cpupool-undelegate", [p, d]) => {
                let pid = pool(pools, p)?;
                let did = domain(pools, d)?;
                if command == "cpupool-delegate" {
                    pools
                        .delegate(res, pid, did)
                        .map_err(|e| format!("{d}: {e}"))?;
                    say!("{d} now manages {p}");
                } else {
                    pools
                        .undelegate(res, pid, did)
                        .map_err(|e| format!("{d}: {e}"))?;
                    say!("{d} no longer manages {p}");
                }
                Ok(())
            }
            ("cpupool-cpu-loan-end", [cpu]) => {
                let cpu: u32 = cpu
                    .parse()
                    .map_err(|_| format!("'{cpu}' is not a CPU number"))?;
                pools.operate(res, &format!("CPU {cpu}"), |m| m.end_loan(cpu))?;
                say!("loan: CPU {cpu} returned");
                Ok(())
            }
            ("cpupool-cpu-remove", [p, cpus]) => {
                let id = pool(pools, p)?;
                let list = config::parse_cpu_list(cpus)
                    .ok_or_else(|| format!("'{cpus}' is not a CPU list or range"))?;
                for cpu in list {
                    pools.operate(res, p, |m| m.cpu_remove(id, cpu))?;
                }
                Ok(())
            }
            ("cpupool-migrate", [d, p]) => {
                let did = domain(pools, d)?;
                let pid = pool(pools, p)?;
                pools.operate(res, d, |m| m.migrate(did, pid))?;
                Ok(())
            }
            ("cpupool-sched", [p, sched]) => {
                let id = pool(pools, p)?;
                let sched = Sched::from_name(sched)
                    .ok_or_else(|| format!("unknown scheduler '{sched}' (credit or sedf)"))?;
                pools.operate(res, p, |m| m.set_scheduler(id, sched))?;
                Ok(())
            }
            ("cpupool-list", _) => cpupool_list(pools, args),
            ("sched-credit", _) => sched_credit(pools, args),
            ("sched-sedf", _) => sched_sedf(pools, args),
            ("sched-group", _) => {
                let d = flag(args, "-d").ok_or("usage: sched-group -d D (-m MASTER | -n)")?;
                let id = domain(pools, d)?;
                let master = match (flag(args, "-m"), args.contains(&"-n")) {
                    (Some(m), false) => Some(domain(pools, m)?),
                    (None, true) => None,
                    _ => return Err(String::from("usage: sched-group -d D (-m MASTER | -n)")),
                };
                pools.set_group(id, master)
            }
            ("vcpu-list", _) => {
                let only = match args {
                    [] => None,
                    [d] => Some(domain(pools, d)?),
                    _ => return Err(String::from("usage: vcpu-list [D]")),
                };
                say!(
                    "{:<20} {:>3} {:>4} {:>3} {:>5} {:>9} {:>9}  Pool",
                    "Name",
                    "ID",
                    "VCPU",
                    "CPU",
                    "State",
                    "Time(s)",
                    "Thread(s)"
                );
                for s in pools
                    .stats()
                    .iter()
                    .filter(|s| only.is_none_or(|d| d == s.id))
                {
                    let cpu = s.cpu.map_or_else(|| String::from("-"), |c| c.to_string());
                    say!(
                        "{:<20} {:>3} {:>4} {:>3} {:>5} {:>9} {:>9}  {}",
                        s.name,
                        s.id.0,
                        0,
                        cpu,
                        s.state,
                        ns_to_s(s.cpu_ns),
                        ns_to_s(s.thread_ns),
                        s.pool
                    );
                }
                Ok(())
            }
            ("top", _) => self.top(res, pools, args),
            ("server-fault", [p, how]) => {
                let id = pool(pools, p)?;
                let how = match *how {
                    "crash" => Misbehaviour::Crash,
                    "hang" => Misbehaviour::Hang,
                    "ignore-remove" => Misbehaviour::IgnoreRemoveCpu,
                    other => {
                        return Err(format!(
                            "unknown fault '{other}' (crash, hang, ignore-remove)"
                        ))
                    }
                };
                pools.misbehave(id, how)?;
                // A crash shows up as a fault message: give the watcher a moment.
                let _ = tarn_rt::sleep(self.sleeper, 5_000_000);
                pools.service(res);
                Ok(())
            }
            (command, _) => Err(format!("usage: {}", usage(command))),
        }
    }

    /// `top [--json] [-d MS]`: each domain's share of one CPU over MS.
    fn top(&mut self, res: &mut Resources, pools: &mut Pools, args: &[&str]) -> Result<(), String> {
        let json = args.contains(&"--json");
        let ms: u64 = number(flag(args, "-d"), "-d")?.unwrap_or(1000);
        if ms == 0
            || args
                .iter()
                .any(|a| a.starts_with('-') && !matches!(*a, "--json" | "-d"))
        {
            return Err(String::from("usage: top [--json] [-d MS]"));
        }
        let split = || {
            invoke::machine_times(slot::MACHINE)
                .map(|t| [t.idle_ns, t.system_ns, t.dispatched_ns])
                .unwrap_or_default()
        };
        let before = pools.stats();
        let split_before = split();
        let start = self.clock.now_us();
        self.pause(res, Some(&mut *pools), ms);
        let after = pools.stats();
        let split_after = split();
        // Where all CPUs' time went: idle, system threads (servers, the
        // manager), dispatched domains; in ‰ of all CPU time.
        let spent: Vec<u64> = (0..3)
            .map(|i| split_after[i].saturating_sub(split_before[i]))
            .collect();
        let total = spent.iter().sum::<u64>().max(1);
        let part = |i: usize| (u128::from(spent[i]) * 1000 / u128::from(total)) as u64;
        let elapsed_ns = (self.clock.now_us() - start).max(1) * 1000;
        let rows: Vec<(&DomainStat, u64)> = after
            .iter()
            .map(|a| {
                let was = before.iter().find(|b| b.id == a.id).map_or(0, |b| b.cpu_ns);
                (a, a.cpu_ns.saturating_sub(was))
            })
            .collect();
        // Per mille of one CPU, rounded.
        let share = |ran: u64| {
            (u128::from(ran) * 1000 + u128::from(elapsed_ns) / 2) / u128::from(elapsed_ns)
        };
        if json {
            let items: Vec<String> = rows
                .iter()
                .map(|(s, ran)| {
                    let pm = share(*ran);
                    format!(
                        "{{\"domid\":{},\"name\":{},\"pool\":{},\"state\":\"{}\",\"cpu_pct\":{}.{},\"cpu_ns\":{ran}}}",
                        s.id.0,
                        json_str(&s.name),
                        json_str(&s.pool),
                        s.state,
                        pm / 10,
                        pm % 10
                    )
                })
                .collect();
            emit_line(&format!(
                "{{\"interval_ms\":{},\"domains\":[{}],\"machine\":{{\"idle_pct\":{}.{},\"system_pct\":{}.{},\"domains_pct\":{}.{}}}}}",
                elapsed_ns / 1_000_000,
                items.join(","),
                part(0) / 10,
                part(0) % 10,
                part(1) / 10,
                part(1) % 10,
                part(2) / 10,
                part(2) % 10
            ));
        } else {
            say!(
                "{:<20} {:>3} {:>5} {:>7}  Pool",
                "Name",
                "ID",
                "State",
                "CPU(%)"
            );
            for (s, ran) in rows {
                let pm = share(ran);
                say!(
                    "{:<20} {:>3} {:>5} {:>5}.{}  {}",
                    s.name,
                    s.id.0,
                    s.state,
                    pm / 10,
                    pm % 10,
                    s.pool
                );
            }
            say!(
                "all CPUs: idle {}.{} %, system {}.{} %, domains {}.{} %",
                part(0) / 10,
                part(0) % 10,
                part(1) / 10,
                part(1) % 10,
                part(2) / 10,
                part(2) % 10
            );
        }
        Ok(())
    }

    fn info_command(&self, res: &Resources, pools: Option<&Pools>) {
        let info = self.info;
        let untyped: u64 = info.untyped().iter().map(|u| 1u64 << u.size_bits).sum();
        let modules: Vec<&str> = info.modules().iter().map(|m| m.name()).collect();
        say!("cpus            : {}", info.cpu_count);
        say!("untyped memory  : {} MiB at boot", untyped >> 20);
        say!("boot modules    : {}", modules.join(" "));
        let (pool_files, domain_files) = crate::autostart::config_files();
        say!("pool configs    : {}", pool_files.join(" "));
        say!("domain configs  : {}", domain_files.join(" "));
        if let Some(pools) = pools {
            say!("cpupools        : {}", pools.manager.pools().count());
            say!("domains         : {}", pools.manager.domains().count());
            say!(
                "free cpus       : {}",
                rules::format_cpu_list(&pools.manager.free_cpus())
            );
        }
        if let Ok(i) = invoke::machine_check_invariants(slot::MACHINE) {
            say!(
                "kernel objects  : {} live, {} capabilities",
                i.live_objects,
                i.live_caps
            );
            say!(
                "invariants      : {}",
                if i.consistent { "hold" } else { "BROKEN" }
            );
        }
        let cells = pools.map_or(0, Pools::free_cell_bytes);
        say!(
            "root resources  : {} free slots, {} heap bytes, {} free untyped bytes",
            res.slots.remaining(),
            tarn_rt::heap_used_bytes(),
            res.untyped.free_bytes() + cells
        );
    }
}

/// What a tenant's request becomes once checked against its scope.
enum TenantOp {
    /// Run this console command line (rewritten to stay inside the scope).
    Run(String),
    /// Carve a sub-pool from the delegated pool's CPUs.
    Carve(rules::PoolSpec),
    /// Give a sub-pool's CPUs back to the delegated pool and forget it.
    Uncarve(PoolId),
}

/// What a tenant holding a capability to pool `pool` may do: work on the
/// domains of that pool and of the sub-pools it carved from it, list them,
/// tune them, carve sub-pools from the pool's CPUs and give them back.
fn tenant_scope(pools: &Pools, pool: PoolId, line: &str) -> Result<TenantOp, String> {
    let active = |id: PoolId| {
        pools
            .manager
            .pool(id)
            .filter(|p| p.state == rules::PoolState::Active)
    };
    let name = active(pool)
        .map(|p| p.spec.name.clone())
        .ok_or_else(|| String::from("the delegated cpupool is not active"))?;
    let scope: Vec<PoolId> = core::iter::once(pool)
        .chain(pools.carved_from(pool))
        .collect();
    let names: Vec<String> = scope
        .iter()
        .filter_map(|&id| active(id).map(|p| p.spec.name.clone()))
        .collect();
    let refused = || {
        let subs = if names.len() > 1 {
            format!(" and its sub-pools {}", names[1..].join(" "))
        } else {
            String::new()
        };
        format!("not allowed: this capability manages cpupool {name}{subs} only")
    };
    let in_scope = |pool_name: &str| names.iter().any(|n| n == pool_name);
    let words: Vec<&str> = line.split_whitespace().collect();
    let mine = |domain: &str| {
        pools
            .manager
            .domain_id(domain)
            .ok()
            .and_then(|id| pools.manager.domain(id))
            .is_some_and(|d| scope.contains(&d.pool))
    };
    let all_mine = |list: &[Option<&str>]| list.iter().flatten().all(|d| mine(d));
    let rest = |command: &str| {
        line.trim_start()
            .strip_prefix(command)
            .unwrap_or("")
            .to_string()
    };
    match words.split_first() {
        Some((&"help", [])) => Ok(TenantOp::Run(String::from("help"))),
        Some((&"list", args)) if args.iter().all(|a| *a == "-l") => Ok(TenantOp::Run(format!(
            "list --pool={name} {}",
            args.join(" ")
        ))),
        Some((&"list", [flag_pool])) if flag_pool.strip_prefix("--pool=").is_some_and(in_scope) => {
            Ok(TenantOp::Run(String::from(line)))
        }
        Some((&"cpupool-list", args)) if args.iter().all(|a| matches!(*a, "-c" | "-l")) => {
            Ok(TenantOp::Run(format!(
                "cpupool-list {} {}",
                args.join(" "),
                names.join(" ")
            )))
        }
        Some((&"cpupool-list", [p])) if in_scope(p) => Ok(TenantOp::Run(String::from(line))),
        Some((&"create", _)) => {
            let config = config::parse_domain_inline(&rest("create")).map_err(inline_error)?;
            if config.pool.as_deref().is_some_and(in_scope) {
                Ok(TenantOp::Run(String::from(line)))
            } else {
                Err(refused())
            }
        }
        Some((&("destroy" | "pause" | "unpause" | "vcpu-list"), [d])) if mine(d) => {
            Ok(TenantOp::Run(String::from(line)))
        }
        Some((&"cpupool-migrate", [d, p])) if mine(d) && in_scope(p) => {
            Ok(TenantOp::Run(String::from(line)))
        }
        Some((&("sched-credit" | "sched-sedf"), args))
            if flag(args, "-d").is_some() && all_mine(&[flag(args, "-d")]) =>
        {
            Ok(TenantOp::Run(String::from(line)))
        }
        Some((&"sched-credit", args))
            if args.contains(&"-s") && flag(args, "-p").is_some_and(in_scope) =>
        {
            Ok(TenantOp::Run(String::from(line)))
        }
        Some((&"sched-group", args))
            if flag(args, "-d").is_some() && all_mine(&[flag(args, "-d"), flag(args, "-m")]) =>
        {
            Ok(TenantOp::Run(String::from(line)))
        }
        Some((&"cpupool-create", _)) => {
            let spec = config::parse_pool_inline(&rest("cpupool-create")).map_err(inline_error)?;
            Ok(TenantOp::Carve(spec))
        }
        Some((&"cpupool-destroy", [p])) => {
            let id = pools.manager.pool_id(p).map_err(|e| format!("{p}: {e}"))?;
            if pools.carved_from(pool).any(|c| c == id) {
                Ok(TenantOp::Uncarve(id))
            } else {
                Err(refused())
            }
        }
        _ => Err(refused()),
    }
}

impl Console {
    /// Waits `ms` milliseconds while the pools stay served: loans end on
    /// time and tenants' requests are answered.
    fn pause(&mut self, res: &mut Resources, mut pools: Option<&mut Pools>, ms: u64) {
        let until = self.clock.now_us() + ms.saturating_mul(1000);
        loop {
            if let Some(p) = pools.as_deref_mut() {
                p.service(res);
                self.serve_tenants(res, p);
            }
            let now = self.clock.now_us();
            if now >= until {
                break;
            }
            let mut nap = (until - now) * 1000;
            if let Some(p) = pools.as_deref() {
                nap = nap.min(p.next_loan_end_ns().unwrap_or(u64::MAX));
            }
            self.input.wait(nap.max(1));
        }
    }

    /// Answers every tenant request waiting.
    fn serve_tenants(&mut self, res: &mut Resources, pools: &mut Pools) {
        while let Some((pool, line)) = pools.take_tenant_request() {
            let (ok, output) = self.run_for_tenant(res, pools, pool, &line);
            pools.answer_tenant(ok, output);
        }
    }

    /// Runs a tenant's command (see [`tenant_scope`]) with its output
    /// captured (inside whatever capture runs now); returns (ok, output).
    fn run_for_tenant(
        &mut self,
        res: &mut Resources,
        pools: &mut Pools,
        pool: PoolId,
        line: &str,
    ) -> (bool, String) {
        let outer = CAPTURE.lock().replace(String::new());
        match tenant_scope(pools, pool, line) {
            Ok(TenantOp::Run(allowed)) => self.execute(res, Some(&mut *pools), allowed.trim()),
            Ok(TenantOp::Carve(spec)) => match pools.carve(res, pool, spec) {
                Ok(name) => say!("cpupool {name} carved"),
                Err(why) => say!("error: {why}"),
            },
            Ok(TenantOp::Uncarve(sub)) => match pools.uncarve(res, sub) {
                Ok(()) => say!("cpupool given back"),
                Err(why) => say!("error: {why}"),
            },
            Err(why) => say!("error: {why}"),
        }
        let output = core::mem::replace(&mut *CAPTURE.lock(), outer).unwrap_or_default();
        let ok = !output.lines().any(|l| l.starts_with("error:"));
        (ok, output)
    }
}

/// A config error in a one-line command: the key and what is wrong (the
/// parser's setting position adds nothing on one line).
fn inline_error(error: config::ConfigError) -> String {
    format!("{}", config::ConfigError { line: 0, ..error })
}

/// Writes one line of any length straight to the UART: a JSON document stays
/// one line (the kernel's `DebugWrite` takes at most 512 bytes per call and
/// ends each call with a line break).
fn emit_line(text: &str) {
    if let Some(buffer) = CAPTURE.lock().as_mut() {
        buffer.push_str(text);
        buffer.push('\n');
        return;
    }
    let uart = Uart::com1();
    uart.write(text);
    uart.write("\r\n");
}

fn usage(command: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|(n, _)| n.split(' ').next() == Some(command))
        .map_or("see help", |(n, _)| n)
}

fn create_domain(res: &mut Resources, pools: &mut Pools, text: &str) -> Result<(), String> {
    let config = if text.ends_with(".cfg") && !text.contains('=') {
        let file = text.trim();
        let body = crate::autostart::config_file(false, file)
            .ok_or_else(|| format!("no domain config file {file} (see info)"))?;
        config::parse_domain_config(&body).map_err(|e| format!("{file}: {e}"))?
    } else {
        config::parse_domain_inline(text).map_err(inline_error)?
    };
    create_from_config(res, pools, &config)
}

/// `create` from a parsed config: the rules first, then the build.
pub fn create_from_config(
    res: &mut Resources,
    pools: &mut Pools,
    config: &config::DomainConfig,
) -> Result<(), String> {
    if config.vcpus != 1 {
        return Err(format!(
            "{}: vcpus={}: domains have one vCPU for now",
            config.name, config.vcpus
        ));
    }
    let spec = config
        .to_spec(&pools.manager)
        .map_err(|e| format!("{}: {e}", config.name))?;
    let (id, _) = pools
        .manager
        .create_domain(spec)
        .map_err(|e| format!("{}: {e}", config.name))?;
    let vm = config.kind == DomainType::Hvm;
    let args = config.cmdline.as_deref().unwrap_or("");
    if let Err(why) = pools.build_domain(res, id, &config.image, vm, args) {
        let _ = pools.manager.destroy_domain(id);
        return Err(format!("{}: {why}", config.name));
    }
    Ok(())
}

fn list_command(pools: &Pools, args: &[&str]) -> Result<(), String> {
    let mut long = false;
    let mut only: Option<PoolId> = None;
    for arg in args {
        match *arg {
            "-l" => long = true,
            other => match other.strip_prefix("--pool=") {
                Some(name) => {
                    only = Some(
                        pools
                            .manager
                            .pool_id(name)
                            .map_err(|e| format!("{name}: {e}"))?,
                    )
                }
                None => return Err(String::from("usage: list [-l] [--pool=P]")),
            },
        }
    }
    let stats: Vec<DomainStat> = pools
        .stats()
        .into_iter()
        .filter(|s| only.is_none_or(|p| pools.manager.domain(s.id).map(|d| d.pool) == Some(p)))
        .collect();
    if long {
        let items: Vec<String> = stats
            .iter()
            .map(|s| {
                format!(
                    "{{\"domid\":{},\"name\":{},\"pool\":{},\"image\":{},\"vcpus\":{},\"state\":\"{}\",\"cpu_time_ns\":{},\"sched_params\":{},\"group_master\":{}}}",
                    s.id.0,
                    json_str(&s.name),
                    json_str(&s.pool),
                    json_str(&s.image),
                    s.vcpus,
                    s.state,
                    s.cpu_ns,
                    params_json(&s.params),
                    s.group.as_deref().map_or_else(|| String::from("null"), json_str)
                )
            })
            .collect();
        emit_line(&format!("[{}]", items.join(",")));
    } else {
        say!(
            "{:<20} {:>3} {:>5} {:>5} {:>9}  Pool",
            "Name",
            "ID",
            "VCPUs",
            "State",
            "Time(s)"
        );
        for s in &stats {
            say!(
                "{:<20} {:>3} {:>5} {:>5} {:>9}  {}",
                s.name,
                s.id.0,
                s.vcpus,
                s.state,
                ns_to_s(s.cpu_ns),
                s.pool
            );
        }
    }
    Ok(())
}

fn cpupool_list(pools: &Pools, args: &[&str]) -> Result<(), String> {
    let mut cpus = false;
    let mut long = false;
    let mut only = Vec::new();
    for arg in args {
        match *arg {
            "-c" => cpus = true,
            "-l" => long = true,
            name if !name.starts_with('-') => only.push(
                pools
                    .manager
                    .pool_id(name)
                    .map_err(|e| format!("{name}: {e}"))?,
            ),
            _ => return Err(String::from("usage: cpupool-list [-c] [-l] [P...]")),
        }
    }
    let rows: Vec<_> = pools
        .manager
        .list()
        .into_iter()
        .filter(|r| only.is_empty() || only.contains(&r.id))
        .collect();
    if long {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                let cpus: Vec<String> = r.cpus.iter().map(|c| c.to_string()).collect();
                let domains: Vec<String> = pools
                    .manager
                    .domains()
                    .filter(|d| d.pool == r.id)
                    .map(|d| json_str(&d.name))
                    .collect();
                let tenants: Vec<String> = pools
                    .delegations()
                    .filter(|(p, _)| *p == r.id)
                    .filter_map(|(_, t)| pools.manager.domain(*t))
                    .map(|d| json_str(&d.name))
                    .collect();
                format!(
                    "{{\"cpupool_id\":{},\"name\":{},\"sched\":\"{}\",\"active\":{},\"n_cpus\":{},\"cpus\":[{}],\"domains\":[{}],\"tenants\":[{}],\"server\":{}}}",
                    r.id.0,
                    json_str(&r.name),
                    r.sched.name(),
                    r.active,
                    r.cpu_count,
                    cpus.join(","),
                    domains.join(","),
                    tenants.join(","),
                    pools
                        .server_policy(r.id)
                        .map_or_else(|| String::from("null"), |s| format!("\"{}\"", s.name()))
                )
            })
            .collect();
        emit_line(&format!("[{}]", items.join(",")));
    } else {
        let table = rules::render_cpupool_list(&rows, cpus);
        for line in table.lines() {
            say!("{line}");
        }
    }
    Ok(())
}

fn sched_credit(pools: &mut Pools, args: &[&str]) -> Result<(), String> {
    if args.contains(&"-s") {
        let name = flag(args, "-p").ok_or("usage: sched-credit -s -p P [-t MS] [-r US]")?;
        let id = pools
            .manager
            .pool_id(name)
            .map_err(|e| format!("{name}: {e}"))?;
        let t: Option<u32> = number(flag(args, "-t"), "-t")?;
        let r: Option<u32> = number(flag(args, "-r"), "-r")?;
        if t.is_none() && r.is_none() {
            return Err(String::from("sched-credit -s: give -t MS and/or -r US"));
        }
        return pools.set_credit_pool(id, t.unwrap_or(30), r.unwrap_or(1000));
    }
    let Some(d) = flag(args, "-d") else {
        if !args.is_empty() {
            return Err(format!("usage: {}", usage("sched-credit")));
        }
        say!(
            "{:<20} {:>3} {:>6} {:>4}  Pool",
            "Name",
            "ID",
            "Weight",
            "Cap"
        );
        for s in pools.stats() {
            if pools
                .manager
                .domain(s.id)
                .and_then(|d| pools.manager.pool(d.pool))
                .map(|p| p.spec.sched)
                == Some(Sched::Credit)
            {
                say!(
                    "{:<20} {:>3} {:>6} {:>4}  {}",
                    s.name,
                    s.id.0,
                    s.params.weight,
                    s.params.cap_pct,
                    s.pool
                );
            }
        }
        return Ok(());
    };
    let id = pools
        .manager
        .domain_id(d)
        .map_err(|e| format!("{d}: {e}"))?;
    let mut params = pools
        .manager
        .domain(id)
        .map(|x| x.params)
        .unwrap_or_default();
    if let Some(w) = number(flag(args, "-w"), "-w")? {
        params.weight = w;
    }
    if let Some(c) = number(flag(args, "-c"), "-c")? {
        params.cap_pct = c;
    }
    pools
        .set_params(id, params)
        .map_err(|e| format!("{d}: {e}"))
}

fn sched_sedf(pools: &mut Pools, args: &[&str]) -> Result<(), String> {
    let Some(d) = flag(args, "-d") else {
        if !args.is_empty() {
            return Err(format!("usage: {}", usage("sched-sedf")));
        }
        say!(
            "{:<20} {:>3} {:>10} {:>9} {:>5}  Pool",
            "Name",
            "ID",
            "Period(ms)",
            "Slice(ms)",
            "Extra"
        );
        for s in pools.stats() {
            if let Some(sedf) = s.params.sedf {
                say!(
                    "{:<20} {:>3} {:>10} {:>9} {:>5}  {}",
                    s.name,
                    s.id.0,
                    sedf.period_ms,
                    sedf.slice_ms,
                    u8::from(sedf.extra),
                    s.pool
                );
            }
        }
        return Ok(());
    };
    let id = pools
        .manager
        .domain_id(d)
        .map_err(|e| format!("{d}: {e}"))?;
    let period: Option<u32> = number(flag(args, "-p"), "-p")?;
    let slice: Option<u32> = number(flag(args, "-s"), "-s")?;
    let extra: Option<u8> = number(flag(args, "-e"), "-e")?;
    let (Some(period_ms), Some(slice_ms)) = (period, slice) else {
        return Err(String::from("usage: sched-sedf -d D -p MS -s MS [-e 0|1]"));
    };
    if extra.is_some_and(|e| e > 1) {
        return Err(String::from("-e must be 0 or 1"));
    }
    let mut params = pools
        .manager
        .domain(id)
        .map(|x| x.params)
        .unwrap_or_default();
    params.sedf = Some(SedfParams {
        period_ms,
        slice_ms,
        extra: extra == Some(1),
    });
    pools
        .set_params(id, params)
        .map_err(|e| format!("{d}: {e}"))
}
