//! Persisted box records: `A3S_HOME/boxes/<id>/state.json`, written atomically under a lock.

use std::fmt;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use a3s_vmm::proto::{GuestSetup, ProcessSpec};
use a3s_vmm::BootInfo;

/// Version of the `state.json` layout; other versions are refused, not guessed at.
pub const RECORD_VERSION: u32 = 1;

/// A box id: 32 lowercase hex digits (shown shortened to 12).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BoxId(String);

impl BoxId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The full id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-digit short form.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

/// Not a box id.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a box id (32 lowercase hex digits)")]
pub struct BadBoxId(String);

impl FromStr for BoxId {
    type Err = BadBoxId;
    fn from_str(s: &str) -> Result<Self, BadBoxId> {
        if s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadBoxId(s.to_owned()))
        }
    }
}

impl TryFrom<String> for BoxId {
    type Error = BadBoxId;
    fn try_from(s: String) -> Result<Self, BadBoxId> {
        s.parse()
    }
}

impl From<BoxId> for String {
    fn from(id: BoxId) -> Self {
        id.0
    }
}

impl fmt::Display for BoxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the box runs and with which resources (fixed at create time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxSpec {
    /// The workload.
    pub process: ProcessSpec,
    /// Hostname and hosts entries.
    pub setup: GuestSetup,
    /// vCPUs.
    pub vcpus: u8,
    /// Guest memory.
    pub mem_mib: u32,
    /// Extra kernel command-line arguments (`--kernel-arg`).
    pub kernel_args: Vec<String>,
    /// Remove the box when it exits (`--rm`).
    pub auto_remove: bool,
    /// Confidential box settings (`--tee-enable`, `--tee-simulate`); `None`: a plain box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee: Option<crate::tee::TeeSpec>,
    /// Health check (`--health-cmd`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<super::health::HealthConfig>,
    /// Apparent size of the writable layer disk (`--storage-opt size=`); absent in records
    /// from before writable layers, which get the default.
    #[serde(default = "default_layer_bytes")]
    pub layer_bytes: u64,
}

fn default_layer_bytes() -> u64 {
    a3s_vmm::disk::DEFAULT_LAYER_BYTES
}

/// A box's lifecycle state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
#[non_exhaustive]
pub enum BoxState {
    /// Created, never started (or reset for a restart).
    Created,
    /// The monitor is booting the VM.
    Starting {
        /// Monitor process.
        monitor_pid: u32,
    },
    /// The workload runs.
    Running {
        /// Monitor process.
        monitor_pid: u32,
        /// QEMU process.
        qemu_pid: u32,
    },
    /// The workload (or the VM) ended.
    Exited {
        /// Docker-style exit code.
        exit_code: i32,
        /// Why, when the box did not end by itself (boot failure, monitor died, killed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

impl BoxState {
    /// `created`, `starting`, `running` or `exited`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Starting { .. } => "starting",
            Self::Running { .. } => "running",
            Self::Exited { .. } => "exited",
        }
    }

    /// The monitor's pid while it owns the VM.
    pub fn monitor_pid(&self) -> Option<u32> {
        match self {
            Self::Starting { monitor_pid } | Self::Running { monitor_pid, .. } => {
                Some(*monitor_pid)
            }
            _ => None,
        }
    }

    /// True while a monitor owns (or boots) the VM.
    pub fn is_active(&self) -> bool {
        self.monitor_pid().is_some()
    }
}

/// Everything persisted about one box.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoxRecord {
    /// Layout version ([`RECORD_VERSION`]).
    pub version: u32,
    /// Id.
    pub id: BoxId,
    /// Unique name.
    pub name: String,
    /// Image reference as given.
    pub image: String,
    /// Image manifest digest.
    pub image_digest: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// What it runs.
    pub spec: BoxSpec,
    /// Lifecycle state.
    pub state: BoxState,
    /// The kernel command line of the last boot.
    #[serde(default)]
    pub kernel_cmdline: Option<String>,
    /// Start time of the last run.
    #[serde(default)]
    pub started_at: Option<String>,
    /// End time of the last run.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// How the last boot went.
    #[serde(default)]
    pub boot: Option<BootInfo>,
    /// Boots so far.
    #[serde(default)]
    pub start_count: u32,
    /// TEE mode, launch measurement and agent steps of the last boot (TEE boxes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee: Option<crate::tee::TeeRecord>,
    /// Health of the current (or last) run, when the box has a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<super::health::Health>,
}

