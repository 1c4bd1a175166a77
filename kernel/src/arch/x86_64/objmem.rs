//! Typed access to kernel-object memory. Kernel objects live in untyped RAM
//! (retyped by user request), reached through the direct map by physical
//! address. Access needs the big kernel lock (`&mut KernelGuard`), so no two
//! references to object memory are ever live at once.
//!
//! # Validated once
//!
//! An object address is checked where it enters the kernel, not at every
//! access. Every address [`object`] and its siblings are given comes, by
//! construction, from one of:
//!
//! - a capability's object field, read from a slot. Slots lie in CNode, TCB
//!   and Vcpu memory and the kernel's own record, none of which user code can
//!   map or write (a frame capability never covers object memory: retype
//!   carves each object out of the untyped range, and an untyped range that
//!   has objects in it cannot be retyped again until revoked, which deletes
//!   them first), so only the kernel writes slot words. The kernel writes an
//!   object address into a capability only in three places: the boot-time
//!   untyped capabilities, checked by [`admit`] (the one place a raw address
//!   enters); retype, which places each object inside its untyped's range,
//!   aligned to the object's size; and copies of an existing capability.
//! - a slot address: a CNode capability's object plus an index below its
//!   size (`object::slot_address`), or a TCB's or Vcpu's own slots, or the
//!   kernel's record (kernel memory).
//! - a kernel link (`reply_to`, queue links, ...), which is a copy of one of
//!   the above and is cleared before the object it names can be retyped
//!   (the reference rule, `object/mod.rs`; `invariants` checks it).
//! - a page-table entry the kernel wrote from a frame or table it made.
//!
//! So every such address lies inside the direct map, aligned for its type.
//! (`cfg(debug_assertions)` builds still check each access.)

use super::lock::KernelGuard;
use super::paging::{phys_to_virt, PAGE_SIZE};

/// A kernel object type: plain data (every field an integer), so every bit
/// pattern is a valid value and zeroed memory is its initial state.
pub trait KernelObject: Sized {}

/// The largest physical address object memory may lie below (set at boot to
/// the end of the direct map).
static DIRECT_MAP_END: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Records the end of the direct map (called once at boot).
pub fn set_direct_map_end(end: u64) {
    DIRECT_MAP_END.store(end, core::sync::atomic::Ordering::Relaxed);
}

/// Checks that `len` bytes at `phys`, aligned to `align`, lie in the direct
/// map (panics otherwise): where a raw physical address enters the kernel
/// (the boot-time untyped memory), so that every object address derived
/// from it is known to be valid (module documentation).
pub fn admit(phys: u64, len: u64, align: u64) {
    if !is_object_memory(phys, len, align) {
        bad_object(phys, len);
    }
}

/// Debug builds re-check every access; release builds rely on the addresses
/// having been admitted once (module documentation).
#[inline(always)]
fn check(phys: u64, len: u64, align: u64) {
    if cfg!(debug_assertions) {
        admit(phys, len, align);
    }
}

/// `len` bytes of firmware memory (ACPI tables) at physical `phys`, read
/// through the direct map; `None` unless the whole range lies inside it (a
/// table's length field cannot make the kernel read past mapped memory).
pub fn firmware_bytes(phys: u64, len: usize) -> Option<&'static [u8]> {
    let end = phys.checked_add(len as u64)?;
    if end > DIRECT_MAP_END.load(core::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    // SAFETY: the range is inside the direct map (checked above), mapped
    // readable for the kernel's lifetime; ACPI tables are firmware-owned
    // RAM the frame allocator never hands out, so nothing writes them while
    // the slice lives.
    Some(unsafe {
        core::slice::from_raw_parts(super::paging::phys_to_virt(phys) as *const u8, len)
    })
}

