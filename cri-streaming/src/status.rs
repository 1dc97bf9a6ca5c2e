//! How a session's outcome is reported on the error stream. From `v4.channel.k8s.io` on it is a
//! JSON `metav1.Status` (client-go's `errorDecoderV4` reads the exit code from it); older
//! protocols carry only a failure message, as plain text.

use serde_json::json;

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    /// The process exited with this non-zero code.
    ExitCode(i32),
    /// The backend failed (message for the client).
    Error(String),
}

/// The error stream's format, fixed by the negotiated protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusFormat {
    /// `v4.channel.k8s.io` and later: JSON status for every outcome.
    Json,
    /// Earlier protocols: a text message for failures, nothing on success.
    Text,
}

impl Outcome {
    /// What to write on the error stream, if anything.
    pub(crate) fn encode(&self, format: StatusFormat) -> Option<Vec<u8>> {
        let status = match self {
            Self::Success => json!({"metadata": {}, "status": "Success"}),
            // client-go parses the cause as an unsigned 8-bit value, like a Unix exit status.
            Self::ExitCode(code) if (1..=255).contains(code) => json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: exit status {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            Self::ExitCode(code) => {
                internal_error(&format!("command ended with invalid exit status {code}"))
            }
            Self::Error(message) => internal_error(message),
        };
        match format {
            StatusFormat::Json => Some(status.to_string().into_bytes()),
            StatusFormat::Text => match self {
                Self::Success => None,
                _ => status["message"].as_str().map(|m| m.as_bytes().to_vec()),
            },
        }
    }
}

/// `apierrors.NewInternalError`: what kubelet reports when running the command failed.
fn internal_error(message: &str) -> serde_json::Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(outcome: &Outcome) -> serde_json::Value {
        serde_json::from_slice(&outcome.encode(StatusFormat::Json).unwrap()).unwrap()
    }

    #[test]
    fn success_is_a_bare_success_status() {
        assert_eq!(
            Outcome::Success.encode(StatusFormat::Json).unwrap(),
            br#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(Outcome::Success.encode(StatusFormat::Text), None);
    }

    #[test]
    fn exit_code_is_an_exit_code_cause() {
        let status = decode(&Outcome::ExitCode(42));
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "42");
    }

    #[test]
    fn out_of_range_exit_code_is_an_internal_error() {
        assert_eq!(decode(&Outcome::ExitCode(-1))["reason"], "InternalError");
        assert_eq!(decode(&Outcome::ExitCode(256))["reason"], "InternalError");
    }

    #[test]
    fn text_format_carries_the_message() {
        let text = Outcome::Error("no such container".into())
            .encode(StatusFormat::Text)
            .unwrap();
        assert_eq!(text, b"Internal error occurred: no such container");
    }
}
