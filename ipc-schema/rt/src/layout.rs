//! The address-space and CNode layout every Tarn process shares: where the
//! runtime puts the start page, the IPC buffers, stacks and threads, which
//! addresses it never touches, and which CNode slots hold what.
//!
//! | virtual | what |
//! | --- | --- |
//! | `0x0000_0000_0020_0000..` | the program image (lld's default base for static executables) |
//! | [`FREE_WINDOW_BASE`]..[`FREE_WINDOW_END`] | never used by the runtime: applications and tests map here |
//! | [`SCRATCH_VADDR`] | the spawner's copy window (pages being filled for another address space) |
//! | [`SCRATCH_LARGE_VADDR`] | the same for 2 MiB frames |
//! | [`REGISTER_PAGES_BASE`].. | Vcpu register pages, one page each, in the order made ([`crate::vcpu::RegisterPage::new`]) |
//! | [`HEAP_WINDOW_BASE`].. | the heap's growth: frames mapped in order as it runs out ([`crate::heap`]) |
//! | [`THREAD_AREA_BASE`].. | one [`THREAD_SLOT_BYTES`] slot per extra thread: guard page, stack, IPC buffer |
//! | [`MODULES_VADDR`].. | modules the parent handed over, read-only, packed |
//! | [`ROOT_STACK_TOP`] | top of the main thread's stack (it grows down) |
//! | [`ROOT_IPC_BUFFER_VADDR`] | the main thread's IPC buffer |
//! | [`BOOT_INFO_VADDR`] | the start page (read-only; a [`tarn_ipc_schema::boot::BootInfo`]) |
//!
//! The root task gets exactly this layout from the kernel; every process the
//! runtime spawns gets it from [`crate::process::spawn_process`].

pub use tarn_ipc_schema::boot::{
    BOOT_INFO_VADDR, MODULES_VADDR, ROOT_IPC_BUFFER_VADDR, ROOT_STACK_TOP,
};

/// Bytes in a page.
pub const PAGE_SIZE: u64 = 4096;
/// Bytes in a large page.
pub const LARGE_PAGE_SIZE: u64 = 2 * 1024 * 1024;
/// First address past user space.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Start of the window the runtime never maps into.
pub const FREE_WINDOW_BASE: u64 = 0x0000_1000_0000_0000;
/// End of that window.
pub const FREE_WINDOW_END: u64 = 0x0000_2000_0000_0000;

/// The page through which the spawner fills frames destined for another
/// address space (mapped, written, unmapped again; one at a time).
pub const SCRATCH_VADDR: u64 = 0x0000_2000_0000_0000;
/// The 2 MiB window through which large frames are filled (a VMM's guest
/// memory), the same way.
pub const SCRATCH_LARGE_VADDR: u64 = SCRATCH_VADDR + LARGE_PAGE_SIZE;

/// Base of the register-page window: [`crate::vcpu::RegisterPage::new`]
/// maps each new page at the next address here.
pub const REGISTER_PAGES_BASE: u64 = 0x0000_2800_0000_0000;
/// Bytes of the register-page window.
pub const REGISTER_PAGES_BYTES: u64 = 1 << 40;

/// Base of the heap window: when the heap has a budget and runs out, it
/// maps frames here, each at the end of the last ([`crate::heap`]).
pub const HEAP_WINDOW_BASE: u64 = 0x0000_3000_0000_0000;
/// Bytes of the heap window (no budget may exceed it).
pub const HEAP_WINDOW_BYTES: u64 = 1 << 40;

/// Base of the extra-thread area.
pub const THREAD_AREA_BASE: u64 = 0x0000_4000_0000_0000;
/// One thread's share of the area: an unmapped guard page at the bottom, the
/// stack, and the IPC buffer in the top page (the stack starts right below it).
pub const THREAD_SLOT_BYTES: u64 = 64 * 1024;
/// Most extra threads one address space can ever create.
pub const MAX_THREADS: u64 = 4096;
/// Largest stack an extra thread can have (the slot minus guard and IPC pages).
pub const MAX_THREAD_STACK_PAGES: u64 = THREAD_SLOT_BYTES / PAGE_SIZE - 2;

/// The IPC buffer of extra thread `index`.
pub const fn thread_ipc_buffer(index: u64) -> u64 {
    THREAD_AREA_BASE + (index + 1) * THREAD_SLOT_BYTES - PAGE_SIZE
}

