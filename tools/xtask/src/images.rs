//! Building the bootable images: user-task images first, then the kernel,
//! which embeds them as boot modules.

use std::path::{Path, PathBuf};

use crate::ctx::{run_checked, Ctx, Result};
use crate::deps::ensure_rust_target;

/// The bare-metal target of the kernel and the user-task images.
pub const TARGET: &str = "x86_64-unknown-none";

/// The kernel package (and binary) name.
pub const KERNEL_PACKAGE: &str = "tarn-kernel";

/// A user-task image the kernel embeds as a boot module.
pub struct UserImage {
    /// The module name the kernel and the root task look it up by.
    pub module: &'static str,
    /// The package that builds it.
    pub package: &'static str,
    /// The binary (file name under `target/x86_64-unknown-none/release`).
    pub binary: &'static str,
}

/// The user-task images, in the order the kernel receives them. They are
/// built with one `cargo build --release --target x86_64-unknown-none -p ...`
/// and handed to the kernel build in `TARN_BOOT_MODULES` ("name=path;...").
/// The kernel starts `root-task`; the root task starts the others when the
/// command line asks for them (`test`, `fuzz`, `fuzzgraph`).
pub const USER_IMAGES: &[UserImage] = &[
    UserImage {
        module: "root-task",
        package: "tarn-root-task",
        binary: "root-task",
    },
    UserImage {
        module: "test-suite",
        package: "tarn-test-tasks",
        binary: "test-suite",
    },
    UserImage {
        module: "test-helper",
        package: "tarn-test-tasks",
        binary: "test-helper",
    },
    UserImage {
        module: "fuzz",
        package: "tarn-test-tasks",
        binary: "fuzz",
    },
    UserImage {
        module: "fuzz-graph",
        package: "tarn-test-tasks",
        binary: "fuzz-graph",
    },
    UserImage {
        module: "bench",
        package: "tarn-test-tasks",
        binary: "bench",
    },
    UserImage {
        module: "sched-shares",
        package: "tarn-test-tasks",
        binary: "sched-shares",
    },
    UserImage {
        module: "sched-server",
        package: "tarn-sched-server",
        binary: "sched-server",
    },
    UserImage {
        module: "spin",
        package: "tarn-workloads",
        binary: "spin",
    },
    UserImage {
        module: "tenant",
        package: "tarn-workloads",
        binary: "tenant",
    },
    UserImage {
        module: "vmm",
        package: "tarn-vmm-task",
        binary: "vmm",
    },
];

/// The packages of [`USER_IMAGES`], each once, in order.
pub fn user_packages() -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = Vec::new();
    for image in USER_IMAGES {
        if !packages.contains(&image.package) {
            packages.push(image.package);
        }
    }
    packages
}

/// Everything a boot needs.
pub struct Images {
    /// The kernel ELF (multiboot2 + PVH bootable).
    pub kernel: PathBuf,
}

/// The path of a release binary built for [`TARGET`].
fn target_binary(ctx: &Ctx, name: &str) -> PathBuf {
    ctx.target.join(TARGET).join("release").join(name)
}

/// Builds release `packages` for [`TARGET`], with extra environment.
fn cargo_build(ctx: &Ctx, packages: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let mut command = ctx.cargo();
    command.args(["build", "--release", "--target", TARGET]);
    for package in packages {
        command.args(["-p", package]);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    run_checked(&mut command)
}

/// A built binary, or an error when the build did not produce it.
fn built(ctx: &Ctx, binary: &str) -> Result<PathBuf> {
    let path = target_binary(ctx, binary);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the build succeeded but {} is missing",
            path.display()
        ))
    }
}

/// Builds the user-task images, then the kernel with them embedded.
pub fn build_images(ctx: &Ctx) -> Result<Images> {
    let packages = user_packages();
    if !packages.is_empty() {
        cargo_build(ctx, &packages, &[])?;
    }
    // Boot modules travel stripped: debug information is for the host (gdb
    // reads the unstripped files), and every page of a module costs the root
    // task a capability slot.
    let stripped_dir = ctx.xtask_dir().join("modules");
    std::fs::create_dir_all(&stripped_dir)
        .map_err(|e| format!("{}: {e}", stripped_dir.display()))?;
    let mut modules = Vec::new();
    for image in USER_IMAGES {
        let path = built(ctx, image.binary)?;
        let stripped = stripped_dir.join(image.binary);
        run_checked(
            std::process::Command::new("objcopy")
                .arg("--strip-debug")
                .arg(&path)
                .arg(&stripped),
        )?;
        modules.push(format!("{}={}", image.module, stripped.display()));
    }
    let modules = modules.join(";");
    cargo_build(ctx, &[KERNEL_PACKAGE], &[("TARN_BOOT_MODULES", &modules)])?;
    Ok(Images {
        kernel: built(ctx, KERNEL_PACKAGE)?,
    })
}

/// The images to boot: `elf` as the kernel when given (nothing is built),
/// else freshly built ones.
pub fn build_or_use(ctx: &Ctx, elf: Option<&Path>) -> Result<Images> {
    match elf {
        Some(elf) if elf.is_file() => Ok(Images {
            kernel: elf.to_path_buf(),
        }),
        Some(elf) => Err(format!("{}: no such file", elf.display())),
        None => {
            ensure_rust_target(ctx)?;
            build_images(ctx)
        }
    }
}

/// Packs config directory `dir` (its `pools/` and `domains/` trees, `*.cfg`
/// files, and `autorun.cmds`) into the cpio (newc) archive the root task
/// reads from `-initrd` (QEMU) or a GRUB module (Bochs);
/// returns the archive's path (`out`).
pub fn pack_config(dir: &Path, out: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(format!("--config {}: no such directory", dir.display()));
    }
    let mut files = Vec::new();
    for sub in ["pools", "pools/auto", "domains", "domains/auto"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "cfg") && p.is_file())
            .collect();
        names.sort();
        for path in names {
            let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            files.push((format!("{sub}/{base}"), data));
        }
    }
    let autorun = dir.join("autorun.cmds");
    if autorun.is_file() {
        let data = std::fs::read(&autorun).map_err(|e| format!("{}: {e}", autorun.display()))?;
        files.push(("autorun.cmds".to_string(), data));
    }
    if files.is_empty() {
        return Err(format!(
            "--config {}: no pools/*.cfg, pools/auto/*.cfg, domains/*.cfg or domains/auto/*.cfg",
            dir.display()
        ));
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(out, tarn_pool_manager::archive::write(&files))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out.to_path_buf())
}
