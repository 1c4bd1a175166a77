//! Kernel objects and capabilities. A capability lives in a 64-byte [`Slot`]
//! (in a CNode, inside a TCB or a Vcpu, or in the kernel's own record,
//! [`held`]) and names an object by physical address. Objects live in memory
//! retyped from Untyped; the kernel heap holds none.
//!
//! Lifetime: refcounted objects (TCB, endpoint, notification, CNode, VSpace,
//! GuestSpace, Scheduler, Vcpu) count the capabilities that name them.
//! Deleting the last one queues the object as a *zombie*; [`drain_zombies`]
//! then runs each zombie's destructor iteratively (a destructor may delete
//! further capabilities), so deletion depth never grows the kernel stack.
//! Frames and untyped memory need no destructor beyond unmapping the deleted
//! capability's own mapping. Every capability is in the derivation tree; one
//! derived from none is a child of the tree's root ([`held::root`]).
//!
//! Every invocation follows seL4's shape: decode (validate everything, no side
//! effects) then invoke (mutate, cannot fail).
//!
//! # The reference rule
//!
//! Every reference the kernel keeps from one object to another is either
//! **held**: read, at each use, through a capability the kernel keeps in a
//! slot of its own, a child of the capability the user passed (so deleting
//! or revoking that capability or its untyped memory deletes the kernel's
//! copy too, and a counted object stays alive while the kernel holds it; an
//! address a hot path keeps beside such a capability is cleared in the same
//! step as the capability); or
//! **cleared**: a raw address removed synchronously, under the kernel lock,
//! by the destructor of the object it names (or by the operation that
//! deletes, revokes or moves the capability it stands for), before that
//! object's memory can be retyped. `invariants` walks every reference below
//! on the live system and fails if one names anything but a live object of
//! the right type.
//!
//! | reference | kept in | mechanism |
//! | --- | --- | --- |
//! | a thread's CSpace root, VSpace, fault endpoint | TCB slots 0, 1, 3 | held |
//! | a thread's IPC buffer | TCB slot 2 (`Control::ipc_buffer_offset` is only the offset in that frame) | held: the address is derived from the slot at each use (`tcb::ipc_buffer`); an empty slot means no buffer |
//! | bound notification and thread | `Control::bound_notification`, `Notification::bound_tcb` | cleared by either destructor |
//! | the endpoint or notification a thread waits on; queue links | `Control::blocked_on`, `ipc_next`/`ipc_prev`, queue heads | cleared: the TCB destructor leaves the queue, the endpoint or notification destructor aborts every waiter |
//! | caller and server of a call | `Control::reply_to`, `reply_from` (always both or neither) | cleared when either thread is destroyed or suspended, and when the server takes a new call before replying (that caller gets `ObjectDeleted`) |
//! | Scheduler membership | `Control::scheduler`, the Scheduler's list | cleared by the TCB destructor (unlink) and the Scheduler destructor (releases every thread) |
//! | a thread's confinement | `Control::confined`, the Scheduler's confined list | cleared by the TCB destructor (unlink) and the Scheduler destructor (suspends every confined thread for good, leaving `ORPHANED`, no address) |
//! | a CPU's Scheduler | `dispatch::CpuDispatch::scheduler`, `Scheduler::cpus` | cleared by the Scheduler destructor (unbinds its CPUs) |
//! | the Cpu capability that bound a CPU | the CPU's binding record: a copy, the child of that capability | held: a move carries the child along; deleting that capability (whose child the record's copy is), revoking it or anything it came from unbinds the CPU |
//! | a CPU's event ring and notification | the CPU's binding record ([`held::binding`]); `CpuDispatch::ring`, `notify` copy their addresses for the dispatch path | held: deleting either capability (or the server's it was copied from, or its untyped memory) clears its copy and unbinds the CPU at once; an event with no ring is dropped; the notification stays alive until the CPU is unbound |
//! | dispatch entries; an entry lent to a server | `CpuDispatch::queue`, `donated_to`, `Control::entry_cpu` | cleared by the TCB destructor (all three) and suspension (entries) |
//! | system FIFO, running thread, timeouts, charged thread, FPU owner | `sched::CpuSched`, `Control::sched_*`, `timeout_*` | cleared by the TCB destructor (the FPU owner also by the Vcpu destructor) |
//! | Vcpu and its thread | `VcpuState::tcb`, `Control::vcpu` | cleared by either destructor |
//! | a Vcpu's GuestSpace | `VcpuState::space_slot`, `space_root` | held: deleting the slot's capability clears the cached `space_root`, makes a CPU running the guest leave it first, and ends `VcpuRun` with `ObjectDeleted` |
//! | a Vcpu's register page | `VcpuState::page_slot`, `page` | held: deleting the slot's capability (a child of the frame capability `VcpuBind` was given) clears the cached `page`; the kernel writes the page only when a `VcpuRun` ends, under the lock, and without it that call ends with `ObjectDeleted` |
//! | a CPU's running and last guest | `vcpu::GUESTS` | cleared by the Vcpu destructor |
//! | a CPU's current VMCS (VMX) | `arch::vmx` (per CPU) | cleared by the Vcpu destructor and by binding, on the CPU that has it (VMCLEAR there, asked by IPI) |
//! | a VSpace's or GuestSpace's page-table entry for a frame; the frame capability's [`Mapping`] (VSpace id and generation) | the page tables; the capability | cleared: deleting the capability unmaps (and flushes TLBs, guest TLBs included); a destroyed VSpace retires its id, so a stale mapping unmaps nothing |
//! | VSpace table; page tables a CPU runs on | `memory::VSPACES`, the per-CPU loaded root | cleared by the VSpace destructor |
//! | an interrupt line's notification | `devices::IRQ_TABLE` | cleared by the notification destructor; the line goes with its handler capability |
//! | derivation links | [`Slot::links`] | cleared by every delete, carried by every move |
//!
//! An operation that deletes capabilities and then goes on using objects
//! (`TcbConfigure`) [`pin`]s them first: a chain of destructions started by
//! a delete cannot free what it still reads.

