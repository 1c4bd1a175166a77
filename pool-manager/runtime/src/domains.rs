//! Domains: how one is built, run and taken back.
//!
//! `create` runs the rules first (`PoolManager::create_domain`: name, pool,
//! parameters), then builds: a native domain is a process from a boot
//! module ([`DOMAIN_IMAGES`]), a `type=hvm` domain the `vmm` module running
//! one of its guests ([`VM_GUESTS`]) on its main thread, a Linux guest
//! likewise (`linux.rs`). Each is built in a cell of its own (`cells.rs`),
//! started suspended, handed to its pool's server by `AddThread` (its TCB
//! capability travels with the message) with its parameters, then resumed:
//! it never runs outside its pool. A server that refuses it undoes the
//! whole build. Its run time is read from the kernel's accounting through
//! the pool's `Scheduler`. `destroy` releases it from its server and
//! empties its cell, so every object of the domain goes at once.
//!
//! vCPUs: a native domain with `vcpus=N` (the `spin` image) is one process
//! with N threads, each running the image's `main` (vCPU 0 is its main
//! thread, the others `tarn_rt::process::spawn_process_thread`s in its
//! thread area), each adopted by the pool's server as a thread of the
//! domain (thread id `domain << 8 | vCPU + 1`): the policy applies the
//! domain's parameters to them together (credit: the weight and cap are
//! the domain's, its grant split over its active vCPUs). Each vCPU has its
//! hard and soft affinities (`vcpu-pin`, kept by the rules) and may be
//! offline (`vcpu-set`, xl.cfg's `maxvcpus`: suspended, still adopted). A
//! VM domain has one vCPU (its VMM's thread; several need an interrupt
//! controller model).

use crate::cells::{release_if_empty, Cell};
use crate::manager::Pools;
use crate::say;
use crate::servers::{FaultNote, BADGE_DOMAIN};
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use tarn_pool_manager::config::{self, DomainType};
use tarn_pool_manager::pools::{self as rules, DomainId, DomainParams, PoolError, PoolId};
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::sched_protocol::{self, SchedRequest};
use tarn_rt::abi::CPtr;
use tarn_rt::{invoke, Process, ProcessConfig, Resources, UntypedGrant};
use tarn_vmm::platform::StopReason;

/// The images a native domain can be built from.
pub const DOMAIN_IMAGES: &[&str] = &["spin", "tenant"];

/// The guests a `type="hvm"` domain can run (the VMM's built-in guests).
pub const VM_GUESTS: &[&str] = &[
    "long64",
    "real16",
    "prot32",
    "idle16",
    "triple16",
    "storm16",
    "outside32",
];

/// Memory a VM domain's VMM gets (log2 bytes): guest RAM, its nested page
/// tables, the Vcpu.
pub(crate) const VMM_MEMORY_BITS: u64 = 20;

/// Page-table memory of a native domain (log2 bytes): its image, stack,
/// IPC buffer and start page take nine tables (zeroing and tearing down
/// the runtime's default 1 MiB was a sixth of a domain's creation).
pub(crate) const NATIVE_VSPACE_BITS: u64 = 16;

/// Main-thread stack of a native domain (pages).
pub(crate) const NATIVE_STACK_PAGES: u64 = 8;

/// Stack of a native domain's other vCPUs (pages): `spin`'s loop needs
/// a few words; 64 vCPUs' stacks and IPC buffers take 1.3 MiB of the cell.
const VCPU_STACK_PAGES: u64 = 4;

/// The images whose `main` may run on several vCPUs at once (`tenant`
/// runs its console commands once).
const MULTI_VCPU_IMAGES: &[&str] = &["spin"];

/// Memory a native domain gets for objects of its own (log2 bytes): a page
/// (the tenant's one notification).
pub(crate) const DOMAIN_MEMORY_BITS: u64 = 12;

/// Slots of a native domain's CNode past what its build fills (its own
/// objects'; the tenant's delegated pool capability has a fixed slot).
pub(crate) const NATIVE_SPARE_SLOTS: u64 = 32;

/// The memory a VM domain is built in (log2 bytes): the VMM's process and
/// its guest's memory. A native domain's cell is sized from its image and
/// vCPUs ([`native_cell`]).
pub(crate) const VM_CELL_BITS: u64 = 23;

