//! The physical frame allocator for the kernel's own needs (its page tables,
//! stacks and heap). Free RAM comes from the boot memory map minus everything
//! in use; frames are handed out lowest-first (so early page tables sit inside
//! the boot direct map). Kernel frames are never returned: everything the
//! kernel allocates at boot lives as long as the kernel.

use crate::arch::paging::{phys_to_virt, FrameSource, PAGE_SIZE};
use core::ops::Range;
use spin::Mutex;

/// Most free ranges the allocator tracks.
pub const MAX_RANGES: usize = 64;

/// Frame allocator state.
pub struct FrameAllocator {
    ranges: [Range<u64>; MAX_RANGES],
    count: usize,
}

/// The kernel's frame allocator.
pub static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::empty());

impl FrameAllocator {
    const fn empty() -> Self {
        const EMPTY: Range<u64> = 0..0;
        Self {
            ranges: [EMPTY; MAX_RANGES],
            count: 0,
        }
    }

    /// Installs the free ranges (page aligned, sorted ascending).
    pub fn init(&mut self, ranges: &[Range<u64>]) {
        for range in ranges.iter().take(MAX_RANGES) {
            if range.end > range.start {
                self.ranges[self.count] = range.clone();
                self.count += 1;
            }
        }
    }

    /// Allocates one zeroed frame.
    pub fn alloc(&mut self) -> Option<u64> {
        let frame = self.alloc_contiguous(1)?;
        zero(frame, 1);
        Some(frame)
    }

    /// Allocates `count` physically contiguous frames (not zeroed) from the
    /// bump ranges.
    pub fn alloc_contiguous(&mut self, count: u64) -> Option<u64> {
        let bytes = count * PAGE_SIZE;
        let range = self.ranges[..self.count]
            .iter_mut()
            .find(|r| r.end - r.start >= bytes)?;
        let start = range.start;
        range.start += bytes;
        Some(start)
    }

    /// Hands every remaining free range to the caller (the root task's
    /// untyped memory); the allocator is empty afterwards.
    pub fn take_all(&mut self, out: &mut [Range<u64>]) -> usize {
        let n = self.count.min(out.len());
        for (dest, range) in out.iter_mut().zip(&mut self.ranges[..n]) {
            *dest = core::mem::replace(range, 0..0);
        }
        self.count = 0;
        n
    }

    /// Bytes still available.
    pub fn available_bytes(&self) -> u64 {
        self.ranges[..self.count]
            .iter()
            .map(|r| r.end - r.start)
            .sum::<u64>()
    }
}

/// `count` contiguous frames, zeroed, for the kernel's own use for good
/// (per-CPU stacks and hardware pages); `None` when memory ran out.
pub fn alloc_zeroed(count: u64) -> Option<u64> {
    let frame = FRAMES.lock().alloc_contiguous(count)?;
    zero(frame, count);
    Some(frame)
}

/// Zeroes `count` frames starting at `frame`.
pub fn zero(frame: u64, count: u64) {
    // SAFETY: the frames are free RAM owned by the caller, reached through the direct map.
    unsafe {
        core::ptr::write_bytes(
            phys_to_virt(frame) as *mut u8,
            0,
            (count * PAGE_SIZE) as usize,
        )
    };
}

impl FrameSource for FrameAllocator {
    fn zeroed_frame(&mut self) -> Option<u64> {
        self.alloc()
    }
}
