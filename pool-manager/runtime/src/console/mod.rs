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
//!
//! The console calls the manager ([`Pools`] and its rules,
//! `tarn_pool_manager`) and never the other way round: the manager's own
//! lines reach the console through `output.rs`. Its commands are a
//! table (`commands.rs`: one handler per typed command); what it shows is
//! in `views.rs`; its UARTs and the control channel in `io.rs`.

mod commands;
mod io;
mod views;

use crate::manager::{Clock, Pools};
use crate::say;
use alloc::format;
use alloc::string::String;
use io::{ControlPort, Input, Uart, COM1_IRQ, COM2_IRQ};
use tarn_pool_manager::command::{self, Edit, LineEditor};
use tarn_pool_manager::config;
use tarn_pool_manager::pools::PoolId;
use tarn_pool_manager::tenant::{self, TenantOp};
use tarn_rt::abi::boot::BootInfo;
use tarn_rt::abi::control::FrameReader;
use tarn_rt::abi::{CPtr, ObjectType};
use tarn_rt::{println, Resources};

/// The prompt (no newline: input follows it on the same line).
pub const PROMPT: &str = "tarn> ";

/// Ctrl-]: detaches an attached console.
pub(crate) const DETACH: u8 = 0x1D;

/// The console: its UARTs and input, and what commands need besides the
/// pools.
pub struct Console {
    info: &'static BootInfo,
    control_port: ControlPort,
    sleeper: CPtr,
    clock: Clock,
    input: Input,
    /// The Linux domain (id) the serial console is attached to.
    attached: Option<u32>,
}

impl Console {
    /// Sets up the console's input (COM1, and COM2 for the control
    /// channel); [`Console::wake`] then names the notification that wakes it.
    pub fn new(info: &'static BootInfo, resources: &mut Resources) -> Console {
        let uart = Uart::com1();
        let control_port = ControlPort {
            uart: Uart::com2(),
            reader: FrameReader::new(),
        };
        let input = Input::setup(
            resources,
            &[(&uart, COM1_IRQ), (&control_port.uart, COM2_IRQ)],
        );
        let sleeper = resources.create(ObjectType::Notification, 0).unwrap_or(0);
        crate::linux::set_console_wake(input.notification());
        Console {
            info,
            control_port,
            sleeper,
            clock: Clock,
            input,
            attached: None,
        }
    }

    /// The notification the console waits on: the manager's threads signal
    /// it (a fault arrived, a tenant asks).
    pub fn wake(&self) -> CPtr {
        self.input.notification()
    }

    /// Runs `commands` as if typed at the prompt (the boot's autorun).
    pub fn run_script(
        &mut self,
        resources: &mut Resources,
        mut pools: Option<&mut Pools>,
        commands: &[String],
    ) {
        for command in commands {
            println!("{PROMPT}{command}");
            self.execute(resources, pools.as_deref_mut(), command);
            if let Some(p) = pools.as_deref_mut() {
                p.service(resources);
            }
        }
    }

    /// Serves the console forever (or until `poweroff`): typed lines, the
    /// control channel, tenants, an attached guest's console, and the
    /// manager between them.
    pub fn serve(&mut self, resources: &mut Resources, mut pools: Option<Pools>) -> ! {
        let uart = Uart::com1();
        let mut editor = LineEditor::new();
        uart.write(PROMPT);
        loop {
            if let Some(p) = pools.as_mut() {
                p.service(resources);
            }
            while let Some(frame) = self.control_port.receive() {
                self.serve_frame(frame, resources, pools.as_mut());
            }
            if let Some(p) = pools.as_mut() {
                self.serve_tenants(resources, p);
            }
            // An attached guest's output, raw.
            if let Some(ring) = self.attached.and_then(crate::linux::console) {
                let out = ring.take_output();
                if !out.is_empty() {
                    uart.write_bytes(&out);
                }
            }
            // A domain that went while attached detaches the console.
            if self
                .attached
                .is_some_and(|id| crate::linux::console(id).is_none())
            {
                self.attached = None;
                uart.write("\r\n");
                uart.write(PROMPT);
            }
            while let Some(byte) = uart.receive() {
                // Attached (`console D`): every byte goes to the guest's UART
                // but Ctrl-], which detaches, as in xl.
                if let Some(id) = self.attached {
                    match crate::linux::console(id) {
                        Some(ring) if byte != DETACH => {
                            ring.push(&[byte]);
                            continue;
                        }
                        Some(ring) => ring.set_attached(false),
                        None => {}
                    }
                    self.attached = None;
                    uart.write("\r\n");
                    uart.write(PROMPT);
                    continue;
                }
                match editor.feed(byte) {
                    Edit::Line(line) => {
                        uart.write("\r\n");
                        match line {
                            Ok(line) => self.execute(resources, pools.as_mut(), &line),
                            Err(why) => say!("error: {why}"),
                        }
                        if let Some(p) = pools.as_mut() {
                            p.service(resources);
                        }
                        if self.attached.is_none() {
                            uart.write(PROMPT);
                        }
                    }
                    Edit::Echo(byte) => uart.write_byte(byte),
                    Edit::Erase => uart.write("\x08 \x08"),
                    Edit::Nothing => {}
                }
            }
            // Wake for the next loan's end too.
            self.input.wait(
                pools
                    .as_ref()
                    .and_then(Pools::next_loan_end_ns)
                    .unwrap_or(0),
            );
        }
    }
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

    /// `repeat N CMD | CMD...`: runs the commands (each exactly as if typed)
    /// N times in order, every `#` replaced by the round number, their
    /// output kept back; stops at the first command that fails and shows
    /// its output.
    pub(crate) fn repeat(
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
                let outer = crate::output::begin_capture();
                self.execute(res, pools.as_deref_mut(), &command);
                if let Some(p) = pools.as_deref_mut() {
                    p.service(res);
                }
                let output = crate::output::end_capture(outer);
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

    /// Waits `ms` milliseconds while the pools stay served: loans end on
    /// time and tenants' requests are answered.
    pub(crate) fn pause(&mut self, res: &mut Resources, mut pools: Option<&mut Pools>, ms: u64) {
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
    pub(crate) fn serve_tenants(&mut self, res: &mut Resources, pools: &mut Pools) {
        while let Some((pool, line)) = pools.take_tenant_request() {
            let (ok, output) = self.run_for_tenant(res, pools, pool, &line);
            pools.answer_tenant(ok, output);
        }
    }

    /// Runs a tenant's command line, if [`tenant::authorize`] allows the
    /// parsed command, with its output captured (inside whatever capture
    /// runs now); returns (ok, output).
    pub(crate) fn run_for_tenant(
        &mut self,
        res: &mut Resources,
        pools: &mut Pools,
        pool: PoolId,
        line: &str,
    ) -> (bool, String) {
        let outer = crate::output::begin_capture();
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
        let output = crate::output::end_capture(outer);
        let ok = !output.lines().any(|l| l.starts_with("error:"));
        (ok, output)
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
pub(crate) fn topology_now(info: &BootInfo, pools: &Pools) -> config::Topology {
    topology(info).with_free(pools.manager.free_cpus().into_iter().collect())
}
