//! The System Resource Affinity Table (SRAT): which NUMA node (ACPI
//! "proximity domain") each processor and each range of memory belongs to.
//! Layout: ACPI 6.5 specification, section 5.2.16 (tables 5.70-5.73).
//!
//! Only enabled entries are kept: firmware lists disabled placeholder
//! entries for hot-pluggable memory (QEMU adds one zero-length range), and a
//! disabled entry says nothing about the machine as it is. A machine without
//! an SRAT is one node; [`Srat::node_of_apic`] answers `None` there and the
//! kernel puts every CPU in node 0.

use crate::acpi::{for_each_entry, parse_sdt, AcpiError, MAX_CPUS};
use crate::fixed_vec::FixedVec;
use crate::le::{u32_at, u64_at, u8_at};

/// Most memory-affinity ranges a [`Srat`] keeps.
pub const MAX_MEMORY_RANGES: usize = 64;

/// A processor's node, from an SRAT type-0 (local APIC) or type-2 (local
/// x2APIC) entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuAffinity {
    /// The processor's (x2)APIC ID, as the MADT names it.
    pub apic_id: u32,
    /// Its proximity domain.
    pub node: u32,
}

/// A memory range's node, from an SRAT type-1 entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryAffinity {
    /// Physical base address.
    pub base: u64,
    /// Length in bytes.
    pub length: u64,
    /// Its proximity domain.
    pub node: u32,
    /// Flags bit 1: the range may be hot-plugged.
    pub hot_pluggable: bool,
    /// Flags bit 2: non-volatile memory.
    pub non_volatile: bool,
}

/// The decoded SRAT (enabled entries only, in table order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Srat {
    /// One entry per processor.
    pub cpus: FixedVec<CpuAffinity, MAX_CPUS>,
    /// Processor entries left out because `cpus` was full.
    pub cpus_dropped: usize,
    /// The memory ranges.
    pub memory: FixedVec<MemoryAffinity, MAX_MEMORY_RANGES>,
    /// Memory entries left out because `memory` was full.
    pub memory_dropped: usize,
}

/// SRAT entry types decoded here (ACPI 6.5 table 5.70).
const SRAT_LOCAL_APIC: u8 = 0;
const SRAT_MEMORY: u8 = 1;
const SRAT_LOCAL_X2APIC: u8 = 2;

/// Bytes between the SDT header and the first entry: a reserved word (1)
/// and a reserved quadword.
const SRAT_RESERVED_LEN: usize = 12;

impl Srat {
    /// The node of the processor with (x2)APIC ID `apic_id`, if the table
    /// lists it.
    pub fn node_of_apic(&self, apic_id: u32) -> Option<u32> {
        self.cpus
            .iter()
            .find(|cpu| cpu.apic_id == apic_id)
            .map(|cpu| cpu.node)
    }

    /// The node numbers Tarn gives the table's proximity domains: each
    /// distinct proximity domain of an enabled processor or memory range,
    /// in ascending order, numbered from 0 (proximity domains may be sparse;
    /// node numbers are dense, as Xen's and Linux's are).
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        self.for_each_domain(|_| count += 1);
        count
    }

    /// The dense node number of proximity domain `domain` (see
    /// [`Srat::node_count`]), or `None` if the table does not list it.
    pub fn dense_node(&self, domain: u32) -> Option<u32> {
        let mut rank = 0;
        let mut found = None;
        self.for_each_domain(|d| {
            if d == domain {
                found = Some(rank);
            }
            rank += 1;
        });
        found
    }

    /// Calls `f` on each distinct proximity domain, in ascending order.
    fn for_each_domain(&self, mut f: impl FnMut(u32)) {
        let domains = || {
            self.cpus
                .iter()
                .map(|c| c.node)
                .chain(self.memory.iter().map(|m| m.node))
        };
        let mut last: Option<u32> = None;
        while let Some(next) = domains().filter(|d| last.is_none_or(|l| *d > l)).min() {
            f(next);
            last = Some(next);
        }
    }

    /// Bytes of memory the table assigns to `node`.
    pub fn memory_of_node(&self, node: u32) -> u64 {
        self.memory
            .iter()
            .filter(|range| range.node == node)
            .fold(0u64, |sum, range| sum.saturating_add(range.length))
    }
}

/// Decodes the SRAT `table` (all of it, header included, as
/// [`crate::acpi::find_table`] returns it): checks the checksum, the "SRAT"
/// signature and each entry's length. Entry types 0, 1 and 2 are decoded;
/// others (GICC, ITS, generic initiators) are skipped by their length.
pub fn parse_srat(table: &[u8]) -> Result<Srat, AcpiError> {
    let (header, body) = parse_sdt(table)?;
    if &header.signature != b"SRAT" {
        return Err(AcpiError::BadSignature);
    }
    let entries = body.get(SRAT_RESERVED_LEN..).ok_or(AcpiError::Truncated)?;
    let mut srat = Srat {
        cpus: FixedVec::new(),
        cpus_dropped: 0,
        memory: FixedVec::new(),
        memory_dropped: 0,
    };
    for_each_entry(entries, |entry_type, entry| {
        decode_entry(&mut srat, entry_type, entry)
    })?;
    Ok(srat)
}

