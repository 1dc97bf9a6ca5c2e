//! Box lifecycle and I/O: start, stop, restart, kill, remove, wait, inspect, list, stats,
//! logs, exec, attach, import, and the monitor process's entry point.

use std::os::unix::net::UnixStream;
use std::path::Path;

use serde::Serialize;

use a3s_vmm::proto::ProcessSpec;

use super::{Engine, EngineError};
use crate::audit::{Event, Outcome};
use crate::boxes::client::{ClientMsg, MonitorMsg};
use crate::boxes::logs::{self, LogRecord};
use crate::boxes::{BoxError, BoxRecord, BoxState};
use crate::state::BoxId;

/// What `logs` reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogRequest {
    /// Keep streaming until the box stops.
    pub follow: bool,
    /// Only the last N records already written.
    pub tail: Option<usize>,
    /// Only records received at or after this time (`--since`).
    pub since: Option<time::OffsetDateTime>,
    /// Only records received before this time (`--until`); following stops when it has passed.
    pub until: Option<time::OffsetDateTime>,
}

/// One running box's resource use (`stats`).
#[derive(Clone, Debug, Serialize)]
pub struct BoxStats {
    /// Box id.
    pub id: String,
    /// Box name.
    pub name: String,
    /// The QEMU process.
    pub qemu_pid: u32,
    /// CPU time QEMU used so far (host side).
    pub cpu_seconds: f64,
    /// QEMU's resident memory (host side; guest RAM it touched plus QEMU itself).
    pub rss_kib: u64,
    /// vCPUs.
    pub vcpus: u8,
    /// The VM's memory (the workload's limit, if any, is the guest's `mem_limit_bytes`).
    pub mem_mib: u32,
    /// Paused: the guest cannot answer, the guest figures are absent.
    pub paused: bool,
    /// What the guest kernel reports (absent while paused).
    pub guest: Option<a3s_vmm::proto::GuestStats>,
    /// Guest CPU use over the sampling interval, 100 per fully busy vCPU (Docker's CPU %).
    pub cpu_percent: Option<f64>,
}

/// Docker's CPU %: the busy share of all CPU time between two samples, times the CPUs.
pub fn cpu_percent(before: &a3s_vmm::proto::GuestStats, after: &a3s_vmm::proto::GuestStats) -> f64 {
    let busy = after.cpu_busy_ticks.saturating_sub(before.cpu_busy_ticks);
    let total = after.cpu_total_ticks.saturating_sub(before.cpu_total_ticks);
    if total == 0 {
        return 0.0;
    }
    busy as f64 / total as f64 * f64::from(after.online_cpus.max(1)) * 100.0
}

