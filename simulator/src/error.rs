//! Errors of opening, creating and using the simulated key hierarchy.

use std::io;
use std::path::{Path, PathBuf};

use a3s_attestation::Product;

/// Why the simulated secure processor could not be opened, created or extended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A file-system operation failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done ("reading", "renaming into", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A cryptographic operation failed (key generation, key loading, signing).
    #[error("{what}")]
    Crypto {
        /// Which key, and what was done with it.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// DER encoding or decoding failed (certificates, CRLs, private keys).
    #[error("{what}")]
    Der {
        /// What was being encoded or decoded.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: x509_cert::der::Error,
    },
    /// A stored file does not hold what the simulator wrote there.
    #[error("{} is corrupt: {why}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The home has no simulated root of trust for this product yet.
    #[error("no simulated {0} root of trust in this home (open it with this product first)")]
    ProductNotProvisioned(Product),
    /// No simulated chip of this product has this chip id.
    #[error("no simulated {product} chip has id {chip}")]
    UnknownChip {
        /// The product.
        product: Product,
        /// The chip id, hex.
        chip: String,
    },
}

impl SimError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn der(what: &'static str) -> impl FnOnce(x509_cert::der::Error) -> Self {
        move |source| Self::Der { what, source }
    }

    pub(crate) fn crypto<E: std::error::Error + Send + Sync + 'static>(
        what: &'static str,
    ) -> impl FnOnce(E) -> Self {
        move |source| Self::Crypto {
            what,
            source: Box::new(source),
        }
    }

    pub(crate) fn corrupt(path: &Path, why: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.to_owned(),
            why: why.into(),
        }
    }
}
