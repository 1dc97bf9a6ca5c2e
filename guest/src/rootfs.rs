//! The box's root filesystem: the image's read-only erofs, opened through dm-verity against
//! the root hash on the kernel command line, under an overlay whose upper layer lives on the
//! box's own disk; then PID 1 switches into it (what `switch_root` does).
//!
//! ```text
//! a3s-root (virtio-blk, ro) ─ dm-verity "a3s-root" ─ erofs ─► /.a3s/mnt/lower ┐
//! a3s-rw   (virtio-blk, rw) ─ ext4 (plain boxes) ─────────► /.a3s/mnt/rw    ├ overlay ─► /
//!                             dm-integrity + dm-crypt (TEE) ┘                 ┘
//! ```
//!
//! Nothing from the image runs before dm-verity is set up: guest-init itself lives in the
//! initramfs (measured with the kernel), and the switch happens before the workload, exec
//! sessions or the attestation agent's files.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::mount::{mount, MsFlags};

use a3s_vmm::disk::{ROOT_ARG, ROOT_SERIAL, RW_ARG, RW_SERIAL};

use crate::dm;

const LOWER: &str = "/.a3s/mnt/lower";
const RW: &str = "/.a3s/mnt/rw";
const NEW_ROOT: &str = "/.a3s/mnt/root";
/// How long the guest waits for a disk to appear after virtio_blk loads.
const DISK_WAIT: Duration = Duration::from_secs(20);

/// How the writable layer is formatted (`a3s.rw=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RwFormat {
    /// Plain ext4, made by the host.
    Ext4,
    /// Encrypted and integrity-protected in the guest.
    Crypt,
}

/// What the kernel command line says about the root filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RootSpec {
    /// 4 KiB data blocks of the erofs image (the hash tree follows them).
    pub(crate) data_blocks: u64,
    /// dm-verity root hash (hex).
    pub(crate) root_hash: String,
    /// The writable layer.
    pub(crate) rw: RwFormat,
}

