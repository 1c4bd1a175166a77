//! The whole-system invariant check behind `MachineCheckInvariants`. It
//! proves the rule of [`crate::object`] (every reference the kernel keeps is
//! read through a capability the kernel holds, or cleared when its target
//! goes) on the live system, all of it, with no bound on its size:
//!
//! 1. The derivation tree, walked from its root ([`held::root`]): every link
//!    consistent, every capability in it reached once, as many as the
//!    kernel counts.
//! 2. Every slot of every live holder (CNodes, TCBs, Vcpus, the kernel's
//!    binding records): each capability there is one the walk reached, each
//!    one the walk reached lies in a live holder of the kind its slot names,
//!    and every empty slot is wholly empty.
//! 3. Every refcounted object: its header's type is its capabilities' type,
//!    its count the number of capabilities naming it; their number is the
//!    kernel's live-object count; no destructor is pending.
//! 4. Memory: no two kernel objects overlap, no frame overlaps a kernel
//!    object, and nothing live lies in memory an untyped capability could
//!    retype (its part above the watermark).
//! 5. Every kernel reference, by the module that owns it (`check` in `tcb`,
//!    `ipc`, `dispatch`, `sched`, `vcpu`, `devices`, `memory`): it names a
//!    live object of the right type found above, links that come in pairs
//!    agree, and every list holds exactly the threads whose state says so.
//!
//! The lists it builds take heap (about 30 bytes per capability); if the
//! heap cannot hold them the check fails and says so rather than check part.

extern crate alloc;

use crate::arch::lock::KernelGuard;
use crate::arch::objmem;
use crate::object::held::{self, BindingRole, Holder};
use crate::object::{self, read_cap, tcb, Cap, ObjectHeader, Slot, SLOT_BYTES, STATS};
use alloc::vec::Vec;
use tarn_ipc_schema::invocation::ThreadState;
use tarn_ipc_schema::ObjectType;
use tarn_kernel_core::cdt::{self, TreeError};

/// A broken invariant: what, and where (an address, or a count).
#[derive(Clone, Copy, Debug)]
pub struct Violation {
    /// What does not hold.
    pub what: &'static str,
    /// The address (or number) it was found at.
    pub at: u64,
}

/// The result of a check.
pub type Verdict<T = ()> = Result<T, Violation>;

/// Fails with `what` at `at` unless `holds`.
pub fn ensure(holds: bool, what: &'static str, at: u64) -> Verdict {
    if holds {
        Ok(())
    } else {
        Err(Violation { what, at })
    }
}

/// What a whole-system check counted (beyond the kernel's own object and
/// capability counts, which it proved right).
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// Bytes every untyped capability can still retype (its size minus its
    /// watermark, summed; a child region counts in the child only).
    pub free_untyped_bytes: u64,
}

/// Every live object the walk found, by type, sorted by address (for the
/// modules' reference checks).
#[derive(Default)]
pub struct Live {
    /// TCBs.
    pub tcbs: Vec<u64>,
    /// Endpoints.
    pub endpoints: Vec<u64>,
    /// Notifications.
    pub notifications: Vec<u64>,
    /// Schedulers.
    pub schedulers: Vec<u64>,
    /// Vcpus (object address).
    pub vcpus: Vec<u64>,
    /// CNodes: (address, log2 slots).
    pub cnodes: Vec<(u64, u8)>,
    /// VSpaces and GuestSpaces: (root, log2 bytes, whether a GuestSpace).
    pub spaces: Vec<(u64, u8, bool)>,
    /// Frames: (address, bytes).
    pub frames: Vec<(u64, u64)>,
    /// The line of every IrqHandler capability (each once, if all is well).
    pub irq_handlers: Vec<u8>,
}

impl Live {
    /// Whether `tcb` is a live TCB.
    pub fn is_tcb(&self, tcb: u64) -> bool {
        self.tcbs.binary_search(&tcb).is_ok()
    }

    /// Whether `endpoint` is a live endpoint.
    pub fn is_endpoint(&self, endpoint: u64) -> bool {
        self.endpoints.binary_search(&endpoint).is_ok()
    }

