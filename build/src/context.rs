//! COPY and ADD: sources in the build context (minus `.dockerignore`) or in another stage's
//! filesystem, matched with Docker's globs, turned into one layer tar. Entries are sorted and
//! carry numeric owners (`0:0` unless `--chown`), the source's mode (or `--chmod`) and mtime,
//! so the same sources give the same layer bytes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobMatcher};

/// Largest `.dockerignore` read.
const MAX_IGNORE_BYTES: u64 = 1 << 20;

/// A COPY or ADD could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// A source matches nothing.
    #[error("{0}: no such file or directory in the build context (or excluded by .dockerignore)")]
    NotFound(String),
    /// A source outside the context.
    #[error("{0}: the source lies outside the build context")]
    Outside(String),
    /// A bad glob pattern.
    #[error("bad pattern {pattern:?}: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// An archive entry that would land outside the destination.
    #[error("archive {archive}: entry {entry:?} leads outside the destination")]
    ArchiveEscape {
        /// The archive.
        archive: String,
        /// The entry.
        entry: String,
    },
    /// i/o, naming the path.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// `.dockerignore`: Docker's rules (patterns relative to the context root, `!` re-includes,
/// the last matching pattern wins, a matched directory excludes what is below it).
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<(GlobMatcher, bool)>,
}

impl Ignore {
    /// Reads `<context>/.dockerignore` (none: nothing is ignored).
    ///
    /// # Errors
    /// i/o, a file over 1 MiB, bad patterns.
    pub fn load(context: &Path) -> Result<Self, CopyError> {
        let path = context.join(".dockerignore");
        let text = match fs::File::open(&path) {
            Ok(f) => {
                let mut s = String::new();
                f.take(MAX_IGNORE_BYTES + 1).read_to_string(&mut s)?;
                if s.len() as u64 > MAX_IGNORE_BYTES {
                    return Err(CopyError::Pattern {
                        pattern: path.display().to_string(),
                        message: "the file is larger than 1 MiB".into(),
                    });
                }
                s
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e.into()),
        };
        Self::parse(&text)
    }

    /// Parses `.dockerignore` text.
    ///
    /// # Errors
    /// Bad patterns.
    pub fn parse(text: &str) -> Result<Self, CopyError> {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let pat = clean(pat);
            if pat.is_empty() {
                continue;
            }
            rules.push((matcher(&pat)?, !negate));
        }
        Ok(Self { rules })
    }

    /// True when `rel` (relative to the context, `/`-separated) is excluded.
    pub fn excludes(&self, rel: &str) -> bool {
        let mut excluded = false;
        for (m, exclude) in &self.rules {
            // A pattern matching a parent directory covers what is below it.
            let mut hit = m.is_match(rel);
            let mut p = rel;
            while !hit {
                match p.rsplit_once('/') {
                    Some((parent, _)) => {
                        hit = m.is_match(parent);
                        p = parent;
                    }
                    None => break,
                }
            }
            if hit {
                excluded = *exclude;
            }
        }
        excluded
    }
}

/// Docker's (Go's) glob: `*` and `?` do not cross `/`, `**` does.
fn matcher(pattern: &str) -> Result<GlobMatcher, CopyError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g: Glob| g.compile_matcher())
        .map_err(|e| CopyError::Pattern {
            pattern: pattern.into(),
            message: e.to_string(),
        })
}

/// A path cleaned like Go's `filepath.Clean`, relative (no leading `/`), `""` for the root.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Where sources are read from.
#[derive(Debug)]
pub struct SourceRoot<'a> {
    /// The directory (the context, or another stage's unpacked filesystem).
    pub dir: &'a Path,
    /// `.dockerignore` (the context only).
    pub ignore: Option<&'a Ignore>,
}

/// One matched source: its path relative to the root, and the host path.
#[derive(Debug, Clone)]
pub struct Source {
    /// Relative to the root.
    pub rel: String,
    /// On the host.
    pub path: PathBuf,
}

