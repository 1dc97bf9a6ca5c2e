//! Console logs in `console/` were captured from real failing boots of the busybox image under
//! QEMU 10 TCG with the 6.12 cloud kernel (see each test); QEMU lines are its real stderr.

use super::*;

const PANIC_RDINIT: &str = include_str!("console/panic-rdinit.log");
const GUEST_INIT_FATAL: &str = include_str!("console/guest-init-fatal.log");
const OOM_KILLER: &str = include_str!("console/oom-killer.log");
const UNPACK_PANIC: &str = include_str!("console/initramfs-write-error-panic.log");
const UNPACK_NO_PORT: &str = include_str!("console/initramfs-write-error-no-port.log");
const HEALTHY: &str = include_str!("console/healthy-boot.log");

#[test]
fn a_panic_after_a_missing_init_names_the_panic() {
    // `--kernel-arg rdinit=/nonexistent`: the kernel finds no init and panics.
    let d = diagnose(PANIC_RDINIT, "").expect("diagnosed");
    assert_eq!(d.cause, Cause::KernelPanic);
    assert!(d
        .lines
        .iter()
        .any(|l| l
            == "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"));
    assert!(
        d.to_string().starts_with("the guest kernel panicked: "),
        "{d}"
    );
    assert!(d.hint.contains("--kernel-arg"));
}

#[test]
fn a_guest_init_fatal_line_is_quoted() {
    // `--network none --kernel-arg a3s.net=garbage`.
    let d = diagnose(GUEST_INIT_FATAL, "").expect("diagnosed");
    assert_eq!(d.cause, Cause::GuestInit);
    assert_eq!(
        d.lines,
        ["a3s-guest-init: fatal: a3s.net: expected ADDR/PREFIX,GATEWAY"]
    );
}

#[test]
fn the_oom_killer_is_out_of_memory() {
    // Four 80 MB `tail`s in a 256 MiB box.
    let d = diagnose(OOM_KILLER, "").expect("diagnosed");
    assert_eq!(d.cause, Cause::OutOfMemory);
    assert_eq!(d.lines.len(), 2);
    assert!(d.lines[0].starts_with("Out of memory: Killed process 133 (tail)"));
    assert!(d.hint.contains("raise --memory"));
}

#[test]
fn an_initramfs_that_does_not_fit_is_memory_even_when_a_panic_follows() {
    // busybox at -m 96: the unpacker fills its tmpfs, then init dies.
    let d = diagnose(UNPACK_PANIC, "").expect("diagnosed");
    assert_eq!(d.cause, Cause::OutOfMemory);
    assert_eq!(d.lines, ["Initramfs unpacking failed: write error"]);
    // busybox at -m 104: guest-init starts from a partial tree and fails; the root cause wins.
    let d = diagnose(UNPACK_NO_PORT, "").expect("diagnosed");
    assert_eq!(d.cause, Cause::OutOfMemory);
}

#[test]
fn qemus_initrd_too_large_is_memory() {
    let qemu = "qemu: initrd is too large, cannot support.(max: 41779199, need 62084032)\n";
    let d = diagnose("", qemu).expect("diagnosed");
    assert_eq!(d.cause, Cause::OutOfMemory);
    assert!(d.lines[0].contains("need 62084032"));
}

#[test]
fn other_qemu_errors_are_quoted() {
    let qemu = "qemu: could not open kernel file '/nonexistent': No such file or directory\n";
    let d = diagnose("", qemu).expect("diagnosed");
    assert_eq!(d.cause, Cause::Qemu);
    let qemu = "qemu-system-x86_64: -m 99999999: Parameter 'size' expects a non-negative number\n";
    assert_eq!(diagnose("", qemu).expect("diagnosed").cause, Cause::Qemu);
}

#[test]
fn a_verity_failure_beats_the_panic_it_causes() {
    // The kernel's format: "%s: %s block %llu is corrupted" (drivers/md/dm-verity-target.c).
    let console = "[    3.100000] device-mapper: verity: 254:0: data block 17 is corrupted\n\
                   a3s-guest-init: fatal: mounting the root filesystem: Input/output error\n";
    let d = diagnose(console, "").expect("diagnosed");
    assert_eq!(d.cause, Cause::Verity);
    assert_eq!(
        d.lines,
        ["device-mapper: verity: 254:0: data block 17 is corrupted"]
    );
    assert!(d.hint.contains("a3s-box rmi"));
}

#[test]
fn a_healthy_console_and_benign_fatal_words_say_nothing() {
    // "PCI: Fatal: No config space access function found" is printed by every microvm boot.
    assert_eq!(diagnose(HEALTHY, ""), None);
    assert_eq!(diagnose("", ""), None);
}

#[test]
fn timestamps_are_stripped_and_lines_deduplicated() {
    assert_eq!(
        strip_timestamp("[    2.430387] Kernel panic"),
        "Kernel panic"
    );
    assert_eq!(strip_timestamp("[not a stamp] x"), "[not a stamp] x");
    let twice = "a3s-guest-init: fatal: x\na3s-guest-init: fatal: x\n";
    assert_eq!(diagnose(twice, "").expect("diagnosed").lines.len(), 1);
}
