//! RA-TLS: TLS 1.3 whose peer proves, with SEV-SNP evidence, that its key lives in an attested
//! VM, and that it is live on this very connection.
//!
//! - [`cert`]: the attested side's P-384 key and self-signed certificate with the TCG DICE
//!   evidence extension `2.23.133.5.4.9` ([`Identity`]);
//! - [`evidence`]: the CBOR evidence format (tags for hardware and simulated evidence, claims,
//!   REPORT_DATA binding), parsed strictly;
//! - [`verifier`]: the checks ([`Verifier`]), delegating report verification and appraisal to
//!   `a3s-attestation`;
//! - [`client`] and [`server`]: rustls verifiers for server and client certificates (TLS 1.3
//!   only, handshake signatures checked by the ring provider);
//! - [`freshness`]: the post-handshake exporter-bound challenge;
//! - [`serve`] and [`connect`]: the async API returning the [`VerifiedPeer`];
//! - [`danger`]: accepting simulated evidence;
//! - [`delivery`]: one secret sent over a session the verifier has just verified.
//!
//! ```no_run
//! # async fn demo(
//! #     attester: std::sync::Arc<dyn a3s_attestation::hw::Attester + Send + Sync>,
//! #     policy: a3s_attestation::policy::AppraisalPolicy,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use a3s_ratls::{connect, serve, Attested, ClientConfig, EvidenceKind, Identity, ServerAuth,
//!                 ServerConfig, Verifier};
//!
//! // In the guest:
//! let identity = Arc::new(Identity::generate(attester.as_ref(), EvidenceKind::Hardware)?);
//! let server = ServerConfig::attested(Attested::new(identity, attester));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     let (tcp, _) = listener.accept().await?;
//!     serve(tcp, &server).await?;
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! });
//!
//! // At the relying party:
//! let client = ClientConfig::new(ServerAuth::Attested(Verifier::new(policy)));
//! let session = connect(tokio::net::TcpStream::connect(addr).await?, &client).await?;
//! let peer = session.peer().expect("the server was verified");
//! println!("measurement {} simulated {}", hex::encode(peer.measurement()), peer.simulated());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cbor;
pub mod cert;
pub mod client;
pub mod danger;
pub mod delivery;
pub mod evidence;
pub mod freshness;
mod outcome;
pub mod server;
mod session;
pub mod verifier;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use time::OffsetDateTime;

pub use cert::{Identity, IdentityError};
pub use evidence::{Claims, EvidenceKind};
pub use session::{
    connect, serve, Attested, ClientConfig, ServerAuth, ServerConfig, Session, SessionError,
    RATLS_SERVER_NAME,
};
pub use verifier::{PeerError, VerifiedCertificate, VerifiedPeer, Verifier};

/// The crypto provider every RA-TLS config uses: rustls's ring provider.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn to_time(t: UnixTime) -> OffsetDateTime {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        // An unrepresentable time becomes 1970, before any certificate's validity: checks fail.
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
