//! Cosign-compatible image signatures with keys (no Fulcio, no Rekor).
//!
//! Two storage forms are read, one is written:
//! - **Legacy** (written by `sign`, read by `verify`): tag `sha256-<hex>.sig` in the image's
//!   repository holds an OCI manifest with one layer per signature, media type
//!   `application/vnd.dev.cosign.simplesigning.v1+json`; the layer blob is the simple-signing
//!   payload and the annotation `dev.cosignproject.cosign/signature` is base64 of the ASN.1 DER
//!   ECDSA P-256 / SHA-256 signature over the exact payload bytes.
//! - **OCI 1.1 bundle** (read only): a referrer of the image (referrers API, or the
//!   `sha256-<hex>` tag fallback) whose `artifactType` is a Sigstore bundle; the bundle's DSSE
//!   envelope carries an in-toto statement whose subject digest must be the image's.
//!
//! Checks, and why: the signature must verify with a trusted key over the exact payload; the
//! payload's `docker-manifest-digest` (or statement subject) must equal the digest the
//! reference *actually resolved to* at the registry (a re-pushed tag therefore fails); the
//! payload type must be cosign's. The identity (`docker-reference`) is advisory, as in cosign.

pub mod keys;
pub mod policy;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub use keys::{KeyError, PrivateKey, PublicKey};
pub use policy::{PolicyError, Requirement, SignaturePolicy};

use crate::oci::{self, Descriptor, Manifest};
use crate::reference::{Digest, ImageRef};
use crate::registry::{Registry, RegistryError};
use crate::store::{ImageStore, LocalImage, StoreError};

/// Layer media type of a legacy cosign signature.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The payload's `critical.type`.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
const BUNDLE_MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// One signature found for an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Signature {
    /// Legacy `.sig` layer: payload bytes and DER signature.
    SimpleSigning {
        /// The payload blob (base64 in JSON).
        #[serde(with = "b64")]
        payload: Vec<u8>,
        /// The DER signature (base64 in JSON).
        #[serde(with = "b64")]
        signature: Vec<u8>,
    },
    /// A Sigstore bundle (JSON bytes).
    Bundle {
        /// The bundle document (base64 in JSON).
        #[serde(with = "b64")]
        bundle: Vec<u8>,
    },
}

mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Why a signature or an image failed verification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The registry has no signature for the digest.
    #[error("no signatures found for {reference} at digest {digest}")]
    NoSignatures {
        /// The image.
        reference: String,
        /// The digest looked up.
        digest: Digest,
    },
    /// Signatures exist but none verifies with the given keys for this digest.
    #[error("no valid signature for {reference} at digest {digest} ({})", reasons.join("; "))]
    NoValidSignature {
        /// The image.
        reference: String,
        /// The digest that had to be signed.
        digest: Digest,
        /// Why each candidate failed.
        reasons: Vec<String>,
    },
    /// The signature policy rejects the image outright.
    #[error("signature policy rejects images from {scope}")]
    Rejected {
        /// The policy scope that matched.
        scope: String,
    },
    /// Reaching the registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl VerifyError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NoSignatures { reference, .. } => Some(format!(
                "sign it with `a3s-box image sign --key cosign.key {reference}`, or pull it with `--verify-key` so its signatures are kept locally"
            )),
            Self::NoValidSignature { .. } => Some(
                "the image was not signed by this key, or its tag now points at different content than was signed".into(),
            ),
            Self::Rejected { .. } => Some("edit the signature policy file if this registry should be allowed".into()),
            Self::Registry(e) => e.hint(),
            Self::Store(e) => e.hint(),
        }
    }
}

/// Why a single signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The cryptographic signature is invalid for this key.
    #[error("signature does not verify with key {key}")]
    BadSignature {
        /// The key's fingerprint.
        key: String,
    },
    /// The payload names another digest.
    #[error("payload is for digest {signed}, not {expected}")]
    WrongDigest {
        /// What the payload says.
        signed: String,
        /// What was resolved.
        expected: Digest,
    },
    /// The payload is not a cosign image-signature payload.
    #[error("payload is not a cosign image signature: {0}")]
    BadPayload(String),
    /// The bundle form is not one we verify.
    #[error("unsupported bundle: {0}")]
    UnsupportedBundle(String),
}

