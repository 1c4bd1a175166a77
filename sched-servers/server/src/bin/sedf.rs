//! The sedf policy's server process (boot module `policy-sedf`): the
//! whole binary is `tarn_sched_server::serve` (see there for the protocol,
//! the command line and the slots).

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use tarn_sched_servers::sedf::Sedf;

tarn_rt::entry!(main);

fn main(_: u64) {
    tarn_sched_server::serve(Sedf::new());
}
