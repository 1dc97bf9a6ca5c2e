//! Disk accounting of a whole A3S home (`system df`) and removal of what nothing uses
//! (`system prune`, `container prune`, and the cache part of `rmi` / `image prune`).
//!
//! Every figure is counted like `du`: allocated bytes (`st_blocks * 512`, so a box's sparse
//! `rw.img` counts what it holds, not its length) and apparent bytes, each inode once. The
//! four kinds, each the whole of one directory of the home:
//!
//! | kind | directory | active | reclaimable |
//! |---|---|---|---|
//! | images | `images/` | used by a box | everything no box uses (what `prune -a` frees) |
//! | containers | `boxes/` | running | stopped boxes, leftovers of interrupted removals |
//! | volumes | `volumes/` | mounted by a box | volumes no box mounts |
//! | cache | `cache/` | the rest | legacy per-image entries, stale temp files |
//!
//! Legacy cache entries are what older versions built per image and nothing reads any more:
//! `cache/rootfs/<image hex>.cpio` and `cache/initrd/<key>-<image hex>.img`. Entries of an
//! image a running box was booted from are left alone until the box stops.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use a3s_image::store::{disk_usage, DiskUsage, DuCounter, GcRoots, PruneReport};
use a3s_image::{Digest, ImageRef, ImageStore, StoreError};
use serde::Serialize;

use crate::boxes::{BoxError, BoxRecord, Boxes};
use crate::home::A3sHome;
use crate::volumes::{VolumeError, VolumeName, Volumes};

/// The per-box writable disk (a sparse file) in a box directory.
pub const RW_IMAGE: &str = "rw.img";
/// Temp files younger than this are left alone even when their writer cannot be identified.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Accounting or pruning failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskError {
    /// The image store.
    #[error(transparent)]
    Image(#[from] StoreError),
    /// Boxes.
    #[error(transparent)]
    Box(#[from] BoxError),
    /// Volumes.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// Pod containers.
    #[error(transparent)]
    Pod(#[from] crate::pods::PodError),
    /// `rmi` of the last name of an image a box or a pod container uses.
    #[error("image {image} is in use by {}", users.describe())]
    ImageInUse {
        /// The reference given.
        image: String,
        /// Who uses it.
        users: ImageUsers,
    },
    /// i/o (the message names the path).
    #[error("i/o failed")]
    Io(#[from] std::io::Error),
}

impl DiskError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::ImageInUse { users, .. } => {
                let mut first = Vec::new();
                if !users.boxes.is_empty() {
                    first.push(format!("`a3s-box rm {}`", users.boxes.join(" ")));
                }
                if !users.containers.is_empty() {
                    first.push(format!("`crictl rm {}`", users.containers.join(" ")));
                }
                Some(format!(
                    "remove them first ({}), or untag anyway with `rmi -f` (the image stays until nothing uses it)",
                    first.join(", ")
                ))
            }
            Self::Image(e) => e.hint(),
            Self::Box(e) => e.hint(),
            Self::Volume(e) => e.hint(),
            _ => None,
        }
    }
}

/// One row of the summary table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Category {
    /// How many there are.
    pub total: usize,
    /// How many are in use.
    pub active: usize,
    /// Everything of this kind on disk.
    pub size: DiskUsage,
    /// What removing the unused ones would free.
    pub reclaimable: DiskUsage,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRow {
    /// Manifest digest.
    pub digest: String,
    /// Names pointing at it (none: dangling, or kept only because a box uses it).
    pub references: Vec<String>,
    /// Unpacked size (what `images` shows).
    pub unpacked_bytes: u64,
    /// Its blobs and derived files on disk.
    pub disk: DiskUsage,
    /// The part of `disk` other images share.
    pub shared: DiskUsage,
    /// Boxes that use it.
    pub boxes: usize,
}

/// A box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoxRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Image as given.
    pub image: String,
    /// `created`, `running`, ...
    pub state: String,
    /// Its writable layer (`rw.img`).
    pub writable: DiskUsage,
    /// Its whole directory (writable layer, logs, state).
    pub size: DiskUsage,
}

