//! JWE (RFC 7516, flattened JSON) of resources to the TEE key, written by hand so the
//! protected header is byte-exact.
//!
//! Content encryption is always `A256GCM` with a fresh 32-byte key and 12-byte IV; the AAD is
//! ASCII(BASE64URL(protected header)). Key management by TEE key:
//!
//! | key | `alg` | `encrypted_key` | header |
//! |---|---|---|---|
//! | EC P-256 / P-521 | `ECDH-ES+A256KW` | AES-256-KW(KEK, CEK), 40 bytes | `epk` |
//! | RSA | `RSA-OAEP-256` | RSAES-OAEP(SHA-256, MGF1-SHA-256) | — |
//!
//! KEK = Concat KDF (NIST SP 800-56A, RFC 7518 §4.6.2) with SHA-256 over the ECDH
//! x-coordinate, AlgorithmID `ECDH-ES+A256KW`, empty PartyUInfo/PartyVInfo, 256 bits.
//!
//! guest-components does not use the received `protected` string: it decodes the header and
//! re-serialises it as `alg`, `enc`, then the other members in key order (recursively) to
//! recompute the AAD, so the header is written in exactly that order, compact:
//! `{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"P-256","kty":"EC","x":"…","y":"…"}}`.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Oaep, RsaPrivateKey, RsaPublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::protocol::{JweResponse, TeePubKey};

/// `alg` for elliptic-curve keys.
pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
/// `alg` for RSA keys.
pub const ALG_RSA_OAEP_256: &str = "RSA-OAEP-256";
/// `enc`, always.
pub const ENC_A256GCM: &str = "A256GCM";

/// Why a JWE could not be made or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JweError {
    /// The TEE key names a curve or algorithm this broker does not support.
    #[error("unsupported TEE key: {0}")]
    UnsupportedKey(String),
    /// The TEE key's coordinates or modulus are not a valid key.
    #[error("invalid TEE key: {0}")]
    InvalidKey(String),
    /// A JWE member is not base64url or the header is not JSON.
    #[error("malformed JWE: {0}")]
    Malformed(String),
    /// Key unwrap or decryption failed (wrong key or tampered JWE).
    #[error("JWE decryption failed")]
    Decrypt,
    /// Encryption failed.
    #[error("JWE encryption failed")]
    Encrypt,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(field: &str, text: &str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JweError::Malformed(format!("{field} is not base64url")))
}

/// An EC point (or public key) coordinates, fixed length for the curve.
fn ec_header(crv: &str, x: &[u8], y: &[u8]) -> String {
    // Members in key order: crv, kty, x, y (the re-serialisation order of real clients).
    format!(
        r#"{{"alg":"{ALG_ECDH_ES_A256KW}","enc":"{ENC_A256GCM}","epk":{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}}}"#,
        b64(x),
        b64(y)
    )
}

fn concat_kdf(z: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    h.update(
        u32::try_from(ALG_ECDH_ES_A256KW.len())
            .unwrap_or(0)
            .to_be_bytes(),
    );
    h.update(ALG_ECDH_ES_A256KW.as_bytes());
    h.update(0u32.to_be_bytes()); // PartyUInfo
    h.update(0u32.to_be_bytes()); // PartyVInfo
    h.update(256u32.to_be_bytes()); // SuppPubInfo: key length in bits
    Zeroizing::new(h.finalize().into())
}

fn wrap(kek: &[u8; 32], cek: &[u8; 32]) -> Result<Vec<u8>, JweError> {
    let kek = aes_kw::KekAes256::from(*kek);
    kek.wrap_vec(cek).map_err(|_| JweError::Encrypt)
}

fn unwrap_key(kek: &[u8; 32], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let kek = aes_kw::KekAes256::from(*kek);
    kek.unwrap_vec(wrapped)
        .map(Zeroizing::new)
        .map_err(|_| JweError::Decrypt)
}

