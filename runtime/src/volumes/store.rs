//! The named-volume store: `A3S_HOME/volumes/<name>/{volume.json,_data/}`.
//!
//! Every change happens under the exclusive lock `volumes/.lock`; a volume appears by renaming
//! a complete temporary directory into place, so a crash never leaves half a volume. Which boxes
//! use a volume is read from their `mounts.json` (any state, also a box still being created), so
//! the lock also orders `rm` against `run -v` (which attaches under the same lock).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::{MountSource, MountSpec, VolumeName};
use super::{VolumeError, MOUNTS_FILE};
use crate::home::A3sHome;
use crate::state::{self, BoxId, Lock};

/// Version of the `volume.json` layout; other versions are refused.
pub const VOLUME_VERSION: u32 = 1;
/// The data directory inside a volume's directory (what the guest sees).
pub const DATA_DIR: &str = "_data";
/// Docker's label on anonymous volumes (value empty).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// What is stored about one volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// Layout version ([`VOLUME_VERSION`]).
    pub version: u32,
    /// Name.
    pub name: VolumeName,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Created for one box (`-v /path`, an image's `VOLUME`), not by name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    /// The id of the box an anonymous volume was created for: `rm -v` and `--rm` of that box
    /// remove it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A box that mounts a volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VolumeUser {
    /// Box id.
    pub id: String,
    /// Box name (empty while the box is being created).
    pub name: String,
    /// Box state (`created`, `running`, `exited`, ...).
    pub state: String,
}

/// A volume as `volume inspect` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VolumeInfo {
    /// Name.
    pub name: String,
    /// Always `local`.
    pub driver: &'static str,
    /// The data directory on the host.
    pub mountpoint: PathBuf,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Created for one box rather than by name.
    pub anonymous: bool,
    /// The box an anonymous volume was created for (its id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Boxes that mount it, in any state.
    pub used_by: Vec<VolumeUser>,
}

/// The volumes of one A3S home.
#[derive(Clone, Debug)]
pub struct Volumes {
    dir: PathBuf,
    boxes_dir: PathBuf,
}

impl Volumes {
    /// The volumes of `home`.
    pub fn open(home: &A3sHome) -> Self {
        Self {
            dir: home.root().join("volumes"),
            boxes_dir: home.root().join("boxes"),
        }
    }

    /// The store's lock; hold it across a check and the change it guards.
    ///
    /// # Errors
    /// i/o.
    pub fn lock(&self) -> Result<Lock, VolumeError> {
        Ok(state::lock_file(&self.dir.join(".lock"))?)
    }

    /// A volume's data directory (it may not exist).
    pub fn data_dir(&self, name: &VolumeName) -> PathBuf {
        self.dir.join(name.as_str()).join(DATA_DIR)
    }

    /// Creates a volume; an existing one is returned as it is (Docker's `volume create`).
    /// Returns the record and whether it was created now.
    ///
    /// # Errors
    /// i/o, or a malformed existing record.
    pub fn create(&self, name: &VolumeName) -> Result<(VolumeRecord, bool), VolumeError> {
        let lock = self.lock()?;
        self.ensure(name, &lock)
    }

