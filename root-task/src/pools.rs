//! The pool manager at work: it carries out the [`Action`]s of
//! [`tarn_pool_manager::pools::PoolManager`] against the kernel and the
//! scheduler servers.
//!
//! - **Pools.** Each active pool has a `Scheduler` object the manager creates
//!   and keeps (the original capability), and a scheduler server process
//!   of its policy holding a copy of it: the boot module `policy-NAME`, the
//!   config archive's `servers/NAME`, or one loaded over the control channel
//!   (`sched=NAME`). A new server must answer `Describe` with that name. The manager holds every `Cpu`
//!   capability; a server gets a CPU by `AddCpu` (a derived copy travels with
//!   the message) and loses it by `RemoveCpu`, a negotiation: the server
//!   moves its threads off and answers, or the deadline passes. Either way
//!   the manager then revokes its own `Cpu` capability, which deletes every
//!   copy (and so unbinds the CPU, if the server had not).
//! - **Domains.** A domain is a process built from a boot module (`spin`),
//!   started suspended, handed to its pool's server by `AddThread` (its TCB
//!   capability travels with the message), then resumed: it never runs
//!   outside its pool. Its run time is read from the kernel's accounting
//!   through the pool's `Scheduler`.
//! - **Failure.** A server that faults, or does not answer a request within
//!   [`REQUEST_DEADLINE_NS`] (5 s of kernel time: generous, because an
//!   emulator with more vCPUs than host cores can stall a CPU for long), is
//!   replaced: the manager revokes the server's `Scheduler` and `Cpu`
//!   copies, starts a new server on the *same*
//!   `Scheduler`, hands it the pool's CPUs and re-adopts every domain (the
//!   kernel keeps them adopted meanwhile). A live policy change
//!   (`cpupool-sched`) is the same hand-over to a server of another policy.
//!   Each server is confined to its pool's `Scheduler` before it first runs
//!   (`TcbConfine`: its threads run only on the pool's CPUs); one whose
//!   thread the kernel's watchdog stopped (a `WATCHDOG` fault: it spun) goes
//!   to the fallback policy at once instead of being replaced by its own.
//!
//! Requests to a server go through a courier thread, so the manager can
//! give up waiting after the deadline while the courier stays blocked in
//! the call. Couriers are the manager's own threads, reused for every
//! server; one left blocked by a hung server is released when that server's
//! cell is emptied (the kernel ends the call), so their number stays at one
//! plus the calls hanging at once.
//!
//! Everything that is built and later taken back is built in a cell: a
//! block of the manager's cell memory (a buddy allocator over every byte
//! the root task had not used when the manager started, `tarn_rt::buddy`)
//! that all its objects come from, and the manager's slots it used,
//! recorded. Emptying a cell revokes its block (every object and
//! capability built in it goes), clears and frees the slots, and gives the
//! block back, where it merges with its free buddy: freed memory serves
//! any later need, whatever its size. A domain is a cell (4 MiB, 8 MiB for a
//! VM), a scheduler server another (8 MiB: its process, memory and
//! endpoint), a pool's `Scheduler` a third (4 KiB). So a pool created and
//! deleted, a domain created and destroyed, or a server replaced leave the
//! kernel's objects and capabilities, the root task's free slots, free
//! memory and heap exactly as they were (the soak scenario checks it).
//!
//! An activation that cannot start its server is undone whole
//! ([`Pools::activate`]): no pool stays active without a server.
//!
//! Not built yet: more than one vCPU per native domain, liveness probes
//! while idle (a hung server is noticed at its next request).

use alloc::borrow::Cow;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;
use tarn_pool_manager::pools::{
    Action, DomainId, DomainParams, PoolError, PoolId, PoolManager, PoolState, Sched,
    CONTROL_DOMAIN,
};
use tarn_rt::abi::boot::BootInfo;
use tarn_rt::abi::control::{self, ControlRequest};
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::sched_protocol::{
    self, Misbehaviour, SchedError, SchedReply, SchedRequest, LABEL, MAX_WORDS,
};
use tarn_rt::abi::{fault, CPtr, Error, ObjectType, Rights};
use tarn_rt::layout::slot;
use tarn_rt::{
    invoke, syscall, BuddyAllocator, CapGrant, KernelUntyped, Process, ProcessConfig, Resources,
    ThreadOptions, UntypedGrant,
};
use tarn_vmm::platform::{StopReason, VM_ENDED_LABEL};

/// Largest policy server ELF the control channel loads.
const MAX_LOADED_POLICY_BYTES: u32 = 1 << 20;
/// Boot modules named `policy-NAME` are the servers of policy `NAME`.
const POLICY_MODULE_PREFIX: &str = "policy-";
/// The policy a pool falls back to when its own policy's server cannot be
/// started or replaced.
pub const FALLBACK_POLICY: &str = "credit";
/// Most parameters of each kind a policy may declare (a server declaring
/// more is not believed).
const MAX_DECLARED_PARAMS: u32 = 64;
/// How long a server has to answer a request (virtual time).
pub const REQUEST_DEADLINE_NS: u64 = 5_000_000_000;
/// How long a server just started has to describe its policy: it has done
/// nothing else yet, so a server that takes longer is not serving.
pub const GREET_DEADLINE_NS: u64 = 500_000_000;
/// Where a server finds its request endpoint and the pool's `Scheduler`.
const SERVER_ENDPOINT_SLOT: u64 = 9;
const SERVER_SCHEDULER_SLOT: u64 = 11;
/// Where a server finds the manager's fault endpoint, badged for it (for
/// its agent threads).
const SERVER_FAULT_SLOT: u64 = 12;
/// Memory a server gets (log2 bytes).
const SERVER_MEMORY_BITS: u64 = 22;
/// Fault badges: which server or domain a fault message comes from.
const BADGE_SERVER: u64 = 1 << 32;
const BADGE_DOMAIN: u64 = 2 << 32;
const BADGE_ID_MASK: u64 = 0xFFFF_FFFF;
/// A server's fault badge also carries its serial number (bits 40..64),
/// so the fault of a server already replaced is not taken for its
/// successor's.
const BADGE_SERIAL_SHIFT: u32 = 40;
const BADGE_SERIAL_MASK: u64 = 0xFF_FFFF;
/// The images a native domain can be built from.
pub const DOMAIN_IMAGES: &[&str] = &["spin", "tenant"];
/// The guests a `type="hvm"` domain can run (the VMM's built-in guests).
pub const VM_GUESTS: &[&str] = &[
    "long64",
    "real16",
    "prot32",
    "idle16",
    "triple16",
    "storm16",
    "outside32",
];
/// Memory a VM domain's VMM gets (log2 bytes): guest RAM, its nested page
/// tables, the Vcpu.
const VMM_MEMORY_BITS: u64 = 20;
/// Page-table memory of a native domain (log2 bytes): its image, stack,
/// IPC buffer and start page take a dozen tables; zeroing and tearing down
/// the runtime's default 1 MiB was a sixth of a domain's creation.
const NATIVE_VSPACE_BITS: u64 = 16;
/// Main-thread stack of a native domain (pages).
const NATIVE_STACK_PAGES: u64 = 16;
/// Memory a native domain gets for objects of its own (log2 bytes).
const DOMAIN_MEMORY_BITS: u64 = 16;
/// The memory a domain is built in (log2 bytes): its process (image, stack,
/// page tables, CNode, TCB) and the memory it is given.
const NATIVE_CELL_BITS: u64 = 22;
const VM_CELL_BITS: u64 = 23;
/// The memory a scheduler server is built in (log2 bytes): its process, the
/// memory it is given and its endpoint.
const SERVER_CELL_BITS: u64 = 23;
/// The memory a pool's `Scheduler` object is made in (the smallest block).
const SCHEDULER_CELL_BITS: u64 = tarn_rt::buddy::MIN_BLOCK_BITS;
/// Memory for the manager's own lasting objects, made after it starts
/// (courier threads).
const ROOT_MEMORY_BITS: u64 = 20;

/// The kernel's clock (ns since boot, the time event rings carry), read
/// through the Machine capability.
#[derive(Clone, Copy)]
pub struct Clock;

impl Clock {
    /// Now, in µs.
    pub fn now_us(&self) -> u64 {
        invoke::machine_times(slot::MACHINE).map_or(0, |t| t.now_ns / 1000)
    }
}

/// Why a request to a server did not get an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// No answer within the deadline.
    Timeout,
    /// An earlier request is still unanswered.
    Unresponsive,
    /// The call itself failed (e.g. the server's endpoint is gone).
    Kernel(Error),
    /// The pool has no server.
    NoServer,
    /// Every courier waits for a server that never answered.
    NoCourier,
    /// The answer was not a reply of the protocol.
    Garbled,
}

/// A server's answer, owning its text (a [`SchedReply`] borrows it from
/// the message it was decoded from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Done.
    Ok,
    /// A thread's run time (ns).
    ThreadTime(u64),
    /// `key=value` text.
    Values(String),
    /// The policy's name and how many parameters it declares (domain, pool).
    Policy(String, u32, u32),
    /// One declared parameter.
    Param(ParamInfo),
    /// A parameter request refused, naming the key.
    Refused(String),
    /// Refused.
    Error(SchedError),
}

impl Answer {
    fn of(reply: SchedReply) -> Answer {
        match reply {
            SchedReply::Ok => Answer::Ok,
            SchedReply::ThreadTime { ran_ns } => Answer::ThreadTime(ran_ns),
            SchedReply::Values(text) => Answer::Values(String::from(text)),
            SchedReply::Policy {
                name,
                domain_params,
                pool_params,
            } => Answer::Policy(String::from(name), domain_params, pool_params),
            SchedReply::Param {
                name,
                range,
                default,
                help,
            } => Answer::Param(ParamInfo {
                name: String::from(name),
                range: String::from(range),
                default: String::from(default),
                help: String::from(help),
            }),
            SchedReply::Refused(text) => Answer::Refused(String::from(text)),
            SchedReply::Error(error) => Answer::Error(error),
        }
    }
}

/// A parameter a pool's policy declares (as its server describes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    /// Its key.
    pub name: String,
    /// The values it takes.
    pub range: String,
    /// Its default.
    pub default: String,
    /// One line of help.
    pub help: String,
}

/// What the manager and one courier share: the request, where it goes,
/// and the answer.
struct Mail {
    endpoint: CPtr,
    words: [u64; MAX_WORDS],
    count: usize,
    cap: CPtr,
    reply: Option<Result<Answer, LinkError>>,
}

