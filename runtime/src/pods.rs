//! Pod sandbox records (the CRI's pods): what kubelet asked for and the box whose VM is the
//! pod, one JSON file per pod under `A3S_HOME/pods/`, written atomically under the store lock.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::home::A3sHome;
use crate::record_dir::{Record, RecordDir, RecordError};
use crate::state::{self, Lock, StateError};

pub mod detached;
pub mod share;
pub mod tee;

/// What a pod is asked to be (CRI `PodSandboxConfig`, already validated by the front end).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSpec {
    /// Pod name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The pod's uid.
    pub uid: String,
    /// Attempt number (kubelet recreates sandboxes with a higher one).
    pub attempt: u32,
    /// Labels (list filters select on them).
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Hostname inside the pod.
    pub hostname: Option<String>,
    /// DNS servers for `/etc/resolv.conf`.
    pub dns_servers: Vec<String>,
    /// DNS search domains.
    #[serde(default)]
    pub dns_searches: Vec<String>,
    /// resolv.conf options.
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// Port mappings: host loopback port → pod TCP port.
    #[serde(default)]
    pub ports: Vec<crate::network::PortMap>,
    /// The RuntimeClass handler (`""` for the default).
    pub handler: String,
    /// Namespaced kernel parameters set in the pod VM before any container starts (its
    /// containers share the VM's kernel, network and IPC namespaces, as a pod's do).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// The pod's security context is privileged (its containers may be).
    #[serde(default)]
    pub privileged: bool,
    /// Memory the pod's containers may use together, in bytes (CRI's sandbox resources plus
    /// overhead): the pod VM is sized to hold it beside the guest's own share. `None`: the
    /// default VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// vCPUs for the containers' CPU limits (CRI's sandbox resources plus overhead); `None`: one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
}

impl PodSpec {
    /// The name kubelet's retries are recognised by.
    pub fn full_name(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.name, self.namespace, self.uid, self.attempt
        )
    }
}

/// A pod as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// Pod id (64 hex digits, like box ids).
    pub id: String,
    /// What was asked for.
    pub spec: PodSpec,
    /// The box whose VM is the pod.
    pub box_id: String,
    /// Creation time, nanoseconds since the epoch (CRI's unit).
    pub created_ns: i64,
    /// The pod's CNI attachment (pods on a CNI node): what DEL needs, and the ADD result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::network::cni::PodNetwork>,
}

/// Pod store errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PodError {
    /// No pod has that id (or unique id prefix).
    #[error("no pod sandbox {0}")]
    NotFound(String),
    /// A prefix matches several pods (or containers).
    #[error("id prefix {0} is ambiguous; give more digits")]
    Ambiguous(String),
    /// No container has that id (or unique id prefix).
    #[error("no container {0}")]
    ContainerNotFound(String),
    /// The pod or container is not in a state that allows the call (the message says why).
    #[error("{0}")]
    WrongState(String),
    /// A pod's configuration is wrong (the message names the handler or annotation).
    #[error("{0}")]
    Invalid(String),
    /// A pod's VM did not start (the message has every cause: a failed TEE step is named).
    #[error("{0}")]
    Failed(String),
    /// Refused by a confidential pod's rules (the message says which; audited).
    #[error("{0}")]
    Denied(String),
    /// A container's process could not start (the message is the guest's reason).
    #[error("starting container {id}: {message}")]
    StartFailed {
        /// The container.
        id: String,
        /// Why.
        message: String,
    },
    /// An exec in a container ran past its deadline and was killed.
    #[error("command timed out after {0:?} and was killed")]
    ExecTimeout(std::time::Duration),
    /// Locks.
    #[error(transparent)]
    State(#[from] StateError),
    /// A record file is not a pod (or pod container) record.
    #[error("corrupt record {}: {source}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// i/o (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Record for PodRecord {
    fn id(&self) -> &str {
        &self.id
    }
    fn created_ns(&self) -> i64 {
        self.created_ns
    }
}

