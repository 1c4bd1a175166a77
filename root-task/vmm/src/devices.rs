//! The PC devices a firmware-less Linux needs (and the test guests use):
//! a 16550A UART with its FIFO and interrupts, the 8259 pair, the 8254
//! PIT (channel 0 periodic or one-shot, channel 2 and port 0x61), the CMOS
//! RTC and the i8042's reset line. Each is a plain state machine over port
//! reads and writes; time is the VMM's clock in nanoseconds.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

/// The 8254's input clock.
pub const PIT_HZ: u64 = 1_193_182;
/// Bytes the UART's receive FIFO holds before input is dropped (the
/// console holds the rest).
pub const RX_FIFO: usize = 16;

/// A 16550A at 0x3F8, IRQ 4. Transmitted bytes are collected (as bytes and
/// as complete lines); the transmitter is always empty again at once, so
/// the THRE interrupt re-arms on every write (as on a real 16550 that
/// sends faster than the CPU fills it).
#[derive(Clone, Debug, Default)]
pub struct Uart {
    rx: VecDeque<u8>,
    /// Bytes sent since the last `take_output`.
    pub output: Vec<u8>,
    /// The line being sent.
    pub line: String,
    /// Complete lines sent.
    pub lines: Vec<String>,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scratch: u8,
    divisor: u16,
    fifo: bool,
    thre_pending: bool,
}

impl Uart {
    /// Whether the receive FIFO has room for `n` more bytes.
    pub fn rx_room(&self) -> usize {
        RX_FIFO.saturating_sub(self.rx.len())
    }

    /// Queues input bytes (beyond the FIFO's room they are dropped: the
    /// caller offers only `rx_room()`).
    pub fn receive(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(self.rx_room()) {
            self.rx.push_back(b);
        }
    }

    /// Whether the receive interrupt is enabled.
    pub fn rx_interrupt(&self) -> bool {
        self.ier & 1 != 0
    }

    /// The IRQ 4 line: received data or THR empty, each when enabled.
    pub fn irq(&self) -> bool {
        (self.ier & 1 != 0 && !self.rx.is_empty()) || (self.ier & 2 != 0 && self.thre_pending)
    }

    /// A port access at `offset` (0..8); returns the value read.
    #[inline(never)]
    pub fn access(&mut self, offset: u64, input: bool, value: u8) -> u8 {
        let dlab = self.lcr & 0x80 != 0;
        match (offset, input) {
            (0, false) if !dlab => {
                self.output.push(value);
                match value {
                    b'\n' => self.lines.push(core::mem::take(&mut self.line)),
                    b'\r' => {}
                    byte => self.line.push(if byte.is_ascii_graphic() || byte == b' ' {
                        byte as char
                    } else {
                        '.'
                    }),
                }
                self.thre_pending = true;
                0
            }
            (0, true) if !dlab => self.rx.pop_front().unwrap_or(0),
            (0, _) => {
                if !input {
                    self.divisor = (self.divisor & 0xFF00) | u16::from(value);
                }
                self.divisor as u8
            }
            (1, _) if dlab => {
                if !input {
                    self.divisor = (self.divisor & 0xFF) | u16::from(value) << 8;
                }
                (self.divisor >> 8) as u8
            }
            (1, false) => {
                // Enabling the THRE interrupt raises it at once when the
                // transmitter is empty (it always is).
                if value & 2 != 0 {
                    self.thre_pending = true;
                }
                self.ier = value & 0x0F;
                0
            }
            (1, true) => self.ier,
            (2, true) => {
                let fifo = if self.fifo { 0xC0 } else { 0 };
                fifo | if self.ier & 1 != 0 && !self.rx.is_empty() {
                    0x04
                } else if self.ier & 2 != 0 && self.thre_pending {
                    // Reading IIR with THRE as the source clears it.
                    self.thre_pending = false;
                    0x02
                } else {
                    0x01
                }
            }
            (2, false) => {
                self.fifo = value & 1 != 0;
                if value & 2 != 0 {
                    self.rx.clear();
                }
                0
            }
            (3, false) => {
                self.lcr = value;
                0
            }
            (3, true) => self.lcr,
            (4, false) => {
                self.mcr = value & 0x1F;
                0
            }
            (4, true) => self.mcr,
            (5, true) => 0x60 | u8::from(!self.rx.is_empty()),
            (6, true) => 0xB0,
            (7, false) => {
                self.scratch = value;
                0
            }
            (7, true) => self.scratch,
            _ => 0,
        }
    }
}

