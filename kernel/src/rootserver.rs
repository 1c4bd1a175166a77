//! Builds the root task at boot: its CNode, the untyped capabilities for all
//! free RAM, its TCB, VSpace, stack, IPC buffer and boot-information page, its
//! program loaded from the `root-task` boot module, and read-only frames of
//! every boot module. After this, the kernel only reacts to system calls.

use crate::arch::frame::FRAMES;
use crate::arch::lock::KernelGuard;
use crate::arch::objmem::{self, KernelObject};
use crate::arch::paging::{self, PAGE_SIZE};
use crate::object::memory::{map_frame, retype};
use crate::object::tcb;
use crate::object::{init_header, insert_cap, Cap, SLOT_BYTES};
use core::ops::Range;
use elf::endian::AnyEndian;
use elf::ElfBytes;
use tarn_ipc_schema::boot::{self as abi, slot, BootInfo, ModuleDesc, UntypedDesc};
use tarn_ipc_schema::{ObjectType, Rights};
use tarn_kernel_core::srat::Srat;

mod image {
    include!(concat!(env!("OUT_DIR"), "/modules.rs"));
}

/// The boot modules embedded in the kernel image.
pub fn modules() -> &'static [(&'static str, &'static [u8])] {
    image::MODULES
}

struct BootInfoPage(BootInfo);
impl KernelObject for BootInfoPage {}

/// log2 bytes of the root task's VSpace object.
const ROOT_VSPACE_SIZE_BITS: u64 = 20;

/// Why the root task could not be built.
pub enum RootError {
    /// No `root-task` module in the boot image.
    NoImage,
    /// The root task's ELF image is malformed or unsupported.
    BadImage(&'static str),
    /// Not enough memory, or the root CNode is too small.
    OutOfResources(&'static str),
}

impl core::fmt::Display for RootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RootError::NoImage => write!(f, "no `root-task` module in the boot image"),
            RootError::BadImage(why) => write!(f, "bad root-task image: {why}"),
            RootError::OutOfResources(why) => write!(f, "out of resources: {why}"),
        }
    }
}

struct Builder {
    cnode: Cap,
    vspace: Cap,
    untyped_slot: u64,
    next_slot: u64,
}

impl Builder {
    fn slot(&self, index: u64) -> u64 {
        crate::object::slot_address(self.cnode, index).expect("root CNode index in range")
    }

    fn take_slot(&mut self) -> Result<u64, RootError> {
        let Cap::CNode { size_bits, .. } = self.cnode else {
            unreachable!("the builder's CNode is one")
        };
        if self.next_slot >= 1 << size_bits {
            return Err(RootError::OutOfResources("root CNode full"));
        }
        self.next_slot += 1;
        Ok(self.next_slot - 1)
    }

    fn retype(
        &mut self,
        guard: &mut KernelGuard,
        object_type: ObjectType,
        size_bits: u64,
        index: u64,
    ) -> Result<(), RootError> {
        retype(
            guard,
            self.untyped_slot,
            object_type,
            size_bits,
            self.cnode,
            index,
            1,
            0,
        )
        .map_err(|_| RootError::OutOfResources("boot untyped region exhausted"))
    }

    /// A fresh 4 KiB frame in a new slot, mapped at `vaddr` with `rights`.
    fn mapped_frame(
        &mut self,
        guard: &mut KernelGuard,
        vaddr: u64,
        rights: Rights,
    ) -> Result<u64, RootError> {
        let index = self.take_slot()?;
        self.retype(guard, ObjectType::Frame4K, 0, index)?;
        let frame_slot = self.slot(index);
        map_frame(guard, frame_slot, self.vspace, vaddr, rights)
            .map_err(|_| RootError::BadImage("overlapping segments"))?;
        Ok(frame_slot)
    }
}

fn frame_phys(guard: &mut KernelGuard, frame_slot: u64) -> u64 {
    match crate::object::read_cap(guard, frame_slot) {
        Cap::Frame { phys, .. } => phys,
        _ => unreachable!("slot holds the frame just made"),
    }
}

/// Splits `range` into naturally aligned power-of-two blocks.
fn aligned_blocks(range: Range<u64>, mut emit: impl FnMut(u64, u8)) {
    let mut base = range.start;
    while range.end - base >= PAGE_SIZE {
        let align_bits = base.trailing_zeros().min(40) as u8;
        let fit_bits = (63 - (range.end - base).leading_zeros()) as u8;
        let bits = align_bits.min(fit_bits);
        emit(base, bits);
        base += 1 << bits;
    }
}

