//! Capability operations: copy, mint, move, delete, revoke and grow, in
//! the suite's own CNode and in other CNodes.

use crate::harness::{Check, Env, Outcome, Pass, Shared, Test};
use crate::{expect, expect_err};
use alloc::string::String;
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::{Error, MessageInfo, ObjectType, Rights};
use tarn_rt::layout::slot;
use tarn_rt::{invoke, ipc_buffer, ThreadOptions};

pub const TESTS: &[Test] = &[
    ("cnode_copy", copy),
    ("cnode_copy_reduces_rights", copy_reduces_rights),
    (
        "cnode_mint_sets_badge_on_notification",
        mint_notification_badge,
    ),
    ("cnode_mint_sets_badge_on_endpoint", mint_endpoint_badge),
    ("cnode_mint_refuses_rebadging", mint_refuses_rebadging),
    ("cnode_move", move_cap),
    ("cnode_delete", delete),
    ("cnode_delete_last_cap_destroys_object", delete_destroys),
    ("cnode_revoke", revoke),
    ("cnode_revoke_middle_of_tree", revoke_middle),
    ("cnode_operations_on_other_cnode", other_cnode),
    ("cnode_destroy_deletes_contents", destroy_contents),
    ("cnode_grow_keeps_every_pointer", grow_keeps_every_pointer),
    ("cnode_grow_refuses_what_it_cannot_do", grow_refuses),
    (
        "cnode_grow_leaves_each_cnode_under_its_memory",
        grow_keeps_memory_ownership,
    ),
];

const RW: Rights = Rights(Rights::READ.0 | Rights::WRITE.0);

fn empty() -> MessageInfo {
    MessageInfo::default()
}

fn live_caps() -> Result<u64, String> {
    invoke::machine_check_invariants(slot::MACHINE)
        .map(|i| i.live_caps)
        .ctx("check invariants")
}

fn copy(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let caps = live_caps()?;
    let objects = env.live_objects()?;
    let dest = env.slot()?;
    expect!(
        invoke::cnode_copy(
            slot::ROOT_CNODE,
            dest,
            slot::ROOT_CNODE,
            endpoint,
            Rights::ALL
        ),
        Ok(())
    );
    expect!(live_caps()?, caps + 1);
    expect!(env.live_objects()?, objects);
    expect_err!(tarn_rt::nb_send(dest, empty(), [0; 4]), Error::WouldBlock);
    expect_err!(
        invoke::cnode_copy(
            slot::ROOT_CNODE,
            dest,
            slot::ROOT_CNODE,
            endpoint,
            Rights::ALL
        ),
        Error::SlotOccupied
    );
    let hole = env.slot()?;
    let other = env.slot()?;
    expect_err!(
        invoke::cnode_copy(slot::ROOT_CNODE, other, slot::ROOT_CNODE, hole, Rights::ALL),
        Error::InvalidCapability
    );
    expect!(live_caps()?, caps + 1);
    Ok(Pass::Ok)
}

fn copy_reduces_rights(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let read = env.copy(endpoint, Rights::READ)?;
    expect_err!(
        tarn_rt::nb_send(read, empty(), [0; 4]),
        Error::InsufficientRights
    );
    expect_err!(tarn_rt::nb_recv(read), Error::WouldBlock);
    // Rights never grow back through a copy.
    let again = env.copy(read, Rights::ALL)?;
    expect_err!(
        tarn_rt::nb_send(again, empty(), [0; 4]),
        Error::InsufficientRights
    );
    let write = env.copy(endpoint, Rights::WRITE)?;
    expect_err!(tarn_rt::nb_recv(write), Error::InsufficientRights);
    expect_err!(tarn_rt::nb_send(write, empty(), [0; 4]), Error::WouldBlock);
    let none = env.copy(endpoint, Rights::NONE)?;
    expect_err!(
        tarn_rt::nb_send(none, empty(), [0; 4]),
        Error::InsufficientRights
    );
    expect_err!(tarn_rt::nb_recv(none), Error::InsufficientRights);
    // Notifications: WRITE signals, READ waits and polls.
    let notification = env.notification()?;
    let signal_only = env.mint(notification, Rights::WRITE, 1)?;
    let wait_only = env.copy(notification, Rights::READ)?;
    expect_err!(tarn_rt::signal(wait_only), Error::InsufficientRights);
    expect_err!(tarn_rt::poll(signal_only), Error::InsufficientRights);
    expect_err!(
        tarn_rt::wait(signal_only, 1_000_000),
        Error::InsufficientRights
    );
    expect!(tarn_rt::signal(signal_only), Ok(()));
    expect!(tarn_rt::poll(wait_only), Ok(1));
    // Frames: a read-only copy cannot be mapped writable or executable.
    let frame = env.frame()?;
    let read_frame = env.copy(frame, Rights::READ)?;
    let vaddr = env.vaddr(4096, 4096);
    expect_err!(
        invoke::frame_map(read_frame, slot::ROOT_VSPACE, vaddr, RW),
        Error::InsufficientRights
    );
    expect_err!(
        invoke::frame_map(read_frame, slot::ROOT_VSPACE, vaddr, Rights::EXECUTE),
        Error::InsufficientRights
    );
    expect!(
        invoke::frame_map(read_frame, slot::ROOT_VSPACE, vaddr, Rights::READ),
        Ok(())
    );
    Ok(Pass::Ok)
}

