//! A box's writable layer seen from the host: what changed (`diff`), the whole merged
//! filesystem (`export`) and copies of the layer disk (`snapshot`). The engine gets the
//! layer as an OCI changeset tar ([`a3s_vmm::layer`], the same stream `build` commits) and
//! the image's root filesystem as the store unpacked it; everything here works on those two.

mod changes;
mod export;
mod snapshots;

pub use changes::{changes, Change, ChangeKind};
pub use export::export;
pub use snapshots::{clone_file, Snapshot, Snapshots};

/// A layer operation cannot be done on this box.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayersError {
    /// The layer is ciphertext to the host (a confidential box).
    #[error("box {name} is a confidential box: its writable layer is encrypted in the guest under a key the host does not have, so the host cannot {what} it")]
    Encrypted {
        /// The box.
        name: String,
        /// The operation (`diff`, `export`, `commit`).
        what: &'static str,
    },
    /// The operation needs a stopped box.
    #[error("box {name} is {state}: {what} needs a stopped box")]
    NotStopped {
        /// The box.
        name: String,
        /// Its state.
        state: &'static str,
        /// The operation.
        what: &'static str,
    },
    /// The box is between states (booting or restarting).
    #[error("box {name} is {state}: try again once it runs or has stopped")]
    Busy {
        /// The box.
        name: String,
        /// Its state.
        state: &'static str,
    },
    /// No snapshot of that name.
    #[error("box {name} has no snapshot {snapshot:?}")]
    NoSnapshot {
        /// The box.
        name: String,
        /// The snapshot asked for.
        snapshot: String,
    },
    /// A snapshot of that name exists.
    #[error("box {name} already has a snapshot {snapshot:?}")]
    SnapshotExists {
        /// The box.
        name: String,
        /// The snapshot.
        snapshot: String,
    },
    /// A name that cannot be a snapshot name.
    #[error("invalid snapshot name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64 characters")]
    BadName(String),
    /// i/o (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl LayersError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotStopped { name, .. } => Some(format!("stop it first: `a3s-box stop {name}`")),
            Self::NoSnapshot { name, .. } => {
                Some(format!("`a3s-box snapshot ls {name}` lists its snapshots"))
            }
            Self::SnapshotExists { name, snapshot } => Some(format!(
                "choose another name, or remove it first: `a3s-box snapshot rm {name} {snapshot}`"
            )),
            Self::Encrypted { .. } => Some(
                "read files from inside the box instead (`a3s-box exec`); snapshots of its (encrypted) layer still work"
                    .into(),
            ),
            _ => None,
        }
    }
}
