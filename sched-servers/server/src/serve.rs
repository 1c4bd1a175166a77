//! A policy server process in one call: [`serve`] runs a policy over the
//! CPUs the process is given and answers the scheduler-server protocol
//! (`tarn_ipc_schema::sched_protocol`) on the endpoint in slot
//! [`REQUEST_ENDPOINT`]. A server binary is
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! tarn_rt::entry!(main);
//! fn main(_: u64) {
//!     tarn_sched_server::serve(MyPolicy::default());
//! }
//! ```
//!
//! Threads arrive as TCB capabilities with `AddThread`; parameters as
//! `key=value` text (`SetDomainParams`, `SetPoolParams`), parsed against
//! the policy's declarations and checked by the policy; `Describe`,
//! `DescribeParam`, `GetDomainParams` and `GetPoolParams` tell a client what
//! the policy takes; CPUs come and go with `AddCpu` (the `Cpu` capability
//! attached) and `RemoveCpu` (negotiated release). A request it cannot
//! decode or refuses gets an error reply and changes nothing.
//!
//! Started by the pool manager, the process gets `scheduler=11 fault=12` on
//! its command line: the pool's `Scheduler` capability is in slot 11 (the
//! manager keeps the original, so a replacement server can take the pool
//! over), the manager's fault endpoint (badged for this server) in slot 12,
//! given to every agent thread (so the manager hears of an agent that
//! crashes or that the kernel's watchdog stops), and CPUs arrive by
//! `AddCpu`. The kernel confines the process to that `Scheduler`: its
//! threads run only on the pool's CPUs (see the crate docs). Otherwise it
//! makes its own `Scheduler` and binds every CPU capability in its start
//! page.
//!
//! Slots are given back as things leave: the capability of a CPU removed
//! or refused, of a thread released or refused, of anything attached to a
//! malformed request. A pool takes CPUs and domains in and out for as long
//! as it runs.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use tarn_rt::abi::sched_protocol::{
    self, Misbehaviour, SchedError, SchedReply, SchedRequest, LABEL, MAX_WORDS,
};
use tarn_rt::abi::{CPtr, Error, MessageInfo};
use tarn_rt::layout::{slot, BOOT_INFO_VADDR, FREE_WINDOW_BASE};
use tarn_rt::{invoke, ipc_buffer, println, syscall, Resources};
use tarn_sched_servers::{DomainId, ParamSpec, Policy, PolicyError};

use crate::{Pool, PoolCpu, ServerError};

/// The slot of the endpoint requests arrive on.
pub const REQUEST_ENDPOINT: CPtr = 9;
/// The slot a thread's TCB capability is received into.
const RECEIVE_SLOT: CPtr = 10;

/// Runs `policy` as this process's scheduler server until the request
/// endpoint fails (it never returns while the pool manager holds it).
pub fn serve<P: Policy + Send + 'static>(policy: P) {
    let Some(info) = tarn_rt::start_info(BOOT_INFO_VADDR) else {
        return;
    };
    let mut res = Resources::from_boot_info(info);
    // Half the memory it is given is the heap's to grow into past its
    // static span (a policy's state grows with its threads: credit's ran
    // out of the 512 KiB span at 730 one-thread domains); the rest is for
    // its agents.
    let memory: u64 = info.untyped().iter().map(|u| 1u64 << u.size_bits).sum();
    if let Err(error) = tarn_rt::heap::set_aside(&mut res, memory / 2) {
        tarn_rt::println!("server: the heap cannot grow: {error:?}");
    }
    let mut cpus = Vec::new();
    for i in 0..info.cpu_count {
        let cap = info.first_cpu_slot + i;
        match invoke::cpu_info(cap) {
            Ok((index, _, _)) if info.first_cpu_slot != 0 => cpus.push(PoolCpu { index, cap }),
            _ => {}
        }
    }
    let slot_named = |key: &str| {
        info.cmdline()
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|s| s.parse::<CPtr>().ok())
    };
    let scheduler = slot_named("scheduler=");
    let fault_endpoint = slot_named("fault=").unwrap_or(0);
    if scheduler.is_none() {
        println!("sched-server: {} on {} cpus", policy.name(), cpus.len());
    }
    let ring = FREE_WINDOW_BASE + 0x6000_0000;
    match Pool::start(&mut res, policy, scheduler, &cpus, ring) {
        Ok(mut pool) => {
            pool.set_fault_endpoint(fault_endpoint);
            request_loop(&mut res, &mut pool)
        }
        Err(error) => println!("sched-server: cannot start: {error:?}"),
    }
}

