//! The fuzzer's model of the object graph it built: every capability it
//! knows of (in its fuzz slots, or held by the kernel for a thread, a CPU
//! binding or a Vcpu), the derivation tree between them, and the objects
//! they name. It follows the kernel's rules (`kernel/src/object/mod.rs`):
//! a delete re-parents the deleted capability's children, a revoke deletes
//! every descendant, a counted object dies with its last capability and its
//! destructor lets go of what the kernel held for it, and a CPU binding ends
//! when its Cpu capability's parent goes, when any of its three held copies
//! goes, or when its Scheduler dies.

use alloc::vec::Vec;
use tarn_rt::abi::Rights;

/// What a capability names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Untyped,
    CNode,
    Tcb,
    Endpoint,
    Notification,
    Frame,
    VSpace,
    GuestSpace,
    Scheduler,
    Vcpu,
    Cpu,
    IrqHandler,
    IoPort,
}

impl Kind {
    /// Objects the kernel counts (`live_objects`): they die with their
    /// last capability.
    pub fn counted(self) -> bool {
        matches!(
            self,
            Kind::CNode
                | Kind::Tcb
                | Kind::Endpoint
                | Kind::Notification
                | Kind::VSpace
                | Kind::GuestSpace
                | Kind::Scheduler
                | Kind::Vcpu
        )
    }

    /// Capabilities `CNodeCopy`/`CNodeMint` may derive (and IPC transfer).
    pub fn copyable(self) -> bool {
        !matches!(self, Kind::Untyped | Kind::IrqHandler)
    }
}

/// Where a capability lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    /// A fuzz slot (its index in the driver's CNode).
    Slot(u64),
    /// Slot `index` (0 CSpace, 1 VSpace, 2 IPC buffer, 3 fault endpoint)
    /// of the TCB object `tcb`.
    TcbSlot { tcb: usize, index: u8 },
    /// CPU `cpu`'s binding record: role 0 Cpu, 1 ring, 2 notification.
    Binding { cpu: usize, role: u8 },
    /// The GuestSpace slot of Vcpu object `vcpu`.
    VcpuSpace { vcpu: usize },
    /// The register-page slot of Vcpu object `vcpu`.
    VcpuPage { vcpu: usize },
    /// The driver's run slot: a copy of the capability the vCPU runner
    /// invokes during a run. The runner acts while the driver goes on
    /// changing the graph; through a fuzz slot it could invoke whatever
    /// the driver had put there meanwhile (an endpoint: IPC, not an
    /// invocation), so it names a slot the driver fills only between runs.
    Runner,
}

/// One capability.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    pub loc: Loc,
    pub obj: usize,
    /// The node it was derived from; `None` if that is outside the model.
    pub parent: Option<usize>,
    /// Whether, when `parent` is `None`, its real parent descends from the
    /// arena (so revoking the arena deletes it).
    pub under_arena: bool,
    pub rights: Rights,
    pub badge: u64,
    /// Mapped (a frame capability maps at most once).
    pub mapped: bool,
}

/// One object.
#[derive(Clone, Copy, Debug)]
pub struct Obj {
    pub kind: Kind,
    /// Untyped: base and log2 size, watermark. Frame: physical address.
    pub phys: u64,
    pub size_bits: u64,
    pub watermark: u64,
    /// Cpu: index. IrqHandler: IRQ.
    pub index: u64,
    /// A sentinel frame: mapped in the driver at `vaddr` through node
    /// `sentinel_node`, filled with a pattern, never given to anything
    /// that writes.
    pub sentinel: bool,
    pub vaddr: u64,
    pub sentinel_node: Option<usize>,
    /// Tcb (graph thread): resumed at least once since configured.
    pub resumed: bool,
    /// Vcpu: bound to the vCPU actor.
    pub bound_to_actor: bool,
    pub live: bool,
}

impl Obj {
    pub fn new(kind: Kind) -> Obj {
        Obj {
            kind,
            phys: 0,
            size_bits: 0,
            watermark: 0,
            index: 0,
            sentinel: false,
            vaddr: 0,
            sentinel_node: None,
            resumed: false,
            bound_to_actor: false,
            live: true,
        }
    }
}

