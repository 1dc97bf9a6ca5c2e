//! virtiofs shares (volumes and bind mounts): one `virtiofsd` per share, one vhost-user-fs
//! device per share, and the shared guest memory that vhost-user needs.
//!
//! The 6.12 cloud kernel has virtiofs built in and no 9p, so host directories reach the guest
//! through `virtiofsd` (crates.io; `sudo scripts/setup` installs it into `/usr/local/bin`).
//! vhost-user devices read guest memory from another process, so a VM with shares gets its RAM
//! from a shared memfd (`-object memory-backend-memfd,share=on`); a VM without shares keeps
//! plain anonymous memory (see [`crate::design`] for the measured cost).
//!
//! Each daemon serves exactly one QEMU connection and exits when QEMU disconnects, so
//! [`Daemons`] is spawned again for every boot attempt and killed and reaped when dropped
//! (also `PR_SET_PDEATHSIG`, so no daemon outlives the process that owns the VM).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::qemu::Machine;

/// Overrides where `virtiofsd` is looked for.
pub const VIRTIOFSD_ENV: &str = "A3S_VIRTIOFSD";
/// The daemon's binary name.
pub const VIRTIOFSD: &str = "virtiofsd";
/// Longest virtiofs tag the device accepts.
pub const MAX_TAG_LEN: usize = 36;

/// One host directory exported to the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    /// virtiofs tag (the guest mounts `-t virtiofs TAG`).
    pub tag: String,
    /// The exported host directory.
    pub host_dir: PathBuf,
    /// vhost-user socket between QEMU and the daemon.
    pub socket: PathBuf,
    /// Export read-only (the guest also mounts it read-only).
    pub readonly: bool,
    /// Only this guest changes the directory (a pod's container roots): the guest keeps
    /// file data and names cached across opens (`--cache=always`). Without it every open
    /// drops the file's cached pages, so each exec of a binary read it again through
    /// virtiofs (115 ms per `/bin/true` under TCG). A directory the host also changes
    /// (volumes, kubelet's files) must not have it: the guest would not see those changes.
    pub keep_cache: bool,
    /// The daemon's stderr.
    pub log: PathBuf,
}

/// A share could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// No `virtiofsd` binary.
    #[error("virtiofsd not found (looked in ${VIRTIOFSD_ENV}, /usr/local/bin, ~/.cargo/bin, /usr/libexec and PATH); volumes and bind mounts need it")]
    NoDaemon,
    /// The exported directory is missing.
    #[error("the host directory {0} of a mount does not exist or is not a directory")]
    MissingDir(PathBuf),
    /// Spawning the daemon failed.
    #[error("cannot run {binary}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The daemon exited or never created its socket.
    #[error("virtiofsd for {dir} did not start: {log}")]
    NotReady {
        /// The exported directory.
        dir: PathBuf,
        /// The end of its log.
        log: String,
    },
}

impl FsError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NoDaemon | Self::Spawn { .. } => Some(
                "install it with `sudo scripts/setup` (cargo install virtiofsd into /usr/local/bin), \
                 or set A3S_VIRTIOFSD to its path"
                    .into(),
            ),
            Self::MissingDir(_) => {
                Some("create the directory, or remove the box and run it with another -v".into())
            }
            Self::NotReady { .. } => None,
        }
    }
}

/// Finds `virtiofsd`: `$A3S_VIRTIOFSD`, then the places `scripts/setup` and distributions use,
/// then `PATH`.
///
/// # Errors
/// [`FsError::NoDaemon`].
pub fn locate_virtiofsd() -> Result<PathBuf, FsError> {
    if let Some(p) = std::env::var_os(VIRTIOFSD_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(FsError::NoDaemon)
        };
    }
    let mut dirs: Vec<PathBuf> = vec!["/usr/local/bin".into()];
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".cargo/bin"));
    }
    dirs.extend(["/usr/libexec".into(), "/usr/lib/qemu".into()]);
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(VIRTIOFSD))
        .find(|p| p.is_file())
        .ok_or(FsError::NoDaemon)
}

/// QEMU arguments for `shares` (nothing when there are none): the shared memory backend and
/// one vhost-user-fs device per share. Pure.
pub fn qemu_args(shares: &[Share], machine: Machine, mem_mib: u32) -> Vec<OsString> {
    if shares.is_empty() {
        return Vec::new();
    }
    let mut a = vec![
        "-object".to_owned(),
        format!("memory-backend-memfd,id=mem,size={mem_mib}M,share=on"),
        "-machine".to_owned(),
        "memory-backend=mem".to_owned(),
    ];
    let device = match machine {
        Machine::Microvm => "vhost-user-fs-device",
        Machine::Q35 => "vhost-user-fs-pci",
    };
    for (i, s) in shares.iter().enumerate() {
        a.push("-chardev".into());
        a.push(format!("socket,id=fs{i},path={}", s.socket.display()));
        a.push("-device".into());
        a.push(format!("{device},chardev=fs{i},tag={}", s.tag));
    }
    a.into_iter().map(OsString::from).collect()
}

/// The file naming the pid of the daemon listening on `socket` (`<socket>.pid`).
pub fn pid_file(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".pid");
    PathBuf::from(name)
}

