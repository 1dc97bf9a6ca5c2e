//! The cgroup (v2) a box's workload and its exec sessions share when it has a limit:
//! `--pids-limit` (`pids.max`), `--memory` (`memory.max`) and `--memory-reservation`
//! (`memory.low`). Guest-init stays in the root
//! cgroup, outside both limits, so it can still answer and report when the workload is at its
//! limit. `stats` reads the workload's memory here when it has a limit, as Docker reads the
//! container's cgroup.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::Context;
use nix::mount::{mount, MsFlags};

use a3s_vmm::proto::Security;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const WORKLOAD_CGROUP: &str = "/sys/fs/cgroup/a3s-workload";

/// Whether `sec` puts the workload in its own cgroup.
pub(crate) fn wanted(sec: &Security) -> bool {
    sec.pids_limit.is_some() || sec.memory_limit_bytes.is_some() || sec.memory_low_bytes.is_some()
}

/// mount -t cgroup2 none /sys/fs/cgroup; echo "+pids +memory" > cgroup.subtree_control;
/// mkdir a3s-workload; echo N > a3s-workload/pids.max; echo M > a3s-workload/memory.max
///
/// # Errors
/// The step that failed, named with the flag it serves (the box must not run without it).
pub(crate) fn create(sec: &Security) -> anyhow::Result<()> {
    if !wanted(sec) {
        return Ok(());
    }
    fs::create_dir_all(CGROUP_ROOT).context("creating /sys/fs/cgroup")?;
    match mount(
        Some("cgroup2"),
        CGROUP_ROOT,
        Some("cgroup2"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    ) {
        Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
        Err(e) => return Err(e).context("mounting the cgroup2 filesystem (the workload's limits)"),
    }
    let limits = [
        ("pids", "pids.max", sec.pids_limit, "--pids-limit"),
        ("memory", "memory.max", sec.memory_limit_bytes, "--memory"),
        (
            "memory",
            "memory.low",
            sec.memory_low_bytes,
            "--memory-reservation",
        ),
    ];
    for (controller, _, value, flag) in limits {
        if value.is_some() {
            fs::write(
                Path::new(CGROUP_ROOT).join("cgroup.subtree_control"),
                format!("+{controller}"),
            )
            .with_context(|| format!("enabling the {controller} controller ({flag})"))?;
        }
    }
    match fs::create_dir(WORKLOAD_CGROUP) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).context("creating the workload's cgroup"),
    }
    for (_, file, value, flag) in limits {
        if let Some(v) = value {
            fs::write(Path::new(WORKLOAD_CGROUP).join(file), v.to_string())
                .with_context(|| format!("setting {file} to {v} ({flag})"))?;
        }
    }
    if sec.memory_limit_bytes.is_some() {
        // Docker's --memory without --memory-swap: no swap on top (the VM has none; a kernel
        // without swap support has no such file).
        let swap = Path::new(WORKLOAD_CGROUP).join("memory.swap.max");
        if swap.exists() {
            fs::write(&swap, "0").context("setting memory.swap.max to 0 (--memory)")?;
        }
    }
    Ok(())
}

/// The workload cgroup's `cgroup.procs`, opened close-on-exec for a process to join; `None`
/// when `sec` sets no limit.
///
/// # Errors
/// The cgroup cannot be opened (fails closed: no process runs outside its limits).
pub(crate) fn open_procs(sec: &Security) -> Result<Option<OwnedFd>, String> {
    if !wanted(sec) {
        return Ok(None);
    }
    let path = Path::new(WORKLOAD_CGROUP).join("cgroup.procs");
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map(|f| Some(OwnedFd::from(f)))
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

/// The workload's memory use and limit in bytes when it has a memory limit: use as Docker's
/// CLI computes it for cgroup v2 (`memory.current` less `inactive_file` of `memory.stat`).
pub(crate) fn memory() -> Option<(u64, u64)> {
    memory_in(Path::new(WORKLOAD_CGROUP))
}

fn memory_in(dir: &Path) -> Option<(u64, u64)> {
    let read = |f: &str| crate::procs::read(&dir.join(f)).ok();
    let limit: u64 = read("memory.max")?.trim().parse().ok()?;
    let current: u64 = read("memory.current")?.trim().parse().ok()?;
    let inactive_file = read("memory.stat")
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("inactive_file ")?.trim().parse().ok())
        })
        .unwrap_or(0);
    Some((current.saturating_sub(inactive_file), limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_limit_makes_a_cgroup() {
        assert!(!wanted(&Security::default()));
        assert!(wanted(&Security {
            pids_limit: Some(10),
            ..Security::default()
        }));
        assert!(wanted(&Security {
            memory_limit_bytes: Some(64 << 20),
            ..Security::default()
        }));
        assert!(wanted(&Security {
            memory_low_bytes: Some(32 << 20),
            ..Security::default()
        }));
        assert!(open_procs(&Security::default()).unwrap().is_none());
    }

    #[test]
    fn memory_is_current_less_inactive_file_against_max() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("memory.max"), "209715200\n").unwrap();
        fs::write(d.path().join("memory.current"), "52428800\n").unwrap();
        fs::write(
            d.path().join("memory.stat"),
            "anon 41943040\nfile 10485760\nactive_file 2097152\ninactive_file 8388608\n",
        )
        .unwrap();
        assert_eq!(memory_in(d.path()), Some((44_040_192, 209_715_200)));
        // No limit ("max"): the guest's own figures are used instead.
        fs::write(d.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(memory_in(d.path()), None);
    }
}