/// A courier thread: it makes one call to a server at a time for the
/// manager, which waits for its answer with a deadline. Couriers are the
/// manager's own threads, reused for every server: one whose call a hung
/// server never answered is busy until that server's cell is emptied
/// (the kernel then ends the call with `ObjectDeleted`), so there are at
/// most as many as calls left hanging at once, plus one.
struct Courier {
    mail: Arc<Mutex<Mail>>,
    go: CPtr,
    done: CPtr,
    /// A call has not come back yet.
    busy: bool,
    /// Calls made (tells a server whether its stuck call is still this
    /// courier's latest).
    calls: u64,
}

fn courier(mail: Arc<Mutex<Mail>>, go: CPtr, done: CPtr) {
    loop {
        if syscall::wait(go, 0).is_err() {
            return;
        }
        let (endpoint, words, count, cap) = {
            let m = mail.lock();
            (m.endpoint, m.words, m.count, m.cap)
        };
        let caps = [cap];
        let (info, registers) =
            syscall::load(LABEL, &words[..count], if cap != 0 { &caps } else { &[] });
        let reply = match syscall::call(endpoint, info, registers) {
            Err(error) => Err(LinkError::Kernel(error)),
            Ok(message) if message.info.label() != LABEL => Err(LinkError::Garbled),
            Ok(message) => {
                let mut words = [0u64; MAX_WORDS];
                let length = message.words(&mut words).min(MAX_WORDS);
                let mut scratch = [0u8; MAX_WORDS * 8];
                sched_protocol::decode::<SchedReply>(&words[..length], &mut scratch)
                    .map(Answer::of)
                    .ok_or(LinkError::Garbled)
            }
        };
        mail.lock().reply = Some(reply);
        let _ = syscall::signal(done);
    }
}

impl Courier {
    fn new(res: &mut Resources) -> Result<Courier, Error> {
        let go = res.create(ObjectType::Notification, 0)?;
        let done = res.create(ObjectType::Notification, 0)?;
        let mail = Arc::new(Mutex::new(Mail {
            endpoint: 0,
            words: [0; MAX_WORDS],
            count: 0,
            cap: 0,
            reply: None,
        }));
        let shared = mail.clone();
        tarn_rt::spawn_thread(res, ThreadOptions::default(), move || {
            courier(shared, go, done)
        })?;
        Ok(Courier {
            mail,
            go,
            done,
            busy: false,
            calls: 0,
        })
    }

    /// Whether a busy courier's call has come back (then it is idle again).
    fn came_back(&mut self) -> bool {
        if self.busy && syscall::poll(self.done).is_ok() {
            self.busy = false;
        }
        !self.busy
    }

    /// Sends `request` to `endpoint` (with `cap` attached if non-zero) and
    /// waits up to `deadline_ns` for the answer.
    fn call(
        &mut self,
        endpoint: CPtr,
        request: &SchedRequest,
        cap: CPtr,
        deadline_ns: u64,
    ) -> Result<Answer, LinkError> {
        {
            let mut m = self.mail.lock();
            let mut words = [0u64; MAX_WORDS];
            m.count = sched_protocol::encode(request, &mut words).ok_or(LinkError::Garbled)?;
            m.endpoint = endpoint;
            m.words = words;
            m.cap = cap;
            m.reply = None;
        }
        self.calls += 1;
        let _ = syscall::signal(self.go);
        match syscall::wait(self.done, deadline_ns) {
            Ok(_) => self
                .mail
                .lock()
                .reply
                .take()
                .unwrap_or(Err(LinkError::Garbled)),
            Err(_) => {
                self.busy = true;
                Err(LinkError::Timeout)
            }
        }
    }
}

/// A pool's server process.
struct Server {
    /// The policy it runs (as it named itself).
    policy: String,
    /// The parameters its policy declares, per domain and per pool.
    domain_params: Vec<ParamInfo>,
    pool_params: Vec<ParamInfo>,
    /// The main thread (the request loop).
    tcb: CPtr,
    /// Its request endpoint (the manager's capability).
    endpoint: CPtr,
    /// A call it did not answer in time: (courier, that courier's call
    /// count then). Until it comes back the server is not answering.
    stuck: Option<(usize, u64)>,
    /// What it was built in: the process, its memory and its endpoint
    /// (emptying it ends a courier's call the server never answered).
    cell: Cell,
    /// Its serial number (in its fault badge, [`BADGE_SERIAL_SHIFT`]).
    serial: u64,
}

/// What the manager keeps per active pool.
struct PoolRt {
    /// The original `Scheduler` capability (servers get copies), and the
    /// cell it was made in.
    scheduler: CPtr,
    scheduler_cell: Cell,
    server: Option<Server>,
}

/// The memory and the slots a domain was built in, taken back whole when
/// it goes: the untyped region every one of its objects came from (revoking
/// it destroys them all and empties it for the next domain), and the
/// manager's slots that held its capabilities.
struct Cell {
    untyped: CPtr,
    phys: u64,
    slots: Vec<CPtr>,
}

/// What the manager keeps per domain it built.
struct DomainRt {
    cell: Cell,
    tcb: CPtr,
    /// The process's other capabilities (deleted on destroy).
    objects: [CPtr; 4],
    thread_id: u64,
    /// Run time in earlier pools or servers.
    carried_ns: u64,
    paused: bool,
    crashed: bool,
    image: String,
}

/// A tenant's request waiting for the console thread, and its answer.
#[derive(Default)]
struct TenantMail {
    /// (badge, command line).
    request: Option<(u64, String)>,
    /// (ok, output).
    answer: Option<(bool, String)>,
}

/// A fault message the watcher thread saw.
#[derive(Clone, Copy)]
struct FaultNote {
    badge: u64,
    label: u64,
    rip: u64,
    address: u64,
}

/// The pool manager's runtime state.
pub struct Pools {
    /// The rules and the pool/domain state.
    pub manager: PoolManager,
    info: &'static BootInfo,
    pools: BTreeMap<PoolId, PoolRt>,
    domains: BTreeMap<DomainId, DomainRt>,
    fault_endpoint: CPtr,
    faults: Arc<Mutex<Vec<FaultNote>>>,
    /// Pools whose server did not answer a request, with why: replaced by
    /// the next [`Pools::service`].
    failing: BTreeMap<PoolId, String>,
    /// The serial number of the last server started.
    server_serial: u64,
    /// The endpoint tenants' pool capabilities name (badge = pool id + 1).
    tenant_endpoint: CPtr,
    tenant_mail: Arc<Mutex<TenantMail>>,
    /// Signalled when a tenant's answer is ready.
    tenant_done: CPtr,
    /// Delegations: (pool, tenant domain) → the manager's badged capability
    /// the tenant's copy derives from (revoking it ends the tenancy).
    delegations: BTreeMap<(PoolId, DomainId), CPtr>,
    /// Sub-pools a tenant carved from its delegated pool: sub → parent.
    carved: BTreeMap<PoolId, PoolId>,
    /// The memory cells are built in: every free byte the root task had
    /// when the manager started, as buddy blocks (freed cells merge back).
    memory: BuddyAllocator,
    /// The threads that call servers.
    couriers: Vec<Courier>,
    /// Policy servers loaded at run time (`tarnctl load-policy`): name → ELF.
    loaded: BTreeMap<String, Vec<u8>>,
    /// The load in progress: name, size, bytes so far.
    loading: Option<(String, u32, Vec<u8>)>,
    /// Virtual time.
    pub clock: Clock,
}

/// A domain's scheduling figures, for `list`, `top` and `vcpu-list`.
#[derive(Clone, Debug)]
pub struct DomainStat {
    /// Id.
    pub id: DomainId,
    /// Name.
    pub name: String,
    /// Pool name.
    pub pool: String,
    /// vCPUs.
    pub vcpus: u32,
    /// `r` running/runnable, `b` blocked, `p` paused, `c` crashed, `-` control domain.
    pub state: char,
    /// Total run time (ns) as a domain (its pools' dispatch accounting).
    pub cpu_ns: u64,
    /// Total run time (ns) of its thread since it was built (the kernel's
    /// per-thread accounting, set-up included).
    pub thread_ns: u64,
    /// CPU whose queue holds its vCPU now, if any.
    pub cpu: Option<u64>,
    /// Its image.
    pub image: String,
    /// Scheduling parameters.
    pub params: DomainParams,
    /// Credit group master.
    pub group: Option<String>,
}

fn reply_result(reply: Result<Answer, LinkError>) -> Result<Answer, String> {
    match reply {
        Ok(Answer::Error(error)) => Err(server_error(error)),
        Ok(Answer::Refused(why)) => Err(why),
        Ok(other) => Ok(other),
        Err(LinkError::Timeout) => Err(String::from("the scheduler server did not answer")),
        Err(LinkError::Unresponsive) => Err(String::from("the scheduler server is not answering")),
        Err(LinkError::Kernel(e)) => Err(format!("cannot reach the scheduler server: {e:?}")),
        Err(LinkError::Garbled) => Err(String::from("garbled answer from the scheduler server")),
        Err(LinkError::NoServer) => Err(String::from("the pool has no scheduler server")),
        Err(LinkError::NoCourier) => Err(String::from(
            "no courier thread free to call the scheduler server",
        )),
    }
}

fn server_error(error: SchedError) -> String {
    match error {
        SchedError::Infeasible => String::from("the policy refused the thread"),
        other => format!("the scheduler server refused: {other:?}"),
    }
}

