//! A box's writable layer as Docker shows it: `diff`, `export`, `commit` and snapshots.
//!
//! All three readers start from the same two inputs: the box's changes as an OCI layer tar
//! (guest-init's `__layer-out`, the stream `build` commits) and the image's root filesystem
//! as the store unpacked it ([`crate::layers`] does the rest).
//!
//! - **Running box**: an exec session streams the layer out of the guest.
//! - **Stopped box**: a throwaway helper box ([`super::helper_box`]) boots the box's image
//!   on a copy of the box's layer disk and streams the layer the same way, so the guest
//!   kernel is the only one that reads it. A box that never started has no changes.
//! - **Confidential boxes** are refused: their layer is ciphertext under a key only the
//!   guest has. Snapshots copy the disk as it is and work for them too.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;

use a3s_image::oci::History;
use a3s_image::store::{Commit, RefRecord};
use a3s_image::{Digest, ImageRef};

use super::helper_box::LayerUse;
use super::{Engine, EngineError, STEP_IMAGE_REPO};
use crate::audit::Outcome;
use crate::boxes::{BoxRecord, BoxState, LAYER_DISK};
use crate::layers::{self, Change, LayersError, Snapshot, Snapshots};

/// An edit of an image config document; an error message for a bad instruction.
pub type ConfigEdit<'a> = &'a dyn Fn(&mut serde_json::Value) -> Result<(), String>;

/// What `commit` adds besides the layer.
#[derive(Default)]
pub struct CommitRequest<'a> {
    /// The name to give the new image (`None`: only its digest).
    pub reference: Option<ImageRef>,
    /// `-m`: the history entry's comment.
    pub message: Option<String>,
    /// `-a`: the author.
    pub author: Option<String>,
    /// `-c`: edits of the image config (Dockerfile instructions applied by the front end's
    /// parser); returns an error message for a bad instruction.
    pub edit_config: Option<ConfigEdit<'a>>,
    /// `--pause` (Docker's default): a running box's workload is stopped while its changes
    /// are read, so the image holds one consistent moment of its files.
    pub pause: bool,
}

impl std::fmt::Debug for CommitRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitRequest")
            .field("reference", &self.reference)
            .field("message", &self.message)
            .field("author", &self.author)
            .field("edit_config", &self.edit_config.is_some())
            .field("pause", &self.pause)
            .finish()
    }
}

impl Engine {
    /// `diff`: the box's changes against its image, in Docker's `A`/`C`/`D` form.
    ///
    /// # Errors
    /// No such box, a confidential or busy box, the guest or the store failed.
    pub fn diff(&self, key: &str) -> Result<Vec<Change>, EngineError> {
        let rec = self.boxes.find(key)?;
        self.with_layer(&rec, "diff", false, |layer, lower| {
            let file = File::open(layer)?;
            Ok(layers::changes(BufReader::new(file), lower)?)
        })
    }

    /// `export`: the box's whole merged root filesystem as a tar, to `out`.
    ///
    /// # Errors
    /// As [`Engine::diff`]; writing `out`.
    pub fn export(&self, key: &str, out: &mut dyn Write) -> Result<(), EngineError> {
        let rec = self.boxes.find(key)?;
        self.with_layer(&rec, "export", false, |layer, lower| {
            let mut out = layers::export(lower, layer, std::io::BufWriter::new(out))?;
            out.flush()?;
            Ok(())
        })?;
        self.record_box("box.export", &rec, Outcome::Success, "exported")
    }

    /// `commit`: a new image, the box's image plus one layer of its changes; returns its
    /// manifest digest (named `req.reference` when given).
    ///
    /// # Errors
    /// As [`Engine::diff`]; a bad config edit; the store failed.
    pub fn commit(&self, key: &str, req: &CommitRequest<'_>) -> Result<Digest, EngineError> {
        let rec = self.boxes.find(key)?;
        let store = self.image_store()?;
        let parent: Digest = rec
            .image_digest
            .parse()
            .map_err(|e| EngineError::context("the box's image digest", e))?;
        let manifest = store.manifest(&parent)?;
        let mut config = store.config_json(&manifest)?;
        if !config.is_object() {
            return Err(EngineError::context(
                format!("the image config of {parent}"),
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not a JSON object"),
            ));
        }
        let now = crate::state::now_rfc3339();
        config["created"] = serde_json::json!(now);
        if let Some(a) = &req.author {
            config["author"] = serde_json::json!(a);
        }
        if let Some(edit) = req.edit_config {
            if !config["config"].is_object() {
                config["config"] = serde_json::json!({});
            }
            edit(&mut config).map_err(|m| EngineError::Context {
                what: "invalid --change".into(),
                source: m.into(),
            })?;
        }
        let digest = self.with_layer(&rec, "commit", req.pause, |layer, _| {
            Ok(store.commit(&Commit {
                parent: Some(&parent),
                config: config.clone(),
                layer: Some(layer),
                history: History {
                    created: Some(now.clone()),
                    created_by: Some(rec.spec.process.argv.join(" ")),
                    author: req.author.clone(),
                    comment: req.message.clone(),
                    empty_layer: false,
                },
            })?)
        })?;
        if let Some(r) = &req.reference {
            store.set_ref(
                r,
                RefRecord {
                    manifest: digest.clone(),
                    index: None,
                },
            )?;
        }
        let named = req
            .reference
            .as_ref()
            .map_or_else(|| digest.to_string(), ImageRef::familiar);
        self.record_box(
            "box.commit",
            &rec,
            Outcome::Success,
            &format!("committed as {named} ({digest})"),
        )?;
        Ok(digest)
    }

