//! Crash-safe storage for the simulator's keys: a lock file, directories created atomically,
//! and private files written at mode 0600.
//!
//! A directory of keys is written under a temporary name (`.tmp-<name>-<pid>-<random>`), every
//! file and the directory are synced, then it is renamed into place and the parent is synced. A
//! reader therefore sees either nothing or the complete directory. Temporary directories left by
//! a crash are removed by the next process that takes the lock guarding them. There is one lock
//! per product (`.lock-<product>`), so products of one home are created in parallel.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use rustix::fs::{flock, FlockOperation};
use tracing::debug;

use crate::SimError;

/// Prefix of directories that are still being written.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// Mode of files holding private keys and secrets.
pub(crate) const PRIVATE: u32 = 0o600;
/// Mode of files holding public material (certificates, metadata).
pub(crate) const PUBLIC: u32 = 0o644;

/// An exclusive lock on a lock file, released on drop (when the file is closed).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Creates the lock file `path` (and its directory) if needed and takes an exclusive lock on
    /// it, waiting for other holders.
    pub(crate) fn acquire(path: &Path) -> Result<Self, SimError> {
        if let Some(dir) = path.parent() {
            create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(PUBLIC)
            .open(path)
            .map_err(|source| SimError::io("opening lock file", path, source))?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| SimError::io("locking", path, io::Error::from(e)))?;
        Ok(Self { _file: file })
    }
}

/// Removes every entry of `dir` whose name starts with `prefix` (a `.tmp-` prefix): directories
/// a crashed process left half written. Only call while holding the lock that guards them.
pub(crate) fn remove_temporaries(dir: &Path, prefix: &str) -> Result<(), SimError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SimError::io("listing", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| SimError::io("listing", dir, e))?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let path = entry.path();
            debug!(path = %path.display(), "removing a temporary directory left by a crash");
            std::fs::remove_dir_all(&path).map_err(|e| SimError::io("removing", &path, e))?;
        }
    }
    Ok(())
}

/// Builds directory `parent/name` atomically: `fill` writes into a fresh temporary directory,
/// which is then synced and renamed to `parent/name`. The caller holds the lock guarding
/// `parent/name` and has checked that it does not exist.
pub(crate) fn create_dir_atomically<T>(
    parent: &Path,
    name: &str,
    fill: impl FnOnce(&Path) -> Result<T, SimError>,
) -> Result<T, SimError> {
    create_dir_all(parent)?;
    let tmp = parent.join(format!(
        "{TMP_PREFIX}{name}-{}-{:016x}",
        std::process::id(),
        OsRng.next_u64()
    ));
    std::fs::create_dir(&tmp).map_err(|e| SimError::io("creating", &tmp, e))?;
    let result = fill(&tmp).and_then(|value| {
        sync_dir(&tmp)?;
        let target = parent.join(name);
        std::fs::rename(&tmp, &target).map_err(|e| SimError::io("renaming into", &target, e))?;
        sync_dir(parent)?;
        Ok(value)
    });
    if result.is_err() {
        // Best effort: the next lock holder removes it anyway.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Creates `dir` (and its parents) if it does not exist.
pub(crate) fn create_dir_all(dir: &Path) -> Result<(), SimError> {
    std::fs::create_dir_all(dir).map_err(|e| SimError::io("creating", dir, e))
}

/// Writes a new file with `mode`, and syncs it. Fails if the file exists.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SimError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| SimError::io("creating", path, e))?;
    // The umask may have narrowed the mode; private files must be exactly 0600 either way.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| SimError::io("setting permissions of", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| SimError::io("writing", path, e))
}

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, SimError> {
    std::fs::read(path).map_err(|e| SimError::io("reading", path, e))
}

/// Syncs a directory so that entries created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SimError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SimError::io("syncing", dir, e))
}

/// The simulator's directory inside an A3S home.
pub(crate) fn sim_dir(home: &Path) -> PathBuf {
    home.join("simulator")
}
