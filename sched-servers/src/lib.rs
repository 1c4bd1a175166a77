//! Policy SDK and scheduler servers (credit, sedf). Not built yet: arrives with user-mode scheduling.
#![no_std]
#![forbid(unsafe_code)]
