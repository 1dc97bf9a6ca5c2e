//! Root filesystems on verified block devices (issue 15): the image's erofs through dm-verity,
//! a writable layer per box that persists until `rm`, encrypted for confidential boxes.
//! Real VMs under TCG; each test boots only what its assertions need.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::{Run, TestEnv};

fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        crate::support::build_guest_init();
        TestEnv::new()
    })
}

/// A home of its own for the test that damages cached images (the others boot in parallel).
fn tamper_env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        crate::support::build_guest_init();
        TestEnv::new()
    })
}

fn run(args: &[&str]) -> Run {
    env().run(args)
}

fn ok(args: &[&str]) -> Run {
    ok_in(env(), args)
}

fn ok_in(env: &TestEnv, args: &[&str]) -> Run {
    let r = env.run(args);
    assert_eq!(
        r.code, 0,
        "a3s-box {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

fn inspect(name: &str) -> serde_json::Value {
    ok(&["inspect", name]).json()[0].clone()
}

fn box_dir(name: &str) -> PathBuf {
    let id = inspect(name)["id"].as_str().unwrap().to_owned();
    env().path("boxes").join(id)
}

/// Waits (at most two minutes) until `name` has exited; returns its state.
fn exited(name: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = inspect(name)["state"].clone();
        if state["status"] == "exited" {
            return state;
        }
        assert!(Instant::now() < deadline, "{name} did not exit: {state}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The busybox image's filesystem image and its metadata (built on first use).
fn busybox_fs_image(env: &TestEnv) -> (PathBuf, serde_json::Value) {
    ok_in(env, &["run", "--rm", "busybox", "true"]);
    let dir = env.path("images/v1/rootfs");
    let image = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "erofs"))
        .expect("no .erofs image built");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.json", image.display())).unwrap())
            .unwrap();
    (image, meta)
}

fn flip_byte(path: &Path, offset: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[b[0] ^ 0x01]).unwrap();
    f.sync_all().unwrap();
}

/// Whether `needle` occurs anywhere in the (sparse, possibly large) file.
fn file_contains(path: &Path, needle: &[u8]) -> bool {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 4 << 20];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return false;
        }
        carry.extend_from_slice(&buf[..n]);
        if carry.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
        let keep = carry.len().saturating_sub(needle.len());
        carry.drain(..keep);
    }
}

