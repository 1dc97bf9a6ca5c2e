//! Issue 22: plain boxes start from a saved VM (`a3s_vmm::template`). A restored box must be
//! like a cold one: its own random state, boot id, hostname, environment and root
//! filesystem; a changed, mismatched or unloadable template is never used (cold boot, reason
//! recorded); a confidential box always boots cold.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::support::TestEnv;

/// What a box reports about itself, one item per line.
const SCRIPT: &str = "head -c16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; \
     cat /proc/sys/kernel/random/boot_id; hostname; echo \"$WHO\"; \
     cat /mine 2>/dev/null || echo none; echo \"$WHO\" > /mine";

#[derive(Debug, PartialEq, Eq)]
struct Report {
    random: String,
    boot_id: String,
    hostname: String,
    who: String,
    /// What `/mine` held before this run wrote it.
    mine: String,
}

fn run_box(env: &TestEnv, name: &str, extra_env: &[(&str, &str)]) -> Report {
    let who = format!("who-{name}");
    let host = format!("host-{name}");
    let mut cmd = env.cmd();
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd
        .args(["run", "--name", name, "--hostname", &host])
        .args(["-e", &format!("WHO={who}"), "busybox", "sh", "-c", SCRIPT])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{name}: {out:?}");
    parse(&stdout)
}

fn parse(stdout: &str) -> Report {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    Report {
        random: lines[0].into(),
        boot_id: lines[1].into(),
        hostname: lines[2].into(),
        who: lines[3].into(),
        mine: lines[4].into(),
    }
}

fn boot(env: &TestEnv, name: &str) -> serde_json::Value {
    env.run(&["inspect", name]).json()[0]["boot"].clone()
}

/// `inspect` gives the start's phases in order and the guest's own steps inside `vm_boot`
/// (or `vm_restore`), which fit in the guest's uptime and that in the boot's wall time; and
/// where the end of the run went, from the workload's start to the recorded exit.
fn assert_run_accounted(env: &TestEnv, name: &str, restored: bool) {
    let rec = env.run(&["inspect", name]).json()[0].clone();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("{name}: no list in {rec}"))
            .iter()
            .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let vm = if restored { "vm_restore" } else { "vm_boot" };
    assert_eq!(
        names(&rec["timings"]),
        [
            "prepare",
            "spawn_monitor",
            "plan",
            "network",
            vm,
            "guest_setup"
        ],
        "{name}"
    );
    assert_eq!(
        names(&rec["stop_timings"]),
        ["workload", "vm_stop"],
        "{name}"
    );
    let boot = &rec["boot"];
    let first = if restored { "resume" } else { "kernel" };
    assert_eq!(
        names(&boot["guest_steps"]),
        [first, "modules", "network", "root"],
        "{name}"
    );
    let steps: Vec<u64> = boot["guest_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ms"].as_u64().unwrap())
        .collect();
    if !restored {
        let uptime = boot["guest_uptime_ms"].as_u64().unwrap();
        assert!(steps[0] > 0, "{name}: the kernel booted in no time: {boot}");
        assert!(steps.iter().sum::<u64>() <= uptime, "{name}: {boot}");
        assert!(uptime < boot["boot_ms"].as_u64().unwrap(), "{name}: {boot}");
    }
}