/// A volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeRow {
    /// Name.
    pub name: String,
    /// Boxes that mount it.
    pub boxes: usize,
    /// Its directory.
    pub size: DiskUsage,
}

/// An entry of `cache/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheRow {
    /// Path relative to the home.
    pub path: String,
    /// `kernels`, `initrd`, `kds`, `layers`, `legacy-rootfs`, `legacy-initrd`, `tmp`, ...
    pub kind: String,
    /// Its size.
    pub size: DiskUsage,
    /// Whether `system prune` removes it.
    pub reclaimable: bool,
}

/// `system df`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiskReport {
    /// Images.
    pub images: Category,
    /// Boxes (writable layers and box directories).
    pub containers: Category,
    /// Named volumes.
    pub volumes: Category,
    /// Caches (kernels, initrds, KDS, layer templates, legacy entries).
    pub cache: Category,
    /// Per image.
    pub image_rows: Vec<ImageRow>,
    /// Per box.
    pub box_rows: Vec<BoxRow>,
    /// Per volume.
    pub volume_rows: Vec<VolumeRow>,
    /// Per cache entry.
    pub cache_rows: Vec<CacheRow>,
}

fn store(home: &A3sHome) -> Result<ImageStore, DiskError> {
    Ok(ImageStore::open(home.root().join("images"))?)
}

/// The image each box uses (any state), by manifest digest, with the boxes' names.
///
/// # Errors
/// i/o on the boxes directory.
pub fn images_in_use(home: &A3sHome) -> Result<BTreeMap<Digest, ImageUsers>, DiskError> {
    let mut out: BTreeMap<Digest, ImageUsers> = images_used_by(&Boxes::open(home).list()?)?
        .into_iter()
        .map(|(d, boxes)| {
            (
                d,
                ImageUsers {
                    boxes,
                    containers: Vec::new(),
                },
            )
        })
        .collect();
    // A pod container runs on its image's filesystem (loop-mounted on the host).
    for c in crate::pod_containers::Containers::open(home).list()? {
        match c.image_id.parse::<Digest>() {
            Ok(d) => out
                .entry(d)
                .or_default()
                .containers
                .push(c.id.chars().take(12).collect()),
            Err(e) => {
                tracing::warn!(container = %c.id, error = %e, "pod container records no valid image digest")
            }
        }
    }
    Ok(out)
}

/// Who uses an image: boxes by name, pod containers by (short) id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageUsers {
    /// Boxes' names.
    pub boxes: Vec<String>,
    /// Pod containers' short ids.
    pub containers: Vec<String>,
}

impl ImageUsers {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.boxes.is_empty() {
            parts.push(format!("box(es) {}", self.boxes.join(", ")));
        }
        if !self.containers.is_empty() {
            parts.push(format!("pod container(s) {}", self.containers.join(", ")));
        }
        parts.join(" and ")
    }
}

fn images_used_by(boxes: &[BoxRecord]) -> Result<BTreeMap<Digest, Vec<String>>, DiskError> {
    let mut out: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for b in boxes {
        match b.image_digest.parse::<Digest>() {
            Ok(d) => out.entry(d).or_default().push(b.name.clone()),
            Err(e) => {
                tracing::warn!(box_id = %b.id.as_str(), error = %e, "box records no valid image digest")
            }
        }
    }
    Ok(out)
}

