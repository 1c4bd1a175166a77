//! Where things are (workspace root, target directory) and small helpers for
//! running commands.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The result type of every xtask step; errors are messages for the user.
pub type Result<T> = std::result::Result<T, String>;

/// Paths shared by every command.
pub struct Ctx {
    /// The workspace root (the directory holding the top-level Cargo.toml).
    pub root: PathBuf,
    /// Cargo's target directory.
    pub target: PathBuf,
}

impl Ctx {
    /// Finds the workspace from this crate's location (`tools/xtask`).
    pub fn new() -> Ctx {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest
            .ancestors()
            .nth(2)
            .unwrap_or(manifest)
            .to_path_buf();
        let target = match env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        };
        Ctx { root, target }
    }

    /// `target/xtask`: ISOs, generated emulator configs, logs.
    pub fn xtask_dir(&self) -> PathBuf {
        self.target.join("xtask")
    }

    /// Where the log of boot scenario or run `name` goes.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.xtask_dir().join("logs").join(format!("{name}.log"))
    }

    /// A `cargo` command run from the workspace root (the same cargo that
    /// runs xtask, when known).
    pub fn cargo(&self) -> Command {
        let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let mut command = Command::new(cargo);
        command.current_dir(&self.root);
        command
    }
}

/// The command line of `command`, for messages.
pub fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `command` with inherited stdio; fails unless it exits successfully.
pub fn run_checked(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .map_err(|e| format!("cannot run `{}`: {e}", describe(command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(command)))
    }
}

/// Whether `program` is found on `PATH`.
pub fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|paths| {
        env::split_paths(&paths).any(|dir| {
            let candidate = dir.join(program);
            candidate.is_file()
        })
    })
}
