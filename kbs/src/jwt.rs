//! Compact JWS (JWT) with ES256 (ECDSA P-256, SHA-256, r‖s), used for attestation tokens and
//! admin credentials, and EdDSA (Ed25519) for admin credentials as trustee makes them.
//! Hand-written: a JWT is three base64url parts and one signature.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_json::Value;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("token is not a JWT: {0}")]
    Malformed(&'static str),
    /// The header names another algorithm.
    #[error("token algorithm {0:?} is not the key's (ES256 for P-256, EdDSA for Ed25519)")]
    Algorithm(String),
    /// The signature does not verify with the expected key.
    #[error("token signature does not verify")]
    Signature,
    /// `exp` is in the past.
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// Expiry, seconds since the epoch.
        exp: u64,
        /// Now, seconds since the epoch.
        now: u64,
    },
    /// `exp` is missing.
    #[error("token has no exp claim")]
    NoExpiry,
    /// `iat` is missing (admin tokens must say when they were made).
    #[error("token has no iat claim")]
    NoIssuedAt,
    /// `iat` or `nbf` lies in the future beyond the clock-skew allowance.
    #[error("token is not valid yet ({claim} {at}, now {now})")]
    NotYetValid {
        /// `iat` or `nbf`.
        claim: &'static str,
        /// Its value.
        at: u64,
        /// Now, seconds since the epoch.
        now: u64,
    },
    /// `exp - iat` exceeds what the broker accepts.
    #[error("token lifetime {lifetime} s exceeds the maximum of {max} s")]
    LifetimeTooLong {
        /// `exp - iat`.
        lifetime: u64,
        /// The broker's maximum.
        max: u64,
    },
}

/// Clock skew allowed on `iat` and `nbf` of admin tokens.
pub const ADMIN_CLOCK_SKEW_SECS: u64 = 60;

/// An admin public key: P-256 (ES256) or Ed25519 (EdDSA, trustee's default).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminKey {
    /// ES256.
    Es256(VerifyingKey),
    /// EdDSA.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl From<VerifyingKey> for AdminKey {
    fn from(k: VerifyingKey) -> Self {
        Self::Es256(k)
    }
}

impl AdminKey {
    /// Reads a P-256 or Ed25519 public key from SubjectPublicKeyInfo PEM.
    ///
    /// # Errors
    /// When the text is neither.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        use ed25519_dalek::pkcs8::DecodePublicKey as _;
        if let Ok(k) = verifying_key_from_pem(pem) {
            return Ok(Self::Es256(k));
        }
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
            .map(Self::Ed25519)
            .map_err(|_| "not a P-256 or Ed25519 public key in SubjectPublicKeyInfo PEM".to_owned())
    }

    fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Ed25519(_) => "EdDSA",
        }
    }

    fn verify_signature(&self, input: &[u8], sig: &[u8]) -> Result<(), JwtError> {
        match self {
            Self::Es256(k) => verify_es256(k, input, sig),
            Self::Ed25519(k) => {
                let sig =
                    ed25519_dalek::Signature::from_slice(sig).map_err(|_| JwtError::Signature)?;
                k.verify_strict(input, &sig)
                    .map_err(|_| JwtError::Signature)
            }
        }
    }
}

/// An admin private key, for signing admin tokens.
#[derive(Clone)]
#[non_exhaustive]
pub enum AdminSigner {
    /// ES256.
    Es256(SigningKey),
    /// EdDSA.
    Ed25519(ed25519_dalek::SigningKey),
}

impl std::fmt::Debug for AdminSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminSigner([redacted])")
    }
}

impl From<SigningKey> for AdminSigner {
    fn from(k: SigningKey) -> Self {
        Self::Es256(k)
    }
}

impl AdminSigner {
    /// Reads a P-256 (PKCS#8 or SEC1) or Ed25519 (PKCS#8, as `openssl genpkey -algorithm
    /// ed25519` and trustee's setup write it) private key from PEM.
    ///
    /// # Errors
    /// When the text is neither.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        if let Ok(k) = signing_key_from_pem(pem) {
            return Ok(Self::Es256(k));
        }
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(Self::Ed25519)
            .map_err(|_| {
                "not a P-256 (PKCS#8 or SEC1) or Ed25519 (PKCS#8) private key in PEM".to_owned()
            })
    }

    /// Signs `claims` as a compact JWT (`{"alg":"ES256"|"EdDSA","typ":"JWT"}`).
    pub fn sign(&self, claims: &Value) -> String {
        match self {
            Self::Es256(k) => sign(k, claims, None),
            Self::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                let signing_input = format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"JWT"}"#),
                    URL_SAFE_NO_PAD.encode(claims.to_string())
                );
                let sig = k.sign(signing_input.as_bytes());
                format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
            }
        }
    }

    /// An admin token valid from `now_secs` for `ttl_secs`.
    pub fn admin_token(&self, now_secs: u64, ttl_secs: u64) -> String {
        self.sign(&serde_json::json!({
            "iat": now_secs,
            "nbf": now_secs,
            "exp": now_secs.saturating_add(ttl_secs),
            "iss": "a3s-box",
            "role": "admin",
        }))
    }
}

