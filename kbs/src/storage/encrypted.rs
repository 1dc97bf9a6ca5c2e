//! Encryption at rest: [`EncryptedStorage`] seals every value (secrets, the token-signing key,
//! policies, reference values) with AES-256-GCM under a key-encryption key ([`Kek`]) that is
//! kept in a 0600 file outside the database, so a copy of the database alone reveals nothing.
//!
//! Each value is `MAGIC ‖ nonce(12) ‖ ciphertext ‖ tag(16)` with the namespace and key as
//! associated data, so a value moved to another slot does not decrypt. Replicas sharing one
//! PostgreSQL must share the key explicitly (copy the file, `kbs serve --kek FILE`); a check
//! value sealed by the first replica makes any other key fail at start, not on first use.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::{refuse_shared, Namespace, Storage, StorageError};

/// Marks a sealed value (and its format version).
const MAGIC: &[u8; 8] = b"A3SKEK1\0";
const NONCE_LEN: usize = 12;
/// A key file holds 64 hex digits and a newline; anything longer is not a key file.
const KEK_FILE_MAX: u64 = 128;
/// The check value's key in [`Namespace::Key`].
const CHECK_KEY: &str = "kek-check";
const CHECK_PLAINTEXT: &[u8] = b"a3s-kbs key-encryption key check";
const NAMESPACES: [Namespace; 5] = [
    Namespace::Resource,
    Namespace::AttestationPolicy,
    Namespace::ResourcePolicy,
    Namespace::ReferenceValue,
    Namespace::Key,
];

/// The key-encryption key: 32 random bytes, stored as hex in an owner-only file.
pub struct Kek {
    cipher: Aes256Gcm,
    path: PathBuf,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek")
            .field("path", &self.path)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Kek {
    /// Loads the key at `path`, creating it (0600, in a 0700 directory) when missing.
    ///
    /// # Errors
    /// [`StorageError::SharedFile`] when other users can read the file, [`StorageError::Kek`]
    /// when it cannot be read, written or parsed.
    pub fn load_or_create(path: &Path) -> Result<Self, StorageError> {
        match Self::load(path) {
            Err(StorageError::Kek { .. }) if !path.exists() => Self::create(path),
            other => other,
        }
    }

    /// Loads the key at `path`.
    ///
    /// # Errors
    /// As [`Self::load_or_create`], and when the file is missing.
    pub fn load(path: &Path) -> Result<Self, StorageError> {
        let err = |why: String| StorageError::Kek {
            path: path.display().to_string(),
            why,
        };
        refuse_shared(path, "key-encryption key")?;
        let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let mut text = Zeroizing::new(String::new());
        file.take(KEK_FILE_MAX + 1)
            .read_to_string(&mut text)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        if text.len() as u64 > KEK_FILE_MAX {
            return Err(err(format!(
                "longer than {KEK_FILE_MAX} bytes: not a key file (64 hex digits)"
            )));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), key.as_mut())
            .map_err(|_| err("not 64 hex digits: restore the key file from a backup".into()))?;
        Ok(Self::from_key(&key, path))
    }

    fn create(path: &Path) -> Result<Self, StorageError> {
        let err = |e: std::io::Error| StorageError::Kek {
            path: path.display().to_string(),
            why: format!("cannot create: {e}"),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(err)?;
        }
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(f) => f,
            // Another process created it first: use theirs.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Self::load(path),
            Err(e) => return Err(err(e)),
        };
        let text = Zeroizing::new(format!("{}\n", hex::encode(key.as_ref())));
        file.write_all(text.as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)?;
        Ok(Self::from_key(&key, path))
    }

    fn from_key(key: &[u8; 32], path: &Path) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
            path: path.to_owned(),
        }
    }

    fn seal(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<Vec<u8>, StorageError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = aad(ns, key);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: value,
                    aad: &aad,
                },
            )
            .map_err(|_| StorageError::Kek {
                path: self.path.display().to_string(),
                why: "encryption failed".into(),
            })?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(&self, ns: Namespace, key: &str, stored: &[u8]) -> Result<Vec<u8>, StorageError> {
        let undecryptable = || StorageError::Undecryptable {
            ns: ns.as_str(),
            key: key.to_owned(),
        };
        let rest = stored.strip_prefix(MAGIC).ok_or_else(undecryptable)?;
        if rest.len() < NONCE_LEN {
            return Err(undecryptable());
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| undecryptable())?;
        let aad = aad(ns, key);
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| undecryptable())
    }
}

fn aad(ns: Namespace, key: &str) -> Vec<u8> {
    [ns.as_str().as_bytes(), b"\0", key.as_bytes()].concat()
}

/// A [`Storage`] whose values are sealed under a [`Kek`] before they reach `inner`.
#[derive(Debug)]
pub struct EncryptedStorage<S> {
    inner: S,
    kek: Kek,
}

