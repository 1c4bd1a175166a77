//! The x86-64 instructions the runtime needs, each wrapped once: the
//! `syscall` instruction, the program and thread entry points, the stack
//! pointer, `ud2`, and raw memory probes for fault tests.

use crate::layout;
use core::arch::{asm, global_asm};

/// Registers as the kernel leaves them after a `syscall`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallRegisters {
    /// `rax`: the error code (0 = success).
    pub rax: u64,
    /// `rdi`: badge (receives) or notification word (waits).
    pub rdi: u64,
    /// `rsi`: the message-info word.
    pub rsi: u64,
    /// `rdx`, `r10`, `r8`, `r9`: MR0..MR3.
    pub mrs: [u64; 4],
}

/// Executes `syscall` with the register convention of `tarn_ipc_schema`:
/// `rax` = number, `rdi` = capability pointer, `rsi` = message info,
/// `rdx`/`r10`/`r8`/`r9` = MR0..MR3 in; the same registers out; `rcx` and
/// `r11` clobbered.
///
/// # Safety
///
/// The kernel reads and writes memory of this thread only through the
/// thread's IPC buffer and, for `DebugWrite`, reads the given pointer (which
/// it validates). The caller must make sure that no Rust reference into the
/// IPC buffer is live across the call (the runtime only ever accesses it with
/// volatile raw-pointer operations) and that the operation does not change
/// mappings or threads that Rust code relies on (unmapping the stack, say):
/// that is an obligation about the capabilities used, which the kernel cannot
/// check for us.
#[inline(always)]
pub unsafe fn syscall(number: u64, cptr: u64, info: u64, mrs: [u64; 4]) -> SyscallRegisters {
    let (rax, rdi, rsi, rdx, r10, r8, r9): (u64, u64, u64, u64, u64, u64, u64);
    // SAFETY: the caller upholds the contract above; `syscall` clobbers only
    // the listed registers (rcx, r11 by the instruction; the others are
    // declared as outputs) and does not touch the user stack.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") number => rax,
            inlateout("rdi") cptr => rdi,
            inlateout("rsi") info => rsi,
            inlateout("rdx") mrs[0] => rdx,
            inlateout("r10") mrs[1] => r10,
            inlateout("r8") mrs[2] => r8,
            inlateout("r9") mrs[3] => r9,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    SyscallRegisters {
        rax,
        rdi,
        rsi,
        mrs: [rdx, r10, r8, r9],
    }
}

/// A system call made with `xmm8` holding `value`, returning its registers
/// and `xmm8` as the thread finds it when the call returns. Both moves sit
/// in the same `asm!` block as the `syscall`, so no compiled code can touch
/// the register in between: the test suite's probe that the kernel keeps a
/// thread's SSE state across a blocking call, wherever the thread resumes.
///
/// # Safety
/// As for [`syscall`].
pub unsafe fn syscall_with_xmm8(
    number: u64,
    cptr: u64,
    info: u64,
    mrs: [u64; 4],
    value: u64,
) -> (SyscallRegisters, u64) {
    let (rax, rdi, rsi, rdx, r10, r8, r9, xmm8): (u64, u64, u64, u64, u64, u64, u64, u64);
    // SAFETY: as for `syscall`; `xmm8` is declared clobbered and the two
    // moves touch no memory.
    unsafe {
        asm!(
            "movq xmm8, {value}",
            "syscall",
            "movq {xmm8}, xmm8",
            value = in(reg) value,
            xmm8 = lateout(reg) xmm8,
            inlateout("rax") number => rax,
            inlateout("rdi") cptr => rdi,
            inlateout("rsi") info => rsi,
            inlateout("rdx") mrs[0] => rdx,
            inlateout("r10") mrs[1] => r10,
            inlateout("r8") mrs[2] => r8,
            inlateout("r9") mrs[3] => r9,
            lateout("rcx") _,
            lateout("r11") _,
            out("xmm8") _,
            options(nostack),
        );
    }
    let registers = SyscallRegisters {
        rax,
        rdi,
        rsi,
        mrs: [rdx, r10, r8, r9],
    };
    (registers, xmm8)
}

