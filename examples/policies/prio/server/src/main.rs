//! The prio policy server: the whole binary.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

tarn_rt::entry!(main);

fn main(_: u64) {
    tarn_sched_server::serve(tarn_policy_prio::Prio::default());
}
