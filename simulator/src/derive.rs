//! Derived keys with MSG_KEY_REQ semantics (spec 56860, "MSG_KEY_REQ Message Structure").
//!
//! MSG_KEY_REQ (0x28 bytes, little-endian; the kernel's `snp_derived_key_req` is the first
//! 0x20 bytes, message version 1):
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0x00 | 4 | bit 0 ROOT_KEY_SELECT (0 VCEK, 1 VMRK); bits 2:1 KEY_SEL (0 VLEK if loaded else VCEK, 1 VCEK, 2 VLEK); 31:3 reserved |
//! | 0x04 | 4 | reserved |
//! | 0x08 | 8 | GUEST_FIELD_SELECT: bit 0 GUEST_POLICY, 1 IMAGE_ID, 2 FAMILY_ID, 3 MEASUREMENT, 4 GUEST_SVN, 5 TCB_VERSION, 6 LAUNCH_MIT_VECTOR; 63:7 reserved |
//! | 0x10 | 4 | VMPL to mix in: at least the requester's VMPL |
//! | 0x14 | 4 | GUEST_SVN to mix in: at most the guest's SVN |
//! | 0x18 | 8 | TCB_VERSION to mix in: at most the committed TCB |
//! | 0x20 | 8 | LAUNCH_MIT_VECTOR to mix in (message version 2) |
//!
//! Reserved bits must be zero; the simulated firmware rejects the request otherwise, and
//! rejects a VMPL below the requester's (or above 3), an SVN above the guest's and a TCB with any
//! component above the committed TCB (or with its reserved bytes set). No VLEK is loaded, so
//! KEY_SEL 2 is refused.
//!
//! The key is HKDF-SHA384 with the chip's 32-byte secret (VCEK root) or the guest's VM root key
//! (VMRK root: HMAC-SHA384 of the chip secret and the guest's REPORT_ID, i.e. per guest and not
//! transferable) as input keying material, and as info a canonical encoding of the selection:
//!
//! ```text
//! "A3S Box simulated SNP derived key v1\0" ‖ root (1 byte) ‖ GUEST_FIELD_SELECT (u64) ‖ VMPL (u32)
//!   ‖ [POLICY u64] ‖ [IMAGE_ID 16] ‖ [FAMILY_ID 16] ‖ [MEASUREMENT 48] ‖ [GUEST_SVN u32]
//!   ‖ [TCB_VERSION u64] ‖ [LAUNCH_MIT_VECTOR u64]
//! ```
//!
//! where a bracketed field is present only when its select bit is set (all fixed-size,
//! little-endian). Policy, image id, family id and measurement come from the guest; SVN, TCB
//! and mitigation vector from the request, as in the firmware. So the same request for the same
//! guest on the same chip always yields the same key, every selected field changes it, and
//! unselected fields do not.

use std::fmt;

use a3s_attestation::report::{layout_of, Tcb, TcbVersion};
use a3s_attestation::Product;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha384;
use zeroize::Zeroizing;

use crate::keys::{Chip, Secret};
use crate::sign::{GuestContext, MAX_VMPL};

/// Size of MSG_KEY_REQ (message version 2, with LAUNCH_MIT_VECTOR).
pub const KEY_REQ_LEN: usize = 0x28;
/// Size of MSG_KEY_REQ in message version 1 (no LAUNCH_MIT_VECTOR), the kernel's layout.
pub const KEY_REQ_V1_LEN: usize = 0x20;
/// Size of MSG_KEY_RSP.
pub const KEY_RSP_LEN: usize = 0x40;
/// Size of a derived key.
pub const DERIVED_KEY_LEN: usize = 32;

const DOMAIN: &[u8] = b"A3S Box simulated SNP derived key v1\0";

/// The root key a derived key comes from (ROOT_KEY_SELECT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RootKey {
    /// The chip's endorsement key (the same for every guest on the chip).
    Vcek,
    /// The guest's VM root key (different for every guest).
    Vmrk,
}

/// KEY_SEL: which endorsement key a VCEK-rooted derivation uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeySelect {
    /// The VLEK if one is loaded, else the VCEK (value 0).
    #[default]
    Default,
    /// The VCEK (value 1).
    Vcek,
    /// The VLEK (value 2); the simulator has none loaded, so requests fail.
    Vlek,
}

