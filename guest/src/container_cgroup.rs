//! A pod container's cgroup (v2) in the pod VM: created with CRI's limits when the container's
//! main process starts, joined by that process and by every process exec'd into the container,
//! changed by `UpdateContainerResources`, read for CRI's stats.
//!
//! Layout: `/sys/fs/cgroup/pod-containers/<id>`. The root cgroup keeps guest-init and the pod's
//! own processes (the root is exempt from cgroup v2's no-internal-processes rule).

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use a3s_vmm::proto::{ContainerResources, ContainerStats};
use nix::mount::{mount, MsFlags};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const PODS: &str = "/sys/fs/cgroup/pod-containers";
/// Controllers the containers' cgroups get (cpuset only where the kernel offers it).
const CONTROLLERS: [&str; 4] = ["cpu", "memory", "pids", "cpuset"];
/// The kernel's CFS period when none is given (microseconds).
const DEFAULT_PERIOD: u64 = 100_000;
/// A root with more entries than this is counted only this far (stats stay cheap).
const MAX_WALK: u64 = 1_000_000;

/// Container ids are the host's 64 hex digits: nothing else may name a cgroup path.
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "container id {id:?} is not 1-64 hex digits; pass the id the host recorded"
        ));
    }
    Ok(())
}

fn dir(id: &str) -> PathBuf {
    Path::new(PODS).join(id)
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value)
}

fn read(path: &Path) -> Result<String, String> {
    crate::procs::read_bytes(path).map(|b| String::from_utf8_lossy(&b).trim().to_owned())
}

/// Mounts cgroup2 when it is not yet, and gives the containers' parent its controllers.
fn ensure_parent() -> Result<(), String> {
    if !Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        fs::create_dir_all(CGROUP_ROOT).map_err(|e| format!("creating {CGROUP_ROOT}: {e}"))?;
        mount(
            Some("cgroup2"),
            CGROUP_ROOT,
            Some("cgroup2"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| format!("mounting cgroup2 at {CGROUP_ROOT}: {e}"))?;
    }
    match fs::create_dir(PODS) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("creating {PODS}: {e}")),
    }
    let available = read(&Path::new(CGROUP_ROOT).join("cgroup.controllers"))?;
    for parent in [CGROUP_ROOT, PODS] {
        for c in CONTROLLERS {
            if !available.split_whitespace().any(|a| a == c) {
                if c == "cpuset" {
                    continue;
                }
                return Err(format!(
                    "the pod VM's kernel has no {c} cgroup controller (have: {available})"
                ));
            }
            write(
                &Path::new(parent).join("cgroup.subtree_control"),
                &format!("+{c}"),
            )
            .map_err(|e| format!("enabling the {c} controller under {parent}: {e}"))?;
        }
    }
    Ok(())
}

/// Creates the cgroup of container `id` with `res` applied.
///
/// # Errors
/// A bad id, no cgroup2 or controllers, a limit the VM cannot honour (named).
pub(crate) fn create(id: &str, res: &ContainerResources) -> Result<(), String> {
    check_id(id)?;
    ensure_parent()?;
    match fs::create_dir(dir(id)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("creating the cgroup of container {id}: {e}")),
    }
    apply(id, res)
}

