//! Garbage collection: blobs, rootfs trees and filesystem images no root reaches.
//!
//! The roots are the references in `refs.json` (unless the caller drops them, as
//! `image prune -a` does for unused images) and the manifests the caller says are in use (the
//! images of existing boxes): their blobs and everything derived from them in `rootfs/`
//! (`<hex>/`, `<hex>.erofs`, `<hex>.erofs.json`) stay. [`ImageStore::gc_plan`] computes what a
//! collection would remove without removing it, so `system df` reports exactly what `prune`
//! frees.

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;

use fs_err as fs;

use super::usage::{owner_of, DiskUsage, DuCounter};
use super::{FileLock, ImageStore, StoreError};
use crate::oci::Index;
use crate::reference::Digest;

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs deleted.
    pub blobs: Vec<Digest>,
    /// Bytes freed by deleted blobs (their apparent size).
    pub blob_bytes: u64,
    /// Images (manifest digests) whose unpacked tree, filesystem image or its metadata was
    /// deleted.
    pub rootfs: Vec<Digest>,
    /// Leftover partial files and directories of interrupted writers.
    pub partials: u64,
    /// Everything deleted, counted like `du`.
    pub freed: DiskUsage,
    /// The digests still reachable (the derived files of these manifests elsewhere must
    /// stay).
    pub kept: BTreeSet<Digest>,
}

/// What garbage collection keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcRoots {
    /// Keep every image a reference in `refs.json` points at.
    pub refs: bool,
    /// Keep these manifests too (images that boxes use), present or not.
    pub manifests: BTreeSet<Digest>,
}

impl GcRoots {
    /// The references plus `in_use`.
    pub fn refs_and(in_use: impl IntoIterator<Item = Digest>) -> Self {
        Self {
            refs: true,
            manifests: in_use.into_iter().collect(),
        }
    }
}

/// What a collection with given roots would delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Blobs to delete.
    pub blobs: Vec<Digest>,
    /// Images whose derived entries in `rootfs/` go.
    pub rootfs: Vec<Digest>,
    /// Every path to delete (blobs, derived entries, partial writes, stale locks and
    /// signatures).
    pub paths: Vec<PathBuf>,
    /// How many of `paths` are leftovers of interrupted writers.
    pub partials: u64,
    /// The digests kept (manifests, indexes, configs, layers).
    pub kept: BTreeSet<Digest>,
    /// What deleting `paths` frees.
    pub bytes: DiskUsage,
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
        self.prune_with(&GcRoots::refs_and([]))
    }

    /// [`ImageStore::prune`] with explicit roots (e.g. the references plus the images boxes
    /// use).
    ///
    /// # Errors
    /// A reachable manifest is damaged (nothing is deleted then), or I/O.
    pub fn prune_with(&self, roots: &GcRoots) -> Result<PruneReport, StoreError> {
        let _gc = FileLock::exclusive(&self.dir.join("gc.lock"))?;
        let _refs = self.lock()?;
        let plan = self.gc_plan(roots)?;
        let mut report = PruneReport {
            partials: plan.partials,
            kept: plan.kept,
            ..PruneReport::default()
        };
        let mut freed = DuCounter::new();
        for d in plan.blobs {
            let path = self.blob_path(&d);
            if let Ok(m) = std::fs::symlink_metadata(&path) {
                report.blob_bytes += m.len();
            }
            freed.add(&path)?;
            remove(&path)?;
            report.blobs.push(d);
        }
        for path in &plan.paths {
            freed.add(path)?;
            remove(path)?;
        }
        report.rootfs = plan.rootfs;
        report.freed = freed.total();
        Ok(report)
    }

    /// What [`ImageStore::prune_with`] would delete now, without deleting (and without the
    /// locks: a concurrent pull may change the answer).
    ///
    /// # Errors
    /// A reachable manifest is damaged, or I/O.
    pub fn gc_plan(&self, roots: &GcRoots) -> Result<GcPlan, StoreError> {
        let mut keep: BTreeSet<Digest> = BTreeSet::new();
        if roots.refs {
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
        }
        // Images in use: keep what is there, even if damaged.
        keep.extend(roots.manifests.iter().cloned());
        // Manifests kept via an index or by use may reference their own configs and layers.
        for d in keep.clone() {
            if let Ok(m) = self.manifest(&d) {
                keep.insert(m.config.digest.clone());
                keep.extend(m.layers.into_iter().map(|l| l.digest));
            }
        }
        let mut plan = GcPlan::default();
        let mut bytes = DuCounter::new();
        let blobs = self.dir.join("blobs/sha256");
        for entry in fs::read_dir(&blobs)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') {
                bytes.add(&path)?;
                plan.paths.push(path);
                plan.partials += 1;
                continue;
            }
            let Ok(d) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            if !keep.contains(&d) {
                bytes.add(&path)?;
                plan.blobs.push(d);
            }
        }
        let rootfs = self.dir.join("rootfs");
        let mut gone: BTreeSet<Digest> = BTreeSet::new();
        for entry in fs::read_dir(&rootfs)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(".tmp-") {
                bytes.add(&path)?;
                plan.paths.push(path);
                plan.partials += 1;
                continue;
            }
            let Some(hex) = owner_of(&name) else {
                continue;
            };
            let Ok(d) = format!("sha256:{hex}").parse::<Digest>() else {
                continue;
            };
            if keep.contains(&d) {
                continue;
            }
            bytes.add(&path)?;
            plan.paths.push(path);
            // A stale build lock is no image of its own.
            if !(name.starts_with('.') && name.ends_with(".lock")) {
                gone.insert(d);
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
                    bytes.add(&entry.path())?;
                    plan.paths.push(entry.path());
                }
            }
        }
        plan.blobs.sort();
        plan.paths.sort();
        plan.rootfs = gone.into_iter().collect();
        plan.kept = keep;
        plan.bytes = bytes.total();
        Ok(plan)
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
