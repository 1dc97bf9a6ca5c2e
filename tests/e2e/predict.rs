//! Issue 17: `a3s-box measure --image` predicts what `run` measures on this host, with the
//! run flags that reach the launch (plain, `--cpus 2` with `--kernel-arg`, a signed image),
//! and `kbs reference-value add --from-image` registers it so a KBS secret reaches the box
//! on the first run, with no other step.
//!
//! Shares the TEE tests' A3S home (and its simulator). Two VM boots; the signed image is
//! checked by a launch refused before boot (the monitor measures before it boots).

use crate::image::registry::{build_image, LocalRegistry};
use crate::support::TestEnv;
use crate::tee::{
    admin, boot_lock, inspect, kbs, sha256_hex, shared, wait_for_log, KBS_SECRET, MARKER,
};

fn measure(env: &TestEnv, image: &str, flags: &[&str]) -> String {
    let mut args = vec!["measure", "--image", image];
    args.extend_from_slice(flags);
    let r = env.run(&args);
    assert_eq!(r.code, 0, "{args:?}: {r:?}");
    let m = r.stdout.trim().to_owned();
    assert_eq!(m.len(), 96, "{r:?}");
    m
}

#[test]
fn registered_prediction_releases_a_kbs_secret_on_the_first_run() {
    let s = shared();
    let env = &s.env;
    // Held from the first measurement: the tampered-initrd test alters the shared initrd.
    let _boot = boot_lock();
    // The prediction equals what the probe launch in `shared()` measured.
    let predicted = measure(env, "busybox", &["--tee-simulate"]);
    assert_eq!(predicted, s.measurement);
    let json = env.run(&[
        "measure",
        "--image",
        "busybox",
        "--tee-simulate",
        "--format",
        "json",
    ]);
    assert_eq!(json.code, 0, "{json:?}");
    let j = json.json();
    assert_eq!(j["measurement"], predicted.as_str());
    assert_eq!(j["simulated"], true);
    assert_eq!(j["inputs"]["vcpus"], 1);
    let cmdline = j["inputs"]["cmdline"].as_str().unwrap();
    assert!(
        cmdline.contains(&format!(
            "a3s.image={}",
            j["image_digest"].as_str().unwrap()
        )) && cmdline.contains("a3s.root="),
        "{j}"
    );

    // sign-in-place of a fresh user: KBS with a secret, register, run. Nothing else.
    let k = kbs(env, "predict.db");
    // Outside the shared home: the tee tests check that no file in it holds the secret.
    let inputs = tempfile::tempdir().unwrap();
    let file =
        crate::support::write_file(inputs.path(), "predict-secret.txt", KBS_SECRET.as_bytes());
    admin(
        env,
        &[
            "kbs",
            "resource",
            "set",
            "--url",
            &k.url,
            "default/app/predict",
            "--file",
            &file,
        ],
    );
    admin(
        env,
        &[
            "kbs",
            "reference-value",
            "add",
            "--url",
            &k.url,
            "--from-image",
            "busybox",
            "--tee-simulate",
        ],
    );
    // Appending keeps what is there; `list` shows it.
    admin(
        env,
        &[
            "kbs",
            "reference-value",
            "add",
            "--url",
            &k.url,
            &"ef".repeat(48),
        ],
    );
    let list = env.run(&["kbs", "reference-value", "list", "--url", &k.url]);
    assert_eq!(list.code, 0, "{list:?}");
    let listed = list.json()["snp_launch_measurement"].clone();
    assert_eq!(
        listed,
        serde_json::json!([predicted, "ef".repeat(48)]),
        "{list:?}"
    );
    let r = env.run(&[
        "run",
        "-d",
        "--name",
        "predicted",
        "--tee-simulate",
        "--kbs-url",
        &k.url,
        "--secret",
        "token=kbs:///default/app/predict",
        "busybox",
        "sh",
        "-c",
        "sha256sum /run/secrets/token; echo WORKLOAD-STARTED; sleep 600",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let logs = wait_for_log(env, "predicted", MARKER);
    assert!(logs.contains(&sha256_hex(KBS_SECRET.as_bytes())), "{logs}");
    assert_eq!(
        inspect(env, "predicted")["tee"]["measurement"],
        predicted.as_str()
    );
    assert_eq!(env.run(&["rm", "-f", "predicted"]).code, 0);

    // `remove` takes exactly that value out again.
    admin(
        env,
        &[
            "kbs",
            "reference-value",
            "remove",
            "--url",
            &k.url,
            "--from-image",
            "busybox",
            "--tee-simulate",
        ],
    );
    let list = env.run(&["kbs", "reference-value", "list", "--url", &k.url]);
    assert_eq!(
        list.json()["snp_launch_measurement"],
        serde_json::json!(["ef".repeat(48)])
    );
}

#[test]
fn cpus_and_kernel_args_are_predicted_and_booted_as_measured() {
    let s = shared();
    let env = &s.env;
    // Held from the first measurement: the tampered-initrd test alters the shared initrd.
    let _boot = boot_lock();
    let flags = [
        "--tee-simulate",
        "--cpus",
        "2",
        "--kernel-arg",
        "a3s.test=predicted",
    ];
    let predicted = measure(env, "busybox", &flags);
    assert_ne!(
        predicted, s.measurement,
        "vCPUs and the command line are measured"
    );
    assert_ne!(
        predicted,
        measure(env, "busybox", &["--tee-simulate", "--cpus", "2"]),
        "the kernel argument is measured"
    );
    // The prediction as --expected-measurement: the box boots only if it is exact.
    let r = env.run(&[
        "run",
        "--rm",
        "--tee-simulate",
        "--cpus",
        "2",
        "--kernel-arg",
        "a3s.test=predicted",
        "--expected-measurement",
        &predicted,
        "busybox",
        "sh",
        "-c",
        "grep -o a3s.test=predicted /proc/cmdline; nproc",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("a3s.test=predicted"), "{r:?}");
    assert!(r.stdout.lines().any(|l| l.trim() == "2"), "{r:?}");
}

#[test]
fn a_signed_image_is_predicted_like_its_gated_launch_and_bad_requests_are_explained() {
    let env = &shared().env;
    // The tampered-initrd test alters the shared initrd: measure and launch while it cannot.
    let _boot = boot_lock();
    let reg = LocalRegistry::start();
    let layout = build_image("predict", &[]);
    reg.push_layout(&layout.path(), "predict", "predict/app:1");
    let image = format!("{}/predict/app:1", reg.addr);
    let keys = tempfile::tempdir().unwrap();
    let gen = env
        .cmd()
        .args([
            "key",
            "generate",
            "--out-dir",
            keys.path().to_str().unwrap(),
        ])
        .env("COSIGN_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let sign = env
        .cmd()
        .args(["image", "sign", "--key"])
        .arg(keys.path().join("cosign.key"))
        .arg(&image)
        .env("COSIGN_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(
        sign.status.success(),
        "{}",
        String::from_utf8_lossy(&sign.stderr)
    );
    let pubkey = keys.path().join("cosign.pub");
    let pulled = env.run(&[
        "pull",
        "-q",
        "--verify-key",
        pubkey.to_str().unwrap(),
        &image,
    ]);
    assert_eq!(pulled.code, 0, "{pulled:?}");
    let predicted = measure(env, &image, &["--tee-simulate"]);
    // The signature-gated launch, refused before boot only by the deliberate wrong value:
    // the monitor records what it measured.
    let r = env.run(&[
        "run",
        "--name",
        "predict-signed",
        "--tee-simulate",
        "--verify-key",
        pubkey.to_str().unwrap(),
        "--expected-measurement",
        &"00".repeat(48),
        &image,
        "-c",
        "true",
    ]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("launch measurement mismatch"), "{r:?}");
    let rec = inspect(env, "predict-signed");
    assert_eq!(rec["tee"]["measurement"], predicted.as_str(), "{rec}");
    assert_eq!(env.run(&["rm", "-f", "predict-signed"]).code, 0);

    // Requests that cannot be predicted say why and what to do.
    let plain = env.run(&["measure", "--image", "busybox"]);
    assert_eq!(plain.code, 2, "{plain:?}");
    assert!(plain.stderr.contains("--tee-simulate"), "{plain:?}");
    let missing = env.run(&["measure", "--image", "no-such/image:1", "--tee-simulate"]);
    assert_ne!(missing.code, 0, "{missing:?}");
    assert!(missing.stderr.contains("no-such/image"), "{missing:?}");
}

/// One image in two homes (two nodes): the same prediction. Its filesystem is built to the
/// same bytes wherever and whenever it is built (its dm-verity root hash is on the measured
/// command line), so a reference value registered from one node holds on every node. Before,
/// the erofs build time and the unpack time of directories no layer lists made every build
/// differ.
#[test]
fn two_homes_predict_the_same_measurement_for_one_image() {
    let (a, b) = (TestEnv::new(), TestEnv::new());
    let first = measure(&a, "busybox", &["--tee-simulate"]);
    let tar = a.path("busybox.tar");
    let tar = tar.to_str().unwrap();
    let saved = a.run(&["save", "-o", tar, "busybox"]);
    assert_eq!(saved.code, 0, "{saved:?}");
    let loaded = b.run(&["load", "-i", tar]);
    assert_eq!(loaded.code, 0, "{loaded:?}");
    assert_eq!(measure(&b, "busybox", &["--tee-simulate"]), first);
}