impl SourceRoot<'_> {
    /// The sources `pattern` names (globs expanded, sorted).
    ///
    /// # Errors
    /// [`CopyError::NotFound`] when nothing matches.
    pub fn resolve(&self, pattern: &str) -> Result<Vec<Source>, CopyError> {
        if pattern.split('/').any(|c| c == "..") && clean(pattern).is_empty() {
            return Err(CopyError::Outside(pattern.into()));
        }
        let pat = clean(pattern);
        let ignored = |rel: &str| {
            self.ignore
                .is_some_and(|i| !rel.is_empty() && i.excludes(rel))
        };
        if !is_glob(&pat) {
            // Symlinks on the way (and a symlink source itself) resolve inside the root, as in
            // a chroot: a context or stage can never make the build read a host file.
            let path = match scoped(self.dir, &pat) {
                Ok(p) if fs::symlink_metadata(&p).is_ok() => p,
                _ => return Err(CopyError::NotFound(pattern.into())),
            };
            if ignored(&pat) {
                return Err(CopyError::NotFound(pattern.into()));
            }
            return Ok(vec![Source { rel: pat, path }]);
        }
        let m = matcher(&pat)?;
        let mut found = Vec::new();
        walk(self.dir, "", &mut |rel, path| {
            if ignored(rel) {
                return false;
            }
            if m.is_match(rel) {
                found.push(Source {
                    rel: rel.to_owned(),
                    path: scoped(self.dir, rel).unwrap_or_else(|_| path.to_owned()),
                });
            }
            true
        })?;
        if found.is_empty() {
            return Err(CopyError::NotFound(pattern.into()));
        }
        Ok(found)
    }
}

/// Most symlinks followed while resolving one path (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// `root/rel` with every symlink on the way, the last component included, resolved as if
/// `root` were `/`: absolute targets start again at `root`, `..` never climbs above it.
///
/// # Errors
/// Too many symlinks, or i/o other than a missing component (a missing path is returned as
/// it would be, for the caller's existence check).
pub fn scoped(root: &Path, rel: &str) -> io::Result<PathBuf> {
    let mut done: Vec<String> = Vec::new();
    let mut todo: Vec<String> = rel
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_owned)
        .collect();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let candidate = root.join(done.join("/")).join(&c);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "{rel}: too many levels of symbolic links"
                    )));
                }
                let target = fs::read_link(&candidate)?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(
                    target
                        .split('/')
                        .filter(|c| !c.is_empty())
                        .rev()
                        .map(str::to_owned),
                );
            }
            Ok(_) => done.push(c),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                done.push(c);
                done.extend(todo.drain(..).rev());
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(root.join(done.join("/")))
}

/// Visits every entry below `dir` in sorted order; `f` returns false to skip a directory's
/// contents.
fn walk(dir: &Path, rel: &str, f: &mut dyn FnMut(&str, &Path) -> bool) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for n in names {
        let n = n.to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            n.clone()
        } else {
            format!("{rel}/{n}")
        };
        let p = dir.join(&n);
        let go_on = f(&r, &p);
        if go_on && fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            walk(&p, &r, f)?;
        }
    }
    Ok(())
}

/// Owner and mode overrides (`--chown`, `--chmod`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// `uid:gid` for every entry (default `0:0`).
    pub owner: (u64, u64),
    /// Mode bits for every entry.
    pub mode: Option<u32>,
}

/// One entry of the layer being built.
#[derive(Debug)]
enum Item {
    Dir {
        mode: u32,
        owner: (u64, u64),
        mtime: u64,
    },
    File {
        src: PathBuf,
        mode: u32,
        owner: (u64, u64),
        mtime: u64,
        size: u64,
    },
    Link {
        target: PathBuf,
        owner: (u64, u64),
        mtime: u64,
    },
    /// A file whose bytes are in memory (ADD of a URL).
    Bytes {
        data: Vec<u8>,
        mode: u32,
        owner: (u64, u64),
        mtime: u64,
    },
    /// An entry re-streamed from a local archive (ADD), already in tar form.
    Archived {
        header: Box<tar::Header>,
        data: Vec<u8>,
        link: Option<PathBuf>,
    },
}

/// A layer under construction: image path (relative, no leading `/`) → entry.
#[derive(Debug, Default)]
pub struct LayerBuilder {
    items: BTreeMap<String, Item>,
}