/// A native domain's CNode (log2 slots) and cell (log2 bytes) for `config`
/// (its image, stack and memory) and `vcpus` vCPUs: what `spawn_process`
/// and `spawn_process_thread` retype, rounded up to a buddy order. A spin
/// domain with one vCPU: 128 KiB (a 64 KiB VSpace, a 4 KiB CNode, a page
/// of memory, the TCB, 2 image pages, 8 stack pages, the IPC buffer and
/// the start page: 122 KiB); each further vCPU adds a TCB, its IPC buffer
/// and [`VCPU_STACK_PAGES`] stack pages.
fn native_cell(config: &ProcessConfig, vcpus: u32) -> Result<(u64, u64), tarn_rt::abi::Error> {
    let image = tarn_rt::process::Image::parse(config.elf)?;
    let slots = config.slots_needed(&image) + NATIVE_SPARE_SLOTS;
    let cnode_bits = u64::from(slots.next_power_of_two().trailing_zeros());
    let sized = ProcessConfig {
        cnode_bits,
        ..*config
    };
    // A thread's TCB, then its pages: each TCB starts a page of its own
    // at most.
    let thread = (1u64 << tarn_rt::abi::TCB_SIZE_BITS).next_multiple_of(tarn_rt::layout::PAGE_SIZE)
        + (1 + VCPU_STACK_PAGES) * tarn_rt::layout::PAGE_SIZE;
    let bytes = sized.bytes_needed(&image) + u64::from(vcpus.saturating_sub(1)) * thread;
    Ok((
        cnode_bits,
        u64::from(bytes.next_power_of_two().trailing_zeros()),
    ))
}

/// What the manager keeps per domain it built.
pub(crate) struct DomainRt {
    pub(crate) cell: Cell,
    /// Each vCPU's thread (vCPU 0 the process's main thread).
    pub(crate) vcpus: Vec<VcpuRt>,
    /// The process's other capabilities (deleted on destroy).
    pub(crate) objects: [CPtr; 2],
    pub(crate) paused: bool,
    pub(crate) crashed: bool,
    pub(crate) image: String,
}

/// One vCPU of a domain the manager built.
pub(crate) struct VcpuRt {
    pub(crate) tcb: CPtr,
    /// The id its pool's server knows it by ([`thread_id`]).
    pub(crate) thread_id: u64,
    /// Run time in earlier pools or servers.
    pub(crate) carried_ns: u64,
}

/// The thread id of `domain`'s vCPU `vcpu` in its pool's server.
fn thread_id(domain: DomainId, vcpu: usize) -> u64 {
    (u64::from(domain.0) << 8) | (vcpu as u64 + 1)
}

/// One vCPU's figures, for `vcpu-list`.
#[derive(Clone, Debug)]
pub struct VcpuStat {
    /// Run time (ns) in its pools.
    pub cpu_ns: u64,
    /// The CPU it runs on or last ran on in its pool (none yet: `None`).
    pub cpu: Option<u64>,
    /// Runnable (else blocked, or offline).
    pub runnable: bool,
    /// Online (`vcpu-set`).
    pub online: bool,
    /// Hard affinity (`None`: every CPU).
    pub affinity: Option<Vec<u32>>,
    /// Soft affinity (`None`: no preference).
    pub soft: Option<Vec<u32>>,
}

