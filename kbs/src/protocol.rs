//! The KBS protocol 0.4.0 ("RCAR") wire types, with trustee's exact serde names (kbs-types
//! 0.18), and the binding of runtime data into REPORT_DATA.
//!
//! | step | request | response |
//! |---|---|---|
//! | `POST /kbs/v0/auth` | [`Request`] | [`Challenge`] + `Set-Cookie: kbs-session-id=…` |
//! | `POST /kbs/v0/attest` | [`Attestation`] (cookie) | [`AttestationToken`] |
//! | `GET /kbs/v0/resource/<repo>/<type>/<tag>` | cookie or `Authorization: Bearer` | [`JweResponse`] |
//!
//! Outer keys are kebab-case, the evidence's inner keys snake_case, as trustee has them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha384};

/// The protocol version this broker speaks; trustee requires an exact match.
pub const PROTOCOL_VERSION: &str = "0.4.0";
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kbs-session-id";
/// The TEE this broker verifies.
pub const TEE_SNP: &str = "snp";
/// Prefix of every error type URL.
pub const ERROR_TYPE_PREFIX: &str = "https://github.com/confidential-containers/kbs/errors/";

/// `POST /kbs/v0/auth` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version, `0.4.0`.
    pub version: String,
    /// TEE class (`snp`, `tdx`, `sample`, ...).
    pub tee: String,
    /// Free-form; guest-components sends the hash algorithms it supports.
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

impl Request {
    /// The request an SNP guest sends, as guest-components writes it.
    pub fn snp() -> Self {
        Self {
            version: PROTOCOL_VERSION.to_owned(),
            tee: TEE_SNP.to_owned(),
            extra_params: serde_json::json!({
                "supported-hash-algorithms": ["sha256", "sha384", "sha512", "sm3"]
            }),
        }
    }
}

/// `POST /kbs/v0/auth` response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    /// Base64 (standard, padded) of 32 random bytes.
    pub nonce: String,
    /// The empty string for SNP (only IBM SE selects a hash here).
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

/// `POST /kbs/v0/attest` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attestation {
    /// Init-data document, `null` when absent (serialised, not skipped).
    #[serde(rename = "init-data", default)]
    pub init_data: Option<InitData>,
    /// The nonce and the TEE key the evidence binds.
    #[serde(rename = "runtime-data")]
    pub runtime_data: RuntimeData,
    /// The evidence.
    #[serde(rename = "tee-evidence")]
    pub tee_evidence: CompositeEvidence,
}

/// Init-data as the client sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitData {
    /// `toml` or `json`.
    pub format: String,
    /// The document text.
    pub body: String,
}

/// Runtime data: the challenge nonce and the TEE public key, bound into REPORT_DATA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeData {
    /// The challenge nonce, verbatim.
    pub nonce: String,
    /// The TEE public key as a JWK; kept as received because REPORT_DATA hashes it.
    #[serde(rename = "tee-pubkey")]
    pub tee_pubkey: Value,
}

/// Evidence of the primary TEE plus devices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompositeEvidence {
    /// TEE-specific evidence (trustee SNP evidence JSON for `snp`).
    pub primary_evidence: Value,
    /// A JSON string: `""` without devices.
    #[serde(default)]
    pub additional_evidence: String,
}

/// `POST /kbs/v0/attest` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationToken {
    /// The EAR attestation token (JWT, ES256).
    pub token: String,
}

/// The error body every failing endpoint returns (kbs-types `ErrorInformation`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInformation {
    /// `https://github.com/confidential-containers/kbs/errors/<Kind>`.
    #[serde(rename = "type")]
    pub error_type: String,
    /// What went wrong.
    pub detail: String,
}

impl ErrorInformation {
    /// The `<Kind>` part of the type URL.
    pub fn kind(&self) -> &str {
        self.error_type
            .strip_prefix(ERROR_TYPE_PREFIX)
            .unwrap_or(&self.error_type)
    }
}

/// A resource response: a flattened-JSON JWE (RFC 7516 §7.2.2) without `aad`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JweResponse {
    /// BASE64URL(protected header JSON).
    pub protected: String,
    /// BASE64URL(wrapped content key).
    pub encrypted_key: String,
    /// BASE64URL(96-bit IV).
    pub iv: String,
    /// BASE64URL(ciphertext).
    pub ciphertext: String,
    /// BASE64URL(128-bit GCM tag).
    pub tag: String,
}

/// A TEE public key (JWK, tagged by `kty`), as kbs-types `TeePubKey` has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kty")]
pub enum TeePubKey {
    /// An elliptic-curve key for `ECDH-ES+A256KW`.
    #[serde(rename = "EC")]
    Ec {
        /// `P-256` or `P-521`.
        crv: String,
        /// `ECDH-ES+A256KW`.
        alg: String,
        /// BASE64URL x coordinate.
        x: String,
        /// BASE64URL y coordinate.
        y: String,
    },
    /// An RSA key for `RSA-OAEP-256`.
    #[serde(rename = "RSA")]
    Rsa {
        /// `RSA-OAEP-256`.
        alg: String,
        /// BASE64URL modulus.
        n: String,
        /// BASE64URL exponent.
        e: String,
    },
}

/// `REPORT_DATA` for runtime data: SHA-384 of the JCS (RFC 8785) form of
/// `{"tee-pubkey", "nonce", "additional-evidence"}`, zero-padded to 64 bytes. Trustee's
/// client and attestation service compute the same.
///
/// # Errors
/// When the key cannot be canonicalised (it is a JSON value, so only numbers JCS cannot
/// represent fail).
pub fn report_data(
    nonce: &str,
    tee_pubkey: &Value,
    additional_evidence: &str,
) -> Result<[u8; 64], serde_json::Error> {
    let digest = runtime_data_digest(nonce, tee_pubkey, additional_evidence)?;
    let mut out = [0u8; 64];
    out[..48].copy_from_slice(&digest);
    Ok(out)
}

