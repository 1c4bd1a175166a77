//! The multiboot2 boot information structure (MBI) a multiboot2 loader such
//! as GRUB passes in `ebx`: `total_size: u32`, `reserved: u32`, then tags,
//! each `type: u32, size: u32, body`, each starting 8-byte aligned, ending
//! with a type-0 tag of size 8.
//!
//! [`parse_tags`] validates the whole structure before yielding anything;
//! the helpers ([`cmdline`], [`rsdp`], [`modules`], [`memory_map`]) treat a
//! malformed MBI as one without the tag. Layout: the Multiboot2
//! Specification, version 2.0, section 3.6.

use core::fmt;
use core::ops::Range;

use crate::cmdline::str_from_c_bytes;
use crate::le::u32_at;
use crate::le::u64_at;

/// The value a multiboot2 loader leaves in `eax` at the kernel entry.
pub const BOOTLOADER_MAGIC: u32 = 0x36d7_6289;
/// Tag type: end of the tag list.
pub const TAG_END: u32 = 0;
/// Tag type: kernel command line (NUL-terminated string).
pub const TAG_CMDLINE: u32 = 1;
/// Tag type: boot loader name (NUL-terminated string).
pub const TAG_BOOT_LOADER_NAME: u32 = 2;
/// Tag type: boot module (`mod_start: u32, mod_end: u32`, string).
pub const TAG_MODULE: u32 = 3;
/// Tag type: memory map (`entry_size: u32, entry_version: u32`, entries).
pub const TAG_MEMORY_MAP: u32 = 6;
/// Tag type: copy of the ACPI 1.0 RSDP.
pub const TAG_ACPI_OLD_RSDP: u32 = 14;
/// Tag type: copy of the ACPI 2.0+ RSDP.
pub const TAG_ACPI_NEW_RSDP: u32 = 15;
/// Size of the MBI's fixed header (`total_size`, `reserved`).
pub const HEADER_SIZE: usize = 8;
/// Size of a memory-map entry this parser understands (`base: u64, len: u64,
/// type: u32, reserved: u32`); larger entries are accepted, smaller are not.
pub const MEMORY_MAP_ENTRY_SIZE: usize = 24;

const TAG_HEADER_SIZE: usize = 8;
const TAG_ALIGN: usize = 8;
const MODULE_TAG_MIN_SIZE: usize = 16;
const MEMORY_MAP_TAG_HEADER_SIZE: usize = 16;

/// Why an MBI was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mb2Error {
    /// The buffer is shorter than `total_size` (or than the 8-byte header),
    /// or a tag's `size` runs past `total_size`.
    Truncated,
    /// `total_size` is below 16 bytes, too small for the header and end tag.
    BadTotalSize,
    /// A tag's `size` is below 8 (which would loop forever), the end tag's is
    /// not 8, or a module / memory-map tag is too short for its fields, or a
    /// memory map is not a whole number of entries.
    BadTagSize,
    /// A memory-map `entry_size` below 24 or not a multiple of 8.
    BadEntrySize,
    /// The tags run to `total_size` without a type-0 end tag.
    NoEndTag,
}

impl fmt::Display for Mb2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mb2Error::Truncated => "multiboot2 information truncated",
            Mb2Error::BadTotalSize => "multiboot2 total_size too small",
            Mb2Error::BadTagSize => "multiboot2 tag with a bad size",
            Mb2Error::BadEntrySize => "multiboot2 memory map with a bad entry_size",
            Mb2Error::NoEndTag => "multiboot2 information without an end tag",
        })
    }
}

/// The MBI's `total_size` from its first 8 bytes, so the kernel knows how
/// much to map or copy before calling [`parse_tags`].
pub fn total_size(header: &[u8]) -> Option<u32> {
    u32_at(header, 0)
}

/// A boot module (`module2` in GRUB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'a> {
    /// Physical address of the first byte.
    pub start: u64,
    /// Physical address one past the last byte (`mod_end` in the spec).
    pub end: u64,
    /// The module's command line (GRUB: the arguments after the file name),
    /// cut at NUL and to valid UTF-8.
    pub name: &'a str,
}

