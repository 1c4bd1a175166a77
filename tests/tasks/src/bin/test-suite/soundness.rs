//! Soundness (issue 10): nothing the kernel keeps outlives the capability
//! it stands for. Each test makes exactly one attack of the issue: it takes
//! away, underneath a kernel reference, the capability (or the untyped
//! memory) that reference relies on, retypes the memory where it can, and
//! checks that the kernel neither writes there nor keeps using the old
//! object, and that the kernel's invariant check still holds (before the
//! fixes it failed for each).

use crate::harness::{code, Check, Env, Outcome, Pass, Shared, Test};
use crate::{ensure, expect, expect_err};
use alloc::format;
use alloc::string::String;
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::vcpu::{attributes, Exit, Segment};
use tarn_rt::abi::{Error, MessageInfo, ObjectType, Rights};
use tarn_rt::arch::{probe_read, probe_write};
use tarn_rt::invoke::{self, TcbConfig, VcpuRunArgs};
use tarn_rt::layout::{slot, PAGE_SIZE};
use tarn_rt::vcpu::RegisterPage;
use tarn_rt::{ipc_buffer, ThreadOptions, UntypedAllocator};

pub const TESTS: &[Test] = &[
    (
        "soundness_ipc_buffer_revoked_under_receiver",
        ipc_buffer_revoked,
    ),
    (
        "soundness_event_ring_revoked_under_binding",
        event_ring_revoked,
    ),
    (
        "soundness_event_notification_held_by_binding",
        event_notification_held,
    ),
    ("soundness_moved_cpu_cap_still_unbinds", moved_cpu_cap),
    (
        "soundness_vcpu_write_segment_bound_thread_only",
        write_segment_bound_thread_only,
    ),
    (
        "soundness_destroyed_server_ends_donation",
        destroyed_server_ends_donation,
    ),
    (
        "soundness_unanswered_call_dropped_by_next_call",
        unanswered_call_dropped,
    ),
    (
        "soundness_guest_space_revoked_under_running_guest",
        guest_space_revoked,
    ),
    (
        "soundness_configure_destroying_its_caller",
        configure_destroying_caller,
    ),
    (
        "soundness_vcpu_run_ends_at_suspend",
        vcpu_run_ends_at_suspend,
    ),
    (
        "soundness_register_page_revoked_under_running_guest",
        register_page_revoked,
    ),
    (
        "soundness_register_page_moved_deleted_refused",
        register_page_moved_deleted_refused,
    ),
    (
        "soundness_vcpu_deleted_while_current_on_another_cpu",
        vcpu_deleted_while_current_elsewhere,
    ),
];

const RW: Rights = Rights(Rights::READ.0 | Rights::WRITE.0);

/// Fails unless the kernel's invariant check holds now.
fn consistent(when: &str) -> Result<(), String> {
    let report = invoke::machine_check_invariants(slot::MACHINE).ctx("check invariants")?;
    ensure!(
        report.consistent,
        "the kernel's invariants do not hold {when} (its console line names the first broken one)"
    );
    Ok(())
}

/// One object of `object_type` from `untyped` in a fresh slot.
fn retype(
    env: &mut Env,
    untyped: u64,
    object_type: ObjectType,
    size_bits: u64,
) -> Result<u64, String> {
    let dest = env.slot()?;
    invoke::untyped_retype(untyped, object_type, size_bits, slot::ROOT_CNODE, dest, 1)
        .ctx("retype")?;
    Ok(dest)
}

/// The word a test fills page word `index` with.
fn pattern(index: u64) -> u64 {
    0x5EED_0000_0000_0000 | index
}

/// Maps `frame` at a fresh address and fills it with [`pattern`].
fn fill_with_pattern(env: &mut Env, frame: u64) -> Result<u64, String> {
    let vaddr = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    invoke::frame_map(frame, slot::ROOT_VSPACE, vaddr, RW).ctx("map the frame")?;
    for index in 0..PAGE_SIZE / 8 {
        probe_write(vaddr + index * 8, pattern(index));
    }
    Ok(vaddr)
}

/// Fails if the page at `vaddr` no longer holds [`pattern`] (or, with
/// `zero`, zeros).
fn unchanged(vaddr: u64, zero: bool, what: &str) -> Result<(), String> {
    for index in 0..PAGE_SIZE / 8 {
        let expected = if zero { 0 } else { pattern(index) };
        let found = probe_read(vaddr + index * 8);
        ensure!(
            found == expected,
            "the kernel wrote into {what}: word {index} is {found:#x}, not {expected:#x}"
        );
    }
    Ok(())
}

