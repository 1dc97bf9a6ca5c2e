//! PLATFORM_INFO (spec 56860, Table 23 "PLATFORM_INFO Field").
//!
//! | bit | field |
//! |-----|-------|
//! | 0   | SMT_EN: SMT is enabled on the platform |
//! | 1   | TSME_EN: transparent SME is enabled |
//! | 2   | ECC_EN: the platform uses ECC memory |
//! | 3   | RAPL_DIS: RAPL is disabled |
//! | 4   | CIPHERTEXT_HIDING_EN |
//! | 5   | ALIAS_CHECK_COMPLETE |
//! | 7   | SEV_TIO_EN |
//!
//! The platform, not the guest, sets these bits and newer firmware defines more (Turin sets bit 6),
//! so bits this build does not name are kept and shown rather than rejected.

use serde::Serialize;

/// Information about the platform the report was produced on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlatformInfo(pub u64);

impl PlatformInfo {
    fn bit(self, n: u32) -> bool {
        self.0 & (1 << n) != 0
    }
    /// SMT is enabled.
    pub fn smt_enabled(self) -> bool {
        self.bit(0)
    }
    /// Transparent SME is enabled.
    pub fn tsme_enabled(self) -> bool {
        self.bit(1)
    }
    /// The platform uses ECC memory.
    pub fn ecc_enabled(self) -> bool {
        self.bit(2)
    }
    /// RAPL is disabled.
    pub fn rapl_disabled(self) -> bool {
        self.bit(3)
    }
    /// Ciphertext hiding is enabled.
    pub fn ciphertext_hiding_enabled(self) -> bool {
        self.bit(4)
    }
    /// The alias check has completed.
    pub fn alias_check_complete(self) -> bool {
        self.bit(5)
    }
    /// SEV-TIO is enabled.
    pub fn sev_tio_enabled(self) -> bool {
        self.bit(7)
    }

    /// The decoded view used in JSON output.
    pub fn decoded(self) -> PlatformInfoView {
        PlatformInfoView {
            raw: format!("{:#x}", self.0),
            smt_enabled: self.smt_enabled(),
            tsme_enabled: self.tsme_enabled(),
            ecc_enabled: self.ecc_enabled(),
            rapl_disabled: self.rapl_disabled(),
            ciphertext_hiding_enabled: self.ciphertext_hiding_enabled(),
            alias_check_complete: self.alias_check_complete(),
            sev_tio_enabled: self.sev_tio_enabled(),
        }
    }
}

/// Every named platform-info bit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct PlatformInfoView {
    pub raw: String,
    pub smt_enabled: bool,
    pub tsme_enabled: bool,
    pub ecc_enabled: bool,
    pub rapl_disabled: bool,
    pub ciphertext_hiding_enabled: bool,
    pub alias_check_complete: bool,
    pub sev_tio_enabled: bool,
}