pub mod cnode;
pub mod held;
pub mod memory;
pub mod tcb;

use crate::arch::lock::KernelGuard;
use crate::arch::objmem::{self, KernelObject};
use tarn_ipc_schema::{Error, ObjectType, Rights};
use tarn_kernel_core::cdt::{self, Links, TreeStore};

/// Bytes per capability slot.
pub const SLOT_BYTES: u64 = tarn_ipc_schema::SLOT_BYTES;

/// A capability slot: the capability words and its derivation-tree links.
#[repr(C, align(64))]
#[derive(Clone, Copy, Default)]
pub struct Slot {
    /// Encoded capability ([`Cap::encode`]); all zero = empty.
    pub words: [u64; 3],
    /// Derivation-tree links (parent, first child, previous, next sibling).
    pub links: [u64; 4],
    /// Who holds the slot ([`held::Holder`], encoded; 0 = a CNode). Set
    /// once when its object is made, never by a capability operation.
    pub holder: u64,
}
const _: () = assert!(core::mem::size_of::<Slot>() == SLOT_BYTES as usize);
impl KernelObject for Slot {}

/// Where a frame capability is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// VSpace id (index in the VSpace table).
    pub vspace_id: u16,
    /// Generation of that id when mapped (a destroyed VSpace's id is reused
    /// with a new generation, so stale mappings are recognised).
    pub generation: u32,
    /// Virtual address.
    pub vaddr: u64,
}

