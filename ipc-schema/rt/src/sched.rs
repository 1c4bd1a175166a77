//! A scheduler server's view of one CPU's event ring (shared memory the
//! kernel writes; see `tarn_ipc_schema::sched`). The ring frame must be mapped
//! in the free window; the reader copies events out with volatile reads and
//! publishes its tail, so no Rust reference ever points into shared memory.

use crate::arch::{probe_read, probe_write, window_read, window_write};
use crate::layout;
use tarn_ipc_schema::sched::{Event, EventRing, RING_CAPACITY};

/// Reads one CPU's event ring.
#[derive(Debug)]
pub struct RingReader {
    /// The ring's page: checked once by [`RingReader::new`] to lie in the
    /// free window (never changed after), so `pop` reads it unchecked.
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
        // SAFETY: `new` checked that the page at `vaddr` lies in the free
        // window, and every word read or written here is inside it: the
        // header words, and event `index` < RING_CAPACITY at
        // `offset_of!(events) + index * 32 + 0..32` (EventRing is one page).
        let head = unsafe { window_read(self.vaddr + HEAD) };
        if head == self.tail {
            return None;
        }
        let index = self.tail % RING_CAPACITY as u64;
        let base = self.vaddr + core::mem::offset_of!(EventRing, events) as u64 + index * 32;
        // SAFETY: inside the checked page, as above.
        let event = unsafe {
            let first = window_read(base);
            Event {
                kind: first as u32,
                cpu: (first >> 32) as u32,
                thread: window_read(base + 8),
                timestamp_ns: window_read(base + 16),
                ran_ns: window_read(base + 24),
            }
        };
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: inside the checked page, as above.
        unsafe { window_write(self.vaddr + TAIL, self.tail) };
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
