//! Notifications: signal and wait, badge OR-ing, poll, timeouts, waking a
//! waiting thread, `Send`/`Recv` on notifications, bound notifications, and
//! deletion under a waiter.

use crate::harness::{code, Check, Env, Outcome, Pass, Shared, Test};
use crate::{ensure, expect, expect_err};
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::{Error, MessageInfo, Rights};
use tarn_rt::invoke;

pub const TESTS: &[Test] = &[
    ("ntfn_signal_then_wait", signal_then_wait),
    ("ntfn_badges_or_together", badges_or),
    ("ntfn_poll_empty_would_block", poll_empty),
    ("ntfn_unbadged_signal_pends_with_word_zero", unbadged_signal),
    ("ntfn_wait_timeout", wait_timeout),
    ("ntfn_signal_wakes_waiter", wakes_waiter),
    ("ntfn_signal_before_timeout", signal_before_timeout),
    (
        "ntfn_send_and_recv_on_notification",
        send_recv_on_notification,
    ),
    ("ntfn_bound_wakes_endpoint_receive", bound_wakes_receive),
    ("ntfn_bound_pending_signal_first", bound_pending_first),
    ("ntfn_bind_unbind_rules", bind_rules),
    ("ntfn_deleted_wakes_waiter", deleted_wakes_waiter),
];

fn signal_then_wait(env: &mut Env) -> Outcome {
    let notification = env.notification()?;
    let badged = env.mint(notification, Rights::WRITE, 1)?;
    expect!(tarn_rt::signal(badged), Ok(()));
    expect!(tarn_rt::wait(notification, 0), Ok(1));
    expect_err!(tarn_rt::poll(notification), Error::WouldBlock);
    Ok(Pass::Ok)
}

fn badges_or(env: &mut Env) -> Outcome {
    let notification = env.notification()?;
    let mut caps = [0u64; 3];
    for (index, cap) in caps.iter_mut().enumerate() {
        *cap = env.mint(notification, Rights::WRITE, 1 << index)?;
    }
    for cap in caps {
        expect!(tarn_rt::signal(cap), Ok(()));
    }
    expect!(tarn_rt::signal(caps[0]), Ok(()));
    expect!(tarn_rt::wait(notification, 0), Ok(0b111));
    expect_err!(tarn_rt::poll(notification), Error::WouldBlock);
    expect!(tarn_rt::signal(caps[2]), Ok(()));
    expect!(tarn_rt::poll(notification), Ok(0b100));
    Ok(Pass::Ok)
}

fn poll_empty(env: &mut Env) -> Outcome {
    let notification = env.notification()?;
    expect_err!(tarn_rt::poll(notification), Error::WouldBlock);
    expect_err!(tarn_rt::nb_recv(notification), Error::WouldBlock);
    Ok(Pass::Ok)
}

fn unbadged_signal(env: &mut Env) -> Outcome {
    let notification = env.notification()?;
    expect!(tarn_rt::signal(notification), Ok(()));
    // A signal through an unbadged capability still counts: it pends with
    // word 0 and is consumed by the next wait or poll.
    expect!(tarn_rt::poll(notification), Ok(0));
    expect_err!(tarn_rt::poll(notification), Error::WouldBlock);
    expect!(tarn_rt::signal(notification), Ok(()));
    expect!(tarn_rt::wait(notification, 0), Ok(0));
    Ok(Pass::Ok)
}

fn wait_timeout(env: &mut Env) -> Outcome {
    let notification = env.notification()?;
    expect_err!(tarn_rt::wait(notification, 2_000_000), Error::Timeout);
    expect_err!(tarn_rt::wait(notification, 1), Error::Timeout);
    // A timed-out wait leaves nothing behind: a later signal is seen normally.
    let badged = env.mint(notification, Rights::WRITE, 8)?;
    expect!(tarn_rt::signal(badged), Ok(()));
    expect!(tarn_rt::wait(notification, 2_000_000), Ok(8));
    Ok(Pass::Ok)
}

fn wakes_waiter(env: &mut Env) -> Outcome {
    let notification = env.notification()?;
    let badged = env.mint(notification, Rights::WRITE, 0x10)?;
    let shared = Shared::new();
    let out = shared.clone();
    let thread = env.thread(move || {
        let result = tarn_rt::wait(notification, 0);
        out.set(0, code(&result));
        out.set(1, result.unwrap_or(0));
    })?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnNotification)?;
    expect!(tarn_rt::signal(badged), Ok(()));
    env.join(&thread)?;
    expect!([shared.get(0), shared.get(1)], [0, 0x10]);
    Ok(Pass::Ok)
}

fn signal_before_timeout(env: &mut Env) -> Outcome {
    let notification = env.notification()?;
    let badged = env.mint(notification, Rights::WRITE, 0x20)?;
    let shared = Shared::new();
    let out = shared.clone();
    let thread = env.thread(move || {
        let result = tarn_rt::wait(notification, 5_000_000_000);
        out.set(0, code(&result));
        out.set(1, result.unwrap_or(0));
    })?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnNotification)?;
    expect!(tarn_rt::signal(badged), Ok(()));
    env.join(&thread)?;
    expect!([shared.get(0), shared.get(1)], [0, 0x20]);
    Ok(Pass::Ok)
}

