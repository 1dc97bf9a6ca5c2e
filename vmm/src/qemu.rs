//! The QEMU process: validated configuration, the (pure) argument list, spawning with a boot
//! watchdog and one channel to guest-init.

use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::accel::Accel;
use crate::assets::INIT_PATH;
use crate::diagnose::Diagnosis;
use crate::host::QEMU_BINARY;
use crate::proto::{self, Frame, GuestMsg, ProtoError, PORT_NAME};

/// Overrides the machine type (`microvm` or `q35`).
pub const MACHINE_ENV: &str = "A3S_BOX_MACHINE";
/// qboot, the microvm firmware.
pub const QBOOT_ROM: &str = "/usr/share/qemu/qboot.rom";
/// Most vCPUs a box may ask for.
pub const MAX_VCPUS: u8 = 32;
/// Smallest `--memory` accepted at create; whether the kernel and init fit is checked against
/// their real sizes before each boot ([`crate::memory`]).
pub const MIN_MEM_MIB: u32 = 1;

/// The QEMU machine model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    /// `-M microvm` with qboot: fastest boot; virtio-mmio devices.
    Microvm,
    /// `-M q35` with SeaBIOS: about 1 s slower; virtio-pci devices.
    Q35,
}

impl Machine {
    /// The machine from `A3S_BOX_MACHINE`, else microvm.
    ///
    /// # Errors
    /// [`ConfigError::UnknownMachine`] for any other value.
    pub fn from_env() -> Result<Self, ConfigError> {
        match std::env::var(MACHINE_ENV).ok().as_deref().map(str::trim) {
            None | Some("" | "microvm") => Ok(Self::Microvm),
            Some("q35") => Ok(Self::Q35),
            Some(other) => Err(ConfigError::UnknownMachine(other.to_owned())),
        }
    }

    /// The firmware image QEMU loads first: what a simulated launch measures as its firmware
    /// (the stand-in image wraps it; see docs/simulated-measurement.md).
    pub fn firmware(self) -> &'static Path {
        match self {
            Self::Microvm => Path::new(QBOOT_ROM),
            // QEMU's default BIOS for q35.
            Self::Q35 => Path::new("/usr/share/seabios/bios-256k.bin"),
        }
    }

    /// Kernel modules guest-init must load before the channel appears.
    pub fn guest_modules(self) -> &'static [&'static str] {
        match self {
            // virtio-mmio is a module in the 6.12 cloud kernel; virtio-pci is built in.
            Self::Microvm => &["virtio_mmio"],
            Self::Q35 => &[],
        }
    }
}

/// The VM configuration was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Unknown `A3S_BOX_MACHINE`.
    #[error("{MACHINE_ENV}={0:?} is not a machine type: use microvm or q35")]
    UnknownMachine(String),
    /// vCPU count outside 1..=MAX_VCPUS.
    #[error("--cpus {0} is out of range (1 to {MAX_VCPUS})")]
    Vcpus(u32),
    /// Memory out of range.
    #[error("--memory {0} MiB is out of range")]
    Memory(u64),
    /// A workload memory limit out of range ([`crate::memory::check_limit`]).
    #[error(
        "--memory {0} bytes is out of range: a memory limit is at least 6 MiB (as Docker's) and at most 1 TiB"
    )]
    MemoryLimit(u64),
    /// Less memory than the kernel and the initrd need to boot.
    #[error("--memory {mem_mib} MiB is too small for this kernel and init: at least {need_mib} MiB is needed")]
    MemoryTooSmall {
        /// Asked for.
        mem_mib: u32,
        /// Needed (see [`crate::memory`]).
        need_mib: u64,
    },
    /// The memory need could not be computed.
    #[error(transparent)]
    MemoryNeed(#[from] crate::memory::MemoryError),
    /// A bad `A3S_BOX_TCG_TB_MIB` ([`crate::tcg`]).
    #[error("{0}")]
    TbSize(String),
    /// A bad `A3S_BOX_THP` ([`crate::host_pages`]).
    #[error("{0}")]
    Thp(String),
}

impl ConfigError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::MemoryTooSmall { need_mib, .. } => {
                Some(format!("run it with --memory {need_mib}m or more"))
            }
            _ => None,
        }
    }
}

/// Everything needed to boot one VM.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// Accelerator.
    pub accel: Accel,
    /// Machine model.
    pub machine: Machine,
    /// Guest memory.
    pub mem_mib: u32,
    /// vCPUs.
    pub vcpus: u8,
    /// Kernel (PVH `vmlinux`).
    pub kernel: PathBuf,
    /// Initrd (guest-init and kernel modules; the same for every image).
    pub initrd: PathBuf,
    /// Full kernel command line (see [`kernel_cmdline`]).
    pub cmdline: String,
    /// Unix socket QEMU listens on for the guest channel.
    pub channel_socket: PathBuf,
    /// Unix socket QEMU serves QMP on (`pause`/`unpause`); `None`: no QMP.
    pub qmp_socket: Option<PathBuf>,
    /// Serial console output file.
    pub console_log: PathBuf,
    /// QEMU's own stderr.
    pub qemu_log: PathBuf,
    /// Give up on one boot attempt after this much QEMU CPU time without `Ready`.
    pub boot_cpu_budget_secs: u64,
    /// Give up on one boot attempt after this much wall time without `Ready`.
    pub boot_timeout_secs: u64,
    /// Boot attempts before failing.
    pub boot_attempts: u32,
    /// The network device (`None`: no NIC at all).
    pub net: Option<crate::net::Nic>,
    /// Block devices: the image's root filesystem and the box's writable layer.
    pub disks: Vec<crate::disk::Disk>,
    /// virtiofs shares (volumes, bind mounts); any share switches guest RAM to a shared memfd.
    pub shares: Vec<crate::fs::Share>,
    /// An SEV-SNP launch (`--tee-enable`): q35, OVMF with kernel hashes, `sev-snp-guest`.
    pub snp: Option<crate::snp::SnpConfig>,
    /// A free-page-reporting balloon ([`crate::balloon`]; never for SNP launches).
    pub balloon: bool,
    /// TCG's translation buffer bound in MiB ([`crate::tcg`]; `None`: QEMU's default).
    pub tcg_tb_mib: Option<u32>,
    /// Let QEMU back guest RAM with transparent huge pages ([`crate::host_pages`]; off by
    /// default, so memory the guest does not use stays with the host).
    pub huge_pages: bool,
    /// Let the host's KSM merge this VM's identical pages with other processes' (QEMU's
    /// `mem-merge`, [`crate::host_pages`]); never for confidential boxes.
    pub mergeable: bool,
    /// Wait for a saved VM's state (`-incoming defer`) instead of booting: a restore
    /// ([`crate::template`]).
    pub incoming: bool,
}

