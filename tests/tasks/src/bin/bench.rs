//! In-image benchmarks (`bench` on the kernel command line). Under QEMU
//! `-icount shift=0,sleep=off` the TSC counts guest instructions, so each
//! figure is an exact, repeatable instruction count of the whole round trip
//! (user code on both sides included). One line per figure:
//! `bench: <name> <value> insns`.
//!
//! - `ipc_call_reply_insns` (or `ipc_call_reply_slowpath_insns` when booted
//!   with `ipc_fastpath=off`): `Call` with an empty message to a server in
//!   another address space on the same CPU, which answers with `ReplyRecv`.
//! - `notification_signal_wait_insns`: two threads on one CPU ping-pong over
//!   two notifications; the figure is one signal-to-wakeup hand-over (half a
//!   round trip).
//! - `notification_cross_cpu_wake_insns`: a thread on CPU 0 signals a thread
//!   waiting on CPU 1; from just before the signal to the waiter running
//!   (virtual time, both CPUs' instructions interleaved by QEMU).
//!
//! - `dispatch_switch_insns`: two adopted threads queued on CPU 0; the first
//!   yields and the kernel starts the next entry, no server involved (from the
//!   first thread's last instruction before `Yield` to the second's first).
//! - `agent_roundtrip_insns`: an adopted thread yields; the event wakes an
//!   agent (a system thread on the same CPU) which reads the ring and
//!   dispatches it again, waiting for the next event in the same call
//!   (`SchedulerDispatchWait`); until the thread runs again.
//! - `ipc_call_reply_dispatched_insns`: an adopted thread running its
//!   dispatch entry on CPU 0 makes the same `Call` as `ipc_call_reply_insns`
//!   to the same server (a system thread on CPU 0), which runs on the
//!   caller's entry (IPC donation) and answers with `ReplyRecv`.
//! - `cnode_grow_16k_insns`: `CNodeGrow` of a full 2^14-slot CNode (the
//!   root task's size at boot, every slot holding a copy of one endpoint)
//!   into a 2^15-slot one: the one system call, under the kernel lock.
//!
//! The same binary is the IPC server when started with `bench-server`.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use core::sync::atomic::{AtomicU64, Ordering};
use tarn_rt::abi::{MessageInfo, ObjectType, Rights};
use tarn_rt::arch::rdtsc;
use tarn_rt::invoke;
use tarn_rt::{println, syscall, CapGrant, ProcessConfig, Resources, ThreadOptions};

tarn_rt::entry!(main);

/// The server's endpoint slot in its CNode.
const SERVER_ENDPOINT: u64 = 9;
/// Round trips per measurement (after as many for warm-up).
const ROUNDS: u64 = 1000;

fn main(arg: u64) {
    let Some(info) = tarn_rt::start_info(arg) else {
        println!("bench: FAILED: no start information");
        return;
    };
    let words: alloc_free::Words = alloc_free::Words(info.cmdline());
    if words.has("bench-server") {
        serve();
    }
    let slowpath = words.has("ipc_fastpath=off");
    let mut res = Resources::from_boot_info(info);
    let mut ok = true;
    let mut server_endpoint = None;
    match ipc_round_trip(&mut res, info) {
        Ok((insns, endpoint)) => {
            server_endpoint = Some(endpoint);
            let name = if slowpath {
                "ipc_call_reply_slowpath_insns"
            } else {
                "ipc_call_reply_insns"
            };
            println!("bench: {name} {insns} insns");
        }
        Err(why) => {
            println!("bench: FAILED: ipc round trip: {why}");
            ok = false;
        }
    }
    if !slowpath {
        match notification_ping_pong(&mut res) {
            Ok(insns) => println!("bench: notification_signal_wait_insns {insns} insns"),
            Err(why) => {
                println!("bench: FAILED: notification ping-pong: {why}");
                ok = false;
            }
        }
        match dispatch_benches(&mut res, info, server_endpoint) {
            Ok((switch, agent, dispatched_call)) => {
                println!("bench: dispatch_switch_insns {switch} insns");
                println!("bench: agent_roundtrip_insns {agent} insns");
                println!("bench: ipc_call_reply_dispatched_insns {dispatched_call} insns");
            }
            Err(why) => {
                println!("bench: FAILED: dispatch benchmarks: {why}");
                ok = false;
            }
        }
        if info.cpu_count > 1 {
            match cross_cpu_wake(&mut res) {
                Ok(insns) => println!("bench: notification_cross_cpu_wake_insns {insns} insns"),
                Err(why) => {
                    println!("bench: FAILED: cross-CPU wake-up: {why}");
                    ok = false;
                }
            }
        }
    }
    if !slowpath {
        for threads in [100, 500] {
            let insns = credit_decision(threads);
            println!("bench: credit_decision_{threads}_insns {insns} insns");
        }
        match cnode_grow_full(&mut res) {
            Ok(insns) => println!("bench: cnode_grow_16k_insns {insns} insns"),
            Err(why) => {
                println!("bench: FAILED: CNode growth: {why}");
                ok = false;
            }
        }
    }
    let _ = invoke::machine_power_off(tarn_rt::layout::slot::MACHINE, if ok { 0 } else { 1 });
}

