//! Endpoint IPC between threads of the suite: send/receive in both orders,
//! call/reply, the server loop, the non-blocking variants, long messages,
//! badges, capability transfer, and what happens to blocked threads when
//! their endpoint or partner goes away.

use crate::harness::{code, Check, Env, Outcome, Pass, Shared, Test};
use crate::{ensure, expect, expect_err};
use alloc::string::String;
use alloc::sync::Arc;
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::{Error, MessageInfo, Rights, MAX_MESSAGE_WORDS};
use tarn_rt::invoke;
use tarn_rt::layout::slot;
use tarn_rt::{ipc_buffer, syscall};

pub const TESTS: &[Test] = &[
    ("ipc_send_to_waiting_receiver", send_to_receiver),
    ("ipc_receive_from_waiting_sender", receive_from_sender),
    ("ipc_call_reply", call_reply),
    ("ipc_reply_recv_server_loop", reply_recv_loop),
    ("ipc_nb_send_nb_recv_would_block", nonblocking_would_block),
    ("ipc_nb_send_to_waiting_receiver", nb_send_to_receiver),
    ("ipc_nb_recv_from_waiting_sender", nb_recv_from_sender),
    ("ipc_message_of_64_words", long_message),
    ("ipc_message_too_long", too_long),
    ("ipc_badges_delivered", badges),
    ("ipc_reply_without_caller", reply_without_caller),
    ("ipc_cap_transfer_with_grant", transfer_with_grant),
    ("ipc_cap_transfer_without_grant", transfer_without_grant),
    (
        "ipc_cap_transfer_without_receive_window",
        transfer_without_window,
    ),
    ("ipc_cap_transfer_unwraps_own_endpoint", transfer_unwraps),
    (
        "ipc_deleted_endpoint_wakes_receiver",
        deleted_wakes_receiver,
    ),
    ("ipc_deleted_endpoint_wakes_sender", deleted_wakes_sender),
    (
        "ipc_deleted_server_wakes_caller",
        deleted_server_wakes_caller,
    ),
    ("ipc_suspend_aborts_receive", suspend_aborts_receive),
    ("ipc_fastpath_entries_fall_back", fastpath_falls_back),
];

fn info(label: u64, length: u64) -> MessageInfo {
    MessageInfo::new(label, 0, length)
}

/// A thread that receives once on `endpoint` and records result code,
/// label, length, badge, MR0..MR3 and extra caps in `shared` words 0..8.
fn receiver(
    env: &mut Env,
    endpoint: u64,
    window: Option<(u64, u64)>,
) -> Result<(tarn_rt::Thread, Arc<Shared>), String> {
    let shared = Shared::new();
    let out = shared.clone();
    let thread = env.thread(move || {
        if let Some((first, count)) = window {
            ipc_buffer::set_receive_window(first, count);
        }
        let result = tarn_rt::recv(endpoint);
        out.set(0, code(&result));
        if let Ok(message) = result {
            out.set(1, message.label());
            out.set(2, message.length() as u64);
            out.set(3, message.badge);
            for (index, word) in message.mrs.iter().enumerate() {
                out.set(4 + index, *word);
            }
            out.set(8, message.info.extra_caps() as u64);
            out.set(9, message.info.caps_unwrapped());
            out.set(10, ipc_buffer::cap_or_badge(0));
        }
    })?;
    Ok((thread, shared))
}

fn send_to_receiver(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let (thread, shared) = receiver(env, endpoint, None)?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnReceive)?;
    expect!(tarn_rt::send(endpoint, info(7, 4), [1, 2, 3, 4]), Ok(()));
    env.join(&thread)?;
    expect!(
        [shared.get(0), shared.get(1), shared.get(2), shared.get(3)],
        [0, 7, 4, 0]
    );
    expect!(
        [shared.get(4), shared.get(5), shared.get(6), shared.get(7)],
        [1, 2, 3, 4]
    );
    Ok(Pass::Ok)
}

fn receive_from_sender(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let shared = Shared::new();
    let out = shared.clone();
    let thread = env.thread(move || {
        out.set(
            0,
            code(&tarn_rt::send(endpoint, info(3, 2), [42, 43, 0, 0])),
        )
    })?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnSend)?;
    let message = tarn_rt::recv(endpoint).ctx("recv")?;
    expect!(
        (
            message.label(),
            message.length(),
            message.mrs[0],
            message.mrs[1]
        ),
        (3, 2, 42, 43)
    );
    env.join(&thread)?;
    expect!(shared.get(0), 0);
    Ok(Pass::Ok)
}

