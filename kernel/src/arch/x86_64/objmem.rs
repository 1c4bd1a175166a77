//! Typed access to kernel-object memory. Kernel objects live in untyped RAM
//! (retyped by user request), reached through the direct map by physical
//! address. Access needs the big kernel lock (`&mut KernelGuard`), so no two
//! references to object memory are ever live at once.

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

#[inline(always)]
fn check(phys: u64, len: u64, align: u64) {
    let end = DIRECT_MAP_END.load(core::sync::atomic::Ordering::Relaxed);
    if phys & (align - 1) != 0 || phys >= end || len > end - phys {
        bad_object(phys, len);
    }
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
/// `phys` must name a `T` by kernel invariant (a capability or kernel link of
/// that type); a wrong `phys` is a kernel bug but cannot cause undefined
/// behaviour, as `T` is plain data inside the direct map.
pub fn object<T: KernelObject>(_guard: &mut KernelGuard, phys: u64) -> &mut T {
    check(
        phys,
        core::mem::size_of::<T>() as u64,
        core::mem::align_of::<T>() as u64,
    );
    // SAFETY: the range is mapped RW in the direct map (checked above), T is
    // plain data valid for any bits, and the unique guard stays borrowed for
    // the returned lifetime, so this is the only live reference into object
    // memory.
    unsafe { &mut *(phys_to_virt(phys) as *mut T) }
}

/// Zeroes `len` bytes of physical memory at `phys` (fresh objects).
pub fn zero(_guard: &mut KernelGuard, phys: u64, len: u64) {
    check(phys, len, 1);
    // SAFETY: the range is inside the direct map (checked) and belongs to
    // untyped memory being retyped, which no reference points into.
    unsafe { core::ptr::write_bytes(phys_to_virt(phys) as *mut u8, 0, len as usize) };
}

/// Copies `bytes` into physical memory at `phys`.
pub fn write_bytes(_guard: &mut KernelGuard, phys: u64, bytes: &[u8]) {
    check(phys, bytes.len() as u64, 1);
    // SAFETY: inside the direct map (checked); the destination is a frame the
    // kernel owns for this purpose (no reference points into it).
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), phys_to_virt(phys) as *mut u8, bytes.len())
    };
}

/// Copies physical memory at `phys` into `out`.
pub fn read_bytes(_guard: &mut KernelGuard, phys: u64, out: &mut [u8]) {
    check(phys, out.len() as u64, 1);
    // SAFETY: inside the direct map (checked); reading plain bytes.
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
    // SAFETY: the slot is inside the direct map (checked) and 64-byte aligned;
    // the links are words 3..7 of the slot. A shared guard borrow guarantees
    // no `&mut` into object memory is live (those need `&mut KernelGuard`).
    unsafe { core::ptr::read((phys_to_virt(slot) as *const [u64; 4]).byte_add(24)) }
}
