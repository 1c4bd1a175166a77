//! Cells: everything the manager builds and later takes back is built in
//! one. A cell is a block of the manager's cell memory (a buddy allocator
//! over every byte the root task had not used when the manager started,
//! `tarn_rt::buddy`) that all its objects come from, and the manager's
//! slots it used, recorded. Emptying a cell revokes its block (every object
//! and capability built in it goes), clears and frees the slots, and gives
//! the block back, where it merges with its free buddy: freed memory serves
//! any later need, whatever its size. A domain is a cell (4 MiB, 8 MiB for
//! a VM; a Linux guest's is sized from its memory), a scheduler server
//! another (8 MiB: its process, memory and endpoint), a pool's `Scheduler`
//! a third (4 KiB). So a pool created and deleted, a domain created and
//! destroyed, or a server replaced leave the kernel's objects and
//! capabilities, the root task's free slots, free memory and heap exactly
//! as they were (the soak scenario checks it).

use crate::manager::Pools;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use tarn_rt::abi::{CPtr, Error, Rights};
use tarn_rt::layout::slot;
use tarn_rt::{invoke, KernelUntyped, Resources};

/// The memory and the slots a domain was built in, taken back whole when
/// it goes: the untyped region every one of its objects came from (revoking
/// it destroys them all and empties it for the next domain), and the
/// manager's slots that held its capabilities.
pub(crate) struct Cell {
    pub(crate) untyped: CPtr,
    pub(crate) phys: u64,
    /// Its size (log2 bytes): `list`'s Mem of a domain.
    pub(crate) bits: u64,
    pub(crate) slots: Vec<CPtr>,
}

impl Pools {
    /// Builds something in a cell: a block of cell memory of its own that
    /// every object `build` creates comes from, and the manager's slots it
    /// used, recorded. On error the cell is emptied again and nothing is
    /// left behind.
    pub(crate) fn build_in_cell<T>(
        &mut self,
        res: &mut Resources,
        bits: u64,
        build: impl FnOnce(&mut Resources) -> Result<T, Error>,
    ) -> Result<(T, Cell), Error> {
        let block = self.memory.alloc(&mut KernelUntyped(res), bits)?;
        let (untyped, phys) = (block.cptr, block.phys);
        let slots_before = res.slots.clone();
        let mut memory = tarn_rt::UntypedAllocator::new();
        memory.add(untyped, phys, bits);
        let root_memory = core::mem::replace(&mut res.untyped, memory);
        let built = build(res);
        res.untyped = root_memory;
        let cell = Cell {
            untyped,
            phys,
            bits,
            slots: res.slots.handed_out_since(&slots_before),
        };
        match built {
            Ok(value) => Ok((value, cell)),
            Err(error) => {
                self.empty_cell(res, cell);
                Err(error)
            }
        }
    }

    /// Takes a cell back: revoking its untyped destroys every object built
    /// in it (and every capability to them, the domain's own included) and
    /// empties it; the slots it used are cleared and freed.
    pub(crate) fn empty_cell(&mut self, res: &mut Resources, cell: Cell) {
        let _ = invoke::cnode_revoke(slot::ROOT_CNODE, cell.untyped);
        for &s in &cell.slots {
            let _ = invoke::cnode_delete(slot::ROOT_CNODE, s);
            res.slots.free(s);
        }
        if let Err(error) = self.memory.free(&mut KernelUntyped(res), cell.untyped) {
            crate::output::say_line(&format!(
                "error: pool manager: cell at {:#x} not taken back: {error:?}",
                cell.phys
            ));
        }
    }

    /// Bytes of cell memory free.
    pub fn free_cell_bytes(&self) -> u64 {
        self.memory.free_bytes()
    }
}

/// Gives an emptied map's last node back to the heap (a `BTreeMap` keeps
/// it), so the heap in use is the same whenever the manager holds the same
/// things (the soak test compares it exactly).
/// A copy of the manager's fault endpoint `source` badged `badge`, in a
/// new slot of `res` (inside a cell's build, the cell records it): the
/// fault endpoint a domain's or a server's threads report to.
pub(crate) fn mint_fault_endpoint(
    res: &mut Resources,
    source: CPtr,
    badge: u64,
) -> Result<CPtr, Error> {
    let fault = res.alloc_slot()?;
    invoke::cnode_mint(res.cnode, fault, res.cnode, source, Rights::ALL, badge)?;
    Ok(fault)
}

pub(crate) fn release_if_empty<K, V>(map: &mut BTreeMap<K, V>) {
    if map.is_empty() {
        *map = BTreeMap::new();
    }
}
