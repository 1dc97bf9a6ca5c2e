//! One MicroVM: the QEMU engine, the accelerator choice and host capabilities.
//!
//! So far this crate answers "what can this host run" ([`host::probe`]); launching VMs arrives
//! with the MicroVM runtime.

pub mod accel;
pub mod host;
