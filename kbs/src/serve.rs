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
use tokio::net::{TcpListener, TcpStream};
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

/// Serves `app` on `listener` until the task is dropped; TLS when `tls` is given. Every
/// connection runs on the caller's runtime; [`serve_per_core`] is the faster form for a
/// dedicated server process.
///
/// # Errors
/// None in practice: accept errors are logged and retried (the type keeps callers' `?`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let Some((stream, peer)) = accept(&listener).await else {
            continue;
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            acceptor.clone(),
        ));
    }
}

/// The next connection; `None` after an accept error, which never ends the server: a
/// connection that died in the backlog is skipped, and when descriptors run out (a flood of
/// connections) accepting pauses a second instead of stopping the broker (as axum's serve).
async fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(conn) => Some(conn),
        Err(e) => {
            use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
            if !matches!(
                e.kind(),
                ConnectionAborted | ConnectionRefused | ConnectionReset
            ) {
                tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            None
        }
    }
}

/// Serves `app` on `listener` from `threads` single-threaded runtimes, blocking the caller
/// until accepting fails.
///
/// Why: a request on a keep-alive connection is short (the `/auth` handler is a few µs), so
/// on a work-stealing runtime the wake-ups of idle workers cost more than the request. Here
/// the accepting thread hands each connection to one runtime, round-robin, and every read,
/// handler call and write of that connection stays on that runtime's thread (actix's and
/// trustee's model). One listening socket (no `SO_REUSEPORT`), so a second server on the same
/// address still fails with "address in use". Blocking work keeps its own pool per runtime.
///
/// # Errors
/// When a runtime or its thread cannot start, or the listener cannot join the runtime;
/// accept errors are logged and retried.
pub fn serve_per_core(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    threads: usize,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let current_thread = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    // This thread runs the first runtime (and the accept loop); the others get one each.
    let own = current_thread()?;
    let mut handles = vec![own.handle().clone()];
    let mut workers = Vec::new();
    for i in 1..threads.max(1) {
        let runtime = current_thread()?;
        handles.push(runtime.handle().clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("kbs-serve-{i}"))
            .spawn(move || runtime.block_on(async move { _ = stop_rx.await }))?;
        workers.push((stop_tx, thread));
    }
    listener.set_nonblocking(true)?;
    let result = own.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        let mut next = 0usize;
        loop {
            let Some((stream, peer)) = accept(&listener).await else {
                continue;
            };
            // Registered with the chosen runtime's reactor, inside that runtime.
            let stream = match stream.into_std() {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "cannot hand over connection");
                    continue;
                }
            };
            let (app, acceptor) = (app.clone(), acceptor.clone());
            handles[next % handles.len()].spawn(async move {
                match TcpStream::from_std(stream) {
                    Ok(stream) => serve_connection(stream, peer, app, acceptor).await,
                    Err(e) => tracing::debug!(%peer, error = %e, "cannot register connection"),
                }
            });
            next = next.wrapping_add(1);
        }
    });
    for (stop, thread) in workers {
        _ = stop.send(());
        _ = thread.join();
    }
    result
}

/// One connection: the TLS handshake when `acceptor` is given, then HTTP/1.1 until the peer
/// closes. The peer's address reaches handlers as [`ConnectInfo`].
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    acceptor: Option<TlsAcceptor>,
) {
    let app = app.layer(axum::Extension(ConnectInfo(peer)));
    let service = TowerToHyperService::new(app);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let result = match acceptor {
        None => {
            builder
                .serve_connection(TokioIo::new(stream), service)
                .await
        }
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => {
                builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
        },
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
