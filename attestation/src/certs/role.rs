//! What a certificate is for in AMD's hierarchy, read from its subject common name.

use std::fmt;

use crate::Product;

/// The place of a certificate in AMD's SEV-SNP key hierarchy.
///
/// AMD names every certificate by its subject common name (spec 57230, "Versioned Chip
/// Endorsement Key (VCEK) Certificate and KDS Interface Specification"):
///
/// | common name       | role          | signed by     |
/// |-------------------|---------------|---------------|
/// | `ARK-<Gen>`       | [`Role::Ark`] | itself        |
/// | `SEV-<Gen>`       | [`Role::Ask`] | ARK           |
/// | `SEV-VLEK-<Gen>`  | [`Role::Asvk`]| ARK           |
/// | `SEV-VCEK`        | [`Role::Vcek`]| ASK           |
/// | `SEV-VLEK`        | [`Role::Vlek`]| ASVK          |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// AMD Root Key: the self-signed RSA-4096 root of one product generation.
    Ark,
    /// AMD SEV Key: the RSA-4096 intermediate that signs VCEKs.
    Ask,
    /// AMD SEV VLEK Key: the RSA-4096 intermediate that signs VLEKs.
    Asvk,
    /// Versioned Chip Endorsement Key: a P-384 key bound to one chip and TCB.
    Vcek,
    /// Versioned Loaded Endorsement Key: a P-384 key AMD issues to a cloud provider.
    Vlek,
}

impl Role {
    /// Upper-case name as AMD writes it (`"ARK"`, `"ASK"`, `"ASVK"`, `"VCEK"`, `"VLEK"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ark => "ARK",
            Self::Ask => "ASK",
            Self::Asvk => "ASVK",
            Self::Vcek => "VCEK",
            Self::Vlek => "VLEK",
        }
    }

    /// Whether this is an endorsement key that signs attestation reports (VCEK or VLEK).
    pub fn is_vek(self) -> bool {
        matches!(self, Self::Vcek | Self::Vlek)
    }

    /// The role of a certificate with subject common name `cn`, and the product generation
    /// the name carries (only CA names carry one). `None` for any other name.
    pub(crate) fn from_common_name(cn: &str) -> Option<(Self, Option<Product>)> {
        match cn {
            "SEV-VCEK" => return Some((Self::Vcek, None)),
            "SEV-VLEK" => return Some((Self::Vlek, None)),
            _ => {}
        }
        let (role, generation) = if let Some(generation) = cn.strip_prefix("ARK-") {
            (Self::Ark, generation)
        } else if let Some(generation) = cn.strip_prefix("SEV-VLEK-") {
            (Self::Asvk, generation)
        } else if let Some(generation) = cn.strip_prefix("SEV-") {
            (Self::Ask, generation)
        } else {
            return None;
        };
        let product = Product::ALL
            .into_iter()
            .find(|product| product.kds_name() == generation)?;
        Some((role, Some(product)))
    }

    /// Whether a certificate with this role may sign a certificate with role `child`.
    pub(crate) fn may_issue(self, child: Self) -> bool {
        matches!(
            (self, child),
            (Self::Ark, Self::Ark | Self::Ask | Self::Asvk)
                | (Self::Ask, Self::Vcek)
                | (Self::Asvk, Self::Vlek)
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which endorsement key signed a report: the chip's own VCEK or a provider's VLEK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VekKind {
    /// Versioned Chip Endorsement Key (issued by the ASK).
    Vcek,
    /// Versioned Loaded Endorsement Key (issued by the ASVK).
    Vlek,
}

impl VekKind {
    /// The lower-case name, also the first path segment the KDS uses (`vcek` or `vlek`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vcek => "vcek",
            Self::Vlek => "vlek",
        }
    }

    /// The certificate role of this key.
    pub fn role(self) -> Role {
        match self {
            Self::Vcek => Role::Vcek,
            Self::Vlek => Role::Vlek,
        }
    }

    /// The intermediate role that issues this kind of key (ASK for VCEK, ASVK for VLEK).
    pub fn issuer_role(self) -> Role {
        match self {
            Self::Vcek => Role::Ask,
            Self::Vlek => Role::Asvk,
        }
    }

    /// The kind of a VEK role, `None` for CA roles.
    pub(crate) fn from_role(role: Role) -> Option<Self> {
        match role {
            Role::Vcek => Some(Self::Vcek),
            Role::Vlek => Some(Self::Vlek),
            Role::Ark | Role::Ask | Role::Asvk => None,
        }
    }
}

impl fmt::Display for VekKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.role().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_amd_common_name() {
        assert_eq!(
            Role::from_common_name("ARK-Milan"),
            Some((Role::Ark, Some(Product::Milan)))
        );
        assert_eq!(
            Role::from_common_name("SEV-Genoa"),
            Some((Role::Ask, Some(Product::Genoa)))
        );
        assert_eq!(
            Role::from_common_name("SEV-VLEK-Turin"),
            Some((Role::Asvk, Some(Product::Turin)))
        );
        assert_eq!(Role::from_common_name("SEV-VCEK"), Some((Role::Vcek, None)));
        assert_eq!(Role::from_common_name("SEV-VLEK"), Some((Role::Vlek, None)));
    }

    #[test]
    fn rejects_unknown_common_names() {
        for cn in [
            "",
            "ARK-",
            "ARK-Naples",
            "ARK-milan",
            "SEV-VLEK-",
            "SEV-VCEK-Milan",
            "sev-vcek",
            "CN=SEV-VCEK",
            "SEV-Milan-B0",
        ] {
            assert_eq!(Role::from_common_name(cn), None, "{cn:?}");
        }
    }

    #[test]
    fn only_amd_issuer_pairs_are_allowed() {
        assert!(Role::Ark.may_issue(Role::Ask));
        assert!(Role::Ark.may_issue(Role::Asvk));
        assert!(Role::Ask.may_issue(Role::Vcek));
        assert!(Role::Asvk.may_issue(Role::Vlek));
        assert!(!Role::Ask.may_issue(Role::Vlek));
        assert!(!Role::Asvk.may_issue(Role::Vcek));
        assert!(!Role::Ark.may_issue(Role::Vcek));
        assert!(!Role::Vcek.may_issue(Role::Vcek));
    }
}
