//! The heap: talc over a static initial span of [`INITIAL_HEAP_BYTES`],
//! grown on demand into the heap window ([`layout::HEAP_WINDOW_BASE`]) from
//! memory the program set aside for it.
//!
//! Every program starts with the initial span only (a zeroed array in
//! `.bss`, claimed on the first allocation). A program that expects to need
//! more gives the heap a budget of untyped memory once, with [`set_aside`]
//! (a child untyped of 2^k bytes carved from its [`Resources`]) or
//! [`grow_from`] (an untyped region it took out of its allocator). From then
//! on, when talc runs out, its out-of-memory handler retypes frames from
//! that untyped into CNode slots reserved for them at registration, maps
//! them read-write at the end of what the window has mapped so far, and
//! extends talc's window heap over them. Frames are 2 MiB when the budget is
//! at least 2 MiB (it then holds whole large frames only, and each costs
//! one slot), 4 KiB otherwise.
//!
//! The handler runs inside the global allocator, with talc's lock held: it
//! allocates nothing and borrows nothing of the program's (the calling
//! thread's IPC buffer, which its system calls use, is saved and put back
//! around them, so a message half written or half read survives); everything it
//! uses (the untyped, the slot range, the CNode and VSpace capabilities) was
//! handed over at registration and sits in the handler itself, under the
//! same lock. A request the budget cannot serve maps nothing more and is a
//! null return, so `try_reserve` sees `Err` and a plain allocation reaches
//! the `alloc_error_handler`. Frames are never unmapped: memory freed in the
//! window serves later allocations, so the mapped size follows the peak of
//! the program's use, never the number of allocations.

use crate::invoke;
use crate::ipc_buffer;
use crate::layout::{self, HEAP_WINDOW_BASE, HEAP_WINDOW_BYTES, LARGE_PAGE_SIZE, PAGE_SIZE};
use crate::resources::{Resources, UntypedRegion};
use tarn_ipc_schema::{CPtr, Error, ObjectType, Rights};

/// Bytes of the static initial heap every program gets (a zeroed array in
/// `.bss`: every byte of it is a frame the loader maps, so it is kept
/// modest; more comes from [`set_aside`]).
pub const INITIAL_HEAP_BYTES: usize = 512 * 1024;

/// Bytes beyond a request's size and alignment that a growth step maps, for
/// talc's boundary tags around the new chunk.
const GROW_SLACK: u64 = 64;

/// What the heap holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes of the static initial span.
    pub initial_bytes: u64,
    /// Bytes mapped in the heap window so far.
    pub mapped_bytes: u64,
    /// Most bytes the window can ever map (the budget; 0 without one).
    pub limit_bytes: u64,
    /// Frames mapped in the window.
    pub frames: u64,
}

/// The state behind the growth: a budget of untyped memory and the CNode
/// slots its frames go to, filled in order.
#[cfg_attr(
    not(target_os = "none"),
    allow(dead_code, reason = "the growth runs in the target's allocator only")
)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grower {
    /// The budget: an untyped capability used for nothing else.
    untyped: CPtr,
    /// Its size in bytes (the limit of the window).
    budget_bytes: u64,
    /// Bytes of it retyped into frames so far.
    used_bytes: u64,
    /// log2 of a frame's size (12 or 21).
    frame_bits: u64,
    /// The first of `budget_bytes >> frame_bits` consecutive slots reserved
    /// for the frames (frame `i` in `first_slot + i`).
    first_slot: CPtr,
    /// The program's CNode (where the frame slots are).
    cnode: CPtr,
    /// The program's VSpace (where the window is).
    vspace: CPtr,
    /// Bytes mapped from `HEAP_WINDOW_BASE` on.
    mapped_bytes: u64,
}

