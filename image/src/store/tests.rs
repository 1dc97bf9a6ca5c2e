use std::io::Write;

use super::*;

fn rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("bin/busybox", b"not really busybox", 0o755);
    add("etc/hostname", b"box\n", 0o644);
    b.into_inner().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn r(s: &str) -> ImageRef {
    s.parse().unwrap()
}

#[test]
fn imports_plain_gzip_and_zstd_rootfs_tarballs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path().join("images")).unwrap();
    let plain = rootfs_tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::stream::encode_all(&plain[..], 3).unwrap();
    let mut digests = Vec::new();
    for (name, bytes, mt) in [
        ("a.tar", &plain, oci::OCI_LAYER_TAR),
        ("a.tar.gz", &gz, oci::OCI_LAYER_GZIP),
        ("a.tar.zst", &zst, oci::OCI_LAYER_ZSTD),
    ] {
        let reference = r(&format!("local/{}", name.replace('.', "-")));
        let img = store
            .import_rootfs(&write(tmp.path(), name, bytes), &reference)
            .unwrap();
        assert_eq!(img.reference, reference);
        assert_eq!(img.config.cmd, ["/bin/sh"]);
        assert!(img.config.env[0].starts_with("PATH="));
        let m = store.manifest(&img.digest).unwrap();
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].media_type, mt);
        assert_eq!(m.layers[0].digest, Digest::of(bytes));
        // The diff_id is the digest of the uncompressed tar whatever the compression.
        let cfg = store.config_file(&m).unwrap();
        assert_eq!(cfg.rootfs.diff_ids, [Digest::of(&plain)]);
        assert_eq!(store.resolve(&reference).unwrap(), img);
        let root = store.rootfs(&img).unwrap();
        assert_eq!(std::fs::read(root.join("etc/hostname")).unwrap(), b"box\n");
        digests.push(img.digest);
    }
    // Same bytes, same image.
    let again = store
        .import_rootfs(&tmp.path().join("a.tar"), &r("local/again"))
        .unwrap();
    assert_eq!(again.digest, digests[0]);
}

#[test]
fn resolves_by_tag_and_by_digest_within_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let img = store
        .import_rootfs(
            &write(tmp.path(), "r.tar", &rootfs_tar()),
            &r("example.com/app:1"),
        )
        .unwrap();
    let by_digest = r(&format!("example.com/app@{}", img.digest));
    assert_eq!(store.resolve(&by_digest).unwrap().digest, img.digest);
    let other_repo = r(&format!("example.com/other@{}", img.digest));
    assert!(matches!(
        store.resolve(&other_repo),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn missing_image_error_hints_at_pull_and_import() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let err = store.resolve(&r("busybox")).unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
    assert_eq!(
        err.to_string(),
        "image busybox:latest not found in the local store"
    );
    let hint = err.hint().unwrap();
    assert!(
        hint.contains("a3s-box pull busybox:latest") && hint.contains("a3s-box import"),
        "{hint}"
    );
}

#[test]
fn rejects_files_that_are_not_tarballs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path().join("s")).unwrap();
    for (name, bytes) in [
        ("empty", &b""[..]),
        ("text", &b"hello world, not a tar"[..]),
    ] {
        let err = store
            .import_rootfs(&write(tmp.path(), name, bytes), &r("x/y"))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotATarball { .. }),
            "{name}: {err:?}"
        );
        assert!(err.hint().is_some());
    }
    assert!(
        store.refs().unwrap().is_empty(),
        "nothing tagged on failure"
    );
}

#[test]
fn write_blob_refuses_content_that_does_not_match_its_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let claimed = Digest::of(b"good");
    let err = store
        .write_blob(&b"evil"[..], Some(&claimed), None)
        .unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err:?}");
    assert!(!store.has_blob(&claimed));
    assert!(!store.has_blob(&Digest::of(b"evil")));
    let err = store
        .write_blob(&b"good"[..], Some(&claimed), Some(5))
        .unwrap_err();
    assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err:?}");
    assert!(!store.has_blob(&claimed));
}

#[test]
fn corrupted_blobs_are_detected_on_read_and_unpack() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path().join("s")).unwrap();
    let img = store
        .import_rootfs(&write(tmp.path(), "r.tar", &rootfs_tar()), &r("x/y"))
        .unwrap();
    let m = store.manifest(&img.digest).unwrap();
    // Flip a byte inside a file's data in the (uncompressed) layer.
    let layer = store.blob_path(&m.layers[0].digest);
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[512] ^= 0x20;
    std::fs::write(&layer, &bytes).unwrap();
    let err = store.rootfs(&img).unwrap_err();
    assert!(matches!(err, StoreError::DiffIdMismatch { .. }), "{err:?}");
    assert!(err.hint().is_some());
    assert!(
        !store.dir().join("rootfs").join(img.digest.hex()).exists(),
        "no half-built rootfs"
    );
    // The boot image's path (layers unpacked into a scratch tree) refuses it the same way.
    let err = store.filesystem(&img).unwrap_err();
    assert!(matches!(err, StoreError::DiffIdMismatch { .. }), "{err:?}");
    assert!(
        !store.filesystem_path(img.digest.hex()).exists(),
        "no erofs image of a corrupt layer"
    );
    // Corrupt the config: every read of it fails.
    std::fs::write(store.blob_path(&m.config.digest), b"{}").unwrap();
    assert!(matches!(
        store.resolve(&img.reference),
        Err(StoreError::DigestMismatch { .. })
    ));
}

