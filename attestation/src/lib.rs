//! AMD SEV-SNP evidence for A3S Box.
//!
//! - [`report`]: the ATTESTATION_REPORT structure (versions 2, 3, 4 and 5), byte-exact, and the
//!   trustee JSON form of SNP evidence.
//! - [`hw`]: hardware evidence from inside an SEV-SNP guest (configfs-tsm, `/dev/sev-guest`).
//! - [`key_request`]: MSG_KEY_REQ, derived-key requests.
//! - [`certs`]: AMD certificates, trust anchors, chains, VEK extensions, CRLs.
//! - [`kds`]: AMD Key Distribution Service client with an on-disk cache.
//! - [`measure`]: the SEV-SNP launch digest, compatible with `sev-snp-measure`.
//! - [`chain_source`]: finding a report's certificates (supplied, KDS, cache).
//! - [`verify`]: proof that a report chains to trusted roots.
//! - [`policy`]: appraisal of verified reports against what a relying party requires.
//! - [`product`]: the EPYC generations evidence comes from.

pub mod certs;
pub mod chain_source;
pub mod hw;
pub mod kds;
pub mod key_request;
pub mod measure;
pub mod policy;
pub mod product;
pub mod report;
pub mod verify;

pub use product::Product;
pub use report::Report;
