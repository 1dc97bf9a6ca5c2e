//! Confidential pods through the CRI (issue 16), with real `crictl` against a real
//! `a3s-box cri serve` and a real `a3s-box kbs serve`, the pod VM under TCG with the SEV-SNP
//! simulator (runtime handler `a3s-simulate`):
//!
//! - a pod whose KBS accepts its launch measurement gets its secret before RunPodSandbox
//!   returns; its container reads it at `/run/secrets` (read-only) and the audit log shows
//!   the release before the container started; an image off the pod's allow-list is refused
//!   at CreateContainer, and so is an allowed image whose layer blob the host tampered with
//!   (guest-init checks it); exec, streaming exec and attach are refused (PermissionDenied,
//!   audited) without the pod's opt-in;
//! - a pod whose KBS denies it fails RunPodSandbox naming the TEE step, and leaves no pod,
//!   no box and no container; an SEV-SNP pod on this host and a pod naming a host file as a
//!   secret are refused before anything boots; a pod that opts in lets the host exec.

use std::path::PathBuf;

use crate::cri::CriServer;
use crate::support::{build_guest_init, TestEnv};
use crate::tee::{admin, kbs, Kbs};

pub(crate) const POD_SECRET: &str = "pod-secret-3b9d0c71-never-in-a-log";

/// The embedded busybox image's manifest digest (imported by `measure`, which boots nothing).
pub(crate) fn busybox_digest(env: &TestEnv) -> String {
    let m = env.run(&["measure", "--image", "busybox", "--tee-simulate"]);
    assert_eq!(m.code, 0, "{m:?}");
    let images = env.run(&["images", "--format", "json"]).json_lines();
    images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["Repository"] == "busybox")
        .and_then(|i| i["Digest"].as_str())
        .unwrap_or_else(|| panic!("no busybox in {images}"))
        .to_owned()
}

/// What a pod VM allowing `digest` measures: the allow-list is on its measured command line.
pub(crate) fn pod_measurement(env: &TestEnv, digest: &str) -> String {
    pod_measurement_on(env, digest, "tsi")
}

/// [`pod_measurement`] of a pod VM on `network` (`none` for CNI pods: their addresses are
/// not on the measured command line).
pub(crate) fn pod_measurement_on(env: &TestEnv, digest: &str, network: &str) -> String {
    let arg = format!("a3s.pod_images={digest}");
    let m = env.run(&[
        "measure",
        "--image",
        "busybox",
        "--tee-simulate",
        "--kernel-arg",
        &arg,
        "--network",
        network,
    ]);
    assert_eq!(m.code, 0, "{m:?}");
    m.stdout.trim().to_owned()
}

/// A KBS holding `default/app/token` for VMs that measure `measurement`.
pub(crate) fn kbs_for(env: &TestEnv, measurement: &str) -> Kbs {
    let k = kbs(env, "pods.db");
    let file = crate::support::write_file(env.home.path(), "pod-secret.txt", POD_SECRET.as_bytes());
    admin(
        env,
        &[
            "kbs",
            "resource",
            "set",
            "--url",
            &k.url,
            "default/app/token",
            "--file",
            &file,
        ],
    );
    let value = format!("[\"{measurement}\"]");
    admin(
        env,
        &[
            "kbs",
            "reference-value",
            "set",
            "--url",
            &k.url,
            "snp_launch_measurement",
            &value,
        ],
    );
    k
}

