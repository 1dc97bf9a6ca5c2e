//! Appraisal policy: what a relying party requires of verified evidence.
//!
//! A policy is a TOML or JSON file; every key is optional and the defaults are the safe choice
//! (no debug, no migration agent, VMPL 0, hardware evidence only). Hex values are lower- or
//! upper-case, with or without `0x`, and must have the field's exact length.
//!
//! ```toml
//! allow_simulated = false           # accept evidence from the A3S Box simulator
//! measurements = ["<96 hex>", ...]  # allowed launch measurements (empty: any)
//! products = ["milan", "genoa"]     # allowed generations (empty: any)
//! signing_keys = ["vcek"]           # allowed signing keys (empty: vcek or vlek)
//! allow_debug = false               # guest policy DEBUG bit
//! allow_migration_agent = false     # guest policy MIGRATE_MA bit
//! smt_allowed = true                # require the guest policy SMT bit to be this value
//! vmpl = 0                          # required VMPL
//! host_data = "<64 hex>"            # required HOST_DATA
//! report_data = "<128 hex>"         # required REPORT_DATA
//! id_key_digests = ["<96 hex>"]     # allowed ID key digests (empty: any)
//! author_key_digests = ["<96 hex>"] # allowed author key digests (empty: any)
//! min_guest_svn = 0
//! [min_tcb]                         # minimum reported TCB, per component
//! bootloader = 3
//! tee = 0
//! snp = 8
//! microcode = 115
//! fmc = 0                           # Turin only
//! ```
//!
//! [`AppraisalPolicy::appraise`] runs every check in a fixed order and the [`Verdict`] names the
//! first one that failed.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::report::SigningKey;
use crate::verify::VerifiedReport;
use crate::Product;

/// What a relying party requires of a verified report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppraisalPolicy {
    /// Accept evidence rooted in the A3S Box simulator.
    pub allow_simulated: bool,
    /// Allowed launch measurements; empty allows any.
    #[serde(deserialize_with = "hex_list")]
    pub measurements: Vec<[u8; 48]>,
    /// Allowed generations; empty allows any.
    pub products: Vec<ProductName>,
    /// Allowed signing keys; empty allows VCEK and VLEK.
    pub signing_keys: Vec<KeyName>,
    /// Accept guests whose policy allows debugging.
    pub allow_debug: bool,
    /// Accept guests whose policy allows a migration agent.
    pub allow_migration_agent: bool,
    /// Required value of the guest policy SMT bit; unset accepts either.
    pub smt_allowed: Option<bool>,
    /// Required VMPL (default 0).
    pub vmpl: u32,
    /// Required HOST_DATA.
    #[serde(deserialize_with = "hex_opt")]
    pub host_data: Option<[u8; 32]>,
    /// Required REPORT_DATA.
    #[serde(deserialize_with = "hex_opt")]
    pub report_data: Option<[u8; 64]>,
    /// Allowed ID key digests; empty allows any.
    #[serde(deserialize_with = "hex_list")]
    pub id_key_digests: Vec<[u8; 48]>,
    /// Allowed author key digests; empty allows any.
    #[serde(deserialize_with = "hex_list")]
    pub author_key_digests: Vec<[u8; 48]>,
    /// Minimum GUEST_SVN.
    pub min_guest_svn: u32,
    /// Minimum reported TCB per component.
    pub min_tcb: MinTcb,
}

/// Minimum security patch levels; an unset component is not checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct MinTcb {
    pub fmc: Option<u8>,
    pub bootloader: Option<u8>,
    pub tee: Option<u8>,
    pub snp: Option<u8>,
    pub microcode: Option<u8>,
}

/// A product name in a policy file (`milan`, `genoa`, `turin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProductName(pub Product);

impl<'de> Deserialize<'de> for ProductName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(ProductName).map_err(serde::de::Error::custom)
    }
}

/// A signing key name in a policy file (`vcek`, `vlek`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum KeyName {
    Vcek,
    Vlek,
}

fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let t = s.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let bytes = hex::decode(t).map_err(|e| format!("{s:?} is not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{s:?} has {} bytes, expected {N}", b.len()))
}

fn hex_list<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<Vec<[u8; N]>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_hex(s).map_err(serde::de::Error::custom))
        .collect()
}

fn hex_opt<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<Option<[u8; N]>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_hex(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// A policy file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("reading policy {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any appraisal policy.
    #[error("policy {path} exceeds {limit} bytes, the limit for an appraisal policy")]
    TooLarge {
        /// The file.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// The TOML is invalid or has unknown keys.
    #[error("policy {path} is not a valid TOML appraisal policy: {message}")]
    Toml {
        /// The file.
        path: String,
        /// What the parser said (names the key and line).
        message: String,
    },
    /// The JSON is invalid or has unknown keys.
    #[error("policy {path} is not a valid JSON appraisal policy: {source}")]
    Json {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// Largest appraisal policy file (real ones list a few measurements and TCB floors).
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

impl AppraisalPolicy {
    /// Parses a policy from text: JSON when it starts with `{`, TOML otherwise.
    ///
    /// # Errors
    /// [`PolicyError`] naming the source and the offending key.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, PolicyError> {
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|source| PolicyError::Json {
                path: source_name.to_owned(),
                source,
            })
        } else {
            toml::from_str(text).map_err(|e| PolicyError::Toml {
                path: source_name.to_owned(),
                message: e.to_string().trim().to_owned(),
            })
        }
    }

    /// Reads a policy file.
    ///
    /// # Errors
    /// [`PolicyError`] when it cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        use std::io::Read;
        let name = path.display().to_string();
        let read_err = |source| PolicyError::Read {
            path: name.clone(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(read_err)?
            .take(MAX_POLICY_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                path: name,
                limit: MAX_POLICY_BYTES,
            });
        }
        Self::parse(&text, &name)
    }

    /// Runs every check against `verified` and returns the verdict.
    pub fn appraise(&self, verified: &VerifiedReport) -> Verdict {
        let r = verified.report();
        let policy = r.policy();
        let tcb = verified.reported_tcb();
        let mut checks = Vec::new();
        let mut check = |name: &'static str, passed: bool, detail: String| {
            checks.push(Check {
                name,
                passed,
                detail,
            });
        };

        check(
            "simulated",
            !verified.simulated() || self.allow_simulated,
            if verified.simulated() {
                "evidence is from the A3S Box simulator".into()
            } else {
                "evidence chains to AMD roots".into()
            },
        );
        let product = verified.product();
        check(
            "product",
            self.products.is_empty() || self.products.iter().any(|p| p.0 == product),
            format!("report from {}", product.as_str()),
        );
        let key = verified.signing_key();
        let key_allowed = match key {
            SigningKey::Vcek => {
                self.signing_keys.is_empty() || self.signing_keys.contains(&KeyName::Vcek)
            }
            SigningKey::Vlek => {
                self.signing_keys.is_empty() || self.signing_keys.contains(&KeyName::Vlek)
            }
            SigningKey::None => false,
        };
        check(
            "signing_key",
            key_allowed,
            format!("signed by {}", key.as_str()),
        );
        check(
            "measurement",
            self.measurements.is_empty() || self.measurements.contains(&r.measurement()),
            format!(
                "measurement {}{}",
                hex::encode(r.measurement()),
                if self.measurements.is_empty() {
                    ""
                } else {
                    " (allowed list given)"
                }
            ),
        );
        check(
            "debug",
            self.allow_debug || !policy.debug(),
            format!("guest policy debug={}", policy.debug()),
        );
        check(
            "migration_agent",
            self.allow_migration_agent || !policy.migrate_ma(),
            format!("guest policy migrate_ma={}", policy.migrate_ma()),
        );
        check(
            "smt",
            self.smt_allowed
                .is_none_or(|want| want == policy.smt_allowed()),
            format!(
                "guest policy smt={}{}",
                policy.smt_allowed(),
                self.smt_allowed
                    .map(|w| format!(", required {w}"))
                    .unwrap_or_default()
            ),
        );
        check(
            "vmpl",
            r.vmpl() == self.vmpl,
            format!("vmpl {} (required {})", r.vmpl(), self.vmpl),
        );
        for (name, actual, min) in [
            (
                "min_tcb.bootloader",
                tcb.bootloader,
                self.min_tcb.bootloader,
            ),
            ("min_tcb.tee", tcb.tee, self.min_tcb.tee),
            ("min_tcb.snp", tcb.snp, self.min_tcb.snp),
            ("min_tcb.microcode", tcb.microcode, self.min_tcb.microcode),
            ("min_tcb.fmc", tcb.fmc.unwrap_or(0), self.min_tcb.fmc),
        ] {
            if let Some(min) = min {
                check(
                    name,
                    actual >= min,
                    format!("reported {actual}, minimum {min}"),
                );
            }
        }
        check(
            "min_guest_svn",
            r.guest_svn() >= self.min_guest_svn,
            format!(
                "guest svn {} (minimum {})",
                r.guest_svn(),
                self.min_guest_svn
            ),
        );
        if let Some(want) = self.host_data {
            check(
                "host_data",
                r.host_data() == want,
                expected_actual(&want, &r.host_data()),
            );
        }
        if let Some(want) = self.report_data {
            check(
                "report_data",
                r.report_data() == want,
                expected_actual(&want, &r.report_data()),
            );
        }
        if !self.id_key_digests.is_empty() {
            let d = r.id_key_digest();
            check(
                "id_key_digest",
                self.id_key_digests.contains(&d),
                format!("id key digest {}", hex::encode(d)),
            );
        }
        if !self.author_key_digests.is_empty() {
            let d = r.author_key_digest();
            check(
                "author_key_digest",
                r.key_info().author_key_en() && self.author_key_digests.contains(&d),
                format!(
                    "author key digest {} (enabled: {})",
                    hex::encode(d),
                    r.key_info().author_key_en()
                ),
            );
        }
        Verdict {
            simulated: verified.simulated(),
            checks,
        }
    }
}

