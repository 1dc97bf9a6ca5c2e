//! Volumes, bind mounts and `cp` end to end (issue 9). Three VM boots in all: two short-lived
//! boxes for volume persistence and bind mounts, one running box shared by the `cp` assertions.

use std::path::Path;
use std::sync::OnceLock;

use crate::support::{Run, TestEnv};

fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        crate::support::build_guest_init();
        let env = TestEnv::new();
        // Import the embedded busybox once, before tests race to import it concurrently.
        let c = env.run(&["create", "--name", "vol-warm", "busybox", "true"]);
        assert_eq!(c.code, 0, "{}", c.stderr);
        env.run(&["rm", "vol-warm"]);
        env
    })
}

fn ok(args: &[&str]) -> Run {
    let r = env().run(args);
    assert_eq!(r.code, 0, "{args:?}: {}\n{}", r.stdout, r.stderr);
    r
}

/// virtiofsd processes whose command line mentions `needle` (a box id or a shared directory).
fn daemons_for(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("virtiofsd") && c.contains(needle))
        .count()
}

#[test]
fn bad_volume_forms_fail_before_boot_with_a_hint() {
    let missing = env().path("no-such-dir");
    let missing_spec = format!("{}:/x", missing.display());
    for (spec, needle) in [
        ("/data:bogus", "unknown option"),
        ("./rel:/x", "is not absolute"),
        ("vol:relative", "is not absolute"),
        ("vol:/x:rx", "unknown option"),
        ("/tmp:/x:nocopy", "named volumes only"),
        ("vol:/", "root directory"),
        (missing_spec.as_str(), "does not exist"),
    ] {
        let r = env().run(&["run", "--rm", "-v", spec, "busybox", "true"]);
        assert_eq!(r.code, 2, "{spec}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{spec}: {}", r.stderr);
        assert!(r.stderr.contains("hint:"), "{spec}: {}", r.stderr);
    }
    let r = env().run(&[
        "run", "--rm", "-v", "a1:/d", "-v", "a2:/d/", "busybox", "true",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("mounted twice"), "{}", r.stderr);
    // Nothing was created by the refused runs.
    assert!(!ok(&["volume", "ls"]).stdout.contains("a1"));
    let r = env().run(&["volume", "create", "-bad"]);
    assert_ne!(r.code, 0);
}

#[test]
fn a_named_volume_keeps_data_across_boxes_and_bind_mounts_share_host_files() {
    let bind = tempfile::tempdir().unwrap();
    std::fs::write(bind.path().join("host.txt"), "written-by-host\n").unwrap();
    let b = bind.path().display().to_string();
    let first = ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/data",
        "-v",
        &format!("{b}:/mnt/bind"),
        "busybox",
        "sh",
        "-c",
        "cat /mnt/bind/host.txt && echo written-by-guest > /mnt/bind/guest.txt && echo kept > /data/k.txt",
    ]);
    assert!(first.stdout.contains("written-by-host"), "{}", first.stdout);
    assert_eq!(
        std::fs::read_to_string(bind.path().join("guest.txt")).unwrap(),
        "written-by-guest\n"
    );

    // A second box sees the volume's data; a :ro bind mount refuses writes with EROFS.
    let second = ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/data",
        "-v",
        &format!("{b}:/mnt/ro:ro"),
        "busybox",
        "sh",
        "-c",
        "cat /data/k.txt; cat /mnt/ro/guest.txt; echo no > /mnt/ro/denied.txt; echo write-rc=$?",
    ]);
    assert!(second.stdout.contains("kept"), "{}", second.stdout);
    assert!(
        second.stdout.contains("written-by-guest"),
        "{}",
        second.stdout
    );
    assert!(second.stdout.contains("write-rc=1"), "{}", second.stdout);
    assert!(
        second.stderr.contains("Read-only file system")
            || second.stdout.contains("Read-only file system"),
        "{second:?}"
    );
    assert!(!bind.path().join("denied.txt").exists());

    let info = ok(&["volume", "inspect", "keep"]).json();
    let mountpoint = info[0]["mountpoint"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(Path::new(mountpoint).join("k.txt")).unwrap(),
        "kept\n"
    );
    assert_eq!(info[0]["name"], "keep");
    assert!(info[0]["created_at"].as_str().unwrap().contains('T'));
    assert_eq!(
        info[0]["used_by"].as_array().unwrap().len(),
        0,
        "--rm boxes are gone"
    );
    assert_eq!(daemons_for(&b), 0, "no virtiofsd outlives its box");
    assert_eq!(daemons_for(mountpoint), 0, "no virtiofsd outlives its box");
}

