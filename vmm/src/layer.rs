//! A box's changes as an OCI layer: the overlay upper directory of its writable disk, written
//! as a tar stream in the OCI image-spec's changeset format. Shared by guest-init (which owns
//! the upper directory) and the host (which stores the result); `build`'s RUN steps use it,
//! and so can `diff`, `commit` and `export`.
//!
//! overlayfs marks deletions in the upper directory; OCI layers mark them with names:
//!
//! | upper directory | layer entry |
//! |---|---|
//! | character device 0/0 `d/name` (a whiteout) | empty file `d/.wh.name` |
//! | directory with xattr `trusted.overlay.opaque=y` | the directory, then `d/.wh..wh..opq` |
//!
//! Entries are written in byte order of their paths, with numeric owners and no user or group
//! names, so the same tree always gives the same bytes. Hard links inside the tree are kept as
//! links. Extended attributes other than the opaque marker are not carried.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The helper subcommand of guest-init that writes the box's changes ([`pack_upper`] of the
/// upper directory, minus [`GUEST_OWNED`]) to stdout.
pub const GUEST_LAYER_OUT: &str = "__layer-out";
/// [`GUEST_LAYER_OUT`]'s option to stop (SIGSTOP) the box's other processes while it packs
/// and continue them after (`commit --pause`).
pub const GUEST_LAYER_PAUSE: &str = "--pause";
/// The helper subcommand of guest-init that waits until it is killed: the workload of a box
/// that only serves exec sessions (a build step).
pub const GUEST_IDLE: &str = "__idle";
/// Where guest-init shows the box's overlay upper directory (read-only) inside the box.
pub const UPPER_MOUNT: &str = "/.a3s/upper";
/// Paths in the upper directory that guest-init itself writes (mount points, the per-box
/// network files Docker also keeps out of images); never part of a layer.
pub const GUEST_OWNED: &[&str] = &[
    ".a3s",
    "run/a3s",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
];

/// Name prefix of a deletion marker in a layer (`d/.wh.name` deletes `d/name`).
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the marker that hides everything below its directory in lower layers.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Writes the layer tar of overlay upper directory `upper` to `out`, leaving out the
/// relative paths in `exclude` (and everything below them).
///
/// # Errors
/// i/o, naming the path.
pub fn pack_upper<W: Write>(upper: &Path, exclude: &[&str], out: W) -> io::Result<W> {
    let mut b = tar::Builder::new(out);
    let mut links = BTreeMap::new();
    walk(&mut b, upper, "", exclude, &mut links)?;
    b.into_inner()
}

fn walk<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Path,
    rel: &str,
    exclude: &[&str],
    links: &mut BTreeMap<(u64, u64), String>,
) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| named(dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| named(dir, e))?;
    names.sort();
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let path = dir.join(&name);
        let rel_path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if exclude.contains(&rel_path.as_str()) {
            continue;
        }
        let meta = fs::symlink_metadata(&path).map_err(|e| named(&path, e))?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            let wh = match rel.is_empty() {
                true => format!("{WHITEOUT_PREFIX}{name}"),
                false => format!("{rel}/{WHITEOUT_PREFIX}{name}"),
            };
            let mut h = header(&meta, tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(0);
            b.append_data(&mut h, wh, io::empty())?;
            continue;
        }
        if ft.is_dir() {
            if only_guest_owned(&path, &rel_path, exclude)? {
                continue; // e.g. `run/`, copied up only because guest-init made `run/a3s`
            }
            let mut h = header(&meta, tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, format!("{rel_path}/"), io::empty())?;
            if is_opaque(&path) {
                let mut h = header(&meta, tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, format!("{rel_path}/{OPAQUE_MARKER}"), io::empty())?;
            }
            walk(b, &path, &rel_path, exclude, links)?;
            continue;
        }
        if meta.nlink() > 1 && !ft.is_dir() {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                let mut h = header(&meta, tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, &rel_path, first)?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), rel_path.clone());
        }
        if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| named(&path, e))?;
            let mut h = header(&meta, tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, &rel_path, target)?;
        } else if ft.is_file() {
            let mut h = header(&meta, tar::EntryType::Regular);
            h.set_size(meta.len());
            let f = fs::File::open(&path).map_err(|e| named(&path, e))?;
            b.append_data(&mut h, &rel_path, f)?;
        } else {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else if ft.is_fifo() {
                tar::EntryType::Fifo
            } else {
                continue; // sockets do not belong in images (Docker drops them too)
            };
            let mut h = header(&meta, kind);
            h.set_size(0);
            let rdev = meta.rdev();
            let dev = |n: u64| u32::try_from(n).map_err(io::Error::other);
            h.set_device_major(dev(nix::sys::stat::major(rdev))?)?;
            h.set_device_minor(dev(nix::sys::stat::minor(rdev))?)?;
            b.append_data(&mut h, &rel_path, io::empty())?;
        }
    }
    Ok(())
}

