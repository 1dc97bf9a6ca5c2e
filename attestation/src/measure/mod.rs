//! SEV-SNP launch measurement calculator, compatible with `sev-snp-measure --mode snp` (0.0.13).
//!
//! The launch digest is what the SNP firmware accumulates while the VMM adds pages to a guest
//! ([`gctx`]). For an OVMF guest started by QEMU (or AWS EC2 / Google GCE) the pages are, in order:
//!
//! 1. every 4 KiB page of the OVMF image as NORMAL pages, the image ending at 4 GiB (this prefix
//!    alone is the "OVMF hash", which may be supplied precomputed instead);
//! 2. the sections of the OVMF SEV metadata ([`ovmf`]), in image order:
//!    SNP_SEC_MEM as ZERO pages (UNMEASURED on GCE), SNP_SECRETS as one SECRETS page, CPUID as
//!    one CPUID page (EC2 measures every CPUID page after all other sections), SVSM_CAA as ZERO
//!    pages, SNP_KERNEL_HASHES as one NORMAL page holding the kernel/initrd/cmdline hash table
//!    ([`sev_hashes`]) when a kernel is given, otherwise as ZERO pages;
//! 3. one VMSA page per vCPU ([`vmsa`]): the BSP starts at 0xfffffff0, APs at the SEV-ES reset
//!    EIP from the OVMF footer table; RDX holds the vCPU signature ([`vcpu`]) under QEMU.
//!
//! [`launch_digest`] takes bytes; [`launch_digest_from_files`] reads (and stream-hashes) files
//! and names the file in its errors.
//!
//! Where sev-snp-measure accepts malformed input by accident (negative slice indices, short
//! table entries, zero vCPUs), this module returns an error instead; on every well-formed input
//! the two agree, which the cross-check tests assert.

pub mod gctx;
pub mod ovmf;
pub mod sev_hashes;
pub mod standin;
pub mod vcpu;
pub mod vmsa;

mod files;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;

use thiserror::Error;

pub use files::{
    launch_digest_from_files, ovmf_hash_from_file, read_input, SnpMeasurementFiles,
    MAX_FIRMWARE_BYTES, MAX_INITRD_BYTES, MAX_KERNEL_BYTES,
};
pub use gctx::{Gctx, PageType, LD_SIZE, PAGE_SIZE};
pub use ovmf::{Ovmf, OvmfError, SectionType};
pub use sev_hashes::SevHashes;
pub use standin::standin_firmware;
pub use vcpu::{CpuSignature, VCPU_TYPES};

use gctx::sha384;
use vmsa::{vmsa_page, BSP_EIP};

/// Default guest features (VMSA `SEV_FEATURES`): bit 0, SNPActive.
pub const DEFAULT_GUEST_FEATURES: u64 = 0x1;

/// The OVMF image is mapped so that it ends at this guest-physical address (4 GiB).
const FOUR_GIB: u64 = 0x1_0000_0000;

/// Mask of the offset of an address inside its page.
const PAGE_MASK: u64 = 0xfff;

/// The VMM that launches the guest; each sets slightly different initial vCPU state and
/// measures some pages differently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VmmType {
    /// QEMU/KVM (`QEMU`).
    #[default]
    Qemu,
    /// AWS EC2 (`ec2`): CPUID pages measured last, its own segment attributes.
    Ec2,
    /// Google Compute Engine (`gce`): SNP_SEC_MEM unmeasured, its own PAT.
    Gce,
}

impl VmmType {
    /// The name sev-snp-measure uses for this VMM (`QEMU`, `ec2`, `gce`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qemu => "QEMU",
            Self::Ec2 => "ec2",
            Self::Gce => "gce",
        }
    }
}

impl FromStr for VmmType {
    type Err = MeasureError;

    /// Parses `QEMU`, `ec2` or `gce` (case-insensitively).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Qemu, Self::Ec2, Self::Gce]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| MeasureError::UnknownVmmType { name: s.to_owned() })
    }
}

impl fmt::Display for VmmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Inputs of an SNP launch measurement, as bytes.
///
/// Build it with [`SnpMeasurementArgs::new`] and set the optional fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SnpMeasurementArgs<'a> {
    /// Number of vCPUs (at least 1).
    pub vcpus: u32,
    /// vCPU signature; required for [`VmmType::Qemu`], ignored by EC2 and GCE.
    pub vcpu_sig: Option<CpuSignature>,
    /// The launching VMM.
    pub vmm_type: VmmType,
    /// The OVMF image (its footer table and metadata are always read).
    pub ovmf: &'a [u8],
    /// Precomputed OVMF hash; when set, the OVMF pages are not hashed.
    pub ovmf_hash: Option<[u8; LD_SIZE]>,
    /// Kernel for measured direct boot.
    pub kernel: Option<&'a [u8]>,
    /// Initrd (requires a kernel).
    pub initrd: Option<&'a [u8]>,
    /// Kernel command line (a non-empty one requires a kernel).
    pub append: Option<&'a str>,
    /// Hashes of the kernel, initrd and command line computed earlier (a cache); when set,
    /// `kernel`, `initrd` and `append` must be `None`.
    pub sev_hashes: Option<SevHashes>,
    /// VMSA `SEV_FEATURES` (default [`DEFAULT_GUEST_FEATURES`]).
    pub guest_features: u64,
}

