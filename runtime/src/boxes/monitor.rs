//! The per-box monitor: the process that owns one VM for its whole life.
//!
//! `a3s-box run -d` must return while the box keeps running, and `logs`, `exec`, `attach`,
//! `stop` come from other CLI processes later, so each box gets a monitor (`a3s-box __monitor
//! <id>`, a re-exec of the CLI). It spawns QEMU with `PR_SET_PDEATHSIG=SIGKILL` (QEMU cannot
//! outlive it), writes the workload's output to `output.log`, records every state change in
//! `state.json`, and serves `monitor.sock` for exec, attach, signals, resizes and stop. Like
//! Docker's, a box does not depend on the CLI that started it: the monitor calls `setsid`
//! (a terminal's Ctrl-C reaches the CLI only, which forwards it as a signal), survives that
//! CLI, and removes a `--rm` box itself once its workload exits (see [`super::exit_hold`]).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use a3s_vmm::proto::{self, Frame, GuestClock, GuestMsg, HostMsg, Kind, WORKLOAD_SESSION};
use a3s_vmm::{Vm, VmConfig};

use super::client::{ClientMsg, MonitorMsg};
use super::exit_hold::RemovalGate;
use super::logs::{LogWriter, Stream};
use super::state::{now_rfc3339, BoxId, BoxState};
use super::timings::{Phase, Stopwatch};
use super::{BoxError, Boxes};
use crate::tee::pipeline::TeeLaunch;

/// Exit code recorded when the VM had to be killed (Docker's 128 + SIGKILL).
pub const KILLED_EXIT_CODE: i32 = 137;

/// How long the guest gets to sync its disks and power off after `PowerOff` before its VM is
/// killed. QEMU exits as soon as the guest is off, so this only bounds a hung guest; a short
/// bound lost writes when the sync was slow (TCG, ext4 still initialising its inode tables).
const POWER_OFF_WAIT: Duration = Duration::from_secs(30);

/// How long a guest gets to report its killed workload (and so sync its disks) before the VM
/// itself is killed.
const GUEST_KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Shared {
    clients: HashMap<u32, UnixStream>,
    next_session: u32,
    stop_deadline: Option<Instant>,
    /// False for a TEE box without `--allow-exec`: host exec is refused here, so a client
    /// that bypasses the CLI is refused too.
    exec_allowed: bool,
    /// The box's own health-check command, fixed at create time like the workload: allowed
    /// even where host exec is refused.
    health_argv: Option<Vec<String>>,
    /// The box is a pod's VM (issue 16): see [`session_permitted`].
    pod_sandbox: bool,
    /// Container roots whose main process was started (a second session there is an exec).
    started_roots: std::collections::HashSet<String>,
    /// Where refusals are recorded, and the box id.
    audit: Option<(crate::audit::AuditLog, String)>,
    /// This run is over: the accept loop ends (a restart binds a new socket).
    closed: bool,
}

