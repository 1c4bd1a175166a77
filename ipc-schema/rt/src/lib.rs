//! The Tarn user runtime: system calls and object invocations as safe
//! functions, program start-up (`_start`, [`entry!`], panic handler, heap),
//! `print!`/`println!`, and the builders a task needs to create threads and
//! processes.
//!
//! # Process model
//!
//! Every process, the root task included, sees the same layout
//! ([`layout`]): the main thread starts at the ELF entry with
//! `rsp = ROOT_STACK_TOP`, its IPC buffer at `ROOT_IPC_BUFFER_VADDR`, and
//! `rdi = BOOT_INFO_VADDR`, the address of its read-only **start page**.
//!
//! # Start-argument convention
//!
//! The start page has the layout of the root task's boot information
//! ([`tarn_ipc_schema::boot::BootInfo`], magic `BOOT_INFO_MAGIC`), filled by
//! the parent ([`process::spawn_process`]) instead of the kernel:
//!
//! - `cpu_count`: CPUs online;
//! - `untyped`: the untyped capabilities the parent moved into the child's
//!   CNode (slot, physical base, size);
//! - `modules`: program images the parent passed on, mapped read-only from
//!   `MODULES_VADDR` in the child, with copies of their frame capabilities
//!   from `first_frame_slot` (one per page);
//! - `cmdline`: the child's arguments as text (the root task passes its own
//!   kernel command line on, so `seed=N` reaches the fuzzer);
//! - `first_free_slot`: the first slot nobody uses.
//!
//! The child's root CNode has 2^12 slots ([`layout::PROCESS_CNODE_SIZE_BITS`])
//! laid out like the root task's: 1 = its CNode, 2 = its TCB, 3 = its VSpace,
//! 4 = its IPC-buffer frame, 5 = IRQ control, 6 = I/O ports, 7 = Machine (each
//! of 5..7 only if the parent gave it), 8 = the start-page frame, 9..=15 =
//! capabilities whose meaning the parent's protocol defines, then from 16 the
//! untyped and module-frame capabilities listed in the start page.
//! [`start_info`] checks and returns the start page;
//! [`resources::Resources::from_boot_info`] turns it into allocators.
//!
//! # Threads and their IPC buffers
//!
//! Extra threads ([`thread::spawn_thread`]) run in the thread area, one
//! 64 KiB slot each (guard page, stack, IPC buffer on top). A thread finds
//! its IPC buffer from its stack pointer ([`ipc_buffer::ipc_buffer`]):
//! inside the thread area it is the top page of the slot, anywhere else it
//! is the main thread's `ROOT_IPC_BUFFER_VADDR`. No per-thread state needs
//! setting up; the one runtime word kept per thread (its own TCB
//! capability, for [`exit`]) sits in the IPC buffer's `user_data`.
//!
//! # Ending
//!
//! When `main` returns, the main thread suspends itself (through slot 2);
//! when an extra thread's body returns, that thread suspends itself. Its
//! parent or creator sees the thread `Inactive` and deletes it when it likes.
//! A thread started in another CSpace than its creator's cannot name its own
//! TCB and executes `ud2` instead (its fault handler hears of it).
//!
//! # Safety
//!
//! `unsafe` lives here only: the `syscall` instruction, the entry points,
//! the heap arena, raw memory probes for fault tests, and the scratch window
//! through which the spawner fills pages. Capabilities can still unmap memory
//! Rust relies on; the runtime's own builders never do that, and code that
//! invokes capabilities directly must not either.

#![no_std]

extern crate alloc;

pub mod arch;
pub mod buddy;
pub mod heap;
pub mod invoke;
pub mod ipc_buffer;
pub mod layout;
pub mod print;
pub mod process;
pub mod resources;
pub mod sched;
mod start;
pub mod syscall;
pub mod thread;
pub mod vcpu;

pub use buddy::{Block, BuddyAllocator, KernelUntyped};
pub use heap::{heap_used_bytes, INITIAL_HEAP_BYTES};
pub use ipc_buffer::ipc_buffer;
pub use process::{spawn_process, CapGrant, Process, ProcessConfig, UntypedGrant};
pub use resources::{Resources, SlotAllocator, UntypedAllocator};
pub use start::exit;
pub use syscall::{
    call, debug_write, nb_recv, nb_send, poll, recv, reply, reply_recv, send, signal, sleep, wait,
    yield_now, Message,
};
pub use tarn_ipc_schema as abi;
pub use thread::{spawn_thread, Thread, ThreadOptions};

use tarn_ipc_schema::boot::{BootInfo, ModuleDesc, BOOT_INFO_MAGIC, MODULES_VADDR};

/// The start page (or the root task's boot information), if `arg` — the
/// program's start argument — points at one: `arg` must be
/// `BOOT_INFO_VADDR` and the page must carry `BOOT_INFO_MAGIC`.
pub fn start_info(arg: u64) -> Option<&'static BootInfo> {
    if arg != layout::BOOT_INFO_VADDR {
        return None;
    }
    // SAFETY: by the start convention (crate docs) the kernel or the parent
    // mapped the start page read-only at BOOT_INFO_VADDR before the program
    // started, and nothing ever unmaps it; it is a valid, aligned BootInfo
    // (the magic is checked before the reference is handed out).
    let info = unsafe { &*(arg as *const BootInfo) };
    (info.magic == BOOT_INFO_MAGIC).then_some(info)
}

/// The bytes of a module listed in the start page.
///
/// # Panics
///
/// If the description does not lie inside the module window (it was not
/// taken from the start page).
pub fn module_bytes(module: &ModuleDesc) -> &'static [u8] {
    let inside = module.vaddr >= MODULES_VADDR
        && module.vaddr.is_multiple_of(layout::PAGE_SIZE)
        && module
            .vaddr
            .checked_add(module.size)
            .is_some_and(|end| end <= layout::MODULES_END);
    assert!(
        inside,
        "module {} is not in the module window",
        module.name()
    );
    // SAFETY: by the start convention the modules the start page lists are
    // mapped read-only at the addresses it gives for the whole life of the
    // program; the range was checked to lie in the module window.
    unsafe { core::slice::from_raw_parts(module.vaddr as *const u8, module.size as usize) }
}
