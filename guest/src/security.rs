//! Docker's security and resource options inside the VM.
//!
//! Two parts: [`setup_machine`] runs once before the workload (tmpfs mounts, `/dev/shm` size,
//! sysctls, the workload's cgroup ([`crate::workload_cgroup`]), and last the read-only root),
//! and [`Credentials::apply`] is the one pre-exec path every workload and exec process goes
//! through, in this order: cgroup join → rlimits → setgroups → setgid → capability drops
//! (bounding, ambient, inheritable) → setuid → final permitted/effective sets → no_new_privs.
//! rlimits come before the capability drops (raising a hard limit needs CAP_SYS_RESOURCE),
//! setuid after them (dropping the bounding set needs CAP_SETPCAP, which a non-root user no
//! longer has).
//!
//! `--init`: the workload is never PID 1 here. guest-init is PID 1 of the VM: it reaps every
//! orphan (control::reap_loop) and delivers `kill`/`stop` signals to the workload, which, not
//! being PID 1, dies of an unhandled SIGTERM. That is what Docker's `--init` (tini) gives, so
//! the flag changes nothing inside the VM and is only recorded.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context};
use nix::mount::{mount, MsFlags};

use a3s_vmm::proto::{Rlimit, Security, TmpfsMount};

use crate::process::User;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_VERSION_3: u32 = 0x2008_0522;
/// Highest capability number tried when dropping the bounding set (the kernel answers EINVAL
/// above its own last one).
const CAP_MAX: u32 = 63;

/// Sets the machine up for the workload. Runs after volumes are mounted and before the first
/// process starts.
///
/// # Errors
/// The first option that could not be applied (the box must not start without it).
pub(crate) fn setup_machine(sec: &Security) -> anyhow::Result<()> {
    for t in &sec.tmpfs {
        mount_tmpfs(t)?;
    }
    if let Some(bytes) = sec.shm_size_bytes {
        // mount -o remount,size=N /dev/shm
        mount(
            None::<&str>,
            "/dev/shm",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(format!("mode=1777,size={bytes}").as_str()),
        )
        .context("setting the size of /dev/shm (--shm-size)")?;
    }
    for (key, value) in &sec.sysctls {
        write_sysctl(key, value)?;
    }
    crate::workload_cgroup::create(sec)?;
    if sec.read_only_root {
        // mount -o remount,bind,ro /  (per-mount flag: the writable layer stays as it is)
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .context("making the root filesystem read-only (--read-only)")?;
    }
    Ok(())
}

/// `mkdir -p PATH && mount -t tmpfs -o OPTIONS tmpfs PATH`.
fn mount_tmpfs(t: &TmpfsMount) -> anyhow::Result<()> {
    let (flags, data) = tmpfs_options(&t.options)?;
    if !t.path.starts_with('/') || t.path.split('/').any(|c| c == "..") {
        bail!("tmpfs path {:?} is not a clean absolute path", t.path);
    }
    fs::create_dir_all(&t.path)
        .with_context(|| format!("creating tmpfs mount point {}", t.path))?;
    mount(
        Some("tmpfs"),
        t.path.as_str(),
        Some("tmpfs"),
        flags,
        Some(data.as_str()),
    )
    .with_context(|| format!("mounting a tmpfs on {} (--tmpfs)", t.path))
}

/// mount(8) option words as flags and filesystem data; later words override earlier ones.
fn tmpfs_options(options: &[String]) -> anyhow::Result<(MsFlags, String)> {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            kv => match kv.split_once('=') {
                Some(("size" | "mode" | "uid" | "gid" | "nr_inodes" | "nr_blocks", v))
                    if !v.is_empty()
                        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'%') =>
                {
                    data.push(kv.to_owned());
                    continue;
                }
                _ => bail!("unsupported tmpfs option {kv:?}"),
            },
        };
        flags = (flags | set) & !clear;
    }
    Ok((flags, data.join(",")))
}

