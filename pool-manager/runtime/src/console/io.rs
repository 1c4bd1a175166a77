//! The console's wires: the 16550 UARTs (COM1 the console, COM2 the
//! control channel), input by interrupt (IRQ 4 and 3 to one notification)
//! or by polling, and the control channel's frames (`tarn_ipc_schema::
//! control`, from the host's `tarnctl`): each a console command line whose
//! output goes back in frames, escaped.

use super::Console;
use crate::manager::Pools;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use tarn_rt::abi::control::{self, ControlReply, ControlRequest, FrameReader, Received};
use tarn_rt::abi::{CPtr, ObjectType};
use tarn_rt::layout::slot;
use tarn_rt::{invoke, println, Resources};

/// The UARTs: COM1 (the console) and COM2 (the control channel).
pub(crate) const COM1: u64 = 0x3F8;

pub(crate) const COM2: u64 = 0x2F8;

/// A 16550's registers, from its base port.
pub(crate) const RBR_THR: u64 = 0;

pub(crate) const IER: u64 = 1;

pub(crate) const MCR: u64 = 4;

pub(crate) const LSR: u64 = 5;

/// Their ISA IRQs.
pub(crate) const COM1_IRQ: u64 = 4;

pub(crate) const COM2_IRQ: u64 = 3;

/// A 16550 UART at `base`.
pub(crate) struct Uart {
    pub(crate) ports: CPtr,
    pub(crate) base: u64,
}

impl Uart {
    pub(crate) const fn com1() -> Uart {
        Uart {
            ports: slot::IO_PORTS,
            base: COM1,
        }
    }

    pub(crate) const fn com2() -> Uart {
        Uart {
            ports: slot::IO_PORTS,
            base: COM2,
        }
    }

    pub(crate) fn read(&self, register: u64) -> u8 {
        invoke::ioport_in(self.ports, self.base + register, 1).unwrap_or(0) as u8
    }

    pub(crate) fn write_byte(&self, byte: u8) {
        while self.read(LSR) & 0x20 == 0 {}
        let _ = invoke::ioport_out(self.ports, self.base + RBR_THR, 1, u64::from(byte));
    }

    pub(crate) fn write(&self, text: &str) {
        self.write_bytes(text.as_bytes());
    }

    pub(crate) fn write_bytes(&self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_byte(byte);
        }
    }

    /// The next received byte, if one is waiting.
    pub(crate) fn receive(&self) -> Option<u8> {
        (self.read(LSR) & 1 != 0).then(|| self.read(RBR_THR))
    }

    /// Receive-data interrupts on; OUT2 gates the UART's IRQ line.
    pub(crate) fn enable_interrupts(&self) {
        let _ = invoke::ioport_out(self.ports, self.base + IER, 1, 0x01);
        let _ = invoke::ioport_out(self.ports, self.base + MCR, 1, 0x0B);
    }
}

/// How input arrives: interrupts (COM1's IRQ 4 and COM2's IRQ 3 to one
/// notification), or polling when the interrupts cannot be had.
pub(crate) enum Input {
    Interrupt {
        handlers: Vec<CPtr>,
        notification: CPtr,
    },
    Poll {
        sleeper: CPtr,
    },
}

impl Input {
    pub(crate) fn setup(resources: &mut Resources, uarts: &[(&Uart, u64)]) -> Input {
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
    pub(crate) fn notification(&self) -> CPtr {
        match self {
            Input::Interrupt { notification, .. } => *notification,
            Input::Poll { sleeper } => *sleeper,
        }
    }

    /// Waits for input to (possibly) be there, or `timeout_ns` (0: no limit).
    pub(crate) fn wait(&self, timeout_ns: u64) {
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
pub(crate) struct ControlPort {
    pub(crate) uart: Uart,
    pub(crate) reader: FrameReader,
}

impl ControlPort {
    /// Reads what COM2 has; returns the next complete frame (`None` inside:
    /// an overlong one, dropped).
    pub(crate) fn receive(&mut self) -> Option<Option<Vec<u8>>> {
        while let Some(byte) = self.uart.receive() {
            match self.reader.push(byte) {
                Some(Received::Frame(frame)) => return Some(Some(frame.to_vec())),
                Some(Received::Overlong) => return Some(None),
                None => {}
            }
        }
        None
    }

    pub(crate) fn send(&self, reply: &ControlReply) {
        let mut buffer = [0u8; control::MAX_FRAME];
        if let Some(frame) = control::encode(reply, &mut buffer) {
            self.uart.write_bytes(frame);
        }
    }
}

impl Console {
    /// Answers one control-channel frame: runs its command with the output
    /// captured.
    pub(crate) fn serve_frame(
        &mut self,
        frame: Option<Vec<u8>>,
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
                self.control_port
                    .send(&ControlReply::Output { id, text: &text });
            }
            self.control_port.send(&ControlReply::Done { id, ok });
            return;
        }
        let Some(ControlRequest::Run { id, line }) = request else {
            self.control_port.send(&ControlReply::Output {
                id: 0,
                text: "error: control: garbled or oversized frame\n",
            });
            self.control_port
                .send(&ControlReply::Done { id: 0, ok: false });
            return;
        };
        let line = String::from(line);
        let outer = crate::output::begin_capture();
        let mut pools = pools;
        self.execute(resources, pools.as_deref_mut(), &line);
        if let Some(p) = pools {
            p.service(resources);
        }
        let output = crate::output::end_capture(outer);
        let ok = !output.lines().any(|l| l.starts_with("error:"));
        let output = format!("{}", control::Escaped(&output));
        let mut rest = output.as_str();
        while !rest.is_empty() {
            let mut cut = rest.len().min(control::MAX_OUTPUT_PIECE);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            self.control_port.send(&ControlReply::Output {
                id,
                text: &rest[..cut],
            });
            rest = &rest[cut..];
        }
        self.control_port.send(&ControlReply::Done { id, ok });
    }
}

/// Writes one line of any length straight to the UART: a JSON document stays
/// one line (the kernel's `DebugWrite` takes at most 512 bytes per call and
/// ends each call with a line break).
pub(crate) fn emit_line(text: &str) {
    if crate::output::capture_line(text) {
        return;
    }
    let uart = Uart::com1();
    uart.write(text);
    uart.write("\r\n");
}
