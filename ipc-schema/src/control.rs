//! The control channel: the pool manager's operations from the host, over
//! the machine's second serial port (COM2). Each message is one postcard
//! value, COBS-encoded and ended by a 0 byte, so a reader resynchronises at
//! the next 0 after garbage.
//!
//! A request carries one console command line (the same operations, the
//! same parser and the same errors as the console: `cpupool-list -l`,
//! `list -l`, `cpupool-create name=p cpus=2-3`, ...). The answer is the
//! command's output in [`ControlReply::Output`] pieces, then one
//! [`ControlReply::Done`] saying whether it succeeded. A frame that does not
//! decode gets `Done { ok: false }` with an `Output` naming the problem;
//! nothing runs.

use serde::{Deserialize, Serialize};

/// Longest encoded frame either side sends or accepts (bytes, with the COBS
/// overhead and the closing 0).
pub const MAX_FRAME: usize = 1024;
/// Longest piece of output one [`ControlReply::Output`] carries.
pub const MAX_OUTPUT_PIECE: usize = 768;

/// A request from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest<'a> {
    /// Run one console command line.
    Run {
        /// The request's id, repeated in every reply to it.
        id: u32,
        /// The command line.
        line: &'a str,
    },
}

/// An answer to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlReply<'a> {
    /// A piece of the command's output, in order.
    Output {
        /// The request's id (0 for an undecodable request).
        id: u32,
        /// The text.
        text: &'a str,
    },
    /// The command finished.
    Done {
        /// The request's id (0 for an undecodable request).
        id: u32,
        /// Whether it succeeded (no `error:` line).
        ok: bool,
    },
}

/// Message label of a tenant's request to the pool manager and of its
/// answer. A tenant holds a badged endpoint capability naming one pool; its
/// request is a [`ControlRequest`] and the answer a [`TenantAnswer`], each
/// postcard-encoded into the message words (as in
/// [`crate::sched_protocol::encode`]). The manager runs the command only if
/// it stays inside the tenant's pool.
pub const TENANT_LABEL: u64 = 0x7E4A;

/// The pool manager's answer to a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantAnswer<'a> {
    /// Whether the command succeeded.
    pub ok: bool,
    /// The output was longer than one message holds and was cut.
    pub truncated: bool,
    /// The command's output.
    pub text: &'a str,
}

/// Encodes `message` as one frame (COBS, ending in 0) into `out`; returns
/// the frame, or `None` if it does not fit.
pub fn encode<'b, T: Serialize>(message: &T, out: &'b mut [u8]) -> Option<&'b mut [u8]> {
    postcard::to_slice_cobs(message, out).ok()
}

/// Decodes one frame (its bytes up to and including the 0, COBS-encoded);
/// the buffer is decoded in place.
pub fn decode<'b, T: Deserialize<'b>>(frame: &'b mut [u8]) -> Option<T> {
    postcard::from_bytes_cobs(frame).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_contain_no_zero_but_the_last() {
        let request = ControlRequest::Run {
            id: 7,
            line: "cpupool-list -l",
        };
        let mut buffer = [0u8; MAX_FRAME];
        let frame = encode(&request, &mut buffer).expect("fits");
        let length = frame.len();
        assert_eq!(frame[length - 1], 0);
        assert!(frame[..length - 1].iter().all(|&b| b != 0));
        let mut copy = [0u8; MAX_FRAME];
        copy[..length].copy_from_slice(&buffer[..length]);
        assert_eq!(decode::<ControlRequest>(&mut copy[..length]), Some(request));

        let reply = ControlReply::Output {
            id: 7,
            text: "Name CPUs\0Pool-0",
        };
        let frame = encode(&reply, &mut buffer).expect("fits");
        let length = frame.len();
        let mut copy = [0u8; MAX_FRAME];
        copy[..length].copy_from_slice(&buffer[..length]);
        assert_eq!(decode::<ControlReply>(&mut copy[..length]), Some(reply));
    }

    #[test]
    fn garbage_does_not_decode() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..10_000 {
            let mut bytes = [0u8; 24];
            for b in &mut bytes {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            let length = (seed % 25) as usize;
            let _ = decode::<ControlRequest>(&mut bytes[..length]);
        }
        let mut empty = [0u8; 1];
        assert_eq!(decode::<ControlRequest>(&mut empty), None);
    }
}
