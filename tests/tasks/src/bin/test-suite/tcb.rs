//! Threads: configure (and its checks), registers, resume and suspend, CPU
//! affinity, states, and deletion of a running thread.

use crate::harness::{Check, Env, Outcome, Pass, Shared, Test};
use crate::{ensure, expect, expect_err};
use alloc::string::String;
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::{Error, MessageInfo, ObjectType, Rights};
use tarn_rt::invoke::{self, Registers, TcbConfig};
use tarn_rt::layout::{self, slot};

pub const TESTS: &[Test] = &[
    ("tcb_resume_unconfigured", resume_unconfigured),
    ("tcb_configure_checks", configure_checks),
    ("tcb_configure_running_thread", configure_running),
    ("tcb_write_read_registers", registers),
    ("tcb_thread_starts_with_arguments", starts_with_arguments),
    ("tcb_suspend_resume", suspend_resume),
    ("tcb_affinity_out_of_range", affinity_out_of_range),
    ("tcb_states", states),
    ("tcb_delete_running_thread", delete_running),
];

fn base_config() -> TcbConfig {
    TcbConfig {
        cnode: slot::ROOT_CNODE,
        vspace: slot::ROOT_VSPACE,
        ..TcbConfig::default()
    }
}

fn resume_unconfigured(env: &mut Env) -> Outcome {
    let tcb = env.create(ObjectType::Tcb, 0)?;
    expect_err!(invoke::tcb_resume(tcb), Error::IllegalState);
    expect!(
        invoke::tcb_read_registers(tcb).map(|s| s.state()),
        Ok(Some(ThreadState::Inactive))
    );
    Ok(Pass::Ok)
}

fn configure_checks(env: &mut Env) -> Outcome {
    let tcb = env.create(ObjectType::Tcb, 0)?;
    let frame = env.frame()?;
    let read_frame = env.copy(frame, Rights::READ)?;
    let endpoint = env.endpoint()?;
    let read_endpoint = env.copy(endpoint, Rights::READ)?;
    let base = base_config();
    let buffer = TcbConfig {
        ipc_buffer_frame: frame,
        ipc_buffer_vaddr: layout::FREE_WINDOW_BASE,
        ..base
    };
    expect_err!(
        invoke::tcb_configure(
            tcb,
            &TcbConfig {
                ipc_buffer_vaddr: layout::FREE_WINDOW_BASE + 8,
                ..buffer
            }
        ),
        Error::InvalidArgument
    );
    expect_err!(
        invoke::tcb_configure(
            tcb,
            &TcbConfig {
                ipc_buffer_frame: read_frame,
                ..buffer
            }
        ),
        Error::InsufficientRights
    );
    expect_err!(
        invoke::tcb_configure(
            tcb,
            &TcbConfig {
                fault_endpoint: read_endpoint,
                ..base
            }
        ),
        Error::InsufficientRights
    );
    expect!(
        invoke::tcb_configure(
            tcb,
            &TcbConfig {
                fault_endpoint: endpoint,
                ..buffer
            }
        ),
        Ok(())
    );
    // Configuring again (while suspended) replaces the old configuration.
    expect!(invoke::tcb_configure(tcb, &base), Ok(()));
    Ok(Pass::Ok)
}

fn configure_running(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let thread = env.thread(move || {
        let _ = tarn_rt::recv(endpoint);
    })?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnReceive)?;
    expect_err!(
        invoke::tcb_configure(thread.tcb, &base_config()),
        Error::IllegalState
    );
    // Resuming a thread that is not inactive changes nothing.
    expect!(invoke::tcb_resume(thread.tcb), Ok(()));
    expect!(
        invoke::tcb_read_registers(thread.tcb).map(|s| s.state()),
        Ok(Some(ThreadState::BlockedOnReceive))
    );
    expect!(
        tarn_rt::send(endpoint, MessageInfo::default(), [0; 4]),
        Ok(())
    );
    env.join(&thread)?;
    Ok(Pass::Ok)
}

fn registers(env: &mut Env) -> Outcome {
    let tcb = env.create(ObjectType::Tcb, 0)?;
    invoke::tcb_configure(tcb, &base_config()).ctx("configure")?;
    let written = Registers {
        rip: 0x1234_5000,
        rsp: 0x7_6543_2000,
        rflags: 0x3000 | 0x1,
        rdi: 0xABC,
        rsi: 0xDEF,
        rdx: 0x123,
    };
    expect!(invoke::tcb_write_registers(tcb, &written), Ok(()));
    let status = invoke::tcb_read_registers(tcb).ctx("read registers")?;
    expect!(
        (status.rip, status.rsp, status.rdi),
        (written.rip, written.rsp, written.rdi)
    );
    // IF is forced on, IOPL off; CF survives.
    expect!(status.rflags & 0x200, 0x200);
    expect!(status.rflags & 0x3000, 0);
    expect!(status.rflags & 0x1, 0x1);
    expect!(status.state(), Some(ThreadState::Inactive));
    let kernel = Registers {
        rip: 0xFFFF_8000_0000_0000,
        ..written
    };
    expect_err!(
        invoke::tcb_write_registers(tcb, &kernel),
        Error::InvalidArgument
    );
    let kernel_stack = Registers {
        rsp: layout::USER_END,
        ..written
    };
    expect_err!(
        invoke::tcb_write_registers(tcb, &kernel_stack),
        Error::InvalidArgument
    );
    Ok(Pass::Ok)
}

