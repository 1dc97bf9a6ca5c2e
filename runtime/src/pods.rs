//! Pod sandbox records (the CRI's pods): what kubelet asked for and the box whose VM is the
//! pod, one JSON file per pod under `A3S_HOME/pods/`, written atomically under the store lock.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::home::A3sHome;
use crate::state::{self, Lock, StateError};

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
    /// Port mappings: host loopback port → pod TCP port.
    #[serde(default)]
    pub ports: Vec<crate::network::PortMap>,
    /// The RuntimeClass handler (`""` for the default).
    pub handler: String,
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
    /// A record file is not a pod record.
    #[error("pod record {}: {source}", path.display())]
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

/// Largest pod record read (labels and annotations are bounded by kubelet well below this).
const MAX_RECORD: u64 = 1 << 20;

/// The pod store of one home.
#[derive(Clone, Debug)]
pub struct Pods {
    dir: PathBuf,
}

impl Pods {
    /// The store under `home`.
    pub fn open(home: &A3sHome) -> Self {
        Self {
            dir: home.root().join("pods"),
        }
    }

    /// Holds the store lock (name reservation and removal are ordered by it).
    ///
    /// # Errors
    /// [`PodError::State`].
    pub fn lock(&self) -> Result<Lock, PodError> {
        fs_err::create_dir_all(&self.dir)?;
        Ok(state::lock_file(&self.dir.join(".lock"))?)
    }

    /// Stores `rec` (atomically: temp file, fsync, rename); the caller holds the lock.
    ///
    /// # Errors
    /// i/o.
    pub fn save(&self, rec: &PodRecord) -> Result<(), PodError> {
        use std::io::Write;
        fs_err::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{}.tmp", rec.id));
        let bytes = serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?;
        let mut f = fs_err::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs_err::rename(&tmp, self.dir.join(format!("{}.json", rec.id)))?;
        fs_err::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    /// Every pod, oldest first.
    ///
    /// # Errors
    /// i/o or a corrupt record.
    pub fn list(&self) -> Result<Vec<PodRecord>, PodError> {
        let entries = match fs_err::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let is_record = path.extension().is_some_and(|x| x == "json")
                && !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if is_record {
                out.push(Self::read(&path)?);
            }
        }
        out.sort_by_key(|p| p.created_ns);
        Ok(out)
    }

    fn read(path: &std::path::Path) -> Result<PodRecord, PodError> {
        use std::io::Read;
        let mut text = Vec::new();
        fs_err::File::open(path)?
            .take(MAX_RECORD + 1)
            .read_to_end(&mut text)?;
        if text.len() as u64 > MAX_RECORD {
            return Err(std::io::Error::other(format!(
                "{}: larger than {MAX_RECORD} bytes",
                path.display()
            ))
            .into());
        }
        serde_json::from_slice(&text).map_err(|source| PodError::Corrupt {
            path: path.to_owned(),
            source,
        })
    }

    /// The pod `key` names: its id or a unique prefix of it.
    ///
    /// # Errors
    /// [`PodError::NotFound`], [`PodError::Ambiguous`].
    pub fn find(&self, key: &str) -> Result<PodRecord, PodError> {
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PodError::NotFound(key.to_owned()));
        }
        let mut hits = self.list()?.into_iter().filter(|p| p.id.starts_with(key));
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
        match fs_err::remove_file(self.dir.join(format!("{id}.json"))) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
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