fn mint_notification_badge(env: &mut Env) -> Outcome {
    let notification = env.notification()?;
    let badged = env.mint(notification, Rights::ALL, 0b100)?;
    expect!(tarn_rt::signal(badged), Ok(()));
    expect!(tarn_rt::poll(notification), Ok(0b100));
    // A copy of a badged capability keeps the badge (mint with badge 0 is a copy).
    let copy = env.copy(badged, Rights::WRITE)?;
    let minted_zero = env.mint(badged, Rights::WRITE, 0)?;
    expect!(tarn_rt::signal(copy), Ok(()));
    expect!(tarn_rt::signal(minted_zero), Ok(()));
    expect!(tarn_rt::poll(notification), Ok(0b100));
    Ok(Pass::Ok)
}

fn mint_endpoint_badge(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let badged = env.mint(endpoint, Rights::WRITE, 0x1234)?;
    let shared = Shared::new();
    let seen = shared.clone();
    let thread = env.thread(move || {
        let message = tarn_rt::recv(endpoint);
        seen.set(0, crate::harness::code(&message));
        seen.set(1, message.map(|m| m.badge).unwrap_or(0));
    })?;
    env.wait_state(thread.tcb, ThreadState::BlockedOnReceive)?;
    expect!(tarn_rt::send(badged, empty(), [0; 4]), Ok(()));
    env.join(&thread)?;
    expect!(shared.get(0), 0);
    expect!(shared.get(1), 0x1234);
    Ok(Pass::Ok)
}

fn mint_refuses_rebadging(env: &mut Env) -> Outcome {
    let notification = env.notification()?;
    let badged = env.mint(notification, Rights::ALL, 1)?;
    let dest = env.slot()?;
    // The kernel refuses a second badge with IllegalState (the ABI says only
    // that the source must be unbadged).
    expect_err!(
        invoke::cnode_mint(
            slot::ROOT_CNODE,
            dest,
            slot::ROOT_CNODE,
            badged,
            Rights::ALL,
            2
        ),
        Error::IllegalState
    );
    let endpoint = env.endpoint()?;
    let badged_endpoint = env.mint(endpoint, Rights::ALL, 3)?;
    expect_err!(
        invoke::cnode_mint(
            slot::ROOT_CNODE,
            dest,
            slot::ROOT_CNODE,
            badged_endpoint,
            Rights::ALL,
            4
        ),
        Error::IllegalState
    );
    // Badges exist only on endpoints and notifications.
    let frame = env.frame()?;
    expect_err!(
        invoke::cnode_mint(
            slot::ROOT_CNODE,
            dest,
            slot::ROOT_CNODE,
            frame,
            Rights::ALL,
            5
        ),
        Error::InvalidArgument
    );
    expect_err!(
        invoke::cnode_mint(
            slot::ROOT_CNODE,
            dest,
            slot::ROOT_CNODE,
            slot::ROOT_CNODE,
            Rights::ALL,
            5
        ),
        Error::InvalidArgument
    );
    expect_err!(tarn_rt::poll(dest), Error::InvalidCapability);
    Ok(Pass::Ok)
}

