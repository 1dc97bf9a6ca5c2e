//! The performance mechanisms (issue 22) work correctly: the default network's passt forwarder
//! (host loopback as the gateway, bytes intact at the large MTU), the default only where passt
//! sets TCP_NODELAY, and its reported slirp fallback; published ports over a box's private link (and on passt when asked or when the
//! link cannot be made); guest modules loaded without ftrace patching or BTF; the kernel's
//! skipped initcalls; free page reporting gives freed guest memory back to the host
//! (against a box without the balloon), from 32 KiB blocks up, into guest RAM kept in base
//! pages; the measurement digest cache never trusts a changed
//! artefact or a forged entry; an encrypted writable layer made the fast way reports its parts
//! and comes back intact after its VM is killed; a confidential box's memory is closed to KSM;
//! a box's VM stopped right after guest-init's sync keeps the workload's last writes. No timing is asserted anywhere.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::TestEnv;

fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        crate::support::build_guest_init();
        let env = TestEnv::new();
        // Import the embedded busybox once, before tests race to import it concurrently.
        let c = env.run(&["create", "--name", "perf-warm", "busybox", "true"]);
        assert_eq!(c.code, 0, "{}", c.stderr);
        env.run(&["rm", "perf-warm"]);
        env
    })
}

fn inspect(env: &TestEnv, name: &str) -> serde_json::Value {
    let r = env.run(&["inspect", name]);
    assert_eq!(r.code, 0, "{r:?}");
    r.json()[0].clone()
}

/// Serves 16 MiB of patterned bytes at /big and starts httpd; prints nothing.
const SERVER: &str = "mkdir -p /w && i=0; while [ $i -lt 16 ]; do \
    dd if=/dev/urandom bs=1M count=1 2>/dev/null; i=$((i+1)); done > /w/big && \
    sha256sum /w/big > /w/big.sha && exec httpd -f -p 80 -h /w";

fn http_get(port: u16, path: &str) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let at = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let ok = out.starts_with(b"HTTP/1.") && out.get(9..12) == Some(b"200".as_slice());
    ok.then(|| out.split_off(at + 4))
}

/// Starts a web box with one published port, waits until it serves /big.sha; returns the port.
/// `envs` choose the forwarder or how ports are published.
fn web_box(env: &TestEnv, name: &str, envs: &[(&str, &str)]) -> u16 {
    let mut cmd = env.cmd();
    cmd.envs(envs.iter().copied());
    let out = cmd
        .args([
            "run",
            "-d",
            "--name",
            name,
            "-m",
            "512m",
            "-p",
            "127.0.0.1::80",
        ])
        .args(["busybox", "sh", "-c", SERVER])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let p = env.run(&["port", name]);
    let port: u16 = p
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("80/tcp -> 127.0.0.1:"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("port output: {p:?}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while http_get(port, "/big.sha").is_none() {
        assert!(Instant::now() < deadline, "{name} never served on {port}");
        std::thread::sleep(Duration::from_millis(200));
    }
    port
}

/// The box's /big through its published port matches the digest the guest computed.
fn assert_big_file_intact(port: u16) {
    use sha2::Digest;
    let sha = String::from_utf8(http_get(port, "/big.sha").unwrap()).unwrap();
    let big = http_get(port, "/big").expect("GET /big");
    assert_eq!(big.len(), 16 << 20);
    assert_eq!(
        sha.split_whitespace().next().unwrap(),
        hex::encode(sha2::Sha256::digest(&big))
    );
}

/// A one-shot HTTP server on host loopback; returns its port and a thread yielding the request.
fn host_server(reply: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 2048];
        let n = s.read(&mut buf).unwrap();
        s.write_all(format!("HTTP/1.0 200 OK\r\n\r\n{reply}").as_bytes())
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    (port, t)
}

