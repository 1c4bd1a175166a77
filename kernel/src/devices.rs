//! Device and machine authority: I/O-port ranges, interrupt lines and the
//! Machine capability (power off, the kernel invariant check of
//! `invariants`).

use crate::arch::lock::KernelGuard;
use crate::arch::port;
use crate::invariants::{ensure, Live, Verdict};
use crate::object::{self, insert_cap, read_cap, Cap};
use crate::syscall::Caller;
use tarn_ipc_schema::invocation::Invocation;
use tarn_ipc_schema::Error;

/// Handles an invocation on an I/O-port capability covering `first..=last`.
pub fn invoke_io_port(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    slot: u64,
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
            // A child of the wider capability: revoking that takes it back.
            let narrower = Cap::IoPort {
                first: new_first as u16,
                last: new_last as u16,
            };
            insert_cap(guard, dest, narrower, slot);
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
            let verdict = crate::invariants::check(guard);
            if let Err(violation) = verdict {
                kwarn!(
                    "invariant broken: {} (at {:#x})",
                    violation.what,
                    violation.at
                );
            }
            let stats = crate::object::STATS.get(guard);
            let (objects, caps) = (stats.live_objects, stats.live_caps);
            let free_untyped_bytes = verdict.map_or(0, |report| report.free_untyped_bytes);
            let [idle_ns, system_ns, dispatched_ns] = crate::sched::time_split(guard);
            caller.set_reply(
                guard,
                &[
                    objects,
                    caps,
                    u64::from(verdict.is_ok()),
                    u64::from(crate::arch::percpu::online()),
                    idle_ns,
                    system_ns,
                    dispatched_ns,
                    free_untyped_bytes,
                ],
            );
            Ok(())
        }
        Invocation::MachineTimes => {
            let [idle_ns, system_ns, dispatched_ns] = crate::sched::time_split(guard);
            let now = crate::arch::timer::tsc_to_ns(crate::arch::cpu::rdtsc());
            caller.set_reply(guard, &[now, idle_ns, system_ns, dispatched_ns]);
            Ok(())
        }
        _ => Err(Error::IllegalOperation),
    }
}

/// What one interrupt line is bound to.
#[derive(Clone, Copy)]
struct IrqLine {
    claimed: bool,
    gsi: u32,
    notification: u64,
    badge: u64,
}

/// Lines IrqControl hands out: ISA IRQs 0..16 (through the MADT's overrides)
/// and GSIs 16..24.
const IRQS: usize = crate::arch::ioapic::MAX_LINES as usize;

struct Irqs {
    lines: [IrqLine; IRQS],
    routes: [(u32, bool, bool); IRQS],
    cpu_apic_id: u32,
}

static IRQ_TABLE: crate::arch::lock::BklCell<Irqs> = crate::arch::lock::BklCell::new(Irqs {
    lines: [IrqLine {
        claimed: false,
        gsi: 0,
        notification: 0,
        badge: 0,
    }; IRQS],
    routes: [(0, false, false); IRQS],
    cpu_apic_id: 0,
});

/// Initialises the I/O APIC from the MADT and records how each IRQ is routed
/// (called at boot, before any CPU holds the kernel lock).
pub fn init_irqs(madt: &tarn_kernel_core::acpi::Madt, cpu_apic_id: u32) {
    let Some(ioapic) = madt.ioapics.first() else {
        kwarn!("no I/O APIC in the MADT: device interrupts unavailable");
        return;
    };
    crate::arch::ioapic::init(u64::from(ioapic.address), ioapic.gsi_base);
    let mut guard = crate::arch::lock::acquire();
    let table = IRQ_TABLE.get(&mut guard);
    table.cpu_apic_id = cpu_apic_id;
    for irq in 0..IRQS {
        table.routes[irq] = if irq < 16 {
            let route = madt.isa_irq_route(irq as u8);
            (route.gsi, route.level_triggered, route.active_low)
        } else {
            (irq as u32, true, true)
        };
    }
}

