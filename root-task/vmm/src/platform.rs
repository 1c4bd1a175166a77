//! The emulated platform and the exit policy. [`Platform::handle`] takes one
//! normalised exit and the guest's register file, emulates what the guest
//! asked for (completing the instruction by moving RIP past it) and says
//! what the VMM does next ([`Action`]).
//!
//! Devices: a 16550 UART on 0x3F8 (transmit only; each complete line becomes
//! one console line), an 8254 PIT (channel 0, periodic), an 8259 PIC pair
//! (initialisation words, mask, EOI; IRQ0 goes to the vector base the guest
//! programmed). Port 0x510 is a no-op port for the exit benchmark. Any other
//! port reads all ones and ignores writes; unknown MSRs read 0 and ignore
//! writes. Each such access is reported once, with its address.
//!
//! Misbehaviour stops the guest with a [`StopReason`]: a triple fault, an
//! access outside its memory, a state the hardware refuses, an instruction
//! guests may not use, or an exit storm (more than [`STORM_EXITS`] exits in
//! [`STORM_WINDOW_NS`]).

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use crate::devices::PIT_HZ;
use crate::devices::{Pics, Pit, Rtc, Uart, I8042};
use tarn_ipc_schema::vcpu::{access, io, Exit, Reg, REGISTER_COUNT};
use x86::bits64::rflags::RFlags;
use x86::msr;

/// The register file.
pub type Registers = [u64; REGISTER_COUNT];

/// Exits in one [`STORM_WINDOW_NS`] above which a guest is stopped.
pub const STORM_EXITS: u64 = 1000;
/// The exit-storm window.
pub const STORM_WINDOW_NS: u64 = 1_000_000_000;
/// The port the benchmark guest writes (handled as a no-op).
pub const NULL_PORT: u64 = 0x510;
/// Hypercall: progress report (RBX = count).
pub const HC_PROGRESS: u64 = 1;
/// Hypercall: benchmark result (RBX = TSC ticks, RCX = rounds).
pub const HC_BENCH: u64 = 2;

const UART_BASE: u64 = 0x3F8;
const RFLAGS_IF: u64 = RFlags::FLAGS_IF.bits();
const MSR_EFER: u64 = msr::IA32_EFER as u64;
const MSR_PAT: u64 = msr::IA32_PAT as u64;

/// Why a guest was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// HLT with interrupts off (or with no interrupt source): the guest is done.
    Halted,
    /// A triple fault.
    TripleFault,
    /// The guest pulsed the reset line (i8042 command 0xFE).
    Reset,
    /// Too many exits in too little time.
    ExitStorm {
        /// Exits counted in the window.
        exits: u64,
    },
    /// An access to guest-physical memory it does not have.
    OutsideMemory {
        /// The address.
        address: u64,
        /// `tarn_ipc_schema::vcpu::access` bits.
        access: u64,
    },
    /// The hardware refused the guest state.
    InvalidState {
        /// The backend's raw reason.
        raw: u64,
    },
    /// An exception the VMM intercepted.
    Exception {
        /// Vector.
        vector: u64,
    },
    /// An instruction guests may not use.
    Unsupported {
        /// The backend's raw exit code.
        raw: u64,
    },
    /// An exit kind this VMM does not know.
    UnknownExit {
        /// The raw kind.
        kind: u64,
    },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StopReason::Halted => f.write_str("halted"),
            StopReason::TripleFault => f.write_str("triple fault"),
            StopReason::Reset => f.write_str("reset (i8042)"),
            StopReason::ExitStorm { exits } => {
                write!(
                    f,
                    "exit storm ({exits} exits in {} ms)",
                    STORM_WINDOW_NS / 1_000_000
                )
            }
            StopReason::OutsideMemory { address, access: a } => {
                let what = if a & access::EXECUTE != 0 {
                    "fetch"
                } else if a & access::WRITE != 0 {
                    "write"
                } else {
                    "read"
                };
                write!(f, "access outside its memory ({what} at {address:#x})")
            }
            StopReason::InvalidState { raw } => write!(f, "invalid guest state ({raw:#x})"),
            StopReason::Exception { vector } => write!(f, "exception {vector}"),
            StopReason::Unsupported { raw } => write!(f, "unsupported instruction (exit {raw:#x})"),
            StopReason::UnknownExit { kind } => write!(f, "unknown exit kind {kind}"),
        }
    }
}

