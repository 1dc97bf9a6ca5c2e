//! PostgreSQL storage against a real PostgreSQL 15 started for each test in a temporary
//! directory on a free loopback port, and stopped when the test ends whatever its outcome
//! (the server is owned by the test and stopped in `Drop`, which also runs on a panic).
//! Without the server binaries the tests fail under `CI=true` and are skipped, loudly,
//! elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use a3s_kbs::storage::{EncryptedStorage, Kek, PostgresStorage, Storage};
use a3s_kbs::verifier::EvidenceVerifier;
use a3s_kbs::{AdminAuth, AppState, Config};
use axum::body::Body;
use axum::http::Request;

use crate::support::*;

const BIN: &str = "/usr/lib/postgresql/15/bin";

struct Server {
    dir: PathBuf,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = as_postgres(&format!("{BIN}/pg_ctl"))
            .args([
                "-D",
                &self.dir.join("data").display().to_string(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A command run as the `postgres` user when we are root (postgres refuses root).
fn as_postgres(program: &str) -> Command {
    if rustix_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn server() -> Option<Server> {
    {
        {
            if !Path::new(BIN).join("initdb").exists() {
                let why = format!(
                    "{BIN}/initdb not found (apt-get install postgresql-15, or scripts/setup)"
                );
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI=true: {why}"
                );
                eprintln!("\n\n!!!!! SKIPPING PostgreSQL tests: {why} !!!!!\n");
                return None;
            }
            let dir = PathBuf::from(format!(
                "/tmp/a3s-kbs-pg-{}-{}",
                std::process::id(),
                free_port()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            if rustix_is_root() {
                let ok = Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(&dir)
                    .status()
                    .unwrap();
                assert!(ok.success(), "chown postgres {}", dir.display());
            }
            let data = dir.join("data");
            let out = as_postgres(&format!("{BIN}/initdb"))
                .args([
                    "-D",
                    &data.display().to_string(),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "initdb: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let port = free_port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                dir.display()
            );
            let out = as_postgres(&format!("{BIN}/pg_ctl"))
                .args([
                    "-D",
                    &data.display().to_string(),
                    "-o",
                    &opts,
                    "-l",
                    &dir.join("log").display().to_string(),
                    "-w",
                    "start",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pg_ctl start: {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.join("log")).unwrap_or_default()
            );
            Some(Server { dir, port })
        }
    }
}

/// A server of its own with a fresh database; the URL (the server stops when dropped).
fn database(name: &str) -> Option<(Server, String)> {
    let s = server()?;
    let mut admin = postgres::Client::connect(
        &format!("postgres://postgres@127.0.0.1:{}/postgres", s.port),
        postgres::NoTls,
    )
    .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/{name}", s.port);
    Some((s, url))
}

#[test]
fn postgres_storage_behaves_like_sqlite() {
    let Some((_server, url)) = database("kbs_storage") else {
        return;
    };
    let s = PostgresStorage::connect(&url).unwrap();
    // The same checks the SQLite backend passes (see storage::tests::exercise).
    use a3s_kbs::storage::Namespace as N;
    assert_eq!(s.get(N::Resource, "a/b/c").unwrap(), None);
    s.put(N::Resource, "a/b/c", b"one").unwrap();
    s.put(N::Resource, "a/b/c", b"two").unwrap();
    assert_eq!(
        s.get(N::Resource, "a/b/c").unwrap().as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(s.get(N::Key, "a/b/c").unwrap(), None);
    s.put(N::Resource, "a/b/a", b"x").unwrap();
    let keys: Vec<String> = s
        .list(N::Resource)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["a/b/a", "a/b/c"]);
    assert!(s.delete(N::Resource, "a/b/c").unwrap());
    assert!(!s.delete(N::Resource, "a/b/c").unwrap());
    assert_eq!(s.put_if_absent(N::Key, "k", b"first").unwrap(), b"first");
    assert_eq!(s.put_if_absent(N::Key, "k", b"second").unwrap(), b"first");
    // A second connection (another replica) sees the same state.
    let t = PostgresStorage::connect(&url).unwrap();
    assert_eq!(
        t.get(N::Resource, "a/b/a").unwrap().as_deref(),
        Some(&b"x"[..])
    );
}

fn replica(url: &str, kek: &Path, admin: &p256::ecdsa::SigningKey) -> AppState {
    let storage: Arc<dyn Storage> = Arc::new(
        EncryptedStorage::new(
            PostgresStorage::connect(url).unwrap(),
            Kek::load_or_create(kek).unwrap(),
        )
        .unwrap(),
    );
    let verifier = EvidenceVerifier::new(None).allow_simulated(shared().sim.roots().unwrap());
    let mut config = Config::new(storage, verifier);
    config.admin = AdminAuth::key(*admin.verifying_key());
    AppState::new(config).unwrap()
}

#[test]
fn replicas_sharing_postgres_share_resources_reference_values_and_tokens() {
    let Some((_server, url)) = database("kbs_replicas") else {
        return;
    };
    let admin = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    // Replica B is given a copy of replica A's key-encryption key, as an operator would.
    let keys = tempfile::tempdir().unwrap();
    let (kek_a, kek_b) = (keys.path().join("a/kek"), keys.path().join("b/kek"));
    let a = replica(&url, &kek_a, &admin);
    std::fs::create_dir(keys.path().join("b")).unwrap();
    std::fs::copy(&kek_a, &kek_b).unwrap();
    let b = replica(&url, &kek_b, &admin);
    // A replica with another key is refused at start, naming the fix.
    let other = EncryptedStorage::new(
        PostgresStorage::connect(&url).unwrap(),
        Kek::load_or_create(&keys.path().join("c/kek")).unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(other.contains("--kek"), "{other}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let auth = admin_bearer(&admin);
        let put = Request::post("/kbs/v0/resource/fleet/db/password")
            .header("authorization", &auth)
            .body(Body::from("shared secret"))
            .unwrap();
        assert_eq!(send(&a, put).await.status, 200);
        let rv = serde_json::json!({"version": "0.1.0", "type": "sample", "payload":
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD,
                serde_json::json!({"snp_launch_measurement": [hex::encode(MEASUREMENT)]}).to_string())});
        let put = Request::post("/kbs/v0/reference-value")
            .header("authorization", &auth)
            .body(Body::from(rv.to_string()))
            .unwrap();
        assert_eq!(send(&b, put).await.status, 200);
        // Attest at replica A, read at replica B with the token.
        let (_, token, key) = attested(&a, MEASUREMENT).await;
        let r = send(&b, get("/kbs/v0/resource/fleet/db/password", Some(("authorization", &format!("Bearer {token}"))))).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let jwe = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(&key.decrypt(&jwe).unwrap()[..], b"shared secret");
    });
    // What PostgreSQL holds reveals no secret without the key file.
    let raw = PostgresStorage::connect(&url).unwrap();
    let stored = raw
        .get(a3s_kbs::storage::Namespace::Resource, "fleet/db/password")
        .unwrap()
        .unwrap();
    assert!(!stored.windows(6).any(|w| w == b"shared"));
}
