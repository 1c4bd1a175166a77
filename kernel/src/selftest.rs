//! Deliberate faults (`selftest=...`) that prove the exception reports work.

use tarn_kernel_core::cmdline::Selftest;

/// Address the page-fault selftest reads (never mapped).
const UNMAPPED: u64 = 0xdead_0000;

/// Runs one selftest; every one of them ends in an exception report.
pub fn run(test: Selftest) -> ! {
    kinfo!("selftest {}: expect an exception report", test.name());
    crate::arch::selftest::trigger(test, UNMAPPED);
    kprintln!("tarn: selftest {} did not fault", test.name());
    crate::exit(1)
}