fn coord(field: &str, text: &str, len: usize) -> Result<Vec<u8>, JweError> {
    let v = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JweError::InvalidKey(format!("{field} is not base64url")))?;
    if v.len() != len {
        return Err(JweError::InvalidKey(format!(
            "{field} has {} bytes, expected {len}",
            v.len()
        )));
    }
    Ok(v)
}

/// Encrypts `plaintext` to `key`.
///
/// # Errors
/// [`JweError`] for an unsupported or invalid key.
pub fn encrypt(key: &TeePubKey, plaintext: &[u8]) -> Result<JweResponse, JweError> {
    let mut cek = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(cek.as_mut());
    let (protected, encrypted_key) = match key {
        TeePubKey::Ec { crv, alg, x, y } => {
            if alg != ALG_ECDH_ES_A256KW {
                return Err(JweError::UnsupportedKey(format!(
                    "EC key with alg {alg:?} (supported: {ALG_ECDH_ES_A256KW})"
                )));
            }
            let (z, epk_x, epk_y) = match crv.as_str() {
                "P-256" => ecdh_p256(x, y)?,
                "P-521" => ecdh_p521(x, y)?,
                other => {
                    return Err(JweError::UnsupportedKey(format!(
                        "curve {other:?} (supported: P-256, P-521)"
                    )))
                }
            };
            let kek = concat_kdf(&z);
            (ec_header(crv, &epk_x, &epk_y), wrap(&kek, &cek)?)
        }
        TeePubKey::Rsa { alg, n, e } => {
            if alg != ALG_RSA_OAEP_256 {
                return Err(JweError::UnsupportedKey(format!(
                    "RSA key with alg {alg:?} (supported: {ALG_RSA_OAEP_256})"
                )));
            }
            let n = BigUint::from_bytes_be(&unb64("n", n)?);
            let e = BigUint::from_bytes_be(&unb64("e", e)?);
            let public =
                RsaPublicKey::new(n, e).map_err(|err| JweError::InvalidKey(err.to_string()))?;
            if public.size() < 256 {
                return Err(JweError::InvalidKey(format!(
                    "RSA modulus of {} bits, at least 2048 required",
                    public.size() * 8
                )));
            }
            let wrapped = public
                .encrypt(&mut OsRng, Oaep::new::<Sha256>(), cek.as_ref())
                .map_err(|_| JweError::Encrypt)?;
            (
                format!(r#"{{"alg":"{ALG_RSA_OAEP_256}","enc":"{ENC_A256GCM}"}}"#),
                wrapped,
            )
        }
    };
    let protected = b64(protected.as_bytes());
    let mut iv = [0u8; 12];
    OsRng.fill_bytes(&mut iv);
    let cipher = Aes256Gcm::new_from_slice(cek.as_ref()).map_err(|_| JweError::Encrypt)?;
    let mut sealed = cipher
        .encrypt(
            &Nonce::from(iv),
            Payload {
                msg: plaintext,
                aad: protected.as_bytes(),
            },
        )
        .map_err(|_| JweError::Encrypt)?;
    let tag = sealed.split_off(sealed.len() - 16);
    Ok(JweResponse {
        protected,
        encrypted_key: b64(&encrypted_key),
        iv: b64(&iv),
        ciphertext: b64(&sealed),
        tag: b64(&tag),
    })
}

type Ecdh = (Zeroizing<Vec<u8>>, Vec<u8>, Vec<u8>);

fn ecdh_p256(x: &str, y: &str) -> Result<Ecdh, JweError> {
    use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
    let (x, y) = (coord("x", x, 32)?, coord("y", y, 32)?);
    let mut peer = Vec::with_capacity(65);
    peer.push(0x04); // SEC1 uncompressed
    peer.extend_from_slice(&x);
    peer.extend_from_slice(&y);
    // ring: this runs once per released resource, and its P-256 is several times faster.
    let rng = ring::rand::SystemRandom::new();
    let eph = EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| JweError::Encrypt)?;
    let epk = eph.compute_public_key().map_err(|_| JweError::Encrypt)?;
    // agree_ephemeral refuses a point that is not on the curve.
    let z = agreement::agree_ephemeral(eph, &UnparsedPublicKey::new(&ECDH_P256, &peer), |z| {
        Zeroizing::new(z.to_vec())
    })
    .map_err(|_| JweError::InvalidKey("P-256 point is not on the curve".into()))?;
    match epk.as_ref() {
        [0x04, rest @ ..] if rest.len() == 64 => Ok((z, rest[..32].to_vec(), rest[32..].to_vec())),
        _ => Err(JweError::Encrypt),
    }
}

