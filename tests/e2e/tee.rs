//! The trust pipeline end to end under TCG with the simulator (issue 8): secrets from a real
//! KBS and from host files reach the workload; a wrong expected measurement, a tampered
//! initrd, a missing secret and a KBS policy denial each stop the box before its workload;
//! `attest` verifies a running box with a fresh nonce, through the monitor and through a
//! published port; exec is refused; sealing survives into the next box of the same image and
//! not into one with another `--kernel-arg`. Secret values are grepped for in host state,
//! logs and the audit log.
//!
//! One A3S home for all of them (its simulator's RSA-4096 roots are made once); about seven
//! VM boots in all.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::support::{write_file, Run, TestEnv};

pub(crate) const KBS_SECRET: &str = "kbs-secret-7f3a9c1e-never-on-the-host";
const FILE_SECRET: &str = "file-secret-51d0b2aa-never-on-the-host";
pub(crate) const MARKER: &str = "WORKLOAD-STARTED";

pub(crate) struct Shared {
    pub(crate) env: TestEnv,
    /// What the default box (1 vCPU, no extra kernel args) measures.
    pub(crate) measurement: String,
}

pub(crate) fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        crate::support::build_guest_init();
        let env = TestEnv::new();
        // A refused launch measures without booting: the cheapest way to learn the value.
        let zero = "00".repeat(48);
        let r = env.run(&[
            "run",
            "--name",
            "measure-probe",
            "--tee-simulate",
            "--expected-measurement",
            &zero,
            "busybox",
            "echo",
            MARKER,
        ]);
        assert_eq!(r.code, 125, "{r:?}");
        let rec = inspect(&env, "measure-probe");
        let measurement = rec["tee"]["measurement"].as_str().unwrap().to_owned();
        assert_eq!(measurement.len(), 96, "{rec}");
        Shared { env, measurement }
    })
}

