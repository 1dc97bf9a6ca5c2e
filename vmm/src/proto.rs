//! The host↔guest channel protocol (and the framing the box monitor reuses for its clients).
//!
//! One byte stream (a virtio-serial port on the guest side, a unix socket on the host side)
//! carries frames:
//!
//! ```text
//! offset size field
//! 0x00   2    magic "A3"
//! 0x02   1    protocol version (PROTO_VERSION)
//! 0x03   1    kind: 0 control (JSON message), 1 stdin, 2 stdout, 3 stderr, 4 stdin closed
//! 0x04   4    session, big-endian (0 = the workload, 1.. = exec sessions)
//! 0x08   4    payload length, big-endian, at most MAX_PAYLOAD
//! 0x0C   len  payload
//! ```
//!
//! Control payloads are JSON objects tagged by `"type"`, so a new message is a new enum variant
//! and an old peer rejects it by name (fail closed) instead of misreading bytes. Output and input
//! travel as raw data frames, so a busy workload costs no encoding.
//!
//! TEE boxes add guest→host requests that carry a `request` id: [`GuestMsg::ReportRequest`]
//! and [`GuestMsg::KeyRequest`] are answered by [`HostMsg::Report`], [`HostMsg::DerivedKey`] or
//! [`HostMsg::RequestFailed`] with the same id. Only a simulated TEE answers them on the host
//! (the host plays the secure processor); an SNP guest asks `/dev/sev-guest` and never the host.
//! [`HostMsg::RatlsOpen`] turns an exec-style session into a byte stream on which the guest's
//! agent serves RA-TLS (stdin frames in, stdout frames out), so `a3s-box attest` needs no port.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Frame magic.
pub const MAGIC: [u8; 2] = *b"A3";
/// Protocol version carried by every frame; any other value is refused.
pub const PROTO_VERSION: u8 = 1;
/// Largest payload accepted (1 MiB): bigger frames are refused before allocating.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Size of the fixed frame header.
pub const HEADER_LEN: usize = 12;
/// Session number of the box's main workload.
pub const WORKLOAD_SESSION: u32 = 0;
/// Name of the virtio-serial port that carries the channel.
pub const PORT_NAME: &str = "a3s.ctl";

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A JSON control message.
    Control,
    /// Bytes for a process's standard input.
    Stdin,
    /// Bytes a process wrote to standard output (or its terminal).
    Stdout,
    /// Bytes a process wrote to standard error.
    Stderr,
    /// Standard input reached end of file.
    StdinClosed,
}

impl Kind {
    fn to_byte(self) -> u8 {
        match self {
            Self::Control => 0,
            Self::Stdin => 1,
            Self::Stdout => 2,
            Self::Stderr => 3,
            Self::StdinClosed => 4,
        }
    }

    fn from_byte(b: u8) -> Result<Self, ProtoError> {
        Ok(match b {
            0 => Self::Control,
            1 => Self::Stdin,
            2 => Self::Stdout,
            3 => Self::Stderr,
            4 => Self::StdinClosed,
            other => return Err(ProtoError::UnknownKind(other)),
        })
    }
}

/// One frame on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the payload is.
    pub kind: Kind,
    /// Which process it concerns.
    pub session: u32,
    /// The payload (JSON for control frames).
    pub payload: Vec<u8>,
}

/// A frame could not be read, written or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The stream failed (including read timeouts).
    #[error("channel i/o failed")]
    Io(#[from] io::Error),
    /// The peer closed the stream between frames.
    #[error("channel closed by the peer")]
    Closed,
    /// The frame does not start with the magic.
    #[error("bad frame magic {0:02x?}: the peer does not speak the a3s channel protocol")]
    BadMagic([u8; 2]),
    /// The frame's protocol version is not ours.
    #[error("unsupported channel protocol version {found} (this build speaks {PROTO_VERSION})")]
    UnsupportedVersion {
        /// The version in the frame.
        found: u8,
    },
    /// Unknown frame kind byte.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The length field exceeds [`MAX_PAYLOAD`].
    #[error("frame payload of {len} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge {
        /// The announced length.
        len: usize,
    },
    /// A control payload is not a message we know.
    #[error("malformed control message")]
    Json(#[from] serde_json::Error),
    /// A data frame arrived where a control message was required.
    #[error("expected a control frame, got {0:?}")]
    NotControl(Kind),
}

impl Frame {
    /// A control frame carrying `msg` as JSON.
    ///
    /// # Errors
    /// [`ProtoError::Json`] if `msg` cannot be serialised, [`ProtoError::TooLarge`] if it is too big.
    pub fn control<T: Serialize>(session: u32, msg: &T) -> Result<Self, ProtoError> {
        let payload = serde_json::to_vec(msg)?;
        if payload.len() > MAX_PAYLOAD {
            return Err(ProtoError::TooLarge { len: payload.len() });
        }
        Ok(Self {
            kind: Kind::Control,
            session,
            payload,
        })
    }

    /// A data frame.
    pub fn data(kind: Kind, session: u32, payload: Vec<u8>) -> Self {
        Self {
            kind,
            session,
            payload,
        }
    }

    /// Decodes the control message in this frame.
    ///
    /// # Errors
    /// [`ProtoError::NotControl`] for data frames, [`ProtoError::Json`] for unknown messages.
    pub fn message<T: DeserializeOwned>(&self) -> Result<T, ProtoError> {
        if self.kind != Kind::Control {
            return Err(ProtoError::NotControl(self.kind));
        }
        Ok(serde_json::from_slice(&self.payload)?)
    }

