//! The big kernel lock. As in seL4's SMP configuration, every entry into the
//! kernel from user mode takes one lock and holds it until it returns to user
//! mode; kernel code therefore never runs concurrently with itself and needs
//! no finer locking. The [`KernelGuard`] token proves the lock is held:
//! kernel state ([`BklCell`]) and kernel-object memory
//! ([`super::objmem`]) are reachable only through `&mut KernelGuard`, so the
//! borrow checker also rules out two live mutable references to kernel state.
//!
//! A CPU waiting for the lock keeps serving the cross-CPU requests that other
//! CPUs may wait on while holding it (TLB shootdowns), so waiting never
//! deadlocks against the holder.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};

static NEXT_TICKET: AtomicU32 = AtomicU32::new(0);
static NOW_SERVING: AtomicU32 = AtomicU32::new(0);

/// Proof that this CPU holds the big kernel lock. Exactly one exists at a time.
pub struct KernelGuard {
    _not_send: core::marker::PhantomData<*const ()>,
}

/// Takes the big kernel lock (FIFO ticket order). Interrupts must be off.
/// Inlined, with the wait out of line: every system call takes the lock
/// here, nearly always uncontended.
#[inline(always)]
pub fn acquire() -> KernelGuard {
    let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
    if NOW_SERVING.load(Ordering::Acquire) != ticket {
        wait_for(ticket);
    }
    KernelGuard {
        _not_send: core::marker::PhantomData,
    }
}

/// Waits until ticket `ticket` is served, serving this CPU's remote
/// requests meanwhile ([`acquire`] found the lock held).
#[cold]
#[inline(never)]
fn wait_for(ticket: u32) {
    while NOW_SERVING.load(Ordering::Acquire) != ticket {
        super::percpu::current().serve_remote_requests();
        core::hint::spin_loop();
    }
}

impl Drop for KernelGuard {
    fn drop(&mut self) {
        NOW_SERVING.fetch_add(1, Ordering::Release);
    }
}

/// Kernel state shared by all CPUs, reachable only with the lock held.
pub struct BklCell<T>(UnsafeCell<T>);

// SAFETY: the contents are only reached through `get`, which needs the unique
// `&mut KernelGuard`; so at most one CPU, and one borrow, touches them at a time.
unsafe impl<T: Send> Sync for BklCell<T> {}

impl<T> BklCell<T> {
    /// A cell holding `value`.
    pub const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// The contents, for as long as the guard is borrowed.
    pub fn get<'a>(&'a self, _guard: &'a mut KernelGuard) -> &'a mut T {
        // SAFETY: the guard is unique system-wide (one lock holder) and is
        // mutably borrowed for 'a, so no other reference derived from it lives.
        unsafe { &mut *self.0.get() }
    }
}
