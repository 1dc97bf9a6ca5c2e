//! `version`, `info`, `--help` and argument errors.

use crate::support::TestEnv;

#[test]
fn version_prints_the_crate_version() {
    let env = TestEnv::new();
    let r = env.run(&["version"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r
        .stdout
        .starts_with(&format!("a3s-box {}", env!("CARGO_PKG_VERSION"))));
    let j = env.run(&["version", "--format", "json"]).json();
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn info_reports_host_capabilities() {
    let env = TestEnv::new();
    let j = env.run(&["info", "--format", "json"]).json();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(j["kernel"], kernel.trim());
    assert_eq!(j["home"], env.home.path().display().to_string());
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    let kvm = std::path::Path::new("/dev/kvm").exists();
    match (kvm, pvm) {
        (true, true) => {
            assert_eq!(j["kvm"], "pvm");
            assert_eq!(j["accel"], "tcg");
        }
        (false, _) => assert_eq!(j["kvm"], "absent"),
        _ => {}
    }
    assert_eq!(
        j["sev_snp_guest"]["sev_guest_device"],
        std::path::Path::new("/dev/sev-guest").exists()
    );
    // Root with /dev/net/tun: a tsi box's ports come in over its private link.
    let link = nix::unistd::geteuid().is_root() && std::path::Path::new("/dev/net/tun").exists();
    assert_eq!(j["network"]["publish_link"], link, "{j}");
    let text = env.run(&["info"]);
    assert!(text.stdout.contains("accelerator"), "{text:?}");
    let publish = if link { "private link" } else { "forwarder" };
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("published ports (tsi)") && l.contains(publish)),
        "{text:?}"
    );
    // KSM as the host has it.
    let (ksm, says) = match std::fs::read_to_string("/sys/kernel/mm/ksm/run") {
        Ok(r) if r.trim() == "1" => ("on", "on ("),
        Ok(_) => ("off", "off (echo 1 > /sys/kernel/mm/ksm/run"),
        Err(_) => ("unavailable", "not in this kernel"),
    };
    assert_eq!(j["memory_sharing"], ksm, "{j}");
    let row = text
        .stdout
        .lines()
        .find(|l| l.starts_with("memory sharing (KSM)"))
        .unwrap_or_else(|| panic!("no KSM row: {text:?}"));
    assert!(row.contains(says), "{row}");
}

#[test]
fn accel_override_is_reported_and_checked() {
    let env = TestEnv::new();
    let out = env
        .cmd()
        .args(["info", "--format", "json"])
        .env("A3S_BOX_ACCEL", "tcg")
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["accel"], "tcg");
    assert!(j["accel_reason"]
        .as_str()
        .unwrap()
        .contains("A3S_BOX_ACCEL"));
    let out = env
        .cmd()
        .args(["info", "--format", "json"])
        .env("A3S_BOX_ACCEL", "hvf")
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["accel"], serde_json::Value::Null);
    assert!(j["accel_reason"].as_str().unwrap().contains("hvf"));
}

#[test]
fn help_lists_commands_and_bad_arguments_exit_2() {
    let env = TestEnv::new();
    let r = env.run(&["--help"]);
    assert_eq!(r.code, 0);
    for cmd in ["version", "info", "attest"] {
        assert!(r.stdout.contains(cmd), "--help lacks {cmd}: {}", r.stdout);
    }
    let r = env.run(&["attest", "show"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--report"), "{r:?}");
}
