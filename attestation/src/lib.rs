//! AMD SEV-SNP evidence for A3S Box.
#![forbid(unsafe_code)]

pub mod measure;
pub mod product;

pub use product::Product;