    /// The frame as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&MAGIC);
        out.push(PROTO_VERSION);
        out.push(self.kind.to_byte());
        out.extend_from_slice(&self.session.to_be_bytes());
        let len =
            u32::try_from(self.payload.len()).expect("payload length is capped by MAX_PAYLOAD");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Writes one frame (header and payload in a single write, so concurrent writers sharing a
/// locked stream never interleave).
///
/// # Errors
/// [`ProtoError::TooLarge`] or the stream's error.
pub fn write_frame(w: &mut impl Write, frame: &Frame) -> Result<(), ProtoError> {
    if frame.payload.len() > MAX_PAYLOAD {
        return Err(ProtoError::TooLarge {
            len: frame.payload.len(),
        });
    }
    w.write_all(&frame.encode())?;
    w.flush()?;
    Ok(())
}

/// Reads one frame.
///
/// # Errors
/// [`ProtoError::Closed`] on a clean end of stream before a header, otherwise the first
/// problem found (magic, version, kind, length, i/o).
pub fn read_frame(r: &mut impl Read) -> Result<Frame, ProtoError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(ProtoError::Closed),
            Ok(0) => return Err(ProtoError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let magic = [header[0], header[1]];
    if magic != MAGIC {
        return Err(ProtoError::BadMagic(magic));
    }
    if header[2] != PROTO_VERSION {
        return Err(ProtoError::UnsupportedVersion { found: header[2] });
    }
    let kind = Kind::from_byte(header[3])?;
    let session = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(ProtoError::TooLarge { len });
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Frame {
        kind,
        session,
        payload,
    })
}

/// A process to run in the guest: the workload or an exec session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// Program and arguments (already resolved from entrypoint and cmd).
    pub argv: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Working directory (`/` when absent).
    pub workdir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid` (root when absent).
    pub user: Option<String>,
    /// Allocate a pseudo-terminal (stdout and stderr merge into it).
    pub tty: bool,
    /// Initial terminal size (rows, columns) when `tty`.
    pub tty_size: Option<(u16, u16)>,
    /// Standard input comes from the host (otherwise it is /dev/null).
    pub stdin: bool,
}

/// Where a pod VM mounts its share from the host (its containers' roots and CRI mounts).
pub const GUEST_POD_MOUNTS: &str = "/run/a3s/pod-mounts";
/// Where a plain pod VM mounts its containers' root filesystems (a second share, which only
/// the pod VM changes, so its files stay cached in the guest).
pub const GUEST_POD_ROOTS: &str = "/run/a3s/pod-roots";

/// A path of the pod VM bound into a pod container (a CRI mount, reaching the VM through the
/// pod's share).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMount {
    /// Absolute path in the pod VM (a file or a directory).
    pub source: String,
    /// Absolute path in the container (created when missing, resolved inside its root).
    pub target: String,
    /// Remounted read-only in the container. The guest sees the host path as one virtiofs
    /// mount, so this covers the host's submounts too: a plain pod sets it only for CRI's
    /// recursive read-only (its host bind enforces plain read-only, leaving submounts
    /// writable); a confidential pod's copies have only this.
    #[serde(default)]
    pub readonly: bool,
}

/// A pod container's security context (CRI `LinuxContainerSecurityContext`, resolved by the
/// host), applied by guest-init to the container's main process and to every exec in it.
/// Capabilities, no-new-privileges and groups go through the same pre-exec path as a box's
/// ([`Security`]); the paths are mounts in the container's own mount namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSecurity {
    /// Capabilities kept (`CAP_CHOWN`, ...); `None`: all of them (privileged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// setuid binaries and file capabilities grant nothing.
    #[serde(default)]
    pub no_new_privileges: bool,
    /// Supplementary gids added to the user's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<u32>,
    /// CRI's `SupplementalGroupsPolicy: Strict`: the user's memberships in the image's
    /// `/etc/group` are not added (only the primary group and `supplemental_groups`).
    #[serde(default)]
    pub strict_groups: bool,
    /// The container's root directory is read-only (its mounts keep their own modes).
    #[serde(default)]
    pub readonly_rootfs: bool,
    /// Paths made unreadable: `/dev/null` over a file, an empty read-only tmpfs over a
    /// directory (as runc does); missing ones are skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked_paths: Vec<String>,
    /// Paths made read-only (bound on themselves, remounted read-only); missing ones are
    /// skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readonly_paths: Vec<String>,
    /// Privileged: `/sys` is writable (capabilities are `None` and no paths are masked).
    #[serde(default)]
    pub privileged: bool,
    /// The PID namespace its processes live in.
    #[serde(default)]
    pub pid_namespace: PidNamespace,
    /// The seccomp filter its processes run under (`None`: unconfined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<SeccompProfile>,
    /// Devices of the pod VM given to the container (CRI `devices`), besides the standard
    /// set every unprivileged container gets (`null`, `zero`, `full`, `random`, `urandom`,
    /// `tty`, `ptmx`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<ContainerDevice>,
}

/// One device node of the pod VM, bound into a container's `/dev`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerDevice {
    /// The device's path in the pod VM (`/dev/fuse`).
    pub path: String,
    /// Where the container sees it, under `/dev`.
    pub container_path: String,
}

/// Which PID namespace a pod container's processes see (CRI's `NamespaceOption.pid`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PidNamespace {
    /// The pod's: shared by every container of the pod that asks for it, with a pause
    /// process as its PID 1 (Kubernetes' `shareProcessNamespace`).
    #[default]
    Pod,
    /// Its own: its main process is PID 1 (kubelet's default).
    Container,
    /// That of another container of the pod, by id (ephemeral debug containers).
    Target(String),
}

/// A seccomp filter in the OCI runtime spec's terms, syscalls by name (guest-init resolves
/// them for its architecture and compiles the filter).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompProfile {
    /// What a syscall no rule names gets.
    pub default_action: SeccompAction,
    /// The rules, in order: the first that names a syscall decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syscalls: Vec<SeccompRule>,
}

/// One rule: these syscalls, when every argument condition holds, get `action`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompRule {
    /// Syscall names (`chmod`, ...); names unknown to the guest's architecture are skipped,
    /// as runc does.
    pub names: Vec<String>,
    /// The action taken.
    pub action: SeccompAction,
    /// Conditions on the arguments, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<SeccompArg>,
}

/// A condition on a syscall argument (OCI `LinuxSeccompArg`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompArg {
    /// The argument's index (0 to 5).
    pub index: u8,
    /// The value compared.
    pub value: u64,
    /// The mask, for `MaskedEq`.
    #[serde(default)]
    pub value_two: u64,
    /// The comparison.
    pub op: SeccompOp,
}

/// OCI's `SCMP_CMP_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeccompOp {
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    #[default]
    Eq,
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `(arg & value_two) == value`
    MaskedEq,
}

/// OCI's `SCMP_ACT_*` that a filter can take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeccompAction {
    /// The syscall runs.
    #[default]
    Allow,
    /// It fails with this errno (OCI's default for `SCMP_ACT_ERRNO` is `EPERM`).
    Errno(u16),
    /// The process is killed (`SCMP_ACT_KILL_PROCESS`).
    KillProcess,
    /// The thread is killed (`SCMP_ACT_KILL`, `SCMP_ACT_KILL_THREAD`).
    KillThread,
    /// SIGSYS is sent.
    Trap,
    /// It runs and is logged.
    Log,
}

