//! RA-TLS certificates: a P-384 key generated where the evidence comes from (the TEE), and a
//! self-signed X.509 certificate carrying that evidence.
//!
//! The certificate has, besides the usual fields:
//! - the non-critical extension [`EVIDENCE_OID`] (`2.23.133.5.4.9`) whose value is the CBOR
//!   evidence of [`crate::evidence`]: the SEV-SNP report whose REPORT_DATA is
//!   `SHA-256(claims) ‖ 0^32`, with claims `{"pubkey-hash": [7, SHA-384(SPKI DER)]}`;
//! - when the attester supplied certificates (an extended report's VCEK/VLEK, ASK, ARK), the
//!   non-critical extension [`ENDORSEMENTS_OID`] (`2.23.133.5.4.2`) with them, so a verifier
//!   needs no KDS access.
//!
//! Extensions are non-critical so that generic TLS stacks can still parse the certificate.
//! The certificate is self-signed: its own signature proves nothing (anyone can sign a copy),
//! what matters is that the TLS handshake signature is made with the key the evidence names.
//! Validity runs from five minutes before creation (clock skew) to [`CERT_LIFETIME_SECS`] after.

use std::fmt;
use std::sync::Arc;

use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::report::trustee::CertType;
use a3s_attestation::Report;
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber, PKCS_ECDSA_P384_SHA384,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use time::{Duration, OffsetDateTime};

use crate::evidence::{encode_endorsements, Claims, Evidence, EvidenceKind};
pub use crate::evidence::{ENDORSEMENTS_OID, EVIDENCE_OID};

/// How long a certificate is valid after it is made.
pub const CERT_LIFETIME_SECS: i64 = 24 * 60 * 60;
/// How far before its creation a certificate's validity starts.
pub const CLOCK_SKEW_SECS: i64 = 5 * 60;
/// The VMPL reports are requested at.
pub const REPORT_VMPL: u32 = 0;

/// The attested side's TLS identity: the key, the certificate with its evidence, and what a
/// fresh answer must repeat.
pub struct Identity {
    kind: EvidenceKind,
    certified_key: Arc<CertifiedKey>,
    spki_der: Vec<u8>,
    report: Report,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("kind", &self.kind)
            .field("spki_der", &hex::encode(&self.spki_der))
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Generates a P-384 key, asks `attester` for a report binding it, and makes the
    /// certificate. `kind` must say truthfully whose evidence the attester gives (a
    /// simulator-backed attester is [`EvidenceKind::Simulated`]); a verifier finds out anyway,
    /// because simulated evidence does not verify against AMD's roots.
    ///
    /// The attester may block (an ioctl, a request to the host); call this from a blocking
    /// context.
    ///
    /// # Errors
    /// [`IdentityError`] when the key, the report or the certificate cannot be made.
    pub fn generate(attester: &dyn Attester, kind: EvidenceKind) -> Result<Self, IdentityError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(IdentityError::Key)?;
        let spki_der = key.subject_public_key_info();
        let claims = Claims::for_key(&spki_der, None).encode();
        let evidence = attester
            .report(&Claims::report_data(&claims), REPORT_VMPL)
            .map_err(IdentityError::Report)?;
        let extension = Evidence::encode(kind, evidence.report.as_bytes(), &claims);
        let certs: Vec<&[u8]> = evidence
            .cert_chain
            .iter()
            .filter(|(t, _)| {
                matches!(
                    t,
                    CertType::Vcek | CertType::Vlek | CertType::Ask | CertType::Ark
                )
            })
            .map(|(_, der)| der.as_slice())
            .collect();
        let endorsements = (!certs.is_empty()).then(|| encode_endorsements(kind, &certs));
        let cert = self_signed(&key, kind, &extension, endorsements.as_deref())?;
        let certified_key = certified_key(cert, &key)?;
        Ok(Self {
            kind,
            certified_key,
            spki_der,
            report: evidence.report,
        })
    }

    /// The certificate (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certified_key.cert[0]
    }

    /// The DER SubjectPublicKeyInfo of the key.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Whose evidence this identity presents.
    pub fn kind(&self) -> EvidenceKind {
        self.kind
    }

    /// The report in the certificate.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The certificate and signing key for rustls.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified_key.clone()
    }
}

/// Makes a self-signed RA-TLS certificate for `key` carrying the evidence extension value
/// `evidence` (and `endorsements` when given). [`Identity::generate`] is the paved path; this
/// exists for callers that obtain evidence some other way.
///
/// # Errors
/// [`IdentityError::Certificate`] when rcgen cannot encode or sign it.
pub fn self_signed(
    key: &KeyPair,
    kind: EvidenceKind,
    evidence: &[u8],
    endorsements: Option<&[u8]>,
) -> Result<CertificateDer<'static>, IdentityError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        match kind {
            EvidenceKind::Simulated => "A3S Box RA-TLS (simulated)",
            _ => "A3S Box RA-TLS",
        },
    );
    params.distinguished_name = dn;
    let mut serial = [0u8; 16];
    SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| IdentityError::Random)?;
    serial[0] &= 0x7F; // a positive INTEGER
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::seconds(CLOCK_SKEW_SECS);
    params.not_after = now + Duration::seconds(CERT_LIFETIME_SECS);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let mut ext = CustomExtension::from_oid_content(EVIDENCE_OID, evidence.to_vec());
    ext.set_criticality(false);
    params.custom_extensions.push(ext);
    if let Some(e) = endorsements {
        let mut ext = CustomExtension::from_oid_content(ENDORSEMENTS_OID, e.to_vec());
        ext.set_criticality(false);
        params.custom_extensions.push(ext);
    }
    let cert = params
        .self_signed(key)
        .map_err(IdentityError::Certificate)?;
    Ok(cert.der().clone())
}

/// The rustls signing key of `key` with `cert`.
fn certified_key(
    cert: CertificateDer<'static>,
    key: &KeyPair,
) -> Result<Arc<CertifiedKey>, IdentityError> {
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = crate::provider()
        .key_provider
        .load_private_key(der)
        .map_err(IdentityError::SigningKey)?;
    Ok(Arc::new(CertifiedKey::new(vec![cert], signing)))
}

/// An RA-TLS identity could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Generating the P-384 key failed.
    #[error("generating the P-384 key")]
    Key(#[source] rcgen::Error),
    /// The TEE (or simulator) gave no report.
    #[error("obtaining the attestation report")]
    Report(#[source] HwError),
    /// The system random number generator failed.
    #[error("generating the certificate serial number")]
    Random,
    /// rcgen could not make the certificate.
    #[error("making the certificate")]
    Certificate(#[source] rcgen::Error),
    /// rustls refused the key.
    #[error("loading the key into rustls")]
    SigningKey(#[source] rustls::Error),
}
