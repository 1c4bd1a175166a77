//! New processes from ELF images: [`spawn_process`] builds a CNode, a VSpace,
//! the program's pages, a stack, an IPC buffer and a start page, hands over
//! the chosen capabilities, and starts the main thread.
//!
//! Pages are filled through the caller's scratch window
//! ([`crate::layout::SCRATCH_VADDR`]): each fresh frame is mapped there,
//! written (file bytes, the rest zeros), unmapped, and mapped into the child
//! with the rights its segment asks for. The frame capabilities stay in the
//! caller's CNode.

use crate::invoke::{self, Registers, TcbConfig};
use crate::layout::{self, slot, PAGE_SIZE, SCRATCH_VADDR};
use crate::resources::Resources;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use elf::abi::{PF_R, PF_W, PF_X, PT_LOAD};
use elf::endian::LittleEndian;
use elf::ElfBytes;
use tarn_ipc_schema::boot::{
    BootInfo, ModuleDesc, UntypedDesc, BOOT_INFO_MAGIC, CMDLINE_BYTES, MAX_BOOT_CPUS, MAX_MODULES,
    MAX_UNTYPED, MODULE_NAME_BYTES,
};
use tarn_ipc_schema::{CPtr, Error, ObjectType, Rights};

/// Serialises use of the scratch window.
static SCRATCH: spin::Mutex<()> = spin::Mutex::new(());
static SCRATCH_LARGE: spin::Mutex<()> = spin::Mutex::new(());

/// One loadable page of a program image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagePlan {
    /// Virtual address (page aligned).
    pub vaddr: u64,
    /// Rights the segments covering it ask for.
    pub rights: Rights,
}

/// An ELF image checked and reduced to what the loader needs.
#[derive(Debug)]
pub struct Image<'a> {
    bytes: &'a [u8],
    /// Entry point.
    pub entry: u64,
    /// (vaddr, file offset, file size, memory size) of each PT_LOAD segment.
    segments: Vec<(u64, u64, u64, u64)>,
    /// Every page the segments cover, in address order.
    pub pages: Vec<PagePlan>,
}

impl<'a> Image<'a> {
    /// Parses a static x86-64 executable. Segments may share pages (their
    /// rights are then combined); every page must lie below the thread area.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let file =
            ElfBytes::<LittleEndian>::minimal_parse(bytes).map_err(|_| Error::InvalidArgument)?;
        const EM_X86_64: u16 = 62;
        const ET_EXEC: u16 = 2;
        if file.ehdr.e_machine != EM_X86_64 || file.ehdr.e_type != ET_EXEC {
            return Err(Error::InvalidArgument);
        }
        let mut segments = Vec::new();
        let mut pages: BTreeMap<u64, u64> = BTreeMap::new();
        for header in file.segments().ok_or(Error::InvalidArgument)?.iter() {
            if header.p_type != PT_LOAD || header.p_memsz == 0 {
                continue;
            }
            let file_end = header
                .p_offset
                .checked_add(header.p_filesz)
                .ok_or(Error::InvalidArgument)?;
            let memory_end = header
                .p_vaddr
                .checked_add(header.p_memsz)
                .ok_or(Error::InvalidArgument)?;
            if header.p_filesz > header.p_memsz
                || file_end > bytes.len() as u64
                || memory_end > layout::FREE_WINDOW_BASE
            {
                return Err(Error::InvalidArgument);
            }
            let mut rights = 0;
            if header.p_flags & PF_R != 0 {
                rights |= Rights::READ.0;
            }
            if header.p_flags & PF_W != 0 {
                rights |= Rights::WRITE.0 | Rights::READ.0;
            }
            if header.p_flags & PF_X != 0 {
                rights |= Rights::EXECUTE.0 | Rights::READ.0;
            }
            let mut page = header.p_vaddr & !(PAGE_SIZE - 1);
            while page < memory_end {
                *pages.entry(page).or_insert(0) |= rights;
                page += PAGE_SIZE;
            }
            segments.push((
                header.p_vaddr,
                header.p_offset,
                header.p_filesz,
                header.p_memsz,
            ));
        }
        let entry = file.ehdr.e_entry;
        let pages: Vec<PagePlan> = pages
            .into_iter()
            .map(|(vaddr, rights)| PagePlan {
                vaddr,
                rights: Rights(rights),
            })
            .collect();
        let entry_page = entry & !(PAGE_SIZE - 1);
        if !pages
            .iter()
            .any(|p| p.vaddr == entry_page && p.rights.contains(Rights::EXECUTE))
        {
            return Err(Error::InvalidArgument);
        }
        Ok(Image {
            bytes,
            entry,
            segments,
            pages,
        })
    }

    /// Writes the content of the page at `vaddr` (file bytes of every segment
    /// covering it, zeros elsewhere) into `page`.
    pub fn fill(&self, vaddr: u64, page: &mut [u8]) {
        page.fill(0);
        for &(start, offset, file_size, _) in &self.segments {
            let from = start.max(vaddr);
            let to = (start + file_size).min(vaddr + PAGE_SIZE);
            if from >= to {
                continue;
            }
            let source = (offset + (from - start)) as usize;
            let length = (to - from) as usize;
            let dest = (from - vaddr) as usize;
            page[dest..dest + length].copy_from_slice(&self.bytes[source..source + length]);
        }
    }
}

