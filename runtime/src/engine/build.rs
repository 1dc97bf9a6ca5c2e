//! A build step that runs a command: `build`'s RUN, written once here so every front end
//! (the CLI's `build`, compose's `build:` next) runs it the same way.
//!
//! The step boots a box from the stage's current image (a manifest in the store, named by
//! digest), whose workload only waits (`/.a3s/init __idle`); the command runs as an exec
//! session with the stage's environment, working directory and user, and the box's default
//! networking. When it succeeds, a second session (`/.a3s/init __layer-out`) streams the box's
//! overlay upper directory out as an OCI layer ([`a3s_vmm::layer`]). The box is removed
//! afterwards whatever happened, so its disk never outlives the step.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use a3s_image::Digest;
use a3s_vmm::assets::INIT_PATH;
use a3s_vmm::layer::{GUEST_IDLE, GUEST_LAYER_OUT};
use a3s_vmm::proto::{self, Kind, ProcessSpec};

use super::{Engine, EngineError};
use crate::audit::Outcome;
use crate::boxes::client::MonitorMsg;
use crate::boxes::health::HealthOptions;
use crate::boxes::{BoxRecord, CreateRequest, DEFAULT_MEM_MIB};

/// The repository name build-step boxes refer to their image by (with the manifest digest).
pub const STEP_IMAGE_REPO: &str = "a3s-build";

/// One command to run on an image.
#[derive(Clone, Debug)]
pub struct StepRun {
    /// The image's manifest (in the store; no name needs to point at it).
    pub image: Digest,
    /// The command (exec form: a shell form is already `SHELL + [cmd]`).
    pub argv: Vec<String>,
    /// `KEY=value` entries the command sees (the stage's env and build args).
    pub env: Vec<String>,
    /// Working directory (`/` when absent).
    pub workdir: Option<String>,
    /// User (root when absent).
    pub user: Option<String>,
}

