//! Cosign key formats: ECDSA P-256, public key as SPKI `PUBLIC KEY` PEM, private key as
//! `ENCRYPTED SIGSTORE PRIVATE KEY` PEM whose body is JSON
//! `{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":<b64 32 B>},
//!   "cipher":{"name":"nacl/secretbox","nonce":<b64 24 B>},"ciphertext":<b64>}`
//! (key = scrypt(password, salt, N, r, p, 32), plaintext = PKCS#8 DER), exactly what cosign's
//! `generate-key-pair` writes (go-securesystemslib `encrypted`). cosign's older
//! `ENCRYPTED COSIGN PRIVATE KEY` label and unencrypted PKCS#8 `PRIVATE KEY` are read too.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// PEM label cosign writes for encrypted private keys.
pub const ENCRYPTED_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
const LEGACY_ENCRYPTED_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// scrypt cost cosign uses (N = 2^15, r = 8, p = 1).
const SCRYPT_LOG_N: u8 = 15;

/// Why a key could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not PEM, or a PEM label we do not know.
    #[error("not a cosign key: {0}")]
    Format(String),
    /// The encrypted key's JSON is malformed or uses an unsupported KDF or cipher.
    #[error("unsupported or malformed encrypted private key: {0}")]
    Envelope(String),
    /// Wrong password (or a corrupted key): the two are indistinguishable by design.
    #[error("cannot decrypt the private key: wrong password or corrupted key")]
    Decrypt,
    /// The key material is not an ECDSA P-256 key.
    #[error("key is not an ECDSA P-256 key")]
    NotP256,
}

impl KeyError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Decrypt => {
                Some("set COSIGN_PASSWORD to the password the key was generated with".into())
            }
            Self::Format(_) | Self::NotP256 => Some(
                "use a key made by `a3s-box key generate` or `cosign generate-key-pair`".into(),
            ),
            _ => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// A private signing key. `Debug` prints `[redacted]`.
pub struct PrivateKey(SigningKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

/// A public verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PrivateKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(SigningKey::random(&mut OsRng))
    }

    /// Its public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    /// Signs `msg` (ECDSA P-256 over SHA-256), ASN.1 DER signature as cosign stores it.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let sig: DerSignature = self.0.sign(msg);
        sig.as_bytes().to_vec()
    }

    /// cosign's encrypted PEM with the given password (may be empty, as cosign allows).
    pub fn to_encrypted_pem(&self, password: &[u8]) -> String {
        let der = self.0.to_pkcs8_der().expect("P-256 key encodes as PKCS#8");
        let mut salt = [0u8; 32];
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut nonce);
        let key =
            derive(password, &salt, SCRYPT_LOG_N, 8, 1).expect("fixed scrypt params are valid");
        let cipher = XSalsa20Poly1305::new(key.as_slice().into());
        let ciphertext = cipher
            .encrypt(nonce.as_slice().into(), der.as_bytes())
            .expect("secretbox encryption of a small buffer cannot fail");
        let env = Envelope {
            kdf: Kdf {
                name: "scrypt".into(),
                params: ScryptParams {
                    n: 1 << SCRYPT_LOG_N,
                    r: 8,
                    p: 1,
                },
                salt: B64.encode(salt),
            },
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce: B64.encode(nonce),
            },
            ciphertext: B64.encode(ciphertext),
        };
        let json = serde_json::to_vec(&env).expect("envelope serialises");
        pem_encode(ENCRYPTED_KEY_LABEL, &json)
    }

    /// Reads cosign's encrypted PEM (either label) or an unencrypted PKCS#8 PEM.
    ///
    /// # Errors
    /// [`KeyError`]; a wrong password is [`KeyError::Decrypt`].
    pub fn from_pem(pem: &str, password: &[u8]) -> Result<Self, KeyError> {
        let (label, body) = pem_decode(pem)?;
        match label.as_str() {
            ENCRYPTED_KEY_LABEL | LEGACY_ENCRYPTED_KEY_LABEL => {}
            "PRIVATE KEY" => {
                return SigningKey::from_pkcs8_der(&body)
                    .map(Self)
                    .map_err(|_| KeyError::NotP256)
            }
            "EC PRIVATE KEY" => {
                return p256::SecretKey::from_sec1_der(&body)
                    .map(|k| Self(k.into()))
                    .map_err(|_| KeyError::NotP256)
            }
            other => return Err(KeyError::Format(format!("unexpected PEM label {other:?}"))),
        }
        let env: Envelope =
            serde_json::from_slice(&body).map_err(|e| KeyError::Envelope(e.to_string()))?;
        if env.kdf.name != "scrypt" || env.cipher.name != "nacl/secretbox" {
            return Err(KeyError::Envelope(format!(
                "kdf {:?} cipher {:?}",
                env.kdf.name, env.cipher.name
            )));
        }
        let ScryptParams { n, r, p } = env.kdf.params;
        if !n.is_power_of_two()
            || !(1 << 10..=1 << 20).contains(&n)
            || r != 8
            || !(1..=4).contains(&p)
        {
            return Err(KeyError::Envelope(format!(
                "scrypt parameters N={n} r={r} p={p}"
            )));
        }
        let log_n = u8::try_from(n.trailing_zeros()).map_err(|_| KeyError::Envelope("N".into()))?;
        let b64 = |s: &str, what: &str| {
            B64.decode(s)
                .map_err(|_| KeyError::Envelope(format!("{what} is not base64")))
        };
        let salt = b64(&env.kdf.salt, "salt")?;
        let nonce = b64(&env.cipher.nonce, "nonce")?;
        let ct = b64(&env.ciphertext, "ciphertext")?;
        if nonce.len() != 24 {
            return Err(KeyError::Envelope("nonce must be 24 bytes".into()));
        }
        let key = derive(password, &salt, log_n, r, p)?;
        let cipher = XSalsa20Poly1305::new(key.as_slice().into());
        let der = Zeroizing::new(
            cipher
                .decrypt(nonce.as_slice().into(), ct.as_slice())
                .map_err(|_| KeyError::Decrypt)?,
        );
        SigningKey::from_pkcs8_der(&der)
            .map(Self)
            .map_err(|_| KeyError::NotP256)
    }
}

