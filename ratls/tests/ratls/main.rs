//! RA-TLS over real TCP on 127.0.0.1 with evidence from the simulated secure processor.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod cert;
mod handshake;
mod support;
