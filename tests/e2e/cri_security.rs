//! Pod containers' security contexts and pod sysctls (issue 16), through the real `crictl`
//! against `a3s-box cri serve`: one pod VM, several containers with different contexts, each
//! checked from inside (its main process and its execs) and, for its CRI mounts, from the host.

use crate::cri::CriServer;
use crate::support::{Run, TestEnv};

/// Docker's and containerd's default capability set as `/proc/self/status` shows it
/// (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW
/// SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP), as any `docker run busybox grep Cap /proc/self/status`
/// prints it.
const DEFAULT_CAPS_HEX: &str = "00000000a80425fb";

/// The hex value of `field` in a `/proc/<pid>/status` text.
fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {field} in:\n{status}"))
}

fn cap_mask(status: &str, field: &str) -> u64 {
    u64::from_str_radix(status_field(status, field), 16).unwrap()
}

#[test]
fn pod_containers_get_their_security_context_and_the_pod_its_sysctls() {
    let env = TestEnv::new();
    let server = CriServer::start(&env);

    // A non-namespaced sysctl is refused by name before any VM boots.
    let bad_pod = env.path("bad-pod.json");
    let bad = serde_json::json!({
        "metadata": {"name": "bad", "namespace": "default", "uid": "u-bad", "attempt": 0},
        "linux": {"sysctls": {"vm.swappiness": "1"}},
    });
    std::fs::write(&bad_pod, bad.to_string()).unwrap();
    let refused = server.crictl(&["runp", bad_pod.to_str().unwrap()]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("vm.swappiness") && refused.stderr.contains("not a namespaced"),
        "{}",
        refused.stderr
    );

    // One pod VM for everything below: privileged (so a privileged container may run in it),
    // with an IPC and a network sysctl.
    let pod_config = env.path("sec-pod.json");
    let pod_json = serde_json::json!({
        "metadata": {"name": "sec", "namespace": "default", "uid": "u-sec", "attempt": 0},
        "hostname": "sec-0",
        "linux": {
            "sysctls": {"kernel.shm_rmid_forced": "1", "net.core.somaxconn": "1234"},
            "security_context": {"privileged": true},
        },
    });
    let pod = server.run_pod(&pod_config, &pod_json);

    let host = env.path("sec-host");
    for d in ["data", "scratch"] {
        std::fs::create_dir_all(host.join(d)).unwrap();
    }
    let host_path = |p: &str| host.join(p).to_str().unwrap().to_owned();
    let create = |name: &str, script: &str, security: serde_json::Value, mounts| {
        let c = env.path(&format!("{name}.json"));
        let config = serde_json::json!({
            "metadata": {"name": name},
            "image": {"image": "busybox"},
            "command": ["sh", "-c", script],
            "linux": {"security_context": security},
            "mounts": mounts,
        });
        std::fs::write(&c, config.to_string()).unwrap();
        let id = server.create_in(&pod, &c, &pod_config);
        server.ok(&["start", &id]);
        id
    };
    let sh =
        |id: &str, script: &str| -> Run { server.crictl(&["exec", "-s", id, "sh", "-c", script]) };
    let out = |id: &str, script: &str| -> String {
        let r = sh(id, script);
        assert_eq!(r.code, 0, "{script}: {}\n{}", r.stdout, r.stderr);
        r.stdout.trim_end().to_owned()
    };
    let fails_with = |id: &str, script: &str, message: &str| {
        let r = sh(id, script);
        assert_ne!(r.code, 0, "{script} succeeded: {}", r.stdout);
        let said = format!("{}{}", r.stdout, r.stderr);
        assert!(said.contains(message), "{script}: {said}");
    };

    // --- a locked-down container: CHOWN dropped, no_new_privs, read-only root, explicit
    // masks, extra groups; a CRI volume and a writable /tmp-style emptyDir still work ---
    let locked = create(
        "locked",
        "cat /proc/self/status > /data/main-status; id -G > /data/main-groups; \
         exec sleep 2147483647",
        serde_json::json!({
            "capabilities": {"drop_capabilities": ["CHOWN"]},
            "no_new_privs": true,
            "readonly_rootfs": true,
            "masked_paths": ["/proc/kcore", "/sys/firmware"],
            "supplemental_groups": [1234, 5678],
            // With no_new_privs the filter goes on after the credentials, right before exec.
            "seccomp": {"profile_type": 0},
        }),
        serde_json::json!([
            {"host_path": host_path("data"), "container_path": "/data"},
            {"host_path": host_path("scratch"), "container_path": "/tmp"},
        ]),
    );
    // The main process (its status, written through the CRI mount, read on the host) ...
    out(
        &locked,
        "until [ -s /data/main-groups ]; do sleep 0.2; done",
    );
    let main_status = std::fs::read_to_string(host.join("data/main-status")).unwrap();
    // ... and an exec carry the same context.
    let exec_status = out(&locked, "cat /proc/self/status");
    for status in [&main_status, &exec_status] {
        assert_eq!(status_field(status, "NoNewPrivs:"), "1", "{status}");
        assert_eq!(status_field(status, "Seccomp:"), "2", "{status}");
        let default = u64::from_str_radix(DEFAULT_CAPS_HEX, 16).unwrap();
        let without_chown = default & !1;
        assert_eq!(cap_mask(status, "CapEff:"), without_chown, "{status}");
        assert_eq!(cap_mask(status, "CapBnd:"), without_chown, "{status}");
    }
    // CAP_CHOWN really is gone: root cannot give a file away.
    out(&locked, "touch /tmp/owned");
    fails_with(&locked, "chown 1:1 /tmp/owned", "Operation not permitted");
    // Read-only root; the CRI mounts stay writable and the host sees the write.
    fails_with(&locked, "touch /made-here", "Read-only file system");
    out(
        &locked,
        "echo from-locked > /data/written && touch /tmp/scratch-file",
    );
    assert_eq!(
        std::fs::read_to_string(host.join("data/written")).unwrap(),
        "from-locked\n"
    );
    assert!(host.join("scratch/scratch-file").is_file());
    // Masked: a file reads as /dev/null, a directory is an empty read-only tmpfs.
    assert_eq!(out(&locked, "wc -c < /proc/kcore"), "0");
    assert_eq!(out(&locked, "ls -A /sys/firmware | wc -l"), "0");
    let locked_mounts = out(&locked, "cat /proc/self/mounts");
    assert!(
        locked_mounts.contains("tmpfs /sys/firmware tmpfs ro"),
        "{locked_mounts}"
    );
    fails_with(&locked, "touch /sys/firmware/x", "Read-only file system");
    // Supplementary groups, for the main process and an exec.
    for groups in [
        std::fs::read_to_string(host.join("data/main-groups")).unwrap(),
        out(&locked, "id -G"),
    ] {
        let groups: Vec<&str> = groups.split_whitespace().collect();
        assert!(
            groups.contains(&"1234") && groups.contains(&"5678"),
            "{groups:?}"
        );
    }

    // --- no context at all: containerd's defaults (default capabilities, masked and
    // read-only /proc paths), a writable root, the pod's sysctls ---
    let plain = create(
        "plain",
        "exec sleep 2147483647",
        serde_json::json!({}),
        serde_json::json!([]),
    );
    let status = out(&plain, "cat /proc/self/status");
    assert_eq!(status_field(&status, "CapEff:"), DEFAULT_CAPS_HEX);
    assert_eq!(status_field(&status, "NoNewPrivs:"), "0");
    out(&plain, "touch /made-here");
    assert_eq!(out(&plain, "wc -c < /proc/kcore"), "0");
    // The pod's sysctls are set in the VM, visible to its containers, and /proc/sys is
    // read-only in them (containerd's default read-only paths).
    assert_eq!(out(&plain, "cat /proc/sys/kernel/shm_rmid_forced"), "1");
    assert_eq!(out(&plain, "cat /proc/sys/net/core/somaxconn"), "1234");
    fails_with(
        &plain,
        "echo 0 > /proc/sys/kernel/shm_rmid_forced",
        "Read-only file system",
    );

    // --- explicit read-only paths on a writable root; user and group from the context ---
    let user = create(
        "user",
        "exec sleep 2147483647",
        serde_json::json!({
            "readonly_paths": ["/home"],
            "run_as_user": {"value": 1000},
            "run_as_group": {"value": 3000},
            "supplemental_groups": [4242],
        }),
        serde_json::json!([]),
    );
    assert_eq!(out(&user, "id -u"), "1000");
    // ContainerStatus reports the identity the main process started with (its primary
    // group among the supplementary ones, as containerd sets them).
    let inspected: serde_json::Value =
        serde_json::from_str(&server.ok(&["inspect", "-o", "json", &user]).stdout).unwrap();
    let linux = &inspected["status"]["user"]["linux"];
    // (protobuf's JSON writes int64 as strings.)
    let num = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    assert_eq!(num(&linux["uid"]), "1000", "{inspected}");
    assert_eq!(num(&linux["gid"]), "3000", "{inspected}");
    let groups: Vec<String> = linux["supplementalGroups"]
        .as_array()
        .map(|a| a.iter().map(num).collect())
        .unwrap_or_default();
    assert_eq!(groups, ["3000", "4242"], "{inspected}");
    assert_eq!(out(&user, "id -g"), "3000");
    assert!(out(&user, "id -G").split_whitespace().any(|g| g == "4242"));
    // A non-root user keeps no capabilities (as under containerd).
    let status = out(&user, "cat /proc/self/status");
    assert_eq!(cap_mask(&status, "CapEff:"), 0, "{status}");
    let mounts = out(&user, "cat /proc/self/mounts");
    let home = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/home"))
        .unwrap_or_else(|| panic!("/home is no mount:\n{mounts}"));
    assert!(
        home.split_whitespace()
            .nth(3)
            .is_some_and(|o| o.split(',').any(|f| f == "ro")),
        "{home}"
    );

    // --- privileged: every capability, nothing masked, /sys writable ---
    let privileged = create(
        "privileged",
        "exec sleep 2147483647",
        serde_json::json!({"privileged": true}),
        serde_json::json!([]),
    );
    let status = out(&privileged, "cat /proc/self/status");
    let all = cap_mask(&status, "CapBnd:");
    assert_eq!(cap_mask(&status, "CapEff:"), all, "{status}");
    // At least CAP_SYS_ADMIN (21) and CAP_NET_ADMIN (12), beyond the defaults.
    assert_eq!(all & (1 << 21 | 1 << 12), 1 << 21 | 1 << 12, "{status}");
    let mounts = out(&privileged, "cat /proc/self/mounts");
    assert!(!mounts.contains(" /proc/kcore "), "{mounts}");
    assert!(
        mounts.lines().any(|l| l.starts_with("sysfs /sys sysfs rw")),
        "{mounts}"
    );
    // ... which the locked container, with its read-only /sys, does not have.
    assert!(
        locked_mounts
            .lines()
            .any(|l| l.starts_with("sysfs /sys sysfs ro")),
        "{locked_mounts}"
    );

    // --- devices: an unprivileged container's /dev is its own (runc's standard set and the
    // pod's pts, shm and mqueue), so the VM's other devices are not there, and a node it
    // makes opens nothing; the privileged container sees the VM's /dev ---
    let own_dev = out(&plain, "ls -A /dev | sort | tr '\\n' ' '");
    assert_eq!(
        own_dev, "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero",
        "an unprivileged container's /dev"
    );
    let vm_dev = out(&privileged, "ls -A /dev");
    assert!(vm_dev.lines().any(|d| d == "kmsg"), "{vm_dev}");
    // CAP_MKNOD (a default capability) makes a node on the /dev tmpfs, which is nodev ...
    fails_with(
        &plain,
        "mknod /dev/mem2 c 1 1 && head -c1 /dev/mem2",
        "Permission denied",
    );
    // ... and none at all on the root, which lives on the host (virtiofsd has no CAP_MKNOD).
    fails_with(&plain, "mknod /mem3 c 1 1", "Operation not permitted");
    out(
        &plain,
        "echo x > /dev/null && head -c4 /dev/urandom | wc -c && ls /dev/fd/",
    );
    // A CRI device is the VM's own device at the path asked for; one the VM lacks fails the
    // start, naming it.
    let device_container = |name: &str, host_path: &str| {
        let c = env.path(&format!("{name}.json"));
        let config = serde_json::json!({
            "metadata": {"name": name},
            "image": {"image": "busybox"},
            "command": ["sleep", "2147483647"],
            "devices": [{"host_path": host_path, "container_path": "/dev/klog/kmsg",
                         "permissions": "rwm"}],
        });
        std::fs::write(&c, config.to_string()).unwrap();
        server.create_in(&pod, &c, &pod_config)
    };
    let with_device = device_container("with-device", "/dev/kmsg");
    server.ok(&["start", &with_device]);
    out(
        &with_device,
        "test -c /dev/klog/kmsg && test ! -e /dev/kmsg",
    );
    let missing = device_container("missing-device", "/dev/a3s-none");
    let refused = server.crictl(&["start", &missing]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("/dev/a3s-none") && refused.stderr.contains("no such device"),
        "{}",
        refused.stderr
    );
    server.ok(&["rm", &missing]);
    server.ok(&["stop", "-t", "0", &with_device]);
    server.ok(&["rm", &with_device]);

    // --- PID namespaces: `plain` and `locked` asked for none, so they share the pod's,
    // whose PID 1 is the pause process; a CONTAINER one is its own PID 1; a TARGET one
    // joins another container's ---
    assert_eq!(
        out(&plain, "tr '\\0' ' ' < /proc/1/cmdline"),
        "/pause __pause"
    );
    let comms = out(&plain, "cat /proc/[0-9]*/comm");
    // The sleeps of the four containers above, but nothing of the VM's own (guest-init, the
    // pod's holder sleep).
    assert_eq!(
        comms.lines().filter(|c| *c == "sleep").count(),
        4,
        "{comms}"
    );
    assert!(!comms.lines().any(|c| c.contains("init")), "{comms}");
    let own = create(
        "own-pid",
        "exec sleep 2147483646",
        serde_json::json!({"namespace_options": {"pid": 1}}),
        serde_json::json!([]),
    );
    assert_eq!(
        out(&own, "tr '\\0' ' ' < /proc/1/cmdline"),
        "sleep 2147483646"
    );
    // An exec joins its container's mount namespace (as runc exec does), not a copy.
    assert_eq!(
        out(
            &own,
            "[ \"$(readlink /proc/self/ns/mnt)\" = \"$(readlink /proc/1/ns/mnt)\" ] && echo same"
        ),
        "same"
    );
    // An exec joins it: one pid (the container's /proc shows its namespace only), not 1.
    let nspid = out(&own, "grep NSpid /proc/self/status");
    let pids: Vec<&str> = nspid.split_whitespace().skip(1).collect();
    assert!(pids.len() == 1 && pids[0] != "1", "{nspid}");
    let comms = out(&own, "cat /proc/[0-9]*/comm");
    assert_eq!(
        comms.lines().filter(|c| *c == "sleep").count(),
        1,
        "{comms}"
    );
    let target = create(
        "target-pid",
        "exec sleep 2147483645",
        serde_json::json!({"namespace_options": {"pid": 3, "target_id": own}}),
        serde_json::json!([]),
    );
    assert_eq!(
        out(&target, "tr '\\0' ' ' < /proc/1/cmdline"),
        "sleep 2147483646"
    );
    assert_eq!(out(&target, "cat /proc/[0-9]*/comm | grep -c sleep"), "2");

    // --- seccomp: none asked for is unconfined; RuntimeDefault filters (a container still
    // runs its shell, but cannot switch personality); a node's profile file blocks what it
    // names even for root with the capability; privileged ignores a profile ---
    let seccomp_mode = |id: &str| out(id, "grep Seccomp: /proc/self/status");
    assert_eq!(seccomp_mode(&plain), "Seccomp:\t0");
    assert_eq!(out(&plain, "linux32 uname -m"), "i686");
    let filtered = create(
        "seccomp-default",
        "grep Seccomp: /proc/self/status > /tmp/main-seccomp; exec sleep 2147483647",
        serde_json::json!({"seccomp": {"profile_type": 0}}),
        serde_json::json!([]),
    );
    assert_eq!(seccomp_mode(&filtered), "Seccomp:\t2");
    assert_eq!(
        out(
            &filtered,
            "until [ -s /tmp/main-seccomp ]; do sleep 0.2; done; cat /tmp/main-seccomp"
        ),
        "Seccomp:\t2"
    );
    fails_with(&filtered, "linux32 uname -m", "Operation not permitted");
    let profile = env.path("block-chmod.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let no_chmod = create(
        "seccomp-localhost",
        "exec sleep 2147483647",
        serde_json::json!({"seccomp": {"profile_type": 2, "localhost_ref": profile}}),
        serde_json::json!([]),
    );
    out(&no_chmod, "touch /f");
    fails_with(&no_chmod, "chmod 600 /f", "Operation not permitted");
    assert_eq!(seccomp_mode(&privileged), "Seccomp:\t0");
    // A profile file that is not there fails the create, naming it.
    let c = env.path("bad-seccomp.json");
    std::fs::write(
        &c,
        serde_json::json!({
            "metadata": {"name": "bad-seccomp"},
            "image": {"image": "busybox"},
            "command": ["true"],
            "linux": {"security_context": {"seccomp": {"profile_type": 2, "localhost_ref": "/nonexistent/profile.json"}}},
        })
        .to_string(),
    )
    .unwrap();
    let refused = server.crictl(&[
        "create",
        "--no-pull",
        &pod,
        c.to_str().unwrap(),
        pod_config.to_str().unwrap(),
    ]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("/nonexistent/profile.json"),
        "{}",
        refused.stderr
    );

    server.ok(&["stopp", &pod]);
    server.ok(&["rmp", &pod]);
}
