//! Volumes and bind mounts: each virtiofs tag the host shares is mounted at its path before the
//! workload starts. The root is the initramfs (RAM), so mount points are created first.

use std::fs;

use anyhow::Context;
use nix::mount::{mount, MsFlags};

use a3s_vmm::proto::GuestMount;

/// `mkdir -p PATH && mount -t virtiofs [-o ro] TAG PATH` for every share, in order.
pub(crate) fn mount_all(mounts: &[GuestMount]) -> anyhow::Result<()> {
    for m in mounts {
        fs::create_dir_all(&m.path).with_context(|| format!("creating mount point {}", m.path))?;
        let mut flags = MsFlags::MS_NODEV;
        if m.readonly {
            flags |= MsFlags::MS_RDONLY;
        }
        mount(
            Some(m.tag.as_str()),
            m.path.as_str(),
            Some("virtiofs"),
            flags,
            None::<&str>,
        )
        .with_context(|| format!("mounting virtiofs {} on {}", m.tag, m.path))?;
    }
    Ok(())
}