/// One 8259.
#[derive(Clone, Copy, Debug)]
pub struct Pic8259 {
    /// Interrupt request register.
    pub irr: u8,
    /// In-service register.
    pub isr: u8,
    /// Interrupt mask register.
    pub imr: u8,
    /// Vector of IRQ 0 (ICW2).
    pub vector_base: u8,
    /// 0: operational; 2..=4: expecting ICW2..ICW4.
    init_step: u8,
    icw4: bool,
    auto_eoi: bool,
    read_isr: bool,
}

impl Pic8259 {
    fn new(vector_base: u8) -> Self {
        Pic8259 {
            irr: 0,
            isr: 0,
            imr: 0,
            vector_base,
            init_step: 0,
            icw4: false,
            auto_eoi: false,
            read_isr: false,
        }
    }

    /// The IRQ to deliver: the highest-priority requested, unmasked one,
    /// above everything in service (fully nested mode).
    pub fn deliverable(&self) -> Option<u8> {
        let requested = self.irr & !self.imr;
        if requested == 0 {
            return None;
        }
        let irq = requested.trailing_zeros() as u8;
        let in_service = if self.isr == 0 {
            8
        } else {
            self.isr.trailing_zeros() as u8
        };
        (irq < in_service).then_some(irq)
    }

    /// Acknowledges `irq` (the INTA cycle): in service until its EOI.
    pub fn acknowledge(&mut self, irq: u8) -> u8 {
        self.irr &= !(1 << irq);
        if !self.auto_eoi {
            self.isr |= 1 << irq;
        }
        self.vector_base.wrapping_add(irq)
    }

    /// A port access (`command`: the even port).
    pub fn access(&mut self, command: bool, input: bool, value: u8) -> u8 {
        if input {
            return match (command, self.read_isr) {
                (true, true) => self.isr,
                (true, false) => self.irr,
                (false, _) => self.imr,
            };
        }
        if command {
            if value & 0x10 != 0 {
                // ICW1.
                self.init_step = 2;
                self.icw4 = value & 1 != 0;
                self.imr = 0;
                self.isr = 0;
                self.irr = 0;
                self.read_isr = false;
            } else if value & 0x08 != 0 {
                // OCW3: which register a command-port read returns.
                if value & 2 != 0 {
                    self.read_isr = value & 1 != 0;
                }
            } else {
                // OCW2: EOI (non-specific 0x20, specific 0x60 | irq).
                match value & 0xE0 {
                    0x20 | 0xA0 if self.isr != 0 => self.isr &= self.isr - 1,
                    0x60 | 0xE0 => self.isr &= !(1 << (value & 7)),
                    _ => {}
                }
            }
            return 0;
        }
        match self.init_step {
            2 => {
                self.vector_base = value & 0xF8;
                self.init_step = 3;
            }
            3 => self.init_step = if self.icw4 { 4 } else { 0 },
            4 => {
                self.auto_eoi = value & 2 != 0;
                self.init_step = 0;
            }
            _ => self.imr = value,
        }
        0
    }
}

/// The 8259 pair (master 0x20/0x21, slave 0xA0/0xA1 on IRQ 2).
#[derive(Clone, Copy, Debug)]
pub struct Pics {
    /// The master.
    pub master: Pic8259,
    /// The slave (no device of this platform is wired to it).
    pub slave: Pic8259,
}

impl Default for Pics {
    fn default() -> Self {
        Pics {
            master: Pic8259::new(8),
            slave: Pic8259::new(0x70),
        }
    }
}

