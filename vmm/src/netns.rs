//! A TAP device opened from inside another network namespace (a pod's), for QEMU to inherit
//! as `-netdev tap,fd=N`: QEMU itself stays in the monitor's namespace (its other sockets are
//! files), only its NIC is the pod's.
//!
//! `setns` changes the namespace of the calling thread only, so it runs on a thread of its
//! own that ends right after (never on a worker thread of someone else's pool).

#![allow(unsafe_code)]
// ifreq's flags field is a C short; the IFF_* values fit.
#![allow(clippy::cast_possible_truncation)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// `TUNSETIFF`: `_IOW('T', 202, int)`.
const TUNSETIFF: nix::libc::c_ulong = 0x4004_54ca;

/// The pod's TAP could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("opening TAP device {ifname} in network namespace {}: {why}", netns.display())]
pub struct NetnsTapError {
    /// The namespace.
    pub netns: PathBuf,
    /// The TAP device.
    pub ifname: String,
    /// What failed.
    pub why: String,
}

/// Opens TAP `ifname` (it must exist) inside namespace `netns` (a file such as
/// `/run/netns/NAME`), with virtio-net headers for QEMU's offloads.
///
/// # Errors
/// [`NetnsTapError`] naming the step.
pub fn open_tap_in(netns: &Path, ifname: &str) -> Result<OwnedFd, NetnsTapError> {
    let err = |why: String| NetnsTapError {
        netns: netns.to_owned(),
        ifname: ifname.to_owned(),
        why,
    };
    if ifname.is_empty() || ifname.len() >= nix::libc::IFNAMSIZ {
        return Err(err("not a valid interface name".into()));
    }
    let ns = std::fs::File::open(netns).map_err(|e| err(format!("opening the namespace: {e}")))?;
    let name = ifname.to_owned();
    let opened = std::thread::spawn(move || -> Result<OwnedFd, String> {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("entering the namespace: {e}"))?;
        open_tap(&name)
    })
    .join()
    .map_err(|_| err("the namespace thread panicked".into()))?;
    opened.map_err(err)
}

/// `open("/dev/net/tun")` + `TUNSETIFF` on this thread's namespace.
fn open_tap(name: &str) -> Result<OwnedFd, String> {
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| format!("opening /dev/net/tun: {e}"))?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: nix::libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as nix::libc::c_char;
    }
    req.ifr_ifru.ifru_flags =
        (nix::libc::IFF_TAP | nix::libc::IFF_NO_PI | nix::libc::IFF_VNET_HDR) as nix::libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `req` is and which outlives the call;
    // the descriptor is open.
    let rc = unsafe { nix::libc::ioctl(tun.as_raw_fd(), TUNSETIFF, std::ptr::from_mut(&mut req)) };
    if rc < 0 {
        return Err(format!(
            "attaching to the TAP device (TUNSETIFF): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(OwnedFd::from(tun))
}
