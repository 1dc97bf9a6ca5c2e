//! The evidence checks both rustls verifiers and the freshness exchange delegate to.
//!
//! A certificate is accepted only after every step, in this order (each failure is its own
//! [`PeerError`] variant):
//! 1. exactly one certificate, valid X.509, inside its validity period;
//! 2. exactly one evidence extension (`2.23.133.5.4.9`), parsed strictly;
//! 3. simulated evidence (its own CBOR tag) only if [`crate::danger::accept_simulated`] was
//!    called: otherwise it is refused before the report is looked at;
//! 4. `REPORT_DATA == SHA-256(claims) ‖ 0^32`: the report was made for these claims;
//! 5. `pubkey-hash` is the hash of this certificate's SubjectPublicKeyInfo: the evidence was
//!    made for this key, not copied from another certificate;
//! 6. the report chains to AMD's roots (hardware tag) or the simulator's (simulated tag), via
//!    [`a3s_attestation::verify::verify`], with the VEK from the endorsements extension or a
//!    [`CertSource`]; the chain's origin must agree with the tag;
//! 7. the appraisal policy passes ([`AppraisalPolicy::appraise`]).
//!
//! The TLS handshake signature (proof that the peer holds the key) is checked by rustls's
//! provider in the verifiers. A fresh answer ([`Verifier::verify_fresh`]) runs the same steps
//! on its report, with the certificate's chain, and also requires the claims nonce
//! `SHA-256(exporter ‖ nonce)` and the certificate report's REPORT_ID (same guest launch).

use std::fmt;
use std::sync::Arc;

use a3s_attestation::certs::{CertChain, CertError, Certificate, Roots};
use a3s_attestation::chain_source::{gather_chain, GatherError};
use a3s_attestation::kds::CertSource;
use a3s_attestation::policy::{AppraisalPolicy, Verdict};
use a3s_attestation::verify::{verify, VerifiedReport, VerifyError};
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::time::ASN1Time;

use crate::evidence::{
    parse_endorsements, Claims, Evidence, EvidenceKind, ParseError, ENDORSEMENTS_OID, EVIDENCE_OID,
};
use crate::freshness;

/// What a relying party accepts: an appraisal policy, where VCEKs come from when the
/// certificate carries none, and (only through [`crate::danger`]) the simulator's roots.
/// Cloning is cheap (one per connection).
#[derive(Clone)]
pub struct Verifier(Arc<Config>);

#[derive(Clone)]
struct Config {
    policy: AppraisalPolicy,
    simulator_roots: Option<Roots>,
    cert_source: Option<Arc<dyn CertSource + Send + Sync>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("policy", &self.0.policy)
            .field("accepts_simulated", &self.0.simulator_roots.is_some())
            .field("cert_source", &self.0.cert_source.is_some())
            .finish()
    }
}

impl Verifier {
    /// A verifier of hardware evidence against AMD's roots under `policy`. Simulated evidence
    /// is refused whatever the policy says, unless [`crate::danger::accept_simulated`] is used.
    pub fn new(policy: AppraisalPolicy) -> Self {
        Self(Arc::new(Config {
            policy,
            simulator_roots: None,
            cert_source: None,
        }))
    }

    /// Fetches VCEKs from `source` (AMD's KDS, its cache) for certificates without
    /// endorsements.
    #[must_use]
    pub fn with_cert_source(mut self, source: Arc<dyn CertSource + Send + Sync>) -> Self {
        Arc::make_mut(&mut self.0).cert_source = Some(source);
        self
    }

    /// The appraisal policy.
    pub fn policy(&self) -> &AppraisalPolicy {
        &self.0.policy
    }

    pub(crate) fn accept_simulated(mut self, roots: Roots) -> Self {
        let config = Arc::make_mut(&mut self.0);
        config.simulator_roots = Some(roots);
        config.policy.allow_simulated = true;
        self
    }