impl RootSpec {
    /// Parses `a3s.root=<blocks>,<hash> a3s.rw=ext4|crypt`; `None` when there is no root disk.
    ///
    /// # Errors
    /// A malformed value (the host wrote it, so this is a bug or tampering: refuse to boot).
    pub(crate) fn from_cmdline(cmdline: &str) -> anyhow::Result<Option<Self>> {
        let arg = |name: &str| {
            cmdline
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        };
        let Some(root) = arg(ROOT_ARG) else {
            return Ok(None);
        };
        let (blocks, hash) = root
            .split_once(',')
            .with_context(|| format!("{ROOT_ARG}={root}: expected BLOCKS,ROOTHASH"))?;
        let data_blocks: u64 = blocks
            .parse()
            .ok()
            .filter(|b| *b > 0)
            .with_context(|| format!("{ROOT_ARG}: bad block count {blocks:?}"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{ROOT_ARG}: bad root hash {hash:?}");
        }
        let rw = match arg(RW_ARG) {
            Some("ext4") | None => RwFormat::Ext4,
            Some("crypt") => RwFormat::Crypt,
            Some(other) => bail!("{RW_ARG}={other}: expected ext4 or crypt"),
        };
        Ok(Some(Self {
            data_blocks,
            root_hash: hash.to_ascii_lowercase(),
            rw,
        }))
    }
}

/// Opens the image's filesystem through dm-verity and mounts it read-only (not yet `/`).
/// Runs before guest-init says Ready, so a changed image fails the boot itself.
///
/// # Errors
/// A missing disk, or a verity mismatch (the image's filesystem was changed).
pub(crate) fn open_image(spec: &RootSpec) -> anyhow::Result<()> {
    let root_disk = find_disk(ROOT_SERIAL)?;
    let verity = open_verity(spec, &root_disk)?;
    mkdir(LOWER)?;
    mount(
        Some(&verity),
        LOWER,
        Some("erofs"),
        MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| {
        if e == nix::errno::Errno::EIO {
            anyhow::anyhow!(
                "dm-verity refused the image's root filesystem ({e}): its blocks do not match \
                 the root hash {}; the cached filesystem image was changed or damaged",
                spec.root_hash
            )
        } else {
            anyhow::anyhow!("mounting the image's erofs root filesystem: {e}")
        }
    })?;
    Ok(())
}

/// Opens the writable layer (`unlock` opens an encrypted one), mounts the overlay over the
/// image opened by [`open_image`] and makes it `/`; returns how long the parts of opening an
/// encrypted layer took.
///
/// # Errors
/// A layer that cannot be opened or mounted: the caller must not start anything.
pub(crate) fn enter(
    spec: &RootSpec,
    unlock: Option<&crate::rwcrypt::Unlock<'_>>,
) -> anyhow::Result<crate::rwcrypt::Steps> {
    let rw_disk = find_disk(RW_SERIAL)?;
    let (rw_dev, steps) = match (spec.rw, unlock) {
        (RwFormat::Ext4, _) => (rw_disk.dev_path(), Vec::new()),
        (RwFormat::Crypt, Some(unlock)) => crate::rwcrypt::open(&rw_disk, unlock)?,
        (RwFormat::Crypt, None) => {
            bail!("the writable layer is encrypted and only a confidential box can derive its key")
        }
    };
    mkdir(RW)?;
    // No nosuid/nodev: the upper layer holds the box's own files (a setuid binary copied up
    // by a package upgrade must keep working, as on Docker's overlay2).
    // `noinit_itable`: the layer is made with lazy inode tables, and ext4 would otherwise zero
    // them from a kernel thread after mounting: 160 MiB on a 10 GiB layer, minutes of guest
    // CPU under TCG and as much host disk for an empty box (twice that and AES-GCM on an
    // encrypted layer). ext4 never reads the unused part of an inode table (group descriptors
    // count it, `itable_unused`), and writes a whole table block when it first puts an inode
    // in it; on a plain layer unwritten blocks read as the zeros the thread would write.
    mount(
        Some(&rw_dev),
        RW,
        Some("ext4"),
        MsFlags::empty(),
        Some("noinit_itable"),
    )
    .with_context(|| format!("mounting the box's writable layer ({})", rw_dev.display()))?;
    for d in ["upper", "work"] {
        mkdir(&format!("{RW}/{d}"))?;
    }
    mkdir(NEW_ROOT)?;
    // The mount point of the upper directory inside guest-init's own (initramfs) /.a3s.
    mkdir(a3s_vmm::layer::UPPER_MOUNT)?;
    let options = format!("lowerdir={LOWER},upperdir={RW}/upper,workdir={RW}/work");
    mount(
        Some("overlay"),
        NEW_ROOT,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .context("mounting the overlay root")?;
    switch_root(Path::new(NEW_ROOT))?;
    Ok(steps)
}

/// dm-verity over the root disk: data and tree on one device, 4 KiB blocks, no salt.
fn open_verity(spec: &RootSpec, disk: &Disk) -> anyhow::Result<PathBuf> {
    let dev = &disk.major_minor;
    let params = format!(
        "1 {dev} {dev} 4096 4096 {n} {n} sha256 {hash} -",
        n = spec.data_blocks,
        hash = spec.root_hash
    );
    dm::create(
        "a3s-root",
        &dm::Table {
            sectors: spec.data_blocks * 8,
            target: "verity",
            params: &params,
            readonly: true,
            secret: false,
        },
    )
    .context("setting up dm-verity for the image's root filesystem")
}

/// `mount --move` the pseudo filesystems into `new`, make guest-init's own directory visible
/// at `/.a3s`, then `mount --move new /; chroot .`.
fn switch_root(new: &Path) -> anyhow::Result<()> {
    for m in ["/proc", "/sys", "/dev"] {
        let target = new.join(&m[1..]);
        fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
        mount(
            Some(m),
            &target,
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .with_context(|| format!("moving {m} into the new root"))?;
    }
    // guest-init (`/.a3s/init`, re-executed for `cp`) and its modules stay reachable, and an
    // image can never put its own files there.
    let a3s = new.join(".a3s");
    fs::create_dir_all(&a3s).context("creating /.a3s in the new root")?;
    // Not recursive: the lower and writable mounts below it stay out of the workload's view.
    mount(
        Some("/.a3s"),
        &a3s,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context("binding /.a3s into the new root")?;
    mount(
        None::<&str>,
        &a3s,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .context("making /.a3s read-only")?;
    // The overlay's upper directory, read-only, for `__layer-out` (a build step's changes).
    let upper = new.join(&a3s_vmm::layer::UPPER_MOUNT[1..]);
    mount(
        Some(&Path::new(RW).join("upper")),
        &upper,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context("binding the upper directory into /.a3s")?;
    mount(
        None::<&str>,
        &upper,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .context("making the upper directory read-only")?;
    std::env::set_current_dir(new).context("entering the new root")?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .context("moving the new root onto /")?;
    nix::unistd::chroot(".").context("chroot into the new root")?;
    std::env::set_current_dir("/").context("chdir /")?;
    // guest-init's own scratch space in the box (agent socket and tool, volume copy-up
    // staging): a tmpfs, so none of it lands on the writable layer.
    fs::create_dir_all("/run/a3s").context("creating /run/a3s")?;
    match mount(
        Some("tmpfs"),
        "/run/a3s",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    ) {
        Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
        Err(e) => return Err(e).context("mounting tmpfs on /run/a3s"),
    }
    Ok(())
}

/// A virtio-blk disk found by serial.
#[derive(Debug)]
pub(crate) struct Disk {
    /// `vda`, `vdb`, ...
    pub(crate) name: String,
    /// `254:0` as the device-mapper tables want it.
    pub(crate) major_minor: String,
}

impl Disk {
    /// `/dev/<name>` (devtmpfs creates it).
    pub(crate) fn dev_path(&self) -> PathBuf {
        Path::new("/dev").join(&self.name)
    }
}

/// Waits for the virtio-blk disk whose serial is `serial`.
fn find_disk(serial: &str) -> anyhow::Result<Disk> {
    let deadline = Instant::now() + DISK_WAIT;
    loop {
        if let Ok(entries) = fs::read_dir("/sys/block") {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                let s = fs::read_to_string(e.path().join("serial")).unwrap_or_default();
                if s.trim_end_matches(['\0', '\n', ' ']) == serial {
                    let major_minor = fs::read_to_string(e.path().join("dev"))
                        .with_context(|| format!("reading /sys/block/{name}/dev"))?
                        .trim()
                        .to_owned();
                    return Ok(Disk { name, major_minor });
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "no disk with serial {serial} appeared in {} s (is virtio_blk loaded?)",
                DISK_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn mkdir(p: &str) -> anyhow::Result<()> {
    fs::create_dir_all(p).with_context(|| format!("creating {p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0bfbc6df797fa4c59d4957312f09a256a21c8c6eab1fa3cc6c7b902ce88d9e02";

    #[test]
    fn parses_the_root_arguments() {
        let line = format!("console=ttyS0 a3s.image=sha256:ab a3s.root=485,{HASH} a3s.rw=crypt");
        let spec = RootSpec::from_cmdline(&line).unwrap().unwrap();
        assert_eq!(spec.data_blocks, 485);
        assert_eq!(spec.root_hash, HASH);
        assert_eq!(spec.rw, RwFormat::Crypt);
        let plain = RootSpec::from_cmdline(&format!("a3s.root=1,{HASH}"))
            .unwrap()
            .unwrap();
        assert_eq!(plain.rw, RwFormat::Ext4);
        assert!(RootSpec::from_cmdline("console=ttyS0 a3s.rootx=1")
            .unwrap()
            .is_none());
    }

    #[test]
    fn malformed_root_arguments_are_refused() {
        for bad in [
            "a3s.root=485".to_owned(),
            format!("a3s.root=0,{HASH}"),
            format!("a3s.root=x,{HASH}"),
            "a3s.root=485,abc".to_owned(),
            format!("a3s.root=485,{HASH} a3s.rw=xfs"),
        ] {
            assert!(RootSpec::from_cmdline(&bad).is_err(), "{bad}");
        }
    }
}
