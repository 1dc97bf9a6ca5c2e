//! Appending events: lock, find the chain's tip, write one line, fsync, update the head.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::event::{Entry, Event, LINE_VERSION};
use super::files::{self, CURRENT, GENESIS, HEAD, LOCK};

/// Default size at which `audit.jsonl` is rotated.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Environment variable overriding the rotation size (bytes), for operators and tests.
pub const MAX_FILE_BYTES_ENV: &str = "A3S_AUDIT_MAX_FILE_BYTES";

/// The audit log of one A3S home.
#[derive(Clone, Debug)]
pub struct AuditLog {
    dir: PathBuf,
    max_file_bytes: u64,
}

/// Where a recorded event landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash (the next line's `prev`).
    pub hash: String,
}

/// Writing to or reading the audit log failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file operation failed (the message names the path).
    #[error("audit log I/O")]
    Io(#[from] std::io::Error),
    /// Taking the writers' lock failed.
    #[error("locking the audit log {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The newest line cannot be read, so the chain cannot be extended safely.
    #[error(
        "the newest audit line in {path} is not a valid audit entry; run `a3s-box audit verify`"
    )]
    CorruptTip {
        /// The file holding it.
        path: PathBuf,
    },
    /// The log holds fewer entries than `head.json` or the last checkpoint says were
    /// committed: it was cut or deleted. Nothing is written, so the evidence stays as found.
    #[error(
        "the audit log ends at seq {found} but seq {committed} was committed ({source_of_truth}): \
         lines were removed; refusing to write so nothing more is lost"
    )]
    Truncated {
        /// Newest sequence number found in the files.
        found: u64,
        /// Newest sequence number known to have been committed.
        committed: u64,
        /// Which record says so.
        source_of_truth: &'static str,
    },
    /// `head.json` is missing or unreadable while the log holds more than one entry.
    #[error("{path} is missing or unreadable while the log holds {entries} entries")]
    HeadMissing {
        /// The head file.
        path: PathBuf,
        /// Entries found.
        entries: u64,
    },
    /// An entry could not be serialised.
    #[error("serialising an audit entry")]
    Serialize(#[from] serde_json::Error),
}

impl AuditError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Truncated { .. } | Self::HeadMissing { .. } => Some(
                "run `a3s-box audit verify` (with --checkpoint FILE if you kept one) and keep a \
                 copy of the audit directory for investigation; to start a new chain, move the \
                 audit directory aside"
                    .into(),
            ),
            Self::CorruptTip { .. } => Some(
                "the audit log was modified outside A3S Box; keep a copy for investigation, \
                 then move the audit directory aside to start a new chain"
                    .into(),
            ),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Head {
    pub(crate) seq: u64,
    pub(crate) hash: String,
}

impl AuditLog {
    /// The log kept in `dir` (usually `A3S_HOME/audit`), created on first write.
    ///
    /// The rotation size comes from `A3S_AUDIT_MAX_FILE_BYTES` when set to a positive integer.
    pub fn open(dir: impl Into<PathBuf>) -> Self {
        let max_file_bytes = std::env::var(MAX_FILE_BYTES_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_MAX_FILE_BYTES);
        Self {
            dir: dir.into(),
            max_file_bytes,
        }
    }

