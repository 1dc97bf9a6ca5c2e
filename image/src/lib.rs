//! OCI images: registry client, content-addressed store, layer unpacking, cosign signatures.
//!
//! Not built yet: tracked by issue 7.