    /// Checks an RA-TLS certificate as of `now` (steps 1 to 7 of the module docs).
    ///
    /// # Errors
    /// [`PeerError`] naming the first check that failed.
    pub fn verify_certificate(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: OffsetDateTime,
    ) -> Result<VerifiedCertificate, PeerError> {
        if !intermediates.is_empty() {
            return Err(PeerError::Intermediates(intermediates.len()));
        }
        let (rest, x509) = X509Certificate::from_der(end_entity)
            .map_err(|e| PeerError::Certificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(PeerError::Certificate(format!(
                "{} bytes after the certificate",
                rest.len()
            )));
        }
        let validity = x509.validity();
        if !validity.is_valid_at(ASN1Time::from(now)) {
            return Err(PeerError::Validity {
                not_before: validity.not_before.to_string(),
                not_after: validity.not_after.to_string(),
            });
        }
        let evidence =
            Evidence::parse(extension(&x509, EVIDENCE_OID)?.ok_or(PeerError::MissingEvidence)?)
                .map_err(PeerError::Evidence)?;
        let roots = self.roots_for(evidence.kind())?;
        let spki_der = x509.tbs_certificate.subject_pki.raw.to_vec();
        check_binding(&evidence, &spki_der)?;

        let mut supplied = Vec::new();
        if let Some(value) = extension(&x509, ENDORSEMENTS_OID)? {
            let (kind, ders) = parse_endorsements(value).map_err(PeerError::Endorsements)?;
            if kind != evidence.kind() {
                return Err(PeerError::KindMismatch {
                    evidence: evidence.kind(),
                    other: kind,
                });
            }
            for der in ders {
                supplied.push(Certificate::from_der(der).map_err(PeerError::Endorsement)?);
            }
        }
        let source = self.0.cert_source.as_deref().map(|s| s as &dyn CertSource);
        let chain = gather_chain(evidence.report(), supplied, source)?;
        let (verified, verdict) = self.appraise(&evidence, &chain, roots, now)?;
        Ok(VerifiedCertificate {
            kind: evidence.kind(),
            spki_der,
            claims: evidence.claims().clone(),
            verified,
            verdict,
            chain,
        })
    }

    /// Checks a fresh answer to `nonce` on a connection whose exporter value is `exporter`,
    /// from the peer whose certificate passed as `certificate`.
    ///
    /// # Errors
    /// [`PeerError`] naming the first check that failed.
    pub fn verify_fresh(
        &self,
        certificate: VerifiedCertificate,
        evidence: &[u8],
        exporter: &[u8; freshness::EXPORTER_LEN],
        nonce: &[u8; freshness::NONCE_LEN],
        now: OffsetDateTime,
    ) -> Result<VerifiedPeer, PeerError> {
        let evidence = Evidence::parse(evidence).map_err(PeerError::Evidence)?;
        if evidence.kind() != certificate.kind {
            return Err(PeerError::KindMismatch {
                evidence: certificate.kind,
                other: evidence.kind(),
            });
        }
        let roots = self.roots_for(evidence.kind())?;
        check_binding(&evidence, &certificate.spki_der)?;
        let expected = freshness::binding(exporter, nonce);
        match &evidence.claims().nonce {
            None => return Err(PeerError::MissingNonce),
            // The binding is fresh per connection and a wrong guess ends the connection, so a
            // timing difference reveals nothing reusable.
            Some(n) if n[..] != expected[..] => return Err(PeerError::StaleNonce),
            Some(_) => {}
        }
        let (verified, verdict) = self.appraise(&evidence, &certificate.chain, roots, now)?;
        if verified.report().report_id() != certificate.verified.report().report_id() {
            return Err(PeerError::DifferentGuest);
        }
        Ok(VerifiedPeer {
            claims: evidence.claims().clone(),
            verified,
            verdict,
            certificate,
        })
    }

    fn roots_for(&self, kind: EvidenceKind) -> Result<&Roots, PeerError> {
        match kind {
            EvidenceKind::Simulated => self
                .0
                .simulator_roots
                .as_ref()
                .ok_or(PeerError::SimulatedNotAllowed),
            _ => Ok(Roots::amd()),
        }
    }

