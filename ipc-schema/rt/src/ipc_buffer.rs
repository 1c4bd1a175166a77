//! The calling thread's IPC buffer. Its address follows from the stack
//! pointer ([`crate::layout::ipc_buffer_for_stack`]): a main thread's buffer
//! is at `ROOT_IPC_BUFFER_VADDR`, an extra thread's in the top page of its
//! thread-area slot. Nothing is stored per thread, so there is nothing to set
//! up and nothing to get wrong when a thread starts.
//!
//! The kernel writes the buffer during this thread's system calls, so the
//! runtime never keeps a Rust reference into it: every access is a volatile
//! read or write of one word.

use crate::arch;
use crate::layout;
use core::ptr::{addr_of, addr_of_mut};
use tarn_ipc_schema::{CPtr, IpcBuffer, MAX_EXTRA_CAPS, MAX_MESSAGE_WORDS};

/// The calling thread's IPC buffer.
#[inline]
pub fn ipc_buffer() -> *mut IpcBuffer {
    layout::ipc_buffer_for_stack(arch::stack_pointer()) as *mut IpcBuffer
}

/// Message register `index` (0..64); MR0..MR3 also travel in registers, the
/// runtime keeps the buffer's copy in step on sends.
///
/// # Panics
///
/// If `index` is 64 or more.
#[inline]
pub fn mr(index: usize) -> u64 {
    assert!(
        index < MAX_MESSAGE_WORDS,
        "message register {index} out of range"
    );
    // SAFETY: the buffer page is mapped read-write for this thread for its
    // whole life (the runtime maps it before the thread starts), the index is
    // in bounds, and no reference into the buffer exists.
    unsafe { addr_of!((*ipc_buffer()).mrs[index]).read_volatile() }
}

/// Sets message register `index` (0..64).
///
/// # Panics
///
/// If `index` is 64 or more.
#[inline]
pub fn set_mr(index: usize, value: u64) {
    assert!(
        index < MAX_MESSAGE_WORDS,
        "message register {index} out of range"
    );
    // SAFETY: as in `mr`.
    unsafe { addr_of_mut!((*ipc_buffer()).mrs[index]).write_volatile(value) }
}

/// Reads message registers `first..first + out.len()` into `out`, finding
/// the buffer once (each [`mr`] finds it from the stack pointer again).
///
/// # Panics
///
/// If the range goes past MR63.
#[inline]
pub fn read_mrs(first: usize, out: &mut [u64]) {
    assert!(
        first <= MAX_MESSAGE_WORDS && out.len() <= MAX_MESSAGE_WORDS - first,
        "message registers {first}.. out of range"
    );
    let buffer = ipc_buffer();
    for (offset, word) in out.iter_mut().enumerate() {
        // SAFETY: as in `mr`; `first + offset` < 64 (checked above).
        *word = unsafe { addr_of!((*buffer).mrs[first + offset]).read_volatile() };
    }
}

/// Sets message registers `first..first + words.len()` to `words`, finding
/// the buffer once.
///
/// # Panics
///
/// If the range goes past MR63.
#[inline]
pub fn write_mrs(first: usize, words: &[u64]) {
    assert!(
        first <= MAX_MESSAGE_WORDS && words.len() <= MAX_MESSAGE_WORDS - first,
        "message registers {first}.. out of range"
    );
    let buffer = ipc_buffer();
    for (offset, &word) in words.iter().enumerate() {
        // SAFETY: as in `mr`; `first + offset` < 64 (checked above).
        unsafe { addr_of_mut!((*buffer).mrs[first + offset]).write_volatile(word) };
    }
}

/// Capability pointer `index` to attach to the next send (0..3).
///
/// # Panics
///
/// If `index` is 3 or more.
#[inline]
pub fn set_cap(index: usize, cptr: CPtr) {
    assert!(
        index < MAX_EXTRA_CAPS,
        "extra capability {index} out of range"
    );
    // SAFETY: as in `mr`.
    unsafe { addr_of_mut!((*ipc_buffer()).caps_or_badges[index]).write_volatile(cptr) }
}

/// After a receive: the badge of unwrapped capability `index` (see
/// `MessageInfo::caps_unwrapped`).
///
/// # Panics
///
/// If `index` is 3 or more.
#[inline]
pub fn cap_or_badge(index: usize) -> u64 {
    assert!(
        index < MAX_EXTRA_CAPS,
        "extra capability {index} out of range"
    );
    // SAFETY: as in `mr`.
    unsafe { addr_of!((*ipc_buffer()).caps_or_badges[index]).read_volatile() }
}

/// Sets where received capabilities go: slots `first..first + count` of the
/// caller's root CNode (which must be empty); `count` 0 accepts none.
pub fn set_receive_window(first: CPtr, count: u64) {
    // SAFETY: as in `mr`.
    unsafe {
        addr_of_mut!((*ipc_buffer()).receive_index).write_volatile(first);
        addr_of_mut!((*ipc_buffer()).receive_count).write_volatile(count);
    }
}

/// The receive window (first slot, count).
pub fn receive_window() -> (CPtr, u64) {
    // SAFETY: as in `mr`.
    unsafe {
        (
            addr_of!((*ipc_buffer()).receive_index).read_volatile(),
            addr_of!((*ipc_buffer()).receive_count).read_volatile(),
        )
    }
}

/// The runtime's per-thread word: the thread's own TCB capability pointer
/// (0 in a main thread, which uses `slot::ROOT_TCB`).
pub(crate) fn user_data() -> u64 {
    // SAFETY: as in `mr`.
    unsafe { addr_of!((*ipc_buffer()).user_data).read_volatile() }
}

/// Sets `user_data` in the IPC buffer at `buffer` (a thread being created).
///
/// # Safety
///
/// `buffer` must be a mapped, writable IPC-buffer page that no Rust reference
/// points into.
pub(crate) unsafe fn set_user_data_at(buffer: u64, value: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { addr_of_mut!((*(buffer as *mut IpcBuffer)).user_data).write_volatile(value) }
}

/// A copy of the calling thread's whole IPC buffer, for code that must make
/// system calls without disturbing a message the thread is composing or
/// reading (the heap's growth, which runs inside any allocation).
pub(crate) fn save() -> IpcBuffer {
    // SAFETY: as in `mr`; the whole buffer is one mapped page and
    // `IpcBuffer` is plain words, valid for any bits.
    unsafe { ipc_buffer().read_volatile() }
}

/// Puts back what [`save`] copied.
pub(crate) fn restore(saved: &IpcBuffer) {
    // SAFETY: as in `mr`; the kernel writes the buffer only during this
    // thread's own system calls, and none is in progress.
    unsafe { ipc_buffer().write_volatile(*saved) }
}