/// Accounts for the whole home.
///
/// # Errors
/// i/o, or a damaged image store (a reference to a missing manifest).
pub fn df(home: &A3sHome) -> Result<DiskReport, DiskError> {
    let boxes = Boxes::open(home).list()?;
    let in_use = images_used_by(&boxes)?;
    let active_images: BTreeSet<String> = boxes
        .iter()
        .filter(|b| b.state.is_active())
        .filter_map(|b| b.image_digest.parse::<Digest>().ok())
        .map(|d| d.hex().to_owned())
        .collect();
    let mut r = DiskReport::default();

    // Images: every manifest a name points at, or that something is derived from, or a box uses.
    let store = store(home)?;
    let mut names: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for (reference, rec) in store.refs()? {
        names
            .entry(rec.manifest)
            .or_default()
            .push(reference.familiar());
    }
    let mut digests: BTreeSet<Digest> = names.keys().cloned().collect();
    digests.extend(in_use.keys().filter(|d| store.has_blob(d)).cloned());
    for e in fs_err::read_dir(store.dir().join("rootfs"))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(d) = name
            .get(..64)
            .and_then(|h| format!("sha256:{h}").parse::<Digest>().ok())
        {
            digests.insert(d);
        }
    }
    let digests: Vec<Digest> = digests.into_iter().collect();
    for u in store.image_usage(&digests)? {
        let users = in_use.get(&u.digest).map_or(0, Vec::len);
        r.image_rows.push(ImageRow {
            digest: u.digest.to_string(),
            references: names.remove(&u.digest).unwrap_or_default(),
            unpacked_bytes: u.unpacked_bytes,
            disk: u.disk,
            shared: u.shared,
            boxes: users,
        });
    }
    r.images = Category {
        total: r.image_rows.len(),
        active: r.image_rows.iter().filter(|i| i.boxes > 0).count(),
        size: disk_usage(&home.root().join("images"))?,
        reclaimable: store
            .gc_plan(&GcRoots {
                refs: false,
                manifests: in_use.keys().cloned().collect(),
            })?
            .bytes,
    };

    // Boxes.
    let boxes_dir = home.root().join("boxes");
    let mut reclaim = DuCounter::new();
    let b = Boxes::open(home);
    for rec in &boxes {
        let dir = b.box_dir(&rec.id);
        let size = disk_usage(&dir)?;
        if !rec.state.is_active() {
            reclaim.add(&dir)?;
        }
        r.box_rows.push(BoxRow {
            id: rec.id.to_string(),
            name: rec.name.clone(),
            image: rec.image.clone(),
            state: rec.state.name().to_owned(),
            writable: disk_usage(&dir.join(RW_IMAGE))?,
            size,
        });
    }
    for p in leftovers(&boxes_dir)? {
        reclaim.add(&p)?;
    }
    r.containers = Category {
        total: boxes.len(),
        active: boxes.iter().filter(|b| b.state.is_active()).count(),
        size: disk_usage(&boxes_dir)?,
        reclaimable: reclaim.total(),
    };

    // Volumes.
    let volumes = Volumes::open(home);
    let users = volumes.users()?;
    let volumes_dir = home.root().join("volumes");
    let mut reclaim = DuCounter::new();
    for v in volumes.list()? {
        let dir = volumes_dir.join(v.name.as_str());
        let n = users.get(&v.name).map_or(0, Vec::len);
        if n == 0 {
            reclaim.add(&dir)?;
        }
        r.volume_rows.push(VolumeRow {
            name: v.name.to_string(),
            boxes: n,
            size: disk_usage(&dir)?,
        });
    }
    for p in leftovers(&volumes_dir)? {
        reclaim.add(&p)?;
    }
    r.volumes = Category {
        total: r.volume_rows.len(),
        active: r.volume_rows.iter().filter(|v| v.boxes > 0).count(),
        size: disk_usage(&volumes_dir)?,
        reclaimable: reclaim.total(),
    };

    // Caches.
    let mut reclaim = DuCounter::new();
    for entry in cache_entries(home, &active_images)? {
        let size = disk_usage(&entry.path)?;
        if entry.reclaimable {
            reclaim.add(&entry.path)?;
        }
        r.cache_rows.push(CacheRow {
            path: entry
                .path
                .strip_prefix(home.root())
                .unwrap_or(&entry.path)
                .display()
                .to_string(),
            kind: entry.kind,
            size,
            reclaimable: entry.reclaimable,
        });
    }
    r.cache = Category {
        total: r.cache_rows.len(),
        active: r.cache_rows.iter().filter(|c| !c.reclaimable).count(),
        size: disk_usage(&home.root().join("cache"))?,
        reclaimable: reclaim.total(),
    };
    Ok(r)
}

/// `.removed-*` and `.tmp-*` directories of interrupted removals and creations in `dir`.
fn leftovers(dir: &Path) -> Result<Vec<PathBuf>, DiskError> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.starts_with(".removed-") || name.starts_with(".tmp-")) && is_stale(&e.path()) {
            out.push(e.path());
        }
    }
    Ok(out)
}