/// The 48-byte SHA-384 digest of the canonical runtime data (see [`report_data`]).
///
/// # Errors
/// As [`report_data`].
pub fn runtime_data_digest(
    nonce: &str,
    tee_pubkey: &Value,
    additional_evidence: &str,
) -> Result<[u8; 48], serde_json::Error> {
    let rd = serde_json::json!({
        "tee-pubkey": tee_pubkey,
        "nonce": nonce,
        "additional-evidence": additional_evidence,
    });
    let canonical = serde_json_canonicalizer::to_vec(&rd)?;
    Ok(Sha384::digest(&canonical).into())
}

/// A resource path `<repository>/<type>/<tag>`: three non-empty segments of
/// `[A-Za-z0-9._-]`, none `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourcePath {
    repository: String,
    kind: String,
    tag: String,
}

/// A resource path that is not `<repo>/<type>/<tag>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a resource path <repository>/<type>/<tag> (segments of A-Z a-z 0-9 . _ -)")]
pub struct InvalidResourcePath(pub String);

impl ResourcePath {
    /// Builds a path from its three segments.
    ///
    /// # Errors
    /// [`InvalidResourcePath`] when a segment is empty, `.`/`..` or has other characters.
    pub fn new(repository: &str, kind: &str, tag: &str) -> Result<Self, InvalidResourcePath> {
        let ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if ok(repository) && ok(kind) && ok(tag) {
            Ok(Self {
                repository: repository.to_owned(),
                kind: kind.to_owned(),
                tag: tag.to_owned(),
            })
        } else {
            Err(InvalidResourcePath(format!("{repository}/{kind}/{tag}")))
        }
    }

    /// The three segments.
    pub fn segments(&self) -> [&str; 3] {
        [&self.repository, &self.kind, &self.tag]
    }
}

impl FromStr for ResourcePath {
    type Err = InvalidResourcePath;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("kbs:///").unwrap_or(s);
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [r, k, t] => Self::new(r, k, t).map_err(|_| InvalidResourcePath(s.to_owned())),
            _ => Err(InvalidResourcePath(s.to_owned())),
        }
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.repository, self.kind, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector from the shared protocol study, computed independently of this code.
    #[test]
    fn jcs_binding_matches_the_reference_vector() {
        let nonce = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let jwk: Value = serde_json::from_str(
            r#"{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"x-coord-b64url","y":"y-coord-b64url"}"#,
        )
        .unwrap();
        let rd = report_data(nonce, &jwk, "").unwrap();
        assert_eq!(
            hex::encode(&rd[..48]),
            "028b6b3466b6f492598c0c4057b976bf9666072199d65dedce12c157128e766fed0a34520993cb81462e5aff2278442d"
        );
        assert_eq!(rd[48..], [0u8; 16]);
    }

    /// Trustee's own canonicalisation unit vector.
    #[test]
    fn jcs_matches_trustee_unit_vector() {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":"test","c":{"d":"e"}}"#).unwrap();
        let c = serde_json_canonicalizer::to_vec(&v).unwrap();
        assert_eq!(
            hex::encode(Sha384::digest(&c)),
            "e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3"
        );
    }

    #[test]
    fn request_and_attestation_have_trustee_json_shapes() {
        let r = serde_json::to_value(Request::snp()).unwrap();
        assert_eq!(r["version"], "0.4.0");
        assert_eq!(r["tee"], "snp");
        assert!(r["extra-params"]["supported-hash-algorithms"].is_array());
        let a = Attestation {
            init_data: None,
            runtime_data: RuntimeData {
                nonce: "n".into(),
                tee_pubkey: serde_json::json!({"kty":"EC"}),
            },
            tee_evidence: CompositeEvidence {
                primary_evidence: serde_json::json!({}),
                additional_evidence: String::new(),
            },
        };
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(
            text,
            r#"{"init-data":null,"runtime-data":{"nonce":"n","tee-pubkey":{"kty":"EC"}},"tee-evidence":{"primary_evidence":{},"additional_evidence":""}}"#
        );
        let c: Challenge = serde_json::from_str(r#"{"nonce":"abc","extra-params":""}"#).unwrap();
        assert_eq!(c.extra_params, Value::String(String::new()));
        let e: ErrorInformation = serde_json::from_str(
            r#"{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny","detail":"x"}"#,
        )
        .unwrap();
        assert_eq!(e.kind(), "PolicyDeny");
    }

    #[test]
    fn tee_pubkey_is_tagged_by_kty() {
        let k: TeePubKey =
            serde_json::from_str(r#"{"kty":"RSA","alg":"RSA-OAEP-256","n":"AQAB","e":"AQAB"}"#)
                .unwrap();
        assert!(matches!(k, TeePubKey::Rsa { .. }));
        assert!(serde_json::from_str::<TeePubKey>(r#"{"kty":"oct","k":"x"}"#).is_err());
    }

    #[test]
    fn resource_paths_reject_traversal_and_bad_shapes() {
        let p: ResourcePath = "default/key/1".parse().unwrap();
        assert_eq!(p.to_string(), "default/key/1");
        assert_eq!(
            "kbs:///a/b/c".parse::<ResourcePath>().unwrap().to_string(),
            "a/b/c"
        );
        for bad in ["a/b", "a/b/c/d", "../b/c", "a//c", "a/b/c d", "a/./c"] {
            assert!(bad.parse::<ResourcePath>().is_err(), "{bad}");
        }
    }
}