    /// Sets the rotation size.
    #[must_use]
    pub fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes.max(1);
        self
    }

    /// The directory holding the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `event` and returns once it is durable on disk.
    ///
    /// # Errors
    /// I/O and locking failures, and [`AuditError::CorruptTip`] when the newest line is not a
    /// valid entry (the chain is never extended from a tip it cannot read).
    pub fn record(&self, event: &Event) -> Result<Recorded, AuditError> {
        crate::home::private_dir(&self.dir).map_err(|e| {
            std::io::Error::new(e.kind(), format!("creating {}: {e}", self.dir.display()))
        })?;
        let _lock = self.lock()?;

        let current = self.dir.join(CURRENT);
        let mut file = fs_err::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o600)
            .open(&current)?;
        let (prev_seq, prev_hash) = self.tip(file.file_mut(), &current)?;

        let entry = Entry {
            v: LINE_VERSION,
            seq: prev_seq + 1,
            id: new_id(),
            time: now_rfc3339(),
            action: event.action.clone(),
            box_id: event.box_id.clone(),
            actor: actor(),
            outcome: event.outcome,
            message: event.message.clone(),
            metadata: event.metadata.clone(),
            prev: prev_hash,
            hash: String::new(),
        };
        let (mut line, hash) = files::seal_line(&serde_json::to_vec(&entry)?);
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_data()?;
        let size = file.file().metadata()?.len();
        drop(file);

        self.write_head(&Head {
            seq: entry.seq,
            hash: hash.clone(),
        })?;
        if size >= self.max_file_bytes {
            self.rotate(&current)?;
        }
        Ok(Recorded {
            seq: entry.seq,
            hash,
        })
    }

    /// The newest (seq, hash), repairing an unfinished final write first — but only after
    /// checking that the complete lines still reach what `head.json` and the last checkpoint
    /// say was committed, so a cut through a committed line is refused, never "repaired".
    fn tip(&self, file: &mut std::fs::File, path: &Path) -> Result<(u64, String), AuditError> {
        let len = file.metadata()?.len();
        let (last, complete_len) = files::last_line(file)?;
        let last = match last {
            Some(line) => Some(line),
            None => self.last_rotated_line()?,
        };
        let (seq, hash) = match last {
            Some(line) => parse_tip(&line, path)?,
            None => (0, GENESIS.to_owned()),
        };
        self.check_committed(seq, &hash)?;
        if complete_len < len {
            // Bytes after the last newline are a write that never completed (it was never
            // acknowledged, since acknowledgement follows fsync of a whole line, and the head
            // above does not go beyond the complete lines).
            tracing::warn!(path = %path.display(), "dropping an unfinished audit line");
            file.set_len(complete_len)?;
            file.sync_data()?;
        }
        Ok((seq, hash))
    }

    /// Refuses a tip behind what was committed. The head is written after each line, so it is
    /// at most one line behind the files, never ahead; only a first line may exist without it.
    fn check_committed(&self, seq: u64, hash: &str) -> Result<(), AuditError> {
        let head_path = self.dir.join(HEAD);
        match self.read_head()? {
            Some(head) if head.seq > seq => {
                return Err(AuditError::Truncated {
                    found: seq,
                    committed: head.seq,
                    source_of_truth: "head.json",
                })
            }
            Some(head) if head.seq == seq && head.hash != hash => {
                return Err(AuditError::CorruptTip { path: head_path })
            }
            Some(_) => {}
            None if seq > 1 => {
                return Err(AuditError::HeadMissing {
                    path: head_path,
                    entries: seq,
                })
            }
            None => {}
        }
        if let Some(size) = super::checkpoint::committed_size(&self.dir)? {
            if size > seq {
                return Err(AuditError::Truncated {
                    found: seq,
                    committed: size,
                    source_of_truth: "the last checkpoint",
                });
            }
        }
        Ok(())
    }

    /// The last line of the newest rotated file (the tip right after a rotation).
    fn last_rotated_line(&self) -> Result<Option<Vec<u8>>, AuditError> {
        let files = files::log_files(&self.dir)?;
        let Some(newest_rotated) = files.iter().rev().find(|p| !p.ends_with(CURRENT)) else {
            return Ok(None);
        };
        let mut f = fs_err::File::open(newest_rotated)?;
        Ok(files::last_line(f.file_mut())?.0)
    }

    fn rotate(&self, current: &Path) -> Result<(), AuditError> {
        let Some(first) = files::first_line(current)? else {
            return Ok(());
        };
        let seq = serde_json::from_slice::<Entry>(&first)
            .map_err(|_| AuditError::CorruptTip {
                path: current.to_owned(),
            })?
            .seq;
        fs_err::rename(current, self.dir.join(files::rotated_name(seq)))?;
        sync_dir(&self.dir)?;
        Ok(())
    }

    fn write_head(&self, head: &Head) -> Result<(), AuditError> {
        let tmp = self.dir.join(format!("{HEAD}.tmp"));
        let mut f = fs_err::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(head)?)?;
        f.sync_data()?;
        drop(f);
        fs_err::rename(&tmp, self.dir.join(HEAD))?;
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// The head record; `None` when missing or not a head (a head is under 200 bytes, so
    /// only the first 4 KiB are read).
    pub(crate) fn read_head(&self) -> Result<Option<Head>, AuditError> {
        let file = match fs_err::File::open(self.dir.join(HEAD)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut bytes = Vec::new();
        file.take(4096).read_to_end(&mut bytes)?;
        Ok(serde_json::from_slice(&bytes).ok())
    }

    pub(crate) fn lock(&self) -> Result<std::fs::File, AuditError> {
        let path = self.dir.join(LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| AuditError::Lock {
                path: path.clone(),
                source,
            })?;
        rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive).map_err(
            |e| AuditError::Lock {
                path,
                source: e.into(),
            },
        )?;
        Ok(file) // unlocked when closed
    }
}

/// The (seq, hash) of a stored line, checking that its hash is its own.
fn parse_tip(line: &[u8], path: &Path) -> Result<(u64, String), AuditError> {
    let corrupt = || AuditError::CorruptTip {
        path: path.to_owned(),
    };
    let entry: Entry = serde_json::from_slice(line).map_err(|_| corrupt())?;
    let (content, stated) = files::split_hash(line).ok_or_else(corrupt)?;
    if files::content_hash(&content) != stated {
        return Err(corrupt());
    }
    Ok((entry.seq, stated.to_owned()))
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs_err::File::open(dir)?.sync_all()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

fn actor() -> String {
    let uid = rustix::process::getuid().as_raw();
    format!("uid={uid} pid={}", std::process::id())
}
