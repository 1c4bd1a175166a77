//! Links the kernel with its own linker script (1 MiB physical, higher-half
//! virtual) and generates the 256 interrupt entry stubs.
use std::fmt::Write as _;

/// Vectors for which the CPU pushes an error code (SDM Vol. 3A, 6.13).
const ERROR_CODE_VECTORS: [u32; 9] = [8, 10, 11, 12, 13, 14, 17, 21, 29];

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=0x1000");
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");

    let mut stubs = String::from(".section .text\n");
    for vector in 0..256u32 {
        let _ = writeln!(stubs, ".balign 16\nvector_stub_{vector}:");
        if !ERROR_CODE_VECTORS.contains(&vector) && vector != 30 {
            stubs.push_str("    pushq $0\n");
        }
        let _ = writeln!(stubs, "    pushq ${vector}\n    jmp trap_common");
    }
    stubs.push_str(".section .rodata\n.balign 8\n.global vector_stub_table\nvector_stub_table:\n");
    for vector in 0..256u32 {
        let _ = writeln!(stubs, "    .quad vector_stub_{vector}");
    }
    std::fs::write(format!("{out}/vectors.S"), stubs).expect("write vectors.S");
}
