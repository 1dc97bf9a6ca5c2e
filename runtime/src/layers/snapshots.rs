//! Snapshots of a box's writable layer disk: whole copies of `rw.img`, kept beside it in
//! `boxes/<id>/snapshots/<name>.img` with `<name>.json` (when it was taken). A copy is a
//! reflink where the filesystem has them (instant, shares blocks) and otherwise a sparse
//! copy of the allocated ranges only, so a 10 GiB layer holding 30 MiB copies 30 MiB.
//!
//! The caller makes sure the box is stopped: a running guest's disk is not consistent.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LayersError;

const DIR: &str = "snapshots";
const MAX_NAME: usize = 64;

/// One snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Its name.
    pub name: String,
    /// When it was taken (RFC 3339).
    pub created: String,
    /// Bytes the copy occupies on disk (shared reflinked blocks count in full).
    #[serde(default)]
    pub size_bytes: u64,
}

/// The snapshots of one box.
#[derive(Clone, Debug)]
pub struct Snapshots {
    dir: PathBuf,
    box_name: String,
}

impl Snapshots {
    /// The snapshots kept in box directory `box_dir` of box `box_name` (for messages).
    pub fn new(box_dir: &Path, box_name: &str) -> Self {
        Self {
            dir: box_dir.join(DIR),
            box_name: box_name.to_owned(),
        }
    }

    /// Copies `layer` as snapshot `name`, stamped `created`.
    ///
    /// # Errors
    /// A bad or taken name, i/o.
    pub fn create(&self, layer: &Path, name: &str, created: &str) -> Result<Snapshot, LayersError> {
        check_name(name)?;
        fs::create_dir_all(&self.dir).map_err(|e| named(&self.dir, e))?;
        let img = self.image(name);
        if img.exists() {
            return Err(LayersError::SnapshotExists {
                name: self.box_name.clone(),
                snapshot: name.to_owned(),
            });
        }
        clone_file(layer, &img)?;
        let snap = Snapshot {
            name: name.to_owned(),
            created: created.to_owned(),
            size_bytes: 0,
        };
        let json = serde_json::to_vec_pretty(&snap).map_err(io::Error::other)?;
        let meta = self.meta(name);
        if let Err(e) = write_new(&meta, &json) {
            let _ = fs::remove_file(&img);
            return Err(e.into());
        }
        Ok(Snapshot {
            size_bytes: allocated(&img),
            ..snap
        })
    }

    /// Every snapshot, oldest first.
    ///
    /// # Errors
    /// i/o; a damaged description.
    pub fn list(&self) -> Result<Vec<Snapshot>, LayersError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(named(&self.dir, e).into()),
        };
        let mut out = Vec::new();
        for e in entries {
            let p = e.map_err(|e| named(&self.dir, e))?.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let text = read_small(&p)?;
            let mut s: Snapshot = serde_json::from_slice(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: {e} (remove the file to drop the snapshot)",
                        p.display()
                    ),
                )
            })?;
            if check_name(&s.name).is_err() || !self.image(&s.name).is_file() {
                continue; // a half-removed snapshot
            }
            s.size_bytes = allocated(&self.image(&s.name));
            out.push(s);
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Replaces `layer` with a copy of snapshot `name` (one rename: the old layer stays
    /// whole if anything fails).
    ///
    /// # Errors
    /// No such snapshot, i/o.
    pub fn restore(&self, name: &str, layer: &Path) -> Result<(), LayersError> {
        let img = self.existing(name)?;
        let dir = layer.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".restore-{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        clone_file(&img, &tmp)?;
        fs::rename(&tmp, layer).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            named(layer, e)
        })?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| named(dir, e))?;
        Ok(())
    }

    /// Removes snapshot `name`.
    ///
    /// # Errors
    /// No such snapshot, i/o.
    pub fn remove(&self, name: &str) -> Result<(), LayersError> {
        let img = self.existing(name)?;
        // The description first: a crash in between leaves an image `list` does not show.
        let meta = self.meta(name);
        fs::remove_file(&meta).map_err(|e| named(&meta, e))?;
        fs::remove_file(&img).map_err(|e| named(&img, e))?;
        Ok(())
    }

    fn existing(&self, name: &str) -> Result<PathBuf, LayersError> {
        check_name(name)?;
        let img = self.image(name);
        if img.is_file() && self.meta(name).is_file() {
            Ok(img)
        } else {
            Err(LayersError::NoSnapshot {
                name: self.box_name.clone(),
                snapshot: name.to_owned(),
            })
        }
    }

    fn image(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.img"))
    }

    fn meta(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }
}

