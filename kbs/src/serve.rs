//! Serving the router on a TCP listener, in plain HTTP or over rustls.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file is unreadable or holds no PEM certificate.
    #[error("TLS certificate {path}: {why}")]
    Certificate {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// The key file is unreadable or holds no PEM private key.
    #[error("TLS key {path}: {why}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// rustls refused the pair.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A rustls server configuration from a PEM certificate chain and a PEM private key.
///
/// # Errors
/// [`TlsError`] naming the file.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Certificate {
            path: cert.display().to_string(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate {
            path: cert.display().to_string(),
            why: "no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        why: e.to_string(),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// Serves `app` on `listener` until the task is dropped; TLS when `tls` is given.
///
/// # Errors
/// When accepting on the listener fails.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        return axum::serve(listener, app).await;
    };
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (stream, peer) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let app = app.layer(axum::Extension(ConnectInfo(peer)));
            let service = TowerToHyperService::new(app);
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