impl<S: Storage> EncryptedStorage<S> {
    /// Wraps `inner`: checks that `kek` is the key the database was sealed under (sealing a
    /// check value with it when the database is new) and seals values an earlier version
    /// stored in plain text.
    ///
    /// # Errors
    /// [`StorageError::Kek`] when the database belongs to another key; storage errors.
    pub fn new(inner: S, kek: Kek) -> Result<Self, StorageError> {
        let check = kek.seal(Namespace::Key, CHECK_KEY, CHECK_PLAINTEXT)?;
        let stored = inner.put_if_absent(Namespace::Key, CHECK_KEY, &check)?;
        if kek.open(Namespace::Key, CHECK_KEY, &stored).is_err() {
            return Err(StorageError::Kek {
                path: kek.path.display().to_string(),
                why: "this database was encrypted under another key-encryption key: give every \
                      replica sharing it a copy of the first replica's key file (--kek FILE)"
                    .into(),
            });
        }
        let this = Self { inner, kek };
        this.seal_plain_values()?;
        Ok(this)
    }

    fn seal_plain_values(&self) -> Result<(), StorageError> {
        for ns in NAMESPACES {
            for (key, value) in self.inner.list(ns)? {
                if !value.starts_with(MAGIC) {
                    tracing::info!(
                        ns = ns.as_str(),
                        key,
                        "sealing a value stored in plain text"
                    );
                    self.inner
                        .put(ns, &key, &self.kek.seal(ns, &key, &value)?)?;
                }
            }
        }
        Ok(())
    }
}

impl<S: Storage> Storage for EncryptedStorage<S> {
    fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner
            .get(ns, key)?
            .map(|v| self.kek.open(ns, key, &v))
            .transpose()
    }

    fn put(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.inner.put(ns, key, &self.kek.seal(ns, key, value)?)
    }

    fn delete(&self, ns: Namespace, key: &str) -> Result<bool, StorageError> {
        self.inner.delete(ns, key)
    }

    fn list(&self, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.inner
            .list(ns)?
            .into_iter()
            .filter(|(k, _)| !(ns == Namespace::Key && k == CHECK_KEY))
            .map(|(k, v)| {
                let plain = self.kek.open(ns, &k, &v)?;
                Ok((k, plain))
            })
            .collect()
    }

    fn put_if_absent(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
    ) -> Result<Vec<u8>, StorageError> {
        let stored = self
            .inner
            .put_if_absent(ns, key, &self.kek.seal(ns, key, value)?)?;
        self.kek.open(ns, key, &stored)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::storage::SqliteStorage;

    #[test]
    fn behaves_like_storage_and_hides_values_from_a_database_copy() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("kbs/kbs.db");
        let kek = Kek::load_or_create(&t.path().join("kbs/kek")).unwrap();
        let s = EncryptedStorage::new(SqliteStorage::open(&db).unwrap(), kek).unwrap();
        crate::storage::tests::exercise(&s);
        s.put(Namespace::Resource, "r/t/secret", b"TOP-SECRET-VALUE")
            .unwrap();
        drop(s);

        let copy = t.path().join("elsewhere.db");
        std::fs::copy(&db, &copy).unwrap();
        let raw = SqliteStorage::open(&copy).unwrap();
        let stored = raw.get(Namespace::Resource, "r/t/secret").unwrap().unwrap();
        assert!(!stored
            .windows(b"TOP-SECRET".len())
            .any(|w| w == b"TOP-SECRET"));
        let bytes = std::fs::read(&copy).unwrap();
        assert!(!bytes
            .windows(b"TOP-SECRET".len())
            .any(|w| w == b"TOP-SECRET"));

        // Another key cannot open the copy: refused at start, naming the fix.
        let other = Kek::load_or_create(&t.path().join("other/kek")).unwrap();
        let err = EncryptedStorage::new(raw, other).unwrap_err().to_string();
        assert!(err.contains("--kek"), "{err}");
    }

    #[test]
    fn a_value_moved_to_another_key_does_not_decrypt() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("kbs.db");
        let kek = Kek::load_or_create(&t.path().join("kek")).unwrap();
        let s = EncryptedStorage::new(SqliteStorage::open(&db).unwrap(), kek).unwrap();
        s.put(Namespace::Resource, "a/b/c", b"x").unwrap();
        let sealed = s.inner.get(Namespace::Resource, "a/b/c").unwrap().unwrap();
        s.inner.put(Namespace::Resource, "a/b/d", &sealed).unwrap();
        assert!(matches!(
            s.get(Namespace::Resource, "a/b/d"),
            Err(StorageError::Undecryptable { .. })
        ));
    }

    #[test]
    fn plain_values_of_an_earlier_version_are_sealed_at_start() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("kbs.db");
        SqliteStorage::open(&db)
            .unwrap()
            .put(Namespace::Key, "token-signing-key", b"legacy")
            .unwrap();
        let kek = Kek::load_or_create(&t.path().join("kek")).unwrap();
        let s = EncryptedStorage::new(SqliteStorage::open(&db).unwrap(), kek).unwrap();
        assert_eq!(
            s.get(Namespace::Key, "token-signing-key").unwrap().unwrap(),
            b"legacy"
        );
        let raw = s
            .inner
            .get(Namespace::Key, "token-signing-key")
            .unwrap()
            .unwrap();
        assert!(raw.starts_with(MAGIC));
    }

    #[test]
    fn the_key_file_is_owner_only_and_a_shared_one_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("kek");
        Kek::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        Kek::load(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Kek::load(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn an_oversized_key_file_is_refused_naming_the_limit() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("kek");
        std::fs::write(&path, vec![b'a'; 10 << 20]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = Kek::load(&path).unwrap_err().to_string();
        assert!(err.contains("128 bytes"), "{err}");
    }
}
