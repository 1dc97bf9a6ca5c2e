//! The local content-addressed image store under `A3S_HOME/images/`.
//!
//! Layout (version 1, everything below `images/v1/`):
//!
//! | path | content |
//! |---|---|
//! | `blobs/sha256/<hex>` | manifests, configs and layers, named by the SHA-256 of their bytes |
//! | `blobs/sha256/.partial-*` | blobs being written (removed on success or by `prune`) |
//! | `refs.json` | tag or pinned reference → manifest digest, written atomically |
//! | `rootfs/<manifest hex>/` | the unpacked root filesystem of a manifest, built once |
//! | `rootfs/<manifest hex>.erofs` | its filesystem image with the dm-verity hash tree appended |
//! | `rootfs/<manifest hex>.erofs.json` | metadata: root hash, hash offset, sizes, `unpacked_bytes` |
//! | `lock` | store-wide lock for `refs.json` updates and garbage collection |
//! | `rootfs/.<hex>.lock` | per-image lock while its rootfs is being built |
//!
//! Every blob is hashed while it streams in and renamed into place only when the digest (and
//! size, when known) matches, so a blob file's name always equals its content's digest. Small
//! blobs (manifests, configs) are re-verified whenever they are read; layers are verified
//! through their uncompressed digest (`diff_id`) while a rootfs is unpacked. Several processes
//! may pull, import and unpack at once: blob writes are idempotent renames, reference updates and
//! rootfs builds happen under `flock` locks.

mod blobs;
mod commit;
mod fsimage;
mod fsutil;
mod gc;
mod scratch;
mod usage;

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use fs_err as fs;
use serde::{Deserialize, Serialize};

use crate::oci::{self, ConfigFile, Descriptor, History, ImageConfig, Manifest, RootFs, RunConfig};
use crate::reference::{Digest, ImageRef};
use crate::unpack::{self, UnpackError, Unpacker};

pub use blobs::BlobWriter;
pub use commit::Commit;
pub use fsimage::{FsImage, StepTrees, BLOCK_SIZE as FS_BLOCK_SIZE};
pub(crate) use fsutil::{write_atomic, FileLock, HashingReader};
pub use gc::{GcPlan, GcRoots, PruneReport, StoreGuard};
pub use usage::{
    disk_usage, tree_file_bytes, DiskUsage, DuCounter, ImageUsage, SizeSource, EROFS_META_SUFFIX,
    EROFS_SUFFIX,
};

