//! Bridge networks end to end (issue 9). SAFETY: every test runs its bridge, TAP devices and
//! `a3s-box` processes (hence the VMs) inside its own network namespace (`a3s-test-<random>`),
//! removed by a drop guard, so test traffic only ever flows between the test's own VMs and the
//! namespace's end of the bridge. Nothing is sent to any other address.
//!
//! VM boots: 3 (peers by name, a late peer with an alias and published ports; plus 1
//! restart) + 2 (strict) + 2 (custom) + 3 (a box on two networks; plus 1 restart) + 1 (a TEE
//! box on a bridge with a loopback KBS) = 13.

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::{Run, TestEnv};

/// One A3S home shared by the tests (the kernel and busybox are unpacked once).
pub(crate) fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        crate::support::build_guest_init();
        let env = TestEnv::new();
        let c = env.run(&["create", "--name", "bridge-warm", "busybox", "true"]);
        assert_eq!(c.code, 0, "{}", c.stderr);
        env.run(&["rm", "bridge-warm"]);
        env
    })
}

/// A private network namespace; on drop, this test's boxes are removed (their VMs and TAPs
/// live in the namespace) and the namespace is deleted.
pub(crate) struct Lab {
    ns: String,
    boxes: std::sync::Mutex<Vec<String>>,
}

