//! Registry client: manifests (indexes resolved to linux/amd64), blobs, push, referrers.
//!
//! Built on `oci-client`, which speaks the distribution API and handles bearer-token and
//! basic authentication challenges. We add what it leaves to callers: every manifest and blob
//! is verified against its digest before the store keeps it, plain HTTP is used only for
//! loopback registries or ones named with `--insecure-registry`, and indexes resolve to
//! linux/amd64.

pub mod auth;

use std::collections::BTreeMap;
use std::sync::Once;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;

pub use auth::{CredentialStore, Credentials};

use crate::oci::{self, Descriptor, Index, Manifest};
use crate::reference::{Digest, ImageRef};
use crate::store::{ImageStore, StoreError, MAX_DOCUMENT_BYTES};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry answered with an error or could not be reached.
    #[error("{op} {reference}")]
    Client {
        /// What we were doing.
        op: &'static str,
        /// The image.
        reference: String,
        /// The client's error.
        #[source]
        source: Box<OciDistributionError>,
    },
    /// The registry sent content that does not match the digest it was requested by.
    #[error("registry sent {what} that hashes to {actual}, expected {expected}; refusing it")]
    DigestMismatch {
        /// Which document.
        what: String,
        /// The digest requested.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A document from the registry is not what it claims.
    #[error("registry sent a malformed {what}")]
    Malformed {
        /// Which document.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The image has no linux/amd64 variant.
    #[error("{reference} has no linux/amd64 image (available: {available})")]
    NoPlatform {
        /// The image.
        reference: String,
        /// The platforms it has.
        available: String,
    },
    /// The manifest, config or a layer has a media type we do not accept.
    #[error("{what} has unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// Which document.
        what: String,
        /// The media type.
        media_type: String,
    },
    /// A document is too large to be a manifest or config.
    #[error("{what} is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge {
        /// Which document.
        what: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing a local file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl RegistryError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Client { source, reference, .. } => {
                let text = source.to_string().to_ascii_lowercase();
                let registry = reference.split('/').next().unwrap_or_default();
                if text.contains("invalid digest") || text.contains("digest error") {
                    Some("the registry sent content that does not match its digest (corrupt or tampered); nothing was stored".into())
                } else if text.contains("unauthorized") || text.contains("not authorized") || text.contains("authentication") || text.contains("denied") {
                    Some(format!("log in with `a3s-box login {registry}` (or check the repository name)"))
                } else if text.contains("manifest unknown") || text.contains("not found") || text.contains("name unknown") {
                    Some("check the image name and tag; `a3s-box images` lists local images".into())
                } else if text.contains("error sending request") || text.contains("connect") || text.contains("tls") {
                    let loopback = reference
                        .parse::<ImageRef>()
                        .is_ok_and(|r| r.is_loopback_registry());
                    Some(if loopback {
                        format!("check that the registry at {registry} is running (loopback registries are spoken to over plain HTTP)")
                    } else {
                        format!("check that {registry} is reachable; a registry serving plain HTTP needs `--insecure-registry {registry}`")
                    })
                } else {
                    None
                }
            }
            Self::NoPlatform { .. } => Some("A3S Box runs linux/amd64 images only".into()),
            Self::DigestMismatch { .. } => {
                Some("the registry sent content that does not match its digest (corrupt or tampered); nothing was stored".into())
            }
            Self::Store(e) => e.hint(),
            _ => None,
        }
    }
}

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) that may be spoken to over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Credentials to use; `None` means anonymous.
    pub credentials: Option<Credentials>,
    /// Mirrors: requests for images of a registry (`gcr.io`) go to its mirror
    /// (`host[:port]`) while the images keep their names, as containerd's `hosts.toml`
    /// mirrors do. A loopback or insecure-listed mirror is spoken to over plain HTTP.
    pub mirrors: Vec<(String, String)>,
}

impl RegistryOptions {
    /// The mirror serving `registry`, if one is configured.
    pub fn mirror_of(&self, registry: &str) -> Option<&str> {
        self.mirrors
            .iter()
            .find(|(r, _)| r == registry)
            .map(|(_, m)| m.as_str())
    }
}

