//! The growing heap: allocations well past the initial span are served
//! from frames mapped on demand in the heap window, freed memory serves
//! again (the mapped size follows the peak, not the number of rounds),
//! growing leaves the thread's IPC buffer as it was, and a request beyond
//! the budget is an allocation error, not a panic.

use crate::harness::{Env, Outcome, Pass, Test};
use crate::{ensure, expect};
use alloc::vec::Vec;
use tarn_rt::abi::MAX_MESSAGE_WORDS;
use tarn_rt::heap;
use tarn_rt::ipc_buffer;
use tarn_rt::layout::{HEAP_WINDOW_BASE, HEAP_WINDOW_BYTES};

pub const TESTS: &[Test] = &[
    ("heap_grows_past_initial_span", grows),
    ("heap_reuses_freed_memory", reuses),
    ("heap_growth_keeps_the_ipc_buffer", keeps_ipc_buffer),
    ("heap_budget_is_a_limit", limit),
];

/// Bytes of one piece, and how many pieces make the 4 MiB the tests hold.
const PIECE_WORDS: usize = 8 * 1024;
const PIECES: usize = 64;

/// Why the tests fail when the heap has no budget (the root task passes
/// every child a region for it).
const NO_BUDGET: &str = "the heap has no budget: no untyped region of 4 MiB or more to give it";

/// Word `j` of piece `i` in round `round`.
fn pattern(round: u64, i: usize, j: usize) -> u64 {
    (round << 48) ^ ((i as u64) << 24) ^ j as u64
}

/// Allocates 4 MiB in 64 KiB pieces, each filled with its pattern; checks
/// every word (`full`) or the first, middle and last of each piece.
fn fill_and_check(round: u64, full: bool) -> Result<Vec<Vec<u64>>, alloc::string::String> {
    let mut pieces = Vec::with_capacity(PIECES);
    for i in 0..PIECES {
        let piece: Vec<u64> = (0..PIECE_WORDS).map(|j| pattern(round, i, j)).collect();
        pieces.push(piece);
    }
    for (i, piece) in pieces.iter().enumerate() {
        let words: &mut dyn Iterator<Item = usize> = if full {
            &mut (0..PIECE_WORDS)
        } else {
            &mut [0, PIECE_WORDS / 2, PIECE_WORDS - 1].into_iter()
        };
        for j in words {
            expect!(piece[j], pattern(round, i, j));
        }
    }
    Ok(pieces)
}

fn in_window(address: usize) -> bool {
    (HEAP_WINDOW_BASE..HEAP_WINDOW_BASE + HEAP_WINDOW_BYTES).contains(&(address as u64))
}

fn grows(_env: &mut Env) -> Outcome {
    let before = heap::stats();
    if before.limit_bytes == 0 {
        return Err(NO_BUDGET.into());
    }
    let used_before = tarn_rt::heap_used_bytes();
    let pieces = fill_and_check(1, true)?;
    let during = heap::stats();
    let held = (PIECES * PIECE_WORDS * 8) as u64;
    ensure!(
        held > during.initial_bytes,
        "the test holds {held} bytes, no more than the initial span"
    );
    ensure!(
        (tarn_rt::heap_used_bytes() - used_before) as u64 >= held,
        "heap_used_bytes did not count the pieces"
    );
    ensure!(
        during.mapped_bytes > before.mapped_bytes && during.mapped_bytes <= during.limit_bytes,
        "mapped {} -> {} bytes (limit {})",
        before.mapped_bytes,
        during.mapped_bytes,
        during.limit_bytes
    );
    let windowed = pieces
        .iter()
        .filter(|p| in_window(p.as_ptr() as usize))
        .count();
    ensure!(
        windowed * PIECE_WORDS * 8 >= (held - during.initial_bytes) as usize,
        "only {windowed} of {PIECES} pieces lie in the heap window"
    );
    drop(pieces);
    expect!(tarn_rt::heap_used_bytes(), used_before);
    Ok(Pass::Ok)
}

fn reuses(_env: &mut Env) -> Outcome {
    if heap::stats().limit_bytes == 0 {
        return Err(NO_BUDGET.into());
    }
    drop(fill_and_check(2, true)?);
    let first = heap::stats();
    for round in 3..103 {
        let pieces = fill_and_check(round, false)?;
        drop(pieces);
        let now = heap::stats();
        ensure!(
            now.mapped_bytes == first.mapped_bytes,
            "round {round}: mapped {} bytes, {} after the first round",
            now.mapped_bytes,
            first.mapped_bytes
        );
    }
    Ok(Pass::Ok)
}

/// Growth makes system calls, which write the IPC buffer; an allocation
/// between a message written and sent (or received and read) must not
/// change it.
fn keeps_ipc_buffer(_env: &mut Env) -> Outcome {
    let before = heap::stats();
    if before.limit_bytes == 0 {
        return Err(NO_BUDGET.into());
    }
    // One block larger than everything mapped so far must grow the window.
    let size = (before.mapped_bytes + (1 << 20)) as usize;
    ensure!(
        size as u64 + (1 << 20) <= before.limit_bytes,
        "the budget ({} bytes) was used up before this test ({} mapped)",
        before.limit_bytes,
        before.mapped_bytes
    );
    let message: [u64; MAX_MESSAGE_WORDS] = core::array::from_fn(|i| 0x5EED_0000 + i as u64);
    ipc_buffer::write_mrs(0, &message);
    let block: Vec<u8> = core::hint::black_box(Vec::with_capacity(size));
    let mut after = [0u64; MAX_MESSAGE_WORDS];
    ipc_buffer::read_mrs(0, &mut after);
    let grown = heap::stats().mapped_bytes;
    drop(block);
    ensure!(
        grown > before.mapped_bytes,
        "a {size}-byte block did not grow the heap ({grown} bytes mapped)"
    );
    expect!(after, message);
    Ok(Pass::Ok)
}

fn limit(_env: &mut Env) -> Outcome {
    let before = heap::stats();
    if before.limit_bytes == 0 {
        return Err(NO_BUDGET.into());
    }
    // More than the whole budget: refused without mapping anything.
    let mut huge: Vec<u8> = Vec::new();
    ensure!(
        huge.try_reserve(before.limit_bytes as usize + (1 << 20))
            .is_err(),
        "a reservation beyond the heap's budget succeeded"
    );
    expect!(heap::stats(), before);
    // The heap still serves.
    let small: Vec<u64> = (0..1024).collect();
    expect!(small.iter().sum::<u64>(), 1023 * 1024 / 2);
    Ok(Pass::Ok)
}
