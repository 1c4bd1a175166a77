//! The kernel console on the serial port. One `kprintln!` is written under
//! one lock with interrupts off, so lines from different CPUs never interleave.
//! The fault path ([`force_write`]) bypasses a lock this CPU already holds.

use crate::arch::serial;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// No CPU holds the console.
const UNOWNED: u32 = u32::MAX;
static OWNER: AtomicU32 = AtomicU32::new(UNOWNED);
static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

pub use tarn_kernel_core::cmdline::LogLevel;

struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                serial::write_byte(b'\r');
            }
            serial::write_byte(byte);
        }
        Ok(())
    }
}

/// Sets the most verbose level that is printed.
pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether messages at `level` are printed.
pub fn enabled(level: LogLevel) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Writes formatted text as one unit: no other CPU's output lands inside it.
pub fn write(args: fmt::Arguments<'_>) {
    let was_enabled = crate::arch::cpu::interrupts_enabled();
    crate::arch::cpu::disable_interrupts();
    let me = crate::arch::percpu::index_or_boot();
    while OWNER
        .compare_exchange_weak(UNOWNED, me, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    let _ = Uart.write_fmt(args);
    OWNER.store(UNOWNED, Ordering::Release);
    if was_enabled {
        crate::arch::cpu::enable_interrupts();
    }
}

/// Writes from a fault or panic path: takes the lock unless this CPU already
/// holds it (the fault interrupted its own print), in which case it writes anyway.
pub fn force_write(args: fmt::Arguments<'_>) {
    let me = crate::arch::percpu::index_or_boot();
    let mut spins = 0u64;
    loop {
        match OWNER.compare_exchange_weak(UNOWNED, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => {
                let _ = Uart.write_fmt(args);
                OWNER.store(UNOWNED, Ordering::Release);
                return;
            }
            Err(owner) if owner == me || spins > 100_000_000 => {
                let _ = Uart.write_fmt(args);
                return;
            }
            Err(_) => {
                spins += 1;
                core::hint::spin_loop();
            }
        }
    }
}

/// Prints one line on the kernel console.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => { $crate::console::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Prints a line prefixed `tarn: warning: ` (shown at level warn and above).
#[macro_export]
macro_rules! kwarn {
    ($($arg:tt)*) => {
        if $crate::console::enabled($crate::console::LogLevel::Warn) {
            $crate::console::write(format_args!("tarn: warning: {}\n", format_args!($($arg)*)))
        }
    };
}

/// Prints a line prefixed `tarn: ` at level info.
#[macro_export]
macro_rules! kinfo {
    ($($arg:tt)*) => {
        if $crate::console::enabled($crate::console::LogLevel::Info) {
            $crate::console::write(format_args!("tarn: {}\n", format_args!($($arg)*)))
        }
    };
}

/// Prints a line prefixed `tarn: ` at level debug.
#[macro_export]
macro_rules! kdebug {
    ($($arg:tt)*) => {
        if $crate::console::enabled($crate::console::LogLevel::Debug) {
            $crate::console::write(format_args!("tarn: {}\n", format_args!($($arg)*)))
        }
    };
}
