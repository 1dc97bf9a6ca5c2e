//! The router: trustee's endpoints under `/kbs/v0/`, plus `/healthz` and `/metrics`.

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::error::{echo, KbsError};
use crate::routes::{admin, attest, auth, resource};
use crate::state::AppState;

/// The broker's router over `state`.
pub fn app(state: AppState) -> Router {
    let limit = state.limits.max_body_bytes;
    let kbs = Router::new()
        .route("/auth", post(auth::auth))
        .route("/attest", post(attest::attest))
        .route(
            "/resource/{repo}/{kind}/{tag}",
            get(resource::get_resource)
                .post(admin::set_resource)
                .put(admin::set_resource)
                .delete(admin::delete_resource),
        )
        .route("/attestation-policy", post(admin::set_attestation_policy))
        .route(
            "/resource-policy",
            post(admin::set_resource_policy).get(admin::get_resource_policy),
        )
        .route(
            "/reference-value",
            post(admin::set_reference_values).get(admin::list_reference_values),
        )
        .route(
            "/reference-value/{name}/items",
            post(admin::add_reference_value).delete(admin::remove_reference_value),
        )
        .route("/reference-value/{name}", get(admin::get_reference_value))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .nest("/kbs/v0", kbs)
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> KbsError {
    KbsError::InvalidRequestPath(echo(uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> KbsError {
    KbsError::MethodNotAllowed {
        method: echo(method.as_str()),
        path: echo(uri.path()),
    }
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
