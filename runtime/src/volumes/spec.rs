//! `-v` arguments: `NAME:/path[:OPTS]` (named volume), `/host/dir:/path[:ro|rw]` (bind
//! mount) and `/path[:OPTS]` (anonymous volume: named with 64 random hex digits when the box
//! is created), where `OPTS` is a comma-separated list of `ro`/`rw` and, for volumes,
//! `nocopy`. Parsing is pure; whether a bind source exists is checked by
//! [`MountSpec::check_host`].

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::VolumeError;

/// A volume name: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at most 128 characters (Docker's rule).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VolumeName(String);

impl VolumeName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for VolumeName {
    type Err = VolumeError;
    fn from_str(s: &str) -> Result<Self, VolumeError> {
        let mut chars = s.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            && (2..=128).contains(&s.len());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(VolumeError::BadName(s.to_owned()))
        }
    }
}

impl TryFrom<String> for VolumeName {
    type Error = VolumeError;
    fn try_from(s: String) -> Result<Self, VolumeError> {
        s.parse()
    }
}

impl From<VolumeName> for String {
    fn from(n: VolumeName) -> Self {
        n.0
    }
}

impl fmt::Display for VolumeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a mount's files live on the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MountSource {
    /// A named volume (created on first use).
    Volume {
        /// Its name.
        name: VolumeName,
    },
    /// A host directory (absolute).
    Bind {
        /// The directory.
        path: PathBuf,
    },
    /// A volume of its own for this box (`-v /path`, an image's `VOLUME`): named and created
    /// with the box, and removed with it by `rm -v` and `--rm`. Never stored: a created box's
    /// `mounts.json` names the volume.
    Anonymous,
}

/// One `-v` mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// The host side.
    pub source: MountSource,
    /// Absolute guest path, normalised (no `.`, `..`, doubled or trailing `/`).
    pub target: String,
    /// `:ro`.
    pub readonly: bool,
    /// `:nocopy`: a new named volume is not filled from the image (records from before it
    /// load as `false`).
    #[serde(default)]
    pub nocopy: bool,
    /// Only the box changes the directory (a pod's container roots), so the guest keeps its
    /// files cached ([`a3s_vmm::fs::Share::keep_cache`]); never set from `-v`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guest_only: bool,
}

impl MountSpec {
    /// Parses one `-v` argument.
    ///
    /// # Errors
    /// [`VolumeError::Spec`] naming what is wrong.
    pub fn parse(spec: &str) -> Result<Self, VolumeError> {
        let bad = |why: &str| VolumeError::Spec {
            spec: spec.to_owned(),
            why: why.to_owned(),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            // Docker: `/path` and `/path:ro` are anonymous volumes.
            [t] if t.starts_with('/') => ("", *t, ""),
            [t, m] if t.starts_with('/') && !m.starts_with('/') => ("", *t, *m),
            [_] => return Err(bad("expected SOURCE:/guest/path[:ro] or /guest/path")),
            [s, t] => (*s, *t, ""),
            [s, t, m] => (*s, *t, *m),
            _ => return Err(bad("too many ':' (expected SOURCE:/guest/path[:ro])")),
        };
        let (mut readonly, mut nocopy, mut access) = (false, false, None);
        for opt in mode.split(',').filter(|_| !mode.is_empty()) {
            match opt {
                "ro" | "rw" if access.is_some_and(|a| a != opt) => {
                    return Err(bad("ro and rw contradict each other"))
                }
                "ro" | "rw" => {
                    readonly = opt == "ro";
                    access = Some(opt);
                }
                "nocopy" => nocopy = true,
                other => {
                    return Err(bad(&format!(
                        "unknown option {other:?}: use ro, rw or nocopy (comma-separated)"
                    )))
                }
            }
        }
        let anonymous = source.is_empty() && !spec.starts_with(':');
        if source.is_empty() && !anonymous {
            return Err(bad("the source (volume name or host directory) is empty"));
        }
        let source = if anonymous {
            MountSource::Anonymous
        } else if source.starts_with('/') {
            let path = Path::new(source);
            if path.components().any(|c| c == Component::ParentDir) {
                return Err(bad("the host path must not contain '..'"));
            }
            MountSource::Bind {
                path: path.components().collect(),
            }
        } else if source.starts_with('.') || source.starts_with('~') || source.contains('/') {
            return Err(bad(&format!(
                "host path {source:?} is not absolute (bind mounts need an absolute host directory)"
            )));
        } else {
            MountSource::Volume {
                name: source.parse().map_err(|_| {
                    bad(&format!(
                        "{source:?} is not a volume name (letters, digits, '_', '.', '-', at least 2, starting with a letter or digit)"
                    ))
                })?,
            }
        };
        if nocopy && matches!(source, MountSource::Bind { .. }) {
            return Err(bad(
                "nocopy applies to named volumes only: a bind mount is never filled from the image",
            ));
        }
        let target = guest_path(target).map_err(|why| bad(&why))?;
        Ok(Self {
            source,
            target,
            readonly,
            nocopy,
            guest_only: false,
        })
    }

    /// Checks that a bind mount's host directory exists and is a directory.
    ///
    /// # Errors
    /// [`VolumeError::MissingHostDir`].
    pub fn check_host(&self) -> Result<(), VolumeError> {
        match &self.source {
            MountSource::Bind { path } if !path.is_dir() => {
                Err(VolumeError::MissingHostDir(path.clone()))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for MountSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            MountSource::Volume { name } => write!(f, "{name}:")?,
            MountSource::Bind { path } => write!(f, "{}:", path.display())?,
            MountSource::Anonymous => {}
        }
        f.write_str(&self.target)?;
        match (self.readonly, self.nocopy) {
            (true, true) => f.write_str(":ro,nocopy"),
            (true, false) => f.write_str(":ro"),
            (false, true) => f.write_str(":nocopy"),
            (false, false) => Ok(()),
        }
    }
}

/// Checks a list of mounts together: no guest path twice.
///
/// # Errors
/// [`VolumeError::DuplicateTarget`].
pub fn check_targets(mounts: &[MountSpec]) -> Result<(), VolumeError> {
    for (i, m) in mounts.iter().enumerate() {
        if mounts[..i].iter().any(|o| o.target == m.target) {
            return Err(VolumeError::DuplicateTarget(m.target.clone()));
        }
    }
    Ok(())
}

/// An absolute, normalised guest path other than `/`.
fn guest_path(t: &str) -> Result<String, String> {
    if t.is_empty() {
        return Err("the guest path is empty".into());
    }
    if !t.starts_with('/') {
        return Err(format!("guest path {t:?} is not absolute"));
    }
    let mut parts = Vec::new();
    for c in t.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("the guest path must not contain '..'".into()),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err("cannot mount over the guest's root directory".into());
    }
    if parts[0] == ".a3s" {
        return Err("/.a3s is reserved for A3S Box's guest-init".into());
    }
    Ok(format!("/{}", parts.join("/")))
}
