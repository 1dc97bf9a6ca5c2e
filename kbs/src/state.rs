//! [`AppState`]: what every handler shares.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::OsRng;

use crate::metrics::Metrics;
use crate::session::Sessions;
use crate::storage::{Namespace, Storage, StorageError};
use crate::token::TokenIssuer;
use crate::verifier::EvidenceVerifier;

/// How admin requests are authenticated.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AdminAuth {
    /// `Authorization: Bearer <JWT>` signed by this key (ES256 or EdDSA), with `iat`, a
    /// future `exp` and `exp - iat` at most `max_lifetime_secs`.
    Key {
        /// The admin public key.
        key: Box<crate::jwt::AdminKey>,
        /// The longest admin token accepted.
        max_lifetime_secs: u64,
    },
    /// Every admin request is allowed (`--insecure-admin`, local use only).
    InsecureAllowAll,
    /// Admin requests are refused.
    DenyAll,
}

/// The longest admin token lifetime accepted by default: one day.
pub const DEFAULT_ADMIN_TOKEN_MAX_SECS: u64 = 86_400;

impl AdminAuth {
    /// Admin requests need a token signed by `key`, living at most a day.
    pub fn key(key: impl Into<crate::jwt::AdminKey>) -> Self {
        Self::Key {
            key: Box::new(key.into()),
            max_lifetime_secs: DEFAULT_ADMIN_TOKEN_MAX_SECS,
        }
    }
}

/// Limits on what clients send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body (JSON or resource) in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Settings of a broker.
#[derive(Debug)]
pub struct Config {
    /// Where state lives.
    pub storage: Arc<dyn Storage>,
    /// How evidence is verified.
    pub verifier: EvidenceVerifier,
    /// Admin authentication.
    pub admin: AdminAuth,
    /// Session lifetime (trustee default: 5 minutes).
    pub session_timeout: Duration,
    /// Token lifetime (trustee default: 5 minutes).
    pub token_lifetime: Duration,
    /// Token signing key; `None` uses the one in storage, created on first start.
    pub token_key: Option<SigningKey>,
    /// Request limits.
    pub limits: Limits,
}

impl Config {
    /// Defaults around `storage` and `verifier`: admin refused, 5-minute sessions and tokens.
    pub fn new(storage: Arc<dyn Storage>, verifier: EvidenceVerifier) -> Self {
        Self {
            storage,
            verifier,
            admin: AdminAuth::DenyAll,
            session_timeout: Duration::from_secs(300),
            token_lifetime: Duration::from_secs(300),
            token_key: None,
            limits: Limits::default(),
        }
    }
}

/// The state shared by every handler. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Storage backend.
    pub storage: Arc<dyn Storage>,
    /// Evidence verifier.
    pub verifier: Arc<EvidenceVerifier>,
    /// Live sessions.
    pub sessions: Arc<Sessions>,
    /// Token issuer.
    pub tokens: Arc<TokenIssuer>,
    /// Admin authentication.
    pub admin: Arc<AdminAuth>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Compiled policies by content.
    pub policies: Arc<crate::policy::cache::PolicyCache>,
    /// Request limits.
    pub limits: Limits,
    /// Permits for CPU-bound request work (attestation, resource release) on the blocking
    /// pool: one per core, so a burst of clients queues in order instead of growing the pool
    /// to a thread per request that the cores then time-slice (the resource path's p99).
    pub cpu_permits: Arc<tokio::sync::Semaphore>,
}

/// The key under which the token signing key is stored.
const TOKEN_KEY: &str = "token-signing-key";

impl AppState {
    /// Builds the state; loads or creates the token key in storage (so replicas sharing a
    /// database share it). Blocking: call before serving or on a blocking thread.
    ///
    /// # Errors
    /// [`StorageError`] when storage fails, or holds a corrupt key.
    pub fn new(config: Config) -> Result<Self, StorageError> {
        let key = match config.token_key {
            Some(k) => k,
            None => {
                let fresh = SigningKey::random(&mut OsRng);
                let der = fresh
                    .to_pkcs8_der()
                    .map_err(|_| StorageError::Poisoned)?
                    .as_bytes()
                    .to_vec();
                let stored = config
                    .storage
                    .put_if_absent(Namespace::Key, TOKEN_KEY, &der)?;
                SigningKey::from_pkcs8_der(&stored).map_err(|_| StorageError::Poisoned)?
            }
        };
        Ok(Self {
            storage: config.storage,
            verifier: Arc::new(config.verifier),
            sessions: Arc::new(Sessions::new(config.session_timeout)),
            tokens: Arc::new(TokenIssuer::new(key, config.token_lifetime.as_secs())),
            admin: Arc::new(config.admin),
            metrics: Arc::new(Metrics::default()),
            policies: Arc::default(),
            limits: config.limits,
            cpu_permits: Arc::new(tokio::sync::Semaphore::new(cpu_permits())),
        })
    }
}

/// How many CPU-bound requests run at once: the cores this process may use.
fn cpu_permits() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// Seconds since the epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
