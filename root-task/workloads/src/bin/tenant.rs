//! `tenant`: a domain that manages a pool delegated to it. Its command line
//! is a script of console commands separated by `|`; `wait MS` pauses. Each
//! command goes to the pool manager through the capability in slot
//! [`POOL_CAP`] (a badged endpoint naming one pool, installed by
//! `cpupool-delegate`); the manager runs it only if it stays inside that
//! pool. Each command and its answer are printed, prefixed `[tenant]`.
//!
//! Before the capability arrives, and after it is revoked, a request fails
//! with the kernel's error, which is printed too.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use tarn_rt::abi::control::{ControlRequest, TenantAnswer, TENANT_LABEL};
use tarn_rt::abi::sched_protocol::{self, MAX_WORDS};
use tarn_rt::abi::{CPtr, Error, ObjectType};
use tarn_rt::{println, syscall, Resources};

tarn_rt::entry!(main);

/// Where the delegated pool's capability is installed.
const POOL_CAP: CPtr = 9;
/// How long to wait for the capability before the first command.
const ARRIVAL_MS: u64 = 10_000;

fn main(arg: u64) {
    let Some(info) = tarn_rt::start_info(arg) else {
        return;
    };
    let mut res = Resources::from_boot_info(info);
    let Ok(sleeper) = res.create(ObjectType::Notification, 0) else {
        println!("[tenant] no memory for a notification");
        return;
    };
    // The capability may come after the tenant starts.
    let mut waited = 0;
    while request(0, "cpupool-list").err() == Some(Error::InvalidCapability) && waited < ARRIVAL_MS
    {
        let _ = syscall::sleep(sleeper, 10_000_000);
        waited += 10;
    }
    for (id, command) in info.cmdline().split('|').enumerate() {
        let command = command.trim();
        if command.is_empty() {
            continue;
        }
        if let Some(ms) = command.strip_prefix("wait ") {
            let ms: u64 = ms.trim().parse().unwrap_or(0);
            let _ = syscall::sleep(sleeper, ms.saturating_mul(1_000_000));
            continue;
        }
        println!("[tenant] > {command}");
        match request(id as u32 + 1, command) {
            Ok(()) => {}
            Err(error) => println!("[tenant] request failed: {error:?}"),
        }
    }
    println!("[tenant] script done");
}

/// Sends one command and prints the answer.
fn request(id: u32, line: &str) -> Result<(), Error> {
    let mut words = [0u64; MAX_WORDS];
    let count = sched_protocol::encode(&ControlRequest::Run { id, line }, &mut words)
        .ok_or(Error::InvalidArgument)?;
    let (info, registers) = syscall::load(TENANT_LABEL, &words[..count], &[]);
    let reply = syscall::call(POOL_CAP, info, registers)?;
    if id == 0 {
        return Ok(());
    }
    let mut answer_words = [0u64; MAX_WORDS];
    let length = reply.words(&mut answer_words).min(MAX_WORDS);
    let mut scratch = [0u8; MAX_WORDS * 8];
    match sched_protocol::decode::<TenantAnswer>(&answer_words[..length], &mut scratch) {
        Some(answer) => {
            for line in answer.text.lines() {
                println!("[tenant] {line}");
            }
            if answer.truncated {
                println!("[tenant] (output cut)");
            }
            println!("[tenant] {}", if answer.ok { "ok" } else { "refused" });
        }
        None => println!("[tenant] garbled answer"),
    }
    Ok(())
}
