//! Real images built from Debian packages (issue 15): nginx, postgres and python3 from
//! `mmdebstrap`, and an image with a 600 MiB file, all run at the DEFAULT memory (no `--memory`).
//! The images come from `scripts/test-images` (built once, cached outside the repo) and enter
//! the store through `a3s-box load`. Each test boots only the boxes it must prove something with;
//! the boxes live for the whole test and are removed at its end.
//!
//! When the apt mirror cannot be reached the images cannot be built: every test here then prints
//! a loud SKIPPED banner and returns (any other build failure fails the tests).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::{Run, TestEnv};

/// The text `scripts/test-images` puts in the nginx image's index page.
const NGINX_PAGE: &str = "a3s-box nginx test page";

/// What `scripts/test-images` built: image name → record, after `a3s-box load`.
#[derive(Debug, serde::Deserialize)]
struct Image {
    name: String,
    #[serde(rename = "ref")]
    reference: String,
    archive: PathBuf,
    unpacked_bytes: u64,
    file: Option<String>,
    file_sha256: Option<String>,
}

fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        crate::support::build_guest_init();
        TestEnv::new()
    })
}

/// Builds (or finds cached) and loads every test image once; `None` when the mirror is out of
/// reach, after saying so loudly.
fn images() -> Option<&'static BTreeMap<String, Image>> {
    static IMAGES: OnceLock<Option<BTreeMap<String, Image>>> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
            let records = crate::support::test_images(&[], "the real-image e2e tests (issue 15)")?;
            let mut map = BTreeMap::new();
            for record in records {
                let image: Image = serde_json::from_value(record.clone())
                    .unwrap_or_else(|e| panic!("scripts/test-images printed {record}: {e}"));
                let r = env().run(&["load", "-i", image.archive.to_str().unwrap()]);
                assert_eq!(r.code, 0, "loading {}: {}", image.name, r.stderr);
                assert!(
                    r.stdout.contains(&image.reference)
                        || ok(&["images"]).stdout.contains(&image.name),
                    "load of {} did not tag {}: {}",
                    image.name,
                    image.reference,
                    r.stdout
                );
                eprintln!(
                    "real_images: {} ({}) unpacked {:.1} MiB",
                    image.name,
                    image.reference,
                    image.unpacked_bytes as f64 / 1048576.0
                );
                map.insert(image.name.clone(), image);
            }
            Some(map)
        })
        .as_ref()
}

/// The loaded image called `name`, or `None` (skip) when the images could not be built.
fn image(name: &str) -> Option<&'static Image> {
    let Some(all) = images() else {
        eprintln!("SKIPPED (apt mirror unreachable): real-image test with the {name} image");
        return None;
    };
    Some(
        all.get(name)
            .unwrap_or_else(|| panic!("scripts/test-images built no {name} image")),
    )
}

fn run(args: &[&str]) -> Run {
    env().run(args)
}