    /// `snapshot create`: a copy of a stopped box's layer disk, named `name` (a timestamp
    /// when absent).
    ///
    /// # Errors
    /// No such box, a running box, a bad or taken name, i/o.
    pub fn snapshot_create(&self, key: &str, name: Option<&str>) -> Result<Snapshot, EngineError> {
        let rec = self.stopped(key, "snapshot create")?;
        let now = crate::state::now_rfc3339();
        // Default name: the time, `20261205T133922` (RFC 3339 without separators).
        let name = name.map_or_else(
            || {
                now.chars()
                    .filter(|c| c.is_ascii_digit() || *c == 'T')
                    .take(15)
                    .collect()
            },
            str::to_owned,
        );
        let dir = self.boxes.box_dir(&rec.id);
        let snap = Snapshots::new(&dir, &rec.name)
            .create(&dir.join(LAYER_DISK), &name, &now)
            .map_err(layers_error)?;
        self.record_box(
            "box.snapshot.create",
            &rec,
            Outcome::Success,
            &format!("snapshot {name}"),
        )?;
        Ok(snap)
    }

    /// `snapshot ls`: the box's snapshots, oldest first.
    ///
    /// # Errors
    /// No such box, i/o.
    pub fn snapshot_list(&self, key: &str) -> Result<Vec<Snapshot>, EngineError> {
        let rec = self.boxes.find(key)?;
        Snapshots::new(&self.boxes.box_dir(&rec.id), &rec.name)
            .list()
            .map_err(layers_error)
    }

    /// `snapshot restore`: the box's layer disk becomes a copy of snapshot `name` again
    /// (the snapshot stays). Refused on a running box.
    ///
    /// # Errors
    /// No such box or snapshot, a running box, i/o.
    pub fn snapshot_restore(&self, key: &str, name: &str) -> Result<(), EngineError> {
        let rec = self.stopped(key, "snapshot restore")?;
        let dir = self.boxes.box_dir(&rec.id);
        Snapshots::new(&dir, &rec.name)
            .restore(name, &dir.join(LAYER_DISK))
            .map_err(layers_error)?;
        self.record_box(
            "box.snapshot.restore",
            &rec,
            Outcome::Success,
            &format!("snapshot {name}"),
        )
    }

    /// `snapshot rm`.
    ///
    /// # Errors
    /// No such box or snapshot, i/o.
    pub fn snapshot_remove(&self, key: &str, name: &str) -> Result<(), EngineError> {
        let rec = self.boxes.find(key)?;
        Snapshots::new(&self.boxes.box_dir(&rec.id), &rec.name)
            .remove(name)
            .map_err(layers_error)?;
        self.record_box(
            "box.snapshot.remove",
            &rec,
            Outcome::Success,
            &format!("snapshot {name}"),
        )
    }

    fn stopped(&self, key: &str, what: &'static str) -> Result<BoxRecord, EngineError> {
        let rec = self.boxes.find(key)?;
        if rec.state.is_active() {
            return Err(layers_error(LayersError::NotStopped {
                name: rec.name,
                state: rec.state.name(),
                what,
            }));
        }
        Ok(rec)
    }

    /// Runs `f` on the box's layer tar and its image's root filesystem (both removed after);
    /// `pause`: a running workload is stopped while the layer is read.
    fn with_layer<T>(
        &self,
        rec: &BoxRecord,
        what: &'static str,
        pause: bool,
        f: impl FnOnce(&Path, &Path) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        if rec.spec.tee.is_some() {
            return Err(layers_error(LayersError::Encrypted {
                name: rec.name.clone(),
                what,
            }));
        }
        let store = self.image_store()?;
        let digest: Digest = rec
            .image_digest
            .parse()
            .map_err(|e| EngineError::context("the box's image digest", e))?;
        let reference: ImageRef = format!("{STEP_IMAGE_REPO}@{digest}")
            .parse()
            .map_err(|e| EngineError::context("the box's image", e))?;
        let lower = store.rootfs(&store.resolve_manifest(&reference, &digest)?)?;
        let cache = self.home.root().join("cache");
        fs_err::create_dir_all(&cache)?;
        // 0700: the layer holds the box's files.
        let tmp = tempfile::Builder::new()
            .prefix(".layer-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(&cache)
            .map_err(|e| {
                EngineError::context(format!("creating a temp dir in {}", cache.display()), e)
            })?;
        let layer = tmp.path().join("layer.tar");
        self.layer_tar(rec, &layer, pause)?;
        f(&layer, &lower)
    }

    /// Writes the box's changes as a layer tar to `out` (see the module docs).
    fn layer_tar(&self, rec: &BoxRecord, out: &Path, pause: bool) -> Result<(), EngineError> {
        match rec.state {
            BoxState::Running { .. } => self.layer_out(rec, out, pause),
            BoxState::Starting { .. } | BoxState::Restarting { .. } => {
                Err(layers_error(LayersError::Busy {
                    name: rec.name.clone(),
                    state: rec.state.name(),
                }))
            }
            _ if rec.start_count == 0 => {
                // Never booted: the layer is the empty filesystem `create` made.
                tar::Builder::new(File::create(out)?).finish()?;
                Ok(())
            }
            _ => self.layer_of_stopped(rec, out),
        }
    }

    /// Streams stopped `rec`'s changes out of a helper box on a copy of its layer disk.
    fn layer_of_stopped(&self, rec: &BoxRecord, out: &Path) -> Result<(), EngineError> {
        self.with_helper_box(rec, "reading the layer", LayerUse::Read, |helper| {
            self.layer_out(helper, out, false)
        })
    }
}

fn layers_error(e: LayersError) -> EngineError {
    EngineError::Layers(e)
}