fn call_reply(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let server = env.thread(move || {
        if let Ok(message) = tarn_rt::recv(endpoint) {
            let _ = tarn_rt::reply(
                info(message.label() + 1, 2),
                [message.mrs[0] * 2, message.badge, 0, 0],
            );
        }
    })?;
    env.wait_state(server.tcb, ThreadState::BlockedOnReceive)?;
    let badged = env.mint(endpoint, Rights::WRITE, 0xB)?;
    let answer = tarn_rt::call(badged, info(5, 1), [21, 0, 0, 0]).ctx("call")?;
    expect!(
        (
            answer.label(),
            answer.length(),
            answer.mrs[0],
            answer.mrs[1]
        ),
        (6, 2, 42, 0xB)
    );
    // Replies carry no badge.
    expect!(answer.badge, 0);
    env.join(&server)?;
    Ok(Pass::Ok)
}

fn reply_recv_loop(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let shared = Shared::new();
    let out = shared.clone();
    let server = env.thread(move || {
        let mut message = match tarn_rt::recv(endpoint) {
            Ok(message) => message,
            Err(error) => return out.set(0, error as u64),
        };
        for _ in 0..3 {
            match tarn_rt::reply_recv(endpoint, info(1, 1), [message.mrs[0] + 100, 0, 0, 0]) {
                Ok(next) => message = next,
                Err(error) => return out.set(0, error as u64),
            }
        }
        out.set(
            1,
            code(&tarn_rt::reply(info(1, 1), [message.mrs[0] + 100, 0, 0, 0])),
        );
    })?;
    for round in 0..4u64 {
        let answer = tarn_rt::call(endpoint, info(9, 1), [round, 0, 0, 0]).ctx("call")?;
        expect!(answer.mrs[0], round + 100);
    }
    env.join(&server)?;
    expect!([shared.get(0), shared.get(1)], [0, 0]);
    Ok(Pass::Ok)
}

fn nonblocking_would_block(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    expect_err!(
        tarn_rt::nb_send(endpoint, info(1, 1), [1, 0, 0, 0]),
        Error::WouldBlock
    );
    expect_err!(tarn_rt::nb_recv(endpoint), Error::WouldBlock);
    // A failed nb_send left nothing queued.
    expect_err!(tarn_rt::nb_recv(endpoint), Error::WouldBlock);
    Ok(Pass::Ok)
}

fn nb_send_to_receiver(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let (thread, shared) = receiver(env, endpoint, None)?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnReceive)?;
    expect!(tarn_rt::nb_send(endpoint, info(2, 1), [9, 0, 0, 0]), Ok(()));
    env.join(&thread)?;
    expect!([shared.get(0), shared.get(1), shared.get(4)], [0, 2, 9]);
    Ok(Pass::Ok)
}

fn nb_recv_from_sender(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let shared = Shared::new();
    let out = shared.clone();
    let thread =
        env.thread(move || out.set(0, code(&tarn_rt::send(endpoint, info(4, 1), [11, 0, 0, 0]))))?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnSend)?;
    let message = tarn_rt::nb_recv(endpoint).ctx("nb_recv")?;
    expect!((message.label(), message.mrs[0]), (4, 11));
    env.join(&thread)?;
    expect!(shared.get(0), 0);
    expect_err!(tarn_rt::nb_recv(endpoint), Error::WouldBlock);
    Ok(Pass::Ok)
}

fn long_message(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let shared = Shared::new();
    let out = shared.clone();
    let server = env.thread(move || {
        let Ok(message) = tarn_rt::recv(endpoint) else {
            return;
        };
        let mut words = [0u64; MAX_MESSAGE_WORDS];
        let length = message.words(&mut words);
        out.set(0, length as u64);
        let intact = (0..length).all(|i| words[i] == i as u64 * 3 + 1);
        out.set(1, u64::from(intact));
        words[..length].reverse();
        let (reply_info, registers) = syscall::load(message.label(), &words[..length], &[]);
        out.set(2, code(&tarn_rt::reply(reply_info, registers)));
    })?;
    env.wait_state(server.tcb, ThreadState::BlockedOnReceive)?;
    let words: alloc::vec::Vec<u64> = (0..MAX_MESSAGE_WORDS as u64).map(|i| i * 3 + 1).collect();
    let (call_info, registers) = syscall::load(0x64, &words, &[]);
    let answer = tarn_rt::call(endpoint, call_info, registers).ctx("call")?;
    env.join(&server)?;
    expect!([shared.get(0), shared.get(1), shared.get(2)], [64, 1, 0]);
    expect!(answer.length(), 64);
    for index in 0..MAX_MESSAGE_WORDS {
        let expected = (MAX_MESSAGE_WORDS - 1 - index) as u64 * 3 + 1;
        ensure!(
            answer.word(index) == expected,
            "reply word {index}: expected {expected}, got {}",
            answer.word(index)
        );
    }
    Ok(Pass::Ok)
}