/// Maps `frame` at the scratch window, lets `write` fill the page, unmaps it.
pub fn fill_frame(
    resources: &Resources,
    frame: CPtr,
    write: impl FnOnce(&mut [u8]),
) -> Result<(), Error> {
    let _guard = SCRATCH.lock();
    invoke::frame_map(
        frame,
        resources.vspace,
        SCRATCH_VADDR,
        Rights::READ.union(Rights::WRITE),
    )?;
    {
        // SAFETY: the scratch page was just mapped read-write in this address
        // space, only this function maps it (under `SCRATCH`), and the slice
        // does not outlive this block, which ends before the unmap.
        let page = unsafe {
            core::slice::from_raw_parts_mut(SCRATCH_VADDR as *mut u8, PAGE_SIZE as usize)
        };
        write(page);
    }
    invoke::frame_unmap(frame)
}

/// A new 2 MiB frame, filled by `write` through the large scratch window
/// (mapped, written, unmapped), in a fresh slot.
pub fn new_large_frame(
    resources: &mut Resources,
    write: impl FnOnce(&mut [u8]),
) -> Result<CPtr, Error> {
    let frame = resources.create(ObjectType::Frame2M, 0)?;
    let _guard = SCRATCH_LARGE.lock();
    invoke::frame_map(
        frame,
        resources.vspace,
        layout::SCRATCH_LARGE_VADDR,
        Rights::READ.union(Rights::WRITE),
    )?;
    {
        // SAFETY: `frame` was just created as a 2 MiB frame and mapped
        // read-write at the 2 MiB-aligned large scratch window of this
        // address space; only this function maps there (under
        // `SCRATCH_LARGE`), and the slice does not outlive this block,
        // which ends before the unmap.
        let page = unsafe {
            core::slice::from_raw_parts_mut(
                layout::SCRATCH_LARGE_VADDR as *mut u8,
                layout::LARGE_PAGE_SIZE as usize,
            )
        };
        write(page);
    }
    invoke::frame_unmap(frame)?;
    Ok(frame)
}

/// A capability to copy (or mint) into the child's CNode.
#[derive(Clone, Copy, Debug)]
pub struct CapGrant {
    /// Source slot in the caller's CNode.
    pub source: CPtr,
    /// Destination slot in the child's CNode.
    pub dest: u64,
    /// Rights mask.
    pub rights: Rights,
    /// Badge to mint (0 = plain copy).
    pub badge: u64,
}

/// An untyped capability to move into the child (listed in its start page).
#[derive(Clone, Copy, Debug)]
pub struct UntypedGrant {
    /// Its slot in the caller's CNode (it is moved out of it).
    pub cptr: CPtr,
    /// Physical base.
    pub phys: u64,
    /// log2 size.
    pub size_bits: u64,
}

