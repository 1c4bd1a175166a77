//! The test guests and their initial CPU state. Each image is a flat binary
//! assembled from `guests/*.S` by build.rs and loaded at [`LOAD_ADDRESS`];
//! the VMM sets up 16-bit real mode, 32-bit protected mode (flat segments)
//! or 64-bit long mode (identity-mapped first 2 MiB) before the first entry.

use alloc::vec::Vec;
use tarn_ipc_schema::vcpu::{attributes, Reg, Segment, REGISTER_COUNT};
use x86::controlregs::{Cr0, Cr4};

/// Where every image is loaded (guest-physical) and starts.
pub const LOAD_ADDRESS: u64 = 0x8000;
/// Guest RAM: `0..GUEST_RAM_BYTES` (4 KiB frames).
pub const GUEST_RAM_BYTES: u64 = 256 * 1024;
/// Initial stack pointer (top of RAM).
pub const STACK_TOP: u64 = GUEST_RAM_BYTES;
/// Long mode: PML4, PDPT and PD at these guest-physical addresses.
pub const PAGE_TABLES: [u64; 3] = [0x1000, 0x2000, 0x3000];

/// How a guest starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 16-bit real mode, CS = DS = SS = 0.
    Real,
    /// 32-bit protected mode, flat 4 GiB segments, paging off.
    Protected,
    /// 64-bit long mode, the first 2 MiB identity-mapped with one large page.
    Long,
}

/// The guests built into the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guest {
    /// Prints a line in real mode and halts.
    Real16,
    /// Prints a line in protected mode and halts.
    Prot32,
    /// Spins in long mode and reports progress by hypercall.
    Long64,
    /// Sleeps in HLT between timer interrupts (PIT at 18.2 Hz) for 20 ticks.
    Idle16,
    /// Hostile: triple faults.
    Triple16,
    /// Hostile: an endless stream of port writes (an exit storm).
    Storm16,
    /// Hostile: writes outside its memory.
    Outside32,
    /// Times port-write round trips through the VMM (the vmexit benchmark).
    Bench64,
    /// Takes timer interrupts only with IF set and outside the STI and MOV
    /// SS shadows, across many exits with interrupts off.
    Irqoff16,
    /// Takes each timer interrupt once: none inside its handler, which
    /// runs two tick periods with interrupts off and no exits.
    Irqonce16,
}

impl Guest {
    /// Every guest, for name lookup.
    pub const ALL: [Guest; 10] = [
        Guest::Real16,
        Guest::Prot32,
        Guest::Long64,
        Guest::Idle16,
        Guest::Triple16,
        Guest::Storm16,
        Guest::Outside32,
        Guest::Bench64,
        Guest::Irqoff16,
        Guest::Irqonce16,
    ];

    /// The name used on the command line (`vmtest=real16,prot32`).
    pub fn name(self) -> &'static str {
        match self {
            Guest::Real16 => "real16",
            Guest::Prot32 => "prot32",
            Guest::Long64 => "long64",
            Guest::Idle16 => "idle16",
            Guest::Triple16 => "triple16",
            Guest::Storm16 => "storm16",
            Guest::Outside32 => "outside32",
            Guest::Bench64 => "bench64",
            Guest::Irqoff16 => "irqoff16",
            Guest::Irqonce16 => "irqonce16",
        }
    }

    /// Looks a guest up by name.
    pub fn from_name(name: &str) -> Option<Guest> {
        Guest::ALL.into_iter().find(|g| g.name() == name)
    }

    /// The flat image.
    pub fn image(self) -> &'static [u8] {
        match self {
            Guest::Real16 => include_bytes!(concat!(env!("OUT_DIR"), "/real16.bin")),
            Guest::Prot32 => include_bytes!(concat!(env!("OUT_DIR"), "/prot32.bin")),
            Guest::Long64 => include_bytes!(concat!(env!("OUT_DIR"), "/long64.bin")),
            Guest::Idle16 => include_bytes!(concat!(env!("OUT_DIR"), "/idle16.bin")),
            Guest::Triple16 => include_bytes!(concat!(env!("OUT_DIR"), "/triple16.bin")),
            Guest::Storm16 => include_bytes!(concat!(env!("OUT_DIR"), "/storm16.bin")),
            Guest::Outside32 => include_bytes!(concat!(env!("OUT_DIR"), "/outside32.bin")),
            Guest::Bench64 => include_bytes!(concat!(env!("OUT_DIR"), "/bench64.bin")),
            Guest::Irqoff16 => include_bytes!(concat!(env!("OUT_DIR"), "/irqoff16.bin")),
            Guest::Irqonce16 => include_bytes!(concat!(env!("OUT_DIR"), "/irqonce16.bin")),
        }
    }

    /// The mode it starts in.
    pub fn mode(self) -> Mode {
        match self {
            Guest::Real16
            | Guest::Idle16
            | Guest::Triple16
            | Guest::Storm16
            | Guest::Irqoff16
            | Guest::Irqonce16 => Mode::Real,
            Guest::Prot32 | Guest::Outside32 => Mode::Protected,
            Guest::Long64 | Guest::Bench64 => Mode::Long,
        }
    }
}

/// One segment register's initial value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentState {
    /// Which register.
    pub segment: Segment,
    /// Selector.
    pub selector: u64,
    /// Base.
    pub base: u64,
    /// Limit.
    pub limit: u64,
    /// Packed attributes.
    pub attributes: u64,
}