impl LayerBuilder {
    /// Adds the directories leading to `dest` (exclusive), taking the metadata of those the
    /// parent image has (`rootfs`) so the layer does not change them, else `0755 root`.
    pub fn parents(&mut self, dest: &str, rootfs: Option<&Path>) {
        let mut acc = String::new();
        let parts: Vec<&str> = dest.split('/').filter(|p| !p.is_empty()).collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            self.existing_dir(&acc, rootfs);
        }
    }

    /// Adds directory `rel` with the parent image's metadata when it has one, else `0755 root`.
    pub fn existing_dir(&mut self, rel: &str, rootfs: Option<&Path>) {
        let meta = rootfs.and_then(|r| fs::symlink_metadata(scoped(r, rel).ok()?).ok());
        let item = match meta {
            Some(m) => Item::Dir {
                mode: m.mode() & 0o7777,
                owner: (u64::from(m.uid()), u64::from(m.gid())),
                mtime: mtime(&m),
            },
            None => Item::Dir {
                mode: 0o755,
                owner: (0, 0),
                mtime: 0,
            },
        };
        self.items.entry(rel.to_owned()).or_insert(item);
    }

    /// Adds `src` (file, symlink or directory tree) at `dest`; a directory's contents go
    /// below `dest`.
    ///
    /// # Errors
    /// i/o.
    pub fn add(
        &mut self,
        src: &Source,
        dest: &str,
        ov: Overrides,
        ignore: Option<&Ignore>,
    ) -> io::Result<()> {
        // A top-level symlink source was resolved (inside its root) by `resolve`: Docker copies
        // what it points at.
        let meta = fs::symlink_metadata(&src.path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", src.path.display())))?;
        if !meta.is_dir() {
            self.items
                .insert(dest.to_owned(), file_item(&src.path, &meta, ov));
            return Ok(());
        }
        if !dest.is_empty() {
            self.items.insert(
                dest.to_owned(),
                Item::Dir {
                    mode: ov.mode.unwrap_or(meta.mode() & 0o7777),
                    owner: ov.owner,
                    mtime: mtime(&meta),
                },
            );
        }
        let mut err = None;
        walk(&src.path, "", &mut |rel, path| {
            let ctx_rel = if src.rel.is_empty() {
                rel.to_owned()
            } else {
                format!("{}/{rel}", src.rel)
            };
            if ignore.is_some_and(|i| i.excludes(&ctx_rel)) {
                return false;
            }
            let target = if dest.is_empty() {
                rel.to_owned()
            } else {
                format!("{dest}/{rel}")
            };
            match fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => match fs::read_link(path) {
                    Ok(t) => {
                        self.items.insert(
                            target,
                            Item::Link {
                                target: t,
                                owner: ov.owner,
                                mtime: mtime(&m),
                            },
                        );
                    }
                    Err(e) => err = Some(e),
                },
                Ok(m) if m.is_dir() => {
                    self.items.insert(
                        target,
                        Item::Dir {
                            mode: ov.mode.unwrap_or(m.mode() & 0o7777),
                            owner: ov.owner,
                            mtime: mtime(&m),
                        },
                    );
                }
                Ok(m) if m.is_file() => {
                    self.items.insert(target, file_item(path, &m, ov));
                }
                Ok(_) => {} // devices, sockets and fifos are not copied
                Err(e) => err = Some(e),
            }
            true
        })?;
        err.map_or(Ok(()), Err)
    }

    /// Adds a regular file with these bytes at `dest` (ADD of a URL).
    pub fn add_bytes(
        &mut self,
        dest: &str,
        data: Vec<u8>,
        mode: u32,
        owner: (u64, u64),
        mtime: u64,
    ) {
        self.items.insert(
            dest.to_owned(),
            Item::Bytes {
                data,
                mode,
                owner,
                mtime,
            },
        );
    }

    /// ADD of a local tar archive: its entries land below `dest`, keeping their metadata
    /// (`--chown`/`--chmod` still apply). Returns false (nothing added) when `src` is not a
    /// (plain, gzip or zstd) tar archive.
    ///
    /// # Errors
    /// i/o, entries that would land outside `dest`.
    pub fn add_archive(
        &mut self,
        src: &Path,
        dest: &str,
        ov: Overrides,
        chown: bool,
    ) -> Result<bool, CopyError> {
        if !is_tar(src)? {
            return Ok(false);
        }
        let stream = a3s_image::unpack::decompress(fs::File::open(src)?)?;
        let mut archive = tar::Archive::new(stream);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = entry.path()?.to_string_lossy().into_owned();
            if Path::new(&raw)
                .components()
                .any(|c| matches!(c, Component::ParentDir))
            {
                return Err(CopyError::ArchiveEscape {
                    archive: src.display().to_string(),
                    entry: raw,
                });
            }
            let rel = clean(&raw);
            if rel.is_empty() {
                continue;
            }
            // Directories the archive implies but does not list are made as tar makes them.
            let parts: Vec<&str> = rel.split('/').collect();
            for n in 1..parts.len() {
                let parent = parts[..n].join("/");
                let p = if dest.is_empty() {
                    parent
                } else {
                    format!("{dest}/{parent}")
                };
                self.items.entry(p).or_insert(Item::Dir {
                    mode: 0o755,
                    owner: (0, 0),
                    mtime: 0,
                });
            }
            let target = if dest.is_empty() {
                rel
            } else {
                format!("{dest}/{rel}")
            };
            let mut header = entry.header().clone();
            if chown {
                header.set_uid(ov.owner.0);
                header.set_gid(ov.owner.1);
            }
            if let Some(m) = ov.mode {
                header.set_mode(m);
            }
            let link = entry.link_name()?.map(|l| {
                let l = l.into_owned();
                // Hard links name archive paths: re-root them below `dest`.
                if header.entry_type() == tar::EntryType::Link {
                    let lr = clean(&l.to_string_lossy());
                    PathBuf::from(if dest.is_empty() {
                        lr
                    } else {
                        format!("{dest}/{lr}")
                    })
                } else {
                    l
                }
            });
            let mut data = Vec::new();
            if header.entry_type().is_file() {
                entry.read_to_end(&mut data)?;
            }
            self.items.insert(
                target,
                Item::Archived {
                    header: Box::new(header),
                    data,
                    link,
                },
            );
        }
        Ok(true)
    }

    /// Writes the layer tar (sorted by path) to `out`.
    ///
    /// # Errors
    /// i/o.
    pub fn write<W: Write>(&self, out: W) -> io::Result<W> {
        let mut b = tar::Builder::new(out);
        for (path, item) in &self.items {
            let mut h = tar::Header::new_gnu();
            match item {
                Item::Dir { mode, owner, mtime } => {
                    set(&mut h, tar::EntryType::Directory, *mode, *owner, *mtime);
                    b.append_data(&mut h, format!("{path}/"), io::empty())?;
                }
                Item::File {
                    src,
                    mode,
                    owner,
                    mtime,
                    size,
                } => {
                    set(&mut h, tar::EntryType::Regular, *mode, *owner, *mtime);
                    h.set_size(*size);
                    let f = fs::File::open(src)
                        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", src.display())))?;
                    b.append_data(&mut h, path, f.take(*size))?;
                }
                Item::Link {
                    target,
                    owner,
                    mtime,
                } => {
                    set(&mut h, tar::EntryType::Symlink, 0o777, *owner, *mtime);
                    b.append_link(&mut h, path, target)?;
                }
                Item::Bytes {
                    data,
                    mode,
                    owner,
                    mtime,
                } => {
                    set(&mut h, tar::EntryType::Regular, *mode, *owner, *mtime);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_slice())?;
                }
                Item::Archived { header, data, link } => {
                    let mut h = (**header).clone();
                    match link {
                        Some(l) => b.append_link(&mut h, path, l)?,
                        None => b.append_data(&mut h, path, data.as_slice())?,
                    }
                }
            }
        }
        b.into_inner()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

