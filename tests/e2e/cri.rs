//! The CRI server (`a3s-box cri serve`) driven by the real `crictl` from cri-tools (installed
//! by scripts/setup): runtime version and status, the socket's permissions and lifetime, and
//! the image service against a real local registry with auth and the signature policy.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::image::registry::{build_image, LocalRegistry};
use crate::support::{Run, TestEnv};

/// `crictl`, which scripts/setup installs; a missing one fails the test (never a silent pass).
pub(crate) fn crictl_exe() -> PathBuf {
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let exe = dir.join("crictl");
        if exe.is_file() {
            return exe;
        }
    }
    panic!("crictl is not installed: run scripts/setup (it installs cri-tools' crictl)");
}

/// A running `a3s-box cri serve` on a socket inside the test's home; SIGTERM on drop.
pub(crate) struct CriServer {
    child: Child,
    socket: PathBuf,
}

impl CriServer {
    pub(crate) fn start(env: &TestEnv) -> Self {
        Self::start_with(env, &[])
    }

    /// A server whose binary is deleted once it listens, as a package upgrade replaces it
    /// under a running node.
    pub(crate) fn start_then_delete_binary(env: &TestEnv) -> Self {
        // Beside the real one, where the guest-init it looks for is.
        let original = Path::new(env!("CARGO_BIN_EXE_a3s-box"));
        let exe = original.with_file_name(format!("a3s-box-upgraded-{}", std::process::id()));
        std::fs::copy(original, &exe).unwrap();
        // The test home's environment, on the copy.
        let home = env.cmd();
        let mut copy = Command::new(&exe);
        for (k, v) in home.get_envs() {
            match v {
                Some(v) => copy.env(k, v),
                None => copy.env_remove(k),
            };
        }
        let server = Self::spawn(env, copy, &[]);
        std::fs::remove_file(&exe).unwrap();
        server
    }

    pub(crate) fn start_with(env: &TestEnv, extra: &[&str]) -> Self {
        Self::spawn(env, env.cmd(), extra)
    }