    fn appraise(
        &self,
        evidence: &Evidence,
        chain: &CertChain,
        roots: &Roots,
        now: OffsetDateTime,
    ) -> Result<(VerifiedReport, Verdict), PeerError> {
        let verified = verify(evidence.report(), chain, roots, now, None)?;
        if verified.simulated() != evidence.kind().is_simulated() {
            return Err(PeerError::TrustMismatch {
                kind: evidence.kind(),
                simulated: verified.simulated(),
            });
        }
        let verdict = self.0.policy.appraise(&verified);
        if let Some(c) = verdict.first_failure() {
            return Err(PeerError::Policy {
                check: c.name,
                detail: c.detail.clone(),
            });
        }
        Ok((verified, verdict))
    }
}

/// Steps 4 and 5: REPORT_DATA binds the claims, the claims bind the key.
fn check_binding(evidence: &Evidence, spki_der: &[u8]) -> Result<(), PeerError> {
    let expected = Claims::report_data(evidence.claims_bytes());
    let actual = evidence.report().report_data();
    // Both values are public (the report and the claims travel in the certificate).
    if expected != actual {
        return Err(PeerError::ReportDataMismatch {
            expected: hex::encode(expected),
            actual: hex::encode(actual),
        });
    }
    if !evidence.claims().pubkey_hash.matches(spki_der) {
        return Err(PeerError::PubkeyHashMismatch);
    }
    Ok(())
}

/// The value of the one extension with `oid`, if any.
fn extension<'a>(
    x509: &'a X509Certificate<'_>,
    oid: &[u64],
) -> Result<Option<&'a [u8]>, PeerError> {
    let want = oid.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
    let mut found = x509
        .extensions()
        .iter()
        .filter(|e| e.oid.to_id_string() == want);
    let first = found.next();
    if found.next().is_some() {
        return Err(PeerError::Certificate(format!(
            "extension {want} appears twice"
        )));
    }
    Ok(first.map(|e| e.value))
}

/// A certificate whose evidence passed every check. Only [`Verifier::verify_certificate`]
/// makes one.
#[derive(Clone, Debug)]
pub struct VerifiedCertificate {
    kind: EvidenceKind,
    spki_der: Vec<u8>,
    claims: Claims,
    verified: VerifiedReport,
    verdict: Verdict,
    chain: CertChain,
}

impl VerifiedCertificate {
    /// The certificate's claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
    /// The verified report in the certificate.
    pub fn report(&self) -> &VerifiedReport {
        &self.verified
    }
    /// The policy verdict on it.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }
    /// The key the certificate binds (DER SubjectPublicKeyInfo).
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }
}

/// A peer that presented accepted evidence in its certificate and then answered this
/// connection's nonce with a fresh accepted report. Only [`Verifier::verify_fresh`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedPeer {
    claims: Claims,
    verified: VerifiedReport,
    verdict: Verdict,
    certificate: VerifiedCertificate,
}

impl VerifiedPeer {
    /// The claims of the fresh answer (the nonce is `SHA-256(exporter ‖ nonce)`).
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
    /// The fresh report.
    pub fn report(&self) -> &VerifiedReport {
        &self.verified
    }
    /// The policy verdict on the fresh report (with `simulated`).
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }
    /// Whether the evidence came from the A3S Box simulator.
    pub fn simulated(&self) -> bool {
        self.verdict.simulated
    }
    /// The launch measurement.
    pub fn measurement(&self) -> [u8; 48] {
        self.verified.report().measurement()
    }
    /// The certificate's verified evidence.
    pub fn certificate(&self) -> &VerifiedCertificate {
        &self.certificate
    }
}

