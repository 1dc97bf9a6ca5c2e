//! Admin endpoints: resources, policies, reference values. Every handler first checks the
//! admin credential ([`authorize`]).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::KbsError;
use crate::policy::{self, PolicyKind};
use crate::routes::extract::RawBody;
use crate::routes::resource::path;
use crate::routes::{bearer, blocking, KbsJson};
use crate::service::{self, DEFAULT_POLICY_ID};
use crate::state::{now_secs, AdminAuth, AppState};
use crate::storage::Namespace;

/// Checks the admin credential in `headers`.
///
/// # Errors
/// [`KbsError::AdminAuth`].
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), KbsError> {
    match &*state.admin {
        AdminAuth::InsecureAllowAll => Ok(()),
        AdminAuth::DenyAll => Err(KbsError::AdminAuth(
            "this KBS has no admin key (start it with --admin-public-key)".into(),
        )),
        AdminAuth::Key {
            key,
            max_lifetime_secs,
        } => {
            let token = bearer(headers).ok_or_else(|| {
                KbsError::AdminAuth("no Authorization: Bearer <admin token>".into())
            })?;
            crate::jwt::verify_admin(&token, key, now_secs(), *max_lifetime_secs)
                .map(|_| ())
                .map_err(|e| KbsError::AdminAuth(e.to_string()))
        }
    }
}

fn storage_err(e: crate::storage::StorageError) -> KbsError {
    KbsError::Internal(e.to_string())
}

pub(crate) async fn set_resource(
    State(state): State<AppState>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<StatusCode, KbsError> {
    authorize(&state, &headers)?;
    let path = path(&repo, &kind, &tag)?;
    blocking(move || {
        state
            .storage
            .put(Namespace::Resource, &path.to_string(), &body)
            .map_err(storage_err)?;
        tracing::info!(resource = %path, bytes = body.len(), "resource set");
        Ok(StatusCode::OK)
    })
    .await
}

pub(crate) async fn delete_resource(
    State(state): State<AppState>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, KbsError> {
    authorize(&state, &headers)?;
    let path = path(&repo, &kind, &tag)?;
    blocking(move || {
        if state
            .storage
            .delete(Namespace::Resource, &path.to_string())
            .map_err(storage_err)?
        {
            tracing::info!(resource = %path, "resource removed");
            Ok(StatusCode::OK)
        } else {
            Err(KbsError::ResourceNotFound(path.to_string()))
        }
    })
    .await
}

/// `POST /attestation-policy` body (trustee's shape).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttestationPolicyBody {
    #[serde(rename = "type", default = "rego")]
    policy_type: String,
    #[serde(default = "default_id")]
    policy_id: String,
    policy: String,
}

/// `POST /resource-policy` body (trustee's shape).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourcePolicyBody {
    policy: String,
}

fn rego() -> String {
    "rego".into()
}

fn default_id() -> String {
    DEFAULT_POLICY_ID.into()
}

fn decode_policy(kind: PolicyKind, text: &str) -> Result<String, KbsError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| KbsError::ParsePolicy("policy is not base64url".into()))?;
    let rego = String::from_utf8(bytes)
        .map_err(|_| KbsError::ParsePolicy("policy is not UTF-8 text".into()))?;
    policy::check_kind(kind, &rego).map_err(|e| KbsError::ParsePolicy(e.to_string()))?;
    Ok(rego)
}

fn store_policy(
    state: &AppState,
    ns: Namespace,
    id: &str,
    rego: &str,
) -> Result<StatusCode, KbsError> {
    state
        .storage
        .put(ns, id, rego.as_bytes())
        .map_err(storage_err)?;
    tracing::info!(namespace = ns.as_str(), id, "policy set");
    Ok(StatusCode::OK)
}

pub(crate) async fn set_attestation_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    KbsJson(body): KbsJson<AttestationPolicyBody>,
) -> Result<StatusCode, KbsError> {
    authorize(&state, &headers)?;
    if body.policy_type != "rego" {
        return Err(KbsError::ParsePolicy(format!(
            "policy type {:?} is not supported (supported: rego)",
            body.policy_type
        )));
    }
    let rego = decode_policy(PolicyKind::Attestation, &body.policy)?;
    blocking(move || {
        store_policy(
            &state,
            Namespace::AttestationPolicy,
            policy::canonical_id(&body.policy_id),
            &rego,
        )
    })
    .await
}

