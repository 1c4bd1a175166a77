//! Building the bootable images: user-task images first, then the kernel,
//! which embeds them as boot modules.

use std::path::{Path, PathBuf};

use crate::ctx::{run_checked, Ctx, Result};
use crate::deps::ensure_rust_target;
use tarn_tests::Image;

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
    /// Only the test image carries it (see [`Image`]).
    pub test_only: bool,
}

/// The user-task images, in the order the kernel receives them. They are
/// built with one `cargo build --release --target x86_64-unknown-none -p ...`
/// and handed to the kernel build in `TARN_BOOT_MODULES` ("name=path;...").
/// The kernel starts `root-task`; the root task starts the others when the
/// command line asks for them (`test`, `fuzz`, see
/// [`tarn_tests::TEST_MODULE_WORDS`]) or a pool or domain needs them.
pub const USER_IMAGES: &[UserImage] = &[
    UserImage {
        module: "root-task",
        package: "tarn-root-task",
        binary: "root-task",
        test_only: false,
    },
    UserImage {
        module: "test-suite",
        package: "tarn-test-tasks",
        binary: "test-suite",
        test_only: true,
    },
    UserImage {
        module: "test-helper",
        package: "tarn-test-tasks",
        binary: "test-helper",
        test_only: true,
    },
    UserImage {
        module: "fuzz",
        package: "tarn-test-tasks",
        binary: "fuzz",
        test_only: true,
    },
    UserImage {
        module: "fuzz-graph",
        package: "tarn-test-tasks",
        binary: "fuzz-graph",
        test_only: true,
    },
    UserImage {
        module: "bench",
        package: "tarn-test-tasks",
        binary: "bench",
        test_only: true,
    },
    UserImage {
        module: "sched-shares",
        package: "tarn-test-tasks",
        binary: "sched-shares",
        test_only: true,
    },
    // The built-in policies' servers: `policy-NAME` serves pools with
    // `sched=NAME` (a config archive adds others as `servers/NAME`).
    UserImage {
        module: "policy-credit",
        package: "tarn-sched-server",
        binary: "credit",
        test_only: false,
    },
    UserImage {
        module: "policy-sedf",
        package: "tarn-sched-server",
        binary: "sedf",
        test_only: false,
    },
    UserImage {
        module: "policy-rr",
        package: "tarn-sched-server",
        binary: "rr",
        test_only: false,
    },
    UserImage {
        module: "spin",
        package: "tarn-workloads",
        binary: "spin",
        test_only: false,
    },
    UserImage {
        module: "tenant",
        package: "tarn-workloads",
        binary: "tenant",
        test_only: false,
    },
    UserImage {
        module: "vmm",
        package: "tarn-vmm-task",
        binary: "vmm",
        test_only: false,
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

/// The built kernels, one per [`Image`] asked for (both the same ELF when
/// the user named one with `--elf`).
pub struct Images {
    system: Option<PathBuf>,
    test: Option<PathBuf>,
}

impl Images {
    /// The kernel ELF (multiboot2 + PVH bootable) of `image`.
    ///
    /// # Panics
    /// When `image` was not among those [`build_or_use`] was asked for (a
    /// bug in xtask, not a user error).
    pub fn kernel(&self, image: Image) -> &Path {
        let kernel = match image {
            Image::System => &self.system,
            Image::Test => &self.test,
        };
        kernel
            .as_deref()
            .expect("xtask builds every image it boots")
    }
}

/// The cargo profile user-task images are built with.
const USER_PROFILE: &str = "release";

/// The cargo profile a kernel of `image` is built with (`Cargo.toml`:
/// `kernel` is release with fat LTO and one codegen unit). The two kernels
/// embed different modules (`TARN_BOOT_MODULES`), so each has its own
/// profile and output directory and neither rebuild undoes the other;
/// `kernel-test` inherits everything from `kernel`.
fn kernel_profile(image: Image) -> &'static str {
    match image {
        Image::System => "kernel",
        Image::Test => "kernel-test",
    }
}

/// The path of a binary built for [`TARGET`] with `profile`.
fn target_binary(ctx: &Ctx, profile: &str, name: &str) -> PathBuf {
    ctx.target.join(TARGET).join(profile).join(name)
}

/// Builds `packages` for [`TARGET`] with `profile`, with extra environment.
fn cargo_build(ctx: &Ctx, profile: &str, packages: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let mut command = ctx.cargo();
    command.args(["build", "--profile", profile, "--target", TARGET]);
    for package in packages {
        command.args(["-p", package]);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    run_checked(&mut command)
}

/// A built binary, or an error when the build did not produce it.
fn built(ctx: &Ctx, profile: &str, binary: &str) -> Result<PathBuf> {
    let path = target_binary(ctx, profile, binary);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the build succeeded but {} is missing",
            path.display()
        ))
    }
}

