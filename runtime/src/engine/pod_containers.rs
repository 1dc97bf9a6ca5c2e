//! Containers in pods, written once here for every front end (the CRI server today).
//!
//! A container is a process in its pod's VM with its own root filesystem and mount namespace:
//! create copies the image's unpacked root filesystem from the image store into the pod VM
//! (`/containers/<id>/rootfs`, on the pod's writable layer); start asks guest-init to spawn the
//! process there in a new mount namespace sharing the VM's network and UTS namespaces (so the
//! pod's containers reach each other on localhost). See docs/cri.md for why this copy is used
//! instead of hot-plugged block devices. A confidential pod never takes that copy: its images
//! go to the guest as verified blobs (`pod_images`).
//!
//! The process's session (its monitor connection) is held by a watcher thread of the process
//! that started it (the CRI server): the watcher writes the CRI log and records the exit.
//! guest-init supervises the process itself (its exit status and, bounded, its output are
//! kept while no session is attached), so a restarted server re-attaches to every running
//! container ([`Engine::recover_containers`]) and records exits that happened meanwhile.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use a3s_image::ImageRef;
use a3s_vmm::proto::{self, Frame, HostMsg, Kind, ProcessSpec};

use super::slow_answer::{self, SlowAnswerWatch, SLOW_ANSWER};
use super::{Engine, EngineError};
use crate::audit::{Event, Outcome};
use crate::boxes::client::{ClientMsg, MonitorMsg};
use crate::boxes::signal::parse_signal;
use crate::boxes::{BoxRecord, BoxState};
use crate::pod_containers::cri_log::{CriLog, Stream};
use crate::pod_containers::{
    argv_of, ContainerRecord, ContainerSpec, ContainerState, Containers, GUEST_CONTAINERS,
};
use crate::pods::detached::MountNs;
use crate::pods::share::PodShare;
use crate::pods::{PodError, PodRecord, Pods};
use crate::state::BoxId;
use crate::volumes::MountSource;

/// Output of an exec kept for the caller (CRI messages are limited to 16 MiB).
const MAX_EXEC_OUTPUT: usize = 8 << 20;
/// How long a stop waits for the process after SIGKILL (the guest reports the exit).
const KILL_WAIT: Duration = Duration::from_secs(30);
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// What an exec in a container printed and how it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code.
    pub code: i32,
    /// Standard output (a terminal's merged output).
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

/// Attached clients' output channels.
type Taps = Mutex<Vec<std::sync::mpsc::Sender<(Stream, Vec<u8>)>>>;

/// A running container watched by this process.
struct Live {
    /// Write side of the session: signals and stdin go up it.
    conn: UnixStream,
    log: Arc<Mutex<Option<CriLog>>>,
    /// Set once the watcher recorded the exit.
    done: Arc<(Mutex<bool>, Condvar)>,
    /// Attached clients' output channels.
    taps: Arc<Taps>,
}

