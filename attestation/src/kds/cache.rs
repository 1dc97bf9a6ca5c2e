//! On-disk cache of KDS documents, laid out like the KDS URL paths.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::kds::{KdsError, KdsResource};

/// Distinguishes temp files of concurrent writers within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory of cached KDS documents (the CLI uses `A3S_HOME/cache/kds`).
///
/// The layout is described in the [module documentation](crate::kds). The cache holds public
/// certificates only, so it needs no secrecy; every write is atomic (temp file in the same
/// directory, write, fsync, rename, fsync the directory), so a reader sees the old file or the
/// complete new one, never a partial one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdsCache {
    root: PathBuf,
}

/// A document read from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// Where it was read from.
    pub path: PathBuf,
    /// The bytes, exactly as the KDS served them.
    pub bytes: Vec<u8>,
    /// When it was written (file modification time), if the filesystem records it.
    pub modified: Option<SystemTime>,
}

impl KdsCache {
    /// A cache rooted at `root`. The directory is created on the first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `resource` is (or would be) cached.
    ///
    /// # Errors
    ///
    /// For a VCEK whose id cannot name a KDS document (masked chip id, FMC SPL mismatch).
    pub fn path_of(&self, resource: &KdsResource) -> Result<PathBuf, KdsError> {
        Ok(self.root.join(resource.cache_path()?))
    }

    /// Reads the cached copy of `resource`, or `None` if there is none.
    ///
    /// The bytes are returned as stored; the caller decides whether they are still usable.
    ///
    /// # Errors
    ///
    /// [`KdsError::CacheIo`] when the file exists but cannot be read, and the errors of
    /// [`KdsCache::path_of`].
    pub fn read(&self, resource: &KdsResource) -> Result<Option<CacheEntry>, KdsError> {
        let path = self.path_of(resource)?;
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io_error("open", &path, source)),
        };
        let modified = file.metadata().and_then(|m| m.modified()).ok();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|source| io_error("read", &path, source))?;
        Ok(Some(CacheEntry {
            path,
            bytes,
            modified,
        }))
    }

    /// Stores `bytes` as the cached copy of `resource`, atomically, and returns its path.
    ///
    /// The caller has already checked the bytes (see `validate::check`).
    pub(crate) fn write(&self, resource: &KdsResource, bytes: &[u8]) -> Result<PathBuf, KdsError> {
        let path = self.path_of(resource)?;
        write_atomic(&path, bytes)?;
        Ok(path)
    }
}

/// Writes `path` so that readers see either the old or the complete new content.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KdsError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io_error(
            "write",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"),
        ));
    };
    fs::create_dir_all(dir).map_err(|source| io_error("create directory", dir, source))?;

    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_new_file(&tmp, bytes).and_then(|()| {
        fs::rename(&tmp, path).map_err(|source| io_error("rename temp file to", path, source))
    });
    if let Err(e) = result {
        // Best effort: the temp name is ours alone, so nobody else needs it.
        if let Err(rm) = fs::remove_file(&tmp) {
            if rm.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %tmp.display(), error = %rm, "cannot remove temp file");
            }
        }
        return Err(e);
    }
    // Make the rename itself durable.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_error("sync directory", dir, source))
}

fn write_new_file(tmp: &Path, bytes: &[u8]) -> Result<(), KdsError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|source| io_error("create temp file", tmp, source))?;
    file.write_all(bytes)
        .map_err(|source| io_error("write", tmp, source))?;
    file.sync_all()
        .map_err(|source| io_error("sync", tmp, source))
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> KdsError {
    KdsError::CacheIo {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kds::VekKind;
    use crate::Product;

    fn chain() -> KdsResource {
        KdsResource::CertChain {
            product: Product::Genoa,
            kind: VekKind::Vcek,
        }
    }

    #[test]
    fn missing_entry_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KdsCache::new(dir.path().join("kds"));
        assert_eq!(cache.read(&chain()).unwrap(), None);
    }

    #[test]
    fn write_then_read_round_trips_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KdsCache::new(dir.path());
        let path = cache.write(&chain(), b"first").unwrap();
        assert_eq!(path, dir.path().join("vcek/v1/Genoa/cert_chain.pem"));
        cache.write(&chain(), b"second").unwrap();
        let entry = cache.read(&chain()).unwrap().unwrap();
        assert_eq!(entry.bytes, b"second");
        assert_eq!(entry.path, path);
        assert!(entry.modified.is_some());
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["cert_chain.pem"]);
    }

    #[test]
    fn write_failure_names_the_path_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KdsCache::new(dir.path());
        // A directory where the file should go makes the rename fail.
        let target = cache.path_of(&chain()).unwrap();
        fs::create_dir_all(target.join("occupied")).unwrap();
        let err = cache.write(&chain(), b"x").unwrap_err();
        assert!(
            matches!(err, KdsError::CacheIo { ref path, .. } if *path == target),
            "{err}"
        );
        assert!(err.to_string().contains("cert_chain.pem"));
        let names: Vec<_> = fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["cert_chain.pem"]);
    }
}
