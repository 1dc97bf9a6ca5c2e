//! Container records of pods (the CRI's containers): what kubelet asked for, the image it
//! resolved to, and the container's lifecycle, one JSON file per container under
//! `A3S_HOME/pods/containers/`, written atomically under the pod store's lock.

pub mod cri_log;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::home::A3sHome;
use crate::pods::PodError;
use crate::record_dir::{Record, RecordDir};

/// What a container is asked to be (CRI `ContainerConfig`, validated by the front end).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Container name (unique in its pod with the attempt).
    pub name: String,
    /// Attempt number (kubelet restarts a container with a higher one).
    pub attempt: u32,
    /// The image as kubelet named it (a reference or an id).
    pub image: String,
    /// Command (replaces the image's entrypoint when not empty).
    pub command: Vec<String>,
    /// Arguments (replace the image's cmd when not empty).
    pub args: Vec<String>,
    /// `KEY=value` entries added to the image's environment.
    pub env: Vec<String>,
    /// Working directory (the image's when absent).
    pub workdir: Option<String>,
    /// `uid`, `uid:gid` or a name (the image's user when absent).
    pub user: Option<String>,
    /// Allocate a terminal.
    pub tty: bool,
    /// Keep standard input open (attach).
    pub stdin: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Where the CRI-format log goes (pod log directory joined with the container's path).
    pub log_path: Option<PathBuf>,
    /// Limits of the container's cgroup in the pod VM (CreateContainer's, then the last
    /// UpdateContainerResources that succeeded).
    #[serde(default)]
    pub resources: a3s_vmm::proto::ContainerResources,
    /// Host paths bound into the container (CRI mounts), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<crate::pods::share::HostMount>,
    /// Its security context as guest-init applies it to the main process and every exec
    /// (`None`: a record from before security contexts; its processes keep the pod VM's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<a3s_vmm::proto::ContainerSecurity>,
}

/// Where a container is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended (or the pod VM stopped under it).
    Exited,
}

/// A container as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Container id (64 hex digits).
    pub id: String,
    /// The pod it runs in.
    pub pod_id: String,
    /// What was asked for.
    pub spec: ContainerSpec,
    /// The resolved image reference.
    pub image_ref: String,
    /// The image id (`sha256:` manifest digest).
    pub image_id: String,
    /// The process as the guest starts it (image defaults merged in).
    pub argv: Vec<String>,
    /// Its full environment entries (image first, then the spec's).
    pub env: Vec<String>,
    /// Its working directory.
    pub workdir: Option<String>,
    /// Its user.
    pub user: Option<String>,
    /// The signal `stop` sends first (the image's `StopSignal`, else SIGTERM).
    pub stop_signal: i32,
    /// Lifecycle.
    pub state: ContainerState,
    /// Nanoseconds since the epoch (CRI's unit); 0 when not reached.
    pub created_ns: i64,
    /// Start time.
    pub started_ns: i64,
    /// Exit time.
    pub finished_ns: i64,
    /// Exit code.
    pub exit_code: i32,
    /// Why it ended (`Completed`, `Error`, `OOMKilled`, `StartError`, `PodStopped`).
    pub reason: String,
    /// Details of a failure.
    pub message: String,
    /// The spec's mounts as the pod VM reaches them (its share), for every process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<a3s_vmm::proto::ContainerMount>,
    /// The root in the pod VM when it is not `/containers/<id>/rootfs` (a plain pod's
    /// container: its overlay through the pod's share; `pods::share`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// The identity its main process started with, as guest-init reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_user: Option<a3s_vmm::proto::ProcessUser>,
}

impl ContainerRecord {
    /// The container's root directory inside its pod's VM.
    pub fn guest_root(&self) -> String {
        match &self.root {
            Some(r) => r.clone(),
            None => format!("{GUEST_CONTAINERS}/{}/rootfs", self.id),
        }
    }
}

/// Where containers' root filesystems live inside a pod VM.
pub const GUEST_CONTAINERS: &str = "/containers";

impl Record for ContainerRecord {
    fn id(&self) -> &str {
        &self.id
    }
    fn created_ns(&self) -> i64 {
        self.created_ns
    }
}

/// The container store of one home (locked with the pod store's lock).
#[derive(Clone, Debug)]
pub struct Containers {
    records: RecordDir<ContainerRecord>,
}

impl Containers {
    /// The store under `home`.
    pub fn open(home: &A3sHome) -> Self {
        Self {
            records: RecordDir::new(home.root().join("pods").join("containers")),
        }
    }

