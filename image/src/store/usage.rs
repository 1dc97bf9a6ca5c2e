//! What the store occupies on disk (counted like `du`), and the unpacked size of each image.
//!
//! Two measures, never mixed:
//! - **disk usage**: allocated bytes (`st_blocks * 512`, what `du -B1` prints) and apparent
//!   bytes (`st_size`, `du -b`) of every file, directory and symlink, each inode once;
//! - **unpacked size** of an image: the bytes of its regular files, as Docker's `SIZE` column
//!   shows it; the same figure for `images` and `system df -v`.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fs_err as fs;
use serde::{Deserialize, Serialize};

use super::{ImageStore, StoreError};
use crate::oci;
use crate::reference::Digest;
use crate::unpack;

/// Suffix of an image's filesystem image (with its dm-verity hash tree appended) in `rootfs/`.
pub const EROFS_SUFFIX: &str = ".erofs";
/// Suffix of the metadata beside a filesystem image.
pub const EROFS_META_SUFFIX: &str = ".erofs.json";

/// Bytes on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Allocated bytes (`st_blocks * 512`): what `du -B1` counts and what removal frees.
    pub allocated: u64,
    /// Apparent bytes (`st_size`): what `du -b` counts; a sparse file's full length.
    pub apparent: u64,
}

impl DiskUsage {
    /// The sum of two usages.
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            allocated: self.allocated + other.allocated,
            apparent: self.apparent + other.apparent,
        }
    }
}

impl std::ops::AddAssign for DiskUsage {
    fn add_assign(&mut self, other: Self) {
        *self = self.plus(other);
    }
}

/// Counts paths like one `du -s` invocation: recursively, without following symlinks, each
/// inode (hard link) once across everything added.
#[derive(Debug, Default)]
pub struct DuCounter {
    seen: HashSet<(u64, u64)>,
    usage: DiskUsage,
}

impl DuCounter {
    /// An empty counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `path` (a file, symlink or whole tree); a missing path adds nothing. Returns what
    /// this call added (inodes already counted add nothing).
    ///
    /// # Errors
    /// I/O other than entries vanishing while they are walked.
    pub fn add(&mut self, path: &Path) -> io::Result<DiskUsage> {
        let before = self.usage;
        let mut stack: Vec<PathBuf> = vec![path.to_owned()];
        while let Some(p) = stack.pop() {
            let meta = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("reading {}: {e}", p.display()),
                    ))
                }
            };
            if meta.nlink() > 1 && !meta.is_dir() && !self.seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            self.usage.allocated += meta.blocks() * 512;
            self.usage.apparent += meta.size();
            if meta.is_dir() {
                match std::fs::read_dir(&p) {
                    Ok(entries) => {
                        for e in entries {
                            match e {
                                Ok(e) => stack.push(e.path()),
                                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("reading {}: {e}", p.display()),
                        ))
                    }
                }
            }
        }
        Ok(DiskUsage {
            allocated: self.usage.allocated - before.allocated,
            apparent: self.usage.apparent - before.apparent,
        })
    }

    /// Everything counted so far.
    pub fn total(&self) -> DiskUsage {
        self.usage
    }
}

/// The disk usage of one path, like `du -s PATH`.
///
/// # Errors
/// I/O.
pub fn disk_usage(path: &Path) -> io::Result<DiskUsage> {
    DuCounter::new().add(path)
}

/// The bytes of the regular files of a tree, each inode once (what an image unpacks to).
///
/// # Errors
/// I/O.
pub fn tree_file_bytes(root: &Path) -> io::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", p.display())))?;
        if meta.is_dir() {
            for e in std::fs::read_dir(&p)
                .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", p.display())))?
            {
                stack.push(e?.path());
            }
        } else if meta.is_file() && (meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino()))) {
            total += meta.size();
        }
    }
    Ok(total)
}

/// The part of `rootfs/<hex>.erofs.json` the accounting reads.
#[derive(Debug, Deserialize)]
struct ErofsMeta {
    unpacked_bytes: u64,
}

/// Where an image's unpacked-size figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeSource {
    /// `unpacked_bytes` of the filesystem image's metadata.
    FilesystemImage,
    /// The unpacked rootfs tree.
    Tree,
    /// The layers' tar headers (the image was never unpacked here).
    Layers,
}

/// One image's place in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageUsage {
    /// Manifest digest.
    pub digest: Digest,
    /// Unpacked size (Docker's `SIZE`).
    pub unpacked_bytes: u64,
    /// Where `unpacked_bytes` came from.
    pub size_source: SizeSource,
    /// Every file of this image on disk: its blobs and everything derived from it.
    pub disk: DiskUsage,
    /// The part of `disk` in blobs that other images of the store also use.
    pub shared: DiskUsage,
}