impl VmConfig {
    /// Checks the resource numbers.
    ///
    /// # Errors
    /// [`ConfigError`] for out-of-range vCPUs or memory.
    pub fn resources(vcpus: u32, mem_mib: u64) -> Result<(u8, u32), ConfigError> {
        let v = u8::try_from(vcpus)
            .ok()
            .filter(|v| (1..=MAX_VCPUS).contains(v))
            .ok_or(ConfigError::Vcpus(vcpus))?;
        let m = u32::try_from(mem_mib)
            .ok()
            .filter(|m| *m >= MIN_MEM_MIB && *m <= 1 << 20)
            .ok_or(ConfigError::Memory(mem_mib))?;
        Ok((v, m))
    }
}

/// Built-in kernel initcalls no box uses, skipped at boot (`initcall_debug` under TCG, busy
/// host: 265 ms of the kernel's boot; quiet, 6 alternating boots each: the kernel step of a
/// cold boot 1221 → 1067 ms median):
/// the jitter entropy source (only FIPS mode's DRBG needs it; the kernel's own RNG does not),
/// the SP 800-108 KDF self-test, IMA, the module-signing and platform keyrings (the initrd's
/// modules carry no signatures, see [`crate::module_signature`]; nothing is kexec'd), and two
/// BPF struct-ops registrations (TCP congestion control in BPF).
pub const SKIPPED_INITCALLS: &str = "initcall_blacklist=jent_mod_init,crypto_kdf108_init,\
init_ima,load_system_certificate_list,platform_keyring_init,bpf_tcp_ca_kfunc_init,\
bpf_dummy_struct_ops_init";

/// The kernel command line for a box: fixed boot tuning, then the caller's extra arguments.
///
/// Under TCG, `lpj=` and `tsc_early_khz=` skip the delay-loop and TSC calibration; those
/// calibration loops are where `-M microvm` hung in 10-20 % (at times 2 in 3) of boots on these
/// machines, and with the presets 16/16 boots completed (see the crate docs). `tsc_khz` is the
/// rate given to the kernel: the host's TSC rate for plain boxes, `None` for the fixed
/// [`crate::clock::FIXED_TSC_KHZ`] on a measured command line (guest-init corrects the clock).
///
/// `transparent_hugepage=never`: from 512 MiB of RAM the kernel turns THP on, and khugepaged
/// then raises `min_free_kbytes` to 44 MiB (1794 KiB at 256 MiB), which the guest keeps free
/// and out of `MemAvailable` (1 GiB box: 831 MiB available with THP, 891 without), while its
/// huge pages buy little on guest RAM the host backs with base pages ([`crate::host_pages`]).
/// A box that wants them passes `--kernel-arg transparent_hugepage=always` (the last wins).
pub fn kernel_cmdline(accel: Accel, tsc_khz: Option<u64>, extra: &[String]) -> String {
    let parts = vec![
        "console=ttyS0",
        "quiet",
        "nokaslr",
        "mitigations=off",
        "cryptomgr.notests",
        "no_timer_check",
        "tsc=reliable",
        "panic=-1",
        "reboot=t",
        "transparent_hugepage=never",
        SKIPPED_INITCALLS,
        crate::balloon::REPORTING_ORDER_ARG,
    ];
    let mut line = parts.join(" ");
    if accel == Accel::Tcg {
        let khz = tsc_khz.unwrap_or(crate::clock::FIXED_TSC_KHZ);
        line.push_str(&format!(" lpj=4000000 tsc_early_khz={khz}"));
    }
    line.push_str(" rdinit=");
    line.push_str(INIT_PATH);
    for e in extra {
        line.push(' ');
        line.push_str(e);
    }
    line
}

/// Ports of the virtio-serial device: port 0, which QEMU keeps for a console, and the
/// channel. The guest driver makes two virtqueues per port the device offers at probe, each
/// as deep as virtio-mmio's 1024 entries: QEMU's default of 31 ports cost every box 58
/// unused rings (guest `MemFree` 4.5 MiB lower, host RSS 1.4 MiB higher, measured on
/// idle `-m 128m` busybox boxes).
const SERIAL_PORTS: u32 = 2;

/// A pod NIC's TAP, opened in the pod's namespace afresh for every QEMU (each closes it on
/// exit); `None` for other networks.
fn open_pod_tap(config: &VmConfig) -> Result<Option<std::os::fd::OwnedFd>, StartError> {
    match &config.net {
        Some(crate::net::Nic::Pod(p)) => Ok(Some(crate::netns::open_tap_in(&p.netns, &p.ifname)?)),
        _ => Ok(None),
    }
}

