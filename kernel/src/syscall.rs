//! System-call and user-trap handling: the safe half of kernel entry.
//! `handle` decodes the syscall from the current thread's saved registers,
//! validates, invokes, writes the result back into the saved registers, and
//! leaves through the scheduler. Object invocations (a `Call` on a
//! non-endpoint capability) are dispatched by capability type.

use crate::arch::lock::KernelGuard;
use crate::arch::objmem::{self, KernelObject};
use crate::arch::{paging, timer, trap};
use crate::ipc::{self, WaitMode};
use crate::object::tcb;
use crate::object::{self, read_cap, Cap};
use crate::{devices, sched};
use tarn_ipc_schema::invocation::Invocation;
use tarn_ipc_schema::{fault, Error, IpcBuffer, MessageInfo, Syscall, MAX_DEBUG_WRITE};

/// Message words an invocation may read (MR0..MR7).
const INVOCATION_WORDS: usize = 8;

struct Buffer(IpcBuffer);
impl KernelObject for Buffer {}

/// The thread making an invocation: its CSpace, arguments and reply.
pub struct Caller {
    thread: u64,
    cspace: Cap,
    words: [u64; INVOCATION_WORDS],
    reply: [u64; INVOCATION_WORDS],
    reply_length: usize,
}

impl Caller {
    fn new(guard: &mut KernelGuard, thread: u64, cspace: Cap, info: MessageInfo) -> Self {
        let f = *tcb::frame(guard, thread);
        let mut words = [0u64; INVOCATION_WORDS];
        words[..4].copy_from_slice(&[f.rdx, f.r10, f.r8, f.r9]);
        let length = info.length().min(INVOCATION_WORDS);
        if length > 4 {
            if let Some(buffer) = tcb::ipc_buffer(guard, thread) {
                let buffer = &objmem::object::<Buffer>(guard, buffer).0;
                words[4..length].copy_from_slice(&buffer.mrs[4..length]);
            }
        }
        Caller {
            thread,
            cspace,
            words,
            reply: [0; INVOCATION_WORDS],
            reply_length: 0,
        }
    }

    /// Message register `index` (0 beyond what was sent).
    pub fn mr(&self, index: usize) -> u64 {
        self.words.get(index).copied().unwrap_or(0)
    }

    /// The slot `cptr` names in the caller's CSpace; it must hold a capability.
    pub fn lookup_slot(&self, guard: &mut KernelGuard, cptr: u64) -> Result<u64, Error> {
        let slot = object::slot_address(self.cspace, cptr).map_err(|_| Error::InvalidCapability)?;
        if object::slot_is_empty(guard, slot) {
            return Err(Error::InvalidCapability);
        }
        Ok(slot)
    }

    /// The capability `cptr` names in the caller's CSpace (decoded once).
    pub fn lookup(&self, guard: &mut KernelGuard, cptr: u64) -> Result<Cap, Error> {
        lookup_in(guard, self.cspace, cptr).map(|(_, cap)| cap)
    }

    /// The invoking thread (TCB phys).
    pub fn thread(&self) -> u64 {
        self.thread
    }

    /// The caller's CSpace root.
    pub fn cspace(&self) -> Cap {
        self.cspace
    }

    /// Sets the reply words (MR0..) of a successful invocation.
    pub fn set_reply(&mut self, _guard: &mut KernelGuard, words: &[u64]) {
        let n = words.len().min(INVOCATION_WORDS);
        self.reply[..n].copy_from_slice(&words[..n]);
        self.reply_length = n;
    }
}

/// Handles the current thread's system call, then schedules (the entry of
/// every system call but the two the fastpath takes,
/// [`crate::fastpath::call_entry`] and `reply_recv_entry`).
pub fn handle(mut guard: KernelGuard) -> ! {
    let thread = sched::current(&mut guard);
    general(guard, thread)
}

/// `Yield`'s entry: as the general path's `Yield`, without its decode.
#[inline(always)]
pub fn yield_entry(mut guard: KernelGuard) -> ! {
    let thread = sched::current(&mut guard);
    if thread != 0 {
        sched::yield_current(&mut guard);
        tcb::set_result(&mut guard, thread, Ok(()));
    }
    sched::schedule(guard)
}

/// The general path for `thread`'s system call (the current thread, or 0:
/// none), then a scheduling pass.
#[inline(never)]
pub fn general(mut guard: KernelGuard, thread: u64) -> ! {
    if thread != 0 {
        dispatch(&mut guard, thread);
    }
    sched::schedule(guard)
}

