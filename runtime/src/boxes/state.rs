//! Persisted box records: `A3S_HOME/boxes/<id>/state.json`, written atomically under a lock.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use a3s_vmm::proto::{GuestSetup, ProcessSpec};
use a3s_vmm::BootInfo;

pub use crate::state::{
    alive, check_name, lock_file, now_rfc3339, BadBoxId, BoxId, Lock, StateError, RECORD_VERSION,
};

/// What the box runs and with which resources (fixed at create time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxSpec {
    /// The workload.
    pub process: ProcessSpec,
    /// Hostname and hosts entries.
    pub setup: GuestSetup,
    /// vCPUs.
    pub vcpus: u8,
    /// The VM's memory when the workload has no limit.
    pub mem_mib: u32,
    /// The workload's memory limit in bytes (`--memory`): guest-init holds the workload and
    /// its exec sessions to it with a cgroup, and the VM is sized to hold it beside the
    /// guest's own share (`mem_mib` is then unused). `None`: no limit, as Docker's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    /// A pod VM's containers' memory together (CRI's sandbox resources): sizes the VM as
    /// `memory_limit_bytes` does, without a limit on the VM's own processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_memory_bytes: Option<u64>,
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
    /// `--restart` (records from before it: `no`).
    #[serde(default)]
    pub restart: super::restart::RestartPolicy,
    /// `-l/--label` (KEY=VALUE metadata; `ps --filter label=`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The signal `stop` sends first (`--stop-signal`, else the image's `StopSignal`; absent:
    /// SIGTERM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<i32>,
    /// Seconds `stop` waits before killing the VM (`--stop-timeout`; absent: 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    /// Apparent size of the writable layer disk (`--storage-opt size=`); absent in records
    /// from before writable layers, which get the default.
    #[serde(default = "default_layer_bytes")]
    pub layer_bytes: u64,
    /// Docker's security and resource flags (`--cap-add`, `--read-only`, ...); `None`: boxes
    /// from before them and CRI pods, which keep every capability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<super::security::SecurityConfig>,
}

impl BoxSpec {
    /// What guest-init applies to the workload and its exec sessions: the security flags and
    /// the memory limit (`None`: nothing, every capability kept).
    pub fn guest_security(&self) -> Option<a3s_vmm::proto::Security> {
        let mut sec = self.security.as_ref().map(|s| s.guest());
        if let Some(limit) = self.memory_limit_bytes {
            sec.get_or_insert_with(Default::default).memory_limit_bytes = Some(limit);
        }
        sec
    }
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
    /// The workload ended and its restart policy starts it again after a back-off.
    Restarting {
        /// Monitor process.
        monitor_pid: u32,
        /// How the last run ended.
        exit_code: i32,
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
    /// `created`, `starting`, `running`, `restarting` or `exited`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Starting { .. } => "starting",
            Self::Running { .. } => "running",
            Self::Restarting { .. } => "restarting",
            Self::Exited { .. } => "exited",
        }
    }

    /// The monitor's pid while it owns the VM.
    pub fn monitor_pid(&self) -> Option<u32> {
        match self {
            Self::Starting { monitor_pid }
            | Self::Running { monitor_pid, .. }
            | Self::Restarting { monitor_pid, .. } => Some(*monitor_pid),
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
    /// The VM's memory in MiB at the last boot (sized from `--memory` when it is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_mem_mib: Option<u32>,
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
    /// The last run ended by `stop` (so `unless-stopped` does not bring it back at boot).
    #[serde(default)]
    pub stopped_by_user: bool,
    /// TEE mode, launch measurement and agent steps of the last boot (TEE boxes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee: Option<crate::tee::TeeRecord>,
    /// Health of the current (or last) run, when the box has a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<super::health::Health>,
    /// Where the last start's time went, phase by phase ([`super::timings`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timings: Vec<super::timings::Phase>,
    /// Where the last run's end went, from the workload's start to its recorded exit:
    /// `workload` (the workload itself, as the monitor saw it) and `vm_stop` (syncing and
    /// stopping the VM). Empty while running and for a box that never started its workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_timings: Vec<super::timings::Phase>,
    /// `pause`: the VM's vCPUs are stopped (the box stays `Running` underneath; `unpause`,
    /// `stop` and the end of the run clear it).
    #[serde(default)]
    pub paused: bool,
    /// The guest kernel's OOM killer killed a process of the box during its last run (Docker's
    /// `State.OOMKilled`; cleared when a run starts).
    #[serde(default)]
    pub oom_killed: bool,
}

impl BoxRecord {
    /// Docker's state word: `paused` for a paused running box, else the state's name.
    pub fn status_name(&self) -> &'static str {
        match self.state {
            BoxState::Running { .. } if self.paused => "paused",
            _ => self.state.name(),
        }
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

#[cfg(test)]
pub(crate) mod tests {
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

    /// A box record for tests (an exited busybox box named `name`).
    pub(crate) fn record(name: &str) -> BoxRecord {
        BoxRecord {
            version: RECORD_VERSION,
            id: BoxId::random(),
            name: name.into(),
            image: "busybox:latest".into(),
            image_digest: "sha256:00".into(),
            created_at: now_rfc3339(),
            spec: BoxSpec {
                process: ProcessSpec::default(),
                setup: GuestSetup::default(),
                vcpus: 1,
                mem_mib: 256,
                memory_limit_bytes: None,
                pod_memory_bytes: None,
                kernel_args: vec![],
                auto_remove: false,
                tee: None,
                health: None,
                restart: Default::default(),
                labels: BTreeMap::new(),
                stop_signal: None,
                stop_timeout: None,
                layer_bytes: 1 << 30,
                security: None,
            },
            state: BoxState::Exited {
                exit_code: 3,
                error: None,
            },
            kernel_cmdline: Some("console=ttyS0".into()),
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
        }
    }

    #[test]
    fn record_round_trips_and_other_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let rec = record("n");
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
