//! The test harness: the environment every test gets ([`Env`]: allocators,
//! a sleep notification, the helper image, a bump allocator for test
//! addresses), the outcome type, and the assertion macros.

use alloc::format;
use alloc::string::String;
use tarn_rt::abi::boot::BootInfo;
use tarn_rt::abi::invocation::ThreadState;
use tarn_rt::abi::{CPtr, Error, ObjectType, Rights};
use tarn_rt::invoke;
use tarn_rt::layout::{self, slot};
use tarn_rt::{Resources, Thread, ThreadOptions};

/// A passed test: plainly, or skipped with a reason.
pub enum Pass {
    /// Every check held.
    Ok,
    /// Not applicable on this machine.
    Skipped(&'static str),
}

/// What a test returns: `Err` carries why it failed.
pub type Outcome = Result<Pass, String>;

/// A test: a name and a function.
pub type Test = (&'static str, fn(&mut Env) -> Outcome);

/// Adds context to a kernel error.
pub trait Check<T> {
    /// `Err(error)` becomes `Err("<what>: <error>")`.
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T> Check<T> for Result<T, Error> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|error| format!("{what}: {error:?}"))
    }
}

/// Fails the test unless `actual == expected`.
#[macro_export]
macro_rules! expect {
    ($actual:expr, $expected:expr $(,)?) => {{
        let actual = $actual;
        let expected = $expected;
        if actual != expected {
            return Err(alloc::format!(
                "{}: expected {:?}, got {:?}",
                stringify!($actual),
                expected,
                actual
            ));
        }
    }};
}

/// Fails the test unless `result` is `Err(error)`.
#[macro_export]
macro_rules! expect_err {
    ($result:expr, $error:expr $(,)?) => {{
        let actual = $result.err();
        let expected = Some($error);
        if actual != expected {
            return Err(alloc::format!(
                "{}: expected {:?}, got {:?}",
                stringify!($result),
                expected,
                actual
            ));
        }
    }};
}

/// Fails the test with a message unless `condition` holds.
#[macro_export]
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {{
        if !$condition {
            return Err(alloc::format!($($message)+));
        }
    }};
}

/// Where test mappings start (inside the free window, away from the
/// addresses the helper protocol names).
const TEST_VADDR_BASE: u64 = layout::FREE_WINDOW_BASE + 0x1_0000_0000;

/// What every test works with.
pub struct Env {
    /// The suite's allocators (all of its untyped memory).
    pub res: Resources,
    /// CPUs online.
    pub cpus: u64,
    /// A notification nobody signals (for sleeping).
    pub sleeper: CPtr,
    /// The helper program, if the root passed it on.
    pub helper_elf: Option<&'static [u8]>,
    /// The scheduler-server program, if the root passed it on.
    pub sched_server_elf: Option<&'static [u8]>,
    /// The suite's first Cpu capability (CPU i at + i), if it was given any.
    pub cpu_caps: Option<CPtr>,
    next_vaddr: u64,
}

impl Env {
    /// The environment over `res` (the start page's resources, less what
    /// the heap took).
    pub fn new(info: &'static BootInfo, mut res: Resources) -> Result<Self, String> {
        let sleeper = res
            .create(ObjectType::Notification, 0)
            .ctx("sleep notification")?;
        let helper_elf = info.module("test-helper").map(tarn_rt::module_bytes);
        Ok(Env {
            res,
            cpus: info.cpu_count,
            sleeper,
            helper_elf,
            sched_server_elf: info.module("policy-credit").map(tarn_rt::module_bytes),
            cpu_caps: (info.first_cpu_slot != 0).then_some(info.first_cpu_slot),
            next_vaddr: TEST_VADDR_BASE,
        })
    }

    /// A new object in a fresh slot.
    pub fn create(&mut self, object_type: ObjectType, size_bits: u64) -> Result<CPtr, String> {
        self.res.create(object_type, size_bits).ctx("create object")
    }

    /// A new endpoint.
    pub fn endpoint(&mut self) -> Result<CPtr, String> {
        self.res
            .create(ObjectType::Endpoint, 0)
            .ctx("create endpoint")
    }

    /// A new notification.
    pub fn notification(&mut self) -> Result<CPtr, String> {
        self.res
            .create(ObjectType::Notification, 0)
            .ctx("create notification")
    }

    /// A new 4 KiB frame.
    pub fn frame(&mut self) -> Result<CPtr, String> {
        self.res.create(ObjectType::Frame4K, 0).ctx("create frame")
    }

    /// A new untyped region of 2^`size_bits` bytes.
    pub fn untyped(&mut self, size_bits: u64) -> Result<CPtr, String> {
        self.res
            .create_untyped(size_bits)
            .map(|(slot, _)| slot)
            .ctx("create untyped")
    }

    /// An empty slot of the suite's CNode.
    pub fn slot(&mut self) -> Result<CPtr, String> {
        self.res.alloc_slot().ctx("allocate slot")
    }

    /// A copy of `source` (in the suite's CNode) with rights `rights`.
    pub fn copy(&mut self, source: CPtr, rights: Rights) -> Result<CPtr, String> {
        let dest = self.slot()?;
        invoke::cnode_copy(slot::ROOT_CNODE, dest, slot::ROOT_CNODE, source, rights)
            .ctx("copy capability")?;
        Ok(dest)
    }

