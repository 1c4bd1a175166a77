//! What a task builder allocates from: free slots of the caller's root CNode
//! ([`SlotAllocator`]) and untyped memory ([`UntypedAllocator`]), bundled
//! with the caller's own CNode and VSpace capabilities as [`Resources`].
//!
//! The untyped allocator mirrors the kernel's placement rule: objects are
//! placed at an untyped's watermark, aligned (physically) to their size, so
//! the allocator knows in advance whether a request fits. If the kernel still
//! says `OutOfMemory` (the mirror was wrong), that untyped is treated as full
//! and the next one is tried.

use crate::invoke;
use crate::layout::{self, slot};
use alloc::vec::Vec;
use tarn_ipc_schema::boot::BootInfo;
use tarn_ipc_schema::{CPtr, Error, ObjectType};

/// log2 slots of the largest CNode (`tarn_ipc_schema::object_size`).
pub const MAX_CNODE_BITS: u64 = 16;

/// The free slots `first..end` of a CNode, as a bitmap: a slot is handed
/// out lowest first, and a run of consecutive slots ([`alloc_range`]) is
/// found among the freed ones too, so slots given back always serve again
/// (a bump pointer with a free list of single slots never got back the
/// ranges program images take, and ran out after ~1400 domains).
///
/// [`alloc_range`]: SlotAllocator::alloc_range
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotAllocator {
    first: u64,
    end: u64,
    /// Bit `i` of word `i / 64` set: slot `first + i` is in use.
    used: Vec<u64>,
}

impl SlotAllocator {
    /// Hands out slots `first..end`.
    pub fn new(first: u64, end: u64) -> Self {
        let count = end.saturating_sub(first);
        SlotAllocator {
            first,
            end: first + count,
            used: alloc::vec![0; count.div_ceil(64) as usize],
        }
    }

    fn is_used(&self, index: u64) -> bool {
        self.used[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    fn set(&mut self, index: u64, used: bool) {
        let word = &mut self.used[(index / 64) as usize];
        if used {
            *word |= 1 << (index % 64);
        } else {
            *word &= !(1 << (index % 64));
        }
    }

    /// The lowest free slot (`OutOfRange` when none is left).
    pub fn alloc(&mut self) -> Result<CPtr, Error> {
        self.alloc_range(1)
    }

    /// The lowest `count` consecutive free slots; returns the first
    /// (`OutOfRange` when no such run is left, or `count` is 0).
    pub fn alloc_range(&mut self, count: u64) -> Result<CPtr, Error> {
        let slots = self.end - self.first;
        if count == 0 || count > slots {
            return Err(Error::OutOfRange);
        }
        let mut run_start = 0;
        let mut index = 0;
        while index < slots {
            // Whole words in use are skipped at once.
            if index % 64 == 0 && self.used[(index / 64) as usize] == u64::MAX {
                index += 64;
                run_start = index;
                continue;
            }
            if self.is_used(index) {
                run_start = index + 1;
            } else if index + 1 - run_start == count {
                for slot in run_start..=index {
                    self.set(slot, true);
                }
                return Ok(self.first + run_start);
            }
            index += 1;
        }
        Err(Error::OutOfRange)
    }

    /// Returns an (empty) slot for reuse; a slot outside the range is
    /// ignored.
    pub fn free(&mut self, slot: CPtr) {
        if (self.first..self.end).contains(&slot) {
            self.set(slot - self.first, false);
        }
    }

    /// The slots handed out since `earlier` (a clone of this allocator taken
    /// before) and not given back: what a piece of work allocated, so that
    /// it can be cleared and freed as a whole later.
    pub fn handed_out_since(&self, earlier: &SlotAllocator) -> Vec<CPtr> {
        (0..self.end - self.first)
            .filter(|&i| self.is_used(i) && !earlier.is_used(i))
            .map(|i| self.first + i)
            .collect()
    }

    /// Slots in the range, free or not.
    pub fn capacity(&self) -> u64 {
        self.end - self.first
    }

    /// Extends the range to end at `end` (the CNode grew); the new slots
    /// are free. A smaller `end` changes nothing.
    pub fn grow(&mut self, end: u64) {
        if end > self.end {
            self.end = end;
            self.used
                .resize((end - self.first).div_ceil(64) as usize, 0);
        }
    }

    /// Slots still available.
    pub fn remaining(&self) -> u64 {
        let used: u64 = self.used.iter().map(|w| u64::from(w.count_ones())).sum();
        (self.end - self.first) - used
    }
}

/// log2 of the bytes an object of `object_type` (with `size_bits`) occupies
/// in untyped memory (the ABI's [`tarn_ipc_schema::object_size`]); `None` for
/// types that cannot be retyped.
pub const fn object_size_bits(object_type: ObjectType, size_bits: u64) -> Option<u64> {
    match tarn_ipc_schema::object_size(object_type, size_bits) {
        Some(bytes) => Some(bytes.trailing_zeros() as u64),
        None => None,
    }
}

/// One untyped capability and how much of it is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UntypedRegion {
    /// Its capability (in the owner's root CNode).
    pub cptr: CPtr,
    /// Physical base.
    pub phys: u64,
    /// log2 of its size.
    pub size_bits: u64,
    /// The kernel's watermark as mirrored here (bytes from `phys`).
    pub watermark: u64,
}

impl UntypedRegion {
    /// Size in bytes.
    pub const fn bytes(&self) -> u64 {
        1 << self.size_bits
    }