fn move_cap(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let copy = env.copy(endpoint, Rights::ALL)?;
    let caps = live_caps()?;
    let objects = env.live_objects()?;
    let dest = env.slot()?;
    expect!(
        invoke::cnode_move(slot::ROOT_CNODE, dest, slot::ROOT_CNODE, endpoint),
        Ok(())
    );
    expect_err!(
        tarn_rt::nb_send(endpoint, empty(), [0; 4]),
        Error::InvalidCapability
    );
    expect_err!(tarn_rt::nb_send(dest, empty(), [0; 4]), Error::WouldBlock);
    expect!(live_caps()?, caps);
    expect!(env.live_objects()?, objects);
    expect_err!(
        invoke::cnode_move(slot::ROOT_CNODE, copy, slot::ROOT_CNODE, dest),
        Error::SlotOccupied
    );
    expect_err!(
        invoke::cnode_move(slot::ROOT_CNODE, endpoint, slot::ROOT_CNODE, endpoint),
        Error::InvalidCapability
    );
    // The moved capability keeps its place in the derivation tree: revoking
    // it still removes the copy made from its old slot.
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, dest), Ok(()));
    expect_err!(
        tarn_rt::nb_send(copy, empty(), [0; 4]),
        Error::InvalidCapability
    );
    Ok(Pass::Ok)
}

fn delete(env: &mut Env) -> Outcome {
    let notification = env.notification()?;
    let copy = env.copy(notification, Rights::ALL)?;
    let objects = env.live_objects()?;
    let caps = live_caps()?;
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, copy), Ok(()));
    expect_err!(tarn_rt::poll(copy), Error::InvalidCapability);
    expect!(live_caps()?, caps - 1);
    expect!(env.live_objects()?, objects);
    expect_err!(tarn_rt::poll(notification), Error::WouldBlock);
    // Deleting an empty slot changes nothing and succeeds (kernel behaviour;
    // the ABI does not say).
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, copy), Ok(()));
    expect!(live_caps()?, caps - 1);
    for index in [0, 1 << 12, u64::MAX] {
        expect_err!(
            invoke::cnode_delete(slot::ROOT_CNODE, index),
            Error::InvalidCapability
        );
    }
    Ok(Pass::Ok)
}

fn delete_destroys(env: &mut Env) -> Outcome {
    let objects = env.live_objects()?;
    let endpoint = env.endpoint()?;
    let copy = env.copy(endpoint, Rights::ALL)?;
    expect!(env.live_objects()?, objects + 1);
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, endpoint), Ok(()));
    expect!(env.live_objects()?, objects + 1);
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, copy), Ok(()));
    expect!(env.live_objects()?, objects);
    Ok(Pass::Ok)
}

fn revoke(env: &mut Env) -> Outcome {
    let endpoint = env.endpoint()?;
    let child = env.copy(endpoint, Rights::ALL)?;
    let grandchild = env.mint(child, Rights::WRITE, 5)?;
    let great = env.copy(grandchild, Rights::WRITE)?;
    let caps = live_caps()?;
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, endpoint), Ok(()));
    for cap in [child, grandchild, great] {
        expect_err!(
            tarn_rt::nb_send(cap, empty(), [0; 4]),
            Error::InvalidCapability
        );
    }
    expect_err!(
        tarn_rt::nb_send(endpoint, empty(), [0; 4]),
        Error::WouldBlock
    );
    expect!(live_caps()?, caps - 3);
    // Revoking a capability without children is a no-op; an empty slot is an error.
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, endpoint), Ok(()));
    expect_err!(
        invoke::cnode_revoke(slot::ROOT_CNODE, child),
        Error::InvalidCapability
    );
    expect_err!(
        invoke::cnode_revoke(slot::ROOT_CNODE, 0),
        Error::InvalidCapability
    );
    Ok(Pass::Ok)
}

fn revoke_middle(env: &mut Env) -> Outcome {
    let notification = env.notification()?;
    let sibling = env.copy(notification, Rights::ALL)?;
    let middle = env.copy(notification, Rights::ALL)?;
    let below = env.mint(middle, Rights::ALL, 9)?;
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, middle), Ok(()));
    expect_err!(tarn_rt::poll(below), Error::InvalidCapability);
    for cap in [notification, sibling, middle] {
        expect_err!(tarn_rt::poll(cap), Error::WouldBlock);
    }
    Ok(Pass::Ok)
}

