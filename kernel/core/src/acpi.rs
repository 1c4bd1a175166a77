//! ACPI table discovery and the MADT: find the RSDP, walk the RSDT/XSDT to a
//! table by signature, and decode the MADT into CPUs, I/O APICs and ISA
//! interrupt overrides.
//!
//! Physical memory is reached only through a caller-supplied `read`
//! callback, so this code runs unchanged on the host over captured tables
//! (`fixtures/`) and in the kernel over its direct map. Every length and
//! checksum is verified before a table's contents are used. Layouts: ACPI
//! 6.5 specification, sections 5.2.5 (RSDP), 5.2.6 (SDT header), 5.2.7/5.2.8
//! (RSDT/XSDT) and 5.2.12 (MADT).

use core::fmt;

use crate::fixed_vec::FixedVec;
use crate::le::{array_at, u16_at, u32_at, u64_at, u8_at};

/// The RSDP's signature.
pub const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Bytes covered by the ACPI 1.0 RSDP checksum (the whole revision-0 RSDP).
pub const RSDP_V1_LEN: usize = 20;
/// Size of the ACPI 2.0+ RSDP; read this many bytes at the RSDP address
/// (a revision-0 RSDP only uses the first 20).
pub const RSDP_V2_LEN: usize = 36;
/// Size of the header every system description table starts with.
pub const SDT_HEADER_LEN: usize = 36;
/// Largest table length accepted (16 MiB), so a corrupt length field cannot
/// make the kernel map gigabytes. Real DSDTs are at most a few hundred KiB.
pub const MAX_SDT_LEN: usize = 16 << 20;
/// Most CPU entries a [`Madt`] keeps.
pub const MAX_CPUS: usize = 256;
/// Most I/O APICs a [`Madt`] keeps.
pub const MAX_IOAPICS: usize = 16;
/// Most interrupt source overrides a [`Madt`] keeps.
pub const MAX_ISOS: usize = 48;

/// Why an ACPI structure was rejected or not found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// The RSDP lacks "RSD PTR ", or a table's signature is not the one
    /// expected (RSDT/XSDT as the root, "APIC" for the MADT).
    BadSignature,
    /// The bytes covered by a checksum do not sum to zero (mod 256).
    BadChecksum,
    /// Fewer bytes than the structure needs or its length field claims; a
    /// MADT entry running past the table's end.
    Truncated,
    /// A length field that cannot be right: an SDT shorter than its header
    /// or longer than [`MAX_SDT_LEN`], an RSDP v2 `length` below 36, a MADT
    /// entry shorter than 2 bytes or than its type's fixed fields.
    BadLength,
    /// No table with the requested signature is listed (or none readable).
    NotFound,
    /// More I/O APICs or interrupt source overrides than [`MAX_IOAPICS`] /
    /// [`MAX_ISOS`]. (Excess CPUs are not an error; see [`Madt::cpus_dropped`].)
    TooMany,
    /// The `read` callback could not supply the bytes at this physical address.
    Unreadable(u64),
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::BadSignature => f.write_str("ACPI: bad signature"),
            AcpiError::BadChecksum => f.write_str("ACPI: bad checksum"),
            AcpiError::Truncated => f.write_str("ACPI: structure truncated"),
            AcpiError::BadLength => f.write_str("ACPI: bad length field"),
            AcpiError::NotFound => f.write_str("ACPI: table not found"),
            AcpiError::TooMany => f.write_str("ACPI: more entries than the kernel supports"),
            AcpiError::Unreadable(addr) => write!(f, "ACPI: cannot read physical {addr:#x}"),
        }
    }
}

/// Whether `bytes` sum to zero mod 256, the ACPI checksum rule.
fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) == 0
}

/// A validated Root System Description Pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    /// 0 for ACPI 1.0 (RSDT only), 2 or more for ACPI 2.0+ (XSDT too).
    pub revision: u8,
    /// Firmware vendor (e.g. `b"BOCHS "` under QEMU).
    pub oem_id: [u8; 6],
    /// Physical address of the RSDT (32-bit entries), 0 if absent.
    pub rsdt: u32,
    /// Physical address of the XSDT (64-bit entries), for revision 2+ with
    /// a non-zero address.
    pub xsdt: Option<u64>,
}

/// Parses and checks an RSDP at the start of `bytes`.
///
/// Checks the signature and the 20-byte checksum; for revision 2+, also
/// `length` (at least 36, all present in `bytes`) and the extended checksum.
/// Extra bytes after the structure are ignored, so passing
/// [`RSDP_V2_LEN`] bytes is always right.
pub fn parse_rsdp(bytes: &[u8]) -> Result<Rsdp, AcpiError> {
    let v1 = bytes.get(..RSDP_V1_LEN).ok_or(AcpiError::Truncated)?;
    if &v1[..8] != RSDP_SIGNATURE {
        return Err(AcpiError::BadSignature);
    }
    if !checksum_ok(v1) {
        return Err(AcpiError::BadChecksum);
    }
    let revision = v1[15];
    let oem_id = array_at(v1, 9).ok_or(AcpiError::Truncated)?;
    let rsdt = u32_at(v1, 16).ok_or(AcpiError::Truncated)?;
    let mut xsdt = None;
    if revision >= 2 {
        let length = u32_at(bytes, 20).ok_or(AcpiError::Truncated)? as usize;
        if length < RSDP_V2_LEN {
            return Err(AcpiError::BadLength);
        }
        let whole = bytes.get(..length).ok_or(AcpiError::Truncated)?;
        if !checksum_ok(whole) {
            return Err(AcpiError::BadChecksum);
        }
        xsdt = u64_at(whole, 24).filter(|&addr| addr != 0);
    }
    Ok(Rsdp {
        revision,
        oem_id,
        rsdt,
        xsdt,
    })
}

/// Scans `area` (the bytes of physical memory from `area_base`: the first
/// KiB of the EBDA, or `0xE0000..0x100000`) for a valid RSDP on a 16-byte
/// boundary, as ACPI 5.2.5.1 prescribes for BIOS systems. Returns its
/// physical address.
pub fn find_rsdp(area: &[u8], area_base: u64) -> Option<u64> {
    let misalign = (area_base % 16) as usize;
    let first = (16 - misalign) % 16;
    (first..area.len())
        .step_by(16)
        .find(|&offset| {
            area.get(offset..)
                .is_some_and(|rest| rest.starts_with(RSDP_SIGNATURE) && parse_rsdp(rest).is_ok())
        })
        .and_then(|offset| area_base.checked_add(offset as u64))
}