/// QEMU's argument list for `config` (pure: unit-tested without QEMU).
pub fn qemu_args(config: &VmConfig) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    if let Some(snp) = &config.snp {
        // The SNP machine is q35 (virtio-pci devices below), KVM only, private memory.
        a.extend(crate::snp::machine_args(snp, config.vcpus, config.mem_mib));
    } else {
        let mut push = |s: &str| a.push(s.into());
        match config.machine {
            Machine::Microvm => {
                push("-M");
                push(&format!(
                    "microvm,acpi=on{}",
                    crate::host_pages::merge_option(config.mergeable)
                ));
                push("-bios");
                push(QBOOT_ROM);
            }
            Machine::Q35 => {
                push("-M");
                push(&format!(
                    "q35,smbus=off,sata=off{}",
                    crate::host_pages::merge_option(config.mergeable)
                ));
            }
        }
        push("-accel");
        push(&crate::tcg::accel_arg(config.accel, config.tcg_tb_mib));
        push("-cpu");
        push(match config.accel {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        });
        push("-m");
        push(&config.mem_mib.to_string());
        push("-smp");
        push(&config.vcpus.to_string());
    }
    let mut push = |s: &str| a.push(s.into());
    for s in [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ] {
        push(s);
    }
    let (serial_bus, port) = match config.machine {
        Machine::Microvm => ("virtio-serial-device", "virtserialport"),
        Machine::Q35 => ("virtio-serial-pci", "virtserialport"),
    };
    let path = |p: &Path| p.display().to_string();
    let args = [
        "-kernel".to_owned(),
        path(&config.kernel),
        "-initrd".into(),
        path(&config.initrd),
        "-append".into(),
        config.cmdline.clone(),
        "-chardev".into(),
        format!("file,id=con,path={}", path(&config.console_log)),
        "-serial".into(),
        "chardev:con".into(),
        "-device".into(),
        format!("{serial_bus},max_ports={SERIAL_PORTS}"),
        "-chardev".into(),
        format!(
            "socket,id=ctl,path={},server=on,wait=off",
            path(&config.channel_socket)
        ),
        "-device".into(),
        format!("{port},chardev=ctl,name={PORT_NAME}"),
    ];
    a.extend(args.into_iter().map(OsString::from));
    if let Some(qmp) = &config.qmp_socket {
        a.push("-qmp".into());
        a.push(format!("unix:{},server=on,wait=off", path(qmp)).into());
    }
    a.extend(crate::disk::qemu_args(&config.disks, config.machine));
    if let Some(net) = &config.net {
        a.extend(net.qemu_args(config.machine));
    }
    a.extend(crate::fs::qemu_args(
        &config.shares,
        config.machine,
        config.mem_mib,
    ));
    // Last, so the other virtio-mmio devices keep their slots.
    if config.balloon && config.snp.is_none() {
        a.extend(crate::balloon::qemu_args(config.machine));
    }
    if config.incoming {
        a.push("-incoming".into());
        a.push("defer".into());
    }
    a
}

