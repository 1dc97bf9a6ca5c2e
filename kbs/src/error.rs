//! [`KbsError`]: every way a request fails, with trustee's error type URL and status.
//!
//! Trustee answers 401 for everything except a bad path or unknown plugin (404): a 401 makes
//! guest-components re-run the handshake. A missing resource is 404 here (clients report
//! "resource not found" on 404). Internal failures are 500 and their detail is only logged.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::protocol::{ErrorInformation, ERROR_TYPE_PREFIX};

/// A request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KbsError {
    /// The body is not the JSON the endpoint expects.
    #[error("malformed request body: {0}")]
    Serde(String),
    /// The body exceeds the size limit.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The client speaks another protocol version.
    #[error(
        "KBS Client Protocol Version Mismatch: expect ={expected} while the request is {actual}"
    )]
    ProtocolVersion {
        /// What this broker speaks.
        expected: &'static str,
        /// What the client sent.
        actual: String,
    },
    /// The TEE class is not one this broker verifies.
    #[error("TEE {0:?} is not supported by this KBS (supported: snp)")]
    UnsupportedTee(String),
    /// No `kbs-session-id` cookie.
    #[error("no kbs-session-id cookie: call /kbs/v0/auth first")]
    MissingSession,
    /// The cookie names no live session.
    #[error("session {0} is unknown or expired: call /kbs/v0/auth again")]
    UnknownSession(String),
    /// The session's challenge was already answered.
    #[error("the challenge of this session was already used: call /kbs/v0/auth again")]
    ChallengeUsed,
    /// The runtime data carries another nonce than the session's challenge.
    #[error("runtime data nonce does not match the session's challenge")]
    NonceMismatch,
    /// The evidence does not bind this runtime data (another nonce or another TEE key).
    #[error("REPORT_DATA in the evidence is not the hash of the runtime data (evidence for another nonce or key)")]
    BindingMismatch,
    /// The TEE key cannot be used for the response.
    #[error("tee-pubkey: {0}")]
    TeeKey(String),
    /// Evidence did not verify or was refused by the verifier's checks.
    #[error("attestation failed: {0}")]
    Attestation(String),
    /// Neither a session cookie of an attested session nor a bearer token.
    #[error("no attestation token: attest first (cookie) or send Authorization: Bearer <token>")]
    TokenNotFound,
    /// The bearer token did not verify.
    #[error("attestation token refused: {0}")]
    TokenVerifier(String),
    /// The resource policy denied the request.
    #[error("resource policy denied access to {0}")]
    PolicyDeny(String),
    /// A policy uploaded by the admin did not parse.
    #[error("policy does not parse: {0}")]
    ParsePolicy(String),
    /// Evaluating a policy failed.
    #[error("policy evaluation failed: {0}")]
    PolicyEngine(String),
    /// A reference-value message is invalid.
    #[error("reference value: {0}")]
    Rvps(String),
    /// The admin credential is missing or invalid.
    #[error("admin authentication failed: {0}")]
    AdminAuth(String),
    /// The path is not a KBS endpoint or resource path.
    #[error("invalid request path {0}")]
    InvalidRequestPath(String),
    /// The resource does not exist.
    #[error("resource {0} not found")]
    ResourceNotFound(String),
    /// Too many live sessions on this replica.
    #[error("too many pending sessions; retry later")]
    Busy,
    /// The path exists but not with this HTTP method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path (bounded, see [`echo`]).
        path: String,
    },
    /// A failure of ours (storage, encryption): detail is logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl KbsError {
    /// The `<Kind>` of trustee's error type URL and the HTTP status.
    pub fn kind_and_status(&self) -> (&'static str, StatusCode) {
        use StatusCode as S;
        match self {
            Self::Serde(_) => ("SerdeError", S::UNAUTHORIZED),
            Self::PayloadTooLarge { .. } => ("PayloadTooLarge", S::PAYLOAD_TOO_LARGE),
            Self::MissingSession => ("MissingCookie", S::UNAUTHORIZED),
            Self::UnknownSession(_) => ("ExpiredCookie", S::UNAUTHORIZED),
            Self::MethodNotAllowed { .. } => ("MethodNotAllowed", S::METHOD_NOT_ALLOWED),
            Self::ProtocolVersion { .. }
            | Self::UnsupportedTee(_)
            | Self::ChallengeUsed
            | Self::NonceMismatch
            | Self::BindingMismatch
            | Self::TeeKey(_)
            | Self::Attestation(_) => ("AttestationError", S::UNAUTHORIZED),
            Self::TokenNotFound => ("TokenNotFound", S::UNAUTHORIZED),
            Self::TokenVerifier(_) => ("TokenVerifierError", S::UNAUTHORIZED),
            Self::PolicyDeny(_) => ("PolicyDeny", S::UNAUTHORIZED),
            Self::ParsePolicy(_) => ("ParsePolicyError", S::UNAUTHORIZED),
            Self::PolicyEngine(_) => ("PolicyEngineError", S::UNAUTHORIZED),
            Self::Rvps(_) => ("RvpsError", S::UNAUTHORIZED),
            Self::AdminAuth(_) => ("AdminAuthAccess", S::UNAUTHORIZED),
            Self::InvalidRequestPath(_) => ("InvalidRequestPath", S::NOT_FOUND),
            Self::ResourceNotFound(_) => ("ResourceNotFound", S::NOT_FOUND),
            Self::Busy => ("HTTPFailed", S::SERVICE_UNAVAILABLE),
            Self::Internal(_) => ("PluginInternalError", S::INTERNAL_SERVER_ERROR),
        }
    }
}

/// Client input is echoed in errors at most this long.
pub const ECHO_LIMIT: usize = 64;

/// `input` for an error message: cut to [`ECHO_LIMIT`] bytes (on a character boundary) with
/// its full length noted, so a huge field is never reflected back in full.
pub fn echo(input: &str) -> String {
    if input.len() <= ECHO_LIMIT {
        return input.to_owned();
    }
    let mut end = ECHO_LIMIT;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &input[..end], input.len())
}

impl IntoResponse for KbsError {
    fn into_response(self) -> Response {
        let (kind, status) = self.kind_and_status();
        let detail = if matches!(self, Self::Internal(_)) {
            tracing::error!(error = %self, "internal error");
            "internal error (see the KBS log)".to_owned()
        } else {
            tracing::debug!(error = %self, kind, "request refused");
            self.to_string()
        };
        let body = ErrorInformation {
            error_type: format!("{ERROR_TYPE_PREFIX}{kind}"),
            detail,
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_bounds_long_input_on_a_char_boundary() {
        assert_eq!(echo("snp"), "snp");
        let long = "é".repeat(5_000);
        let cut = echo(&long);
        assert!(cut.len() < ECHO_LIMIT + 20, "{cut}");
        assert!(cut.ends_with("(10000 bytes)"), "{cut}");
    }

    #[test]
    fn session_and_method_errors_have_their_own_kinds() {
        assert_eq!(
            KbsError::UnknownSession("x".into()).kind_and_status(),
            ("ExpiredCookie", StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            KbsError::MissingSession.kind_and_status(),
            ("MissingCookie", StatusCode::UNAUTHORIZED)
        );
        let wrong = KbsError::MethodNotAllowed {
            method: "PATCH".into(),
            path: "/kbs/v0/auth".into(),
        };
        assert_eq!(
            wrong.kind_and_status(),
            ("MethodNotAllowed", StatusCode::METHOD_NOT_ALLOWED)
        );
    }
}
