//! Box lifecycle end to end: real VMs under TCG (issue 6). Boots are few (each costs seconds):
//! one shared detached box serves most assertions; the rest boot only what they must prove.

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::{Run, TestEnv};

/// One A3S home for every VM test here: the kernel, initrd and busybox image are prepared once.
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
    assert_eq!(
        r.code, 0,
        "a3s-box {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

/// Polls `f` until it returns Some, for at most two minutes (boots under TCG on a busy host).
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

fn inspect(name: &str) -> serde_json::Value {
    ok(&["inspect", name]).json()[0].clone()
}

fn pid_alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The shared box: prints `started`, then echoes whatever lands in /tmp/say. It runs under a
/// foreground `a3s-box run` that a parked thread spawned with `PR_SET_PDEATHSIG`; the box
/// outlives that CLI (Docker's semantics), and the run's reaper (support.rs) removes it once
/// the test process has ended.
fn shared() -> &'static str {
    static BOX: OnceLock<()> = OnceLock::new();
    BOX.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cmd = env().cmd();
            cmd.args([
                "run", "--name", "shared", "busybox", "sh", "-c",
                "echo started; while true; do if [ -f /tmp/say ]; then cat /tmp/say; rm /tmp/say; fi; sleep 0.2; done",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(env().path("shared-cli.stderr")).unwrap());
            die_with_this_thread(&mut cmd);
            let child = cmd.spawn().unwrap();
            tx.send(()).unwrap();
            let _keep = child;
            loop {
                std::thread::park();
            }
        });
        rx.recv().unwrap();
        let stderr = env().path("shared-cli.stderr");
        eventually("the shared box to run", || {
            let r = run(&["inspect", "shared"]);
            if r.code != 0 {
                return None; // not created yet
            }
            let status = r.json()[0]["state"]["status"].clone();
            assert!(
                status != "exited",
                "shared box ended: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
            (status == "running").then_some(())
        });
    });
    "shared"
}

#[allow(unsafe_code)]
fn die_with_this_thread(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(2) in the forked child before exec; async-signal-safe, no allocation.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

#[test]
fn run_returns_output_env_and_the_workload_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    std::fs::write(&env_file, "# comment\nFROMFILE=file-value\n").unwrap();
    let r = run(&[
        "run", "--rm", "-e", "FOO=bar baz", "--env-file", env_file.to_str().unwrap(),
        "-w", "/tmp/work", "-u", "nobody", "--hostname", "hostbox",
        "--add-host", "db.internal:10.1.2.3", "--memory", "300m", "--cpus", "1",
        "busybox", "sh", "-c",
        "echo \"$FOO|$FROMFILE\"; pwd; id -u; hostname; grep db.internal /etc/hosts; echo to-stderr >&2; exit 3",
    ]);
    assert_eq!(r.code, 3, "exit code is the workload's: {}", r.stderr);
    assert_eq!(
        r.stdout,
        "bar baz|file-value\n/tmp/work\n65534\nhostbox\n10.1.2.3\tdb.internal\n"
    );
    assert!(r.stderr.contains("to-stderr"), "{}", r.stderr);
    // --rm removed it.
    assert_eq!(ok(&["ps", "-a", "-q"]).stdout.matches("hostbox").count(), 0);
}