/// Starting a VM failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// QEMU could not be spawned.
    #[error("cannot run {binary}")]
    SpawnQemu {
        /// The binary.
        binary: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// QEMU exited before the guest was ready.
    #[error("QEMU exited ({status}) before the guest was ready: {}", detail(.diagnosis, .stderr))]
    QemuExited {
        /// Its exit status.
        status: ExitStatus,
        /// The end of its stderr.
        stderr: String,
        /// What the console and QEMU's log say killed the boot.
        diagnosis: Option<Diagnosis>,
    },
    /// The channel socket never appeared or refused connections.
    #[error("cannot connect to the guest channel {path}{}", detail_suffix(.diagnosis))]
    Channel {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
        /// What the console and QEMU's log say.
        diagnosis: Option<Diagnosis>,
    },
    /// Every boot attempt stalled.
    #[error("the guest did not finish booting in {attempts} attempts (each allowed {cpu_secs} s of CPU and {wall_secs} s of wall time){}; console log: {console}", detail_suffix(.diagnosis))]
    BootTimeout {
        /// What the last attempt's console and QEMU's log say.
        diagnosis: Option<Diagnosis>,
        /// Attempts made.
        attempts: u32,
        /// CPU budget per attempt.
        cpu_secs: u64,
        /// Wall budget per attempt.
        wall_secs: u64,
        /// Where the last console output is.
        console: PathBuf,
    },
    /// The guest spoke something other than `Ready` first, or an incompatible version.
    #[error("guest-init sent an unexpected first message")]
    Handshake(#[source] ProtoError),
    /// Files for the VM could not be prepared.
    #[error("preparing VM files")]
    Io(#[from] std::io::Error),
    /// A virtiofs daemon (volume or bind mount) could not start.
    #[error(transparent)]
    Fs(#[from] crate::fs::FsError),
    /// The user network's forwarder could not start.
    #[error(transparent)]
    Forwarder(#[from] crate::passt::PasstError),
    /// A pod's TAP could not be opened in its namespace.
    #[error(transparent)]
    PodTap(#[from] crate::netns::NetnsTapError),
    /// Restoring a saved template failed (the caller boots cold instead).
    #[error("restoring the saved VM: {0}")]
    Restore(String),
}

impl StartError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::SpawnQemu { .. } => Some(
                "install QEMU 10 from bookworm-backports: `sudo scripts/setup` \
                 (apt-get install -t bookworm-backports qemu-system-x86)"
                    .into(),
            ),
            Self::Fs(e) => e.hint(),
            Self::Forwarder(e) => e.hint(),
            Self::QemuExited {
                diagnosis: Some(d), ..
            }
            | Self::Channel {
                diagnosis: Some(d), ..
            }
            | Self::BootTimeout {
                diagnosis: Some(d), ..
            } => Some(d.hint.clone()),
            Self::QemuExited { .. } => Some(
                "QEMU left no reason; look at the console log and run the box again without \
                 --rm to keep it"
                    .into(),
            ),
            Self::BootTimeout { .. } => Some(format!(
                "the host may be overloaded; try {MACHINE_ENV}=q35, which does not stall under TCG"
            )),
            _ => None,
        }
    }
}

/// How the boot went.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BootInfo {
    /// Attempts needed (1 unless a stalled boot was retried).
    pub attempts: u32,
    /// Wall time from spawning the successful QEMU to `Ready`.
    pub boot_ms: u64,
    /// The guest's uptime when guest-init said `Ready`.
    pub guest_uptime_ms: u64,
    /// Where the guest's part of the boot went (from its `Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guest_steps: Vec<proto::BootStep>,
    /// The user network's forwarder and why it was chosen (`None`: no user network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarder: Option<crate::passt::ForwarderChoice>,
    /// How the box's published ports reach it (`None`: not a user network with ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<crate::net::Published>,
    /// Restored from a saved template ([`crate::template`]) rather than booted.
    #[serde(default)]
    pub restored: bool,
    /// Why a box that could have been restored was booted cold (`None`: restored, or not
    /// asked to try).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_reason: Option<String>,
    /// Wall time spent making the template this start restored from (first start only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ms: Option<u64>,
    /// Of `boot_ms` of a restored box: QEMU's start and loading the saved state (the rest is
    /// the guest's `Resume`: drivers, network, root filesystem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_load_ms: Option<u64>,
}

/// `config` with its user network's forwarder chosen for this host, and the choice.
fn with_forwarder(
    config: &VmConfig,
) -> Result<(VmConfig, Option<crate::passt::ForwarderChoice>), StartError> {
    let mut config = config.clone();
    let mut choice = None;
    if let Some(crate::net::Nic::User(u)) = &mut config.net {
        let c = match u.forwarder {
            Some(f) => crate::passt::ForwarderChoice {
                forwarder: f,
                reason: "chosen by the caller".into(),
            },
            None => crate::passt::choose()?,
        };
        u.forwarder = Some(c.forwarder);
        choice = Some(c);
    }
    Ok((config, choice))
}

/// A user network's inbound TAP, opened afresh for every QEMU (each closes it on exit).
fn open_inbound(config: &VmConfig) -> Result<Option<std::os::fd::OwnedFd>, StartError> {
    match &config.net {
        Some(crate::net::Nic::User(crate::net::UserNet {
            inbound: Some(i), ..
        })) => Ok(Some(crate::netns::open_tap_in(&i.netns, &i.ifname)?)),
        _ => Ok(None),
    }
}

fn published(config: &VmConfig) -> Option<crate::net::Published> {
    match &config.net {
        Some(crate::net::Nic::User(u)) => u.published(),
        _ => None,
    }
}

/// A running VM with its channel to guest-init. Dropping it kills QEMU.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    /// One virtiofsd per share; dropped (killed, reaped) after QEMU.
    _daemons: crate::fs::Daemons,
    /// The user network's passt, if it has one; dropped after QEMU.
    _passt: Option<crate::passt::Passt>,
    writer: Mutex<UnixStream>,
    frames: Receiver<Result<Frame, ProtoError>>,
    /// How the boot went.
    pub boot: BootInfo,
}

impl Vm {
    /// Boots `config` and waits for guest-init's `Ready`, retrying a stalled boot with a fresh
    /// QEMU (see [`kernel_cmdline`] for why a microvm boot can stall under TCG).
    ///
    /// # Errors
    /// [`StartError`], one variant per step.
    pub fn start(config: &VmConfig) -> Result<Self, StartError> {
        let (config, forwarder) = &with_forwarder(config)?;
        for _attempt in 1..=config.boot_attempts.max(1) {
            // A daemon serves one QEMU connection, so every attempt gets fresh ones.
            let daemons = crate::fs::Daemons::spawn(&config.shares)?;
            let passt = match &config.net {
                Some(crate::net::Nic::User(u))
                    if u.forwarder == Some(crate::passt::Forwarder::Passt) =>
                {
                    let log = config.qemu_log.with_file_name("passt.log");
                    Some(crate::passt::Passt::spawn(
                        &u.forwards,
                        &log,
                        config.mergeable,
                    )?)
                }
                _ => None,
            };
            let pod_tap = open_pod_tap(config)?;
            let inbound_tap = open_inbound(config)?;
            let net_fd = passt.as_ref().map(|p| &p.1).or(pod_tap.as_ref());
            let mut child = spawn_qemu(config, net_fd, inbound_tap.as_ref())?;
            drop(pod_tap);
            drop(inbound_tap);
            // QEMU holds its end now; ours would keep the link up after QEMU is gone.
            let passt = passt.map(|(p, _)| p);
            let started = Instant::now();
            let stream = match connect_channel(&config.channel_socket, &mut child, config) {
                Ok(s) => s,
                Err(e) => {
                    kill_and_reap(&mut child);
                    return Err(e);
                }
            };
            let reader = stream.try_clone()?;
            let frames = spawn_reader(reader);
            match wait_ready(&mut child, &frames, config, started) {
                Ok((uptime_ms, guest_steps)) => {
                    return Ok(Self {
                        child,
                        _daemons: daemons,
                        _passt: passt,
                        writer: Mutex::new(stream),
                        frames,
                        boot: BootInfo {
                            attempts: _attempt,
                            boot_ms: elapsed_ms(started),
                            guest_uptime_ms: uptime_ms,
                            guest_steps,
                            forwarder: forwarder.clone(),
                            published: published(config),
                            restored: false,
                            cold_reason: None,
                            template_ms: None,
                            restore_load_ms: None,
                        },
                    });
                }
                Err(Wait::Stalled) => kill_and_reap(&mut child),
                Err(Wait::Failed(e)) => {
                    kill_and_reap(&mut child);
                    return Err(e);
                }
            }
        }
        Err(StartError::BootTimeout {
            diagnosis: diagnose_files(config),
            attempts: config.boot_attempts.max(1),
            cpu_secs: config.boot_cpu_budget_secs,
            wall_secs: config.boot_timeout_secs,
            console: config.console_log.clone(),
        })
    }

