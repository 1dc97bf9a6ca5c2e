//! Docker parity (issue 20): listing, naming and flag semantics a Docker user relies on. Two
//! boots serve every assertion here: one detached box and one short foreground run.

use crate::support::{Run, TestEnv};

fn ok(env: &TestEnv, args: &[&str]) -> Run {
    let r = env.run(args);
    assert_eq!(r.code, 0, "a3s-box {args:?}:\n{}\n{}", r.stdout, r.stderr);
    r
}

fn refused(env: &TestEnv, args: &[&str], code: i32, says: &str) {
    let r = env.run(args);
    assert_eq!(
        r.code, code,
        "a3s-box {args:?}:\n{}\n{}",
        r.stdout, r.stderr
    );
    assert!(r.stderr.contains(says), "a3s-box {args:?}: {}", r.stderr);
}

#[test]
fn labels_filters_rename_logs_windows_and_run_flags() {
    crate::support::build_guest_init();
    let env = TestEnv::new();
    let cid = env.path("web.cid");
    let cid_arg = cid.to_string_lossy().into_owned();

    // Refused before anything is created (no boot, exit 2, the reason named).
    refused(
        &env,
        &["run", "--platform", "linux/arm64", "busybox", "true"],
        2,
        "linux/amd64 only",
    );
    refused(
        &env,
        &["run", "--gpus", "all", "busybox", "true"],
        2,
        "GPUs cannot be passed",
    );
    refused(
        &env,
        &["run", "--stop-signal", "NOPE", "busybox", "true"],
        2,
        "invalid signal",
    );
    refused(
        &env,
        &["run", "--pull", "never", "nginx:1", "true"],
        125,
        "not found in the local store",
    );
    refused(
        &env,
        &["ps", "--filter", "colour=red"],
        2,
        "unknown filter key",
    );
    assert_eq!(ok(&env, &["ps", "-a", "-q"]).stdout.trim(), "");

    // A detached box with labels and --cidfile.
    let id = ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-l",
            "tier=front",
            "-l",
            "team=a",
            "--cidfile",
            &cid_arg,
            "--stop-signal",
            "SIGQUIT",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-quit; exit 7' QUIT; while true; do sleep 1; done",
        ],
    )
    .stdout
    .trim()
    .to_owned();
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id);
    refused(
        &env,
        &["run", "-d", "--cidfile", &cid_arg, "busybox", "true"],
        2,
        "the file exists",
    );
    let status = ok(
        &env,
        &[
            "inspect",
            "-f",
            "{{.State.Status}} {{.Config.Labels.tier}}",
            "web",
        ],
    );
    assert_eq!(status.stdout, "running front\n");
    refused(
        &env,
        &["inspect", "-f", "{{range .X}}", "web"],
        2,
        "not supported",
    );
    let web = ok(&env, &["inspect", "web"]).json()[0].clone();
    assert_eq!(web["spec"]["labels"]["tier"], "front");
    assert_eq!(web["spec"]["stop_signal"], 3);

    // A foreground box whose command has a newline and a multi-byte character.
    let out = ok(
        &env,
        &[
            "run",
            "--name",
            "once",
            "-l",
            "tier=back",
            "busybox",
            "sh",
            "-c",
            "echo first; sleep 3; echo \"é\nlast\"",
        ],
    );
    assert_eq!(out.stdout, "first\né\nlast\n");

    // ps: running only by default; filters; -n; -q; --no-trunc; the table keeps one row per box.
    let ps = ok(&env, &["ps"]).stdout;
    assert_eq!(ps.lines().count(), 2, "{ps}");
    assert!(ps.contains("web") && !ps.contains("once"), "{ps}");
    let all = ok(&env, &["ps", "-a"]).stdout;
    assert_eq!(
        all.lines().count(),
        3,
        "a newline in a command broke the table:\n{all}"
    );
    assert!(all.contains("\"sh -c echo first; s…\""), "{all}");
    assert!(all.contains("\"sh -c trap 'echo go…\""), "{all}");
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ps", "--format", "json"];
        a.extend_from_slice(args);
        ok(&env, &a)
            .json_lines()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["Names"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&["-a", "--filter", "label=tier"]), ["web", "once"]);
    assert_eq!(names(&["-a", "--filter", "label=tier=back"]), ["once"]);
    assert_eq!(
        names(&["-a", "-f", "label=tier", "-f", "label=team=a"]),
        ["web"]
    );
    assert_eq!(names(&["--filter", "status=exited"]), ["once"]);
    assert_eq!(names(&["-a", "--filter", "exited=0"]), ["once"]);
    assert_eq!(
        names(&["-a", "--filter", "ancestor=busybox"]),
        ["web", "once"]
    );
    assert_eq!(names(&["-a", "--filter", "since=web"]), ["once"]);
    assert_eq!(names(&["-n", "1"]), ["once"]);
    assert_eq!(names(&["-l"]), ["once"]);
    let full = ok(&env, &["ps", "-q", "--no-trunc", "--filter", "name=web"]).stdout;
    assert_eq!(full.trim(), id);
    let sized = ok(&env, &["ps", "-a", "-s", "--format", "json"]).json_lines();
    assert_ne!(sized[0]["Size"], "0B", "{sized}");

    // Docker's JSON shapes, field by field.
    let rows = ok(&env, &["ps", "--format", "json", "--filter", "name=web"]).json_lines();
    let web = rows[0].as_object().unwrap();
    let keys: Vec<&str> = web.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "Command",
            "CreatedAt",
            "ID",
            "Image",
            "Labels",
            "LocalVolumes",
            "Mounts",
            "Names",
            "Networks",
            "Ports",
            "RunningFor",
            "Size",
            "State",
            "Status"
        ]
    );
    assert!(web.values().all(serde_json::Value::is_string), "{rows}");
    assert_eq!(web["ID"], &id[..12]);
    assert_eq!(web["Names"], "web");
    assert_eq!(web["Labels"], "team=a,tier=front");
    assert_eq!(web["State"], "running");
    assert!(web["Status"].as_str().unwrap().starts_with("Up "), "{rows}");
    assert!(
        web["CreatedAt"].as_str().unwrap().ends_with(" +0000 UTC"),
        "{rows}"
    );
    assert!(
        web["RunningFor"].as_str().unwrap().ends_with(" ago"),
        "{rows}"
    );
    let docker = ok(&env, &["inspect", "web"]).json()[0].clone();
    assert_eq!(docker["Id"], id.as_str());
    assert_eq!(docker["Name"], "/web");
    assert_eq!(docker["State"]["Status"], "running");
    assert_eq!(docker["State"]["Running"], true);
    assert!(docker["State"]["Pid"].as_u64().unwrap() > 0, "{docker}");
    assert_eq!(docker["State"]["ExitCode"], 0);
    assert_eq!(docker["Path"], "sh");
    assert_eq!(docker["Args"][0], "-c");
    assert_eq!(docker["Config"]["Labels"]["tier"], "front");
    assert_eq!(docker["Config"]["StopSignal"], "SIGQUIT");
    assert_eq!(docker["Config"]["Image"], "busybox:latest");
    assert_eq!(docker["HostConfig"]["RestartPolicy"]["Name"], "no");
    // No `--memory`: no limit, which Docker shows as 0.
    assert_eq!(docker["HostConfig"]["Memory"], 0, "{docker}");
    assert!(docker["Image"].as_str().unwrap().starts_with("sha256:"));
    let images = ok(&env, &["images", "--format", "json"]).json_lines();
    let busybox = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["Repository"] == "busybox")
        .unwrap_or_else(|| panic!("{images}"))
        .as_object()
        .unwrap();
    let keys: Vec<&str> = busybox.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "Containers",
            "CreatedAt",
            "CreatedSince",
            "Digest",
            "ID",
            "Repository",
            "SharedSize",
            "Size",
            "Tag",
            "UniqueSize",
            "VirtualSize"
        ]
    );
    assert_eq!(busybox["Repository"], "busybox");
    assert_eq!(busybox["Tag"], "latest");
    assert_eq!(busybox["ID"].as_str().unwrap().len(), 12);

    // rename: the new name works everywhere, the old one is gone, a taken name is refused.
    ok(&env, &["rename", "once", "twice"]);
    refused(&env, &["inspect", "once"], 125, "once");
    refused(&env, &["rename", "twice", "web"], 125, "web");
    refused(&env, &["rename", "twice", "bad/name"], 125, "name");
    assert_eq!(names(&["-a", "--filter", "name=twi"]), ["twice"]);

    // logs --since/--until split the run's output at a time between its two writes.
    let stamped = ok(&env, &["logs", "-t", "twice"]).stdout;
    let times: Vec<&str> = stamped
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(times.len(), 3, "{stamped}");
    let since = ok(&env, &["logs", "--since", times[1], "twice"]).stdout;
    assert_eq!(since, "é\nlast\n");
    let until = ok(&env, &["logs", "--until", times[1], "twice"]).stdout;
    assert_eq!(until, "first\n");
    assert_eq!(
        ok(&env, &["logs", "--since", "1h", "twice"]).stdout,
        out.stdout
    );
    refused(
        &env,
        &["logs", "--since", "yesterday", "twice"],
        2,
        "invalid time",
    );

    // stop sends the box's stop signal (SIGQUIT here), which the workload traps.
    ok(&env, &["stop", "web"]);
    assert_eq!(
        ok(&env, &["inspect", "-f", "{{.State.ExitCode}}", "web"]).stdout,
        "7\n"
    );
    assert!(ok(&env, &["logs", "web"]).stdout.contains("got-quit"));

    ok(&env, &["rm", "-f", "web", "twice"]);
}