fn ecdh_p521(x: &str, y: &str) -> Result<Ecdh, JweError> {
    use p521::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
    let (x, y) = (coord("x", x, 66)?, coord("y", y, 66)?);
    let point = p521::EncodedPoint::from_affine_coordinates(x[..].into(), y[..].into(), false);
    let public = Option::<p521::PublicKey>::from(p521::PublicKey::from_encoded_point(&point))
        .ok_or_else(|| JweError::InvalidKey("P-521 point is not on the curve".into()))?;
    let eph = p521::ecdh::EphemeralSecret::random(&mut OsRng);
    let z = Zeroizing::new(eph.diffie_hellman(&public).raw_secret_bytes().to_vec());
    let epk = eph.public_key().to_encoded_point(false);
    match (epk.x(), epk.y()) {
        (Some(ex), Some(ey)) => Ok((z, ex.to_vec(), ey.to_vec())),
        _ => Err(JweError::Encrypt),
    }
}

/// The TEE's private key: generated in the TEE, its public half sent as `tee-pubkey`.
pub enum TeeKeyPair {
    /// P-256 (guest-components' default).
    P256(p256::SecretKey),
    /// P-521.
    P521(p521::SecretKey),
    /// RSA (2048 bits or more), for `RSA-OAEP-256`.
    Rsa(Box<RsaPrivateKey>),
}

impl fmt::Debug for TeeKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::P256(_) => "P256",
            Self::P521(_) => "P521",
            Self::Rsa(_) => "Rsa",
        };
        write!(f, "TeeKeyPair::{kind}([redacted])")
    }
}

/// Which kind of TEE key to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TeeKeyKind {
    /// EC P-256, `ECDH-ES+A256KW`.
    #[default]
    P256,
    /// EC P-521, `ECDH-ES+A256KW`.
    P521,
    /// RSA-2048, `RSA-OAEP-256`.
    Rsa2048,
}

impl TeeKeyPair {
    /// A fresh key of `kind`.
    ///
    /// # Errors
    /// [`JweError::Encrypt`] when RSA key generation fails.
    pub fn generate(kind: TeeKeyKind) -> Result<Self, JweError> {
        Ok(match kind {
            TeeKeyKind::P256 => Self::P256(p256::SecretKey::random(&mut OsRng)),
            TeeKeyKind::P521 => Self::P521(p521::SecretKey::random(&mut OsRng)),
            TeeKeyKind::Rsa2048 => Self::Rsa(Box::new(
                RsaPrivateKey::new(&mut OsRng, 2048).map_err(|_| JweError::Encrypt)?,
            )),
        })
    }