#[test]
fn the_writable_layer_persists_until_rm_and_storage_opt_sizes_it() {
    ok(&[
        "run",
        "-d",
        "--name",
        "keep",
        "--storage-opt",
        "size=2g",
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(inspect("keep")["spec"]["layer_bytes"], 2u64 << 30);
    ok(&[
        "exec",
        "keep",
        "sh",
        "-c",
        "mkdir -p /data && echo kept > /data/f",
    ]);
    // df of / is the writable layer's filesystem: about 2 GiB, not guest RAM.
    let df = ok(&["exec", "keep", "df", "-k", "/"]).stdout;
    let total_kib: u64 = df
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected df output: {df}"));
    assert!(
        (1_800_000..=2_100_000).contains(&total_kib),
        "df says {total_kib} KiB"
    );
    let disk = box_dir("keep").join("rw.img");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 2 << 30);

    ok(&["restart", "keep"]);
    assert_eq!(ok(&["exec", "keep", "cat", "/data/f"]).stdout, "kept\n");
    ok(&["stop", "keep"]);
    ok(&["start", "keep"]);
    assert_eq!(ok(&["exec", "keep", "cat", "/data/f"]).stdout, "kept\n");

    // A stop that runs out of time (-t 0) kills the workload as Docker's SIGKILL does, but
    // what it wrote stays: the guest syncs before the VM goes (it used to be killed with its
    // page cache, and the write was lost).
    ok(&["exec", "keep", "sh", "-c", "echo late > /data/g"]);
    ok(&["stop", "-t", "0", "keep"]);
    assert_eq!(exited("keep")["exit_code"], 137, "{}", inspect("keep"));
    ok(&["start", "keep"]);
    assert_eq!(ok(&["exec", "keep", "cat", "/data/g"]).stdout, "late\n");
    ok(&["stop", "keep"]);

    // Another box of the same image has its own layer.
    let other = run(&["run", "--rm", "busybox", "cat", "/data/f"]);
    assert_ne!(other.code, 0, "{other:?}");

    ok(&["rm", "-f", "keep"]);
    assert!(!disk.exists(), "rm leaves the box's disk behind");
}

#[test]
fn bad_storage_options_are_refused_before_anything_is_created() {
    let before = run(&["ps", "-a", "-q"]).stdout;
    for (opt, says) in [
        ("size=abc", "not a size"),
        ("size=1m", "below the minimum"),
        ("quota=1g", "only storage option is size"),
    ] {
        let r = run(&["create", "--storage-opt", opt, "busybox", "true"]);
        assert_ne!(r.code, 0, "{opt}: {r:?}");
        assert!(r.stderr.contains(says), "{opt}: {}", r.stderr);
    }
    assert_eq!(
        run(&["ps", "-a", "-q"]).stdout,
        before,
        "no box may be left behind"
    );
}

#[test]
fn a_changed_filesystem_image_or_hash_tree_fails_the_boot_naming_dm_verity() {
    let env = tamper_env();
    let (image, meta) = busybox_fs_image(env);
    let hash_offset = meta["hash_offset"].as_u64().unwrap();
    let original = std::fs::read(&image).unwrap();
    // A byte of the erofs superblock (read at mount), then a byte of the hash tree's top block.
    for offset in [1024 + 40, hash_offset] {
        flip_byte(&image, offset);
        for tee in [false, true] {
            let mut args = vec!["run", "--rm"];
            if tee {
                args.push("--tee-simulate");
            }
            args.extend(["busybox", "true"]);
            let r = env.run(&args);
            assert_eq!(r.code, 125, "offset {offset} tee {tee}: {r:?}");
            assert!(
                r.stderr.contains("dm-verity"),
                "offset {offset} tee {tee}: the error must name dm-verity: {}",
                r.stderr
            );
        }
        std::fs::write(&image, &original).unwrap();
    }
    ok_in(env, &["run", "--rm", "busybox", "true"]);
}

#[test]
fn a_confidential_layer_is_ciphertext_on_the_host_persists_and_needs_the_same_measurement() {
    let marker = "a3s-plaintext-marker-7f3c9e";
    ok(&[
        "run",
        "-d",
        "--name",
        "sealed",
        "--tee-simulate",
        "--allow-exec",
        "--storage-opt",
        "size=1g",
        "busybox",
        "sleep",
        "600",
    ]);
    ok(&[
        "exec",
        "sealed",
        "sh",
        "-c",
        &format!("echo {marker} > /secret.txt && sync"),
    ]);
    ok(&["stop", "sealed"]);
    let disk = box_dir("sealed").join("rw.img");
    assert!(
        !file_contains(&disk, marker.as_bytes()),
        "the host can read the confidential box's file in {}",
        disk.display()
    );
    ok(&["start", "sealed"]);
    assert_eq!(
        ok(&["exec", "sealed", "cat", "/secret.txt"]).stdout.trim(),
        marker
    );
    // The root hash of the image is on the measured command line.
    let cmdline = inspect("sealed")["kernel_cmdline"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        cmdline.contains("a3s.root=") && cmdline.contains("a3s.rw=crypt"),
        "{cmdline}"
    );
    let measurement = inspect("sealed")["tee"]["measurement"].clone();
    ok(&["stop", "sealed"]);

    // Another measurement (one more kernel argument) derives another key.
    ok(&[
        "create",
        "--name",
        "intruder",
        "--tee-simulate",
        "--kernel-arg",
        "a3s.test=intruder",
        "busybox",
        "sleep",
        "600",
    ]);
    // `cp --sparse=always`: the 1 GiB layer is mostly holes; a plain copy would fill them.
    let copied = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(&disk)
        .arg(box_dir("intruder").join("rw.img"))
        .status()
        .unwrap();
    assert!(copied.success());
    let r = run(&["start", "intruder"]);
    let state = if r.code == 0 {
        exited("intruder")
    } else {
        serde_json::json!({ "error": r.stderr })
    };
    assert!(
        state["error"]
            .as_str()
            .unwrap_or_default()
            .contains("does not open with this VM's key"),
        "{state}"
    );
    assert_ne!(inspect("intruder")["tee"]["measurement"], measurement);

    // A changed image changes the measurement: a second image with one more file.
    let tar = env().path("extra.tar");
    let base = env().path("other-rootfs");
    std::fs::create_dir_all(base.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", base.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", base.join("bin/sleep")).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&base)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    ok(&["import", tar.to_str().unwrap(), "local/other:1"]);
    ok(&[
        "create",
        "--name",
        "other-image",
        "--tee-simulate",
        "local/other:1",
        "/bin/sleep",
        "600",
    ]);
    ok(&["start", "other-image"]);
    let other = inspect("other-image")["tee"]["measurement"].clone();
    assert!(other.is_string(), "{other}");
    assert_ne!(
        other, measurement,
        "the measurement must cover the root filesystem"
    );
    for name in ["sealed", "intruder", "other-image"] {
        ok(&["rm", "-f", name]);
    }
}

