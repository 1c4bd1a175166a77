//! `cargo xtask linux-fetch`: the Debian cloud kernel and a busybox
//! initramfs for Linux guests, fetched once per machine into
//! `~/.cache/tarn/linux/` (`apt-get download` of `linux-image-cloud-amd64`'s
//! kernel package and `busybox-static`, unpacked with `dpkg -x`; nothing is
//! installed). The initramfs is a newc cpio archive: busybox, its applet
//! links made by `/init` itself, and `/init`, which prints
//! [`MARKER`] (on the console, then into the kernel log, where it carries
//! Linux's own timestamp: README "Running Linux" compares it with QEMU
//! alone), runs the commands the boot tests check and powers off.

use crate::Result;
use std::path::PathBuf;
use std::process::Command;

/// The kernel's file name in the cache (and as `linux/vmlinuz` in a config
/// archive).
pub const KERNEL: &str = "vmlinuz";
/// The initramfs's file name.
pub const INITRD: &str = "initrd.cpio";
/// What `/init` prints once it runs.
#[allow(dead_code)]
pub const MARKER: &str = "TARN-LINUX-INIT";

/// The `/init` script. `tarn.cmd=...` is not used: the script checks the
/// kernel command line for `tarn.shell` (stay in a shell on the console)
/// and otherwise reports and powers off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "TARN-LINUX-INIT"
echo "TARN-LINUX-INIT (kernel log)" > /dev/kmsg
echo "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
grep -m1 -E "^flags" /proc/cpuinfo | grep -o -w tsc | sed 's/^/cpuinfo flag: /'
mhz=$(grep -m1 "cpu MHz" /proc/cpuinfo | sed 's/.*: *//; s/\..*//')
khz=$(sed 's/.*tsc_early_khz=\([0-9]*\).*/\1/' /proc/cmdline)
if [ "$mhz" = "$((khz / 1000))" ]; then echo "tsc frequency as given: $mhz MHz"; else echo "tsc frequency differs: $mhz MHz, given $khz kHz"; fi
case " $(cat /proc/cmdline) " in
*" tarn.shell "*) exec setsid cttyhack sh ;;
*" tarn.spin "*) echo "spinning"; while :; do :; done ;;
*" tarn.reboot "*) echo "rebooting"; reboot -f ;;
*" tarn.panic "*) echo "panicking"; echo c > /proc/sysrq-trigger ;;
*" tarn.bench "*)
    echo "tarn-idle"; sleep 2
    echo "tarn-busy"; i=0; while [ $i -lt 20000 ]; do i=$((i + 1)); done
    echo "tarn-busy-end" ;;
esac
echo "poweroff"
poweroff -f
"#;

/// The cache directory.
pub fn cache_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/tarn/linux"))
}

fn run(command: &mut Command) -> Result<String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Fetches (once) and builds the kernel and initramfs; returns the cache.
pub fn fetch() -> Result<PathBuf> {
    let cache = cache_dir()?;
    let debs = cache.join("deb");
    let root = cache.join("root");
    if !cache.join(KERNEL).is_file() || !root.join("bin/busybox").is_file() {
        download(&cache, &debs, &root)?;
    } else {
        println!(
            "linux-fetch: kernel and busybox cached in {}",
            cache.display()
        );
    }
    // The initramfs is rebuilt every time (it is small; /init may change).
    let busybox = std::fs::read(root.join("bin/busybox")).map_err(|e| e.to_string())?;
    let files = [
        ("bin".to_string(), None),
        ("bin/busybox".to_string(), Some((busybox, 0o100755))),
        (
            "init".to_string(),
            Some((INIT.as_bytes().to_vec(), 0o100755)),
        ),
    ];
    std::fs::write(cache.join(INITRD), cpio(&files)).map_err(|e| e.to_string())?;
    println!(
        "linux-fetch: {} and {} in {}",
        KERNEL,
        INITRD,
        cache.display()
    );
    Ok(cache)
}

fn download(cache: &std::path::Path, debs: &std::path::Path, root: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    // The metapackage names the current kernel package.
    let depends = run(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]))?;
    let package = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .ok_or("apt-cache names no kernel package for linux-image-cloud-amd64")?
        .to_string();
    println!("linux-fetch: apt-get download {package} busybox-static");
    run(Command::new("apt-get")
        .current_dir(debs)
        .args(["download", &package, "busybox-static"]))?;
    for entry in std::fs::read_dir(debs).map_err(|e| format!("{}: {e}", debs.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|x| x == "deb") {
            run(Command::new("dpkg").arg("-x").arg(&path).arg(root))?;
        }
    }
    let kernel = std::fs::read_dir(root.join("boot"))
        .map_err(|e| format!("{}/boot: {e}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .ok_or("the kernel package has no boot/vmlinuz-*")?;
    std::fs::copy(&kernel, cache.join(KERNEL)).map_err(|e| e.to_string())?;
    Ok(())
}

/// A file's bytes and mode (`None`: a directory).
type CpioFile = Option<(Vec<u8>, u32)>;

/// A newc cpio archive of directories and files.
fn cpio(entries: &[(String, CpioFile)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |name: &str, mode: u32, data: &[u8], ino: usize| {
        let header = format!(
            "070701{ino:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for (index, (name, file)) in entries.iter().enumerate() {
        match file {
            None => put(name, 0o040755, &[], index + 1),
            Some((data, mode)) => put(name, *mode, data, index + 1),
        }
    }
    put("TRAILER!!!", 0, &[], 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_is_newc_with_a_trailer() {
        let archive = cpio(&[("init".into(), Some((b"#!x\n".to_vec(), 0o100755)))]);
        assert!(archive.starts_with(b"070701"));
        assert_eq!(archive.len() % 4, 0);
        let text = String::from_utf8_lossy(&archive);
        assert!(text.contains("init\0"));
        assert!(text.contains("TRAILER!!!"));
        let entries = tarn_pool_manager::archive::read(&archive).unwrap();
        assert_eq!(entries[0].name, "init");
        assert_eq!(entries[0].data, b"#!x\n");
    }
}