impl ContainerSecurity {
    /// The part applied between fork and exec exactly as for a box's processes.
    pub fn credentials(&self) -> Security {
        Security {
            capabilities: self.capabilities.clone(),
            no_new_privileges: self.no_new_privileges,
            group_add: self
                .supplemental_groups
                .iter()
                .map(ToString::to_string)
                .collect(),
            ..Security::default()
        }
    }
}

/// The identity a process runs with: what CRI's `ContainerStatus.user` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUser {
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its supplementary groups, as set with setgroups(2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<u32>,
}

/// Machine-wide settings applied before the workload starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSetup {
    /// The box's hostname.
    pub hostname: String,
    /// Extra `/etc/hosts` entries: host name → address.
    pub hosts: BTreeMap<String, String>,
    /// Name servers for `/etc/resolv.conf` (left alone when empty).
    pub nameservers: Vec<String>,
    /// `search` domains for `/etc/resolv.conf` (a pod's DNS config).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// `options` for `/etc/resolv.conf` (a pod's DNS config).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    /// virtiofs shares to mount before the workload starts (volumes and bind mounts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<GuestMount>,
    /// Bridge-network interfaces to configure before anything else starts, the default
    /// route's first (user networking's eth0 is set from the kernel command line instead).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<GuestNic>,
}

/// One NIC the guest configures, found by its MAC address (the order in which virtio devices
/// appear is not the order the host gave them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestNic {
    /// Its MAC address (`02:a3:…`, lower case).
    pub mac: String,
    /// Its addresses, IPv4 and IPv6 (at most one IPv4: a dual-stack or IPv6-only pod).
    pub addrs: Vec<GuestAddr>,
    /// The default routes' next hops, at most one per family (on the first NIC only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<std::net::IpAddr>,
    /// More routes through this NIC (a pod's CNI routes besides the default ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<GuestRoute>,
}

/// An address of a guest NIC with its subnet's prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestAddr {
    /// The address.
    pub addr: std::net::IpAddr,
    /// The subnet's prefix length.
    pub prefix: u8,
}

/// One route a guest NIC carries (IPv4 or IPv6; the next hop is of the same family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestRoute {
    /// Destination network.
    pub dst: std::net::IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// Next hop (`None`: directly on the link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<std::net::IpAddr>,
}