/// Bug 1: a receiver blocked in `Recv` whose IPC-buffer frame goes back to
/// its untyped memory (revoked), which becomes a new frame and then a
/// CNode: a 12-word message must write into neither (the thread has no
/// buffer once its frame is gone), and forge no capability in the CNode.
fn ipc_buffer_revoked(env: &mut Env) -> Outcome {
    /// A Frame capability's first word (`ObjectType::Frame4K`, read+write),
    /// as a CNode slot holds it.
    const FORGED_FRAME_WORD: u64 = ObjectType::Frame4K as u64 | RW.0 << 8;
    /// Kernel text.
    const FORGED_ADDRESS: u64 = 0x10_1000;
    let untyped = env.untyped(16)?;
    let buffer = retype(env, untyped, ObjectType::Frame4K, 0)?;
    let address = invoke::frame_get_address(buffer).ctx("buffer address")?;
    let endpoint = env.endpoint()?;
    // Shared words 0/1: result + 1 of the two receives, 2/3 their lengths.
    let shared = Shared::new();
    let out = shared.clone();
    let receiver = env.spawn(
        ThreadOptions {
            start: false,
            ..Default::default()
        },
        move || {
            for round in 0..2 {
                let result = tarn_rt::recv(endpoint);
                out.set(2 + round, result.as_ref().map_or(0, |m| m.length() as u64));
                out.set(round, code(&result) + 1);
            }
        },
    )?;
    // Its kernel-side IPC buffer is the frame from `untyped` (the runtime
    // keeps using its own page, so the thread runs as before).
    let config = TcbConfig {
        cnode: slot::ROOT_CNODE,
        vspace: slot::ROOT_VSPACE,
        ipc_buffer_frame: buffer,
        ipc_buffer_vaddr: env.vaddr(PAGE_SIZE, PAGE_SIZE),
        fault_endpoint: 0,
    };
    invoke::tcb_configure(receiver.tcb, &config).ctx("configure the receiver")?;
    invoke::tcb_resume(receiver.tcb).ctx("resume the receiver")?;
    env.wait_state(receiver.tcb, ThreadState::BlockedOnReceive)?;

    // The buffer's memory returns to its untyped and becomes a new frame.
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, untyped), Ok(()));
    consistent("once the buffer frame is revoked")?;
    let reused = retype(env, untyped, ObjectType::Frame4K, 0)?;
    expect!(invoke::frame_get_address(reused), Ok(address));
    let vaddr = fill_with_pattern(env, reused)?;
    for index in 4..12 {
        ipc_buffer::set_mr(index, 0xBAD0_0000 + index as u64);
    }
    expect!(
        tarn_rt::send(endpoint, MessageInfo::new(1, 0, 12), [1, 2, 3, 4]),
        Ok(())
    );
    env.wait_until("the first message to arrive", || shared.get(0) != 0)?;
    expect!(shared.get(0), 1);
    unchanged(vaddr, false, "a frame retyped from the revoked IPC buffer")?;
    // Without a buffer the receiver gets the four register words only.
    expect!(shared.get(2), 4);
    consistent("after the first message")?;

    // Retyped as a CNode, message words 8..10 would be slot 1's capability.
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, untyped), Ok(()));
    let cnode = retype(env, untyped, ObjectType::CNode, 4)?;
    env.wait_state(receiver.tcb, ThreadState::BlockedOnReceive)?;
    for index in 4..12 {
        ipc_buffer::set_mr(index, 0);
    }
    ipc_buffer::set_mr(8, FORGED_FRAME_WORD);
    ipc_buffer::set_mr(9, FORGED_ADDRESS);
    expect!(
        tarn_rt::send(endpoint, MessageInfo::new(2, 0, 12), [1, 2, 3, 4]),
        Ok(())
    );
    env.wait_until("the second message to arrive", || shared.get(1) != 0)?;
    expect!(shared.get(1), 1);
    let probe = env.slot()?;
    for index in 1..16 {
        let copied = invoke::cnode_copy(slot::ROOT_CNODE, probe, cnode, index, Rights::ALL);
        if copied.is_ok() {
            let forged = invoke::frame_get_address(probe);
            let _ = invoke::cnode_delete(slot::ROOT_CNODE, probe);
            return Err(format!(
                "a message forged a capability in slot {index} of a CNode over the revoked buffer (FrameGetAddress: {forged:x?})"
            ));
        }
        expect_err!(copied, Error::InvalidCapability);
    }
    consistent("after the second message")?;
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, untyped), Ok(()));
    env.join(&receiver)?;
    consistent("at the end")?;
    Ok(Pass::Ok)
}

/// A Scheduler, a copy of CPU 0's capability and, once bound with `ring`
/// and `notify`, a 1 ms tick on it.
fn bind_cpu0(env: &mut Env, ring: u64, notify: u64) -> Result<(u64, u64), String> {
    let Some(first) = env.cpu_caps else {
        return Err(String::from("the suite got no Cpu capabilities"));
    };
    let scheduler = env.create(ObjectType::Scheduler, 0)?;
    let cpu = env.copy(first, Rights::ALL)?;
    expect!(
        invoke::scheduler_bind_cpu(scheduler, cpu, ring, notify),
        Ok(())
    );
    expect!(invoke::scheduler_set_tick(scheduler, 0, 1_000_000), Ok(()));
    Ok((scheduler, cpu))
}

/// Whether CPU 0 (through capability `cpu`) is bound, checked both ways:
/// `CpuInfo`, and whether `scheduler` may still set its tick.
fn still_bound(scheduler: u64, cpu: u64) -> Result<bool, String> {
    let (_, _, bound) = invoke::cpu_info(cpu).ctx("cpu info")?;
    let tick = invoke::scheduler_set_tick(scheduler, 0, 1_000_000);
    ensure!(
        tick.is_ok() == bound,
        "CpuInfo says bound = {bound} but SchedulerSetTick gives {tick:?}"
    );
    if !bound {
        expect_err!(tick, Error::NotOwned);
    }
    Ok(bound)
}