    /// The public key as the JWK sent in runtime data (`kty` first, as kbs-types writes it).
    pub fn public_jwk(&self) -> Value {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_owned(), Value::String(v));
        };
        match self {
            Self::P256(k) => {
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                let p = k.public_key().to_encoded_point(false);
                put("kty", "EC".into());
                put("crv", "P-256".into());
                put("alg", ALG_ECDH_ES_A256KW.into());
                put("x", b64(p.x().map(|c| &c[..]).unwrap_or_default()));
                put("y", b64(p.y().map(|c| &c[..]).unwrap_or_default()));
            }
            Self::P521(k) => {
                use p521::elliptic_curve::sec1::ToEncodedPoint;
                let p = k.public_key().to_encoded_point(false);
                put("kty", "EC".into());
                put("crv", "P-521".into());
                put("alg", ALG_ECDH_ES_A256KW.into());
                put("x", b64(p.x().map(|c| &c[..]).unwrap_or_default()));
                put("y", b64(p.y().map(|c| &c[..]).unwrap_or_default()));
            }
            Self::Rsa(k) => {
                put("kty", "RSA".into());
                put("alg", ALG_RSA_OAEP_256.into());
                put("n", b64(&k.n().to_bytes_be()));
                put("e", b64(&k.e().to_bytes_be()));
            }
        }
        Value::Object(m)
    }

    /// Decrypts a JWE made for this key.
    ///
    /// # Errors
    /// [`JweError::Malformed`] for a JWE that does not parse, [`JweError::UnsupportedKey`] for
    /// an algorithm that does not fit the key, [`JweError::Decrypt`] for anything that fails
    /// authentication.
    pub fn decrypt(&self, jwe: &JweResponse) -> Result<Zeroizing<Vec<u8>>, JweError> {
        let header_bytes = unb64("protected", &jwe.protected)?;
        let header: Value = serde_json::from_slice(&header_bytes)
            .map_err(|_| JweError::Malformed("protected header is not JSON".into()))?;
        let field = |name: &str| header.get(name).and_then(Value::as_str);
        if field("enc") != Some(ENC_A256GCM) {
            return Err(JweError::UnsupportedKey(format!(
                "enc {:?} (supported: {ENC_A256GCM})",
                field("enc")
            )));
        }
        let wrapped = unb64("encrypted_key", &jwe.encrypted_key)?;
        let cek: Zeroizing<Vec<u8>> = match self {
            Self::P256(_) | Self::P521(_) => {
                if field("alg") != Some(ALG_ECDH_ES_A256KW) {
                    return Err(JweError::UnsupportedKey(format!("alg {:?}", field("alg"))));
                }
                let epk = header
                    .get("epk")
                    .ok_or_else(|| JweError::Malformed("no epk in header".into()))?;
                let part = |n: &str| {
                    epk.get(n)
                        .and_then(Value::as_str)
                        .ok_or_else(|| JweError::Malformed(format!("epk has no {n}")))
                };
                let (x, y) = (part("x")?, part("y")?);
                let z = match self {
                    Self::P256(k) => {
                        use p256::elliptic_curve::sec1::FromEncodedPoint;
                        let (x, y) = (coord("x", x, 32)?, coord("y", y, 32)?);
                        let p = p256::EncodedPoint::from_affine_coordinates(
                            x[..].into(),
                            y[..].into(),
                            false,
                        );
                        let public = Option::<p256::PublicKey>::from(
                            p256::PublicKey::from_encoded_point(&p),
                        )
                        .ok_or(JweError::Decrypt)?;
                        let shared =
                            p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), public.as_affine());
                        Zeroizing::new(shared.raw_secret_bytes().to_vec())
                    }
                    Self::P521(k) => {
                        use p521::elliptic_curve::sec1::FromEncodedPoint;
                        let (x, y) = (coord("x", x, 66)?, coord("y", y, 66)?);
                        let p = p521::EncodedPoint::from_affine_coordinates(
                            x[..].into(),
                            y[..].into(),
                            false,
                        );
                        let public = Option::<p521::PublicKey>::from(
                            p521::PublicKey::from_encoded_point(&p),
                        )
                        .ok_or(JweError::Decrypt)?;
                        let shared =
                            p521::ecdh::diffie_hellman(k.to_nonzero_scalar(), public.as_affine());
                        Zeroizing::new(shared.raw_secret_bytes().to_vec())
                    }
                    Self::Rsa(_) => return Err(JweError::Decrypt),
                };
                unwrap_key(&concat_kdf(&z), &wrapped)?
            }
            Self::Rsa(k) => {
                if field("alg") != Some(ALG_RSA_OAEP_256) {
                    return Err(JweError::UnsupportedKey(format!("alg {:?}", field("alg"))));
                }
                Zeroizing::new(
                    k.decrypt(Oaep::new::<Sha256>(), &wrapped)
                        .map_err(|_| JweError::Decrypt)?,
                )
            }
        };
        let iv = unb64("iv", &jwe.iv)?;
        let iv: [u8; 12] = iv.try_into().map_err(|v: Vec<u8>| {
            JweError::Malformed(format!("iv has {} bytes, expected 12", v.len()))
        })?;
        let mut sealed = unb64("ciphertext", &jwe.ciphertext)?;
        let tag = unb64("tag", &jwe.tag)?;
        if tag.len() != 16 {
            return Err(JweError::Malformed(format!(
                "tag has {} bytes, expected 16",
                tag.len()
            )));
        }
        sealed.extend_from_slice(&tag);
        let cipher = Aes256Gcm::new_from_slice(&cek).map_err(|_| JweError::Decrypt)?;
        cipher
            .decrypt(
                &Nonce::from(iv),
                Payload {
                    msg: &sealed,
                    aad: jwe.protected.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| JweError::Decrypt)
    }

    /// The public key as the typed [`TeePubKey`].
    pub fn tee_pubkey(&self) -> TeePubKey {
        serde_json::from_value(self.public_jwk())
            .expect("public_jwk always writes a kty-tagged EC or RSA JWK")
    }
}

