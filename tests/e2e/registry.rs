//! A real Debian `docker-registry` on 127.0.0.1 (free port, temp config), and images built with
//! `umoci` and pushed with `skopeo`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A registry process, killed on drop.
pub(crate) struct LocalRegistry {
    pub(crate) addr: String,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) creds: Option<(String, String)>,
    child: Child,
    token_server: Option<Child>,
}

/// How the registry authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Htpasswd(&'a str, &'a str),
    Token(&'a str, &'a str),
}

impl LocalRegistry {
    pub(crate) fn start() -> Self {
        Self::start_with(Auth::None)
    }

    pub(crate) fn with_htpasswd(user: &str, pass: &str) -> Self {
        Self::start_with(Auth::Htpasswd(user, pass))
    }

    /// Bearer-token auth: a token server (`token_server.py`, ES256 JWTs) on another port.
    pub(crate) fn with_token_auth(user: &str, pass: &str) -> Self {
        Self::start_with(Auth::Token(user, pass))
    }

    fn start_with(auth: Auth<'_>) -> Self {
        for _ in 0..5 {
            if let Some(r) = Self::try_start(auth) {
                return r;
            }
        }
        panic!("docker-registry did not start");
    }

    fn try_start(auth: Auth<'_>) -> Option<Self> {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: a3s-test-secret\n",
            dir.path().join("data").display()
        );
        let mut token_server = None;
        let mut creds = None;
        match auth {
            Auth::None => {}
            Auth::Htpasswd(user, pass) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, pass])
                    .output()
                    .expect("htpasswd");
                assert!(out.status.success());
                std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                ));
                creds = Some((user.to_owned(), pass.to_owned()));
            }
            Auth::Token(user, pass) => {
                let (key, cert) = (dir.path().join("token.key"), dir.path().join("token.crt"));
                run_ok(
                    Command::new("openssl")
                        .args([
                            "req",
                            "-x509",
                            "-newkey",
                            "ec",
                            "-pkeyopt",
                            "ec_paramgen_curve:prime256v1",
                        ])
                        .args([
                            "-nodes",
                            "-days",
                            "1",
                            "-subj",
                            "/CN=a3s-test-token",
                            "-keyout",
                        ])
                        .arg(&key)
                        .arg("-out")
                        .arg(&cert),
                );
                let tport = TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                let server = Command::new("python3")
                    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/token_server.py"))
                    .arg(tport.to_string())
                    .arg(&key)
                    .arg(&cert)
                    .args(["a3s-test-registry", "a3s-test-issuer", user, pass])
                    .spawn()
                    .expect("token server");
                token_server = Some(server);
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{tport}/token\n    service: a3s-test-registry\n    issuer: a3s-test-issuer\n    rootcertbundle: {}\n",
                    cert.display()
                ));
                creds = Some((user.to_owned(), pass.to_owned()));
                let deadline = Instant::now() + Duration::from_secs(20);
                while TcpStream::connect(("127.0.0.1", tport)).is_err() && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning docker-registry");
        let mut reg = Self {
            addr,
            dir,
            creds,
            child,
            token_server,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = reg.child.try_wait() {
                return None; // exited (port taken?)
            }
            if reg.answers() {
                return Some(reg);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(&self.addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).as_bytes())
            .is_err()
        {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if n >= 12 && (buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200") || buf[9..12] == *b"401"))
    }

    /// Where the registry keeps a blob's bytes (to corrupt them).
    pub(crate) fn blob_file(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// `skopeo copy oci:<layout>:<name> docker://<addr>/<repo>`.
    pub(crate) fn push_layout(&self, layout: &Path, name: &str, repo: &str) {
        self.push_layout_with(layout, name, repo, &[]);
    }

    /// `push_layout` with extra skopeo flags (`--all`, `--format v2s2`).
    pub(crate) fn push_layout_with(&self, layout: &Path, name: &str, repo: &str, extra: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(extra);
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        cmd.arg(format!("oci:{}:{name}", layout.display()))
            .arg(format!("docker://{}/{repo}", self.addr));
        run_ok(&mut cmd);
    }

    /// The digest skopeo sees for `repo` (tag or digest).
    pub(crate) fn remote_digest(&self, repo: &str) -> String {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"]);
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--creds={u}:{p}"));
        }
        cmd.arg(format!("docker://{}/{repo}", self.addr));
        run_ok(&mut cmd).trim().to_owned()
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = &mut self.token_server {
            let _ = t.kill();
            let _ = t.wait();
        }
    }
}

pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An OCI layout built with umoci: one layer per step, each step editing the rootfs.
pub(crate) struct Layout {
    pub(crate) dir: tempfile::TempDir,
}

impl Layout {
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join("oci")
    }
}

/// Builds `name` in a fresh layout: busybox-static as /bin/busybox with /bin/sh, entrypoint
/// `/bin/sh`, then `steps` as further layers.
pub(crate) fn build_image(name: &str, steps: &[&dyn Fn(&Path)]) -> Layout {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("oci");
    let image = format!("{}:{name}", layout.display());
    run_ok(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    );
    run_ok(Command::new("umoci").args(["new", "--image", &image]));
    run_ok(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--os",
        "linux",
        "--architecture",
        "amd64",
        "--config.entrypoint",
        "/bin/sh",
        "--config.workingdir",
        "/srv",
        "--config.env",
        "GREETING=hello",
    ]));
    let base = |root: &Path| {
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        std::fs::create_dir_all(root.join("srv")).unwrap();
    };
    let mut all: Vec<&dyn Fn(&Path)> = vec![&base];
    all.extend_from_slice(steps);
    for (i, step) in all.iter().enumerate() {
        let bundle = dir.path().join(format!("bundle{i}"));
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--image", &image])
                .arg(&bundle),
        );
        step(&bundle.join("rootfs"));
        run_ok(
            Command::new("umoci")
                .args(["repack", "--image", &image])
                .arg(&bundle),
        );
        std::fs::remove_dir_all(&bundle).unwrap();
    }
    Layout { dir }
}

/// A hand-written single-layer OCI layout (for layers no tool would produce).
pub(crate) fn layout_with_layer(name: &str, layer_tar: &[u8]) -> Layout {
    layout_with(
        name,
        layer_tar,
        layer_tar,
        "application/vnd.oci.image.layer.v1.tar",
        &["amd64"],
    )
}

/// A hand-written layout: `blob` is the layer as stored (maybe compressed), `tar` its
/// uncompressed bytes. With several architectures the layout's entry is an image index.
pub(crate) fn layout_with(
    name: &str,
    tar: &[u8],
    blob: &[u8],
    media_type: &str,
    arches: &[&str],
) -> Layout {
    use sha2::{Digest as _, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("oci");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> String {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(tar)));
    let layer = put(blob);
    let mut entries = Vec::new();
    for arch in arches {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"], "Labels": {"arch": arch}},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]}
        }))
        .unwrap();
        let config_digest = put(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": media_type, "digest": layer, "size": blob.len()}]
        }))
        .unwrap();
        let digest = put(&manifest);
        entries.push(serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": manifest.len(), "platform": {"architecture": arch, "os": "linux"}}));
    }
    let mut top = if entries.len() == 1 {
        let mut e = entries.pop().unwrap();
        e.as_object_mut().unwrap().remove("platform");
        e
    } else {
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries
        }))
        .unwrap();
        let digest = put(&index);
        serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": index.len()})
    };
    top["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
    )
    .unwrap();
    Layout { dir }
}
