//! What the loader told us, copied out of loader memory before the frame
//! allocator can reuse it: the command line, the memory map, the RSDP and the
//! loader's own ranges that must stay reserved until copied.

use crate::arch::paging::phys_to_virt;
use crate::arch::BootProtocol;
use core::ops::Range;
use tarn_kernel_core::memmap::MemoryMap;
use tarn_kernel_core::{acpi, multiboot2, pvh};

/// Longest kernel command line kept.
pub const CMDLINE_MAX: usize = 4096;

/// Boot information in kernel-owned memory.
pub struct BootInfo {
    /// The loader protocol.
    pub protocol: BootProtocol,
    /// The kernel command line.
    pub cmdline: &'static str,
    /// The firmware memory map.
    pub memory_map: MemoryMap,
    /// Physical address of the ACPI RSDP, if the loader or a scan found one.
    pub rsdp: Option<acpi::Rsdp>,
    /// Physical ranges the loader's data occupies (boot modules).
    pub loader_ranges: [Range<u64>; 8],
    /// How many `loader_ranges` are used.
    pub loader_range_count: usize,
}

/// Why the boot information could not be read.
#[derive(Debug)]
pub enum BootInfoError {
    /// The loader is neither PVH nor multiboot2.
    UnknownProtocol,
    /// The PVH start_info is malformed.
    Pvh(pvh::PvhError),
    /// The multiboot2 information is malformed.
    Multiboot2(multiboot2::Mb2Error),
    /// The memory map is malformed.
    MemoryMap(tarn_kernel_core::memmap::MemMapError),
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::UnknownProtocol => write!(
                f,
                "entered by an unknown loader (neither PVH nor multiboot2)"
            ),
            Self::Pvh(error) => write!(f, "malformed PVH start_info: {error:?}"),
            Self::Multiboot2(error) => write!(f, "malformed multiboot2 information: {error:?}"),
            Self::MemoryMap(error) => write!(f, "malformed memory map: {error:?}"),
        }
    }
}

static CMDLINE: spin::Once<([u8; CMDLINE_MAX], usize)> = spin::Once::new();

/// Bytes of physical memory at `phys` (boot tables map the first GiB, the
/// direct map all of it).
fn phys_bytes(phys: u64, len: usize) -> &'static [u8] {
    // SAFETY: loader structures sit in RAM below 1 GiB, mapped by the boot
    // page tables' direct map; we only read them, before any frame is reused.
    unsafe { core::slice::from_raw_parts(phys_to_virt(phys) as *const u8, len) }
}

fn c_string_at(phys: u64) -> &'static [u8] {
    let bytes = phys_bytes(phys, CMDLINE_MAX);
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(CMDLINE_MAX);
    &bytes[..len]
}

fn keep_cmdline(raw: &[u8]) -> &'static str {
    let (buffer, len) = CMDLINE.call_once(|| {
        let mut buffer = [0u8; CMDLINE_MAX];
        let len = raw.len().min(CMDLINE_MAX);
        buffer[..len].copy_from_slice(&raw[..len]);
        (buffer, len)
    });
    tarn_kernel_core::cmdline::str_from_c_bytes(&buffer[..*len])
}

/// Scans the BIOS areas for the RSDP (ACPI 5.2.5.1).
fn scan_for_rsdp() -> Option<acpi::Rsdp> {
    let ebda = u64::from(u16::from_le_bytes([
        phys_bytes(0x40E, 2)[0],
        phys_bytes(0x40E, 2)[1],
    ])) << 4;
    let mut areas = [(0xE0000u64, 0x20000usize), (0, 0)];
    if (0x80000..0xA0000).contains(&ebda) {
        areas[1] = (ebda, 1024);
    }
    areas
        .iter()
        .filter(|(_, len)| *len > 0)
        .find_map(|&(base, len)| {
            let at = acpi::find_rsdp(phys_bytes(base, len), base)?;
            acpi::parse_rsdp(phys_bytes(at, 36)).ok()
        })
}

/// Reads the boot information the loader left at `info_phys`.
pub fn gather(protocol: u32, info_phys: u32) -> Result<BootInfo, BootInfoError> {
    let protocol = BootProtocol::from_raw(protocol).ok_or(BootInfoError::UnknownProtocol)?;
    let info_phys = u64::from(info_phys);
    let mut info = BootInfo {
        protocol,
        cmdline: "",
        memory_map: MemoryMap::new(),
        rsdp: None,
        loader_ranges: [const { 0..0 }; 8],
        loader_range_count: 0,
    };
    match protocol {
        BootProtocol::Pvh => {
            let start = pvh::StartInfo::parse(phys_bytes(info_phys, pvh::START_INFO_SIZE))
                .map_err(BootInfoError::Pvh)?;
            if start.cmdline_paddr != 0 {
                info.cmdline = keep_cmdline(c_string_at(start.cmdline_paddr));
            }
            let map_bytes = phys_bytes(start.memmap_paddr, start.memmap_bytes().unwrap_or(0));
            info.memory_map =
                MemoryMap::from_pvh_entries(map_bytes).map_err(BootInfoError::MemoryMap)?;
            if start.rsdp_paddr != 0 {
                info.rsdp = acpi::parse_rsdp(phys_bytes(start.rsdp_paddr, 36)).ok();
            }
            let modlist = phys_bytes(start.modlist_paddr, start.modlist_bytes().unwrap_or(0));
            for module in pvh::modules(modlist).take(info.loader_ranges.len()) {
                info.loader_ranges[info.loader_range_count] = module.range();
                info.loader_range_count += 1;
            }
        }
        BootProtocol::Multiboot2 => {
            let header = phys_bytes(info_phys, multiboot2::HEADER_SIZE);
            let size = multiboot2::total_size(header)
                .ok_or(BootInfoError::Multiboot2(multiboot2::Mb2Error::Truncated))?;
            let mbi = phys_bytes(info_phys, size as usize);
            multiboot2::parse_tags(mbi).map_err(BootInfoError::Multiboot2)?;
            if let Some(line) = multiboot2::cmdline(mbi) {
                info.cmdline = keep_cmdline(line.as_bytes());
            }
            info.memory_map = MemoryMap::from_multiboot2(mbi).map_err(BootInfoError::MemoryMap)?;
            info.rsdp = multiboot2::rsdp(mbi).and_then(|bytes| acpi::parse_rsdp(bytes).ok());
            for module in multiboot2::modules(mbi).take(info.loader_ranges.len()) {
                info.loader_ranges[info.loader_range_count] = module.range();
                info.loader_range_count += 1;
            }
        }
    }
    if info.rsdp.is_none() {
        info.rsdp = scan_for_rsdp();
    }
    Ok(info)
}
