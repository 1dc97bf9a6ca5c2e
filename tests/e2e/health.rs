//! Health checks end to end (issue 9): `--health-*` on real VMs under TCG. Two boots: one box
//! whose check passes (and later times out), one whose check fails; bad options boot nothing.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::{Run, TestEnv};

fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        crate::support::build_guest_init();
        TestEnv::new()
    })
}

fn ok(args: &[&str]) -> Run {
    let r = env().run(args);
    assert_eq!(
        r.code, 0,
        "a3s-box {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

/// Removes the box however the test ends, so no VM outlives it.
struct Remove(&'static str);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = env().run(&["rm", "-f", self.0]);
    }
}

/// Polls `f` until it returns Some; the limit only bounds a hung test (TCG on a busy host).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn state(name: &str) -> serde_json::Value {
    ok(&["inspect", name]).json()[0]["state"].clone()
}

fn wait_health(name: &str, want: &str) -> serde_json::Value {
    eventually(&format!("{name} to become {want}"), || {
        let s = state(name);
        assert_ne!(s["status"], "exited", "{name} ended: {s}");
        (s["health"]["status"] == want).then_some(s["health"].clone())
    })
}

fn ps_status(name: &str) -> String {
    let ps = ok(&["ps"]).stdout;
    ps.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("{name} not in ps:\n{ps}"))
        .to_owned()
}

fn health_events(name: &str) -> Vec<serde_json::Value> {
    let all = ok(&["audit", "--action", "box.health", "--format", "json"]).json();
    all.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["metadata"]["name"] == name)
        .cloned()
        .collect()
}

#[test]
fn bad_health_options_are_refused_before_boot() {
    for (args, needle) in [
        (
            vec!["--health-cmd", "true", "--health-interval", "10"],
            "--health-interval \"10\": missing unit",
        ),
        (
            vec!["--health-cmd", "true", "--health-timeout", "3 s"],
            "--health-timeout \"3 s\"",
        ),
        (
            vec!["--health-cmd", "true", "--health-start-period", "-1s"],
            "cannot be negative",
        ),
        (
            vec!["--health-cmd", "true", "--no-healthcheck"],
            "--no-healthcheck conflicts",
        ),
        (
            vec!["--health-retries", "2"],
            "--health-retries was given but there is no health check",
        ),
    ] {
        let mut full = vec!["run", "-d", "--name", "never"];
        full.extend(&args);
        full.extend(["busybox", "true"]);
        let r = env().run(&full);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert_ne!(
            env().run(&["inspect", "never"]).code,
            0,
            "no box was created"
        );
    }
    let r = env().run(&["create", "--health-interval", "soon", "busybox"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("hint: durations are"), "{}", r.stderr);
}

#[test]
fn a_passing_check_makes_the_box_healthy_and_a_timeout_makes_it_unhealthy() {
    let name = "health-ok";
    let _rm = Remove(name);
    ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--health-cmd",
        "if [ -f /tmp/hang ]; then sleep 600; fi; echo fine",
        "--health-interval",
        "1s",
        "--health-timeout",
        "2s",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "100000",
    ]);
    let health = wait_health(name, "healthy");
    assert_eq!(health["failing_streak"], 0);
    let last = health["log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["exit_code"], 0, "{health}");
    assert_eq!(last["output"], "fine\n");
    assert!(last["start"].as_str().unwrap() <= last["end"].as_str().unwrap());
    let line = ps_status(name);
    assert!(
        line.contains("Up ") && line.ends_with("(healthy)"),
        "{line}"
    );
    let json = ok(&["ps", "--format", "json"]).json_lines();
    let me = json
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["Names"] == name)
        .unwrap();
    assert!(
        me["Status"].as_str().unwrap().ends_with("(healthy)"),
        "{me}"
    );

    // The config is kept as Docker shows it (nanoseconds).
    let spec = &ok(&["inspect", name]).json()[0]["spec"]["health"];
    assert_eq!(spec["test"][0], "CMD-SHELL");
    assert_eq!(spec["interval"], 1_000_000_000u64);
    assert_eq!(spec["retries"], 1);

    // A probe that outlives --health-timeout is killed and counts as failed.
    ok(&["exec", name, "touch", "/tmp/hang"]);
    let health = wait_health(name, "unhealthy");
    let last = health["log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["exit_code"], -1, "{health}");
    assert_eq!(last["output"], "Health check exceeded timeout (2s)");
    assert!(health["log"].as_array().unwrap().len() <= 5);
    assert!(ps_status(name).ends_with("(unhealthy)"));

    let events = health_events(name);
    let steps: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["metadata"]["previous"].as_str().unwrap(),
                e["metadata"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps, [("starting", "healthy"), ("healthy", "unhealthy")]);
    assert_eq!(events[1]["outcome"], "failure");
    assert_eq!(ok(&["audit", "verify"]).code, 0);
}

#[test]
fn a_failing_check_makes_the_box_unhealthy_after_the_retries() {
    let name = "health-bad";
    let _rm = Remove(name);
    ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--health-cmd",
        "echo not ready >&2; exit 1",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "100000",
    ]);
    let health = wait_health(name, "unhealthy");
    assert!(health["failing_streak"].as_u64().unwrap() >= 2, "{health}");
    let log = health["log"].as_array().unwrap();
    assert!(log.len() >= 2 && log.len() <= 5, "{health}");
    assert!(
        log.iter()
            .all(|p| p["exit_code"] == 1 && p["output"] == "not ready\n"),
        "{health}"
    );
    assert!(ps_status(name).ends_with("(unhealthy)"));

    let events = health_events(name);
    assert_eq!(events.len(), 1, "one transition: {events:?}");
    assert_eq!(events[0]["metadata"]["previous"], "starting");
    assert_eq!(events[0]["metadata"]["status"], "unhealthy");
    assert_eq!(events[0]["outcome"], "failure");

    // It stays listed as unhealthy until stopped; then ps shows the exit, not the health.
    ok(&["stop", "-t", "0", name]);
    let line = {
        let ps = ok(&["ps", "-a"]).stdout;
        ps.lines().find(|l| l.contains(name)).unwrap().to_owned()
    };
    assert!(line.contains("Exited"), "{line}");
}