fn other_cnode(env: &mut Env) -> Outcome {
    let cnode = env.create(ObjectType::CNode, 4)?;
    let endpoint = env.endpoint()?;
    expect!(
        invoke::cnode_copy(cnode, 3, slot::ROOT_CNODE, endpoint, RW),
        Ok(())
    );
    expect_err!(
        invoke::cnode_copy(cnode, 3, slot::ROOT_CNODE, endpoint, RW),
        Error::SlotOccupied
    );
    expect_err!(
        invoke::cnode_copy(cnode, 16, slot::ROOT_CNODE, endpoint, RW),
        Error::InvalidCapability
    );
    expect_err!(
        invoke::cnode_copy(cnode, 0, slot::ROOT_CNODE, endpoint, RW),
        Error::InvalidCapability
    );
    // Inside the other CNode: move 3 -> 7, copy back out, mint back out.
    expect!(invoke::cnode_move(cnode, 7, cnode, 3), Ok(()));
    let back = env.slot()?;
    expect_err!(
        invoke::cnode_copy(slot::ROOT_CNODE, back, cnode, 3, Rights::ALL),
        Error::InvalidCapability
    );
    expect!(
        invoke::cnode_copy(slot::ROOT_CNODE, back, cnode, 7, Rights::ALL),
        Ok(())
    );
    expect_err!(tarn_rt::nb_send(back, empty(), [0; 4]), Error::WouldBlock);
    expect_err!(tarn_rt::nb_recv(back), Error::WouldBlock);
    let minted = env.slot()?;
    expect!(
        invoke::cnode_mint(slot::ROOT_CNODE, minted, cnode, 7, Rights::WRITE, 0x77),
        Ok(())
    );
    // Delete and revoke address the other CNode's slots.
    expect!(invoke::cnode_revoke(cnode, 7), Ok(()));
    expect_err!(
        tarn_rt::nb_send(back, empty(), [0; 4]),
        Error::InvalidCapability
    );
    expect_err!(
        tarn_rt::nb_send(minted, empty(), [0; 4]),
        Error::InvalidCapability
    );
    expect!(invoke::cnode_delete(cnode, 7), Ok(()));
    expect_err!(
        invoke::cnode_copy(slot::ROOT_CNODE, back, cnode, 7, Rights::ALL),
        Error::InvalidCapability
    );
    Ok(Pass::Ok)
}

fn destroy_contents(env: &mut Env) -> Outcome {
    let objects = env.live_objects()?;
    let caps = live_caps()?;
    let cnode = env.create(ObjectType::CNode, 4)?;
    let notification = env.notification()?;
    expect!(
        invoke::cnode_move(cnode, 5, slot::ROOT_CNODE, notification),
        Ok(())
    );
    expect!(env.live_objects()?, objects + 2);
    // The CNode's last capability goes, and with it the notification whose
    // only capability it held.
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, cnode), Ok(()));
    expect!(env.live_objects()?, objects);
    expect!(live_caps()?, caps);
    Ok(Pass::Ok)
}

/// Reads the CNode capability `cnode` by what it can do: whether a copy
/// into its slot `index` is accepted (the slot exists), then deletes the
/// copy again.
fn has_slot(env: &mut Env, cnode: u64, index: u64) -> Result<bool, String> {
    let scratch = env.endpoint()?;
    let fits = invoke::cnode_copy(cnode, index, slot::ROOT_CNODE, scratch, Rights::ALL).is_ok();
    if fits {
        invoke::cnode_delete(cnode, index).ctx("delete the probe")?;
    }
    invoke::cnode_delete(slot::ROOT_CNODE, scratch).ctx("delete the scratch")?;
    Ok(fits)
}

