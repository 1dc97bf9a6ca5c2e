//! The shared fixture: one simulated home (Milan by default, Turin provisioned too), generated
//! once per test binary, plus helpers to run `openssl`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use a3s_attestation::Product;
use a3s_simulator::Simulator;
use tempfile::TempDir;

pub(crate) struct Fixture {
    pub(crate) home: TempDir,
    pub(crate) sim: Arc<Simulator>,
}

/// A fresh home under the target directory (leftovers stay out of /tmp).
pub(crate) fn temp_home() -> TempDir {
    tempfile::Builder::new()
        .prefix("sim-home-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("creating a temporary home")
}

/// Statics are never dropped, so the shared home of an earlier run is still there: remove homes
/// older than an hour (a concurrent run's home is younger).
fn remove_old_homes() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 3600);
        if old && entry.file_name().to_string_lossy().starts_with("sim-home-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub(crate) static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    remove_old_homes();
    let home = temp_home();
    let started = Instant::now();
    // Products have separate locks: generate both roots in parallel.
    std::thread::scope(|s| {
        for product in [Product::Milan, Product::Turin] {
            let home = home.path();
            s.spawn(move || {
                Simulator::open_or_create(home, product).expect("creating a simulated root");
                eprintln!(
                    "simulated {product} root generated after {:.2?}",
                    started.elapsed()
                );
            });
        }
    });
    let sim = Simulator::open_or_create(home.path(), Product::Milan).expect("reopening");
    Fixture {
        home,
        sim: Arc::new(sim),
    }
});

pub(crate) fn sim() -> &'static Simulator {
    &FIXTURE.sim
}

pub(crate) fn home() -> &'static Path {
    FIXTURE.home.path()
}

/// Runs openssl with `args`; returns (success, stdout + stderr).
pub(crate) fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("running openssl");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Writes `bytes` to `dir/name` and returns the path as a string.
pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, bytes).expect("writing a test file");
    path.to_str().expect("temp paths are UTF-8").to_owned()
}

/// The real AMD fixtures in `fixtures/snp`.
pub(crate) fn fixture(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/snp")
        .join(rel);
    path.to_str().expect("fixture paths are UTF-8").to_owned()
}

/// PEM of a DER certificate, through openssl.
pub(crate) fn pem_of(dir: &Path, name: &str, der: &[u8]) -> String {
    let der_path = write(dir, &format!("{name}.der"), der);
    let pem_path = dir.join(format!("{name}.pem"));
    let pem = pem_path.to_str().expect("UTF-8").to_owned();
    let (ok, out) = openssl(&["x509", "-inform", "der", "-in", &der_path, "-out", &pem]);
    assert!(ok, "{out}");
    pem
}
