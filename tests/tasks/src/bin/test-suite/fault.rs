//! Faults delivered as messages: a page fault the suite resolves by mapping
//! a frame and resuming the thread, the error-code bits, a write to a
//! read-only page, `ud2`, and a fault reply that leaves the thread stopped.

use crate::harness::{Check, Env, Outcome, Pass, Shared, Test};
use crate::{ensure, expect};
use alloc::string::String;
use alloc::sync::Arc;
use tarn_rt::abi::fault::{EXCEPTION, FAULT_REPLY_RESUME, FAULT_REPLY_SUSPEND, PAGE_FAULT};
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::{MessageInfo, Rights};
use tarn_rt::arch::{probe_read, probe_write};
use tarn_rt::invoke;
use tarn_rt::layout::{slot, PAGE_SIZE};
use tarn_rt::{Thread, ThreadOptions};

pub const TESTS: &[Test] = &[
    ("fault_page_fault_map_and_resume", page_fault_resume),
    ("fault_write_error_code", write_error_code),
    ("fault_write_to_read_only_page", write_read_only),
    ("fault_ud2_exception", ud2_exception),
    ("fault_reply_suspend_stops_thread", reply_suspend),
];

const RW: Rights = Rights(Rights::READ.0 | Rights::WRITE.0);
/// Page-fault error-code bits (SDM Vol. 3A, 4.7).
const PF_PRESENT: u64 = 1;
const PF_WRITE: u64 = 2;
const PF_USER: u64 = 4;
/// The suite's fault badge.
const FAULT_BADGE: u64 = 0xF1;

/// A thread whose faults go to a fresh endpoint: (thread, endpoint, shared).
fn faulting_thread<F>(env: &mut Env, body: F) -> Result<(Thread, u64, Arc<Shared>), String>
where
    F: FnOnce(&Shared) + Send + 'static,
{
    let endpoint = env.endpoint()?;
    let badged = env.mint(endpoint, Rights::ALL, FAULT_BADGE)?;
    let shared = Shared::new();
    let out = shared.clone();
    let options = ThreadOptions {
        fault_endpoint: badged,
        ..Default::default()
    };
    let thread = env.spawn(options, move || {
        body(&out);
        out.set(15, 1);
    })?;
    Ok((thread, endpoint, shared))
}

fn in_image(rip: u64) -> bool {
    (0x20_0000..0x1000_0000).contains(&rip)
}

fn page_fault_resume(env: &mut Env) -> Outcome {
    let address = env.vaddr(PAGE_SIZE, PAGE_SIZE) + 0x18;
    let (thread, endpoint, shared) =
        faulting_thread(env, move |out| out.set(0, probe_read(address)))?;
    let fault = env.recv_within(endpoint)?;
    expect!(
        (fault.label(), fault.badge, fault.length()),
        (PAGE_FAULT, FAULT_BADGE, 4)
    );
    let [rip, fault_address, error_code, vector] = fault.mrs;
    expect!((fault_address, vector), (address, 14));
    expect!(error_code & (PF_PRESENT | PF_WRITE | PF_USER), PF_USER);
    ensure!(
        in_image(rip),
        "fault rip {rip:#x} is not in the program image"
    );
    expect!(
        invoke::tcb_read_registers(thread.tcb).map(|s| s.state()),
        Ok(Some(ThreadState::BlockedOnReply))
    );
    // Fill a frame elsewhere, then map a copy where the thread faulted.
    let (frame, staging) = env.mapped_frame()?;
    probe_write(staging + 0x18, 0x5EED);
    let copy = env.copy(frame, Rights::ALL)?;
    invoke::frame_map(copy, slot::ROOT_VSPACE, address & !(PAGE_SIZE - 1), RW)
        .ctx("map at the fault address")?;
    expect!(
        tarn_rt::reply(MessageInfo::new(FAULT_REPLY_RESUME, 0, 0), [0; 4]),
        Ok(())
    );
    env.join(&thread)?;
    expect!(shared.get(0), 0x5EED);
    Ok(Pass::Ok)
}