/// The current stack pointer.
#[inline(always)]
pub fn stack_pointer() -> u64 {
    let rsp: u64;
    // SAFETY: reads a register, touches no memory.
    unsafe { asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    rsp
}

/// Executes `ud2`: the thread takes an invalid-opcode exception (vector 6)
/// and stops until its fault handler replies. Resuming re-executes the `ud2`.
pub fn ud2() -> ! {
    // SAFETY: raises #UD; no memory is touched and control never continues
    // past the instruction.
    unsafe { asm!("ud2", options(noreturn, nomem, nostack)) }
}

/// Reads the 64-bit word at `addr`, which must lie in the free window
/// ([`layout::FREE_WINDOW_BASE`]): an unmapped address page-faults, and the
/// thread retries the read when its fault handler resumes it.
///
/// # Panics
///
/// If `addr` is outside the free window (where Rust objects may live).
pub fn probe_read(addr: u64) -> u64 {
    assert!(
        layout::in_free_window(addr, 8),
        "probe_read outside the free window: {addr:#x}"
    );
    let value: u64;
    // SAFETY: the free window holds no Rust object (the runtime never maps
    // there), so the read cannot race with or alias Rust memory; a fault is
    // handled by the kernel and the thread's fault handler.
    unsafe {
        asm!("mov {}, qword ptr [{}]", out(reg) value, in(reg) addr, options(nostack, readonly, preserves_flags))
    };
    value
}

/// Writes the 64-bit word `value` at `addr` in the free window (see
/// [`probe_read`]).
///
/// # Panics
///
/// If `addr` is outside the free window.
pub fn probe_write(addr: u64, value: u64) {
    assert!(
        layout::in_free_window(addr, 8),
        "probe_write outside the free window: {addr:#x}"
    );
    // SAFETY: as in `probe_read`: no Rust object lives in the free window.
    unsafe {
        asm!("mov qword ptr [{}], {}", in(reg) addr, in(reg) value, options(nostack, preserves_flags))
    };
}

/// [`probe_read`] without its check, for a reader that checked once that a
/// whole range of the free window holds what it reads (the event ring).
///
/// # Safety
///
/// `addr..addr + 8` must lie in the free window.
#[inline(always)]
pub(crate) unsafe fn window_read(addr: u64) -> u64 {
    let value: u64;
    // SAFETY: the caller guarantees the word lies in the free window, which
    // holds no Rust object (as in `probe_read`).
    unsafe {
        asm!("mov {}, qword ptr [{}]", out(reg) value, in(reg) addr, options(nostack, readonly, preserves_flags))
    };
    value
}

/// [`probe_write`] without its check (see [`window_read`]).
///
/// # Safety
///
/// `addr..addr + 8` must lie in the free window.
#[inline(always)]
pub(crate) unsafe fn window_write(addr: u64, value: u64) {
    // SAFETY: the caller guarantees the word lies in the free window, which
    // holds no Rust object (as in `probe_write`).
    unsafe {
        asm!("mov qword ptr [{}], {}", in(reg) addr, in(reg) value, options(nostack, preserves_flags))
    };
}

// The program entry: the kernel (root task) or the spawner (every other
// process) starts the main thread here with rdi = its argument and rsp = the
// top of its stack. The stack is realigned and nothing else is set up.
#[cfg(target_os = "none")]
global_asm!(
    ".pushsection .text._start, \"ax\", @progbits",
    ".global _start",
    ".type _start, @function",
    "_start:",
    "    xor ebp, ebp",
    "    and rsp, -16",
    "    call {rt_start}",
    "    ud2",
    ".size _start, . - _start",
    ".popsection",
    rt_start = sym crate::start::rt_start,
);

// Extra threads start here with rdi = the boxed start record
// (`thread::rt_thread_start` reclaims it) and rsp = the top of the slot's stack.
global_asm!(
    ".pushsection .text.tarn_thread_entry, \"ax\", @progbits",
    ".global tarn_thread_entry",
    ".type tarn_thread_entry, @function",
    "tarn_thread_entry:",
    "    xor ebp, ebp",
    "    and rsp, -16",
    "    call {rt_thread_start}",
    "    ud2",
    ".size tarn_thread_entry, . - tarn_thread_entry",
    ".popsection",
    rt_thread_start = sym crate::thread::rt_thread_start,
);

extern "C" {
    fn tarn_thread_entry();
}

/// Address of the extra-thread entry point (the RIP a new thread starts at).
pub fn thread_entry_address() -> u64 {
    tarn_thread_entry as *const () as usize as u64
}

/// Reads the time-stamp counter (under QEMU `-icount shift=0` it counts
/// instructions, which makes benchmark figures exact).
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is available to user mode (the kernel never sets CR4.TSD)
    // and has no memory effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}