/// A domain's scheduling figures, for `list`, `top` and `vcpu-list`.
#[derive(Clone, Debug)]
pub struct DomainStat {
    /// Id.
    pub id: DomainId,
    /// Name.
    pub name: String,
    /// Pool name.
    pub pool: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory (KiB): the cell it is built in (its process and the memory
    /// it is given); 0 for the control domain (the root task, whose
    /// memory is the machine's, not a domain's).
    pub mem_kib: u64,
    /// `r` running/runnable, `b` blocked, `p` paused, `c` crashed, `-` control domain.
    pub state: char,
    /// Total run time (ns) as a domain (its pools' dispatch accounting),
    /// all its vCPUs together.
    pub cpu_ns: u64,
    /// Total run time (ns) of its threads since it was built (the kernel's
    /// per-thread accounting, set-up included).
    pub thread_ns: u64,
    /// Each vCPU's figures (one for the control domain).
    pub vcpu_stats: Vec<VcpuStat>,
    /// Its image.
    pub image: String,
    /// Scheduling parameters.
    pub params: DomainParams,
    /// Credit group master.
    pub group: Option<String>,
}

impl Pools {
    /// `create` from a parsed config: the rules first, then the build. The
    /// keys the config does not use are warned (`warning: ORIGIN: ...`), once
    /// each: xl.cfg keys Tarn ignores, and keys xl does not have that the
    /// pool's policy does not declare either (those it declares are its
    /// parameters).
    pub fn create_from_config(
        &mut self,
        res: &mut Resources,
        config: &config::DomainConfig,
        origin: &str,
    ) -> Result<(), String> {
        // The vCPUs built (xl's `maxvcpus`), online or not.
        let vcpus = config.max_vcpus();
        if vcpus != 1 {
            if config.kind == DomainType::Hvm {
                return Err(format!(
                    "{}: vcpus={}: a VM domain has one vCPU (several need an interrupt controller model in the VMM, not built yet)",
                    config.name, vcpus
                ));
            }
            if !MULTI_VCPU_IMAGES.contains(&config.image.as_str()) {
                return Err(format!(
                    "{}: vcpus={}: image {} runs on one vCPU (several: {})",
                    config.name,
                    vcpus,
                    config.image,
                    MULTI_VCPU_IMAGES.join(", ")
                ));
            }
        }
        // xl.cfg(5): cap is in percent of one CPU, at most 100 per vCPU
        // (libxl's check, against `max_vcpu_id + 1`: every vCPU built, as
        // `sched-credit -c`).
        if let Some(cap) = config.params.get("cap").and_then(|c| c.parse::<u32>().ok()) {
            let most = vcpus.saturating_mul(100);
            if cap > most {
                return Err(format!(
                    "{}: Cpu cap out of range, valid range is from 0 to {most} for specified number of vcpus",
                    config.name
                ));
            }
        }
        let pool = config
            .to_spec(&self.manager)
            .map_err(|e| format!("{}: {e}", config.name))?
            .pool;
        let mut warnings: Vec<String> = config.warnings.iter().map(|w| format!("{w}")).collect();
        let mut config = config.clone();
        let mut declared = rules::DomainParams::new();
        for (key, value) in config.policy_params.iter() {
            let mut one = rules::DomainParams::new();
            one.set(key, value);
            match self.check_declared(pool, &one) {
                Ok(()) => declared.set(key, value),
                Err(why) => {
                    let line = config
                        .param_lines
                        .iter()
                        .find(|(k, _)| k == key)
                        .map_or(0, |&(_, line)| line);
                    let at = if line > 0 {
                        format!("line {line}: ")
                    } else {
                        String::new()
                    };
                    warnings.push(format!("{at}{why}; not an xl key either, ignored"));
                }
            }
        }
        config.policy_params = declared;
        for w in &warnings {
            say!("warning: {origin}: {w}");
        }
        let spec = config
            .to_spec(&self.manager)
            .map_err(|e| format!("{}: {e}", config.name))?;
        let topology = crate::console::topology(self.info);
        let affinity = config
            .affinity(&topology)
            .map_err(|e| format!("{}: {e}", config.name))?;
        let soft = config
            .soft_affinity(&topology)
            .map_err(|e| format!("{}: {e}", config.name))?;
        let (id, _) = self
            .manager
            .create_domain(spec)
            .map_err(|e| format!("{}: {e}", config.name))?;
        // xl.cfg's `cpus` and `cpus_soft`: the rules check each set as
        // `vcpu-pin` does; `maxvcpus`: the vCPUs past `vcpus` start offline.
        let sets = affinity.into_iter().zip(soft).enumerate();
        for (vcpu, (hard, soft)) in sets {
            let vcpu = Some(vcpu as u32);
            let pinned = match hard {
                Some(hard) => self.manager.pin(id, vcpu, Some(hard)).map(|_| ()),
                None => Ok(()),
            }
            .map_err(|e| format!("cpus: {e}"))
            .and_then(|()| match soft {
                Some(soft) => self
                    .manager
                    .pin_soft(id, vcpu, Some(soft))
                    .map(|_| ())
                    .map_err(|e| format!("cpus_soft: {e}")),
                None => Ok(()),
            });
            if let Err(e) = pinned {
                let _ = self.manager.destroy_domain(id);
                return Err(format!("{}: {e}", config.name));
            }
        }
        if config.vcpus < config.max_vcpus() {
            let _ = self.manager.set_online(id, config.vcpus);
        }
        let vm = config.kind == DomainType::Hvm;
        let args = config.cmdline.as_deref().unwrap_or("");
        // A kernel that is a file of the config archive is a Linux guest.
        let linux = vm && crate::configs::archive_file(&config.image).is_some();
        let built = if linux {
            self.build_linux_domain(
                res,
                id,
                &config.image,
                config.ramdisk.as_deref(),
                config
                    .memory_mib
                    .map_or(crate::linux::DEFAULT_MEMORY_MIB, u64::from),
                args,
            )
        } else if config.ramdisk.is_some() {
            Err(String::from(
                "ramdisk= needs a kernel from the config archive",
            ))
        } else {
            self.build_domain(res, id, &config.image, vm, args)
        };
        if let Err(why) = built {
            let _ = self.manager.destroy_domain(id);
            return Err(format!("{}: {why}", config.name));
        }
        Ok(())
    }

