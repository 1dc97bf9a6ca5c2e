//! What the endpoints do, as plain (blocking) functions over [`AppState`]; the handlers in
//! [`crate::routes`] only extract and convert.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::error::{echo, KbsError};
use crate::jwe;
use crate::metrics::ResourceOutcome;
use crate::policy::{self, PolicyKind};
use crate::protocol::{
    self, Attestation, Challenge, JweResponse, Request, ResourcePath, TeePubKey, PROTOCOL_VERSION,
    TEE_SNP,
};
use crate::session::NewSession;
use crate::state::{now_secs, AppState};
use crate::storage::Namespace;
use crate::token::{self, Appraisal};

/// The policy id trustee's clients and our admin commands use.
pub const DEFAULT_POLICY_ID: &str = "default";

/// `POST /auth`: checks the version and TEE, starts a session for the `client` address.
///
/// # Errors
/// [`KbsError::ProtocolVersion`], [`KbsError::UnsupportedTee`].
pub fn auth(
    state: &AppState,
    request: &Request,
    client: IpAddr,
) -> Result<(NewSession, Challenge), KbsError> {
    if request.version != PROTOCOL_VERSION {
        return Err(KbsError::ProtocolVersion {
            expected: PROTOCOL_VERSION,
            actual: echo(&request.version),
        });
    }
    if request.tee != TEE_SNP {
        return Err(KbsError::UnsupportedTee(echo(&request.tee)));
    }
    let session = state.sessions.create(client)?;
    state.metrics.auth();
    let challenge = Challenge {
        nonce: session.nonce.clone(),
        extra_params: Value::String(String::new()),
    };
    Ok((session, challenge))
}

/// `POST /attest`: verifies the evidence for session `session_id`, appraises it with the
/// attestation policy and returns the token.
///
/// # Errors
/// Session, binding, evidence and policy errors, see [`KbsError`].
pub fn attest(
    state: &AppState,
    session_id: &str,
    attestation: &Attestation,
) -> Result<String, KbsError> {
    let started = Instant::now();
    let cpu_started = thread_cpu();
    let nonce = state.sessions.take_challenge(session_id)?;
    let mut verify_cpu = Duration::ZERO;
    let result = attest_with_nonce(state, &nonce, attestation, &mut verify_cpu);
    match &result {
        Ok((token, claims)) => {
            state
                .sessions
                .attested(session_id, token.clone(), claims.clone())?;
        }
        Err(_) => state.sessions.remove(session_id),
    }
    state.metrics.attest(
        result.is_ok(),
        started.elapsed(),
        thread_cpu().saturating_sub(cpu_started),
        verify_cpu,
    );
    result.map(|(token, _)| token)
}

fn attest_with_nonce(
    state: &AppState,
    nonce: &str,
    attestation: &Attestation,
    verify_cpu: &mut Duration,
) -> Result<(String, Value), KbsError> {
    let rd = &attestation.runtime_data;
    if rd.nonce != nonce {
        return Err(KbsError::NonceMismatch);
    }
    let key: TeePubKey = serde_json::from_value(rd.tee_pubkey.clone())
        .map_err(|e| KbsError::TeeKey(format!("not an EC or RSA JWK: {e}")))?;
    check_tee_key(&key)?;
    let expected = protocol::report_data(
        &rd.nonce,
        &rd.tee_pubkey,
        &attestation.tee_evidence.additional_evidence,
    )
    .map_err(|e| KbsError::TeeKey(e.to_string()))?;
    let host_data = match &attestation.init_data {
        Some(init) => Some(
            crate::verifier::init_data_host_data(&init.format, &init.body)
                .map_err(KbsError::Attestation)?,
        ),
        None => None,
    };
    let t = thread_cpu();
    let verified = state
        .verifier
        .verify_with_init_data(
            &attestation.tee_evidence.primary_evidence,
            &expected,
            host_data.as_ref(),
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| match e {
            crate::verifier::EvidenceError::Binding => KbsError::BindingMismatch,
            other => KbsError::Attestation(other.to_string()),
        });
    *verify_cpu = thread_cpu().saturating_sub(t);
    let verified = verified?;
    let rego = load_policy(state, PolicyKind::Attestation, DEFAULT_POLICY_ID)?;
    let policy = state
        .policies
        .get(PolicyKind::Attestation, &rego)
        .map_err(|e| KbsError::PolicyEngine(e.to_string()))?;
    let reference_values = reference_values(state)?;
    let trust_vector = policy
        .appraise(&verified.claims, &reference_values)
        .map_err(|e| KbsError::PolicyEngine(e.to_string()))?;
    let simulated = verified.report.simulated();
    tracing::info!(
        simulated,
        status = trust_vector.status().as_str(),
        measurement = %hex::encode(verified.report.report().measurement()),
        "attestation verified"
    );
    Ok(state.tokens.issue(
        &Appraisal {
            trust_vector: &trust_vector,
            policy_id: DEFAULT_POLICY_ID,
            snp_claims: &verified.claims,
            simulated,
        },
        rd,
        now_secs(),
    ))
}

