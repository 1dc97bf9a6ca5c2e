//! Sessions: `Authed` (challenge issued) → `Attested` (token issued). Each challenge can be
//! answered once; a session lives `timeout` from its creation. Sessions are per replica (as in
//! trustee); bearer tokens work on every replica sharing the token key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use serde_json::Value;

use crate::error::KbsError;

#[derive(Debug)]
enum State {
    Authed { nonce: String },
    Attesting,
    Attested { claims: Value, token: String },
}

#[derive(Debug)]
struct Session {
    state: State,
    expires: Instant,
}

/// Expired sessions are dropped once this many exist.
const PURGE_AT: usize = 4096;
/// Live sessions a replica holds at most; more `auth` requests are refused until some expire.
pub const MAX_SESSIONS: usize = 100_000;

/// The live sessions of this replica.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    timeout: Duration,
}

/// A freshly created session.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The cookie value: UUIDv4, 32 lower-case hex digits.
    pub id: String,
    /// The challenge nonce: base64 of 32 random bytes.
    pub nonce: String,
    /// When it expires.
    pub expires: SystemTime,
}

impl Sessions {
    /// Sessions that live `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    /// The session lifetime.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Session>>, KbsError> {
        self.map
            .lock()
            .map_err(|_| KbsError::Internal("session lock poisoned".into()))
    }

    /// Starts a session with a fresh challenge.
    ///
    /// # Errors
    /// [`KbsError::Internal`] on a poisoned lock.
    pub fn create(&self) -> Result<NewSession, KbsError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut raw = [0u8; 32];
        OsRng.fill_bytes(&mut raw);
        let nonce = STANDARD.encode(raw);
        let now = Instant::now();
        let mut map = self.lock()?;
        if map.len() >= PURGE_AT {
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= MAX_SESSIONS {
            return Err(KbsError::Busy);
        }
        map.insert(
            id.clone(),
            Session {
                state: State::Authed {
                    nonce: nonce.clone(),
                },
                expires: now + self.timeout,
            },
        );
        Ok(NewSession {
            id,
            nonce,
            expires: SystemTime::now() + self.timeout,
        })
    }

    /// Takes the challenge of session `id` for answering; it cannot be taken again.
    ///
    /// # Errors
    /// [`KbsError::UnknownSession`] (unknown or expired), [`KbsError::ChallengeUsed`].
    pub fn take_challenge(&self, id: &str) -> Result<String, KbsError> {
        let mut map = self.lock()?;
        let now = Instant::now();
        let Some(s) = map.get_mut(id).filter(|s| s.expires > now) else {
            map.remove(id);
            return Err(KbsError::UnknownSession(id.to_owned()));
        };
        match std::mem::replace(&mut s.state, State::Attesting) {
            State::Authed { nonce } => Ok(nonce),
            other => {
                s.state = other;
                Err(KbsError::ChallengeUsed)
            }
        }
    }

    /// Records the token of session `id` after a successful attestation.
    ///
    /// # Errors
    /// [`KbsError::Internal`] on a poisoned lock.
    pub fn attested(&self, id: &str, token: String, claims: Value) -> Result<(), KbsError> {
        let mut map = self.lock()?;
        if let Some(s) = map.get_mut(id) {
            s.state = State::Attested { claims, token };
        }
        Ok(())
    }

    /// Ends session `id` (after a failed attestation: its challenge is spent).
    pub fn remove(&self, id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(id);
        }
    }

    /// The token claims of attested session `id`.
    ///
    /// # Errors
    /// [`KbsError::UnknownSession`] or [`KbsError::TokenNotFound`] (not attested yet).
    pub fn claims(&self, id: &str) -> Result<(Value, String), KbsError> {
        let map = self.lock()?;
        match map.get(id).filter(|s| s.expires > Instant::now()) {
            None => Err(KbsError::UnknownSession(id.to_owned())),
            Some(Session {
                state: State::Attested { claims, token },
                ..
            }) => Ok((claims.clone(), token.clone())),
            Some(_) => Err(KbsError::TokenNotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_is_answered_once_and_sessions_expire() {
        let s = Sessions::new(Duration::from_secs(60));
        let a = s.create().unwrap();
        assert_eq!(a.id.len(), 32);
        assert_eq!(STANDARD.decode(&a.nonce).unwrap().len(), 32);
        assert_eq!(s.take_challenge(&a.id).unwrap(), a.nonce);
        assert!(matches!(
            s.take_challenge(&a.id),
            Err(KbsError::ChallengeUsed)
        ));
        assert!(matches!(s.claims(&a.id), Err(KbsError::TokenNotFound)));
        s.attested(&a.id, "t".into(), Value::Null).unwrap();
        assert_eq!(s.claims(&a.id).unwrap().1, "t");
        assert!(matches!(
            s.take_challenge("nope"),
            Err(KbsError::UnknownSession(_))
        ));

        let short = Sessions::new(Duration::ZERO);
        let b = short.create().unwrap();
        assert!(matches!(
            short.take_challenge(&b.id),
            Err(KbsError::UnknownSession(_))
        ));
    }
}
