//! The boot memory map, from PVH or multiboot2, and its sanitising into the
//! page-aligned free RAM ranges the frame allocator may use.
//!
//! Firmware maps overlap, come unsorted and split RAM at odd addresses. The
//! rule here is conservative: a byte is free only if some entry says it is
//! usable RAM, no entry says it is anything else, and the kernel has not
//! reserved it; free ranges are then shrunk inwards to whole 4 KiB pages.

use core::fmt;
use core::ops::Range;

use crate::fixed_vec::FixedVec;
use crate::le::{u32_at, u64_at};
use crate::multiboot2::{self, Mb2Error};

/// Most regions a [`MemoryMap`] holds (real E820 maps have a few dozen).
pub const MAX_REGIONS: usize = 128;
/// The page size free ranges are aligned to.
pub const PAGE_SIZE: u64 = 4096;
/// Size of one PVH `hvm_memmap_table_entry`.
pub const PVH_ENTRY_SIZE: usize = 24;

/// What a region of physical address space is, in E820 terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RegionKind {
    /// E820 type 1: RAM the OS may use.
    Usable,
    /// E820 type 2 and every type this crate does not know: hands off.
    #[default]
    Reserved,
    /// E820 type 3: ACPI tables; RAM once the tables are no longer needed.
    AcpiReclaimable,
    /// E820 type 4: ACPI non-volatile storage, must be preserved.
    AcpiNvs,
    /// E820 type 5: memory reported defective.
    Bad,
}

impl RegionKind {
    /// The kind for an E820 / PVH / multiboot2 memory type number.
    pub const fn from_e820(entry_type: u32) -> Self {
        match entry_type {
            1 => RegionKind::Usable,
            3 => RegionKind::AcpiReclaimable,
            4 => RegionKind::AcpiNvs,
            5 => RegionKind::Bad,
            _ => RegionKind::Reserved,
        }
    }
}

/// One memory-map entry: `len` bytes from `base`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    /// Physical start address.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// What the region is.
    pub kind: RegionKind,
}

impl Region {
    /// One past the last byte, saturating at `u64::MAX` for entries that
    /// claim to run past the top of the address space.
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.len)
    }

    /// Whether `addr` lies inside the region.
    const fn contains(&self, addr: u64) -> bool {
        self.base <= addr && addr < self.end()
    }
}

/// Why a memory map could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemMapError {
    /// More than [`MAX_REGIONS`] non-empty entries.
    TooManyRegions,
    /// A PVH memory-map buffer that is not a whole number of 24-byte entries.
    BadLength,
    /// The multiboot2 information has no memory-map tag.
    NoMemoryMap,
    /// The multiboot2 information itself is malformed.
    Multiboot2(Mb2Error),
}

impl fmt::Display for MemMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemMapError::TooManyRegions => {
                write!(f, "memory map has more than {MAX_REGIONS} regions")
            }
            MemMapError::BadLength => f.write_str("PVH memory map is not whole entries"),
            MemMapError::NoMemoryMap => f.write_str("multiboot2 information has no memory map"),
            MemMapError::Multiboot2(error) => error.fmt(f),
        }
    }
}

/// The boot memory map as the firmware reported it (empty entries dropped,
/// otherwise unsorted and possibly overlapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryMap {
    regions: FixedVec<Region, MAX_REGIONS>,
}

