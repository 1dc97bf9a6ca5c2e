//! Images against a real local `docker-registry`: pull, push, save/load, auth, hostile layers,
//! corrupt blobs, and cosign signatures checked both ways against an independent Python
//! implementation (`cosign_peer.py`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use self::registry::{build_image, layout_with, layout_with_layer, run_ok, LocalRegistry};
use crate::support::{Run, TestEnv};

#[path = "registry.rs"]
pub(crate) mod registry;

fn peer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/cosign_peer.py")
}

fn py(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg(peer())
        .args(args)
        .output()
        .expect("python3")
}

fn ok(r: &Run) {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
}

fn store(env: &TestEnv) -> a3s_image::ImageStore {
    a3s_image::ImageStore::open(env.path("images")).unwrap()
}

fn rootfs_of(env: &TestEnv, image: &str) -> PathBuf {
    let s = store(env);
    let img = s.resolve(&image.parse().unwrap()).unwrap();
    s.rootfs(&img).unwrap()
}

#[test]
fn pulls_an_umoci_image_from_the_registry_and_lists_it() {
    let reg = LocalRegistry::start();
    let layout = build_image(
        "v1",
        &[&|root: &Path| std::fs::write(root.join("srv/hello.txt"), "hi\n").unwrap()],
    );
    reg.push_layout(&layout.path(), "v1", "test/bb:1");
    let env = TestEnv::new();
    let image = format!("{}/test/bb:1", reg.addr);
    let r = env.run(&["pull", &image, "--format", "json"]);
    ok(&r);
    let v = r.json();
    assert_eq!(v["reference"], image);
    assert_eq!(v["resolved_digest"], reg.remote_digest("test/bb:1"));
    assert_eq!(v["layers"], 2);
    // The rootfs was unpacked at pull time: busybox, its symlink, the file of layer 2.
    let root = rootfs_of(&env, &image);
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(std::fs::read(root.join("srv/hello.txt")).unwrap(), b"hi\n");
    assert!(
        std::fs::metadata(root.join("bin/busybox"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111
            != 0
    );

    let list = env.run(&["images", "--format", "json"]);
    ok(&list);
    let rows = list.json_lines();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["Tag"], "1");
    // The same rows, but for the age, which a second boundary between the two listings
    // changes ("Less than a second ago", then "1 second ago": this failed a CI run).
    let without_age = |mut v: serde_json::Value| {
        for row in v.as_array_mut().unwrap() {
            row.as_object_mut().unwrap().remove("CreatedSince");
        }
        v
    };
    assert_eq!(
        without_age(env.run(&["image", "ls", "--format", "json"]).json_lines()),
        without_age(rows.clone())
    );
    let text = env.run(&["images"]);
    assert!(text.stdout.starts_with("REPOSITORY"), "{}", text.stdout);
    let templated = env.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    ok(&templated);
    assert_eq!(
        templated.stdout,
        format!("{}:{}\n", rows[0]["Repository"].as_str().unwrap(), "1")
    );

    let inspect = env.run(&["image", "inspect", &image]);
    ok(&inspect);
    let i = inspect.json()[0].clone();
    assert_eq!(i["config"]["entrypoint"], serde_json::json!(["/bin/sh"]));
    assert_eq!(i["config"]["working_dir"], "/srv");
    assert!(i["config"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "GREETING=hello"));
    let history = env.run(&["image", "history", &image, "--format", "json"]);
    ok(&history);
    assert!(!history.json().as_array().unwrap().is_empty());

    // Pulling again reuses every blob; quiet mode prints only the reference.
    let again = env.run(&["pull", "--quiet", &image]);
    ok(&again);
    assert_eq!(again.stdout.trim(), image);
    assert!(again.stderr.is_empty(), "{}", again.stderr);
    let by_digest = format!("{}/test/bb@{}", reg.addr, v["digest"].as_str().unwrap());
    ok(&env.run(&["image", "inspect", &by_digest]));
}

#[test]
fn pushes_with_the_same_digest_and_tags_and_removes_locally() {
    let reg = LocalRegistry::start();
    let layout = build_image("v1", &[]);
    reg.push_layout(&layout.path(), "v1", "test/src:1");
    let env = TestEnv::new();
    let src = format!("{}/test/src:1", reg.addr);
    ok(&env.run(&["pull", "-q", &src]));
    let dst = format!("{}/copy/dst:2", reg.addr);
    ok(&env.run(&["tag", &src, &dst]));
    let push = env.run(&["push", "-q", &dst]);
    ok(&push);
    let local = store(&env)
        .resolve(&dst.parse().unwrap())
        .unwrap()
        .digest
        .to_string();
    assert_eq!(reg.remote_digest("copy/dst:2"), local);
    assert_eq!(push.stdout.trim(), format!("{}/copy/dst@{local}", reg.addr));
    // rmi one name keeps the content; removing the last one deletes it.
    let rmi = env.run(&["rmi", &dst]);
    ok(&rmi);
    assert!(rmi.stdout.contains("Untagged"), "{}", rmi.stdout);
    ok(&env.run(&["image", "inspect", &src]));
    let rmi = env.run(&["rmi", &src]);
    ok(&rmi);
    assert!(rmi.stdout.contains("Deleted: sha256:"), "{}", rmi.stdout);
    let gone = env.run(&["image", "inspect", &src]);
    assert_eq!(gone.code, 125);
    assert!(
        gone.stderr.contains("hint: pull it with `a3s-box pull"),
        "{}",
        gone.stderr
    );
}

#[test]
fn save_and_load_round_trip_in_oci_and_docker_archive_formats() {
    let reg = LocalRegistry::start();
    let layout = build_image(
        "v1",
        &[&|root: &Path| std::fs::write(root.join("srv/data"), "payload").unwrap()],
    );
    reg.push_layout(&layout.path(), "v1", "test/save:1");
    let env = TestEnv::new();
    let image = format!("{}/test/save:1", reg.addr);
    ok(&env.run(&["pull", "-q", &image]));
    let digest = store(&env).resolve(&image.parse().unwrap()).unwrap().digest;
    let out = tempfile::tempdir().unwrap();
    let oci = out.path().join("img.oci.tar");
    let docker = out.path().join("img.docker.tar");
    ok(&env.run(&["save", "-o", oci.to_str().unwrap(), &image]));
    ok(&env.run(&[
        "save",
        "--archive-format",
        "docker-archive",
        "-o",
        docker.to_str().unwrap(),
        &image,
    ]));
    // Ordinary files (0666 less the test's umask 022), not the temporary file's 0600.
    for f in [&oci, &docker] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", f.display());
    }

    // Independent readers accept both tarballs.
    let skopeo_digest = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--format", "{{.Digest}}"])
            .arg(format!("oci-archive:{}", oci.display())),
    );
    assert_eq!(skopeo_digest.trim(), digest.to_string());
    run_ok(
        Command::new("skopeo")
            .args(["inspect"])
            .arg(format!("docker-archive:{}", docker.display())),
    );

    for (file, same_digest) in [(&oci, true), (&docker, false)] {
        let fresh = TestEnv::new();
        let r = fresh.run(&["load", "-i", file.to_str().unwrap(), "--format", "json"]);
        ok(&r);
        let loaded = r.json();
        assert_eq!(loaded[0]["reference"], image);
        if same_digest {
            assert_eq!(loaded[0]["digest"], digest.to_string());
        }
        assert_eq!(
            std::fs::read(rootfs_of(&fresh, &image).join("srv/data")).unwrap(),
            b"payload"
        );
    }
    let bad = out.path().join("bad.tar");
    std::fs::write(&bad, b"not a tarball at all").unwrap();
    let r = env.run(&["load", "-i", bad.to_str().unwrap()]);
    assert_eq!(r.code, 125, "{}", r.stderr);
}

