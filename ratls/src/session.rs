//! The async API: [`serve`] and [`connect`] run the TLS 1.3 handshake with RA-TLS
//! certificates, then the freshness exchange, and return the stream with the verified peer.

use std::fmt;
use std::sync::Arc;

use a3s_attestation::hw::{Attester, HwError};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::server::NoServerSessionStorage;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::RootCertStore;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

use crate::cert::Identity;
use crate::client::ServerVerifier;
use crate::freshness::{
    self, fresh_evidence, read_message, write_message, Message, ProtocolError, EXPORTER_LEN,
};
use crate::server::ClientVerifier;
use crate::verifier::{PeerError, VerifiedCertificate, VerifiedPeer, Verifier};

/// The server name sent (SNI) when the server is identified by its evidence.
pub const RATLS_SERVER_NAME: &str = "ratls.a3s.invalid";

/// The attested side's identity and the TEE that answers challenges with fresh reports.
#[derive(Clone)]
pub struct Attested {
    identity: Arc<Identity>,
    attester: Arc<dyn Attester + Send + Sync>,
}

impl Attested {
    /// `identity`, whose fresh reports come from `attester` (the one it was made with).
    pub fn new(identity: Arc<Identity>, attester: Arc<dyn Attester + Send + Sync>) -> Self {
        Self { identity, attester }
    }

    /// The identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The attester.
    pub fn attester(&self) -> &Arc<dyn Attester + Send + Sync> {
        &self.attester
    }
}

impl fmt::Debug for Attested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attested")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// How a server presents itself and whether it verifies clients.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    identity: ServerIdentity,
    client_auth: Option<Verifier>,
}

#[derive(Clone, Debug)]
enum ServerIdentity {
    Attested(Attested),
    Plain(Arc<CertifiedKey>),
}

impl ServerConfig {
    /// A server in a TEE, presenting its RA-TLS certificate and answering challenges.
    pub fn attested(attested: Attested) -> Self {
        Self {
            identity: ServerIdentity::Attested(attested),
            client_auth: None,
        }
    }

    /// A server outside any TEE (a relying party), with an ordinary certificate chain and key.
    pub fn plain(key: Arc<CertifiedKey>) -> Self {
        Self {
            identity: ServerIdentity::Plain(key),
            client_auth: None,
        }
    }

    /// Also require clients to present RA-TLS evidence that `verifier` accepts.
    #[must_use]
    pub fn verify_clients(mut self, verifier: Verifier) -> Self {
        self.client_auth = Some(verifier);
        self
    }

    fn attested_side(&self) -> Option<&Attested> {
        match &self.identity {
            ServerIdentity::Attested(a) => Some(a),
            ServerIdentity::Plain(_) => None,
        }
    }
}

/// How a client authenticates the server.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ServerAuth {
    /// By RA-TLS evidence.
    Attested(Verifier),
    /// By an ordinary certificate chain to `roots`, for `server_name` (a relying party that is
    /// not in a TEE).
    WebPki {
        /// Trust anchors.
        roots: Arc<RootCertStore>,
        /// The name the server's certificate must be valid for.
        server_name: ServerName<'static>,
    },
}

/// How a client authenticates the server and whether it attests itself.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    server_auth: ServerAuth,
    identity: Option<Attested>,
    nonce: Option<[u8; freshness::NONCE_LEN]>,
}

impl ClientConfig {
    /// A client that authenticates the server with `server_auth` and presents no certificate.
    pub fn new(server_auth: ServerAuth) -> Self {
        Self {
            server_auth,
            identity: None,
            nonce: None,
        }
    }

    /// Challenge the server with this nonce instead of a random one (a verifier that
    /// chose its nonce out of band, e.g. `a3s-box attest --nonce`). A nonce must never be
    /// reused across connections: the exporter binding makes a replay fail anyway, but a
    /// predictable nonce gives up the verifier's own freshness guarantee.
    #[must_use]
    pub fn with_nonce(mut self, nonce: [u8; freshness::NONCE_LEN]) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// Also present an RA-TLS certificate and answer the server's challenges.
    #[must_use]
    pub fn with_identity(mut self, attested: Attested) -> Self {
        self.identity = Some(attested);
        self
    }
}

/// An established connection and, when this side verified the peer, what it proved.
#[derive(Debug)]
pub struct Session<S> {
    stream: S,
    peer: Option<VerifiedPeer>,
}

impl<S> Session<S> {
    /// The verified peer (`None` when this side did not ask for evidence).
    pub fn peer(&self) -> Option<&VerifiedPeer> {
        self.peer.as_ref()
    }

    /// The TLS stream.
    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The TLS stream and the verified peer.
    pub fn into_parts(self) -> (S, Option<VerifiedPeer>) {
        (self.stream, self.peer)
    }
}

