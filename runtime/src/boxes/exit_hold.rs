//! Who may remove a `--rm` box, and when.
//!
//! Docker's semantics: the box outlives the CLI that started it (even one killed with -9),
//! and a `--rm` box is removed when its workload exits, whoever started it. The box's
//! monitor is the one process that sees every exit, so it removes the box. But a foreground
//! `run --rm` (or an `attach`) must read the exit code and the last output before the box
//! directory goes: such a client holds a shared lock on [`EXIT_HOLD`], and the monitor takes
//! it exclusively before removing. The kernel drops a dead client's lock, so a killed CLI
//! never keeps a box around.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

/// The lock file in a box directory.
pub const EXIT_HOLD: &str = "exit-hold.lock";

/// A client's claim to read a box's exit before a `--rm` removal (released when dropped).
#[derive(Debug)]
pub struct ExitHold {
    _file: File,
}

/// Why a hold could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HoldError {
    /// The monitor is removing the box already.
    #[error("the box is being removed")]
    Removing,
    /// The lock file could not be opened or locked.
    #[error("holding {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Takes a shared hold on the box in `dir` (which must exist: a removed box is not
/// re-created by this).
///
/// # Errors
/// [`HoldError`].
pub fn hold(dir: &Path) -> Result<ExitHold, HoldError> {
    let path = dir.join(EXIT_HOLD);
    let io = |source| HoldError::Io {
        path: path.display().to_string(),
        source,
    };
    let f = open(&path).map_err(io)?;
    match flock(f.as_fd(), FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(ExitHold { _file: f }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(HoldError::Removing),
        Err(e) => Err(io(e.into())),
    }
}

/// The monitor's side: opened when the monitor starts (while the directory surely exists),
/// waited on before a `--rm` removal.
#[derive(Debug)]
pub struct RemovalGate(Option<File>);

impl RemovalGate {
    /// Opens the gate file in `dir`; without it (i/o error) removal does not wait.
    pub fn open(dir: &Path) -> Self {
        Self(open(&dir.join(EXIT_HOLD)).ok())
    }

    /// Blocks until no client holds the box, then keeps it exclusively (new holds fail
    /// with [`HoldError::Removing`]) until dropped.
    pub fn wait_for_clients(&self) {
        if let Some(f) = &self.0 {
            let _ = flock(f.as_fd(), FlockOperation::LockExclusive);
        }
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn removal_waits_for_every_holder_and_refuses_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let gate = RemovalGate::open(dir.path());
        let a = hold(dir.path()).unwrap();
        let b = hold(dir.path()).unwrap();
        let (tx, rx) = mpsc::channel();
        let t = std::thread::spawn(move || {
            gate.wait_for_clients();
            tx.send(()).unwrap();
            gate
        });
        drop(a);
        // One holder left: the removal still waits (it is woken only by the last release).
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        drop(b);
        rx.recv().unwrap();
        let _gate = t.join().unwrap();
        assert!(matches!(hold(dir.path()), Err(HoldError::Removing)));
    }

    #[test]
    fn a_removed_box_is_not_recreated_by_a_hold() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        assert!(matches!(hold(&gone), Err(HoldError::Io { .. })));
        assert!(!gone.exists());
    }

    #[test]
    fn a_gate_without_a_directory_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        RemovalGate::open(&dir.path().join("gone")).wait_for_clients();
    }
}