/// A decoded capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// Empty slot.
    Null,
    /// Untyped memory `[phys, phys + 2^size_bits)`, allocated up to `watermark` bytes.
    Untyped {
        phys: u64,
        size_bits: u8,
        watermark: u64,
    },
    /// A CNode of 2^size_bits slots (slot 0 holds the header and is never addressable).
    CNode { phys: u64, size_bits: u8 },
    /// A thread.
    Tcb { phys: u64 },
    /// An endpoint, with the badge delivered to receivers.
    Endpoint {
        phys: u64,
        badge: u64,
        rights: Rights,
    },
    /// A notification, with the badge OR-ed in on signal.
    Notification {
        phys: u64,
        badge: u64,
        rights: Rights,
    },
    /// A 4 KiB or 2 MiB frame.
    Frame {
        phys: u64,
        large: bool,
        rights: Rights,
        mapping: Option<Mapping>,
    },
    /// An address space of 2^size_bits bytes (PML4, header page, tables).
    VSpace { phys: u64, size_bits: u8 },
    /// Interrupt authority: creates IRQ handlers.
    IrqControl,
    /// Delivery of one interrupt line (unique: never copied).
    IrqHandler { irq: u8 },
    /// I/O ports `first..=last`.
    IoPort { first: u16, last: u16 },
    /// Whole-machine operations.
    Machine,
    /// Authority over physical CPU `index`.
    Cpu { index: u32 },
    /// A scheduling domain (user-mode scheduler identity).
    Scheduler { phys: u64 },
    /// A guest-physical address space of 2^size_bits bytes (laid out like a
    /// VSpace: root table, header page, tables).
    GuestSpace { phys: u64, size_bits: u8 },
    /// A virtual CPU.
    Vcpu { phys: u64 },
}

const TAG_NULL: u64 = 0;

impl Cap {
    /// The object type this capability names (`None` for an empty slot).
    pub fn object_type(&self) -> Option<ObjectType> {
        Some(match self {
            Cap::Null => return None,
            Cap::Untyped { .. } => ObjectType::Untyped,
            Cap::CNode { .. } => ObjectType::CNode,
            Cap::Tcb { .. } => ObjectType::Tcb,
            Cap::Endpoint { .. } => ObjectType::Endpoint,
            Cap::Notification { .. } => ObjectType::Notification,
            Cap::Frame { large: false, .. } => ObjectType::Frame4K,
            Cap::Frame { large: true, .. } => ObjectType::Frame2M,
            Cap::VSpace { .. } => ObjectType::VSpace,
            Cap::IrqControl => ObjectType::IrqControl,
            Cap::IrqHandler { .. } => ObjectType::IrqHandler,
            Cap::IoPort { .. } => ObjectType::IoPort,
            Cap::Machine => ObjectType::Machine,
            Cap::Cpu { .. } => ObjectType::Cpu,
            Cap::Scheduler { .. } => ObjectType::Scheduler,
            Cap::GuestSpace { .. } => ObjectType::GuestSpace,
            Cap::Vcpu { .. } => ObjectType::Vcpu,
        })
    }

    /// Encodes into slot words: w0 = type | rights << 8 | aux << 16, w1, w2.
    pub fn encode(&self) -> [u64; 3] {
        let tag = self.object_type().map_or(TAG_NULL, |t| t as u64);
        let w0 = |rights: Rights, aux: u64| tag | (rights.0 & 0xFF) << 8 | aux << 16;
        match *self {
            Cap::Null => [0; 3],
            Cap::Untyped {
                phys,
                size_bits,
                watermark,
            } => [w0(Rights::ALL, u64::from(size_bits)), phys, watermark],
            Cap::CNode { phys, size_bits } => [w0(Rights::ALL, u64::from(size_bits)), phys, 0],
            Cap::Tcb { phys } => [w0(Rights::ALL, 0), phys, 0],
            Cap::Endpoint {
                phys,
                badge,
                rights,
            }
            | Cap::Notification {
                phys,
                badge,
                rights,
            } => [w0(rights, 0), phys, badge],
            Cap::Frame {
                phys,
                large,
                rights,
                mapping,
            } => {
                let (aux, w2) = match mapping {
                    None => (u64::from(large), 0),
                    Some(m) => (
                        u64::from(large) | 2 | u64::from(m.generation) << 8,
                        m.vaddr | u64::from(m.vspace_id),
                    ),
                };
                [w0(rights, aux), phys, w2]
            }
            Cap::VSpace { phys, size_bits } | Cap::GuestSpace { phys, size_bits } => {
                [w0(Rights::ALL, u64::from(size_bits)), phys, 0]
            }
            Cap::IrqControl | Cap::Machine => [w0(Rights::ALL, 0), 0, 0],
            Cap::IrqHandler { irq } => [w0(Rights::ALL, u64::from(irq)), 0, 0],
            Cap::IoPort { first, last } => [
                w0(Rights::ALL, 0),
                u64::from(first) | u64::from(last) << 16,
                0,
            ],
            Cap::Cpu { index } => [w0(Rights::ALL, 0), u64::from(index), 0],
            Cap::Scheduler { phys } | Cap::Vcpu { phys } => [w0(Rights::ALL, 0), phys, 0],
        }
    }