#[test]
fn passt_gives_the_guest_the_same_view_as_slirp() {
    let env = env();
    let port = web_box(
        env,
        "perf-passt",
        &[
            ("A3S_BOX_FORWARDER", "passt"),
            ("A3S_BOX_PUBLISH", "forwarder"),
        ],
    );
    let boot = &inspect(env, "perf-passt")["boot"];
    assert_eq!(boot["forwarder"]["forwarder"], "passt", "{boot}");
    assert_eq!(boot["published"]["via"], "passt", "{boot}");
    assert!(
        boot["published"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("A3S_BOX_PUBLISH=forwarder")),
        "{boot}"
    );
    assert_big_file_intact(port);

    // The guest's view: same address, gateway, DNS; host loopback through the gateway (the
    // way the guest reaches a KBS on 127.0.0.1); the large MTU passt offers.
    let e = env.run(&[
        "exec",
        "perf-passt",
        "sh",
        "-c",
        "ip -4 addr show eth0; ip route; cat /etc/resolv.conf; cat /sys/class/net/eth0/mtu",
    ]);
    assert_eq!(e.code, 0, "{e:?}");
    assert_has_all(
        &e.stdout,
        &[
            "inet 10.0.2.15/24",
            "default via 10.0.2.2",
            "nameserver 10.0.2.3",
            "65520",
        ],
    );
    let (hport, served) = host_server("from-host-loopback");
    let w = env.run(&[
        "exec",
        "perf-passt",
        "wget",
        "-qO-",
        &format!("http://10.0.2.2:{hport}/kbs"),
    ]);
    assert_eq!(w.code, 0, "{w:?}");
    assert_eq!(w.stdout, "from-host-loopback");
    assert!(served.join().unwrap().starts_with("GET /kbs "));

    // passt runs unprivileged, and goes with the box.
    let pid = inspect(env, "perf-passt")["state"]["monitor_pid"]
        .as_u64()
        .unwrap();
    let passt = passt_children(pid);
    assert_eq!(passt.len(), 1, "one passt per box");
    let uid = std::fs::metadata(format!("/proc/{}", passt[0]))
        .unwrap()
        .uid();
    assert_ne!(uid, 0, "passt dropped root");
    assert_eq!(env.run(&["rm", "-f", "perf-passt"]).code, 0);
    assert!(
        !Path::new(&format!("/proc/{}", passt[0])).exists(),
        "passt outlived its box"
    );

    // The first connection to a box that has sent nothing yet gets through: passt learns the
    // guest's MAC from its first frame, and before guest-init announced the NIC at boot the
    // first SYN went to the broadcast address and was dropped (about half of fresh boxes).
    let r = env
        .cmd()
        .env("A3S_BOX_FORWARDER", "passt")
        .env("A3S_BOX_PUBLISH", "forwarder")
        .args(["run", "-d", "--name", "perf-first", "-p", "127.0.0.1::80"])
        .args(["busybox", "sleep", "600"])
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    let p = env.run(&["port", "perf-first"]);
    let port: u16 = p
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("80/tcp -> 127.0.0.1:"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("port output: {p:?}"));
    // httpd has bound its port when this exec returns (it daemonizes after binding).
    let h = env.run(&[
        "exec",
        "perf-first",
        "sh",
        "-c",
        "mkdir -p /w && echo first > /w/i && httpd -p 80 -h /w",
    ]);
    assert_eq!(h.code, 0, "{h:?}");
    assert_eq!(
        http_get(port, "/i").as_deref(),
        Some(b"first\n".as_slice()),
        "the first connection to a fresh box"
    );
    assert_eq!(env.run(&["rm", "-f", "perf-first"]).code, 0);
}

