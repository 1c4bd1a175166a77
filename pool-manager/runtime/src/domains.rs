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
//! Not built yet: more than one vCPU per native domain.

use crate::cells::{release_if_empty, Cell};
use crate::manager::Pools;
use crate::say;
use crate::servers::{FaultNote, BADGE_DOMAIN};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use tarn_pool_manager::config::{self, DomainType};
use tarn_pool_manager::pools::{self as rules, DomainId, DomainParams, PoolError, PoolId};
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::sched_protocol::SchedRequest;
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
/// IPC buffer and start page take a dozen tables; zeroing and tearing down
/// the runtime's default 1 MiB was a sixth of a domain's creation.
pub(crate) const NATIVE_VSPACE_BITS: u64 = 16;

/// Main-thread stack of a native domain (pages).
pub(crate) const NATIVE_STACK_PAGES: u64 = 16;

/// Memory a native domain gets for objects of its own (log2 bytes).
pub(crate) const DOMAIN_MEMORY_BITS: u64 = 16;

/// The memory a domain is built in (log2 bytes): its process (image, stack,
/// page tables, CNode, TCB) and the memory it is given.
pub(crate) const NATIVE_CELL_BITS: u64 = 22;

pub(crate) const VM_CELL_BITS: u64 = 23;

/// What the manager keeps per domain it built.
pub(crate) struct DomainRt {
    pub(crate) cell: Cell,
    pub(crate) tcb: CPtr,
    /// The process's other capabilities (deleted on destroy).
    pub(crate) objects: [CPtr; 4],
    pub(crate) thread_id: u64,
    /// Run time in earlier pools or servers.
    pub(crate) carried_ns: u64,
    pub(crate) paused: bool,
    pub(crate) crashed: bool,
    pub(crate) image: String,
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
    /// Memory (MiB): the cell it is built in (its process and the memory
    /// it is given); 0 for the control domain (the root task, whose
    /// memory is the machine's, not a domain's).
    pub mem_mib: u64,
    /// `r` running/runnable, `b` blocked, `p` paused, `c` crashed, `-` control domain.
    pub state: char,
    /// Total run time (ns) as a domain (its pools' dispatch accounting).
    pub cpu_ns: u64,
    /// Total run time (ns) of its thread since it was built (the kernel's
    /// per-thread accounting, set-up included).
    pub thread_ns: u64,
    /// CPU whose queue holds its vCPU now, if any.
    pub cpu: Option<u64>,
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
        if config.vcpus != 1 {
            return Err(format!(
                "{}: vcpus={}: domains with several vCPUs are not built yet (vcpus=1)",
                config.name, config.vcpus
            ));
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
        let (id, _) = self
            .manager
            .create_domain(spec)
            .map_err(|e| format!("{}: {e}", config.name))?;
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
        let cell_bits = if vm { VM_CELL_BITS } else { NATIVE_CELL_BITS };
        let fault_source = self.fault_endpoint;
        let elf = tarn_rt::module_bytes(module);
        let (built, cell) = self
            .build_in_cell(res, cell_bits, |res| {
                // The domain's memory first (the largest object; see
                // `start_server`).
                let bits = if vm {
                    VMM_MEMORY_BITS
                } else {
                    DOMAIN_MEMORY_BITS
                };
                let (memory, phys) = res.create_untyped(bits)?;
                let fault = crate::cells::mint_fault_endpoint(
                    res,
                    fault_source,
                    BADGE_DOMAIN | u64::from(domain.0),
                )?;
                let untyped = [UntypedGrant {
                    cptr: memory,
                    phys,
                    size_bits: bits,
                }];
                let config = ProcessConfig {
                    elf,
                    fault_endpoint: fault,
                    cpu_count: 0,
                    untyped: &untyped,
                    cmdline: &cmdline,
                    suspended: true,
                    // A native image maps a few regions; a VM's VMM keeps the
                    // runtime's defaults (it maps its guest's memory too).
                    vspace_bits: if vm {
                        ProcessConfig::default().vspace_bits
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
                tarn_rt::spawn_process(res, &config)
            })
            .map_err(|e| format!("cannot build it: {e:?}"))?;
        self.start_built(res, pool, domain, cell, &built, image)
    }

    /// The last steps of `create`, native or VM alike: records the built
    /// process as `domain`'s, hands its thread to `pool`'s server (undoing
    /// everything if the server refuses it) and starts it.
    pub(crate) fn start_built(
        &mut self,
        res: &mut Resources,
        pool: PoolId,
        domain: DomainId,
        cell: Cell,
        built: &Process,
        image: &str,
    ) -> Result<(), String> {
        self.domains.insert(
            domain,
            DomainRt {
                cell,
                tcb: built.tcb,
                objects: [
                    built.cnode,
                    built.vspace,
                    built.ipc_buffer_frame,
                    built.start_frame,
                ],
                thread_id: (u64::from(domain.0) << 8) | 1,
                carried_ns: 0,
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
        let _ = invoke::tcb_resume(built.tcb);
        Ok(())
    }

    /// Hands `domain`'s thread to `pool`'s server with its parameters.
    pub(crate) fn adopt(&mut self, pool: PoolId, domain: DomainId) -> Result<(), String> {
        let d = self.domains.get(&domain).ok_or("no such domain")?;
        let (tcb, thread_id) = (d.tcb, d.thread_id);
        let params = self
            .manager
            .domain(domain)
            .map(|d| d.params.clone())
            .unwrap_or_default();
        self.request(
            pool,
            &SchedRequest::AddThread {
                thread_id,
                domain: domain.0,
            },
            tcb,
        )?;
        self.send_params(pool, domain, &params)
    }

    /// `ReleaseDomain`: `pool`'s server lets the domain's thread go.
    pub(crate) fn release_domain(
        &mut self,
        domain: DomainId,
        pool: PoolId,
    ) -> Result<(), (PoolId, String)> {
        let Some(d) = self.domains.get(&domain) else {
            return Ok(());
        };
        let id = d.thread_id;
        self.request(pool, &SchedRequest::RemoveThread { thread_id: id }, 0)
            .map(|_| ())
            .map_err(|why| (pool, format!("domain not released: {why}")))
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
        let _ = invoke::tcb_suspend(d.tcb);
        if let Some(p) = self.pools.get(&pool) {
            let _ = invoke::scheduler_release(p.scheduler, d.tcb);
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
        let result = if paused {
            invoke::tcb_suspend(d.tcb)
        } else if d.crashed {
            Ok(())
        } else {
            invoke::tcb_resume(d.tcb)
        };
        result.map_err(|e| format!("{e:?}"))
    }

    /// Suspends a domain's thread (no-op when paused already).
    pub(crate) fn hold(&self, domain: DomainId) {
        if let Some(d) = self.domains.get(&domain) {
            if !d.paused {
                let _ = invoke::tcb_suspend(d.tcb);
            }
        }
    }

    /// Resumes a held domain (unless paused or crashed).
    pub(crate) fn release_hold(&self, domain: DomainId) {
        if let Some(d) = self.domains.get(&domain) {
            if !d.paused && !d.crashed {
                let _ = invoke::tcb_resume(d.tcb);
            }
        }
    }

    /// The domain's run time so far (ns).
    pub(crate) fn domain_time(&self, domain: DomainId) -> (u64, Option<u64>, u64) {
        let Some(d) = self.domains.get(&domain) else {
            return (0, None, 0);
        };
        let scheduler = self
            .manager
            .domain(domain)
            .and_then(|x| self.pools.get(&x.pool))
            .map(|p| p.scheduler);
        match scheduler.map(|s| invoke::scheduler_query_thread(s, d.tcb)) {
            Some(Ok(q)) => (
                d.carried_ns + q.ran_ns,
                q.queued_on.checked_sub(1),
                q.state_raw,
            ),
            _ => (d.carried_ns, None, 0),
        }
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
                match self.domains.get(&d.id) {
                    None => DomainStat {
                        id: d.id,
                        name: d.name.clone(),
                        pool,
                        vcpus: d.vcpus,
                        mem_mib: 0,
                        state: '-',
                        cpu_ns: 0,
                        thread_ns: 0,
                        cpu: None,
                        image: String::from("root-task"),
                        params: d.params.clone(),
                        group,
                    },
                    Some(rt) => {
                        let (cpu_ns, cpu, raw) = self.domain_time(d.id);
                        let state = if rt.crashed {
                            'c'
                        } else if rt.paused {
                            'p'
                        } else if raw == ThreadState::Runnable as u64 {
                            'r'
                        } else {
                            'b'
                        };
                        DomainStat {
                            id: d.id,
                            name: d.name.clone(),
                            pool,
                            vcpus: d.vcpus,
                            mem_mib: (1u64 << rt.cell.bits) >> 20,
                            state,
                            cpu_ns,
                            thread_ns: invoke::tcb_read_registers(rt.tcb).map_or(0, |r| r.ran_ns),
                            cpu,
                            image: rt.image.clone(),
                            params: d.params.clone(),
                            group,
                        }
                    }
                }
            })
            .collect()
    }
}
