//! x86-64 4-level page tables and the kernel's address-space layout:
//!
//! | virtual | what |
//! | --- | --- |
//! | `0x0000_0000_0000_0000..0x0000_8000_0000_0000` | user space (per task) |
//! | `DIRECT_MAP_BASE` (`0xFFFF_8000_0000_0000`) | all physical memory, RW, no-execute, 2 MiB pages |
//! | `KERNEL_STACKS` (`0xFFFF_FE00_0000_0000`) | per-CPU kernel stacks, 4 KiB pages, unmapped guard page below each |
//! | `KERNEL_VMA` (`0xFFFF_FFFF_8000_0000`) | the kernel image: text RX, rodata R, data RW (W^X) |

use super::cpu;
use super::lock::KernelGuard;
use super::objmem;
use core::ops::Range;

/// Base of the direct map of physical memory.
pub const DIRECT_MAP_BASE: u64 = 0xFFFF_8000_0000_0000;
/// Base of the per-CPU kernel stack region.
pub const KERNEL_STACKS: u64 = 0xFFFF_FE00_0000_0000;
/// Virtual base the kernel image is linked at (physical = virtual - this).
pub const KERNEL_VMA: u64 = 0xFFFF_FFFF_8000_0000;

/// Page size.
pub const PAGE_SIZE: u64 = 4096;
/// Large page size.
pub const LARGE_PAGE_SIZE: u64 = 2 * 1024 * 1024;

/// Page-table entry bits (SDM Vol. 3A, 4.5).
pub mod flags {
    use x86::bits64::paging::{PDFlags, PTFlags};

    /// Present.
    pub const PRESENT: u64 = PTFlags::P.bits();
    /// Writable.
    pub const WRITABLE: u64 = PTFlags::RW.bits();
    /// User accessible.
    pub const USER: u64 = PTFlags::US.bits();
    /// Page size (2 MiB in a PD entry).
    pub const LARGE: u64 = PDFlags::PS.bits();
    /// Global (survives CR3 switches when CR4.PGE is set).
    pub const GLOBAL: u64 = PTFlags::G.bits();
    /// No execute.
    pub const NO_EXECUTE: u64 = PTFlags::XD.bits();
}

/// Physical address bits of a table entry.
const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;

static KERNEL_ROOT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The kernel's own PML4 (physical), set once at boot.
pub fn kernel_root() -> u64 {
    KERNEL_ROOT.load(core::sync::atomic::Ordering::Relaxed)
}

/// Records the kernel's own PML4.
pub fn set_kernel_root(root: u64) {
    KERNEL_ROOT.store(root, core::sync::atomic::Ordering::Relaxed);
}

/// Converts a physical address to its direct-map virtual address.
pub const fn phys_to_virt(phys: u64) -> u64 {
    DIRECT_MAP_BASE + phys
}

/// Converts a kernel-image virtual address to its physical address.
pub const fn kernel_virt_to_phys(virt: u64) -> u64 {
    virt - KERNEL_VMA
}

/// A source of zeroed page-table frames (physical addresses).
pub trait FrameSource {
    /// A zeroed 4 KiB frame, or `None` when memory is exhausted.
    fn zeroed_frame(&mut self) -> Option<u64>;
}

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No frame for an intermediate table.
    OutOfMemory,
    /// A large page already covers the address.
    LargePageInTheWay,
    /// Something is already mapped there.
    AlreadyMapped,
}

/// Highest user virtual address + 1 (the canonical lower half).
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Walks the user page tables at `root` for `virt`. Returns the physical
/// address if `virt` is mapped present and user-accessible (and writable when
/// `write`).
pub fn translate_user(guard: &mut KernelGuard, root: u64, virt: u64, write: bool) -> Option<u64> {
    if virt >= USER_END {
        return None;
    }
    let needed = flags::PRESENT | flags::USER | if write { flags::WRITABLE } else { 0 };
    let mut table_phys = root;
    for level in (0..4).rev() {
        let entry = objmem::page_table(guard, table_phys)[index(virt, level)];
        if entry & needed != needed {
            return None;
        }
        if level == 1 && entry & flags::LARGE != 0 {
            return Some(
                (entry & ADDRESS_MASK & !(LARGE_PAGE_SIZE - 1)) + (virt & (LARGE_PAGE_SIZE - 1)),
            );
        }
        table_phys = entry & ADDRESS_MASK;
    }
    Some(table_phys + (virt & (PAGE_SIZE - 1)))
}