fn send_recv_on_notification(env: &mut Env) -> Outcome {
    // `Send` and `NbSend` on a notification signal it; `Recv` and `NbRecv`
    // wait on it, the word arriving as the badge.
    let notification = env.notification()?;
    let badged = env.mint(notification, Rights::WRITE, 0x3)?;
    expect!(
        tarn_rt::send(badged, MessageInfo::default(), [0; 4]),
        Ok(())
    );
    let message = tarn_rt::recv(notification).ctx("recv")?;
    expect!(message.badge, 0x3);
    expect!(
        tarn_rt::nb_send(badged, MessageInfo::default(), [0; 4]),
        Ok(())
    );
    let message = tarn_rt::nb_recv(notification).ctx("nb_recv")?;
    expect!(message.badge, 0x3);
    expect_err!(tarn_rt::nb_recv(notification), Error::WouldBlock);
    Ok(Pass::Ok)
}

fn bound_wakes_receive(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let notification = env.notification()?;
    let badged = env.mint(notification, Rights::WRITE, 0x20)?;
    let shared = Shared::new();
    let out = shared.clone();
    let thread = env.spawn(
        tarn_rt::ThreadOptions {
            start: false,
            ..Default::default()
        },
        move || {
            for index in 0..2 {
                match tarn_rt::recv(endpoint) {
                    Ok(message) => {
                        out.set(index * 3, 0);
                        out.set(index * 3 + 1, message.badge);
                        out.set(index * 3 + 2, message.label());
                    }
                    Err(error) => out.set(index * 3, error as u64),
                }
            }
        },
    )?;
    expect!(
        invoke::tcb_bind_notification(thread.tcb, notification),
        Ok(())
    );
    invoke::tcb_resume(thread.tcb).ctx("resume")?;
    // First wake-up: a signal on the bound notification.
    env.wait_state(thread.tcb, ThreadState::BlockedOnReceive)?;
    expect!(tarn_rt::signal(badged), Ok(()));
    // Second: an ordinary message.
    env.wait_until("the second receive", || shared.get(1) == 0x20)?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnReceive)?;
    let sender = env.mint(endpoint, Rights::WRITE, 0x5)?;
    expect!(
        tarn_rt::send(sender, MessageInfo::new(0x44, 0, 0), [0; 4]),
        Ok(())
    );
    env.join(&thread)?;
    expect!([shared.get(0), shared.get(1), shared.get(2)], [0, 0x20, 0]);
    expect!(
        [shared.get(3), shared.get(4), shared.get(5)],
        [0, 0x5, 0x44]
    );
    Ok(Pass::Ok)
}

fn bound_pending_first(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let notification = env.notification()?;
    let badged = env.mint(notification, Rights::WRITE, 0x40)?;
    let shared = Shared::new();
    let out = shared.clone();
    let thread = env.spawn(
        tarn_rt::ThreadOptions {
            start: false,
            ..Default::default()
        },
        move || {
            let result = tarn_rt::recv(endpoint);
            out.set(0, code(&result));
            out.set(1, result.map(|m| m.badge).unwrap_or(0));
        },
    )?;
    expect!(
        invoke::tcb_bind_notification(thread.tcb, notification),
        Ok(())
    );
    // Signalled before the thread ever receives: its first receive returns at once.
    expect!(tarn_rt::signal(badged), Ok(()));
    invoke::tcb_resume(thread.tcb).ctx("resume")?;
    env.join(&thread)?;
    expect!([shared.get(0), shared.get(1)], [0, 0x40]);
    Ok(Pass::Ok)
}

fn bind_rules(env: &mut Env) -> Outcome {
    let notification = env.notification()?;
    let other = env.notification()?;
    let endpoint = env.endpoint()?;
    let write_only = env.copy(notification, Rights::WRITE)?;
    let thread = env.spawn(
        tarn_rt::ThreadOptions {
            start: false,
            ..Default::default()
        },
        || {},
    )?;
    expect_err!(
        invoke::tcb_unbind_notification(thread.tcb),
        Error::IllegalState
    );
    expect_err!(
        invoke::tcb_bind_notification(thread.tcb, endpoint),
        Error::WrongType
    );
    expect_err!(
        invoke::tcb_bind_notification(thread.tcb, write_only),
        Error::InsufficientRights
    );
    expect!(
        invoke::tcb_bind_notification(thread.tcb, notification),
        Ok(())
    );
    // One notification per thread, one thread per notification.
    expect_err!(
        invoke::tcb_bind_notification(thread.tcb, other),
        Error::IllegalState
    );
    let second = env.spawn(
        tarn_rt::ThreadOptions {
            start: false,
            ..Default::default()
        },
        || {},
    )?;
    expect_err!(
        invoke::tcb_bind_notification(second.tcb, notification),
        Error::IllegalState
    );
    // Only the bound thread may wait on it.
    expect_err!(tarn_rt::wait(notification, 1_000_000), Error::IllegalState);
    expect_err!(tarn_rt::poll(notification), Error::IllegalState);
    expect!(invoke::tcb_unbind_notification(thread.tcb), Ok(()));
    expect_err!(
        invoke::tcb_unbind_notification(thread.tcb),
        Error::IllegalState
    );
    expect_err!(tarn_rt::poll(notification), Error::WouldBlock);
    expect!(
        invoke::tcb_bind_notification(second.tcb, notification),
        Ok(())
    );
    for thread in [thread, second] {
        thread.destroy(&mut env.res).ctx("destroy")?;
    }
    ensure!(
        tarn_rt::poll(notification) == Err(Error::WouldBlock),
        "destroying the bound thread unbinds"
    );
    Ok(Pass::Ok)
}

fn deleted_wakes_waiter(env: &mut Env) -> Outcome {
    let notification = env.notification()?;
    let shared = Shared::new();
    let out = shared.clone();
    let thread = env.thread(move || out.set(0, code(&tarn_rt::wait(notification, 0))))?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnNotification)?;
    env.res.delete(notification).ctx("delete notification")?;
    env.join(&thread)?;
    expect!(shared.get(0), Error::ObjectDeleted as u64);
    Ok(Pass::Ok)
}
