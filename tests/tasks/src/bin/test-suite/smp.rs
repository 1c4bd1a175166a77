//! Across CPUs: IPC and notifications between threads on different CPUs,
//! moving and suspending a running thread on another CPU, and TLB
//! shootdown when a mapping used on another CPU changes. With one CPU these
//! tests are skipped.

use crate::harness::{code, Check, Env, Outcome, Pass, Shared, Test};
use crate::{ensure, expect};
use alloc::string::String;
use tarn_rt::abi::fault::FAULT_REPLY_RESUME;
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::{Error, MessageInfo, Rights};
use tarn_rt::arch::{probe_read, probe_write};
use tarn_rt::invoke;
use tarn_rt::layout::{slot, PAGE_SIZE};
use tarn_rt::ThreadOptions;

pub const TESTS: &[Test] = &[
    ("smp_ipc_call_across_cpus", ipc_across),
    ("smp_notification_across_cpus", notification_across),
    ("smp_migrate_running_thread", migrate),
    ("smp_suspend_thread_on_other_cpu", suspend_remote),
    (
        "smp_suspend_during_system_call_loses_no_call",
        suspend_in_call,
    ),
    ("smp_unmap_seen_by_other_cpu", tlb_shootdown),
    ("smp_fpu_state_follows_thread", fpu_follows_thread),
];

const SKIP: Pass = Pass::Skipped("1 cpu");
const RW: Rights = Rights(Rights::READ.0 | Rights::WRITE.0);

fn on_cpu1() -> ThreadOptions {
    ThreadOptions {
        cpu: Some(1),
        ..Default::default()
    }
}

fn ipc_across(env: &mut Env) -> Outcome {
    if env.cpus < 2 {
        return Ok(SKIP);
    }
    let endpoint = env.endpoint()?;
    let server = env.spawn(on_cpu1(), move || {
        let Ok(mut message) = tarn_rt::recv(endpoint) else {
            return;
        };
        loop {
            let done = message.label() == 2;
            let info = MessageInfo::new(1, 0, 1);
            if done {
                let _ = tarn_rt::reply(info, [message.mrs[0] + 1, 0, 0, 0]);
                return;
            }
            match tarn_rt::reply_recv(endpoint, info, [message.mrs[0] + 1, 0, 0, 0]) {
                Ok(next) => message = next,
                Err(_) => return,
            }
        }
    })?;
    for round in 0..100u64 {
        let label = if round == 99 { 2 } else { 1 };
        let answer =
            tarn_rt::call(endpoint, MessageInfo::new(label, 0, 1), [round, 0, 0, 0]).ctx("call")?;
        expect!(answer.mrs[0], round + 1);
    }
    env.join(&server)?;
    Ok(Pass::Ok)
}

fn notification_across(env: &mut Env) -> Outcome {
    if env.cpus < 2 {
        return Ok(SKIP);
    }
    let to_thread = env.notification()?;
    let to_thread_badged = env.mint(to_thread, Rights::WRITE, 0x1)?;
    let to_main = env.notification()?;
    let to_main_badged = env.mint(to_main, Rights::WRITE, 0x2)?;
    let shared = crate::harness::Shared::new();
    let out = shared.clone();
    let thread = env.spawn(on_cpu1(), move || {
        let result = tarn_rt::wait(to_thread, 0);
        out.set(0, code(&result));
        out.set(1, result.unwrap_or(0));
        out.set(2, code(&tarn_rt::signal(to_main_badged)));
    })?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnNotification)?;
    expect!(tarn_rt::signal(to_thread_badged), Ok(()));
    expect!(tarn_rt::wait(to_main, 5_000_000_000), Ok(0x2));
    env.join(&thread)?;
    expect!([shared.get(0), shared.get(1), shared.get(2)], [0, 0x1, 0]);
    Ok(Pass::Ok)
}

fn spinner(env: &mut Env, cpu: u64) -> Result<(tarn_rt::Thread, alloc::sync::Arc<Shared>), String> {
    let shared = Shared::new();
    let out = shared.clone();
    let options = ThreadOptions {
        cpu: Some(cpu),
        ..Default::default()
    };
    let thread = env.spawn(options, move || {
        while out.get(1) == 0 {
            out.bump(0);
        }
    })?;
    Ok((thread, shared))
}

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

