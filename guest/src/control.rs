//! The control server: one reader thread dispatching host frames, PID 1's reaper loop, and one
//! pump thread per output stream.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

use crate::pid_ns::PidNs;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use a3s_vmm::proto::{self, Frame, GuestMsg, HostMsg, Kind, ProtoError, WORKLOAD_SESSION};

use crate::agent::{self, Agent, Requests};
use crate::channel::Channel;
use crate::rootfs::{RootSpec, RwFormat};
use crate::supervised::{self, Sink, Supervised};
use crate::{clock, container_cgroup, init, process};

/// How long the guest waits for the host's `PowerOff` after reporting the workload's exit.
const POWER_OFF_GRACE: Duration = Duration::from_secs(2);

struct Session {
    stdin: Option<File>,
    pty: Option<OwnedFd>,
    pumps: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    hostname: String,
    sessions: HashMap<u32, Session>,
    pids: HashMap<i32, u32>,
    /// Guest→host requests of the attestation agent waiting for answers.
    requests: Arc<Requests>,
    /// The attestation agent (TEE boxes, once it is set up).
    agent: Option<Arc<Agent>>,
    /// The root filesystem, when its writable layer still has to be entered (encrypted).
    root: Option<RootSpec>,
    /// The box's security options, applied to the workload and every exec session.
    security: Option<proto::Security>,
    /// Pod containers' main processes (issue 16).
    supervised: Supervised,
    /// The pod's pause process (PID 1 of the pod's PID namespace), once a container asked
    /// for that namespace.
    pause: Option<i32>,
}

/// Serves the channel until the workload ends; powers off from inside.
pub(crate) fn serve(port: File, root: Option<RootSpec>) -> anyhow::Result<()> {
    let reader = port.try_clone().context("cloning the channel")?;
    let chan = Channel::new(port);
    let state = Arc::new(Mutex::new(State {
        root,
        ..State::default()
    }));
    chan.msg(
        WORKLOAD_SESSION,
        &GuestMsg::Ready {
            version: proto::PROTO_VERSION,
            uptime_ms: init::uptime_ms(),
            steps: crate::boot_steps::take(),
        },
    );
    {
        let (chan, state) = (chan.clone(), state.clone());
        std::thread::spawn(move || read_loop(reader, &chan, &state));
    }
    reap_loop(&chan, &state)
}

fn read_loop(mut reader: File, chan: &Channel, state: &Arc<Mutex<State>>) {
    loop {
        let frame = match proto::read_frame(&mut reader) {
            Ok(f) => f,
            Err(ProtoError::Json(_) | ProtoError::UnknownKind(_)) => continue,
            // A virtio-serial port reads end-of-file while the host side is not connected.
            Err(ProtoError::Closed) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => {
                // The stream is out of step or gone: nothing more can be trusted on it.
                eprintln!("a3s-guest-init: channel failed: {e}");
                init::power_off(Duration::ZERO);
            }
        };
        let (requests, agent) = {
            let st = lock(state);
            (st.requests.clone(), st.agent.clone())
        };
        // Answers to the agent's requests and RA-TLS byte streams go to the agent.
        let Some(frame) = agent::route(frame, chan, &requests, agent.as_deref().map(Agent::ratls))
        else {
            continue;
        };
        let session = frame.session;
        match frame.kind {
            Kind::Control => match frame.message::<HostMsg>() {
                Ok(msg) => handle(msg, session, chan, state),
                Err(e) => {
                    chan.msg(
                        session,
                        &GuestMsg::Error {
                            // A request this guest-init cannot read whole (a newer host's
                            // field) is refused, never half-applied.
                            message: format!(
                                "unsupported request: {e} (a guest-init older than a3s-box \
                                 cannot read its newer requests: install the guest-init \
                                 built with it)"
                            ),
                        },
                    );
                }
            },
            Kind::Stdin => {
                let stdin = lock(state)
                    .sessions
                    .get(&session)
                    .and_then(|s| s.stdin.as_ref().and_then(|f| f.try_clone().ok()));
                if let Some(mut f) = stdin {
                    let _ = f.write_all(&frame.payload);
                }
            }
            Kind::StdinClosed => {
                if let Some(s) = lock(state).sessions.get_mut(&session) {
                    if s.pty.is_none() {
                        s.stdin = None;
                    }
                }
            }
            _ => {}
        }
    }
}

