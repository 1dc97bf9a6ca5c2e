//! EAR trust vectors (draft-ietf-rats-ar4si) and the status they give, as trustee's
//! attestation service computes them from a policy's trust-claim rules.

use serde_json::{Map, Value};

/// The trust claims of an AR4SI trustworthiness vector: (claim name in the token, rule name
/// in a trustee policy).
pub const CLAIMS: [(&str, &str); 8] = [
    ("instance-identity", "instance_identity"),
    ("configuration", "configuration"),
    ("executables", "executables"),
    ("file-system", "file_system"),
    ("hardware", "hardware"),
    ("runtime-opaque", "runtime_opaque"),
    ("storage-opaque", "storage_opaque"),
    ("sourced-data", "sourced_data"),
];

/// An EAR appraisal status, worst last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// No claim was made.
    None,
    /// Every claim is in the affirming tier.
    Affirming,
    /// A claim is in the warning tier.
    Warning,
    /// A claim is in the contraindicated tier.
    Contraindicated,
}

impl Status {
    /// The name in `ear.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Affirming => "affirming",
            Self::Warning => "warning",
            Self::Contraindicated => "contraindicated",
        }
    }

    /// The tier of one claim value (AR4SI: 2-31 affirming, 32-95 warning, 96-127
    /// contraindicated, negatives alike, 0 and ±1 no claim).
    pub fn of_claim(v: i64) -> Self {
        match v.unsigned_abs() {
            96.. => Self::Contraindicated,
            32..=95 => Self::Warning,
            2..=31 => Self::Affirming,
            _ => Self::None,
        }
    }
}

/// A trust vector: each claim's value (0 when the policy makes no claim).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustVector(pub [i64; 8]);

impl TrustVector {
    /// The vector our `allow`-style policies give: recognised hardware and configuration,
    /// and executables approved (3) or contraindicated (96: the policy refused the launch).
    pub fn from_allow(allow: bool) -> Self {
        Self([2, 2, if allow { 3 } else { 96 }, 0, 2, 0, 0, 0])
    }

    /// The worst tier over all claims.
    pub fn status(&self) -> Status {
        self.0
            .iter()
            .map(|v| Status::of_claim(*v))
            .max()
            .unwrap_or(Status::None)
    }

    /// As `ear.trustworthiness-vector` (claims of 0 left out, like trustee's tokens).
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        for ((name, _), v) in CLAIMS.iter().zip(self.0) {
            if v != 0 {
                out.insert((*name).to_owned(), Value::from(v));
            }
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_claim_decides() {
        assert_eq!(TrustVector::from_allow(true).status(), Status::Affirming);
        assert_eq!(
            TrustVector::from_allow(false).status(),
            Status::Contraindicated
        );
        assert_eq!(
            TrustVector([2, 2, 3, 0, 97, 0, 0, 0]).status(),
            Status::Contraindicated
        );
        assert_eq!(TrustVector([0; 8]).status(), Status::None);
        assert_eq!(Status::of_claim(-33), Status::Warning);
        assert_eq!(Status::of_claim(1), Status::None);
    }
}
