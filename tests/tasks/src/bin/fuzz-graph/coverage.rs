//! The coverage table: successes per system call and per invocation label,
//! and how often each error code came back (from any call the fuzzer's
//! actions made; the checks after each step are not counted).

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use tarn_rt::abi::invocation::Invocation;
use tarn_rt::abi::{Error, Syscall};
use tarn_rt::println;

static SYSCALL_OK: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];
static INVOCATION_OK: [AtomicU64; 128] = [const { AtomicU64::new(0) }; 128];
static INVOCATION_ERR: [AtomicU64; 128] = [const { AtomicU64::new(0) }; 128];
static ERRORS: [AtomicU64; 32] = [const { AtomicU64::new(0) }; 32];

/// Every system call, invocation label and error code: the ABI's own lists,
/// so a new one is in the table (and must succeed) without an edit here.
pub const SYSCALLS: &[Syscall] = Syscall::ALL;
/// See [`SYSCALLS`].
pub const LABELS: &[Invocation] = Invocation::ALL;
/// See [`SYSCALLS`].
pub const ERRORS_ALL: &[Error] = Error::ALL;

fn error(e: Error) {
    if let Some(count) = ERRORS.get(e as usize) {
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts the result of invocation `label` and passes it on.
pub fn note<T>(label: Invocation, result: Result<T, Error>) -> Result<T, Error> {
    match &result {
        Ok(_) => INVOCATION_OK[label as usize].fetch_add(1, Ordering::Relaxed),
        Err(e) => {
            error(*e);
            INVOCATION_ERR[label as usize].fetch_add(1, Ordering::Relaxed)
        }
    };
    result
}

/// Counts the result of a system call (other than an invocation).
pub fn syscall<T>(number: Syscall, result: &Result<T, Error>) {
    match result {
        Ok(_) => count_ok(number),
        Err(e) => error(*e),
    }
}

pub fn count_ok(number: Syscall) {
    SYSCALL_OK[number as usize].fetch_add(1, Ordering::Relaxed);
}

/// Invocations that never succeeded (`MachinePowerOff` is left out: its
/// success ends the run).
pub fn never_succeeded() -> alloc::vec::Vec<Invocation> {
    LABELS
        .iter()
        .copied()
        .filter(|&l| l != Invocation::MachinePowerOff)
        .filter(|&l| INVOCATION_OK[l as usize].load(Ordering::Relaxed) == 0)
        .collect()
}

/// System calls that never succeeded.
pub fn syscalls_never_succeeded() -> alloc::vec::Vec<Syscall> {
    SYSCALLS
        .iter()
        .copied()
        .filter(|&s| SYSCALL_OK[s as usize].load(Ordering::Relaxed) == 0)
        .collect()
}

/// Error codes never returned.
pub fn errors_never_returned() -> alloc::vec::Vec<Error> {
    ERRORS_ALL
        .iter()
        .copied()
        .filter(|&e| ERRORS[e as usize].load(Ordering::Relaxed) == 0)
        .collect()
}

/// Prints the table: one line per system call, invocation and error code.
pub fn print_table() {
    println!("fuzz-graph: coverage: syscall successes");
    for &s in SYSCALLS {
        println!(
            "fuzz-graph:   syscall {:<28} ok {}",
            format!("{s:?}"),
            SYSCALL_OK[s as usize].load(Ordering::Relaxed)
        );
    }
    println!("fuzz-graph: coverage: invocation successes and errors");
    for &l in LABELS {
        println!(
            "fuzz-graph:   invocation {:<25} ok {} err {}",
            format!("{l:?}"),
            INVOCATION_OK[l as usize].load(Ordering::Relaxed),
            INVOCATION_ERR[l as usize].load(Ordering::Relaxed)
        );
    }
    println!("fuzz-graph: coverage: errors returned");
    for &e in ERRORS_ALL {
        println!(
            "fuzz-graph:   error {:<30} {}",
            format!("{e:?}"),
            ERRORS[e as usize].load(Ordering::Relaxed)
        );
    }
}

/// `a b c` from a list.
pub fn names<T: core::fmt::Debug>(items: &[T]) -> String {
    let mut out = String::new();
    for item in items {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("{item:?}"));
    }
    out
}
