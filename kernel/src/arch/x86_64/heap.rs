//! The kernel heap on `talc`, backed by one contiguous run of frames.
//! User objects never come from here (they are retyped from Untyped memory);
//! the heap holds per-CPU data and other kernel bookkeeping.

use crate::arch::paging::phys_to_virt;
use talc::{ErrOnOom, Span, Talc, Talck};

#[global_allocator]
static ALLOCATOR: Talck<spin::Mutex<()>, ErrOnOom> = Talc::new(ErrOnOom).lock();

/// Hands the physical range `[phys, phys + bytes)` to the heap.
pub fn init(phys: u64, bytes: usize) {
    let base = phys_to_virt(phys) as *mut u8;
    // SAFETY: the range was just taken from the frame allocator, is mapped
    // read-write in the direct map and is owned by the heap from now on.
    unsafe {
        ALLOCATOR
            .lock()
            .claim(Span::from_base_size(base, bytes))
            .expect("the heap's initial span is large enough for talc's metadata");
    }
}
