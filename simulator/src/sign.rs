//! Report generation: what SNP firmware does for MSG_REPORT_REQ, with a simulated chip.
//!
//! The caller (the host side of `--tee-simulate`) supplies what the firmware would know about
//! the guest ([`GuestContext`]: policy, measurement, host data, ID block digests, guest SVN,
//! report id) and what the guest asks for ([`ReportRequest`]: REPORT_DATA, VMPL). The chip
//! supplies the rest: CHIP_ID, every TCB (current = committed = launch = reported = the TCB its
//! VCEK was issued for), firmware versions, platform info, CPUID identification and the
//! signature. The report is encoded by [`ReportFields::encode`] (the single copy of the layout)
//! and signed with the chip's VCEK: ECDSA P-384 over SHA-384 of bytes `0x000..0x2A0`, R and S
//! stored little-endian in 72-byte fields.

use a3s_attestation::report::{
    GuestPolicy, InvalidPolicy, Report, ReportError, ReportFields, TcbVersion,
    SIG_ALGO_ECDSA_P384_SHA384, SIG_COMPONENT_LEN,
};
use a3s_attestation::Product;
use p384::ecdsa::signature::Signer;
use p384::ecdsa::Signature;
use rand_core::{OsRng, RngCore};

use crate::keys::Chip;

/// Highest VMPL (VMPL 0 is the most privileged).
pub const MAX_VMPL: u32 = 3;

/// The default guest policy: ABI 0.0, SMT allowed, reserved bit 17 set.
pub const DEFAULT_POLICY: u64 = 0x3_0000;

/// What the firmware holds about a launched guest; stable for the guest's lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestContext {
    /// GUEST_POLICY given at launch.
    pub policy: GuestPolicy,
    /// FAMILY_ID from the ID block.
    pub family_id: [u8; 16],
    /// IMAGE_ID from the ID block.
    pub image_id: [u8; 16],
    /// The launch measurement.
    pub measurement: [u8; 48],
    /// HOST_DATA given by the host at launch.
    pub host_data: [u8; 32],
    /// SHA-384 of the ID key (zero without an ID block).
    pub id_key_digest: [u8; 48],
    /// SHA-384 of the author key, if the ID block was signed with one (sets AUTHOR_KEY_EN).
    pub author_key_digest: Option<[u8; 48]>,
    /// GUEST_SVN from the ID block; derived-key requests may ask for at most this.
    pub guest_svn: u32,
    /// The mitigation vector verified at launch (version 5 reports, derived keys).
    pub launch_mit_vector: u64,
    /// REPORT_ID: random at launch, the same in every report of this guest.
    pub report_id: [u8; 32],
    /// The VMPL the requesting guest software runs at; reports and derived keys may be
    /// requested for this VMPL or a less privileged one (a higher number).
    pub vmpl: u32,
}

impl GuestContext {
    /// A guest launched with `measurement`, the default policy, no ID block, VMPL 0 and a fresh
    /// random REPORT_ID.
    pub fn launch(measurement: [u8; 48]) -> Self {
        let mut report_id = [0u8; 32];
        OsRng.fill_bytes(&mut report_id);
        Self {
            policy: GuestPolicy::new(DEFAULT_POLICY)
                .expect("0x30000 has bit 17 set and 63:26 clear"),
            family_id: [0; 16],
            image_id: [0; 16],
            measurement,
            host_data: [0; 32],
            id_key_digest: [0; 48],
            author_key_digest: None,
            guest_svn: 0,
            launch_mit_vector: 0,
            report_id,
            vmpl: 0,
        }
    }

    /// Sets the guest policy from its raw value.
    ///
    /// # Errors
    /// [`InvalidPolicy`] when bit 17 is clear or a bit of 63:26 is set.
    pub fn with_policy(mut self, raw: u64) -> Result<Self, InvalidPolicy> {
        self.policy = GuestPolicy::new(raw)?;
        Ok(self)
    }
}

/// The report format version the simulated firmware writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReportVersion {
    /// Version 2: no CPUID fields.
    V2,
    /// Version 3: CPUID family, model and stepping.
    V3,
    /// Version 5: also the launch and current mitigation vectors (current firmware).
    #[default]
    V5,
}

impl ReportVersion {
    /// The VERSION field value.
    pub fn number(self) -> u32 {
        match self {
            Self::V2 => 2,
            Self::V3 => 3,
            Self::V5 => 5,
        }
    }
}

/// A request for a report: the guest it is for and what the guest asks (MSG_REPORT_REQ).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRequest {
    /// The guest the report describes.
    pub guest: GuestContext,
    /// REPORT_DATA chosen by the guest (e.g. a hash binding a key and a nonce).
    pub report_data: [u8; 64],
    /// The VMPL to report: at least `guest.vmpl`, at most [`MAX_VMPL`].
    pub vmpl: u32,
    /// The format version to write.
    pub version: ReportVersion,
    /// Zero CHIP_ID and set MASK_CHIP_KEY, as a guest policy of the host may ask.
    pub mask_chip_id: bool,
}