/// Docker's security and resource options (`--cap-add`, `--ulimit`, `--read-only`, ...), applied
/// by guest-init to the workload and to every exec session. Resolved by the host: names are
/// validated there, and the guest refuses (fails closed on) anything it does not know: a field
/// from a newer host (a limit this guest-init cannot apply) fails the request rather than
/// being dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// Capabilities kept (`CAP_CHOWN`, ...): the bounding set, and root's permitted and
    /// effective sets. `None`: all of them (boxes from before these options, CRI pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// `no-new-privileges`: setuid binaries and file capabilities grant nothing.
    #[serde(default)]
    pub no_new_privileges: bool,
    /// Resource limits set before the process execs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<Rlimit>,
    /// Supplementary groups added to the user's own (`--group-add`: names or gids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// Most tasks the workload and its exec sessions may have together (`--pids-limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
    /// Most memory the workload and its exec sessions may use together, in bytes (`--memory`:
    /// the cgroup's `memory.max`; the VM is sized to hold it beside the guest's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    /// Memory the workload keeps when the guest reclaims, in bytes (`--memory-reservation`:
    /// the cgroup's `memory.low`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_low_bytes: Option<u64>,
    /// Mount the root filesystem read-only (`--read-only`).
    #[serde(default)]
    pub read_only_root: bool,
    /// tmpfs mounts (`--tmpfs`, `--mount type=tmpfs`), made before the root turns read-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<TmpfsMount>,
    /// Size of `/dev/shm` in bytes (`--shm-size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size_bytes: Option<u64>,
    /// Kernel parameters written under `/proc/sys` (`--sysctl`; namespaced ones only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
}

/// One resource limit; [`Rlimit::UNLIMITED`] is `RLIM_INFINITY`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimit {
    /// Docker's name: `nofile`, `nproc`, `core`, ... (`RLIMIT_` + upper case).
    pub name: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit (at least `soft`).
    pub hard: u64,
}

impl Rlimit {
    /// No limit.
    pub const UNLIMITED: u64 = u64::MAX;
}

/// One tmpfs mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsMount {
    /// Absolute guest path.
    pub path: String,
    /// mount(8) options, validated by the host: `ro`/`rw`, `[no]exec`, `[no]suid`, `[no]dev`,
    /// `size=`, `mode=`, `uid=`, `gid=`, `nr_inodes=`.
    pub options: Vec<String>,
}

/// One step of the guest's boot before `Ready`: `kernel` (boot to guest-init), `modules`,
/// `network`, `root`; after a restore `resume` and the same steps from there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootStep {
    /// What ran.
    pub name: String,
    /// How long it took, by the guest's clock (a TEE box's runs up to 10 % off under TCG
    /// until guest-init corrects it, after `Ready`).
    pub ms: u64,
}

/// The host's clock, sent with the workload so the guest keeps time (see [`crate::clock`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestClock {
    /// The host's wall-clock time when the message was made, in nanoseconds since the Unix epoch.
    pub unix_nanos: u64,
    /// The rate the guest's TSC really ticks at (under TCG, the host's TSC rate), when the host
    /// knows it; absent under KVM, whose guests keep time with kvm-clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsc_khz: Option<u64>,
}

impl GuestClock {
    /// The host's clock now.
    pub fn now(tsc_khz: Option<u64>) -> Self {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            unix_nanos: u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX),
            tsc_khz,
        }
    }
}

/// One virtiofs share the guest mounts at `path` (created if missing) before the workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestMount {
    /// The virtiofs tag QEMU gives the device (at most 36 bytes).
    pub tag: String,
    /// Absolute guest path.
    pub path: String,
    /// Mount read-only (writes fail with EROFS).
    #[serde(default)]
    pub readonly: bool,
    /// A named volume without `nocopy`: when the share is empty and the image has files at
    /// `path`, copy them into the share before mounting it there (Docker's copy-up).
    #[serde(default)]
    pub copy_up: bool,
}

/// Which TEE the guest's attestation agent talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TeeMode {
    /// SEV-SNP hardware: reports and derived keys from `/dev/sev-guest` or configfs-tsm.
    Snp,
    /// The host-side simulator: reports and derived keys over this channel.
    Simulated,
}

/// One secret the agent fetches from the KBS and places in `/run/secrets/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSpec {
    /// File name under `/run/secrets/` (validated by the host: `[A-Za-z0-9._-]`, not `.`/`..`).
    pub name: String,
    /// KBS resource path `repo/type/tag`.
    pub resource: String,
}

/// What the attestation agent does before the workload starts (TEE boxes only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeeSetup {
    /// Where evidence comes from.
    pub mode: TeeMode,
    /// The KBS as the guest reaches it (`http://10.0.2.2:PORT` for a KBS on host loopback);
    /// `None` when there are no secrets.
    pub kbs_url: Option<String>,
    /// Secrets to fetch, in order; any failure stops the box before the workload.
    pub secrets: Vec<SecretSpec>,
    /// Guest TCP port on which the agent serves RA-TLS to remote verifiers (publish it with
    /// `-p`); `None`: only through the channel.
    pub ratls_port: Option<u16>,
    /// The host filled the box's never-used writable-layer disk with the layer an earlier box
    /// of the same measurement made and never used (see [`GuestMsg::LayerMade`]): if it does
    /// not open, the guest makes a new one instead of refusing it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub layer_prefilled: bool,
}

/// A certificate handed out with a report (trustee's certificate-table names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportCert {
    /// `ARK`, `ASK`, `VCEK` or `VLEK`.
    pub kind: String,
    /// DER, hex.
    pub der_hex: String,
}

