//! Derived keys with MSG_KEY_REQ semantics (spec 56860, "MSG_KEY_REQ Message Structure").
//!
//! The request is [`a3s_attestation::key_request::KeyRequest`], the same model the hardware
//! attester sends to the firmware; its wire layout, parsing and reserved-bit checks live there.
//! This module is the simulated firmware's side: the rules it applies and the derivation.
//!
//! The simulated firmware rejects a VMPL below the requester's (or above 3), an SVN above the
//! guest's and a TCB with any component above the committed TCB (or with its reserved bytes
//! set). No VLEK is loaded, so KEY_SEL 2 is refused.
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

use a3s_attestation::key_request::{GuestFieldSelect, KeyRequest, KeySelect, RootKey};
use a3s_attestation::report::{layout_of, Tcb};
use a3s_attestation::Product;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha384;
use zeroize::Zeroizing;

use crate::keys::{Chip, Secret};
use crate::sign::{GuestContext, MAX_VMPL};

/// Size of MSG_KEY_RSP.
pub const KEY_RSP_LEN: usize = 0x40;
/// Size of a derived key.
pub const DERIVED_KEY_LEN: usize = 32;

const DOMAIN: &[u8] = b"A3S Box simulated SNP derived key v1\0";

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