fn derive(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let params =
        scrypt::Params::new(log_n, r, p, 32).map_err(|e| KeyError::Envelope(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, key.as_mut())
        .map_err(|e| KeyError::Envelope(e.to_string()))?;
    Ok(key)
}

impl PublicKey {
    /// Reads a `PUBLIC KEY` (SPKI) PEM.
    ///
    /// # Errors
    /// Not PEM or not a P-256 key.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, _) = pem_decode(pem)?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::Format(format!(
                "expected a PUBLIC KEY PEM, found {label:?} (pass the .pub file)"
            )));
        }
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(Self)
            .map_err(|_| KeyError::NotP256)
    }

    /// The SPKI PEM, as cosign writes `cosign.pub`.
    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .expect("P-256 key encodes as SPKI")
    }

    /// Verifies an ASN.1 DER ECDSA signature over `msg`.
    pub fn verify(&self, msg: &[u8], der_sig: &[u8]) -> bool {
        let Ok(sig) = p256::ecdsa::Signature::from_der(der_sig) else {
            return false;
        };
        self.0.verify(msg, &sig).is_ok()
    }

    /// `sha256:<hex>` of the SPKI DER: a short stable name for the key.
    pub fn fingerprint(&self) -> String {
        let der = self
            .0
            .to_public_key_der()
            .expect("P-256 key encodes as SPKI");
        format!("sha256:{}", hex::encode(Sha256::digest(der.as_bytes())))
    }
}

fn pem_encode(label: &str, body: &[u8]) -> String {
    let b64 = B64.encode(body);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(pem: &str) -> Result<(String, Vec<u8>), KeyError> {
    let text = pem.trim();
    let first = text.lines().next().unwrap_or_default();
    let label = first
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or_else(|| KeyError::Format("missing -----BEGIN line".into()))?
        .to_owned();
    let end = format!("-----END {label}-----");
    let mut b64 = String::new();
    let mut ended = false;
    for line in text.lines().skip(1) {
        if line.trim() == end {
            ended = true;
            break;
        }
        b64.push_str(line.trim());
    }
    if !ended {
        return Err(KeyError::Format(format!("missing {end}")));
    }
    let body = B64
        .decode(b64)
        .map_err(|_| KeyError::Format("PEM body is not base64".into()))?;
    Ok((label, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_key_round_trips_and_wrong_password_fails() {
        let k = PrivateKey::generate();
        let pem = k.to_encrypted_pem(b"hunter2");
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let (_, body) = pem_decode(&pem).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["kdf"]["params"],
            serde_json::json!({"N": 32768, "r": 8, "p": 1})
        );
        assert_eq!(v["cipher"]["name"], "nacl/secretbox");
        let back = PrivateKey::from_pem(&pem, b"hunter2").unwrap();
        assert_eq!(back.public_key(), k.public_key());
        assert!(matches!(
            PrivateKey::from_pem(&pem, b"wrong"),
            Err(KeyError::Decrypt)
        ));
        assert!(!format!("{k:?}").contains(&hex::encode(k.0.to_bytes())));
    }

    #[test]
    fn signatures_verify_only_with_the_right_key_and_message() {
        let k = PrivateKey::generate();
        let sig = k.sign(b"payload");
        let pubk = PublicKey::from_pem(&k.public_key().to_pem()).unwrap();
        assert!(pubk.verify(b"payload", &sig));
        assert!(!pubk.verify(b"payloaD", &sig));
        assert!(!PrivateKey::generate().public_key().verify(b"payload", &sig));
        assert!(!pubk.verify(b"payload", b"not der"));
    }

    #[test]
    fn public_key_reader_refuses_private_keys() {
        let k = PrivateKey::generate();
        let err = PublicKey::from_pem(&k.to_encrypted_pem(b"")).unwrap_err();
        assert!(err.to_string().contains("PUBLIC KEY"), "{err}");
    }
}