impl Pools {
    /// Boot: Pool-0 per `manager` (its server on its CPUs), and the fault
    /// watcher, which signals `wake` when a fault arrives.
    pub fn start(
        info: &'static BootInfo,
        res: &mut Resources,
        mut manager: PoolManager,
        wake: CPtr,
        clock: Clock,
    ) -> Result<Pools, Error> {
        manager.set_policies(policy_modules(info));
        // Every byte not used yet becomes cell memory; the manager's own
        // lasting objects (threads, endpoints, couriers) get a block of it.
        let mut memory = BuddyAllocator::new();
        memory.take_unused(res)?;
        let own = memory.alloc(&mut KernelUntyped(res), ROOT_MEMORY_BITS)?;
        res.untyped.add(own.cptr, own.phys, own.bits);
        let fault_endpoint = res.create(ObjectType::Endpoint, 0)?;
        let faults = Arc::new(Mutex::new(Vec::new()));
        let shared = faults.clone();
        tarn_rt::spawn_thread(res, ThreadOptions::default(), move || {
            watch_faults(fault_endpoint, shared, wake)
        })?;
        let tenant_endpoint = res.create(ObjectType::Endpoint, 0)?;
        let tenant_done = res.create(ObjectType::Notification, 0)?;
        let tenant_mail = Arc::new(Mutex::new(TenantMail::default()));
        let mail = tenant_mail.clone();
        tarn_rt::spawn_thread(res, ThreadOptions::default(), move || {
            serve_tenants(tenant_endpoint, mail, wake, tenant_done)
        })?;
        let mut pools = Pools {
            manager,
            info,
            pools: BTreeMap::new(),
            domains: BTreeMap::new(),
            fault_endpoint,
            faults,
            failing: BTreeMap::new(),
            server_serial: 0,
            tenant_endpoint,
            tenant_mail,
            tenant_done,
            delegations: BTreeMap::new(),
            carved: BTreeMap::new(),
            memory,
            couriers: Vec::new(),
            loaded: BTreeMap::new(),
            loading: None,
            clock,
        };
        let pool0 = tarn_pool_manager::pools::POOL0;
        let cpus: Vec<u32> = pools
            .manager
            .pool(pool0)
            .map(|p| p.cpus.iter().copied().collect())
            .unwrap_or_default();
        pools.apply(res, alloc::vec![Action::StartScheduler { pool: pool0 }]);
        let binds = cpus
            .iter()
            .map(|&cpu| Action::BindCpu { cpu, pool: pool0 })
            .collect();
        pools.apply(res, binds);
        Ok(pools)
    }

    fn pool_name(&self, pool: PoolId) -> String {
        self.manager
            .pool(pool)
            .map_or_else(|| format!("pool {}", pool.0), |p| p.spec.name.clone())
    }

    fn cpu_cap(&self, cpu: u32) -> CPtr {
        self.info.first_cpu_slot + u64::from(cpu)
    }

    /// Runs a pool operation: first the rules (`op` on the manager; a
    /// refusal changes nothing and is named after `what`), then the actions
    /// they call for.
    pub fn operate(
        &mut self,
        res: &mut Resources,
        what: &str,
        op: impl FnOnce(&mut PoolManager) -> Result<Vec<Action>, PoolError>,
    ) -> Result<(), String> {
        let actions = op(&mut self.manager).map_err(|e| format!("{what}: {e}"))?;
        self.apply(res, actions);
        Ok(())
    }

    /// Runs a pool activation (`cpupool-create`, `cpupool-start`, a
    /// tenant's sub-pool): first the rules (`op`; a refusal changes
    /// nothing), then the pool's `Scheduler`, its server and its CPUs. If
    /// the pool ends up without a server (it cannot be started, or it failed
    /// taking the CPUs and no replacement could start), the activation is
    /// undone completely: the CPUs are revoked and free again, the cells
    /// are emptied, the pool is defined again, and with `forget` (it was
    /// created by this command) deleted, so its name is free. Returns the
    /// pool, or the error line's text.
    pub fn activate(
        &mut self,
        res: &mut Resources,
        what: &str,
        forget: bool,
        op: impl FnOnce(&mut PoolManager) -> Result<Vec<Action>, PoolError>,
    ) -> Result<PoolId, String> {
        let actions = op(&mut self.manager).map_err(|e| format!("{what}: {e}"))?;
        let pool = actions
            .iter()
            .find_map(|a| match a {
                Action::StartScheduler { pool, .. } => Some(*pool),
                _ => None,
            })
            .ok_or_else(|| format!("{what}: nothing to activate"))?;
        let mut why = None;
        for action in actions {
            let starting = matches!(action, Action::StartScheduler { .. });
            if let Err((p, reason)) = self.apply_one(res, action) {
                if starting {
                    why = Some(reason);
                    break;
                }
                crate::console::say_line(&format!("error: pool {}: {reason}", self.pool_name(p)));
                self.replace_server(res, p, &reason);
            }
        }
        let served = self.pools.get(&pool).is_some_and(|p| p.server.is_some());
        if served {
            return Ok(pool);
        }
        let why = why.unwrap_or_else(|| String::from("no scheduler server could be started"));
        let cpus: Vec<u32> = self
            .manager
            .pool(pool)
            .map(|p| p.cpus.iter().copied().collect())
            .unwrap_or_default();
        for cpu in cpus {
            let _ = invoke::cnode_revoke(slot::ROOT_CNODE, self.cpu_cap(cpu));
        }
        self.stop_scheduler(res, pool);
        let _ = self.manager.abort_activation(pool);
        if forget {
            let _ = self.manager.delete(pool);
        }
        Err(format!("{what}: {why}; nothing changed"))
    }

    /// Carries out `actions` in order. A server that fails one is replaced.
    pub fn apply(&mut self, res: &mut Resources, actions: Vec<Action>) {
        for action in actions {
            if let Err((pool, why)) = self.apply_one(res, action) {
                crate::console::say_line(&format!("error: pool {}: {why}", self.pool_name(pool)));
                self.replace_server(res, pool, &why);
            }
        }
    }

    fn apply_one(&mut self, res: &mut Resources, action: Action) -> Result<(), (PoolId, String)> {
        self.spare_courier(res);
        match action {
            Action::StartScheduler { pool } => {
                let sched = self
                    .manager
                    .pool(pool)
                    .map(|p| p.spec.sched.clone())
                    .ok_or((pool, String::from("no such pool")))?;
                let (scheduler, scheduler_cell) = self
                    .build_in_cell(res, SCHEDULER_CELL_BITS, |res| {
                        res.create(ObjectType::Scheduler, 0)
                    })
                    .map_err(|e| (pool, format!("cannot create its Scheduler: {e:?}")))?;
                self.pools.insert(
                    pool,
                    PoolRt {
                        scheduler,
                        scheduler_cell,
                        server: None,
                    },
                );
                let server = self
                    .start_server(res, pool, &sched)
                    .map_err(|e| (pool, format!("cannot start its scheduler server: {e:?}")))?;
                if let Some(p) = self.pools.get_mut(&pool) {
                    p.server = Some(server);
                }
                if let Err(why) = self.greet(pool, &sched) {
                    // Not a server of this protocol: the pool has none.
                    if let Some(rt) = self.pools.get_mut(&pool) {
                        let scheduler = rt.scheduler;
                        if let Some(old) = rt.server.take() {
                            stop_server(&old, scheduler);
                            self.empty_cell(res, old.cell);
                        }
                    }
                    return Err((pool, why));
                }
                Ok(())
            }
            Action::BindCpu { cpu, pool } => {
                let cap = self.cpu_cap(cpu);
                self.request(pool, &SchedRequest::AddCpu { cpu }, cap)
                    .map(|_| ())
                    .map_err(|why| (pool, format!("CPU {cpu} not taken: {why}")))
            }
            Action::RevokeCpu { cpu, pool } => {
                let result = self.request(pool, &SchedRequest::RemoveCpu { cpu }, 0);
                // Whatever the server said, the CPU is taken back now.
                let _ = invoke::cnode_revoke(slot::ROOT_CNODE, self.cpu_cap(cpu));
                result.map(|_| ()).map_err(|why| {
                    (
                        pool,
                        format!("CPU {cpu} not released ({why}): revoked after the deadline"),
                    )
                })
            }
            Action::StopScheduler { pool } => {
                self.stop_scheduler(res, pool);
                Ok(())
            }
            Action::ChangeScheduler { pool } => {
                let to = self
                    .manager
                    .pool(pool)
                    .map(|p| p.spec.sched.clone())
                    .ok_or((pool, String::from("no such pool")))?;
                let from = self.policy_of(pool);
                let started = self.clock.now_us();
                if let Err(why) = self.rebuild(res, pool, &to) {
                    // The new policy cannot serve: back to the one that did
                    // (or the fallback), every domain handed over again.
                    let back = Sched::from_name(&from)
                        .filter(|old| self.manager.set_scheduler(pool, old.clone()).is_ok());
                    let restored = match &back {
                        Some(old) => self.rebuild(res, pool, old).map(|n| (n, from.clone())),
                        None => Err(String::from("no policy to go back to")),
                    };
                    if restored.is_ok() {
                        // The failed server's timeouts are dealt with.
                        self.failing.remove(&pool);
                    }
                    return match restored {
                        // Refused, and nothing lost: no server to replace.
                        Ok((domains, old)) => {
                            crate::console::say_line(&format!(
                                "error: pool {}: policy change to {} failed ({why}): back on {old}, {domains} domains running",
                                self.pool_name(pool),
                                to.name()
                            ));
                            Ok(())
                        }
                        Err(again) => {
                            self.fall_back(res, pool, &from);
                            Err((
                                pool,
                                format!(
                                    "policy change to {} failed ({why}); {from}: {again}",
                                    to.name()
                                ),
                            ))
                        }
                    };
                }
                crate::console::say_line(&format!(
                    "pool {}: now {} (hand-over took {} us)",
                    self.pool_name(pool),
                    to.name(),
                    self.clock.now_us() - started
                ));
                Ok(())
            }
            Action::AdoptDomain { domain, pool } => self
                .adopt(pool, domain)
                .map_err(|why| (pool, format!("domain not adopted: {why}"))),
            Action::ReleaseDomain { domain, pool } => {
                let Some(d) = self.domains.get(&domain) else {
                    return Ok(());
                };
                let id = d.thread_id;
                self.request(pool, &SchedRequest::RemoveThread { thread_id: id }, 0)
                    .map(|_| ())
                    .map_err(|why| (pool, format!("domain not released: {why}")))
            }
            Action::MoveDomain { domain, from, to } => self.move_domain(domain, from, to),
        }
    }

    /// Calls `pool`'s server through an idle courier, with the deadline.
    fn call(
        &mut self,
        pool: PoolId,
        request: &SchedRequest,
        cap: CPtr,
    ) -> Result<Answer, LinkError> {
        let Some(server) = self.pools.get_mut(&pool).and_then(|p| p.server.as_mut()) else {
            return Err(LinkError::NoServer);
        };
        if let Some((index, calls)) = server.stuck {
            // The late answer to the earlier request may have come since.
            let courier = &mut self.couriers[index];
            if courier.calls == calls && !courier.came_back() {
                return Err(LinkError::Unresponsive);
            }
            server.stuck = None;
        }
        let endpoint = server.endpoint;
        let index = self
            .couriers
            .iter_mut()
            .position(Courier::came_back)
            .ok_or(LinkError::NoCourier)?;
        let courier = &mut self.couriers[index];
        let deadline = if matches!(request, SchedRequest::Describe) {
            GREET_DEADLINE_NS
        } else {
            REQUEST_DEADLINE_NS
        };
        let reply = courier.call(endpoint, request, cap, deadline);
        if matches!(reply, Err(LinkError::Timeout)) {
            if let Some(server) = self.pools.get_mut(&pool).and_then(|p| p.server.as_mut()) {
                server.stuck = Some((index, self.couriers[index].calls));
            }
        }
        reply
    }

