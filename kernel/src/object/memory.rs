//! Memory objects: Untyped (retype), Frame (map, unmap, address) and VSpace.
//!
//! A VSpace object of 2^size_bits bytes is laid out as: page 0 the PML4 (its
//! upper half shared with the kernel), page 1 a header, pages 2.. a pool of
//! page tables its mappings consume (never freed before the VSpace itself).
//! Each VSpace has an id (a small table index plus a generation), which a
//! mapped frame capability records so that unmapping after the VSpace is gone
//! is recognised and ignored.

use super::{
    init_header, insert_cap, read_cap, slot_address, update_cap, Cap, Mapping, ObjectHeader,
};
use crate::arch::lock::{BklCell, KernelGuard};
use crate::arch::objmem::{self, KernelObject};
use crate::arch::paging::{self, flags, MapError, PAGE_SIZE, USER_END};
use crate::arch::{apic, cpu, percpu, trap};
use crate::invariants::{ensure, Live, Verdict};
use crate::syscall::Caller;
use tarn_ipc_schema::invocation::Invocation;
use tarn_ipc_schema::{Error, ObjectType, Rights};

/// Most VSpaces alive at once.
pub const MAX_VSPACES: usize = 4096;
/// Most objects one retype creates.
pub const MAX_RETYPE_COUNT: u64 = 256;

/// The VSpace header (page 1 of a VSpace).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VSpaceHeader {
    /// Refcount header.
    pub header: ObjectHeader,
    /// Index in the VSpace table.
    pub id: u64,
    /// Generation of that index.
    pub generation: u64,
    /// Next unused page-table page (index from the VSpace base).
    pub next_table: u64,
}
impl KernelObject for VSpaceHeader {}

#[derive(Clone, Copy)]
struct VSpaceEntry {
    root: u64,
    generation: u32,
    /// A GuestSpace (its unmaps flush guest TLBs, not host ones).
    guest: bool,
}

struct VSpaceTable {
    entries: [VSpaceEntry; MAX_VSPACES],
    next_generation: u32,
}

static VSPACES: BklCell<VSpaceTable> = BklCell::new(VSpaceTable {
    entries: [VSpaceEntry {
        root: 0,
        generation: 0,
        guest: false,
    }; MAX_VSPACES],
    next_generation: 1,
});

/// The header address of the VSpace at `phys`.
pub const fn vspace_header(phys: u64) -> u64 {
    phys + PAGE_SIZE
}

/// Bytes an object of `object_type` with `size_bits` occupies (the ABI's
/// definition), or `None` for a type or size that cannot be retyped.
pub fn object_bytes(object_type: ObjectType, size_bits: u64) -> Option<u64> {
    tarn_ipc_schema::object_size(object_type, size_bits)
}

/// Handles an invocation on an Untyped capability in slot `untyped_slot`.
pub fn invoke_untyped(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    untyped_slot: u64,
    label: Invocation,
) -> Result<(), Error> {
    if label != Invocation::UntypedRetype {
        return Err(Error::IllegalOperation);
    }
    let object_type = ObjectType::from_u64(caller.mr(0)).ok_or(Error::InvalidArgument)?;
    let size_bits = caller.mr(1);
    let dest_cnode = caller.lookup(guard, caller.mr(2))?;
    let first = caller.mr(3);
    let count = caller.mr(4);
    retype(
        guard,
        untyped_slot,
        object_type,
        size_bits,
        dest_cnode,
        first,
        count,
        caller.thread(),
    )
}

