//! The key broker end to end: `a3s-box kbs serve` on loopback, secrets fetched with
//! `a3s-box kbs get --simulate`, administered with the admin commands and an admin key made
//! by openssl.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::OnceLock;

use crate::support::{write_file, TestEnv};

/// One home for every KBS test: its simulator is created once (RSA-4096 keys cost seconds).
fn shared() -> &'static TestEnv {
    static HOME: OnceLock<TestEnv> = OnceLock::new();
    HOME.get_or_init(|| {
        let env = TestEnv::new();
        let out = env.path("first.bin").display().to_string();
        let r = env.run(&[
            "attest",
            "report",
            "--simulate",
            "--report-data",
            "00",
            "--out",
            &out,
        ]);
        assert_eq!(r.code, 0, "{r:?}");
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = env.path("admin.pem").display().to_string();
        let public = env.path("admin.pub").display().to_string();
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ]);
        openssl(&["pkey", "-in", &key, "-pubout", "-out", &public]);
        env
    })
}

/// A running `a3s-box kbs serve`, killed on drop.
pub(crate) struct Kbs {
    pub(crate) child: Child,
    pub(crate) url: String,
    stderr_head: String,
}

impl Drop for Kbs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(db_name: &str, extra: &[&str]) -> Kbs {
    let env = shared();
    let db = env.path(db_name).display().to_string();
    spawn_kbs(env, &[&["--db", &db], extra].concat())
}

