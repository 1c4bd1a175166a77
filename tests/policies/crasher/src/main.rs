//! Started as a pool's scheduler server, it takes an invalid-opcode
//! exception at once (`ud2`: a fault the manager sees) before receiving a
//! single request, the way a policy with a bug in its set-up would.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

tarn_rt::entry!(main);

fn main(_: u64) {
    tarn_rt::arch::ud2()
}