/// Runs the monitor of box `id` until the box ends (whatever happens to the CLI that
/// started it).
///
/// # Errors
/// Only failures before the VM exists; later failures are recorded in the box state.
pub fn run(boxes: &Boxes, id: &BoxId) -> Result<(), BoxError> {
    // Out of the starting terminal's session: its Ctrl-C and hang-up go to the CLI only.
    let _ = nix::unistd::setsid();
    let gate = RemovalGate::open(&boxes.box_dir(id));
    let me = std::process::id();
    let mut watch = Stopwatch::for_monitor();
    let rec = boxes.update(id, |r| {
        r.state = BoxState::Starting { monitor_pid: me };
        Ok(())
    })?;
    let plan = boxes.plan(&rec)?;
    let dir = boxes.box_dir(id);
    let mut config = plan.vm_config(&dir, &rec.spec);
    let _ = std::fs::remove_file(dir.join(STOP_REQUEST));
    let listener = bind(&dir.join(super::MONITOR_SOCKET))?;
    watch.mark("plan");
    let mut tee = None;
    if let Some(spec) = &rec.spec.tee {
        let has_network = plan
            .net
            .as_ref()
            .is_some_and(|n| n.mode != crate::network::NetMode::None);
        match TeeLaunch::prepare(
            boxes.home().root(),
            rec.id.as_str(),
            spec,
            &config,
            has_network,
        ) {
            Ok(t) => {
                boxes.update(id, |r| {
                    r.tee = Some(t.record.clone());
                    Ok(())
                })?;
                tee = Some(t);
            }
            Err(e) => {
                if let crate::tee::TeeError::MeasurementMismatch { expected, actual } = &e {
                    // `inspect` shows what the artefacts measure, so the user can compare.
                    let _ = boxes.update(id, |r| {
                        r.tee = Some(crate::tee::TeeRecord {
                            mode: spec.mode,
                            simulated: spec.simulated(),
                            measurement: actual.clone(),
                            expected_measurement: Some(expected.clone()),
                            measure_ms: 0,
                            steps: Vec::new(),
                            layer_prefilled: false,
                        });
                        Ok(())
                    });
                }
                let mut msg = e.to_string();
                if let Some(h) = e.hint() {
                    msg.push_str(&format!(" (hint: {h})"));
                }
                finish(boxes, id, End::failed(msg), &gate);
                return Ok(());
            }
        }
    }
    if tee.is_some() {
        watch.mark("tee_prepare");
    }
    let exec_allowed = rec.spec.tee.as_ref().is_none_or(|t| t.allow_exec);
    let mut setup = rec.spec.setup.clone();
    // A bridged box's TAP lives exactly as long as this monitor (removed on drop).
    let plugged = match &plan.net {
        Some(net) => match crate::network::attach::plug(&boxes.home, id, net, &mut setup) {
            Ok(p) => p,
            Err(e) => {
                let hint = e
                    .hint()
                    .map(|h| format!(" (hint: {h})"))
                    .unwrap_or_default();
                finish(boxes, id, End::failed(format!("{e}{hint}")), &gate);
                return Ok(());
            }
        },
        None => None,
    };
    if let Some(p) = &plugged {
        p.adjust_nic(config.net.as_mut());
    }
    // A confidential box on a bridge network, or a pod VM on a CNI network, reaches a
    // host-loopback KBS through a relay on its gateway (an address of this host's network
    // namespace; QEMU's user-network gateway exists only in user networking).
    let gateway = plugged
        .as_ref()
        .and_then(|p| p.networks.first().map(|n| n.gateway))
        .or_else(|| {
            plan.net
                .as_ref()
                .and_then(|n| n.pod.as_ref())
                .and_then(|nic| nic.gateway)
        });
    if let (Some(t), Some(gateway)) = (tee.as_mut(), gateway) {
        if let Err(e) = t.relay_kbs(gateway) {
            finish(boxes, id, End::failed(e.to_string()), &gate);
            return Ok(());
        }
    }
    watch.mark("network");

    let mut boot = Boot {
        boxes,
        id,
        rec: &rec,
        config: &config,
        dir: &dir,
        setup,
        exec_allowed,
        monitor_pid: me,
        gate: &gate,
        tsc_khz: plan.tsc_khz,
        watch,
    };
    let mut tee = tee;
    let mut listener = Some(listener);
    let mut restarts = 0;
    let mut backoff = super::restart::Backoff::default();
    loop {
        let began = Instant::now();
        let Some(run) = boot.once(listener.take(), tee.take())? else {
            return Ok(());
        };
        if run.oom_killed {
            // Docker's State.OOMKilled and its `oom` event, before the exit is recorded.
            if let Ok(r) = boxes.update(id, |r| {
                r.oom_killed = true;
                Ok(())
            }) {
                boxes.emit(&r, "oom", &[]);
            }
        }
        // The policy only restarts a workload that ran: a box that cannot boot would loop.
        let again = run.ran && rec.spec.restart.decide(run.end.code, restarts, run.stopped);
        if !again || stop_requested(&dir) {
            finish(boxes, id, run.end, &gate);
            return Ok(());
        }
        if let Ok(r) = boxes.load(id) {
            boxes.emit(&r, "die", &[("exitCode", run.end.code.to_string())]);
        }
        let delay = backoff.next_delay(began.elapsed());
        restarts += 1;
        boxes.update(id, |r| {
            r.state = BoxState::Restarting {
                monitor_pid: me,
                exit_code: run.end.code,
            };
            r.finished_at = Some(now_rfc3339());
            Ok(())
        })?;
        if wait_or_stop(&dir, delay) {
            finish(boxes, id, run.end, &gate);
            return Ok(());
        }
        boxes.update(id, |r| {
            r.state = BoxState::Starting { monitor_pid: me };
            Ok(())
        })?;
        if stop_requested(&dir) {
            finish(boxes, id, run.end, &gate);
            return Ok(());
        }
    }
}

/// Set by `stop` while a box waits to be restarted: it stays stopped.
pub const STOP_REQUEST: &str = "stop-requested";

fn stop_requested(dir: &Path) -> bool {
    let p = dir.join(STOP_REQUEST);
    let there = p.exists();
    if there {
        let _ = std::fs::remove_file(p);
    }
    there
}

