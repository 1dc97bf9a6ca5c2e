//! Docker's signal semantics end to end (issue 20): signals to a foreground `run` reach the
//! workload, a killed CLI leaves its box running (and `--rm` removes it when the workload
//! exits), Ctrl-C on a `-t` box is the terminal's ^C, resizes reach the guest pty, and
//! `attach` with the detach keys. The terminal cases run the real binary on a real pty.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::{Run, TestEnv};

fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        crate::support::build_guest_init();
        TestEnv::new()
    })
}

fn run(args: &[&str]) -> Run {
    env().run(args)
}

fn ok(args: &[&str]) -> Run {
    let r = run(args);
    assert_eq!(r.code, 0, "a3s-box {args:?}:\n{}\n{}", r.stdout, r.stderr);
    r
}

/// Polls `f` until it returns Some, for at most two minutes (TCG boots on a busy host).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(name: &str) -> Option<String> {
    let r = run(&["inspect", name]);
    (r.code == 0).then(|| r.json()[0]["state"]["status"].as_str().unwrap().to_owned())
}

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(i32::try_from(child.id()).unwrap()), sig).unwrap();
}

/// Everything a process wrote to a pipe or pty, collected by a thread.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Output {
    fn collect(mut from: impl Read + Send + 'static) -> Self {
        let out = Self::default();
        let sink = out.0.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        out
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Waits until `needle` appears after byte `from`.
    fn wait_for(&self, from: usize, needle: &str) {
        eventually(&format!("{needle:?} in the output"), || {
            let bytes = self.0.lock().unwrap();
            String::from_utf8_lossy(&bytes[from.min(bytes.len())..])
                .contains(needle)
                .then_some(())
        });
    }
}

/// `a3s-box ARGS` with a pty as its controlling terminal (stdin, stdout and stderr), like a
/// user's shell gives it.
struct OnPty {
    child: Child,
    master: std::fs::File,
    out: Output,
}

impl OnPty {
    fn spawn(args: &[&str], rows: u16, cols: u16) -> Self {
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).unwrap();
        nix::fcntl::fcntl(
            &pty.master,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .unwrap();
        let slave: OwnedFd = pty.slave;
        let mut cmd = env().cmd();
        cmd.args(args)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        controlling_terminal(&mut cmd);
        let child = cmd.spawn().unwrap();
        let master = std::fs::File::from(pty.master);
        let out = Output::collect(master.try_clone().unwrap());
        Self { child, master, out }
    }

