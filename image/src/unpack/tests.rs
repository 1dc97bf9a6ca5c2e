use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

/// One tar entry, built with the raw header so that malicious names survive.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Owned(&'a str, u64, u64),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
    Xattr(&'a str, &'a str, &'a [u8]),
}

fn raw_header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let bytes = name.as_bytes();
    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h
}

fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(p, mode) => {
                let h = raw_header(p, tar::EntryType::Directory, 0, *mode);
                b.append(&h, &[][..]).unwrap();
            }
            E::File(p, data, mode) => {
                let h = raw_header(p, tar::EntryType::Regular, data.len() as u64, *mode);
                b.append(&h, *data).unwrap();
            }
            E::Owned(p, uid, gid) => {
                let mut h = raw_header(p, tar::EntryType::Regular, 1, 0o640);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_cksum();
                b.append(&h, &b"x"[..]).unwrap();
            }
            E::Symlink(p, target) | E::Hardlink(p, target) => {
                let kind = if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = raw_header(p, kind, 0, 0o777);
                h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Fifo(p) => {
                let h = raw_header(p, tar::EntryType::Fifo, 0, 0o600);
                b.append(&h, &[][..]).unwrap();
            }
            E::Xattr(p, name, value) => {
                let key = format!("SCHILY.xattr.{name}");
                b.append_pax_extensions([(key.as_str(), *value)]).unwrap();
                let h = raw_header(p, tar::EntryType::Regular, 0, 0o644);
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn apply_all(root: &Path, layers: &[Vec<u8>]) -> Result<(), UnpackError> {
    let mut u = Unpacker::new(root);
    for l in layers {
        u.apply(&l[..])?;
    }
    u.finish()
}

#[test]
fn unpacks_files_dirs_links_modes_and_times() {
    let root = tempfile::tempdir().unwrap();
    let l = layer(&[
        E::Dir("bin/", 0o755),
        E::File("bin/busybox", b"#!elf", 0o4755),
        E::Symlink("bin/sh", "busybox"),
        E::Hardlink("bin/ash", "bin/busybox"),
        E::Dir("ro/", 0o555),
        E::File("ro/file", b"data", 0o444),
        E::File("deep/implicit/parent", b"p", 0o600),
        E::Fifo("run.fifo"),
    ]);
    let stats = unpack(&l[..], root.path()).unwrap();
    assert_eq!(stats.entries, 8);
    assert_eq!(stats.file_bytes, 10);
    let r = root.path();
    let m = std::fs::metadata(r.join("bin/busybox")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(m.mtime(), 1_700_000_000);
    assert_eq!(
        std::fs::read_link(r.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let ash = std::fs::metadata(r.join("bin/ash")).unwrap();
    assert_eq!(ash.ino(), m.ino(), "hard link shares the inode");
    assert_eq!(
        std::fs::metadata(r.join("ro"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o555
    );
    assert_eq!(std::fs::read(r.join("ro/file")).unwrap(), b"data");
    assert_eq!(std::fs::read(r.join("deep/implicit/parent")).unwrap(), b"p");
    assert!(std::fs::symlink_metadata(r.join("run.fifo"))
        .unwrap()
        .file_type()
        .is_fifo_like());
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn unlisted_directories_and_the_root_are_the_same_on_every_unpack() {
    let dir_of = |root: &Path, rel: &str| {
        let m = std::fs::metadata(root.join(rel)).unwrap();
        (m.permissions().mode() & 0o7777, m.mtime())
    };
    // No `./` entry and no entries for `a/` or `a/b/`; `c/` is listed (0700) in a later layer.
    let l1 = layer(&[
        E::File("a/b/file", b"x", 0o644),
        E::File("c/f", b"y", 0o644),
    ]);
    let l2 = layer(&[E::Dir("c/", 0o700), E::File("a/more", b"z", 0o644)]);
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    apply_all(one.path(), &[l1.clone(), l2.clone()]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(10));
    apply_all(two.path(), &[l1, l2]).unwrap();
    for rel in ["", "a", "a/b"] {
        assert_eq!(dir_of(one.path(), rel), (0o755, 0), "{rel:?}");
        assert_eq!(dir_of(two.path(), rel), (0o755, 0), "{rel:?}");
    }
    assert_eq!(dir_of(one.path(), "c"), (0o700, 1_700_000_000));
    // A layer's `./` entry sets the root.
    let three = tempfile::tempdir().unwrap();
    apply_all(three.path(), &[layer(&[E::Dir("./", 0o750)])]).unwrap();
    assert_eq!(dir_of(three.path(), ""), (0o750, 1_700_000_000));
}

#[test]
fn applies_ownership_when_running_as_root() {
    let root = tempfile::tempdir().unwrap();
    unpack(&layer(&[E::Owned("owned", 1234, 5678)])[..], root.path()).unwrap();
    let m = std::fs::metadata(root.path().join("owned")).unwrap();
    if rustix::process::geteuid().is_root() {
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
    } else {
        assert_eq!(m.uid(), rustix::process::geteuid().as_raw());
    }
}

#[test]
fn whiteout_removes_lower_layer_entries() {
    let root = tempfile::tempdir().unwrap();
    let lower = layer(&[
        E::File("etc/keep", b"k", 0o644),
        E::File("etc/gone", b"g", 0o644),
        E::File("var/cache/a/b", b"b", 0o644),
    ]);
    let upper = layer(&[
        E::File("etc/.wh.gone", b"", 0o644),
        E::File("var/cache/.wh.a", b"", 0o644),
    ]);
    apply_all(root.path(), &[lower, upper]).unwrap();
    let r = root.path();
    assert!(r.join("etc/keep").exists());
    assert!(!r.join("etc/gone").exists());
    assert!(
        !r.join("etc/.wh.gone").exists(),
        "whiteout markers are not files"
    );
    assert!(!r.join("var/cache/a").exists());
    assert!(r.join("var/cache").is_dir());
}

#[test]
fn opaque_directory_hides_lower_content_but_keeps_its_own_layer() {
    let root = tempfile::tempdir().unwrap();
    let lower = layer(&[
        E::File("data/old1", b"1", 0o644),
        E::File("data/sub/old2", b"2", 0o644),
    ]);
    // The new file comes before the marker in the tar: it must survive.
    let upper = layer(&[
        E::Dir("data/", 0o755),
        E::File("data/new", b"n", 0o644),
        E::File("data/.wh..wh..opq", b"", 0o644),
    ]);
    apply_all(root.path(), &[lower, upper]).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(root.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["new"]);
}

#[test]
fn later_layers_replace_files_with_dirs_and_back() {
    let root = tempfile::tempdir().unwrap();
    let l1 = layer(&[
        E::File("x", b"file", 0o644),
        E::Dir("y/", 0o755),
        E::File("y/z", b"z", 0o644),
    ]);
    let l2 = layer(&[E::Dir("x/", 0o700), E::File("y", b"now a file", 0o644)]);
    apply_all(root.path(), &[l1, l2]).unwrap();
    assert!(root.path().join("x").is_dir());
    assert_eq!(std::fs::read(root.path().join("y")).unwrap(), b"now a file");
}

#[test]
fn rejects_path_traversal_in_names_and_hard_links() {
    for bad in [
        layer(&[E::File("../escaped", b"x", 0o644)]),
        layer(&[E::File("a/../../escaped", b"x", 0o644)]),
        layer(&[E::Hardlink("passwd", "../../../../etc/passwd")]),
        layer(&[E::File("a/.wh...", b"", 0o644)]),
    ] {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let err = unpack(&bad[..], &root).unwrap_err();
        assert!(matches!(err, UnpackError::PathTraversal { .. }), "{err:?}");
        assert!(!outer.path().join("escaped").exists());
    }
}

#[test]
fn rejects_writing_through_a_symlink_that_escapes_the_root() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let victim = outer.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let evil = layer(&[
        E::Symlink("link", "../victim"),
        E::File("link/pwned", b"x", 0o644),
    ]);
    let err = unpack(&evil[..], &root).unwrap_err();
    assert!(matches!(err, UnpackError::SymlinkEscape { .. }), "{err:?}");
    assert!(err.to_string().contains("link/pwned"), "{err}");
    assert!(!victim.join("pwned").exists());

    // The same through two layers, and via a hard link target.
    let l1 = layer(&[E::Symlink("up", "../../../../..")]);
    let l2 = layer(&[E::File("up/tmp/pwned", b"x", 0o644)]);
    let err = apply_all(&root, &[l1, l2]).unwrap_err();
    assert!(matches!(err, UnpackError::SymlinkEscape { .. }), "{err:?}");
    let err = unpack(&layer(&[E::Hardlink("h", "up/etc/passwd")])[..], &root).unwrap_err();
    assert!(matches!(err, UnpackError::SymlinkEscape { .. }), "{err:?}");
}

#[test]
fn absolute_symlinks_on_a_path_resolve_inside_the_root() {
    let root = tempfile::tempdir().unwrap();
    let l1 = layer(&[
        E::Dir("usr/lib/", 0o755),
        E::Symlink("lib", "/usr/lib"),
        E::Symlink("loop", "loop"),
    ]);
    let l2 = layer(&[E::File("lib/libc.so", b"elf", 0o755)]);
    apply_all(root.path(), &[l1.clone(), l2]).unwrap();
    assert_eq!(
        std::fs::read(root.path().join("usr/lib/libc.so")).unwrap(),
        b"elf"
    );
    let err = unpack(&layer(&[E::File("loop/x", b"", 0o644)])[..], root.path()).unwrap_err();
    assert!(matches!(err, UnpackError::SymlinkLoop { .. }), "{err:?}");
}

#[test]
fn hard_link_to_something_missing_is_rejected() {
    let root = tempfile::tempdir().unwrap();
    let err = unpack(&layer(&[E::Hardlink("h", "nowhere")])[..], root.path()).unwrap_err();
    assert!(matches!(err, UnpackError::BadHardLink { .. }), "{err:?}");
}

#[test]
fn truncated_archive_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    let l = layer(&[E::File("big", &[7u8; 4096], 0o644)]);
    let err = unpack(&l[..1024], root.path()).unwrap_err();
    assert!(matches!(err, UnpackError::Read(_)), "{err:?}");
}

#[test]
fn applies_xattrs_where_the_file_system_allows() {
    let root = tempfile::tempdir().unwrap();
    let probe = root.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    if rustix::fs::lsetxattr(&probe, "user.probe", b"1", rustix::fs::XattrFlags::empty()).is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: the temporary directory's file system has no user xattrs"
        );
        eprintln!("file system without user xattrs: skipping");
        return;
    }
    unpack(&layer(&[E::Xattr("f", "user.a3s", b"v1")])[..], root.path()).unwrap();
    let mut buf = [0u8; 16];
    let n = rustix::fs::lgetxattr(root.path().join("f"), "user.a3s", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"v1");
}

#[test]
fn decompress_sniffs_gzip_zstd_and_plain() {
    let l = layer(&[E::File("f", b"hello", 0o644)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&l).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::stream::encode_all(&l[..], 3).unwrap();
    for blob in [l.clone(), gz, zst] {
        let root = tempfile::tempdir().unwrap();
        unpack(decompress(&blob[..]).unwrap(), root.path()).unwrap();
        assert_eq!(std::fs::read(root.path().join("f")).unwrap(), b"hello");
    }
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    const NAMES: &[&str] = &["a", "b", "..", ".", "etc", ".wh.a", ".wh..wh..opq", "x y"];
    const TARGETS: &[&str] = &[
        "..",
        "../..",
        "/",
        "/etc",
        "a",
        "../a/..",
        "/../../..",
        "b/../../..",
    ];

    #[derive(Debug, Clone)]
    enum Op {
        Dir(Vec<usize>),
        File(Vec<usize>),
        Symlink(Vec<usize>, usize),
        Hardlink(Vec<usize>, Vec<usize>),
    }

    fn path(ix: &[usize]) -> String {
        ix.iter()
            .map(|i| NAMES[i % NAMES.len()])
            .collect::<Vec<_>>()
            .join("/")
    }

    fn op() -> impl Strategy<Value = Op> {
        let p = proptest::collection::vec(0..NAMES.len(), 1..4);
        prop_oneof![
            p.clone().prop_map(Op::Dir),
            p.clone().prop_map(Op::File),
            (p.clone(), 0..TARGETS.len()).prop_map(|(a, t)| Op::Symlink(a, t)),
            (p.clone(), p).prop_map(|(a, b)| Op::Hardlink(a, b)),
        ]
    }

    fn build(ops: &[Op]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for o in ops {
            let (name, kind, link, data): (String, tar::EntryType, String, &[u8]) = match o {
                Op::Dir(p) => (path(p) + "/", tar::EntryType::Directory, String::new(), b""),
                Op::File(p) => (path(p), tar::EntryType::Regular, String::new(), b"data"),
                Op::Symlink(p, t) => (
                    path(p),
                    tar::EntryType::Symlink,
                    TARGETS[*t].to_owned(),
                    b"",
                ),
                Op::Hardlink(p, t) => (path(p), tar::EntryType::Link, path(t), b""),
            };
            let mut h = raw_header(&name, kind, data.len() as u64, 0o755);
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn snapshot(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                    stack.push(p.clone());
                }
                out.push(p);
            }
        }
        out.sort();
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the layers contain, nothing outside the root is created or changed.
        #[test]
        fn nothing_is_written_outside_the_root(l1 in proptest::collection::vec(op(), 0..8), l2 in proptest::collection::vec(op(), 0..8)) {
            let outer = tempfile::tempdir().unwrap();
            let root = outer.path().join("r/o/o/t");
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(outer.path().join("sentinel"), b"keep").unwrap();
            let before: Vec<PathBuf> = snapshot(outer.path()).into_iter().filter(|p| !p.starts_with(&root)).collect();
            let mut u = Unpacker::new(&root);
            let _ = u.apply(&build(&l1)[..]).and_then(|_| u.apply(&build(&l2)[..]));
            let after: Vec<PathBuf> = snapshot(outer.path()).into_iter().filter(|p| !p.starts_with(&root)).collect();
            prop_assert_eq!(before, after);
            prop_assert_eq!(std::fs::read(outer.path().join("sentinel")).unwrap(), b"keep");
        }
    }
}