/// Retypes part of the untyped capability in `untyped_slot` into `count`
/// objects placed in `dest_cnode` slots `first..first + count`, on behalf
/// of thread `creator` (0 = the kernel at boot): threads a confined
/// creator makes are confined likewise.
#[allow(clippy::too_many_arguments)] // (the invocation's own arguments, plus who asks)
pub fn retype(
    guard: &mut KernelGuard,
    untyped_slot: u64,
    object_type: ObjectType,
    size_bits: u64,
    dest_cnode: Cap,
    first: u64,
    count: u64,
    creator: u64,
) -> Result<(), Error> {
    // Decode.
    let Cap::Untyped {
        phys,
        size_bits: untyped_bits,
        watermark,
    } = read_cap(guard, untyped_slot)
    else {
        return Err(Error::WrongType);
    };
    let bytes = object_bytes(object_type, size_bits).ok_or(Error::InvalidArgument)?;
    if count == 0 || count > MAX_RETYPE_COUNT {
        return Err(Error::InvalidArgument);
    }
    if object_type == ObjectType::Untyped && size_bits > u64::from(untyped_bits) {
        return Err(Error::InvalidArgument);
    }
    let start = (phys + watermark).next_multiple_of(bytes);
    let end = start.checked_add(bytes * count).ok_or(Error::OutOfMemory)?;
    if end > phys + (1u64 << untyped_bits) {
        return Err(Error::OutOfMemory);
    }
    let Cap::CNode {
        size_bits: cnode_bits,
        ..
    } = dest_cnode
    else {
        return Err(Error::WrongType);
    };
    if first == 0
        || first
            .checked_add(count)
            .is_none_or(|last| last > 1 << cnode_bits)
    {
        return Err(Error::OutOfRange);
    }
    for index in first..first + count {
        if read_cap(guard, slot_address(dest_cnode, index)?) != Cap::Null {
            return Err(Error::SlotOccupied);
        }
    }
    if matches!(object_type, ObjectType::VSpace | ObjectType::GuestSpace) {
        let free = VSPACES.get(guard).entries[1..]
            .iter()
            .filter(|e| e.root == 0)
            .count() as u64;
        if free < count {
            return Err(Error::OutOfMemory);
        }
    }
    // Invoke.
    update_cap(
        guard,
        untyped_slot,
        Cap::Untyped {
            phys,
            size_bits: untyped_bits,
            watermark: end - phys,
        },
    );
    for i in 0..count {
        let object = start + i * bytes;
        // Untyped memory is zeroed when it is retyped into real objects.
        if object_type != ObjectType::Untyped {
            objmem::zero(guard, object, bytes);
        }
        let cap = init_object(guard, object_type, object, size_bits as u8);
        if object_type == ObjectType::Tcb && creator != 0 {
            // A confined thread's new threads are confined likewise.
            crate::dispatch::inherit_confinement(guard, creator, object);
        }
        insert_cap(
            guard,
            slot_address(dest_cnode, first + i)?,
            cap,
            untyped_slot,
        );
    }
    Ok(())
}

/// Initialises a zeroed object and returns its first capability.
fn init_object(guard: &mut KernelGuard, object_type: ObjectType, phys: u64, size_bits: u8) -> Cap {
    match object_type {
        ObjectType::Untyped => Cap::Untyped {
            phys,
            size_bits,
            watermark: 0,
        },
        ObjectType::CNode => {
            init_header(guard, phys, ObjectType::CNode, size_bits + 6);
            Cap::CNode { phys, size_bits }
        }
        ObjectType::Tcb => {
            super::tcb::init(guard, phys);
            Cap::Tcb { phys }
        }
        ObjectType::Endpoint | ObjectType::Notification => {
            init_header(guard, phys, object_type, 6);
            if object_type == ObjectType::Endpoint {
                Cap::Endpoint {
                    phys,
                    badge: 0,
                    rights: Rights::ALL,
                }
            } else {
                Cap::Notification {
                    phys,
                    badge: 0,
                    rights: Rights::ALL,
                }
            }
        }
        ObjectType::Frame4K | ObjectType::Frame2M => Cap::Frame {
            phys,
            large: object_type == ObjectType::Frame2M,
            rights: Rights::READ.union(Rights::WRITE).union(Rights::EXECUTE),
            mapping: None,
        },
        ObjectType::VSpace | ObjectType::GuestSpace => {
            let guest = object_type == ObjectType::GuestSpace;
            init_header(guard, vspace_header(phys), object_type, size_bits);
            if !guest {
                paging::share_kernel_half(guard, crate::arch::paging::kernel_root(), phys);
            }
            let table = VSPACES.get(guard);
            let id = (1..MAX_VSPACES)
                .find(|&i| table.entries[i].root == 0)
                .expect("decode checked a free id");
            let generation = table.next_generation;
            table.next_generation = table.next_generation.wrapping_add(1).max(1);
            table.entries[id] = VSpaceEntry {
                root: phys,
                generation,
                guest,
            };
            let h = objmem::object::<VSpaceHeader>(guard, vspace_header(phys));
            h.id = id as u64;
            h.generation = u64::from(generation);
            h.next_table = 2;
            if guest {
                Cap::GuestSpace { phys, size_bits }
            } else {
                Cap::VSpace { phys, size_bits }
            }
        }
        ObjectType::Vcpu => {
            crate::vcpu::init_object(guard, phys);
            Cap::Vcpu { phys }
        }
        ObjectType::Scheduler => {
            init_header(
                guard,
                phys,
                ObjectType::Scheduler,
                tarn_ipc_schema::SCHEDULER_SIZE_BITS as u8,
            );
            Cap::Scheduler { phys }
        }
        ObjectType::IrqControl
        | ObjectType::IrqHandler
        | ObjectType::IoPort
        | ObjectType::Machine
        | ObjectType::Cpu => {
            unreachable!("object_bytes refuses virtual object types")
        }
    }
}

