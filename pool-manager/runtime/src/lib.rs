//! The pool manager at work: it carries out the [`Action`]s of the
//! cpupool rules ([`tarn_pool_manager::pools::PoolManager`]) against the
//! kernel and the scheduler servers, and serves the xl console.
//!
//! # Why a crate of its own
//!
//! `tarn-pool-manager` (the directory above) holds the rules: pure,
//! `no_std`, tested on the host with plain `cargo test`. This crate holds
//! what makes system calls: it runs only on Tarn (`x86_64-unknown-none`,
//! linked into the root task) and has no host tests; the boot scenarios
//! test it. Two crates keep that line visible and checked by the compiler:
//! nothing here can creep into the rules, and the rules' host tests never
//! need the runtime's dependencies (`tarn-rt`'s system calls, the VMM's
//! platform) to build.
//!
//! # Where each concern lives
//!
//! | question | file |
//! | --- | --- |
//! | what the manager holds, how an [`Action`] is carried out | `manager.rs` ([`Pools`], [`Pools::apply`], [`Pools::service`]) |
//! | how a CPU is handed over (negotiation, revocation); `cpupool-numa-split` | `cpus.rs` |
//! | how a pool gets a server; what happens when a server dies (faults, replacement, fallback); a live policy change | `servers.rs` |
//! | how a request reaches a server with a deadline | `courier.rs` |
//! | where a server's ELF comes from (policies by name, loaded at run time) | `policies.rs` |
//! | how a domain is built, run, paused and destroyed | `domains.rs` |
//! | how a Linux guest is built (memory, console page) | `linux.rs` |
//! | what `cpupool-migrate` does | `migrate.rs` |
//! | scheduling parameters (`sched-param`, `sched-credit`, `sched-sedf`, groups) | `params.rs` |
//! | what a tenant may do | the rule: `tarn_pool_manager::tenant::authorize` |
//! | how a pool is delegated, how a tenant carves a sub-pool | `tenants.rs` |
//! | how a CPU loan works | `loans.rs` |
//! | where everything built goes back to (cells) | `cells.rs` |
//! | where configs come from (built in or the config archive) | `configs.rs` |
//! | where output goes (the console, or a command's capture) | `output.rs` |
//! | the xl console: its command table, views, UARTs and control channel | `console/` |
//!
//! The console calls the manager and never the other way round: the
//! manager's own lines go through `output.rs`, which the console reads.
//! The root task boots, hands the manager its capabilities (every `Cpu`
//! capability, the memory left) and starts the manager, the console and
//! the boot-time configs.
//!
//! [`Action`]: tarn_pool_manager::pools::Action

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod cells;
pub mod configs;
pub mod console;
mod courier;
mod cpus;
mod domains;
mod linux;
mod loans;
mod manager;
mod migrate;
mod output;
mod params;
mod policies;
mod servers;
mod tenants;

pub use console::Console;
pub use manager::{Clock, Pools};
pub(crate) use output::say;
