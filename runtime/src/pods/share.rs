//! The host side of pod containers' CRI mounts (kubelet's `/etc/hosts`, termination log,
//! service-account token, and the pod's volumes).
//!
//! Each plain pod has one directory, `A3S_HOME/pods/shares/<pod>`, exported to the pod VM as
//! one virtiofs share when the VM boots and mounted there at [`GUEST_POD_MOUNTS`]. Creating a
//! container bind-mounts each of its host paths at `<pod>/<container>/<n>` in virtiofsd's own
//! mount namespace only ([`super::detached`]), so the running VM sees it at once and the
//! host's mount table holds none of them (a host directory with a bound submount stays
//! removable). This is how Kata shares files with a running sandbox, and it needs no device
//! hot-plug.
//!
//! A plain pod container's root filesystem reaches the VM the same way, as Kata shares a
//! container's root: the image's erofs (the one boxes boot, built once per image) mounted
//! read-only on the host through a loop device, under an overlay whose upper layer is the
//! container's own directory `A3S_HOME/pods/layers/<pod>/<container>`, mounted at
//! `A3S_HOME/pods/roots/<pod>/<container>`. The roots are a second share, mounted in the VM
//! at [`GUEST_POD_ROOTS`]: only the VM changes them, so the guest keeps their files cached
//! across opens (`--cache=always`), where the CRI mounts' share must see the host's changes
//! and drops a file's pages at each open (an exec of a binary from there cost 115 ms under
//! TCG). Nothing is copied, the image's files are shared by every container of every pod, and
//! what a container writes lands on the host's disk, not in the VM's memory.
//!
//! The host paths stay the host's: removing a container or a pod removes its mount points
//! (which takes the binds in virtiofsd's namespace away), and a directory still holding a
//! mount in this namespace is never deleted (that would delete the host's files).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use a3s_vmm::proto::ContainerMount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::home::A3sHome;
use crate::pods::detached::{Follow, MountNs, ReadOnly, Tree};
use crate::pods::PodError;

/// Where the pod VM mounts its share (under guest-init's tmpfs, so nothing reaches the pod's
/// writable layer).
pub use a3s_vmm::proto::{GUEST_POD_MOUNTS, GUEST_POD_ROOTS};
/// A writable layer with more entries than this is counted only this far (stats stay cheap).
const MAX_WALK: u64 = 1_000_000;

/// The kernel's mount table of this process, read to find what is mounted under a share.
const MOUNTINFO: &str = "/proc/self/mountinfo";
/// A mount table larger than this is refused rather than read.
const MAX_MOUNTINFO: u64 = 64 << 20;

/// One CRI mount of a container, as the host resolves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostMount {
    /// The host path (an existing file or directory; symlinks are followed).
    pub host_path: PathBuf,
    /// Absolute path in the container.
    pub container_path: String,
    /// Bound read-only (on the host and in the container). As in Kubernetes, this is not
    /// recursive: mounts under the host path stay writable unless `recursive_readonly`.
    #[serde(default)]
    pub readonly: bool,
    /// Read-only all the way down, the host path's submounts too (CRI
    /// `recursive_read_only`; needs `readonly` and private propagation).
    #[serde(default)]
    pub recursive_readonly: bool,
    /// Whether mounts the host makes under the path later reach the container.
    #[serde(default)]
    pub propagation: Propagation,
}

/// CRI's mount propagation, as far as it can cross into a VM: mounts made inside the pod VM
/// never reach the host, so there is no bidirectional form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Propagation {
    /// Nothing mounted later on the host appears (`rprivate`).
    #[default]
    Private,
    /// Mounts the host makes under the path later appear in the container (`rslave`): the
    /// share's bind is a slave of the host path's peer group, and virtiofsd serves what is
    /// mounted there.
    HostToContainer,
}

/// One pod's share directory, and its containers' writable layers beside it.
#[derive(Clone, Debug)]
pub struct PodShare {
    dir: PathBuf,
    /// The containers' roots, exported as a second share that only the pod VM changes.
    roots: PathBuf,
    layers: PathBuf,
}

