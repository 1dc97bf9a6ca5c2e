//! `a3s-box compose` end to end (issue 19). Like the bridge tests, every `a3s-box` process (so
//! every bridge, TAP, nft table, VM and published port) lives in the test's own network
//! namespace, removed by a drop guard.
//!
//! VM boots: 4 (db, api, web, a late box) + 7 (a crashing service three times, a confidential
//! service on the project network, two services on a strict network, one on two networks) + 2
//! (a built service, recreated after a rebuild) = 13.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::bridge::{ip_of, Lab};
use crate::support::Run;

/// Real images (scripts/test-images, cached) loaded into the bridge tests' home; `None` when
/// the apt mirror is out of reach (an error under CI).
fn images() -> Option<&'static std::collections::BTreeMap<String, String>> {
    static IMAGES: OnceLock<Option<std::collections::BTreeMap<String, String>>> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
            let images = crate::support::test_images(
                &["nginx", "postgres", "python3"],
                "the compose stack test",
            )?;
            let home = crate::bridge::env();
            let mut map = std::collections::BTreeMap::new();
            for v in images {
                let archive = v["archive"].as_str().unwrap();
                let r = home.run(&["load", "-i", archive]);
                assert_eq!(r.code, 0, "load {archive}: {}", r.stderr);
                map.insert(
                    v["name"].as_str().unwrap().to_owned(),
                    v["ref"].as_str().unwrap().to_owned(),
                );
            }
            Some(map)
        })
        .as_ref()
}

/// A compose project directory; `down -v` runs on drop whatever happened.
struct Project<'a> {
    lab: &'a Lab,
    dir: tempfile::TempDir,
}

impl<'a> Project<'a> {
    fn new(lab: &'a Lab, name: &str, yaml: &str) -> Self {
        let dir = tempfile::Builder::new().prefix(name).tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        Self { lab, dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("compose.yaml")
    }

    fn compose(&self, args: &[&str]) -> Run {
        let file = self.file();
        let mut argv = vec!["compose", "-f", file.to_str().unwrap()];
        argv.extend(args);
        self.lab.run(&argv)
    }

    fn ok(&self, args: &[&str]) -> Run {
        let r = self.compose(args);
        assert_eq!(r.code, 0, "compose {args:?}:\n{}\n{}", r.stdout, r.stderr);
        r
    }
}

impl Drop for Project<'_> {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans"]);
    }
}

fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A TCP server in python3-minimal's stdlib: for each request, opens a Postgres connection
/// to `db` and to `database` (the alias), sends an SSLRequest and reports the one-byte answer
/// (`N`: a real Postgres said no to TLS).
const API: &str = r#"
import socket, struct
def ask(host):
    try:
        s = socket.create_connection((host, 5432), timeout=5)
        s.sendall(struct.pack('!ii', 8, 80877103))
        b = s.recv(1).decode()
        s.close()
        return b
    except Exception as e:
        return 'error:' + type(e).__name__
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('0.0.0.0', 8000))
srv.listen(8)
print('api listening', flush=True)
while True:
    c, _ = srv.accept()
    c.recv(4096)
    body = 'db:%s database:%s\n' % (ask('db'), ask('database'))
    c.sendall(('HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s' % (len(body), body)).encode())
    c.close()
"#;

fn stack_yaml(images: &std::collections::BTreeMap<String, String>) -> String {
    let indent = |s: &str| {
        s.lines()
            .map(|l| format!("          {l}\n"))
            .collect::<String>()
    };
    format!(
        r#"name: cstack
services:
  db:
    image: {pg}
    volumes: ["dbdata:/var/lib/postgresql"]
    healthcheck:
      test: ["CMD", "pg_isready", "-h", "127.0.0.1"]
      interval: 1s
      timeout: 10s
      retries: 300
    networks:
      default:
        aliases: [database]
  api:
    image: {py}
    command:
      - python3
      - -c
      - |
{api}    depends_on:
      db:
        condition: service_healthy
  web:
    image: {nginx}
    command:
      - sh
      - -c
      - >-
        printf 'server {{ listen 80; location /api/ {{ proxy_pass http://api:8000/; }} }}\n'
        > /etc/nginx/sites-enabled/default && exec nginx -g 'daemon off;'
    ports: ["127.0.0.1:18080:80"]
    depends_on: [api]
volumes:
  dbdata:
"#,
        pg = images["postgres"],
        py = images["python3"],
        nginx = images["nginx"],
        api = indent(API),
    )
}