/// Bug 2, the ring: a CPU bound with an event ring from memory that is then
/// revoked and retyped as a frame. The CPU is unbound at once and no event
/// record appears in the new frame.
fn event_ring_revoked(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let untyped = env.untyped(16)?;
    let ring = retype(env, untyped, ObjectType::Frame4K, 0)?;
    let address = invoke::frame_get_address(ring).ctx("ring address")?;
    let notify = env.notification()?;
    let (scheduler, cpu) = bind_cpu0(env, ring, notify)?;
    // Ticks arrive (the binding works).
    env.sleep_ns(5_000_000);
    expect!(tarn_rt::poll(notify).map(|_| ()), Ok(()));
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, untyped), Ok(()));
    consistent("once the ring is revoked")?;
    let reused = retype(env, untyped, ObjectType::Frame4K, 0)?;
    expect!(invoke::frame_get_address(reused), Ok(address));
    let vaddr = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    invoke::frame_map(reused, slot::ROOT_VSPACE, vaddr, RW).ctx("map the new frame")?;
    env.sleep_ns(20_000_000);
    unchanged(vaddr, true, "a frame retyped from a revoked event ring")?;
    expect!(still_bound(scheduler, cpu), Ok(false));
    consistent("20 ms later")?;
    Ok(Pass::Ok)
}

/// Bug 2, the notification: the binding keeps its notification alive when
/// the server deletes its own capability, and a revoke of the
/// notification's memory unbinds the CPU; nothing is written to the memory
/// after that.
fn event_notification_held(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let untyped = env.untyped(12)?;
    let notify = retype(env, untyped, ObjectType::Notification, 0)?;
    let ring = env.frame()?;
    let (scheduler, cpu) = bind_cpu0(env, ring, notify)?;
    let before = env.live_objects()?;
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, notify), Ok(()));
    consistent("once the server's notification capability is deleted")?;
    // Still alive (the kernel holds it) and still bound.
    expect!(env.live_objects()?, before);
    expect!(still_bound(scheduler, cpu), Ok(true));
    env.sleep_ns(5_000_000);
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, untyped), Ok(()));
    consistent("once the notification's memory is revoked")?;
    expect!(env.live_objects()?, before - 1);
    let reused = retype(env, untyped, ObjectType::Frame4K, 0)?;
    let vaddr = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    invoke::frame_map(reused, slot::ROOT_VSPACE, vaddr, RW).ctx("map the new frame")?;
    env.sleep_ns(20_000_000);
    unchanged(
        vaddr,
        true,
        "a frame retyped from a revoked event notification",
    )?;
    expect!(still_bound(scheduler, cpu), Ok(false));
    consistent("20 ms later")?;
    Ok(Pass::Ok)
}

/// Bug 3: bind CPU 0 through a copy, move the copy, revoke the original:
/// the moved copy goes and the CPU is unbound. Deleting a moved binding
/// capability unbinds too.
fn moved_cpu_cap(env: &mut Env) -> Outcome {
    let Some(first) = env.cpu_caps else {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    };
    let original = env.copy(first, Rights::ALL)?;
    let scheduler = env.create(ObjectType::Scheduler, 0)?;
    let ring = env.frame()?;
    let notify = env.notification()?;
    for delete_moved in [false, true] {
        let copy = env.copy(original, Rights::ALL)?;
        expect!(
            invoke::scheduler_bind_cpu(scheduler, copy, ring, notify),
            Ok(())
        );
        let moved = env.slot()?;
        expect!(
            invoke::cnode_move(slot::ROOT_CNODE, moved, slot::ROOT_CNODE, copy),
            Ok(())
        );
        expect!(still_bound(scheduler, moved), Ok(true));
        consistent("once the binding capability is moved")?;
        if delete_moved {
            expect!(invoke::cnode_delete(slot::ROOT_CNODE, moved), Ok(()));
        } else {
            expect!(invoke::cnode_revoke(slot::ROOT_CNODE, original), Ok(()));
            expect_err!(invoke::cpu_info(moved), Error::InvalidCapability);
        }
        expect!(still_bound(scheduler, original), Ok(false));
        consistent("once the moved binding capability is gone")?;
    }
    Ok(Pass::Ok)
}

/// Bug 4: `VcpuWriteSegment` works only from the thread the Vcpu is bound
/// to (as `VcpuRun`), and from that thread it works.
fn write_segment_bound_thread_only(env: &mut Env) -> Outcome {
    let space = env.create(ObjectType::GuestSpace, 15)?;
    let vcpu = env.create(ObjectType::Vcpu, 0)?;
    let page = env.frame()?;
    let shared = Shared::new();
    let out = shared.clone();
    let thread = env.spawn(
        ThreadOptions {
            start: false,
            ..Default::default()
        },
        move || {
            let result =
                invoke::vcpu_write_segment(vcpu, Segment::Cs, 0, 0, 0xFFFF, attributes::CODE16);
            out.set(0, code(&result) + 1);
        },
    )?;
    match invoke::vcpu_bind(vcpu, thread.tcb, space, page) {
        Err(Error::NotSupported) => return Ok(Pass::Skipped("no SVM or VMX")),
        other => expect!(other, Ok(())),
    }
    expect_err!(
        invoke::vcpu_write_segment(vcpu, Segment::Cs, 0, 0, 0xFFFF, attributes::CODE16),
        Error::IllegalState
    );
    expect!(invoke::tcb_resume(thread.tcb), Ok(()));
    env.join(&thread)?;
    expect!(shared.get(0), 1);
    consistent("after the writes")?;
    Ok(Pass::Ok)
}