#[test]
fn htpasswd_registry_needs_login_and_credentials_stay_private() {
    let reg = LocalRegistry::with_htpasswd("tester", "s3cret-pass");
    let layout = build_image("v1", &[]);
    reg.push_layout(&layout.path(), "v1", "private/app:1");
    let env = TestEnv::new();
    let image = format!("{}/private/app:1", reg.addr);
    let anon = env.run(&["pull", "-q", &image]);
    assert_eq!(anon.code, 125, "{}", anon.stderr);
    assert!(
        anon.stderr
            .contains(&format!("hint: log in with `a3s-box login {}`", reg.addr)),
        "{}",
        anon.stderr
    );

    let login = |pass: &str| {
        let mut c = env.cmd();
        c.args(["login", &reg.addr, "-u", "tester", "--password-stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(pass.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = login("wrong");
    assert_eq!(code, 125, "{text}");
    assert!(
        !env.path("auth.json").exists(),
        "failed login saves nothing"
    );
    let (code, text) = login("s3cret-pass\n");
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("s3cret-pass"));
    let mode = std::fs::metadata(env.path("auth.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let pulled = env.run(&["pull", &image]);
    ok(&pulled);
    assert!(!pulled.stderr.contains("s3cret-pass") && !pulled.stdout.contains("s3cret-pass"));
    // Push needs auth too.
    ok(&env.run(&["tag", &image, &format!("{}/private/copy:1", reg.addr)]));
    ok(&env.run(&["push", "-q", &format!("{}/private/copy:1", reg.addr)]));

    let out = env.run(&["logout", &reg.addr]);
    ok(&out);
    assert!(out.stdout.contains("Removed"), "{}", out.stdout);
    // Without credentials the registry refuses again.
    let after = env.run(&["pull", "-q", &format!("{}/private/copy:1", reg.addr)]);
    assert_eq!(after.code, 125, "{}", after.stderr);
}

#[test]
fn whiteouts_from_umoci_layers_delete_lower_files() {
    let reg = LocalRegistry::start();
    let layout = build_image(
        "v1",
        &[
            &|root: &Path| {
                std::fs::create_dir_all(root.join("etc/conf.d")).unwrap();
                std::fs::write(root.join("etc/conf.d/a"), "a").unwrap();
                std::fs::write(root.join("etc/conf.d/b"), "b").unwrap();
                std::fs::write(root.join("etc/secret"), "lower").unwrap();
            },
            &|root: &Path| {
                std::fs::remove_file(root.join("etc/secret")).unwrap();
                std::fs::remove_file(root.join("etc/conf.d/a")).unwrap();
            },
        ],
    );
    reg.push_layout(&layout.path(), "v1", "test/wh:1");
    let env = TestEnv::new();
    let image = format!("{}/test/wh:1", reg.addr);
    ok(&env.run(&["pull", "-q", &image]));
    let root = rootfs_of(&env, &image);
    assert!(!root.join("etc/secret").exists());
    assert!(!root.join("etc/conf.d/a").exists());
    assert_eq!(std::fs::read(root.join("etc/conf.d/b")).unwrap(), b"b");
    assert!(!root.join("etc/.wh.secret").exists());
}

fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn malicious_layers_are_rejected_and_leave_no_tag() {
    let reg = LocalRegistry::start();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "traversal",
            raw_tar(&[(
                "../../../../tmp/a3s-pwned",
                tar::EntryType::Regular,
                "",
                b"x",
            )]),
            "path traversal",
        ),
        (
            "symlink",
            raw_tar(&[
                (
                    "escape",
                    tar::EntryType::Symlink,
                    "../../../../../../tmp",
                    b"",
                ),
                ("escape/a3s-pwned", tar::EntryType::Regular, "", b"x"),
            ]),
            "outside the root",
        ),
        (
            "hardlink",
            raw_tar(&[(
                "passwd",
                tar::EntryType::Link,
                "../../../../etc/passwd",
                b"",
            )]),
            "path traversal",
        ),
    ];
    for (name, layer, message) in cases {
        let layout = layout_with_layer(name, &layer);
        reg.push_layout(&layout.path(), name, &format!("evil/{name}:1"));
        let env = TestEnv::new();
        let image = format!("{}/evil/{name}:1", reg.addr);
        let r = env.run(&["pull", "-q", &image]);
        assert_eq!(r.code, 125, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(message), "{name}: {}", r.stderr);
        assert!(!Path::new("/tmp/a3s-pwned").exists());
        assert_eq!(
            env.run(&["images", "--format", "json"]).json_lines(),
            serde_json::json!([]),
            "{name}"
        );
    }
}

#[test]
fn corrupt_blob_in_the_registry_is_rejected() {
    let reg = LocalRegistry::start();
    let layout = build_image(
        "v1",
        &[&|root: &Path| std::fs::write(root.join("srv/f"), vec![7u8; 100_000]).unwrap()],
    );
    reg.push_layout(&layout.path(), "v1", "test/corrupt:1");
    let env = TestEnv::new();
    let image = format!("{}/test/corrupt:1", reg.addr);
    // Find the largest layer blob and flip a byte in the registry's storage.
    let manifest: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{image}")),
    ))
    .unwrap();
    let layer = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64())
        .unwrap();
    let hex = layer["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap()
        .to_owned();
    let path = reg.blob_file(&hex);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let r = env.run(&["pull", "-q", &image]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.to_lowercase().contains("digest"), "{}", r.stderr);
    assert!(
        r.stderr.contains("hint: the registry sent content"),
        "{}",
        r.stderr
    );
    assert_eq!(
        env.run(&["images", "--format", "json"]).json_lines(),
        serde_json::json!([])
    );
    assert!(!store(&env).has_blob(&layer["digest"].as_str().unwrap().parse().unwrap()));
}