impl ImageStore {
    /// The entries of `rootfs/` derived from `digest`: the unpacked tree, the filesystem image
    /// and its metadata, and anything else named after the digest (e.g. a temp file of a
    /// build).
    pub(crate) fn derived_paths(&self, digest: &Digest) -> io::Result<Vec<PathBuf>> {
        let dir = self.dir.join("rootfs");
        let hex = digest.hex();
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            if owner_of(&e.file_name().to_string_lossy()).as_deref() == Some(hex) {
                out.push(e.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The unpacked size of an image: `unpacked_bytes` of its filesystem image's metadata,
    /// else the regular files of its unpacked tree, else the regular-file entries of its layers
    /// (read from the blobs; slow for large images, done only when nothing was unpacked yet).
    ///
    /// # Errors
    /// Malformed metadata, missing or unreadable blobs, I/O.
    pub fn unpacked_size(&self, digest: &Digest) -> Result<(u64, SizeSource), StoreError> {
        let rootfs = self.dir.join("rootfs");
        let meta_path = rootfs.join(format!("{}{EROFS_META_SUFFIX}", digest.hex()));
        match fs::read(&meta_path) {
            Ok(bytes) => {
                let meta: ErofsMeta =
                    serde_json::from_slice(&bytes).map_err(|source| StoreError::Malformed {
                        what: meta_path.display().to_string(),
                        source,
                    })?;
                return Ok((meta.unpacked_bytes, SizeSource::FilesystemImage));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let tree = rootfs.join(digest.hex());
        if tree.is_dir() {
            return Ok((tree_file_bytes(&tree)?, SizeSource::Tree));
        }
        let manifest = self.manifest(digest)?;
        let mut total = 0u64;
        for layer in &manifest.layers {
            if !oci::is_layer(&layer.media_type) {
                continue;
            }
            let blob = self.open_blob(&layer.digest)?;
            let bad = |e: io::Error| {
                io::Error::new(
                    e.kind(),
                    format!("reading layer {} of {digest}: {e}", layer.digest),
                )
            };
            let mut archive = tar::Archive::new(unpack::decompress(blob).map_err(bad)?);
            for entry in archive.entries().map_err(bad)? {
                let entry = entry.map_err(bad)?;
                if entry.header().entry_type().is_file() {
                    total += entry.header().size().map_err(bad)?;
                }
            }
        }
        Ok((total, SizeSource::Layers))
    }

    /// Usage of each image in `digests` (manifest digests; missing blobs count as nothing).
    ///
    /// # Errors
    /// I/O, or a damaged image whose size cannot be read.
    pub fn image_usage(&self, digests: &[Digest]) -> Result<Vec<ImageUsage>, StoreError> {
        // Which blobs each image uses, to tell shared ones apart.
        let mut blobs_of: Vec<Vec<Digest>> = Vec::new();
        let mut users: std::collections::HashMap<Digest, usize> = Default::default();
        for d in digests {
            let mut blobs = vec![d.clone()];
            if let Ok(m) = self.manifest(d) {
                blobs.push(m.config.digest.clone());
                blobs.extend(m.layers.into_iter().map(|l| l.digest));
            }
            blobs.sort();
            blobs.dedup();
            for b in &blobs {
                *users.entry(b.clone()).or_default() += 1;
            }
            blobs_of.push(blobs);
        }
        let mut out = Vec::new();
        for (d, blobs) in digests.iter().zip(blobs_of) {
            let mut disk = DuCounter::new();
            let mut shared = DiskUsage::default();
            for b in &blobs {
                let u = disk.add(&self.blob_path(b))?;
                if users.get(b).copied().unwrap_or(0) > 1 {
                    shared += u;
                }
            }
            for p in self.derived_paths(d)? {
                disk.add(&p)?;
            }
            let (unpacked_bytes, size_source) = match self.unpacked_size(d) {
                Ok(s) => s,
                Err(StoreError::MissingBlob { .. }) => (0, SizeSource::Layers),
                Err(e) => return Err(e),
            };
            out.push(ImageUsage {
                digest: d.clone(),
                unpacked_bytes,
                size_source,
                disk: disk.total(),
                shared,
            });
        }
        Ok(out)
    }
}

/// The manifest hex an entry of `rootfs/` belongs to: `<hex>`, `<hex>.<suffix>` or the build
/// lock `.<hex>.lock`.
pub(crate) fn owner_of(name: &str) -> Option<String> {
    let name = name.strip_prefix('.').unwrap_or(name);
    let hex = name.get(..64)?;
    let rest = &name[64..];
    if !(rest.is_empty() || rest.starts_with('.')) {
        return None;
    }
    format!("sha256:{hex}")
        .parse::<Digest>()
        .ok()
        .map(|d| d.hex().to_owned())
}
