//! `diff`: the changes of a layer against the image below it, with Docker's rules
//! (moby `pkg/archive/changes.go` on overlay2):
//!
//! - `D` for a whiteout, and for an opaque directory that the image has;
//! - `C` for a path the image has, `A` for one it does not; a directory that was only
//!   copied up (same mode and mtime as the image's) is not a change by itself;
//! - the parent of an `A` or `D` is reported `C` once, if nothing reported it yet.
//!
//! Entries come in the layer's order (a directory before its contents, names sorted), which
//! is the order Docker's walk of the upper directory prints. Docker also compares directory
//! sizes; the image's erofs and the layer's ext4 size directories differently, so only mode
//! and mtime are compared here.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use a3s_vmm::layer::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use serde::Serialize;

/// What happened to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ChangeKind {
    /// Added: the image does not have it.
    Added,
    /// Changed: the image has it, the box changed it (or something below it).
    Changed,
    /// Deleted.
    Deleted,
}

impl ChangeKind {
    /// Docker's letter: `A`, `C` or `D`.
    pub fn letter(self) -> char {
        match self {
            Self::Added => 'A',
            Self::Changed => 'C',
            Self::Deleted => 'D',
        }
    }
}

/// One line of `diff`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// Absolute path in the box.
    pub path: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.letter(), self.path)
    }
}

/// The changes the layer tar `layer` makes to the root filesystem `lower`.
///
/// # Errors
/// A malformed tar (or an entry path with `..` or a root), i/o on `lower`.
pub fn changes<R: Read>(layer: R, lower: &Path) -> io::Result<Vec<Change>> {
    let mut out: Vec<Change> = Vec::new();
    let mut changed_dirs: HashSet<String> = HashSet::new();
    let mut archive = tar::Archive::new(layer);
    for entry in archive.entries()? {
        let entry = entry?;
        let rel = relative(&entry.path()?)?;
        let (dir, name) = match rel.rsplit_once('/') {
            Some((d, n)) => (format!("/{d}"), n.to_owned()),
            None => ("/".to_owned(), rel.clone()),
        };
        let kind = if name == OPAQUE_MARKER {
            // The directory entry came just before its marker: Docker reports an opaque
            // directory the image has as deleted (and its new contents as added).
            let rel_dir = dir.trim_start_matches('/');
            if lower_meta(lower, rel_dir).is_none() {
                continue;
            }
            out.retain(|c| c.path != dir);
            changed_dirs.insert(dir.clone());
            push(&mut out, &mut changed_dirs, ChangeKind::Deleted, dir);
            continue;
        } else if let Some(gone) = name.strip_prefix(WHITEOUT_PREFIX) {
            let path = match dir.as_str() {
                "/" => format!("/{gone}"),
                d => format!("{d}/{gone}"),
            };
            push(&mut out, &mut changed_dirs, ChangeKind::Deleted, path);
            continue;
        } else {
            let is_dir = entry.header().entry_type().is_dir();
            match lower_meta(lower, &rel) {
                None => ChangeKind::Added,
                Some(m) if is_dir && m.is_dir() => {
                    let h = entry.header();
                    let same = h.mode()? & 0o7777 == m.mode() & 0o7777
                        && i64::try_from(h.mtime()?).ok() == Some(m.mtime());
                    if same {
                        continue; // only copied up for something below it
                    }
                    ChangeKind::Changed
                }
                Some(_) => ChangeKind::Changed,
            }
        };
        let path = format!("/{rel}");
        if entry.header().entry_type().is_dir() {
            changed_dirs.insert(path.clone());
        }
        push(&mut out, &mut changed_dirs, kind, path);
    }
    Ok(out)
}

/// Records a change, and its parent as changed when an `A` or `D` is the first news of it.
fn push(out: &mut Vec<Change>, changed_dirs: &mut HashSet<String>, kind: ChangeKind, path: String) {
    let parent = match path.rsplit_once('/') {
        Some(("", _)) | None => None,
        Some((p, _)) => Some(p.to_owned()),
    };
    out.push(Change { kind, path });
    if kind != ChangeKind::Changed {
        if let Some(p) = parent {
            if changed_dirs.insert(p.clone()) {
                out.push(Change {
                    kind: ChangeKind::Changed,
                    path: p,
                });
            }
        }
    }
}

/// The entry's path relative to the root, `/`-separated; `..` and absolute paths refused.
fn relative(p: &Path) -> io::Result<String> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("layer entry {} leaves the root", p.display()),
                ))
            }
        }
    }
    if parts.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "layer entry with an empty path",
        ));
    }
    Ok(parts.join("/"))
}