    /// Decodes slot words (only the kernel writes them, so they are well formed).
    pub fn decode(words: [u64; 3]) -> Cap {
        let rights = Rights((words[0] >> 8) & 0xFF);
        let aux = words[0] >> 16;
        let Some(tag) = ObjectType::from_u64(words[0] & 0xFF) else {
            return Cap::Null;
        };
        match tag {
            ObjectType::Untyped => Cap::Untyped {
                phys: words[1],
                size_bits: aux as u8,
                watermark: words[2],
            },
            ObjectType::CNode => Cap::CNode {
                phys: words[1],
                size_bits: aux as u8,
            },
            ObjectType::Tcb => Cap::Tcb { phys: words[1] },
            ObjectType::Endpoint => Cap::Endpoint {
                phys: words[1],
                badge: words[2],
                rights,
            },
            ObjectType::Notification => Cap::Notification {
                phys: words[1],
                badge: words[2],
                rights,
            },
            ObjectType::Frame4K | ObjectType::Frame2M => Cap::Frame {
                phys: words[1],
                large: aux & 1 != 0,
                rights,
                mapping: (aux & 2 != 0).then(|| Mapping {
                    vspace_id: (words[2] & 0xFFF) as u16,
                    generation: (aux >> 8) as u32,
                    vaddr: words[2] & !0xFFF,
                }),
            },
            ObjectType::VSpace => Cap::VSpace {
                phys: words[1],
                size_bits: aux as u8,
            },
            ObjectType::IrqControl => Cap::IrqControl,
            ObjectType::IrqHandler => Cap::IrqHandler { irq: aux as u8 },
            ObjectType::IoPort => Cap::IoPort {
                first: words[1] as u16,
                last: (words[1] >> 16) as u16,
            },
            ObjectType::Machine => Cap::Machine,
            ObjectType::Cpu => Cap::Cpu {
                index: words[1] as u32,
            },
            ObjectType::Scheduler => Cap::Scheduler { phys: words[1] },
            ObjectType::GuestSpace => Cap::GuestSpace {
                phys: words[1],
                size_bits: aux as u8,
            },
            ObjectType::Vcpu => Cap::Vcpu { phys: words[1] },
        }
    }

    /// The refcounted object this capability keeps alive, if any.
    pub fn counted_object(&self) -> Option<(ObjectType, u64)> {
        match *self {
            Cap::CNode { phys, .. } => Some((ObjectType::CNode, phys)),
            Cap::Tcb { phys } => Some((ObjectType::Tcb, phys)),
            Cap::Endpoint { phys, .. } => Some((ObjectType::Endpoint, phys)),
            Cap::Notification { phys, .. } => Some((ObjectType::Notification, phys)),
            Cap::VSpace { phys, .. } => Some((ObjectType::VSpace, memory::vspace_header(phys))),
            Cap::Scheduler { phys } => Some((ObjectType::Scheduler, phys)),
            Cap::GuestSpace { phys, .. } => {
                Some((ObjectType::GuestSpace, memory::vspace_header(phys)))
            }
            Cap::Vcpu { phys } => Some((ObjectType::Vcpu, crate::vcpu::header(phys))),
            _ => None,
        }
    }