impl Module<'_> {
    /// The physical range `start..end` (empty if the loader got it inverted).
    pub fn range(&self) -> Range<u64> {
        self.start..self.end
    }
}

/// A memory-map tag, validated: `entries` is a whole number of entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryMapTag<'a> {
    /// Bytes per entry (a multiple of 8, at least 24).
    pub entry_size: u32,
    /// The entry format version (0 today).
    pub entry_version: u32,
    entries: &'a [u8],
}

/// One memory-map entry; `entry_type` uses the E820 numbering (1 available,
/// 3 ACPI reclaimable, 4 ACPI NVS, 5 bad, anything else reserved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryMapEntry {
    /// Physical start address.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// E820-style type.
    pub entry_type: u32,
}

impl<'a> MemoryMapTag<'a> {
    /// The entries, in the order the loader wrote them.
    pub fn entries(&self) -> impl Iterator<Item = MemoryMapEntry> + 'a {
        // `entry_size` was validated as >= 24 when the tag was parsed.
        let size = (self.entry_size as usize).max(MEMORY_MAP_ENTRY_SIZE);
        self.entries.chunks_exact(size).map(|entry| MemoryMapEntry {
            base: u64_at(entry, 0).unwrap_or(0),
            len: u64_at(entry, 8).unwrap_or(0),
            entry_type: u32_at(entry, 16).unwrap_or(0),
        })
    }
}

