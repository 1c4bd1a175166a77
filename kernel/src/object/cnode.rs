//! CNodes: tables of capability slots, and the capability operations (copy,
//! mint, move, delete, revoke) invoked on them.

use super::{
    delete_cap, insert_cap, move_cap, read_cap, revoke_cap, slot_address, Cap, SLOT_BYTES,
};
use crate::arch::lock::KernelGuard;
use crate::syscall::Caller;
use tarn_ipc_schema::invocation::Invocation;
use tarn_ipc_schema::{Error, Rights};

/// Handles an invocation on the CNode capability `cnode`.
pub fn invoke(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    cnode: Cap,
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
        _ => Err(Error::IllegalOperation),
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
