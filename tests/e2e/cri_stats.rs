//! CRI statistics, UpdateContainerResources and containers outliving a restart of
//! `a3s-box cri serve`, with the real crictl against the real server, on one pod VM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cri::CriServer;
use crate::support::TestEnv;

/// Waits are for events the test caused, not performance limits: generous, for loaded hosts.
const PATIENCE: Duration = Duration::from_secs(180);

/// A protobuf JSON 64-bit number (crictl prints them as strings).
fn num(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// A busybox container running `sh -c script`, with `resources` (CRI's Linux resources).
fn config(env: &TestEnv, name: &str, script: &str, resources: &Value) -> PathBuf {
    let path = env.path(&format!("{name}.json"));
    let config = serde_json::json!({
        "metadata": {"name": name},
        "image": {"image": "busybox"},
        "command": ["sh", "-c", script],
        "labels": {"role": name},
        "log_path": format!("{name}.log"),
        "linux": {"resources": resources},
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// Polls `check` until it gives a value (the pod VM is slow under TCG and load).
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The highest `line-N` number in a CRI log.
fn last_line(log: &Path) -> Option<u64> {
    std::fs::read_to_string(log)
        .ok()?
        .lines()
        .filter_map(|l| {
            l.rsplit_once("line-")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .max()
}

struct Pod<'a> {
    env: &'a TestEnv,
    pod: String,
    pod_config: PathBuf,
    logs: PathBuf,
}

impl Pod<'_> {
    fn create(&self, server: &CriServer, name: &str, script: &str, res: &Value) -> String {
        let c = config(self.env, name, script, res);
        let id = server.create_in(&self.pod, &c, &self.pod_config);
        server.ok(&["start", &id]);
        id
    }

    /// Runs `sh -c script` in the pod VM itself (its box), outside any container and
    /// without the CRI server.
    fn vm(&self, script: &str) -> String {
        let name = format!("k8s-pod-{}", &self.pod[..12]);
        let r = self.env.run(&["exec", &name, "sh", "-c", script]);
        assert_eq!(r.code, 0, "{script}: {}{}", r.stdout, r.stderr);
        r.stdout
    }
}

fn inspect(server: &CriServer, id: &str) -> Value {
    json(&server.ok(&["inspect", "-o", "json", id]).stdout)
}

fn container_stats(server: &CriServer, id: &str) -> Value {
    let all = json(&server.ok(&["stats", "-o", "json"]).stdout);
    all["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["attributes"]["id"] == id)
        .unwrap_or_else(|| panic!("no stats for {id}: {all}"))
        .clone()
}

#[test]
fn crictl_stats_update_and_containers_outliving_a_server_restart() {
    let env = TestEnv::new();
    let server = CriServer::start(&env);
    let logs = env.path("pod-logs");
    let pod_config = env.path("stats-pod.json");
    let pod_json = serde_json::json!({
        "metadata": {"name": "stats", "namespace": "default", "uid": "u-stats", "attempt": 0},
        "log_directory": logs.to_str().unwrap(),
        "labels": {"app": "stats"},
        // kubelet's sum of the containers' limits and the RuntimeClass overhead: the pod VM
        // is sized to hold them (it was always the 512 MiB, 1 vCPU default).
        "linux": {
            "resources": {"memory_limit_in_bytes": 700u64 << 20, "cpu_quota": 150_000, "cpu_period": 100_000},
            "overhead": {"memory_limit_in_bytes": 32u64 << 20},
        },
    });
    let pod = server.run_pod(&pod_config, &pod_json);
    let p = Pod {
        env: &env,
        pod: pod.clone(),
        pod_config,
        logs,
    };

    // CreateContainer's resources are applied at start to the container's own cgroup.
    let limits = serde_json::json!({
        "cpu_period": 100_000, "cpu_quota": 50_000, "cpu_shares": 512,
        "memory_limit_in_bytes": 64 << 20,
    });
    let busy = p.create(
        &server,
        "busy",
        // Enough CPU for its figures to grow; a longer loop kept half a host core busy under
        // TCG for the whole test, slowing the other test thread's VMs.
        "head -c 3000000 /dev/zero > /scratch; \
         while :; do i=0; while [ $i -lt 300 ]; do i=$((i+1)); done; sleep 0.1; done",
        &limits,
    );
    let logger = p.create(
        &server,
        "logger",
        "i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.3; done",
        &serde_json::json!({}),
    );
    // Exits with 7 once /go appears in its root (the test creates it while the server is down).
    let exiter = p.create(
        &server,
        "exiter",
        "while [ ! -e /go ]; do sleep 0.2; done; exit 7",
        &serde_json::json!({}),
    );
    let cg = |id: &str, file: &str| {
        p.vm(&format!("cat /sys/fs/cgroup/pod-containers/{id}/{file}"))
            .trim()
            .to_owned()
    };
    assert_eq!(cg(&busy, "cpu.max"), "50000 100000");
    assert_eq!(cg(&busy, "memory.max"), (64u64 << 20).to_string());
    assert_eq!(
        cg(&busy, "cpu.weight"),
        "20",
        "512 shares, as runc converts"
    );
    assert_eq!(cg(&logger, "memory.max"), "max");
    // The VM holds the pod's 732 MiB: a container without a limit takes 500 MB of it (in the
    // default 512 MiB VM the guest's OOM killer ended this), and 1.5 CPUs are 2 vCPUs (at
    // most the host's).
    let held = server.ok(&[
        "exec",
        "-s",
        &logger,
        "sh",
        "-c",
        "head -c 500000000 /dev/zero | tail | wc -c",
    ]);
    assert_eq!(held.stdout.trim(), "500000000", "{}", held.stderr);
    let host_cpus = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(2);
    assert_eq!(p.vm("nproc").trim(), host_cpus.to_string());
    // The main process and exec'd processes are in the container's cgroup.
    let own = format!("0::/pod-containers/{busy}");
    assert_eq!(
        server
            .ok(&["exec", "-s", &busy, "cat", "/proc/self/cgroup"])
            .stdout
            .trim(),
        own
    );
    assert!(!cg(&busy, "cgroup.procs").is_empty());
    let status = inspect(&server, &busy);
    let res = &status["status"]["resources"]["linux"];
    assert_eq!(num(&res["cpuQuota"]), 50_000, "{status}");
    assert_eq!(num(&res["memoryLimitInBytes"]), 64 << 20, "{status}");

    // ContainerStats: real, changing figures from the container's cgroup and root.
    let first = container_stats(&server, &busy);
    let cpu0 = num(&first["cpu"]["usageCoreNanoSeconds"]["value"]);
    assert!(cpu0 > 0, "{first}");
    assert!(
        num(&first["memory"]["workingSetBytes"]["value"]) > 0,
        "{first}"
    );
    assert!(num(&first["memory"]["usageBytes"]["value"]) > 0, "{first}");
    // The writable layer's filesystem is a directory on the node, the one ImageFsInfo
    // reports for container filesystems (kubelet looks it up on the host).
    let fs_info: Value =
        serde_json::from_str(&server.ok(&["imagefsinfo", "-o", "json"]).stdout).unwrap();
    let container_fs = fs_info["status"]["containerFilesystems"][0]["fsId"]["mountpoint"]
        .as_str()
        .unwrap_or_else(|| panic!("{fs_info}"))
        .to_owned();
    assert_eq!(
        first["writableLayer"]["fsId"]["mountpoint"], container_fs,
        "{first}"
    );
    assert!(
        std::path::Path::new(&container_fs).is_dir(),
        "{container_fs}"
    );
    // The writable layer is what the container wrote over its image (its overlay's upper
    // directory on the host): the 3 MB file, once written.
    let layer = wait_for("the 3 MB file in busy's writable layer", || {
        let s = container_stats(&server, &busy);
        (num(&s["writableLayer"]["usedBytes"]["value"]) >= 3_000_000).then_some(s)
    });
    let inodes = num(&layer["writableLayer"]["inodesUsed"]["value"]);
    assert!(
        (2..100).contains(&inodes),
        "its root and the file, not the image's: {layer}"
    );
    // A later sample has grown and has a rate. The rate is over the interval since the
    // previous sample, which can be too short for the guest's counter to move (a CI run saw
    // a grown total with a rate of 0 right after the layer polls), so wait for both.
    let cpu1 = wait_for("busy's CPU time and rate to grow", || {
        let s = container_stats(&server, &busy);
        let c = num(&s["cpu"]["usageCoreNanoSeconds"]["value"]);
        (c > cpu0 && num(&s["cpu"]["usageNanoCores"]["value"]) > 0).then_some(s)
    });
    assert!(num(&cpu1["cpu"]["usageNanoCores"]["value"]) > 0, "{cpu1}");
    let table = server.ok(&["stats"]).stdout;
    assert!(
        table.contains("busy") && table.contains("logger"),
        "{table}"
    );

    // PodSandboxStats: the VM's figures, its NIC, its processes and its containers.
    let podstats = json(&server.ok(&["statsp", "-o", "json"]).stdout);
    let ps = podstats["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["attributes"]["id"] == pod.as_str())
        .unwrap_or_else(|| panic!("{podstats}"));
    let linux = &ps["linux"];
    assert!(
        num(&linux["cpu"]["usageCoreNanoSeconds"]["value"]) > 0,
        "{ps}"
    );
    assert!(
        num(&linux["memory"]["workingSetBytes"]["value"]) > 0,
        "{ps}"
    );
    assert_eq!(linux["network"]["defaultInterface"]["name"], "eth0", "{ps}");
    assert!(num(&linux["process"]["processCount"]["value"]) >= 3, "{ps}");
    assert_eq!(linux["containers"].as_array().unwrap().len(), 3, "{ps}");
    assert_eq!(ps["attributes"]["labels"]["app"], "stats");
    let filtered = server
        .ok(&["statsp", "--label", "app=none", "-o", "json"])
        .stdout;
    assert!(json(&filtered)["stats"]
        .as_array()
        .is_none_or(Vec::is_empty));

    // UpdateContainerResources: applied to the cgroup, reported by ContainerStatus.
    server.ok(&[
        "update",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "50000",
        "--memory",
        "33554432",
        "--cpuset-cpus",
        "0",
        &busy,
    ]);
    assert_eq!(cg(&busy, "cpu.max"), "20000 50000");
    assert_eq!(cg(&busy, "memory.max"), "33554432");
    let res = inspect(&server, &busy)["status"]["resources"]["linux"].clone();
    assert_eq!(num(&res["cpuQuota"]), 20_000, "{res}");
    assert_eq!(num(&res["memoryLimitInBytes"]), 33_554_432, "{res}");
    let limits = container_stats(&server, &busy);
    assert!(limits["memory"]["availableBytes"].is_object(), "{limits}");
    // What the VM cannot honour is refused, naming the field; nothing changes.
    let outside = server.crictl(&["update", "--cpuset-cpus", "3", &busy]);
    assert_ne!(outside.code, 0);
    assert!(outside.stderr.contains("cpuset_cpus"), "{}", outside.stderr);
    let mems = server.crictl(&["update", "--cpuset-mems", "1", &busy]);
    assert_ne!(mems.code, 0);
    assert!(mems.stderr.contains("cpuset_mems"), "{}", mems.stderr);
    assert_eq!(cg(&busy, "memory.max"), "33554432");

    // A container over its memory limit is killed by the OOM killer in its cgroup: 137, OOMKilled.
    let hog = p.create(
        &server,
        "hog",
        "exec dd if=/dev/zero of=/dev/null bs=40M",
        &serde_json::json!({"memory_limit_in_bytes": 16 << 20}),
    );
    let oom = wait_for("the OOM kill to be recorded", || {
        let s = inspect(&server, &hog);
        (s["status"]["state"] == "CONTAINER_EXITED").then_some(s)
    });
    assert_eq!(oom["status"]["exitCode"], 137, "{oom}");
    assert_eq!(oom["status"]["reason"], "OOMKilled", "{oom}");
    server.ok(&["rm", &hog]);

    // kill -9 of the server: the containers run on in the VM.
    let log = p.logs.join("logger.log");
    let before = wait_for("logger's first lines", || last_line(&log));
    drop(server);
    // While it is down: the exiter exits with 7, the logger keeps printing.
    // (A plain pod container's root is its overlay reached through the pod's roots share.)
    p.vm(&format!("touch /run/a3s/pod-roots/{exiter}/go"));
    p.vm(&format!(
        "while [ -d /sys/fs/cgroup/pod-containers/{exiter} ]; do sleep 0.2; done"
    ));
    let server = CriServer::start(&env);
    let running = inspect(&server, &busy);
    assert_eq!(running["status"]["state"], "CONTAINER_RUNNING", "{running}");
    assert_eq!(
        inspect(&server, &logger)["status"]["state"],
        "CONTAINER_RUNNING"
    );
    let exited = wait_for("the exiter's exit to be recorded", || {
        let s = inspect(&server, &exiter);
        (s["status"]["state"] == "CONTAINER_EXITED").then_some(s)
    });
    assert_eq!(exited["status"]["exitCode"], 7, "{exited}");
    assert_eq!(exited["status"]["reason"], "Error", "{exited}");
    // The logger's log resumes, with the lines printed while the server was down (guest-init
    // kept them). Only a line in flight at the instant of the kill may be lost (docs/cri.md).
    let after = wait_for("new log lines after the restart", || {
        last_line(&log).filter(|n| *n > before + 2)
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let lost: Vec<u64> = (before..after)
        .filter(|n| !text.contains(&format!("line-{n}\n")))
        .collect();
    assert!(
        lost.len() <= 1,
        "lines lost across the restart {lost:?}:\n{text}"
    );
    // The re-attached sessions carry signals: stop works after the restart.
    server.ok(&["stop", "--timeout", "0", &busy]);
    let stopped = inspect(&server, &busy);
    assert_eq!(stopped["status"]["state"], "CONTAINER_EXITED", "{stopped}");
    assert_eq!(stopped["status"]["exitCode"], 137, "{stopped}");
    // Exec still works in the re-attached logger, and stats come from the new server.
    assert_eq!(
        server
            .ok(&["exec", "-s", &logger, "echo", "ok"])
            .stdout
            .trim(),
        "ok"
    );
    assert!(num(&container_stats(&server, &logger)["cpu"]["usageCoreNanoSeconds"]["value"]) > 0);

    server.ok(&["stopp", &pod]);
    server.ok(&["rmp", &pod]);
}