fn migrate(env: &mut Env) -> Outcome {
    if env.cpus < 2 {
        return Ok(SKIP);
    }
    // A spinner that never yields: on CPU 1 it runs beside the suite.
    let (thread, shared) = spinner(env, 1)?;
    ensure!(moving(env, &shared), "the spinner never ran on CPU 1");
    expect!(invoke::tcb_set_affinity(thread.tcb, 0), Ok(()));
    ensure!(
        moving(env, &shared),
        "the spinner stopped after moving to CPU 0"
    );
    let last = env.cpus - 1;
    expect!(invoke::tcb_set_affinity(thread.tcb, last), Ok(()));
    ensure!(
        moving(env, &shared),
        "the spinner stopped after moving to CPU {last}"
    );
    shared.set(1, 1);
    env.join(&thread)?;
    Ok(Pass::Ok)
}

fn suspend_remote(env: &mut Env) -> Outcome {
    if env.cpus < 2 {
        return Ok(SKIP);
    }
    let (thread, shared) = spinner(env, 1)?;
    ensure!(moving(env, &shared), "the spinner never ran on CPU 1");
    expect!(invoke::tcb_suspend(thread.tcb), Ok(()));
    ensure!(
        !moving(env, &shared),
        "the spinner still runs after suspend"
    );
    expect!(invoke::tcb_resume(thread.tcb), Ok(()));
    ensure!(moving(env, &shared), "the spinner did not resume");
    // Deleting it stops it too.
    thread.destroy(&mut env.res).ctx("destroy")?;
    ensure!(!moving(env, &shared), "the deleted spinner still runs");
    Ok(Pass::Ok)
}

/// A thread on CPU 1 makes system calls back to back while CPU 0 suspends
/// and resumes it: a suspend that lands while the call waits for the
/// kernel lock on CPU 1 must not lose the call. (It did: the thread later
/// went on after its `syscall` with its arguments as results, `rax` the
/// call's number, which reads as `WrongType`.) Every call must return the
/// frame's address.
fn suspend_in_call(env: &mut Env) -> Outcome {
    if env.cpus < 2 {
        return Ok(SKIP);
    }
    let frame = env.frame()?;
    let address = invoke::frame_get_address(frame).ctx("frame address")?;
    let shared = Shared::new();
    let out = shared.clone();
    let thread = env.spawn(on_cpu1(), move || {
        while out.get(1) == 0 {
            match invoke::frame_get_address(frame) {
                Ok(a) if a == address => out.bump(0),
                other => {
                    out.set(2, code(&other.map(|_| ())) | 1 << 32);
                    out.set(3, other.unwrap_or(0));
                    out.bump(4);
                }
            }
        }
    })?;
    ensure!(moving(env, &shared), "the caller never ran on CPU 1");
    const ROUNDS: u64 = 1000;
    for round in 0..ROUNDS {
        expect!(invoke::tcb_suspend(thread.tcb), Ok(()));
        expect!(invoke::tcb_resume(thread.tcb), Ok(()));
        // Let it run between rounds, for varying times.
        for _ in 0..(round % 7) * 50 {
            core::hint::spin_loop();
        }
        if shared.get(4) != 0 {
            break;
        }
    }
    ensure!(moving(env, &shared), "the caller stopped after the rounds");
    shared.set(1, 1);
    env.join(&thread)?;
    ensure!(
        shared.get(4) == 0,
        "{} of {} calls went wrong: the first returned {:#x} (error code {:#x})",
        shared.get(4),
        shared.get(0) + shared.get(4),
        shared.get(3),
        shared.get(2) & 0xFFFF_FFFF
    );
    Ok(Pass::Ok)
}

