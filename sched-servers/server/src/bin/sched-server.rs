//! A scheduler server as a process: it runs one policy (`policy=credit`,
//! `policy=sedf` or `policy=rr` on its command line; credit by default) over
//! every CPU whose capability it was given, and serves the scheduler-server
//! protocol (`tarn_ipc_schema::sched_protocol`) on the endpoint in slot
//! [`REQUEST_ENDPOINT`]: threads arrive as TCB capabilities with
//! `AddThread`, parameters with `SetCredit`/`SetSedf`/`SetGroup`/
//! `SetCreditPool`; CPUs come and go with `AddCpu` (the `Cpu` capability
//! attached) and `RemoveCpu` (negotiated release). A request it cannot decode
//! or refuses gets an error reply and changes nothing.
//!
//! Started by the pool manager, it gets `scheduler=11` on its command line:
//! the pool's `Scheduler` capability is in slot 11 (the manager keeps the
//! original, so a replacement server can take the pool over), and CPUs arrive
//! by `AddCpu`. Otherwise it makes its own `Scheduler` and binds every CPU
//! capability in its start page.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use tarn_rt::abi::sched_protocol::{
    self, Misbehaviour, SchedError, SchedReply, SchedRequest, LABEL, MAX_WORDS,
};
use tarn_rt::abi::{CPtr, Error, MessageInfo};
use tarn_rt::layout::{slot, FREE_WINDOW_BASE};
use tarn_rt::{invoke, ipc_buffer, println, syscall, Resources};
use tarn_sched_server::{Pool, PoolCpu, ServerError};
use tarn_sched_servers::credit::Credit;
use tarn_sched_servers::rr::RoundRobin;
use tarn_sched_servers::sedf::Sedf;
use tarn_sched_servers::{DomainId, DomainParams, Policy, PolicyError, PoolParams};

tarn_rt::entry!(main);

/// The slot of the endpoint requests arrive on.
pub const REQUEST_ENDPOINT: CPtr = 9;
/// The slot a thread's TCB capability is received into.
const RECEIVE_SLOT: CPtr = 10;

fn main(arg: u64) {
    let Some(info) = tarn_rt::start_info(arg) else {
        return;
    };
    let mut res = Resources::from_boot_info(info);
    let mut cpus = Vec::new();
    for i in 0..info.cpu_count {
        let cap = info.first_cpu_slot + i;
        match invoke::cpu_info(cap) {
            Ok((index, _, _)) if info.first_cpu_slot != 0 => cpus.push(PoolCpu { index, cap }),
            _ => {}
        }
    }
    let setting = |key: &str| {
        info.cmdline()
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
    };
    let policy = setting("policy=").unwrap_or("credit");
    let scheduler = setting("scheduler=").and_then(|s| s.parse::<CPtr>().ok());
    if scheduler.is_none() {
        println!("sched-server: {policy} on {} cpus", cpus.len());
    }
    let ring = FREE_WINDOW_BASE + 0x6000_0000;
    match policy {
        "sedf" => start(&mut res, Sedf::new(), scheduler, &cpus, ring),
        "rr" => start(&mut res, RoundRobin::default(), scheduler, &cpus, ring),
        _ => start(&mut res, Credit::new(), scheduler, &cpus, ring),
    }
}

fn start<P: Policy + Send + 'static>(
    res: &mut Resources,
    policy: P,
    scheduler: Option<CPtr>,
    cpus: &[PoolCpu],
    ring: u64,
) {
    match Pool::start(res, policy, scheduler, cpus, ring) {
        Ok(mut pool) => serve(res, &mut pool),
        Err(error) => println!("sched-server: cannot start: {error:?}"),
    }
}

/// How this server misbehaves (fault injection; `None` normally).
struct Quirks {
    ignore_remove_cpu: bool,
}

fn policy_error(error: &ServerError) -> SchedError {
    match error {
        ServerError::Kernel(e) => SchedError::Kernel(*e as u64),
        ServerError::Policy(PolicyError::WrongPolicy { .. }) => SchedError::WrongPolicy,
        ServerError::Policy(PolicyError::Infeasible { .. }) => SchedError::Infeasible,
        ServerError::Policy(PolicyError::DuplicateThread { .. }) => SchedError::BadThreadId,
        ServerError::Policy(_) => SchedError::InvalidParameter,
    }
}

fn outcome(result: Result<(), ServerError>) -> SchedReply {
    match result {
        Ok(()) => SchedReply::Ok,
        Err(error) => SchedReply::Error(policy_error(&error)),
    }
}

/// What to do after handling a request.
enum Next {
    Reply(SchedReply),
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
    invoke::cnode_move(slot::ROOT_CNODE, cap, slot::ROOT_CNODE, RECEIVE_SLOT)
        .map_err(|e| SchedError::Kernel(e as u64))?;
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
        return Next::Reply(SchedReply::Error(SchedError::Malformed));
    };
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
            SchedReply::Error(SchedError::BadCpu)
        }),
        SchedRequest::Ping => Next::Reply(SchedReply::Ok),
        SchedRequest::Misbehave(Misbehaviour::IgnoreRemoveCpu) => {
            quirks.ignore_remove_cpu = true;
            Next::Reply(SchedReply::Ok)
        }
        SchedRequest::Misbehave(how) => Next::ReplyThen(how),
        other => Next::Reply(handle_thread_request(res, pool, info, other)),
    }
}