/// Spawns a thread whose objects (TCB first, at the region's base, then its
/// IPC buffer and stack) all come from a new untyped region of 2^16 bytes:
/// (thread, the region's capability).
fn thread_in_own_memory<F: FnOnce() + Send + 'static>(
    env: &mut Env,
    options: ThreadOptions,
    body: F,
) -> Result<(tarn_rt::Thread, u64), String> {
    let (untyped, phys) = env.res.create_untyped(16).ctx("create untyped")?;
    let mut own = UntypedAllocator::new();
    own.add(untyped, phys, 16);
    let suite = core::mem::replace(&mut env.res.untyped, own);
    let thread = env.spawn(options, body);
    env.res.untyped = suite;
    Ok((thread?, untyped))
}

/// Where a TCB keeps its scheduling state (after its three-word header).
const TCB_STATE_WORD: u64 = 3;

/// A server lending a dispatched caller's entry (IPC donation) is destroyed
/// while it waits in its CPU's system FIFO, and its memory becomes a frame
/// whose state word says "runnable": ending the entry must not treat that
/// frame as the server (before the fix the kernel queued it as a thread).
fn destroyed_server_ends_donation(env: &mut Env) -> Outcome {
    if env.cpu_caps.is_none() {
        return Ok(Pass::Skipped("no Cpu capabilities"));
    }
    let ring = env.frame()?;
    let notify = env.notification()?;
    let (scheduler, cpu) = bind_cpu0(env, ring, notify)?;
    let endpoint = env.endpoint()?;
    // Word 0: the server runs on the entry.
    let shared = Shared::new();
    let server_shared = shared.clone();
    let (server, untyped) = thread_in_own_memory(
        env,
        ThreadOptions {
            cpu: Some(0),
            ..Default::default()
        },
        move || {
            let _ = tarn_rt::recv(endpoint);
            server_shared.set(0, 1);
            // Yielding puts it behind the suite in CPU 0's system FIFO,
            // with the entry still lent to it.
            loop {
                tarn_rt::yield_now();
            }
        },
    )?;
    env.wait_state(server.tcb, ThreadState::BlockedOnReceive)?;
    let caller = env.spawn(
        ThreadOptions {
            cpu: Some(0),
            start: false,
            ..Default::default()
        },
        move || {
            let _ = tarn_rt::call(endpoint, MessageInfo::new(0, 0, 0), [0; 4]);
            loop {
                tarn_rt::yield_now();
            }
        },
    )?;
    expect!(invoke::scheduler_adopt(scheduler, caller.tcb, 41), Ok(()));
    expect!(invoke::tcb_resume(caller.tcb), Ok(()));
    expect!(
        invoke::scheduler_dispatch(scheduler, 0, caller.tcb, 1_000_000_000),
        Ok(())
    );
    env.wait_until("the server to run on the caller's entry", || {
        shared.get(0) != 0
    })?;
    // The server goes, memory and all; its TCB's memory becomes a frame.
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, untyped), Ok(()));
    consistent("once the server lending the entry is destroyed")?;
    let reused = retype(env, untyped, ObjectType::Frame4K, 0)?;
    let vaddr = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    invoke::frame_map(reused, slot::ROOT_VSPACE, vaddr, RW).ctx("map the new frame")?;
    probe_write(vaddr + TCB_STATE_WORD * 8, ThreadState::Runnable as u64);
    // The caller was told its server is gone (it has not run since).
    let told = invoke::tcb_read_registers(caller.tcb).ctx("read the caller")?;
    expect!(told.state(), Some(ThreadState::Runnable));
    expect!(told.rax, Error::ObjectDeleted as u64);
    // End the entry (its caller is suspended), and let CPU 0 schedule.
    expect!(invoke::tcb_suspend(caller.tcb), Ok(()));
    env.sleep_ns(10_000_000);
    for index in 0..PAGE_SIZE / 8 {
        let expected = if index == TCB_STATE_WORD { 1 } else { 0 };
        let found = probe_read(vaddr + index * 8);
        ensure!(
            found == expected,
            "the kernel wrote into the destroyed server's memory: word {index} is {found:#x}"
        );
    }
    consistent("after the entry ended")?;
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, cpu), Ok(()));
    Ok(Pass::Ok)
}

/// A server that takes a second call before answering the first: the first
/// caller, whose reply can no longer come, gets `ObjectDeleted` at once
/// (it kept naming the server, which could be destroyed under it), and the
/// second caller hears when the server goes.
fn unanswered_call_dropped(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let idle = env.notification()?;
    // Words: 0 / 1 = the callers' results + 1, 2 = the server has both calls.
    let shared = Shared::new();
    let server_shared = shared.clone();
    let server = env.thread(move || {
        let _ = tarn_rt::recv(endpoint);
        let _ = tarn_rt::recv(endpoint);
        server_shared.set(2, 1);
        let _ = tarn_rt::wait(idle, 0);
    })?;
    env.wait_state(server.tcb, ThreadState::BlockedOnReceive)?;
    let mut callers = alloc::vec::Vec::new();
    for index in 0..2 {
        let out = shared.clone();
        let caller = env.thread(move || {
            let result = tarn_rt::call(endpoint, MessageInfo::new(0, 0, 0), [0; 4]);
            out.set(index, code(&result) + 1);
        })?;
        env.wait_until("the call to reach the server", || {
            matches!(
                invoke::tcb_read_registers(server.tcb).map(|s| s.state()),
                Ok(Some(
                    ThreadState::BlockedOnReceive | ThreadState::BlockedOnNotification
                ))
            ) && matches!(
                invoke::tcb_read_registers(caller.tcb).map(|s| s.state()),
                Ok(Some(ThreadState::BlockedOnReply | ThreadState::Inactive))
            )
        })?;
        callers.push(caller);
    }
    env.wait_until("the server to take both calls", || shared.get(2) != 0)?;
    env.join(&callers[0])?;
    expect!(
        crate::harness::decode(shared.get(0) - 1),
        Err(Error::ObjectDeleted)
    );
    expect!(shared.get(1), 0);
    consistent("once the server took a second call")?;
    expect!(invoke::tcb_suspend(server.tcb), Ok(()));
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, server.tcb), Ok(()));
    env.join(&callers[1])?;
    expect!(
        crate::harness::decode(shared.get(1) - 1),
        Err(Error::ObjectDeleted)
    );
    consistent("once the server is destroyed")?;
    Ok(Pass::Ok)
}

