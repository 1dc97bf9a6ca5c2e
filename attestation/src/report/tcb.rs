//! TCB_VERSION: the security patch levels of the firmware components (spec 56860, Table 3 "TCB_VERSION").
//!
//! The 64-bit value has two layouts:
//!
//! | byte | Milan / Genoa (legacy) | Turin |
//! |------|------------------------|-------------|
//! | 0    | BOOT_LOADER            | FMC         |
//! | 1    | TEE                    | BOOT_LOADER |
//! | 2    | reserved               | TEE         |
//! | 3    | reserved               | SNP         |
//! | 4-5  | reserved               | reserved    |
//! | 6    | SNP                    | reserved    |
//! | 7    | MICROCODE              | MICROCODE   |

use serde::Serialize;

/// Which byte layout a TCB_VERSION uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcbLayout {
    /// Milan and Genoa.
    Legacy,
    /// Turin and later: adds the FMC (first mutable code) SPL.
    Turin,
}

/// A raw TCB_VERSION as it appears in a report (little-endian u64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TcbVersion(pub u64);

/// The security patch levels of a TCB_VERSION, decoded for one layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct Tcb {
    /// First mutable code SPL (Turin and later only).
    #[serde(default)]
    pub fmc: Option<u8>,
    /// AMD secure processor boot loader SPL.
    pub bootloader: u8,
    /// AMD secure processor operating system (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// CPU microcode SPL.
    pub microcode: u8,
}

impl TcbVersion {
    /// Decodes the patch levels for `layout`.
    pub fn decode(self, layout: TcbLayout) -> Tcb {
        let b = self.0.to_le_bytes();
        match layout {
            TcbLayout::Legacy => Tcb {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            TcbLayout::Turin => Tcb {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }
}

impl Tcb {
    /// Encodes these patch levels in `layout`; an `fmc` level is dropped by the legacy layout.
    pub fn encode(&self, layout: TcbLayout) -> TcbVersion {
        let mut b = [0u8; 8];
        match layout {
            TcbLayout::Legacy => {
                b[0] = self.bootloader;
                b[1] = self.tee;
                b[6] = self.snp;
                b[7] = self.microcode;
            }
            TcbLayout::Turin => {
                b[0] = self.fmc.unwrap_or(0);
                b[1] = self.bootloader;
                b[2] = self.tee;
                b[3] = self.snp;
                b[7] = self.microcode;
            }
        }
        TcbVersion(u64::from_le_bytes(b))
    }

    /// Whether every component of `self` is at least that of `min` (an absent FMC counts as 0).
    pub fn meets(&self, min: &Self) -> bool {
        self.fmc.unwrap_or(0) >= min.fmc.unwrap_or(0)
            && self.bootloader >= min.bootloader
            && self.tee >= min.tee
            && self.snp >= min.snp
            && self.microcode >= min.microcode
    }
}

impl std::fmt::Display for Tcb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bl={} tee={} snp={} ucode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_turin_layout_like_kds() {
        // Oak Turin report: `00 01 00 02 00 00 00 47` is fmc 0, bl 1, tee 0, snp 2, ucode 71.
        let raw = TcbVersion(u64::from_le_bytes([0, 1, 0, 2, 0, 0, 0, 0x47]));
        let tcb = raw.decode(TcbLayout::Turin);
        assert_eq!(
            tcb,
            Tcb {
                fmc: Some(0),
                bootloader: 1,
                tee: 0,
                snp: 2,
                microcode: 71
            }
        );
        assert_eq!(tcb.encode(TcbLayout::Turin), raw);
    }

    #[test]
    fn decodes_legacy_layout() {
        let raw = TcbVersion(u64::from_le_bytes([3, 0, 0, 0, 0, 0, 8, 0x73]));
        let tcb = raw.decode(TcbLayout::Legacy);
        assert_eq!(
            tcb,
            Tcb {
                fmc: None,
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 115
            }
        );
        assert_eq!(tcb.encode(TcbLayout::Legacy), raw);
    }

    #[test]
    fn meets_compares_every_component() {
        let tcb = Tcb {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        };
        assert!(tcb.meets(&tcb));
        assert!(!tcb.meets(&Tcb { snp: 9, ..tcb }));
        assert!(!tcb.meets(&Tcb {
            fmc: Some(1),
            ..tcb
        }));
        assert!(tcb.meets(&Tcb {
            microcode: 100,
            ..tcb
        }));
    }
}