/// True when directory `dir` holds excluded entries and nothing else (and is not opaque): the
/// upper layer has it only because of what guest-init wrote below it.
fn only_guest_owned(dir: &Path, rel: &str, exclude: &[&str]) -> io::Result<bool> {
    let mut any_excluded = false;
    for e in fs::read_dir(dir).map_err(|e| named(dir, e))? {
        let name = e.map_err(|e| named(dir, e))?.file_name();
        if exclude.contains(&format!("{rel}/{}", name.to_string_lossy()).as_str()) {
            any_excluded = true;
        } else {
            return Ok(false);
        }
    }
    Ok(any_excluded && !is_opaque(dir))
}

/// A GNU header with `meta`'s mode, numeric owner and mtime (whole seconds).
fn header(meta: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    h
}

fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 8];
    matches!(rustix::fs::lgetxattr(dir, OPAQUE_XATTR, &mut buf[..]), Ok(n) if buf[..n] == *b"y")
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn entries(bytes: &[u8]) -> Vec<(String, tar::EntryType)> {
        tar::Archive::new(bytes)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let p = e.path().unwrap().to_string_lossy().into_owned();
                (p, e.header().entry_type())
            })
            .collect()
    }

    #[test]
    fn whiteouts_become_wh_files_and_entries_are_sorted() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc/b")).unwrap();
        fs::write(d.path().join("etc/b/z"), "z").unwrap();
        fs::write(d.path().join("etc/a"), "a").unwrap();
        fs::write(d.path().join("etc/hosts"), "guest").unwrap();
        fs::create_dir_all(d.path().join("run/a3s")).unwrap();
        fs::create_dir_all(d.path().join("empty")).unwrap();
        // A whiteout is a 0/0 character device (needs CAP_MKNOD: tests run as root here).
        nix::sys::stat::mknod(
            &d.path().join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o000),
            0,
        )
        .unwrap();
        std::os::unix::fs::symlink("a", d.path().join("etc/link")).unwrap();
        let bytes = pack_upper(d.path(), GUEST_OWNED, Vec::new()).unwrap();
        let names: Vec<_> = entries(&bytes).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            names,
            [
                "empty/",
                "etc/",
                "etc/a",
                "etc/b/",
                "etc/b/z",
                "etc/.wh.gone",
                "etc/link"
            ]
        );
        // `run/` held only guest-init's `run/a3s` and stays out; an empty new directory stays.
        // Same tree, same bytes.
        assert_eq!(
            bytes,
            pack_upper(d.path(), GUEST_OWNED, Vec::new()).unwrap()
        );
    }

    #[test]
    fn an_opaque_directory_gets_the_opaque_marker() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("opq")).unwrap();
        // trusted.* xattrs need CAP_SYS_ADMIN and a filesystem that stores them; skip where the
        // temp dir's filesystem refuses (the marker is then simply absent, which we assert).
        let set = rustix::fs::lsetxattr(
            d.path().join("opq"),
            OPAQUE_XATTR,
            b"y",
            rustix::fs::XattrFlags::empty(),
        );
        let bytes = pack_upper(d.path(), &[], Vec::new()).unwrap();
        let names: Vec<_> = entries(&bytes).into_iter().map(|(p, _)| p).collect();
        if set.is_ok() {
            assert_eq!(names, ["opq/", "opq/.wh..wh..opq"]);
        } else {
            assert_eq!(names, ["opq/"]);
        }
    }

    #[test]
    fn hard_links_stay_links() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), "x").unwrap();
        fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        let bytes = pack_upper(d.path(), &[], Vec::new()).unwrap();
        let e = entries(&bytes);
        assert_eq!(e[0], ("a".into(), tar::EntryType::Regular));
        assert_eq!(e[1], ("b".into(), tar::EntryType::Link));
    }
}