    /// Stores `rec` atomically.
    ///
    /// # Errors
    /// i/o.
    pub fn save(&self, rec: &ContainerRecord) -> Result<(), PodError> {
        Ok(self.records.save(rec)?)
    }

    /// Every container, oldest first.
    ///
    /// # Errors
    /// i/o or a corrupt record.
    pub fn list(&self) -> Result<Vec<ContainerRecord>, PodError> {
        Ok(self.records.list()?)
    }

    /// The container `key` names: its id or a unique prefix of it.
    ///
    /// # Errors
    /// [`PodError::ContainerNotFound`], [`PodError::Ambiguous`].
    pub fn find(&self, key: &str) -> Result<ContainerRecord, PodError> {
        let mut hits = self.records.matching(key)?.into_iter();
        match (hits.next(), hits.next()) {
            (Some(c), None) => Ok(c),
            (Some(_), Some(_)) => Err(PodError::Ambiguous(key.to_owned())),
            (None, _) => Err(PodError::ContainerNotFound(key.to_owned())),
        }
    }

    /// Deletes the record of `id`.
    ///
    /// # Errors
    /// i/o.
    pub fn delete(&self, id: &str) -> Result<(), PodError> {
        Ok(self.records.delete(id)?)
    }
}

/// The process of a container: CRI's command and args over the image's entrypoint and cmd
/// (Kubernetes' rule: a command replaces both, args replace cmd only).
pub fn argv_of(spec: &ContainerSpec, entrypoint: &[String], cmd: &[String]) -> Vec<String> {
    match (spec.command.is_empty(), spec.args.is_empty()) {
        (false, false) => spec.command.iter().chain(&spec.args).cloned().collect(),
        (false, true) => spec.command.clone(),
        (true, false) => entrypoint.iter().chain(&spec.args).cloned().collect(),
        (true, true) => entrypoint.iter().chain(cmd).cloned().collect(),
    }
}

/// A container record for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn test_record(id: &str, image_id: &str, created_ns: i64) -> ContainerRecord {
    ContainerRecord {
        id: id.to_owned(),
        pod_id: "p".repeat(64),
        spec: ContainerSpec {
            name: "c".into(),
            ..Default::default()
        },
        image_ref: "busybox".into(),
        image_id: image_id.to_owned(),
        argv: vec!["sh".into()],
        env: Vec::new(),
        workdir: None,
        user: None,
        stop_signal: 15,
        state: ContainerState::Created,
        created_ns,
        started_ns: 0,
        finished_ns: 0,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        mounts: Vec::new(),
        root: None,
        process_user: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, created_ns: i64) -> ContainerRecord {
        test_record(id, "sha256:00", created_ns)
    }

    #[test]
    fn saves_lists_finds_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Containers::open(&A3sHome::at(dir.path()));
        assert!(store.list().unwrap().is_empty());
        let a = rec(&format!("ab{}", "0".repeat(62)), 2);
        let b = rec(&format!("ac{}", "0".repeat(62)), 1);
        store.save(&a).unwrap();
        store.save(&b).unwrap();
        assert_eq!(store.list().unwrap(), vec![b.clone(), a.clone()]);
        assert_eq!(store.find("ab").unwrap(), a);
        assert!(matches!(store.find("a"), Err(PodError::Ambiguous(_))));
        assert!(matches!(
            store.find("../x"),
            Err(PodError::ContainerNotFound(_))
        ));
        assert_eq!(a.guest_root(), format!("/containers/{}/rootfs", a.id));
        store.delete(&a.id).unwrap();
        store.delete(&a.id).unwrap();
        assert_eq!(store.list().unwrap(), vec![b]);
    }

    #[test]
    fn command_and_args_combine_with_the_image_as_kubernetes_does() {
        let (ep, cmd) = (vec!["/ep".to_owned()], vec!["c1".to_owned()]);
        let s = |command: &[&str], args: &[&str]| ContainerSpec {
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        assert_eq!(argv_of(&s(&[], &[]), &ep, &cmd), ["/ep", "c1"]);
        assert_eq!(argv_of(&s(&[], &["a"]), &ep, &cmd), ["/ep", "a"]);
        assert_eq!(argv_of(&s(&["x"], &[]), &ep, &cmd), ["x"]);
        assert_eq!(argv_of(&s(&["x"], &["a"]), &ep, &cmd), ["x", "a"]);
    }
}