/// The container's `cgroup.procs`, opened for a process to join (write "0" in the child);
/// `None` when the container has no cgroup (it was started by an older guest-init).
///
/// # Errors
/// A bad id, or a cgroup that exists but cannot be opened (fails closed).
pub(crate) fn open_procs(id: &str) -> Result<Option<OwnedFd>, String> {
    check_id(id)?;
    let path = dir(id).join("cgroup.procs");
    if !dir(id).is_dir() {
        return Ok(None);
    }
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map(|f| Some(OwnedFd::from(f)))
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

/// `cpu.max` for a quota and period (CRI's CFS figures).
pub(crate) fn cpu_max(res: &ContainerResources) -> String {
    let period = if res.cpu_period == 0 {
        DEFAULT_PERIOD
    } else {
        res.cpu_period
    };
    if res.cpu_quota > 0 {
        format!("{} {period}", res.cpu_quota)
    } else {
        format!("max {period}")
    }
}

/// `cpu.weight` for cgroup v1 shares, as runc and the kubelet convert them.
pub(crate) fn weight_of_shares(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// The shares a weight came from (the inverse of [`weight_of_shares`], rounded up).
pub(crate) fn shares_of_weight(weight: u64) -> u64 {
    let w = weight.clamp(1, 10_000);
    2 + ((w - 1) * 262_142).div_ceil(9999)
}

/// Refuses figures the kernel would take differently from what CRI means.
pub(crate) fn validate(res: &ContainerResources) -> Result<(), String> {
    if res.cpu_period != 0 && !(1000..=1_000_000).contains(&res.cpu_period) {
        return Err(format!(
            "cpu_period {}: must be 1000-1000000 microseconds",
            res.cpu_period
        ));
    }
    if res.cpu_shares > 262_144 {
        return Err(format!("cpu_shares {}: must be 2-262144", res.cpu_shares));
    }
    Ok(())
}

/// Writes `res` into the container's cgroup files.
///
/// # Errors
/// A missing cgroup; a value the kernel refuses, naming the CRI field.
pub(crate) fn apply(id: &str, res: &ContainerResources) -> Result<(), String> {
    check_id(id)?;
    validate(res)?;
    let d = dir(id);
    if !d.is_dir() {
        return Err(format!(
            "container {id} has no cgroup in the pod VM (it is not running)"
        ));
    }
    let field = |name: &str, file: &str, value: &str| {
        write(&d.join(file), value).map_err(|e| format!("{name} {value}: {file} refused it: {e}"))
    };
    field("cpu_quota/cpu_period", "cpu.max", &cpu_max(res))?;
    field(
        "cpu_shares",
        "cpu.weight",
        &weight_of_shares(res.cpu_shares).to_string(),
    )?;
    let memory = if res.memory_limit_bytes > 0 {
        res.memory_limit_bytes.to_string()
    } else {
        "max".to_owned()
    };
    field("memory_limit_in_bytes", "memory.max", &memory)?;
    let cpuset = d.join("cpuset.cpus");
    if cpuset.exists() {
        write(&cpuset, &res.cpuset_cpus).map_err(|e| {
            let online = read(Path::new("/sys/devices/system/cpu/online")).unwrap_or_default();
            format!(
                "cpuset_cpus {:?}: not CPUs of this pod VM (its CPUs: {online}): {e}",
                res.cpuset_cpus
            )
        })?;
    } else if !res.cpuset_cpus.is_empty() {
        return Err(format!(
            "cpuset_cpus {:?}: the pod VM's kernel has no cpuset controller",
            res.cpuset_cpus
        ));
    }
    Ok(())
}

/// The limits in effect, read back from the cgroup (`oom_score_adj` is the caller's).
fn limits(d: &Path) -> ContainerResources {
    let mut res = ContainerResources::default();
    if let Ok(max) = read(&d.join("cpu.max")) {
        let mut it = max.split_whitespace();
        res.cpu_quota = it.next().and_then(|q| q.parse().ok()).unwrap_or(0);
        res.cpu_period = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    }
    if let Some(w) = read(&d.join("cpu.weight"))
        .ok()
        .and_then(|w| w.parse().ok())
    {
        // The default weight is "no shares asked for".
        res.cpu_shares = if w == 100 { 0 } else { shares_of_weight(w) };
    }
    res.memory_limit_bytes = read(&d.join("memory.max"))
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    res.cpuset_cpus = read(&d.join("cpuset.cpus")).unwrap_or_default();
    res
}

/// A `key value` line's value of a flat-keyed cgroup file.
pub(crate) fn keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes (allocated blocks) and inodes under `root`, not descending into other filesystems.
pub(crate) fn usage(root: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = fs::symlink_metadata(root) else {
        return (0, 0);
    };
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let Ok(entries) = fs::read_dir(&p) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            inodes += 1;
            bytes += m.blocks() * 512;
            // Overlayfs reports files with their layer's device, directories with its own:
            // only directories tell a mount point.
            if m.is_dir() && m.dev() == top.dev() {
                stack.push(e.path());
            }
            if inodes >= MAX_WALK {
                return (bytes, inodes);
            }
        }
    }
    (bytes + top.blocks() * 512, inodes + 1)
}