/// The daemon's arguments for one share. Pure.
pub fn daemon_args(share: &Share, as_root: bool) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        format!("--socket-path={}", share.socket.display()).into(),
        format!("--shared-dir={}", share.host_dir.display()).into(),
        (if share.keep_cache {
            "--cache=always"
        } else {
            "--cache=auto"
        })
        .into(),
        // Without root there is no namespace sandbox; the directory is then served as is.
        (if as_root {
            "--sandbox=namespace"
        } else {
            "--sandbox=none"
        })
        .into(),
        "--log-level=error".into(),
    ];
    if share.readonly {
        a.push("--readonly".into());
    }
    if as_root {
        // The guest is not trusted with the host's devices: without CAP_MKNOD the daemon
        // cannot make a device node (say, of the host's disk) in a shared host directory.
        // FIFOs and sockets need no capability and still work.
        a.push("--modcaps=-mknod".into());
    }
    a
}

/// The running daemons of one VM; dropping it kills and reaps them.
#[derive(Debug, Default)]
pub struct Daemons {
    children: Vec<Child>,
}

impl Daemons {
    /// Starts one daemon per share and waits until each listens.
    ///
    /// # Errors
    /// [`FsError`]; daemons already started are killed.
    pub fn spawn(shares: &[Share]) -> Result<Self, FsError> {
        let mut me = Self::default();
        if shares.is_empty() {
            return Ok(me);
        }
        let binary = locate_virtiofsd()?;
        let as_root = nix::unistd::geteuid().is_root();
        for s in shares {
            if !s.host_dir.is_dir() {
                return Err(FsError::MissingDir(s.host_dir.clone()));
            }
            let _ = std::fs::remove_file(&s.socket);
            let log = std::fs::File::create(&s.log).map_err(|source| FsError::Spawn {
                binary: binary.clone(),
                source,
            })?;
            let mut cmd = Command::new(&binary);
            cmd.args(daemon_args(s, as_root))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .process_group(0);
            die_with_parent(&mut cmd);
            let child = cmd.spawn().map_err(|source| FsError::Spawn {
                binary: binary.clone(),
                source,
            })?;
            me.children.push(child);
            let child = me.children.last_mut().expect("just pushed");
            wait_listening(child, s)?;
            // Who serves the share, for a host that mounts into its namespace later (a pod's
            // CRI mounts: runtime `pods::share`).
            let pid = child.id().to_string();
            std::fs::write(pid_file(&s.socket), pid).map_err(|source| FsError::Spawn {
                binary: binary.clone(),
                source,
            })?;
        }
        Ok(me)
    }

    /// Pids of the daemons.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in &mut self.children {
            // The whole group: with `--sandbox=namespace` the daemon forks its worker, which
            // takes a moment to exit once orphaned; wait (bounded) until the group is gone so
            // a stopped box has no daemon left when `stop` returns.
            let group = i32::try_from(c.id()).ok().map(nix::unistd::Pid::from_raw);
            if let Some(g) = group {
                let _ = nix::sys::signal::killpg(g, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = c.kill();
            let _ = c.wait();
            if let Some(g) = group {
                let deadline = Instant::now() + Duration::from_secs(5);
                while nix::sys::signal::killpg(g, None).is_ok() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

fn wait_listening(child: &mut Child, share: &Share) -> Result<(), FsError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if share.socket.exists() {
            return Ok(());
        }
        let exited = child.try_wait().ok().flatten().is_some();
        if exited || Instant::now() > deadline {
            return Err(FsError::NotReady {
                dir: share.host_dir.clone(),
                log: tail(&share.log),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The daemon gets SIGKILL when the thread that spawned it dies.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

fn tail(path: &Path) -> String {
    crate::qemu::log_tail(path, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(i: usize, readonly: bool) -> Share {
        Share {
            tag: format!("a3sv{i}"),
            host_dir: format!("/data/{i}").into(),
            socket: format!("/b/vfs{i}.sock").into(),
            readonly,
            keep_cache: false,
            log: format!("/b/vfs{i}.log").into(),
        }
    }

    fn strings(a: Vec<OsString>) -> Vec<String> {
        a.into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn no_shares_means_no_shared_memory() {
        assert!(qemu_args(&[], Machine::Microvm, 256).is_empty());
    }

    #[test]
    fn shares_get_memfd_memory_and_one_device_each() {
        let a = strings(qemu_args(
            &[share(0, false), share(1, true)],
            Machine::Microvm,
            512,
        ));
        assert_eq!(
            a,
            [
                "-object",
                "memory-backend-memfd,id=mem,size=512M,share=on",
                "-machine",
                "memory-backend=mem",
                "-chardev",
                "socket,id=fs0,path=/b/vfs0.sock",
                "-device",
                "vhost-user-fs-device,chardev=fs0,tag=a3sv0",
                "-chardev",
                "socket,id=fs1,path=/b/vfs1.sock",
                "-device",
                "vhost-user-fs-device,chardev=fs1,tag=a3sv1",
            ]
        );
        let q = strings(qemu_args(&[share(0, false)], Machine::Q35, 256));
        assert!(q.contains(&"vhost-user-fs-pci,chardev=fs0,tag=a3sv0".to_owned()));
    }

    #[test]
    fn read_only_shares_are_exported_read_only() {
        let a = strings(daemon_args(&share(0, true), true));
        assert!(a.contains(&"--readonly".to_owned()));
        assert!(a.contains(&"--shared-dir=/data/0".to_owned()));
        assert!(a.contains(&"--sandbox=namespace".to_owned()));
        assert!(a.contains(&"--cache=auto".to_owned()));
        let guest_only = Share {
            keep_cache: true,
            ..share(1, false)
        };
        assert!(strings(daemon_args(&guest_only, true)).contains(&"--cache=always".to_owned()));
        assert!(a.contains(&"--modcaps=-mknod".to_owned()));
        let b = strings(daemon_args(&share(1, false), false));
        assert!(!b.contains(&"--readonly".to_owned()));
        assert!(b.contains(&"--sandbox=none".to_owned()));
    }
}
