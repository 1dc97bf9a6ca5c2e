//! Block devices of a box: the image's read-only root filesystem and the box's own writable
//! layer, both virtio-blk, found by the guest through their serial numbers (virtio-mmio probe
//! order is not the command-line order).
//!
//! ```text
//! a3s-root  read-only   images/v1/rootfs/<hex>.erofs   erofs ‖ dm-verity tree (shared by boxes)
//! a3s-rw    read-write  boxes/<id>/rw.img              sparse; ext4 (plain) or ciphertext (TEE)
//! ```
//!
//! Kernel command line (measured in TEE modes): `a3s.root=<data blocks>,<root hash>` and
//! `a3s.rw=ext4|crypt`.

use std::ffi::OsString;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::qemu::Machine;

/// Serial of the root filesystem device.
pub const ROOT_SERIAL: &str = "a3s-root";
/// Serial of the writable layer device.
pub const RW_SERIAL: &str = "a3s-rw";
/// Kernel argument carrying the verity parameters of the root device.
pub const ROOT_ARG: &str = "a3s.root";
/// Kernel argument saying how the writable layer is formatted.
pub const RW_ARG: &str = "a3s.rw";
/// Default size of a box's writable layer (sparse: only what the box writes takes space).
pub const DEFAULT_LAYER_BYTES: u64 = 10 << 30;
/// Smallest writable layer we create (ext4 with a journal needs a few MiB).
pub const MIN_LAYER_BYTES: u64 = 64 << 20;
/// Guest modules every box needs for its disks (dependencies are added from modinfo).
/// `sha256_ssse3` (SHA-NI, AVX2, SSSE3 SHA-256; loaded before dm-verity picks its hash) makes
/// reads through dm-verity 12 % faster under TCG than the generic C code: 200 MiB read in a box
/// took 3.5 s against 4.0 s; loading it costs about 15 ms of boot.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_blk",
    "sha256_ssse3",
    "dm_verity",
    "erofs",
    "overlay",
];
/// Guest modules for an encrypted writable layer: the targets, the crypto templates the kernel
/// would otherwise ask modprobe for (there is no modprobe in the initrd), and AES-NI/PCLMUL
/// AES-GCM (the generic C code wrote about 10 MB/s under TCG; every CPU model a box gets has
/// the instructions, and the kernel prefers the fastest implementation it has).
pub const CRYPT_GUEST_MODULES: &[&str] = &[
    "dm_crypt",
    "dm_integrity",
    "gcm",
    "ghash_generic",
    "aesni_intel",
    "ghash_clmulni_intel",
];
/// The host tool that formats plain writable layers.
pub const MKE2FS: &str = "mke2fs";
/// Where Debian installs it: the copy that goes into a confidential box's initrd (and is
/// measured with it) to format the layer under encryption in the guest.
pub const MKE2FS_PATH: &str = "/sbin/mke2fs";

/// One virtio-blk device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// The backing file.
    pub path: PathBuf,
    /// Attach read-only (the guest cannot write; several VMs may share the file).
    pub readonly: bool,
    /// The serial number the guest finds it by.
    pub serial: String,
}

/// How a box's writable layer is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerFormat {
    /// ext4 made on the host: the host can read it, as Docker's upper directories.
    Ext4,
    /// Raw until the guest formats it under dm-crypt + dm-integrity with a measurement-bound
    /// key: the host sees ciphertext.
    Encrypted,
}

impl LayerFormat {
    /// The `a3s.rw=` value.
    pub fn kernel_value(self) -> &'static str {
        match self {
            Self::Ext4 => "ext4",
            Self::Encrypted => "crypt",
        }
    }
}

/// A writable layer could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskError {
    /// A size outside what we accept.
    #[error("writable layer size {bytes} bytes is below the minimum of {} MiB", MIN_LAYER_BYTES >> 20)]
    TooSmall {
        /// Requested.
        bytes: u64,
    },
    /// `mke2fs` failed or is missing.
    #[error("formatting the writable layer {path} with mke2fs failed: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// i/o.
    #[error("creating the writable layer")]
    Io(#[from] std::io::Error),
}

impl DiskError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::TooSmall { .. } => Some("use a larger --storage-opt size=, e.g. size=1G".into()),
            Self::Format { .. } => Some("install e2fsprogs (`sudo scripts/setup`)".into()),
            Self::Io(_) => None,
        }
    }
}