    /// Where `count` objects of 2^`object_bits` bytes would go (offsets
    /// `start..end` from `phys`), if they fit.
    pub fn placement(&self, object_bits: u64, count: u64) -> Option<(u64, u64)> {
        if object_bits >= 64 {
            return None;
        }
        let object_bytes = 1u64 << object_bits;
        let start =
            (self.phys + self.watermark).checked_next_multiple_of(object_bytes)? - self.phys;
        let end = start.checked_add(object_bytes.checked_mul(count)?)?;
        (end <= self.bytes()).then_some((start, end))
    }
}

/// Allocates objects from a set of untyped capabilities.
#[derive(Clone, Debug, Default)]
pub struct UntypedAllocator {
    regions: Vec<UntypedRegion>,
}

impl UntypedAllocator {
    /// No memory yet.
    pub const fn new() -> Self {
        UntypedAllocator {
            regions: Vec::new(),
        }
    }

    /// The untyped capabilities a start page (or the boot information) lists.
    pub fn from_boot_info(info: &BootInfo) -> Self {
        let mut allocator = Self::new();
        for desc in info.untyped() {
            allocator.add(desc.slot, desc.phys, desc.size_bits);
        }
        allocator
    }

    /// Adds an untyped capability (unused: watermark 0).
    pub fn add(&mut self, cptr: CPtr, phys: u64, size_bits: u64) {
        self.regions.push(UntypedRegion {
            cptr,
            phys,
            size_bits,
            watermark: 0,
        });
        // Smallest first: small requests fill small regions and leave the
        // large ones whole for large requests.
        self.regions.sort_by_key(|r| (r.size_bits, r.phys));
    }

    /// Removes the region of capability `cptr` (to hand it to someone else).
    pub fn remove(&mut self, cptr: CPtr) -> Option<UntypedRegion> {
        let index = self.regions.iter().position(|r| r.cptr == cptr)?;
        Some(self.regions.remove(index))
    }

    /// The regions.
    pub fn regions(&self) -> &[UntypedRegion] {
        &self.regions
    }

    /// Marks `cptr`'s region as empty again (after revoking it).
    pub fn reset(&mut self, cptr: CPtr) {
        if let Some(region) = self.regions.iter_mut().find(|r| r.cptr == cptr) {
            region.watermark = 0;
        }
    }

    /// Marks `cptr`'s region as used up (its rest was handed elsewhere).
    pub fn mark_full(&mut self, cptr: CPtr) {
        if let Some(region) = self.regions.iter_mut().find(|r| r.cptr == cptr) {
            region.watermark = region.bytes();
        }
    }

    /// Bytes not yet handed out (ignoring alignment losses).
    pub fn free_bytes(&self) -> u64 {
        self.regions
            .iter()
            .map(|r| r.bytes() - r.watermark.min(r.bytes()))
            .sum()
    }

    /// Retypes `count` objects into `dest_cnode` slots `first..first + count`
    /// from the first region they fit in. Returns the physical address of
    /// the first object.
    pub fn retype(
        &mut self,
        object_type: ObjectType,
        size_bits: u64,
        dest_cnode: CPtr,
        first: u64,
        count: u64,
    ) -> Result<u64, Error> {
        let object_bits = object_size_bits(object_type, size_bits).ok_or(Error::InvalidArgument)?;
        self.retype_with(object_type, size_bits, object_bits, count, |untyped| {
            invoke::untyped_retype(untyped, object_type, size_bits, dest_cnode, first, count)
        })
    }

