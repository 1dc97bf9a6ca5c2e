//! The signature policy file (TOML), applied on `pull` and offered to `run`.
//!
//! ```toml
//! # What applies to images no scope matches: "accept-anything" (the default), "reject",
//! # or "require-key" with `keys`.
//! default = "reject"
//!
//! [[scope]]
//! name = "127.0.0.1:5000/signed"     # a registry, or registry/repository (prefix at a '/')
//! policy = "require-key"
//! keys = ["cosign.pub"]              # PEM public keys, relative to this file
//!
//! [[scope]]
//! name = "127.0.0.1:5000"
//! policy = "accept-anything"
//! ```
//!
//! The most specific matching scope wins. Unknown fields and unknown policy names are errors
//! (fail closed), and so is `require-key` without keys.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::keys::{KeyError, PublicKey};
use crate::reference::ImageRef;

/// What an image must satisfy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Requirement {
    /// No signature needed.
    AcceptAnything,
    /// Never allowed.
    Reject,
    /// A valid signature by one of these keys.
    RequireKey(Vec<PublicKey>),
}

/// A parsed policy.
#[derive(Debug, Clone)]
pub struct SignaturePolicy {
    default: Requirement,
    scopes: Vec<(String, Requirement)>,
}

/// Why the policy file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("reading signature policy")]
    Io(#[from] std::io::Error),
    /// The TOML is malformed or has unknown fields or values.
    #[error("signature policy {} is invalid", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: toml::de::Error,
    },
    /// `require-key` without any key.
    #[error("signature policy {}: scope {scope:?} requires a key but lists none", path.display())]
    NoKeys {
        /// The file.
        path: PathBuf,
        /// The scope.
        scope: String,
    },
    /// A listed key could not be read.
    #[error("signature policy {}: key {}", path.display(), key.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        #[source]
        source: KeyError,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    default: Option<Kind>,
    #[serde(default)]
    default_keys: Vec<PathBuf>,
    #[serde(default)]
    scope: Vec<ScopeFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeFile {
    name: String,
    policy: Kind,
    #[serde(default)]
    keys: Vec<PathBuf>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    AcceptAnything,
    Reject,
    RequireKey,
}

impl Default for SignaturePolicy {
    fn default() -> Self {
        Self::accept_anything()
    }
}

impl SignaturePolicy {
    /// The policy used when there is no policy file: everything is accepted.
    pub fn accept_anything() -> Self {
        Self {
            default: Requirement::AcceptAnything,
            scopes: Vec::new(),
        }
    }

    /// A policy requiring a signature by one of `keys` for every image (e.g. for
    /// `run --tee-enable`).
    pub fn require_keys(keys: Vec<PublicKey>) -> Self {
        Self {
            default: Requirement::RequireKey(keys),
            scopes: Vec::new(),
        }
    }

    /// True when some image would need a signature under this policy.
    pub fn requires_signatures(&self) -> bool {
        matches!(self.default, Requirement::RequireKey(_))
            || self
                .scopes
                .iter()
                .any(|(_, r)| matches!(r, Requirement::RequireKey(_)))
    }