/// Applies one SRAT entry (`entry` includes its type and length bytes).
fn decode_entry(srat: &mut Srat, entry_type: u8, entry: &[u8]) -> Result<(), AcpiError> {
    let u8_field = |offset| u8_at(entry, offset).ok_or(AcpiError::BadLength);
    let u32_field = |offset| u32_at(entry, offset).ok_or(AcpiError::BadLength);
    let u64_field = |offset| u64_at(entry, offset).ok_or(AcpiError::BadLength);
    let cpu = match entry_type {
        SRAT_LOCAL_APIC => {
            // Table 5.71: the proximity domain is split, bits 7:0 at byte 2
            // and bits 31:8 at bytes 9..12.
            let flags = u32_field(4)?;
            let high = u32_field(8)? >> 8;
            let node = (high << 8) | u32::from(u8_field(2)?);
            (flags & 1 != 0).then(|| CpuAffinity {
                apic_id: u32::from(entry[3]),
                node,
            })
        }
        SRAT_LOCAL_X2APIC => {
            // Table 5.73.
            let flags = u32_field(12)?;
            let apic_id = u32_field(8)?;
            let node = u32_field(4)?;
            (flags & 1 != 0).then_some(CpuAffinity { apic_id, node })
        }
        SRAT_MEMORY => {
            // Table 5.72.
            let flags = u32_field(28)?;
            let range = MemoryAffinity {
                node: u32_field(2)?,
                base: u64_field(8)?,
                length: u64_field(16)?,
                hot_pluggable: flags & 2 != 0,
                non_volatile: flags & 4 != 0,
            };
            if flags & 1 != 0 && srat.memory.push(range).is_err() {
                srat.memory_dropped += 1;
            }
            None
        }
        _ => None,
    };
    if let Some(cpu) = cpu {
        if let Some(known) = srat.cpus.iter_mut().find(|c| c.apic_id == cpu.apic_id) {
            // Listed twice (xAPIC and x2APIC entries): the later one wins,
            // as firmware means the same processor.
            known.node = cpu.node;
        } else if srat.cpus.push(cpu).is_err() {
            srat.cpus_dropped += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::{find_table, parse_madt, parse_rsdp, sdt_entries};
    use crate::testutil::fix_checksum;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    macro_rules! fixture {
        ($dir:literal, $file:literal) => {
            include_bytes!(concat!("../fixtures/", $dir, "/", $file)).as_slice()
        };
    }

    /// `qemu-pc-numa2`: 4 CPUs, CPUs 0-1 and 128 MiB in node 0, CPUs 2-3 and
    /// 128 MiB in node 1 (see fixtures/README.md).
    const NUMA2_SRAT: &[u8] = fixture!("qemu-pc-numa2", "srat.bin");

    #[test]
    fn qemu_two_nodes_put_cpus_and_memory_where_the_command_line_did() {
        let srat = parse_srat(NUMA2_SRAT).unwrap();
        let nodes: Vec<(u32, u32)> = srat.cpus.iter().map(|c| (c.apic_id, c.node)).collect();
        assert_eq!(nodes, [(0, 0), (1, 0), (2, 1), (3, 1)]);
        assert_eq!(srat.node_of_apic(3), Some(1));
        assert_eq!(srat.node_of_apic(4), None);
        // Node 0: the first 640 KiB and 1 MiB..128 MiB (the hole below 1 MiB
        // is not listed); node 1: 128..256 MiB. QEMU's disabled hot-plug
        // placeholder is not kept.
        let ranges: Vec<(u64, u64, u32)> = srat
            .memory
            .iter()
            .map(|m| (m.base, m.length, m.node))
            .collect();
        assert_eq!(
            ranges,
            [
                (0, 0xA_0000, 0),
                (0x10_0000, 0x7F0_0000, 0),
                (0x800_0000, 0x800_0000, 1)
            ]
        );
        assert_eq!(srat.memory_of_node(1), 128 << 20);
        assert_eq!(srat.cpus_dropped + srat.memory_dropped, 0);
    }

    #[test]
    fn the_srat_is_found_through_the_rsdt_and_matches_the_madt() {
        let rsdp = parse_rsdp(fixture!("qemu-pc-numa2", "rsdp.bin")).unwrap();
        let rsdt = fixture!("qemu-pc-numa2", "rsdt.bin");
        let tables = [
            fixture!("qemu-pc-numa2", "facp.bin"),
            fixture!("qemu-pc-numa2", "apic.bin"),
            fixture!("qemu-pc-numa2", "hpet.bin"),
            fixture!("qemu-pc-numa2", "srat.bin"),
            fixture!("qemu-pc-numa2", "waet.bin"),
        ];
        let mut memory = BTreeMap::new();
        memory.insert(u64::from(rsdp.rsdt), rsdt);
        for (addr, table) in sdt_entries(rsdt, false).zip(tables) {
            memory.insert(addr, table);
        }
        let read = |addr: u64, len: usize| memory.get(&addr).and_then(|t| t.get(..len));
        let srat = parse_srat(find_table(&rsdp, b"SRAT", &read).unwrap()).unwrap();
        let madt = parse_madt(find_table(&rsdp, b"APIC", &read).unwrap()).unwrap();
        for cpu in madt.enabled_cpus() {
            assert!(srat.node_of_apic(cpu.apic_id).is_some(), "{cpu:?}");
        }
    }

    #[test]
    fn sparse_proximity_domains_get_dense_node_numbers() {
        let mut srat = parse_srat(NUMA2_SRAT).unwrap();
        assert_eq!(srat.node_count(), 2);
        assert_eq!((srat.dense_node(0), srat.dense_node(1)), (Some(0), Some(1)));
        // Domains 9 and 4 (memory only), out of order: 4 -> 1, 9 -> 2.
        srat.cpus.as_mut_slice()[3].node = 9;
        srat.memory.as_mut_slice()[2].node = 4;
        srat.cpus.as_mut_slice()[2].node = 4;
        assert_eq!(srat.node_count(), 3);
        assert_eq!(srat.dense_node(4), Some(1));
        assert_eq!(srat.dense_node(9), Some(2));
        assert_eq!(srat.dense_node(1), None);
    }

    #[test]
    fn x2apic_entries_and_split_proximity_domains_decode() {
        let mut table = NUMA2_SRAT[..48].to_vec();
        // Type 0: APIC 5, node 0x0302_01 split as byte 2 = 0x01 and bytes
        // 9..12 = 02 03 00.
        table.extend_from_slice(&[0, 16, 0x01, 5, 1, 0, 0, 0, 0, 0x02, 0x03, 0, 0, 0, 0, 0]);
        // Type 2: x2APIC 300 in node 7; a disabled one that must be ignored.
        for (id, flags) in [(300u32, 1u32), (301, 0)] {
            let mut entry = std::vec![2u8, 24, 0, 0];
            entry.extend_from_slice(&7u32.to_le_bytes());
            entry.extend_from_slice(&id.to_le_bytes());
            entry.extend_from_slice(&flags.to_le_bytes());
            entry.extend_from_slice(&[0; 8]);
            table.extend_from_slice(&entry);
        }
        // An unknown type (GICC, 11) is skipped by its length.
        table.extend_from_slice(&[11, 4, 0, 0]);
        let length = table.len() as u32;
        table[4..8].copy_from_slice(&length.to_le_bytes());
        fix_checksum(&mut table, 9);
        let srat = parse_srat(&table).unwrap();
        assert_eq!(srat.node_of_apic(5), Some(0x03_0201));
        assert_eq!(srat.node_of_apic(300), Some(7));
        assert_eq!(srat.node_of_apic(301), None);
    }

    #[test]
    fn malformed_tables_are_errors_not_panics() {
        let mut wrong = NUMA2_SRAT.to_vec();
        wrong[0..4].copy_from_slice(b"SRAX");
        fix_checksum(&mut wrong, 9);
        assert_eq!(parse_srat(&wrong), Err(AcpiError::BadSignature));
        let mut bad_sum = NUMA2_SRAT.to_vec();
        bad_sum[60] ^= 1;
        assert_eq!(parse_srat(&bad_sum), Err(AcpiError::BadChecksum));
        // A zero entry length would loop forever if accepted.
        let mut zero = NUMA2_SRAT.to_vec();
        zero[49] = 0;
        fix_checksum(&mut zero, 9);
        assert_eq!(parse_srat(&zero), Err(AcpiError::BadLength));
        // A memory entry cut short: its length says 20, the type needs 32.
        let mut short = NUMA2_SRAT.to_vec();
        let first_memory = 48 + 4 * 16;
        short[first_memory + 1] = 20;
        fix_checksum(&mut short, 9);
        assert!(parse_srat(&short).is_err());
        // Every truncation of the real table is an error or a prefix of it.
        for end in 0..NUMA2_SRAT.len() {
            let mut cut = NUMA2_SRAT[..end].to_vec();
            if cut.len() >= 8 {
                let length = cut.len() as u32;
                cut[4..8].copy_from_slice(&length.to_le_bytes());
            }
            if cut.len() >= 36 {
                fix_checksum(&mut cut, 9);
            }
            let _ = parse_srat(&cut);
        }
    }
}
