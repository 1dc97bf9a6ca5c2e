//! Docker's security and resource flags (issue 20), applied by guest-init inside the VM. Two
//! boots: one detached box carrying every flag, checked through exec sessions (which get the
//! same settings, as in Docker), and one short `--privileged` run.

use crate::support::{Run, TestEnv};

fn ok(env: &TestEnv, args: &[&str]) -> Run {
    let r = env.run(args);
    assert_eq!(r.code, 0, "a3s-box {args:?}:\n{}\n{}", r.stdout, r.stderr);
    r
}

fn refused(env: &TestEnv, args: &[&str], says: &str) {
    let r = env.run(args);
    assert_eq!(r.code, 2, "a3s-box {args:?}:\n{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(says), "a3s-box {args:?}: {}", r.stderr);
}

/// `sh -c SCRIPT` in the box.
fn sh(env: &TestEnv, script: &str) -> Run {
    env.run(&["exec", "sec", "sh", "-c", script])
}

/// The value of `Field:` in /proc/self/status of a process run as `user`.
fn status_field(env: &TestEnv, user: &str, field: &str) -> String {
    let r = ok(
        env,
        &[
            "exec",
            "-u",
            user,
            "sec",
            "grep",
            &format!("^{field}:"),
            "/proc/self/status",
        ],
    );
    r.stdout
        .split_once(':')
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

/// Docker's default set (0xa80425fb) without CAP_CHOWN (bit 0), with CAP_NET_ADMIN (bit 12).
const EXPECTED_CAPS: &str = "00000000a80435fa";

#[test]
fn security_and_resource_flags_apply_inside_the_vm() {
    crate::support::build_guest_init();
    let env = TestEnv::new();

    // Docker's refusals, before anything is created: exit 2 naming the value and the reason.
    refused(
        &env,
        &["run", "--sysctl", "kernel.hostname=x", "busybox", "true"],
        "not a namespaced kernel parameter",
    );
    refused(
        &env,
        &[
            "run",
            "--security-opt",
            "seccomp=unconfined",
            "busybox",
            "true",
        ],
        "seccomp is not supported",
    );
    refused(
        &env,
        &["run", "--cap-add", "FLY", "busybox", "true"],
        "--cap-add \"FLY\": unknown capability",
    );
    refused(
        &env,
        &["run", "--ulimit", "nofile=20:10", "busybox", "true"],
        "above the hard limit",
    );
    refused(
        &env,
        &[
            "run",
            "--mount",
            "type=bind,source=rel,target=/x",
            "busybox",
            "true",
        ],
        "absolute host path",
    );
    refused(
        &env,
        &["run", "--tmpfs", "scratch", "busybox", "true"],
        "not a clean absolute path",
    );
    assert_eq!(ok(&env, &["ps", "-a", "-q"]).stdout.trim(), "");

    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "sec",
            "--read-only",
            "--tmpfs",
            "/scratch:size=1m,exec",
            "--mount",
            "type=tmpfs,target=/cache,tmpfs-size=2m",
            "--shm-size",
            "8m",
            "--ulimit",
            "nofile=123:456",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--sysctl",
            "kernel.shmmni=1234",
            "--pids-limit",
            "20",
            "--cap-drop",
            "chown",
            "--cap-add",
            "NET_ADMIN",
            "--security-opt",
            "no-new-privileges",
            "--group-add",
            "nogroup",
            "--group-add",
            "4242",
            "--init",
            "busybox",
            "sleep",
            "3600",
        ],
    );

    // inspect: Docker's HostConfig names.
    let hc = &ok(&env, &["inspect", "sec"]).json()[0]["HostConfig"];
    assert_eq!(hc["ReadonlyRootfs"], true, "{hc}");
    assert_eq!(hc["CapAdd"], serde_json::json!(["CAP_NET_ADMIN"]));
    assert_eq!(hc["CapDrop"], serde_json::json!(["CAP_CHOWN"]));
    assert_eq!(hc["PidsLimit"], 20);
    assert_eq!(hc["ShmSize"], 8 << 20);
    assert_eq!(
        hc["Ulimits"],
        serde_json::json!([{"Name": "nofile", "Soft": 123, "Hard": 456}])
    );
    assert_eq!(hc["Sysctls"]["kernel.shmmni"], "1234");
    assert_eq!(hc["Tmpfs"]["/scratch"], "size=1m,exec");
    assert_eq!(hc["Tmpfs"]["/cache"], format!("size={}", 2 << 20));
    assert_eq!(hc["SecurityOpt"], serde_json::json!(["no-new-privileges"]));
    assert_eq!(hc["GroupAdd"], serde_json::json!(["nogroup", "4242"]));
    assert_eq!(hc["Init"], true);

    // Capabilities: bounding and effective sets for root; a non-root user keeps none.
    assert_eq!(status_field(&env, "root", "CapEff"), EXPECTED_CAPS);
    assert_eq!(status_field(&env, "root", "CapBnd"), EXPECTED_CAPS);
    assert_eq!(status_field(&env, "root", "CapAmb"), "0000000000000000");
    assert_eq!(status_field(&env, "nobody", "CapEff"), "0000000000000000");
    assert_eq!(status_field(&env, "nobody", "CapBnd"), EXPECTED_CAPS);
    assert_eq!(status_field(&env, "root", "NoNewPrivs"), "1");
    let r = sh(&env, "echo x > /scratch/f && chown nobody /scratch/f");
    assert_ne!(r.code, 0, "chown without CAP_CHOWN succeeded");
    assert!(r.stderr.contains("Operation not permitted"), "{}", r.stderr);

    // rlimits, sysctls, groups.
    assert_eq!(
        ok(&env, &["exec", "sec", "sh", "-c", "ulimit -n; ulimit -Hn"]).stdout,
        "123\n456\n"
    );
    assert_eq!(
        ok(
            &env,
            &[
                "exec",
                "sec",
                "cat",
                "/proc/sys/net/ipv4/ip_forward",
                "/proc/sys/kernel/shmmni"
            ]
        )
        .stdout,
        "1\n1234\n"
    );
    assert_eq!(
        ok(&env, &["exec", "sec", "id", "-G"]).stdout.trim(),
        "0 4242 65534"
    );

    // Read-only root (/tmp with it, as in Docker); the tmpfs mounts are writable, with
    // Docker's default options unless overridden, and /dev/shm has its size.
    for path in ["/ro-test", "/tmp/ro-test", "/etc/ro-test"] {
        let r = sh(&env, &format!("touch {path}"));
        assert_ne!(r.code, 0, "{path} was writable on a --read-only root");
        assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    }
    ok(
        &env,
        &[
            "exec",
            "sec",
            "sh",
            "-c",
            "echo a > /scratch/a && echo b > /cache/b",
        ],
    );
    let mounts = ok(&env, &["exec", "sec", "cat", "/proc/mounts"]).stdout;
    let line = |at: &str| {
        mounts
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(at))
            .unwrap_or_else(|| panic!("{at} not mounted:\n{mounts}"))
            .to_owned()
    };
    let scratch = line("/scratch");
    assert!(
        scratch.contains("tmpfs") && scratch.contains("size=1024k"),
        "{scratch}"
    );
    assert!(
        scratch.contains("nosuid") && !scratch.contains("noexec"),
        "{scratch}"
    );
    let cache = line("/cache");
    assert!(
        cache.contains("size=2048k") && cache.contains("noexec"),
        "{cache}"
    );
    assert!(line("/dev/shm").contains("size=8192k"), "{mounts}");
    assert!(
        line("/").contains(" ro,") || line("/").contains(" ro "),
        "{mounts}"
    );

    // --init: an orphan is reaped by PID 1 (guest-init), never left a zombie.
    let r = sh(
        &env,
        "(sleep 0.2 & echo $! > /scratch/orphan); o=$(cat /scratch/orphan); \
         for i in $(seq 100); do [ -e /proc/$o ] || { echo reaped; exit 0; }; sleep 0.1; done; \
         grep State /proc/$o/status",
    );
    assert_eq!(r.stdout.trim(), "reaped", "{}\n{}", r.stdout, r.stderr);

    // --pids-limit: a fork bomb in an exec session stops at the box's limit.
    let r = sh(
        &env,
        "i=0; while [ $i -lt 40 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); echo $i; done",
    );
    let started: usize = r
        .stdout
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        started < 20,
        "{started} processes started under --pids-limit 20"
    );
    assert!(r.stderr.contains("can't fork"), "{}", r.stderr);

    // --init: SIGTERM reaches the workload (not PID 1, so it dies of it): exit 143.
    ok(&env, &["kill", "-s", "TERM", "sec"]);
    assert_eq!(ok(&env, &["wait", "sec"]).stdout.trim(), "143");
    ok(&env, &["rm", "sec"]);

    // --privileged: every capability the guest kernel has.
    let r = ok(
        &env,
        &[
            "run",
            "--rm",
            "--privileged",
            "--cap-drop",
            "ALL",
            "busybox",
            "sh",
            "-c",
            "cat /proc/sys/kernel/cap_last_cap; grep CapEff /proc/self/status",
        ],
    );
    let mut lines = r.stdout.lines();
    let last_cap: u32 = lines.next().unwrap().trim().parse().unwrap();
    let eff = lines.next().unwrap().split_once(':').unwrap().1.trim();
    assert_eq!(
        u64::from_str_radix(eff, 16).unwrap(),
        (1u64 << (last_cap + 1)) - 1,
        "{}",
        r.stdout
    );
}
