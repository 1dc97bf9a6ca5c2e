//! `save` and `load`: image tarballs in OCI image layout or Docker's `docker save` format.
//!
//! - **OCI layout** (`oci-layout`, `index.json`, `blobs/sha256/<hex>`): blobs exactly as stored,
//!   so digests survive the round trip; each index entry carries
//!   `org.opencontainers.image.ref.name` (the tag) and `io.containerd.image.name` (the full
//!   reference), which is what `docker load`, `skopeo` and containerd read.
//! - **docker-archive** (`manifest.json` with `Config`, `RepoTags`, `Layers`): layers are
//!   written uncompressed as `<diff_id hex>/layer.tar`, as `docker save` did before OCI.
//!
//! Loading extracts the tarball with the same unpacker as layers (no path escapes), then
//! imports every blob through the store's digest check.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use fs_err as fs;

use crate::oci::{self, ConfigFile, Descriptor, Index, Manifest};
use crate::reference::{Digest, ImageRef};
use crate::store::{ImageStore, LocalImage, RefRecord, StoreError, MAX_DOCUMENT_BYTES};
use crate::unpack;

/// Tarball formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiveFormat {
    /// OCI image layout.
    Oci,
    /// `docker save` format.
    DockerArchive,
}

/// Why save or load failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Store failure (missing image, corrupt blob, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing the tarball failed.
    #[error("image archive I/O")]
    Io(#[from] io::Error),
    /// The tarball could not be extracted safely.
    #[error("extracting image archive")]
    Extract(#[from] unpack::UnpackError),
    /// Neither `index.json` nor `manifest.json` is present.
    #[error("not an image archive: no index.json (OCI layout) or manifest.json (docker-archive)")]
    UnknownFormat,
    /// A document in the archive is malformed.
    #[error("{what} in the archive is malformed")]
    Malformed {
        /// Which document.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON document in the archive exceeds [`MAX_DOCUMENT_BYTES`].
    #[error(
        "{0} in the archive exceeds {MAX_DOCUMENT_BYTES} bytes, the limit for an image document"
    )]
    TooLarge(String),
    /// A path in `manifest.json` is missing or unsafe.
    #[error("archive's manifest.json names {0:?}, which is not a file in the archive")]
    MissingFile(String),
    /// A docker-archive layer does not match the config's diff_id.
    #[error("layer {path} hashes to {actual}, but the config lists {expected}")]
    DiffId {
        /// Layer path.
        path: String,
        /// From the config.
        expected: Digest,
        /// Actual.
        actual: Digest,
    },
}

impl ArchiveError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Store(e) => e.hint(),
            Self::UnknownFormat => Some("pass a tarball made by `a3s-box save`, `docker save` or `skopeo copy ... oci-archive:`".into()),
            _ => None,
        }
    }
}

/// Writes `images` into a tarball.
///
/// # Errors
/// See [`ArchiveError`].
pub fn save<W: Write>(
    store: &ImageStore,
    images: &[ImageRef],
    format: ArchiveFormat,
    out: W,
) -> Result<(), ArchiveError> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    let resolved: Vec<LocalImage> = images
        .iter()
        .map(|r| store.resolve(r))
        .collect::<Result<_, _>>()?;
    match format {
        ArchiveFormat::Oci => save_oci(store, &resolved, &mut tar)?,
        ArchiveFormat::DockerArchive => save_docker(store, &resolved, &mut tar)?,
    }
    tar.into_inner()?.flush()?;
    Ok(())
}

fn add_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, path, bytes)
}

fn add_file<W: Write>(tar: &mut tar::Builder<W>, path: &str, file: &Path) -> io::Result<()> {
    let mut f = fs::File::open(file)?;
    let len = f.metadata()?.len();
    let mut h = tar::Header::new_ustar();
    h.set_size(len);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, path, &mut f)
}

