//! Frames and address spaces: map, unmap, shared mappings, addresses, large
//! frames, and the page-table memory of a VSpace.

use crate::harness::{Check, Env, Outcome, Pass, Test};
use crate::{ensure, expect, expect_err};
use tarn_rt::abi::{Error, ObjectType, Rights};
use tarn_rt::arch::{probe_read, probe_write};
use tarn_rt::invoke;
use tarn_rt::layout::{self, slot, LARGE_PAGE_SIZE, PAGE_SIZE};

pub const TESTS: &[Test] = &[
    ("frame_map_write_read", map_write_read),
    ("frame_map_already_mapped", already_mapped),
    ("frame_map_bad_addresses", bad_addresses),
    ("frame_map_bad_rights", bad_rights),
    ("frame_unmap", unmap),
    ("frame_shared_between_two_mappings", shared_mapping),
    ("frame_delete_unmaps", delete_unmaps),
    ("frame_get_address", get_address),
    ("frame_2m_map", large_frame),
    ("vspace_out_of_table_memory", out_of_table_memory),
];

const RW: Rights = Rights(Rights::READ.0 | Rights::WRITE.0);

fn map_write_read(env: &mut Env) -> Outcome {
    let (_, vaddr) = env.mapped_frame()?;
    // Fresh frames are zeroed.
    expect!(probe_read(vaddr), 0);
    expect!(probe_read(vaddr + PAGE_SIZE - 8), 0);
    probe_write(vaddr, 0xDEAD_BEEF);
    probe_write(vaddr + PAGE_SIZE - 8, 0x1234);
    expect!(probe_read(vaddr), 0xDEAD_BEEF);
    expect!(probe_read(vaddr + PAGE_SIZE - 8), 0x1234);
    Ok(Pass::Ok)
}

fn already_mapped(env: &mut Env) -> Outcome {
    let (frame, vaddr) = env.mapped_frame()?;
    let elsewhere = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    // A frame capability maps once...
    expect_err!(
        invoke::frame_map(frame, slot::ROOT_VSPACE, elsewhere, RW),
        Error::AlreadyMapped
    );
    // ...and an address holds one frame.
    let other = env.frame()?;
    expect_err!(
        invoke::frame_map(other, slot::ROOT_VSPACE, vaddr, RW),
        Error::AlreadyMapped
    );
    expect!(
        invoke::frame_map(other, slot::ROOT_VSPACE, elsewhere, RW),
        Ok(())
    );
    Ok(Pass::Ok)
}

fn bad_addresses(env: &mut Env) -> Outcome {
    let frame = env.frame()?;
    let vaddr = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    for address in [
        vaddr + 1,
        vaddr + 8,
        vaddr + 0x800,
        layout::USER_END,
        layout::USER_END - PAGE_SIZE + 1,
        0xFFFF_8000_0000_0000,
        !0xFFF,
    ] {
        let result = invoke::frame_map(frame, slot::ROOT_VSPACE, address, RW);
        ensure!(
            result == Err(Error::InvalidArgument),
            "map at {address:#x}: expected InvalidArgument, got {result:?}"
        );
    }
    Ok(Pass::Ok)
}

fn bad_rights(env: &mut Env) -> Outcome {
    let frame = env.frame()?;
    let vaddr = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    expect_err!(
        invoke::frame_map(frame, slot::ROOT_VSPACE, vaddr, Rights::NONE),
        Error::InvalidArgument
    );
    expect_err!(
        invoke::frame_map(frame, slot::ROOT_VSPACE, vaddr, Rights(16)),
        Error::InvalidArgument
    );
    // GRANT alone is not a mapping right.
    expect_err!(
        invoke::frame_map(frame, slot::ROOT_VSPACE, vaddr, Rights::GRANT),
        Error::InvalidArgument
    );
    let read_only = env.copy(frame, Rights::READ)?;
    expect_err!(
        invoke::frame_map(read_only, slot::ROOT_VSPACE, vaddr, RW),
        Error::InsufficientRights
    );
    expect!(
        invoke::frame_map(read_only, slot::ROOT_VSPACE, vaddr, Rights::READ),
        Ok(())
    );
    Ok(Pass::Ok)
}

fn unmap(env: &mut Env) -> Outcome {
    let (frame, vaddr) = env.mapped_frame()?;
    probe_write(vaddr + 16, 0x5A5A);
    expect!(invoke::frame_unmap(frame), Ok(()));
    expect_err!(invoke::frame_unmap(frame), Error::NotMapped);
    let fresh = env.frame()?;
    expect_err!(invoke::frame_unmap(fresh), Error::NotMapped);
    // The address is free again, and the frame kept its contents.
    expect!(
        invoke::frame_map(fresh, slot::ROOT_VSPACE, vaddr, RW),
        Ok(())
    );
    expect!(probe_read(vaddr + 16), 0);
    expect!(invoke::frame_unmap(fresh), Ok(()));
    expect!(
        invoke::frame_map(frame, slot::ROOT_VSPACE, vaddr, RW),
        Ok(())
    );
    expect!(probe_read(vaddr + 16), 0x5A5A);
    Ok(Pass::Ok)
}