#[test]
fn rootfs_is_built_once_and_shared_by_concurrent_callers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path().join("s")).unwrap();
    let img = store
        .import_rootfs(&write(tmp.path(), "r.tar", &rootfs_tar()), &r("x/y"))
        .unwrap();
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| store.rootfs(&img).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    let marker = paths[0].join("marker");
    std::fs::write(&marker, b"").unwrap();
    assert_eq!(store.rootfs(&img).unwrap(), paths[0]);
    assert!(marker.exists(), "second call reuses the cached tree");
    let leftovers = std::fs::read_dir(store.dir().join("rootfs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn concurrent_imports_keep_every_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = write(tmp.path(), "r.tar", &rootfs_tar());
    let root = tmp.path().join("s");
    std::thread::scope(|s| {
        for i in 0..6 {
            let (tar, root) = (&tar, &root);
            s.spawn(move || {
                // Each thread opens its own store handle, like separate processes would.
                let store = ImageStore::open(root).unwrap();
                store.import_rootfs(tar, &r(&format!("x/y:{i}"))).unwrap();
            });
        }
    });
    let store = ImageStore::open(&root).unwrap();
    assert_eq!(store.refs().unwrap().len(), 6);
}

#[test]
fn prune_deletes_only_unreferenced_content() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path().join("s")).unwrap();
    let a = store
        .import_rootfs(&write(tmp.path(), "a.tar", &rootfs_tar()), &r("x/a"))
        .unwrap();
    let mut other = rootfs_tar();
    other.extend_from_slice(&[0u8; 1024]);
    let b = store
        .import_rootfs(&write(tmp.path(), "b.tar", &other), &r("x/b"))
        .unwrap();
    store.rootfs(&b).unwrap();
    let stray = store.write_blob_bytes(b"stray").unwrap();
    assert_eq!(store.prune().unwrap().blobs, vec![stray]);
    store.remove_ref(&r("x/b")).unwrap();
    let report = store.prune().unwrap();
    assert_eq!(report.rootfs, vec![b.digest]);
    assert_eq!(
        report.blobs.len(),
        3,
        "manifest, config, layer of b: {report:?}"
    );
    assert!(store.resolve(&r("x/a")).is_ok());
    assert!(store.rootfs(&a).unwrap().join("bin/busybox").exists());
}

/// Writes the files the boot path derives from an image: its filesystem image (sparse, so
/// allocated and apparent sizes differ) and the metadata beside it.
fn derive_erofs(store: &ImageStore, digest: &Digest, unpacked: u64) -> (PathBuf, PathBuf) {
    let dir = store.dir().join("rootfs");
    let img = dir.join(format!("{}{EROFS_SUFFIX}", digest.hex()));
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(8 * 1024 * 1024).unwrap();
    (&f).write_all(&[7u8; 8192]).unwrap();
    let meta = dir.join(format!("{}{EROFS_META_SUFFIX}", digest.hex()));
    std::fs::write(
        &meta,
        format!(
            r#"{{"root_hash":"ab","data_blocks":2,"hash_offset":8192,"size":8388608,"unpacked_bytes":{unpacked}}}"#
        ),
    )
    .unwrap();
    (img, meta)
}