fn save_oci<W: Write>(
    store: &ImageStore,
    images: &[LocalImage],
    tar: &mut tar::Builder<W>,
) -> Result<(), ArchiveError> {
    add_bytes(tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut written = std::collections::HashSet::new();
    let mut entries = Vec::new();
    for img in images {
        let m = store.manifest(&img.digest)?;
        let manifest_bytes = store.read_blob(&img.digest)?;
        for d in m.layers.iter().chain([&m.config]) {
            if written.insert(d.digest.clone()) {
                add_file(
                    tar,
                    &format!("blobs/sha256/{}", d.digest.hex()),
                    &store.blob_path(&d.digest),
                )?;
            }
        }
        if written.insert(img.digest.clone()) {
            add_bytes(
                tar,
                &format!("blobs/sha256/{}", img.digest.hex()),
                &manifest_bytes,
            )?;
        }
        let mut desc = Descriptor::of(
            m.media_type.as_deref().unwrap_or(oci::OCI_MANIFEST),
            &manifest_bytes,
        );
        if let Some(tag) = img.reference.tag() {
            desc.annotations
                .insert("org.opencontainers.image.ref.name".into(), tag.into());
        }
        desc.annotations
            .insert("io.containerd.image.name".into(), img.reference.to_string());
        entries.push(desc);
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.into()),
        manifests: entries,
        annotations: BTreeMap::new(),
    };
    add_bytes(
        tar,
        "index.json",
        &serde_json::to_vec(&index).expect("index serialises"),
    )?;
    Ok(())
}

fn save_docker<W: Write>(
    store: &ImageStore,
    images: &[LocalImage],
    tar: &mut tar::Builder<W>,
) -> Result<(), ArchiveError> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        repo_tags: Vec<String>,
        layers: Vec<String>,
    }
    let mut out = Vec::new();
    let mut written = std::collections::HashSet::new();
    for img in images {
        let m = store.manifest(&img.digest)?;
        let config_bytes = store.read_blob(&m.config.digest)?;
        let config: ConfigFile =
            serde_json::from_slice(&config_bytes).map_err(|source| ArchiveError::Malformed {
                what: "image config".into(),
                source,
            })?;
        let config_name = format!("{}.json", m.config.digest.hex());
        if written.insert(config_name.clone()) {
            add_bytes(tar, &config_name, &config_bytes)?;
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
            let name = format!("{}/layer.tar", diff_id.hex());
            if written.insert(name.clone()) {
                // Uncompress into a temp file (tar needs the size up front).
                let mut tmp = tempfile::tempfile_in(store.dir())?;
                let mut stream = unpack::decompress(store.open_blob(&layer.digest)?)?;
                io::copy(&mut stream, &mut tmp)?;
                let len = tmp.stream_position()?;
                tmp.rewind()?;
                let mut h = tar::Header::new_ustar();
                h.set_size(len);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                h.set_entry_type(tar::EntryType::Regular);
                tar.append_data(&mut h, &name, &mut tmp)?;
            }
            layers.push(name);
        }
        out.push(Entry {
            config: config_name,
            repo_tags: img
                .reference
                .tag()
                .map(|_| vec![img.reference.familiar()])
                .unwrap_or_default(),
            layers,
        });
    }
    add_bytes(
        tar,
        "manifest.json",
        &serde_json::to_vec(&out).expect("manifest.json serialises"),
    )?;
    Ok(())
}

/// Loads every image in the tarball at `path` into the store and tags it. Returns the loaded
/// images.
///
/// # Errors
/// See [`ArchiveError`].
pub fn load(store: &ImageStore, path: &Path) -> Result<Vec<LocalImage>, ArchiveError> {
    let tmp = tempfile::Builder::new()
        .prefix(".load-")
        .tempdir_in(store.dir())?;
    let stream = unpack::decompress(fs::File::open(path)?)?;
    unpack::unpack(stream, tmp.path())?;
    let _hold = store.hold()?;
    let root = tmp.path();
    if root.join("index.json").is_file() {
        load_oci(store, root)
    } else if root.join("manifest.json").is_file() {
        load_docker(store, root)
    } else {
        Err(ArchiveError::UnknownFormat)
    }
}

fn blob_in(root: &Path, d: &Digest) -> std::path::PathBuf {
    root.join("blobs/sha256").join(d.hex())
}

fn import_blob(store: &ImageStore, root: &Path, d: &Descriptor) -> Result<(), ArchiveError> {
    if store.has_blob(&d.digest) {
        return Ok(());
    }
    let f = fs::File::open(blob_in(root, &d.digest))?;
    store.write_blob(f, Some(&d.digest), Some(d.size))?;
    Ok(())
}

