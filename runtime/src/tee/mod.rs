//! Confidential boxes (`--tee-enable`, `--tee-simulate`): what the host does around the trust
//! pipeline.
//!
//! - [`spec`]: the TEE settings fixed at create time (mode, secrets, expected measurement,
//!   policy, exec opt-in), validated before anything boots;
//! - [`digest_cache`]: kernel and initrd digests hashed once, in a private authenticated
//!   cache keyed by each file's identity and change stamps;
//! - [`launch`]: the launch measurement of exactly the kernel, initrd, command line and vCPUs a
//!   box boots (what `a3s-box measure` reproduces);
//! - [`secure_processor`]: the host playing the AMD secure processor for a simulated VM,
//!   answering the guest's report and derived-key requests for its recorded measurement;
//! - [`layer_cache`]: the encrypted writable layer a box made on first boot, kept for the next
//!   box with the same measurement (which derives the same key) so it need not format its own;
//! - [`local_kbs`]: the ephemeral KBS that releases `--secret NAME=file:PATH` only to this VM,
//!   after attestation;
//! - [`attest`]: `a3s-box attest BOX`, RA-TLS to the guest's agent with a fresh nonce.
//!
//! Secret values never enter the box record, logs, process arguments or the audit log: the
//! record holds file paths and KBS resource paths only.

pub mod attest;
pub mod digest_cache;
pub mod launch;
pub mod layer_cache;
pub mod local_kbs;
pub mod pipeline;
pub mod secure_processor;
pub mod spec;

pub use spec::{SecretRef, SecretSource, TeeError, TeeRecord, TeeSpec};