/// How this server misbehaves (fault injection; off normally).
struct Quirks {
    ignore_remove_cpu: bool,
}

/// An answer, owning its text until it is encoded.
enum Answer {
    Ok,
    ThreadTime(u64),
    Values(String),
    Policy {
        name: &'static str,
        domain_params: u32,
        pool_params: u32,
    },
    Param {
        spec: &'static ParamSpec,
        range: String,
        default: String,
    },
    Refused(String),
    Error(SchedError),
}

impl Answer {
    fn reply(&self) -> SchedReply<'_> {
        match self {
            Answer::Ok => SchedReply::Ok,
            Answer::ThreadTime(ran_ns) => SchedReply::ThreadTime { ran_ns: *ran_ns },
            Answer::Values(text) => SchedReply::Values(text),
            Answer::Policy {
                name,
                domain_params,
                pool_params,
            } => SchedReply::Policy {
                name,
                domain_params: *domain_params,
                pool_params: *pool_params,
            },
            Answer::Param {
                spec,
                range,
                default,
            } => SchedReply::Param {
                name: spec.name,
                range,
                default,
                help: spec.help,
            },
            Answer::Refused(text) => SchedReply::Refused(text),
            Answer::Error(error) => SchedReply::Error(*error),
        }
    }
}

fn server_error(error: &ServerError) -> SchedError {
    match error {
        ServerError::Kernel(e) => SchedError::Kernel(*e as u64),
        ServerError::Policy(PolicyError::DuplicateThread { .. }) => SchedError::BadThreadId,
        ServerError::Policy(_) => SchedError::Infeasible,
    }
}

fn outcome(result: Result<(), ServerError>) -> Answer {
    match result {
        Ok(()) => Answer::Ok,
        Err(error) => Answer::Error(server_error(&error)),
    }
}

/// What to do after handling a request.
enum Next {
    Reply(Answer),
    /// Do not answer (fault injection).
    Ignore,
    /// Answer, then misbehave this way.
    ReplyThen(Misbehaviour),
}

/// Moves the capability that arrived with a request out of the receive
/// slot into a slot of its own.
fn take_received(res: &mut Resources) -> Result<CPtr, SchedError> {
    let Ok(cap) = res.alloc_slot() else {
        let _ = invoke::cnode_delete(slot::ROOT_CNODE, RECEIVE_SLOT);
        return Err(SchedError::Kernel(Error::OutOfMemory as u64));
    };
    if let Err(e) = invoke::cnode_move(slot::ROOT_CNODE, cap, slot::ROOT_CNODE, RECEIVE_SLOT) {
        res.slots.free(cap);
        let _ = invoke::cnode_delete(slot::ROOT_CNODE, RECEIVE_SLOT);
        return Err(SchedError::Kernel(e as u64));
    }
    Ok(cap)
}

fn handle<P: Policy + Send + 'static>(
    res: &mut Resources,
    pool: &mut Pool<P>,
    quirks: &mut Quirks,
    info: MessageInfo,
    words: &[u64],
) -> Next {
    let mut scratch = [0u8; MAX_WORDS * 8];
    let Some(request) = (info.label() == LABEL)
        .then(|| sched_protocol::decode::<SchedRequest>(words, &mut scratch))
        .flatten()
    else {
        if info.extra_caps() != 0 {
            let _ = invoke::cnode_delete(slot::ROOT_CNODE, RECEIVE_SLOT);
        }
        return Next::Reply(Answer::Error(SchedError::Malformed));
    };
    // Only AddThread and AddCpu take a capability: any other drops it.
    let takes_cap = matches!(
        request,
        SchedRequest::AddThread { .. } | SchedRequest::AddCpu { .. }
    );
    if info.extra_caps() != 0 && !takes_cap {
        let _ = invoke::cnode_delete(slot::ROOT_CNODE, RECEIVE_SLOT);
    }
    match request {
        SchedRequest::AddCpu { cpu } => Next::Reply(add_cpu(res, pool, info, cpu)),
        SchedRequest::RemoveCpu { .. } if quirks.ignore_remove_cpu => Next::Ignore,
        SchedRequest::RemoveCpu { cpu } => Next::Reply(if pool.cpus().contains(&u64::from(cpu)) {
            // The CPU capability's slot serves again (a pool's CPUs come
            // and go for as long as it runs).
            outcome(
                pool.remove_cpu(u64::from(cpu))
                    .map(|slot| res.slots.free(slot)),
            )
        } else {
            Answer::Error(SchedError::BadCpu)
        }),
        SchedRequest::Ping => Next::Reply(Answer::Ok),
        SchedRequest::Misbehave(Misbehaviour::IgnoreRemoveCpu) => {
            quirks.ignore_remove_cpu = true;
            Next::Reply(Answer::Ok)
        }
        SchedRequest::Misbehave(how) => Next::ReplyThen(how),
        SchedRequest::AddThread { thread_id, domain } => {
            Next::Reply(add_thread(res, pool, info, thread_id, domain))
        }
        SchedRequest::RemoveThread { thread_id } => {
            Next::Reply(remove_thread(res, pool, thread_id))
        }
        SchedRequest::QueryThread { thread_id } => Next::Reply(match pool.thread(thread_id) {
            None => Answer::Error(SchedError::UnknownThread),
            Some(tcb) => match invoke::scheduler_query_thread(pool.scheduler(), tcb) {
                Ok(q) => Answer::ThreadTime(q.ran_ns),
                Err(e) => Answer::Error(SchedError::Kernel(e as u64)),
            },
        }),
        SchedRequest::SetAffinity { thread_id, cpus } => {
            Next::Reply(set_affinity(pool, thread_id, cpus, false))
        }
        SchedRequest::SetSoftAffinity { thread_id, cpus } => {
            Next::Reply(set_affinity(pool, thread_id, cpus, true))
        }
        other => Next::Reply(handle_params(pool, other)),
    }
}

