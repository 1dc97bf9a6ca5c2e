//! Images as the runtime sees them: pull, push, sign, verify, untag, prune.

use a3s_image::cosign::{self, PrivateKey, PublicKey, VerifyError};
use a3s_image::pull::{self as xfer, PullOptions, Pulled, TransferError};
use a3s_image::registry::{Progress, Registry, RegistryOptions};
use a3s_image::{Digest, ImageRef, ImageStore};

use super::{Engine, EngineError};
use crate::audit::{Event, Outcome};
use crate::disk::{self, ImagePrune};

/// The verdict of a registry-side signature check (`image verify`).
#[derive(Debug)]
pub struct RemoteVerdict {
    /// The digest checked.
    pub digest: Digest,
    /// The fingerprint of the key that verified, and how many signatures there were.
    pub verified: Result<(String, usize), VerifyError>,
}

/// References `rmi` untagged.
#[derive(Debug, Default)]
pub struct Untagged {
    /// Each name removed.
    pub references: Vec<ImageRef>,
}

/// `run --pull` / `create --pull`: when a box's image is fetched before the box is created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always pull (the store keeps what is already there; only new layers move).
    Always,
    /// Pull when the store does not have the reference (Docker's default). The embedded
    /// default busybox is built locally instead.
    #[default]
    Missing,
    /// Never pull: a missing image is an error.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "missing" => Ok(Self::Missing),
            "never" => Ok(Self::Never),
            other => Err(format!("--pull {other:?}: use always, missing or never")),
        }
    }
}

/// A signature check's answer is "no" (as opposed to "could not check").
pub fn is_verdict(e: &VerifyError) -> bool {
    matches!(
        e,
        VerifyError::NoSignatures { .. }
            | VerifyError::NoValidSignature { .. }
            | VerifyError::Rejected { .. }
    )
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, EngineError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EngineError::context("starting the async runtime", e))?;
    Ok(rt.block_on(f))
}

impl Engine {
    fn images(&self) -> Result<ImageStore, EngineError> {
        Ok(ImageStore::open(self.home.root().join("images"))?)
    }

