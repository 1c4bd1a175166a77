//! The IDT, the saved register frame, and interrupt/exception dispatch.
//! Every exception taken in kernel mode prints a full report (vector, error
//! code, RIP, CR2, CPU, registers) and ends the run with a failure status.

use super::{apic, cpu, gdt};
use core::mem::size_of;
use spin::Once;
use x86::bits64::segmentation::Descriptor64;
use x86::dtables::{lidt, DescriptorTablePointer};
use x86::segmentation::{
    BuildDescriptor, DescriptorBuilder, GateDescriptorBuilder, SegmentSelector,
};
use x86::Ring;

/// Vector of the per-CPU one-shot timer.
pub const VECTOR_TIMER: u8 = 0x20;
/// Vector of the "look at your queue" inter-processor interrupt.
pub const VECTOR_IPI_KICK: u8 = 0x21;
/// Vector of the "flush your TLB" inter-processor interrupt.
pub const VECTOR_IPI_FLUSH: u8 = 0x22;
/// Vector of the spurious-interrupt register (never acknowledged with EOI).
pub const VECTOR_SPURIOUS: u8 = 0xFF;

/// The `vector` of a frame saved by the system-call entry (user.S
/// `SYSCALL_VECTOR`; interrupts and exceptions push theirs, below 256).
pub const SYSCALL_VECTOR: u64 = 0x100;

/// Length of the `syscall` instruction (0F 05): a frame's RIP less this is
/// the instruction that entered the kernel.
pub const SYSCALL_LENGTH: u64 = 2;

/// The registers saved by `trap_common` (entry.S) plus what the CPU pushed.
/// 16-byte aligned: an interrupt from user mode pushes the CPU part below
/// TSS.RSP0 (the end of a thread's frame) after aligning RSP down to 16, so
/// the frame's end must already be aligned or the CPU's frame would land 8
/// bytes below where the kernel reads it.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// The vector number the stub pushed.
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}
const _: () = assert!(size_of::<TrapFrame>() == 22 * 8);

#[repr(C, align(16))]
struct Idt([Descriptor64; 256]);

static IDT: Once<Idt> = Once::new();

extern "C" {
    static vector_stub_table: [u64; 256];
}

/// Builds the IDT (once) and loads it on this CPU.
pub fn load_idt() {
    let idt = IDT.call_once(|| {
        // SAFETY: vector_stub_table is an immutable table emitted by build.rs.
        let stubs = unsafe { &vector_stub_table };
        let mut entries = [Descriptor64::NULL; 256];
        for (vector, entry) in entries.iter_mut().enumerate() {
            let ist = match vector {
                2 => gdt::IST_NMI,
                8 => gdt::IST_DOUBLE_FAULT,
                18 => gdt::IST_MACHINE_CHECK,
                _ => 0,
            };
            // Interrupt gates; the breakpoint is reachable from user mode.
            let dpl = if vector == 3 {
                Ring::Ring3
            } else {
                Ring::Ring0
            };
            *entry = <DescriptorBuilder as GateDescriptorBuilder<u64>>::interrupt_descriptor(
                SegmentSelector::from_raw(gdt::KERNEL_CODE),
                stubs[vector],
            )
            .present()
            .dpl(dpl)
            .ist(ist)
            .finish();
        }
        Idt(entries)
    });
    let pointer = DescriptorTablePointer::new(&idt.0);
    // SAFETY: the IDT is 'static and every entry points at a valid stub.
    unsafe { lidt(&pointer) };
}

const EXCEPTION_NAMES: [(&str, &str); 32] = [
    ("#DE", "divide error"),
    ("#DB", "debug"),
    ("NMI", "non-maskable interrupt"),
    ("#BP", "breakpoint"),
    ("#OF", "overflow"),
    ("#BR", "bound range exceeded"),
    ("#UD", "invalid opcode"),
    ("#NM", "device not available"),
    ("#DF", "double fault"),
    ("#MF", "coprocessor segment overrun"),
    ("#TS", "invalid TSS"),
    ("#NP", "segment not present"),
    ("#SS", "stack-segment fault"),
    ("#GP", "general protection fault"),
    ("#PF", "page fault"),
    ("#15", "reserved"),
    ("#MF", "x87 floating-point error"),
    ("#AC", "alignment check"),
    ("#MC", "machine check"),
    ("#XM", "SIMD floating-point exception"),
    ("#VE", "virtualization exception"),
    ("#CP", "control protection"),
    ("#22", "reserved"),
    ("#23", "reserved"),
    ("#24", "reserved"),
    ("#25", "reserved"),
    ("#26", "reserved"),
    ("#27", "reserved"),
    ("#HV", "hypervisor injection"),
    ("#VC", "VMM communication"),
    ("#SX", "security exception"),
    ("#31", "reserved"),
];

