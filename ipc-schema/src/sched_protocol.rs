//! The scheduler-server protocol: what a client (the pool manager, a tenant,
//! a test) asks a scheduler server over its request endpoint, and what it
//! answers. Messages are postcard-encoded into the message words (MR0..),
//! little-endian, the length in words in the message-info word; a thread
//! handed to the server travels as the message's one capability (the TCB).
//!
//! A request the server cannot decode, or one it refuses, gets a
//! [`SchedReply::Error`] or [`SchedReply::Refused`] naming why; nothing
//! changes on the server.
//!
//! Policy parameters are open: a policy declares its own (`Describe`,
//! `DescribeParam`), and they travel as `key=value` text separated by spaces
//! (`"weight=512 cap=50"`); the server parses them against the policy's
//! declarations and the policy checks the rest. A refusal is
//! [`SchedReply::Refused`] with one line naming the key.

use serde::{Deserialize, Serialize};

/// Message label of every request and reply of this protocol.
pub const LABEL: u64 = 0x5C4E;
/// Most message words a request or reply takes.
pub const MAX_WORDS: usize = 32;

/// A request to a scheduler server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedRequest<'a> {
    /// Adopt the thread whose TCB capability travels with this message, as
    /// `thread_id` of `domain` (created with default parameters if new).
    AddThread {
        /// The id events will carry (non-zero, unique in this server).
        thread_id: u64,
        /// Its domain.
        domain: u32,
    },
    /// Release a thread (it returns to the system FIFO).
    RemoveThread {
        /// The thread.
        thread_id: u64,
    },
    /// Set some of a domain's parameters (`key=value` text; the others keep
    /// their values). The domain is created with the defaults if new.
    SetDomainParams {
        /// The domain.
        domain: u32,
        /// `key=value` pairs separated by spaces.
        params: &'a str,
    },
    /// Set some of the pool's parameters (`key=value` text).
    SetPoolParams {
        /// `key=value` pairs separated by spaces.
        params: &'a str,
    },
    /// A domain's parameters, every declared one with its current value
    /// (answered with [`SchedReply::Values`]).
    GetDomainParams {
        /// The domain.
        domain: u32,
    },
    /// The pool's parameters with their current values
    /// ([`SchedReply::Values`]).
    GetPoolParams,
    /// The policy's name and how many parameters it declares
    /// ([`SchedReply::Policy`]).
    Describe,
    /// One declared parameter ([`SchedReply::Param`]; past the last one,
    /// [`SchedError::NoSuchParam`]).
    DescribeParam {
        /// A pool parameter (else a domain parameter).
        pool: bool,
        /// Its index, from 0.
        index: u32,
    },
    /// How much CPU time a thread got (ns, from the kernel's accounting).
    QueryThread {
        /// The thread.
        thread_id: u64,
    },
    /// Take CPU `cpu` into the pool: its `Cpu` capability travels with this
    /// message; the server binds it to its `Scheduler` and starts its agent.
    AddCpu {
        /// Physical CPU index.
        cpu: u32,
    },
    /// Give CPU `cpu` back (the pool manager's negotiated removal): the
    /// server stops dispatching there, moves the CPU's threads to its other
    /// CPUs, unbinds the CPU and drops its capability, then answers. A
    /// server that does not answer in time has the CPU revoked anyway.
    RemoveCpu {
        /// Physical CPU index.
        cpu: u32,
    },
    /// Are you alive? Answered with `Ok` (the pool manager's liveness probe).
    Ping,
    /// Fault injection for tests and demonstrations of the pool manager's
    /// recovery paths; nothing a healthy pool needs.
    Misbehave(Misbehaviour),
    /// Set a thread's hard affinity: the CPUs (physical indices) it may run
    /// on, as a bitmap ([`cpu_bitmap`]: bit `n % 8` of byte `n / 8` is CPU
    /// `n`), or `None` for every CPU of the pool. CPUs not in the pool are
    /// ignored; when none of the set is in the pool the thread runs on any
    /// (the policy SDK's rule). Answered `Ok`, [`SchedReply::Refused`] with
    /// the policy's reason (an empty set, a policy without affinity, an
    /// SEDF reservation that fits on no allowed CPU), or
    /// [`SchedError::UnknownThread`]; nothing changes on refusal.
    SetAffinity {
        /// The thread.
        thread_id: u64,
        /// The CPU bitmap, `None` for every CPU of the pool.
        cpus: Option<&'a [u8]>,
    },
    /// Set a thread's soft affinity: the CPUs it prefers, as a bitmap
    /// ([`cpu_bitmap`]), or `None` for no preference. A preference, never
    /// a restriction: a policy considers it where it meets the hard
    /// affinity and the pool, or ignores it (the policy SDK's rule).
    /// Answered `Ok`, [`SchedReply::Refused`] for an empty set, or
    /// [`SchedError::UnknownThread`]; nothing changes on refusal.
    SetSoftAffinity {
        /// The thread.
        thread_id: u64,
        /// The CPU bitmap, `None` for no preference.
        cpus: Option<&'a [u8]>,
    },
}

