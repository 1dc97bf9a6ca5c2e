//! MSG_KEY_REQ: asking the secure processor for a key derived from the guest's identity
//! (spec 56860, Table 19 "MSG_KEY_REQ Message Structure").
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0x00 | 4 | bit 0 ROOT_KEY_SELECT (0 VCEK, 1 VMRK); bits 2:1 KEY_SEL; rest reserved |
//! | 0x04 | 4 | reserved |
//! | 0x08 | 8 | GUEST_FIELD_SELECT (see [`GuestFieldSelect`]) |
//! | 0x10 | 4 | VMPL (at least the requesting VMPL) |
//! | 0x14 | 4 | GUEST_SVN (at most the guest's SVN) |
//! | 0x18 | 8 | TCB_VERSION (at most the committed TCB) |
//! | 0x20 | 8 | LAUNCH_MIT_VECTOR (message version 2 only) |
//!
//! The Linux `snp_derived_key_req` uAPI carries only the first 0x20 bytes.

/// Which root key the derived key comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RootKey {
    /// The chip's VCEK.
    Vcek,
    /// The VM root key (set by the migration agent or at launch).
    Vmrk,
}

/// GUEST_FIELD_SELECT: which guest fields are mixed into the derived key.
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct GuestFieldSelect(u64);

#[allow(missing_docs)]
impl GuestFieldSelect {
    pub const POLICY: u64 = 1 << 0;
    pub const IMAGE_ID: u64 = 1 << 1;
    pub const FAMILY_ID: u64 = 1 << 2;
    pub const MEASUREMENT: u64 = 1 << 3;
    pub const GUEST_SVN: u64 = 1 << 4;
    pub const TCB_VERSION: u64 = 1 << 5;
    pub const LAUNCH_MIT_VECTOR: u64 = 1 << 6;
    const ALL: u64 = (1 << 7) - 1;

    /// Checks a raw field-select value.
    ///
    /// # Errors
    /// [`KeyRequestError::UnknownFieldSelect`] when bits above 6 are set.
    pub fn new(raw: u64) -> Result<Self, KeyRequestError> {
        if raw & !Self::ALL != 0 {
            return Err(KeyRequestError::UnknownFieldSelect(raw));
        }
        Ok(Self(raw))
    }
    /// The raw bits.
    pub fn raw(self) -> u64 {
        self.0
    }
    /// Whether `bit` (one of the constants) is selected.
    pub fn has(self, bit: u64) -> bool {
        self.0 & bit != 0
    }
}

/// A derived-key request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyRequest {
    /// Root key to derive from.
    pub root_key: RootKey,
    /// Guest fields mixed into the key.
    pub field_select: GuestFieldSelect,
    /// VMPL mixed into the key (at least the requester's).
    pub vmpl: u32,
    /// Guest SVN mixed in when selected (at most the guest's).
    pub guest_svn: u32,
    /// TCB version mixed in when selected (at most the committed TCB).
    pub tcb_version: u64,
    /// Launch mitigation vector mixed in when selected (message version 2).
    pub launch_mit_vector: u64,
}

/// Size of MSG_KEY_REQ in message version 2.
pub const KEY_REQUEST_SIZE: usize = 0x28;

/// A derived-key request is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRequestError {
    /// GUEST_FIELD_SELECT has bits this ABI does not define.
    #[error("guest field select {0:#x} has unknown bits (valid: 0x0-0x7f)")]
    UnknownFieldSelect(u64),
    /// A reserved bit or byte is set.
    #[error("key request has reserved bits set at offset {0:#x}")]
    Reserved(usize),
    /// The buffer is not 0x20 or 0x28 bytes.
    #[error("key request is {0} bytes, expected 32 or 40")]
    Length(usize),
}

impl KeyRequest {
    /// The request in MSG_KEY_REQ wire form (message version 2, 0x28 bytes).
    pub fn to_bytes(&self) -> [u8; KEY_REQUEST_SIZE] {
        let mut b = [0u8; KEY_REQUEST_SIZE];
        let root = match self.root_key {
            RootKey::Vcek => 0u32,
            RootKey::Vmrk => 1,
        };
        b[0x00..0x04].copy_from_slice(&root.to_le_bytes());
        b[0x08..0x10].copy_from_slice(&self.field_select.raw().to_le_bytes());
        b[0x10..0x14].copy_from_slice(&self.vmpl.to_le_bytes());
        b[0x14..0x18].copy_from_slice(&self.guest_svn.to_le_bytes());
        b[0x18..0x20].copy_from_slice(&self.tcb_version.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&self.launch_mit_vector.to_le_bytes());
        b
    }

    /// Parses MSG_KEY_REQ (0x20 bytes for message version 1, 0x28 for version 2).
    ///
    /// # Errors
    /// [`KeyRequestError`] for a wrong length, reserved bits or unknown field-select bits.
    pub fn from_bytes(b: &[u8]) -> Result<Self, KeyRequestError> {
        if b.len() != 0x20 && b.len() != KEY_REQUEST_SIZE {
            return Err(KeyRequestError::Length(b.len()));
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(v)
        };
        let word0 = u32_at(0);
        // KEY_SEL (bits 2:1) other than 0 is not supported by this implementation: fail closed.
        if word0 & !1 != 0 {
            return Err(KeyRequestError::Reserved(0));
        }
        if u32_at(4) != 0 {
            return Err(KeyRequestError::Reserved(4));
        }
        Ok(Self {
            root_key: if word0 & 1 == 1 {
                RootKey::Vmrk
            } else {
                RootKey::Vcek
            },
            field_select: GuestFieldSelect::new(u64_at(8))?,
            vmpl: u32_at(0x10),
            guest_svn: u32_at(0x14),
            tcb_version: u64_at(0x18),
            launch_mit_vector: if b.len() == KEY_REQUEST_SIZE {
                u64_at(0x20)
            } else {
                0
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_wire_form() {
        let req = KeyRequest {
            root_key: RootKey::Vmrk,
            field_select: GuestFieldSelect::new(
                GuestFieldSelect::MEASUREMENT | GuestFieldSelect::POLICY,
            )
            .unwrap(),
            vmpl: 1,
            guest_svn: 2,
            tcb_version: 0x1122_3344_5566_7788,
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
    }

    #[test]
    fn rejects_unknown_bits() {
        assert!(GuestFieldSelect::new(1 << 7).is_err());
        let mut b = [0u8; KEY_REQUEST_SIZE];
        b[0] = 2;
        assert_eq!(
            KeyRequest::from_bytes(&b),
            Err(KeyRequestError::Reserved(0))
        );
        assert_eq!(
            KeyRequest::from_bytes(&b[..7]),
            Err(KeyRequestError::Length(7))
        );
    }
}