fn handle(msg: HostMsg, session: u32, chan: &Channel, state: &Arc<Mutex<State>>) {
    match msg {
        HostMsg::Start {
            setup,
            process,
            tee,
            clock,
            security,
        } => {
            // First: TLS validity and token expiry during attestation depend on the time.
            if let Some(clock) = clock {
                match clock::apply(&clock) {
                    Ok(None) => {}
                    Ok(Some(warning)) => eprintln!("a3s-guest-init: {warning}"),
                    Err(e) => eprintln!("a3s-guest-init: setting the clock: {e:#}"),
                }
            }
            // Before the agent (which reaches its KBS over them) and the workload.
            if let Err(e) = crate::net::configure_interfaces(&setup.interfaces) {
                return refuse_start(&e, chan);
            }
            let root = {
                let mut st = lock(state);
                st.hostname = setup.hostname.clone();
                st.security = security;
                st.root.take()
            };
            match tee {
                None => {
                    if let Err(e) = enter_root(root.as_ref(), None).map(drop) {
                        return refuse_start(&e, chan);
                    }
                    apply_setup(&setup);
                    mount_then_start(&setup, &process, chan, state);
                }
                // The agent waits for the host's answers, which this thread routes: it runs
                // on its own thread and starts the workload only when it succeeded.
                Some(tee) => {
                    let (chan, state) = (chan.clone(), state.clone());
                    let requests = lock(&state).requests.clone();
                    std::thread::spawn(move || {
                        // The encrypted layer's key comes from the TEE, so the root is entered
                        // here, before the agent puts its socket and tool into it.
                        let began = std::time::Instant::now();
                        let key = match root.as_ref().map(|r| r.rw) {
                            Some(RwFormat::Crypt) => {
                                match agent::layer_key(&tee, &chan, &requests) {
                                    Ok(k) => Some(k),
                                    Err(f) => tee_failed(&chan, &f),
                                }
                            }
                            _ => None,
                        };
                        let keyed = std::time::Instant::now();
                        let keep_layer = || agent::keep_layer(&chan, &requests);
                        let unlock = key.as_deref().map(|key| crate::rwcrypt::Unlock {
                            key,
                            prefilled: tee.layer_prefilled,
                            on_made: &keep_layer,
                        });
                        let parts = match enter_root(root.as_ref(), unlock.as_ref()) {
                            Ok(parts) => parts,
                            Err(e) => tee_failed(
                                &chan,
                                &agent::StepError::new("rootfs", format!("{e:#}")),
                            ),
                        };
                        // Reported like the agent's steps, so the host's timings attribute
                        // them (formatting the encrypted layer on first boot is the big one).
                        if key.is_some() {
                            timed_step(&chan, "layer_key", keyed - began);
                            timed_step(&chan, "rw_layer", keyed.elapsed());
                            for (part, took) in parts {
                                timed_step(&chan, part, took);
                            }
                        }
                        apply_setup(&setup);
                        let opened = |a| lock(&state).agent = Some(a);
                        match agent::boot(&tee, &process, &chan, &requests, opened) {
                            Ok(()) => mount_then_start(&setup, &process, &chan, &state),
                            Err(failure) => tee_failed(&chan, &failure),
                        }
                    });
                }
            }
        }
        HostMsg::Exec { process } if session != WORKLOAD_SESSION => {
            if ROOT_ENTERED.is_set() {
                start(session, &process, chan, state);
            } else {
                // A TEE box enters its root on the agent's thread (after deriving the layer
                // key): an exec that arrives earlier waits for it, off this routing thread.
                let (chan, state) = (chan.clone(), state.clone());
                std::thread::spawn(move || {
                    ROOT_ENTERED.wait();
                    start(session, &process, &chan, &state);
                });
            }
        }
        // --- pod containers (issue 16) ---
        HostMsg::ContainerExec {
            process,
            root,
            id,
            resources,
            mounts,
            security,
        } if session != WORKLOAD_SESSION => {
            let container = Container {
                root: &root,
                id: id.as_deref(),
                resources: resources.as_ref(),
                mounts: &mounts,
                security: security.as_ref(),
            };
            start_container(session, &process, &container, chan, state);
        }
        HostMsg::ContainerAttach { id } if session != WORKLOAD_SESSION => {
            attach_container(session, &id, chan, state);
        }
        HostMsg::Detach => {
            let sink = lock(state).supervised.by_session(session);
            if let Some(sink) = sink {
                supervised::lock(&sink).detach(session);
            }
        }
        HostMsg::ContainerUpdate { id, resources } => {
            let answer = match update_container(&id, &resources, state) {
                Ok(stats) => GuestMsg::ContainerStats { stats: vec![stats] },
                Err(message) => GuestMsg::Error { message },
            };
            chan.msg(session, &answer);
        }
        HostMsg::ContainerStats { ids } => {
            let stats = ids
                .iter()
                .filter_map(|id| container_stats(id, state).ok())
                .collect();
            chan.msg(session, &GuestMsg::ContainerStats { stats });
        }
        // --- end pod containers ---
        HostMsg::Exec { .. } | HostMsg::ContainerExec { .. } | HostMsg::ContainerAttach { .. } => {
            chan.msg(
                session,
                &GuestMsg::Error {
                    message: "exec needs a session number above 0".into(),
                },
            );
        }
        HostMsg::Signal { signal } => {
            let pid = lock(state)
                .pids
                .iter()
                .find(|(_, s)| **s == session)
                .map(|(p, _)| *p);
            let sig = Signal::try_from(signal);
            match (pid, sig) {
                (Some(pid), Ok(sig)) => {
                    let _ = kill(Pid::from_raw(pid), sig);
                }
                (_, Err(_)) => {
                    chan.msg(
                        session,
                        &GuestMsg::Error {
                            message: format!("invalid signal {signal}"),
                        },
                    );
                }
                (None, _) => {}
            }
        }
        HostMsg::Resize { rows, cols } => {
            if let Some(pty) = lock(state)
                .sessions
                .get(&session)
                .and_then(|s| s.pty.as_ref())
            {
                let _ = process::resize(pty, rows, cols);
            }
        }
        HostMsg::PowerOff => {
            // Once synced, the host stops the VM without waiting for the kernel's shutdown.
            nix::unistd::sync();
            chan.msg(session, &GuestMsg::Synced);
            init::power_off(Duration::ZERO)
        }
        HostMsg::Ping { nonce } => {
            chan.msg(session, &GuestMsg::Pong { nonce });
        }
        HostMsg::RatlsOpen => {
            chan.msg(
                session,
                &GuestMsg::Error {
                    message: "this box is not a TEE box: RA-TLS needs a box started with \
                              --tee-simulate or --tee-enable"
                        .into(),
                },
            );
            chan.msg(session, &GuestMsg::Exited { code: 1 });
        }
        // --- issue 20: `top` and `stats` ---
        HostMsg::Top { ps_args } => {
            let answer = match crate::top::top(&ps_args) {
                Ok((titles, processes)) => GuestMsg::Processes { titles, processes },
                Err(message) => GuestMsg::Error { message },
            };
            chan.msg(session, &answer);
        }
        HostMsg::Stats => {
            let answer = match crate::procs::stats() {
                Ok(s) => GuestMsg::Stats(s),
                Err(message) => GuestMsg::Error { message },
            };
            chan.msg(session, &answer);
        }
        _ => {
            chan.msg(
                session,
                &GuestMsg::Error {
                    message: "unsupported request".into(),
                },
            );
        }
    }
}

