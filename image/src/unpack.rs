//! Applying layer tar streams to a root filesystem directory.
//!
//! Pure with respect to the store: a tar stream goes in, files come out under `root`, and
//! nothing is ever written outside `root`. The checks, and why:
//!
//! - **Path traversal**: an entry name or hard-link target with a `..` component is rejected
//!   (layers produced by real tools never need one). Leading `/` and `./` are stripped.
//! - **Symlinks**: a symlink is created as given (inside the VM it resolves against the guest's
//!   `/`), but unpacking never follows one on the host. When a later entry's parent path runs
//!   through a symlink, the link is resolved *inside* `root` (absolute targets restart at `root`);
//!   a relative target that climbs above `root` is rejected as an escape.
//! - **Hard links** must name an existing non-directory inside `root`, resolved the same way.
//! - **Whiteouts** (`.wh.<name>`) delete `<name>` from lower layers; an opaque marker
//!   (`.wh..wh..opq`) empties its directory of everything not written by the same layer.
//! - **Metadata**: permission bits (including setuid/setgid/sticky), ownership (only when running
//!   as root), modification times, and `SCHILY.xattr.*` extended attributes where the file
//!   system allows. Directory modes are applied after the last layer so that read-only
//!   directories do not block later entries.
//! - Device nodes are created only as root and skipped (counted) otherwise. Unknown entry types
//!   are an error.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use fs_err as fs;
use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

/// Symlink resolutions allowed while resolving one path (Linux uses 40).
const MAX_SYMLINK_HOPS: u32 = 40;
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// The tar stream is malformed or could not be read (or decompressed).
    #[error("reading layer archive")]
    Read(#[source] io::Error),
    /// An entry name climbs out of the root.
    #[error("layer entry {path:?} contains '..' (path traversal); refusing the layer")]
    PathTraversal {
        /// The entry's name as stored.
        path: String,
    },
    /// A symlink on an entry's path points outside the root.
    #[error("layer entry {path:?} goes through symlink {link:?} -> {target:?}, which points outside the root filesystem; refusing the layer")]
    SymlinkEscape {
        /// The entry's name as stored.
        path: String,
        /// The symlink on its path, relative to the root.
        link: String,
        /// The symlink's target.
        target: String,
    },
    /// Too many symlinks on an entry's path.
    #[error("layer entry {path:?}: too many levels of symbolic links")]
    SymlinkLoop {
        /// The entry's name as stored.
        path: String,
    },
    /// A component of an entry's parent path exists and is not a directory.
    #[error("layer entry {path:?}: {component:?} on its path is not a directory")]
    NotADirectory {
        /// The entry's name as stored.
        path: String,
        /// The offending component, relative to the root.
        component: String,
    },
    /// A hard link names something that does not exist in the root or is a directory.
    #[error("layer entry {path:?} is a hard link to {target:?}, which is not an existing file in the layers so far")]
    BadHardLink {
        /// The entry's name as stored.
        path: String,
        /// The link target as stored.
        target: String,
    },
    /// The entry has a type we do not unpack.
    #[error("layer entry {path:?} has unsupported tar entry type {kind}")]
    UnsupportedEntry {
        /// The entry's name as stored.
        path: String,
        /// The tar type flag.
        kind: String,
    },
    /// A file system operation failed.
    #[error("writing {}", path.display())]
    Write {
        /// What was being written.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Counts of what a layer contained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries processed (whiteouts included).
    pub entries: u64,
    /// Bytes of regular-file data written.
    pub file_bytes: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Device nodes skipped because we are not root.
    pub skipped_devices: u64,
}

impl std::ops::AddAssign for UnpackStats {
    fn add_assign(&mut self, o: Self) {
        self.entries += o.entries;
        self.file_bytes += o.file_bytes;
        self.whiteouts += o.whiteouts;
        self.skipped_devices += o.skipped_devices;
    }
}

/// Wraps a layer blob in the right decompressor, sniffed from its first bytes
/// (gzip `1f 8b`, zstd `28 b5 2f fd`, anything else read as plain tar).
///
/// # Errors
/// Reading the first bytes failed or the zstd decoder could not start.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let head = buf.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buf)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(buf)?))
    } else {
        Ok(Box::new(buf))
    }
}