/// Re-serialises a protected header the way guest-components does before computing the AAD:
/// `alg`, `enc`, then every other member in key order (nested objects sorted too), compact.
///
/// # Errors
/// [`JweError::Malformed`] when the header is not a JSON object with string `alg` and `enc`.
pub fn reserialize_protected_header(protected_b64: &str) -> Result<String, JweError> {
    let bytes = unb64("protected", protected_b64)?;
    let value: serde_json::Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| JweError::Malformed("protected header is not a JSON object".into()))?;
    let mut out = String::from("{");
    for (i, key) in ["alg", "enc"].iter().enumerate() {
        let v = value
            .get(*key)
            .and_then(Value::as_str)
            .ok_or_else(|| JweError::Malformed(format!("header has no {key}")))?;
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{}:{}", Value::from(*key), Value::from(v)));
    }
    // serde_json's Map is a BTreeMap here (no preserve_order): keys come out sorted.
    let rest: std::collections::BTreeMap<&String, &Value> = value
        .iter()
        .filter(|(k, _)| *k != "alg" && *k != "enc")
        .collect();
    for (k, v) in rest {
        out.push(',');
        out.push_str(&format!("{}:{}", Value::from(k.as_str()), sorted(v)));
    }
    out.push('}');
    Ok(b64(out.as_bytes()))
}

