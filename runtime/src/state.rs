//! The primitives every stateful module shares: box ids, file locks, name checks, the state
//! error, timestamps. This module sits below `boxes`, `network`, `volumes` and `tee`; it knows
//! none of them.

use std::fmt;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Version of the `state.json` layout; other versions are refused, not guessed at.
pub const RECORD_VERSION: u32 = 1;

/// A box id: 32 lowercase hex digits (shown shortened to 12).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BoxId(String);

impl BoxId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The full id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-digit short form.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

/// Not a box id.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a box id (32 lowercase hex digits)")]
pub struct BadBoxId(String);

impl FromStr for BoxId {
    type Err = BadBoxId;
    fn from_str(s: &str) -> Result<Self, BadBoxId> {
        if s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadBoxId(s.to_owned()))
        }
    }
}

impl TryFrom<String> for BoxId {
    type Error = BadBoxId;
    fn try_from(s: String) -> Result<Self, BadBoxId> {
        s.parse()
    }
}

impl From<BoxId> for String {
    fn from(id: BoxId) -> Self {
        id.0
    }
}

impl fmt::Display for BoxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A box state operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// No box has that name or id (prefix).
    #[error("no such box: {0}")]
    NotFound(String),
    /// An id prefix matches several boxes.
    #[error("box id prefix {0} is ambiguous")]
    Ambiguous(String),
    /// The name is taken.
    #[error("the name {name:?} is already in use by box {id}")]
    NameInUse {
        /// The name.
        name: String,
        /// Its current owner.
        id: String,
    },
    /// The name has characters outside `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
    #[error("invalid box name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit")]
    BadName(String),
    /// `state.json` has another layout version.
    #[error("{path}: state version {found} is not supported (this build reads {RECORD_VERSION})")]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// `state.json` is not valid.
    #[error("{path} is malformed")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// File-system failure (the message names the path).
    #[error("box state i/o failed")]
    Io(#[from] std::io::Error),
}

impl StateError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotFound(_) => Some("`a3s-box ps -a` lists boxes".into()),
            Self::NameInUse { id, .. } => Some(format!(
                "remove it with `a3s-box rm -f {}` or choose another --name",
                &id[..12.min(id.len())]
            )),
            _ => None,
        }
    }
}

/// An exclusive `flock` held until dropped.
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] File);

/// Takes an exclusive lock on `path` (created if missing).
///
/// # Errors
/// i/o.
pub fn lock_file(path: &Path) -> Result<Lock, StateError> {
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    let f = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| std::io::Error::other(format!("locking {}: {e}", path.display())))?;
    Ok(Lock(f.into_parts().0))
}

/// Checks a user-chosen box name.
///
/// # Errors
/// [`StateError::BadName`].
pub fn check_name(name: &str) -> Result<(), StateError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(StateError::BadName(name.to_owned()))
    }
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Current time in RFC 3339 with nanoseconds.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A box's name and state name (`created`, `starting`, `running`, `exited`), read from its
/// `state.json` without the box store: what lower modules (volumes) show about the boxes
/// that use them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoxSummary {
    /// The box's name.
    pub name: String,
    /// Its state's name.
    pub state: String,
}

/// Reads a [`BoxSummary`] from a box's `state.json`.
///
/// # Errors
/// i/o, malformed JSON or another layout version.
pub fn read_summary(path: &Path) -> Result<BoxSummary, StateError> {
    #[derive(Deserialize)]
    struct Status {
        status: String,
    }
    #[derive(Deserialize)]
    struct Summary {
        version: u32,
        name: String,
        state: Status,
    }
    let text = fs_err::read_to_string(path)?;
    let s: Summary = serde_json::from_str(&text).map_err(|source| StateError::Malformed {
        path: path.to_owned(),
        source,
    })?;
    if s.version != RECORD_VERSION {
        return Err(StateError::Version {
            path: path.to_owned(),
            found: s.version,
        });
    }
    Ok(BoxSummary {
        name: s.name,
        state: s.state.status,
    })
}