/// The logs of a container that reads the pod's secret (`sha256sum /run/secrets/token`, then
/// `echo reader-done`), once it is done, checked for the secret's hash (only the hash: the
/// log is on the host). `fetch` reads the logs (`crictl logs`) of whichever server runs it.
pub(crate) fn reader_logs(fetch: impl Fn() -> String) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let logs = loop {
        let l = fetch();
        if l.contains("reader-done") {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reader did not finish in 180 s; its logs so far:\n{l}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let want = crate::tee::sha256_hex(POD_SECRET.as_bytes());
    assert!(
        logs.contains(&format!("{want}  /run/secrets/token")),
        "{logs}"
    );
    logs
}

pub(crate) fn pod_config(env: &TestEnv, name: &str, annotations: &serde_json::Value) -> PathBuf {
    let path = env.path(&format!("{name}-pod.json"));
    let config = serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"), "attempt": 0},
        "log_directory": env.path(&format!("{name}-logs")).to_str().unwrap(),
        "annotations": annotations,
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

pub(crate) fn container_config(env: &TestEnv, name: &str, image: &str, script: &str) -> PathBuf {
    let path = env.path(&format!("{name}.json"));
    let config = serde_json::json!({
        "metadata": {"name": name},
        "image": {"image": image},
        "command": ["sh", "-c", script],
        "log_path": format!("{name}.log"),
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// The audit log as JSON entries.
fn audit(env: &TestEnv) -> Vec<serde_json::Value> {
    let r = env.run(&["audit", "--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    r.json().as_array().unwrap().clone()
}

fn seq_of(entries: &[serde_json::Value], action: &str, outcome: &str) -> Option<u64> {
    entries
        .iter()
        .find(|e| e["action"] == action && e["outcome"] == outcome)
        .and_then(|e| e["seq"].as_u64())
}

/// An image of one file, imported from a tarball (never listed in the pod's allow-list).
fn import_other_image(env: &TestEnv) {
    let dir = env.path("other-root");
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/other"), b"other\n").unwrap();
    let tar = env.path("other.tar");
    let st = std::process::Command::new("tar")
        .args([
            "-C",
            dir.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let r = env.run(&["import", tar.to_str().unwrap(), "other:1"]);
    assert_eq!(r.code, 0, "{r:?}");
}

/// The store file of the first layer of the image whose manifest is `digest`.
fn layer_blob(env: &TestEnv, digest: &str) -> PathBuf {
    let blobs = env.home.path().join("images/v1/blobs/sha256");
    let hex = |d: &str| d.strip_prefix("sha256:").unwrap().to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(hex(digest))).unwrap()).unwrap();
    blobs.join(hex(manifest["layers"][0]["digest"].as_str().unwrap()))
}

fn no_boxes(env: &TestEnv) {
    let boxes = env.run(&["ps", "-a", "--format", "json"]).json_lines();
    assert_eq!(boxes, serde_json::json!([]), "boxes left behind");
}

#[test]
fn a_simulated_confidential_pod_attests_before_its_container_reads_the_secret() {
    build_guest_init();
    let env = TestEnv::new();
    let digest = busybox_digest(&env);
    let k = kbs_for(&env, &pod_measurement(&env, &digest));
    import_other_image(&env);
    let server = CriServer::start(&env);
    let pod_json = pod_config(
        &env,
        "vault",
        &serde_json::json!({
            "io.a3s.box/kbs": k.url,
            "io.a3s.box/secrets": "token=kbs:///default/app/token",
            "io.a3s.box/images": digest,
        }),
    );
    let pod_path = pod_json.to_str().unwrap();
    let pod = server
        .ok(&["runp", "--runtime", "a3s-simulate", pod_path])
        .stdout
        .trim()
        .to_owned();
    let status = server.ok(&["inspectp", "-o", "json", &pod]).json();
    assert_eq!(status["status"]["state"], "SANDBOX_READY", "{status}");
    assert_eq!(status["status"]["runtimeHandler"], "a3s-simulate");
    let create = |name: &str, image: &str, script: &str| {
        let c = container_config(&env, name, image, script);
        server.crictl(&["create", "--no-pull", &pod, c.to_str().unwrap(), pod_path])
    };

    // An image that is not on the pod's allow-list is refused at CreateContainer.
    let other = create("other", "other:1", "cat /etc/other");
    assert_ne!(other.code, 0, "{other:?}");
    assert!(
        other.stderr.contains("PermissionDenied"),
        "{}",
        other.stderr
    );
    assert!(other.stderr.contains("allow-list"), "{}", other.stderr);

    // An allowed image whose layer blob the host changed: guest-init refuses the blob.
    let blob = layer_blob(&env, &digest);
    let pristine = std::fs::read(&blob).unwrap();
    let mut tampered = pristine.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x20;
    std::fs::write(&blob, &tampered).unwrap();
    let bad = create("tampered", "busybox", "true");
    std::fs::write(&blob, &pristine).unwrap();
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(bad.stderr.contains("PermissionDenied"), "{}", bad.stderr);
    assert!(bad.stderr.contains("not the manifest's"), "{}", bad.stderr);
    assert!(
        server.ok(&["ps", "-a", "-q"]).stdout.trim().is_empty(),
        "no container was recorded"
    );

    // The host cannot hand a confidential pod's container a device of the VM.
    let c = container_config(&env, "with-device", "busybox", "true");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&c).unwrap()).unwrap();
    config["devices"] = serde_json::json!([
        {"host_path": "/dev/kmsg", "container_path": "/dev/kmsg", "permissions": "rw"}
    ]);
    std::fs::write(&c, config.to_string()).unwrap();
    let with_device = server
        .ok(&["create", "--no-pull", &pod, c.to_str().unwrap(), pod_path])
        .stdout
        .trim()
        .to_owned();
    let started = server.crictl(&["start", &with_device]);
    assert_ne!(started.code, 0, "{started:?}");
    assert!(
        started.stderr.contains("takes no devices from its host"),
        "{}",
        started.stderr
    );
    server.ok(&["rm", &with_device]);

    // CRI mounts reach a confidential pod as copies (it shares no directory with the host):
    // a file as kubelet's /etc/hosts, a ConfigMap-style directory (kubelet's `..data`
    // symlinks) read-only. One over the copy limit is refused naming it.
    let hosts = env.path("kube-hosts");
    std::fs::write(&hosts, "10.0.0.7\tkube-web\n").unwrap();
    let cfg = env.path("kube-config");
    std::fs::create_dir_all(cfg.join("..data")).unwrap();
    std::fs::write(cfg.join("..data/app.conf"), "port=8080\n").unwrap();
    std::os::unix::fs::symlink("..data/app.conf", cfg.join("app.conf")).unwrap();
    let big = env.path("big-volume");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join("blob"), vec![0u8; 17 << 20]).unwrap();
    let with_mounts = |name: &str, script: &str, mounts: serde_json::Value| {
        let c = container_config(&env, name, "busybox", script);
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&c).unwrap()).unwrap();
        config["mounts"] = mounts;
        std::fs::write(&c, config.to_string()).unwrap();
        server.crictl(&["create", "--no-pull", &pod, c.to_str().unwrap(), pod_path])
    };
    let too_big = with_mounts(
        "too-big",
        "true",
        serde_json::json!([{"host_path": big, "container_path": "/data"}]),
    );
    assert_ne!(too_big.code, 0, "{too_big:?}");
    assert!(
        too_big.stderr.contains("big-volume") && too_big.stderr.contains("16777216 bytes"),
        "{}",
        too_big.stderr
    );

    // The allowed image: the container reads the secret placed before the pod was ready,
    // through a read-only mount. Only its hash is printed (the log is on the host).
    let reader = with_mounts(
        "reader",
        "sha256sum /run/secrets/token; echo dev: $(ls -A /dev); \
         touch /run/secrets/x 2>/dev/null && echo WRITABLE \
         || echo READONLY; grep kube-web /etc/hosts; cat /etc/config/app.conf; \
         touch /etc/config/x 2>/dev/null && echo CFG-WRITABLE || echo CFG-READONLY; \
         echo 10.0.0.8 changed >> /etc/hosts && echo HOSTS-WRITTEN; \
         echo reader-done; exec sleep 2147483647",
        serde_json::json!([
            {"host_path": hosts, "container_path": "/etc/hosts"},
            {"host_path": cfg, "container_path": "/etc/config", "readonly": true},
        ]),
    );
    assert_eq!(reader.code, 0, "{reader:?}");
    let reader = reader.stdout.trim().to_owned();
    server.ok(&["start", &reader]);
    let logs = reader_logs(|| server.ok(&["logs", &reader]).stdout);
    assert!(logs.contains("READONLY"), "{logs}");
    // Its own /dev (runc's standard set), none of the VM's disks or channels.
    let dev = logs
        .lines()
        .find_map(|l| l.split_once("dev: ").map(|(_, d)| d.to_owned()))
        .unwrap_or_default();
    assert_eq!(
        dev.trim(),
        "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero",
        "{logs}"
    );
    for line in [
        "10.0.0.7\tkube-web",
        "port=8080",
        "CFG-READONLY",
        "HOSTS-WRITTEN",
    ] {
        assert!(logs.contains(line), "{line}: {logs}");
    }
    // A copy: the container's write stayed in the VM.
    assert_eq!(
        std::fs::read_to_string(&hosts).unwrap(),
        "10.0.0.7\tkube-web\n"
    );

    // Host exec, streaming exec and attach are refused without the pod's opt-in.
    for args in [
        vec!["exec", "-s", reader.as_str(), "cat", "/run/secrets/token"],
        vec!["exec", reader.as_str(), "cat", "/run/secrets/token"],
        vec!["attach", reader.as_str()],
    ] {
        let r = server.crictl(&args);
        assert_ne!(r.code, 0, "{args:?}: {r:?}");
        assert!(
            r.stderr.contains("PermissionDenied"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(r.stderr.contains("io.a3s.box/allow-exec"), "{}", r.stderr);
        assert!(!r.stdout.contains(POD_SECRET));
    }

    // A restarted server (kill -9) takes the running container back without the host-access
    // opt-in: output and stop signals only. Before, it was reported EXITED/Unknown while it
    // ran on in the VM, and kubelet would have started a second one.
    drop(server);
    let server = CriServer::start(&env);
    let back = server.ok(&["inspect", "-o", "json", &reader]).json();
    assert_eq!(back["status"]["state"], "CONTAINER_RUNNING", "{back}");
    // Still no host access: attach (stdin) is refused as before.
    let r = server.crictl(&["attach", reader.as_str()]);
    assert!(r.stderr.contains("PermissionDenied"), "{}", r.stderr);
    // Stop reaches it through the re-attached session.
    server.ok(&["stop", "--timeout", "0", &reader]);
    let stopped = server.ok(&["inspect", "-o", "json", &reader]).json();
    assert_eq!(stopped["status"]["state"], "CONTAINER_EXITED", "{stopped}");
    assert_eq!(stopped["status"]["exitCode"], 137, "{stopped}");

    // The order in the audit log: measured, attested, secret released, then the pod was
    // ready and only then the container was created and started.
    let entries = audit(&env);
    let at = |action: &str, outcome: &str| {
        seq_of(&entries, action, outcome)
            .unwrap_or_else(|| panic!("no {action} {outcome} in {entries:#?}"))
    };
    let released = at("tee.secret_released", "success");
    assert!(at("tee.measure", "success") < at("tee.kbs_attest", "success"));
    assert!(at("tee.kbs_attest", "success") < released);
    assert!(released < at("pod.run", "success"));
    assert!(at("pod.run", "success") < at("container.start", "success"));
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["action"] == "container.exec" && e["outcome"] == "denied")
            .count(),
        4,
        "each refusal is audited (three before the restart, one after)"
    );
    assert!(at("container.create", "denied") > 0);
    assert!(at("container.start", "success") < at("container.reattach", "success"));

    server.ok(&["stopp", &pod]);
    server.ok(&["rmp", &pod]);
    no_boxes(&env);
    crate::tee::assert_never_on_host(&env, POD_SECRET, &["pod-secret.txt"]);
}

#[test]
fn a_confidential_pod_the_kbs_denies_leaves_nothing_behind_and_exec_needs_the_opt_in() {
    build_guest_init();
    let env = TestEnv::new();
    let digest = busybox_digest(&env);
    // The KBS expects another launch measurement: attestation does not affirm this VM.
    let k = kbs_for(&env, &"00".repeat(48));
    let server = CriServer::start(&env);
    let pod_json = pod_config(
        &env,
        "denied",
        &serde_json::json!({
            "io.a3s.box/tee": "simulate",
            "io.a3s.box/kbs": k.url,
            "io.a3s.box/secrets": "token=kbs:///default/app/token",
            "io.a3s.box/images": digest,
        }),
    );
    let r = server.crictl(&["runp", pod_json.to_str().unwrap()]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("TEE step secret failed"), "{}", r.stderr);
    assert!(r.stderr.contains("PolicyDeny"), "{}", r.stderr);
    assert!(
        server.ok(&["pods", "-q"]).stdout.trim().is_empty(),
        "no pod left"
    );
    assert!(
        server.ok(&["ps", "-a", "-q"]).stdout.trim().is_empty(),
        "no container"
    );
    no_boxes(&env);
    let entries = audit(&env);
    let failed = entries
        .iter()
        .find(|e| e["action"] == "pod.run" && e["outcome"] == "failure")
        .unwrap_or_else(|| panic!("no pod.run failure in {entries:#?}"));
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("TEE step secret"),
        "{failed}"
    );
    assert!(seq_of(&entries, "tee.secret_released", "success").is_none());

    // SEV-SNP on a host without it, and a secret naming a host file: refused before boot.
    let snp = pod_config(&env, "snp", &serde_json::json!({}));
    let r = server.crictl(&["runp", "--runtime", "a3s-snp", snp.to_str().unwrap()]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("no SEV-SNP hardware"), "{}", r.stderr);
    let file = pod_config(
        &env,
        "file",
        &serde_json::json!({
            "io.a3s.box/kbs": k.url,
            "io.a3s.box/secrets": "shadow=file:/etc/shadow",
        }),
    );
    let r = server.crictl(&["runp", "--runtime", "a3s-simulate", file.to_str().unwrap()]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("InvalidArgument"), "{}", r.stderr);
    assert!(r.stderr.contains("never from the node"), "{}", r.stderr);
    no_boxes(&env);
    let denied = audit(&env)
        .iter()
        .filter(|e| e["action"] == "pod.run" && e["outcome"] == "denied")
        .count();
    assert_eq!(denied, 2, "both refusals are audited");

    // The opt-in: a confidential pod (no secrets) with io.a3s.box/allow-exec lets the host
    // exec in its containers.
    let open = pod_config(
        &env,
        "open",
        &serde_json::json!({"io.a3s.box/images": digest, "io.a3s.box/allow-exec": "true"}),
    );
    let open_path = open.to_str().unwrap();
    let pod = server
        .ok(&["runp", "--runtime", "a3s-simulate", open_path])
        .stdout
        .trim()
        .to_owned();
    let c = container_config(&env, "shell", "busybox", "exec sleep 2147483647");
    let shell = server
        .ok(&["create", "--no-pull", &pod, c.to_str().unwrap(), open_path])
        .stdout
        .trim()
        .to_owned();
    server.ok(&["start", &shell]);
    let r = server.ok(&["exec", "-s", &shell, "cat", "/proc/cmdline"]);
    assert!(
        r.stdout.contains(&format!("a3s.pod_images={digest}")),
        "{}",
        r.stdout
    );
    server.ok(&["stopp", &pod]);
    server.ok(&["rmp", &pod]);
    no_boxes(&env);
}