/// Verifies an admin `token` with `key` as of `now_secs`: the algorithm must be the key's,
/// the signature valid, `exp` in the future, `iat` present and not in the future (nor
/// `nbf`), and `exp - iat` at most `max_lifetime_secs`. Returns the claims.
///
/// # Errors
/// [`JwtError`] naming the failed check.
pub fn verify_admin(
    token: &str,
    key: &AdminKey,
    now_secs: u64,
    max_lifetime_secs: u64,
) -> Result<Value, JwtError> {
    let claims = verify_with(
        token,
        key.alg(),
        |input, sig| key.verify_signature(input, sig),
        now_secs,
    )?;
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(JwtError::NoIssuedAt)?;
    let late = now_secs.saturating_add(ADMIN_CLOCK_SKEW_SECS);
    for (claim, at) in [
        ("iat", Some(iat)),
        ("nbf", claims.get("nbf").and_then(Value::as_u64)),
    ] {
        if let Some(at) = at.filter(|at| *at > late) {
            return Err(JwtError::NotYetValid {
                claim,
                at,
                now: now_secs,
            });
        }
    }
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    let lifetime = exp.saturating_sub(iat);
    if lifetime > max_lifetime_secs {
        return Err(JwtError::LifetimeTooLong {
            lifetime,
            max: max_lifetime_secs,
        });
    }
    Ok(claims)
}

/// The public key of `key` as a JWK (`kty`, `crv`, `alg`, `x`, `y`).
pub fn public_jwk(key: &VerifyingKey) -> Value {
    let p = key.to_encoded_point(false);
    serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(p.x().map(|c| &c[..]).unwrap_or_default()),
        "y": URL_SAFE_NO_PAD.encode(p.y().map(|c| &c[..]).unwrap_or_default()),
    })
}

/// Signs `claims` with `key`; the header carries `extra_header` members too (e.g. `jwk`).
pub fn sign(key: &SigningKey, claims: &Value, extra_header: Option<(&str, Value)>) -> String {
    let mut header = serde_json::Map::new();
    header.insert("alg".into(), "ES256".into());
    header.insert("typ".into(), "JWT".into());
    if let Some((k, v)) = extra_header {
        header.insert(k.into(), v);
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig: Signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

/// The claims of `token`, unverified (what a client reads to learn `exp`).
///
/// # Errors
/// [`JwtError::Malformed`].
pub fn claims_unverified(token: &str) -> Result<Value, JwtError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwtError::Malformed("payload is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed("payload is not JSON"))
}

/// Verifies `token` with `key` and its `exp` against `now_secs`; returns the claims.
///
/// # Errors
/// [`JwtError`] naming the failed check.
pub fn verify(token: &str, key: &VerifyingKey, now_secs: u64) -> Result<Value, JwtError> {
    verify_with(
        token,
        "ES256",
        |input, sig| verify_es256(key, input, sig),
        now_secs,
    )
}

/// ES256 (r‖s) over `input`. Verified with ring: the attestation token is checked on every
/// resource request, and ring's P-256 is several times faster than the pure-Rust one.
fn verify_es256(key: &VerifyingKey, input: &[u8], sig: &[u8]) -> Result<(), JwtError> {
    let point = key.to_encoded_point(false);
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        point.as_bytes(),
    )
    .verify(input, sig)
    .map_err(|_| JwtError::Signature)
}

/// The checks every token gets: three parts, the one expected `alg` (never `none` nor
/// another key type's), the signature, a future `exp`.
fn verify_with(
    token: &str,
    alg_expected: &str,
    verify_sig: impl FnOnce(&[u8], &[u8]) -> Result<(), JwtError>,
    now_secs: u64,
) -> Result<Value, JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed("header is not base64url JSON"))?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if alg != alg_expected {
        return Err(JwtError::Algorithm(alg.to_owned()));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    verify_sig(format!("{h}.{p}").as_bytes(), &sig)?;
    let claims = claims_unverified(token)?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(JwtError::NoExpiry)?;
    if exp <= now_secs {
        return Err(JwtError::Expired { exp, now: now_secs });
    }
    Ok(claims)
}