    /// Starts `config` from its saved template ([`crate::template`]) when it can, making the
    /// template first when there is none yet, and boots it cold otherwise (the reason is in
    /// [`BootInfo::cold_reason`]). `templates` (`A3S_HOME/cache/templates`) is `None` for
    /// boxes that must boot cold (TEE boxes, whatever their configuration says).
    ///
    /// # Errors
    /// [`StartError`] of the cold boot: a failed restore is not an error, it falls back.
    pub fn start_or_restore(
        config: &VmConfig,
        templates: Option<&Path>,
    ) -> Result<Self, StartError> {
        let Some(templates) = templates else {
            return Self::start(config);
        };
        let (config, forwarder) = &with_forwarder(config)?;
        let cold = |reason: String| {
            let mut vm = Self::start(config)?;
            vm.boot.forwarder.clone_from(forwarder);
            vm.boot.cold_reason = Some(reason);
            Ok(vm)
        };
        let plan = match crate::template::Plan::for_box(config, templates) {
            Ok(p) => p,
            Err(why) => return cold(why.to_string()),
        };
        let mut template_ms = None;
        match plan.check() {
            Ok(()) => {}
            Err(crate::template::TemplateError::Missing) => {
                let t = Instant::now();
                if let Err(e) = plan.create() {
                    return cold(format!("making the template: {e}"));
                }
                template_ms = Some(elapsed_ms(t));
            }
            Err(e) => return cold(e.to_string()),
        }
        match Self::restore(&plan.restore_config(config), &plan) {
            Ok(mut vm) => {
                vm.boot.forwarder.clone_from(forwarder);
                vm.boot.template_ms = template_ms;
                Ok(vm)
            }
            // The box's own set-up failed (a changed image, a layer that does not mount): a
            // cold boot would fail the same way, and the template is fine.
            Err(RestoreFailed::Box(e)) => Err(e),
            Err(RestoreFailed::Template(e)) => {
                plan.discard();
                cold(format!("{e}; the template was removed"))
            }
        }
    }

    /// Restores `plan`'s template with `config`'s backends, hands the guest the box's own
    /// arguments, fresh entropy and the clock, and waits for its second `Ready`.
    fn restore(config: &VmConfig, plan: &crate::template::Plan) -> Result<Self, RestoreFailed> {
        let restore_err = |e: &dyn std::fmt::Display| StartError::Restore(e.to_string());
        let template = RestoreFailed::Template;
        // The box's own backends: failing to start them fails the box (a port in use), not
        // the template.
        let daemons =
            crate::fs::Daemons::spawn(&config.shares).map_err(|e| RestoreFailed::Box(e.into()))?;
        let passt = match &config.net {
            Some(crate::net::Nic::User(u))
                if u.forwarder == Some(crate::passt::Forwarder::Passt) =>
            {
                let log = config.qemu_log.with_file_name("passt.log");
                Some(
                    crate::passt::Passt::spawn(&u.forwards, &log, config.mergeable)
                        .map_err(|e| RestoreFailed::Box(e.into()))?,
                )
            }
            _ => None,
        };
        let pod_tap = open_pod_tap(config).map_err(RestoreFailed::Box)?;
        let inbound_tap = open_inbound(config).map_err(RestoreFailed::Box)?;
        let net_fd = passt.as_ref().map(|p| &p.1).or(pod_tap.as_ref());
        let mut child = spawn_qemu(config, net_fd, inbound_tap.as_ref()).map_err(template)?;
        drop(pod_tap);
        drop(inbound_tap);
        let passt = passt.map(|(p, _)| p);
        let started = Instant::now();
        let mut load_ms = 0;
        let resumed = (|| {
            let qmp_path = config
                .qmp_socket
                .as_deref()
                .ok_or_else(|| StartError::Restore("the VM has no QMP socket".into()))?;
            let mut qmp = connect_qmp(qmp_path, &mut child, config)?;
            qmp.execute_with("migrate-set-capabilities", crate::template::mapped_ram())
                .map_err(|e| restore_err(&e))?;
            let stream = connect_channel(&config.channel_socket, &mut child, config)?;
            let uri = format!("file:{}", plan.state().display());
            qmp.execute_with("migrate-incoming", serde_json::json!({ "uri": uri }))
                .map_err(|e| restore_err(&e))?;
            crate::template::wait_migration(&mut qmp).map_err(|e| restore_err(&e))?;
            load_ms = elapsed_ms(started);
            qmp.execute("cont").map_err(|e| restore_err(&e))?;
            let resume = proto::HostMsg::Resume {
                args: plan.args.clone(),
                entropy: crate::template::host_entropy()?,
                // The rate correction comes with `Start`, as on a cold boot.
                clock: proto::GuestClock::now(None),
            };
            let mut writer = stream.try_clone()?;
            proto::write_frame(
                &mut writer,
                &Frame::control(proto::WORKLOAD_SESSION, &resume).map_err(|e| restore_err(&e))?,
            )
            .map_err(|e| restore_err(&e))?;
            Ok(stream)
        })()
        .map_err(RestoreFailed::Template)
        .and_then(|stream| {
            let frames = spawn_reader(stream.try_clone().map_err(|e| template(e.into()))?);
            match wait_ready(&mut child, &frames, config, started) {
                Ok(ready) => Ok((stream, frames, ready)),
                Err(Wait::Failed(e)) => Err(RestoreFailed::Box(e)),
                Err(Wait::Stalled) => Err(template(StartError::Restore(
                    "the restored guest did not answer".into(),
                ))),
            }
        });
        match resumed {
            Ok((stream, frames, (uptime_ms, guest_steps))) => Ok(Self {
                child,
                _daemons: daemons,
                _passt: passt,
                writer: Mutex::new(stream),
                frames,
                boot: BootInfo {
                    attempts: 1,
                    boot_ms: elapsed_ms(started),
                    guest_uptime_ms: uptime_ms,
                    guest_steps,
                    forwarder: None,
                    published: published(config),
                    restored: true,
                    cold_reason: None,
                    template_ms: None,
                    restore_load_ms: Some(load_ms),
                },
            }),
            Err(e) => {
                kill_and_reap(&mut child);
                Err(match e {
                    RestoreFailed::Template(e @ StartError::Restore(_)) => template(e),
                    RestoreFailed::Template(other) => {
                        template(StartError::Restore(other.to_string()))
                    }
                    e @ RestoreFailed::Box(_) => e,
                })
            }
        }
    }

