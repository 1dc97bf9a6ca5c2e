//! `a3s-guest-init`, PID 1 in the MicroVM.
//!
//! The steps, in order ([`main`]):
//! 1. mount `/proc`, `/sys`, `/dev` (devtmpfs), `/dev/pts`, `/dev/shm`, `/run`, `/tmp`;
//! 2. load the kernel modules the host put in `/.a3s/modules/` (virtio-mmio on microvm), then
//!    delete the files (the initramfs keeps them in RAM);
//! 3. open the `a3s.ctl` virtio-serial port and say `Ready`;
//! 4. on `Start`: the root filesystem ([`rootfs`]: the image's erofs through dm-verity under an
//!    overlay on the box's writable disk, then switch root); hostname, `/etc/hosts`,
//!    `/etc/resolv.conf`; for TEE boxes the attestation
//!    agent ([`agent`]: evidence, KBS, secrets, RA-TLS, sealing) and only if it succeeds the
//!    workload (session 0) with its env, working directory and user;
//! 5. serve `Exec`, `Signal`, `Resize` and stdin frames; reap every zombie (we are PID 1);
//! 6. when the workload exits: send its exit code, wait for the host's `PowerOff` (at most 2 s)
//!    and power off.
//!
//! PID 1 must not return: any fatal error is written to the console and the VM powers off, so
//! the host sees QEMU exit instead of a kernel panic.

mod agent;
mod boot_steps;
mod channel;
mod clock;
mod container;
mod container_cgroup;
mod control;
mod copy;
mod dm;
mod init;
mod mounts;
mod net;
mod pid_ns;
mod pod_image;
mod process;
mod procs;
mod resume;
mod rootfs;
mod rwcrypt;
mod seccomp;
mod security;
mod supervised;
mod top;
mod workload_cgroup;

use std::time::Duration;

use anyhow::Context;

/// Whether this process runs as the workload's `a3s-guest` tool (argv[0] named so) rather than
/// as PID 1.
pub fn invoked_as_tool() -> bool {
    agent::tool::invoked_as_tool(std::env::args_os().next().as_ref())
}

/// Runs `a3s-guest seal|unseal` (TEE boxes install it as `/run/a3s/bin/a3s-guest`).
pub fn tool_main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    agent::tool::main(&args)
}

/// Runs init and powers off; never returns.
pub fn main() -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = copy::helper(&args) {
        std::process::exit(code);
    }
    if let Some(code) = pod_image::helper(&args) {
        std::process::exit(code);
    }
    pid_ns::helper(&args);
    if std::process::id() != 1 {
        eprintln!("a3s-guest-init: must run as PID 1 inside an A3S Box VM");
        std::process::exit(2);
    }
    if let Err(e) = run() {
        eprintln!("a3s-guest-init: fatal: {e:#}");
    }
    init::power_off(Duration::ZERO)
}

fn run() -> anyhow::Result<()> {
    clock::mark_start();
    boot_steps::start();
    init::mount_filesystems()?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    if resume::is_template(&cmdline) {
        return run_template();
    }
    init::load_modules(|_| true)?;
    init::drop_module_files();
    boot_steps::mark("modules");
    net::configure(&cmdline)?;
    boot_steps::mark("network");
    // Before Ready: a changed image (dm-verity) or a plain layer that does not mount fails
    // the boot, so `start` reports it. An encrypted layer needs the TEE's key, asked for
    // over the channel after Ready.
    let root = control::prepare_root(&cmdline)?;
    boot_steps::mark("root");
    let port = init::open_channel()?;
    control::serve(port, root)
}

/// A template VM (`a3s.template=1`, see `a3s_vmm::template`): everything that is the same
/// for every box, then `Ready`, and the host saves the VM here. A restored copy goes on at
/// `Resume`: fresh randomness and clock, the disk driver bound to the box's own disks, its
/// network and root filesystem from its own arguments, as on a cold boot.
fn run_template() -> anyhow::Result<()> {
    let deferred = |name: &str| resume::is_deferred_module(name);
    init::load_modules(|name| !deferred(name))?;
    net::up_for_template()?;
    let port = init::open_channel()?;
    let args = resume::wait(&port)?;
    init::load_modules(deferred)?;
    init::drop_module_files();
    boot_steps::mark("modules");
    net::readdress(&args)?;
    net::configure(&args)?;
    boot_steps::mark("network");
    let root = control::prepare_root(&args)?;
    boot_steps::mark("root");
    control::serve(port, root)
}
