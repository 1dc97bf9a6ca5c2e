//! OCI images: registry client, content-addressed store, layer unpacking, cosign signatures.
//!
//! - [`reference`]: [`ImageRef`] (Docker naming defaults) and [`Digest`].
//! - [`store`]: the local store under `A3S_HOME/images` ([`ImageStore`]).
//! - [`unpack`]: applying layer tar streams to a root filesystem directory.
//! - [`oci`]: manifest, index and config documents.
//! - [`registry`]: the registry client and saved credentials.
//! - [`pull`]: pull and push with the signature policy applied.
//! - [`cosign`]: cosign-format keys, signing, verification, policy, [`cosign::verify_for_run`].
//! - [`archive`]: save/load tarballs (OCI layout, docker-archive).

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
pub use store::{ImageStore, LocalImage, StoreError};
