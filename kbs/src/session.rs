//! Sessions: pending (challenge issued) → attested (token issued). Each challenge can be
//! answered once. Sessions are per replica (as in trustee); bearer tokens work on every replica
//! sharing the token key.
//!
//! The store is shaped so that no client can lock others out and no operation scans it:
//! - Pending sessions cost nothing to create but a few hundred bytes, live
//!   [`SessionLimits::pending_timeout`] (short), and are capped globally and per client address.
//!   When a cap is reached the *oldest* pending session (of that address, or overall) is
//!   evicted, so a flood from one address only ever pushes out its own or the oldest challenges,
//!   never refuses a newcomer.
//! - Attested sessions are kept apart with their own capacity, so a flood of `/auth` can never
//!   push out an attested session.
//! - Both kinds live in insertion-ordered maps whose order is also expiry order (one lifetime
//!   per kind), so expiring is popping from the front: O(1) per session, never a scan. Maps
//!   shrink back when they empty, so memory is returned after a flood.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hashlink::{LinkedHashMap, LinkedHashSet};
use rand_core::RngCore;
use serde_json::Value;

use crate::error::{echo, KbsError};

/// Session capacities and lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// How long an attested session lives (trustee default: 5 minutes).
    pub timeout: Duration,
    /// How long a challenge waits for its `/attest`.
    pub pending_timeout: Duration,
    /// Pending sessions held at most; the oldest is evicted beyond.
    pub max_pending: usize,
    /// Pending sessions one client address holds at most; its oldest is evicted beyond.
    pub max_pending_per_client: usize,
    /// Attested sessions held at most; the oldest is evicted beyond (its client re-attests).
    pub max_attested: usize,
}

impl SessionLimits {
    /// Defaults around an attested-session lifetime of `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            pending_timeout: timeout.min(Duration::from_secs(60)),
            max_pending: 100_000,
            max_pending_per_client: 4_096,
            max_attested: 100_000,
        }
    }
}

/// A session id: the 16 bytes of a UUIDv4, shown as 32 lower-case hex digits.
type Id = [u8; 16];

#[derive(Debug)]
struct Pending {
    nonce: [u8; 32],
    client: IpAddr,
    answered: bool,
    expires: Instant,
}

#[derive(Debug)]
struct Attested {
    claims: Value,
    token: String,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Store {
    pending: LinkedHashMap<Id, Pending>,
    by_client: HashMap<IpAddr, LinkedHashSet<Id>>,
    attested: LinkedHashMap<Id, Attested>,
}

/// The live sessions of this replica.
#[derive(Debug)]
pub struct Sessions {
    store: Mutex<Store>,
    limits: SessionLimits,
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

/// Counts of live sessions, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCounts {
    /// Sessions waiting for `/attest`.
    pub pending: usize,
    /// Attested sessions.
    pub attested: usize,
    /// Client addresses holding pending sessions.
    pub clients: usize,
}

/// The address used when the transport gives none (in-process tests).
pub const UNKNOWN_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl Sessions {
    /// Sessions with the default limits around an attested lifetime of `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self::with_limits(SessionLimits::new(timeout))
    }

    /// Sessions with explicit limits (each capacity at least 1).
    pub fn with_limits(limits: SessionLimits) -> Self {
        let limits = SessionLimits {
            max_pending: limits.max_pending.max(1),
            max_pending_per_client: limits.max_pending_per_client.max(1),
            max_attested: limits.max_attested.max(1),
            ..limits
        };
        Self {
            store: Mutex::new(Store::default()),
            limits,
        }
    }

    /// The attested-session lifetime (the cookie's Max-Age after `/attest`).
    pub fn timeout(&self) -> Duration {
        self.limits.timeout
    }

    /// The pending-session lifetime (the cookie's Max-Age after `/auth`).
    pub fn pending_timeout(&self) -> Duration {
        self.limits.pending_timeout
    }