/// Opens the verified image and, for a plain writable layer, enters the root; returns the
/// root still to be entered (an encrypted layer, which needs the TEE's key after Ready).
///
/// # Errors
/// No usable root: guest-init must not say Ready.
pub(crate) fn prepare_root(cmdline: &str) -> anyhow::Result<Option<RootSpec>> {
    let Some(spec) = RootSpec::from_cmdline(cmdline)? else {
        ROOT_ENTERED.set();
        return Ok(None);
    };
    crate::rootfs::open_image(&spec)?;
    if spec.rw == RwFormat::Crypt {
        return Ok(Some(spec));
    }
    crate::rootfs::enter(&spec, None)?;
    ROOT_ENTERED.set();
    Ok(None)
}

/// Tells the host a TEE set-up step finished and how long it took.
fn timed_step(chan: &Channel, step: &str, elapsed: Duration) {
    chan.msg(
        WORKLOAD_SESSION,
        &GuestMsg::TeeStep {
            step: step.into(),
            detail: String::new(),
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        },
    );
}

/// Enters a root left by [`prepare_root`] (nothing when it was entered already); returns how
/// long the parts of opening an encrypted layer took.
fn enter_root(
    root: Option<&RootSpec>,
    unlock: Option<&crate::rwcrypt::Unlock<'_>>,
) -> anyhow::Result<crate::rwcrypt::Steps> {
    let mut parts = Vec::new();
    if let Some(spec) = root {
        parts = crate::rootfs::enter(spec, unlock)?;
    }
    ROOT_ENTERED.set();
    Ok(parts)
}

