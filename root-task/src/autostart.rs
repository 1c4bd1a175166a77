//! Boot-time configuration: the pool configs of `pools/auto/` are created,
//! then the domain configs of `domains/auto/` started, before the console
//! prompts (as Xen's `xendomains` and cpupool auto directories do); the
//! configs of `pools/` and `domains/` wait to be named by the console
//! (`cpupool-create FILE.cfg`, `create FILE.cfg`).
//!
//! The configs come from the boot's config archive (the `initrd` module: a
//! cpio archive, QEMU's `-initrd`, `cargo xtask run --config DIR`) when there
//! is one, else from `root-task/config/`, built into the root task's image
//! (`build.rs`). `noauto` on the kernel command line skips the auto configs
//! and the archive's `autorun.cmds` (console commands run once they are up).
//! A config that is malformed or refused is reported with its path (and
//! line and key) and skipped; an archive that cannot be read is reported
//! and the built-in configs are used.

use crate::console;
use crate::pools::Pools;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use tarn_pool_manager::{archive, config};
use tarn_rt::abi::boot::BootInfo;
use tarn_rt::{println, Resources};

include!(concat!(env!("OUT_DIR"), "/autostart.rs"));

/// Files larger than this are not config text (guest images): they are
/// only indexed (`archive_file`).
const MAX_TEXT_FILE: usize = 64 * 1024;

/// Every file of the config archive: (path, offset, length) in the module.
static FILES: spin::Mutex<Vec<(String, usize, usize)>> = spin::Mutex::new(Vec::new());

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
static CONFIGS: spin::Mutex<Vec<(String, String)>> = spin::Mutex::new(Vec::new());
/// The policy servers of the config archive (`servers/NAME`): (NAME, ELF).
static SERVERS: spin::Mutex<Vec<(String, &'static [u8])>> = spin::Mutex::new(Vec::new());

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

/// Loads the configs: the `initrd` archive's, or the built-in ones.
pub fn load(info: &BootInfo) {
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
        for (dir, table) in [
            ("pools/auto", POOLS),
            ("domains/auto", DOMAINS),
            ("pools", POOL_FILES),
            ("domains", DOMAIN_FILES),
        ] {
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
fn files_in(dir: &str) -> Vec<(String, String)> {
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

/// Creates the auto pools, then starts the auto domains.
pub fn run(res: &mut Resources, pools: &mut Pools, cmdline: &str, topology: &config::Topology) {
    if cmdline.split_whitespace().any(|w| w == "noauto") {
        return;
    }
    for (path, text) in files_in("pools/auto") {
        let free = pools.manager.free_cpus().into_iter().collect();
        let spec = match config::parse_pool_config(&text, &topology.clone().with_free(free)) {
            Ok((spec, warnings)) => {
                for w in warnings {
                    println!("warning: auto: {path}: {w}");
                }
                spec
            }
            Err(error) => {
                println!("error: auto: {path}: {error}");
                continue;
            }
        };
        let name = spec.name.clone();
        match pools.activate(res, &name, true, |m| m.create(spec).map(|(_, a)| a)) {
            Ok(_) => println!("auto: cpupool {name} from {path}"),
            Err(error) => println!("error: auto: {path}: {error}"),
        }
    }
    for (path, text) in files_in("domains/auto") {
        let result = config::parse_domain_config(&text)
            .map_err(|e| format!("{e}"))
            .and_then(|c| {
                console::create_from_config(res, pools, &c, &format!("auto: {path}"))
                    .map(|()| c.name)
            });
        match result {
            Ok(name) => println!("auto: domain {name} from {path}"),
            Err(error) => println!("error: auto: {path}: {error}"),
        }
    }
}