/// Creates the sparse writable layer of a box at `path` (`bytes` apparent size), formatted for
/// `format`. Nothing is left behind on error.
///
/// # Errors
/// [`DiskError`].
pub fn create_layer(path: &Path, bytes: u64, format: LayerFormat) -> Result<(), DiskError> {
    if bytes < MIN_LAYER_BYTES {
        return Err(DiskError::TooSmall { bytes });
    }
    // 0600: the layer holds whatever the box wrote (a plain box's files are readable on it).
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
    let result = (|| {
        file.set_len(bytes)?;
        file.sync_all()?;
        // An encrypted layer stays zeros: the guest formats it under its own key.
        if format == LayerFormat::Ext4 {
            format_ext4(path)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// `mke2fs -t ext4` with lazy inode-table and journal initialisation: a few MiB are written
/// whatever the size (about 40 ms), the guest kernel zeroes the rest in the background.
fn format_ext4(path: &Path) -> Result<(), DiskError> {
    // Debian's absolute path first: `create` must not depend on the caller's PATH.
    let program = if Path::new(MKE2FS_PATH).is_file() {
        MKE2FS_PATH
    } else {
        MKE2FS
    };
    let out = Command::new(program)
        .args(["-q", "-F", "-t", "ext4", "-m", "0", "-L", "a3s-rw"])
        .args([
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| DiskError::Format {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(DiskError::Format {
            path: path.to_owned(),
            message: stderr.chars().take(2000).collect(),
        });
    }
    Ok(())
}

/// Parses Docker's `--storage-opt size=N` value: bytes with an optional k/m/g/t suffix (1024-based,
/// `b` and a trailing `b`/`i`/`ib` accepted as Docker's units parser does).
///
/// # Errors
/// A message naming what is wrong.
pub fn parse_size(value: &str) -> Result<u64, String> {
    let v = value.trim().to_ascii_lowercase();
    let v = v
        .strip_suffix("ib")
        .or_else(|| v.strip_suffix('b'))
        .unwrap_or(&v);
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("{value:?} is not a size (use e.g. 512m, 10g)")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{value:?} is not a size (use e.g. 512m, 10g)"))?;
    #[allow(clippy::cast_precision_loss)]
    let bytes = n * (1u64 << shift) as f64;
    if !bytes.is_finite() || !(1.0..=1e18).contains(&bytes) {
        return Err(format!("{value:?} is out of range"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes as u64)
}

/// QEMU arguments for `disks` (pure).
pub fn qemu_args(disks: &[Disk], machine: Machine) -> Vec<OsString> {
    let device = match machine {
        Machine::Microvm => "virtio-blk-device",
        Machine::Q35 => "virtio-blk-pci",
    };
    let mut a = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        let mut drive = format!(
            "file={},if=none,id=disk{i},format=raw",
            escape(&d.path.display().to_string())
        );
        if d.readonly {
            drive.push_str(",readonly=on");
        } else {
            // Deleting files in the guest frees space in the sparse file on the host.
            drive.push_str(",discard=unmap");
        }
        a.push("-drive".into());
        a.push(drive.into());
        a.push("-device".into());
        a.push(format!("{device},drive=disk{i},serial={}", d.serial).into());
    }
    a
}

/// QEMU option values separate with commas; a literal comma is written twice.
fn escape(s: &str) -> String {
    s.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_become_drives_with_serials() {
        let disks = [
            Disk {
                path: "/i/a,b.erofs".into(),
                readonly: true,
                serial: ROOT_SERIAL.into(),
            },
            Disk {
                path: "/b/rw.img".into(),
                readonly: false,
                serial: RW_SERIAL.into(),
            },
        ];
        let s: Vec<String> = qemu_args(&disks, Machine::Microvm)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            s.join(" "),
            "-drive file=/i/a,,b.erofs,if=none,id=disk0,format=raw,readonly=on \
             -device virtio-blk-device,drive=disk0,serial=a3s-root \
             -drive file=/b/rw.img,if=none,id=disk1,format=raw,discard=unmap \
             -device virtio-blk-device,drive=disk1,serial=a3s-rw"
        );
        let q: Vec<String> = qemu_args(&disks[..1], Machine::Q35)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(q[3].starts_with("virtio-blk-pci,"));
    }

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("10g").unwrap(), 10 << 30);
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("2t").unwrap(), 2 << 40);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10x").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn a_plain_layer_is_a_sparse_ext4_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rw.img");
        if let Err(DiskError::Format { message, .. }) = create_layer(&p, 1 << 30, LayerFormat::Ext4)
        {
            panic!("mke2fs: {message}");
        }
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.len(), 1 << 30);
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "private to the owner"
        );
        assert!(
            meta.blocks() * 512 < 16 << 20,
            "sparse: only metadata is written"
        );
        // ext4 superblock magic 0xEF53 at byte 1024 + 56.
        let magic = || {
            use std::io::{Read, Seek};
            let mut f = std::fs::File::open(&p).unwrap();
            f.seek(std::io::SeekFrom::Start(1080)).unwrap();
            let mut m = [0u8; 2];
            f.read_exact(&mut m).unwrap();
            m
        };
        assert_eq!(magic(), [0x53, 0xEF]);
        // A second create never overwrites a box's data.
        assert!(create_layer(&p, 1 << 30, LayerFormat::Ext4).is_err());
        assert_eq!(magic(), [0x53, 0xEF]);
        let too_small = dir.path().join("small.img");
        assert!(matches!(
            create_layer(&too_small, 1 << 20, LayerFormat::Ext4),
            Err(DiskError::TooSmall { .. })
        ));
        assert!(!too_small.exists());
    }
}
