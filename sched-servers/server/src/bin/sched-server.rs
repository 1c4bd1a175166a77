//! The built-in policies' server process: `policy=credit` (the default),
//! `policy=sedf` or `policy=rr` on its command line picks the policy; the
//! rest is `tarn_sched_server::serve` (see there for the protocol, the
//! command line and the slots).

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use tarn_rt::layout::BOOT_INFO_VADDR;
use tarn_sched_servers::credit::Credit;
use tarn_sched_servers::rr::RoundRobin;
use tarn_sched_servers::sedf::Sedf;

tarn_rt::entry!(main);

fn main(_: u64) {
    let policy = tarn_rt::start_info(BOOT_INFO_VADDR).and_then(|info| {
        info.cmdline()
            .split_whitespace()
            .find_map(|w| w.strip_prefix("policy="))
    });
    match policy {
        Some("sedf") => tarn_sched_server::serve(Sedf::new()),
        Some("rr") => tarn_sched_server::serve(RoundRobin::default()),
        _ => tarn_sched_server::serve(Credit::new()),
    }
}