/// The label of the message a domain's VMM sends its fault endpoint when
/// its guest has ended (MR0, MR1: [`StopReason::encode`]): the pool
/// manager then destroys the domain, as xl's `on_poweroff`, `on_reboot`
/// and `on_crash` default (`destroy`).
pub const VM_ENDED_LABEL: u64 = 0x7E01;

impl StopReason {
    /// The reason as two words (kind, detail) for [`VM_ENDED_LABEL`].
    pub fn encode(&self) -> (u64, u64) {
        match *self {
            StopReason::Halted => (1, 0),
            StopReason::Reset => (2, 0),
            StopReason::TripleFault => (3, 0),
            StopReason::ExitStorm { exits } => (4, exits),
            StopReason::OutsideMemory { address, access } => (5, address | (access & 7) << 60),
            StopReason::InvalidState { raw } => (6, raw),
            StopReason::Exception { vector } => (7, vector),
            StopReason::Unsupported { raw } => (8, raw),
            StopReason::UnknownExit { kind } => (9, kind),
        }
    }

    /// The reason [`Self::encode`] gave (`None`: not one).
    pub fn decode(kind: u64, detail: u64) -> Option<StopReason> {
        Some(match kind {
            1 => StopReason::Halted,
            2 => StopReason::Reset,
            3 => StopReason::TripleFault,
            4 => StopReason::ExitStorm { exits: detail },
            5 => StopReason::OutsideMemory {
                address: detail & ((1 << 60) - 1),
                access: detail >> 60,
            },
            6 => StopReason::InvalidState { raw: detail },
            7 => StopReason::Exception { vector: detail },
            8 => StopReason::Unsupported { raw: detail },
            9 => StopReason::UnknownExit { kind: detail },
            _ => return None,
        })
    }

    /// What ended the guest, in xl's terms: `poweroff` (a halt with
    /// interrupts off, how Linux's `poweroff` ends without ACPI), `reboot`
    /// (the i8042 reset line, or a triple fault, how `reboot` ends), or
    /// `crash` (anything the VMM stopped it for).
    pub fn xl_event(&self) -> &'static str {
        match self {
            StopReason::Halted => "poweroff",
            StopReason::Reset | StopReason::TripleFault => "reboot",
            _ => "crash",
        }
    }
}

/// What the VMM does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the guest again.
    Continue,
    /// The guest waits for an interrupt: sleep until the timer is due.
    WaitForInterrupt,
    /// Stop the guest.
    Stop(StopReason),
}

/// One guest's devices and bookkeeping.
#[derive(Clone, Debug)]
pub struct Platform {
    /// The 16550A on 0x3F8 (IRQ 4).
    pub uart: Uart,
    pit: Pit,
    pics: Pics,
    rtc: Rtc,
    i8042: I8042,
    pat: u64,
    reported: BTreeSet<(u8, u64)>,
    notes: Vec<String>,
    lines: Vec<String>,
    window_start_ns: u64,
    /// Exits in the current window the VMM could not serve.
    window_exits: u64,
    /// The exit being handled was not served (unknown port, MSR, ...).
    unserved: bool,
    /// The last progress count the guest reported (hypercall 1).
    pub progress: u64,
    /// Progress reports received.
    pub progress_reports: u64,
    /// The benchmark result (hypercall 2): (TSC ticks, rounds).
    pub bench: Option<(u64, u64)>,
    /// Exits handled.
    pub exits: u64,
    /// Timer interrupts delivered.
    pub ticks_delivered: u64,
}

impl Default for Platform {
    fn default() -> Self {
        Platform::new()
    }
}

