//! The configs of this boot, and the config archive. They come from the
//! boot's config archive (the `initrd` module: a cpio archive, QEMU's
//! `-initrd`, `cargo xtask run --config DIR`) when there is one, else from
//! the built-in configs the root task passes to [`load`] (its `config/`).
//! Pool configs live in `pools/` and `pools/auto/`, domain configs in
//! `domains/` and `domains/auto/`; the archive may also hold policy
//! servers (`servers/NAME`), guest kernels and ramdisks (any file, by
//! path), and `autorun.cmds`. An archive that cannot be read is reported
//! and the built-in configs are used.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use tarn_pool_manager::archive;
use tarn_rt::abi::boot::BootInfo;
use tarn_rt::println;

/// Files larger than this are not config text (guest images): they are
/// only indexed (`archive_file`).
pub(crate) const MAX_TEXT_FILE: usize = 64 * 1024;

/// Every file of the config archive: (path, offset, length) in the module.
pub(crate) static FILES: spin::Mutex<Vec<(String, usize, usize)>> = spin::Mutex::new(Vec::new());

/// Where file `path` of the config archive is: (offset, length) in the
/// `initrd` module.
pub fn archive_file(path: &str) -> Option<(usize, usize)> {
    FILES
        .lock()
        .iter()
        .find(|(p, _, _)| p == path)
        .map(|&(_, offset, length)| (offset, length))
}

/// The config files of this boot: (path such as `pools/auto/rt.cfg`, text).
pub(crate) static CONFIGS: spin::Mutex<Vec<(String, String)>> = spin::Mutex::new(Vec::new());

/// The policy servers of the config archive (`servers/NAME`): (NAME, ELF).
pub(crate) static SERVERS: spin::Mutex<Vec<(String, &'static [u8])>> = spin::Mutex::new(Vec::new());

/// The ELF of policy server `name` from the config archive, if it has one.
pub fn server_elf(name: &str) -> Option<&'static [u8]> {
    SERVERS
        .lock()
        .iter()
        .find(|(n, _)| n == name)
        .map(|&(_, elf)| elf)
}

/// The names of the config archive's policy servers.
pub fn server_names() -> Vec<String> {
    SERVERS.lock().iter().map(|(n, _)| n.clone()).collect()
}

/// Loads the configs: the `initrd` archive's, or the built-in ones
/// (`built_in`: (directory, [(file name, text)]), the root task's
/// `config/`).
pub fn load(info: &BootInfo, built_in: &[(&str, &[(&str, &str)])]) {
    let mut files = Vec::new();
    let mut servers = Vec::new();
    let from_archive = info.module("initrd").map(|module| {
        let bytes = tarn_rt::module_bytes(module);
        archive::read(bytes).map(|entries| {
            // Every file is indexed by its place in the archive (guest
            // images are used from there, as bytes); only the small ones
            // are kept as text (configs, scripts).
            *FILES.lock() = entries
                .iter()
                .map(|e| {
                    let offset = e.data.as_ptr() as usize - bytes.as_ptr() as usize;
                    (e.name.to_string(), offset, e.data.len())
                })
                .collect();
            entries
                .into_iter()
                .filter(|e| match e.name.strip_prefix("servers/") {
                    // Policy servers stay bytes (ELF), named by policy.
                    Some(name) => {
                        servers.push((name.to_string(), e.data));
                        false
                    }
                    None => true,
                })
                .filter(|e| e.data.len() <= MAX_TEXT_FILE)
                .map(|e| {
                    (
                        e.name.to_string(),
                        String::from_utf8_lossy(e.data).into_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
    });
    match from_archive {
        Some(Ok(entries)) => {
            println!(
                "root: configs from the initrd archive ({} files)",
                entries.len()
            );
            files = entries;
        }
        Some(Err(error)) => {
            println!("error: root: initrd: {error}; using the built-in configs");
        }
        None => {}
    }
    if files.is_empty() {
        for &(dir, table) in built_in {
            for (name, text) in table {
                files.push((format!("{dir}/{name}"), String::from(*text)));
            }
        }
    }
    *CONFIGS.lock() = files;
    if !servers.is_empty() {
        let names: Vec<&str> = servers.iter().map(|(n, _)| n.as_str()).collect();
        println!(
            "root: policy servers from the initrd archive: {}",
            names.join(" ")
        );
    }
    *SERVERS.lock() = servers;
}

/// The files directly in `dir` (not in its subdirectories), by path order:
/// every file of `pools/` and `domains/` (Xen's example pool file is named
/// `cpupool`), only the `*.cfg` of the `auto/` directories.
pub fn files_in(dir: &str) -> Vec<(String, String)> {
    let any_name = !dir.ends_with("/auto");
    let mut found: Vec<(String, String)> = CONFIGS
        .lock()
        .iter()
        .filter(|(path, _)| {
            path.strip_prefix(dir)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| {
                    !rest.is_empty() && !rest.contains('/') && (any_name || rest.ends_with(".cfg"))
                })
        })
        .cloned()
        .collect();
    found.sort();
    found
}

/// The text of config file `name` for pools (`pool`) or domains: from the
/// directory itself or its `auto/`; `name` as given, else with `.cfg`
/// added (xl's `cpupool-create cpupool` and `cpupool-create rt` both find
/// their file). A name with a `/` is never looked up.
pub fn config_file(pool: bool, name: &str) -> Option<String> {
    if name.contains('/') {
        return None;
    }
    let dir = if pool { "pools" } else { "domains" };
    let configs = CONFIGS.lock();
    [
        format!("{dir}/{name}"),
        format!("{dir}/auto/{name}"),
        format!("{dir}/{name}.cfg"),
        format!("{dir}/auto/{name}.cfg"),
    ]
    .iter()
    .find_map(|path| configs.iter().find(|(p, _)| p == path))
    .map(|(_, text)| text.clone())
}

/// The config files the console can name, pools then domains.
pub fn config_files() -> (Vec<String>, Vec<String>) {
    let names = |dir: &str| -> Vec<String> {
        files_in(dir)
            .into_iter()
            .chain(files_in(&format!("{dir}/auto")))
            .filter_map(|(path, _)| path.rsplit('/').next().map(String::from))
            .collect()
    };
    (names("pools"), names("domains"))
}

/// The archive's `autorun.cmds`: console commands to run once the auto
/// configs are up, one per line (`#` starts a comment). A boot script for
/// machines without console input (Bochs' serial port is output only).
pub fn autorun() -> Vec<String> {
    CONFIGS
        .lock()
        .iter()
        .find(|(path, _)| path == "autorun.cmds")
        .map(|(_, text)| {
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}
