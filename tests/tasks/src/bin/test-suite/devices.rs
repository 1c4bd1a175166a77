//! Device and machine capabilities: I/O ports (in, out, issue and their
//! range checks), IRQ control and handlers, and the machine's invariant check.

use crate::harness::{Check, Env, Outcome, Pass, Test};
use crate::{ensure, expect, expect_err};
use tarn_rt::abi::{Error, Rights};
use tarn_rt::invoke;
use tarn_rt::layout::slot;

pub const TESTS: &[Test] = &[
    ("ioport_in_out", ioport_in_out),
    ("ioport_range_and_width_checks", ioport_checks),
    ("ioport_issue_narrower", ioport_issue),
    ("irq_control_and_handler", irq),
    ("machine_check_invariants", invariants),
];

/// The ports the root gives the suite.
const FIRST_PORT: u64 = 0x80;
const LAST_PORT: u64 = 0x8F;

fn have_ports() -> bool {
    invoke::ioport_in(slot::IO_PORTS, FIRST_PORT, 1).is_ok()
}

fn ioport_in_out(_env: &mut Env) -> Outcome {
    if !have_ports() {
        return Ok(Pass::Skipped("no I/O-port capability"));
    }
    // Port 0x80 is the POST diagnostic port: writes are harmless.
    expect!(
        invoke::ioport_out(slot::IO_PORTS, FIRST_PORT, 1, 0x42),
        Ok(())
    );
    ensure!(
        invoke::ioport_in(slot::IO_PORTS, FIRST_PORT, 1).is_ok(),
        "8-bit read"
    );
    ensure!(
        invoke::ioport_in(slot::IO_PORTS, FIRST_PORT, 2).is_ok(),
        "16-bit read"
    );
    ensure!(
        invoke::ioport_in(slot::IO_PORTS, LAST_PORT - 3, 4).is_ok(),
        "32-bit read ending at the last port"
    );
    let value = invoke::ioport_in(slot::IO_PORTS, FIRST_PORT, 1).ctx("read")?;
    ensure!(value <= 0xFF, "an 8-bit read returned {value:#x}");
    Ok(Pass::Ok)
}

fn ioport_checks(_env: &mut Env) -> Outcome {
    if !have_ports() {
        return Ok(Pass::Skipped("no I/O-port capability"));
    }
    for (port, width) in [
        (FIRST_PORT - 1, 1),
        (LAST_PORT + 1, 1),
        (LAST_PORT, 2),
        (LAST_PORT - 2, 4),
        (0x3F8, 1),
        (u64::MAX, 1),
    ] {
        let result = invoke::ioport_in(slot::IO_PORTS, port, width);
        ensure!(
            result == Err(Error::OutOfRange),
            "in {port:#x}/{width}: expected OutOfRange, got {result:?}"
        );
        let result = invoke::ioport_out(slot::IO_PORTS, port, width, 0);
        ensure!(
            result == Err(Error::OutOfRange),
            "out {port:#x}/{width}: expected OutOfRange, got {result:?}"
        );
    }
    for width in [0, 3, 5, 8] {
        expect_err!(
            invoke::ioport_in(slot::IO_PORTS, FIRST_PORT, width),
            Error::InvalidArgument
        );
        expect_err!(
            invoke::ioport_out(slot::IO_PORTS, FIRST_PORT, width, 0),
            Error::InvalidArgument
        );
    }
    Ok(Pass::Ok)
}

