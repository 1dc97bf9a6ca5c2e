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
    /// Docker's `--format json` listings: one object per line, collected into an array.
    pub(crate) fn json_lines(&self) -> serde_json::Value {
        let rows = serde_json::Deserializer::from_str(&self.stdout)
            .into_iter::<serde_json::Value>()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| {
                panic!(
                    "stdout is not JSON lines ({e}):\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            });
        serde_json::Value::Array(rows)
    }

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
    /// A fresh home under this run's directory (`$TMPDIR/a3s-e2e/run-<pid>/`: short, because
    /// unix socket paths inside a box directory must stay under 108 bytes).
    ///
    /// Homes shared through `static`s are never dropped (Rust does not run destructors of
    /// statics), and one real-image home holds gigabytes: each run's homes live under
    /// `a3s-e2e/run-<pid>/`, and the first `new()` of a run removes the directories of runs
    /// whose process is gone.
    pub(crate) fn new() -> Self {
        // Every home boots this tree's guest-init: a test that forgot to build it booted
        // whatever an earlier run left (the CNI tests once ran a guest without DNS search).
        build_guest_init();
        let run_dir = run_dir();
        Self {
            home: tempfile::tempdir_in(run_dir).expect("temp home"),
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

/// `$TMPDIR/a3s-e2e/run-<pid>`, created (and older runs' removed) once.
pub(crate) fn run_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::temp_dir().join("a3s-e2e");
        if let Ok(entries) = std::fs::read_dir(&root) {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                let stale = name
                    .strip_prefix("run-")
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if stale {
                    // A run whose reaper could not finish (the machine went down): its
                    // processes go before their homes do.
                    let _ = Reaper::start(&e.path()).and_then(Reaper::finish);
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = root.join(format!("run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the e2e homes directory");
        // Held for the life of this process: its end is the reaper's signal.
        std::mem::forget(Reaper::start(&dir).expect("starting the e2e box reaper"));
        dir
    })
}

/// Boxes outlive the CLI that started them (Docker's semantics), and homes shared through
/// `static`s are never dropped, so nothing in this process could stop what a test left
/// running. A reaper, one per run in its own process group (a Ctrl-C on the test does not
/// reach it), waits until the write end of a pipe closes (this process ended, normally or
/// not: the kernel closes it) and then
/// 1. force-removes every box, in any state, of every home under the run's directory;
/// 2. kills (TERM, then KILL) every process whose environment names one of those homes:
///    monitors, QEMU, virtiofsd, passt, servers a test started — whatever `rm` missed;
/// 3. unmounts what is still mounted under the run's directory (pods' shares);
/// 4. removes the run's directory.
pub(crate) struct Reaper {
    child: std::process::Child,
    trigger: std::os::fd::OwnedFd,
}

impl Reaper {
    const SCRIPT: &'static str = r#"cat >/dev/null
exe=$1 dir=${2%/}
# Homes made by tempfile are hidden (.tmpXXXXXX): a bare * would miss every one of them.
for h in "$dir"/*/ "$dir"/.[!.]*/; do
  h=${h%/}
  [ -d "$h/boxes" ] || continue
  ids=$(A3S_HOME="$h" timeout 60 "$exe" ps -aq 2>/dev/null)
  [ -n "$ids" ] && A3S_HOME="$h" timeout 180 "$exe" rm -f $ids >/dev/null 2>&1
done
for sig in TERM KILL; do
  found=
  for e in /proc/[0-9]*/environ; do
    pid=${e#/proc/}; pid=${pid%/environ}
    [ "$pid" = "$$" ] && continue
    if tr '\0' '\n' < "$e" 2>/dev/null | grep -qF "A3S_HOME=$dir/"; then
      kill -s $sig "$pid" 2>/dev/null && found=1
    fi
  done
  [ -z "$found" ] && break
  [ $sig = TERM ] && sleep 2
done
# Pods' shares and container roots a test left mounted (deepest first): removing the homes
# must never reach through a bind into the host paths it holds.
awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
  while read -r m; do umount -l "$m" 2>/dev/null; done
# The homes themselves: shared (static) homes are never dropped, and a run's images, block
# devices and VM templates come to gigabytes that would sit on the disk until the next run.
rm -rf --one-file-system "$dir"
exit 0"#;

    /// Starts a reaper for the homes under `dir`; it acts once [`Reaper::finish`] is called
    /// or the value is leaked and this process ends.
    pub(crate) fn start(dir: &Path) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        // Close-on-exec: the write end must not leak into the a3s-box processes tests start.
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let child = Command::new("sh")
            .args([
                "-c",
                Self::SCRIPT,
                "a3s-e2e-reaper",
                env!("CARGO_BIN_EXE_a3s-box"),
            ])
            .arg(dir)
            .env_remove("A3S_HOME")
            .stdin(std::process::Stdio::from(read))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Self {
            child,
            trigger: write,
        })
    }

    /// Lets the reaper act now and waits until it is done.
    pub(crate) fn finish(self) -> std::io::Result<()> {
        let Self { mut child, trigger } = self;
        drop(trigger);
        child.wait().map(drop)
    }
}

/// Processes whose environment names a home under `dir` (what the reaper must leave none of).
pub(crate) fn processes_of(dir: &Path) -> Vec<String> {
    let needle = format!("A3S_HOME={}/", dir.display());
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| e.file_name().to_string_lossy() != me)
        .filter(|e| {
            std::fs::read(e.path().join("environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|kv| kv.starts_with(needle.as_bytes()))
            })
        })
        .map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            )
        })
        .collect()
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
/// Builds this tree's guest-init, once per test run (every caller waits for the one build).
pub(crate) fn build_guest_init() {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-guest-init");
        let out = std::process::Command::new(script)
            .arg("--quiet")
            .output()
            .map_err(|e| format!("running scripts/build-guest-init: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/build-guest-init failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
}

/// The Debian-built images of `scripts/test-images` (built once, cached outside the repo):
/// one record per image (`name`, `ref`, `archive`, ...), in the order asked; all of them when
/// `names` is empty. `None` when the apt mirror is out of reach, after saying loudly that the
/// tests of `what` did not run; under `CI=true` that is a failure instead.
pub(crate) fn test_images(names: &[&str], what: &str) -> Option<Vec<serde_json::Value>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-images");
    let out = Command::new(&script)
        .args(names)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running scripts/test-images");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: {what} need the Debian test images and scripts/test-images cannot build \
             them (apt mirror unreachable):\n{stderr}"
        );
        eprintln!(
            "\n{0}\nSKIPPED: {what} did NOT run: the apt mirror is unreachable, so \
             scripts/test-images cannot build the Debian images.\n{stderr}{0}\n",
            "!".repeat(100)
        );
        return None;
    }
    assert!(
        out.status.success(),
        "scripts/test-images failed ({}):\n{stderr}",
        out.status
    );
    eprint!("{stderr}");
    let images = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("scripts/test-images printed {line:?}: {e}"))
        })
        .collect();
    Some(images)
}
