//! Linux domains: `create` with `type="hvm"` and a `kernel` that is a file
//! of the config archive. [`Pools::build_linux_domain`] sizes the domain's
//! cell from its memory, builds the guest's memory in it and starts the
//! `vmm` module on it, scheduled by the pool's server like any domain.
//!
//! Their memory is built here, in the domain's cell, from the
//! kernel and initrd of the config archive (`tarn_vmm::linux` places them
//! and builds the zero page and tables), as a GuestSpace of 2 MiB frames
//! that the domain's VMM gets in its slot 9. The VMM never sees the images:
//! the archive stays the root task's, and no frame capability per page of
//! a 15 MiB kernel has to be handed over.
//!
//! A Linux domain's console is a shared page ([`ConsoleRing`]): the VMM
//! writes the guest's UART output there and reads its input, the serial
//! console (`console D`) attaches to it.

use crate::domains::VMM_MEMORY_BITS;
use crate::manager::Pools;
use crate::servers::BADGE_DOMAIN;
use alloc::format;
use alloc::string::{String, ToString};
use core::sync::atomic::{AtomicU64, Ordering};
use tarn_pool_manager::pools::DomainId;
use tarn_rt::abi::{CPtr, ObjectType, Rights};
use tarn_rt::invoke;
use tarn_rt::{ProcessConfig, Resources, UntypedGrant};
use tarn_vmm::linux;

impl Pools {
    /// `create` of a Linux guest (`kernel` a file of the config archive):
    /// its cell is sized from `memory` (guest RAM plus 8 MiB for the VMM,
    /// rounded up to a power of two), the guest's memory is built in it
    /// (`build_memory`), and the `vmm` module runs it on its main thread, the
    /// domain's vCPU, scheduled by the pool's server like any domain.
    pub fn build_linux_domain(
        &mut self,
        res: &mut Resources,
        domain: DomainId,
        kernel: &str,
        ramdisk: Option<&str>,
        memory_mib: u64,
        cmdline: &str,
    ) -> Result<(), String> {
        let (pool, name) = self
            .manager
            .domain(domain)
            .map(|d| (d.pool, d.name.clone()))
            .ok_or("no such domain")?;
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&memory_mib) {
            return Err(format!(
                "memory={memory_mib}: a Linux guest takes {}..={} MiB",
                MIN_MEMORY_MIB, MAX_MEMORY_MIB
            ));
        }
        let archive = self
            .info
            .module("initrd")
            .map(tarn_rt::module_bytes)
            .ok_or("no config archive")?;
        let file = |path: &str| {
            crate::configs::archive_file(path)
                .map(|(offset, length)| &archive[offset..offset + length])
                .ok_or_else(|| format!("no file {path} in the config archive"))
        };
        let kernel_bytes = file(kernel)?;
        let initrd = ramdisk.map(file).transpose()?;
        let module = self.info.module("vmm").ok_or("no vmm module")?;
        let ram = memory_mib.next_multiple_of(2) << 20;
        let cell_bits = u64::from((ram + (8 << 20)).next_power_of_two().trailing_zeros());
        let tsc_khz = tsc_khz(res);
        let fault_source = self.fault_endpoint;
        let mut rings = None;
        let elf = tarn_rt::module_bytes(module);
        let (built, cell) = self
            .build_in_cell(res, cell_bits, |res| {
                let memory = build_memory(res, kernel_bytes, initrd, cmdline, ram, tsc_khz)
                    .map_err(|why| {
                        crate::output::say_line(&format!("error: {name}: {why}"));
                        tarn_rt::abi::Error::InvalidArgument
                    })?;
                let (untyped, phys) = res.create_untyped(VMM_MEMORY_BITS)?;
                let ring = res.create(ObjectType::Frame4K, 0)?;
                let wake = res.create(ObjectType::Notification, 0)?;
                invoke::frame_map(
                    ring,
                    res.vspace,
                    ring_vaddr(domain.0),
                    Rights::READ.union(Rights::WRITE),
                )?;
                rings = Some(ConsoleRing {
                    vaddr: ring_vaddr(domain.0),
                    wake,
                });
                let fault = crate::cells::mint_fault_endpoint(
                    res,
                    fault_source,
                    BADGE_DOMAIN | u64::from(domain.0),
                )?;
                let untyped = [UntypedGrant {
                    cptr: untyped,
                    phys,
                    size_bits: VMM_MEMORY_BITS,
                }];
                let caps = [
                    tarn_rt::CapGrant {
                        source: memory.space,
                        dest: tarn_rt::layout::slot::FIRST_PARENT,
                        rights: Rights::ALL,
                        badge: 0,
                    },
                    // Where the VMM says its guest ended (`vm_ended`).
                    tarn_rt::CapGrant {
                        source: fault,
                        dest: tarn_rt::layout::slot::FIRST_PARENT + 1,
                        rights: Rights::ALL,
                        badge: 0,
                    },
                    // The console's input page and the VMM's wake-up.
                    tarn_rt::CapGrant {
                        source: ring,
                        dest: tarn_rt::layout::slot::FIRST_PARENT + 2,
                        rights: Rights::READ.union(Rights::WRITE),
                        badge: 0,
                    },
                    tarn_rt::CapGrant {
                        source: wake,
                        dest: tarn_rt::layout::slot::FIRST_PARENT + 3,
                        rights: Rights::ALL,
                        badge: 0,
                    },
                    // The serial console's notification: output is waiting.
                    tarn_rt::CapGrant {
                        source: console_wake(),
                        dest: tarn_rt::layout::slot::FIRST_PARENT + 4,
                        rights: Rights::WRITE,
                        badge: 0,
                    },
                ];
                // `tarn.bench` on the guest's command line: the VMM prints
                // the boot's figures (`cargo xtask bench`).
                let bench = if cmdline.split_whitespace().any(|w| w == "tarn.bench") {
                    " bench=1"
                } else {
                    ""
                };
                let line = format!("domain={name} linux={:x}{bench}", memory.load_address);
                let config = ProcessConfig {
                    elf,
                    fault_endpoint: fault,
                    cpu_count: 0,
                    untyped: &untyped,
                    caps: &caps,
                    cmdline: &line,
                    suspended: true,
                    ..ProcessConfig::default()
                };
                tarn_rt::spawn_process(res, &config)
            })
            .map_err(|e| format!("cannot build it: {e:?}"))?;
        if let Some(ring) = rings {
            register_console(domain.0, ring);
        }
        self.start_built(
            res,
            pool,
            domain,
            cell,
            &built,
            alloc::vec::Vec::new(),
            kernel,
        )
    }
}