fn add_cpu<P: Policy + Send + 'static>(
    res: &mut Resources,
    pool: &mut Pool<P>,
    info: MessageInfo,
    cpu: u32,
) -> SchedReply {
    if info.extra_caps() == 0 {
        return SchedReply::Error(SchedError::BadCpu);
    }
    let cap = match take_received(res) {
        Ok(cap) => cap,
        Err(error) => return SchedReply::Error(error),
    };
    let index = u64::from(cpu);
    let result = match invoke::cpu_info(cap) {
        Ok((actual, _, _)) if actual == index && !pool.cpus().contains(&index) => {
            outcome(pool.add_cpu(res, PoolCpu { index, cap }))
        }
        _ => SchedReply::Error(SchedError::BadCpu),
    };
    if result != SchedReply::Ok {
        let _ = res.delete(cap);
    }
    result
}

fn handle_thread_request<P: Policy + Send + 'static>(
    res: &mut Resources,
    pool: &Pool<P>,
    info: MessageInfo,
    request: SchedRequest,
) -> SchedReply {
    match request {
        SchedRequest::AddThread { thread_id, domain } => {
            if info.extra_caps() == 0 {
                return SchedReply::Error(SchedError::NoThreadCapability);
            }
            if thread_id == 0 || pool.thread(thread_id).is_some() {
                let _ = invoke::cnode_delete(slot::ROOT_CNODE, RECEIVE_SLOT);
                return SchedReply::Error(SchedError::BadThreadId);
            }
            // Keep the TCB capability in a slot of its own (the receive slot
            // must be free for the next request).
            let tcb = match take_received(res) {
                Ok(tcb) => tcb,
                Err(error) => return SchedReply::Error(error),
            };
            let result = pool.add_thread(tcb, thread_id, DomainId(domain));
            if result.is_err() {
                let _ = res.delete(tcb);
            }
            outcome(result)
        }
        // The thread's TCB capability goes and its slot serves again: a
        // pool adopts and releases domains for as long as it runs.
        SchedRequest::RemoveThread { thread_id } => match pool.thread(thread_id) {
            None => SchedReply::Error(SchedError::UnknownThread),
            Some(_) => match pool.remove_thread(thread_id) {
                Ok(slot) => {
                    res.slots.free(slot);
                    SchedReply::Ok
                }
                Err((slot, error)) => {
                    res.slots.free(slot);
                    outcome(Err::<(), _>(error))
                }
            },
        },
        SchedRequest::SetCredit {
            domain,
            weight,
            cap_pct,
        } => outcome(
            pool.set_domain_params(DomainId(domain), &DomainParams::Credit { weight, cap_pct }),
        ),
        SchedRequest::SetSedf {
            domain,
            period_ns,
            slice_ns,
            extra,
        } => outcome(pool.set_domain_params(
            DomainId(domain),
            &DomainParams::Sedf {
                period_ns,
                slice_ns,
                extra,
            },
        )),
        SchedRequest::SetGroup { domain, master } => outcome(pool.set_domain_params(
            DomainId(domain),
            &DomainParams::Group {
                master: master.map(DomainId),
            },
        )),
        SchedRequest::SetCreditPool {
            timeslice_ms,
            ratelimit_us,
        } => outcome(pool.set_pool_params(&PoolParams::Credit {
            timeslice_ms,
            ratelimit_us,
        })),
        SchedRequest::QueryThread { thread_id } => match pool.thread(thread_id) {
            None => SchedReply::Error(SchedError::UnknownThread),
            Some(tcb) => match invoke::scheduler_query_thread(pool.scheduler(), tcb) {
                Ok(q) => SchedReply::ThreadTime { ran_ns: q.ran_ns },
                Err(e) => SchedReply::Error(SchedError::Kernel(e as u64)),
            },
        },
        // Handled by `handle`.
        SchedRequest::AddCpu { .. }
        | SchedRequest::RemoveCpu { .. }
        | SchedRequest::Ping
        | SchedRequest::Misbehave(_) => SchedReply::Error(SchedError::Malformed),
    }
}

fn serve<P: Policy + Send + 'static>(res: &mut Resources, pool: &mut Pool<P>) {
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
        let (reply, then) = match handle(res, pool, &mut quirks, request.info, &words[..length]) {
            Next::Reply(reply) => (reply, None),
            Next::ReplyThen(how) => (SchedReply::Ok, Some(how)),
            Next::Ignore => {
                ipc_buffer::set_receive_window(RECEIVE_SLOT, 1);
                message = syscall::recv(REQUEST_ENDPOINT);
                continue;
            }
        };
        let mut out = [0u64; MAX_WORDS];
        let count = sched_protocol::encode(&reply, &mut out).unwrap_or(0);
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
