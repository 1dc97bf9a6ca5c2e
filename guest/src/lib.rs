//! `a3s-guest-init`, PID 1 in the MicroVM: mounts, control server, attestation agent.
//!
//! Not built yet: tracked by issue 6.