/// `echo VALUE > /proc/sys/KEY` with dots as slashes; the key is checked again here.
fn write_sysctl(key: &str, value: &str) -> anyhow::Result<()> {
    let clean = key.split('.').all(|c| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if !clean {
        bail!("refusing sysctl key {key:?}");
    }
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    fs::write(&path, value).with_context(|| format!("setting sysctl {key}={value} (--sysctl)"))
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// Docker's `--ulimit` name as the kernel's resource number.
fn resource(name: &str) -> Option<Resource> {
    Some(match name {
        "core" => libc::RLIMIT_CORE,
        "cpu" => libc::RLIMIT_CPU,
        "data" => libc::RLIMIT_DATA,
        "fsize" => libc::RLIMIT_FSIZE,
        "locks" => libc::RLIMIT_LOCKS,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "msgqueue" => libc::RLIMIT_MSGQUEUE,
        "nice" => libc::RLIMIT_NICE,
        "nofile" => libc::RLIMIT_NOFILE,
        "nproc" => libc::RLIMIT_NPROC,
        "rss" => libc::RLIMIT_RSS,
        "rtprio" => libc::RLIMIT_RTPRIO,
        "rttime" => libc::RLIMIT_RTTIME,
        "sigpending" => libc::RLIMIT_SIGPENDING,
        "stack" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

fn rlim(v: u64) -> libc::rlim_t {
    if v == Rlimit::UNLIMITED {
        libc::RLIM_INFINITY
    } else {
        v
    }
}

/// Everything the child applies between fork and exec, resolved beforehand: the child of a
/// multi-threaded PID 1 must not allocate (another thread may hold the allocator's lock), so
/// nothing in [`Credentials::apply`] does. This is also why the `caps` crate only names and
/// numbers capabilities here: its set functions build hash sets and error strings.
#[derive(Debug)]
pub(crate) struct Credentials {
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    rlimits: Vec<(Resource, libc::rlimit)>,
    /// Capabilities kept, as a bit mask; `None`: all.
    caps: Option<u64>,
    no_new_privs: bool,
    /// The workload cgroup's `cgroup.procs`, opened close-on-exec.
    cgroup_procs: Option<OwnedFd>,
}

impl Credentials {
    /// Resolves `sec` for `user` (supplementary groups from `group_file`, as Docker does).
    ///
    /// # Errors
    /// An unknown group, capability or limit name, or an unopenable cgroup (fails closed).
    pub(crate) fn prepare(
        sec: Option<&Security>,
        user: &User,
        group_file: &str,
    ) -> Result<Self, String> {
        let mut groups = member_groups(user.name.as_deref(), group_file);
        let empty = Security::default();
        let sec = sec.unwrap_or(&empty);
        for g in &sec.group_add {
            let gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => group_id(g, group_file).ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
            };
            if !groups.contains(&gid) {
                groups.push(gid);
            }
        }
        let mut rlimits = Vec::new();
        for r in &sec.rlimits {
            let res = resource(&r.name).ok_or_else(|| format!("unknown ulimit {:?}", r.name))?;
            rlimits.push((
                res,
                libc::rlimit {
                    rlim_cur: rlim(r.soft),
                    rlim_max: rlim(r.hard),
                },
            ));
        }
        let caps = match &sec.capabilities {
            None => None,
            Some(names) => {
                let mut mask = 0u64;
                for n in names {
                    let cap = caps::Capability::from_str(n)
                        .map_err(|_| format!("unknown capability {n:?}"))?;
                    mask |= cap.bitmask();
                }
                Some(mask)
            }
        };
        let cgroup_procs = crate::workload_cgroup::open_procs(sec)?;
        Ok(Self {
            uid: user.uid,
            gid: user.gid,
            groups,
            rlimits,
            caps,
            no_new_privs: sec.no_new_privileges,
            cgroup_procs,
        })
    }

    /// Adds the primary group to the supplementary ones (first), as containerd does for a
    /// container's process.
    pub(crate) fn include_primary_group(&mut self) {
        if !self.groups.contains(&self.gid) {
            self.groups.insert(0, self.gid);
        }
    }

    /// The identity the process gets.
    pub(crate) fn identity(&self) -> a3s_vmm::proto::ProcessUser {
        a3s_vmm::proto::ProcessUser {
            uid: self.uid,
            gid: self.gid,
            groups: self.groups.clone(),
        }
    }

    /// Applies everything, in the order of the module doc. Runs in the forked child.
    ///
    /// # Errors
    /// The failing system call's error (the spawn fails with it).
    #[allow(unsafe_code)]
    pub(crate) fn apply(&self) -> io::Result<()> {
        let check = |rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // 1. Join the cgroup: "0" moves the writing process itself.
        if let Some(fd) = &self.cgroup_procs {
            // SAFETY: writes one byte from a static buffer to an open fd.
            let n = unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) };
            if n != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        // 2. Resource limits.
        for (res, lim) in &self.rlimits {
            // SAFETY: `lim` is a valid rlimit for the duration of the call.
            check(unsafe { libc::setrlimit(*res, lim) })?;
        }
        // 3, 4. Supplementary groups, then the primary group.
        // SAFETY: the pointer and length describe `self.groups`.
        check(unsafe { libc::setgroups(self.groups.len(), self.groups.as_ptr()) })?;
        // SAFETY: plain system call.
        check(unsafe { libc::setgid(self.gid) })?;
        // 5. Capabilities: bounding set, ambient set, inheritable set.
        if let Some(mask) = self.caps {
            for cap in 0..=CAP_MAX {
                if mask & (1 << cap) == 0 {
                    // SAFETY: prctl with integer arguments.
                    let rc = unsafe {
                        libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0)
                    };
                    if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            // SAFETY: prctl with integer arguments.
            check(unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL,
                    0,
                    0,
                    0,
                )
            })?;
            // Keep the permitted set across setuid; keep CAP_SETUID until setuid is done.
            // SAFETY: prctl with integer arguments.
            check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) })?;
            let setuid_bit = caps::Capability::CAP_SETUID.bitmask();
            capset(mask | setuid_bit)?;
        }
        // 6. The user.
        // SAFETY: plain system call.
        check(unsafe { libc::setuid(self.uid) })?;
        if let Some(mask) = self.caps {
            // 7. What the process keeps (exec gives a non-root user none without ambient
            // capabilities, as in Docker).
            capset(mask)?;
            // SAFETY: prctl with integer arguments.
            check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) })?;
        }
        // 8. no_new_privs last: nothing after it needs privileges.
        if self.no_new_privs {
            // SAFETY: prctl with integer arguments.
            check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        }
        Ok(())
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// capset(2): permitted and effective = `mask`, inheritable empty (Docker sets none).
#[allow(unsafe_code, clippy::cast_possible_truncation)]
fn capset(mask: u64) -> io::Result<()> {
    let header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let word = |w: u64| CapData {
        effective: w as u32,
        permitted: w as u32,
        inheritable: 0,
    };
    let data = [word(mask), word(mask >> 32)];
    // SAFETY: header and two data words as capset(2) takes for version 3; both outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Groups whose member list in `/etc/group` names `user` (Docker's supplementary groups).
fn member_groups(user: Option<&str>, group_file: &str) -> Vec<libc::gid_t> {
    let Some(user) = user else {
        return Vec::new();
    };
    group_file
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m.trim() == user))
        .filter_map(|f| f[2].parse().ok())
        .collect()
}

