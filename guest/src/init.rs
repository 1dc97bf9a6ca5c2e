//! Machine set-up: filesystems, modules, the channel device, names.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::mount::{mount, MsFlags};

use a3s_vmm::proto::{GuestSetup, PORT_NAME};

/// Mounts the pseudo filesystems a workload expects (shell equivalent in each comment).
pub(crate) fn mount_filesystems() -> anyhow::Result<()> {
    let none: Option<&str> = None;
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let table: [(&str, &str, MsFlags, Option<&str>); 7] = [
        ("proc", "/proc", nosuid, None), // mount -t proc proc /proc
        ("sysfs", "/sys", nosuid, None), // mount -t sysfs sysfs /sys
        ("devtmpfs", "/dev", MsFlags::MS_NOSUID, Some("mode=0755")), // mount -t devtmpfs dev /dev
        (
            "devpts",
            "/dev/pts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("gid=5,mode=620,ptmxmode=666"),
        ),
        ("tmpfs", "/dev/shm", nosuid, Some("mode=1777")),
        (
            "tmpfs",
            "/run",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        ),
        (
            "tmpfs",
            "/tmp",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        ),
    ];
    for (fstype, target, flags, data) in table {
        fs::create_dir_all(target).with_context(|| format!("creating {target}"))?;
        match mount(Some(fstype), target, Some(fstype), flags, data) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => return Err(e).with_context(|| format!("mounting {fstype} on {target}")),
        }
    }
    let _ = none;
    // ln -s /proc/self/fd /dev/fd (and friends), which devtmpfs does not provide.
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ] {
        if !Path::new(link).exists() {
            let _ = std::os::unix::fs::symlink(target, link);
        }
    }
    Ok(())
}

/// Where the host puts the guest kernel's modules in the initramfs.
const MODULES_DIR: &str = "/.a3s/modules";

/// Loads the modules in `/.a3s/modules/` whose name (without its `NN-` prefix and `.ko`)
/// `wanted` accepts, in name order (the host numbered them by dependency).
pub(crate) fn load_modules(wanted: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    let dir = Path::new(MODULES_DIR);
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if !wanted(&module_name(&path)) {
            continue;
        }
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        match nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            // A faster implementation for CPU instructions this VM lacks (AES-NI): the kernel
            // keeps its generic one.
            Err(nix::errno::Errno::ENODEV) => {
                eprintln!("a3s-guest-init: {} is not for this CPU", path.display());
            }
            // The host strips module signatures (a3s_vmm::module_signature); a kernel in
            // lockdown (firmware Secure Boot) or with module.sig_enforce refuses them.
            Err(e @ (nix::errno::Errno::EPERM | nix::errno::Errno::EKEYREJECTED)) => {
                return Err(e).with_context(|| {
                    format!(
                        "loading {}: the guest kernel requires signed modules (Secure Boot \
                         lockdown or module.sig_enforce); boot it without either",
                        path.display()
                    )
                })
            }
            Err(e) => return Err(e).with_context(|| format!("loading {}", path.display())),
        }
    }
    Ok(())
}

/// Removes `/.a3s/modules/` once every module is loaded: the initramfs has no backing store,
/// so the files (~2 MiB) would hold guest RAM, and host RAM, for the box's life.
pub(crate) fn drop_module_files() {
    let _ = fs::remove_dir_all(MODULES_DIR);
}

/// `virtio_blk` for `/.a3s/modules/04-virtio_blk.ko`.
fn module_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.split_once('-') {
        Some((n, name)) if n.bytes().all(|b| b.is_ascii_digit()) => name.to_owned(),
        _ => stem,
    }
}

