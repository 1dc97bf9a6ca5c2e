//! `a3s-box audit` and `audit verify`: verdicts are recorded, queried across rotated files, and
//! editing, deleting or reordering any line is detected and named.

use crate::support::{fixture, TestEnv, AT};

fn verify_fixture(env: &TestEnv, extra: &[&str]) -> i32 {
    let report = fixture("reports/oak-genoa-oc-report.bin");
    let vcek = fixture("reports/oak-genoa-oc-vcek.der");
    let mut args = vec![
        "attest",
        "verify",
        "--report",
        &report,
        "--vcek",
        &vcek,
        "--at",
        AT,
        "--offline",
    ];
    args.extend_from_slice(extra);
    env.run(&args).code
}

fn log_lines(env: &TestEnv) -> Vec<String> {
    let mut all = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(env.path("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort(); // audit-<seq>.jsonl sorts before audit.jsonl
    for f in files {
        all.extend(
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    all
}

#[test]
fn verdicts_are_audited_and_the_chain_verifies() {
    let env = TestEnv::new();
    assert_eq!(verify_fixture(&env, &[]), 0);
    let policy = crate::support::write_file(env.home.path(), "p.toml", b"vmpl = 3\n");
    assert_eq!(verify_fixture(&env, &["--policy", &policy]), 1);

    let events = env.run(&["audit", "--format", "json"]).json();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["action"], "attest.verify");
    assert_eq!(events[0]["outcome"], "success");
    assert_eq!(events[0]["metadata"]["simulated"], false);
    assert_eq!(events[1]["outcome"], "failure");
    assert_eq!(events[1]["seq"], 2);
    assert_eq!(events[1]["prev"], events[0]["hash"]);

    let failures = env
        .run(&["audit", "--outcome", "failure", "--format", "json"])
        .json();
    assert_eq!(failures.as_array().unwrap().len(), 1);
    let text = env.run(&["audit", "-n", "1"]);
    assert_eq!(text.code, 0, "{text:?}");
    assert_eq!(text.stdout.lines().count(), 1, "{}", text.stdout);
    assert!(text.stdout.contains("attest.verify"), "{}", text.stdout);

    let ok = env.run(&["audit", "verify"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("intact: 2 entries"), "{}", ok.stdout);
}

#[test]
fn rejects_bad_filters_with_exit_2() {
    let env = TestEnv::new();
    let r = env.run(&["audit", "--outcome", "maybe"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("success, failure or denied"),
        "{}",
        r.stderr
    );
    let r = env.run(&["audit", "--since", "yesterday"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("RFC 3339"), "{}", r.stderr);
}

#[test]
fn tampering_with_any_line_is_detected_across_rotated_files() {
    let env = TestEnv::new();
    for _ in 0..8 {
        let code = env
            .cmd()
            .env("A3S_AUDIT_MAX_FILE_BYTES", "1500")
            .args([
                "attest",
                "verify",
                "--report",
                &fixture("reports/oak-genoa-oc-report.bin"),
            ])
            .args([
                "--vcek",
                &fixture("reports/oak-genoa-oc-vcek.der"),
                "--at",
                AT,
                "--offline",
            ])
            .output()
            .unwrap()
            .status
            .code();
        assert_eq!(code, Some(0));
    }
    let rotated = std::fs::read_dir(env.path("audit"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("audit-")
        })
        .count();
    assert!(
        rotated >= 2,
        "expected rotation, got {rotated} rotated files"
    );
    let all = env.run(&["audit", "--format", "json"]).json();
    assert_eq!(
        all.as_array().unwrap().len(),
        8,
        "query reads every rotated file"
    );
    assert_eq!(env.run(&["audit", "verify"]).code, 0);

    let pristine = std::fs::read_dir(env.path("audit")).unwrap().count();
    assert!(pristine > 0);
    let original = log_lines(&env);
    // Rewrites the whole log as one file with the given lines: tamper cases edit, drop or swap.
    let rewrite = |lines: &[String]| {
        for e in std::fs::read_dir(env.path("audit")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "jsonl") {
                std::fs::remove_file(p).unwrap();
            }
        }
        std::fs::write(env.path("audit/audit.jsonl"), lines.join("\n") + "\n").unwrap();
    };
    rewrite(&original);
    assert_eq!(
        env.run(&["audit", "verify"]).code,
        0,
        "merging files keeps the chain"
    );

    let mut edited = original.clone();
    edited[3] = edited[3].replace("evidence verified", "evidence VERIFIED");
    rewrite(&edited);
    let r = env.run(&["audit", "verify"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("audit.jsonl:4 (seq 4)") && r.stderr.contains("edited"),
        "{}",
        r.stderr
    );

    let mut deleted = original.clone();
    deleted.remove(5);
    rewrite(&deleted);
    let r = env.run(&["audit", "verify", "--format", "json"]).json();
    assert_eq!(r["intact"], false);
    assert!(
        r["error"].as_str().unwrap().contains("audit.jsonl:6"),
        "{r}"
    );

    let mut reordered = original.clone();
    reordered.swap(1, 2);
    rewrite(&reordered);
    let r = env.run(&["audit", "verify"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("audit.jsonl:2"), "{}", r.stderr);

    let mut truncated = original.clone();
    truncated.pop();
    rewrite(&truncated);
    let r = env.run(&["audit", "verify"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("deleted from the end"), "{}", r.stderr);
}
