//! vCPU signatures: the CPUID Fn0000_0001 EAX value QEMU puts in RDX of each VMSA.
//!
//! The signature packs family, model and stepping (AMD CPUID specification, publication 25481,
//! "CPUID Fn0000_0001_EAX Family, Model, Stepping Identifiers"):
//!
//! | bits  | field                                              |
//! |-------|----------------------------------------------------|
//! | 27:20 | extended family = family − 0xf (when family > 0xf) |
//! | 19:16 | extended model = bits 7:4 of model                 |
//! | 11:8  | base family = min(family, 0xf)                     |
//! | 7:4   | base model = bits 3:0 of model                     |
//! | 3:0   | stepping                                           |

use std::fmt;
use std::str::FromStr;

use super::MeasureError;

/// A vCPU signature (CPUID Fn0000_0001 EAX).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuSignature(u32);

/// QEMU's built-in AMD EPYC vCPU models (`builtin_x86_defs`), with their signatures, as listed
/// by sev-snp-measure.
pub const VCPU_TYPES: &[(&str, CpuSignature)] = &[
    ("EPYC", CpuSignature::from_fms(23, 1, 2)),
    ("EPYC-v1", CpuSignature::from_fms(23, 1, 2)),
    ("EPYC-v2", CpuSignature::from_fms(23, 1, 2)),
    ("EPYC-IBPB", CpuSignature::from_fms(23, 1, 2)),
    ("EPYC-v3", CpuSignature::from_fms(23, 1, 2)),
    ("EPYC-v4", CpuSignature::from_fms(23, 1, 2)),
    ("EPYC-Rome", CpuSignature::from_fms(23, 49, 0)),
    ("EPYC-Rome-v1", CpuSignature::from_fms(23, 49, 0)),
    ("EPYC-Rome-v2", CpuSignature::from_fms(23, 49, 0)),
    ("EPYC-Rome-v3", CpuSignature::from_fms(23, 49, 0)),
    ("EPYC-Milan", CpuSignature::from_fms(25, 1, 1)),
    ("EPYC-Milan-v1", CpuSignature::from_fms(25, 1, 1)),
    ("EPYC-Milan-v2", CpuSignature::from_fms(25, 1, 1)),
    ("EPYC-Genoa", CpuSignature::from_fms(25, 17, 0)),
    ("EPYC-Genoa-v1", CpuSignature::from_fms(25, 17, 0)),
    ("EPYC-Turin", CpuSignature::from_fms(26, 0, 0)),
];

impl CpuSignature {
    /// A signature given as its raw 32-bit value (`--vcpu-sig`).
    pub const fn from_raw(value: u32) -> Self {
        Self(value)
    }

    /// The signature of a CPU with this family, model and stepping.
    ///
    /// Fields are masked to their widths, as CPUID encodes them: a family above 0xf uses the
    /// 8-bit extended family, the model its low 8 bits and the stepping its low 4 bits.
    pub const fn from_fms(family: u32, model: u32, stepping: u32) -> Self {
        let (family_low, family_high) = if family > 0xf {
            (0xf, family.wrapping_sub(0xf) & 0xff)
        } else {
            (family, 0)
        };
        let model_low = model & 0xf;
        let model_high = (model >> 4) & 0xf;
        let stepping_low = stepping & 0xf;
        Self(
            (family_high << 20)
                | (model_high << 16)
                | (family_low << 8)
                | (model_low << 4)
                | stepping_low,
        )
    }

    /// The signature of the QEMU vCPU model `name` (for example `EPYC-v4`, `EPYC-Milan`).
    ///
    /// # Errors
    ///
    /// [`MeasureError::UnknownVcpuType`], listing the valid names, if `name` is not in
    /// [`VCPU_TYPES`]. Names are case-sensitive, as in QEMU.
    pub fn from_type_name(name: &str) -> Result<Self, MeasureError> {
        VCPU_TYPES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, sig)| *sig)
            .ok_or_else(|| MeasureError::UnknownVcpuType {
                name: name.to_owned(),
                valid: vcpu_type_names(),
            })
    }

    /// The raw 32-bit value.
    pub const fn value(self) -> u32 {
        self.0
    }
}

impl FromStr for CpuSignature {
    type Err = MeasureError;

    /// Parses a QEMU vCPU model name; see [`CpuSignature::from_type_name`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_type_name(s)
    }
}

impl fmt::Display for CpuSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// The valid vCPU type names, comma-separated, for error messages and help text.
pub fn vcpu_type_names() -> String {
    VCPU_TYPES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_models_have_published_signatures() {
        // Values from AMD CPUID documentation and the reference notes (§3.3).
        let sig = |n| CpuSignature::from_type_name(n).unwrap().value();
        assert_eq!(sig("EPYC"), 0x0080_0f12);
        assert_eq!(sig("EPYC-v4"), 0x0080_0f12);
        assert_eq!(sig("EPYC-Rome"), 0x0083_0f10);
        assert_eq!(sig("EPYC-Milan"), 0x00a0_0f11);
        assert_eq!(sig("EPYC-Genoa"), 0x00a1_0f10);
        assert_eq!(sig("EPYC-Turin"), 0x00b0_0f00);
    }

    #[test]
    fn small_families_have_no_extended_family() {
        assert_eq!(CpuSignature::from_fms(6, 0x55, 4).value(), 0x0005_0654);
        assert_eq!(CpuSignature::from_fms(0xf, 0, 0).value(), 0x0000_0f00);
    }

    #[test]
    fn rejects_unknown_type_listing_valid_ones() {
        let err = "epyc-v4".parse::<CpuSignature>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("epyc-v4"), "{msg}");
        assert!(msg.contains("EPYC-Milan-v2"), "{msg}");
    }
}