/// Messages from the host to the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
// `Start` is sent once per boot; boxing it would only complicate every match.
#[allow(clippy::large_enum_variant)]
pub enum HostMsg {
    /// Set the machine up and start the workload (session 0). Sent once, after `Ready`.
    Start {
        /// Machine settings.
        setup: GuestSetup,
        /// The workload.
        process: ProcessSpec,
        /// TEE boxes: attest and place secrets before the workload (absent: plain box).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tee: Option<TeeSetup>,
        /// The host's clock, set in the guest before anything else.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<GuestClock>,
        /// Security and resource options (absent: a box from before them, all capabilities).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        security: Option<Security>,
    },
    /// A VM restored from a saved template (see [`crate::template`]) becomes this box: the
    /// first and only message before guest-init's second `Ready`. The guest mixes `entropy`
    /// into its random pool and reseeds (a restore clones the saved RNG state), sets the
    /// clock, binds its disk driver and sets the root filesystem and network up
    /// from `args`, the box's own `a3s.*` kernel arguments, as a cold boot does from its
    /// command line.
    Resume {
        /// The box's `a3s.*` kernel arguments (those not on the template's command line).
        args: String,
        /// 64 bytes from the host's CSPRNG, hex.
        entropy: String,
        /// The host's clock (the guest's stopped when the template was saved).
        clock: GuestClock,
    },
    /// Start an exec session with the frame's session number.
    Exec {
        /// The process.
        process: ProcessSpec,
    },
    // --- pod containers (issue 16) ---
    /// Start a pod container's process (or an exec in it) with the frame's session number:
    /// in a new mount namespace whose root is `root`, a directory holding the container's
    /// image, sharing the VM's network and UTS namespaces.
    ContainerExec {
        /// The process (user and working directory resolved inside `root`).
        process: ProcessSpec,
        /// Absolute guest path of the container's root filesystem.
        root: String,
        /// The container's id: its process joins the container's cgroup (absent: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Present for the container's main process: guest-init creates the container's
        /// cgroup with these limits and supervises the process (its exit status and output
        /// are kept when the host's session goes away; see `ContainerAttach`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resources: Option<ContainerResources>,
        /// Paths of the pod VM bound into the container (its CRI mounts), in order, after
        /// the pod's own files: main processes and execs see the same ones.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mounts: Vec<ContainerMount>,
        /// The container's security context, the same for its main process and every exec
        /// (absent: a host from before it; the process keeps the pod VM's privileges).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        security: Option<ContainerSecurity>,
    },
    /// Re-attach the frame's session to a supervised container's main process: answered by
    /// `Started` (or `Error`: unknown), its output kept while no session was attached, then
    /// its output as it comes and `Exited` (at once when it exited meanwhile).
    ContainerAttach {
        /// Container id.
        id: String,
    },
    /// The host's session of a supervised container went away (sent by the host's monitor):
    /// guest-init keeps the container's output (bounded) until a `ContainerAttach`.
    Detach,
    /// Apply `resources` to a running container's cgroup: answered by `ContainerStats` with
    /// the container's figures and the limits now in effect, or `Error` naming the field.
    ContainerUpdate {
        /// Container id.
        id: String,
        /// The new limits (replace the old ones).
        resources: ContainerResources,
    },
    /// Resource use of the named containers (those without a cgroup are left out): answered
    /// by `ContainerStats`.
    ContainerStats {
        /// Container ids.
        ids: Vec<String>,
    },
    // --- end pod containers ---
    /// Send a signal to the frame's session's process (session 0: the workload).
    Signal {
        /// Signal number.
        signal: i32,
    },
    /// Change the terminal size of the frame's session.
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// The host has everything it needs (the workload's exit was recorded): sync, say
    /// [`GuestMsg::Synced`], power off.
    PowerOff,
    /// Liveness probe; the guest answers `Pong` with the same nonce.
    Ping {
        /// Echoed back.
        nonce: u64,
    },
    /// Answer to [`GuestMsg::ReportRequest`] (simulated TEE).
    Report {
        /// The request's id.
        request: u64,
        /// The signed attestation report (1184 bytes), hex.
        report_hex: String,
        /// ARK, ASK and VCEK of the (simulated) chip, so the guest can pass them on.
        certs: Vec<ReportCert>,
    },
    /// Answer to [`GuestMsg::KeyRequest`] (simulated TEE).
    DerivedKey {
        /// The request's id.
        request: u64,
        /// The 32-byte derived key, hex.
        key_hex: String,
    },
    /// Answer to [`GuestMsg::LayerMade`]: the host is done reading the layer disk.
    LayerKept {
        /// The request's id.
        request: u64,
    },
    /// A guest request was refused (names the reason, e.g. a VMPL or SVN rule).
    RequestFailed {
        /// The request's id.
        request: u64,
        /// Why.
        message: String,
    },
    /// Serve RA-TLS on the frame's session: stdin frames carry the verifier's TLS bytes, the
    /// guest answers with stdout frames and ends the session with `Exited`.
    RatlsOpen,
    // --- issue 20: `top` and `stats` (answered on the frame's session) ---
    /// List the workload's processes (`top`): answered by [`GuestMsg::Processes`].
    Top {
        /// `ps` options (empty: Docker's default, `-ef`).
        #[serde(default)]
        ps_args: Vec<String>,
    },
    /// Resource use as the guest kernel sees it (`stats`): answered by [`GuestMsg::Stats`].
    Stats,
}

