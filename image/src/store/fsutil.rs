//! File-system helpers for the store: locks, atomic writes, hashing readers.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use fs_err as fs;
use sha2::{Digest as _, Sha256};

use crate::reference::Digest;

/// An exclusive advisory lock (`flock`) held until dropped.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: fs::File,
}

impl FileLock {
    /// Blocks until the exclusive lock on `path` (created if missing) is ours.
    pub(crate) fn exclusive(path: &Path) -> io::Result<Self> {
        Self::take(path, rustix::fs::FlockOperation::LockExclusive)
    }

    /// Blocks until a shared lock on `path` (created if missing) is ours.
    pub(crate) fn shared(path: &Path) -> io::Result<Self> {
        Self::take(path, rustix::fs::FlockOperation::LockShared)
    }

    fn take(path: &Path, op: rustix::fs::FlockOperation) -> io::Result<Self> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        rustix::fs::flock(file.file(), op).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("locking {}: {e}", path.display()),
            )
        })?;
        Ok(Self { _file: file })
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename, fsync
/// of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating temp file in {}: {e}", dir.display()),
            )
        })?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| {
        io::Error::new(
            e.error.kind(),
            format!("renaming into {}: {}", path.display(), e.error),
        )
    })?;
    sync_dir(dir)
}

/// Reads at most `limit` bytes of `path`.
pub(crate) fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// fsyncs a directory so that a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

pub(crate) fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or_else(|| Path::new("."))
}

/// A reader that hashes everything read through it.
#[derive(Debug)]
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads the rest of the stream, then returns its digest and total length.
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            Digest::from_sha256(self.hasher.finalize().into()),
            self.count,
        ))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// The temp directory for partial blobs, beside the blobs so that rename is atomic.
pub(crate) fn temp_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating temp file in {}: {e}", dir.display()),
            )
        })
}

/// Makes `path` a directory (and its parents).
pub(crate) fn ensure_dir(path: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(path)?;
    Ok(path.to_owned())
}