fn too_long(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let words = [7u64; 65];
    let (long_info, registers) = syscall::load(1, &words, &[]);
    expect!(long_info.length(), 65);
    expect_err!(
        tarn_rt::send(endpoint, long_info, registers),
        Error::MessageTooLong
    );
    expect_err!(
        tarn_rt::nb_send(endpoint, long_info, registers),
        Error::MessageTooLong
    );
    expect_err!(
        tarn_rt::call(endpoint, long_info, registers),
        Error::MessageTooLong
    );
    expect_err!(tarn_rt::reply(long_info, registers), Error::MessageTooLong);
    expect_err!(
        tarn_rt::send(endpoint, MessageInfo(0x7F), [0; 4]),
        Error::MessageTooLong
    );
    // An invocation with a valid label and 65 words is refused the same way.
    let label = tarn_rt::abi::Invocation::MachineCheckInvariants as u64;
    expect_err!(
        tarn_rt::call(slot::MACHINE, MessageInfo::new(label, 0, 65), [0; 4]),
        Error::MessageTooLong
    );
    // 64 words is fine (nobody receives: WouldBlock, not MessageTooLong).
    let (ok_info, registers) = syscall::load(1, &words[..64], &[]);
    expect_err!(
        tarn_rt::nb_send(endpoint, ok_info, registers),
        Error::WouldBlock
    );
    Ok(Pass::Ok)
}

fn badges(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let one = env.mint(endpoint, Rights::WRITE, 1)?;
    let two = env.mint(endpoint, Rights::WRITE, 2)?;
    let shared = Shared::new();
    let out = shared.clone();
    let thread = env.thread(move || {
        for index in 0..3 {
            match tarn_rt::recv(endpoint) {
                Ok(message) => out.set(index, message.badge + 100),
                Err(error) => out.set(index, error as u64),
            }
        }
    })?;
    for cap in [one, two, endpoint] {
        expect!(tarn_rt::send(cap, info(0, 0), [0; 4]), Ok(()));
    }
    env.join(&thread)?;
    expect!(
        [shared.get(0), shared.get(1), shared.get(2)],
        [101, 102, 100]
    );
    Ok(Pass::Ok)
}

fn reply_without_caller(env: &mut Env) -> Outcome {
    expect_err!(tarn_rt::reply(info(0, 0), [0; 4]), Error::NoReplyTarget);
    // A server that already replied has no caller left to reply to; neither
    // does one that received a plain send.
    let endpoint = env.endpoint()?;
    let shared = Shared::new();
    let out = shared.clone();
    let server = env.thread(move || {
        if tarn_rt::recv(endpoint).is_ok() {
            out.set(0, code(&tarn_rt::reply(info(0, 0), [0; 4])));
            out.set(1, code(&tarn_rt::reply(info(0, 0), [0; 4])));
        }
        if tarn_rt::recv(endpoint).is_ok() {
            out.set(2, code(&tarn_rt::reply(info(0, 0), [0; 4])));
        }
    })?;
    tarn_rt::call(endpoint, info(0, 0), [0; 4]).ctx("call")?;
    expect!(tarn_rt::send(endpoint, info(0, 0), [0; 4]), Ok(()));
    env.join(&server)?;
    let no_target = Error::NoReplyTarget as u64;
    expect!(
        [shared.get(0), shared.get(1), shared.get(2)],
        [0, no_target, no_target]
    );
    Ok(Pass::Ok)
}

