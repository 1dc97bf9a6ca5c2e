//! Issue 18 end to end: owner-only state under A3S_HOME, KBS values encrypted at rest, shared
//! databases and keys refused, bad flag values are usage errors (exit 2), oversized inputs
//! refused naming the limit, and audit checkpoints catching a cut or deleted log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use crate::kbs::spawn_kbs;
use crate::support::{write_file, TestEnv};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether the unprivileged `nobody` can read `p` (runuser, as root; setpriv otherwise).
fn nobody_can_read(p: &Path) -> bool {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat"])
        .arg(p)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("Permission denied"),
        "setpriv cat {}: {stderr}",
        p.display()
    );
    out.status.success()
}

/// The VmRSS of process `pid` in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Status counts of a flood.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) ok: u64,
    pub(crate) other: u64,
}

/// Sends `total` `POST /kbs/v0/auth` to `addr` over `conns` keep-alive connections from
/// 127.0.0.2 (another client address than the 127.0.0.1 of `a3s-box kbs get`), pipelined in
/// batches so the flood is fast.
pub(crate) fn flood_auth(addr: SocketAddr, total: u64, conns: u64) -> Counts {
    let threads: Vec<_> = (0..conns)
        .map(|_| std::thread::spawn(move || flood_one(addr, total / conns)))
        .collect();
    let mut counts = Counts::default();
    for t in threads {
        let c = t.join().unwrap();
        counts.ok += c.ok;
        counts.other += c.other;
    }
    counts
}

fn flood_one(addr: SocketAddr, n: u64) -> Counts {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 0)).into())
        .unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let body = r#"{"version":"0.4.0","tee":"snp","extra-params":""}"#;
    let request = format!(
        "POST /kbs/v0/auth HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    const BATCH: u64 = 64;
    let mut counts = Counts::default();
    let mut sent = 0;
    while sent < n {
        let batch = BATCH.min(n - sent);
        writer
            .write_all(request.repeat(usize::try_from(batch).unwrap()).as_bytes())
            .unwrap();
        for _ in 0..batch {
            let status = read_response(&mut reader);
            if status == 200 {
                counts.ok += 1;
            } else {
                counts.other += 1;
            }
        }
        sent += batch;
    }
    counts
}

/// Reads one HTTP/1.1 response; its status.
fn read_response(reader: &mut BufReader<TcpStream>) -> u16 {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {line:?}"));
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    status
}

/// Runs `a3s-box ARGS` and expects it to exit on its own (a server that should refuse to
/// start); kills it and fails if it is still running once it printed that it listens.
fn run_to_exit(env: &TestEnv, args: &[&str]) -> (i32, String) {
    let mut child = env
        .cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("KBS listening on ") {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kbs serve started, but should have refused: {stderr}{line}");
        }
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (code, stderr)
}