/// Mode and modification time of a directory no layer lists (and of the root, when no layer
/// has a `./` entry): 0755, as Docker and containerd create them, at the epoch.
const IMPLIED_DIR: (u32, u64) = (0o755, 0);

/// Applies layers, base first, to one root directory.
#[derive(Debug)]
pub struct Unpacker {
    root: PathBuf,
    as_root: bool,
    deferred_dirs: Vec<(PathBuf, u32, u64)>,
    /// Paths written by the layer being applied (whiteouts only hide lower layers).
    written: HashSet<PathBuf>,
}

impl Unpacker {
    /// An unpacker writing under `root` (which must exist). Ownership is applied only when the
    /// process runs as root.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            // The root and every directory no layer lists (created for an entry under it)
            // get `IMPLIED_DIR` unless a layer's entry says otherwise: not the umask and the
            // time of the unpack, so one image unpacks to the same tree, and so the same
            // erofs and dm-verity root hash, wherever and whenever it is unpacked.
            deferred_dirs: vec![(root.clone(), IMPLIED_DIR.0, IMPLIED_DIR.1)],
            root,
            as_root: rustix::process::geteuid().is_root(),
            written: HashSet::new(),
        }
    }

    /// Applies one uncompressed layer tar stream.
    ///
    /// # Errors
    /// See [`UnpackError`]; on error the root may hold part of the layer and should be discarded.
    pub fn apply<R: Read>(&mut self, tar: R) -> Result<UnpackStats, UnpackError> {
        let mut archive = tar::Archive::new(tar);
        let mut stats = UnpackStats::default();
        self.written.clear();
        for entry in archive.entries().map_err(UnpackError::Read)? {
            let mut entry = entry.map_err(UnpackError::Read)?;
            stats.entries += 1;
            self.apply_entry(&mut entry, &mut stats)?;
        }
        Ok(stats)
    }

    /// Applies the deferred directory modes and times. Call once after the last layer.
    ///
    /// # Errors
    /// A directory's metadata could not be set.
    pub fn finish(mut self) -> Result<(), UnpackError> {
        self.settle()
    }

    /// [`Unpacker::finish`] for a tree that may get more layers (a build's next step): the
    /// record of every directory is kept, so settling again after more layers leaves the
    /// tree as one unpack of all of them would. Run as root only: a settled read-only
    /// directory refuses the next layer's entries to anyone else.
    ///
    /// # Errors
    /// A directory's metadata could not be set.
    pub fn settle(&mut self) -> Result<(), UnpackError> {
        // Deepest first so that a read-only parent is changed last; stable, so of two records
        // of one directory the later layer's is applied last.
        self.deferred_dirs
            .sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (path, mode, mtime) in &self.deferred_dirs {
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => {}
                _ => continue, // replaced or removed by a later layer
            }
            set_mode(path, *mode)?;
            set_mtime(path, *mtime)?;
        }
        Ok(())
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        stats: &mut UnpackStats,
    ) -> Result<(), UnpackError> {
        let raw_path = entry.path().map_err(UnpackError::Read)?.into_owned();
        let shown = raw_path.display().to_string();
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            return Ok(());
        }
        let rel = normalize(&raw_path, &shown)?;
        let Some((name, parents)) = rel.split_last() else {
            // The root itself ("./"): only its metadata matters.
            if kind.is_dir() {
                let mode = entry.header().mode().map_err(UnpackError::Read)?;
                let mtime = entry.header().mtime().unwrap_or(0);
                self.deferred_dirs
                    .push((self.root.clone(), mode & 0o7777, mtime));
            }
            return Ok(());
        };
        let name_str = name.to_string_lossy();

        // Whiteouts.
        if name_str == OPAQUE_MARKER {
            stats.whiteouts += 1;
            let Some(dir) = self.resolve_dir(parents, &shown, false)? else {
                return Ok(());
            };
            for child in fs::read_dir(&dir).map_err(|e| write_err(&dir, e))? {
                let child = child.map_err(|e| write_err(&dir, e))?.path();
                if !self.written.contains(&child) {
                    remove_any(&child)?;
                }
            }
            return Ok(());
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            stats.whiteouts += 1;
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
                return Err(UnpackError::PathTraversal { path: shown });
            }
            let Some(dir) = self.resolve_dir(parents, &shown, false)? else {
                return Ok(());
            };
            let target = dir.join(hidden);
            if !self.written.contains(&target) {
                remove_any(&target)?;
            }
            return Ok(());
        }

        let dir = self
            .resolve_dir(parents, &shown, true)?
            .expect("resolve_dir with create=true always yields a directory");
        let path = dir.join(name);
        let header = entry.header();
        let mode = header.mode().map_err(UnpackError::Read)? & 0o7777;
        // Like Go's archive/tar, an empty numeric field reads as 0.
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);

        // Replace whatever is there, except a directory by a directory (merge).
        let existing = std::fs::symlink_metadata(&path).ok();
        if let Some(m) = &existing {
            if !(kind.is_dir() && m.is_dir()) {
                remove_any(&path)?;
            }
        }

        match kind {
            tar::EntryType::Directory => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    fs::create_dir(&path).map_err(|e| write_err(&path, e))?;
                }
                // Owner now; mode and time after the last layer.
                self.chown(&path, uid, gid)?;
                self.deferred_dirs.push((path.clone(), mode, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| write_err(&path, e))?;
                stats.file_bytes += io::copy(entry, &mut f).map_err(UnpackError::Read)?;
                drop(f);
                self.chown(&path, uid, gid)?;
                set_mode(&path, mode)?;
                set_mtime(&path, mtime)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| UnpackError::UnsupportedEntry {
                        path: shown.clone(),
                        kind: "symlink without target".into(),
                    })?;
                std::os::unix::fs::symlink(&target, &path).map_err(|e| write_err(&path, e))?;
                self.chown(&path, uid, gid)?;
                set_mtime(&path, mtime)?;
            }
            tar::EntryType::Link => {
                let target_raw = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| UnpackError::UnsupportedEntry {
                        path: shown.clone(),
                        kind: "hard link without target".into(),
                    })?
                    .into_owned();
                let target = self.resolve_hardlink(&target_raw, &shown)?;
                std::fs::hard_link(&target, &path).map_err(|e| write_err(&path, e))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                if !self.as_root && !matches!(kind, tar::EntryType::Fifo) {
                    stats.skipped_devices += 1;
                    tracing::debug!(path = %shown, "skipping device node (not root)");
                    return Ok(());
                }
                let file_type = match kind {
                    tar::EntryType::Char => rustix::fs::FileType::CharacterDevice,
                    tar::EntryType::Block => rustix::fs::FileType::BlockDevice,
                    _ => rustix::fs::FileType::Fifo,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                rustix::fs::mknodat(
                    CWD,
                    &path,
                    file_type,
                    rustix::fs::Mode::from_raw_mode(mode),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| write_err(&path, e.into()))?;
                self.chown(&path, uid, gid)?;
                set_mode(&path, mode)?;
                set_mtime(&path, mtime)?;
            }
            other => {
                return Err(UnpackError::UnsupportedEntry {
                    path: shown,
                    kind: format!("{other:?}"),
                });
            }
        }
        apply_xattrs(entry, &path);
        self.written.insert(path);
        Ok(())
    }

    /// Resolves the directory `parents` (relative to the root) without following any symlink
    /// outside the root. Missing directories are created when `create`, else `None` is
    /// returned.
    fn resolve_dir(
        &mut self,
        parents: &[OsString],
        shown: &str,
        create: bool,
    ) -> Result<Option<PathBuf>, UnpackError> {
        let mut cur: Vec<OsString> = Vec::new();
        let mut todo: VecDeque<OsString> = parents.iter().cloned().collect();
        let mut hops = 0u32;
        while let Some(c) = todo.pop_front() {
            let candidate = self.join(&cur).join(&c);
            match std::fs::symlink_metadata(&candidate) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    fs::create_dir(&candidate).map_err(|e| write_err(&candidate, e))?;
                    self.deferred_dirs
                        .push((candidate.clone(), IMPLIED_DIR.0, IMPLIED_DIR.1));
                    self.written.insert(candidate);
                    cur.push(c);
                }
                Err(e) => return Err(write_err(&candidate, e)),
                Ok(m) if m.is_dir() => cur.push(c),
                Ok(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(UnpackError::SymlinkLoop {
                            path: shown.to_owned(),
                        });
                    }
                    let target =
                        std::fs::read_link(&candidate).map_err(|e| write_err(&candidate, e))?;
                    let link_rel = rel_display(&cur, &c);
                    let escape = || UnpackError::SymlinkEscape {
                        path: shown.to_owned(),
                        link: link_rel.clone(),
                        target: target.display().to_string(),
                    };
                    if target.is_absolute() {
                        cur.clear();
                    }
                    let mut prefix = Vec::new();
                    for tc in target.components() {
                        match tc {
                            Component::Normal(n) => prefix.push(n.to_owned()),
                            Component::ParentDir => {
                                // Pop from the not-yet-walked prefix first, then from cur.
                                if prefix.pop().is_none() && cur.pop().is_none() {
                                    return Err(escape());
                                }
                            }
                            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                        }
                    }
                    for p in prefix.into_iter().rev() {
                        todo.push_front(p);
                    }
                }
                Ok(_) => {
                    return Err(UnpackError::NotADirectory {
                        path: shown.to_owned(),
                        component: rel_display(&cur, &c),
                    })
                }
            }
        }
        Ok(Some(self.join(&cur)))
    }

    fn resolve_hardlink(&mut self, target: &Path, shown: &str) -> Result<PathBuf, UnpackError> {
        let bad = || UnpackError::BadHardLink {
            path: shown.to_owned(),
            target: target.display().to_string(),
        };
        let rel = normalize(target, shown)?;
        let Some((name, parents)) = rel.split_last() else {
            return Err(bad());
        };
        let dir = self.resolve_dir(parents, shown, false)?.ok_or_else(bad)?;
        let full = dir.join(name);
        match std::fs::symlink_metadata(&full) {
            Ok(m) if !m.is_dir() => Ok(full),
            _ => Err(bad()),
        }
    }

    fn join(&self, comps: &[OsString]) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(comps);
        p
    }

    fn chown(&self, path: &Path, uid: u64, gid: u64) -> Result<(), UnpackError> {
        if !self.as_root {
            return Ok(());
        }
        let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
            return Err(write_err(
                path,
                io::Error::new(io::ErrorKind::InvalidData, "uid/gid out of range"),
            ));
        };
        rustix::fs::chownat(
            CWD,
            path,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| write_err(path, e.into()))
    }
}