/// Sends `cap` through `through` to a receiver on `endpoint` whose window is
/// (`first`, `count`); returns the receiver's record.
fn transfer(
    env: &mut Env,
    endpoint: u64,
    through: u64,
    cap: u64,
    window: (u64, u64),
) -> Result<Arc<Shared>, String> {
    let (thread, shared) = receiver(env, endpoint, Some(window))?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnReceive)?;
    let (send_info, registers) = syscall::load(0x70, &[1], &[cap]);
    expect_ok(tarn_rt::send(through, send_info, registers))?;
    env.join(&thread)?;
    Ok(shared)
}

fn expect_ok(result: Result<(), Error>) -> Result<(), String> {
    result.ctx("send with a capability")
}

fn transfer_with_grant(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let notification = env.notification()?;
    let badged = env.mint(notification, Rights::ALL, 0x40)?;
    let window = env.slot()?;
    let shared = transfer(env, endpoint, endpoint, badged, (window, 1))?;
    expect!(
        [shared.get(0), shared.get(1), shared.get(8), shared.get(9)],
        [0, 0x70, 1, 0]
    );
    // The received capability is a copy of the badged one.
    expect!(tarn_rt::signal(window), Ok(()));
    expect!(tarn_rt::poll(notification), Ok(0x40));
    // ...derived from it: revoking the original removes it.
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, badged), Ok(()));
    expect_err!(tarn_rt::signal(window), Error::InvalidCapability);
    Ok(Pass::Ok)
}

fn transfer_without_grant(env: &mut Env) -> Outcome {
    // Through a capability without GRANT the message arrives, the capability
    // does not (the kernel drops it silently; the ABI says GRANT is needed to
    // transfer, not that the send fails).
    let endpoint = env.endpoint()?;
    let no_grant = env.copy(endpoint, Rights::READ.union(Rights::WRITE))?;
    let notification = env.notification()?;
    let window = env.slot()?;
    let shared = transfer(env, endpoint, no_grant, notification, (window, 1))?;
    expect!(
        [shared.get(0), shared.get(1), shared.get(4), shared.get(8)],
        [0, 0x70, 1, 0]
    );
    expect_err!(tarn_rt::poll(window), Error::InvalidCapability);
    Ok(Pass::Ok)
}

fn transfer_without_window(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let notification = env.notification()?;
    let window = env.slot()?;
    let shared = transfer(env, endpoint, endpoint, notification, (window, 0))?;
    expect!([shared.get(0), shared.get(8)], [0, 0]);
    expect_err!(tarn_rt::poll(window), Error::InvalidCapability);
    Ok(Pass::Ok)
}

fn transfer_unwraps(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let badged = env.mint(endpoint, Rights::ALL, 0x99)?;
    let window = env.slot()?;
    let shared = transfer(env, endpoint, endpoint, badged, (window, 1))?;
    expect!(
        [shared.get(0), shared.get(8), shared.get(9), shared.get(10)],
        [0, 1, 1, 0x99]
    );
    expect_err!(
        tarn_rt::nb_send(window, info(0, 0), [0; 4]),
        Error::InvalidCapability
    );
    Ok(Pass::Ok)
}

fn deleted_wakes_receiver(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let (thread, shared) = receiver(env, endpoint, None)?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnReceive)?;
    env.res.delete(endpoint).ctx("delete endpoint")?;
    env.join(&thread)?;
    expect!(shared.get(0), Error::ObjectDeleted as u64);
    Ok(Pass::Ok)
}

fn deleted_wakes_sender(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let shared = Shared::new();
    let out = shared.clone();
    let thread =
        env.thread(move || out.set(0, code(&tarn_rt::send(endpoint, info(1, 0), [0; 4]))))?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnSend)?;
    env.res.delete(endpoint).ctx("delete endpoint")?;
    env.join(&thread)?;
    expect!(shared.get(0), Error::ObjectDeleted as u64);
    Ok(Pass::Ok)
}

fn deleted_server_wakes_caller(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let server = env.thread(move || {
        // Take the call, never reply.
        let _ = tarn_rt::recv(endpoint);
    })?;
    env.wait_state(server.tcb, ThreadState::BlockedOnReceive)?;
    let shared = Shared::new();
    let out = shared.clone();
    let caller =
        env.thread(move || out.set(0, code(&tarn_rt::call(endpoint, info(1, 0), [0; 4]))))?;
    env.wait_state(caller.tcb, ThreadState::BlockedOnReply)?;
    env.join(&server)?;
    server.destroy(&mut env.res).ctx("destroy server")?;
    env.join(&caller)?;
    expect!(shared.get(0), Error::ObjectDeleted as u64);
    Ok(Pass::Ok)
}