/// The parameter requests: the policy's declarations, values and changes.
fn handle_params<P: Policy + Send + 'static>(pool: &Pool<P>, request: SchedRequest) -> Answer {
    let refused = |error: tarn_sched_servers::ParamError| Answer::Refused(error.to_string());
    match request {
        SchedRequest::SetDomainParams { domain, params } => pool
            .set_domain_text(DomainId(domain), params)
            .map_or_else(refused, |()| Answer::Ok),
        SchedRequest::SetPoolParams { params } => pool
            .set_pool_text(params)
            .map_or_else(refused, |()| Answer::Ok),
        SchedRequest::GetDomainParams { domain } => {
            Answer::Values(pool.domain_text(DomainId(domain)))
        }
        SchedRequest::GetPoolParams => Answer::Values(pool.pool_text()),
        SchedRequest::Describe => {
            let (name, domain, pool) = pool.policy_info();
            Answer::Policy {
                name,
                domain_params: u32::try_from(domain.len()).unwrap_or(u32::MAX),
                pool_params: u32::try_from(pool.len()).unwrap_or(u32::MAX),
            }
        }
        SchedRequest::DescribeParam {
            pool: of_pool,
            index,
        } => {
            let (_, domain, pool) = pool.policy_info();
            let specs = if of_pool { pool } else { domain };
            match usize::try_from(index).ok().and_then(|i| specs.get(i)) {
                Some(spec) => Answer::Param {
                    spec,
                    range: spec.range(),
                    default: format!("{}", spec.default),
                },
                None => Answer::Error(SchedError::NoSuchParam),
            }
        }
        // Handled by `handle`.
        _ => Answer::Error(SchedError::Malformed),
    }
}

/// `SetAffinity` (`soft`: `SetSoftAffinity`): an unknown thread is an
/// error; the policy's refusal is `Refused` with its reason (as for the
/// parameter requests); nothing changes on either.
fn set_affinity<P: Policy + Send + 'static>(
    pool: &Pool<P>,
    thread_id: u64,
    bitmap: Option<&[u8]>,
    soft: bool,
) -> Answer {
    if pool.thread(thread_id).is_none() {
        return Answer::Error(SchedError::UnknownThread);
    }
    let cpus: Option<Vec<u64>> =
        bitmap.map(|bytes| sched_protocol::bitmap_cpus(bytes).map(u64::from).collect());
    let set = if soft {
        pool.set_soft_affinity(thread_id, cpus.as_deref())
    } else {
        pool.set_affinity(thread_id, cpus.as_deref())
    };
    match set {
        Ok(()) => Answer::Ok,
        Err(ServerError::Policy(PolicyError::UnknownThread { .. })) => {
            Answer::Error(SchedError::UnknownThread)
        }
        Err(ServerError::Policy(error)) => Answer::Refused(format!(
            "{}affinity: {error}",
            if soft { "soft " } else { "" }
        )),
        Err(error) => Answer::Error(server_error(&error)),
    }
}