/// Store layout version: the directory below the store root.
pub const LAYOUT_VERSION: &str = "v1";
const REFS_FILE: &str = "refs.json";
/// Upper bound for manifests and configs read into memory.
pub const MAX_DOCUMENT_BYTES: u64 = 4 * 1024 * 1024;
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file-system operation failed (the message names the path).
    #[error("image store I/O")]
    Io(#[from] io::Error),
    /// No local image matches the reference.
    #[error("image {reference} not found in the local store")]
    NotFound {
        /// The reference as given.
        reference: String,
    },
    /// Content did not hash to the digest it was stored or announced under.
    #[error("blob digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// What it should be.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// Content had another length than announced.
    #[error("blob {digest} size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Announced length.
        expected: u64,
        /// Received length.
        actual: u64,
    },
    /// A blob the image needs is missing.
    #[error("blob {digest} is missing from the local store")]
    MissingBlob {
        /// The blob.
        digest: Digest,
    },
    /// A manifest, config or the reference file is not valid JSON of the expected shape.
    #[error("{what} is malformed")]
    Malformed {
        /// Which document.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A document is larger than [`MAX_DOCUMENT_BYTES`].
    #[error("{what} is {size} bytes, more than the {MAX_DOCUMENT_BYTES}-byte limit")]
    TooLarge {
        /// Which document.
        what: String,
        /// Its size.
        size: u64,
    },
    /// The file given to import is not a (plain, gzip or zstd) tar archive.
    #[error("{} is not a tar archive (plain, gzip or zstd)", path.display())]
    NotATarball {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The manifest has a media type or layer type we cannot use as an image.
    #[error("unsupported media type {media_type} in {what}")]
    UnsupportedMediaType {
        /// Where.
        what: String,
        /// The media type.
        media_type: String,
    },
    /// The config's layer list does not match the manifest's.
    #[error("image {digest}: manifest has {layers} layers but config lists {diff_ids} diff_ids")]
    LayerCountMismatch {
        /// Manifest digest.
        digest: Digest,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// A layer's uncompressed content does not match its diff_id.
    #[error("layer {layer} decompresses to {actual}, but the image config says {expected}")]
    DiffIdMismatch {
        /// The layer blob.
        layer: Digest,
        /// The config's diff_id.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// Building the filesystem image a box boots from failed.
    #[error("building the image's root filesystem: {tool}: {message}")]
    FsTool {
        /// `mkfs.erofs` or `veritysetup`.
        tool: String,
        /// What went wrong.
        message: String,
    },
    /// A layer could not be unpacked.
    #[error("unpacking layer {layer}")]
    Unpack {
        /// The layer blob.
        layer: Digest,
        /// Why.
        #[source]
        source: UnpackError,
    },
}

impl StoreError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotFound { reference } => Some(format!(
                "pull it with `a3s-box pull {reference}` or import a rootfs tarball with `a3s-box import`; `a3s-box images` lists local images"
            )),
            Self::DigestMismatch { .. } | Self::DiffIdMismatch { .. } | Self::MissingBlob { .. } => {
                Some("the local copy is damaged or incomplete: remove it with `a3s-box rmi` and pull it again".into())
            }
            Self::FsTool { .. } => Some(
                "install erofs-utils and cryptsetup-bin (`sudo scripts/setup`); they build each image's read-only root filesystem and its dm-verity tree".into(),
            ),
            Self::NotATarball { .. } => {
                Some("pass a rootfs tarball (tar, tar.gz or tar.zst), e.g. made with `tar -C rootfs -czf rootfs.tar.gz .`".into())
            }
            _ => None,
        }
    }
}

/// An image present in the local store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImage {
    /// The reference it was resolved by.
    pub reference: ImageRef,
    /// Digest of its (single-platform) image manifest.
    pub digest: Digest,
    /// Execution defaults from its config.
    pub config: ImageConfig,
}

/// What a reference in `refs.json` points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefRecord {
    /// The single-platform image manifest.
    pub manifest: Digest,
    /// The index or manifest list the manifest was chosen from, if any (the digest a
    /// registry tag pointed at, and the one signatures usually cover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RefsFile {
    version: u32,
    refs: BTreeMap<String, RefRecord>,
}

/// The local image store.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

/// What `import` sets beyond the layer (`--change`, `--message`).
#[derive(Clone, Debug, Default)]
pub struct Import {
    /// The image's execution defaults (`None`: [`Import::default_config`]).
    pub config: Option<RunConfig>,
    /// The history comment (`--message`).
    pub message: Option<String>,
}

impl Import {
    /// An imported image's execution defaults before any `--change`: `PATH` and
    /// `Cmd ["/bin/sh"]`.
    pub fn default_config() -> RunConfig {
        RunConfig {
            env: Some(vec![DEFAULT_PATH.into()]),
            cmd: Some(vec!["/bin/sh".into()]),
            ..RunConfig::default()
        }
    }
}