/// Everything [`spawn_process`] needs.
#[derive(Clone, Copy, Debug)]
pub struct ProcessConfig<'a> {
    /// The program (a static x86-64 ELF executable).
    pub elf: &'a [u8],
    /// log2 bytes of the child's VSpace (page-table memory).
    pub vspace_bits: u64,
    /// log2 slots of the child's root CNode: at least
    /// [`ProcessConfig::slots_needed`]; the rest are the child's to use.
    pub cnode_bits: u64,
    /// Pages of main-thread stack below `ROOT_STACK_TOP`.
    pub stack_pages: u64,
    /// Fault endpoint for the main thread (caller's CSpace, 0 = none); mint
    /// a badged copy to tell children apart.
    pub fault_endpoint: CPtr,
    /// Capabilities copied into the child's CNode.
    pub caps: &'a [CapGrant],
    /// Untyped memory moved to the child.
    pub untyped: &'a [UntypedGrant],
    /// Untyped memory of this size (log2 bytes; 0: none) made for the
    /// child right after its VSpace and CNode, listed after `untyped`: the
    /// largest object first wastes no alignment ([`Self::bytes_needed`]).
    pub memory_bits: u64,
    /// Modules (as described in the caller's start page) to map read-only
    /// into the child and list in its start page, with their frame
    /// capabilities copied.
    pub modules: &'a [ModuleDesc],
    /// The child's command line (its start page `cmdline`).
    pub cmdline: &'a str,
    /// CPUs online (copied into the start page).
    pub cpu_count: u64,
    /// CPU for the main thread (`None` = the kernel's default).
    pub cpu: Option<u64>,
    /// The caller's first `Cpu` capability (CPU i's at that slot + i, for
    /// `cpu_count` CPUs): copies go to the child, listed in its start page
    /// (`first_cpu_slot`). `None` gives the child no CPU capabilities.
    pub cpu_caps: Option<CPtr>,
    /// Leave the main thread stopped (the caller resumes it, e.g. after
    /// handing it to a scheduler server).
    pub suspended: bool,
}

impl Default for ProcessConfig<'_> {
    fn default() -> Self {
        ProcessConfig {
            elf: &[],
            vspace_bits: 20,
            cnode_bits: layout::PROCESS_CNODE_SIZE_BITS,
            stack_pages: 32,
            fault_endpoint: 0,
            caps: &[],
            untyped: &[],
            memory_bits: 0,
            modules: &[],
            cmdline: "",
            cpu_count: 1,
            cpu: None,
            cpu_caps: None,
            suspended: false,
        }
    }
}

impl ProcessConfig<'_> {
    /// Frames mapped into the child that its CNode keeps: the image's
    /// pages, the stack, the IPC buffer and the start page.
    pub fn frames(&self, image: &Image) -> u64 {
        image.pages.len() as u64 + self.stack_pages + 2
    }

    /// Slots the child's CNode needs before the child uses any: the fixed
    /// ones, the CPU, untyped and module capabilities it is given, and its
    /// frames.
    pub fn slots_needed(&self, image: &Image) -> u64 {
        let cpus = if self.cpu_caps.is_some() {
            self.cpu_count
        } else {
            0
        };
        let modules: u64 = self
            .modules
            .iter()
            .map(|m| m.size.div_ceil(PAGE_SIZE))
            .sum();
        let untyped = self.untyped.len() as u64 + u64::from(self.memory_bits != 0);
        slot::FIRST_DYNAMIC + cpus + untyped + modules + self.frames(image)
    }

    /// Bytes of untyped memory [`spawn_process`] retypes for the child
    /// from an empty region: its VSpace, CNode, memory, TCB and frames,
    /// each aligned to its size as retyping does, in the order it creates
    /// them.
    pub fn bytes_needed(&self, image: &Image) -> u64 {
        let memory = if self.memory_bits == 0 {
            0
        } else {
            1 << self.memory_bits
        };
        let objects = [
            (1 << self.vspace_bits, 1),
            (tarn_ipc_schema::SLOT_BYTES << self.cnode_bits, 1),
            (memory.max(1), u64::from(memory != 0)),
            (1 << tarn_ipc_schema::TCB_SIZE_BITS, 1),
            (PAGE_SIZE, self.frames(image)),
        ];
        objects.iter().fold(0, |end: u64, &(size, count)| {
            end.next_multiple_of(size) + size * count
        })
    }
}