#[cfg_attr(
    not(target_os = "none"),
    allow(dead_code, reason = "the growth runs in the target's allocator only")
)]
impl Grower {
    /// A grower over `untyped` (unused, 2^`size_bits` bytes, at most the
    /// window's size) with the frame slots starting at `first_slot`.
    fn new(region: &UntypedRegion, first_slot: CPtr, cnode: CPtr, vspace: CPtr) -> Self {
        Grower {
            untyped: region.cptr,
            budget_bytes: region.bytes(),
            used_bytes: 0,
            frame_bits: frame_bits(region.size_bits),
            first_slot,
            cnode,
            vspace,
            mapped_bytes: 0,
        }
    }

    fn frame_bytes(&self) -> u64 {
        1 << self.frame_bits
    }

    /// Retypes the next frame and maps it at the end of the window. On any
    /// error nothing is mapped; a frame made but not mapped is deleted (its
    /// memory is not retyped again: an untyped's watermark only grows).
    fn map_next(&mut self) -> Result<(), Error> {
        let frame_bytes = self.frame_bytes();
        if self.used_bytes + frame_bytes > self.budget_bytes {
            return Err(Error::OutOfMemory);
        }
        let slot = self.first_slot + (self.used_bytes >> self.frame_bits);
        let object_type = if self.frame_bits == 21 {
            ObjectType::Frame2M
        } else {
            ObjectType::Frame4K
        };
        invoke::untyped_retype(self.untyped, object_type, 0, self.cnode, slot, 1)?;
        self.used_bytes += frame_bytes;
        let vaddr = HEAP_WINDOW_BASE + self.mapped_bytes;
        if let Err(error) =
            invoke::frame_map(slot, self.vspace, vaddr, Rights::READ.union(Rights::WRITE))
        {
            // Best effort: the slot is never used again either way.
            let _ = invoke::cnode_delete(self.cnode, slot);
            return Err(error);
        }
        self.mapped_bytes += frame_bytes;
        Ok(())
    }

    /// Maps frames until at least `need` more bytes are mapped, or the
    /// budget (or the kernel) refuses; returns the bytes mapped. A request
    /// larger than the whole budget maps nothing. The thread's IPC buffer
    /// is saved around the system calls and put back: the allocation that
    /// ran out may sit between a message's words written and its send, or
    /// between a reply's arrival and its last word read.
    fn grow(&mut self, need: u64) -> u64 {
        let before = self.mapped_bytes;
        if need > self.budget_bytes || self.used_bytes >= self.budget_bytes {
            return 0;
        }
        let saved = ipc_buffer::save();
        while self.mapped_bytes - before < need {
            if self.map_next().is_err() {
                break;
            }
        }
        ipc_buffer::restore(&saved);
        self.mapped_bytes - before
    }

    fn stats(&self) -> (u64, u64, u64) {
        (
            self.mapped_bytes,
            self.budget_bytes,
            self.mapped_bytes >> self.frame_bits,
        )
    }
}

/// log2 of the frames a budget of 2^`budget_bits` bytes is mapped in.
const fn frame_bits(budget_bits: u64) -> u64 {
    if budget_bits >= 21 {
        21
    } else {
        12
    }
}

/// The bytes one growth step must add for an allocation of `size` bytes
/// aligned to `align` (`None` if that overflows).
#[cfg_attr(
    not(target_os = "none"),
    allow(dead_code, reason = "the growth runs in the target's allocator only")
)]
fn bytes_needed(size: usize, align: usize) -> Option<u64> {
    (size as u64)
        .checked_add(align as u64)?
        .checked_add(GROW_SLACK)
}

/// Gives the heap `region` (an unused untyped capability the caller took
/// out of its allocator; its size is the limit) and reserves from
/// `resources` the CNode slots its frames will take (one per 2 MiB, or per
/// 4 KiB for a budget under 2 MiB). Nothing is mapped until the heap runs
/// out. `InvalidArgument` for a used region, one under 4 KiB or over the
/// window's size; `IllegalState` if the heap already has a budget.
pub fn grow_from(resources: &mut Resources, region: UntypedRegion) -> Result<(), Error> {
    if region.watermark != 0 || region.size_bits < 12 || region.bytes() > HEAP_WINDOW_BYTES {
        return Err(Error::InvalidArgument);
    }
    let slots = region.bytes() >> frame_bits(region.size_bits);
    let first_slot = resources.slots.alloc_range(slots)?;
    let grower = Grower::new(&region, first_slot, resources.cnode, resources.vspace);
    match runtime::register(grower) {
        Ok(()) => Ok(()),
        Err(error) => {
            for slot in first_slot..first_slot + slots {
                resources.slots.free(slot);
            }
            Err(error)
        }
    }
}