/// The most CPUs a [`SchedRequest::SetAffinity`] bitmap names (it must fit
/// in a message with its other fields).
pub const MAX_AFFINITY_CPUS: u32 = 1024;

/// Writes the bitmap of `cpus` into `bytes` (cleared first) and returns the
/// part that is used (up to the byte of the highest CPU), or `None` if a
/// CPU is beyond [`MAX_AFFINITY_CPUS`] or `bytes`.
pub fn cpu_bitmap(cpus: impl IntoIterator<Item = u32>, bytes: &mut [u8]) -> Option<&[u8]> {
    bytes.fill(0);
    let mut used = 0;
    for cpu in cpus {
        let byte = usize::try_from(cpu / 8).ok()?;
        if cpu >= MAX_AFFINITY_CPUS || byte >= bytes.len() {
            return None;
        }
        bytes[byte] |= 1 << (cpu % 8);
        used = used.max(byte + 1);
    }
    Some(&bytes[..used])
}

/// The CPUs of a bitmap, lowest first.
pub fn bitmap_cpus(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes.iter().enumerate().flat_map(|(i, &byte)| {
        (0..8u32)
            .filter(move |bit| byte & (1 << bit) != 0)
            .map(move |bit| i as u32 * 8 + bit)
    })
}

/// What [`SchedRequest::Misbehave`] makes a server do from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Misbehaviour {
    /// Never answer `RemoveCpu` (so the manager's deadline revokes the CPU).
    IgnoreRemoveCpu,
    /// Stop serving requests at all, after answering this one.
    Hang,
    /// Crash: the server's request thread faults after answering this one.
    Crash,
}

