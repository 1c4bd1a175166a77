//! Device and machine authority: I/O-port ranges and the Machine capability
//! (power off, kernel invariant check).

use crate::arch::lock::KernelGuard;
use crate::arch::port;
use crate::object::{self, insert_cap, read_cap, Cap};
use crate::syscall::Caller;
use tarn_ipc_schema::invocation::Invocation;
use tarn_ipc_schema::Error;

/// Handles an invocation on an I/O-port capability covering `first..=last`.
pub fn invoke_io_port(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    first: u16,
    last: u16,
    label: Invocation,
) -> Result<(), Error> {
    let in_range = |port: u64, width: u64| -> Result<u16, Error> {
        if !matches!(width, 1 | 2 | 4) {
            return Err(Error::InvalidArgument);
        }
        let end = port.checked_add(width - 1).ok_or(Error::OutOfRange)?;
        if port < u64::from(first) || end > u64::from(last) {
            return Err(Error::OutOfRange);
        }
        Ok(port as u16)
    };
    match label {
        Invocation::IoPortIn => {
            let width = caller.mr(1);
            let port = in_range(caller.mr(0), width)?;
            let value = port::read(port, width as u8);
            caller.set_reply(guard, &[u64::from(value)]);
            Ok(())
        }
        Invocation::IoPortOut => {
            let width = caller.mr(1);
            let port = in_range(caller.mr(0), width)?;
            port::write(port, width as u8, caller.mr(2) as u32);
            Ok(())
        }
        Invocation::IoPortIssue => {
            let (new_first, new_last) = (caller.mr(0), caller.mr(1));
            if new_first > new_last || new_first < u64::from(first) || new_last > u64::from(last) {
                return Err(Error::OutOfRange);
            }
            let dest = object::slot_address(caller.cspace(), caller.mr(2))
                .map_err(|_| Error::InvalidCapability)?;
            if read_cap(guard, dest) != Cap::Null {
                return Err(Error::SlotOccupied);
            }
            // The narrower capability is a root of its own: revoking it is
            // independent of the wider one it was issued from.
            insert_cap(
                guard,
                dest,
                Cap::IoPort {
                    first: new_first as u16,
                    last: new_last as u16,
                },
                0,
            );
            Ok(())
        }
        _ => Err(Error::IllegalOperation),
    }
}

/// Handles an invocation on the Machine capability.
pub fn invoke_machine(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    label: Invocation,
) -> Result<(), Error> {
    match label {
        Invocation::MachinePowerOff => crate::exit(caller.mr(0).min(255) as u8),
        Invocation::MachineCheckInvariants => {
            let consistent = crate::object::check_reachable(guard, caller.cspace());
            let stats = crate::object::STATS.get(guard);
            let (objects, caps) = (stats.live_objects, stats.live_caps);
            caller.set_reply(
                guard,
                &[
                    objects,
                    caps,
                    u64::from(consistent),
                    u64::from(crate::arch::percpu::online()),
                ],
            );
            Ok(())
        }
        _ => Err(Error::IllegalOperation),
    }
}
