//! The system calls, one safe function each, over the one `unsafe` wrapper of
//! the `syscall` instruction ([`crate::arch::syscall`]).
//!
//! Messages: the label and MR0..MR3 travel in registers; MR4..MR63 and the
//! attached capabilities go through the IPC buffer. [`load`] writes a whole
//! message (words and capability pointers) and returns what goes in
//! registers; [`Message::word`] reads any word of a received message.

use crate::arch::{self, SyscallRegisters};
use crate::ipc_buffer;
use tarn_ipc_schema::{
    CPtr, Error, MessageInfo, Syscall, MAX_DEBUG_WRITE, MAX_EXTRA_CAPS, MAX_MESSAGE_WORDS,
};

/// A received message (or a reply).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// The message-info word: label, length, capabilities delivered.
    pub info: MessageInfo,
    /// The badge of the capability the sender used (0 for replies and
    /// unbadged capabilities); for a signal on a bound notification, the
    /// notification word.
    pub badge: u64,
    /// MR0..MR3.
    pub mrs: [u64; 4],
}

impl Message {
    /// The label.
    pub fn label(&self) -> u64 {
        self.info.label()
    }

    /// Number of message words.
    pub fn length(&self) -> usize {
        self.info.length()
    }

    /// Word `index` of the message: MR0..MR3 from the registers, the rest
    /// from the IPC buffer (valid until this thread's next system call).
    pub fn word(&self, index: usize) -> u64 {
        match self.mrs.get(index) {
            Some(&word) => word,
            None => ipc_buffer::mr(index),
        }
    }

    /// Copies the message's words into `out` (as many as fit); returns how
    /// many words the message has.
    pub fn words(&self, out: &mut [u64]) -> usize {
        let length = self.length().min(MAX_MESSAGE_WORDS);
        for (index, slot) in out.iter_mut().enumerate().take(length) {
            *slot = self.word(index);
        }
        length
    }
}

/// What the kernel returned for a system call, undecoded.
pub type RawResult = SyscallRegisters;

/// Issues system call `number` with raw register values and returns the raw
/// result: for negative tests and fuzzing, where the arguments are wrong on
/// purpose.
///
/// This is safe to call with any values: the kernel validates every pointer
/// and capability, writes only this thread's registers and IPC buffer (which
/// the runtime never holds references into), and anything it does to
/// mappings or threads is named by capabilities the caller chose to pass.
#[inline(always)]
pub fn raw(number: u64, cptr: u64, info: u64, mrs: [u64; 4]) -> RawResult {
    // SAFETY: see above; no reference into the IPC buffer exists here.
    unsafe { arch::syscall(number, cptr, info, mrs) }
}

/// One system call and its result. Inlined into each wrapper (and the
/// wrappers into their callers) with the error decode out of line: out of
/// line, with `Error::check` called on every return, the wrapper saved and
/// restored six callee-saved registers around that call and cost an IPC
/// round trip about 60 instructions (two wrappers, caller and server).
#[inline(always)]
fn call_kernel(
    number: Syscall,
    cptr: CPtr,
    info: MessageInfo,
    mrs: [u64; 4],
) -> Result<Message, Error> {
    let out = raw(number as u64, cptr, info.0, mrs);
    if out.rax != 0 {
        return Err(error_of(out.rax));
    }
    Ok(Message {
        info: MessageInfo(out.rsi),
        badge: out.rdi,
        mrs: out.mrs,
    })
}

/// The error a non-zero `rax` names (an unknown value reads as
/// `InvalidSyscall`, as [`Error::check`] decodes it).
#[cold]
#[inline(never)]
fn error_of(rax: u64) -> Error {
    Error::check(rax).err().unwrap_or(Error::InvalidSyscall)
}

/// Writes a message into the IPC buffer: `words` (up to 64; a longer slice
/// still sets the length field, so the kernel refuses it with
/// `MessageTooLong`) and the capability pointers to attach (up to 3). Returns
/// the message-info word and MR0..MR3 to pass in registers.
///
/// Inlined: with constant arguments (an invocation's fixed words) the loop
/// folds into a few stores; out of line it cost the VM exit path ~70
/// instructions when a change elsewhere in the runtime tipped the inliner.
#[inline]
pub fn load(label: u64, words: &[u64], caps: &[CPtr]) -> (MessageInfo, [u64; 4]) {
    let mut registers = [0u64; 4];
    for (index, &word) in words.iter().enumerate().take(MAX_MESSAGE_WORDS) {
        if let Some(register) = registers.get_mut(index) {
            *register = word;
        }
        ipc_buffer::set_mr(index, word);
    }
    for (index, &cap) in caps.iter().enumerate().take(MAX_EXTRA_CAPS) {
        ipc_buffer::set_cap(index, cap);
    }
    let info = MessageInfo::new(label, caps.len().min(MAX_EXTRA_CAPS) as u64, 0);
    // The length field is 7 bits wide: keep what the caller asked for (up to
    // 127) so that over-long messages reach the kernel as such.
    (
        MessageInfo(info.0 | (words.len() as u64).min(0x7F)),
        registers,
    )
}

