//! Entering and leaving user mode: the `syscall` MSRs, the return path, the
//! FPU/SSE state switch, and the kernel-entry functions that user.S and
//! entry.S call. Everything past the entry is safe kernel code that receives
//! the [`KernelGuard`].

use super::cpu::{self, msr};
use super::lock::{self, KernelGuard};
use super::objmem;
use super::paging::phys_to_virt;
use super::percpu;
use super::trap::TrapFrame;
use core::arch::asm;
use x86::controlregs::{Cr0, Cr4};

/// Bytes of FXSAVE state per thread.
pub const FPU_STATE_BYTES: usize = 512;

extern "C" {
    fn syscall_entry();
    fn return_to_user_asm(frame: u64) -> !;
}

/// Programs this CPU's `syscall` entry (EFER.SCE, STAR, LSTAR, FMASK) and
/// enables FXSAVE/SSE for user code.
pub fn init_this_cpu() {
    // SAFETY: these MSRs exist on every x86-64 CPU; the selectors match gdt.rs
    // (kernel CS 0x08, SS 0x10) and the entry point is user.S's syscall_entry.
    // FMASK clears IF, DF, TF, AC and NT on entry.
    unsafe {
        cpu::wrmsr(msr::IA32_EFER, cpu::rdmsr(msr::IA32_EFER) | 1);
        cpu::wrmsr(msr::IA32_STAR, (0x10u64 << 48) | (0x08u64 << 32));
        cpu::wrmsr(msr::IA32_LSTAR, syscall_entry as *const () as u64);
        cpu::wrmsr(msr::IA32_FMASK, 0x4_4700);
        cpu::wrmsr(msr::IA32_KERNEL_GSBASE, 0); // user GS base 0
        cpu::write_cr4(cpu::read_cr4() | Cr4::CR4_ENABLE_SSE | Cr4::CR4_UNMASKED_SSE);
        let cr0 = cpu::read_cr0() - Cr0::CR0_EMULATE_COPROCESSOR - Cr0::CR0_TASK_SWITCHED;
        cpu::write_cr0(cr0 | Cr0::CR0_MONITOR_COPROCESSOR | Cr0::CR0_NUMERIC_ERROR);
    }
}

/// Leaves the kernel into the thread whose saved frame is at `frame_phys`,
/// on address space `root` (CR3). Releases the kernel lock on the way.
#[inline(always)]
pub fn return_to_user(guard: KernelGuard, frame_phys: u64, root: u64) -> ! {
    let here = percpu::current();
    let frame_virt = phys_to_virt(frame_phys);
    here.set_context_end(frame_virt + core::mem::size_of::<TrapFrame>() as u64);
    if here.loaded_root() != root {
        // SAFETY: `root` is a VSpace's PML4, whose upper half is a copy of the
        // kernel's, so the kernel stays mapped.
        unsafe { cpu::write_cr3(root) };
        here.set_loaded_root(root);
    }
    here.set_in_user(true);
    drop(guard);
    // SAFETY: the frame was validated when it was written (user selectors,
    // sanitised RFLAGS, see `sanitize_frame`) and lives in TCB memory that
    // stays allocated while the thread is current.
    unsafe { return_to_user_asm(frame_virt) }
}

/// Switches this CPU to the kernel's own page tables (before idling, so no
/// CPU keeps a user address space loaded that may be destroyed).
pub fn load_kernel_tables(kernel_root: u64) {
    let here = percpu::current();
    if here.loaded_root() != 0 {
        // SAFETY: the kernel tables map all kernel code and data.
        unsafe { cpu::write_cr3(kernel_root) };
        here.set_loaded_root(0);
    }
}

/// Forces a saved user frame into a safe state for `iretq`: user selectors,
/// IF set, IOPL 0, no NT/VM/RF/AC tricks.
pub fn sanitize_frame(frame: &mut TrapFrame) {
    frame.cs = 0x23;
    frame.ss = 0x1b;
    frame.rflags = (frame.rflags & 0xCD5) | 0x202; // keep CF PF AF ZF SF TF DF OF; IF set
}

/// Sets (true) or clears (false) CR0.TS: with TS set, the next FPU/SSE
/// instruction raises #NM, which hands the FPU over lazily.
/// (On every switch: the raw register is tested and flipped, without the
/// bit-set type's masking.)
#[inline(always)]
pub fn set_fpu_trap(trap: bool) {
    const TS: u64 = Cr0::CR0_TASK_SWITCHED.bits() as u64;
    let cr0: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack, preserves_flags)) };
    if (cr0 & TS != 0) != trap {
        // SAFETY: toggling CR0.TS only changes whether FPU use traps.
        unsafe { asm!("mov cr0, {}", in(reg) cr0 ^ TS, options(nostack, preserves_flags)) };
    }
}

/// Saves this CPU's FPU/SSE state into the 512-byte area at `phys`.
pub fn save_fpu(guard: &mut KernelGuard, phys: u64) {
    let area = objmem::object::<FpuArea>(guard, phys);
    // SAFETY: the area is 512 bytes, 16-byte aligned (FpuArea), and writable.
    unsafe { asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack)) };
}

