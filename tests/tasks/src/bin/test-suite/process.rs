//! Between processes: the suite starts `test-helper` processes and tests
//! IPC with them (short and 64-word messages, badges, calls in both
//! directions), capability transfer into another CSpace, revocation reaching
//! into another CSpace, and faults of another process.

use crate::harness::{Check, Env, Outcome, Pass, Test};
use crate::{ensure, expect, expect_err};
use alloc::string::String;
use tarn_rt::abi::fault::{EXCEPTION, FAULT_REPLY_RESUME, FAULT_REPLY_SUSPEND, PAGE_FAULT};
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::{CPtr, Error, MessageInfo, Rights, Syscall, MAX_MESSAGE_WORDS};
use tarn_rt::arch::probe_write;
use tarn_rt::invoke;
use tarn_rt::layout::{slot, PAGE_SIZE};
use tarn_rt::{syscall, CapGrant, Message, Process, ProcessConfig};
use tarn_test_tasks::{command, helper_slot, HELPER_FAULT_ADDRESS};

pub const TESTS: &[Test] = &[
    ("process_spawn_and_echo", echo),
    ("process_echo_64_words", echo_long),
    ("process_badge_seen_by_helper", badge),
    ("process_helper_calls_back", call_back),
    ("process_cap_transfer_with_grant", transfer_with_grant),
    ("process_cap_transfer_without_grant", transfer_without_grant),
    ("process_cap_transfer_unwraps", transfer_unwraps),
    ("process_revoke_reaches_other_cspace", revoke_across),
    ("process_page_fault_resolved_by_suite", page_fault),
    ("process_ud2_exception", ud2),
    ("process_exit", exit),
];

/// The badge of the suite's command capability.
const COMMAND_BADGE: u64 = 0x5EED;
/// The badge of the helper's fault-endpoint capability.
const FAULT_BADGE: u64 = 0xFA;
/// The badge of the notification the helper signals.
const NOTIFICATION_BADGE: u64 = 0x77;

/// A running helper process and the suite's ends of its endpoints.
pub struct Helper {
    process: Process,
    /// The command endpoint (unbadged, all rights).
    commands: CPtr,
    /// The suite's badged command capability (WRITE | GRANT).
    command_cap: CPtr,
    /// Where the helper's calls back arrive.
    callback: CPtr,
    /// Where the helper's faults arrive.
    faults: CPtr,
    /// The notification the helper can signal.
    notification: CPtr,
}

impl Helper {
    fn start(env: &mut Env) -> Result<Helper, String> {
        let elf = env
            .helper_elf
            .ok_or_else(|| String::from("no test-helper module"))?;
        let commands = env.endpoint()?;
        let callback = env.endpoint()?;
        let faults = env.endpoint()?;
        let fault_cap = env.mint(faults, Rights::ALL, FAULT_BADGE)?;
        let notification = env.notification()?;
        let caps = [
            CapGrant {
                source: commands,
                dest: helper_slot::COMMANDS,
                rights: Rights::READ,
                badge: 0,
            },
            CapGrant {
                source: callback,
                dest: helper_slot::CALLBACK,
                rights: Rights::WRITE,
                badge: 0,
            },
            CapGrant {
                source: notification,
                dest: helper_slot::NOTIFICATION,
                rights: Rights::WRITE,
                badge: NOTIFICATION_BADGE,
            },
        ];
        let config = ProcessConfig {
            elf,
            vspace_bits: 20,
            stack_pages: 16,
            fault_endpoint: fault_cap,
            caps: &caps,
            cmdline: "helper",
            cpu_count: env.cpus,
            ..ProcessConfig::default()
        };
        let process = tarn_rt::spawn_process(&mut env.res, &config).ctx("spawn test-helper")?;
        let command_cap = env.mint(commands, Rights::WRITE.union(Rights::GRANT), COMMAND_BADGE)?;
        env.wait_state(process.tcb, ThreadState::BlockedOnReceive)?;
        Ok(Helper {
            process,
            commands,
            command_cap,
            callback,
            faults,
            notification,
        })
    }

    /// Sends a command and returns the helper's reply.
    fn command(&self, label: u64, words: &[u64]) -> Result<Message, String> {
        self.command_with(self.command_cap, label, words, &[])
    }

    fn command_with(
        &self,
        through: CPtr,
        label: u64,
        words: &[u64],
        caps: &[CPtr],
    ) -> Result<Message, String> {
        let (info, registers) = syscall::load(label, words, caps);
        let reply = tarn_rt::call(through, info, registers).ctx("command")?;
        ensure!(
            reply.label() == label,
            "helper answered label {:#x} to command {label:#x}",
            reply.label()
        );
        Ok(reply)
    }
}

