use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::KbsError;
use crate::protocol::{Attestation, AttestationToken, SESSION_COOKIE};
use crate::routes::{auth::session_cookie, cookie, cpu_bound, KbsJson};
use crate::service;
use crate::state::AppState;

pub(crate) async fn attest(
    State(state): State<AppState>,
    headers: HeaderMap,
    KbsJson(attestation): KbsJson<Attestation>,
) -> Result<Response, KbsError> {
    let id = cookie(&headers, SESSION_COOKIE).ok_or(KbsError::MissingSession)?;
    let max_age = state.sessions.timeout().as_secs();
    let session = id.clone();
    let work = state.clone();
    let token = cpu_bound(&state, move || {
        service::attest(&work, &session, &attestation)
    })
    .await?;
    Ok((
        [(SET_COOKIE, session_cookie(&id, max_age))],
        Json(AttestationToken { token }),
    )
        .into_response())
}