/// One decoded tag. Tags this crate does not decode come as [`Tag::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag<'a> {
    /// Type 1: the kernel command line.
    CommandLine(&'a str),
    /// Type 2: the boot loader's name.
    BootLoaderName(&'a str),
    /// Type 3: a boot module.
    Module(Module<'a>),
    /// Type 6: the memory map.
    MemoryMap(MemoryMapTag<'a>),
    /// Type 14: the RSDP bytes as ACPI 1.0 defines them (20 bytes).
    AcpiOldRsdp(&'a [u8]),
    /// Type 15: the RSDP bytes as ACPI 2.0+ defines them (`length` bytes).
    AcpiNewRsdp(&'a [u8]),
    /// Any other type, with the bytes after its 8-byte tag header.
    Other {
        /// The tag type.
        tag_type: u32,
        /// The tag body.
        body: &'a [u8],
    },
}

/// Iterator over a validated MBI's tags, end tag excluded.
#[derive(Clone, Debug)]
pub struct Tags<'a> {
    /// The MBI cut to `total_size`.
    mbi: &'a [u8],
    /// Offset of the next tag; `None` once the end tag is reached.
    offset: Option<usize>,
}

/// The raw fields of the tag at `offset`: `(type, size, next offset)`.
fn tag_at(mbi: &[u8], offset: usize) -> Result<(u32, usize, usize), Mb2Error> {
    let (Some(tag_type), Some(size)) = (u32_at(mbi, offset), u32_at(mbi, offset + 4)) else {
        return Err(Mb2Error::NoEndTag);
    };
    let size = size as usize;
    if size < TAG_HEADER_SIZE {
        return Err(Mb2Error::BadTagSize);
    }
    let end = offset.checked_add(size).ok_or(Mb2Error::Truncated)?;
    if end > mbi.len() {
        return Err(Mb2Error::Truncated);
    }
    // `end <= mbi.len()`, so aligning up cannot overflow.
    let next = end.next_multiple_of(TAG_ALIGN);
    Ok((tag_type, size, next))
}

/// Checks the fields of a tag whose body is `body` (header excluded).
fn validate_tag(tag_type: u32, size: usize, body: &[u8]) -> Result<(), Mb2Error> {
    match tag_type {
        TAG_END if size != TAG_HEADER_SIZE => Err(Mb2Error::BadTagSize),
        TAG_MODULE if size < MODULE_TAG_MIN_SIZE => Err(Mb2Error::BadTagSize),
        TAG_MEMORY_MAP => {
            if size < MEMORY_MAP_TAG_HEADER_SIZE {
                return Err(Mb2Error::BadTagSize);
            }
            let entry_size = u32_at(body, 0).ok_or(Mb2Error::BadTagSize)? as usize;
            if entry_size < MEMORY_MAP_ENTRY_SIZE || !entry_size.is_multiple_of(8) {
                return Err(Mb2Error::BadEntrySize);
            }
            if !(size - MEMORY_MAP_TAG_HEADER_SIZE).is_multiple_of(entry_size) {
                return Err(Mb2Error::BadTagSize);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Validates the MBI in `mbi` (the bytes at the address the loader passed,
/// at least `total_size` of them) and iterates over its tags.
///
/// Every tag is checked before this returns: sizes, bounds, the end tag,
/// and the fixed fields of module and memory-map tags. Tag contents are not
/// interpreted further (an RSDP copy is checked by `acpi::parse_rsdp`).
pub fn parse_tags(mbi: &[u8]) -> Result<Tags<'_>, Mb2Error> {
    let total = total_size(mbi).ok_or(Mb2Error::Truncated)? as usize;
    if total < HEADER_SIZE + TAG_HEADER_SIZE {
        return Err(Mb2Error::BadTotalSize);
    }
    let mbi = mbi.get(..total).ok_or(Mb2Error::Truncated)?;
    let mut offset = HEADER_SIZE;
    loop {
        let (tag_type, size, next) = tag_at(mbi, offset)?;
        let body = &mbi[offset + TAG_HEADER_SIZE..offset + size];
        validate_tag(tag_type, size, body)?;
        if tag_type == TAG_END {
            break;
        }
        offset = next;
    }
    Ok(Tags {
        mbi,
        offset: Some(HEADER_SIZE),
    })
}

impl<'a> Iterator for Tags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        let offset = self.offset?;
        // Validated by `parse_tags`; any surprise just ends the iteration.
        let Ok((tag_type, size, next)) = tag_at(self.mbi, offset) else {
            self.offset = None;
            return None;
        };
        let body = self.mbi.get(offset + TAG_HEADER_SIZE..offset + size)?;
        self.offset = Some(next);
        Some(match tag_type {
            TAG_END => {
                self.offset = None;
                return None;
            }
            TAG_CMDLINE => Tag::CommandLine(str_from_c_bytes(body)),
            TAG_BOOT_LOADER_NAME => Tag::BootLoaderName(str_from_c_bytes(body)),
            TAG_MODULE => Tag::Module(Module {
                start: u64::from(u32_at(body, 0)?),
                end: u64::from(u32_at(body, 4)?),
                name: str_from_c_bytes(body.get(8..)?),
            }),
            TAG_MEMORY_MAP => Tag::MemoryMap(MemoryMapTag {
                entry_size: u32_at(body, 0)?,
                entry_version: u32_at(body, 4)?,
                entries: body.get(8..)?,
            }),
            TAG_ACPI_OLD_RSDP => Tag::AcpiOldRsdp(body),
            TAG_ACPI_NEW_RSDP => Tag::AcpiNewRsdp(body),
            tag_type => Tag::Other { tag_type, body },
        })
    }
}

/// The kernel command line, if the MBI is valid and has one.
pub fn cmdline(mbi: &[u8]) -> Option<&str> {
    parse_tags(mbi).ok()?.find_map(|tag| match tag {
        Tag::CommandLine(line) => Some(line),
        _ => None,
    })
}

/// The RSDP copy, preferring the ACPI 2.0+ one (type 15) over the 1.0 one
/// (type 14); `None` if the MBI is invalid or has neither.
pub fn rsdp(mbi: &[u8]) -> Option<&[u8]> {
    let mut old = None;
    for tag in parse_tags(mbi).ok()? {
        match tag {
            Tag::AcpiNewRsdp(bytes) => return Some(bytes),
            Tag::AcpiOldRsdp(bytes) if old.is_none() => old = Some(bytes),
            _ => {}
        }
    }
    old
}

/// The boot modules in MBI order; none if the MBI is invalid.
pub fn modules(mbi: &[u8]) -> impl Iterator<Item = Module<'_>> {
    parse_tags(mbi)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|tag| match tag {
            Tag::Module(module) => Some(module),
            _ => None,
        })
}

/// The first memory-map tag, if the MBI is valid and has one.
pub fn memory_map(mbi: &[u8]) -> Option<MemoryMapTag<'_>> {
    parse_tags(mbi).ok()?.find_map(|tag| match tag {
        Tag::MemoryMap(map) => Some(map),
        _ => None,
    })
}

/// Builds MBI byte buffers for tests (here and in `memmap`).
#[cfg(test)]
pub(crate) mod build {
    use std::vec::Vec;

    /// An MBI under construction: header placeholder plus appended tags.
    pub(crate) struct Mbi(pub(crate) Vec<u8>);

    impl Mbi {
        pub(crate) fn new() -> Self {
            Mbi(std::vec![0; 8])
        }

        /// Appends a tag with `body`, padding to 8 bytes.
        pub(crate) fn tag(mut self, tag_type: u32, body: &[u8]) -> Self {
            let size = 8 + body.len() as u32;
            self.0.extend_from_slice(&tag_type.to_le_bytes());
            self.0.extend_from_slice(&size.to_le_bytes());
            self.0.extend_from_slice(body);
            while !self.0.len().is_multiple_of(8) {
                self.0.push(0);
            }
            self
        }

        pub(crate) fn cmdline(self, line: &str) -> Self {
            let mut body = line.as_bytes().to_vec();
            body.push(0);
            self.tag(super::TAG_CMDLINE, &body)
        }

        pub(crate) fn module(self, start: u32, end: u32, name: &str) -> Self {
            let mut body = Vec::new();
            body.extend_from_slice(&start.to_le_bytes());
            body.extend_from_slice(&end.to_le_bytes());
            body.extend_from_slice(name.as_bytes());
            body.push(0);
            self.tag(super::TAG_MODULE, &body)
        }

        /// A memory map with 24-byte entries `(base, len, type)`.
        pub(crate) fn mmap(self, entries: &[(u64, u64, u32)]) -> Self {
            let mut body = Vec::new();
            body.extend_from_slice(&24u32.to_le_bytes());
            body.extend_from_slice(&0u32.to_le_bytes());
            for (base, len, kind) in entries {
                body.extend_from_slice(&base.to_le_bytes());
                body.extend_from_slice(&len.to_le_bytes());
                body.extend_from_slice(&kind.to_le_bytes());
                body.extend_from_slice(&0u32.to_le_bytes());
            }
            self.tag(super::TAG_MEMORY_MAP, &body)
        }

        /// Appends the end tag and fills in `total_size`.
        pub(crate) fn finish(self) -> Vec<u8> {
            let mut bytes = self.tag(super::TAG_END, &[]).0;
            let total = bytes.len() as u32;
            bytes[..4].copy_from_slice(&total.to_le_bytes());
            bytes
        }
    }
}

#[cfg(test)]
mod tests {
    use super::build::Mbi;
    use super::*;
    use crate::testutil::Rng;
    use std::vec::Vec;

    const RSDP_V1: &[u8] = include_bytes!("../fixtures/qemu-pc-smp4/rsdp.bin");

    fn grub_like() -> Vec<u8> {
        Mbi::new()
            .cmdline("loglevel=debug poweroff")
            .tag(TAG_BOOT_LOADER_NAME, b"GRUB 2.06\0")
            .module(0x20_0000, 0x20_1234, "root-task")
            .module(0x30_0000, 0x30_0100, "")
            .mmap(&[
                (0, 0x9_fc00, 1),
                (0x10_0000, 0x7ee_0000, 1),
                (0xfffc_0000, 0x4_0000, 2),
            ])
            .tag(TAG_ACPI_OLD_RSDP, RSDP_V1)
            .tag(21, &[1, 2, 3, 4])
            .finish()
    }

    #[test]
    fn tags_of_a_grub_like_mbi_decode_in_order() {
        let mbi = grub_like();
        let tags: Vec<_> = parse_tags(&mbi).unwrap().collect();
        assert_eq!(tags.len(), 7);
        assert_eq!(tags[0], Tag::CommandLine("loglevel=debug poweroff"));
        assert_eq!(tags[1], Tag::BootLoaderName("GRUB 2.06"));
        assert!(matches!(
            tags[2],
            Tag::Module(Module {
                start: 0x20_0000,
                ..
            })
        ));
        assert!(matches!(tags[4], Tag::MemoryMap(_)));
        assert_eq!(tags[5], Tag::AcpiOldRsdp(RSDP_V1));
        assert_eq!(
            tags[6],
            Tag::Other {
                tag_type: 21,
                body: &[1, 2, 3, 4]
            }
        );
        assert_eq!(total_size(&mbi), Some(mbi.len() as u32));
    }

    #[test]
    fn helpers_find_cmdline_modules_memory_map_and_rsdp() {
        let mbi = grub_like();
        assert_eq!(cmdline(&mbi), Some("loglevel=debug poweroff"));
        let mods: Vec<_> = modules(&mbi).collect();
        assert_eq!(mods.len(), 2);
        assert_eq!(mods[0].range(), 0x20_0000..0x20_1234);
        assert_eq!(mods[0].name, "root-task");
        assert_eq!(mods[1].name, "");
        let map = memory_map(&mbi).unwrap();
        assert_eq!((map.entry_size, map.entry_version), (24, 0));
        let entries: Vec<_> = map.entries().collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[1],
            MemoryMapEntry {
                base: 0x10_0000,
                len: 0x7ee_0000,
                entry_type: 1
            }
        );
        assert_eq!(rsdp(&mbi), Some(RSDP_V1));
    }

    #[test]
    fn new_rsdp_is_preferred_over_old() {
        let new = [0xAAu8; 36];
        let mbi = Mbi::new()
            .tag(TAG_ACPI_OLD_RSDP, RSDP_V1)
            .tag(TAG_ACPI_NEW_RSDP, &new)
            .finish();
        assert_eq!(rsdp(&mbi), Some(&new[..]));
    }

    #[test]
    fn minimal_mbi_has_no_tags() {
        let mbi = Mbi::new().finish();
        assert_eq!(mbi.len(), 16);
        assert_eq!(parse_tags(&mbi).unwrap().count(), 0);
        assert_eq!(cmdline(&mbi), None);
        assert_eq!(rsdp(&mbi), None);
        assert_eq!(modules(&mbi).count(), 0);
        assert_eq!(memory_map(&mbi), None);
    }

    #[test]
    fn larger_memory_map_entries_are_accepted() {
        let mut body = Vec::new();
        body.extend_from_slice(&32u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        for base in [0u64, 0x10_0000] {
            body.extend_from_slice(&base.to_le_bytes());
            body.extend_from_slice(&0x1000u64.to_le_bytes());
            body.extend_from_slice(&1u32.to_le_bytes());
            body.extend_from_slice(&[0xEE; 12]);
        }
        let mbi = Mbi::new().tag(TAG_MEMORY_MAP, &body).finish();
        let map = memory_map(&mbi).unwrap();
        let bases: Vec<_> = map.entries().map(|e| e.base).collect();
        assert_eq!(bases, [0, 0x10_0000]);
    }

    #[test]
    fn malformed_headers_are_rejected() {
        assert_eq!(parse_tags(&[]).unwrap_err(), Mb2Error::Truncated);
        assert_eq!(parse_tags(&[16, 0, 0]).unwrap_err(), Mb2Error::Truncated);
        let mut mbi = Mbi::new().finish();
        mbi[0] = 8;
        assert_eq!(parse_tags(&mbi).unwrap_err(), Mb2Error::BadTotalSize);
        mbi[0] = 24;
        assert_eq!(parse_tags(&mbi).unwrap_err(), Mb2Error::Truncated);
    }

    #[test]
    fn missing_end_tag_is_rejected() {
        let mut mbi = Mbi::new().cmdline("x").finish();
        let len = mbi.len() - 8;
        mbi.truncate(len);
        mbi[..4].copy_from_slice(&(len as u32).to_le_bytes());
        assert_eq!(parse_tags(&mbi).unwrap_err(), Mb2Error::NoEndTag);
        assert_eq!(cmdline(&mbi), None);
    }

    #[test]
    fn zero_and_small_tag_sizes_are_rejected() {
        for size in [0u32, 1, 7] {
            let mut mbi = Mbi::new().cmdline("x").finish();
            mbi[12..16].copy_from_slice(&size.to_le_bytes());
            assert_eq!(
                parse_tags(&mbi).unwrap_err(),
                Mb2Error::BadTagSize,
                "size {size}"
            );
        }
        let mut mbi = Mbi::new().finish();
        mbi[12] = 16; // end tag claiming 16 bytes
        mbi[0] = 24;
        mbi.extend_from_slice(&[0; 8]);
        assert_eq!(parse_tags(&mbi).unwrap_err(), Mb2Error::BadTagSize);
    }

    #[test]
    fn tag_size_past_total_size_is_rejected() {
        let mut mbi = Mbi::new().cmdline("hello").finish();
        mbi[12..16].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        assert_eq!(parse_tags(&mbi).unwrap_err(), Mb2Error::Truncated);
    }

    #[test]
    fn short_module_and_memory_map_tags_are_rejected() {
        let mbi = Mbi::new().tag(TAG_MODULE, &[0; 4]).finish();
        assert_eq!(parse_tags(&mbi).unwrap_err(), Mb2Error::BadTagSize);
        let mbi = Mbi::new().tag(TAG_MEMORY_MAP, &[24, 0, 0, 0]).finish();
        assert_eq!(parse_tags(&mbi).unwrap_err(), Mb2Error::BadTagSize);
        assert_eq!(modules(&mbi).count(), 0);
    }

    #[test]
    fn bad_memory_map_entry_sizes_are_rejected() {
        for entry_size in [0u32, 8, 16, 20, 28] {
            let mut body = std::vec![0u8; 8 + 2 * entry_size as usize];
            body[..4].copy_from_slice(&entry_size.to_le_bytes());
            let mbi = Mbi::new().tag(TAG_MEMORY_MAP, &body).finish();
            assert_eq!(
                parse_tags(&mbi).unwrap_err(),
                Mb2Error::BadEntrySize,
                "entry_size {entry_size}"
            );
        }
        let mut body = std::vec![0u8; 8 + 24 + 8];
        body[0] = 24;
        let mbi = Mbi::new().tag(TAG_MEMORY_MAP, &body).finish();
        assert_eq!(parse_tags(&mbi).unwrap_err(), Mb2Error::BadTagSize);
    }

    #[test]
    fn every_truncation_of_a_valid_mbi_errors_without_panic() {
        let mbi = grub_like();
        for len in 0..mbi.len() {
            // Keep total_size: the buffer is shorter than it claims.
            assert_eq!(
                parse_tags(&mbi[..len]).unwrap_err(),
                Mb2Error::Truncated,
                "len {len}"
            );
            // Shrink total_size to match: the tag list is cut short.
            let mut cut = mbi[..len].to_vec();
            if cut.len() >= 4 {
                cut[..4].copy_from_slice(&(len as u32).to_le_bytes());
                assert!(parse_tags(&cut).is_err(), "len {len}");
            }
        }
    }

    #[test]
    fn fuzz_random_and_mutated_mbis_never_panic() {
        let valid = grub_like();
        let mut rng = Rng::new(2);
        for round in 0..20_000 {
            let mut buf = if round % 2 == 0 {
                let mut buf = std::vec![0u8; rng.below(256)];
                rng.fill(&mut buf);
                if buf.len() >= 4 && rng.below(2) == 0 {
                    let total = rng.below(buf.len() + 16) as u32;
                    buf[..4].copy_from_slice(&total.to_le_bytes());
                }
                buf
            } else {
                let mut buf = valid.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(buf.len());
                    buf[at] = rng.byte();
                }
                buf
            };
            if rng.below(4) == 0 {
                let len = rng.below(buf.len() + 1);
                buf.truncate(len);
            }
            if let Ok(tags) = parse_tags(&buf) {
                for tag in tags {
                    if let Tag::MemoryMap(map) = tag {
                        let _ = map.entries().count();
                    }
                }
            }
            let _ = (
                cmdline(&buf),
                rsdp(&buf),
                modules(&buf).count(),
                memory_map(&buf),
            );
        }
    }
}