impl MemoryMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `region`; an empty one (`len == 0`) is ignored.
    pub fn push(&mut self, region: Region) -> Result<(), MemMapError> {
        if region.len == 0 {
            return Ok(());
        }
        self.regions
            .push(region)
            .map_err(|_| MemMapError::TooManyRegions)
    }

    /// The regions, in the order pushed.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Parses PVH `hvm_memmap_table_entry` records (each 24 bytes: `addr:
    /// u64, size: u64, type: u32, reserved: u32`, little-endian), the
    /// `memmap_entries * 24` bytes at `start_info.memmap_paddr`.
    pub fn from_pvh_entries(bytes: &[u8]) -> Result<Self, MemMapError> {
        if !bytes.len().is_multiple_of(PVH_ENTRY_SIZE) {
            return Err(MemMapError::BadLength);
        }
        let mut map = Self::new();
        for entry in bytes.chunks_exact(PVH_ENTRY_SIZE) {
            map.push(Region {
                base: u64_at(entry, 0).unwrap_or(0),
                len: u64_at(entry, 8).unwrap_or(0),
                kind: RegionKind::from_e820(u32_at(entry, 16).unwrap_or(0)),
            })?;
        }
        Ok(map)
    }

    /// Parses the memory-map tag (type 6) of a whole multiboot2 information
    /// structure (see [`multiboot2::parse_tags`] for what is validated).
    pub fn from_multiboot2(mbi: &[u8]) -> Result<Self, MemMapError> {
        let tags = multiboot2::parse_tags(mbi).map_err(MemMapError::Multiboot2)?;
        let table = tags
            .filter_map(|tag| match tag {
                multiboot2::Tag::MemoryMap(table) => Some(table),
                _ => None,
            })
            .next()
            .ok_or(MemMapError::NoMemoryMap)?;
        let mut map = Self::new();
        for entry in table.entries() {
            map.push(Region {
                base: entry.base,
                len: entry.len,
                kind: RegionKind::from_e820(entry.entry_type),
            })?;
        }
        Ok(map)
    }

    /// The free RAM: usable regions minus every non-usable region and every
    /// `reserved` range (kernel image, boot modules, boot information, the
    /// first 1 MiB, ...), merged, shrunk inwards to 4 KiB pages, sorted, empty
    /// pieces dropped. Writes into `out` and returns how many it wrote.
    ///
    /// `reserved` ranges need not be sorted, aligned or disjoint. The result
    /// has at most `MAX_REGIONS + reserved.len()` ranges, so an `out` that
    /// long never overflows; a shorter `out` keeps the lowest ranges.
    pub fn free_ranges(&self, reserved: &[Range<u64>], out: &mut [Range<u64>]) -> usize {
        let mut written = 0;
        for free in self.free_intervals(reserved) {
            let Some(start) = free.start.checked_next_multiple_of(PAGE_SIZE) else {
                continue;
            };
            let end = free.end - free.end % PAGE_SIZE;
            if start >= end {
                continue;
            }
            let Some(slot) = out.get_mut(written) else {
                break;
            };
            *slot = start..end;
            written += 1;
        }
        written
    }

    /// Bytes of usable RAM no entry marks as anything else (before any
    /// kernel reservation or page alignment).
    pub fn total_usable(&self) -> u64 {
        self.free_intervals(&[]).map(|r| r.end - r.start).sum()
    }

    /// The highest end address of any region, whatever its kind (0 if the
    /// map is empty): how much physical address space to direct-map.
    pub fn max_phys(&self) -> u64 {
        self.regions.iter().map(Region::end).max().unwrap_or(0)
    }

    /// The highest end address of any usable region (0 if none): the top
    /// of RAM. Unlike [`max_phys`](Self::max_phys) this ignores reserved
    /// windows such as the 12 GiB one QEMU reports just below 1 TiB.
    pub fn max_usable_phys(&self) -> u64 {
        self.regions
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
            .map(Region::end)
            .max()
            .unwrap_or(0)
    }

    /// Maximal unaligned free intervals, in address order.
    fn free_intervals<'m>(&'m self, reserved: &'m [Range<u64>]) -> FreeIntervals<'m> {
        let mut sweep = FreeIntervals {
            regions: &self.regions,
            reserved,
            point: None,
        };
        sweep.point = sweep.first_boundary();
        sweep
    }
}

/// A sweep over every region and reservation boundary in address order.
///
/// Between two consecutive boundaries, whether an address is free cannot
/// change, so checking one address per gap is exact. Each step scans all
/// inputs: O(boundaries²) time, no memory, a few hundred thousand compares
/// at most for a full map.
struct FreeIntervals<'m> {
    regions: &'m [Region],
    reserved: &'m [Range<u64>],
    /// The boundary to continue from; `None` when the sweep is done.
    point: Option<u64>,
}

impl FreeIntervals<'_> {
    fn boundaries(&self) -> impl Iterator<Item = u64> + '_ {
        let regions = self.regions.iter().flat_map(|r| [r.base, r.end()]);
        let reserved = self.reserved.iter().flat_map(|r| [r.start, r.end]);
        regions.chain(reserved)
    }

    fn first_boundary(&self) -> Option<u64> {
        self.boundaries().min()
    }

    fn next_boundary(&self, after: u64) -> Option<u64> {
        self.boundaries().filter(|&b| b > after).min()
    }

    fn is_free(&self, addr: u64) -> bool {
        let usable = |r: &&Region| r.kind == RegionKind::Usable;
        self.regions.iter().filter(usable).any(|r| r.contains(addr))
            && !self
                .regions
                .iter()
                .any(|r| r.kind != RegionKind::Usable && r.contains(addr))
            && !self.reserved.iter().any(|r| r.contains(&addr))
    }
}