/// Sets aside the largest power of two of bytes not over `limit_bytes`
/// (at least 4 KiB) from `resources` as the heap's budget ([`grow_from`]).
/// On failure no slot is kept and a carved untyped is deleted again (its
/// bytes stay used in the region it came from).
pub fn set_aside(resources: &mut Resources, limit_bytes: u64) -> Result<(), Error> {
    if limit_bytes < PAGE_SIZE {
        return Err(Error::InvalidArgument);
    }
    let size_bits = 63 - u64::from(limit_bytes.leading_zeros());
    let size_bits = size_bits.min(HEAP_WINDOW_BYTES.trailing_zeros().into());
    let (cptr, phys) = resources.create_untyped(size_bits)?;
    let region = UntypedRegion {
        cptr,
        phys,
        size_bits,
        watermark: 0,
    };
    grow_from(resources, region).inspect_err(|_| {
        let _ = resources.delete(cptr);
    })
}

/// What the heap holds now (takes the allocator's lock briefly).
pub fn stats() -> HeapStats {
    let (mapped_bytes, limit_bytes, frames) = runtime::grower_stats().unwrap_or((0, 0, 0));
    HeapStats {
        initial_bytes: INITIAL_HEAP_BYTES as u64,
        mapped_bytes,
        limit_bytes,
        frames,
    }
}

/// Bytes of heap in use now: the sizes of every live allocation (what the
/// program asked for, not the allocator's rounding), so a figure taken twice
/// around work that frees what it allocated comes back exactly.
pub fn heap_used_bytes() -> usize {
    HEAP_USED.load(core::sync::atomic::Ordering::Relaxed)
}

/// The sum behind [`heap_used_bytes`].
static HEAP_USED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

// The window starts on a large-page boundary, so 2 MiB frames map at its
// end from the first on.
const _: () = assert!(HEAP_WINDOW_BASE.is_multiple_of(LARGE_PAGE_SIZE));
const _: () = assert!(layout::HEAP_WINDOW_BYTES.is_power_of_two());

#[cfg(not(target_os = "none"))]
mod runtime {
    use super::Grower;
    use tarn_ipc_schema::Error;

    /// Host builds use the host's allocator: there is nothing to grow.
    pub(super) fn register(_grower: Grower) -> Result<(), Error> {
        Err(Error::IllegalOperation)
    }

    pub(super) fn grower_stats() -> Option<(u64, u64, u64)> {
        None
    }
}

#[cfg(target_os = "none")]
mod runtime {
    use super::{bytes_needed, Grower, HEAP_USED, INITIAL_HEAP_BYTES};
    use crate::layout::HEAP_WINDOW_BASE;
    use core::alloc::{GlobalAlloc, Layout};
    use core::ptr::addr_of_mut;
    use core::sync::atomic::Ordering;
    use talc::{OomHandler, Span, Talc, Talck};
    use tarn_ipc_schema::Error;

    static mut HEAP: [u8; INITIAL_HEAP_BYTES] = [0; INITIAL_HEAP_BYTES];

    /// Talc's out-of-memory handler: claims the initial span first, then
    /// grows the window.
    struct Grow {
        /// The initial span until it is claimed (then empty).
        initial: Span,
        /// The budget, once the program gave one.
        grower: Option<Grower>,
        /// The window heap as talc knows it (empty until the first growth).
        window: Span,
    }

