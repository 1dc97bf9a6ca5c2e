//! The engine: one entry point for every operation that changes or reads state, for every
//! front end (the `a3s-box` CLI today; the CRI server, compose and build next).
//!
//! [`Engine`] has one method per operation. Requests are plain structs a front end builds
//! from its own input ([`CreateBox`], [`crate::boxes::CreateRequest`],
//! [`crate::network::CreateNetwork`], ...); results are returned as values, and streams
//! (foreground output, logs) go to callbacks. The engine never prints.
//!
//! Each operation records its audit events itself, before it returns success, so a front end
//! cannot forget one. "Run a box" is written down once, in [`Engine::run`]: resolve image →
//! signature gate → measurement → launch → attestation and secrets (guest) → workload →
//! cleanup.
//!
//! An [`Engine`] is cheap to clone, `Send` and `Sync`: operations may run concurrently on
//! several threads of one process and in several processes on one `A3S_HOME`; the file locks
//! of the stores (box names, box records, networks, volumes, the audit log) order them.

mod attachments;
mod attest;
mod build;
mod compose;
mod copy;
mod events;
mod helper_box;
mod images;
mod inject;
mod layers;
mod lifecycle;
mod measure;
mod networks;
mod pod_containers;
mod pod_images;
mod pod_stats;
mod pods;
// issue 16, CNI pod networking (branch hK)
mod pod_network;
mod run;
mod slow_answer;
mod system;
mod volumes;

#[cfg(test)]
mod tests;

use std::error::Error as StdError;
use std::path::PathBuf;

use crate::audit::{AuditError, AuditLog, Event, Outcome};
use crate::boxes::{BoxError, BoxRecord, Boxes};
use crate::home::A3sHome;

pub use attachments::BoxAttachments;
pub use attest::{AttestBox, AttestReport, EvidenceVerdict};
pub use build::{StepRun, StepStream, STEP_IMAGE_REPO};
pub use compose::{ComposeEvents, ProjectState, Recreate, DEPENDENCY_TIMEOUT};
pub use images::{is_verdict, PullPolicy, RemoteVerdict, Untagged};
pub use inject::{InjectReport, InjectSecret, MAX_INJECT_BYTES};
pub use layers::{CommitRequest, ConfigEdit};
pub use lifecycle::{cpu_percent, BoxStats, LogRequest, STATS_INTERVAL};
pub use measure::{MeasuredInputs, PredictedMeasurement};
pub use pod_containers::ExecOutput;
pub use pod_stats::{ContainerFigures, PodStats};
pub use pods::{PodState, TEE_ANNOTATION};
pub use run::{CreateBox, RunEvents, RunMode, RunOutcome};
pub use system::{ContainerPrune, SystemPrune, SystemPruneRequest};

/// This process's executable, whatever became of its file.
const SELF_EXE: &str = "/proc/self/exe";

/// The operations of one A3S home.
#[derive(Clone, Debug)]
pub struct Engine {
    home: A3sHome,
    boxes: Boxes,
    audit: AuditLog,
    monitor: Option<PathBuf>,
    /// The node's CNI setting: pods get their network from it (`None`: user networking).
    cni: Option<crate::network::cni::CniNode>,
    /// The last build step's unpacked image, for the next step's filesystem
    /// ([`Engine::run_step`]); shared by clones, removed when the last one goes.
    step_trees: std::sync::Arc<a3s_image::store::StepTrees>,
}

impl Engine {
    /// The engine of `home`. Boxes are started by spawning this executable as their monitor
    /// (`<exe> __monitor ID`); see [`Engine::with_monitor`] for other front ends.
    pub fn open(home: &A3sHome) -> Self {
        Self {
            home: home.clone(),
            boxes: Boxes::open(home),
            audit: AuditLog::open(home.audit()),
            monitor: None,
            cni: None,
            step_trees: std::sync::Arc::default(),
        }
    }

    /// Uses `exe` (the `a3s-box` binary, which serves `__monitor`) as the box monitor.
    #[must_use]
    pub fn with_monitor(mut self, exe: impl Into<PathBuf>) -> Self {
        self.monitor = Some(exe.into());
        self
    }

    /// The A3S home.
    pub fn home(&self) -> &A3sHome {
        &self.home
    }

    /// The box store (read access for front ends that render records).
    pub fn boxes(&self) -> &Boxes {
        &self.boxes
    }

    /// The audit log, for `audit` queries and chain verification (reading only: events are
    /// recorded by the operations themselves).
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// The binary monitors run from: this process's own executable through
    /// `/proc/self/exe`, which stays valid when an upgrade replaces or deletes the file under
    /// a long-running `cri serve` (its path then reads "... (deleted)" and spawning it
    /// failed every new pod), and keeps monitor and server the same build.
    fn monitor_exe(&self) -> Result<PathBuf, EngineError> {
        Ok(self
            .monitor
            .clone()
            .unwrap_or_else(|| PathBuf::from(SELF_EXE)))
    }

    /// Pods get their network from the node's CNI configuration in `node` (as containerd
    /// and CRI-O do), instead of user networking.
    #[must_use]
    pub fn with_cni(mut self, node: crate::network::cni::CniNode) -> Self {
        self.cni = Some(node);
        self
    }