fn load_oci(store: &ImageStore, root: &Path) -> Result<Vec<LocalImage>, ArchiveError> {
    let idx_bytes = read_document(&root.join("index.json"))?;
    let idx: Index =
        serde_json::from_slice(&idx_bytes).map_err(|source| ArchiveError::Malformed {
            what: "index.json".into(),
            source,
        })?;
    let mut loaded = Vec::new();
    for entry in &idx.manifests {
        let mut desc = entry.clone();
        let mut index_digest = None;
        if oci::is_index(&desc.media_type) {
            // A nested index: take linux/amd64.
            let bytes = read_verified(root, &desc.digest)?;
            store.write_blob_bytes(&bytes)?;
            let nested: Index =
                serde_json::from_slice(&bytes).map_err(|source| ArchiveError::Malformed {
                    what: format!("index {}", desc.digest),
                    source,
                })?;
            let Some(pick) = nested.manifests.into_iter().find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
            }) else {
                continue;
            };
            index_digest = Some(desc.digest.clone());
            desc = pick;
        }
        let bytes = read_verified(root, &desc.digest)?;
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| ArchiveError::Malformed {
                what: format!("manifest {}", desc.digest),
                source,
            })?;
        for d in m.layers.iter().chain([&m.config]) {
            import_blob(store, root, d)?;
        }
        store.write_blob_bytes(&bytes)?;
        let reference = name_for(&entry.annotations, &desc.digest);
        store.set_ref(
            &reference,
            RefRecord {
                manifest: desc.digest.clone(),
                index: index_digest,
            },
        )?;
        loaded.push(store.resolve(&reference)?);
    }
    Ok(loaded)
}

/// A JSON document of the extracted archive (index, manifest, config), at most
/// [`MAX_DOCUMENT_BYTES`] like the registry's.
fn read_document(path: &Path) -> Result<Vec<u8>, ArchiveError> {
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(ArchiveError::TooLarge(path.display().to_string()));
    }
    Ok(bytes)
}

fn read_verified(root: &Path, d: &Digest) -> Result<Vec<u8>, ArchiveError> {
    let bytes = read_document(&blob_in(root, d))?;
    let actual = Digest::of(&bytes);
    if actual != *d {
        return Err(StoreError::DigestMismatch {
            expected: d.clone(),
            actual,
        }
        .into());
    }
    Ok(bytes)
}

/// The reference to tag a loaded OCI-layout entry with.
fn name_for(annotations: &BTreeMap<String, String>, digest: &Digest) -> ImageRef {
    if let Some(r) = annotations
        .get("io.containerd.image.name")
        .and_then(|n| n.parse().ok())
    {
        return r;
    }
    if let Some(n) = annotations.get("org.opencontainers.image.ref.name") {
        if n.contains('/') {
            if let Ok(r) = n.parse() {
                return r;
            }
        }
        if let Ok(r) = format!("localhost/loaded:{n}").parse() {
            return r;
        }
    }
    "localhost/loaded"
        .parse::<ImageRef>()
        .expect("constant reference parses")
        .with_digest(digest.clone())
}