    /// A badged copy of `source`.
    pub fn mint(&mut self, source: CPtr, rights: Rights, badge: u64) -> Result<CPtr, String> {
        let dest = self.slot()?;
        invoke::cnode_mint(
            slot::ROOT_CNODE,
            dest,
            slot::ROOT_CNODE,
            source,
            rights,
            badge,
        )
        .ctx("mint capability")?;
        Ok(dest)
    }

    /// A fresh, never-used range of `bytes` in the free window, aligned to `align`.
    pub fn vaddr(&mut self, bytes: u64, align: u64) -> u64 {
        let start = self.next_vaddr.next_multiple_of(align);
        self.next_vaddr = start + bytes.next_multiple_of(layout::PAGE_SIZE);
        start
    }

    /// A fresh frame mapped read-write at a fresh address: (frame, address).
    pub fn mapped_frame(&mut self) -> Result<(CPtr, u64), String> {
        let frame = self.frame()?;
        let vaddr = self.vaddr(layout::PAGE_SIZE, layout::PAGE_SIZE);
        invoke::frame_map(
            frame,
            slot::ROOT_VSPACE,
            vaddr,
            Rights::READ.union(Rights::WRITE),
        )
        .ctx("map frame")?;
        Ok((frame, vaddr))
    }

    /// Starts a thread in the suite's address space.
    pub fn spawn<F: FnOnce() + Send + 'static>(
        &mut self,
        options: ThreadOptions,
        body: F,
    ) -> Result<Thread, String> {
        tarn_rt::spawn_thread(&mut self.res, options, body).ctx("spawn thread")
    }

    /// Starts a thread with default options.
    pub fn thread<F: FnOnce() + Send + 'static>(&mut self, body: F) -> Result<Thread, String> {
        self.spawn(ThreadOptions::default(), body)
    }

    /// Sleeps for about `ns` nanoseconds.
    pub fn sleep_ns(&self, ns: u64) {
        let _ = tarn_rt::sleep(self.sleeper, ns);
    }

    /// Waits (up to about 5 s) until `tcb` is in `state`.
    pub fn wait_state(&self, tcb: CPtr, state: ThreadState) -> Result<(), String> {
        let mut last = None;
        for round in 0..5000u32 {
            let status = invoke::tcb_read_registers(tcb).ctx("read registers")?;
            if status.state() == Some(state) {
                return Ok(());
            }
            last = status.state();
            if round < 20 {
                tarn_rt::yield_now();
            } else {
                self.sleep_ns(1_000_000);
            }
        }
        Err(format!(
            "thread never reached {state:?} (last state {last:?})"
        ))
    }

    /// Waits (up to about 5 s) until `thread` has finished its body.
    pub fn join(&self, thread: &Thread) -> Result<(), String> {
        for round in 0..5000u32 {
            if thread.is_finished() {
                return Ok(());
            }
            if round < 20 {
                tarn_rt::yield_now();
            } else {
                self.sleep_ns(1_000_000);
            }
        }
        let state = invoke::tcb_read_registers(thread.tcb).map(|s| s.state());
        Err(format!("thread did not finish (state {state:?})"))
    }

    /// Waits (up to about 5 s) until `condition` holds.
    pub fn wait_until(
        &self,
        what: &str,
        mut condition: impl FnMut() -> bool,
    ) -> Result<(), String> {
        for round in 0..5000u32 {
            if condition() {
                return Ok(());
            }
            if round < 20 {
                tarn_rt::yield_now();
            } else {
                self.sleep_ns(1_000_000);
            }
        }
        Err(format!("timed out waiting for {what}"))
    }

    /// Receives on `endpoint` without risking a hang: polls (up to about
    /// 5 s) until a sender is there.
    pub fn recv_within(&self, endpoint: CPtr) -> Result<tarn_rt::Message, String> {
        for round in 0..5000u32 {
            match tarn_rt::nb_recv(endpoint) {
                Ok(message) => return Ok(message),
                Err(Error::WouldBlock) => {}
                Err(other) => return Err(format!("receive: {other:?}")),
            }
            if round < 20 {
                tarn_rt::yield_now();
            } else {
                self.sleep_ns(1_000_000);
            }
        }
        Err(String::from("nothing arrived within 5 s"))
    }

    /// The kernel's live object count.
    pub fn live_objects(&self) -> Result<u64, String> {
        invoke::machine_check_invariants(slot::MACHINE)
            .map(|i| i.live_objects)
            .ctx("check invariants")
    }
}

/// Words a test and its threads share.
pub struct Shared {
    words: [core::sync::atomic::AtomicU64; 16],
}

impl Shared {
    /// Sixteen zero words.
    pub fn new() -> alloc::sync::Arc<Self> {
        alloc::sync::Arc::new(Shared {
            words: core::array::from_fn(|_| core::sync::atomic::AtomicU64::new(0)),
        })
    }

    /// Sets word `index`.
    pub fn set(&self, index: usize, value: u64) {
        self.words[index].store(value, core::sync::atomic::Ordering::SeqCst);
    }

    /// Word `index`.
    pub fn get(&self, index: usize) -> u64 {
        self.words[index].load(core::sync::atomic::Ordering::SeqCst)
    }

    /// Adds one to word `index`.
    pub fn bump(&self, index: usize) {
        self.words[index].fetch_add(1, core::sync::atomic::Ordering::SeqCst);
    }
}

/// The error code of a result (0 = success), for passing through [`Shared`].
pub fn code<T>(result: &Result<T, Error>) -> u64 {
    match result {
        Ok(_) => 0,
        Err(error) => *error as u64,
    }
}

/// An error code back as a result (for messages).
pub fn decode(code: u64) -> Result<(), Error> {
    Error::check(code)
}
