//! Pure VMX encodings the kernel's VMX backend uses (Intel SDM Vol. 3C and
//! 3D): control values from the capability MSRs, segment access rights, and
//! the I/O and EPT-violation exit qualifications. No hardware access here.

/// `wanted` adjusted to a VMX control capability MSR (SDM A.3): the
/// allowed 0-settings in its low half must be 1, only the allowed
/// 1-settings in its high half may be 1. Bits of `optional` are added when
/// allowed. `None` if a wanted bit is not allowed.
pub fn adjust_controls(capability: u64, wanted: u32, optional: u32) -> Option<u32> {
    let must = capability as u32;
    let may = (capability >> 32) as u32;
    let value = (wanted | must | (optional & may)) & may;
    (value & wanted == wanted && value & must == must).then_some(value)
}

/// The VMCS access-rights field of a segment (SDM 24.4.1) from the packed
/// 12-bit attributes of the vCPU ABI (access byte in bits 0..8, AVL/L/D/G
/// in 8..12): the flags move to bits 12..16; a segment that is not present
/// is marked unusable (bit 16).
pub fn access_rights(attributes: u64) -> u64 {
    const PRESENT: u64 = 1 << 7;
    if attributes & PRESENT == 0 {
        return 1 << 16;
    }
    (attributes & 0xFF) | (attributes & 0xF00) << 4
}

/// An I/O instruction's exit qualification (SDM table 28-5), decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoExit {
    /// The port.
    pub port: u16,
    /// Access size in bytes (1, 2 or 4).
    pub size: u8,
    /// IN (otherwise OUT).
    pub input: bool,
    /// INS/OUTS.
    pub string: bool,
    /// With a REP prefix.
    pub rep: bool,
}

impl IoExit {
    /// Decodes the qualification: size - 1 in bits 0..3, IN in bit 3,
    /// string 4, REP 5, port in 16..32.
    pub fn decode(qualification: u64) -> Self {
        IoExit {
            port: (qualification >> 16) as u16,
            size: (qualification & 7) as u8 + 1,
            input: qualification & 8 != 0,
            string: qualification & 16 != 0,
            rep: qualification & 32 != 0,
        }
    }
}

/// The kind of access an EPT violation's exit qualification (SDM table
/// 28-7) reports, the fetch taking precedence over the write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EptAccess {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
}

/// Decodes an EPT violation: the access, and whether the address had a
/// translation at all (bits 3..6: what it allowed; 0 = not mapped).
pub fn ept_violation(qualification: u64) -> (EptAccess, bool) {
    let kind = if qualification & 4 != 0 {
        EptAccess::Execute
    } else if qualification & 2 != 0 {
        EptAccess::Write
    } else {
        EptAccess::Read
    };
    (kind, (qualification >> 3) & 7 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjust_honours_both_halves() {
        // Must-be-1 bit 1, may-be-1 bits 0..4.
        let capability = 0x0000_000F_0000_0002;
        assert_eq!(adjust_controls(capability, 1, 0), Some(3));
        assert_eq!(adjust_controls(capability, 1 << 5, 0), None);
        assert_eq!(adjust_controls(capability, 1, 1 << 2 | 1 << 6), Some(7));
        // A must-be-1 bit that may not be 1 is an inconsistent MSR.
        assert_eq!(adjust_controls(0x0000_0001_0000_0002, 1, 0), None);
    }

    #[test]
    fn access_rights_move_the_flags() {
        assert_eq!(access_rights(0x93), 0x93);
        assert_eq!(access_rights(0xA9B), 0xA09B);
        assert_eq!(access_rights(0xC93), 0xC093);
        assert_eq!(access_rights(0x8B), 0x8B);
        assert_eq!(access_rights(0), 1 << 16);
        assert_eq!(access_rights(0x13), 1 << 16);
    }

    #[test]
    fn io_qualification() {
        // `out %al, $0x80`: size 1, OUT, immediate port.
        assert_eq!(
            IoExit::decode(0x80 << 16 | 1 << 6),
            IoExit {
                port: 0x80,
                size: 1,
                input: false,
                string: false,
                rep: false
            }
        );
        // `rep insw` from DX = 0x3F8.
        assert_eq!(
            IoExit::decode(0x3F8 << 16 | 1 << 5 | 1 << 4 | 1 << 3 | 1),
            IoExit {
                port: 0x3F8,
                size: 2,
                input: true,
                string: true,
                rep: true
            }
        );
        assert_eq!(IoExit::decode(3).size, 4);
    }

    #[test]
    fn ept_qualification() {
        assert_eq!(ept_violation(0x2), (EptAccess::Write, false));
        assert_eq!(ept_violation(0x1 | 0x8), (EptAccess::Read, true));
        assert_eq!(ept_violation(0x4 | 0x1 | 0x18), (EptAccess::Execute, true));
    }
}