/// The modules `image` embeds, in boot order.
pub fn modules_of(image: Image) -> impl Iterator<Item = &'static UserImage> {
    USER_IMAGES
        .iter()
        .filter(move |user| image == Image::Test || !user.test_only)
}

/// Builds the user-task images (release), then one kernel per image in
/// `wanted` with that image's modules embedded.
pub fn build_images(ctx: &Ctx, wanted: &[Image]) -> Result<Images> {
    let packages = user_packages();
    if !packages.is_empty() {
        cargo_build(ctx, USER_PROFILE, &packages, &[])?;
    }
    // Boot modules travel stripped: debug information is for the host (gdb
    // reads the unstripped files), and every page of a module costs the root
    // task a capability slot.
    let stripped_dir = ctx.xtask_dir().join("modules");
    std::fs::create_dir_all(&stripped_dir)
        .map_err(|e| format!("{}: {e}", stripped_dir.display()))?;
    for image in USER_IMAGES {
        let path = built(ctx, USER_PROFILE, image.binary)?;
        let stripped = stripped_dir.join(image.binary);
        run_checked(
            std::process::Command::new("objcopy")
                .arg("--strip-debug")
                .arg(&path)
                .arg(&stripped),
        )?;
    }
    let mut images = Images {
        system: None,
        test: None,
    };
    for &image in [Image::System, Image::Test].iter() {
        if !wanted.contains(&image) {
            continue;
        }
        let modules: Vec<String> = modules_of(image)
            .map(|user| {
                format!(
                    "{}={}",
                    user.module,
                    stripped_dir.join(user.binary).display()
                )
            })
            .collect();
        let profile = kernel_profile(image);
        cargo_build(
            ctx,
            profile,
            &[KERNEL_PACKAGE],
            &[("TARN_BOOT_MODULES", &modules.join(";"))],
        )?;
        let kernel = Some(built(ctx, profile, KERNEL_PACKAGE)?);
        match image {
            Image::System => images.system = kernel,
            Image::Test => images.test = kernel,
        }
    }
    Ok(images)
}

/// The images to boot: `elf` as the kernel of every image when given
/// (nothing is built), else freshly built kernels of the `wanted` images.
pub fn build_or_use(ctx: &Ctx, elf: Option<&Path>, wanted: &[Image]) -> Result<Images> {
    match elf {
        Some(elf) if elf.is_file() => Ok(Images {
            system: Some(elf.to_path_buf()),
            test: Some(elf.to_path_buf()),
        }),
        Some(elf) => Err(format!("{}: no such file", elf.display())),
        None => {
            ensure_rust_target(ctx)?;
            build_images(ctx, wanted)
        }
    }
}

/// Builds the server of policy crate `name` named in `file` (a directory
/// relative to Tarn's root) with its own `cargo build` (package
/// `NAME-server`, as `cargo xtask new-policy` makes it); returns the binary.
fn build_policy_crate(ctx: &Ctx, name: &str, file: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let dir = ctx.root.join(text.trim());
    let target = ctx.target.join("policies");
    let mut command = ctx.cargo();
    command
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--release", "--target", TARGET, "-p"])
        .arg(format!("{name}-server"));
    crate::ctx::run_checked(&mut command)?;
    Ok(target.join(TARGET).join("release").join(name))
}