/// Which stream a piece of a step's output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Engine {
    /// Runs `step`, passing its output to `output` as it arrives; when the command exits 0,
    /// writes the changes it made as an uncompressed layer tar to `layer`. Returns the
    /// command's exit code (a command that cannot start counts as 126/127, with the reason
    /// sent to `output` as stderr). Audited as a box's lifecycle is.
    ///
    /// # Errors
    /// The box cannot be created or booted, the session is lost, or `layer` cannot be written.
    pub fn run_step(
        &self,
        step: &StepRun,
        layer: &Path,
        output: &mut dyn FnMut(StepStream, &[u8]),
    ) -> Result<i32, EngineError> {
        let image = format!("{STEP_IMAGE_REPO}@{}", step.image);
        // The step's filesystem now, from the previous step's tree when it has one (only
        // this step's layer is applied then); the box's start finds it built.
        let store = self.image_store()?;
        let reference: a3s_image::ImageRef = image
            .parse()
            .map_err(|e| EngineError::context("the step's image", e))?;
        let local = store.resolve_manifest(&reference, &step.image)?;
        store.filesystem_extending(&local, &self.step_trees)?;
        let req = CreateRequest {
            image,
            name: None,
            args: vec![INIT_PATH.into(), GUEST_IDLE.into()],
            entrypoint: Some(String::new()),
            // The idle workload is guest-init's own helper: root, whatever USER the stage set
            // (the command itself runs as the stage's user).
            user: Some("0:0".into()),
            vcpus: 1,
            mem_mib: u64::from(DEFAULT_MEM_MIB),
            memory_limit_bytes: None,
            pod_memory_bytes: None,
            health: HealthOptions {
                disable: true,
                ..HealthOptions::default()
            },
            ..CreateRequest::default()
        };
        let rec = self.boxes.create(&req)?;
        self.record_box("box.create", &rec, Outcome::Success, "build step")?;
        let result = self.step_in_box(rec.id.as_str(), step, layer, output);
        let _ = self.boxes.stop(rec.id.as_str(), Duration::from_secs(2));
        // With the anonymous volumes of the image's VOLUMEs (what a step wrote there is
        // discarded, as in Docker's builds).
        let _ = self.boxes.remove_with_volumes(rec.id.as_str(), true, true);
        let _ = self.record_box("box.remove", &rec, Outcome::Success, "build step done");
        result
    }

    /// Removes the unpacked image [`Engine::run_step`] keeps for a build's next step: call
    /// it when the build is over (the tree may hold hundreds of MiB of RAM).
    pub fn release_step_tree(&self) {
        self.step_trees.release();
    }

    fn step_in_box(
        &self,
        id: &str,
        step: &StepRun,
        layer: &Path,
        output: &mut dyn FnMut(StepStream, &[u8]),
    ) -> Result<i32, EngineError> {
        self.start(id)?;
        let rec = self.boxes.find(id)?;
        let what = format!("build RUN {}", step.argv.join(" "));
        self.record_box("box.exec", &rec, Outcome::Success, &what)?;
        let conn = self.boxes.exec(
            &rec,
            ProcessSpec {
                argv: step.argv.clone(),
                env: step.env.clone(),
                workdir: step.workdir.clone(),
                user: step.user.clone(),
                ..ProcessSpec::default()
            },
        )?;
        let code = session(conn, output)?;
        if code != 0 {
            return Ok(code);
        }
        self.layer_out(&rec, layer, false)?;
        Ok(0)
    }

    /// Streams the running box's changes (guest-init's `__layer-out`) into the layer tar
    /// `layer`. `build` commits it; `diff`, `export` and `commit` read it too.
    pub(super) fn layer_out(
        &self,
        rec: &BoxRecord,
        layer: &Path,
        pause: bool,
    ) -> Result<(), EngineError> {
        let mut argv = vec![INIT_PATH.into(), GUEST_LAYER_OUT.into()];
        if pause {
            argv.push(a3s_vmm::layer::GUEST_LAYER_PAUSE.into());
        }
        let conn = self.boxes.exec(
            rec,
            ProcessSpec {
                argv,
                ..ProcessSpec::default()
            },
        )?;
        let file = File::create(layer)
            .map_err(|e| EngineError::context(format!("creating {}", layer.display()), e))?;
        let mut out = BufWriter::new(file);
        let mut stderr = Vec::new();
        let mut write_err = None;
        let code = session(conn, &mut |s, bytes| match s {
            StepStream::Stdout if write_err.is_none() => {
                if let Err(e) = out.write_all(bytes) {
                    write_err = Some(e);
                }
            }
            StepStream::Stdout => {}
            StepStream::Stderr => stderr.extend_from_slice(bytes),
        })?;
        if let Some(e) = write_err.or_else(|| out.flush().err()) {
            return Err(EngineError::context(
                format!("writing {}", layer.display()),
                e,
            ));
        }
        if code != 0 {
            return Err(EngineError::BoxFailed {
                name: rec.name.clone(),
                message: format!(
                    "reading the box's changes failed: {}",
                    String::from_utf8_lossy(&stderr).trim()
                ),
            });
        }
        Ok(())
    }
}

/// Drains an exec session: output to `output`, returns the exit code.
fn session(
    mut conn: std::os::unix::net::UnixStream,
    output: &mut dyn FnMut(StepStream, &[u8]),
) -> Result<i32, EngineError> {
    // Under TCG a long step may be silent for minutes; the guest's exit ends the session.
    conn.set_read_timeout(None)?;
    loop {
        let frame = proto::read_frame(&mut conn)
            .map_err(|e| EngineError::context("lost the build step's exec session", e))?;
        match frame.kind {
            Kind::Stdout => output(StepStream::Stdout, &frame.payload),
            Kind::Stderr => output(StepStream::Stderr, &frame.payload),
            Kind::Control => match frame.message::<MonitorMsg>() {
                Ok(MonitorMsg::Exited { code }) => return Ok(code),
                Ok(MonitorMsg::SpawnFailed { code, message }) => {
                    output(StepStream::Stderr, format!("{message}\n").as_bytes());
                    return Ok(code);
                }
                Ok(MonitorMsg::Error { message }) => {
                    return Err(EngineError::BoxFailed {
                        name: "build step".into(),
                        message,
                    })
                }
                _ => {}
            },
            _ => {}
        }
    }
}