    /// Loads a policy file; a missing file means [`SignaturePolicy::accept_anything`] only when
    /// `must_exist` is false.
    ///
    /// # Errors
    /// See [`PolicyError`].
    pub fn load(path: &Path, must_exist: bool) -> Result<Self, PolicyError> {
        let text = match read_limited(path, MAX_POLICY_BYTES) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Self::accept_anything())
            }
            Err(e) => return Err(e.into()),
        };
        Self::parse(&text, path)
    }

    /// Parses policy text; key paths are relative to `path`'s directory.
    ///
    /// # Errors
    /// See [`PolicyError`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, PolicyError> {
        let file: File = toml::from_str(text).map_err(|source| PolicyError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let build =
            |kind: Kind, keys: &[PathBuf], scope: &str| -> Result<Requirement, PolicyError> {
                Ok(match kind {
                    Kind::AcceptAnything => Requirement::AcceptAnything,
                    Kind::Reject => Requirement::Reject,
                    Kind::RequireKey => {
                        if keys.is_empty() {
                            return Err(PolicyError::NoKeys {
                                path: path.to_owned(),
                                scope: scope.to_owned(),
                            });
                        }
                        let mut out = Vec::new();
                        for k in keys {
                            let kp = base.join(k);
                            let pem = read_limited(&kp, MAX_KEY_BYTES)?;
                            out.push(PublicKey::from_pem(&pem).map_err(|source| {
                                PolicyError::Key {
                                    path: path.to_owned(),
                                    key: kp.clone(),
                                    source,
                                }
                            })?);
                        }
                        Requirement::RequireKey(out)
                    }
                })
            };
        let default = build(
            file.default.unwrap_or(Kind::AcceptAnything),
            &file.default_keys,
            "default",
        )?;
        let mut scopes = Vec::new();
        for s in &file.scope {
            scopes.push((
                s.name.trim_end_matches('/').to_owned(),
                build(s.policy, &s.keys, &s.name)?,
            ));
        }
        Ok(Self { default, scopes })
    }

    /// Adds a scope programmatically (tests, `--verify-key` combinations).
    pub fn with_scope(mut self, name: &str, requirement: Requirement) -> Self {
        self.scopes.push((name.to_owned(), requirement));
        self
    }

    /// The most specific requirement for `reference`, and the scope that matched.
    pub fn requirement_for(&self, reference: &ImageRef) -> (&str, &Requirement) {
        let name = reference.name();
        self.scopes
            .iter()
            .filter(|(scope, _)| name == *scope || name.starts_with(&format!("{scope}/")))
            .max_by_key(|(scope, _)| scope.len())
            .map_or(("default", &self.default), |(s, r)| (s.as_str(), r))
    }
}

/// Largest signature policy file.
const MAX_POLICY_BYTES: u64 = 1 << 20;
/// Largest public key PEM a policy names.
const MAX_KEY_BYTES: u64 = 64 << 10;

/// The text of `path`, at most `limit` bytes (an `InvalidData` error naming the limit).
fn read_limited(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    fs_err::File::open(path)?
        .take(limit + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} exceeds {limit} bytes", path.display()),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosign::PrivateKey;

    #[test]
    fn most_specific_scope_wins_and_default_applies_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("k.pub"),
            PrivateKey::generate().public_key().to_pem(),
        )
        .unwrap();
        let text = r#"
            default = "reject"
            [[scope]]
            name = "127.0.0.1:5000"
            policy = "accept-anything"
            [[scope]]
            name = "127.0.0.1:5000/signed"
            policy = "require-key"
            keys = ["k.pub"]
        "#;
        let p = SignaturePolicy::parse(text, &dir.path().join("policy.toml")).unwrap();
        let req = |r: &str| p.requirement_for(&r.parse().unwrap()).1.clone();
        assert!(
            matches!(req("127.0.0.1:5000/signed/app:1"), Requirement::RequireKey(k) if k.len() == 1)
        );
        assert!(matches!(
            req("127.0.0.1:5000/signed"),
            Requirement::RequireKey(_)
        ));
        assert!(matches!(
            req("127.0.0.1:5000/signedx"),
            Requirement::AcceptAnything
        ));
        assert!(matches!(
            req("127.0.0.1:5000/other"),
            Requirement::AcceptAnything
        ));
        assert!(matches!(req("busybox"), Requirement::Reject));
    }

    #[test]
    fn rejects_unknown_values_and_keyless_require_key() {
        let p = Path::new("/nonexistent/policy.toml");
        assert!(matches!(
            SignaturePolicy::parse("default = \"maybe\"", p),
            Err(PolicyError::Parse { .. })
        ));
        assert!(matches!(
            SignaturePolicy::parse("defualt = \"reject\"", p),
            Err(PolicyError::Parse { .. })
        ));
        let text = "[[scope]]\nname = \"docker.io\"\npolicy = \"require-key\"\n";
        assert!(matches!(
            SignaturePolicy::parse(text, p),
            Err(PolicyError::NoKeys { .. })
        ));
        assert!(matches!(
            SignaturePolicy::load(p, false).unwrap().default,
            Requirement::AcceptAnything
        ));
        assert!(SignaturePolicy::load(p, true).is_err());
    }
}
