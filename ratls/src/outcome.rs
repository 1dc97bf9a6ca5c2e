//! Where a per-connection rustls verifier leaves its result, so the caller gets the typed
//! [`PeerError`] (or the verified certificate) back after the handshake.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::{CertificateError, OtherError};

use crate::verifier::{PeerError, VerifiedCertificate};

/// The result of the checks a verifier ran during one handshake.
#[derive(Debug, Default)]
pub(crate) struct Outcome(Mutex<Option<Result<VerifiedCertificate, Arc<PeerError>>>>);

impl Outcome {
    /// Records the certificate check; on failure returns the rustls error to abort with.
    pub(crate) fn certificate(
        &self,
        result: Result<VerifiedCertificate, PeerError>,
    ) -> Result<(), rustls::Error> {
        match result {
            Ok(v) => {
                *self.lock() = Some(Ok(v));
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Records a failure and returns the rustls error carrying it.
    pub(crate) fn fail(&self, e: PeerError) -> rustls::Error {
        tracing::debug!(error = %e, "RA-TLS peer refused");
        let e = Arc::new(e);
        *self.lock() = Some(Err(e.clone()));
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(e)))
    }

    /// The TLS 1.3 handshake signature check both directions share: rustls's own provider
    /// algorithms decide, and a failure is recorded as [`PeerError::HandshakeSignature`].
    pub(crate) fn tls13_signature(
        &self,
        provider: &rustls::crypto::CryptoProvider,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider.signature_verification_algorithms,
        )
        .map_err(|e| self.fail(PeerError::HandshakeSignature(e)))
    }

    /// Takes what was recorded.
    pub(crate) fn take(&self) -> Option<Result<VerifiedCertificate, Arc<PeerError>>> {
        self.lock().take()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<Result<VerifiedCertificate, Arc<PeerError>>>> {
        // A panic while holding the lock cannot leave a half-written Option.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