/// Sleeps `delay` unless a stop is requested first (then true).
fn wait_or_stop(dir: &Path, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    loop {
        if stop_requested(dir) {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

/// How one boot of the box ended.
struct Ran {
    /// Its exit code, error note and where its end's time went.
    end: End,
    /// The guest's OOM killer acted during the run.
    oom_killed: bool,
    /// The workload started.
    ran: bool,
    /// `stop` ended it.
    stopped: bool,
}

/// What every boot of one monitor shares.
struct Boot<'a> {
    boxes: &'a Boxes,
    id: &'a BoxId,
    rec: &'a super::BoxRecord,
    config: &'a VmConfig,
    dir: &'a Path,
    setup: a3s_vmm::proto::GuestSetup,
    exec_allowed: bool,
    monitor_pid: u32,
    /// Waited on before a `--rm` box is removed.
    gate: &'a RemovalGate,
    /// The host's TSC rate for the guest clock (TCG), see `VmPlan::tsc_khz`.
    tsc_khz: Option<u64>,
    /// The phases of this start so far (a restart times its own boot).
    watch: Stopwatch,
}

impl Boot<'_> {
    /// Boots the VM, runs the workload to its end. `None`: the VM did not start (the failure
    /// is recorded already). The control socket is bound anew for a restart (the previous
    /// run's accept loop ended when that run did).
    fn once(
        &mut self,
        listener: Option<UnixListener>,
        tee: Option<TeeLaunch>,
    ) -> Result<Option<Ran>, BoxError> {
        let (boxes, id, config) = (self.boxes, self.id, self.config);
        let listener = match listener {
            Some(l) => l,
            None => bind(&self.dir.join(super::MONITOR_SOCKET))?,
        };
        // A plain box starts from the saved template when it can (a3s_vmm::template); a
        // confidential one always boots cold: its measurement covers the boot.
        let templates = boxes.home().root().join("cache").join("templates");
        let templates = self.rec.spec.tee.is_none().then_some(templates.as_path());
        let vm = match Vm::start_or_restore(config, templates) {
            Ok(vm) => {
                // Making the template (first start only) is inside `vm_restore`; `.boot`
                // has its share (`template_ms`) and why a box booted cold (`cold_reason`).
                self.watch.mark(if vm.boot.restored {
                    "vm_restore"
                } else {
                    "vm_boot"
                });
                vm
            }
            Err(e) => {
                let mut msg = format!("{e}");
                if let Some(h) = e.hint() {
                    msg.push_str(&format!(" (hint: {h})"));
                }
                let msg = boot_failure(boxes, id, config, msg);
                finish(boxes, id, End::failed(msg), self.gate);
                return Ok(None);
            }
        };
        let start = HostMsg::Start {
            setup: self.setup.clone(),
            process: self.rec.spec.process.clone(),
            tee: tee.as_ref().map(|t| t.setup.clone()),
            // Set afresh at every boot (a restart's guest starts from the RTC again).
            clock: Some(GuestClock::now(self.tsc_khz)),
            security: self.rec.spec.guest_security(),
        };
        let guest = Guest {
            boxes,
            id,
            tee,
            exec_allowed: self.exec_allowed,
            health_argv: self.rec.spec.health.as_ref().map(|h| h.argv()),
            pod_sandbox: self
                .rec
                .spec
                .labels
                .contains_key(a3s_vmm::pod_image::POD_SANDBOX_LABEL),
            monitor_pid: self.monitor_pid,
            running: false,
            discard_on_exit: self.rec.spec.auto_remove && config.shares.is_empty(),
            watch: std::mem::replace(&mut self.watch, Stopwatch::for_monitor()),
        };
        let checker = super::health::spawn(boxes, self.rec, self.monitor_pid);
        let Served {
            end,
            stopped,
            oom_killed,
        } = match send(&vm, WORKLOAD_SESSION, &start) {
            Ok(()) => serve(vm, listener, self.dir, config, guest),
            Err(e) => Served::failed(format!("sending the workload to the guest: {e}")),
        };
        let ran = matches!(boxes.load(id)?.state, BoxState::Running { .. });
        // A VM that went away before its workload started failed to start: keep what it said.
        let mut end = end;
        end.error = match (end.code, end.error.take()) {
            (125, Some(msg)) if !ran => Some(boot_failure(boxes, id, config, msg)),
            (_, error) => error,
        };
        drop(checker);
        Ok(Some(Ran {
            end,
            oom_killed,
            ran,
            stopped,
        }))
    }
}

fn bind(path: &Path) -> Result<UnixListener, BoxError> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path)
        .map_err(|e| BoxError::Monitor(format!("binding {}: {e}", path.display())))
}

