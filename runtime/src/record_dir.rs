//! A directory of JSON records, one file `<id>.json` per record, written atomically (temp
//! file, fsync, rename, directory fsync) and read with a size bound: the storage shared by the
//! pod store and the pod-container store, so both keep the same durability and limits.

use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a stored record tells the directory about itself.
pub trait Record: Serialize + DeserializeOwned {
    /// Its id (the file name without `.json`).
    fn id(&self) -> &str;
    /// When it was created (listing order).
    fn created_ns(&self) -> i64;
}

/// Largest record read: records hold labels and annotations that kubelet bounds well below.
pub const MAX_RECORD: u64 = 1 << 20;

/// Why a record directory operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// A file is not a record of this directory.
    #[error("record {}: {source}", path.display())]
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

/// One directory of records of type `T`.
#[derive(Debug)]
pub struct RecordDir<T> {
    dir: PathBuf,
    kind: PhantomData<fn() -> T>,
}

impl<T> Clone for RecordDir<T> {
    fn clone(&self) -> Self {
        Self {
            dir: self.dir.clone(),
            kind: PhantomData,
        }
    }
}

impl<T: Record> RecordDir<T> {
    /// The records in `dir` (created on the first save).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            kind: PhantomData,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `rec`, replacing the record of the same id; a crash leaves the old or the new
    /// record, never a torn one.
    ///
    /// # Errors
    /// i/o.
    pub fn save(&self, rec: &T) -> Result<(), RecordError> {
        fs_err::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{}.tmp", rec.id()));
        let bytes = serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?;
        let mut f = fs_err::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs_err::rename(&tmp, self.path_of(rec.id()))?;
        fs_err::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    /// Every record, oldest first (temp files and other files are not records).
    ///
    /// # Errors
    /// i/o, a record larger than [`MAX_RECORD`], a corrupt record.
    pub fn list(&self) -> Result<Vec<T>, RecordError> {
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
        out.sort_by_key(Record::created_ns);
        Ok(out)
    }

    /// The records whose id starts with `prefix` (an empty or non-hex prefix matches none).
    ///
    /// # Errors
    /// As [`RecordDir::list`].
    pub fn matching(&self, prefix: &str) -> Result<Vec<T>, RecordError> {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| r.id().starts_with(prefix))
            .collect())
    }

    /// Deletes the record of `id` (absent already is fine).
    ///
    /// # Errors
    /// i/o.
    pub fn delete(&self, id: &str) -> Result<(), RecordError> {
        match fs_err::remove_file(self.path_of(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn read(path: &Path) -> Result<T, RecordError> {
        let text = crate::bounded::read(path, MAX_RECORD)?;
        serde_json::from_slice(&text).map_err(|source| RecordError::Corrupt {
            path: path.to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        id: String,
        created_ns: i64,
    }

    impl Record for Rec {
        fn id(&self) -> &str {
            &self.id
        }
        fn created_ns(&self) -> i64 {
            self.created_ns
        }
    }

    fn rec(id: &str, created_ns: i64) -> Rec {
        Rec {
            id: id.into(),
            created_ns,
        }
    }

    #[test]
    fn saves_lists_in_creation_order_matches_and_deletes() {
        let tmp = tempfile::tempdir().unwrap();
        let d = RecordDir::<Rec>::new(tmp.path().join("recs"));
        assert!(
            d.list().unwrap().is_empty(),
            "a missing directory lists nothing"
        );
        d.save(&rec("bb01", 2)).unwrap();
        d.save(&rec("aa01", 1)).unwrap();
        d.save(&rec("aa02", 3)).unwrap();
        fs_err::write(d.dir().join(".x.tmp"), b"torn").unwrap();
        fs_err::create_dir_all(d.dir().join("containers")).unwrap();
        let ids: Vec<_> = d.list().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["aa01", "bb01", "aa02"]);
        assert_eq!(d.matching("aa").unwrap().len(), 2);
        assert_eq!(d.matching("bb").unwrap(), [rec("bb01", 2)]);
        assert!(d.matching("").unwrap().is_empty());
        assert!(d.matching("../").unwrap().is_empty());
        d.delete("aa01").unwrap();
        d.delete("aa01").unwrap();
        assert_eq!(d.list().unwrap().len(), 2);
    }

    #[test]
    fn a_corrupt_or_oversized_record_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let d = RecordDir::<Rec>::new(tmp.path().to_owned());
        fs_err::write(tmp.path().join("bad.json"), b"{").unwrap();
        let e = d.list().unwrap_err().to_string();
        assert!(e.contains("bad.json"), "{e}");
        fs_err::remove_file(tmp.path().join("bad.json")).unwrap();
        let big = vec![b' '; usize::try_from(MAX_RECORD).unwrap() + 1];
        fs_err::write(tmp.path().join("big.json"), big).unwrap();
        let e = d.list().unwrap_err().to_string();
        assert!(e.contains("big.json"), "{e}");
    }
}
