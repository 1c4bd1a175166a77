//! The serial console: a command line on COM1, with xl's command names. The
//! root task owns the UART's input (receive interrupts on IRQ 4, delivered
//! to a notification); the kernel keeps writing its own lines to the same
//! UART. Input is echoed, backspace edits, and each line is one command,
//! under the input rules of `tarn_pool_manager::command` (a line past 256
//! characters or with a byte outside printable ASCII is refused whole).
//! Every line is parsed into a typed command before anything runs; unknown
//! commands and malformed arguments get a clear error (every failure line
//! starts with `error:`) and change nothing.
//!
//! The same commands arrive two other ways, with their output captured
//! instead of printed: over the control channel on COM2 (frames of
//! `tarn_ipc_schema::control`, from the host's `tarnctl`), and from tenants
//! holding a delegated pool's capability (only commands that stay inside
//! that pool, decided by `tarn_pool_manager::tenant::authorize` on the
//! typed command, which is then what runs). While a command waits
//! (`sleep`, `top`), tenants are still answered and loans still end on time.

use crate::pools::{Clock, DomainStat, Pools};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use tarn_pool_manager::command::{
    self, Command, DomainSource, Edit, LineEditor, PoolSource, ServerFault, COMMANDS, NOT_BUILT,
};
use tarn_pool_manager::config::{self, DomainType};
use tarn_pool_manager::pools::{self as rules, DomainParams, PoolId, PoolManager};
use tarn_pool_manager::tenant::{self, TenantOp};
use tarn_rt::abi::boot::BootInfo;
use tarn_rt::abi::control::{self, ControlReply, ControlRequest, FrameReader, Received};
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