/// A guest runs while its GuestSpace's memory is revoked under it: the
/// guest stops (its page tables are gone) and `VcpuRun` ends with
/// `ObjectDeleted`; the Vcpu keeps no root of the old GuestSpace.
fn guest_space_revoked(env: &mut Env) -> Outcome {
    let untyped = env.untyped(15)?;
    let space = retype(env, untyped, ObjectType::GuestSpace, 15)?;
    let page = crate::sched::spinning_guest(env, space)?;
    let frame = page.frame();
    let vcpu = env.create(ObjectType::Vcpu, 0)?;
    // Words: 0 = about to enter the guest, 1 = the run's result + 1 (an
    // exit: its kind + 1000).
    let shared = Shared::new();
    let out = shared.clone();
    let guest = env.spawn(
        ThreadOptions {
            cpu: Some(env.cpus - 1),
            start: false,
            ..Default::default()
        },
        move || {
            let mut page = page;
            let args = VcpuRunArgs {
                load: true,
                ..VcpuRunArgs::default()
            };
            let result = crate::sched::real_mode_segments(vcpu).and_then(|()| {
                out.set(0, 1);
                invoke::vcpu_run(vcpu, &args, &mut page)
            });
            out.set(
                1,
                match result {
                    Ok(exit) => exit.kind_raw + 1000,
                    Err(error) => error as u64 + 1,
                },
            );
        },
    )?;
    match invoke::vcpu_bind(vcpu, guest.tcb, space, frame) {
        Err(Error::NotSupported) => return Ok(Pass::Skipped("no SVM or VMX")),
        other => expect!(other, Ok(())),
    }
    expect!(invoke::tcb_resume(guest.tcb), Ok(()));
    env.wait_until("the guest to start", || shared.get(0) != 0)?;
    env.sleep_ns(10_000_000);
    ensure!(
        shared.get(1) == 0,
        "the guest exited early: {}",
        shared.get(1)
    );
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, untyped), Ok(()));
    let ended = env.wait_until("the guest to stop", || shared.get(1) != 0);
    if ended.is_err() {
        let _ = invoke::tcb_suspend(guest.tcb);
        consistent("while the guest runs on a revoked GuestSpace")?;
        return Err(String::from(
            "the guest kept running on a revoked GuestSpace",
        ));
    }
    expect!(
        crate::harness::decode(shared.get(1) - 1),
        Err(Error::ObjectDeleted)
    );
    consistent("once the GuestSpace is revoked")?;
    Ok(Pass::Ok)
}

/// `TcbConfigure` whose deletion of the target's old capabilities destroys
/// the calling thread and its CSpace (their last capabilities hang off the
/// target): the kernel must finish the configuration from capabilities
/// that are still there, not panic.
fn configure_destroying_caller(env: &mut Env) -> Outcome {
    // The caller's CSpace R and a CNode X that will hold the caller's only
    // TCB capability; the target T's CSpace is X.
    let r = env.create(ObjectType::CNode, 4)?;
    let x = env.create(ObjectType::CNode, 4)?;
    let target = env.create(ObjectType::Tcb, 0)?;
    let config = TcbConfig {
        cnode: x,
        vspace: slot::ROOT_VSPACE,
        ..TcbConfig::default()
    };
    invoke::tcb_configure(target, &config).ctx("configure the target")?;
    let gate = env.notification()?;
    // R: 1 = the target, 2 = a CNode and 3 = a VSpace for its new
    // configuration, 4 = the gate.
    for (index, source) in [
        (1, target),
        (2, slot::ROOT_CNODE),
        (3, slot::ROOT_VSPACE),
        (4, gate),
    ] {
        invoke::cnode_copy(r, index, slot::ROOT_CNODE, source, Rights::ALL).ctx("fill R")?;
    }
    let shared = Shared::new();
    let out = shared.clone();
    let caller = env.spawn(
        ThreadOptions {
            cspace: Some(r),
            ..Default::default()
        },
        move || {
            let _ = tarn_rt::wait(4, 0);
            out.set(0, 1);
            let config = TcbConfig {
                cnode: 2,
                vspace: 3,
                ..TcbConfig::default()
            };
            let _ = invoke::tcb_configure(1, &config);
            out.set(1, 1);
        },
    )?;
    env.wait_state(caller.tcb, ThreadState::BlockedOnNotification)?;
    // The caller's only TCB capability goes into X, whose only capability
    // is the target's CSpace slot; R's only one is the caller's CSpace slot.
    expect!(
        invoke::cnode_move(x, 1, slot::ROOT_CNODE, caller.tcb),
        Ok(())
    );
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, x), Ok(()));
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, r), Ok(()));
    let before = env.live_objects()?;
    expect!(tarn_rt::signal(gate), Ok(()));
    env.wait_until("the caller to configure the target", || shared.get(0) != 0)?;
    env.sleep_ns(5_000_000);
    // X, the caller and R are gone; the caller never returned.
    expect!(env.live_objects()?, before - 3);
    expect!(shared.get(1), 0);
    consistent("after the configuration")?;
    expect!(
        invoke::tcb_read_registers(target).map(|s| s.state()),
        Ok(Some(ThreadState::Inactive))
    );
    Ok(Pass::Ok)
}

