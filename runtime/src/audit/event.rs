//! What an audit event says, and how one line of the log is laid out.

use serde::{Deserialize, Serialize};

/// The result of an audited action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action was carried out.
    Success,
    /// The action was attempted and failed.
    Failure,
    /// The action was refused by a policy or a security check.
    Denied,
}

impl Outcome {
    /// The lowercase name used in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }
}

/// An outcome name other than `success`, `failure` or `denied`.
#[derive(Debug, thiserror::Error)]
#[error("unknown audit outcome {0:?}: use success, failure or denied")]
pub struct ParseOutcomeError(String);

impl std::str::FromStr for Outcome {
    type Err = ParseOutcomeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "success" => Ok(Self::Success),
            "failure" => Ok(Self::Failure),
            "denied" => Ok(Self::Denied),
            other => Err(ParseOutcomeError(other.to_owned())),
        }
    }
}

/// An event to record: what happened, to which box, and how it ended.
///
/// `action` is a dotted name (`box.start`, `image.pull`, `attest.verify`, `secret.release`,
/// `exec.refuse`, …). Never put secret values in `message` or `metadata`: name them.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Dotted action name.
    pub action: String,
    /// The box the action concerns, if any.
    pub box_id: Option<String>,
    /// How the action ended.
    pub outcome: Outcome,
    /// One human-readable sentence.
    pub message: String,
    /// Structured details (digests, key ids, measurements, verdicts).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    /// An event with no box and no metadata.
    pub fn new(action: impl Into<String>, outcome: Outcome, message: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            box_id: None,
            outcome,
            message: message.into(),
            metadata: serde_json::Map::new(),
        }
    }

    /// Sets the box the event concerns.
    #[must_use]
    pub fn with_box(mut self, box_id: impl Into<String>) -> Self {
        self.box_id = Some(box_id.into());
        self
    }

    /// Adds one metadata member.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }
}

/// Version of the line format written by this code.
pub(crate) const LINE_VERSION: u32 = 1;

/// One line of the log as stored. Field order is the serialisation order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Line format version.
    pub v: u32,
    /// Sequence number, 1 for the first line ever written.
    pub seq: u64,
    /// Random unique id (UUID v4).
    pub id: String,
    /// RFC 3339 UTC time of the write.
    pub time: String,
    /// Dotted action name.
    pub action: String,
    /// The box concerned.
    #[serde(rename = "box")]
    pub box_id: Option<String>,
    /// Who acted: the host user and process.
    pub actor: String,
    /// How the action ended.
    pub outcome: Outcome,
    /// Human-readable sentence.
    pub message: String,
    /// Structured details.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Hash of the previous line (64 zeros for the first).
    pub prev: String,
    /// SHA-256 of this line without its `hash` member.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}