/// The helper most tests share, started on first use.
fn shared_helper(env: &mut Env) -> Result<&'static Helper, String> {
    static HELPER: spin::Once<Helper> = spin::Once::new();
    if let Some(helper) = HELPER.get() {
        return Ok(helper);
    }
    let helper = Helper::start(env)?;
    Ok(HELPER.call_once(|| helper))
}

fn echo(env: &mut Env) -> Outcome {
    let helper = shared_helper(env)?;
    let reply = helper.command(command::ECHO, &[1, 2, 3, 4])?;
    expect!(
        (reply.length(), reply.mrs, reply.badge),
        (4, [1, 2, 3, 4], 0)
    );
    let reply = helper.command(command::ECHO, &[])?;
    expect!(reply.length(), 0);
    Ok(Pass::Ok)
}

fn echo_long(env: &mut Env) -> Outcome {
    let helper = shared_helper(env)?;
    let words: alloc::vec::Vec<u64> = (0..MAX_MESSAGE_WORDS as u64)
        .map(|i| 0x1000 + i * i)
        .collect();
    let reply = helper.command(command::ECHO, &words)?;
    expect!(reply.length(), MAX_MESSAGE_WORDS);
    for (index, &word) in words.iter().enumerate() {
        ensure!(
            reply.word(index) == word,
            "word {index}: expected {word:#x}, got {:#x}",
            reply.word(index)
        );
    }
    Ok(Pass::Ok)
}

fn badge(env: &mut Env) -> Outcome {
    let helper = shared_helper(env)?;
    expect!(helper.command(command::BADGE, &[])?.mrs[0], COMMAND_BADGE);
    // An unbadged capability to the same endpoint arrives with badge 0.
    let reply = helper.command_with(helper.commands, command::BADGE, &[], &[])?;
    expect!(reply.mrs[0], 0);
    Ok(Pass::Ok)
}

fn call_back(env: &mut Env) -> Outcome {
    let helper = shared_helper(env)?;
    helper.command(command::CALL_BACK, &[41])?;
    let hello = env.recv_within(helper.callback)?;
    expect!((hello.label(), hello.mrs[0]), (command::CALLBACK_HELLO, 42));
    expect!(
        tarn_rt::reply(MessageInfo::new(0x66, 0, 1), [1000, 0, 0, 0]),
        Ok(())
    );
    let report = env.recv_within(helper.callback)?;
    expect!(
        (report.label(), report.mrs[0], report.mrs[1]),
        (command::CALLBACK_REPORT, 1000, 0x66)
    );
    expect!(tarn_rt::reply(MessageInfo::default(), [0; 4]), Ok(()));
    env.wait_state(helper.process.tcb, ThreadState::BlockedOnReceive)?;
    Ok(Pass::Ok)
}

/// Deletes the helper's receive-window slot (so the next transfer can land).
fn clear_window(helper: &Helper) -> Result<(), String> {
    let reply = helper.command(command::DELETE, &[helper_slot::RECEIVE])?;
    expect!(reply.mrs[0], 0);
    Ok(())
}

fn transfer_with_grant(env: &mut Env) -> Outcome {
    let helper = shared_helper(env)?;
    clear_window(helper)?;
    let notification = env.notification()?;
    let badged = env.mint(notification, Rights::ALL, 0x31)?;
    let reply = helper.command_with(helper.command_cap, command::RECEIVE_CAPS, &[], &[badged])?;
    // One capability, not unwrapped, and a notification with an empty word
    // in the window.
    expect!(
        [reply.mrs[0], reply.mrs[1], reply.mrs[3]],
        [1, 0, Error::WouldBlock as u64]
    );
    // The helper signals through it; the suite sees the badge.
    expect!(
        helper
            .command(command::SIGNAL, &[helper_slot::RECEIVE])?
            .mrs[0],
        0
    );
    expect!(tarn_rt::poll(notification), Ok(0x31));
    // Its own notification capability works too.
    expect!(
        helper
            .command(command::SIGNAL, &[helper_slot::NOTIFICATION])?
            .mrs[0],
        0
    );
    expect!(tarn_rt::poll(helper.notification), Ok(NOTIFICATION_BADGE));
    clear_window(helper)?;
    Ok(Pass::Ok)
}

fn transfer_without_grant(env: &mut Env) -> Outcome {
    let helper = shared_helper(env)?;
    clear_window(helper)?;
    let no_grant = env.mint(helper.commands, Rights::WRITE, COMMAND_BADGE)?;
    let notification = env.notification()?;
    let reply = helper.command_with(no_grant, command::RECEIVE_CAPS, &[], &[notification])?;
    expect!(
        [reply.mrs[0], reply.mrs[1], reply.mrs[3]],
        [0, 0, Error::InvalidCapability as u64]
    );
    Ok(Pass::Ok)
}