/// Maps `phys` at user address `virt` in the tables at `root` (4 KiB, or
/// 2 MiB when `large`); missing tables come from `alloc_table` (zeroed frames).
/// The leaf gets `leaf_flags` (USER and NX included for host tables; a
/// GuestSpace passes its backend's format) plus PRESENT and LARGE.
pub fn map_user(
    guard: &mut KernelGuard,
    root: u64,
    virt: u64,
    phys: u64,
    large: bool,
    leaf_flags: u64,
    alloc_table: &mut dyn FnMut(&mut KernelGuard) -> Option<u64>,
) -> Result<(), MapError> {
    let leaf_level = if large { 1 } else { 0 };
    let mut table_phys = root;
    for level in (leaf_level + 1..4).rev() {
        let entry = objmem::page_table(guard, table_phys)[index(virt, level)];
        if entry & flags::PRESENT == 0 {
            let new = alloc_table(guard).ok_or(MapError::OutOfMemory)?;
            objmem::page_table(guard, table_phys)[index(virt, level)] =
                new | flags::PRESENT | flags::WRITABLE | flags::USER;
            table_phys = new;
        } else if entry & flags::LARGE != 0 {
            return Err(MapError::LargePageInTheWay);
        } else {
            table_phys = entry & ADDRESS_MASK;
        }
    }
    let table = objmem::page_table(guard, table_phys);
    let slot = &mut table[index(virt, leaf_level)];
    if *slot & flags::PRESENT != 0 {
        return Err(MapError::AlreadyMapped);
    }
    *slot =
        (phys & ADDRESS_MASK) | leaf_flags | flags::PRESENT | if large { flags::LARGE } else { 0 };
    Ok(())
}

/// Whether a mapping at `virt` of the given size could be made without
/// allocating a table or replacing anything (dry run for decode-then-invoke):
/// returns the number of tables `map_user` would need, or an error.
pub fn tables_needed(
    guard: &mut KernelGuard,
    root: u64,
    virt: u64,
    large: bool,
) -> Result<u32, MapError> {
    let leaf_level = if large { 1 } else { 0 };
    let mut table_phys = root;
    for level in (leaf_level + 1..4).rev() {
        let entry = objmem::page_table(guard, table_phys)[index(virt, level)];
        if entry & flags::PRESENT == 0 {
            return Ok(level - leaf_level);
        } else if entry & flags::LARGE != 0 {
            return Err(MapError::LargePageInTheWay);
        }
        table_phys = entry & ADDRESS_MASK;
    }
    if objmem::page_table(guard, table_phys)[index(virt, leaf_level)] & flags::PRESENT != 0 {
        return Err(MapError::AlreadyMapped);
    }
    Ok(0)
}

/// Removes the mapping of `virt` if it maps `expected_phys`; returns whether
/// it did.
pub fn unmap_user(
    guard: &mut KernelGuard,
    root: u64,
    virt: u64,
    large: bool,
    expected_phys: u64,
) -> bool {
    let leaf_level = if large { 1 } else { 0 };
    let mut table_phys = root;
    for level in (leaf_level + 1..4).rev() {
        let entry = objmem::page_table(guard, table_phys)[index(virt, level)];
        if entry & flags::PRESENT == 0 || entry & flags::LARGE != 0 {
            return false;
        }
        table_phys = entry & ADDRESS_MASK;
    }
    let table = objmem::page_table(guard, table_phys);
    let slot = &mut table[index(virt, leaf_level)];
    let is_large = *slot & flags::LARGE != 0;
    if *slot & flags::PRESENT == 0 || *slot & ADDRESS_MASK != expected_phys || is_large != large {
        return false;
    }
    *slot = 0;
    true
}

