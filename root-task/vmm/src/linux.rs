//! The Linux loader: an unmodified bzImage started through the 64-bit boot
//! protocol (Linux `Documentation/arch/x86/boot.rst`), with no firmware.
//!
//! [`load`] reads the setup header, places the protected-mode kernel at its
//! preferred address (16 MiB for every distribution kernel), the initrd at
//! the top of RAM, builds the zero page (`boot_params`: the setup header
//! copied from 0x1F1, `type_of_loader`, the command line, the initrd, an
//! e820 map) and the long-mode state the protocol asks for: paging on with
//! an identity map of the first 4 GiB (2 MiB pages), a GDT with a 64-bit
//! code segment at selector 0x10 and data at 0x18, interrupts off, RSI =
//! the zero page, RIP = load address + 0x200.
//!
//! Guest-physical layout: 0x1000 GDT, 0x2000 PML4, 0x3000 PDPT,
//! 0x4000-0x7FFF four page directories, 0x10000 the zero page, 0x20000 the
//! command line; the whole first MiB is backed by RAM (Linux scans it for
//! DMI, MP and ROM tables) but 0x9F000-0x100000 is reserved in the e820 map
//! as on a PC; the kernel from 16 MiB; the initrd page-aligned at the top.

use crate::guest::{InitialState, SegmentState};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use tarn_ipc_schema::vcpu::{attributes, Reg, Segment, REGISTER_COUNT};

/// Where the GDT goes.
pub const GDT: u64 = 0x1000;
/// The PML4; the PDPT and four page directories follow it.
pub const PML4: u64 = 0x2000;
/// The zero page (`boot_params`).
pub const ZERO_PAGE: u64 = 0x1_0000;
/// The kernel command line.
pub const CMDLINE: u64 = 0x2_0000;
/// The longest command line accepted (the zero page's limit, 2 KiB, is
/// the default `cmdline_size`; the header may allow more).
pub const CMDLINE_MAX: usize = 4095;
/// Where the kernel goes when its header names no preferred address.
pub const DEFAULT_LOAD: u64 = 0x100_0000;
/// The smallest RAM a guest may have (the cloud kernel needs 72 MiB).
pub const MIN_RAM: u64 = 64 << 20;
/// Start of the reserved hole below 1 MiB (EBDA, VGA, ROM on a PC).
const LOW_RESERVED: u64 = 0x9_F000;
const HIGH_START: u64 = 0x10_0000;

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// One region of guest-physical memory the loader fills.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    /// Guest-physical address.
    pub gpa: u64,
    /// The bytes.
    pub bytes: Bytes<'a>,
}

/// A piece's bytes: built by the loader, or borrowed from an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bytes<'a> {
    /// Built here (zero page, tables, command line).
    Owned(Vec<u8>),
    /// Part of the kernel or initrd image.
    Borrowed(&'a [u8]),
}

impl Bytes<'_> {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Borrowed(s) => s,
        }
    }
}

/// A loaded Linux guest: what to write where, and the CPU state to start in.
#[derive(Clone, Debug)]
pub struct LinuxGuest<'a> {
    /// Memory contents (non-overlapping, in guest-physical order).
    pub pieces: Vec<Piece<'a>>,
    /// The boot CPU's state.
    pub state: InitialState,
    /// The boot protocol version of the image (e.g. 0x20F).
    pub protocol: u16,
    /// Where the kernel was placed.
    pub load_address: u64,
    /// Where the initrd was placed (0 = none).
    pub initrd_address: u64,
}

/// Why an image cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// Not a bzImage (no `HdrS` magic at 0x202) or truncated.
    NotBzImage,
    /// A boot protocol older than 2.12 or no 64-bit entry point.
    No64BitEntry {
        /// The header's protocol version.
        protocol: u16,
    },
    /// The kernel, its decompression space and the initrd do not fit.
    TooLittleMemory {
        /// Bytes needed at least.
        needed: u64,
        /// RAM given.
        ram: u64,
    },
    /// The command line is longer than the kernel accepts.
    CommandLineTooLong {
        /// Its length.
        length: usize,
        /// The limit.
        limit: usize,
    },
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::NotBzImage => f.write_str("not a bzImage (no HdrS setup header)"),
            LoadError::No64BitEntry { protocol } => write!(
                f,
                "boot protocol {}.{:02} has no 64-bit entry (2.12 and XLF_KERNEL_64 needed)",
                protocol >> 8,
                protocol & 0xFF
            ),
            LoadError::TooLittleMemory { needed, ram } => write!(
                f,
                "needs at least {} MiB of memory, memory= gives {} MiB",
                needed.div_ceil(1 << 20),
                ram >> 20
            ),
            LoadError::CommandLineTooLong { length, limit } => {
                write!(
                    f,
                    "command line of {length} bytes, the kernel takes {limit}"
                )
            }
        }
    }
}