/// The encrypted layer a confidential box made on its first boot is kept (before the box
/// wrote to it) and the next box of the same measurement starts from it instead of formatting
/// its own; a kept layer that no longer opens (here: the simulated chip's keys were replaced,
/// as a firmware update changes a real chip's derived keys) is made again, not refused.
#[test]
fn a_second_confidential_box_starts_from_the_layer_the_first_made() {
    let env = TestEnv::new();
    let steps = |name: &str| -> Vec<String> {
        ok_in(&env, &["inspect", name]).json()[0]["tee"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[0].as_str().unwrap().to_owned())
            .collect()
    };
    let prefilled =
        |name: &str| ok_in(&env, &["inspect", name]).json()[0]["tee"]["layer_prefilled"].clone();
    let start = |name: &str| {
        ok_in(
            &env,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--tee-simulate",
                "--allow-exec",
                "--storage-opt",
                "size=1g",
                "busybox",
                "sleep",
                "600",
            ],
        );
    };

    start("maker");
    let made = steps("maker");
    assert!(made.iter().any(|s| s == "rw_mkfs"), "{made:?}");
    assert!(made.iter().any(|s| s == "rw_kept"), "{made:?}");
    assert_eq!(prefilled("maker"), false);
    let kept: Vec<PathBuf> = std::fs::read_dir(env.path("cache/tee-layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let mode = std::fs::metadata(&kept[0]).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    // The maker's own writes after the copy are not in what was kept.
    let marker = "a3s-maker-wrote-this-9d1e";
    ok_in(
        &env,
        &[
            "exec",
            "maker",
            "sh",
            "-c",
            &format!("echo {marker} > /m && sync"),
        ],
    );

    start("taker");
    let taken = steps("taker");
    assert_eq!(prefilled("taker"), true);
    assert!(
        !taken
            .iter()
            .any(|s| s == "rw_mkfs" || s == "rw_integrity_format"),
        "the layer was made again: {taken:?}"
    );
    assert!(taken.iter().any(|s| s == "rw_open"), "{taken:?}");
    // An empty filesystem of its own: not the maker's file; writes persist across a restart.
    let r = env.run(&["exec", "taker", "cat", "/m"]);
    assert_ne!(r.code, 0, "the maker's file is in the taker's layer: {r:?}");
    ok_in(
        &env,
        &["exec", "taker", "sh", "-c", "echo mine > /t && sync"],
    );
    ok_in(&env, &["restart", "taker"]);
    assert_eq!(
        ok_in(&env, &["exec", "taker", "cat", "/t"]).stdout.trim(),
        "mine"
    );
    let reopened = steps("taker");
    assert!(!reopened.iter().any(|s| s == "rw_mkfs"), "{reopened:?}");
    assert_eq!(prefilled("taker"), false, "its own layer was replaced");

    // New chip keys: the kept layer does not decrypt; the box makes a new one and keeps it.
    ok_in(&env, &["rm", "-f", "maker", "taker"]);
    std::fs::remove_dir_all(env.path("simulator")).unwrap();
    start("rekeyed");
    let remade = steps("rekeyed");
    assert_eq!(prefilled("rekeyed"), true);
    assert!(remade.iter().any(|s| s == "rw_mkfs"), "{remade:?}");
    assert!(remade.iter().any(|s| s == "rw_kept"), "{remade:?}");
    ok_in(
        &env,
        &["exec", "rekeyed", "sh", "-c", "echo ok > /r && cat /r"],
    );
    let console = std::fs::read_to_string(
        env.path("boxes")
            .join(
                ok_in(&env, &["inspect", "rekeyed"]).json()[0]["id"]
                    .as_str()
                    .unwrap(),
            )
            .join("console.log"),
    )
    .unwrap_or_default();
    assert!(
        console.contains("the layer the host kept for this measurement does not open"),
        "the guest did not say why it made a new layer: {console}"
    );
    ok_in(&env, &["rm", "-f", "rekeyed"]);
}
