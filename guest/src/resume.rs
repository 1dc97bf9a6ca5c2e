//! The guest side of starting from a saved VM (`a3s_vmm::template`): a template VM says
//! `Ready` and is saved while it waits here; each restored copy gets one `Resume` with the
//! box's own arguments, host entropy and the host's clock.
//!
//! What a restore clones and how each is made fresh again:
//! - the kernel's random state: the host's 64 bytes are mixed in and credited
//!   (`RNDADDENTROPY`), then the CRNG is reseeded from the pool (`RNDRESEEDCRNG`), which also
//!   makes every per-CPU CRNG rekey before its next output; nothing in the template read
//!   `/proc/sys/kernel/random/boot_id` or seeded a userspace generator (guest-init makes its
//!   hash maps only after this), so those are drawn afresh;
//! - the clock: set from the host's, as `Start` does on a cold boot;
//! - the devices: the disk driver was never loaded in the template, so it binds to the
//!   restored QEMU's disks (the box's own) and reads their size and serial afresh; a user
//!   network's NIC is the same device and MAC address in every box, its driver is bound in
//!   the template and only its backend (passt) is the box's; a bridge or pod NIC is given
//!   the box's MAC address (`a3s.macs=`, `crate::net::readdress`); virtio-fs devices are
//!   probed in the template and mounted only after `Resume`, on the box's own daemons.
#![allow(unsafe_code)]
// The ioctl argument's length fields are i32 by ABI; the buffer is 64 bytes.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{bail, Context};

use a3s_vmm::proto::{self, Frame, GuestMsg, HostMsg, ProtoError, WORKLOAD_SESSION};
use a3s_vmm::template::{DEFERRED_MODULES, ENTROPY_BYTES, TEMPLATE_ARG};

use crate::{clock, init};

/// Whether the kernel command line makes this VM a template.
pub(crate) fn is_template(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .any(|w| w.strip_prefix(TEMPLATE_ARG) == Some("=1"))
}

/// Whether a template leaves this module for its restored copies (it binds devices).
pub(crate) fn is_deferred_module(name: &str) -> bool {
    DEFERRED_MODULES.contains(&name)
}

/// Says `Ready`, waits (possibly across a save and restore) for `Resume`, reseeds the random
/// generator and sets the clock; returns the box's own arguments.
///
/// # Errors
/// The channel failed, or the entropy could not be used (a restored box must never run on
/// the template's random state).
pub(crate) fn wait(port: &File) -> anyhow::Result<String> {
    let mut writer = port;
    let ready = GuestMsg::Ready {
        version: proto::PROTO_VERSION,
        uptime_ms: init::uptime_ms(),
        // The template's own boot: not reported (nobody waits on this Ready but the saver).
        steps: Vec::new(),
    };
    proto::write_frame(&mut writer, &Frame::control(WORKLOAD_SESSION, &ready)?)
        .context("saying Ready")?;
    let mut reader = port;
    loop {
        let frame = match proto::read_frame(&mut reader) {
            Ok(f) => f,
            // Nobody connected yet (the template is being saved, or restored and not yet
            // connected): a virtio-serial port reads end-of-file then.
            Err(ProtoError::Closed) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => return Err(e).context("reading the channel"),
        };
        let Ok(HostMsg::Resume {
            args,
            entropy,
            clock: host_clock,
        }) = frame.message::<HostMsg>()
        else {
            // Only `Resume` is meaningful before the box exists.
            continue;
        };
        crate::boot_steps::restart();
        reseed(&decode_entropy(&entropy)?)?;
        match clock::apply(&host_clock) {
            Ok(None) => {}
            Ok(Some(warning)) => eprintln!("a3s-guest-init: {warning}"),
            Err(e) => eprintln!("a3s-guest-init: setting the clock: {e:#}"),
        }
        crate::boot_steps::mark("resume");
        return Ok(args);
    }
}

/// The host's entropy: exactly [`ENTROPY_BYTES`] bytes in hex.
fn decode_entropy(hex: &str) -> anyhow::Result<[u8; ENTROPY_BYTES]> {
    let mut out = [0u8; ENTROPY_BYTES];
    if hex.len() != ENTROPY_BYTES * 2 {
        bail!(
            "Resume carries {} hex digits of entropy, not {}",
            hex.len(),
            ENTROPY_BYTES * 2
        );
    }
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = hex
            .get(i * 2..i * 2 + 2)
            .context("entropy is not ASCII hex")?;
        *byte = u8::from_str_radix(pair, 16).context("entropy is not hex")?;
    }
    Ok(out)
}

/// `struct rand_pool_info` with room for the host's bytes.
#[repr(C)]
struct RandPoolInfo {
    entropy_count: i32,
    buf_size: i32,
    buf: [u8; ENTROPY_BYTES],
}

/// `_IOW('R', 0x03, int[2])`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `_IO('R', 0x07)`.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Mixes `bytes` into the input pool, credited in full, and reseeds the CRNG from it.
fn reseed(bytes: &[u8; ENTROPY_BYTES]) -> anyhow::Result<()> {
    let dev = File::options()
        .write(true)
        .open("/dev/urandom")
        .context("opening /dev/urandom")?;
    let info = RandPoolInfo {
        entropy_count: (ENTROPY_BYTES * 8) as i32,
        buf_size: ENTROPY_BYTES as i32,
        buf: *bytes,
    };
    // SAFETY: `dev` is an open descriptor of the random device; `info` is a live, properly
    // laid out `rand_pool_info` whose `buf_size` is the length of its trailing buffer, and the
    // kernel only reads it.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), RNDADDENTROPY as _, &info) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("RNDADDENTROPY");
    }
    // SAFETY: an argument-less ioctl on an open descriptor of the random device.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), RNDRESEEDCRNG as _) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("RNDRESEEDCRNG");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_template_argument_makes_a_template() {
        assert!(is_template(
            "console=ttyS0 rdinit=/.a3s/init a3s.template=1"
        ));
        assert!(!is_template("console=ttyS0 a3s.template=0"));
        assert!(!is_template("console=ttyS0 a3s.templatex=1"));
    }

    #[test]
    fn the_disk_driver_waits_for_the_restore() {
        assert!(is_deferred_module("virtio_blk"));
        assert!(!is_deferred_module("virtio_net"));
        assert!(!is_deferred_module("virtio_mmio"));
        assert!(!is_deferred_module("dm_verity"));
    }

    #[test]
    fn entropy_must_be_exactly_the_hex_of_its_bytes() {
        let hex: String = (0..ENTROPY_BYTES).map(|i| format!("{:02x}", i)).collect();
        let bytes = decode_entropy(&hex).unwrap();
        assert_eq!(bytes[0], 0);
        assert_eq!(bytes[ENTROPY_BYTES - 1], (ENTROPY_BYTES - 1) as u8);
        assert!(decode_entropy(&hex[2..]).is_err());
        assert!(decode_entropy(&"zz".repeat(ENTROPY_BYTES)).is_err());
        assert!(decode_entropy("").is_err());
    }

    #[test]
    fn the_ioctl_numbers_are_the_kernels() {
        // _IOC(dir, type, nr, size): dir << 30 | size << 16 | type << 8 | nr.
        assert_eq!(
            RNDADDENTROPY,
            (1 << 30) | (8 << 16) | (u64::from(b'R') << 8) | 0x03
        );
        assert_eq!(RNDRESEEDCRNG, (u64::from(b'R') << 8) | 0x07);
    }
}
