//! The `A3S_HOME` directory: where every piece of A3S Box state lives.
//!
//! ```text
//! $A3S_HOME (default ~/.a3s)
//! ├── cache/kds/     AMD KDS certificates and CRLs (see a3s_attestation::kds)
//! ├── simulator/     the simulated AMD secure processor's keys
//! ├── images/  boxes/  kbs/  audit/   (later issues)
//! ```

use std::path::{Path, PathBuf};

/// Environment variable that overrides the home directory.
pub const HOME_ENV: &str = "A3S_HOME";

/// The resolved A3S Box home directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct A3sHome {
    root: PathBuf,
}

/// Neither `A3S_HOME` nor `HOME` is set.
#[derive(Debug, thiserror::Error)]
#[error("cannot find the A3S Box home: set A3S_HOME (or HOME) to a writable directory")]
pub struct NoHome;

impl A3sHome {
    /// Uses `root` as the home directory.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Resolves the home from `A3S_HOME`, else `$HOME/.a3s`.
    ///
    /// # Errors
    /// [`NoHome`] when neither variable is set to a non-empty value.
    pub fn from_env() -> Result<Self, NoHome> {
        let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(home) = non_empty(HOME_ENV) {
            return Ok(Self::at(home));
        }
        non_empty("HOME")
            .map(|h| Self::at(PathBuf::from(h).join(".a3s")))
            .ok_or(NoHome)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_state_under_the_root() {
        let home = A3sHome::at("/tmp/h");
        assert_eq!(home.kds_cache(), Path::new("/tmp/h/cache/kds"));
        assert_eq!(home.simulator(), Path::new("/tmp/h/simulator"));
    }
}