impl PodShare {
    /// Pod `pod_id`'s share under `home`.
    pub fn of(home: &A3sHome, pod_id: &str) -> Self {
        let pods = home.root().join("pods");
        Self {
            dir: pods.join("shares").join(pod_id),
            roots: pods.join("roots").join(pod_id),
            layers: pods.join("layers").join(pod_id),
        }
    }

    /// The exported directory of CRI mounts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The exported directory of container roots.
    pub fn roots_dir(&self) -> &Path {
        &self.roots
    }

    /// Creates both directories (0700), each a shared mount of itself, ready to be exported.
    ///
    /// # Errors
    /// i/o and mount errors, naming the directory.
    pub fn create(&self) -> Result<(), PodError> {
        for dir in [&self.dir, &self.roots] {
            shared_dir(dir)?;
        }
        Ok(())
    }

    /// Binds container `container_id`'s host paths into the share as virtiofsd's mount
    /// namespace `ns` sees it ([`super::detached`]: the binds live only there) and returns
    /// them as the pod VM sees them. On an error nothing of this container stays mounted.
    ///
    /// # Errors
    /// [`PodError::Invalid`] for a host path that is neither a file nor a directory; mount
    /// and i/o errors naming the path.
    pub fn bind(
        &self,
        container_id: &str,
        mounts: &[HostMount],
        ns: &MountNs,
    ) -> Result<Vec<ContainerMount>, PodError> {
        if mounts.is_empty() {
            return Ok(Vec::new());
        }
        let result = self.bind_all(container_id, mounts, ns);
        if result.is_err() {
            let _ = self.unbind(container_id);
        }
        result
    }

    /// Mounts container `container_id`'s root filesystem (module docs): `erofs` read-only
    /// under an overlay with the container's own upper layer, in the share. Returns the root
    /// as the pod VM sees it. On an error nothing of this container stays mounted.
    ///
    /// # Errors
    /// The loop or overlay mount fails (the message has `mount`'s reason).
    pub fn mount_root(&self, container_id: &str, erofs: &Path) -> Result<String, PodError> {
        let result = self.mount_root_inner(container_id, erofs);
        if result.is_err() {
            let _ = self.unbind(container_id);
        }
        result
    }

