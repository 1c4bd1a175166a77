//! The serial console: a command line on COM1. The root task owns the
//! UART's input (receive interrupts on IRQ 4, delivered to a notification);
//! the kernel keeps writing its own lines to the same UART. Input is echoed,
//! backspace edits, and each line is one command. Unknown commands get a
//! clear error and change nothing.

use alloc::string::String;
use alloc::vec::Vec;
use tarn_pool_manager::pools::PoolManager;
use tarn_rt::abi::boot::BootInfo;
use tarn_rt::abi::{CPtr, ObjectType};
use tarn_rt::layout::slot;
use tarn_rt::{invoke, println, Resources};

/// COM1's registers.
const COM1: u64 = 0x3F8;
const RBR_THR: u64 = COM1;
const IER: u64 = COM1 + 1;
const MCR: u64 = COM1 + 4;
const LSR: u64 = COM1 + 5;
/// The ISA IRQ of COM1.
const COM1_IRQ: u64 = 4;
/// The prompt (no newline: input follows it on the same line).
pub const PROMPT: &str = "tarn> ";
/// Longest command line kept.
const MAX_LINE: usize = 256;

/// Commands the console knows, with one line of help each.
const COMMANDS: &[(&str, &str)] = &[
    ("help", "list the commands"),
    (
        "info",
        "CPUs, memory, boot modules and the kernel's object counts",
    ),
    ("list", "domains: name, id, vCPUs, pool"),
    (
        "cpupool-list [-c]",
        "pools: name, CPUs, scheduler, active, domains (-c: CPU lists)",
    ),
    ("sleep MS", "wait MS milliseconds"),
    ("poweroff", "power the machine off (exit status 0)"),
];

/// Commands that belong to the console but are not built yet.
const NOT_BUILT: &[&str] = &[
    "create",
    "destroy",
    "pause",
    "unpause",
    "cpupool-create",
    "cpupool-new",
    "pool-new",
    "cpupool-start",
    "cpupool-destroy",
    "cpupool-delete",
    "cpupool-rename",
    "cpupool-cpu-add",
    "cpupool-cpu-remove",
    "cpupool-migrate",
    "cpupool-sched",
    "sched-credit",
    "sched-sedf",
    "sched-group",
    "vcpu-list",
    "vcpu-pin",
    "top",
];

struct Uart {
    ports: CPtr,
}

impl Uart {
    fn read(&self, port: u64) -> u8 {
        invoke::ioport_in(self.ports, port, 1).unwrap_or(0) as u8
    }

    fn write_byte(&self, byte: u8) {
        while self.read(LSR) & 0x20 == 0 {}
        let _ = invoke::ioport_out(self.ports, RBR_THR, 1, u64::from(byte));
    }

    fn write(&self, text: &str) {
        for byte in text.bytes() {
            self.write_byte(byte);
        }
    }

    /// The next received byte, if one is waiting.
    fn receive(&self) -> Option<u8> {
        (self.read(LSR) & 1 != 0).then(|| self.read(RBR_THR))
    }
}

/// How input arrives: interrupts (IRQ 4 to a notification), or polling when
/// the interrupt cannot be had.
enum Input {
    Interrupt { handler: CPtr, notification: CPtr },
    Poll { sleeper: CPtr },
}

impl Input {
    fn setup(resources: &mut Resources, uart: &Uart) -> Input {
        let sleeper = resources.create(ObjectType::Notification, 0).unwrap_or(0);
        let interrupt = (|| {
            let notification = resources.create(ObjectType::Notification, 0).ok()?;
            let handler = resources.alloc_slot().ok()?;
            invoke::irq_control_get(slot::IRQ_CONTROL, COM1_IRQ, handler).ok()?;
            invoke::irq_handler_set_notification(handler, notification).ok()?;
            Some((handler, notification))
        })();
        match interrupt {
            Some((handler, notification)) => {
                // Receive-data interrupts on; OUT2 gates the UART's IRQ line.
                let _ = invoke::ioport_out(uart.ports, IER, 1, 0x01);
                let _ = invoke::ioport_out(uart.ports, MCR, 1, 0x0B);
                Input::Interrupt {
                    handler,
                    notification,
                }
            }
            None => Input::Poll { sleeper },
        }
    }