/// A thread suspended while inside `VcpuRun` and then resumed returns from
/// `VcpuRun` (a `Timeout` exit with field 0 = 1) instead of going on running
/// the guest: suspension cancels the call's timeout, so before the fix the
/// resumed thread re-entered the guest with no bound and never returned.
/// A second `VcpuRun` then runs the same guest until its own timeout
/// (field 0 = 0).
fn vcpu_run_ends_at_suspend(env: &mut Env) -> Outcome {
    /// Far longer than the test waits: only the suspension can end the run.
    const LONG_NS: u64 = 30_000_000_000;
    let space = env.create(ObjectType::GuestSpace, 15)?;
    let page = crate::sched::spinning_guest(env, space)?;
    let frame = page.frame();
    let vcpu = env.create(ObjectType::Vcpu, 0)?;
    // Words: 0 = about to enter the guest; 1, 3 = the runs' exit kinds +
    // 1000 (or error + 1); 2, 4 = their field 0.
    let shared = Shared::new();
    let out = shared.clone();
    let guest = env.spawn(
        ThreadOptions {
            cpu: Some(env.cpus - 1),
            start: false,
            ..Default::default()
        },
        move || {
            let mut page = page;
            if crate::sched::real_mode_segments(vcpu).is_err() {
                out.set(1, u64::MAX);
                return;
            }
            out.set(0, 1);
            for (round, timeout_ns) in [LONG_NS, 2_000_000].into_iter().enumerate() {
                let args = VcpuRunArgs {
                    load: round == 0,
                    timeout_ns,
                    ..VcpuRunArgs::default()
                };
                let (kind, field) = match invoke::vcpu_run(vcpu, &args, &mut page) {
                    Ok(exit) => (exit.kind_raw + 1000, exit.fields[0]),
                    Err(error) => (error as u64 + 1, 0),
                };
                out.set(2 + 2 * round, field);
                out.set(1 + 2 * round, kind);
            }
        },
    )?;
    match invoke::vcpu_bind(vcpu, guest.tcb, space, frame) {
        Err(Error::NotSupported) => return Ok(Pass::Skipped("no SVM or VMX")),
        other => expect!(other, Ok(())),
    }
    expect!(invoke::tcb_resume(guest.tcb), Ok(()));
    env.wait_until("the guest to start", || shared.get(0) != 0)?;
    env.sleep_ns(10_000_000);
    ensure!(
        shared.get(1) == 0,
        "the guest exited early: {}",
        shared.get(1)
    );
    expect!(invoke::tcb_suspend(guest.tcb), Ok(()));
    consistent("with the thread suspended inside VcpuRun")?;
    env.sleep_ns(5_000_000);
    expect!(shared.get(1), 0);
    expect!(invoke::tcb_resume(guest.tcb), Ok(()));
    let returned = env.wait_until("VcpuRun to return after the resume", || shared.get(1) != 0);
    if let Err(why) = returned {
        let _ = invoke::tcb_suspend(guest.tcb);
        let _ = invoke::cnode_delete(slot::ROOT_CNODE, vcpu);
        return Err(format!(
            "{why}: the resumed thread went on running the guest without its timeout"
        ));
    }
    let timeout = tarn_rt::abi::vcpu::Exit::Timeout as u64 + 1000;
    expect!(shared.get(1), timeout);
    expect!(shared.get(2), 1);
    env.join(&guest)?;
    expect!(shared.get(3), timeout);
    expect!(shared.get(4), 0);
    consistent("after both runs")?;
    Ok(Pass::Ok)
}