/// The header every system description table starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdtHeader {
    /// Table signature, e.g. `*b"APIC"` for the MADT.
    pub signature: [u8; 4],
    /// Length of the whole table, header included.
    pub length: u32,
    /// Table revision.
    pub revision: u8,
    /// The byte that makes the table sum to zero.
    pub checksum: u8,
    /// Firmware vendor.
    pub oem_id: [u8; 6],
    /// Vendor's table name.
    pub oem_table_id: [u8; 8],
    /// Vendor's table revision.
    pub oem_revision: u32,
    /// Vendor of the tool that built the table.
    pub creator_id: [u8; 4],
    /// Revision of that tool.
    pub creator_revision: u32,
}

impl SdtHeader {
    /// The signature as text, for logs (`"????"` if not ASCII).
    pub fn signature_str(&self) -> &str {
        core::str::from_utf8(&self.signature).unwrap_or("????")
    }
}

/// The `length` field of the table whose header starts `header`, checked to
/// be between [`SDT_HEADER_LEN`] and [`MAX_SDT_LEN`]: how many bytes to read.
pub fn sdt_length(header: &[u8]) -> Result<usize, AcpiError> {
    let length = u32_at(header, 4).ok_or(AcpiError::Truncated)? as usize;
    if !(SDT_HEADER_LEN..=MAX_SDT_LEN).contains(&length) {
        return Err(AcpiError::BadLength);
    }
    Ok(length)
}

/// Parses a whole table: checks its length (see [`sdt_length`]) against
/// `bytes` and its checksum, and returns the header and the body (the bytes
/// after the header, up to `length`). The signature is not checked.
pub fn parse_sdt(bytes: &[u8]) -> Result<(SdtHeader, &[u8]), AcpiError> {
    let header = bytes.get(..SDT_HEADER_LEN).ok_or(AcpiError::Truncated)?;
    let length = sdt_length(header)?;
    let table = bytes.get(..length).ok_or(AcpiError::Truncated)?;
    if !checksum_ok(table) {
        return Err(AcpiError::BadChecksum);
    }
    let field = |offset| u32_at(header, offset).ok_or(AcpiError::Truncated);
    let header = SdtHeader {
        signature: array_at(header, 0).ok_or(AcpiError::Truncated)?,
        length: length as u32,
        revision: header[8],
        checksum: header[9],
        oem_id: array_at(header, 10).ok_or(AcpiError::Truncated)?,
        oem_table_id: array_at(header, 16).ok_or(AcpiError::Truncated)?,
        oem_revision: field(24)?,
        creator_id: array_at(header, 28).ok_or(AcpiError::Truncated)?,
        creator_revision: field(32)?,
    };
    Ok((header, &table[SDT_HEADER_LEN..]))
}

/// The physical addresses listed in an RSDT (`is_xsdt == false`, 32-bit
/// entries) or XSDT (64-bit entries), given the whole table. Reads up to the
/// table's `length` (or the slice's end if shorter); does not verify the
/// checksum, which [`parse_sdt`] does.
pub fn sdt_entries(rsdt_or_xsdt: &[u8], is_xsdt: bool) -> impl Iterator<Item = u64> + '_ {
    let length = u32_at(rsdt_or_xsdt, 4).map_or(0, |l| l as usize);
    let end = length.min(rsdt_or_xsdt.len());
    let body = rsdt_or_xsdt.get(SDT_HEADER_LEN..end).unwrap_or(&[]);
    let width = if is_xsdt { 8 } else { 4 };
    body.chunks_exact(width).map(move |entry| {
        if is_xsdt {
            u64_at(entry, 0).unwrap_or(0)
        } else {
            u32_at(entry, 0).map_or(0, u64::from)
        }
    })
}

/// Reads and validates the whole table at `addr`: header first, to learn
/// the length, then all of it.
fn read_sdt<'a>(
    addr: u64,
    read: &dyn Fn(u64, usize) -> Option<&'a [u8]>,
) -> Result<&'a [u8], AcpiError> {
    let header = read(addr, SDT_HEADER_LEN).ok_or(AcpiError::Unreadable(addr))?;
    let length = sdt_length(header)?;
    let table = read(addr, length).ok_or(AcpiError::Unreadable(addr))?;
    let table = table.get(..length).ok_or(AcpiError::Truncated)?;
    parse_sdt(table)?;
    Ok(table)
}

/// Looks for `signature` among the tables the root table at `root_addr`
/// lists. Unreadable entries are skipped; a matching but invalid table is
/// remembered as the error if no valid one follows.
fn search_root<'a>(
    root_addr: u64,
    is_xsdt: bool,
    signature: &[u8; 4],
    read: &dyn Fn(u64, usize) -> Option<&'a [u8]>,
) -> Result<&'a [u8], AcpiError> {
    if root_addr == 0 {
        return Err(AcpiError::NotFound);
    }
    let root = read_sdt(root_addr, read)?;
    let expected: &[u8; 4] = if is_xsdt { b"XSDT" } else { b"RSDT" };
    if &root[..4] != expected {
        return Err(AcpiError::BadSignature);
    }
    let mut error = AcpiError::NotFound;
    for addr in sdt_entries(root, is_xsdt).filter(|&addr| addr != 0) {
        let Some(header) = read(addr, SDT_HEADER_LEN) else {
            continue;
        };
        if header.get(..4) != Some(&signature[..]) {
            continue;
        }
        match read_sdt(addr, read) {
            Ok(table) => return Ok(table),
            Err(e) => error = e,
        }
    }
    Err(error)
}