/// Handles an invocation on the Frame capability in `frame_slot`.
pub fn invoke_frame(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    frame_slot: u64,
    label: Invocation,
) -> Result<(), Error> {
    let Cap::Frame {
        phys,
        large,
        rights,
        mapping,
    } = read_cap(guard, frame_slot)
    else {
        return Err(Error::WrongType);
    };
    match label {
        Invocation::FrameMap => {
            let vspace = caller.lookup(guard, caller.mr(0))?;
            let vaddr = caller.mr(1);
            let wanted = Rights(caller.mr(2));
            map_frame(guard, frame_slot, vspace, vaddr, wanted)
        }
        Invocation::FrameUnmap => {
            if mapping.is_none() {
                return Err(Error::NotMapped);
            }
            let mapped = Cap::Frame {
                phys,
                large,
                rights,
                mapping,
            };
            unmap_frame_cap(guard, mapped);
            update_cap(
                guard,
                frame_slot,
                Cap::Frame {
                    phys,
                    large,
                    rights,
                    mapping: None,
                },
            );
            Ok(())
        }
        Invocation::FrameGetAddress => {
            caller.set_reply(guard, &[phys]);
            Ok(())
        }
        _ => Err(Error::IllegalOperation),
    }
}

/// Maps the frame capability in `frame_slot` into `vspace` at `vaddr`.
pub fn map_frame(
    guard: &mut KernelGuard,
    frame_slot: u64,
    vspace: Cap,
    vaddr: u64,
    wanted: Rights,
) -> Result<(), Error> {
    // Decode.
    let Cap::Frame {
        phys,
        large,
        rights,
        mapping,
    } = read_cap(guard, frame_slot)
    else {
        return Err(Error::WrongType);
    };
    let (root, size_bits, guest) = match vspace {
        Cap::VSpace { phys, size_bits } => (phys, size_bits, false),
        Cap::GuestSpace { phys, size_bits } => (phys, size_bits, true),
        _ => return Err(Error::WrongType),
    };
    if mapping.is_some() {
        return Err(Error::AlreadyMapped);
    }
    let size = if large { 2 << 20 } else { PAGE_SIZE };
    let in_range = if guest {
        crate::vcpu::guest_address_ok(vaddr, size)
    } else {
        vaddr.is_multiple_of(size) && vaddr.checked_add(size).is_some_and(|end| end <= USER_END)
    };
    if !in_range {
        return Err(Error::InvalidArgument);
    }
    if wanted.0 & !Rights::ALL.0 != 0
        || wanted.intersect(Rights::READ.union(Rights::WRITE).union(Rights::EXECUTE))
            == Rights::NONE
    {
        return Err(Error::InvalidArgument);
    }
    if !rights.contains(wanted) {
        return Err(Error::InsufficientRights);
    }
    let needed = match paging::tables_needed(guard, root, vaddr, large) {
        Ok(n) => u64::from(n),
        Err(MapError::AlreadyMapped) | Err(MapError::LargePageInTheWay) => {
            return Err(Error::AlreadyMapped)
        }
        Err(MapError::OutOfMemory) => return Err(Error::OutOfTableMemory),
    };
    let header = *objmem::object::<VSpaceHeader>(guard, vspace_header(root));
    let pool_pages = (1u64 << size_bits) / PAGE_SIZE;
    if header.next_table + needed > pool_pages {
        return Err(Error::OutOfTableMemory);
    }
    // Invoke.
    let (write, execute) = (
        wanted.contains(Rights::WRITE),
        wanted.contains(Rights::EXECUTE),
    );
    let leaf = if guest {
        crate::vcpu::guest_leaf_flags(write, execute)
    } else {
        flags::USER
            | if write { flags::WRITABLE } else { 0 }
            | if execute { 0 } else { flags::NO_EXECUTE }
    };
    let header_phys = vspace_header(root);
    let mut alloc = |guard: &mut KernelGuard| {
        let h = objmem::object::<VSpaceHeader>(guard, header_phys);
        let page = root + h.next_table * PAGE_SIZE;
        h.next_table += 1;
        objmem::zero(guard, page, PAGE_SIZE);
        Some(page)
    };
    paging::map_user(guard, root, vaddr, phys, large, leaf, &mut alloc)
        .expect("decode checked the mapping");
    let mapping = Mapping {
        vspace_id: header.id as u16,
        generation: header.generation as u32,
        vaddr,
    };
    update_cap(
        guard,
        frame_slot,
        Cap::Frame {
            phys,
            large,
            rights,
            mapping: Some(mapping),
        },
    );
    Ok(())
}

