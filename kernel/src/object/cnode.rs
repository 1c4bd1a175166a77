//! CNodes: tables of capability slots, and the capability operations (copy,
//! mint, move, delete, revoke, grow) invoked on them.
//!
//! # Growing a CNode
//!
//! `CNodeGrow` replaces a CSpace's CNode by a larger one in one kernel
//! call, under the kernel lock: every capability moves to the same index
//! (relinked in the derivation tree as `CNodeMove` does), and the
//! capabilities naming the old CNode and the one naming the new swap what
//! they name and their places in the tree. A thread of the same CSpace on
//! another CPU is either outside the kernel (it holds capability pointers
//! only, which mean the same after the call), or waiting for the lock (it
//! looks its capabilities up afterwards, in the new CNode), or blocked in
//! an IPC whose objects it reached before (a blocked thread keeps object
//! addresses, never slot addresses; a receive window is looked up when a
//! message arrives). So no call of another thread fails or reaches another
//! object, with no lock or stop in the task that grows.
//!
//! The kernel finds every capability naming the old CNode without a
//! search: each is a copy of another or the one retyped, so they form
//! subtrees of the derivation tree; the call takes the subtree of the
//! topmost capability above the invoked one and refuses (`IllegalState`)
//! if the CNode's reference count says there are others (a copy whose
//! ancestor was deleted sits beside it, not below it).
//!
//! Cost: the call visits every slot of the old CNode twice (the decode's
//! check that the new one's slots are empty, and the move) and moves the
//! occupied ones; a move also rewrites the parent link of each of the
//! capability's children. It is not preemptible: it is bounded instead,
//! by the largest CNode (2^16 slots, `tarn_ipc_schema::object_size`), and
//! measured (README, "Scale").

use super::{
    delete_cap, insert_cap, move_cap, read_cap, revoke_cap, slot_address, slot_is_empty,
    update_cap, Cap, ObjectHeader, Tree, SLOT_BYTES,
};
use crate::arch::lock::KernelGuard;
use crate::arch::objmem;
use crate::syscall::Caller;
use tarn_ipc_schema::invocation::Invocation;
use tarn_ipc_schema::{Error, Rights};
use tarn_kernel_core::cdt;

/// Handles an invocation on the CNode capability `cnode`, which lies in
/// slot `cnode_slot`.
pub fn invoke(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    cnode: Cap,
    cnode_slot: u64,
    label: Invocation,
) -> Result<(), Error> {
    match label {
        Invocation::CNodeCopy | Invocation::CNodeMint | Invocation::CNodeMove => {
            // Decode.
            let dest = slot_address(cnode, caller.mr(0))?;
            let source_cnode = caller.lookup(guard, caller.mr(1))?;
            let source = slot_address(source_cnode, caller.mr(2))?;
            let cap = read_cap(guard, source);
            if cap == Cap::Null {
                return Err(Error::InvalidCapability);
            }
            if read_cap(guard, dest) != Cap::Null {
                return Err(Error::SlotOccupied);
            }
            if label == Invocation::CNodeMove {
                move_cap(guard, source, dest);
                return Ok(());
            }
            let mask = Rights(caller.mr(3));
            let badge = if label == Invocation::CNodeMint {
                caller.mr(4)
            } else {
                0
            };
            let derived = derive(cap, mask, badge)?;
            // Invoke.
            insert_cap(guard, dest, derived, source);
            Ok(())
        }
        Invocation::CNodeDelete => {
            let slot = slot_address(cnode, caller.mr(0))?;
            delete_cap(guard, slot);
            Ok(())
        }
        Invocation::CNodeRevoke => {
            let slot = slot_address(cnode, caller.mr(0))?;
            if read_cap(guard, slot) == Cap::Null {
                return Err(Error::InvalidCapability);
            }
            revoke_cap(guard, slot);
            Ok(())
        }
        Invocation::CNodeGrow => {
            let grow = decode_grow(guard, caller, cnode, cnode_slot)?;
            grow.invoke(guard);
            Ok(())
        }
        _ => Err(Error::IllegalOperation),
    }
}

/// A validated `CNodeGrow`.
struct Grow {
    /// The CNode that grows: header address and log2 slots.
    old: (u64, u8),
    /// The larger CNode.
    new: (u64, u8),
    /// The topmost capability naming `old` above the invoked one; the
    /// capabilities naming `old` are exactly its subtree.
    family_top: u64,
    /// How many they are (`old`'s reference count).
    family_size: u64,
    /// The one capability naming `new`.
    new_slot: u64,
}

fn names_cnode(guard: &mut KernelGuard, slot: u64, cnode: u64) -> bool {
    matches!(read_cap(guard, slot), Cap::CNode { phys, .. } if phys == cnode)
}

fn refs(guard: &mut KernelGuard, header: u64) -> u64 {
    objmem::object::<ObjectHeader>(guard, header).refs
}