/// Walks the XSDT (if the RSDP has one) or the RSDT to the first valid table
/// with `signature`, and returns all its bytes (checksum verified).
///
/// `read(addr, len)` must return at least `len` bytes of physical memory at
/// `addr`, or `None` if that range is not readable; it is called first for
/// each table's 36-byte header, then for its full `length` (at most
/// [`MAX_SDT_LEN`]). If the XSDT is broken, the RSDT is tried. The DSDT and
/// FACS are not listed in the root table and so cannot be found this way.
pub fn find_table<'a>(
    rsdp: &Rsdp,
    signature: &[u8; 4],
    read: &dyn Fn(u64, usize) -> Option<&'a [u8]>,
) -> Result<&'a [u8], AcpiError> {
    let rsdt = u64::from(rsdp.rsdt);
    match rsdp.xsdt {
        Some(xsdt) => search_root(xsdt, true, signature, read).or_else(|xsdt_error| {
            match search_root(rsdt, false, signature, read) {
                Err(AcpiError::NotFound) => Err(xsdt_error),
                result => result,
            }
        }),
        None => search_root(rsdt, false, signature, read),
    }
}

/// A processor's local APIC, from a MADT type-0 (xAPIC) or type-9 (x2APIC)
/// entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuEntry {
    /// The local APIC ID (8-bit for type 0, 32-bit x2APIC ID for type 9).
    pub apic_id: u32,
    /// The ACPI processor UID linking it to the namespace.
    pub acpi_uid: u32,
    /// Flags bit 0: the processor is usable now.
    pub enabled: bool,
    /// Flags bit 1 (MADT revision 5+): a disabled processor that can be
    /// brought online later. Older tables (QEMU's are revision 3) leave it 0
    /// even for hot-pluggable CPUs.
    pub online_capable: bool,
}

/// An I/O APIC, from a MADT type-1 entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoApic {
    /// The I/O APIC's ID.
    pub id: u8,
    /// Physical address of its register window.
    pub address: u32,
    /// The first global system interrupt its pins deliver.
    pub gsi_base: u32,
}

/// Interrupt polarity, from MPS INTI flags bits 0-1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    /// 00: as the bus specifies (ISA: active high).
    BusDefault,
    /// 01: active high.
    ActiveHigh,
    /// 10: reserved encoding.
    Reserved,
    /// 11: active low.
    ActiveLow,
}

/// Trigger mode, from MPS INTI flags bits 2-3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerMode {
    /// 00: as the bus specifies (ISA: edge).
    BusDefault,
    /// 01: edge-triggered.
    Edge,
    /// 10: reserved encoding.
    Reserved,
    /// 11: level-triggered.
    Level,
}

/// An interrupt source override, from a MADT type-2 entry: ISA IRQ
/// `source_irq` arrives on global system interrupt `gsi`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqOverride {
    /// Bus (0 = ISA).
    pub bus: u8,
    /// The bus-relative IRQ (e.g. 0 for the PIT).
    pub source_irq: u8,
    /// The global system interrupt it is wired to.
    pub gsi: u32,
    /// MPS INTI flags (see [`IrqOverride::polarity`], [`IrqOverride::trigger`]).
    pub flags: u16,
}

impl IrqOverride {
    /// Polarity from the flags.
    pub const fn polarity(&self) -> Polarity {
        match self.flags & 0b11 {
            0 => Polarity::BusDefault,
            1 => Polarity::ActiveHigh,
            2 => Polarity::Reserved,
            _ => Polarity::ActiveLow,
        }
    }

    /// Trigger mode from the flags.
    pub const fn trigger(&self) -> TriggerMode {
        match (self.flags >> 2) & 0b11 {
            0 => TriggerMode::BusDefault,
            1 => TriggerMode::Edge,
            2 => TriggerMode::Reserved,
            _ => TriggerMode::Level,
        }
    }
}

/// Where an ISA IRQ arrives at the I/O APICs, overrides applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaIrqRoute {
    /// Global system interrupt number.
    pub gsi: u32,
    /// Active low (else active high, the ISA default).
    pub active_low: bool,
    /// Level-triggered (else edge, the ISA default).
    pub level_triggered: bool,
}

/// The decoded Multiple APIC Description Table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Madt {
    /// Physical address of the local APIC (xAPIC mode), after any type-5
    /// override.
    pub local_apic_addr: u64,
    /// Flags bit 0: dual 8259 PICs are present and must be masked.
    pub pcat_compat: bool,
    /// Every processor entry in table order, one per APIC ID (an ID listed
    /// both as xAPIC and x2APIC appears once, enabled if either says so).
    /// Entries with the invalid ID 0xFF / 0xFFFF_FFFF are skipped.
    pub cpus: FixedVec<CpuEntry, MAX_CPUS>,
    /// Processor entries left out because `cpus` was full. When full, an
    /// enabled processor displaces the last disabled one, so enabled CPUs
    /// are dropped only if more than [`MAX_CPUS`] are enabled.
    pub cpus_dropped: usize,
    /// The I/O APICs in table order.
    pub ioapics: FixedVec<IoApic, MAX_IOAPICS>,
    /// The interrupt source overrides in table order.
    pub isos: FixedVec<IrqOverride, MAX_ISOS>,
}

/// MADT entry types decoded here (ACPI 6.5 table 5.21).
const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_INTERRUPT_OVERRIDE: u8 = 2;
const MADT_LOCAL_APIC_ADDRESS_OVERRIDE: u8 = 5;
const MADT_LOCAL_X2APIC: u8 = 9;

impl Madt {
    /// The processors whose enabled flag is set, in table order (the BSP is
    /// conventionally first).
    pub fn enabled_cpus(&self) -> impl Iterator<Item = &CpuEntry> {
        self.cpus.iter().filter(|cpu| cpu.enabled)
    }

    /// Where ISA IRQ `irq` arrives: its override if the table has one, else
    /// the identity mapping, edge-triggered, active high.
    pub fn isa_irq_route(&self, irq: u8) -> IsaIrqRoute {
        match self.isos.iter().find(|o| o.bus == 0 && o.source_irq == irq) {
            Some(o) => IsaIrqRoute {
                gsi: o.gsi,
                active_low: o.polarity() == Polarity::ActiveLow,
                level_triggered: o.trigger() == TriggerMode::Level,
            },
            None => IsaIrqRoute {
                gsi: u32::from(irq),
                active_low: false,
                level_triggered: false,
            },
        }
    }

    /// The I/O APIC whose range should contain `gsi`: the one with the
    /// highest `gsi_base` not above it. (Whether the pin exists depends on
    /// the I/O APIC's redirection-entry count, read from the device.)
    pub fn ioapic_for_gsi(&self, gsi: u32) -> Option<&IoApic> {
        self.ioapics
            .iter()
            .filter(|io| io.gsi_base <= gsi)
            .max_by_key(|io| io.gsi_base)
    }