fn ok(args: &[&str]) -> Run {
    let r = run(args);
    assert_eq!(
        r.code, 0,
        "a3s-box {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

/// Polls `f` until it returns Some, for at most `secs` seconds (TCG on a busy 2-core host).
fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Removes the box when the test ends, passed or failed.
struct Cleanup(&'static str);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = run(&["rm", "-f", self.0]);
    }
}

fn box_id(name: &str) -> String {
    ok(&["inspect", name]).json()[0]["id"]
        .as_str()
        .expect("inspect has an id")
        .to_owned()
}

/// The box's state and the tail of its console, for failure messages.
fn diagnose(name: &str) -> String {
    let r = run(&["inspect", name]);
    if r.code != 0 {
        return format!("inspect {name}: {}", r.stderr);
    }
    let rec = r.json()[0].clone();
    let console = rec["id"]
        .as_str()
        .and_then(|id| {
            std::fs::read_to_string(env().path("boxes").join(id).join("console.log")).ok()
        })
        .unwrap_or_default();
    let lines: Vec<&str> = console.lines().collect();
    let console = lines[lines.len().saturating_sub(30)..].join("\n");
    let state = &rec["state"];
    let logs = run(&["logs", name]);
    format!(
        "state: {state}\nlogs:\n{}{}\nconsole tail:\n{console}",
        logs.stdout, logs.stderr
    )
}

/// Waits until postgres in `name` accepts connections over TCP.
fn wait_for_postgres(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let r = run(&["exec", name, "pg_isready", "-h", "127.0.0.1", "-t", "5"]);
        if r.code == 0 {
            return;
        }
        let exited = ok(&["inspect", name]).json()[0]["state"]["status"] == "exited";
        assert!(
            !exited && Instant::now() < deadline,
            "postgres in {name} never became ready: {}{}\n{}",
            r.stdout,
            r.stderr,
            diagnose(name)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn psql(name: &str, sql: &str) -> String {
    let r = run(&[
        "exec",
        name,
        "psql",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-tA",
        "-c",
        sql,
    ]);
    assert_eq!(
        r.code,
        0,
        "psql {sql:?} in {name}: {}{}\n{}",
        r.stdout,
        r.stderr,
        diagnose(name)
    );
    r.stdout
}

/// Files under the A3S home whose path names the box id and that are at least 1 MiB long (its
/// writable-layer disk, wherever the runtime keeps it).
fn box_disks(id: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, id: &str, inside: bool, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            let named = inside || e.file_name().to_string_lossy().contains(id);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                walk(&path, id, named, found);
            } else if named && meta.is_file() && meta.len() >= 1 << 20 {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(env().home.path(), id, false, &mut found);
    found
}

#[test]
fn nginx_serves_its_page_on_a_published_port_at_the_default_memory() {
    let Some(nginx) = image("nginx") else { return };
    let _rm = Cleanup("ri-nginx");
    ok(&[
        "run",
        "-d",
        "--name",
        "ri-nginx",
        "-p",
        "0:80",
        &nginx.reference,
    ]);
    let p = ok(&["port", "ri-nginx"]);
    let port: u16 = p
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("80/tcp -> 127.0.0.1:"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("port output: {:?}", p.stdout));
    let deadline = Instant::now() + Duration::from_secs(180);
    let answer = loop {
        let got = TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
                s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    .ok()?;
                let mut out = String::new();
                s.read_to_string(&mut out).ok()?;
                out.starts_with("HTTP/1.1 200").then_some(out)
            });
        if let Some(a) = got {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "nginx never answered 200 on 127.0.0.1:{port}\n{}",
            diagnose("ri-nginx")
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(answer.contains(NGINX_PAGE), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("server: nginx"),
        "{answer}"
    );
    // The access log goes to the box's stdout, as the image configured it.
    eventually("nginx's access log line", 30, || {
        ok(&["logs", "ri-nginx"])
            .stdout
            .contains("\"GET / HTTP/1.0\" 200")
            .then_some(())
    });
}

#[test]
fn postgres_keeps_a_table_across_restart() {
    let Some(pg) = image("postgres") else { return };
    let _rm = Cleanup("ri-pg");
    ok(&["run", "-d", "--name", "ri-pg", &pg.reference]);
    wait_for_postgres("ri-pg");
    psql(
        "ri-pg",
        "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives-restart');",
    );
    ok(&["restart", "ri-pg"]);
    wait_for_postgres("ri-pg");
    assert_eq!(
        psql("ri-pg", "SELECT v FROM kept;").trim(),
        "survives-restart"
    );
    // Docker's exec: the image's User unless -u says otherwise.
    assert_eq!(
        ok(&["exec", "ri-pg", "id", "-un"]).stdout.trim(),
        "postgres"
    );
    assert_eq!(
        ok(&["exec", "-u", "root", "ri-pg", "id", "-un"])
            .stdout
            .trim(),
        "root"
    );
}

#[test]
fn a_new_volume_over_postgres_data_is_filled_from_the_image_and_postgres_starts() {
    let Some(pg) = image("postgres") else { return };
    let _rm = Cleanup("ri-pgvol");
    ok(&[
        "run",
        "-d",
        "--name",
        "ri-pgvol",
        "-v",
        "ri-pgdata:/var/lib/postgresql",
        &pg.reference,
    ]);
    wait_for_postgres("ri-pgvol");
    // The volume holds the image's content (copy-up), with the image's ownership.
    let marker = ok(&[
        "exec",
        "ri-pgvol",
        "cat",
        "/var/lib/postgresql/.a3s-test-image",
    ]);
    assert_eq!(
        marker.stdout.trim(),
        "this file comes from the postgres image"
    );
    let owner = ok(&[
        "exec",
        "ri-pgvol",
        "stat",
        "-c",
        "%U",
        "/var/lib/postgresql",
    ]);
    assert_eq!(owner.stdout.trim(), "postgres");
    assert_eq!(psql("ri-pgvol", "SELECT 40 + 2;").trim(), "42");
    // And the cluster lives on the volume, not in the box's own layer.
    let mounts = ok(&["exec", "ri-pgvol", "cat", "/proc/mounts"]).stdout;
    assert!(
        mounts
            .lines()
            .any(|l| l.split(' ').nth(1) == Some("/var/lib/postgresql")),
        "no mount on /var/lib/postgresql:\n{mounts}"
    );
    ok(&["rm", "-f", "ri-pgvol"]);
    ok(&["volume", "rm", "ri-pgdata"]);

    // A new volume right over PGDATA, which the image prepares empty for its user: the volume
    // takes that directory's owner and mode, so postgres (not root) can make its cluster there.
    // Before, the volume's root stayed root's and the entry point's chmod failed.
    let _rm = Cleanup("ri-pgmain");
    ok(&[
        "run",
        "-d",
        "--name",
        "ri-pgmain",
        "-v",
        "ri-pgmaindata:/var/lib/postgresql/15/main",
        &pg.reference,
    ]);
    wait_for_postgres("ri-pgmain");
    let root = ok(&[
        "exec",
        "ri-pgmain",
        "stat",
        "-c",
        "%U %a",
        "/var/lib/postgresql/15/main",
    ]);
    assert_eq!(root.stdout.trim(), "postgres 700");
    assert_eq!(psql("ri-pgmain", "SELECT 40 + 2;").trim(), "42");
    ok(&["rm", "-f", "ri-pgmain"]);
    ok(&["volume", "rm", "ri-pgmaindata"]);
}

/// A TCP server on 8000 that answers with the client's address, and a UDP echo on 9000 that
/// prefixes it; then the first line.
const PEER_SERVERS: &str = "
import socket, sys, threading, time
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('', 8000)); s.listen(8)
    while True:
        c, a = s.accept(); c.sendall((a[0] + '\\n').encode()); c.close()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('', 9000))
    while True:
        d, a = u.recvfrom(2048); u.sendto(a[0].encode() + b' ' + d, a)
threading.Thread(target=tcp, daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
print('python', sys.version_info[0], flush=True)
time.sleep(86400)
";

/// The box's published TCP and UDP ports reach its servers over its private link: the guest
/// sees the link's host end as the peer.
fn assert_published_ports_reach_python(name: &str) {
    let ports = ok(&["port", name]).stdout;
    let host_port = |guest: &str| -> u16 {
        ports
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{guest} -> 127.0.0.1:")))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no {guest} in {ports:?}"))
    };
    let (tcp, udp) = (host_port("8000/tcp"), host_port("9000/udp"));
    let peer = eventually("an answer on the published TCP port", 60, || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", tcp)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).ok()?;
        (!out.is_empty()).then_some(out)
    });
    assert_eq!(peer.trim(), "169.254.1.1", "the guest's view of the client");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let echo = eventually("an echo on the published UDP port", 60, || {
        sock.send_to(b"ping-udp", ("127.0.0.1", udp)).ok()?;
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    assert_eq!(echo, "169.254.1.1 ping-udp");
    let via = ok(&["inspect", name]).json()[0]["boot"]["published"]["via"].clone();
    assert_eq!(via, "link");
}

#[test]
fn python3_runs_and_a_box_keeps_its_files_until_rm() {
    let Some(py) = image("python3") else { return };
    let _rm = Cleanup("ri-py");
    ok(&[
        "run",
        "-d",
        "--name",
        "ri-py",
        "--memory",
        "200m",
        "-p",
        "127.0.0.1::8000",
        "-p",
        "127.0.0.1::9000/udp",
        &py.reference,
        "python3",
        "-c",
        PEER_SERVERS,
    ]);
    eventually("python3's first line", 120, || {
        ok(&["logs", "ri-py"])
            .stdout
            .contains("python 3")
            .then_some(())
    });
    assert_published_ports_reach_python("ri-py");
    // `--memory 200m` is the workload's, as under Docker: 150 MiB fits (before, the VM had
    // 200 MiB and the guest's own share left ~90 MiB, so this was OOM-killed), 250 MiB does
    // not, and exec sessions are held to the same limit.
    let cgroup = ok(&["exec", "ri-py", "cat", "/proc/self/cgroup"]);
    assert_eq!(cgroup.stdout.trim(), "0::/a3s-workload");
    let fits = ok(&[
        "exec",
        "ri-py",
        "python3",
        "-c",
        "print(len(bytearray(150 << 20)) >> 20)",
    ]);
    assert_eq!(fits.stdout.trim(), "150");
    let over = run(&[
        "exec",
        "ri-py",
        "python3",
        "-c",
        "print(len(bytearray(250 << 20)) >> 20)",
    ]);
    assert_eq!(over.code, 137, "{over:?}");
    let stats = ok(&["stats", "--no-stream", "--format", "json", "ri-py"]).json_lines();
    assert_eq!(stats[0]["mem_limit_bytes"], 200 << 20, "{stats}");
    ok(&[
        "exec",
        "ri-py",
        "python3",
        "-c",
        "open('/var/kept.txt', 'w').write('written-in-the-box\\n')",
    ]);
    ok(&["stop", "ri-py"]);
    ok(&["start", "ri-py"]);
    let kept = ok(&["exec", "ri-py", "cat", "/var/kept.txt"]);
    assert_eq!(kept.stdout, "written-in-the-box\n");
    assert_published_ports_reach_python("ri-py");

    // A new box of the same image starts from the image, not from another box's layer.
    let fresh = ok(&[
        "run",
        "--rm",
        &py.reference,
        "python3",
        "-c",
        "import os; print(os.path.exists('/var/kept.txt'))",
    ]);
    assert_eq!(fresh.stdout.trim(), "False");

    // `rm` deletes the box's disk.
    let id = box_id("ri-py");
    let disks = box_disks(&id);
    assert!(
        !disks.is_empty(),
        "no per-box disk (a file of 1 MiB or more whose path names {id}) under {}",
        env().home.path().display()
    );
    ok(&["rm", "-f", "ri-py"]);
    let left: Vec<_> = disks.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "rm left the box's disk behind: {left:?}");
    assert!(box_disks(&id).is_empty());
}

