//! GUEST_POLICY (spec 56860, Table 9 "Guest Policy Structure").
//!
//! | bits  | field |
//! |-------|-------|
//! | 7:0   | ABI_MINOR |
//! | 15:8  | ABI_MAJOR |
//! | 16    | SMT: SMT is allowed |
//! | 17    | reserved, must be one |
//! | 18    | MIGRATE_MA: association with a migration agent is allowed |
//! | 19    | DEBUG: debugging is allowed |
//! | 20    | SINGLE_SOCKET: the guest may run on one socket only |
//! | 21    | CXL_ALLOW |
//! | 22    | MEM_AES_256_XTS |
//! | 23    | RAPL_DIS |
//! | 24    | CIPHERTEXT_HIDING |
//! | 25    | PAGE_SWAP_DISABLE |
//! | 63:26 | reserved, must be zero |

use serde::Serialize;

/// A guest policy whose reserved bits have been checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestPolicy(u64);

/// Bit 17 is reserved and must be one.
const RESERVED_ONE: u64 = 1 << 17;
/// Bits 63:26 are reserved and must be zero.
const MUST_BE_ZERO: u64 = !((1 << 26) - 1);

/// The policy value violates the reserved-bit rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("guest policy {0:#x} has reserved bits wrong (bit 17 must be 1, bits 63:26 must be 0)")]
pub struct InvalidPolicy(pub u64);

impl GuestPolicy {
    /// Checks the reserved bits of a raw policy value.
    ///
    /// # Errors
    /// [`InvalidPolicy`] when bit 17 is clear or any of bits 63:26 is set.
    pub fn new(raw: u64) -> Result<Self, InvalidPolicy> {
        if raw & RESERVED_ONE == 0 || raw & MUST_BE_ZERO != 0 {
            return Err(InvalidPolicy(raw));
        }
        Ok(Self(raw))
    }

    /// The raw 64-bit value.
    pub fn raw(self) -> u64 {
        self.0
    }

    fn bit(self, n: u32) -> bool {
        self.0 & (1 << n) != 0
    }

    /// Minimum ABI minor version required by the guest.
    pub fn abi_minor(self) -> u8 {
        self.0.to_le_bytes()[0]
    }
    /// Minimum ABI major version required by the guest.
    pub fn abi_major(self) -> u8 {
        self.0.to_le_bytes()[1]
    }
    /// SMT is allowed.
    pub fn smt_allowed(self) -> bool {
        self.bit(16)
    }
    /// Association with a migration agent is allowed.
    pub fn migrate_ma(self) -> bool {
        self.bit(18)
    }
    /// Debugging is allowed: the host can read and write guest memory.
    pub fn debug(self) -> bool {
        self.bit(19)
    }
    /// The guest may only run on a single socket.
    pub fn single_socket(self) -> bool {
        self.bit(20)
    }
    /// CXL may be populated with guest memory.
    pub fn cxl_allow(self) -> bool {
        self.bit(21)
    }
    /// AES-256-XTS memory encryption is required.
    pub fn mem_aes_256_xts(self) -> bool {
        self.bit(22)
    }
    /// Running average power limit must be disabled.
    pub fn rapl_dis(self) -> bool {
        self.bit(23)
    }
    /// Ciphertext hiding must be enabled.
    pub fn ciphertext_hiding(self) -> bool {
        self.bit(24)
    }
    /// Guest page swapping (SNP_PAGE_MOVE/SWAP) is disabled.
    pub fn page_swap_disable(self) -> bool {
        self.bit(25)
    }

    /// The decoded view used in JSON output and policy input.
    pub fn decoded(self) -> PolicyView {
        PolicyView {
            raw: format!("{:#x}", self.0),
            abi_major: self.abi_major(),
            abi_minor: self.abi_minor(),
            smt_allowed: self.smt_allowed(),
            migrate_ma: self.migrate_ma(),
            debug: self.debug(),
            single_socket: self.single_socket(),
            cxl_allow: self.cxl_allow(),
            mem_aes_256_xts: self.mem_aes_256_xts(),
            rapl_dis: self.rapl_dis(),
            ciphertext_hiding: self.ciphertext_hiding(),
            page_swap_disable: self.page_swap_disable(),
        }
    }
}

/// Every field of a guest policy, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct PolicyView {
    pub raw: String,
    pub abi_major: u8,
    pub abi_minor: u8,
    pub smt_allowed: bool,
    pub migrate_ma: bool,
    pub debug: bool,
    pub single_socket: bool,
    pub cxl_allow: bool,
    pub mem_aes_256_xts: bool,
    pub rapl_dis: bool,
    pub ciphertext_hiding: bool,
    pub page_swap_disable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_typical_policy() {
        let p = GuestPolicy::new(0x3001f).unwrap();
        assert_eq!(p.abi_minor(), 0x1f);
        assert_eq!(p.abi_major(), 0);
        assert!(p.smt_allowed());
        assert!(!p.debug());
        assert!(!p.migrate_ma());
        let d = GuestPolicy::new(0x30000 | 1 << 19).unwrap();
        assert!(d.debug());
    }

    #[test]
    fn rejects_reserved_bits() {
        assert_eq!(GuestPolicy::new(0x10000), Err(InvalidPolicy(0x10000)));
        assert!(GuestPolicy::new(0x30000 | 1 << 26).is_err());
        assert!(GuestPolicy::new(0x30000 | 1 << 63).is_err());
    }
}