    impl OomHandler for Grow {
        fn handle_oom(talc: &mut Talc<Self>, layout: Layout) -> Result<(), ()> {
            let initial = talc.oom_handler.initial;
            if !initial.is_empty() {
                talc.oom_handler.initial = Span::empty();
                // SAFETY: the initial span is the static `HEAP`, used by
                // nothing but this allocator and claimed exactly once (it
                // was emptied above).
                if unsafe { talc.claim(initial) }.is_ok() {
                    return Ok(());
                }
            }
            let need = bytes_needed(layout.size(), layout.align()).ok_or(())?;
            let grower = talc.oom_handler.grower.as_mut().ok_or(())?;
            if grower.grow(need) == 0 {
                return Err(());
            }
            let base = HEAP_WINDOW_BASE as *mut u8;
            let mapped = Span::new(base, base.wrapping_add(grower.mapped_bytes as usize));
            let window = talc.oom_handler.window;
            talc.oom_handler.window = if window.is_empty() {
                // SAFETY: `mapped` is memory this handler just mapped
                // read-write in the program's VSpace at the heap window,
                // which nothing else maps or uses (layout), and it stays
                // mapped for the program's life: the frames sit in slots
                // reserved for them and are never deleted.
                unsafe { talc.claim(mapped) }?
            } else {
                // SAFETY: as above for the new frames; `window` is the span
                // talc returned from the last claim or extend, and `mapped`
                // contains it (the window only grows at its end).
                unsafe { talc.extend(window, mapped) }
            };
            Ok(())
        }
    }

    /// The heap allocator, counting the bytes in use.
    struct Counting(Talck<spin::Mutex<()>, Grow>);

    // SAFETY: every call is passed on unchanged to talc's allocator, which
    // upholds GlobalAlloc's contract; the counter only observes the sizes.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller upholds `alloc`'s contract.
            let pointer = unsafe { self.0.alloc(layout) };
            if !pointer.is_null() {
                HEAP_USED.fetch_add(layout.size(), Ordering::Relaxed);
            }
            pointer
        }

        unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
            // SAFETY: the caller upholds `dealloc`'s contract.
            unsafe { self.0.dealloc(pointer, layout) };
            HEAP_USED.fetch_sub(layout.size(), Ordering::Relaxed);
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller upholds `alloc_zeroed`'s contract.
            let pointer = unsafe { self.0.alloc_zeroed(layout) };
            if !pointer.is_null() {
                HEAP_USED.fetch_add(layout.size(), Ordering::Relaxed);
            }
            pointer
        }

        unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: the caller upholds `realloc`'s contract.
            let moved = unsafe { self.0.realloc(pointer, layout, new_size) };
            if !moved.is_null() {
                HEAP_USED.fetch_add(new_size, Ordering::Relaxed);
                HEAP_USED.fetch_sub(layout.size(), Ordering::Relaxed);
            }
            moved
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting(
        Talc::new(Grow {
            // `HEAP` is used by nothing but this allocator (the claim in
            // `handle_oom` relies on it).
            initial: Span::from_array(addr_of_mut!(HEAP)),
            grower: None,
            window: Span::empty(),
        })
        .lock(),
    );

    /// Hands the heap its budget (once).
    pub(super) fn register(grower: Grower) -> Result<(), Error> {
        let mut talc = ALLOCATOR.0.lock();
        if talc.oom_handler.grower.is_some() {
            return Err(Error::IllegalState);
        }
        talc.oom_handler.grower = Some(grower);
        Ok(())
    }

    /// (mapped bytes, limit, frames) once the heap has a budget.
    pub(super) fn grower_stats() -> Option<(u64, u64, u64)> {
        ALLOCATOR.0.lock().oom_handler.grower.map(|g| g.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_of_2_mib_and_more_take_large_frames() {
        assert_eq!(frame_bits(21), 21);
        assert_eq!(frame_bits(26), 21);
        assert_eq!(frame_bits(20), 12);
        assert_eq!(frame_bits(12), 12);
    }

    #[test]
    fn a_growth_step_covers_size_alignment_and_tags() {
        assert_eq!(bytes_needed(4096, 8), Some(4096 + 8 + GROW_SLACK));
        assert_eq!(bytes_needed(usize::MAX, 1 << 63), None);
    }
}