/// GUEST_FIELD_SELECT: which guest fields are mixed into the key. Bits 63:7 are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GuestFieldSelect(u64);

impl GuestFieldSelect {
    /// Bit 0: GUEST_POLICY.
    pub const POLICY: Self = Self(1 << 0);
    /// Bit 1: IMAGE_ID.
    pub const IMAGE_ID: Self = Self(1 << 1);
    /// Bit 2: FAMILY_ID.
    pub const FAMILY_ID: Self = Self(1 << 2);
    /// Bit 3: MEASUREMENT.
    pub const MEASUREMENT: Self = Self(1 << 3);
    /// Bit 4: GUEST_SVN.
    pub const GUEST_SVN: Self = Self(1 << 4);
    /// Bit 5: TCB_VERSION.
    pub const TCB_VERSION: Self = Self(1 << 5);
    /// Bit 6: LAUNCH_MIT_VECTOR.
    pub const LAUNCH_MIT_VECTOR: Self = Self(1 << 6);
    /// No field.
    pub const NONE: Self = Self(0);
    /// Every field.
    pub const ALL: Self = Self(0x7F);

    /// Checks a raw GUEST_FIELD_SELECT.
    ///
    /// # Errors
    /// [`DeriveError::ReservedBits`] when a bit of 63:7 is set.
    pub fn new(raw: u64) -> Result<Self, DeriveError> {
        if raw & !Self::ALL.0 != 0 {
            return Err(DeriveError::ReservedBits {
                field: "GUEST_FIELD_SELECT",
                value: raw,
            });
        }
        Ok(Self(raw))
    }

    /// The raw value.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for GuestFieldSelect {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// A derived-key request (MSG_KEY_REQ), checked for reserved bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyRequest {
    /// ROOT_KEY_SELECT.
    pub root_key: RootKey,
    /// KEY_SEL.
    pub key_select: KeySelect,
    /// GUEST_FIELD_SELECT.
    pub field_select: GuestFieldSelect,
    /// VMPL to mix in.
    pub vmpl: u32,
    /// GUEST_SVN to mix in (when selected; always checked).
    pub guest_svn: u32,
    /// TCB_VERSION to mix in (when selected; always checked).
    pub tcb_version: TcbVersion,
    /// LAUNCH_MIT_VECTOR to mix in (when selected).
    pub launch_mit_vector: u64,
}

impl KeyRequest {
    /// A request for a VCEK-rooted key at VMPL 0 mixing in `field_select`, with SVN, TCB and
    /// mitigation vector zero.
    pub fn new(field_select: GuestFieldSelect) -> Self {
        Self {
            root_key: RootKey::Vcek,
            key_select: KeySelect::Default,
            field_select,
            vmpl: 0,
            guest_svn: 0,
            tcb_version: TcbVersion(0),
            launch_mit_vector: 0,
        }
    }

