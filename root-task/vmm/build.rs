//! Assembles the test guests (`guests/*.S`, GNU as syntax) into flat binary
//! images in OUT_DIR with binutils `as` and `objcopy`, which the build
//! already needs (`objcopy` strips the boot modules).
use std::process::Command;

const GUESTS: &[&str] = &[
    "real16",
    "prot32",
    "long64",
    "idle16",
    "triple16",
    "storm16",
    "outside32",
    "bench64",
    "irqoff16",
    "irqonce16",
];

fn run(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e} (install binutils)"));
    assert!(status.success(), "{command:?} failed");
}

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    for guest in GUESTS {
        let source = format!("{dir}/guests/{guest}.S");
        println!("cargo:rerun-if-changed={source}");
        let object = format!("{out}/{guest}.o");
        run(Command::new("as").args([
            "--64",
            "-I",
            &format!("{dir}/guests"),
            "-o",
            &object,
            &source,
        ]));
        run(Command::new("objcopy").args([
            "-O",
            "binary",
            "-j",
            ".text",
            &object,
            &format!("{out}/{guest}.bin"),
        ]));
    }
}