/// A temp entry nothing is still writing: its writer's pid (`.NAME.tmp-PID`) is gone, or it
/// is older than an hour.
fn is_stale(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid = name
        .rsplit_once(".tmp-")
        .or_else(|| {
            name.strip_suffix(".tar")
                .and_then(|n| n.rsplit_once("rootfs-"))
        })
        .and_then(|(_, p)| p.parse::<u32>().ok());
    if let Some(pid) = pid {
        if !crate::state::alive(pid) {
            return true;
        }
    }
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_AFTER)
}

struct CacheEntry {
    path: PathBuf,
    kind: String,
    reclaimable: bool,
    /// The image a legacy entry was built for.
    image_hex: Option<String>,
}

/// The entries of `cache/`: each entry of each subdirectory, with its kind.
fn cache_entries(
    home: &A3sHome,
    active_images: &BTreeSet<String>,
) -> Result<Vec<CacheEntry>, DiskError> {
    let cache = home.root().join("cache");
    let mut out = Vec::new();
    let Ok(kinds) = fs_err::read_dir(&cache) else {
        return Ok(out);
    };
    for k in kinds {
        let k = k?;
        let kind = k.file_name().to_string_lossy().into_owned();
        if !k.file_type()?.is_dir() {
            out.push(CacheEntry {
                reclaimable: kind.contains(".tmp-") && is_stale(&k.path()),
                path: k.path(),
                kind: "other".into(),
                image_hex: None,
            });
            continue;
        }
        for e in fs_err::read_dir(k.path())? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let legacy = match kind.as_str() {
                "rootfs" => name.strip_suffix(".cpio").filter(|h| is_hex64(h)),
                "initrd" => name
                    .strip_suffix(".img")
                    .and_then(|n| n.rsplit_once('-'))
                    .map(|(_, h)| h)
                    .filter(|h| is_hex64(h)),
                _ => None,
            };
            let entry = if let Some(hex) = legacy {
                CacheEntry {
                    reclaimable: !active_images.contains(hex),
                    kind: format!("legacy-{kind}"),
                    image_hex: Some(hex.to_owned()),
                    path,
                }
            } else if name.contains(".tmp-")
                || (kind == "busybox" && name.starts_with("rootfs-") && name.ends_with(".tar"))
            {
                CacheEntry {
                    reclaimable: is_stale(&path),
                    kind: "tmp".into(),
                    image_hex: None,
                    path,
                }
            } else {
                CacheEntry {
                    reclaimable: false,
                    kind: kind.clone(),
                    image_hex: None,
                    path,
                }
            };
            out.push(entry);
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a cache prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CachePrune {
    /// Paths removed, relative to the home.
    pub removed: Vec<String>,
    /// What it freed.
    pub freed: DiskUsage,
}

fn remove_entries(
    home: &A3sHome,
    entries: impl IntoIterator<Item = PathBuf>,
) -> Result<CachePrune, DiskError> {
    let mut out = CachePrune::default();
    let mut freed = DuCounter::new();
    for path in entries {
        freed.add(&path)?;
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs_err::remove_dir_all(&path)?,
            Ok(_) => fs_err::remove_file(&path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        }
        out.removed.push(
            path.strip_prefix(home.root())
                .unwrap_or(&path)
                .display()
                .to_string(),
        );
    }
    out.freed = freed.total();
    Ok(out)
}

/// Removes every reclaimable cache entry (legacy per-image entries not booted by a running
/// box, stale temp files) and leftovers of interrupted box and volume removals.
///
/// # Errors
/// i/o.
pub fn prune_caches(home: &A3sHome) -> Result<CachePrune, DiskError> {
    let active: BTreeSet<String> = Boxes::open(home)
        .list()?
        .iter()
        .filter(|b| b.state.is_active())
        .filter_map(|b| b.image_digest.parse::<Digest>().ok())
        .map(|d| d.hex().to_owned())
        .collect();
    let mut paths: Vec<PathBuf> = cache_entries(home, &active)?
        .into_iter()
        .filter(|e| e.reclaimable)
        .map(|e| e.path)
        .collect();
    paths.extend(leftovers(&home.root().join("boxes"))?);
    paths.extend(leftovers(&home.root().join("volumes"))?);
    remove_entries(home, paths)
}

/// What an image prune removed.
#[derive(Debug, Clone, Default)]
pub struct ImagePrune {
    /// Names removed (`prune -a`: images no box uses).
    pub untagged: Vec<ImageRef>,
    /// What the store's garbage collection removed.
    pub store: PruneReport,
    /// Legacy cache entries of the removed images.
    pub cache: CachePrune,
}

impl ImagePrune {
    /// Everything freed.
    pub fn freed(&self) -> DiskUsage {
        self.store.freed.plus(self.cache.freed)
    }
}

/// Removes the names of images no box or pod container uses (with `all`), then every blob,
/// unpacked tree and filesystem image no name, box or pod container reaches, and the legacy
/// cache entries of images no longer in the store. Images in use are never removed.
///
/// # Errors
/// i/o, or a damaged store (nothing is removed then).
pub fn prune_images(home: &A3sHome, all: bool) -> Result<ImagePrune, DiskError> {
    let store = store(home)?;
    let in_use = images_in_use(home)?;
    let mut out = ImagePrune::default();
    if all {
        for (reference, rec) in store.refs()? {
            if !in_use.contains_key(&rec.manifest) && store.remove_ref(&reference)?.is_some() {
                out.untagged.push(reference);
            }
        }
    }
    out.store = store.prune_with(&GcRoots::refs_and(in_use.keys().cloned()))?;
    let kept: BTreeSet<String> = out.store.kept.iter().map(|d| d.hex().to_owned()).collect();
    let legacy = cache_entries(home, &BTreeSet::new())?
        .into_iter()
        .filter(|e| e.image_hex.as_ref().is_some_and(|h| !kept.contains(h)))
        .map(|e| e.path);
    out.cache = remove_entries(home, legacy)?;
    Ok(out)
}

/// Refuses to remove `reference` when it is the last name of an image a box or a pod
/// container uses (Docker's `rmi` conflict; CRI-O refuses the same for containers); `Ok` otherwise, also for names that do not exist.
///
/// # Errors
/// [`DiskError::ImageInUse`], or the store cannot be read.
pub fn check_untag(home: &A3sHome, reference: &ImageRef) -> Result<(), DiskError> {
    let store = store(home)?;
    let record = match store.lookup(reference) {
        Ok(r) => r,
        Err(StoreError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let in_use = images_in_use(home)?;
    let Some(users) = in_use.get(&record.manifest) else {
        return Ok(());
    };
    // A digest reference removes every name of the image; a tag only itself.
    let other_names = store
        .refs()?
        .into_iter()
        .filter(|(r, rec)| {
            rec.manifest == record.manifest
                && match reference.digest() {
                    Some(_) => r.name() != reference.name(),
                    None => r != reference,
                }
        })
        .count();
    if other_names == 0 {
        return Err(DiskError::ImageInUse {
            image: reference.familiar(),
            users: users.clone(),
        });
    }
    Ok(())
}

/// The allocated size of a box's directory (what removing it frees).
///
/// # Errors
/// i/o.
pub fn box_usage(home: &A3sHome, rec: &BoxRecord) -> Result<DiskUsage, DiskError> {
    Ok(disk_usage(&Boxes::open(home).box_dir(&rec.id))?)
}

/// Removes every anonymous volume no box mounts (as `volume prune`); returns each with its size.
///
/// # Errors
/// i/o.
pub fn prune_volumes(home: &A3sHome) -> Result<Vec<(VolumeName, DiskUsage)>, DiskError> {
    let volumes = Volumes::open(home);
    let dir = home.root().join("volumes");
    let mut sizes = BTreeMap::new();
    for v in volumes.list()? {
        sizes.insert(v.name.clone(), disk_usage(&dir.join(v.name.as_str()))?);
    }
    // Anonymous volumes only, as Docker 23+ `system prune --volumes`: a named volume is
    // data someone chose to keep; `volume prune -a` removes those.
    Ok(volumes
        .prune(false)?
        .into_iter()
        .map(|n| {
            let size = sizes.get(&n).copied().unwrap_or_default();
            (n, size)
        })
        .collect())
}

#[cfg(test)]
mod tests;