/// Sends on an endpoint, blocking until a receiver takes the message (or
/// signals a notification with the capability's badge).
#[inline]
pub fn send(endpoint: CPtr, info: MessageInfo, mrs: [u64; 4]) -> Result<(), Error> {
    call_kernel(Syscall::Send, endpoint, info, mrs).map(|_| ())
}

/// Sends only if a receiver is waiting; `WouldBlock` otherwise.
#[inline]
pub fn nb_send(endpoint: CPtr, info: MessageInfo, mrs: [u64; 4]) -> Result<(), Error> {
    call_kernel(Syscall::NbSend, endpoint, info, mrs).map(|_| ())
}

/// Sends and waits for the reply (IPC on an endpoint), or invokes a kernel
/// object (see [`crate::invoke`]).
#[inline]
pub fn call(cap: CPtr, info: MessageInfo, mrs: [u64; 4]) -> Result<Message, Error> {
    call_kernel(Syscall::Call, cap, info, mrs)
}

/// Waits for a message on an endpoint (or a signal on a notification: the
/// word arrives as the badge).
#[inline]
pub fn recv(endpoint: CPtr) -> Result<Message, Error> {
    call_kernel(Syscall::Recv, endpoint, MessageInfo::default(), [0; 4])
}

/// `recv` with `xmm8` set to `value` before and read after, in one
/// instruction sequence (see [`crate::arch::syscall_with_xmm8`]): returns the
/// message and the `xmm8` the thread resumed with.
pub fn recv_with_xmm8(endpoint: CPtr, value: u64) -> (Result<Message, Error>, u64) {
    // SAFETY: a receive changes no mapping; its only memory effect is the
    // IPC buffer, which the kernel writes as for `recv`.
    let (out, xmm8) =
        unsafe { arch::syscall_with_xmm8(Syscall::Recv as u64, endpoint, 0, [0; 4], value) };
    let message = Error::check(out.rax).map(|_| Message {
        info: MessageInfo(out.rsi),
        badge: out.rdi,
        mrs: out.mrs,
    });
    (message, xmm8)
}

/// Receives only if a sender is waiting; `WouldBlock` otherwise.
#[inline]
pub fn nb_recv(endpoint: CPtr) -> Result<Message, Error> {
    call_kernel(Syscall::NbRecv, endpoint, MessageInfo::default(), [0; 4])
}

/// Replies to the thread whose `Call` this thread received last.
#[inline]
pub fn reply(info: MessageInfo, mrs: [u64; 4]) -> Result<(), Error> {
    call_kernel(Syscall::Reply, 0, info, mrs).map(|_| ())
}

/// Replies, then waits on `endpoint`: the server loop in one system call.
#[inline]
pub fn reply_recv(endpoint: CPtr, info: MessageInfo, mrs: [u64; 4]) -> Result<Message, Error> {
    call_kernel(Syscall::ReplyRecv, endpoint, info, mrs)
}

/// Signals a notification: ORs the capability's badge into its word.
#[inline]
pub fn signal(notification: CPtr) -> Result<(), Error> {
    call_kernel(
        Syscall::Signal,
        notification,
        MessageInfo::default(),
        [0; 4],
    )
    .map(|_| ())
}

/// Waits until the notification's word is non-zero and returns (and clears)
/// it. `timeout_ns` 0 waits forever; otherwise `Timeout` after that long.
#[inline]
pub fn wait(notification: CPtr, timeout_ns: u64) -> Result<u64, Error> {
    call_kernel(
        Syscall::Wait,
        notification,
        MessageInfo::default(),
        [timeout_ns, 0, 0, 0],
    )
    .map(|m| m.badge)
}

/// Reads and clears the notification's word without blocking (`WouldBlock`
/// if it is zero).
#[inline]
pub fn poll(notification: CPtr) -> Result<u64, Error> {
    call_kernel(Syscall::Poll, notification, MessageInfo::default(), [0; 4]).map(|m| m.badge)
}

/// Gives up the rest of this time slice.
#[inline]
pub fn yield_now() {
    // Yield has no failure the caller could act on.
    let _ = call_kernel(Syscall::Yield, 0, MessageInfo::default(), [0; 4]);
}

/// Prints `text` on the kernel console in one piece (at most
/// [`MAX_DEBUG_WRITE`] bytes; longer text is cut there — use `println!` for
/// arbitrary lengths).
pub fn debug_write(text: &str) -> Result<(), Error> {
    let length = text.len().min(MAX_DEBUG_WRITE);
    debug_write_raw(text.as_ptr() as u64, length as u64)
}

/// `DebugWrite` with a raw pointer and length (the kernel validates them).
pub fn debug_write_raw(pointer: u64, length: u64) -> Result<(), Error> {
    let out = raw(Syscall::DebugWrite as u64, pointer, length, [0; 4]);
    Error::check(out.rax)
}

/// Sleeps for about `timeout_ns` by waiting on `notification` (one that
/// nobody signals). Returns early (with the word) if it is signalled.
pub fn sleep(notification: CPtr, timeout_ns: u64) -> Result<(), Error> {
    match wait(notification, timeout_ns.max(1)) {
        Ok(_) | Err(Error::Timeout) => Ok(()),
        Err(other) => Err(other),
    }
}