/// Packs config directory `dir` (its `pools/` and `domains/` trees: every
/// file of `pools/` and `domains/`, the `*.cfg` files of their `auto/`, `autorun.cmds`, and the policy servers of `servers/`, each a file
/// named as its policy) into the cpio (newc) archive the root task
/// reads from `-initrd` (QEMU) or a GRUB module (Bochs);
/// returns the archive's path (`out`).
pub fn pack_config(ctx: &Ctx, dir: &Path, out: &Path) -> Result<PathBuf> {
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
            // Every file of pools/ and domains/ (xl names a config with or
            // without `.cfg`: Xen's example pool file is `cpupool`); only
            // the `*.cfg` of the auto/ directories start at boot.
            .filter(|p| {
                p.is_file() && (!sub.ends_with("auto") || p.extension().is_some_and(|x| x == "cfg"))
            })
            .collect();
        names.sort();
        for path in names {
            let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            files.push((format!("{sub}/{base}"), data));
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("servers")) {
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            // `servers/NAME.crate` names a policy crate (its directory,
            // relative to Tarn): built now, packed as `servers/NAME`.
            let (name, path) = match base.strip_suffix(".crate") {
                Some(name) => (name, build_policy_crate(ctx, name, &path)?),
                None => (base, path.clone()),
            };
            let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            files.push((format!("servers/{name}"), data));
        }
    }
    // `policies/NAME.crate`: built (as above) but not packed, for a
    // scenario that loads it at run time (`@ctl load-policy NAME FILE`).
    if let Ok(entries) = std::fs::read_dir(dir.join("policies")) {
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            if let Some(name) = base.strip_suffix(".crate") {
                build_policy_crate(ctx, name, &path)?;
            }
        }
    }
    let autorun = dir.join("autorun.cmds");
    if autorun.is_file() {
        let data = std::fs::read(&autorun).map_err(|e| format!("{}: {e}", autorun.display()))?;
        files.push(("autorun.cmds".to_string(), data));
    }
    // Guest images: the files of `images/` as they are, and the kernel and
    // initramfs `cargo xtask linux-fetch` cached, as `linux/vmlinuz` and
    // `linux/initrd.cpio`, when a config names them.
    if let Ok(entries) = std::fs::read_dir(dir.join("images")) {
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        for path in names {
            let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            files.push((format!("images/{base}"), data));
        }
    }
    let names_linux = files
        .iter()
        .any(|(_, data)| String::from_utf8_lossy(data).contains("\"linux/"));
    if names_linux {
        let cache = crate::linux::fetch()?;
        for name in [crate::linux::KERNEL, crate::linux::INITRD] {
            let path = cache.join(name);
            let data = std::fs::read(&path).map_err(|e| {
                format!(
                    "{}: {e} (a config names linux/{name}: run cargo xtask linux-fetch)",
                    path.display()
                )
            })?;
            files.push((format!("linux/{name}"), data));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_image_has_no_test_task() {
        let system: Vec<&str> = modules_of(Image::System).map(|m| m.module).collect();
        assert_eq!(
            system,
            [
                "root-task",
                "policy-credit",
                "policy-sedf",
                "policy-rr",
                "spin",
                "tenant",
                "vmm"
            ]
        );
        let test: Vec<&str> = modules_of(Image::Test).map(|m| m.module).collect();
        assert_eq!(test.len(), USER_IMAGES.len());
        // Every module a test word starts is in the test image only.
        for (word, module) in tarn_tests::TEST_MODULE_WORDS {
            let image = USER_IMAGES.iter().find(|m| m.module == *module);
            assert!(
                image.is_some_and(|m| m.test_only),
                "`{word}` starts {module}, which must be a test-only module"
            );
        }
    }
}
