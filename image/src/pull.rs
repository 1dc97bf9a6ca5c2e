//! `pull` and `push`: registry ↔ local store, with the signature policy applied before anything
//! is tagged.

use futures_util::{StreamExt, TryStreamExt};

use crate::cosign::{self, PublicKey, Requirement, SignaturePolicy, VerifyError};
use crate::oci::{self, Descriptor};
use crate::reference::{Digest, ImageRef};
use crate::registry::{Progress, Registry, RegistryError, RegistryOptions};
use crate::store::{ImageStore, LocalImage, RefRecord, StoreError};

/// Layers downloaded concurrently.
const PARALLEL_LAYERS: usize = 3;

/// Why a pull or push failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Registry failure.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Signature verification or policy failure.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Local store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TransferError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Registry(e) => e.hint(),
            Self::Verify(e) => e.hint(),
            Self::Store(e) => e.hint(),
        }
    }
}

/// How to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Registry access.
    pub registry: RegistryOptions,
    /// The signature policy (default: accept anything).
    pub policy: SignaturePolicy,
    /// Extra keys from `--verify-key`: a signature by one of them is required in addition to
    /// whatever the policy demands.
    pub verify_keys: Vec<PublicKey>,
    /// Do not unpack the root filesystem at pull time (it is then built on first use).
    pub skip_unpack: bool,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image now in the store.
    pub image: LocalImage,
    /// The digest the reference resolved to at the registry (index or manifest).
    pub resolved: Digest,
    /// Fingerprints of the keys whose signatures verified (empty when none were required).
    pub verified_by: Vec<String>,
    /// Layers in the image.
    pub layers: usize,
    /// Layers that were already present.
    pub cached_layers: usize,
}

/// Pulls `reference` into `store`: resolves it (index → linux/amd64), applies the signature
/// policy and `--verify-key` to the resolved digest, downloads and verifies every blob,
/// unpacks the root filesystem (unless `skip_unpack`), then tags it. A rejected or unverifiable image leaves no tag behind.
///
/// # Errors
/// See [`TransferError`].
pub async fn pull(
    store: &ImageStore,
    reference: &ImageRef,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<Pulled, TransferError> {
    let reg = Registry::new(reference, &opts.registry);
    let resolved = reg.resolve(reference).await?;

    // Policy first: a rejected image is not even downloaded.
    let (scope, requirement) = opts.policy.requirement_for(reference);
    let mut key_sets: Vec<&[PublicKey]> = Vec::new();
    match requirement {
        Requirement::Reject => {
            return Err(VerifyError::Rejected {
                scope: scope.to_owned(),
            }
            .into())
        }
        Requirement::RequireKey(keys) => key_sets.push(keys),
        Requirement::AcceptAnything => {}
    }
    if !opts.verify_keys.is_empty() {
        key_sets.push(&opts.verify_keys);
    }
    let mut verified_by = Vec::new();
    let mut kept = Vec::new();
    if !key_sets.is_empty() {
        let sigs = cosign::fetch_signatures(&reg, reference, &resolved.top).await?;
        for keys in key_sets {
            let (valid, signer) = cosign::select_valid(reference, &resolved.top, &sigs, keys)?;
            verified_by.push(signer);
            kept.extend(valid);
        }
    }

    let _hold = store.hold()?;
    if let Some(index) = &resolved.index {
        store.write_blob_bytes(index)?;
    }
    store.write_blob_bytes(&resolved.manifest_bytes)?;
    let m = &resolved.manifest;
    reg.fetch_blob(reference, &m.config, store, progress)
        .await?;
    // Up to three layers at a time; each is verified on its own.
    let cached: Vec<bool> = futures_util::stream::iter(&m.layers)
        .map(|layer| reg.fetch_blob(reference, layer, store, progress))
        .buffer_unordered(PARALLEL_LAYERS)
        .try_collect()
        .await?;
    let cached_layers = cached.iter().filter(|c| **c).count();
    // Unpack before tagging: a layer the unpacker refuses (path traversal, symlink escape,
    // diff_id mismatch) leaves no tag behind.
    let config = store.config_file(m)?;
    let staged = LocalImage {
        reference: reference.clone(),
        digest: resolved.manifest_digest.clone(),
        config: crate::oci::ImageConfig::from(&config),
    };
    if !opts.skip_unpack {
        store.rootfs(&staged)?;
    }
    if !kept.is_empty() {
        kept.dedup();
        cosign::save_local(store, &resolved.top, &kept)?;
    }
    store.set_ref(
        reference,
        RefRecord {
            manifest: resolved.manifest_digest.clone(),
            index: resolved.index.as_ref().map(|_| resolved.top.clone()),
        },
    )?;
    let image = store.resolve(reference)?;
    tracing::info!(reference = %reference, digest = %image.digest, "pulled");
    Ok(Pulled {
        image,
        resolved: resolved.top,
        verified_by,
        layers: m.layers.len(),
        cached_layers,
    })
}

/// Pushes the local image `source` to the registry as `target` (often the same reference):
/// layers and config unless present, then the manifest bytes exactly as stored, so the
/// digest is preserved. Returns the manifest digest.
///
/// # Errors
/// See [`TransferError`].
pub async fn push(
    store: &ImageStore,
    source: &ImageRef,
    target: &ImageRef,
    registry: &RegistryOptions,
    progress: &dyn Progress,
) -> Result<Digest, TransferError> {
    let image = store.resolve(source)?;
    let manifest = store.manifest(&image.digest)?;
    let manifest_bytes = store.read_blob(&image.digest)?;
    let reg = Registry::new(target, registry);
    let blobs: Vec<&Descriptor> = manifest
        .layers
        .iter()
        .chain(std::iter::once(&manifest.config))
        .collect();
    for d in blobs {
        progress.start(&d.digest, d.size);
        let bytes = fs_err::read(store.blob_path(&d.digest)).map_err(StoreError::from)?;
        if Digest::of(&bytes) != d.digest {
            return Err(StoreError::DigestMismatch {
                expected: d.digest.clone(),
                actual: Digest::of(&bytes),
            }
            .into());
        }
        let len = bytes.len() as u64;
        let uploaded = reg.push_blob(target, &d.digest, bytes).await?;
        progress.advance(&d.digest, len);
        progress.done(&d.digest, !uploaded);
    }
    let media_type = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| oci::OCI_MANIFEST.to_owned());
    reg.push_manifest(target, manifest_bytes, &media_type)
        .await?;
    Ok(image.digest)
}