/// Everything the VMM writes before the first entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialState {
    /// Segment registers to set.
    pub segments: Vec<SegmentState>,
    /// The register file.
    pub registers: [u64; REGISTER_COUNT],
    /// Memory to write besides the image: (guest-physical page, its bytes).
    pub pages: Vec<(u64, [u8; 4096])>,
}

const CR0_PE: u64 = Cr0::CR0_PROTECTED_MODE.bits() as u64;
const CR0_ET: u64 = Cr0::CR0_EXTENSION_TYPE.bits() as u64;
const CR0_PG: u64 = Cr0::CR0_ENABLE_PAGING.bits() as u64;
const CR4_PAE: u64 = Cr4::CR4_ENABLE_PAE.bits() as u64;
/// EFER.LME and EFER.LMA (the `x86` crate names the MSR, not its bits).
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

fn segment(segment: Segment, base: u64, limit: u64, attributes: u64) -> SegmentState {
    SegmentState {
        segment,
        selector: 0,
        base,
        limit,
        attributes,
    }
}

/// The state `guest` starts in. `vmx` selects the hypercall instruction the
/// guests use (RSI != 0: VMCALL).
pub fn initial_state(guest: Guest, vmx: bool) -> InitialState {
    let mut registers = [0u64; REGISTER_COUNT];
    registers[Reg::Rip as usize] = LOAD_ADDRESS;
    registers[Reg::Rsp as usize] = STACK_TOP;
    registers[Reg::Rflags as usize] = 2;
    registers[Reg::Rsi as usize] = u64::from(vmx);
    let data_segments = [
        Segment::Ds,
        Segment::Es,
        Segment::Ss,
        Segment::Fs,
        Segment::Gs,
    ];
    let mut segments = Vec::new();
    let mut pages = Vec::new();
    match guest.mode() {
        Mode::Real => {
            registers[Reg::Cr0 as usize] = CR0_ET;
            segments.push(segment(Segment::Cs, 0, 0xFFFF, attributes::CODE16));
            for s in data_segments {
                segments.push(segment(s, 0, 0xFFFF, attributes::DATA16));
            }
        }
        Mode::Protected => {
            registers[Reg::Cr0 as usize] = CR0_ET | CR0_PE;
            segments.push(segment(Segment::Cs, 0, 0xFFFF_FFFF, attributes::CODE32));
            for s in data_segments {
                segments.push(segment(s, 0, 0xFFFF_FFFF, attributes::DATA32));
            }
        }
        Mode::Long => {
            registers[Reg::Cr0 as usize] = CR0_ET | CR0_PE | CR0_PG;
            registers[Reg::Cr3 as usize] = PAGE_TABLES[0];
            registers[Reg::Cr4 as usize] = CR4_PAE;
            registers[Reg::Efer as usize] = EFER_LME | EFER_LMA;
            segments.push(segment(Segment::Cs, 0, 0xFFFF_FFFF, attributes::CODE64));
            for s in data_segments {
                segments.push(segment(s, 0, 0xFFFF_FFFF, attributes::DATA32));
            }
            // PML4[0] -> PDPT, PDPT[0] -> PD, PD[0] = 2 MiB at 0 (P|RW|PS).
            let entry = |value: u64| {
                let mut page = [0u8; 4096];
                page[..8].copy_from_slice(&value.to_le_bytes());
                page
            };
            pages.push((PAGE_TABLES[0], entry(PAGE_TABLES[1] | 0x3)));
            pages.push((PAGE_TABLES[1], entry(PAGE_TABLES[2] | 0x3)));
            pages.push((PAGE_TABLES[2], entry(0x83)));
        }
    }
    segments.push(SegmentState {
        segment: Segment::Tr,
        selector: 0,
        base: 0,
        limit: 0xFFFF,
        attributes: attributes::TSS_BUSY,
    });
    segments.push(SegmentState {
        segment: Segment::Ldtr,
        selector: 0,
        base: 0,
        limit: 0xFFFF,
        attributes: attributes::LDT,
    });
    InitialState {
        segments,
        registers,
        pages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_has_an_image_that_fits() {
        for guest in Guest::ALL {
            let image = guest.image();
            assert!(!image.is_empty(), "{guest:?}");
            assert!(LOAD_ADDRESS + image.len() as u64 <= 0x9000, "{guest:?}");
            assert_eq!(Guest::from_name(guest.name()), Some(guest));
        }
        assert_eq!(Guest::from_name("nope"), None);
    }

    #[test]
    fn long_mode_state_is_consistent() {
        let state = initial_state(Guest::Long64, false);
        let r = state.registers;
        assert_ne!(r[Reg::Cr0 as usize] & CR0_PG, 0);
        assert_ne!(r[Reg::Cr4 as usize] & CR4_PAE, 0);
        assert_eq!(r[Reg::Efer as usize], EFER_LME | EFER_LMA);
        assert_eq!(state.pages.len(), 3);
        let cs = state
            .segments
            .iter()
            .find(|s| s.segment == Segment::Cs)
            .expect("CS is set");
        assert_ne!(cs.attributes & attributes::LONG, 0);
        assert_eq!(cs.attributes & attributes::DEFAULT_32, 0);
        assert_eq!(r[Reg::Rsi as usize], 0);
        assert_eq!(
            initial_state(Guest::Long64, true).registers[Reg::Rsi as usize],
            1
        );
    }

    #[test]
    fn real_mode_state_has_paging_and_protection_off() {
        let r = initial_state(Guest::Real16, false).registers;
        assert_eq!(r[Reg::Cr0 as usize] & (CR0_PE | CR0_PG), 0);
        assert_eq!(r[Reg::Rip as usize], LOAD_ADDRESS);
    }
}