/// The image's entry at `rel`, without following symlinks anywhere on the way (a symlink in
/// the image must not lead the lookup out of its root).
pub(super) fn lower_meta(lower: &Path, rel: &str) -> Option<fs::Metadata> {
    let mut p = lower.to_path_buf();
    let parts: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        p.push(part);
        let m = fs::symlink_metadata(&p).ok()?;
        if i + 1 == parts.len() {
            return Some(m);
        }
        if !m.is_dir() {
            return None;
        }
    }
    fs::symlink_metadata(&p).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A layer tar as `pack_upper` writes it, from (path, kind) pairs in layer order.
    fn layer(entries: &[(&str, tar::EntryType, u32, u64)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, mode, mtime) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_mtime(*mtime);
            h.set_size(0);
            b.append_data(&mut h, path, io::empty()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn mtime(p: &Path) -> u64 {
        u64::try_from(fs::symlink_metadata(p).unwrap().mtime()).unwrap()
    }

    fn lines(c: &[Change]) -> Vec<String> {
        c.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn docker_rules_for_added_changed_deleted_and_parents() {
        use std::os::unix::fs::PermissionsExt;
        let lower = tempfile::tempdir().unwrap();
        let l = lower.path();
        fs::create_dir_all(l.join("etc/ssl")).unwrap();
        fs::write(l.join("etc/passwd"), "root").unwrap();
        fs::write(l.join("etc/ssl/old"), "x").unwrap();
        fs::create_dir_all(l.join("var/cache")).unwrap();
        fs::create_dir_all(l.join("opt")).unwrap();
        for d in ["etc", "etc/ssl", "var", "var/cache", "opt"] {
            fs::set_permissions(l.join(d), fs::Permissions::from_mode(0o755)).unwrap();
        }
        let (etc, ssl, var, cache) = (
            mtime(&l.join("etc")),
            mtime(&l.join("etc/ssl")),
            mtime(&l.join("var")),
            mtime(&l.join("var/cache")),
        );
        let dir = tar::EntryType::Directory;
        let file = tar::EntryType::Regular;
        let bytes = layer(&[
            // etc: copied up, mtime changed by the new file in it.
            ("etc/", dir, 0o755, etc + 7),
            ("etc/new", file, 0o644, 1),
            ("etc/passwd", file, 0o644, 1),
            // etc/ssl: only copied up; a whiteout below it makes it C once.
            ("etc/ssl/", dir, 0o755, ssl),
            ("etc/ssl/.wh.old", file, 0o644, 0),
            // A whole new directory tree: A for each, the parent of the top one C.
            ("srv/", dir, 0o755, 1),
            ("srv/app/", dir, 0o755, 1),
            ("srv/app/x", file, 0o644, 1),
            // var/cache: copied up only, a file in it modified in place (no parent line).
            ("var/", dir, 0o755, var),
            ("var/cache/", dir, 0o755, cache),
            ("var/cache/idx", file, 0o644, 1),
            // A deleted top-level directory.
            (".wh.opt", file, 0o644, 0),
        ]);
        fs::write(l.join("var/cache/idx"), "old").unwrap();
        let got = changes(&bytes[..], l).unwrap();
        assert_eq!(
            lines(&got),
            [
                "C /etc",
                "A /etc/new",
                "C /etc/passwd",
                "D /etc/ssl/old",
                "C /etc/ssl",
                "A /srv",
                "A /srv/app",
                "A /srv/app/x",
                "C /var/cache/idx",
                "D /opt",
            ]
        );
    }

    #[test]
    fn an_opaque_directory_the_image_has_is_deleted_then_refilled() {
        let lower = tempfile::tempdir().unwrap();
        fs::create_dir_all(lower.path().join("data")).unwrap();
        fs::write(lower.path().join("data/old"), "x").unwrap();
        let dir = tar::EntryType::Directory;
        let file = tar::EntryType::Regular;
        let bytes = layer(&[
            ("data/", dir, 0o700, 1),
            ("data/.wh..wh..opq", file, 0o644, 0),
            ("data/fresh", file, 0o644, 1),
        ]);
        let got = changes(&bytes[..], lower.path()).unwrap();
        assert_eq!(lines(&got), ["D /data", "A /data/fresh"]);
    }

    #[test]
    fn a_symlink_in_the_image_does_not_lead_the_lookup_outside_it() {
        let lower = tempfile::tempdir().unwrap();
        // `lib` -> the host's /etc: `lib/passwd` must not be found there.
        std::os::unix::fs::symlink("/etc", lower.path().join("lib")).unwrap();
        assert!(lower_meta(lower.path(), "lib/passwd").is_none());
        assert!(lower_meta(lower.path(), "lib").is_some());
    }

    #[test]
    fn an_entry_leaving_the_root_is_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        // The tar crate refuses to write `..`; put the name into the header by hand.
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
        let bytes = b.into_inner().unwrap();
        let lower = tempfile::tempdir().unwrap();
        let err = changes(&bytes[..], lower.path()).unwrap_err();
        assert!(err.to_string().contains("leaves the root"), "{err}");
    }
}
