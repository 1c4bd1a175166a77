//! AMD SVM, the hardware half: enabling SVM on a CPU (EFER.SVME, the host
//! save area), the VMCB as a typed view over its page, the I/O and MSR
//! permission maps, and the world switch (svm.S). Every SVM instruction
//! (VMRUN, VMLOAD, VMSAVE, CLGI, STGI) is executed in svm.S only. The
//! policy (what is intercepted, how exits are normalised) lives in
//! `crate::vcpu::svm`. References: AMD APM Vol. 2, chapter 15 and
//! appendix B (VMCB layout).

use super::cpu::{self, msr};
use super::lock::{self, KernelGuard};
use super::objmem::KernelObject;
use super::paging::{kernel_virt_to_phys, phys_to_virt, PAGE_SIZE};
use super::percpu::{self, MAX_CPUS};
use core::sync::atomic::{AtomicU64, Ordering};

/// VM_HSAVE_PA: where VMRUN saves the host state (APM 15.30.4). AMD's SVM
/// MSRs are not among the `x86` crate's (it names Intel's), so Tarn keeps this one.
const VM_HSAVE_PA: u32 = 0xC001_0117;
/// EFER.SVME (the crate names the EFER MSR, not its bits).
pub const EFER_SVME: u64 = 1 << 12;

/// Whether this CPU has SVM with nested paging (CPUID 8000_0001h ECX[2],
/// 8000_000Ah EDX[0]).
pub fn supported() -> bool {
    let cpuid = x86::cpuid::CpuId::new();
    let svm = cpuid
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|f| f.has_svm());
    svm && cpuid.get_svm_info().is_some_and(|s| s.has_nested_paging())
}

/// Every CPU's two host pages, the host save area (VM_HSAVE_PA) and the
/// host VMSAVE area, CPU i's at `2 * i` pages from this physical address:
/// 8 KiB per CPU the machine has, reserved on the boot CPU before the
/// others start ([`reserve_host_areas`]; 0 before).
static HOST_AREAS: AtomicU64 = AtomicU64::new(0);

/// The I/O permission map: every port intercepted (12 KiB, APM 15.10.1).
#[repr(C, align(4096))]
struct IoPermissionMap([u8; 3 * PAGE_SIZE as usize]);
static IOPM: IoPermissionMap = IoPermissionMap([0xFF; 3 * PAGE_SIZE as usize]);

/// The MSR permission map (8 KiB, APM 15.11): every MSR intercepted but
/// those the guest owns ([`cpu::GUEST_OWNED_MSRS`]), which VMLOAD/VMSAVE
/// switch with the rest of its state (svm.S).
#[repr(C, align(4096))]
struct MsrPermissionMap([u8; 2 * PAGE_SIZE as usize]);
static MSRPM: MsrPermissionMap = MsrPermissionMap(msr_permission_map());

/// The permission map's bytes: two bits (read, write) per MSR; MSRs
/// 0..0x2000 from byte 0, 0xC000_0000.. from byte 0x800.
const fn msr_permission_map() -> [u8; 2 * PAGE_SIZE as usize] {
    let mut map = [0xFF; 2 * PAGE_SIZE as usize];
    let mut i = 0;
    while i < cpu::GUEST_OWNED_MSRS.len() {
        let msr = cpu::GUEST_OWNED_MSRS[i];
        let (base, index) = if msr >= 0xC000_0000 {
            (0x800, msr - 0xC000_0000)
        } else {
            (0, msr)
        };
        let byte = base + (index as usize * 2) / 8;
        let shift = (index * 2) % 8;
        map[byte] &= !(3 << shift);
        i += 1;
    }
    map
}

/// Physical address of the all-intercepting I/O permission map.
pub fn iopm_phys() -> u64 {
    kernel_virt_to_phys(&IOPM as *const IoPermissionMap as u64)
}

/// Physical address of the MSR permission map.
pub fn msrpm_phys() -> u64 {
    kernel_virt_to_phys(&MSRPM as *const MsrPermissionMap as u64)
}

fn host_area_phys(cpu: usize, which: usize) -> u64 {
    HOST_AREAS.load(Ordering::Relaxed) + (2 * cpu + which) as u64 * PAGE_SIZE
}

