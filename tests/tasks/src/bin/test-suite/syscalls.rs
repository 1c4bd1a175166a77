//! System-call decoding: invalid numbers, `Yield`, `DebugWrite`, bad
//! capability pointers, capabilities of the wrong type, unknown labels.

use crate::harness::{decode, Check, Env, Outcome, Pass, Test};
use crate::{expect, expect_err};
use tarn_rt::abi::invocation::Invocation;
use tarn_rt::abi::{Error, MessageInfo, ObjectType, Rights, Syscall};
use tarn_rt::invoke::{self, TcbConfig};
use tarn_rt::layout::{self, slot};
use tarn_rt::syscall;

pub const TESTS: &[Test] = &[
    ("syscall_invalid_numbers", invalid_numbers),
    ("syscall_yield", yield_returns),
    ("debug_write_prints", debug_write_prints),
    ("debug_write_bad_pointers", debug_write_bad_pointers),
    ("debug_write_too_long", debug_write_too_long),
    ("cptr_invalid_for_every_syscall", invalid_cptrs),
    ("cptr_invalid_in_arguments", invalid_cptr_arguments),
    ("wrong_type_for_syscalls", wrong_type_syscalls),
    ("wrong_type_for_invocation_arguments", wrong_type_arguments),
    ("illegal_operation_labels", illegal_operations),
];

/// Every syscall that names a capability in `rdi`.
const CAP_SYSCALLS: [Syscall; 9] = [
    Syscall::Send,
    Syscall::NbSend,
    Syscall::Call,
    Syscall::Recv,
    Syscall::NbRecv,
    Syscall::ReplyRecv,
    Syscall::Signal,
    Syscall::Wait,
    Syscall::Poll,
];

fn raw_error(number: u64, cptr: u64) -> Result<(), Error> {
    decode(syscall::raw(number, cptr, 0, [0; 4]).rax)
}

fn invalid_numbers(_env: &mut Env) -> Outcome {
    for number in [0, 13, 99, 0x100, u64::MAX] {
        expect_err!(raw_error(number, 0), Error::InvalidSyscall);
    }
    Ok(Pass::Ok)
}

/// `Yield` (its own kernel entry) succeeds and leaves the other argument
/// registers as they were, as the general path's system calls without a
/// reply do.
fn yield_returns(_env: &mut Env) -> Outcome {
    let out = syscall::raw(Syscall::Yield as u64, 0, 0, [0; 4]);
    expect!(out.rax, 0);
    let out = syscall::raw(Syscall::Yield as u64, 0x1234, 0x5678, [1, 2, 3, 4]);
    expect!(
        (out.rax, out.rdi, out.rsi, out.mrs),
        (0, 0x1234, 0x5678, [1, 2, 3, 4])
    );
    Ok(Pass::Ok)
}

fn debug_write_prints(_env: &mut Env) -> Outcome {
    expect!(
        syscall::debug_write("test-suite: DebugWrite prints this line\n"),
        Ok(())
    );
    Ok(Pass::Ok)
}

fn debug_write_bad_pointers(env: &mut Env) -> Outcome {
    // Kernel half, the null page, an unmapped user page, a range running off
    // the end of a mapped page, and an address range that wraps around.
    expect_err!(
        syscall::debug_write_raw(0xFFFF_8000_0000_0000, 8),
        Error::InvalidAddress
    );
    expect_err!(
        syscall::debug_write_raw(0xFFFF_FFFF_8000_0000, 16),
        Error::InvalidAddress
    );
    expect_err!(syscall::debug_write_raw(0, 8), Error::InvalidAddress);
    let unmapped = env.vaddr(layout::PAGE_SIZE, layout::PAGE_SIZE);
    expect_err!(syscall::debug_write_raw(unmapped, 4), Error::InvalidAddress);
    let (_, mapped) = env.mapped_frame()?;
    let _guard_gap = env.vaddr(layout::PAGE_SIZE, layout::PAGE_SIZE);
    tarn_rt::arch::probe_write(
        mapped + layout::PAGE_SIZE - 8,
        u64::from_le_bytes(*b"straddle"),
    );
    expect_err!(
        syscall::debug_write_raw(mapped + layout::PAGE_SIZE - 8, 16),
        Error::InvalidAddress
    );
    expect_err!(
        syscall::debug_write_raw(u64::MAX - 2, 8),
        Error::InvalidAddress
    );
    Ok(Pass::Ok)
}

