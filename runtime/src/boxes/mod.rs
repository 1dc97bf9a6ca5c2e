//! Boxes: one MicroVM each, with persisted state and a Docker-like lifecycle.
//!
//! ```text
//! boxes/.lock                    held while names are allocated
//! boxes/<id>/state.json          BoxRecord (atomic writes under boxes/<id>/lock)
//! boxes/<id>/output.log          workload output (see logs)
//! boxes/<id>/console.log         guest serial console; qemu.log, monitor.log
//! logs/<name>-<short id>.console.log  kept console logs of --rm boxes that failed to start
//! boxes/<id>/monitor.sock        the monitor's control socket; ctl.sock: QEMU's guest channel
//! boxes/<id>/exit-hold.lock      held (shared) by clients reading a --rm box's exit
//! ```

pub mod busybox;
pub mod client;
pub mod events;
pub mod exit_hold;
pub mod failed_logs;
pub mod filter;
pub mod health;
pub mod logs;
pub mod monitor;
pub mod restart;
pub mod security;
pub mod signal;
pub mod state;
pub mod timings;

/// Kernel modules a plain pod's VM loads besides a box's (see `boot_plan`).
const POD_GUEST_MODULES: &[&str] = &["bridge"];

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use a3s_image::{ImageRef, ImageStore, StoreError};
use a3s_vmm::accel::{self, Accel, AccelError};
use a3s_vmm::assets::{self, AssetError, KernelDir};
use a3s_vmm::proto::{GuestSetup, ProcessSpec};
use a3s_vmm::qemu::{kernel_cmdline, ConfigError, Machine, VmConfig};

use crate::home::A3sHome;
pub use state::{BoxId, BoxRecord, BoxSpec, BoxState, StateError};

/// The monitor's control socket in a box directory.
pub const MONITOR_SOCKET: &str = "monitor.sock";
/// QEMU's guest-channel socket in a box directory.
pub const CHANNEL_SOCKET: &str = "ctl.sock";
/// QEMU's QMP socket in a box directory (`pause`/`unpause`).
pub const QMP_SOCKET: &str = "qmp.sock";
/// The workload output log in a box directory.
pub const OUTPUT_LOG: &str = "output.log";
/// The writable layer disk in a box directory (kept from `create` until `rm`).
pub const LAYER_DISK: &str = "rw.img";
/// Default guest memory (A3S Box's default too). Measured on images built from Debian
/// packages, with the root filesystem on a block device (guest RAM holds only what runs):
/// nginx serves at 128 MiB, python3 runs at 256 MiB, postgres-15 (128 MB shared_buffers)
/// starts and takes 100k rows at 256 MiB, a 600 MiB-file image hashes its file at 192 MiB.
/// 512 MiB leaves each of them twice what it needed; untouched guest RAM costs the host nothing.
pub const DEFAULT_MEM_MIB: u32 = 512;