/// A registry with one pushed image; returns (registry, image reference, repo, digest).
fn signed_setup(repo: &str) -> (LocalRegistry, String, String) {
    let reg = LocalRegistry::start();
    let layout = build_image("v1", &[]);
    reg.push_layout(&layout.path(), "v1", &format!("{repo}:1"));
    let digest = reg.remote_digest(&format!("{repo}:1"));
    (reg, format!("{repo}:1"), digest)
}

fn keygen(env: &TestEnv, dir: &Path, password: &str) {
    let r = env
        .cmd()
        .args(["key", "generate", "--out-dir", dir.to_str().unwrap()])
        .env("COSIGN_PASSWORD", password)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

#[test]
fn generated_key_is_readable_by_the_independent_implementation() {
    let env = TestEnv::new();
    let keys = tempfile::tempdir().unwrap();
    keygen(&env, keys.path(), "pw-123");
    let key = keys.path().join("cosign.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
    let out = py(&["decrypt-key", key.to_str().unwrap(), "pw-123"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(keys.path().join("cosign.pub")).unwrap()
    );
    assert!(!py(&["decrypt-key", key.to_str().unwrap(), "wrong"])
        .status
        .success());
    // Refuses to overwrite.
    let again = env
        .cmd()
        .args([
            "key",
            "generate",
            "--out-dir",
            keys.path().to_str().unwrap(),
        ])
        .env("COSIGN_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn our_signatures_verify_in_python_and_pythons_verify_with_us() {
    let (reg, repo_tag, digest) = signed_setup("sig/app");
    let image = format!("{}/{repo_tag}", reg.addr);
    let repo = "sig/app";
    let env = TestEnv::new();
    let keys = tempfile::tempdir().unwrap();
    keygen(&env, keys.path(), "pw");
    let (key, pubk) = (
        keys.path().join("cosign.key"),
        keys.path().join("cosign.pub"),
    );

    // Unsigned: verify says no (exit 1).
    let r = env.run(&["image", "verify", "--key", pubk.to_str().unwrap(), &image]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("no signatures found"), "{}", r.stderr);

    // We sign → Python verifies; a different key does not.
    let s = env
        .cmd()
        .args(["image", "sign", "--key", key.to_str().unwrap(), &image])
        .env("COSIGN_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let out = py(&["verify", pubk.to_str().unwrap(), &reg.addr, repo, &digest]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let peer_dir = tempfile::tempdir().unwrap();
    assert!(py(&["keygen", peer_dir.path().to_str().unwrap()])
        .status
        .success());
    let (peer_key, peer_pub) = (
        peer_dir.path().join("peer.key"),
        peer_dir.path().join("peer.pub"),
    );
    assert_eq!(
        py(&[
            "verify",
            peer_pub.to_str().unwrap(),
            &reg.addr,
            repo,
            &digest
        ])
        .status
        .code(),
        Some(1)
    );

    // We verify our own, and Python-made signatures; wrong key → 1.
    let v = env.run(&[
        "image",
        "verify",
        "--key",
        pubk.to_str().unwrap(),
        &image,
        "--format",
        "json",
    ]);
    ok(&v);
    assert_eq!(v.json()["verified"], true);
    assert_eq!(v.json()["digest"], digest);
    assert!(
        py(&["sign", peer_key.to_str().unwrap(), &reg.addr, repo, &digest])
            .status
            .success()
    );
    ok(&env.run(&[
        "image",
        "verify",
        "--key",
        peer_pub.to_str().unwrap(),
        &image,
    ]));
    let other = tempfile::tempdir().unwrap();
    keygen(&env, other.path(), "pw");
    let wrong = env.run(&[
        "image",
        "verify",
        "--key",
        other.path().join("cosign.pub").to_str().unwrap(),
        &image,
    ]);
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("does not verify"), "{}", wrong.stderr);

    // A Python-encrypted cosign key signs through our CLI.
    let enc = peer_dir.path().join("peer-enc.key");
    assert!(py(&[
        "encrypt-key",
        peer_key.to_str().unwrap(),
        enc.to_str().unwrap(),
        "peerpw"
    ])
    .status
    .success());
    let s = env
        .cmd()
        .args(["image", "sign", "--key", enc.to_str().unwrap(), &image])
        .env("COSIGN_PASSWORD", "peerpw")
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let s = env
        .cmd()
        .args(["image", "sign", "--key", enc.to_str().unwrap(), &image])
        .env("COSIGN_PASSWORD", "bad")
        .output()
        .unwrap();
    assert_eq!(
        s.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&s.stderr)
    );
    assert!(String::from_utf8_lossy(&s.stderr).contains("wrong password"));
}

#[test]
fn tampering_is_detected_repushed_tag_and_edited_payload() {
    let (reg, repo_tag, digest) = signed_setup("tamper/app");
    let image = format!("{}/{repo_tag}", reg.addr);
    let env = TestEnv::new();
    let keys = tempfile::tempdir().unwrap();
    keygen(&env, keys.path(), "pw");
    let pubk = keys.path().join("cosign.pub");
    let s = env
        .cmd()
        .args([
            "image",
            "sign",
            "--key",
            keys.path().join("cosign.key").to_str().unwrap(),
            &image,
        ])
        .env("COSIGN_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(s.status.success());
    let pulled = env.run(&[
        "pull",
        "-q",
        "--verify-key",
        pubk.to_str().unwrap(),
        &image,
        "--format",
        "json",
    ]);
    ok(&pulled);
    assert_eq!(pulled.json()["verified_by"].as_array().unwrap().len(), 1);

    // Re-push different content under the signed tag: the new digest has no signature.
    let other = build_image(
        "v2",
        &[&|root: &Path| std::fs::write(root.join("srv/evil"), "x").unwrap()],
    );
    reg.push_layout(&other.path(), "v2", &repo_tag);
    assert_ne!(reg.remote_digest(&repo_tag), digest);
    let fresh = TestEnv::new();
    let r = fresh.run(&["pull", "-q", "--verify-key", pubk.to_str().unwrap(), &image]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        fresh.run(&["images", "--format", "json"]).json_lines(),
        serde_json::json!([]),
        "nothing tagged"
    );
    // The refusal is in the audit log, hash-chained.
    let denied = fresh.run(&[
        "audit",
        "--action",
        "image.*",
        "--outcome",
        "denied",
        "--format",
        "json",
    ]);
    ok(&denied);
    let text = denied.stdout.clone();
    assert!(
        text.contains("image.pull") && text.contains(&image),
        "{text}"
    );
    ok(&fresh.run(&["audit", "verify"]));
    assert_eq!(
        env.run(&["image", "verify", "--key", pubk.to_str().unwrap(), &image])
            .code,
        1
    );

    // Edited payload: a .sig whose stored payload differs from what was signed.
    let new_digest = reg.remote_digest(&repo_tag);
    let peer_dir = tempfile::tempdir().unwrap();
    assert!(py(&["keygen", peer_dir.path().to_str().unwrap()])
        .status
        .success());
    let peer_pub = peer_dir.path().join("peer.pub");
    let out = py(&[
        "sign",
        peer_dir.path().join("peer.key").to_str().unwrap(),
        &reg.addr,
        "tamper/app",
        &new_digest,
        "--payload-edit",
    ]);
    assert!(out.status.success());
    let r = env.run(&[
        "image",
        "verify",
        "--key",
        peer_pub.to_str().unwrap(),
        &image,
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("does not verify"), "{}", r.stderr);

    // The signature of the *old* digest copied onto the new one is for the wrong digest.
    let old_sig = format!(
        "{}/tamper/app:sha256-{}.sig",
        reg.addr,
        digest.trim_start_matches("sha256:")
    );
    let new_sig = format!(
        "docker://{}/tamper/app:sha256-{}.sig",
        reg.addr,
        new_digest.trim_start_matches("sha256:")
    );
    run_ok(
        Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(format!("docker://{old_sig}"))
            .arg(&new_sig),
    );
    let r = env.run(&["image", "verify", "--key", pubk.to_str().unwrap(), &image]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("payload is for digest"), "{}", r.stderr);
}

#[test]
fn oci_referrer_bundles_verify_via_the_tag_fallback() {
    let (reg, repo_tag, digest) = signed_setup("bundle/app");
    let image = format!("{}/{repo_tag}", reg.addr);
    let env = TestEnv::new();
    let peer_dir = tempfile::tempdir().unwrap();
    assert!(py(&["keygen", peer_dir.path().to_str().unwrap()])
        .status
        .success());
    let out = py(&[
        "sign-bundle",
        peer_dir.path().join("peer.key").to_str().unwrap(),
        &reg.addr,
        "bundle/app",
        &digest,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer_pub = peer_dir.path().join("peer.pub");
    let v = env.run(&[
        "image",
        "verify",
        "--key",
        peer_pub.to_str().unwrap(),
        &image,
        "--format",
        "json",
    ]);
    ok(&v);
    assert_eq!(v.json()["verified"], true);
    let other = tempfile::tempdir().unwrap();
    keygen(&env, other.path(), "pw");
    assert_eq!(
        env.run(&[
            "image",
            "verify",
            "--key",
            other.path().join("cosign.pub").to_str().unwrap(),
            &image
        ])
        .code,
        1
    );
}

#[test]
fn signature_policy_is_applied_on_pull_and_for_run() {
    let (reg, repo_tag, _digest) = signed_setup("policy/app");
    let image = format!("{}/{repo_tag}", reg.addr);
    let env = TestEnv::new();
    let keys = tempfile::tempdir().unwrap();
    keygen(&env, keys.path(), "pw");
    let policy_dir = env.path("policy");
    std::fs::create_dir_all(&policy_dir).unwrap();
    std::fs::copy(
        keys.path().join("cosign.pub"),
        policy_dir.join("trusted.pub"),
    )
    .unwrap();
    let policy = policy_dir.join("signatures.toml");
    std::fs::write(
        &policy,
        format!(
            "default = \"reject\"\n[[scope]]\nname = \"{0}/policy\"\npolicy = \"require-key\"\nkeys = [\"trusted.pub\"]\n[[scope]]\nname = \"{0}/open\"\npolicy = \"accept-anything\"\n",
            reg.addr
        ),
    )
    .unwrap();
    // Default location is picked up: unsigned image refused by require-key.
    let r = env.run(&["pull", "-q", &image]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let s = env
        .cmd()
        .args([
            "image",
            "sign",
            "--key",
            keys.path().join("cosign.key").to_str().unwrap(),
            &image,
        ])
        .env("COSIGN_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(s.status.success());
    ok(&env.run(&["pull", "-q", &image]));
    // Reject scope.
    let layout = build_image("v1", &[]);
    reg.push_layout(&layout.path(), "v1", "elsewhere/app:1");
    let r = env.run(&["pull", "-q", &format!("{}/elsewhere/app:1", reg.addr)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("policy rejects"), "{}", r.stderr);

    // The run-time check works offline from the signatures kept at pull time.
    let pol = a3s_image::cosign::SignaturePolicy::load(&policy, true).unwrap();
    let s = store(&env);
    let verified = a3s_image::cosign::verify_for_run(&s, &image.parse().unwrap(), &pol).unwrap();
    assert!(verified.signer().is_some());
    drop(reg);
    assert!(a3s_image::cosign::verify_for_run(&s, &image.parse().unwrap(), &pol).is_ok());
    let strict =
        a3s_image::cosign::SignaturePolicy::parse("default = \"reject\"", &policy).unwrap();
    assert!(a3s_image::cosign::verify_for_run(&s, &image.parse().unwrap(), &strict).is_err());
}

#[test]
fn docker_v2_manifests_zstd_layers_and_multi_arch_indexes() {
    let reg = LocalRegistry::start();
    let env = TestEnv::new();
    // Docker v2 schema 2 media types (skopeo converts).
    let layout = build_image("v1", &[]);
    reg.push_layout_with(&layout.path(), "v1", "fmt/docker:1", &["--format", "v2s2"]);
    let r = env.run(&["pull", "-q", &format!("{}/fmt/docker:1", reg.addr)]);
    ok(&r);
    let i = env
        .run(&["image", "inspect", &format!("{}/fmt/docker:1", reg.addr)])
        .json()[0]
        .clone();
    assert_eq!(
        i["media_type"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        i["layers"][0]["media_type"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );

    // A zstd layer.
    let tar = raw_tar(&[
        ("etc/", tar::EntryType::Directory, "", b""),
        ("etc/zstd-ok", tar::EntryType::Regular, "", b"z"),
    ]);
    let zst = zstd_compress(&tar);
    let layout = layout_with(
        "z",
        &tar,
        &zst,
        "application/vnd.oci.image.layer.v1.tar+zstd",
        &["amd64"],
    );
    reg.push_layout(&layout.path(), "z", "fmt/zstd:1");
    let image = format!("{}/fmt/zstd:1", reg.addr);
    ok(&env.run(&["pull", "-q", &image]));
    assert_eq!(
        std::fs::read(rootfs_of(&env, &image).join("etc/zstd-ok")).unwrap(),
        b"z"
    );

    // An index with arm64 and amd64: amd64 is chosen; the tag's digest is the index's.
    let layout = layout_with(
        "multi",
        &tar,
        &tar,
        "application/vnd.oci.image.layer.v1.tar",
        &["arm64", "amd64"],
    );
    reg.push_layout_with(&layout.path(), "multi", "fmt/multi:1", &["--all"]);
    let image = format!("{}/fmt/multi:1", reg.addr);
    let r = env.run(&["pull", "-q", &image, "--format", "json"]);
    ok(&r);
    let v = r.json();
    assert_eq!(v["resolved_digest"], reg.remote_digest("fmt/multi:1"));
    assert_ne!(v["resolved_digest"], v["digest"]);
    let i = env.run(&["image", "inspect", &image]).json()[0].clone();
    assert_eq!(i["architecture"], "amd64");
    assert_eq!(i["config"]["labels"]["arch"], "amd64");
    assert_eq!(i["index_digest"], v["resolved_digest"]);
    // Only arm64: refused with the list of platforms.
    let layout = layout_with(
        "arm",
        &tar,
        &tar,
        "application/vnd.oci.image.layer.v1.tar",
        &["arm64", "riscv64"],
    );
    reg.push_layout_with(&layout.path(), "arm", "fmt/arm:1", &["--all"]);
    let r = env.run(&["pull", "-q", &format!("{}/fmt/arm:1", reg.addr)]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("no linux/amd64 image (available: linux/arm64, linux/riscv64)"),
        "{}",
        r.stderr
    );
}

fn zstd_compress(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("zstd")
        .args(["-q", "-c", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("zstd");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn signed_index_is_verified_by_its_own_digest_and_checked_again_for_run() {
    let reg = LocalRegistry::start();
    let tar = raw_tar(&[("hello", tar::EntryType::Regular, "", b"hi")]);
    let layout = layout_with(
        "multi",
        &tar,
        &tar,
        "application/vnd.oci.image.layer.v1.tar",
        &["arm64", "amd64"],
    );
    reg.push_layout_with(&layout.path(), "multi", "signed/multi:1", &["--all"]);
    let image = format!("{}/signed/multi:1", reg.addr);
    let index_digest = reg.remote_digest("signed/multi:1");
    let env = TestEnv::new();
    let keys = tempfile::tempdir().unwrap();
    keygen(&env, keys.path(), "pw");
    let s = env
        .cmd()
        .args([
            "image",
            "sign",
            "--key",
            keys.path().join("cosign.key").to_str().unwrap(),
            &image,
        ])
        .env("COSIGN_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    // The independent verifier agrees the signature covers the index digest.
    let out = py(&[
        "verify",
        keys.path().join("cosign.pub").to_str().unwrap(),
        &reg.addr,
        "signed/multi",
        &index_digest,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let pubk = keys.path().join("cosign.pub");
    let r = env.run(&[
        "pull",
        "-q",
        "--verify-key",
        pubk.to_str().unwrap(),
        &image,
        "--format",
        "json",
    ]);
    ok(&r);
    assert_eq!(r.json()["resolved_digest"], index_digest);

    let policy_file = keys.path().join("policy.toml");
    std::fs::write(
        &policy_file,
        "default = \"require-key\"\ndefault_keys = [\"cosign.pub\"]\n",
    )
    .unwrap();
    let policy = a3s_image::cosign::SignaturePolicy::load(&policy_file, true).unwrap();
    let verified =
        a3s_image::cosign::verify_for_run(&store(&env), &image.parse().unwrap(), &policy).unwrap();
    assert_eq!(verified.signed_digest().unwrap().to_string(), index_digest);
    assert_eq!(
        verified.image().digest.to_string(),
        r.json()["digest"].as_str().unwrap()
    );
}

#[test]
fn concurrent_pulls_of_one_image_into_one_home_both_succeed() {
    let reg = LocalRegistry::start();
    let layout = build_image(
        "v1",
        &[&|root: &Path| std::fs::write(root.join("srv/big"), vec![1u8; 2_000_000]).unwrap()],
    );
    reg.push_layout(&layout.path(), "v1", "conc/app:1");
    let env = TestEnv::new();
    let image = format!("{}/conc/app:1", reg.addr);
    let children: Vec<_> = (0..3)
        .map(|_| {
            env.cmd()
                .args(["pull", "-q", &image])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rows = env.run(&["images", "--format", "json"]).json_lines();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(
        std::fs::read(rootfs_of(&env, &image).join("srv/big"))
            .unwrap()
            .len(),
        2_000_000
    );
    let leftovers: Vec<_> = std::fs::read_dir(env.path("images/v1/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn key_generate_without_a_password_source_is_a_usage_error() {
    let env = TestEnv::new();
    let dir = tempfile::tempdir().unwrap();
    let out = env
        .cmd()
        .args(["key", "generate", "--out-dir", dir.path().to_str().unwrap()])
        .env_remove("COSIGN_PASSWORD")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("COSIGN_PASSWORD"));
    assert!(!dir.path().join("cosign.key").exists());
}

#[test]
fn bearer_token_registry_pull_and_push_after_login() {
    let reg = LocalRegistry::with_token_auth("tokenuser", "t0ken-pass");
    let layout = build_image("v1", &[]);
    reg.push_layout(&layout.path(), "v1", "tok/app:1");
    let env = TestEnv::new();
    let image = format!("{}/tok/app:1", reg.addr);
    let anon = env.run(&["pull", "-q", &image]);
    assert_eq!(anon.code, 125, "{}", anon.stderr);
    assert!(anon.stderr.contains("hint: log in"), "{}", anon.stderr);
    let mut c = env.cmd();
    c.args(["login", &reg.addr, "-u", "tokenuser", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"wrong-pass")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(125),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!env.path("auth.json").exists());
    let mut c = env.cmd();
    c.args(["login", &reg.addr, "-u", "tokenuser", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();

    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"t0ken-pass")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = env.run(&["pull", "-q", &image, "--format", "json"]);
    ok(&r);
    assert_eq!(r.json()["resolved_digest"], reg.remote_digest("tok/app:1"));
    ok(&env.run(&["tag", &image, &format!("{}/tok/pushed:2", reg.addr)]));
    ok(&env.run(&["push", "-q", &format!("{}/tok/pushed:2", reg.addr)]));
    assert_eq!(
        reg.remote_digest("tok/pushed:2"),
        r.json()["digest"].as_str().unwrap()
    );
}

/// The nginx test image of `scripts/test-images` (built once and cached; it exposes 80/tcp):
/// its OCI archive, or `None` (skip, loudly) when the apt mirror is unreachable outside CI.
fn nginx_test_image() -> Option<String> {
    let images = crate::support::test_images(&["nginx"], "image inspect of the nginx test image")?;
    let image = images.first().expect("one image line");
    Some(image["archive"].as_str().unwrap().to_owned())
}

/// `image inspect -f` answers the templates Docker users' scripts run against `docker image
/// inspect`, takes several images at once, and names a missing one (non-zero exit).
#[test]
fn image_inspect_answers_docker_templates() {
    let env = TestEnv::new();
    let f = |template: &str, image: &str| {
        let r = env.run(&["image", "inspect", "-f", template, image]);
        ok(&r);
        r.stdout
    };
    // `create` brings in the built-in busybox image, as `run` does (no registry involved).
    ok(&env.run(&["create", "--name", "bb", "busybox", "true"]));
    assert_eq!(
        f("{{.Config.Env}}", "busybox"),
        "[PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin]\n"
    );
    assert_eq!(f("{{.RepoTags}}", "busybox"), "[busybox:latest]\n");
    assert_eq!(f("{{.Config.Cmd}}", "busybox"), "[/bin/sh]\n");
    // Unset in the image: what Docker's templates print for them.
    assert_eq!(
        f("{{.Config.Entrypoint}}|{{.Config.User}}|{{.Config.WorkingDir}}|{{.Config.ExposedPorts}}", "busybox"),
        "[]|||map[]\n"
    );
    assert_eq!(f("{{.Os}}/{{.Architecture}}", "busybox"), "linux/amd64\n");
    // Against the store: Id is the config's digest, RootFS.Layers its diff_ids, RepoDigests
    // the name at the manifest's digest, Size the unpacked size.
    let s = store(&env);
    let img = s.resolve(&"busybox".parse().unwrap()).unwrap();
    let m = s.manifest(&img.digest).unwrap();
    let cfg = s.config_file(&m).unwrap();
    assert_eq!(f("{{.Id}}", "busybox"), format!("{}\n", m.config.digest));
    let diff_ids: Vec<String> = cfg.rootfs.diff_ids.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        f("{{json .RootFS.Layers}}", "busybox"),
        format!("{}\n", serde_json::to_string(&diff_ids).unwrap())
    );
    assert_eq!(
        f("{{.RepoDigests}}", "busybox"),
        format!("[busybox@{}]\n", img.digest)
    );
    assert_eq!(
        f("{{.Size}}", "busybox"),
        format!("{}\n", s.unpacked_size(&img.digest).unwrap().0)
    );
    // The default JSON keeps our keys, with Docker's beside them, in an array as Docker's
    // (one image too: scripts read `.[0]`).
    let r = env.run(&["image", "inspect", "busybox"]);
    ok(&r);
    assert_eq!(r.json().as_array().map(Vec::len), Some(1), "{}", r.stdout);
    let v = r.json()[0].clone();
    assert_eq!(v["reference"], "docker.io/library/busybox:latest");
    assert_eq!(v["config"]["cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(v["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(v["RootFS"]["Type"], "layers");

    // A missing image: named on stderr, non-zero exit, an empty array on stdout (Docker's).
    let gone = env.run(&["image", "inspect", "no-such-image"]);
    assert_ne!(gone.code, 0);
    assert_eq!(gone.json(), serde_json::json!([]), "{}", gone.stdout);
    assert!(
        gone.stderr.contains("no-such-image:latest"),
        "{}",
        gone.stderr
    );
    // Among others: those that exist are shown, then each missing one is named.
    let some = env.run(&[
        "image",
        "inspect",
        "-f",
        "{{.RepoTags}}",
        "busybox",
        "no-such-image:1",
        "busybox:latest",
        "other-missing",
    ]);
    assert_ne!(some.code, 0);
    assert_eq!(some.stdout, "[busybox:latest]\n[busybox:latest]\n");
    assert!(some.stderr.contains("no-such-image:1"), "{}", some.stderr);
    assert!(
        some.stderr.contains("other-missing:latest"),
        "{}",
        some.stderr
    );
    // Several images print an array, as Docker does.
    let two = env.run(&["image", "inspect", "busybox", "busybox:latest"]);
    ok(&two);
    assert_eq!(two.json().as_array().map(Vec::len), Some(2));
    // A template outside the subset: a usage error, nothing printed.
    let bad = env.run(&[
        "image",
        "inspect",
        "-f",
        "{{range .RepoTags}}{{.}}{{end}}",
        "busybox",
    ]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stdout.is_empty());

    // An image that exposes a port: the nginx test image.
    let Some(archive) = nginx_test_image() else {
        return;
    };
    ok(&env.run(&["load", "-i", &archive]));
    let nginx = "localhost/a3s-test/nginx:latest";
    assert_eq!(f("{{.Config.ExposedPorts}}", nginx), "map[80/tcp:{}]\n");
    assert_eq!(
        f("{{json .Config.ExposedPorts}}", nginx),
        "{\"80/tcp\":{}}\n"
    );
    assert_eq!(f("{{.Config.Cmd}}", nginx), "[nginx -g daemon off;]\n");
    assert_eq!(f("{{.Config.WorkingDir}}", nginx), "/\n");
    assert_eq!(f("{{.Created}}", nginx), "2024-01-01T00:00:00Z\n");
    assert_eq!(
        f("{{.RepoTags}}", nginx),
        "[localhost/a3s-test/nginx:latest]\n"
    );
    let both = env.run(&[
        "image",
        "inspect",
        "-f",
        "{{.RepoTags}} {{.Config.ExposedPorts}}",
        "busybox",
        nginx,
    ]);
    ok(&both);
    assert_eq!(
        both.stdout,
        "[busybox:latest] map[]\n[localhost/a3s-test/nginx:latest] map[80/tcp:{}]\n"
    );
}
