//! The VMM's side of a Vcpu's register page
//! ([`tarn_ipc_schema::vcpu::RegisterPage`]): a frame mapped in this
//! address space, given to `VcpuBind`, where the kernel writes each exit
//! and the guest's registers and reads the registers a `VcpuRun` loads.

use crate::invoke;
use crate::layout::{PAGE_SIZE, REGISTER_PAGES_BASE, REGISTER_PAGES_BYTES};
use crate::resources::Resources;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use tarn_ipc_schema::vcpu::{self, REGISTER_COUNT};
use tarn_ipc_schema::{CPtr, Error, ObjectType, Rights};

/// Pages of the register-page window handed out so far.
static NEXT_PAGE: AtomicU64 = AtomicU64::new(0);

/// A register page mapped read-write in this address space. Deleting or
/// revoking the frame's capability unmaps it: the page is then not to be
/// touched (a `VcpuRun` that fails with `ObjectDeleted` did not read it).
pub struct RegisterPage {
    frame: CPtr,
    page: NonNull<vcpu::RegisterPage>,
}

// SAFETY: the page is plain memory mapped in the whole address space; the
// `&mut self` of every access (and of `invoke::vcpu_run`, the only time
// the kernel writes it) keeps one thread at a time on it.
unsafe impl Send for RegisterPage {}

impl RegisterPage {
    /// A new 4 KiB frame from `resources`, mapped as [`RegisterPage::of`]
    /// maps one.
    pub fn new(resources: &mut Resources) -> Result<Self, Error> {
        let frame = resources.create(ObjectType::Frame4K, 0)?;
        Self::of(frame, resources.vspace)
    }

    /// `frame` (a frame this thread may read and write), mapped read-write
    /// at the next page of the register-page window of `vspace`, which
    /// must be this address space.
    pub fn of(frame: CPtr, vspace: CPtr) -> Result<Self, Error> {
        let index = NEXT_PAGE.fetch_add(1, Ordering::Relaxed);
        if index >= REGISTER_PAGES_BYTES / PAGE_SIZE {
            return Err(Error::OutOfMemory);
        }
        let vaddr = REGISTER_PAGES_BASE + index * PAGE_SIZE;
        invoke::frame_map(frame, vspace, vaddr, Rights::READ.union(Rights::WRITE))?;
        let page = NonNull::new(vaddr as *mut vcpu::RegisterPage).ok_or(Error::InvalidArgument)?;
        Ok(RegisterPage { frame, page })
    }

    /// The frame's capability (for `VcpuBind`).
    pub fn frame(&self) -> CPtr {
        self.frame
    }

    /// The page: the last exit and the register file.
    #[inline]
    pub fn get(&self) -> &vcpu::RegisterPage {
        // SAFETY: `of` mapped the page read-write at this address (and it
        // stays mapped while the frame's capability does); the
        // kernel writes it only inside `vcpu_run`, which holds `&mut self`.
        unsafe { self.page.as_ref() }
    }

    /// The register file, to change before the next `VcpuRun` (which loads
    /// the registers it names).
    #[inline]
    pub fn registers(&mut self) -> &mut [u64; REGISTER_COUNT] {
        // SAFETY: as in `get`; `&mut self` makes this the only reference.
        unsafe { &mut self.page.as_mut().registers }
    }
}