/// The IPC buffer of the thread whose stack pointer is `rsp`: inside the
/// thread area it is the top page of the slot; anywhere else the thread is a
/// main thread, whose buffer is at [`ROOT_IPC_BUFFER_VADDR`].
#[inline]
pub const fn ipc_buffer_for_stack(rsp: u64) -> u64 {
    if rsp >= THREAD_AREA_BASE && rsp < THREAD_AREA_BASE + MAX_THREADS * THREAD_SLOT_BYTES {
        thread_ipc_buffer((rsp - THREAD_AREA_BASE) / THREAD_SLOT_BYTES)
    } else {
        ROOT_IPC_BUFFER_VADDR
    }
}

/// Whether `[addr, addr + len)` lies inside the free window.
pub const fn in_free_window(addr: u64, len: u64) -> bool {
    addr >= FREE_WINDOW_BASE && len <= FREE_WINDOW_END - addr
}

/// End of the module window (modules are packed from [`MODULES_VADDR`]).
pub const MODULES_END: u64 = 0x0000_7000_0000_0000;

/// Slots of a process's root CNode. Slots 1..=8 mirror the root task's
/// (`tarn_ipc_schema::boot::slot`); 9..=15 carry what the parent chose to
/// give (their meaning is the parent's protocol with the child); from
/// [`slot::FIRST_DYNAMIC`] on come the untyped capabilities and the module
/// frames the start page lists, then free slots from
/// `BootInfo::first_free_slot`.
pub mod slot {
    pub use tarn_ipc_schema::boot::slot::*;
    /// First slot for capabilities the parent chose.
    pub const FIRST_PARENT: u64 = 9;
    /// Last slot for capabilities the parent chose.
    pub const LAST_PARENT: u64 = 15;
}

/// log2 of the slot count of every spawned process's root CNode (the root
/// task's is larger: it holds a frame capability per page of the boot
/// modules, [`tarn_ipc_schema::boot::ROOT_CNODE_SIZE_BITS`]).
pub const PROCESS_CNODE_SIZE_BITS: u64 = 12;

// The regions do not overlap, and the program image (static executables
// link at 2 MiB) stays below all of them.
const _: () = {
    assert!(0x20_0000 + (1u64 << 32) < FREE_WINDOW_BASE);
    assert!(FREE_WINDOW_END <= SCRATCH_VADDR);
    assert!(SCRATCH_VADDR + PAGE_SIZE <= SCRATCH_LARGE_VADDR);
    assert!(SCRATCH_LARGE_VADDR.is_multiple_of(LARGE_PAGE_SIZE));
    assert!(SCRATCH_LARGE_VADDR + LARGE_PAGE_SIZE <= HEAP_WINDOW_BASE);
    assert!(HEAP_WINDOW_BASE.is_multiple_of(LARGE_PAGE_SIZE));
    assert!(HEAP_WINDOW_BASE + HEAP_WINDOW_BYTES <= THREAD_AREA_BASE);
    assert!(THREAD_AREA_BASE + MAX_THREADS * THREAD_SLOT_BYTES <= MODULES_VADDR);
    assert!(MODULES_END <= ROOT_STACK_TOP - tarn_ipc_schema::boot::ROOT_STACK_BYTES);
    assert!(ROOT_STACK_TOP < ROOT_IPC_BUFFER_VADDR);
    assert!(ROOT_IPC_BUFFER_VADDR < BOOT_INFO_VADDR);
    assert!(BOOT_INFO_VADDR < USER_END);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_thread_stack_maps_to_root_buffer() {
        assert_eq!(
            ipc_buffer_for_stack(ROOT_STACK_TOP - 8),
            ROOT_IPC_BUFFER_VADDR
        );
        assert_eq!(ipc_buffer_for_stack(0x20_0000), ROOT_IPC_BUFFER_VADDR);
    }

    #[test]
    fn thread_stack_maps_to_its_slot_top() {
        let buffer = thread_ipc_buffer(3);
        assert_eq!(ipc_buffer_for_stack(buffer), buffer);
        assert_eq!(ipc_buffer_for_stack(buffer - 8), buffer);
        assert_eq!(
            ipc_buffer_for_stack(buffer - MAX_THREAD_STACK_PAGES * PAGE_SIZE),
            buffer
        );
        // The next page up is the bottom (guard page) of the next slot.
        assert_eq!(
            ipc_buffer_for_stack(buffer + PAGE_SIZE),
            thread_ipc_buffer(4)
        );
    }
}