/// A process [`spawn_process`] started: its capabilities in the caller's
/// CNode. Its frames (image, stack, IPC buffer, start page) are in its own
/// CNode, so a process costs the caller three slots whatever its size.
#[derive(Clone, Copy, Debug)]
pub struct Process {
    /// Its root CNode.
    pub cnode: CPtr,
    /// Its address space.
    pub vspace: CPtr,
    /// Its main thread.
    pub tcb: CPtr,
    /// First free slot of its CNode.
    pub first_free_slot: u64,
    /// Its program's entry point (where its main thread started).
    pub entry: u64,
}

fn name_bytes(name: &str) -> [u8; MODULE_NAME_BYTES] {
    let mut out = [0u8; MODULE_NAME_BYTES];
    let length = name.len().min(MODULE_NAME_BYTES);
    out[..length].copy_from_slice(&name.as_bytes()[..length]);
    out
}

fn map_fresh(
    resources: &mut Resources,
    vspace: CPtr,
    vaddr: u64,
    rights: Rights,
) -> Result<CPtr, Error> {
    // Retyped memory arrives zeroed (the kernel clears objects at retype).
    let frame = resources.create(ObjectType::Frame4K, 0)?;
    invoke::frame_map(frame, vspace, vaddr, rights)?;
    Ok(frame)
}

