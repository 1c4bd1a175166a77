//! Boot-time configuration: the pool configs of `config/pools/auto/` are
//! created, then the domain configs of `config/domains/auto/` started, before
//! the console prompts (as Xen's `xendomains` and cpupool auto directories
//! do). They travel in the root task's image (`build.rs`); `cargo xtask run
//! --config DIR` builds another directory in, and `noauto` on the kernel
//! command line skips them. A config that is malformed or refused is
//! reported with its file name (and line) and skipped.

use crate::console;
use crate::pools::Pools;
use alloc::vec::Vec;
use tarn_pool_manager::config;
use tarn_rt::{println, Resources};

include!(concat!(env!("OUT_DIR"), "/autostart.rs"));

/// The text of config file `name` for pools (`pool`) or domains: from the
/// directory itself or its `auto/`.
pub fn config_file(pool: bool, name: &str) -> Option<&'static str> {
    let (files, auto) = if pool {
        (POOL_FILES, POOLS)
    } else {
        (DOMAIN_FILES, DOMAINS)
    };
    files
        .iter()
        .chain(auto.iter())
        .find(|(file, _)| *file == name)
        .map(|(_, text)| *text)
}

/// The config files the console can name, pools then domains.
pub fn config_files() -> (Vec<&'static str>, Vec<&'static str>) {
    let names = |a: &[(&'static str, &'static str)], b: &[(&'static str, &'static str)]| {
        a.iter().chain(b.iter()).map(|(n, _)| *n).collect()
    };
    (names(POOL_FILES, POOLS), names(DOMAIN_FILES, DOMAINS))
}

/// Creates the auto pools, then starts the auto domains.
pub fn run(res: &mut Resources, pools: &mut Pools, cmdline: &str) {
    if cmdline.split_whitespace().any(|w| w == "noauto") {
        return;
    }
    for (file, text) in POOLS {
        let spec = match config::parse_pool_config(text) {
            Ok(spec) => spec,
            Err(error) => {
                println!("auto: pools/{file}: {error}");
                continue;
            }
        };
        let name = spec.name.clone();
        match pools.manager.create(spec) {
            Ok((_, actions)) => {
                pools.apply(res, actions);
                println!("auto: cpupool {name} from pools/{file}");
            }
            Err(error) => println!("auto: pools/{file}: {name}: {error}"),
        }
    }
    for (file, text) in DOMAINS {
        let result = config::parse_domain_config(text)
            .map_err(|e| alloc::format!("{e}"))
            .and_then(|c| console::create_from_config(res, pools, &c).map(|()| c.name));
        match result {
            Ok(name) => println!("auto: domain {name} from domains/{file}"),
            Err(error) => println!("auto: domains/{file}: {error}"),
        }
    }
}
