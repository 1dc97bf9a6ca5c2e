//! Integration tests of the simulated secure processor: one binary, one shared home.
//!
//! Certificates and signatures are checked with the system `openssl` CLI, an implementation
//! independent of the RustCrypto crates that produce them.

// `allow-unwrap-in-tests` covers `#[test]` functions only; the helpers here are test code too.
#![allow(clippy::unwrap_used)]

mod certs;
mod derive;
mod kds;
mod reports;
mod store;
mod support;