static LONG_TEXT: [u8; 600] = [b'x'; 600];

fn debug_write_too_long(_env: &mut Env) -> Outcome {
    let pointer = LONG_TEXT.as_ptr() as u64;
    expect_err!(
        syscall::debug_write_raw(pointer, 513),
        Error::InvalidArgument
    );
    expect_err!(
        syscall::debug_write_raw(pointer, u64::MAX),
        Error::InvalidArgument
    );
    Ok(Pass::Ok)
}

fn invalid_cptrs(env: &mut Env) -> Outcome {
    let empty = env.slot()?;
    for number in CAP_SYSCALLS {
        for cptr in [0, 1 << 12, 1 << 40, u64::MAX, empty] {
            let result = raw_error(number as u64, cptr);
            if result != Err(Error::InvalidCapability) {
                return Err(alloc::format!(
                    "{number:?} on cptr {cptr:#x}: expected InvalidCapability, got {result:?}"
                ));
            }
        }
    }
    Ok(Pass::Ok)
}

fn invalid_cptr_arguments(env: &mut Env) -> Outcome {
    let empty = env.slot()?;
    let untyped = env.untyped(16)?;
    let endpoint = env.endpoint()?;
    let target = env.slot()?;
    // Retype into a CNode named by an empty / null / out-of-range cptr.
    for cnode in [0, empty, 1 << 12] {
        expect_err!(
            invoke::untyped_retype(untyped, ObjectType::Endpoint, 0, cnode, target, 1),
            Error::InvalidCapability
        );
    }
    // Copy from a source CNode named by a bad cptr, and from an empty slot.
    for cnode in [0, empty, 1 << 12] {
        expect_err!(
            invoke::cnode_copy(slot::ROOT_CNODE, target, cnode, endpoint, Rights::ALL),
            Error::InvalidCapability
        );
    }
    expect_err!(
        invoke::cnode_copy(
            slot::ROOT_CNODE,
            target,
            slot::ROOT_CNODE,
            empty,
            Rights::ALL
        ),
        Error::InvalidCapability
    );
    // Destination and source slot indices outside the CNode.
    for index in [0, 1 << 12, u64::MAX] {
        expect_err!(
            invoke::cnode_copy(
                slot::ROOT_CNODE,
                index,
                slot::ROOT_CNODE,
                endpoint,
                Rights::ALL
            ),
            Error::InvalidCapability
        );
        expect_err!(
            invoke::cnode_copy(
                slot::ROOT_CNODE,
                target,
                slot::ROOT_CNODE,
                index,
                Rights::ALL
            ),
            Error::InvalidCapability
        );
    }
    // A thread configured with an empty CNode slot.
    let tcb = env.create(ObjectType::Tcb, 0)?;
    let config = TcbConfig {
        cnode: empty,
        vspace: slot::ROOT_VSPACE,
        ..TcbConfig::default()
    };
    expect_err!(
        invoke::tcb_configure(tcb, &config),
        Error::InvalidCapability
    );
    // Mapping into a VSpace named by an empty slot.
    let frame = env.frame()?;
    expect_err!(
        invoke::frame_map(frame, empty, layout::FREE_WINDOW_BASE, Rights::READ),
        Error::InvalidCapability
    );
    Ok(Pass::Ok)
}

