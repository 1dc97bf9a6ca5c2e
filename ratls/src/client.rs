//! The client side: a rustls [`ServerCertVerifier`] that accepts a server by its RA-TLS
//! evidence instead of a CA chain.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::outcome::Outcome;
use crate::verifier::{PeerError, VerifiedCertificate, Verifier};

/// Verifies a server's RA-TLS certificate with a [`Verifier`]; the handshake signature is
/// checked by the crypto provider's algorithms against the certificate's key.
///
/// The server name is not checked: the server is identified by its evidence, not a DNS name.
/// One instance serves one connection: it keeps the verified certificate for the freshness
/// exchange ([`ServerVerifier::take_verified`]).
#[derive(Debug)]
pub struct ServerVerifier {
    verifier: Verifier,
    provider: Arc<CryptoProvider>,
    outcome: Outcome,
}

impl ServerVerifier {
    /// A verifier for one connection.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            provider: crate::provider(),
            outcome: Outcome::default(),
        }
    }

    /// The certificate check's result, once the handshake has run: the verified certificate,
    /// or why it was refused. `None` if no certificate was checked.
    pub fn take_verified(&self) -> Option<Result<VerifiedCertificate, Arc<PeerError>>> {
        self.outcome.take()
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result =
            self.verifier
                .verify_certificate(end_entity, intermediates, crate::to_time(now));
        self.outcome.certificate(result)?;
        Ok(ServerCertVerified::assertion())
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
