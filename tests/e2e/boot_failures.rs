//! Boot failures explain themselves (issue 15): the error names the cause from the console,
//! a `--rm` box's console log is kept under `A3S_HOME/logs/`, and memory that cannot hold the
//! kernel and init is refused before boot with the number needed. Two failing boots in all,
//! each deterministic: a kernel panic (no init) and a guest-init `fatal:` line.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::support::{Run, TestEnv};

fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        crate::support::build_guest_init();
        TestEnv::new()
    })
}

/// The path after "console log kept at " in a start error.
fn kept_log(r: &Run) -> PathBuf {
    let rest = r
        .stderr
        .split("console log kept at ")
        .nth(1)
        .unwrap_or_else(|| panic!("no kept console log named:\n{}", r.stderr));
    PathBuf::from(rest.split_whitespace().next().unwrap())
}

fn no_box_named(name: &str) {
    let r = env().run(&["ps", "-a", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.json_lines()
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["Names"] != name),
        "box {name} was left behind: {}",
        r.stdout
    );
}

#[test]
fn a_kernel_panic_is_quoted_and_its_console_log_survives_rm() {
    // A later rdinit= overrides A3S Box's own: the kernel finds no init and panics.
    let r = env().run(&[
        "run",
        "--rm",
        "--name",
        "panics",
        "--kernel-arg",
        "rdinit=/nonexistent",
        "busybox",
        "true",
    ]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr.contains("the guest kernel panicked")
            && r.stderr
                .contains("Kernel panic - not syncing: VFS: Unable to mount root fs"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--kernel-arg"), "{}", r.stderr);
    let log = kept_log(&r);
    assert!(log.starts_with(env().path("logs")), "{}", log.display());
    assert!(log
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("panics-"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Kernel panic"), "{text}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log), 0o600);
    assert_eq!(mode(&env().path("logs")), 0o700);
    no_box_named("panics");
}

#[test]
fn a_guest_init_fatal_line_is_quoted() {
    // Without a NIC the host passes no a3s.net=, so this malformed one reaches guest-init.
    let r = env().run(&[
        "run",
        "--rm",
        "--name",
        "fatal",
        "--network",
        "none",
        "--kernel-arg",
        "a3s.net=garbage",
        "busybox",
        "true",
    ]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("a3s-guest-init: fatal: a3s.net: expected ADDR/PREFIX,GATEWAY"),
        "{}",
        r.stderr
    );
    assert!(std::fs::read_to_string(kept_log(&r))
        .unwrap()
        .contains("a3s-guest-init: fatal:"));
    no_box_named("fatal");
}

/// `--memory` is the workload's limit (Docker's), and the VM is sized to hold it beside the
/// guest's own share: a limit far below what the kernel needs to boot still runs (before, the
/// VM had only that much and was refused). Below Docker's 6 MiB minimum it is refused.
#[test]
fn a_tiny_memory_limit_boots_and_one_below_docker_s_minimum_is_refused() {
    for rm in [true, false] {
        let mut args = vec!["run", "--name", "tiny", "--memory", "4m"];
        if rm {
            args.push("--rm");
        }
        args.extend(["busybox", "true"]);
        let r = env().run(&args);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains("--memory 4194304 bytes is out of range")
                && r.stderr.contains("at least 6 MiB"),
            "{}",
            r.stderr
        );
        no_box_named("tiny");
    }
    let r = env().run(&[
        "run",
        "--rm",
        "--memory",
        "6m",
        "--memory-reservation",
        "6m",
        "--memory-swap",
        "6m",
        "busybox",
        "cat",
        "/sys/fs/cgroup/a3s-workload/memory.max",
        "/sys/fs/cgroup/a3s-workload/memory.low",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let six = (6 << 20).to_string();
    assert_eq!(
        r.stdout.split_whitespace().collect::<Vec<_>>(),
        [&six, &six]
    );
    // Docker's rules for the two against --memory: refused before anything exists (125, the
    // daemon's code for them).
    for (args, says) in [
        (&["--memory-swap", "64m"][..], "set --memory too"),
        (
            &["--memory", "64m", "--memory-swap", "32m"][..],
            "at least --memory",
        ),
        (
            &["--memory", "64m", "--memory-reservation", "128m"][..],
            "at most --memory",
        ),
    ] {
        let mut all = vec!["run", "--name", "tiny"];
        all.extend_from_slice(args);
        all.extend(["busybox", "true"]);
        let r = env().run(&all);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
        no_box_named("tiny");
    }
}