/// An RA-TLS session could not be established.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The rustls configuration could not be built.
    #[error("building the TLS configuration: {0}")]
    Config(String),
    /// This side refused the peer's evidence.
    #[error("peer attestation refused")]
    Peer(#[source] Arc<PeerError>),
    /// The TLS handshake failed for another reason (e.g. the peer refused ours: an alert).
    #[error("TLS handshake")]
    Tls(#[source] rustls::Error),
    /// The connection failed.
    #[error("connection I/O")]
    Io(#[source] std::io::Error),
    /// The freshness exchange broke down.
    #[error("RA-TLS freshness exchange")]
    Protocol(#[source] ProtocolError),
    /// This side's TEE gave no fresh report.
    #[error("obtaining a fresh attestation report")]
    Attest(#[source] HwError),
    /// The attester panicked or was cancelled.
    #[error("the attester task failed")]
    AttesterTask(#[source] tokio::task::JoinError),
    /// The handshake completed without the certificate verifier running (never expected:
    /// resumption is disabled).
    #[error("the peer certificate was not verified")]
    NotVerified,
}

impl From<ProtocolError> for SessionError {
    /// A TLS error surfacing while reading or writing (e.g. the peer's alert refusing our
    /// certificate, which TLS 1.3 delivers after our side of the handshake finished) is
    /// reported as [`SessionError::Tls`].
    fn from(e: ProtocolError) -> Self {
        if let ProtocolError::Io(io) = &e {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Self::Tls(tls.clone());
            }
        }
        Self::Protocol(e)
    }
}

impl SessionError {
    /// The peer-evidence check that failed, if that is why.
    pub fn peer(&self) -> Option<&PeerError> {
        match self {
            Self::Peer(e) => Some(e),
            _ => None,
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        self.peer().and_then(PeerError::hint)
    }
}

/// Accepts one RA-TLS connection on `io` (e.g. an accepted TCP stream): TLS 1.3 handshake,
/// then the freshness exchange. With [`ServerConfig::verify_clients`], the session's peer is
/// the verified client.
///
/// Nothing here times out: a peer that stops talking stalls the call, so wrap it in
/// `tokio::time::timeout` where that matters. On TCP, set `TCP_NODELAY`: the exchange is a few
/// small messages, which Nagle's algorithm and delayed ACKs would hold back by about 40 ms.
///
/// # Errors
/// [`SessionError`]; [`SessionError::Peer`] when the client's evidence is refused.
pub async fn serve<IO>(
    io: IO,
    config: &ServerConfig,
) -> Result<Session<server::TlsStream<IO>>, SessionError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let client_verifier = config
        .client_auth
        .clone()
        .map(|v| Arc::new(ClientVerifier::new(v)));
    let provider = crate::provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| SessionError::Config(e.to_string()))?;
    let builder = match &client_verifier {
        Some(v) => builder.with_client_cert_verifier(v.clone()),
        None => builder.with_no_client_auth(),
    };
    let key = match &config.identity {
        ServerIdentity::Attested(a) => a.identity.certified_key(),
        ServerIdentity::Plain(k) => k.clone(),
    };
    let mut tls = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    // No resumption: a resumed session would skip the certificate checks.
    tls.session_storage = Arc::new(NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;

    let accepted = TlsAcceptor::from(Arc::new(tls)).accept(io).await;
    let verified = client_verifier.as_ref().and_then(|v| v.take_verified());
    let mut stream = match accepted {
        Ok(s) => s,
        Err(e) => return Err(handshake_error(e, verified)),
    };
    let exporter = freshness::exporter(stream.get_ref().1).map_err(ProtocolError::Exporter)?;

    match read_message(&mut stream).await? {
        Message::Challenge(nonce) => {
            answer(&mut stream, config.attested_side(), &exporter, &nonce).await?;
        }
        Message::Skip => {}
        other => return Err(unexpected("a challenge or skip", &other)),
    }
    let peer = match (&config.client_auth, verified) {
        (Some(verifier), verified) => {
            let cert = certificate(verified)?;
            let nonce = freshness::nonce()?;
            Some(challenge(&mut stream, verifier, cert, &exporter, nonce).await?)
        }
        (None, _) => {
            write_message(&mut stream, &Message::Skip).await?;
            None
        }
    };
    Ok(Session { stream, peer })
}

/// Connects over `io` (e.g. a TCP stream): TLS 1.3 handshake, then the freshness exchange.
/// With [`ServerAuth::Attested`], the session's peer is the verified server. Like [`serve`],
/// it has no timeout of its own.
///
/// # Errors
/// [`SessionError`]; [`SessionError::Peer`] when the server's evidence is refused.
pub async fn connect<IO>(
    io: IO,
    config: &ClientConfig,
) -> Result<Session<client::TlsStream<IO>>, SessionError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let provider = crate::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| SessionError::Config(e.to_string()))?;
    let (builder, server_verifier, name) = match &config.server_auth {
        ServerAuth::Attested(v) => {
            let sv = Arc::new(ServerVerifier::new(v.clone()));
            let name = ServerName::try_from(RATLS_SERVER_NAME)
                .map_err(|e| SessionError::Config(e.to_string()))?;
            (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(sv.clone()),
                Some(sv),
                name,
            )
        }
        ServerAuth::WebPki { roots, server_name } => {
            let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots.clone(),
                provider,
            )
            .build()
            .map_err(|e| SessionError::Config(e.to_string()))?;
            (builder.with_webpki_verifier(v), None, server_name.clone())
        }
    };
    let mut tls = match &config.identity {
        Some(a) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(
            a.identity.certified_key(),
        ))),
        None => builder.with_no_client_auth(),
    };
    tls.resumption = Resumption::disabled();

    let connected = TlsConnector::from(Arc::new(tls)).connect(name, io).await;
    let verified = server_verifier.as_ref().and_then(|v| v.take_verified());
    let mut stream = match connected {
        Ok(s) => s,
        Err(e) => return Err(handshake_error(e, verified)),
    };
    let exporter = freshness::exporter(stream.get_ref().1).map_err(ProtocolError::Exporter)?;

    let peer = match &config.server_auth {
        ServerAuth::Attested(verifier) => {
            let cert = certificate(verified)?;
            let nonce = match config.nonce {
                Some(n) => n,
                None => freshness::nonce()?,
            };
            Some(challenge(&mut stream, verifier, cert, &exporter, nonce).await?)
        }
        ServerAuth::WebPki { .. } => {
            write_message(&mut stream, &Message::Skip).await?;
            None
        }
    };
    match read_message(&mut stream).await? {
        Message::Challenge(nonce) => {
            answer(&mut stream, config.identity.as_ref(), &exporter, &nonce).await?;
        }
        Message::Skip => {}
        other => return Err(unexpected("a challenge or skip", &other)),
    }
    Ok(Session { stream, peer })
}