/// Asks guest-init to sync its disks and power off; returns once it said they are synced
/// (`Synced`: the VM may then be killed, its writes are on the host), QEMU exited, or
/// [`POWER_OFF_WAIT`] passed. Waiting for the kernel's shutdown and ACPI power-off after the
/// sync took about 35 ms of every stop under TCG and kept nothing more.
fn power_off(vm: &mut Vm) {
    let _ = send(vm, WORKLOAD_SESSION, &HostMsg::PowerOff);
    let until = Instant::now() + POWER_OFF_WAIT;
    while vm.try_wait().is_none() && Instant::now() < until {
        match vm.recv_timeout(Duration::from_millis(5)) {
            Ok(Some(f))
                if f.kind == Kind::Control
                    && matches!(f.message::<GuestMsg>(), Ok(GuestMsg::Synced)) =>
            {
                return;
            }
            Ok(_) => {}
            // The channel is gone: QEMU is on its way out.
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn send(vm: &Vm, session: u32, msg: &HostMsg) -> Result<(), proto::ProtoError> {
    vm.send(&Frame::control(session, msg)?)
}

/// How a run ended, as recorded.
struct End {
    code: i32,
    error: Option<String>,
    /// Where the time from the workload's start to here went (empty if it never started).
    stop: Vec<Phase>,
}

impl End {
    /// A start that failed before any workload ran.
    fn failed(message: String) -> Self {
        Self {
            code: 125,
            error: Some(message),
            stop: Vec::new(),
        }
    }
}

/// Records the exit; a `--rm` box is then removed once the clients reading its exit are done.
fn finish(boxes: &Boxes, id: &BoxId, end: End, gate: &RemovalGate) {
    let End { code, error, stop } = end;
    let ended = boxes.update(id, |r| {
        r.state = BoxState::Exited {
            exit_code: code,
            error: error.clone(),
        };
        r.stop_timings = stop.clone();
        r.finished_at = Some(now_rfc3339());
        r.paused = false;
        Ok(())
    });
    if let Ok(r) = &ended {
        boxes.emit(r, "die", &[("exitCode", code.to_string())]);
    }
    let dir = boxes.box_dir(id);
    let _ = std::fs::remove_file(dir.join(super::MONITOR_SOCKET));
    let _ = std::fs::remove_file(dir.join(super::CHANNEL_SOCKET));
    let _ = std::fs::remove_file(dir.join(super::QMP_SOCKET));
    if boxes.load(id).is_ok_and(|rec| rec.spec.auto_remove) {
        gate.wait_for_clients();
        // A client may have removed it meanwhile (`rm -f`): then nothing is left to do.
        if boxes.load(id).is_ok() {
            let _ = boxes.remove_dir(id, true);
        }
    }
}

/// A start failure's message with where its console log is: the box directory's, or, for a
/// `--rm` box (whose directory is about to go), a copy under `A3S_HOME/logs/`.
fn boot_failure(boxes: &Boxes, id: &BoxId, config: &VmConfig, msg: String) -> String {
    if !config.console_log.exists() {
        return msg;
    }
    let rec = boxes.load(id);
    match rec {
        Ok(rec) if rec.spec.auto_remove => {
            match super::failed_logs::keep(
                boxes.home(),
                &rec,
                &config.console_log,
                &config.qemu_log,
            ) {
                Ok(kept) => format!("{msg}; console log kept at {}", kept.display()),
                Err(e) => format!("{msg}; the console log could not be kept: {e}"),
            }
        }
        _ if msg.contains(&config.console_log.display().to_string()) => msg,
        _ => format!("{msg}; console log: {}", config.console_log.display()),
    }
}

/// What the serve loop needs to know about the box beyond the VM.
struct Guest<'a> {
    boxes: &'a Boxes,
    id: &'a BoxId,
    tee: Option<TeeLaunch>,
    exec_allowed: bool,
    health_argv: Option<Vec<String>>,
    pod_sandbox: bool,
    /// This monitor's pid.
    monitor_pid: u32,
    /// Whether the box has been recorded `running` (its workload reached the guest's exec).
    running: bool,
    /// Nothing of the VM outlives the workload: a `--rm` box without shared directories (its
    /// writable layer is deleted with it), so its VM is stopped at once when the workload
    /// exits instead of syncing and powering off.
    discard_on_exit: bool,
    /// The phases of this start, recorded when the workload runs; from then on, those of
    /// its end.
    watch: Stopwatch,
}

impl Guest<'_> {
    /// Records the box as running: guest-init set it up and tried to start the workload, so
    /// a VM that dies before this point failed to start (see [`boot_failure`]).
    fn mark_running(&mut self, vm: &Vm, config: &VmConfig) {
        if self.running {
            return;
        }
        self.running = true;
        self.watch.mark("guest_setup");
        let timings = self.watch.phases().to_vec();
        let (me, qemu_pid) = (self.monitor_pid, vm.pid());
        let started = self.boxes.update(self.id, |r| {
            r.timings = timings;
            r.stop_timings = Vec::new();
            r.state = BoxState::Running {
                monitor_pid: me,
                qemu_pid,
            };
            r.kernel_cmdline = Some(config.cmdline.clone());
            r.vm_mem_mib = Some(config.mem_mib);
            r.boot = Some(vm.boot.clone());
            r.started_at = Some(now_rfc3339());
            r.finished_at = None;
            r.start_count += 1;
            r.stopped_by_user = false;
            r.health = super::health::initial(r);
            r.paused = false;
            r.oom_killed = false;
            Ok(())
        });
        if let Ok(r) = &started {
            self.boxes.emit(r, "start", &[]);
        }
        self.watch = Stopwatch::new();
    }

    /// Handles a TEE message of the guest agent: `Ok(true)` when it was one.
    fn on_tee(&mut self, vm: &Vm, frame: &Frame) -> Result<bool, String> {
        let Some(tee) = self.tee.as_mut() else {
            return Ok(false);
        };
        let Ok(
            msg @ (GuestMsg::ReportRequest { .. }
            | GuestMsg::KeyRequest { .. }
            | GuestMsg::LayerMade { .. }
            | GuestMsg::TeeStep { .. }
            | GuestMsg::TeeFailed { .. }),
        ) = frame.message::<GuestMsg>()
        else {
            return Ok(false);
        };
        let reply = tee.on_guest(&msg)?;
        if let Some(reply) = reply {
            let _ = send(vm, frame.session, &reply);
        }
        if matches!(msg, GuestMsg::TeeStep { .. }) {
            let record = tee.record.clone();
            let _ = self.boxes.update(self.id, |r| {
                r.tee = Some(record);
                Ok(())
            });
        }
        Ok(true)
    }
}

/// Pumps guest frames into the log and to exec clients until the workload ends; returns its
/// exit code, an error note, and whether `stop` ended it.
fn serve(
    mut vm: Vm,
    listener: UnixListener,
    dir: &Path,
    config: &VmConfig,
    mut guest_box: Guest<'_>,
) -> Served {
    let shared = Arc::new(Mutex::new(Shared {
        next_session: 1,
        exec_allowed: guest_box.exec_allowed,
        health_argv: guest_box.health_argv.clone(),
        pod_sandbox: guest_box.pod_sandbox,
        audit: Some((
            crate::audit::AuditLog::open(guest_box.boxes.home().audit()),
            guest_box.id.to_string(),
        )),
        ..Default::default()
    }));
    let guest = match vm.sender() {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => return Served::failed(format!("guest channel: {e}")),
    };
    {
        let (shared, guest) = (shared.clone(), guest.clone());
        std::thread::spawn(move || accept_loop(&listener, &shared, &guest));
    }
    let mut log = match LogWriter::open(&dir.join(super::OUTPUT_LOG)) {
        Ok(l) => l,
        Err(e) => return Served::failed(format!("opening the output log: {e}")),
    };
    let mut error = None;
    let mut oom_killed = false;
    // When the stop timeout ran out: the workload was sent SIGKILL inside the guest.
    let mut killed_at: Option<Instant> = None;
    let code = loop {
        let deadline = lock(&shared).stop_deadline;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            match killed_at {
                // As Docker's SIGKILL: the workload dies at once, but what it wrote stays. So
                // guest-init kills it and then syncs the layer disk and powers off (the exit
                // report arrives below); killing QEMU instead would lose the guest's page cache.
                None => {
                    if let Ok(f) = Frame::control(WORKLOAD_SESSION, &HostMsg::Signal { signal: 9 })
                    {
                        to_guest(&guest, &f);
                    }
                    killed_at = Some(Instant::now());
                }
                Some(t) if t.elapsed() >= GUEST_KILL_GRACE => {
                    // No exit report: still ask guest-init to sync and power off (it does so
                    // from its control loop even if the workload is stuck), and kill the VM
                    // only if that goes unanswered too.
                    power_off(&mut vm);
                    vm.kill();
                    break KILLED_EXIT_CODE;
                }
                Some(_) => {}
            }
        }
        let frame = match vm.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(f)) => f,
            Ok(None) => {
                if let Some(status) = vm.try_wait() {
                    let (code, e) = vm_stopped(&guest_box, config, Some(status));
                    error = Some(e);
                    break code;
                }
                continue;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                let (code, e) = vm_stopped(&guest_box, config, vm.try_wait());
                error = Some(e);
                break code;
            }
        };
        if frame.kind == Kind::Control {
            match guest_box.on_tee(&vm, &frame) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(failure) => {
                    let _ = log.write(Stream::Stderr, format!("a3s-box: {failure}\n").as_bytes());
                    error = Some(failure);
                    break 125;
                }
            }
        }
        if frame.session == WORKLOAD_SESSION {
            let workload_frame = match frame.kind {
                Kind::Stdout | Kind::Stderr => true,
                Kind::Control => matches!(
                    frame.message::<GuestMsg>(),
                    Ok(GuestMsg::Started { .. }
                        | GuestMsg::SpawnFailed { .. }
                        | GuestMsg::Exited { .. })
                ),
                _ => false,
            };
            if workload_frame {
                guest_box.mark_running(&vm, config);
            }
            match frame.kind {
                Kind::Stdout => {
                    let _ = log.write(Stream::Stdout, &frame.payload);
                }
                Kind::Stderr => {
                    let _ = log.write(Stream::Stderr, &frame.payload);
                }
                Kind::Control => match frame.message::<GuestMsg>() {
                    Ok(GuestMsg::Exited { code }) => break code,
                    // A pod's containers report their own (their cgroups count them); the
                    // guest-wide count would blame the sandbox for them.
                    Ok(GuestMsg::OomKilled) => oom_killed = !guest_box.pod_sandbox,
                    Ok(GuestMsg::SpawnFailed { message, .. }) => {
                        let _ =
                            log.write(Stream::Stderr, format!("a3s-box: {message}\n").as_bytes());
                        error = Some(message);
                    }
                    _ => {}
                },
                _ => {}
            }
        } else {
            forward_to_client(&shared, frame);
        }
    };
    if guest_box.running {
        guest_box.watch.mark("workload");
    }
    let _ = log.sync();
    // The exit code is recorded by the caller right after this returns; the guest can go.
    // A VM whose disks are discarded with it has nothing to sync: the round trip, sync and
    // ACPI power-off took about 180 ms of every `run --rm` under TCG.
    if !guest_box.discard_on_exit {
        power_off(&mut vm);
    }
    vm.kill();
    let stop = if guest_box.running {
        guest_box.watch.mark("vm_stop");
        guest_box.watch.phases().to_vec()
    } else {
        Vec::new()
    };
    let stopped = {
        let mut sh = lock(&shared);
        sh.closed = true;
        sh.stop_deadline.is_some()
    };
    // Wakes the accept loop so it sees `closed` and lets go of the socket.
    let _ = UnixStream::connect(dir.join(super::MONITOR_SOCKET));
    Served {
        end: End { code, error, stop },
        stopped,
        oom_killed,
    }
}

