//! Started as a pool's scheduler server, it answers every request on its
//! endpoint (slot 9) with a message that is not the protocol's.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use tarn_rt::syscall;

tarn_rt::entry!(main);

/// Not the scheduler protocol's label.
const GARBAGE_LABEL: u64 = 0xBAD;

fn main(_: u64) {
    let mut message = syscall::recv(9);
    while message.is_ok() {
        let (info, registers) = syscall::load(GARBAGE_LABEL, &[u64::MAX; 3], &[]);
        message = syscall::reply_recv(9, info, registers);
    }
}