    /// The allocation policy, with the kernel call abstracted (for host tests).
    fn retype_with(
        &mut self,
        _object_type: ObjectType,
        _size_bits: u64,
        object_bits: u64,
        count: u64,
        mut kernel: impl FnMut(CPtr) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        for region in self.regions.iter_mut() {
            let Some((start, end)) = region.placement(object_bits, count) else {
                continue;
            };
            match kernel(region.cptr) {
                Ok(()) => {
                    region.watermark = end;
                    return Ok(region.phys + start);
                }
                Err(Error::OutOfMemory) => region.watermark = region.bytes(),
                Err(other) => return Err(other),
            }
        }
        Err(Error::OutOfMemory)
    }
}

/// The caller's own capabilities and what it allocates from.
#[derive(Clone, Debug)]
pub struct Resources {
    /// The caller's root CNode (where new capabilities go).
    pub cnode: CPtr,
    /// log2 of its slots.
    pub cnode_bits: u64,
    /// The caller's address space.
    pub vspace: CPtr,
    /// Free slots of `cnode`.
    pub slots: SlotAllocator,
    /// Untyped memory.
    pub untyped: UntypedAllocator,
}

impl Resources {
    /// The resources a start page (or the root task's boot information)
    /// describes: the standard CNode and VSpace slots, slots from
    /// `first_free_slot` to the end of the CNode, and the listed untyped.
    pub fn from_boot_info(info: &BootInfo) -> Self {
        Resources {
            cnode: slot::ROOT_CNODE,
            cnode_bits: info.root_cnode_bits,
            vspace: slot::ROOT_VSPACE,
            slots: SlotAllocator::new(info.first_free_slot, 1 << info.root_cnode_bits),
            untyped: UntypedAllocator::from_boot_info(info),
        }
    }

    /// Whether the caller's CNode should grow ([`Self::grow_cspace`]):
    /// fewer than 1/8 of its slots are free, and it is not the largest a
    /// CNode can be.
    pub fn cspace_low(&self) -> bool {
        self.cnode_bits < MAX_CNODE_BITS && self.slots.remaining() < self.slots.capacity() / 8
    }

    /// Grows the caller's CNode to twice its slots (`CNodeGrow`): a CNode
    /// of 2^(`cnode_bits` + 1) slots is retyped from the untyped capability
    /// `memory` (2^(`cnode_bits` + 7) bytes suffice) into a free slot, and
    /// takes the old one's place; every capability keeps its pointer.
    /// Returns that slot, which then holds the capability to the emptied
    /// old CNode (the caller deletes it, or revokes the memory it came
    /// from). On error nothing changed.
    pub fn grow_cspace(&mut self, memory: CPtr) -> Result<CPtr, Error> {
        let bits = self.cnode_bits + 1;
        if bits > MAX_CNODE_BITS {
            return Err(Error::OutOfRange);
        }
        let slot = self.slots.alloc()?;
        let grown = invoke::untyped_retype(memory, ObjectType::CNode, bits, self.cnode, slot, 1)
            .and_then(|()| {
                invoke::cnode_grow(self.cnode, slot).inspect_err(|_| {
                    let _ = invoke::cnode_delete(self.cnode, slot);
                })
            });
        if let Err(error) = grown {
            self.slots.free(slot);
            return Err(error);
        }
        self.cnode_bits = bits;
        self.slots.grow(1 << bits);
        Ok(slot)
    }

    /// Learns the real watermark of every untyped region larger than a page:
    /// the kernel may already have carved objects out of some (it builds the
    /// root task's own objects from its largest region, and the boot
    /// information does not say how much). Retypes one page from each region,
    /// reads its physical address and deletes it again, so each region costs
    /// one page.
    pub fn sync_untyped(&mut self) -> Result<(), Error> {
        let probe = self.slots.alloc()?;
        for index in 0..self.untyped.regions.len() {
            let region = self.untyped.regions[index];
            if region.size_bits <= 12 {
                continue;
            }
            let watermark = match invoke::untyped_retype(
                region.cptr,
                ObjectType::Frame4K,
                0,
                self.cnode,
                probe,
                1,
            ) {
                Ok(()) => {
                    let address = invoke::frame_get_address(probe);
                    invoke::cnode_delete(self.cnode, probe)?;
                    address? + layout::PAGE_SIZE - region.phys
                }
                Err(Error::OutOfMemory) => region.bytes(),
                Err(other) => return Err(other),
            };
            self.untyped.regions[index].watermark = watermark;
        }
        self.slots.free(probe);
        Ok(())
    }

