//! Errors of the KDS client and its cache.

use std::io;
use std::path::PathBuf;

use crate::Product;

/// What the CLI tells the user to do when a certificate is neither cached nor fetchable.
const FILL_CACHE_HINT: &str = "run `a3s-box attest fetch-certs --report FILE` while online to \
                               fill the cache, or pass the certificates with --vcek/--cert-chain";

/// Why a KDS document could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KdsError {
    /// The report's chip id is all zero (MASK_CHIP_ID), so there is no hwID to ask the KDS for.
    #[error("cannot fetch a {product} VCEK for a masked chip id")]
    MaskedChipId {
        /// Generation of the chip.
        product: Product,
    },

    /// `fmcSPL` is present on a product without it (Milan, Genoa) or missing on one that has it.
    #[error(
        "{product} TCB {}",
        if *present { "has no FMC SPL, but one was given" } else { "needs an FMC SPL" }
    )]
    FmcSplMismatch {
        /// Generation of the chip.
        product: Product,
        /// Whether an FMC SPL was given.
        present: bool,
    },

    /// The KDS answered 404: it has no such certificate (unknown hwID or TCB).
    #[error("KDS has no certificate at {url}")]
    NotFound {
        /// The URL that was requested.
        url: String,
    },

    /// The KDS answered 429: too many requests from this address.
    #[error(
        "KDS rate-limited the request for {url}{}",
        retry_after.as_ref().map(|r| format!(" (retry after {r})")).unwrap_or_default()
    )]
    RateLimited {
        /// The URL that was requested.
        url: String,
        /// The `Retry-After` header, verbatim (seconds or an HTTP date), when the KDS sent one.
        retry_after: Option<String>,
    },

    /// The KDS answered with another non-success status.
    #[error("KDS answered HTTP {status} for {url}")]
    HttpStatus {
        /// The URL that was requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },

    /// The request did not complete: DNS, connect, TLS, timeout or a broken body.
    #[error("could not fetch {url}")]
    Network {
        /// The URL that was requested.
        url: String,
        /// What went wrong.
        #[source]
        source: Box<ureq::Error>,
    },

    /// The KDS answered 200 with something that is not the document asked for
    /// (for example an HTML error page from a proxy). Nothing was cached.
    #[error("KDS response from {url} is not a valid {what}: {reason}")]
    InvalidResponse {
        /// The URL that was requested.
        url: String,
        /// What was expected ("DER certificate", "PEM certificate chain", "DER CRL").
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A cached file is not a valid document, and the client may not refetch it.
    #[error("cached file {path} is not a valid {what}: {reason}")]
    InvalidCached {
        /// The cached file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// Offline, and the cache has no copy of the document.
    #[error("offline and no cached copy of {url} at {path}")]
    OfflineMiss {
        /// Where the cache looked.
        path: PathBuf,
        /// The URL the document would come from.
        url: String,
    },

    /// Offline, and the client has no cache at all.
    #[error("offline and no certificate cache configured for {url}")]
    OfflineNoCache {
        /// The URL the document would come from.
        url: String,
    },

    /// Reading or writing the cache failed.
    #[error("cannot {action} cache file {path}")]
    CacheIo {
        /// What was being done ("read", "write", "create directory for", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl KdsError {
    /// What the user can do about this error, for the CLI's `hint:` line.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::MaskedChipId { .. } => Some(
                "the guest policy masks the chip id; supply the VCEK with --vcek (and the \
                 chain with --cert-chain)"
                    .to_owned(),
            ),
            Self::NotFound { .. } => Some(
                "check the product generation, chip id and reported TCB; the KDS only has VCEKs \
                 for TCBs AMD released"
                    .to_owned(),
            ),
            Self::RateLimited { retry_after, .. } => Some(format!(
                "the KDS allows about one VCEK request per 10 s per address; retry {}, or work \
                 from the cache ({FILL_CACHE_HINT})",
                match retry_after {
                    Some(r) => format!("after {r}"),
                    None => "later".to_owned(),
                }
            )),
            Self::Network { .. } | Self::HttpStatus { .. } | Self::InvalidResponse { .. } => {
                Some(format!(
                    "check network access to the KDS, or work offline from the cache: \
                     {FILL_CACHE_HINT}"
                ))
            }
            Self::OfflineMiss { .. } | Self::OfflineNoCache { .. } => {
                Some(FILL_CACHE_HINT.to_owned())
            }
            Self::InvalidCached { path, .. } => Some(format!(
                "delete {} and fetch it again while online",
                path.display()
            )),
            Self::CacheIo { .. } | Self::FmcSplMismatch { .. } => None,
        }
    }
}
