//! `attest show`, `attest verify`, `attest fetch-certs` against real AMD evidence.

use crate::support::{fixture, TestEnv};

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
    let hex_file = env.path("report.hex");
    std::fs::write(&hex_file, hex::encode(&raw)).unwrap();
    let j = env
        .run(&[
            "attest",
            "show",
            "--report",
            hex_file.to_str().unwrap(),
            "--format",
            "json",
        ])
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
    let bad = env.path("bad.bin");
    std::fs::write(&bad, [0u8; 100]).unwrap();
    let r = env.run(&["attest", "show", "--report", bad.to_str().unwrap()]);
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
