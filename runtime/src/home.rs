//! The `A3S_HOME` directory: where every piece of A3S Box state lives.
//!
//! ```text
//! $A3S_HOME (default ~/.a3s)
//! ├── cache/kds/     AMD KDS certificates and CRLs (see a3s_attestation::kds)
//! ├── simulator/     the simulated AMD secure processor's keys
//! ├── images/  boxes/  kbs/  audit/   (later issues)
//! ```

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Environment variable that overrides the home directory.
pub const HOME_ENV: &str = "A3S_HOME";

/// The resolved A3S Box home directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct A3sHome {
    root: PathBuf,
}

/// Directories under the home that hold secrets or private state (box environments, KBS
/// secrets and keys, the audit trail, simulator keys, credentials): owner-only.
pub const PRIVATE_DIRS: [&str; 5] = ["boxes", "kbs", "audit", "simulator", "auth"];

/// The home cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    /// Neither `A3S_HOME` nor `HOME` is set.
    #[error("cannot find the A3S Box home: set A3S_HOME (or HOME) to a writable directory")]
    NoHome,
    /// A directory could not be created or made owner-only.
    #[error("cannot make {path} owner-only (mode 0700): {source}; check that you own it")]
    Protect {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl A3sHome {
    /// Uses `root` as the home directory.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Resolves the home from `A3S_HOME`, else `$HOME/.a3s`, and makes it and its
    /// [`PRIVATE_DIRS`] owner-only (see [`Self::protect`]).
    ///
    /// # Errors
    /// [`HomeError::NoHome`] when neither variable is set to a non-empty value,
    /// [`HomeError::Protect`] when the directories cannot be made owner-only.
    pub fn from_env() -> Result<Self, HomeError> {
        let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let home = match non_empty(HOME_ENV) {
            Some(home) => Self::at(home),
            None => non_empty("HOME")
                .map(|h| Self::at(PathBuf::from(h).join(".a3s")))
                .ok_or(HomeError::NoHome)?,
        };
        home.protect()?;
        Ok(home)
    }

    /// Creates the home and its [`PRIVATE_DIRS`] mode 0700, and takes group and other access
    /// away from existing ones (homes made by earlier versions were 0755), so no other local
    /// user can read what they hold whatever the modes of the files inside.
    ///
    /// # Errors
    /// [`HomeError::Protect`] naming the directory.
    pub fn protect(&self) -> Result<(), HomeError> {
        let dirs = std::iter::once(self.root.clone())
            .chain(PRIVATE_DIRS.iter().map(|d| self.root.join(d)));
        for dir in dirs {
            private_dir(&dir).map_err(|source| HomeError::Protect { path: dir, source })?;
        }
        Ok(())
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Cache of AMD KDS certificates and CRLs.
    pub fn kds_cache(&self) -> PathBuf {
        self.root.join("cache").join("kds")
    }

    /// The audit log directory.
    pub fn audit(&self) -> PathBuf {
        self.root.join("audit")
    }

    /// State of the simulated AMD secure processor.
    pub fn simulator(&self) -> PathBuf {
        self.root.join("simulator")
    }
}

/// Creates `dir` (and missing parents) mode 0700, or clears group and other bits of an
/// existing one.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_state_under_the_root() {
        let home = A3sHome::at("/tmp/h");
        assert_eq!(home.kds_cache(), Path::new("/tmp/h/cache/kds"));
        assert_eq!(home.simulator(), Path::new("/tmp/h/simulator"));
    }

    #[test]
    fn protect_makes_new_and_old_private_dirs_owner_only() {
        let t = tempfile::tempdir().unwrap();
        let home = A3sHome::at(t.path().join("home"));
        std::fs::create_dir_all(home.root().join("boxes")).unwrap();
        std::fs::set_permissions(home.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(
            home.root().join("boxes"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        home.protect().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(home.root()), 0o700);
        for d in PRIVATE_DIRS {
            assert_eq!(mode(&home.root().join(d)), 0o700, "{d}");
        }
    }
}
