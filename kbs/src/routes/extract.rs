//! [`KbsJson`]: a JSON body extractor whose every failure is a [`KbsError`], so malformed or
//! oversized bodies get trustee's error body instead of axum's plain-text rejection.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::KbsError;
use crate::state::AppState;

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct KbsJson<T>(pub T);

/// The raw body, with the size limit mapped into [`KbsError`].
pub(crate) async fn body(req: Request, state: &AppState) -> Result<Bytes, KbsError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            KbsError::PayloadTooLarge {
                limit: state.limits.max_body_bytes,
            }
        } else {
            KbsError::Serde(rejection.body_text())
        }
    })
}

impl<T: DeserializeOwned> FromRequest<AppState> for KbsJson<T> {
    type Rejection = KbsError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = body(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(KbsJson)
            .map_err(|e| KbsError::Serde(e.to_string()))
    }
}

/// A raw request body (resources), size-limited like [`KbsJson`].
#[derive(Debug)]
pub(crate) struct RawBody(pub(crate) Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = KbsError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        body(req, state).await.map(RawBody)
    }
}
