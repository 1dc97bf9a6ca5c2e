//! Key broker service, wire-compatible with the Confidential Containers (trustee) KBS 0.4.0.
//!
//! Not built yet: tracked by issue 5.
