use std::io::Write;
use std::process::Command;

use a3s_vmm::proto::{GuestSetup, ProcessSpec};

use super::*;
use crate::boxes::state::{self, BoxId, BoxSpec, BoxState};

/// `du -sB1` / `du -sb` of paths, as one invocation (inodes counted once).
fn du(paths: &[PathBuf], apparent: bool) -> u64 {
    let mut c = Command::new("du");
    c.arg("-sc").arg(if apparent { "-b" } else { "-B1" });
    let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        return 0;
    }
    let out = c.args(existing).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let total = text.lines().last().unwrap();
    total.split_whitespace().next().unwrap().parse().unwrap()
}

fn rootfs_tar(extra: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(extra.len() as u64 + 5);
    h.set_mode(0o644);
    let mut data = b"hello".to_vec();
    data.extend_from_slice(extra);
    b.append_data(&mut h, "etc/motd", &data[..]).unwrap();
    b.into_inner().unwrap()
}

struct Home {
    _tmp: tempfile::TempDir,
    home: A3sHome,
    store: ImageStore,
}

impl Home {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let home = A3sHome::at(tmp.path().join("home"));
        let store = ImageStore::open(home.root().join("images")).unwrap();
        Self {
            _tmp: tmp,
            home,
            store,
        }
    }

    fn import(&self, name: &str, extra: &[u8]) -> Digest {
        let tar = self
            .home
            .root()
            .join(format!("{}.tar", name.replace('/', "_")));
        std::fs::write(&tar, rootfs_tar(extra)).unwrap();
        let img = self
            .store
            .import_rootfs(&tar, &name.parse().unwrap())
            .unwrap();
        std::fs::remove_file(&tar).unwrap();
        img.digest
    }

    /// What the new boot path derives from an image: a sparse filesystem image and metadata.
    fn derive(&self, d: &Digest, unpacked: u64) {
        let dir = self.store.dir().join("rootfs");
        sparse(&dir.join(format!("{}.erofs", d.hex())), 64 << 20, 12288);
        std::fs::write(
            dir.join(format!("{}.erofs.json", d.hex())),
            format!(r#"{{"root_hash":"00","data_blocks":3,"hash_offset":12288,"size":67108864,"unpacked_bytes":{unpacked}}}"#),
        )
        .unwrap();
    }

    /// Legacy per-image cache entries of older versions.
    fn legacy(&self, d: &Digest) -> [PathBuf; 2] {
        let cache = self.home.root().join("cache");
        let cpio = cache.join("rootfs").join(format!("{}.cpio", d.hex()));
        let img = cache
            .join("initrd")
            .join(format!("0123456789abcdef-{}.img", d.hex()));
        for p in [&cpio, &img] {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, vec![1u8; 20_000]).unwrap();
        }
        [cpio, img]
    }

    fn add_box(&self, name: &str, image: &Digest, running: bool) -> BoxId {
        let id = BoxId::random();
        let dir = self.home.root().join("boxes").join(id.as_str());
        std::fs::create_dir_all(&dir).unwrap();
        let rec = BoxRecord {
            version: state::RECORD_VERSION,
            id: id.clone(),
            name: name.into(),
            image: "x/img:latest".into(),
            image_digest: image.to_string(),
            created_at: state::now_rfc3339(),
            spec: BoxSpec {
                process: ProcessSpec::default(),
                setup: GuestSetup::default(),
                vcpus: 1,
                mem_mib: 256,
                memory_limit_bytes: None,
                pod_memory_bytes: None,
                kernel_args: vec![],
                auto_remove: false,
                tee: None,
                health: None,
                restart: Default::default(),
                labels: Default::default(),
                stop_signal: None,
                stop_timeout: None,
                layer_bytes: 1 << 30,
                security: None,
            },
            state: if running {
                BoxState::Running {
                    monitor_pid: std::process::id(),
                    qemu_pid: std::process::id(),
                }
            } else {
                BoxState::Exited {
                    exit_code: 0,
                    error: None,
                }
            },
            kernel_cmdline: None,
            vm_mem_mib: None,
            started_at: None,
            finished_at: None,
            boot: None,
            start_count: 0,
            stopped_by_user: false,
            tee: None,
            health: None,
            paused: false,
            oom_killed: false,
            timings: Vec::new(),
            stop_timings: Vec::new(),
        };
        state::write_record(&dir.join("state.json"), &rec).unwrap();
        sparse(&dir.join(RW_IMAGE), 1 << 30, 8192);
        std::fs::write(dir.join("console.log"), vec![b'x'; 3000]).unwrap();
        id
    }
}

/// A sparse file of `len` bytes with `data` bytes actually written.
fn sparse(path: &Path, len: u64, data: usize) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
    (&f).write_all(&vec![9u8; data]).unwrap();
    f.sync_all().unwrap();
}

fn dead_pid() -> u32 {
    u32::MAX - 1
}