/// Handles an invocation on the IrqControl capability.
pub fn invoke_irq_control(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    label: Invocation,
) -> Result<(), Error> {
    if label != Invocation::IrqControlGet {
        return Err(Error::IllegalOperation);
    }
    let irq = caller.mr(0);
    if irq >= IRQS as u64 {
        return Err(Error::OutOfRange);
    }
    let (gsi, level, active_low) = IRQ_TABLE.get(guard).routes[irq as usize];
    if !crate::arch::ioapic::has_line(gsi) {
        return Err(Error::OutOfRange);
    }
    if IRQ_TABLE.get(guard).lines[irq as usize].claimed {
        return Err(Error::IllegalState);
    }
    let dest = object::slot_address(caller.cspace(), caller.mr(1))
        .map_err(|_| Error::InvalidCapability)?;
    if read_cap(guard, dest) != Cap::Null {
        return Err(Error::SlotOccupied);
    }
    let table = IRQ_TABLE.get(guard);
    table.lines[irq as usize] = IrqLine {
        claimed: true,
        gsi,
        notification: 0,
        badge: 0,
    };
    crate::arch::ioapic::route(gsi, table.cpu_apic_id, level, active_low);
    insert_cap(guard, dest, Cap::IrqHandler { irq: irq as u8 }, 0);
    Ok(())
}

/// Handles an invocation on an IrqHandler capability.
pub fn invoke_irq_handler(
    guard: &mut KernelGuard,
    caller: &mut Caller,
    irq: u8,
    label: Invocation,
) -> Result<(), Error> {
    match label {
        Invocation::IrqHandlerSetNotification => {
            let Cap::Notification {
                phys,
                badge,
                rights,
            } = caller.lookup(guard, caller.mr(0))?
            else {
                return Err(Error::WrongType);
            };
            if !rights.contains(tarn_ipc_schema::Rights::WRITE) {
                return Err(Error::InsufficientRights);
            }
            let line = &mut IRQ_TABLE.get(guard).lines[usize::from(irq)];
            line.notification = phys;
            line.badge = badge;
            crate::arch::ioapic::set_masked(line.gsi, false);
            Ok(())
        }
        Invocation::IrqHandlerAck => {
            let line = IRQ_TABLE.get(guard).lines[usize::from(irq)];
            if line.notification != 0 {
                crate::arch::ioapic::set_masked(line.gsi, false);
            }
            Ok(())
        }
        _ => Err(Error::IllegalOperation),
    }
}

/// Delivers an interrupt on `gsi` to its notification (the line stays masked
/// until `IrqHandlerAck`).
pub fn on_irq(guard: &mut KernelGuard, gsi: u32) {
    let table = IRQ_TABLE.get(guard);
    let Some(line) = table
        .lines
        .iter()
        .find(|l| l.claimed && l.gsi == gsi)
        .copied()
    else {
        return;
    };
    if line.notification != 0 {
        crate::ipc::signal_object(guard, line.notification, line.badge);
    }
}

/// Releases an IRQ when its handler capability is deleted.
pub fn release_irq(guard: &mut KernelGuard, irq: u8) {
    let line = &mut IRQ_TABLE.get(guard).lines[usize::from(irq)];
    if line.claimed {
        crate::arch::ioapic::set_masked(line.gsi, true);
    }
    *line = IrqLine {
        claimed: false,
        gsi: 0,
        notification: 0,
        badge: 0,
    };
}

/// Unbinds every IRQ that signals the destroyed notification `ntfn`.
pub fn forget_notification(guard: &mut KernelGuard, ntfn: u64) {
    for line in IRQ_TABLE
        .get(guard)
        .lines
        .iter_mut()
        .filter(|l| l.notification == ntfn)
    {
        crate::arch::ioapic::set_masked(line.gsi, true);
        line.notification = 0;
    }
}

/// Checks the interrupt table (the invariant check): a line is claimed
/// exactly when one IrqHandler capability names it, and signals a live
/// notification or none.
pub fn check_irqs(guard: &mut KernelGuard, live: &Live) -> Verdict {
    ensure(
        live.irq_handlers.windows(2).all(|pair| pair[0] != pair[1]),
        "two IrqHandler capabilities name one line",
        0,
    )?;
    for irq in 0..IRQS {
        let line = IRQ_TABLE.get(guard).lines[irq];
        let handled = live.irq_handlers.binary_search(&(irq as u8)).is_ok();
        ensure(
            line.claimed == handled,
            "an interrupt line is claimed without a handler capability, or the reverse",
            irq as u64,
        )?;
        ensure(
            line.notification == 0 || (line.claimed && live.is_notification(line.notification)),
            "an interrupt line signals no live notification",
            irq as u64,
        )?;
    }
    Ok(())
}
