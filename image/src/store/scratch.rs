//! Where an image's layers are unpacked on their way into its erofs image (see `fsimage`):
//! a private directory in RAM (`/dev/shm`, tmpfs) when the tree fits with room to spare, else
//! the store's own disk.
//!
//! The tree is thrown away as soon as `mkfs.erofs` has read it, so writing it to disk only to
//! delete it again was most of an image's first start. Measured on the development host's
//! disk (ext4 on a virtual disk, python3 test image: 72 MB of gzip layers, 9 400 files,
//! 202 MiB): unpacking 25 s and removing the tree 17 s on disk, against 5 s and well under one
//! in tmpfs; `mkfs.erofs` (2.5 s) and `veritysetup` (0.8 s) are the same either way.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The tmpfs every Linux host mounts for POSIX shared memory.
const SHM: &str = "/dev/shm";
/// Name prefix of our directories there, followed by the owning process id and `-`.
const PREFIX: &str = "a3s-unpack-";
/// At most this share of the host's available memory goes to one tree...
const MEM_SHARE_DIVISOR: u64 = 4;
/// ... and at most this share of the tmpfs's free space.
const SHM_SHARE_DIVISOR: u64 = 2;

/// A directory for one unpacked tree, removed (with the tree) when dropped.
#[derive(Debug)]
pub(crate) struct ScratchTree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    in_ram: bool,
}

impl ScratchTree {
    /// The tree's root (mode 0755, inside a 0700 directory only its owner can enter).
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the tree is in RAM (tmpfs).
    pub(crate) fn in_ram(&self) -> bool {
        self.in_ram
    }
}

/// A place for a tree of about `expected` bytes: in RAM when it fits (see the module
/// docs), else in `disk`.
pub(crate) fn place(expected: u64, disk: &Path) -> io::Result<ScratchTree> {
    let shm = Path::new(SHM);
    if fits_in_ram(shm, expected) {
        remove_stale(shm);
        match make(shm, &format!("{PREFIX}{}-", std::process::id()), true) {
            Ok(t) => return Ok(t),
            Err(e) => tracing::debug!(error = %e, "no scratch directory in RAM; using the disk"),
        }
    }
    on_disk(disk)
}

/// A place for the tree in `disk` (the fallback when RAM ran out after all, and where
/// `ImageStore::rootfs` unpacks a tree it keeps).
pub(crate) fn on_disk(disk: &Path) -> io::Result<ScratchTree> {
    make(disk, ".tmp-", false)
}

fn make(parent: &Path, prefix: &str, in_ram: bool) -> io::Result<ScratchTree> {
    // 0700 from its mkdir on: nobody else sees the image's files (/dev/shm is everyone's).
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating a directory in {}: {e}", parent.display()),
            )
        })?;
    let root = dir.path().join("root");
    fs::create_dir(&root)?;
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
    Ok(ScratchTree {
        _dir: dir,
        root,
        in_ram,
    })
}

/// `shm` is a tmpfs with room for `expected` bytes twice over, and a quarter of the host's
/// available memory covers it.
fn fits_in_ram(shm: &Path, expected: u64) -> bool {
    let Ok(fs) = rustix::fs::statfs(shm) else {
        return false;
    };
    // TMPFS_MAGIC: anything else (a disk mounted there) has no reason to be faster.
    if u64::try_from(fs.f_type).ok() != Some(0x0102_1994) {
        return false;
    }
    let free = fs
        .f_bavail
        .saturating_mul(u64::try_from(fs.f_bsize).unwrap_or(0));
    let Some(available) = mem_available() else {
        return false;
    };
    expected <= free / SHM_SHARE_DIVISOR && expected <= available / MEM_SHARE_DIVISOR
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u64> {
    // A few KiB; the bound is for a file that is not what it claims.
    let bytes = super::fsutil::read_limited(Path::new("/proc/meminfo"), 64 * 1024).ok()?;
    parse_mem_available(&String::from_utf8_lossy(&bytes))
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Removes our directories left in `shm` by processes that died mid-unpack (a tmpfs holds
/// RAM until its files are removed).
fn remove_stale(shm: &Path) {
    let Ok(entries) = fs::read_dir(shm) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        let ours = e.metadata().is_ok_and(|m| m.is_dir() && m.uid() == me);
        if ours && !alive(pid) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// The process id in a directory name of ours (`a3s-unpack-<pid>-<random>`).
fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

fn alive(pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    // EPERM: it exists under another user.
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(parse_mem_available(text), Some(2048 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: lots kB\n"), None);
    }

    #[test]
    fn only_our_names_give_an_owner() {
        assert_eq!(owner_pid("a3s-unpack-1234-xYz12"), Some(1234));
        assert_eq!(owner_pid("a3s-unpack-x-1"), None);
        assert_eq!(owner_pid("other-1234-x"), None);
    }

    #[test]
    fn a_small_tree_goes_to_ram_a_huge_one_to_disk_and_both_are_private() {
        let disk = tempfile::tempdir().unwrap();
        let small = place(1024, disk.path()).unwrap();
        if fits_in_ram(Path::new(SHM), 1024) {
            assert!(small.in_ram());
            assert!(small.root().starts_with(SHM));
        }
        let outer = small.root().parent().unwrap();
        assert_eq!(fs::metadata(outer).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(small.root()).unwrap().mode() & 0o777, 0o755);
        let huge = place(u64::MAX / 2, disk.path()).unwrap();
        assert!(!huge.in_ram());
        assert!(huge.root().starts_with(disk.path()));
        let gone = outer.to_owned();
        drop(small);
        assert!(
            !gone.exists(),
            "the tree is removed with its scratch directory"
        );
    }

    #[test]
    fn a_dead_processs_directory_is_removed_a_live_ones_kept() {
        let shm = tempfile::tempdir().unwrap();
        // No process has pid i32::MAX (pid_max is at most 2^22).
        let dead = shm.path().join(format!("{PREFIX}{}-abc", i32::MAX));
        let live = shm
            .path()
            .join(format!("{PREFIX}{}-abc", std::process::id()));
        let other = shm.path().join("someone-else");
        for d in [&dead, &live, &other] {
            fs::create_dir_all(d.join("root/usr")).unwrap();
        }
        remove_stale(shm.path());
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(other.exists());
    }
}