/// Reads a P-256 private key from PKCS#8 or SEC1 PEM.
///
/// # Errors
/// When the text is neither.
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, String> {
    use p256::pkcs8::DecodePrivateKey;
    if let Ok(k) = SigningKey::from_pkcs8_pem(pem) {
        return Ok(k);
    }
    p256::SecretKey::from_sec1_pem(pem)
        .map(SigningKey::from)
        .map_err(|_| "not a P-256 private key in PKCS#8 or SEC1 PEM".to_owned())
}

/// Reads a P-256 public key from SPKI PEM.
///
/// # Errors
/// When the text is not one.
pub fn verifying_key_from_pem(pem: &str) -> Result<VerifyingKey, String> {
    use p256::pkcs8::DecodePublicKey;
    VerifyingKey::from_public_key_pem(pem)
        .map_err(|_| "not a P-256 public key in SubjectPublicKeyInfo PEM".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn admin_tokens_of_both_key_types_verify_and_their_times_are_checked() {
        let ed = ed25519_dalek::SigningKey::generate(&mut OsRng);
        let es = SigningKey::random(&mut OsRng);
        let day = 86_400;
        for (signer, key) in [
            (
                AdminSigner::Ed25519(ed.clone()),
                AdminKey::Ed25519(ed.verifying_key()),
            ),
            (
                AdminSigner::Es256(es.clone()),
                AdminKey::Es256(*es.verifying_key()),
            ),
        ] {
            let t = signer.admin_token(1000, 300);
            assert_eq!(verify_admin(&t, &key, 1000, day).unwrap()["exp"], 1300);
            assert!(matches!(
                verify_admin(&t, &key, 1300, day),
                Err(JwtError::Expired { .. })
            ));
            assert!(matches!(
                verify_admin(&t, &key, 1000, 299),
                Err(JwtError::LifetimeTooLong {
                    lifetime: 300,
                    max: 299
                })
            ));
            // Made in the future (beyond the skew allowance): refused.
            let future = signer.admin_token(1000 + ADMIN_CLOCK_SKEW_SECS + 1, 300);
            assert!(matches!(
                verify_admin(&future, &key, 1000, day),
                Err(JwtError::NotYetValid { claim: "iat", .. })
            ));
            let no_iat = signer.sign(&serde_json::json!({"exp": 2000}));
            assert_eq!(
                verify_admin(&no_iat, &key, 1000, day),
                Err(JwtError::NoIssuedAt)
            );
        }
        // A token of one key type is not accepted by the other's key (no alg confusion).
        let t = AdminSigner::Ed25519(ed).admin_token(1000, 300);
        assert!(matches!(
            verify_admin(&t, &AdminKey::Es256(*es.verifying_key()), 1000, day),
            Err(JwtError::Algorithm(_))
        ));
        let other = ed25519_dalek::SigningKey::generate(&mut OsRng);
        assert_eq!(
            verify_admin(&t, &AdminKey::Ed25519(other.verifying_key()), 1000, day),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn admin_keys_read_from_openssl_style_pem() {
        use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
        let ed = ed25519_dalek::SigningKey::generate(&mut OsRng);
        let private = ed.to_pkcs8_pem(Default::default()).unwrap();
        let public = ed
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        let signer = AdminSigner::from_pem(&private).unwrap();
        let key = AdminKey::from_pem(&public).unwrap();
        verify_admin(&signer.admin_token(5, 10), &key, 5, 10).unwrap();
        assert!(
            AdminKey::from_pem("-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
    }

    #[test]
    fn signs_and_verifies_and_refuses_expired_or_foreign_tokens() {
        let key = SigningKey::random(&mut OsRng);
        let t = sign(&key, &serde_json::json!({"exp": 100, "a": 1}), None);
        assert_eq!(verify(&t, key.verifying_key(), 99).unwrap()["a"], 1);
        assert!(matches!(
            verify(&t, key.verifying_key(), 100),
            Err(JwtError::Expired { .. })
        ));
        let other = SigningKey::random(&mut OsRng);
        assert_eq!(
            verify(&t, other.verifying_key(), 1),
            Err(JwtError::Signature)
        );
        assert!(verify("a.b", key.verifying_key(), 1).is_err());
        let none = t.replacen(
            t.split('.').next().unwrap(),
            &URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            1,
        );
        assert!(matches!(
            verify(&none, key.verifying_key(), 1),
            Err(JwtError::Algorithm(_))
        ));
    }
}