/// A box state operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// No box has that name or id (prefix).
    #[error("no such box: {0}")]
    NotFound(String),
    /// An id prefix matches several boxes.
    #[error("box id prefix {0} is ambiguous")]
    Ambiguous(String),
    /// The name is taken.
    #[error("the name {name:?} is already in use by box {id}")]
    NameInUse {
        /// The name.
        name: String,
        /// Its current owner.
        id: String,
    },
    /// The name has characters outside `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
    #[error("invalid box name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit")]
    BadName(String),
    /// `state.json` has another layout version.
    #[error("{path}: state version {found} is not supported (this build reads {RECORD_VERSION})")]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// `state.json` is not valid.
    #[error("{path} is malformed")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// File-system failure (the message names the path).
    #[error("box state i/o failed")]
    Io(#[from] std::io::Error),
}

impl StateError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotFound(_) => Some("`a3s-box ps -a` lists boxes".into()),
            Self::NameInUse { id, .. } => Some(format!(
                "remove it with `a3s-box rm -f {}` or choose another --name",
                &id[..12.min(id.len())]
            )),
            _ => None,
        }
    }
}

/// An exclusive `flock` held until dropped.
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] File);

/// Takes an exclusive lock on `path` (created if missing).
///
/// # Errors
/// i/o.
pub fn lock_file(path: &Path) -> Result<Lock, StateError> {
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    let f = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| std::io::Error::other(format!("locking {}: {e}", path.display())))?;
    Ok(Lock(f.into_parts().0))
}

/// Checks a user-chosen box name.
///
/// # Errors
/// [`StateError::BadName`].
pub fn check_name(name: &str) -> Result<(), StateError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(StateError::BadName(name.to_owned()))
    }
}

/// Reads a record.
///
/// # Errors
/// i/o, malformed JSON or another version.
pub fn read_record(path: &Path) -> Result<BoxRecord, StateError> {
    let text = fs_err::read_to_string(path)?;
    #[derive(Deserialize)]
    struct V {
        version: u32,
    }
    let v: V = serde_json::from_str(&text).map_err(|source| StateError::Malformed {
        path: path.to_owned(),
        source,
    })?;
    if v.version != RECORD_VERSION {
        return Err(StateError::Version {
            path: path.to_owned(),
            found: v.version,
        });
    }
    serde_json::from_str(&text).map_err(|source| StateError::Malformed {
        path: path.to_owned(),
        source,
    })
}

/// Writes a record atomically (temp, fsync, rename, fsync dir). Callers hold the box lock.
///
/// # Errors
/// i/o.
pub fn write_record(path: &Path, record: &BoxRecord) -> Result<(), StateError> {
    let json = serde_json::to_vec_pretty(record).map_err(|source| StateError::Malformed {
        path: path.to_owned(),
        source,
    })?;
    a3s_vmm::assets::write_atomic(path, &json)?;
    Ok(())
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Current time in RFC 3339 with nanoseconds.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_ids_are_32_hex_digits() {
        let id = BoxId::random();
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(id.as_str().parse::<BoxId>().unwrap(), id);
        assert_eq!(id.short().len(), 12);
        assert!("XYZ".parse::<BoxId>().is_err());
        assert!("0123456789ABCDEF0123456789abcdef".parse::<BoxId>().is_err());
    }

    #[test]
    fn names_are_checked() {
        check_name("web-1.test_x").unwrap();
        assert!(check_name("").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a/b").is_err());
    }

    #[test]
    fn record_round_trips_and_other_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let rec = BoxRecord {
            version: RECORD_VERSION,
            id: BoxId::random(),
            name: "n".into(),
            image: "busybox:latest".into(),
            image_digest: "sha256:00".into(),
            created_at: now_rfc3339(),
            spec: BoxSpec {
                process: ProcessSpec::default(),
                setup: GuestSetup::default(),
                vcpus: 1,
                mem_mib: 256,
                kernel_args: vec![],
                auto_remove: false,
                tee: None,
                health: None,
                layer_bytes: 1 << 30,
            },
            state: BoxState::Exited {
                exit_code: 3,
                error: None,
            },
            kernel_cmdline: Some("console=ttyS0".into()),
            started_at: None,
            finished_at: None,
            boot: None,
            start_count: 0,
            tee: None,
            health: None,
        };
        write_record(&path, &rec).unwrap();
        let back = read_record(&path).unwrap();
        assert_eq!(back.state, rec.state);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"version\": 1", "\"version\": 9");
        std::fs::write(&path, text).unwrap();
        assert!(matches!(
            read_record(&path),
            Err(StateError::Version { found: 9, .. })
        ));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            read_record(&path),
            Err(StateError::Malformed { .. })
        ));
    }

    #[test]
    fn own_process_is_alive_and_a_free_pid_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }
}
