//! Physical memory: the frame allocator, the kernel's own page tables and the
//! kernel heap.

pub mod frame;
pub mod heap;