fn transfer_unwraps(env: &mut Env) -> Outcome {
    let helper = shared_helper(env)?;
    clear_window(helper)?;
    let reply = helper.command_with(
        helper.command_cap,
        command::RECEIVE_CAPS,
        &[],
        &[helper.command_cap],
    )?;
    expect!(
        [reply.mrs[0], reply.mrs[1], reply.mrs[2]],
        [1, 1, COMMAND_BADGE]
    );
    expect!(reply.mrs[3], Error::InvalidCapability as u64);
    Ok(Pass::Ok)
}

fn revoke_across(env: &mut Env) -> Outcome {
    let helper = shared_helper(env)?;
    let endpoint = env.endpoint()?;
    let target = helper_slot::SUITE_FREE;
    expect!(
        invoke::cnode_copy(
            helper.process.cnode,
            target,
            slot::ROOT_CNODE,
            endpoint,
            Rights::ALL
        ),
        Ok(())
    );
    let probe = |helper: &Helper| {
        helper
            .command(command::PROBE, &[Syscall::NbSend as u64, target])
            .map(|r| r.mrs[0])
    };
    expect!(probe(helper)?, Error::WouldBlock as u64);
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, endpoint), Ok(()));
    expect!(probe(helper)?, Error::InvalidCapability as u64);
    let back = env.slot()?;
    expect_err!(
        invoke::cnode_copy(
            slot::ROOT_CNODE,
            back,
            helper.process.cnode,
            target,
            Rights::ALL
        ),
        Error::InvalidCapability
    );
    Ok(Pass::Ok)
}

fn page_fault(env: &mut Env) -> Outcome {
    let helper = shared_helper(env)?;
    helper.command(command::FAULT_READ, &[HELPER_FAULT_ADDRESS])?;
    let fault = env.recv_within(helper.faults)?;
    expect!(
        (fault.label(), fault.badge, fault.mrs[1], fault.mrs[3]),
        (PAGE_FAULT, FAULT_BADGE, HELPER_FAULT_ADDRESS, 14)
    );
    // Give the helper a page holding the answer, mapped in its address space.
    let (frame, staging) = env.mapped_frame()?;
    probe_write(staging + (HELPER_FAULT_ADDRESS % PAGE_SIZE), 0xFEED);
    let copy = env.copy(frame, Rights::ALL)?;
    let rw = Rights::READ.union(Rights::WRITE);
    invoke::frame_map(
        copy,
        helper.process.vspace,
        HELPER_FAULT_ADDRESS & !(PAGE_SIZE - 1),
        rw,
    )
    .ctx("map into the helper")?;
    expect!(
        tarn_rt::reply(MessageInfo::new(FAULT_REPLY_RESUME, 0, 0), [0; 4]),
        Ok(())
    );
    let report = env.recv_within(helper.callback)?;
    expect!(
        (report.label(), report.mrs[0]),
        (command::CALLBACK_REPORT, 0xFEED)
    );
    expect!(tarn_rt::reply(MessageInfo::default(), [0; 4]), Ok(()));
    env.wait_state(helper.process.tcb, ThreadState::BlockedOnReceive)?;
    Ok(Pass::Ok)
}

fn ud2(env: &mut Env) -> Outcome {
    let helper = Helper::start(env)?;
    helper.command(command::UD2, &[])?;
    let fault = env.recv_within(helper.faults)?;
    expect!(
        (fault.label(), fault.badge, fault.mrs[3]),
        (EXCEPTION, FAULT_BADGE, 6)
    );
    expect!(
        tarn_rt::reply(MessageInfo::new(FAULT_REPLY_SUSPEND, 0, 0), [0; 4]),
        Ok(())
    );
    expect!(
        invoke::tcb_read_registers(helper.process.tcb).map(|s| s.state()),
        Ok(Some(ThreadState::Inactive))
    );
    Ok(Pass::Ok)
}

fn exit(env: &mut Env) -> Outcome {
    let helper = Helper::start(env)?;
    helper.command(command::EXIT, &[])?;
    env.wait_state(helper.process.tcb, ThreadState::Inactive)?;
    // Nobody receives on its command endpoint any more.
    expect_err!(
        tarn_rt::nb_send(helper.command_cap, MessageInfo::default(), [0; 4]),
        Error::WouldBlock
    );
    Ok(Pass::Ok)
}