#[test]
fn the_box_ends_with_its_workload_even_when_children_hold_its_output() {
    // Docker's rule: when the main process exits, the rest of the box goes with it. The
    // background sleep keeps stdout open; guest-init used to wait for it before reporting
    // the exit (so a `stop -t 0` of nginx, whose workers outlive a killed master, waited for
    // the host's grace). The bound only stops a regression from hanging the suite.
    let mut child = env()
        .cmd()
        .args([
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "sleep 900 & echo done; exit 4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bound = Instant::now() + Duration::from_secs(400);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > bound {
            let _ = child.kill();
            panic!("run --rm did not return after its workload exited: the box waited for the workload's background child");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!((status.code(), out.as_str()), (Some(4), "done\n"));
}

#[test]
fn start_attach_streams_the_workload_and_returns_its_exit_code() {
    ok(&[
        "create",
        "--name",
        "sa-out",
        "busybox",
        "sh",
        "-c",
        "echo from-start; exit 5",
    ]);
    let r = run(&["start", "-a", "sa-out"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (5, "from-start\n"),
        "{}",
        r.stderr
    );
    // Again: only this run's output, not the earlier runs' in the box's log.
    let again = run(&["start", "-a", "sa-out"]);
    assert_eq!(
        (again.code, again.stdout.as_str()),
        (5, "from-start\n"),
        "{}",
        again.stderr
    );
    // -i: this terminal's stdin reaches a box created with -i.
    ok(&[
        "create",
        "-i",
        "--name",
        "sa-in",
        "busybox",
        "sh",
        "-c",
        "read l; echo got-$l",
    ]);
    let mut child = env()
        .cmd()
        .args(["start", "-a", "-i", "sa-in"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"line\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(0), "got-line\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let two = run(&["start", "-a", "sa-out", "sa-in"]);
    assert_eq!(two.code, 2, "{}", two.stderr);
    assert!(two.stderr.contains("takes one box"), "{}", two.stderr);
    assert_eq!(run(&["start", "-i", "sa-out"]).code, 2, "-i needs -a");
    ok(&["rm", "sa-out", "sa-in"]);
}

/// Docker's `State.OOMKilled`: a workload the guest kernel's OOM killer ended says so (it was
/// always `false` before), with an `oom` event; a box that ends by itself does not.
#[test]
fn a_workload_the_oom_killer_ended_is_reported_oom_killed() {
    // `tail` keeps a growing buffer when its input has no newline; sh execs it as the workload.
    let r = run(&[
        "run",
        "--name",
        "oom-box",
        "--memory",
        "160m",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/a3s-workload/memory.max; tail /dev/zero",
    ]);
    assert_eq!(r.code, 137, "killed: {}", r.stderr);
    // `--memory` is the workload's cgroup limit, as Docker's (it was the VM's size).
    assert_eq!(r.stdout.trim(), (160 << 20).to_string());
    let state = &inspect("oom-box")["oom_killed"];
    assert_eq!(state, true, "{}", inspect("oom-box"));
    let docker = ok(&[
        "inspect",
        "--format",
        "{{.State.OOMKilled}} {{.State.ExitCode}}",
        "oom-box",
    ]);
    assert_eq!(docker.stdout.trim(), "true 137");
    let limit = ok(&["inspect", "--format", "{{.HostConfig.Memory}}", "oom-box"]);
    assert_eq!(limit.stdout.trim(), (160 << 20).to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        // Whole seconds: the next one covers this one's events.
        .saturating_add(1)
        .to_string();
    let events = ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &now,
        "--format",
        "json",
        "--filter",
        "container=oom-box",
    ]);
    let actions: Vec<String> = events
        .stdout
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            e["Action"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    let oom = actions.iter().position(|a| *a == "oom");
    let die = actions.iter().position(|a| *a == "die");
    assert!(oom.is_some() && oom < die, "oom before die: {actions:?}");
    ok(&["rm", "oom-box"]);

    let r = run(&[
        "run",
        "--name",
        "no-oom-box",
        "busybox",
        "sh",
        "-c",
        "exit 137",
    ]);
    assert_eq!(r.code, 137);
    let docker = ok(&[
        "inspect",
        "--format",
        "{{.State.OOMKilled}} {{.HostConfig.Memory}}",
        "no-oom-box",
    ]);
    // No `--memory`: no limit, 0 as Docker shows it.
    assert_eq!(docker.stdout.trim(), "false 0");
    ok(&["rm", "no-oom-box"]);
}

#[test]
fn missing_command_exits_127_with_a_message() {
    let r = run(&["run", "--rm", "busybox", "no-such-program"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("no-such-program: executable file not found"),
        "{}",
        r.stderr
    );
}

#[test]
fn detached_box_serves_exec_logs_inspect_and_stats() {
    let name = shared();
    let ps = ok(&["ps", "--format", "json"]).json_lines();
    let me = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["Names"] == name)
        .expect("shared box listed");
    assert_eq!(me["State"], "running");
    // Docker's Go templates over the same row, plain and as an aligned table.
    let names = ok(&["ps", "--format", "{{.Names}}:{{.State}}"]).stdout;
    assert!(
        names.lines().any(|l| l == format!("{name}:running")),
        "{names}"
    );
    let table = ok(&["ps", "--format", r"table {{.ID}}\t{{.Names}}"]).stdout;
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("BOX ID "), "{table}");
    assert!(lines.any(|l| l.ends_with(name)), "{table}");
    let bad = run(&["ps", "--format", "yaml"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("use table, json or a Go template"),
        "{}",
        bad.stderr
    );
    let bad = run(&["ps", "--format", "{{range .}}x{{end}}"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("not supported"), "{}", bad.stderr);

    let r = run(&[
        "exec",
        "-e",
        "X=1 2",
        "-w",
        "/srv",
        "-u",
        "nobody",
        name,
        "sh",
        "-c",
        "echo \"$X\"; pwd; id -u; echo e >&2; exit 4",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (4, "1 2\n/srv\n65534\n", "e\n")
    );

    let r = run(&["exec", name, "no-such-program"]);
    assert_eq!(r.code, 127, "{}", r.stderr);

    // exec -i: stdin reaches the process, EOF ends it.
    let mut child = env()
        .cmd()
        .args(["exec", "-i", name, "sh", "-c", "tr a-z A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped input\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PIPED INPUT\n");

    let logs = ok(&["logs", name]);
    assert!(logs.stdout.starts_with("started\n"), "{}", logs.stdout);
    let ts = ok(&["logs", "-t", "--tail", "1", name]);
    assert!(
        ts.stdout.starts_with("20") && ts.stdout.contains("Z started"),
        "{}",
        ts.stdout
    );

    let rec = inspect(name);
    let cmdline = rec["kernel_cmdline"].as_str().unwrap();
    assert!(
        cmdline.contains("rdinit=/.a3s/init") && cmdline.contains("a3s.image=sha256:"),
        "{cmdline}"
    );
    assert_eq!(rec["state"]["status"], "running");

    let stats = ok(&["stats", "--no-stream", "--format", "json", name]).json_lines();
    assert!(stats[0]["rss_kib"].as_u64().unwrap() > 1024, "{stats}");
}

#[test]
fn exec_with_a_tty_gets_a_terminal_and_interactive_input() {
    let name = shared();
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = pty.slave;
    let child = env()
        .cmd()
        .args(["exec", "-it", name, "sh"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    master
        .write_all(b"tty; echo typed-$((40+2)); exit 5\n")
        .unwrap();
    let output = read_pty_until_exit(&mut master, child);
    assert_eq!(output.0, Some(5), "exit code of the shell: {}", output.1);
    assert!(
        output.1.contains("/dev/pts/"),
        "tty inside the box: {}",
        output.1
    );
    assert!(output.1.contains("typed-42"), "{}", output.1);
}

fn read_pty_until_exit(master: &mut std::fs::File, mut child: Child) -> (Option<i32>, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut text = Vec::new();
    let code = eventually("exec -it to exit", || {
        while let Ok(chunk) = rx.try_recv() {
            text.extend(chunk);
        }
        child.try_wait().unwrap().map(|s| s.code())
    });
    std::thread::sleep(Duration::from_millis(200));
    while let Ok(chunk) = rx.try_recv() {
        text.extend(chunk);
    }
    (code, String::from_utf8_lossy(&text).into_owned())
}

#[test]
fn logs_follow_streams_new_output_and_survives_its_client_being_killed() {
    let name = shared();
    let mut follow = env()
        .cmd()
        .args(["logs", "-f", name])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    ok(&["exec", name, "sh", "-c", "echo followed-line > /tmp/say"]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("followed-line") {
                let _ = tx.send(());
                break;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("logs -f printed the new line");
    // A client crash (SIGKILL) does not disturb the box.
    follow.kill().unwrap();
    follow.wait().unwrap();
    assert_eq!(inspect(name)["state"]["status"], "running");
}

#[test]
fn two_boxes_stop_timeout_kill_signal_and_wait() {
    let stubborn = ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; echo up; for i in $(seq 300); do sleep 1; done",
    ]);
    let polite = ok(&["run", "-d", "--name", "polite", "busybox", "sleep", "300"]);
    assert_ne!(stubborn.stdout, polite.stdout);
    let running = ok(&["ps", "-q"]).stdout;
    assert!(
        running.contains(&stubborn.stdout.trim()[..12])
            && running.contains(&polite.stdout.trim()[..12])
    );

    // SIGTERM is ignored, so stop -t 1 must kill the VM: Docker's 137.
    ok(&["stop", "-t", "1", "stubborn"]);
    assert_eq!(inspect("stubborn")["state"]["exit_code"], 137);

    // kill -s TERM reaches the workload (sleep dies of SIGTERM: 143); wait reports it.
    ok(&["kill", "-s", "TERM", "polite"]);
    assert_eq!(ok(&["wait", "polite"]).stdout.trim(), "143");

    let r = run(&["exec", "polite", "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("is not running") && r.stderr.contains("hint: start it"),
        "{}",
        r.stderr
    );

    // Lifecycle actions are in the audit log, against the box's id.
    let id = inspect("stubborn")["id"].as_str().unwrap().to_owned();
    let events = ok(&["audit", "--box", &id, "--format", "json"]).stdout;
    for action in ["box.create", "box.start", "box.stop"] {
        assert!(events.contains(action), "{action} missing from {events}");
    }
    assert!(ok(&["audit", "--action", "box.kill", "--format", "json"])
        .stdout
        .contains("signal 15"));

    // A stopped box starts again.
    ok(&["start", "polite"]);
    assert_eq!(inspect("polite")["start_count"], 2);
    ok(&["rm", "-f", "polite", "stubborn"]);
    assert!(run(&["inspect", "polite"]).stderr.contains("no such box"));
}

#[test]
fn killing_the_foreground_cli_leaves_the_box_running_with_intact_state() {
    let mut cli = env()
        .cmd()
        .args(["run", "--name", "orphan", "busybox", "sleep", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let qemu = eventually("the box to run", || {
        let r = run(&["inspect", "orphan"]);
        (r.code == 0)
            .then(|| r.json()[0]["state"]["qemu_pid"].as_u64())
            .flatten()
    });
    assert!(pid_alive(qemu));
    cli.kill().unwrap(); // SIGKILL: no chance to clean up
    cli.wait().unwrap();

    // Docker's semantics: the box does not depend on its CLI (signals.rs has the rest).
    let rec = inspect("orphan");
    assert_eq!(rec["state"]["status"], "running", "{rec}");
    assert!(pid_alive(qemu));
    ok(&["rm", "-f", "orphan"]);
    eventually("QEMU to end with its box", || {
        (!pid_alive(qemu)).then_some(())
    });
}

#[test]
fn clear_errors_for_bad_requests() {
    let e = env();
    let r = run(&["run", "--rm", "no-such-image"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("no-such-image") && r.stderr.contains("hint:"),
        "{}",
        r.stderr
    );

    ok(&["create", "--name", "taken", "busybox", "true"]);
    let r = run(&["create", "--name", "taken", "busybox", "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("already in use") && r.stderr.contains("rm -f"),
        "{}",
        r.stderr
    );
    assert_eq!(inspect("taken")["state"]["status"], "created");
    ok(&["rm", "taken"]);

    let r = run(&["stop", "no-such-box"]);
    assert!(
        r.code == 125 && r.stderr.contains("no such box"),
        "{}",
        r.stderr
    );
    let r = run(&["run", "--memory", "lots", "busybox", "true"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = run(&["kill", "-s", "NOPE", "x"]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // No kernel: the error says how to install one.
    let out = e
        .cmd()
        .env("A3S_BOX_KERNEL_DIR", e.path("no-kernels"))
        .args(["run", "--rm", "busybox", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr.contains("no guest kernel") && stderr.contains("scripts/setup"),
        "{stderr}"
    );

    // No QEMU on PATH.
    let out = e
        .cmd()
        .env("PATH", "/nonexistent")
        .args(["run", "--rm", "busybox", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("qemu-system-x86_64 not found") && stderr.contains("scripts/setup"),
        "{stderr}"
    );
    let left = ok(&["ps", "-a", "--format", "json"]).json_lines();
    assert!(left
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["State"] != "created" || b["Names"] != "taken"));
}

#[test]
fn import_tags_a_rootfs_tarball() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let tar = dir.path().join("rootfs.tar.gz");
    let st = std::process::Command::new("tar")
        .args([
            "-C",
            root.to_str().unwrap(),
            "-czf",
            tar.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let r = ok(&["import", tar.to_str().unwrap(), "mini:1"]);
    assert!(r.stdout.trim().starts_with("sha256:"), "{}", r.stdout);
    let created = ok(&["create", "--name", "mini-box", "mini:1"]);
    assert_eq!(
        inspect("mini-box")["spec"]["process"]["argv"][0],
        "/bin/sh",
        "{}",
        created.stdout
    );
    ok(&["rm", "mini-box"]);
    let r = run(&[
        "import",
        dir.path().join("absent.tar").to_str().unwrap(),
        "x:1",
    ]);
    assert_eq!(r.code, 125);
}
