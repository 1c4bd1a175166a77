//! `spin`: a CPU-bound domain. It counts loop rounds forever and never
//! blocks, so whatever CPU time its scheduler gives it, it uses; the count is
//! its own measure of progress (`progress` words in its start page are not
//! needed: the pool manager reads run time from the kernel's accounting).

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

tarn_rt::entry!(main);

fn main(_arg: u64) {
    let mut rounds: u64 = 0;
    loop {
        rounds = core::hint::black_box(rounds.wrapping_add(1));
    }
}