fn starts_with_arguments(env: &mut Env) -> Outcome {
    // A thread's first registers: the runtime passes its start record in
    // rdi; reading the registers of a fresh (unstarted) thread shows the
    // entry point and the top of its stack.
    let thread = env.spawn(
        tarn_rt::ThreadOptions {
            start: false,
            ..Default::default()
        },
        || {},
    )?;
    let status = invoke::tcb_read_registers(thread.tcb).ctx("read registers")?;
    expect!(status.rip, tarn_rt::arch::thread_entry_address());
    expect!(status.rsp, thread.stack_top());
    ensure!(status.rdi != 0, "start record pointer in rdi");
    invoke::tcb_resume(thread.tcb).ctx("resume")?;
    env.join(&thread)?;
    Ok(Pass::Ok)
}

fn spinner(
    env: &mut Env,
    cpu: Option<u64>,
) -> Result<(tarn_rt::Thread, alloc::sync::Arc<Shared>), String> {
    let shared = Shared::new();
    let out = shared.clone();
    let options = tarn_rt::ThreadOptions {
        cpu,
        ..Default::default()
    };
    let thread = env.spawn(options, move || loop {
        out.bump(0);
        if out.get(1) != 0 {
            return;
        }
        tarn_rt::yield_now();
    })?;
    Ok((thread, shared))
}

/// Whether the counter in word 0 moves within about 50 ms.
fn moving(env: &Env, shared: &Shared) -> bool {
    let start = shared.get(0);
    for _ in 0..50 {
        env.sleep_ns(1_000_000);
        if shared.get(0) != start {
            return true;
        }
    }
    false
}

fn suspend_resume(env: &mut Env) -> Outcome {
    let (thread, shared) = spinner(env, None)?;
    ensure!(moving(env, &shared), "the spinner never ran");
    expect!(invoke::tcb_suspend(thread.tcb), Ok(()));
    expect!(
        invoke::tcb_read_registers(thread.tcb).map(|s| s.state()),
        Ok(Some(ThreadState::Inactive))
    );
    ensure!(!moving(env, &shared), "the spinner ran while suspended");
    expect!(invoke::tcb_resume(thread.tcb), Ok(()));
    ensure!(
        moving(env, &shared),
        "the spinner did not run again after resume"
    );
    shared.set(1, 1);
    env.join(&thread)?;
    thread.destroy(&mut env.res).ctx("destroy")?;
    Ok(Pass::Ok)
}

fn affinity_out_of_range(env: &mut Env) -> Outcome {
    let tcb = env.create(ObjectType::Tcb, 0)?;
    expect_err!(invoke::tcb_set_affinity(tcb, env.cpus), Error::OutOfRange);
    expect_err!(invoke::tcb_set_affinity(tcb, u64::MAX), Error::OutOfRange);
    expect!(invoke::tcb_set_affinity(tcb, env.cpus - 1), Ok(()));
    expect!(invoke::tcb_set_affinity(tcb, 0), Ok(()));
    Ok(Pass::Ok)
}

fn states(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let notification = env.notification()?;
    let idle = env.spawn(
        tarn_rt::ThreadOptions {
            start: false,
            ..Default::default()
        },
        || {},
    )?;
    expect!(
        invoke::tcb_read_registers(idle.tcb).map(|s| s.state()),
        Ok(Some(ThreadState::Inactive))
    );
    let receiver = env.thread(move || {
        let _ = tarn_rt::recv(endpoint);
    })?;
    env.wait_state(receiver.tcb, ThreadState::BlockedOnReceive)?;
    let sender = env.thread(move || {
        let _ = tarn_rt::call(endpoint, MessageInfo::default(), [0; 4]);
    })?;
    // The receiver takes the call (and never replies): the caller waits for a reply.
    env.wait_state(sender.tcb, ThreadState::BlockedOnReply)?;
    let other = env.endpoint()?;
    let blocked_sender = env.thread(move || {
        let _ = tarn_rt::send(other, MessageInfo::default(), [0; 4]);
    })?;
    env.wait_state(blocked_sender.tcb, ThreadState::BlockedOnSend)?;
    let waiter = env.thread(move || {
        let _ = tarn_rt::wait(notification, 0);
    })?;
    env.wait_state(waiter.tcb, ThreadState::BlockedOnNotification)?;
    let (spin, shared) = spinner(env, None)?;
    env.wait_state(spin.tcb, ThreadState::Runnable)?;
    shared.set(1, 1);
    env.join(&spin)?;
    for thread in [idle, receiver, sender, blocked_sender, waiter, spin] {
        thread.destroy(&mut env.res).ctx("destroy")?;
    }
    Ok(Pass::Ok)
}

fn delete_running(env: &mut Env) -> Outcome {
    let objects = env.live_objects()?;
    let (thread, shared) = spinner(env, None)?;
    ensure!(moving(env, &shared), "the spinner never ran");
    expect!(env.live_objects()?, objects + 1);
    thread.destroy(&mut env.res).ctx("destroy")?;
    expect!(env.live_objects()?, objects);
    ensure!(!moving(env, &shared), "the deleted thread still runs");
    Ok(Pass::Ok)
}
