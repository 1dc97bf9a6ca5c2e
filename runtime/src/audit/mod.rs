//! The host-side, tamper-evident audit log.
//!
//! One JSON object per line in `A3S_HOME/audit/audit.jsonl`, one line per security-relevant
//! action. Each line is hash-chained to the one before it, so editing, deleting or reordering any
//! line is detected by [`AuditLog::verify`]; a compromised guest cannot reach this file at all.
//!
//! # Line format (version 1)
//!
//! ```text
//! {"v":1,"seq":7,"id":"<uuid>","time":"2026-12-02T06:40:00.123Z","action":"box.start",
//!  "box":"3f2a…","actor":"uid=0 pid=4242","outcome":"success","message":"…","metadata":{…},
//!  "prev":"<sha256 hex of line 6's hash field>","hash":"<sha256 hex>"}
//! ```
//!
//! - `seq` starts at 1 and increases by exactly one per line, across rotated files.
//! - `hash` is SHA-256 over the line's bytes with the `,"hash":"…"` member removed (that is,
//!   everything before it followed by `}`); `prev` is the previous line's `hash`, or 64 zeros for
//!   the first line. Hashing the bytes as written (not a re-encoding) makes verification exact.
//! - `head.json` records the sequence number and hash of the newest line, written after the line
//!   is on disk, so deleting lines from the end is detected too. A crash between the two writes
//!   leaves the head one line behind, which verification accepts because the extra line chains.
//!
//! `head.json` cannot protect against someone who deletes it together with the lines, or the
//! whole directory; signed checkpoints ([`AuditLog::checkpoint`], see the `checkpoint` module
//! for what they do and do not protect against) stored off the host can. The writer never
//! removes a line `head.json` or the last checkpoint says was committed: it refuses to write.
//!
//! # Files, rotation, concurrency
//!
//! When `audit.jsonl` reaches the size limit it is renamed to `audit-<first seq, 20 digits>.jsonl`
//! and a new file starts; the chain continues across the boundary. Every write happens under an
//! exclusive `flock` on `audit/.lock`, and the line is `fsync`ed before [`AuditLog::record`]
//! returns, so several CLI processes never interleave lines or fork the chain, and an action is
//! reported done only once its event is durable.

mod checkpoint;
mod event;
mod files;
mod log;
mod query;
mod verify;

pub use checkpoint::{
    read_checkpoint, CheckpointError, CheckpointKey, CheckpointSummary, MAX_CHECKPOINT_BYTES,
    ORIGIN,
};
pub use event::{Entry, Event, Outcome, ParseOutcomeError};
pub use log::{AuditError, AuditLog, Recorded, DEFAULT_MAX_FILE_BYTES, MAX_FILE_BYTES_ENV};
pub use query::{Filter, TimeBound};
pub use verify::{ChainError, ChainSummary};

#[cfg(test)]
mod tests;