/// Messages from the guest to the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum GuestMsg {
    /// guest-init is up and waits for `Start`.
    Ready {
        /// The guest's protocol version.
        version: u8,
        /// Milliseconds since the guest kernel booted (`CLOCK_BOOTTIME`).
        uptime_ms: u64,
        /// Where the guest's part of the boot went, in order (absent from older guests).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<BootStep>,
    },
    /// The frame's session's process started.
    Started {
        /// Its pid inside the guest.
        pid: i32,
        /// The identity it runs with (absent from guests before it and on a re-attach).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<ProcessUser>,
    },
    /// The frame's session's process could not be started.
    SpawnFailed {
        /// Docker-style exit code: 127 not found, 126 not runnable.
        code: i32,
        /// What went wrong.
        message: String,
    },
    /// The frame's session's process ended and its output has been sent.
    Exited {
        /// Exit code, or 128 + signal number.
        code: i32,
    },
    /// Answer to `PowerOff`: the guest's disks are synced (everything it wrote reached QEMU
    /// and was flushed); it powers itself off next, and the host may stop the VM at once
    /// instead of waiting for the kernel's shutdown and ACPI power-off.
    Synced,
    /// Answer to `Ping`.
    Pong {
        /// The probe's nonce.
        nonce: u64,
    },
    /// A host request could not be carried out.
    Error {
        /// What went wrong.
        message: String,
    },
    /// Ask the host-side simulator for a report (simulated TEE only).
    ReportRequest {
        /// Chosen by the guest; echoed in the answer.
        request: u64,
        /// The 64-byte REPORT_DATA, hex.
        report_data_hex: String,
        /// The VMPL to report (0-3).
        vmpl: u32,
    },
    /// Ask the host-side simulator for a derived key (simulated TEE only).
    KeyRequest {
        /// Chosen by the guest; echoed in the answer.
        request: u64,
        /// MSG_KEY_REQ (0x28 bytes), hex.
        msg_key_req_hex: String,
    },
    /// The encrypted writable layer was just made and closed, and nothing else has written
    /// to it: the host may keep a copy for the next box with this launch measurement (which
    /// derives the same key), then answers [`HostMsg::LayerKept`]; the guest waits for it.
    LayerMade {
        /// Chosen by the guest; echoed in the answer.
        request: u64,
    },
    /// One step of the attestation agent finished (for audit and timing; never a secret value).
    TeeStep {
        /// `evidence`, `kbs_attest`, `secret` (with `detail` = its name), `secrets_written`.
        step: String,
        /// The secret's name for `secret`, otherwise empty.
        detail: String,
        /// How long the step took in the guest.
        elapsed_ms: u64,
    },
    /// The attestation agent failed: the workload will not start and the guest powers off.
    TeeFailed {
        /// The step that failed (as in `TeeStep`).
        step: String,
        /// Why.
        message: String,
    },
    // --- issue 20: answers to `Top` and `Stats` ---
    /// The processes, Docker's `top` shape: column titles and one row per process.
    Processes {
        /// Column titles (`UID PID PPID C STIME TTY TIME CMD`).
        titles: Vec<String>,
        /// One row per process, a value per title.
        processes: Vec<Vec<String>>,
    },
    /// Resource use inside the guest.
    Stats(GuestStats),
    // --- issue 16: answer to `ContainerStats` and `ContainerUpdate` ---
    /// The frame's session's container was killed by the kernel's OOM killer in its cgroup
    /// (sent just before its `Exited`).
    OomKilled,
    /// Pod containers' resource use (a struct variant: a tagged newtype cannot hold a list).
    ContainerStats {
        /// One entry per container that has a cgroup.
        stats: Vec<ContainerStats>,
    },
}

// --- issue 16: pod containers' cgroups ---
/// The limits of a pod container's cgroup (v2) in the pod VM: what CRI's
/// `LinuxContainerResources` asks that a VM can honour.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerResources {
    /// CFS period in microseconds (0: the kernel's default, 100000).
    #[serde(default)]
    pub cpu_period: u64,
    /// CFS quota in microseconds per period (0 or less: no limit).
    #[serde(default)]
    pub cpu_quota: i64,
    /// Relative CPU weight in cgroup v1 shares (2-262144; 0: the default weight).
    #[serde(default)]
    pub cpu_shares: u64,
    /// Memory limit in bytes (0 or less: no limit).
    #[serde(default)]
    pub memory_limit_bytes: i64,
    /// CPUs the container may run on, cpuset list syntax (empty: all of the VM's).
    #[serde(default)]
    pub cpuset_cpus: String,
    /// The main process's OOM score adjustment.
    #[serde(default)]
    pub oom_score_adj: i64,
}

/// One pod container's resource use, read from its cgroup in the pod VM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// Container id.
    pub id: String,
    /// Nanoseconds since the guest booted when this was read.
    pub timestamp_ns: u64,
    /// CPU time used, nanoseconds (`cpu.stat` `usage_usec`).
    pub cpu_usage_ns: u64,
    /// Memory charged to the cgroup (`memory.current`).
    pub memory_usage_bytes: u64,
    /// Usage less inactive file pages (what kubelet evicts on).
    pub memory_working_set_bytes: u64,
    /// Anonymous memory (`memory.stat` `anon`).
    pub memory_rss_bytes: u64,
    /// Page faults (`memory.stat` `pgfault`).
    pub page_faults: u64,
    /// Major page faults (`pgmajfault`).
    pub major_page_faults: u64,
    /// Bytes used by the container's root directory (its writable copy of the image); for a
    /// root on the pod's share the host measures its writable layer instead (0 here).
    pub fs_used_bytes: u64,
    /// Inodes used there.
    pub fs_inodes_used: u64,
    /// Processes (tasks) in the cgroup.
    pub pids: u64,
    /// The limits in effect, read back from the cgroup.
    pub limits: ContainerResources,
}

