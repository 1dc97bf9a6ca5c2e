//! The `cp` stream, shared by the host and guest-init: a tar archive whose every entry lies
//! under one top-level name (the source's base name), unpacked with `docker cp` semantics.
//!
//! - [`pack`] archives a file or directory tree (symlinks as symlinks) under `name`.
//! - [`unpack`] places it at `dest`: inside `dest` when `dest` is an existing directory (so a
//!   directory is merged, a file lands as `dest/name`), otherwise as `dest` itself, whose parent
//!   must exist; the latter goes through a staging directory beside `dest` and one rename, so a
//!   failed copy leaves nothing half-written at `dest`.
//!
//! Unpacking never writes outside the destination: entries with `..`, absolute paths or paths
//! through a symlink are refused by the tar crate's `unpack_in`, and set-id bits are dropped
//! unless `keep_special_bits` (the guest keeps them; the host, where a guest could otherwise
//! plant a set-uid file, does not).

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// The helper subcommand of guest-init that writes a [`pack`] of `PATH` to stdout.
pub const GUEST_CP_OUT: &str = "__cp-out";
/// The helper subcommand of guest-init that [`unpack`]s stdin at `DEST` (`__cp-in DEST`).
pub const GUEST_CP_IN: &str = "__cp-in";

/// The top-level name a copy of `src` travels under: its last normal component.
///
/// # Errors
/// When `src` has none (`/`, `..`).
pub fn base_name(src: &Path) -> io::Result<String> {
    match src.components().next_back() {
        Some(Component::Normal(n)) => Ok(n.to_string_lossy().into_owned()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot copy {}: name a file or directory", src.display()),
        )),
    }
}

/// Writes a tar of `src` (file, directory tree or symlink) under `name` to `out`.
///
/// # Errors
/// i/o, naming the path.
pub fn pack<W: Write>(src: &Path, name: &str, out: W) -> io::Result<W> {
    let meta = fs::symlink_metadata(src)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", src.display())))?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    if meta.is_dir() {
        b.append_dir_all(name, src)?;
    } else {
        b.append_path_with_name(src, name)?;
    }
    b.into_inner()
}

/// Unpacks a [`pack`] stream whose top-level name is `name` at `dest` (see the module docs).
/// Returns the path the copy now has.
///
/// # Errors
/// i/o; a missing parent of `dest`; entries outside `name`.
pub fn unpack<R: Read>(
    input: R,
    name: &str,
    dest: &Path,
    keep_special_bits: bool,
) -> io::Result<PathBuf> {
    let mut archive = tar::Archive::new(input);
    archive.set_overwrite(true);
    archive.set_preserve_permissions(keep_special_bits);
    archive.set_preserve_mtime(true);
    if dest.is_dir() {
        unpack_checked(&mut archive, name, dest)?;
        return Ok(dest.join(name));
    }
    let parent = match dest.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot copy onto {}", dest.display()),
            ))
        }
    };
    if !parent.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("destination directory {} does not exist", parent.display()),
        ));
    }
    let staging = parent.join(format!(
        ".a3s-cp-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    fs::create_dir(&staging)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", staging.display())))?;
    let result = unpack_checked(&mut archive, name, &staging)
        .and_then(|()| fs::rename(staging.join(name), dest))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dest.display())));
    let _ = fs::remove_dir_all(&staging);
    result.map(|()| dest.to_owned())
}

fn unpack_checked<R: Read>(
    archive: &mut tar::Archive<R>,
    name: &str,
    dir: &Path,
) -> io::Result<()> {
    let mut seen = false;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let first = path.components().next();
        if !matches!(first, Some(Component::Normal(n)) if n == name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("copy stream entry {} is outside {name}", path.display()),
            ));
        }
        if !entry.unpack_in(dir)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "copy stream entry {} escapes the destination",
                    path.display()
                ),
            ));
        }
        seen = true;
    }
    if seen {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the copy stream is empty",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("d/sub")).unwrap();
        fs::write(root.join("d/a.txt"), b"alpha").unwrap();
        fs::write(root.join("d/sub/b.bin"), [0u8, 1, 2, 255]).unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("d/link")).unwrap();
    }

    #[test]
    fn a_directory_lands_inside_an_existing_directory_or_as_the_new_name() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path());
        let bytes = pack(&t.path().join("d"), "d", Vec::new()).unwrap();
        let into = t.path().join("into");
        fs::create_dir(&into).unwrap();
        let at = unpack(bytes.as_slice(), "d", &into, false).unwrap();
        assert_eq!(at, into.join("d"));
        assert_eq!(fs::read(into.join("d/a.txt")).unwrap(), b"alpha");
        assert_eq!(fs::read(into.join("d/sub/b.bin")).unwrap(), [0, 1, 2, 255]);
        assert_eq!(
            fs::read_link(into.join("d/link")).unwrap(),
            Path::new("a.txt")
        );
        let renamed = t.path().join("renamed");
        unpack(bytes.as_slice(), "d", &renamed, false).unwrap();
        assert_eq!(fs::read(renamed.join("a.txt")).unwrap(), b"alpha");
        let leftovers: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".a3s-cp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_file_replaces_a_file_and_a_missing_parent_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("src"), b"new").unwrap();
        fs::write(t.path().join("old"), b"old").unwrap();
        let bytes = pack(&t.path().join("src"), "src", Vec::new()).unwrap();
        unpack(bytes.as_slice(), "src", &t.path().join("old"), false).unwrap();
        assert_eq!(fs::read(t.path().join("old")).unwrap(), b"new");
        let e = unpack(bytes.as_slice(), "src", &t.path().join("no/such/x"), false).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(base_name(Path::new("/")).is_err());
        assert_eq!(base_name(Path::new("/a/b/")).unwrap(), "b");
    }

    #[test]
    fn entries_outside_the_name_or_escaping_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "other/x", &b"x"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let e = unpack(bytes.as_slice(), "d", t.path(), false).unwrap_err();
        assert!(e.to_string().contains("outside d"), "{e}");

        // A raw `..` path (tar::Builder refuses to write one, so patch the header bytes).
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_path("d/zz/x").unwrap();
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let mut bytes = b.into_inner().unwrap();
        bytes[2..4].copy_from_slice(b"..");
        let mut hdr = tar::Header::new_old();
        hdr.as_mut_bytes().copy_from_slice(&bytes[..512]);
        hdr.set_cksum();
        bytes[..512].copy_from_slice(hdr.as_bytes());
        let dest = t.path().join("dest");
        fs::create_dir(&dest).unwrap();
        assert!(unpack(bytes.as_slice(), "d", &dest, false).is_err());
        assert!(!t.path().join("x").exists());
    }
}