    /// `create`: builds a domain and starts it in its pool (the manager has
    /// accepted `domain` already): a native task from `image`, or with `vm`
    /// a VMM running guest `image` on its main thread, which becomes the
    /// domain's vCPU.
    pub fn build_domain(
        &mut self,
        res: &mut Resources,
        domain: DomainId,
        image: &str,
        vm: bool,
        args: &str,
    ) -> Result<(), String> {
        let (pool, name) = self
            .manager
            .domain(domain)
            .map(|d| (d.pool, d.name.clone()))
            .ok_or("no such domain")?;
        let (module, choices) = if vm {
            let module = VM_GUESTS
                .contains(&image)
                .then(|| self.info.module("vmm"))
                .flatten();
            (module, VM_GUESTS)
        } else {
            let module = DOMAIN_IMAGES
                .contains(&image)
                .then(|| self.info.module(image))
                .flatten();
            (module, DOMAIN_IMAGES)
        };
        let module = module.ok_or_else(|| {
            format!(
                "no {} '{image}' (choices: {})",
                if vm { "guest" } else { "image" },
                choices.join(", ")
            )
        })?;
        let cmdline = if vm {
            format!("domain={name} guest={image} {args}")
        } else {
            String::from(args)
        };
        let vcpus = self.manager.domain(domain).map_or(1, |d| d.vcpus);
        let fault_source = self.fault_endpoint;
        let memory_bits = if vm {
            VMM_MEMORY_BITS
        } else {
            DOMAIN_MEMORY_BITS
        };
        let base = ProcessConfig {
            elf: tarn_rt::module_bytes(module),
            cpu_count: 0,
            cmdline: &cmdline,
            suspended: true,
            // A native image maps a few regions (its other vCPUs one more:
            // the thread area's three tables); a VM's VMM keeps the
            // runtime's defaults (it maps its guest's memory too).
            vspace_bits: if vm {
                ProcessConfig::default().vspace_bits
            } else if vcpus > 1 {
                NATIVE_VSPACE_BITS + 1
            } else {
                NATIVE_VSPACE_BITS
            },
            stack_pages: if vm {
                ProcessConfig::default().stack_pages
            } else {
                NATIVE_STACK_PAGES
            },
            ..ProcessConfig::default()
        };
        let (cnode_bits, cell_bits) = if vm {
            (base.cnode_bits, VM_CELL_BITS)
        } else {
            native_cell(
                &ProcessConfig {
                    memory_bits,
                    ..base
                },
                vcpus,
            )
            .map_err(|e| format!("cannot build it: {e:?}"))?
        };
        let (built, cell) = self
            .build_in_cell(res, cell_bits, |res| {
                let fault = crate::cells::mint_fault_endpoint(
                    res,
                    fault_source,
                    BADGE_DOMAIN | u64::from(domain.0),
                )?;
                let process = if vm {
                    // The VMM's memory first (the largest object; see
                    // `start_server`).
                    let (memory, phys) = res.create_untyped(memory_bits)?;
                    let untyped = [UntypedGrant {
                        cptr: memory,
                        phys,
                        size_bits: memory_bits,
                    }];
                    let config = ProcessConfig {
                        fault_endpoint: fault,
                        untyped: &untyped,
                        ..base
                    };
                    tarn_rt::spawn_process(res, &config)?
                } else {
                    let config = ProcessConfig {
                        fault_endpoint: fault,
                        memory_bits,
                        cnode_bits,
                        ..base
                    };
                    tarn_rt::spawn_process(res, &config)?
                };
                let others = (1..u64::from(vcpus))
                    .map(|vcpu| {
                        tarn_rt::process::spawn_process_thread(
                            res,
                            &process,
                            fault,
                            vcpu - 1,
                            VCPU_STACK_PAGES,
                        )
                    })
                    .collect::<Result<Vec<CPtr>, _>>()?;
                Ok((process, others))
            })
            .map_err(|e| format!("cannot build it: {e:?}"))?;
        let (built, others) = built;
        self.start_built(res, pool, domain, cell, &built, others, image)
    }

