//! AMD EPYC product generations that SEV-SNP evidence can come from.

use std::fmt;
use std::str::FromStr;

/// An SEV-SNP capable EPYC generation, as AMD's KDS names it.
///
/// Bergamo and Siena share Genoa's keys, so they parse as [`Product::Genoa`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Product {
    /// 3rd generation EPYC (family 0x19, models 0x00-0x0F).
    Milan,
    /// 4th generation EPYC (family 0x19, models 0x10-0x1F and 0xA0-0xAF).
    Genoa,
    /// 5th generation EPYC (family 0x1A, models 0x00-0x11).
    Turin,
}

impl Product {
    /// Every generation, in release order.
    pub const ALL: [Self; 3] = [Self::Milan, Self::Genoa, Self::Turin];

    /// The name used in AMD KDS URLs (`/vcek/v1/<name>/...`).
    pub fn kds_name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }

    /// Lower-case name, as used in JSON output and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Milan => "milan",
            Self::Genoa => "genoa",
            Self::Turin => "turin",
        }
    }

    /// The generation of a CPU identified by CPUID family and model, if it supports SEV-SNP.
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Self::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Self::Genoa),
            (0x1A, 0x00..=0x11) => Some(Self::Turin),
            _ => None,
        }
    }

    /// Whether TCB_VERSION uses the Turin layout (FMC first, SNP in byte 3).
    pub fn uses_turin_tcb(self) -> bool {
        matches!(self, Self::Turin)
    }

    /// Length of the hwID that identifies a chip in VCEKs and KDS URLs.
    pub fn chip_id_len(self) -> usize {
        match self {
            Self::Turin => 8,
            Self::Milan | Self::Genoa => 64,
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kds_name())
    }
}

/// The product name was not one this build knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown product {0:?}: expected milan, genoa or turin")]
pub struct UnknownProduct(pub String);

impl FromStr for Product {
    type Err = UnknownProduct;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // VCEK productName extensions carry a stepping suffix such as "Milan-B0".
        let base = s.split('-').next().unwrap_or(s);
        match base.to_ascii_lowercase().as_str() {
            "milan" => Ok(Self::Milan),
            "genoa" | "bergamo" | "siena" => Ok(Self::Genoa),
            "turin" => Ok(Self::Turin),
            _ => Err(UnknownProduct(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kds_and_vcek_product_names() {
        assert_eq!("Milan-B0".parse::<Product>(), Ok(Product::Milan));
        assert_eq!("genoa".parse::<Product>(), Ok(Product::Genoa));
        assert_eq!("Siena".parse::<Product>(), Ok(Product::Genoa));
        assert_eq!("Turin".parse::<Product>(), Ok(Product::Turin));
        assert!("Naples".parse::<Product>().is_err());
    }

    #[test]
    fn maps_cpuid_family_and_model() {
        assert_eq!(Product::from_cpuid(0x19, 0x01), Some(Product::Milan));
        assert_eq!(Product::from_cpuid(0x19, 0x11), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x19, 0xA0), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x1A, 0x02), Some(Product::Turin));
        assert_eq!(Product::from_cpuid(0x17, 0x31), None);
    }
}