#[test]
fn an_image_with_a_600_mib_file_boots_at_the_default_memory_and_the_file_is_intact() {
    let Some(big) = image("big") else { return };
    let file = big.file.as_deref().expect("big image names its file");
    let want = big
        .file_sha256
        .as_deref()
        .expect("big image records the sha256");
    let r = run(&[
        "run",
        "--rm",
        &big.reference,
        "sh",
        "-c",
        &format!("sha256sum {file}; grep MemTotal /proc/meminfo >&2"),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let got = r.stdout.split_whitespace().next().unwrap_or_default();
    assert_eq!(
        got,
        want,
        "sha256 of {file} in the guest ({})",
        r.stderr.trim()
    );
    eprintln!(
        "real_images: {} MiB image checked in a guest with {}",
        big.unpacked_bytes >> 20,
        r.stderr
            .lines()
            .find(|l| l.starts_with("MemTotal"))
            .unwrap_or("no MemTotal line")
    );
}

/// The same nginx image as a Kubernetes pod's container (`a3s-box cri serve`, real crictl):
/// its root is the image's erofs under its own overlay, shared into the pod VM (no copy), with
/// kubelet's `/etc/hosts` mounted; a second container of the pod fetches its page on the
/// pod's localhost, and the container's writes land in its writable layer on the host.
#[test]
fn nginx_runs_as_a_pod_container_reached_on_the_pods_localhost() {
    let Some(nginx) = image("nginx") else { return };
    let env = env();
    let server = crate::cri::CriServer::start(env);
    let dir = env.path("ri-pod");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("etc-hosts"),
        "127.0.0.1\tlocalhost\n10.9.8.7\tkubelet-host\n",
    )
    .unwrap();
    let pod_config = dir.join("pod.json");
    let pod_json = serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u-ri-web", "attempt": 0},
        "hostname": "web-0",
        "log_directory": dir.join("logs").to_str().unwrap(),
    });
    let pod = server.run_pod(&pod_config, &pod_json);
    let create = |name: &str, config: serde_json::Value| {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, config.to_string()).unwrap();
        let started = Instant::now();
        let id = server.create_in(&pod, &path, &pod_config);
        eprintln!(
            "real_images: CreateContainer {name} took {:?}",
            started.elapsed()
        );
        server.ok(&["start", &id]);
        id
    };
    let hosts = serde_json::json!([{
        "host_path": dir.join("etc-hosts").to_str().unwrap(),
        "container_path": "/etc/hosts",
    }]);
    let web = create(
        "nginx",
        serde_json::json!({
            "metadata": {"name": "nginx"},
            "image": {"image": nginx.reference},
            "log_path": "nginx.log",
            "mounts": hosts,
        }),
    );
    let client = create(
        "client",
        serde_json::json!({
            "metadata": {"name": "client"},
            "image": {"image": "busybox"},
            "command": ["sleep", "2147483647"],
            "mounts": hosts,
        }),
    );
    let page = server.ok(&[
        "exec",
        "-s",
        &client,
        "sh",
        "-c",
        "until wget -q -O - http://127.0.0.1/; do sleep 0.5; done",
    ]);
    assert!(page.stdout.contains(NGINX_PAGE), "{}", page.stdout);
    let resolved = server.ok(&["exec", "-s", &web, "getent", "hosts", "kubelet-host"]);
    assert!(resolved.stdout.contains("10.9.8.7"), "{}", resolved.stdout);
    // What the container writes lands in its own writable layer, on the host.
    server.ok(&[
        "exec",
        "-s",
        &web,
        "sh",
        "-c",
        "echo from-the-pod > /var/www/html/new.html",
    ]);
    let upper = env.path("pods/layers").join(&pod).join(&web).join("upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("var/www/html/new.html")).unwrap(),
        "from-the-pod\n"
    );
    let again = server.ok(&[
        "exec",
        "-s",
        &client,
        "wget",
        "-q",
        "-O",
        "-",
        "http://127.0.0.1/new.html",
    ]);
    assert_eq!(again.stdout.trim_end(), "from-the-pod");
    // Stopping nginx (its workers go with its master) and removing the pod.
    server.ok(&["stop", "--timeout", "0", &web]);
    server.ok(&["stopp", &pod]);
    server.ok(&["rmp", &pod]);
    assert!(
        !upper.exists(),
        "the writable layer goes with the container"
    );
}