/// Credit's own cost per scheduling decision (the policy alone, as a
/// server's agent runs it), with `threads` CPU-bound one-thread domains of
/// weights 256 and 512 on 4 CPUs and a 1 ms time slice: each decision ends a
/// CPU's entry (`BudgetExpired`) and picks its next one, the accountings
/// every 30 ms included. Its growth from 100 to 1000 threads is the cost of
/// the run queues' size.
fn credit_decision(threads: u64) -> u64 {
    use tarn_sched_servers::credit::Credit;
    use tarn_sched_servers::{CpuId, DomainId, DomainParams, Event, EventKind, Policy, ThreadId};
    const CPUS: u32 = 4;
    const STEP_NS: u64 = 250_000;
    let mut policy = Credit::new();
    let mut decisions = alloc::vec::Vec::new();
    let mut now = 0;
    let _ = policy.set_pool_values(
        &alloc::vec![("timeslice_ms", tarn_sched_servers::ParamValue::Int(1))],
        now,
    );
    for cpu in 0..CPUS {
        policy.add_cpu(CpuId(cpu), now);
    }
    for i in 0..threads {
        let domain = DomainId(u32::try_from(i).unwrap_or(u32::MAX));
        let weight = if i % 2 == 0 { 256 } else { 512 };
        let _ = policy.set_domain_params(domain, &DomainParams::Credit { weight, cap_pct: 0 }, now);
        let _ = policy.add_thread(ThreadId(i), domain, true, now);
    }
    let mut running = [None; CPUS as usize];
    let mut decide = |policy: &mut Credit, now: u64, cpu: u32| {
        let slot = &mut running[cpu as usize];
        if let Some((thread, since)) = slot.take() {
            let event = Event::new(
                EventKind::BudgetExpired,
                CpuId(cpu),
                thread,
                now,
                now - since,
            );
            policy.on_event(&event);
        }
        *slot = policy.pick_next(CpuId(cpu), now).map(|d| (d.thread, now));
        policy.take_decisions(&mut decisions);
        decisions.clear();
    };
    let mut rounds = |policy: &mut Credit, now: &mut u64| {
        for _ in 0..ROUNDS {
            for cpu in 0..CPUS {
                *now += STEP_NS;
                decide(policy, *now, cpu);
            }
        }
    };
    rounds(&mut policy, &mut now);
    let start = rdtsc();
    rounds(&mut policy, &mut now);
    (rdtsc() - start) / (ROUNDS * u64::from(CPUS))
}

/// `CNodeGrow` of a full 2^14-slot CNode into a 2^15-slot one (module
/// documentation); everything it made goes again.
fn cnode_grow_full(res: &mut Resources) -> Result<u64, &'static str> {
    const BITS: u64 = 14;
    let old = res
        .create(ObjectType::CNode, BITS)
        .map_err(|_| "create the CNode")?;
    let endpoint = res
        .create(ObjectType::Endpoint, 0)
        .map_err(|_| "create the endpoint")?;
    for index in 1..1 << BITS {
        invoke::cnode_copy(old, index, res.cnode, endpoint, Rights::ALL)
            .map_err(|_| "fill the CNode")?;
    }
    let new = res
        .create(ObjectType::CNode, BITS + 1)
        .map_err(|_| "create the larger CNode")?;
    let start = rdtsc();
    let grown = invoke::cnode_grow(old, new);
    let insns = rdtsc() - start;
    grown.map_err(|_| "CNodeGrow failed")?;
    invoke::cnode_revoke(res.cnode, endpoint).map_err(|_| "revoke the copies")?;
    for cap in [new, old, endpoint] {
        res.delete(cap).map_err(|_| "delete")?;
    }
    Ok(insns)
}