fn u8_at(image: &[u8], offset: usize) -> Result<u8, LoadError> {
    image.get(offset).copied().ok_or(LoadError::NotBzImage)
}

fn u16_at(image: &[u8], offset: usize) -> Result<u16, LoadError> {
    Ok(u16::from_le_bytes([
        u8_at(image, offset)?,
        u8_at(image, offset + 1)?,
    ]))
}

fn u32_at(image: &[u8], offset: usize) -> Result<u32, LoadError> {
    Ok(u32::from(u16_at(image, offset)?) | u32::from(u16_at(image, offset + 2)?) << 16)
}

fn u64_at(image: &[u8], offset: usize) -> Result<u64, LoadError> {
    Ok(u64::from(u32_at(image, offset)?) | u64::from(u32_at(image, offset + 4)?) << 32)
}

fn put(page: &mut [u8], offset: usize, bytes: &[u8]) {
    page[offset..offset + bytes.len()].copy_from_slice(bytes);
}

/// Loads `kernel` (a bzImage) with `initrd` and `cmdline` into a guest of
/// `ram` bytes (a multiple of 2 MiB).
pub fn load<'a>(
    kernel: &'a [u8],
    initrd: Option<&'a [u8]>,
    cmdline: &str,
    ram: u64,
) -> Result<LinuxGuest<'a>, LoadError> {
    if u32_at(kernel, 0x202)? != u32::from_le_bytes(*b"HdrS") {
        return Err(LoadError::NotBzImage);
    }
    let protocol = u16_at(kernel, 0x206)?;
    let xloadflags = u16_at(kernel, 0x236)?;
    if protocol < 0x20C || xloadflags & 1 == 0 {
        return Err(LoadError::No64BitEntry { protocol });
    }
    let setup_sects = match u8_at(kernel, 0x1F1)? {
        0 => 4,
        n => usize::from(n),
    };
    let kernel_offset = (setup_sects + 1) * 512;
    if kernel_offset >= kernel.len() {
        return Err(LoadError::NotBzImage);
    }
    let protected = &kernel[kernel_offset..];
    let cmdline_limit = (u32_at(kernel, 0x238)? as usize).min(CMDLINE_MAX);
    if cmdline.len() > cmdline_limit {
        return Err(LoadError::CommandLineTooLong {
            length: cmdline.len(),
            limit: cmdline_limit,
        });
    }
    let preferred = u64_at(kernel, 0x258)?;
    let load_address = if preferred >= HIGH_START {
        preferred
    } else {
        DEFAULT_LOAD
    };
    let init_size = u64::from(u32_at(kernel, 0x260)?).max(protected.len() as u64);
    let kernel_end = load_address + init_size;
    let initrd_bytes = initrd.unwrap_or(&[]);
    let initrd_size = initrd_bytes.len() as u64;
    let initrd_max = u64::from(u32_at(kernel, 0x22C)?);
    let top = ram.min(initrd_max.saturating_add(1));
    let initrd_address = if initrd_size == 0 {
        0
    } else {
        top.saturating_sub(initrd_size) & !0xFFF
    };
    // Room to work: the decompressor's init_size, the initrd above it,
    // and some free memory for the kernel's own start.
    let needed = kernel_end + initrd_size.next_multiple_of(4096) + (16 << 20);
    if ram < needed.max(MIN_RAM) || (initrd_size != 0 && initrd_address < kernel_end) {
        return Err(LoadError::TooLittleMemory {
            needed: needed.max(MIN_RAM),
            ram,
        });
    }

    // The zero page: the setup header as the image has it, then what a
    // boot loader fills in.
    let mut zero = vec![0u8; 4096];
    let header_end = 0x202 + usize::from(u8_at(kernel, 0x201)?);
    let header_end = header_end.min(0x290).min(kernel.len());
    put(&mut zero, 0x1F1, &kernel[0x1F1..header_end]);
    zero[0x210] = 0xFF; // type_of_loader: undefined boot loader
    zero[0x211] |= 0x01; // loadflags: LOADED_HIGH
    zero[0x211] &= !0x80; // no CAN_USE_HEAP (no real-mode setup runs)
    put(&mut zero, 0x228, &(CMDLINE as u32).to_le_bytes());
    put(&mut zero, 0x218, &(initrd_address as u32).to_le_bytes());
    put(&mut zero, 0x21C, &(initrd_size as u32).to_le_bytes());
    put(
        &mut zero,
        0x0C0,
        &((initrd_address >> 32) as u32).to_le_bytes(),
    );
    put(
        &mut zero,
        0x0C4,
        &((initrd_size >> 32) as u32).to_le_bytes(),
    );
    put(&mut zero, 0x214, &(load_address as u32).to_le_bytes()); // code32_start
    let e820 = [
        (0, LOW_RESERVED, E820_RAM),
        (LOW_RESERVED, HIGH_START - LOW_RESERVED, E820_RESERVED),
        (HIGH_START, ram - HIGH_START, E820_RAM),
    ];
    zero[0x1E8] = e820.len() as u8;
    for (index, (address, size, kind)) in e820.iter().enumerate() {
        let at = 0x2D0 + index * 20;
        put(&mut zero, at, &address.to_le_bytes());
        put(&mut zero, at + 8, &size.to_le_bytes());
        put(&mut zero, at + 16, &kind.to_le_bytes());
    }

    let mut line = Vec::from(cmdline.as_bytes());
    line.push(0);

    // GDT: null, null, 64-bit code (0x10), data (0x18).
    let mut gdt = vec![0u8; 32];
    put(&mut gdt, 16, &0x00AF_9B00_0000_FFFFu64.to_le_bytes());
    put(&mut gdt, 24, &0x00CF_9300_0000_FFFFu64.to_le_bytes());

    // Identity map of 4 GiB: PML4 -> PDPT -> 4 page directories of 2 MiB pages.
    let pdpt = PML4 + 0x1000;
    let first_pd = PML4 + 0x2000;
    let mut tables = vec![0u8; 6 * 4096];
    put(&mut tables, 0, &(pdpt | 0x3).to_le_bytes());
    for gib in 0..4u64 {
        let pd = first_pd + gib * 0x1000;
        put(
            &mut tables,
            0x1000 + gib as usize * 8,
            &(pd | 0x3).to_le_bytes(),
        );
        for entry in 0..512u64 {
            let address = (gib << 30) | (entry << 21);
            let at = 0x2000 + (gib as usize * 4096) + entry as usize * 8;
            put(&mut tables, at, &(address | 0x83).to_le_bytes());
        }
    }

    let mut pieces = vec![
        Piece {
            gpa: GDT,
            bytes: Bytes::Owned(gdt),
        },
        Piece {
            gpa: PML4,
            bytes: Bytes::Owned(tables),
        },
        Piece {
            gpa: ZERO_PAGE,
            bytes: Bytes::Owned(zero),
        },
        Piece {
            gpa: CMDLINE,
            bytes: Bytes::Owned(line),
        },
        Piece {
            gpa: load_address,
            bytes: Bytes::Borrowed(protected),
        },
    ];
    if initrd_size != 0 {
        pieces.push(Piece {
            gpa: initrd_address,
            bytes: Bytes::Borrowed(initrd_bytes),
        });
    }

    Ok(LinuxGuest {
        pieces,
        state: entry_state(load_address),
        protocol,
        load_address,
        initrd_address,
    })
}