    /// Records a processor entry, merging duplicates by APIC ID.
    fn add_cpu(&mut self, cpu: CpuEntry) {
        if let Some(known) = self.cpus.iter_mut().find(|c| c.apic_id == cpu.apic_id) {
            known.enabled |= cpu.enabled;
            known.online_capable |= cpu.online_capable;
            return;
        }
        if self.cpus.is_full() {
            self.cpus_dropped += 1;
            if !cpu.enabled {
                return;
            }
            match self.cpus.iter().rposition(|c| !c.enabled) {
                Some(victim) => {
                    self.cpus.remove(victim);
                }
                None => return,
            }
        }
        // Room was made above if needed; a failure here is impossible.
        let _ = self.cpus.push(cpu);
    }
}

/// Decodes the MADT `table` (all of it, header included, as [`find_table`]
/// returns it): checks the checksum and the "APIC" signature, then each
/// entry's length. Entry types 0 (local APIC), 1 (I/O APIC), 2 (interrupt
/// source override), 5 (local APIC address override) and 9 (local x2APIC)
/// are decoded; others are skipped by their length.
pub fn parse_madt(table: &[u8]) -> Result<Madt, AcpiError> {
    let (header, body) = parse_sdt(table)?;
    if &header.signature != b"APIC" {
        return Err(AcpiError::BadSignature);
    }
    let local_apic_addr = u32_at(body, 0).ok_or(AcpiError::Truncated)?;
    let flags = u32_at(body, 4).ok_or(AcpiError::Truncated)?;
    let mut madt = Madt {
        local_apic_addr: u64::from(local_apic_addr),
        pcat_compat: flags & 1 != 0,
        cpus: FixedVec::new(),
        cpus_dropped: 0,
        ioapics: FixedVec::new(),
        isos: FixedVec::new(),
    };
    for_each_entry(&body[8..], |entry_type, entry| {
        decode_madt_entry(&mut madt, entry_type, entry)
    })?;
    Ok(madt)
}

/// Walks the type-length entries that follow a MADT's or SRAT's fixed
/// fields (`entries`): calls `apply` with each entry's type and bytes (type
/// and length included), checking every length first. A length below 2 is
/// `BadLength` (it would never advance), one running past the end
/// `Truncated`; `apply`'s first error ends the walk.
pub(crate) fn for_each_entry(
    entries: &[u8],
    mut apply: impl FnMut(u8, &[u8]) -> Result<(), AcpiError>,
) -> Result<(), AcpiError> {
    let mut offset = 0;
    while offset < entries.len() {
        let entry_type = entries[offset];
        let length = usize::from(u8_at(entries, offset + 1).ok_or(AcpiError::Truncated)?);
        if length < 2 {
            return Err(AcpiError::BadLength);
        }
        let entry = entries
            .get(offset..offset + length)
            .ok_or(AcpiError::Truncated)?;
        apply(entry_type, entry)?;
        offset += length;
    }
    Ok(())
}