    /// The rights the capability carries (all for types without rights).
    pub fn rights(&self) -> Rights {
        match *self {
            Cap::Endpoint { rights, .. }
            | Cap::Notification { rights, .. }
            | Cap::Frame { rights, .. } => rights,
            _ => Rights::ALL,
        }
    }
}

/// The header at the start of every refcounted object (for a CNode: slot 0;
/// for a VSpace: its header page).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ObjectHeader {
    /// Capabilities naming the object.
    pub refs: u64,
    /// Next zombie in the destroy queue (while refs == 0 and queued).
    pub zombie_next: u64,
    /// The object's type (bits 0..8, for the destroy queue) and log2 of its
    /// size in bytes (bits 8..16).
    pub kind: u64,
}
impl KernelObject for ObjectHeader {}

impl ObjectHeader {
    /// The object's type.
    pub fn object_type(&self) -> Option<ObjectType> {
        ObjectType::from_u64(self.kind & 0xFF)
    }

    /// log2 of the object's size in bytes.
    pub fn size_bits(&self) -> u8 {
        (self.kind >> 8) as u8
    }
}

/// Kernel-wide object accounting (for the invariant check).
#[derive(Default)]
pub struct Stats {
    /// Live refcounted objects.
    pub live_objects: u64,
    /// Occupied capability slots.
    pub live_caps: u64,
    /// Head of the zombie queue (header phys, 0 = empty).
    zombie_head: u64,
}

impl Stats {
    /// Whether a destroyed object's destructor has yet to run (never true
    /// between system calls).
    pub fn zombies_pending(&self) -> bool {
        self.zombie_head != 0
    }
}

/// The kernel's object accounting.
pub static STATS: crate::arch::lock::BklCell<Stats> = crate::arch::lock::BklCell::new(Stats {
    live_objects: 0,
    live_caps: 0,
    zombie_head: 0,
});

/// The root of the VSpace capability in `slot` (hot path: no full decode).
#[inline]
pub fn vspace_root_at(guard: &mut KernelGuard, slot: u64) -> Option<u64> {
    let words = objmem::object::<Slot>(guard, slot).words;
    (words[0] & 0xFF == ObjectType::VSpace as u64).then_some(words[1])
}

/// The endpoint capability that `cptr` names in the CSpace whose root
/// capability is in `cspace_slot`: (endpoint, badge, rights), or `None` for
/// anything else (hot path: no full decode).
#[inline]
pub fn endpoint_at(
    guard: &mut KernelGuard,
    cspace_slot: u64,
    cptr: u64,
) -> Option<(u64, u64, Rights)> {
    let words = fast_slot_words(guard, cspace_slot, cptr)?;
    (words[0] & 0xFF == ObjectType::Endpoint as u64).then_some((
        words[1],
        words[2],
        Rights((words[0] >> 8) & 0xFF),
    ))
}

/// The Vcpu object that `cptr` names in the CSpace whose root capability
/// is in `cspace_slot`, or `None` for anything else (the `VcpuRun`
/// fastpath: no full decode).
#[inline]
pub fn vcpu_at(guard: &mut KernelGuard, cspace_slot: u64, cptr: u64) -> Option<u64> {
    let words = fast_slot_words(guard, cspace_slot, cptr)?;
    (words[0] & 0xFF == ObjectType::Vcpu as u64).then_some(words[1])
}

/// The capability words of the slot `cptr` names in the CSpace whose root
/// capability is in `cspace_slot` (`None`: no such slot).
#[inline(always)]
fn fast_slot_words(guard: &mut KernelGuard, cspace_slot: u64, cptr: u64) -> Option<[u64; 3]> {
    let root = objmem::object::<Slot>(guard, cspace_slot).words;
    let size_bits = (root[0] >> 16) & 0xFF;
    if root[0] & 0xFF != ObjectType::CNode as u64 || cptr == 0 || cptr >> size_bits != 0 {
        return None;
    }
    Some(objmem::object::<Slot>(guard, root[1] + cptr * SLOT_BYTES).words)
}