/// Builds and starts a process (see the module docs and the crate docs for
/// the layout and the start-page convention).
pub fn spawn_process(resources: &mut Resources, config: &ProcessConfig) -> Result<Process, Error> {
    let grants = config.untyped.len() + usize::from(config.memory_bits != 0);
    if grants > MAX_UNTYPED || config.modules.len() > MAX_MODULES {
        return Err(Error::InvalidArgument);
    }
    let image = Image::parse(config.elf)?;
    let vspace = resources.create(ObjectType::VSpace, config.vspace_bits)?;
    let cnode = resources.create(ObjectType::CNode, config.cnode_bits)?;
    let memory = if config.memory_bits == 0 {
        None
    } else {
        let (cptr, phys) = resources.create_untyped(config.memory_bits)?;
        Some(UntypedGrant {
            cptr,
            phys,
            size_bits: config.memory_bits,
        })
    };
    let tcb = resources.create(ObjectType::Tcb, 0)?;

    // Every frame mapped into the child: moved into its own CNode at the
    // end, so the caller keeps no slot per page.
    let mut frames: Vec<CPtr> = Vec::with_capacity(config.frames(&image) as usize);

    // The program image.
    for chunk in image.pages.chunks(256) {
        let first = resources.create_many(ObjectType::Frame4K, 0, chunk.len() as u64)?;
        for (index, page) in chunk.iter().enumerate() {
            let frame = first + index as u64;
            frames.push(frame);
            fill_frame(resources, frame, |bytes| image.fill(page.vaddr, bytes))?;
            invoke::frame_map(frame, vspace, page.vaddr, page.rights)?;
        }
    }

    // Stack, IPC buffer.
    let read_write = Rights::READ.union(Rights::WRITE);
    for page in 0..config.stack_pages {
        frames.push(map_fresh(
            resources,
            vspace,
            layout::ROOT_STACK_TOP - (page + 1) * PAGE_SIZE,
            read_write,
        )?);
    }
    let ipc_buffer_frame = map_fresh(resources, vspace, layout::ROOT_IPC_BUFFER_VADDR, read_write)?;
    frames.push(ipc_buffer_frame);

    // The child's own capabilities, then the chosen ones.
    invoke::cnode_copy(cnode, slot::ROOT_CNODE, resources.cnode, cnode, Rights::ALL)?;
    invoke::cnode_copy(cnode, slot::ROOT_TCB, resources.cnode, tcb, Rights::ALL)?;
    invoke::cnode_copy(
        cnode,
        slot::ROOT_VSPACE,
        resources.cnode,
        vspace,
        Rights::ALL,
    )?;
    invoke::cnode_copy(
        cnode,
        slot::ROOT_IPC_BUFFER,
        resources.cnode,
        ipc_buffer_frame,
        Rights::ALL,
    )?;
    for grant in config.caps {
        if grant.badge == 0 {
            invoke::cnode_copy(
                cnode,
                grant.dest,
                resources.cnode,
                grant.source,
                grant.rights,
            )?;
        } else {
            invoke::cnode_mint(
                cnode,
                grant.dest,
                resources.cnode,
                grant.source,
                grant.rights,
                grant.badge,
            )?;
        }
    }

    // Untyped memory and modules, from FIRST_DYNAMIC on, described in the start page.
    let mut info = BootInfo {
        magic: BOOT_INFO_MAGIC,
        cpu_count: config.cpu_count,
        first_free_slot: 0,
        first_cpu_slot: 0,
        untyped_count: grants as u64,
        untyped: [UntypedDesc::default(); MAX_UNTYPED],
        module_count: config.modules.len() as u64,
        modules: [ModuleDesc {
            name: [0; MODULE_NAME_BYTES],
            vaddr: 0,
            size: 0,
            first_frame_slot: 0,
        }; MAX_MODULES],
        cmdline_len: config.cmdline.len().min(CMDLINE_BYTES) as u64,
        cmdline: [0; CMDLINE_BYTES],
        // A child sees one node: placement is the root task's business.
        node_count: 1,
        cpu_nodes: [0; MAX_BOOT_CPUS],
        root_cnode_bits: config.cnode_bits,
    };
    let cmdline_length = info.cmdline_len as usize;
    info.cmdline[..cmdline_length].copy_from_slice(&config.cmdline.as_bytes()[..cmdline_length]);
    let mut next_slot = slot::FIRST_DYNAMIC;
    if let Some(first) = config.cpu_caps {
        info.first_cpu_slot = next_slot;
        for index in 0..config.cpu_count {
            invoke::cnode_copy(
                cnode,
                next_slot,
                resources.cnode,
                first + index,
                Rights::ALL,
            )?;
            next_slot += 1;
        }
    }
    for (index, grant) in config.untyped.iter().chain(&memory).enumerate() {
        invoke::cnode_move(cnode, next_slot, resources.cnode, grant.cptr)?;
        resources.slots.free(grant.cptr);
        info.untyped[index] = UntypedDesc {
            phys: grant.phys,
            size_bits: grant.size_bits,
            slot: next_slot,
        };
        next_slot += 1;
    }
    let mut module_vaddr = layout::MODULES_VADDR;
    for (index, module) in config.modules.iter().enumerate() {
        let pages = module.size.div_ceil(PAGE_SIZE);
        for page in 0..pages {
            let source = module.first_frame_slot + page;
            let mapping = resources.alloc_slot()?;
            invoke::cnode_copy(
                resources.cnode,
                mapping,
                resources.cnode,
                source,
                Rights::READ,
            )?;
            invoke::frame_map(
                mapping,
                vspace,
                module_vaddr + page * PAGE_SIZE,
                Rights::READ,
            )?;
            invoke::cnode_copy(
                cnode,
                next_slot + page,
                resources.cnode,
                source,
                Rights::READ,
            )?;
        }
        info.modules[index] = ModuleDesc {
            name: name_bytes(module.name()),
            vaddr: module_vaddr,
            size: module.size,
            first_frame_slot: next_slot,
        };
        next_slot += pages;
        module_vaddr += pages * PAGE_SIZE;
    }
    // The frames' slots (see below), then the child's own.
    let first_frame_slot = next_slot;
    info.first_free_slot = next_slot + config.frames(&image);
    if info.first_free_slot > 1 << config.cnode_bits {
        return Err(Error::OutOfRange);
    }

    // The start page.
    let start_frame = resources.create(ObjectType::Frame4K, 0)?;
    frames.push(start_frame);
    fill_frame(resources, start_frame, |bytes| {
        let pointer = bytes.as_mut_ptr() as *mut BootInfo;
        // SAFETY: the page is 4 KiB, page aligned (so aligned for BootInfo)
        // and BootInfo fits in it (asserted in tarn_ipc_schema).
        unsafe { pointer.write_volatile(info) };
    })?;
    invoke::frame_map(start_frame, vspace, layout::BOOT_INFO_VADDR, Rights::READ)?;
    invoke::cnode_copy(
        cnode,
        slot::BOOT_INFO,
        resources.cnode,
        start_frame,
        Rights::READ,
    )?;

    // The main thread.
    let config_tcb = TcbConfig {
        cnode,
        vspace,
        ipc_buffer_frame,
        ipc_buffer_vaddr: layout::ROOT_IPC_BUFFER_VADDR,
        fault_endpoint: config.fault_endpoint,
    };
    invoke::tcb_configure(tcb, &config_tcb)?;
    let registers = Registers {
        rip: image.entry,
        rsp: layout::ROOT_STACK_TOP,
        rflags: 0x202,
        rdi: layout::BOOT_INFO_VADDR,
        rsi: 0,
        rdx: 0,
    };
    invoke::tcb_write_registers(tcb, &registers)?;
    if let Some(cpu) = config.cpu {
        invoke::tcb_set_affinity(tcb, cpu)?;
    }
    // The mapped frames go to the child's CNode (a mapping stays with its
    // capability); the kernel's copy of the IPC buffer's stays where it is.
    for (index, &frame) in frames.iter().enumerate() {
        invoke::cnode_move(
            cnode,
            first_frame_slot + index as u64,
            resources.cnode,
            frame,
        )?;
        resources.slots.free(frame);
    }
    if !config.suspended {
        invoke::tcb_resume(tcb)?;
    }
    Ok(Process {
        cnode,
        vspace,
        tcb,
        first_free_slot: info.first_free_slot,
        entry: image.entry,
    })
}