impl ReportRequest {
    /// A version 5 request at the guest's own VMPL, chip id not masked.
    pub fn new(guest: GuestContext, report_data: [u8; 64]) -> Self {
        let vmpl = guest.vmpl;
        Self {
            guest,
            report_data,
            vmpl,
            version: ReportVersion::V5,
            mask_chip_id: false,
        }
    }
}

/// Why a report could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The requested VMPL is above [`MAX_VMPL`].
    #[error("VMPL {0} does not exist (highest is {MAX_VMPL})")]
    VmplOutOfRange(u32),
    /// The requested VMPL is more privileged than the requester.
    #[error("VMPL {requested} is more privileged than the requesting guest's VMPL {guest}")]
    VmplBelowGuest {
        /// The VMPL asked for.
        requested: u32,
        /// The requester's VMPL.
        guest: u32,
    },
    /// The fields do not make a valid report (a bug: every field is checked before).
    #[error("the report fields are invalid")]
    Encode(#[source] ReportError),
    /// The VCEK failed to sign.
    #[error("signing the report with the VCEK")]
    Sign(#[source] p384::ecdsa::Error),
}

/// CPUID family, model and stepping of the simulated chips of `product`.
pub fn cpuid_of(product: Product) -> (u8, u8, u8) {
    match product {
        Product::Milan => (0x19, 0x01, 0x01),
        Product::Genoa => (0x19, 0x11, 0x01),
        _ => (0x1A, 0x02, 0x01),
    }
}

/// REPORT_ID_MA when the guest has no migration agent.
const NO_MIGRATION_AGENT: [u8; 32] = [0xFF; 32];
/// key info bit 0: AUTHOR_KEY_EN.
const AUTHOR_KEY_EN: u32 = 1;
/// key info bit 1: MASK_CHIP_KEY. SIGNING_KEY (bits 4:2) stays 0, the VCEK.
const MASK_CHIP_KEY: u32 = 1 << 1;

/// Produces the report `request` asks for, signed with `chip`'s VCEK.
///
/// # Errors
/// [`SignError`] when the VMPL is not allowed, or (never expected) encoding or signing fails.
pub fn sign_report(chip: &Chip, request: &ReportRequest) -> Result<Report, SignError> {
    let guest = &request.guest;
    if request.vmpl > MAX_VMPL {
        return Err(SignError::VmplOutOfRange(request.vmpl));
    }
    if request.vmpl < guest.vmpl {
        return Err(SignError::VmplBelowGuest {
            requested: request.vmpl,
            guest: guest.vmpl,
        });
    }
    let product = chip.product();
    let config = chip.config();
    let tcb: TcbVersion = config.tcb_version(product);
    let version = request.version;
    let mut key_info = 0;
    if guest.author_key_digest.is_some() {
        key_info |= AUTHOR_KEY_EN;
    }
    if request.mask_chip_id {
        key_info |= MASK_CHIP_KEY;
    }
    let v5 = version == ReportVersion::V5;
    let mut fields = ReportFields {
        version: version.number(),
        guest_svn: guest.guest_svn,
        policy: guest.policy.raw(),
        family_id: guest.family_id,
        image_id: guest.image_id,
        vmpl: request.vmpl,
        sig_algo: SIG_ALGO_ECDSA_P384_SHA384,
        current_tcb: tcb,
        platform_info: config.platform_info,
        key_info,
        report_data: request.report_data,
        measurement: guest.measurement,
        host_data: guest.host_data,
        id_key_digest: guest.id_key_digest,
        author_key_digest: guest.author_key_digest.unwrap_or([0; 48]),
        report_id: guest.report_id,
        report_id_ma: NO_MIGRATION_AGENT,
        reported_tcb: tcb,
        cpuid: (version != ReportVersion::V2).then(|| cpuid_of(product)),
        chip_id: if request.mask_chip_id {
            [0; 64]
        } else {
            *chip.id().as_bytes()
        },
        committed_tcb: tcb,
        current_version: config.firmware,
        committed_version: config.firmware,
        launch_tcb: tcb,
        launch_mit_vector: v5.then_some(guest.launch_mit_vector),
        current_mit_vector: v5.then_some(config.mit_vector),
        signature_r: [0; SIG_COMPONENT_LEN],
        signature_s: [0; SIG_COMPONENT_LEN],
    };
    let unsigned = fields.encode().map_err(SignError::Encode)?;
    let signature: Signature = chip
        .vcek_key
        .0
        .try_sign(unsigned.signed_bytes())
        .map_err(SignError::Sign)?;
    let (r, s) = signature.split_bytes();
    fields.signature_r = little_endian(&r);
    fields.signature_s = little_endian(&s);
    fields.encode().map_err(SignError::Encode)
}

/// A big-endian scalar as the report's 72-byte little-endian field (high bytes zero).
fn little_endian(big_endian: &[u8]) -> [u8; SIG_COMPONENT_LEN] {
    let mut out = [0u8; SIG_COMPONENT_LEN];
    for (o, b) in out.iter_mut().zip(big_endian.iter().rev()) {
        *o = *b;
    }
    out
}
