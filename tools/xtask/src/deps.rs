//! Checking (and on Debian installing) the host tools the build and the
//! emulators need.

use std::path::Path;
use std::process::Command;

use crate::ctx::{on_path, run_checked, Ctx, Result};
use crate::images::TARGET;

/// The oldest QEMU with x2APIC under TCG.
const MIN_QEMU: (u32, u32) = (8, 1);

/// Bochs' system BIOS image.
pub const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";

/// Candidate VGA BIOS images, in order of preference.
const VGA_BIOS: &[&str] = &[
    "/usr/share/bochs/VGABIOS-lgpl-latest",
    "/usr/share/vgabios/vgabios.bin",
];

/// Debian's Bochs plugin directory; when it exists, the `term` display
/// plugin (package `bochs-term`) must be in it.
const DEBIAN_BOCHS_PLUGINS: &str = "/usr/lib/x86_64-linux-gnu/bochs/plugins";

/// What to install by hand where `tools/install-deps.sh` cannot run.
const MANUAL_INSTALL: &str = "\
install these with your package manager, then retry:
  - QEMU >= 8.1 (qemu-system-x86_64; Debian 12: `apt-get install -t bookworm-backports qemu-system-x86`)
  - Bochs 2.7 with the `term` display library and its BIOS images
    (Debian: bochs bochs-term bochsbios vgabios)
  - GRUB for BIOS with grub-mkrescue, xorriso and mtools
    (Debian: grub-pc-bin grub-common xorriso mtools)";

/// The first VGA BIOS image present.
pub fn vga_bios() -> Option<&'static str> {
    VGA_BIOS.iter().copied().find(|p| Path::new(p).is_file())
}

/// Parses `qemu-system-x86_64 --version` output into (major, minor).
pub fn parse_qemu_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("version ")? + "version ".len()..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// What is missing for QEMU boots.
fn missing_for_qemu() -> Vec<String> {
    let output = Command::new("qemu-system-x86_64").arg("--version").output();
    let Ok(output) = output else {
        return vec!["qemu-system-x86_64 (not found)".to_owned()];
    };
    match parse_qemu_version(&String::from_utf8_lossy(&output.stdout)) {
        Some(version) if version >= MIN_QEMU => Vec::new(),
        Some((major, minor)) => vec![format!(
            "qemu-system-x86_64 >= {}.{} (found {major}.{minor}, which lacks x2APIC under TCG)",
            MIN_QEMU.0, MIN_QEMU.1
        )],
        None => vec!["qemu-system-x86_64 (cannot read its version)".to_owned()],
    }
}

/// What is missing for Bochs boots.
fn missing_for_bochs() -> Vec<String> {
    let mut missing: Vec<String> = ["bochs", "grub-mkrescue", "xorriso", "mformat"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .map(|tool| format!("{tool} (not found)"))
        .collect();
    if !Path::new(BOCHS_BIOS).is_file() {
        missing.push(format!("{BOCHS_BIOS} (bochsbios)"));
    }
    if vga_bios().is_none() {
        missing.push(format!("a VGA BIOS image, one of {VGA_BIOS:?} (vgabios)"));
    }
    let plugins = Path::new(DEBIAN_BOCHS_PLUGINS);
    if plugins.is_dir() && !plugins.join("libbx_term_gui.so").exists() {
        missing.push("the Bochs `term` display library (bochs-term)".to_owned());
    }
    if !Path::new("/usr/lib/grub/i386-pc").is_dir() {
        missing.push("GRUB's i386-pc modules (grub-pc-bin)".to_owned());
    }
    missing
}

/// Runs `tools/install-deps.sh`.
pub fn install(ctx: &Ctx) -> Result<()> {
    run_checked(Command::new("bash").arg(ctx.root.join("tools/install-deps.sh")))
}

/// Makes sure the emulators (QEMU always, Bochs and GRUB when `bochs`) are
/// usable, installing them with `tools/install-deps.sh` on Debian.
pub fn ensure_emulators(ctx: &Ctx, bochs: bool) -> Result<()> {
    let missing = || {
        let mut missing = missing_for_qemu();
        if bochs {
            missing.extend(missing_for_bochs());
        }
        missing
    };
    let first = missing();
    if first.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: missing: {}", first.join(", "));
    if !on_path("apt-get") {
        return Err(format!("not a Debian system; {MANUAL_INSTALL}"));
    }
    eprintln!("xtask: running tools/install-deps.sh to install them");
    install(ctx)?;
    let still = missing();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "still missing after tools/install-deps.sh: {}",
            still.join(", ")
        ))
    }
}

/// Adds the bare-metal Rust target if rustup manages this toolchain and lacks it.
pub fn ensure_rust_target(ctx: &Ctx) -> Result<()> {
    let Ok(output) = Command::new("rustup")
        .current_dir(&ctx.root)
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(()); // no rustup: cargo reports a missing target itself
    };
    let installed = String::from_utf8_lossy(&output.stdout);
    if installed.lines().any(|line| line.trim() == TARGET) {
        return Ok(());
    }
    eprintln!("xtask: adding the Rust target {TARGET}");
    run_checked(
        Command::new("rustup")
            .current_dir(&ctx.root)
            .args(["target", "add", TARGET]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_versions_parse() {
        let debian =
            "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright";
        assert_eq!(parse_qemu_version(debian), Some((10, 0)));
        assert_eq!(
            parse_qemu_version("QEMU emulator version 7.2.15 (Debian)"),
            Some((7, 2))
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 8.1"),
            Some((8, 1))
        );
        assert_eq!(parse_qemu_version("garbage"), None);
        assert!((7, 2) < MIN_QEMU && (8, 1) >= MIN_QEMU && (10, 0) >= MIN_QEMU);
    }
}
