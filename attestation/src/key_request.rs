//! MSG_KEY_REQ: asking the secure processor for a key derived from the guest's identity
//! (spec 56860, Table 19 "MSG_KEY_REQ Message Structure").
//!
//! This is the one model of the request: the hardware attester sends it to the firmware and
//! the simulator derives keys from it.
//!
//! MSG_KEY_REQ is 0x28 bytes, little-endian (message version 2); the Linux
//! `snp_derived_key_req` uAPI carries only the first 0x20 bytes (message version 1, no
//! LAUNCH_MIT_VECTOR):
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0x00 | 4 | bit 0 ROOT_KEY_SELECT (0 VCEK, 1 VMRK); bits 2:1 KEY_SEL (0 VLEK if loaded else VCEK, 1 VCEK, 2 VLEK, 3 reserved); 31:3 reserved |
//! | 0x04 | 4 | reserved |
//! | 0x08 | 8 | GUEST_FIELD_SELECT (see [`GuestFieldSelect`]); 63:7 reserved |
//! | 0x10 | 4 | VMPL to mix in: at least the requester's VMPL |
//! | 0x14 | 4 | GUEST_SVN to mix in: at most the guest's SVN |
//! | 0x18 | 8 | TCB_VERSION to mix in: at most the committed TCB |
//! | 0x20 | 8 | LAUNCH_MIT_VECTOR to mix in (message version 2 only) |
//!
//! Parsing fails closed: a reserved bit or byte set, the reserved KEY_SEL value 3 or another
//! length is an error, never silently ignored.

use crate::report::TcbVersion;

/// Size of MSG_KEY_REQ in message version 2 (with LAUNCH_MIT_VECTOR).
pub const KEY_REQUEST_SIZE: usize = 0x28;
/// Size of MSG_KEY_REQ in message version 1 (no LAUNCH_MIT_VECTOR): the kernel uAPI's layout.
pub const KEY_REQUEST_V1_SIZE: usize = 0x20;

/// The root key a derived key comes from (ROOT_KEY_SELECT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RootKey {
    /// The chip's endorsement key (the same for every guest on the chip).
    Vcek,
    /// The guest's VM root key (set by the migration agent or at launch; per guest).
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
    /// The VLEK (value 2); the firmware refuses the request when none is loaded.
    Vlek,
}

