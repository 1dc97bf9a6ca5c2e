//! The thin file-reading edge of the measurement: reads the OVMF image, stream-hashes the
//! kernel and initrd, and names the file in every error.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use ring::digest;

use super::gctx::LD_SIZE;
use super::sev_hashes::{cmdline_hash, to_array};
use super::{
    check_kernel_args, measure, ovmf_hash, CpuSignature, MeasureError, Measurement, Ovmf,
    SevHashes, VmmType, DEFAULT_GUEST_FEATURES,
};

/// Inputs of an SNP launch measurement, as files.
///
/// Build it with [`SnpMeasurementFiles::new`] and set the optional fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SnpMeasurementFiles {
    /// Number of vCPUs (at least 1).
    pub vcpus: u32,
    /// vCPU signature; required for [`VmmType::Qemu`], ignored by EC2 and GCE.
    pub vcpu_sig: Option<CpuSignature>,
    /// The launching VMM.
    pub vmm_type: VmmType,
    /// The OVMF image (its footer table and metadata are always read).
    pub ovmf: PathBuf,
    /// Precomputed OVMF hash; when set, the OVMF pages are not hashed.
    pub ovmf_hash: Option<[u8; LD_SIZE]>,
    /// Kernel for measured direct boot.
    pub kernel: Option<PathBuf>,
    /// Initrd (requires a kernel).
    pub initrd: Option<PathBuf>,
    /// Kernel command line (a non-empty one requires a kernel).
    pub append: Option<String>,
    /// VMSA `SEV_FEATURES` (default [`DEFAULT_GUEST_FEATURES`]).
    pub guest_features: u64,
}

impl SnpMeasurementFiles {
    /// Inputs for `vcpus` vCPUs booting the OVMF image at `ovmf` under QEMU, with default
    /// guest features and no kernel; `vcpu_sig` still has to be set for QEMU.
    pub fn new(ovmf: impl Into<PathBuf>, vcpus: u32) -> Self {
        Self {
            vcpus,
            vcpu_sig: None,
            vmm_type: VmmType::Qemu,
            ovmf: ovmf.into(),
            ovmf_hash: None,
            kernel: None,
            initrd: None,
            append: None,
            guest_features: DEFAULT_GUEST_FEATURES,
        }
    }
}

/// Computes the SNP launch digest for inputs given as files.
///
/// The kernel and initrd are hashed while they are read, never held in memory whole.
///
/// # Errors
///
/// [`MeasureError::Read`] naming the file that cannot be read, [`MeasureError::OvmfFile`]
/// naming the OVMF image if it is malformed or unsuitable, and the argument errors of
/// [`super::launch_digest`].
pub fn launch_digest_from_files(
    files: &SnpMeasurementFiles,
) -> Result<[u8; LD_SIZE], MeasureError> {
    check_kernel_args(
        files.kernel.is_some(),
        files.initrd.is_some(),
        files.append.as_deref(),
    )?;
    let hashes = match &files.kernel {
        Some(kernel) => Some(SevHashes {
            kernel: sha256_file(kernel, "kernel")?,
            initrd: match &files.initrd {
                Some(initrd) => sha256_file(initrd, "initrd")?,
                None => to_array(digest::digest(&digest::SHA256, b"")),
            },
            cmdline: cmdline_hash(files.append.as_deref()),
        }),
        None => None,
    };
    let data = read_file(&files.ovmf, "OVMF image")?;
    let with_path = |e| with_ovmf_path(e, &files.ovmf);
    let ovmf = Ovmf::parse(&data).map_err(|e| with_path(e.into()))?;
    measure(&Measurement {
        ovmf: &ovmf,
        ovmf_hash: files.ovmf_hash,
        hashes: hashes.as_ref(),
        vcpus: files.vcpus,
        vcpu_sig: files.vcpu_sig,
        vmm_type: files.vmm_type,
        guest_features: files.guest_features,
    })
    .map_err(with_path)
}

/// Computes the OVMF hash of the OVMF image at `path` (see [`super::ovmf_hash`]).
///
/// # Errors
///
/// [`MeasureError::Read`] if the file cannot be read, [`MeasureError::OvmfFile`] if it is not a
/// usable OVMF image.
pub fn ovmf_hash_from_file(path: &Path) -> Result<[u8; LD_SIZE], MeasureError> {
    let data = read_file(path, "OVMF image")?;
    ovmf_hash(&data).map_err(|e| with_ovmf_path(e, path))
}

/// Adds the OVMF file's path to an error about the OVMF image.
fn with_ovmf_path(err: MeasureError, path: &Path) -> MeasureError {
    match err {
        MeasureError::Ovmf(source) => MeasureError::OvmfFile {
            path: path.to_owned(),
            source,
        },
        other => other,
    }
}

/// Largest kernel measured: an uncompressed `vmlinux` with its symbols is some tens of MiB.
pub const MAX_KERNEL_BYTES: u64 = 256 << 20;
/// Largest initrd measured (the base initrd with guest-init and modules is a few MiB; room
/// for distributions' initramfs images with firmware blobs).
pub const MAX_INITRD_BYTES: u64 = 1 << 30;
/// Largest firmware image (OVMF builds are 2-8 MiB; flash images at most 64 MiB).
pub const MAX_FIRMWARE_BYTES: u64 = 64 << 20;

/// The size limit for an input named `what`.
fn limit_for(what: &str) -> u64 {
    match what {
        "kernel" => MAX_KERNEL_BYTES,
        "initrd" => MAX_INITRD_BYTES,
        _ => MAX_FIRMWARE_BYTES,
    }
}

/// Opens `path`, a regular file of at most the limit for `what`; returns it with its size.
fn open_bounded(path: &Path, what: &'static str) -> Result<(File, u64), MeasureError> {
    let read_err = |source| MeasureError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(MeasureError::NotRegularFile {
            what,
            path: path.to_owned(),
            limit: limit_for(what),
        });
    }
    let limit = limit_for(what);
    if meta.len() > limit {
        return Err(MeasureError::TooLarge {
            what,
            path: path.to_owned(),
            len: meta.len(),
            limit,
        });
    }
    Ok((file, meta.len()))
}

/// The bytes of the measurement input `what` (`kernel`, `initrd`, or a firmware image): a
/// regular file within its kind's limit, checked before reading and again while reading (in
/// case it grows).
///
/// # Errors
/// [`MeasureError::Read`], [`MeasureError::NotRegularFile`], [`MeasureError::TooLarge`].
pub fn read_input(path: &Path, what: &'static str) -> Result<Vec<u8>, MeasureError> {
    let (file, len) = open_bounded(path, what)?;
    let limit = limit_for(what);
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|source| MeasureError::Read {
            what,
            path: path.to_owned(),
            source,
        })?;
    if data.len() as u64 > limit {
        return Err(MeasureError::TooLarge {
            what,
            path: path.to_owned(),
            len: data.len() as u64,
            limit,
        });
    }
    Ok(data)
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, MeasureError> {
    read_input(path, what)
}

/// SHA-256 of a file, read in chunks (never more than its kind's limit).
fn sha256_file(path: &Path, what: &'static str) -> Result<[u8; 32], MeasureError> {
    let read_err = |source| MeasureError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let (file, _) = open_bounded(path, what)?;
    let limit = limit_for(what);
    let mut file = file.take(limit + 1);
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                ctx.update(buf.get(..n).unwrap_or_default());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(e)),
        }
    }
    if total > limit {
        return Err(MeasureError::TooLarge {
            what,
            path: path.to_owned(),
            len: total,
            limit,
        });
    }
    Ok(to_array(ctx.finish()))
}