/// Adds a thread to a process [`spawn_process`] built, as a second copy of
/// its main thread: it starts at the program's entry with the start page in
/// `rdi`, so it runs the program's `main` too (a domain's vCPU), on a stack
/// of `stack_pages` and an IPC buffer in slot `index` of the process's
/// thread area ([`layout::thread_ipc_buffer`]), suspended. It cannot name
/// its own TCB (`exit` ends it with `ud2`, which its fault endpoint hears).
/// The capabilities it takes (TCB, frames) stay in the caller's CNode.
pub fn spawn_process_thread(
    resources: &mut Resources,
    process: &Process,
    fault_endpoint: CPtr,
    index: u64,
    stack_pages: u64,
) -> Result<CPtr, Error> {
    if stack_pages == 0 || stack_pages > layout::MAX_THREAD_STACK_PAGES {
        return Err(Error::InvalidArgument);
    }
    if index >= layout::MAX_THREADS {
        return Err(Error::OutOfRange);
    }
    let buffer_vaddr = layout::thread_ipc_buffer(index);
    let read_write = Rights::READ.union(Rights::WRITE);
    let tcb = resources.create(ObjectType::Tcb, 0)?;
    let ipc_buffer_frame = resources.create(ObjectType::Frame4K, 0)?;
    let user_data = core::mem::offset_of!(tarn_ipc_schema::IpcBuffer, user_data);
    fill_frame(resources, ipc_buffer_frame, |bytes| {
        bytes[user_data..user_data + 8].copy_from_slice(&crate::start::NO_OWN_TCB.to_le_bytes());
    })?;
    invoke::frame_map(ipc_buffer_frame, process.vspace, buffer_vaddr, read_write)?;
    for page in 0..stack_pages {
        map_fresh(
            resources,
            process.vspace,
            buffer_vaddr - (page + 1) * PAGE_SIZE,
            read_write,
        )?;
    }
    invoke::tcb_configure(
        tcb,
        &TcbConfig {
            cnode: process.cnode,
            vspace: process.vspace,
            ipc_buffer_frame,
            ipc_buffer_vaddr: buffer_vaddr,
            fault_endpoint,
        },
    )?;
    invoke::tcb_write_registers(
        tcb,
        &Registers {
            rip: process.entry,
            rsp: buffer_vaddr,
            rflags: 0x202,
            rdi: layout::BOOT_INFO_VADDR,
            rsi: 0,
            rdx: 0,
        },
    )?;
    Ok(tcb)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    /// A minimal ELF64 executable: header, two PT_LOAD program headers
    /// (text RX at 0x201000, data RW at 0x202010 with bss), some bytes.
    fn sample() -> std::vec::Vec<u8> {
        let mut f = vec![0u8; 0x200];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little endian
        f[6] = 1; // version
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&0x201004u64.to_le_bytes()); // entry
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
        f[56..58].copy_from_slice(&2u16.to_le_bytes()); // phnum
        let phdr = |f: &mut [u8],
                    at: usize,
                    flags: u32,
                    offset: u64,
                    vaddr: u64,
                    filesz: u64,
                    memsz: u64| {
            f[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
            f[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
            f[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
            f[at + 16..at + 24].copy_from_slice(&vaddr.to_le_bytes());
            f[at + 24..at + 32].copy_from_slice(&vaddr.to_le_bytes());
            f[at + 32..at + 40].copy_from_slice(&filesz.to_le_bytes());
            f[at + 40..at + 48].copy_from_slice(&memsz.to_le_bytes());
            f[at + 48..at + 56].copy_from_slice(&0x1000u64.to_le_bytes());
        };
        phdr(&mut f, 64, PF_R | PF_X, 0x100, 0x201000, 0x10, 0x10);
        phdr(&mut f, 120, PF_R | PF_W, 0x110, 0x202ff8, 0x10, 0x2000);
        for (i, byte) in f[0x100..0x120].iter_mut().enumerate() {
            *byte = i as u8 + 1;
        }
        f
    }

    #[test]
    fn plans_pages_with_segment_rights() {
        let bytes = sample();
        let image = Image::parse(&bytes).unwrap();
        assert_eq!(image.entry, 0x201004);
        let rx = Rights(Rights::READ.0 | Rights::EXECUTE.0);
        let rw = Rights(Rights::READ.0 | Rights::WRITE.0);
        assert_eq!(
            image.pages,
            [
                PagePlan {
                    vaddr: 0x201000,
                    rights: rx
                },
                PagePlan {
                    vaddr: 0x202000,
                    rights: rw
                },
                PagePlan {
                    vaddr: 0x203000,
                    rights: rw
                },
                PagePlan {
                    vaddr: 0x204000,
                    rights: rw
                },
            ]
        );
    }

    #[test]
    fn fills_file_bytes_and_zeroes_the_rest() {
        let bytes = sample();
        let image = Image::parse(&bytes).unwrap();
        let mut page = vec![0xAAu8; 4096];
        image.fill(0x201000, &mut page);
        assert_eq!(&page[..0x10], &bytes[0x100..0x110]);
        assert!(page[0x10..].iter().all(|&b| b == 0));
        // The data segment straddles a page boundary: 8 bytes on each side.
        image.fill(0x202000, &mut page);
        assert_eq!(&page[0xff8..], &bytes[0x110..0x118]);
        assert!(page[..0xff8].iter().all(|&b| b == 0));
        image.fill(0x203000, &mut page);
        assert_eq!(&page[..8], &bytes[0x118..0x120]);
        assert!(page[8..].iter().all(|&b| b == 0));
    }

    #[test]
    fn refuses_non_executables() {
        let mut bytes = sample();
        bytes[16] = 3; // ET_DYN
        assert_eq!(Image::parse(&bytes).err(), Some(Error::InvalidArgument));
        assert_eq!(
            Image::parse(b"not an elf").err(),
            Some(Error::InvalidArgument)
        );
    }
}