/// The machine's passt builds, each alone ahead of the system's directories on `PATH`: the
/// default forwarder is passt only for one that sets `TCP_NODELAY` on its host sockets
/// (Debian bookworm's keeps Nagle's algorithm: a request written in two pieces waited ~40 ms
/// for the server's delayed ACK, and boxes got it by default).
#[test]
fn the_default_forwarder_is_a_passt_that_sets_tcp_nodelay() {
    let env = env();
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for (i, binary) in ["/usr/bin/passt", "/usr/local/bin/passt"]
        .iter()
        .enumerate()
    {
        let Ok(bytes) = std::fs::read(binary) else {
            eprintln!("SKIP {binary}: not on this machine");
            continue;
        };
        let nodelay = bytes.windows(11).any(|w| w == b"TCP_NODELAY");
        let bin = dir.path().join(i.to_string());
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(binary, bin.join("passt")).unwrap();
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            bin.display()
        );
        let info = env
            .cmd()
            .env("PATH", &path)
            .args(["info", "--format", "json"])
            .output()
            .unwrap();
        assert!(info.status.success(), "{info:?}");
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        let chosen = &info["network"]["forwarder"];
        let want = if nodelay { "passt" } else { "slirp" };
        assert_eq!(chosen["forwarder"], want, "{binary}: {chosen}");
        if !nodelay {
            let reason = chosen["reason"].as_str().unwrap();
            assert!(reason.contains("keeps Nagle's algorithm"), "{reason}");
            assert!(
                reason.contains(&format!("{}", bin.join("passt").display())),
                "{reason}"
            );
        }
        // A box started the same way gets what `info` said, and runs.
        let name = format!("perf-fwd-{i}");
        let r = env
            .cmd()
            .env("PATH", &path)
            .args(["run", "--name", &name, "busybox", "true"])
            .output()
            .unwrap();
        assert!(r.status.success(), "{r:?}");
        let boot = &inspect(env, &name)["boot"];
        assert_eq!(&boot["forwarder"], chosen, "{boot}");
        assert_eq!(env.run(&["rm", &name]).code, 0);
        seen.push((binary, nodelay));
    }
    eprintln!("passt builds judged (binary, sets TCP_NODELAY): {seen:?}");
    assert!(
        !seen.is_empty(),
        "no passt on this machine (scripts/setup installs it)"
    );
}

