//! Host-testable core of the Tarn kernel: pure parsers for what the boot
//! loader and firmware hand over (command line, PVH start_info, multiboot2
//! information, memory map, ACPI tables) and the VMX encodings the VMX
//! backend decodes.
//!
//! Design rules, shared by every module:
//! - `no_std`, no allocation: this code runs before the kernel heap exists, so
//!   results live in fixed-capacity arrays ([`fixed_vec::FixedVec`]) or are
//!   produced lazily by iterators.
//! - No `unsafe`: the kernel maps physical memory and hands byte slices in;
//!   everything here works on `&[u8]`.
//! - Input is an allegation. Every length, count and offset read from
//!   firmware is checked; malformed input is an error value, never a panic or
//!   an out-of-bounds slice. Parsers validate fully before returning anything
//!   (decode, then use).

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod acpi;
pub mod cdt;
pub mod cmdline;
pub mod fixed_vec;
pub mod memmap;
pub mod multiboot2;
pub mod pvh;
pub mod srat;
pub mod vmx;

mod le;

#[cfg(test)]
mod testutil;