    /// Waits for input to (possibly) be there.
    fn wait(&self) {
        match *self {
            Input::Interrupt {
                handler,
                notification,
            } => {
                let _ = tarn_rt::wait(notification, 0);
                let _ = invoke::irq_handler_ack(handler);
            }
            Input::Poll { sleeper } => {
                let _ = tarn_rt::sleep(sleeper, 10_000_000);
            }
        }
    }
}

/// Runs the console forever (or until `poweroff`).
pub fn run(info: &BootInfo, resources: &mut Resources, pools: Option<PoolManager>) -> ! {
    let uart = Uart {
        ports: slot::IO_PORTS,
    };
    let input = Input::setup(resources, &uart);
    let sleeper = resources.create(ObjectType::Notification, 0).unwrap_or(0);
    let mut line = String::new();
    uart.write(PROMPT);
    loop {
        while let Some(byte) = uart.receive() {
            match byte {
                b'\r' | b'\n' => {
                    uart.write("\r\n");
                    let command = core::mem::take(&mut line);
                    execute(info, pools.as_ref(), command.trim(), sleeper);
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
        input.wait();
    }
}

/// Runs one command line.
fn execute(info: &BootInfo, pools: Option<&PoolManager>, line: &str, sleeper: CPtr) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&command, args)) = words.split_first() else {
        return;
    };
    match command {
        "help" => {
            for (name, what) in COMMANDS {
                println!("  {name:<10} {what}");
            }
            println!("  (not built yet: {})", NOT_BUILT.join(" "));
        }
        "info" => info_command(info, pools),
        "list" => match (args, pools) {
            ([], Some(pools)) => {
                println!("{:<20} {:>3} {:>5}  Pool", "Name", "ID", "VCPUs");
                for d in pools.domains() {
                    let pool = pools.pool(d.pool).map_or("?", |p| p.spec.name.as_str());
                    println!("{:<20} {:>3} {:>5}  {pool}", d.name, d.id.0, d.vcpus);
                }
            }
            ([], None) => println!("error: list: no pools"),
            _ => println!("error: usage: list"),
        },
        "cpupool-list" => match (args, pools) {
            ([], Some(pools)) | (["-c"], Some(pools)) => {
                let table =
                    tarn_pool_manager::pools::render_cpupool_list(&pools.list(), !args.is_empty());
                for line in table.lines() {
                    println!("{line}");
                }
            }
            (_, None) => println!("error: cpupool-list: no pools"),
            _ => println!("error: usage: cpupool-list [-c]"),
        },
        "sleep" => match args {
            [ms] => match ms.parse::<u64>() {
                Ok(ms) => {
                    let _ = tarn_rt::sleep(sleeper, ms.saturating_mul(1_000_000));
                }
                Err(_) => println!("error: sleep: '{ms}' is not a number of milliseconds"),
            },
            _ => println!("error: usage: sleep MS"),
        },
        "poweroff" => {
            if args.is_empty() {
                let _ = invoke::machine_power_off(slot::MACHINE, 0);
                println!("error: poweroff failed");
            } else {
                println!("error: usage: poweroff");
            }
        }
        other if NOT_BUILT.contains(&other) => println!("error: '{other}': not built yet"),
        other => println!("error: unknown command '{other}' (try help)"),
    }
}

fn info_command(info: &BootInfo, pools: Option<&PoolManager>) {
    let untyped: u64 = info.untyped().iter().map(|u| 1u64 << u.size_bits).sum();
    let modules: Vec<&str> = info.modules().iter().map(|m| m.name()).collect();
    println!("cpus            : {}", info.cpu_count);
    println!("untyped memory  : {} MiB at boot", untyped >> 20);
    println!("boot modules    : {}", modules.join(" "));
    if let Some(pools) = pools {
        let pool0 = pools.pool(tarn_pool_manager::pools::POOL0);
        println!(
            "Pool-0 scheduler: {}",
            pool0.map_or("none", |p| p.spec.sched.name())
        );
        println!("free cpus       : {}", pools.free_cpus().len());
    }
    if let Ok(i) = invoke::machine_check_invariants(slot::MACHINE) {
        println!(
            "kernel objects  : {} live, {} capabilities",
            i.live_objects, i.live_caps
        );
        println!(
            "invariants      : {}",
            if i.consistent { "hold" } else { "BROKEN" }
        );
    }
}