#[test]
fn prune_removes_filesystem_images_of_unreachable_images_but_keeps_those_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path().join("s")).unwrap();
    let a = store
        .import_rootfs(&write(tmp.path(), "a.tar", &rootfs_tar()), &r("x/a"))
        .unwrap();
    let mut other = rootfs_tar();
    other.extend_from_slice(&[0u8; 1024]);
    let b = store
        .import_rootfs(&write(tmp.path(), "b.tar", &other), &r("x/b"))
        .unwrap();
    let (a_img, a_meta) = derive_erofs(&store, &a.digest, 10);
    let (b_img, b_meta) = derive_erofs(&store, &b.digest, 20);
    store.rootfs(&b).unwrap();
    store.remove_ref(&r("x/a")).unwrap();
    store.remove_ref(&r("x/b")).unwrap();

    // b is used by a box: everything of it stays although no reference reaches it.
    let roots = GcRoots::refs_and([b.digest.clone()]);
    let plan = store.gc_plan(&roots).unwrap();
    assert_eq!(plan.rootfs, vec![a.digest.clone()]);
    assert!(a_img.exists(), "planning deletes nothing");
    let report = store.prune_with(&roots).unwrap();
    assert_eq!(
        report.freed, plan.bytes,
        "the plan predicts what prune frees"
    );
    assert_eq!(report.rootfs, vec![a.digest.clone()]);
    assert_eq!(report.blobs.len(), 3, "{report:?}");
    assert!(!a_img.exists() && !a_meta.exists());
    assert!(b_img.exists() && b_meta.exists());
    assert!(store.dir().join("rootfs").join(b.digest.hex()).is_dir());
    assert!(store.manifest(&b.digest).is_ok());
    assert!(report.kept.contains(&b.digest));
    // The sparse image counted by its allocated blocks, not its 8 MiB length.
    assert!(report.freed.allocated < 1024 * 1024, "{:?}", report.freed);
    assert!(
        report.freed.apparent > 8 * 1024 * 1024,
        "{:?}",
        report.freed
    );

    // Once no box uses b, plain prune takes it all.
    let report = store.prune().unwrap();
    assert_eq!(report.rootfs, vec![b.digest.clone()]);
    assert!(!b_img.exists() && !b_meta.exists());
    let left: Vec<_> = std::fs::read_dir(store.dir().join("rootfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn unpacked_size_prefers_the_filesystem_image_metadata_then_the_tree_then_the_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path().join("s")).unwrap();
    let a = store
        .import_rootfs(&write(tmp.path(), "a.tar", &rootfs_tar()), &r("x/a"))
        .unwrap();
    let files = (b"not really busybox".len() + b"box\n".len()) as u64;
    assert_eq!(
        store.unpacked_size(&a.digest).unwrap(),
        (files, SizeSource::Layers)
    );
    store.rootfs(&a).unwrap();
    assert_eq!(
        store.unpacked_size(&a.digest).unwrap(),
        (files, SizeSource::Tree)
    );
    derive_erofs(&store, &a.digest, 4242);
    assert_eq!(
        store.unpacked_size(&a.digest).unwrap(),
        (4242, SizeSource::FilesystemImage)
    );
    std::fs::write(
        store
            .dir()
            .join("rootfs")
            .join(format!("{}{EROFS_META_SUFFIX}", a.digest.hex())),
        b"{not json",
    )
    .unwrap();
    assert!(matches!(
        store.unpacked_size(&a.digest),
        Err(StoreError::Malformed { .. })
    ));
}

#[test]
fn image_usage_counts_blobs_and_derived_files_and_tells_shared_blobs_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path().join("s")).unwrap();
    let a = store
        .import_rootfs(&write(tmp.path(), "a.tar", &rootfs_tar()), &r("x/a"))
        .unwrap();
    derive_erofs(&store, &a.digest, 99);
    let usage = store.image_usage(std::slice::from_ref(&a.digest)).unwrap();
    assert_eq!(usage[0].unpacked_bytes, 99);
    let mut du = DuCounter::new();
    let m = store.manifest(&a.digest).unwrap();
    for d in [&a.digest, &m.config.digest, &m.layers[0].digest] {
        du.add(&store.blob_path(d)).unwrap();
    }
    for p in store.derived_paths(&a.digest).unwrap() {
        du.add(&p).unwrap();
    }
    assert_eq!(usage[0].disk, du.total());
    assert_eq!(usage[0].shared, DiskUsage::default());
    // The same layer under a second manifest (another tag's config) is shared.
    let twice = [a.digest.clone(), a.digest.clone()];
    let usage = store.image_usage(&twice).unwrap();
    assert_eq!(
        usage[0].shared.allocated,
        usage[0].disk.allocated - {
            let mut d = DuCounter::new();
            for p in store.derived_paths(&a.digest).unwrap() {
                d.add(&p).unwrap();
            }
            d.total().allocated
        }
    );
}

#[test]
fn du_counts_allocated_blocks_of_sparse_files_and_hard_links_once() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t");
    std::fs::create_dir(&dir).unwrap();
    let sparse = dir.join("rw.img");
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(1 << 30).unwrap();
    (&f).write_all(&[1u8; 4096]).unwrap();
    f.sync_all().unwrap();
    std::fs::write(dir.join("a"), [2u8; 10_000]).unwrap();
    std::fs::hard_link(dir.join("a"), dir.join("b")).unwrap();
    std::os::unix::fs::symlink("a", dir.join("l")).unwrap();
    let u = disk_usage(&dir).unwrap();
    let m = |p: &str| std::fs::symlink_metadata(dir.join(p)).unwrap();
    let dirm = std::fs::metadata(&dir).unwrap();
    assert_eq!(
        u.allocated,
        (dirm.blocks() + m("rw.img").blocks() + m("a").blocks() + m("l").blocks()) * 512
    );
    assert_eq!(u.apparent, dirm.size() + (1 << 30) + 10_000 + 1);
    assert!(u.allocated < 1 << 20, "sparse: {u:?}");
    assert_eq!(tree_file_bytes(&dir).unwrap(), (1 << 30) + 10_000);
    assert_eq!(
        disk_usage(&tmp.path().join("missing")).unwrap(),
        DiskUsage::default()
    );
}