#[test]
fn df_matches_du_and_counts_sparse_layers_by_allocated_bytes() {
    let h = Home::new();
    let used = h.import("x/used", b"");
    let idle = h.import("x/idle", &[5u8; 50_000]);
    h.derive(&used, 777);
    h.derive(&idle, 888);
    let legacy = h.legacy(&idle);
    let running = h.add_box("web", &used, true);
    let stopped = h.add_box("old", &used, false);
    let volumes = Volumes::open(&h.home);
    volumes.create(&"unused".parse().unwrap()).unwrap();
    std::fs::write(
        volumes.data_dir(&"unused".parse().unwrap()).join("f"),
        vec![3u8; 10_000],
    )
    .unwrap();
    let cache = h.home.root().join("cache");
    for (p, n) in [
        ("kernels/6.12-abc/vmlinux", 30_000),
        ("initrd/base-0123456789abcdef.cpio", 40_000),
        ("kds/vcek.der", 1_000),
        ("layers/ext4-1g.img", 5_000),
    ] {
        std::fs::create_dir_all(cache.join(p).parent().unwrap()).unwrap();
        std::fs::write(cache.join(p), vec![1u8; n]).unwrap();
    }
    let stale = cache.join(format!("initrd/.base-x.cpio.tmp-{}", dead_pid()));
    std::fs::write(&stale, vec![1u8; 7_000]).unwrap();
    let busy = cache.join(format!("initrd/.base-y.cpio.tmp-{}", std::process::id()));
    std::fs::write(&busy, vec![1u8; 7_000]).unwrap();

    let r = df(&h.home).unwrap();
    let root = h.home.root();
    for (cat, dir) in [
        (&r.images, "images"),
        (&r.containers, "boxes"),
        (&r.volumes, "volumes"),
        (&r.cache, "cache"),
    ] {
        assert_eq!(cat.size.allocated, du(&[root.join(dir)], false), "{dir}");
        assert_eq!(cat.size.apparent, du(&[root.join(dir)], true), "{dir}");
    }
    // Images: two, one used by boxes; the idle one is reclaimable with all it derived.
    assert_eq!((r.images.total, r.images.active), (2, 1));
    let idle_row = r
        .image_rows
        .iter()
        .find(|i| i.digest == idle.to_string())
        .unwrap();
    assert_eq!(idle_row.unpacked_bytes, 888);
    assert_eq!(idle_row.references, ["x/idle:latest"]);
    assert_eq!(r.images.reclaimable, idle_row.disk);
    // Boxes: the 1 GiB writable layers count what they hold.
    assert_eq!((r.containers.total, r.containers.active), (2, 1));
    let b = Boxes::open(&h.home);
    assert_eq!(
        r.containers.reclaimable.allocated,
        du(&[b.box_dir(&stopped)], false)
    );
    let row = r.box_rows.iter().find(|x| x.name == "web").unwrap();
    assert_eq!(row.writable.apparent, 1 << 30);
    assert_eq!(
        row.writable.allocated,
        du(&[b.box_dir(&running).join(RW_IMAGE)], false)
    );
    assert!(row.writable.allocated < 1 << 20, "{row:?}");
    assert!(r.containers.size.allocated < 1 << 20);
    assert!(r.containers.size.apparent > 2 << 30);
    // Volumes.
    assert_eq!((r.volumes.total, r.volumes.active), (1, 0));
    assert_eq!(
        r.volumes.reclaimable.allocated,
        du(&[root.join("volumes/unused")], false)
    );
    // Cache: legacy entries of an image no running box booted, and the dead writer's temp file.
    let mut reclaimable = legacy.to_vec();
    reclaimable.push(stale.clone());
    assert_eq!(r.cache.reclaimable.allocated, du(&reclaimable, false));
    let kinds: Vec<(&str, bool)> = r
        .cache_rows
        .iter()
        .map(|c| (c.kind.as_str(), c.reclaimable))
        .collect();
    assert!(kinds.contains(&("legacy-rootfs", true)), "{kinds:?}");
    assert!(kinds.contains(&("legacy-initrd", true)), "{kinds:?}");
    assert!(kinds.contains(&("initrd", false)), "{kinds:?}");
    assert!(kinds.contains(&("layers", false)), "{kinds:?}");
    assert!(
        r.cache_rows
            .iter()
            .any(|c| c.path.ends_with(&format!("tmp-{}", std::process::id())) && !c.reclaimable),
        "a live writer's temp file stays"
    );
}

