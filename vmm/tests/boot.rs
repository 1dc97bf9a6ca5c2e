//! Boots one real VM under the host's accelerator (TCG here) from a busybox root filesystem on
//! verified block devices (erofs + dm-verity made with the Debian tools, an ext4 writable layer)
//! and drives guest-init through the channel. Needs the kernel, erofs-utils and cryptsetup-bin
//! (`scripts/setup`) and a static guest-init (`scripts/build-guest-init`).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use a3s_vmm::accel;
use a3s_vmm::assets::{self, KernelDir};
use a3s_vmm::disk::{self, Disk, LayerFormat};
use a3s_vmm::proto::{Frame, GuestMsg, GuestSetup, HostMsg, Kind, ProcessSpec};
use a3s_vmm::qemu::{kernel_cmdline, Machine, Vm, VmConfig};

fn busybox_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "hostname", "id", "pwd", "sleep"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

/// `mkfs.erofs` + `veritysetup format` of `tree` into `out`: (data blocks, root hash).
fn verified_erofs(tree: &Path, out: &Path) -> (u64, String) {
    let ok = std::process::Command::new("mkfs.erofs")
        .arg("--quiet")
        .arg(out)
        .arg(tree)
        .status()
        .unwrap();
    assert!(ok.success(), "mkfs.erofs failed");
    let blocks = std::fs::metadata(out).unwrap().len() / 4096;
    let v = std::process::Command::new("veritysetup")
        .args(["format", "--no-superblock", "--salt=-"])
        .arg(format!("--data-blocks={blocks}"))
        .arg(format!("--hash-offset={}", blocks * 4096))
        .arg(out)
        .arg(out)
        .output()
        .unwrap();
    assert!(v.status.success(), "veritysetup failed");
    let stdout = String::from_utf8(v.stdout).unwrap();
    let hash = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap()
        .trim()
        .to_owned();
    (blocks, hash)
}

/// The static guest-init, built with `scripts/build-guest-init` if it is not there yet.
fn guest_init() -> PathBuf {
    if let Ok(p) = assets::locate_guest_init() {
        return p;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-guest-init");
    let status = std::process::Command::new(script).status().unwrap();
    assert!(status.success(), "scripts/build-guest-init failed");
    assets::locate_guest_init().unwrap()
}

struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    code: Option<i32>,
}

fn collect(vm: &Vm, session: u32) -> Output {
    let mut out = Output {
        stdout: vec![],
        stderr: vec![],
        code: None,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(f) = vm.recv_timeout(Duration::from_millis(200)).unwrap() else {
            continue;
        };
        if f.session != session {
            continue;
        }
        match f.kind {
            Kind::Stdout => out.stdout.extend(&f.payload),
            Kind::Stderr => out.stderr.extend(&f.payload),
            Kind::Control => {
                if let GuestMsg::Exited { code } = f.message().unwrap() {
                    out.code = Some(code);
                    return out;
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn boots_busybox_runs_workload_and_exec_and_reports_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let home_kernels = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".a3s/kernels"))
        .unwrap();
    let kernel = KernelDir::locate(&[home_kernels]).unwrap();
    let machine = Machine::from_env().unwrap();
    let init = guest_init();
    let modules = [machine.guest_modules(), disk::GUEST_MODULES].concat();
    let base = assets::base_initrd(&cache, &kernel, &init, &modules, &[]).unwrap();
    let rootfs = tmp.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let root_image = tmp.path().join("root.erofs");
    let (blocks, root_hash) = verified_erofs(&rootfs, &root_image);
    let layer = tmp.path().join("rw.img");
    disk::create_layer(&layer, 256 << 20, LayerFormat::Ext4).unwrap();
    let accel = accel::choose(accel::probe_kvm(Path::new("/")), None)
        .unwrap()
        .accel;
    let config = VmConfig {
        accel,
        machine,
        mem_mib: 256,
        vcpus: 1,
        kernel: kernel.vmlinux(&cache).unwrap(),
        initrd: base.path,
        cmdline: kernel_cmdline(
            accel,
            None,
            &[
                format!("{}={blocks},{root_hash}", disk::ROOT_ARG),
                format!("{}=ext4", disk::RW_ARG),
            ],
        ),
        channel_socket: tmp.path().join("ctl.sock"),
        qmp_socket: None,
        console_log: tmp.path().join("console.log"),
        qemu_log: tmp.path().join("qemu.log"),
        boot_cpu_budget_secs: 20,
        boot_timeout_secs: 120,
        boot_attempts: 3,
        tcg_tb_mib: a3s_vmm::tcg::tb_mib_from_env().unwrap(),
        huge_pages: false,
        mergeable: true,
        incoming: false,
        net: None,
        disks: vec![
            Disk {
                path: root_image,
                readonly: true,
                serial: disk::ROOT_SERIAL.into(),
            },
            Disk {
                path: layer,
                readonly: false,
                serial: disk::RW_SERIAL.into(),
            },
        ],
        shares: vec![],
        snp: None,
        balloon: true,
    };
    let mut vm = Vm::start(&config).unwrap_or_else(|e| {
        panic!(
            "{e}: console: {}",
            std::fs::read_to_string(&config.console_log).unwrap_or_default()
        )
    });
    eprintln!("boot: {:?} accel {accel:?}", vm.boot);

    let start = HostMsg::Start {
        setup: GuestSetup {
            hostname: "tbox".into(),
            ..Default::default()
        },
        process: ProcessSpec {
            argv: vec!["sh".into(), "-c".into(), "sleep 30".into()],
            ..Default::default()
        },
        tee: None,
        clock: None,
        security: None,
    };
    vm.send(&Frame::control(0, &start).unwrap()).unwrap();

    let exec = |session: u32, argv: &[&str], user: Option<&str>| {
        let msg = HostMsg::Exec {
            process: ProcessSpec {
                argv: argv.iter().map(|s| (*s).to_owned()).collect(),
                env: vec!["GREETING=hello there".into()],
                user: user.map(str::to_owned),
                workdir: Some("/tmp/work".into()),
                ..Default::default()
            },
        };
        vm.send(&Frame::control(session, &msg).unwrap()).unwrap();
        collect(&vm, session)
    };
    let o = exec(
        1,
        &[
            "sh",
            "-c",
            "echo $GREETING; echo err >&2; hostname; pwd; exit 7",
        ],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello there\ntbox\n/tmp/work\n"
    );
    assert_eq!(o.stderr, b"err\n");
    assert_eq!(o.code, Some(7));
    let o = exec(2, &["id", "-u"], Some("nobody"));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "65534\n");
    let o = exec(3, &["no-such-command"], None);
    assert_eq!(o.code, Some(127));

    // Signal the workload: sh dies of SIGTERM → 128 + 15, then the guest powers off.
    vm.send(&Frame::control(0, &HostMsg::Signal { signal: 9 }).unwrap())
        .unwrap();
    let o = collect(&vm, 0);
    assert_eq!(o.code, Some(128 + 9));
    vm.send(&Frame::control(0, &HostMsg::PowerOff).unwrap())
        .unwrap();
    // It says its disks are synced (the host may kill it from then on), then powers off.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no Synced from the guest");
        if let Some(f) = vm.recv_timeout(Duration::from_millis(100)).unwrap() {
            if f.kind == Kind::Control && matches!(f.message::<GuestMsg>(), Ok(GuestMsg::Synced)) {
                break;
            }
        }
    }
    while vm.try_wait().is_none() {
        assert!(Instant::now() < deadline, "guest did not power off");
        std::thread::sleep(Duration::from_millis(50));
    }
}
