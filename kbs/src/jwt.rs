//! Compact JWS (JWT) with ES256 (ECDSA P-256, SHA-256, r‖s), used for attestation tokens and
//! admin credentials. Hand-written: a JWT is three base64url parts and one signature.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::{Signer, Verifier};
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
    #[error("token algorithm {0:?} is not ES256")]
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
    if alg != "ES256" {
        return Err(JwtError::Algorithm(alg.to_owned()));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    let sig = Signature::from_slice(&sig).map_err(|_| JwtError::Signature)?;
    key.verify(format!("{h}.{p}").as_bytes(), &sig)
        .map_err(|_| JwtError::Signature)?;
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