/// The model.
pub struct Model {
    pub nodes: Vec<Option<Node>>,
    pub objs: Vec<Obj>,
    /// Fuzz slot index -> node.
    pub slots: Vec<Option<usize>>,
    /// First fuzz slot's index in the driver's CNode.
    pub first_slot: u64,
    /// Per CPU: the Scheduler object it is bound to.
    pub bindings: Vec<Option<usize>>,
    /// Objects the vCPU actor's thread is bound to (a Vcpu), the receiver
    /// actor waits on, and the Scheduler that adopted the dispatch actor.
    pub actor_vcpu: Option<usize>,
    pub receiver_on: Option<usize>,
    pub adopted_by: Option<usize>,
    /// Objects destroyed so far, by kind (for the summary).
    pub destroyed: u64,
    /// Entries of `nodes` and `objs` free for reuse (a deleted capability,
    /// a destroyed object): the model stays as large as the graph, however
    /// long the run.
    free_nodes: Vec<usize>,
    free_objs: Vec<usize>,
}

impl Model {
    pub fn new(first_slot: u64, slots: u64, cpus: usize) -> Model {
        Model {
            nodes: Vec::new(),
            objs: Vec::new(),
            slots: alloc::vec![None; slots as usize],
            first_slot,
            bindings: alloc::vec![None; cpus],
            actor_vcpu: None,
            receiver_on: None,
            adopted_by: None,
            destroyed: 0,
            free_nodes: Vec::new(),
            free_objs: Vec::new(),
        }
    }

    /// Adds an object; give it a capability (`add`) before the next
    /// `collect`, which destroys objects nothing names.
    pub fn add_obj(&mut self, obj: Obj) -> usize {
        if let Some(id) = self.free_objs.pop() {
            self.objs[id] = obj;
            return id;
        }
        self.objs.push(obj);
        self.objs.len() - 1
    }

    /// The fuzz slot index (0-based) of driver slot `cptr`.
    pub fn index(&self, cptr: u64) -> usize {
        (cptr - self.first_slot) as usize
    }

    pub fn cptr(&self, index: usize) -> u64 {
        self.first_slot + index as u64
    }

    pub fn at(&self, index: usize) -> Option<usize> {
        self.slots[index]
    }

    pub fn node(&self, node: usize) -> Node {
        self.nodes[node].expect("a live node")
    }

    pub fn obj_of(&self, index: usize) -> Option<(usize, Obj)> {
        self.slots[index].map(|n| {
            let obj = self.node(n).obj;
            (obj, self.objs[obj])
        })
    }

    /// Adds a node at `loc`.
    pub fn add(&mut self, loc: Loc, obj: usize, parent: Option<usize>, rights: Rights) -> usize {
        let badge = parent.map_or(0, |p| self.node(p).badge);
        let node = Node {
            loc,
            obj,
            parent,
            under_arena: false,
            rights,
            badge,
            mapped: false,
        };
        let id = match self.free_nodes.pop() {
            Some(id) => {
                self.nodes[id] = Some(node);
                id
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        };
        if let Loc::Slot(cptr) = loc {
            let index = self.index(cptr);
            debug_assert!(self.slots[index].is_none());
            self.slots[index] = Some(id);
        }
        id
    }

    pub fn children(&self, node: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| matches!(self.nodes[n], Some(c) if c.parent == Some(node)))
            .collect()
    }

    pub fn descendants(&self, node: usize) -> Vec<usize> {
        // Parents before their children.
        let mut out = self.children(node);
        let mut next = 0;
        while next < out.len() {
            let more = self.children(out[next]);
            out.extend(more);
            next += 1;
        }
        out
    }

    pub fn find(&self, loc: Loc) -> Option<usize> {
        (0..self.nodes.len()).find(|&n| matches!(self.nodes[n], Some(x) if x.loc == loc))
    }

    /// Deletes one capability (the kernel's `delete_one` and everything it
    /// sets off, then the destructors of objects left without capabilities).
    pub fn delete(&mut self, node: usize) {
        self.delete_one(node);
        self.collect();
    }

    /// Deletes every descendant of `node` (the kernel's revoke); an
    /// untyped's watermark returns to 0.
    pub fn revoke(&mut self, node: usize) {
        // Deepest first (the order `descendants` finds them in, reversed,
        // deletes every child before its parent), as the kernel's leaf walk.
        let mut doomed = self.descendants(node);
        doomed.reverse();
        for n in doomed {
            self.delete_one(n);
        }
        self.collect();
        let obj = self.node(node).obj;
        if self.objs[obj].kind == Kind::Untyped {
            self.objs[obj].watermark = 0;
        }
    }

