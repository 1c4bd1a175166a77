//! Untyped memory that comes back whole: a buddy allocator over untyped
//! capabilities, for things that are built and later taken back (a
//! domain, a scheduler server, a pool's `Scheduler`).
//!
//! A block of 2^n bytes is an untyped capability. Splitting it retypes two
//! untyped children of 2^(n-1) from it (the lower half first, so each lands
//! on its own half); a block is handed out whole ([`BuddyAllocator::alloc`])
//! and everything built in it goes when it is freed ([`BuddyAllocator::free`]
//! revokes it). When both halves of a split block are free again, the parent
//! is revoked, which deletes the two children's capabilities and resets the
//! parent's watermark: the two halves are one block again, and can serve a
//! request twice their size. So freed memory serves any later need (a
//! domain's 4 MiB, a server's 8 MiB, a 4 KiB `Scheduler`): nothing is kept
//! back by size, and once everything built is freed the blocks, their
//! capabilities and their slots are exactly what they were.
//!
//! Why revoke-to-parent rather than a free list of cut pieces: the kernel
//! only places objects at an untyped's watermark, and revoking an untyped
//! is the one way to move that watermark back; keeping the buddy tree as
//! real parent and child capabilities makes every merge a single revoke.
//!
//! Placement is deterministic: the smallest free block that fits, the
//! lowest address among those. The kernel operations go through
//! [`UntypedOps`], so the bookkeeping is tested on the host.

use crate::invoke;
use crate::resources::Resources;
use alloc::vec::Vec;
use tarn_ipc_schema::{CPtr, Error, ObjectType};

/// Smallest block (log2 bytes): the kernel's smallest untyped.
pub const MIN_BLOCK_BITS: u64 = 12;

/// What the allocator needs from the kernel and the slot allocator.
pub trait UntypedOps {
    /// Retypes one untyped child of 2^`bits` bytes from `parent` (at its
    /// watermark) into a fresh slot; returns the slot.
    fn split(&mut self, parent: CPtr, bits: u64) -> Result<CPtr, Error>;
    /// Revokes `cap`: everything derived from it goes, its watermark is 0.
    fn revoke(&mut self, cap: CPtr) -> Result<(), Error>;
    /// Frees a slot whose capability is gone.
    fn free_slot(&mut self, slot: CPtr);
}

/// The kernel's untyped operations, slots from `resources`.
pub struct KernelUntyped<'a>(pub &'a mut Resources);

impl UntypedOps for KernelUntyped<'_> {
    fn split(&mut self, parent: CPtr, bits: u64) -> Result<CPtr, Error> {
        let slot = self.0.slots.alloc()?;
        match invoke::untyped_retype(parent, ObjectType::Untyped, bits, self.0.cnode, slot, 1) {
            Ok(()) => Ok(slot),
            Err(error) => {
                self.0.slots.free(slot);
                Err(error)
            }
        }
    }

    fn revoke(&mut self, cap: CPtr) -> Result<(), Error> {
        invoke::cnode_revoke(self.0.cnode, cap)
    }

    fn free_slot(&mut self, slot: CPtr) {
        self.0.slots.free(slot);
    }
}

/// A block handed out: its untyped capability and where it lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// The untyped capability (everything built in the block derives from it).
    pub cptr: CPtr,
    /// Physical base.
    pub phys: u64,
    /// log2 of its size.
    pub bits: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Used,
    /// Its two halves are blocks of their own.
    Split,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Node {
    block: Block,
    state: State,
    /// Given to the allocator as is (never merged with a neighbour).
    top: bool,
}

/// The buddy allocator (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct BuddyAllocator {
    /// Every block: free, used, or split into the two that follow it in
    /// this list's order (by address, then larger first).
    nodes: Vec<Node>,
}

impl BuddyAllocator {
    /// No memory yet.
    pub const fn new() -> Self {
        BuddyAllocator { nodes: Vec::new() }
    }

    /// Adds an unused untyped capability of 2^`bits` bytes at `phys` (aligned
    /// to its size, as every untyped is) as a block of its own.
    pub fn add(&mut self, cptr: CPtr, phys: u64, bits: u64) {
        self.insert(Node {
            block: Block { cptr, phys, bits },
            state: State::Free,
            top: true,
        });
    }