impl Platform {
    /// A platform after reset: PIC vectors from 8, nothing masked, no timer.
    pub fn new() -> Self {
        Platform {
            uart: Uart::default(),
            pit: Pit::default(),
            pics: Pics::default(),
            rtc: Rtc::default(),
            i8042: I8042::default(),
            pat: 0x0007_0406_0007_0406,
            reported: BTreeSet::new(),
            notes: Vec::new(),
            lines: Vec::new(),
            window_start_ns: 0,
            window_exits: 0,
            unserved: false,
            progress: 0,
            progress_reports: 0,
            bench: None,
            exits: 0,
            ticks_delivered: 0,
        }
    }

    /// Lines the guest printed since the last call.
    pub fn take_lines(&mut self) -> Vec<String> {
        let mut lines = core::mem::take(&mut self.lines);
        lines.append(&mut self.uart.lines);
        lines
    }

    /// One-time reports (unhandled ports and MSRs) since the last call.
    pub fn take_notes(&mut self) -> Vec<String> {
        core::mem::take(&mut self.notes)
    }

    /// When the next timer interrupt is due (ns), if the timer runs.
    pub fn next_tick_ns(&self) -> Option<u64> {
        self.pit.next_event_ns()
    }

    /// Brings the timer to `now_ns` (raising IRQ 0 when due) and the UART's
    /// line into the PIC.
    pub fn advance(&mut self, now_ns: u64) {
        if self.pit.advance(now_ns) {
            self.pics.raise(0);
        }
        self.pics.set_level(4, self.uart.irq());
    }

    /// Whether an interrupt waits for the guest (after [`Self::advance`]).
    pub fn interrupt_pending(&self) -> bool {
        self.pics.pending()
    }

    /// The vector of the next interrupt to inject, acknowledged at the PIC
    /// (in service until the guest's EOI). The caller hands it to the
    /// kernel, which delivers it once the guest can take it.
    pub fn take_interrupt(&mut self) -> Option<u8> {
        let vector = self.pics.take()?;
        if vector == self.pics.master.vector_base {
            self.ticks_delivered += 1;
        }
        Some(vector)
    }

    /// [`Self::advance`] then [`Self::take_interrupt`]; nothing to do (no
    /// timer armed, nothing requested, the UART quiet) is the fast case.
    #[inline]
    pub fn take_due_interrupt(&mut self, now_ns: u64) -> Option<u8> {
        if self.pit.next_event_ns().is_none() && self.pics.master.irr == 0 && !self.uart.irq() {
            return None;
        }
        self.advance(now_ns);
        self.take_interrupt()
    }

    /// Whether the guest printed anything or a note is waiting (the run
    /// loop's fast case is no).
    #[inline]
    pub fn has_output(&self) -> bool {
        !(self.uart.output.is_empty()
            && self.uart.lines.is_empty()
            && self.lines.is_empty()
            && self.notes.is_empty())
    }