impl<'a> SnpMeasurementArgs<'a> {
    /// Arguments for `vcpus` vCPUs booting `ovmf` under QEMU, with default guest features and
    /// no kernel; `vcpu_sig` still has to be set for QEMU.
    pub fn new(ovmf: &'a [u8], vcpus: u32) -> Self {
        Self {
            vcpus,
            vcpu_sig: None,
            vmm_type: VmmType::Qemu,
            ovmf,
            ovmf_hash: None,
            kernel: None,
            initrd: None,
            append: None,
            sev_hashes: None,
            guest_features: DEFAULT_GUEST_FEATURES,
        }
    }
}

/// Computes the SNP launch digest (the report's MEASUREMENT) for `args`.
///
/// # Errors
///
/// [`MeasureError::Ovmf`] if the OVMF image is malformed or lacks what the launch needs (reset
/// EIP, kernel-hashes section when a kernel is given); [`MeasureError::ZeroVcpus`],
/// [`MeasureError::MissingVcpuSignature`], [`MeasureError::InitrdWithoutKernel`] or
/// [`MeasureError::AppendWithoutKernel`] for inconsistent arguments.
pub fn launch_digest(args: &SnpMeasurementArgs<'_>) -> Result<[u8; LD_SIZE], MeasureError> {
    check_kernel_args(args.kernel.is_some(), args.initrd.is_some(), args.append)?;
    let hashes = match args.sev_hashes {
        Some(_) if args.kernel.is_some() || args.initrd.is_some() || args.append.is_some() => {
            return Err(MeasureError::HashesTwice)
        }
        Some(h) => Some(h),
        None => args
            .kernel
            .map(|kernel| SevHashes::new(kernel, args.initrd, args.append)),
    };
    let ovmf = Ovmf::parse(args.ovmf)?;
    measure(&Measurement {
        ovmf: &ovmf,
        ovmf_hash: args.ovmf_hash,
        hashes: hashes.as_ref(),
        vcpus: args.vcpus,
        vcpu_sig: args.vcpu_sig,
        vmm_type: args.vmm_type,
        guest_features: args.guest_features,
    })
}

/// Computes the OVMF hash: the launch digest after the OVMF pages alone, which can be passed
/// as [`SnpMeasurementArgs::ovmf_hash`] (`sev-snp-measure --mode snp:ovmf-hash`).
///
/// # Errors
///
/// [`MeasureError::Ovmf`] if the image is malformed, empty, not a whole number of pages or
/// larger than 4 GiB.
pub fn ovmf_hash(ovmf: &[u8]) -> Result<[u8; LD_SIZE], MeasureError> {
    let parsed = Ovmf::parse(ovmf)?;
    let mut gctx = Gctx::new();
    update_ovmf_pages(&mut gctx, &parsed)?;
    Ok(gctx.ld())
}