    /// Whether `ntfn` is a live notification.
    pub fn is_notification(&self, ntfn: u64) -> bool {
        self.notifications.binary_search(&ntfn).is_ok()
    }

    /// Whether `scheduler` is a live Scheduler.
    pub fn is_scheduler(&self, scheduler: u64) -> bool {
        self.schedulers.binary_search(&scheduler).is_ok()
    }

    /// Whether `vcpu` is a live Vcpu.
    pub fn is_vcpu(&self, vcpu: u64) -> bool {
        self.vcpus.binary_search(&vcpu).is_ok()
    }

    /// The live VSpace or GuestSpace whose root is `root`: (log2 bytes,
    /// whether a GuestSpace).
    pub fn space(&self, root: u64) -> Option<(u8, bool)> {
        let i = self.spaces.partition_point(|s| s.0 < root);
        self.spaces
            .get(i)
            .filter(|s| s.0 == root)
            .map(|s| (s.1, s.2))
    }

    /// Whether `slot` is a slot (not slot 0) of a live CNode.
    fn in_cnode(&self, slot: u64) -> bool {
        let i = self.cnodes.partition_point(|c| c.0 <= slot);
        i > 0 && {
            let (phys, size_bits) = self.cnodes[i - 1];
            slot > phys && slot < phys + (SLOT_BYTES << size_bits)
        }
    }
}

/// Appends `item`, failing (rather than aborting) when the heap is full.
pub fn push<T>(list: &mut Vec<T>, item: T) -> Verdict {
    list.try_reserve(1).map_err(|_| Violation {
        what: "the kernel heap cannot hold the invariant check's lists",
        at: list.len() as u64,
    })?;
    list.push(item);
    Ok(())
}

fn sorted<T: Ord>(list: &mut Vec<T>) {
    list.sort_unstable();
    list.dedup();
}

fn tree_violation(error: TreeError) -> Violation {
    let (what, at) = match error {
        TreeError::SiblingMismatch(s) => ("derivation tree: one-way sibling link", s),
        TreeError::ParentMismatch(s) => ("derivation tree: a child names another parent", s),
        TreeError::FirstChildHasPrev(s) => {
            ("derivation tree: a first child has a sibling before it", s)
        }
        TreeError::Cycle(s) => ("derivation tree: a cycle", s),
        TreeError::InvalidLink(s) => ("derivation tree: a link to memory that is not a slot", s),
        TreeError::TooManySlots => (
            "derivation tree: more capabilities than the kernel counts",
            0,
        ),
    };
    Violation { what, at }
}

/// Whether every word is zero. Word by word: comparing the arrays with
/// `==` compiles to a call of the byte-wise `memcmp`, about 200
/// instructions a slot, which made the scan of every CNode slot below most
/// of the check's cost.
fn all_zero(words: &[u64]) -> bool {
    words.iter().fold(0, |any, &word| any | word) == 0
}

/// Whether a slot's words and links are all zero.
fn wholly_empty(slot: &Slot) -> bool {
    all_zero(&slot.words) && all_zero(&slot.links)
}

