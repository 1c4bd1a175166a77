//! The control channel: the pool manager's operations from the host, over
//! the machine's second serial port (COM2). Each message is one postcard
//! value, COBS-encoded, with a 0 byte before and after it ([`encode`]): the
//! 0 after ends the frame, and the 0 before ends whatever partial frame was
//! left on the line (a sender stopped mid-frame, a client that reconnected),
//! so that garbage becomes a frame of its own, which does not decode,
//! instead of running into this one. A reader ([`FrameReader`]) skips empty
//! frames and drops an overlong one whole.
//!
//! A request carries one console command line (the same operations, the
//! same parser and the same errors as the console: `cpupool-list -l`,
//! `list -l`, `cpupool-create name=p cpus=2-3`, ...). The answer is the
//! command's output in [`ControlReply::Output`] pieces, then one
//! [`ControlReply::Done`] saying whether it succeeded. A frame that does not
//! decode gets `Done { ok: false }` with an `Output` naming the problem;
//! nothing runs. A client ignores replies with id 0 to frames it did not
//! send garbled (the garbage a previous client left).
//!
//! Text in replies is the console's output, escaped by the manager
//! ([`Escaped`]): nothing but printable ASCII and line breaks reaches the
//! host's terminal; `tarnctl` escapes again what it prints.

use serde::{Deserialize, Serialize};

/// Longest encoded frame either side sends or accepts (bytes, with the COBS
/// overhead and the closing 0).
pub const MAX_FRAME: usize = 1024;
/// Longest piece of output one [`ControlReply::Output`] carries.
pub const MAX_OUTPUT_PIECE: usize = 768;
/// Most bytes of a policy server ELF one [`ControlRequest::LoadPolicy`]
/// carries.
pub const MAX_POLICY_CHUNK: usize = 512;

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
    /// One piece of a policy server's ELF (`tarnctl load-policy NAME FILE`),
    /// sent in order from offset 0; each is answered with `Done`. When the
    /// last piece arrives, policy `name` exists (`cpupool-sched P NAME`).
    /// Only the control channel takes it: a tenant cannot load code.
    LoadPolicy {
        /// The request's id, repeated in every reply to it.
        id: u32,
        /// The policy's name.
        name: &'a str,
        /// The ELF's size in bytes.
        total: u32,
        /// Where this piece starts.
        offset: u32,
        /// At most [`MAX_POLICY_CHUNK`] bytes.
        chunk: &'a [u8],
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

/// Encodes `message` as one frame into `out`: a 0, the COBS-encoded value,
/// a 0. Returns the frame, or `None` if it does not fit.
pub fn encode<'b, T: Serialize>(message: &T, out: &'b mut [u8]) -> Option<&'b mut [u8]> {
    let (start, body) = out.split_first_mut()?;
    *start = 0;
    let length = postcard::to_slice_cobs(message, body).ok()?.len();
    Some(&mut out[..=length])
}

/// Decodes one frame (its COBS bytes up to and including the closing 0,
/// as [`FrameReader`] returns it; a leading 0 is skipped); the buffer is
/// decoded in place.
pub fn decode<'b, T: Deserialize<'b>>(frame: &'b mut [u8]) -> Option<T> {
    let skip = usize::from(frame.len() > 1 && frame[0] == 0);
    postcard::from_bytes_cobs(&mut frame[skip..]).ok()
}

/// What [`FrameReader::push`] found at a frame's end.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// A frame's bytes, the closing 0 included (for [`decode`]).
    Frame(&'a mut [u8]),
    /// A frame longer than [`MAX_FRAME`]: dropped whole.
    Overlong,
}

/// Cuts a byte stream into frames at each 0: an empty frame (the 0 a sender
/// writes before each frame) is skipped, a frame past [`MAX_FRAME`] is
/// dropped whole, and each frame starts afresh, so garbage never reaches
/// into the next frame.
#[derive(Clone, Debug)]
pub struct FrameReader {
    buffer: [u8; MAX_FRAME],
    length: usize,
    overlong: bool,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    /// Nothing read yet.
    pub const fn new() -> Self {
        FrameReader {
            buffer: [0; MAX_FRAME],
            length: 0,
            overlong: false,
        }
    }

    /// Forgets a partial frame (a new connection starts).
    pub fn reset(&mut self) {
        self.length = 0;
        self.overlong = false;
    }