/// The simple-signing payload cosign signs, byte for byte as cosign writes it.
pub fn simple_signing_payload(docker_reference: &str, digest: &Digest) -> Vec<u8> {
    #[derive(Serialize)]
    struct Payload<'a> {
        critical: Critical<'a>,
        optional: Option<()>,
    }
    #[derive(Serialize)]
    struct Critical<'a> {
        identity: Identity<'a>,
        image: Image<'a>,
        #[serde(rename = "type")]
        kind: &'a str,
    }
    #[derive(Serialize)]
    struct Identity<'a> {
        #[serde(rename = "docker-reference")]
        docker_reference: &'a str,
    }
    #[derive(Serialize)]
    struct Image<'a> {
        #[serde(rename = "docker-manifest-digest")]
        digest: &'a str,
    }
    serde_json::to_vec(&Payload {
        critical: Critical {
            identity: Identity { docker_reference },
            image: Image {
                digest: digest.as_str(),
            },
            kind: PAYLOAD_TYPE,
        },
        optional: None,
    })
    .expect("payload serialises")
}

/// Verifies one signature with one key for `digest`. Pure.
///
/// # Errors
/// [`SignatureError`] naming the failed check.
pub fn verify_signature(
    sig: &Signature,
    key: &PublicKey,
    digest: &Digest,
) -> Result<(), SignatureError> {
    match sig {
        Signature::SimpleSigning { payload, signature } => {
            if !key.verify(payload, signature) {
                return Err(SignatureError::BadSignature {
                    key: key.fingerprint(),
                });
            }
            check_simple_payload(payload, digest)
        }
        Signature::Bundle { bundle } => verify_bundle(bundle, key, digest),
    }
}

fn check_simple_payload(payload: &[u8], digest: &Digest) -> Result<(), SignatureError> {
    let v: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| SignatureError::BadPayload(e.to_string()))?;
    let critical = &v["critical"];
    if critical["type"].as_str() != Some(PAYLOAD_TYPE) {
        return Err(SignatureError::BadPayload(format!(
            "type is {}",
            critical["type"]
        )));
    }
    let signed = critical["image"]["docker-manifest-digest"]
        .as_str()
        .ok_or_else(|| {
            SignatureError::BadPayload("no critical.image.docker-manifest-digest".into())
        })?;
    if signed != digest.as_str() {
        return Err(SignatureError::WrongDigest {
            signed: signed.to_owned(),
            expected: digest.clone(),
        });
    }
    Ok(())
}

/// DSSE pre-authentication encoding.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn verify_bundle(bundle: &[u8], key: &PublicKey, digest: &Digest) -> Result<(), SignatureError> {
    let v: serde_json::Value = serde_json::from_slice(bundle)
        .map_err(|e| SignatureError::UnsupportedBundle(e.to_string()))?;
    let Some(env) = v.get("dsseEnvelope") else {
        return Err(SignatureError::UnsupportedBundle(
            "only DSSE (in-toto) bundles are verified for images".into(),
        ));
    };
    let ptype = env["payloadType"].as_str().unwrap_or_default();
    if ptype != IN_TOTO_PAYLOAD_TYPE {
        return Err(SignatureError::UnsupportedBundle(format!(
            "payloadType {ptype:?}"
        )));
    }
    let payload = B64
        .decode(env["payload"].as_str().unwrap_or_default())
        .map_err(|_| SignatureError::UnsupportedBundle("payload is not base64".into()))?;
    let msg = pae(ptype, &payload);
    let sigs = env["signatures"].as_array().cloned().unwrap_or_default();
    let ok = sigs.iter().any(|s| {
        B64.decode(s["sig"].as_str().unwrap_or_default())
            .is_ok_and(|sig| key.verify(&msg, &sig))
    });
    if !ok {
        return Err(SignatureError::BadSignature {
            key: key.fingerprint(),
        });
    }
    let st: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|e| SignatureError::BadPayload(e.to_string()))?;
    let subjects = st["subject"].as_array().cloned().unwrap_or_default();
    if subjects
        .iter()
        .any(|s| s["digest"]["sha256"].as_str() == Some(digest.hex()))
    {
        Ok(())
    } else {
        Err(SignatureError::WrongDigest {
            signed: subjects
                .iter()
                .filter_map(|s| s["digest"]["sha256"].as_str())
                .map(|h| format!("sha256:{h}"))
                .collect::<Vec<_>>()
                .join(","),
            expected: digest.clone(),
        })
    }
}