/// Progress of blob transfers, reported per layer.
pub trait Progress: Send + Sync {
    /// A blob transfer starts (`size` as announced by the manifest).
    fn start(&self, digest: &Digest, size: u64);
    /// `bytes` more bytes arrived.
    fn advance(&self, digest: &Digest, bytes: u64);
    /// The blob is complete; `cached` when it was already present.
    fn done(&self, digest: &Digest, cached: bool);
}

/// Progress that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &Digest, _: u64) {}
    fn advance(&self, _: &Digest, _: u64) {}
    fn done(&self, _: &Digest, _: bool) {}
}

/// A client for one registry.
pub struct Registry {
    client: oci_client::Client,
    auth: RegistryAuth,
    registry: String,
    /// Where requests go instead of `registry` ([`RegistryOptions::mirrors`]).
    mirror: Option<String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("registry", &self.registry)
            .field("mirror", &self.mirror)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// A manifest fetched from a registry and checked against its digest.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The digest the reference resolved to at the registry (an index or a manifest). This is
    /// the digest signatures are looked up for.
    pub top: Digest,
    /// The index bytes, when the reference named an index.
    pub index: Option<Vec<u8>>,
    /// The linux/amd64 image manifest's digest.
    pub manifest_digest: Digest,
    /// Its exact bytes.
    pub manifest_bytes: Vec<u8>,
    /// Parsed.
    pub manifest: Manifest,
}

fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Plain HTTP only for loopback registries and ones the user named as insecure.
pub fn uses_plain_http(reference: &ImageRef, opts: &RegistryOptions) -> bool {
    reference.is_loopback_registry()
        || opts
            .insecure_registries
            .iter()
            .any(|r| r == reference.registry())
}

fn to_oci_ref(r: &ImageRef, mirror: Option<&str>) -> Result<oci_client::Reference, RegistryError> {
    let mut oref: oci_client::Reference =
        r.to_string()
            .parse()
            .map_err(|e: oci_client::ParseError| RegistryError::Client {
                op: "parsing",
                reference: r.to_string(),
                source: Box::new(OciDistributionError::GenericError(Some(e.to_string()))),
            })?;
    if let Some(m) = mirror {
        oref.set_mirror_registry(m.to_owned());
    }
    Ok(oref)
}

/// Whether a mirror host is spoken to over plain HTTP: loopback, or listed as insecure.
fn mirror_uses_plain_http(mirror: &str, opts: &RegistryOptions) -> bool {
    let host = mirror.rsplit_once(':').map_or(mirror, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            mirror
        }
    });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        || opts.insecure_registries.iter().any(|r| r == mirror)
}

fn descriptor(d: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.to_string(),
        size: i64::try_from(d.size).unwrap_or(i64::MAX),
        ..OciDescriptor::default()
    }
}

fn media_type_of(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    p.media_type.or_else(|| {
        if p.manifests.is_some() {
            Some(oci::OCI_INDEX.to_owned())
        } else {
            Some(oci::OCI_MANIFEST.to_owned())
        }
    })
}

