//! PID namespaces of pod containers (CRI `NamespaceOption.pid`).
//!
//! A process is born into its parent thread's "PID namespace for children", which
//! `unshare(CLONE_NEWPID)` and `setns(.., CLONE_NEWPID)` change for the calling thread only.
//! So a container's process is spawned from a short-lived thread that first moved that
//! setting: into a new namespace (the process is its PID 1) or into an existing one (a
//! container's, for its exec sessions; the pod's, whose PID 1 is a pause process). The rest of
//! guest-init, and every other spawn, keeps the VM's namespace.
//!
//! The pod's pause process is guest-init itself, re-executed as `/pause __pause`: it only
//! reaps the orphans of the namespace, as Kubernetes' pause does under
//! `shareProcessNamespace`.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};

use nix::sched::CloneFlags;

/// The helper argument that runs guest-init as a pod's pause process.
pub(crate) const PAUSE_HELPER: &str = "__pause";

/// Where a process is born.
#[derive(Debug)]
pub(crate) enum PidNs {
    /// A namespace of its own: it is PID 1 there.
    New,
    /// An existing namespace (`/proc/PID/ns/pid` of one of its processes).
    Join(File),
}

impl PidNs {
    /// The namespace process `pid` (as the VM sees it) lives in.
    pub(crate) fn of(pid: i32) -> io::Result<Self> {
        File::open(format!("/proc/{pid}/ns/pid")).map(Self::Join)
    }
}

/// Spawns `cmd` born into `ns` (`None`: the caller's own namespace).
pub(crate) fn spawn(cmd: &mut Command, ns: Option<&PidNs>) -> io::Result<Child> {
    let Some(ns) = ns else {
        return cmd.spawn();
    };
    // A fresh thread each time: its namespace for children is moved, and the thread then
    // ends (a namespace whose PID 1 is gone takes no second child).
    std::thread::scope(|s| {
        s.spawn(|| {
            match ns {
                PidNs::New => nix::sched::unshare(CloneFlags::CLONE_NEWPID),
                PidNs::Join(f) => nix::sched::setns(f.as_fd(), CloneFlags::CLONE_NEWPID),
            }
            .map_err(|e| io::Error::other(format!("entering the PID namespace: {e}")))?;
            cmd.spawn()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the spawning thread panicked")))
    })
}

/// Starts the pod's pause process in a new PID namespace; returns its pid in the VM's.
pub(crate) fn start_pause() -> io::Result<i32> {
    let mut cmd = Command::new("/proc/self/exe");
    std::os::unix::process::CommandExt::arg0(&mut cmd, "/pause");
    cmd.arg(PAUSE_HELPER)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = spawn(&mut cmd, Some(&PidNs::New))?;
    Ok(i32::try_from(child.id()).unwrap_or(i32::MAX))
}

/// Runs as the pause process if `args` (argv without argv[0]) asks for it; never returns then.
pub(crate) fn helper(args: &[String]) {
    if !matches!(args, [a] if a == PAUSE_HELPER) {
        return;
    }
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    // As PID 1 of its namespace it gets only the signals it handles; SIGCHLD is waited for
    // (blocked, then taken with sigwait), so each wake-up reaps what has exited.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let _ = chld.thread_block();
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if chld.wait().is_err() {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pause_argument_is_the_helper() {
        // Not the helper: returns at once.
        helper(&[]);
        helper(&["__pause".into(), "x".into()]);
        helper(&["__cp-out".into()]);
    }

    #[test]
    fn a_process_outside_any_new_namespace_is_spawned_as_usual() {
        let out = spawn(Command::new("true").stdout(Stdio::null()), None)
            .and_then(|mut c| c.wait())
            .unwrap();
        assert!(out.success());
    }

    #[test]
    fn a_new_namespace_makes_the_process_its_pid_1_and_joining_shares_it() {
        // Needs CAP_SYS_ADMIN, as guest-init has (the suite runs as root).
        let mut sleeper = Command::new("sleep");
        sleeper.arg("30");
        let mut first = spawn(&mut sleeper, Some(&PidNs::New)).unwrap();
        let pid = i32::try_from(first.id()).unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo $$; cat /proc/self/status | grep NSpid"])
            .stdout(Stdio::piped());
        let ns = PidNs::of(pid).unwrap();
        let out = spawn(&mut cmd, Some(&ns))
            .unwrap()
            .wait_with_output()
            .unwrap();
        let _ = first.kill();
        let _ = first.wait();
        let text = String::from_utf8_lossy(&out.stdout);
        // Its own pid as the host sees it, then its pid in the sleeper's namespace, where
        // the sleeper is 1.
        let nspid: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect();
        assert_eq!(nspid.len(), 2, "{text}");
        assert_ne!(nspid[1], "1", "{text}");
        let mut own = Command::new("sh");
        own.args(["-c", "echo $$"]).stdout(Stdio::piped());
        let out = spawn(&mut own, Some(&PidNs::New))
            .unwrap()
            .wait_with_output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    }
}