impl From<RecordError> for PodError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Corrupt { path, source } => Self::Corrupt { path, source },
            RecordError::Io(e) => Self::Io(e),
        }
    }
}

/// The pod store of one home.
#[derive(Clone, Debug)]
pub struct Pods {
    records: RecordDir<PodRecord>,
}

impl Pods {
    /// The store under `home`.
    pub fn open(home: &A3sHome) -> Self {
        Self {
            records: RecordDir::new(home.root().join("pods")),
        }
    }

    /// Holds the store lock (name reservation and removal are ordered by it).
    ///
    /// # Errors
    /// [`PodError::State`].
    pub fn lock(&self) -> Result<Lock, PodError> {
        fs_err::create_dir_all(self.records.dir())?;
        Ok(state::lock_file(&self.records.dir().join(".lock"))?)
    }

    /// Stores `rec` atomically; the caller holds the lock.
    ///
    /// # Errors
    /// i/o.
    pub fn save(&self, rec: &PodRecord) -> Result<(), PodError> {
        Ok(self.records.save(rec)?)
    }

    /// Every pod, oldest first.
    ///
    /// # Errors
    /// i/o or a corrupt record.
    pub fn list(&self) -> Result<Vec<PodRecord>, PodError> {
        Ok(self.records.list()?)
    }

    /// The pod `key` names: its id or a unique prefix of it.
    ///
    /// # Errors
    /// [`PodError::NotFound`], [`PodError::Ambiguous`].
    pub fn find(&self, key: &str) -> Result<PodRecord, PodError> {
        let mut hits = self.records.matching(key)?.into_iter();
        match (hits.next(), hits.next()) {
            (Some(p), None) => Ok(p),
            (Some(_), Some(_)) => Err(PodError::Ambiguous(key.to_owned())),
            (None, _) => Err(PodError::NotFound(key.to_owned())),
        }
    }

    /// Deletes the record of `id` (the caller holds the lock).
    ///
    /// # Errors
    /// i/o.
    pub fn delete(&self, id: &str) -> Result<(), PodError> {
        Ok(self.records.delete(id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, name: &str, created_ns: i64) -> PodRecord {
        PodRecord {
            id: id.to_owned(),
            spec: PodSpec {
                name: name.into(),
                namespace: "default".into(),
                uid: "u".into(),
                labels: [("app".to_owned(), "web".to_owned())].into(),
                ..Default::default()
            },
            box_id: "b".repeat(64),
            created_ns,
            network: None,
        }
    }

    #[test]
    fn saves_lists_finds_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let pods = Pods::open(&A3sHome::at(dir.path()));
        assert!(pods.list().unwrap().is_empty());
        let _lock = pods.lock().unwrap();
        let a = rec(&format!("ab{}", "0".repeat(62)), "a", 2);
        let b = rec(&format!("ac{}", "0".repeat(62)), "b", 1);
        pods.save(&a).unwrap();
        pods.save(&b).unwrap();
        let all = pods.list().unwrap();
        assert_eq!(all, vec![b.clone(), a.clone()], "oldest first");
        assert_eq!(pods.find("ab").unwrap(), a);
        assert!(matches!(pods.find("a"), Err(PodError::Ambiguous(_))));
        assert!(matches!(pods.find("ff"), Err(PodError::NotFound(_))));
        assert!(matches!(pods.find("../x"), Err(PodError::NotFound(_))));
        assert_eq!(a.spec.full_name(), "a_default_u_0");
        pods.delete(&a.id).unwrap();
        pods.delete(&a.id).unwrap();
        assert_eq!(pods.list().unwrap(), vec![b]);
    }

    #[test]
    fn a_corrupt_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let pods = Pods::open(&A3sHome::at(dir.path()));
        std::fs::create_dir_all(dir.path().join("pods")).unwrap();
        std::fs::write(dir.path().join("pods/x.json"), b"{").unwrap();
        let e = pods.list().unwrap_err();
        assert!(e.to_string().contains("x.json"), "{e}");
    }
}