    fn spawn(env: &TestEnv, mut cmd: Command, extra: &[&str]) -> Self {
        let socket = env.path("cri/cri.sock");
        let mut child = cmd
            .args(["cri", "serve", "--listen"])
            .arg(format!("unix://{}", socket.display()))
            // No CNI configuration (whatever the host's /etc/cni/net.d holds): pods get user
            // networking here; tests/e2e/cri_cni.rs covers CNI.
            .arg("--cni-conf-dir")
            .arg(env.path("no-cni"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning a3s-box cri serve");
        // The server says so once the socket accepts connections.
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        stderr
            .read_line(&mut line)
            .expect("reading the server's stderr");
        assert!(
            line.starts_with("CRI listening on unix://"),
            "unexpected server output: {line:?}"
        );
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut rest = String::new();
            while stderr.read_line(&mut rest).is_ok_and(|n| n > 0) {
                eprint!("cri serve: {rest}");
                rest.clear();
            }
        });
        Self { child, socket }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub(crate) fn crictl(&self, args: &[&str]) -> Run {
        let out = Command::new(crictl_exe())
            .args(["--runtime-endpoint", &self.endpoint()])
            .args(["--image-endpoint", &self.endpoint()])
            .args(["--timeout", "120s"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running crictl");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Writes `config` to `path` and runs the pod (`crictl runp`); its id.
    pub(crate) fn run_pod(&self, path: &std::path::Path, config: &serde_json::Value) -> String {
        std::fs::write(path, config.to_string()).unwrap();
        self.ok(&["runp", path.to_str().unwrap()])
            .stdout
            .trim()
            .to_owned()
    }

    /// Creates a container in `pod` from the config file `container` (`crictl create
    /// --no-pull`); its id.
    pub(crate) fn create_in(
        &self,
        pod: &str,
        container: &std::path::Path,
        pod_config: &std::path::Path,
    ) -> String {
        self.ok(&[
            "create",
            "--no-pull",
            pod,
            container.to_str().unwrap(),
            pod_config.to_str().unwrap(),
        ])
        .stdout
        .trim()
        .to_owned()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> Run {
        let r = self.crictl(args);
        assert_eq!(
            r.code, 0,
            "crictl {args:?}\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        r
    }

    /// crictl with `input` on its stdin (closed after it).
    fn crictl_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut child = Command::new(crictl_exe())
            .args(["--runtime-endpoint", &self.endpoint()])
            .args(["--timeout", "120s"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running crictl");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `crictl ARGS` on a pseudo-terminal (util-linux `script` allocates it); its output.
    fn tty(&self, args: &str) -> String {
        // A known terminal size, which the client must pass on to the container.
        let cmd = format!(
            "stty rows 33 cols 101; {} --runtime-endpoint {} {args}",
            crictl_exe().display(),
            self.endpoint()
        );
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("running script (util-linux)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{cmd}: {text}");
        text
    }

    /// `crictl port-forward POD LOCAL:REMOTE`, one request through it, the reply.
    fn port_forward(&self, pod: &str, local: u16, remote: u16, request: &[u8]) -> String {
        let mut child = Command::new(crictl_exe())
            .args(["--runtime-endpoint", &self.endpoint()])
            .args(["port-forward", pod, &format!("{local}:{remote}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("running crictl port-forward");
        // It says so once it listens.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.contains("Forwarding from"), "{line}");
        // Keep reading: it reports each connection, and must not die of a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
        std::io::Write::write_all(&mut conn, request).unwrap();
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut conn, &mut reply).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        reply
    }

    /// SIGTERM, as systemd stops it; returns the exit status code.
    fn terminate(&mut self) -> i32 {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for CriServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(r: &Run) -> serde_json::Value {
    r.json()
}

#[test]
fn crictl_reads_version_and_status_over_an_owner_only_socket() {
    let env = TestEnv::new();
    let mut server = CriServer::start(&env);

    let v = server.ok(&["version"]);
    assert!(v.stdout.contains("RuntimeName:  a3s-box"), "{}", v.stdout);
    assert!(v.stdout.contains("RuntimeApiVersion:  v1"), "{}", v.stdout);

    // Readiness is reported as it is: containers run, but this server has no CNI configuration.
    let info = json(&server.ok(&["info", "-o", "json"]));
    let conditions = info["status"]["conditions"].as_array().unwrap();
    let condition = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap();
    assert_eq!(condition("RuntimeReady")["status"], true);
    assert_eq!(condition("NetworkReady")["status"], false);
    assert_eq!(condition("NetworkReady")["reason"], "NetworkPluginNotReady");
    let handlers: Vec<_> = info["runtimeHandlers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert!(handlers.contains(&"a3s-simulate"), "{handlers:?}");

    // Containers are refused with the reason, not faked.
    let pods = json(&server.ok(&["pods", "-o", "json"]));
    assert_eq!(pods["items"], serde_json::json!([]));
    let ps = server.crictl(&["create", "0123456789ab", "/dev/null", "/dev/null"]);
    assert_ne!(ps.code, 0);

    // The socket is the node's runtime: only its owner may connect.
    let mode = std::fs::metadata(&server.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A second server on a live socket is refused (usage error), the first keeps serving.
    let second = env.run(&["cri", "serve", "--listen", &server.endpoint()]);
    assert_eq!(second.code, 2, "{}", second.stderr);
    assert!(
        second.stderr.contains("already listening"),
        "{}",
        second.stderr
    );
    server.ok(&["version"]);

    // SIGTERM stops it cleanly and removes the socket.
    assert_eq!(server.terminate(), 0);
    assert!(!server.socket.exists());

    let bad = env.run(&["cri", "serve", "--listen", "tcp://127.0.0.1:1"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("unix:///"), "{}", bad.stderr);
}

/// A pod sandbox through crictl: its VM boots with the pod's hostname and DNS servers,
/// lists with its labels, stops, is removed with its box; confidential pods are refused before
/// anything starts (not implemented yet), and the refusal is audited.
#[test]
fn crictl_runs_stops_and_removes_a_pod_vm() {
    let env = TestEnv::new();
    // The binary is gone (an upgrade replaced it) before the first pod: its monitor still
    // starts, from the running server's own executable.
    let server = CriServer::start_then_delete_binary(&env);
    let config = env.path("pod.json");
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &config,
        format!(
            r#"{{"metadata":{{"name":"web","namespace":"default","uid":"u-1","attempt":0}},
            "hostname":"web-0","labels":{{"app":"web"}},
            "dns_config":{{"servers":["10.96.0.10"],"searches":[],"options":[]}},
            "port_mappings":[{{"protocol":0,"container_port":80,"host_port":{host_port}}}]}}"#
        ),
    )
    .unwrap();
    let id = server
        .ok(&["runp", config.to_str().unwrap()])
        .stdout
        .trim()
        .to_owned();
    assert_eq!(id.len(), 32, "{id}");

    let status = json(&server.ok(&["inspectp", "-o", "json", &id]));
    assert_eq!(status["status"]["state"], "SANDBOX_READY", "{status}");
    assert_eq!(status["status"]["metadata"]["name"], "web");
    assert_eq!(status["status"]["labels"]["app"], "web");

    // The pod is one VM (a box), and the pod's hostname and DNS config reached it.
    let boxes = env.run(&["ps", "--format", "json"]).json_lines();
    let pod_box = boxes
        .as_array()
        .unwrap()
        .iter()
        .find(|b| {
            b["Names"]
                .as_str()
                .is_some_and(|n| n.starts_with("k8s-pod-"))
        })
        .unwrap_or_else(|| panic!("no pod box in {boxes}"))
        .clone();
    let box_name = pod_box["Names"].as_str().unwrap();
    let inside = env.run(&[
        "exec",
        box_name,
        "sh",
        "-c",
        "hostname; cat /etc/resolv.conf",
    ]);
    assert_eq!(inside.code, 0, "{}", inside.stderr);
    assert!(inside.stdout.starts_with("web-0\n"), "{}", inside.stdout);
    assert!(
        inside.stdout.contains("nameserver 10.96.0.10"),
        "{}",
        inside.stdout
    );

    // The pod's port mapping is published on the host's loopback.
    let serve = env.run(&[
        "exec",
        box_name,
        "sh",
        "-c",
        "mkdir -p /tmp/www && echo pod-port > /tmp/www/i && httpd -p 80 -h /tmp/www",
    ]);
    assert_eq!(serve.code, 0, "{}", serve.stderr);
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    std::io::Write::write_all(&mut conn, b"GET /i HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut conn, &mut reply).unwrap();
    assert!(reply.ends_with("pod-port\n"), "{reply}");

    // A kubelet retry of the same RunPodSandbox gets the same pod, not a second VM.
    let again = server.ok(&["runp", config.to_str().unwrap()]);
    assert_eq!(again.stdout.trim(), id);

    // List filters: label selector and state.
    let by_label = json(&server.ok(&["pods", "-o", "json", "--label", "app=web"]));
    assert_eq!(by_label["items"].as_array().unwrap().len(), 1);
    let other = json(&server.ok(&["pods", "-o", "json", "--label", "app=db"]));
    assert!(other["items"].as_array().unwrap().is_empty());

    server.ok(&["stopp", &id]);
    let stopped = json(&server.ok(&["inspectp", "-o", "json", &id]));
    assert_eq!(stopped["status"]["state"], "SANDBOX_NOTREADY");
    let ready = json(&server.ok(&["pods", "-o", "json", "--state", "ready"]));
    assert!(ready["items"].as_array().unwrap().is_empty());
    server.ok(&["stopp", &id]);
    server.ok(&["rmp", &id]);
    assert!(json(&server.ok(&["pods", "-o", "json"]))["items"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        env.run(&["inspect", box_name]).code,
        125,
        "the pod's box is gone"
    );

    // An SEV-SNP pod is refused before any VM starts on this host (no SEV-SNP hardware;
    // simulated confidential pods are tested in cri_tee.rs).
    let tee = env.path("tee-pod.json");
    std::fs::write(
        &tee,
        r#"{"metadata":{"name":"secret","namespace":"default","uid":"u-2","attempt":0}}"#,
    )
    .unwrap();
    let r = server.crictl(&["runp", "--runtime", "a3s-snp", tee.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no SEV-SNP hardware"), "{}", r.stderr);
    assert!(env.run(&["ps", "-a", "--format", "json"]).json_lines() == serde_json::json!([]));
    let audit = env.run(&["audit", "--action", "pod.*", "--format", "json"]);
    for action in ["pod.run", "pod.stop", "pod.remove"] {
        assert!(audit.stdout.contains(action), "{action}: {}", audit.stdout);
    }
    assert!(audit.stdout.contains("denied"), "{}", audit.stdout);
}

fn registry_image(reg: &LocalRegistry, repo_tag: &str) -> String {
    let layout = build_image("v1", &[]);
    reg.push_layout(&layout.path(), "v1", repo_tag);
    format!("{}/{repo_tag}", reg.addr)
}

#[test]
fn crictl_pulls_with_credentials_lists_inspects_and_removes_images() {
    let reg = LocalRegistry::with_htpasswd("kubelet", "pull-s3cret");
    let image = registry_image(&reg, "cri/app:1");
    let env = TestEnv::new();
    let server = CriServer::start(&env);

    // The registry wants credentials: without them the pull fails and nothing is stored.
    let anon = server.crictl(&["pull", &image]);
    assert_ne!(anon.code, 0, "{}", anon.stdout);
    assert!(json(&server.ok(&["images", "-o", "json"]))["images"]
        .as_array()
        .unwrap()
        .is_empty());

    // With the auth kubelet passes (user and password), it succeeds.
    let pulled = server.ok(&["pull", "--creds", "kubelet:pull-s3cret", &image]);
    let id = pulled
        .stdout
        .trim()
        .strip_prefix("Image is up to date for ")
        .unwrap_or_else(|| panic!("{}", pulled.stdout))
        .to_owned();
    assert!(id.starts_with("sha256:"), "{id}");
    // The pull built the image's root filesystem, so a first create need not (crictl gives a
    // create two seconds).
    let hex = id.trim_start_matches("sha256:");
    let erofs = env.path(&format!("images/v1/rootfs/{hex}.erofs"));
    assert!(erofs.is_file(), "{} after a CRI pull", erofs.display());
    let remote = reg.remote_digest("cri/app:1");

    let list = json(&server.ok(&["images", "-o", "json"]));
    let images = list["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{list}");
    assert_eq!(images[0]["id"], id.as_str());
    assert_eq!(images[0]["repoTags"], serde_json::json!([image]));
    assert_eq!(
        images[0]["repoDigests"],
        serde_json::json!([format!("{}/cri/app@{remote}", reg.addr)])
    );
    assert_ne!(images[0]["size"], "0");

    // The same store as the CLI's.
    let cli = env.run(&["images", "--format", "json"]).json_lines();
    assert_eq!(cli[0]["Digest"], id.as_str());

    // inspecti by reference and by short id; verbose info carries the image config.
    let by_ref = json(&server.ok(&["inspecti", "-o", "json", &image]));
    assert_eq!(by_ref["status"]["id"], id.as_str());
    // crictl decodes the verbose info (the image config as JSON) into the output.
    assert_eq!(
        by_ref["info"]["env"],
        serde_json::json!(["GREETING=hello"]),
        "{by_ref}"
    );
    let short = &id["sha256:".len().."sha256:".len() + 13];
    let by_id = json(&server.ok(&["inspecti", "-o", "json", short]));
    assert_eq!(by_id["status"]["id"], id.as_str());

    let fs = json(&server.ok(&["imagefsinfo", "-o", "json"]));
    let used = fs["status"]["imageFilesystems"][0]["usedBytes"]["value"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(used > 0, "{fs}");

    // Both are audited like CLI pulls.
    let audit = env.run(&["audit", "--action", "image.pull", "--format", "json"]);
    assert!(audit.stdout.contains(&image), "{}", audit.stdout);

    // rmi by id removes every name and the content.
    server.ok(&["rmi", &id]);
    assert!(json(&server.ok(&["images", "-o", "json"]))["images"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(env.run(&["image", "inspect", &image]).code, 125);
    let removed = env.run(&["audit", "--action", "image.remove", "--format", "json"]);
    assert!(removed.stdout.contains(&image), "{}", removed.stdout);
}

#[test]
fn the_signature_policy_applies_to_cri_pulls() {
    let reg = LocalRegistry::start();
    let image = registry_image(&reg, "unsigned/app:1");
    let env = TestEnv::new();
    let policy_dir = env.path("policy");
    std::fs::create_dir_all(&policy_dir).unwrap();
    std::fs::write(policy_dir.join("signatures.toml"), "default = \"reject\"\n").unwrap();
    let server = CriServer::start(&env);

    let r = server.crictl(&["pull", &image]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("PermissionDenied"), "{}", r.stderr);
    assert!(json(&server.ok(&["images", "-o", "json"]))["images"]
        .as_array()
        .unwrap()
        .is_empty());
    let denied = env.run(&[
        "audit",
        "--action",
        "image.pull",
        "--outcome",
        "denied",
        "--format",
        "json",
    ]);
    assert!(denied.stdout.contains(&image), "{}", denied.stdout);

    // The policy is read per pull: accepting the scope lets the same server pull it.
    std::fs::write(
        policy_dir.join("signatures.toml"),
        format!(
            "default = \"reject\"\n[[scope]]\nname = \"{}/unsigned\"\npolicy = \"accept-anything\"\n",
            reg.addr
        ),
    )
    .unwrap();
    server.ok(&["pull", &image]);
}

/// critest's own images, built here (busybox plus a file naming the image, and the image
/// USER) and pushed to the local registry, which serves them as a mirror of gcr.io:
/// `(repository:tag, content tag, USER)`. Same content tag, same image.
const CRITEST_IMAGES: &[(&str, &str, Option<&str>)] = &[
    (
        "k8s-staging-cri-tools/test-image-latest:latest",
        "latest",
        None,
    ),
    ("k8s-staging-cri-tools/test-image-tag:test", "tag", None),
    ("k8s-staging-cri-tools/test-image-tag:all", "all", None),
    ("k8s-staging-cri-tools/test-image-1:latest", "1", None),
    ("k8s-staging-cri-tools/test-image-2:latest", "2", None),
    ("k8s-staging-cri-tools/test-image-3:latest", "3", None),
    ("k8s-staging-cri-tools/test-image-tags:1", "tags", None),
    ("k8s-staging-cri-tools/test-image-tags:2", "tags", None),
    ("k8s-staging-cri-tools/test-image-tags:3", "tags", None),
    (
        "k8s-staging-cri-tools/test-image-user-uid:latest",
        "uid",
        Some("1002"),
    ),
    (
        "k8s-staging-cri-tools/test-image-user-username:latest",
        "username",
        Some("www-data"),
    ),
    (
        "k8s-staging-cri-tools/test-image-user-uid-group:latest",
        "uid-group",
        Some("1003:users"),
    ),
    (
        "k8s-staging-cri-tools/test-image-user-username-group:latest",
        "username-group",
        Some("www-data:users"),
    ),
];

/// What critest runs here, and why the rest of the focused specs are skipped (issue 16: every
/// spec that can run here; the groups left out entirely are listed in `CRITEST_NOT_FOCUSED`).
const CRITEST_FOCUS: &str = "Image Manager|Runtime info|PodSandbox|Idempotence|Container runtime|\
                             Multiple Containers|Streaming|Networking|Security Context bucket|\
                             SupplementalGroupsPolicy|NoNewPrivs|Container OOM|NamespaceOption|\
                             SeccompProfilePath|Mount Propagation|Mount Readonly";
const CRITEST_SKIPS: &[(&str, &str)] = &[
    (
        "runtime should return runtime conditions",
        "this server has no CNI configuration, so NetworkReady is false as it should be; \
         cri_cni::critest_runtime_conditions_and_networking_specs_pass_with_cni runs the spec \
         against a server with one",
    ),
    (
        "public image with digest",
        "needs critest's upstream image with a fixed digest, which cannot be rebuilt here",
    ),
    (
        "should support network",
        "reads the pod IP from PodSandboxStatus, which only CNI pod networking provides",
    ),
    (
        "port mapping with only container port",
        "reaches the pod IP, which only CNI pod networking provides",
    ),
    (
        "runtime should support portforward \\[Conformance\\]",
        "first checks the web server at the pod IP, which only CNI pod networking provides; \
         cri_cni::critest_runtime_conditions_and_networking_specs_pass_with_cni runs it",
    ),
    (
        "runtime should support HostPID|runtime should support HostIpc is true|\
         runtime should support HostNetwork is true",
        "a pod is its own VM: the node's PID, IPC and network namespaces are not there to \
         join (NODE is refused by name)",
    ),
    (
        "mount with 'rshared' should support propagation from host to container and vice versa",
        "a mount made inside a pod VM is the guest kernel's and cannot appear on the host, so \
         PROPAGATION_BIDIRECTIONAL is refused by name (host to container: the 'rslave' spec)",
    ),
    (
        "portforward in host network",
        "host-network pods are not supported: a pod is its own VM",
    ),
];

/// critest groups not focused at all, and why.
#[allow(dead_code)] // documentation of the selection, printed by the test
const CRITEST_NOT_FOCUSED: &[(&str, &str)] = &[
    (
        "AppArmor",
        "no AppArmor in the pod VM's kernel configuration",
    ),
    (
        "UserNamespaces",
        "user namespaces are not supported for pod containers",
    ),
];

/// critest's e2e images, built here from the host's static busybox and served by the local
/// registry as a mirror of registry.k8s.io: `(repository:tag, command)`. The web servers
/// stand in for nginx and httpd with busybox's httpd on port 80: each logs a line naming
/// itself (critest looks for "httpd"). The nginx one keeps a shell as its main process, named
/// (`$0`) as nginx titles its main process, "nginx: master process": the PID namespace specs
/// look for that in `/proc/1/cmdline` (their own PID 1 under `CONTAINER`, the pod's pause
/// under `POD`).
const E2E_IMAGES: &[(&str, &[&str])] = &[
    ("e2e-test-images/busybox:1.29-2", &[]),
    (
        "e2e-test-images/nginx:1.14-2",
        &[
            "-c",
            "echo httpd started; httpd -f -p 80 -h /www & wait",
            "nginx: master process",
        ],
    ),
    (
        "e2e-test-images/httpd:2.4.39-4",
        &["-c", "echo httpd started; exec httpd -f -p 80 -h /www"],
    ),
];

/// Debian's dynamically linked busybox (the `busybox` package's .deb, which scripts/setup keeps
/// in the test-image cache) with the libraries it links, in place of the static one: built
/// without FEATURE_SH_STANDALONE, its shell execs what it finds on PATH, as upstream's busybox
/// image does. critest's MaskedPaths spec masks `/bin/ls` and expects `sh -c ls` to be refused;
/// busybox-static's shell would run its own `ls` applet without looking at /bin/ls.
fn execing_busybox(root: &std::path::Path) {
    let debs = std::path::PathBuf::from(
        std::env::var("A3S_TEST_IMAGES").unwrap_or_else(|_| "/var/cache/a3s-test-images".into()),
    )
    .join("debs");
    let deb = std::fs::read_dir(&debs)
        .ok()
        .and_then(|d| {
            d.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("busybox_"))
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "no busybox_*.deb in {}: run scripts/setup (critest's busybox stand-in)",
                debs.display()
            )
        });
    let x = tempfile::tempdir().unwrap();
    crate::image::registry::run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(x.path()));
    let busybox = x.path().join("bin/busybox");
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    // What it links, from the host's libc6 (the same Debian release), at the same paths.
    let ldd = crate::image::registry::run_ok(Command::new("ldd").arg(&busybox));
    for lib in ldd.lines().filter_map(|l| {
        let l = l.trim();
        let path = l.split_once("=> ").map_or(l, |(_, p)| p);
        path.split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
    }) {
        let to = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(lib, &to).unwrap();
    }
}

/// Busybox with every applet linked in `/bin`, a passwd file and `/tmp`, as critest's busybox
/// has. The applets are hard links, as `busybox --install` makes them: critest's MaskedPaths
/// spec masks `/bin/ls`, and a mount on a symlink lands on its target (busybox itself).
fn full_busybox(root: &std::path::Path) {
    let list = crate::image::registry::run_ok(Command::new("/bin/busybox").arg("--list"));
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
        let link = root.join("bin").join(applet);
        if !link.exists() && link.symlink_metadata().is_err() {
            std::fs::hard_link(root.join("bin/busybox"), link).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::write(root.join("www/index.html"), "<h1>It works!</h1>\n").unwrap();
    // Debian's busybox has neither `pgrep` nor `ipcs`, which upstream's image has and
    // critest's specs call: the same lookups, from /proc, as scripts.
    for (name, script) in [
        (
            "bin/pgrep",
            "#!/bin/sh\nfound=1\nfor d in /proc/[0-9]*; do\n  \
             [ \"$(cat \"$d/comm\" 2>/dev/null)\" = \"$1\" ] && echo \"${d#/proc/}\" && found=0\n\
             done\nexit $found\n",
        ),
        (
            "bin/ipcs",
            "#!/bin/sh\necho '------ Shared Memory Segments --------'\n\
             tail -n +2 /proc/sysvipc/shm\n",
        ),
    ] {
        std::fs::write(root.join(name), script).unwrap();
        std::fs::set_permissions(root.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn critest_runs_every_spec_that_can_run_here() {
    let critest = crictl_exe().with_file_name("critest");
    assert!(
        critest.is_file(),
        "critest is not installed next to crictl: run scripts/setup"
    );
    let reg = LocalRegistry::start();
    let mut built: Vec<(&str, crate::image::registry::Layout)> = Vec::new();
    for (repo_tag, content, user) in CRITEST_IMAGES {
        if !built.iter().any(|(c, _)| c == content) {
            let name = content.to_string();
            let layout = build_image(
                "v1",
                &[&|root: &std::path::Path| {
                    std::fs::write(root.join("srv/image"), &name).unwrap();
                }],
            );
            if let Some(user) = user {
                let image = format!("{}:v1", layout.path().display());
                crate::image::registry::run_ok(Command::new("umoci").args([
                    "config",
                    "--image",
                    &image,
                    "--config.user",
                    user,
                ]));
            }
            built.push((content, layout));
        }
        let layout = &built.iter().find(|(c, _)| c == content).unwrap().1;
        reg.push_layout(&layout.path(), "v1", repo_tag);
    }
    // The SupplementalGroupsPolicy specs' image: user 1000 is a member of group 50000 in
    // the image's /etc/group.
    let layout = build_image(
        "v1",
        &[&full_busybox, &|root: &std::path::Path| {
            std::fs::write(
                root.join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\ndefault-user:x:1000:1000::/home:/bin/sh\n",
            )
            .unwrap();
            std::fs::write(
                root.join("etc/group"),
                "root:x:0:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n",
            )
            .unwrap();
        }],
    );
    let image = format!("{}:v1", layout.path().display());
    crate::image::registry::run_ok(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.user",
        "1000",
    ]));
    reg.push_layout(
        &layout.path(),
        "v1",
        "k8s-staging-cri-tools/test-image-predefined-group:latest",
    );
    // critest's NoNewPrivs image: a static setuid-root program printing its effective uid
    // (the upstream image's `nnp`), run as uid 1000 by the specs.
    let nnp_src = tempfile::tempdir().unwrap();
    std::fs::write(
        nnp_src.path().join("nnp.c"),
        "#include <stdio.h>\n#include <unistd.h>\n\
         int main(void) { printf(\"Effective uid: %d\\n\", (int)geteuid()); return 0; }\n",
    )
    .unwrap();
    crate::image::registry::run_ok(
        Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(nnp_src.path().join("nnp"))
            .arg(nnp_src.path().join("nnp.c")),
    );
    let nnp = nnp_src.path().join("nnp");
    let layout = build_image(
        "v1",
        &[&full_busybox, &|root: &std::path::Path| {
            let bin = root.join("usr/local/bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::copy(&nnp, bin.join("nnp")).unwrap();
            std::fs::set_permissions(bin.join("nnp"), std::fs::Permissions::from_mode(0o4755))
                .unwrap();
        }],
    );
    let image = format!("{}:v1", layout.path().display());
    crate::image::registry::run_ok(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.entrypoint",
        "/usr/local/bin/nnp",
    ]));
    reg.push_layout(&layout.path(), "v1", "e2e-test-images/nonewprivs:1.3");
    for (repo_tag, cmd) in E2E_IMAGES {
        let layout = if repo_tag.starts_with("e2e-test-images/busybox:") {
            build_image("v1", &[&execing_busybox, &full_busybox])
        } else {
            build_image("v1", &[&full_busybox])
        };
        if !cmd.is_empty() {
            let image = format!("{}:v1", layout.path().display());
            let mut config = Command::new("umoci");
            config.args(["config", "--image", &image]);
            for arg in *cmd {
                config.arg(format!("--config.cmd={arg}"));
            }
            crate::image::registry::run_ok(&mut config);
        }
        reg.push_layout(&layout.path(), "v1", repo_tag);
    }
    let env = TestEnv::new();
    let mirror = format!("gcr.io={}", reg.addr);
    let k8s_mirror = format!("registry.k8s.io={}", reg.addr);
    let server = CriServer::start_with(
        &env,
        &[
            "--registry-mirror",
            &mirror,
            "--registry-mirror",
            &k8s_mirror,
        ],
    );
    for (group, why) in CRITEST_NOT_FOCUSED {
        eprintln!("critest NOT FOCUSED {group:?}: {why}");
    }
    let skip = CRITEST_SKIPS
        .iter()
        .map(|(s, _)| *s)
        .collect::<Vec<_>>()
        .join("|");
    for (spec, why) in CRITEST_SKIPS {
        eprintln!("critest SKIPPED {spec:?}: {why}");
    }
    let out = Command::new(&critest)
        .args(["--runtime-endpoint", &server.endpoint()])
        .args(["--image-endpoint", &server.endpoint()])
        // A3S_CRITEST_FOCUS narrows a local run to some specs (the full focus otherwise).
        .arg(format!(
            "--ginkgo.focus={}",
            std::env::var("A3S_CRITEST_FOCUS").unwrap_or_else(|_| CRITEST_FOCUS.to_owned())
        ))
        .arg(format!("--ginkgo.skip={skip}"))
        .arg("--ginkgo.no-color")
        .current_dir(env.home.path())
        .stdin(Stdio::null())
        .output()
        .expect("running critest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .filter(|l| (l.contains("Passed") && l.contains("Failed")) || l.starts_with("Ran "))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("critest: {summary}");
    assert!(
        out.status.success(),
        "critest failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Everything focused and not skipped ran and passed.
    assert!(summary.contains("| 0 Failed"), "{summary}");
    assert!(!summary.contains(" 0 Passed"), "{summary}");
}

/// Writes a crictl container config for the busybox image running `sh -c script`.
fn container_config(env: &TestEnv, name: &str, script: &str) -> PathBuf {
    let path = env.path(&format!("{name}.json"));
    let config = serde_json::json!({
        "metadata": {"name": name},
        "image": {"image": "busybox"},
        "command": ["sh", "-c", script],
        "envs": [{"key": "GREETING", "value": "hello from cri"}],
        "labels": {"role": name},
        "annotations": {"note": format!("{name}-note")},
        "log_path": format!("{name}.log"),
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

#[test]
fn crictl_runs_containers_in_a_pod_vm() {
    let env = TestEnv::new();
    let server = CriServer::start(&env);
    let log_dir = env.path("pod-logs");
    let pod_config = env.path("app-pod.json");
    let pod_json = serde_json::json!({
        "metadata": {"name": "app", "namespace": "default", "uid": "u-app", "attempt": 0},
        "hostname": "app-0",
        "log_directory": log_dir.to_str().unwrap(),
    });
    let pod = server.run_pod(&pod_config, &pod_json);
    let create = |name: &str, script: &str| {
        server.create_in(&pod, &container_config(&env, name, script), &pod_config)
    };
    let inspect = |id: &str| json(&server.ok(&["inspect", "-o", "json", id]));

    // Two containers of one pod: a web server and a client, each with its own root.
    let web = create(
        "web",
        "mkdir -p /www && echo \"$GREETING\" > /www/index.html && echo web-started \
         && echo web-warning >&2 && exec httpd -f -p 8080 -h /www",
    );
    let client = create("client", "exec sleep 2147483647");
    let created = inspect(&web);
    assert_eq!(created["status"]["state"], "CONTAINER_CREATED", "{created}");
    assert_eq!(created["status"]["labels"]["role"], "web");
    assert_eq!(created["status"]["annotations"]["note"], "web-note");
    assert_eq!(created["status"]["image"]["image"], "busybox");
    assert!(created["status"]["imageRef"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    server.ok(&["start", &web]);
    server.ok(&["start", &client]);
    let running = inspect(&web);
    assert_eq!(running["status"]["state"], "CONTAINER_RUNNING", "{running}");
    assert_ne!(running["status"]["startedAt"], "1970-01-01T00:00:00Z");

    // List filters: label, state, pod.
    let by_label = json(&server.ok(&["ps", "-o", "json", "--label", "role=web"]));
    let items = by_label["containers"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{by_label}");
    assert_eq!(items[0]["id"], web.as_str());
    let in_pod = json(&server.ok(&["ps", "-o", "json", "--pod", &pod]));
    assert_eq!(in_pod["containers"].as_array().unwrap().len(), 2);
    let exited = json(&server.ok(&["ps", "-a", "-o", "json", "--state", "exited"]));
    assert!(exited["containers"].as_array().unwrap().is_empty());

    // The client reaches the web container on the pod's localhost (shared network), shares
    // the pod's hostname, and does not see the web container's files (its own root).
    let got = server.ok(&[
        "exec",
        "-s",
        &client,
        "sh",
        "-c",
        "until wget -q -O - http://127.0.0.1:8080/; do sleep 0.2; done",
    ]);
    // (crictl prints ExecSync's output followed by blank lines of its own.)
    assert_eq!(got.stdout.trim_end(), "hello from cri");
    assert_eq!(
        server
            .ok(&["exec", "-s", &client, "hostname"])
            .stdout
            .trim_end(),
        "app-0"
    );
    // The web container's root is the image's erofs under its own overlay on the host,
    // reached through the pod's share: what it wrote is in its upper layer there.
    let upper = env
        .home
        .path()
        .join("pods/layers")
        .join(&pod)
        .join(&web)
        .join("upper/www/index.html");
    assert_eq!(
        std::fs::read_to_string(&upper).unwrap(),
        "hello from cri\n",
        "{}",
        upper.display()
    );
    let own_root = server.crictl(&["exec", "-s", &client, "ls", "/www"]);
    assert_ne!(own_root.code, 0, "{}", own_root.stdout);
    assert_eq!(
        server
            .ok(&["exec", "-s", &web, "cat", "/www/index.html"])
            .stdout
            .trim_end(),
        "hello from cri"
    );
    // Its own mount namespace: /proc is the container's own mount.
    let mounts = server.ok(&["exec", "-s", &client, "cat", "/proc/self/mounts"]);
    assert!(mounts.stdout.contains(" /proc proc "), "{}", mounts.stdout);
    let failed = server.crictl(&["exec", "-s", &client, "sh", "-c", "exit 3"]);
    // crictl exits 1 and names the command's code.
    assert_ne!(failed.code, 0);
    assert!(failed.stderr.contains("exited with 3"), "{}", failed.stderr);

    // Logs, in CRI format at the path kubelet gives, and through crictl.
    let logs = server.ok(&["logs", &web]);
    assert!(logs.stdout.contains("web-started"), "{}", logs.stdout);
    assert!(logs.stderr.contains("web-warning"), "{}", logs.stderr);
    let file = std::fs::read_to_string(log_dir.join("web.log")).unwrap();
    let first = file.lines().find(|l| l.contains("web-started")).unwrap();
    let fields: Vec<&str> = first.splitn(4, ' ').collect();
    assert_eq!(&fields[1..], ["stdout", "F", "web-started"], "{first}");
    assert!(fields[0].ends_with('Z'), "{first}");
    assert_eq!(
        running["status"]["logPath"],
        log_dir.join("web.log").to_str().unwrap()
    );
    // ReopenContainerLog: after rotation, new output goes to a new file at the path.
    std::fs::rename(log_dir.join("client.log"), log_dir.join("client.log.1")).unwrap();
    server.ok(&["logs", "--reopen", &client]);
    assert!(log_dir.join("client.log").is_file());

    // Stop: the exit code and reason are recorded; stopping again is no error.
    server.ok(&["stop", "--timeout", "10", &web]);
    let stopped = inspect(&web);
    assert_eq!(stopped["status"]["state"], "CONTAINER_EXITED", "{stopped}");
    assert_eq!(stopped["status"]["exitCode"], 143, "{stopped}");
    assert_eq!(stopped["status"]["reason"], "Error");
    server.ok(&["stop", &web]);
    let exited = json(&server.ok(&["ps", "-a", "-o", "json", "--state", "exited"]));
    assert_eq!(exited["containers"].as_array().unwrap().len(), 1);
    // A stopped container cannot be started again (kubelet creates a new attempt).
    assert_ne!(server.crictl(&["start", &web]).code, 0);
    server.ok(&["rm", &web]);
    assert_ne!(server.crictl(&["inspect", &web]).code, 0);

    // A command that does not exist fails StartContainer and leaves the reason.
    let bad = {
        let c = env.path("bad.json");
        let config = serde_json::json!({
            "metadata": {"name": "bad"},
            "image": {"image": "busybox"},
            "command": ["/no/such/program"],
        });
        std::fs::write(&c, config.to_string()).unwrap();
        server.create_in(&pod, &c, &pod_config)
    };
    let r = server.crictl(&["start", &bad]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("/no/such/program"), "{}", r.stderr);
    let st = inspect(&bad);
    assert_eq!(st["status"]["state"], "CONTAINER_EXITED");
    assert_eq!(st["status"]["reason"], "StartError");

    // Streaming (URLs served by cri-streaming inside `cri serve`): exec over SPDY and over
    // WebSocket, exec -it on a terminal (a pty from `script`), attach, port-forward.
    for transport in ["spdy", "websocket"] {
        let r = server.ok(&[
            "exec",
            "-r",
            transport,
            &client,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 0",
        ]);
        assert_eq!(r.stdout, "out\n", "{transport}");
        assert!(r.stderr.contains("err"), "{transport}: {}", r.stderr);
    }
    let code = server.crictl(&["exec", &client, "sh", "-c", "exit 4"]);
    assert!(
        code.code == 4 || (code.code != 0 && code.stderr.contains('4')),
        "{code:?}"
    );
    let tty = server.tty(&format!(
        "exec -it {client} sh -c 'tty && stty size && echo $GREETING'"
    ));
    assert!(tty.contains("/dev/pts/"), "{tty}");
    assert!(tty.contains("hello from cri"), "{tty}");
    assert!(
        tty.contains("33 101"),
        "the terminal size reached the container: {tty}"
    );

    let echo = {
        let c = env.path("echo.json");
        let config = serde_json::json!({
            "metadata": {"name": "echo"},
            "image": {"image": "busybox"},
            "command": ["sh", "-c", "read line; echo \"got:$line\""],
            "stdin": true,
            "log_path": "echo.log",
        });
        std::fs::write(&c, config.to_string()).unwrap();
        server.create_in(&pod, &c, &pod_config)
    };
    server.ok(&["start", &echo]);
    let attached = server.crictl_stdin(&["attach", "-i", &echo], b"ping\n");
    assert!(
        attached.stdout.contains("got:ping"),
        "{}\n{}",
        attached.stdout,
        attached.stderr
    );
    assert_eq!(inspect(&echo)["status"]["exitCode"], 0);
    assert_eq!(inspect(&echo)["status"]["reason"], "Completed");

    let local_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // (The web container was stopped above: the client container serves this one.)
    server.ok(&[
        "exec",
        "-s",
        &client,
        "sh",
        "-c",
        "mkdir -p /srv/pf && echo \"$GREETING\" > /srv/pf/index.html && httpd -p 8081 -h /srv/pf",
    ]);
    let reply = server.port_forward(&pod, local_port, 8081, b"GET / HTTP/1.0\r\n\r\n");
    assert!(reply.ends_with("hello from cri\n"), "{reply}");

    // A container whose children hold its output: when its main process is killed, they go
    // with it (its cgroup), so the stop completes. Before, the exit waited for them and the
    // stop failed ("did not exit after SIGKILL"), as for nginx's workers.
    let holder = create("holder", "sleep 600 & exec sleep 600");
    server.ok(&["start", &holder]);
    server.ok(&["stop", "--timeout", "0", &holder]);
    let held = inspect(&holder);
    assert_eq!(held["status"]["state"], "CONTAINER_EXITED", "{held}");
    assert_eq!(held["status"]["exitCode"], 137, "{held}");
    server.ok(&["rm", &holder]);

    let volumes = kubelet_mounts(&env, &server, &pod, &pod_config);

    // Stopping the pod stops its containers; removing it removes them.
    server.ok(&["stopp", &pod]);
    assert_eq!(inspect(&client)["status"]["state"], "CONTAINER_EXITED");
    server.ok(&["rmp", &pod]);
    let all = json(&server.ok(&["ps", "-a", "-o", "json"]));
    assert!(all["containers"].as_array().unwrap().is_empty(), "{all}");
    // Removing the pod unmounted the host paths and left their files to the host.
    assert_eq!(
        std::fs::read_to_string(volumes.join("empty-dir/from-writer")).unwrap(),
        "written in the pod\n"
    );
    assert!(volumes.join("token/..data/token").is_file());
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let home = env.path("");
    assert!(
        !table.contains(home.to_str().unwrap().trim_end_matches('/')),
        "mounts left under the test's home:\n{table}"
    );
    let audit = env.run(&["audit", "--action", "container.*", "--format", "json"]);
    for action in [
        "container.create",
        "container.start",
        "container.exec",
        "container.stop",
    ] {
        assert!(audit.stdout.contains(action), "{action}: {}", audit.stdout);
    }
}

/// What kubelet mounts into every container (its `/etc/hosts`, termination log and
/// service-account token, a projected volume of `..data` symlinks), plus an emptyDir that
/// two containers of the pod share: through the pod's share into the running pod VM.
/// Returns the host directory holding them (they outlive the pod).
fn kubelet_mounts(
    env: &TestEnv,
    server: &CriServer,
    pod: &str,
    pod_config: &std::path::Path,
) -> PathBuf {
    let host = env.path("kubelet-pod");
    let token = host.join("token");
    let data = token.join("..2026_12_05_00_00_00.1");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("token"), "first-token").unwrap();
    std::os::unix::fs::symlink("..2026_12_05_00_00_00.1", token.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/token", token.join("token")).unwrap();
    std::fs::write(host.join("etc-hosts"), "10.1.2.3\tkubelet-managed-host\n").unwrap();
    std::fs::write(host.join("termination-log"), "").unwrap();
    std::fs::create_dir_all(host.join("empty-dir")).unwrap();
    let path = |p: &str| host.join(p).to_str().unwrap().to_owned();
    let create = |name: &str, script: &str, mounts: serde_json::Value| {
        let c = env.path(&format!("{name}.json"));
        let config = serde_json::json!({
            "metadata": {"name": name},
            "image": {"image": "busybox"},
            "command": ["sh", "-c", script],
            "mounts": mounts,
        });
        std::fs::write(&c, config.to_string()).unwrap();
        server.crictl(&[
            "create",
            "--no-pull",
            pod,
            c.to_str().unwrap(),
            pod_config.to_str().unwrap(),
        ])
    };
    let kubelet = serde_json::json!([
        {"host_path": path("etc-hosts"), "container_path": "/etc/hosts"},
        {"host_path": path("termination-log"), "container_path": "/dev/termination-log"},
        {"host_path": path("token"),
         "container_path": "/var/run/secrets/kubernetes.io/serviceaccount", "readonly": true},
        {"host_path": path("empty-dir"), "container_path": "/cache"},
    ]);
    let writer = create(
        "writer",
        "echo written in the pod > /cache/from-writer; echo bye > /dev/termination-log; \
         exec sleep 2147483647",
        kubelet.clone(),
    );
    assert_eq!(writer.code, 0, "{}", writer.stderr);
    let writer = writer.stdout.trim().to_owned();
    let reader = create("reader", "exec sleep 2147483647", kubelet);
    assert_eq!(reader.code, 0, "{}", reader.stderr);
    let reader = reader.stdout.trim().to_owned();
    let inspected = json(&server.ok(&["inspect", "-o", "json", &writer]));
    let mounts = inspected["status"]["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 4, "{inspected}");
    assert_eq!(mounts[2]["readonly"], true, "{inspected}");
    server.ok(&["start", &writer]);
    server.ok(&["start", &reader]);

    let sh = |id: &str, script: &str| server.crictl(&["exec", "-s", id, "sh", "-c", script]);
    // The emptyDir is one directory for the pod: the reader sees the writer's file, and so
    // does the host.
    let shared = sh(
        &reader,
        "until [ -s /cache/from-writer ]; do sleep 0.2; done; cat /cache/from-writer",
    );
    assert_eq!(
        shared.stdout.trim_end(),
        "written in the pod",
        "{}",
        shared.stderr
    );
    assert_eq!(
        std::fs::read_to_string(host.join("empty-dir/from-writer")).unwrap(),
        "written in the pod\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("termination-log")).unwrap(),
        "bye\n",
        "kubelet reads the termination message from the host"
    );
    // kubelet's /etc/hosts replaces the pod's.
    let hosts = sh(&reader, "cat /etc/hosts");
    assert_eq!(hosts.stdout.trim_end(), "10.1.2.3\tkubelet-managed-host");
    // The token: read through the projected volume's symlinks; read-only in the container.
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(
        sh(&reader, &format!("cat {sa}/token")).stdout.trim_end(),
        "first-token"
    );
    let write = sh(&reader, &format!("echo forged > {sa}/token"));
    assert_ne!(write.code, 0, "a read-only mount took a write");
    assert!(
        write.stderr.contains("Read-only file system"),
        "{}",
        write.stderr
    );
    // kubelet renews the token by swapping `..data`: the running container sees the new one.
    let next = token.join("..2026_12_05_01_00_00.2");
    std::fs::create_dir(&next).unwrap();
    std::fs::write(next.join("token"), "renewed-token").unwrap();
    std::os::unix::fs::symlink("..2026_12_05_01_00_00.2", token.join("..data_tmp")).unwrap();
    std::fs::rename(token.join("..data_tmp"), token.join("..data")).unwrap();
    let renewed = sh(
        &reader,
        &format!("until grep -q renewed {sa}/token; do sleep 0.2; done; cat {sa}/token"),
    );
    assert_eq!(
        renewed.stdout.trim_end(),
        "renewed-token",
        "{}",
        renewed.stderr
    );

    // A host path that does not exist fails CreateContainer, naming it (CRI says so).
    let missing = create(
        "missing",
        "true",
        serde_json::json!([{"host_path": path("nowhere"), "container_path": "/x"}]),
    );
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("nowhere") && missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
    assert!(!host.join("nowhere").exists());
    // Propagation a VM cannot give is refused by name.
    let bidirectional = create(
        "bidirectional",
        "true",
        serde_json::json!([{"host_path": path("empty-dir"), "container_path": "/x",
                            "propagation": 2}]),
    );
    assert_ne!(bidirectional.code, 0);
    assert!(
        bidirectional.stderr.contains("PROPAGATION_BIDIRECTIONAL"),
        "{}",
        bidirectional.stderr
    );

    // Removing a container unmounts its host paths only: the other still reads them.
    server.ok(&["stop", "--timeout", "0", &writer]);
    server.ok(&["rm", &writer]);
    assert_eq!(
        sh(&reader, "cat /cache/from-writer").stdout.trim_end(),
        "written in the pod"
    );
    host
}
