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

pub(crate) static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let home = temp_home();
    let started = Instant::now();
    let mut sim = Simulator::open_or_create(home.path(), Product::Milan).expect("creating Milan");
    let milan = started.elapsed();
    sim.ensure_product(Product::Turin).expect("creating Turin");
    eprintln!(
        "simulated roots generated: Milan {:.2?}, Turin {:.2?} (2 x RSA-4096 each)",
        milan,
        started.elapsed() - milan
    );
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

/// The real AMD fixtures in `shared/fixtures/snp`.
pub(crate) fn fixture(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/snp")
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
