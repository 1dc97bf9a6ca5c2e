//! The harness's reaper (issue 20): after a run, no box, monitor or QEMU of its homes is left.

use std::process::Command;

use crate::support::{processes_of, run_dir, Reaper};

#[test]
fn the_reaper_leaves_no_process_of_a_finished_runs_homes() {
    crate::support::build_guest_init();
    // A stand-in for a run's directory, inside this run's (so this run's reaper covers it if
    // the test fails), with two homes: one hidden like tempfile's, one not.
    let run = tempfile::Builder::new()
        .prefix("reap")
        .tempdir_in(run_dir())
        .unwrap();
    let homes = [run.path().join(".tmpHome"), run.path().join("plain")];
    let a3s = |home: &std::path::Path, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_a3s-box"))
            .env("A3S_HOME", home)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    for home in &homes {
        std::fs::create_dir_all(home).unwrap();
        a3s(
            home,
            &["run", "-d", "--name", "left", "busybox", "sleep", "1000"],
        );
    }
    // A box left paused and one only created count too.
    a3s(&homes[0], &["pause", "left"]);
    a3s(&homes[1], &["create", "--name", "idle", "busybox", "true"]);
    let before = processes_of(run.path());
    assert!(
        before.iter().filter(|p| p.contains("qemu-system")).count() == 2,
        "two QEMUs expected: {before:#?}"
    );

    Reaper::start(run.path()).unwrap().finish().unwrap();

    let after = processes_of(run.path());
    assert!(after.is_empty(), "survivors: {after:#?}");
    for home in &homes {
        assert_eq!(
            a3s(home, &["ps", "-aq"]),
            "",
            "boxes left in {}",
            home.display()
        );
    }
    let qemus = Command::new("pgrep")
        .args(["-f", &format!("qemu-system.*{}", run.path().display())])
        .output()
        .unwrap();
    assert!(
        qemus.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&qemus.stdout)
    );
}
