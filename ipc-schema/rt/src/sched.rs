//! A scheduler server's view of one CPU's event ring (shared memory the
//! kernel writes; see `tarn_ipc_schema::sched`). The ring frame must be mapped
//! in the free window; the reader copies events out with volatile reads and
//! publishes its tail, so no Rust reference ever points into shared memory.

use crate::arch::{probe_read, probe_write};
use crate::layout;
use tarn_ipc_schema::sched::{Event, EventRing, RING_CAPACITY};

/// Reads one CPU's event ring.
#[derive(Debug)]
pub struct RingReader {
    vaddr: u64,
    tail: u64,
}

const HEAD: u64 = 0;
const TAIL: u64 = 8;
const OVERFLOW: u64 = 16;

impl RingReader {
    /// A reader for the ring frame mapped at `vaddr` (page aligned, in the
    /// free window); `None` otherwise.
    pub fn new(vaddr: u64) -> Option<Self> {
        (vaddr.is_multiple_of(4096) && layout::in_free_window(vaddr, 4096)).then(|| RingReader {
            vaddr,
            tail: probe_read(vaddr + TAIL),
        })
    }

    /// The next event, if the kernel has written one.
    pub fn pop(&mut self) -> Option<Event> {
        let head = probe_read(self.vaddr + HEAD);
        if head == self.tail {
            return None;
        }
        let index = self.tail % RING_CAPACITY as u64;
        let base = self.vaddr + core::mem::offset_of!(EventRing, events) as u64 + index * 32;
        let first = probe_read(base);
        let event = Event {
            kind: first as u32,
            cpu: (first >> 32) as u32,
            thread: probe_read(base + 8),
            timestamp_ns: probe_read(base + 16),
            ran_ns: probe_read(base + 24),
        };
        self.tail = self.tail.wrapping_add(1);
        probe_write(self.vaddr + TAIL, self.tail);
        Some(event)
    }

    /// Whether the kernel dropped events since the last call (clears the flag).
    pub fn take_overflow(&mut self) -> bool {
        let overflow = probe_read(self.vaddr + OVERFLOW) != 0;
        if overflow {
            probe_write(self.vaddr + OVERFLOW, 0);
        }
        overflow
    }
}