    /// The last steps of `create`, native or VM alike: records the built
    /// process (its main thread vCPU 0, `others` its other vCPUs) as
    /// `domain`'s, hands its threads to `pool`'s server (undoing
    /// everything if the server refuses one) and starts them.
    #[allow(clippy::too_many_arguments)] // the build's parts, each once
    pub(crate) fn start_built(
        &mut self,
        res: &mut Resources,
        pool: PoolId,
        domain: DomainId,
        cell: Cell,
        built: &Process,
        others: Vec<CPtr>,
        image: &str,
    ) -> Result<(), String> {
        let vcpus = core::iter::once(built.tcb)
            .chain(others)
            .enumerate()
            .map(|(vcpu, tcb)| VcpuRt {
                tcb,
                thread_id: thread_id(domain, vcpu),
                carried_ns: 0,
            })
            .collect();
        self.domains.insert(
            domain,
            DomainRt {
                cell,
                vcpus,
                objects: [built.cnode, built.vspace],
                paused: false,
                crashed: false,
                image: String::from(image),
            },
        );
        self.spare_courier(res);
        if let Err(why) = self.adopt(pool, domain) {
            self.discard(res, domain, pool);
            return Err(why);
        }
        self.release_hold(domain);
        Ok(())
    }

    /// Hands `domain`'s threads to `pool`'s server with its parameters and
    /// each vCPU's hard affinity (creation, migration, a replaced server).
    pub(crate) fn adopt(&mut self, pool: PoolId, domain: DomainId) -> Result<(), String> {
        let d = self.domains.get(&domain).ok_or("no such domain")?;
        let threads: Vec<(CPtr, u64)> = d.vcpus.iter().map(|v| (v.tcb, v.thread_id)).collect();
        let params = self
            .manager
            .domain(domain)
            .map(|d| d.params.clone())
            .unwrap_or_default();
        for &(tcb, thread_id) in &threads {
            self.request(
                pool,
                &SchedRequest::AddThread {
                    thread_id,
                    domain: domain.0,
                },
                tcb,
            )?;
        }
        self.send_params(pool, domain, &params)?;
        for vcpu in 0..threads.len() {
            if self.affinity(domain, vcpu, false).is_some()
                || self.affinity(domain, vcpu, true).is_some()
            {
                self.send_affinity(pool, domain, vcpu)?;
            }
        }
        Ok(())
    }

    /// `domain`'s vCPU `vcpu`'s hard (or `soft`) affinity as the rules
    /// keep it.
    fn affinity(&self, domain: DomainId, vcpu: usize, soft: bool) -> Option<&BTreeSet<u32>> {
        self.manager
            .domain(domain)
            .and_then(|d| {
                if soft {
                    d.soft_affinity.get(vcpu)
                } else {
                    d.affinity.get(vcpu)
                }
            })
            .and_then(Option::as_ref)
    }

    /// Hands `pool`'s server the hard and the soft affinity the rules keep
    /// for `domain`'s vCPU `vcpu` (`SetAffinity`, `SetSoftAffinity`).
    fn send_affinity(&mut self, pool: PoolId, domain: DomainId, vcpu: usize) -> Result<(), String> {
        let Some(thread_id) = self
            .domains
            .get(&domain)
            .and_then(|d| d.vcpus.get(vcpu))
            .map(|v| v.thread_id)
        else {
            return Ok(());
        };
        for soft in [false, true] {
            let mut bytes = [0u8; (sched_protocol::MAX_AFFINITY_CPUS / 8) as usize];
            let cpus = match self.affinity(domain, vcpu, soft) {
                None => None,
                Some(set) => Some(
                    sched_protocol::cpu_bitmap(set.iter().copied(), &mut bytes)
                        .ok_or("a CPU beyond the protocol's bitmap")?,
                ),
            };
            let request = if soft {
                SchedRequest::SetSoftAffinity { thread_id, cpus }
            } else {
                SchedRequest::SetAffinity { thread_id, cpus }
            };
            self.request(pool, &request, 0)?;
        }
        Ok(())
    }