/// One line of command output (see [`say!`]). Characters outside printable
/// ASCII (from a config file, say) are shown escaped, never sent raw.
pub fn say_line(text: &str) {
    let escaped = format!("{}", control::Escaped(text));
    let text = escaped.as_str();
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
/// in frames, escaped.
struct ControlPort {
    uart: Uart,
    reader: FrameReader,
}

impl ControlPort {
    /// Reads what COM2 has; returns the next complete frame (`None` inside:
    /// an overlong one, dropped).
    fn receive(&mut self) -> Option<Option<Vec<u8>>> {
        while let Some(byte) = self.uart.receive() {
            match self.reader.push(byte) {
                Some(Received::Frame(frame)) => return Some(Some(frame.to_vec())),
                Some(Received::Overlong) => return Some(None),
                None => {}
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
        frame: Option<Vec<u8>>,
        console: &mut Console,
        resources: &mut Resources,
        pools: Option<&mut Pools>,
    ) {
        let mut frame = frame.unwrap_or_default();
        let request = control::decode::<ControlRequest>(&mut frame);
        if let Some(ControlRequest::LoadPolicy {
            id,
            name,
            total,
            offset,
            chunk,
        }) = request
        {
            let result = match pools {
                Some(p) => p.load_policy_piece(name, total, offset, chunk),
                None => Err(String::from("no pools")),
            };
            let (ok, text) = match result {
                Ok(None) => (true, None),
                Ok(Some(done)) => {
                    println!("{done}");
                    (true, Some(format!("{done}\n")))
                }
                Err(why) => {
                    println!("error: load-policy: {why}");
                    (false, Some(format!("error: load-policy: {why}\n")))
                }
            };
            if let Some(text) = text {
                let text = format!("{}", control::Escaped(&text));
                self.send(&ControlReply::Output { id, text: &text });
            }
            self.send(&ControlReply::Done { id, ok });
            return;
        }
        let Some(ControlRequest::Run { id, line }) = request else {
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
        console.execute(resources, pools.as_deref_mut(), &line);
        if let Some(p) = pools {
            p.service(resources);
        }
        let output = CAPTURE.lock().take().unwrap_or_default();
        let ok = !output.lines().any(|l| l.starts_with("error:"));
        let output = format!("{}", control::Escaped(&output));
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
        reader: FrameReader::new(),
    };
    let input = Input::setup(
        resources,
        &[(&uart, COM1_IRQ), (&control_port.uart, COM2_IRQ)],
    );
    let sleeper = resources.create(ObjectType::Notification, 0).unwrap_or(0);
    crate::vm::set_console_wake(input.notification());
    let clock = Clock;
    let mut pools = pools.and_then(|manager| {
        match Pools::start(info, resources, manager, input.notification(), clock) {
            Ok(pools) => Some(pools),
            Err(error) => {
                println!("error: root: cannot start the pool manager: {error:?}");
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
        attached: None,
    };
    crate::autostart::load(info);
    if let Some(p) = pools.as_mut() {
        p.refresh_policies();
        crate::autostart::run(resources, p, info.cmdline(), &topology(info));
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
    let mut editor = LineEditor::new();
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
        // An attached guest's output, raw.
        if let Some(ring) = console.attached.and_then(crate::vm::console) {
            let out = ring.take_output();
            if !out.is_empty() {
                uart.write_bytes(&out);
            }
        }
        // A domain that went while attached detaches the console.
        if console
            .attached
            .is_some_and(|id| crate::vm::console(id).is_none())
        {
            console.attached = None;
            uart.write("\r\n");
            uart.write(PROMPT);
        }
        while let Some(byte) = uart.receive() {
            // Attached (`console D`): every byte goes to the guest's UART
            // but Ctrl-], which detaches, as in xl.
            if let Some(id) = console.attached {
                match crate::vm::console(id) {
                    Some(ring) if byte != DETACH => {
                        ring.push(&[byte]);
                        continue;
                    }
                    Some(ring) => ring.set_attached(false),
                    None => {}
                }
                console.attached = None;
                uart.write("\r\n");
                uart.write(PROMPT);
                continue;
            }
            match editor.feed(byte) {
                Edit::Line(line) => {
                    uart.write("\r\n");
                    match line {
                        Ok(line) => console.execute(resources, pools.as_mut(), &line),
                        Err(why) => say!("error: {why}"),
                    }
                    if let Some(p) = pools.as_mut() {
                        p.service(resources);
                    }
                    if console.attached.is_none() {
                        uart.write(PROMPT);
                    }
                }
                Edit::Echo(byte) => uart.write_byte(byte),
                Edit::Erase => uart.write("\x08 \x08"),
                Edit::Nothing => {}
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

/// The machine as xl's CPU lists see it: each CPU's NUMA node, from the
/// boot information (the kernel reads the ACPI SRAT).
pub fn topology(info: &BootInfo) -> config::Topology {
    config::Topology::new(
        (0..info.cpu_count as u32)
            .map(|cpu| info.cpu_node(cpu))
            .collect(),
    )
}

/// [`topology`], knowing which CPUs are free now (xlcpupool.cfg's
/// `nodes=` takes the free CPUs of its nodes).
fn topology_now(info: &BootInfo, pools: &Pools) -> config::Topology {
    topology(info).with_free(pools.manager.free_cpus().into_iter().collect())
}

/// What commands need besides the pools.
pub struct Console {
    info: &'static BootInfo,
    sleeper: CPtr,
    clock: Clock,
    input: Input,
    /// The Linux domain (id) the serial console is attached to.
    attached: Option<u32>,
}

/// Ctrl-]: detaches an attached console.
const DETACH: u8 = 0x1D;

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

/// A domain's parameters as a JSON object (numbers as numbers).
fn params_json(params: &DomainParams) -> String {
    let fields: Vec<String> = params
        .iter()
        .map(|(key, value)| match value.parse::<i64>() {
            Ok(n) => format!("{}:{n}", json_str(key)),
            Err(_) => format!("{}:{}", json_str(key), json_str(value)),
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn ns_to_s(ns: u64) -> String {
    format!("{}.{:03}", ns / 1_000_000_000, (ns / 1_000_000) % 1000)
}

impl Console {
    /// Runs one command line (from the console, the control channel, the
    /// boot's autorun or a `repeat`): the input rules, the parse, then the
    /// typed command. A failure prints one `error:` line.
    pub fn execute(&mut self, res: &mut Resources, pools: Option<&mut Pools>, line: &str) {
        let topology = topology(self.info);
        let parsed = command::check_line(line).and_then(|line| command::parse_in(&line, &topology));
        let result = match parsed {
            Ok(Some(command)) => self.run(res, pools, command),
            Ok(None) => Ok(()),
            Err(why) => Err(why),
        };
        if let Err(why) = result {
            say!("error: {why}");
        }
    }

    /// Runs one parsed command.
    fn run(
        &mut self,
        res: &mut Resources,
        pools: Option<&mut Pools>,
        command: Command,
    ) -> Result<(), String> {
        match (command, pools) {
            (Command::Help, _) => {
                for (usage, what) in COMMANDS {
                    say!("  {usage:<28} {what}");
                }
                say!("  (not built yet: {})", NOT_BUILT.join(" "));
                Ok(())
            }
            (Command::Info, pools) => {
                self.info_command(res, pools.as_deref());
                Ok(())
            }
            (Command::Sleep(ms), pools) => {
                self.pause(res, pools, ms);
                Ok(())
            }
            (Command::Repeat { count, commands }, pools) => {
                self.repeat(res, pools, count, &commands)
            }
            (Command::Poweroff, _) => {
                let _ = invoke::machine_power_off(slot::MACHINE, 0);
                Err(String::from("poweroff failed"))
            }
            (_, None) => Err(String::from("no pools on this machine")),
            (command, Some(pools)) => self.pool_command(res, pools, command),
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
        count: u64,
        commands: &[String],
    ) -> Result<(), String> {
        let started_us = self.clock.now_us();
        for round in 1..=count {
            for command in commands {
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
        let took_ms = (self.clock.now_us() - started_us) / 1000;
        say!("repeat: {count} rounds done in {took_ms} ms");
        Ok(())
    }

    fn pool_command(
        &mut self,
        res: &mut Resources,
        pools: &mut Pools,
        command: Command,
    ) -> Result<(), String> {
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
        match command {
            Command::List { long, pool } => list_command(pools, long, pool.as_deref()),
            Command::Create(source) => create_domain(res, pools, source),
            Command::Destroy(d) => {
                let id = domain(pools, &d)?;
                pools.destroy(res, id).map_err(|e| format!("{d}: {e}"))
            }
            Command::Console(d) => {
                let id = domain(pools, &d)?;
                let ring = crate::vm::console(id.0)
                    .ok_or_else(|| format!("{d}: not a Linux domain (no UART to attach to)"))?;
                if CAPTURE.lock().is_some() {
                    return Err(String::from(
                        "console: attach from the serial console (the control channel carries no terminal)",
                    ));
                }
                ring.set_attached(true);
                self.attached = Some(id.0);
                say!("Connected to {d}'s console; Ctrl-] detaches");
                Ok(())
            }
            Command::Pause(d) => {
                let id = domain(pools, &d)?;
                pools.set_paused(id, true)
            }
            Command::Unpause(d) => {
                let id = domain(pools, &d)?;
                pools.set_paused(id, false)
            }
            Command::PoolCreate(source) => {
                let Some(spec) = pool_spec(source, &topology_now(self.info, pools))? else {
                    return Ok(());
                };
                // xl's lines, before it creates the pool.
                let n_cpus = match &spec.cpus {
                    rules::CpuRequest::Count(n) => *n as usize,
                    rules::CpuRequest::List(cpus) => cpus.len(),
                };
                say!("cpupool name:   {}", spec.name);
                say!("scheduler:      {}", spec.sched.name());
                say!("number of cpus: {n_cpus}");
                let name = spec.name.clone();
                pools.activate(res, &name, true, |m| {
                    m.create(spec).map(|(_, actions)| actions)
                })?;
                Ok(())
            }
            Command::PoolNew(source) => {
                let Some(spec) = pool_spec(source, &topology_now(self.info, pools))? else {
                    return Ok(());
                };
                let name = spec.name.clone();
                pools
                    .manager
                    .define(spec)
                    .map_err(|e| format!("{name}: {e}"))?;
                Ok(())
            }
            Command::PoolStart(p) => {
                let id = pool(pools, &p)?;
                pools.activate(res, &p, false, |m| m.activate(id))?;
                Ok(())
            }
            Command::PoolDestroy(p) => {
                let id = pool(pools, &p)?;
                pools.operate(res, &p, |m| m.deactivate(id))
            }
            Command::PoolDelete(p) => {
                let id = pool(pools, &p)?;
                pools.manager.delete(id).map_err(|e| format!("{p}: {e}"))
            }
            Command::NumaSplit => numa_split(res, pools, &topology(self.info)),
            Command::PoolRename { pool: p, name } => {
                let id = pool(pools, &p)?;
                pools
                    .manager
                    .rename(id, &name)
                    .map_err(|e| format!("{p}: {e}"))
            }
            Command::CpuAdd { pool: p, cpus } => {
                let id = pool(pools, &p)?;
                let list: Vec<u32> = cpus.into_iter().collect();
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
            Command::CpuRemove { pool: p, cpus } => {
                let id = pool(pools, &p)?;
                for cpu in cpus {
                    pools.operate(res, &p, |m| m.cpu_remove(id, cpu))?;
                }
                Ok(())
            }
            Command::Migrate { domain: d, pool: p } => {
                let did = domain(pools, &d)?;
                let pid = pool(pools, &p)?;
                pools.operate(res, &d, |m| m.migrate(did, pid))
            }
            Command::Loan { cpu, pool: p, ms } => {
                let id = pool(pools, &p)?;
                let now_ms = self.clock.now_us() / 1000;
                let from = pools.manager.cpu_owner(cpu);
                pools.operate(res, &format!("CPU {cpu}"), |m| m.lend(cpu, id, now_ms, ms))?;
                let from = from
                    .and_then(|f| pools.manager.pool(f))
                    .map_or_else(String::new, |f| f.spec.name.clone());
                say!("loan: CPU {cpu} lent by {from} to {p} for {ms} ms");
                Ok(())
            }
            Command::LoanEnd { cpu } => {
                pools.operate(res, &format!("CPU {cpu}"), |m| m.end_loan(cpu))?;
                say!("loan: CPU {cpu} returned");
                Ok(())
            }
            Command::Delegate { pool: p, domain: d } => {
                let pid = pool(pools, &p)?;
                let did = domain(pools, &d)?;
                pools
                    .delegate(res, pid, did)
                    .map_err(|e| format!("{d}: {e}"))?;
                say!("{d} now manages {p}");
                Ok(())
            }
            Command::Undelegate { pool: p, domain: d } => {
                let pid = pool(pools, &p)?;
                let did = domain(pools, &d)?;
                pools
                    .undelegate(res, pid, did)
                    .map_err(|e| format!("{d}: {e}"))?;
                say!("{d} no longer manages {p}");
                Ok(())
            }
            Command::PoolSched { pool: p, sched } => {
                let id = pool(pools, &p)?;
                pools.operate(res, &p, |m| m.set_scheduler(id, sched))
            }
            Command::PoolList {
                cpus,
                long,
                pools: names,
            } => cpupool_list(pools, cpus, long, &names),
            Command::CreditTable => {
                credit_table(pools);
                Ok(())
            }
            Command::CreditDomain {
                domain: d,
                weight,
                cap_pct,
            } => {
                let id = domain(pools, &d)?;
                let mut changes = DomainParams::new();
                if let Some(w) = weight {
                    changes.set("weight", &format!("{w}"));
                }
                if let Some(c) = cap_pct {
                    changes.set("cap", &format!("{c}"));
                }
                pools
                    .set_params(id, changes, false)
                    .map_err(|e| format!("{d}: {e}"))
            }
            Command::CreditPool {
                pool: p,
                timeslice_ms,
                ratelimit_us,
            } => {
                let id = pool(pools, &p)?;
                let mut pairs = Vec::new();
                if let Some(t) = timeslice_ms {
                    pairs.push(format!("timeslice_ms={t}"));
                }
                if let Some(r) = ratelimit_us {
                    pairs.push(format!("ratelimit_us={r}"));
                }
                pools
                    .set_pool_params(id, &pairs.join(" "))
                    .map_err(|e| format!("{p}: {e}"))
            }
            Command::SedfTable => {
                sedf_table(pools);
                Ok(())
            }
            Command::SedfDomain {
                domain: d,
                period_ms,
                slice_ms,
                extra,
            } => {
                let id = domain(pools, &d)?;
                let mut changes = DomainParams::new();
                changes.set("period", &format!("{period_ms}"));
                changes.set("slice", &format!("{slice_ms}"));
                changes.set("extra", if extra { "1" } else { "0" });
                pools
                    .set_params(id, changes, false)
                    .map_err(|e| format!("{d}: {e}"))
            }
            Command::ParamDomain { domain: d, params } => {
                let id = domain(pools, &d)?;
                if params.is_empty() {
                    let pool = pools
                        .manager
                        .domain(id)
                        .map(|x| x.pool)
                        .ok_or("no such domain")?;
                    let (policy, list) = pools
                        .param_list(pool, Some(id))
                        .map_err(|e| format!("{d}: {e}"))?;
                    print_params(&format!("{d} (policy {policy})"), &list);
                    return Ok(());
                }
                let mut changes = DomainParams::new();
                for (key, value) in &params {
                    changes.set(key, value);
                }
                pools
                    .set_params(id, changes, true)
                    .map_err(|e| format!("{d}: {e}"))
            }
            Command::ParamPool { pool: p, params } => {
                let id = pool(pools, &p)?;
                if params.is_empty() {
                    let (policy, list) = pools
                        .param_list(id, None)
                        .map_err(|e| format!("{p}: {e}"))?;
                    print_params(&format!("cpupool {p} (policy {policy})"), &list);
                    return Ok(());
                }
                let text: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                pools
                    .set_pool_params(id, &text.join(" "))
                    .map_err(|e| format!("{p}: {e}"))
            }
            Command::Group { domain: d, master } => {
                let id = domain(pools, &d)?;
                let master = match master {
                    Some(m) => Some(domain(pools, &m)?),
                    None => None,
                };
                pools.set_group(id, master)
            }
            Command::VcpuList(only) => {
                let only = match only {
                    Some(d) => Some(domain(pools, &d)?),
                    None => None,
                };
                vcpu_list(pools, only);
                Ok(())
            }
            Command::Top { json, ms } => self.top(res, pools, json, ms),
            Command::ServerFault { pool: p, fault } => {
                let id = pool(pools, &p)?;
                let how = match fault {
                    ServerFault::Crash => Misbehaviour::Crash,
                    ServerFault::Hang => Misbehaviour::Hang,
                    ServerFault::IgnoreRemove => Misbehaviour::IgnoreRemoveCpu,
                };
                pools.misbehave(id, how)?;
                // A crash shows up as a fault message: give the watcher a moment.
                let _ = tarn_rt::sleep(self.sleeper, 5_000_000);
                pools.service(res);
                Ok(())
            }
            // Handled by `run` without the pools.
            Command::Help
            | Command::Info
            | Command::Sleep(_)
            | Command::Repeat { .. }
            | Command::Poweroff => Ok(()),
        }
    }

    /// `top [--json] [-d MS]`: each domain's share of one CPU over `ms`.
    fn top(
        &mut self,
        res: &mut Resources,
        pools: &mut Pools,
        json: bool,
        ms: u64,
    ) -> Result<(), String> {
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
        // xl info's names for the same facts.
        say!("nr_cpus         : {}", info.cpu_count);
        say!("nr_nodes        : {}", info.node_count);
        let nodes: Vec<String> = (0..info.node_count as u32)
            .map(|node| {
                let cpus: Vec<u32> = (0..info.cpu_count as u32)
                    .filter(|&cpu| info.cpu_node(cpu) == node)
                    .collect();
                format!("{node}: cpus {}", rules::format_cpu_list(&cpus))
            })
            .collect();
        say!(
            "numa nodes      : {} ({})",
            info.node_count,
            nodes.join(", ")
        );
        say!("untyped memory  : {} MiB at boot", untyped >> 20);
        say!("boot modules    : {}", modules.join(" "));
        let (pool_files, domain_files) = crate::autostart::config_files();
        say!("pool configs    : {}", pool_files.join(" "));
        say!("domain configs  : {}", domain_files.join(" "));
        if let Some(pools) = pools {
            say!("policies        : {}", pools.manager.policies().join(" "));
            say!("cpupools        : {}", pools.manager.pools().count());
            say!("domains         : {}", pools.manager.domains().count());
            say!(
                "free cpus       : {}",
                rules::format_cpu_list(&pools.manager.free_cpus())
            );
            say!("free_cpus       : {}", pools.manager.free_cpus().len());
            if let Some(pool0) = pools.manager.pool(rules::POOL0) {
                say!("xen_scheduler   : {}", pool0.spec.sched.name());
            }
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

impl Console {
    /// Waits `ms` milliseconds while the pools stay served: loans end on
    /// time and tenants' requests are answered.
    fn pause(&mut self, res: &mut Resources, mut pools: Option<&mut Pools>, ms: u64) {
        let until = self.clock.now_us().saturating_add(ms.saturating_mul(1000));
        loop {
            if let Some(p) = pools.as_deref_mut() {
                p.service(res);
                self.serve_tenants(res, p);
            }
            let now = self.clock.now_us();
            if now >= until {
                break;
            }
            let mut nap = (until - now).saturating_mul(1000);
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

    /// Runs a tenant's command line, if [`tenant::authorize`] allows the
    /// parsed command, with its output captured (inside whatever capture
    /// runs now); returns (ok, output).
    fn run_for_tenant(
        &mut self,
        res: &mut Resources,
        pools: &mut Pools,
        pool: PoolId,
        line: &str,
    ) -> (bool, String) {
        let outer = CAPTURE.lock().replace(String::new());
        let topology = topology(self.info);
        let decided = command::check_line(line)
            .and_then(|line| command::parse_in(&line, &topology))
            .and_then(|command| command.ok_or_else(|| String::from("empty command")))
            .and_then(|command| tenant::authorize(&pools.manager, pools.carved(), pool, command));
        match decided {
            Ok(TenantOp::Run(command)) => {
                if let Err(why) = self.run(res, Some(&mut *pools), command) {
                    say!("error: {why}");
                }
            }
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

/// The spec of `cpupool-create` / `cpupool-new`: given, or read from a
/// config file of the boot image with its `var=value` overrides (one
/// warning line per key it does not use). `None` for a dry run (`-n`),
/// which prints the resulting config instead.
fn pool_spec(
    source: PoolSource,
    topology: &config::Topology,
) -> Result<Option<rules::PoolSpec>, String> {
    match source {
        PoolSource::Inline(spec) => Ok(Some(spec)),
        PoolSource::File(file) => {
            let name = &file.name;
            let text = crate::autostart::config_file(true, name)
                .ok_or_else(|| format!("no pool config file {name} (see info)"))?;
            let (spec, warnings) = config::parse_pool_config_with(&text, &file.overrides, topology)
                .map_err(|e| format!("{name}: {e}"))?;
            say!("Using config file \"{name}\"");
            for w in &warnings {
                say!("warning: {name}: {w}");
            }
            if file.dry_run {
                for line in config::format_pool_config(&spec).lines() {
                    say!("{line}");
                }
                return Ok(None);
            }
            Ok(Some(spec))
        }
    }
}

fn create_domain(
    res: &mut Resources,
    pools: &mut Pools,
    source: DomainSource,
) -> Result<(), String> {
    let (config, origin) = match source {
        DomainSource::Inline(config) => {
            let origin = config.name.clone();
            (config, origin)
        }
        DomainSource::File(file) => {
            let name = file.name;
            let body = crate::autostart::config_file(false, &name)
                .ok_or_else(|| format!("no domain config file {name} (see info)"))?;
            let config = config::parse_domain_config_with(&body, &file.overrides)
                .map_err(|e| format!("{name}: {e}"))?;
            (config, name)
        }
    };
    create_from_config(res, pools, &config, &origin)
}

/// `create` from a parsed config: the rules first, then the build. The
/// keys the config does not use are warned (`warning: ORIGIN: ...`), once
/// each: xl.cfg keys Tarn ignores, and keys xl does not have that the
/// pool's policy does not declare either (those it declares are its
/// parameters).
pub fn create_from_config(
    res: &mut Resources,
    pools: &mut Pools,
    config: &config::DomainConfig,
    origin: &str,
) -> Result<(), String> {
    if config.vcpus != 1 {
        return Err(format!(
            "{}: vcpus={}: domains with several vCPUs are not built yet (vcpus=1)",
            config.name, config.vcpus
        ));
    }
    let pool = config
        .to_spec(&pools.manager)
        .map_err(|e| format!("{}: {e}", config.name))?
        .pool;
    let mut warnings: Vec<String> = config.warnings.iter().map(|w| format!("{w}")).collect();
    let mut config = config.clone();
    let mut declared = rules::DomainParams::new();
    for (key, value) in config.policy_params.iter() {
        let mut one = rules::DomainParams::new();
        one.set(key, value);
        match pools.check_declared(pool, &one) {
            Ok(()) => declared.set(key, value),
            Err(why) => {
                let line = config
                    .param_lines
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or(0, |&(_, line)| line);
                let at = if line > 0 {
                    format!("line {line}: ")
                } else {
                    String::new()
                };
                warnings.push(format!("{at}{why}; not an xl key either, ignored"));
            }
        }
    }
    config.policy_params = declared;
    for w in &warnings {
        say!("warning: {origin}: {w}");
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
    // A kernel that is a file of the config archive is a Linux guest.
    let linux = vm && crate::autostart::archive_file(&config.image).is_some();
    let built = if linux {
        pools.build_linux_domain(
            res,
            id,
            &config.image,
            config.ramdisk.as_deref(),
            config
                .memory_mib
                .map_or(crate::vm::DEFAULT_MEMORY_MIB, u64::from),
            args,
        )
    } else if config.ramdisk.is_some() {
        Err(String::from(
            "ramdisk= needs a kernel from the config archive",
        ))
    } else {
        pools.build_domain(res, id, &config.image, vm, args)
    };
    if let Err(why) = built {
        let _ = pools.manager.destroy_domain(id);
        return Err(format!("{}: {why}", config.name));
    }
    Ok(())
}

/// `cpupool-numa-split`, as xl does it: only Pool-0 may exist; it gets the
/// free CPUs of CPU 0's node and is renamed `Pool-nodeN`; every other node
/// with CPUs becomes a pool `Pool-nodeM` of its CPUs, with Pool-0's
/// scheduler (its CPUs leave Pool-0 first, negotiated as
/// `cpupool-cpu-remove`).
fn numa_split(
    res: &mut Resources,
    pools: &mut Pools,
    topology: &config::Topology,
) -> Result<(), String> {
    if pools.manager.pools().count() > 1 {
        return Err(String::from(
            "cpupool-numa-split: splitting not possible, already cpupools in use",
        ));
    }
    let home = topology.node_of(0).unwrap_or(0);
    let sched = pools
        .manager
        .pool(rules::POOL0)
        .map(|p| p.spec.sched.clone())
        .ok_or("cpupool-numa-split: no Pool-0")?;
    let free: Vec<u32> = pools.manager.free_cpus();
    let add: Vec<u32> = topology
        .node_cpus(home)
        .into_iter()
        .filter(|c| free.contains(c))
        .collect();
    if !add.is_empty() {
        let report = pools
            .manager
            .cpu_add(rules::POOL0, &add)
            .map_err(|e| format!("Pool-0: {e}"))?;
        for (cpu, result) in &report.results {
            if let Err(e) = result {
                return Err(format!("Pool-0: CPU {cpu}: {e}"));
            }
        }
        pools.apply(res, report.actions);
    }
    let pool0_name = format!("Pool-node{home}");
    pools
        .manager
        .rename(rules::POOL0, &pool0_name)
        .map_err(|e| format!("Pool-0: {e}"))?;
    say!("cpupool-numa-split: Pool-0 is now {pool0_name}");
    for node in 0..topology.node_count() {
        let cpus = topology.node_cpus(node);
        if node == home || cpus.is_empty() {
            continue;
        }
        for &cpu in &cpus {
            if pools.manager.cpu_owner(cpu) == Some(rules::POOL0) {
                pools.operate(res, &pool0_name, |m| m.cpu_remove(rules::POOL0, cpu))?;
            }
        }
        let name = format!("Pool-node{node}");
        let spec = rules::PoolSpec {
            name: name.clone(),
            sched: sched.clone(),
            cpus: rules::CpuRequest::List(cpus.clone()),
            other_config: Vec::new(),
        };
        pools.activate(res, &name, true, |m| m.create(spec).map(|(_, a)| a))?;
        say!(
            "cpupool-numa-split: {name} with CPUs {}",
            rules::format_cpu_list(&cpus.into_iter().collect::<Vec<_>>())
        );
    }
    Ok(())
}

fn list_command(pools: &Pools, long: bool, only: Option<&str>) -> Result<(), String> {
    let only = match only {
        Some(name) => Some(
            pools
                .manager
                .pool_id(name)
                .map_err(|e| format!("{name}: {e}"))?,
        ),
        None => None,
    };
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

fn cpupool_list(pools: &Pools, cpus: bool, long: bool, names: &[String]) -> Result<(), String> {
    let mut only = Vec::new();
    for name in names {
        only.push(
            pools
                .manager
                .pool_id(name)
                .map_err(|e| format!("{name}: {e}"))?,
        );
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
                        .map_or_else(|| String::from("null"), |s| format!("\"{s}\""))
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

/// `sched-param` with no pairs: each parameter, its value, range, default
/// and help.
fn print_params(title: &str, list: &[(crate::pools::ParamInfo, String)]) {
    say!("{title}: {} parameters", list.len());
    for (info, value) in list {
        say!(
            "  {}={value}  ({}, default {}) {}",
            info.name,
            info.range,
            info.default,
            info.help
        );
    }
}

/// `sched-credit` alone: every credit domain's weight and cap.
fn credit_table(pools: &Pools) {
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
            .is_some_and(|p| p.spec.sched.name() == "credit")
        {
            say!(
                "{:<20} {:>3} {:>6} {:>4}  {}",
                s.name,
                s.id.0,
                s.params.get("weight").unwrap_or("256"),
                s.params.get("cap").unwrap_or("0"),
                s.pool
            );
        }
    }
}

/// `sched-sedf` alone: every SEDF reservation.
fn sedf_table(pools: &Pools) {
    say!(
        "{:<20} {:>3} {:>10} {:>9} {:>5}  Pool",
        "Name",
        "ID",
        "Period(ms)",
        "Slice(ms)",
        "Extra"
    );
    for s in pools.stats() {
        if let (Some(period), Some(slice)) = (s.params.get("period"), s.params.get("slice")) {
            say!(
                "{:<20} {:>3} {:>10} {:>9} {:>5}  {}",
                s.name,
                s.id.0,
                period,
                slice,
                s.params.get("extra").unwrap_or("0"),
                s.pool
            );
        }
    }
}

/// `vcpu-list [D]`.
fn vcpu_list(pools: &Pools, only: Option<rules::DomainId>) {
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
}
