//! Where the broker keeps resources, policies, reference values and its token key: a small
//! namespaced key-value store, embedded SQLite by default, PostgreSQL so that several
//! replicas share one state.

mod encrypted;
mod postgres;
mod sqlite;

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub use self::encrypted::{EncryptedStorage, Kek};
pub use self::postgres::PostgresStorage;
pub use self::sqlite::SqliteStorage;

/// A namespace of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Namespace {
    /// Secrets, keyed by `repo/type/tag`.
    Resource,
    /// Attestation policies (Rego), keyed by policy id.
    AttestationPolicy,
    /// Resource policies (Rego), keyed by policy id.
    ResourcePolicy,
    /// Reference values (JSON), keyed by name.
    ReferenceValue,
    /// The broker's own keys (token signing key).
    Key,
}

impl Namespace {
    /// The name stored in the `ns` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resource => "resource",
            Self::AttestationPolicy => "attestation-policy",
            Self::ResourcePolicy => "resource-policy",
            Self::ReferenceValue => "reference-value",
            Self::Key => "key",
        }
    }
}

/// A storage backend failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// SQLite failed.
    #[error("sqlite {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL failed.
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// The database directory could not be created.
    #[error("creating {path}")]
    Dir {
        /// The directory.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A database or key file is readable or writable by other local users.
    #[error(
        "{what} {path} has mode {mode:04o}: other local users can read it. Fix: chmod 600 {path} \
         (and rotate the secrets it held, which may have been read)"
    )]
    SharedFile {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The key-encryption key is missing, malformed or another than the one the data was
    /// encrypted under.
    #[error("key-encryption key {path}: {why}")]
    Kek {
        /// The key file.
        path: String,
        /// What is wrong and what to do.
        why: String,
    },
    /// A stored value did not decrypt (altered, or moved to another key or namespace).
    #[error("stored {ns} value {key:?} does not decrypt under the key-encryption key (altered or copied from another database)")]
    Undecryptable {
        /// Its namespace.
        ns: &'static str,
        /// Its key.
        key: String,
    },
    /// A lock was poisoned by a panic in another thread.
    #[error("storage lock poisoned")]
    Poisoned,
}

/// Refuses `path` when group or other users have any access to it (missing is fine).
///
/// # Errors
/// [`StorageError::SharedFile`] naming the fix.
pub fn refuse_shared(path: &Path, what: &'static str) -> Result<(), StorageError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(StorageError::SharedFile {
            what,
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// A namespaced key-value store. Calls block: the server runs them on blocking threads.
pub trait Storage: Send + Sync + fmt::Debug {
    /// The value at `key`.
    ///
    /// # Errors
    /// [`StorageError`] when the backend fails.
    fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Sets `key` to `value`, replacing any value.
    ///
    /// # Errors
    /// [`StorageError`] when the backend fails.
    fn put(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<(), StorageError>;
    /// Removes `key`; whether it existed.
    ///
    /// # Errors
    /// [`StorageError`] when the backend fails.
    fn delete(&self, ns: Namespace, key: &str) -> Result<bool, StorageError>;
    /// Every key and value of `ns`, ordered by key.
    ///
    /// # Errors
    /// [`StorageError`] when the backend fails.
    fn list(&self, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>, StorageError>;
    /// Stores `value` at `key` unless a value is there; returns the value that is there after
    /// (so concurrent replicas agree on one).
    ///
    /// # Errors
    /// [`StorageError`] when the backend fails.
    fn put_if_absent(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
    ) -> Result<Vec<u8>, StorageError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The behaviour every backend must have.
    pub(crate) fn exercise(s: &dyn Storage) {
        let ns = Namespace::Resource;
        assert_eq!(s.get(ns, "a/b/c").unwrap(), None);
        s.put(ns, "a/b/c", b"one").unwrap();
        s.put(ns, "a/b/c", b"two").unwrap();
        assert_eq!(s.get(ns, "a/b/c").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(
            s.get(Namespace::Key, "a/b/c").unwrap(),
            None,
            "namespaces are separate"
        );
        s.put(ns, "a/b/a", b"x").unwrap();
        let keys: Vec<String> = s.list(ns).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a/b/a", "a/b/c"]);
        assert!(s.delete(ns, "a/b/c").unwrap());
        assert!(!s.delete(ns, "a/b/c").unwrap());
        assert_eq!(
            s.put_if_absent(Namespace::Key, "k", b"first").unwrap(),
            b"first"
        );
        assert_eq!(
            s.put_if_absent(Namespace::Key, "k", b"second").unwrap(),
            b"first"
        );
    }
}