/// The server loop: answer every call with an empty reply.
fn serve() -> ! {
    let empty = MessageInfo::new(0, 0, 0);
    let _ = syscall::recv(SERVER_ENDPOINT);
    loop {
        let _ = syscall::reply_recv(SERVER_ENDPOINT, empty, [0; 4]);
    }
}

/// The IPC round trip; also returns the server's endpoint (the dispatched
/// caller's benchmark calls the same server).
fn ipc_round_trip(
    res: &mut Resources,
    info: &tarn_rt::abi::boot::BootInfo,
) -> Result<(u64, u64), &'static str> {
    let module = info
        .module("bench")
        .ok_or("no bench module to start the server from")?;
    let endpoint = res
        .create(ObjectType::Endpoint, 0)
        .map_err(|_| "create endpoint")?;
    let caps = [CapGrant {
        source: endpoint,
        dest: SERVER_ENDPOINT,
        rights: Rights::READ,
        badge: 0,
    }];
    let config = ProcessConfig {
        elf: tarn_rt::module_bytes(module),
        caps: &caps,
        cmdline: "bench-server",
        cpu_count: info.cpu_count,
        cpu: Some(0),
        stack_pages: 4,
        ..ProcessConfig::default()
    };
    tarn_rt::spawn_process(res, &config).map_err(|_| "spawn the server")?;
    let empty = MessageInfo::new(0, 0, 0);
    for _ in 0..ROUNDS {
        syscall::call(endpoint, empty, [0; 4]).map_err(|_| "call")?;
    }
    let start = rdtsc();
    for _ in 0..ROUNDS {
        let _ = syscall::call(endpoint, empty, [0; 4]);
    }
    Ok(((rdtsc() - start) / ROUNDS, endpoint))
}

fn notification_ping_pong(res: &mut Resources) -> Result<u64, &'static str> {
    let ping = res
        .create(ObjectType::Notification, 0)
        .map_err(|_| "create notification")?;
    let pong = res
        .create(ObjectType::Notification, 0)
        .map_err(|_| "create notification")?;
    let options = ThreadOptions {
        cpu: Some(0),
        ..ThreadOptions::default()
    };
    tarn_rt::spawn_thread(res, options, move || loop {
        if syscall::wait(ping, 0).is_err() {
            return;
        }
        let _ = syscall::signal(pong);
    })
    .map_err(|_| "spawn the partner thread")?;
    let round = || {
        let _ = syscall::signal(ping);
        let _ = syscall::wait(pong, 0);
    };
    for _ in 0..ROUNDS {
        round();
    }
    let start = rdtsc();
    for _ in 0..ROUNDS {
        round();
    }
    Ok((rdtsc() - start) / ROUNDS / 2)
}

static WOKEN_AT: AtomicU64 = AtomicU64::new(0);

/// A thread that stamps `before` just before yielding and `after` when it
/// runs again, forever.
fn stamper(
    res: &mut Resources,
    before: &'static AtomicU64,
    after: &'static AtomicU64,
) -> Result<tarn_rt::Thread, &'static str> {
    let options = ThreadOptions {
        cpu: Some(0),
        start: false,
        ..ThreadOptions::default()
    };
    tarn_rt::spawn_thread(res, options, move || loop {
        after.store(rdtsc(), Ordering::Release);
        before.store(rdtsc(), Ordering::Release);
        syscall::yield_now();
    })
    .map_err(|_| "spawn an adopted thread")
}

