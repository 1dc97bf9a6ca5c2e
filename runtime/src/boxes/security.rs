//! Docker's security and resource flags of `create`/`run` (`--cap-add`, `--ulimit`,
//! `--read-only`, `--tmpfs`, ...): parsed and checked here with Docker's rules, kept in the
//! box's record in the shape of Docker's `HostConfig`, and turned into the
//! [`a3s_vmm::proto::Security`] that guest-init applies to the workload and its exec sessions.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use a3s_vmm::proto::{Rlimit, Security, TmpfsMount};

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's `/dev/shm` size when `--shm-size` is not given.
pub const DEFAULT_SHM_BYTES: u64 = 64 << 20;

/// Options guest-init puts before a tmpfs's own (Docker's defaults; `exec` etc. override them).
pub const TMPFS_DEFAULT_OPTIONS: [&str; 3] = ["noexec", "nosuid", "nodev"];

/// Docker's `--ulimit` names.
const ULIMIT_NAMES: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Sysctls that belong to an IPC namespace (Docker's `validSysctlMap`); `net.*` and
/// `fs.mqueue.*` are namespaced as prefixes.
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Longest sysctl value accepted (a page, as `/proc/sys` writes take).
const SYSCTL_VALUE_MAX: usize = 4096;

/// A flag value Docker's rules refuse.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {value:?}: {why}")]
pub struct SecurityError {
    /// The flag, e.g. `--ulimit`.
    pub flag: &'static str,
    /// The value as given.
    pub value: String,
    /// What is wrong and what to give instead.
    pub why: String,
}

fn bad(flag: &'static str, value: &str, why: impl Into<String>) -> SecurityError {
    SecurityError {
        flag,
        value: value.to_owned(),
        why: why.into(),
    }
}

/// One `--ulimit` in Docker's inspect shape (`-1`: unlimited).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    /// `nofile`, `nproc`, ...
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

/// The flags as the user gave them (strings), before Docker's rules are applied.
#[derive(Clone, Debug, Default)]
pub struct SecurityFlags {
    /// `--read-only`.
    pub read_only: bool,
    /// `--tmpfs PATH[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    /// `--shm-size`.
    pub shm_size: Option<String>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimit: Vec<String>,
    /// `--sysctl KEY=VALUE`.
    pub sysctl: Vec<String>,
    /// `--pids-limit` (0 or -1: unlimited).
    pub pids_limit: Option<i64>,
    /// `--memory-reservation`.
    pub memory_reservation: Option<String>,
    /// `--memory-swap` (`-1`: unlimited).
    pub memory_swap: Option<String>,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--privileged`.
    pub privileged: bool,
    /// `--security-opt`.
    pub security_opt: Vec<String>,
    /// `--group-add`.
    pub group_add: Vec<String>,
    /// `--init`.
    pub init: bool,
}

/// A box's security and resource settings, named and shaped as in Docker's `HostConfig`
/// (what `inspect` shows).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityConfig {
    /// `--privileged`: every capability.
    #[serde(default)]
    pub privileged: bool,
    /// `--cap-add`, normalised (`CAP_NET_ADMIN`, or `ALL`).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// `--cap-drop`, normalised.
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// `--security-opt` (only `no-new-privileges` is accepted).
    #[serde(default)]
    pub security_opt: Vec<String>,
    /// `--read-only`.
    #[serde(default)]
    pub readonly_rootfs: bool,
    /// `--tmpfs` and `--mount type=tmpfs`: path → options.
    #[serde(default)]
    pub tmpfs: BTreeMap<String, String>,
    /// `/dev/shm` size in bytes.
    #[serde(default = "default_shm")]
    pub shm_size: u64,
    /// `--ulimit`.
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
    /// `--sysctl`.
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// `--pids-limit` (absent, 0 or -1: unlimited).
    #[serde(default)]
    pub pids_limit: Option<i64>,
    /// `--memory-reservation` in bytes (0: none): the workload cgroup's `memory.low`.
    #[serde(default)]
    pub memory_reservation: u64,
    /// `--memory-swap` in bytes (0: not given, -1: unlimited). Boxes have no swap, so only
    /// `--memory` holds; checked against it as Docker does (`BoxSpec`'s check).
    #[serde(default)]
    pub memory_swap: i64,
    /// `--group-add`.
    #[serde(default)]
    pub group_add: Vec<String>,
    /// `--init` (guest-init is always the workload's reaper: see [`SecurityConfig::init`]).
    #[serde(default)]
    pub init: Option<bool>,
}

fn default_shm() -> u64 {
    DEFAULT_SHM_BYTES
}

impl SecurityConfig {
    /// Applies Docker's rules to the flags.
    ///
    /// `--init` is recorded as given: the workload is never PID 1 in a box. guest-init is
    /// PID 1 of the VM, reaps every orphan and delivers `kill`/`stop` signals to the
    /// workload, which therefore dies of an unhandled SIGTERM as under Docker's `--init`.
    ///
    /// # Errors
    /// The first flag value Docker would refuse, named with the reason.
    pub fn from_flags(f: &SecurityFlags) -> Result<Self, SecurityError> {
        let mut tmpfs = BTreeMap::new();
        for t in &f.tmpfs {
            let (path, options) = parse_tmpfs(t)?;
            if tmpfs.insert(path.clone(), options).is_some() {
                return Err(bad("--tmpfs", t, format!("{path} is given twice")));
            }
        }
        let shm_size = match &f.shm_size {
            Some(s) => {
                let n = parse_bytes(s).ok_or_else(|| {
                    bad(
                        "--shm-size",
                        s,
                        "expected a size such as 64m, 1g or 1048576",
                    )
                })?;
                if n == 0 {
                    return Err(bad("--shm-size", s, "must be greater than 0"));
                }
                n
            }
            None => DEFAULT_SHM_BYTES,
        };
        let mut ulimits: Vec<Ulimit> = Vec::new();
        for u in &f.ulimit {
            let parsed = parse_ulimit(u)?;
            ulimits.retain(|x| x.name != parsed.name);
            ulimits.push(parsed);
        }
        let mut sysctls = BTreeMap::new();
        for s in &f.sysctl {
            let (k, v) = parse_sysctl(s)?;
            sysctls.insert(k, v);
        }
        let mut security_opt = Vec::new();
        for o in &f.security_opt {
            if parse_security_opt(o)? {
                security_opt.push("no-new-privileges".to_owned());
            }
        }
        security_opt.dedup();
        for g in &f.group_add {
            check_group(g)?;
        }
        let memory_reservation = match &f.memory_reservation {
            Some(v) => {
                let n = parse_bytes(v).ok_or_else(|| {
                    bad(
                        "--memory-reservation",
                        v,
                        "expected a size such as 64m or 1g",
                    )
                })?;
                // Docker's minimum, the same as for --memory.
                if n > 0 && n < a3s_vmm::memory::MIN_LIMIT_MIB << 20 {
                    return Err(bad(
                        "--memory-reservation",
                        v,
                        "the minimum memory reservation is 6 MiB (as Docker's)",
                    ));
                }
                n
            }
            None => 0,
        };
        let memory_swap = match f.memory_swap.as_deref().map(str::trim) {
            None => 0,
            Some("-1") => -1,
            Some(v) => parse_bytes(v)
                .and_then(|n| i64::try_from(n).ok())
                .ok_or_else(|| bad("--memory-swap", v, "expected a size such as 1g, or -1"))?,
        };
        let cfg = Self {
            privileged: f.privileged,
            cap_add: normalize_caps("--cap-add", &f.cap_add)?,
            cap_drop: normalize_caps("--cap-drop", &f.cap_drop)?,
            security_opt,
            readonly_rootfs: f.read_only,
            tmpfs,
            shm_size,
            ulimits,
            sysctls,
            pids_limit: f.pids_limit,
            memory_reservation,
            memory_swap,
            group_add: f.group_add.clone(),
            init: f.init.then_some(true),
        };
        Ok(cfg)
    }

    /// Adds a `--mount type=tmpfs` (already checked).
    ///
    /// # Errors
    /// The path is already a tmpfs.
    pub fn add_tmpfs(&mut self, path: String, options: String) -> Result<(), SecurityError> {
        if self.tmpfs.contains_key(&path) {
            return Err(bad("--mount", &path, "this path is already a tmpfs"));
        }
        self.tmpfs.insert(path, options);
        Ok(())
    }

    /// The capabilities the workload keeps (Docker's `TweakCapabilities`): everything when
    /// privileged; with `--cap-add ALL` everything but the drops; with `--cap-drop ALL` only
    /// the adds; otherwise the default set less the drops plus the adds.
    pub fn capabilities(&self) -> Vec<String> {
        let all: Vec<String> = all_capabilities();
        let has_all = |l: &[String]| l.iter().any(|c| c == "ALL");
        let mut caps: Vec<String> = if self.privileged {
            all
        } else if has_all(&self.cap_add) {
            all.into_iter()
                .filter(|c| !self.cap_drop.contains(c))
                .collect()
        } else if has_all(&self.cap_drop) {
            self.cap_add.clone()
        } else {
            DEFAULT_CAPABILITIES
                .iter()
                .map(|c| (*c).to_owned())
                .filter(|c| !self.cap_drop.contains(c))
                .chain(self.cap_add.iter().cloned())
                .collect()
        };
        caps.sort_by_key(|c| caps::Capability::from_str(c).map_or(u8::MAX, |c| c.index()));
        caps.dedup();
        caps
    }

    /// Docker's checks of `--memory-reservation` and `--memory-swap` against `--memory`
    /// (`limit`, bytes).
    ///
    /// # Errors
    /// The first check that fails, in Docker's words.
    pub fn check_memory(&self, limit: Option<u64>) -> Result<(), SecurityError> {
        let swap = self.memory_swap;
        match limit {
            None if swap > 0 => {
                return Err(bad(
                    "--memory-swap",
                    &swap.to_string(),
                    "set --memory too: the swap limit counts memory and swap together",
                ))
            }
            Some(m) if swap > 0 && u64::try_from(swap).is_ok_and(|s| s < m) => {
                return Err(bad(
                    "--memory-swap",
                    &swap.to_string(),
                    format!("must be at least --memory ({m} bytes), or -1 for unlimited"),
                ))
            }
            Some(m) if self.memory_reservation > m => {
                return Err(bad(
                    "--memory-reservation",
                    &self.memory_reservation.to_string(),
                    format!("must be at most --memory ({m} bytes)"),
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// `no-new-privileges` is set.
    pub fn no_new_privileges(&self) -> bool {
        self.security_opt.iter().any(|o| o == "no-new-privileges")
    }

    /// What guest-init applies.
    pub fn guest(&self) -> Security {
        let limit = |n: i64| u64::try_from(n).unwrap_or(Rlimit::UNLIMITED);
        Security {
            capabilities: Some(self.capabilities()),
            no_new_privileges: self.no_new_privileges(),
            rlimits: self
                .ulimits
                .iter()
                .map(|u| Rlimit {
                    name: u.name.clone(),
                    soft: limit(u.soft),
                    hard: limit(u.hard),
                })
                .collect(),
            group_add: self.group_add.clone(),
            pids_limit: self
                .pids_limit
                .filter(|n| *n > 0)
                .and_then(|n| u64::try_from(n).ok()),
            // The box's, not a flag of these (`BoxSpec::guest_security`).
            memory_limit_bytes: None,
            memory_low_bytes: (self.memory_reservation > 0).then_some(self.memory_reservation),
            read_only_root: self.readonly_rootfs,
            tmpfs: self
                .tmpfs
                .iter()
                .map(|(path, opts)| TmpfsMount {
                    path: path.clone(),
                    options: TMPFS_DEFAULT_OPTIONS
                        .iter()
                        .map(|o| (*o).to_owned())
                        .chain(opts.split(',').filter(|o| !o.is_empty()).map(str::to_owned))
                        .collect(),
                })
                .collect(),
            // 0 (never a flag's value): the guest's own /dev/shm is kept (a pod's VM).
            shm_size_bytes: (self.shm_size > 0).then_some(self.shm_size),
            sysctls: self.sysctls.clone(),
        }
    }
}

/// One `--mount`: a volume or bind mount (what `-v` does), or a tmpfs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MountFlag {
    /// `type=bind` or `type=volume`, as the equivalent `-v` mount.
    Volume(crate::volumes::MountSpec),
    /// `type=tmpfs`: path and mount options.
    Tmpfs {
        /// Guest path.
        path: String,
        /// Options in `--tmpfs` form (`size=N,mode=OCTAL`).
        options: String,
    },
}

/// Parses Docker's `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly]
/// [,volume-nocopy][,tmpfs-size=N][,tmpfs-mode=OCTAL]`.
///
/// # Errors
/// The first key or value Docker would refuse, or one this runtime cannot honour.
pub fn parse_mount(spec: &str) -> Result<MountFlag, SecurityError> {
    let err = |why: String| bad("--mount", spec, why);
    let flag = |v: Option<&str>| match v {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(o) => Err(err(format!("{o:?} is not true or false"))),
    };
    let (mut kind, mut source, mut target) = ("volume".to_owned(), None, None);
    let (mut readonly, mut nocopy, mut tmpfs_opts) = (false, false, Vec::new());
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let need = || value.ok_or_else(|| err(format!("{key} needs a value ({key}=...)")));
        match key {
            "type" => kind = need()?.to_owned(),
            "source" | "src" => source = Some(need()?.to_owned()),
            "target" | "destination" | "dst" => target = Some(need()?.to_owned()),
            "readonly" | "ro" => readonly = flag(value)?,
            "volume-nocopy" => nocopy = flag(value)?,
            // Docker ignores it on Linux.
            "consistency" => {}
            "tmpfs-size" => {
                let v = need()?;
                let n = parse_bytes(v)
                    .filter(|n| *n > 0)
                    .ok_or_else(|| err(format!("tmpfs-size {v:?} is not a size such as 64m")))?;
                tmpfs_opts.push(format!("size={n}"));
            }
            "tmpfs-mode" => {
                let v = need()?;
                if !u32::from_str_radix(v, 8).is_ok_and(|m| m <= 0o7777) {
                    return Err(err(format!("tmpfs-mode {v:?} is not an octal mode such as 1770")));
                }
                tmpfs_opts.push(format!("mode={v}"));
            }
            "bind-propagation" | "bind-recursive" | "bind-nonrecursive" | "volume-driver"
            | "volume-opt" | "volume-subpath" => {
                return Err(err(format!(
                    "{key} is not supported: box mounts are virtiofs shares with private                      propagation on the local volume driver"
                )))
            }
            other => return Err(err(format!("unknown key {other:?}"))),
        }
    }
    let target = target.ok_or_else(|| err("target is required (target=/path/in/box)".into()))?;
    match kind.as_str() {
        "tmpfs" => {
            if source.is_some() {
                return Err(err("a tmpfs mount takes no source".into()));
            }
            check_guest_path("--mount", spec, &target)?;
            if readonly {
                tmpfs_opts.push("ro".into());
            }
            Ok(MountFlag::Tmpfs {
                path: target,
                options: tmpfs_opts.join(","),
            })
        }
        "bind" | "volume" => {
            if !tmpfs_opts.is_empty() {
                return Err(err(format!("tmpfs-* options need type=tmpfs, not {kind}")));
            }
            // Docker: type=volume without a source is an anonymous volume.
            let source = match source {
                Some(s) => s,
                None if kind == "volume" => String::new(),
                None => return Err(err("source is required for type=bind".into())),
            };
            if kind == "bind" && !source.starts_with('/') {
                return Err(err("a bind source must be an absolute host path".into()));
            }
            if kind == "volume" && source.starts_with('/') {
                return Err(err(
                    "a volume source is a volume name; use type=bind for a host path".into(),
                ));
            }
            if source.contains(':') || target.contains(':') {
                return Err(err("source and target must not contain ':'".into()));
            }
            let mut opts = Vec::new();
            if readonly {
                opts.push("ro");
            }
            if nocopy {
                opts.push("nocopy");
            }
            let at = if source.is_empty() {
                target
            } else {
                format!("{source}:{target}")
            };
            let v = if opts.is_empty() {
                at
            } else {
                format!("{at}:{}", opts.join(","))
            };
            crate::volumes::MountSpec::parse(&v)
                .map(MountFlag::Volume)
                .map_err(|e| err(e.to_string()))
        }
        other => Err(err(format!(
            "unknown type {other:?}: use bind, volume or tmpfs"
        ))),
    }
}

