//! Untyped memory: retype of every object type, the argument checks, memory
//! exhaustion, placement at the watermark, and revoke resetting it.

use crate::harness::{Check, Env, Outcome, Pass, Test};
use crate::{ensure, expect, expect_err};
use alloc::string::String;
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::{Error, MessageInfo, ObjectType, Rights};
use tarn_rt::invoke;
use tarn_rt::layout::slot;

pub const TESTS: &[Test] = &[
    ("retype_every_object_type", every_type),
    ("retype_invalid_object_types", invalid_types),
    ("retype_invalid_sizes", invalid_sizes),
    ("retype_count_limits", count_limits),
    ("retype_destination_range", destination_range),
    ("retype_slot_occupied", slot_occupied),
    ("retype_out_of_memory", out_of_memory),
    ("retype_placement_at_watermark", placement),
    ("retype_after_revoke_reuses_memory", revoke_resets),
    ("untyped_cannot_be_copied", untyped_not_copyable),
];

/// Retypes one object from `untyped` into a fresh slot.
fn retype_one(
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

fn every_type(env: &mut Env) -> Outcome {
    let untyped = env.untyped(22)?;
    let before = env.live_objects()?;
    // Counted objects (the kernel's live-object count covers these).
    let cnode = retype_one(env, untyped, ObjectType::CNode, 4)?;
    let tcb = retype_one(env, untyped, ObjectType::Tcb, 0)?;
    let endpoint = retype_one(env, untyped, ObjectType::Endpoint, 0)?;
    let notification = retype_one(env, untyped, ObjectType::Notification, 0)?;
    let vspace = retype_one(env, untyped, ObjectType::VSpace, 16)?;
    expect!(env.live_objects()?, before + 5);
    // Memory objects.
    let child = retype_one(env, untyped, ObjectType::Untyped, 12)?;
    let frame = retype_one(env, untyped, ObjectType::Frame4K, 0)?;
    let large = retype_one(env, untyped, ObjectType::Frame2M, 0)?;
    expect!(env.live_objects()?, before + 5);

    // Each is what it says.
    expect!(invoke::cnode_delete(cnode, 1), Ok(()));
    expect!(
        invoke::tcb_read_registers(tcb).map(|s| s.state()),
        Ok(Some(ThreadState::Inactive))
    );
    expect_err!(
        tarn_rt::nb_send(endpoint, MessageInfo::default(), [0; 4]),
        Error::WouldBlock
    );
    expect_err!(tarn_rt::poll(notification), Error::WouldBlock);
    expect_err!(invoke::invoke_raw(vspace, 0, &[]), Error::IllegalOperation);
    let inner = env.slot()?;
    expect!(
        invoke::untyped_retype(child, ObjectType::Frame4K, 0, slot::ROOT_CNODE, inner, 1),
        Ok(())
    );
    let address = invoke::frame_get_address(frame).ctx("frame address")?;
    ensure!(
        address != 0 && address % 4096 == 0,
        "4 KiB frame at {address:#x}"
    );
    let large_address = invoke::frame_get_address(large).ctx("2 MiB frame address")?;
    ensure!(
        large_address % (2 << 20) == 0,
        "2 MiB frame at {large_address:#x}"
    );

    for cap in [
        cnode,
        tcb,
        endpoint,
        notification,
        vspace,
        child,
        frame,
        large,
        inner,
    ] {
        env.res.delete(cap).ctx("delete")?;
    }
    expect!(env.live_objects()?, before);
    Ok(Pass::Ok)
}

fn invalid_types(env: &mut Env) -> Outcome {
    let untyped = env.untyped(16)?;
    let dest = env.slot()?;
    for object_type in [0, 9, 10, 11, 12, 13, 64, u64::MAX] {
        expect_err!(
            invoke::untyped_retype_raw(untyped, object_type, 0, slot::ROOT_CNODE, dest, 1),
            Error::InvalidArgument
        );
    }
    Ok(Pass::Ok)
}

fn invalid_sizes(env: &mut Env) -> Outcome {
    let untyped = env.untyped(16)?;
    let dest = env.slot()?;
    let bad = [
        (ObjectType::CNode, 0),
        (ObjectType::CNode, 17),
        (ObjectType::VSpace, 13),
        (ObjectType::VSpace, 25),
        (ObjectType::Untyped, 11),
        (ObjectType::Untyped, 41),
        // An untyped child larger than its parent.
        (ObjectType::Untyped, 17),
    ];
    for (object_type, size_bits) in bad {
        let result =
            invoke::untyped_retype(untyped, object_type, size_bits, slot::ROOT_CNODE, dest, 1);
        if result != Err(Error::InvalidArgument) {
            return Err(alloc::format!(
                "{object_type:?} size {size_bits}: expected InvalidArgument, got {result:?}"
            ));
        }
    }
    // The smallest sizes that work.
    expect!(
        invoke::untyped_retype(untyped, ObjectType::CNode, 1, slot::ROOT_CNODE, dest, 1),
        Ok(())
    );
    let vspace = env.slot()?;
    expect!(
        invoke::untyped_retype(untyped, ObjectType::VSpace, 15, slot::ROOT_CNODE, vspace, 1),
        Ok(())
    );
    Ok(Pass::Ok)
}

fn count_limits(env: &mut Env) -> Outcome {
    let untyped = env.untyped(16)?;
    let first = env.res.slots.alloc_range(256).ctx("slots")?;
    expect_err!(
        invoke::untyped_retype(untyped, ObjectType::Endpoint, 0, slot::ROOT_CNODE, first, 0),
        Error::InvalidArgument
    );
    expect_err!(
        invoke::untyped_retype(
            untyped,
            ObjectType::Endpoint,
            0,
            slot::ROOT_CNODE,
            first,
            257
        ),
        Error::InvalidArgument
    );
    let before = env.live_objects()?;
    expect!(
        invoke::untyped_retype(
            untyped,
            ObjectType::Endpoint,
            0,
            slot::ROOT_CNODE,
            first,
            256
        ),
        Ok(())
    );
    expect!(env.live_objects()?, before + 256);
    for cap in [first, first + 100, first + 255] {
        expect_err!(
            tarn_rt::nb_send(cap, MessageInfo::default(), [0; 4]),
            Error::WouldBlock
        );
    }
    for cap in first..first + 256 {
        env.res.delete(cap).ctx("delete")?;
    }
    expect!(env.live_objects()?, before);
    Ok(Pass::Ok)
}

fn destination_range(env: &mut Env) -> Outcome {
    let untyped = env.untyped(16)?;
    let size = 1u64 << tarn_rt::layout::PROCESS_CNODE_SIZE_BITS;
    for (first, count) in [
        (0, 1),
        (size, 1),
        (size - 1, 2),
        (u64::MAX, 1),
        (u64::MAX, 2),
    ] {
        expect_err!(
            invoke::untyped_retype(
                untyped,
                ObjectType::Endpoint,
                0,
                slot::ROOT_CNODE,
                first,
                count
            ),
            Error::OutOfRange
        );
    }
    // Into another CNode: its own size bounds the range.
    let cnode = env.create(ObjectType::CNode, 3)?;
    expect_err!(
        invoke::untyped_retype(untyped, ObjectType::Endpoint, 0, cnode, 7, 2),
        Error::OutOfRange
    );
    expect!(
        invoke::untyped_retype(untyped, ObjectType::Endpoint, 0, cnode, 1, 7),
        Ok(())
    );
    Ok(Pass::Ok)
}

fn slot_occupied(env: &mut Env) -> Outcome {
    let untyped = env.untyped(16)?;
    let occupied = env.endpoint()?;
    expect_err!(
        invoke::untyped_retype(
            untyped,
            ObjectType::Notification,
            0,
            slot::ROOT_CNODE,
            occupied,
            1
        ),
        Error::SlotOccupied
    );
    // Two slots, the second occupied: nothing is created in the first.
    let pair = env.res.slots.alloc_range(2).ctx("slots")?;
    invoke::cnode_copy(
        slot::ROOT_CNODE,
        pair + 1,
        slot::ROOT_CNODE,
        occupied,
        Rights::ALL,
    )
    .ctx("copy")?;
    let before = env.live_objects()?;
    expect_err!(
        invoke::untyped_retype(
            untyped,
            ObjectType::Notification,
            0,
            slot::ROOT_CNODE,
            pair,
            2
        ),
        Error::SlotOccupied
    );
    expect_err!(tarn_rt::poll(pair), Error::InvalidCapability);
    expect!(env.live_objects()?, before);
    // The occupant is untouched.
    expect_err!(
        tarn_rt::nb_send(occupied, MessageInfo::default(), [0; 4]),
        Error::WouldBlock
    );
    Ok(Pass::Ok)
}

fn out_of_memory(env: &mut Env) -> Outcome {
    // One page: one frame fits, nothing more.
    let page = env.untyped(12)?;
    retype_one(env, page, ObjectType::Frame4K, 0)?;
    let dest = env.slot()?;
    expect_err!(
        invoke::untyped_retype(page, ObjectType::Frame4K, 0, slot::ROOT_CNODE, dest, 1),
        Error::OutOfMemory
    );
    expect_err!(
        invoke::untyped_retype(page, ObjectType::Endpoint, 0, slot::ROOT_CNODE, dest, 1),
        Error::OutOfMemory
    );
    // Two pages: three frames at once fail and create nothing; two then fit.
    let two = env.untyped(13)?;
    let first = env.res.slots.alloc_range(3).ctx("slots")?;
    expect_err!(
        invoke::untyped_retype(two, ObjectType::Frame4K, 0, slot::ROOT_CNODE, first, 3),
        Error::OutOfMemory
    );
    expect_err!(invoke::frame_get_address(first), Error::InvalidCapability);
    expect!(
        invoke::untyped_retype(two, ObjectType::Frame4K, 0, slot::ROOT_CNODE, first, 2),
        Ok(())
    );
    // A 2 MiB frame does not fit in 1 MiB. In one page: an endpoint at 0, a
    // TCB aligned up to 2 KiB, and then no room for a second TCB.
    let mib = env.untyped(20)?;
    expect_err!(
        invoke::untyped_retype(mib, ObjectType::Frame2M, 0, slot::ROOT_CNODE, dest, 1),
        Error::OutOfMemory
    );
    let small = env.untyped(12)?;
    retype_one(env, small, ObjectType::Endpoint, 0)?;
    retype_one(env, small, ObjectType::Tcb, 0)?; // placed at 2 KiB
    expect_err!(
        invoke::untyped_retype(small, ObjectType::Tcb, 0, slot::ROOT_CNODE, dest, 1),
        Error::OutOfMemory
    );
    Ok(Pass::Ok)
}

fn placement(env: &mut Env) -> Outcome {
    let (untyped, phys) = env.res.create_untyped(16).ctx("untyped")?;
    let first = retype_one(env, untyped, ObjectType::Frame4K, 0)?;
    expect!(invoke::frame_get_address(first), Ok(phys));
    // An endpoint takes 64 bytes at phys + 4 KiB; the next frame is aligned
    // up to the following page.
    retype_one(env, untyped, ObjectType::Endpoint, 0)?;
    let second = retype_one(env, untyped, ObjectType::Frame4K, 0)?;
    expect!(invoke::frame_get_address(second), Ok(phys + 0x2000));
    // A batch lands contiguously.
    let batch = env.res.slots.alloc_range(4).ctx("slots")?;
    invoke::untyped_retype(untyped, ObjectType::Frame4K, 0, slot::ROOT_CNODE, batch, 4)
        .ctx("retype batch")?;
    for index in 0..4 {
        expect!(
            invoke::frame_get_address(batch + index),
            Ok(phys + 0x3000 + index * 0x1000)
        );
    }
    // An untyped child is aligned to its own size.
    let child = retype_one(env, untyped, ObjectType::Untyped, 14)?;
    let inner = retype_one(env, child, ObjectType::Frame4K, 0)?;
    expect!(invoke::frame_get_address(inner), Ok(phys + 0x8000));
    Ok(Pass::Ok)
}

fn revoke_resets(env: &mut Env) -> Outcome {
    let (untyped, phys) = env.res.create_untyped(12).ctx("untyped")?;
    let frame = retype_one(env, untyped, ObjectType::Frame4K, 0)?;
    let dest = env.slot()?;
    expect_err!(
        invoke::untyped_retype(untyped, ObjectType::Frame4K, 0, slot::ROOT_CNODE, dest, 1),
        Error::OutOfMemory
    );
    expect!(invoke::cnode_revoke(slot::ROOT_CNODE, untyped), Ok(()));
    expect_err!(invoke::frame_get_address(frame), Error::InvalidCapability);
    expect!(
        invoke::untyped_retype(untyped, ObjectType::Frame4K, 0, slot::ROOT_CNODE, dest, 1),
        Ok(())
    );
    expect!(invoke::frame_get_address(dest), Ok(phys));
    Ok(Pass::Ok)
}

fn untyped_not_copyable(env: &mut Env) -> Outcome {
    let untyped = env.untyped(12)?;
    let dest = env.slot()?;
    expect_err!(
        invoke::cnode_copy(
            slot::ROOT_CNODE,
            dest,
            slot::ROOT_CNODE,
            untyped,
            Rights::ALL
        ),
        Error::IllegalOperation
    );
    expect_err!(
        invoke::cnode_mint(
            slot::ROOT_CNODE,
            dest,
            slot::ROOT_CNODE,
            untyped,
            Rights::ALL,
            5
        ),
        Error::IllegalOperation
    );
    // Moving it is fine.
    expect!(
        invoke::cnode_move(slot::ROOT_CNODE, dest, slot::ROOT_CNODE, untyped),
        Ok(())
    );
    let frame = env.slot()?;
    expect!(
        invoke::untyped_retype(dest, ObjectType::Frame4K, 0, slot::ROOT_CNODE, frame, 1),
        Ok(())
    );
    Ok(Pass::Ok)
}