/// How a run ended, as [`serve`] saw it.
struct Served {
    /// Its exit code, error note and where the time from the workload's start to the VM's
    /// stop went.
    end: End,
    /// `stop` ended it.
    stopped: bool,
    /// The guest said its OOM killer acted during the run.
    oom_killed: bool,
}

impl Served {
    /// The run could not be served.
    fn failed(message: String) -> Self {
        Self {
            end: End::failed(message),
            stopped: false,
            oom_killed: false,
        }
    }
}

/// The exit code and message when the VM goes away under a box: before its workload started
/// that is a start failure (125) quoting what the console says, e.g. guest-init's `fatal:`
/// line; afterwards the workload was killed with it.
fn vm_stopped(
    guest_box: &Guest<'_>,
    config: &VmConfig,
    status: Option<std::process::ExitStatus>,
) -> (i32, String) {
    let status = status.map_or_else(|| "channel closed".to_owned(), |s| s.to_string());
    let diagnosis = a3s_vmm::qemu::diagnose_files(config);
    if !guest_box.running {
        let why = match &diagnosis {
            Some(d) => format!(": {d} (hint: {})", d.hint),
            None => String::new(),
        };
        return (
            125,
            format!("the VM stopped ({status}) after booting, before the workload started{why}"),
        );
    }
    let why = diagnosis.map(|d| format!(": {d}")).unwrap_or_default();
    (
        KILLED_EXIT_CODE,
        format!(
            "the VM stopped before the workload exited ({status}){why}; console: {}",
            config.console_log.display()
        ),
    )
}