    fn mount_root_inner(&self, container_id: &str, erofs: &Path) -> Result<String, PodError> {
        let layer = self.layers.join(container_id);
        let (lower, upper, work) = (layer.join("lower"), layer.join("upper"), layer.join("work"));
        crate::home::private_dir(&layer).map_err(|e| io_at(&layer, "creating", e))?;
        for d in [&lower, &work] {
            crate::home::private_dir(d).map_err(|e| io_at(d, "creating", e))?;
        }
        // The upper directory's mode is the container's `/`: 0755 as an image's root (a
        // 0700 one locked every non-root user out). Its 0700 parent keeps it private.
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&upper)
            .map_err(|e| io_at(&upper, "creating", e))?;
        // util-linux sets the loop device up and has it cleared when the mount goes.
        let out = std::process::Command::new("mount")
            .args(["-t", "erofs", "-o", "loop,ro"])
            .arg(erofs)
            .arg(&lower)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| io_at(erofs, "running mount (util-linux) for", e))?;
        if !out.status.success() {
            return Err(PodError::Io(io::Error::other(format!(
                "mounting the image filesystem {} on {}: {}",
                erofs.display(),
                lower.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))));
        }
        let options = overlay_options(&lower, &upper, &work)?;
        let root = self.roots.join(container_id);
        mount_point(&root, true)?;
        mount(
            Some("overlay"),
            &root,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| mount_error(&root, "mounting the container's overlay root", e))?;
        Ok(format!("{GUEST_POD_ROOTS}/{container_id}"))
    }

    /// `<share>/<container>`, created (0700) when missing.
    fn container_dir(&self, container_id: &str) -> Result<PathBuf, PodError> {
        let dir = self.dir.join(container_id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(dir),
            Err(e) => Err(io_at(&dir, "creating", e)),
        }
    }

    fn bind_all(
        &self,
        container_id: &str,
        mounts: &[HostMount],
        ns: &MountNs,
    ) -> Result<Vec<ContainerMount>, PodError> {
        let dir = self.container_dir(container_id)?;
        let mut out = Vec::with_capacity(mounts.len());
        for (i, m) in mounts.iter().enumerate() {
            let relative = Path::new(container_id).join(i.to_string());
            let target = dir.join(i.to_string());
            let is_dir = host_path_is_dir(m)?;
            mount_point(&target, is_dir)?;
            let what = format!(
                "binding {} (mount to {})",
                m.host_path.display(),
                m.container_path
            );
            attach(m, ns, &ns.path_of(&relative)).map_err(|e| {
                PodError::Io(io::Error::new(
                    e.kind(),
                    format!("{}: {what}: {e}", target.display()),
                ))
            })?;
            out.push(ContainerMount {
                source: format!("{GUEST_POD_MOUNTS}/{container_id}/{i}"),
                target: m.container_path.clone(),
                // The host enforces read-only; the guest's flag covers everything it sees
                // through one virtiofs mount, the host's submounts too, so it is added only
                // when those must be read-only as well.
                readonly: m.recursive_readonly,
            });
        }
        Ok(out)
    }

    /// Bytes (allocated blocks) and inodes of container `container_id`'s writable layer
    /// (what it wrote over its image), not descending into other filesystems.
    pub fn writable_usage(&self, container_id: &str) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let upper = self.layers.join(container_id).join("upper");
        let Ok(top) = fs::symlink_metadata(&upper) else {
            return (0, 0);
        };
        let (mut bytes, mut inodes) = (top.blocks() * 512, 1u64);
        let mut stack = vec![upper];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let Ok(m) = e.metadata() else { continue };
                inodes += 1;
                bytes += m.blocks() * 512;
                if m.is_dir() && m.dev() == top.dev() {
                    stack.push(e.path());
                }
                if inodes >= MAX_WALK {
                    return (bytes, inodes);
                }
            }
        }
        (bytes, inodes)
    }

    /// Unmounts container `container_id`'s host paths and removes its mount points (absent:
    /// nothing to do).
    ///
    /// # Errors
    /// A mount that stays (its directory is then kept), i/o errors.
    pub fn unbind(&self, container_id: &str) -> Result<(), PodError> {
        remove_unmounted(&self.dir.join(container_id))?;
        remove_unmounted(&self.roots.join(container_id))?;
        remove_unmounted(&self.layers.join(container_id))
    }

    /// Unmounts everything in both shares, the shares themselves, and removes the
    /// directories.
    ///
    /// # Errors
    /// A mount that stays (the directory is then kept), i/o errors.
    pub fn remove(&self) -> Result<(), PodError> {
        remove_unmounted(&self.dir)?;
        remove_unmounted(&self.roots)?;
        remove_unmounted(&self.layers)
    }
}

/// Creates `dir` (0700, its parent too) as a shared mount of itself: what is mounted in it
/// later propagates into virtiofsd's copy (a slave).
fn shared_dir(dir: &Path) -> Result<(), PodError> {
    if let Some(parent) = dir.parent() {
        crate::home::private_dir(parent).map_err(|e| io_at(parent, "creating", e))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_at(dir, "creating", e)),
    }
    if mounts_under(dir)?.iter().any(|m| m == dir) {
        return Ok(());
    }
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| mount_error(dir, "binding the pod's share directory on itself", e))?;
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(|e| mount_error(dir, "making the pod's share directory shared", e))?;
    Ok(())
}

/// The overlay's mount options; paths the option syntax cannot carry are refused.
/// Whether a CRI mount's host path is a directory (else a file); anything else, or a
/// missing path, is refused naming the mount.
///
/// # Errors
/// [`PodError::Invalid`] for a missing path or one that is neither; i/o.
pub(crate) fn host_path_is_dir(m: &HostMount) -> Result<bool, PodError> {
    match fs::metadata(&m.host_path) {
        Ok(md) if md.is_dir() => Ok(true),
        Ok(md) if md.is_file() => Ok(false),
        Ok(_) => Err(PodError::Invalid(format!(
            "mount {} -> {}: the host path is neither a file nor a directory \
             (devices go in the container config's devices)",
            m.host_path.display(),
            m.container_path
        ))),
        // CRI: "if the host path doesn't exist, runtimes should report an error".
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(PodError::Invalid(format!(
            "mount {} -> {}: the host path does not exist; create it first",
            m.host_path.display(),
            m.container_path
        ))),
        Err(e) => Err(io_at(&m.host_path, "reading the mount's host path", e)),
    }
}