impl Pics {
    /// Raises an edge on a master IRQ line.
    pub fn raise(&mut self, irq: u8) {
        self.master.irr |= 1 << irq;
    }

    /// Sets a level-triggered master IRQ line.
    pub fn set_level(&mut self, irq: u8, high: bool) {
        if high {
            self.master.irr |= 1 << irq;
        } else {
            self.master.irr &= !(1 << irq);
        }
    }

    /// Whether an interrupt waits to be delivered.
    pub fn pending(&self) -> bool {
        self.master.deliverable().is_some()
    }

    /// Takes the next interrupt to deliver: its vector.
    pub fn take(&mut self) -> Option<u8> {
        let irq = self.master.deliverable()?;
        Some(self.master.acknowledge(irq))
    }

    /// A port access on 0x20, 0x21, 0xA0 or 0xA1.
    #[inline(never)]
    pub fn access(&mut self, port: u64, input: bool, value: u8) -> u8 {
        let chip = if port < 0xA0 {
            &mut self.master
        } else {
            &mut self.slave
        };
        chip.access(port & 1 == 0, input, value)
    }
}

/// The 8254: channel 0 drives IRQ 0 (modes 2/3 periodic, 0/4 one-shot);
/// channel 2 counts behind the gate of port 0x61 (its output in bit 5; its
/// count reads 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct Pit {
    channels: [Channel; 3],
    port61: u8,
}

#[derive(Clone, Copy, Debug, Default)]
struct Channel {
    mode: u8,
    access: u8,
    /// Low byte written, waiting for the high one.
    low: Option<u8>,
    reload: u64,
    /// When the count was loaded (ns).
    start_ns: u64,
    /// Channel 0: the next IRQ 0 edge (ns).
    next_ns: Option<u64>,
    latched: Option<u16>,
    read_high: bool,
}

fn counts_to_ns(counts: u64) -> u64 {
    (u128::from(counts) * 1_000_000_000 / u128::from(PIT_HZ)) as u64
}

impl Channel {
    fn periodic(&self) -> bool {
        matches!(self.mode, 2 | 3 | 6 | 7)
    }

    fn count_at(&self, now_ns: u64) -> u16 {
        if self.reload == 0 {
            return 0;
        }
        let elapsed = (u128::from(now_ns.saturating_sub(self.start_ns)) * u128::from(PIT_HZ)
            / 1_000_000_000) as u64;
        let count = if self.periodic() {
            self.reload - elapsed % self.reload
        } else {
            self.reload.saturating_sub(elapsed)
        };
        count as u16
    }

    fn load(&mut self, reload: u64, now_ns: u64, channel0: bool) {
        self.reload = if reload == 0 { 0x1_0000 } else { reload };
        self.start_ns = now_ns;
        if channel0 {
            self.next_ns = Some(now_ns + counts_to_ns(self.reload).max(1));
        }
    }
}

impl Pit {
    /// When channel 0 next raises IRQ 0 (ns), if armed.
    pub fn next_event_ns(&self) -> Option<u64> {
        self.channels[0].next_ns
    }

    /// Whether channel 0 is armed periodically.
    pub fn periodic(&self) -> bool {
        self.channels[0].next_ns.is_some() && self.channels[0].periodic()
    }

    /// Advances to `now_ns`: whether IRQ 0 fired (missed periods collapse
    /// into one edge, as a PIC's IRR holds one).
    pub fn advance(&mut self, now_ns: u64) -> bool {
        let c = &mut self.channels[0];
        let Some(due) = c.next_ns else {
            return false;
        };
        if now_ns < due {
            return false;
        }
        if c.periodic() {
            let period = counts_to_ns(c.reload).max(1);
            c.next_ns = Some(due + ((now_ns - due) / period + 1) * period);
        } else {
            c.next_ns = None;
        }
        true
    }

