//! AMD SEV-SNP certificates: the pinned AMD roots, certificate and CRL parsing, RSASSA-PSS
//! chain verification (ARK → ASK/ASVK → VCEK/VLEK), the VCEK/VLEK extensions, and the ECDSA
//! P-384 primitive that checks a report signature.
//!
//! The paved path:
//!
//! ```no_run
//! # fn demo(der: &[u8], report: &[u8; 0x4A0]) -> Result<(), Box<dyn std::error::Error>> {
//! use a3s_attestation::certs::{verify_chain, CertChain, Certificate, Roots};
//! use a3s_attestation::Product;
//!
//! let chain = CertChain::from_certificates(Certificate::parse_all(der)?)?;
//! let at = time::OffsetDateTime::now_utc();
//! let vek = verify_chain(Roots::amd(), Product::Milan, &chain, at)?;
//! let (signed, sig) = report.split_at(0x2A0);
//! let r: &[u8; 72] = sig[..72].try_into()?;
//! let s: &[u8; 72] = sig[72..144].try_into()?;
//! vek.verify_report_signature(signed, r, s)?;
//! # Ok(()) }
//! ```
//!
//! Facts relied on (spec 57230 and AMD's KDS; see `reference/snp-kbs-protocol-facts.md` §4.5):
//! every certificate is signed with RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48; ARK, ASK and
//! ASVK hold RSA-4096 keys, VCEK and VLEK P-384 keys; roles are named by subject common name.

mod certificate;
mod chain;
mod crl;
mod der;
mod error;
mod extensions;
mod pem;
mod role;
mod roots;
mod signature;

pub use certificate::Certificate;
pub use chain::{verify_chain, verify_chain_with_crl, CertChain, VerifiedVek};
pub use crl::{Crl, VerifiedCrl};
pub use error::{
    AlgorithmError, CertError, ChainError, CrlError, ExtensionError, IssueError,
    ReportSignatureError, RootsError,
};
pub use extensions::VekExtensions;
pub use role::{Role, VekKind};
pub use roots::{ProductRoots, Roots, TrustOrigin};
pub use signature::REPORT_SIGNATURE_COMPONENT_LEN;

/// Operations that skip the chain of trust. Reviewers: grep for `danger`.
pub mod danger {
    use super::{Certificate, ReportSignatureError, REPORT_SIGNATURE_COMPONENT_LEN};

    /// Verifies a report signature with the key of `vek` **without** checking that `vek`
    /// chains to any root. Use [`super::VerifiedVek::verify_report_signature`] in real
    /// verification; this exists for tests and diagnostics.
    ///
    /// # Errors
    ///
    /// [`ReportSignatureError::NotVek`] if `vek` is a CA certificate, otherwise as
    /// [`super::VerifiedVek::verify_report_signature`].
    pub fn verify_report_signature(
        vek: &Certificate,
        signed_bytes: &[u8],
        r_le: &[u8; REPORT_SIGNATURE_COMPONENT_LEN],
        s_le: &[u8; REPORT_SIGNATURE_COMPONENT_LEN],
    ) -> Result<(), ReportSignatureError> {
        vek.verify_report_signature_unchecked(signed_bytes, r_le, s_le)
    }
}

#[cfg(test)]
mod tests;
