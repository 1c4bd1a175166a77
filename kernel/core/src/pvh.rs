//! The PVH boot protocol's `hvm_start_info`, which QEMU (and Xen) pass in
//! `ebx` when entering the kernel through its `XEN_ELFNOTE_PHYS32_ENTRY`.
//!
//! Layout from Xen's `include/public/arch-x86/hvm/start_info.h`: version 0
//! is 40 bytes; version 1 adds `memmap_paddr`, `memmap_entries` and padding
//! (56 bytes). Every address is physical; 0 means "not present". The
//! structures themselves usually sit in low memory the kernel will reuse, so
//! copy what is needed before that.

use core::fmt;

use crate::le::{u32_at, u64_at};

/// `magic` of a valid start_info: "xEn3" with the 0x80 bit of "E" set.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Size of a version-1 start_info: read this many bytes at `ebx`.
pub const START_INFO_SIZE: usize = 56;
/// Size of a version-0 start_info (no memory-map fields).
pub const START_INFO_V0_SIZE: usize = 40;
/// Size of one `hvm_modlist_entry`.
pub const MODLIST_ENTRY_SIZE: usize = 32;
/// Size of one `hvm_memmap_table_entry` (see `memmap::MemoryMap::from_pvh_entries`).
pub const MEMMAP_ENTRY_SIZE: usize = 24;

/// Why a start_info was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvhError {
    /// Fewer bytes than the structure's version needs (40 for version 0,
    /// 56 for version 1 and later).
    Truncated,
    /// `magic` is not [`START_INFO_MAGIC`]; carries the value found.
    BadMagic(u32),
}

impl fmt::Display for PvhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PvhError::Truncated => f.write_str("PVH start_info truncated"),
            PvhError::BadMagic(magic) => write!(f, "PVH start_info has bad magic {magic:#x}"),
        }
    }
}

/// A validated `hvm_start_info` (the magic is checked, not kept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartInfo {
    /// Structure version (0 or 1 today; later versions are supersets).
    pub version: u32,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Number of entries at `modlist_paddr`.
    pub nr_modules: u32,
    /// Physical address of `nr_modules` [`ModlistEntry`] records (32 bytes each).
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line, 0 if none.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP, 0 if none.
    pub rsdp_paddr: u64,
    /// Physical address of the memory map (version 1+), 0 if none.
    pub memmap_paddr: u64,
    /// Number of 24-byte memory-map entries (version 1+), 0 if none.
    pub memmap_entries: u32,
}

impl StartInfo {
    /// Parses the start_info at the start of `bytes` (pass
    /// [`START_INFO_SIZE`] bytes; a version-0 structure needs only 40, and
    /// then has no memory map).
    pub fn parse(bytes: &[u8]) -> Result<StartInfo, PvhError> {
        let field32 = |offset| u32_at(bytes, offset).ok_or(PvhError::Truncated);
        let field64 = |offset| u64_at(bytes, offset).ok_or(PvhError::Truncated);
        let magic = field32(0)?;
        if magic != START_INFO_MAGIC {
            return Err(PvhError::BadMagic(magic));
        }
        let version = field32(4)?;
        if bytes.len() < START_INFO_V0_SIZE || (version >= 1 && bytes.len() < START_INFO_SIZE) {
            return Err(PvhError::Truncated);
        }
        let (memmap_paddr, memmap_entries) = if version >= 1 {
            (field64(40)?, field32(48)?)
        } else {
            (0, 0)
        };
        Ok(StartInfo {
            version,
            flags: field32(8)?,
            nr_modules: field32(12)?,
            modlist_paddr: field64(16)?,
            cmdline_paddr: field64(24)?,
            rsdp_paddr: field64(32)?,
            memmap_paddr,
            memmap_entries,
        })
    }

    /// Bytes to read at `memmap_paddr`; `None` if it would overflow `usize`.
    pub fn memmap_bytes(&self) -> Option<usize> {
        (self.memmap_entries as usize).checked_mul(MEMMAP_ENTRY_SIZE)
    }

    /// Bytes to read at `modlist_paddr`; `None` if it would overflow `usize`.
    pub fn modlist_bytes(&self) -> Option<usize> {
        (self.nr_modules as usize).checked_mul(MODLIST_ENTRY_SIZE)
    }
}

/// One `hvm_modlist_entry`: a boot module (QEMU: the `-initrd` file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModlistEntry {
    /// Physical address of the module.
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Physical address of the module's NUL-terminated command line, 0 if none.
    pub cmdline_paddr: u64,
}

impl ModlistEntry {
    /// The physical range the module occupies, saturating at the top.
    pub fn range(&self) -> core::ops::Range<u64> {
        self.paddr..self.paddr.saturating_add(self.size)
    }
}