/// Every capability this build knows, in kernel order.
/// Every capability this runtime knows, in kernel order (`CAP_CHOWN` first).
pub fn all_capabilities() -> Vec<String> {
    let mut all: Vec<caps::Capability> = caps::all().into_iter().collect();
    all.sort_by_key(caps::Capability::index);
    all.iter().map(ToString::to_string).collect()
}

/// A capability's kernel name (`CAP_NET_ADMIN`) from `net_admin`, `NET_ADMIN` or
/// `CAP_NET_ADMIN`; `None` for a name the kernel does not have (and for `ALL`).
pub fn capability_name(raw: &str) -> Option<String> {
    let upper = raw.trim().to_ascii_uppercase();
    let name = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    caps::Capability::from_str(&name).ok().map(|_| name)
}

/// Docker's `normalizeCaps`: upper case, `CAP_` prefix, known names only; `ALL` stays `ALL`.
fn normalize_caps(flag: &'static str, raw: &[String]) -> Result<Vec<String>, SecurityError> {
    let mut out = Vec::new();
    for c in raw {
        let upper = c.trim().to_ascii_uppercase();
        if upper == "ALL" {
            out.push(upper);
            continue;
        }
        let Some(name) = capability_name(&upper) else {
            return Err(bad(
                flag,
                c,
                "unknown capability: give a name such as NET_ADMIN or CAP_SYS_TIME, or ALL",
            ));
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// `--tmpfs PATH[:OPTIONS]`: an absolute, clean path other than `/` and checked options.
fn parse_tmpfs(spec: &str) -> Result<(String, String), SecurityError> {
    let (path, options) = spec.split_once(':').unwrap_or((spec, ""));
    check_guest_path("--tmpfs", spec, path)?;
    check_tmpfs_options("--tmpfs", spec, options)?;
    Ok((path.to_owned(), options.to_owned()))
}

/// A guest mount point: absolute, no `.`/`..`/empty components, not `/`.
pub fn check_guest_path(flag: &'static str, spec: &str, path: &str) -> Result<(), SecurityError> {
    let clean = path.starts_with('/')
        && path.len() > 1
        && !path.ends_with('/')
        && path[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && !path.chars().any(|c| c.is_control() || c == ',');
    if clean {
        Ok(())
    } else {
        Err(bad(
            flag,
            spec,
            format!("{path:?} is not a clean absolute path inside the box (e.g. /run/cache)"),
        ))
    }
}

/// tmpfs options Docker passes to mount(8): flags and `size=`, `mode=`, `uid=`, `gid=`,
/// `nr_inodes=`, `nr_blocks=`.
pub fn check_tmpfs_options(
    flag: &'static str,
    spec: &str,
    options: &str,
) -> Result<(), SecurityError> {
    const FLAGS: [&str; 8] = [
        "ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev",
    ];
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        let ok = match opt.split_once('=') {
            None => FLAGS.contains(&opt),
            Some(("size", v)) => {
                let digits = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
                !digits.is_empty()
                    && digits.len() + 1 >= v.len()
                    && digits.bytes().all(|b| b.is_ascii_digit())
            }
            Some(("mode", v)) => {
                !v.is_empty() && v.len() <= 4 && v.bytes().all(|b| (b'0'..=b'7').contains(&b))
            }
            Some(("uid" | "gid", v)) => v.parse::<u32>().is_ok(),
            Some(("nr_inodes" | "nr_blocks", v)) => {
                let digits = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
                !digits.is_empty()
                    && digits.len() + 1 >= v.len()
                    && digits.bytes().all(|b| b.is_ascii_digit())
            }
            Some(_) => false,
        };
        if !ok {
            return Err(bad(
                flag,
                spec,
                format!(
                    "unsupported tmpfs option {opt:?}: use ro, rw, [no]exec, [no]suid, [no]dev, \
                     size=N[k|m|g|%], mode=OCTAL, uid=N, gid=N, nr_inodes=N"
                ),
            ));
        }
    }
    Ok(())
}

/// Docker's `units.RAMInBytes`: a number with an optional b, k, m, g, t suffix (and an
/// optional trailing `b`/`ib`), powers of 1024.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, shift) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 10),
        'm' => (&t[..t.len() - 1], 20),
        'g' => (&t[..t.len() - 1], 30),
        't' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// `--ulimit NAME=SOFT[:HARD]` (`-1`: unlimited; HARD defaults to SOFT).
fn parse_ulimit(spec: &str) -> Result<Ulimit, SecurityError> {
    let (name, limits) = spec.split_once('=').ok_or_else(|| {
        bad(
            "--ulimit",
            spec,
            "expected NAME=SOFT[:HARD], e.g. nofile=1024:2048",
        )
    })?;
    if !ULIMIT_NAMES.contains(&name) {
        return Err(bad(
            "--ulimit",
            spec,
            format!(
                "unknown limit {name:?}: use one of {}",
                ULIMIT_NAMES.join(", ")
            ),
        ));
    }
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let num = |v: &str| -> Result<i64, SecurityError> {
        match v.parse::<i64>() {
            Ok(n) if n >= -1 => Ok(n),
            _ => Err(bad(
                "--ulimit",
                spec,
                format!("{v:?} is not a limit: give a number, or -1 for unlimited"),
            )),
        }
    };
    let (soft, hard) = (num(soft)?, num(hard)?);
    let as_u64 = |n: i64| u64::try_from(n).unwrap_or(u64::MAX);
    if as_u64(soft) > as_u64(hard) {
        return Err(bad(
            "--ulimit",
            spec,
            format!("the soft limit {soft} is above the hard limit {hard}"),
        ));
    }
    Ok(Ulimit {
        name: name.to_owned(),
        soft,
        hard,
    })
}

/// `--sysctl KEY=VALUE`, namespaced keys only (Docker's `ValidateSysctl`).
fn parse_sysctl(spec: &str) -> Result<(String, String), SecurityError> {
    let (key, value) = spec.split_once('=').ok_or_else(|| {
        bad(
            "--sysctl",
            spec,
            "expected KEY=VALUE, e.g. net.ipv4.ip_forward=1",
        )
    })?;
    check_sysctl("--sysctl", key, value)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Checks one kernel parameter for a box or a pod VM (`flag` names where it came from):
/// a well-formed key of a namespaced parameter (Docker's and Kubernetes' rule) and a
/// one-line value.
///
/// # Errors
/// What is wrong, naming the key.
pub fn check_sysctl(flag: &'static str, key: &str, value: &str) -> Result<(), SecurityError> {
    let spec = format!("{key}={value}");
    let spec = spec.as_str();
    let well_formed = !key.is_empty()
        && key.split('.').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if !well_formed {
        return Err(bad(
            flag,
            spec,
            "the key must be dotted words, e.g. net.core.somaxconn",
        ));
    }
    if value.len() > SYSCTL_VALUE_MAX || value.contains(['\n', '\0']) {
        return Err(bad(
            flag,
            spec,
            format!("the value must be one line of at most {SYSCTL_VALUE_MAX} bytes"),
        ));
    }
    let namespaced =
        IPC_SYSCTLS.contains(&key) || key.starts_with("net.") || key.starts_with("fs.mqueue.");
    if !namespaced {
        return Err(bad(
            flag,
            spec,
            format!(
                "{key} is not a namespaced kernel parameter; as in Docker and Kubernetes only \
                 net.*, fs.mqueue.* and the IPC ones ({}) can be set per box or pod",
                IPC_SYSCTLS.join(", ")
            ),
        ));
    }
    Ok(())
}

/// `--security-opt`: `no-new-privileges[:true|false]` (also `=`), nothing else. Returns
/// whether no-new-privileges is on.
fn parse_security_opt(spec: &str) -> Result<bool, SecurityError> {
    let (name, value) = match spec.split_once([':', '=']) {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    };
    match (name, value) {
        ("no-new-privileges", None | Some("true")) => Ok(true),
        ("no-new-privileges", Some("false")) => Ok(false),
        ("no-new-privileges", Some(_)) => Err(bad(
            "--security-opt",
            spec,
            "no-new-privileges takes true or false",
        )),
        ("seccomp" | "apparmor" | "label" | "systempaths" | "proc-opts" | "mask" | "unmask", _) => {
            Err(bad(
                "--security-opt",
                spec,
                format!(
                    "{name} is not supported: a box's workload runs in its own VM kernel, \
                     isolated by the hypervisor, with no {name} profile to choose; only \
                     no-new-privileges can be set"
                ),
            ))
        }
        _ => Err(bad(
            "--security-opt",
            spec,
            "unknown option: only no-new-privileges[:true|false] is supported",
        )),
    }
}

/// `--group-add`: a group name or a numeric gid.
fn check_group(g: &str) -> Result<(), SecurityError> {
    let ok = !g.is_empty()
        && g.len() <= 256
        && !g
            .chars()
            .any(|c| c == ':' || c == ',' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(bad(
            "--group-add",
            g,
            "expected a group name or a numeric gid",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> SecurityFlags {
        SecurityFlags::default()
    }

    fn caps_of(add: &[&str], drop: &[&str], privileged: bool) -> Vec<String> {
        let f = SecurityFlags {
            cap_add: add.iter().map(|s| (*s).to_owned()).collect(),
            cap_drop: drop.iter().map(|s| (*s).to_owned()).collect(),
            privileged,
            ..flags()
        };
        SecurityConfig::from_flags(&f).unwrap().capabilities()
    }

    #[test]
    fn default_set_is_dockers_fourteen() {
        let caps = caps_of(&[], &[], false);
        assert_eq!(caps.len(), 14);
        for c in DEFAULT_CAPABILITIES {
            assert!(caps.contains(&c.to_owned()), "{c}");
        }
        // Kernel order: CHOWN (0) first, SETFCAP (31) last.
        assert_eq!(caps.first().map(String::as_str), Some("CAP_CHOWN"));
        assert_eq!(caps.last().map(String::as_str), Some("CAP_SETFCAP"));
    }

    #[test]
    fn capability_arithmetic_follows_docker() {
        let c = caps_of(
            &["net_admin", "CAP_SYS_TIME"],
            &["chown", "CAP_KILL"],
            false,
        );
        assert!(c.contains(&"CAP_NET_ADMIN".to_owned()));
        assert!(c.contains(&"CAP_SYS_TIME".to_owned()));
        assert!(!c.contains(&"CAP_CHOWN".to_owned()));
        assert!(!c.contains(&"CAP_KILL".to_owned()));
        assert_eq!(c.len(), 14);
        // Drop ALL keeps only the adds.
        assert_eq!(
            caps_of(&["NET_BIND_SERVICE"], &["ALL"], false),
            vec!["CAP_NET_BIND_SERVICE"]
        );
        assert!(caps_of(&[], &["all"], false).is_empty());
        // Add ALL gives everything but the drops.
        let all = all_capabilities();
        let c = caps_of(&["ALL"], &["SYS_ADMIN"], false);
        assert_eq!(c.len(), all.len() - 1);
        assert!(!c.contains(&"CAP_SYS_ADMIN".to_owned()));
        // A cap both added and dropped is added (Docker adds after dropping).
        assert!(caps_of(&["CHOWN"], &["CHOWN"], false).contains(&"CAP_CHOWN".to_owned()));
        // Privileged ignores drops.
        assert_eq!(caps_of(&[], &["ALL"], true), all);
        assert!(all.contains(&"CAP_SYS_ADMIN".to_owned()) && all.len() >= 40);
    }

    #[test]
    fn unknown_capability_names_the_value() {
        let f = SecurityFlags {
            cap_add: vec!["NET_ADMINN".into()],
            ..flags()
        };
        let e = SecurityConfig::from_flags(&f).unwrap_err().to_string();
        assert!(e.contains("--cap-add") && e.contains("NET_ADMINN"), "{e}");
    }

    #[test]
    fn ulimits_parse_with_docker_rules() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        let u = parse_ulimit("nproc=50").unwrap();
        assert_eq!((u.soft, u.hard), (50, 50));
        let u = parse_ulimit("core=-1").unwrap();
        assert_eq!((u.soft, u.hard), (-1, -1));
        assert!(parse_ulimit("core=0:-1").is_ok());
        for bad in [
            "nofile",
            "nofiles=1",
            "nofile=x",
            "nofile=2048:1024",
            "nofile=-1:5",
            "nofile=-2",
        ] {
            let e = parse_ulimit(bad).unwrap_err().to_string();
            assert!(e.contains("--ulimit") && e.contains(bad), "{e}");
        }
        let cfg = SecurityConfig::from_flags(&SecurityFlags {
            ulimit: vec![
                "nofile=10:20".into(),
                "core=-1".into(),
                "nofile=30:40".into(),
            ],
            ..flags()
        })
        .unwrap();
        let g = cfg.guest();
        assert_eq!(g.rlimits.len(), 2, "a later --ulimit of the same name wins");
        assert_eq!(g.rlimits[0].name, "core");
        assert_eq!(g.rlimits[0].soft, Rlimit::UNLIMITED);
        assert_eq!((g.rlimits[1].soft, g.rlimits[1].hard), (30, 40));
    }

    #[test]
    fn only_namespaced_sysctls_are_accepted() {
        for ok in [
            "net.ipv4.ip_forward=1",
            "net.core.somaxconn=1024",
            "kernel.shmmax=1000000",
            "kernel.msgmax=8192",
            "kernel.sem=250 32000 32 128",
            "fs.mqueue.msg_max=20",
        ] {
            assert!(parse_sysctl(ok).is_ok(), "{ok}");
        }
        let e = parse_sysctl("kernel.hostname=x").unwrap_err().to_string();
        assert!(e.contains("not a namespaced"), "{e}");
        assert!(parse_sysctl("vm.swappiness=1").is_err());
        assert!(parse_sysctl("net.ipv4").is_err(), "no value");
        assert!(parse_sysctl("net/../../x=1").is_err());
        assert!(parse_sysctl("net..x=1").is_err());
        assert!(parse_sysctl("net.x=a\nb").is_err());
    }

    #[test]
    fn security_opt_accepts_only_no_new_privileges() {
        assert!(parse_security_opt("no-new-privileges").unwrap());
        assert!(parse_security_opt("no-new-privileges:true").unwrap());
        assert!(parse_security_opt("no-new-privileges=true").unwrap());
        assert!(!parse_security_opt("no-new-privileges:false").unwrap());
        assert!(parse_security_opt("no-new-privileges:maybe").is_err());
        let e = parse_security_opt("seccomp=unconfined")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("seccomp is not supported") && e.contains("own VM kernel"),
            "{e}"
        );
        assert!(parse_security_opt("apparmor=docker-default").is_err());
        assert!(parse_security_opt("bogus").is_err());
    }

    #[test]
    fn tmpfs_specs_and_sizes() {
        assert_eq!(
            parse_tmpfs("/run/cache:size=64k,mode=1777,exec").unwrap(),
            (
                "/run/cache".to_owned(),
                "size=64k,mode=1777,exec".to_owned()
            )
        );
        assert_eq!(parse_tmpfs("/scratch").unwrap().1, "");
        for bad in [
            "scratch",
            "/",
            "/a/../b",
            "/a/",
            "/x:size=1q",
            "/x:mode=999",
            "/x:tmpcopyup",
            "/x:uid=me",
        ] {
            assert!(parse_tmpfs(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_bytes("64m"), Some(64 << 20));
        assert_eq!(parse_bytes("1g"), Some(1 << 30));
        assert_eq!(parse_bytes("128MiB"), Some(128 << 20));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("12x"), None);
        let cfg = SecurityConfig::from_flags(&SecurityFlags {
            tmpfs: vec!["/scratch:exec,size=1m".into()],
            read_only: true,
            ..flags()
        })
        .unwrap();
        let g = cfg.guest();
        assert!(g.read_only_root);
        assert_eq!(
            g.tmpfs[0].options,
            vec!["noexec", "nosuid", "nodev", "exec", "size=1m"],
            "Docker's defaults come first so the user's options override them"
        );
        assert_eq!(g.shm_size_bytes, Some(DEFAULT_SHM_BYTES));
        let dup = SecurityFlags {
            tmpfs: vec!["/a".into(), "/a:size=1m".into()],
            ..flags()
        };
        assert!(SecurityConfig::from_flags(&dup).is_err());
        let zero = SecurityFlags {
            shm_size: Some("0".into()),
            ..flags()
        };
        assert!(SecurityConfig::from_flags(&zero).is_err());
    }

    #[test]
    fn mount_flags_map_onto_volumes_and_tmpfs() {
        match parse_mount("type=bind,source=/srv/data,target=/data,readonly").unwrap() {
            MountFlag::Volume(m) => {
                assert_eq!(m.target, "/data");
                assert!(m.readonly);
            }
            other => panic!("{other:?}"),
        }
        match parse_mount("type=volume,src=cache,dst=/cache,volume-nocopy").unwrap() {
            MountFlag::Volume(m) => assert!(m.nocopy && !m.readonly),
            other => panic!("{other:?}"),
        }
        match parse_mount("type=volume,target=/x,readonly").unwrap() {
            MountFlag::Volume(m) => {
                assert_eq!(m.source, crate::volumes::MountSource::Anonymous);
                assert!(m.readonly);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_mount("type=tmpfs,target=/scratch,tmpfs-size=1m,tmpfs-mode=1770").unwrap(),
            MountFlag::Tmpfs {
                path: "/scratch".into(),
                options: format!("size={},mode=1770", 1 << 20),
            }
        );
        for bad in [
            "type=bind,source=rel,target=/x",
            "type=volume,source=/abs,target=/x",
            "type=tmpfs,source=x,target=/x",
            "type=tmpfs,target=/x,tmpfs-mode=99",
            "type=bind,source=/a,target=/x,bind-propagation=shared",
            "type=nfs,target=/x",
            "type=volume,source=v",
            "type=bind,target=/x",
            "type=bind,source=/a,target=/x,colour=red",
        ] {
            let e = parse_mount(bad).unwrap_err().to_string();
            assert!(e.starts_with("--mount"), "{e}");
        }
    }

    #[test]
    fn memory_reservation_and_swap_follow_docker_s_rules() {
        let cfg = |res: Option<&str>, swap: Option<&str>| {
            SecurityConfig::from_flags(&SecurityFlags {
                memory_reservation: res.map(str::to_owned),
                memory_swap: swap.map(str::to_owned),
                ..SecurityFlags::default()
            })
        };
        let c = cfg(Some("32m"), Some("-1")).unwrap();
        assert_eq!((c.memory_reservation, c.memory_swap), (32 << 20, -1));
        assert_eq!(c.guest().memory_low_bytes, Some(32 << 20));
        assert_eq!(cfg(None, None).unwrap().guest().memory_low_bytes, None);
        assert!(cfg(Some("1m"), None)
            .unwrap_err()
            .to_string()
            .contains("6 MiB"));
        assert!(cfg(Some("lots"), None).is_err());
        assert!(cfg(None, Some("-2")).is_err());
        // Against --memory.
        let c = cfg(Some("32m"), Some("128m")).unwrap();
        c.check_memory(Some(64 << 20)).unwrap();
        c.check_memory(Some(128 << 20)).unwrap();
        let e = c.check_memory(None).unwrap_err().to_string();
        assert!(
            e.contains("--memory-swap") && e.contains("set --memory too"),
            "{e}"
        );
        let e = c.check_memory(Some(256 << 20)).unwrap_err().to_string();
        assert!(e.contains("at least --memory"), "{e}");
        let e = c.check_memory(Some(16 << 20)).unwrap_err().to_string();
        assert!(
            e.contains("--memory-reservation") && e.contains("at most --memory"),
            "{e}"
        );
        cfg(None, Some("-1")).unwrap().check_memory(None).unwrap();
    }

    #[test]
    fn pids_limit_zero_or_negative_is_unlimited_and_config_round_trips() {
        let mk = |n| {
            SecurityConfig::from_flags(&SecurityFlags {
                pids_limit: Some(n),
                ..flags()
            })
            .unwrap()
        };
        assert_eq!(mk(0).guest().pids_limit, None);
        assert_eq!(mk(-1).guest().pids_limit, None);
        assert_eq!(mk(20).guest().pids_limit, Some(20));
        let cfg = SecurityConfig::from_flags(&SecurityFlags {
            security_opt: vec!["no-new-privileges".into()],
            group_add: vec!["audio".into(), "1234".into()],
            init: true,
            ..flags()
        })
        .unwrap();
        assert!(cfg.guest().no_new_privileges);
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["SecurityOpt"][0], "no-new-privileges");
        assert_eq!(json["Init"], true);
        assert_eq!(json["GroupAdd"][1], "1234");
        assert_eq!(json["ShmSize"], DEFAULT_SHM_BYTES);
        let back: SecurityConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, cfg);
        assert!(check_group("a:b").is_err());
    }
}
