//! The first user task (receives all initial capabilities). Not built yet: arrives with the capability kernel.
#![no_std]
#![forbid(unsafe_code)]