fn set(h: &mut tar::Header, kind: tar::EntryType, mode: u32, owner: (u64, u64), mtime: u64) {
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(owner.0);
    h.set_gid(owner.1);
    h.set_mtime(mtime);
    h.set_size(0);
}

fn file_item(path: &Path, m: &fs::Metadata, ov: Overrides) -> Item {
    Item::File {
        src: path.to_owned(),
        mode: ov.mode.unwrap_or(m.mode() & 0o7777),
        owner: ov.owner,
        mtime: mtime(m),
        size: m.len(),
    }
}

fn mtime(m: &fs::Metadata) -> u64 {
    u64::try_from(m.mtime()).unwrap_or(0)
}

/// True when `path` is a tar archive (after gzip or zstd): a `ustar` magic in its first header.
fn is_tar(path: &Path) -> io::Result<bool> {
    let mut r = a3s_image::unpack::decompress(fs::File::open(path)?)?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return Ok(false),
        }
    }
    Ok(n == 512 && &head[257..262] == b"ustar")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::write(root.join("usr/lib/x"), "in").unwrap();
        std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("host")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
        assert_eq!(scoped(&root, "lib/x").unwrap(), root.join("usr/lib/x"));
        assert_eq!(scoped(&root, "host").unwrap(), root.join("etc/passwd"));
        assert_eq!(scoped(&root, "up/usr").unwrap(), root.join("usr"));
        let src = SourceRoot {
            dir: &root,
            ignore: None,
        };
        assert!(matches!(src.resolve("host"), Err(CopyError::NotFound(_))));
        assert_eq!(
            src.resolve("lib/x").unwrap()[0].path,
            root.join("usr/lib/x")
        );
    }

    #[test]
    fn dockerignore_rules() {
        let i = Ignore::parse("# c\n*.log\nbuild\n!build/keep\n**/tmp\n/abs/x\n").unwrap();
        assert!(i.excludes("a.log"));
        assert!(!i.excludes("d/a.log"), "* does not cross /");
        assert!(i.excludes("build/out/o"));
        assert!(!i.excludes("build/keep"));
        assert!(i.excludes("a/b/tmp/f"));
        assert!(i.excludes("abs/x"));
        assert!(!i.excludes("src/main.rs"));
    }

    #[test]
    fn globs_and_layer_are_sorted_and_reproducible() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("src/sub")).unwrap();
        fs::write(d.path().join("src/b.txt"), "b").unwrap();
        fs::write(d.path().join("src/a.txt"), "a").unwrap();
        fs::write(d.path().join("src/sub/c.txt"), "c").unwrap();
        fs::write(d.path().join("src/skip.log"), "x").unwrap();
        let ignore = Ignore::parse("src/*.log").unwrap();
        let root = SourceRoot {
            dir: d.path(),
            ignore: Some(&ignore),
        };
        let found: Vec<_> = root
            .resolve("src/*.txt")
            .unwrap()
            .into_iter()
            .map(|s| s.rel)
            .collect();
        assert_eq!(found, ["src/a.txt", "src/b.txt"]);
        assert!(matches!(
            root.resolve("src/skip.log"),
            Err(CopyError::NotFound(_))
        ));
        assert!(matches!(root.resolve("nope"), Err(CopyError::NotFound(_))));

        let mut l = LayerBuilder::default();
        l.parents("app/src", None);
        for s in root.resolve("src").unwrap() {
            l.add(
                &s,
                "app/src",
                Overrides {
                    owner: (1000, 1000),
                    mode: None,
                },
                Some(&ignore),
            )
            .unwrap();
        }
        let bytes = l.write(Vec::new()).unwrap();
        let names: Vec<String> = tar::Archive::new(bytes.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "app/",
                "app/src/",
                "app/src/a.txt",
                "app/src/b.txt",
                "app/src/sub/",
                "app/src/sub/c.txt"
            ]
        );
        assert_eq!(bytes, l.write(Vec::new()).unwrap());
    }

    #[test]
    fn add_unpacks_a_local_tar_and_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o640);
        b.append_data(&mut h, "x/y", &b"hi"[..]).unwrap();
        let tar_path = d.path().join("a.tar");
        fs::write(&tar_path, b.into_inner().unwrap()).unwrap();
        let mut l = LayerBuilder::default();
        assert!(l
            .add_archive(&tar_path, "opt", Overrides::default(), false)
            .unwrap());
        let plain = d.path().join("plain.txt");
        fs::write(&plain, "not a tar").unwrap();
        assert!(!l
            .add_archive(&plain, "opt", Overrides::default(), false)
            .unwrap());
    }
}
