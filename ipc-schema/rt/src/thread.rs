//! Extra threads in the caller's own address space.
//!
//! Thread `i` lives in slot `i` of the thread area
//! ([`crate::layout::THREAD_AREA_BASE`]): an unmapped guard page, the stack
//! (up to [`MAX_THREAD_STACK_PAGES`] pages, mapped from the top down) and
//! the IPC buffer in the top page, which is how the thread finds its buffer
//! from its stack pointer. The thread starts at the runtime's entry with a
//! boxed start record in `rdi`, runs the closure, marks itself finished and
//! suspends itself through its own TCB capability (kept in its IPC buffer's
//! `user_data`).

use crate::invoke::{self, Registers, TcbConfig};
use crate::ipc_buffer;
use crate::layout::{self, MAX_THREADS, MAX_THREAD_STACK_PAGES, PAGE_SIZE};
use crate::resources::Resources;
use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tarn_ipc_schema::{CPtr, Error, ObjectType, Rights};

/// Next free slot of the thread area in this address space.
static NEXT_THREAD: AtomicU64 = AtomicU64::new(0);

/// How to create a thread.
#[derive(Clone, Copy, Debug)]
pub struct ThreadOptions {
    /// Stack pages (1..=[`MAX_THREAD_STACK_PAGES`]).
    pub stack_pages: u64,
    /// Fault endpoint (in the caller's CSpace; 0 = none).
    pub fault_endpoint: CPtr,
    /// CPU to run on (`None` = the kernel's default).
    pub cpu: Option<u64>,
    /// Whether to resume the thread at once (otherwise call
    /// `tcb_resume(thread.tcb)` later).
    pub start: bool,
    /// The thread's CSpace root (`None` = the caller's CNode). A thread with
    /// another CSpace cannot name its own TCB there, so when its body
    /// returns it executes `ud2` (its fault handler hears of it) instead of
    /// suspending itself; such threads should wait to be deleted.
    pub cspace: Option<CPtr>,
}

impl Default for ThreadOptions {
    fn default() -> Self {
        ThreadOptions {
            stack_pages: 8,
            fault_endpoint: 0,
            cpu: None,
            start: true,
            cspace: None,
        }
    }
}

/// A thread created by [`spawn_thread`]. Dropping the handle leaves the
/// thread alone; delete its capabilities to destroy it.
#[derive(Clone, Debug)]
pub struct Thread {
    /// Its TCB.
    pub tcb: CPtr,
    /// Its IPC-buffer frame.
    pub ipc_buffer_frame: CPtr,
    /// Its first stack frame (the others follow in consecutive slots).
    pub first_stack_frame: CPtr,
    /// Stack pages.
    pub stack_pages: u64,
    /// Its thread-area slot.
    pub index: u64,
    finished: Arc<AtomicBool>,
}

impl Thread {
    /// Whether the closure has returned.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Where its IPC buffer is mapped.
    pub fn ipc_buffer_vaddr(&self) -> u64 {
        layout::thread_ipc_buffer(self.index)
    }

    /// The initial stack pointer (top of its stack).
    pub fn stack_top(&self) -> u64 {
        self.ipc_buffer_vaddr()
    }

    /// Every capability creating the thread made: TCB, IPC-buffer frame, stack frames.
    pub fn capabilities(&self) -> impl Iterator<Item = CPtr> {
        [self.tcb, self.ipc_buffer_frame]
            .into_iter()
            .chain(self.first_stack_frame..self.first_stack_frame + self.stack_pages)
    }

    /// Deletes the thread and its frames (stops it; unmaps its stack and
    /// IPC buffer) and frees the slots.
    pub fn destroy(&self, resources: &mut Resources) -> Result<(), Error> {
        for cap in self.capabilities() {
            resources.delete(cap)?;
        }
        Ok(())
    }
}

/// What a new thread needs at its first instruction.
struct StartRecord {
    body: Box<dyn FnOnce() + Send>,
    finished: Arc<AtomicBool>,
}

/// Creates a thread that runs `body` in the caller's address space and
/// CSpace (`resources.cnode`, `resources.vspace`).
pub fn spawn_thread<F: FnOnce() + Send + 'static>(
    resources: &mut Resources,
    options: ThreadOptions,
    body: F,
) -> Result<Thread, Error> {
    if options.stack_pages == 0 || options.stack_pages > MAX_THREAD_STACK_PAGES {
        return Err(Error::InvalidArgument);
    }
    let index = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    if index >= MAX_THREADS {
        return Err(Error::OutOfRange);
    }
    let buffer_vaddr = layout::thread_ipc_buffer(index);
    let tcb = resources.create(ObjectType::Tcb, 0)?;
    let ipc_buffer_frame = resources.create(ObjectType::Frame4K, 0)?;
    invoke::frame_map(
        ipc_buffer_frame,
        resources.vspace,
        buffer_vaddr,
        Rights::READ.union(Rights::WRITE),
    )?;
    let first_stack_frame = resources.create_many(ObjectType::Frame4K, 0, options.stack_pages)?;
    for page in 0..options.stack_pages {
        let vaddr = buffer_vaddr - (page + 1) * PAGE_SIZE;
        invoke::frame_map(
            first_stack_frame + page,
            resources.vspace,
            vaddr,
            Rights::READ.union(Rights::WRITE),
        )?;
    }
    let config = TcbConfig {
        cnode: options.cspace.unwrap_or(resources.cnode),
        vspace: resources.vspace,
        ipc_buffer_frame,
        ipc_buffer_vaddr: buffer_vaddr,
        fault_endpoint: options.fault_endpoint,
    };
    invoke::tcb_configure(tcb, &config)?;
    let own_tcb = if options.cspace.is_some() {
        crate::start::NO_OWN_TCB
    } else {
        tcb
    };
    // SAFETY: the buffer page was just mapped read-write in this address
    // space and nothing references it yet.
    unsafe { ipc_buffer::set_user_data_at(buffer_vaddr, own_tcb) };
    let finished = Arc::new(AtomicBool::new(false));
    let record = Box::new(StartRecord {
        body: Box::new(body),
        finished: finished.clone(),
    });
    let record = Box::into_raw(record) as u64;
    let registers = Registers {
        rip: crate::arch::thread_entry_address(),
        rsp: buffer_vaddr,
        rflags: 0x202,
        rdi: record,
        rsi: 0,
        rdx: 0,
    };
    let started = invoke::tcb_write_registers(tcb, &registers)
        .and_then(|()| {
            options
                .cpu
                .map_or(Ok(()), |cpu| invoke::tcb_set_affinity(tcb, cpu))
        })
        .and_then(|()| {
            if options.start {
                invoke::tcb_resume(tcb)
            } else {
                Ok(())
            }
        });
    if let Err(error) = started {
        // SAFETY: the thread never ran, so the record was not taken.
        drop(unsafe { Box::from_raw(record as *mut StartRecord) });
        return Err(error);
    }
    Ok(Thread {
        tcb,
        ipc_buffer_frame,
        first_stack_frame,
        stack_pages: options.stack_pages,
        index,
        finished,
    })
}

/// First Rust code of an extra thread (called from `tarn_thread_entry`).
pub(crate) extern "C" fn rt_thread_start(record: u64) -> ! {
    // SAFETY: `spawn_thread` passed a pointer from `Box::into_raw` of a
    // `StartRecord` and gave up ownership when the thread was resumed.
    let record = unsafe { Box::from_raw(record as *mut StartRecord) };
    let StartRecord { body, finished } = *record;
    body();
    finished.store(true, Ordering::Release);
    drop(finished);
    crate::start::exit()
}