/// Applies one uncompressed layer to `root` and finishes (convenience for single layers).
///
/// # Errors
/// See [`UnpackError`].
pub fn unpack<R: Read>(tar: R, root: &Path) -> Result<UnpackStats, UnpackError> {
    let mut u = Unpacker::new(root);
    let stats = u.apply(tar)?;
    u.finish()?;
    Ok(stats)
}

/// The entry's components with leading `/` and `.` dropped; `..` is an error.
fn normalize(p: &Path, shown: &str) -> Result<Vec<OsString>, UnpackError> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(UnpackError::PathTraversal {
                    path: shown.to_owned(),
                })
            }
        }
    }
    Ok(out)
}

fn rel_display(cur: &[OsString], last: &OsString) -> String {
    let mut p = PathBuf::new();
    p.extend(cur);
    p.push(last);
    p.display().to_string()
}

fn write_err(path: &Path, source: io::Error) -> UnpackError {
    UnpackError::Write {
        path: path.to_owned(),
        source,
    }
}

fn remove_any(path: &Path) -> Result<(), UnpackError> {
    let res = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        // remove_dir_all does not follow symlinks.
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    };
    res.map_err(|e| write_err(path, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), UnpackError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| write_err(path, e))
}

fn set_mtime(path: &Path, mtime: u64) -> Result<(), UnpackError> {
    let t = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    let ts = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| write_err(path, e.into()))
}

/// Best effort: file systems without xattr support, or names we may not set, are skipped.
fn apply_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, path: &Path) {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return;
    };
    for ext in exts.flatten() {
        let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
            continue;
        };
        let name = std::ffi::OsStr::from_bytes(name);
        if let Err(e) = rustix::fs::lsetxattr(
            path,
            name,
            ext.value_bytes(),
            rustix::fs::XattrFlags::empty(),
        ) {
            tracing::debug!(path = %path.display(), ?name, error = %e, "xattr not applied");
        }
    }
}

#[cfg(test)]
mod tests;