/// The host-side state a project must not leave behind, as seen in the namespace.
fn leftovers(lab: &Lab, ids: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    let links = lab.sh(&["ip", "-o", "link", "show"]).stdout;
    left.extend(
        links
            .lines()
            .filter(|l| l.contains("a3s-tp-") || l.contains("a3s-br-"))
            .map(|l| format!("link: {l}")),
    );
    let tables = lab.sh(&["nft", "list", "tables"]).stdout;
    left.extend(
        tables
            .lines()
            .filter(|l| l.contains("a3s-"))
            .map(|l| format!("nft: {l}")),
    );
    for e in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if ids.iter().any(|id| cmdline.contains(id.as_str())) {
            left.push(format!(
                "process {}: {cmdline}",
                e.file_name().to_string_lossy()
            ));
        }
    }
    left
}

#[test]
fn a_web_api_db_stack_comes_up_in_order_resolves_names_and_goes_away_without_a_trace() {
    let Some(images) = images() else { return };
    let lab = Lab::new();
    let p = Project::new(&lab, "cstack", &stack_yaml(images));
    let up = p.ok(&["up", "-d"]);
    // Dependency order: db healthy before api is created, api before web.
    let pos = |what: &str| {
        up.stderr
            .find(what)
            .unwrap_or_else(|| panic!("{what:?} not in {}", up.stderr))
    };
    assert!(pos("Network cstack_default  Created") < pos("Box cstack-db-1  Created"));
    assert!(pos("Volume cstack_dbdata  Created") < pos("Box cstack-db-1  Started"));
    assert!(pos("Box cstack-db-1  Healthy") < pos("Box cstack-api-1  Created"));
    assert!(pos("Box cstack-api-1  Started") < pos("Box cstack-web-1  Created"));
    // Through web's published port, nginx → api (by service name) → db, by name and alias.
    let body = eventually("curl through web to db", 300, || {
        let r = lab.curl("http://127.0.0.1:18080/api/");
        r.stdout.contains("db:").then_some(r.stdout)
    });
    assert_eq!(body.trim(), "db:N database:N", "{body}");
    let ps = p.ok(&["ps", "--format", "json"]).json();
    let states: Vec<(&str, &str)> = ps
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["service"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("db", "running"), ("api", "running"), ("web", "running")]
    );
    // A box started after the others is resolvable by them at once.
    let late = lab.run(&[
        "run",
        "-d",
        "--name",
        "cstack-late",
        "--network",
        "cstack_default",
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(late.code, 0, "{}", late.stderr);
    let late_ip = ip_of(&lab.inspect("cstack_default"), "cstack-late");
    let r = lab.run(&["exec", "cstack-api-1", "getent", "hosts", "cstack-late"]);
    assert!(r.stdout.starts_with(&late_ip), "{r:?}");
    let r = lab.run(&["compose", "-f", p.file().to_str().unwrap(), "logs", "api"]);
    assert!(r.stdout.contains("api | api listening"), "{r:?}");
    // `up` again: nothing changed, nothing is recreated.
    let id = |n: &str| {
        lab.run(&["inspect", n]).json()[0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (old_web, old_api) = (id("cstack-web-1"), id("cstack-api-1"));
    let again = p.ok(&["up", "-d"]);
    assert!(!again.stderr.contains("Recreate"), "{}", again.stderr);
    assert_eq!(
        again.stderr.matches("  Running").count(),
        3,
        "{}",
        again.stderr
    );
    // web's port changes: only web is made again, and answers on the new port.
    let changed = stack_yaml(images).replace("127.0.0.1:18080:80", "127.0.0.1:18081:80");
    std::fs::write(p.file(), &changed).unwrap();
    let up = p.ok(&["up", "-d"]);
    assert!(
        up.stderr.contains("Box cstack-web-1  Recreate"),
        "{}",
        up.stderr
    );
    assert!(
        up.stderr.contains("Box cstack-api-1  Running"),
        "{}",
        up.stderr
    );
    assert!(
        up.stderr.contains("Box cstack-db-1  Running"),
        "{}",
        up.stderr
    );
    assert_ne!(id("cstack-web-1"), old_web);
    assert_eq!(id("cstack-api-1"), old_api);
    eventually("curl through the recreated web", 300, || {
        lab.curl("http://127.0.0.1:18081/api/")
            .stdout
            .contains("db:N")
            .then_some(())
    });
    // --no-recreate keeps a changed service's box.
    std::fs::write(
        p.file(),
        changed.replace("depends_on: [api]", "depends_on: [api]\n    hostname: web2"),
    )
    .unwrap();
    let kept = p.ok(&["up", "-d", "--no-recreate"]);
    assert!(!kept.stderr.contains("Recreate"), "{}", kept.stderr);
    let conflict = p.compose(&["up", "-d", "--no-recreate", "--force-recreate"]);
    assert_eq!(conflict.code, 2, "{conflict:?}");
    // down -v: no box, network, volume, TAP, nft table or process is left.
    let mut ids: Vec<String> = ["cstack-db-1", "cstack-api-1", "cstack-web-1", "cstack-late"]
        .iter()
        .map(|n| id(n))
        .collect();
    ids.push(old_web);
    assert_eq!(lab.run(&["rm", "-f", "cstack-late"]).code, 0);
    let down = p.ok(&["down", "-v"]);
    assert!(
        down.stderr.contains("Volume cstack_dbdata  Removed"),
        "{}",
        down.stderr
    );
    let ps = lab.run(&["ps", "-a"]).stdout;
    assert!(!ps.contains("cstack-"), "{ps}");
    assert!(!lab
        .run(&["network", "ls"])
        .stdout
        .contains("cstack_default"));
    assert!(!lab.run(&["volume", "ls"]).stdout.contains("cstack_dbdata"));
    ids.retain(|id| !id.is_empty());
    let left = leftovers(&lab, &ids);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

#[test]
fn restart_policies_confidential_secrets_strict_isolation_and_refusals() {
    let lab = Lab::new();
    // Refusals first: they boot nothing.
    let bad = Project::new(
        &lab,
        "cbad",
        "services:\n  web:\n    image: busybox\n    scale: 2\n",
    );
    let r = bad.compose(&["up", "-d"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("line 4: services.web.scale is not supported"),
        "{}",
        r.stderr
    );
    let secret = "compose-secret-7f3a";
    let p = Project::new(
        &lab,
        "cextra",
        r#"name: cextra
services:
  crash:
    image: busybox
    command: sh -c 'echo boom; exit 3'
    restart: on-failure:2
    networks: [quiet]
  vault:
    image: busybox
    command: cat /run/secrets/token
    secrets: [token]
    x-a3s:
      tee: simulate
  iso-srv:
    image: busybox
    command: httpd -f -p 80 -h /etc
    networks: [quiet]
  iso-cli:
    image: busybox
    command: sleep 600
    networks: [quiet]
  peek:
    image: busybox
    command: sleep 600
    networks: [default, quiet]
networks:
  quiet:
    x-a3s: {isolation: strict}
secrets:
  token:
    file: ./token.txt
"#,
    );
    std::fs::write(p.dir.path().join("token.txt"), secret).unwrap();
    // `config` checks and prints the project as it will run, booting nothing: YAML in the
    // compose file's shape (as `docker compose config`), or the same document as JSON.
    let cfg = p.ok(&["config", "--format", "json"]).json();
    assert_eq!(
        cfg["services"]["vault"]["x-a3s"]["tee"], "simulate",
        "{cfg}"
    );
    assert_eq!(cfg["services"]["crash"]["restart"], "on-failure:2", "{cfg}");
    assert_eq!(
        cfg["services"]["iso-cli"]["networks"],
        serde_json::json!({"quiet": null})
    );
    assert_eq!(cfg["networks"]["quiet"]["name"], "cextra_quiet", "{cfg}");
    assert_eq!(
        cfg["secrets"]["token"]["file"],
        p.dir.path().join("token.txt").to_str().unwrap()
    );
    let yaml = p.ok(&["config"]).stdout;
    assert!(yaml.starts_with("name: cextra\n"), "{yaml}");
    // An independent parser (PyYAML) reads the YAML as the same document.
    assert_eq!(pyyaml(&yaml), cfg, "{yaml}");
    // The printed file is itself a compose file for the same project.
    let printed = p.dir.path().join("printed.yaml");
    std::fs::write(&printed, &yaml).unwrap();
    let again = lab.run(&["compose", "-f", printed.to_str().unwrap(), "config"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout, yaml);
    p.ok(&["up", "-d"]);
    // on-failure:2: the first run and two restarts, then it stays down with its exit code.
    let crash = eventually("crash to give up", 300, || {
        let rec = lab.run(&["inspect", "cextra-crash-1"]).json()[0].clone();
        (rec["state"]["status"] == "exited").then_some(rec)
    });
    assert_eq!(crash["state"]["exit_code"], 3, "{crash}");
    assert_eq!(crash["start_count"], 3, "{crash}");
    let logs = lab.run(&["logs", "cextra-crash-1"]).stdout;
    assert_eq!(logs.matches("boom").count(), 3, "{logs}");
    // The confidential service got its secret through attestation, in /run/secrets.
    let out = eventually("vault to print its secret", 300, || {
        let l = lab.run(&["logs", "cextra-vault-1"]).stdout;
        l.contains(secret).then_some(l)
    });
    assert_eq!(out.trim(), secret);
    let vault = lab.run(&["inspect", "cextra-vault-1"]).json()[0].clone();
    assert_eq!(vault["tee"]["simulated"], true, "{vault}");
    // It did so from the project's bridge network (through the monitor's relay on the
    // gateway), where a plain service finds it by name.
    let vault_ip = ip_of(&lab.inspect("cextra_default"), "cextra-vault-1");
    assert_eq!(
        vault["NetworkSettings"]["Networks"]["cextra_default"]["IPAddress"],
        vault_ip.as_str(),
        "{vault}"
    );
    // Its address is not measured: `measure` predicts a bridge box's launch before create.
    let predicted = lab.run(&[
        "measure",
        "--image",
        "busybox",
        "--tee-simulate",
        "--network",
        "cextra_default",
    ]);
    assert_eq!(predicted.code, 0, "{predicted:?}");
    assert_eq!(
        predicted.stdout.trim(),
        vault["tee"]["measurement"],
        "{vault}"
    );
    let ns = lab.run(&["exec", "cextra-peek-1", "nslookup", "vault"]);
    assert!(ns.stdout.contains(&vault_ip), "{ns:?}");
    // peek is on two networks: it also finds iso-srv on the strict one.
    let iso_ip = ip_of(&lab.inspect("cextra_quiet"), "cextra-iso-srv-1");
    let ns = lab.run(&["exec", "cextra-peek-1", "nslookup", "iso-srv"]);
    assert!(ns.stdout.contains(&iso_ip), "{ns:?}");
    let audit = lab.run(&["audit", "--action", "tee.kbs_relay", "--format", "json"]);
    assert_eq!(audit.code, 0, "{audit:?}");
    assert!(audit.stdout.contains("tee.kbs_relay"), "{audit:?}");
    // Strict isolation: the client resolves the server but cannot reach it; the host can.
    let srv_ip = ip_of(&lab.inspect("cextra_quiet"), "cextra-iso-srv-1");
    eventually("iso-srv to answer the gateway", 120, || {
        (lab.curl(&format!("http://{srv_ip}/hostname")).code == 0).then_some(())
    });
    let ns = lab.run(&["exec", "cextra-iso-cli-1", "nslookup", "iso-srv"]);
    assert!(ns.stdout.contains(&srv_ip), "{ns:?}");
    let get = lab.run(&[
        "exec",
        "cextra-iso-cli-1",
        "wget",
        "-q",
        "-O",
        "-",
        "-T",
        "3",
        "http://iso-srv/hostname",
    ]);
    assert_ne!(get.code, 0, "a strict network let a peer through: {get:?}");
    // Per-service commands go to the service's box.
    let e = p.compose(&["exec", "iso-srv", "cat", "/etc/hostname"]);
    assert_eq!(e.code, 0, "{e:?}");
    let stop = p.ok(&["stop", "-t", "0", "iso-cli"]);
    assert_eq!(stop.stdout.trim(), "cextra-iso-cli-1");
    let ps = p.ok(&["ps", "--format", "json"]).json();
    let cli = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "iso-cli")
        .unwrap()
        .clone();
    assert_eq!(cli["state"], "exited", "{ps}");
    p.ok(&["down", "-v"]);
    assert!(!lab.run(&["ps", "-a"]).stdout.contains("cextra-"));
}

#[test]
fn build_sections_are_built_and_a_changed_image_recreates_the_service() {
    let lab = Lab::new();
    let p = Project::new(
        &lab,
        "cbuild",
        r#"name: cbuild
services:
  app:
    build:
      context: ./app
      dockerfile: app.Dockerfile
      args: {GREETING: hello-from-build}
    command: sh -c 'cat /greeting.txt; echo "greeting=$GREETING"; exec sleep 600'
"#,
    );
    let app = p.dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(
        app.join("app.Dockerfile"),
        "FROM busybox\nARG GREETING=unset\nENV GREETING=${GREETING}\nCOPY greeting.txt /greeting.txt\n",
    )
    .unwrap();
    std::fs::write(app.join("greeting.txt"), "file-v1\n").unwrap();
    let cfg = p.ok(&["config", "--format", "json"]).json();
    assert_eq!(
        cfg["services"]["app"]["build"]["dockerfile"], "app.Dockerfile",
        "{cfg}"
    );
    assert_eq!(
        cfg["services"]["app"]["build"]["args"]["GREETING"],
        "hello-from-build"
    );
    // `compose build` names the image as Docker Compose does: <project>-<service>.
    let b = p.ok(&["build"]);
    assert!(
        b.stderr.contains("Image cbuild-app  Building"),
        "{}",
        b.stderr
    );
    let digest1 = b.stdout.trim().to_owned();
    assert!(digest1.starts_with("sha256:"), "{b:?}");
    p.ok(&["up", "-d"]);
    let first = lab.run(&["inspect", "cbuild-app-1"]).json()[0].clone();
    assert_eq!(first["image_digest"], digest1.as_str(), "{first}");
    let out = eventually("app to print", 300, || {
        let l = lab.run(&["logs", "cbuild-app-1"]).stdout;
        l.contains("greeting=").then_some(l)
    });
    assert!(
        out.contains("file-v1") && out.contains("greeting=hello-from-build"),
        "{out}"
    );
    // A changed context alone: `up` neither rebuilds (the image exists) nor recreates.
    std::fs::write(app.join("greeting.txt"), "file-v2\n").unwrap();
    let same = p.ok(&["up", "-d"]);
    assert!(!same.stderr.contains("Building"), "{}", same.stderr);
    assert!(!same.stderr.contains("Recreate"), "{}", same.stderr);
    // `up --build` rebuilds; the tag now names another digest, so the box is recreated although
    // the service's definition did not change.
    let again = p.ok(&["up", "-d", "--build"]);
    assert!(
        again.stderr.contains("Box cbuild-app-1  Recreate"),
        "{}",
        again.stderr
    );
    let second = lab.run(&["inspect", "cbuild-app-1"]).json()[0].clone();
    assert_ne!(second["image_digest"], first["image_digest"], "{second}");
    assert_ne!(second["id"], first["id"]);
    let out = eventually("the new app to print", 300, || {
        let l = lab.run(&["logs", "cbuild-app-1"]).stdout;
        l.contains("greeting=").then_some(l)
    });
    assert!(out.contains("file-v2"), "{out}");
    p.ok(&["down"]);
}

/// `text` parsed by PyYAML (`yaml.safe_load`), as JSON.
fn pyyaml(text: &str) -> serde_json::Value {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with python3-yaml (scripts/setup installs them)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PyYAML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
