//! The server side: a rustls [`ClientCertVerifier`] that requires and accepts a client by its
//! RA-TLS evidence.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::outcome::Outcome;
use crate::verifier::{PeerError, VerifiedCertificate, Verifier};

/// Requires a client certificate and verifies it as RA-TLS with a [`Verifier`]; the handshake
/// signature is checked by the crypto provider's algorithms against the certificate's key.
///
/// One instance serves one connection: it keeps the verified certificate for the freshness
/// exchange ([`ClientVerifier::take_verified`]).
#[derive(Debug)]
pub struct ClientVerifier {
    verifier: Verifier,
    provider: Arc<CryptoProvider>,
    outcome: Outcome,
}

impl ClientVerifier {
    /// A verifier for one connection.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            provider: crate::provider(),
            outcome: Outcome::default(),
        }
    }

    /// The certificate check's result, once the handshake has run.
    pub fn take_verified(&self) -> Option<Result<VerifiedCertificate, Arc<PeerError>>> {
        self.outcome.take()
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result =
            self.verifier
                .verify_certificate(end_entity, intermediates, crate::to_time(now));
        self.outcome.certificate(result)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(self.outcome.fail(PeerError::Tls12))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.outcome
            .tls13_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