    fn type_in(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Types `line` (again every few seconds: a shell may still be starting, a resize still
    /// on its way) until `needle` is printed after it.
    fn type_until(&mut self, line: &str, needle: &str) {
        let mark = self.out.len();
        let mut next = Instant::now();
        eventually(&format!("{needle:?} after typing {line:?}"), || {
            if Instant::now() >= next {
                self.master.write_all(line.as_bytes()).unwrap();
                next = Instant::now() + Duration::from_secs(3);
            }
            let text = self.out.0.lock().unwrap();
            String::from_utf8_lossy(&text[mark.min(text.len())..])
                .contains(needle)
                .then_some(())
        });
    }

    /// Resizes the terminal: the kernel sends SIGWINCH to the CLI, as when a user resizes
    /// the window.
    fn resize(&self, rows: u16, cols: u16) {
        let mut ws = rustix::termios::tcgetwinsize(self.master.as_fd()).unwrap();
        ws.ws_row = rows;
        ws.ws_col = cols;
        rustix::termios::tcsetwinsize(self.master.as_fd(), ws).unwrap();
    }

    fn exit_code(&mut self) -> i32 {
        let status = eventually("the CLI to exit", || self.child.try_wait().unwrap());
        status
            .code()
            .unwrap_or_else(|| panic!("{status}: {}", self.out.text()))
    }
}

impl Drop for OnPty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(unsafe_code)]
fn controlling_terminal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid(2) and ioctl(2) in the forked child before exec: async-signal-safe, no
    // allocation. The new session takes stdin (the pty) as its controlling terminal, so the
    // CLI is its foreground process group and gets its SIGWINCH.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The CLI starts with the default action for the signals these tests send, whatever this
/// test process inherited: a job that a non-interactive shell started in the background
/// ignores SIGINT and SIGQUIT (so did a CI run started that way), and an ignored signal
/// stays ignored across exec, so the CLI would never die of it.
#[allow(unsafe_code)]
fn default_signal_actions(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal(2) in the forked child before exec: async-signal-safe, no allocation.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [
                nix::libc::SIGINT,
                nix::libc::SIGQUIT,
                nix::libc::SIGHUP,
                nix::libc::SIGTERM,
            ] {
                if nix::libc::signal(sig, nix::libc::SIG_DFL) == nix::libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Traps that print what arrived; `exit 7` on TERM. `""` keeps each marker out of the
/// command line itself.
const TRAPPER: &str = "trap 'echo got\"\"-INT' INT; trap 'echo got\"\"-HUP' HUP; \
                       trap 'echo got\"\"-TERM; exit 7' TERM; echo rea\"\"dy; \
                       while true; do sleep 0.2; done";

#[test]
fn signals_to_a_foreground_run_reach_the_workload_and_a_killed_cli_leaves_the_box_running() {
    let mut cmd = env().cmd();
    default_signal_actions(&mut cmd);
    let mut cli = cmd
        .args([
            "run", "--rm", "--name", "proxied", "busybox", "sh", "-c", TRAPPER,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Output::collect(cli.stdout.take().unwrap());
    let _err = Output::collect(cli.stderr.take().unwrap());
    out.wait_for(0, "ready");

    // --sig-proxy is on by default: the CLI forwards and keeps running.
    signal(&cli, Signal::SIGINT);
    out.wait_for(0, "got-INT");
    signal(&cli, Signal::SIGHUP);
    out.wait_for(0, "got-HUP");
    assert!(cli.try_wait().unwrap().is_none(), "{}", out.text());

    // -9: no chance to clean up, and none needed: the box runs on.
    let monitor = ok(&["inspect", "proxied"]).json()[0]["state"]["monitor_pid"]
        .as_u64()
        .unwrap();
    cli.kill().unwrap();
    cli.wait().unwrap();
    assert_eq!(status("proxied").as_deref(), Some("running"));
    assert!(std::path::Path::new(&format!("/proc/{monitor}")).exists());
    let logs = ok(&["logs", "proxied"]);
    assert!(logs.stdout.contains("got-HUP"), "{}", logs.stdout);

    // The workload exits later: its monitor removes the --rm box.
    ok(&["kill", "-s", "TERM", "proxied"]);
    eventually("the --rm box to be removed", || {
        status("proxied").is_none().then_some(())
    });
    let r = run(&["inspect", "proxied"]);
    assert!(r.stderr.contains("no such box"), "{}", r.stderr);
}

#[test]
fn without_sig_proxy_a_signal_ends_the_cli_only() {
    let mut cmd = env().cmd();
    default_signal_actions(&mut cmd);
    let mut cli = cmd
        .args([
            "run",
            "--sig-proxy=false",
            "--name",
            "unproxied",
            "busybox",
            "sh",
            "-c",
            TRAPPER,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = Output::collect(cli.stdout.take().unwrap());
    out.wait_for(0, "ready");
    signal(&cli, Signal::SIGINT);
    let status_of_cli = eventually("the CLI to die of SIGINT", || cli.try_wait().unwrap());
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status_of_cli.signal(), Some(Signal::SIGINT as i32));
    assert_eq!(status("unproxied").as_deref(), Some("running"));

    // The CLI's SIGINT never reached the workload: only this one does.
    ok(&["kill", "-s", "INT", "unproxied"]);
    let seen = eventually("the workload's trap", || {
        let logs = ok(&["logs", "unproxied"]).stdout;
        logs.contains("got-INT").then_some(logs)
    });
    assert_eq!(seen.matches("got-INT").count(), 1, "{seen}");
    ok(&["rm", "-f", "unproxied"]);
}

#[test]
fn a_tty_box_takes_ctrl_c_and_resizes_detaches_and_is_attached_again() {
    let mut cli = OnPty::spawn(&["run", "-it", "--name", "tty", "busybox", "sh"], 24, 80);
    cli.type_until("stty size\r", "24 80");

    // SIGWINCH on the CLI becomes the guest pty's new size.
    cli.resize(30, 100);
    cli.type_until("stty size\r", "30 100");

    // Raw mode: Ctrl-C is the byte ^C, which the guest's line discipline turns into SIGINT
    // for the foreground job.
    let mark = cli.out.len();
    cli.type_in(
        b"sh -c 'trap \"echo caught\"\"-int; exit 3\" INT; echo trap\"\"ping; while true; do sleep 1; done'\r",
    );
    cli.out.wait_for(mark, "trapping");
    cli.type_in(b"\x03");
    cli.out.wait_for(mark, "caught-int");
    cli.type_until("echo status-$?\r", "status-3");

    // ctrl-p ctrl-q: the CLI returns 0 and the box runs on.
    cli.type_in(b"\x10\x11");
    assert_eq!(cli.exit_code(), 0, "{}", cli.out.text());
    assert_eq!(status("tty").as_deref(), Some("running"));

    // attach: the same shell, at the attaching terminal's size, resized with it.
    let mut att = OnPty::spawn(&["attach", "tty"], 40, 120);
    att.type_until("stty size\r", "40 120");
    att.type_until("echo attach\"\"ed-ok\r", "attached-ok");
    att.resize(50, 132);
    att.type_until("stty size\r", "50 132");

    // Custom detach keys, then a second attach that ends with the workload's exit code.
    drop(att);
    assert_eq!(status("tty").as_deref(), Some("running"));
    let mut att = OnPty::spawn(&["attach", "--detach-keys", "ctrl-x,x", "tty"], 24, 80);
    att.type_until("echo again\"\"-ok\r", "again-ok");
    att.type_in(b"\x18x");
    assert_eq!(att.exit_code(), 0, "{}", att.out.text());
    let mut att = OnPty::spawn(&["attach", "tty"], 24, 80);
    att.type_until("echo third\"\"-ok\r", "third-ok");
    att.type_in(b"exit 5\r");
    assert_eq!(att.exit_code(), 5, "{}", att.out.text());
    assert_eq!(status("tty").as_deref(), Some("exited"));
    ok(&["rm", "tty"]);
}

#[test]
fn attach_refuses_a_box_that_is_not_running_and_bad_detach_keys() {
    ok(&["create", "--name", "idle", "busybox", "true"]);
    let r = run(&["attach", "idle"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("not running"), "{}", r.stderr);
    let r = run(&["attach", "--detach-keys", "ctrl-1", "idle"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("ctrl-p,ctrl-q"), "{}", r.stderr);
    let r = run(&["attach", "no-such-box"]);
    assert!(r.stderr.contains("no such box"), "{}", r.stderr);
    ok(&["rm", "idle"]);
}
