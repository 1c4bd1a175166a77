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
    boot_modules(&out);
}

/// Embeds the user-task images named in `TARN_BOOT_MODULES` ("name=path;...",
/// set by `cargo xtask build`), each page aligned, as `MODULES`.
fn boot_modules(out: &str) {
    println!("cargo:rerun-if-env-changed=TARN_BOOT_MODULES");
    let list = std::env::var("TARN_BOOT_MODULES").unwrap_or_default();
    let mut code = String::from(
        "/// A page-aligned boot-module image.\n#[allow(dead_code)] // unused in an image without modules\n#[repr(C, align(4096))]\npub struct PageAligned<T: ?Sized>(pub T);\n",
    );
    let mut table = String::from(
        "/// The boot modules: (name, image).\npub static MODULES: &[(&str, &[u8])] = &[\n",
    );
    for (index, entry) in list.split(';').filter(|e| !e.is_empty()).enumerate() {
        let (name, path) = entry
            .split_once('=')
            .expect("TARN_BOOT_MODULES entries are name=path");
        let size = std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("boot module {path}: {e}"))
            .len();
        println!("cargo:rerun-if-changed={path}");
        let _ = writeln!(
            code,
            "static MODULE_{index}: PageAligned<[u8; {size}]> = PageAligned(*include_bytes!({path:?}));"
        );
        let _ = writeln!(table, "    ({name:?}, &MODULE_{index}.0),");
    }
    table.push_str("];\n");
    code.push_str(&table);
    std::fs::write(format!("{out}/modules.rs"), code).expect("write modules.rs");
}
