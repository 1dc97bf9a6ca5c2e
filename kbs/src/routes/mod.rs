//! Handlers, beside their routes in [`crate::app`]. Each is thin: extract, call the service
//! function, convert the result.

pub(crate) mod admin;
pub(crate) mod attest;
pub(crate) mod auth;
mod extract;
pub(crate) mod resource;

pub(crate) use extract::ClientAddr;
pub use extract::KbsJson;

use crate::error::KbsError;
use crate::state::AppState;

/// Runs blocking work (storage, verification, policy) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KbsError> + Send + 'static,
) -> Result<T, KbsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KbsError::Internal(format!("blocking task failed: {e}")))?
}

/// Runs CPU-bound work (evidence verification, policy, JWE) on the blocking pool once one of
/// the state's CPU permits is free, so concurrent requests wait in order rather than each
/// taking a thread.
pub(crate) async fn cpu_bound<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce() -> Result<T, KbsError> + Send + 'static,
) -> Result<T, KbsError> {
    let _permit = state
        .cpu_permits
        .acquire()
        .await
        .map_err(|_| KbsError::Internal("the broker is shutting down".into()))?;
    blocking(f).await
}

/// The value of cookie `name` in the request headers.
pub(crate) fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The bearer token in `Authorization`, if any.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_owned())
}
