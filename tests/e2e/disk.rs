//! `system df`, `system prune`, `container prune` and `rmi` against the on-disk layout (no VM:
//! the files a boot would derive are written by the test, as the layout documents them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Run, TestEnv};

fn ok(r: Run) -> Run {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    r
}

/// `du -s` of one path: allocated bytes (`-B1`) or apparent bytes (`-b`).
fn du(path: &Path, apparent: bool) -> u64 {
    if !path.exists() {
        return 0;
    }
    let mut c = Command::new("du");
    c.arg("-s");
    if apparent {
        c.args(["-b", "--apparent-size"]);
    } else {
        c.arg("-B1");
    }
    let out = c.arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn sparse(path: &Path, len: u64, data: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
    (&f).write_all(&vec![7u8; data]).unwrap();
    f.sync_all().unwrap();
}

fn import(env: &TestEnv, name: &str, payload: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/payload"), payload).unwrap();
    let tar = dir.path().join("rootfs.tar");
    let st = Command::new("tar")
        .args([
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let digest = ok(env.run(&["import", tar.to_str().unwrap(), name]))
        .stdout
        .trim()
        .to_owned();
    digest.strip_prefix("sha256:").unwrap().to_owned()
}

/// What the boot path derives from an image and what older versions cached per image.
fn derive(env: &TestEnv, hex: &str, unpacked: u64) -> Vec<PathBuf> {
    let rootfs = env.path("images/v1/rootfs");
    let erofs = rootfs.join(format!("{hex}.erofs"));
    sparse(&erofs, 256 << 20, 40960);
    let meta = rootfs.join(format!("{hex}.erofs.json"));
    std::fs::write(
        &meta,
        format!(r#"{{"root_hash":"ab","data_blocks":10,"hash_offset":40960,"size":268435456,"unpacked_bytes":{unpacked}}}"#),
    )
    .unwrap();
    let cpio = env.path(&format!("cache/rootfs/{hex}.cpio"));
    let initrd = env.path(&format!("cache/initrd/00112233aabbccdd-{hex}.img"));
    for p in [&cpio, &initrd] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, vec![1u8; 30_000]).unwrap();
    }
    vec![erofs, meta, cpio, initrd]
}

/// Every file under the home whose path names `hex`.
fn files_naming(env: &TestEnv, hex: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![env.home.path().to_owned()];
    while let Some(p) = stack.pop() {
        if p.is_dir() && !p.is_symlink() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        let under = p.starts_with(env.path("images")) || p.starts_with(env.path("cache"));
        if under && p.to_string_lossy().contains(hex) {
            out.push(p);
        }
    }
    out
}

#[test]
fn df_matches_du_and_prune_leaves_nothing_of_deleted_images() {
    let env = TestEnv::new();
    let keep = import(&env, "disk/keep:1", b"small");
    let drop = import(&env, "disk/drop:1", &vec![3u8; 200_000]);
    let keep_files = derive(&env, &keep, 5_000);
    let drop_files = derive(&env, &drop, 200_000);
    let id = ok(env.run(&["create", "--name", "holder", "disk/keep:1", "true"]))
        .stdout
        .trim()
        .to_owned();
    let rw = env.path(&format!("boxes/{id}/rw.img"));
    sparse(&rw, 1 << 30, 65536);
    std::fs::create_dir_all(env.path("cache/kernels/6.12-x")).unwrap();
    std::fs::write(env.path("cache/kernels/6.12-x/vmlinux"), vec![2u8; 50_000]).unwrap();
    std::fs::write(env.path("cache/initrd/base-00112233aabbccdd.cpio"), b"base").unwrap();

    // images: SIZE is the unpacked size from the filesystem image's metadata.
    let images = ok(env.run(&["images", "--format", "json"])).json_lines();
    let size_of = |name: &str| {
        images
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["Repository"].as_str().unwrap().ends_with(name))
            .unwrap()["Size"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Docker's decimal units.
    assert_eq!(size_of("disk/keep"), "5kB");
    assert_eq!(size_of("disk/drop"), "200kB");

    // df: every kind matches du of its directory, allocated and apparent.
    let df = ok(env.run(&["system", "df", "--format", "json"])).json();
    for (kind, dir) in [
        ("images", "images"),
        ("containers", "boxes"),
        ("volumes", "volumes"),
        ("cache", "cache"),
    ] {
        let p = env.path(dir);
        assert_eq!(
            df[kind]["size"]["allocated"].as_u64().unwrap(),
            du(&p, false),
            "{kind} allocated"
        );
        assert_eq!(
            df[kind]["size"]["apparent"].as_u64().unwrap(),
            du(&p, true),
            "{kind} apparent"
        );
    }
    assert_eq!(df["images"]["total"], 2);
    assert_eq!(df["images"]["active"], 1, "the created box uses keep");
    assert_eq!(df["containers"]["total"], 1);
    assert_eq!(df["containers"]["active"], 0);
    let row = &df["box_rows"][0];
    assert_eq!(row["name"], "holder");
    assert_eq!(row["writable"]["apparent"], 1u64 << 30);
    assert_eq!(
        row["writable"]["allocated"].as_u64().unwrap(),
        du(&rw, false)
    );
    // Legacy per-image entries are reclaimable cache, the base initrd and kernel are not.
    let legacy: u64 = keep_files[2..]
        .iter()
        .chain(&drop_files[2..])
        .map(|p| du(p, false))
        .sum();
    assert_eq!(
        df["cache"]["reclaimable"]["allocated"].as_u64().unwrap(),
        legacy
    );
    let text = ok(env.run(&["system", "df", "-v"])).stdout;
    for needle in [
        "TYPE",
        "RECLAIMABLE",
        "Images",
        "Containers",
        "Local Volumes",
        "Cache",
        "holder",
        "legacy-initrd",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }

    // rmi: the last name of an image a box uses is refused; another image goes with its
    // filesystem image and legacy caches.
    let refused = env.run(&["rmi", "disk/keep:1"]);
    assert_eq!(refused.code, 125, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("in use by box(es) holder"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("hint:"), "{}", refused.stderr);
    ok(env.run(&["rmi", "disk/drop:1"]));
    assert!(
        files_naming(&env, &drop).is_empty(),
        "{:?}",
        files_naming(&env, &drop)
    );
    for p in &keep_files {
        assert!(p.exists(), "{} removed", p.display());
    }

    // prune without -f and without a terminal refuses and removes nothing.
    let refused = env.run(&["system", "prune", "-a"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("-f"), "{}", refused.stderr);
    assert!(rw.exists());
    let refused = env.run(&["container", "prune"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);

    // --volumes takes anonymous volumes no box uses, never named ones (Docker 23's rule).
    ok(env.run(&["volume", "create", "named-kept"]));
    ok(env.run(&[
        "create",
        "--name",
        "anon-owner",
        "-v",
        "/data",
        "busybox",
        "true",
    ]));
    ok(env.run(&["rm", "anon-owner"]));
    let dangling = ok(env.run(&["volume", "ls", "--format", "{{.Name}}"])).stdout;
    assert_eq!(dangling.lines().count(), 2, "{dangling}");

    // prune -a -f: the stopped box, then its image with everything derived from it.
    let pruned = ok(env.run(&["system", "prune", "-a", "-f", "--volumes"])).stdout;
    let volumes = ok(env.run(&["volume", "ls", "--format", "{{.Name}}"])).stdout;
    assert_eq!(volumes, "named-kept\n", "{pruned}");
    assert!(
        pruned.contains("Deleted Boxes:") && pruned.contains(&id),
        "{pruned}"
    );
    assert!(pruned.contains("untagged: disk/keep:1"), "{pruned}");
    assert!(pruned.contains("Total reclaimed space: "), "{pruned}");
    assert!(!env.path(&format!("boxes/{id}")).exists());
    assert!(
        files_naming(&env, &keep).is_empty(),
        "{:?}",
        files_naming(&env, &keep)
    );
    assert!(env.path("cache/initrd/base-00112233aabbccdd.cpio").exists());
    assert!(env.path("cache/kernels/6.12-x/vmlinux").exists());
    let df = ok(env.run(&["system", "df", "--format", "json"])).json();
    assert_eq!(df["images"]["total"], 0);
    assert_eq!(df["containers"]["total"], 0);
    assert_eq!(df["cache"]["reclaimable"]["allocated"], 0);

    // Removals are audited like rm and rmi.
    let events = ok(env.run(&["audit", "--format", "json"])).json();
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in ["box.remove", "image.remove", "image.prune", "cache.prune"] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "image.remove" && e["outcome"] == "denied"),
        "the refused rmi is audited"
    );

    // Bad input: unknown flags are usage errors.
    assert_eq!(env.run(&["system", "df", "--format", "yaml"]).code, 2);
    assert_eq!(env.run(&["system", "prune", "--bogus"]).code, 2);
}