fn add_cpu<P: Policy + Send + 'static>(
    res: &mut Resources,
    pool: &mut Pool<P>,
    info: MessageInfo,
    cpu: u32,
) -> Answer {
    if info.extra_caps() == 0 {
        return Answer::Error(SchedError::BadCpu);
    }
    let cap = match take_received(res) {
        Ok(cap) => cap,
        Err(error) => return Answer::Error(error),
    };
    let index = u64::from(cpu);
    let result = match invoke::cpu_info(cap) {
        Ok((actual, _, _)) if actual == index && !pool.cpus().contains(&index) => {
            outcome(pool.add_cpu(res, PoolCpu { index, cap }))
        }
        _ => Answer::Error(SchedError::BadCpu),
    };
    if !matches!(result, Answer::Ok) {
        let _ = res.delete(cap);
    }
    result
}

fn add_thread<P: Policy + Send + 'static>(
    res: &mut Resources,
    pool: &Pool<P>,
    info: MessageInfo,
    thread_id: u64,
    domain: u32,
) -> Answer {
    if info.extra_caps() == 0 {
        return Answer::Error(SchedError::NoThreadCapability);
    }
    if thread_id == 0 || pool.thread(thread_id).is_some() {
        let _ = invoke::cnode_delete(slot::ROOT_CNODE, RECEIVE_SLOT);
        return Answer::Error(SchedError::BadThreadId);
    }
    // Keep the TCB capability in a slot of its own (the receive slot must
    // be free for the next request).
    let tcb = match take_received(res) {
        Ok(tcb) => tcb,
        Err(error) => return Answer::Error(error),
    };
    let result = pool.add_thread(tcb, thread_id, DomainId(domain));
    if result.is_err() {
        let _ = res.delete(tcb);
    }
    outcome(result)
}

/// The thread's TCB capability goes and its slot serves again: a pool
/// adopts and releases domains for as long as it runs.
fn remove_thread<P: Policy + Send + 'static>(
    res: &mut Resources,
    pool: &Pool<P>,
    thread_id: u64,
) -> Answer {
    match pool.thread(thread_id) {
        None => Answer::Error(SchedError::UnknownThread),
        Some(_) => match pool.remove_thread(thread_id) {
            Ok(slot) => {
                res.slots.free(slot);
                Answer::Ok
            }
            Err((slot, error)) => {
                if slot != 0 {
                    res.slots.free(slot);
                }
                outcome(Err(error))
            }
        },
    }
}

fn request_loop<P: Policy + Send + 'static>(res: &mut Resources, pool: &mut Pool<P>) {
    let mut quirks = Quirks {
        ignore_remove_cpu: false,
    };
    ipc_buffer::set_receive_window(RECEIVE_SLOT, 1);
    let mut message = syscall::recv(REQUEST_ENDPOINT);
    loop {
        let Ok(request) = message else {
            println!("sched-server: request endpoint failed: {message:?}");
            return;
        };
        let mut words = [0u64; MAX_WORDS];
        let length = request.words(&mut words).min(MAX_WORDS);
        let (answer, then) = match handle(res, pool, &mut quirks, request.info, &words[..length]) {
            Next::Reply(answer) => (answer, None),
            Next::ReplyThen(how) => (Answer::Ok, Some(how)),
            Next::Ignore => {
                ipc_buffer::set_receive_window(RECEIVE_SLOT, 1);
                message = syscall::recv(REQUEST_ENDPOINT);
                continue;
            }
        };
        let mut out = [0u64; MAX_WORDS];
        let count = sched_protocol::encode(&answer.reply(), &mut out)
            .or_else(|| sched_protocol::encode(&SchedReply::Error(SchedError::TooLong), &mut out))
            .unwrap_or(0);
        let (info, registers) = syscall::load(LABEL, &out[..count], &[]);
        ipc_buffer::set_receive_window(RECEIVE_SLOT, 1);
        match then {
            None => message = syscall::reply_recv(REQUEST_ENDPOINT, info, registers),
            Some(how) => {
                let _ = syscall::reply(info, registers);
                misbehave(res, how);
            }
        }
    }
}

/// Fault injection: stop serving (the request thread waits forever on a
/// notification nobody signals), or crash (a fault the manager sees).
fn misbehave(res: &mut Resources, how: Misbehaviour) -> ! {
    if how == Misbehaviour::Crash {
        panic!("sched-server: crashing as asked");
    }
    if let Ok(never) = res.create(tarn_rt::abi::ObjectType::Notification, 0) {
        loop {
            let _ = syscall::wait(never, 0);
        }
    }
    tarn_rt::exit()
}
