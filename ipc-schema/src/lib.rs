//! The ABI shared by kernel and user code. Not built yet: arrives with the capability kernel.
#![no_std]
#![forbid(unsafe_code)]