/// Maps physical memory `phys` read-only at `vaddr` (whole pages, the
/// first one from `phys` rounded down) as frames in fresh root slots, and
/// lists it as the next boot module, `name`. Returns where the next module
/// goes (a guard page after this one).
fn map_module(
    guard: &mut KernelGuard,
    builder: &mut Builder,
    info: &mut BootInfo,
    vaddr: u64,
    name: &str,
    phys: core::ops::Range<u64>,
) -> Result<u64, RootError> {
    let first_page = phys.start & !(PAGE_SIZE - 1);
    let pages = (phys.end - first_page).div_ceil(PAGE_SIZE);
    let first_frame_slot = builder.next_slot;
    objmem::admit(first_page, pages * PAGE_SIZE, PAGE_SIZE);
    for page in 0..pages {
        let s = builder.take_slot()?;
        let frame = Cap::Frame {
            phys: first_page + page * PAGE_SIZE,
            large: false,
            rights: Rights::READ,
            mapping: None,
        };
        insert_cap(guard, builder.slot(s), frame, 0);
        map_frame(
            guard,
            builder.slot(s),
            builder.vspace,
            vaddr + page * PAGE_SIZE,
            Rights::READ,
        )
        .map_err(|_| RootError::OutOfResources("mapping a boot module"))?;
    }
    let mut desc = ModuleDesc {
        name: [0; abi::MODULE_NAME_BYTES],
        vaddr: vaddr + (phys.start - first_page),
        size: phys.end - phys.start,
        first_frame_slot,
    };
    let n = name.len().min(abi::MODULE_NAME_BYTES);
    desc.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    info.modules[info.module_count as usize] = desc;
    info.module_count += 1;
    Ok(vaddr + pages * PAGE_SIZE + PAGE_SIZE)
}

/// Records each online CPU's NUMA node from the SRAT (none: everything is
/// node 0). A CPU the table does not list stays in node 0.
fn record_numa(info: &mut BootInfo, numa: Option<&Srat>) {
    let Some(srat) = numa else { return };
    info.node_count = srat.node_count().max(1) as u64;
    for (index, node) in info.cpu_nodes.iter_mut().enumerate() {
        let Some(cpu) = crate::arch::percpu::get(index as u32) else {
            break;
        };
        let dense = srat
            .node_of_apic(cpu.apic_id)
            .and_then(|domain| srat.dense_node(domain));
        *node = dense.and_then(|n| u8::try_from(n).ok()).unwrap_or(0);
    }
}