/// The legacy signature tag for a digest: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// Every signature the registry holds for `digest` in `image`'s repository (legacy tag and
/// OCI 1.1 referrers).
///
/// # Errors
/// Registry errors other than "not found".
pub async fn fetch_signatures(
    reg: &Registry,
    image: &ImageRef,
    digest: &Digest,
) -> Result<Vec<Signature>, RegistryError> {
    let mut out = Vec::new();
    let tag_ref = image
        .with_tag(&signature_tag(digest))
        .map_err(|e| RegistryError::Io(std::io::Error::other(e)))?;
    if let Some((bytes, _)) = reg.manifest_if_exists(&tag_ref).await? {
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| RegistryError::Malformed {
                what: format!("signature manifest {tag_ref}"),
                source,
            })?;
        for layer in &m.layers {
            if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
                continue;
            }
            let Some(sig) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
                continue;
            };
            let Ok(signature) = B64.decode(sig) else {
                continue;
            };
            let payload = reg.blob_bytes(image, layer).await?;
            out.push(Signature::SimpleSigning { payload, signature });
        }
    }
    for referrer in reg.referrers(image, digest).await? {
        let is_bundle = referrer
            .artifact_type
            .as_deref()
            .is_some_and(|t| t.starts_with(BUNDLE_MEDIA_TYPE_PREFIX));
        if !is_bundle {
            continue;
        }
        let Some((bytes, _)) = reg
            .manifest_if_exists(&image.with_digest(referrer.digest.clone()))
            .await?
        else {
            continue;
        };
        let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) else {
            continue;
        };
        if m.subject.as_ref().map(|s| &s.digest) != Some(digest) {
            continue; // a referrer index entry must point back at this digest
        }
        for layer in &m.layers {
            if layer.media_type.starts_with(BUNDLE_MEDIA_TYPE_PREFIX) {
                out.push(Signature::Bundle {
                    bundle: reg.blob_bytes(image, layer).await?,
                });
            }
        }
    }
    Ok(out)
}

/// Picks the signatures that verify with any of `keys` for `digest`.
///
/// # Errors
/// [`VerifyError::NoSignatures`] or [`VerifyError::NoValidSignature`] with each reason.
pub fn select_valid(
    reference: &ImageRef,
    digest: &Digest,
    sigs: &[Signature],
    keys: &[PublicKey],
) -> Result<(Vec<Signature>, String), VerifyError> {
    if sigs.is_empty() {
        return Err(VerifyError::NoSignatures {
            reference: reference.familiar(),
            digest: digest.clone(),
        });
    }
    let mut reasons = Vec::new();
    let mut valid = Vec::new();
    let mut signer = None;
    for sig in sigs {
        for key in keys {
            match verify_signature(sig, key, digest) {
                Ok(()) => {
                    signer.get_or_insert_with(|| key.fingerprint());
                    valid.push(sig.clone());
                    break;
                }
                Err(e) => reasons.push(e.to_string()),
            }
        }
    }
    match signer {
        Some(s) => Ok((valid, s)),
        None => {
            reasons.dedup();
            Err(VerifyError::NoValidSignature {
                reference: reference.familiar(),
                digest: digest.clone(),
                reasons,
            })
        }
    }
}

/// Verifies the registry's signatures of `digest` (the digest `image` resolved to).
///
/// # Errors
/// See [`VerifyError`].
pub async fn verify_remote(
    reg: &Registry,
    image: &ImageRef,
    digest: &Digest,
    keys: &[PublicKey],
) -> Result<(Vec<Signature>, String), VerifyError> {
    let sigs = fetch_signatures(reg, image, digest).await?;
    select_valid(image, digest, &sigs, keys)
}

/// Signs `digest` (in `image`'s repository) and pushes the signature to `sha256-<hex>.sig`,
/// keeping signatures already there. Returns the signature tag reference.
///
/// # Errors
/// Registry errors.
pub async fn sign(
    reg: &Registry,
    image: &ImageRef,
    digest: &Digest,
    key: &PrivateKey,
) -> Result<ImageRef, RegistryError> {
    let payload = simple_signing_payload(&image.name(), digest);
    let signature = key.sign(&payload);
    let tag_ref = image
        .with_tag(&signature_tag(digest))
        .map_err(|e| RegistryError::Io(std::io::Error::other(e)))?;
    let mut layers: Vec<Descriptor> = match reg.manifest_if_exists(&tag_ref).await? {
        Some((bytes, _)) => serde_json::from_slice::<Manifest>(&bytes)
            .map(|m| m.layers)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let mut layer = Descriptor::of(SIMPLE_SIGNING_MEDIA_TYPE, &payload);
    layer
        .annotations
        .insert(SIGNATURE_ANNOTATION.into(), B64.encode(&signature));
    layers.retain(|l| l.digest != layer.digest || l.annotations != layer.annotations);
    layers.push(layer.clone());
    reg.push_blob(image, &layer.digest, payload).await?;
    // A minimal image config listing the payloads as layers, like cosign's.
    let config = serde_json::json!({
        "architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
    });
    let config_bytes = serde_json::to_vec(&config).expect("config serialises");
    let config_desc = Descriptor::of(oci::OCI_CONFIG, &config_bytes);
    reg.push_blob(image, &config_desc.digest, config_bytes)
        .await?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.into()),
        artifact_type: None,
        config: config_desc,
        layers,
        subject: None,
        annotations: Default::default(),
    };
    let bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    reg.push_manifest(&tag_ref, bytes, oci::OCI_MANIFEST)
        .await?;
    Ok(tag_ref)
}