    /// Bytes the guest sent to its UART since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.uart.output)
    }

    fn note_once(&mut self, class: u8, address: u64, text: impl FnOnce() -> String) {
        self.unserved = true;
        if self.reported.insert((class, address)) {
            self.notes.push(text());
        }
    }

    /// Handles one exit at time `now_ns`, updating `registers`.
    #[inline]
    pub fn handle(
        &mut self,
        kind_raw: u64,
        fields: [u64; 4],
        next_rip: u64,
        registers: &mut Registers,
        now_ns: u64,
    ) -> Action {
        self.exits += 1;
        self.unserved = false;
        let action = self.dispatch(kind_raw, fields, next_rip, registers, now_ns);
        // Only exits the VMM could not serve count towards a storm: a busy
        // guest using its devices is the scheduler's business, not a fault.
        if self.unserved {
            if now_ns.saturating_sub(self.window_start_ns) >= STORM_WINDOW_NS {
                self.window_start_ns = now_ns;
                self.window_exits = 0;
            }
            self.window_exits += 1;
            if self.window_exits > STORM_EXITS {
                return Action::Stop(StopReason::ExitStorm {
                    exits: self.window_exits,
                });
            }
        }
        if core::mem::take(&mut self.i8042.reset) {
            return Action::Stop(StopReason::Reset);
        }
        action
    }

    /// The registers [`Self::handle`] may change for an exit of kind
    /// `kind_raw` (bit `r` = `Reg` `r`): the only ones the run loop loads
    /// back into the guest (`VcpuRun`'s load mask). Every other kind, and
    /// any kind `dispatch` learns to change more for, gives all of them.
    #[inline]
    pub fn changed_registers(kind_raw: u64) -> u32 {
        const fn bits(regs: &[Reg]) -> u32 {
            let mut mask = 0;
            let mut i = 0;
            while i < regs.len() {
                mask |= 1 << regs[i] as u32;
                i += 1;
            }
            mask
        }
        const ALL: u32 = (1 << REGISTER_COUNT) - 1;
        const IO: u32 = bits(&[Reg::Rax, Reg::Rip]);
        const CPUID: u32 = bits(&[Reg::Rax, Reg::Rbx, Reg::Rcx, Reg::Rdx, Reg::Rip]);
        const RIP: u32 = bits(&[Reg::Rip]);
        // Indexed by the raw kind (one bounds test and a load: the run
        // loop asks at every exit).
        const MASKS: [u32; Exit::Unsupported as usize + 1] = {
            let mut masks = [ALL; Exit::Unsupported as usize + 1];
            masks[Exit::Io as usize] = IO;
            masks[Exit::Hypercall as usize] = IO;
            masks[Exit::Cpuid as usize] = CPUID;
            masks[Exit::Hlt as usize] = RIP;
            masks[Exit::InterruptWindow as usize] = 0;
            masks[Exit::Timeout as usize] = 0;
            masks
        };
        match usize::try_from(kind_raw) {
            Ok(kind) if kind < MASKS.len() => MASKS[kind],
            _ => ALL,
        }
    }

    #[inline(always)]
    fn dispatch(
        &mut self,
        kind_raw: u64,
        fields: [u64; 4],
        next_rip: u64,
        registers: &mut Registers,
        now_ns: u64,
    ) -> Action {
        let Some(kind) = Exit::from_u64(kind_raw) else {
            return Action::Stop(StopReason::UnknownExit { kind: kind_raw });
        };
        let complete = |registers: &mut Registers| registers[Reg::Rip as usize] = next_rip;
        match kind {
            Exit::Io => {
                self.io(fields, registers, now_ns);
                complete(registers);
                Action::Continue
            }
            Exit::Cpuid => {
                let [a, b, c, d] = cpuid(fields[0] as u32, fields[1] as u32);
                registers[Reg::Rax as usize] = u64::from(a);
                registers[Reg::Rbx as usize] = u64::from(b);
                registers[Reg::Rcx as usize] = u64::from(c);
                registers[Reg::Rdx as usize] = u64::from(d);
                complete(registers);
                Action::Continue
            }
            Exit::Rdmsr => {
                let value = self.rdmsr(fields[0], registers);
                registers[Reg::Rax as usize] = value & 0xFFFF_FFFF;
                registers[Reg::Rdx as usize] = value >> 32;
                complete(registers);
                Action::Continue
            }
            Exit::Wrmsr => {
                self.wrmsr(fields[0], fields[1], registers);
                complete(registers);
                Action::Continue
            }
            Exit::Hlt => {
                complete(registers);
                // Halted for good: interrupts off, or nothing that could
                // raise one (no timer armed, no receive interrupt).
                let wakeable = self.pit.next_event_ns().is_some() || self.uart.rx_interrupt();
                if registers[Reg::Rflags as usize] & RFLAGS_IF == 0 || !wakeable {
                    Action::Stop(StopReason::Halted)
                } else {
                    Action::WaitForInterrupt
                }
            }
            Exit::Hypercall => {
                let (rbx, rcx) = (registers[Reg::Rbx as usize], registers[Reg::Rcx as usize]);
                let result = match registers[Reg::Rax as usize] {
                    HC_PROGRESS => {
                        self.progress = rbx;
                        self.progress_reports += 1;
                        0
                    }
                    HC_BENCH => {
                        self.bench = Some((rbx, rcx));
                        0
                    }
                    other => {
                        self.note_once(2, other, || format!("unknown hypercall {other}"));
                        u64::MAX
                    }
                };
                registers[Reg::Rax as usize] = result;
                complete(registers);
                Action::Continue
            }
            Exit::MemoryFault => Action::Stop(StopReason::OutsideMemory {
                address: fields[0],
                access: fields[1],
            }),
            Exit::Shutdown => Action::Stop(StopReason::TripleFault),
            Exit::InvalidState => Action::Stop(StopReason::InvalidState { raw: fields[0] }),
            Exit::Exception => Action::Stop(StopReason::Exception { vector: fields[0] }),
            Exit::Unsupported => Action::Stop(StopReason::Unsupported { raw: fields[0] }),
            Exit::InterruptWindow | Exit::Timeout => Action::Continue,
        }
    }

    // (Inlined into the run loop with `handle`: out of line, its call,
    // frame and copied fields cost the exit round trip 24 steps, 823 to 799.)
    #[inline(always)]
    fn io(&mut self, fields: [u64; 4], registers: &mut Registers, now_ns: u64) {
        let [port, size, flags, value] = fields;
        let input = flags & io::IN != 0;
        if flags & io::STRING != 0 {
            self.note_once(0, port, || {
                format!("unhandled string I/O on port {port:#x} (skipped)")
            });
            return;
        }
        let result = match port {
            // The no-op port early: its exits measure the exit path itself
            // (`vmexit_io_roundtrip_insns`), not the device lookup. (The
            // compiler still tests 0x20-0x21 and 0x60-0xA1 first; the UART
            // and PIT ports pay one more comparison.)
            NULL_PORT => Some(0),
            UART_BASE..=0x3FF => Some(u64::from(self.uart.access(
                port - UART_BASE,
                input,
                value as u8,
            ))),
            0x40..=0x43 | 0x61 => {
                Some(u64::from(self.pit.access(port, input, value as u8, now_ns)))
            }
            0x20 | 0x21 | 0xA0 | 0xA1 => {
                Some(u64::from(self.pics.access(port, input, value as u8)))
            }
            0x70 | 0x71 => Some(u64::from(self.rtc.access(port, input, value as u8, now_ns))),
            0x60 | 0x64 => Some(u64::from(self.i8042.access(port, input, value as u8))),
            _ => None,
        };
        let read = match result {
            Some(read) => read,
            None => {
                let direction = if input { "in" } else { "out" };
                self.note_once(0, port, || {
                    format!("unhandled I/O port {port:#x} ({direction})")
                });
                u64::MAX
            }
        };
        if input {
            let mask = (1u64 << (8 * size.min(4))) - 1;
            let rax = &mut registers[Reg::Rax as usize];
            *rax = (*rax & !mask) | (read & mask);
        }
    }

    fn rdmsr(&mut self, msr: u64, registers: &Registers) -> u64 {
        match msr {
            MSR_EFER => registers[Reg::Efer as usize],
            MSR_PAT => self.pat,
            _ => {
                self.note_once(1, msr, || format!("unhandled rdmsr {msr:#x} (reads 0)"));
                0
            }
        }
    }

    fn wrmsr(&mut self, msr: u64, value: u64, registers: &mut Registers) {
        match msr {
            MSR_EFER => registers[Reg::Efer as usize] = value,
            MSR_PAT => self.pat = value,
            _ => self.note_once(1, msr, || format!("unhandled wrmsr {msr:#x} (ignored)")),
        }
    }
}

