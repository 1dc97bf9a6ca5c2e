//! Boxes and their persisted state, lifecycle and audit log.
//!
//! [`boxes`] holds the box lifecycle (create, start through a per-box monitor, stop, exec,
//! logs, remove); [`tee`] the host side of confidential boxes; [`audit`] the hash-chained
//! audit log; [`home`] the `A3S_HOME` layout.

pub mod audit;
pub mod boxes;
pub mod copy;
pub mod disk;
pub mod home;
pub mod network;
pub mod tee;
pub mod volumes;

pub use home::A3sHome;