/// `CNodeGrow` on a CSpace two threads use while it grows, twice (16 to
/// 64 to 256 slots): one signals a notification and moves a capability
/// back and forth in its own CSpace in a loop, on another CPU, and none of
/// its calls fails; the other waits in `Recv` with a receive window, and
/// the capability sent to it after the growth lands in the new CNode at
/// the window's index. Every capability keeps its index; the capability
/// that named the new CNode names the old, emptied one (deleting it
/// destroys that); the kernel's counts do not move.
fn grow_keeps_every_pointer(env: &mut Env) -> Outcome {
    let x = env.create(ObjectType::CNode, 4)?;
    let notification = env.notification()?;
    let endpoint = env.endpoint()?;
    // X: 1 = X itself, 3 = the notification, 5 = the endpoint, 10 = what
    // the looping thread moves.
    for (index, source) in [(1, x), (3, notification), (5, endpoint), (10, endpoint)] {
        invoke::cnode_copy(x, index, slot::ROOT_CNODE, source, Rights::ALL).ctx("fill X")?;
    }
    // Words: 0 = the looping thread's successful rounds, 1 = its failed
    // calls, 2 = stop; 3 = the receiver's result code + 1.
    let shared = Shared::new();
    let out = shared.clone();
    let looping = env.spawn(
        ThreadOptions {
            cspace: Some(x),
            cpu: Some(env.cpus - 1),
            ..Default::default()
        },
        move || {
            while out.get(2) == 0 {
                let signalled = tarn_rt::signal(3);
                let there = invoke::cnode_move(1, 9, 1, 10);
                let back = invoke::cnode_move(1, 10, 1, 9);
                if signalled.is_ok() && there.is_ok() && back.is_ok() {
                    out.bump(0);
                } else {
                    out.bump(1);
                }
            }
            let _ = tarn_rt::wait(3, 0);
        },
    )?;
    let out = shared.clone();
    let receiver = env.spawn(
        ThreadOptions {
            cspace: Some(x),
            ..Default::default()
        },
        move || {
            ipc_buffer::set_receive_window(12, 1);
            let result = tarn_rt::recv(5);
            out.set(3, crate::harness::code(&result) + 1);
            let _ = tarn_rt::wait(3, 0);
        },
    )?;
    env.wait_state(receiver.tcb, ThreadState::BlockedOnReceive)?;
    env.wait_until("the looping thread's first rounds", || shared.get(0) > 10)?;
    let caps = live_caps()?;
    let objects = env.live_objects()?;
    for (bits, new_bits) in [(4, 6), (6, 8)] {
        let y = env.create(ObjectType::CNode, new_bits)?;
        let rounds = shared.get(0);
        expect!(invoke::cnode_grow(x, y), Ok(()));
        env.wait_until("rounds after the growth", || shared.get(0) > rounds + 10)?;
        expect!(shared.get(1), 0);
        // X names the larger CNode, Y the old one, emptied.
        expect!(has_slot(env, x, (1 << new_bits) - 1)?, true);
        expect!(has_slot(env, y, (1 << bits) - 1)?, true);
        expect!(has_slot(env, y, 1 << bits)?, false);
        let probe = env.slot()?;
        expect_err!(
            invoke::cnode_copy(slot::ROOT_CNODE, probe, y, 3, Rights::ALL),
            Error::InvalidCapability
        );
        // Same capabilities, same objects (the old CNode lives until its
        // capability goes).
        expect!(live_caps()?, caps + 1);
        expect!(env.live_objects()?, objects + 1);
        consistent_after("a growth")?;
        expect!(invoke::cnode_delete(slot::ROOT_CNODE, y), Ok(()));
        expect!(live_caps()?, caps);
        expect!(env.live_objects()?, objects);
    }
    // The receiver's window is looked up in the grown CNode.
    let (info, registers) = tarn_rt::syscall::load(1, &[], &[notification]);
    expect!(tarn_rt::send(endpoint, info, registers), Ok(()));
    env.wait_until("the receiver", || shared.get(3) != 0)?;
    expect!(shared.get(3), 1);
    let back = env.slot()?;
    expect!(
        invoke::cnode_copy(slot::ROOT_CNODE, back, x, 12, Rights::ALL),
        Ok(())
    );
    expect!(tarn_rt::signal(back), Ok(()));
    shared.set(2, 1);
    for thread in [&looping, &receiver] {
        expect!(invoke::cnode_delete(slot::ROOT_CNODE, thread.tcb), Ok(()));
    }
    consistent_after("the threads' end")?;
    Ok(Pass::Ok)
}