/// Builds the root task, with a root CNode of 2^`cnode_bits` slots, and
/// makes it runnable on CPU 0.
pub fn start(
    guard: &mut KernelGuard,
    cmdline: &str,
    cnode_bits: u8,
    initrd: Option<core::ops::Range<u64>>,
    numa: Option<&Srat>,
) -> Result<(), RootError> {
    let image = modules()
        .iter()
        .find(|(name, _)| *name == "root-task")
        .ok_or(RootError::NoImage)?
        .1;
    let elf = ElfBytes::<AnyEndian>::minimal_parse(image)
        .map_err(|_| RootError::BadImage("not an ELF file"))?;

    // The root CNode, from the kernel's own frames.
    let cnode_bytes = SLOT_BYTES << cnode_bits;
    let cnode_phys = FRAMES
        .lock()
        .alloc_contiguous(cnode_bytes / PAGE_SIZE)
        .ok_or(RootError::OutOfResources("no memory for the root CNode"))?;
    objmem::admit(cnode_phys, cnode_bytes, PAGE_SIZE);
    objmem::zero(guard, cnode_phys, cnode_bytes);
    init_header(guard, cnode_phys, ObjectType::CNode, cnode_bits + 6);
    let cnode = Cap::CNode {
        phys: cnode_phys,
        size_bits: cnode_bits,
    };
    let mut info = BootInfo {
        magic: abi::BOOT_INFO_MAGIC,
        cpu_count: u64::from(crate::arch::percpu::online()),
        first_free_slot: 0,
        first_cpu_slot: 0,
        untyped_count: 0,
        untyped: [UntypedDesc::default(); abi::MAX_UNTYPED],
        module_count: 0,
        modules: [ModuleDesc {
            name: [0; abi::MODULE_NAME_BYTES],
            vaddr: 0,
            size: 0,
            first_frame_slot: 0,
        }; abi::MAX_MODULES],
        cmdline_len: 0,
        cmdline: [0; abi::CMDLINE_BYTES],
        node_count: 1,
        cpu_nodes: [0; abi::MAX_BOOT_CPUS],
        root_cnode_bits: u64::from(cnode_bits),
    };
    record_numa(&mut info, numa);
    let mut builder = Builder {
        cnode,
        vspace: Cap::Null,
        untyped_slot: 0,
        next_slot: slot::FIRST_DYNAMIC,
    };
    insert_cap(guard, builder.slot(slot::ROOT_CNODE), cnode, 0);

    // One Cpu capability per CPU online, in index order.
    info.first_cpu_slot = builder.next_slot;
    for index in 0..crate::arch::percpu::online() {
        let s = builder.take_slot()?;
        insert_cap(guard, builder.slot(s), Cap::Cpu { index }, 0);
    }

    // All remaining free RAM becomes untyped capabilities.
    let mut ranges = [const { 0..0 }; crate::arch::frame::MAX_RANGES];
    let count = FRAMES.lock().take_all(&mut ranges);
    let mut largest = (0u64, 0u8);
    let mut dropped = 0u64;
    for range in &ranges[..count] {
        aligned_blocks(range.clone(), |phys, size_bits| {
            let n = info.untyped_count as usize;
            if n == abi::MAX_UNTYPED || size_bits < 12 {
                dropped += 1 << size_bits;
                return;
            }
            // Where untyped memory enters the kernel: every object address
            // is carved out of one of these ranges (`objmem`, validated once).
            objmem::admit(phys, 1 << size_bits, PAGE_SIZE);
            let index = builder.next_slot;
            builder.next_slot += 1;
            insert_cap(
                guard,
                builder.slot(index),
                Cap::Untyped {
                    phys,
                    size_bits,
                    watermark: 0,
                },
                0,
            );
            info.untyped[n] = UntypedDesc {
                phys,
                size_bits: u64::from(size_bits),
                slot: index,
            };
            info.untyped_count += 1;
            if size_bits > largest.1 {
                largest = (index, size_bits);
            }
        });
    }
    if dropped != 0 {
        kwarn!(
            "{} KiB of RAM left out of the untyped list (more than {} regions)",
            dropped >> 10,
            abi::MAX_UNTYPED
        );
    }
    builder.untyped_slot = builder.slot(largest.0);

    // The root task's own objects, from the largest untyped region.
    builder.retype(guard, ObjectType::Tcb, 0, slot::ROOT_TCB)?;
    builder.retype(
        guard,
        ObjectType::VSpace,
        ROOT_VSPACE_SIZE_BITS,
        slot::ROOT_VSPACE,
    )?;
    builder.retype(guard, ObjectType::Frame4K, 0, slot::ROOT_IPC_BUFFER)?;
    builder.retype(guard, ObjectType::Frame4K, 0, slot::BOOT_INFO)?;
    builder.vspace = crate::object::read_cap(guard, builder.slot(slot::ROOT_VSPACE));
    insert_cap(guard, builder.slot(slot::IRQ_CONTROL), Cap::IrqControl, 0);
    insert_cap(
        guard,
        builder.slot(slot::IO_PORTS),
        Cap::IoPort {
            first: 0,
            last: 0xFFFF,
        },
        0,
    );
    insert_cap(guard, builder.slot(slot::MACHINE), Cap::Machine, 0);
    let rw = Rights::READ.union(Rights::WRITE);
    map_frame(
        guard,
        builder.slot(slot::ROOT_IPC_BUFFER),
        builder.vspace,
        abi::ROOT_IPC_BUFFER_VADDR,
        rw,
    )
    .map_err(|_| RootError::OutOfResources("mapping the IPC buffer"))?;
    map_frame(
        guard,
        builder.slot(slot::BOOT_INFO),
        builder.vspace,
        abi::BOOT_INFO_VADDR,
        Rights::READ,
    )
    .map_err(|_| RootError::OutOfResources("mapping the boot information"))?;

    // Program segments, copied into fresh frames.
    let segments = elf
        .segments()
        .ok_or(RootError::BadImage("no program headers"))?;
    for segment in segments.iter().filter(|s| s.p_type == elf::abi::PT_LOAD) {
        let mut rights = Rights::READ;
        if segment.p_flags & elf::abi::PF_W != 0 {
            rights = rights.union(Rights::WRITE);
        }
        if segment.p_flags & elf::abi::PF_X != 0 {
            rights = rights.union(Rights::EXECUTE);
        }
        let file = image
            .get(segment.p_offset as usize..(segment.p_offset + segment.p_filesz) as usize)
            .ok_or(RootError::BadImage("segment outside the file"))?;
        let start = segment.p_vaddr & !(PAGE_SIZE - 1);
        let end = (segment.p_vaddr + segment.p_memsz).next_multiple_of(PAGE_SIZE);
        if end > abi::MODULES_VADDR {
            return Err(RootError::BadImage("segment above the user image area"));
        }
        let mut page = start;
        while page < end {
            let frame_slot = builder.mapped_frame(guard, page, rights)?;
            let phys = frame_phys(guard, frame_slot);
            // Copy the part of the file image that falls in this page.
            let from = page.max(segment.p_vaddr);
            let to = (page + PAGE_SIZE).min(segment.p_vaddr + segment.p_filesz);
            if from < to {
                let offset = (from - segment.p_vaddr) as usize;
                objmem::write_bytes(
                    guard,
                    phys + (from - page),
                    &file[offset..offset + (to - from) as usize],
                );
            }
            page += PAGE_SIZE;
        }
    }

    // Stack.
    let mut page = abi::ROOT_STACK_TOP - abi::ROOT_STACK_BYTES;
    while page < abi::ROOT_STACK_TOP {
        builder.mapped_frame(guard, page, rw)?;
        page += PAGE_SIZE;
    }

    // Boot modules: read-only frames over the images inside the kernel image,
    // then the loader's first module (QEMU's `-initrd`), as the module
    // `initrd`, over the memory it occupies (kept out of the allocator's
    // ranges at boot).
    let mut vaddr = abi::MODULES_VADDR;
    for (name, bytes) in modules().iter().take(abi::MAX_MODULES) {
        let phys = paging::kernel_virt_to_phys(bytes.as_ptr() as u64);
        let size = bytes.len() as u64;
        vaddr = map_module(
            guard,
            &mut builder,
            &mut info,
            vaddr,
            name,
            phys..phys + size,
        )?;
    }
    if let Some(range) = initrd.filter(|r| r.end > r.start) {
        if (info.module_count as usize) < abi::MAX_MODULES {
            map_module(guard, &mut builder, &mut info, vaddr, "initrd", range)?;
        }
    }

    // Boot information.
    let n = cmdline.len().min(abi::CMDLINE_BYTES);
    info.cmdline[..n].copy_from_slice(&cmdline.as_bytes()[..n]);
    info.cmdline_len = n as u64;
    info.first_free_slot = builder.next_slot;
    let boot_info_phys = frame_phys(guard, builder.slot(slot::BOOT_INFO));
    objmem::object::<BootInfoPage>(guard, boot_info_phys).0 = info;

    // The thread: its CSpace, VSpace and IPC buffer, entry, stack, argument.
    let Cap::Tcb { phys: thread } = crate::object::read_cap(guard, builder.slot(slot::ROOT_TCB))
    else {
        unreachable!("slot holds the TCB just made")
    };
    insert_cap(
        guard,
        tcb::slot_address(thread, tcb::slot::CSPACE),
        cnode,
        builder.slot(slot::ROOT_CNODE),
    );
    insert_cap(
        guard,
        tcb::slot_address(thread, tcb::slot::VSPACE),
        builder.vspace,
        builder.slot(slot::ROOT_VSPACE),
    );
    let buffer_cap = crate::object::cnode::derive(
        crate::object::read_cap(guard, builder.slot(slot::ROOT_IPC_BUFFER)),
        Rights::ALL,
        0,
    )
    .expect("the IPC-buffer slot holds the frame just made");
    insert_cap(
        guard,
        tcb::slot_address(thread, tcb::slot::IPC_BUFFER),
        buffer_cap,
        builder.slot(slot::ROOT_IPC_BUFFER),
    );
    let frame = tcb::frame(guard, thread);
    frame.rip = elf.ehdr.e_entry;
    frame.rsp = abi::ROOT_STACK_TOP;
    frame.rdi = abi::BOOT_INFO_VADDR;
    crate::sched::make_runnable(guard, thread);
    Ok(())
}
