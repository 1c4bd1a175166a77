//! Policies by name: a pool names its policy (`sched=NAME`) and the server
//! of that policy is found here: the boot image's `policy-NAME` module,
//! else the config archive's `servers/NAME`, else one loaded at run time
//! over the control channel (`tarnctl load-policy NAME FILE`, piece by
//! piece). The rules learn which names exist ([`Pools::refresh_policies`])
//! and refuse others; a server proves it runs the policy when it greets
//! (`servers.rs`).

use crate::manager::Pools;
use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use tarn_pool_manager::pools::Sched;
use tarn_rt::abi::boot::BootInfo;

/// Largest policy server ELF the control channel loads.
pub(crate) const MAX_LOADED_POLICY_BYTES: u32 = 1 << 20;

/// Boot modules named `policy-NAME` are the servers of policy `NAME`.
pub(crate) const POLICY_MODULE_PREFIX: &str = "policy-";

impl Pools {
    /// The server ELF of policy `name`: the boot module `policy-NAME`, else
    /// the config archive's `servers/NAME`, else one loaded at run time.
    pub(crate) fn policy_elf(&self, name: &str) -> Option<Cow<'static, [u8]>> {
        let module = format!("{POLICY_MODULE_PREFIX}{name}");
        if let Some(module) = self.info.module(&module) {
            return Some(Cow::Borrowed(tarn_rt::module_bytes(module)));
        }
        if let Some(elf) = crate::configs::server_elf(name) {
            return Some(Cow::Borrowed(elf));
        }
        self.loaded.get(name).map(|elf| Cow::Owned(elf.clone()))
    }

    /// One piece of a policy server ELF from the control channel
    /// (`tarnctl load-policy`): pieces arrive in order; the last one makes
    /// policy `name` available (its ELF header is checked; the server
    /// proves itself when a pool starts it). Returns what to tell the host.
    pub fn load_policy_piece(
        &mut self,
        name: &str,
        total: u32,
        offset: u32,
        chunk: &[u8],
    ) -> Result<Option<String>, String> {
        if Sched::from_name(name).is_none() {
            return Err(format!("'{name}' is not a policy name"));
        }
        if offset == 0 {
            if self.manager.policies().iter().any(|p| p == name) {
                return Err(format!("policy {name} exists already"));
            }
            if total == 0 || total > MAX_LOADED_POLICY_BYTES {
                return Err(format!(
                    "{total} bytes: a policy server is 1..={MAX_LOADED_POLICY_BYTES} bytes"
                ));
            }
            self.loading = Some((String::from(name), total, Vec::new()));
        }
        let Some((loading, size, bytes)) = self.loading.as_mut() else {
            return Err(String::from("a load must start at offset 0"));
        };
        let end = bytes.len() + chunk.len();
        if loading.as_str() != name
            || *size != total
            || offset as usize != bytes.len()
            || end > total as usize
        {
            self.loading = None;
            return Err(format!(
                "{name}: piece at {offset} out of order; load abandoned"
            ));
        }
        bytes.extend_from_slice(chunk);
        if end < total as usize {
            return Ok(None);
        }
        let Some((name, _, elf)) = self.loading.take() else {
            return Ok(None);
        };
        if !elf.starts_with(b"\x7fELF") {
            return Err(format!("{name}: not an ELF file; not loaded"));
        }
        let size = elf.len();
        self.loaded.insert(name.clone(), elf);
        self.refresh_policies();
        Ok(Some(format!("policy {name} loaded ({size} bytes)")))
    }

    /// Tells the manager which policies exist: the boot image's, the config
    /// archive's and those loaded at run time.
    pub fn refresh_policies(&mut self) {
        let mut names = policy_modules(self.info);
        names.extend(crate::configs::server_names());
        names.extend(self.loaded.keys().cloned());
        names.sort();
        names.dedup();
        self.manager.set_policies(names);
    }
}

/// The policies of the boot image: modules named `policy-NAME`.
pub(crate) fn policy_modules(info: &BootInfo) -> Vec<String> {
    let mut names: Vec<String> = info
        .modules()
        .iter()
        .filter_map(|m| m.name().strip_prefix(POLICY_MODULE_PREFIX))
        .map(String::from)
        .collect();
    names.sort();
    names
}