/// Starts `a3s-box kbs serve` on a free loopback port in `env` with `args`.
pub(crate) fn spawn_kbs(env: &TestEnv, args: &[&str]) -> Kbs {
    let mut child = env
        .cmd()
        .args(["kbs", "serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("starting a3s-box kbs serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut head = String::new();
    let url = loop {
        let line = lines
            .next()
            .expect("kbs serve exited before listening")
            .unwrap();
        head.push_str(&line);
        head.push('\n');
        if let Some(rest) = line.strip_prefix("KBS listening on ") {
            break rest.trim().to_owned();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Kbs {
        child,
        url,
        stderr_head: head,
    }
}

fn admin_key() -> String {
    shared().path("admin.pem").display().to_string()
}

fn admin_serve(db: &str) -> Kbs {
    let public = shared().path("admin.pub").display().to_string();
    serve(db, &["--allow-simulated", "--admin-public-key", &public])
}

const M_GOOD: &str = "6162636465666768696a6b6c6d6e6f707172737475767778797a414243444546474849";

fn good_measurement() -> String {
    format!("{M_GOOD:0<96}")
}

fn set_up(kbs: &Kbs, secret: &[u8]) {
    let env = shared();
    let file = write_file(env.home.path(), "secret.bin", secret);
    let key = admin_key();
    let r = env.run(&[
        "kbs",
        "resource",
        "set",
        "--url",
        &kbs.url,
        "--admin-key",
        &key,
        "default/key/1",
        "--file",
        &file,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let rv = format!("[\"{}\"]", good_measurement());
    let r = env.run(&[
        "kbs",
        "reference-value",
        "set",
        "--url",
        &kbs.url,
        "--admin-key",
        &key,
        "snp_launch_measurement",
        &rv,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn secret_is_released_only_after_valid_attestation_with_a_reference_measurement() {
    let env = shared();
    let kbs = admin_serve("released.db");
    assert!(
        kbs.stderr_head.contains("--allow-simulated"),
        "{}",
        kbs.stderr_head
    );
    set_up(&kbs, b"s3cr3t\x00\xff");
    let out = env.path("got.bin");
    let m = good_measurement();
    let r = env.run(&[
        "kbs",
        "get",
        "--url",
        &kbs.url,
        "--simulate",
        "--measurement",
        &m,
        "default/key/1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("SIMULATED"), "{}", r.stderr);
    assert_eq!(std::fs::read(&out).unwrap(), b"s3cr3t\x00\xff");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // To stdout, with every TEE key type.
    for key in ["p256", "p521", "rsa"] {
        let r = env.run(&[
            "kbs",
            "get",
            "--url",
            &kbs.url,
            "--simulate",
            "--measurement",
            &m,
            "--tee-key",
            key,
            "default/key/1",
        ]);
        assert_eq!(r.code, 0, "{key}: {r:?}");
        assert_eq!(
            r.stdout,
            String::from_utf8_lossy(b"s3cr3t\x00\xff"),
            "{key}"
        );
    }
}

#[test]
fn secret_is_denied_when_the_measurement_is_not_a_reference_value() {
    let env = shared();
    let kbs = admin_serve("denied.db");
    set_up(&kbs, b"never shown");
    let r = env.run(&[
        "kbs",
        "get",
        "--url",
        &kbs.url,
        "--simulate",
        "--measurement",
        &"00".repeat(48),
        "default/key/1",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("PolicyDeny"), "{}", r.stderr);
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    assert!(!r.stdout.contains("never shown") && !r.stderr.contains("never shown"));
}

#[test]
fn resource_policies_decide_and_resources_can_be_removed() {
    let env = shared();
    let kbs = admin_serve("policy.db");
    set_up(&kbs, b"policy secret");
    let key = admin_key();
    let m = good_measurement();
    let other = "11".repeat(48);
    let get = |measurement: &str| {
        env.run(&[
            "kbs",
            "get",
            "--url",
            &kbs.url,
            "--simulate",
            "--measurement",
            measurement,
            "default/key/1",
        ])
    };
    let r = env.run(&[
        "kbs",
        "policy",
        "set",
        "--url",
        &kbs.url,
        "--admin-key",
        &key,
        "--kind",
        "resource",
        "--builtin",
        "deny-all",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(get(&m).code, 1);
    let r = env.run(&[
        "kbs",
        "policy",
        "set",
        "--url",
        &kbs.url,
        "--admin-key",
        &key,
        "--kind",
        "resource",
        "--builtin",
        "allow-all",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = get(&other);
    assert_eq!((r.code, r.stdout.as_str()), (0, "policy secret"), "{r:?}");
    // A custom Rego file: only repository "other" may be read.
    let rego = write_file(env.home.path(), "only-other.rego", b"package policy\ndefault allow := false\nallow if { data[\"resource-path\"][0] == \"other\" }\n");
    let r = env.run(&[
        "kbs",
        "policy",
        "set",
        "--url",
        &kbs.url,
        "--admin-key",
        &key,
        "--kind",
        "resource",
        "--file",
        &rego,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(get(&m).code, 1);
    let r = env.run(&[
        "kbs",
        "resource",
        "rm",
        "--url",
        &kbs.url,
        "--admin-key",
        &key,
        "default/key/1",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = env.run(&[
        "kbs",
        "resource",
        "rm",
        "--url",
        &kbs.url,
        "--admin-key",
        &key,
        "default/key/1",
    ]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
    let bad = write_file(env.home.path(), "bad.rego", b"package policy\nallow if {");
    let r = env.run(&[
        "kbs",
        "policy",
        "set",
        "--url",
        &kbs.url,
        "--admin-key",
        &key,
        "--kind",
        "resource",
        "--file",
        &bad,
    ]);
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn simulated_evidence_is_refused_without_allow_simulated() {
    let env = shared();
    let kbs = serve("nosim.db", &["--insecure-admin"]);
    assert!(
        kbs.stderr_head.contains("warning: --insecure-admin"),
        "{}",
        kbs.stderr_head
    );
    let file = write_file(env.home.path(), "s.bin", b"x");
    let r = env.run(&[
        "kbs",
        "resource",
        "set",
        "--url",
        &kbs.url,
        "default/key/1",
        "--file",
        &file,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = env.run(&[
        "kbs",
        "get",
        "--url",
        &kbs.url,
        "--simulate",
        "default/key/1",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("AttestationError"), "{}", r.stderr);
    assert!(r.stderr.contains("--allow-simulated"), "{}", r.stderr);
}

#[test]
fn admin_commands_need_the_admin_key() {
    let env = shared();
    let kbs = admin_serve("admin.db");
    let file = write_file(env.home.path(), "s2.bin", b"x");
    let r = env.run(&[
        "kbs",
        "resource",
        "set",
        "--url",
        &kbs.url,
        "default/key/1",
        "--file",
        &file,
    ]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("AdminAuthAccess"), "{}", r.stderr);
    let r = env.run(&[
        "kbs",
        "reference-value",
        "get",
        "--url",
        &kbs.url,
        "--admin-key",
        &admin_key(),
        "snp_min_snp",
    ]);
    assert_ne!(r.code, 0, "{r:?}");
    let r = env.run(&[
        "kbs",
        "reference-value",
        "set",
        "--url",
        &kbs.url,
        "--admin-key",
        &admin_key(),
        "snp_min_snp",
        "7",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = env.run(&[
        "kbs",
        "reference-value",
        "get",
        "--url",
        &kbs.url,
        "--admin-key",
        &admin_key(),
        "snp_min_snp",
    ]);
    assert_eq!((r.code, r.stdout.trim()), (0, "7"), "{r:?}");
}

#[test]
fn bad_input_is_a_usage_error() {
    let env = shared();
    let url = "http://127.0.0.1:9";
    for args in [
        vec!["kbs", "get", "--url", url, "--simulate", "not/a"],
        vec!["kbs", "get", "--url", "ftp://x", "--simulate", "a/b/c"],
        vec!["kbs", "get", "--url", url, "--measurement", "00", "a/b/c"],
        vec![
            "kbs",
            "reference-value",
            "set",
            "--url",
            url,
            "snp_min_snp",
            "not json",
        ],
        vec![
            "kbs",
            "policy",
            "set",
            "--url",
            url,
            "--kind",
            "resource",
            "--builtin",
            "nope",
        ],
        vec![
            "kbs",
            "resource",
            "set",
            "--url",
            url,
            "a/b/c",
            "--file",
            "/nonexistent",
        ],
    ] {
        let r = env.run(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains("error"), "{args:?}: {}", r.stderr);
    }
    // Nothing listening: our failure, with a hint.
    let r = env.run(&["kbs", "get", "--url", url, "--simulate", "a/b/c"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
}

/// Issue 18: 200,000 `/auth` from one address neither lock out a second client, which attests
/// and gets its secret meanwhile, nor grow the broker without bound.
#[test]
fn issue_18_an_auth_flood_from_one_address_does_not_lock_out_attestation() {
    let env = shared();
    let kbs = admin_serve("flood.db");
    set_up(&kbs, b"flooded");
    let pid = kbs.child.id();
    let rss_before = crate::hardening::rss_kib(pid);
    let addr: std::net::SocketAddr = kbs.url.trim_start_matches("http://").parse().unwrap();
    let flood = std::thread::spawn(move || crate::hardening::flood_auth(addr, 200_000, 4));
    let m = good_measurement();
    let mut attested = 0;
    while !flood.is_finished() || attested == 0 {
        let r = env.run(&[
            "kbs",
            "get",
            "--url",
            &kbs.url,
            "--simulate",
            "--measurement",
            &m,
            "default/key/1",
        ]);
        assert_eq!(r.code, 0, "attesting during the flood: {r:?}");
        assert_eq!(r.stdout, "flooded");
        attested += 1;
    }
    let counts = flood.join().unwrap();
    assert_eq!(counts.ok, 200_000, "every /auth answered 200: {counts:?}");
    let rss_after = crate::hardening::rss_kib(pid);
    // 200,000 sessions at the old ~17 KB each would be over 3 GB; the flooder's pending
    // sessions are capped per address, so the broker stays within a small constant.
    assert!(
        rss_after < rss_before + 64 * 1024,
        "KBS RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    eprintln!("attested {attested} times during the flood; RSS {rss_before} -> {rss_after} KiB");
}

/// Issue 17: trustee's admin keys are Ed25519. `kbs admin-token` writes the compact JWT
/// (`{"alg":"EdDSA","typ":"JWT"}`, iat/nbf/exp) that trustee's `kbs-client
/// --admin-token-file` sends as its bearer token; the broker checks the key type, iat and
/// its maximum lifetime.
#[test]
fn ed25519_admin_tokens_from_a_token_file_are_accepted_within_their_lifetime() {
    let env = shared();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is not installed: run scripts/setup");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = env.path("ed-admin.pem").display().to_string();
    let public = env.path("ed-admin.pub").display().to_string();
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", &key]);
    openssl(&["pkey", "-in", &key, "-pubout", "-out", &public]);
    let kbs = serve(
        "ed-admin.db",
        &[
            "--admin-public-key",
            &public,
            "--admin-token-max-lifetime-secs",
            "7200",
        ],
    );
    let token = env.path("admin.token").display().to_string();
    let r = env.run(&[
        "kbs",
        "admin-token",
        "--key",
        &key,
        "--ttl",
        "600",
        "--out",
        &token,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&token).unwrap();
    assert!(
        !text.ends_with('\n'),
        "the bare JWT, as trustee's clients read it"
    );
    // base64url of {"alg":"EdDSA","typ":"JWT"}
    assert!(
        text.starts_with("eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9."),
        "{text}"
    );
    let claims = a3s_kbs::jwt::claims_unverified(&text).unwrap();
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );
    let secret = write_file(env.home.path(), "ed-secret.bin", b"ed25519-admin");
    let set = |cred: &[&str]| {
        let mut args = vec!["kbs", "resource", "set", "--url", &kbs.url];
        args.extend_from_slice(cred);
        args.extend_from_slice(&["default/ed/1", "--file", &secret]);
        env.run(&args)
    };
    // The token file, and the key itself (a fresh EdDSA token per request), are accepted.
    assert_eq!(set(&["--admin-token-file", &token]).code, 0);
    assert_eq!(set(&["--admin-key", &key]).code, 0);
    // A token living longer than the broker's maximum is refused, with the reason.
    let long = env.path("long.token").display().to_string();
    let r = env.run(&[
        "kbs",
        "admin-token",
        "--key",
        &key,
        "--ttl",
        "7201",
        "--out",
        &long,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = set(&["--admin-token-file", &long]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("exceeds the maximum of 7200"), "{r:?}");
    // The P-256 key of the other tests is not this broker's admin key.
    let r = set(&["--admin-key", &admin_key()]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("not the key's"), "{r:?}");
    drop(kbs);
}

#[test]
fn running_out_of_descriptors_pauses_accepting_but_never_stops_the_broker() {
    use std::io::{Read, Write};
    let mut kbs = serve("fd-flood.db", &[]);
    let addr = kbs.url.trim_start_matches("http://").to_owned();
    // A broker with few descriptors left, as under a connection flood.
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &kbs.child.id().to_string(), "--nofile=48:48"])
        .status()
        .expect("prlimit (util-linux)");
    assert!(limited.success());
    let flood: Vec<_> = (0..80)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(flood);
    // accept(2) failed with EMFILE meanwhile; it used to end `kbs serve`.
    let body = r#"{"version":"0.4.0","tee":"snp","extra-params":""}"#;
    let mut answer = String::new();
    for _ in 0..100 {
        assert!(
            kbs.child.try_wait().unwrap().is_none(),
            "kbs serve exited after running out of descriptors"
        );
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let request = format!(
                "POST /kbs/v0/auth HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            if s.write_all(request.as_bytes()).is_ok()
                && s.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.1 200")
            {
                break;
            }
            answer.clear();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        answer.contains("\"nonce\""),
        "no /auth answer after the flood: {answer:?}"
    );
}