fn suspend_aborts_receive(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let (thread, _shared) = receiver(env, endpoint, None)?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnReceive)?;
    expect!(invoke::tcb_suspend(thread.tcb), Ok(()));
    expect!(
        invoke::tcb_read_registers(thread.tcb).map(|s| s.state()),
        Ok(Some(ThreadState::Inactive))
    );
    // It no longer waits on the endpoint.
    expect_err!(
        tarn_rt::nb_send(endpoint, info(0, 0), [0; 4]),
        Error::WouldBlock
    );
    thread.destroy(&mut env.res).ctx("destroy thread")?;
    Ok(Pass::Ok)
}

/// The kernel's `Call` and `ReplyRecv` entries (user.S: the fastpath's
/// own) hand whatever their fastpath declines to the general path with
/// the same registers: a `Call` finding no receiver waits as a sender; a
/// `ReplyRecv` while a sender waits replies and takes that sender's
/// message at once; a six-word call and reply (beyond the four message
/// registers) arrive whole; and a `Call` to the waiting server (the
/// fastpath) still works after all that.
fn fastpath_falls_back(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let go = env.notification()?;
    let shared = Shared::new();
    let out = shared.clone();
    let server = env.thread(move || {
        let _ = tarn_rt::wait(go, 0);
        // A's call (it waited as a sender).
        let Ok(a) = tarn_rt::recv(endpoint) else {
            return out.set(0, 1);
        };
        // B waits too: the reply goes to A and B's message comes at once.
        let Ok(b) = tarn_rt::reply_recv(endpoint, info(2, 1), [a.mrs[0] + 1, 0, 0, 0]) else {
            return out.set(0, 2);
        };
        let mut words = [0u64; 6];
        let length = b.words(&mut words);
        out.set(1, length as u64);
        for word in &mut words {
            *word += 10;
        }
        // A six-word reply, then the main thread's call.
        let (reply_info, registers) = syscall::load(3, &words[..length], &[]);
        let Ok(c) = tarn_rt::reply_recv(endpoint, reply_info, registers) else {
            return out.set(0, 3);
        };
        out.set(
            2,
            code(&tarn_rt::reply(info(4, 1), [c.mrs[0] * 2, 0, 0, 0])),
        );
    })?;
    env.wait_state(server.tcb, ThreadState::BlockedOnNotification)?;
    let a_out = Shared::new();
    let a_shared = a_out.clone();
    let a = env.thread(move || {
        if let Ok(answer) = tarn_rt::call(endpoint, info(1, 1), [41, 0, 0, 0]) {
            a_shared.set(0, answer.label());
            a_shared.set(1, answer.mrs[0]);
        }
    })?;
    env.wait_state(a.tcb, ThreadState::BlockedOnSend)?;
    let b_out = Shared::new();
    let b_shared = b_out.clone();
    let b = env.thread(move || {
        let words = [1, 2, 3, 4, 5, 6];
        let (call_info, registers) = syscall::load(1, &words, &[]);
        if let Ok(answer) = tarn_rt::call(endpoint, call_info, registers) {
            b_shared.set(0, answer.label());
            b_shared.set(1, answer.length() as u64);
            for index in 0..6 {
                b_shared.set(2 + index, answer.word(index));
            }
        }
    })?;
    env.wait_state(b.tcb, ThreadState::BlockedOnSend)?;
    tarn_rt::signal(go).ctx("signal")?;
    env.join(&a)?;
    env.join(&b)?;
    expect!([a_out.get(0), a_out.get(1)], [2, 42]);
    expect!([b_out.get(0), b_out.get(1)], [3, 6]);
    expect!(
        (2..8)
            .map(|index| b_out.get(index))
            .collect::<alloc::vec::Vec<_>>(),
        [11, 12, 13, 14, 15, 16]
    );
    env.wait_state(server.tcb, ThreadState::BlockedOnReceive)?;
    let answer = tarn_rt::call(endpoint, info(9, 1), [21, 0, 0, 0]).ctx("call")?;
    expect!((answer.label(), answer.mrs[0]), (4, 42));
    env.join(&server)?;
    expect!([shared.get(0), shared.get(1), shared.get(2)], [0, 6, 0]);
    Ok(Pass::Ok)
}