impl Iterator for FreeIntervals<'_> {
    type Item = Range<u64>;

    fn next(&mut self) -> Option<Range<u64>> {
        let mut point = self.point?;
        let mut start = None;
        loop {
            let free = self.is_free(point);
            match start {
                None if free => start = Some(point),
                Some(begin) if !free => {
                    self.point = Some(point);
                    return Some(begin..point);
                }
                _ => {}
            }
            match self.next_boundary(point) {
                Some(next) => point = next,
                None => {
                    self.point = None;
                    return start.map(|begin| begin..point);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::single_range_in_vec_init,
    reason = "expected lists of free ranges are array literals, one range or more"
)]
mod tests {
    use super::*;
    use crate::multiboot2::build::Mbi;
    use crate::testutil::Rng;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn pvh_bytes(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (base, len, kind) in entries {
            bytes.extend_from_slice(&base.to_le_bytes());
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&kind.to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
        }
        bytes
    }

    /// A QEMU-like map: low RAM, BIOS holes, RAM above 1 MiB, reserved
    /// windows below 4 GiB.
    const QEMU_PC_256M: &[(u64, u64, u32)] = &[
        (0, 0x9fc00, 1),
        (0x9fc00, 0x400, 2),
        (0xf0000, 0x10000, 2),
        (0x10_0000, 0xfee_0000, 1),
        (0xffe_0000, 0x2_0000, 2),
        (0xfeff_c000, 0x4000, 2),
        (0xfffc_0000, 0x4_0000, 2),
    ];

    fn free(map: &MemoryMap, reserved: &[Range<u64>]) -> Vec<Range<u64>> {
        let mut out = std::vec![0..0; MAX_REGIONS + reserved.len()];
        let n = map.free_ranges(reserved, &mut out);
        out.truncate(n);
        out
    }

    /// Reference answer, page by page, for maps in a small address space.
    fn free_by_pages(map: &MemoryMap, reserved: &[Range<u64>], pages: u64) -> Vec<Range<u64>> {
        let page_free = |p: u64| {
            let (start, end) = (p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
            let covers = |r: &Region| r.base <= start && end <= r.end();
            let touches = |s: u64, e: u64| s < end && start < e;
            let usable = map
                .regions()
                .iter()
                .any(|r| r.kind == RegionKind::Usable && covers(r));
            // Usable entries may tile a page between them.
            let tiled = (start..end).step_by(64).all(|a| {
                map.regions()
                    .iter()
                    .any(|r| r.kind == RegionKind::Usable && r.contains(a) && r.contains(a + 63))
            });
            (usable || tiled)
                && !map
                    .regions()
                    .iter()
                    .any(|r| r.kind != RegionKind::Usable && touches(r.base, r.end()))
                && !reserved.iter().any(|r| touches(r.start, r.end))
        };
        let mut out: Vec<Range<u64>> = Vec::new();
        for p in 0..pages {
            if page_free(p) {
                let (start, end) = (p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
                match out.last_mut() {
                    Some(last) if last.end == start => last.end = end,
                    _ => out.push(start..end),
                }
            }
        }
        out
    }

    #[test]
    fn pvh_entries_parse_into_regions() {
        let map = MemoryMap::from_pvh_entries(&pvh_bytes(QEMU_PC_256M)).unwrap();
        assert_eq!(map.regions().len(), 7);
        assert_eq!(
            map.regions()[3],
            Region {
                base: MIB,
                len: 0xfee_0000,
                kind: RegionKind::Usable
            }
        );
        assert_eq!(map.regions()[1].kind, RegionKind::Reserved);
        assert_eq!(map.max_phys(), 0x1_0000_0000);
        assert_eq!(map.total_usable(), 0x9fc00 + 0xfee_0000);
    }

    #[test]
    fn qemu_map_minus_low_mib_and_kernel_gives_two_ranges() {
        let map = MemoryMap::from_pvh_entries(&pvh_bytes(QEMU_PC_256M)).unwrap();
        let kernel = 0x10_0000..0x14_2345;
        assert_eq!(
            free(&map, &[0..MIB, kernel.clone()]),
            [0x14_3000..0xffe_0000]
        );
        assert_eq!(free(&map, &[]), [0..0x9f000, MIB..0xffe_0000]);
    }

    #[test]
    fn qemu_pvh_memory_map_fixture_gives_ram_above_the_reservations() {
        // Captured from QEMU 10 by fixtures/capture_pvh.py (`-m 256M`).
        let bytes = include_bytes!("../fixtures/qemu-pvh/memmap.bin");
        let map = MemoryMap::from_pvh_entries(bytes).unwrap();
        assert_eq!(map.regions().len(), 7);
        assert_eq!(map.max_usable_phys(), 0xffe_0000);
        assert_eq!(
            map.max_phys(),
            1 << 40,
            "QEMU reserves 0xfd_0000_0000..1 TiB"
        );
        assert_eq!(map.total_usable(), 0x9fc00 + 0xfee_0000);
        // Low 1 MiB, a 40-byte kernel at 1 MiB, the initrd QEMU placed high.
        let initrd = 0xffd_6000..0xffd_6000 + 5000;
        assert_eq!(
            free(&map, &[0..MIB, MIB..MIB + 40, initrd]),
            [MIB + 0x1000..0xffd_6000, 0xffd_8000..0xffe_0000]
        );
    }

    #[test]
    fn e820_types_map_to_kinds() {
        let kinds: Vec<_> = (0..8).map(RegionKind::from_e820).collect();
        use RegionKind::*;
        assert_eq!(
            kinds,
            [
                Reserved,
                Usable,
                Reserved,
                AcpiReclaimable,
                AcpiNvs,
                Bad,
                Reserved,
                Reserved
            ]
        );
    }

    #[test]
    fn pvh_buffer_of_partial_entries_is_rejected() {
        let mut bytes = pvh_bytes(QEMU_PC_256M);
        bytes.pop();
        assert_eq!(
            MemoryMap::from_pvh_entries(&bytes),
            Err(MemMapError::BadLength)
        );
        assert_eq!(MemoryMap::from_pvh_entries(&[]).unwrap().regions(), &[]);
    }

    #[test]
    fn too_many_regions_is_an_error_and_empty_ones_do_not_count() {
        let many: Vec<_> = (0..=MAX_REGIONS as u64)
            .map(|i| (i * 0x2000, 0x1000, 1))
            .collect();
        assert_eq!(
            MemoryMap::from_pvh_entries(&pvh_bytes(&many)),
            Err(MemMapError::TooManyRegions)
        );
        let mut with_empty: Vec<_> = many[..MAX_REGIONS].to_vec();
        with_empty.extend([(0x100_0000u64, 0u64, 1u32); 10]);
        let map = MemoryMap::from_pvh_entries(&pvh_bytes(&with_empty)).unwrap();
        assert_eq!(map.regions().len(), MAX_REGIONS);
    }

    #[test]
    fn multiboot2_memory_map_parses() {
        let mbi = Mbi::new().cmdline("x").mmap(QEMU_PC_256M).finish();
        let from_mb2 = MemoryMap::from_multiboot2(&mbi).unwrap();
        let from_pvh = MemoryMap::from_pvh_entries(&pvh_bytes(QEMU_PC_256M)).unwrap();
        assert_eq!(from_mb2, from_pvh);
    }

    #[test]
    fn multiboot2_without_memory_map_or_malformed_is_an_error() {
        let mbi = Mbi::new().cmdline("x").finish();
        assert_eq!(
            MemoryMap::from_multiboot2(&mbi),
            Err(MemMapError::NoMemoryMap)
        );
        assert_eq!(
            MemoryMap::from_multiboot2(&mbi[..mbi.len() - 1]),
            Err(MemMapError::Multiboot2(Mb2Error::Truncated))
        );
    }

    #[test]
    fn overlapping_non_usable_entry_wins_over_usable() {
        let mut map = MemoryMap::new();
        for (base, len, kind) in [
            (0, 64 * MIB, RegionKind::Usable),
            (16 * MIB, MIB, RegionKind::Reserved),
            (32 * MIB + 10, 5, RegionKind::Bad),
            (60 * MIB, 8 * MIB, RegionKind::AcpiNvs),
        ] {
            map.push(Region { base, len, kind }).unwrap();
        }
        assert_eq!(
            free(&map, &[]),
            [0..16 * MIB, 17 * MIB..32 * MIB, 32 * MIB + 4096..60 * MIB]
        );
        assert_eq!(map.total_usable(), 60 * MIB - MIB - 5);
        assert_eq!(map.max_phys(), 68 * MIB);
        assert_eq!(map.max_usable_phys(), 64 * MIB);
    }

    #[test]
    fn unsorted_adjacent_and_overlapping_usable_entries_merge() {
        let mut map = MemoryMap::new();
        // Split at an unaligned address: merging before aligning keeps the page.
        for (base, len) in [(0x5800, 0x2800), (0x1000, 0x4800), (0x3000, 0x1000)] {
            map.push(Region {
                base,
                len,
                kind: RegionKind::Usable,
            })
            .unwrap();
        }
        assert_eq!(free(&map, &[]), [0x1000..0x8000]);
        assert_eq!(map.total_usable(), 0x7000);
    }

    #[test]
    fn reserved_ranges_cut_and_unaligned_ends_shrink_inwards() {
        let mut map = MemoryMap::new();
        map.push(Region {
            base: 0x1234,
            len: 0x10_0000,
            kind: RegionKind::Usable,
        })
        .unwrap();
        let inverted = Range {
            start: 0x5_0000,
            end: 0x4_0000,
        };
        let reserved = [0x8001..0x9000, 0x2_0000..0x2_0001, inverted];
        assert_eq!(
            free(&map, &reserved),
            [0x2000..0x8000, 0x9000..0x2_0000, 0x2_1000..0x10_1000]
        );
    }

    #[test]
    fn small_output_keeps_the_lowest_ranges() {
        let map = MemoryMap::from_pvh_entries(&pvh_bytes(QEMU_PC_256M)).unwrap();
        let mut out = [const { 0..0 }; 1];
        assert_eq!(map.free_ranges(&[], &mut out), 1);
        assert_eq!(out, [0..0x9f000]);
        assert_eq!(map.free_ranges(&[], &mut []), 0);
    }

    #[test]
    fn entries_reaching_the_top_of_the_address_space_do_not_overflow() {
        let mut map = MemoryMap::new();
        map.push(Region {
            base: u64::MAX - 0x1_0000,
            len: u64::MAX,
            kind: RegionKind::Usable,
        })
        .unwrap();
        map.push(Region {
            base: u64::MAX - 5,
            len: 1,
            kind: RegionKind::Usable,
        })
        .unwrap();
        let out = free(&map, &[u64::MAX - 3..u64::MAX]);
        assert_eq!(out, [u64::MAX - 0xffff..u64::MAX - 0xfff]);
        assert_eq!(map.max_phys(), u64::MAX);
    }

    #[test]
    fn empty_map_has_nothing_free() {
        let map = MemoryMap::new();
        assert_eq!(free(&map, &[0..MIB]), []);
        assert_eq!(map.total_usable(), 0);
        assert_eq!(map.max_phys(), 0);
        assert_eq!(map.max_usable_phys(), 0);
    }

    #[test]
    fn random_maps_match_a_page_by_page_reference() {
        let mut rng = Rng::new(3);
        let pages = 64u64;
        for _ in 0..500 {
            let mut map = MemoryMap::new();
            for _ in 0..rng.below(12) {
                let base = rng.below((pages * PAGE_SIZE) as usize) as u64 & !0x3f;
                let len = rng.below((16 * PAGE_SIZE) as usize) as u64 & !0x3f;
                let kind = if rng.below(3) == 0 {
                    RegionKind::from_e820(rng.below(6) as u32)
                } else {
                    RegionKind::Usable
                };
                map.push(Region { base, len, kind }).unwrap();
            }
            let reserved: Vec<_> = (0..rng.below(4))
                .map(|_| {
                    let start = rng.below((pages * PAGE_SIZE) as usize) as u64;
                    start..start + rng.below((4 * PAGE_SIZE) as usize) as u64
                })
                .collect();
            let got = free(&map, &reserved);
            assert_eq!(
                got,
                free_by_pages(&map, &reserved, pages + 16),
                "{map:?} {reserved:?}"
            );
            assert!(
                got.windows(2).all(|w| w[0].end < w[1].start),
                "sorted, merged"
            );
        }
    }

    #[test]
    fn fuzz_random_pvh_and_multiboot2_buffers_never_panic() {
        let mut rng = Rng::new(4);
        for _ in 0..5000 {
            let mut bytes = std::vec![0u8; rng.below(8) * PVH_ENTRY_SIZE + rng.below(2)];
            rng.fill(&mut bytes);
            if let Ok(map) = MemoryMap::from_pvh_entries(&bytes) {
                let mut out = [const { 0..0 }; MAX_REGIONS];
                let n = map.free_ranges(&[0..MIB], &mut out);
                assert!(out[..n]
                    .iter()
                    .all(|r| r.start % PAGE_SIZE == 0 && r.end % PAGE_SIZE == 0));
                let _ = (map.total_usable(), map.max_phys());
            }
            let _ = MemoryMap::from_multiboot2(&bytes);
        }
    }
}