fn overlay_options(lower: &Path, upper: &Path, work: &Path) -> Result<String, PodError> {
    let mut parts = Vec::new();
    for (key, p) in [("lowerdir", lower), ("upperdir", upper), ("workdir", work)] {
        let text = p.to_str().filter(|t| !t.contains([',', ':', '\\']));
        let Some(text) = text else {
            return Err(PodError::Invalid(format!(
                "{}: A3S_HOME must not contain ',', ':' or '\\' (overlay mount options cannot \
                 carry them); choose another home",
                p.display()
            )));
        };
        parts.push(format!("{key}={text}"));
    }
    Ok(parts.join(","))
}

/// `m`'s host path, cloned with its propagation and read-only flags, at `target` in `ns`.
/// Flags are set on the clone before it is attached: virtiofsd serves a mount that is
/// already read-only, which the guest cannot lift.
fn attach(m: &HostMount, ns: &MountNs, target: &Path) -> io::Result<()> {
    let tree = Tree::clone_of(&m.host_path)?;
    let follow = match m.propagation {
        Propagation::Private => Follow::Nothing,
        Propagation::HostToContainer => Follow::HostMounts,
    };
    let readonly = match (m.readonly, m.recursive_readonly) {
        (_, true) => ReadOnly::Recursive,
        (true, false) => ReadOnly::Top,
        (false, false) => ReadOnly::No,
    };
    tree.set(follow, readonly)?;
    tree.attach_in(ns, target)
}

/// `mount --bind -o rbind source target`.
#[cfg(test)]
fn bind(source: &Path, target: &Path) -> Result<(), nix::errno::Errno> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
}

/// Creates an empty directory or file (0700/0600) to mount on.
fn mount_point(at: &Path, is_dir: bool) -> Result<(), PodError> {
    if is_dir {
        fs::DirBuilder::new().mode(0o700).create(at)
    } else {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(at)
            .map(drop)
    }
    .map_err(|e| io_at(at, "creating the mount point", e))
}

/// Unmounts every mount at or under `dir` (deepest first), checks that none is left, then
/// removes `dir`'s tree. Never deletes through a mount.
fn remove_unmounted(dir: &Path) -> Result<(), PodError> {
    if fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    // Stacked mounts at one place come off one per pass.
    for _ in 0..8 {
        let mut mounted = mounts_under(dir)?;
        if mounted.is_empty() {
            break;
        }
        mounted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in mounted {
            match umount2(&m, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(mount_error(&m, "unmounting", e)),
            }
        }
    }
    if let Some(left) = mounts_under(dir)?.first() {
        return Err(PodError::WrongState(format!(
            "{} is still mounted; its directory {} is kept (unmount it and remove the pod \
             again)",
            left.display(),
            dir.display()
        )));
    }
    fs::remove_dir_all(dir).map_err(|e| io_at(dir, "removing", e))
}

/// Mount points at or under `dir`, from this process's mount table.
fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, PodError> {
    let table = crate::bounded::read_to_string(Path::new(MOUNTINFO), MAX_MOUNTINFO)
        .map_err(|e| io_at(Path::new(MOUNTINFO), "reading", e))?;
    Ok(parse_mount_points(&table)
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect())
}

/// The mount point (fifth field, octal escapes undone) of each line of a mountinfo table.
fn parse_mount_points(table: &str) -> Vec<PathBuf> {
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

/// Undoes the kernel's `\ooo` escapes (space, tab, newline, backslash) in a mountinfo path.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn io_at(path: &Path, doing: &str, e: io::Error) -> PodError {
    PodError::Io(io::Error::new(
        e.kind(),
        format!("{doing} {}: {e}", path.display()),
    ))
}

