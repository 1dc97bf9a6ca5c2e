//! AMD SEV-SNP evidence for A3S Box.
//!
//! - [`report`]: the ATTESTATION_REPORT structure (versions 2, 3, 4 and 5), byte-exact, and the
//!   trustee JSON form of SNP evidence.
//! - [`product`]: the EPYC generations evidence comes from.
#![forbid(unsafe_code)]

pub mod product;
pub mod report;

pub use product::Product;
pub use report::Report;
