//! Key broker service, wire-compatible with the Confidential Containers (trustee) KBS
//! protocol 0.4.0, and the client library the guest agent uses.
//!
//! - [`protocol`]: wire types and the runtime-data binding (JCS, SHA-384).
//! - [`jwe`]: resource responses encrypted to the TEE key (hand-written, byte-exact header).
//! - [`jwt`]: ES256 tokens (attestation tokens, admin credentials).
//! - server (feature `server`): [`app()`], [`AppState`], [`service`], [`verifier`],
//!   [`policy`] (Rego), [`storage`] (SQLite, PostgreSQL), [`session`], [`token`],
//!   [`metrics`], [`serve`] (plain or rustls).
//! - client (feature `client`): [`client`] runs auth → attest → resource with an
//!   [`a3s_attestation::hw::Attester`].

pub mod jwe;
pub mod jwt;
pub mod protocol;

#[cfg(feature = "server")]
mod app;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod policy;
#[cfg(feature = "server")]
mod routes;
#[cfg(feature = "server")]
pub mod serve;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod session;
#[cfg(feature = "server")]
pub mod state;
#[cfg(feature = "server")]
pub mod storage;
#[cfg(feature = "server")]
pub mod token;
#[cfg(feature = "server")]
pub mod verifier;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "server")]
pub use app::app;
#[cfg(feature = "server")]
pub use error::KbsError;
#[cfg(feature = "server")]
pub use routes::KbsJson;
#[cfg(feature = "server")]
pub use state::{AdminAuth, AppState, Config, Limits};
