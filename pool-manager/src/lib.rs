//! Xen cpupool semantics in user mode. Not built yet: arrives with the pool-manager work.
#![no_std]
#![forbid(unsafe_code)]
