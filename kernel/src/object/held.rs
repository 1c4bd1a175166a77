//! Who holds each capability slot, and the slots the kernel keeps outside
//! every object: the root of the derivation tree and each CPU's binding
//! record (the Cpu, event-ring and notification capabilities a
//! `SchedulerBindCpu` handed over). A TCB's four slots and a Vcpu's
//! GuestSpace and register-page slots live inside those objects.
//!
//! Every slot records its holder ([`Holder`], in the slot itself), set once
//! when the object or the record is made. Deleting a capability the kernel
//! holds therefore reaches its holder at once (`object::delete_one`), and the
//! invariant check knows where every capability may lie.

extern crate alloc;

use super::{Slot, SLOT_BYTES};
use crate::arch::lock::KernelGuard;
use crate::arch::objmem;
use crate::arch::paging::DIRECT_MAP_BASE;
use crate::arch::percpu::MAX_CPUS;
use core::sync::atomic::{AtomicU64, Ordering};

/// The holder of a capability slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A CNode: the only slots user code names.
    CNode,
    /// The root of the derivation tree: every capability without a parent
    /// is one of its children. It never holds a capability itself.
    Root,
    /// Slot `index` of a TCB (`tcb::slot`).
    Tcb {
        /// The slot index.
        index: u8,
    },
    /// The GuestSpace slot of a Vcpu.
    VcpuSpace,
    /// The register-page slot of a Vcpu.
    VcpuPage,
    /// A capability of CPU `cpu`'s binding record.
    Binding {
        /// The CPU index.
        cpu: u8,
        /// Which of the three.
        role: BindingRole,
    },
}

/// The three capabilities of a CPU binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingRole {
    /// A copy of the Cpu capability that bound the CPU (its child).
    Cpu = 0,
    /// The event-ring frame.
    Ring = 1,
    /// The notification signalled on new events.
    Notification = 2,
}

const KIND_CNODE: u64 = 0;
const KIND_ROOT: u64 = 1;
const KIND_TCB: u64 = 2;
const KIND_VCPU_SPACE: u64 = 3;
const KIND_BINDING: u64 = 4;
const KIND_VCPU_PAGE: u64 = 5;

impl Holder {
    /// The word stored in the slot.
    pub fn encode(self) -> u64 {
        match self {
            Holder::CNode => KIND_CNODE,
            Holder::Root => KIND_ROOT,
            Holder::Tcb { index } => KIND_TCB | u64::from(index) << 8,
            Holder::VcpuSpace => KIND_VCPU_SPACE,
            Holder::VcpuPage => KIND_VCPU_PAGE,
            Holder::Binding { cpu, role } => {
                KIND_BINDING | (role as u64) << 8 | u64::from(cpu) << 16
            }
        }
    }

    /// The holder a slot word names (`None`: a word no slot is given).
    pub fn decode(word: u64) -> Option<Holder> {
        let arg = |shift: u32| (word >> shift) as u8;
        Some(match word & 0xFF {
            KIND_CNODE if word == KIND_CNODE => Holder::CNode,
            KIND_ROOT if word == KIND_ROOT => Holder::Root,
            KIND_TCB if word >> 16 == 0 && arg(8) < 4 => Holder::Tcb { index: arg(8) },
            KIND_VCPU_SPACE if word == KIND_VCPU_SPACE => Holder::VcpuSpace,
            KIND_VCPU_PAGE if word == KIND_VCPU_PAGE => Holder::VcpuPage,
            KIND_BINDING if word >> 24 == 0 && usize::from(arg(16)) < MAX_CPUS => Holder::Binding {
                cpu: arg(16),
                role: match arg(8) {
                    0 => BindingRole::Cpu,
                    1 => BindingRole::Ring,
                    2 => BindingRole::Notification,
                    _ => return None,
                },
            },
            _ => return None,
        })
    }
}

/// The holder of slot `slot`.
pub fn holder_of(guard: &mut KernelGuard, slot: u64) -> Option<Holder> {
    Holder::decode(objmem::object::<Slot>(guard, slot).holder)
}

/// Marks `slot` (empty, in a zeroed object) as held by `holder`.
pub fn set_holder(guard: &mut KernelGuard, slot: u64, holder: Holder) {
    objmem::object::<Slot>(guard, slot).holder = holder.encode();
}

/// Slots in the kernel's own record: the root, then three per CPU.
const HELD_SLOTS: usize = 1 + 3 * MAX_CPUS;

/// Physical address of the record (0 until [`init`]).
static RECORD: AtomicU64 = AtomicU64::new(0);

/// Allocates the record from the kernel heap (which lies in the direct map,
/// so its slots are object memory like any other) and marks each slot's
/// holder. Called once at boot, before the first capability exists.
pub fn init(guard: &mut KernelGuard) {
    let record = alloc::vec![Slot::default(); HELD_SLOTS].into_boxed_slice();
    // The record lives for the kernel's whole life and is reached only by
    // physical address through `objmem`, never through this pointer.
    let virt = alloc::boxed::Box::into_raw(record) as *mut Slot as u64;
    let phys = virt - DIRECT_MAP_BASE;
    objmem::admit(
        phys,
        (HELD_SLOTS as u64) * super::SLOT_BYTES,
        super::SLOT_BYTES,
    );
    RECORD.store(phys, Ordering::Relaxed);
    set_holder(guard, root(), Holder::Root);
    for cpu in 0..MAX_CPUS {
        for role in [
            BindingRole::Cpu,
            BindingRole::Ring,
            BindingRole::Notification,
        ] {
            let holder = Holder::Binding {
                cpu: cpu as u8,
                role,
            };
            set_holder(guard, binding(cpu, role), holder);
        }
    }
}

/// The root of the derivation tree.
#[inline]
pub fn root() -> u64 {
    RECORD.load(Ordering::Relaxed)
}

/// The slot of CPU `cpu`'s binding that holds `role`.
#[inline]
pub fn binding(cpu: usize, role: BindingRole) -> u64 {
    root() + (1 + 3 * cpu as u64 + role as u64) * SLOT_BYTES
}