fn wrong_type_syscalls(env: &mut Env) -> Outcome {
    let frame = env.frame()?;
    let endpoint = env.endpoint()?;
    let notification = env.notification()?;
    let info = MessageInfo::default();
    expect_err!(tarn_rt::send(frame, info, [0; 4]), Error::WrongType);
    expect_err!(tarn_rt::nb_send(frame, info, [0; 4]), Error::WrongType);
    expect_err!(tarn_rt::recv(frame), Error::WrongType);
    expect_err!(tarn_rt::nb_recv(frame), Error::WrongType);
    expect_err!(tarn_rt::reply_recv(frame, info, [0; 4]), Error::WrongType);
    expect_err!(tarn_rt::signal(frame), Error::WrongType);
    expect_err!(tarn_rt::signal(endpoint), Error::WrongType);
    expect_err!(tarn_rt::wait(endpoint, 1_000_000), Error::WrongType);
    expect_err!(tarn_rt::poll(endpoint), Error::WrongType);
    expect_err!(tarn_rt::poll(frame), Error::WrongType);
    // A `Call` on a notification is an invocation, and notifications have none.
    expect_err!(
        tarn_rt::call(
            notification,
            MessageInfo::new(Invocation::CNodeCopy as u64, 0, 0),
            [0; 4]
        ),
        Error::WrongType
    );
    Ok(Pass::Ok)
}

fn wrong_type_arguments(env: &mut Env) -> Outcome {
    let untyped = env.untyped(16)?;
    let endpoint = env.endpoint()?;
    let notification = env.notification()?;
    let frame = env.frame()?;
    let cnode = env.create(ObjectType::CNode, 4)?;
    let target = env.slot()?;
    expect_err!(
        invoke::untyped_retype(untyped, ObjectType::Endpoint, 0, endpoint, target, 1),
        Error::WrongType
    );
    expect_err!(
        invoke::cnode_copy(slot::ROOT_CNODE, target, endpoint, 1, Rights::ALL),
        Error::WrongType
    );
    let tcb = env.create(ObjectType::Tcb, 0)?;
    let base = TcbConfig {
        cnode: slot::ROOT_CNODE,
        vspace: slot::ROOT_VSPACE,
        ..TcbConfig::default()
    };
    expect_err!(
        invoke::tcb_configure(
            tcb,
            &TcbConfig {
                cnode: endpoint,
                ..base
            }
        ),
        Error::WrongType
    );
    expect_err!(
        invoke::tcb_configure(
            tcb,
            &TcbConfig {
                vspace: cnode,
                ..base
            }
        ),
        Error::WrongType
    );
    let bad_buffer = TcbConfig {
        ipc_buffer_frame: endpoint,
        ipc_buffer_vaddr: layout::FREE_WINDOW_BASE,
        ..base
    };
    expect_err!(invoke::tcb_configure(tcb, &bad_buffer), Error::WrongType);
    expect_err!(
        invoke::tcb_configure(
            tcb,
            &TcbConfig {
                fault_endpoint: notification,
                ..base
            }
        ),
        Error::WrongType
    );
    expect_err!(
        invoke::tcb_bind_notification(tcb, endpoint),
        Error::WrongType
    );
    expect_err!(
        invoke::frame_map(frame, cnode, layout::FREE_WINDOW_BASE, Rights::READ),
        Error::WrongType
    );
    Ok(Pass::Ok)
}

fn illegal_operations(env: &mut Env) -> Outcome {
    let untyped = env.untyped(12)?;
    let frame = env.frame()?;
    let tcb = env.create(ObjectType::Tcb, 0)?;
    let vspace = env.create(ObjectType::VSpace, 15)?;
    let cases = [
        (untyped, Invocation::FrameMap as u64),
        (frame, Invocation::UntypedRetype as u64),
        (tcb, Invocation::CNodeCopy as u64),
        (slot::ROOT_CNODE, Invocation::TcbResume as u64),
        (vspace, Invocation::FrameMap as u64),
        (slot::MACHINE, Invocation::TcbResume as u64),
        (slot::MACHINE, 0),
        (slot::MACHINE, 999),
        (frame, 1 << 40),
    ];
    for (cap, label) in cases {
        expect_err!(invoke::invoke_raw(cap, label, &[]), Error::IllegalOperation);
    }
    if invoke::ioport_in(slot::IO_PORTS, 0x80, 1).is_ok() {
        expect_err!(
            invoke::invoke_raw(slot::IO_PORTS, Invocation::MachinePowerOff as u64, &[0]),
            Error::IllegalOperation
        );
    }
    // The machine capability still works afterwards.
    invoke::machine_check_invariants(slot::MACHINE).ctx("check invariants")?;
    Ok(Pass::Ok)
}