/// A guest runs (with a 50 ms timeout) while its register page's memory is
/// revoked under it and retyped as a new frame: when the run ends it fails
/// with `ObjectDeleted`, the new frame stays zero (the kernel wrote
/// neither the exit nor the registers there), the next `VcpuRun` is
/// refused with `ObjectDeleted` at once, and the invariants hold.
fn register_page_revoked(env: &mut Env) -> Outcome {
    const RUN_NS: u64 = 50_000_000;
    let space = env.create(ObjectType::GuestSpace, 15)?;
    let initial = crate::sched::spinning_guest(env, space)?;
    let untyped = env.untyped(12)?;
    let frame = retype(env, untyped, ObjectType::Frame4K, 0)?;
    let address = invoke::frame_get_address(frame).ctx("page address")?;
    let mut page = RegisterPage::of(frame, slot::ROOT_VSPACE).ctx("map the page")?;
    *page.registers() = initial.get().registers;
    let vcpu = env.create(ObjectType::Vcpu, 0)?;
    // Words: 0 = about to enter the guest, 1 and 2 = the two runs' results
    // + 1 (an exit: its kind + 1000).
    let shared = Shared::new();
    let out = shared.clone();
    let guest = env.spawn(
        ThreadOptions {
            cpu: Some(env.cpus - 1),
            start: false,
            ..Default::default()
        },
        move || {
            let mut page = page;
            if crate::sched::real_mode_segments(vcpu).is_err() {
                out.set(1, u64::MAX);
                return;
            }
            out.set(0, 1);
            for round in 1..3 {
                let args = VcpuRunArgs {
                    load: round == 1,
                    timeout_ns: RUN_NS,
                    ..VcpuRunArgs::default()
                };
                // (Only an exit reads the page: after `ObjectDeleted` it
                // is no longer mapped.)
                let result = invoke::vcpu_run(vcpu, &args, &mut page);
                out.set(
                    round,
                    match result {
                        Ok(exit) => exit.kind_raw + 1000,
                        Err(error) => error as u64 + 1,
                    },
                );
            }
        },
    )?;
    match invoke::vcpu_bind(vcpu, guest.tcb, space, frame) {
        Err(Error::NotSupported) => return Ok(Pass::Skipped("no SVM or VMX")),
        other => expect!(other, Ok(())),
    }
    consistent("with the register page bound")?;
    expect!(invoke::tcb_resume(guest.tcb), Ok(()));
    env.wait_until("the guest to start", || shared.get(0) != 0)?;
    env.sleep_ns(5_000_000);
    ensure!(
        shared.get(1) == 0,
        "the guest exited early: {}",
        shared.get(1)
    );
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, untyped), Ok(()));
    let reused = retype(env, untyped, ObjectType::Frame4K, 0)?;
    expect!(invoke::frame_get_address(reused), Ok(address));
    let vaddr = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    invoke::frame_map(reused, slot::ROOT_VSPACE, vaddr, RW).ctx("map the new frame")?;
    consistent("once the register page is revoked, under a running guest")?;
    env.join(&guest)?;
    expect!(
        crate::harness::decode(shared.get(1) - 1),
        Err(Error::ObjectDeleted)
    );
    expect!(
        crate::harness::decode(shared.get(2) - 1),
        Err(Error::ObjectDeleted)
    );
    unchanged(
        vaddr,
        true,
        "a frame retyped from the revoked register page",
    )?;
    consistent("after both runs")?;
    let _ = invoke::cnode_delete(slot::ROOT_CNODE, vcpu);
    Ok(Pass::Ok)
}

/// `VcpuBind` refuses a register page that is not a frame (`WrongType`)
/// or that the caller may not write (`InsufficientRights`), binding
/// nothing; a bound page's capability moved to another slot still serves
/// (the kernel's copy is its child: the exit arrives in the page); once
/// the moved capability is deleted, `VcpuRun` is refused with
/// `ObjectDeleted` and the frame retyped from the same memory stays zero.
fn register_page_moved_deleted_refused(env: &mut Env) -> Outcome {
    let space = env.create(ObjectType::GuestSpace, 15)?;
    let initial = crate::sched::spinning_guest(env, space)?;
    let untyped = env.untyped(12)?;
    let frame = retype(env, untyped, ObjectType::Frame4K, 0)?;
    let mut page = RegisterPage::of(frame, slot::ROOT_VSPACE).ctx("map the page")?;
    *page.registers() = initial.get().registers;
    let vcpu = env.create(ObjectType::Vcpu, 0)?;
    let gate = env.notification()?;
    // Words: 0 = the first run's result + 1 (an exit: its kind + 1000),
    // 1 = its field 0, 2 = the second run's result + 1.
    let shared = Shared::new();
    let out = shared.clone();
    let guest = env.spawn(
        ThreadOptions {
            cpu: Some(env.cpus - 1),
            start: false,
            ..Default::default()
        },
        move || {
            let mut page = page;
            if crate::sched::real_mode_segments(vcpu).is_err() {
                out.set(0, u64::MAX);
                return;
            }
            let args = VcpuRunArgs {
                load: true,
                timeout_ns: 2_000_000,
                ..VcpuRunArgs::default()
            };
            let first = invoke::vcpu_run(vcpu, &args, &mut page);
            out.set(1, first.map_or(0, |exit| exit.fields[0]));
            out.set(
                0,
                first.map_or_else(|e| e as u64 + 1, |exit| exit.kind_raw + 1000),
            );
            let _ = tarn_rt::wait(gate, 0);
            let second = invoke::vcpu_run(vcpu, &VcpuRunArgs::default(), &mut page);
            out.set(2, code(&second) + 1);
        },
    )?;
    // Refused: not a frame; a frame without write rights. Neither binds.
    let endpoint = env.endpoint()?;
    match invoke::vcpu_bind(vcpu, guest.tcb, space, endpoint) {
        Err(Error::NotSupported) => return Ok(Pass::Skipped("no SVM or VMX")),
        other => expect!(other, Err(Error::WrongType)),
    }
    let read_only = env.slot()?;
    invoke::cnode_copy(
        slot::ROOT_CNODE,
        read_only,
        slot::ROOT_CNODE,
        frame,
        Rights::READ,
    )
    .ctx("a read-only copy")?;
    expect!(
        invoke::vcpu_bind(vcpu, guest.tcb, space, read_only),
        Err(Error::InsufficientRights)
    );
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, read_only), Ok(()));
    consistent("after the refused binds")?;
    expect!(invoke::vcpu_bind(vcpu, guest.tcb, space, frame), Ok(()));
    // Moved: the kernel's copy goes with it.
    let moved = env.slot()?;
    expect!(
        invoke::cnode_move(slot::ROOT_CNODE, moved, slot::ROOT_CNODE, frame),
        Ok(())
    );
    consistent("with the register page's capability moved")?;
    expect!(invoke::tcb_resume(guest.tcb), Ok(()));
    env.wait_until("the first run to end", || shared.get(0) != 0)?;
    expect!(shared.get(0), Exit::Timeout as u64 + 1000);
    expect!(shared.get(1), 0);
    // Deleted: the next run is refused, and the memory is left alone.
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, moved), Ok(()));
    consistent("once the moved capability is deleted")?;
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, untyped), Ok(()));
    let reused = retype(env, untyped, ObjectType::Frame4K, 0)?;
    let vaddr = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    invoke::frame_map(reused, slot::ROOT_VSPACE, vaddr, RW).ctx("map the new frame")?;
    expect!(tarn_rt::signal(gate), Ok(()));
    env.join(&guest)?;
    expect!(
        crate::harness::decode(shared.get(2) - 1),
        Err(Error::ObjectDeleted)
    );
    unchanged(
        vaddr,
        true,
        "a frame retyped from the deleted register page",
    )?;
    consistent("after the refused run")?;
    let _ = invoke::cnode_delete(slot::ROOT_CNODE, vcpu);
    Ok(Pass::Ok)
}