/// Checks everything (see the module documentation).
pub fn check(guard: &mut KernelGuard) -> Verdict<Report> {
    let (live_caps, live_objects, zombies) = {
        let stats = STATS.get(guard);
        (stats.live_caps, stats.live_objects, stats.zombies_pending())
    };
    ensure(!zombies, "a destroyed object's destructor never ran", 0)?;

    // 1. The derivation tree.
    let mut slots: Vec<u64> = Vec::new();
    slots
        .try_reserve(live_caps as usize)
        .map_err(|_| Violation {
            what: "the kernel heap cannot hold the invariant check's lists",
            at: live_caps,
        })?;
    let walked = cdt::walk(
        &object::Tree(guard),
        held::root(),
        live_caps,
        |slot| objmem::is_object_memory(slot, SLOT_BYTES, SLOT_BYTES),
        |slot| slots.push(slot),
    )
    .map_err(tree_violation)?;
    ensure(
        walked == live_caps,
        "the derivation tree holds fewer capabilities than the kernel counts",
        walked,
    )?;

    // What the capabilities name.
    let mut live = Live::default();
    let mut counted: Vec<(u64, ObjectType)> = Vec::new();
    let mut free: Vec<(u64, u64)> = Vec::new();
    let mut free_untyped_bytes = 0u64;
    for &slot in &slots {
        let cap = read_cap(guard, slot);
        match cap {
            Cap::Null => {
                return Err(Violation {
                    what: "an empty slot in the derivation tree",
                    at: slot,
                })
            }
            Cap::Untyped {
                phys,
                size_bits,
                watermark,
            } => {
                ensure(
                    (12..=40).contains(&size_bits) && watermark <= 1 << size_bits,
                    "an untyped capability's watermark lies outside it",
                    slot,
                )?;
                let end = phys + (1u64 << size_bits);
                free_untyped_bytes += end - (phys + watermark);
                if phys + watermark < end {
                    push(&mut free, (phys + watermark, end))?;
                }
            }
            Cap::CNode { phys, size_bits } => push(&mut live.cnodes, (phys, size_bits))?,
            Cap::Tcb { phys } => push(&mut live.tcbs, phys)?,
            Cap::Endpoint { phys, .. } => push(&mut live.endpoints, phys)?,
            Cap::Notification { phys, .. } => push(&mut live.notifications, phys)?,
            Cap::Scheduler { phys } => push(&mut live.schedulers, phys)?,
            Cap::Vcpu { phys } => push(&mut live.vcpus, phys)?,
            Cap::VSpace { phys, size_bits } => push(&mut live.spaces, (phys, size_bits, false))?,
            Cap::GuestSpace { phys, size_bits } => push(&mut live.spaces, (phys, size_bits, true))?,
            Cap::Frame { phys, large, .. } => {
                push(&mut live.frames, (phys, if large { 2 << 20 } else { 4096 }))?
            }
            Cap::IrqHandler { irq } => push(&mut live.irq_handlers, irq)?,
            Cap::IrqControl | Cap::IoPort { .. } | Cap::Machine | Cap::Cpu { .. } => {}
        }
        if let Some(named) = cap.counted_object() {
            push(&mut counted, (named.1, named.0))?;
        }
    }
    for list in [
        &mut live.tcbs,
        &mut live.endpoints,
        &mut live.notifications,
        &mut live.schedulers,
        &mut live.vcpus,
    ] {
        sorted(list);
    }
    sorted(&mut live.cnodes);
    sorted(&mut live.spaces);
    sorted(&mut live.frames);
    live.irq_handlers.sort_unstable();

    // 4 (first, so that everything below reads only object memory): where
    // objects lie.
    check_memory(&live, &free)?;

    // 3. Refcounted objects.
    counted.sort_unstable_by_key(|named| (named.0, named.1 as u64));
    let mut objects = 0u64;
    for run in counted.chunk_by(|a, b| a.0 == b.0) {
        let (header, object_type) = run[0];
        ensure(
            run.iter().all(|named| named.1 == object_type),
            "capabilities of two types name one object",
            header,
        )?;
        let h = *objmem::object::<ObjectHeader>(guard, header);
        ensure(
            h.object_type() == Some(object_type),
            "a capability names memory that holds no object of its type",
            header,
        )?;
        ensure(
            h.refs == run.len() as u64,
            "an object's reference count differs from the capabilities naming it",
            header,
        )?;
        objects += 1;
    }
    ensure(
        objects == live_objects,
        "the kernel's live-object count differs from the objects capabilities name",
        objects,
    )?;

    // 2. Every capability lies in a live holder of its slot's kind...
    for &slot in &slots {
        let inside = match held::holder_of(guard, slot) {
            Some(Holder::CNode) => live.in_cnode(slot),
            Some(Holder::Tcb { index }) => {
                live.is_tcb(slot.wrapping_sub(tcb::slot_address(0, usize::from(index))))
            }
            Some(Holder::VcpuSpace) => live.is_vcpu(slot.wrapping_sub(crate::vcpu::space_slot(0))),
            Some(Holder::VcpuPage) => live.is_vcpu(slot.wrapping_sub(crate::vcpu::page_slot(0))),
            Some(Holder::Binding { cpu, role }) => slot == held::binding(usize::from(cpu), role),
            Some(Holder::Root) | None => false,
        };
        ensure(
            inside,
            "a capability lies outside every live object that holds capabilities",
            slot,
        )?;
    }
    // ...and every capability in a live holder is in the tree.
    let mut found = 0u64;
    let mut scan = |guard: &mut KernelGuard, slot: u64, holder: Holder| -> Verdict {
        // Read in place, and the holder word compared with the holder's
        // encoding (one-to-one: a word decodes to a holder exactly when it
        // is that holder's encoding); this runs for every slot of every
        // CNode.
        let s = objmem::object::<Slot>(guard, slot);
        ensure(
            s.holder == holder.encode(),
            "a slot names the wrong holder",
            slot,
        )?;
        if !all_zero(&s.words) {
            found += 1;
        } else {
            ensure(
                wholly_empty(s),
                "an empty slot keeps derivation links",
                slot,
            )?;
        }
        Ok(())
    };
    for &(phys, size_bits) in &live.cnodes {
        for index in 1..1u64 << size_bits {
            scan(guard, phys + index * SLOT_BYTES, Holder::CNode)?;
        }
    }
    for &thread in &live.tcbs {
        for index in 0..4u8 {
            let slot = tcb::slot_address(thread, usize::from(index));
            scan(guard, slot, Holder::Tcb { index })?;
        }
    }
    for &vcpu in &live.vcpus {
        scan(guard, crate::vcpu::space_slot(vcpu), Holder::VcpuSpace)?;
        scan(guard, crate::vcpu::page_slot(vcpu), Holder::VcpuPage)?;
    }
    for cpu in 0..crate::arch::percpu::MAX_CPUS {
        for role in [
            BindingRole::Cpu,
            BindingRole::Ring,
            BindingRole::Notification,
        ] {
            let holder = Holder::Binding {
                cpu: cpu as u8,
                role,
            };
            scan(guard, held::binding(cpu, role), holder)?;
        }
    }
    let root = *objmem::object::<Slot>(guard, held::root());
    ensure(
        Holder::decode(root.holder) == Some(Holder::Root) && all_zero(&root.words),
        "the derivation tree's root holds a capability",
        held::root(),
    )?;
    ensure(
        found == live_caps,
        "a capability lies outside the derivation tree",
        found,
    )?;

    // 5. Every kernel reference; the lists that hold threads hold exactly
    // the threads whose state says they are in one.
    let counts = check_threads(guard, &live)?;
    let queued = crate::ipc::check(guard, &live)?;
    ensure(
        queued == counts.blocked,
        "the threads in endpoint and notification queues differ from the threads blocked on them",
        queued,
    )?;
    let (adopted, confined, entries) = crate::dispatch::check(guard, &live)?;
    ensure(
        confined == counts.confined,
        "the threads in Schedulers' confined lists differ from the confined threads",
        confined,
    )?;
    ensure(
        adopted == counts.adopted,
        "the threads in Schedulers' lists differ from the adopted threads",
        adopted,
    )?;
    ensure(
        entries == counts.entries,
        "the dispatch queues' entries differ from the threads that say they are queued",
        entries,
    )?;
    let (run_queued, timeouts) = crate::sched::check(guard, &live)?;
    ensure(
        run_queued == counts.run_queued,
        "the system FIFOs differ from the threads that say they are queued",
        run_queued,
    )?;
    ensure(
        timeouts == counts.timeouts,
        "the timeout lists differ from the threads with a deadline",
        timeouts,
    )?;
    crate::vcpu::check(guard, &live)?;
    crate::devices::check_irqs(guard, &live)?;
    object::memory::check_spaces(guard, &live)?;
    Ok(Report { free_untyped_bytes })
}

