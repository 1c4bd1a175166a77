//! Port I/O on behalf of I/O-port capabilities (the capability check is the
//! caller's; this only performs the access).

use core::arch::asm;

/// Reads `width` (1, 2 or 4) bytes from `port`.
pub fn read(port: u16, width: u8) -> u32 {
    // SAFETY: the kernel checked the caller's I/O-port capability covers
    // these ports; reading a port has no memory-safety effect on the kernel.
    unsafe {
        match width {
            1 => {
                let v: u8;
                asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags));
                u32::from(v)
            }
            2 => {
                let v: u16;
                asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags));
                u32::from(v)
            }
            _ => {
                let v: u32;
                asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags));
                v
            }
        }
    }
}

/// Writes `width` (1, 2 or 4) bytes of `value` to `port`.
pub fn write(port: u16, width: u8, value: u32) {
    // SAFETY: as for `read`: the capability grants these ports to the caller.
    unsafe {
        match width {
            1 => {
                asm!("out dx, al", in("dx") port, in("al") value as u8, options(nomem, nostack, preserves_flags))
            }
            2 => {
                asm!("out dx, ax", in("dx") port, in("ax") value as u16, options(nomem, nostack, preserves_flags))
            }
            _ => {
                asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
            }
        }
    }
}