    /// The node's CNI setting, if pods use CNI.
    pub fn cni(&self) -> Option<&crate::network::cni::CniNode> {
        self.cni.as_ref()
    }

    /// Records `event`; an operation reports success only after this returned `Ok`.
    fn record(&self, event: &Event) -> Result<(), EngineError> {
        self.audit.record(event).map_err(EngineError::Audit)?;
        Ok(())
    }

    /// Records a lifecycle event of `rec`.
    fn record_box(
        &self,
        action: &str,
        rec: &BoxRecord,
        outcome: Outcome,
        message: &str,
    ) -> Result<(), EngineError> {
        self.record(
            &Event::new(action, outcome, message)
                .with_box(rec.id.as_str())
                .with("name", rec.name.as_str())
                .with("image", rec.image_digest.as_str()),
        )
    }
}

/// An engine operation failed. Most variants carry the failing store's own error unchanged
/// (see [`EngineError::cause`]), so front ends keep its message and hint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A box operation.
    #[error(transparent)]
    Box(#[from] BoxError),
    /// Box state (ids, names, locks).
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A volume operation.
    #[error(transparent)]
    Volume(#[from] crate::volumes::VolumeError),
    /// A network operation.
    #[error(transparent)]
    Net(#[from] crate::network::NetError),
    /// A compose file or project.
    #[error(transparent)]
    Compose(#[from] crate::compose::ComposeError),
    /// `cp`.
    #[error(transparent)]
    Copy(#[from] crate::copy::CopyError),
    /// Disk accounting and pruning.
    #[error(transparent)]
    Disk(#[from] crate::disk::DiskError),
    /// Confidential boxes and attestation.
    #[error(transparent)]
    Tee(#[from] crate::tee::TeeError),
    /// The image store.
    #[error(transparent)]
    Store(#[from] a3s_image::StoreError),
    /// Pull and push.
    #[error(transparent)]
    Transfer(#[from] a3s_image::pull::TransferError),
    /// A signature check that is not a verdict (e.g. the registry failed).
    #[error(transparent)]
    Verify(#[from] a3s_image::cosign::VerifyError),
    /// A registry request.
    #[error(transparent)]
    Registry(#[from] a3s_image::registry::RegistryError),
    /// `diff`, `export`, `commit` and snapshots.
    #[error(transparent)]
    Layers(crate::layers::LayersError),
    /// Pod sandbox records.
    #[error(transparent)]
    Pod(#[from] crate::pods::PodError),
    /// Pod networking through CNI.
    #[error(transparent)]
    Cni(#[from] crate::network::cni::CniError),
    /// A pod that cannot run here (the message says why; nothing was started).
    #[error("{0}")]
    PodUnsupported(String),
    /// The audit event could not be written, so the operation is not reported done.
    #[error("writing the audit event")]
    Audit(#[source] AuditError),
    /// The signature gate refused the image a box was created from (the box is removed).
    #[error("image {image} ({digest}) may not run")]
    ImageRefused {
        /// The image reference.
        image: String,
        /// The digest the box would have launched.
        digest: String,
        /// Why.
        #[source]
        source: Box<a3s_image::cosign::VerifyError>,
    },
    /// A foreground box failed to boot or run.
    #[error("box {name} failed: {message}")]
    BoxFailed {
        /// The box.
        name: String,
        /// Why.
        message: String,
    },
    /// A bad `ps --filter`.
    #[error(transparent)]
    Filter(crate::boxes::filter::FilterError),
    /// `exec -d` of a process that could not start.
    #[error("{message}")]
    ExecFailed {
        /// Docker's code: 126 (cannot run) or 127 (not found).
        code: i32,
        /// Why.
        message: String,
    },
    /// The events file, or a bad `events --filter`.
    #[error(transparent)]
    Events(#[from] crate::boxes::events::EventsError),
    /// `cp` from a host path that does not exist.
    #[error("{}: no such file or directory", .0.display())]
    NoHostPath(PathBuf),
    /// `attest BOX` of a box that is not confidential.
    #[error("box {0} is not a TEE box (run it with --tee-simulate or --tee-enable)")]
    NotTee(String),
    /// `attest --connect` without a policy.
    #[error("--connect without a box needs --policy FILE (what the endpoint must prove)")]
    AttestNeedsPolicy,
    /// A step failed; `what` names it.
    #[error("{what}")]
    Context {
        /// The step.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// Other i/o.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl EngineError {
    /// The error to look at for hints and exit codes: the store's own error for the variants
    /// that carry one unchanged, else this error.
    pub fn cause(&self) -> &(dyn StdError + 'static) {
        match self {
            Self::Box(e) => e,
            Self::State(e) => e,
            Self::Volume(e) => e,
            Self::Net(e) => e,
            Self::Compose(e) => e,
            Self::Copy(e) => e,
            Self::Disk(e) => e,
            Self::Tee(e) => e,
            Self::Store(e) => e,
            Self::Transfer(e) => e,
            Self::Verify(e) => e,
            Self::Registry(e) => e,
            Self::Pod(e) => e,
            Self::Cni(e) => e,
            Self::Layers(e) => e,
            Self::Io(e) => e,
            other => other,
        }
    }

    fn context(what: impl Into<String>, source: impl StdError + Send + Sync + 'static) -> Self {
        Self::Context {
            what: what.into(),
            source: Box::new(source),
        }
    }
}
