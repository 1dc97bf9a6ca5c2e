//! ATTESTATION_REPORT (AMD SEV-SNP ABI specification 56860 rev 1.57, Table 22), versions 2, 3 and 5.
//!
//! A [`Report`] owns exactly [`REPORT_SIZE`] bytes. Parsing checks everything that can be checked
//! without keys (version, signature algorithm, policy and key-info reserved bits, reserved bytes),
//! and accessors read fields from the bytes, so [`Report::as_bytes`] always returns the input
//! unchanged and the signature is verified over the bytes as received.
//!
//! | offset | size | field | versions |
//! |--------|------|-------|----------|
//! | 0x000 | 4  | VERSION | |
//! | 0x004 | 4  | GUEST_SVN | |
//! | 0x008 | 8  | POLICY | |
//! | 0x010 | 16 | FAMILY_ID | |
//! | 0x020 | 16 | IMAGE_ID | |
//! | 0x030 | 4  | VMPL | |
//! | 0x034 | 4  | SIGNATURE_ALGO (1 = ECDSA P-384 with SHA-384) | |
//! | 0x038 | 8  | CURRENT_TCB | |
//! | 0x040 | 8  | PLATFORM_INFO | |
//! | 0x048 | 4  | key info (author key, mask chip key, signing key) | |
//! | 0x050 | 64 | REPORT_DATA | |
//! | 0x090 | 48 | MEASUREMENT | |
//! | 0x0C0 | 32 | HOST_DATA | |
//! | 0x0E0 | 48 | ID_KEY_DIGEST | |
//! | 0x110 | 48 | AUTHOR_KEY_DIGEST | |
//! | 0x140 | 32 | REPORT_ID | |
//! | 0x160 | 32 | REPORT_ID_MA | |
//! | 0x180 | 8  | REPORTED_TCB | |
//! | 0x188 | 3  | CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP | 3+ |
//! | 0x1A0 | 64 | CHIP_ID | |
//! | 0x1E0 | 8  | COMMITTED_TCB | |
//! | 0x1E8 | 3  | CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR | |
//! | 0x1EC | 3  | COMMITTED_BUILD, COMMITTED_MINOR, COMMITTED_MAJOR | |
//! | 0x1F0 | 8  | LAUNCH_TCB | |
//! | 0x1F8 | 8  | LAUNCH_MIT_VECTOR | 5 |
//! | 0x200 | 8  | CURRENT_MIT_VECTOR | 5 |
//! | 0x2A0 | 512 | SIGNATURE: R (72 bytes LE), S (72 bytes LE), reserved | |
//!
//! Every other byte is reserved and must be zero. The signature covers `0x000..0x2A0`.

mod fields;
mod key_info;
mod platform_info;
mod policy;
mod tcb;
pub mod trustee;

pub use fields::ReportFields;
pub use key_info::{InvalidKeyInfo, KeyInfo, SigningKey};
pub use platform_info::{PlatformInfo, PlatformInfoView};
pub use policy::{GuestPolicy, InvalidPolicy, PolicyView};
pub use tcb::{Tcb, TcbLayout, TcbVersion};

use crate::Product;

/// Size of an attestation report in bytes.
pub const REPORT_SIZE: usize = 0x4A0;
/// End of the signed region: the signature covers bytes `0..SIGNED_LEN`.
pub const SIGNED_LEN: usize = 0x2A0;
/// Length of each signature component field (only the low 48 bytes are significant).
pub const SIG_COMPONENT_LEN: usize = 72;

/// SIGNATURE_ALGO value for ECDSA P-384 with SHA-384, the only algorithm SNP firmware uses.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

pub(crate) mod offset {
    pub(crate) const VERSION: usize = 0x000;
    pub(crate) const GUEST_SVN: usize = 0x004;
    pub(crate) const POLICY: usize = 0x008;
    pub(crate) const FAMILY_ID: usize = 0x010;
    pub(crate) const IMAGE_ID: usize = 0x020;
    pub(crate) const VMPL: usize = 0x030;
    pub(crate) const SIG_ALGO: usize = 0x034;
    pub(crate) const CURRENT_TCB: usize = 0x038;
    pub(crate) const PLATFORM_INFO: usize = 0x040;
    pub(crate) const KEY_INFO: usize = 0x048;
    pub(crate) const REPORT_DATA: usize = 0x050;
    pub(crate) const MEASUREMENT: usize = 0x090;
    pub(crate) const HOST_DATA: usize = 0x0C0;
    pub(crate) const ID_KEY_DIGEST: usize = 0x0E0;
    pub(crate) const AUTHOR_KEY_DIGEST: usize = 0x110;
    pub(crate) const REPORT_ID: usize = 0x140;
    pub(crate) const REPORT_ID_MA: usize = 0x160;
    pub(crate) const REPORTED_TCB: usize = 0x180;
    pub(crate) const CPUID_FAM_ID: usize = 0x188;
    pub(crate) const CHIP_ID: usize = 0x1A0;
    pub(crate) const COMMITTED_TCB: usize = 0x1E0;
    pub(crate) const CURRENT_VERSION: usize = 0x1E8;
    pub(crate) const COMMITTED_VERSION: usize = 0x1EC;
    pub(crate) const LAUNCH_TCB: usize = 0x1F0;
    pub(crate) const LAUNCH_MIT_VECTOR: usize = 0x1F8;
    pub(crate) const CURRENT_MIT_VECTOR: usize = 0x200;
    pub(crate) const SIGNATURE_R: usize = 0x2A0;
    pub(crate) const SIGNATURE_S: usize = 0x2E8;
}

