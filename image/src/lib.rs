//! OCI images: registry client, content-addressed store, layer unpacking, cosign signatures.
//!
//! - [`reference`]: [`ImageRef`] (Docker naming defaults) and [`Digest`].
//! - [`store`]: the local store under `A3S_HOME/images` ([`ImageStore`]), including each image's
//!   read-only filesystem image with its dm-verity tree ([`FsImage`]).
//! - [`unpack`]: applying layer tar streams to a root filesystem directory.
//! - [`oci`]: manifest, index and config documents.
//! - [`registry`]: the registry client and saved credentials.
//! - [`pull`]: pull and push with the signature policy applied.
//! - [`cosign`]: cosign-format keys, signing, verification, policy, [`cosign::verify_for_run`].
//! - [`archive`]: save/load tarballs (OCI layout, docker-archive).
//!
//! What the MicroVM runtime needs before `run`:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use a3s_image::cosign::{verify_for_run, SignaturePolicy};
//! use a3s_image::{ImageRef, ImageStore};
//!
//! let store = ImageStore::open("/root/.a3s/images")?;
//! let reference: ImageRef = "127.0.0.1:5000/app:1".parse()?;
//! // Policy file (or SignaturePolicy::require_keys(keys) for --tee-enable); works offline
//! // from the signatures `pull` verified and kept.
//! let policy = SignaturePolicy::load("/root/.a3s/policy/signatures.toml".as_ref(), false)?;
//! let verified = verify_for_run(&store, &reference, &policy)?; // VerifiedImage
//! // erofs + dm-verity tree, built once per manifest digest: what the box boots from
//! let fs = store.filesystem(verified.image())?;
//! println!("{} -> {} (root hash {})", verified.image().digest, fs.path.display(), fs.root_hash);
//! # Ok(())
//! # }
//! ```

pub mod archive;
pub mod cosign;
pub mod oci;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod store;
pub mod unpack;

pub use oci::ImageConfig;
pub use reference::{Digest, ImageRef};
pub use store::{FsImage, ImageStore, LocalImage, StoreError};
