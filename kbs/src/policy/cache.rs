//! Compiled policies, cached by content: a stored policy is read on every request (so a
//! change, from this broker or a replica sharing its database, takes effect at once), but
//! parsed and checked only when its text is new.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use super::{compile, Compiled, PolicyError, PolicyKind};

/// At most this many compiled policies are kept (a new one beyond it empties the cache).
const CAPACITY: usize = 64;

/// Kind and SHA-256 of a policy's text.
type Key = (PolicyKind, [u8; 32]);

/// Compiled policies by kind and SHA-256 of their text.
#[derive(Debug, Default)]
pub struct PolicyCache {
    compiled: Mutex<HashMap<Key, Arc<Compiled>>>,
    disabled: bool,
}

impl PolicyCache {
    /// A cache that keeps nothing: every request compiles (and checks) its policy again.
    /// For measuring what the cache saves.
    pub fn disabled() -> Self {
        Self {
            compiled: Mutex::default(),
            disabled: true,
        }
    }

    /// The compiled form of `rego`, compiling it on first sight.
    ///
    /// # Errors
    /// [`PolicyError`] when the policy cannot be used.
    pub fn get(&self, kind: PolicyKind, rego: &str) -> Result<Arc<Compiled>, PolicyError> {
        let key = (kind, Sha256::digest(rego.as_bytes()).into());
        if let Some(c) = self.lock().get(&key) {
            return Ok(Arc::clone(c));
        }
        let compiled = Arc::new(compile(kind, rego)?);
        if self.disabled {
            return Ok(compiled);
        }
        let mut map = self.lock();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key, Arc::clone(&compiled));
        Ok(compiled)
    }

    /// How many compiled policies are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Compiled>>> {
        self.compiled.lock().unwrap_or_else(|p| p.into_inner())
    }
}
