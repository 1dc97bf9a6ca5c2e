//! `export`: the box's merged root filesystem as one tar, what `docker export` writes and
//! `import` reads: the image's root filesystem with the layer's changes applied (whiteouts
//! and opaque directories hide the image's entries; the layer's version of a path wins).
//!
//! One walk of the image tree in sorted order, taking each path from the layer when the
//! layer has it; the layer's new paths follow. The layer tar is a file, read twice: once
//! for its index, then entry by entry at the offsets the index kept.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use a3s_vmm::layer::{OPAQUE_MARKER, WHITEOUT_PREFIX};

/// One layer entry to copy: its header, where its data starts, its link target.
struct LayerEntry {
    header: tar::Header,
    data_at: u64,
    link: Option<PathBuf>,
}

/// What a layer does to the tree below it.
#[derive(Default)]
struct LayerIndex {
    /// Entries by relative path (no trailing `/`), in the layer's order.
    entries: BTreeMap<String, LayerEntry>,
    order: Vec<String>,
    deleted: HashSet<String>,
    opaque: HashSet<String>,
}

/// Writes the merge of root filesystem `lower` and layer tar `layer` to `out`.
///
/// # Errors
/// i/o (naming the path), a malformed layer.
pub fn export<W: Write>(lower: &Path, layer: &Path, out: W) -> io::Result<W> {
    let index = index(layer)?;
    let mut data = File::open(layer).map_err(|e| named(layer, e))?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut done = HashSet::new();
    walk_lower(&mut b, lower, "", &index, &mut data, &mut done)?;
    for rel in &index.order {
        if !done.contains(rel) {
            append_layer(&mut b, rel, &index.entries[rel], &mut data)?;
        }
    }
    b.into_inner()
}

fn index(layer: &Path) -> io::Result<LayerIndex> {
    let mut idx = LayerIndex::default();
    let file = File::open(layer).map_err(|e| named(layer, e))?;
    let mut archive = tar::Archive::new(io::BufReader::new(file));
    for entry in archive.entries()? {
        let entry = entry?;
        let rel = entry
            .path()?
            .components()
            .map(|c| match c {
                std::path::Component::Normal(n) => Ok(n.to_string_lossy().into_owned()),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "layer entry leaves the root",
                )),
            })
            .collect::<io::Result<Vec<_>>>()?
            .join("/");
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
        if name == OPAQUE_MARKER {
            idx.opaque.insert(dir.to_owned());
        } else if let Some(gone) = name.strip_prefix(WHITEOUT_PREFIX) {
            idx.deleted.insert(join(dir, gone));
        } else {
            let link = entry.link_name()?.map(std::borrow::Cow::into_owned);
            idx.order.push(rel.clone());
            idx.entries.insert(
                rel,
                LayerEntry {
                    header: entry.header().clone(),
                    data_at: entry.raw_file_position(),
                    link,
                },
            );
        }
    }
    Ok(idx)
}

fn walk_lower<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Path,
    rel: &str,
    index: &LayerIndex,
    data: &mut File,
    done: &mut HashSet<String>,
) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| named(dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| named(dir, e))?;
    names.sort();
    for name in names {
        let child_rel = join(rel, &name.to_string_lossy());
        if index.deleted.contains(&child_rel) {
            continue;
        }
        let path = dir.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(|e| named(&path, e))?;
        let descend = match index.entries.get(&child_rel) {
            Some(entry) => {
                append_layer(b, &child_rel, entry, data)?;
                done.insert(child_rel.clone());
                entry.header.entry_type().is_dir()
                    && meta.is_dir()
                    && !index.opaque.contains(&child_rel)
            }
            None if meta.file_type().is_socket() => false,
            None if meta.is_dir() => {
                b.append_dir(&child_rel, &path)?;
                true
            }
            None => {
                b.append_path_with_name(&path, &child_rel)
                    .map_err(|e| named(&path, e))?;
                false
            }
        };
        if descend {
            walk_lower(b, &path, &child_rel, index, data, done)?;
        }
    }
    Ok(())
}

fn append_layer<W: Write>(
    b: &mut tar::Builder<W>,
    rel: &str,
    entry: &LayerEntry,
    data: &mut File,
) -> io::Result<()> {
    let mut h = entry.header.clone();
    let kind = h.entry_type();
    if let Some(target) = &entry.link {
        return b.append_link(&mut h, rel, target);
    }
    if kind.is_dir() {
        return b.append_data(&mut h, format!("{rel}/"), io::empty());
    }
    let size = h.size()?;
    data.seek(SeekFrom::Start(entry.data_at))?;
    b.append_data(&mut h, rel, (&mut *data).take(size))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_layer_wins_whiteouts_hide_and_opaque_directories_replace() {
        let lower = tempfile::tempdir().unwrap();
        let l = lower.path();
        fs::create_dir_all(l.join("etc")).unwrap();
        fs::write(l.join("etc/keep"), "image").unwrap();
        fs::write(l.join("etc/edit"), "image").unwrap();
        fs::write(l.join("etc/gone"), "image").unwrap();
        fs::create_dir_all(l.join("data/sub")).unwrap();
        fs::write(l.join("data/sub/old"), "image").unwrap();
        std::os::unix::fs::symlink("etc/keep", l.join("link")).unwrap();

        // The layer, as the guest's `pack_upper` writes it.
        let upper = tempfile::tempdir().unwrap();
        let u = upper.path();
        fs::create_dir_all(u.join("etc")).unwrap();
        fs::write(u.join("etc/edit"), "box").unwrap();
        fs::write(u.join("etc/new"), "box").unwrap();
        nix::sys::stat::mknod(
            &u.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        fs::create_dir_all(u.join("data")).unwrap();
        fs::write(u.join("data/fresh"), "box").unwrap();
        let opaque = rustix::fs::lsetxattr(
            u.join("data"),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .is_ok();
        let layer = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        let bytes = a3s_vmm::layer::pack_upper(u, &[], Vec::new()).unwrap();
        fs::write(&layer, bytes).unwrap();

        let merged = export(l, &layer, Vec::new()).unwrap();
        let mut files = BTreeMap::new();
        for e in tar::Archive::new(&merged[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut s = String::new();
            if e.header().entry_type().is_file() {
                e.read_to_string(&mut s).unwrap();
            }
            files.insert(p, s);
        }
        assert_eq!(files["etc/keep"], "image");
        assert_eq!(files["etc/edit"], "box");
        assert_eq!(files["etc/new"], "box");
        assert_eq!(files["data/fresh"], "box");
        assert!(!files.contains_key("etc/gone"));
        assert!(files.contains_key("link"));
        assert!(!files.keys().any(|k| k.contains(".wh.")), "{files:?}");
        // Opaque: the image's data/sub is hidden (where trusted xattrs can be set).
        assert_eq!(files.contains_key("data/sub/old"), !opaque);
        // Every path once.
        let n = tar::Archive::new(&merged[..]).entries().unwrap().count();
        assert_eq!(n, files.len());
    }
}
