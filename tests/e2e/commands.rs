//! The box commands of issue 20: `import -c/-m`, `top`, `stats --no-stream`, `exec -d`,
//! `pause`/`unpause` (and `exec`/`stop` of a paused box), `events` (stored and live), `rm -v`.
//! One boot serves every assertion: a box of an image imported with `--change`, whose CMD is
//! its workload.

use std::io::BufRead;
use std::process::Stdio;

use crate::support::{Run, TestEnv};

fn ok(env: &TestEnv, args: &[&str]) -> Run {
    let r = env.run(args);
    assert_eq!(r.code, 0, "a3s-box {args:?}:\n{}\n{}", r.stdout, r.stderr);
    r
}

fn refused(env: &TestEnv, args: &[&str], code: i32, says: &str) -> Run {
    let r = env.run(args);
    assert_eq!(
        r.code, code,
        "a3s-box {args:?}:\n{}\n{}",
        r.stdout, r.stderr
    );
    assert!(r.stderr.contains(says), "a3s-box {args:?}: {}", r.stderr);
    r
}

/// A busybox root filesystem tarball: every applet linked, and an /etc/passwd.
fn busybox_rootfs(env: &TestEnv) -> String {
    let root = env.path("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    let tar = env.path("rootfs.tar");
    let st = std::process::Command::new("tar")
        .args([
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    tar.display().to_string()
}

fn box_json(env: &TestEnv, name: &str) -> serde_json::Value {
    let all = ok(env, &["ps", "-a", "--format", "json"]).json_lines();
    all.as_array()
        .unwrap()
        .iter()
        .find(|b| b["Names"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no box {name} in {all}"))
}

fn json_lines(r: &Run) -> Vec<serde_json::Value> {
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn import_top_stats_exec_detached_pause_events_and_rm() {
    crate::support::build_guest_init();
    let env = TestEnv::new();
    let t0 = time::OffsetDateTime::now_utc().unix_timestamp().to_string();

    // import --change: the box below runs the CMD given here, in its WORKDIR, with its ENV.
    let tar = busybox_rootfs(&env);
    refused(
        &env,
        &["import", "-c", "RUN echo no", &tar, "imp:bad"],
        2,
        "RUN cannot be used with import",
    );
    refused(
        &env,
        &["import", "-c", "", &tar, "imp:bad"],
        2,
        "exactly one instruction",
    );
    ok(
        &env,
        &[
            "import",
            "-c",
            "CMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; echo $GREETING from $(pwd); while true; do sleep 1; done\"]",
            "--change",
            "ENV GREETING=hello",
            "-c",
            "WORKDIR /tmp",
            "-c",
            "LABEL team=a",
            "-c",
            "STOPSIGNAL SIGTERM",
            "-m",
            "imported for e2e",
            &tar,
            "imp:1",
        ],
    );
    let id = ok(
        &env,
        &["run", "-d", "--name", "cmds", "-l", "tier=x", "imp:1"],
    )
    .stdout
    .trim()
    .to_owned();
    let inspect = ok(&env, &["inspect", "cmds"]).json()[0].clone();
    assert_eq!(inspect["spec"]["process"]["argv"][0], "sh", "{inspect}");
    assert_eq!(inspect["spec"]["process"]["workdir"], "/tmp");

    // top: Docker's columns; the workload and its sleep, nothing of guest-init or the kernel.
    let top = ok(&env, &["top", "cmds"]);
    let mut lines = top.stdout.lines();
    let titles: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        titles,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let rows: Vec<&str> = lines.collect();
    assert!(
        rows.iter()
            .any(|r| r.starts_with("root ") && r.contains("echo $GREETING from")),
        "{}",
        top.stdout
    );
    assert!(
        rows.iter().all(|r| !r.contains("a3s") && !r.contains('[')),
        "{}",
        top.stdout
    );
    ok(&env, &["top", "cmds", "-ef"]);
    // ps options as Docker passes them: aux, -o LIST; others are refused, never ignored.
    let aux = ok(&env, &["top", "cmds", "aux"]);
    let mut lines = aux.stdout.lines();
    let titles: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        titles,
        ["USER", "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START", "TIME", "COMMAND"]
    );
    let sh_row: Vec<&str> = lines
        .find(|l| l.contains("echo $GREETING"))
        .unwrap_or_else(|| panic!("{}", aux.stdout))
        .split_whitespace()
        .collect();
    assert_eq!(sh_row[0], "root");
    assert!(
        sh_row[2].contains('.') && sh_row[3].contains('.'),
        "{sh_row:?}"
    );
    assert!(
        sh_row[5].parse::<u64>().unwrap() > 0,
        "RSS in KiB: {sh_row:?}"
    );
    assert!(matches!(sh_row[7], "S" | "R"), "{sh_row:?}");
    let o = ok(&env, &["top", "cmds", "-o", "pid,comm"]);
    let mut lines = o.stdout.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    let comms: Vec<&str> = lines
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert!(
        comms.contains(&"sh") && comms.contains(&"sleep"),
        "{}",
        o.stdout
    );
    refused(&env, &["top", "cmds", "-l"], 125, "top understands");
    refused(&env, &["top", "cmds", "-o", "comm"], 125, "PID column");

    // exec -d: returns at once, the process runs on (it writes a file, then sleeps).
    ok(
        &env,
        &[
            "exec",
            "-d",
            "cmds",
            "sh",
            "-c",
            "echo detached > /tmp/d; exec sleep 300",
        ],
    );
    let waited = ok(
        &env,
        &[
            "exec",
            "cmds",
            "sh",
            "-c",
            "while [ ! -s /tmp/d ]; do sleep 0.1; done; cat /tmp/d",
        ],
    );
    assert_eq!(waited.stdout, "detached\n");
    // commit --pause (Docker's default) stops the box's processes while its changes are
    // read and continues them after; --pause=false leaves them running. A trapping process
    // shows it: its CONT trap runs after its current sleep, before its next tick.
    ok(
        &env,
        &[
            "exec",
            "-d",
            "cmds",
            "sh",
            "-c",
            "echo $$ > /tmp/trapper; trap 'echo cont >> /tmp/conts' CONT; \
             while true; do sleep 1; echo t > /tmp/tick; done",
        ],
    );
    let two_ticks = "rm -f /tmp/tick; while [ ! -e /tmp/tick ]; do sleep 0.1; done; \
                     rm /tmp/tick; while [ ! -e /tmp/tick ]; do sleep 0.1; done; \
                     cat /tmp/conts 2>/dev/null; echo end";
    ok(
        &env,
        &["commit", "--pause=false", "cmds", "committed:running"],
    );
    assert_eq!(
        ok(&env, &["exec", "cmds", "sh", "-c", two_ticks]).stdout,
        "end\n"
    );
    ok(&env, &["commit", "cmds", "committed:paused"]);
    assert_eq!(
        ok(&env, &["exec", "cmds", "sh", "-c", two_ticks]).stdout,
        "cont\nend\n"
    );
    ok(
        &env,
        &["exec", "cmds", "sh", "-c", "kill $(cat /tmp/trapper)"],
    );

    // exec -i: the detach keys (here custom) end this command with 0; the process runs on
    // (its stdin ends, so cat finishes and the sleep follows), and the keys never reach it.
    let mut exec = env
        .cmd()
        .args([
            "exec",
            "-i",
            "--detach-keys",
            "ctrl-x,x",
            "cmds",
            "sh",
            "-c",
            "cat > /tmp/got; touch /tmp/cat-done; exec sleep 301",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = exec.stdin.take().unwrap();
        stdin.write_all(b"typed\n\x18x").unwrap();
        // Kept open: only the detach keys may end the session.
        let out = exec.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        drop(stdin);
    }
    let got = ok(
        &env,
        &[
            "exec",
            "cmds",
            "sh",
            "-c",
            "while [ ! -e /tmp/cat-done ]; do sleep 0.1; done; cat /tmp/got",
        ],
    );
    assert_eq!(got.stdout, "typed\n");
    assert!(ok(&env, &["top", "cmds"]).stdout.contains("sleep 301"));
    refused(
        &env,
        &["exec", "-i", "--detach-keys", "ctrl-", "cmds", "true"],
        2,
        "invalid detach keys",
    );

    // The CMD ran in WORKDIR with ENV.
    let logs = ok(&env, &["logs", "cmds"]);
    assert_eq!(logs.stdout.lines().next(), Some("hello from /tmp"));
    assert!(ok(&env, &["top", "cmds"]).stdout.contains("sleep 300"));
    refused(
        &env,
        &["exec", "-d", "cmds", "no-such-command"],
        127,
        "no-such-command: executable file not found",
    );

    // stats --no-stream: guest-side memory, below the VM's 512 MiB.
    // Docker's `--format json`: one object per box, per line.
    let stats = ok(&env, &["stats", "--no-stream", "--format", "json", "cmds"]).json_lines();
    let s = &stats[0];
    assert_eq!(s["Name"], "cmds");
    assert_eq!(s["ID"], id.as_str());
    let used = s["mem_used_bytes"].as_u64().unwrap();
    let limit = s["mem_limit_bytes"].as_u64().unwrap();
    assert!(used > 0 && used < limit, "{s}");
    assert!(
        limit < 512 << 20,
        "guest MemTotal {limit} not below the VM size: {s}"
    );
    assert!(s["MemUsage"].as_str().unwrap().contains("MiB / "), "{s}");
    assert!(
        s["pids"].as_u64().unwrap() >= 2,
        "sh and sleep 300 at least: {s}"
    );
    assert!(s["cpu_percent"].as_f64().unwrap() >= 0.0, "{s}");
    assert!(s["CPUPerc"].as_str().unwrap().ends_with('%'), "{s}");
    let text = ok(&env, &["stats", "--no-stream", "cmds"]);
    assert!(text.stdout.starts_with("BOX ID"), "{}", text.stdout);
    assert!(text.stdout.contains("MEM USAGE / LIMIT"), "{}", text.stdout);
    // Docker's templates, plain and as a table with its headers.
    let t = ok(
        &env,
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}: {{.MemUsage}}",
            "cmds",
        ],
    );
    assert!(
        t.stdout.starts_with("cmds: ")
            && t.stdout.contains("MiB / ")
            && t.stdout.lines().count() == 1,
        "{}",
        t.stdout
    );
    let t = ok(
        &env,
        &[
            "stats",
            "--no-stream",
            "--format",
            "table {{.Name}}\t{{.MemPerc}}",
            "cmds",
        ],
    );
    let lines: Vec<Vec<&str>> = t
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "MEM", "%"], "{}", t.stdout);
    assert_eq!(lines[1][0], "cmds", "{}", t.stdout);
    assert!(lines[1][1].ends_with('%'), "{}", t.stdout);

    // pause: vCPUs stopped, Docker's state words; exec refused; unpause; pause twice refused.
    ok(&env, &["pause", "cmds"]);
    let b = box_json(&env, "cmds");
    assert_eq!(b["State"], "paused", "{b}");
    assert!(b["Status"].as_str().unwrap().ends_with("(Paused)"), "{b}");
    let st = ok(&env, &["inspect", "-f", "{{.State.Status}}", "cmds"]);
    assert_eq!(st.stdout, "paused\n");
    let filtered = ok(&env, &["ps", "-q", "--filter", "status=paused"]);
    assert_eq!(filtered.stdout.trim(), &id[..12]);
    refused(&env, &["exec", "cmds", "true"], 125, "is paused");
    refused(&env, &["pause", "cmds"], 125, "is paused");
    let paused_stats = ok(&env, &["stats", "--no-stream", "--format", "json", "cmds"]).json_lines();
    assert_eq!(paused_stats[0]["MemUsage"], "--");
    ok(&env, &["unpause", "cmds"]);
    refused(&env, &["unpause", "cmds"], 125, "is not paused");
    assert_eq!(box_json(&env, "cmds")["State"], "running");
    assert_eq!(ok(&env, &["exec", "cmds", "echo", "back"]).stdout, "back\n");

    // Live events: a follower started now sees the rename (and nothing stored before it).
    let mut follower = env
        .cmd()
        .args(["events", "--format", "json", "--filter", "container=cmds2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    // The follower may not have opened the file yet: rename back and forth until it sees one.
    let mut seen = None;
    for i in 0..50 {
        let (from, to) = if i % 2 == 0 {
            ("cmds", "cmds2")
        } else {
            ("cmds2", "cmds")
        };
        ok(&env, &["rename", from, to]);
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            seen = Some(line);
            break;
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let seen: serde_json::Value = serde_json::from_str(&seen.expect("no live event")).unwrap();
    assert_eq!(seen["Action"], "rename");
    assert_eq!(seen["Actor"]["Attributes"]["oldName"], "cmds");
    assert_eq!(seen["Actor"]["Attributes"]["name"], "cmds2");
    if ok(&env, &["ps", "-q", "--filter", "name=cmds2"])
        .stdout
        .trim()
        != ""
    {
        ok(&env, &["rename", "cmds2", "cmds"]);
    }

    // stop of a paused box works (it runs again to get its stop signal), like Docker's.
    ok(&env, &["pause", "cmds"]);
    ok(&env, &["stop", "cmds"]);
    let b = box_json(&env, "cmds");
    assert_eq!(b["State"], "exited", "{b}");
    ok(&env, &["rm", "-v", "cmds"]);

    // The stored events of this lifecycle, in order, in Docker's shape.
    let until = (time::OffsetDateTime::now_utc().unix_timestamp() + 1).to_string();
    let window = ["events", "--since", &t0, "--until", &until];
    let all = ok(&env, &[&window[..], &["--format", "json"]].concat());
    let events = json_lines(&all);
    let actions: Vec<&str> = events
        .iter()
        .filter(|e| e["id"] == id.as_str())
        .map(|e| e["Action"].as_str().unwrap())
        .collect();
    let pos = |a: &str| {
        actions
            .iter()
            .position(|x| *x == a)
            .unwrap_or_else(|| panic!("no {a} in {actions:?}"))
    };
    assert!(pos("create") < pos("start"), "{actions:?}");
    assert!(
        pos("start") < pos("pause") && pos("pause") < pos("unpause"),
        "{actions:?}"
    );
    assert!(actions
        .iter()
        .any(|a| a.starts_with("exec_start: sh -c echo detached")));
    assert!(
        pos("unpause") < pos("die") && pos("die") < pos("stop"),
        "{actions:?}"
    );
    assert!(pos("stop") < pos("destroy"), "{actions:?}");
    let die = events.iter().find(|e| e["Action"] == "die").unwrap();
    assert_eq!(die["Type"], "container");
    assert_eq!(die["status"], "die");
    assert_eq!(die["from"], "imp:1");
    assert_eq!(die["id"], id.as_str());
    assert_eq!(die["Action"], "die");
    assert_eq!(die["Actor"]["Attributes"]["image"], "imp:1");
    // Exactly Docker's keys, nothing more.
    let mut keys: Vec<&str> = die
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["Action", "Actor", "Type", "from", "id", "scope", "status", "time", "timeNano"]
    );
    assert_eq!(die["scope"], "local");
    assert_eq!(die["Actor"]["ID"], id.as_str());
    assert_eq!(die["Actor"]["Attributes"]["name"], "cmds");
    assert_eq!(die["Actor"]["Attributes"]["tier"], "x");
    assert_eq!(die["Actor"]["Attributes"]["exitCode"], "0");
    assert_eq!(
        die["time"].as_i64().unwrap(),
        die["timeNano"].as_i64().unwrap() / 1_000_000_000
    );
    // Filters: one key's values are alternatives, different keys must all hold.
    let only = ok(
        &env,
        &[
            &window[..],
            &["--format", "json", "-f", "event=die", "-f", "event=pause"],
        ]
        .concat(),
    );
    let only: Vec<String> = json_lines(&only)
        .iter()
        .map(|e| e["Action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(only, ["pause", "pause", "die"]);
    let none = ok(
        &env,
        &[&window[..], &["-f", "event=die", "-f", "container=other"]].concat(),
    );
    assert_eq!(none.stdout, "");
    let text = ok(&env, &[&window[..], &["-f", "event=destroy"]].concat());
    let line = text.stdout.trim();
    assert!(
        line.contains(&format!(
            " container destroy {id} (image=imp:1, name=cmds, tier=x)"
        )),
        "{line}"
    );
    refused(&env, &["events", "-f", "colour=red"], 2, "bad event filter");
    let mode = std::fs::metadata(env.path("events/events.jsonl"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
}

/// `--init` (issue 20): Docker users expect a workload that is not PID 1 and an init that
/// reaps its orphans and lets SIGTERM kill it. guest-init is that init in every box (the
/// README says why `--init` changes nothing); this shows it from inside, with `--init`.
#[test]
fn init_is_guest_init_reaping_orphans_and_the_workload_dies_of_sigterm() {
    crate::support::build_guest_init();
    let env = TestEnv::new();
    let checks = "echo workload-pid=$$; \
        sh -c 'sleep 2 & echo $! > /tmp/orphan'; p=$(cat /tmp/orphan); \
        echo orphan-$(grep PPid /proc/$p/status | tr -d '\\t'); \
        while [ -e /proc/$p ] && ! grep -q 'State:.*Z' /proc/$p/status; do sleep 0.1; done; \
        if [ -e /proc/$p ]; then echo orphan-zombie; else echo orphan-reaped; fi; \
        echo ready; exec sleep 1000";
    ok(
        &env,
        &[
            "run", "-d", "--init", "--name", "init", "busybox", "sh", "-c", checks,
        ],
    );
    let logs = loop {
        let l = ok(&env, &["logs", "init"]).stdout;
        if l.contains("ready") {
            break l;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let pid: u32 = logs
        .lines()
        .find_map(|l| l.strip_prefix("workload-pid="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(pid > 1, "the workload is not PID 1: {logs}");
    assert!(
        logs.contains("orphan-PPid:1\n"),
        "PID 1 adopts orphans: {logs}"
    );
    assert!(logs.contains("orphan-reaped\n"), "PID 1 reaps them: {logs}");
    let inspect = ok(&env, &["inspect", "init"]).json()[0].clone();
    assert_eq!(
        inspect["HostConfig"]["Init"], true,
        "{}",
        inspect["HostConfig"]
    );
    // `sleep` has no SIGTERM handler: under an init it dies of the stop signal (143), not
    // of the SIGKILL after the timeout (137) as a PID 1 would.
    ok(&env, &["stop", "-t", "600", "init"]);
    let code = ok(&env, &["inspect", "-f", "{{.State.ExitCode}}", "init"]);
    assert_eq!(code.stdout.trim(), "143");
    ok(&env, &["rm", "init"]);
}