/// Whether slot `slot` holds no capability (as `read_cap(..) == Cap::Null`,
/// without the full decode).
#[inline]
pub fn slot_is_empty(guard: &mut KernelGuard, slot: u64) -> bool {
    ObjectType::from_u64(objmem::object::<Slot>(guard, slot).words[0] & 0xFF).is_none()
}

/// Reads the capability in slot `slot`.
pub fn read_cap(guard: &mut KernelGuard, slot: u64) -> Cap {
    Cap::decode(objmem::object::<Slot>(guard, slot).words)
}

/// Overwrites the capability in slot `slot` without touching refcounts or the
/// tree (used to update a capability's own fields: watermark, mapping).
pub fn update_cap(guard: &mut KernelGuard, slot: u64, cap: Cap) {
    objmem::object::<Slot>(guard, slot).words = cap.encode();
}

/// Registers a fresh refcounted object (refs 0; the first capability adds 1).
pub fn init_header(guard: &mut KernelGuard, header: u64, object_type: ObjectType, size_bits: u8) {
    *objmem::object::<ObjectHeader>(guard, header) = ObjectHeader {
        refs: 0,
        zombie_next: 0,
        kind: object_type as u64 | u64::from(size_bits) << 8,
    };
    STATS.get(guard).live_objects += 1;
}

/// The number of slots (log2) of the CNode whose header is at `header`.
pub fn cnode_size_bits(guard: &mut KernelGuard, header: u64) -> u8 {
    objmem::object::<ObjectHeader>(guard, header).size_bits() - 6
}

/// The derivation tree over slot memory.
pub struct Tree<'g>(pub &'g mut KernelGuard);

impl TreeStore for Tree<'_> {
    fn links(&self, slot: u64) -> Links {
        let l = objmem::read_slot_links(self.0, slot);
        Links {
            parent: l[0],
            first_child: l[1],
            prev_sibling: l[2],
            next_sibling: l[3],
        }
    }
    fn set_links(&mut self, slot: u64, links: Links) {
        objmem::object::<Slot>(self.0, slot).links = [
            links.parent,
            links.first_child,
            links.prev_sibling,
            links.next_sibling,
        ];
    }
}

/// Installs `cap` into the empty slot `slot` as a child of `parent` (0 = a
/// capability derived from none, a child of the tree's root), counting the
/// reference.
pub fn insert_cap(guard: &mut KernelGuard, slot: u64, cap: Cap, parent: u64) {
    objmem::object::<Slot>(guard, slot).words = cap.encode();
    let parent = if parent == 0 { held::root() } else { parent };
    cdt::insert_child(&mut Tree(guard), parent, slot);
    if let Some((_, header)) = cap.counted_object() {
        objmem::object::<ObjectHeader>(guard, header).refs += 1;
    }
    STATS.get(guard).live_caps += 1;
}

/// Moves the capability in `from` to the empty slot `to`, keeping its place
/// in the tree and its reference.
pub fn move_cap(guard: &mut KernelGuard, from: u64, to: u64) {
    let words = objmem::object::<Slot>(guard, from).words;
    objmem::object::<Slot>(guard, to).words = words;
    cdt::replace(&mut Tree(guard), from, to);
    objmem::object::<Slot>(guard, from).words = [0; 3];
}

/// Deletes the capability in `slot` (no-op on an empty slot). If it was the
/// last capability to its object, the object is destroyed before returning.
pub fn delete_cap(guard: &mut KernelGuard, slot: u64) {
    delete_one(guard, slot);
    drain_zombies(guard);
}

/// Deletes every capability derived from the one in `slot`.
pub fn revoke_cap(guard: &mut KernelGuard, slot: u64) {
    while let Some(leaf) = cdt::leaf_descendant(&Tree(guard), slot) {
        delete_one(guard, leaf);
        drain_zombies(guard);
    }
    if let Cap::Untyped {
        phys, size_bits, ..
    } = read_cap(guard, slot)
    {
        update_cap(
            guard,
            slot,
            Cap::Untyped {
                phys,
                size_bits,
                watermark: 0,
            },
        );
    }
}