/// Where each live kernel object lies: (start, end).
fn object_ranges(live: &Live) -> impl Iterator<Item = (u64, u64)> + '_ {
    let tcb_bytes = 1u64 << tarn_ipc_schema::TCB_SIZE_BITS;
    let vcpu_bytes = 1u64 << tarn_ipc_schema::VCPU_SIZE_BITS;
    let ipc_bytes = tarn_ipc_schema::IPC_OBJECT_BYTES;
    let scheduler_bytes = 1u64 << tarn_ipc_schema::SCHEDULER_SIZE_BITS;
    live.tcbs
        .iter()
        .map(move |&p| (p, p + tcb_bytes))
        .chain(live.vcpus.iter().map(move |&p| (p, p + vcpu_bytes)))
        .chain(
            live.endpoints
                .iter()
                .chain(&live.notifications)
                .map(move |&p| (p, p + ipc_bytes)),
        )
        .chain(
            live.schedulers
                .iter()
                .map(move |&p| (p, p + scheduler_bytes)),
        )
        .chain(
            live.cnodes
                .iter()
                .map(|&(p, bits)| (p, p + (SLOT_BYTES << bits))),
        )
        .chain(
            live.spaces
                .iter()
                .map(|&(p, bits, _)| (p, p + (1u64 << bits))),
        )
}

