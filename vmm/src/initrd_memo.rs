//! Which base initrd unchanged inputs gave last time, so a start finds the initrd it already
//! built without running `ldd` or reading and hashing guest-init (≈ 8 MB) and the tools again
//! (measured: a confidential start prepares in 20 ms instead of 44, a plain one in 17 instead of 33).
//!
//! ```text
//! cache/initrd/memo-<inputs>.json   {format, key, files: [{path, id}]}
//! ```
//!
//! `<inputs>` hashes what is not a file (kernel release, module list, the paths of guest-init
//! and the tools, `LD_LIBRARY_PATH`); `files` are every file the key was computed from (guest-init,
//! each tool and the libraries `ldd` named, `/etc/ld.so.cache`, which decides those names),
//! with the stamps ([`FileId`]) they had *before* they were read. A memo answers only while
//! every one of them still has those stamps; it is written only when all of them had settled
//! (see [`FileId::settled`]), so a file rewritten within a clock tick is read again next time.
//! A memo is a hint in the home's private cache: the initrd it names is the file that boots
//! (and that a confidential box measures), so a wrong memo can at worst boot an initrd the
//! same user could have put in that cache directly.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::file_id::FileId;

/// Bumped when the memo's meaning changes.
const FORMAT: &str = "a3s-initrd-memo-v1";
/// A memo is a few KiB; a larger file is not one.
const MEMO_LIMIT: u64 = 64 << 10;
/// How long a file must have been unchanged for its stamps to stand for its content.
pub(crate) const RACY: Duration = Duration::from_secs(2);
/// The loader's cache: which library files `ldd` names depends on it.
pub(crate) const LD_CACHE: &str = "/etc/ld.so.cache";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Memo {
    format: String,
    key: String,
    files: Vec<Stamped>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stamped {
    path: PathBuf,
    id: FileId,
}

/// The memo for one set of non-file inputs.
#[derive(Debug)]
pub(crate) struct InitrdMemo {
    path: PathBuf,
}

/// Files read for a key, each with the stamps it had before it was read.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    files: Vec<Stamped>,
    started: Option<SystemTime>,
    /// A file could not be stat'ed: the set is never recorded.
    unstamped: bool,
}

impl Reads {
    /// Notes `path`'s stamps; call before reading it. A file that cannot be stat'ed makes
    /// the set unrecordable (it is read and fails, or changes, anyway).
    pub(crate) fn note(&mut self, path: &Path) {
        self.started.get_or_insert_with(SystemTime::now);
        match FileId::of(path) {
            Ok(id) => self.files.push(Stamped {
                path: path.to_owned(),
                id,
            }),
            Err(_) => self.unstamped = true,
        }
    }
}

impl InitrdMemo {
    /// The memo under `cache` (`A3S_HOME/cache`) for the non-file inputs `inputs`.
    pub(crate) fn new(cache: &Path, inputs: &[&[u8]]) -> Self {
        let name = crate::assets::short_hash(inputs);
        Self {
            path: cache.join("initrd").join(format!("memo-{name}.json")),
        }
    }

    /// The key recorded for these inputs, if every file it was computed from is unchanged.
    pub(crate) fn lookup(&self) -> Option<String> {
        let file = std::fs::File::open(&self.path).ok()?;
        let mut text = Vec::new();
        file.take(MEMO_LIMIT + 1).read_to_end(&mut text).ok()?;
        if text.len() as u64 > MEMO_LIMIT {
            return None;
        }
        let memo: Memo = serde_json::from_slice(&text).ok()?;
        let valid_key = memo.key.len() == 16 && memo.key.bytes().all(|b| b.is_ascii_hexdigit());
        if memo.format != FORMAT || !valid_key || memo.files.is_empty() {
            return None;
        }
        memo.files
            .iter()
            .all(|f| FileId::of(&f.path).is_ok_and(|id| id == f.id))
            .then_some(memo.key)
    }

    /// Records `key` as what `reads` gave, unless a file had not settled (`racy`) when it was
    /// read. A memo that cannot be written costs the next start the full work, nothing else.
    pub(crate) fn record(&self, key: &str, reads: Reads, racy: Duration) {
        let Some(started) = reads.started else {
            return;
        };
        if reads.unstamped || reads.files.iter().any(|f| !f.id.settled(started, racy)) {
            return;
        }
        let memo = Memo {
            format: FORMAT.into(),
            key: key.into(),
            files: reads.files,
        };
        if let Ok(bytes) = serde_json::to_vec(&memo) {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = crate::assets::write_atomic(&self.path, &bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled_reads(files: &[&Path]) -> Reads {
        let mut r = Reads::default();
        for f in files {
            r.note(f);
        }
        r
    }

    #[test]
    fn a_memo_answers_only_while_its_files_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"guest-init").unwrap();
        std::fs::write(&b, b"tool").unwrap();
        let memo = InitrdMemo::new(dir.path(), &[b"6.12", b"virtio_blk"]);
        assert_eq!(memo.lookup(), None);
        memo.record("0123456789abcdef", settled_reads(&[&a, &b]), Duration::ZERO);
        assert_eq!(memo.lookup().as_deref(), Some("0123456789abcdef"));
        // Other non-file inputs: another memo.
        assert_eq!(
            InitrdMemo::new(dir.path(), &[b"6.12", b"virtio_net"]).lookup(),
            None
        );
        std::fs::write(&b, b"tool, rebuilt").unwrap();
        assert_eq!(memo.lookup(), None, "a changed file voids the memo");
        memo.record("fedcba9876543210", settled_reads(&[&a, &b]), Duration::ZERO);
        std::fs::remove_file(&a).unwrap();
        assert_eq!(memo.lookup(), None, "a removed file voids the memo");
    }

    #[test]
    fn files_that_have_not_settled_are_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"just written").unwrap();
        let memo = InitrdMemo::new(dir.path(), &[b"x"]);
        memo.record("0123456789abcdef", settled_reads(&[&a]), RACY);
        assert_eq!(memo.lookup(), None);
        let mut missing = settled_reads(&[&a]);
        missing.note(&dir.path().join("absent"));
        memo.record("0123456789abcdef", missing, Duration::ZERO);
        assert_eq!(memo.lookup(), None, "an unreadable input is never recorded");
    }

    #[test]
    fn damaged_or_foreign_memos_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        let memo = InitrdMemo::new(dir.path(), &[b"x"]);
        memo.record("0123456789abcdef", settled_reads(&[&a]), Duration::ZERO);
        let text = std::fs::read_to_string(&memo.path).unwrap();
        for bad in [
            text.replace("0123456789abcdef", "../../etc/passwd"),
            text.replace(FORMAT, "a3s-initrd-memo-v0"),
            text[..text.len() / 2].to_owned(),
            format!("{}{}", text, " ".repeat(64 << 10)),
        ] {
            std::fs::write(&memo.path, bad).unwrap();
            assert_eq!(memo.lookup(), None);
        }
    }
}