    /// Takes one byte; at a frame's end, returns what arrived.
    pub fn push(&mut self, byte: u8) -> Option<Received<'_>> {
        if byte == 0 {
            let length = core::mem::take(&mut self.length);
            if core::mem::take(&mut self.overlong) {
                return Some(Received::Overlong);
            }
            if length == 0 {
                return None;
            }
            self.buffer[length] = 0;
            return Some(Received::Frame(&mut self.buffer[..=length]));
        }
        if self.overlong {
            return None;
        }
        // Room for the byte and the closing 0.
        if self.length + 1 >= MAX_FRAME {
            self.overlong = true;
            self.length = 0;
            return None;
        }
        self.buffer[self.length] = byte;
        self.length += 1;
        None
    }
}

/// Text for a terminal: printable ASCII and line breaks as they are, every
/// other character escaped (`\x1b`, `\u{e9}`), so no escape sequence, bell
/// or erase reaches the host's terminal through the manager's output.
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a str);

impl core::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        for c in self.0.chars() {
            match c {
                ' '..='~' | '\n' => f.write_char(c)?,
                c if (c as u32) < 0x80 => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_a_zero_before_and_after() {
        let request = ControlRequest::Run {
            id: 7,
            line: "cpupool-list -l",
        };
        let mut buffer = [0u8; MAX_FRAME];
        let frame = encode(&request, &mut buffer).expect("fits");
        let length = frame.len();
        assert_eq!((frame[0], frame[length - 1]), (0, 0));
        assert!(frame[1..length - 1].iter().all(|&b| b != 0));
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

    fn frames_of(
        reader: &mut FrameReader,
        bytes: &[u8],
    ) -> std::vec::Vec<Option<ControlRequest<'static>>> {
        let mut out = std::vec::Vec::new();
        for &b in bytes {
            match reader.push(b) {
                Some(Received::Frame(frame)) => {
                    // Leak a copy so the decoded borrow outlives the reader.
                    let copy: &'static mut [u8] =
                        std::boxed::Box::leak(frame.to_vec().into_boxed_slice());
                    out.push(decode::<ControlRequest>(copy));
                }
                Some(Received::Overlong) => out.push(None),
                None => {}
            }
        }
        out
    }

    extern crate std;

    /// Issue 10: an unterminated partial frame garbled the next frame.
    #[test]
    fn a_partial_frame_does_not_garble_the_next_one() {
        let mut buffer = [0u8; MAX_FRAME];
        let first = encode(
            &ControlRequest::Run {
                id: 1,
                line: "cpupool-list",
            },
            &mut buffer,
        )
        .unwrap()
        .to_vec();
        let second = encode(
            &ControlRequest::Run {
                id: 2,
                line: "list -l",
            },
            &mut buffer,
        )
        .unwrap()
        .to_vec();
        // A client wrote half a frame and went away; the next one connects.
        let mut line = first[..first.len() / 2].to_vec();
        line.extend_from_slice(&second);
        let mut reader = FrameReader::new();
        assert_eq!(
            frames_of(&mut reader, &line),
            [
                None,
                Some(ControlRequest::Run {
                    id: 2,
                    line: "list -l"
                })
            ]
        );
        // Without the 0 before the frame the two ran together: one frame,
        // garbled (what happened before).
        let mut joined = first[1..first.len() / 2].to_vec();
        joined.extend_from_slice(&second[1..]);
        assert_eq!(frames_of(&mut FrameReader::new(), &joined), [None]);
    }

    #[test]
    fn an_overlong_frame_is_dropped_whole_and_the_next_is_read() {
        let mut buffer = [0u8; MAX_FRAME];
        let good = encode(
            &ControlRequest::Run {
                id: 3,
                line: "info",
            },
            &mut buffer,
        )
        .unwrap()
        .to_vec();
        let mut line = std::vec![0x41u8; MAX_FRAME * 3];
        line.extend_from_slice(&good);
        let mut reader = FrameReader::new();
        assert_eq!(
            frames_of(&mut reader, &line),
            [
                None,
                Some(ControlRequest::Run {
                    id: 3,
                    line: "info"
                })
            ]
        );
        // Empty frames (a run of zeros) are nothing.
        assert!(frames_of(&mut reader, &[0, 0, 0]).is_empty());
    }

    #[test]
    fn escaped_text_keeps_printable_ascii_and_line_breaks_only() {
        let text = std::format!("{}", Escaped("ok\n\x1b[2Jbell\x07 d\u{f6}m\u{e4}in\ttab"));
        assert_eq!(text, "ok\n\\x1b[2Jbell\\x07 d\\u{f6}m\\u{e4}in\\x09tab");
        assert!(text.chars().all(|c| c == '\n' || (' '..='~').contains(&c)));
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
