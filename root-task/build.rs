//! Embeds the default system configuration: every `*.cfg` file under
//! `config/pools/auto/` (pools activated at boot) and `config/domains/auto/`
//! (domains started at boot), in name order, and those of `config/pools/`
//! and `config/domains/` (named by the console's `cpupool-create FILE` and
//! `create FILE`). A config archive given at boot (`-initrd`) replaces them
//! all (`autostart.rs`).
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn configs(dir: &Path) -> Vec<PathBuf> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cfg"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn table(name: &str, files: &[PathBuf]) -> String {
    let mut out = format!(
        "/// `{name}` configs: (file name, text).\npub const {name}: &[(&str, &str)] = &[\n"
    );
    for file in files {
        println!("cargo:rerun-if-changed={}", file.display());
        let base = file.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let _ = writeln!(
            out,
            "    ({base:?}, include_str!({:?})),",
            file.display().to_string()
        );
    }
    out.push_str("];\n");
    out
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let root = Path::new(&manifest).join("config");
    let pools = configs(&root.join("pools/auto"));
    let domains = configs(&root.join("domains/auto"));
    let pool_files = configs(&root.join("pools"));
    let domain_files = configs(&root.join("domains"));
    let text = table("POOLS", &pools)
        + &table("DOMAINS", &domains)
        + &table("POOL_FILES", &pool_files)
        + &table("DOMAIN_FILES", &domain_files);
    std::fs::write(format!("{out}/autostart.rs"), text).expect("write autostart.rs");
}