#[test]
fn prune_all_images_keeps_what_boxes_use_and_removes_the_rest_with_its_caches() {
    let h = Home::new();
    let used = h.import("x/used", b"");
    let idle = h.import("x/idle", &[5u8; 50_000]);
    h.derive(&used, 1);
    h.derive(&idle, 2);
    let used_legacy = h.legacy(&used);
    let idle_legacy = h.legacy(&idle);
    h.add_box("old", &used, false);
    // The box's image lost its name: it is still kept.
    h.store.remove_ref(&"x/used".parse().unwrap()).unwrap();

    let plain = prune_images(&h.home, false).unwrap();
    assert!(plain.untagged.is_empty());
    assert!(plain.store.rootfs.is_empty(), "{:?}", plain.store);
    assert!(plain.cache.removed.is_empty());

    let all = prune_images(&h.home, true).unwrap();
    assert_eq!(all.untagged, ["x/idle".parse::<ImageRef>().unwrap()]);
    assert_eq!(all.store.rootfs, std::slice::from_ref(&idle));
    for p in &idle_legacy {
        assert!(!p.exists(), "{}", p.display());
    }
    let rootfs = h.store.dir().join("rootfs");
    assert!(!rootfs.join(format!("{}.erofs", idle.hex())).exists());
    assert!(!rootfs.join(format!("{}.erofs.json", idle.hex())).exists());
    assert!(rootfs.join(format!("{}.erofs", used.hex())).exists());
    assert!(rootfs.join(format!("{}.erofs.json", used.hex())).exists());
    assert!(h.store.manifest(&used).is_ok());
    for p in &used_legacy {
        assert!(p.exists(), "{}", p.display());
    }
    assert!(all.freed().allocated > 0);
    // Nothing under the store or the caches names the deleted image.
    let mut stack = vec![h.home.root().to_owned()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert!(
                !p.to_string_lossy().contains(idle.hex()),
                "{} left",
                p.display()
            );
        }
    }
}

#[test]
fn prune_caches_removes_legacy_entries_and_stale_temp_files_only() {
    let h = Home::new();
    let running = h.import("x/run", b"");
    let gone = h.import("x/gone", b"1");
    let keep_running = h.legacy(&running);
    let drop_gone = h.legacy(&gone);
    h.add_box("web", &running, true);
    let cache = h.home.root().join("cache");
    let base = cache.join("initrd/base-0123456789abcdef.cpio");
    std::fs::write(&base, b"base").unwrap();
    let stale = cache.join(format!("kernels/.vmlinux.tmp-{}", dead_pid()));
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"half").unwrap();
    let removed_box = h.home.root().join("boxes/.removed-0123");
    std::fs::create_dir_all(&removed_box).unwrap();
    std::fs::write(removed_box.join("rw.img"), b"x").unwrap();
    // An interrupted removal from two hours ago (a fresh one may still be in progress).
    std::fs::File::open(&removed_box)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let removing = h.home.root().join("boxes/.removed-4567");
    std::fs::create_dir_all(&removing).unwrap();
    let before = du(
        &[
            drop_gone[0].clone(),
            drop_gone[1].clone(),
            stale.clone(),
            removed_box.clone(),
        ],
        false,
    );

    let out = prune_caches(&h.home).unwrap();
    assert_eq!(out.freed.allocated, before);
    assert_eq!(out.removed.len(), 4, "{:?}", out.removed);
    for p in drop_gone.iter().chain([&stale]) {
        assert!(!p.exists(), "{}", p.display());
    }
    for p in keep_running.iter().chain([&base]) {
        assert!(p.exists(), "{}", p.display());
    }
    assert!(!removed_box.exists());
    assert!(removing.exists());
}

#[test]
fn the_last_name_of_an_image_in_use_cannot_be_removed() {
    let h = Home::new();
    let d = h.import("x/a", b"");
    h.add_box("web", &d, false);
    let a: ImageRef = "x/a".parse().unwrap();
    match check_untag(&h.home, &a) {
        Err(e @ DiskError::ImageInUse { .. }) => {
            assert!(e.to_string().contains("web"), "{e}");
            assert!(e.hint().unwrap().contains("rmi -f"));
        }
        other => panic!("{other:?}"),
    }
    let by_digest: ImageRef = format!("x/a@{d}").parse().unwrap();
    assert!(check_untag(&h.home, &by_digest).is_err());
    // Another name keeps the image: untagging one is fine.
    h.store
        .set_ref(&"x/b".parse().unwrap(), h.store.lookup(&a).unwrap())
        .unwrap();
    check_untag(&h.home, &a).unwrap();
    check_untag(&h.home, &"x/none".parse().unwrap()).unwrap();
}

#[test]
fn images_pod_containers_run_on_are_kept_by_prune_and_refused_by_rmi() {
    let h = Home::new();
    let d = h.import("x/pod-image", b"pod");
    let id = "c".repeat(64);
    crate::pod_containers::Containers::open(&h.home)
        .save(&crate::pod_containers::test_record(&id, &d.to_string(), 1))
        .unwrap();
    let name: ImageRef = "x/pod-image".parse().unwrap();
    match check_untag(&h.home, &name) {
        Err(e @ DiskError::ImageInUse { .. }) => {
            assert!(
                e.to_string().contains("pod container(s) cccccccccccc"),
                "{e}"
            );
            let hint = e.hint().unwrap();
            assert!(hint.contains("crictl rm cccccccccccc"), "{hint}");
            assert!(!hint.contains("a3s-box rm"), "{hint}");
        }
        other => panic!("{other:?}"),
    }
    let pruned = prune_images(&h.home, true).unwrap();
    assert!(pruned.untagged.is_empty(), "{:?}", pruned.untagged);
    h.store.lookup(&name).unwrap();
}