/// Deletes one capability; a destroyed object is only queued (callers inside
/// a destructor rely on [`drain_zombies`] running afterwards).
pub fn delete_one(guard: &mut KernelGuard, slot: u64) {
    let cap = read_cap(guard, slot);
    if cap == Cap::Null {
        return;
    }
    match cap {
        Cap::Frame { .. } => memory::unmap_frame_cap(guard, cap),
        Cap::IrqHandler { irq } => crate::devices::release_irq(guard, irq),
        Cap::Cpu { index } => crate::dispatch::cpu_cap_deleted(guard, index, slot),
        _ => {}
    }
    cdt::detach(&mut Tree(guard), slot);
    objmem::object::<Slot>(guard, slot).words = [0; 3];
    STATS.get(guard).live_caps -= 1;
    if let Some((_, header)) = cap.counted_object() {
        unpin(guard, header);
    }
    // A capability the kernel held is gone: its holder lets go of what it
    // stood for (the slot is already empty, so nothing reads through it).
    match held::holder_of(guard, slot) {
        Some(held::Holder::Binding { cpu, role }) => {
            crate::dispatch::binding_cap_deleted(guard, usize::from(cpu), role)
        }
        Some(held::Holder::VcpuSpace) => {
            crate::vcpu::space_cap_deleted(guard, slot - crate::vcpu::space_slot(0))
        }
        Some(held::Holder::VcpuPage) => {
            crate::vcpu::page_cap_deleted(guard, slot - crate::vcpu::page_slot(0))
        }
        _ => {}
    }
}

/// Keeps the refcounted object whose header is at `header` alive, as a
/// capability would, until [`unpin`]: an operation that deletes capabilities
/// and then goes on using an object pins it, so that a chain of
/// destructions cannot take it away underneath.
pub fn pin(guard: &mut KernelGuard, header: u64) {
    objmem::object::<ObjectHeader>(guard, header).refs += 1;
}

/// Drops one reference (a capability's or a [`pin`]); the last queues the
/// object for destruction ([`drain_zombies`]).
pub fn unpin(guard: &mut KernelGuard, header: u64) {
    let h = objmem::object::<ObjectHeader>(guard, header);
    h.refs -= 1;
    if h.refs == 0 {
        let stats_head = STATS.get(guard).zombie_head;
        objmem::object::<ObjectHeader>(guard, header).zombie_next = stats_head;
        STATS.get(guard).zombie_head = header;
    }
}

/// Destroys queued zombies until none remain.
pub fn drain_zombies(guard: &mut KernelGuard) {
    loop {
        let header = STATS.get(guard).zombie_head;
        if header == 0 {
            return;
        }
        let h = *objmem::object::<ObjectHeader>(guard, header);
        STATS.get(guard).zombie_head = h.zombie_next;
        STATS.get(guard).live_objects -= 1;
        match h.object_type() {
            Some(ObjectType::Tcb) => tcb::destroy(guard, header),
            Some(ObjectType::Endpoint) => crate::ipc::destroy_endpoint(guard, header),
            Some(ObjectType::Notification) => crate::ipc::destroy_notification(guard, header),
            Some(ObjectType::CNode) => cnode::destroy(guard, header),
            Some(ObjectType::VSpace | ObjectType::GuestSpace) => {
                memory::destroy_vspace(guard, header)
            }
            Some(ObjectType::Vcpu) => crate::vcpu::destroy(guard, header),
            Some(ObjectType::Scheduler) => crate::dispatch::destroy_scheduler(guard, header),
            _ => {}
        }
    }
}

/// Looks up `cptr` in the CNode `cnode` (a CNode capability): the slot's
/// physical address, or `InvalidCapability` for 0 / out of range.
pub fn slot_address(cnode: Cap, cptr: u64) -> Result<u64, Error> {
    match cnode {
        Cap::CNode { phys, size_bits } if cptr != 0 && cptr < 1 << size_bits => {
            Ok(phys + cptr * SLOT_BYTES)
        }
        Cap::CNode { .. } => Err(Error::InvalidCapability),
        _ => Err(Error::WrongType),
    }
}