    /// [`Volumes::create`] for a caller that already holds the lock.
    ///
    /// # Errors
    /// As [`Volumes::create`].
    pub fn ensure(
        &self,
        name: &VolumeName,
        lock: &Lock,
    ) -> Result<(VolumeRecord, bool), VolumeError> {
        match self.get(name) {
            Ok(rec) => return Ok((rec, false)),
            Err(VolumeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let rec = VolumeRecord {
            version: VOLUME_VERSION,
            name: name.clone(),
            created_at: state::now_rfc3339(),
            anonymous: false,
            owner: None,
        };
        self.write_new(&rec, lock)?;
        Ok((rec, true))
    }

    /// Creates an anonymous volume for box `owner`: Docker's 64 random hex digits as its name.
    fn create_anonymous(&self, owner: &BoxId, lock: &Lock) -> Result<VolumeName, VolumeError> {
        let mut bytes = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        let name: VolumeName = hex::encode(bytes).parse()?;
        let rec = VolumeRecord {
            version: VOLUME_VERSION,
            name: name.clone(),
            created_at: state::now_rfc3339(),
            anonymous: true,
            owner: Some(owner.to_string()),
        };
        self.write_new(&rec, lock)?;
        Ok(name)
    }

    /// Puts a new volume in place: a complete temporary directory renamed to its name.
    fn write_new(&self, rec: &VolumeRecord, _lock: &Lock) -> Result<(), VolumeError> {
        let tmp = self
            .dir
            .join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        fs_err::create_dir_all(tmp.join(DATA_DIR))?;
        let json = serde_json::to_vec_pretty(&rec).map_err(std::io::Error::other)?;
        a3s_vmm::assets::write_atomic(&tmp.join("volume.json"), &json)?;
        fs_err::rename(&tmp, self.dir.join(rec.name.as_str()))?;
        fs_err::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    /// One volume's record.
    ///
    /// # Errors
    /// [`VolumeError::NotFound`], a malformed record or another layout version.
    pub fn get(&self, name: &VolumeName) -> Result<VolumeRecord, VolumeError> {
        let path = self.dir.join(name.as_str()).join("volume.json");
        let bytes = match fs_err::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        #[derive(Deserialize)]
        struct V {
            version: u32,
        }
        let malformed = |source| VolumeError::Malformed {
            path: path.clone(),
            source,
        };
        let v: V = serde_json::from_slice(&bytes).map_err(malformed)?;
        if v.version != VOLUME_VERSION {
            return Err(VolumeError::Version {
                path,
                found: v.version,
            });
        }
        serde_json::from_slice(&bytes).map_err(malformed)
    }

    /// Every volume, by name.
    ///
    /// # Errors
    /// i/o on the store directory, malformed records.
    pub fn list(&self) -> Result<Vec<VolumeRecord>, VolumeError> {
        let Ok(entries) = fs_err::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in entries.filter_map(Result::ok) {
            let Ok(name) = e.file_name().to_string_lossy().parse::<VolumeName>() else {
                continue; // .lock, .tmp-*, .removed-*
            };
            out.push(self.get(&name)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The boxes that mount each volume (every box directory with a `mounts.json`).
    ///
    /// # Errors
    /// Malformed `mounts.json` files.
    pub fn users(&self) -> Result<BTreeMap<VolumeName, Vec<VolumeUser>>, VolumeError> {
        let mut out: BTreeMap<VolumeName, Vec<VolumeUser>> = BTreeMap::new();
        let Ok(entries) = fs_err::read_dir(&self.boxes_dir) else {
            return Ok(out);
        };
        for e in entries.filter_map(Result::ok) {
            let Ok(id) = e.file_name().to_string_lossy().parse::<BoxId>() else {
                continue;
            };
            let dir = e.path();
            let mounts = super::load_mounts(&dir)?;
            if mounts.is_empty() {
                continue;
            }
            let (name, state_name) = match state::read_summary(&dir.join("state.json")) {
                Ok(r) => (r.name, r.state),
                Err(_) => (String::new(), "creating".to_owned()),
            };
            for m in mounts {
                if let MountSource::Volume { name: vol } = m.source {
                    out.entry(vol).or_default().push(VolumeUser {
                        id: id.to_string(),
                        name: name.clone(),
                        state: state_name.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// `volume inspect`'s view of a record.
    ///
    /// # Errors
    /// As [`Volumes::users`].
    pub fn info(&self, rec: &VolumeRecord) -> Result<VolumeInfo, VolumeError> {
        let used_by = self.users()?.remove(&rec.name).unwrap_or_default();
        Ok(VolumeInfo {
            name: rec.name.to_string(),
            driver: "local",
            mountpoint: self.data_dir(&rec.name),
            created_at: rec.created_at.clone(),
            anonymous: rec.anonymous,
            owner: rec.owner.clone(),
            used_by,
        })
    }

    /// Removes a volume and its data. A volume mounted by any box (in any state) is refused
    /// unless `force`.
    ///
    /// # Errors
    /// [`VolumeError::NotFound`], [`VolumeError::InUse`], i/o.
    pub fn remove(&self, name: &VolumeName, force: bool) -> Result<VolumeRecord, VolumeError> {
        let _lock = self.lock()?;
        let rec = self.get(name)?;
        if !force {
            if let Some(users) = self.users()?.remove(name) {
                return Err(VolumeError::InUse {
                    name: name.to_string(),
                    boxes: users
                        .into_iter()
                        .map(|u| if u.name.is_empty() { u.id } else { u.name })
                        .collect(),
                });
            }
        }
        self.remove_dir(name)?;
        Ok(rec)
    }

    /// Removes every anonymous volume no box mounts (Docker 23's `volume prune`), or with
    /// `all` every volume no box mounts (`volume prune --all`); returns their names.
    ///
    /// # Errors
    /// i/o.
    pub fn prune(&self, all: bool) -> Result<Vec<VolumeName>, VolumeError> {
        let _lock = self.lock()?;
        let users = self.users()?;
        let mut removed = Vec::new();
        for rec in self.list()? {
            if (all || rec.anonymous) && !users.contains_key(&rec.name) {
                self.remove_dir(&rec.name)?;
                removed.push(rec.name);
            }
        }
        Ok(removed)
    }

    fn remove_dir(&self, name: &VolumeName) -> Result<(), VolumeError> {
        // Rename first so a half-removed volume never looks like a volume.
        let trash = self.dir.join(format!(
            ".removed-{}-{}",
            name,
            uuid::Uuid::new_v4().simple()
        ));
        fs_err::rename(self.dir.join(name.as_str()), &trash)?;
        fs_err::remove_dir_all(&trash)?;
        Ok(())
    }

    /// The anonymous volumes created for box `owner`.
    ///
    /// # Errors
    /// i/o, malformed records.
    pub fn owned_by(&self, owner: &BoxId) -> Result<Vec<VolumeRecord>, VolumeError> {
        let mut out = self.list()?;
        out.retain(|r| r.anonymous && r.owner.as_deref() == Some(owner.as_str()));
        Ok(out)
    }

    /// Removes the anonymous volumes created for box `owner` that no box mounts any more
    /// (call it after the box is gone); returns their names.
    ///
    /// # Errors
    /// i/o, malformed records.
    pub fn remove_anonymous(&self, owner: &BoxId) -> Result<Vec<VolumeName>, VolumeError> {
        let _lock = self.lock()?;
        let users = self.users()?;
        let mut removed = Vec::new();
        for rec in self.owned_by(owner)? {
            if !users.contains_key(&rec.name) {
                self.remove_dir(&rec.name)?;
                removed.push(rec.name);
            }
        }
        Ok(removed)
    }

    /// Attaches `mounts` to a new box `owner`: creates missing named volumes and a new
    /// anonymous volume for each anonymous mount, and writes the box's `mounts.json` (where
    /// every volume has its name), all under the store lock (so a concurrent `volume rm` or
    /// `volume prune` sees the box). Returns the mounts as written.
    ///
    /// # Errors
    /// i/o.
    pub fn attach(
        &self,
        box_dir: &Path,
        owner: &BoxId,
        mounts: &[MountSpec],
    ) -> Result<Vec<MountSpec>, VolumeError> {
        if mounts.is_empty() {
            return Ok(Vec::new());
        }
        let lock = self.lock()?;
        let mut named = Vec::with_capacity(mounts.len());
        for m in mounts {
            let mut m = m.clone();
            match &m.source {
                MountSource::Volume { name } => {
                    self.ensure(name, &lock)?;
                }
                MountSource::Anonymous => {
                    let name = self.create_anonymous(owner, &lock)?;
                    m.source = MountSource::Volume { name };
                }
                MountSource::Bind { .. } => {}
            }
            named.push(m);
        }
        let json = serde_json::to_vec_pretty(&named).map_err(std::io::Error::other)?;
        a3s_vmm::assets::write_atomic(&box_dir.join(MOUNTS_FILE), &json)?;
        Ok(named)
    }
}