fn ioport_issue(env: &mut Env) -> Outcome {
    if !have_ports() {
        return Ok(Pass::Skipped("no I/O-port capability"));
    }
    let narrow = env.slot()?;
    expect!(
        invoke::ioport_issue(slot::IO_PORTS, FIRST_PORT, FIRST_PORT + 1, narrow),
        Ok(())
    );
    expect!(invoke::ioport_out(narrow, FIRST_PORT + 1, 1, 0), Ok(()));
    expect_err!(
        invoke::ioport_out(narrow, FIRST_PORT + 2, 1, 0),
        Error::OutOfRange
    );
    expect_err!(
        invoke::ioport_in(narrow, FIRST_PORT + 1, 2),
        Error::OutOfRange
    );
    let other = env.slot()?;
    expect_err!(
        invoke::ioport_issue(slot::IO_PORTS, 0x70, 0x90, other),
        Error::OutOfRange
    );
    expect_err!(
        invoke::ioport_issue(narrow, FIRST_PORT, FIRST_PORT + 2, other),
        Error::OutOfRange
    );
    expect_err!(
        invoke::ioport_issue(slot::IO_PORTS, FIRST_PORT + 2, FIRST_PORT + 1, other),
        Error::OutOfRange
    );
    expect_err!(
        invoke::ioport_issue(slot::IO_PORTS, FIRST_PORT, FIRST_PORT, narrow),
        Error::SlotOccupied
    );
    expect_err!(
        invoke::ioport_issue(slot::IO_PORTS, FIRST_PORT, FIRST_PORT, 0),
        Error::InvalidCapability
    );
    // A narrower capability narrows further.
    expect!(
        invoke::ioport_issue(narrow, FIRST_PORT, FIRST_PORT, other),
        Ok(())
    );
    expect!(invoke::ioport_out(other, FIRST_PORT, 1, 0), Ok(()));
    Ok(Pass::Ok)
}

/// An ISA line nothing in the QEMU PC drives.
const QUIET_IRQ: u64 = 5;
/// Another one (LPT1, absent in QEMU's default machine).
const OTHER_IRQ: u64 = 7;

fn irq(env: &mut Env) -> Outcome {
    let handler = env.slot()?;
    match invoke::irq_control_get(slot::IRQ_CONTROL, QUIET_IRQ, handler) {
        Ok(()) => {}
        Err(Error::InvalidCapability) => return Ok(Pass::Skipped("no IRQ control capability")),
        Err(other) => return Err(alloc::format!("IrqControlGet({QUIET_IRQ}): {other:?}")),
    }
    let occupied = env.endpoint()?;
    expect_err!(
        invoke::irq_control_get(slot::IRQ_CONTROL, QUIET_IRQ, occupied),
        Error::IllegalState
    );
    expect_err!(
        invoke::irq_control_get(slot::IRQ_CONTROL, OTHER_IRQ, occupied),
        Error::SlotOccupied
    );
    expect_err!(
        invoke::irq_control_get(slot::IRQ_CONTROL, OTHER_IRQ, 0),
        Error::InvalidCapability
    );
    for line in [256, 1 << 20, u64::MAX] {
        expect_err!(
            invoke::irq_control_get(slot::IRQ_CONTROL, line, occupied),
            Error::OutOfRange
        );
    }
    let notification = env.notification()?;
    let badged = env.mint(notification, Rights::WRITE, 0x100)?;
    let read_only = env.copy(notification, Rights::READ)?;
    expect_err!(
        invoke::irq_handler_set_notification(handler, occupied),
        Error::WrongType
    );
    expect_err!(
        invoke::irq_handler_set_notification(handler, read_only),
        Error::InsufficientRights
    );
    expect!(
        invoke::irq_handler_set_notification(handler, badged),
        Ok(())
    );
    expect!(invoke::irq_handler_ack(handler), Ok(()));
    expect_err!(
        invoke::invoke_raw(handler, tarn_rt::abi::Invocation::IrqControlGet as u64, &[]),
        Error::IllegalOperation
    );
    // Nothing drives the line.
    expect_err!(tarn_rt::poll(notification), Error::WouldBlock);
    // Deleting the handler frees the line for another claim.
    env.res.delete(handler).ctx("delete handler")?;
    let again = env.slot()?;
    expect!(
        invoke::irq_control_get(slot::IRQ_CONTROL, QUIET_IRQ, again),
        Ok(())
    );
    env.res.delete(again).ctx("delete handler")?;
    Ok(Pass::Ok)
}

fn invariants(env: &mut Env) -> Outcome {
    let report = invoke::machine_check_invariants(slot::MACHINE).ctx("check invariants")?;
    ensure!(report.consistent, "the kernel reports inconsistent state");
    expect!(report.cpus, env.cpus);
    ensure!(
        report.live_objects > 0 && report.live_caps > report.live_objects,
        "counts {report:?}"
    );
    Ok(Pass::Ok)
}
