//! Device-mapper devices from PID 1: create, load one table, resume (what `dmsetup create NAME
//! --table ...` does), through the `DM_*` ioctls on `/dev/mapper/control`.
//!
//! Hand-written rather than the `devicemapper` crate: that crate generates its bindings with
//! bindgen (libclang at build time) and brings list/status APIs a static PID 1 does not need;
//! the three ioctls here are a fixed kernel ABI (`include/uapi/linux/dm-ioctl.h`, interface
//! version 4), laid out byte by byte below and unit-tested.

#![allow(unsafe_code)] // three ioctl(2) calls on a buffer we own; see the SAFETY comment.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::{bail, Context};

/// `sizeof(struct dm_ioctl)`.
const DM_IOCTL_SIZE: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const DM_SPEC_SIZE: usize = 40;
const DM_NAME_LEN: usize = 128;
const DM_MAX_TYPE_NAME: usize = 16;
const DM_DEV_CREATE: u8 = 3;
const DM_DEV_REMOVE: u8 = 4;
const DM_DEV_SUSPEND: u8 = 6;
const DM_TABLE_LOAD: u8 = 9;
const DM_READONLY_FLAG: u32 = 1 << 0;
/// Ask the kernel to wipe its copy of the ioctl buffer (tables holding keys).
const DM_SECURE_DATA_FLAG: u32 = 1 << 15;
const CONTROL: &str = "/dev/mapper/control";

/// One single-target table.
#[derive(Debug)]
pub(crate) struct Table<'a> {
    /// Target length in 512-byte sectors.
    pub(crate) sectors: u64,
    /// `verity`, `crypt`, `integrity`, ...
    pub(crate) target: &'a str,
    /// The target's parameter string.
    pub(crate) params: &'a str,
    /// Map read-only.
    pub(crate) readonly: bool,
    /// The parameters hold a key: the kernel wipes its buffers.
    pub(crate) secret: bool,
}

/// Creates device `name` with `table` and activates it; returns its `/dev/dm-N` path.
///
/// # Errors
/// The control device is missing (dm-mod not loaded) or the kernel refuses the table (its
/// reason is in the kernel log, which the console shows).
pub(crate) fn create(name: &str, table: &Table<'_>) -> anyhow::Result<PathBuf> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(CONTROL)
        .with_context(|| format!("opening {CONTROL} (is dm-mod loaded?)"))?;
    let fd = control.as_raw_fd();
    let flags = if table.readonly { DM_READONLY_FLAG } else { 0 };
    let mut buf = header(name, 0, flags)?;
    ioctl(fd, DM_DEV_CREATE, &mut buf).with_context(|| format!("creating dm device {name}"))?;
    let dev = u64::from_ne_bytes(buf[40..48].try_into().unwrap_or_default());
    let mut load = table_load(name, table)?;
    let loaded = ioctl(fd, DM_TABLE_LOAD, &mut load);
    if table.secret {
        load.fill(0);
    }
    loaded.with_context(|| {
        format!(
            "loading the {} table of {name} (the kernel log says why)",
            table.target
        )
    })?;
    let mut resume = header(name, 0, 0)?;
    ioctl(fd, DM_DEV_SUSPEND, &mut resume).with_context(|| format!("activating {name}"))?;
    // new_decode_dev: minor = (dev & 0xff) | ((dev >> 12) & 0xfff00).
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    Ok(PathBuf::from(format!("/dev/dm-{minor}")))
}

/// Removes device `name` (`dmsetup remove`).
///
/// # Errors
/// The device is missing or busy.
pub(crate) fn remove(name: &str) -> anyhow::Result<()> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(CONTROL)
        .with_context(|| format!("opening {CONTROL} (is dm-mod loaded?)"))?;
    let mut buf = header(name, 0, 0)?;
    ioctl(control.as_raw_fd(), DM_DEV_REMOVE, &mut buf)
        .with_context(|| format!("removing dm device {name}"))
}

/// A `struct dm_ioctl` of `data_size` total bytes (header plus what follows).
fn header(name: &str, extra: usize, flags: u32) -> anyhow::Result<Vec<u8>> {
    if name.is_empty() || name.len() >= DM_NAME_LEN || name.contains('/') {
        bail!("invalid device-mapper name {name:?}");
    }
    let size = DM_IOCTL_SIZE + extra;
    let mut b = vec![0u8; size];
    put_u32(&mut b, 0, 4); // version 4.0.0: any v4 kernel accepts it
    put_u32(
        &mut b,
        12,
        u32::try_from(size).context("ioctl buffer too large")?,
    );
    put_u32(&mut b, 16, u32::try_from(DM_IOCTL_SIZE).unwrap_or(312));
    put_u32(&mut b, 28, flags);
    b[48..48 + name.len()].copy_from_slice(name.as_bytes());
    Ok(b)
}

