//! Started as a pool's scheduler server, it never receives on its endpoint:
//! its only thread spins on its CPU forever, the way a policy stuck in a
//! loop before serving would.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

tarn_rt::entry!(main);

fn main(_: u64) {
    let mut turns: u64 = 0;
    loop {
        turns = core::hint::black_box(turns.wrapping_add(1));
    }
}