fn forward_to_client(shared: &Arc<Mutex<Shared>>, frame: Frame) {
    let mut sh = lock(shared);
    let session = frame.session;
    let out = match frame.kind {
        Kind::Control => match frame.message::<GuestMsg>() {
            Ok(GuestMsg::Exited { code }) => {
                Frame::control(session, &MonitorMsg::Exited { code }).ok()
            }
            Ok(GuestMsg::Started { pid, user }) => {
                Frame::control(session, &MonitorMsg::Started { pid, user }).ok()
            }
            Ok(GuestMsg::Processes { titles, processes }) => {
                Frame::control(session, &MonitorMsg::Processes { titles, processes }).ok()
            }
            Ok(GuestMsg::Stats(stats)) => Frame::control(session, &MonitorMsg::Stats(stats)).ok(),
            Ok(GuestMsg::OomKilled) => Frame::control(session, &MonitorMsg::OomKilled).ok(),
            Ok(GuestMsg::ContainerStats { stats }) => {
                Frame::control(session, &MonitorMsg::ContainerStats { stats }).ok()
            }
            Ok(GuestMsg::SpawnFailed { code, message }) => {
                Frame::control(session, &MonitorMsg::SpawnFailed { code, message }).ok()
            }
            Ok(GuestMsg::Error { message }) => {
                Frame::control(session, &MonitorMsg::Error { message }).ok()
            }
            _ => None,
        },
        _ => Some(frame.clone()),
    };
    // `top` and `stats` sessions end with their one answer.
    let ended = matches!(
        frame.message::<GuestMsg>(),
        Ok(GuestMsg::Exited { .. }
            | GuestMsg::Processes { .. }
            | GuestMsg::Stats(_)
            | GuestMsg::ContainerStats { .. })
    );
    if let (Some(out), Some(client)) = (out, sh.clients.get_mut(&session)) {
        if proto::write_frame(client, &out).is_err() {
            sh.clients.remove(&session);
        }
    }
    if ended {
        sh.clients.remove(&session);
    }
}

fn accept_loop(
    listener: &UnixListener,
    shared: &Arc<Mutex<Shared>>,
    guest: &Arc<Mutex<UnixStream>>,
) {
    for conn in listener.incoming() {
        if lock(shared).closed {
            return;
        }
        let Ok(conn) = conn else { continue };
        let (shared, guest) = (shared.clone(), guest.clone());
        std::thread::spawn(move || client(conn, &shared, &guest));
    }
}

/// Registers `conn` as a new session's client and sends the guest `first` on it; returns
/// the session, or tells the client the guest channel is closed (`None`).
fn open_session(
    shared: &Arc<Mutex<Shared>>,
    guest: &Arc<Mutex<UnixStream>>,
    conn: &mut UnixStream,
    first: &HostMsg,
) -> Option<u32> {
    let session = {
        let mut sh = lock(shared);
        let s = sh.next_session;
        sh.next_session += 1;
        sh.clients.insert(s, conn.try_clone().ok()?);
        s
    };
    if Frame::control(session, first).is_ok_and(|f| to_guest(guest, &f)) {
        return Some(session);
    }
    reply(
        conn,
        &MonitorMsg::Error {
            message: "the guest channel is closed".into(),
        },
    );
    None
}

fn to_guest(guest: &Arc<Mutex<UnixStream>>, frame: &Frame) -> bool {
    let Ok(mut g) = guest.lock() else {
        return false;
    };
    proto::write_frame(&mut *g, frame).is_ok()
}

fn reply(conn: &mut UnixStream, msg: &MonitorMsg) {
    if let Ok(f) = Frame::control(0, msg) {
        let _ = proto::write_frame(conn, &f);
    }
}

