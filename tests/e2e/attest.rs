//! `attest show`, `attest verify`, `attest fetch-certs` against real AMD evidence.

use crate::support::{fixture, write_file, TestEnv, AT};

#[test]
fn show_decodes_real_reports_in_every_form() {
    let env = TestEnv::new();
    let j = env
        .run(&[
            "attest",
            "show",
            "--report",
            &fixture("reports/oak-turin-oc-report.bin"),
            "--format",
            "json",
        ])
        .json();
    assert_eq!(j["version"], 5);
    assert_eq!(j["product"], "turin");
    assert_eq!(j["reported_tcb"]["fmc"], 0);
    assert_eq!(j["reported_tcb"]["microcode"], 71);
    assert!(j["measurement"].as_str().unwrap().starts_with("f924dd18"));
    assert_eq!(j["policy"]["debug"], false);

    // hex text form
    let raw = std::fs::read(fixture("reports/trustee-test-report.bin")).unwrap();
    let hex_file = write_file(env.home.path(), "report.hex", hex::encode(&raw).as_bytes());
    let j = env
        .run(&["attest", "show", "--report", &hex_file, "--format", "json"])
        .json();
    assert_eq!(j["version"], 2);
    assert_eq!(j["guest_svn"], 4);

    // trustee evidence JSON
    let r = env.run(&[
        "attest",
        "show",
        "--report",
        &fixture("reports/trustee-genoa-v3-evidence.json"),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("genoa"), "{}", r.stdout);
}

#[test]
fn show_rejects_unusable_input_with_exit_2() {
    let env = TestEnv::new();
    let bad = write_file(env.home.path(), "bad.bin", &[0u8; 100]);
    let r = env.run(&["attest", "show", "--report", &bad]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("not a usable SEV-SNP report"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("1184"), "{}", r.stderr);
    let r = env.run(&["attest", "show", "--report", "/nonexistent/report.bin"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("/nonexistent/report.bin"), "{}", r.stderr);
}

fn verify(env: &TestEnv, report: &str, extra: &[&str]) -> crate::support::Run {
    let mut args = vec![
        "attest",
        "verify",
        "--report",
        report,
        "--at",
        AT,
        "--offline",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    env.run(&args)
}

#[test]
fn verifies_every_real_amd_report() {
    let env = TestEnv::new();
    let vlek_policy = write_file(env.home.path(), "vmpl1.toml", b"vmpl = 1\n");
    for (report, vek, product, key, extra) in [
        (
            "oak-milan-oc-release-report.bin",
            "oak-milan-oc-release-vcek.der",
            "milan",
            "vcek",
            None,
        ),
        (
            "oak-genoa-oc-report.bin",
            "oak-genoa-oc-vcek.der",
            "genoa",
            "vcek",
            None,
        ),
        (
            "oak-turin-oc-report.bin",
            "oak-turin-oc-vcek.der",
            "turin",
            "vcek",
            None,
        ),
        (
            "trustee-test-report.bin",
            "trustee-test-vcek.der",
            "milan",
            "vcek",
            None,
        ),
        (
            "trustee-test-vlek-report.bin",
            "trustee-test-vlek.der",
            "milan",
            "vlek",
            Some(vlek_policy.as_str()),
        ),
    ] {
        let vek = fixture(&format!("reports/{vek}"));
        let mut args = vec!["--vcek", vek.as_str()];
        if let Some(p) = extra {
            args.extend(["--policy", p]);
        }
        let r = verify(&env, &fixture(&format!("reports/{report}")), &args);
        assert_eq!(r.code, 0, "{report}: {r:?}");
        let j = r.json();
        assert_eq!(j["verified"], true, "{report}");
        assert_eq!(j["simulated"], false, "{report}");
        assert_eq!(j["product"], product, "{report}");
        assert_eq!(j["signing_key"], key, "{report}");
        let raw = std::fs::read(fixture(&format!("reports/{report}"))).unwrap();
        assert_eq!(j["measurement"], hex::encode(&raw[0x90..0xC0]), "{report}");
        assert_eq!(j["report_data"], hex::encode(&raw[0x50..0x90]), "{report}");
        assert_eq!(j["chip_id"], hex::encode(&raw[0x1A0..0x1E0]), "{report}");
        assert!(j["reported_tcb"]["microcode"].is_u64(), "{report}");
        assert!(j["policy"]["smt_allowed"].is_boolean(), "{report}");
    }
    // The trustee evidence JSON carries its own VCEK.
    let r = verify(
        &env,
        &fixture("reports/trustee-genoa-v3-evidence.json"),
        &[],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["product"], "genoa");
}

#[test]
fn tampered_reports_and_wrong_certificates_fail_with_exit_1() {
    let env = TestEnv::new();
    let raw = std::fs::read(fixture("reports/oak-milan-oc-release-report.bin")).unwrap();
    let vcek = fixture("reports/oak-milan-oc-release-vcek.der");
    for (offset, check) in [
        (0x90, "signature"),
        (0x2A0, "signature"),
        (0x2E8 + 3, "signature"),
    ] {
        let mut bad = raw.clone();
        bad[offset] ^= 0x01;
        let path = write_file(env.home.path(), "bad.bin", &bad);
        let r = verify(&env, &path, &["--vcek", &vcek]);
        assert_eq!(r.code, 1, "offset {offset:#x}: {r:?}");
        assert_eq!(r.json()["failed_check"], check);
        assert!(r.stderr.contains(check), "{}", r.stderr);
    }
    // Another chip's VCEK.
    let r = verify(
        &env,
        &fixture("reports/oak-milan-oc-release-report.bin"),
        &["--vcek", &fixture("reports/trustee-test-vcek.der")],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.json()["verified"], false);
    // Expired VLEK when checked now.
    let r = env.run(&[
        "attest",
        "verify",
        "--report",
        &fixture("reports/trustee-test-vlek-report.bin"),
        "--vcek",
        &fixture("reports/trustee-test-vlek.der"),
        "--offline",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.json()["failed_check"], "certificate_chain");
}

#[test]
fn policy_failures_name_the_check() {
    let env = TestEnv::new();
    let report = fixture("reports/trustee-test-report.bin");
    let vcek = fixture("reports/trustee-test-vcek.der");
    let policy = write_file(env.home.path(), "p.toml", b"[min_tcb]\nmicrocode = 200\n");
    let r = verify(&env, &report, &["--vcek", &vcek, "--policy", &policy]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.json()["failed_check"], "min_tcb.microcode");
    assert!(r.stderr.contains("min_tcb.microcode"), "{}", r.stderr);
    let m = hex::encode([0u8; 48]);
    let policy = write_file(
        env.home.path(),
        "p.json",
        format!(r#"{{"measurements": ["{m}"]}}"#).as_bytes(),
    );
    let r = verify(&env, &report, &["--vcek", &vcek, "--policy", &policy]);
    assert_eq!(r.json()["failed_check"], "measurement");
}

#[test]
fn unusable_input_exits_2_with_a_clear_message() {
    let env = TestEnv::new();
    let report = fixture("reports/trustee-test-report.bin");
    let r = env.run(&["attest", "verify", "--report", &report, "--at", "yesterday"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("RFC 3339"), "{}", r.stderr);
    let policy = write_file(env.home.path(), "p.toml", b"alow_debug = true\n");
    let r = env.run(&["attest", "verify", "--report", &report, "--policy", &policy]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("alow_debug"), "{}", r.stderr);
    // No VCEK given, offline, nothing cached: names the cache path and how to fill it.
    let r = env.run(&["attest", "verify", "--report", &report, "--offline"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("cache"), "{}", r.stderr);
    assert!(r.stderr.contains("fetch-certs"), "{}", r.stderr);
}

#[test]
fn hardware_report_needs_an_snp_guest() {
    if std::path::Path::new("/dev/sev-guest").exists() {
        return; // on a real SNP guest the hardware path is exercised by attestation's hw tests
    }
    let env = TestEnv::new();
    let out = env.path("r.bin");
    let r = env.run(&[
        "attest",
        "report",
        "--report-data",
        "00",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--simulate"), "{}", r.stderr);
    assert!(!out.exists());
}

#[test]
fn simulator_only_flags_are_refused_for_hardware_reports() {
    let env = TestEnv::new();
    let out = env.path("r.bin");
    let r = env.run(&[
        "attest",
        "report",
        "--report-data",
        "00",
        "--product",
        "turin",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--simulate"), "{}", r.stderr);
    assert!(r.stderr.contains("--product"), "{}", r.stderr);
}