/// The module entries in `bytes` (the [`StartInfo::modlist_bytes`] bytes at
/// `modlist_paddr`); a trailing partial entry is ignored.
pub fn modules(bytes: &[u8]) -> impl Iterator<Item = ModlistEntry> + '_ {
    bytes
        .chunks_exact(MODLIST_ENTRY_SIZE)
        .map(|entry| ModlistEntry {
            paddr: u64_at(entry, 0).unwrap_or(0),
            size: u64_at(entry, 8).unwrap_or(0),
            cmdline_paddr: u64_at(entry, 16).unwrap_or(0),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;
    use std::vec::Vec;

    fn start_info(version: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&START_INFO_MAGIC.to_le_bytes());
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes()); // flags
        bytes.extend_from_slice(&1u32.to_le_bytes()); // nr_modules
        bytes.extend_from_slice(&0x6000u64.to_le_bytes()); // modlist
        bytes.extend_from_slice(&0x7000u64.to_le_bytes()); // cmdline
        bytes.extend_from_slice(&0xf_5240u64.to_le_bytes()); // rsdp
        bytes.extend_from_slice(&0x8000u64.to_le_bytes()); // memmap
        bytes.extend_from_slice(&7u32.to_le_bytes()); // memmap_entries
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes
    }

    #[test]
    fn version_1_start_info_parses_every_field() {
        let info = StartInfo::parse(&start_info(1)).unwrap();
        assert_eq!(
            info,
            StartInfo {
                version: 1,
                flags: 0,
                nr_modules: 1,
                modlist_paddr: 0x6000,
                cmdline_paddr: 0x7000,
                rsdp_paddr: 0xf_5240,
                memmap_paddr: 0x8000,
                memmap_entries: 7,
            }
        );
        assert_eq!(info.memmap_bytes(), Some(7 * 24));
        assert_eq!(info.modlist_bytes(), Some(32));
        assert_eq!(START_INFO_SIZE, start_info(1).len());
    }

    #[test]
    fn qemu_pvh_fixture_parses_and_its_sizes_agree() {
        // Captured from QEMU 10 by fixtures/capture_pvh.py; see fixtures/README.md.
        let info = StartInfo::parse(include_bytes!("../fixtures/qemu-pvh/start_info.bin")).unwrap();
        assert_eq!(info.version, 1);
        assert_eq!(info.nr_modules, 1);
        assert_eq!(info.memmap_entries, 7);
        assert_eq!(info.rsdp_paddr, 0xf_5250);
        assert!(info.cmdline_paddr != 0 && info.modlist_paddr != 0 && info.memmap_paddr != 0);
        let memmap = include_bytes!("../fixtures/qemu-pvh/memmap.bin");
        let modlist = include_bytes!("../fixtures/qemu-pvh/modlist.bin");
        assert_eq!(info.memmap_bytes(), Some(memmap.len()));
        assert_eq!(info.modlist_bytes(), Some(modlist.len()));
        let initrd: Vec<_> = modules(modlist).collect();
        assert_eq!(initrd.len(), 1);
        assert_eq!(initrd[0].size, 5000, "the -initrd file's size");
        assert_eq!(initrd[0].range(), 0xffd_6000..0xffd_6000 + 5000);
        let line =
            crate::cmdline::str_from_c_bytes(include_bytes!("../fixtures/qemu-pvh/cmdline.bin"));
        let args = crate::cmdline::KernelArgs::parse(line, |w| panic!("{w}"));
        assert!(args.poweroff);
        assert_eq!(args.loglevel, crate::cmdline::LogLevel::Debug);
    }

    #[test]
    fn version_0_has_no_memory_map_and_needs_only_40_bytes() {
        let bytes = start_info(0);
        let info = StartInfo::parse(&bytes[..START_INFO_V0_SIZE]).unwrap();
        assert_eq!((info.memmap_paddr, info.memmap_entries), (0, 0));
        assert_eq!(info.rsdp_paddr, 0xf_5240);
        assert_eq!(
            StartInfo::parse(&bytes).unwrap(),
            info,
            "v0 ignores the tail"
        );
    }

    #[test]
    fn bad_magic_is_rejected_with_the_value_found() {
        let mut bytes = start_info(1);
        bytes[0] ^= 1;
        assert_eq!(
            StartInfo::parse(&bytes),
            Err(PvhError::BadMagic(0x336e_c579))
        );
    }

    #[test]
    fn every_truncation_is_rejected() {
        let v1 = start_info(1);
        for len in 0..START_INFO_SIZE {
            assert_eq!(
                StartInfo::parse(&v1[..len]),
                Err(PvhError::Truncated),
                "len {len}"
            );
        }
        let v0 = start_info(0);
        for len in 0..START_INFO_V0_SIZE {
            assert_eq!(
                StartInfo::parse(&v0[..len]),
                Err(PvhError::Truncated),
                "len {len}"
            );
        }
    }

    #[test]
    fn module_entries_decode_and_partial_tail_is_ignored() {
        let mut bytes = Vec::new();
        for (paddr, size, cmdline) in [(0x20_0000u64, 0x1234u64, 0u64), (0x30_0000, 0x10, 0x7100)] {
            bytes.extend_from_slice(&paddr.to_le_bytes());
            bytes.extend_from_slice(&size.to_le_bytes());
            bytes.extend_from_slice(&cmdline.to_le_bytes());
            bytes.extend_from_slice(&0u64.to_le_bytes());
        }
        bytes.extend_from_slice(&[0xff; 31]);
        let mods: Vec<_> = modules(&bytes).collect();
        assert_eq!(mods.len(), 2);
        assert_eq!(mods[0].range(), 0x20_0000..0x20_1234);
        assert_eq!(mods[1].cmdline_paddr, 0x7100);
    }

    #[test]
    fn fuzz_random_start_infos_never_panic() {
        let mut rng = Rng::new(5);
        for _ in 0..5000 {
            let mut bytes = std::vec![0u8; rng.below(72)];
            rng.fill(&mut bytes);
            if bytes.len() >= 4 && rng.below(2) == 0 {
                bytes[..4].copy_from_slice(&START_INFO_MAGIC.to_le_bytes());
            }
            if let Ok(info) = StartInfo::parse(&bytes) {
                let _ = (info.memmap_bytes(), info.modlist_bytes());
            }
            let _ = modules(&bytes).count();
        }
    }
}