/// A Vcpu whose guest ran on another CPU and exited there (its thread then
/// blocked, the CPU idles) is deleted, its memory revoked and retyped as a
/// frame filled with a pattern, and a second guest then runs on that CPU:
/// the frame keeps its pattern, and the invariants hold throughout. (VMX
/// keeps a VMCS current on the CPU it last ran on; deleting the Vcpu must
/// have that CPU clear it first. Otherwise the CPU still has it when the
/// memory is reused, and clears it, writing it back into the frame, when
/// the second guest's VMCS is loaded there; the invariant check also
/// finds a CPU's current VMCS that is no live Vcpu's.)
fn vcpu_deleted_while_current_elsewhere(env: &mut Env) -> Outcome {
    if env.cpus < 2 {
        return Ok(Pass::Skipped("one CPU"));
    }
    let cpu = Some(env.cpus - 1);
    let untyped = env.untyped(tarn_rt::abi::VCPU_SIZE_BITS)?;
    let vcpu = retype(env, untyped, ObjectType::Vcpu, 0)?;
    let second_vcpu = env.create(ObjectType::Vcpu, 0)?;
    let gate = env.notification()?;
    // Words 0 and 1: each guest's exit kind + 1000 (or error + 1).
    let shared = Shared::new();
    let mut threads = alloc::vec::Vec::new();
    for (word, vcpu) in [(0, vcpu), (1, second_vcpu)] {
        let space = env.create(ObjectType::GuestSpace, 15)?;
        // hlt
        let page = crate::sched::real_mode_guest(env, space, &[0xF4])?;
        let frame = page.frame();
        let out = shared.clone();
        let thread = env.spawn(
            ThreadOptions {
                cpu,
                start: false,
                ..Default::default()
            },
            move || {
                let mut page = page;
                let args = VcpuRunArgs {
                    load: true,
                    timeout_ns: 100_000_000,
                    ..VcpuRunArgs::default()
                };
                let result = crate::sched::real_mode_segments(vcpu)
                    .and_then(|()| invoke::vcpu_run(vcpu, &args, &mut page));
                out.set(
                    word,
                    match result {
                        Ok(exit) => exit.kind_raw + 1000,
                        Err(error) => error as u64 + 1,
                    },
                );
                // The first thread stays (blocked) until the end.
                if word == 0 {
                    let _ = tarn_rt::wait(gate, 0);
                }
            },
        )?;
        match invoke::vcpu_bind(vcpu, thread.tcb, space, frame) {
            Err(Error::NotSupported) => return Ok(Pass::Skipped("no SVM or VMX")),
            other => expect!(other, Ok(())),
        }
        threads.push(thread);
    }
    let halted = Exit::Hlt as u64 + 1000;
    expect!(invoke::tcb_resume(threads[0].tcb), Ok(()));
    env.wait_state(threads[0].tcb, ThreadState::BlockedOnNotification)?;
    expect!(shared.get(0), halted);
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, vcpu), Ok(()));
    consistent("once the Vcpu whose VMCS another CPU had is deleted")?;
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, untyped), Ok(()));
    // The first page of the Vcpu's memory: its VMCS (VMX) or VMCB (SVM).
    let reused = retype(env, untyped, ObjectType::Frame4K, 0)?;
    let vaddr = fill_with_pattern(env, reused)?;
    expect!(invoke::tcb_resume(threads[1].tcb), Ok(()));
    env.join(&threads[1])?;
    expect!(shared.get(1), halted);
    unchanged(
        vaddr,
        false,
        "a frame retyped from a deleted Vcpu's first page",
    )?;
    consistent("after another guest ran on that CPU")?;
    expect!(tarn_rt::signal(gate), Ok(()));
    env.join(&threads[0])?;
    let _ = invoke::cnode_delete(slot::ROOT_CNODE, second_vcpu);
    Ok(Pass::Ok)
}