/// Guest-space table memory (log2 bytes): PML4, PDPT and one page
/// directory per GiB of 2 MiB pages.
const GUEST_SPACE_BITS: u64 = 15;
/// Bytes in a large page.
const LARGE_PAGE: u64 = 2 << 20;
/// Memory of a Linux guest when `memory=` is not given (MiB, xl's default).
pub const DEFAULT_MEMORY_MIB: u64 = 128;
/// Smallest `memory=` accepted (MiB; the cloud kernel needs 72).
pub const MIN_MEMORY_MIB: u64 = 64;
/// Largest `memory=` accepted (MiB; the identity map covers 4 GiB).
pub const MAX_MEMORY_MIB: u64 = 3072;

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);

/// The TSC rate (kHz), measured once against the kernel's timer (20 ms).
pub fn tsc_khz(res: &mut Resources) -> u64 {
    let known = TSC_KHZ.load(Ordering::Relaxed);
    if known != 0 {
        return known;
    }
    let Ok(sleeper) = res.create(ObjectType::Notification, 0) else {
        return 1_000_000;
    };
    let before = tarn_rt::arch::rdtsc();
    let _ = tarn_rt::sleep(sleeper, 20_000_000);
    let khz = ((tarn_rt::arch::rdtsc() - before) / 20).max(1);
    TSC_KHZ.store(khz, Ordering::Relaxed);
    khz
}

/// A loaded guest: its GuestSpace and where the kernel is.
pub struct LinuxMemory {
    /// The GuestSpace (in the caller's CNode).
    pub space: CPtr,
    /// The kernel's load address (its entry is 0x200 further).
    pub load_address: u64,
}

/// Builds the memory of a Linux guest of `ram` bytes (a multiple of 2 MiB)
/// from `res` (the domain's cell): frames first, so they pack the cell
/// from its start without alignment gaps.
pub fn build_memory(
    res: &mut Resources,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    ram: u64,
    tsc_khz: u64,
) -> Result<LinuxMemory, String> {
    let line = linux::command_line(cmdline, tsc_khz);
    let guest = linux::load(kernel, initrd, &line, ram).map_err(|e| e.to_string())?;
    let mut frames = alloc::vec::Vec::new();
    for index in 0..ram / LARGE_PAGE {
        let start = index * LARGE_PAGE;
        let end = start + LARGE_PAGE;
        let touches = guest
            .pieces
            .iter()
            .any(|p| p.gpa < end && p.gpa + p.bytes.as_slice().len() as u64 > start);
        let frame = if touches {
            tarn_rt::process::new_large_frame(res, |bytes| {
                for piece in &guest.pieces {
                    let data = piece.bytes.as_slice();
                    let from = piece.gpa.max(start);
                    let to = (piece.gpa + data.len() as u64).min(end);
                    if from < to {
                        bytes[(from - start) as usize..(to - start) as usize].copy_from_slice(
                            &data[(from - piece.gpa) as usize..(to - piece.gpa) as usize],
                        );
                    }
                }
            })
        } else {
            res.create(ObjectType::Frame2M, 0)
        };
        frames.push(frame.map_err(|e| format!("guest memory at {start:#x}: {e:?}"))?);
    }
    let space = res
        .create(ObjectType::GuestSpace, GUEST_SPACE_BITS)
        .map_err(|e| format!("guest space: {e:?}"))?;
    let rights = Rights::READ.union(Rights::WRITE).union(Rights::EXECUTE);
    for (index, frame) in frames.iter().enumerate() {
        let start = index as u64 * LARGE_PAGE;
        invoke::frame_map(*frame, space, start, rights)
            .map_err(|e| format!("guest memory map at {start:#x}: {e:?}"))?;
    }
    Ok(LinuxMemory {
        space,
        load_address: guest.load_address,
    })
}