/// Sends a challenge and checks the answer.
async fn challenge<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    verifier: &Verifier,
    cert: VerifiedCertificate,
    exporter: &[u8; EXPORTER_LEN],
    nonce: [u8; freshness::NONCE_LEN],
) -> Result<VerifiedPeer, SessionError> {
    write_message(stream, &Message::Challenge(nonce)).await?;
    match read_message(stream).await? {
        Message::Evidence(e) => verifier
            .verify_fresh(cert, &e, exporter, &nonce, OffsetDateTime::now_utc())
            .map_err(|e| SessionError::Peer(Arc::new(e))),
        Message::Skip => Err(ProtocolError::Declined.into()),
        other => Err(unexpected("evidence", &other)),
    }
}

/// Answers a challenge with fresh evidence, or declines without an identity.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    attested: Option<&Attested>,
    exporter: &[u8; EXPORTER_LEN],
    nonce: &[u8; freshness::NONCE_LEN],
) -> Result<(), SessionError> {
    let Some(a) = attested else {
        write_message(stream, &Message::Skip).await?;
        return Err(ProtocolError::NotAttested.into());
    };
    let (identity, attester) = (a.identity.clone(), a.attester.clone());
    let (exporter, nonce) = (*exporter, *nonce);
    // The attester may block (an ioctl, a request over the guest channel).
    let evidence = tokio::task::spawn_blocking(move || {
        fresh_evidence(&identity, attester.as_ref(), &exporter, &nonce)
    })
    .await
    .map_err(SessionError::AttesterTask)?
    .map_err(SessionError::Attest)?;
    write_message(stream, &Message::Evidence(evidence)).await?;
    Ok(())
}

fn certificate(
    verified: Option<Result<VerifiedCertificate, Arc<PeerError>>>,
) -> Result<VerifiedCertificate, SessionError> {
    match verified {
        Some(Ok(cert)) => Ok(cert),
        Some(Err(e)) => Err(SessionError::Peer(e)),
        None => Err(SessionError::NotVerified),
    }
}

fn handshake_error(
    e: std::io::Error,
    verified: Option<Result<VerifiedCertificate, Arc<PeerError>>>,
) -> SessionError {
    if let Some(Err(peer)) = verified {
        return SessionError::Peer(peer);
    }
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(tls) => SessionError::Tls(tls.clone()),
        None => SessionError::Io(e),
    }
}

fn unexpected(expected: &'static str, found: &Message) -> SessionError {
    ProtocolError::Unexpected {
        expected,
        found: found.name(),
    }
    .into()
}