    /// QEMU's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a frame to the guest.
    ///
    /// # Errors
    /// The channel's error.
    pub fn send(&self, frame: &Frame) -> Result<(), ProtoError> {
        let mut w = self
            .writer
            .lock()
            .map_err(|_| ProtoError::Io(std::io::Error::other("channel writer poisoned")))?;
        proto::write_frame(&mut *w, frame)
    }

    /// A cloneable sender for other threads.
    ///
    /// # Errors
    /// Cloning the socket.
    pub fn sender(&self) -> std::io::Result<UnixStream> {
        self.writer
            .lock()
            .map_err(|_| std::io::Error::other("channel writer poisoned"))?
            .try_clone()
    }

    /// The next frame from the guest, waiting at most `timeout`. `Ok(None)` on timeout.
    ///
    /// # Errors
    /// The channel's error, or [`ProtoError::Closed`] once QEMU is gone.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Frame>, ProtoError> {
        match self.frames.recv_timeout(timeout) {
            Ok(r) => r.map(Some),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(ProtoError::Closed),
        }
    }

    /// Whether QEMU has exited (reaping it if so).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Forced stop: SIGKILL QEMU and reap it.
    pub fn kill(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

enum Wait {
    Stalled,
    Failed(StartError),
}

/// How a restore failed.
enum RestoreFailed {
    /// Before the guest had the box (QEMU refused the template, it did not answer): the box
    /// boots cold and the template goes.
    Template(StartError),
    /// The guest failed setting the box up, as a cold boot of it would.
    Box(StartError),
}

fn spawn_qemu(
    config: &VmConfig,
    net_fd: Option<&std::os::fd::OwnedFd>,
    inbound_fd: Option<&std::os::fd::OwnedFd>,
) -> Result<Child, StartError> {
    let _ = std::fs::remove_file(&config.channel_socket);
    if let Some(qmp) = &config.qmp_socket {
        let _ = std::fs::remove_file(qmp);
    }
    let stderr = fs_err::File::create(&config.qemu_log)?;
    let mut cmd = Command::new(QEMU_BINARY);
    cmd.args(qemu_args(config))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.into_parts().0)
        .process_group(0);
    set_parent_death_kill(&mut cmd);
    if !config.huge_pages {
        crate::host_pages::disable_thp(&mut cmd);
    }
    if let Some(fd) = net_fd {
        crate::passt::give_to_qemu(&mut cmd, fd);
    }
    // Above every descriptor the child's dup2s write: placing the network's fd can then not
    // overwrite this one before it is placed.
    let inbound_fd = inbound_fd
        .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 100))
        .transpose()
        .map_err(|e| StartError::SpawnQemu {
            binary: QEMU_BINARY.into(),
            source: e.into(),
        })?;
    if let Some(fd) = &inbound_fd {
        crate::passt::give_inbound_to_qemu(&mut cmd, fd);
    }
    cmd.spawn().map_err(|source| StartError::SpawnQemu {
        binary: QEMU_BINARY.into(),
        source,
    })
}

/// QEMU gets SIGKILL when the thread that spawned it dies, so no VM outlives its owner.
#[allow(unsafe_code)]
fn set_parent_death_kill(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

fn connect_channel(
    path: &Path,
    child: &mut Child,
    config: &VmConfig,
) -> Result<UnixStream, StartError> {
    connect_while_alive(
        child,
        config,
        5,
        || UnixStream::connect(path),
        |e| StartError::Channel {
            path: path.to_owned(),
            source: e,
            diagnosis: diagnose_files(config),
        },
    )
}

/// A QMP session with a QEMU that is starting (its socket appears shortly after spawning).
fn connect_qmp(
    path: &Path,
    child: &mut Child,
    config: &VmConfig,
) -> Result<crate::qmp::Qmp, StartError> {
    connect_while_alive(
        child,
        config,
        2,
        || crate::qmp::Qmp::connect(path),
        |e| StartError::Restore(e.to_string()),
    )
}

/// Retries `connect` every `poll_ms` for up to 10 s while QEMU lives: QEMU exiting is
/// reported with its log and the diagnosis, the deadline with `timed_out`'s error.
fn connect_while_alive<T, E>(
    child: &mut Child,
    config: &VmConfig,
    poll_ms: u64,
    connect: impl Fn() -> Result<T, E>,
    timed_out: impl FnOnce(E) -> StartError,
) -> Result<T, StartError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match connect() {
            Ok(c) => return Ok(c),
            Err(e) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(StartError::QemuExited {
                        status,
                        stderr: tail(&config.qemu_log),
                        diagnosis: diagnose_files(config),
                    });
                }
                if Instant::now() > deadline {
                    return Err(timed_out(e));
                }
                std::thread::sleep(Duration::from_millis(poll_ms));
            }
        }
    }
}