    /// `vcpu-pin D V|all HARD SOFT`: the rules record the hard affinity
    /// (and refuse a set without a CPU of the domain's pool) and the soft
    /// one (`None`: kept), the pool's server applies them to each vCPU
    /// named; if it refuses one (an SEDF reservation that fits on none of
    /// the CPUs), the old affinities are restored everywhere and nothing
    /// changes. A soft affinity with no CPU in the hard one and the pool
    /// is kept but has no effect, which a warning says (as libxl's).
    pub fn pin(
        &mut self,
        domain: DomainId,
        vcpu: Option<u32>,
        cpus: Option<BTreeSet<u32>>,
        soft: Option<BTreeSet<u32>>,
    ) -> Result<(), String> {
        let pool = self
            .manager
            .domain(domain)
            .map(|d| d.pool)
            .ok_or("no such domain")?;
        let old = match cpus {
            Some(cpus) => Some(
                self.manager
                    .pin(domain, vcpu, Some(cpus))
                    .map_err(|e| format!("{e}"))?,
            ),
            None => None,
        };
        let old_soft = match soft {
            Some(soft) => match self.manager.pin_soft(domain, vcpu, Some(soft)) {
                Ok(old_soft) => Some(old_soft),
                Err(e) => {
                    if let Some(old) = old {
                        let _ = self.manager.restore_affinity(domain, old);
                    }
                    return Err(format!("{e}"));
                }
            },
            None => None,
        };
        let count = self.manager.domain(domain).map_or(0, |d| d.vcpus as usize);
        let named = |v: usize| vcpu.is_none_or(|only| only as usize == v);
        let mut result = Ok(());
        for v in (0..count).filter(|&v| named(v)) {
            result = self.send_affinity(pool, domain, v);
            if result.is_err() {
                break;
            }
        }
        if let Err(why) = result {
            if let Some(old) = old {
                let _ = self.manager.restore_affinity(domain, old);
            }
            if let Some(old_soft) = old_soft {
                let _ = self.manager.restore_soft_affinity(domain, old_soft);
            }
            for v in (0..count).filter(|&v| named(v)) {
                let _ = self.send_affinity(pool, domain, v);
            }
            return Err(why);
        }
        self.warn_unreachable_soft(domain, vcpu);
        Ok(())
    }

    /// Says, for each vCPU named, that its soft affinity has no CPU in its
    /// hard affinity and its pool (libxl's "All cpus in soft affinity of
    /// vcpu V are unreachable"): the policy ignores it.
    fn warn_unreachable_soft(&self, domain: DomainId, vcpu: Option<u32>) {
        let Some(d) = self.manager.domain(domain) else {
            return;
        };
        let Some(pool_cpus) = self.manager.pool(d.pool).map(|p| &p.cpus) else {
            return;
        };
        for (v, soft) in d.soft_affinity.iter().enumerate() {
            let Some(soft) = soft
                .as_ref()
                .filter(|_| vcpu.is_none_or(|only| only as usize == v))
            else {
                continue;
            };
            let hard = d.affinity.get(v).cloned().flatten();
            let reachable = soft
                .iter()
                .any(|c| pool_cpus.contains(c) && hard.as_ref().is_none_or(|h| h.contains(c)));
            if !reachable {
                say!(
                    "warning: {} vCPU {v}: no CPU of its soft affinity is in its hard affinity and cpupool {}: only the hard affinity is considered",
                    d.name,
                    self.pool_name(d.pool)
                );
            }
        }
    }

    /// `BreakAffinity`: a CPU leaving `pool` took the last CPU of the pool
    /// out of a vCPU's hard affinity; the rules reset it to every CPU,
    /// which is said on one line (Xen's "Breaking affinity for dXvY") and
    /// handed to the server.
    pub(crate) fn break_affinity(
        &mut self,
        domain: DomainId,
        vcpu: u32,
        pool: PoolId,
        cpu: u32,
    ) -> Result<(), (PoolId, String)> {
        let name = self
            .manager
            .domain(domain)
            .map_or_else(String::new, |d| d.name.clone());
        say!(
            "vcpu-pin: {name} vCPU {vcpu}: CPU {cpu} leaves cpupool {} and no CPU of its hard affinity is left there: affinity broken, reset to all",
            self.pool_name(pool)
        );
        self.send_affinity(pool, domain, vcpu as usize)
            .map_err(|why| (pool, format!("affinity not reset: {why}")))
    }

    /// `vcpu-set D N`: vCPUs `0..N` online, the others offline (suspended,
    /// still adopted by the pool's server, which sees them blocked).
    /// `ignore_host`: xl's `-i`; without it more vCPUs than the machine
    /// has CPUs is refused, as xl refuses to overcommit.
    pub fn set_online(
        &mut self,
        domain: DomainId,
        online: u32,
        ignore_host: bool,
        host_cpus: u32,
    ) -> Result<(), String> {
        let was = self
            .manager
            .domain(domain)
            .map(|d| d.online)
            .ok_or("no such domain")?;
        if !ignore_host && online > was && online > host_cpus {
            return Err(format!(
                "You are overcommmitting! You have {host_cpus} physical CPUs and want {online} vCPUs! Aborting, use --ignore-host to continue"
            ));
        }
        self.manager
            .set_online(domain, online)
            .map_err(|e| format!("{e}"))?;
        if let Some(d) = self.domains.get(&domain) {
            for v in d.vcpus.iter().skip(online as usize) {
                let _ = invoke::tcb_suspend(v.tcb);
            }
        }
        self.release_hold(domain);
        Ok(())
    }