/// `CNodeGrow`'s refusals, one per rule, each changing nothing: the new
/// CNode must be a CNode (`WrongType`), larger (`InvalidArgument`),
/// unshared (`IllegalState`) and empty below the old size
/// (`SlotOccupied`); the old one's capabilities must form one family
/// (`IllegalState`). A capability in the new CNode above the old size
/// stays where it is.
fn grow_refuses(env: &mut Env) -> Outcome {
    let x = env.create(ObjectType::CNode, 4)?;
    let endpoint = env.endpoint()?;
    invoke::cnode_copy(x, 3, slot::ROOT_CNODE, endpoint, Rights::ALL).ctx("fill X")?;
    let same = env.create(ObjectType::CNode, 4)?;
    let y = env.create(ObjectType::CNode, 6)?;
    let caps = live_caps()?;
    let unchanged = |env: &mut Env| -> Outcome {
        expect!(live_caps()?, caps);
        expect!(has_slot(env, x, 15)?, true);
        expect!(has_slot(env, x, 16)?, false);
        Ok(Pass::Ok)
    };
    expect_err!(invoke::cnode_grow(x, endpoint), Error::WrongType);
    expect_err!(invoke::cnode_grow(x, env.slot()?), Error::InvalidCapability);
    expect_err!(invoke::cnode_grow(x, x), Error::InvalidArgument);
    expect_err!(invoke::cnode_grow(x, same), Error::InvalidArgument);
    unchanged(env)?;
    let y_copy = env.copy(y, Rights::ALL)?;
    expect_err!(invoke::cnode_grow(x, y), Error::IllegalState);
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, y_copy), Ok(()));
    unchanged(env)?;
    invoke::cnode_copy(y, 2, slot::ROOT_CNODE, endpoint, Rights::ALL).ctx("fill Y")?;
    invoke::cnode_copy(y, 40, slot::ROOT_CNODE, endpoint, Rights::ALL).ctx("fill Y")?;
    expect_err!(invoke::cnode_grow(x, y), Error::SlotOccupied);
    expect!(invoke::cnode_delete(y, 2), Ok(()));
    expect!(invoke::cnode_delete(y, 40), Ok(()));
    unchanged(env)?;
    invoke::cnode_copy(y, 40, slot::ROOT_CNODE, endpoint, Rights::ALL).ctx("fill Y")?;
    // Two copies of X whose common source is gone: siblings, not one family.
    let first = env.copy(x, Rights::ALL)?;
    let second = env.copy(x, Rights::ALL)?;
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, x), Ok(()));
    expect_err!(invoke::cnode_grow(first, y), Error::IllegalState);
    expect!(invoke::cnode_delete(slot::ROOT_CNODE, second), Ok(()));
    // One family again: the growth goes through, and Y's slot 40 stays.
    expect!(invoke::cnode_grow(first, y), Ok(()));
    expect_err!(
        invoke::cnode_copy(first, 40, slot::ROOT_CNODE, endpoint, Rights::ALL),
        Error::SlotOccupied
    );
    let back = env.slot()?;
    expect!(
        invoke::cnode_copy(slot::ROOT_CNODE, back, first, 3, Rights::ALL),
        Ok(())
    );
    expect_err!(tarn_rt::nb_send(back, empty(), [0; 4]), Error::WouldBlock);
    consistent_after("the growth")?;
    Ok(Pass::Ok)
}

/// After `CNodeGrow` the capabilities naming each CNode derive from the
/// memory it lies in: revoking the untyped the new CNode was retyped from
/// deletes the grown CSpace's capability (the new CNode goes, with what it
/// holds) and leaves the one to the old CNode, which lies elsewhere.
fn grow_keeps_memory_ownership(env: &mut Env) -> Outcome {
    let x = env.create(ObjectType::CNode, 4)?;
    let endpoint = env.endpoint()?;
    invoke::cnode_copy(x, 3, slot::ROOT_CNODE, endpoint, Rights::ALL).ctx("fill X")?;
    let memory = env.untyped(16)?;
    let y = env.slot()?;
    invoke::untyped_retype(memory, ObjectType::CNode, 6, slot::ROOT_CNODE, y, 1).ctx("retype Y")?;
    let caps = live_caps()?;
    let objects = env.live_objects()?;
    expect!(invoke::cnode_grow(x, y), Ok(()));
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, memory), Ok(()));
    let probe = env.slot()?;
    expect_err!(
        invoke::cnode_copy(slot::ROOT_CNODE, probe, x, 3, Rights::ALL),
        Error::InvalidCapability
    );
    expect!(live_caps()?, caps - 2);
    expect!(env.live_objects()?, objects - 1);
    expect!(has_slot(env, y, 15)?, true);
    expect!(has_slot(env, y, 16)?, false);
    consistent_after("the revoke")?;
    Ok(Pass::Ok)
}

fn consistent_after(when: &str) -> Result<(), String> {
    let report = invoke::machine_check_invariants(slot::MACHINE).ctx("check invariants")?;
    if report.consistent {
        Ok(())
    } else {
        Err(alloc::format!(
            "the kernel's invariants do not hold after {when}"
        ))
    }
}