#[test]
fn cp_both_ways_on_a_running_box_then_volume_lifecycle() {
    let host = tempfile::tempdir().unwrap();
    let src = host.path().join("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha\n").unwrap();
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("sub/blob.bin"), &blob).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();

    let id = ok(&[
        "run", "-d", "--name", "vol-cp", "-v", "cpvol:/v", "busybox", "sleep", "600",
    ])
    .stdout
    .trim()
    .to_owned();
    assert!(daemons_for(&id) >= 1);

    // Host → box: a directory into an existing directory, a file under a new name.
    ok(&["cp", &src.display().to_string(), "vol-cp:/root"]);
    ok(&[
        "cp",
        &src.join("a.txt").display().to_string(),
        "vol-cp:/tmp/renamed.txt",
    ]);
    let ls = ok(&[
        "exec",
        "vol-cp",
        "sh",
        "-c",
        "cat /tmp/renamed.txt; readlink /root/tree/link; wc -c < /root/tree/sub/blob.bin",
    ]);
    assert_eq!(ls.stdout, "alpha\na.txt\n200000\n");

    // Box → host: the same tree comes back byte for byte.
    let out = host.path().join("out");
    std::fs::create_dir(&out).unwrap();
    ok(&["cp", "vol-cp:/root/tree", &out.display().to_string()]);
    assert_eq!(std::fs::read(out.join("tree/sub/blob.bin")).unwrap(), blob);
    assert_eq!(
        std::fs::read_to_string(out.join("tree/a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        std::fs::read_link(out.join("tree/link")).unwrap(),
        Path::new("a.txt")
    );
    ok(&[
        "cp",
        "vol-cp:/etc/hostname",
        &out.join("hn").display().to_string(),
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("hn")).unwrap().trim(),
        &id[..12]
    );
    let missing = env().run(&["cp", "vol-cp:/no/such", &out.display().to_string()]);
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("No such file"),
        "{}",
        missing.stderr
    );

    // Writes into the volume through cp land in the volume.
    ok(&[
        "cp",
        &src.join("a.txt").display().to_string(),
        "vol-cp:/v/from-cp.txt",
    ]);

    // In use by a running box: rm is refused; inspect shows the user.
    let r = env().run(&["volume", "rm", "cpvol"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr.contains("in use by box(es) vol-cp"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    // volume ls --format json is Docker's shape; inspect names the users.
    let ls = ok(&["volume", "ls", "--format", "json"]).json_lines();
    assert!(
        ls.as_array().unwrap().iter().any(|v| v["Name"] == "cpvol"),
        "{ls}"
    );
    let names = ok(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]).stdout;
    assert!(names.lines().any(|l| l == "local cpvol"), "{names}");
    let entry = &ok(&["volume", "inspect", "cpvol"]).json()[0];
    assert_eq!(entry["used_by"][0]["name"], "vol-cp");
    assert_eq!(entry["used_by"][0]["state"], "running");

    ok(&["stop", "-t", "0", "vol-cp"]);
    assert_eq!(daemons_for(&id), 0, "virtiofsd is reaped with the VM");

    // Stopped box: paths under its mounts are copied from and to the host directory behind
    // them; other paths live on its layer disk and go through a helper VM, as in Docker.
    ok(&[
        "cp",
        "vol-cp:/v/from-cp.txt",
        &out.join("back.txt").display().to_string(),
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("back.txt")).unwrap(),
        "alpha\n"
    );
    let stopped_out = host.path().join("stopped-out");
    std::fs::create_dir(&stopped_out).unwrap();
    ok(&[
        "cp",
        "vol-cp:/root/tree",
        &stopped_out.display().to_string(),
    ]);
    assert_eq!(
        std::fs::read(stopped_out.join("tree/sub/blob.bin")).unwrap(),
        blob,
        "what cp wrote into the running box is on its layer disk"
    );
    ok(&[
        "cp",
        &src.join("a.txt").display().to_string(),
        "vol-cp:/etc/added-while-stopped.txt",
    ]);
    let r = env().run(&["cp", "vol-cp:/no/such", &out.display().to_string()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("No such file"), "{}", r.stderr);
    // Each of the three went through a helper box, and each helper is gone again.
    let helpers = |action: &str| {
        ok(&["audit", "--action", action, "--format", "json"])
            .stdout
            .matches("cp on stopped box vol-cp")
            .count()
    };
    assert_eq!(helpers("box.create"), 3);
    assert_eq!(helpers("box.remove"), 3, "no helper box is left behind");
    ok(&["start", "vol-cp"]);
    let seen = ok(&["exec", "vol-cp", "cat", "/etc/added-while-stopped.txt"]).stdout;
    assert_eq!(
        seen, "alpha\n",
        "a copy into a stopped box is there at its next start"
    );
    ok(&["stop", "-t", "0", "vol-cp"]);

    // Still in use while the stopped box exists; --force overrides; prune keeps used volumes.
    let r = env().run(&["volume", "rm", "cpvol"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    ok(&["volume", "create", "idle-one"]);
    let pruned = ok(&["volume", "prune", "--all"]).stdout;
    assert!(pruned.contains("idle-one"), "{pruned}");
    assert!(!pruned.contains("cpvol"), "{pruned}");
    ok(&["rm", "vol-cp"]);
    ok(&["volume", "rm", "cpvol"]);
    assert!(!ok(&["volume", "ls"]).stdout.contains("cpvol"));
    let r = env().run(&["volume", "inspect", "cpvol"]);
    assert!(r.stderr.contains("no such volume"), "{}", r.stderr);

    // Every change is in the audit log.
    let audit = ok(&["audit", "--format", "json"]).stdout;
    for action in [
        "volume.create",
        "volume.remove",
        "volume.prune",
        "box.cp_in",
        "box.cp_out",
    ] {
        assert!(
            audit.contains(action),
            "{action} missing from the audit log"
        );
    }
    assert!(ok(&[
        "audit",
        "--outcome",
        "denied",
        "--action",
        "volume.remove",
        "--format",
        "json"
    ])
    .stdout
    .contains("cpvol"));
}

/// Names in a volume's host directory, sorted.
fn volume_files(name: &str) -> Vec<String> {
    let dir = env().path(&format!("volumes/{name}/_data"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_new_named_volume_is_filled_from_the_image_unless_nocopy() {
    // busybox's /sbin holds applet symlinks (`losetup -> /bin/busybox`).
    let r = ok(&["run", "--rm", "-v", "fill:/sbin", "busybox", "ls", "/sbin"]);
    assert!(r.stdout.lines().any(|l| l == "losetup"), "{}", r.stdout);
    let link = env().path("volumes/fill/_data/losetup");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("/bin/busybox"),
        "symlinks are copied as symlinks"
    );
    // An empty image directory still gives a new volume its owner and mode (Docker's copy-up):
    // busybox's /tmp is 1777, a fresh volume's directory 0755.
    let r = ok(&[
        "run",
        "--rm",
        "-v",
        "tmpfill:/tmp",
        "busybox",
        "stat",
        "-c",
        "%a %U",
        "/tmp",
    ]);
    assert_eq!(r.stdout.trim(), "1777 root", "{}", r.stdout);
    // A second box sees the files through the volume, wherever it mounts it.
    let r = ok(&["run", "--rm", "-v", "fill:/data", "busybox", "ls", "/data"]);
    assert!(r.stdout.lines().any(|l| l == "losetup"), "{}", r.stdout);

    // nocopy: the volume stays empty and hides the image's files.
    let r = ok(&[
        "run",
        "--rm",
        "-v",
        "bare:/sbin:nocopy",
        "busybox",
        "ls",
        "-A",
        "/sbin",
    ]);
    assert_eq!(r.stdout.trim(), "", "{}", r.stdout);
    assert!(volume_files("bare").is_empty());

    // A volume that already has files is never overwritten.
    ok(&["volume", "create", "kept"]);
    std::fs::write(env().path("volumes/kept/_data/mine"), "host\n").unwrap();
    let r = ok(&[
        "run",
        "--rm",
        "-v",
        "kept:/sbin",
        "busybox",
        "ls",
        "-A",
        "/sbin",
    ]);
    assert_eq!(r.stdout.trim(), "mine", "{}", r.stdout);
    assert_eq!(volume_files("kept"), ["mine"]);

    // :ro is filled too, and stays read-only for the workload.
    let r = env().run(&[
        "run",
        "--rm",
        "-v",
        "rofill:/sbin:ro",
        "busybox",
        "sh",
        "-c",
        "ls /sbin | grep -qx losetup && touch /sbin/new",
    ]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    assert!(volume_files("rofill").contains(&"losetup".to_owned()));
    assert!(!volume_files("rofill").contains(&"new".to_owned()));
}

/// Issue 20: anonymous volumes as Docker makes them (`-v /path`, `--mount type=volume` without
/// a source, an image's `VOLUME`). Own home: `volume prune` in other tests must not race these.
/// Three boots: two starts of one box, one `run --rm`.
#[test]
fn anonymous_volumes_belong_to_their_box() {
    crate::support::build_guest_init();
    let env = TestEnv::new();
    let ok = |args: &[&str]| {
        let r = env.run(args);
        assert_eq!(r.code, 0, "{args:?}: {}\n{}", r.stdout, r.stderr);
        r
    };
    let anonymous = |rows: &serde_json::Value| -> Vec<String> {
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|v| v["Labels"] == "com.docker.volume.anonymous=")
            .map(|v| v["Name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Created with the box, listed in Docker's shape, kept across restarts.
    ok(&[
        "create",
        "--name",
        "anon-a",
        "-v",
        "/data",
        "busybox",
        "sh",
        "-c",
        "echo run >> /data/runs; wc -l < /data/runs",
    ]);
    let ls = ok(&["volume", "ls", "--format", "json"]).json_lines();
    let names = anonymous(&ls);
    assert_eq!(names.len(), 1, "{ls}");
    let name = names[0].clone();
    assert_eq!(name.len(), 64);
    assert!(name.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
    let row = &ls[0];
    for (k, v) in [
        ("Driver", "local"),
        ("Scope", "local"),
        ("Availability", "N/A"),
        ("Group", "N/A"),
        ("Links", "N/A"),
        ("Size", "N/A"),
        ("Status", "N/A"),
    ] {
        assert_eq!(row[k], v, "{k} in {row}");
    }
    assert!(row["Mountpoint"]
        .as_str()
        .unwrap()
        .ends_with(&format!("{name}/_data")));
    let inspect = ok(&["volume", "inspect", &name]).json();
    assert_eq!(inspect[0]["anonymous"], true);
    assert_eq!(inspect[0]["used_by"][0]["name"], "anon-a");
    let mounts = ok(&["inspect", "anon-a"]).json()[0]["Mounts"].clone();
    assert_eq!(mounts[0]["Type"], "volume", "{mounts}");
    assert_eq!(mounts[0]["Name"], name.as_str(), "{mounts}");
    assert_eq!(mounts[0]["Destination"], "/data", "{mounts}");
    for _ in 0..2 {
        ok(&["start", "anon-a"]);
        assert_eq!(ok(&["wait", "anon-a"]).stdout.trim(), "0");
    }
    assert_eq!(ok(&["logs", "anon-a"]).stdout, "1\n2\n");

    // rm without -v leaves it dangling (Docker); prune removes dangling anonymous volumes
    // and keeps named ones.
    ok(&["volume", "create", "named-stays"]);
    ok(&["rm", "anon-a"]);
    assert_eq!(
        anonymous(&ok(&["volume", "ls", "--format", "json"]).json_lines()),
        [name.as_str()]
    );
    let pruned = ok(&["volume", "prune"]).stdout;
    assert_eq!(pruned.trim(), name, "{pruned}");
    let left = ok(&["volume", "ls", "--format", "json"]).json_lines();
    assert!(anonymous(&left).is_empty(), "{left}");
    assert_eq!(left[0]["Name"], "named-stays");
    assert_eq!(left[0]["Labels"], "");

    // An image's VOLUME gets an anonymous volume, filled from the image, unless a mount
    // targets the path; `rm -v` removes it with the box, `--rm` at the box's exit.
    ok(&["create", "--name", "anon-src", "busybox", "true"]);
    ok(&[
        "commit",
        "-c",
        "VOLUME [\"/etc\", \"/cache\"]",
        "anon-src",
        "anonimg:1",
    ]);
    ok(&["rm", "anon-src"]);
    ok(&["create", "--name", "anon-b", "anonimg:1", "true"]);
    ok(&[
        "create",
        "--name",
        "anon-c",
        "-v",
        "named-stays:/cache",
        "--mount",
        "type=volume,target=/opt",
        "anonimg:1",
        "true",
    ]);
    let c_mounts = ok(&["inspect", "anon-c"]).json()[0]["Mounts"].clone();
    let dests: Vec<&str> = c_mounts
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Destination"].as_str().unwrap())
        .collect();
    let mut sorted = dests.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["/cache", "/etc", "/opt"], "{c_mounts}");
    let cache = &c_mounts[dests.iter().position(|d| *d == "/cache").unwrap()];
    assert_eq!(
        cache["Name"], "named-stays",
        "the -v wins over the image's VOLUME"
    );
    assert_eq!(
        anonymous(&ok(&["volume", "ls", "--format", "json"]).json_lines()).len(),
        4
    );
    ok(&["rm", "-v", "anon-b", "anon-c"]);
    let after = ok(&["volume", "ls", "--format", "json"]).json_lines();
    assert!(anonymous(&after).is_empty(), "{after}");
    assert_eq!(
        after.as_array().unwrap().len(),
        1,
        "named volumes stay: {after}"
    );
    let run = ok(&[
        "run",
        "--rm",
        "anonimg:1",
        "sh",
        "-c",
        "test -s /etc/passwd && echo filled; mount | grep -c ' on /cache '",
    ]);
    assert_eq!(run.stdout, "filled\n1\n", "{}", run.stderr);
    let after = ok(&["volume", "ls", "--format", "json"]).json_lines();
    assert!(anonymous(&after).is_empty(), "--rm removed them: {after}");
    let audit = ok(&["audit", "--action", "volume.create", "--format", "json"]).stdout;
    assert!(audit.contains("anonymous, for the box"), "{audit}");
}