    fn delete_one(&mut self, node: usize) {
        let Some(n) = self.nodes[node] else {
            return;
        };
        // The Cpu capability that bound a CPU (parent of the record's copy).
        if self.objs[n.obj].kind == Kind::Cpu {
            let cpu = self.objs[n.obj].index as usize;
            if let Some(record) = self.find(Loc::Binding { cpu, role: 0 }) {
                if self.node(record).parent == Some(node) {
                    self.unbind(cpu);
                }
            }
        }
        let Some(n) = self.nodes[node] else {
            return;
        };
        let under_arena = if n.parent.is_none() {
            n.under_arena
        } else {
            false
        };
        for child in self.children(node) {
            let c = self.nodes[child].as_mut().expect("child");
            c.parent = n.parent;
            if n.parent.is_none() {
                c.under_arena = under_arena;
            }
        }
        self.nodes[node] = None;
        self.free_nodes.push(node);
        if let Loc::Slot(cptr) = n.loc {
            let index = self.index(cptr);
            self.slots[index] = None;
        }
        if self.objs[n.obj].sentinel_node == Some(node) {
            self.objs[n.obj].sentinel_node = None;
        }
        if let Loc::Binding { cpu, .. } = n.loc {
            self.unbind(cpu);
        }
    }

    /// Ends CPU `cpu`'s binding: the record's three copies go.
    pub fn unbind(&mut self, cpu: usize) {
        if self.bindings[cpu].take().is_none() {
            return;
        }
        for role in 0..3 {
            if let Some(record) = self.find(Loc::Binding { cpu, role }) {
                self.delete_one(record);
            }
        }
    }

    /// Runs the destructor of every counted object left without a
    /// capability (iteratively, as the kernel's zombie list).
    pub fn collect(&mut self) {
        loop {
            let mut naming = alloc::vec![0u32; self.objs.len()];
            for n in self.nodes.iter().flatten() {
                naming[n.obj] += 1;
            }
            let Some(dead) = (0..self.objs.len()).find(|&o| self.objs[o].live && naming[o] == 0)
            else {
                return;
            };
            self.objs[dead].live = false;
            self.free_objs.push(dead);
            if self.objs[dead].kind.counted() {
                self.destroyed += 1;
            }
            match self.objs[dead].kind {
                Kind::Tcb => {
                    for index in 0..4 {
                        if let Some(held) = self.find(Loc::TcbSlot { tcb: dead, index }) {
                            self.delete_one(held);
                        }
                    }
                }
                Kind::Scheduler => {
                    for cpu in 0..self.bindings.len() {
                        if self.bindings[cpu] == Some(dead) {
                            self.unbind(cpu);
                        }
                    }
                    if self.adopted_by == Some(dead) {
                        self.adopted_by = None;
                    }
                }
                Kind::Vcpu => {
                    for loc in [Loc::VcpuSpace { vcpu: dead }, Loc::VcpuPage { vcpu: dead }] {
                        if let Some(held) = self.find(loc) {
                            self.delete_one(held);
                        }
                    }
                    if self.actor_vcpu == Some(dead) {
                        self.actor_vcpu = None;
                    }
                }
                Kind::Endpoint if self.receiver_on == Some(dead) => {
                    self.receiver_on = None;
                }
                _ => {}
            }
        }
    }

    /// Live nodes (capabilities) and live counted objects.
    pub fn counts(&self) -> (u64, u64) {
        let caps = self.nodes.iter().flatten().count() as u64;
        let objects = self
            .objs
            .iter()
            .filter(|o| o.live && o.kind.counted())
            .count() as u64;
        (caps, objects)
    }

    /// Fuzz slots holding a capability to a `kind` object (index list).
    pub fn slots_of(&self, kind: Kind) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| matches!(self.obj_of(i), Some((_, o)) if o.kind == kind))
            .collect()
    }

    pub fn empty_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].is_none())
            .collect()
    }

    /// Whether `node` descends (through the model) from a node under the
    /// arena: revoking the arena deletes it.
    pub fn under_arena(&self, node: usize) -> bool {
        let mut n = self.node(node);
        while let Some(parent) = n.parent {
            n = self.node(parent);
        }
        n.under_arena
    }
}