/// The containers this process watches (their sessions live as long as this process).
fn live() -> &'static Mutex<HashMap<String, Live>> {
    static LIVE: OnceLock<Mutex<HashMap<String, Live>>> = OnceLock::new();
    LIVE.get_or_init(Mutex::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn signal_frame(signal: i32) -> Result<Frame, EngineError> {
    Frame::control(0, &HostMsg::Signal { signal })
        .map_err(|e| EngineError::context("encoding a signal", e))
}

impl Engine {
    fn containers(&self) -> Containers {
        Containers::open(&self.home)
    }

    /// The pod `key` names and its VM's box, which must be running.
    pub(super) fn running_pod(&self, key: &str) -> Result<(PodRecord, BoxRecord), EngineError> {
        let pod = Pods::open(&self.home).find(key)?;
        let boxed = self.boxes.find(&pod.box_id)?;
        if !matches!(boxed.state, BoxState::Running { .. }) {
            return Err(PodError::WrongState(format!(
                "pod sandbox {} is not ready (its VM is not running); run a new pod",
                pod.id
            ))
            .into());
        }
        Ok((pod, boxed))
    }

    /// Runs `argv` in the pod VM's own root (busybox) and fails on a non-zero exit.
    fn pod_command(&self, boxed: &BoxRecord, argv: &[&str]) -> Result<(), EngineError> {
        let process = ProcessSpec {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            ..ProcessSpec::default()
        };
        let conn = self.boxes.exec(boxed, process)?;
        let out = collect(conn, None)?;
        if out.code != 0 {
            return Err(EngineError::BoxFailed {
                name: boxed.name.clone(),
                message: format!(
                    "{}: exit {}: {}",
                    argv.join(" "),
                    out.code,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }

    /// CreateContainer: resolves the image, copies its root filesystem into the pod's VM and
    /// records the container. Audited (`container.create`).
    ///
    /// # Errors
    /// Pod not found or not ready, a name already used in the pod, image store errors, the
    /// copy into the VM.
    pub fn create_container(
        &self,
        pod_key: &str,
        spec: ContainerSpec,
        image: &ImageRef,
    ) -> Result<ContainerRecord, EngineError> {
        let (pod, boxed) = self.running_pod(pod_key)?;
        if spec.security.as_ref().is_some_and(|s| s.privileged) && !pod.spec.privileged {
            return Err(PodError::Invalid(format!(
                "container {:?} is privileged but pod {} is not: a privileged container needs \
                 a pod whose security context is privileged (as containerd requires)",
                spec.name, pod.id
            ))
            .into());
        }
        let containers = self.containers();
        if let Some(c) = containers.list()?.into_iter().find(|c| {
            c.pod_id == pod.id && c.spec.name == spec.name && c.spec.attempt == spec.attempt
        }) {
            return Err(PodError::WrongState(format!(
                "container name {:?} (attempt {}) is already used by container {} in pod {}; \
                 remove it first",
                spec.name, spec.attempt, c.id, pod.id
            ))
            .into());
        }
        let store = self.image_store()?;
        let local = store.resolve(image)?;
        let id = BoxId::random().as_str().to_owned();
        let dir = format!("{GUEST_CONTAINERS}/{id}");
        let tee = Self::recorded_pod_tee(&pod)?;
        let share = PodShare::of(&self.home, &pod.id);
        // A plain pod's container runs on the image's erofs under its own overlay, reached
        // through the pod's share (pods::share); a confidential pod's is verified and
        // unpacked by the guest itself.
        let root = match &tee {
            Some(tee) => Self::check_mount_copies(&spec.mounts)
                .and_then(|()| self.place_verified_image(&pod, tee, &boxed, &local, &dir))
                .map(|()| None),
            None => store
                .filesystem(&local)
                .map_err(EngineError::from)
                .and_then(|fs| Ok(Some(share.mount_root(&id, &fs.path)?))),
        }?;
        let mounts = match &tee {
            // Copies: a confidential pod shares no directory with the host (pod_images).
            Some(_) => self
                .copy_mounts_in(&boxed, &id, &spec.mounts)
                .inspect_err(|_| {
                    let _ = self.remove_verified_root(&boxed, &dir);
                }),
            None if spec.mounts.is_empty() => Ok(Vec::new()),
            None => self
                .share_namespace(&boxed, share.dir())
                .and_then(|ns| Ok(share.bind(&id, &spec.mounts, &ns)?))
                .inspect_err(|_| {
                    let _ = share.unbind(&id);
                }),
        }?;
        let config = &local.config;
        let mut env = config.env.clone();
        env.extend(spec.env.iter().cloned());
        let stop_signal = config
            .stop_signal
            .as_deref()
            .and_then(|s| parse_signal(s).ok())
            .unwrap_or(SIGTERM);
        let rec = ContainerRecord {
            id,
            pod_id: pod.id.clone(),
            argv: argv_of(&spec, &config.entrypoint, &config.cmd),
            env,
            workdir: spec.workdir.clone().or_else(|| config.working_dir.clone()),
            user: spec.user.clone().or_else(|| config.user.clone()),
            stop_signal,
            image_ref: local.reference.to_string(),
            image_id: local.digest.to_string(),
            spec,
            state: ContainerState::Created,
            created_ns: now_ns(),
            started_ns: 0,
            finished_ns: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            mounts,
            root,
            process_user: None,
        };
        {
            let _lock = Pods::open(&self.home).lock()?;
            if let Err(e) = containers.save(&rec) {
                let _ = share.unbind(&rec.id);
                return Err(e.into());
            }
        }
        self.record_container("container.create", &rec, Outcome::Success, "created")?;
        Ok(rec)
    }

    pub(super) fn record_container(
        &self,
        action: &str,
        rec: &ContainerRecord,
        outcome: Outcome,
        message: &str,
    ) -> Result<(), EngineError> {
        self.record(
            &Event::new(action, outcome, message)
                .with("container", rec.id.as_str())
                .with("pod", rec.pod_id.as_str())
                .with("name", rec.spec.name.as_str()),
        )
    }

    /// Saves `rec` under the store lock unless it was removed meanwhile.
    pub(super) fn update_container(&self, rec: &ContainerRecord) -> Result<(), EngineError> {
        let _lock = Pods::open(&self.home).lock()?;
        let containers = self.containers();
        match containers.find(&rec.id) {
            Ok(_) => Ok(containers.save(rec)?),
            Err(PodError::ContainerNotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// StartContainer: starts a created container's process in its pod's VM and returns once
    /// the guest reports it running; a process that cannot start leaves the container exited
    /// with reason `StartError`. Audited (`container.start`).
    ///
    /// # Errors
    /// Not found, not `created`, pod not ready, [`PodError::StartFailed`].
    pub fn start_container(&self, key: &str) -> Result<ContainerRecord, EngineError> {
        let mut rec = self.containers().find(key)?;
        if rec.state != ContainerState::Created {
            return Err(PodError::WrongState(format!(
                "container {} is {:?}, not created; create a new container to run it again",
                rec.id, rec.state
            ))
            .into());
        }
        let (_, boxed) = self.running_pod(&rec.pod_id)?;
        let log = match &rec.spec.log_path {
            Some(p) => Some(CriLog::open(p)?),
            None => None,
        };
        let process = ProcessSpec {
            argv: rec.argv.clone(),
            env: rec.env.clone(),
            workdir: rec.workdir.clone(),
            user: rec.user.clone(),
            tty: rec.spec.tty,
            tty_size: None,
            stdin: rec.spec.stdin,
        };
        let msg = ClientMsg::ContainerExec {
            process,
            root: rec.guest_root(),
            id: Some(rec.id.clone()),
            resources: Some(rec.spec.resources.clone()),
            mounts: rec.mounts.clone(),
            security: rec.spec.security.clone().map(Box::new),
        };
        let mut conn = self.boxes.container_session(&boxed, &msg)?;
        let log = Arc::new(Mutex::new(log));
        let taps = Arc::new(Mutex::new(Vec::new()));
        let what = format!("starting container {} in pod {}", rec.id, rec.pod_id);
        let console = self.boxes.box_dir(&boxed.id).join("console.log");
        let watch = SlowAnswerWatch::arm(SLOW_ANSWER, move || {
            tracing::warn!("{}", slow_answer::warning(&what, SLOW_ANSWER, &console));
        });
        let started = await_started(&mut conn, &log, &taps);
        drop(watch);
        if let Ok(user) = &started {
            rec.process_user.clone_from(user);
        }
        if let Err((message, code)) = started {
            rec.exit_code = code;
            rec.state = ContainerState::Exited;
            rec.finished_ns = now_ns();
            rec.started_ns = rec.finished_ns;
            if rec.exit_code == 0 {
                rec.exit_code = 128;
            }
            rec.reason = "StartError".into();
            rec.message.clone_from(&message);
            self.update_container(&rec)?;
            self.record_container("container.start", &rec, Outcome::Failure, &message)?;
            return Err(PodError::StartFailed {
                id: rec.id.clone(),
                message,
            }
            .into());
        }
        rec.state = ContainerState::Running;
        rec.started_ns = now_ns();
        self.update_container(&rec)?;
        self.supervise(&rec.id, conn, log, taps)?;
        self.record_container("container.start", &rec, Outcome::Success, "running")?;
        Ok(rec)
    }

    /// Hands a running container's session to a watcher thread of this process.
    fn supervise(
        &self,
        id: &str,
        conn: UnixStream,
        log: Arc<Mutex<Option<CriLog>>>,
        taps: Arc<Taps>,
    ) -> Result<(), EngineError> {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let writer = conn.try_clone()?;
        lock(live()).insert(
            id.to_owned(),
            Live {
                conn: writer,
                log: log.clone(),
                done: done.clone(),
                taps: taps.clone(),
            },
        );
        let (engine, id) = (self.clone(), id.to_owned());
        std::thread::spawn(move || engine.watch(&id, conn, &log, &taps, &done));
        Ok(())
    }

    /// After a restart of the process that watched them (the CRI server): re-attaches to every
    /// container recorded running whose pod VM runs (a new session to guest-init, which kept
    /// its output and exit), resumes its CRI log, and records exits that happened meanwhile
    /// (the watcher receives them at once). Returns how many were re-attached; containers that
    /// cannot be re-attached stay reported as exited with reason `Unknown`.
    ///
    /// # Errors
    /// Store errors.
    pub fn recover_containers(&self) -> Result<usize, EngineError> {
        let mut attached = 0;
        for rec in self.containers().list()? {
            if rec.state != ContainerState::Running || lock(live()).contains_key(&rec.id) {
                continue;
            }
            match self.reattach(&rec) {
                Ok(()) => attached += 1,
                Err(e) => tracing::warn!("re-attaching container {}: {e}", rec.id),
            }
        }
        Ok(attached)
    }

    fn reattach(&self, rec: &ContainerRecord) -> Result<(), EngineError> {
        let (pod, boxed) = self.running_pod(&rec.pod_id)?;
        // A confidential pod without the host-access opt-in takes back only the output (and
        // stop signals): its stdin stays out of the host's reach.
        let output_only = Self::recorded_pod_tee(&pod)?.is_some_and(|t| !t.tee.allow_exec);
        let mut conn = self.boxes.container_session(
            &boxed,
            &ClientMsg::ContainerAttach {
                id: rec.id.clone(),
                output_only,
            },
        )?;
        let log = match &rec.spec.log_path {
            Some(p) => Some(CriLog::open(p)?),
            None => None,
        };
        let log = Arc::new(Mutex::new(log));
        let taps = Arc::new(Mutex::new(Vec::new()));
        await_started(&mut conn, &log, &taps).map_err(|(message, _)| {
            EngineError::context(
                format!("re-attaching container {}", rec.id),
                std::io::Error::other(message),
            )
        })?;
        self.supervise(&rec.id, conn, log, taps)?;
        self.record_container("container.reattach", rec, Outcome::Success, "re-attached")
    }

    /// The watcher: the running container's output to its log, then its exit to its record.
    fn watch(
        &self,
        id: &str,
        mut conn: UnixStream,
        log: &Mutex<Option<CriLog>>,
        taps: &Taps,
        done: &(Mutex<bool>, Condvar),
    ) {
        let mut oom_killed = false;
        let (code, reason, message) = loop {
            match proto::read_frame(&mut conn) {
                Ok(frame) => match frame.kind {
                    Kind::Stdout | Kind::Stderr => output(log, taps, &frame),
                    Kind::Control => match frame.message::<MonitorMsg>() {
                        Ok(MonitorMsg::OomKilled) => oom_killed = true,
                        Ok(MonitorMsg::Exited { code }) => {
                            let reason = match code {
                                0 => "Completed",
                                _ if oom_killed => "OOMKilled",
                                _ => "Error",
                            };
                            break (code, reason, String::new());
                        }
                        Ok(MonitorMsg::Error { message }) => break (255, "Error", message),
                        _ => {}
                    },
                    _ => {}
                },
                Err(e) => {
                    break (
                        137,
                        "PodStopped",
                        format!("the pod VM stopped under the container ({e})"),
                    )
                }
            }
        };
        if let Some(l) = lock(log).as_mut() {
            let _ = l.finish();
        }
        lock(taps).clear();
        if let Ok(mut rec) = self.containers().find(id) {
            rec.state = ContainerState::Exited;
            rec.finished_ns = now_ns();
            rec.exit_code = code;
            rec.reason = reason.into();
            rec.message = message;
            if let Err(e) = self.update_container(&rec) {
                tracing::warn!("recording the exit of container {id}: {e}");
            }
        }
        lock(live()).remove(id);
        *lock(&done.0) = true;
        done.1.notify_all();
    }

    /// The record of `key`, with a running container that no process watches any more (the
    /// server that started it was restarted) reported as exited with reason `Unknown`.
    fn observed(&self, mut rec: ContainerRecord) -> ContainerRecord {
        if rec.state == ContainerState::Running && !lock(live()).contains_key(&rec.id) {
            rec.state = ContainerState::Exited;
            rec.exit_code = 255;
            rec.reason = "Unknown".into();
            rec.message =
                "the runtime process that started this container stopped; its exit is unknown"
                    .into();
        }
        rec
    }

    /// ContainerStatus.
    ///
    /// # Errors
    /// [`PodError::ContainerNotFound`], store errors.
    pub fn container(&self, key: &str) -> Result<ContainerRecord, EngineError> {
        Ok(self.observed(self.containers().find(key)?))
    }

    /// ListContainers: every container, oldest first.
    ///
    /// # Errors
    /// Store errors.
    pub fn list_containers(&self) -> Result<Vec<ContainerRecord>, EngineError> {
        Ok(self
            .containers()
            .list()?
            .into_iter()
            .map(|c| self.observed(c))
            .collect())
    }

    /// Sends `signal` to a running container's process; false when this process does not
    /// watch it.
    fn signal_container(&self, id: &str, signal: i32) -> Result<bool, EngineError> {
        let frame = signal_frame(signal)?;
        let mut map = lock(live());
        let Some(l) = map.get_mut(id) else {
            return Ok(false);
        };
        proto::write_frame(&mut l.conn, &frame)
            .map_err(|e| EngineError::context(format!("signalling container {id}"), e))?;
        let _ = l.conn.flush();
        Ok(true)
    }

    /// Waits until the watcher of `id` recorded its exit; false on timeout.
    fn wait_exit(id: &str, timeout: Duration) -> bool {
        let Some(done) = lock(live()).get(id).map(|l| l.done.clone()) else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        let mut finished = lock(&done.0);
        while !*finished {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            finished = done
                .1
                .wait_timeout(finished, left)
                .map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
        true
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout` (0: at once). A stopped or
    /// unknown container is not an error (`None` when unknown). Audited (`container.stop`).
    ///
    /// # Errors
    /// Store errors; a process that survives SIGKILL.
    pub fn stop_container(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<ContainerRecord>, EngineError> {
        let rec = match self.containers().find(key) {
            Ok(r) => r,
            Err(PodError::ContainerNotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if rec.state == ContainerState::Running {
            let first = if timeout.is_zero() {
                SIGKILL
            } else {
                rec.stop_signal
            };
            if self.signal_container(&rec.id, first)? && !Self::wait_exit(&rec.id, timeout) {
                self.signal_container(&rec.id, SIGKILL)?;
                if !Self::wait_exit(&rec.id, KILL_WAIT) {
                    return Err(PodError::WrongState(format!(
                        "container {} did not exit after SIGKILL",
                        rec.id
                    ))
                    .into());
                }
            }
            self.record_container("container.stop", &rec, Outcome::Success, "stopped")?;
        }
        Ok(Some(self.container(&rec.id)?))
    }

    /// RemoveContainer: kills a running container, deletes its root filesystem in the pod VM
    /// (when the VM runs) and its record. Unknown containers are not an error.
    /// Audited (`container.remove`).
    ///
    /// # Errors
    /// Store errors, the VM's removal command.
    pub fn remove_container(&self, key: &str) -> Result<Option<ContainerRecord>, EngineError> {
        let Some(rec) = self.stop_container(key, Duration::ZERO)? else {
            return Ok(None);
        };
        if let Ok((pod, boxed)) = self.running_pod(&rec.pod_id) {
            let dir = format!("{GUEST_CONTAINERS}/{}", rec.id);
            if Self::recorded_pod_tee(&pod)?.is_some() {
                self.remove_verified_root(&boxed, &dir)?;
            } else {
                self.pod_command(&boxed, &["rm", "-rf", &dir])?;
            }
        }
        PodShare::of(&self.home, &rec.pod_id).unbind(&rec.id)?;
        {
            let _lock = Pods::open(&self.home).lock()?;
            self.containers().delete(&rec.id)?;
        }
        self.record_container("container.remove", &rec, Outcome::Success, "removed")?;
        Ok(Some(rec))
    }

    /// The containers of pod `pod_id` (stop and removal of a pod take them along).
    pub(crate) fn pod_container_ids(&self, pod_id: &str) -> Result<Vec<String>, EngineError> {
        Ok(self
            .containers()
            .list()?
            .into_iter()
            .filter(|c| c.pod_id == pod_id)
            .map(|c| c.id)
            .collect())
    }

    /// Forgets a container whose pod is gone (no VM command: the VM's disk went with it).
    pub(crate) fn forget_container(&self, id: &str) -> Result<(), EngineError> {
        let _lock = Pods::open(&self.home).lock()?;
        let containers = self.containers();
        let rec = match containers.find(id) {
            Ok(r) => r,
            Err(PodError::ContainerNotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        PodShare::of(&self.home, &rec.pod_id).unbind(&rec.id)?;
        containers.delete(&rec.id)?;
        Ok(())
    }

    /// Opens a session running `process` inside a running container (a new process in the
    /// container's root and its own mount namespace). For ExecSync and streaming exec.
    /// Audited (`container.exec`).
    ///
    /// # Errors
    /// Not found, not running, pod not ready, monitor errors.
    pub fn container_session(
        &self,
        key: &str,
        mut process: ProcessSpec,
    ) -> Result<UnixStream, EngineError> {
        let rec = self.container(key)?;
        if rec.state != ContainerState::Running {
            return Err(PodError::WrongState(format!(
                "container {} is not running; exec needs a running container",
                rec.id
            ))
            .into());
        }
        let (pod, boxed) = self.running_pod(&rec.pod_id)?;
        self.refuse_pod_access(&pod, Some(&rec.id), "exec")?;
        let id = Some(rec.id.clone());
        if process.user.is_none() {
            process.user.clone_from(&rec.user);
        }
        if process.workdir.is_none() {
            process.workdir.clone_from(&rec.workdir);
        }
        if process.env.is_empty() {
            process.env.clone_from(&rec.env);
        }
        let what = format!("exec {}", process.argv.join(" "));
        self.record_container("container.exec", &rec, Outcome::Success, &what)?;
        let msg = ClientMsg::ContainerExec {
            process,
            root: rec.guest_root(),
            id,
            resources: None,
            mounts: rec.mounts.clone(),
            security: rec.spec.security.clone().map(Box::new),
        };
        Ok(self.boxes.container_session(&boxed, &msg)?)
    }

    /// The mount namespace of the virtiofsd that serves pod VM `boxed` its share `dir`
    /// (CRI mounts are made there: `pods::detached`).
    ///
    /// # Errors
    /// The pod VM has no such share, or its daemon is gone.
    fn share_namespace(&self, boxed: &BoxRecord, dir: &Path) -> Result<MountNs, EngineError> {
        let box_dir = self.boxes.box_dir(&boxed.id);
        let index = crate::volumes::load_mounts(&box_dir)?
            .iter()
            .position(|m| matches!(&m.source, MountSource::Bind { path } if path == dir))
            .ok_or_else(|| {
                PodError::WrongState(format!(
                    "pod VM {} has no share of {} (a pod from an older version: remove it \
                     and run it again)",
                    boxed.name,
                    dir.display()
                ))
            })?;
        let socket = box_dir.join(format!("vfs-{}.sock", crate::volumes::tag(index)));
        let gone = |why: String| {
            EngineError::from(PodError::WrongState(format!(
                "the virtiofs daemon of pod VM {} ({}): {why}",
                boxed.name,
                socket.display()
            )))
        };
        let pid_file = a3s_vmm::fs::pid_file(&socket);
        let pid: u32 = crate::bounded::read_to_string(&pid_file, 32)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| gone(format!("{} is missing or damaged", pid_file.display())))?;
        // The pid is that daemon's still (pids are reused).
        let cmdline = crate::bounded::read(Path::new(&format!("/proc/{pid}/cmdline")), 64 << 10)
            .unwrap_or_default();
        let expected = format!("--socket-path={}", socket.display());
        if !cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == expected.as_bytes())
        {
            return Err(gone(format!("process {pid} is not serving it any more")));
        }
        MountNs::of_pid(pid, Path::new("/")).map_err(|e| gone(e.to_string()))
    }

    /// ExecSync: runs `argv` in a running container and returns its output; with `timeout`,
    /// a command running longer is killed and [`PodError::ExecTimeout`] returned.
    ///
    /// # Errors
    /// As [`Engine::container_session`]; the timeout.
    pub fn exec_in_container(
        &self,
        key: &str,
        argv: Vec<String>,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, EngineError> {
        let process = ProcessSpec {
            argv,
            ..ProcessSpec::default()
        };
        let conn = self.container_session(key, process)?;
        collect(conn, timeout)
    }

    /// ReopenContainerLog: the log file is opened again at its path (after kubelet rotated it).
    ///
    /// # Errors
    /// Not found, not running (CRI requires a running container), i/o.
    pub fn reopen_container_log(&self, key: &str) -> Result<(), EngineError> {
        let rec = self.container(key)?;
        let log = lock(live()).get(&rec.id).map(|l| l.log.clone());
        let Some(log) = log else {
            return Err(PodError::WrongState(format!(
                "container {} is not running; only a running container's log is reopened",
                rec.id
            ))
            .into());
        };
        if let Some(l) = lock(&log).as_mut() {
            l.reopen()?;
        }
        Ok(())
    }

    /// Attaches to a running container's main process: its output from now on comes on the
    /// returned channel (until it exits), and `stdin` bytes/resizes go to it through
    /// [`Engine::container_input`].
    ///
    /// # Errors
    /// Not found, not running in this process.
    pub fn attach_container(
        &self,
        key: &str,
    ) -> Result<std::sync::mpsc::Receiver<(Stream, Vec<u8>)>, EngineError> {
        let rec = self.container(key)?;
        let pod = Pods::open(&self.home).find(&rec.pod_id)?;
        self.refuse_pod_access(&pod, Some(&rec.id), "attach")?;
        let (tx, rx) = std::sync::mpsc::channel();
        match lock(live()).get(&rec.id) {
            Some(l) => lock(&l.taps).push(tx),
            None => {
                return Err(PodError::WrongState(format!(
                    "container {} is not running; attach needs a running container",
                    rec.id
                ))
                .into())
            }
        }
        self.record_container("container.attach", &rec, Outcome::Success, "attached")?;
        Ok(rx)
    }

    /// Sends a frame (stdin bytes, stdin end, a resize) to a running container's main process.
    ///
    /// # Errors
    /// Not running in this process; the session's i/o.
    pub fn container_input(&self, id: &str, frame: &Frame) -> Result<(), EngineError> {
        let mut map = lock(live());
        let Some(l) = map.get_mut(id) else {
            return Err(PodError::WrongState(format!("container {id} is not running")).into());
        };
        proto::write_frame(&mut l.conn, frame)
            .map_err(|e| EngineError::context(format!("writing to container {id}"), e))
    }
}

/// Reads a container session until the guest reports its process running (with the identity
/// it runs with); output before that goes to the log as it comes. A failure carries the
/// guest's message and exit code.
fn await_started(
    conn: &mut UnixStream,
    log: &Mutex<Option<CriLog>>,
    taps: &Taps,
) -> Result<Option<proto::ProcessUser>, (String, i32)> {
    loop {
        let frame = match proto::read_frame(conn) {
            Ok(f) => f,
            Err(e) => return Err((format!("lost the pod VM's session: {e}"), 0)),
        };
        match frame.kind {
            Kind::Stdout | Kind::Stderr => output(log, taps, &frame),
            Kind::Control => match frame.message::<MonitorMsg>() {
                Ok(MonitorMsg::Started { user, .. }) => return Ok(user),
                Ok(MonitorMsg::SpawnFailed { message, code }) => return Err((message, code)),
                Ok(MonitorMsg::Error { message }) => return Err((message, 0)),
                _ => {}
            },
            _ => {}
        }
    }
}

/// Copies an output frame to the log and the attached clients.
fn output(log: &Mutex<Option<CriLog>>, taps: &Taps, frame: &Frame) {
    let stream = if frame.kind == Kind::Stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    if let Some(l) = lock(log).as_mut() {
        if let Err(e) = l.write(stream, &frame.payload) {
            tracing::warn!("writing a container log: {e}");
        }
    }
    lock(taps).retain(|t| t.send((stream, frame.payload.clone())).is_ok());
}

/// Reads an exec session to its end; output over [`MAX_EXEC_OUTPUT`] is dropped. With a
/// timeout, the process is killed when it passes it.
pub(super) fn collect(
    mut conn: UnixStream,
    timeout: Option<Duration>,
) -> Result<ExecOutput, EngineError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut out = ExecOutput::default();
    loop {
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = proto::write_frame(&mut conn, &signal_frame(SIGKILL)?);
                return Err(PodError::ExecTimeout(timeout.unwrap_or_default()).into());
            }
            conn.set_read_timeout(Some(left))?;
        }
        let frame = match proto::read_frame(&mut conn) {
            Ok(f) => f,
            Err(proto::ProtoError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(EngineError::context("lost the exec session", e)),
        };
        let room = |buf: &Vec<u8>| MAX_EXEC_OUTPUT.saturating_sub(buf.len());
        match frame.kind {
            Kind::Stdout => {
                let n = room(&out.stdout).min(frame.payload.len());
                out.stdout.extend_from_slice(&frame.payload[..n]);
            }
            Kind::Stderr => {
                let n = room(&out.stderr).min(frame.payload.len());
                out.stderr.extend_from_slice(&frame.payload[..n]);
            }
            Kind::Control => match frame.message::<MonitorMsg>() {
                Ok(MonitorMsg::Exited { code }) => {
                    out.code = code;
                    return Ok(out);
                }
                Ok(MonitorMsg::SpawnFailed { code, message }) => {
                    out.code = code;
                    out.stderr.extend_from_slice(message.as_bytes());
                    out.stderr.push(b'\n');
                    return Ok(out);
                }
                Ok(MonitorMsg::Error { message }) => {
                    return Err(EngineError::context("exec", std::io::Error::other(message)))
                }
                _ => {}
            },
            _ => {}
        }
    }
}