/// Applies one MADT entry (`entry` includes its type and length bytes).
fn decode_madt_entry(madt: &mut Madt, entry_type: u8, entry: &[u8]) -> Result<(), AcpiError> {
    let u8_field = |offset| u8_at(entry, offset).ok_or(AcpiError::BadLength);
    let u16_field = |offset| u16_at(entry, offset).ok_or(AcpiError::BadLength);
    let u32_field = |offset| u32_at(entry, offset).ok_or(AcpiError::BadLength);
    match entry_type {
        MADT_LOCAL_APIC => {
            let flags = u32_field(4)?;
            let apic_id = u8_field(3)?;
            if apic_id != 0xFF {
                madt.add_cpu(CpuEntry {
                    apic_id: u32::from(apic_id),
                    acpi_uid: u32::from(u8_field(2)?),
                    enabled: flags & 1 != 0,
                    online_capable: flags & 2 != 0,
                });
            }
        }
        MADT_LOCAL_X2APIC => {
            let apic_id = u32_field(4)?;
            let flags = u32_field(8)?;
            let acpi_uid = u32_field(12)?;
            if apic_id != u32::MAX {
                madt.add_cpu(CpuEntry {
                    apic_id,
                    acpi_uid,
                    enabled: flags & 1 != 0,
                    online_capable: flags & 2 != 0,
                });
            }
        }
        MADT_IO_APIC => {
            let ioapic = IoApic {
                id: u8_field(2)?,
                address: u32_field(4)?,
                gsi_base: u32_field(8)?,
            };
            madt.ioapics.push(ioapic).map_err(|_| AcpiError::TooMany)?;
        }
        MADT_INTERRUPT_OVERRIDE => {
            let iso = IrqOverride {
                bus: u8_field(2)?,
                source_irq: u8_field(3)?,
                gsi: u32_field(4)?,
                flags: u16_field(8)?,
            };
            madt.isos.push(iso).map_err(|_| AcpiError::TooMany)?;
        }
        MADT_LOCAL_APIC_ADDRESS_OVERRIDE => {
            madt.local_apic_addr = u64_at(entry, 4).ok_or(AcpiError::BadLength)?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fix_checksum, Rng};
    use std::collections::BTreeMap;
    use std::vec::Vec;

    /// One QEMU configuration's captured tables (see fixtures/README.md).
    struct Capture {
        rsdp: &'static [u8],
        rsdt: &'static [u8],
        /// The tables the RSDT lists, in RSDT order.
        tables: &'static [&'static [u8]],
    }

    macro_rules! fixture {
        ($dir:literal, $file:literal) => {
            include_bytes!(concat!("../fixtures/", $dir, "/", $file)).as_slice()
        };
    }

    macro_rules! pc_capture {
        ($dir:literal) => {
            Capture {
                rsdp: fixture!($dir, "rsdp.bin"),
                rsdt: fixture!($dir, "rsdt.bin"),
                tables: &[
                    fixture!($dir, "facp.bin"),
                    fixture!($dir, "apic.bin"),
                    fixture!($dir, "hpet.bin"),
                    fixture!($dir, "waet.bin"),
                ],
            }
        };
    }

    macro_rules! q35_capture {
        ($dir:literal) => {
            Capture {
                rsdp: fixture!($dir, "rsdp.bin"),
                rsdt: fixture!($dir, "rsdt.bin"),
                tables: &[
                    fixture!($dir, "facp.bin"),
                    fixture!($dir, "apic.bin"),
                    fixture!($dir, "hpet.bin"),
                    fixture!($dir, "mcfg.bin"),
                    fixture!($dir, "waet.bin"),
                ],
            }
        };
    }

    const PC_SMP4: Capture = pc_capture!("qemu-pc-smp4");
    const PC_SMP1: Capture = pc_capture!("qemu-pc-smp1");
    const PC_SMP8: Capture = pc_capture!("qemu-pc-smp8");
    const PC_SMP2_MAX4: Capture = pc_capture!("qemu-pc-smp2-max4");
    const Q35_SMP4: Capture = q35_capture!("qemu-q35-smp4");
    const Q35_X2APIC: Capture = q35_capture!("qemu-q35-x2apic");
    const ALL: [&Capture; 6] = [
        &PC_SMP4,
        &PC_SMP1,
        &PC_SMP8,
        &PC_SMP2_MAX4,
        &Q35_SMP4,
        &Q35_X2APIC,
    ];

    /// Physical memory as the firmware left it: table bytes at their addresses.
    struct Memory(BTreeMap<u64, &'static [u8]>);

    impl Memory {
        fn of(capture: &Capture) -> Self {
            let rsdp = parse_rsdp(capture.rsdp).unwrap();
            let mut map = BTreeMap::new();
            map.insert(u64::from(rsdp.rsdt), capture.rsdt);
            for (addr, table) in sdt_entries(capture.rsdt, false).zip(capture.tables) {
                map.insert(addr, *table);
            }
            Memory(map)
        }

        fn read(&self, addr: u64, len: usize) -> Option<&'static [u8]> {
            self.0.get(&addr)?.get(..len)
        }
    }

    fn madt_of(capture: &Capture) -> Madt {
        parse_madt(capture.tables[1]).unwrap()
    }

    fn enabled_ids(madt: &Madt) -> Vec<u32> {
        madt.enabled_cpus().map(|c| c.apic_id).collect()
    }

    #[test]
    fn qemu_rsdp_is_revision_0_pointing_at_the_rsdt() {
        for capture in ALL {
            let rsdp = parse_rsdp(capture.rsdp).unwrap();
            assert_eq!(rsdp.revision, 0);
            assert_eq!(&rsdp.oem_id, b"BOCHS ");
            assert_eq!(rsdp.xsdt, None);
            assert_ne!(rsdp.rsdt, 0);
        }
    }

    #[test]
    fn every_captured_table_has_a_valid_header_and_checksum() {
        for capture in ALL {
            let (rsdt, _) = parse_sdt(capture.rsdt).unwrap();
            assert_eq!(rsdt.signature_str(), "RSDT");
            assert_eq!(
                sdt_entries(capture.rsdt, false).count(),
                capture.tables.len()
            );
            for table in capture.tables {
                let (header, body) = parse_sdt(table).unwrap();
                assert_eq!(header.length as usize, table.len());
                assert_eq!(body.len(), table.len() - SDT_HEADER_LEN);
                assert_eq!(&header.oem_id, b"BOCHS ");
            }
        }
        let (facp, _) = parse_sdt(PC_SMP4.tables[0]).unwrap();
        assert_eq!(&facp.signature, b"FACP");
    }

    #[test]
    fn find_table_walks_rsdp_rsdt_to_each_table() {
        for capture in ALL {
            let memory = Memory::of(capture);
            let read = |addr, len| memory.read(addr, len);
            let rsdp = parse_rsdp(capture.rsdp).unwrap();
            assert_eq!(find_table(&rsdp, b"APIC", &read), Ok(capture.tables[1]));
            assert_eq!(find_table(&rsdp, b"FACP", &read), Ok(capture.tables[0]));
            assert_eq!(find_table(&rsdp, b"SSDT", &read), Err(AcpiError::NotFound));
        }
        let memory = Memory::of(&Q35_SMP4);
        let rsdp = parse_rsdp(Q35_SMP4.rsdp).unwrap();
        let mcfg = find_table(&rsdp, b"MCFG", &|addr, len| memory.read(addr, len)).unwrap();
        assert_eq!(&mcfg[..4], b"MCFG");
    }

    #[test]
    fn find_table_reports_unreadable_root_and_skips_unreadable_entries() {
        let rsdp = parse_rsdp(PC_SMP4.rsdp).unwrap();
        let nothing = |_: u64, _: usize| -> Option<&'static [u8]> { None };
        assert_eq!(
            find_table(&rsdp, b"APIC", &nothing),
            Err(AcpiError::Unreadable(u64::from(rsdp.rsdt)))
        );
        let mut memory = Memory::of(&PC_SMP4);
        let facp_addr = sdt_entries(PC_SMP4.rsdt, false).next().unwrap();
        memory.0.remove(&facp_addr);
        let read = |addr, len| memory.read(addr, len);
        assert_eq!(find_table(&rsdp, b"APIC", &read), Ok(PC_SMP4.tables[1]));
        assert_eq!(find_table(&rsdp, b"FACP", &read), Err(AcpiError::NotFound));
    }

    #[test]
    fn find_table_reports_a_corrupt_match_and_rejects_a_non_rsdt_root() {
        let rsdp = parse_rsdp(PC_SMP4.rsdp).unwrap();
        let mut madt = PC_SMP4.tables[1].to_vec();
        madt[50] ^= 0x40;
        let madt: &'static [u8] = madt.leak();
        let mut memory = Memory::of(&PC_SMP4);
        let apic_addr = sdt_entries(PC_SMP4.rsdt, false).nth(1).unwrap();
        memory.0.insert(apic_addr, madt);
        memory.0.insert(u64::from(rsdp.rsdt), PC_SMP4.tables[2]);
        let read = |addr, len| memory.read(addr, len);
        assert_eq!(
            find_table(&rsdp, b"APIC", &read),
            Err(AcpiError::BadSignature)
        );
        memory.0.insert(u64::from(rsdp.rsdt), PC_SMP4.rsdt);
        let read = |addr, len| memory.read(addr, len);
        assert_eq!(
            find_table(&rsdp, b"APIC", &read),
            Err(AcpiError::BadChecksum)
        );
    }

    /// An ACPI 2.0 RSDP at `xsdt` plus an XSDT listing `entries`.
    fn rsdp_v2_and_xsdt(rsdt: u32, xsdt: u64, entries: &[u64]) -> (Vec<u8>, Vec<u8>) {
        let mut rsdp = PC_SMP4.rsdp.to_vec();
        rsdp[15] = 2;
        rsdp[16..20].copy_from_slice(&rsdt.to_le_bytes());
        fix_checksum(&mut rsdp, 8);
        rsdp.extend_from_slice(&36u32.to_le_bytes());
        rsdp.extend_from_slice(&xsdt.to_le_bytes());
        rsdp.extend_from_slice(&[0, 0, 0, 0]); // extended checksum, reserved
        fix_checksum(&mut rsdp, 32);
        let mut table = PC_SMP4.rsdt[..SDT_HEADER_LEN].to_vec();
        table[..4].copy_from_slice(b"XSDT");
        for entry in entries {
            table.extend_from_slice(&entry.to_le_bytes());
        }
        let length = table.len() as u32;
        table[4..8].copy_from_slice(&length.to_le_bytes());
        fix_checksum(&mut table, 9);
        (rsdp, table)
    }

    #[test]
    fn rsdp_v2_with_xsdt_is_parsed_and_preferred() {
        let entries: Vec<u64> = sdt_entries(PC_SMP4.rsdt, false).collect();
        let (rsdp_bytes, xsdt) = rsdp_v2_and_xsdt(0, 0x1_0000_0000, &entries[1..2]);
        let rsdp = parse_rsdp(&rsdp_bytes).unwrap();
        assert_eq!(rsdp.revision, 2);
        assert_eq!(rsdp.xsdt, Some(0x1_0000_0000));
        assert_eq!(sdt_entries(&xsdt, true).collect::<Vec<_>>(), &entries[1..2]);
        let xsdt: &'static [u8] = xsdt.leak();
        let mut memory = Memory::of(&PC_SMP4);
        memory.0.insert(0x1_0000_0000, xsdt);
        let read = |addr, len| memory.read(addr, len);
        assert_eq!(find_table(&rsdp, b"APIC", &read), Ok(PC_SMP4.tables[1]));
        // rsdt is 0 in this RSDP, so FACP (not in the XSDT) is simply absent.
        assert_eq!(find_table(&rsdp, b"FACP", &read), Err(AcpiError::NotFound));
    }

    #[test]
    fn broken_xsdt_falls_back_to_the_rsdt() {
        let real_rsdt = parse_rsdp(PC_SMP4.rsdp).unwrap().rsdt;
        let (rsdp_bytes, mut xsdt) = rsdp_v2_and_xsdt(real_rsdt, 0x1_0000_0000, &[]);
        xsdt[20] ^= 1;
        let xsdt: &'static [u8] = xsdt.leak();
        let rsdp = parse_rsdp(&rsdp_bytes).unwrap();
        let mut memory = Memory::of(&PC_SMP4);
        memory.0.insert(0x1_0000_0000, xsdt);
        let read = |addr, len| memory.read(addr, len);
        assert_eq!(find_table(&rsdp, b"APIC", &read), Ok(PC_SMP4.tables[1]));
        assert_eq!(
            find_table(&rsdp, b"SSDT", &read),
            Err(AcpiError::BadChecksum)
        );
    }

    #[test]
    fn rsdp_checks_signature_checksums_and_lengths() {
        assert_eq!(parse_rsdp(&PC_SMP4.rsdp[..19]), Err(AcpiError::Truncated));
        let mut bad = PC_SMP4.rsdp.to_vec();
        bad[0] = b'X';
        assert_eq!(parse_rsdp(&bad), Err(AcpiError::BadSignature));
        for at in 8..RSDP_V1_LEN {
            let mut bad = PC_SMP4.rsdp.to_vec();
            bad[at] ^= 0x10;
            assert_eq!(parse_rsdp(&bad), Err(AcpiError::BadChecksum), "byte {at}");
        }
        let (v2, _) = rsdp_v2_and_xsdt(1, 2, &[]);
        for len in 0..RSDP_V2_LEN {
            assert!(parse_rsdp(&v2[..len]).is_err(), "len {len}");
        }
        let mut bad = v2.clone();
        bad[33] = 1; // reserved byte under the extended checksum only
        assert_eq!(parse_rsdp(&bad), Err(AcpiError::BadChecksum));
        let mut short = v2.clone();
        short[20] = 20;
        fix_checksum(&mut short, 32);
        assert_eq!(parse_rsdp(&short), Err(AcpiError::BadLength));
    }

    #[test]
    fn find_rsdp_scans_16_byte_boundaries_and_skips_bad_candidates() {
        const BASE: u64 = 0xE_0000;
        let mut area = std::vec![0u8; 0x2_0000];
        let mut rng = Rng::new(6);
        rng.fill(&mut area);
        // A candidate with a bad checksum, and a good copy off the 16-byte grid.
        area[0x100..0x100 + 8].copy_from_slice(RSDP_SIGNATURE);
        area[0x208..0x208 + 20].copy_from_slice(PC_SMP4.rsdp);
        assert_eq!(find_rsdp(&area, BASE), None);
        area[0x1_5240..0x1_5240 + 20].copy_from_slice(PC_SMP4.rsdp);
        assert_eq!(find_rsdp(&area, BASE), Some(0xF_5240));
        // An area starting off the grid still finds only aligned copies.
        assert_eq!(find_rsdp(&area[8..], BASE + 8), Some(0xF_5240));
        assert_eq!(find_rsdp(&area[0x1_5240 + 4..], BASE + 0x1_5240 + 4), None);
        assert_eq!(find_rsdp(&[], 0), None);
        assert_eq!(
            find_rsdp(&area[..0x1_5240 + 10], BASE),
            None,
            "cut mid-RSDP"
        );
    }

    #[test]
    fn smp4_madt_has_four_cpus_one_ioapic_and_the_timer_override() {
        let madt = madt_of(&PC_SMP4);
        assert_eq!(enabled_ids(&madt), [0, 1, 2, 3]);
        let uids: Vec<_> = madt.cpus.iter().map(|c| c.acpi_uid).collect();
        assert_eq!(uids, [0, 1, 2, 3]);
        assert_eq!(madt.cpus_dropped, 0);
        assert_eq!(madt.local_apic_addr, 0xFEE0_0000);
        assert!(madt.pcat_compat);
        assert_eq!(
            madt.ioapics.as_slice(),
            [IoApic {
                id: 0,
                address: 0xFEC0_0000,
                gsi_base: 0
            }]
        );
        assert_eq!(
            madt.isos[0],
            IrqOverride {
                bus: 0,
                source_irq: 0,
                gsi: 2,
                flags: 0
            }
        );
        let sources: Vec<_> = madt.isos.iter().map(|o| o.source_irq).collect();
        assert_eq!(sources, [0, 5, 9, 10, 11]);
        assert_eq!(madt.isos[1].polarity(), Polarity::ActiveHigh);
        assert_eq!(madt.isos[1].trigger(), TriggerMode::Level);
    }

    #[test]
    fn isa_irq_routes_apply_overrides_and_default_to_identity() {
        let madt = madt_of(&PC_SMP4);
        let timer = madt.isa_irq_route(0);
        assert_eq!(
            (timer.gsi, timer.active_low, timer.level_triggered),
            (2, false, false)
        );
        let serial = madt.isa_irq_route(4);
        assert_eq!(
            (serial.gsi, serial.active_low, serial.level_triggered),
            (4, false, false)
        );
        let sci = madt.isa_irq_route(9);
        assert_eq!(
            (sci.gsi, sci.active_low, sci.level_triggered),
            (9, false, true)
        );
        assert_eq!(
            madt.ioapic_for_gsi(2).map(|io| io.address),
            Some(0xFEC0_0000)
        );
    }

    #[test]
    fn madts_for_other_cpu_counts_and_machines() {
        assert_eq!(enabled_ids(&madt_of(&PC_SMP1)), [0]);
        assert_eq!(enabled_ids(&madt_of(&PC_SMP8)), (0..8).collect::<Vec<_>>());
        let q35 = madt_of(&Q35_SMP4);
        assert_eq!(enabled_ids(&q35), [0, 1, 2, 3]);
        assert_eq!(q35.ioapics.len(), 1);
        assert_eq!(q35.isa_irq_route(0).gsi, 2);
    }

    #[test]
    fn hotpluggable_cpus_are_listed_disabled() {
        let madt = madt_of(&PC_SMP2_MAX4);
        assert_eq!(madt.cpus.len(), 4);
        assert_eq!(enabled_ids(&madt), [0, 1]);
        assert!(
            madt.cpus.iter().all(|c| !c.online_capable),
            "MADT revision 3"
        );
    }

    #[test]
    fn x2apic_ids_above_255_are_kept_and_excess_disabled_cpus_dropped() {
        // 258 possible CPUs (129 xAPIC + 129 x2APIC entries), 3 present.
        let madt = madt_of(&Q35_X2APIC);
        assert_eq!(enabled_ids(&madt), [0, 1, 256]);
        assert_eq!(madt.cpus.len(), MAX_CPUS);
        assert_eq!(madt.cpus_dropped, 2);
        let bsp256 = madt.cpus.iter().find(|c| c.apic_id == 256).unwrap();
        assert_eq!(bsp256.acpi_uid, 129);
    }

    #[test]
    fn every_corrupted_byte_of_a_madt_fails_the_checksum() {
        let table = PC_SMP4.tables[1];
        for at in 0..table.len() {
            let mut bad = table.to_vec();
            bad[at] = bad[at].wrapping_add(1);
            let result = parse_madt(&bad);
            assert!(
                matches!(
                    result,
                    Err(AcpiError::BadChecksum | AcpiError::BadLength | AcpiError::Truncated)
                ),
                "byte {at}: {result:?}"
            );
        }
    }

    #[test]
    fn every_truncation_of_every_table_is_an_error() {
        for capture in ALL {
            for table in capture.tables.iter().chain([&capture.rsdt]) {
                for len in 0..table.len() {
                    assert_eq!(parse_sdt(&table[..len]), Err(AcpiError::Truncated));
                }
            }
            let madt = capture.tables[1];
            for len in 0..madt.len() {
                assert_eq!(parse_madt(&madt[..len]).unwrap_err(), AcpiError::Truncated);
            }
        }
    }

    /// A MADT with the smp4 header and the given entries, checksum fixed.
    fn madt_with(entries: &[&[u8]]) -> Vec<u8> {
        let mut table = PC_SMP4.tables[1][..SDT_HEADER_LEN + 8].to_vec();
        for entry in entries {
            table.extend_from_slice(entry);
        }
        let length = table.len() as u32;
        table[4..8].copy_from_slice(&length.to_le_bytes());
        fix_checksum(&mut table, 9);
        table
    }

    fn lapic(uid: u8, id: u8, flags: u32) -> Vec<u8> {
        let mut entry = std::vec![0, 8, uid, id];
        entry.extend_from_slice(&flags.to_le_bytes());
        entry
    }

    fn x2apic(id: u32, flags: u32, uid: u32) -> Vec<u8> {
        let mut entry = std::vec![9, 16, 0, 0];
        for field in [id, flags, uid] {
            entry.extend_from_slice(&field.to_le_bytes());
        }
        entry
    }

    fn ioapic(id: u8) -> Vec<u8> {
        let mut entry = std::vec![1, 12, id, 0];
        entry.extend_from_slice(&0xFEC0_0000u32.to_le_bytes());
        entry.extend_from_slice(&(u32::from(id) * 24).to_le_bytes());
        entry
    }

    #[test]
    fn cpu_listed_as_xapic_and_x2apic_appears_once() {
        let table = madt_with(&[
            &lapic(0, 0, 1),
            &lapic(1, 1, 0),
            &x2apic(1, 1, 1),
            &x2apic(0, 1, 0),
        ]);
        let madt = parse_madt(&table).unwrap();
        assert_eq!(madt.cpus.len(), 2);
        assert_eq!(
            enabled_ids(&madt),
            [0, 1],
            "enabled if either entry says so"
        );
    }

    #[test]
    fn invalid_apic_ids_are_skipped() {
        let table = madt_with(&[&lapic(0, 0xFF, 1), &x2apic(u32::MAX, 1, 0), &lapic(1, 3, 1)]);
        assert_eq!(enabled_ids(&parse_madt(&table).unwrap()), [3]);
    }

    #[test]
    fn lapic_address_override_and_unknown_entries() {
        let mut override_entry = std::vec![5, 12, 0, 0];
        override_entry.extend_from_slice(&0x1_2345_6000u64.to_le_bytes());
        let unknown = [0x7F, 5, 1, 2, 3];
        let nmi = [4, 6, 0xFF, 0, 0, 1];
        let table = madt_with(&[&unknown, &override_entry, &nmi, &lapic(0, 0, 1)]);
        let madt = parse_madt(&table).unwrap();
        assert_eq!(madt.local_apic_addr, 0x1_2345_6000);
        assert_eq!(enabled_ids(&madt), [0]);
    }

    #[test]
    fn bad_entry_lengths_are_rejected() {
        for entry in [
            &[0x7Fu8, 0][..],
            &[0x7F, 1],
            &[0, 6, 0, 0, 1, 0],
            &[1, 10, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert_eq!(
                parse_madt(&madt_with(&[entry])).unwrap_err(),
                AcpiError::BadLength,
                "{entry:?}"
            );
        }
        assert_eq!(
            parse_madt(&madt_with(&[&[0, 8, 0, 0]])).unwrap_err(),
            AcpiError::Truncated
        );
        assert_eq!(
            parse_madt(&madt_with(&[&[0]])).unwrap_err(),
            AcpiError::Truncated
        );
    }

    #[test]
    fn wrong_signature_is_rejected() {
        assert_eq!(
            parse_madt(PC_SMP4.tables[0]).unwrap_err(),
            AcpiError::BadSignature
        );
    }

    #[test]
    fn too_many_ioapics_is_an_error() {
        let entries: Vec<Vec<u8>> = (0..=MAX_IOAPICS as u8).map(ioapic).collect();
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        assert_eq!(
            parse_madt(&madt_with(&refs[..MAX_IOAPICS]))
                .unwrap()
                .ioapics
                .len(),
            MAX_IOAPICS
        );
        assert_eq!(
            parse_madt(&madt_with(&refs)).unwrap_err(),
            AcpiError::TooMany
        );
        let madt = parse_madt(&madt_with(&refs[..3])).unwrap();
        assert_eq!(madt.ioapic_for_gsi(30).map(|io| io.id), Some(1));
        assert_eq!(madt.ioapic_for_gsi(48).map(|io| io.id), Some(2));
    }

    #[test]
    fn when_full_an_enabled_cpu_displaces_the_last_disabled_one() {
        let mut entries: Vec<Vec<u8>> = (0..MAX_CPUS as u32)
            .map(|id| x2apic(id, u32::from(id < 10), id))
            .collect();
        entries.push(x2apic(1000, 1, 1000));
        entries.push(x2apic(1001, 0, 1001));
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let madt = parse_madt(&madt_with(&refs)).unwrap();
        assert_eq!(madt.cpus.len(), MAX_CPUS);
        assert_eq!(madt.cpus_dropped, 2);
        let mut expected: Vec<u32> = (0..10).collect();
        expected.push(1000);
        assert_eq!(enabled_ids(&madt), expected);
        assert!(madt
            .cpus
            .iter()
            .all(|c| c.apic_id != MAX_CPUS as u32 - 1 && c.apic_id != 1001));
    }

    #[test]
    fn fuzz_mutated_tables_with_fixed_checksums_never_panic() {
        let mut rng = Rng::new(7);
        for round in 0..20_000 {
            let capture = ALL[round % ALL.len()];
            let mut table = capture.tables[1].to_vec();
            for _ in 0..1 + rng.below(6) {
                let at = SDT_HEADER_LEN + rng.below(table.len() - SDT_HEADER_LEN);
                table[at] = rng.byte();
            }
            if rng.below(3) == 0 {
                table.truncate(SDT_HEADER_LEN + rng.below(table.len() - SDT_HEADER_LEN));
                if rng.below(2) == 0 {
                    let len = table.len() as u32;
                    table[4..8].copy_from_slice(&len.to_le_bytes());
                }
            }
            fix_checksum(&mut table, 9);
            if let Ok(madt) = parse_madt(&table) {
                assert!(madt.cpus.len() <= MAX_CPUS);
                let _ = (madt.enabled_cpus().count(), madt.isa_irq_route(rng.byte()));
            }
            let _ = sdt_entries(&table, rng.below(2) == 0).count();
        }
    }

    #[test]
    fn fuzz_random_bytes_never_panic_any_parser() {
        let mut rng = Rng::new(8);
        for _ in 0..20_000 {
            let mut bytes = std::vec![0u8; rng.below(160)];
            rng.fill(&mut bytes);
            match rng.below(4) {
                0 if bytes.len() >= 8 => bytes[..8].copy_from_slice(RSDP_SIGNATURE),
                1 if bytes.len() >= 8 => {
                    bytes[..4].copy_from_slice(b"APIC");
                    let len = rng.below(bytes.len() + 8) as u32;
                    bytes[4..8].copy_from_slice(&len.to_le_bytes());
                    if bytes.len() > 9 {
                        fix_checksum(&mut bytes, 9);
                    }
                }
                _ => {}
            }
            let _ = parse_rsdp(&bytes);
            let _ = parse_sdt(&bytes);
            let _ = parse_madt(&bytes);
            let _ = find_rsdp(&bytes, rng.next_u64());
            let _ = sdt_entries(&bytes, true).count();
            // A random root table reachable from a random RSDP.
            let rsdp = Rsdp {
                revision: 2,
                oem_id: *b"FUZZ  ",
                rsdt: 0x1000,
                xsdt: Some(0x2000),
            };
            let blob: &[u8] = &bytes;
            let read = |addr: u64, len: usize| -> Option<&[u8]> {
                if addr.is_multiple_of(0x1000) {
                    blob.get(..len)
                } else {
                    None
                }
            };
            let _ = find_table(&rsdp, b"APIC", &read);
        }
    }
}
