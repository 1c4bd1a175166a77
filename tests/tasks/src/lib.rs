//! What the in-image test programs share: the protocol between the test
//! suite and the helper processes it starts (`test-helper`).
//!
//! The suite calls the helper's command endpoint with a [`command`] label and
//! arguments in MR0..; the helper answers each call with a reply. Commands
//! that make the helper do something after answering (call back, fault, exit)
//! reply first, so the suite is free to serve what follows.

#![no_std]
#![forbid(unsafe_code)]

/// Slots of the helper's root CNode that the suite fills at spawn time.
pub mod helper_slot {
    /// The endpoint the helper receives commands on (READ).
    pub const COMMANDS: u64 = 9;
    /// An endpoint the helper calls back on (WRITE).
    pub const CALLBACK: u64 = 10;
    /// A notification the helper signals (WRITE, badged).
    pub const NOTIFICATION: u64 = 11;
    /// First slot of the helper's receive window (capabilities sent with a
    /// command arrive here).
    pub const RECEIVE: u64 = 100;
    /// Slots from here on are free for the suite to copy capabilities into.
    pub const SUITE_FREE: u64 = 200;
}

/// Command labels (the suite's call) and what each replies.
pub mod command {
    /// Reply with the same label and words (up to 64).
    pub const ECHO: u64 = 1;
    /// Reply MR0 = the badge the command arrived with.
    pub const BADGE: u64 = 2;
    /// MR0 = syscall number, MR1 = capability pointer: issue that (never
    /// blocking) syscall with an empty message; reply MR0 = the error code
    /// (0 = success).
    pub const PROBE: u64 = 3;
    /// The command carries capabilities: reply MR0 = capabilities delivered,
    /// MR1 = unwrapped mask, MR2 = the first unwrapped badge, MR3 = the error
    /// code of `Poll` on the first receive-window slot.
    pub const RECEIVE_CAPS: u64 = 4;
    /// MR0 = slot: delete it from the helper's CNode; reply MR0 = error code.
    pub const DELETE: u64 = 5;
    /// Reply, then call the callback endpoint with label [`CALLBACK_HELLO`]
    /// and MR0 = the command's MR0 + 1; then call it again with label
    /// [`CALLBACK_REPORT`], MR0 = the first reply's MR0 and MR1 = its label.
    pub const CALL_BACK: u64 = 6;
    /// MR0 = address: reply, then read it (page-faulting if unmapped); then
    /// call back with label [`CALLBACK_REPORT`] and MR0 = the value read.
    pub const FAULT_READ: u64 = 7;
    /// Reply, then execute `ud2`.
    pub const UD2: u64 = 8;
    /// Reply, then suspend itself.
    pub const EXIT: u64 = 9;
    /// MR0 = notification slot: signal it; reply MR0 = error code.
    pub const SIGNAL: u64 = 10;
    /// First call-back label of [`CALL_BACK`].
    pub const CALLBACK_HELLO: u64 = 0xCB;
    /// Report call-back label.
    pub const CALLBACK_REPORT: u64 = 0xCD;
    /// Reply label for a command the helper does not know.
    pub const UNKNOWN: u64 = 0xEEEE;
}

/// The address the helper's `FAULT_READ` default points at (in the free
/// window, which nothing maps until the suite does).
pub const HELPER_FAULT_ADDRESS: u64 = tarn_rt::layout::FREE_WINDOW_BASE + 0x7_0000_0000;