    /// Parses MSG_KEY_REQ: 0x28 bytes (message version 2) or 0x20 (version 1, the mitigation
    /// vector is then zero).
    ///
    /// # Errors
    /// [`DeriveError::Length`] for another length, [`DeriveError::ReservedBits`] when a reserved
    /// bit is set, [`DeriveError::KeySelect`] for the reserved KEY_SEL value 3.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DeriveError> {
        if bytes.len() != KEY_REQ_LEN && bytes.len() != KEY_REQ_V1_LEN {
            return Err(DeriveError::Length(bytes.len()));
        }
        let u32_at = |at: usize| {
            let mut v = [0u8; 4];
            v.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(v)
        };
        let u64_at = |at: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(v)
        };
        let select = u32_at(0x00);
        if select >> 3 != 0 {
            return Err(DeriveError::ReservedBits {
                field: "ROOT_KEY_SELECT",
                value: select.into(),
            });
        }
        let reserved = u32_at(0x04);
        if reserved != 0 {
            return Err(DeriveError::ReservedBits {
                field: "reserved (0x04)",
                value: reserved.into(),
            });
        }
        let key_select = match (select >> 1) & 0x3 {
            0 => KeySelect::Default,
            1 => KeySelect::Vcek,
            2 => KeySelect::Vlek,
            other => return Err(DeriveError::KeySelect(other)),
        };
        Ok(Self {
            root_key: if select & 1 == 0 {
                RootKey::Vcek
            } else {
                RootKey::Vmrk
            },
            key_select,
            field_select: GuestFieldSelect::new(u64_at(0x08))?,
            vmpl: u32_at(0x10),
            guest_svn: u32_at(0x14),
            tcb_version: TcbVersion(u64_at(0x18)),
            launch_mit_vector: if bytes.len() == KEY_REQ_LEN {
                u64_at(0x20)
            } else {
                0
            },
        })
    }

    /// Encodes MSG_KEY_REQ (message version 2, 0x28 bytes).
    pub fn to_bytes(&self) -> [u8; KEY_REQ_LEN] {
        let mut b = [0u8; KEY_REQ_LEN];
        let root = match self.root_key {
            RootKey::Vcek => 0u32,
            RootKey::Vmrk => 1,
        };
        let key_sel = match self.key_select {
            KeySelect::Default => 0u32,
            KeySelect::Vcek => 1,
            KeySelect::Vlek => 2,
        };
        b[0x00..0x04].copy_from_slice(&(root | key_sel << 1).to_le_bytes());
        b[0x08..0x10].copy_from_slice(&self.field_select.raw().to_le_bytes());
        b[0x10..0x14].copy_from_slice(&self.vmpl.to_le_bytes());
        b[0x14..0x18].copy_from_slice(&self.guest_svn.to_le_bytes());
        b[0x18..0x20].copy_from_slice(&self.tcb_version.0.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&self.launch_mit_vector.to_le_bytes());
        b
    }
}

/// A derived key: 32 bytes, zeroed on drop, never printed.
pub struct DerivedKey(Zeroizing<[u8; DERIVED_KEY_LEN]>);

impl DerivedKey {
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; DERIVED_KEY_LEN] {
        &self.0
    }

    /// MSG_KEY_RSP: STATUS 0 at 0x00, reserved to 0x20, then the key.
    pub fn to_response(&self) -> Zeroizing<[u8; KEY_RSP_LEN]> {
        let mut rsp = Zeroizing::new([0u8; KEY_RSP_LEN]);
        rsp[0x20..].copy_from_slice(self.0.as_ref());
        rsp
    }
}

impl fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DerivedKey([redacted])")
    }
}

/// Why the simulated firmware refused a derived-key request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeriveError {
    /// MSG_KEY_REQ is neither 0x20 nor 0x28 bytes long.
    #[error("MSG_KEY_REQ is {0} bytes long, expected 0x20 or 0x28")]
    Length(usize),
    /// A reserved bit is set.
    #[error("{field} {value:#x} has reserved bits set")]
    ReservedBits {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// KEY_SEL is the reserved value 3.
    #[error("KEY_SEL {0} is reserved")]
    KeySelect(u32),
    /// A VLEK-rooted key was requested, but no VLEK is loaded.
    #[error("KEY_SEL asks for the VLEK, but the simulated firmware has none loaded")]
    NoVlek,
    /// The VMPL is above 3.
    #[error("VMPL {0} does not exist (highest is {MAX_VMPL})")]
    VmplOutOfRange(u32),
    /// The VMPL is more privileged than the requester.
    #[error("VMPL {requested} is more privileged than the requesting guest's VMPL {guest}")]
    VmplBelowGuest {
        /// The VMPL asked for.
        requested: u32,
        /// The requester's VMPL.
        guest: u32,
    },
    /// The SVN is above the guest's.
    #[error("guest SVN {requested} exceeds the guest's SVN {guest}")]
    SvnAboveGuest {
        /// The SVN asked for.
        requested: u32,
        /// The guest's SVN.
        guest: u32,
    },
    /// The TCB exceeds the committed TCB in some component, or has reserved bytes set.
    #[error("TCB version {requested:#018x} exceeds the committed TCB {committed:#018x}")]
    TcbAboveCommitted {
        /// The TCB asked for, raw.
        requested: u64,
        /// The committed TCB, raw.
        committed: u64,
    },
}