fn load_docker(store: &ImageStore, root: &Path) -> Result<Vec<LocalImage>, ArchiveError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        layers: Vec<String>,
    }
    let entries: Vec<Entry> = serde_json::from_slice(&read_document(&root.join("manifest.json"))?)
        .map_err(|source| ArchiveError::Malformed {
            what: "manifest.json".into(),
            source,
        })?;
    let file = |name: &str| -> Result<std::path::PathBuf, ArchiveError> {
        let p = Path::new(name);
        let safe = p
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        let full = root.join(p);
        // Symlinks in the extracted tree point inside it by construction, but refuse them anyway.
        match std::fs::symlink_metadata(&full) {
            Ok(m) if safe && m.is_file() => Ok(full),
            _ => Err(ArchiveError::MissingFile(name.to_owned())),
        }
    };
    let mut loaded = Vec::new();
    for e in entries {
        let config_bytes = read_document(&file(&e.config)?)?;
        let config: ConfigFile =
            serde_json::from_slice(&config_bytes).map_err(|source| ArchiveError::Malformed {
                what: e.config.clone(),
                source,
            })?;
        let config_digest = store.write_blob_bytes(&config_bytes)?;
        let mut layers = Vec::new();
        for (i, name) in e.layers.iter().enumerate() {
            let path = file(name)?;
            let (digest, size) = store.write_blob(fs::File::open(&path)?, None, None)?;
            let mut head = [0u8; 4];
            let n = store.open_blob(&digest)?.read(&mut head)?;
            let media_type = if head[..n].starts_with(&[0x1f, 0x8b]) {
                oci::OCI_LAYER_GZIP
            } else if head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                oci::OCI_LAYER_ZSTD
            } else {
                oci::OCI_LAYER_TAR
            };
            let mut hashing =
                crate::store::HashingReader::new(unpack::decompress(store.open_blob(&digest)?)?);
            io::copy(&mut hashing, &mut io::sink())?;
            let (actual, _) = hashing.finish()?;
            let expected = config.rootfs.diff_ids.get(i).cloned();
            if expected.as_ref() != Some(&actual) {
                return Err(ArchiveError::DiffId {
                    path: name.clone(),
                    expected: expected.unwrap_or_else(|| Digest::of(b"")),
                    actual,
                });
            }
            layers.push(Descriptor {
                media_type: media_type.into(),
                digest,
                size,
                platform: None,
                artifact_type: None,
                annotations: BTreeMap::new(),
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor {
                digest: config_digest,
                ..Descriptor::of(oci::OCI_CONFIG, &config_bytes)
            },
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        };
        let bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
        let digest = store.write_blob_bytes(&bytes)?;
        let tags: Vec<ImageRef> = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        let tags = if tags.is_empty() {
            vec!["localhost/loaded"
                .parse::<ImageRef>()
                .expect("constant")
                .with_digest(digest.clone())]
        } else {
            tags
        };
        for t in &tags {
            store.set_ref(
                t,
                RefRecord {
                    manifest: digest.clone(),
                    index: None,
                },
            )?;
            loaded.push(store.resolve(t)?);
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_image() -> (tempfile::TempDir, ImageStore, LocalImage) {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path().join("s")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "hello", &b"world"[..]).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b.into_inner().unwrap()).unwrap();
        let p = tmp.path().join("r.tgz");
        std::fs::write(&p, gz.finish().unwrap()).unwrap();
        let img = store
            .import_rootfs(&p, &"example.com/app:v1".parse().unwrap())
            .unwrap();
        (tmp, store, img)
    }

    #[test]
    fn oci_layout_round_trip_preserves_the_digest() {
        let (tmp, store, img) = store_with_image();
        let out = tmp.path().join("img.tar");
        save(
            &store,
            std::slice::from_ref(&img.reference),
            ArchiveFormat::Oci,
            fs::File::create(&out).unwrap(),
        )
        .unwrap();
        let other = ImageStore::open(tmp.path().join("other")).unwrap();
        let loaded = load(&other, &out).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].digest, img.digest);
        assert_eq!(loaded[0].reference, img.reference);
        assert!(other.rootfs(&loaded[0]).unwrap().join("hello").exists());
    }

    #[test]
    fn docker_archive_round_trip_keeps_tag_config_and_content() {
        let (tmp, store, img) = store_with_image();
        let out = tmp.path().join("img.tar");
        save(
            &store,
            std::slice::from_ref(&img.reference),
            ArchiveFormat::DockerArchive,
            fs::File::create(&out).unwrap(),
        )
        .unwrap();
        let other = ImageStore::open(tmp.path().join("other")).unwrap();
        let loaded = load(&other, &out).unwrap();
        assert_eq!(loaded[0].reference, img.reference);
        assert_eq!(loaded[0].config, img.config);
        let root = other.rootfs(&loaded[0]).unwrap();
        assert_eq!(std::fs::read(root.join("hello")).unwrap(), b"world");
    }

    #[test]
    fn load_refuses_tarballs_that_are_not_images() {
        let (tmp, store, _) = store_with_image();
        let p = tmp.path().join("x.tar");
        let mut b = tar::Builder::new(Vec::new());
        add_bytes(&mut b, "readme", b"hi").unwrap();
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        assert!(matches!(load(&store, &p), Err(ArchiveError::UnknownFormat)));
    }
}