fn check_name(name: &str) -> Result<(), LayersError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= MAX_NAME;
    if ok {
        Ok(())
    } else {
        Err(LayersError::BadName(name.to_owned()))
    }
}

/// Copies `src` to a new file `dst` (mode 0600: a layer holds the box's files): a reflink
/// when the filesystem can, else the data ranges only (holes stay holes). `dst` is removed
/// again if the copy fails.
///
/// # Errors
/// i/o, naming the path; `dst` exists.
pub fn clone_file(src: &Path, dst: &Path) -> io::Result<()> {
    let from = File::open(src).map_err(|e| named(src, e))?;
    let to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(|e| named(dst, e))?;
    let result = (|| {
        if rustix::fs::ioctl_ficlone(&to, &from).is_err() {
            sparse_copy(&from, &to)?;
        }
        to.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(dst);
        return Err(named(dst, e));
    }
    Ok(())
}

fn sparse_copy(from: &File, to: &File) -> io::Result<()> {
    use rustix::fs::SeekFrom as R;
    let len = from.metadata()?.len();
    to.set_len(len)?;
    let mut at = 0u64;
    while at < len {
        let start = match rustix::fs::seek(from, R::Data(at)) {
            Ok(s) => s,
            Err(e) if e == rustix::io::Errno::NXIO => break, // only a hole is left
            Err(e) => return Err(e.into()),
        };
        let end = rustix::fs::seek(from, R::Hole(start))?;
        let (mut off_in, mut off_out) = (start, start);
        while off_in < end {
            let chunk = usize::try_from(end - off_in)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            let n = rustix::fs::copy_file_range(
                from,
                Some(&mut off_in),
                to,
                Some(&mut off_out),
                chunk,
            )?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the source shrank while being copied",
                ));
            }
        }
        at = end;
    }
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| named(path, e))?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    File::open(path)
        .map_err(|e| named(path, e))?
        .take(64 << 10)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

fn allocated(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::{Seek, SeekFrom, Write};

    use super::*;

    #[test]
    fn a_sparse_layer_copies_sparse_and_restores_whole() {
        let d = tempfile::tempdir().unwrap();
        let layer = d.path().join("rw.img");
        {
            let mut f = File::create(&layer).unwrap();
            f.set_len(256 << 20).unwrap();
            f.write_all(b"head").unwrap();
            f.seek(SeekFrom::Start(100 << 20)).unwrap();
            f.write_all(b"middle").unwrap();
        }
        let snaps = Snapshots::new(d.path(), "b1");
        let s = snaps.create(&layer, "one", "2026-01-01T00:00:00Z").unwrap();
        assert!(
            s.size_bytes < 8 << 20,
            "copied holes: {} bytes",
            s.size_bytes
        );
        let img = d.path().join("snapshots/one.img");
        assert_eq!(fs::metadata(&img).unwrap().len(), 256 << 20);
        assert_eq!(fs::metadata(&img).unwrap().mode() & 0o777, 0o600);

        // Change the layer, restore, the old bytes are back.
        {
            let mut f = OpenOptions::new().write(true).open(&layer).unwrap();
            f.write_all(b"HEAD").unwrap();
        }
        snaps.restore("one", &layer).unwrap();
        let bytes = fs::read(&layer).unwrap();
        assert_eq!(&bytes[..4], b"head");
        assert_eq!(&bytes[100 << 20..(100 << 20) + 6], b"middle");
        assert_eq!(bytes.len(), 256 << 20);

        let names: Vec<_> = snaps.list().unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["one"]);
        assert!(matches!(
            snaps.create(&layer, "one", "x"),
            Err(LayersError::SnapshotExists { .. })
        ));
        snaps.remove("one").unwrap();
        assert!(snaps.list().unwrap().is_empty());
        assert!(matches!(
            snaps.restore("one", &layer),
            Err(LayersError::NoSnapshot { .. })
        ));
    }

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let snaps = Snapshots::new(d.path(), "b1");
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(65)] {
            assert!(
                matches!(
                    snaps.create(Path::new("/dev/null"), bad, "t"),
                    Err(LayersError::BadName(_))
                ),
                "{bad:?}"
            );
        }
    }
}