/// Why bytes are not an attestation report this build accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The input is not exactly 1184 bytes long.
    #[error("report is {actual} bytes long, expected {REPORT_SIZE}")]
    Length {
        /// Length of the input.
        actual: usize,
    },
    /// The input is neither 1184 raw bytes nor hex text of them.
    #[error("report is {actual} bytes of neither raw report ({REPORT_SIZE} bytes) nor hex text")]
    Encoding {
        /// Length of the input.
        actual: usize,
    },
    /// VERSION is not 2, 3, 4 or 5.
    #[error("report version {0} is not supported (supported: 2, 3, 4, 5)")]
    UnsupportedVersion(u32),
    /// SIGNATURE_ALGO is not ECDSA P-384 with SHA-384.
    #[error("signature algorithm {0} is not supported (expected 1, ECDSA P-384 with SHA-384)")]
    UnsupportedSignatureAlgorithm(u32),
    /// A reserved byte is not zero.
    #[error("reserved byte at offset {offset:#x} is not zero")]
    ReservedNonZero {
        /// Offset of the first non-zero reserved byte.
        offset: usize,
    },
    /// The guest policy has reserved bits wrong.
    #[error(transparent)]
    Policy(#[from] InvalidPolicy),
    /// The key-information word is invalid.
    #[error(transparent)]
    KeyInfo(#[from] InvalidKeyInfo),
    /// The generation (and so the TCB layout) cannot be told from the report alone.
    #[error("cannot tell the CPU generation of this version {version} report{why}")]
    UnknownGeneration {
        /// Report version.
        version: u32,
        /// What was missing.
        why: &'static str,
    },
}

/// The generation a report comes from, as far as the report itself tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenerationHint {
    /// Known exactly (from the CPUID fields of a version 3+ report).
    Known(Product),
    /// Milan or Genoa (they share the TCB layout); the VCEK's product name decides.
    MilanOrGenoa,
    /// Nothing in the report tells (v2 with a masked chip id, or an unknown CPUID).
    Unknown,
}

/// A parsed attestation report. Invariant: `bytes` passed [`Report::from_bytes`].
#[derive(Clone, PartialEq, Eq)]
pub struct Report {
    bytes: Box<[u8; REPORT_SIZE]>,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report")
            .field("version", &self.version())
            .field("measurement", &hex::encode(self.measurement()))
            .finish_non_exhaustive()
    }
}

/// Reserved ranges, by report version (end exclusive).
fn reserved_ranges(version: u32) -> &'static [(usize, usize)] {
    match version {
        2 => &[
            (0x04C, 0x050),
            (0x188, 0x1A0),
            (0x1EB, 0x1EC),
            (0x1EF, 0x1F0),
            (0x1F8, 0x2A0),
            (0x330, REPORT_SIZE),
        ],
        3 | 4 => &[
            (0x04C, 0x050),
            (0x18B, 0x1A0),
            (0x1EB, 0x1EC),
            (0x1EF, 0x1F0),
            (0x1F8, 0x2A0),
            (0x330, REPORT_SIZE),
        ],
        _ => &[
            (0x04C, 0x050),
            (0x18B, 0x1A0),
            (0x1EB, 0x1EC),
            (0x1EF, 0x1F0),
            (0x208, 0x2A0),
            (0x330, REPORT_SIZE),
        ],
    }
}