/// Parses an OVMF hash given as 96 hex digits (`--snp-ovmf-hash`).
///
/// # Errors
///
/// [`MeasureError::InvalidOvmfHash`] if `hex` is not exactly 48 hex-encoded bytes.
pub fn parse_ovmf_hash(hex: &str) -> Result<[u8; LD_SIZE], MeasureError> {
    let mut out = [0u8; LD_SIZE];
    hex::decode_to_slice(hex.trim(), &mut out).map_err(|e| MeasureError::InvalidOvmfHash {
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Everything the digest depends on, after inputs were read and hashed.
struct Measurement<'o, 'a> {
    ovmf: &'o Ovmf<'a>,
    ovmf_hash: Option<[u8; LD_SIZE]>,
    hashes: Option<&'o SevHashes>,
    vcpus: u32,
    vcpu_sig: Option<CpuSignature>,
    vmm_type: VmmType,
    guest_features: u64,
}

/// The measurement recipe: OVMF pages, metadata sections, VMSAs.
fn measure(m: &Measurement<'_, '_>) -> Result<[u8; LD_SIZE], MeasureError> {
    if m.vcpus == 0 {
        return Err(MeasureError::ZeroVcpus);
    }
    if m.vmm_type == VmmType::Qemu && m.vcpu_sig.is_none() {
        return Err(MeasureError::MissingVcpuSignature);
    }
    if m.hashes.is_some() && !m.ovmf.has_section(SectionType::SnpKernelHashes) {
        return Err(OvmfError::NoKernelHashesSection.into());
    }
    let ap_eip = m.ovmf.sev_es_reset_eip()?;

    let mut gctx = match m.ovmf_hash {
        Some(seed) => Gctx::with_seed(seed),
        None => {
            let mut gctx = Gctx::new();
            update_ovmf_pages(&mut gctx, m.ovmf)?;
            gctx
        }
    };
    update_metadata_sections(&mut gctx, m)?;
    update_vmsa_pages(&mut gctx, m, ap_eip)?;
    Ok(gctx.ld())
}

/// Step 1: the OVMF image as NORMAL pages ending at 4 GiB.
fn update_ovmf_pages(gctx: &mut Gctx, ovmf: &Ovmf<'_>) -> Result<(), MeasureError> {
    let data = ovmf.data();
    if data.is_empty() {
        return Err(OvmfError::EmptyImage.into());
    }
    if data.len() % PAGE_SIZE != 0 {
        return Err(OvmfError::SizeNotPageAligned { len: data.len() }.into());
    }
    let gpa = u64::try_from(data.len())
        .ok()
        .and_then(|len| FOUR_GIB.checked_sub(len))
        .ok_or(OvmfError::TooLarge { len: data.len() })?;
    gctx.update_normal_pages(gpa, data)
}

/// Step 2: the OVMF SEV metadata sections, in image order (EC2: CPUID pages last).
fn update_metadata_sections(gctx: &mut Gctx, m: &Measurement<'_, '_>) -> Result<(), MeasureError> {
    for section in m.ovmf.sections() {
        let gpa = u64::from(section.gpa);
        let size = usize::try_from(section.size).map_err(|_| MeasureError::GpaOverflow {
            gpa,
            len: usize::MAX,
        })?;
        match section.section_type {
            SectionType::SnpSecMem if m.vmm_type == VmmType::Gce => {
                gctx.update_zero_contents_pages(PageType::Unmeasured, gpa, size)?;
            }
            SectionType::SnpSecMem | SectionType::SvsmCaa => {
                gctx.update_zero_contents_pages(PageType::Zero, gpa, size)?;
            }
            SectionType::SnpSecrets => gctx.update(PageType::Secrets, gpa, &[0; LD_SIZE]),
            SectionType::Cpuid if m.vmm_type == VmmType::Ec2 => {}
            SectionType::Cpuid => gctx.update(PageType::Cpuid, gpa, &[0; LD_SIZE]),
            SectionType::SnpKernelHashes => match m.hashes {
                Some(hashes) => {
                    if size != PAGE_SIZE {
                        return Err(OvmfError::KernelHashesSectionSize {
                            gpa: section.gpa,
                            size: section.size,
                        }
                        .into());
                    }
                    let table_gpa = u64::from(m.ovmf.sev_hashes_table_gpa()?);
                    // PAGE_MASK keeps the offset below 0x1000, so the conversion cannot fail.
                    let offset = usize::try_from(table_gpa & PAGE_MASK).unwrap_or(PAGE_SIZE);
                    let page = hashes.page(offset)?;
                    gctx.update_normal_pages(gpa, &page[..])?;
                }
                None => gctx.update_zero_contents_pages(PageType::Zero, gpa, size)?,
            },
        }
    }
    if m.vmm_type == VmmType::Ec2 {
        for section in m.ovmf.sections() {
            if section.section_type == SectionType::Cpuid {
                gctx.update(PageType::Cpuid, u64::from(section.gpa), &[0; LD_SIZE]);
            }
        }
    }
    Ok(())
}

/// Step 3: one VMSA page per vCPU. AP pages are identical, so each kind is hashed once.
fn update_vmsa_pages(
    gctx: &mut Gctx,
    m: &Measurement<'_, '_>,
    ap_eip: u32,
) -> Result<(), MeasureError> {
    let bsp = sha384(&vmsa_page(BSP_EIP, m.guest_features, m.vcpu_sig, m.vmm_type)[..]);
    gctx.update_vmsa_digest(&bsp);
    if m.vcpus > 1 {
        if ap_eip == 0 {
            return Err(OvmfError::ZeroApResetEip.into());
        }
        let ap = sha384(&vmsa_page(ap_eip, m.guest_features, m.vcpu_sig, m.vmm_type)[..]);
        for _ in 1..m.vcpus {
            gctx.update_vmsa_digest(&ap);
        }
    }
    Ok(())
}

/// The argument rules of sev-snp-measure: an initrd or a non-empty command line needs a kernel.
fn check_kernel_args(
    has_kernel: bool,
    has_initrd: bool,
    append: Option<&str>,
) -> Result<(), MeasureError> {
    if !has_kernel && has_initrd {
        return Err(MeasureError::InitrdWithoutKernel);
    }
    if !has_kernel && append.is_some_and(|a| !a.is_empty()) {
        return Err(MeasureError::AppendWithoutKernel);
    }
    Ok(())
}

/// An SNP launch measurement that cannot be computed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MeasureError {
    /// The guest was given no vCPU.
    #[error("the number of vCPUs must be at least 1")]
    ZeroVcpus,
    /// QEMU puts the vCPU signature in each VMSA, so it must be known.
    #[error("missing vCPU signature, required for VMM type QEMU")]
    MissingVcpuSignature,
    /// The vCPU type name is not one of QEMU's EPYC models.
    #[error("unknown vCPU type {name:?}; valid types: {valid}")]
    UnknownVcpuType {
        /// The name given.
        name: String,
        /// The valid names, comma-separated.
        valid: String,
    },
    /// The VMM type is not QEMU, ec2 or gce.
    #[error("unknown VMM type {name:?}; valid types: QEMU, ec2, gce")]
    UnknownVmmType {
        /// The name given.
        name: String,
    },
    /// An initrd was given without a kernel.
    #[error("an initrd requires a kernel")]
    InitrdWithoutKernel,
    /// A command line was given without a kernel.
    #[error("a kernel command line requires a kernel")]
    AppendWithoutKernel,
    /// Precomputed kernel hashes were given together with the kernel, initrd or command line.
    #[error("precomputed kernel hashes exclude a kernel, initrd or command line")]
    HashesTwice,
    /// The precomputed OVMF hash is not 48 hex-encoded bytes.
    #[error("invalid OVMF hash, expected 96 hex digits (SHA-384): {reason}")]
    InvalidOvmfHash {
        /// Why it was rejected.
        reason: String,
    },
    /// The OVMF image (given as bytes) is malformed or unsuitable.
    #[error("unusable OVMF image")]
    Ovmf(#[from] OvmfError),
    /// The OVMF image file is malformed or unsuitable.
    #[error("unusable OVMF image {}", path.display())]
    OvmfFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: OvmfError,
    },
    /// An input file could not be read.
    #[error("reading {what} {}", path.display())]
    Read {
        /// Which input (`OVMF image`, `kernel`, `initrd`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An input is not a regular file (a device, FIFO or directory could be endless).
    #[error("{what} {} is not a regular file: a {what} must be a regular file of at most {limit} bytes", path.display())]
    NotRegularFile {
        /// Which input.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The size limit for this input.
        limit: u64,
    },
    /// An input is larger than any real one of its kind.
    #[error("{what} {} has {len} bytes: it exceeds {limit} bytes, the limit for a {what}", path.display())]
    TooLarge {
        /// Which input.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A range to measure is not a whole number of pages.
    #[error("range of {len} bytes at GPA {gpa:#x} is not a whole number of 4 KiB pages")]
    NotPageAligned {
        /// Start of the range.
        gpa: u64,
        /// Length of the range in bytes.
        len: usize,
    },
    /// A range to measure extends past the 64-bit guest-physical address space.
    #[error("range of {len} bytes at GPA {gpa:#x} overflows the address space")]
    GpaOverflow {
        /// Start of the range.
        gpa: u64,
        /// Length of the range in bytes.
        len: usize,
    },
    /// NORMAL and VMSA pages are measured by their contents, not as zero pages.
    #[error("{page_type:?} pages must be measured with their contents")]
    ContentsRequired {
        /// The page type requested.
        page_type: PageType,
    },
    /// The SEV hash table does not fit in its page at the offset OVMF gives.
    #[error("SEV hash table at page offset {offset_in_page:#x} does not fit in a 4 KiB page")]
    HashTableOutsidePage {
        /// Offset of the table in its page.
        offset_in_page: usize,
    },
}

impl MeasureError {
    /// A suggestion for the user, when the fix is obvious.
    pub fn hint(&self) -> Option<String> {
        let ovmf_error =
            match self {
                Self::MissingVcpuSignature => return Some(
                    "pass --vcpu-type, --vcpu-sig or --vcpu-family/--vcpu-model/--vcpu-stepping"
                        .to_owned(),
                ),
                Self::UnknownVcpuType { .. } => {
                    return Some("vCPU type names are case-sensitive, as in QEMU's -cpu".to_owned())
                }
                Self::Ovmf(e) | Self::OvmfFile { source: e, .. } => e,
                _ => return None,
            };
        match ovmf_error {
            OvmfError::NoKernelHashesSection => Some(
                "measured direct boot needs an OVMF built from OvmfPkg/AmdSev/AmdSevX64.dsc \
                 (e.g. OVMF.amdsev.fd); or omit --kernel/--initrd/--append"
                    .to_owned(),
            ),
            OvmfError::MissingFooterTable => Some(
                "pass the OVMF code image (OVMF_CODE.fd or OVMF.fd), not the varstore".to_owned(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