fn write_error_code(env: &mut Env) -> Outcome {
    let address = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    let (thread, endpoint, _shared) = faulting_thread(env, move |_| probe_write(address, 1))?;
    let fault = env.recv_within(endpoint)?;
    expect!(
        (fault.label(), fault.mrs[1], fault.mrs[3]),
        (PAGE_FAULT, address, 14)
    );
    expect!(
        fault.mrs[2] & (PF_PRESENT | PF_WRITE | PF_USER),
        PF_WRITE | PF_USER
    );
    // Resolve it and let the write go through.
    let frame = env.frame()?;
    invoke::frame_map(frame, slot::ROOT_VSPACE, address, RW).ctx("map")?;
    expect!(
        tarn_rt::reply(MessageInfo::new(FAULT_REPLY_RESUME, 0, 0), [0; 4]),
        Ok(())
    );
    env.join(&thread)?;
    expect!(probe_read(address), 1);
    Ok(Pass::Ok)
}

fn write_read_only(env: &mut Env) -> Outcome {
    let frame = env.frame()?;
    let address = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    invoke::frame_map(frame, slot::ROOT_VSPACE, address, Rights::READ).ctx("map read-only")?;
    let (thread, endpoint, _shared) = faulting_thread(env, move |_| probe_write(address + 8, 2))?;
    let fault = env.recv_within(endpoint)?;
    expect!((fault.label(), fault.mrs[1]), (PAGE_FAULT, address + 8));
    expect!(
        fault.mrs[2] & (PF_PRESENT | PF_WRITE | PF_USER),
        PF_PRESENT | PF_WRITE | PF_USER
    );
    // Remap writable and resume.
    invoke::frame_unmap(frame).ctx("unmap")?;
    invoke::frame_map(frame, slot::ROOT_VSPACE, address, RW).ctx("map writable")?;
    expect!(
        tarn_rt::reply(MessageInfo::new(FAULT_REPLY_RESUME, 0, 0), [0; 4]),
        Ok(())
    );
    env.join(&thread)?;
    expect!(probe_read(address + 8), 2);
    Ok(Pass::Ok)
}

fn ud2_exception(env: &mut Env) -> Outcome {
    let (thread, endpoint, shared) = faulting_thread(env, |_| tarn_rt::arch::ud2())?;
    let fault = env.recv_within(endpoint)?;
    expect!(
        (fault.label(), fault.badge, fault.mrs[1], fault.mrs[3]),
        (EXCEPTION, FAULT_BADGE, 0, 6)
    );
    ensure!(
        in_image(fault.mrs[0]),
        "fault rip {:#x} is not in the program image",
        fault.mrs[0]
    );
    // Resuming re-executes the ud2: the same fault arrives again.
    expect!(
        tarn_rt::reply(MessageInfo::new(FAULT_REPLY_RESUME, 0, 0), [0; 4]),
        Ok(())
    );
    let again = env.recv_within(endpoint)?;
    expect!(
        (again.label(), again.mrs[0], again.mrs[3]),
        (EXCEPTION, fault.mrs[0], 6)
    );
    expect!(
        tarn_rt::reply(MessageInfo::new(FAULT_REPLY_SUSPEND, 0, 0), [0; 4]),
        Ok(())
    );
    expect!(
        invoke::tcb_read_registers(thread.tcb).map(|s| s.state()),
        Ok(Some(ThreadState::Inactive))
    );
    expect!(shared.get(15), 0);
    thread.destroy(&mut env.res).ctx("destroy")?;
    Ok(Pass::Ok)
}

fn reply_suspend(env: &mut Env) -> Outcome {
    let address = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    let (thread, endpoint, shared) =
        faulting_thread(env, move |out| out.set(0, probe_read(address)))?;
    let fault = env.recv_within(endpoint)?;
    expect!(fault.label(), PAGE_FAULT);
    expect!(
        tarn_rt::reply(MessageInfo::new(FAULT_REPLY_SUSPEND, 0, 0), [0; 4]),
        Ok(())
    );
    expect!(
        invoke::tcb_read_registers(thread.tcb).map(|s| s.state()),
        Ok(Some(ThreadState::Inactive))
    );
    // Nothing more arrives, and the thread never got past the fault.
    env.sleep_ns(10_000_000);
    expect!(
        tarn_rt::nb_recv(endpoint).err(),
        Some(tarn_rt::abi::Error::WouldBlock)
    );
    expect!(shared.get(15), 0);
    thread.destroy(&mut env.res).ctx("destroy")?;
    Ok(Pass::Ok)
}