#[test]
fn kbs_state_is_owner_only_encrypted_at_rest_and_a_shared_database_is_refused() {
    let env = TestEnv::new();
    // A home as an earlier version left it: world-readable directories.
    chmod(env.home.path(), 0o755);
    std::fs::create_dir(env.path("kbs")).unwrap();
    chmod(&env.path("kbs"), 0o755);

    let kbs = spawn_kbs(&env, &["--insecure-admin"]);
    let secret = write_file(env.home.path(), "secret.bin", b"TOP-SECRET-VALUE-18");
    let r = env.run(&[
        "kbs",
        "resource",
        "set",
        "--url",
        &kbs.url,
        "default/key/1",
        "--file",
        &secret,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    std::fs::remove_file(&secret).unwrap();
    drop(kbs);

    let db = env.path("kbs/kbs.db");
    assert_eq!(mode(env.home.path()), 0o700);
    for dir in ["kbs", "boxes", "audit", "simulator", "auth"] {
        assert_eq!(mode(&env.path(dir)), 0o700, "{dir}");
    }
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&env.path("kbs/kek")), 0o600);
    for extra in ["kbs/kbs.db-wal", "kbs/kbs.db-shm"] {
        if env.path(extra).exists() {
            assert_eq!(mode(&env.path(extra)), 0o600, "{extra}");
        }
    }
    assert!(!nobody_can_read(&db));
    // Even with the directories opened up, the files themselves stay closed.
    chmod(env.home.path(), 0o711);
    chmod(&env.path("kbs"), 0o711);
    assert!(!nobody_can_read(&db));
    assert!(!nobody_can_read(&env.path("kbs/kek")));
    chmod(&env.path("kbs"), 0o700);
    chmod(env.home.path(), 0o700);

    // The secret is nowhere in the database files.
    for file in ["kbs/kbs.db", "kbs/kbs.db-wal"] {
        if let Ok(bytes) = std::fs::read(env.path(file)) {
            assert!(
                !bytes.windows(10).any(|w| w == b"TOP-SECRET"),
                "{file} holds the secret in plain text"
            );
        }
    }

    // A copy of the database elsewhere (another home, so another key) yields nothing.
    let thief = TestEnv::new();
    let copy = thief.path("stolen.db");
    std::fs::copy(&db, &copy).unwrap();
    // With its write-ahead log: the broker was killed, so recent writes are only there.
    if env.path("kbs/kbs.db-wal").exists() {
        std::fs::copy(env.path("kbs/kbs.db-wal"), thief.path("stolen.db-wal")).unwrap();
    }
    let (code, stderr) = run_to_exit(
        &thief,
        &[
            "kbs",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-admin",
            "--db",
            copy.to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("another key-encryption key"), "{stderr}");

    // An existing world-readable database or key is refused at start, naming the fix.
    chmod(&db, 0o644);
    let (code, stderr) = run_to_exit(
        &env,
        &[
            "kbs",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-admin",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("chmod 600") && stderr.contains("kbs.db"),
        "{stderr}"
    );
    chmod(&db, 0o600);
    chmod(&env.path("kbs/kek"), 0o640);
    let (code, stderr) = run_to_exit(
        &env,
        &[
            "kbs",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-admin",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("chmod 600") && stderr.contains("kek"),
        "{stderr}"
    );
}

#[test]
fn out_of_range_resources_are_usage_errors() {
    let env = TestEnv::new();
    for args in [
        ["run", "--memory", "4m", "busybox", "true"],
        ["run", "--cpus", "0", "busybox", "true"],
        ["create", "--cpus", "999", "busybox", "true"],
    ] {
        let r = env.run(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains("out of range"), "{args:?}: {}", r.stderr);
    }
}

/// Each file-reading command refuses /dev/zero and a 10 MB file quickly, naming the limit.
#[test]
fn dev_zero_and_10_mb_inputs_are_refused_naming_the_limit() {
    let env = TestEnv::new();
    let big = env.path("big.bin");
    std::fs::write(&big, vec![b'A'; 10 << 20]).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["attest", "verify", "--report"], "--allow-simulated"),
        (&["audit", "verify", "--checkpoint"], ""),
    ];
    for (cmd, extra) in cases {
        for input in ["/dev/zero", big.to_str().unwrap()] {
            let mut args: Vec<&str> = cmd.to_vec();
            args.push(input);
            if !extra.is_empty() {
                args.push(extra);
            }
            let r = env.run(&args);
            assert_ne!(r.code, 0, "{args:?}: {r:?}");
            assert!(
                r.stderr.contains("exceeds") || r.stderr.contains("longer than"),
                "{args:?} does not name the limit: {}",
                r.stderr
            );
        }
    }
}

/// Issue 18: a cut or deleted audit log is caught against a checkpoint kept elsewhere, and
/// the writer refuses to drop committed lines.
#[test]
fn issue_18_audit_checkpoints_catch_a_cut_or_deleted_log() {
    let env = TestEnv::new();
    for i in 0..30 {
        let r = env.run(&["volume", "create", &format!("v{i}")]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let r = env.run(&["audit", "checkpoint"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("a3s-box/audit\n"), "{}", r.stdout);
    assert!(
        r.stdout.contains("\n\n\u{2014} a3s-box/audit "),
        "{}",
        r.stdout
    );
    assert_eq!(mode(&env.path("auth/audit-checkpoint.key")), 0o600);
    let elsewhere = tempfile::tempdir().unwrap();
    let checkpoint = elsewhere.path().join("checkpoint.txt");
    std::fs::write(&checkpoint, &r.stdout).unwrap();
    let cp = checkpoint.to_str().unwrap();
    let r = env.run(&["audit", "verify", "--checkpoint", cp]);
    assert_eq!(r.code, 0, "{r:?}");

    let log = env.path("audit/audit.jsonl");
    let bytes = std::fs::read(&log).unwrap();
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let n = line_starts.len() - 1;

    // 1. Cut in the middle of a committed line: verify fails; the next write refuses.
    std::fs::write(&log, &bytes[..line_starts[n / 2] + 30]).unwrap();
    let r = env.run(&["audit", "verify", "--checkpoint", cp]);
    assert_eq!(r.code, 1, "{r:?}");
    let r = env.run(&["volume", "create", "x1"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("was committed"), "{}", r.stderr);
    assert_eq!(
        std::fs::read(&log).unwrap(),
        &bytes[..line_starts[n / 2] + 30]
    );

    // 2. The newest lines deleted with head.json: the chain alone looks intact.
    std::fs::write(&log, &bytes[..line_starts[n / 2]]).unwrap();
    std::fs::remove_file(env.path("audit/head.json")).unwrap();
    std::fs::remove_file(env.path("audit/checkpoint")).unwrap();
    let r = env.run(&["audit", "verify"]);
    assert_eq!(r.code, 0, "the chain alone cannot tell: {r:?}");
    let r = env.run(&["audit", "verify", "--checkpoint", cp]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("entries were removed"), "{}", r.stderr);
    let r = env.run(&["volume", "create", "x2"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("head.json"), "{}", r.stderr);

    // 3. The whole audit directory deleted.
    std::fs::remove_dir_all(env.path("audit")).unwrap();
    let r = env.run(&["audit", "verify", "--checkpoint", cp]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("holds 0 entries"), "{}", r.stderr);

    // A tampered checkpoint is not vouched for.
    let forged = elsewhere.path().join("forged.txt");
    std::fs::write(
        &forged,
        std::fs::read_to_string(&checkpoint)
            .unwrap()
            .replacen("\n30\n", "\n0\n", 1),
    )
    .unwrap();
    let r = env.run(&["audit", "verify", "--checkpoint", forged.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not signed"), "{}", r.stderr);
}

/// Issue 18: every command that reads a kernel, initrd, firmware, policy, compose file,
/// secret or password refuses `/dev/zero` and a file 10 MB over its limit quickly, naming
/// the limit (sparse files: nothing is written to disk, nothing is read).
#[test]
fn measure_policy_compose_secret_and_password_inputs_are_bounded() {
    let env = TestEnv::new();
    let sparse = |name: &str, len: u64| -> String {
        let p = env.path(name);
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        p.display().to_string()
    };
    const MB10: u64 = 10_000_000;
    let small = sparse("small.bin", 4096);
    let firmware_big = sparse("firmware-big.bin", (64 << 20) + MB10);
    let kernel_big = sparse("kernel-big.bin", (256 << 20) + MB10);
    let initrd_big = sparse("initrd-big.bin", (1 << 30) + MB10);
    let text_big = sparse("text-big.toml", (1 << 20) + MB10);
    let secret_big = sparse("secret-big.bin", (1 << 20) + MB10);
    let qboot = "/usr/share/qemu/qboot.rom";
    // (arguments with "{}" for the input, the over-limit file, the limit named)
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["measure", "--vcpus", "1", "--microvm-firmware", "{}"],
            &firmware_big,
            "67108864",
        ),
        (
            vec![
                "measure",
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--ovmf",
                "{}",
            ],
            &firmware_big,
            "67108864",
        ),
        (
            vec![
                "measure",
                "--vcpus",
                "1",
                "--microvm-firmware",
                qboot,
                "--kernel",
                "{}",
            ],
            &kernel_big,
            "268435456",
        ),
        (
            vec![
                "measure",
                "--vcpus",
                "1",
                "--microvm-firmware",
                qboot,
                "--kernel",
                &small,
                "--initrd",
                "{}",
            ],
            &initrd_big,
            "1073741824",
        ),
        (
            vec!["attest", "no-such-box", "--policy", "{}"],
            &text_big,
            "1048576",
        ),
        (vec!["compose", "-f", "{}", "config"], &text_big, "1048576"),
    ];
    for (args, big, limit) in &cases {
        for input in ["/dev/zero", big] {
            let args: Vec<&str> = args
                .iter()
                .map(|a| if *a == "{}" { input } else { a })
                .collect();
            let r = env.run(&args);
            assert_eq!(r.code, 2, "{args:?}: {r:?}");
            assert!(
                r.stderr.contains(limit),
                "{args:?} does not name the limit {limit}: {}",
                r.stderr
            );
        }
    }
    // secret inject: the value file is bounded before any box is looked up.
    let spec = format!("api=file:{secret_big}");
    let r = env.run(&["secret", "inject", "no-such-box", &spec]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("exceeds 1048576 bytes"), "{r:?}");
    let r = env.run(&["secret", "inject", "no-such-box", "api=file:/dev/zero"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("not a readable file"), "{r:?}");
    // login --password-stdin reading /dev/zero.
    let out = env
        .cmd()
        .args(["login", "127.0.0.1:9", "-u", "u", "--password-stdin"])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exceeds 65536 bytes"), "{stderr}");
}
