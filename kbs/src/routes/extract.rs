//! [`KbsJson`]: a JSON body extractor whose every failure is a [`KbsError`], so malformed or
//! oversized bodies get trustee's error body instead of axum's plain-text rejection.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::KbsError;
use crate::session::UNKNOWN_CLIENT;
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

/// The peer's IP address, from the connection (never from a header a client can forge);
/// [`UNKNOWN_CLIENT`] when the transport gives none (in-process requests).
#[derive(Debug)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

impl<S: Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(UNKNOWN_CLIENT, |c| c.0.ip().to_canonical());
        Ok(Self(network_of(ip)))
    }
}

/// The address a client is counted under: an IPv6 host usually owns a whole /64, so it counts
/// as one client.
fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
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
