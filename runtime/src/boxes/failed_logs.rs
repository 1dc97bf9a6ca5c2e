//! Console logs of `--rm` boxes that failed to start, kept after the box directory is gone.
//!
//! ```text
//! logs/                               0700
//! logs/<name>-<short id>.console.log  0600, the guest's serial console
//! logs/<name>-<short id>.qemu.log     0600, QEMU's stderr (when it wrote any)
//! ```
//!
//! Only the newest [`KEEP`] failures are kept; older ones are deleted when a new one is added.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::BoxRecord;
use crate::home::A3sHome;

/// Failed boots whose logs are kept.
pub const KEEP: usize = 20;

const CONSOLE_SUFFIX: &str = ".console.log";
const QEMU_SUFFIX: &str = ".qemu.log";

/// The directory of kept logs.
pub fn dir(home: &A3sHome) -> PathBuf {
    home.root().join("logs")
}

/// Copies a failed box's console log (and QEMU log, when not empty) into [`dir`]; returns the
/// console copy's path.
///
/// # Errors
/// i/o (the message names the path).
pub fn keep(
    home: &A3sHome,
    rec: &BoxRecord,
    console: &Path,
    qemu_log: &Path,
) -> std::io::Result<PathBuf> {
    let dir = dir(home);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| with_path(e, &dir))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| with_path(e, &dir))?;
    let stem = format!("{}-{}", rec.name, rec.id.short());
    let kept = dir.join(format!("{stem}{CONSOLE_SUFFIX}"));
    copy_private(console, &kept)?;
    if std::fs::metadata(qemu_log).is_ok_and(|m| m.len() > 0) {
        copy_private(qemu_log, &dir.join(format!("{stem}{QEMU_SUFFIX}")))?;
    }
    prune(&dir, KEEP);
    Ok(kept)
}

/// Copies `from` to a new 0600 file `to` (replacing it).
fn copy_private(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut src = std::fs::File::open(from).map_err(|e| with_path(e, from))?;
    let _ = std::fs::remove_file(to);
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| with_path(e, to))?;
    std::io::copy(&mut src, &mut dst).map_err(|e| with_path(e, to))?;
    dst.sync_all().map_err(|e| with_path(e, to))
}

/// Deletes all but the newest `keep` console logs (by modification time) and their QEMU logs.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut consoles: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(CONSOLE_SUFFIX))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    consoles.sort_by_key(|c| std::cmp::Reverse(c.0));
    for (_, old) in consoles.into_iter().skip(keep) {
        let name = old.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(stem) = name.as_deref().and_then(|n| n.strip_suffix(CONSOLE_SUFFIX)) {
            let _ = std::fs::remove_file(dir.join(format!("{stem}{QEMU_SUFFIX}")));
        }
        let _ = std::fs::remove_file(&old);
    }
}

fn with_path(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn only_the_newest_console_logs_and_their_qemu_logs_are_kept() {
        let d = tempfile::tempdir().unwrap();
        let t0 = SystemTime::now() - Duration::from_secs(1000);
        for i in 0..5u64 {
            for suffix in [CONSOLE_SUFFIX, QEMU_SUFFIX] {
                let p = d.path().join(format!("b{i}{suffix}"));
                std::fs::write(&p, "x").unwrap();
                let f = std::fs::File::options().write(true).open(&p).unwrap();
                f.set_modified(t0 + Duration::from_secs(i * 10)).unwrap();
            }
        }
        std::fs::write(d.path().join("unrelated"), "x").unwrap();
        prune(d.path(), 2);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "b3.console.log",
                "b3.qemu.log",
                "b4.console.log",
                "b4.qemu.log",
                "unrelated"
            ]
        );
    }

    #[test]
    fn copies_are_private() {
        let d = tempfile::tempdir().unwrap();
        let from = d.path().join("console.log");
        std::fs::write(&from, "Kernel panic").unwrap();
        let to = d.path().join("kept.console.log");
        std::fs::write(&to, "old").unwrap();
        copy_private(&from, &to).unwrap();
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "Kernel panic");
        let mode = std::fs::metadata(&to).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = copy_private(&d.path().join("missing"), &to).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