/// The decode half of `CNodeGrow` (no side effects).
fn decode_grow(
    guard: &mut KernelGuard,
    caller: &Caller,
    cnode: Cap,
    cnode_slot: u64,
) -> Result<Grow, Error> {
    let Cap::CNode {
        phys: old,
        size_bits: old_bits,
    } = cnode
    else {
        return Err(Error::WrongType);
    };
    let new_slot = caller.lookup_slot(guard, caller.mr(0))?;
    let Cap::CNode {
        phys: new,
        size_bits: new_bits,
    } = read_cap(guard, new_slot)
    else {
        return Err(Error::WrongType);
    };
    if new_bits <= old_bits {
        return Err(Error::InvalidArgument);
    }
    if refs(guard, new) != 1 {
        return Err(Error::IllegalState);
    }
    let family_size = refs(guard, old);
    let mut family_top = cnode_slot;
    let mut steps = 0;
    loop {
        let parent = objmem::read_slot_links(guard, family_top)[0];
        if parent == cdt::NONE || steps == family_size || !names_cnode(guard, parent, old) {
            break;
        }
        family_top = parent;
        steps += 1;
    }
    let mut strangers = 0;
    let walked = cdt::visit_subtree(&mut Tree(guard), family_top, family_size, |tree, slot| {
        if !names_cnode(tree.0, slot, old) {
            strangers += 1;
        }
    });
    if walked != Some(family_size) || strangers != 0 {
        return Err(Error::IllegalState);
    }
    if (1..1u64 << old_bits).any(|index| !slot_is_empty(guard, new + index * SLOT_BYTES)) {
        return Err(Error::SlotOccupied);
    }
    Ok(Grow {
        old: (old, old_bits),
        new: (new, new_bits),
        family_top,
        family_size,
        new_slot,
    })
}

impl Grow {
    /// The invoke half of `CNodeGrow` (cannot fail).
    fn invoke(self, guard: &mut KernelGuard) {
        let (old, old_bits) = self.old;
        let (new, new_bits) = self.new;
        // What each capability names, and the reference counts with it.
        let grown = Cap::CNode {
            phys: new,
            size_bits: new_bits,
        };
        cdt::visit_subtree(
            &mut Tree(guard),
            self.family_top,
            self.family_size,
            |tree, slot| update_cap(tree.0, slot, grown),
        );
        update_cap(
            guard,
            self.new_slot,
            Cap::CNode {
                phys: old,
                size_bits: old_bits,
            },
        );
        objmem::object::<ObjectHeader>(guard, new).refs = self.family_size;
        objmem::object::<ObjectHeader>(guard, old).refs = 1;
        // Each object's capabilities stay below the memory it lies in.
        let old_parent = objmem::read_slot_links(guard, self.family_top)[0];
        let new_parent = objmem::read_slot_links(guard, self.new_slot)[0];
        cdt::reparent(&mut Tree(guard), self.new_slot, old_parent);
        cdt::reparent(&mut Tree(guard), self.family_top, new_parent);
        // The contents, index for index.
        for index in 1..1u64 << old_bits {
            let from = old + index * SLOT_BYTES;
            if !slot_is_empty(guard, from) {
                move_cap(guard, from, new + index * SLOT_BYTES);
            }
        }
    }
}

/// The capability a copy (badge 0) or mint of `cap` produces: rights
/// reduced to `cap ∩ mask`, badge set on unbadged endpoints/notifications,
/// frames unmapped. Untyped capabilities are never duplicated (their
/// watermark lives in the one capability).
pub fn derive(cap: Cap, mask: Rights, badge: u64) -> Result<Cap, Error> {
    let rights = cap.rights().intersect(mask);
    Ok(match cap {
        Cap::Null => return Err(Error::InvalidCapability),
        Cap::Untyped { .. } | Cap::IrqHandler { .. } => return Err(Error::IllegalOperation),
        Cap::Endpoint {
            phys, badge: old, ..
        } => Cap::Endpoint {
            phys,
            badge: mint_badge(old, badge)?,
            rights,
        },
        Cap::Notification {
            phys, badge: old, ..
        } => Cap::Notification {
            phys,
            badge: mint_badge(old, badge)?,
            rights,
        },
        Cap::Frame { phys, large, .. } if badge == 0 => Cap::Frame {
            phys,
            large,
            rights,
            mapping: None,
        },
        other if badge == 0 => other,
        _ => return Err(Error::InvalidArgument),
    })
}

fn mint_badge(old: u64, new: u64) -> Result<u64, Error> {
    match (old, new) {
        (old, 0) => Ok(old),
        (0, new) => Ok(new),
        _ => Err(Error::IllegalState),
    }
}

/// Destroys a CNode whose last capability was deleted: deletes every slot.
pub fn destroy(guard: &mut KernelGuard, header: u64) {
    let size_bits = super::cnode_size_bits(guard, header);
    for index in 1..(1u64 << size_bits) {
        super::delete_one(guard, header + index * SLOT_BYTES);
    }
}
