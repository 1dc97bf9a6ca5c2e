//! Volumes and bind mounts: each virtiofs tag the host shares is mounted at its path before the
//! workload starts. The root is the initramfs (RAM), so mount points are created first.
//!
//! A named volume that is empty when it is mounted over an image directory is filled with that
//! directory's content first (Docker's copy-up; `-v NAME:/path:nocopy` opts out): the share is
//! mounted at a private place, the image's files are copied in with their modes, owners,
//! symlinks and timestamps, then the share is mounted at its path. The volume's root takes the
//! directory's owner and mode even when the directory is empty, as with Docker: an image that
//! prepares an empty data directory for its non-root user (postgres' `PGDATA`) gets a volume
//! that user can write.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use a3s_vmm::proto::GuestMount;

/// Where a share is mounted while the image's files are copied into it.
// In the tmpfs guest-init mounts at /run/a3s: nothing of the staging reaches the writable layer.
const STAGING: &str = "/run/a3s/copy-up";

/// `mkdir -p PATH && mount -t virtiofs [-o ro] TAG PATH` for every share, in order, filling
/// empty named volumes from the image first.
pub(crate) fn mount_all(mounts: &[GuestMount]) -> anyhow::Result<()> {
    for m in mounts {
        if m.copy_up {
            copy_up(m).with_context(|| format!("filling volume {} from the image", m.path))?;
        }
        fs::create_dir_all(&m.path).with_context(|| format!("creating mount point {}", m.path))?;
        let mut flags = MsFlags::MS_NODEV;
        if m.readonly {
            flags |= MsFlags::MS_RDONLY;
        }
        mount_share(&m.tag, Path::new(&m.path), flags)?;
    }
    Ok(())
}

fn mount_share(tag: &str, at: &Path, flags: MsFlags) -> anyhow::Result<()> {
    mount(Some(tag), at, Some("virtiofs"), flags, None::<&str>)
        .with_context(|| format!("mounting virtiofs {tag} on {}", at.display()))
}

/// Copies the image's directory at `m.path` (its files, and its owner, mode and times onto the
/// share's root) into the share when the share is empty.
fn copy_up(m: &GuestMount) -> anyhow::Result<()> {
    let image_dir = Path::new(&m.path);
    if !fs::symlink_metadata(image_dir).is_ok_and(|md| md.is_dir()) {
        return Ok(());
    }
    let staging = Path::new(STAGING).join(&m.tag);
    fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    // mount -t virtiofs TAG /run/a3s/copy-up/TAG
    mount_share(&m.tag, &staging, MsFlags::MS_NODEV)?;
    let result = (|| {
        let empty = fs::read_dir(&staging)
            .context("reading the volume")?
            .next()
            .is_none();
        if empty {
            copy_children(image_dir, &staging)?;
        }
        Ok(())
    })();
    // umount /run/a3s/copy-up/TAG && rmdir it
    let unmounted = umount2(&staging, MntFlags::empty())
        .with_context(|| format!("unmounting {}", staging.display()));
    let _ = fs::remove_dir(&staging);
    result.and(unmounted)
}

/// Copies every entry of directory `from` into existing directory `to`, then gives `to` the
/// mode, owner and timestamps of `from` (as Docker does for the volume's root).
fn copy_children(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        copy_entry(&entry.path(), &to.join(entry.file_name()))?;
    }
    copy_metadata(to, &fs::symlink_metadata(from)?)
}

/// `cp -a FROM TO` for one entry (recursively for directories). Hard links become copies.
fn copy_entry(from: &Path, to: &Path) -> anyhow::Result<()> {
    let md = fs::symlink_metadata(from).with_context(|| format!("reading {}", from.display()))?;
    let ft = md.file_type();
    let ctx = || format!("copying {} to {}", from.display(), to.display());
    if ft.is_dir() {
        fs::create_dir(to).with_context(ctx)?;
        return copy_children(from, to);
    }
    if ft.is_symlink() {
        let target = fs::read_link(from).with_context(ctx)?;
        std::os::unix::fs::symlink(&target, to).with_context(ctx)?;
    } else if ft.is_file() {
        fs::copy(from, to).with_context(ctx)?;
    } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() || ft.is_socket() {
        let kind = SFlag::from_bits_truncate(md.mode() & SFlag::S_IFMT.bits());
        nix::sys::stat::mknod(
            to,
            kind,
            Mode::from_bits_truncate(md.mode() & 0o7777),
            md.rdev(),
        )
        .with_context(ctx)?;
    }
    copy_metadata(to, &md)
}

/// Owner, then mode (chown clears set-id bits), then access and modification times.
fn copy_metadata(to: &Path, md: &fs::Metadata) -> anyhow::Result<()> {
    let ctx = || format!("setting owner, mode and times of {}", to.display());
    std::os::unix::fs::lchown(to, Some(md.uid()), Some(md.gid())).with_context(ctx)?;
    if !md.file_type().is_symlink() {
        fs::set_permissions(to, fs::Permissions::from_mode(md.mode() & 0o7777))
            .with_context(ctx)?;
    }
    let atime = TimeSpec::new(md.atime(), md.atime_nsec());
    let mtime = TimeSpec::new(md.mtime(), md.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .with_context(ctx)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn a_tree_is_copied_with_modes_symlinks_and_times() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), "data").unwrap();
        fs::set_permissions(src.join("sub/f"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
        symlink("sub/f", src.join("link")).unwrap();
        let old = TimeSpec::new(1_000_000_000, 0);
        utimensat(
            nix::fcntl::AT_FDCWD,
            &src.join("sub/f"),
            &old,
            &old,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        fs::create_dir(&dst).unwrap();
        copy_children(&src, &dst).unwrap();
        assert_eq!(fs::read_to_string(dst.join("sub/f")).unwrap(), "data");
        let f = fs::metadata(dst.join("sub/f")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o640);
        assert_eq!(f.mtime(), 1_000_000_000);
        assert_eq!(
            fs::metadata(dst.join("sub")).unwrap().mode() & 0o7777,
            0o750
        );
        assert_eq!(fs::read_link(dst.join("link")).unwrap(), Path::new("sub/f"));
    }

    #[test]
    fn an_empty_directory_still_gives_the_volume_root_its_owner_and_mode() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        fs::create_dir(&src).unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o1777)).unwrap();
        let root = nix::unistd::geteuid().is_root();
        if root {
            // postgres' PGDATA in Debian's image: owned by its user, empty until initdb.
            std::os::unix::fs::lchown(&src, Some(999), Some(999)).unwrap();
        }
        fs::create_dir(&dst).unwrap();
        copy_children(&src, &dst).unwrap();
        let md = fs::metadata(&dst).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o1777);
        if root {
            assert_eq!((md.uid(), md.gid()), (999, 999));
        }
        assert_eq!(fs::read_dir(&dst).unwrap().count(), 0);
    }
}