    fn lock(&self) -> Result<MutexGuard<'_, Store>, KbsError> {
        let mut store = self
            .store
            .lock()
            .map_err(|_| KbsError::Internal("session lock poisoned".into()))?;
        store.expire(Instant::now());
        Ok(store)
    }

    /// Starts a session for `client` with a fresh challenge, evicting the oldest pending
    /// session of that client, or overall, when a cap is reached.
    ///
    /// # Errors
    /// [`KbsError::Internal`] on a poisoned lock.
    pub fn create(&self, client: IpAddr) -> Result<NewSession, KbsError> {
        let mut raw = [0u8; 48];
        rand::thread_rng().fill_bytes(&mut raw);
        let uuid = uuid::Builder::from_random_bytes(first::<16>(&raw)).into_uuid();
        let id = *uuid.as_bytes();
        let nonce = first::<32>(&raw[16..]);
        let now = Instant::now();
        let mut store = self.lock()?;
        let owned = store.by_client.get(&client).map_or(0, LinkedHashSet::len);
        if owned >= self.limits.max_pending_per_client {
            store.evict_oldest_of(client);
        }
        if store.pending.len() >= self.limits.max_pending {
            store.evict_oldest();
        }
        store.pending.insert(
            id,
            Pending {
                nonce,
                client,
                answered: false,
                expires: now + self.limits.pending_timeout,
            },
        );
        store.by_client.entry(client).or_default().insert(id);
        Ok(NewSession {
            id: uuid.simple().to_string(),
            nonce: STANDARD.encode(nonce),
            expires: SystemTime::now() + self.limits.pending_timeout,
        })
    }

    /// Takes the challenge of session `id` for answering; it cannot be taken again.
    ///
    /// # Errors
    /// [`KbsError::UnknownSession`] (unknown or expired), [`KbsError::ChallengeUsed`].
    pub fn take_challenge(&self, id: &str) -> Result<String, KbsError> {
        let key = parse_id(id)?;
        let mut store = self.lock()?;
        if store.attested.contains_key(&key) {
            return Err(KbsError::ChallengeUsed);
        }
        let Some(session) = store.pending.get_mut(&key) else {
            return Err(unknown(id));
        };
        if std::mem::replace(&mut session.answered, true) {
            return Err(KbsError::ChallengeUsed);
        }
        Ok(STANDARD.encode(session.nonce))
    }

    /// Records the token of session `id` after a successful attestation; it then lives
    /// [`Self::timeout`] from now.
    ///
    /// # Errors
    /// [`KbsError::UnknownSession`] when the session was evicted or expired meanwhile.
    pub fn attested(&self, id: &str, token: String, claims: Value) -> Result<(), KbsError> {
        let key = parse_id(id)?;
        let mut store = self.lock()?;
        if store.remove_pending(&key).is_none() {
            return Err(unknown(id));
        }
        if store.attested.len() >= self.limits.max_attested {
            store.attested.pop_front();
        }
        store.attested.insert(
            key,
            Attested {
                claims,
                token,
                expires: Instant::now() + self.limits.timeout,
            },
        );
        Ok(())
    }

    /// Ends session `id` (after a failed attestation: its challenge is spent).
    pub fn remove(&self, id: &str) {
        let (Ok(key), Ok(mut store)) = (parse_id(id), self.lock()) else {
            return;
        };
        store.remove_pending(&key);
        store.attested.remove(&key);
    }

    /// The token claims of attested session `id`.
    ///
    /// # Errors
    /// [`KbsError::UnknownSession`] or [`KbsError::TokenNotFound`] (not attested yet).
    pub fn claims(&self, id: &str) -> Result<(Value, String), KbsError> {
        let key = parse_id(id)?;
        let store = self.lock()?;
        if let Some(a) = store.attested.get(&key) {
            return Ok((a.claims.clone(), a.token.clone()));
        }
        if store.pending.contains_key(&key) {
            return Err(KbsError::TokenNotFound);
        }
        Err(unknown(id))
    }

    /// How many sessions are live now.
    pub fn counts(&self) -> SessionCounts {
        match self.lock() {
            Ok(s) => SessionCounts {
                pending: s.pending.len(),
                attested: s.attested.len(),
                clients: s.by_client.len(),
            },
            Err(_) => SessionCounts {
                pending: 0,
                attested: 0,
                clients: 0,
            },
        }
    }
}

impl Store {
    /// Drops expired sessions from the fronts (insertion order is expiry order).
    fn expire(&mut self, now: Instant) {
        while let Some((id, p)) = self.pending.front() {
            if p.expires > now {
                break;
            }
            let id = *id;
            self.remove_pending(&id);
        }
        while self.attested.front().is_some_and(|(_, a)| a.expires <= now) {
            self.attested.pop_front();
        }
        shrink_when_sparse(&mut self.pending);
        shrink_when_sparse(&mut self.attested);
        if self.by_client.capacity() > SHRINK_FLOOR
            && self.by_client.len() < self.by_client.capacity() / 4
        {
            self.by_client.shrink_to_fit();
        }
    }

    fn remove_pending(&mut self, id: &Id) -> Option<Pending> {
        let p = self.pending.remove(id)?;
        if let Some(ids) = self.by_client.get_mut(&p.client) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_client.remove(&p.client);
            }
        }
        Some(p)
    }

    fn evict_oldest_of(&mut self, client: IpAddr) {
        if let Some(id) = self.by_client.get(&client).and_then(|ids| ids.front()) {
            let id = *id;
            self.remove_pending(&id);
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((id, _)) = self.pending.front() {
            let id = *id;
            self.remove_pending(&id);
        }
    }
}

/// Maps at most this big are never shrunk (not worth the reallocation).
const SHRINK_FLOOR: usize = 1024;

/// Hands memory back once a map holds under a quarter of what it has room for; amortised
/// O(1), since the map must have shrunk by three quarters of its room since the last time.
fn shrink_when_sparse<V>(map: &mut LinkedHashMap<Id, V>) {
    if map.capacity() > SHRINK_FLOOR && map.len() < map.capacity() / 4 {
        map.shrink_to_fit();
    }
}

fn first<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

fn parse_id(id: &str) -> Result<Id, KbsError> {
    uuid::Uuid::try_parse(id)
        .map(|u| *u.as_bytes())
        .map_err(|_| unknown(id))
}

