//! A box's writable layer (issue 20): `diff` of a running and a stopped box, `export`,
//! `commit` then `run` of the new image, `import` of the export, and snapshots of the layer.
//! One box carries the whole story, so its boots are shared across the assertions.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::OnceLock;

use crate::support::{Run, TestEnv};

fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        crate::support::build_guest_init();
        TestEnv::new()
    })
}

fn ok(args: &[&str]) -> Run {
    let r = env().run(args);
    assert_eq!(
        r.code, 0,
        "a3s-box {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

fn lines(r: &Run) -> Vec<String> {
    r.stdout.lines().map(str::to_owned).collect()
}

/// Names in a tar archive, without a leading `./` or trailing `/`.
fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut child = std::process::Command::new("tar")
        .arg("-t")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("tar is installed (scripts/setup)");
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    writer.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success(), "tar -t failed");
    out.lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_owned())
        .collect()
}

/// What Docker prints for the changes the test makes (moby's overlay2 rules: a directory
/// that gained or lost an entry is `C`, new directories and files below it are `A`, a removed
/// image file is `D`, an image file written in place is `C`), in Docker's walk order.
const DOCKER_DIFF: &[&str] = &[
    "C /etc",
    "A /etc/added",
    "D /etc/group",
    "C /etc/passwd",
    "A /srv",
    "A /srv/app",
    "A /srv/app/f",
];

#[test]
fn diff_export_commit_and_snapshots_of_one_box() {
    let b = "layers-box";
    ok(&["run", "-d", "--name", b, "busybox", "sleep", "100000"]);
    ok(&[
        "exec",
        b,
        "sh",
        "-c",
        "echo new > /etc/added && rm /etc/group && echo mod >> /etc/passwd \
         && mkdir -p /srv/app && echo x > /srv/app/f",
    ]);

    // diff of the running box: asks the guest.
    assert_eq!(lines(&ok(&["diff", b])), DOCKER_DIFF);

    // export to stdout, piped into tar -t.
    let out = env()
        .cmd()
        .args(["export", b])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = tar_names(&out.stdout);
    for want in ["bin/busybox", "etc/passwd", "etc/added", "srv/app/f"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == "etc/group"),
        "deleted file exported"
    );
    assert!(
        !names.iter().any(|n| n.contains(".wh.")),
        "whiteout exported"
    );

    // export -o: an ordinary 0644 file that `import` takes back.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("box.tar");
    let file_s = file.to_str().unwrap();
    ok(&["export", b, "-o", file_s]);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "export -o file mode");
    assert_eq!(tar_names(&std::fs::read(&file).unwrap()).len(), names.len());
    ok(&["import", file_s, "layers/imported:1"]);

    // commit: the image plus the box's changes, with config edits and history.
    let digest = ok(&[
        "commit",
        b,
        "layers/committed:1",
        "-m",
        "add files",
        "-a",
        "Tester <t@example.com>",
        "-c",
        "ENV COMMITTED=yes",
    ])
    .stdout
    .trim()
    .to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let r = ok(&[
        "run",
        "--rm",
        "layers/committed:1",
        "sh",
        "-c",
        "cat /etc/added /srv/app/f; echo $COMMITTED; test -e /etc/group || echo group-gone",
    ]);
    assert_eq!(
        r.stdout.lines().collect::<Vec<_>>(),
        ["new", "x", "yes", "group-gone"]
    );
    let r = ok(&["run", "--rm", "layers/imported:1", "cat", "/etc/added"]);
    assert_eq!(r.stdout.trim(), "new");

    // Snapshots need a stopped box; restore on a running one names the fix.
    let r = env().run(&["snapshot", "create", b, "s1"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!("a3s-box stop {b}")),
        "{}",
        r.stderr
    );
    ok(&["stop", b]);

    // diff of the stopped box: the same answer, read from its layer disk.
    assert_eq!(lines(&ok(&["diff", b])), DOCKER_DIFF);

    assert_eq!(ok(&["snapshot", "create", b, "s1"]).stdout.trim(), "s1");
    let list = ok(&["snapshot", "ls", b, "--format", "json"]).json();
    assert_eq!(list[0]["name"], "s1", "{list}");

    // Change the box after the snapshot.
    ok(&["start", b]);
    ok(&[
        "exec",
        b,
        "sh",
        "-c",
        "echo changed > /etc/added && rm -r /srv",
    ]);
    let r = env().run(&["snapshot", "restore", b, "s1"]);
    assert_ne!(r.code, 0, "restore of a running box must be refused");
    assert!(r.stderr.contains("stop it first"), "{}", r.stderr);
    ok(&["stop", b]);

    // Restore: the old content is back.
    ok(&["snapshot", "restore", b, "s1"]);
    ok(&["start", b]);
    let r = ok(&["exec", b, "cat", "/etc/added", "/srv/app/f"]);
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), ["new", "x"]);

    ok(&["snapshot", "rm", b, "s1"]);
    assert_eq!(
        ok(&["snapshot", "ls", b, "--format", "json"]).json(),
        serde_json::json!([])
    );
    let r = env().run(&["snapshot", "rm", b, "s1"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no snapshot"), "{}", r.stderr);
    ok(&["rm", "-f", b]);
}

#[test]
fn confidential_boxes_are_refused_with_the_reason() {
    let b = "layers-tee";
    ok(&["create", "--name", b, "--tee-simulate", "busybox", "true"]);
    for cmd in ["diff", "export", "commit"] {
        let r = env().run(&[cmd, b]);
        assert_ne!(r.code, 0, "{cmd} of a confidential box");
        assert!(
            r.stderr.contains("encrypted in the guest"),
            "{cmd}: {}",
            r.stderr
        );
    }
    ok(&["rm", b]);
}