    /// Makes sure an idle courier is there for the next call (a new one
    /// only when every courier waits for a server that never answered).
    fn spare_courier(&mut self, res: &mut Resources) {
        if self.couriers.iter_mut().any(|c| c.came_back()) {
            return;
        }
        match Courier::new(res) {
            Ok(courier) => self.couriers.push(courier),
            Err(error) => crate::console::say_line(&format!(
                "error: pool manager: cannot start a courier thread: {error:?}"
            )),
        }
    }

    /// One request to `pool`'s server, with the deadline.
    fn request(
        &mut self,
        pool: PoolId,
        request: &SchedRequest,
        cap: CPtr,
    ) -> Result<Answer, String> {
        let reply = self.call(pool, request, cap);
        // Not an answer at all: the server has failed (a pool without a
        // server or a courier has nothing to replace).
        let failed = matches!(
            reply,
            Err(LinkError::Timeout
                | LinkError::Unresponsive
                | LinkError::Kernel(_)
                | LinkError::Garbled)
        );
        let refused = matches!(reply, Ok(Answer::Refused(_)));
        let mut result = reply_result(reply);
        if let (true, Err(why)) = (failed, &result) {
            self.failing.entry(pool).or_insert_with(|| why.clone());
        }
        if let (true, Err(why)) = (refused, &mut result) {
            // The policy's refusal names the key; say whose policy it is.
            *why = format!("{}: {why}", self.policy_of(pool));
        }
        result
    }

    /// The name of the policy `pool`'s server runs (`?` without a server).
    fn policy_of(&self, pool: PoolId) -> String {
        self.pools
            .get(&pool)
            .and_then(|p| p.server.as_ref())
            .map_or_else(|| String::from("?"), |s| s.policy.clone())
    }

    /// Asks a new server what it is: its policy's name must be the one the
    /// pool asked for, and it must describe every parameter it declares.
    /// A server that does not is not speaking the protocol.
    fn greet(&mut self, pool: PoolId, sched: &Sched) -> Result<(), String> {
        let wrong = |why: String| {
            format!(
                "the {} server does not speak the protocol: {why}",
                sched.name()
            )
        };
        let (name, domain_count, pool_count) = match self.request(pool, &SchedRequest::Describe, 0)
        {
            Ok(Answer::Policy(name, d, p)) => (name, d, p),
            Ok(other) => return Err(wrong(format!("Describe answered {other:?}"))),
            Err(why) => return Err(wrong(why)),
        };
        if name != sched.name() {
            return Err(wrong(format!("it runs policy '{name}'")));
        }
        let mut lists = (Vec::new(), Vec::new());
        for (of_pool, count) in [(false, domain_count), (true, pool_count)] {
            if count > MAX_DECLARED_PARAMS {
                return Err(wrong(format!("{count} parameters declared")));
            }
            for index in 0..count {
                let request = SchedRequest::DescribeParam {
                    pool: of_pool,
                    index,
                };
                match self.request(pool, &request, 0) {
                    Ok(Answer::Param(info)) => {
                        let list = if of_pool { &mut lists.1 } else { &mut lists.0 };
                        list.push(info);
                    }
                    Ok(other) => return Err(wrong(format!("DescribeParam answered {other:?}"))),
                    Err(why) => return Err(wrong(why)),
                }
            }
        }
        if let Some(server) = self.pools.get_mut(&pool).and_then(|p| p.server.as_mut()) {
            server.policy = name;
            (server.domain_params, server.pool_params) = lists;
        }
        Ok(())
    }

