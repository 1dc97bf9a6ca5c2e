//! Sealed-data envelope (AES-256-GCM, versioned header as AAD) keyed by a TEE-derived key.
//!
//! Not built yet: tracked by issue 4.
