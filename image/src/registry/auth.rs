//! Registry credentials saved by `login`: `A3S_HOME/auth.json`, mode 0600, Docker's
//! `config.json` shape (`{"auths": {"<registry>": {"auth": base64("user:password")}}}`).

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use base64::Engine as _;
use fs_err as fs;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::store::FileLock;

/// A user name and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    password: Zeroizing<String>,
}

impl Credentials {
    /// Credentials from a user name and password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: Zeroizing::new(password.into()),
        }
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// Why the credential file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFileError {
    /// Reading or writing failed.
    #[error("credential file I/O")]
    Io(#[from] io::Error),
    /// The file is not valid JSON of the expected shape.
    #[error("credential file {} is malformed", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// An entry's `auth` is not base64 of `user:password`.
    #[error("credential entry for {registry} in {} is malformed", path.display())]
    BadEntry {
        /// The file.
        path: PathBuf,
        /// The registry.
        registry: String,
    },
    /// The file is readable by others.
    #[error("credential file {} is readable by other users (mode {mode:o})", path.display())]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
}

impl AuthFileError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Permissions { path, .. } => Some(format!("run `chmod 600 {}`", path.display())),
            Self::Malformed { path, .. } | Self::BadEntry { path, .. } => Some(format!(
                "remove {} and log in again with `a3s-box login`",
                path.display()
            )),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct AuthEntry {
    auth: String,
}

/// The credential file.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    path: PathBuf,
}

impl CredentialStore {
    /// The credential file at `path` (created by the first `set`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Credentials for `registry` (`host[:port]`), if saved.
    ///
    /// # Errors
    /// The file is unreadable, malformed or readable by others.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, AuthFileError> {
        let file = self.load()?;
        let Some(entry) = file.auths.get(registry) else {
            return Ok(None);
        };
        let bad = || AuthFileError::BadEntry {
            path: self.path.clone(),
            registry: registry.to_owned(),
        };
        let raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(&entry.auth)
                .map_err(|_| bad())?,
        );
        let text = std::str::from_utf8(&raw).map_err(|_| bad())?;
        let (user, pass) = text.split_once(':').ok_or_else(bad)?;
        Ok(Some(Credentials::new(user, pass)))
    }

    /// Saves credentials for `registry` (file mode 0600).
    ///
    /// # Errors
    /// The file cannot be read or written.
    pub fn set(&self, registry: &str, creds: &Credentials) -> Result<(), AuthFileError> {
        let _lock = self.lock()?;
        let mut file = self.load()?;
        let joined = Zeroizing::new(format!("{}:{}", creds.username, creds.password()));
        file.auths.insert(
            registry.to_owned(),
            AuthEntry {
                auth: base64::engine::general_purpose::STANDARD.encode(joined.as_bytes()),
            },
        );
        self.save(&file)
    }

    /// Forgets `registry`; returns whether it was saved.
    ///
    /// # Errors
    /// The file cannot be read or written.
    pub fn remove(&self, registry: &str) -> Result<bool, AuthFileError> {
        let _lock = self.lock()?;
        let mut file = self.load()?;
        let had = file.auths.remove(registry).is_some();
        if had {
            self.save(&file)?;
        }
        Ok(had)
    }

    fn lock(&self) -> Result<FileLock, AuthFileError> {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        Ok(FileLock::exclusive(std::path::Path::new(&p))?)
    }

    fn load(&self) -> Result<AuthFile, AuthFileError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(AuthFile::default()),
            Err(e) => return Err(e.into()),
        };
        let mode = fs::metadata(&self.path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AuthFileError::Permissions {
                path: self.path.clone(),
                mode,
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| AuthFileError::Malformed {
            path: self.path.clone(),
            source,
        })
    }

    fn save(&self, file: &AuthFile) -> Result<(), AuthFileError> {
        let bytes = Zeroizing::new(serde_json::to_vec_pretty(file).expect("auth file serialises"));
        // The temp file is created 0600 and the rename keeps that mode.
        crate::store::write_atomic(&self.path, &bytes)?;
        fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_credentials_0600_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(dir.path().join("auth.json"));
        assert!(store.get("127.0.0.1:5000").unwrap().is_none());
        store
            .set(
                "127.0.0.1:5000",
                &Credentials::new("tester", "s3cret:with:colons"),
            )
            .unwrap();
        let mode = std::fs::metadata(dir.path().join("auth.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let c = store.get("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password()),
            ("tester", "s3cret:with:colons")
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(store.remove("127.0.0.1:5000").unwrap());
        assert!(!store.remove("127.0.0.1:5000").unwrap());
        assert!(store.get("127.0.0.1:5000").unwrap().is_none());
    }

    #[test]
    fn refuses_a_world_readable_credential_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(&path, br#"{"auths":{}}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CredentialStore::new(&path).get("x").unwrap_err();
        assert!(matches!(err, AuthFileError::Permissions { .. }));
        assert!(err.hint().unwrap().contains("chmod 600"));
    }
}
