//! `a3s-box measure` against the independent `sev-snp-measure` (PyPI) on Debian's OVMF.

use std::process::Command;

use crate::support::{write_file, TestEnv};

const OVMF: &str = "/usr/share/OVMF/OVMF_CODE.fd";
const AMDSEV_SUFFIX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../attestation/tests/fixtures/measure/ovmf_AmdSev_suffix.bin"
);

fn reference(args: &[&str]) -> String {
    let out = Command::new("sev-snp-measure")
        .args(["--mode", "snp"])
        .args(args)
        .output()
        .expect("sev-snp-measure is not installed: run scripts/setup (pip install sev-snp-measure==0.0.13)");
    assert!(
        out.status.success(),
        "sev-snp-measure {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn measure_matches_sev_snp_measure() {
    assert!(
        std::path::Path::new(OVMF).exists(),
        "{OVMF} missing: run scripts/setup (apt install ovmf)"
    );
    let env = TestEnv::new();
    let kernel = write_file(env.home.path(), "vmlinuz", &vec![0x5a; 300_000]);
    let initrd = write_file(env.home.path(), "initrd", &vec![0xa5; 200_000]);
    let cases: Vec<Vec<&str>> = vec![
        vec!["--vcpus", "1", "--vcpu-type", "EPYC-v4", "--ovmf", OVMF],
        vec![
            "--vcpus",
            "4",
            "--vcpu-type",
            "EPYC-Milan",
            "--ovmf",
            OVMF,
            "--guest-features",
            "0x21",
        ],
        vec!["--vcpus", "2", "--vmm-type", "ec2", "--ovmf", OVMF],
        vec![
            "--vcpus",
            "2",
            "--vcpu-sig",
            "0xa10f10",
            "--ovmf",
            OVMF,
            "--output-format",
            "base64",
        ],
        vec![
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-Genoa",
            "--ovmf",
            AMDSEV_SUFFIX,
            "--kernel",
            &kernel,
            "--initrd",
            &initrd,
            "--append",
            "console=ttyS0 root=/dev/vda",
        ],
    ];
    for case in cases {
        let mut args = vec!["measure"];
        args.extend_from_slice(&case);
        let ours = env.run(&args);
        assert_eq!(ours.code, 0, "{case:?}: {ours:?}");
        assert_eq!(ours.stdout.trim(), reference(&case), "{case:?}");
    }
}

#[test]
fn measure_rejects_bad_input_clearly() {
    let env = TestEnv::new();
    let r = env.run(&[
        "measure",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-Nope",
        "--ovmf",
        AMDSEV_SUFFIX,
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("EPYC-Nope"), "{}", r.stderr);
    let r = env.run(&[
        "measure",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
        "--ovmf",
        "/nonexistent.fd",
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("/nonexistent.fd"), "{}", r.stderr);
}

/// The simulated microvm measurement: `--microvm-firmware` wraps qboot in the stand-in image;
/// sev-snp-measure, given the written stand-in as `--ovmf`, must agree, and every input matters.
#[test]
fn microvm_standin_measurement_matches_sev_snp_measure() {
    const QBOOT: &str = "/usr/share/qemu/qboot.rom";
    assert!(
        std::path::Path::new(QBOOT).exists(),
        "{QBOOT} missing: run scripts/setup (QEMU from bookworm-backports)"
    );
    let env = TestEnv::new();
    let kernel = write_file(env.home.path(), "vmlinux", &vec![0x11; 400_000]);
    let initrd = write_file(env.home.path(), "initrd", &vec![0x22; 100_000]);
    let standin = env.path("standin.fd").display().to_string();
    let ours = |vcpus: &str, append: &str| {
        let r = env.run(&[
            "measure",
            "--vcpus",
            vcpus,
            "--vcpu-type",
            "EPYC-Milan",
            "--microvm-firmware",
            QBOOT,
            "--write-standin",
            &standin,
            "--kernel",
            &kernel,
            "--initrd",
            &initrd,
            "--append",
            append,
        ]);
        assert_eq!(r.code, 0, "{r:?}");
        r.stdout.trim().to_owned()
    };
    let one = ours("1", "console=hvc0 a3s.image=sha256:00");
    let theirs = reference(&[
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-Milan",
        "--ovmf",
        &standin,
        "--kernel",
        &kernel,
        "--initrd",
        &initrd,
        "--append",
        "console=hvc0 a3s.image=sha256:00",
    ]);
    assert_eq!(one, theirs);
    assert_ne!(one, ours("2", "console=hvc0 a3s.image=sha256:00"));
    assert_ne!(one, ours("1", "console=hvc0 a3s.image=sha256:01"));

    let r = env.run(&[
        "measure",
        "--vcpus",
        "1",
        "--microvm-firmware",
        QBOOT,
        "--ovmf",
        OVMF,
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    let r = env.run(&["measure", "--vcpus", "1"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--ovmf"), "{}", r.stderr);
}