/// Set once the box's root filesystem is `/`: exec sessions start only after it.
static ROOT_ENTERED: Gate = Gate::new();

/// A one-way flag threads can wait for.
struct Gate {
    set: Mutex<bool>,
    changed: std::sync::Condvar,
}

impl Gate {
    const fn new() -> Self {
        Self {
            set: Mutex::new(false),
            changed: std::sync::Condvar::new(),
        }
    }

    fn set(&self) {
        *self
            .set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.changed.notify_all();
    }

    fn is_set(&self) -> bool {
        *self
            .set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn wait(&self) {
        let mut set = self
            .set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while !*set {
            set = self
                .changed
                .wait(set)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Hostname, `/etc/hosts`, `/etc/resolv.conf` in the box's root (a failure is reported, not fatal).
fn apply_setup(setup: &proto::GuestSetup) {
    if let Err(e) = init::apply_setup(setup) {
        eprintln!("a3s-guest-init: {e:#}");
    }
}

/// A TEE step failed: report it and power off (the workload never starts).
fn tee_failed(chan: &Channel, failure: &agent::StepError) -> ! {
    agent::report_failure(chan, failure);
    init::power_off(agent::FAILURE_GRACE)
}

/// The box cannot start: say why on the console and to the host, then power off.
fn refuse_start(e: &anyhow::Error, chan: &Channel) {
    let message = format!("{e:#}");
    eprintln!("a3s-guest-init: fatal: {message}");
    chan.msg(
        WORKLOAD_SESSION,
        &GuestMsg::SpawnFailed { code: 125, message },
    );
    finished(WORKLOAD_SESSION, 125, chan);
}

/// Mounts the box's volumes and bind mounts, applies its machine-wide security options
/// (tmpfs, /dev/shm, sysctls, pids cgroup, read-only root), then starts the workload. In a TEE box this runs
/// only after the agent attested, so nothing from the host is used before attestation. A mount
/// that fails stops the box: the workload would otherwise write into RAM.
fn mount_then_start(
    setup: &proto::GuestSetup,
    process: &proto::ProcessSpec,
    chan: &Channel,
    state: &Arc<Mutex<State>>,
) {
    let security = lock(state).security.clone();
    let mounted = crate::mounts::mount_all(&setup.mounts).and_then(|()| match &security {
        Some(sec) => crate::security::setup_machine(sec),
        None => Ok(()),
    });
    if let Err(e) = mounted {
        let message = format!("{e:#}");
        eprintln!("a3s-guest-init: {message}");
        chan.msg(
            WORKLOAD_SESSION,
            &GuestMsg::SpawnFailed { code: 125, message },
        );
        finished(WORKLOAD_SESSION, 125, chan);
        return;
    }
    start(WORKLOAD_SESSION, process, chan, state);
}

fn start(session: u32, spec: &proto::ProcessSpec, chan: &Channel, state: &Arc<Mutex<State>>) {
    spawn_in(session, spec, None, None, chan, state);
}

/// A pod container a process starts in.
struct Container<'a> {
    /// Its root directory in the VM.
    root: &'a str,
    /// Its id (cgroup, supervision).
    id: Option<&'a str>,
    /// Present for its main process: the cgroup's limits.
    resources: Option<&'a proto::ContainerResources>,
    /// Its CRI mounts.
    mounts: &'a [proto::ContainerMount],
    /// Its security context.
    security: Option<&'a proto::ContainerSecurity>,
}

/// A pod container's process: its main process creates the container's cgroup and is
/// supervised; an exec joins the cgroup.
fn start_container(
    session: u32,
    spec: &proto::ProcessSpec,
    c: &Container<'_>,
    chan: &Channel,
    state: &Arc<Mutex<State>>,
) {
    // The host of a confidential pod is not trusted to hand its containers devices of the
    // VM (the secure processor's, say): only the standard set, as in every container.
    let devices = c.security.map_or(0, |s| s.devices.len());
    if devices > 0 && lock(state).agent.is_some() {
        let message = format!(
            "a confidential pod takes no devices from its host ({devices} asked for); \
             its containers get the standard /dev only"
        );
        chan.msg(session, &GuestMsg::SpawnFailed { code: 125, message });
        return finished(session, 125, chan);
    }
    let cgroup = match (c.id, c.resources) {
        (Some(id), Some(res)) => container_cgroup::create(id, res)
            .and_then(|()| container_cgroup::open_procs(id))
            .map_err(|e| format!("container {id}: {e}")),
        (Some(id), None) => container_cgroup::open_procs(id),
        (None, Some(_)) => Err("a container's main process needs its id".to_owned()),
        (None, None) => Ok(None),
    };
    let cgroup = match cgroup {
        Ok(c) => c,
        Err(message) => {
            chan.msg(session, &GuestMsg::SpawnFailed { code: 125, message });
            return finished(session, 125, chan);
        }
    };
    let pid_ns = match pid_ns_of(c, state) {
        Ok(ns) => ns,
        Err(message) => {
            chan.msg(session, &GuestMsg::SpawnFailed { code: 125, message });
            return finished(session, 125, chan);
        }
    };
    // An exec joins its container's mounts; a main process builds them.
    let mount_ns = match (c.id, c.resources) {
        (Some(id), None) => match running_main(state, id).and_then(|pid| {
            std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
                .map(OwnedFd::from)
                .map_err(|e| format!("the mount namespace of container {id}: {e}"))
        }) {
            Ok(ns) => Some(ns),
            Err(message) => {
                chan.msg(session, &GuestMsg::SpawnFailed { code: 125, message });
                return finished(session, 125, chan);
            }
        },
        _ => None,
    };
    let main = match (c.id, c.resources) {
        (Some(id), Some(res)) => Some((id, res.oom_score_adj)),
        _ => None,
    };
    let sink = spawn_in(
        session,
        spec,
        Some(crate::container::Root {
            dir: c.root,
            mounts: c.mounts,
            cgroup_procs: cgroup,
            security: c.security,
            pid_ns,
            mount_ns,
        }),
        main.map(|m| m.0),
        chan,
        state,
    );
    match (main, sink) {
        (Some((_, oom)), Some(sink)) => {
            let pid = supervised::lock(&sink).pid();
            // Best effort, right after the start: a child forked before this keeps the default.
            if oom != 0 {
                let _ = std::fs::write(format!("/proc/{pid}/oom_score_adj"), oom.to_string());
            }
        }
        (Some((id, _)), None) => container_cgroup::remove(id),
        _ => {}
    }
}

/// The PID namespace a container's process is born into: an exec joins its container's
/// main process; a main process gets the pod's (started with a pause process the first time),
/// its own, or its target's. `None` (the VM's): a host from before PID namespaces.
fn pid_ns_of(c: &Container<'_>, state: &Arc<Mutex<State>>) -> Result<Option<PidNs>, String> {
    let running_main = |id: &str| running_main(state, id);
    let joined = |pid: i32, what: &str| {
        PidNs::of(pid)
            .map(Some)
            .map_err(|e| format!("the PID namespace of {what}: {e}"))
    };
    let (Some(id), Some(sec)) = (c.id, c.security) else {
        return Ok(None);
    };
    if c.resources.is_none() {
        return joined(running_main(id)?, &format!("container {id}"));
    }
    match &sec.pid_namespace {
        proto::PidNamespace::Container => Ok(Some(PidNs::New)),
        proto::PidNamespace::Target(target) => {
            joined(running_main(target)?, &format!("target container {target}"))
        }
        proto::PidNamespace::Pod => {
            let mut st = lock(state);
            let alive = st
                .pause
                .is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let pid = crate::pid_ns::start_pause()
                    .map_err(|e| format!("starting the pod's pause process: {e}"))?;
                st.pause = Some(pid);
            }
            let pid = st.pause.unwrap_or_default();
            drop(st);
            joined(pid, "the pod")
        }
    }
}

/// The pid of container `id`'s main process, while it runs.
fn running_main(state: &Arc<Mutex<State>>, id: &str) -> Result<i32, String> {
    lock(state)
        .supervised
        .get(id)
        .and_then(|s| {
            let s = supervised::lock(&s);
            (!s.has_exited()).then(|| s.pid())
        })
        .ok_or_else(|| format!("container {id} is not running in this pod VM"))
}

/// A new session takes over a supervised container (a restarted CRI server re-attaching).
fn attach_container(session: u32, id: &str, chan: &Channel, state: &Arc<Mutex<State>>) {
    let mut st = lock(state);
    let Some(sink) = st.supervised.get(id) else {
        drop(st);
        chan.msg(
            session,
            &GuestMsg::Error {
                message: format!("no container {id} runs in this pod VM"),
            },
        );
        return;
    };
    let mut s = supervised::lock(&sink);
    // Stdin, terminal and signals follow the container to the new session.
    let old = s.key;
    if let Some(sess) = st.sessions.remove(&old) {
        st.sessions.insert(session, sess);
    }
    for v in st.pids.values_mut() {
        if *v == old {
            *v = session;
        }
    }
    s.key = session;
    s.attach(session, &mut |f| {
        chan.send(&f);
    });
}

/// Applies new limits to a running container; answers its figures with them.
fn update_container(
    id: &str,
    res: &proto::ContainerResources,
    state: &Arc<Mutex<State>>,
) -> Result<proto::ContainerStats, String> {
    let sink = lock(state)
        .supervised
        .get(id)
        .filter(|s| !supervised::lock(s).has_exited())
        .ok_or_else(|| format!("no container {id} runs in this pod VM"))?;
    container_cgroup::apply(id, res)?;
    let pid = supervised::lock(&sink).pid();
    std::fs::write(
        format!("/proc/{pid}/oom_score_adj"),
        res.oom_score_adj.to_string(),
    )
    .map_err(|e| format!("oom_score_adj {}: {e}", res.oom_score_adj))?;
    container_stats(id, state)
}

/// A running container's figures from its cgroup and root.
fn container_stats(id: &str, state: &Arc<Mutex<State>>) -> Result<proto::ContainerStats, String> {
    let sink = lock(state)
        .supervised
        .get(id)
        .ok_or_else(|| format!("no container {id} runs in this pod VM"))?;
    let (pid, root) = {
        let s = supervised::lock(&sink);
        (s.pid(), s.root.clone())
    };
    let mut stats = container_cgroup::stats(id, std::path::Path::new(&root))?;
    stats.limits.oom_score_adj = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(stats)
}

/// Spawns a session's process (in a container root, with its cgroup); the main process of
/// container `supervise` is registered as supervised and its output goes through the returned
/// sink instead of straight to the session.
fn spawn_in(
    session: u32,
    spec: &proto::ProcessSpec,
    root: Option<crate::container::Root<'_>>,
    supervise: Option<&str>,
    chan: &Channel,
    state: &Arc<Mutex<State>>,
) -> Option<supervised::SharedSink> {
    // The lock is held across spawn so the reaper cannot see the pid before it is registered.
    let mut st = lock(state);
    let hostname = st.hostname.clone();
    // A pod container's process gets its container's context (in `root`), not the pod VM's.
    let security = if root.is_some() {
        None
    } else {
        st.security.as_ref()
    };
    let root_dir = root.as_ref().map(|r| r.dir.to_owned());
    match process::spawn(spec, &hostname, security, root) {
        Ok(sp) => {
            let kind_of = |stderr: bool| if stderr { Kind::Stderr } else { Kind::Stdout };
            let sink = supervise.map(|_| {
                Arc::new(Mutex::new(Sink::new(
                    session,
                    sp.pid,
                    root_dir.clone().unwrap_or_default(),
                )))
            });
            let pumps = sp
                .outputs
                .into_iter()
                .map(|(is_err, file)| {
                    let chan = chan.clone();
                    let kind = kind_of(is_err);
                    let sink = sink.clone();
                    std::thread::spawn(move || match sink {
                        Some(sink) => process::pump(file, |data| {
                            supervised::lock(&sink).output(kind, data, &mut |f| {
                                chan.send(&f);
                            });
                            true
                        }),
                        None => {
                            process::pump(file, |data| chan.send(&Frame::data(kind, session, data)))
                        }
                    })
                })
                .collect();
            st.pids.insert(sp.pid, session);
            st.sessions.insert(
                session,
                Session {
                    stdin: sp.stdin,
                    pty: sp.pty,
                    pumps,
                },
            );
            chan.msg(
                session,
                &GuestMsg::Started {
                    pid: sp.pid,
                    user: Some(sp.user.clone()),
                },
            );
            if let (Some(sink), Some(id)) = (&sink, supervise) {
                // Registered before the reaper can look for it (the state lock is held).
                st.supervised.insert(id, sink.clone());
            }
            sink
        }
        Err(f) => {
            drop(st);
            chan.msg(
                session,
                &GuestMsg::SpawnFailed {
                    code: f.code,
                    message: f.message,
                },
            );
            finished(session, f.code, chan);
            None
        }
    }
}

fn finished(session: u32, code: i32, chan: &Channel) {
    chan.msg(session, &GuestMsg::Exited { code });
    if session == WORKLOAD_SESSION {
        init::power_off(POWER_OFF_GRACE);
    }
}

fn reap_loop(chan: &Channel, state: &Arc<Mutex<State>>) -> anyhow::Result<()> {
    loop {
        // Peek first (WNOWAIT) and reap under the state lock: std's `Command::spawn` reaps a
        // child whose exec failed itself, and must not find it already taken by PID 1.
        let peeked = waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT);
        let pid = match peeked {
            Ok(ws) => match ws.pid() {
                Some(pid) => pid,
                None => continue,
            },
            Err(nix::errno::Errno::ECHILD) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waitid"),
        };
        // A helper PID 1 runs itself (see `init::run_helper`) is reaped by its own waiter.
        let reap = init::REAP_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut st = lock(state);
        let code = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => code,
            Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
            _ => continue, // already reaped by spawn or a helper's waiter, or not finished
        };
        drop(reap);
        let Some(session) = st.pids.remove(&pid.as_raw()) else {
            continue; // an orphan re-parented to PID 1
        };
        let pumps = st
            .sessions
            .remove(&session)
            .map(|s| s.pumps)
            .unwrap_or_default();
        let container = st.supervised.by_pid(pid.as_raw());
        drop(st);
        // The box is its VM: any OOM kill in the guest was one of the box's processes (the
        // kernel never picks PID 1, guest-init). Read before anything else is killed.
        let oom_killed = session == WORKLOAD_SESSION && oom_kills(VMSTAT) > 0;
        if session == WORKLOAD_SESSION {
            // As when a container's PID 1 dies: the box is over, so every process left (the
            // workload's children, such as nginx's workers after its master was killed, and
            // exec'd ones) goes now. They hold the output pipes open, and the exit report
            // waits for those to close; without this a `stop -t 0` of nginx waited for the
            // host's grace, and `sh -c 'sleep 600 & echo done'` for the sleep.
            kill_all_but_init();
        }
        if let Some((id, _)) = &container {
            container_cgroup::kill_all(id);
        }
        let (chan, state) = (chan.clone(), state.clone());
        // Output must reach the host before the exit code; the pumps end when the process's
        // descendants close the pipes too.
        std::thread::spawn(move || {
            for p in pumps {
                let _ = p.join();
            }
            match container {
                // Kept for a later attach when no session is attached now.
                Some((id, sink)) => {
                    let oom = container_cgroup::oom_killed(&id);
                    supervised::lock(&sink).exited(code, oom, &mut |f| {
                        chan.send(&f);
                    });
                    container_cgroup::remove(&id);
                    lock(&state).supervised.note_exit(&id);
                }
                None => {
                    if oom_killed {
                        // Said before the exit, as for a pod container.
                        chan.msg(session, &GuestMsg::OomKilled);
                    }
                    finished(session, code, &chan);
                }
            }
        });
    }
}