/// Finds and opens the `a3s.ctl` virtio-serial port (waits up to 20 s for the device).
pub(crate) fn open_channel() -> anyhow::Result<File> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(dev) = find_port()? {
            if dev.exists() {
                return OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&dev)
                    .with_context(|| format!("opening {}", dev.display()));
            }
        }
        if Instant::now() > deadline {
            bail!("no virtio-serial port named {PORT_NAME} appeared (is virtio_console loaded?)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn find_port() -> anyhow::Result<Option<PathBuf>> {
    let Ok(entries) = fs::read_dir("/sys/class/virtio-ports") else {
        return Ok(None);
    };
    for entry in entries.filter_map(Result::ok) {
        let name = fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == PORT_NAME {
            return Ok(Some(Path::new("/dev").join(entry.file_name())));
        }
    }
    Ok(None)
}

/// Hostname, `/etc/hosts` and `/etc/resolv.conf`.
pub(crate) fn apply_setup(setup: &GuestSetup) -> anyhow::Result<()> {
    let hostname = if setup.hostname.is_empty() {
        "a3s-box"
    } else {
        &setup.hostname
    };
    nix::unistd::sethostname(hostname).context("setting the hostname")?;
    fs::create_dir_all("/etc").context("creating /etc")?;
    fs::write("/etc/hostname", format!("{hostname}\n")).context("writing /etc/hostname")?;
    let mut hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    for (name, addr) in &setup.hosts {
        hosts.push_str(&format!("{addr}\t{name}\n"));
    }
    fs::write("/etc/hosts", hosts).context("writing /etc/hosts")?;
    if !setup.nameservers.is_empty() {
        fs::write("/etc/resolv.conf", resolv_conf(setup)).context("writing /etc/resolv.conf")?;
    }
    Ok(())
}

/// `/etc/resolv.conf`: name servers, then the search domains and options, if any.
pub(crate) fn resolv_conf(setup: &GuestSetup) -> String {
    let mut conf: String = setup
        .nameservers
        .iter()
        .map(|n| format!("nameserver {n}\n"))
        .collect();
    for (key, values) in [
        ("search", &setup.dns_search),
        ("options", &setup.dns_options),
    ] {
        if !values.is_empty() {
            conf.push_str(&format!("{key} {}\n", values.join(" ")));
        }
    }
    conf
}

/// Held while PID 1 runs a helper of its own to completion, and by the reaper around each
/// reap: the reaper reaps every child (we are PID 1), and without this it could take the
/// helper's exit status before `Command::output` gets it.
pub(crate) static REAP_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `cmd` to completion with the reaper kept off its exit status.
///
/// # Errors
/// Spawning or waiting failed.
pub(crate) fn run_helper(cmd: &mut std::process::Command) -> std::io::Result<std::process::Output> {
    let _reap = REAP_LOCK
        .lock()
        .map_err(|_| std::io::Error::other("reap lock poisoned"))?;
    cmd.output()
}

/// Milliseconds since boot (`CLOCK_BOOTTIME`, the clock `/proc/uptime` shows in hundredths).
pub(crate) fn uptime_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1000
            + u64::try_from(t.tv_nsec()).unwrap_or(0) / 1_000_000
    })
}

/// Syncs and powers the VM off after `delay`. Never returns.
pub(crate) fn power_off(delay: Duration) -> ! {
    std::thread::sleep(delay);
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // reboot(2) only returns on failure; nothing else is left to do but wait.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod resolv_tests {
    use super::*;

    #[test]
    fn module_names_drop_the_order_prefix() {
        assert_eq!(
            module_name(Path::new("/.a3s/modules/04-virtio_blk.ko")),
            "virtio_blk"
        );
        assert_eq!(
            module_name(Path::new("/m/12-virtio_balloon.ko")),
            "virtio_balloon"
        );
        assert_eq!(module_name(Path::new("/m/plain.ko")), "plain");
    }

    #[test]
    fn resolv_conf_has_servers_then_search_and_options() {
        let mut s = GuestSetup {
            nameservers: vec!["10.96.0.10".into()],
            ..Default::default()
        };
        assert_eq!(resolv_conf(&s), "nameserver 10.96.0.10\n");
        s.dns_search = vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()];
        s.dns_options = vec!["ndots:5".into()];
        assert_eq!(
            resolv_conf(&s),
            "nameserver 10.96.0.10\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
        );
    }
}