/// Memory: every object in object memory, no two kernel objects
/// overlapping, no frame over a kernel object, nothing in retypable memory.
fn check_memory(live: &Live, free: &[(u64, u64)]) -> Verdict {
    const FREE: u8 = 0;
    const FRAME: u8 = 1;
    const OBJECT: u8 = 2;
    let mut ranges: Vec<(u64, u8, u64)> = Vec::new();
    for (start, end) in object_ranges(live) {
        ensure(
            objmem::is_object_memory(start, end - start, 64),
            "a capability names an object outside object memory",
            start,
        )?;
        push(&mut ranges, (start, OBJECT, end))?;
    }
    for &(start, bytes) in &live.frames {
        push(&mut ranges, (start, FRAME, start + bytes))?;
    }
    for &(start, end) in free {
        push(&mut ranges, (start, FREE, end))?;
    }
    ranges.sort_unstable();
    // The furthest end seen so far of each kind.
    let mut reach = [0u64; 3];
    for &(start, kind, end) in &ranges {
        let (what, blocked) = match kind {
            FREE => (
                "a live object or frame lies in memory an untyped capability can retype",
                reach[FREE as usize]
                    .max(reach[FRAME as usize])
                    .max(reach[OBJECT as usize]),
            ),
            FRAME => (
                "a frame overlaps a kernel object or retypable memory",
                reach[FREE as usize].max(reach[OBJECT as usize]),
            ),
            _ => (
                "a kernel object overlaps another object, a frame or retypable memory",
                reach[FREE as usize]
                    .max(reach[FRAME as usize])
                    .max(reach[OBJECT as usize]),
            ),
        };
        ensure(start >= blocked, what, start)?;
        reach[kind as usize] = reach[kind as usize].max(end);
    }
    Ok(())
}

/// How many live threads say they are in each kind of list.
#[derive(Default)]
struct ThreadCounts {
    /// Blocked on an endpoint or a notification.
    blocked: u64,
    /// Adopted by a Scheduler.
    adopted: u64,
    /// Confined to a live Scheduler.
    confined: u64,
    /// In a dispatch queue.
    entries: u64,
    /// In a system FIFO.
    run_queued: u64,
    /// With a deadline.
    timeouts: u64,
}

/// Each live thread's own references ([`tcb::check`]), and what lists it
/// says it is in.
fn check_threads(guard: &mut KernelGuard, live: &Live) -> Verdict<ThreadCounts> {
    let mut counts = ThreadCounts::default();
    for &thread in &live.tcbs {
        tcb::check(guard, thread, live)?;
        let t = *tcb::ctl(guard, thread);
        let blocked = [
            ThreadState::BlockedOnSend,
            ThreadState::BlockedOnReceive,
            ThreadState::BlockedOnNotification,
        ];
        counts.blocked += u64::from(blocked.iter().any(|&s| t.state == s as u64));
        counts.adopted += u64::from(t.scheduler != 0);
        counts.confined += u64::from(t.confined != 0 && t.confined != crate::dispatch::ORPHANED);
        counts.entries += u64::from(t.entry_cpu != 0);
        counts.run_queued += u64::from(t.queued != 0);
        counts.timeouts += u64::from(t.deadline != 0);
    }
    Ok(counts)
}