fn group_id(name: &str, group_file: &str) -> Option<u32> {
    group_file
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[0] == name)
        .and_then(|f| f[2].parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "root:x:0:\naudio:x:29:www,bob\nstaff:x:50:bob\nwww:x:33:\n";

    fn user(name: Option<&str>, uid: u32) -> User {
        User {
            uid,
            gid: uid,
            home: "/".into(),
            name: name.map(str::to_owned),
        }
    }

    #[test]
    fn groups_come_from_membership_and_group_add() {
        let sec = Security {
            group_add: vec!["staff".into(), "4242".into(), "audio".into()],
            ..Default::default()
        };
        let c = Credentials::prepare(Some(&sec), &user(Some("www"), 33), GROUP).unwrap();
        assert_eq!(c.groups, vec![29, 50, 4242]);
        let bad = Security {
            group_add: vec!["ghosts".into()],
            ..Default::default()
        };
        let e = Credentials::prepare(Some(&bad), &user(None, 0), GROUP).unwrap_err();
        assert!(e.contains("unable to find group ghosts"), "{e}");
        let none = Credentials::prepare(None, &user(Some("root"), 0), GROUP).unwrap();
        assert!(none.groups.is_empty() && none.caps.is_none() && !none.no_new_privs);
    }

    #[test]
    fn a_containers_primary_group_is_among_its_groups_once() {
        let sec = Security {
            group_add: vec!["1234".into()],
            ..Default::default()
        };
        let mut c = Credentials::prepare(Some(&sec), &user(Some("www"), 33), GROUP).unwrap();
        c.include_primary_group();
        assert_eq!(c.groups, vec![33, 29, 1234]);
        c.include_primary_group();
        assert_eq!(c.identity().groups, vec![33, 29, 1234]);
        assert_eq!((c.identity().uid, c.identity().gid), (33, 33));
    }

    #[test]
    fn capability_names_become_a_mask_and_unknown_ones_fail_closed() {
        let sec = Security {
            capabilities: Some(vec!["CAP_CHOWN".into(), "CAP_KILL".into()]),
            ..Default::default()
        };
        let c = Credentials::prepare(Some(&sec), &user(None, 0), "").unwrap();
        assert_eq!(c.caps, Some((1 << 0) | (1 << 5)));
        let bad = Security {
            capabilities: Some(vec!["CAP_FLY".into()]),
            ..Default::default()
        };
        assert!(Credentials::prepare(Some(&bad), &user(None, 0), "").is_err());
        let empty = Security {
            capabilities: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(
            Credentials::prepare(Some(&empty), &user(None, 0), "")
                .unwrap()
                .caps,
            Some(0)
        );
    }

    #[test]
    fn rlimits_map_to_kernel_resources() {
        let sec = Security {
            rlimits: vec![
                Rlimit {
                    name: "nofile".into(),
                    soft: 100,
                    hard: 200,
                },
                Rlimit {
                    name: "core".into(),
                    soft: Rlimit::UNLIMITED,
                    hard: Rlimit::UNLIMITED,
                },
            ],
            ..Default::default()
        };
        let c = Credentials::prepare(Some(&sec), &user(None, 0), "").unwrap();
        assert_eq!(c.rlimits[0].0, libc::RLIMIT_NOFILE);
        assert_eq!(
            (c.rlimits[0].1.rlim_cur, c.rlimits[0].1.rlim_max),
            (100, 200)
        );
        assert_eq!(c.rlimits[1].1.rlim_cur, libc::RLIM_INFINITY);
        let bad = Security {
            rlimits: vec![Rlimit {
                name: "wings".into(),
                soft: 1,
                hard: 1,
            }],
            ..Default::default()
        };
        assert!(Credentials::prepare(Some(&bad), &user(None, 0), "").is_err());
    }

    #[test]
    fn tmpfs_words_become_flags_and_data() {
        let opts: Vec<String> = ["noexec", "nosuid", "nodev", "exec", "size=1m", "mode=1777"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let (flags, data) = tmpfs_options(&opts).unwrap();
        assert!(
            !flags.contains(MsFlags::MS_NOEXEC),
            "exec overrides the default"
        );
        assert!(flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_NODEV));
        assert_eq!(data, "size=1m,mode=1777");
        assert!(tmpfs_options(&["size=1m,uid=0".to_owned()]).is_err());
        assert!(tmpfs_options(&["bind".to_owned()]).is_err());
    }
}