    /// A free slot.
    pub fn alloc_slot(&mut self) -> Result<CPtr, Error> {
        self.slots.alloc()
    }

    /// One new object in a fresh slot of the caller's CNode.
    pub fn create(&mut self, object_type: ObjectType, size_bits: u64) -> Result<CPtr, Error> {
        self.create_many(object_type, size_bits, 1)
    }

    /// `count` new objects in consecutive fresh slots; returns the first.
    pub fn create_many(
        &mut self,
        object_type: ObjectType,
        size_bits: u64,
        count: u64,
    ) -> Result<CPtr, Error> {
        let first = if count == 1 {
            self.slots.alloc()?
        } else {
            self.slots.alloc_range(count)?
        };
        match self
            .untyped
            .retype(object_type, size_bits, self.cnode, first, count)
        {
            Ok(_) => Ok(first),
            Err(error) => {
                for slot in first..first + count {
                    self.slots.free(slot);
                }
                Err(error)
            }
        }
    }

    /// `count` new objects in `dest_cnode` slots `first..first + count`;
    /// returns the physical address of the first.
    pub fn create_in(
        &mut self,
        object_type: ObjectType,
        size_bits: u64,
        dest_cnode: CPtr,
        first: u64,
        count: u64,
    ) -> Result<u64, Error> {
        self.untyped
            .retype(object_type, size_bits, dest_cnode, first, count)
    }

    /// A new untyped capability of 2^`size_bits` bytes in a fresh slot:
    /// (slot, physical base).
    pub fn create_untyped(&mut self, size_bits: u64) -> Result<(CPtr, u64), Error> {
        let slot = self.slots.alloc()?;
        match self
            .untyped
            .retype(ObjectType::Untyped, size_bits, self.cnode, slot, 1)
        {
            Ok(phys) => Ok((slot, phys)),
            Err(error) => {
                self.slots.free(slot);
                Err(error)
            }
        }
    }