/// Reserves the host pages of `cpus` CPUs (the boot CPU, before it enables
/// SVM); `false` when memory ran out.
pub fn reserve_host_areas(cpus: usize) -> bool {
    let cpus = cpus.clamp(1, MAX_CPUS) as u64;
    match super::frame::alloc_zeroed(2 * cpus) {
        Some(pages) => {
            HOST_AREAS.store(pages, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// Enables SVM on this CPU and gives it its host save area (reserved by
/// [`reserve_host_areas`]).
pub fn init_this_cpu() {
    let index = percpu::current().index as usize;
    // SAFETY: `supported()` was checked by the caller, so EFER.SVME and
    // VM_HSAVE_PA exist; the save area is this CPU's own page-aligned page
    // that nothing else uses.
    unsafe {
        cpu::wrmsr(msr::IA32_EFER, cpu::rdmsr(msr::IA32_EFER) | EFER_SVME);
        cpu::wrmsr(VM_HSAVE_PA, host_area_phys(index, 0));
    }
}

/// A 64-bit word of the VMCB, by its byte offset (APM appendix B). Fields
/// narrower than 64 bits share a word; their position in it is noted.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmcbWord {
    // Control area (table B-1).
    /// Exception intercepts (bits 0..32), first misc vector (32..64: INTR,
    /// NMI, ..., CPUID 50, HLT 56, IOIO 59, MSR 60, SHUTDOWN 63).
    InterceptExceptionsMisc1 = 0x008,
    /// Second misc vector (bits 0..32: VMRUN 0, VMMCALL 1, ...).
    InterceptMisc2 = 0x010,
    /// Physical base of the I/O permission map.
    IopmBase = 0x040,
    /// Physical base of the MSR permission map.
    MsrpmBase = 0x048,
    /// Guest ASID (bits 0..32), TLB control (32..40).
    AsidTlbControl = 0x058,
    /// V_TPR, V_IRQ (bit 8), V_IGN_TPR (20), V_INTR_MASKING (24); the
    /// virtual interrupt vector in bits 32..40.
    InterruptControl = 0x060,
    /// The exit code.
    ExitCode = 0x070,
    /// Exit information 1.
    ExitInfo1 = 0x078,
    /// Exit information 2.
    ExitInfo2 = 0x080,
    /// An event whose delivery the exit interrupted (bit 31 valid).
    ExitInterruptInfo = 0x088,
    /// Nested paging enable (bit 0).
    NestedControl = 0x090,
    /// The event to inject on VMRUN (bit 31 valid).
    EventInjection = 0x0A8,
    /// The nested page tables' root.
    NestedCr3 = 0x0B0,
    /// Which state is unchanged since the last VMRUN (0: reload all).
    CleanBits = 0x0C0,
    /// The next RIP (with nRIP save; 0 otherwise).
    NextRip = 0x0C8,
    // State save area (table B-2). A segment is two words: selector
    // (bits 0..16), attributes (16..32), limit (32..64); then the base.
    /// ES.
    Es = 0x400,
    /// CS.
    Cs = 0x410,
    /// SS.
    Ss = 0x420,
    /// DS.
    Ds = 0x430,
    /// FS.
    Fs = 0x440,
    /// GS.
    Gs = 0x450,
    /// GDTR (limit and base only).
    Gdtr = 0x460,
    /// LDTR.
    Ldtr = 0x470,
    /// IDTR (limit and base only).
    Idtr = 0x480,
    /// TR.
    Tr = 0x490,
    /// EFER.
    Efer = 0x4D0,
    /// CR4.
    Cr4 = 0x548,
    /// CR3.
    Cr3 = 0x550,
    /// CR0.
    Cr0 = 0x558,
    /// DR7.
    Dr7 = 0x560,
    /// DR6.
    Dr6 = 0x568,
    /// RFLAGS.
    Rflags = 0x570,
    /// RIP.
    Rip = 0x578,
    /// RSP.
    Rsp = 0x5D8,
    /// RAX.
    Rax = 0x5F8,
    /// CR2.
    Cr2 = 0x640,
    /// The guest PAT.
    GuestPat = 0x668,
}

/// A VMCB: one page the processor reads on VMRUN and writes on #VMEXIT.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
pub struct Vmcb([u64; 512]);
impl KernelObject for Vmcb {}

impl Vmcb {
    /// An all-zero VMCB (nothing intercepted, no state).
    pub const fn zeroed() -> Self {
        Vmcb([0; 512])
    }

    /// Reads a word.
    pub fn get(&self, word: VmcbWord) -> u64 {
        self.0[word as usize / 8]
    }

    /// Writes a word.
    pub fn set(&mut self, word: VmcbWord, value: u64) {
        self.0[word as usize / 8] = value;
    }

    /// The word after `word` (a segment's base).
    pub fn set_next(&mut self, word: VmcbWord, value: u64) {
        self.0[word as usize / 8 + 1] = value;
    }
}

extern "C" {
    fn svm_run_asm(vmcb: u64, host_area: u64, gprs: u64) -> !;
}

/// Enters the guest of the VMCB at `vmcb_phys` with its general registers
/// at `gprs_phys` (the layout svm.S expects: 15 words, RAX's slot unused).
/// Releases the kernel lock; continues in `crate::vcpu::on_exit` with the
/// lock held again once the guest exits.
pub fn run(guard: KernelGuard, vmcb_phys: u64, gprs_phys: u64) -> ! {
    let here = percpu::current();
    let host_area = host_area_phys(here.index as usize, 1);
    // The guest counts as user mode: `sched::stall` kicks it out and waits.
    here.set_in_user(true);
    drop(guard);
    // SAFETY: the VMCB is a page of a live Vcpu object set up by
    // `crate::vcpu::svm` (VMRUN intercepted, nested paging on, the kernel's
    // own I/O and MSR maps), the register area is part of the same object,
    // the host area is this CPU's own page, and interrupts are off. The
    // object stays allocated until the guest exits: deleting it stalls this
    // CPU first (`crate::vcpu::destroy`).
    unsafe { svm_run_asm(vmcb_phys, host_area, phys_to_virt(gprs_phys)) }
}

/// Continues after #VMEXIT (from svm.S), on a fresh kernel stack.
#[no_mangle]
extern "C" fn svm_guest_exited() -> ! {
    percpu::current().set_in_user(false);
    let guard = lock::acquire();
    crate::vcpu::on_exit(guard)
}
