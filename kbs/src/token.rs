//! The attestation token: an EAR (draft-ietf-rats-ear) JWT signed ES256 with the broker's
//! P-256 key, its public JWK in the header as trustee's attestation service writes it.
//!
//! ```json
//! {"eat_profile": "tag:github.com,2024:confidential-containers/Trustee", "iat": …, "exp": …,
//!  "iss": "a3s-kbs", "ear.verifier-id": {"developer": "a3s-box", "build": "a3s-kbs <ver>"},
//!  "submods": {"cpu0": {"ear.status": "affirming"|"warning"|"contraindicated"|"none",
//!    "ear.trustworthiness-vector": {…}, "ear.appraisal-policy-id": "default",
//!    "a3s.simulated": bool,
//!    "ear.veraison.annotated-evidence": {"snp": {claims}, "report_data": hex,
//!       "runtime_data_claims": {"nonce": …, "tee-pubkey": JWK}, "simulated": bool}}}}
//! ```
//! The TEE key for the JWE is read back from
//! `/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey`.

use p256::ecdsa::SigningKey;
use serde_json::{json, Value};

use crate::jwt::{self, JwtError};
use crate::policy::ear::TrustVector;
use crate::protocol::{RuntimeData, TeePubKey};

/// The EAR profile trustee uses.
pub const EAT_PROFILE: &str = "tag:github.com,2024:confidential-containers/Trustee";
/// JSON pointer to the TEE key in the claims.
pub const TEE_PUBKEY_POINTER: &str =
    "/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey";

/// Issues and checks attestation tokens.
pub struct TokenIssuer {
    key: SigningKey,
    lifetime_secs: u64,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("key", &"[redacted]")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish()
    }
}

/// What an attestation concluded, for the token.
#[derive(Debug, Clone)]
pub struct Appraisal<'a> {
    /// The trust vector the attestation policy gave (its worst tier is `ear.status`).
    pub trust_vector: &'a TrustVector,
    /// The attestation policy id.
    pub policy_id: &'a str,
    /// Trustee's SNP claims.
    pub snp_claims: &'a Value,
    /// The evidence was simulated.
    pub simulated: bool,
}

impl TokenIssuer {
    /// An issuer signing with `key`; tokens live `lifetime_secs`.
    pub fn new(key: SigningKey, lifetime_secs: u64) -> Self {
        Self { key, lifetime_secs }
    }

    /// The public key as a JWK.
    pub fn public_jwk(&self) -> Value {
        jwt::public_jwk(self.key.verifying_key())
    }

    /// Builds the EAR claims and signs them.
    pub fn issue(
        &self,
        a: &Appraisal<'_>,
        runtime: &RuntimeData,
        now_secs: u64,
    ) -> (String, Value) {
        let claims = json!({
            "eat_profile": EAT_PROFILE,
            "iat": now_secs,
            "exp": now_secs + self.lifetime_secs,
            "iss": "a3s-kbs",
            "ear.verifier-id": {"developer": "a3s-box", "build": concat!("a3s-kbs ", env!("CARGO_PKG_VERSION"))},
            "submods": {"cpu0": {
                "ear.status": a.trust_vector.status().as_str(),
                "ear.trustworthiness-vector": a.trust_vector.to_json(),
                "ear.appraisal-policy-id": a.policy_id,
                "a3s.simulated": a.simulated,
                "ear.veraison.annotated-evidence": {
                    "snp": a.snp_claims,
                    "report_data": a.snp_claims.get("report_data").cloned().unwrap_or(Value::Null),
                    "runtime_data_claims": {"nonce": runtime.nonce, "tee-pubkey": runtime.tee_pubkey},
                    "simulated": a.simulated,
                },
            }},
        });
        let token = jwt::sign(&self.key, &claims, Some(("jwk", self.public_jwk())));
        (token, claims)
    }

    /// Verifies a bearer token issued by this key and returns its claims.
    ///
    /// # Errors
    /// [`JwtError`] naming the failed check.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Value, JwtError> {
        jwt::verify(token, self.key.verifying_key(), now_secs)
    }
}

/// The TEE key recorded in token claims.
pub fn tee_pubkey(claims: &Value) -> Option<TeePubKey> {
    claims
        .pointer(TEE_PUBKEY_POINTER)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}