/// `DM_TABLE_LOAD`'s buffer: header, one `struct dm_target_spec`, the parameters (NUL-terminated,
/// padded to 8 bytes).
fn table_load(name: &str, t: &Table<'_>) -> anyhow::Result<Vec<u8>> {
    if t.target.is_empty() || t.target.len() >= DM_MAX_TYPE_NAME {
        bail!("invalid target type {:?}", t.target);
    }
    let params_len = (t.params.len() + 1).next_multiple_of(8);
    let spec_len = DM_SPEC_SIZE + params_len;
    let mut flags = if t.readonly { DM_READONLY_FLAG } else { 0 };
    if t.secret {
        flags |= DM_SECURE_DATA_FLAG;
    }
    let mut b = header(name, spec_len, flags)?;
    put_u32(&mut b, 20, 1); // target_count
    let s = DM_IOCTL_SIZE;
    b[s..s + 8].copy_from_slice(&0u64.to_ne_bytes()); // sector_start
    b[s + 8..s + 16].copy_from_slice(&t.sectors.to_ne_bytes());
    put_u32(
        &mut b,
        s + 20,
        u32::try_from(spec_len).context("table too large")?,
    ); // next
    b[s + 24..s + 24 + t.target.len()].copy_from_slice(t.target.as_bytes());
    let p = s + DM_SPEC_SIZE;
    b[p..p + t.params.len()].copy_from_slice(t.params.as_bytes());
    Ok(b)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

/// `_IOWR(0xfd, nr, struct dm_ioctl)`.
fn request(nr: u8) -> u64 {
    (3u64 << 30) | ((DM_IOCTL_SIZE as u64) << 16) | (0xfd << 8) | u64::from(nr)
}

fn ioctl(fd: i32, nr: u8, buf: &mut [u8]) -> std::io::Result<()> {
    // The kernel reads `data_size` bytes from the buffer (and writes results within it).
    if buf.len() < DM_IOCTL_SIZE {
        return Err(std::io::Error::other("device-mapper buffer too small"));
    }
    // SAFETY: `buf` is a live, exclusively borrowed allocation of `data_size` bytes (the header
    // says so and `header` sized it), which is all the kernel touches for these commands.
    let rc = unsafe { libc::ioctl(fd, request(nr) as libc::c_ulong, buf.as_mut_ptr()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        // DM_DEV_CREATE and DM_TABLE_LOAD as the kernel headers compute them on x86_64.
        assert_eq!(request(DM_DEV_CREATE), 0xc138_fd03);
        assert_eq!(request(DM_TABLE_LOAD), 0xc138_fd09);
        assert_eq!(request(DM_DEV_SUSPEND), 0xc138_fd06);
    }

    #[test]
    fn table_load_lays_out_header_spec_and_params() {
        let t = Table {
            sectors: 80,
            target: "verity",
            params: "1 254:0 254:0 4096 4096 10 10 sha256 ab -",
            readonly: true,
            secret: false,
        };
        let b = table_load("a3s-root", &t).unwrap();
        let params_len = (t.params.len() + 1).next_multiple_of(8);
        assert_eq!(b.len(), 312 + 40 + params_len);
        assert_eq!(u32_at(&b, 0), 4);
        assert_eq!(u32_at(&b, 12) as usize, b.len()); // data_size
        assert_eq!(u32_at(&b, 16), 312); // data_start
        assert_eq!(u32_at(&b, 20), 1); // target_count
        assert_eq!(u32_at(&b, 28), DM_READONLY_FLAG);
        assert_eq!(&b[48..56], b"a3s-root");
        assert_eq!(b[56], 0);
        assert_eq!(u64::from_ne_bytes(b[320..328].try_into().unwrap()), 80);
        assert_eq!(u32_at(&b, 312 + 20) as usize, 40 + params_len); // next
        assert_eq!(&b[312 + 24..312 + 30], b"verity");
        assert_eq!(&b[352..352 + t.params.len()], t.params.as_bytes());
        assert_eq!(b[352 + t.params.len()], 0, "NUL-terminated");
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(header("", 0, 0).is_err());
        assert!(header("a/b", 0, 0).is_err());
        assert!(header(&"x".repeat(128), 0, 0).is_err());
        let t = Table {
            sectors: 8,
            target: "a-target-name-too-long",
            params: "",
            readonly: false,
            secret: false,
        };
        assert!(table_load("x", &t).is_err());
    }
}