/// Called by `trap_common` with the saved frame (interrupts and exceptions
/// taken in kernel mode: the kernel runs with interrupts off except in the
/// idle loop, so these are idle-time interrupts or kernel bugs).
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    if frame.vector < 32 {
        kernel_exception(frame);
    }
    acknowledge_interrupt(frame.vector);
    if let Some(gsi) = device_line(frame.vector) {
        // An idle CPU (the only kernel code running with interrupts on) does
        // not hold the kernel lock; take it to deliver the interrupt.
        let mut guard = super::lock::acquire();
        crate::devices::on_irq(&mut guard, gsi);
    }
}

/// The device line (GSI) behind `vector`, if it is a device vector.
pub fn device_line(vector: u64) -> Option<u32> {
    let base = u64::from(super::ioapic::VECTOR_BASE);
    (base..base + u64::from(super::ioapic::MAX_LINES))
        .contains(&vector)
        .then(|| (vector - base) as u32)
}

/// The interrupt-controller side of an interrupt: EOI and per-CPU counters.
/// Exceptions (vectors below 32) need nothing here.
pub fn acknowledge_interrupt(vector: u64) {
    let here = crate::arch::percpu::current();
    match vector {
        0..=31 => {}
        v if v == u64::from(VECTOR_TIMER) => {
            apic::eoi();
            super::timer::on_interrupt();
        }
        v if v == u64::from(VECTOR_IPI_KICK) => {
            apic::eoi();
            here.note_kick();
        }
        v if v == u64::from(VECTOR_IPI_FLUSH) => {
            apic::eoi();
            here.serve_remote_requests();
        }
        v if v == u64::from(VECTOR_SPURIOUS) => {}
        v if device_line(v).is_some() => {
            // Masked until the driver acknowledges (level-triggered lines
            // would otherwise fire again at once).
            super::ioapic::set_masked(device_line(v).unwrap_or(0), true);
            apic::eoi();
        }
        v if v < 256 => {
            apic::eoi();
            kwarn!("unexpected interrupt vector {v} on cpu {}", here.index);
        }
        _ => {}
    }
}

/// Reports an exception and ends the run with failure.
fn kernel_exception(frame: &TrapFrame) -> ! {
    let (mnemonic, name) = EXCEPTION_NAMES[frame.vector as usize];
    let cpu = crate::arch::percpu::index_or_boot();
    let cr2 = cpu::read_cr2();
    crate::console::force_write(format_args!(
        "EXCEPTION {mnemonic} {name} (vector {}) on cpu {cpu}, error code {:#x}\n",
        frame.vector, frame.error_code
    ));
    crate::console::force_write(format_args!(
        "  RIP={:#018x} CS={:#x} RFLAGS={:#x} RSP={:#018x} SS={:#x}\n",
        frame.rip, frame.cs, frame.rflags, frame.rsp, frame.ss
    ));
    if frame.vector == 14 {
        let e = frame.error_code;
        crate::console::force_write(format_args!(
            "  CR2={cr2:#018x} ({} {}, {} mode{})\n",
            if e & 2 != 0 {
                "write"
            } else if e & 16 != 0 {
                "instruction fetch"
            } else {
                "read"
            },
            if e & 1 != 0 {
                "protection violation"
            } else {
                "of a not-present page"
            },
            if e & 4 != 0 { "user" } else { "kernel" },
            if e & 8 != 0 { ", reserved bit set" } else { "" },
        ));
    } else {
        crate::console::force_write(format_args!("  CR2={cr2:#018x}\n"));
    }
    crate::console::force_write(format_args!(
        "  RAX={:#018x} RBX={:#018x} RCX={:#018x} RDX={:#018x}\n  RSI={:#018x} RDI={:#018x} RBP={:#018x}\n  R8 ={:#018x} R9 ={:#018x} R10={:#018x} R11={:#018x}\n  R12={:#018x} R13={:#018x} R14={:#018x} R15={:#018x}\n  CR0={:#x} CR3={:#x} CR4={:#x}\n",
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp,
        frame.r8, frame.r9, frame.r10, frame.r11, frame.r12, frame.r13, frame.r14, frame.r15,
        cpu::read_cr0().bits(), cpu::read_cr3(), cpu::read_cr4().bits(),
    ));
    crate::exit(1)
}