    /// Takes the memory `resources` has not used yet: each untyped region's
    /// part above its watermark (learnt from the kernel first, see
    /// [`Resources::sync_untyped`]) is cut into the largest aligned blocks
    /// it holds, each an untyped child of the region, and added here. The
    /// regions then count as full. Returns the bytes taken.
    pub fn take_unused(&mut self, resources: &mut Resources) -> Result<u64, Error> {
        resources.sync_untyped()?;
        let mut taken = 0;
        let regions: Vec<_> = resources.untyped.regions().to_vec();
        for region in regions {
            let end = region.phys + region.bytes();
            let mut start = (region.phys + region.watermark).next_multiple_of(1 << MIN_BLOCK_BITS);
            while start < end {
                let fits = 63 - (end - start).leading_zeros() as u64;
                let bits = u64::from(start.trailing_zeros()).min(fits).min(40);
                let slot = resources.slots.alloc()?;
                if let Err(error) = invoke::untyped_retype(
                    region.cptr,
                    ObjectType::Untyped,
                    bits,
                    resources.cnode,
                    slot,
                    1,
                ) {
                    resources.slots.free(slot);
                    return Err(error);
                }
                self.add(slot, start, bits);
                taken += 1 << bits;
                start += 1 << bits;
            }
            resources.untyped.mark_full(region.cptr);
        }
        Ok(taken)
    }

    fn insert(&mut self, node: Node) {
        let key = |n: &Node| (n.block.phys, u64::MAX - n.block.bits);
        let at = self
            .nodes
            .binary_search_by_key(&key(&node), key)
            .unwrap_or_else(|i| i);
        self.nodes.insert(at, node);
        // The list's capacity follows its length, so the heap it takes is
        // the same whenever the blocks are.
        self.nodes.shrink_to_fit();
    }