/// What `stats` shows, measured by the guest kernel (not QEMU's host process).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestStats {
    /// `MemTotal - MemAvailable` of `/proc/meminfo`; with `--memory`, the workload cgroup's
    /// `memory.current` less its `inactive_file` (Docker's figure).
    pub mem_used_bytes: u64,
    /// `MemTotal`: the RAM the guest kernel manages (the VM size less what it reserved); with
    /// `--memory`, the limit.
    pub mem_limit_bytes: u64,
    /// Busy jiffies of all CPUs since boot (`/proc/stat`: all but idle and iowait).
    pub cpu_busy_ticks: u64,
    /// All jiffies of all CPUs since boot.
    pub cpu_total_ticks: u64,
    /// Online CPUs.
    pub online_cpus: u32,
    /// Tasks (threads) of user-space processes, guest-init excluded.
    pub pids: u64,
    /// Bytes received on the guest's network interfaces (loopback excluded).
    pub net_rx_bytes: u64,
    /// Bytes sent on them.
    pub net_tx_bytes: u64,
    /// Bytes read from the guest's virtio disks.
    pub block_read_bytes: u64,
    /// Bytes written to them.
    pub block_write_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: &Frame) -> Frame {
        let bytes = frame.encode();
        read_frame(&mut bytes.as_slice()).unwrap()
    }

    #[test]
    fn container_messages_round_trip() {
        let stats = GuestMsg::ContainerStats {
            stats: vec![ContainerStats {
                id: "ab".into(),
                cpu_usage_ns: 5,
                limits: ContainerResources {
                    cpu_quota: 1,
                    ..Default::default()
                },
                ..Default::default()
            }],
        };
        let f = Frame::control(3, &stats).unwrap();
        assert_eq!(round_trip(&f).message::<GuestMsg>().unwrap(), stats);
        for msg in [
            HostMsg::ContainerAttach { id: "ab".into() },
            HostMsg::Detach,
            HostMsg::ContainerStats {
                ids: vec!["ab".into()],
            },
            HostMsg::ContainerUpdate {
                id: "ab".into(),
                resources: ContainerResources::default(),
            },
        ] {
            let f = Frame::control(3, &msg).unwrap();
            assert_eq!(round_trip(&f).message::<HostMsg>().unwrap(), msg);
        }
    }

    #[test]
    fn round_trips_control_and_data_frames() {
        let msg = HostMsg::Start {
            setup: GuestSetup {
                hostname: "box".into(),
                ..Default::default()
            },
            process: ProcessSpec {
                argv: vec!["echo".into(), "hi".into()],
                ..Default::default()
            },
            tee: None,
            clock: Some(GuestClock::now(Some(2_596_128))),
            security: Some(Security {
                capabilities: Some(vec!["CAP_CHOWN".into()]),
                no_new_privileges: true,
                rlimits: vec![Rlimit {
                    name: "nofile".into(),
                    soft: 1024,
                    hard: Rlimit::UNLIMITED,
                }],
                tmpfs: vec![TmpfsMount {
                    path: "/scratch".into(),
                    options: vec!["size=1m".into()],
                }],
                ..Default::default()
            }),
        };
        let f = Frame::control(0, &msg).unwrap();
        assert_eq!(round_trip(&f).message::<HostMsg>().unwrap(), msg);
        let d = Frame::data(Kind::Stdout, 7, b"\x00\xffbinary".to_vec());
        assert_eq!(round_trip(&d), d);
    }

    #[test]
    fn ready_from_a_guest_without_boot_steps_still_parses_and_steps_round_trip() {
        let old = Frame::control(
            WORKLOAD_SESSION,
            &serde_json::json!({"type": "ready", "version": PROTO_VERSION, "uptime_ms": 1500}),
        )
        .unwrap();
        assert_eq!(
            old.message::<GuestMsg>().unwrap(),
            GuestMsg::Ready {
                version: PROTO_VERSION,
                uptime_ms: 1500,
                steps: vec![],
            }
        );
        let ready = GuestMsg::Ready {
            version: PROTO_VERSION,
            uptime_ms: 1500,
            steps: vec![BootStep {
                name: "modules".into(),
                ms: 120,
            }],
        };
        let f = round_trip(&Frame::control(WORKLOAD_SESSION, &ready).unwrap());
        assert_eq!(f.message::<GuestMsg>().unwrap(), ready);
    }

    #[test]
    fn start_without_tee_field_is_a_plain_box_and_tee_round_trips() {
        let old = br#"{"type":"start","setup":{"hostname":"h","hosts":{},"nameservers":[]},"process":{"argv":["true"],"env":[],"workdir":null,"user":null,"tty":false,"tty_size":null,"stdin":false}}"#;
        let f = Frame {
            kind: Kind::Control,
            session: 0,
            payload: old.to_vec(),
        };
        assert!(matches!(
            f.message::<HostMsg>().unwrap(),
            HostMsg::Start {
                tee: None,
                clock: None,
                security: None,
                ..
            }
        ));
        let tee = TeeSetup {
            layer_prefilled: true,
            mode: TeeMode::Simulated,
            kbs_url: Some("http://10.0.2.2:8080".into()),
            secrets: vec![SecretSpec {
                name: "db".into(),
                resource: "default/db/password".into(),
            }],
            ratls_port: Some(7443),
        };
        let msg = HostMsg::Start {
            setup: GuestSetup::default(),
            process: ProcessSpec::default(),
            tee: Some(tee),
            clock: None,
            security: None,
        };
        assert_eq!(
            round_trip(&Frame::control(0, &msg).unwrap())
                .message::<HostMsg>()
                .unwrap(),
            msg
        );
        let req = GuestMsg::ReportRequest {
            request: 7,
            report_data_hex: "00".repeat(64),
            vmpl: 0,
        };
        assert_eq!(
            round_trip(&Frame::control(0, &req).unwrap())
                .message::<GuestMsg>()
                .unwrap(),
            req
        );
        // Keeping a just-made layer: a request and its answer, matched by id.
        let made = GuestMsg::LayerMade { request: 9 };
        let kept = HostMsg::LayerKept { request: 9 };
        let made_json = Frame::control(0, &made).unwrap().payload;
        assert_eq!(made_json, br#"{"type":"layer_made","request":9}"#);
        assert_eq!(
            round_trip(&Frame::control(0, &kept).unwrap())
                .message::<HostMsg>()
                .unwrap(),
            kept
        );
        // A TEE setup from a host before kept layers: not prefilled.
        let before = br#"{"mode":"simulated","kbs_url":null,"secrets":[],"ratls_port":null}"#;
        let setup: TeeSetup = serde_json::from_slice(before).unwrap();
        assert!(!setup.layer_prefilled);
    }

    #[test]
    fn reads_consecutive_frames_from_one_stream() {
        let mut bytes = Frame::data(Kind::Stderr, 1, b"a".to_vec()).encode();
        bytes.extend(
            Frame::control(1, &GuestMsg::Exited { code: 3 })
                .unwrap()
                .encode(),
        );
        let mut r = bytes.as_slice();
        assert_eq!(read_frame(&mut r).unwrap().payload, b"a");
        let m: GuestMsg = read_frame(&mut r).unwrap().message().unwrap();
        assert_eq!(m, GuestMsg::Exited { code: 3 });
        assert!(matches!(read_frame(&mut r), Err(ProtoError::Closed)));
    }

    #[test]
    fn rejects_oversized_length_before_allocating() {
        let mut bytes = Frame::data(Kind::Stdout, 0, vec![]).encode();
        bytes[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            read_frame(&mut bytes.as_slice()),
            Err(ProtoError::TooLarge { .. })
        ));
        let big = Frame::data(Kind::Stdout, 0, vec![0; MAX_PAYLOAD + 1]);
        assert!(matches!(
            write_frame(&mut Vec::new(), &big),
            Err(ProtoError::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_other_versions_magic_and_kinds() {
        let good = Frame::data(Kind::Stdout, 0, b"x".to_vec()).encode();
        let mut v = good.clone();
        v[2] = 2;
        assert!(matches!(
            read_frame(&mut v.as_slice()),
            Err(ProtoError::UnsupportedVersion { found: 2 })
        ));
        let mut m = good.clone();
        m[0] = b'X';
        assert!(matches!(
            read_frame(&mut m.as_slice()),
            Err(ProtoError::BadMagic(_))
        ));
        let mut k = good;
        k[3] = 9;
        assert!(matches!(
            read_frame(&mut k.as_slice()),
            Err(ProtoError::UnknownKind(9))
        ));
    }

    #[test]
    fn truncated_frame_is_an_error_not_a_short_read() {
        let bytes = Frame::data(Kind::Stdout, 0, b"hello".to_vec()).encode();
        assert!(matches!(
            read_frame(&mut &bytes[..bytes.len() - 1]),
            Err(ProtoError::Io(_))
        ));
        assert!(matches!(
            read_frame(&mut &bytes[..5]),
            Err(ProtoError::Io(_))
        ));
    }

    #[test]
    fn unknown_control_message_is_refused_by_name() {
        let f = Frame {
            kind: Kind::Control,
            session: 0,
            payload: br#"{"type":"format_disk"}"#.to_vec(),
        };
        assert!(matches!(f.message::<HostMsg>(), Err(ProtoError::Json(_))));
        let d = Frame::data(Kind::Stdout, 0, vec![]);
        assert!(matches!(
            d.message::<HostMsg>(),
            Err(ProtoError::NotControl(Kind::Stdout))
        ));
    }

    #[test]
    fn a_security_field_this_guest_does_not_know_is_refused_not_dropped() {
        // A newer host's limit reaching an older guest-init must fail the request: dropping
        // it would run the workload without the limit the user asked for.
        let known: Security =
            serde_json::from_str(r#"{"pids_limit": 5, "memory_limit_bytes": 1048576}"#).unwrap();
        assert_eq!(known.pids_limit, Some(5));
        for json in [
            r#"{"pids_limit": 5, "cpu_quota_us": 1000}"#,
            r#"{"rlimits": [{"name": "nofile", "soft": 1, "hard": 1, "extra": 0}]}"#,
            r#"{"tmpfs": [{"path": "/t", "options": [], "extra": 0}]}"#,
        ] {
            let err = serde_json::from_str::<Security>(json).unwrap_err();
            assert!(err.to_string().contains("unknown field"), "{json}: {err}");
        }
    }
}