/// GUEST_FIELD_SELECT: which guest fields are mixed into the derived key. Bits 63:7 are zero.
///
/// | bit | field |
/// |-----|-------|
/// | 0 | GUEST_POLICY |
/// | 1 | IMAGE_ID |
/// | 2 | FAMILY_ID |
/// | 3 | MEASUREMENT |
/// | 4 | GUEST_SVN |
/// | 5 | TCB_VERSION |
/// | 6 | LAUNCH_MIT_VECTOR |
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
    /// [`KeyRequestError::ReservedBits`] when a bit of 63:7 is set.
    pub fn new(raw: u64) -> Result<Self, KeyRequestError> {
        if raw & !Self::ALL.0 != 0 {
            return Err(KeyRequestError::ReservedBits {
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
    /// VMPL to mix in (at least the requester's).
    pub vmpl: u32,
    /// GUEST_SVN to mix in when selected (at most the guest's; always checked).
    pub guest_svn: u32,
    /// TCB_VERSION to mix in when selected (at most the committed TCB; always checked).
    pub tcb_version: TcbVersion,
    /// LAUNCH_MIT_VECTOR to mix in when selected (message version 2 only).
    pub launch_mit_vector: u64,
}

/// A MSG_KEY_REQ is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRequestError {
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
}

impl KeyRequest {
    /// A request for a VCEK-rooted key (KEY_SEL default) at VMPL 0 mixing in `field_select`,
    /// with SVN, TCB and mitigation vector zero.
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
    /// [`KeyRequestError::Length`] for another length, [`KeyRequestError::ReservedBits`] when a
    /// reserved bit is set, [`KeyRequestError::KeySelect`] for the reserved KEY_SEL value 3.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyRequestError> {
        if bytes.len() != KEY_REQUEST_SIZE && bytes.len() != KEY_REQUEST_V1_SIZE {
            return Err(KeyRequestError::Length(bytes.len()));
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
            return Err(KeyRequestError::ReservedBits {
                field: "ROOT_KEY_SELECT",
                value: select.into(),
            });
        }
        let reserved = u32_at(0x04);
        if reserved != 0 {
            return Err(KeyRequestError::ReservedBits {
                field: "reserved (0x04)",
                value: reserved.into(),
            });
        }
        let key_select = match (select >> 1) & 0x3 {
            0 => KeySelect::Default,
            1 => KeySelect::Vcek,
            2 => KeySelect::Vlek,
            other => return Err(KeyRequestError::KeySelect(other)),
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
            launch_mit_vector: if bytes.len() == KEY_REQUEST_SIZE {
                u64_at(0x20)
            } else {
                0
            },
        })
    }

    /// Encodes MSG_KEY_REQ (message version 2, 0x28 bytes).
    pub fn to_bytes(&self) -> [u8; KEY_REQUEST_SIZE] {
        let mut b = [0u8; KEY_REQUEST_SIZE];
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

    /// Encodes the kernel uAPI's `snp_derived_key_req`: the first 0x20 bytes of MSG_KEY_REQ
    /// (message version 1; the mitigation vector is not sent).
    pub fn to_v1_bytes(&self) -> [u8; KEY_REQUEST_V1_SIZE] {
        let mut v1 = [0u8; KEY_REQUEST_V1_SIZE];
        v1.copy_from_slice(&self.to_bytes()[..KEY_REQUEST_V1_SIZE]);
        v1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_wire_form() {
        let req = KeyRequest {
            root_key: RootKey::Vmrk,
            key_select: KeySelect::Default,
            field_select: GuestFieldSelect::MEASUREMENT | GuestFieldSelect::POLICY,
            vmpl: 1,
            guest_svn: 2,
            tcb_version: TcbVersion(0x1122_3344_5566_7788),
            launch_mit_vector: 3,
        };
        let b = req.to_bytes();
        assert_eq!(b[0], 1);
        assert_eq!(b[8], 0x09);
        assert_eq!(KeyRequest::from_bytes(&b).unwrap(), req);
        assert_eq!(
            KeyRequest::from_bytes(&b[..0x20])
                .unwrap()
                .launch_mit_vector,
            0
        );
        // The kernel uAPI form is exactly the first 0x20 bytes.
        assert_eq!(req.to_v1_bytes(), b[..0x20]);
    }

    #[test]
    fn rejects_unknown_bits() {
        assert_eq!(
            GuestFieldSelect::new(1 << 7),
            Err(KeyRequestError::ReservedBits {
                field: "GUEST_FIELD_SELECT",
                value: 1 << 7
            })
        );
        // KEY_SEL (bits 2:1) is modelled: 1 selects the VCEK rather than being refused.
        let mut b = [0u8; KEY_REQUEST_SIZE];
        b[0] = 2;
        assert_eq!(
            KeyRequest::from_bytes(&b).map(|r| r.key_select),
            Ok(KeySelect::Vcek)
        );
        // Bits 31:3 of the first word are reserved.
        b[0] = 1 << 3;
        assert_eq!(
            KeyRequest::from_bytes(&b),
            Err(KeyRequestError::ReservedBits {
                field: "ROOT_KEY_SELECT",
                value: 1 << 3
            })
        );
        assert_eq!(
            KeyRequest::from_bytes(&b[..7]),
            Err(KeyRequestError::Length(7))
        );
    }

    #[test]
    fn key_request_round_trips_its_wire_layout() {
        let req = KeyRequest {
            root_key: RootKey::Vmrk,
            key_select: KeySelect::Vcek,
            field_select: GuestFieldSelect::MEASUREMENT | GuestFieldSelect::TCB_VERSION,
            vmpl: 2,
            guest_svn: 3,
            tcb_version: TcbVersion(0x1122_3344_5566_7788),
            launch_mit_vector: 0x99,
        };
        let bytes = req.to_bytes();
        assert_eq!(bytes.len(), 0x28);
        assert_eq!(&bytes[0x00..0x04], &[0b011, 0, 0, 0]);
        assert_eq!(&bytes[0x08..0x10], &[0x28, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[0x10..0x14], &[2, 0, 0, 0]);
        assert_eq!(&bytes[0x14..0x18], &[3, 0, 0, 0]);
        assert_eq!(&bytes[0x18..0x20], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&bytes[0x20..0x28], &0x99u64.to_le_bytes());
        assert_eq!(KeyRequest::from_bytes(&bytes), Ok(req));
        // The kernel's 0x20-byte layout (message version 1) has no mitigation vector.
        assert_eq!(
            KeyRequest::from_bytes(&bytes[..0x20]),
            Ok(KeyRequest {
                launch_mit_vector: 0,
                ..req
            })
        );
    }

    #[test]
    fn key_request_parsing_rejects_reserved_bits_and_lengths() {
        let good = KeyRequest::new(GuestFieldSelect::ALL).to_bytes();
        assert_eq!(
            KeyRequest::from_bytes(&good[..0x27]),
            Err(KeyRequestError::Length(0x27))
        );
        let mut b = good;
        b[0] = 0b1000;
        assert!(matches!(
            KeyRequest::from_bytes(&b),
            Err(KeyRequestError::ReservedBits { .. })
        ));
        let mut b = good;
        b[0] = 0b110;
        assert_eq!(
            KeyRequest::from_bytes(&b),
            Err(KeyRequestError::KeySelect(3))
        );
        let mut b = good;
        b[0x04] = 1;
        assert!(matches!(
            KeyRequest::from_bytes(&b),
            Err(KeyRequestError::ReservedBits { .. })
        ));
        let mut b = good;
        b[0x08] = 0x80;
        assert!(matches!(
            KeyRequest::from_bytes(&b),
            Err(KeyRequestError::ReservedBits { .. })
        ));
    }
}