/// The boot CPU's state at the 64-bit entry of a kernel loaded at
/// `load_address` (with the tables and zero page [`load`] builds).
pub fn entry_state(load_address: u64) -> InitialState {
    let mut registers = [0u64; REGISTER_COUNT];
    registers[Reg::Rip as usize] = load_address + 0x200;
    registers[Reg::Rsi as usize] = ZERO_PAGE;
    registers[Reg::Rflags as usize] = 2;
    registers[Reg::Cr0 as usize] = 1 | 1 << 4 | 1 << 5 | 1 << 31; // PE ET NE PG
    registers[Reg::Cr3 as usize] = PML4;
    registers[Reg::Cr4 as usize] = 1 << 5; // PAE
    registers[Reg::Efer as usize] = 1 << 8 | 1 << 10; // LME LMA
    let flat = |segment, selector, attributes| SegmentState {
        segment,
        selector,
        base: 0,
        limit: 0xFFFF_FFFF,
        attributes,
    };
    let mut segments = vec![flat(Segment::Cs, 0x10, attributes::CODE64)];
    for s in [
        Segment::Ds,
        Segment::Es,
        Segment::Ss,
        Segment::Fs,
        Segment::Gs,
    ] {
        segments.push(flat(s, 0x18, attributes::DATA32));
    }
    segments.push(SegmentState {
        segment: Segment::Gdtr,
        selector: 0,
        base: GDT,
        limit: 31,
        attributes: 0,
    });
    segments.push(SegmentState {
        segment: Segment::Idtr,
        selector: 0,
        base: 0,
        limit: 0,
        attributes: 0,
    });
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
        pages: Vec::new(),
    }
}

