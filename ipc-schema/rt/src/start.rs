//! Program start-up and the end of a thread: `rt_start` (called by `_start`
//! with the start argument), the [`entry!`](crate::entry) macro that names
//! the program's `main`, [`exit`], the panic handler and the heap.

use crate::invoke;
use crate::ipc_buffer;
use crate::layout::slot;

/// Bytes of heap every program gets (a zeroed array in `.bss`: every byte of
/// it is a frame the loader maps, so it is kept modest).
pub const HEAP_BYTES: usize = 512 * 1024;

/// Names the program's `main`, a `fn(u64)` (or `fn(u64) -> !`) that receives
/// the start argument (`rdi`: the start page's address, see the crate docs).
/// When `main` returns, the main thread suspends itself.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        #[allow(unreachable_code)]
        extern "Rust" fn __tarn_main(arg: u64) {
            $main(arg);
        }
    };
}

#[cfg(target_os = "none")]
extern "Rust" {
    fn __tarn_main(arg: u64);
}

/// First Rust code of a program (called from `_start`).
#[cfg(target_os = "none")]
pub(crate) extern "C" fn rt_start(arg: u64) -> ! {
    // SAFETY: `entry!` defines `__tarn_main` with exactly this signature; a
    // program without `entry!` fails to link.
    unsafe { __tarn_main(arg) };
    exit()
}

/// `user_data` of a thread that cannot name its own TCB (it runs in another
/// CSpace than its creator's).
pub(crate) const NO_OWN_TCB: u64 = u64::MAX;

/// Ends the calling thread: it suspends itself through its own TCB
/// capability (an extra thread's is in its IPC buffer's `user_data`; a main
/// thread's is `slot::ROOT_TCB`). If that fails, or the thread has no such
/// capability, it executes `ud2`, so its fault handler hears of it.
pub fn exit() -> ! {
    let own = match ipc_buffer::user_data() {
        0 => Some(slot::ROOT_TCB),
        NO_OWN_TCB => None,
        tcb => Some(tcb),
    };
    if let Some(tcb) = own {
        let _ = invoke::tcb_suspend(tcb);
    }
    crate::arch::ud2()
}

/// Bytes of heap in use now: the sizes of every live allocation (what the
/// program asked for, not the allocator's rounding), so a figure taken twice
/// around work that frees what it allocated comes back exactly.
pub fn heap_used_bytes() -> usize {
    HEAP_USED.load(core::sync::atomic::Ordering::Relaxed)
}

/// The sum behind [`heap_used_bytes`].
static HEAP_USED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

#[cfg(target_os = "none")]
mod runtime {
    use super::{HEAP_BYTES, HEAP_USED};
    use core::alloc::{GlobalAlloc, Layout};
    use core::ptr::addr_of_mut;
    use core::sync::atomic::Ordering;
    use talc::{ClaimOnOom, Span, Talc, Talck};

    static mut HEAP: [u8; HEAP_BYTES] = [0; HEAP_BYTES];

    /// The heap allocator, counting the bytes in use.
    struct Counting(Talck<spin::Mutex<()>, ClaimOnOom>);

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
        Talc::new(
            // SAFETY: `HEAP` is used by nothing but this allocator, which
            // claims it on its first allocation.
            unsafe { ClaimOnOom::new(Span::from_array(addr_of_mut!(HEAP))) },
        )
        .lock(),
    );

    /// Prints `panic: <message> (<file>:<line>)` and executes `ud2`, so the
    /// thread faults and its fault handler (or the kernel) sees it.
    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        match info.location() {
            Some(location) => crate::println!(
                "panic: {} ({}:{})",
                info.message(),
                location.file(),
                location.line()
            ),
            None => crate::println!("panic: {}", info.message()),
        }
        crate::arch::ud2()
    }
}
