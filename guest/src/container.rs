//! A pod container's process: a new mount namespace whose root is the container's directory
//! (its image, copied into the pod VM by the host), sharing the VM's network and UTS
//! namespaces, with the pod's `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname` bound in.
//!
//! In a confidential pod the VM's `/run/secrets` (the tmpfs the attestation agent filled before
//! the pod was reported ready) is bound read-only at the container's `/run/secrets`.
//!
//! The container's CRI mounts (pod VM paths: the pod's share, where the host bound kubelet's
//! files and volumes) are bound last, after the chroot: each source is opened before it and
//! reached as `/proc/self/fd/N`, so the kernel resolves the target inside the container's
//! root and an image's symlink cannot point a bind outside it. A read-only mount is enforced
//! by the host, whose bind is read-only (the guest cannot lift it); the guest adds a
//! read-only flag only when the host asks ([`ContainerMount::readonly`]: recursive read-only,
//! and a confidential pod's copies), because over one virtiofs mount it also makes the host's
//! submounts read-only (CRI's plain `readonly` is not recursive).
//!
//! The container's security context ([`ContainerSecurity`]) adds, after the CRI mounts and in
//! runc's order: masked paths (`/dev/null` over a file, an empty read-only tmpfs over a
//! directory), read-only paths (bound on themselves, remounted read-only), and last the
//! read-only root (the root is bound on itself before the chroot so that it is a mount of its
//! own, then remounted read-only: the mounts below it keep their modes). A privileged
//! container's `/sys` is writable.
//!
//! Everything that allocates happens in [`prepare`], in guest-init; the forked child only
//! makes system calls on prepared C strings ([`Entry::enter`]), as is required between
//! `fork` and `exec` in a multi-threaded process.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path};

use a3s_vmm::proto::{ContainerMount, ContainerSecurity};

/// Pod files every container sees as they are in the pod.
const POD_FILES: [&str; 3] = ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"];

/// What the child needs to enter a container root.
#[derive(Debug)]
pub(crate) struct Entry {
    root: CString,
    proc_dir: CString,
    dev_dir: CString,
    /// What the container's `/dev` holds.
    dev: Dev,
    sys_dir: CString,
    /// (pod file, file in the container) pairs to bind.
    binds: Vec<(CString, CString)>,
    /// (the VM's secrets directory, its mount point in the container), bound read-only.
    secrets: Option<(CString, CString)>,
    workdir: CString,
    /// The container's `cgroup.procs` (joined first, before the namespace changes).
    cgroup_procs: Option<OwnedFd>,
    /// CRI mounts, bound in order after the chroot.
    mounts: Vec<Bind>,
    /// Paths inside the container masked after the mounts.
    masked: Vec<CString>,
    /// Paths inside the container made read-only after the masks.
    readonly: Vec<CString>,
    /// The root is made read-only last.
    readonly_root: bool,
    /// `/sys` is mounted writable (privileged).
    sys_writable: bool,
    /// Its seccomp filters, installed last.
    seccomp: crate::seccomp::Filters,
    /// The container's mount namespace to join (an exec): then nothing is mounted, the
    /// child only chroots into the root it finds there.
    join_mount_ns: Option<OwnedFd>,
}

/// The container's `/dev`. An unprivileged container gets a tmpfs of its own (`nodev`, so a
/// node made there with `CAP_MKNOD` opens nothing) holding binds of the standard devices and
/// the CRI devices asked for, as runc's default set; its root is `nodev` too. The pod's
/// `/dev/pts` and `/dev/shm` are bound in and `/dev/mqueue` mounted: a pod shares its IPC
/// namespace. A privileged container sees the pod VM's `/dev` as is.
#[derive(Debug)]
enum Dev {
    /// The pod VM's `/dev`, bound recursively.
    Vm,
    Own {
        /// (device in the VM, empty file to bind it on), in the container's `/dev`.
        nodes: Vec<(CString, CString)>,
        /// Directories made in the tmpfs first (parents of device paths, mount points).
        dirs: Vec<CString>,
        /// (directory in the VM, mount point), bound recursively.
        dir_binds: Vec<(CString, CString)>,
        /// (what the link names, the link).
        links: Vec<(CString, CString)>,
        /// Where the pod IPC namespace's message queues are mounted.
        mqueue: CString,
    },
}