/// Why a peer's evidence was refused. One variant per check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The peer sent a chain; RA-TLS certificates stand alone.
    #[error(
        "peer sent {0} intermediate certificates; an RA-TLS certificate is self-signed and alone"
    )]
    Intermediates(usize),
    /// The certificate is not valid X.509.
    #[error("peer certificate is invalid: {0}")]
    Certificate(String),
    /// The certificate is outside its validity period.
    #[error("peer certificate is not valid now (valid from {not_before} to {not_after})")]
    Validity {
        /// Start of validity.
        not_before: String,
        /// End of validity.
        not_after: String,
    },
    /// The certificate has no evidence extension.
    #[error("peer certificate has no RA-TLS evidence extension (2.23.133.5.4.9)")]
    MissingEvidence,
    /// The evidence is malformed.
    #[error("peer evidence is malformed")]
    Evidence(#[source] ParseError),
    /// The endorsements extension is malformed.
    #[error("peer endorsements extension is malformed")]
    Endorsements(#[source] ParseError),
    /// A certificate in the endorsements is not an AMD-profile certificate.
    #[error("a certificate in the peer's endorsements is invalid")]
    Endorsement(#[source] CertError),
    /// Two pieces of evidence from the peer disagree on hardware versus simulated.
    #[error("peer evidence is {evidence:?} but other evidence from it is {other:?}")]
    KindMismatch {
        /// The certificate's evidence kind.
        evidence: EvidenceKind,
        /// The other kind.
        other: EvidenceKind,
    },
    /// Simulated evidence reached a verifier that does not accept it.
    #[error("peer evidence is from the A3S Box simulator, which this verifier does not accept")]
    SimulatedNotAllowed,
    /// REPORT_DATA is not `SHA-256(claims) ‖ 0^32`.
    #[error("report data does not bind the claims (expected {expected}, report has {actual})")]
    ReportDataMismatch {
        /// What REPORT_DATA should be (hex).
        expected: String,
        /// What it is (hex).
        actual: String,
    },
    /// `pubkey-hash` is not the hash of the certificate's key.
    #[error("the evidence's pubkey-hash is not the hash of the peer certificate's key")]
    PubkeyHashMismatch,
    /// The report's certificates could not be assembled.
    #[error("finding the report's certificates")]
    Chain(#[from] GatherError),
    /// The report does not verify.
    #[error("the peer's report does not verify")]
    Report(#[from] VerifyError),
    /// The tag and the roots the report chains to disagree.
    #[error("evidence tagged {kind:?} chains to {} roots", if *simulated { "simulator" } else { "AMD" })]
    TrustMismatch {
        /// What the tag says.
        kind: EvidenceKind,
        /// Whether the roots were the simulator's.
        simulated: bool,
    },
    /// The appraisal policy refused the report.
    #[error("policy check {check} failed: {detail}")]
    Policy {
        /// The failed check's name (as in the policy file).
        check: &'static str,
        /// What was compared.
        detail: String,
    },
    /// The fresh answer's claims have no nonce.
    #[error("the peer's fresh evidence has no nonce")]
    MissingNonce,
    /// The fresh answer is bound to another nonce or another connection.
    #[error("the peer's fresh evidence answers another nonce or connection (stale or replayed)")]
    StaleNonce,
    /// The fresh report comes from another guest launch than the certificate's.
    #[error("the peer's fresh report is from another guest than its certificate's")]
    DifferentGuest,
    /// The TLS handshake signature does not verify with the certificate's key: the peer does
    /// not hold the key the evidence names.
    #[error("the peer's TLS handshake signature does not verify with its certificate's key")]
    HandshakeSignature(#[source] rustls::Error),
    /// TLS 1.2 was negotiated (RA-TLS uses TLS 1.3 only).
    #[error("TLS 1.2 is not supported by RA-TLS")]
    Tls12,
}

impl PeerError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::SimulatedNotAllowed => Some(
                "the peer runs under --tee-simulate; accept it only for development, with \
                 ratls::danger::accept_simulated (CLI: --allow-simulated)"
                    .into(),
            ),
            Self::Policy {
                check: "measurement",
                ..
            } => Some(
                "the peer runs other code than the policy allows: compare with `a3s-box measure`"
                    .into(),
            ),
            Self::Chain(e) => e.hint(),
            _ => None,
        }
    }
}
