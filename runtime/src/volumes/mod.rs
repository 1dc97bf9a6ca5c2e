//! Volumes and bind mounts (issue 9).
//!
//! ```text
//! volumes/.lock                  held for every change (and while a box attaches volumes)
//! volumes/<name>/volume.json     VolumeRecord (versioned; anonymous ones name their box)
//! volumes/<name>/_data/          the files the guest sees
//! boxes/<id>/mounts.json         the box's -v mounts (written at create)
//! ```
//!
//! A box's mounts reach the guest as virtiofs shares: the host runs one `virtiofsd` per mount
//! ([`a3s_vmm::fs`]), the guest mounts tag `a3sv<N>` at the target path before the workload
//! starts ([`a3s_vmm::proto::GuestMount`]), read-only mounts with `MS_RDONLY` (EROFS) on top of
//! a read-only export.

mod spec;
mod store;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use a3s_vmm::proto::GuestMount;

pub use spec::{check_targets, MountSource, MountSpec, VolumeName};
pub use store::{
    VolumeInfo, VolumeRecord, VolumeUser, Volumes, ANONYMOUS_LABEL, DATA_DIR, VOLUME_VERSION,
};

/// The file beside a box's record that lists its mounts.
pub const MOUNTS_FILE: &str = "mounts.json";

/// A mount with its host directory resolved, as the monitor boots it (stored in the plan).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedMount {
    /// virtiofs tag.
    pub tag: String,
    /// Host directory to export.
    pub host_dir: PathBuf,
    /// Read-only.
    pub readonly: bool,
    /// Only the box changes it: the guest keeps its files cached.
    pub keep_cache: bool,
}

/// The virtiofs tag of a box's `index`-th mount.
pub fn tag(index: usize) -> String {
    format!("a3sv{index}")
}

/// What the guest mounts, in order.
pub fn guest_mounts(mounts: &[MountSpec]) -> Vec<GuestMount> {
    mounts
        .iter()
        .enumerate()
        .map(|(i, m)| GuestMount {
            tag: tag(i),
            path: m.target.clone(),
            readonly: m.readonly,
            copy_up: copies_up(m),
        })
        .collect()
}

/// Whether the guest fills the mount from the image when it is empty: volumes (named or
/// anonymous) without `nocopy` (bind mounts never are, like Docker's).
pub fn copies_up(m: &MountSpec) -> bool {
    matches!(
        m.source,
        MountSource::Volume { .. } | MountSource::Anonymous
    ) && !m.nocopy
}

/// A box's mounts with an anonymous volume for each of the image's `VOLUME` paths that no
/// mount targets already (Docker's rule: `-v`/`--mount` on the same path wins).
///
/// # Errors
/// [`VolumeError::Spec`] for an image volume path that is not an absolute guest path.
pub fn with_image_volumes(
    mounts: &[MountSpec],
    image_volumes: &[String],
) -> Result<Vec<MountSpec>, VolumeError> {
    let mut out = mounts.to_vec();
    for path in image_volumes {
        let m = MountSpec::parse(path).map_err(|e| match e {
            VolumeError::Spec { spec, why } => VolumeError::Spec {
                spec,
                why: format!("the image's VOLUME entry is unusable: {why}"),
            },
            other => other,
        })?;
        if !matches!(m.source, MountSource::Anonymous) {
            return Err(VolumeError::Spec {
                spec: path.clone(),
                why: "the image's VOLUME entry is not an absolute guest path".into(),
            });
        }
        if !out.iter().any(|o| o.target == m.target) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Reads a box directory's `mounts.json` (none when absent).
///
/// # Errors
/// i/o or a malformed file.
pub fn load_mounts(box_dir: &Path) -> Result<Vec<MountSpec>, VolumeError> {
    let path = box_dir.join(MOUNTS_FILE);
    match fs_err::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| VolumeError::Malformed {
            path: path.clone(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Resolves a box's mounts for boot: volume data directories, and every host directory must
/// exist (checked again here because a bind source can disappear between create and start).
///
/// # Errors
/// [`VolumeError::NotFound`] for a volume removed with `--force`, [`VolumeError::MissingHostDir`].
pub fn resolve(volumes: &Volumes, mounts: &[MountSpec]) -> Result<Vec<ResolvedMount>, VolumeError> {
    mounts
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let host_dir = match &m.source {
                MountSource::Volume { name } => {
                    volumes.get(name)?;
                    volumes.data_dir(name)
                }
                MountSource::Bind { path } => {
                    m.check_host()?;
                    path.clone()
                }
                // Named when the box was created; a record still holding one is damaged.
                MountSource::Anonymous => {
                    return Err(VolumeError::NotFound(format!(
                        "the anonymous volume at {}",
                        m.target
                    )))
                }
            };
            // An empty `:ro` volume is exported writable so that guest-init can fill it from
            // the image; the guest still mounts it read-only for the workload.
            let readonly = m.readonly && !(copies_up(m) && dir_is_empty(&host_dir));
            Ok(ResolvedMount {
                tag: tag(i),
                host_dir,
                readonly,
                keep_cache: m.guest_only,
            })
        })
        .collect()
}

fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

/// The VM's shares for resolved mounts; sockets and logs live in the box directory.
pub fn shares(box_dir: &Path, mounts: &[ResolvedMount]) -> Vec<a3s_vmm::fs::Share> {
    mounts
        .iter()
        .map(|m| a3s_vmm::fs::Share {
            tag: m.tag.clone(),
            host_dir: m.host_dir.clone(),
            socket: box_dir.join(format!("vfs-{}.sock", m.tag)),
            readonly: m.readonly,
            keep_cache: m.keep_cache,
            log: box_dir.join(format!("virtiofsd-{}.log", m.tag)),
        })
        .collect()
}

/// A volume or mount operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VolumeError {
    /// Not a volume name.
    #[error("invalid volume name {0:?}: use letters, digits, '_', '.' and '-' (at least 2), starting with a letter or digit")]
    BadName(String),
    /// A bad `-v`.
    #[error("-v {spec:?}: {why}")]
    Spec {
        /// What was given.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// A bind mount's host directory is missing.
    #[error("bind mount source {0} does not exist or is not a directory")]
    MissingHostDir(PathBuf),
    /// Two mounts on one guest path.
    #[error("the guest path {0} is mounted twice")]
    DuplicateTarget(String),
    /// No such volume.
    #[error("no such volume: {0}")]
    NotFound(String),
    /// `rm` of a volume a box mounts.
    #[error("volume {name} is in use by box(es) {}", boxes.join(", "))]
    InUse {
        /// The volume.
        name: String,
        /// The boxes (names, or ids of boxes being created).
        boxes: Vec<String>,
    },
    /// `volume.json` has another layout version.
    #[error("{path}: volume version {found} is not supported (this build reads {VOLUME_VERSION})")]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// A record is not valid JSON of the expected shape.
    #[error("{path} is malformed")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Locking.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// File i/o (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl VolumeError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Spec { .. } => Some(
                "mount a named volume with -v NAME:/guest/path, a host directory with -v /abs/host/dir:/guest/path[:ro], or a new anonymous volume with -v /guest/path"
                    .into(),
            ),
            Self::MissingHostDir(p) => Some(format!(
                "create it first (mkdir -p {}); bind mounts never create host directories",
                p.display()
            )),
            Self::NotFound(_) => Some("`a3s-box volume ls` lists volumes".into()),
            Self::InUse { .. } => Some(
                "remove the boxes first (`a3s-box rm`), or use `a3s-box volume rm --force`".into(),
            ),
            Self::DuplicateTarget(_) => Some("give each -v its own guest path".into()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