/// The devices every unprivileged container gets (runc's default set).
const STANDARD_DEVICES: [&str; 7] = ["null", "zero", "full", "random", "urandom", "tty", "ptmx"];
/// The pod's shared directories under `/dev`, bound when the VM has them.
const POD_DEV_DIRS: [&str; 2] = ["pts", "shm"];
/// runc's links: `/dev/fd` and the standard streams through `/proc`.
const DEV_LINKS: [(&str, &str); 4] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
];

/// The container's `/dev` at `dev_dir` (its path in the VM): the standard devices and
/// `devices`, each checked to be a device of the pod VM.
fn dev_of(
    dev_dir: &Path,
    privileged: bool,
    devices: &[a3s_vmm::proto::ContainerDevice],
) -> Result<Dev, String> {
    let is_device = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_char_device() || m.file_type().is_block_device()
        })
    };
    for d in devices {
        if !is_device(Path::new(&d.path)) {
            return Err(format!(
                "device {}: the pod VM has no such device (a pod VM's devices are its own: \
                 only virtual ones such as /dev/fuse or /dev/net/tun can be given)",
                d.path
            ));
        }
    }
    if privileged {
        return match devices.iter().find(|d| d.path != d.container_path) {
            Some(d) => Err(format!(
                "device {} -> {}: a privileged container sees the pod VM's /dev as it is; \
                 give the device at its own path",
                d.path, d.container_path
            )),
            None => Ok(Dev::Vm),
        };
    }
    let in_dev = |container_path: &str| -> Result<std::path::PathBuf, String> {
        let rel = container_path
            .strip_prefix("/dev/")
            .filter(|r| !r.is_empty())
            .ok_or_else(|| format!("device path {container_path:?} must be under /dev/"))?;
        let target = under(dev_dir, rel)?;
        if target.parent().is_none_or(|p| !p.starts_with(dev_dir)) || target == dev_dir {
            return Err(format!(
                "device path {container_path:?} must be under /dev/"
            ));
        }
        Ok(target)
    };
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for name in STANDARD_DEVICES {
        let vm = Path::new("/dev").join(name);
        if is_device(&vm) {
            nodes.push((cstr(&vm)?, cstr(&dev_dir.join(name))?));
        }
    }
    for d in devices {
        let target = in_dev(&d.container_path)?;
        // Parents below /dev, outermost first.
        let mut parents: Vec<_> = target
            .ancestors()
            .skip(1)
            .take_while(|a| *a != dev_dir)
            .map(cstr)
            .collect::<Result<_, _>>()?;
        parents.reverse();
        dirs.extend(parents);
        nodes.push((cstr(Path::new(&d.path))?, cstr(&target)?));
    }
    let mut dir_binds = Vec::new();
    for name in POD_DEV_DIRS {
        let vm = Path::new("/dev").join(name);
        if vm.is_dir() {
            let target = dev_dir.join(name);
            dirs.push(cstr(&target)?);
            dir_binds.push((cstr(&vm)?, cstr(&target)?));
        }
    }
    let links = DEV_LINKS
        .iter()
        .map(|(to, name)| Ok((cstr(Path::new(to))?, cstr(&dev_dir.join(name))?)))
        .collect::<Result<_, String>>()?;
    let mqueue = dev_dir.join("mqueue");
    dirs.push(cstr(&mqueue)?);
    Ok(Dev::Own {
        nodes,
        dirs,
        dir_binds,
        links,
        mqueue: cstr(&mqueue)?,
    })
}

/// One CRI mount as the child binds it.
#[derive(Debug)]
struct Bind {
    /// The source, opened (`O_PATH`) by guest-init to check it and to reserve its descriptor
    /// number; the child replaces it with the source opened in its own mount namespace (a
    /// bind from another namespace's mount is EINVAL).
    source_fd: OwnedFd,
    /// The source's path in the pod VM.
    source: CString,
    /// `/proc/self/fd/N` of the source, valid inside the container (its `/proc`).
    source_link: CString,
    /// The target's ancestors, outermost first (created when missing).
    parents: Vec<CString>,
    /// The target, absolute inside the container.
    target: CString,
    /// The source is a directory (else the target is a file).
    dir: bool,
    /// Remounted read-only after the bind (the host's read-only bind already refuses writes
    /// through the share; a confidential pod's copies have only this).
    readonly: bool,
}

