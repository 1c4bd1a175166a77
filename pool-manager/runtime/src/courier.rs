//! Requests to scheduler servers, with a deadline. The manager never calls
//! a server itself: a courier thread makes the call and the manager waits
//! for its answer on a notification with a timeout, so a server that never
//! answers cannot stall the console. Couriers are the manager's own
//! threads, reused for every server; one left blocked by a hung server is
//! released when that server's cell is emptied (the kernel ends the call),
//! so their number stays at one plus the calls hanging at once. A request
//! that gets no answer at all marks the pool's server as failing
//! ([`Pools::request`]); [`Pools::service`] replaces it.

use crate::manager::Pools;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use spin::Mutex;
use tarn_pool_manager::pools::PoolId;
use tarn_rt::abi::sched_protocol::{self, SchedError, SchedReply, SchedRequest, LABEL, MAX_WORDS};
use tarn_rt::abi::{CPtr, Error, ObjectType};
use tarn_rt::{syscall, Resources, ThreadOptions};

/// How long a server has to answer a request (virtual time).
pub const REQUEST_DEADLINE_NS: u64 = 5_000_000_000;

/// How long a server just started has to describe its policy: it has done
/// nothing else yet, so a server that takes longer is not serving.
pub const GREET_DEADLINE_NS: u64 = 500_000_000;

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
pub(crate) struct Mail {
    pub(crate) endpoint: CPtr,
    pub(crate) words: [u64; MAX_WORDS],
    pub(crate) count: usize,
    pub(crate) cap: CPtr,
    pub(crate) reply: Option<Result<Answer, LinkError>>,
}

/// A courier thread: it makes one call to a server at a time for the
/// manager, which waits for its answer with a deadline. Couriers are the
/// manager's own threads, reused for every server: one whose call a hung
/// server never answered is busy until that server's cell is emptied
/// (the kernel then ends the call with `ObjectDeleted`), so there are at
/// most as many as calls left hanging at once, plus one.
pub(crate) struct Courier {
    pub(crate) mail: Arc<Mutex<Mail>>,
    pub(crate) go: CPtr,
    pub(crate) done: CPtr,
    /// A call has not come back yet.
    pub(crate) busy: bool,
    /// Calls made (tells a server whether its stuck call is still this
    /// courier's latest).
    pub(crate) calls: u64,
}

pub(crate) fn courier(mail: Arc<Mutex<Mail>>, go: CPtr, done: CPtr) {
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

pub(crate) fn reply_result(reply: Result<Answer, LinkError>) -> Result<Answer, String> {
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

pub(crate) fn server_error(error: SchedError) -> String {
    match error {
        SchedError::Infeasible => String::from("the policy refused the thread"),
        other => format!("the scheduler server refused: {other:?}"),
    }
}

impl Pools {
    /// Calls `pool`'s server through an idle courier, with the deadline.
    pub(crate) fn call(
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
    pub(crate) fn spare_courier(&mut self, res: &mut Resources) {
        if self.couriers.iter_mut().any(|c| c.came_back()) {
            return;
        }
        match Courier::new(res) {
            Ok(courier) => self.couriers.push(courier),
            Err(error) => crate::output::say_line(&format!(
                "error: pool manager: cannot start a courier thread: {error:?}"
            )),
        }
    }

    /// One request to `pool`'s server, with the deadline.
    pub(crate) fn request(
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
}