    fn find(&self, phys: u64, bits: u64) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.block.phys == phys && n.block.bits == bits)
    }

    /// Bytes in free blocks.
    pub fn free_bytes(&self) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.state == State::Free)
            .map(|n| 1u64 << n.block.bits)
            .sum()
    }

    /// Blocks the allocator knows (free, used and split): one capability each.
    pub fn block_count(&self) -> usize {
        self.nodes.len()
    }

    /// A free block of 2^`bits` bytes (at least [`MIN_BLOCK_BITS`]): the
    /// smallest free block that fits, lowest address first, split down to
    /// size. `OutOfMemory` when none fits; then nothing changed.
    pub fn alloc(&mut self, ops: &mut impl UntypedOps, bits: u64) -> Result<Block, Error> {
        let bits = bits.max(MIN_BLOCK_BITS);
        let mut index = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.state == State::Free && n.block.bits >= bits)
            .min_by_key(|(_, n)| (n.block.bits, n.block.phys))
            .map(|(i, _)| i)
            .ok_or(Error::OutOfMemory)?;
        while self.nodes[index].block.bits > bits {
            let parent = self.nodes[index].block;
            let half = parent.bits - 1;
            let low = ops.split(parent.cptr, half)?;
            let high = match ops.split(parent.cptr, half) {
                Ok(slot) => slot,
                Err(error) => {
                    // Undo the lower half: the parent is whole again.
                    let _ = ops.revoke(parent.cptr);
                    ops.free_slot(low);
                    return Err(error);
                }
            };
            self.nodes[index].state = State::Split;
            for (cptr, phys) in [(high, parent.phys + (1 << half)), (low, parent.phys)] {
                self.insert(Node {
                    block: Block {
                        cptr,
                        phys,
                        bits: half,
                    },
                    state: State::Free,
                    top: false,
                });
            }
            index = self.find(parent.phys, half).ok_or(Error::OutOfMemory)?;
        }
        self.nodes[index].state = State::Used;
        Ok(self.nodes[index].block)
    }

    /// Takes back the block whose capability is `cptr`: revokes it (every
    /// object built in it goes), then merges it with its buddy while that
    /// is free too. `InvalidArgument` if no block of it is in use.
    pub fn free(&mut self, ops: &mut impl UntypedOps, cptr: CPtr) -> Result<(), Error> {
        let index = self
            .nodes
            .iter()
            .position(|n| n.block.cptr == cptr && n.state == State::Used)
            .ok_or(Error::InvalidArgument)?;
        ops.revoke(cptr)?;
        self.nodes[index].state = State::Free;
        let mut block = self.nodes[index].block;
        loop {
            let Some(me) = self.find(block.phys, block.bits) else {
                return Ok(());
            };
            if self.nodes[me].top {
                return Ok(());
            }
            let buddy_phys = block.phys ^ (1 << block.bits);
            let buddy = self.find(buddy_phys, block.bits);
            let parent_phys = block.phys & !((2 << block.bits) - 1);
            let parent = self.find(parent_phys, block.bits + 1);
            let (Some(buddy), Some(parent)) = (buddy, parent) else {
                return Ok(());
            };
            if self.nodes[buddy].state != State::Free {
                return Ok(());
            }
            // Both halves are empty: revoking the parent deletes their
            // capabilities and makes it whole.
            let halves = [self.nodes[me].block.cptr, self.nodes[buddy].block.cptr];
            ops.revoke(self.nodes[parent].block.cptr)?;
            for slot in halves {
                ops.free_slot(slot);
            }
            self.nodes[parent].state = State::Free;
            block = self.nodes[parent].block;
            self.nodes.retain(|n| {
                !(n.block.bits == block.bits - 1
                    && (n.block.phys & !((1 << block.bits) - 1)) == block.phys)
            });
            self.nodes.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::vec::Vec;

    /// A model of the kernel: untyped capabilities with watermarks and
    /// parents; a revoke deletes every descendant.
    #[derive(Default)]
    struct Fake {
        /// slot → (phys, bits, watermark, parent slot)
        caps: BTreeMap<CPtr, (u64, u64, u64, Option<CPtr>)>,
        next_slot: CPtr,
        free_slots: BTreeSet<CPtr>,
        fail_split_after: Option<usize>,
    }

    impl Fake {
        fn top(&mut self, phys: u64, bits: u64) -> CPtr {
            self.next_slot += 1;
            self.caps.insert(self.next_slot, (phys, bits, 0, None));
            self.next_slot
        }
    }

    impl UntypedOps for Fake {
        fn split(&mut self, parent: CPtr, bits: u64) -> Result<CPtr, Error> {
            if let Some(n) = self.fail_split_after.as_mut() {
                if *n == 0 {
                    return Err(Error::OutOfRange);
                }
                *n -= 1;
            }
            let (phys, pbits, watermark, _) =
                *self.caps.get(&parent).ok_or(Error::InvalidCapability)?;
            let start = (phys + watermark).next_multiple_of(1 << bits);
            if start + (1 << bits) > phys + (1 << pbits) {
                return Err(Error::OutOfMemory);
            }
            self.caps.get_mut(&parent).unwrap().2 = start + (1 << bits) - phys;
            let slot = match self.free_slots.pop_first() {
                Some(s) => s,
                None => {
                    self.next_slot += 1;
                    self.next_slot
                }
            };
            self.caps.insert(slot, (start, bits, 0, Some(parent)));
            Ok(slot)
        }

        fn revoke(&mut self, cap: CPtr) -> Result<(), Error> {
            loop {
                let children: Vec<CPtr> = self
                    .caps
                    .iter()
                    .filter(|(_, c)| c.3 == Some(cap))
                    .map(|(s, _)| *s)
                    .collect();
                if children.is_empty() {
                    break;
                }
                for child in children {
                    self.revoke(child)?;
                    self.caps.remove(&child);
                }
            }
            self.caps.get_mut(&cap).ok_or(Error::InvalidCapability)?.2 = 0;
            Ok(())
        }

        fn free_slot(&mut self, slot: CPtr) {
            assert!(
                !self.caps.contains_key(&slot),
                "freed a slot still holding a capability"
            );
            self.free_slots.insert(slot);
        }
    }

    #[test]
    fn splits_down_to_size_at_the_lowest_address() {
        let mut fake = Fake::default();
        let mut buddy = BuddyAllocator::new();
        let top = fake.top(0x100_0000, 24);
        buddy.add(top, 0x100_0000, 24);
        let a = buddy.alloc(&mut fake, 22).unwrap();
        assert_eq!((a.phys, a.bits), (0x100_0000, 22));
        // 16 MiB → 8 + 8 → 4 + 4: three blocks besides the top, one per cap.
        assert_eq!(buddy.block_count(), 5);
        let b = buddy.alloc(&mut fake, 22).unwrap();
        assert_eq!(b.phys, 0x140_0000);
        let c = buddy.alloc(&mut fake, 23).unwrap();
        assert_eq!(c.phys, 0x180_0000);
        assert_eq!(buddy.alloc(&mut fake, 12), Err(Error::OutOfMemory));
        assert_eq!(buddy.free_bytes(), 0);
    }

    /// Issue 10: 56 freed 4 MiB domain cells must serve an 8 MiB server.
    #[test]
    fn freed_halves_merge_and_serve_a_larger_request() {
        let mut fake = Fake::default();
        let mut buddy = BuddyAllocator::new();
        let top = fake.top(0, 26);
        buddy.add(top, 0, 26);
        let cells: Vec<Block> = (0..16)
            .map(|_| buddy.alloc(&mut fake, 22).unwrap())
            .collect();
        assert_eq!(buddy.alloc(&mut fake, 23), Err(Error::OutOfMemory));
        for cell in &cells {
            buddy.free(&mut fake, cell.cptr).unwrap();
        }
        // Whole again: one block, one capability, the whole 64 MiB free.
        assert_eq!(buddy.block_count(), 1);
        assert_eq!(fake.caps.len(), 1);
        assert_eq!(buddy.free_bytes(), 1 << 26);
        let whole = buddy.alloc(&mut fake, 26).unwrap();
        assert_eq!(whole.cptr, top);
    }

    #[test]
    fn churn_leaves_blocks_caps_and_slots_as_they_were() {
        let mut fake = Fake::default();
        let mut buddy = BuddyAllocator::new();
        for (phys, bits) in [
            (0x1000, 12),
            (0x4000, 14),
            (0x100_0000, 24),
            (0x400_0000, 26),
        ] {
            let cap = fake.top(phys, bits);
            buddy.add(cap, phys, bits);
        }
        let server = buddy.alloc(&mut fake, 23).unwrap();
        let scheduler = buddy.alloc(&mut fake, 12).unwrap();
        let before = (buddy.block_count(), fake.caps.len(), buddy.free_bytes());
        let mut seed = 7u64;
        let mut live: Vec<Block> = Vec::new();
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if !seed.is_multiple_of(3) || live.is_empty() {
                let bits = [12, 22, 22, 23][(seed >> 8) as usize % 4];
                if let Ok(block) = buddy.alloc(&mut fake, bits) {
                    live.push(block);
                }
            } else {
                let victim = live.swap_remove((seed >> 8) as usize % live.len());
                buddy.free(&mut fake, victim.cptr).unwrap();
            }
        }
        for block in live {
            buddy.free(&mut fake, block.cptr).unwrap();
        }
        assert_eq!(
            (buddy.block_count(), fake.caps.len(), buddy.free_bytes()),
            before
        );
        // Freed and allocated again, the server lands where it was.
        buddy.free(&mut fake, server.cptr).unwrap();
        assert_eq!(buddy.alloc(&mut fake, 23).unwrap().phys, server.phys);
        assert_ne!(scheduler.phys, server.phys);
    }

    #[test]
    fn a_failed_split_changes_nothing() {
        let mut fake = Fake::default();
        let mut buddy = BuddyAllocator::new();
        let top = fake.top(0, 24);
        buddy.add(top, 0, 24);
        fake.fail_split_after = Some(1);
        assert_eq!(buddy.alloc(&mut fake, 23), Err(Error::OutOfRange));
        assert_eq!((buddy.block_count(), fake.caps.len()), (1, 1));
        assert_eq!(fake.caps[&top].2, 0, "the parent's watermark is back at 0");
        fake.fail_split_after = None;
        assert_eq!(buddy.alloc(&mut fake, 23).unwrap().phys, 0);
    }

    #[test]
    fn freeing_what_is_not_in_use_is_refused() {
        let mut fake = Fake::default();
        let mut buddy = BuddyAllocator::new();
        let top = fake.top(0, 16);
        buddy.add(top, 0, 16);
        assert_eq!(buddy.free(&mut fake, top), Err(Error::InvalidArgument));
        let block = buddy.alloc(&mut fake, 12).unwrap();
        buddy.free(&mut fake, block.cptr).unwrap();
        assert_eq!(
            buddy.free(&mut fake, block.cptr),
            Err(Error::InvalidArgument)
        );
    }
}