impl ImageStore {
    /// Opens (creating if needed) the store rooted at `root` (normally `A3S_HOME/images`).
    ///
    /// # Errors
    /// The directories cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = root.into().join(LAYOUT_VERSION);
        fsutil::ensure_dir(&dir.join("blobs/sha256"))?;
        fsutil::ensure_dir(&dir.join("rootfs"))?;
        Ok(Self { dir })
    }

    /// The versioned directory holding everything (`<root>/v1`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads and parses an image manifest blob.
    ///
    /// # Errors
    /// Missing, corrupt or malformed blob, or a manifest that is not an image manifest.
    pub fn manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        let bytes = self.read_blob(digest)?;
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Malformed {
                what: format!("manifest {digest}"),
                source,
            })?;
        if let Some(mt) = &m.media_type {
            if !oci::is_image_manifest(mt) {
                return Err(StoreError::UnsupportedMediaType {
                    what: format!("manifest {digest}"),
                    media_type: mt.clone(),
                });
            }
        }
        Ok(m)
    }

    /// Reads and parses the image config of a manifest.
    ///
    /// # Errors
    /// Missing, corrupt or malformed blob.
    pub fn config_file(&self, manifest: &Manifest) -> Result<ConfigFile, StoreError> {
        let d = &manifest.config.digest;
        let bytes = self.read_blob(d)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Malformed {
            what: format!("image config {d}"),
            source,
        })
    }

    /// Points `reference` at a manifest (replacing what it pointed at).
    ///
    /// # Errors
    /// The manifest is not present or the reference file cannot be written.
    pub fn set_ref(&self, reference: &ImageRef, record: RefRecord) -> Result<(), StoreError> {
        if !self.has_blob(&record.manifest) {
            return Err(StoreError::MissingBlob {
                digest: record.manifest,
            });
        }
        let _lock = self.lock()?;
        let mut refs = self.load_refs()?;
        refs.refs.insert(reference.to_string(), record);
        self.save_refs(&refs)
    }

    /// Removes a reference; returns what it pointed at, or `None` if it did not exist.
    ///
    /// # Errors
    /// The reference file cannot be read or written.
    pub fn remove_ref(&self, reference: &ImageRef) -> Result<Option<RefRecord>, StoreError> {
        let _lock = self.lock()?;
        let mut refs = self.load_refs()?;
        let old = refs.refs.remove(&reference.to_string());
        if old.is_some() {
            self.save_refs(&refs)?;
        }
        Ok(old)
    }

    /// All references, sorted.
    ///
    /// # Errors
    /// The reference file cannot be read.
    pub fn refs(&self) -> Result<Vec<(ImageRef, RefRecord)>, StoreError> {
        let refs = self.load_refs()?;
        let mut out = Vec::new();
        for (k, v) in refs.refs {
            match k.parse::<ImageRef>() {
                Ok(r) => out.push((r, v)),
                Err(e) => {
                    tracing::warn!(reference = %k, error = %e, "skipping bad reference in refs.json")
                }
            }
        }
        Ok(out)
    }

    /// The record a reference resolves to: by tag, or by digest (manifest or index) within the
    /// same repository.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or the reference file cannot be read.
    pub fn lookup(&self, reference: &ImageRef) -> Result<RefRecord, StoreError> {
        let refs = self.load_refs()?;
        let found = match reference.digest() {
            Some(d) => refs
                .refs
                .iter()
                .filter(|(k, _)| {
                    k.parse::<ImageRef>()
                        .is_ok_and(|r| r.name() == reference.name())
                })
                .map(|(_, v)| v)
                .find(|v| v.manifest == *d || v.index.as_ref() == Some(d))
                .map(|v| RefRecord {
                    manifest: v.manifest.clone(),
                    index: v.index.clone(),
                }),
            None => refs.refs.get(&reference.to_string()).cloned(),
        };
        found.ok_or_else(|| StoreError::NotFound {
            reference: reference.familiar(),
        })
    }

    /// The image whose manifest is `manifest`, whether or not a name still points at it (a box
    /// keeps running the digest it was created from, as Docker's containers do after `rmi -f`).
    ///
    /// # Errors
    /// [`StoreError::MissingBlob`] when the manifest is gone, or a damaged manifest or config.
    pub fn resolve_manifest(
        &self,
        reference: &ImageRef,
        manifest: &Digest,
    ) -> Result<LocalImage, StoreError> {
        let m = self.manifest(manifest)?;
        let config = self.config_file(&m)?;
        Ok(LocalImage {
            reference: reference.clone(),
            digest: manifest.clone(),
            config: ImageConfig::from(&config),
        })
    }

    /// Finds a local image by tag or digest.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] (with a hint), or a damaged manifest or config.
    pub fn resolve(&self, reference: &ImageRef) -> Result<LocalImage, StoreError> {
        let record = self.lookup(reference)?;
        let manifest = self.manifest(&record.manifest)?;
        let config = self.config_file(&manifest)?;
        Ok(LocalImage {
            reference: reference.clone(),
            digest: record.manifest,
            config: ImageConfig::from(&config),
        })
    }

    /// Imports a rootfs tarball (plain, gzip or zstd) as a single-layer OCI image with a default
    /// config (`PATH`, `Cmd ["/bin/sh"]`, linux/amd64), tagged `reference`. Importing the same
    /// bytes twice yields the same digest.
    ///
    /// # Errors
    /// [`StoreError::NotATarball`], or I/O.
    pub fn import_rootfs(
        &self,
        tar: &Path,
        reference: &ImageRef,
    ) -> Result<LocalImage, StoreError> {
        self.import_rootfs_with(tar, reference, &Import::default())
    }

    /// [`ImageStore::import_rootfs`] with `import --change` and `--message` applied.
    ///
    /// # Errors
    /// [`StoreError::NotATarball`], or I/O.
    pub fn import_rootfs_with(
        &self,
        tar: &Path,
        reference: &ImageRef,
        import: &Import,
    ) -> Result<LocalImage, StoreError> {
        let _hold = self.hold()?;
        let (layer, layer_size) = self.write_blob(fs::File::open(tar)?, None, None)?;
        let not_tar = |source| StoreError::NotATarball {
            path: tar.to_owned(),
            source,
        };
        let (media_type, diff_id) = {
            let mut head = [0u8; 4];
            let mut f = self.open_blob(&layer)?;
            let n = f.read(&mut head)?;
            let media_type = if head[..n].starts_with(&[0x1f, 0x8b]) {
                oci::OCI_LAYER_GZIP
            } else if head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                oci::OCI_LAYER_ZSTD
            } else {
                oci::OCI_LAYER_TAR
            };
            let diff_id = tar_diff_id(self.open_blob(&layer)?).map_err(not_tar)?;
            (media_type, diff_id)
        };
        let name = tar
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let config = ConfigFile {
            architecture: "amd64".into(),
            os: "linux".into(),
            created: None,
            config: Some(import.config.clone().unwrap_or_else(Import::default_config)),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![diff_id],
            },
            history: vec![History {
                created_by: Some(format!("a3s-box import {name}")),
                comment: import.message.clone(),
                ..History::default()
            }],
        };
        let config_bytes = serde_json::to_vec(&config).expect("config serialises");
        let config_digest = self.write_blob_bytes(&config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor {
                digest: config_digest,
                ..Descriptor::of(oci::OCI_CONFIG, &config_bytes)
            },
            layers: vec![Descriptor {
                media_type: media_type.into(),
                digest: layer,
                size: layer_size,
                platform: None,
                artifact_type: None,
                annotations: BTreeMap::new(),
            }],
            subject: None,
            annotations: BTreeMap::new(),
        };
        let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
        let digest = self.write_blob_bytes(&manifest_bytes)?;
        self.set_ref(
            reference,
            RefRecord {
                manifest: digest.clone(),
                index: None,
            },
        )?;
        Ok(LocalImage {
            reference: reference.clone(),
            digest,
            config: ImageConfig::from(&config),
        })
    }

    /// The unpacked root filesystem of `image`: built once per manifest digest under a lock
    /// (layers applied base first, each checked against its diff_id), reused afterwards.
    ///
    /// # Errors
    /// Missing or corrupt blobs, a layer that does not match its diff_id, or a layer the
    /// unpacker refuses (path traversal, symlink escape, ...). Nothing is left behind on error.
    pub fn rootfs(&self, image: &LocalImage) -> Result<PathBuf, StoreError> {
        let rootfs_dir = self.dir.join("rootfs");
        let dest = rootfs_dir.join(image.digest.hex());
        if dest.is_dir() {
            return Ok(dest);
        }
        let _hold = self.hold()?;
        let _lock = FileLock::exclusive(&rootfs_dir.join(format!(".{}.lock", image.digest.hex())))?;
        if dest.is_dir() {
            return Ok(dest); // another process finished it while we waited
        }
        // Unpacked beside its destination, then renamed into place whole.
        let tree = scratch::on_disk(&rootfs_dir)?;
        self.unpack_to(image, tree.root())?;
        fs::rename(tree.root(), &dest)?;
        fsutil::sync_dir(&rootfs_dir)?;
        Ok(dest)
    }

    /// Applies `image`'s layers, base first, to the existing directory `root`, checking each
    /// against its diff_id.
    fn unpack_to(&self, image: &LocalImage, root: &Path) -> Result<(), StoreError> {
        let mut unpacker = Unpacker::new(root);
        self.apply_layers(image, &mut unpacker, 0)?;
        unpacker.finish().map_err(|source| StoreError::Unpack {
            layer: image.digest.clone(),
            source,
        })
    }

    /// `image`'s layer diff ids, base first (checked against its manifest's layers).
    fn diff_ids(&self, image: &LocalImage) -> Result<(Manifest, Vec<Digest>), StoreError> {
        let manifest = self.manifest(&image.digest)?;
        let config = self.config_file(&manifest)?;
        if manifest.layers.len() != config.rootfs.diff_ids.len() {
            return Err(StoreError::LayerCountMismatch {
                digest: image.digest.clone(),
                layers: manifest.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        Ok((manifest, config.rootfs.diff_ids))
    }

    /// Applies `image`'s layers after its first `from` to `unpacker`, each checked against its
    /// diff id as it streams.
    fn apply_layers(
        &self,
        image: &LocalImage,
        unpacker: &mut Unpacker,
        from: usize,
    ) -> Result<(), StoreError> {
        let (manifest, diff_ids) = self.diff_ids(image)?;
        for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids).skip(from) {
            if !oci::is_layer(&layer.media_type) {
                return Err(StoreError::UnsupportedMediaType {
                    what: format!("layer {}", layer.digest),
                    media_type: layer.media_type.clone(),
                });
            }
            let unpack_err = |source| StoreError::Unpack {
                layer: layer.digest.clone(),
                source,
            };
            let blob = self.open_blob(&layer.digest)?;
            let stream = unpack::decompress(blob).map_err(|e| unpack_err(UnpackError::Read(e)))?;
            let mut hashing = HashingReader::new(stream);
            let stats = unpacker.apply(&mut hashing).map_err(unpack_err)?;
            let (actual, _) = hashing
                .finish()
                .map_err(|e| unpack_err(UnpackError::Read(e)))?;
            if actual != *diff_id {
                return Err(StoreError::DiffIdMismatch {
                    layer: layer.digest.clone(),
                    expected: diff_id.clone(),
                    actual,
                });
            }
            tracing::debug!(layer = %layer.digest, ?stats, "layer applied");
        }
        Ok(())
    }

    /// Where verified signatures of `digest` are kept (the directory is created).
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn signatures_path(&self, digest: &Digest) -> Result<PathBuf, StoreError> {
        let dir = fsutil::ensure_dir(&self.dir.join("signatures"))?;
        Ok(dir.join(format!("{}.json", digest.hex())))
    }

    fn lock(&self) -> Result<FileLock, StoreError> {
        Ok(FileLock::exclusive(&self.dir.join("lock"))?)
    }

    fn load_refs(&self) -> Result<RefsFile, StoreError> {
        let path = self.dir.join(REFS_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Malformed {
                what: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RefsFile {
                version: 1,
                refs: BTreeMap::new(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn save_refs(&self, refs: &RefsFile) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(refs).expect("refs serialise");
        fsutil::write_atomic(&self.dir.join(REFS_FILE), &bytes)?;
        Ok(())
    }
}

/// The diff_id of a (possibly compressed) tar stream, checking that it parses as tar.
fn tar_diff_id<R: Read>(blob: R) -> io::Result<Digest> {
    let mut hashing = HashingReader::new(unpack::decompress(blob)?);
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let mut count = 0usize;
        for entry in archive.entries()? {
            entry?;
            count += 1;
        }
        if count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "archive has no entries",
            ));
        }
    }
    Ok(hashing.finish()?.0)
}

#[cfg(test)]
mod tests;