fn dispatch_benches(
    res: &mut Resources,
    info: &tarn_rt::abi::boot::BootInfo,
    server_endpoint: Option<u64>,
) -> Result<(u64, u64, u64), &'static str> {
    const SAMPLES: u64 = 32;
    if info.first_cpu_slot == 0 {
        return Err("no Cpu capabilities");
    }
    let scheduler = res
        .create(ObjectType::Scheduler, 0)
        .map_err(|_| "create a scheduler")?;
    let ring = res
        .create(ObjectType::Frame4K, 0)
        .map_err(|_| "create a ring frame")?;
    let ring_vaddr = tarn_rt::layout::FREE_WINDOW_BASE + 0x5000_0000;
    invoke::frame_map(
        ring,
        tarn_rt::layout::slot::ROOT_VSPACE,
        ring_vaddr,
        Rights::READ.union(Rights::WRITE),
    )
    .map_err(|_| "map the ring")?;
    let notify = res
        .create(ObjectType::Notification, 0)
        .map_err(|_| "create a notification")?;
    let sleeper = res
        .create(ObjectType::Notification, 0)
        .map_err(|_| "create a notification")?;
    invoke::scheduler_bind_cpu(scheduler, info.first_cpu_slot, ring, notify)
        .map_err(|_| "bind CPU 0")?;

    // Queue-to-next-entry switch: A yields, the kernel starts B's entry.
    static A_BEFORE: AtomicU64 = AtomicU64::new(0);
    static A_AFTER: AtomicU64 = AtomicU64::new(0);
    static B_BEFORE: AtomicU64 = AtomicU64::new(0);
    static B_AFTER: AtomicU64 = AtomicU64::new(0);
    let a = stamper(res, &A_BEFORE, &A_AFTER)?;
    let b = stamper(res, &B_BEFORE, &B_AFTER)?;
    for (thread, id) in [(&a, 1), (&b, 2)] {
        invoke::scheduler_adopt(scheduler, thread.tcb, id).map_err(|_| "adopt")?;
        invoke::tcb_resume(thread.tcb).map_err(|_| "resume")?;
    }
    let mut switch_total = 0;
    for round in 0..=SAMPLES {
        invoke::scheduler_dispatch(scheduler, 0, a.tcb, 1_000_000_000).map_err(|_| "dispatch A")?;
        invoke::scheduler_dispatch(scheduler, 0, b.tcb, 1_000_000_000).map_err(|_| "dispatch B")?;
        // Sleeping leaves CPU 0 to the queue: A runs, yields, B runs, yields.
        let _ = tarn_rt::sleep(sleeper, 2_000_000);
        if round > 0 {
            switch_total += B_AFTER
                .load(Ordering::Acquire)
                .saturating_sub(A_BEFORE.load(Ordering::Acquire));
        }
    }
    for thread in [&a, &b] {
        let _ = invoke::scheduler_release(scheduler, thread.tcb);
        let _ = invoke::tcb_suspend(thread.tcb);
    }

    // Event → agent → dispatch → thread: C yields; the agent re-dispatches
    // it; C measures from just before its yield to running again.
    static TRIP_TOTAL: AtomicU64 = AtomicU64::new(0);
    static TRIPS: AtomicU64 = AtomicU64::new(0);
    let options = ThreadOptions {
        cpu: Some(0),
        start: false,
        ..ThreadOptions::default()
    };
    let c = tarn_rt::spawn_thread(res, options, || {
        let mut yielded_at = 0;
        loop {
            let now = rdtsc();
            if yielded_at != 0 && TRIPS.load(Ordering::Acquire) < SAMPLES {
                TRIP_TOTAL.fetch_add(now - yielded_at, Ordering::AcqRel);
                TRIPS.fetch_add(1, Ordering::AcqRel);
            }
            yielded_at = rdtsc();
            syscall::yield_now();
        }
    })
    .map_err(|_| "spawn the measured thread")?;
    invoke::scheduler_adopt(scheduler, c.tcb, 3).map_err(|_| "adopt C")?;
    let tcb = c.tcb;
    let agent_options = ThreadOptions {
        cpu: Some(0),
        ..ThreadOptions::default()
    };
    tarn_rt::spawn_thread(res, agent_options, move || {
        let Some(mut reader) = tarn_rt::sched::RingReader::new(ring_vaddr) else {
            return;
        };
        let mut redispatch = false;
        loop {
            let woken = if redispatch {
                invoke::scheduler_dispatch_wait(scheduler, 0, tcb, 1_000_000_000, notify)
            } else {
                syscall::wait(notify, 0)
            };
            if woken.is_err() {
                return;
            }
            let mut yielded = false;
            while let Some(event) = reader.pop() {
                yielded |= event.kind == tarn_rt::abi::sched::EventKind::Yielded as u32
                    && event.thread == 3;
            }
            redispatch = yielded && TRIPS.load(Ordering::Acquire) < SAMPLES;
        }
    })
    .map_err(|_| "spawn the agent")?;
    invoke::tcb_resume(c.tcb).map_err(|_| "resume C")?;
    invoke::scheduler_dispatch(scheduler, 0, c.tcb, 1_000_000_000).map_err(|_| "dispatch C")?;
    for _ in 0..1000 {
        if TRIPS.load(Ordering::Acquire) >= SAMPLES {
            break;
        }
        let _ = tarn_rt::sleep(sleeper, 1_000_000);
    }
    let _ = invoke::scheduler_release(scheduler, c.tcb);
    let _ = invoke::tcb_suspend(c.tcb);
    let trips = TRIPS.load(Ordering::Acquire);
    if trips == 0 {
        return Err("the agent round trip was not observed");
    }

    // A dispatched caller's Call to the system server on its CPU (IPC
    // donation): D calls ROUNDS times to warm up, then ROUNDS measured, and
    // yields (ending its entry) once the figure is stored.
    let endpoint = server_endpoint.ok_or("no server to call")?;
    static CALL_TOTAL: AtomicU64 = AtomicU64::new(0);
    let options = ThreadOptions {
        cpu: Some(0),
        start: false,
        ..ThreadOptions::default()
    };
    let d = tarn_rt::spawn_thread(res, options, move || {
        let empty = MessageInfo::new(0, 0, 0);
        for _ in 0..ROUNDS {
            let _ = syscall::call(endpoint, empty, [0; 4]);
        }
        let start = rdtsc();
        for _ in 0..ROUNDS {
            let _ = syscall::call(endpoint, empty, [0; 4]);
        }
        CALL_TOTAL.store((rdtsc() - start).max(1), Ordering::Release);
        loop {
            syscall::yield_now();
        }
    })
    .map_err(|_| "spawn the dispatched caller")?;
    invoke::scheduler_adopt(scheduler, d.tcb, 4).map_err(|_| "adopt D")?;
    invoke::tcb_resume(d.tcb).map_err(|_| "resume D")?;
    invoke::scheduler_dispatch(scheduler, 0, d.tcb, 1_000_000_000).map_err(|_| "dispatch D")?;
    for _ in 0..1000 {
        if CALL_TOTAL.load(Ordering::Acquire) != 0 {
            break;
        }
        let _ = tarn_rt::sleep(sleeper, 1_000_000);
    }
    let _ = invoke::scheduler_release(scheduler, d.tcb);
    let _ = invoke::tcb_suspend(d.tcb);
    let _ = invoke::scheduler_unbind_cpu(scheduler, info.first_cpu_slot);
    let call_total = CALL_TOTAL.load(Ordering::Acquire);
    if call_total == 0 {
        return Err("the dispatched caller did not finish its calls");
    }
    Ok((
        switch_total / SAMPLES,
        TRIP_TOTAL.load(Ordering::Acquire) / trips,
        call_total / ROUNDS,
    ))
}