fn sorted(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let inner: std::collections::BTreeMap<&String, &Value> = m.iter().collect();
            let parts: Vec<String> = inner
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), sorted(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kbs_types_header_vector_serialises_alg_then_enc() {
        // kbs-types 0.18: {"alg":"fakealg","enc":"fakeenc"} -> this AAD.
        let h = b64(br#"{"enc":"fakeenc","alg":"fakealg"}"#);
        assert_eq!(
            reserialize_protected_header(&h).unwrap(),
            "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyJ9"
        );
    }

    fn round_trip(kind: TeeKeyKind) {
        let key = TeeKeyPair::generate(kind).unwrap();
        let jwe = encrypt(&key.tee_pubkey(), b"the secret").unwrap();
        // What a guest-components client recomputes equals what we sent.
        assert_eq!(
            reserialize_protected_header(&jwe.protected).unwrap(),
            jwe.protected
        );
        assert_eq!(&key.decrypt(&jwe).unwrap()[..], b"the secret");
        let header = String::from_utf8(unb64("p", &jwe.protected).unwrap()).unwrap();
        assert!(header.starts_with(r#"{"alg":""#), "{header}");
        assert_eq!(unb64("iv", &jwe.iv).unwrap().len(), 12);
        assert_eq!(unb64("tag", &jwe.tag).unwrap().len(), 16);
    }

    #[test]
    fn round_trips_p256() {
        round_trip(TeeKeyKind::P256);
    }

    #[test]
    fn round_trips_p521() {
        round_trip(TeeKeyKind::P521);
    }

    #[test]
    fn round_trips_rsa_oaep_256() {
        round_trip(TeeKeyKind::Rsa2048);
    }

    #[test]
    fn ec_header_has_exact_member_order() {
        let key = TeeKeyPair::generate(TeeKeyKind::P256).unwrap();
        let jwe = encrypt(&key.tee_pubkey(), b"x").unwrap();
        let header: Value = serde_json::from_slice(&unb64("p", &jwe.protected).unwrap()).unwrap();
        let text = String::from_utf8(unb64("p", &jwe.protected).unwrap()).unwrap();
        let expect = format!(
            r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{{"crv":"P-256","kty":"EC","x":{},"y":{}}}}}"#,
            header["epk"]["x"], header["epk"]["y"]
        );
        assert_eq!(text, expect);
        assert_eq!(unb64("ek", &jwe.encrypted_key).unwrap().len(), 40);
    }

    #[test]
    fn another_key_or_a_flipped_byte_fails_to_decrypt() {
        let key = TeeKeyPair::generate(TeeKeyKind::P256).unwrap();
        let other = TeeKeyPair::generate(TeeKeyKind::P256).unwrap();
        let jwe = encrypt(&key.tee_pubkey(), b"secret").unwrap();
        assert!(matches!(other.decrypt(&jwe), Err(JweError::Decrypt)));
        let mut ct = unb64("c", &jwe.ciphertext).unwrap();
        ct[0] ^= 1;
        let tampered = JweResponse {
            ciphertext: b64(&ct),
            ..jwe.clone()
        };
        assert!(matches!(key.decrypt(&tampered), Err(JweError::Decrypt)));
        // A header re-encoded in another order changes the AAD.
        let swapped = JweResponse {
            protected: b64(String::from_utf8(unb64("p", &jwe.protected).unwrap())
                .unwrap()
                .replacen(
                    r#""alg":"ECDH-ES+A256KW","enc":"A256GCM""#,
                    r#""enc":"A256GCM","alg":"ECDH-ES+A256KW""#,
                    1,
                )
                .as_bytes()),
            ..jwe
        };
        assert!(matches!(key.decrypt(&swapped), Err(JweError::Decrypt)));
    }

    #[test]
    fn rejects_unsupported_and_invalid_keys() {
        let bad_curve = TeePubKey::Ec {
            crv: "P-384".into(),
            alg: ALG_ECDH_ES_A256KW.into(),
            x: "AA".into(),
            y: "AA".into(),
        };
        assert!(matches!(
            encrypt(&bad_curve, b"x"),
            Err(JweError::UnsupportedKey(_))
        ));
        let off_curve = TeePubKey::Ec {
            crv: "P-256".into(),
            alg: ALG_ECDH_ES_A256KW.into(),
            x: b64(&[1u8; 32]),
            y: b64(&[2u8; 32]),
        };
        assert!(matches!(
            encrypt(&off_curve, b"x"),
            Err(JweError::InvalidKey(_))
        ));
        let rsa1_5 = TeePubKey::Rsa {
            alg: "RSA1_5".into(),
            n: "AQAB".into(),
            e: "AQAB".into(),
        };
        assert!(matches!(
            encrypt(&rsa1_5, b"x"),
            Err(JweError::UnsupportedKey(_))
        ));
    }
}
