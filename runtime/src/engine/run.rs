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

    /// The user detached (Docker's detach keys): the front end returns and the box keeps
    /// running. Asked between reads of the output.
    fn detached(&self) -> bool {
        false
    }
}

impl RunEvents for () {}

/// What `run` did.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The box as it was created (it may be gone after an auto-remove).
    pub record: BoxRecord,
    /// The workload's exit code (foreground runs the user did not detach from).
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
            let _ = self.boxes.remove_with_volumes(rec.id.as_str(), true, true);
            return Err(e);
        }
        self.record_box("box.create", &rec, Outcome::Success, "created")?;
        for v in Volumes::open(&self.home).owned_by(&rec.id)? {
            self.record(
                &Event::new("volume.create", Outcome::Success, "anonymous, for the box")
                    .with_box(rec.id.as_str())
                    .with("volume", v.name.as_str()),
            )?;
        }
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
        let result = match mode {
            RunMode::Detached => self.start(rec.id.as_str()).map(|_| None),
            RunMode::Foreground => self.run_foreground(&rec, events),
        };
        // A box that started removes itself when it ends (its monitor does; a foreground run
        // removed it already). A run refused before boot (too little memory) leaves no box
        // behind either way.
        let refused = matches!(&result, Err(EngineError::Box(e)) if e.refused_before_boot());
        let failed_detached = mode == RunMode::Detached && result.is_err();
        if refused || (req.request.auto_remove && failed_detached) {
            let _ = self.boxes.remove_with_volumes(rec.id.as_str(), true, true);
        }
        Ok(RunOutcome {
            record: rec,
            exit_code: result?,
        })
    }

    /// Steps 3-6 for a foreground box, then waits for the workload to end (`None`: the user
    /// detached and the box runs on). The box does not depend on this process; a `--rm` box
    /// is removed here once its exit is read (if this process dies first, its monitor
    /// removes it when the workload exits).
    fn run_foreground(
        &self,
        rec: &BoxRecord,
        io: &mut dyn RunEvents,
    ) -> Result<Option<i32>, EngineError> {
        self.record_box(
            "box.start",
            rec,
            Outcome::Success,
            "starting in the foreground",
        )?;
        self.start_held(rec, true, io)
    }

    /// `start -a`: starts the stopped box `key` with this front end as its terminal, as a
    /// foreground `run` does (stdin too when `stdin` and the box has one), and waits for the
    /// workload to end (`None`: the user detached). A running box is attached to instead.
    ///
    /// # Errors
    /// As [`Self::attach`] and a foreground run.
    pub fn start_foreground(
        &self,
        key: &str,
        stdin: bool,
        io: &mut dyn RunEvents,
    ) -> Result<Option<i32>, EngineError> {
        let rec = self.boxes.find(key)?;
        if matches!(rec.state, BoxState::Running { .. }) {
            return self.attach(key, stdin, io);
        }
        self.record_box(
            "box.start",
            &rec,
            Outcome::Success,
            "starting in the foreground",
        )?;
        self.start_held(&rec, stdin, io)
    }

    /// Starts `rec` attached, holding its exit for us; removes a `--rm` box once it ended.
    fn start_held(
        &self,
        rec: &BoxRecord,
        stdin: bool,
        io: &mut dyn RunEvents,
    ) -> Result<Option<i32>, EngineError> {
        // Taken before the monitor exists, so even a workload that ends at once waits for us.
        let hold = self.boxes.hold_exit(rec)?;
        let result = self.start_attached(rec, stdin, io);
        if rec.spec.auto_remove && !matches!(result, Ok(None)) {
            // While the hold keeps the monitor from removing it at the same time.
            let _ = self.boxes.remove(rec.id.as_str(), true);
        }
        drop(hold);
        result
    }

    fn start_attached(
        &self,
        rec: &BoxRecord,
        stdin: bool,
        io: &mut dyn RunEvents,
    ) -> Result<Option<i32>, EngineError> {
        // A restarted box's log holds its earlier runs: show only this run's output.
        let offset = std::fs::metadata(self.boxes.output_log(rec)).map_or(0, |m| m.len());
        let started = self.boxes.start(rec.id.as_str(), &self.monitor_exe()?)?;
        let stdin =
            if stdin && rec.spec.process.stdin && matches!(started.state, BoxState::Running { .. })
            {
                self.boxes.attach_stdin(&started).ok()
            } else {
                None
            };
        io.running(&started, stdin);
        self.stream_until_exit(rec, offset, io)
    }

    /// `attach`: this front end becomes the terminal of a running box's workload: its output
    /// from now on, its stdin (`stdin`, when the box was created with one), until the
    /// workload exits (its code) or the user detaches (`None`). A TEE box refuses unless
    /// created with `allow_exec` (audited), like `exec`.
    ///
    /// # Errors
    /// [`crate::boxes::BoxError::NotRunning`], [`crate::tee::TeeError::ExecRefused`],
    /// monitor errors.
    pub fn attach(
        &self,
        key: &str,
        stdin: bool,
        io: &mut dyn RunEvents,
    ) -> Result<Option<i32>, EngineError> {
        let rec = self.boxes.find(key)?;
        if !matches!(rec.state, BoxState::Running { .. }) {
            return Err(crate::boxes::BoxError::NotRunning(rec.name).into());
        }
        self.refuse_host_access(&rec, "attach")?;
        // A `--rm` box stays until we have read its exit.
        let _hold = self.boxes.hold_exit(&rec)?;
        // Docker's attach shows output from now on (`logs` shows the past).
        let offset = std::fs::metadata(self.boxes.output_log(&rec)).map_or(0, |m| m.len());
        let conn = if stdin && rec.spec.process.stdin {
            Some(self.boxes.attach_stdin(&rec)?)
        } else {
            None
        };
        self.record_box("box.attach", &rec, Outcome::Success, "attached")?;
        io.running(&rec, conn);
        self.stream_until_exit(&rec, offset, io)
    }

    /// `resize`: a `-t` box's terminal changed size (the front end saw SIGWINCH).
    ///
    /// # Errors
    /// [`crate::boxes::BoxError::NotRunning`] or monitor errors.
    pub fn resize(&self, key: &str, rows: u16, cols: u16) -> Result<(), EngineError> {
        let rec = self.boxes.find(key)?;
        Ok(self.boxes.resize(&rec, rows, cols)?)
    }

    /// The workload's output from `offset` to `io` until it exits (its code; a start failure
    /// is [`EngineError::BoxFailed`]) or `io` detaches (`None`).
    fn stream_until_exit(
        &self,
        rec: &BoxRecord,
        mut offset: u64,
        io: &mut dyn RunEvents,
    ) -> Result<Option<i32>, EngineError> {
        let mut sink = |r: &[LogRecord]| io.output(r).map(|()| io.detached());
        let Some(done) = self.follow_until(rec, &mut offset, &mut sink)? else {
            return Ok(None);
        };
        match done.state {
            BoxState::Exited {
                exit_code: 125,
                error: Some(message),
            } => Err(EngineError::BoxFailed {
                name: done.name,
                message,
            }),
            BoxState::Exited { exit_code, .. } => Ok(Some(exit_code)),
            _ => Ok(Some(0)),
        }
    }

    /// Streams a box's output from `offset` until it stops; returns its final record.
    pub(super) fn follow(
        &self,
        rec: &BoxRecord,
        offset: &mut u64,
        sink: &mut dyn FnMut(&[LogRecord]) -> std::io::Result<()>,
    ) -> Result<BoxRecord, EngineError> {
        let mut never_stop = |r: &[LogRecord]| sink(r).map(|()| false);
        let done = self.follow_until(rec, offset, &mut never_stop)?;
        done.ok_or_else(|| EngineError::Io(std::io::Error::other("log follow stopped")))
    }

    /// [`Engine::follow`] whose sink may end it early by returning `true` (then `None`).
    fn follow_until(
        &self,
        rec: &BoxRecord,
        offset: &mut u64,
        sink: &mut dyn FnMut(&[LogRecord]) -> std::io::Result<bool>,
    ) -> Result<Option<BoxRecord>, EngineError> {
        let path = self.boxes.output_log(rec);
        loop {
            let (records, next) = logs::read_from(&path, *offset)?;
            *offset = next;
            if sink(&records)? {
                return Ok(None);
            }
            if records.is_empty() {
                let now = self.boxes.wait_until(&rec.id, |_| true, None)?;
                if !now.state.is_active() {
                    // The monitor writes output before the exit; one last read drains it.
                    let (records, next) = logs::read_from(&path, *offset)?;
                    *offset = next;
                    sink(&records)?;
                    return Ok(Some(now));
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
