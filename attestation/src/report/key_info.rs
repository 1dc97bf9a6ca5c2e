//! The key-information word at offset 0x48 (spec 56860, Table 22, "AUTHOR_KEY_EN ... SIGNING_KEY").
//!
//! | bits | field |
//! |------|-------|
//! | 0    | AUTHOR_KEY_EN: the digest of the author key is present in AUTHOR_KEY_DIGEST |
//! | 1    | MASK_CHIP_KEY: CHIP_ID is zeroed |
//! | 4:2  | SIGNING_KEY: 0 VCEK, 1 VLEK, 7 none; other values reserved |
//! | 31:5 | reserved, must be zero |

use serde::Serialize;

/// Which key signed a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key (cloud-provider key).
    Vlek,
    /// The report is not signed.
    None,
}

impl SigningKey {
    /// The lower-case name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vcek => "vcek",
            Self::Vlek => "vlek",
            Self::None => "none",
        }
    }
}

/// A checked key-information word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyInfo(u32);

/// The key-information word has reserved bits set or an unknown signing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("key info {0:#x} is invalid (reserved bits set or unknown signing key)")]
pub struct InvalidKeyInfo(pub u32);

impl KeyInfo {
    /// Checks a raw key-information word.
    ///
    /// # Errors
    /// [`InvalidKeyInfo`] when bits 31:5 are not zero or SIGNING_KEY is a reserved value.
    pub fn new(raw: u32) -> Result<Self, InvalidKeyInfo> {
        if raw >> 5 != 0 || !matches!((raw >> 2) & 0x7, 0 | 1 | 7) {
            return Err(InvalidKeyInfo(raw));
        }
        Ok(Self(raw))
    }

    /// The raw word.
    pub fn raw(self) -> u32 {
        self.0
    }
    /// AUTHOR_KEY_DIGEST holds the digest of an author key.
    pub fn author_key_en(self) -> bool {
        self.0 & 1 != 0
    }
    /// CHIP_ID was masked (zeroed) by the guest's request.
    pub fn mask_chip_key(self) -> bool {
        self.0 & 2 != 0
    }
    /// The key that signed the report.
    pub fn signing_key(self) -> SigningKey {
        match (self.0 >> 2) & 0x7 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            _ => SigningKey::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_signing_keys() {
        assert_eq!(KeyInfo::new(0).unwrap().signing_key(), SigningKey::Vcek);
        assert_eq!(KeyInfo::new(0x4).unwrap().signing_key(), SigningKey::Vlek);
        assert_eq!(KeyInfo::new(0x1c).unwrap().signing_key(), SigningKey::None);
        assert!(KeyInfo::new(0x3).unwrap().mask_chip_key());
    }

    #[test]
    fn rejects_reserved_signing_keys_and_bits() {
        assert!(KeyInfo::new(2 << 2).is_err());
        assert!(KeyInfo::new(1 << 5).is_err());
    }
}