fn expected_actual(want: &[u8], got: &[u8]) -> String {
    format!("expected {}, got {}", hex::encode(want), hex::encode(got))
}

/// The outcome of one policy check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The check's name, as in the policy file.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was compared.
    pub detail: String,
}

/// The outcome of appraising a verified report against a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The evidence came from the simulator.
    pub simulated: bool,
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl Verdict {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The first check that failed.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.passed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_refuses_dev_zero_and_oversized_files_naming_the_limit() {
        let err = AppraisalPolicy::load(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(err, PolicyError::TooLarge { .. }), "{err}");
        assert!(
            err.to_string().contains(&MAX_POLICY_BYTES.to_string()),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("policy.toml");
        let mut text = "allow_simulated = true\n".to_owned();
        text.push_str(&"# padding\n".repeat(usize::try_from(MAX_POLICY_BYTES / 10).unwrap() + 1));
        std::fs::write(&big, &text).unwrap();
        assert!(matches!(
            AppraisalPolicy::load(&big),
            Err(PolicyError::TooLarge { .. })
        ));
        std::fs::write(&big, "allow_simulated = true\n").unwrap();
        assert!(AppraisalPolicy::load(&big).unwrap().allow_simulated);
    }
    use crate::report::tests::fixture;
    use crate::Report;

    fn verified(name: &str, product: Product, edit: impl FnOnce(&mut Vec<u8>)) -> VerifiedReport {
        let mut raw = fixture(name);
        edit(&mut raw);
        VerifiedReport::new(Report::from_bytes(&raw).unwrap(), product, false)
    }

    fn milan() -> VerifiedReport {
        verified("trustee-test-report.bin", Product::Milan, |_| {})
    }

    #[test]
    fn default_policy_accepts_plain_hardware_report() {
        let v = AppraisalPolicy::default().appraise(&milan());
        assert!(v.passed(), "{:?}", v.first_failure());
        assert!(!v.simulated);
    }

    #[test]
    fn debug_is_refused_by_default() {
        let report = verified("trustee-test-report.bin", Product::Milan, |r| {
            r[0x0A] |= 0x08
        });
        let v = AppraisalPolicy::default().appraise(&report);
        assert_eq!(v.first_failure().unwrap().name, "debug");
        let allow = AppraisalPolicy {
            allow_debug: true,
            ..Default::default()
        };
        assert!(allow.appraise(&report).passed());
    }

    #[test]
    fn vmpl_must_match() {
        let vlek = verified("trustee-test-vlek-report.bin", Product::Milan, |_| {});
        let v = AppraisalPolicy::default().appraise(&vlek);
        assert_eq!(v.first_failure().unwrap().name, "vmpl");
        let p = AppraisalPolicy {
            vmpl: 1,
            ..Default::default()
        };
        assert!(p.appraise(&vlek).passed());
    }

    #[test]
    fn simulated_needs_opt_in() {
        let raw = fixture("trustee-test-report.bin");
        let sim = VerifiedReport::new(Report::from_bytes(&raw).unwrap(), Product::Milan, true);
        let v = AppraisalPolicy::default().appraise(&sim);
        assert!(v.simulated);
        assert_eq!(v.first_failure().unwrap().name, "simulated");
        let p = AppraisalPolicy {
            allow_simulated: true,
            ..Default::default()
        };
        assert!(p.appraise(&sim).passed());
    }

    #[test]
    fn parses_toml_and_checks_each_rule() {
        let r = milan();
        let m = hex::encode(r.report().measurement());
        let text = format!(
            "measurements = [\"{m}\"]\nproducts = [\"milan\"]\nsigning_keys = [\"vcek\"]\n\
             min_guest_svn = 4\n[min_tcb]\nbootloader = 3\nsnp = 8\nmicrocode = 115\n"
        );
        let p = AppraisalPolicy::parse(&text, "p.toml").unwrap();
        assert!(p.appraise(&r).passed());

        let fail = |text: &str| {
            let p = AppraisalPolicy::parse(text, "p.toml").unwrap();
            p.appraise(&r).first_failure().map(|c| c.name)
        };
        assert_eq!(
            fail(&format!("measurements = [\"{}\"]", "00".repeat(48))),
            Some("measurement")
        );
        assert_eq!(fail("products = [\"genoa\"]"), Some("product"));
        assert_eq!(fail("signing_keys = [\"vlek\"]"), Some("signing_key"));
        assert_eq!(fail("[min_tcb]\nsnp = 9"), Some("min_tcb.snp"));
        assert_eq!(
            fail("[min_tcb]\nmicrocode = 116"),
            Some("min_tcb.microcode")
        );
        assert_eq!(fail("min_guest_svn = 5"), Some("min_guest_svn"));
        assert_eq!(fail("smt_allowed = false"), Some("smt"));
        assert_eq!(
            fail(&format!("host_data = \"{}\"", "11".repeat(32))),
            Some("host_data")
        );
        assert_eq!(
            fail(&format!("report_data = \"0x{}\"", "11".repeat(64))),
            Some("report_data")
        );
        assert_eq!(
            fail(&format!("id_key_digests = [\"{}\"]", "11".repeat(48))),
            Some("id_key_digest")
        );
        assert_eq!(
            fail(&format!("author_key_digests = [\"{}\"]", "11".repeat(48))),
            Some("author_key_digest")
        );
    }

    #[test]
    fn parses_json() {
        let p = AppraisalPolicy::parse(r#"{"allow_debug": true, "vmpl": 2}"#, "p.json").unwrap();
        assert!(p.allow_debug);
        assert_eq!(p.vmpl, 2);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_hex_naming_them() {
        let err = AppraisalPolicy::parse("alow_debug = true", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("alow_debug"), "{err}");
        let err = AppraisalPolicy::parse("host_data = \"abcd\"", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 32"), "{err}");
        let err = AppraisalPolicy::parse("products = [\"naples\"]", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("naples"), "{err}");
    }
}
