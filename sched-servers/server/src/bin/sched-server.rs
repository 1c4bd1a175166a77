//! A scheduler server as a process: it runs one policy (`policy=credit`,
//! `policy=sedf` or `policy=rr` on its command line; credit by default) over
//! every CPU whose capability it was given, and serves the scheduler-server
//! protocol (`tarn_ipc_schema::sched_protocol`) on the endpoint in slot
//! [`REQUEST_ENDPOINT`]: threads arrive as TCB capabilities with
//! `AddThread`, parameters with `SetCredit`/`SetSedf`/`SetGroup`/
//! `SetCreditPool`. A request it cannot decode or refuses gets an error reply
//! and changes nothing.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use tarn_rt::abi::sched_protocol::{self, SchedError, SchedReply, SchedRequest, LABEL, MAX_WORDS};
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
    let policy = info
        .cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("policy="))
        .unwrap_or("credit");
    println!("sched-server: {policy} on {} cpus", cpus.len());
    let ring = FREE_WINDOW_BASE + 0x6000_0000;
    match policy {
        "sedf" => start(&mut res, Sedf::new(), &cpus, ring),
        "rr" => start(&mut res, RoundRobin::default(), &cpus, ring),
        _ => start(&mut res, Credit::new(), &cpus, ring),
    }
}

fn start<P: Policy + Send + 'static>(res: &mut Resources, policy: P, cpus: &[PoolCpu], ring: u64) {
    match Pool::start(res, policy, cpus, ring) {
        Ok(pool) => serve(res, &pool),
        Err(error) => println!("sched-server: cannot start: {error:?}"),
    }
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

fn handle<P: Policy + Send + 'static>(
    res: &mut Resources,
    pool: &Pool<P>,
    info: MessageInfo,
    words: &[u64],
) -> SchedReply {
    let mut scratch = [0u8; MAX_WORDS * 8];
    let Some(request) = (info.label() == LABEL)
        .then(|| sched_protocol::decode::<SchedRequest>(words, &mut scratch))
        .flatten()
    else {
        return SchedReply::Error(SchedError::Malformed);
    };
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
            let Ok(tcb) = res.alloc_slot() else {
                return SchedReply::Error(SchedError::Kernel(Error::OutOfMemory as u64));
            };
            if let Err(e) =
                invoke::cnode_move(slot::ROOT_CNODE, tcb, slot::ROOT_CNODE, RECEIVE_SLOT)
            {
                return SchedReply::Error(SchedError::Kernel(e as u64));
            }
            let result = pool.add_thread(tcb, thread_id, DomainId(domain));
            if result.is_err() {
                let _ = invoke::cnode_delete(slot::ROOT_CNODE, tcb);
            }
            outcome(result)
        }
        SchedRequest::RemoveThread { thread_id } => match pool.thread(thread_id) {
            None => SchedReply::Error(SchedError::UnknownThread),
            Some(_) => outcome(pool.remove_thread(thread_id)),
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
    }
}

fn serve<P: Policy + Send + 'static>(res: &mut Resources, pool: &Pool<P>) {
    ipc_buffer::set_receive_window(RECEIVE_SLOT, 1);
    let mut message = syscall::recv(REQUEST_ENDPOINT);
    loop {
        let Ok(request) = message else {
            println!("sched-server: request endpoint failed: {message:?}");
            return;
        };
        let length = request.info.length().min(MAX_WORDS);
        let mut words = [0u64; MAX_WORDS];
        for (i, word) in words.iter_mut().enumerate().take(length) {
            *word = if i < 4 {
                request.mrs[i]
            } else {
                ipc_buffer::mr(i)
            };
        }
        let reply = handle(res, pool, request.info, &words[..length]);
        let mut out = [0u64; MAX_WORDS];
        let count = sched_protocol::encode(&reply, &mut out).unwrap_or(0);
        let (info, registers) = syscall::load(LABEL, &out[..count], &[]);
        ipc_buffer::set_receive_window(RECEIVE_SLOT, 1);
        message = syscall::reply_recv(REQUEST_ENDPOINT, info, registers);
    }
}
