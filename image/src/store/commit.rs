//! New images from old ones: a parent (or nothing), at most one new layer, a new config and
//! one more history entry. `build` makes every step's image this way; `commit` can too.

use std::collections::BTreeMap;
use std::io::{self, BufReader};
use std::path::Path;

use fs_err as fs;
use serde_json::{json, Value};

use super::{HashingReader, ImageStore, StoreError};
use crate::oci::{self, Descriptor, History, Manifest};
use crate::reference::Digest;

/// What one commit adds to its parent.
#[derive(Debug, Clone)]
pub struct Commit<'a> {
    /// The parent image's manifest (`None`: an empty image, `FROM scratch`).
    pub parent: Option<&'a Digest>,
    /// The full image config document to write (its `rootfs` and `history` are replaced by
    /// the parent's plus this commit's).
    pub config: Value,
    /// An uncompressed layer tar (stored gzip-compressed), or `None` for a config-only step.
    pub layer: Option<&'a Path>,
    /// The history entry (`empty_layer` is set here from `layer`).
    pub history: History,
}

impl ImageStore {
    /// The image config document of `manifest`, exactly as stored (fields this crate does not
    /// model, such as `Volumes` or `Healthcheck`, are kept).
    ///
    /// # Errors
    /// Missing, corrupt or malformed blob.
    pub fn config_json(&self, manifest: &Manifest) -> Result<Value, StoreError> {
        let d = &manifest.config.digest;
        let bytes = self.read_blob(d)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Malformed {
            what: format!("image config {d}"),
            source,
        })
    }

    /// Writes the image `commit` describes; returns its manifest digest (no name is set).
    /// The same parent, config, layer bytes and history give the same digest.
    ///
    /// # Errors
    /// I/O, a layer that is not a tar archive, a damaged parent.
    pub fn commit(&self, commit: &Commit<'_>) -> Result<Digest, StoreError> {
        let _hold = self.hold()?;
        let (mut layers, mut diff_ids, mut history) = match commit.parent {
            Some(p) => {
                let m = self.manifest(p)?;
                let c = self.config_file(&m)?;
                (m.layers, c.rootfs.diff_ids, c.history)
            }
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        let mut entry = commit.history.clone();
        entry.empty_layer = commit.layer.is_none();
        if let Some(tar) = commit.layer {
            let (desc, diff_id) = self.write_layer(tar)?;
            layers.push(desc);
            diff_ids.push(diff_id);
        }
        history.push(entry);
        let mut config = commit.config.clone();
        let obj = config
            .as_object_mut()
            .ok_or_else(|| StoreError::Malformed {
                what: "new image config".into(),
                source: <serde_json::Error as serde::de::Error>::custom("not a JSON object"),
            })?;
        obj.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": diff_ids}),
        );
        obj.insert(
            "history".into(),
            serde_json::to_value(&history).expect("history serialises"),
        );
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
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        };
        let bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
        self.write_blob_bytes(&bytes)
    }

    /// Stores `tar` gzip-compressed (deterministic: no name or time in the gzip header);
    /// returns its descriptor and diff_id.
    fn write_layer(&self, tar: &Path) -> Result<(Descriptor, Digest), StoreError> {
        let diff_id = {
            let mut hashing = HashingReader::new(BufReader::new(fs::File::open(tar)?));
            let mut archive = tar::Archive::new(&mut hashing);
            for entry in archive.entries()? {
                entry?;
            }
            // Drain the end-of-archive padding too: the diff_id covers every byte.
            io::copy(&mut hashing, &mut io::sink())?;
            hashing.finish()?.0
        };
        let gz = flate2::read::GzEncoder::new(
            BufReader::new(fs::File::open(tar)?),
            flate2::Compression::default(),
        );
        let (digest, size) = self.write_blob(gz, None, None)?;
        Ok((
            Descriptor {
                media_type: oci::OCI_LAYER_GZIP.into(),
                digest,
                size,
                platform: None,
                artifact_type: None,
                annotations: BTreeMap::new(),
            },
            diff_id,
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn layer_tar(dir: &Path, name: &str, content: &[u8]) -> std::path::PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, content).unwrap();
        let p = dir.join(format!("{name}.tar"));
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        p
    }

    #[test]
    fn commits_stack_layers_and_history_and_are_reproducible() {
        let d = tempfile::tempdir().unwrap();
        let store = ImageStore::open(d.path().join("images")).unwrap();
        let a = layer_tar(d.path(), "a", b"first");
        let base_cfg =
            json!({"architecture": "amd64", "os": "linux", "config": {"Volumes": {"/v": {}}}});
        let first = Commit {
            parent: None,
            config: base_cfg.clone(),
            layer: Some(&a),
            history: History {
                created_by: Some("COPY a /".into()),
                ..History::default()
            },
        };
        let d1 = store.commit(&first).unwrap();
        assert_eq!(d1, store.commit(&first).unwrap(), "same input, same digest");
        let second = Commit {
            parent: Some(&d1),
            config: base_cfg,
            layer: None,
            history: History {
                created_by: Some("ENV X=1".into()),
                ..History::default()
            },
        };
        let d2 = store.commit(&second).unwrap();
        let m = store.manifest(&d2).unwrap();
        assert_eq!(m.layers.len(), 1);
        let c = store.config_file(&m).unwrap();
        assert_eq!(c.rootfs.diff_ids.len(), 1);
        assert_eq!(c.history.len(), 2);
        assert!(c.history[1].empty_layer);
        assert!(!c.history[0].empty_layer);
        // Unmodelled config fields survive.
        assert_eq!(
            store.config_json(&m).unwrap()["config"]["Volumes"],
            json!({"/v": {}})
        );
        // The image unpacks to the layer's file.
        let img = store.resolve_manifest(&"x".parse().unwrap(), &d2).unwrap();
        let root = store.rootfs(&img).unwrap();
        assert_eq!(std::fs::read(root.join("a")).unwrap(), b"first");
    }
}