/// What a pod container's process enters: its root directory, its mounts and its cgroup.
#[derive(Debug)]
pub(crate) struct Root<'a> {
    /// Its root directory in the pod VM.
    pub(crate) dir: &'a str,
    /// Its CRI mounts.
    pub(crate) mounts: &'a [ContainerMount],
    /// The container's `cgroup.procs`.
    pub(crate) cgroup_procs: Option<OwnedFd>,
    /// Its security context (`None`: a host from before it, nothing is restricted).
    pub(crate) security: Option<&'a ContainerSecurity>,
    /// The PID namespace its process is born into (`None`: the VM's).
    pub(crate) pid_ns: Option<crate::pid_ns::PidNs>,
    /// An exec's: the mount namespace of its container's main process, joined instead of
    /// building the container's mounts again (as `runc exec` joins the container's).
    pub(crate) mount_ns: Option<OwnedFd>,
}

/// Opens a mount's source and prepares its target's path.
fn bind_of(m: &ContainerMount) -> Result<Bind, String> {
    if !m.target.starts_with('/') {
        return Err(format!(
            "mount target {:?} must be an absolute path",
            m.target
        ));
    }
    let target = under(Path::new("/"), &m.target)?;
    if target == Path::new("/") {
        return Err(format!(
            "mount {} -> /: a mount cannot replace the container's root",
            m.source
        ));
    }
    let source = nix::fcntl::open(
        Path::new(&m.source),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("mount source {} in the pod VM: {e}", m.source))?;
    let dir = nix::sys::stat::fstat(&source)
        .map_err(|e| format!("mount source {}: {e}", m.source))?
        .st_mode
        & libc::S_IFMT
        == libc::S_IFDIR;
    let parents = target
        .ancestors()
        .skip(1)
        .filter(|a| *a != Path::new("/"))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(cstr)
        .collect::<Result<_, _>>()?;
    Ok(Bind {
        source_link: CString::new(format!("/proc/self/fd/{}", source.as_raw_fd()))
            .map_err(|_| "fd path".to_owned())?,
        source_fd: source,
        source: cstr(Path::new(&m.source))?,
        parents,
        target: cstr(&target)?,
        dir,
        readonly: m.readonly,
    })
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} contains a NUL byte", p.display()))
}

/// Joins a guest-absolute `path` under `root`, refusing `..`.
pub(crate) fn under(root: &Path, path: &str) -> Result<std::path::PathBuf, String> {
    let mut out = root.to_owned();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("{path}: `..` is not allowed in a container path"))
            }
        }
    }
    Ok(out)
}

/// Checks `root` and creates the mount points the child needs inside it; the child joins the
/// cgroup whose `cgroup.procs` is `cgroup_procs`.
pub(crate) fn prepare(container: Root<'_>, workdir: &str) -> Result<Entry, String> {
    prepare_with(
        container,
        workdir,
        Path::new(crate::agent::secrets::SECRETS_DIR),
    )
}

/// [`prepare`] with the VM's secrets directory at `secrets` (placed only when it exists).
fn prepare_with(container: Root<'_>, workdir: &str, secrets: &Path) -> Result<Entry, String> {
    let Root {
        dir: root,
        mounts,
        cgroup_procs,
        security,
        pid_ns: _,
        mount_ns,
    } = container;
    let root_path = Path::new(root);
    if !root_path.is_absolute() || root_path == Path::new("/") {
        return Err(format!(
            "container root {root:?} must be an absolute directory other than /"
        ));
    }
    let empty = ContainerSecurity::default();
    let sec = security.unwrap_or(&empty);
    let seccomp = match &sec.seccomp {
        Some(p) => crate::seccomp::compile(p)?,
        None => crate::seccomp::Filters::default(),
    };
    if let Some(ns) = mount_ns {
        return Entry::joining(root_path, ns, workdir, cgroup_procs, seccomp);
    }
    if !root_path.is_dir() {
        return Err(format!(
            "container root {root} does not exist in the pod VM"
        ));
    }
    let mkdir =
        |p: &Path| std::fs::create_dir_all(p).map_err(|e| format!("creating {}: {e}", p.display()));
    let (proc_dir, dev_dir, sys_dir) = (
        root_path.join("proc"),
        root_path.join("dev"),
        root_path.join("sys"),
    );
    for d in [&proc_dir, &dev_dir, &sys_dir] {
        mkdir(d)?;
    }
    let mut binds = Vec::new();
    for file in POD_FILES {
        if !Path::new(file).is_file() {
            continue;
        }
        let target = under(root_path, file)?;
        // An image's symlink there would point the bind outside the container: leave it.
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() || m.is_dir() => continue,
            Ok(_) => {}
            Err(_) => {
                if let Some(parent) = target.parent() {
                    mkdir(parent)?;
                }
                std::fs::File::create(&target)
                    .map_err(|e| format!("creating {}: {e}", target.display()))?;
            }
        }
        binds.push((cstr(Path::new(file))?, cstr(&target)?));
    }
    let secrets = if secrets.is_dir() {
        let target = secrets_target(root_path)?;
        mkdir(&target)?;
        Some((cstr(secrets)?, cstr(&target)?))
    } else {
        None
    };
    let work = under(root_path, workdir)?;
    mkdir(&work)?;
    let mounts = mounts.iter().map(bind_of).collect::<Result<_, _>>()?;
    let inside = |paths: &[String], what: &str| -> Result<Vec<CString>, String> {
        paths
            .iter()
            .map(|p| {
                if !p.starts_with('/') {
                    return Err(format!("{what} {p:?} must be an absolute path"));
                }
                cstr(&under(Path::new("/"), p)?)
            })
            .collect()
    };
    Ok(Entry {
        root: cstr(root_path)?,
        proc_dir: cstr(&proc_dir)?,
        dev_dir: cstr(&dev_dir)?,
        dev: dev_of(&dev_dir, sec.privileged, &sec.devices)?,
        sys_dir: cstr(&sys_dir)?,
        binds,
        secrets,
        workdir: cstr(Path::new(if workdir.is_empty() { "/" } else { workdir }))?,
        cgroup_procs,
        mounts,
        masked: inside(&sec.masked_paths, "masked path")?,
        readonly: inside(&sec.readonly_paths, "read-only path")?,
        readonly_root: sec.readonly_rootfs,
        sys_writable: sec.privileged,
        seccomp,
        join_mount_ns: None,
    })
}

