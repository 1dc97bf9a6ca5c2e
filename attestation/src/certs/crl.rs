//! AMD's certificate revocation lists (DER, from `https://kdsintf.amd.com/{vcek|vlek}/v1/<Product>/crl`),
//! signed by the ARK with RSASSA-PSS SHA-384.

use std::fmt;

use time::OffsetDateTime;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::X509Version;

use super::{signature, Certificate, CrlError};

/// A parsed, not yet verified CRL.
///
/// Invariants established by parsing: version 2 (or absent), RSASSA-PSS SHA-384 with equal
/// inner and outer algorithm identifiers, no critical CRL or entry extension (AMD uses none,
/// and an unknown one could narrow the list's scope), no trailing bytes.
#[derive(Clone)]
pub struct Crl {
    der: Vec<u8>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    issuer: Vec<u8>,
    this_update: OffsetDateTime,
    next_update: Option<OffsetDateTime>,
    revoked: Vec<Vec<u8>>,
}

impl Crl {
    /// Parses a DER CRL.
    ///
    /// # Errors
    ///
    /// [`CrlError`] if the bytes are not one well-formed CRL as AMD issues them.
    pub fn from_der(der: &[u8]) -> Result<Self, CrlError> {
        let (rest, crl) =
            CertificateRevocationList::from_der(der).map_err(|err| CrlError::Der {
                source: match err {
                    x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
                    x509_parser::nom::Err::Incomplete(_) => {
                        x509_parser::error::X509Error::InvalidCertificate
                    }
                },
            })?;
        if !rest.is_empty() {
            return Err(CrlError::TrailingData { len: rest.len() });
        }
        let tbs = &crl.tbs_cert_list;
        if let Some(version) = tbs.version.filter(|&v| v != X509Version::V2) {
            return Err(CrlError::Version {
                version: Some(version.0),
            });
        }
        signature::check_rsa_pss_sha384(&crl.signature_algorithm)
            .map_err(|source| CrlError::SignatureAlgorithm { source })?;
        if tbs.signature != crl.signature_algorithm {
            return Err(CrlError::SignatureAlgorithmMismatch);
        }
        if crl.signature_value.unused_bits != 0 {
            return Err(CrlError::SignatureBits {
                unused_bits: crl.signature_value.unused_bits,
            });
        }
        let critical = crl
            .extensions()
            .iter()
            .chain(
                crl.iter_revoked_certificates()
                    .flat_map(|entry| entry.extensions()),
            )
            .find(|ext| ext.critical);
        if let Some(ext) = critical {
            return Err(CrlError::CriticalExtension {
                oid: ext.oid.to_id_string(),
            });
        }
        Ok(Self {
            der: der.to_vec(),
            tbs: tbs.as_ref().to_vec(),
            signature: crl.signature_value.data.to_vec(),
            issuer: tbs.issuer.as_raw().to_vec(),
            this_update: tbs.this_update.to_datetime(),
            next_update: tbs.next_update.map(|t| t.to_datetime()),
            revoked: crl
                .iter_revoked_certificates()
                .map(|entry| normalize_serial(entry.raw_serial()).to_vec())
                .collect(),
        })
    }

    /// The CRL exactly as received.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// thisUpdate.
    pub fn this_update(&self) -> OffsetDateTime {
        self.this_update
    }

    /// nextUpdate, if present.
    pub fn next_update(&self) -> Option<OffsetDateTime> {
        self.next_update
    }

    /// Serial numbers listed, as big-endian magnitudes without leading zero bytes.
    pub fn revoked_serials(&self) -> impl Iterator<Item = &[u8]> {
        self.revoked.iter().map(Vec::as_slice)
    }

    /// Checks that `issuer` signed this CRL and that it is current at `at`: `issuer` is a CA
    /// allowed to sign CRLs, the CRL's issuer name is its subject, the RSASSA-PSS signature
    /// verifies, and `this_update <= at <= next_update` (when nextUpdate is present).
    ///
    /// # Errors
    ///
    /// [`CrlError`] naming the first failing check.
    pub fn verify(self, issuer: &Certificate, at: OffsetDateTime) -> Result<VerifiedCrl, CrlError> {
        let role = issuer.role();
        if !issuer.may_sign_crls() {
            return Err(CrlError::IssuerNotCrlSigner { issuer: role });
        }
        if self.issuer != issuer.subject_der() {
            return Err(CrlError::IssuerName { issuer: role });
        }
        if !signature::verify_rsa_pss_sha384(issuer.public_key(), &self.tbs, &self.signature) {
            return Err(CrlError::Signature { issuer: role });
        }
        if at < self.this_update {
            return Err(CrlError::NotYetValid {
                this_update: self.this_update,
                at,
            });
        }
        if let Some(next_update) = self.next_update.filter(|&next| at > next) {
            return Err(CrlError::Stale { next_update, at });
        }
        Ok(VerifiedCrl {
            crl: self,
            issuer_spki: issuer.spki_der().to_vec(),
        })
    }
}

impl fmt::Debug for Crl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crl")
            .field("this_update", &self.this_update)
            .field("next_update", &self.next_update)
            .field("revoked", &self.revoked.len())
            .finish_non_exhaustive()
    }
}

/// Proof that a CRL was signed by a given CA and was current when checked; built only by
/// [`Crl::verify`].
#[derive(Clone, Debug)]
pub struct VerifiedCrl {
    crl: Crl,
    issuer_spki: Vec<u8>,
}

impl VerifiedCrl {
    /// The verified CRL.
    pub fn crl(&self) -> &Crl {
        &self.crl
    }

    /// Whether the certificate with this serial number (big-endian, leading zero bytes
    /// ignored) is listed.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        let serial = normalize_serial(serial);
        self.crl.revoked.iter().any(|listed| listed == serial)
    }

    /// Whether `cert` is the certificate (same key and subject) that signed this CRL.
    pub(crate) fn issued_by(&self, cert: &Certificate) -> bool {
        self.issuer_spki == cert.spki_der() && self.crl.issuer == cert.subject_der()
    }
}

/// Strips leading zero bytes, keeping at least one byte.
pub(crate) fn normalize_serial(serial: &[u8]) -> &[u8] {
    let start = serial
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(serial.len().saturating_sub(1));
    serial.get(start..).unwrap_or(serial)
}
