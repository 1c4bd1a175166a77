//! Port I/O on behalf of I/O-port capabilities (the capability check is the
//! caller's; this only performs the access).

/// Reads `width` (1, 2 or 4) bytes from `port`.
pub fn read(port: u16, width: u8) -> u32 {
    // SAFETY: the kernel checked the caller's I/O-port capability covers
    // these ports; reading a port has no memory-safety effect on the kernel.
    unsafe {
        match width {
            1 => u32::from(x86::io::inb(port)),
            2 => u32::from(x86::io::inw(port)),
            _ => x86::io::inl(port),
        }
    }
}

/// Writes `width` (1, 2 or 4) bytes of `value` to `port`.
pub fn write(port: u16, width: u8, value: u32) {
    // SAFETY: as for `read`: the capability grants these ports to the caller.
    unsafe {
        match width {
            1 => x86::io::outb(port, value as u8),
            2 => x86::io::outw(port, value as u16),
            _ => x86::io::outl(port, value),
        }
    }
}