#[test]
fn slirp_is_an_explicit_reported_fallback() {
    let env = env();
    let port = web_box(
        env,
        "perf-slirp",
        &[
            ("A3S_BOX_FORWARDER", "slirp"),
            ("A3S_BOX_PUBLISH", "forwarder"),
        ],
    );
    let boot = &inspect(env, "perf-slirp")["boot"];
    assert_eq!(boot["forwarder"]["forwarder"], "slirp", "{boot}");
    assert!(boot["forwarder"]["reason"]
        .as_str()
        .unwrap()
        .contains("A3S_BOX_FORWARDER"));
    let pid = inspect(env, "perf-slirp")["state"]["monitor_pid"]
        .as_u64()
        .unwrap();
    assert!(passt_children(pid).is_empty());
    assert_big_file_intact(port);
    env.run(&["rm", "-f", "perf-slirp"]);

    let mut bad = env.cmd();
    let out = bad
        .env("A3S_BOX_FORWARDER", "vde")
        .args(["run", "--rm", "busybox", "true"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("use passt or slirp"), "{err}");
}

#[test]
fn published_ports_come_in_over_a_private_link_beside_passt() {
    let env = env();
    let port = web_box(env, "perf-link", &[("A3S_BOX_FORWARDER", "passt")]);
    let box_ = inspect(env, "perf-link");
    let boot = &box_["boot"];
    assert_eq!(boot["published"]["via"], "link", "{boot}");
    // Outbound stays on passt.
    assert_eq!(boot["forwarder"]["forwarder"], "passt", "{boot}");
    assert_big_file_intact(port);

    // The guest: the user NIC as before (found by its MAC, whichever name it got) and the
    // link's end, with no route but its own /30.
    let e = env.run(&["exec", "perf-link", "sh", "-c", "ip -4 addr; ip route"]);
    assert_eq!(e.code, 0, "{e:?}");
    assert_has_all(
        &e.stdout,
        &[
            "inet 10.0.2.15/24",
            "inet 169.254.1.2/30",
            "default via 10.0.2.2",
            "169.254.1.0/30 dev",
        ],
    );
    assert_eq!(
        e.stdout.matches("default via").count(),
        1,
        "one default route: {}",
        e.stdout
    );

    // The host: no interface of the box's (its TAP is in a namespace of its own, which the
    // monitor holds by a descriptor), and the relay is the monitor's, not passt's.
    assert!(!Path::new("/sys/class/net/a3s-in0").exists());
    let pid = box_["state"]["monitor_pid"].as_u64().unwrap();
    let own = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let held: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|f| std::fs::read_link(f.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("net:["))
        .collect();
    assert!(
        held.iter().any(|n| *n != own),
        "the monitor holds no other network namespace: {held:?} (own {own:?})"
    );
    assert_eq!(passt_children(pid).len(), 1, "passt still carries outbound");
    let listener = listening_socket(port).unwrap_or_else(|| panic!("nobody listens on {port}"));
    let monitor_fds: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|f| std::fs::read_link(f.ok()?.path()).ok())
        .collect();
    assert!(
        monitor_fds.contains(&PathBuf::from(format!("socket:[{listener}]"))),
        "the host port's listener is not the monitor's"
    );

    // A stop and start (a new VM on the same link) keeps the port; `rm` frees it.
    assert_eq!(env.run(&["stop", "perf-link"]).code, 0);
    assert_eq!(env.run(&["start", "perf-link"]).code, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while http_get(port, "/big.sha").is_none() {
        assert!(
            Instant::now() < deadline,
            "no answer on {port} after a restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        inspect(env, "perf-link")["boot"]["published"]["via"],
        "link"
    );
    assert_eq!(env.run(&["rm", "-f", "perf-link"]).code, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while listening_socket(port).is_some() {
        assert!(
            Instant::now() < deadline,
            "{port} still listened on after rm"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Without CAP_NET_ADMIN (dropped for the CLI and so for the monitor it starts) the box
    // still starts, its port held by passt, and says why.
    let out = std::process::Command::new("setpriv")
        .args(["--bounding-set", "-net_admin", "--inh-caps", "-net_admin"])
        .arg(env!("CARGO_BIN_EXE_a3s-box"))
        .env("A3S_HOME", env.home.path())
        .env("A3S_BOX_FORWARDER", "passt")
        .args(["run", "-d", "--name", "perf-nocap", "-p", "127.0.0.1::80"])
        .args(["busybox", "sh", "-c", SERVER])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let published = &inspect(env, "perf-nocap")["boot"]["published"];
    assert_eq!(published["via"], "passt", "{published}");
    assert!(
        published["reason"]
            .as_str()
            .is_some_and(|r| r.contains("CAP_NET_ADMIN")),
        "{published}"
    );
    assert_eq!(env.run(&["rm", "-f", "perf-nocap"]).code, 0);

    // A publish setting that is neither way is refused, naming the variable.
    let out = env
        .cmd()
        .env("A3S_BOX_PUBLISH", "tap")
        .args(["run", "--rm", "-p", "127.0.0.1::80", "busybox", "true"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("A3S_BOX_PUBLISH=\"tap\""), "{err}");
}

fn assert_has_all(text: &str, wants: &[&str]) {
    for want in wants {
        assert!(text.contains(want), "{want} missing: {text}");
    }
}

/// The inode of the socket listening on host TCP port `port`, if any.
fn listening_socket(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let listening = f.get(3) == Some(&"0A");
        let on_port = f
            .get(1)
            .and_then(|a| a.rsplit(':').next())
            .is_some_and(|p| u16::from_str_radix(p, 16) == Ok(port));
        (listening && on_port).then(|| f.get(9).map(|i| (*i).to_owned()))?
    })
}

/// passt processes the monitor started (Debian's passt execs `passt.avx2` where it can).
fn passt_children(monitor: u64) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-P", &monitor.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.starts_with("passt"))
        })
        .collect()
}

/// `ksm_merge_any` of each passt of box `name`: whether the host's KSM may merge all of its
/// memory.
fn passt_merge_any(env: &TestEnv, name: &str) -> Vec<String> {
    let monitor = inspect(env, name)["state"]["monitor_pid"].as_u64().unwrap();
    passt_children(monitor)
        .into_iter()
        .map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/ksm_stat")).unwrap();
            stat.lines()
                .find_map(|l| l.strip_prefix("ksm_merge_any:"))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no ksm_merge_any in passt's ksm_stat: {stat}"))
        })
        .collect()
}

/// The first number after `key` in a `/proc/<pid>/<file>` of `Key: value` lines.
fn proc_field(pid: u64, file: &str, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/{file}"))
}

/// How many of a process's mappings KSM may merge (`mg` in smaps' VmFlags).
fn mergeable_mappings(pid: u64) -> usize {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    s.lines()
        .filter_map(|l| l.strip_prefix("VmFlags:"))
        .filter(|f| f.split_whitespace().any(|x| x == "mg"))
        .count()
}