    /// `ReleaseDomain`: `pool`'s server lets the domain's threads go.
    pub(crate) fn release_domain(
        &mut self,
        domain: DomainId,
        pool: PoolId,
    ) -> Result<(), (PoolId, String)> {
        let Some(d) = self.domains.get(&domain) else {
            return Ok(());
        };
        let ids: Vec<u64> = d.vcpus.iter().map(|v| v.thread_id).collect();
        for thread_id in ids {
            self.request(pool, &SchedRequest::RemoveThread { thread_id }, 0)
                .map_err(|why| (pool, format!("domain not released: {why}")))?;
        }
        Ok(())
    }

    /// `destroy`.
    pub fn destroy(&mut self, res: &mut Resources, domain: DomainId) -> Result<(), PoolError> {
        let pool = self
            .manager
            .domain(domain)
            .map(|d| d.pool)
            .ok_or(PoolError::NoSuchDomain)?;
        let actions = self.manager.destroy_domain(domain)?;
        self.hold(domain);
        self.apply(res, actions);
        self.discard(res, domain, pool);
        Ok(())
    }

    /// Stops and forgets a domain's process (after the manager let it go),
    /// and takes its memory and slots back.
    pub fn discard(&mut self, res: &mut Resources, domain: DomainId, pool: PoolId) {
        crate::linux::forget_console(domain.0);
        let Some(d) = self.domains.remove(&domain) else {
            return;
        };
        release_if_empty(&mut self.domains);
        let held: Vec<(PoolId, DomainId)> = self
            .delegations
            .keys()
            .filter(|(_, t)| *t == domain)
            .copied()
            .collect();
        for (p, t) in held {
            let _ = self.undelegate(res, p, t);
        }
        for v in &d.vcpus {
            let _ = invoke::tcb_suspend(v.tcb);
            if let Some(p) = self.pools.get(&pool) {
                let _ = invoke::scheduler_release(p.scheduler, v.tcb);
            }
        }
        self.empty_cell(res, d.cell);
    }

    /// A Linux domain's VMM says its guest ended (a message with
    /// [`VM_ENDED_LABEL`](tarn_vmm::platform::VM_ENDED_LABEL) on the domain's fault endpoint, MR0/MR1 the
    /// reason): the domain is destroyed with the reason on the console, as
    /// xl's default `on_poweroff`/`on_reboot`/`on_crash = "destroy"`. A
    /// message that names no reason is reported as such (the domain goes
    /// all the same: its VMM has stopped).
    pub(crate) fn vm_ended(&mut self, res: &mut Resources, domain: DomainId, note: &FaultNote) {
        let Some(name) = self.manager.domain(domain).map(|d| d.name.clone()) else {
            return;
        };
        if !self.domains.contains_key(&domain) {
            return;
        }
        let why = match StopReason::decode(note.rip, note.address) {
            Some(reason) => format!("{} ({reason})", reason.xl_event()),
            None => String::from("with no reason given"),
        };
        crate::output::say_line(&format!("domain {name} ended: {why}; destroyed"));
        if let Err(e) = self.destroy(res, domain) {
            crate::output::say_line(&format!("error: {name}: not destroyed: {e}"));
        }
    }

    /// `pause` / `unpause`.
    pub fn set_paused(&mut self, domain: DomainId, paused: bool) -> Result<(), String> {
        let d = self
            .domains
            .get_mut(&domain)
            .ok_or_else(|| String::from("no such domain (the control domain is not paused)"))?;
        if d.paused == paused {
            return Ok(());
        }
        d.paused = paused;
        if paused {
            self.hold(domain);
        } else {
            self.release_hold(domain);
        }
        Ok(())
    }

    /// Suspends a domain's threads (all its vCPUs; a paused domain's are
    /// already).
    pub(crate) fn hold(&self, domain: DomainId) {
        if let Some(d) = self.domains.get(&domain) {
            for v in &d.vcpus {
                let _ = invoke::tcb_suspend(v.tcb);
            }
        }
    }