fn cross_cpu_wake(res: &mut Resources) -> Result<u64, &'static str> {
    const SAMPLES: u64 = 64;
    let wake = res
        .create(ObjectType::Notification, 0)
        .map_err(|_| "create notification")?;
    let done = res
        .create(ObjectType::Notification, 0)
        .map_err(|_| "create notification")?;
    let options = ThreadOptions {
        cpu: Some(1),
        ..ThreadOptions::default()
    };
    tarn_rt::spawn_thread(res, options, move || loop {
        if syscall::wait(wake, 0).is_err() {
            return;
        }
        WOKEN_AT.store(rdtsc(), Ordering::Release);
        let _ = syscall::signal(done);
    })
    .map_err(|_| "spawn the waiter on CPU 1")?;
    let mut total = 0;
    for _ in 0..SAMPLES {
        // Give the waiter time to block again before the next sample.
        for _ in 0..4 {
            syscall::yield_now();
        }
        let start = rdtsc();
        syscall::signal(wake).map_err(|_| "signal")?;
        syscall::wait(done, 0).map_err(|_| "wait")?;
        total += WOKEN_AT.load(Ordering::Acquire).saturating_sub(start);
    }
    Ok(total / SAMPLES)
}

mod alloc_free {
    /// The words of a command line.
    pub struct Words<'a>(pub &'a str);

    impl Words<'_> {
        /// Whether `word` is one of them.
        pub fn has(&self, word: &str) -> bool {
            self.0.split_whitespace().any(|w| w == word)
        }
    }
}