/// The interval `stats` measures CPU use over (Docker samples about once a second).
pub const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Engine {
    /// `start`: boots a created or exited box (measurement, launch, attestation, workload:
    /// see [`Engine::run`]); the attempt is audited with its outcome.
    ///
    /// # Errors
    /// Preparation errors, or [`BoxError::StartFailed`] with the monitor's reason.
    pub fn start(&self, key: &str) -> Result<BoxRecord, EngineError> {
        let exe = self.monitor_exe()?;
        match self.boxes.start(key, &exe) {
            Ok(rec) => {
                self.record_box("box.start", &rec, Outcome::Success, "started")?;
                Ok(rec)
            }
            Err(e) => {
                if let Ok(rec) = self.boxes.find(key) {
                    self.record_box("box.start", &rec, Outcome::Failure, &e.to_string())?;
                }
                Err(e.into())
            }
        }
    }

    /// `system boot`: after a host reboot, starts every stopped box whose restart policy
    /// asks for it (`always`; `unless-stopped` unless the user stopped it). Returns each
    /// box's name and how its start went; one failure does not stop the others.
    ///
    /// # Errors
    /// Listing the boxes failed.
    #[allow(clippy::type_complexity)]
    pub fn start_after_boot(&self) -> Result<Vec<(String, Result<(), EngineError>)>, EngineError> {
        use crate::boxes::restart::RestartPolicy;
        let mut out = Vec::new();
        for rec in self.list(true)? {
            let wanted = match rec.spec.restart {
                RestartPolicy::Always => true,
                RestartPolicy::UnlessStopped => !rec.stopped_by_user,
                _ => false,
            };
            if wanted && !rec.state.is_active() {
                out.push((rec.name.clone(), self.start(rec.id.as_str()).map(drop)));
            }
        }
        Ok(out)
    }

    /// `stop`: the box's stop signal, then SIGKILL of the VM after the timeout (see
    /// [`crate::boxes::Boxes::stop`]).
    ///
    /// # Errors
    /// Monitor errors.
    pub fn stop(
        &self,
        key: &str,
        opts: impl Into<crate::boxes::StopOptions>,
    ) -> Result<BoxRecord, EngineError> {
        let rec = self.boxes.stop(key, opts)?;
        self.record_box("box.stop", &rec, Outcome::Success, "stopped")?;
        self.boxes.emit(&rec, "stop", &[]);
        Ok(rec)
    }

    /// `pause`: stops the box's vCPUs (its memory stays; see [`crate::boxes::Boxes::pause`]).
    ///
    /// # Errors
    /// [`BoxError::NotRunning`], [`BoxError::Paused`], QMP errors.
    pub fn pause(&self, key: &str) -> Result<BoxRecord, EngineError> {
        let rec = self.boxes.pause(key)?;
        self.record_box("box.pause", &rec, Outcome::Success, "paused")?;
        Ok(rec)
    }

    /// `unpause`: runs a paused box's vCPUs again.
    ///
    /// # Errors
    /// [`BoxError::NotPaused`], QMP errors.
    pub fn unpause(&self, key: &str) -> Result<BoxRecord, EngineError> {
        let rec = self.boxes.unpause(key)?;
        self.record_box("box.unpause", &rec, Outcome::Success, "unpaused")?;
        Ok(rec)
    }

    /// `restart`: stop, then start.
    ///
    /// # Errors
    /// Those of [`Engine::stop`] and [`Engine::start`].
    pub fn restart(
        &self,
        key: &str,
        opts: impl Into<crate::boxes::StopOptions>,
    ) -> Result<BoxRecord, EngineError> {
        let rec = self.boxes.stop(key, opts)?;
        self.record_box("box.stop", &rec, Outcome::Success, "stopped for restart")?;
        self.start(key)
    }

    /// `kill`: sends `signal` to the workload.
    ///
    /// # Errors
    /// [`BoxError::NotRunning`] or monitor errors.
    pub fn kill(&self, key: &str, signal: i32) -> Result<BoxRecord, EngineError> {
        let rec = self.boxes.find(key)?;
        self.boxes.request(&rec, &ClientMsg::Signal { signal })?;
        self.record_box(
            "box.kill",
            &rec,
            Outcome::Success,
            &format!("signal {signal}"),
        )?;
        self.boxes
            .emit(&rec, "kill", &[("signal", signal.to_string())]);
        Ok(rec)
    }

    /// `rm`: removes a box (stopping it first with `force`); its anonymous volumes stay
    /// (see [`Engine::remove_with_volumes`]).
    ///
    /// # Errors
    /// [`BoxError::StillRunning`] without `force`.
    pub fn remove(&self, key: &str, force: bool) -> Result<BoxRecord, EngineError> {
        self.remove_with_volumes(key, force, false)
    }

    /// `rm [-v]`: removes a box, with `volumes` also the anonymous volumes created for it
    /// (named volumes and bind mounts stay, as in Docker).
    ///
    /// # Errors
    /// [`BoxError::StillRunning`] without `force`.
    pub fn remove_with_volumes(
        &self,
        key: &str,
        force: bool,
        volumes: bool,
    ) -> Result<BoxRecord, EngineError> {
        let rec = self.boxes.remove_with_volumes(key, force, volumes)?;
        let what = if volumes {
            "removed with its anonymous volumes"
        } else {
            "removed"
        };
        self.record_box("box.remove", &rec, Outcome::Success, what)?;
        Ok(rec)
    }

    /// `rename`: gives a box a new (unique) name; audited with both names.
    ///
    /// # Errors
    /// A bad or taken name; an unknown box.
    pub fn rename(&self, key: &str, new_name: &str) -> Result<BoxRecord, EngineError> {
        let old = self.boxes.find(key)?;
        let rec = self.boxes.rename(key, new_name)?;
        self.record_box(
            "box.rename",
            &rec,
            Outcome::Success,
            &format!("renamed from {}", old.name),
        )?;
        Ok(rec)
    }

    /// `ps`: the boxes that pass `filter`, oldest first (`all: false`: only active ones,
    /// unless the filter asks about stopped boxes, as Docker's does).
    ///
    /// # Errors
    /// i/o on the boxes directory; a `before`/`since` filter naming no box.
    pub fn list_filtered(
        &self,
        all: bool,
        filter: &crate::boxes::filter::BoxFilter,
    ) -> Result<Vec<BoxRecord>, EngineError> {
        let all = all || filter.implies_all();
        let everything = self.boxes.list()?;
        let matching = filter.apply(everything).map_err(EngineError::Filter)?;
        Ok(matching
            .into_iter()
            .filter(|r| all || r.state.is_active())
            .collect())
    }

    /// `wait`: blocks until the box has run and stopped; returns its final record.
    ///
    /// # Errors
    /// State errors.
    pub fn wait(&self, key: &str) -> Result<BoxRecord, EngineError> {
        let rec = self.boxes.find(key)?;
        Ok(self
            .boxes
            .wait_until(&rec.id, |s| !s.is_active() && *s != BoxState::Created, None)?)
    }

    /// `inspect`: one record by name, id or unique id prefix.
    ///
    /// # Errors
    /// Not found or ambiguous.
    pub fn inspect(&self, key: &str) -> Result<BoxRecord, EngineError> {
        Ok(self.boxes.find(key)?)
    }

    /// `ps`: every box, oldest first (`all: false`: only active ones).
    ///
    /// # Errors
    /// i/o on the boxes directory.
    pub fn list(&self, all: bool) -> Result<Vec<BoxRecord>, EngineError> {
        Ok(self
            .boxes
            .list()?
            .into_iter()
            .filter(|r| all || r.state.is_active())
            .collect())
    }

    /// `stats`: resource use of the boxes named (none named: every running box), measured
    /// by each guest's kernel twice, [`STATS_INTERVAL`] apart, for the CPU share.
    ///
    /// # Errors
    /// A box that is not running; the guest's or monitor's errors.
    pub fn stats(&self, keys: &[String]) -> Result<Vec<BoxStats>, EngineError> {
        let recs: Vec<BoxRecord> = if keys.is_empty() {
            self.boxes
                .list()?
                .into_iter()
                .filter(|r| matches!(r.state, BoxState::Running { .. }))
                .collect()
        } else {
            keys.iter()
                .map(|k| self.boxes.find(k))
                .collect::<Result<_, _>>()?
        };
        let sample = |r: &BoxRecord| -> Result<Option<a3s_vmm::proto::GuestStats>, EngineError> {
            if r.paused {
                return Ok(None);
            }
            match self.boxes.ask(r, &ClientMsg::Stats)? {
                MonitorMsg::Stats(s) => Ok(Some(s)),
                other => Err(BoxError::Monitor(format!("unexpected answer {other:?}")).into()),
            }
        };
        let mut first = Vec::with_capacity(recs.len());
        for r in &recs {
            if !matches!(r.state, BoxState::Running { .. }) {
                return Err(BoxError::NotRunning(r.name.clone()).into());
            }
            first.push(sample(r)?);
        }
        if !recs.is_empty() {
            std::thread::sleep(STATS_INTERVAL);
        }
        let mut out = Vec::new();
        for (r, before) in recs.iter().zip(first) {
            let BoxState::Running { qemu_pid, .. } = r.state else {
                return Err(BoxError::NotRunning(r.name.clone()).into());
            };
            let after = sample(r)?;
            out.push(BoxStats {
                id: r.id.to_string(),
                name: r.name.clone(),
                qemu_pid,
                cpu_seconds: a3s_vmm::qemu::cpu_time_secs(qemu_pid).unwrap_or(0.0),
                rss_kib: a3s_vmm::qemu::rss_kib(qemu_pid).unwrap_or(0),
                vcpus: r.spec.vcpus,
                mem_mib: r.vm_mem_mib.unwrap_or(r.spec.mem_mib),
                paused: r.paused,
                cpu_percent: before
                    .as_ref()
                    .zip(after.as_ref())
                    .map(|(b, a)| cpu_percent(b, a)),
                guest: after,
            });
        }
        Ok(out)
    }

    /// `top`: the processes of a running box's workload, as the guest's `/proc` shows them
    /// (Docker's `Titles`/`Processes`). A TEE box answers only with `--allow-exec`, as exec.
    ///
    /// # Errors
    /// Not running, paused, refused `ps` options, TEE refusal.
    pub fn top(
        &self,
        key: &str,
        ps_args: &[String],
    ) -> Result<(Vec<String>, Vec<Vec<String>>), EngineError> {
        let rec = self.boxes.find(key)?;
        self.refuse_host_access(&rec, "top")?;
        let msg = ClientMsg::Top {
            ps_args: ps_args.to_vec(),
        };
        match self.boxes.ask(&rec, &msg)? {
            MonitorMsg::Processes { titles, processes } => Ok((titles, processes)),
            other => Err(BoxError::Monitor(format!("unexpected answer {other:?}")).into()),
        }
    }

    /// `logs`: a box's output to `sink`; with `follow`, until the box stops.
    ///
    /// # Errors
    /// Not found, i/o, or the sink's error.
    pub fn logs(
        &self,
        key: &str,
        req: LogRequest,
        sink: &mut dyn FnMut(&[LogRecord]) -> std::io::Result<()>,
    ) -> Result<BoxRecord, EngineError> {
        let rec = self.boxes.find(key)?;
        let path = self.boxes.output_log(&rec);
        let (mut records, mut offset) = logs::read_from(&path, 0)?;
        records.retain(|r| logs::in_window(r, req.since, req.until));
        if let Some(n) = req.tail {
            let skip = records.len().saturating_sub(n);
            records.drain(..skip);
        }
        sink(&records)?;
        let until_passed = req
            .until
            .is_some_and(|u| u <= time::OffsetDateTime::now_utc());
        if req.follow && !until_passed {
            let mut windowed = |batch: &[LogRecord]| {
                let kept: Vec<LogRecord> = batch
                    .iter()
                    .filter(|r| logs::in_window(r, req.since, req.until))
                    .cloned()
                    .collect();
                sink(&kept)
            };
            return self.follow(&rec, &mut offset, &mut windowed);
        }
        Ok(rec)
    }

    /// `exec`: opens a session running `process` in a running box, as the box's user in its
    /// working directory unless `process` says otherwise (the connection carries
    /// the guest protocol's frames). A TEE box refuses unless created with `allow_exec`; the
    /// refusal and the exec are audited.
    ///
    /// # Errors
    /// [`crate::tee::TeeError::ExecRefused`], [`BoxError::NotRunning`], monitor errors.
    pub fn exec(
        &self,
        key: &str,
        mut process: ProcessSpec,
    ) -> Result<(BoxRecord, UnixStream), EngineError> {
        let rec = self.boxes.find(key)?;
        self.refuse_host_access(&rec, "exec")?;
        // Docker's exec: the box's user and working directory unless the request names others.
        if process.user.is_none() {
            process.user.clone_from(&rec.spec.process.user);
        }
        if process.workdir.is_none() {
            process.workdir.clone_from(&rec.spec.process.workdir);
        }
        let command = process.argv.join(" ");
        self.record_box(
            "box.exec",
            &rec,
            Outcome::Success,
            &format!("exec {command}"),
        )?;
        let conn = self.boxes.exec(&rec, process)?;
        self.boxes
            .emit(&rec, &format!("exec_create: {command}"), &[]);
        self.boxes
            .emit(&rec, &format!("exec_start: {command}"), &[]);
        Ok((rec, conn))
    }

    /// `exec -d`: starts `process` in a running box and returns once it runs there (its guest
    /// pid), leaving it running with its output discarded, as Docker's detached exec does.
    ///
    /// # Errors
    /// Those of [`Engine::exec`]; [`EngineError::ExecFailed`] when the process could not start
    /// (its Docker code, 126 or 127, and why).
    pub fn exec_detached(&self, key: &str, process: ProcessSpec) -> Result<i32, EngineError> {
        let (rec, mut conn) = self.exec(key, process)?;
        loop {
            let frame = a3s_vmm::proto::read_frame(&mut conn).map_err(|e| {
                EngineError::context(format!("lost the exec session of box {}", rec.name), e)
            })?;
            if frame.kind != a3s_vmm::proto::Kind::Control {
                continue;
            }
            match frame.message::<MonitorMsg>() {
                Ok(MonitorMsg::Started { pid, .. }) => return Ok(pid),
                Ok(MonitorMsg::SpawnFailed { code, message }) => {
                    return Err(EngineError::ExecFailed { code, message })
                }
                // Ended before its start was seen (a very short process).
                Ok(MonitorMsg::Exited { .. }) => return Ok(0),
                Ok(MonitorMsg::Error { message }) => return Err(BoxError::Monitor(message).into()),
                _ => {}
            }
        }
    }

    /// Refuses host `exec`/`attach` into a TEE box without `--allow-exec` (audited). The
    /// monitor refuses too, for clients that bypass the engine.
    pub(super) fn refuse_host_access(
        &self,
        rec: &BoxRecord,
        what: &str,
    ) -> Result<(), EngineError> {
        let Some(tee) = &rec.spec.tee else {
            return Ok(());
        };
        if tee.allow_exec {
            return Ok(());
        }
        let err = crate::tee::TeeError::ExecRefused {
            what: what.to_owned(),
            name: rec.name.clone(),
        };
        self.record(
            &Event::new("box.exec", Outcome::Denied, err.to_string())
                .with_box(rec.id.as_str())
                .with("name", rec.name.as_str()),
        )?;
        Err(err.into())
    }

    /// `import`: a root filesystem tarball as image `reference`.
    ///
    /// # Errors
    /// Store errors.
    pub fn import_rootfs(
        &self,
        tarball: &Path,
        reference: &a3s_image::ImageRef,
        import: &a3s_image::store::Import,
    ) -> Result<a3s_image::LocalImage, EngineError> {
        let store = a3s_image::ImageStore::open(self.home.root().join("images"))?;
        Ok(store.import_rootfs_with(tarball, reference, import)?)
    }

    /// The box monitor process's body (`a3s-box __monitor ID`): boots the box and serves it
    /// until it ends.
    ///
    /// # Errors
    /// Monitor errors.
    pub fn serve_monitor(&self, id: &BoxId) -> Result<(), EngineError> {
        Ok(crate::boxes::monitor::run(&self.boxes, id)?)
    }
}