/// The CPUID the guests see: a family-6 CPU with FPU, PSE, TSC, MSR, PAE, CX8,
/// PGE, CMOV, PAT, FXSR, SSE, SSE2, long mode, NX and SYSCALL, marked as
/// running under a hypervisor ("TarnTarnTarn"); no APIC, no XSAVE, no
/// virtualization extensions.
pub fn cpuid(leaf: u32, _subleaf: u32) -> [u32; 4] {
    const VENDOR: [u32; 3] = [
        u32::from_le_bytes(*b"Tarn"),
        u32::from_le_bytes(*b"Tarn"),
        u32::from_le_bytes(*b"Tarn"),
    ];
    match leaf {
        0 => [1, VENDOR[0], VENDOR[2], VENDOR[1]],
        1 => {
            let edx = 1 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 8 | 1 << 13 | 1 << 15 | 1 << 16;
            let edx = edx | 1 << 24 | 1 << 25 | 1 << 26;
            [0x0000_0600, 0, 1 << 31, edx]
        }
        0x4000_0000 => [0x4000_0000, VENDOR[0], VENDOR[1], VENDOR[2]],
        0x8000_0000 => [0x8000_0001, 0, 0, 0],
        0x8000_0001 => [0, 0, 0, 1 << 29 | 1 << 20 | 1 << 11],
        _ => [0; 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `handle` changes no register outside `changed_registers` for the
    /// exit kinds that name fewer than all of them (the run loop loads only
    /// those back: a change outside the mask would be lost).
    #[test]
    fn handle_changes_only_the_named_registers() {
        let all: u32 = (1 << REGISTER_COUNT) - 1;
        let exits: [(Exit, [u64; 4]); 12] = [
            (Exit::Io, io(0x3F8, 1, false, b'x' as u64)),
            (Exit::Io, io(0x3FD, 1, true, 0)),
            (Exit::Io, io(0x40, 1, true, 0)),
            (Exit::Io, io(0x21, 1, true, 0)),
            (Exit::Io, io(0x71, 1, true, 0)),
            (Exit::Io, io(0x64, 1, true, 0)),
            (Exit::Io, io(0x1234, 4, true, 0)),
            (Exit::Io, [0x3F8, 1, io::STRING | io::IN, 0]),
            (Exit::Cpuid, [1, 0, 0, 0]),
            (Exit::Hlt, [0; 4]),
            (Exit::Hypercall, [0; 4]),
            (Exit::Timeout, [0; 4]),
        ];
        for (kind, fields) in exits {
            let mask = Platform::changed_registers(kind as u64);
            assert_ne!(mask, all, "{kind:?} names fewer registers");
            let mut platform = Platform::new();
            let before: Registers = core::array::from_fn(|r| 0x1111_0000_0000_0000 + r as u64);
            let mut after = before;
            platform.handle(kind as u64, fields, 0x7777, &mut after, 0);
            for r in 0..REGISTER_COUNT {
                if mask & (1 << r) == 0 {
                    assert_eq!(
                        after[r], before[r],
                        "{kind:?} {fields:?} changed register {r}"
                    );
                }
            }
        }
        assert_eq!(Platform::changed_registers(Exit::Wrmsr as u64), all);
        assert_eq!(Platform::changed_registers(0xFFFF), all);
    }

    /// The CPUID policy, decoded by the `x86` crate's CPUID reader
    /// (raw-cpuid), is the CPU `cpuid`'s documentation promises. The
    /// policy builds register words, which the crate's flag types (private,
    /// decode-only) cannot, so its bits are written out there and checked
    /// here by name.
    #[test]
    fn cpuid_policy_decodes_as_documented() {
        use x86::cpuid::{CpuId, CpuIdResult, Hypervisor};
        fn leaf(eax: u32, ecx: u32) -> CpuIdResult {
            let [eax, ebx, ecx, edx] = cpuid(eax, ecx);
            CpuIdResult { eax, ebx, ecx, edx }
        }
        let cpu = CpuId::with_cpuid_fn(leaf);
        assert_eq!(cpu.get_vendor_info().unwrap().as_str(), "TarnTarnTarn");
        let f = cpu.get_feature_info().unwrap();
        assert_eq!(f.family_id(), 6);
        let wanted = [
            f.has_fpu(),
            f.has_pse(),
            f.has_tsc(),
            f.has_msr(),
            f.has_pae(),
            f.has_cmpxchg8b(),
            f.has_pge(),
            f.has_cmov(),
            f.has_pat(),
            f.has_fxsave_fxstor(),
            f.has_sse(),
            f.has_sse2(),
            f.has_hypervisor(),
        ];
        assert!(wanted.iter().all(|&has| has), "{wanted:?}");
        assert!(!f.has_apic() && !f.has_x2apic() && !f.has_xsave() && !f.has_vmx());
        let hv = cpu.get_hypervisor_info().unwrap();
        assert!(matches!(hv.identify(), Hypervisor::Unknown(..)));
        assert_eq!(leaf(0x4000_0000, 0).ebx, u32::from_le_bytes(*b"Tarn"));
        let ext = cpu
            .get_extended_processor_and_feature_identifiers()
            .unwrap();
        assert!(ext.has_64bit_mode() && ext.has_execute_disable() && ext.has_syscall_sysret());
        assert!(!ext.has_svm());
        assert!(cpu.get_svm_info().is_none());
    }

    fn io(port: u64, size: u64, input: bool, value: u64) -> [u64; 4] {
        [port, size, if input { io::IN } else { 0 }, value]
    }

    #[test]
    fn uart_lines_and_rip_advance() {
        let mut p = Platform::new();
        let mut r = [0u64; REGISTER_COUNT];
        for (i, byte) in b"hi\n".iter().enumerate() {
            let action = p.handle(
                Exit::Io as u64,
                io(0x3F8, 1, false, u64::from(*byte)),
                10 + i as u64,
                &mut r,
                0,
            );
            assert_eq!(action, Action::Continue);
            assert_eq!(r[Reg::Rip as usize], 10 + i as u64);
        }
        assert_eq!(p.take_lines(), ["hi"]);
        r[Reg::Rax as usize] = 0x1234_5600;
        p.handle(Exit::Io as u64, io(0x3FD, 1, true, 0), 0, &mut r, 0);
        assert_eq!(r[Reg::Rax as usize], 0x1234_5660, "LSR read into AL only");
    }

    #[test]
    fn unhandled_port_is_reported_once_and_reads_ones() {
        let mut p = Platform::new();
        let mut r = [0u64; REGISTER_COUNT];
        p.handle(Exit::Io as u64, io(0x80, 2, true, 0), 0, &mut r, 0);
        assert_eq!(r[Reg::Rax as usize], 0xFFFF);
        p.handle(Exit::Io as u64, io(0x80, 1, false, 0), 0, &mut r, 0);
        assert_eq!(p.take_notes(), ["unhandled I/O port 0x80 (in)"]);
    }

    #[test]
    fn pit_and_pic_deliver_irq0_at_the_programmed_base() {
        let mut p = Platform::new();
        let mut r = [0u64; REGISTER_COUNT];
        r[Reg::Rflags as usize] = RFLAGS_IF;
        for (port, value) in [
            (0x20, 0x11),
            (0x21, 0x20),
            (0x21, 4),
            (0x21, 1),
            (0x21, 0xFE),
        ] {
            p.handle(Exit::Io as u64, io(port, 1, false, value), 0, &mut r, 0);
        }
        for (port, value) in [(0x43, 0x34), (0x40, 11932 & 0xFF), (0x40, 11932 >> 8)] {
            p.handle(Exit::Io as u64, io(port, 1, false, value), 0, &mut r, 0);
        }
        let due = p.next_tick_ns().expect("timer runs");
        assert!((9_990_000..10_010_000).contains(&due), "{due}");
        assert_eq!(p.take_due_interrupt(due - 1), None);
        assert_eq!(p.take_due_interrupt(due), Some(0x20));
        assert_eq!(p.next_tick_ns(), Some(2 * due));
        assert_eq!(
            p.handle(Exit::Hlt as u64, [0; 4], 5, &mut r, 0),
            Action::WaitForInterrupt
        );
        // Masking IRQ0 stops delivery.
        p.handle(Exit::Io as u64, io(0x21, 1, false, 0xFF), 0, &mut r, 0);
        assert_eq!(p.take_due_interrupt(10 * due), None);
    }

    #[test]
    fn hlt_with_interrupts_off_stops() {
        let mut p = Platform::new();
        let mut r = [0u64; REGISTER_COUNT];
        assert_eq!(
            p.handle(Exit::Hlt as u64, [0; 4], 1, &mut r, 0),
            Action::Stop(StopReason::Halted)
        );
    }

    #[test]
    fn hostile_exits_stop_with_a_reason() {
        let mut p = Platform::new();
        let mut r = [0u64; REGISTER_COUNT];
        assert_eq!(
            p.handle(Exit::Shutdown as u64, [0; 4], 0, &mut r, 0),
            Action::Stop(StopReason::TripleFault)
        );
        let outside = p.handle(
            Exit::MemoryFault as u64,
            [0x400_0000, access::WRITE, 0, 0],
            0,
            &mut r,
            0,
        );
        assert_eq!(
            format!(
                "{}",
                match outside {
                    Action::Stop(s) => s,
                    _ => panic!(),
                }
            ),
            "access outside its memory (write at 0x4000000)"
        );
        let mut storm = Platform::new();
        let mut stopped = None;
        for i in 0..=STORM_EXITS {
            if let Action::Stop(reason) =
                storm.handle(Exit::Io as u64, io(0x80, 1, false, 0), 0, &mut r, i)
            {
                stopped = Some(reason);
            }
        }
        assert_eq!(
            stopped,
            Some(StopReason::ExitStorm {
                exits: STORM_EXITS + 1
            })
        );
        // Exits the VMM serves never count, however many.
        let mut busy = Platform::new();
        for i in 0..=3 * STORM_EXITS {
            let action = busy.handle(Exit::Io as u64, io(0x3F8, 1, false, 0x41), 0, &mut r, i);
            assert_eq!(action, Action::Continue);
        }
        // Spread over time, the same number of exits is fine.
        let mut calm = Platform::new();
        for i in 0..=STORM_EXITS {
            let action = calm.handle(
                Exit::Io as u64,
                io(0x80, 1, false, 0),
                0,
                &mut r,
                i * STORM_WINDOW_NS / 100,
            );
            assert_eq!(action, Action::Continue);
        }
    }

    #[test]
    fn stop_reasons_travel_as_two_words() {
        let all = [
            StopReason::Halted,
            StopReason::Reset,
            StopReason::TripleFault,
            StopReason::ExitStorm { exits: 1001 },
            StopReason::OutsideMemory {
                address: 0x400_0000,
                access: access::WRITE,
            },
            StopReason::InvalidState { raw: 33 },
            StopReason::Exception { vector: 13 },
            StopReason::Unsupported { raw: 0x7C },
            StopReason::UnknownExit { kind: 99 },
        ];
        for reason in all {
            let (kind, detail) = reason.encode();
            assert_eq!(StopReason::decode(kind, detail), Some(reason));
        }
        assert_eq!(StopReason::decode(0, 0), None);
        assert_eq!(StopReason::decode(77, 0), None);
        assert_eq!(StopReason::Halted.xl_event(), "poweroff");
        assert_eq!(StopReason::Reset.xl_event(), "reboot");
        assert_eq!(StopReason::TripleFault.xl_event(), "reboot");
        assert_eq!(StopReason::Exception { vector: 6 }.xl_event(), "crash");
    }

    #[test]
    fn hypercalls_and_cpuid() {
        let mut p = Platform::new();
        let mut r = [0u64; REGISTER_COUNT];
        r[Reg::Rax as usize] = HC_PROGRESS;
        r[Reg::Rbx as usize] = 7;
        p.handle(Exit::Hypercall as u64, [0; 4], 3, &mut r, 0);
        assert_eq!(
            (p.progress, p.progress_reports, r[Reg::Rax as usize]),
            (7, 1, 0)
        );
        r[Reg::Rax as usize] = 1;
        p.handle(Exit::Cpuid as u64, [1, 0, 0, 0], 0, &mut r, 0);
        assert_eq!(r[Reg::Rcx as usize] & (1 << 5), 0, "no VMX for guests");
        assert_ne!(r[Reg::Rcx as usize] & (1 << 31), 0, "hypervisor bit");
    }
}
