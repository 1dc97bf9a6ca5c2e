//! AMD Key Distribution Service (KDS) client with an on-disk cache.
//!
//! The verifier needs, per product generation, the ASK/ASVK + ARK chain, the VCEK of the chip
//! and TCB that signed a report, and the CRLs. It asks a [`CertSource`] for them; a
//! [`KdsClient`] is the implementation that fetches them from AMD exactly as AMD serves them,
//! keeps them in a [`KdsCache`] and can work from that cache alone ([`KdsClient::with_offline`]).
//!
//! # URLs (AMD spec 57230, chapter 4)
//!
//! | document | URL | format |
//! |---|---|---|
//! | chain | `{base}/{vcek,vlek}/v1/{Milan,Genoa,Turin}/cert_chain` | PEM: ASK (ASVK for VLEK), then ARK |
//! | CRL | `{base}/{vcek,vlek}/v1/{product}/crl` | DER |
//! | VCEK, Milan/Genoa | `{base}/vcek/v1/{product}/{hex(chip_id)}?blSPL=NN&teeSPL=NN&snpSPL=NN&ucodeSPL=NN` | DER |
//! | VCEK, Turin | `{base}/vcek/v1/Turin/{hex(chip_id[0..8])}?fmcSPL=NN&blSPL=NN&teeSPL=NN&snpSPL=NN&ucodeSPL=NN` | DER |
//!
//! `base` is [`DEFAULT_BASE_URL`] unless configured (the simulator serves the same paths on
//! loopback). Hex is lower case; `NN` is decimal, zero-padded to two digits. A masked chip id
//! (all zero) names no chip, so its VCEK cannot be fetched ([`KdsError::MaskedChipId`]). VLEKs
//! are provisioned by cloud providers and are never fetched.
//!
//! # Cache layout
//!
//! Below the root the caller chooses (the CLI uses `A3S_HOME/cache/kds`), the layout mirrors the
//! URL path:
//!
//! ```text
//! <root>/vcek/v1/Milan/cert_chain.pem                       PEM as served
//! <root>/vcek/v1/Milan/crl.der                              DER as served
//! <root>/vlek/v1/Genoa/cert_chain.pem
//! <root>/vcek/v1/Milan/<hwid-hex>/bl03_tee00_snp08_ucode115.der
//! <root>/vcek/v1/Turin/<hwid-hex>/bl01_tee00_snp02_ucode71_fmc00.der
//! ```
//!
//! `<hwid-hex>` is the same hex as in the URL (128 characters for Milan/Genoa, 16 for Turin).
//! Files hold the exact bytes the KDS served. Writes are atomic (temp file in the same
//! directory, write, fsync, rename, fsync the directory), and only bodies that pass a content
//! check are written: a VCEK must parse as one DER X.509 certificate, a chain must be exactly
//! two PEM certificates, a CRL must parse as a DER X.509 CRL, and nothing that looks like HTML
//! (or is served as `text/html`) is accepted. To pre-fill the cache on an air-gapped host, copy
//! these files in with the same names.
//!
//! # Freshness
//!
//! Certificates never change once issued, so a cached chain or VCEK is used for as long as it
//! exists. CRLs do change: a cached CRL is *fresh* while it is younger than 24 hours (file
//! modification time; see [`KdsClient::with_crl_max_age`]) **and** its `nextUpdate`, if any, has
//! not passed. A fresh CRL is served from the cache. A stale one is refetched when online; if
//! that fetch fails for any reason the cached copy is returned with a `tracing` warning, and
//! when offline the stale copy is returned with a warning. Whether a stale CRL is acceptable is
//! the verifier's decision: it can read `nextUpdate` itself.
//!
//! A cached file that fails the content check is refetched when online, and reported as
//! [`KdsError::InvalidCached`] when offline.

mod cache;
mod client;
mod error;
mod resource;
mod validate;

pub use cache::{CacheEntry, KdsCache};
pub use client::KdsClient;
pub use error::KdsError;
pub use resource::{
    cert_chain_url, crl_url, vcek_url, KdsResource, TcbSpls, VcekId, VekKind, DEFAULT_BASE_URL,
};

use crate::Product;

/// Where the verifier gets AMD certificates and CRLs from.
///
/// Implementations: [`KdsClient`] (network and/or cache; offline for cache-only), and test
/// doubles that serve real fixture bytes. Every method returns the document's bytes exactly as
/// AMD's KDS serves them, so an implementation that reads files must not re-encode them. The
/// trait is object-safe: the verifier takes `&dyn CertSource`.
pub trait CertSource {
    /// The CA chain for `product` and `kind`: PEM, the ASK (VCEK) or ASVK (VLEK) first, then
    /// the ARK.
    ///
    /// # Errors
    ///
    /// When the chain is neither available locally nor fetchable; see [`KdsError`].
    fn cert_chain(&self, product: Product, kind: VekKind) -> Result<Vec<u8>, KdsError>;

    /// The DER VCEK of the chip and TCB named by `id`.
    ///
    /// # Errors
    ///
    /// [`KdsError::MaskedChipId`] for an all-zero chip id, or when the VCEK is neither available
    /// locally nor fetchable; see [`KdsError`].
    fn vcek(&self, id: &VcekId) -> Result<Vec<u8>, KdsError>;

    /// The DER CRL for `product` and `kind`, signed by the ARK.
    ///
    /// # Errors
    ///
    /// When the CRL is neither available locally nor fetchable; see [`KdsError`].
    fn crl(&self, product: Product, kind: VekKind) -> Result<Vec<u8>, KdsError>;
}

impl<T: CertSource + ?Sized> CertSource for &T {
    fn cert_chain(&self, product: Product, kind: VekKind) -> Result<Vec<u8>, KdsError> {
        (**self).cert_chain(product, kind)
    }

    fn vcek(&self, id: &VcekId) -> Result<Vec<u8>, KdsError> {
        (**self).vcek(id)
    }

    fn crl(&self, product: Product, kind: VekKind) -> Result<Vec<u8>, KdsError> {
        (**self).crl(product, kind)
    }
}

impl<T: CertSource + ?Sized> CertSource for Box<T> {
    fn cert_chain(&self, product: Product, kind: VekKind) -> Result<Vec<u8>, KdsError> {
        (**self).cert_chain(product, kind)
    }

    fn vcek(&self, id: &VcekId) -> Result<Vec<u8>, KdsError> {
        (**self).vcek(id)
    }

    fn crl(&self, product: Product, kind: VekKind) -> Result<Vec<u8>, KdsError> {
        (**self).crl(product, kind)
    }
}

impl<T: CertSource + ?Sized> CertSource for std::sync::Arc<T> {
    fn cert_chain(&self, product: Product, kind: VekKind) -> Result<Vec<u8>, KdsError> {
        (**self).cert_chain(product, kind)
    }

    fn vcek(&self, id: &VcekId) -> Result<Vec<u8>, KdsError> {
        (**self).vcek(id)
    }

    fn crl(&self, product: Product, kind: VekKind) -> Result<Vec<u8>, KdsError> {
        (**self).crl(product, kind)
    }
}

#[cfg(test)]
mod tests;
