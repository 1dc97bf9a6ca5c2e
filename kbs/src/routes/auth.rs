use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::KbsError;
use crate::protocol::{Request, SESSION_COOKIE};
use crate::routes::{ClientAddr, KbsJson};
use crate::service;
use crate::state::AppState;

/// `Set-Cookie` for session `id` expiring after `max_age_secs`.
pub(crate) fn session_cookie(id: &str, max_age_secs: u64) -> String {
    format!("{SESSION_COOKIE}={id}; Max-Age={max_age_secs}; Path=/kbs/v0; HttpOnly")
}

pub(crate) async fn auth(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    KbsJson(request): KbsJson<Request>,
) -> Result<Response, KbsError> {
    let (session, challenge) = service::auth(&state, &request, client)?;
    let cookie = session_cookie(&session.id, state.sessions.pending_timeout().as_secs());
    Ok(([(SET_COOKIE, cookie)], Json(challenge)).into_response())
}
