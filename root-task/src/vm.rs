//! Linux guests: their memory is built here, in the domain's cell, from the
//! kernel and initrd of the config archive (`tarn_vmm::linux` places them
//! and builds the zero page and tables), as a GuestSpace of 2 MiB frames
//! that the domain's VMM gets in its slot 9. The VMM never sees the images:
//! the archive stays the root task's, and no frame capability per page of
//! a 15 MiB kernel has to be handed over.

use alloc::format;
use alloc::string::{String, ToString};
use core::sync::atomic::{AtomicU64, Ordering};
use tarn_rt::abi::{CPtr, ObjectType, Rights};
use tarn_rt::invoke;
use tarn_rt::Resources;
use tarn_vmm::linux;

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