/// A box operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BoxError {
    /// Box state.
    #[error(transparent)]
    State(#[from] StateError),
    /// Network settings (issue 9).
    #[error(transparent)]
    Net(#[from] crate::network::NetError),
    /// Volumes and bind mounts (issue 9).
    #[error(transparent)]
    Volume(#[from] crate::volumes::VolumeError),
    /// Security and resource flags that do not fit together (`--memory-swap` below
    /// `--memory`, ...).
    #[error(transparent)]
    Security(#[from] security::SecurityError),
    /// The virtiofs daemon for volumes and bind mounts.
    #[error(transparent)]
    Fs(#[from] a3s_vmm::fs::FsError),
    /// TEE settings or a TEE step.
    #[error(transparent)]
    Tee(#[from] crate::tee::TeeError),
    /// Health-check options (issue 9).
    #[error(transparent)]
    Health(#[from] health::HealthError),
    /// The image store.
    #[error(transparent)]
    Image(#[from] StoreError),
    /// `--restart` with a setting it cannot go with.
    #[error("--restart {policy} cannot be used with {with}")]
    RestartConflict {
        /// The policy.
        policy: String,
        /// The conflicting setting.
        with: &'static str,
    },
    /// Kernel, guest-init or initrd.
    #[error(transparent)]
    Asset(#[from] AssetError),
    /// The box's writable layer disk.
    #[error(transparent)]
    Disk(#[from] a3s_vmm::disk::DiskError),
    /// Bad resources or machine, or too little memory for the kernel and init.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad accelerator override.
    #[error(transparent)]
    Accel(#[from] AccelError),
    /// An image reference that does not parse.
    #[error("invalid image reference {reference:?}: {message}")]
    BadReference {
        /// As given.
        reference: String,
        /// Why.
        message: String,
    },
    /// QEMU is not installed.
    #[error("{} not found", a3s_vmm::host::QEMU_BINARY)]
    NoQemu,
    /// Neither the command line nor the image says what to run.
    #[error("no command specified: the image has no entrypoint or cmd and none was given")]
    NoCommand,
    /// The launch of this request cannot be predicted before the box exists.
    #[error("cannot predict this launch: {0}")]
    Unpredictable(String),
    /// The box is not running.
    #[error("box {0} is not running")]
    NotRunning(String),
    /// The box is already running.
    #[error("box {0} is already running")]
    AlreadyRunning(String),
    /// `exec` into (or `pause` of) a paused box.
    #[error("box {0} is paused")]
    Paused(String),
    /// `unpause` of a box that is not paused.
    #[error("box {0} is not paused")]
    NotPaused(String),
    /// guest-init refused a request.
    #[error("box {name}: {message}")]
    Guest {
        /// The box.
        name: String,
        /// Why.
        message: String,
    },
    /// QEMU's machine protocol (pause, unpause).
    #[error(transparent)]
    Qmp(#[from] a3s_vmm::qmp::QmpError),
    /// `rm` of a running box without `-f`.
    #[error("box {0} is running: stop it first or use rm -f")]
    StillRunning(String),
    /// The VM did not start.
    #[error("box {name} failed to start: {message}")]
    StartFailed {
        /// The box.
        name: String,
        /// Why (from the monitor).
        message: String,
    },
    /// The monitor could not be reached or failed.
    #[error("box monitor: {0}")]
    Monitor(String),
    /// `--stop-signal` or the image's `StopSignal` is not a signal.
    #[error("{0}")]
    BadSignal(#[from] signal::BadSignal),
    /// i/o (the message names the path).
    #[error("i/o failed")]
    Io(#[from] std::io::Error),
}

impl BoxError {
    /// Whether the box was refused before anything booted because of its settings (the
    /// box `run` created is then removed again).
    pub fn refused_before_boot(&self) -> bool {
        matches!(self, Self::Config(ConfigError::MemoryTooSmall { .. }))
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::State(e) => e.hint(),
            Self::Net(e) => e.hint(),
            Self::Volume(e) => e.hint(),
            Self::Fs(e) => e.hint(),
            Self::Tee(e) => e.hint(),
            Self::Health(e) => e.hint(),
            Self::Image(e) => e.hint(),
            Self::Asset(e) => e.hint(),
            Self::Disk(e) => e.hint(),
            Self::Config(e) => e.hint(),
            Self::NoQemu => {
                Some("install QEMU 10 from bookworm-backports with `sudo scripts/setup`".into())
            }
            Self::NotRunning(name) => Some(format!("start it with `a3s-box start {name}`")),
            Self::Paused(name) => Some(format!("`a3s-box unpause {name}` first")),
            Self::StillRunning(name) => {
                Some(format!("`a3s-box rm -f {name}` stops and removes it"))
            }
            Self::NoCommand => Some("give a command after the image, or --entrypoint".into()),
            _ => None,
        }
    }
}

/// How long `stop` waits for a monitor to exit after it recorded the box's exit.
const MONITOR_EXIT_WAIT: Duration = Duration::from_secs(10);

/// Waits (at most `limit`) until process `pid` has exited.
fn wait_for_exit(pid: u32, limit: Duration) {
    let start = Instant::now();
    while state::alive(pid) && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long `stop` waits for the workload when neither the request nor the box says.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

const SIGTERM: i32 = 15;

/// What `stop` sends and how long it waits; `None` takes the box's own setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopOptions {
    /// Grace period before the VM is killed.
    pub timeout: Option<Duration>,
    /// The first signal.
    pub signal: Option<i32>,
}

impl From<Duration> for StopOptions {
    fn from(timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            signal: None,
        }
    }
}

/// What `create`/`run` asks for (already parsed by the CLI).
#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    /// Image reference.
    pub image: String,
    /// Name (generated when absent).
    pub name: Option<String>,
    /// Arguments after the image (replace the image's cmd).
    pub args: Vec<String>,
    /// `--entrypoint` (`Some("")` clears the image's entrypoint).
    pub entrypoint: Option<String>,
    /// `KEY=value` entries added after the image's env.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--add-host name:addr`.
    pub hosts: Vec<(String, String)>,
    /// `-i`.
    pub stdin: bool,
    /// `-t`.
    pub tty: bool,
    /// Terminal size for `-t`.
    pub tty_size: Option<(u16, u16)>,
    /// `--cpus`.
    pub vcpus: u32,
    /// The VM's memory in MiB when the workload has no limit (`memory_limit_bytes` is `None`).
    pub mem_mib: u64,
    /// `--memory`: the workload's memory limit in bytes; the VM is then sized to hold it
    /// beside the guest's own share, and `mem_mib` is not used.
    pub memory_limit_bytes: Option<u64>,
    /// A pod VM's containers' memory together (CRI's sandbox resources): the VM is sized for
    /// it as for `memory_limit_bytes`, but nothing limits the VM's own processes.
    pub pod_memory_bytes: Option<u64>,
    /// `--kernel-arg`.
    pub kernel_args: Vec<String>,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--network`, `-p`, `--dns`, `--ip`, `--network-alias`.
    pub net: crate::network::BoxNet,
    /// `-P`: publish every port the image exposes.
    pub publish_all: bool,
    /// `-v` mounts (parsed; bind sources checked by the caller).
    pub mounts: Vec<crate::volumes::MountSpec>,
    /// `--tee-enable` / `--tee-simulate` and their settings.
    pub tee: Option<crate::tee::TeeSpec>,
    /// `--health-*`, `--no-healthcheck`.
    pub health: health::HealthOptions,
    /// `--storage-opt size=`: the writable layer's size (`None`: the default).
    pub layer_bytes: Option<u64>,
    /// `-l/--label`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `--stop-signal` (`None`: the image's `StopSignal`, else SIGTERM).
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds (`None`: 10).
    pub stop_timeout: Option<u64>,
    /// `--restart`.
    pub restart: restart::RestartPolicy,
    /// `--cap-add`, `--read-only`, `--ulimit`, ... (`None`: every capability, nothing else).
    pub security: Option<security::SecurityConfig>,
}

/// What the monitor boots: fixed when the box starts, stored beside the record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VmPlan {
    /// Accelerator.
    pub accel: Accel,
    /// Why this accelerator.
    pub accel_reason: String,
    /// Machine model.
    pub machine: Machine,
    /// PVH kernel.
    pub kernel: PathBuf,
    /// Initrd (guest-init and modules, the same for every image).
    pub initrd: PathBuf,
    /// The image's read-only filesystem (erofs with its verity tree).
    #[serde(default)]
    pub root_disk: PathBuf,
    /// Kernel command line.
    pub cmdline: String,
    /// The NIC (`None`: `--network none`, or a plan from before networking).
    #[serde(default)]
    pub net: Option<crate::network::BoxNet>,
    /// virtiofs mounts with resolved host directories.
    #[serde(default)]
    pub mounts: Vec<crate::volumes::ResolvedMount>,
    /// The SEV-SNP launch of a `--tee-enable` box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<a3s_vmm::snp::SnpConfig>,
    /// Under TCG, the host's TSC rate (the guest's TSC is the host's): guest-init corrects its
    /// clock when the command line had to carry another rate (see `a3s_vmm::clock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsc_khz: Option<u64>,
    /// The VM's memory in MiB when the workload has a memory limit (sized from it and the boot
    /// assets by `a3s_vmm::memory::vm_mib_for_limit`); `None`: the box's `mem_mib`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_mib: Option<u32>,
}

impl VmPlan {
    /// The VM's memory in MiB: sized from the workload's limit, or the box's own figure.
    pub fn mem_mib(&self, spec: &BoxSpec) -> u32 {
        self.mem_mib.unwrap_or(spec.mem_mib)
    }

    /// The VM configuration for a box directory.
    pub fn vm_config(&self, dir: &Path, spec: &BoxSpec) -> VmConfig {
        let env_secs = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        VmConfig {
            accel: self.accel,
            machine: self.machine,
            mem_mib: self.mem_mib(spec),
            vcpus: spec.vcpus,
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            cmdline: self.cmdline.clone(),
            channel_socket: dir.join(CHANNEL_SOCKET),
            qmp_socket: Some(dir.join(QMP_SOCKET)),
            console_log: dir.join("console.log"),
            qemu_log: dir.join("qemu.log"),
            // A normal TCG boot uses 3-6 s of QEMU CPU time; a stalled one spins. CPU time,
            // unlike wall time, does not stretch when the host is busy.
            boot_cpu_budget_secs: env_secs("A3S_BOX_BOOT_CPU_SECS", 25)
                * u64::from(spec.vcpus.max(1)),
            boot_timeout_secs: env_secs("A3S_BOX_BOOT_TIMEOUT_SECS", 180),
            boot_attempts: 3,
            net: self.net.as_ref().and_then(crate::network::BoxNet::nic),
            disks: vec![
                a3s_vmm::disk::Disk {
                    path: self.root_disk.clone(),
                    readonly: true,
                    serial: a3s_vmm::disk::ROOT_SERIAL.into(),
                },
                a3s_vmm::disk::Disk {
                    path: dir.join(LAYER_DISK),
                    readonly: false,
                    serial: a3s_vmm::disk::RW_SERIAL.into(),
                },
            ],
            shares: crate::volumes::shares(dir, &self.mounts),
            snp: self.snp.clone(),
            // Off only to measure what it saves (bench/footprint.sh).
            balloon: std::env::var(a3s_vmm::balloon::BALLOON_ENV).as_deref() != Ok("off"),
            // A bad value was refused when the plan was made.
            tcg_tb_mib: a3s_vmm::tcg::tb_mib_from_env()
                .unwrap_or(Some(a3s_vmm::tcg::DEFAULT_TB_MIB)),
            // Likewise.
            huge_pages: a3s_vmm::host_pages::huge_pages_from_env().unwrap_or(false),
            // A confidential box's memory is never merged with another process's: a shared
            // page is a side channel (which pages another VM holds, when it writes them).
            mergeable: spec.tee.is_none(),
            incoming: false,
        }
    }
}

/// How a box's writable layer is protected: encrypted in the guest, under a key bound to the
/// launch measurement, for confidential boxes.
fn layer_format(spec: &BoxSpec) -> a3s_vmm::disk::LayerFormat {
    if spec.tee.is_some() {
        a3s_vmm::disk::LayerFormat::Encrypted
    } else {
        a3s_vmm::disk::LayerFormat::Ext4
    }
}

fn bad_ref<E: std::fmt::Display>(reference: &str) -> impl FnOnce(E) -> BoxError + '_ {
    move |e| BoxError::BadReference {
        reference: reference.to_owned(),
        message: e.to_string(),
    }
}

/// A request resolved against the image store, before the box exists.
struct Resolved {
    reference: ImageRef,
    image: a3s_image::LocalImage,
    spec: BoxSpec,
    net: crate::network::BoxNet,
    /// The request's mounts and the image's `VOLUME`s (anonymous until the box exists).
    mounts: Vec<crate::volumes::MountSpec>,
}

/// All boxes of one A3S home.
#[derive(Clone, Debug)]
pub struct Boxes {
    home: A3sHome,
    dir: PathBuf,
}

impl Boxes {
    /// The boxes of `home`.
    pub fn open(home: &A3sHome) -> Self {
        Self {
            home: home.clone(),
            dir: home.root().join("boxes"),
        }
    }

    /// The A3S home these boxes live in.
    pub fn home(&self) -> &A3sHome {
        &self.home
    }

    /// A box's directory.
    pub fn box_dir(&self, id: &BoxId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    fn state_path(&self, id: &BoxId) -> PathBuf {
        self.box_dir(id).join("state.json")
    }

    /// Loads a record as stored (no reconciliation).
    ///
    /// # Errors
    /// [`StateError`].
    pub fn load(&self, id: &BoxId) -> Result<BoxRecord, BoxError> {
        Ok(state::read_record(&self.state_path(id))?)
    }

    /// Applies `f` to the record under the box lock and writes it back atomically.
    ///
    /// # Errors
    /// State errors or `f`'s.
    pub fn update(
        &self,
        id: &BoxId,
        f: impl FnOnce(&mut BoxRecord) -> Result<(), BoxError>,
    ) -> Result<BoxRecord, BoxError> {
        let _lock = state::lock_file(&self.box_dir(id).join("lock"))?;
        let mut rec = self.load(id)?;
        f(&mut rec)?;
        state::write_record(&self.state_path(id), &rec)?;
        Ok(rec)
    }

    /// A record with a dead monitor turned into `exited` (and persisted): what survives a crash
    /// of the monitor or of the foreground CLI it was attached to.
    fn reconcile(&self, rec: BoxRecord) -> BoxRecord {
        match rec.state.monitor_pid() {
            Some(pid) if !state::alive(pid) => self
                .update(&rec.id, |r| {
                    if r.state.monitor_pid() == Some(pid) {
                        r.state = BoxState::Exited {
                            exit_code: monitor::KILLED_EXIT_CODE,
                            error: Some("the box's monitor process ended unexpectedly".into()),
                        };
                        r.finished_at = Some(state::now_rfc3339());
                    }
                    Ok(())
                })
                .unwrap_or(rec),
            _ => rec,
        }
    }

    /// Every box, oldest first.
    ///
    /// # Errors
    /// i/o on the boxes directory.
    pub fn list(&self) -> Result<Vec<BoxRecord>, BoxError> {
        let Ok(entries) = fs_err::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in entries.filter_map(Result::ok) {
            let Ok(id) = e.file_name().to_string_lossy().parse::<BoxId>() else {
                continue;
            };
            if let Ok(rec) = self.load(&id) {
                out.push(self.reconcile(rec));
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(out)
    }

    /// Finds a box by name, full id or unique id prefix.
    ///
    /// # Errors
    /// [`StateError::NotFound`] or [`StateError::Ambiguous`].
    pub fn find(&self, key: &str) -> Result<BoxRecord, BoxError> {
        let all = self.list()?;
        if let Some(r) = all.iter().find(|r| r.name == key || r.id.as_str() == key) {
            return Ok(r.clone());
        }
        let matches: Vec<&BoxRecord> = all
            .iter()
            .filter(|r| !key.is_empty() && r.id.as_str().starts_with(key))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(StateError::NotFound(key.to_owned()).into()),
            _ => Err(StateError::Ambiguous(key.to_owned()).into()),
        }
    }

    /// Creates a box: resolves the image (importing the embedded busybox image when it is asked
    /// for and missing), builds the workload from the image config and the request, reserves
    /// the name.
    ///
    /// # Errors
    /// Image, name, resources or command errors.
    pub fn create(&self, req: &CreateRequest) -> Result<BoxRecord, BoxError> {
        let id = BoxId::random();
        let Resolved {
            reference,
            image,
            spec,
            net,
            mounts,
        } = self.resolve_request(req, &id)?;
        let _names = state::lock_file(&self.dir.join(".lock"))?;
        let name = match &req.name {
            Some(n) => {
                state::check_name(n)?;
                n.clone()
            }
            None => format!("box-{}", &id.as_str()[..8]),
        };
        if let Some(other) = self.list()?.into_iter().find(|r| r.name == name) {
            return Err(StateError::NameInUse {
                name,
                id: other.id.to_string(),
            }
            .into());
        }
        let rec = BoxRecord {
            version: state::RECORD_VERSION,
            id: id.clone(),
            name,
            image: reference.familiar(),
            image_digest: image.digest.to_string(),
            created_at: state::now_rfc3339(),
            spec,
            state: BoxState::Created,
            kernel_cmdline: None,
            vm_mem_mib: None,
            started_at: None,
            finished_at: None,
            boot: None,
            start_count: 0,
            stopped_by_user: false,
            tee: None,
            health: None,
            paused: false,
            oom_killed: false,
            timings: Vec::new(),
            stop_timings: Vec::new(),
        };
        fs_err::create_dir_all(self.box_dir(&id))?;
        a3s_vmm::disk::create_layer(
            &self.box_dir(&id).join(LAYER_DISK),
            rec.spec.layer_bytes,
            layer_format(&rec.spec),
        )
        .inspect_err(|_| drop(fs_err::remove_dir_all(self.box_dir(&id))))?;
        let net = crate::network::attach::allocate(&self.home, &id, &rec.name, net)
            .inspect_err(|_| drop(fs_err::remove_dir_all(self.box_dir(&id))))?;
        net.save(&self.box_dir(&id))?;
        let volumes = crate::volumes::Volumes::open(&self.home);
        volumes
            .attach(&self.box_dir(&id), &id, &mounts)
            .inspect_err(|_| {
                crate::network::attach::release(&self.home, &id, &self.box_dir(&id));
                drop(fs_err::remove_dir_all(self.box_dir(&id)));
                // Anonymous volumes made before the failure belong to no box now.
                drop(volumes.remove_anonymous(&id));
            })?;
        state::write_record(&self.state_path(&id), &rec)?;
        self.emit(&rec, "create", &[]);
        Ok(rec)
    }

    /// Records lifecycle event `action` of `rec` for `a3s-box events`. Best effort: events
    /// are a convenience stream (the audit log is the record that must not miss anything).
    pub fn emit(&self, rec: &BoxRecord, action: &str, extra: &[(&str, String)]) {
        let event = events::BoxEvent::new(rec, action, extra);
        if let Err(e) = events::EventLog::open(self.home.root()).append(&event) {
            eprintln!(
                "a3s-box: recording the {action} event of {} failed: {e}",
                rec.name
            );
        }
    }

    /// What a request resolves to before the box exists: its image and the box's settings.
    /// `create` and [`Boxes::predict_plan`] share it, so a prediction sees exactly what a
    /// created box would.
    fn resolve_request(&self, req: &CreateRequest, id: &BoxId) -> Result<Resolved, BoxError> {
        let (vcpus, mem_mib) = VmConfig::resources(req.vcpus, req.mem_mib)?;
        if let Some(sec) = &req.security {
            sec.check_memory(req.memory_limit_bytes)?;
        }
        // Docker's range for a limit. A pod's figure only sizes its VM (never below what
        // boots), so kubelet's small sums stay valid.
        if let Some(limit) = req.memory_limit_bytes {
            a3s_vmm::memory::check_limit(limit)?;
        }
        let store = ImageStore::open(self.home.root().join("images"))?;
        let reference: ImageRef = req.image.parse().map_err(bad_ref(&req.image))?;
        let image = match store.resolve(&reference) {
            Err(StoreError::NotFound { .. }) if busybox::is_default(&reference) => {
                busybox::import(&store, &reference, &self.home.root().join("cache"))?
            }
            // A digest whose manifest is in the store runs without a name pointing at it (a
            // build step's intermediate image), like Docker's image ids.
            Err(StoreError::NotFound { .. })
                if reference.digest().is_some_and(|d| store.has_blob(d)) =>
            {
                let digest = reference.digest().cloned().expect("checked just above");
                store.resolve_manifest(&reference, &digest)?
            }
            other => other?,
        };
        let cfg = &image.config;
        let entrypoint = match &req.entrypoint {
            Some(e) if e.is_empty() => vec![],
            Some(e) => vec![e.clone()],
            None => cfg.entrypoint.clone(),
        };
        let cmd = if !req.args.is_empty() {
            req.args.clone()
        } else if req.entrypoint.is_some() {
            vec![]
        } else {
            cfg.cmd.clone()
        };
        let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
        if argv.is_empty() {
            return Err(BoxError::NoCommand);
        }
        let mut env = cfg.env.clone();
        env.extend(req.env.iter().cloned());

        if req.restart != restart::RestartPolicy::No {
            let with = if req.auto_remove {
                Some("--rm (a removed box cannot be restarted)")
            } else if req.tee.is_some() {
                Some("a TEE box (each boot attests again; restart it with `a3s-box start`)")
            } else {
                None
            };
            if let Some(with) = with {
                return Err(BoxError::RestartConflict {
                    policy: req.restart.to_arg(),
                    with,
                });
            }
        }
        let mut net = req.net.clone();
        if req.publish_all {
            // `-P`: every EXPOSEd port on a free host port, after the explicit `-p`s.
            net.ports
                .extend(crate::network::publish_exposed(&cfg.exposed_ports)?);
        }
        net.hostname.clone_from(&req.hostname);
        let net = net.resolve()?;
        crate::volumes::check_targets(&req.mounts)?;
        let mounts = crate::volumes::with_image_volumes(&req.mounts, &cfg.volumes)?;
        if let Some(tee) = &req.tee {
            tee.validate(net.mode != crate::network::NetMode::None)?;
            if tee.mode == crate::tee::spec::TeeMode::Snp {
                a3s_vmm::snp::check_host(Path::new("/"))
                    .map_err(|e| crate::tee::TeeError::NoSnp(e.to_string()))?;
                a3s_vmm::snp::SnpConfig::from_env()
                    .map_err(|e| crate::tee::TeeError::NoSnp(e.to_string()))?;
            }
        }
        // The image store does not keep the config's `Healthcheck`, so only the flags count.
        let health = req.health.resolve(None)?;
        let stop_signal = match req.stop_signal.as_ref().or(cfg.stop_signal.as_ref()) {
            Some(s) => Some(signal::parse_signal(s)?),
            None => None,
        };
        let hostname = req
            .hostname
            .clone()
            .unwrap_or_else(|| id.short().to_owned());
        let spec = BoxSpec {
            process: ProcessSpec {
                argv,
                env,
                workdir: req.workdir.clone().or_else(|| cfg.working_dir.clone()),
                user: req.user.clone().or_else(|| cfg.user.clone()),
                tty: req.tty,
                tty_size: req.tty_size,
                stdin: req.stdin,
            },
            setup: GuestSetup {
                hostname,
                hosts: req.hosts.iter().cloned().collect(),
                nameservers: net.nameservers(),
                mounts: crate::volumes::guest_mounts(&mounts),
                interfaces: Vec::new(),
                ..GuestSetup::default()
            },
            vcpus,
            mem_mib,
            memory_limit_bytes: req.memory_limit_bytes,
            pod_memory_bytes: req.pod_memory_bytes,
            kernel_args: req.kernel_args.clone(),
            auto_remove: req.auto_remove,
            tee: req.tee.clone(),
            health,
            labels: req.labels.clone(),
            stop_signal,
            stop_timeout: req.stop_timeout,
            restart: req.restart,
            layer_bytes: req
                .layer_bytes
                .unwrap_or(a3s_vmm::disk::DEFAULT_LAYER_BYTES),
            security: req.security.clone(),
        };
        Ok(Resolved {
            reference,
            image,
            spec,
            net,
            mounts,
        })
    }

    /// The plan a box created from `req` would boot, without creating it: the same image
    /// resolution, boot assets (built into the cache when missing, the image's filesystem
    /// too) and measured command line as `create` followed by `start`.
    ///
    /// # Errors
    /// Those of `create` and `start`'s preparation.
    pub fn predict_plan(&self, req: &CreateRequest) -> Result<(BoxSpec, String, VmPlan), BoxError> {
        let id = BoxId::random();
        let Resolved {
            reference,
            image,
            spec,
            net,
            ..
        } = self.resolve_request(req, &id)?;
        // A bridge box's addresses travel in `Start`, not on the measured command line, so
        // the address it will be given at create does not matter here.
        let digest = image.digest.to_string();
        let plan = self.boot_plan(&spec, &reference.familiar(), &digest, net, Vec::new())?;
        Ok((spec, digest, plan))
    }

    /// Prepares the boot assets of a box (cached), writing `plan.json` beside its record.
    ///
    /// # Errors
    /// Missing QEMU, kernel, guest-init, image; bad accelerator or machine override.
    pub fn prepare(&self, rec: &BoxRecord) -> Result<VmPlan, BoxError> {
        let net =
            crate::network::BoxNet::load(&self.box_dir(&rec.id))?.linked(&self.home, &rec.id)?;
        net.check_free()?;
        let mounts = crate::volumes::load_mounts(&self.box_dir(&rec.id))?;
        let mounts = crate::volumes::resolve(&crate::volumes::Volumes::open(&self.home), &mounts)?;
        let plan = self.boot_plan(&rec.spec, &rec.image, &rec.image_digest, net, mounts)?;
        let layer_disk = self.box_dir(&rec.id).join(LAYER_DISK);
        if !layer_disk.exists() {
            // A box created before writable layers existed.
            a3s_vmm::disk::create_layer(
                &layer_disk,
                rec.spec.layer_bytes,
                layer_format(&rec.spec),
            )?;
        }
        let json = serde_json::to_vec_pretty(&plan).map_err(std::io::Error::other)?;
        assets::write_atomic(&self.box_dir(&rec.id).join("plan.json"), &json)?;
        Ok(plan)
    }

    /// What a box with `spec`, image `image`@`image_digest`, network `net` and `mounts`
    /// boots: kernel, initrd, root filesystem and the measured command line.
    fn boot_plan(
        &self,
        spec: &BoxSpec,
        image: &str,
        image_digest: &str,
        net: crate::network::BoxNet,
        mounts: Vec<crate::volumes::ResolvedMount>,
    ) -> Result<VmPlan, BoxError> {
        // A PATH lookup, not `qemu --version`: a spawn costs tens of milliseconds per start.
        let on_path = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|d| d.join(a3s_vmm::host::QEMU_BINARY).is_file())
        });
        if !on_path {
            return Err(BoxError::NoQemu);
        }
        let cache = self.home.root().join("cache");
        let mut kernel_roots = vec![self.home.root().join("kernels")];
        if let Some(h) = std::env::var_os("HOME") {
            kernel_roots.push(PathBuf::from(h).join(".a3s/kernels"));
        }
        let kernel = KernelDir::locate(&kernel_roots)?;
        let snp = self.snp_launch(spec)?;
        // SNP: q35 and OVMF direct boot of the bzImage, whose hashes OVMF checks; otherwise
        // the faster PVH vmlinux on microvm.
        let (machine, kernel_image) = match &snp {
            Some(_) => (Machine::Q35, kernel.vmlinuz()),
            None => (Machine::from_env()?, kernel.vmlinux(&cache)?),
        };
        // Checked here so a bad value fails before anything boots (`vm_config` reads it again).
        a3s_vmm::tcg::tb_mib_from_env()?;
        a3s_vmm::host_pages::huge_pages_from_env()?;
        let init = assets::locate_guest_init()?;
        if !mounts.is_empty() {
            a3s_vmm::fs::locate_virtiofsd()?;
        }
        if snp.is_some() && !mounts.is_empty() {
            return Err(crate::tee::TeeError::NoSnp(
                "volumes and bind mounts are not supported in SEV-SNP boxes yet".into(),
            )
            .into());
        }
        let tee_modules: &[&str] = if snp.is_some() { &["sev-guest"] } else { &[] };
        // A plain pod's containers may make bridges with CAP_NET_ADMIN, as in any Kubernetes
        // pod; the VM has no modprobe, so the module is loaded at boot. Not in confidential
        // pods: their measured initrd stays what `measure` computes for the image.
        let pod_modules: &[&str] = if spec.tee.is_none()
            && spec
                .labels
                .contains_key(a3s_vmm::pod_image::POD_SANDBOX_LABEL)
        {
            POD_GUEST_MODULES
        } else {
            &[]
        };
        let layer = layer_format(spec);
        let crypt_modules: &[&str] = match layer {
            a3s_vmm::disk::LayerFormat::Encrypted => a3s_vmm::disk::CRYPT_GUEST_MODULES,
            a3s_vmm::disk::LayerFormat::Ext4 => &[],
        };
        let modules = [
            machine.guest_modules(),
            a3s_vmm::net::GUEST_MODULES,
            a3s_vmm::disk::GUEST_MODULES,
            if snp.is_some() {
                &[]
            } else {
                a3s_vmm::balloon::GUEST_MODULES
            },
            crypt_modules,
            tee_modules,
            pod_modules,
        ]
        .concat();
        let programs: &[&Path] = match layer {
            a3s_vmm::disk::LayerFormat::Encrypted => &[Path::new(a3s_vmm::disk::MKE2FS_PATH)],
            a3s_vmm::disk::LayerFormat::Ext4 => &[],
        };
        let base = assets::base_initrd(&cache, &kernel, &init, &modules, programs)?;
        let store = ImageStore::open(self.home.root().join("images"))?;
        let reference: ImageRef = image.parse().map_err(bad_ref(image))?;
        let digest: a3s_image::Digest = image_digest.parse().map_err(bad_ref(image_digest))?;
        let image = store.resolve_manifest(&reference, &digest)?;
        let root = store.filesystem(&image)?;
        let choice = accel::choose(
            accel::probe_kvm(Path::new("/")),
            std::env::var(accel::ACCEL_ENV).ok().as_deref(),
        )?;
        if snp.is_some() && choice.accel != Accel::Kvm {
            return Err(crate::tee::TeeError::NoSnp(format!(
                "SEV-SNP guests need KVM, and this host runs {} ({})",
                choice.accel.as_str(),
                choice.reason
            ))
            .into());
        }
        // The verity root hash and the image digest are on the (measured) command line: a
        // host cannot swap the root filesystem of a TEE box and still get a valid report.
        let mut extra = vec![
            format!("a3s.image={image_digest}"),
            format!("{}={}", a3s_vmm::disk::ROOT_ARG, root.verity_arg()),
            format!("{}={}", a3s_vmm::disk::RW_ARG, layer.kernel_value()),
        ];
        extra.extend(net.kernel_arg());
        extra.extend(spec.kernel_args.iter().cloned());
        let tsc_khz = match choice.accel {
            Accel::Tcg => a3s_vmm::clock::host_tsc_khz(&cache),
            Accel::Kvm => None,
        };
        // A TEE box's command line is measured: it keeps the fixed rate, whatever this host's
        // CPU, so its measurement is the same on every host; guest-init corrects the clock.
        let cmdline_tsc = if spec.tee.is_some() { None } else { tsc_khz };
        let mem_mib = match spec.memory_limit_bytes.or(spec.pod_memory_bytes) {
            Some(limit) => {
                let mib = a3s_vmm::memory::vm_mib_for_limit(
                    limit,
                    &kernel_image,
                    &base.path,
                    snp.is_some(),
                )
                .map_err(a3s_vmm::qemu::ConfigError::from)?;
                Some(VmConfig::resources(u32::from(spec.vcpus), mib)?.1)
            }
            None => None,
        };
        let plan = VmPlan {
            accel: choice.accel,
            accel_reason: choice.reason,
            machine,
            kernel: kernel_image,
            initrd: base.path,
            root_disk: root.path,
            cmdline: kernel_cmdline(choice.accel, cmdline_tsc, &extra),
            net: Some(net),
            mounts,
            snp,
            tsc_khz,
            mem_mib,
        };
        Ok(plan)
    }

    /// The SNP launch of a `--tee-enable` box (checked again at every start: the host may
    /// have changed since `create`), `None` for other boxes.
    fn snp_launch(&self, spec: &BoxSpec) -> Result<Option<a3s_vmm::snp::SnpConfig>, BoxError> {
        if spec.tee.as_ref().map(|t| t.mode) != Some(crate::tee::spec::TeeMode::Snp) {
            return Ok(None);
        }
        let no_snp = |e: a3s_vmm::snp::SnpHostError| {
            let mut msg = e.to_string();
            if let Some(h) = e.hint() {
                msg.push_str(&format!(" ({h})"));
            }
            crate::tee::TeeError::NoSnp(msg)
        };
        a3s_vmm::snp::check_host(Path::new("/")).map_err(no_snp)?;
        Ok(Some(a3s_vmm::snp::SnpConfig::from_env().map_err(no_snp)?))
    }

    /// The plan written by [`Boxes::prepare`].
    ///
    /// # Errors
    /// i/o or a malformed file.
    pub fn plan(&self, rec: &BoxRecord) -> Result<VmPlan, BoxError> {
        let text = fs_err::read(self.box_dir(&rec.id).join("plan.json"))?;
        serde_json::from_slice(&text).map_err(|e| BoxError::Io(std::io::Error::other(e)))
    }

    /// Starts a created or exited box: prepares assets, spawns its monitor (`exe __monitor`),
    /// waits until the workload runs. The monitor does not depend on this process: it keeps
    /// the box running if this process dies.
    ///
    /// # Errors
    /// Preparation errors, or [`BoxError::StartFailed`] with the monitor's reason.
    pub fn start(&self, key: &str, exe: &Path) -> Result<BoxRecord, BoxError> {
        let started = (std::time::SystemTime::now(), Instant::now());
        let rec = self.find(key)?;
        if rec.state.is_active() {
            return Err(BoxError::AlreadyRunning(rec.name));
        }
        let plan = self.prepare(&rec)?;
        a3s_vmm::memory::check(plan.mem_mib(&rec.spec), &plan.kernel, &plan.initrd)?;
        let prepare_ms = u64::try_from(started.1.elapsed().as_millis()).unwrap_or(u64::MAX);
        let dir = self.box_dir(&rec.id);
        let log = fs_err::File::create(dir.join("monitor.log"))?;
        let mut cmd = Command::new(exe);
        // `ps` shows the monitor as a3s-box, also when it runs from `/proc/self/exe`.
        std::os::unix::process::CommandExt::arg0(&mut cmd, "a3s-box");
        cmd.arg("__monitor")
            .arg(rec.id.as_str())
            .env(crate::home::HOME_ENV, self.home.root())
            .envs(timings::handoff(started.0, prepare_ms))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.into_parts().0);
        let mut child = cmd
            .spawn()
            .map_err(|e| BoxError::Monitor(format!("spawning {}: {e}", exe.display())))?;
        // Wait for Running, or for the exit this start produced (a boot failure, or a workload
        // that already finished).
        loop {
            let now = self.load(&rec.id)?;
            let ended_now = now.finished_at != rec.finished_at;
            match &now.state {
                BoxState::Running { .. } => return Ok(now),
                BoxState::Exited {
                    exit_code: 125,
                    error: Some(message),
                } if ended_now => {
                    return Err(BoxError::StartFailed {
                        name: rec.name,
                        message: message.clone(),
                    });
                }
                BoxState::Exited { .. } if ended_now => return Ok(now),
                _ => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                if self.load(&rec.id)?.finished_at != rec.finished_at {
                    continue;
                }
                let log = fs_err::read_to_string(dir.join("monitor.log")).unwrap_or_default();
                return Err(BoxError::StartFailed {
                    name: rec.name,
                    message: format!("the monitor exited with {status}: {}", log.trim()),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn monitor_socket(&self, rec: &BoxRecord) -> Result<PathBuf, BoxError> {
        if !matches!(rec.state, BoxState::Running { .. }) {
            return Err(BoxError::NotRunning(rec.name.clone()));
        }
        Ok(self.box_dir(&rec.id).join(MONITOR_SOCKET))
    }

    /// Sends a request to a running box's monitor.
    ///
    /// # Errors
    /// [`BoxError::NotRunning`] or monitor errors.
    pub fn request(&self, rec: &BoxRecord, msg: &client::ClientMsg) -> Result<(), BoxError> {
        let sock = self.monitor_socket(rec)?;
        match client::request(&sock, msg, Duration::from_secs(10)) {
            Ok(client::MonitorMsg::Done) => Ok(()),
            Ok(other) => Err(BoxError::Monitor(format!("{other:?}"))),
            Err(e) => Err(BoxError::Monitor(format!("{e}"))),
        }
    }

    /// Asks a running box's guest-init one question (`top`, `stats`) through its monitor.
    ///
    /// # Errors
    /// [`BoxError::NotRunning`], [`BoxError::Paused`] (its vCPUs could not answer), the
    /// guest's refusal, monitor errors.
    pub fn ask(
        &self,
        rec: &BoxRecord,
        msg: &client::ClientMsg,
    ) -> Result<client::MonitorMsg, BoxError> {
        let sock = self.monitor_socket(rec)?;
        if rec.paused {
            return Err(BoxError::Paused(rec.name.clone()));
        }
        match client::request(&sock, msg, Duration::from_secs(30)) {
            Ok(client::MonitorMsg::Error { message }) => Err(BoxError::Guest {
                name: rec.name.clone(),
                message,
            }),
            Ok(answer) => Ok(answer),
            Err(e) => Err(BoxError::Monitor(format!("{e}"))),
        }
    }

    /// Opens an exec session in a running box.
    ///
    /// # Errors
    /// [`BoxError::NotRunning`] or monitor errors.
    pub fn exec(
        &self,
        rec: &BoxRecord,
        process: ProcessSpec,
    ) -> Result<std::os::unix::net::UnixStream, BoxError> {
        let sock = self.monitor_socket(rec)?;
        // Docker refuses to exec into a paused container (the process could not run).
        if rec.paused {
            return Err(BoxError::Paused(rec.name.clone()));
        }
        client::connect(&sock, &client::ClientMsg::Exec { process })
            .map_err(|e| BoxError::Monitor(e.to_string()))
    }

    /// Opens a pod container session (`msg` is [`client::ClientMsg::ContainerExec`] or
    /// [`client::ClientMsg::ContainerAttach`]).
    ///
    /// # Errors
    /// [`BoxError::NotRunning`] or monitor errors.
    pub fn container_session(
        &self,
        rec: &BoxRecord,
        msg: &client::ClientMsg,
    ) -> Result<std::os::unix::net::UnixStream, BoxError> {
        let sock = self.monitor_socket(rec)?;
        client::connect(&sock, msg).map_err(|e| BoxError::Monitor(e.to_string()))
    }

    /// Opens an RA-TLS relay to a running TEE box's attestation agent.
    ///
    /// # Errors
    /// [`BoxError::NotRunning`] or monitor errors.
    pub fn attest_session(
        &self,
        rec: &BoxRecord,
    ) -> Result<std::os::unix::net::UnixStream, BoxError> {
        let sock = self.monitor_socket(rec)?;
        client::connect(&sock, &client::ClientMsg::Attest)
            .map_err(|e| BoxError::Monitor(e.to_string()))
    }

    /// Attaches to the workload's stdin.
    ///
    /// # Errors
    /// [`BoxError::NotRunning`] or monitor errors.
    pub fn attach_stdin(
        &self,
        rec: &BoxRecord,
    ) -> Result<std::os::unix::net::UnixStream, BoxError> {
        let sock = self.monitor_socket(rec)?;
        client::connect(&sock, &client::ClientMsg::AttachStdin)
            .map_err(|e| BoxError::Monitor(e.to_string()))
    }

    /// Holds a box's record until the hold is dropped: its monitor waits for this before it
    /// removes a `--rm` box, so this process can read the exit code and the last output.
    ///
    /// # Errors
    /// [`BoxError::NotRunning`] when it is being removed; i/o errors when it is gone.
    pub fn hold_exit(&self, rec: &BoxRecord) -> Result<exit_hold::ExitHold, BoxError> {
        exit_hold::hold(&self.box_dir(&rec.id)).map_err(|e| match e {
            exit_hold::HoldError::Removing => BoxError::NotRunning(rec.name.clone()),
            other => BoxError::Io(std::io::Error::other(other)),
        })
    }

    /// Tells a running `-t` box's workload its terminal's new size.
    ///
    /// # Errors
    /// [`BoxError::NotRunning`] or monitor errors.
    pub fn resize(&self, rec: &BoxRecord, rows: u16, cols: u16) -> Result<(), BoxError> {
        self.request(rec, &client::ClientMsg::Resize { rows, cols })
    }

    /// Renames a box (Docker's `rename`): the new name must be valid and not taken.
    ///
    /// # Errors
    /// A bad or taken name; an unknown box.
    pub fn rename(&self, key: &str, new_name: &str) -> Result<BoxRecord, BoxError> {
        state::check_name(new_name)?;
        let _names = state::lock_file(&self.dir.join(".lock"))?;
        let rec = self.find(key)?;
        if let Some(other) = self
            .list()?
            .into_iter()
            .find(|r| r.name == new_name && r.id != rec.id)
        {
            return Err(StateError::NameInUse {
                name: new_name.to_owned(),
                id: other.id.to_string(),
            }
            .into());
        }
        let renamed = self.update(&rec.id, |r| {
            new_name.clone_into(&mut r.name);
            Ok(())
        })?;
        self.emit(&renamed, "rename", &[("oldName", rec.name.clone())]);
        Ok(renamed)
    }

    /// Stops a box: its stop signal (`--stop-signal`, the image's `StopSignal`, else SIGTERM),
    /// then SIGKILL of the VM after the timeout (`--stop-timeout`, else 10 s) unless `opts`
    /// names others; waits until it has exited.
    ///
    /// # Errors
    /// Monitor errors.
    pub fn stop(&self, key: &str, opts: impl Into<StopOptions>) -> Result<BoxRecord, BoxError> {
        let opts = opts.into();
        let rec = self.find(key)?;
        let timeout = opts
            .timeout
            .or(rec.spec.stop_timeout.map(Duration::from_secs))
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        let signal = opts.signal.or(rec.spec.stop_signal).unwrap_or(SIGTERM);
        // The state can move on while we look (a restart boots again): act on what it is now.
        loop {
            let rec = self.reconcile(self.load(&rec.id)?);
            match rec.state {
                BoxState::Starting { .. } => {
                    // Not serving requests yet: wait for it to come up first.
                    std::thread::sleep(Duration::from_millis(25));
                }
                BoxState::Restarting { .. } | BoxState::Running { .. } => {
                    self.update(&rec.id, |r| {
                        r.stopped_by_user = true;
                        Ok(())
                    })?;
                    if let BoxState::Running { .. } = rec.state {
                        // Docker stops a paused container: it runs again to get the signal.
                        // Should QMP fail, the stop timeout still kills the VM.
                        if rec.paused {
                            let _ = self.resume(&rec);
                        }
                        let asked = self.request(
                            &rec,
                            &client::ClientMsg::Stop {
                                timeout_secs: timeout.as_secs(),
                                signal: Some(signal),
                            },
                        );
                        if let Err(e) = asked {
                            // A monitor that is ending (its workload just exited) drops the
                            // question; only one that lives on without answering is an error.
                            match rec.state.monitor_pid() {
                                Some(pid) => wait_for_exit(pid, MONITOR_EXIT_WAIT),
                                None => return Err(e),
                            }
                            if rec.state.monitor_pid().is_some_and(state::alive) {
                                return Err(e);
                            }
                            continue;
                        }
                        let done = self.wait_until(&rec.id, |s| !s.is_active(), None);
                        let _ =
                            std::fs::remove_file(self.box_dir(&rec.id).join(monitor::STOP_REQUEST));
                        // The monitor records the exit, then releases the TAP, forwarders
                        // and DNS socket: `stop` (and `rm -f`) return once it is gone.
                        if let Some(pid) = rec.state.monitor_pid() {
                            wait_for_exit(pid, MONITOR_EXIT_WAIT);
                        }
                        return done;
                    }
                    // Waiting out its back-off: the monitor sees this and ends instead (or,
                    // if it just began the next boot, the next round stops that run).
                    fs_err::write(self.box_dir(&rec.id).join(monitor::STOP_REQUEST), b"")?;
                    self.wait_until(&rec.id, |s| !matches!(s, BoxState::Restarting { .. }), None)?;
                }
                _ => return Ok(rec),
            }
        }
    }

    /// `pause`: stops the VM's vCPUs over QMP (the guest keeps its memory; the host's CPU is
    /// freed) and records the box as paused.
    ///
    /// # Errors
    /// [`BoxError::NotRunning`], [`BoxError::Paused`], QMP errors.
    pub fn pause(&self, key: &str) -> Result<BoxRecord, BoxError> {
        let rec = self.find(key)?;
        let BoxState::Running { monitor_pid, .. } = rec.state else {
            return Err(BoxError::NotRunning(rec.name));
        };
        if rec.paused {
            return Err(BoxError::Paused(rec.name));
        }
        self.qmp(&rec)?.execute("stop")?;
        let rec = self.update(&rec.id, |r| {
            // Only over the run we paused: a box that ended meanwhile is not paused.
            r.paused = r.state.monitor_pid() == Some(monitor_pid);
            Ok(())
        })?;
        self.emit(&rec, "pause", &[]);
        Ok(rec)
    }

    /// `unpause`: lets the vCPUs of a paused box run again.
    ///
    /// # Errors
    /// [`BoxError::NotPaused`], QMP errors.
    pub fn unpause(&self, key: &str) -> Result<BoxRecord, BoxError> {
        let rec = self.find(key)?;
        if !rec.paused || !matches!(rec.state, BoxState::Running { .. }) {
            return Err(BoxError::NotPaused(rec.name));
        }
        self.resume(&rec)?;
        let rec = self.load(&rec.id)?;
        self.emit(&rec, "unpause", &[]);
        Ok(rec)
    }

    /// Continues a paused box's vCPUs and clears the mark.
    fn resume(&self, rec: &BoxRecord) -> Result<(), BoxError> {
        self.qmp(rec)?.execute("cont")?;
        self.update(&rec.id, |r| {
            r.paused = false;
            Ok(())
        })?;
        Ok(())
    }

    fn qmp(&self, rec: &BoxRecord) -> Result<a3s_vmm::qmp::Qmp, BoxError> {
        Ok(a3s_vmm::qmp::Qmp::connect(
            &self.box_dir(&rec.id).join(QMP_SOCKET),
        )?)
    }

    /// Waits until the box's state satisfies `done` (or `limit` passes).
    ///
    /// # Errors
    /// State errors; a timeout returns the record as it is.
    pub fn wait_until(
        &self,
        id: &BoxId,
        done: impl Fn(&BoxState) -> bool,
        limit: Option<Duration>,
    ) -> Result<BoxRecord, BoxError> {
        let start = Instant::now();
        loop {
            let rec = self.reconcile(self.load(id)?);
            if done(&rec.state) || limit.is_some_and(|l| start.elapsed() > l) {
                return Ok(rec);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Removes a box (stopping it first with `force`). Its anonymous volumes stay (Docker's
    /// `rm`), unless the box was created with `--rm`.
    ///
    /// # Errors
    /// [`BoxError::StillRunning`] without `force`.
    pub fn remove(&self, key: &str, force: bool) -> Result<BoxRecord, BoxError> {
        self.remove_with_volumes(key, force, false)
    }

    /// [`Boxes::remove`]; with `volumes` (`rm -v`) the box's anonymous volumes go too.
    ///
    /// # Errors
    /// As [`Boxes::remove`].
    pub fn remove_with_volumes(
        &self,
        key: &str,
        force: bool,
        volumes: bool,
    ) -> Result<BoxRecord, BoxError> {
        let rec = self.find(key)?;
        if rec.state.is_active() {
            if !force {
                return Err(BoxError::StillRunning(rec.name));
            }
            self.stop(key, Duration::ZERO)?;
        }
        self.remove_dir(&rec.id, volumes)?;
        Ok(rec)
    }

    /// Removes a box's directory; its anonymous volumes too with `volumes` or when it is a
    /// `--rm` box (Docker removes those with the box).
    fn remove_dir(&self, id: &BoxId, volumes: bool) -> Result<(), BoxError> {
        let dir = self.box_dir(id);
        let _lock = state::lock_file(&dir.join("lock"))?;
        let rec = self.load(id);
        if let Ok(rec) = &rec {
            self.emit(rec, "destroy", &[]);
        }
        crate::network::attach::release(&self.home, id, &dir);
        // Rename first so a half-removed box never looks like a box.
        let trash = self.dir.join(format!(".removed-{}", id.as_str()));
        fs_err::rename(&dir, &trash)?;
        fs_err::remove_dir_all(&trash)?;
        if volumes || rec.is_ok_and(|r| r.spec.auto_remove) {
            crate::volumes::Volumes::open(&self.home).remove_anonymous(id)?;
        }
        Ok(())
    }

    /// The output log of a box.
    pub fn output_log(&self, rec: &BoxRecord) -> PathBuf {
        self.box_dir(&rec.id).join(OUTPUT_LOG)
    }
}