impl Lab {
    pub(crate) fn new() -> Self {
        let ns = format!("a3s-test-{}", &uuid_hex()[..10]);
        let ok = Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {ns} failed (the bridge tests need root)");
        let lab = Self {
            ns,
            boxes: std::sync::Mutex::new(Vec::new()),
        };
        let r = lab.sh(&["ip", "link", "set", "lo", "up"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        lab
    }

    /// `a3s-box ARGS` inside the namespace.
    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.exec(None, args)
    }

    fn exec(&self, wrapper: Option<&[&str]>, args: &[&str]) -> Run {
        ns_run(&self.ns, wrapper, args)
    }

    /// Any command inside the namespace.
    pub(crate) fn sh(&self, argv: &[&str]) -> Run {
        output(
            Command::new("ip")
                .args(["netns", "exec", &self.ns])
                .args(argv),
        )
    }

    /// `run -d` a box, remembered for clean-up.
    fn start(&self, name: &str, args: &[&str]) -> std::thread::JoinHandle<Run> {
        self.boxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(name.to_owned());
        // Names resolve through the network's DNS server on the gateway; anything else it
        // forwards to the namespace's resolvers, i.e. nowhere: nothing leaves the namespace.
        let mut argv: Vec<String> = ["run", "-d", "--name", name]
            .iter()
            .map(ToString::to_string)
            .collect();
        argv.extend(args.iter().map(ToString::to_string));
        let ns = self.ns.clone();
        std::thread::spawn(move || {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            ns_run(&ns, None, &argv)
        })
    }

    /// `nc NAME PORT` from inside `from`: the HTTP status line, or the error.
    fn fetch(&self, from: &str, host: &str, port: u16) -> Run {
        let script = format!("printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port}");
        self.run(&["exec", from, "sh", "-c", &script])
    }

    fn wait_http(&self, from: &str, host: &str, port: u16) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let r = self.fetch(from, host, port);
            if r.stdout.contains("200 OK") {
                return r.stdout;
            }
            assert!(
                Instant::now() < deadline,
                "{from} never reached {host}:{port}: {r:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The namespace's own HTTP GET (from the bridge's gateway address).
    pub(crate) fn curl(&self, url: &str) -> Run {
        self.sh(&["curl", "-s", "-m", "5", url])
    }

    pub(crate) fn inspect(&self, net: &str) -> serde_json::Value {
        let r = self.run(&["network", "inspect", net]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.json()[0].clone()
    }
}

/// The interface identifier of an IPv6 link-local address made from `mac`, as
/// `/proc/net/if_inet6` writes it.
fn eui64(mac: &str) -> String {
    let b: Vec<u8> = mac
        .split(':')
        .map(|o| u8::from_str_radix(o, 16).unwrap())
        .collect();
    format!(
        "{:02x}{:02x}{:02x}fffe{:02x}{:02x}{:02x}",
        b[0] ^ 2,
        b[1],
        b[2],
        b[3],
        b[4],
        b[5]
    )
}

pub(crate) fn ip_of(net: &serde_json::Value, name: &str) -> String {
    net["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("{name} not on {net}"))["ip"]
        .as_str()
        .unwrap()
        .to_owned()
}

impl Drop for Lab {
    fn drop(&mut self) {
        let boxes = std::mem::take(
            &mut *self
                .boxes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for b in boxes {
            self.run(&["rm", "-f", &b]);
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// `a3s-box ARGS` inside namespace `ns` (optionally through a wrapper such as setpriv).
fn ns_run(ns: &str, wrapper: Option<&[&str]>, args: &[&str]) -> Run {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]);
    if let Some(w) = wrapper {
        c.args(w);
    }
    c.arg(env!("CARGO_BIN_EXE_a3s-box"))
        .args(args)
        .env("A3S_HOME", env().home.path())
        .env("A3S_BOX_QUIET", "1")
        .env_remove("A3S_BOX_ACCEL");
    output(&mut c)
}

fn output(c: &mut Command) -> Run {
    let out = c.output().expect("running ip netns exec");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn uuid_hex() -> String {
    let mut b = [0u8; 8];
    let f = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut b)
    });
    f.expect("reading /dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn joined(h: std::thread::JoinHandle<Run>) -> Run {
    let r = h.join().expect("run thread");
    assert_eq!(r.code, 0, "{}", r.stderr);
    r
}

const HTTPD: &[&str] = &["busybox", "httpd", "-f", "-p", "80", "-h", "/etc"];

#[test]
fn two_boxes_on_a_bridge_reach_each_other_by_name_and_keep_their_addresses() {
    let lab = Lab::new();
    let r = lab.run(&["network", "create", "--subnet", "10.91.0.0/24", "br-peers"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let web = lab.start("peer-web", &[&["--network", "br-peers"], HTTPD].concat());
    let cli = lab.start(
        "peer-cli",
        &["--network", "br-peers", "busybox", "sleep", "600"],
    );
    joined(web);
    joined(cli);
    let body = lab.wait_http("peer-cli", "peer-web", 80);
    let net = lab.inspect("br-peers");
    let web_id = net["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "peer-web")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(body.trim_end().ends_with(&web_id[..12]), "{body}");
    let (web_ip, cli_ip) = (ip_of(&net, "peer-web"), ip_of(&net, "peer-cli"));
    assert_ne!(web_ip, cli_ip);
    // Peers are found through the network's DNS server, not a boot-time /etc/hosts.
    let hosts = lab.run(&["exec", "peer-cli", "cat", "/etc/hosts"]);
    assert!(!hosts.stdout.contains("peer-web"), "{}", hosts.stdout);
    let ns = lab.run(&["exec", "peer-cli", "nslookup", "peer-web"]);
    assert!(ns.stdout.contains(&web_ip), "{ns:?}");
    // The gateway keeps its MAC address while boxes join: a bridge takes the lowest MAC of
    // its ports unless given one, and the running boxes' ARP entries then point nowhere.
    let id = net["id"].as_str().unwrap().to_owned();
    let gateway_mac = format!(
        "02:a4:{}:{}:{}:{}",
        &id[0..2],
        &id[2..4],
        &id[4..6],
        &id[6..8]
    );
    let bridge_mac = || {
        let r = lab.sh(&[
            "cat",
            &format!("/sys/class/net/a3s-br-{}/address", &id[..8]),
        ]);
        assert_eq!(r.code, 0, "{r:?}");
        r.stdout.trim().to_owned()
    };
    assert_eq!(bridge_mac(), gateway_mac);
    // A box started later, with an alias and a published port on a chosen host address, is
    // resolvable at once by the running ones, and reachable from the host side.
    joined(
        lab.start(
            "peer-late",
            &[
                &["--network", "br-peers", "--network-alias", "late-alias"],
                &["-p", "127.0.0.1::80", "-p", "127.0.0.1:0:5353/udp"],
                HTTPD,
            ]
            .concat(),
        ),
    );
    let late_ip = ip_of(&lab.inspect("br-peers"), "peer-late");
    assert_eq!(
        bridge_mac(),
        gateway_mac,
        "a joining box changed the gateway's MAC"
    );
    for name in ["peer-late", "late-alias", "late-alias.br-peers"] {
        let ns = lab.run(&["exec", "peer-cli", "nslookup", name]);
        assert!(ns.stdout.contains(&late_ip), "{name}: {ns:?}");
    }
    lab.wait_http("peer-cli", "late-alias", 80);
    let ports = lab.run(&["port", "peer-late"]);
    assert_eq!(ports.code, 0, "{}", ports.stderr);
    let tcp = ports
        .stdout
        .lines()
        .find(|l| l.starts_with("80/tcp -> 127.0.0.1:"))
        .unwrap_or_else(|| panic!("{}", ports.stdout));
    assert!(
        ports.stdout.contains("5353/udp -> 127.0.0.1:"),
        "{}",
        ports.stdout
    );
    let host_port = tcp.rsplit(':').next().unwrap();
    let late_id = lab.run(&["inspect", "peer-late"]).json()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = lab.curl(&format!("http://127.0.0.1:{host_port}/hostname"));
    assert!(c.stdout.trim_end().ends_with(&late_id[..12]), "{c:?}");
    let rm = lab.run(&["rm", "-f", "peer-late"]);
    assert_eq!(rm.code, 0, "{}", rm.stderr);
    let gone = lab.run(&["exec", "peer-cli", "nslookup", "late-alias"]);
    assert!(!gone.stdout.contains(&late_ip), "{gone:?}");
    // The namespace's end of the bridge (the gateway) reaches a box at its address.
    let c = lab.curl(&format!("http://{web_ip}/hostname"));
    assert!(c.stdout.trim_end().ends_with(&web_id[..12]), "{c:?}");
    // Boxes on a bridge start from a saved VM too; each has its own MAC address, in the guest
    // and on the wire, and its own IPv6 link-local address (made from it), never the
    // template's.
    let restored = |name: &str| lab.run(&["inspect", name]).json()[0]["boot"]["restored"] == true;
    // Started together, one of them may boot cold while the other makes the template.
    assert!(restored("peer-web") || restored("peer-cli"));
    for (name, ip) in [("peer-web", &web_ip), ("peer-cli", &cli_ip)] {
        let mac = lab
            .run(&["exec", name, "cat", "/sys/class/net/eth0/address"])
            .stdout
            .trim()
            .to_owned();
        // (A template's addresses are 02:a3:7e:00:00:NN, `a3s_vmm::template::template_mac`.)
        assert!(
            mac.len() == 17 && !mac.starts_with("02:a3:7e:00:00:"),
            "{name}: {mac}"
        );
        let neigh = lab.sh(&["ip", "neigh", "show", ip.as_str()]);
        assert!(neigh.stdout.contains(&mac), "{name} {mac}: {neigh:?}");
        let inet6 = lab.run(&["exec", name, "cat", "/proc/net/if_inet6"]).stdout;
        assert!(
            inet6
                .lines()
                .any(|l| l.starts_with(&format!("fe80000000000000{}", eui64(&mac)))),
            "{name} {mac}: {inet6}"
        );
    }
    // Network changes of a running box are refused with a clear error.
    let d = lab.run(&["network", "disconnect", "br-peers", "peer-cli"]);
    assert_eq!(d.code, 125, "{}", d.stderr);
    assert!(d.stderr.contains("is running"), "{}", d.stderr);
    let rm = lab.run(&["network", "rm", "br-peers"]);
    assert_eq!(rm.code, 125, "{}", rm.stderr);
    assert!(rm.stderr.contains("peer-cli"), "{}", rm.stderr);
    // The address survives a restart; the TAP goes away while the box is stopped.
    let tap_count = |lab: &Lab| {
        lab.sh(&["ip", "-o", "link", "show"])
            .stdout
            .matches("a3s-tp-")
            .count()
    };
    assert_eq!(tap_count(&lab), 2);
    let s = lab.run(&["stop", "-t", "0", "peer-cli"]);
    assert_eq!(s.code, 0, "{}", s.stderr);
    assert_eq!(tap_count(&lab), 1);
    let s = lab.run(&["start", "peer-cli"]);
    assert_eq!(s.code, 0, "{}", s.stderr);
    let ifc = lab.run(&["exec", "peer-cli", "ifconfig", "eth0"]);
    assert!(
        ifc.stdout.contains(&format!("inet addr:{cli_ip} ")),
        "{}",
        ifc.stdout
    );
    assert_eq!(ip_of(&lab.inspect("br-peers"), "peer-cli"), cli_ip);
    assert!(restored("peer-cli"), "the restart booted cold");
    lab.wait_http("peer-cli", "peer-web", 80);
}

#[test]
fn strict_isolation_blocks_peers_but_not_the_gateway() {
    let lab = Lab::new();
    let r = lab.run(&[
        "network",
        "create",
        "--subnet",
        "10.92.0.0/24",
        "--isolation",
        "strict",
        "br-strict",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let web = lab.start("strict-web", &[&["--network", "br-strict"], HTTPD].concat());
    let cli = lab.start(
        "strict-cli",
        &["--network", "br-strict", "busybox", "sleep", "600"],
    );
    joined(web);
    joined(cli);
    let net = lab.inspect("br-strict");
    let web_ip = ip_of(&net, "strict-web");
    // The server is up: the gateway side reaches it.
    let deadline = Instant::now() + Duration::from_secs(90);
    while lab.curl(&format!("http://{web_ip}/hostname")).code != 0 {
        assert!(
            Instant::now() < deadline,
            "strict-web never answered the gateway"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The peer does not, by name or by address; the gateway still answers the peer.
    for host in ["strict-web", web_ip.as_str()] {
        let f = lab.fetch("strict-cli", host, 80);
        assert!(!f.stdout.contains("200 OK"), "{host}: {f:?}");
    }
    let gw = net["gateway"].as_str().unwrap();
    let p = lab.run(&["exec", "strict-cli", "ping", "-c", "1", "-W", "3", gw]);
    assert_eq!(p.code, 0, "{p:?}");
    let rules = lab.sh(&["nft", "list", "ruleset"]).stdout;
    assert!(rules.contains("jump peers"), "{rules}");
}

#[test]
fn custom_isolation_allows_exactly_the_listed_port() {
    let lab = Lab::new();
    let policy = crate::support::write_file(
        env().home.path(),
        "custom-policy.toml",
        b"default = \"deny\"\n\n[[rules]]\nfrom = \"custom-cli\"\nto = \"custom-web\"\nports = [80]\nprotocol = \"tcp\"\naction = \"allow\"\n",
    );
    let r = lab.run(&[
        "network",
        "create",
        "--subnet",
        "10.93.0.0/24",
        "--isolation",
        "custom",
        "--policy",
        &policy,
        "br-custom",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let web = lab.start(
        "custom-web",
        &[
            "--network",
            "br-custom",
            "busybox",
            "sh",
            "-c",
            "httpd -p 81 -h /etc && exec httpd -f -p 80 -h /etc",
        ],
    );
    let cli = lab.start("custom-cli", &[&["--network", "br-custom"], HTTPD].concat());
    joined(web);
    joined(cli);
    lab.wait_http("custom-cli", "custom-web", 80);
    let web_ip = ip_of(&lab.inspect("br-custom"), "custom-web");
    // Port 81 listens (the gateway side gets an answer) but the peer is denied it.
    let c = lab.curl(&format!("http://{web_ip}:81/hostname"));
    assert_eq!(c.code, 0, "{c:?}");
    let f = lab.fetch("custom-cli", "custom-web", 81);
    assert!(!f.stdout.contains("200 OK"), "{f:?}");
    // Only the listed direction: web cannot open a connection to cli's port 80, which listens.
    let cli_ip = ip_of(&lab.inspect("br-custom"), "custom-cli");
    assert_eq!(lab.curl(&format!("http://{cli_ip}/hostname")).code, 0);
    let back = lab.fetch("custom-web", "custom-cli", 80);
    assert!(!back.stdout.contains("200 OK"), "{back:?}");
}

#[test]
fn network_commands_ipam_and_refusals_without_booting() {
    let lab = Lab::new();
    let ok = |r: Run| {
        assert_eq!(r.code, 0, "{}", r.stderr);
        r
    };
    ok(lab.run(&["network", "create", "br-ipam"]));
    let other = ok(lab.run(&["network", "create", "br-other"]));
    assert_eq!(other.stdout.trim(), "br-other");
    let a = lab.inspect("br-ipam");
    let b = lab.inspect("br-other");
    assert_ne!(a["subnet"], b["subnet"]);
    assert!(a["bridge"].as_str().unwrap().len() <= 15);
    // Refusals before anything is built.
    let ov = lab.run(&[
        "network",
        "create",
        "--subnet",
        a["subnet"].as_str().unwrap(),
        "br-dup",
    ]);
    assert_eq!(ov.code, 2, "{}", ov.stderr);
    assert!(
        ov.stderr.contains("overlaps network br-ipam"),
        "{}",
        ov.stderr
    );
    let bad = crate::support::write_file(
        env().home.path(),
        "bad-policy.toml",
        b"default = \"deny\"\n[[rules]]\nfrom = \"a\"\nto = \"b\"\nports = [53]\nprotocol = \"icmp\"\naction = \"allow\"\n",
    );
    let p = lab.run(&[
        "network",
        "create",
        "--isolation",
        "custom",
        "--policy",
        &bad,
        "br-bad",
    ]);
    assert_eq!(p.code, 2, "{}", p.stderr);
    assert!(
        p.stderr.contains("rule 1: icmp has no ports"),
        "{}",
        p.stderr
    );
    // Concurrent creates never share an address.
    let n = 10;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let ns = lab.ns.clone();
            std::thread::spawn(move || {
                let name = format!("ipam-{i}");
                ns_run(
                    &ns,
                    None,
                    &[
                        "create",
                        "--name",
                        &name,
                        "--network",
                        "br-ipam",
                        "busybox",
                        "true",
                    ],
                )
            })
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    lab.boxes
        .lock()
        .unwrap()
        .extend((0..n).map(|i| format!("ipam-{i}")));
    let net = lab.inspect("br-ipam");
    let ips: std::collections::BTreeSet<String> = net["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ip"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ips.len(), n, "{net}");
    // Removing a box frees its address; disconnect/connect move a stopped box.
    let freed = [ip_of(&net, "ipam-3"), ip_of(&net, "ipam-4")];
    ok(lab.run(&["rm", "ipam-3"]));
    assert_eq!(
        lab.inspect("br-ipam")["boxes"].as_array().unwrap().len(),
        n - 1
    );
    ok(lab.run(&["network", "disconnect", "br-ipam", "ipam-4"]));
    let c = ok(lab.run(&["network", "connect", "br-other", "ipam-4"]));
    assert!(c.stdout.starts_with("ipam-4 "), "{}", c.stdout);
    // A second network: its own address there (asked for), then gone again.
    let ipam_subnet = lab.inspect("br-ipam")["subnet"]
        .as_str()
        .unwrap()
        .to_owned();
    let fixed = ipam_subnet.replace(".0/24", ".200");
    let bad = lab.run(&["network", "connect", "--alias", "-x", "br-ipam", "ipam-4"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let again = ok(lab.run(&[
        "network", "connect", "--ip", &fixed, "--alias", "second", "br-ipam", "ipam-4",
    ]));
    assert_eq!(again.stdout.trim(), format!("ipam-4 {fixed}"));
    let both = lab.run(&["inspect", "ipam-4"]).json()[0]["NetworkSettings"]["Networks"].clone();
    assert_eq!(both["br-ipam"]["IPAddress"], fixed.as_str(), "{both}");
    assert_eq!(both["br-ipam"]["Aliases"], serde_json::json!(["second"]));
    assert!(both["br-other"]["IPAddress"].is_string(), "{both}");
    ok(lab.run(&["network", "disconnect", "br-ipam", "ipam-4"]));
    let one = lab.run(&["inspect", "ipam-4"]).json()[0]["NetworkSettings"]["Networks"].clone();
    assert!(
        one.get("br-ipam").is_none() && one.get("br-other").is_some(),
        "{one}"
    );
    let nc = lab.run(&["network", "disconnect", "br-ipam", "ipam-4"]);
    assert!(nc.stderr.contains("is not connected"), "{}", nc.stderr);
    ok(lab.run(&[
        "create",
        "--name",
        "ipam-new",
        "--network",
        "br-ipam",
        "busybox",
        "true",
    ]));
    lab.boxes.lock().unwrap().push("ipam-new".into());
    let net = lab.inspect("br-ipam");
    let new_ip = ip_of(&net, "ipam-new");
    let live: std::collections::BTreeSet<&str> = net["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ip"].as_str().unwrap())
        .collect();
    assert_eq!(live.len(), net["boxes"].as_array().unwrap().len(), "{net}");
    assert!(
        freed.contains(&new_ip),
        "{new_ip} is not a freed address {freed:?}"
    );
    // A host without CAP_NET_ADMIN is told so before boot.
    let rootless = lab.exec(
        Some(&["setpriv", "--bounding-set", "-net_admin", "--"]),
        &["start", "ipam-0"],
    );
    assert_eq!(rootless.code, 125, "{}", rootless.stderr);
    assert!(
        rootless.stderr.contains("CAP_NET_ADMIN"),
        "{}",
        rootless.stderr
    );
    // ls, rm refusal, rm --force detaching.
    let ls = ok(lab.run(&["network", "ls", "--format", "json"]));
    // Docker's shape (issue 20): one object per line, Docker's keys.
    let rows = ls.json_lines();
    let names: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap().to_owned())
        .collect();
    for row in rows.as_array().unwrap() {
        assert_eq!(row["Driver"], "bridge", "{row}");
        assert_eq!(row["Scope"], "local", "{row}");
        assert_eq!(row["ID"].as_str().unwrap().len(), 12, "{row}");
        assert!(
            row["CreatedAt"].as_str().unwrap().ends_with(" +0000 UTC"),
            "{row}"
        );
        for k in ["IPv6", "Internal", "Labels"] {
            assert!(row[k].is_string(), "{k} in {row}");
        }
    }
    assert!(names.contains(&"br-ipam".to_owned()) && names.contains(&"br-other".to_owned()));
    let rm = lab.run(&["network", "rm", "br-ipam"]);
    assert_eq!(rm.code, 125, "{}", rm.stderr);
    assert!(rm.stderr.contains("has boxes attached"), "{}", rm.stderr);
    ok(lab.run(&["network", "rm", "--force", "br-ipam", "br-other"]));
    let gone = lab.run(&["network", "inspect", "br-ipam"]);
    assert_ne!(gone.code, 0);
    assert!(gone.stderr.contains("does not exist"), "{}", gone.stderr);
    let audit = ok(lab.run(&["audit", "--action", "network.remove", "--format", "json"]));
    assert!(audit.stdout.contains("\"denied\""), "{}", audit.stdout);
    assert!(audit.stdout.contains("\"success\""), "{}", audit.stdout);
}

#[test]
fn a_box_on_two_networks_has_a_nic_address_and_names_on_each_and_isolation_per_network() {
    let lab = Lab::new();
    let ok = |r: Run| {
        assert_eq!(r.code, 0, "{}", r.stderr);
        r
    };
    // front is strict: its boxes cannot reach each other; back is open.
    ok(lab.run(&[
        "network",
        "create",
        "--subnet",
        "10.94.0.0/24",
        "--isolation",
        "strict",
        "mn-front",
    ]));
    ok(lab.run(&["network", "create", "--subnet", "10.95.0.0/24", "mn-back"]));
    let db = lab.start("mn-db", &[&["--network", "mn-back"], HTTPD].concat());
    let web = lab.start("mn-web", &[&["--network", "mn-front"], HTTPD].concat());
    // api joins front at create and back (with an alias and a fixed address) while stopped.
    lab.boxes.lock().unwrap().push("mn-api".into());
    ok(lab.run(&[
        "create",
        "--name",
        "mn-api",
        "--network",
        "mn-front",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]));
    let c = ok(lab.run(&[
        "network",
        "connect",
        "--alias",
        "store-api",
        "--ip",
        "10.95.0.50",
        "mn-back",
        "mn-api",
    ]));
    assert_eq!(c.stdout.trim(), "mn-api 10.95.0.50");
    ok(lab.run(&["start", "mn-api"]));
    joined(db);
    joined(web);
    let api_front = ip_of(&lab.inspect("mn-front"), "mn-api");
    assert_eq!(ip_of(&lab.inspect("mn-back"), "mn-api"), "10.95.0.50");
    let nets = lab.run(&["inspect", "mn-api"]).json()[0]["NetworkSettings"]["Networks"].clone();
    assert_eq!(nets["mn-front"]["IPAddress"], api_front.as_str(), "{nets}");
    assert_eq!(nets["mn-back"]["IPAddress"], "10.95.0.50", "{nets}");
    assert_eq!(nets["mn-back"]["Aliases"], serde_json::json!(["store-api"]));
    // One NIC per network, each with its address; the default route via the first network.
    let ifc = ok(lab.run(&["exec", "mn-api", "ifconfig"])).stdout;
    assert!(ifc.contains(&format!("inet addr:{api_front} ")), "{ifc}");
    assert!(ifc.contains("inet addr:10.95.0.50 "), "{ifc}");
    let route = ok(lab.run(&["exec", "mn-api", "route", "-n"])).stdout;
    let default = route
        .lines()
        .find(|l| l.starts_with("0.0.0.0"))
        .unwrap_or_else(|| panic!("no default route: {route}"));
    assert!(default.contains("10.94.0.1"), "{route}");
    // Four TAPs: one per box per network.
    let taps = lab
        .sh(&["ip", "-o", "link", "show"])
        .stdout
        .matches("a3s-tp-")
        .count();
    assert_eq!(taps, 4);
    // api resolves (through its first network's DNS server) and reaches db on back.
    let db_ip = ip_of(&lab.inspect("mn-back"), "mn-db");
    let ns = lab.run(&["exec", "mn-api", "nslookup", "mn-db"]);
    assert!(ns.stdout.contains(&db_ip), "{ns:?}");
    lab.wait_http("mn-api", "mn-db", 80);
    // db, on back only, finds api by its alias there, at its back address.
    let ns = lab.run(&["exec", "mn-db", "nslookup", "store-api"]);
    assert!(ns.stdout.contains("10.95.0.50"), "{ns:?}");
    lab.wait_http("mn-db", "store-api", 80);
    // front stays strict for its two-network member: api and web cannot reach each other,
    // though the gateway reaches both; web does not even know db's name.
    let web_ip = ip_of(&lab.inspect("mn-front"), "mn-web");
    let deadline = Instant::now() + Duration::from_secs(90);
    while lab.curl(&format!("http://{web_ip}/hostname")).code != 0 {
        assert!(
            Instant::now() < deadline,
            "mn-web never answered the gateway"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let f = lab.fetch("mn-api", "mn-web", 80);
    assert!(!f.stdout.contains("200 OK"), "{f:?}");
    let f = lab.fetch("mn-web", &api_front, 80);
    assert!(!f.stdout.contains("200 OK"), "{f:?}");
    let ns = lab.run(&["exec", "mn-web", "nslookup", "mn-db"]);
    assert!(!ns.stdout.contains(&db_ip), "{ns:?}");
    // Leaving front makes back the first network: one NIC, the default route via back.
    ok(lab.run(&["stop", "-t", "0", "mn-api"]));
    ok(lab.run(&["network", "disconnect", "mn-front", "mn-api"]));
    ok(lab.run(&["start", "mn-api"]));
    let ifc = ok(lab.run(&["exec", "mn-api", "ifconfig"])).stdout;
    assert!(ifc.contains("inet addr:10.95.0.50 "), "{ifc}");
    assert!(!ifc.contains(&format!("inet addr:{api_front} ")), "{ifc}");
    let route = ok(lab.run(&["exec", "mn-api", "route", "-n"])).stdout;
    assert!(
        route
            .lines()
            .any(|l| l.starts_with("0.0.0.0") && l.contains("10.95.0.1")),
        "{route}"
    );
    lab.wait_http("mn-api", "mn-db", 80);
    // `run` takes several bridge networks at once; a mode cannot be mixed in.
    let mixed = lab.run(&[
        "create",
        "--network",
        "mn-back",
        "--network",
        "tsi",
        "busybox",
    ]);
    assert_eq!(mixed.code, 2, "{}", mixed.stderr);
    assert!(
        mixed
            .stderr
            .contains("only bridge networks can be combined"),
        "{}",
        mixed.stderr
    );
    lab.boxes.lock().unwrap().push("mn-two".into());
    ok(lab.run(&[
        "create",
        "--name",
        "mn-two",
        "--network",
        "mn-back",
        "--network",
        "mn-front",
        "busybox",
        "true",
    ]));
    let two = lab.run(&["inspect", "mn-two"]).json()[0]["NetworkSettings"]["Networks"].clone();
    assert!(
        two["mn-back"]["IPAddress"].is_string() && two["mn-front"]["IPAddress"].is_string(),
        "{two}"
    );
}

/// `a3s-box kbs serve` on the namespace's loopback; killed on drop.
struct NsKbs {
    child: std::process::Child,
    url: String,
}

impl Drop for NsKbs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_confidential_box_on_a_bridge_gets_its_secret_from_a_loopback_kbs_through_the_relay() {
    use std::io::BufRead;
    let lab = Lab::new();
    let ok = |r: Run| {
        assert_eq!(r.code, 0, "{}", r.stderr);
        r
    };
    ok(lab.run(&["network", "create", "--subnet", "10.96.0.0/24", "br-tee"]));
    // A real KBS on the namespace's 127.0.0.1, which the guest cannot reach by itself.
    let db = env().home.path().join(format!("{}-kbs.db", lab.ns));
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns])
        .arg(env!("CARGO_BIN_EXE_a3s-box"))
        .args(["kbs", "serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .args(["--allow-simulated", "--insecure-admin"])
        .env("A3S_HOME", env().home.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting a3s-box kbs serve");
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("kbs serve exited early").unwrap();
        if let Some(rest) = line.strip_prefix("KBS listening on ") {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let kbs = NsKbs { child, url };
    // The launch is predicted before the box exists (its bridge address is not measured) and
    // registered, so the KBS releases the secret to exactly that launch.
    let m = ok(lab.run(&[
        "measure",
        "--image",
        "busybox",
        "--tee-simulate",
        "--network",
        "br-tee",
    ]))
    .stdout
    .trim()
    .to_owned();
    let secret = "bridged-kbs-secret-51c2";
    let file = crate::support::write_file(
        env().home.path(),
        &format!("{}-secret", lab.ns),
        secret.as_bytes(),
    );
    ok(lab.run(&[
        "kbs",
        "resource",
        "set",
        "--url",
        &kbs.url,
        "default/app/token",
        "--file",
        &file,
    ]));
    let value = format!("[\"{m}\"]");
    ok(lab.run(&[
        "kbs",
        "reference-value",
        "set",
        "--url",
        &kbs.url,
        "snp_launch_measurement",
        &value,
    ]));
    joined(lab.start(
        "tee-bridged",
        &[
            "--network",
            "br-tee",
            "--tee-simulate",
            "--kbs-url",
            &kbs.url,
            "--secret",
            "token=kbs:///default/app/token",
            "busybox",
            "sh",
            "-c",
            "cat /run/secrets/token; echo; echo DONE; sleep 600",
        ],
    ));
    let deadline = Instant::now() + Duration::from_secs(300);
    let logs = loop {
        let l = lab.run(&["logs", "tee-bridged"]).stdout;
        if l.contains("DONE") {
            break l;
        }
        assert!(Instant::now() < deadline, "no secret: {l}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(logs.contains(secret), "{logs}");
    let rec = lab.run(&["inspect", "tee-bridged"]).json()[0].clone();
    assert_eq!(rec["tee"]["measurement"], m.as_str(), "{rec}");
    let audit = ok(lab.run(&["audit", "--action", "tee.kbs_relay", "--format", "json"]));
    assert!(audit.stdout.contains("10.96.0.1:"), "{}", audit.stdout);
    let _ = std::fs::remove_file(db);
    let _ = std::fs::remove_file(file);
}