pub(crate) async fn set_resource_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    KbsJson(body): KbsJson<ResourcePolicyBody>,
) -> Result<StatusCode, KbsError> {
    authorize(&state, &headers)?;
    let rego = decode_policy(PolicyKind::Resource, &body.policy)?;
    blocking(move || store_policy(&state, Namespace::ResourcePolicy, DEFAULT_POLICY_ID, &rego))
        .await
}

pub(crate) async fn get_resource_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, KbsError> {
    authorize(&state, &headers)?;
    blocking(move || {
        let rego = service::load_policy(&state, PolicyKind::Resource, DEFAULT_POLICY_ID)?;
        Ok(Json(json!({ "policy": URL_SAFE_NO_PAD.encode(rego) })))
    })
    .await
}

/// An RVPS message: `{"version": "0.1.0", "type": "sample", "payload": base64(JSON)}`.
#[derive(Debug, Deserialize)]
pub(crate) struct RvpsMessage {
    version: String,
    #[serde(rename = "type")]
    message_type: String,
    payload: String,
}

pub(crate) async fn set_reference_values(
    State(state): State<AppState>,
    headers: HeaderMap,
    KbsJson(message): KbsJson<RvpsMessage>,
) -> Result<StatusCode, KbsError> {
    authorize(&state, &headers)?;
    if message.version != "0.1.0" {
        return Err(KbsError::Rvps(format!(
            "message version {:?} (supported: 0.1.0)",
            message.version
        )));
    }
    if message.message_type != "sample" {
        return Err(KbsError::Rvps(format!(
            "message type {:?} (supported: sample)",
            message.message_type
        )));
    }
    let payload = STANDARD
        .decode(&message.payload)
        .map_err(|_| KbsError::Rvps("payload is not base64".into()))?;
    let values: serde_json::Map<String, Value> = serde_json::from_slice(&payload)
        .map_err(|e| KbsError::Rvps(format!("payload is not a JSON object: {e}")))?;
    for (name, value) in &values {
        crate::policy::reference::check(name, value)?;
    }
    blocking(move || {
        for (name, value) in &values {
            state
                .storage
                .put(
                    Namespace::ReferenceValue,
                    name,
                    value.to_string().as_bytes(),
                )
                .map_err(storage_err)?;
            tracing::info!(name, "reference value set");
        }
        Ok(StatusCode::OK)
    })
    .await
}

pub(crate) async fn get_reference_value(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, KbsError> {
    authorize(&state, &headers)?;
    blocking(move || {
        let bytes = state
            .storage
            .get(Namespace::ReferenceValue, &name)
            .map_err(storage_err)?
            .ok_or_else(|| KbsError::ResourceNotFound(format!("reference value {name}")))?;
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| KbsError::Internal(e.to_string()))
    })
    .await
}

/// `GET /reference-value`: every reference value.
pub(crate) async fn list_reference_values(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, KbsError> {
    authorize(&state, &headers)?;
    blocking(move || crate::policy::reference::all(state.storage.as_ref()).map(Json)).await
}

/// `POST /reference-value/{name}/items`: appends the JSON body to the list `name`.
pub(crate) async fn add_reference_value(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    KbsJson(item): KbsJson<Value>,
) -> Result<Json<Value>, KbsError> {
    authorize(&state, &headers)?;
    blocking(move || {
        let list = crate::policy::reference::add(state.storage.as_ref(), &name, item)?;
        tracing::info!(name, "reference value appended");
        Ok(Json(list))
    })
    .await
}

/// `DELETE /reference-value/{name}/items`: removes the JSON body from the list `name`.
pub(crate) async fn remove_reference_value(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    KbsJson(item): KbsJson<Value>,
) -> Result<Json<Value>, KbsError> {
    authorize(&state, &headers)?;
    blocking(move || {
        let list = crate::policy::reference::remove(state.storage.as_ref(), &name, item)?;
        tracing::info!(name, "reference value item removed");
        Ok(Json(list))
    })
    .await
}