fn client(mut conn: UnixStream, shared: &Arc<Mutex<Shared>>, guest: &Arc<Mutex<UnixStream>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let first = match proto::read_frame(&mut conn).and_then(|f| f.message::<ClientMsg>()) {
        Ok(m) => m,
        Err(e) => {
            reply(
                &mut conn,
                &MonitorMsg::Error {
                    message: format!("bad request: {e}"),
                },
            );
            return;
        }
    };
    let _ = conn.set_read_timeout(None);
    // A pod container's main process outlives its session: guest-init keeps its output.
    let supervised = matches!(
        first,
        ClientMsg::ContainerExec {
            resources: Some(_),
            ..
        } | ClientMsg::ContainerAttach { .. }
    );
    // An output-only re-attach relays signals from the client, nothing else (see below).
    let output_only = matches!(
        first,
        ClientMsg::ContainerAttach {
            output_only: true,
            ..
        }
    );
    let session = match first {
        ClientMsg::Exec { .. } | ClientMsg::ContainerExec { .. }
            if !session_permitted(&mut lock(shared), &first) =>
        {
            let message =
                "exec refused: this box runs in TEE mode and was not started with --allow-exec"
                    .to_owned();
            if let Some((log, id)) = &lock(shared).audit {
                let _ = log.record(
                    &crate::audit::Event::new("box.exec", crate::audit::Outcome::Denied, &message)
                        .with_box(id.as_str()),
                );
            }
            reply(&mut conn, &MonitorMsg::Error { message });
            return;
        }
        ClientMsg::ContainerAttach { output_only, .. }
            if !attach_permitted(&lock(shared), output_only) =>
        {
            let message = "attach refused: this box runs in TEE mode and was not started with \
                           --allow-exec"
                .to_owned();
            reply(&mut conn, &MonitorMsg::Error { message });
            return;
        }
        ClientMsg::Attest => {
            let Some(session) = open_session(shared, guest, &mut conn, &HostMsg::RatlsOpen) else {
                return;
            };
            session
        }
        ClientMsg::Exec { .. }
        | ClientMsg::ContainerExec { .. }
        | ClientMsg::ContainerAttach { .. } => {
            let msg = match first {
                ClientMsg::ContainerExec {
                    process,
                    root,
                    id,
                    resources,
                    mounts,
                    security,
                } => HostMsg::ContainerExec {
                    process,
                    root,
                    id,
                    resources,
                    mounts,
                    security: security.map(|s| *s),
                },
                ClientMsg::ContainerAttach { id, .. } => HostMsg::ContainerAttach { id },
                ClientMsg::Exec { process } => HostMsg::Exec { process },
                _ => return,
            };
            let Some(session) = open_session(shared, guest, &mut conn, &msg) else {
                return;
            };
            session
        }
        ClientMsg::AttachStdin => WORKLOAD_SESSION,
        // --- issue 20: one question to guest-init, its answer relayed on a session ---
        ClientMsg::Top { .. } if !lock(shared).exec_allowed => {
            let message = "top refused: this box runs in TEE mode and was not started with \
                           --allow-exec"
                .to_owned();
            reply(&mut conn, &MonitorMsg::Error { message });
            return;
        }
        ClientMsg::Top { .. }
        | ClientMsg::Stats
        | ClientMsg::ContainerUpdate { .. }
        | ClientMsg::ContainerStats { .. } => {
            let msg = match first {
                ClientMsg::Top { ps_args } => HostMsg::Top { ps_args },
                ClientMsg::ContainerUpdate { id, resources } => {
                    HostMsg::ContainerUpdate { id, resources }
                }
                ClientMsg::ContainerStats { ids } => HostMsg::ContainerStats { ids },
                _ => HostMsg::Stats,
            };
            // The answer is relayed on the session; nothing more comes from the client.
            let _ = open_session(shared, guest, &mut conn, &msg);
            return;
        }
        ClientMsg::Signal { signal } => {
            let ok = Frame::control(WORKLOAD_SESSION, &HostMsg::Signal { signal })
                .is_ok_and(|f| to_guest(guest, &f));
            reply(
                &mut conn,
                &if ok {
                    MonitorMsg::Done
                } else {
                    MonitorMsg::Error {
                        message: "the guest channel is closed".into(),
                    }
                },
            );
            return;
        }
        ClientMsg::Resize { rows, cols } => {
            let ok = Frame::control(WORKLOAD_SESSION, &HostMsg::Resize { rows, cols })
                .is_ok_and(|f| to_guest(guest, &f));
            reply(
                &mut conn,
                &if ok {
                    MonitorMsg::Done
                } else {
                    MonitorMsg::Error {
                        message: "the guest channel is closed".into(),
                    }
                },
            );
            return;
        }
        ClientMsg::Stop {
            timeout_secs,
            signal,
        } => {
            if timeout_secs > 0 {
                let signal = signal.unwrap_or(15);
                if let Ok(f) = Frame::control(WORKLOAD_SESSION, &HostMsg::Signal { signal }) {
                    to_guest(guest, &f);
                }
            }
            // Answer before arming the deadline: once it passes, the serve loop kills the VM
            // and this process exits, which would cut the answer off (`rm -f` then failed
            // with "channel i/o failed").
            reply(&mut conn, &MonitorMsg::Done);
            lock(shared).stop_deadline = Some(Instant::now() + Duration::from_secs(timeout_secs));
            return;
        }
    };
    // Relay stdin (and resizes) from the client until it hangs up.
    loop {
        match proto::read_frame(&mut conn) {
            Ok(f) => {
                let f = Frame { session, ..f };
                match f.kind {
                    Kind::Stdin | Kind::StdinClosed if !output_only => {
                        to_guest(guest, &f);
                    }
                    Kind::Control => {
                        // Resizes, and signals to the session's own process (health probes
                        // kill a probe that outlives its timeout).
                        let msg = match f.message::<HostMsg>() {
                            Ok(m @ HostMsg::Signal { .. }) => Some(m),
                            Ok(m @ HostMsg::Resize { .. }) if !output_only => Some(m),
                            _ => None,
                        };
                        if let Some(fr) = msg.and_then(|m| Frame::control(session, &m).ok()) {
                            to_guest(guest, &fr);
                        }
                    }
                    _ => {}
                }
            }
            Err(_) => {
                if let Ok(mut g) = guest.lock() {
                    // A supervised container keeps its stdin open for the next attach.
                    let gone = if supervised {
                        Frame::control(session, &HostMsg::Detach).ok()
                    } else {
                        Some(Frame::data(Kind::StdinClosed, session, vec![]))
                    };
                    if let Some(f) = gone {
                        let _ = proto::write_frame(&mut *g, &f);
                    }
                    let _ = g.flush();
                }
                return;
            }
        }
    }
}