fn spawn_reader(mut stream: UnixStream) -> Receiver<Result<Frame, ProtoError>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || loop {
        let r = proto::read_frame(&mut stream);
        let end = r.is_err();
        if tx.send(r).is_err() || end {
            return;
        }
    });
    rx
}

fn wait_ready(
    child: &mut Child,
    frames: &Receiver<Result<Frame, ProtoError>>,
    config: &VmConfig,
    started: Instant,
) -> Result<(u64, Vec<proto::BootStep>), Wait> {
    loop {
        match frames.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(frame)) => {
                return match frame.message::<GuestMsg>() {
                    Ok(GuestMsg::Ready {
                        version,
                        uptime_ms,
                        steps,
                    }) if version == proto::PROTO_VERSION => Ok((uptime_ms, steps)),
                    Ok(GuestMsg::Ready { version, .. }) => Err(Wait::Failed(
                        StartError::Handshake(ProtoError::UnsupportedVersion { found: version }),
                    )),
                    Ok(_) => Err(Wait::Failed(StartError::Handshake(ProtoError::NotControl(
                        frame.kind,
                    )))),
                    Err(e) => Err(Wait::Failed(StartError::Handshake(e))),
                };
            }
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                // The channel closed: QEMU died or is dying (guest-init powers off after a
                // fatal error). On a loaded host QEMU can take well over 50 ms to exit, and
                // calling that a stall threw away good templates and hid the guest's error.
                let status = wait_exit(child, CHANNEL_CLOSED_EXIT_GRACE);
                return Err(match status {
                    Some(status) => Wait::Failed(StartError::QemuExited {
                        status,
                        stderr: tail(&config.qemu_log),
                        diagnosis: diagnose_files(config),
                    }),
                    None => Wait::Stalled,
                });
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Wait::Failed(StartError::QemuExited {
                status,
                stderr: tail(&config.qemu_log),
                diagnosis: diagnose_files(config),
            }));
        }
        let cpu = cpu_time_secs(child.id()).unwrap_or(0.0);
        if cpu > config.boot_cpu_budget_secs as f64
            || started.elapsed() > Duration::from_secs(config.boot_timeout_secs)
        {
            return Err(Wait::Stalled);
        }
    }
}

/// How long QEMU may take to exit once the guest closed the channel before the boot is
/// called stalled (a guest that closed it is powering off).
const CHANNEL_CLOSED_EXIT_GRACE: Duration = Duration::from_secs(5);

/// `child`'s exit status once it exits, polled until `grace` has passed (`None`: still running).
fn wait_exit(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_time_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Some((utime + stime) / hz)
}

/// Resident memory of a process in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn elapsed_ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The diagnosis of `config`'s console log and QEMU log as they are now.
pub fn diagnose_files(config: &VmConfig) -> Option<Diagnosis> {
    // QEMU exits right after a panic (`panic=-1`, `-no-reboot`); its file chardev has written
    // every byte by then, so the files are complete.
    let read = |p: &Path| {
        read_tail(p, DIAGNOSE_TAIL_BYTES)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    crate::diagnose::diagnose(&read(&config.console_log), &read(&config.qemu_log))
}

/// How much of the end of a console or QEMU log is diagnosed: the guest writes the console,
/// so its size is the guest's to choose; a panic and its context are the last few KiB.
const DIAGNOSE_TAIL_BYTES: u64 = 4 << 20;

/// The last `limit` bytes of `path`.
fn read_tail(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(limit)))?;
    let mut out = Vec::new();
    f.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

fn detail(diagnosis: &Option<Diagnosis>, stderr: &str) -> String {
    match diagnosis {
        Some(d) => d.to_string(),
        None if stderr == "(no output)" => {
            "no error on the console or from QEMU (no output)".to_owned()
        }
        None => stderr.to_owned(),
    }
}

fn detail_suffix(diagnosis: &Option<Diagnosis>) -> String {
    diagnosis
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

/// The last `lines` lines of a log (QEMU's, virtiofsd's, the guest console), joined by " / ",
/// or "(no output)". Reads at most the last 64 KiB: a guest chooses how much it writes.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let bytes = read_tail(path, 64 << 10).unwrap_or_default();
    let s = String::from_utf8_lossy(&bytes);
    let last: Vec<&str> = s.lines().rev().take(lines).collect();
    if last.is_empty() {
        "(no output)".into()
    } else {
        last.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }
}

