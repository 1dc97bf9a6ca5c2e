//! What identifies one version of a file without reading it: replacing or writing it changes
//! its device and inode, size, `mtime` or `ctime` (a writer can set `mtime` back, not `ctime`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Identity and change stamps of a file.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone, Copy)]
pub struct FileId {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub len: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i128,
}

impl FileId {
    /// The stamps of the file at `path` (following symlinks).
    ///
    /// # Errors
    /// The file cannot be stat'ed.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        std::fs::metadata(path).map(|m| Self::of_metadata(&m))
    }

    /// The stamps in `m` (e.g. `fstat` of the descriptor about to be read).
    pub fn of_metadata(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }

    /// Whether the file last changed at least `racy` before `since`. `ctime` ticks at the
    /// kernel's coarse clock, so a file written again within a tick of being read can keep its
    /// stamps; only a settled file's stamps stand for its content (git's "racy clean" rule).
    pub fn settled(&self, since: SystemTime, racy: Duration) -> bool {
        let changed = SystemTime::UNIX_EPOCH
            + Duration::from_nanos(u64::try_from(self.ctime_ns.max(0)).unwrap_or(u64::MAX));
        changed + racy <= since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_changes_the_stamps_and_a_fresh_file_is_not_settled() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"one").unwrap();
        let first = FileId::of(&f).unwrap();
        assert!(!first.settled(SystemTime::now(), Duration::from_secs(2)));
        assert!(first.settled(
            SystemTime::now() + Duration::from_secs(3),
            Duration::from_secs(2)
        ));
        std::fs::write(&f, b"two!").unwrap();
        assert_ne!(FileId::of(&f).unwrap(), first);
    }
}