fn dispatch(guard: &mut KernelGuard, thread: u64) {
    let f = *tcb::frame(guard, thread);
    let Some(syscall) = Syscall::from_u64(f.rax) else {
        tcb::set_result(guard, thread, Err(Error::InvalidSyscall));
        return;
    };
    let info = MessageInfo(f.rsi);
    let result = match syscall {
        Syscall::DebugWrite => debug_write(guard, thread, f.rdi, f.rsi).map(|()| true),
        // (Its own entry, `yield_entry`, takes it.)
        Syscall::Yield => {
            sched::yield_current(guard);
            Ok(true)
        }
        Syscall::Send | Syscall::NbSend | Syscall::Call => {
            let blocking = syscall != Syscall::NbSend;
            // The CSpace root is decoded once, for the lookup and the
            // invocation's own lookups.
            let cspace = tcb::cspace(guard, thread);
            match lookup_in(guard, cspace, f.rdi) {
                Err(e) => Err(e),
                Ok((_, cap @ Cap::Endpoint { .. })) => {
                    ipc::send(guard, thread, cap, info, blocking, syscall == Syscall::Call)
                        .map(|()| false)
                }
                Ok((_, cap @ Cap::Notification { .. })) if syscall != Syscall::Call => {
                    ipc::signal(guard, cap).map(|()| true)
                }
                Ok((slot, cap)) if syscall == Syscall::Call => {
                    invoke(guard, thread, cspace, slot, cap, info)
                }
                Ok(_) => Err(Error::WrongType),
            }
        }
        Syscall::Recv | Syscall::NbRecv => lookup(guard, thread, f.rdi)
            .and_then(|(_, cap)| ipc::receive(guard, thread, cap, syscall == Syscall::Recv))
            .map(|()| false),
        Syscall::Reply => ipc::reply(guard, thread, info).map(|()| true),
        Syscall::ReplyRecv => match lookup(guard, thread, f.rdi) {
            Err(e) => Err(e),
            Ok((_, cap)) => match ipc::check_info(info) {
                Err(e) => Err(e),
                Ok(()) => {
                    let _ = ipc::reply(guard, thread, info);
                    ipc::receive(guard, thread, cap, true).map(|()| false)
                }
            },
        },
        Syscall::Signal => lookup(guard, thread, f.rdi)
            .and_then(|(_, cap)| ipc::signal(guard, cap))
            .map(|()| true),
        Syscall::Wait => lookup(guard, thread, f.rdi)
            .and_then(|(_, cap)| {
                let timeout_ticks = if f.rdx == 0 {
                    0
                } else {
                    timer::ns_to_tsc(f.rdx).max(1)
                };
                ipc::wait(guard, thread, cap, WaitMode::Block { timeout_ticks })
            })
            .map(|()| false),
        Syscall::Poll => lookup(guard, thread, f.rdi)
            .and_then(|(_, cap)| ipc::wait(guard, thread, cap, WaitMode::Poll))
            .map(|()| false),
    };
    match result {
        Ok(true) => tcb::set_result(guard, thread, Ok(())),
        Ok(false) => {}
        Err(e) => tcb::set_result(guard, thread, Err(e)),
    }
}

fn lookup(guard: &mut KernelGuard, thread: u64, cptr: u64) -> Result<(u64, Cap), Error> {
    let cspace = tcb::cspace(guard, thread);
    lookup_in(guard, cspace, cptr)
}

/// The slot `cptr` names in the CSpace whose root is `cspace`, and its
/// (non-empty) capability.
#[inline(always)]
fn lookup_in(guard: &mut KernelGuard, cspace: Cap, cptr: u64) -> Result<(u64, Cap), Error> {
    let slot = object::slot_address(cspace, cptr).map_err(|_| Error::InvalidCapability)?;
    match read_cap(guard, slot) {
        Cap::Null => Err(Error::InvalidCapability),
        cap => Ok((slot, cap)),
    }
}

