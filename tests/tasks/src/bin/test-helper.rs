//! A helper process for the test suite: it serves commands on its command
//! endpoint (see `tarn_test_tasks::command`), so the suite can test IPC,
//! capability transfer, revocation and faults across address spaces.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use tarn_rt::abi::{Error, MessageInfo, MAX_MESSAGE_WORDS};
use tarn_rt::syscall::{self, Message};
use tarn_rt::{ipc_buffer, println};
use tarn_test_tasks::{command, helper_slot};

tarn_rt::entry!(main);

/// What to do after the reply has gone out.
enum After {
    Nothing,
    CallBack(u64),
    FaultRead(u64),
    Ud2,
    Exit,
}

fn code(result: Result<(), Error>) -> u64 {
    match result {
        Ok(()) => 0,
        Err(error) => error as u64,
    }
}

fn main(_arg: u64) {
    ipc_buffer::set_receive_window(helper_slot::RECEIVE, 1);
    let mut message = match syscall::recv(helper_slot::COMMANDS) {
        Ok(message) => message,
        Err(error) => {
            println!("test-helper: cannot receive commands: {error:?}");
            return;
        }
    };
    loop {
        let (info, mrs, after) = handle(&message);
        let next = match after {
            After::Nothing => syscall::reply_recv(helper_slot::COMMANDS, info, mrs),
            after => {
                let _ = syscall::reply(info, mrs);
                act(after);
                syscall::recv(helper_slot::COMMANDS)
            }
        };
        ipc_buffer::set_receive_window(helper_slot::RECEIVE, 1);
        message = match next {
            Ok(message) => message,
            Err(error) => {
                println!("test-helper: cannot receive commands: {error:?}");
                return;
            }
        };
    }
}

fn handle(message: &Message) -> (MessageInfo, [u64; 4], After) {
    let simple = |label: u64, words: &[u64]| {
        let (info, mrs) = syscall::load(label, words, &[]);
        (info, mrs, After::Nothing)
    };
    match message.label() {
        command::ECHO => {
            let mut words = [0u64; MAX_MESSAGE_WORDS];
            let length = message.words(&mut words);
            simple(command::ECHO, &words[..length])
        }
        command::BADGE => simple(command::BADGE, &[message.badge]),
        command::PROBE => {
            let result = syscall::raw(message.mrs[0], message.mrs[1], 0, [0; 4]);
            simple(command::PROBE, &[result.rax])
        }
        command::RECEIVE_CAPS => {
            let delivered = message.info.extra_caps() as u64;
            let unwrapped = message.info.caps_unwrapped();
            let badge = ipc_buffer::cap_or_badge(0);
            let poll = match syscall::poll(helper_slot::RECEIVE) {
                Ok(_) => 0,
                Err(error) => error as u64,
            };
            simple(command::RECEIVE_CAPS, &[delivered, unwrapped, badge, poll])
        }
        command::DELETE => {
            let result =
                tarn_rt::invoke::cnode_delete(tarn_rt::layout::slot::ROOT_CNODE, message.mrs[0]);
            simple(command::DELETE, &[code(result)])
        }
        command::CALL_BACK => {
            let (info, mrs) = syscall::load(command::CALL_BACK, &[0], &[]);
            (info, mrs, After::CallBack(message.mrs[0]))
        }
        command::FAULT_READ => {
            let (info, mrs) = syscall::load(command::FAULT_READ, &[0], &[]);
            (info, mrs, After::FaultRead(message.mrs[0]))
        }
        command::UD2 => {
            let (info, mrs) = syscall::load(command::UD2, &[0], &[]);
            (info, mrs, After::Ud2)
        }
        command::EXIT => {
            let (info, mrs) = syscall::load(command::EXIT, &[0], &[]);
            (info, mrs, After::Exit)
        }
        command::SIGNAL => simple(command::SIGNAL, &[code(syscall::signal(message.mrs[0]))]),
        _ => simple(command::UNKNOWN, &[message.label()]),
    }
}

fn report(words: &[u64]) {
    let (info, mrs) = syscall::load(command::CALLBACK_REPORT, words, &[]);
    if let Err(error) = syscall::call(helper_slot::CALLBACK, info, mrs) {
        println!("test-helper: report failed: {error:?}");
    }
}

fn act(after: After) {
    match after {
        After::Nothing => {}
        After::CallBack(value) => {
            let (info, mrs) = syscall::load(command::CALLBACK_HELLO, &[value + 1], &[]);
            match syscall::call(helper_slot::CALLBACK, info, mrs) {
                Ok(reply) => report(&[reply.mrs[0], reply.label()]),
                Err(error) => report(&[u64::MAX, error as u64]),
            }
        }
        After::FaultRead(address) => report(&[tarn_rt::arch::probe_read(address)]),
        After::Ud2 => tarn_rt::arch::ud2(),
        After::Exit => tarn_rt::exit(),
    }
}
