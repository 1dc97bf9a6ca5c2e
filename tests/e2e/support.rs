//! Shared harness: a temporary `A3S_HOME`, the binary, fixture paths.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary A3S home and a way to run the binary in it.
pub(crate) struct TestEnv {
    pub(crate) home: tempfile::TempDir,
}

/// What a command printed and how it exited.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl TestEnv {
    pub(crate) fn new() -> Self {
        Self {
            home: tempfile::tempdir().expect("temp home"),
        }
    }

    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_a3s-box"));
        c.env("A3S_HOME", self.home.path())
            .env_remove("A3S_BOX_ACCEL")
            .env_remove("A3S_KDS_URL");
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        let out: Output = self.cmd().args(args).output().expect("running a3s-box");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }
}

/// A file under `fixtures/snp/`.
pub(crate) fn fixture(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/snp")
        .join(rel);
    assert!(p.exists(), "missing fixture {}", p.display());
    p.display().to_string()
}

/// Writes `bytes` to a fresh file in `dir` and returns its path as a string.
pub(crate) fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("writing test file");
    p.display().to_string()
}

/// As-of time inside every fixture certificate's validity period.
pub(crate) const AT: &str = "2025-09-01T00:00:00Z";

/// Builds the static guest-init the binary looks for beside itself (a no-op when up to date).
pub(crate) fn build_guest_init() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-guest-init");
    let out = std::process::Command::new(script)
        .arg("--quiet")
        .output()
        .expect("running scripts/build-guest-init");
    assert!(
        out.status.success(),
        "scripts/build-guest-init failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
