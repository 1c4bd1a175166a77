//! `cargo xtask new-policy NAME [--path DIR]`: a scheduling-policy crate of
//! its own, outside Tarn's workspace, using Tarn's crates by path: the
//! policy (round robin to start from), simulator tests, a simulator binary
//! with the policy registered, a server binary for `x86_64-unknown-none`
//! and its build configuration.

use std::fs;
use std::path::{Path, PathBuf};

use crate::ctx::Ctx;
use crate::Result;

/// The files of a new crate: (path in the crate, template).
const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/policy/Cargo.toml.in"),
    ),
    (
        "README.md",
        include_str!("../templates/policy/README.md.in"),
    ),
    ("src/lib.rs", include_str!("../templates/policy/lib.rs.in")),
    (
        "src/bin/@NAME@-sim.rs",
        include_str!("../templates/policy/sim.rs.in"),
    ),
    (
        "tests/sim.rs",
        include_str!("../templates/policy/tests.rs.in"),
    ),
    (
        "server/Cargo.toml",
        include_str!("../templates/policy/server.Cargo.toml.in"),
    ),
    (
        "server/src/main.rs",
        include_str!("../templates/policy/server.main.rs.in"),
    ),
    (
        ".cargo/config.toml",
        include_str!("../templates/policy/cargo-config.toml.in"),
    ),
    (
        "rust-toolchain.toml",
        include_str!("../../../rust-toolchain.toml"),
    ),
    (".gitignore", "/target\n"),
];

/// A policy name, as pools and config archives use it: a lower-case letter,
/// then up to 31 lower-case letters, digits, `-` or `_`.
pub fn check_name(name: &str) -> Result<()> {
    let valid = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a policy name (a lower-case letter, then up to 31 lower-case letters, digits, - or _)"
        ))
    }
}

/// `prio-lru` → `PrioLru`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The crate's files for policy `name` with Tarn at `tarn`.
pub fn render(name: &str, tarn: &Path) -> Vec<(String, String)> {
    let krate = format!("tarn-policy-{name}");
    let fill = |text: &str| {
        text.replace("@CRATE_@", &krate.replace('-', "_"))
            .replace("@CRATE@", &krate)
            .replace("@TYPE@", &type_name(name))
            .replace("@TARN@", &tarn.display().to_string())
            .replace("@NAME@", name)
    };
    FILES
        .iter()
        .map(|(path, text)| (fill(path), fill(text)))
        .collect()
}

/// Creates the crate in `dir` (default: `./NAME`), which must not exist.
pub fn new_policy(ctx: &Ctx, name: &str, dir: Option<PathBuf>) -> Result<()> {
    check_name(name)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        return Err(format!("{} exists already", dir.display()));
    }
    let tarn = fs::canonicalize(&ctx.root).map_err(|e| format!("{}: {e}", ctx.root.display()))?;
    for (path, text) in render(name, &tarn) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    // Line lengths depend on the name: let rustfmt lay it out (best effort;
    // the crate is valid either way).
    let _ = ctx.cargo().arg("fmt").current_dir(&dir).status();
    println!(
        "created {} (policy `{name}`): `cargo test` there runs it in the simulator, \
         `cargo server` builds target/x86_64-unknown-none/release/{name}",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types() {
        assert!(check_name("prio").is_ok());
        assert!(check_name("prio-2_x").is_ok());
        for bad in ["", "Prio", "2prio", "pr io", "prio/x", &"x".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(type_name("prio"), "Prio");
        assert_eq!(type_name("fair-share_v2"), "FairShareV2");
    }

    #[test]
    fn every_placeholder_is_filled() {
        let files = render("fair-share", Path::new("/opt/tarn"));
        for (path, text) in &files {
            assert!(!path.contains('@') && !text.contains('@'), "{path}");
        }
        let find = |p: &str| &files.iter().find(|(path, _)| path == p).unwrap().1;
        assert!(find("Cargo.toml").contains("path = \"/opt/tarn/sched-servers\""));
        assert!(find("Cargo.toml").contains("name = \"tarn-policy-fair-share\""));
        assert!(find("server/src/main.rs")
            .contains("serve(tarn_policy_fair_share::FairShare::default())"));
        assert!(find("server/Cargo.toml").contains("name = \"fair-share\""));
        assert!(files.iter().any(|(p, _)| p == "src/bin/fair-share-sim.rs"));
    }
}