fn tlb_shootdown(env: &mut Env) -> Outcome {
    if env.cpus < 2 {
        return Ok(SKIP);
    }
    let address = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    let first = env.frame()?;
    let second = env.frame()?;
    // Stage the contents: 1 in the first frame, 2 in the second.
    for (frame, value) in [(first, 1u64), (second, 2)] {
        invoke::frame_map(frame, slot::ROOT_VSPACE, address, RW).ctx("map")?;
        probe_write(address, value);
        invoke::frame_unmap(frame).ctx("unmap")?;
    }
    invoke::frame_map(first, slot::ROOT_VSPACE, address, RW).ctx("map first")?;
    let endpoint = env.endpoint()?;
    let fault_endpoint = env.mint(endpoint, Rights::ALL, 1)?;
    let shared = Shared::new();
    let out = shared.clone();
    let options = ThreadOptions {
        cpu: Some(1),
        fault_endpoint,
        ..Default::default()
    };
    let reader = env.spawn(options, move || {
        while out.get(1) == 0 {
            out.set(0, probe_read(address));
        }
    })?;
    env.wait_until("the reader to see the first frame", || shared.get(0) == 1)?;
    // Swap the frames under the running reader. It may fault in between;
    // then it is resumed once the second frame is in place.
    invoke::frame_unmap(first).ctx("unmap first")?;
    invoke::frame_map(second, slot::ROOT_VSPACE, address, RW).ctx("map second")?;
    let mut seen = false;
    for _ in 0..5000 {
        match tarn_rt::nb_recv(endpoint) {
            Ok(fault) => {
                expect!(fault.mrs[1], address);
                tarn_rt::reply(MessageInfo::new(FAULT_REPLY_RESUME, 0, 0), [0; 4]).ctx("resume")?;
            }
            Err(Error::WouldBlock) => {}
            Err(other) => return Err(alloc::format!("receive: {other:?}")),
        }
        if shared.get(0) == 2 {
            seen = true;
            break;
        }
        env.sleep_ns(1_000_000);
    }
    ensure!(
        seen,
        "the reader on CPU 1 still reads the old frame (last value {})",
        shared.get(0)
    );
    shared.set(1, 1);
    env.join(&reader)?;
    Ok(Pass::Ok)
}

/// A thread's SSE state survives a move to another CPU while the state is
/// still live in its old CPU's registers (lazy FPU switching): the thread
/// sets xmm8 on the last CPU, blocks there, is moved to CPU 0 (where this
/// suite runs and owns the FPU) and woken; it must find its own xmm8.
fn fpu_follows_thread(env: &mut Env) -> Outcome {
    if env.cpus < 2 {
        return Ok(SKIP);
    }
    const MAGIC: u64 = 0x5eed_f00d_cafe_d00d;
    let endpoint = env.endpoint()?;
    let shared = Shared::new();
    let seen = shared.clone();
    let thread = env.spawn(
        ThreadOptions {
            cpu: Some(env.cpus - 1),
            ..Default::default()
        },
        move || {
            let (message, xmm8) = tarn_rt::syscall::recv_with_xmm8(endpoint, MAGIC);
            seen.set(1, xmm8);
            seen.set(2, u64::from(message.is_ok()) + 1);
        },
    )?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnReceive)?;
    // This thread uses the FPU on CPU 0 (the suite's own code does), so CPU 0
    // owns other state when the moved thread first touches its registers.
    let checksum: f64 = (1..=8).map(|i| f64::from(i) * 0.5).sum();
    ensure!(
        checksum == 18.0,
        "the suite's own arithmetic gave {checksum}"
    );
    expect!(invoke::tcb_set_affinity(thread.tcb, 0), Ok(()));
    expect!(
        tarn_rt::send(endpoint, MessageInfo::new(1, 0, 0), [0; 4]),
        Ok(())
    );
    env.wait_until("the moved thread to run", || shared.get(2) != 0)?;
    ensure!(shared.get(2) == 2, "the moved thread's receive failed");
    ensure!(
        shared.get(1) == MAGIC,
        "the moved thread's xmm8 is {:#x}, not {MAGIC:#x}: its state stayed in its old CPU's registers",
        shared.get(1)
    );
    Ok(Pass::Ok)
}
