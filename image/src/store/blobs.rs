//! Blob I/O: streaming writes verified against their digest, verified reads.

use std::io::{self, Read};
use std::path::PathBuf;

use fs_err as fs;

use super::{fsutil, HashingReader, ImageStore, StoreError, MAX_DOCUMENT_BYTES};
use crate::reference::Digest;

impl ImageStore {
    /// Where a blob lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// True if the blob is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Streams `reader` into the store, hashing as it goes. With `expected`, the content must
    /// hash to it (and have `expected_size` bytes when given), else nothing is stored.
    ///
    /// # Errors
    /// I/O, [`StoreError::DigestMismatch`], [`StoreError::SizeMismatch`].
    pub fn write_blob<R: Read>(
        &self,
        reader: R,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64), StoreError> {
        let blobs = self.dir.join("blobs/sha256");
        let mut tmp = fsutil::temp_in(&blobs)?;
        let mut hashing = HashingReader::new(reader);
        io::copy(&mut hashing, tmp.as_file_mut())?;
        let (digest, size) = hashing.finish()?;
        if let Some(exp) = expected {
            if *exp != digest {
                return Err(StoreError::DigestMismatch {
                    expected: exp.clone(),
                    actual: digest,
                });
            }
        }
        if let Some(exp) = expected_size {
            if exp != size {
                return Err(StoreError::SizeMismatch {
                    digest,
                    expected: exp,
                    actual: size,
                });
            }
        }
        tmp.as_file().sync_all()?;
        let dest = self.blob_path(&digest);
        tmp.persist(&dest).map_err(|e| {
            io::Error::new(
                e.error.kind(),
                format!("renaming blob into {}: {}", dest.display(), e.error),
            )
        })?;
        fsutil::sync_dir(&blobs)?;
        Ok((digest, size))
    }

    /// A writer for a blob whose bytes arrive in pieces (network streams); the digest is
    /// computed as they arrive and checked by [`BlobWriter::commit`].
    ///
    /// # Errors
    /// The temp file cannot be created.
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        let blobs = self.dir.join("blobs/sha256");
        Ok(BlobWriter {
            tmp: fsutil::temp_in(&blobs)?,
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
            len: 0,
            store: self.clone(),
        })
    }

    /// Stores a small in-memory blob.
    ///
    /// # Errors
    /// I/O.
    pub fn write_blob_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let d = Digest::of(bytes);
        if !self.has_blob(&d) {
            self.write_blob(bytes, Some(&d), Some(bytes.len() as u64))?;
        }
        Ok(d)
    }

    /// Reads a small blob (manifest, config) and checks its digest.
    ///
    /// # Errors
    /// [`StoreError::MissingBlob`], [`StoreError::TooLarge`], [`StoreError::DigestMismatch`].
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    digest: digest.clone(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata()?.len();
        if size > MAX_DOCUMENT_BYTES {
            return Err(StoreError::TooLarge {
                what: format!("blob {digest}"),
                size,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(MAX_DOCUMENT_BYTES).read_to_end(&mut bytes)?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Opens a blob for streaming (layers). The caller verifies the content.
    ///
    /// # Errors
    /// [`StoreError::MissingBlob`] or I/O.
    pub fn open_blob(&self, digest: &Digest) -> Result<fs::File, StoreError> {
        match fs::File::open(self.blob_path(digest)) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::MissingBlob {
                digest: digest.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// A blob being written; see [`ImageStore::blob_writer`]. Dropped without `commit`, it leaves
/// nothing behind.
#[derive(Debug)]
pub struct BlobWriter {
    tmp: tempfile::NamedTempFile,
    hasher: sha2::Sha256,
    len: u64,
    store: ImageStore,
}

impl BlobWriter {
    /// Appends bytes.
    ///
    /// # Errors
    /// I/O.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        use std::io::Write as _;
        sha2::Digest::update(&mut self.hasher, bytes);
        self.len += bytes.len() as u64;
        self.tmp.as_file_mut().write_all(bytes)?;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks digest and size, then moves the blob into place.
    ///
    /// # Errors
    /// [`StoreError::DigestMismatch`], [`StoreError::SizeMismatch`], I/O.
    pub fn commit(self, expected: &Digest, expected_size: u64) -> Result<(), StoreError> {
        let actual = Digest::from_sha256(sha2::Digest::finalize(self.hasher).into());
        if actual != *expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        if self.len != expected_size {
            return Err(StoreError::SizeMismatch {
                digest: actual,
                expected: expected_size,
                actual: self.len,
            });
        }
        self.tmp.as_file().sync_all()?;
        let dest = self.store.blob_path(expected);
        self.tmp.persist(&dest).map_err(|e| {
            io::Error::new(
                e.error.kind(),
                format!("renaming blob into {}: {}", dest.display(), e.error),
            )
        })?;
        fsutil::sync_dir(fsutil::parent(&dest))?;
        Ok(())
    }
}