/// Host exec is refused in a TEE box without the opt-in, except its health check and, in a
/// confidential pod's VM, the runtime starting each of the pod's containers once (the pod's
/// workload; a second session in the same root is an exec) and guest-init's verified-image
/// helpers (guest-init checks everything they receive).
fn session_permitted(sh: &mut Shared, msg: &ClientMsg) -> bool {
    match msg {
        ClientMsg::ContainerExec { root, .. }
            if sh.pod_sandbox && sh.started_roots.insert(root.clone()) =>
        {
            true
        }
        ClientMsg::Exec { process }
            if sh.pod_sandbox && a3s_vmm::pod_image::is_pod_helper(&process.argv) =>
        {
            true
        }
        ClientMsg::Exec { process } | ClientMsg::ContainerExec { process, .. } => {
            exec_permitted(sh, &process.argv)
        }
        _ => true,
    }
}

/// Re-attaching to a container carries its stdin, so in a TEE box it needs the opt-in; an
/// output-only re-attach in a confidential pod's VM is the runtime keeping its own container
/// supervised and gives the host nothing new.
fn attach_permitted(sh: &Shared, output_only: bool) -> bool {
    sh.exec_allowed || (output_only && sh.pod_sandbox)
}

fn exec_permitted(sh: &Shared, argv: &[String]) -> bool {
    sh.exec_allowed || sh.health_argv.as_deref() == Some(argv)
}

fn lock(shared: &Arc<Mutex<Shared>>) -> std::sync::MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_output_only_reattach_needs_no_opt_in_and_only_in_a_pod() {
        let pod = Shared {
            pod_sandbox: true,
            ..Shared::default()
        };
        assert!(attach_permitted(&pod, true));
        assert!(!attach_permitted(&pod, false));
        let tee_box = Shared::default();
        assert!(!attach_permitted(&tee_box, true));
        let opted_in = Shared {
            exec_allowed: true,
            ..Shared::default()
        };
        assert!(attach_permitted(&opted_in, false));
    }

    #[test]
    fn a_confidential_pod_starts_each_container_once_and_refuses_exec() {
        let process = |argv: &[&str]| a3s_vmm::proto::ProcessSpec {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            ..a3s_vmm::proto::ProcessSpec::default()
        };
        let start = |root: &str| ClientMsg::ContainerExec {
            process: process(&["sh"]),
            root: root.into(),
            id: None,
            resources: None,
            mounts: Vec::new(),
            security: None,
        };
        let mut sh = Shared {
            pod_sandbox: true,
            ..Shared::default()
        };
        assert!(session_permitted(&mut sh, &start("/containers/a/rootfs")));
        assert!(!session_permitted(&mut sh, &start("/containers/a/rootfs")));
        assert!(session_permitted(&mut sh, &start("/containers/b/rootfs")));
        let helper = ClientMsg::Exec {
            process: process(&["/.a3s/init", "__pod-image-in", "/containers/c"]),
        };
        assert!(session_permitted(&mut sh, &helper));
        let shell = ClientMsg::Exec {
            process: process(&["sh"]),
        };
        assert!(!session_permitted(&mut sh, &shell));
        // With the opt-in, everything; in a TEE box that is no pod, none of the above.
        sh.exec_allowed = true;
        assert!(session_permitted(&mut sh, &start("/containers/a/rootfs")));
        assert!(session_permitted(&mut sh, &shell));
        let mut tee_box = Shared::default();
        assert!(!session_permitted(
            &mut tee_box,
            &start("/containers/a/rootfs")
        ));
        assert!(!session_permitted(&mut tee_box, &helper));
    }

    #[test]
    fn a_stop_is_answered_before_its_deadline_can_end_the_monitor() {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (mut cli, conn) = UnixStream::pair().unwrap();
        let (guest, _guest_end) = UnixStream::pair().unwrap();
        let guest = Arc::new(Mutex::new(guest));
        let stop = ClientMsg::Stop {
            timeout_secs: 0,
            signal: None,
        };
        proto::write_frame(&mut cli, &Frame::control(0, &stop).unwrap()).unwrap();
        cli.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // While the serve loop holds the state (as it does when it acts on a deadline), the
        // answer must already be on its way.
        let held = lock(&shared);
        let handler = {
            let (shared, guest) = (shared.clone(), guest.clone());
            std::thread::spawn(move || client(conn, &shared, &guest))
        };
        let answer = proto::read_frame(&mut cli)
            .and_then(|f| f.message::<MonitorMsg>())
            .expect("the stop is answered without waiting for the state");
        assert!(matches!(answer, MonitorMsg::Done), "{answer:?}");
        drop(held);
        handler.join().unwrap();
        assert!(lock(&shared).stop_deadline.is_some());
    }

    #[test]
    fn a_stop_request_ends_the_back_off_and_is_consumed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!wait_or_stop(dir.path(), Duration::from_millis(10)));
        std::fs::write(dir.path().join(STOP_REQUEST), b"").unwrap();
        // A back-off of an hour ends at once when a stop was asked for.
        assert!(wait_or_stop(dir.path(), Duration::from_secs(3600)));
        assert!(!dir.path().join(STOP_REQUEST).exists());
        assert!(!stop_requested(dir.path()));
    }
}
