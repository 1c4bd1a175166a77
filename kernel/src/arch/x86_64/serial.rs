//! The 16550 UART on COM1 (I/O port 0x3F8), polled, 115200 8N1.

use super::cpu::{inb, outb};

/// COM1's base I/O port.
const COM1: u16 = 0x3F8;
/// Line status register offset and its bits.
const LSR: u16 = 5;
const LSR_THR_EMPTY: u8 = 1 << 5;
const LSR_TRANSMITTER_IDLE: u8 = 1 << 6;

/// Programs COM1: interrupts off, 115200 baud (divisor 1), 8N1, FIFOs on.
pub fn init() {
    // SAFETY: COM1 is owned by the kernel console; these writes only configure it.
    unsafe {
        outb(COM1 + 1, 0x00); // IER: no interrupts
        outb(COM1 + 3, 0x80); // LCR: DLAB
        outb(COM1, 0x01); // divisor low: 115200
        outb(COM1 + 1, 0x00); // divisor high
        outb(COM1 + 3, 0x03); // LCR: 8N1
        outb(COM1 + 2, 0xC7); // FCR: enable and clear FIFOs
        outb(COM1 + 4, 0x03); // MCR: DTR, RTS
    }
}

fn line_status() -> u8 {
    // SAFETY: reading LSR has no side effect beyond clearing error bits.
    unsafe { inb(COM1 + LSR) }
}

/// Writes one byte, waiting for room in the transmitter.
pub fn write_byte(byte: u8) {
    while line_status() & LSR_THR_EMPTY == 0 {
        core::hint::spin_loop();
    }
    // SAFETY: THR is empty; writing it transmits the byte.
    unsafe { outb(COM1, byte) };
}

/// Waits until every byte written so far has left the UART (LSR bit 6), so a
/// following power-off does not cut the last line.
pub fn drain() {
    while line_status() & LSR_TRANSMITTER_IDLE == 0 {
        core::hint::spin_loop();
    }
}