/// CPU time of the calling thread (attestations run on one blocking thread each).
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Refuses keys the response could not be encrypted to, before spending a verification.
fn check_tee_key(key: &TeePubKey) -> Result<(), KbsError> {
    jwe::encrypt(key, b"")
        .map(|_| ())
        .map_err(|e| KbsError::TeeKey(e.to_string()))
}

/// The token claims of a resource request: the attested session's, or a verified bearer
/// token's.
///
/// # Errors
/// [`KbsError::TokenNotFound`], [`KbsError::UnknownSession`], [`KbsError::TokenVerifier`].
pub fn token_claims(
    state: &AppState,
    session_id: Option<&str>,
    bearer: Option<&str>,
) -> Result<Value, KbsError> {
    if let Some(token) = bearer {
        return state
            .tokens
            .verify(token, now_secs())
            .map_err(|e| KbsError::TokenVerifier(e.to_string()));
    }
    match session_id {
        Some(id) => state.sessions.claims(id).map(|(claims, _)| claims),
        None => Err(KbsError::TokenNotFound),
    }
}

/// `GET /resource/...`: the resource policy decides, then the resource is encrypted to the
/// TEE key of the token.
///
/// # Errors
/// [`KbsError::PolicyDeny`], [`KbsError::ResourceNotFound`], JWE and storage errors.
pub fn resource(
    state: &AppState,
    claims: &Value,
    path: &ResourcePath,
) -> Result<JweResponse, KbsError> {
    let result = resource_inner(state, claims, path);
    state.metrics.resource(match &result {
        Ok(_) => ResourceOutcome::Released,
        Err(KbsError::ResourceNotFound(_)) => ResourceOutcome::NotFound,
        Err(_) => ResourceOutcome::Denied,
    });
    result
}

fn resource_inner(
    state: &AppState,
    claims: &Value,
    path: &ResourcePath,
) -> Result<JweResponse, KbsError> {
    let rego = load_policy(state, PolicyKind::Resource, DEFAULT_POLICY_ID)?;
    let data = json!({"plugin": "resource", "resource-path": path.segments(), "query": {}});
    let allow = state
        .policies
        .get(PolicyKind::Resource, &rego)
        .and_then(|p| p.allows(claims, &data))
        .map_err(|e| KbsError::PolicyEngine(e.to_string()))?;
    if !allow {
        tracing::info!(resource = %path, "resource policy denied");
        return Err(KbsError::PolicyDeny(path.to_string()));
    }
    let key = token::tee_pubkey(claims)
        .ok_or_else(|| KbsError::TokenVerifier("token carries no tee-pubkey".into()))?;
    let secret = state
        .storage
        .get(Namespace::Resource, &path.to_string())
        .map_err(|e| KbsError::Internal(e.to_string()))?
        .map(zeroize::Zeroizing::new)
        .ok_or_else(|| KbsError::ResourceNotFound(path.to_string()))?;
    let simulated = claims
        .pointer("/submods/cpu0/a3s.simulated")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    tracing::info!(resource = %path, simulated, "resource released");
    jwe::encrypt(&key, &secret).map_err(|e| KbsError::TeeKey(e.to_string()))
}

/// The policy of `kind` with `id` from storage, else the built-in of that name.
///
/// # Errors
/// [`KbsError::Internal`] on storage failure.
pub fn load_policy(state: &AppState, kind: PolicyKind, id: &str) -> Result<String, KbsError> {
    let ns = match kind {
        PolicyKind::Attestation => Namespace::AttestationPolicy,
        PolicyKind::Resource => Namespace::ResourcePolicy,
    };
    let id = policy::canonical_id(id);
    if let Some(bytes) = state
        .storage
        .get(ns, id)
        .map_err(|e| KbsError::Internal(e.to_string()))?
    {
        return String::from_utf8(bytes)
            .map_err(|_| KbsError::Internal(format!("stored policy {id} is not UTF-8")));
    }
    policy::builtin(kind, id)
        .map(str::to_owned)
        .ok_or_else(|| KbsError::PolicyEngine(format!("no policy {id:?}")))
}

/// Every stored reference value as one JSON object.
///
/// # Errors
/// [`KbsError::Internal`] on storage failure or corrupt values.
pub fn reference_values(state: &AppState) -> Result<Value, KbsError> {
    policy::reference::all(state.storage.as_ref())
}