pub(crate) fn read_u32(b: &[u8; REPORT_SIZE], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

pub(crate) fn read_u64(b: &[u8; REPORT_SIZE], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn read_array<const N: usize>(b: &[u8; REPORT_SIZE], at: usize) -> [u8; N] {
    let mut v = [0u8; N];
    v.copy_from_slice(&b[at..at + N]);
    v
}

impl Report {
    /// Parses and checks a raw report.
    ///
    /// # Errors
    /// [`ReportError`] naming the first rule the bytes break.
    pub fn from_bytes(input: &[u8]) -> Result<Self, ReportError> {
        let bytes: [u8; REPORT_SIZE] = input.try_into().map_err(|_| ReportError::Length {
            actual: input.len(),
        })?;
        let version = read_u32(&bytes, offset::VERSION);
        if !matches!(version, 2..=5) {
            return Err(ReportError::UnsupportedVersion(version));
        }
        let algo = read_u32(&bytes, offset::SIG_ALGO);
        if algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(ReportError::UnsupportedSignatureAlgorithm(algo));
        }
        GuestPolicy::new(read_u64(&bytes, offset::POLICY))?;
        KeyInfo::new(read_u32(&bytes, offset::KEY_INFO))?;
        for &(start, end) in reserved_ranges(version) {
            if let Some(i) = bytes[start..end].iter().position(|&b| b != 0) {
                return Err(ReportError::ReservedNonZero { offset: start + i });
            }
        }
        Ok(Self {
            bytes: Box::new(bytes),
        })
    }

    /// Parses a report given as raw bytes or as hex text (whitespace ignored).
    ///
    /// # Errors
    /// [`ReportError::Encoding`] when the input is neither, otherwise as for [`Report::from_bytes`].
    pub fn from_bytes_or_hex(input: &[u8]) -> Result<Self, ReportError> {
        if input.len() == REPORT_SIZE {
            return Self::from_bytes(input);
        }
        let text: Vec<u8> = input
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        match hex::decode(&text) {
            Ok(raw) => Self::from_bytes(&raw),
            Err(_) => Err(ReportError::Encoding {
                actual: input.len(),
            }),
        }
    }

    /// The report exactly as received.
    pub fn as_bytes(&self) -> &[u8; REPORT_SIZE] {
        &self.bytes
    }

    /// The bytes the signature covers (`0x000..0x2A0`).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.bytes[..SIGNED_LEN]
    }

    /// VERSION.
    pub fn version(&self) -> u32 {
        read_u32(&self.bytes, offset::VERSION)
    }
    /// GUEST_SVN.
    pub fn guest_svn(&self) -> u32 {
        read_u32(&self.bytes, offset::GUEST_SVN)
    }
    /// GUEST_POLICY (reserved bits checked at parse time).
    pub fn policy(&self) -> GuestPolicy {
        GuestPolicy::new(read_u64(&self.bytes, offset::POLICY))
            .expect("policy reserved bits were checked by from_bytes")
    }
    /// FAMILY_ID.
    pub fn family_id(&self) -> [u8; 16] {
        read_array(&self.bytes, offset::FAMILY_ID)
    }
    /// IMAGE_ID.
    pub fn image_id(&self) -> [u8; 16] {
        read_array(&self.bytes, offset::IMAGE_ID)
    }
    /// VMPL the report was requested from.
    pub fn vmpl(&self) -> u32 {
        read_u32(&self.bytes, offset::VMPL)
    }
    /// SIGNATURE_ALGO.
    pub fn signature_algo(&self) -> u32 {
        read_u32(&self.bytes, offset::SIG_ALGO)
    }
    /// CURRENT_TCB.
    pub fn current_tcb(&self) -> TcbVersion {
        TcbVersion(read_u64(&self.bytes, offset::CURRENT_TCB))
    }
    /// PLATFORM_INFO.
    pub fn platform_info(&self) -> PlatformInfo {
        PlatformInfo(read_u64(&self.bytes, offset::PLATFORM_INFO))
    }
    /// Key information (checked at parse time).
    pub fn key_info(&self) -> KeyInfo {
        KeyInfo::new(read_u32(&self.bytes, offset::KEY_INFO))
            .expect("key info was checked by from_bytes")
    }
    /// REPORT_DATA supplied by the guest.
    pub fn report_data(&self) -> [u8; 64] {
        read_array(&self.bytes, offset::REPORT_DATA)
    }
    /// MEASUREMENT: the launch digest.
    pub fn measurement(&self) -> [u8; 48] {
        read_array(&self.bytes, offset::MEASUREMENT)
    }
    /// HOST_DATA supplied by the host at launch.
    pub fn host_data(&self) -> [u8; 32] {
        read_array(&self.bytes, offset::HOST_DATA)
    }
    /// ID_KEY_DIGEST.
    pub fn id_key_digest(&self) -> [u8; 48] {
        read_array(&self.bytes, offset::ID_KEY_DIGEST)
    }
    /// AUTHOR_KEY_DIGEST.
    pub fn author_key_digest(&self) -> [u8; 48] {
        read_array(&self.bytes, offset::AUTHOR_KEY_DIGEST)
    }
    /// REPORT_ID.
    pub fn report_id(&self) -> [u8; 32] {
        read_array(&self.bytes, offset::REPORT_ID)
    }
    /// REPORT_ID_MA (all 0xFF when there is no migration agent).
    pub fn report_id_ma(&self) -> [u8; 32] {
        read_array(&self.bytes, offset::REPORT_ID_MA)
    }
    /// REPORTED_TCB: the TCB the VCEK that signed this report was derived from.
    pub fn reported_tcb(&self) -> TcbVersion {
        TcbVersion(read_u64(&self.bytes, offset::REPORTED_TCB))
    }
    /// CPUID family, model and stepping (versions 3 and later).
    pub fn cpuid(&self) -> Option<(u8, u8, u8)> {
        let at = offset::CPUID_FAM_ID;
        (self.version() >= 3).then(|| (self.bytes[at], self.bytes[at + 1], self.bytes[at + 2]))
    }
    /// CHIP_ID (zero when masked; Turin uses only the first 8 bytes).
    pub fn chip_id(&self) -> [u8; 64] {
        read_array(&self.bytes, offset::CHIP_ID)
    }
    /// COMMITTED_TCB.
    pub fn committed_tcb(&self) -> TcbVersion {
        TcbVersion(read_u64(&self.bytes, offset::COMMITTED_TCB))
    }
    /// Current firmware version as (major, minor, build).
    pub fn current_version(&self) -> (u8, u8, u8) {
        let at = offset::CURRENT_VERSION;
        (self.bytes[at + 2], self.bytes[at + 1], self.bytes[at])
    }
    /// Committed firmware version as (major, minor, build).
    pub fn committed_version(&self) -> (u8, u8, u8) {
        let at = offset::COMMITTED_VERSION;
        (self.bytes[at + 2], self.bytes[at + 1], self.bytes[at])
    }
    /// LAUNCH_TCB.
    pub fn launch_tcb(&self) -> TcbVersion {
        TcbVersion(read_u64(&self.bytes, offset::LAUNCH_TCB))
    }
    /// LAUNCH_MIT_VECTOR (version 5 and later).
    pub fn launch_mit_vector(&self) -> Option<u64> {
        (self.version() >= 5).then(|| read_u64(&self.bytes, offset::LAUNCH_MIT_VECTOR))
    }
    /// CURRENT_MIT_VECTOR (version 5 and later).
    pub fn current_mit_vector(&self) -> Option<u64> {
        (self.version() >= 5).then(|| read_u64(&self.bytes, offset::CURRENT_MIT_VECTOR))
    }
    /// Signature R, little-endian, 72 bytes.
    pub fn signature_r(&self) -> [u8; SIG_COMPONENT_LEN] {
        read_array(&self.bytes, offset::SIGNATURE_R)
    }
    /// Signature S, little-endian, 72 bytes.
    pub fn signature_s(&self) -> [u8; SIG_COMPONENT_LEN] {
        read_array(&self.bytes, offset::SIGNATURE_S)
    }

    /// The generation as far as the report alone tells: CPUID fields from version 3; for
    /// version 2, a chip id with only its first 8 bytes set is Turin's, any other unmasked one
    /// is Milan's or Genoa's.
    pub fn generation_hint(&self) -> GenerationHint {
        if let Some((family, model, _)) = self.cpuid() {
            return match Product::from_cpuid(family, model) {
                Some(p) => GenerationHint::Known(p),
                None => GenerationHint::Unknown,
            };
        }
        let chip = self.chip_id();
        if chip.iter().all(|&b| b == 0) {
            GenerationHint::Unknown
        } else if chip[8..].iter().all(|&b| b == 0) {
            GenerationHint::Known(Product::Turin)
        } else {
            GenerationHint::MilanOrGenoa
        }
    }

    /// The TCB layout, when the report alone tells it.
    ///
    /// # Errors
    /// [`ReportError::UnknownGeneration`] for a version 2 report with a masked chip id or a
    /// report whose CPUID names no known generation; use [`Report::tcb_layout_for`] with the
    /// product of the signing certificate instead.
    pub fn tcb_layout(&self) -> Result<TcbLayout, ReportError> {
        match self.generation_hint() {
            GenerationHint::Known(p) => Ok(layout_of(p)),
            GenerationHint::MilanOrGenoa => Ok(TcbLayout::Legacy),
            GenerationHint::Unknown => Err(ReportError::UnknownGeneration {
                version: self.version(),
                why: if self.version() >= 3 {
                    ": CPUID family/model is not Milan, Genoa or Turin"
                } else {
                    ": no CPUID fields and the chip id is masked"
                },
            }),
        }
    }

    /// The TCB layout of `product`'s reports.
    pub fn tcb_layout_for(&self, product: Product) -> TcbLayout {
        layout_of(product)
    }
}

/// The TCB layout a product's firmware writes.
pub fn layout_of(product: Product) -> TcbLayout {
    if product.uses_turin_tcb() {
        TcbLayout::Turin
    } else {
        TcbLayout::Legacy
    }
}

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
pub(crate) mod tests;
