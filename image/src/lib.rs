//! OCI images: registry client, content-addressed store, layer unpacking, cosign signatures.
//!
//! - [`reference`]: [`ImageRef`] (Docker naming defaults) and [`Digest`].
//! - [`store`]: the local store under `A3S_HOME/images` ([`ImageStore`]).
//! - [`unpack`]: applying layer tar streams to a root filesystem directory.
//! - [`oci`]: manifest, index and config documents.

pub mod oci;
pub mod reference;
pub mod store;
pub mod unpack;

pub use oci::ImageConfig;
pub use reference::{Digest, ImageRef};
pub use store::{ImageStore, LocalImage, StoreError};
