//! Garbage collection: blobs and rootfs trees no reference reaches.

use std::collections::HashSet;
use std::io;

use fs_err as fs;

use super::{FileLock, ImageStore, StoreError};
use crate::oci::Index;
use crate::reference::Digest;

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs deleted.
    pub blobs: Vec<Digest>,
    /// Bytes freed by deleted blobs.
    pub blob_bytes: u64,
    /// Unpacked rootfs trees deleted (by manifest digest).
    pub rootfs: Vec<Digest>,
    /// Leftover partial files and directories of interrupted writers.
    pub partials: u64,
}

/// A shared hold on the store that keeps `prune` out while blobs are written but not yet
/// referenced (a pull in progress) or a rootfs is being built.
#[derive(Debug)]
pub struct StoreGuard {
    _lock: FileLock,
}

impl ImageStore {
    /// Takes a shared hold that `prune` waits for.
    ///
    /// # Errors
    /// The lock file cannot be opened.
    pub fn hold(&self) -> Result<StoreGuard, StoreError> {
        Ok(StoreGuard {
            _lock: FileLock::shared(&self.dir.join("gc.lock"))?,
        })
    }

    /// Deletes every blob and rootfs that no reference reaches, and leftovers of interrupted
    /// writes. Waits for running pulls, imports and rootfs builds to finish.
    ///
    /// # Errors
    /// A reachable manifest is damaged (nothing is deleted then), or I/O.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        let _gc = FileLock::exclusive(&self.dir.join("gc.lock"))?;
        let _refs = self.lock()?;
        let mut keep: HashSet<Digest> = HashSet::new();
        for (_, record) in self.refs()? {
            if let Some(index) = &record.index {
                keep.insert(index.clone());
                // Keep the other platforms' manifests listed by the index blob if present.
                if let Ok(bytes) = self.read_blob(index) {
                    if let Ok(idx) = serde_json::from_slice::<Index>(&bytes) {
                        keep.extend(
                            idx.manifests
                                .into_iter()
                                .filter(|d| self.has_blob(&d.digest))
                                .map(|d| d.digest),
                        );
                    }
                }
            }
            let m = self.manifest(&record.manifest)?;
            keep.insert(record.manifest.clone());
            keep.insert(m.config.digest.clone());
            keep.extend(m.layers.iter().map(|l| l.digest.clone()));
        }
        // Manifests kept via an index may reference their own configs and layers.
        for d in keep.clone() {
            if let Ok(m) = self.manifest(&d) {
                keep.insert(m.config.digest.clone());
                keep.extend(m.layers.into_iter().map(|l| l.digest));
            }
        }
        let mut report = PruneReport::default();
        let blobs = self.dir.join("blobs/sha256");
        for entry in fs::read_dir(&blobs)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') {
                remove(&path)?;
                report.partials += 1;
                continue;
            }
            let Ok(d) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            if !keep.contains(&d) {
                report.blob_bytes += entry.metadata()?.len();
                fs::remove_file(&path)?;
                report.blobs.push(d);
            }
        }
        let rootfs = self.dir.join("rootfs");
        for entry in fs::read_dir(&rootfs)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(".tmp-") {
                remove(&path)?;
                report.partials += 1;
                continue;
            }
            if let Some(hex) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".lock")) {
                if format!("sha256:{hex}")
                    .parse::<Digest>()
                    .is_ok_and(|d| !keep.contains(&d))
                {
                    fs::remove_file(&path)?;
                }
                continue;
            }
            let Ok(d) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            if !keep.contains(&d) {
                remove(&path)?;
                report.rootfs.push(d);
            }
        }
        // Signatures saved at pull time, for digests nothing refers to any more.
        let sigs = self.dir.join("signatures");
        if sigs.is_dir() {
            for entry in fs::read_dir(&sigs)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let keep_it = name
                    .strip_suffix(".json")
                    .and_then(|h| format!("sha256:{h}").parse::<Digest>().ok())
                    .is_some_and(|d| keep.contains(&d));
                if !keep_it {
                    remove(&entry.path())?;
                }
            }
        }
        report.blobs.sort();
        report.rootfs.sort();
        Ok(report)
    }
}

fn remove(path: &std::path::Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