/// A Linux domain's console: a page shared with its VMM, mapped in the free
/// window on both sides and read and written only word by word
/// (`tarn_rt::arch::probe_read`/`probe_write`), and the VMM's wake-up
/// notification. Layout (64-bit words): 0 input bytes written (by the pool
/// manager), 1 input bytes taken (by the VMM), 2 attached (1: the serial
/// console is attached and the VMM puts the guest's output here), from
/// [`RING_FIRST`] the input, one byte per word; at [`OUT_HEAD`] and
/// [`OUT_TAIL`] the output's counts (written by the VMM, taken by the
/// manager, which the VMM wakes through the console's notification), from
/// [`OUT_FIRST`] the output bytes.
#[derive(Clone, Copy, Debug)]
pub struct ConsoleRing {
    /// Where the page is mapped in the root task.
    pub vaddr: u64,
    /// The VMM's notification (signalled after input).
    pub wake: CPtr,
}

/// First word of the input bytes.
pub const RING_FIRST: u64 = 8;
/// Input bytes the ring holds.
pub const RING_BYTES: u64 = 256 - RING_FIRST;
/// The output's words: bytes written, bytes taken, first byte.
pub const OUT_HEAD: u64 = 256;
/// See [`OUT_HEAD`].
pub const OUT_TAIL: u64 = 257;
/// See [`OUT_HEAD`].
pub const OUT_FIRST: u64 = 264;
/// Output bytes the ring holds.
pub const OUT_BYTES: u64 = 512 - OUT_FIRST;

static CONSOLE_WAKE: AtomicU64 = AtomicU64::new(0);

/// The notification the serial console waits on (a VMM signals it when it
/// has output for an attached console).
pub fn set_console_wake(notification: CPtr) {
    CONSOLE_WAKE.store(notification, Ordering::Relaxed);
}

/// See [`set_console_wake`] (0: none yet).
pub fn console_wake() -> CPtr {
    CONSOLE_WAKE.load(Ordering::Relaxed)
}

/// Where the root task maps domain `id`'s ring page.
pub fn ring_vaddr(id: u32) -> u64 {
    tarn_rt::layout::FREE_WINDOW_BASE + 0x0800_0000_0000 + u64::from(id) * 4096
}

static CONSOLES: spin::Mutex<alloc::collections::BTreeMap<u32, ConsoleRing>> =
    spin::Mutex::new(alloc::collections::BTreeMap::new());

/// Records domain `id`'s ring.
pub fn register_console(id: u32, ring: ConsoleRing) {
    CONSOLES.lock().insert(id, ring);
}

/// Forgets domain `id`'s ring (before its cell, and the page, go).
pub fn forget_console(id: u32) {
    CONSOLES.lock().remove(&id);
}

/// Domain `id`'s ring, if it is a Linux domain.
pub fn console(id: u32) -> Option<ConsoleRing> {
    CONSOLES.lock().get(&id).copied()
}

impl ConsoleRing {
    /// Tells the VMM whether the console is attached.
    pub fn set_attached(&self, attached: bool) {
        tarn_rt::arch::probe_write(self.vaddr + 16, u64::from(attached));
        let _ = tarn_rt::syscall::signal(self.wake);
    }

    /// Takes the guest's output the VMM queued.
    pub fn take_output(&self) -> alloc::vec::Vec<u8> {
        use tarn_rt::arch::{probe_read, probe_write};
        let head = probe_read(self.vaddr + OUT_HEAD * 8);
        let mut tail = probe_read(self.vaddr + OUT_TAIL * 8);
        let mut out = alloc::vec::Vec::new();
        let available = head.wrapping_sub(tail).min(OUT_BYTES);
        for _ in 0..available {
            out.push(probe_read(self.vaddr + (OUT_FIRST + tail % OUT_BYTES) * 8) as u8);
            tail = tail.wrapping_add(1);
        }
        probe_write(self.vaddr + OUT_TAIL * 8, tail);
        if !out.is_empty() {
            // The VMM may wait for room.
            let _ = tarn_rt::syscall::signal(self.wake);
        }
        out
    }

    /// Queues input bytes (those that do not fit are dropped); wakes the VMM.
    pub fn push(&self, bytes: &[u8]) -> usize {
        let head = tarn_rt::arch::probe_read(self.vaddr);
        let tail = tarn_rt::arch::probe_read(self.vaddr + 8);
        let room = RING_BYTES.saturating_sub(head.wrapping_sub(tail));
        let n = (bytes.len() as u64).min(room);
        for (i, &b) in bytes.iter().take(n as usize).enumerate() {
            let at = (head + i as u64) % RING_BYTES;
            tarn_rt::arch::probe_write(self.vaddr + (RING_FIRST + at) * 8, u64::from(b));
        }
        tarn_rt::arch::probe_write(self.vaddr, head.wrapping_add(n));
        let _ = tarn_rt::syscall::signal(self.wake);
        n as usize
    }
}
