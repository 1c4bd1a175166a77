//! Program start-up and the end of a thread: `rt_start` (called by `_start`
//! with the start argument), the [`entry!`](crate::entry) macro that names
//! the program's `main`, [`exit`] and the panic handler (the heap is
//! [`crate::heap`]).

use crate::invoke;
use crate::ipc_buffer;
use crate::layout::slot;

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

#[cfg(target_os = "none")]
mod runtime {
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