impl Registry {
    /// A client for the registry of `reference`.
    pub fn new(reference: &ImageRef, opts: &RegistryOptions) -> Self {
        install_crypto_provider();
        let registry = reference.registry().to_owned();
        let mirror = opts.mirror_of(&registry).map(str::to_owned);
        let protocol = match &mirror {
            Some(m) if mirror_uses_plain_http(m, opts) => {
                ClientProtocol::HttpsExcept(vec![m.clone()])
            }
            Some(_) => ClientProtocol::Https,
            None if uses_plain_http(reference, opts) => {
                ClientProtocol::HttpsExcept(vec![registry.clone()])
            }
            None => ClientProtocol::Https,
        };
        let config = ClientConfig {
            protocol,
            platform_resolver: Some(Box::new(oci_client::client::linux_amd64_resolver)),
            user_agent: concat!("a3s-box/", env!("CARGO_PKG_VERSION")),
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            ..ClientConfig::default()
        };
        let auth = match &opts.credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password().to_owned()),
            None => RegistryAuth::Anonymous,
        };
        Self {
            client: oci_client::Client::new(config),
            auth,
            registry,
            mirror,
        }
    }

    fn err<'a>(
        op: &'static str,
        r: &'a ImageRef,
    ) -> impl FnOnce(OciDistributionError) -> RegistryError + 'a {
        move |source| RegistryError::Client {
            op,
            reference: r.to_string(),
            source: Box::new(source),
        }
    }

    /// Checks that the credentials are accepted (used by `login`).
    ///
    /// # Errors
    /// The registry refused them or could not be reached.
    pub async fn check_auth(&self, probe: &ImageRef) -> Result<(), RegistryError> {
        let r = to_oci_ref(probe, self.mirror.as_deref())?;
        let token = self
            .client
            .auth(&r, &self.auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(Self::err("logging in to", probe))?;
        if token.is_some() {
            // Bearer registries: the token server accepted the credentials. (A probe request
            // would be wrong here: Docker Hub answers 401 for repositories that do not exist.)
            return Ok(());
        }
        // Basic auth: the client only learns whether it works on a real request.
        match self
            .client
            .pull_manifest_raw(&r, &self.auth, &[oci::OCI_MANIFEST])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = e.to_string().to_ascii_lowercase();
                if text.contains("unauthorized")
                    || text.contains("not authorized")
                    || text.contains("authentication")
                    || text.contains("denied")
                {
                    Err(Self::err("logging in to", probe)(e))
                } else {
                    Ok(()) // e.g. manifest unknown: authenticated fine
                }
            }
        }
    }

    /// Fetches raw manifest bytes by tag or digest, checked against the digest when pinned.
    async fn manifest_raw(&self, r: &ImageRef) -> Result<(Vec<u8>, Digest), RegistryError> {
        let oref = to_oci_ref(r, self.mirror.as_deref())?;
        let accepted = [
            oci::OCI_MANIFEST,
            oci::OCI_INDEX,
            oci::DOCKER_MANIFEST,
            oci::DOCKER_MANIFEST_LIST,
        ];
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&oref, &self.auth, &accepted)
            .await
            .map_err(Self::err("fetching manifest of", r))?;
        if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(RegistryError::TooLarge {
                what: format!("manifest of {r}"),
            });
        }
        let actual = Digest::of(&bytes);
        if let Some(expected) = r.digest() {
            if *expected != actual {
                return Err(RegistryError::DigestMismatch {
                    what: format!("the manifest of {r}"),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok((bytes.to_vec(), actual))
    }

    /// Resolves a reference to its linux/amd64 image manifest, verifying every digest.
    ///
    /// # Errors
    /// Network or registry errors, digest mismatches, no linux/amd64 variant, unsupported media
    /// types.
    pub async fn resolve(&self, r: &ImageRef) -> Result<Resolved, RegistryError> {
        let (bytes, top) = self.manifest_raw(r).await?;
        let mt = media_type_of(&bytes).unwrap_or_default();
        let (index, manifest_digest, manifest_bytes) = if oci::is_index(&mt) {
            let idx: Index =
                serde_json::from_slice(&bytes).map_err(|source| RegistryError::Malformed {
                    what: format!("index of {r}"),
                    source,
                })?;
            let pick = idx.manifests.iter().find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                    && oci::is_image_manifest(&d.media_type)
            });
            let Some(pick) = pick else {
                let available: Vec<String> = idx
                    .manifests
                    .iter()
                    .filter_map(|d| {
                        d.platform
                            .as_ref()
                            .map(|p| format!("{}/{}", p.os, p.architecture))
                    })
                    .collect();
                return Err(RegistryError::NoPlatform {
                    reference: r.to_string(),
                    available: available.join(", "),
                });
            };
            let (mbytes, _) = self
                .manifest_raw(&r.with_digest(pick.digest.clone()))
                .await?;
            (Some(bytes), pick.digest.clone(), mbytes)
        } else if oci::is_image_manifest(&mt) {
            (None, top.clone(), bytes)
        } else {
            return Err(RegistryError::UnsupportedMediaType {
                what: format!("manifest of {r}"),
                media_type: mt,
            });
        };
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|source| RegistryError::Malformed {
                what: format!("manifest {manifest_digest}"),
                source,
            })?;
        if manifest.config.media_type != oci::OCI_CONFIG
            && manifest.config.media_type != oci::DOCKER_CONFIG
        {
            return Err(RegistryError::UnsupportedMediaType {
                what: format!("config of {r} (not a container image)"),
                media_type: manifest.config.media_type.clone(),
            });
        }
        for l in &manifest.layers {
            if !oci::is_layer(&l.media_type) {
                return Err(RegistryError::UnsupportedMediaType {
                    what: format!("layer {}", l.digest),
                    media_type: l.media_type.clone(),
                });
            }
        }
        Ok(Resolved {
            top,
            index,
            manifest_digest,
            manifest_bytes,
            manifest,
        })
    }

    /// Streams a blob into the store, verified against `desc` (digest and size). Returns
    /// `true` when it was already present.
    ///
    /// # Errors
    /// Network errors, digest or size mismatch (nothing is stored then).
    pub async fn fetch_blob(
        &self,
        r: &ImageRef,
        desc: &Descriptor,
        store: &ImageStore,
        progress: &dyn Progress,
    ) -> Result<bool, RegistryError> {
        progress.start(&desc.digest, desc.size);
        if store.has_blob(&desc.digest) {
            progress.done(&desc.digest, true);
            return Ok(true);
        }
        let oref = to_oci_ref(r, self.mirror.as_deref())?;
        // Make sure auth is set up for blob requests made before any manifest request.
        self.client
            .store_auth_if_needed(oref.resolve_registry(), &self.auth)
            .await;
        let mut stream = self
            .client
            .pull_blob_stream(&oref, &descriptor(desc))
            .await
            .map_err(Self::err("fetching blob of", r))?;
        let mut writer = store.blob_writer()?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Client {
                op: "downloading blob of",
                reference: r.to_string(),
                source: Box::new(OciDistributionError::IoError(e)),
            })?;
            writer.write(&chunk)?;
            progress.advance(&desc.digest, chunk.len() as u64);
            if writer.len() > desc.size {
                break; // more than announced: commit reports the size mismatch
            }
        }
        writer.commit(&desc.digest, desc.size)?;
        progress.done(&desc.digest, false);
        Ok(false)
    }

    /// Fetches a small blob (config, signature payload) into memory, verified.
    ///
    /// # Errors
    /// Network errors, too large, digest mismatch.
    pub async fn blob_bytes(
        &self,
        r: &ImageRef,
        desc: &Descriptor,
    ) -> Result<Vec<u8>, RegistryError> {
        if desc.size > MAX_DOCUMENT_BYTES {
            return Err(RegistryError::TooLarge {
                what: format!("blob {}", desc.digest),
            });
        }
        let oref = to_oci_ref(r, self.mirror.as_deref())?;
        self.client
            .store_auth_if_needed(oref.resolve_registry(), &self.auth)
            .await;
        let mut out = Vec::new();
        self.client
            .pull_blob(&oref, &descriptor(desc), &mut out)
            .await
            .map_err(Self::err("fetching blob of", r))?;
        let actual = Digest::of(&out);
        if actual != desc.digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("blob {}", desc.digest),
                expected: desc.digest.clone(),
                actual,
            });
        }
        Ok(out)
    }

    /// Fetches a manifest by tag or digest without resolving indexes (signatures, referrers).
    /// Returns `None` when the registry does not have it.
    ///
    /// # Errors
    /// Other registry errors.
    pub async fn manifest_if_exists(
        &self,
        r: &ImageRef,
    ) -> Result<Option<(Vec<u8>, Digest)>, RegistryError> {
        match self.manifest_raw(r).await {
            Ok(x) => Ok(Some(x)),
            Err(RegistryError::Client { source, .. })
                if matches!(*source, OciDistributionError::ImageManifestNotFoundError(_))
                    || source
                        .to_string()
                        .to_ascii_lowercase()
                        .contains("manifest unknown")
                    || source.to_string().contains("404") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Uploads a blob unless the registry already has it.
    ///
    /// # Errors
    /// Registry errors.
    pub async fn push_blob(
        &self,
        r: &ImageRef,
        digest: &Digest,
        bytes: Vec<u8>,
    ) -> Result<bool, RegistryError> {
        let oref = to_oci_ref(r, self.mirror.as_deref())?;
        self.client
            .auth(&oref, &self.auth, oci_client::RegistryOperation::Push)
            .await
            .map_err(Self::err("authenticating to push", r))?;
        if self
            .client
            .blob_exists(&oref, digest.as_str())
            .await
            .map_err(Self::err("checking blob of", r))?
        {
            return Ok(false);
        }
        self.client
            .push_blob(&oref, bytes, digest.as_str())
            .await
            .map_err(Self::err("uploading blob to", r))?;
        Ok(true)
    }

    /// Uploads manifest bytes under the reference's tag (or digest).
    ///
    /// # Errors
    /// Registry errors.
    pub async fn push_manifest(
        &self,
        r: &ImageRef,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<(), RegistryError> {
        let oref = to_oci_ref(r, self.mirror.as_deref())?;
        self.client
            .auth(&oref, &self.auth, oci_client::RegistryOperation::Push)
            .await
            .map_err(Self::err("authenticating to push", r))?;
        let ct = http::HeaderValue::from_str(media_type).map_err(|e| RegistryError::Client {
            op: "pushing manifest of",
            reference: r.to_string(),
            source: Box::new(OciDistributionError::GenericError(Some(e.to_string()))),
        })?;
        self.client
            .push_manifest_raw(&oref, bytes, ct)
            .await
            .map_err(Self::err("pushing manifest of", r))?;
        Ok(())
    }

    /// The OCI 1.1 referrers of `subject` (native API, or the `sha256-<hex>` tag fallback).
    ///
    /// # Errors
    /// Registry errors.
    pub async fn referrers(
        &self,
        r: &ImageRef,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let oref = to_oci_ref(&r.with_digest(subject.clone()), self.mirror.as_deref())?;
        self.client
            .store_auth_if_needed(oref.resolve_registry(), &self.auth)
            .await;
        let idx = self
            .client
            .pull_referrers(&oref, None)
            .await
            .map_err(Self::err("listing referrers of", r))?;
        let mut out = Vec::new();
        for m in idx.manifests {
            let Ok(digest) = m.digest.parse::<Digest>() else {
                continue;
            };
            out.push(Descriptor {
                media_type: m.media_type,
                digest,
                size: u64::try_from(m.size).unwrap_or(0),
                platform: None,
                artifact_type: m.artifact_type,
                annotations: m
                    .annotations
                    .unwrap_or_default()
                    .into_iter()
                    .collect::<BTreeMap<_, _>>(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_or_listed_registries() {
        let mut opts = RegistryOptions::default();
        opts.insecure_registries.push("reg.lan:5000".into());
        for (r, plain) in [
            ("127.0.0.1:5000/a", true),
            ("localhost:5000/a", true),
            ("[::1]:5000/a", true),
            ("reg.lan:5000/a", true),
            ("reg.lan/a", false),
            ("example.com/a", false),
            ("busybox", false),
        ] {
            assert_eq!(uses_plain_http(&r.parse().unwrap(), &opts), plain, "{r}");
        }
    }

    #[test]
    fn mirrors_keep_the_name_and_pick_their_own_scheme() {
        let mut opts = RegistryOptions::default();
        opts.mirrors
            .push(("gcr.io".into(), "127.0.0.1:5000".into()));
        opts.mirrors
            .push(("quay.io".into(), "mirror.lan:5000".into()));
        assert_eq!(opts.mirror_of("gcr.io"), Some("127.0.0.1:5000"));
        assert_eq!(opts.mirror_of("docker.io"), None);
        assert!(mirror_uses_plain_http("127.0.0.1:5000", &opts));
        assert!(mirror_uses_plain_http("[::1]:5000", &opts));
        assert!(mirror_uses_plain_http("localhost", &opts));
        assert!(!mirror_uses_plain_http("mirror.lan:5000", &opts));
        opts.insecure_registries.push("mirror.lan:5000".into());
        assert!(mirror_uses_plain_http("mirror.lan:5000", &opts));
        // The request goes to the mirror; the reference keeps its registry.
        let r: ImageRef = "gcr.io/k8s-staging-cri-tools/test-image-tag:all"
            .parse()
            .unwrap();
        let oref = to_oci_ref(&r, opts.mirror_of(r.registry())).unwrap();
        assert_eq!(oref.registry(), "gcr.io");
        assert_eq!(oref.resolve_registry(), "127.0.0.1:5000");
    }

    #[test]
    fn detects_media_types_without_the_field() {
        assert_eq!(
            media_type_of(br#"{"manifests":[]}"#).as_deref(),
            Some(oci::OCI_INDEX)
        );
        assert_eq!(
            media_type_of(br#"{"config":{}}"#).as_deref(),
            Some(oci::OCI_MANIFEST)
        );
        assert_eq!(
            media_type_of(
                br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#
            )
            .as_deref(),
            Some(oci::DOCKER_MANIFEST)
        );
    }
}