    /// Deletes the capability in `slot` of the caller's CNode and frees the slot.
    pub fn delete(&mut self, slot: CPtr) -> Result<(), Error> {
        invoke::cnode_delete(self.cnode, slot)?;
        self.slots.free(slot);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn slots_lowest_first_then_reuse() {
        let mut slots = SlotAllocator::new(16, 20);
        assert_eq!(slots.alloc(), Ok(16));
        assert_eq!(slots.alloc_range(2), Ok(17));
        assert_eq!(slots.alloc_range(2), Err(Error::OutOfRange));
        slots.free(17);
        assert_eq!(slots.alloc(), Ok(17));
        assert_eq!(slots.alloc(), Ok(19));
        assert_eq!(slots.alloc(), Err(Error::OutOfRange));
        assert_eq!(slots.remaining(), 0);
        assert_eq!(slots.alloc_range(0), Err(Error::OutOfRange));
    }

    /// Issue 10: each domain's program image takes a run of slots; freed
    /// runs must serve again, or the CNode runs out after ~1400 domains.
    #[test]
    fn freed_ranges_serve_again_forever() {
        let mut slots = SlotAllocator::new(16, 4096);
        let permanent = slots.alloc_range(100).unwrap();
        for round in 0..10_000 {
            let image = slots
                .alloc_range(7)
                .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
            let single = slots.alloc().unwrap();
            slots.free(single);
            for slot in image..image + 7 {
                slots.free(slot);
            }
        }
        assert_eq!(slots.remaining(), 4096 - 16 - 100);
        assert_eq!(permanent, 16);
    }

    #[test]
    fn ranges_fit_into_holes_and_across_words() {
        let mut slots = SlotAllocator::new(0, 256);
        let all = slots.alloc_range(256).unwrap();
        assert_eq!(all, 0);
        // Holes: 10..13 (3 slots) and 60..70 (10 slots, across a word).
        for s in (10..13).chain(60..70) {
            slots.free(s);
        }
        assert_eq!(slots.alloc_range(4), Ok(60));
        assert_eq!(slots.alloc_range(3), Ok(10));
        assert_eq!(slots.alloc_range(6), Ok(64));
        assert_eq!(slots.alloc(), Err(Error::OutOfRange));
        slots.free(9999);
        assert_eq!(slots.remaining(), 0);
    }

    #[test]
    fn a_grown_range_hands_out_its_new_slots_and_keeps_the_old() {
        let mut slots = SlotAllocator::new(16, 100);
        let first = slots.alloc_range(84).unwrap();
        assert_eq!((first, slots.alloc()), (16, Err(Error::OutOfRange)));
        slots.free(50);
        slots.grow(200);
        assert_eq!(slots.capacity(), 184);
        assert_eq!(slots.remaining(), 101);
        assert_eq!(slots.alloc(), Ok(50));
        assert_eq!(slots.alloc_range(100), Ok(100));
        assert_eq!(slots.alloc(), Err(Error::OutOfRange));
        slots.grow(150);
        assert_eq!(slots.capacity(), 184);
    }

    #[test]
    fn what_was_handed_out_since_a_snapshot() {
        let mut slots = SlotAllocator::new(16, 32);
        let a = slots.alloc().unwrap();
        slots.free(a);
        let before = slots.clone();
        let reused = slots.alloc().unwrap(); // the freed slot again
        let b = slots.alloc().unwrap();
        let c = slots.alloc().unwrap();
        slots.free(b); // handed out and given back: not counted
        let got = slots.handed_out_since(&before);
        assert_eq!((reused, got), (a, std::vec![a, c]));
    }

    #[test]
    fn placement_aligns_physically() {
        // An untyped at 1 MiB + 64 bytes of endpoint: a frame goes to the next page.
        let region = UntypedRegion {
            cptr: 1,
            phys: 0x10_0000,
            size_bits: 16,
            watermark: 64,
        };
        assert_eq!(region.placement(12, 1), Some((0x1000, 0x2000)));
        assert_eq!(region.placement(6, 2), Some((64, 192)));
        // 16 frames need the whole 64 KiB, which the endpoint already dents.
        assert_eq!(region.placement(12, 16), None);
        assert_eq!(region.placement(12, 15), Some((0x1000, 0x10000)));
    }

    #[test]
    fn placement_refuses_objects_larger_than_the_region() {
        let region = UntypedRegion {
            cptr: 1,
            phys: 0x20_0000,
            size_bits: 20,
            watermark: 0,
        };
        assert_eq!(region.placement(21, 1), None);
        assert_eq!(region.placement(20, 1), Some((0, 1 << 20)));
    }

    #[test]
    fn allocator_prefers_small_regions_and_tracks_watermarks() {
        let mut untyped = UntypedAllocator::new();
        untyped.add(10, 0x100_0000, 24);
        untyped.add(11, 0x8000, 15);
        let mut used = std::vec::Vec::new();
        for _ in 0..8 {
            untyped
                .retype_with(ObjectType::Frame4K, 0, 12, 1, |cptr| {
                    used.push(cptr);
                    Ok(())
                })
                .unwrap();
        }
        // 32 KiB holds 8 frames; the ninth goes to the large region.
        untyped
            .retype_with(ObjectType::Frame4K, 0, 12, 1, |cptr| {
                used.push(cptr);
                Ok(())
            })
            .unwrap();
        assert_eq!(used, [11, 11, 11, 11, 11, 11, 11, 11, 10]);
        assert_eq!(untyped.regions()[0].watermark, 0x8000);
        assert_eq!(untyped.regions()[1].watermark, 0x1000);
    }

    #[test]
    fn kernel_out_of_memory_moves_on() {
        let mut untyped = UntypedAllocator::new();
        untyped.add(10, 0x100_0000, 24);
        untyped.add(11, 0x8000, 15);
        let mut tried = std::vec::Vec::new();
        let result = untyped.retype_with(ObjectType::Frame4K, 0, 12, 1, |cptr| {
            tried.push(cptr);
            if cptr == 11 {
                Err(Error::OutOfMemory)
            } else {
                Ok(())
            }
        });
        assert_eq!(result, Ok(0x100_0000));
        assert_eq!(tried, [11, 10]);
        assert_eq!(untyped.regions()[0].watermark, 0x8000);
    }

    #[test]
    fn other_errors_are_returned() {
        let mut untyped = UntypedAllocator::new();
        untyped.add(10, 0x100_0000, 24);
        let result =
            untyped.retype_with(ObjectType::Frame4K, 0, 12, 1, |_| Err(Error::SlotOccupied));
        assert_eq!(result, Err(Error::SlotOccupied));
        assert_eq!(untyped.regions()[0].watermark, 0);
    }
}