/// The command line the guest gets: the configured one, plus the TSC
/// frequency (`tsc_early_khz=`, `tsc=reliable`: without them Linux has no
/// clock source but jiffies) and `console=ttyS0` unless already given.
pub fn command_line(configured: &str, tsc_khz: u64) -> String {
    let mut line = String::from(configured.trim());
    let has = |key: &str| configured.split_whitespace().any(|w| w.starts_with(key));
    let mut add = |word: String| {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    };
    if !has("console=") {
        add(String::from("console=ttyS0"));
    }
    if !has("tsc_early_khz=") {
        add(format!("tsc_early_khz={tsc_khz}"));
    }
    if !has("tsc=") {
        add(String::from("tsc=reliable"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic bzImage: setup header with protocol 2.15, 64-bit entry,
    /// 4 setup sectors, and `body` as the protected-mode kernel.
    fn image(protocol: u16, xloadflags: u16, body: &[u8]) -> Vec<u8> {
        let mut image = vec![0u8; 5 * 512];
        image[0x1F1] = 4;
        image[0x201] = 0x6A; // jump: header to 0x26C
        put(&mut image, 0x202, b"HdrS");
        put(&mut image, 0x206, &protocol.to_le_bytes());
        put(&mut image, 0x22C, &0x7FFF_FFFFu32.to_le_bytes());
        put(&mut image, 0x236, &xloadflags.to_le_bytes());
        put(&mut image, 0x238, &2047u32.to_le_bytes());
        put(&mut image, 0x258, &0x100_0000u64.to_le_bytes());
        put(&mut image, 0x260, &(8u32 << 20).to_le_bytes());
        image.extend_from_slice(body);
        image
    }

    fn piece<'a>(guest: &'a LinuxGuest, gpa: u64) -> &'a [u8] {
        guest
            .pieces
            .iter()
            .find(|p| p.gpa == gpa)
            .expect("piece")
            .bytes
            .as_slice()
    }

    #[test]
    fn zero_page_and_entry_state() {
        let kernel = image(0x20F, 1, b"KERNEL");
        let initrd = [7u8; 5000];
        let guest = load(&kernel, Some(&initrd), "console=ttyS0 quiet", 128 << 20).unwrap();
        assert_eq!(guest.load_address, 0x100_0000);
        assert_eq!(piece(&guest, 0x100_0000), b"KERNEL");
        assert_eq!(guest.initrd_address, (128 << 20) - 8192);
        assert_eq!(piece(&guest, guest.initrd_address), &initrd[..]);
        let zero = piece(&guest, ZERO_PAGE);
        assert_eq!(&zero[0x202..0x206], b"HdrS");
        assert_eq!(zero[0x210], 0xFF);
        assert_eq!(zero[0x211] & 1, 1);
        assert_eq!(u32_at(zero, 0x228).unwrap() as u64, CMDLINE);
        assert_eq!(u32_at(zero, 0x218).unwrap() as u64, guest.initrd_address);
        assert_eq!(u32_at(zero, 0x21C).unwrap(), 5000);
        assert_eq!(zero[0x1E8], 3);
        // The last e820 entry: RAM from 1 MiB to the end.
        assert_eq!(u64_at(zero, 0x2D0 + 40).unwrap(), 0x10_0000);
        assert_eq!(u64_at(zero, 0x2D0 + 48).unwrap(), (128 << 20) - 0x10_0000);
        assert_eq!(u32_at(zero, 0x2D0 + 56).unwrap(), 1);
        assert_eq!(piece(&guest, CMDLINE), b"console=ttyS0 quiet\0");
        let r = &guest.state.registers;
        assert_eq!(r[Reg::Rip as usize], 0x100_0200);
        assert_eq!(r[Reg::Rsi as usize], ZERO_PAGE);
        assert_eq!(r[Reg::Rflags as usize] & (1 << 9), 0, "interrupts off");
        assert_eq!(r[Reg::Efer as usize] & (1 << 10), 1 << 10, "long mode");
        let cs = guest.state.segments[0];
        assert_eq!((cs.segment, cs.selector), (Segment::Cs, 0x10));
        // The identity map covers the kernel: PD entry 8 maps 16 MiB.
        let tables = piece(&guest, PML4);
        assert_eq!(u64_at(tables, 0x2000 + 8 * 8).unwrap(), 0x100_0000 | 0x83);
        let gdt = piece(&guest, GDT);
        assert_eq!(u64_at(gdt, 16).unwrap() >> 40 & 0xFF, 0x9B);
    }

    #[test]
    fn bad_images_and_sizes_are_refused() {
        assert_eq!(
            load(&[0u8; 4096], None, "", 128 << 20).unwrap_err(),
            LoadError::NotBzImage
        );
        assert_eq!(
            load(&[], None, "", 128 << 20).unwrap_err(),
            LoadError::NotBzImage
        );
        let old = image(0x20A, 0, b"K");
        assert_eq!(
            load(&old, None, "", 128 << 20).unwrap_err(),
            LoadError::No64BitEntry { protocol: 0x20A }
        );
        let kernel = image(0x20F, 1, b"K");
        assert!(matches!(
            load(&kernel, None, "", 16 << 20),
            Err(LoadError::TooLittleMemory { .. })
        ));
        let long = "x".repeat(3000);
        assert_eq!(
            load(&kernel, None, &long, 128 << 20).unwrap_err(),
            LoadError::CommandLineTooLong {
                length: 3000,
                limit: 2047
            }
        );
        // A header that ends early is refused, not read past its end.
        let mut short = image(0x20F, 1, b"");
        short.truncate(0x240);
        assert_eq!(
            load(&short, None, "", 128 << 20).unwrap_err(),
            LoadError::NotBzImage
        );
    }

    #[test]
    fn command_line_gets_the_tsc_rate() {
        assert_eq!(
            command_line("quiet", 2_000_000),
            "quiet console=ttyS0 tsc_early_khz=2000000 tsc=reliable"
        );
        assert_eq!(
            command_line("console=ttyS0,115200 tsc_early_khz=5 tsc=unstable", 9),
            "console=ttyS0,115200 tsc_early_khz=5 tsc=unstable"
        );
    }

    /// The real Debian kernel, when `cargo xtask linux-fetch` has cached it.
    #[test]
    fn real_bzimage_when_cached() {
        extern crate std;
        let Some(home) = std::env::var_os("HOME") else {
            return;
        };
        let dir = std::path::Path::new(&home).join(".cache/tarn/linux");
        let Ok(kernel) = std::fs::read(dir.join("vmlinuz")) else {
            std::eprintln!("no cached kernel: skipped (cargo xtask linux-fetch)");
            return;
        };
        let guest = load(&kernel, Some(&[1, 2, 3]), "console=ttyS0", 128 << 20).unwrap();
        assert!(guest.protocol >= 0x20F, "{:#x}", guest.protocol);
        assert_eq!(guest.load_address, 0x100_0000);
        assert_eq!(guest.state.registers[Reg::Rip as usize], 0x100_0200);
    }
}