/// A scheduler server's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedReply<'a> {
    /// Done.
    Ok,
    /// A thread's total run time while in this server's pool.
    ThreadTime {
        /// ns.
        ran_ns: u64,
    },
    /// Parameters with their values: `key=value` text.
    Values(&'a str),
    /// What `Describe` asks.
    Policy {
        /// The policy's name (`credit`, `sedf`, `rr`, a user's).
        name: &'a str,
        /// How many per-domain parameters it declares.
        domain_params: u32,
        /// How many pool parameters it declares.
        pool_params: u32,
    },
    /// One declared parameter.
    Param {
        /// Its key.
        name: &'a str,
        /// The values it takes (`1..=65535`, `0|1`, `a|b`).
        range: &'a str,
        /// Its default value.
        default: &'a str,
        /// One line of help.
        help: &'a str,
    },
    /// A parameter request refused by the policy: one line naming the key
    /// (`"weight: 0 is outside 1..=65535"`); nothing changed.
    Refused(&'a str),
    /// Refused; nothing changed.
    Error(SchedError),
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedError {
    /// The message is not a request of this protocol (wrong label, garbled
    /// or truncated encoding).
    Malformed,
    /// `AddThread` without a TCB capability attached.
    NoThreadCapability,
    /// The thread id is 0 or already in use.
    BadThreadId,
    /// No such thread in this server.
    UnknownThread,
    /// `AddThread` refused by the policy (e.g. SEDF admission control: the
    /// domain's reservation does not fit).
    Infeasible,
    /// `DescribeParam` past the last parameter.
    NoSuchParam,
    /// The reply would not fit in a message (text too long).
    TooLong,
    /// `AddCpu` without a `Cpu` capability, with a capability of another CPU,
    /// or for a CPU the server already has; `RemoveCpu` for a CPU it does
    /// not have.
    BadCpu,
    /// The kernel refused an operation (its error code).
    Kernel(u64),
}

/// Encodes `message` into `words` (little-endian bytes); returns the number
/// of words used, or `None` if it does not fit.
pub fn encode<T: Serialize>(message: &T, words: &mut [u64]) -> Option<usize> {
    let mut bytes = [0u8; MAX_WORDS * 8];
    let used = postcard::to_slice(message, &mut bytes).ok()?.len();
    let count = used.div_ceil(8);
    if count > words.len() {
        return None;
    }
    for (word, chunk) in words.iter_mut().zip(bytes[..count * 8].chunks(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(chunk);
        *word = u64::from_le_bytes(le);
    }
    Some(count)
}

/// Decodes a message from `words`.
pub fn decode<'a, T: Deserialize<'a>>(
    words: &[u64],
    scratch: &'a mut [u8; MAX_WORDS * 8],
) -> Option<T> {
    let count = words.len().min(MAX_WORDS);
    for (chunk, word) in scratch.chunks_mut(8).zip(&words[..count]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    postcard::from_bytes(&scratch[..count * 8]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let requests = [
            SchedRequest::AddThread {
                thread_id: 7,
                domain: 3,
            },
            SchedRequest::SetDomainParams {
                domain: 1,
                params: "weight=512 cap=50",
            },
            SchedRequest::SetPoolParams {
                params: "timeslice_ms=30 ratelimit_us=1000",
            },
            SchedRequest::GetDomainParams { domain: 2 },
            SchedRequest::GetPoolParams,
            SchedRequest::Describe,
            SchedRequest::DescribeParam {
                pool: true,
                index: 1,
            },
            SchedRequest::QueryThread {
                thread_id: u64::MAX,
            },
            SchedRequest::AddCpu { cpu: 3 },
            SchedRequest::RemoveCpu { cpu: 63 },
            SchedRequest::Ping,
            SchedRequest::Misbehave(Misbehaviour::IgnoreRemoveCpu),
            SchedRequest::SetAffinity {
                thread_id: 5,
                cpus: None,
            },
            SchedRequest::SetAffinity {
                thread_id: 6,
                cpus: Some(&[0b0000_0101]),
            },
            SchedRequest::SetSoftAffinity {
                thread_id: 7,
                cpus: Some(&[0b0000_0010]),
            },
            SchedRequest::SetSoftAffinity {
                thread_id: 8,
                cpus: None,
            },
        ];
        for request in requests {
            let mut words = [0u64; MAX_WORDS];
            let count = encode(&request, &mut words).expect("fits");
            let mut scratch = [0u8; MAX_WORDS * 8];
            assert_eq!(
                decode::<SchedRequest>(&words[..count], &mut scratch),
                Some(request)
            );
        }
        for reply in [
            SchedReply::Error(SchedError::Kernel(20)),
            SchedReply::Refused("weight: 0 is outside 1..=65535"),
            SchedReply::Values("period=100 slice=20 extra=0"),
            SchedReply::Policy {
                name: "prio",
                domain_params: 1,
                pool_params: 0,
            },
            SchedReply::Param {
                name: "prio",
                range: "0..=99",
                default: "0",
                help: "higher runs first",
            },
        ] {
            let mut words = [0u64; MAX_WORDS];
            let count = encode(&reply, &mut words).expect("fits");
            let mut scratch = [0u8; MAX_WORDS * 8];
            assert_eq!(
                decode::<SchedReply>(&words[..count], &mut scratch),
                Some(reply)
            );
        }
        // Text too long for a message does not encode (the sender refuses it).
        let bytes = [b'x'; MAX_WORDS * 8];
        let long = core::str::from_utf8(&bytes).expect("ascii");
        let mut words = [0u64; MAX_WORDS];
        assert_eq!(
            encode(&SchedRequest::SetPoolParams { params: long }, &mut words),
            None
        );
    }

    #[test]
    fn affinity_bitmaps_round_trip() {
        let mut bytes = [0u8; 128];
        let cpus = [0u32, 2, 9, 63, 200, 1023];
        let bitmap = cpu_bitmap(cpus, &mut bytes).expect("fits");
        assert_eq!(bitmap.len(), 128);
        assert_eq!(bitmap[0], 0b101);
        assert_eq!(bitmap[1], 0b10);
        assert!(bitmap_cpus(bitmap).eq(cpus));
        // The largest bitmap travels in one message, and decodes to itself.
        let request = SchedRequest::SetAffinity {
            thread_id: u64::MAX,
            cpus: Some(bitmap),
        };
        let mut words = [0u64; MAX_WORDS];
        let count = encode(&request, &mut words).expect("fits");
        let mut scratch = [0u8; MAX_WORDS * 8];
        let decoded = decode::<SchedRequest>(&words[..count], &mut scratch);
        assert_eq!(decoded, Some(request));
        let Some(SchedRequest::SetAffinity {
            cpus: Some(got), ..
        }) = decoded
        else {
            panic!("not an affinity request: {decoded:?}");
        };
        assert!(bitmap_cpus(got).eq(cpus));
        // Only the bytes up to the highest CPU are used.
        assert_eq!(cpu_bitmap([3], &mut bytes), Some(&[0b1000][..]));
        // Beyond the limit, or the buffer: refused.
        assert_eq!(cpu_bitmap([MAX_AFFINITY_CPUS], &mut [0u8; 256]), None);
        assert_eq!(cpu_bitmap([64], &mut [0u8; 8]), None);
        // An empty set is an empty bitmap (the policy refuses it).
        assert_eq!(cpu_bitmap([], &mut bytes), Some(&[][..]));
    }

    #[test]
    fn garbage_does_not_decode() {
        let mut scratch = [0u8; MAX_WORDS * 8];
        assert_eq!(decode::<SchedRequest>(&[u64::MAX; 4], &mut scratch), None);
        assert_eq!(decode::<SchedRequest>(&[], &mut scratch), None);
        // Seeded random words never panic the decoder.
        let mut seed = 0x1234_5678_9ABC_DEF0u64;
        for _ in 0..10_000 {
            let mut words = [0u64; 6];
            for w in &mut words {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *w = seed;
            }
            let length = (seed % 7) as usize;
            let _ = decode::<SchedRequest>(&words[..length], &mut scratch);
        }
    }
}
