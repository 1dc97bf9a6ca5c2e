//! Simulated AMD secure processor (see `DESIGN.md`, "Simulator trust separation").
//!
//! Owns the simulated ARK/ASK/VCEK hierarchy per `A3S_HOME`, report signing, derived keys with
//! MSG_KEY_REQ semantics and a KDS-shaped endpoint. Not built yet: tracked by issue 3.