/// Derives the key `request` asks for, for `guest` on `chip`, applying the firmware's rules.
///
/// # Errors
/// [`DeriveError`] naming the rule the request breaks.
pub fn derive_key(
    chip: &Chip,
    guest: &GuestContext,
    request: &KeyRequest,
) -> Result<DerivedKey, DeriveError> {
    check(chip.product(), chip.config().tcb, guest, request)?;
    let root = match request.root_key {
        RootKey::Vcek => Zeroizing::new(*chip.secret.as_bytes()),
        RootKey::Vmrk => vmrk(&chip.secret, guest),
    };
    let info = canonical_info(guest, request);
    let mut key = Zeroizing::new([0u8; DERIVED_KEY_LEN]);
    Hkdf::<Sha384>::new(Some(DOMAIN), root.as_ref())
        .expand(&info, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA384 output length");
    Ok(DerivedKey(key))
}

fn check(
    product: Product,
    committed: Tcb,
    guest: &GuestContext,
    request: &KeyRequest,
) -> Result<(), DeriveError> {
    if request.key_select == KeySelect::Vlek {
        return Err(DeriveError::NoVlek);
    }
    if request.vmpl > MAX_VMPL {
        return Err(DeriveError::VmplOutOfRange(request.vmpl));
    }
    if request.vmpl < guest.vmpl {
        return Err(DeriveError::VmplBelowGuest {
            requested: request.vmpl,
            guest: guest.vmpl,
        });
    }
    if request.guest_svn > guest.guest_svn {
        return Err(DeriveError::SvnAboveGuest {
            requested: request.guest_svn,
            guest: guest.guest_svn,
        });
    }
    let layout = layout_of(product);
    let requested = request.tcb_version.decode(layout);
    // Reserved bytes of the TCB_VERSION must be zero: decoding and re-encoding keeps them only
    // then.
    if requested.encode(layout) != request.tcb_version || !committed.meets(&requested) {
        return Err(DeriveError::TcbAboveCommitted {
            requested: request.tcb_version.0,
            committed: committed.encode(layout).0,
        });
    }
    Ok(())
}

/// The guest's VM root key: HMAC-SHA384(chip secret, "VMRK" ‖ REPORT_ID), first 32 bytes.
fn vmrk(chip_secret: &Secret, guest: &GuestContext) -> Zeroizing<[u8; 32]> {
    let mut mac = <Hmac<Sha384> as Mac>::new_from_slice(chip_secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(b"VMRK");
    mac.update(&guest.report_id);
    let tag = Zeroizing::new(mac.finalize().into_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&tag[..32]);
    out
}

/// The canonical encoding of the selected fields (see the module documentation).
fn canonical_info(guest: &GuestContext, request: &KeyRequest) -> Vec<u8> {
    let select = request.field_select;
    let mut info = Vec::with_capacity(DOMAIN.len() + 1 + 8 + 4 + 8 + 16 + 16 + 48 + 4 + 8 + 8);
    info.extend_from_slice(DOMAIN);
    info.push(match request.root_key {
        RootKey::Vcek => 0,
        RootKey::Vmrk => 1,
    });
    info.extend_from_slice(&select.raw().to_le_bytes());
    info.extend_from_slice(&request.vmpl.to_le_bytes());
    if select.contains(GuestFieldSelect::POLICY) {
        info.extend_from_slice(&guest.policy.raw().to_le_bytes());
    }
    if select.contains(GuestFieldSelect::IMAGE_ID) {
        info.extend_from_slice(&guest.image_id);
    }
    if select.contains(GuestFieldSelect::FAMILY_ID) {
        info.extend_from_slice(&guest.family_id);
    }
    if select.contains(GuestFieldSelect::MEASUREMENT) {
        info.extend_from_slice(&guest.measurement);
    }
    if select.contains(GuestFieldSelect::GUEST_SVN) {
        info.extend_from_slice(&request.guest_svn.to_le_bytes());
    }
    if select.contains(GuestFieldSelect::TCB_VERSION) {
        info.extend_from_slice(&request.tcb_version.0.to_le_bytes());
    }
    if select.contains(GuestFieldSelect::LAUNCH_MIT_VECTOR) {
        info.extend_from_slice(&request.launch_mit_vector.to_le_bytes());
    }
    info
}