fn mount_error(path: &Path, doing: &str, e: nix::errno::Errno) -> PodError {
    let hint = if e == nix::errno::Errno::EPERM {
        " (pod mounts need root: run `a3s-box cri serve` as root)"
    } else {
        ""
    };
    PodError::Io(io::Error::new(
        io::Error::from(e).kind(),
        format!("{doing} at {}: {e}{hint}", path.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        let table = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                     90 22 0:50 / /tmp/a\\040b/c\\134d rw - tmpfs tmpfs rw\n";
        assert_eq!(
            parse_mount_points(table),
            [PathBuf::from("/"), PathBuf::from("/tmp/a b/c\\d")]
        );
        assert_eq!(unescape("a\\011b\\012"), "a\tb\n");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// A process in a mount namespace of its own (a slave copy of the host's), standing in
    /// for virtiofsd's; killed on drop.
    struct OtherNs(std::process::Child);

    impl OtherNs {
        fn start() -> Self {
            let child = std::process::Command::new("unshare")
                .args(["--mount", "--propagation", "slave", "sleep", "600"])
                .spawn()
                .expect("unshare (util-linux)");
            let me = Self(child);
            let ours = fs::read_link("/proc/self/ns/mnt").unwrap();
            while fs::read_link(format!("/proc/{}/ns/mnt", me.0.id())).unwrap() == ours {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            me
        }

        /// The namespace, where the share directory is at its host path.
        fn ns(&self, share: &PodShare) -> MountNs {
            MountNs::of_pid(self.0.id(), share.dir()).unwrap()
        }

        /// `path` as the namespace sees it (through the process's root).
        fn sees(&self, path: &Path) -> PathBuf {
            let relative = path.strip_prefix("/").unwrap();
            PathBuf::from(format!("/proc/{}/root", self.0.id())).join(relative)
        }
    }

    impl Drop for OtherNs {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Real mounts (the suite runs as root; without root, binding is refused and said so).
    #[test]
    fn binds_reach_the_share_and_removal_keeps_the_hosts_files() {
        let tmp = tempfile::tempdir().unwrap();
        let home = A3sHome::at(tmp.path().join("home"));
        let share = PodShare::of(&home, "pod1");
        if !is_root() {
            let e = share.create().unwrap_err().to_string();
            assert!(e.contains("need root"), "{e}");
            return;
        }
        share.create().unwrap();
        // Creating twice is fine (a retried RunPodSandbox) and does not stack mounts.
        share.create().unwrap();
        assert_eq!(mounts_under(share.dir()).unwrap(), [share.dir().to_owned()]);

        let data = tmp.path().join("volume");
        fs::create_dir(&data).unwrap();
        fs::write(data.join("kept"), "host data").unwrap();
        let hosts = tmp.path().join("etc-hosts");
        fs::write(&hosts, "10.0.0.1 pod\n").unwrap();
        let mounts = [
            HostMount {
                host_path: data.clone(),
                container_path: "/data".into(),
                readonly: false,
                ..HostMount::default()
            },
            HostMount {
                host_path: hosts.clone(),
                container_path: "/etc/hosts".into(),
                readonly: true,
                ..HostMount::default()
            },
        ];
        // The binds are made in virtiofsd's namespace only (a stand-in here).
        let other = OtherNs::start();
        let guest = share.bind("c1", &mounts, &other.ns(&share)).unwrap();
        assert_eq!(guest[0].source, format!("{GUEST_POD_MOUNTS}/c1/0"));
        assert_eq!(guest[1].target, "/etc/hosts");
        // Plain read-only is the host's alone (the guest's flag would cover submounts too).
        assert!(!guest[1].readonly);
        let c1 = other.sees(&share.dir().join("c1"));
        assert_eq!(fs::read_to_string(c1.join("0/kept")).unwrap(), "host data");
        assert_eq!(fs::read_to_string(c1.join("1")).unwrap(), "10.0.0.1 pod\n");
        // Writes through a bind reach the host; a read-only bind refuses them.
        fs::write(c1.join("0/new"), "from the pod").unwrap();
        assert_eq!(
            fs::read_to_string(data.join("new")).unwrap(),
            "from the pod"
        );
        let e = fs::write(c1.join("1"), "x").unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(nix::errno::Errno::EROFS as i32),
            "a read-only bind was writable in virtiofsd's namespace: {e}"
        );
        // The host's namespace holds none of them.
        assert_eq!(mounts_under(share.dir()).unwrap(), [share.dir().to_owned()]);

        // Removal takes the binds away and never deletes the host's files.
        share.unbind("c1").unwrap();
        assert!(!c1.exists() && !share.dir().join("c1").exists());
        assert_eq!(fs::read_to_string(data.join("kept")).unwrap(), "host data");
        assert_eq!(
            fs::read_to_string(data.join("new")).unwrap(),
            "from the pod"
        );
        assert_eq!(fs::read_to_string(&hosts).unwrap(), "10.0.0.1 pod\n");

        // A pod removed with a container still bound: everything comes off first.
        share.bind("c2", &mounts[..1], &other.ns(&share)).unwrap();
        share.remove().unwrap();
        assert!(!share.dir().exists());
        assert!(mounts_under(&tmp.path().join("home")).unwrap().is_empty());
        assert_eq!(fs::read_to_string(data.join("kept")).unwrap(), "host data");
    }

    /// `mount --bind dir dir` with `flags` (e.g. shared), as kubelet's volumes often are.
    fn self_bind(dir: &Path, flags: MsFlags) {
        bind(dir, dir).unwrap();
        mount(None::<&str>, dir, None::<&str>, flags, None::<&str>).unwrap();
    }

    fn tmpfs_at(dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
    }

    /// critest's propagation and read-only specs, in a stand-in for virtiofsd's namespace.
    #[test]
    fn propagation_and_read_only_hold_and_the_hosts_directories_stay_removable() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let share = PodShare::of(&A3sHome::at(tmp.path().join("home")), "pod4");
        share.create().unwrap();
        let other = OtherNs::start();

        // A shared host volume, and one holding a writable tmpfs.
        let shared = tmp.path().join("shared");
        fs::create_dir_all(shared.join("later")).unwrap();
        self_bind(&shared, MsFlags::MS_SHARED | MsFlags::MS_REC);
        let ro = tmp.path().join("ro");
        tmpfs_at(&ro.join("tmpfs"));
        let at = |host: &Path, propagation, readonly, recursive_readonly| HostMount {
            host_path: host.to_owned(),
            container_path: "/m".into(),
            readonly,
            recursive_readonly,
            propagation,
        };
        let mounts = [
            at(&shared, Propagation::HostToContainer, false, false),
            at(&shared, Propagation::Private, false, false),
            at(&ro, Propagation::Private, true, false),
            at(&ro, Propagation::Private, true, true),
        ];
        let guest = share.bind("c", &mounts, &other.ns(&share)).unwrap();
        assert_eq!(
            guest.iter().map(|m| m.readonly).collect::<Vec<_>>(),
            [false, false, false, true],
            "the guest adds read-only only for recursive read-only"
        );

        // The host mounts something later: only the host-to-container bind shows it.
        tmpfs_at(&shared.join("later"));
        fs::write(shared.join("later/flag"), "").unwrap();
        let c = other.sees(&share.dir().join("c"));
        assert!(c.join("0/later/flag").exists(), "host-to-container");
        assert!(!c.join("1/later/flag").exists(), "private");

        // Plain read-only leaves the submount writable; recursive read-only does not.
        let erofs = |r: io::Result<()>| r.unwrap_err().raw_os_error();
        let rofs = Some(nix::errno::Errno::EROFS as i32);
        assert_eq!(erofs(fs::write(c.join("2/top"), "x")), rofs);
        fs::write(c.join("2/tmpfs/file"), "x").unwrap();
        assert_eq!(erofs(fs::write(c.join("3/top"), "x")), rofs);
        assert_eq!(erofs(fs::write(c.join("3/tmpfs/other"), "x")), rofs);

        // critest's cleanup while the container runs: the host unmounts the submount and
        // removes the directory (EBUSY while the binds lived in the host's namespace).
        umount2(&ro.join("tmpfs"), MntFlags::MNT_DETACH).unwrap();
        fs::remove_dir_all(&ro).unwrap();
        assert!(
            !c.join("2/tmpfs").exists(),
            "the bind went with its directory"
        );

        share.remove().unwrap();
        for m in [shared.join("later"), shared] {
            umount2(&m, MntFlags::MNT_DETACH).unwrap();
        }
        assert!(mounts_under(tmp.path()).unwrap().is_empty());
    }

    /// A real erofs (mkfs.erofs, which the image store needs too) under a real overlay.
    #[test]
    fn a_container_root_is_the_images_erofs_under_its_own_upper_layer() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        fs::create_dir_all(tree.join("etc")).unwrap();
        fs::write(tree.join("etc/os-release"), "ID=test\n").unwrap();
        let erofs = tmp.path().join("image.erofs");
        let made = std::process::Command::new("mkfs.erofs")
            .arg(&erofs)
            .arg(&tree)
            .output()
            .expect("mkfs.erofs (erofs-utils) is installed by scripts/setup");
        assert!(made.status.success(), "{made:?}");
        let share = PodShare::of(&A3sHome::at(tmp.path().join("home")), "pod3");
        share.create().unwrap();
        let guest = share.mount_root("c1", &erofs).unwrap();
        assert_eq!(guest, format!("{GUEST_POD_ROOTS}/c1"));
        let root = share.roots_dir().join("c1");
        assert_eq!(
            fs::read_to_string(root.join("etc/os-release")).unwrap(),
            "ID=test\n"
        );
        // Every user of the container may enter its `/` (a 0700 root refused non-root users).
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&root).unwrap().permissions().mode() & 0o777,
            0o755
        );
        // Writes go to the container's own upper layer; the image stays as it was.
        fs::write(root.join("etc/os-release"), "changed\n").unwrap();
        fs::write(root.join("new"), "x").unwrap();
        let upper = tmp.path().join("home/pods/layers/pod3/c1/upper");
        assert_eq!(
            fs::read_to_string(upper.join("etc/os-release")).unwrap(),
            "changed\n"
        );
        // The writable layer's figures: the two files written and the directory above one.
        let (bytes, inodes) = share.writable_usage("c1");
        assert_eq!(inodes, 4, "upper, etc, etc/os-release, new");
        assert!(bytes > 0);
        assert_eq!(share.writable_usage("nope"), (0, 0));
        let second = share.mount_root("c2", &erofs).unwrap();
        assert!(second.ends_with("/c2"));
        assert_eq!(
            fs::read_to_string(share.roots_dir().join("c2/etc/os-release")).unwrap(),
            "ID=test\n",
            "another container sees the image, not the first one's writes"
        );
        // Binds of the same container live beside its root.
        let data = tmp.path().join("data");
        fs::create_dir(&data).unwrap();
        let m = [HostMount {
            host_path: data,
            container_path: "/data".into(),
            readonly: false,
            ..HostMount::default()
        }];
        let other = OtherNs::start();
        share.bind("c1", &m, &other.ns(&share)).unwrap();
        share.unbind("c1").unwrap();
        assert!(!upper.exists() && !share.dir().join("c1").exists());
        share.remove().unwrap();
        assert!(mounts_under(tmp.path()).unwrap().is_empty());
        assert!(!tmp.path().join("home/pods/layers/pod3").exists());
        // No loop device keeps the image file.
        let loops = std::process::Command::new("losetup")
            .arg("-j")
            .arg(&erofs)
            .output()
            .unwrap();
        assert!(
            loops.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&loops.stdout)
        );
    }

    #[test]
    fn a_failed_bind_leaves_nothing_mounted() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let share = PodShare::of(&A3sHome::at(tmp.path()), "pod2");
        share.create().unwrap();
        let data = tmp.path().join("v");
        fs::create_dir(&data).unwrap();
        let mounts = [
            HostMount {
                host_path: data.clone(),
                container_path: "/v".into(),
                readonly: false,
                ..HostMount::default()
            },
            HostMount {
                host_path: "/dev/null".into(),
                container_path: "/null".into(),
                readonly: false,
                ..HostMount::default()
            },
        ];
        let other = OtherNs::start();
        let ns = other.ns(&share);
        let e = share.bind("c", &mounts, &ns).unwrap_err().to_string();
        assert!(
            e.contains("/dev/null") && e.contains("neither a file"),
            "{e}"
        );
        assert_eq!(mounts_under(share.dir()).unwrap(), [share.dir().to_owned()]);
        let missing = [HostMount {
            host_path: tmp.path().join("missing"),
            container_path: "/m".into(),
            readonly: false,
            ..HostMount::default()
        }];
        let e = share.bind("c", &missing, &ns).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(!tmp.path().join("missing").exists());
        assert_eq!(mounts_under(share.dir()).unwrap(), [share.dir().to_owned()]);
        assert!(!share.dir().join("c").exists());
        share.remove().unwrap();
    }
}