fn rss_anon_mib(pid: u64) -> u64 {
    proc_field(pid, "status", "RssAnon") / 1024
}

/// A box's VM is killed as soon as guest-init says its disks are synced (not after the
/// kernel's shutdown): what the workload wrote just before it exited, never synced by it, is
/// all there at the next start.
#[test]
fn the_last_writes_of_a_workload_survive_its_vm_being_stopped_after_the_sync() {
    let env = env();
    let name = "perf-lastwrites";
    let script = "if [ -f /sum ]; then sha256sum -c -s /sum && echo intact; else \
        dd if=/dev/urandom of=/data bs=1M count=32 2>/dev/null && sha256sum /data > /sum \
        && echo written; fi";
    let first = env.run(&["run", "--name", name, "busybox", "sh", "-c", script]);
    assert_eq!(
        (first.code, first.stdout.trim()),
        (0, "written"),
        "{first:?}"
    );
    assert_eq!(inspect(env, name)["state"]["status"], "exited");
    let again = env.run(&["start", "-a", name]);
    assert_eq!(
        (again.code, again.stdout.trim()),
        (0, "intact"),
        "{again:?}"
    );
    env.run(&["rm", name]);
}

/// A `--rm` box's VM is stopped at once when its workload exits (nothing of it is kept): every
/// byte of its output and its exit code still arrive, and a volume keeps what it wrote (a box
/// with one syncs and powers off as before).
#[test]
fn a_removed_box_is_stopped_at_once_without_losing_output_or_volume_writes() {
    let env = env();
    let r = env.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "seq 1 30000; echo end; exit 3",
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        30001,
        "{}",
        &r.stdout[r.stdout.len().saturating_sub(200)..]
    );
    assert_eq!(lines[29_999], "30000");
    assert_eq!(lines[30_000], "end");

    let dir = tempfile::tempdir().unwrap();
    let vol = format!("{}:/v", dir.path().display());
    let r = env.run(&[
        "run",
        "--rm",
        "-v",
        &vol,
        "busybox",
        "sh",
        "-c",
        "seq 1 100000 > /v/out; echo done",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = std::fs::read_to_string(dir.path().join("out")).unwrap();
    assert_eq!(out.lines().count(), 100_000);
    assert!(out.ends_with("100000\n"));
}

/// dm-verity hashes every block a box reads from its image: with the CPU's SHA-256
/// instructions when the kernel has them (`sha256_ssse3` in the initrd), not the generic C code.
/// And the kernel skipped the initcalls no box uses (`a3s_vmm::qemu::SKIPPED_INITCALLS`): no
/// jitter entropy source registered, while the box's randomness works.
#[test]
fn the_guest_kernel_hashes_with_the_cpu_and_skips_unused_initcalls() {
    let env = env();
    let r = env.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo jent $(grep -c jitterentropy /proc/crypto); \
         echo random $(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' | wc -c); \
         grep -A4 '^name *: sha256$' /proc/crypto | grep '^driver'",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("jent 0\n"), "{}", r.stdout);
    assert!(r.stdout.contains("random 64\n"), "{}", r.stdout);
    let drivers: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("driver"))
        .filter_map(|l| l.split(':').nth(1).map(str::trim))
        .collect();
    assert!(drivers.contains(&"sha256-generic"), "{drivers:?}");
    assert!(
        drivers.iter().any(|d| *d != "sha256-generic"),
        "only the generic SHA-256 for dm-verity: {drivers:?}"
    );
}

#[test]
fn guest_modules_load_without_ftrace_patching_or_btf_parsing() {
    // The host hides each module's ftrace call-site list and BTF from the guest's loader
    // (a3s_vmm::module_trim): the modules are loaded and work (this box has a network and a
    // root through them), none of their functions was patched for ftrace, none has BTF; the
    // kernel's own are untouched.
    let r = env().run(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "echo modules $(grep -c -e '^virtio_net ' -e '^dm_verity ' -e '^overlay ' /proc/modules); \
         echo btf $(ls /sys/kernel/btf | tr '\\n' ' '); \
         mount -t tracefs none /sys/kernel/tracing && \
         echo traced $(grep -c '\\[virtio_net\\]' /sys/kernel/tracing/available_filter_functions) \
           $(grep -c . /sys/kernel/tracing/available_filter_functions)",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("modules 3\n"), "{}", r.stdout);
    assert!(r.stdout.contains("btf vmlinux\n"), "{}", r.stdout);
    let traced: Vec<u64> = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("traced "))
        .unwrap_or_else(|| panic!("{}", r.stdout))
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        traced[0], 0,
        "virtio_net's functions were patched for ftrace"
    );
    assert!(
        traced[1] > 10_000,
        "the kernel's own call sites: {}",
        traced[1]
    );
}

