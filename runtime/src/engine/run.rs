//! `create` and `run`: the product's pipeline, written down once.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use a3s_image::cosign::{self, SignaturePolicy};

use super::{Engine, EngineError};
use crate::audit::{Event, Outcome};
use crate::boxes::logs::{self, LogRecord};
use crate::boxes::{BoxRecord, BoxState, CreateRequest};
use crate::volumes::{MountSource, Volumes};

/// What `create` and `run` ask for.
#[derive(Clone, Debug, Default)]
pub struct CreateBox {
    /// The box: image, workload, resources, network, mounts, TEE settings.
    pub request: CreateRequest,
    /// The signature gate: the policy the image must satisfy before it may run (`None`: no
    /// signature is required). Front ends pass the home's policy (`policy/signatures.toml`)
    /// or one built from explicit keys.
    pub signatures: Option<SignaturePolicy>,
}

/// How `run` treats the workload once the box is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Start it and return (like `run -d`); a box that fails to start is removed when the
    /// request says `auto_remove`.
    Detached,
    /// Start it tied to this process, stream its output to [`RunEvents::output`], return its
    /// exit code.
    Foreground,
}

/// What a front end hears while `run` proceeds (every method has a do-nothing default;
/// `()` hears nothing).
pub trait RunEvents {
    /// The box exists and passed its signature gate; the boot comes next.
    fn created(&mut self, rec: &BoxRecord) {
        let _ = rec;
    }

    /// A foreground box runs; `stdin` is its workload's stdin when the request asked for
    /// one.
    fn running(&mut self, rec: &BoxRecord, stdin: Option<UnixStream>) {
        let _ = (rec, stdin);
    }

    /// New output of a foreground workload, in order.
    ///
    /// # Errors
    /// A failed write ends the run with that error (the box is still cleaned up).
    fn output(&mut self, records: &[LogRecord]) -> std::io::Result<()> {
        let _ = records;
        Ok(())
    }
}

impl RunEvents for () {}

/// What `run` did.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The box as it was created (it may be gone after an auto-remove).
    pub record: BoxRecord,
    /// The workload's exit code (foreground runs only).
    pub exit_code: Option<i32>,
}

impl Engine {
    /// `create`: the box exists, with its image resolved and its signature gate passed.
    ///
    /// # Errors
    /// Image, name, resource, volume or network errors; [`EngineError::ImageRefused`] (the
    /// box is removed again and the denial audited).
    pub fn create(&self, req: &CreateBox) -> Result<BoxRecord, EngineError> {
        // 1. Resolve the image and reserve the box (named volumes it mounts are created).
        self.ensure_volumes(&req.request)?;
        let rec = self.boxes.create(&req.request)?;
        // 2. The signature gate, on the digest the box will launch.
        if let Err(e) = self.signature_gate(&rec, req.signatures.as_ref()) {
            let _ = self.boxes.remove(rec.id.as_str(), true);
            return Err(e);
        }
        self.record_box("box.create", &rec, Outcome::Success, "created")?;
        Ok(rec)
    }

    /// `run`: the one place "run a box" is written down, in the product's order.
    ///
    /// 1. resolve the image and create the box ([`Engine::create`]);
    /// 2. signature gate (inside `create`: a refused image never boots);
    /// 3. measurement, 4. launch, 5. attestation and secrets: the box's monitor prepares the
    ///    boot assets, computes the launch measurement of exactly what it boots, launches the
    ///    VM and answers the guest's attestation; the guest releases secrets before
    ///    6. the workload starts — all of it behind [`crate::boxes::Boxes::start`], which
    ///    returns once the workload runs (or the boot failed);
    /// 7. cleanup: a foreground run waits for the workload and collects its exit code; with
    ///    `auto_remove` the box is removed whatever happened after it was created.
    ///
    /// # Errors
    /// Those of `create` and `start`; [`EngineError::BoxFailed`] for a foreground box that
    /// failed to boot.
    pub fn run(
        &self,
        req: &CreateBox,
        mode: RunMode,
        events: &mut dyn RunEvents,
    ) -> Result<RunOutcome, EngineError> {
        let rec = self.create(req)?;
        events.created(&rec);
        let (result, finished) = match mode {
            RunMode::Detached => (self.start(rec.id.as_str()).map(|_| None), false),
            RunMode::Foreground => (self.run_foreground(&rec, events).map(Some), true),
        };
        // A detached box that started removes itself when it ends (its monitor does). A run
        // refused before boot (too little memory) leaves no box behind either way.
        let refused = matches!(&result, Err(EngineError::Box(e)) if e.refused_before_boot());
        if refused || (req.request.auto_remove && (finished || result.is_err())) {
            let _ = self.boxes.remove(rec.id.as_str(), true);
        }
        Ok(RunOutcome {
            record: rec,
            exit_code: result?,
        })
    }