fn templates(env: &TestEnv) -> Vec<PathBuf> {
    let dir = env.path("cache/templates");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn restored_boxes_are_like_cold_ones() {
    let env = TestEnv::new();
    let a = run_box(&env, "restore-a", &[]);
    let b = run_box(&env, "restore-b", &[]);
    let cold = run_box(&env, "restore-cold", &[("A3S_BOX_RESTORE", "off")]);
    let (ba, bb) = (boot(&env, "restore-a"), boot(&env, "restore-b"));
    assert_eq!(ba["restored"], true, "{ba}");
    assert!(
        ba["template_ms"].as_u64().is_some(),
        "the first start made it: {ba}"
    );
    assert_eq!(bb["restored"], true, "{bb}");
    assert!(bb["template_ms"].is_null(), "the second reused it: {bb}");
    let bc = boot(&env, "restore-cold");
    assert_eq!(bc["restored"], false, "{bc}");
    assert!(
        bc["cold_reason"]
            .as_str()
            .unwrap()
            .contains("A3S_BOX_RESTORE=off"),
        "{bc}"
    );
    assert_eq!(templates(&env).len(), 1, "both boxes restored one template");
    // Each start says where its time went, cold or restored.
    assert_run_accounted(&env, "restore-cold", false);
    assert_run_accounted(&env, "restore-b", true);

    // Fresh randomness and identity in each box restored from the one template.
    assert_eq!(a.random.len(), 32, "{a:?}");
    assert_ne!(
        a.random, b.random,
        "two restores drew the same random bytes"
    );
    assert_ne!(a.boot_id, b.boot_id, "two restores share a boot id");
    assert_ne!(a.boot_id, cold.boot_id);
    // Their own hostname and environment.
    assert_eq!(
        (a.hostname.as_str(), a.who.as_str()),
        ("host-restore-a", "who-restore-a")
    );
    assert_eq!(
        (b.hostname.as_str(), b.who.as_str()),
        ("host-restore-b", "who-restore-b")
    );
    // Their own root filesystem: what a wrote is not in b (nor in a cold box) ...
    assert_eq!(a.mine, "none");
    assert_eq!(b.mine, "none", "b sees a's write");
    assert_eq!(cold.mine, "none");
    // ... and is still in a when it starts again (restored again, on its own disk).
    let again = env.run(&["start", "-a", "restore-a"]);
    assert_eq!(again.code, 0, "{again:?}");
    let again = parse(&again.stdout);
    assert_eq!(again.mine, "who-restore-a", "a's own write is gone");
    assert_ne!(again.random, a.random);
    assert_ne!(again.boot_id, a.boot_id);
    assert_eq!(boot(&env, "restore-a")["restored"], true);

    // A cold box and a restored one look the same from inside (shape of the report) and
    // in how they exit.
    assert_eq!(cold.hostname, "host-restore-cold");
    assert_eq!(cold.who, "who-restore-cold");
    env.run(&["rm", "-f", "restore-a", "restore-b", "restore-cold"]);
}

/// Rewrites the template record's idea of the state file to the file as it is now, so the
/// record check passes and only QEMU can tell the file is wrong.
fn forge_record(template: &std::path::Path) {
    let meta_path = template.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    let m = std::fs::metadata(template.join("state")).unwrap();
    meta["state"] = serde_json::json!({
        "dev": m.dev(),
        "ino": m.ino(),
        "len": m.len(),
        "mtime_ns": i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        "ctime_ns": i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    });
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
}

#[test]
fn a_changed_mismatched_or_unloadable_template_falls_back_to_a_cold_boot() {
    let env = TestEnv::new();
    let run = |name: &str| {
        let r = env.run(&["run", "--name", name, "busybox", "echo", "ran"]);
        assert_eq!(r.code, 0, "{name}: {r:?}");
        assert_eq!(r.stdout.trim(), "ran", "{name}");
        boot(&env, name)
    };
    assert_eq!(run("tpl-1")["restored"], true);
    let [template] = templates(&env).try_into().unwrap();

    // A changed state file: not used, removed, the box boots cold and says why.
    std::fs::OpenOptions::new()
        .append(true)
        .open(template.join("state"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"tampered"))
        .unwrap();
    let b = run("tpl-2");
    assert_eq!(b["restored"], false, "{b}");
    assert!(
        b["cold_reason"]
            .as_str()
            .unwrap()
            .contains("the state file changed"),
        "{b}"
    );
    assert!(!template.exists(), "the changed template was left behind");

    // The next start makes it anew.
    let b = run("tpl-3");
    assert_eq!(b["restored"], true, "{b}");
    assert!(b["template_ms"].as_u64().is_some(), "{b}");

    // A record for another kernel/initrd/QEMU (what a stale template looks like).
    let [template] = templates(&env).try_into().unwrap();
    let meta_path = template.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["key"] = serde_json::json!("0".repeat(32));
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let b = run("tpl-4");
    assert_eq!(b["restored"], false, "{b}");
    assert!(
        b["cold_reason"]
            .as_str()
            .unwrap()
            .contains("another kernel"),
        "{b}"
    );

    // A state file QEMU cannot load, with a record that matches it: QEMU refuses, the box
    // boots cold and the template is removed.
    assert_eq!(run("tpl-5")["restored"], true);
    let [template] = templates(&env).try_into().unwrap();
    let state = template.join("state");
    let len = std::fs::metadata(&state).unwrap().len();
    std::fs::write(
        &state,
        vec![0x5a; usize::try_from(len.min(1 << 20)).unwrap()],
    )
    .unwrap();
    forge_record(&template);
    let b = run("tpl-6");
    assert_eq!(b["restored"], false, "{b}");
    let reason = b["cold_reason"].as_str().unwrap();
    assert!(reason.contains("restoring the saved VM"), "{b}");
    assert!(!template.exists(), "QEMU refused it, yet it stays");
    assert_eq!(run("tpl-7")["restored"], true);
    env.run(&[
        "rm", "-f", "tpl-1", "tpl-2", "tpl-3", "tpl-4", "tpl-5", "tpl-6", "tpl-7",
    ]);
}

#[test]
fn a_box_that_fails_its_own_set_up_fails_as_cold_and_keeps_the_template() {
    let env = TestEnv::new();
    let r = env.run(&["run", "--name", "own-1", "busybox", "true"]);
    assert_eq!(r.code, 0, "{r:?}");
    let [template] = templates(&env).try_into().unwrap();
    // The image's erofs superblock changed: dm-verity refuses it in the restored guest.
    let image = std::fs::read_dir(env.path("images/v1/rootfs"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "erofs"))
        .unwrap();
    let original = std::fs::read(&image).unwrap();
    let mut changed = original.clone();
    changed[1024 + 40] ^= 1;
    std::fs::write(&image, &changed).unwrap();
    let r = env.run(&["run", "--rm", "busybox", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("dm-verity"), "{}", r.stderr);
    assert!(
        template.join("meta.json").exists(),
        "a box's failure removed the template"
    );
    std::fs::write(&image, &original).unwrap();
    let r = env.run(&["run", "--name", "own-2", "busybox", "true"]);
    assert_eq!(r.code, 0, "{r:?}");
    let b = boot(&env, "own-2");
    assert_eq!(b["restored"], true, "{b}");
    assert!(
        b["template_ms"].is_null(),
        "the template was made again: {b}"
    );
    env.run(&["rm", "-f", "own-1", "own-2"]);
}

#[test]
fn a_confidential_box_always_boots_cold() {
    let env = TestEnv::new();
    let r = env.run(&[
        "run",
        "--name",
        "tpl-tee",
        "--tee-simulate",
        "busybox",
        "true",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let b = boot(&env, "tpl-tee");
    assert_eq!(b["restored"], false, "{b}");
    assert!(templates(&env).is_empty(), "a TEE start made a template");
    env.run(&["rm", "-f", "tpl-tee"]);
}

/// A box's output and its `.boot`, through `cmd` (which may carry extra environment).
fn run_in(
    env: &TestEnv,
    mut cmd: std::process::Command,
    name: &str,
) -> (String, serde_json::Value) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{name}: {out:?}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        boot(env, name),
    )
}

#[test]
fn boxes_with_volumes_restore_and_see_only_their_own_directories() {
    let env = TestEnv::new();
    let (one, two) = (env.path("vol-one"), env.path("vol-two"));
    for (dir, file) in [(&one, "one.txt"), (&two, "two.txt")] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), file).unwrap();
    }
    let volume = |dir: &PathBuf, opts: &str| format!("{}:/data{opts}", dir.display());
    let mut cmd = env.cmd();
    cmd.args(["run", "--name", "vol-a", "-v", &volume(&one, "")])
        .args(["busybox", "sh", "-c", "ls /data; echo a > /data/from-a"]);
    let (out, a) = run_in(&env, cmd, "vol-a");
    assert_eq!(out.trim(), "one.txt", "{out}");
    assert_eq!(std::fs::read_to_string(one.join("from-a")).unwrap(), "a\n");
    assert_eq!(a["restored"], true, "{a}");
    assert!(a["template_ms"].as_u64().is_some(), "{a}");

    // Another box with as many volumes restores the same template with its own directory,
    // read-only as asked.
    let mut cmd = env.cmd();
    cmd.args(["run", "--name", "vol-b", "-v", &volume(&two, ":ro")])
        .args([
            "busybox",
            "sh",
            "-c",
            "ls /data; echo b > /data/x || echo refused",
        ]);
    let (out, b) = run_in(&env, cmd, "vol-b");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["two.txt", "refused"],
        "{out}"
    );
    assert!(!two.join("x").exists());
    assert_eq!(b["restored"], true, "{b}");
    assert!(
        b["template_ms"].is_null(),
        "the template was made again: {b}"
    );
    // A template keeps its saved VM and none of its own shares' directories, sockets, pid
    // files or daemon logs.
    for t in templates(&env) {
        let names: Vec<String> = std::fs::read_dir(&t)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "state"), "{names:?}");
        assert!(
            !names.iter().any(|n| n.starts_with("fs")),
            "{}: {names:?}",
            t.display()
        );
    }

    // A template that cannot be made (here: a virtiofsd that refuses the template's own
    // shares) is recorded, and the next start boots cold at once instead of trying again.
    let real = ["/usr/local/bin/virtiofsd", "/usr/libexec/virtiofsd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("virtiofsd (scripts/setup installs it)");
    std::fs::create_dir_all(env.path("bin")).unwrap();
    let wrapper = crate::support::write_file(
        &env.path("bin"),
        "virtiofsd",
        format!(
            "#!/bin/sh\ncase \"$*\" in *cache/templates/*) echo 'no template here' >&2; \
             exit 1;; esac\nexec {real} \"$@\"\n"
        )
        .as_bytes(),
    );
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cold = |name: &str| {
        let mut cmd = env.cmd();
        cmd.env("A3S_VIRTIOFSD", &wrapper)
            .args(["run", "--name", name, "-v", &volume(&one, "")])
            .args(["busybox", "cat", "/data/one.txt"]);
        let (out, b) = run_in(&env, cmd, name);
        assert_eq!(out, "one.txt", "{name}");
        assert_eq!(b["restored"], false, "{b}");
        b["cold_reason"].as_str().unwrap_or_default().to_owned()
    };
    let first = cold("vol-c");
    assert!(
        first.contains("making the template") && first.contains("virtiofsd"),
        "{first}"
    );
    let second = cold("vol-d");
    assert!(
        second.contains("making the template failed") && second.contains("tried again"),
        "the second start tried again: {second}"
    );
    env.run(&["rm", "-f", "vol-a", "vol-b", "vol-c", "vol-d"]);
}