/// Container `id`'s resource use; `root` is its root directory (for the filesystem figures).
///
/// # Errors
/// A bad id, no cgroup (not running), unreadable cgroup files.
pub(crate) fn stats(id: &str, root: &Path) -> Result<ContainerStats, String> {
    check_id(id)?;
    let d = dir(id);
    if !d.is_dir() {
        return Err(format!("container {id} has no cgroup in the pod VM"));
    }
    let cpu = read(&d.join("cpu.stat"))?;
    let mem = read(&d.join("memory.stat"))?;
    let current: u64 = read(&d.join("memory.current"))?.parse().unwrap_or(0);
    // A root on the pod's share is the host's overlay: the host measures its writable
    // layer (walking the image through virtiofs would count the image too, slowly).
    let on_host = [
        a3s_vmm::proto::GUEST_POD_MOUNTS,
        a3s_vmm::proto::GUEST_POD_ROOTS,
    ]
    .iter()
    .any(|dir| root.starts_with(dir));
    let (fs_used_bytes, fs_inodes_used) = if on_host { (0, 0) } else { usage(root) };
    Ok(ContainerStats {
        id: id.to_owned(),
        timestamp_ns: crate::init::uptime_ms().saturating_mul(1_000_000),
        cpu_usage_ns: keyed(&cpu, "usage_usec").saturating_mul(1000),
        memory_usage_bytes: current,
        memory_working_set_bytes: current.saturating_sub(keyed(&mem, "inactive_file")),
        memory_rss_bytes: keyed(&mem, "anon"),
        page_faults: keyed(&mem, "pgfault"),
        major_page_faults: keyed(&mem, "pgmajfault"),
        fs_used_bytes,
        fs_inodes_used,
        pids: read(&d.join("pids.current"))
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0),
        limits: limits(&d),
    })
}

/// Whether the OOM killer killed a process in the container's cgroup (`memory.events`).
pub(crate) fn oom_killed(id: &str) -> bool {
    check_id(id).is_ok()
        && read(&dir(id).join("memory.events")).is_ok_and(|e| keyed(&e, "oom_kill") > 0)
}

/// Kills every process left in the container whose main process ended, as a container's
/// processes end with its PID 1: they would hold its output open, and the exit (so a stop)
/// would wait for them (nginx's workers after its master was killed). Execs in it go too.
pub(crate) fn kill_all(id: &str) {
    if check_id(id).is_err() {
        return;
    }
    let d = dir(id);
    if write(&d.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    // Kernels before 5.14 have no cgroup.kill: one by one.
    if let Ok(procs) = read(&d.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Removes the cgroup of a container whose main process ended (kept while processes remain).
pub(crate) fn remove(id: &str) {
    if check_id(id).is_ok() {
        let _ = fs::remove_dir(dir(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_only() {
        assert!(check_id(&"a".repeat(64)).is_ok());
        for bad in ["", "../x", "a/b", &"a".repeat(65), "zz"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_max_and_weight_follow_cri() {
        let r = |quota, period| ContainerResources {
            cpu_quota: quota,
            cpu_period: period,
            ..Default::default()
        };
        assert_eq!(cpu_max(&r(50_000, 0)), "50000 100000");
        assert_eq!(cpu_max(&r(20_000, 50_000)), "20000 50000");
        assert_eq!(cpu_max(&r(0, 0)), "max 100000");
        assert_eq!(cpu_max(&r(-1, 10_000)), "max 10000");
        assert_eq!(weight_of_shares(0), 100);
        assert_eq!(weight_of_shares(2), 1);
        assert_eq!(weight_of_shares(1024), 39);
        assert_eq!(weight_of_shares(262_144), 10_000);
        for shares in [2, 512, 1024, 4096, 262_144] {
            assert_eq!(
                weight_of_shares(shares_of_weight(weight_of_shares(shares))),
                weight_of_shares(shares)
            );
        }
    }

    #[test]
    fn keyed_files_parse() {
        let stat = "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n";
        assert_eq!(keyed(stat, "usage_usec"), 1234);
        assert_eq!(keyed(stat, "user_usec"), 1000);
        assert_eq!(keyed(stat, "nothing"), 0);
        assert_eq!(keyed("anon 4096\nanon_thp 0\n", "anon"), 4096);
    }

    #[test]
    fn usage_counts_bytes_and_inodes() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/f"), vec![1u8; 100_000]).unwrap();
        fs::write(dir.path().join("g"), b"x").unwrap();
        let (bytes, inodes) = usage(dir.path());
        assert_eq!(inodes, 4);
        assert!(bytes >= 100_000, "{bytes}");
        assert_eq!(usage(&dir.path().join("missing")), (0, 0));
    }

    #[test]
    fn figures_the_kernel_would_misread_are_refused_by_name() {
        let bad_period = ContainerResources {
            cpu_period: 10,
            ..Default::default()
        };
        assert!(validate(&bad_period).unwrap_err().contains("cpu_period"));
        let bad_shares = ContainerResources {
            cpu_shares: 1 << 20,
            ..Default::default()
        };
        assert!(validate(&bad_shares).unwrap_err().contains("cpu_shares"));
        assert!(validate(&ContainerResources::default()).is_ok());
        // No cgroup: named, and nothing written.
        let e = apply(&"b".repeat(64), &ContainerResources::default()).unwrap_err();
        assert!(e.contains("no cgroup"), "{e}");
    }
}