    /// Resumes a held domain's online vCPUs (unless it is paused or
    /// crashed); its offline ones stay suspended.
    pub(crate) fn release_hold(&self, domain: DomainId) {
        let online = self.manager.domain(domain).map_or(0, |d| d.online);
        if let Some(d) = self.domains.get(&domain) {
            if !d.paused && !d.crashed {
                for v in d.vcpus.iter().take(online as usize) {
                    let _ = invoke::tcb_resume(v.tcb);
                }
            }
        }
    }

    /// Each vCPU's run time so far (ns, this pool's and the ones before),
    /// the CPU it last ran on in this pool (queued there now, or it ran
    /// there last), and its thread state.
    pub(crate) fn vcpu_times(&self, domain: DomainId) -> Vec<(u64, Option<u64>, u64)> {
        match self.manager.domain(domain) {
            Some(x) => self.vcpu_times_in(domain, x.pool),
            None => Vec::new(),
        }
    }

    /// [`Self::vcpu_times`] with the domain adopted by `pool`'s server: a
    /// migration reads them from the pool it leaves (the rules have
    /// already put the domain in the other).
    pub(crate) fn vcpu_times_in(
        &self,
        domain: DomainId,
        pool: PoolId,
    ) -> Vec<(u64, Option<u64>, u64)> {
        let Some(d) = self.domains.get(&domain) else {
            return Vec::new();
        };
        let scheduler = self.pools.get(&pool).map(|p| p.scheduler);
        d.vcpus
            .iter()
            .map(
                |v| match scheduler.map(|s| invoke::scheduler_query_thread(s, v.tcb)) {
                    Some(Ok(q)) => (
                        v.carried_ns + q.ran_ns,
                        q.last_cpu.checked_sub(1),
                        q.state_raw,
                    ),
                    _ => (v.carried_ns, None, 0),
                },
            )
            .collect()
    }

    /// Every domain's figures, by id.
    pub fn stats(&self) -> Vec<DomainStat> {
        self.manager
            .domains()
            .map(|d| {
                let pool = self.pool_name(d.pool);
                let group = d
                    .params
                    .get("group")
                    .and_then(|m| m.parse::<u32>().ok())
                    .filter(|&m| m != 0)
                    .and_then(|m| self.manager.domain(DomainId(m)))
                    .map(|m| m.name.clone());
                let affinity = |v: usize| {
                    d.affinity
                        .get(v)
                        .cloned()
                        .flatten()
                        .map(|set| set.into_iter().collect())
                };
                let soft = |v: usize| {
                    d.soft_affinity
                        .get(v)
                        .cloned()
                        .flatten()
                        .map(|set| set.into_iter().collect())
                };
                let mut stat = DomainStat {
                    id: d.id,
                    name: d.name.clone(),
                    pool,
                    vcpus: d.vcpus,
                    mem_kib: 0,
                    state: '-',
                    cpu_ns: 0,
                    thread_ns: 0,
                    vcpu_stats: alloc::vec![VcpuStat {
                        cpu_ns: 0,
                        cpu: None,
                        runnable: true,
                        online: true,
                        affinity: None,
                        soft: None,
                    }],
                    image: String::from("root-task"),
                    params: d.params.clone(),
                    group,
                };
                let Some(rt) = self.domains.get(&d.id) else {
                    return stat;
                };
                let runnable = ThreadState::Runnable as u64;
                stat.vcpu_stats = self
                    .vcpu_times(d.id)
                    .into_iter()
                    .enumerate()
                    .map(|(v, (cpu_ns, cpu, raw))| VcpuStat {
                        cpu_ns,
                        cpu,
                        runnable: raw == runnable,
                        online: (v as u32) < d.online,
                        affinity: affinity(v),
                        soft: soft(v),
                    })
                    .collect();
                stat.state = if rt.crashed {
                    'c'
                } else if rt.paused {
                    'p'
                } else if stat.vcpu_stats.iter().any(|v| v.runnable) {
                    'r'
                } else {
                    'b'
                };
                stat.mem_kib = (1u64 << rt.cell.bits) >> 10;
                stat.cpu_ns = stat.vcpu_stats.iter().map(|v| v.cpu_ns).sum();
                stat.thread_ns = rt
                    .vcpus
                    .iter()
                    .map(|v| invoke::tcb_read_registers(v.tcb).map_or(0, |r| r.ran_ns))
                    .sum();
                stat.image = rt.image.clone();
                stat
            })
            .collect()
    }
}
