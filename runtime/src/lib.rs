//! Boxes and their persisted state, lifecycle and audit log.
//!
//! Only the `A3S_HOME` layout lives here so far; boxes arrive with the MicroVM runtime.

pub mod audit;
pub mod home;

pub use home::A3sHome;