    /// The server ELF of policy `name`: the boot module `policy-NAME`, else
    /// the config archive's `servers/NAME`, else one loaded at run time.
    fn policy_elf(&self, name: &str) -> Option<Cow<'static, [u8]>> {
        let module = format!("{POLICY_MODULE_PREFIX}{name}");
        if let Some(module) = self.info.module(&module) {
            return Some(Cow::Borrowed(tarn_rt::module_bytes(module)));
        }
        if let Some(elf) = crate::autostart::server_elf(name) {
            return Some(Cow::Borrowed(elf));
        }
        self.loaded.get(name).map(|elf| Cow::Owned(elf.clone()))
    }

    /// One piece of a policy server ELF from the control channel
    /// (`tarnctl load-policy`): pieces arrive in order; the last one makes
    /// policy `name` available (its ELF header is checked; the server
    /// proves itself when a pool starts it). Returns what to tell the host.
    pub fn load_policy_piece(
        &mut self,
        name: &str,
        total: u32,
        offset: u32,
        chunk: &[u8],
    ) -> Result<Option<String>, String> {
        if Sched::from_name(name).is_none() {
            return Err(format!("'{name}' is not a policy name"));
        }
        if offset == 0 {
            if self.manager.policies().iter().any(|p| p == name) {
                return Err(format!("policy {name} exists already"));
            }
            if total == 0 || total > MAX_LOADED_POLICY_BYTES {
                return Err(format!(
                    "{total} bytes: a policy server is 1..={MAX_LOADED_POLICY_BYTES} bytes"
                ));
            }
            self.loading = Some((String::from(name), total, Vec::new()));
        }
        let Some((loading, size, bytes)) = self.loading.as_mut() else {
            return Err(String::from("a load must start at offset 0"));
        };
        let end = bytes.len() + chunk.len();
        if loading.as_str() != name
            || *size != total
            || offset as usize != bytes.len()
            || end > total as usize
        {
            self.loading = None;
            return Err(format!(
                "{name}: piece at {offset} out of order; load abandoned"
            ));
        }
        bytes.extend_from_slice(chunk);
        if end < total as usize {
            return Ok(None);
        }
        let Some((name, _, elf)) = self.loading.take() else {
            return Ok(None);
        };
        if !elf.starts_with(b"\x7fELF") {
            return Err(format!("{name}: not an ELF file; not loaded"));
        }
        let size = elf.len();
        self.loaded.insert(name.clone(), elf);
        self.refresh_policies();
        Ok(Some(format!("policy {name} loaded ({size} bytes)")))
    }

    /// Tells the manager which policies exist: the boot image's, the config
    /// archive's and those loaded at run time.
    pub fn refresh_policies(&mut self) {
        let mut names = policy_modules(self.info);
        names.extend(crate::autostart::server_names());
        names.extend(self.loaded.keys().cloned());
        names.sort();
        names.dedup();
        self.manager.set_policies(names);
    }

    fn start_server(
        &mut self,
        res: &mut Resources,
        pool: PoolId,
        policy: &Sched,
    ) -> Result<Server, Error> {
        let elf = self
            .policy_elf(policy.name())
            .ok_or(Error::InvalidArgument)?;
        let scheduler = self
            .pools
            .get(&pool)
            .ok_or(Error::InvalidArgument)?
            .scheduler;
        let fault_source = self.fault_endpoint;
        self.server_serial = self.server_serial.wrapping_add(1) & BADGE_SERIAL_MASK;
        let serial = self.server_serial;
        let cmdline = format!("scheduler={SERVER_SCHEDULER_SLOT} fault={SERVER_FAULT_SLOT}");
        let elf: &[u8] = &elf;
        // The request thread runs on the pool's first CPU (its agents run
        // on the pool's CPUs too): a server that spins instead of serving
        // takes time from its own pool, not from the manager's CPU.
        let home = self
            .manager
            .pool(pool)
            .and_then(|p| p.cpus.iter().next().copied())
            .map(u64::from);
        let ((tcb, endpoint), cell) = self.build_in_cell(res, SERVER_CELL_BITS, |res| {
            // The largest object first: the cell's watermark only grows, and
            // an aligned untyped placed after small objects would waste the
            // space below it.
            let (memory, phys) = res.create_untyped(SERVER_MEMORY_BITS)?;
            let endpoint = res.create(ObjectType::Endpoint, 0)?;
            let fault = res.alloc_slot()?;
            invoke::cnode_mint(
                res.cnode,
                fault,
                res.cnode,
                fault_source,
                Rights::ALL,
                BADGE_SERVER | u64::from(pool.0) | (serial << BADGE_SERIAL_SHIFT),
            )?;
            let caps = [
                CapGrant {
                    source: endpoint,
                    dest: SERVER_ENDPOINT_SLOT,
                    rights: Rights::READ,
                    badge: 0,
                },
                CapGrant {
                    source: scheduler,
                    dest: SERVER_SCHEDULER_SLOT,
                    rights: Rights::ALL,
                    badge: 0,
                },
                CapGrant {
                    source: fault,
                    dest: SERVER_FAULT_SLOT,
                    rights: Rights::WRITE,
                    badge: 0,
                },
            ];
            let untyped = [UntypedGrant {
                cptr: memory,
                phys,
                size_bits: SERVER_MEMORY_BITS,
            }];
            let config = ProcessConfig {
                elf,
                caps: &caps,
                untyped: &untyped,
                cmdline: &cmdline,
                cpu_count: 0,
                cpu: home,
                fault_endpoint: fault,
                suspended: true,
                ..ProcessConfig::default()
            };
            let process = tarn_rt::spawn_process(res, &config)?;
            // Confined to the pool's Scheduler before it first runs: it and
            // every thread it makes run only on the pool's CPUs (in idle
            // time elsewhere while the pool has none), under the kernel's
            // watchdog.
            invoke::tcb_confine(process.tcb, scheduler)?;
            invoke::tcb_resume(process.tcb)?;
            // Wait until it serves (or a second of kernel time has passed:
            // a server that spins instead of serving may share this CPU,
            // and each sleep then lasts a time slice, not a millisecond).
            let sleeper = res.create(ObjectType::Notification, 0)?;
            let now = || invoke::machine_times(slot::MACHINE).map_or(0, |t| t.now_ns);
            let until = now().saturating_add(1_000_000_000);
            for _ in 0..1000 {
                let state = invoke::tcb_read_registers(process.tcb)?.state_raw;
                if state == ThreadState::BlockedOnReceive as u64 || now() >= until {
                    break;
                }
                let _ = tarn_rt::sleep(sleeper, 1_000_000);
            }
            Ok((process.tcb, endpoint))
        })?;
        Ok(Server {
            policy: String::from(policy.name()),
            domain_params: Vec::new(),
            pool_params: Vec::new(),
            tcb,
            endpoint,
            stuck: None,
            cell,
            serial,
        })
    }

    /// Builds something in a cell: a block of cell memory of its own that
    /// every object `build` creates comes from, and the manager's slots it
    /// used, recorded. On error the cell is emptied again and nothing is
    /// left behind.
    fn build_in_cell<T>(
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

    /// Hands `domain`'s thread to `pool`'s server with its parameters.
    fn adopt(&mut self, pool: PoolId, domain: DomainId) -> Result<(), String> {
        let d = self.domains.get(&domain).ok_or("no such domain")?;
        let (tcb, thread_id) = (d.tcb, d.thread_id);
        let params = self
            .manager
            .domain(domain)
            .map(|d| d.params.clone())
            .unwrap_or_default();
        self.request(
            pool,
            &SchedRequest::AddThread {
                thread_id,
                domain: domain.0,
            },
            tcb,
        )?;
        self.send_params(pool, domain, &params)
    }

    /// The keys `pool`'s policy declares for domains (or for the pool).
    fn declared(&self, pool: PoolId, of_pool: bool) -> Vec<String> {
        self.pools
            .get(&pool)
            .and_then(|p| p.server.as_ref())
            .map(|s| {
                if of_pool {
                    &s.pool_params
                } else {
                    &s.domain_params
                }
            })
            .map(|list| list.iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Refuses keys `pool`'s policy does not declare (naming the first).
    pub fn check_declared(&self, pool: PoolId, params: &DomainParams) -> Result<(), String> {
        let keys = self.declared(pool, false);
        match params.iter().find(|(k, _)| !keys.iter().any(|d| d == k)) {
            None => Ok(()),
            Some((key, _)) => Err(format!(
                "{key}: not a parameter of policy {} (it has: {})",
                self.policy_of(pool),
                if keys.is_empty() {
                    String::from("none")
                } else {
                    keys.join(", ")
                }
            )),
        }
    }

    /// Gives `pool`'s server those of `params` its policy declares (the
    /// others are kept for a policy that has them, as xl keeps a domain's
    /// credit weight in a SEDF pool).
    fn send_params(
        &mut self,
        pool: PoolId,
        domain: DomainId,
        params: &DomainParams,
    ) -> Result<(), String> {
        if self.manager.pool(pool).is_none() {
            return Err(String::from("no such pool"));
        }
        let keys = self.declared(pool, false);
        let text = params.text(|k| keys.iter().any(|d| d == k));
        if text.is_empty() {
            return Ok(());
        }
        let request = SchedRequest::SetDomainParams {
            domain: domain.0,
            params: &text,
        };
        self.request(pool, &request, 0).map(|_| ())
    }

    /// The domain's run time so far (ns).
    fn domain_time(&self, domain: DomainId) -> (u64, Option<u64>, u64) {
        let Some(d) = self.domains.get(&domain) else {
            return (0, None, 0);
        };
        let scheduler = self
            .manager
            .domain(domain)
            .and_then(|x| self.pools.get(&x.pool))
            .map(|p| p.scheduler);
        match scheduler.map(|s| invoke::scheduler_query_thread(s, d.tcb)) {
            Some(Ok(q)) => (
                d.carried_ns + q.ran_ns,
                q.queued_on.checked_sub(1),
                q.state_raw,
            ),
            _ => (d.carried_ns, None, 0),
        }
    }

    /// Suspends a domain's thread (no-op when paused already).
    fn hold(&self, domain: DomainId) {
        if let Some(d) = self.domains.get(&domain) {
            if !d.paused {
                let _ = invoke::tcb_suspend(d.tcb);
            }
        }
    }

    /// Resumes a held domain (unless paused or crashed).
    fn release_hold(&self, domain: DomainId) {
        if let Some(d) = self.domains.get(&domain) {
            if !d.paused && !d.crashed {
                let _ = invoke::tcb_resume(d.tcb);
            }
        }
    }

    fn move_domain(
        &mut self,
        domain: DomainId,
        from: PoolId,
        to: PoolId,
    ) -> Result<(), (PoolId, String)> {
        // Held while it changes hands: it runs in neither pool meanwhile,
        // and never as an unadopted thread.
        self.hold(domain);
        let (ran, _, _) = self.domain_time(domain);
        let Some(id) = self.domains.get(&domain).map(|d| d.thread_id) else {
            return Ok(());
        };
        let released = self.request(from, &SchedRequest::RemoveThread { thread_id: id }, 0);
        if let Some(d) = self.domains.get_mut(&domain) {
            d.carried_ns = ran;
        }
        // A scheduling group is the source pool's: the domain leaves it.
        if let Some(mut params) = self.manager.domain(domain).map(|d| d.params.clone()) {
            params.unset("group");
            let _ = self.manager.set_domain_params(domain, params);
        }
        if let Err(why) = released {
            // The source server failed; it is replaced without this domain.
            // The kernel still has the thread adopted by the source's
            // Scheduler: release it there directly.
            if let (Some(p), Some(d)) = (self.pools.get(&from), self.domains.get(&domain)) {
                let _ = invoke::scheduler_release(p.scheduler, d.tcb);
            }
            self.adopt(to, domain)
                .map_err(|w| (to, format!("domain not adopted: {w}")))?;
            self.release_hold(domain);
            return Err((from, format!("domain not released: {why}")));
        }
        let adopted = self.adopt(to, domain);
        self.release_hold(domain);
        adopted.map_err(|why| (to, format!("domain not adopted: {why}")))
    }

    /// Replaces `pool`'s server after a failure (same policy).
    fn replace_server(&mut self, res: &mut Resources, pool: PoolId, reason: &str) {
        self.failing.remove(&pool);
        release_if_empty(&mut self.failing);
        self.spare_courier(res);
        let Some(policy) = self.manager.pool(pool).map(|p| p.spec.sched.clone()) else {
            return;
        };
        if !self.pools.contains_key(&pool) {
            return;
        }
        let started = self.clock.now_us();
        match self.rebuild(res, pool, &policy) {
            Ok(domains) => crate::console::say_line(&format!(
                "pool {}: scheduler server replaced in {} us ({reason}); {domains} domains running again",
                self.pool_name(pool),
                self.clock.now_us() - started
            )),
            Err(why) => {
                crate::console::say_line(&format!(
                    "error: pool {}: cannot replace the scheduler server: {why}",
                    self.pool_name(pool)
                ));
                self.fall_back(res, pool, policy.name());
            }
        }
    }

    /// `pool`'s policy `failed` cannot serve it: the pool goes to the
    /// fallback policy (its domains are handed over as on a replacement).
    fn fall_back(&mut self, res: &mut Resources, pool: PoolId, failed: &str) {
        let Some(fallback) = Sched::from_name(FALLBACK_POLICY) else {
            return;
        };
        if failed == FALLBACK_POLICY {
            return;
        }
        let _ = self.manager.set_scheduler(pool, fallback.clone());
        let outcome = self.rebuild(res, pool, &fallback);
        if outcome.is_ok() {
            self.failing.remove(&pool);
        }
        crate::console::say_line(&match outcome {
            Ok(domains) => format!(
                "pool {}: policy {failed} failed: falling back to {FALLBACK_POLICY}; {domains} domains running",
                self.pool_name(pool)
            ),
            Err(why) => format!(
                "error: pool {}: the fallback policy {FALLBACK_POLICY} failed too: {why}",
                self.pool_name(pool)
            ),
        });
    }

    /// Takes everything from `pool`'s server (if any) and gives it to a new
    /// `policy` server on the same `Scheduler`: its CPUs, then its domains.
    /// Returns the number of domains handed over.
    fn rebuild(
        &mut self,
        res: &mut Resources,
        pool: PoolId,
        policy: &Sched,
    ) -> Result<usize, String> {
        let Some(rt) = self.pools.get_mut(&pool) else {
            return Err(String::from("the pool is not active"));
        };
        let scheduler = rt.scheduler;
        if let Some(old) = rt.server.take() {
            stop_server(&old, scheduler);
            self.empty_cell(res, old.cell);
        }
        // A courier left in a call to the old server (it never answered) is
        // released by emptying its cell, but may not have come back yet:
        // the new server's greeting must not fail for want of a courier.
        self.spare_courier(res);
        let cpus: BTreeSet<u32> = self
            .manager
            .pool(pool)
            .map(|p| p.cpus.clone())
            .unwrap_or_default();
        for &cpu in &cpus {
            let _ = invoke::cnode_revoke(slot::ROOT_CNODE, self.cpu_cap(cpu));
        }
        let server = self
            .start_server(res, pool, policy)
            .map_err(|e| format!("cannot start a {} server: {e:?}", policy.name()))?;
        if let Some(rt) = self.pools.get_mut(&pool) {
            rt.server = Some(server);
        }
        self.greet(pool, policy)?;
        for &cpu in &cpus {
            let cap = self.cpu_cap(cpu);
            self.request(pool, &SchedRequest::AddCpu { cpu }, cap)
                .map_err(|why| format!("CPU {cpu}: {why}"))?;
        }
        let members: Vec<DomainId> = self
            .manager
            .domains()
            .filter(|d| d.pool == pool && d.id != CONTROL_DOMAIN)
            .map(|d| d.id)
            .collect();
        for &domain in &members {
            self.adopt(pool, domain)
                .map_err(|why| format!("domain {}: {why}", domain.0))?;
        }
        Ok(members.len())
    }

    /// Handles what the fault watcher saw: a server that faulted is replaced,
    /// a domain that faulted is marked crashed.
    pub fn service(&mut self, res: &mut Resources) {
        self.spare_courier(res);
        while let Some((pool, why)) = self.failing.pop_first() {
            self.replace_server(res, pool, &why);
        }
        // The clock is a system call: read it only while a loan runs.
        let loans_due = if self.manager.loans().next().is_some() {
            self.manager.loans_due(self.clock.now_us() / 1000)
        } else {
            Vec::new()
        };
        for cpu in loans_due {
            let from = self.manager.loans().find(|l| l.cpu == cpu).map(|l| l.from);
            if let Ok(actions) = self.manager.end_loan(cpu) {
                self.apply(res, actions);
                if let Some(from) = from {
                    crate::console::say_line(&format!(
                        "loan: CPU {cpu} is back in {}",
                        self.pool_name(from)
                    ));
                }
            }
        }
        let notes: Vec<FaultNote> = core::mem::take(&mut *self.faults.lock());
        for note in notes {
            let id = (note.badge & BADGE_ID_MASK) as u32;
            let what = describe_fault(&note);
            if note.badge & BADGE_SERVER != 0 {
                let pool = PoolId(id);
                let serial = (note.badge >> BADGE_SERIAL_SHIFT) & BADGE_SERIAL_MASK;
                // A server replaced meanwhile (it failed its greeting, say)
                // is gone already: its fault says nothing of the current one.
                let current = self
                    .pools
                    .get(&pool)
                    .and_then(|p| p.server.as_ref())
                    .is_some_and(|s| s.serial == serial);
                if current {
                    crate::console::say_line(&format!(
                        "pool {}: scheduler server faulted: {what}",
                        self.pool_name(pool)
                    ));
                    // A policy that spins in its agent would spin again:
                    // the pool goes to the fallback (as when a replacement
                    // fails); the fallback itself is replaced.
                    let policy = self.policy_of(pool);
                    if note.label == fault::WATCHDOG && policy != FALLBACK_POLICY {
                        self.failing.remove(&pool);
                        self.fall_back(res, pool, &policy);
                    } else {
                        self.replace_server(res, pool, "server fault");
                    }
                }
            } else if note.badge & BADGE_DOMAIN != 0 && note.label == VM_ENDED_LABEL {
                self.vm_ended(res, DomainId(id), &note);
            } else if note.badge & BADGE_DOMAIN != 0 {
                let domain = DomainId(id);
                let name = self
                    .manager
                    .domain(domain)
                    .map_or_else(String::new, |d| d.name.clone());
                if let Some(d) = self.domains.get_mut(&domain) {
                    d.crashed = true;
                    crate::console::say_line(&format!("domain {name} crashed: {what}"));
                }
            }
        }
    }

    /// `create`: builds a domain and starts it in its pool (the manager has
    /// accepted `domain` already): a native task from `image`, or with `vm`
    /// a VMM running guest `image` on its main thread, which becomes the
    /// domain's vCPU.
    pub fn build_domain(
        &mut self,
        res: &mut Resources,
        domain: DomainId,
        image: &str,
        vm: bool,
        args: &str,
    ) -> Result<(), String> {
        let (pool, name) = self
            .manager
            .domain(domain)
            .map(|d| (d.pool, d.name.clone()))
            .ok_or("no such domain")?;
        let (module, choices) = if vm {
            let module = VM_GUESTS
                .contains(&image)
                .then(|| self.info.module("vmm"))
                .flatten();
            (module, VM_GUESTS)
        } else {
            let module = DOMAIN_IMAGES
                .contains(&image)
                .then(|| self.info.module(image))
                .flatten();
            (module, DOMAIN_IMAGES)
        };
        let module = module.ok_or_else(|| {
            format!(
                "no {} '{image}' (choices: {})",
                if vm { "guest" } else { "image" },
                choices.join(", ")
            )
        })?;
        let cmdline = if vm {
            format!("domain={name} guest={image} {args}")
        } else {
            String::from(args)
        };
        let cell_bits = if vm { VM_CELL_BITS } else { NATIVE_CELL_BITS };
        let fault_source = self.fault_endpoint;
        let elf = tarn_rt::module_bytes(module);
        let (built, cell) = self
            .build_in_cell(res, cell_bits, |res| {
                // The domain's memory first (the largest object; see
                // `start_server`).
                let bits = if vm {
                    VMM_MEMORY_BITS
                } else {
                    DOMAIN_MEMORY_BITS
                };
                let (memory, phys) = res.create_untyped(bits)?;
                let fault = res.alloc_slot()?;
                invoke::cnode_mint(
                    res.cnode,
                    fault,
                    res.cnode,
                    fault_source,
                    Rights::ALL,
                    BADGE_DOMAIN | u64::from(domain.0),
                )?;
                let untyped = [UntypedGrant {
                    cptr: memory,
                    phys,
                    size_bits: bits,
                }];
                let config = ProcessConfig {
                    elf,
                    fault_endpoint: fault,
                    cpu_count: 0,
                    untyped: &untyped,
                    cmdline: &cmdline,
                    suspended: true,
                    // A native image maps a few regions; a VM's VMM keeps the
                    // runtime's defaults (it maps its guest's memory too).
                    vspace_bits: if vm {
                        ProcessConfig::default().vspace_bits
                    } else {
                        NATIVE_VSPACE_BITS
                    },
                    stack_pages: if vm {
                        ProcessConfig::default().stack_pages
                    } else {
                        NATIVE_STACK_PAGES
                    },
                    ..ProcessConfig::default()
                };
                tarn_rt::spawn_process(res, &config)
            })
            .map_err(|e| format!("cannot build it: {e:?}"))?;
        self.start_built(res, pool, domain, cell, &built, image)
    }

    /// The last steps of `create`, native or VM alike: records the built
    /// process as `domain`'s, hands its thread to `pool`'s server (undoing
    /// everything if the server refuses it) and starts it.
    fn start_built(
        &mut self,
        res: &mut Resources,
        pool: PoolId,
        domain: DomainId,
        cell: Cell,
        built: &Process,
        image: &str,
    ) -> Result<(), String> {
        self.domains.insert(
            domain,
            DomainRt {
                cell,
                tcb: built.tcb,
                objects: [
                    built.cnode,
                    built.vspace,
                    built.ipc_buffer_frame,
                    built.start_frame,
                ],
                thread_id: (u64::from(domain.0) << 8) | 1,
                carried_ns: 0,
                paused: false,
                crashed: false,
                image: String::from(image),
            },
        );
        self.spare_courier(res);
        if let Err(why) = self.adopt(pool, domain) {
            self.discard(res, domain, pool);
            return Err(why);
        }
        let _ = invoke::tcb_resume(built.tcb);
        Ok(())
    }

    /// `create` of a Linux guest (`kernel` a file of the config archive):
    /// its cell is sized from `memory` (guest RAM plus 8 MiB for the VMM,
    /// rounded up to a power of two), the guest's memory is built in it
    /// (`crate::vm`), and the `vmm` module runs it on its main thread, the
    /// domain's vCPU, scheduled by the pool's server like any domain.
    pub fn build_linux_domain(
        &mut self,
        res: &mut Resources,
        domain: DomainId,
        kernel: &str,
        ramdisk: Option<&str>,
        memory_mib: u64,
        cmdline: &str,
    ) -> Result<(), String> {
        let (pool, name) = self
            .manager
            .domain(domain)
            .map(|d| (d.pool, d.name.clone()))
            .ok_or("no such domain")?;
        if !(crate::vm::MIN_MEMORY_MIB..=crate::vm::MAX_MEMORY_MIB).contains(&memory_mib) {
            return Err(format!(
                "memory={memory_mib}: a Linux guest takes {}..={} MiB",
                crate::vm::MIN_MEMORY_MIB,
                crate::vm::MAX_MEMORY_MIB
            ));
        }
        let archive = self
            .info
            .module("initrd")
            .map(tarn_rt::module_bytes)
            .ok_or("no config archive")?;
        let file = |path: &str| {
            crate::autostart::archive_file(path)
                .map(|(offset, length)| &archive[offset..offset + length])
                .ok_or_else(|| format!("no file {path} in the config archive"))
        };
        let kernel_bytes = file(kernel)?;
        let initrd = ramdisk.map(file).transpose()?;
        let module = self.info.module("vmm").ok_or("no vmm module")?;
        let ram = memory_mib.next_multiple_of(2) << 20;
        let cell_bits = u64::from((ram + (8 << 20)).next_power_of_two().trailing_zeros());
        let tsc_khz = crate::vm::tsc_khz(res);
        let fault_source = self.fault_endpoint;
        let mut rings = None;
        let elf = tarn_rt::module_bytes(module);
        let (built, cell) = self
            .build_in_cell(res, cell_bits, |res| {
                let memory =
                    crate::vm::build_memory(res, kernel_bytes, initrd, cmdline, ram, tsc_khz)
                        .map_err(|why| {
                            crate::console::say_line(&format!("error: {name}: {why}"));
                            tarn_rt::abi::Error::InvalidArgument
                        })?;
                let (untyped, phys) = res.create_untyped(VMM_MEMORY_BITS)?;
                let ring = res.create(ObjectType::Frame4K, 0)?;
                let wake = res.create(ObjectType::Notification, 0)?;
                invoke::frame_map(
                    ring,
                    res.vspace,
                    crate::vm::ring_vaddr(domain.0),
                    Rights::READ.union(Rights::WRITE),
                )?;
                rings = Some(crate::vm::ConsoleRing {
                    vaddr: crate::vm::ring_vaddr(domain.0),
                    wake,
                });
                let fault = res.alloc_slot()?;
                invoke::cnode_mint(
                    res.cnode,
                    fault,
                    res.cnode,
                    fault_source,
                    Rights::ALL,
                    BADGE_DOMAIN | u64::from(domain.0),
                )?;
                let untyped = [UntypedGrant {
                    cptr: untyped,
                    phys,
                    size_bits: VMM_MEMORY_BITS,
                }];
                let caps = [
                    tarn_rt::CapGrant {
                        source: memory.space,
                        dest: tarn_rt::layout::slot::FIRST_PARENT,
                        rights: Rights::ALL,
                        badge: 0,
                    },
                    // Where the VMM says its guest ended (`vm_ended`).
                    tarn_rt::CapGrant {
                        source: fault,
                        dest: tarn_rt::layout::slot::FIRST_PARENT + 1,
                        rights: Rights::ALL,
                        badge: 0,
                    },
                    // The console's input page and the VMM's wake-up.
                    tarn_rt::CapGrant {
                        source: ring,
                        dest: tarn_rt::layout::slot::FIRST_PARENT + 2,
                        rights: Rights::READ.union(Rights::WRITE),
                        badge: 0,
                    },
                    tarn_rt::CapGrant {
                        source: wake,
                        dest: tarn_rt::layout::slot::FIRST_PARENT + 3,
                        rights: Rights::ALL,
                        badge: 0,
                    },
                    // The serial console's notification: output is waiting.
                    tarn_rt::CapGrant {
                        source: crate::vm::console_wake(),
                        dest: tarn_rt::layout::slot::FIRST_PARENT + 4,
                        rights: Rights::WRITE,
                        badge: 0,
                    },
                ];
                // `tarn.bench` on the guest's command line: the VMM prints
                // the boot's figures (`cargo xtask bench`).
                let bench = if cmdline.split_whitespace().any(|w| w == "tarn.bench") {
                    " bench=1"
                } else {
                    ""
                };
                let line = format!("domain={name} linux={:x}{bench}", memory.load_address);
                let config = ProcessConfig {
                    elf,
                    fault_endpoint: fault,
                    cpu_count: 0,
                    untyped: &untyped,
                    caps: &caps,
                    cmdline: &line,
                    suspended: true,
                    ..ProcessConfig::default()
                };
                tarn_rt::spawn_process(res, &config)
            })
            .map_err(|e| format!("cannot build it: {e:?}"))?;
        if let Some(ring) = rings {
            crate::vm::register_console(domain.0, ring);
        }
        self.start_built(res, pool, domain, cell, &built, kernel)
    }

    /// Takes a cell back: revoking its untyped destroys every object built
    /// in it (and every capability to them, the domain's own included) and
    /// empties it; the slots it used are cleared and freed.
    fn empty_cell(&mut self, res: &mut Resources, cell: Cell) {
        let _ = invoke::cnode_revoke(slot::ROOT_CNODE, cell.untyped);
        for &s in &cell.slots {
            let _ = invoke::cnode_delete(slot::ROOT_CNODE, s);
            res.slots.free(s);
        }
        if let Err(error) = self.memory.free(&mut KernelUntyped(res), cell.untyped) {
            crate::console::say_line(&format!(
                "error: pool manager: cell at {:#x} not taken back: {error:?}",
                cell.phys
            ));
        }
    }

    /// Stops `pool`'s server (if any) and forgets its `Scheduler`: the
    /// server's cell and the `Scheduler`'s are emptied.
    fn stop_scheduler(&mut self, res: &mut Resources, pool: PoolId) {
        if let Some(p) = self.pools.remove(&pool) {
            if let Some(server) = p.server {
                stop_server(&server, p.scheduler);
                self.empty_cell(res, server.cell);
            }
            self.empty_cell(res, p.scheduler_cell);
        }
    }

    /// Stops and forgets a domain's process (after the manager let it go),
    /// and takes its memory and slots back.
    pub fn discard(&mut self, res: &mut Resources, domain: DomainId, pool: PoolId) {
        crate::vm::forget_console(domain.0);
        let Some(d) = self.domains.remove(&domain) else {
            return;
        };
        release_if_empty(&mut self.domains);
        let held: Vec<(PoolId, DomainId)> = self
            .delegations
            .keys()
            .filter(|(_, t)| *t == domain)
            .copied()
            .collect();
        for (p, t) in held {
            let _ = self.undelegate(res, p, t);
        }
        let _ = invoke::tcb_suspend(d.tcb);
        if let Some(p) = self.pools.get(&pool) {
            let _ = invoke::scheduler_release(p.scheduler, d.tcb);
        }
        self.empty_cell(res, d.cell);
    }

    /// A Linux domain's VMM says its guest ended (a message with
    /// [`VM_ENDED_LABEL`] on the domain's fault endpoint, MR0/MR1 the
    /// reason): the domain is destroyed with the reason on the console, as
    /// xl's default `on_poweroff`/`on_reboot`/`on_crash = "destroy"`. A
    /// message that names no reason is reported as such (the domain goes
    /// all the same: its VMM has stopped).
    fn vm_ended(&mut self, res: &mut Resources, domain: DomainId, note: &FaultNote) {
        let Some(name) = self.manager.domain(domain).map(|d| d.name.clone()) else {
            return;
        };
        if !self.domains.contains_key(&domain) {
            return;
        }
        let why = match StopReason::decode(note.rip, note.address) {
            Some(reason) => format!("{} ({reason})", reason.xl_event()),
            None => String::from("with no reason given"),
        };
        crate::console::say_line(&format!("domain {name} ended: {why}; destroyed"));
        if let Err(e) = self.destroy(res, domain) {
            crate::console::say_line(&format!("error: {name}: not destroyed: {e}"));
        }
    }

    /// `destroy`.
    pub fn destroy(&mut self, res: &mut Resources, domain: DomainId) -> Result<(), PoolError> {
        let pool = self
            .manager
            .domain(domain)
            .map(|d| d.pool)
            .ok_or(PoolError::NoSuchDomain)?;
        let actions = self.manager.destroy_domain(domain)?;
        self.hold(domain);
        self.apply(res, actions);
        self.discard(res, domain, pool);
        Ok(())
    }

    /// `pause` / `unpause`.
    pub fn set_paused(&mut self, domain: DomainId, paused: bool) -> Result<(), String> {
        let d = self
            .domains
            .get_mut(&domain)
            .ok_or_else(|| String::from("no such domain (the control domain is not paused)"))?;
        if d.paused == paused {
            return Ok(());
        }
        d.paused = paused;
        let result = if paused {
            invoke::tcb_suspend(d.tcb)
        } else if d.crashed {
            Ok(())
        } else {
            invoke::tcb_resume(d.tcb)
        };
        result.map_err(|e| format!("{e:?}"))
    }

    /// New parameters for a domain (`sched-credit -d`, `sched-sedf -d`,
    /// `sched-group`, `sched-param -d`): recorded with the domain's others
    /// and handed to its pool's server, whose policy validates them; on
    /// refusal nothing changes. `strict`: every key must be one the pool's
    /// policy declares (`sched-param`); otherwise keys of other policies
    /// are kept for later (`sched-credit` in a SEDF pool, as xl does).
    pub fn set_params(
        &mut self,
        domain: DomainId,
        changes: DomainParams,
        strict: bool,
    ) -> Result<(), String> {
        let pool = self
            .manager
            .domain(domain)
            .map(|d| d.pool)
            .ok_or("no such domain")?;
        if domain == CONTROL_DOMAIN {
            return Err(String::from(
                "the control domain is a system task, not scheduled by a pool's server",
            ));
        }
        if strict {
            self.check_declared(pool, &changes)?;
        }
        let old = self
            .manager
            .domain(domain)
            .map(|d| d.params.clone())
            .unwrap_or_default();
        self.manager
            .set_domain_params(domain, old.merged(&changes))
            .map_err(|e| format!("{e}"))?;
        if let Err(why) = self.send_params(pool, domain, &changes) {
            let _ = self.manager.set_domain_params(domain, old);
            return Err(why);
        }
        Ok(())
    }

    /// A pool's parameters (`sched-credit -s`, `sched-param -p`): `key=value`
    /// text for its server; its policy validates them.
    pub fn set_pool_params(&mut self, pool: PoolId, text: &str) -> Result<(), String> {
        if !self.pools.contains_key(&pool) {
            return Err(String::from("cpupool not active"));
        }
        self.request(pool, &SchedRequest::SetPoolParams { params: text }, 0)
            .map(|_| ())
    }

    /// `sched-group`: `domain` joins `master`'s group, or leaves its group
    /// (the policy's `group` parameter: the master's id, 0 for none).
    pub fn set_group(&mut self, domain: DomainId, master: Option<DomainId>) -> Result<(), String> {
        let pool = self
            .manager
            .domain(domain)
            .map(|d| d.pool)
            .ok_or("no such domain")?;
        if let Some(m) = master {
            if self.manager.domain(m).map(|x| x.pool) != Some(pool) {
                return Err(String::from("the master must be a domain of the same pool"));
            }
        }
        if !self.domains.contains_key(&domain) {
            return Err(String::from("the control domain is in no group"));
        }
        let mut changes = DomainParams::new();
        changes.set("group", &format!("{}", master.map_or(0, |m| m.0)));
        self.set_params(domain, changes, true)
    }

    /// What `sched-param` lists: each parameter `pool`'s policy declares
    /// (per domain, or for the pool), with its current value for `domain`
    /// (or the pool).
    pub fn param_list(
        &mut self,
        pool: PoolId,
        domain: Option<DomainId>,
    ) -> Result<(String, Vec<(ParamInfo, String)>), String> {
        let Some(server) = self.pools.get(&pool).and_then(|p| p.server.as_ref()) else {
            return Err(String::from("cpupool not active"));
        };
        let policy = server.policy.clone();
        let infos = if domain.is_some() {
            server.domain_params.clone()
        } else {
            server.pool_params.clone()
        };
        let request = match domain {
            Some(d) => SchedRequest::GetDomainParams { domain: d.0 },
            None => SchedRequest::GetPoolParams,
        };
        let text = match self.request(pool, &request, 0)? {
            Answer::Values(text) => text,
            other => return Err(format!("the scheduler server answered {other:?}")),
        };
        let value_of = |key: &str| {
            text.split_whitespace()
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == key)
                .map_or_else(|| String::from("?"), |(_, v)| String::from(v))
        };
        let list = infos
            .into_iter()
            .map(|info| {
                let value = value_of(&info.name);
                (info, value)
            })
            .collect();
        Ok((policy, list))
    }

    /// Fault injection (`server-fault`): makes `pool`'s server misbehave.
    pub fn misbehave(&mut self, pool: PoolId, how: Misbehaviour) -> Result<(), String> {
        self.request(pool, &SchedRequest::Misbehave(how), 0)
            .map(|_| ())
    }

    /// Every domain's figures, by id.
    pub fn stats(&self) -> Vec<DomainStat> {
        self.manager
            .domains()
            .map(|d| {
                let pool = self.pool_name(d.pool);
                let group = d
                    .params
                    .get("group")
                    .and_then(|m| m.parse::<u32>().ok())
                    .filter(|&m| m != 0)
                    .and_then(|m| self.manager.domain(DomainId(m)))
                    .map(|m| m.name.clone());
                match self.domains.get(&d.id) {
                    None => DomainStat {
                        id: d.id,
                        name: d.name.clone(),
                        pool,
                        vcpus: d.vcpus,
                        state: '-',
                        cpu_ns: 0,
                        thread_ns: 0,
                        cpu: None,
                        image: String::from("root-task"),
                        params: d.params.clone(),
                        group,
                    },
                    Some(rt) => {
                        let (cpu_ns, cpu, raw) = self.domain_time(d.id);
                        let state = if rt.crashed {
                            'c'
                        } else if rt.paused {
                            'p'
                        } else if raw == ThreadState::Runnable as u64 {
                            'r'
                        } else {
                            'b'
                        };
                        DomainStat {
                            id: d.id,
                            name: d.name.clone(),
                            pool,
                            vcpus: d.vcpus,
                            state,
                            cpu_ns,
                            thread_ns: invoke::tcb_read_registers(rt.tcb).map_or(0, |r| r.ran_ns),
                            cpu,
                            image: rt.image.clone(),
                            params: d.params.clone(),
                            group,
                        }
                    }
                }
            })
            .collect()
    }

    /// `cpupool-delegate`: gives tenant domain `tenant` a capability to pool
    /// `pool` (slot 9 of its CSpace): with it the tenant runs console
    /// commands that stay inside that pool.
    pub fn delegate(
        &mut self,
        res: &mut Resources,
        pool: PoolId,
        tenant: DomainId,
    ) -> Result<(), String> {
        if self.manager.pool(pool).map(|p| p.state) != Some(PoolState::Active) {
            return Err(String::from("cpupool not active"));
        }
        let cnode = self
            .domains
            .get(&tenant)
            .map(|d| d.objects[0])
            .ok_or("no such domain (the control domain needs no delegation)")?;
        if self.delegations.keys().any(|(_, t)| *t == tenant) {
            return Err(String::from(
                "the domain holds a pool capability already (undelegate it first)",
            ));
        }
        let source = res.alloc_slot().map_err(|e| format!("{e:?}"))?;
        invoke::cnode_mint(
            res.cnode,
            source,
            res.cnode,
            self.tenant_endpoint,
            Rights::WRITE,
            u64::from(pool.0) + 1,
        )
        .map_err(|e| {
            res.slots.free(source);
            format!("{e:?}")
        })?;
        if let Err(e) =
            invoke::cnode_copy(cnode, TENANT_POOL_SLOT, res.cnode, source, Rights::WRITE)
        {
            let _ = res.delete(source);
            return Err(format!("cannot install the capability: {e:?}"));
        }
        self.delegations.insert((pool, tenant), source);
        Ok(())
    }

    /// `cpupool-undelegate`: revokes the tenant's capability to the pool.
    pub fn undelegate(
        &mut self,
        res: &mut Resources,
        pool: PoolId,
        tenant: DomainId,
    ) -> Result<(), String> {
        let source = self
            .delegations
            .remove(&(pool, tenant))
            .ok_or("no such delegation")?;
        let _ = invoke::cnode_revoke(slot::ROOT_CNODE, source);
        let _ = invoke::cnode_delete(slot::ROOT_CNODE, source);
        res.slots.free(source);
        Ok(())
    }

    /// The sub-pools carved so far: sub-pool → the pool it came from.
    pub fn carved(&self) -> &BTreeMap<PoolId, PoolId> {
        &self.carved
    }

    /// A tenant's `cpupool-create`, as `tarn_pool_manager::tenant`
    /// allowed it: a sub-pool with exactly `spec`'s CPU list, taken from
    /// the tenant's pool `parent`. The CPUs leave the parent by the usual
    /// negotiation, then the pool is created with them (if it cannot start,
    /// they go back). Returns its name.
    pub fn carve(
        &mut self,
        res: &mut Resources,
        parent: PoolId,
        spec: tarn_pool_manager::pools::PoolSpec,
    ) -> Result<String, String> {
        use tarn_pool_manager::pools::CpuRequest;
        let name = spec.name.clone();
        let CpuRequest::List(wanted) = &spec.cpus else {
            return Err(format!("{name}: a sub-pool names its CPUs"));
        };
        let wanted = wanted.clone();
        // Check the spec itself before any CPU moves (nothing changes on error).
        let mut probe = self.manager.clone();
        for &cpu in &wanted {
            probe
                .cpu_remove(parent, cpu)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        probe
            .create(spec.clone())
            .map_err(|e| format!("{name}: {e}"))?;
        for &cpu in &wanted {
            self.operate(res, &name, |m| m.cpu_remove(parent, cpu))?;
        }
        match self.activate(res, &name, true, |m| {
            m.create(spec).map(|(_, actions)| actions)
        }) {
            Ok(id) => {
                self.carved.insert(id, parent);
                Ok(name)
            }
            Err(why) => {
                // The CPUs go back to the tenant's pool.
                let cpus: Vec<u32> = wanted.iter().copied().collect();
                let _ = self.operate(res, &name, |m| m.cpu_add(parent, &cpus).map(|r| r.actions));
                Err(why)
            }
        }
    }

    /// A tenant's `cpupool-destroy` of a sub-pool it carved: the sub-pool
    /// (without domains) is deactivated and deleted, its CPUs go back to the
    /// parent.
    pub fn uncarve(&mut self, res: &mut Resources, sub: PoolId) -> Result<(), String> {
        let parent = *self.carved.get(&sub).ok_or("not a carved sub-pool")?;
        let name = self.pool_name(sub);
        let cpus: Vec<u32> = self
            .manager
            .pool(sub)
            .map(|p| p.cpus.iter().copied().collect())
            .unwrap_or_default();
        self.operate(res, &name, |m| m.deactivate(sub))?;
        let _ = self.manager.delete(sub);
        self.carved.remove(&sub);
        release_if_empty(&mut self.carved);
        self.operate(res, &name, |m| m.cpu_add(parent, &cpus).map(|r| r.actions))
    }

    /// The delegations: (pool, tenant).
    pub fn delegations(&self) -> impl Iterator<Item = &(PoolId, DomainId)> {
        self.delegations.keys()
    }

    /// A tenant's request, if one waits: (its pool, the command line).
    pub fn take_tenant_request(&mut self) -> Option<(PoolId, String)> {
        let (badge, line) = self.tenant_mail.lock().request.take()?;
        Some((PoolId(badge.saturating_sub(1) as u32), line))
    }

    /// Answers the waiting tenant.
    pub fn answer_tenant(&mut self, ok: bool, output: String) {
        self.tenant_mail.lock().answer = Some((ok, output));
        let _ = syscall::signal(self.tenant_done);
    }

    /// How long until the next loan ends (ns), if one runs.
    pub fn next_loan_end_ns(&self) -> Option<u64> {
        self.manager.loans().next()?;
        let now_ms = self.clock.now_us() / 1000;
        self.manager
            .loans()
            .map(|l| l.until_ms.saturating_sub(now_ms).max(1) * 1_000_000)
            .min()
    }

    /// Bytes of cell memory free.
    pub fn free_cell_bytes(&self) -> u64 {
        self.memory.free_bytes()
    }

    /// The policy a pool's server runs now (for `cpupool-list -l`).
    pub fn server_policy(&self, pool: PoolId) -> Option<String> {
        self.pools
            .get(&pool)
            .and_then(|p| p.server.as_ref())
            .map(|s| s.policy.clone())
    }
}

/// The policies of the boot image: modules named `policy-NAME`.
fn policy_modules(info: &BootInfo) -> Vec<String> {
    let mut names: Vec<String> = info
        .modules()
        .iter()
        .filter_map(|m| m.name().strip_prefix(POLICY_MODULE_PREFIX))
        .map(String::from)
        .collect();
    names.sort();
    names
}

/// The slot of a tenant's pool capability in its CSpace.
pub const TENANT_POOL_SLOT: u64 = 9;

/// Serves tenants' requests: each is handed to the console thread (which
/// owns the pools) through `mail`, and its answer goes back as the reply.
fn serve_tenants(endpoint: CPtr, mail: Arc<Mutex<TenantMail>>, wake: CPtr, done: CPtr) {
    let mut message = syscall::recv(endpoint);
    loop {
        let Ok(request) = message else {
            return;
        };
        let mut words = [0u64; MAX_WORDS];
        let length = request.words(&mut words).min(MAX_WORDS);
        let mut scratch = [0u8; MAX_WORDS * 8];
        let decoded = (request.info.label() == control::TENANT_LABEL)
            .then(|| sched_protocol::decode::<ControlRequest>(&words[..length], &mut scratch))
            .flatten();
        let (ok, output) = match decoded {
            Some(ControlRequest::Run { line, .. }) if request.badge != 0 => {
                mail.lock().request = Some((request.badge, String::from(line)));
                let _ = syscall::signal(wake);
                let _ = syscall::wait(done, 0);
                mail.lock()
                    .answer
                    .take()
                    .unwrap_or((false, String::from("error: no answer\n")))
            }
            Some(ControlRequest::LoadPolicy { .. }) => (
                false,
                String::from(
                    "error: not allowed: loading a policy is the pool manager's (control channel only)\n",
                ),
            ),
            _ => (false, String::from("error: garbled request\n")),
        };
        // As much of the output as one message holds.
        let mut text = output.as_str();
        let mut out = [0u64; MAX_WORDS];
        let mut count = 0;
        let mut truncated = false;
        loop {
            let answer = control::TenantAnswer {
                ok,
                truncated,
                text,
            };
            if let Some(n) = sched_protocol::encode(&answer, &mut out) {
                count = n;
                break;
            }
            truncated = true;
            let mut cut = text.len().saturating_sub(16);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text = &text[..cut];
            if text.is_empty() {
                break;
            }
        }
        let (info, registers) = syscall::load(control::TENANT_LABEL, &out[..count], &[]);
        message = syscall::reply_recv(endpoint, info, registers);
    }
}

/// Gives an emptied map's last node back to the heap (a `BTreeMap` keeps
/// it), so the heap in use is the same whenever the manager holds the same
/// things (the soak test compares it exactly).
fn release_if_empty<K, V>(map: &mut BTreeMap<K, V>) {
    if map.is_empty() {
        *map = BTreeMap::new();
    }
}

/// Stops a server: its `Scheduler` copy goes (it can dispatch no more) and
/// its request thread stops. Its CPUs are revoked by the caller.
fn stop_server(server: &Server, scheduler: CPtr) {
    let _ = invoke::cnode_revoke(slot::ROOT_CNODE, scheduler);
    let _ = invoke::tcb_suspend(server.tcb);
}

fn describe_fault(note: &FaultNote) -> String {
    match note.label {
        fault::PAGE_FAULT => format!("page fault at {:#x}, rip {:#x}", note.address, note.rip),
        fault::EXCEPTION => format!("exception at rip {:#x}", note.rip),
        fault::WATCHDOG => format!(
            "watchdog: ran {} ms without blocking or dispatching, at rip {:#x}",
            note.address / 1_000_000,
            note.rip
        ),
        other => format!("fault message {other:#x}"),
    }
}

/// The fault watcher: records every fault message and wakes the console.
fn watch_faults(endpoint: CPtr, faults: Arc<Mutex<Vec<FaultNote>>>, wake: CPtr) {
    loop {
        let Ok(message) = tarn_rt::recv(endpoint) else {
            return;
        };
        let [rip, address, _, _] = message.mrs;
        faults.lock().push(FaultNote {
            badge: message.badge,
            label: message.label(),
            rip,
            address,
        });
        let _ = syscall::signal(wake);
    }
}
