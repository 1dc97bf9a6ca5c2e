//! A throwaway helper box that boots a stopped box's image on a copy of its layer disk, for
//! work on a stopped box's files (`diff`, `export`, `commit`, `cp`).
//!
//! The host never mounts a layer disk: its ext4 was written by a guest, and parsing a
//! guest-made filesystem in the host kernel would hand a box an attack surface on the host.
//! The helper (no network, no health check, guest-init idling as root) lets the guest kernel
//! be the only one that reads or writes it. Writes are made on the copy and put in place
//! only after the helper powered off cleanly and while the box is still stopped, so the box
//! sees all of a `cp` or none of it.

use std::time::Duration;

use a3s_vmm::assets::INIT_PATH;
use a3s_vmm::layer::GUEST_IDLE;

use super::{Engine, EngineError, STEP_IMAGE_REPO};
use crate::audit::Outcome;
use crate::boxes::health::HealthOptions;
use crate::boxes::{BoxRecord, BoxState, CreateRequest, DEFAULT_MEM_MIB, LAYER_DISK};
use crate::layers::{self, LayersError};
use crate::network::{BoxNet, NetMode};
use crate::state;

/// How long a helper that wrote to its disk gets to power off cleanly (its idle workload
/// ends at the first signal; the guest then syncs and powers off).
const WRITER_STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// What the helper does with its copy of the layer disk afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LayerUse {
    /// Reads only: the copy is dropped.
    Read,
    /// Writes: the copy replaces the box's disk once the helper powered off cleanly.
    Write,
}

impl Engine {
    /// Runs `f` against a running helper box holding a copy of stopped `rec`'s layer disk
    /// (see the module docs); `what` names the command for errors and the audit log.
    pub(super) fn with_helper_box<T>(
        &self,
        rec: &BoxRecord,
        what: &'static str,
        layer: LayerUse,
        f: impl FnOnce(&BoxRecord) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        if rec.state.is_active() {
            return Err(EngineError::Layers(LayersError::Busy {
                name: rec.name.clone(),
                state: rec.state.name(),
            }));
        }
        if rec.spec.tee.is_some() {
            // Its layer is ciphertext under a key only the guest has.
            return Err(EngineError::Layers(LayersError::Encrypted {
                name: rec.name.clone(),
                what,
            }));
        }
        let req = CreateRequest {
            image: format!("{STEP_IMAGE_REPO}@{}", rec.image_digest),
            args: vec![INIT_PATH.into(), GUEST_IDLE.into()],
            entrypoint: Some(String::new()),
            user: Some("0:0".into()),
            vcpus: 1,
            mem_mib: u64::from(DEFAULT_MEM_MIB),
            memory_limit_bytes: None,
            pod_memory_bytes: None,
            net: BoxNet {
                mode: NetMode::None,
                ..BoxNet::default()
            },
            health: HealthOptions {
                disable: true,
                ..HealthOptions::default()
            },
            layer_bytes: Some(rec.spec.layer_bytes),
            ..CreateRequest::default()
        };
        let helper = self.boxes.create(&req)?;
        let why = format!("{what} on stopped box {}", rec.name);
        self.record_box("box.create", &helper, Outcome::Success, &why)?;
        let id = helper.id.as_str();
        let helper_disk = self.boxes.box_dir(&helper.id).join(LAYER_DISK);
        let box_disk = self.boxes.box_dir(&rec.id).join(LAYER_DISK);
        let result = (|| {
            fs_err::remove_file(&helper_disk)?;
            layers::clone_file(&box_disk, &helper_disk)?;
            let running = self.start(id)?;
            let out = f(&running)?;
            if layer == LayerUse::Write {
                let stopped = self.boxes.stop(id, WRITER_STOP_TIMEOUT)?;
                self.put_layer_back(rec, &stopped, &helper_disk)?;
            }
            Ok(out)
        })();
        let _ = self.boxes.stop(id, Duration::from_secs(2));
        let _ = self.boxes.remove_with_volumes(id, true, true);
        let _ = self.record_box("box.remove", &helper, Outcome::Success, &why);
        result
    }

    /// Moves the helper's disk over `rec`'s, under `rec`'s lock and only if the helper
    /// powered off by itself and `rec` has not started meanwhile.
    fn put_layer_back(
        &self,
        rec: &BoxRecord,
        helper: &BoxRecord,
        helper_disk: &std::path::Path,
    ) -> Result<(), EngineError> {
        let clean = matches!(
            helper.state,
            BoxState::Exited { exit_code, error: None }
                if exit_code != crate::boxes::monitor::KILLED_EXIT_CODE
        );
        if !clean {
            return Err(EngineError::context(
                format!("writing to stopped box {}", rec.name),
                std::io::Error::other(format!(
                    "the helper VM did not power off cleanly ({}); the box was left unchanged",
                    helper.state.name()
                )),
            ));
        }
        let dir = self.boxes.box_dir(&rec.id);
        let _lock = state::lock_file(&dir.join("lock"))?;
        let now = self.boxes.load(&rec.id)?;
        if now.state.is_active() || now.start_count != rec.start_count {
            return Err(EngineError::context(
                format!("writing to stopped box {}", rec.name),
                std::io::Error::other(
                    "the box was started while the copy ran; the box was left unchanged: copy again",
                ),
            ));
        }
        fs_err::rename(helper_disk, dir.join(LAYER_DISK))?;
        fs_err::File::open(&dir)?.sync_all()?;
        Ok(())
    }
}
