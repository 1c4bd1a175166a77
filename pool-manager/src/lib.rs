//! Xen cpupool semantics in user mode: the pool manager's pure core.
//!
//! This crate owns the *rules*, not the syscalls. [`pools::PoolManager`] holds
//! every pool and domain; each operation validates everything first and
//! either returns a [`pools::PoolError`] with the state untouched, or changes
//! the state and returns the [`pools::Action`]s the runtime must carry out
//! against the kernel (`Cpu` / `Scheduler` capabilities) and the scheduler
//! servers. [`config`] parses xlcpupool.cfg and xl.cfg text (files or the
//! inline `key=value` console form) into the specs these operations take.
//! [`command`] holds the console's command table, its input rules and the
//! parser from a command line to a typed command; [`tenant`] the one rule
//! deciding what a tenant holding a pool capability may run; [`xl`] the
//! lines xl prints (`list`, `cpupool-list`, `sched-credit`, `sched-sedf`,
//! `info`), which the console prints the same way.
//!
//! The runtime that carries the actions out and serves the console is the
//! crate beside this one, `tarn-pool-runtime` (`pool-manager/runtime/`),
//! which runs only on Tarn.
//!
//! # Rules (`XEN-SEMANTICS.md`)
//!
//! - Each CPU is in at most one pool; CPUs in none are free. Pool-0 exists from
//!   boot (all CPUs, or `pool0_cpus`), runs credit, is never deactivated or
//!   deleted; the control domain lives in it and never migrates.
//! - A pool is *defined* (attributes only: unique name, `credit` | `sedf`, CPUs
//!   as a list, range or count), then *activated* (every listed CPU must be
//!   free, or enough free ones for a count), later *deactivated* (only without
//!   domains; its CPUs become free) and *deleted* (only when deactivated).
//! - `cpu-add` takes only free CPUs (several: each refused one is reported, the
//!   others are added); `cpu-remove` frees a CPU, a pool's last one only when
//!   it has no domains (as xl).
//! - Domains start only in active pools with CPUs and migrate only to them.
//! - `cpupool-destroy` forgets a pool `cpupool-create` made; a pool defined
//!   with `cpupool-new` stays defined.
//! - A live pool can change policy (credit ↔ sedf); its domains keep running.
//!
//! # Action model
//!
//! Actions come in the order they must be executed:
//! `StartScheduler` before the pool's `BindCpu`s; `RevokeCpu`s (negotiated:
//! the server is asked to release, revoked after a deadline) before
//! `StopScheduler`; `MoveDomain` = source releases the threads, destination
//! adopts them; `AdoptDomain` / `ReleaseDomain` for domain create / destroy;
//! `ChangeScheduler` replaces a live pool's server on the same `Scheduler`.
//! The state already reflects the actions when they are returned; the runtime
//! treats a failing action as a server failure (fallback), not as a refusal.
//!
//! # xl commands
//!
//! | xl command | operation |
//! | --- | --- |
//! | `cpupool-new` / `pool-new` | [`pools::PoolManager::define`] |
//! | `cpupool-start` | [`pools::PoolManager::activate`] |
//! | `cpupool-create` | [`pools::PoolManager::create`] |
//! | `cpupool-destroy` | [`pools::PoolManager::deactivate`] |
//! | `cpupool-delete` | [`pools::PoolManager::delete`] |
//! | `cpupool-rename` | [`pools::PoolManager::rename`] |
//! | `cpupool-cpu-add` | [`pools::PoolManager::cpu_add`] |
//! | `cpupool-cpu-remove` | [`pools::PoolManager::cpu_remove`] |
//! | `cpupool-migrate` | [`pools::PoolManager::migrate`] |
//! | `cpupool-sched` | [`pools::PoolManager::set_scheduler`] |
//! | `cpupool-list [-c]` | [`pools::PoolManager::list`], [`xl::render_cpupool_list`] |
//! | `create` | [`config::parse_domain_config`] then [`pools::PoolManager::create_domain`] |
//! | `destroy` | [`pools::PoolManager::destroy_domain`] |
//! | `info` (free CPUs) | [`pools::PoolManager::free_cpus`] |
//! | config file / inline pool text | [`config::parse_pool_config`], [`config::parse_pool_inline`] |

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod archive;
pub mod command;
pub mod config;
pub mod pools;
pub mod tenant;
pub mod xl;
