//! Parked streaming requests: random one-time tokens that expire, like kubelet's `requestCache`.
//! A token is the only credential for a streaming URL, so it is 128 random bits, used once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::request::{AttachRequest, ExecRequest, PortForwardRequest, RequestError};

/// A request waiting for its client.
#[derive(Debug, Clone)]
pub(crate) enum Parked {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

#[derive(Debug)]
pub(crate) struct RequestCache {
    ttl: Duration,
    max_in_flight: usize,
    entries: Mutex<HashMap<String, (Instant, Parked)>>,
}

impl RequestCache {
    pub(crate) fn new(ttl: Duration, max_in_flight: usize) -> Self {
        Self {
            ttl,
            max_in_flight,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Parks `request` and returns its token.
    pub(crate) fn insert(&self, request: Parked, now: Instant) -> Result<String, RequestError> {
        let token = new_token();
        let mut entries = self.lock();
        entries.retain(|_, (expires, _)| *expires > now);
        if entries.len() >= self.max_in_flight {
            return Err(RequestError::TooManyInFlight {
                limit: self.max_in_flight,
            });
        }
        entries.insert(token.clone(), (now + self.ttl, request));
        Ok(token)
    }

    /// Removes and returns the request for `token` if it exists and has not expired.
    pub(crate) fn consume(&self, token: &str, now: Instant) -> Option<Parked> {
        let (expires, request) = self.lock().remove(token)?;
        (expires > now).then_some(request)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Parked)>> {
        // A panic while holding the lock cannot leave the map inconsistent (every change is a
        // single insert/remove/retain), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn new_token() -> String {
    let mut bytes = [0u8; 16];
    // The OS random source failing is not recoverable and must not yield a guessable token.
    getrandom::fill(&mut bytes).expect("the OS random number generator is available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> Parked {
        Parked::Exec(ExecRequest {
            container_id: "c".into(),
            ..Default::default()
        })
    }

    #[test]
    fn token_is_used_once() {
        let cache = RequestCache::new(Duration::from_secs(60), 10);
        let now = Instant::now();
        let token = cache.insert(exec(), now).unwrap();
        assert_eq!(token.len(), 22);
        assert!(cache.consume(&token, now).is_some());
        assert!(cache.consume(&token, now).is_none());
    }

    #[test]
    fn expired_token_is_rejected() {
        let cache = RequestCache::new(Duration::from_secs(60), 10);
        let now = Instant::now();
        let token = cache.insert(exec(), now).unwrap();
        assert!(cache
            .consume(&token, now + Duration::from_secs(61))
            .is_none());
    }

    #[test]
    fn limits_requests_in_flight_but_not_expired_ones() {
        let cache = RequestCache::new(Duration::from_secs(60), 2);
        let now = Instant::now();
        cache.insert(exec(), now).unwrap();
        cache.insert(exec(), now).unwrap();
        assert!(matches!(
            cache.insert(exec(), now),
            Err(RequestError::TooManyInFlight { limit: 2 })
        ));
        // Once the first two expire they no longer count.
        assert!(cache.insert(exec(), now + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(new_token(), new_token());
    }
}