/// Whether `len` bytes at `phys`, aligned to `align`, lie in object memory
/// (the invariant check vets an address with this before it reads there).
pub fn is_object_memory(phys: u64, len: u64, align: u64) -> bool {
    let end = DIRECT_MAP_END.load(core::sync::atomic::Ordering::Relaxed);
    phys & (align - 1) == 0 && phys < end && len <= end - phys
}

#[cold]
#[inline(never)]
fn bad_object(phys: u64, len: u64) -> ! {
    panic!("kernel object at {phys:#x} (+{len:#x}) outside the direct map");
}

/// The object of type `T` at `phys`, for as long as the guard is borrowed.
///
/// `phys` must name a `T` by kernel invariant (a capability, slot, kernel
/// link or page-table entry of that type, all derived from admitted memory:
/// module documentation).
#[inline(always)]
pub fn object<T: KernelObject>(_guard: &mut KernelGuard, phys: u64) -> &mut T {
    check(
        phys,
        core::mem::size_of::<T>() as u64,
        core::mem::align_of::<T>() as u64,
    );
    // SAFETY: the range is mapped RW in the direct map and aligned for T:
    // `phys` is derived from admitted memory by the construction the module
    // documentation gives (capability and slot words only the kernel
    // writes, retype within the untyped's range, aligned; links cleared
    // before their object's memory is reused). T is plain data valid for
    // any bits, and the unique guard stays borrowed for the returned
    // lifetime, so this is the only live reference into object memory.
    unsafe { &mut *(phys_to_virt(phys) as *mut T) }
}

/// Zeroes `len` bytes of physical memory at `phys` (fresh objects).
pub fn zero(_guard: &mut KernelGuard, phys: u64, len: u64) {
    check(phys, len, 1);
    // SAFETY: the range is inside the direct map (derived from admitted
    // memory, module documentation) and belongs to untyped memory being retyped, which no reference points into.
    unsafe { core::ptr::write_bytes(phys_to_virt(phys) as *mut u8, 0, len as usize) };
}

/// Copies `bytes` into physical memory at `phys`.
pub fn write_bytes(_guard: &mut KernelGuard, phys: u64, bytes: &[u8]) {
    check(phys, bytes.len() as u64, 1);
    // SAFETY: inside the direct map (derived from admitted memory, module
    // documentation); the destination is a frame the
    // kernel owns for this purpose (no reference points into it).
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), phys_to_virt(phys) as *mut u8, bytes.len())
    };
}

/// Copies physical memory at `phys` into `out`.
pub fn read_bytes(_guard: &mut KernelGuard, phys: u64, out: &mut [u8]) {
    check(phys, out.len() as u64, 1);
    // SAFETY: inside the direct map (derived from admitted memory, module
    // documentation); reading plain bytes.
    unsafe {
        core::ptr::copy_nonoverlapping(phys_to_virt(phys) as *const u8, out.as_mut_ptr(), out.len())
    };
}

/// The 512 entries of the page table at `phys`.
pub fn page_table(guard: &mut KernelGuard, phys: u64) -> &mut [u64; 512] {
    check(phys, PAGE_SIZE, PAGE_SIZE);
    object::<PageTable>(guard, phys).entries_mut()
}

#[repr(C, align(4096))]
struct PageTable([u64; 512]);
impl KernelObject for PageTable {}
impl PageTable {
    fn entries_mut(&mut self) -> &mut [u64; 512] {
        &mut self.0
    }
}

/// Reads a slot's four derivation links (shared access for tree walks).
pub fn read_slot_links(_guard: &KernelGuard, slot: u64) -> [u64; 4] {
    check(slot, 64, 64);
    // SAFETY: the slot is inside the direct map and 64-byte aligned (a slot
    // address, module documentation);
    // the links are words 3..7 of the slot. A shared guard borrow guarantees
    // no `&mut` into object memory is live (those need `&mut KernelGuard`).
    unsafe { core::ptr::read((phys_to_virt(slot) as *const [u64; 4]).byte_add(24)) }
}