/// Saves this CPU's FPU/SSE registers into the 512-byte area at direct-map
/// address `area`, on behalf of the CPU that holds the kernel lock and asked
/// for it (`PerCpu::save_fpu_remotely`): the area belongs to the thread or
/// guest whose state these registers hold, and the asking CPU, spinning
/// with the lock held until this returns, keeps that object alive and
/// touches the area only afterwards. CR0.TS is cleared for the save (FXSAVE
/// would raise #NM) and put back as it was.
pub fn save_fpu_for_lock_holder(area: u64) {
    let cr0 = cpu::read_cr0();
    if cr0.contains(Cr0::CR0_TASK_SWITCHED) {
        set_fpu_trap(false);
    }
    // SAFETY: `area` is a 512-byte, 16-byte aligned FPU area in the direct
    // map (an `FpuArea` of a live TCB or Vcpu, as the asking CPU computed
    // under the kernel lock it still holds, so nothing else accesses it).
    unsafe { asm!("fxsave64 [{}]", in(reg) area, options(nostack)) };
    if cr0.contains(Cr0::CR0_TASK_SWITCHED) {
        set_fpu_trap(true);
    }
}

/// Loads the FPU/SSE state from the area at `phys`.
pub fn restore_fpu(guard: &mut KernelGuard, phys: u64) {
    let area = objmem::object::<FpuArea>(guard, phys);
    sanitize_fpu(area);
    // SAFETY: the area is 512 bytes and 16-byte aligned; its MXCSR was masked
    // to valid bits so FXRSTOR cannot fault.
    unsafe { asm!("fxrstor64 [{}]", in(reg) area.0.as_ptr(), options(nostack)) };
}

/// Writes the initial FPU state (FCW 0x37F, MXCSR 0x1F80) into the area at `phys`.
pub fn init_fpu(guard: &mut KernelGuard, phys: u64) {
    let area = objmem::object::<FpuArea>(guard, phys);
    area.0 = [0; FPU_STATE_BYTES];
    area.0[0..2].copy_from_slice(&0x37Fu16.to_le_bytes());
    area.0[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
}

fn sanitize_fpu(area: &mut FpuArea) {
    let mxcsr = u32::from_le_bytes([area.0[24], area.0[25], area.0[26], area.0[27]]) & 0xFFFF;
    area.0[24..28].copy_from_slice(&mxcsr.to_le_bytes());
}

/// The FXSAVE area.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FpuArea(pub [u8; FPU_STATE_BYTES]);
impl objmem::KernelObject for FpuArea {}

/// Syscall entry (from user.S), on the kernel stack; the frame is in the TCB.
#[no_mangle]
extern "C" fn syscall_from_user() -> ! {
    percpu::current().set_in_user(false);
    let guard = lock::acquire();
    crate::syscall::handle(guard)
}

/// The entry of `Call` (user.S tested the number), with its capability
/// pointer and message info as user mode passed them (`rdi`, `rsi`, also
/// saved in the frame): the IPC fastpath, or the general path.
#[no_mangle]
extern "C" fn fastpath_call_from_user(cptr: u64, info: u64) -> ! {
    percpu::current().set_in_user(false);
    let guard = lock::acquire();
    crate::fastpath::call_entry(guard, cptr, info)
}

/// The entry of `ReplyRecv`, as [`fastpath_call_from_user`].
#[no_mangle]
extern "C" fn fastpath_reply_recv_from_user(cptr: u64, info: u64) -> ! {
    percpu::current().set_in_user(false);
    let guard = lock::acquire();
    crate::fastpath::reply_recv_entry(guard, cptr, info)
}

/// The entry of `Yield` (user.S tested the number).
#[no_mangle]
extern "C" fn yield_from_user() -> ! {
    percpu::current().set_in_user(false);
    let guard = lock::acquire();
    crate::syscall::yield_entry(guard)
}

// user.S tests these numbers.
const _: () = assert!(
    tarn_ipc_schema::Syscall::Call as u64 == 3
        && tarn_ipc_schema::Syscall::ReplyRecv as u64 == 7
        && tarn_ipc_schema::Syscall::Yield as u64 == 11
);

/// Interrupt or exception from user mode (from entry.S).
#[no_mangle]
extern "C" fn trap_from_user(frame: u64) -> ! {
    let here = percpu::current();
    here.set_in_user(false);
    // SAFETY: entry.S passes the frame it just pushed (in the current TCB);
    // nothing else references it until the lock is taken below.
    let (vector, error_code) = unsafe {
        let f = &*(frame as *const TrapFrame);
        (f.vector, f.error_code)
    };
    let cr2 = cpu::read_cr2();
    super::trap::acknowledge_interrupt(vector);
    let guard = lock::acquire();
    crate::syscall::handle_trap(guard, vector, error_code, cr2)
}
