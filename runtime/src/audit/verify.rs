//! Checking the whole chain: every line parses, hashes to its stated hash, carries the previous
//! line's hash and the next sequence number, and the newest line matches the head record.

use std::path::{Path, PathBuf};

use super::event::Entry;
use super::files::{self, GENESIS};
use super::log::{AuditError, AuditLog};

/// An intact chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChainSummary {
    /// Number of entries checked.
    pub entries: u64,
    /// Number of files read (rotated plus current).
    pub files: usize,
    /// Sequence number of the newest entry (0 for an empty log).
    pub last_seq: u64,
    /// Hash of the newest entry.
    pub last_hash: String,
}

/// The first place where the chain is broken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// Reading the log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A line is not a valid audit entry.
    #[error("{}:{line}: not a valid audit entry (edited or corrupted)", path.display())]
    Malformed {
        /// File.
        path: PathBuf,
        /// 1-based line number in the file.
        line: usize,
    },
    /// A line's content does not hash to the hash it states.
    #[error("{}:{line} (seq {seq}): content does not match its hash: this line was edited", path.display())]
    Edited {
        /// File.
        path: PathBuf,
        /// Line number.
        line: usize,
        /// Its sequence number.
        seq: u64,
    },
    /// A line's sequence number is not the previous one plus one.
    #[error("{}:{line}: sequence number {found} where {expected} was expected: {}", path.display(),
        if found > expected { "a line before it was deleted or moved after it" } else { "lines were reordered or duplicated" })]
    Sequence {
        /// File.
        path: PathBuf,
        /// Line number.
        line: usize,
        /// Expected sequence number.
        expected: u64,
        /// Found sequence number.
        found: u64,
    },
    /// A line does not carry the previous line's hash.
    #[error("{}:{line} (seq {seq}): does not chain to the line before it: that line was edited, deleted or moved", path.display())]
    Unchained {
        /// File.
        path: PathBuf,
        /// Line number.
        line: usize,
        /// Its sequence number.
        seq: u64,
    },
    /// The log ends before the newest line recorded in the head.
    #[error("the log ends at seq {found} but seq {recorded} was written: lines were deleted from the end")]
    Truncated {
        /// Newest sequence number found.
        found: u64,
        /// Newest sequence number recorded.
        recorded: u64,
    },
    /// The line the head points to has another hash.
    #[error("seq {seq} does not match the hash recorded when it was written: it was replaced")]
    HeadMismatch {
        /// The sequence number.
        seq: u64,
    },
    /// A line is longer than any entry the writer makes.
    #[error("{}:{line}: longer than {limit} bytes: not an audit entry", path.display())]
    LineTooLong {
        /// File.
        path: PathBuf,
        /// Line number.
        line: usize,
        /// The limit in bytes.
        limit: u64,
    },
    /// The final line of a file is unfinished.
    #[error("{}:{line}: unfinished final line (an interrupted write, which the next audit write removes, unless the line was committed: then the log was cut)", path.display())]
    Unfinished {
        /// File.
        path: PathBuf,
        /// Line number.
        line: usize,
    },
}

impl AuditLog {
    /// Verifies the whole chain across all files.
    ///
    /// # Errors
    /// The first [`ChainError`] found, naming the file and line.
    pub fn verify(&self) -> Result<ChainSummary, ChainError> {
        let files = files::log_files(self.dir()).map_err(AuditError::from)?;
        let mut expected_seq = 1_u64;
        let mut prev = GENESIS.to_owned();
        let mut entries = 0_u64;
        // Hash of every line is needed only at the head's seq.
        let head = self.read_head()?;
        let mut hash_at_head: Option<String> = None;
        for path in &files {
            check_file(
                path,
                &mut expected_seq,
                &mut prev,
                &mut entries,
                |seq, hash| {
                    if head.as_ref().is_some_and(|h| h.seq == seq) {
                        hash_at_head = Some(hash.to_owned());
                    }
                },
            )?;
        }
        let last_seq = expected_seq - 1;
        if let Some(head) = head {
            if last_seq < head.seq {
                return Err(ChainError::Truncated {
                    found: last_seq,
                    recorded: head.seq,
                });
            }
            if hash_at_head.as_deref() != Some(head.hash.as_str()) {
                return Err(ChainError::HeadMismatch { seq: head.seq });
            }
        }
        Ok(ChainSummary {
            entries,
            files: files.len(),
            last_seq,
            last_hash: prev,
        })
    }
}

fn check_file(
    path: &Path,
    expected_seq: &mut u64,
    prev: &mut String,
    entries: &mut u64,
    mut on_line: impl FnMut(u64, &str),
) -> Result<(), ChainError> {
    files::for_each_line(path, |line_no, line| {
        let at = || path.to_owned();
        let entry: Entry = serde_json::from_slice(line).map_err(|_| ChainError::Malformed {
            path: at(),
            line: line_no,
        })?;
        let (content, stated) = files::split_hash(line).ok_or(ChainError::Malformed {
            path: at(),
            line: line_no,
        })?;
        if files::content_hash(&content) != stated || entry.hash != stated {
            return Err(ChainError::Edited {
                path: at(),
                line: line_no,
                seq: entry.seq,
            });
        }
        if entry.seq != *expected_seq {
            return Err(ChainError::Sequence {
                path: at(),
                line: line_no,
                expected: *expected_seq,
                found: entry.seq,
            });
        }
        if entry.prev != *prev {
            return Err(ChainError::Unchained {
                path: at(),
                line: line_no,
                seq: entry.seq,
            });
        }
        on_line(entry.seq, stated);
        *prev = stated.to_owned();
        *expected_seq += 1;
        *entries += 1;
        Ok(())
    })
}