fn tail(path: &Path) -> String {
    log_tail(path, 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(machine: Machine) -> VmConfig {
        VmConfig {
            accel: Accel::Tcg,
            machine,
            mem_mib: 256,
            vcpus: 1,
            kernel: "/k/vmlinux".into(),
            initrd: "/c/initrd.img".into(),
            cmdline: kernel_cmdline(Accel::Tcg, None, &["a3s.x=1".into()]),
            channel_socket: "/b/ctl.sock".into(),
            qmp_socket: Some("/b/qmp.sock".into()),
            console_log: "/b/console.log".into(),
            qemu_log: "/b/qemu.log".into(),
            boot_cpu_budget_secs: 12,
            boot_timeout_secs: 90,
            net: None,
            disks: vec![],
            shares: vec![],
            snp: None,
            balloon: true,
            boot_attempts: 3,
            tcg_tb_mib: Some(32),
            huge_pages: false,
            mergeable: true,
            incoming: false,
        }
    }

    #[test]
    fn a_vm_that_closes_its_channel_and_exits_slowly_failed_rather_than_stalled() {
        // The guest closed the channel (guest-init powers off after a fatal error) and QEMU
        // takes 400 ms to exit, as on a loaded host: that is the guest's failure, reported
        // with QEMU's exit, not a stall (which discarded good templates and retried).
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(Machine::Microvm);
        c.console_log = dir.path().join("console.log");
        c.qemu_log = dir.path().join("qemu.log");
        let mut child = Command::new("sleep").arg("0.4").spawn().unwrap();
        let (tx, frames) = std::sync::mpsc::channel::<Result<Frame, ProtoError>>();
        drop(tx);
        match wait_ready(&mut child, &frames, &c, Instant::now()) {
            Err(Wait::Failed(StartError::QemuExited { status, .. })) => {
                assert!(status.success(), "{status}")
            }
            Err(Wait::Failed(e)) => panic!("{e}"),
            Err(Wait::Stalled) => panic!("called a stall"),
            Ok(_) => panic!("ready"),
        }
    }

    #[test]
    fn an_snp_launch_replaces_the_machine_with_the_confidential_q35() {
        let mut c = config(Machine::Q35);
        c.accel = Accel::Kvm;
        c.snp = Some(crate::snp::SnpConfig {
            firmware: "/fw/OVMF.amdsev.fd".into(),
            policy: crate::snp::DEFAULT_POLICY,
        });
        let s = joined(&c);
        assert!(
            s.starts_with("-machine q35,confidential-guest-support=sev0,memory-backend=ram1 -cpu EPYC-v4 -enable-kvm -smp 1 -m 256M"),
            "{s}"
        );
        assert!(s.contains(
            "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on"
        ));
        assert!(s.contains("-bios /fw/OVMF.amdsev.fd"));
        assert!(!s.contains("-accel") && !s.contains("qboot"), "{s}");
        assert!(!s.contains("balloon"), "SNP memory is private: {s}");
        assert!(s.contains("-device virtio-serial-pci"), "{s}");
    }

    fn joined(c: &VmConfig) -> String {
        qemu_args(c)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn microvm_arguments_are_exactly_these() {
        let expected = "-M microvm,acpi=on -bios /usr/share/qemu/qboot.rom -accel tcg,tb-size=32 -cpu max \
            -m 256 -smp 1 -nodefaults -no-user-config -display none -no-reboot \
            -kernel /k/vmlinux -initrd /c/initrd.img -append console=ttyS0 quiet nokaslr \
            mitigations=off cryptomgr.notests no_timer_check tsc=reliable panic=-1 reboot=t \
            transparent_hugepage=never initcall_blacklist=jent_mod_init,crypto_kdf108_init,init_ima,\
load_system_certificate_list,platform_keyring_init,bpf_tcp_ca_kfunc_init,\
bpf_dummy_struct_ops_init page_reporting.page_reporting_order=3 lpj=4000000 tsc_early_khz=2400000 \
            rdinit=/.a3s/init a3s.x=1 \
            -chardev file,id=con,path=/b/console.log -serial chardev:con \
            -device virtio-serial-device,max_ports=2 -chardev socket,id=ctl,path=/b/ctl.sock,server=on,wait=off \
            -device virtserialport,chardev=ctl,name=a3s.ctl \
            -qmp unix:/b/qmp.sock,server=on,wait=off \
            -device virtio-balloon-device,id=balloon0,free-page-reporting=on";
        let expected: Vec<&str> = expected.split_whitespace().collect();
        assert_eq!(joined(&config(Machine::Microvm)), expected.join(" "));
    }

    #[test]
    fn a_vm_that_must_not_share_pages_says_so_on_either_machine() {
        for (machine, prefix) in [
            (Machine::Microvm, "-M microvm,acpi=on,mem-merge=off "),
            (Machine::Q35, "-M q35,smbus=off,sata=off,mem-merge=off "),
        ] {
            let c = VmConfig {
                mergeable: false,
                ..config(machine)
            };
            assert!(joined(&c).starts_with(prefix), "{}", joined(&c));
            assert!(!joined(&config(machine)).contains("mem-merge"));
        }
    }

    #[test]
    fn tcg_command_line_carries_the_given_tsc_rate_or_the_fixed_one() {
        let own = kernel_cmdline(Accel::Tcg, Some(2_596_128), &[]);
        assert!(own.contains(" tsc_early_khz=2596128 "), "{own}");
        let fixed = kernel_cmdline(Accel::Tcg, None, &[]);
        assert!(fixed.contains(" tsc_early_khz=2400000 "), "{fixed}");
        assert!(!kernel_cmdline(Accel::Kvm, Some(2_596_128), &[]).contains("tsc_early_khz"));
    }

    #[test]
    fn q35_uses_pci_devices_and_kvm_uses_host_cpu() {
        let mut c = config(Machine::Q35);
        c.accel = Accel::Kvm;
        c.cmdline = kernel_cmdline(Accel::Kvm, Some(3_000_000), &[]);
        let s = joined(&c);
        assert!(s.starts_with("-M q35,smbus=off,sata=off -accel kvm -cpu host"));
        assert!(s.contains("-device virtio-serial-pci"));
        assert!(!s.contains("lpj="), "calibration presets are for TCG only");
        assert!(Machine::Q35.guest_modules().is_empty());
        assert_eq!(Machine::Microvm.guest_modules(), ["virtio_mmio"]);
    }

    #[test]
    fn resources_are_range_checked() {
        assert_eq!(VmConfig::resources(2, 512).unwrap(), (2, 512));
        assert!(matches!(
            VmConfig::resources(0, 512),
            Err(ConfigError::Vcpus(0))
        ));
        assert!(matches!(
            VmConfig::resources(64, 512),
            Err(ConfigError::Vcpus(64))
        ));
        assert!(matches!(
            VmConfig::resources(1, 0),
            Err(ConfigError::Memory(0))
        ));
        assert!(matches!(
            VmConfig::resources(1, 1 << 40),
            Err(ConfigError::Memory(_))
        ));
    }

    #[test]
    fn reads_own_cpu_time_and_rss() {
        let me = std::process::id();
        assert!(cpu_time_secs(me).is_some());
        assert!(rss_kib(me).unwrap() > 0);
    }
}