    /// Steps 3-6 for a foreground box, then waits for the workload to end.
    fn run_foreground(&self, rec: &BoxRecord, io: &mut dyn RunEvents) -> Result<i32, EngineError> {
        self.record_box(
            "box.start",
            rec,
            Outcome::Success,
            "starting in the foreground",
        )?;
        let started = self
            .boxes
            .start(rec.id.as_str(), &self.monitor_exe()?, true)?;
        let stdin = if rec.spec.process.stdin && matches!(started.state, BoxState::Running { .. }) {
            self.boxes.attach_stdin(&started).ok()
        } else {
            None
        };
        io.running(&started, stdin);
        let mut offset = 0;
        let done = self.follow(rec, &mut offset, &mut |r| io.output(r))?;
        match done.state {
            BoxState::Exited {
                exit_code: 125,
                error: Some(message),
            } => Err(EngineError::BoxFailed {
                name: done.name,
                message,
            }),
            BoxState::Exited { exit_code, .. } => Ok(exit_code),
            _ => Ok(0),
        }
    }

    /// Streams a box's output from `offset` until it stops; returns its final record.
    pub(super) fn follow(
        &self,
        rec: &BoxRecord,
        offset: &mut u64,
        sink: &mut dyn FnMut(&[LogRecord]) -> std::io::Result<()>,
    ) -> Result<BoxRecord, EngineError> {
        let path = self.boxes.output_log(rec);
        loop {
            let (records, next) = logs::read_from(&path, *offset)?;
            *offset = next;
            sink(&records)?;
            if records.is_empty() {
                let now = self.boxes.wait_until(&rec.id, |_| true, None)?;
                if !now.state.is_active() {
                    // The monitor writes output before the exit; one last read drains it.
                    let (records, next) = logs::read_from(&path, *offset)?;
                    *offset = next;
                    sink(&records)?;
                    return Ok(now);
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        }
    }

    /// Docker: `run -v NAME:/p` creates a missing volume `NAME`; each one created is audited.
    fn ensure_volumes(&self, req: &CreateRequest) -> Result<(), EngineError> {
        let volumes = Volumes::open(&self.home);
        for m in &req.mounts {
            if let MountSource::Volume { name } = &m.source {
                if volumes.create(name)?.1 {
                    self.record(
                        &Event::new("volume.create", Outcome::Success, "created for -v")
                            .with("volume", name.as_str()),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The image signature gate: checks the digest the box will launch against `policy`;
    /// audited either way.
    fn signature_gate(
        &self,
        rec: &BoxRecord,
        policy: Option<&SignaturePolicy>,
    ) -> Result<(), EngineError> {
        let Some(policy) = policy.filter(|p| p.requires_signatures()) else {
            return Ok(());
        };
        let store = a3s_image::ImageStore::open(self.home.root().join("images"))?;
        let reference: a3s_image::ImageRef = rec.image.parse().map_err(|e| {
            EngineError::Io(std::io::Error::other(format!("image {:?}: {e}", rec.image)))
        })?;
        let result = cosign::verify_for_run(&store, &reference, policy);
        let event = |outcome, msg: &str| {
            Event::new("image.verify", outcome, msg)
                .with_box(rec.id.as_str())
                .with("image", rec.image.as_str())
                .with("digest", rec.image_digest.as_str())
        };
        match result {
            Ok(v) => {
                let mut e = event(Outcome::Success, "signature verified before launch");
                if let Some(signer) = v.signer() {
                    e = e.with("key", signer);
                }
                if let Some(d) = v.signed_digest() {
                    e = e.with("signed_digest", d.as_str());
                }
                self.record(&e)
            }
            Err(err) => {
                self.record(&event(Outcome::Denied, &err.to_string()))?;
                Err(EngineError::ImageRefused {
                    image: rec.image.clone(),
                    digest: rec.image_digest.clone(),
                    source: Box::new(err),
                })
            }
        }
    }
}