/// The guest kernel's counters.
const VMSTAT: &str = "/proc/vmstat";

/// How many processes the OOM killer has killed since the guest booted (`oom_kill` in
/// `vmstat`; 0 when it cannot be read).
fn oom_kills(vmstat: &str) -> u64 {
    std::fs::read_to_string(vmstat)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// SIGKILL to every process but PID 1 (us): kill(2) with pid -1 from init spares only init.
fn kill_all_but_init() {
    if std::process::id() == 1 {
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    }
}

fn lock(state: &Arc<Mutex<State>>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_are_read_from_vmstat() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("vmstat");
        std::fs::write(&f, "nr_free_pages 100\noom_kill 3\nnr_dirty 0\n").unwrap();
        assert_eq!(oom_kills(f.to_str().unwrap()), 3);
        // `oom_kill_something` is another counter, not this one.
        std::fs::write(&f, "oom_kill_other 9\noom_kill 0\n").unwrap();
        assert_eq!(oom_kills(f.to_str().unwrap()), 0);
        std::fs::write(&f, "nr_free_pages 100\n").unwrap();
        assert_eq!(oom_kills(f.to_str().unwrap()), 0);
        assert_eq!(oom_kills(d.path().join("absent").to_str().unwrap()), 0);
        // This machine's own kernel has the counter.
        assert!(std::fs::read_to_string(VMSTAT)
            .unwrap()
            .contains("\noom_kill "));
    }
}