#[test]
fn the_module_files_leave_guest_ram_once_loaded() {
    // The initramfs has no backing store: module files left there hold ~2 MiB of the guest's
    // RAM (and the host's) for the box's life. Both boot paths delete them once loaded.
    let env = env();
    for restore in ["on", "off"] {
        let out = env
            .cmd()
            .env("A3S_BOX_RESTORE", restore)
            .args([
                "run",
                "--rm",
                "busybox",
                "sh",
                "-c",
                "echo loaded $(grep -c -e '^virtio_net ' -e '^overlay ' /proc/modules); \
                 ls /.a3s; if test -e /.a3s/modules; then echo modules-left; fi",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "restore={restore}: {out:?}");
        assert!(stdout.contains("loaded 2\n"), "restore={restore}: {stdout}");
        assert!(stdout.contains("init\n"), "restore={restore}: {stdout}");
        assert!(!stdout.contains("modules"), "restore={restore}: {stdout}");
    }
}

#[test]
fn free_page_reporting_returns_freed_guest_memory() {
    let env = env();
    let start = |name: &str, balloon: &str, thp: &str| {
        let out = env
            .cmd()
            .env("A3S_BOX_BALLOON", balloon)
            .env("A3S_BOX_THP", thp)
            // Its passt is looked at below, whichever forwarder this host defaults to.
            .env("A3S_BOX_FORWARDER", "passt")
            .args([
                "run", "-d", "--name", name, "-m", "512m", "busybox", "sleep", "100000",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        inspect(env, name)["state"]["qemu_pid"].as_u64().unwrap()
    };
    let with = start("perf-balloon", "on", "off");
    // The state before issue 22: no balloon, and guest RAM in huge pages where the host allows.
    let without = start("perf-noballoon", "off", "on");
    let args = |pid: u64| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let has_balloon = |pid| String::from_utf8_lossy(&args(pid)).contains("free-page-reporting=on");
    assert!(has_balloon(with) && !has_balloon(without));
    // Guest RAM in base pages: QEMU runs with THP disabled and holds no huge page, so a
    // restored box loads only the guest's pages and reported blocks stay returned.
    assert_eq!(proc_field(with, "status", "THP_enabled"), 0);
    assert_eq!(proc_field(with, "smaps_rollup", "AnonHugePages"), 0);
    assert_eq!(proc_field(without, "status", "THP_enabled"), 1);
    // A plain box's RAM is open to the host's KSM (a confidential one's is not: see the
    // encrypted layer's test).
    assert!(mergeable_mappings(with) > 0);
    // So is its passt's memory, mostly buffers it zeroed, the same in every box.
    assert_eq!(passt_merge_any(env, "perf-balloon"), ["yes"]);
    assert_eq!(inspect(env, "perf-balloon")["boot"]["restored"], true);
    // The guest reports free blocks from 32 KiB up (its kernel's default is 2 MiB).
    let order = env.run(&[
        "exec",
        "perf-balloon",
        "cat",
        "/sys/module/page_reporting/parameters/page_reporting_order",
    ]);
    assert_eq!((order.code, order.stdout.trim()), (0, "3"), "{order:?}");

    // The guest touches 200 MiB (dd's buffer, held while dd blocks on a pipe nobody reads)
    // and frees it when dd exits; QEMU's resident memory is sampled meanwhile for its peak.
    let touch = |name: &str, pid: u64| {
        let before = rss_anon_mib(pid);
        let mut cmd = env.cmd();
        cmd.args([
            "exec",
            name,
            "sh",
            "-c",
            "dd if=/dev/zero bs=200M count=1 2>/dev/null | sleep 4",
        ]);
        let mut child = cmd.spawn().unwrap();
        let mut peak = before;
        while child.try_wait().unwrap().is_none() {
            peak = peak.max(rss_anon_mib(pid));
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(child.wait().unwrap().success());
        assert!(
            peak >= before + 150,
            "{name}: the guest's 200 MiB never showed: {before} -> {peak} MiB"
        );
        peak
    };
    let peak_with = touch("perf-balloon", with);
    let peak_without = touch("perf-noballoon", without);
    let deadline = Instant::now() + Duration::from_secs(180);
    let returned = loop {
        let now = rss_anon_mib(with);
        if now + 100 <= peak_with {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "QEMU still holds {now} MiB after the guest freed 200 MiB (peak {peak_with} MiB)"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    // Without the balloon QEMU keeps what the guest touched.
    let kept = rss_anon_mib(without);
    assert!(
        kept + 50 >= peak_without,
        "without the balloon: {kept} MiB, peak {peak_without} MiB"
    );
    assert!(
        returned + 100 <= kept,
        "with reporting {returned} MiB, without {kept} MiB"
    );
    env.run(&["rm", "-f", "perf-balloon", "perf-noballoon"]);

    // A huge-page setting that is neither way is refused before anything is made.
    let out = env
        .cmd()
        .env("A3S_BOX_THP", "yes")
        .args(["run", "--name", "perf-badthp", "busybox", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("A3S_BOX_THP=\"yes\""), "{err}");
    // As with Docker, the box was created and never started.
    assert_eq!(inspect(env, "perf-badthp")["state"]["status"], "created");
    env.run(&["rm", "perf-badthp"]);
}

/// The launch measurement as a refused start records it (no VM boots).
fn probe(env: &TestEnv, name: &str) -> String {
    let zero = "00".repeat(48);
    let r = env.run(&[
        "run",
        "--name",
        name,
        "--tee-simulate",
        "--expected-measurement",
        &zero,
        "busybox",
        "true",
    ]);
    assert_eq!(r.code, 125, "{r:?}");
    let m = inspect(env, name)["tee"]["measurement"]
        .as_str()
        .unwrap()
        .to_owned();
    env.run(&["rm", name]);
    m
}

fn cache_entries(env: &TestEnv) -> Vec<PathBuf> {
    let dir = env.path("cache/measure");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "json"));
    v.sort();
    v
}

#[test]
fn the_measure_cache_never_trusts_a_changed_artefact_or_a_forged_entry() {
    let env = TestEnv::new();
    let m0 = probe(&env, "probe-0");
    // Artefacts changed in the last seconds are not cached (the racy rule): probe until the
    // kernel and initrd entries exist.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 1;
    while cache_entries(&env).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no cache entries: {:?}",
            cache_entries(&env)
        );
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(probe(&env, &format!("probe-{i}")), m0);
        i += 1;
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&env.path("cache/measure")), 0o700);
    for e in cache_entries(&env) {
        assert_eq!(mode(&e), 0o600, "{}", e.display());
    }
    // A hit rewrites nothing.
    let stamps = |v: &[PathBuf]| {
        v.iter()
            .map(|p| std::fs::metadata(p).unwrap())
            .map(|m| (m.mtime(), m.mtime_nsec(), m.ino()))
            .collect::<Vec<_>>()
    };
    let before = stamps(&cache_entries(&env));
    assert_eq!(probe(&env, "probe-hit"), m0);
    assert_eq!(stamps(&cache_entries(&env)), before);

    // A forged entry (another digest, the old MAC) is refused: the real value is measured and
    // the entry rewritten.
    let initrd_entry = cache_entries(&env)
        .into_iter()
        .find(|p| std::fs::read_to_string(p).unwrap().contains("/initrd/"))
        .unwrap();
    let text = std::fs::read_to_string(&initrd_entry).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let real = v["sha256"].as_str().unwrap();
    std::fs::write(&initrd_entry, text.replace(real, &"ab".repeat(32))).unwrap();
    assert_eq!(probe(&env, "probe-forged"), m0);
    assert!(std::fs::read_to_string(&initrd_entry)
        .unwrap()
        .contains(real));

    // The initrd changed in place, same size, its mtime put back: measured anew, differently.
    let initrd = PathBuf::from(v["path"].as_str().unwrap());
    let pristine = std::fs::read(&initrd).unwrap();
    let meta = std::fs::metadata(&initrd).unwrap();
    let mut evil = pristine.clone();
    let mid = evil.len() / 2;
    evil[mid] ^= 0x01;
    let restore_mtime = |p: &Path| {
        let ts = |s: i64, n: i64| nix::sys::time::TimeSpec::new(s, n);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            p,
            &ts(meta.atime(), meta.atime_nsec()),
            &ts(meta.mtime(), meta.mtime_nsec()),
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .unwrap();
    };
    std::fs::write(&initrd, &evil).unwrap();
    restore_mtime(&initrd);
    let m1 = probe(&env, "probe-evil");
    std::fs::write(&initrd, &pristine).unwrap();
    restore_mtime(&initrd);
    assert_ne!(m1, m0, "a changed initrd measured like the pristine one");
    assert_eq!(probe(&env, "probe-restored"), m0);
}

/// Polls `inspect` until the box is no longer running (its QEMU was killed under it).
fn wait_not_running(env: &TestEnv, name: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = inspect(env, name);
        if v["state"]["status"] != "running" {
            return v;
        }
        assert!(Instant::now() < deadline, "{name} still running: {v}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_quickly_made_encrypted_layer_reports_its_parts_and_survives_a_killed_vm() {
    let env = env();
    let name = "perf-sealed";
    // No layer kept by an earlier box of this measurement: this one makes its own.
    let _ = std::fs::remove_dir_all(env.path("cache/tee-layers"));
    let r = env
        .cmd()
        // Its passt is looked at below, whichever forwarder this host defaults to.
        .env("A3S_BOX_FORWARDER", "passt")
        .args([
            "run",
            "-d",
            "--name",
            name,
            "--tee-simulate",
            "--allow-exec",
        ])
        .args(["--storage-opt", "size=1g", "busybox", "sleep", "100000"])
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    // Making the layer is accounted part by part.
    let steps = |v: &serde_json::Value| -> Vec<String> {
        v["tee"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[0].as_str().unwrap().to_owned())
            .collect()
    };
    let first = steps(&inspect(env, name));
    // A confidential box's memory is never merged with another process's by the host's KSM.
    let qemu = inspect(env, name)["state"]["qemu_pid"].as_u64().unwrap();
    let args = std::fs::read(format!("/proc/{qemu}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&args).contains("mem-merge=off"));
    assert_eq!(mergeable_mappings(qemu), 0);
    assert_eq!(passt_merge_any(env, name), ["no"]);
    for part in [
        "rw_layer",
        "rw_integrity_format",
        "rw_zero_probed",
        "rw_mkfs",
        "rw_open",
    ] {
        assert!(first.iter().any(|s| s == part), "{part} missing: {first:?}");
    }
    // The box's files go through the journal: many small files (metadata in ext4's journal),
    // synced, then the VM is killed with no unmount, so the next start must recover them.
    let write = "mkdir /d && i=0; while [ $i -lt 300 ]; do echo f$i > /d/f$i; i=$((i+1)); done \
        && sha256sum /d/* > /sums && sync && echo written";
    let w = env.run(&["exec", name, "sh", "-c", write]);
    assert_eq!(w.stdout.trim(), "written", "{w:?}");
    let sums = env.run(&["exec", name, "cat", "/sums"]).stdout;
    assert!(sums.lines().count() == 300, "{sums}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(qemu).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_not_running(env, name);

    let r = env.run(&["start", name]);
    assert_eq!(r.code, 0, "{r:?}");
    // Reopened, not made again.
    let again = steps(&inspect(env, name));
    assert!(again.iter().any(|s| s == "rw_open"), "{again:?}");
    assert!(
        !again
            .iter()
            .any(|s| s == "rw_mkfs" || s == "rw_integrity_format"),
        "the layer was made again: {again:?}"
    );
    let check = env.run(&[
        "exec",
        name,
        "sh",
        "-c",
        "sha256sum -c -s /sums && echo intact",
    ]);
    assert_eq!(check.stdout.trim(), "intact", "{check:?}");
    env.run(&["rm", "-f", name]);
}