    /// Fetches a box's image as `policy` says before the box is created; `None` when nothing
    /// was pulled.
    ///
    /// # Errors
    /// Those of [`Engine::pull`].
    pub fn ensure_image(
        &self,
        reference: &ImageRef,
        policy: PullPolicy,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Option<Pulled>, EngineError> {
        let wanted = match policy {
            PullPolicy::Never => false,
            PullPolicy::Always => true,
            PullPolicy::Missing => {
                let store = self.images()?;
                // A `name@sha256:…` whose manifest is stored runs from the store, as `create`
                // resolves it, even when no name points at it.
                let by_digest = reference
                    .digest()
                    .is_some_and(|d| store.manifest(d).is_ok());
                let present = by_digest
                    || match store.resolve(reference) {
                        Ok(_) => true,
                        Err(a3s_image::StoreError::NotFound { .. }) => false,
                        Err(e) => return Err(e.into()),
                    };
                !present && !crate::boxes::busybox::is_default(reference)
            }
        };
        if wanted {
            self.pull(reference, opts, progress).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The image store, for front ends that list and describe images (reading only: pulls
    /// and removals go through [`Engine::pull`] and [`Engine::remove_image`], which audit).
    ///
    /// # Errors
    /// [`a3s_image::StoreError`] when the store cannot be opened.
    pub fn image_store(&self) -> Result<ImageStore, EngineError> {
        self.images()
    }

    /// `pull`: fetches `reference` under `opts.policy` (signatures checked against the
    /// digest that is stored); audited (`image.pull`, a refused signature as `denied`).
    ///
    /// # Errors
    /// [`TransferError`] (a signature refusal is `TransferError::Verify` with a verdict).
    pub fn pull(
        &self,
        reference: &ImageRef,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Pulled, EngineError> {
        let store = self.images()?;
        let pulled = match block_on(xfer::pull(&store, reference, opts, progress))? {
            Ok(p) => p,
            Err(e) => {
                let outcome = match &e {
                    TransferError::Verify(v) if is_verdict(v) => Outcome::Denied,
                    _ => Outcome::Failure,
                };
                self.record(
                    &Event::new("image.pull", outcome, e.to_string())
                        .with("reference", reference.to_string()),
                )?;
                return Err(EngineError::context(format!("pulling {reference}"), e));
            }
        };
        self.record(
            &Event::new(
                "image.pull",
                Outcome::Success,
                format!("pulled {reference}"),
            )
            .with("reference", reference.to_string())
            .with("digest", pulled.image.digest.to_string())
            .with("resolved_digest", pulled.resolved.to_string())
            .with("verified_by", pulled.verified_by.clone()),
        )?;
        Ok(pulled)
    }

    /// Builds `image`'s root filesystem (its erofs, built once per image) now rather than
    /// at its first container's create. A CRI pull does this: kubelet allows minutes for a
    /// pull, while crictl gives a create two seconds (a large image's first create timed out).
    ///
    /// # Errors
    /// Unpacking or `mkfs.erofs` fails (the store's error).
    pub fn prepare_filesystem(&self, image: &a3s_image::LocalImage) -> Result<(), EngineError> {
        self.images()?.filesystem(image)?;
        Ok(())
    }

    /// `push`: uploads `source` as `target`; returns the pushed manifest's digest.
    ///
    /// # Errors
    /// [`TransferError`].
    pub fn push(
        &self,
        source: &ImageRef,
        target: &ImageRef,
        opts: &RegistryOptions,
        progress: &dyn Progress,
    ) -> Result<Digest, EngineError> {
        let store = self.images()?;
        block_on(xfer::push(&store, source, target, opts, progress))?
            .map_err(|e| EngineError::context(format!("pushing {target}"), e))
    }

    /// `image sign`: signs the digest `reference` resolves to and pushes the signature;
    /// audited. Returns the digest and the signature's tag.
    ///
    /// # Errors
    /// Registry errors.
    pub fn sign_image(
        &self,
        reference: &ImageRef,
        opts: &RegistryOptions,
        key: &PrivateKey,
    ) -> Result<(Digest, ImageRef), EngineError> {
        let reg = Registry::new(reference, opts);
        let resolved = block_on(reg.resolve(reference))?
            .map_err(|e| EngineError::context(format!("resolving {reference}"), e))?;
        let tag = block_on(cosign::sign(&reg, reference, &resolved.top, key))?
            .map_err(|e| EngineError::context(format!("signing {reference}"), e))?;
        self.record(
            &Event::new(
                "image.sign",
                Outcome::Success,
                format!("signed {reference}"),
            )
            .with("reference", reference.to_string())
            .with("digest", resolved.top.to_string())
            .with("key", key.public_key().fingerprint()),
        )?;
        Ok((resolved.top, tag))
    }

    /// `image verify`: checks the registry's signatures of `reference` against `key`; the
    /// verdict (yes or no) is audited and returned.
    ///
    /// # Errors
    /// Registry errors (not a "no").
    pub fn verify_image(
        &self,
        reference: &ImageRef,
        opts: &RegistryOptions,
        key: PublicKey,
    ) -> Result<RemoteVerdict, EngineError> {
        let reg = Registry::new(reference, opts);
        let resolved = block_on(reg.resolve(reference))?
            .map_err(|e| EngineError::context(format!("resolving {reference}"), e))?;
        let verified = match block_on(cosign::verify_remote(
            &reg,
            reference,
            &resolved.top,
            &[key],
        ))? {
            Ok((sigs, signer)) => Ok((signer, sigs.len())),
            Err(e) if is_verdict(&e) => Err(e),
            Err(e) => return Err(EngineError::context(format!("verifying {reference}"), e)),
        };
        let (outcome, message, signer) = match &verified {
            Ok((signer, _)) => (
                Outcome::Success,
                format!("verified {reference}"),
                Some(signer.clone()),
            ),
            Err(e) => (Outcome::Denied, e.to_string(), None),
        };
        self.record(
            &Event::new("image.verify", outcome, message)
                .with("reference", reference.to_string())
                .with("digest", resolved.top.to_string())
                .with("signer", signer),
        )?;
        Ok(RemoteVerdict {
            digest: resolved.top,
            verified,
        })
    }

    /// `rmi`: removes the name `reference` (or, for a digest reference, every name of that
    /// image), refusing one a box was created from unless `force`; then prunes content no
    /// name and no box reaches. Each removal is audited.
    ///
    /// # Errors
    /// [`disk::DiskError`] (in use), [`a3s_image::StoreError::NotFound`].
    pub fn remove_image(&self, reference: &ImageRef, force: bool) -> Result<Untagged, EngineError> {
        let store = self.images()?;
        if !force {
            if let Err(e) = disk::check_untag(&self.home, reference) {
                self.record(
                    &Event::new("image.remove", Outcome::Denied, e.to_string())
                        .with("reference", reference.to_string()),
                )?;
                return Err(e.into());
            }
        }
        let mut removed = Vec::new();
        if store.remove_ref(reference)?.is_some() {
            removed.push(reference.clone());
        } else if let Some(d) = reference.digest() {
            for (other, rec) in store.refs()? {
                if other.name() == reference.name()
                    && (rec.manifest == *d || rec.index.as_ref() == Some(d))
                {
                    store.remove_ref(&other)?;
                    removed.push(other);
                }
            }
        }
        if removed.is_empty() {
            return Err(a3s_image::StoreError::NotFound {
                reference: reference.familiar(),
            }
            .into());
        }
        for x in &removed {
            let what = if force {
                "untagged (forced)"
            } else {
                "untagged"
            };
            self.record(
                &Event::new("image.remove", Outcome::Success, what)
                    .with("reference", x.to_string()),
            )?;
        }
        Ok(Untagged {
            references: removed,
        })
    }

    /// Image prune: dangling images (with `all`, every image no box uses) and the caches
    /// of the removed images; audited as `rmi` does, plus one `image.prune` summary.
    ///
    /// # Errors
    /// [`disk::DiskError`].
    pub fn prune_images(&self, all: bool) -> Result<ImagePrune, EngineError> {
        let p = disk::prune_images(&self.home, all)?;
        for r in &p.untagged {
            self.record(
                &Event::new("image.remove", Outcome::Success, "untagged (pruned)")
                    .with("reference", r.to_string()),
            )?;
        }
        self.record(
            &Event::new(
                "image.prune",
                Outcome::Success,
                format!(
                    "deleted {} blobs, {} image filesystems, {} cache entries",
                    p.store.blobs.len(),
                    p.store.rootfs.len(),
                    p.cache.removed.len()
                ),
            )
            .with(
                "images",
                p.store
                    .rootfs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            )
            .with("freed_bytes", p.freed().allocated),
        )?;
        Ok(p)
    }
}
