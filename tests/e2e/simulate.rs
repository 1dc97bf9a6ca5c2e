//! The simulator end to end: `attest report --simulate`, `attest verify --allow-simulated`,
//! `simulator info`, `simulator kds serve` with `attest fetch-certs`.
//!
//! Creating a simulated root costs seconds (RSA-4096 keys), so one home is shared by the tests
//! and a second one only where "another home" is the point.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::OnceLock;

use crate::support::{write_file, TestEnv};

fn shared() -> &'static TestEnv {
    static HOME: OnceLock<TestEnv> = OnceLock::new();
    HOME.get_or_init(TestEnv::new)
}

/// A simulated report with the given extra flags, written to `name` in the shared home.
fn simulated_report(name: &str, extra: &[&str]) -> String {
    let env = shared();
    let out = env.path(name);
    let mut args = vec![
        "attest",
        "report",
        "--simulate",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let r = env.run(&args);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("SIMULATED"), "{}", r.stderr);
    out.display().to_string()
}

#[test]
fn simulated_reports_verify_only_when_allowed_and_carry_the_requested_fields() {
    let env = shared();
    let rd = "aa".repeat(64);
    let m = "bb".repeat(48);
    let hd = "cc".repeat(32);
    let report = simulated_report(
        "fields.bin",
        &[
            "--report-data",
            &rd,
            "--measurement",
            &m,
            "--host-data",
            &hd,
            "--vmpl",
            "0",
        ],
    );
    assert_eq!(std::fs::metadata(&report).unwrap().len(), 1184);

    let r = env.run(&["attest", "verify", "--report", &report, "--format", "json"]);
    assert_eq!(r.code, 1, "{r:?}");
    let j = r.json();
    assert_eq!(j["simulated"], true);
    assert_eq!(j["verified"], false);
    assert_eq!(j["failed_check"], "simulated");
    assert!(r.stderr.contains("--allow-simulated"), "{}", r.stderr);

    let r = env.run(&[
        "attest",
        "verify",
        "--report",
        &report,
        "--allow-simulated",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["verified"], true);
    assert_eq!(j["simulated"], true);
    assert_eq!(j["report_data"], rd);
    assert_eq!(j["measurement"], m);
    assert_eq!(j["host_data"], hd);
    assert_eq!(j["vmpl"], 0);

    // The policy switch works like the flag.
    let policy = write_file(env.home.path(), "sim.toml", b"allow_simulated = true\n");
    let r = env.run(&["attest", "verify", "--report", &report, "--policy", &policy]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("simulated           true"),
        "{}",
        r.stdout
    );
}

#[test]
fn tampered_simulated_report_fails() {
    let env = shared();
    let report = simulated_report("tamper.bin", &["--report-data", "01"]);
    let mut raw = std::fs::read(&report).unwrap();
    raw[0x50] ^= 0x80;
    let bad = write_file(env.home.path(), "tampered.bin", &raw);
    let r = env.run(&[
        "attest",
        "verify",
        "--report",
        &bad,
        "--allow-simulated",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.json()["failed_check"], "signature");
}

#[test]
fn debug_policy_fails_by_default() {
    let env = shared();
    let report = simulated_report(
        "debug.bin",
        &["--report-data", "02", "--guest-policy", "0xb0000"],
    );
    let r = env.run(&[
        "attest",
        "verify",
        "--report",
        &report,
        "--allow-simulated",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    let j = r.json();
    assert_eq!(j["failed_check"], "debug");
    assert_eq!(j["policy"]["debug"], true);
    let policy = write_file(env.home.path(), "debug.toml", b"allow_debug = true\n");
    let r = env.run(&[
        "attest",
        "verify",
        "--report",
        &report,
        "--allow-simulated",
        "--policy",
        &policy,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn simulator_info_shows_a_stable_root() {
    let env = shared();
    simulated_report("info.bin", &["--report-data", "03"]);
    let a = env.run(&["simulator", "info", "--format", "json"]).json();
    let b = env.run(&["simulator", "info", "--format", "json"]).json();
    assert_eq!(a, b);
    assert_eq!(a["simulated"], true);
    let milan = &a["products"][0];
    assert_eq!(milan["product"], "milan");
    assert_eq!(milan["ark_fingerprint"].as_str().unwrap().len(), 64);
    assert_eq!(milan["chips"][0]["chip_id"].as_str().unwrap().len(), 128);
    let empty = TestEnv::new();
    let r = empty.run(&["simulator", "info"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("no simulator"), "{}", r.stderr);
}

/// A report from one home's simulator fails under another home's root, even with its VCEK and
/// chain supplied, and its VCEK fetched through the simulated KDS never verifies against AMD's
/// roots.
#[test]
fn another_homes_root_and_amd_roots_reject_simulated_evidence() {
    let env = shared();
    let report = simulated_report(
        "other.bin",
        &[
            "--report-data",
            "04",
            "--cert-chain-out",
            env.path("chain.pem").to_str().unwrap(),
        ],
    );
    let chain = env.path("chain.pem").display().to_string();

    let other = TestEnv::new();
    // Give the other home a simulator of its own.
    let own = other.path("own.bin");
    assert_eq!(
        other
            .run(&[
                "attest",
                "report",
                "--simulate",
                "--report-data",
                "00",
                "--out",
                own.to_str().unwrap()
            ])
            .code,
        0
    );
    let r = other.run(&[
        "attest",
        "verify",
        "--report",
        &report,
        "--vcek",
        &chain,
        "--allow-simulated",
        "--offline",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    let j = r.json();
    assert_eq!(j["verified"], false);
    assert_eq!(j["failed_check"], "certificate_chain");

    // Serve the first home's simulated KDS and fetch through it into the other home's cache.
    let mut server = env
        .cmd()
        .args(["simulator", "kds", "serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let out_dir = other.path("certs");
    let fetched = other
        .cmd()
        .env("A3S_KDS_URL", &url)
        .args([
            "attest",
            "fetch-certs",
            "--report",
            &report,
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    for f in ["vcek.der", "cert_chain.pem"] {
        assert!(out_dir.join(f).exists(), "{f}");
    }
    // Now cached: an offline verify in the other home finds the VCEK but AMD's roots refuse it.
    let r = other.run(&[
        "attest",
        "verify",
        "--report",
        &report,
        "--offline",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.json()["failed_check"], "certificate_chain");
}