    /// A port access on 0x40..=0x43 or 0x61.
    #[inline(never)]
    pub fn access(&mut self, port: u64, input: bool, value: u8, now_ns: u64) -> u8 {
        match (port, input) {
            (0x61, true) => {
                let c = &self.channels[2];
                let gate = self.port61 & 1 != 0;
                let out = gate
                    && c.reload != 0
                    && now_ns.saturating_sub(c.start_ns) >= counts_to_ns(c.reload);
                self.port61 & 3 | u8::from(out) << 5
            }
            (0x61, false) => {
                if value & 1 != 0 && self.port61 & 1 == 0 {
                    self.channels[2].start_ns = now_ns;
                }
                self.port61 = value & 3;
                0
            }
            (0x43, false) => {
                let index = usize::from(value >> 6);
                if index == 3 {
                    return 0; // read-back: not modelled
                }
                let c = &mut self.channels[index];
                let access = (value >> 4) & 3;
                if access == 0 {
                    c.latched = Some(c.count_at(now_ns));
                    c.read_high = false;
                    return 0;
                }
                c.access = access;
                c.mode = (value >> 1) & 7;
                c.low = None;
                c.latched = None;
                c.read_high = false;
                if index == 0 {
                    // A new mode stops the counter until a count is written.
                    c.next_ns = None;
                }
                0
            }
            (0x40..=0x42, false) => {
                let index = (port - 0x40) as usize;
                let c = &mut self.channels[index];
                match c.access {
                    1 => c.load(u64::from(value), now_ns, index == 0),
                    2 => c.load(u64::from(value) << 8, now_ns, index == 0),
                    _ => match c.low.take() {
                        None => c.low = Some(value),
                        Some(low) => {
                            c.load(u64::from(value) << 8 | u64::from(low), now_ns, index == 0)
                        }
                    },
                }
                0
            }
            // Channel 2's count does not read back (0): Linux's quick PIT
            // calibration of the TSC then gives up at its first read
            // instead of polling the port thousands of times for a rate
            // the VMM gives it anyway (`tsc_early_khz`); how long that
            // polling ran depended on the phase of the count, which made
            // the boot's exit count vary fivefold. Its output (port 0x61
            // bit 5) is modelled.
            (0x42, true) => 0,
            (0x40..=0x41, true) => {
                let c = &mut self.channels[(port - 0x40) as usize];
                let count = match c.latched {
                    Some(latched) => latched,
                    None => c.count_at(now_ns),
                };
                let byte = match c.access {
                    1 => count as u8,
                    2 => (count >> 8) as u8,
                    _ => {
                        let high = c.read_high;
                        c.read_high = !high;
                        if high {
                            c.latched = None;
                            (count >> 8) as u8
                        } else {
                            count as u8
                        }
                    }
                };
                if c.access != 3 {
                    c.latched = None;
                }
                byte
            }
            _ => 0,
        }
    }
}

/// The CMOS RTC at 0x70/0x71: a clock in BCD, 24-hour mode, from a fixed
/// epoch plus the VMM's clock; never updating (UIP clear), valid RAM.
#[derive(Clone, Debug)]
pub struct Rtc {
    index: u8,
    ram: [u8; 128],
    /// Unix time at `now_ns` = 0.
    pub epoch_seconds: u64,
}

impl Default for Rtc {
    fn default() -> Self {
        Rtc {
            index: 0,
            ram: [0; 128],
            // 2026-01-01 00:00:00 UTC.
            epoch_seconds: 1_767_225_600,
        }
    }
}

