//! Starting a workload or exec process: user, environment, working directory, stdio or a PTY.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use a3s_vmm::proto::{ProcessSpec, Security};

use crate::security::Credentials;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A started process and its I/O ends.
pub(crate) struct Spawned {
    pub(crate) pid: i32,
    /// Where host stdin goes (pipe or PTY master).
    pub(crate) stdin: Option<File>,
    /// Streams to forward: (is_stderr, reader).
    pub(crate) outputs: Vec<(bool, File)>,
    /// The PTY master, for resizing.
    pub(crate) pty: Option<OwnedFd>,
    /// The identity it runs with.
    pub(crate) user: a3s_vmm::proto::ProcessUser,
}

/// Why a process could not start, with Docker's exit code.
#[derive(Debug)]
pub(crate) struct SpawnFailure {
    pub(crate) code: i32,
    pub(crate) message: String,
}

/// A user resolved against `/etc/passwd` and `/etc/group`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: String,
    /// The passwd name (for supplementary groups), when there is an entry.
    pub(crate) name: Option<String>,
}

/// Resolves `name`, `uid`, `name:group` or `uid:gid` using passwd and group file contents.
pub(crate) fn resolve_user(spec: Option<&str>, passwd: &str, group: &str) -> Result<User, String> {
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("root");
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let by_name = entries.iter().find(|f| f[0] == user_part);
    let (uid, mut gid, home, name) = match (by_name, user_part.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse()
                .map_err(|_| format!("bad uid for {user_part} in /etc/passwd"))?,
            f[3].parse()
                .map_err(|_| format!("bad gid for {user_part} in /etc/passwd"))?,
            f[5].to_owned(),
            Some(f[0].to_owned()),
        ),
        (None, Ok(uid)) => {
            let f = entries.iter().find(|f| f[2].parse::<u32>() == Ok(uid));
            (
                uid,
                f.and_then(|f| f[3].parse().ok()).unwrap_or(uid),
                f.map_or_else(|| "/".to_owned(), |f| f[5].to_owned()),
                f.map(|f| f[0].to_owned()),
            )
        }
        (None, Err(_)) => {
            return Err(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            ))
        }
    };
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        };
    }
    Ok(User {
        uid,
        gid,
        home,
        name,
    })
}

/// The environment a process sees: defaults first, then the spec's entries override them.
pub(crate) fn environment(
    spec: &ProcessSpec,
    user: &User,
    hostname: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOSTNAME".into(), hostname.into()),
        ("HOME".into(), user.home.clone()),
    ];
    if spec.tty {
        env.push(("TERM".into(), "xterm".into()));
    }
    for entry in &spec.env {
        let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_owned(), v.to_owned()));
    }
    env
}

/// Starts `spec` with the box's security options (`None`: a box from before them); with
/// `container`, as a pod container's process (see [`crate::container`]) joining the cgroup whose
/// `cgroup.procs` is `cgroup_procs`, with the container's own security context instead.
pub(crate) fn spawn(
    spec: &ProcessSpec,
    hostname: &str,
    security: Option<&Security>,
    container: Option<crate::container::Root<'_>>,
) -> Result<Spawned, SpawnFailure> {
    let mut container = container;
    let pid_ns = container.as_mut().and_then(|c| c.pid_ns.take());
    let root = container.as_ref().map(|c| c.dir);
    let fail = |code, message: String| SpawnFailure { code, message };
    let Some(program) = spec.argv.first() else {
        return Err(fail(
            127,
            "no command given (the image has no entrypoint or cmd)".into(),
        ));
    };
    // A container's user is resolved against its own image's files.
    let etc = |f: &str| match root {
        Some(r) => std::path::Path::new(r).join("etc").join(f),
        None => std::path::Path::new("/etc").join(f),
    };
    let passwd = std::fs::read_to_string(etc("passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(etc("group")).unwrap_or_default();
    let user = resolve_user(spec.user.as_deref(), &passwd, &group).map_err(|m| fail(126, m))?;
    // A pod container's context goes through the same credentials as a box's options.
    let container_sec = container.as_ref().and_then(|c| c.security);
    let own = container_sec.map(a3s_vmm::proto::ContainerSecurity::credentials);
    let security = if container.is_some() {
        own.as_ref()
    } else {
        security
    };
    let mut credentials =
        Credentials::prepare(security, &user, membership_file(container_sec, &group))
            .map_err(|m| fail(126, m))?;
    if container.is_some() {
        // containerd puts the primary group among the supplementary ones (`id -G` lists it).
        credentials.include_primary_group();
    }
    let workdir = spec
        .workdir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());

    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(environment(spec, &user, hostname));
    let mut late_seccomp = None;
    if let Some(container) = container {
        let mut entry = crate::container::prepare(container, &workdir).map_err(|m| fail(126, m))?;
        late_seccomp = entry.take_late_seccomp(container_sec.is_some_and(|s| s.no_new_privileges));
        // SAFETY: `enter` only makes system calls on strings prepared above (no allocation
        // between fork and exec). It runs before the credentials' pre-exec (registered
        // below), which then drops to the container's user as for a box.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || entry.enter());
        }
    } else {
        std::fs::create_dir_all(&workdir)
            .map_err(|e| fail(126, format!("working directory {workdir}: {e}")))?;
        cmd.current_dir(&workdir);
    }
    let mut spawned = Spawned {
        pid: 0,
        stdin: None,
        outputs: Vec::new(),
        pty: None,
        user: credentials.identity(),
    };
    if spec.tty {
        let size = spec.tty_size.map(|(rows, cols)| nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = nix::pty::openpty(size.as_ref(), None)
            .map_err(|e| fail(126, format!("allocating a pty: {e}")))?;
        let slave = pty.slave;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| fail(126, format!("pty: {e}")));
        cmd.stdin(Stdio::from(dup(&slave)?))
            .stdout(Stdio::from(dup(&slave)?))
            .stderr(Stdio::from(slave));
        controlling_terminal(&mut cmd);
        let master = pty.master;
        spawned.stdin = Some(File::from(dup(&master)?));
        spawned.outputs.push((false, File::from(dup(&master)?)));
        spawned.pty = Some(master);
    } else {
        cmd.stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    }
    // After the terminal set-up, which needs the privileges this drops.
    apply_credentials(&mut cmd, credentials);
    if let Some(filters) = late_seccomp {
        // SAFETY: `install` only makes system calls on programs compiled before the fork.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || filters.install());
        }
    }
    let mut child =
        crate::pid_ns::spawn(&mut cmd, pid_ns.as_ref()).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => fail(
                127,
                format!("{program}: executable file not found in $PATH"),
            ),
            io::ErrorKind::PermissionDenied => fail(126, format!("{program}: permission denied")),
            _ => fail(126, format!("{program}: {e}")),
        })?;
    spawned.pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    if let Some(s) = child.stdin.take() {
        spawned.stdin = Some(File::from(OwnedFd::from(s)));
    }
    if let Some(s) = child.stdout.take() {
        spawned.outputs.push((false, File::from(OwnedFd::from(s))));
    }
    if let Some(s) = child.stderr.take() {
        spawned.outputs.push((true, File::from(OwnedFd::from(s))));
    }
    // The child is reaped by PID 1's waitpid(-1) loop, not through this handle.
    drop(child);
    Ok(spawned)
}