/// Copies the kernel half (PML4 entries 256..512) of `kernel_root` into a new
/// user PML4 at `root`.
pub fn share_kernel_half(guard: &mut KernelGuard, kernel_root: u64, root: u64) {
    let mut upper = [0u64; 256];
    upper.copy_from_slice(&objmem::page_table(guard, kernel_root)[256..]);
    objmem::page_table(guard, root)[256..].copy_from_slice(&upper);
}

/// A 4-level page-table hierarchy, named by its PML4's physical address.
#[derive(Clone, Copy, Debug)]
pub struct PageTables {
    /// Physical address of the PML4.
    pub root: u64,
}

fn table(phys: u64) -> &'static mut [u64; 512] {
    // SAFETY: `phys` is a page-table frame this module allocated (or the root
    // passed in), 4 KiB aligned and reachable through the direct map; page
    // tables are only modified under the owner's lock.
    unsafe { &mut *(phys_to_virt(phys) as *mut [u64; 512]) }
}

fn index(virt: u64, level: u32) -> usize {
    ((virt >> (12 + 9 * level)) & 0x1FF) as usize
}

impl PageTables {
    /// A new, empty hierarchy.
    pub fn new(frames: &mut dyn FrameSource) -> Result<Self, MapError> {
        Ok(Self {
            root: frames.zeroed_frame().ok_or(MapError::OutOfMemory)?,
        })
    }

    /// Walks to the table at `level` (0 = PT) for `virt`, creating missing tables.
    fn walk_create(
        &self,
        virt: u64,
        level: u32,
        frames: &mut dyn FrameSource,
        user: bool,
    ) -> Result<u64, MapError> {
        let mut table_phys = self.root;
        for current in (level + 1..4).rev() {
            let entry = &mut table(table_phys)[index(virt, current)];
            if *entry & flags::PRESENT == 0 {
                let new = frames.zeroed_frame().ok_or(MapError::OutOfMemory)?;
                *entry =
                    new | flags::PRESENT | flags::WRITABLE | if user { flags::USER } else { 0 };
            } else if *entry & flags::LARGE != 0 {
                return Err(MapError::LargePageInTheWay);
            }
            table_phys = *entry & ADDRESS_MASK;
        }
        Ok(table_phys)
    }

    /// Maps one page: 4 KiB, or 2 MiB when `large`.
    pub fn map(
        &self,
        virt: u64,
        phys: u64,
        entry_flags: u64,
        large: bool,
        frames: &mut dyn FrameSource,
    ) -> Result<(), MapError> {
        let level = u32::from(large);
        let leaf = self.walk_create(virt, level, frames, entry_flags & flags::USER != 0)?;
        let size_flag = if large { flags::LARGE } else { 0 };
        table(leaf)[index(virt, level)] =
            (phys & ADDRESS_MASK) | entry_flags | flags::PRESENT | size_flag;
        Ok(())
    }

    /// Maps the physical range `phys` at `virt` with 4 KiB pages.
    pub fn map_range(
        &self,
        virt: u64,
        phys: Range<u64>,
        entry_flags: u64,
        frames: &mut dyn FrameSource,
    ) -> Result<(), MapError> {
        let mut offset = 0;
        while phys.start + offset < phys.end {
            self.map(
                virt + offset,
                phys.start + offset,
                entry_flags,
                false,
                frames,
            )?;
            offset += PAGE_SIZE;
        }
        Ok(())
    }

    /// Makes this hierarchy the current one on this CPU.
    ///
    /// # Safety
    /// The hierarchy must map the running code, stack and all kernel data.
    pub unsafe fn activate(&self) {
        // SAFETY: the caller guarantees the tables map the kernel.
        unsafe { cpu::write_cr3(self.root) };
    }
}
