//! Pod networking through CNI (issue 16): the real `a3s-box cri serve`, driven by the real
//! `crictl`, with Debian's real CNI plugins (bridge, host-local, portmap, loopback) and a
//! configuration written for each test. Everything runs inside a network namespace the test
//! creates (a "lab"): the server, its bridge, the pods' veths and portmap's iptables rules
//! live there, so nothing touches the host's network and the lab's deletion removes it all.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{Run, TestEnv};

/// `crictl`, which scripts/setup installs; a missing one fails the test.
fn crictl_exe() -> PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("crictl"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("crictl is not installed: run scripts/setup (it installs cri-tools' crictl)")
        })
}

/// The CNI plugin directory (Debian's containernetworking-plugins, which scripts/setup
/// installs); a missing one fails the test.
const CNI_BIN: &str = "/usr/lib/cni";

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n.div_ceil(2)];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect::<String>()[..n].to_owned()
}

fn output(c: &mut Command) -> Run {
    let out = c.output().expect("running a command");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A network namespace of the test's own, deleted on drop.
struct Lab {
    ns: String,
}

impl Lab {
    fn new() -> Self {
        for plugin in ["bridge", "host-local", "portmap", "loopback"] {
            assert!(
                Path::new(CNI_BIN).join(plugin).is_file(),
                "{CNI_BIN}/{plugin} is missing: run scripts/setup (containernetworking-plugins)"
            );
        }
        let ns = format!("a3s-cni-{}", random_hex(8));
        let r = output(Command::new("ip").args(["netns", "add", &ns]));
        assert_eq!(
            r.code, 0,
            "ip netns add (the CNI tests need root): {}",
            r.stderr
        );
        let lab = Self { ns };
        lab.ok(&["ip", "link", "set", "lo", "up"]);
        lab
    }

    /// `argv` inside the lab.
    fn sh(&self, argv: &[&str]) -> Run {
        output(
            Command::new("ip")
                .args(["netns", "exec", &self.ns])
                .args(argv),
        )
    }

    fn ok(&self, argv: &[&str]) -> Run {
        let r = self.sh(argv);
        assert_eq!(r.code, 0, "{argv:?}: {}{}", r.stdout, r.stderr);
        r
    }

    /// An HTTP GET from the lab (the "host" of the pods).
    fn get(&self, url: &str) -> String {
        self.ok(&["curl", "-sS", "--max-time", "60", url]).stdout
    }

    /// The veth devices on the lab's side (one per attached pod).
    fn veths(&self) -> usize {
        self.ok(&["ip", "-o", "link", "show", "type", "veth"])
            .stdout
            .lines()
            .count()
    }

    /// portmap's per-pod NAT chains.
    fn pod_chains(&self) -> Vec<String> {
        self.ok(&["iptables", "-t", "nat", "-S"])
            .stdout
            .lines()
            .filter(|l| l.starts_with("-N CNI-DN-"))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A CNI configuration directory: bridge, host-local (its own subnets and lease directory),
/// portmap and loopback, as a node's conflist; IPv4 `10.233.N.0/24` and, for a dual-stack or
/// IPv6-only network, IPv6 `fd00:a3:N::/64`.
struct CniConf {
    dir: tempfile::TempDir,
    bridge: String,
    name: String,
    /// host-local's lease directory for this network.
    leases: PathBuf,
}

impl CniConf {
    fn new(env: &TestEnv, subnet_octet: u8) -> Self {
        Self::with_families(env, subnet_octet, true, false)
    }

    fn dual_stack(env: &TestEnv, subnet_octet: u8) -> Self {
        Self::with_families(env, subnet_octet, true, true)
    }

    fn ipv6_only(env: &TestEnv, subnet_octet: u8) -> Self {
        Self::with_families(env, subnet_octet, false, true)
    }

    fn with_families(env: &TestEnv, subnet_octet: u8, ipv4: bool, ipv6: bool) -> Self {
        let (mut ranges, mut routes) = (Vec::new(), Vec::new());
        if ipv4 {
            ranges.push(serde_json::json!([{"subnet": format!("10.233.{subnet_octet}.0/24")}]));
            routes.push(serde_json::json!({"dst": "0.0.0.0/0"}));
        }
        if ipv6 {
            ranges.push(serde_json::json!([{"subnet": format!("fd00:a3:{subnet_octet}::/64")}]));
            routes.push(serde_json::json!({"dst": "::/0"}));
        }
        let dir = tempfile::tempdir_in(env.home.path()).unwrap();
        let tag = random_hex(6);
        let bridge = format!("a3scni{tag}");
        let name = format!("a3s-e2e-{tag}");
        let data = dir.path().join("ipam");
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": ranges,
                        "routes": routes,
                        "dataDir": data,
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "loopback"}
            ]
        });
        let c = Self {
            leases: data.join(&name),
            dir,
            bridge,
            name,
        };
        c.write("10-a3s.conflist", &conf.to_string());
        c
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.dir.path().join(file), text).unwrap();
    }

    /// Addresses host-local has handed out and not released.
    fn leased(&self) -> Vec<String> {
        std::fs::read_dir(&self.leases)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `a3s-box cri serve` inside the lab, with the test's CNI configuration; on drop every pod
/// is removed (releasing what CNI allocated) and the server stopped.
struct Server {
    child: Child,
    socket: PathBuf,
    /// Remove every pod on drop (not when the test restarts the server on purpose).
    cleanup: bool,
}

impl Server {
    fn start(env: &TestEnv, lab: &Lab, conf: &CniConf) -> Self {
        let socket = env.path("cri-cni.sock");
        // nsenter enters the lab's network namespace only; `ip netns exec` would also give the
        // server a mount namespace of its own, hiding the pods' namespace mounts from the test.
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.ns))
            .args(["--", env!("CARGO_BIN_EXE_a3s-box")])
            .args(["cri", "serve", "--listen"])
            .arg(format!("unix://{}", socket.display()))
            .arg("--cni-conf-dir")
            .arg(conf.dir.path())
            .args(["--cni-bin-dir", CNI_BIN])
            .env("A3S_HOME", env.home.path())
            .env_remove("A3S_BOX_ACCEL")
            .env_remove("A3S_KDS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning a3s-box cri serve");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert!(line.starts_with("CRI listening on unix://"), "{line:?}");
        std::thread::spawn(move || {
            let mut rest = String::new();
            while stderr.read_line(&mut rest).is_ok_and(|n| n > 0) {
                eprint!("cri serve: {rest}");
                rest.clear();
            }
        });
        Self {
            child,
            socket,
            cleanup: true,
        }
    }

    /// Kills the server outright (as a crash would) and starts a new one on the same home.
    fn restart(mut self, env: &TestEnv, lab: &Lab, conf: &CniConf) -> Self {
        self.cleanup = false;
        drop(self);
        Self::start(env, lab, conf)
    }

    fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn crictl(&self, args: &[&str]) -> Run {
        output(
            Command::new(crictl_exe())
                .args(["--runtime-endpoint", &self.endpoint()])
                .args(["--image-endpoint", &self.endpoint()])
                .args(["--timeout", "180s"])
                .args(args)
                .stdin(Stdio::null()),
        )
    }

    fn ok(&self, args: &[&str]) -> Run {
        let r = self.crictl(args);
        assert_eq!(r.code, 0, "crictl {args:?}\n{}\n{}", r.stdout, r.stderr);
        r
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let r = self.ok(args);
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
    }

    fn network_ready(&self) -> (bool, String) {
        let info = self.json(&["info", "-o", "json"]);
        let c = info["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "NetworkReady")
            .unwrap_or_else(|| panic!("no NetworkReady in {info}"))
            .clone();
        (
            c["status"].as_bool().unwrap(),
            c["message"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// A pod from `config` (JSON); its id and IP as `inspectp` reports them.
    fn run_pod(&self, env: &TestEnv, name: &str, config: &serde_json::Value) -> (String, String) {
        let path = env.path(&format!("{name}-pod.json"));
        std::fs::write(&path, config.to_string()).unwrap();
        let id = self
            .ok(&["runp", path.to_str().unwrap()])
            .stdout
            .trim()
            .to_owned();
        let st = self.json(&["inspectp", "-o", "json", &id]);
        assert_eq!(st["status"]["state"], "SANDBOX_READY", "{st}");
        let ip = st["status"]["network"]["ip"].as_str().unwrap().to_owned();
        (id, ip)
    }

    /// The pod's IPv6 address (its first additional IP, as `inspectp` reports it).
    fn ipv6_of(&self, pod: &str) -> String {
        let st = self.json(&["inspectp", "-o", "json", pod]);
        let ip = st["status"]["network"]["additionalIps"][0]["ip"]
            .as_str()
            .unwrap_or_else(|| panic!("no additional IP in {st}"))
            .to_owned();
        assert!(ip.parse::<std::net::Ipv6Addr>().is_ok(), "{ip} is not IPv6");
        ip
    }

    /// A started busybox container running `script` in pod `pod` (config at `pod_config`).
    fn run_container(&self, env: &TestEnv, pod: &str, name: &str, script: &str) -> String {
        let pod_config = env.path(&format!("{name}-pod-of.json"));
        std::fs::write(
            &pod_config,
            serde_json::json!({"metadata": {"name": name, "namespace": "default", "uid": name}})
                .to_string(),
        )
        .unwrap();
        let config = env.path(&format!("{name}-ctr.json"));
        std::fs::write(
            &config,
            serde_json::json!({
                "metadata": {"name": name},
                "image": {"image": "busybox"},
                "command": ["sh", "-c", script],
            })
            .to_string(),
        )
        .unwrap();
        let id = self
            .ok(&[
                "create",
                "--no-pull",
                pod,
                config.to_str().unwrap(),
                pod_config.to_str().unwrap(),
            ])
            .stdout
            .trim()
            .to_owned();
        self.ok(&["start", &id]);
        id
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.cleanup {
            let _ = self.crictl(&["rmp", "--all", "--force"]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn netns_of(pod: &str) -> PathBuf {
    Path::new("/run/netns").join(format!("a3s-pod-{}", &pod[..16]))
}

/// Whether `ip` is inside `10.233.N.0/24`.
fn in_subnet(ip: &str, octet: u8) -> bool {
    ip.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|a| a.octets()[..3] == [10, 233, octet])
}

#[test]
fn cni_pods_get_addresses_serve_the_host_and_each_other_and_release_everything() {
    let env = TestEnv::new();
    let lab = Lab::new();
    // Dual-stack: the pods' NICs take an IPv4 and an IPv6 address.
    let conf = CniConf::dual_stack(&env, 41);
    let server = Server::start(&env, &lab, &conf);
    let (ready, why) = server.network_ready();
    assert!(ready, "NetworkReady with a valid configuration: {why}");

    // Pod A: a web server, a host port, the pod's DNS config.
    let host_port = "18080";
    let (a, ip_a) = server.run_pod(
        &env,
        "web",
        &serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u-web", "attempt": 0},
            "hostname": "web-0",
            "dns_config": {"servers": ["10.233.41.53"], "searches": ["svc.a3s.test"], "options": ["ndots:3"]},
            "port_mappings": [{"protocol": 0, "container_port": 8080, "host_port": 18080}],
        }),
    );
    assert!(
        in_subnet(&ip_a, 41),
        "pod IP {ip_a} is not in 10.233.41.0/24"
    );
    assert!(netns_of(&a).exists(), "the pod's namespace exists");
    let ip6_a = server.ipv6_of(&a);
    assert!(
        ip6_a.starts_with("fd00:a3:41::"),
        "pod IPv6 {ip6_a} is not in fd00:a3:41::/64"
    );
    assert_eq!(
        sorted(conf.leased()),
        sorted(vec![ip_a.clone(), ip6_a.clone()]),
        "host-local leased the pod's IPs"
    );
    let web = server.run_container(
        &env,
        &a,
        "web",
        "mkdir -p /www && echo served-by-pod-web > /www/index.html && exec httpd -f -p 8080 -h /www",
    );

    // The guest NIC has the CNI address, the veth's MAC and the default route via the
    // bridge; DNS config reached /etc/resolv.conf.
    let inside = server.ok(&[
        "exec",
        "-s",
        &web,
        "sh",
        "-c",
        "ip -o -4 addr show eth0; ip route; ip -o -6 addr show dev eth0 scope global; ip -6 route; \
         cat /sys/class/net/eth0/address; cat /etc/resolv.conf",
    ]);
    assert!(
        inside.stdout.contains(&format!("inet {ip_a}/24")),
        "{}",
        inside.stdout
    );
    assert!(
        inside.stdout.contains("default via 10.233.41.1 dev eth0"),
        "{}",
        inside.stdout
    );
    // IPv6: the address usable at once (no duplicate address detection holding it
    // tentative) and the default route via the bridge's IPv6 address.
    assert!(
        inside.stdout.contains(&format!("inet6 {ip6_a}/64")),
        "{}",
        inside.stdout
    );
    assert!(!inside.stdout.contains("tentative"), "{}", inside.stdout);
    assert!(
        inside.stdout.contains("default via fd00:a3:41::1 dev eth0"),
        "{}",
        inside.stdout
    );
    let pod_ns = netns_of(&a);
    let veth_mac = output(Command::new("ip").args([
        "netns",
        "exec",
        pod_ns.file_name().unwrap().to_str().unwrap(),
        "cat",
        "/sys/class/net/eth0/address",
    ]));
    assert_eq!(veth_mac.code, 0, "{}", veth_mac.stderr);
    let guest_mac = inside
        .stdout
        .lines()
        .find(|l| l.len() == 17 && l.matches(':').count() == 5)
        .unwrap_or_else(|| panic!("no MAC in {}", inside.stdout));
    assert_eq!(
        veth_mac.stdout.trim(),
        guest_mac,
        "the guest NIC has the pod veth's MAC"
    );
    // The pod VM started from a saved VM: its NIC had the template's MAC until the guest
    // took the veth's (above).
    let boot = env
        .run(&["inspect", &format!("k8s-pod-{}", &a[..12])])
        .json()[0]["boot"]
        .clone();
    assert_eq!(boot["restored"], true, "{boot}");
    for line in [
        "nameserver 10.233.41.53",
        "search svc.a3s.test",
        "options ndots:3",
    ] {
        assert!(inside.stdout.contains(line), "{line}: {}", inside.stdout);
    }

    // The host reaches the container on the pod IP and through the host port (portmap).
    assert_eq!(
        lab.get(&format!("http://{ip_a}:8080/")).trim(),
        "served-by-pod-web"
    );
    assert_eq!(
        lab.get(&format!("http://127.0.0.1:{host_port}/")).trim(),
        "served-by-pod-web"
    );
    assert_eq!(
        lab.ok(&[
            "curl",
            "-gsS",
            "--max-time",
            "60",
            &format!("http://[{ip6_a}]:8080/")
        ])
        .stdout
        .trim(),
        "served-by-pod-web",
        "the host reaches the pod over IPv6"
    );
    // The hostPort (no host IP given) is published on the node's IPv6 addresses too.
    assert_eq!(
        lab.ok(&[
            "curl",
            "-gsS",
            "--max-time",
            "60",
            &format!("http://[fd00:a3:41::1]:{host_port}/")
        ])
        .stdout
        .trim(),
        "served-by-pod-web",
        "the hostPort over IPv6"
    );
    assert!(!lab.pod_chains().is_empty(), "portmap's chains for pod A");

    // Pod B reaches pod A by pod IP.
    let (b, ip_b) = server.run_pod(
        &env,
        "client",
        &serde_json::json!({
            "metadata": {"name": "client", "namespace": "default", "uid": "u-client", "attempt": 0},
        }),
    );
    assert!(in_subnet(&ip_b, 41) && ip_b != ip_a, "{ip_b} vs {ip_a}");
    let client = server.run_container(&env, &b, "client", "exec sleep 2147483647");
    let fetched = server.ok(&[
        "exec",
        "-s",
        &client,
        "wget",
        "-qO-",
        &format!("http://{ip_a}:8080/"),
    ]);
    assert_eq!(fetched.stdout.trim(), "served-by-pod-web");
    let fetched6 = server.ok(&[
        "exec",
        "-s",
        &client,
        "wget",
        "-qO-",
        &format!("http://[{ip6_a}]:8080/"),
    ]);
    assert_eq!(
        fetched6.stdout.trim(),
        "served-by-pod-web",
        "pod to pod over IPv6"
    );
    let ip6_b = server.ipv6_of(&b);
    assert_eq!(lab.veths(), 2, "one veth per pod");

    // StopPodSandbox releases the address (CNI DEL): lease, veth and portmap chains go; the
    // namespace stays until RemovePodSandbox. A second stop is fine.
    server.ok(&["stopp", &a]);
    assert_eq!(
        sorted(conf.leased()),
        sorted(vec![ip_b.clone(), ip6_b]),
        "A's leases are released"
    );
    assert_eq!(lab.veths(), 1, "A's veth is gone");
    assert!(lab.pod_chains().is_empty(), "{:?}", lab.pod_chains());
    let st = server.json(&["inspectp", "-o", "json", &a]);
    assert_eq!(st["status"]["state"], "SANDBOX_NOTREADY", "{st}");
    assert_eq!(st["status"]["network"]["ip"], "", "a stopped pod has no IP");
    assert!(netns_of(&a).exists(), "the namespace lives until rmp");
    server.ok(&["stopp", &a]);
    server.ok(&["rmp", &a]);
    assert!(!netns_of(&a).exists(), "rmp removed A's namespace");

    // A restarted server still releases what an earlier one allocated (the pod record keeps
    // the configuration and result), and RemovePodSandbox without a stop first releases
    // everything too.
    let server = server.restart(&env, &lab, &conf);
    server.ok(&["rmp", "--force", &b]);
    assert!(conf.leased().is_empty(), "{:?}", conf.leased());
    assert_eq!(lab.veths(), 0);
    assert!(!netns_of(&b).exists());
    // The bridge stays (the plugin's, shared by the node's pods), as with containerd.
    assert_eq!(lab.sh(&["ip", "link", "show", &conf.bridge]).code, 0);
    // Audited like every pod.
    let audit = env.run(&["audit", "--action", "pod.stop", "--format", "json"]);
    assert!(audit.stdout.contains(&a), "{}", audit.stdout);
}

#[test]
fn an_ipv6_only_pod_takes_its_address_and_route_and_serves_over_ipv6() {
    let env = TestEnv::new();
    let lab = Lab::new();
    let conf = CniConf::ipv6_only(&env, 44);
    let server = Server::start(&env, &lab, &conf);
    let (pod, ip) = server.run_pod(
        &env,
        "v6",
        &serde_json::json!({"metadata": {"name": "v6", "namespace": "default", "uid": "u-v6"}}),
    );
    assert!(
        ip.parse::<std::net::Ipv6Addr>().is_ok() && ip.starts_with("fd00:a3:44::"),
        "the pod IP of an IPv6-only pod: {ip}"
    );
    let web = server.run_container(
        &env,
        &pod,
        "v6",
        "mkdir -p /www && echo served-over-ipv6 > /www/index.html && exec httpd -f -p 8080 -h /www",
    );
    let inside = server.ok(&[
        "exec",
        "-s",
        &web,
        "sh",
        "-c",
        "ip -o addr show dev eth0; ip -6 route",
    ]);
    assert!(
        inside.stdout.contains(&format!("inet6 {ip}/64")),
        "{}",
        inside.stdout
    );
    assert!(
        !inside.stdout.contains("inet "),
        "no IPv4 address: {}",
        inside.stdout
    );
    assert!(
        inside.stdout.contains("default via fd00:a3:44::1 dev eth0"),
        "{}",
        inside.stdout
    );
    assert_eq!(
        lab.ok(&[
            "curl",
            "-gsS",
            "--max-time",
            "60",
            &format!("http://[{ip}]:8080/")
        ])
        .stdout
        .trim(),
        "served-over-ipv6"
    );
    server.ok(&["rmp", "--force", &pod]);
    assert!(conf.leased().is_empty(), "{:?}", conf.leased());
}

#[test]
fn a_missing_cni_plugin_fails_runp_naming_it_and_leaves_nothing_behind() {
    let env = TestEnv::new();
    let lab = Lab::new();
    let conf = CniConf::new(&env, 42);
    // bridge + host-local run (and allocate) before the missing plugin fails the chain.
    conf.write(
        "10-a3s.conflist",
        &serde_json::json!({
            "cniVersion": "1.0.0",
            "name": conf.name,
            "plugins": [
                {
                    "type": "bridge", "bridge": conf.bridge, "isGateway": true,
                    "ipam": {"type": "host-local", "subnet": "10.233.42.0/24",
                             "dataDir": conf.leases.parent().unwrap()}
                },
                {"type": "a3s-no-such-plugin"}
            ]
        })
        .to_string(),
    );
    let server = Server::start(&env, &lab, &conf);
    // The configuration itself is valid: the node is network-ready.
    assert!(server.network_ready().0);
    let pod = env.path("broken-pod.json");
    std::fs::write(
        &pod,
        r#"{"metadata":{"name":"broken","namespace":"default","uid":"u-broken","attempt":0}}"#,
    )
    .unwrap();
    let r = server.crictl(&["runp", pod.to_str().unwrap()]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("a3s-no-such-plugin") && r.stderr.contains("not found"),
        "the plugin is named: {}",
        r.stderr
    );
    // Nothing left: no pod, no box, no lease, no veth, no namespace.
    let pods = server.json(&["pods", "-o", "json"]);
    assert_eq!(pods["items"].as_array().map_or(0, Vec::len), 0, "{pods}");
    let boxes = env.run(&["ps", "-a", "-q"]);
    assert_eq!(boxes.stdout.trim(), "", "no box is left");
    assert!(conf.leased().is_empty(), "{:?}", conf.leased());
    assert_eq!(lab.veths(), 0);
    let audit = env
        .run(&["audit", "--action", "pod.run", "--format", "json"])
        .json();
    let failed = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["outcome"] == "failure")
        .unwrap_or_else(|| panic!("no failed pod.run in {audit}"));
    assert!(
        failed["message"]
            .as_str()
            .is_some_and(|m| m.contains("a3s-no-such-plugin")),
        "{failed}"
    );
    let id = failed["metadata"]["pod"].as_str().unwrap();
    assert!(!netns_of(id).exists(), "the pod's namespace is removed");

    // A configuration that is not valid makes the node not network-ready, naming the file;
    // no configuration at all: user networking (the no-CNI path), said so.
    conf.write("05-bad.conflist", "{ not json");
    let (ready, why) = server.network_ready();
    assert!(!ready && why.contains("05-bad.conflist"), "{why}");
    std::fs::remove_file(conf.dir.path().join("05-bad.conflist")).unwrap();
    std::fs::remove_file(conf.dir.path().join("10-a3s.conflist")).unwrap();
    let (ready, why) = server.network_ready();
    assert!(!ready && why.contains("user networking"), "{why}");
}

/// The test registry on the host's loopback made reachable at the same address inside the
/// lab (tests/e2e/netns_relay.py), so `cri serve` in the lab pulls from it.
struct Relay {
    child: Child,
}

impl Relay {
    fn start(lab: &Lab, port: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/netns_relay.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([&lab.ns, port])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting tests/e2e/netns_relay.py (python3)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the relay did not start");
        Self { child }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// critest's specs that read the CNI side, run from inside the lab against a server with a
/// CNI configuration: runtime conditions (NetworkReady) and every Networking spec (DNS config,
/// hostname, port mapping by pod IP and by host port), with test images built here (busybox
/// applets; busybox httpd as the web server) and served by a local registry.
#[test]
fn critest_runtime_conditions_and_networking_specs_pass_with_cni() {
    use crate::image::registry::{build_image, run_ok, LocalRegistry};
    let critest = crictl_exe().with_file_name("critest");
    assert!(
        critest.is_file(),
        "critest is not installed next to crictl: run scripts/setup"
    );
    let reg = LocalRegistry::start();
    let applets = |root: &Path| {
        for a in ["top", "cat", "hostname", "sleep", "ls", "echo", "httpd"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        std::fs::write(root.join("srv/index.html"), "critest web server\n").unwrap();
        // critest's containers run as the image's default user, root.
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    };
    let image = build_image("v1", &[&applets]);
    let tagged = format!("{}:v1", image.path().display());
    run_ok(Command::new("umoci").args(["config", "--image", &tagged, "--config.env", "PATH=/bin"]));
    reg.push_layout(&image.path(), "v1", "a3s-critest/busybox:1");
    run_ok(Command::new("umoci").args([
        "config",
        "--image",
        &tagged,
        "--clear=config.entrypoint",
        "--config.entrypoint",
        "/bin/busybox",
        "--config.entrypoint",
        "httpd",
        "--config.entrypoint",
        "-f",
        "--config.entrypoint",
        "-p",
        "--config.entrypoint",
        "80",
        "--config.entrypoint",
        "-h",
        "--config.entrypoint",
        "/srv",
    ]));
    reg.push_layout(&image.path(), "v1", "a3s-critest/web:1");

    let env = TestEnv::new();
    let lab = Lab::new();
    let port = reg.addr.rsplit(':').next().unwrap().to_owned();
    let _relay = Relay::start(&lab, &port);
    let conf = CniConf::new(&env, 43);
    let server = Server::start(&env, &lab, &conf);
    let images = env.path("critest-images.yaml");
    std::fs::write(
        &images,
        format!(
            "defaultTestContainerImage: {0}/a3s-critest/busybox:1\n\
             webServerTestImage: {0}/a3s-critest/web:1\n",
            reg.addr
        ),
    )
    .unwrap();
    let out = output(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns])
            .arg(&critest)
            .args(["--runtime-endpoint", &server.endpoint()])
            .args(["--image-endpoint", &server.endpoint()])
            .arg(format!("--test-images-file={}", images.display()))
            // The portforward conformance spec first checks the web server at the pod IP,
            // which only CNI gives (the shared server runs it skipped).
            .arg(
                "--ginkgo.focus=runtime should return runtime conditions|Networking|\
                 runtime should support portforward \\[Conformance\\]",
            )
            .arg("--ginkgo.no-color")
            .current_dir(env.home.path())
            .stdin(Stdio::null()),
    );
    let summary = out
        .stdout
        .lines()
        .filter(|l| l.contains("Passed") && l.contains("Failed"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("critest (CNI): {summary}");
    assert_eq!(
        out.code, 0,
        "critest failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    assert!(summary.contains("6 Passed | 0 Failed"), "{summary}");
    // The specs removed their pods: nothing of them is left in the lab.
    assert!(conf.leased().is_empty(), "{:?}", conf.leased());
    assert_eq!(lab.veths(), 0);
}

/// `a3s-box kbs serve` on the lab's loopback (the node's, to its pods), stopped on drop.
struct LabKbs(crate::tee::Kbs);

impl LabKbs {
    /// A KBS holding `default/app/token` for pod VMs that measure `measurement`.
    fn start(env: &TestEnv, lab: &Lab, measurement: &str) -> Self {
        let me = Self(crate::tee::kbs_serve(
            Self::in_lab(env, lab),
            &env.path("cni-pods.db"),
        ));
        let secret = crate::support::write_file(
            env.home.path(),
            "cni-pod-secret.txt",
            crate::cri_tee::POD_SECRET.as_bytes(),
        );
        let reference = format!("[\"{measurement}\"]");
        let resource = [
            "resource",
            "set",
            "--url",
            &me.0.url,
            "default/app/token",
            "--file",
        ];
        let value = [
            "reference-value",
            "set",
            "--url",
            &me.0.url,
            "snp_launch_measurement",
        ];
        for args in [
            [&resource[..], &[secret.as_str()]],
            [&value[..], &[reference.as_str()]],
        ] {
            let r = output(Self::in_lab(env, lab).arg("kbs").args(args.concat()));
            assert_eq!(r.code, 0, "kbs {args:?}: {}{}", r.stdout, r.stderr);
        }
        me
    }

    /// `a3s-box` in the lab's network namespace, on the test's home.
    fn in_lab(env: &TestEnv, lab: &Lab) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", lab.ns))
            .args(["--", env!("CARGO_BIN_EXE_a3s-box")])
            .env("A3S_HOME", env.home.path())
            .stdin(Stdio::null());
        c
    }
}

/// A confidential pod (simulated) on a CNI node whose KBS is on the node's loopback: the pod
/// VM's network is the pod's CNI network, so the monitor relays the KBS on the CNI gateway
/// (as for a box on a bridge network); the pod attests, gets its secret before RunPodSandbox
/// returns, and its container reads it.
#[test]
fn a_confidential_pod_on_cni_reaches_a_node_loopback_kbs_through_its_gateway() {
    crate::support::build_guest_init();
    let env = TestEnv::new();
    let lab = Lab::new();
    let digest = crate::cri_tee::busybox_digest(&env);
    let kbs = LabKbs::start(
        &env,
        &lab,
        &crate::cri_tee::pod_measurement_on(&env, &digest, "none"),
    );
    let conf = CniConf::new(&env, 45);
    let server = Server::start(&env, &lab, &conf);
    let pod_json = crate::cri_tee::pod_config(
        &env,
        "cni-vault",
        &serde_json::json!({
            "io.a3s.box/kbs": kbs.0.url,
            "io.a3s.box/secrets": "token=kbs:///default/app/token",
            "io.a3s.box/images": digest,
        }),
    );
    let pod_path = pod_json.to_str().unwrap();
    let pod = server
        .ok(&["runp", "--runtime", "a3s-simulate", pod_path])
        .stdout
        .trim()
        .to_owned();
    let status = server.json(&["inspectp", "-o", "json", &pod]);
    let ip = status["status"]["network"]["ip"]
        .as_str()
        .unwrap_or_default();
    assert!(ip.starts_with("10.233.45."), "the CNI address: {status}");
    let c = crate::cri_tee::container_config(
        &env,
        "reader",
        "busybox",
        "sha256sum /run/secrets/token; echo reader-done; exec sleep 2147483647",
    );
    let reader = server
        .ok(&["create", "--no-pull", &pod, c.to_str().unwrap(), pod_path])
        .stdout
        .trim()
        .to_owned();
    server.ok(&["start", &reader]);
    crate::cri_tee::reader_logs(|| server.ok(&["logs", &reader]).stdout);
    // The relay listened on the CNI gateway.
    let audit = std::fs::read_to_string(env.path("audit/audit.jsonl")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("tee.kbs_relay") && l.contains("10.233.45.1:")),
        "no relay on the CNI gateway in the audit log"
    );
    server.ok(&["stopp", &pod]);
    server.ok(&["rmp", &pod]);
}
