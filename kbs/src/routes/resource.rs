use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;

use crate::error::KbsError;
use crate::protocol::{JweResponse, ResourcePath, SESSION_COOKIE};
use crate::routes::{bearer, cookie, cpu_bound};
use crate::service;
use crate::state::AppState;

pub(crate) fn path(repo: &str, kind: &str, tag: &str) -> Result<ResourcePath, KbsError> {
    ResourcePath::new(repo, kind, tag).map_err(|e| KbsError::InvalidRequestPath(e.0))
}

pub(crate) async fn get_resource(
    State(state): State<AppState>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<JweResponse>, KbsError> {
    let path = path(&repo, &kind, &tag)?;
    let session = cookie(&headers, SESSION_COOKIE);
    let token = bearer(&headers);
    let work = state.clone();
    cpu_bound(&state, move || {
        let claims = service::token_claims(&work, session.as_deref(), token.as_deref())?;
        service::resource(&work, &claims, &path)
    })
    .await
    .map(Json)
}
