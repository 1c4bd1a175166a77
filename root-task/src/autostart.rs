//! Boot-time configuration: the pool configs of `pools/auto/` are created,
//! then the domain configs of `domains/auto/` started, before the console
//! prompts (as Xen's `xendomains` and cpupool auto directories do); the
//! configs of `pools/` and `domains/` wait to be named by the console
//! (`cpupool-create FILE.cfg`, `create FILE.cfg`).
//!
//! The configs come from the boot's config archive (the `initrd` module: a
//! cpio archive, QEMU's `-initrd`, `cargo xtask run --config DIR`) when there
//! is one, else from `root-task/config/`, built into the root task's image
//! (`build.rs`); `tarn_pool_runtime::configs` keeps them for the console. `noauto` on the kernel command line skips the auto configs
//! and the archive's `autorun.cmds` (console commands run once they are up).
//! A config that is malformed or refused is reported with its path (and
//! line and key) and skipped; an archive that cannot be read is reported
//! and the built-in configs are used.

use alloc::format;
use tarn_pool_manager::config;
use tarn_pool_runtime::configs::{self, files_in};
use tarn_pool_runtime::Pools;
use tarn_rt::abi::boot::BootInfo;
use tarn_rt::{println, Resources};

include!(concat!(env!("OUT_DIR"), "/autostart.rs"));

/// Loads the configs (`tarn_pool_runtime::configs`): the config archive's,
/// or those built in from `config/`.
pub fn load(info: &BootInfo) {
    configs::load(
        info,
        &[
            ("pools/auto", POOLS),
            ("domains/auto", DOMAINS),
            ("pools", POOL_FILES),
            ("domains", DOMAIN_FILES),
        ],
    );
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
                pools
                    .create_from_config(res, &c, &format!("auto: {path}"))
                    .map(|()| c.name)
            });
        match result {
            Ok(name) => println!("auto: domain {name} from {path}"),
            Err(error) => println!("error: auto: {path}: {error}"),
        }
    }
}