/// The group file the user's supplementary groups are read from: none under CRI's Strict
/// policy (only the primary group and the context's groups), else the image's.
fn membership_file<'a>(
    container: Option<&a3s_vmm::proto::ContainerSecurity>,
    group: &'a str,
) -> &'a str {
    if container.is_some_and(|s| s.strict_groups) {
        ""
    } else {
        group
    }
}

/// Makes the child a session leader with the PTY (its stdin) as controlling terminal.
#[allow(unsafe_code)]
fn controlling_terminal(cmd: &mut Command) {
    // SAFETY: runs in the forked child before exec; setsid(2) and ioctl(2) are
    // async-signal-safe and nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The one pre-exec path of user, groups, limits and capabilities ([`Credentials::apply`]).
#[allow(unsafe_code)]
fn apply_credentials(cmd: &mut Command, credentials: Credentials) {
    // SAFETY: runs in the forked child before exec; `apply` makes only system calls on
    // values prepared before the fork and allocates nothing.
    unsafe {
        cmd.pre_exec(move || credentials.apply());
    }
}

/// Sets a PTY's window size.
#[allow(unsafe_code)]
pub(crate) fn resize(pty: &OwnedFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the valid pointer; the fd is owned and open.
    let rc = unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads `r` to the end in chunks, calling `f` for each; a PTY master's EIO is its EOF.
pub(crate) fn pump(mut r: File, mut f: impl FnMut(Vec<u8>) -> bool) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if !f(buf[..n].to_vec()) {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nwww:x:33:33:www:/var/www:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\nwww:x:33:\n";

    #[test]
    fn resolves_names_ids_and_groups() {
        assert_eq!(
            resolve_user(None, PASSWD, GROUP).unwrap(),
            User {
                uid: 0,
                gid: 0,
                home: "/root".into(),
                name: Some("root".into()),
            }
        );
        assert_eq!(resolve_user(Some("www"), PASSWD, GROUP).unwrap().uid, 33);
        let u = resolve_user(Some("nobody:staff"), PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (65534, 50));
        let u = resolve_user(Some("1000:1000"), PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/"));
        assert!(resolve_user(Some("ghost"), PASSWD, GROUP)
            .unwrap_err()
            .contains("ghost"));
        assert!(resolve_user(Some("root:nogroup"), PASSWD, GROUP).is_err());
    }

    #[test]
    fn strict_groups_leave_out_the_images_memberships() {
        let group = "root:x:0:\nlocal:x:50000:alice\n";
        let mut sec = a3s_vmm::proto::ContainerSecurity::default();
        assert_eq!(membership_file(Some(&sec), group), group);
        assert_eq!(membership_file(None, group), group);
        sec.strict_groups = true;
        assert_eq!(membership_file(Some(&sec), group), "");
    }

    #[test]
    fn spec_environment_overrides_defaults() {
        let spec = ProcessSpec {
            env: vec!["PATH=/x".into(), "A=b=c".into(), "EMPTY".into()],
            tty: true,
            ..Default::default()
        };
        let user = User {
            uid: 0,
            gid: 0,
            home: "/root".into(),
            name: None,
        };
        let env = environment(&spec, &user, "h");
        let get = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some("/x"));
        assert_eq!(get("A"), Some("b=c"));
        assert_eq!(get("EMPTY"), Some(""));
        assert_eq!(get("TERM"), Some("xterm"));
        assert_eq!(get("HOME"), Some("/root"));
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
    }
}