/// Boots are serialised: seven TCG VMs at once on two cores would only time out. Whatever
/// measures the shared initrd holds it too, as the tampered-initrd test rewrites that file.
pub(crate) fn boot_lock() -> std::sync::MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn inspect(env: &TestEnv, name: &str) -> serde_json::Value {
    let r = env.run(&["inspect", name]);
    assert_eq!(r.code, 0, "{r:?}");
    r.json()[0].clone()
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A running `a3s-box kbs serve --allow-simulated --insecure-admin` in the shared home.
pub(crate) struct Kbs {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Kbs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn kbs(env: &TestEnv, db: &str) -> Kbs {
    kbs_serve(env.cmd(), &env.path(db))
}

/// `cmd` (an `a3s-box` command, wherever it runs) serving a KBS on loopback with database `db`.
pub(crate) fn kbs_serve(mut cmd: Command, db: &Path) -> Kbs {
    let mut child = cmd
        .args(["kbs", "serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(["--allow-simulated", "--insecure-admin"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("starting a3s-box kbs serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("kbs serve exited early").unwrap();
        if let Some(rest) = line.strip_prefix("KBS listening on ") {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Kbs { child, url }
}

pub(crate) fn admin(env: &TestEnv, args: &[&str]) {
    let r = env.run(args);
    assert_eq!(r.code, 0, "{args:?}: {r:?}");
}

/// A KBS holding `default/app/token` for VMs that measure `measurement`.
fn kbs_with_secret(env: &TestEnv, db: &str, measurement: &str) -> Kbs {
    let k = kbs(env, db);
    let file = write_file(env.home.path(), "kbs-secret.txt", KBS_SECRET.as_bytes());
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

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The secret appears in no host file of the home outside the test's own input files, in no
/// box state, log or audit line.
pub(crate) fn assert_never_on_host(env: &TestEnv, secret: &str, inputs: &[&str]) {
    for f in files_under(env.home.path()) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if inputs.contains(&name.as_str()) || name.ends_with(".db") || name.ends_with(".db-wal") {
            continue; // the test's own input, and the remote KBS's own database
        }
        if name == "rw.img" || f.parent().is_some_and(|d| d.ends_with("cache/tee-layers")) {
            // A box's writable-layer disk, or a kept copy of one made before any secret was
            // fetched: sparse (10 GiB apparent), encrypted in the guest in TEE modes; reading
            // it whole would take 10 GiB of memory.
            continue;
        }
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "secret found on the host in {}",
            f.display()
        );
    }
    // Nor on any process's command line (the monitor's above all).
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            assert!(
                !cmdline
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "secret on a command line: {}",
                String::from_utf8_lossy(&cmdline)
            );
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn wait_for_log(env: &TestEnv, name: &str, needle: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let r = env.run(&["logs", name]);
        if r.stdout.contains(needle) {
            return r.stdout;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(240),
            "{needle:?} never appeared in the logs of {name}: {r:?}\n{}",
            inspect(env, name)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn tee_flags_are_checked_before_boot() {
    let env = &shared().env;
    for (args, code, needle) in [
        (
            vec!["run", "--rm", "--tee-enable", "busybox", "true"],
            125,
            "--tee-enable: no SEV-SNP host support",
        ),
        (
            vec![
                "run",
                "--rm",
                "--secret",
                "a=file:/etc/hostname",
                "busybox",
                "true",
            ],
            2,
            "--secret needs --tee-enable or --tee-simulate",
        ),
        (
            vec![
                "run",
                "--rm",
                "--tee-simulate",
                "--secret",
                "a=vault:x",
                "busybox",
                "true",
            ],
            2,
            "must start with kbs:/// (a KBS resource) or file:",
        ),
        (
            vec![
                "run",
                "--rm",
                "--tee-simulate",
                "--secret",
                "../etc=kbs:///a/b/c",
                "busybox",
                "true",
            ],
            2,
            "characters other than letters",
        ),
        (
            vec![
                "run",
                "--rm",
                "--tee-simulate",
                "--secret",
                "a=kbs:///a/b/c",
                "busybox",
                "true",
            ],
            125,
            "kbs:/// secrets need --kbs-url",
        ),
        (
            vec![
                "run",
                "--rm",
                "--tee-simulate",
                "--expected-measurement",
                "abcd",
                "busybox",
                "true",
            ],
            2,
            "48 bytes (96 hex digits)",
        ),
        (
            vec![
                "run",
                "--rm",
                "--tee-simulate",
                "--network",
                "none",
                "--secret",
                "a=file:/etc/hostname",
                "busybox",
                "true",
            ],
            125,
            "--network none",
        ),
    ] {
        let r = env.run(&args);
        assert_eq!(r.code, code, "{args:?}: {r:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn a_wrong_expected_measurement_is_refused_and_the_value_is_reproducible() {
    let s = shared();
    let env = &s.env;
    // The probe in `shared()` was refused before boot, audited, and shows what it measured.
    let rec = inspect(env, "measure-probe");
    assert_eq!(rec["state"]["exit_code"], 125, "{rec}");
    let error = rec["state"]["error"].as_str().unwrap();
    assert!(error.contains("launch measurement mismatch"), "{error}");
    assert!(error.contains(&s.measurement), "{error}");
    assert_eq!(rec["tee"]["simulated"], true);
    assert!(rec["boot"].is_null(), "no VM booted: {rec}");
    let audit = env.run(&[
        "audit",
        "--action",
        "tee.measurement_check",
        "--format",
        "json",
    ]);
    assert!(audit.stdout.contains("\"denied\""), "{audit:?}");
    assert!(!env.run(&["logs", "measure-probe"]).stdout.contains(MARKER));

    // `a3s-box measure` reproduces the value from the very files the box would boot (under
    // the lock: the tampered-initrd test alters that initrd for a moment).
    let _boot = boot_lock();
    let id = rec["id"].as_str().unwrap();
    let plan: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.home.path().join("boxes").join(id).join("plan.json")).unwrap(),
    )
    .unwrap();
    let r = env.run(&[
        "measure",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-Milan",
        "--microvm-firmware",
        "/usr/share/qemu/qboot.rom",
        "--kernel",
        plan["kernel"].as_str().unwrap(),
        "--initrd",
        plan["initrd"].as_str().unwrap(),
        "--append",
        plan["cmdline"].as_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), s.measurement);
}

#[test]
fn secrets_from_a_kbs_reach_the_workload_and_attest_verifies_the_running_box() {
    let s = shared();
    let env = &s.env;
    let k = kbs_with_secret(env, "good.db", &s.measurement);
    let port = free_port();
    let publish = format!("{port}:7443");
    let nonce = "ab".repeat(32);
    let _boot = boot_lock();
    let r = env.run(&[
        "run",
        "-d",
        "--name",
        "tee-kbs",
        "--tee-simulate",
        "--expected-measurement",
        &s.measurement,
        "-p",
        &publish,
        "--kbs-url",
        &k.url,
        "--secret",
        "token=kbs:///default/app/token",
        "busybox",
        "sh",
        "-c",
        "sha256sum /run/secrets/token; stat -c '%a %u' /run/secrets/token; \
         grep ' /run/secrets ' /proc/mounts; echo WORKLOAD-STARTED; sleep 600",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let logs = wait_for_log(env, "tee-kbs", MARKER);
    assert!(logs.contains(&sha256_hex(KBS_SECRET.as_bytes())), "{logs}");
    assert!(logs.contains("400 0"), "mode 0400, owned by root: {logs}");
    assert!(logs.contains("tmpfs"), "/run/secrets is a tmpfs: {logs}");

    // inspect: TEE mode, measurement, simulated flag, the agent's steps.
    let rec = inspect(env, "tee-kbs");
    assert_eq!(rec["tee"]["mode"], "simulated");
    assert_eq!(rec["tee"]["simulated"], true);
    assert_eq!(rec["tee"]["measurement"], s.measurement.as_str());
    let steps = rec["tee"]["steps"].to_string();
    assert!(
        steps.contains("kbs_attest") && steps.contains("secret:token"),
        "{steps}"
    );

    // attest through the monitor, with the verifier's own nonce.
    let a = env.run(&["attest", "tee-kbs", "--nonce", &nonce, "--format", "json"]);
    assert_eq!(a.code, 0, "{a:?}");
    let v = a.json();
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["simulated"], true, "{v}");
    assert_eq!(v["measurement"], s.measurement.as_str(), "{v}");
    assert_eq!(v["launch_measurement"], s.measurement.as_str(), "{v}");
    assert_eq!(v["nonce"], nonce.as_str());
    let bound = v["bound_nonce"].as_str().unwrap();
    assert_ne!(bound, nonce, "the answer is bound to the TLS exporter too");
    // A second attestation is fresh: another connection, another exporter binding.
    let b = env.run(&["attest", "tee-kbs", "--nonce", &nonce, "--format", "json"]);
    assert_eq!(b.code, 0, "{b:?}");
    assert_ne!(b.json()["bound_nonce"].as_str().unwrap(), bound);
    // A policy that wants another measurement refuses it (exit 1).
    let other = write_file(
        env.home.path(),
        "other-policy.toml",
        format!(
            "allow_simulated = true\nmeasurements = [\"{}\"]\n",
            "11".repeat(48)
        )
        .as_bytes(),
    );
    let c = env.run(&["attest", "tee-kbs", "--policy", &other]);
    assert_eq!(c.code, 1, "{c:?}");
    assert!(c.stdout.contains("NO"), "{c:?}");

    // A remote verifier reaches the agent through the published port.
    let policy = write_file(
        env.home.path(),
        "policy.toml",
        format!(
            "allow_simulated = true\nmeasurements = [\"{}\"]\n",
            s.measurement
        )
        .as_bytes(),
    );
    let addr = format!("127.0.0.1:{port}");
    let d = env.run(&[
        "attest",
        "--connect",
        &addr,
        "--policy",
        &policy,
        "--format",
        "json",
    ]);
    assert_eq!(d.code, 0, "{d:?}");
    assert_eq!(d.json()["verified"], true);

    // Host exec is refused in TEE mode, and the refusal is audited.
    let e = env.run(&["exec", "tee-kbs", "cat", "/run/secrets/token"]);
    assert_eq!(e.code, 125, "{e:?}");
    assert!(e.stderr.contains("--allow-exec"), "{e:?}");
    let audit = env
        .run(&["audit", "--box", "tee-kbs", "--format", "json"])
        .stdout;
    for action in [
        "tee.measure",
        "tee.kbs_attest",
        "tee.secret_released",
        "tee.attest",
    ] {
        assert!(audit.contains(action), "{action} not audited: {audit}");
    }
    let denied = env.run(&["audit", "--action", "box.exec", "--outcome", "denied"]);
    assert!(denied.stdout.contains("TEE mode"), "{denied:?}");

    assert_eq!(env.run(&["rm", "-f", "tee-kbs"]).code, 0);
    assert_never_on_host(env, KBS_SECRET, &["kbs-secret.txt"]);
}

#[test]
fn file_secrets_and_sealing_across_boxes() {
    let s = shared();
    let env = &s.env;
    let secret = write_file(env.home.path(), "file-secret.txt", FILE_SECRET.as_bytes());
    let spec = format!("greeting=file:{secret}");
    let _boot = boot_lock();
    let r = env.run(&[
        "run",
        "--name",
        "seal-1",
        "--tee-simulate",
        "--secret",
        &spec,
        "busybox",
        "sh",
        "-c",
        "sha256sum /run/secrets/greeting; \
         echo -n 'sealed payload' | /run/a3s/bin/a3s-guest seal > /tmp/blob && \
         echo BLOB=$(cat /tmp/blob)",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(&sha256_hex(FILE_SECRET.as_bytes())),
        "{r:?}"
    );
    let blob = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("BLOB="))
        .unwrap_or_else(|| panic!("no sealed blob: {r:?}"))
        .trim()
        .to_owned();
    assert!(!blob.is_empty() && !blob.contains("sealed payload"));

    let unseal = format!("echo '{blob}' | /run/a3s/bin/a3s-guest unseal; echo; echo rc=$?");
    // The next box of the same image (same measurement) opens it...
    let again = env.run(&[
        "run",
        "--rm",
        "--tee-simulate",
        "busybox",
        "sh",
        "-c",
        &unseal,
    ]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("sealed payload"), "{again:?}");
    // ...one booted with another kernel command line (another measurement) cannot.
    let changed = env.run(&[
        "run",
        "--rm",
        "--tee-simulate",
        "--kernel-arg",
        "a3s.test=changed",
        "busybox",
        "sh",
        "-c",
        &format!("echo '{blob}' | /run/a3s/bin/a3s-guest unseal; echo rc=$?"),
    ]);
    assert!(!changed.stdout.contains("sealed payload"), "{changed:?}");
    assert!(changed.stdout.contains("rc=1"), "{changed:?}");
    assert_never_on_host(env, FILE_SECRET, &["file-secret.txt"]);
    assert_eq!(env.run(&["rm", "seal-1"]).code, 0);
}

/// The box failed before its workload ran, naming the step and why.
fn assert_stopped_before_workload(r: &Run, step: &str, why: &str) {
    assert_eq!(r.code, 125, "{r:?}");
    assert!(!r.stdout.contains(MARKER), "the workload ran: {r:?}");
    assert!(
        r.stderr.contains(&format!("TEE step {step} failed")),
        "{step}: {r:?}"
    );
    assert!(r.stderr.contains(why), "{why}: {r:?}");
}

#[test]
fn a_missing_secret_a_policy_denial_and_a_tampered_initrd_stop_the_box() {
    let s = shared();
    let env = &s.env;
    let k = kbs_with_secret(env, "fail.db", &s.measurement);
    let echo = ["busybox", "echo", MARKER];
    let _boot = boot_lock();

    // A secret the KBS does not have.
    let mut args = vec![
        "run",
        "--rm",
        "--tee-simulate",
        "--kbs-url",
        &k.url,
        "--secret",
        "nope=kbs:///default/app/missing",
    ];
    args.extend(echo);
    assert_stopped_before_workload(&env.run(&args), "secret", "not found at the KBS");

    // The local KBS's attestation policy denies.
    let file = write_file(env.home.path(), "denied.txt", b"x");
    let deny = write_file(
        env.home.path(),
        "deny.rego",
        b"package policy\ndefault allow := false\n",
    );
    let spec = format!("x=file:{file}");
    let mut args = vec![
        "run",
        "--rm",
        "--tee-simulate",
        "--tee-policy",
        &deny,
        "--secret",
        &spec,
    ];
    args.extend(echo);
    // trustee semantics: attestation yields a non-affirming token, the release is denied.
    assert_stopped_before_workload(&env.run(&args), "secret", "PolicyDeny");

    // A tampered initrd: the host appends a file to the cached initrd. The VM now measures
    // differently, so the KBS (which expects the pristine measurement) refuses it.
    let rec = inspect(env, "measure-probe");
    let id = rec["id"].as_str().unwrap();
    let plan: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.home.path().join("boxes").join(id).join("plan.json")).unwrap(),
    )
    .unwrap();
    let initrd = PathBuf::from(plan["initrd"].as_str().unwrap());
    let pristine = std::fs::read(&initrd).unwrap();
    let mut tampered = pristine.clone();
    while tampered.len() % 4 != 0 {
        tampered.push(0);
    }
    tampered.extend(newc_archive("etc/tampered", b"evil\n"));
    std::fs::write(&initrd, &tampered).unwrap();
    let mut args = vec![
        "run",
        "--rm",
        "--tee-simulate",
        "--kbs-url",
        &k.url,
        "--secret",
        "token=kbs:///default/app/token",
    ];
    args.extend(echo);
    let r = env.run(&args);
    std::fs::write(&initrd, &pristine).unwrap();
    assert_stopped_before_workload(&r, "secret", "PolicyDeny");
    let audit = env.run(&["audit", "--action", "tee.agent", "--outcome", "failure"]);
    assert!(audit.stdout.lines().count() >= 3, "{audit:?}");
}

/// A cpio "newc" archive with one regular file, as the kernel unpacks concatenated archives.
fn newc_archive(name: &str, data: &[u8]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
        let namesize = name.len() + 1;
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
            0, 0, 1, 0, data.len(), 0, 0, 0, 0, 0
        );
        out.extend(header.as_bytes());
        out.extend(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    entry(&mut out, 1, 0o100_644, name, data);
    entry(&mut out, 0, 0, "TRAILER!!!", b"");
    while out.len() % 512 != 0 {
        out.push(0);
    }
    out
}

#[test]
fn verify_key_refuses_an_unsigned_image_before_boot() {
    let env = &shared().env;
    let keys = tempfile::tempdir().unwrap();
    let out = env
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
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = keys.path().join("cosign.pub");
    let r = env.run(&[
        "run",
        "--rm",
        "--name",
        "unsigned",
        "--tee-simulate",
        "--verify-key",
        public.to_str().unwrap(),
        "busybox",
        "echo",
        MARKER,
    ]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("may not run"), "{r:?}");
    assert!(!r.stdout.contains(MARKER));
    assert!(
        env.run(&["inspect", "unsigned"]).code != 0,
        "the refused box is gone"
    );
    let audit = env.run(&["audit", "--action", "image.verify", "--format", "json"]);
    assert!(audit.stdout.contains("\"denied\""), "{audit:?}");
    assert!(
        audit.stdout.contains("sha256:"),
        "the digest is audited: {audit:?}"
    );
}