fn unknown(id: &str) -> KbsError {
    KbsError::UnknownSession(echo(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn a_challenge_is_answered_once_and_sessions_expire() {
        let s = Sessions::new(Duration::from_secs(60));
        let a = s.create(addr(1)).unwrap();
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
            s.take_challenge(&a.id),
            Err(KbsError::ChallengeUsed)
        ));
        assert!(matches!(
            s.take_challenge("nope"),
            Err(KbsError::UnknownSession(_))
        ));

        let short = Sessions::new(Duration::ZERO);
        let b = short.create(addr(1)).unwrap();
        assert!(matches!(
            short.take_challenge(&b.id),
            Err(KbsError::UnknownSession(_))
        ));
        assert_eq!(short.counts().pending, 0);
        assert_eq!(short.counts().clients, 0);
    }

    #[test]
    fn ids_are_uuid_v4_simple() {
        let s = Sessions::new(Duration::from_secs(60));
        let id = s.create(addr(1)).unwrap().id;
        let uuid = uuid::Uuid::try_parse(&id).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        assert_eq!(id, uuid.simple().to_string());
    }

    fn small() -> Sessions {
        Sessions::with_limits(SessionLimits {
            timeout: Duration::from_secs(60),
            pending_timeout: Duration::from_secs(60),
            max_pending: 10,
            max_pending_per_client: 3,
            max_attested: 2,
        })
    }

    #[test]
    fn a_flooding_address_only_evicts_its_own_oldest_challenges() {
        let s = small();
        let victim = s.create(addr(2)).unwrap();
        let flood: Vec<_> = (0..1000).map(|_| s.create(addr(1)).unwrap()).collect();
        assert_eq!(s.counts().pending, 4);
        // The victim's challenge survived; the flooder keeps only its newest three.
        assert_eq!(s.take_challenge(&victim.id).unwrap(), victim.nonce);
        for old in &flood[..997] {
            assert!(matches!(
                s.take_challenge(&old.id),
                Err(KbsError::UnknownSession(_))
            ));
        }
        assert!(s.take_challenge(&flood[999].id).is_ok());
    }

    #[test]
    fn when_full_the_oldest_pending_session_is_evicted_not_the_newcomer() {
        let s = small();
        let sessions: Vec<_> = (0..12).map(|i| s.create(addr(i)).unwrap()).collect();
        assert_eq!(s.counts().pending, 10);
        assert!(s.take_challenge(&sessions[0].id).is_err());
        assert!(s.take_challenge(&sessions[1].id).is_err());
        assert!(s.take_challenge(&sessions[11].id).is_ok());
    }

    #[test]
    fn attested_sessions_survive_a_flood_of_pending_ones() {
        let s = small();
        let a = s.create(addr(1)).unwrap();
        s.take_challenge(&a.id).unwrap();
        s.attested(&a.id, "tok".into(), Value::Null).unwrap();
        for i in 0..=255 {
            for _ in 0..5 {
                s.create(addr(i)).unwrap();
            }
        }
        assert_eq!(s.claims(&a.id).unwrap().1, "tok");
        assert_eq!(s.counts().attested, 1);
        assert_eq!(s.counts().pending, 10);
    }

    #[test]
    fn attested_capacity_evicts_the_oldest_attested() {
        let s = small();
        let ids: Vec<_> = (0..3)
            .map(|i| {
                let n = s.create(addr(i)).unwrap();
                s.take_challenge(&n.id).unwrap();
                s.attested(&n.id, format!("t{i}"), Value::Null).unwrap();
                n.id
            })
            .collect();
        assert!(matches!(
            s.claims(&ids[0]),
            Err(KbsError::UnknownSession(_))
        ));
        assert_eq!(s.claims(&ids[2]).unwrap().1, "t2");
    }

    #[test]
    fn an_evicted_session_cannot_be_marked_attested() {
        let s = small();
        let a = s.create(addr(1)).unwrap();
        s.take_challenge(&a.id).unwrap();
        for _ in 0..3 {
            s.create(addr(1)).unwrap();
        }
        assert!(matches!(
            s.attested(&a.id, "t".into(), Value::Null),
            Err(KbsError::UnknownSession(_))
        ));
    }

    #[test]
    fn memory_is_handed_back_after_expiry() {
        let s = Sessions::with_limits(SessionLimits {
            pending_timeout: Duration::from_millis(1),
            ..SessionLimits::new(Duration::from_secs(60))
        });
        for i in 0..20_000u32 {
            s.create(IpAddr::V4(Ipv4Addr::from(i))).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.counts().pending, 0);
        let store = s.store.lock().unwrap();
        assert!(
            store.pending.capacity() < 20_000,
            "{}",
            store.pending.capacity()
        );
        assert!(store.by_client.is_empty());
    }

    #[test]
    fn a_long_cookie_is_not_echoed_in_full() {
        let s = small();
        let long = "x".repeat(10_000);
        let err = s.take_challenge(&long).unwrap_err().to_string();
        assert!(err.len() < 300, "{err}");
    }
}