fn bcd(value: u64) -> u8 {
    (((value / 10) << 4) | (value % 10)) as u8
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

impl Rtc {
    /// A port access on 0x70 or 0x71.
    #[inline(never)]
    pub fn access(&mut self, port: u64, input: bool, value: u8, now_ns: u64) -> u8 {
        if port == 0x70 {
            if !input {
                self.index = value & 0x7F;
            }
            return if input { 0xFF } else { 0 };
        }
        let index = self.index;
        if !input {
            if index >= 0x0E {
                self.ram[usize::from(index)] = value;
            }
            return 0;
        }
        let now = self.epoch_seconds + now_ns / 1_000_000_000;
        let (year, month, day) = civil(now / 86_400);
        let seconds = now % 86_400;
        match index {
            0x00 => bcd(seconds % 60),
            0x02 => bcd(seconds / 60 % 60),
            0x04 => bcd(seconds / 3600),
            0x06 => ((now / 86_400 + 4) % 7 + 1) as u8,
            0x07 => bcd(day),
            0x08 => bcd(month),
            0x09 => bcd(year % 100),
            0x32 => bcd(year / 100),
            0x0A => 0x26,
            0x0B => 0x02,
            0x0C => 0x00,
            0x0D => 0x80,
            _ => self.ram[usize::from(index)],
        }
    }
}

/// The i8042 keyboard controller, as far as a guest without a keyboard
/// needs it: the controller answers its self-tests and configuration byte
/// (so Linux finds a controller with nothing attached instead of timing
/// out on each poll), and command 0xFE pulses the reset line.
#[derive(Clone, Debug, Default)]
pub struct I8042 {
    out: VecDeque<u8>,
    config: u8,
    write_config: bool,
    /// The guest pulsed the CPU reset line.
    pub reset: bool,
}

impl I8042 {
    /// A port access on 0x60 or 0x64.
    #[inline(never)]
    pub fn access(&mut self, port: u64, input: bool, value: u8) -> u8 {
        match (port, input) {
            (0x64, true) => u8::from(!self.out.is_empty()) | 0x04,
            (0x60, true) => self.out.pop_front().unwrap_or(0),
            (0x60, false) => {
                if core::mem::take(&mut self.write_config) {
                    self.config = value;
                } else {
                    // A byte for a device: none is attached.
                    self.out.push_back(0xFE);
                }
                0
            }
            (0x64, false) => {
                match value {
                    0x20 => self.out.push_back(self.config),
                    0x60 => self.write_config = true,
                    0xAA => self.out.push_back(0x55),
                    0xAB | 0xA9 => self.out.push_back(0x01), // clock line stuck low: absent
                    0xFE => self.reset = true,
                    _ => {}
                }
                0
            }
            _ => 0xFF,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uart_thre_interrupt_and_fifo_as_linux_probes_them() {
        let mut u = Uart::default();
        u.access(2, false, 1); // FIFO on
        assert_eq!(u.access(2, true, 0) & 0xC0, 0xC0, "16550A FIFO bits");
        u.access(1, false, 0x4F);
        assert_eq!(u.access(1, true, 0), 0x0F, "no XScale UUE bit");
        u.access(1, false, 0);
        u.access(1, false, 2);
        assert_eq!(u.access(2, true, 0) & 0x0F, 0x02, "THRE on enabling");
        assert!(!u.irq(), "IIR read cleared THRE");
        assert_eq!(u.access(2, true, 0) & 0x0F, 0x01);
        u.access(0, false, b'a');
        assert!(u.irq(), "THRE again after a write");
        u.receive(b"xy");
        u.access(1, false, 1);
        assert!(u.irq());
        assert_eq!(u.access(2, true, 0) & 0x0F, 0x04);
        assert_eq!(u.access(5, true, 0) & 1, 1);
        assert_eq!(u.access(0, true, 0), b'x');
        assert_eq!(u.access(0, true, 0), b'y');
        assert!(!u.irq());
        assert_eq!(u.output, b"a");
        u.receive(&[0; 40]);
        assert_eq!(u.rx_room(), 0);
    }

    #[test]
    fn pic_priorities_eoi_and_ocw3() {
        let mut p = Pics::default();
        for (port, value) in [(0x20, 0x11), (0x21, 0x30), (0x21, 4), (0x21, 1), (0x21, 0)] {
            p.access(port, false, value);
        }
        p.raise(4);
        p.raise(0);
        assert_eq!(p.take(), Some(0x30));
        assert_eq!(p.take(), None, "IRQ 4 waits for IRQ 0's EOI");
        p.access(0x20, false, 0x0A);
        assert_eq!(p.access(0x20, true, 0), 0x10, "IRR");
        p.access(0x20, false, 0x0B);
        assert_eq!(p.access(0x20, true, 0), 0x01, "ISR");
        p.access(0x20, false, 0x60); // specific EOI, IRQ 0
        assert_eq!(p.take(), Some(0x34));
        p.access(0x20, false, 0x20);
        p.access(0x21, false, 0x10);
        p.raise(4);
        assert_eq!(p.take(), None, "masked");
        p.access(0xA1, false, 0xFF);
        assert_eq!(p.access(0xA1, true, 0), 0xFF, "slave mask reads back");
    }

    #[test]
    fn pit_periodic_one_shot_and_counter() {
        let mut t = Pit::default();
        t.access(0x43, false, 0x34, 0);
        t.access(0x40, false, (11932 & 0xFF) as u8, 0);
        t.access(0x40, false, (11932 >> 8) as u8, 0);
        let due = t.next_event_ns().unwrap();
        assert!((9_990_000..10_010_000).contains(&due));
        assert!(!t.advance(due - 1));
        assert!(t.advance(due));
        assert!(t.periodic());
        assert!(t.next_event_ns().unwrap() > due);
        t.access(0x43, false, 0x00, due + due / 2);
        let low = t.access(0x40, true, 0, 0);
        let high = t.access(0x40, true, 0, 0);
        let count = u16::from(high) << 8 | u16::from(low);
        assert!((5900..6050).contains(&count), "{count}");
        // Mode 4 one-shot: fires once.
        t.access(0x43, false, 0x38, 0);
        t.access(0x40, false, 100, 0);
        t.access(0x40, false, 0, 0);
        assert!(t.advance(1_000_000));
        assert!(!t.advance(100_000_000));
        assert_eq!(t.next_event_ns(), None);
        // Channel 2 behind port 0x61.
        t.access(0x43, false, 0xB0, 0);
        t.access(0x42, false, 0xFF, 0);
        t.access(0x42, false, 0x00, 0);
        t.access(0x61, false, 1, 0);
        assert_eq!(t.access(0x61, true, 0, 0) & 0x20, 0);
        assert_eq!(t.access(0x61, true, 0, 1_000_000) & 0x20, 0x20);
        assert_eq!(t.access(0x42, true, 0, 100), 0, "channel 2's count reads 0");
    }

    #[test]
    fn rtc_reads_a_valid_bcd_date() {
        let mut r = Rtc::default();
        let mut read = |index: u8, now: u64| {
            r.access(0x70, false, index, now);
            r.access(0x71, true, 0, now)
        };
        assert_eq!(read(0x0A, 0) & 0x80, 0, "no update in progress");
        assert_eq!(read(0x0D, 0), 0x80);
        assert_eq!(
            (read(0x09, 0), read(0x08, 0), read(0x07, 0)),
            (0x26, 0x01, 0x01)
        );
        let t = 86_400_000_000_000 + 3_723_000_000_000; // 1 day, 01:02:03
        assert_eq!((read(0x04, t), read(0x02, t), read(0x00, t)), (1, 2, 3));
        assert_eq!(read(0x07, t), 2);
        assert_eq!(civil(19_723), (2024, 1, 1));
    }

    #[test]
    fn i8042_answers_and_resets() {
        let mut k = I8042::default();
        assert_eq!(k.access(0x64, true, 0) & 1, 0);
        k.access(0x64, false, 0xAA);
        assert_eq!(k.access(0x64, true, 0) & 1, 1);
        assert_eq!(k.access(0x60, true, 0), 0x55);
        k.access(0x64, false, 0x60);
        k.access(0x60, false, 0x45);
        k.access(0x64, false, 0x20);
        assert_eq!(k.access(0x60, true, 0), 0x45);
        assert!(!k.reset);
        k.access(0x64, false, 0xFE);
        assert!(k.reset);
    }
}