/// An object invocation; the reply is written here (the caller keeps running).
fn invoke(
    guard: &mut KernelGuard,
    thread: u64,
    cspace: Cap,
    slot: u64,
    cap: Cap,
    info: MessageInfo,
) -> Result<bool, Error> {
    let label = Invocation::from_u64(info.label()).ok_or(Error::IllegalOperation)?;
    if info.length() > tarn_ipc_schema::MAX_MESSAGE_WORDS {
        return Err(Error::MessageTooLong);
    }
    let mut caller = Caller::new(guard, thread, cspace, info);
    match cap {
        Cap::Untyped { .. } => object::memory::invoke_untyped(guard, &mut caller, slot, label),
        Cap::CNode { .. } => object::cnode::invoke(guard, &mut caller, cap, slot, label),
        Cap::Tcb { phys } => object::tcb::invoke(guard, &mut caller, phys, label),
        Cap::Frame { .. } => object::memory::invoke_frame(guard, &mut caller, slot, label),
        Cap::VSpace { .. } | Cap::GuestSpace { .. } => Err(Error::IllegalOperation),
        Cap::Vcpu { phys } => {
            // `VcpuRun` replies when the guest exits (`vcpu::complete`).
            if crate::vcpu::invoke(guard, &mut caller, thread, phys, label)? {
                return Ok(false);
            }
            Ok(())
        }
        Cap::IrqControl => devices::invoke_irq_control(guard, &mut caller, label),
        Cap::IrqHandler { irq } => devices::invoke_irq_handler(guard, &mut caller, irq, label),
        Cap::Scheduler { phys } if label == Invocation::SchedulerDispatchWait => {
            // The result is the wait's (written when it ends).
            crate::dispatch::dispatch_and_wait(guard, &mut caller, thread, phys)?;
            return Ok(false);
        }
        Cap::Scheduler { phys } => {
            crate::dispatch::invoke_scheduler(guard, &mut caller, phys, label)
        }
        Cap::Cpu { index } => crate::dispatch::invoke_cpu(guard, &mut caller, index, label),
        Cap::IoPort { first, last } => {
            devices::invoke_io_port(guard, &mut caller, slot, first, last, label)
        }
        Cap::Machine => devices::invoke_machine(guard, &mut caller, label),
        Cap::Endpoint { .. } | Cap::Notification { .. } | Cap::Null => Err(Error::WrongType),
    }?;
    // The invoked thread may be the caller itself (e.g. it suspended itself):
    // its saved registers are still the place for the result.
    let f = tcb::frame(guard, thread);
    f.rax = 0;
    f.rsi = MessageInfo::new(0, 0, caller.reply_length as u64).0;
    let r = caller.reply;
    f.rdx = r[0];
    f.r10 = r[1];
    f.r8 = r[2];
    f.r9 = r[3];
    if caller.reply_length > 4 {
        if let Some(buffer) = tcb::ipc_buffer(guard, thread) {
            objmem::object::<Buffer>(guard, buffer).0.mrs[4..caller.reply_length]
                .copy_from_slice(&r[4..caller.reply_length]);
        }
    }
    Ok(false)
}

/// `DebugWrite`: prints user text (validated page by page) as one line.
fn debug_write(
    guard: &mut KernelGuard,
    thread: u64,
    pointer: u64,
    length: u64,
) -> Result<(), Error> {
    if length > MAX_DEBUG_WRITE as u64 {
        return Err(Error::InvalidArgument);
    }
    let root = tcb::runnable_root(guard, thread).ok_or(Error::InvalidAddress)?;
    let mut text = [0u8; MAX_DEBUG_WRITE];
    let text = &mut text[..length as usize];
    copy_from_user(guard, root, pointer, text)?;
    let text = core::str::from_utf8(text).unwrap_or("<invalid utf-8>");
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    crate::console::write(format_args!("{text}{newline}"));
    Ok(())
}

/// Copies user memory at `pointer` into `out`, checking every page is mapped
/// and user-readable in the address space `root`.
pub fn copy_from_user(
    guard: &mut KernelGuard,
    root: u64,
    pointer: u64,
    out: &mut [u8],
) -> Result<(), Error> {
    let mut done = 0usize;
    while done < out.len() {
        let virt = pointer
            .checked_add(done as u64)
            .ok_or(Error::InvalidAddress)?;
        let phys = paging::translate_user(guard, root, virt, false).ok_or(Error::InvalidAddress)?;
        let in_page = (paging::PAGE_SIZE - (virt & (paging::PAGE_SIZE - 1))) as usize;
        let n = in_page.min(out.len() - done);
        objmem::read_bytes(guard, phys, &mut out[done..done + n]);
        done += n;
    }
    Ok(())
}

/// Handles an interrupt or exception taken in user mode, then schedules.
pub fn handle_trap(mut guard: KernelGuard, vector: u64, error_code: u64, cr2: u64) -> ! {
    let thread = sched::current(&mut guard);
    match vector {
        2 => {}
        7 => sched::fpu_trap(&mut guard),
        18 => panic!("machine check while in user mode"),
        0..=31 if thread != 0 => {
            let rip = tcb::frame(&mut guard, thread).rip;
            let (label, address) = if vector == 14 {
                (fault::PAGE_FAULT, cr2)
            } else {
                (fault::EXCEPTION, 0)
            };
            ipc::deliver_fault(
                &mut guard,
                thread,
                label,
                [rip, address, error_code, vector],
            );
        }
        v if v == u64::from(trap::VECTOR_TIMER) => sched::on_timer(&mut guard),
        v => {
            if let Some(gsi) = trap::device_line(v) {
                devices::on_irq(&mut guard, gsi);
            }
        }
    }
    sched::schedule(guard)
}