/// `root/run/secrets`, refusing an image whose `/run` or `/run/secrets` is a symlink or not a
/// directory (the bind would land outside the container; secrets are never placed there).
fn secrets_target(root: &Path) -> Result<std::path::PathBuf, String> {
    let mut p = root.to_owned();
    for part in ["run", "secrets"] {
        p.push(part);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "the image's /{} is not a directory, so the pod's secrets cannot be \
                     mounted at /run/secrets; refusing to start the container",
                    p.strip_prefix(root).unwrap_or(&p).display()
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", p.display())),
        }
    }
    Ok(p)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Entry {
    /// An exec's entry: the container's mount namespace `ns` is joined as it is.
    fn joining(
        root: &Path,
        ns: OwnedFd,
        workdir: &str,
        cgroup_procs: Option<OwnedFd>,
        seccomp: crate::seccomp::Filters,
    ) -> Result<Self, String> {
        Ok(Self {
            root: cstr(root)?,
            proc_dir: CString::default(),
            dev_dir: CString::default(),
            dev: Dev::Vm,
            sys_dir: CString::default(),
            binds: Vec::new(),
            secrets: None,
            workdir: cstr(Path::new(if workdir.is_empty() { "/" } else { workdir }))?,
            cgroup_procs,
            mounts: Vec::new(),
            masked: Vec::new(),
            readonly: Vec::new(),
            readonly_root: false,
            sys_writable: false,
            seccomp,
            join_mount_ns: Some(ns),
        })
    }

    /// In the forked child: new mount namespace, mounts, chroot, working directory (the user
    /// is the credentials' pre-exec's job, which runs after this one).
    /// Only system calls on prepared strings: nothing allocates here.
    #[allow(unsafe_code)]
    pub(crate) fn enter(&self) -> io::Result<()> {
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: every pointer is a NUL-terminated string owned by `self` (alive across the
        // calls) or null where the system calls accept null.
        unsafe {
            // "0" moves the writing process itself into the container's cgroup.
            if let Some(fd) = &self.cgroup_procs {
                if libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(ns) = &self.join_mount_ns {
                // The container's mounts as its main process has them; its root is a path
                // there (chroot is not part of a mount namespace).
                check(libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS))?;
                check(libc::chroot(self.root.as_ptr()))?;
                check(libc::chdir(c"/".as_ptr()))?;
                check(libc::chdir(self.workdir.as_ptr()))?;
                return self.seccomp.install();
            }
            check(libc::unshare(libc::CLONE_NEWNS))?;
            // Nothing mounted here may propagate back to the pod.
            check(libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            if self.root_remount().is_some() {
                // The root as a mount of its own, so that it alone turns read-only and
                // `nodev` at the end (the mounts made below land on it).
                check(libc::mount(
                    self.root.as_ptr(),
                    self.root.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
            }
            check(libc::mount(
                c"proc".as_ptr(),
                self.proc_dir.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ))?;
            self.dev.enter(&self.dev_dir)?;
            check(libc::mount(
                c"sysfs".as_ptr(),
                self.sys_dir.as_ptr(),
                c"sysfs".as_ptr(),
                libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC
                    | if self.sys_writable {
                        0
                    } else {
                        libc::MS_RDONLY
                    },
                std::ptr::null(),
            ))?;
            for (from, to) in &self.binds {
                check(libc::mount(
                    from.as_ptr(),
                    to.as_ptr(),
                    null,
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
            }
            if let Some((from, to)) = &self.secrets {
                check(libc::mount(
                    from.as_ptr(),
                    to.as_ptr(),
                    null,
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
                // A bind mount takes its flags only on a remount.
                check(libc::mount(
                    null,
                    to.as_ptr(),
                    null,
                    libc::MS_BIND
                        | libc::MS_REMOUNT
                        | libc::MS_RDONLY
                        | libc::MS_NOSUID
                        | libc::MS_NODEV
                        | libc::MS_NOEXEC,
                    std::ptr::null(),
                ))?;
            }
            for b in &self.mounts {
                b.reopen()?;
            }
            check(libc::chroot(self.root.as_ptr()))?;
            check(libc::chdir(c"/".as_ptr()))?;
            for b in &self.mounts {
                b.bind()?;
            }
            for p in &self.masked {
                mask(p)?;
            }
            for p in &self.readonly {
                make_readonly(p)?;
            }
            if let Some(flags) = self.root_remount() {
                check(libc::mount(
                    null,
                    c"/".as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REMOUNT | flags,
                    std::ptr::null(),
                ))?;
            }
            check(libc::chdir(self.workdir.as_ptr()))?;
        }
        // Last, with every privilege still held (the credentials come next, under it),
        // unless `take_late_seccomp` moved the filters after the credentials.
        self.seccomp.install()
    }

    /// The flags the root is remounted with at the end, if any: read-only when asked, and
    /// `nodev` for an unprivileged container (a device node in its image or made on its
    /// root opens nothing).
    fn root_remount(&self) -> Option<libc::c_ulong> {
        let ro = if self.readonly_root {
            libc::MS_RDONLY
        } else {
            0
        };
        let nodev = if matches!(self.dev, Dev::Own { .. }) {
            libc::MS_NODEV
        } else {
            0
        };
        (ro | nodev != 0).then_some(ro | nodev)
    }

    /// With `no_new_privs` the filters need no privilege, so they go as late as possible:
    /// after the credentials, right before exec (runc's order), and a profile need not allow
    /// what dropping to the container's user calls. Returns them for that last pre-exec.
    pub(crate) fn take_late_seccomp(
        &mut self,
        no_new_privs: bool,
    ) -> Option<crate::seccomp::Filters> {
        no_new_privs.then(|| std::mem::take(&mut self.seccomp))
    }
}

impl Dev {
    /// In the child, before the chroot: the container's `/dev` at `dev_dir`.
    #[allow(unsafe_code)]
    fn enter(&self, dev_dir: &CString) -> io::Result<()> {
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: every pointer is a NUL-terminated string owned by `self` or the caller
        // (alive across the calls), a static C string, or null where mount(2) accepts it.
        unsafe {
            let Self::Own {
                nodes,
                dirs,
                dir_binds,
                links,
                mqueue,
            } = self
            else {
                return check(libc::mount(
                    c"/dev".as_ptr(),
                    dev_dir.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ));
            };
            check(libc::mount(
                c"tmpfs".as_ptr(),
                dev_dir.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_STRICTATIME,
                c"mode=755,size=65536k".as_ptr().cast(),
            ))?;
            for d in dirs {
                if libc::mkdir(d.as_ptr(), 0o755) != 0
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return Err(io::Error::last_os_error());
                }
            }
            for (vm, target) in nodes {
                let fd = libc::open(
                    target.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOCTTY,
                    0o666,
                );
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(fd);
                check(libc::mount(
                    vm.as_ptr(),
                    target.as_ptr(),
                    null,
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
            }
            for (vm, target) in dir_binds {
                check(libc::mount(
                    vm.as_ptr(),
                    target.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
            }
            for (to, link) in links {
                check(libc::symlink(to.as_ptr(), link.as_ptr()))?;
            }
            // The pod shares one IPC namespace: this shows its queues.
            check(libc::mount(
                c"mqueue".as_ptr(),
                mqueue.as_ptr(),
                c"mqueue".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ))?;
        }
        Ok(())
    }
}

/// A path missing from the image is skipped (runc does the same for masked and read-only
/// paths: the defaults name `/proc` files a kernel may lack).
fn skip_missing(rc: libc::c_int) -> io::Result<bool> {
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// runc's `maskPath`: `/dev/null` bound over a file; over a directory (ENOTDIR), an empty
/// read-only tmpfs. In the child, inside the container's root.
#[allow(unsafe_code)]
fn mask(path: &CString) -> io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: every pointer is a NUL-terminated string (`path` is owned by the caller and
    // outlives the calls) or null where mount(2) accepts null.
    unsafe {
        let rc = libc::mount(
            c"/dev/null".as_ptr(),
            path.as_ptr(),
            null,
            libc::MS_BIND,
            std::ptr::null(),
        );
        if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOTDIR) {
            check(libc::mount(
                c"tmpfs".as_ptr(),
                path.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_RDONLY,
                std::ptr::null(),
            ))
        } else {
            skip_missing(rc).map(drop)
        }
    }
}

/// runc's `readonlyPath`: the path bound on itself, then remounted read-only keeping its
/// nosuid/nodev/noexec flags. In the child, inside the container's root.
#[allow(unsafe_code)]
fn make_readonly(path: &CString) -> io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: `path` is a NUL-terminated string owned by the caller; `st` is a statfs
    // buffer on this stack frame, valid for the call.
    unsafe {
        let bound = libc::mount(
            path.as_ptr(),
            path.as_ptr(),
            null,
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        );
        if !skip_missing(bound)? {
            return Ok(());
        }
        // statvfs(3) takes the kernel's statfs flags as they are (ST_VALID), reading nothing else.
        let mut st: libc::statvfs = std::mem::zeroed();
        check(libc::statvfs(path.as_ptr(), &mut st))?;
        // ST_NOSUID, ST_NODEV and ST_NOEXEC have the MS_ flags' values.
        let kept = st.f_flag & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
        check(libc::mount(
            path.as_ptr(),
            path.as_ptr(),
            null,
            kept | libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            std::ptr::null(),
        ))
    }
}

impl Bind {
    /// In the child, in its new mount namespace: the source opened again there, at the
    /// reserved descriptor number.
    #[allow(unsafe_code)]
    fn reopen(&self) -> io::Result<()> {
        // SAFETY: `source` is a NUL-terminated string owned by `self`; the descriptors are
        // this process's own.
        unsafe {
            let fd = libc::open(self.source.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let moved = libc::dup3(fd, self.source_fd.as_raw_fd(), libc::O_CLOEXEC);
            let e = io::Error::last_os_error();
            libc::close(fd);
            if moved < 0 {
                return Err(e);
            }
        }
        Ok(())
    }

    /// In the child, inside the container's root: creates the target when missing and binds
    /// the source on it. Only system calls on prepared strings.
    #[allow(unsafe_code)]
    fn bind(&self) -> io::Result<()> {
        let null = std::ptr::null::<libc::c_char>();
        let exists_ok = |rc: libc::c_int| -> io::Result<()> {
            let e = io::Error::last_os_error();
            if rc == 0 || e.raw_os_error() == Some(libc::EEXIST) {
                Ok(())
            } else {
                Err(e)
            }
        };
        // SAFETY: every pointer is a NUL-terminated string owned by `self`, or null where
        // the system calls accept null.
        unsafe {
            for p in &self.parents {
                exists_ok(libc::mkdir(p.as_ptr(), 0o755))?;
            }
            if self.dir {
                exists_ok(libc::mkdir(self.target.as_ptr(), 0o755))?;
            } else {
                let fd = libc::open(
                    self.target.as_ptr(),
                    libc::O_CREAT | libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY,
                    0o644,
                );
                // An existing directory there: the bind below says what is wrong.
                if fd >= 0 {
                    libc::close(fd);
                }
            }
            check(libc::mount(
                self.source_link.as_ptr(),
                self.target.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            if self.readonly {
                // A bind takes its flags only on a remount (of this mount, not the ones below).
                check(libc::mount(
                    null,
                    self.target.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    std::ptr::null(),
                ))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(dir: &str) -> Root<'_> {
        Root {
            dir,
            mounts: &[],
            cgroup_procs: None,
            security: None,
            pid_ns: None,
            mount_ns: None,
        }
    }

    #[test]
    fn mounts_open_their_source_and_list_the_targets_parents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("c");
        std::fs::create_dir(&root).unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, "127.0.0.1 localhost\n").unwrap();
        let mounts = [
            ContainerMount {
                source: file.to_str().unwrap().into(),
                target: "/etc/hosts".into(),
                readonly: true,
            },
            ContainerMount {
                source: dir.path().to_str().unwrap().into(),
                target: "/var/lib/data/".into(),
                readonly: false,
            },
        ];
        let entry = prepare(
            Root {
                dir: root.to_str().unwrap(),
                mounts: &mounts,
                cgroup_procs: None,
                security: None,
                pid_ns: None,
                mount_ns: None,
            },
            "/",
        )
        .unwrap();
        let [hosts, data] = &entry.mounts[..] else {
            panic!("two mounts")
        };
        assert!(!hosts.dir);
        assert_eq!(hosts.target.to_str().unwrap(), "/etc/hosts");
        assert_eq!(hosts.parents, [c"/etc".to_owned()]);
        assert!(hosts
            .source_link
            .to_str()
            .unwrap()
            .starts_with("/proc/self/fd/"));
        assert!(data.dir);
        assert_eq!(data.target.to_str().unwrap(), "/var/lib/data");
        assert_eq!(data.parents, [c"/var".to_owned(), c"/var/lib".to_owned()]);
        // Nothing is created in the image before the child's chroot (the pod's own files
        // get their targets in /etc, as before).
        assert!(!root.join("var").exists());
    }

    #[test]
    fn bad_mounts_are_refused_naming_the_mount() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let refuse = |source: &str, target: &str| {
            let m = [ContainerMount {
                source: source.into(),
                target: target.into(),
                readonly: false,
            }];
            prepare(
                Root {
                    dir: root,
                    mounts: &m,
                    cgroup_procs: None,
                    security: None,
                    pid_ns: None,
                    mount_ns: None,
                },
                "/",
            )
            .unwrap_err()
        };
        assert!(refuse("/nonexistent-a3s-src", "/x").contains("/nonexistent-a3s-src"));
        assert!(refuse(root, "relative").contains("absolute"));
        assert!(refuse(root, "/a/../../etc").contains(".."));
        assert!(refuse(root, "/").contains("root"));
    }

    #[test]
    fn security_paths_are_prepared_inside_the_container_and_bad_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let with = |sec: &ContainerSecurity| {
            prepare(
                Root {
                    dir: root,
                    mounts: &[],
                    cgroup_procs: None,
                    security: Some(sec),
                    pid_ns: None,
                    mount_ns: None,
                },
                "/",
            )
        };
        let sec = ContainerSecurity {
            masked_paths: vec!["/proc/kcore".into(), "/bin//ls".into()],
            readonly_paths: vec!["/proc/sys".into()],
            readonly_rootfs: true,
            privileged: false,
            ..Default::default()
        };
        let entry = with(&sec).unwrap();
        // Paths stay container paths: the child resolves them after its chroot.
        assert_eq!(
            entry.masked,
            [c"/proc/kcore".to_owned(), c"/bin/ls".to_owned()]
        );
        assert_eq!(entry.readonly, [c"/proc/sys".to_owned()]);
        assert!(entry.readonly_root && !entry.sys_writable);
        let e = with(&ContainerSecurity {
            masked_paths: vec!["proc/kcore".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("masked path") && e.contains("absolute"), "{e}");
        let e = with(&ContainerSecurity {
            readonly_paths: vec!["/a/../../etc".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains(".."), "{e}");
        // No context (a host from before it): nothing restricted.
        let none = prepare(plain(root), "/").unwrap();
        assert!(none.masked.is_empty() && none.readonly.is_empty() && !none.readonly_root);
    }

    #[test]
    fn an_unprivileged_dev_holds_the_standard_devices_and_the_ones_given() {
        let device = |path: &str, container_path: &str| a3s_vmm::proto::ContainerDevice {
            path: path.into(),
            container_path: container_path.into(),
        };
        let dev_dir = Path::new("/containers/c/dev");
        let Dev::Own {
            nodes,
            dirs,
            dir_binds,
            links,
            mqueue,
        } = dev_of(dev_dir, false, &[device("/dev/null", "/dev/a/b/nul")]).unwrap()
        else {
            panic!("an unprivileged container has its own /dev");
        };
        let names: Vec<_> = nodes.iter().map(|(_, t)| t.to_str().unwrap()).collect();
        for standard in ["null", "zero", "random", "urandom"] {
            assert!(
                names.contains(&format!("/containers/c/dev/{standard}").as_str()),
                "{names:?}"
            );
        }
        assert_eq!(names.last(), Some(&"/containers/c/dev/a/b/nul"));
        let dirs: Vec<_> = dirs.iter().map(|d| d.to_str().unwrap()).collect();
        let a = dirs
            .iter()
            .position(|d| *d == "/containers/c/dev/a")
            .unwrap();
        let ab = dirs
            .iter()
            .position(|d| *d == "/containers/c/dev/a/b")
            .unwrap();
        assert!(a < ab, "parents first: {dirs:?}");
        assert!(dir_binds.iter().any(|(vm, _)| vm.as_c_str() == c"/dev/pts"));
        assert!(links
            .iter()
            .any(|(to, l)| to.as_c_str() == c"/proc/self/fd"
                && l.as_c_str() == c"/containers/c/dev/fd"));
        assert_eq!(mqueue.as_c_str(), c"/containers/c/dev/mqueue");

        // A device the VM lacks, a path outside /dev, and a renamed device in a privileged
        // container are refused, naming the device.
        let e = dev_of(dev_dir, false, &[device("/dev/a3s-none", "/dev/x")]).unwrap_err();
        assert!(
            e.contains("/dev/a3s-none") && e.contains("no such device"),
            "{e}"
        );
        let e = dev_of(dev_dir, false, &[device("/dev/null", "/dev/../etc/x")]).unwrap_err();
        assert!(e.contains("`..`"), "{e}");
        let e = dev_of(dev_dir, false, &[device("/dev/null", "/dev")]).unwrap_err();
        assert!(e.contains("under /dev/"), "{e}");
        let e = dev_of(dev_dir, true, &[device("/dev/null", "/dev/other")]).unwrap_err();
        assert!(e.contains("privileged"), "{e}");
        assert!(matches!(
            dev_of(dev_dir, true, &[device("/dev/null", "/dev/null")]),
            Ok(Dev::Vm)
        ));
    }

    #[test]
    fn container_paths_stay_under_the_root() {
        let root = Path::new("/containers/abc");
        assert_eq!(
            under(root, "/var/www").unwrap(),
            Path::new("/containers/abc/var/www")
        );
        assert_eq!(under(root, "/").unwrap(), root);
        assert!(under(root, "/../etc").unwrap_err().contains(".."));
    }

    #[test]
    fn prepare_refuses_the_pod_root_and_missing_roots() {
        assert!(prepare(plain("/"), "/")
            .unwrap_err()
            .contains("other than /"));
        assert!(prepare(plain("rel"), "/").is_err());
        assert!(prepare(plain("/nonexistent-a3s-root"), "/")
            .unwrap_err()
            .contains("does not exist"));
    }

    #[test]
    fn secrets_get_a_mount_point_unless_the_image_redirects_run() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("vm-secrets");
        std::fs::create_dir(&secrets).unwrap();
        let root = dir.path().join("c");
        std::fs::create_dir(&root).unwrap();
        let entry = prepare_with(plain(root.to_str().unwrap()), "/", &secrets).unwrap();
        let (from, to) = entry.secrets.unwrap();
        assert_eq!(from.to_str().unwrap(), secrets.to_str().unwrap());
        assert_eq!(Path::new(to.to_str().unwrap()), root.join("run/secrets"));
        assert!(root.join("run/secrets").is_dir());
        // No secrets in the VM (not a confidential pod): nothing is bound.
        let none =
            prepare_with(plain(root.to_str().unwrap()), "/", &dir.path().join("none")).unwrap();
        assert!(none.secrets.is_none());
        // An image whose /run points elsewhere is refused rather than followed.
        let evil = dir.path().join("evil");
        std::fs::create_dir(&evil).unwrap();
        std::os::unix::fs::symlink("/", evil.join("run")).unwrap();
        let e = prepare_with(plain(evil.to_str().unwrap()), "/", &secrets).unwrap_err();
        assert!(e.contains("/run is not a directory"), "{e}");
    }

    #[test]
    fn prepare_creates_mount_points_and_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let entry = prepare(plain(root), "/srv/app").unwrap();
        for d in ["proc", "dev", "sys", "srv/app"] {
            assert!(dir.path().join(d).is_dir(), "{d}");
        }
        assert_eq!(entry.workdir.to_str().unwrap(), "/srv/app");
        // Pod files present on this machine get a bind target in the container.
        for (from, to) in &entry.binds {
            assert!(Path::new(to.to_str().unwrap()).is_file(), "{from:?}");
        }
    }
}