fn shared_mapping(env: &mut Env) -> Outcome {
    let (frame, first) = env.mapped_frame()?;
    let copy = env.copy(frame, Rights::ALL)?;
    let second = env.vaddr(PAGE_SIZE, PAGE_SIZE);
    expect!(
        invoke::frame_map(copy, slot::ROOT_VSPACE, second, Rights::READ),
        Ok(())
    );
    probe_write(first + 64, 0xC0FFEE);
    expect!(probe_read(second + 64), 0xC0FFEE);
    // Unmapping one mapping leaves the other.
    expect!(invoke::frame_unmap(frame), Ok(()));
    expect!(probe_read(second + 64), 0xC0FFEE);
    Ok(Pass::Ok)
}

fn delete_unmaps(env: &mut Env) -> Outcome {
    let (frame, vaddr) = env.mapped_frame()?;
    env.res.delete(frame).ctx("delete frame")?;
    // The address is free: another frame maps there.
    let other = env.frame()?;
    expect!(
        invoke::frame_map(other, slot::ROOT_VSPACE, vaddr, RW),
        Ok(())
    );
    expect!(probe_read(vaddr), 0);
    Ok(Pass::Ok)
}

fn get_address(env: &mut Env) -> Outcome {
    let first = env.frame()?;
    let second = env.frame()?;
    let a = invoke::frame_get_address(first).ctx("address")?;
    let b = invoke::frame_get_address(second).ctx("address")?;
    ensure!(
        a != 0 && a % PAGE_SIZE == 0 && b % PAGE_SIZE == 0 && a != b,
        "addresses {a:#x} and {b:#x}"
    );
    // Copies name the same memory.
    let copy = env.copy(first, Rights::READ)?;
    expect!(invoke::frame_get_address(copy), Ok(a));
    Ok(Pass::Ok)
}

fn large_frame(env: &mut Env) -> Outcome {
    let untyped = env.untyped(21)?;
    let large = env.slot()?;
    invoke::untyped_retype(untyped, ObjectType::Frame2M, 0, slot::ROOT_CNODE, large, 1)
        .ctx("retype 2 MiB frame")?;
    let vaddr = env.vaddr(LARGE_PAGE_SIZE, LARGE_PAGE_SIZE);
    expect_err!(
        invoke::frame_map(large, slot::ROOT_VSPACE, vaddr + PAGE_SIZE, RW),
        Error::InvalidArgument
    );
    expect!(
        invoke::frame_map(large, slot::ROOT_VSPACE, vaddr, RW),
        Ok(())
    );
    probe_write(vaddr, 1);
    probe_write(vaddr + LARGE_PAGE_SIZE - 8, 2);
    expect!(
        probe_read(vaddr) + probe_read(vaddr + LARGE_PAGE_SIZE - 8),
        3
    );
    // A 4 KiB frame cannot go inside the large mapping.
    let small = env.frame()?;
    expect_err!(
        invoke::frame_map(small, slot::ROOT_VSPACE, vaddr + 0x10_0000, RW),
        Error::AlreadyMapped
    );
    let address = invoke::frame_get_address(large).ctx("address")?;
    ensure!(
        address % LARGE_PAGE_SIZE == 0,
        "2 MiB frame at {address:#x}"
    );
    Ok(Pass::Ok)
}

fn out_of_table_memory(env: &mut Env) -> Outcome {
    // 32 KiB: PML4, header, six table pages = two mappings that each need a
    // fresh PDPT, PD and PT.
    let vspace = env.create(ObjectType::VSpace, 15)?;
    let frames = env
        .res
        .create_many(ObjectType::Frame4K, 0, 4)
        .ctx("frames")?;
    let far = |index: u64| (index + 1) << 39;
    expect!(invoke::frame_map(frames, vspace, far(0), RW), Ok(()));
    expect!(invoke::frame_map(frames + 1, vspace, far(1), RW), Ok(()));
    expect_err!(
        invoke::frame_map(frames + 2, vspace, far(2), RW),
        Error::OutOfTableMemory
    );
    // A mapping next to an existing one needs no new table.
    expect!(
        invoke::frame_map(frames + 3, vspace, far(0) + PAGE_SIZE, RW),
        Ok(())
    );
    // The suite's own VSpace is not affected.
    let (_, vaddr) = env.mapped_frame()?;
    probe_write(vaddr, 7);
    expect!(probe_read(vaddr), 7);
    Ok(Pass::Ok)
}