/// Removes the mapping a frame capability records (if its VSpace still exists).
pub fn unmap_frame_cap(guard: &mut KernelGuard, cap: Cap) {
    let Cap::Frame {
        phys,
        large,
        mapping: Some(mapping),
        ..
    } = cap
    else {
        return;
    };
    let entry = VSPACES.get(guard).entries[usize::from(mapping.vspace_id) % MAX_VSPACES];
    if entry.root == 0 || entry.generation != mapping.generation {
        return;
    }
    if paging::unmap_user(guard, entry.root, mapping.vaddr, large, phys) {
        if entry.guest {
            crate::vcpu::guest_space_changed(guard);
        } else {
            shootdown(entry.root, Some(mapping.vaddr));
        }
    }
}

/// Makes every CPU drop TLB entries of the address space `root`: the local
/// CPU directly, others by IPI (waiting until served). With `vaddr` only that
/// page is flushed locally; remote CPUs flush everything non-global.
pub fn shootdown(root: u64, vaddr: Option<u64>) {
    let here = percpu::current();
    if here.loaded_root() == root {
        match vaddr {
            Some(v) => cpu::invlpg(v),
            None => cpu::flush_tlb(),
        }
    }
    for index in 0..percpu::online() {
        let Some(other) = percpu::get(index) else {
            continue;
        };
        if index == here.index || other.loaded_root() != root {
            continue;
        }
        let ticket = other.request_flush();
        apic::send_ipi(other.apic_id, trap::VECTOR_IPI_FLUSH);
        while !other.flush_served(ticket) {
            cpu::pause();
        }
    }
}

/// Destroys a VSpace: its id is retired (mapped frame capabilities then
/// unmap nothing) and no CPU may keep it loaded.
pub fn destroy_vspace(guard: &mut KernelGuard, header: u64) {
    let h = *objmem::object::<VSpaceHeader>(guard, header);
    let root = header - PAGE_SIZE;
    VSPACES.get(guard).entries[h.id as usize % MAX_VSPACES] = VSpaceEntry {
        root: 0,
        generation: 0,
        guest: false,
    };
    for index in 0..percpu::online() {
        let Some(other) = percpu::get(index) else {
            continue;
        };
        if other.loaded_root() == root && index != percpu::current().index {
            let ticket = other.request_drop_root(root);
            apic::send_ipi(other.apic_id, trap::VECTOR_IPI_FLUSH);
            while !other.flush_served(ticket) {
                cpu::pause();
            }
        }
    }
    if percpu::current().loaded_root() == root {
        crate::arch::user::load_kernel_tables(crate::arch::paging::kernel_root());
    }
}

/// Checks the VSpace table (the invariant check): every live VSpace and
/// GuestSpace holds the id whose entry names it, with its generation and
/// kind, its table pool within its size; no entry names anything else.
pub fn check_spaces(guard: &mut KernelGuard, live: &Live) -> Verdict {
    for &(root, size_bits, guest) in &live.spaces {
        let h = *objmem::object::<VSpaceHeader>(guard, vspace_header(root));
        let entry = VSPACES.get(guard).entries[h.id as usize % MAX_VSPACES];
        ensure(
            h.id != 0
                && (h.id as usize) < MAX_VSPACES
                && entry.root == root
                && u64::from(entry.generation) == h.generation
                && entry.guest == guest,
            "a VSpace's id names another entry",
            root,
        )?;
        ensure(
            h.next_table >= 2 && h.next_table <= (1u64 << size_bits) / PAGE_SIZE,
            "a VSpace's table pool overflows it",
            root,
        )?;
    }
    let used = VSPACES
        .get(guard)
        .entries
        .iter()
        .filter(|e| e.root != 0)
        .count();
    ensure(
        used == live.spaces.len(),
        "the VSpace table names a VSpace no capability names",
        used as u64,
    )?;
    for cpu in 0..percpu::online() {
        let loaded = percpu::get(cpu).map_or(0, |p| p.loaded_root());
        ensure(
            loaded == 0
                || loaded == paging::kernel_root()
                || live.space(loaded).is_some_and(|(_, guest)| !guest),
            "a CPU runs on page tables of no live VSpace",
            u64::from(cpu),
        )?;
    }
    Ok(())
}