/// Proof that an image in the local store satisfied the signature policy. Only
/// [`verify_for_run`] builds it.
#[derive(Debug, Clone)]
pub struct VerifiedImage {
    image: LocalImage,
    signed_digest: Option<Digest>,
    signer: Option<String>,
}

impl VerifiedImage {
    /// The image that passed.
    pub fn image(&self) -> &LocalImage {
        &self.image
    }

    /// The digest whose signature verified (the index or the manifest), if a signature was
    /// required.
    pub fn signed_digest(&self) -> Option<&Digest> {
        self.signed_digest.as_ref()
    }

    /// Fingerprint of the key that verified, if a signature was required.
    pub fn signer(&self) -> Option<&str> {
        self.signer.as_deref()
    }
}

/// Saves signatures that verified at pull time, so that `run` can check offline.
///
/// # Errors
/// I/O.
pub fn save_local(
    store: &ImageStore,
    digest: &Digest,
    sigs: &[Signature],
) -> Result<(), StoreError> {
    let path = store.signatures_path(digest)?;
    let bytes = serde_json::to_vec_pretty(sigs).expect("signatures serialise");
    crate::store::write_atomic(&path, &bytes)?;
    Ok(())
}

/// Signatures saved for `digest` (empty if none).
///
/// # Errors
/// I/O or a malformed file.
pub fn load_local(store: &ImageStore, digest: &Digest) -> Result<Vec<Signature>, StoreError> {
    let path = store.signatures_path(digest)?;
    match fs_err::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| StoreError::Malformed {
            what: path.display().to_string(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Applies the signature policy to a local image before it runs, using the signatures saved
/// when it was pulled with verification. Works offline.
///
/// # Errors
/// [`VerifyError::Rejected`], [`VerifyError::NoSignatures`], [`VerifyError::NoValidSignature`],
/// or store errors (image not found, damaged index).
pub fn verify_for_run(
    store: &ImageStore,
    reference: &ImageRef,
    policy: &SignaturePolicy,
) -> Result<VerifiedImage, VerifyError> {
    let image = store.resolve(reference)?;
    let (scope, requirement) = policy.requirement_for(reference);
    let keys = match requirement {
        Requirement::AcceptAnything => {
            return Ok(VerifiedImage {
                image,
                signed_digest: None,
                signer: None,
            })
        }
        Requirement::Reject => {
            return Err(VerifyError::Rejected {
                scope: scope.to_owned(),
            })
        }
        Requirement::RequireKey(keys) => keys,
    };
    let record = store.lookup(reference)?;
    let mut last_err = None;
    // The index digest (what a tag pointed at, usually what was signed) and the manifest.
    let candidates = record.index.iter().chain(std::iter::once(&record.manifest));
    for digest in candidates {
        if Some(digest) == record.index.as_ref() && !index_lists(store, digest, &record.manifest)? {
            continue;
        }
        let sigs = load_local(store, digest)?;
        match select_valid(reference, digest, &sigs, keys) {
            Ok((_, signer)) => {
                return Ok(VerifiedImage {
                    image,
                    signed_digest: Some(digest.clone()),
                    signer: Some(signer),
                })
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or(VerifyError::NoSignatures {
        reference: reference.familiar(),
        digest: record.manifest,
    }))
}

fn index_lists(store: &ImageStore, index: &Digest, manifest: &Digest) -> Result<bool, StoreError> {
    let bytes = store.read_blob(index)?;
    let idx: oci::Index =
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Malformed {
            what: format!("index {index}"),
            source,
        })?;
    Ok(idx.manifests.iter().any(|d| d.digest == *manifest))
}

#[cfg(test)]
mod tests;
