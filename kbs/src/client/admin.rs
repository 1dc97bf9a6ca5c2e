//! The admin side: resources, policies and reference values, authenticated with a
//! short-lived ES256 JWT signed by the admin key (or nothing, for `--insecure-admin`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use p256::ecdsa::SigningKey;

use crate::jwt::AdminSigner;
use serde_json::{json, Value};

use super::ClientError;
use crate::protocol::ResourcePath;

/// Which policy to set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminPolicy {
    /// `POST /kbs/v0/attestation-policy`.
    Attestation,
    /// `POST /kbs/v0/resource-policy`.
    Resource,
}

/// An admin client.
pub struct AdminClient {
    base: String,
    agent: ureq::Agent,
    credential: Option<Credential>,
}

/// How an admin client authenticates.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Credential {
    /// A fresh short-lived token per request, signed by this key.
    Key(Box<AdminSigner>),
    /// A ready-made token (`a3s-box kbs admin-token`, or trustee's tooling).
    Token(String),
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Lifetime of the admin JWTs this client makes.
const ADMIN_TOKEN_SECS: u64 = 300;

/// A fresh admin token signed by `key`.
pub fn admin_token(key: &SigningKey) -> String {
    AdminSigner::Es256(key.clone()).admin_token(now_secs(), ADMIN_TOKEN_SECS)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AdminClient {
    /// An admin client of `url`, signing with `key` (`None` for an insecure-admin KBS).
    ///
    /// # Errors
    /// [`ClientError::Url`].
    pub fn new(
        url: &str,
        key: Option<SigningKey>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, ClientError> {
        Self::with_credential(
            url,
            key.map(|k| Credential::Key(Box::new(k.into()))),
            ca_pem,
        )
    }

    /// An admin client of `url` authenticating with `credential` (`None` for an
    /// insecure-admin KBS).
    ///
    /// # Errors
    /// [`ClientError::Url`].
    pub fn with_credential(
        url: &str,
        credential: Option<Credential>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, ClientError> {
        // Reuse the protocol client's URL checks and TLS settings.
        let probe = super::KbsClient::with_key(
            url,
            crate::jwe::TeeKeyPair::P256(p256::SecretKey::random(&mut rand_core::OsRng)),
            ca_pem,
        )?;
        Ok(Self {
            base: probe.base,
            agent: probe.agent,
            credential,
        })
    }

    fn call(
        &self,
        step: &'static str,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/kbs/v0/{path}", self.base);
        let auth = self.credential.as_ref().map(|c| match c {
            Credential::Key(k) => format!("Bearer {}", k.admin_token(now_secs(), ADMIN_TOKEN_SECS)),
            Credential::Token(t) => format!("Bearer {t}"),
        });
        let network = |source| ClientError::Network {
            step,
            url: url.clone(),
            source: Box::new(source),
        };
        let response = match (method, body) {
            ("DELETE", Some(body)) => {
                let mut r = self
                    .agent
                    .delete(&url)
                    .force_send_body()
                    .header("content-type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.send(body).map_err(network)?
            }
            ("DELETE", None) => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call().map_err(network)?
            }
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call().map_err(network)?
            }
            (_, body) => {
                let mut r = self
                    .agent
                    .post(&url)
                    .header("content-type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.send(body.unwrap_or_default()).map_err(network)?
            }
        };
        let (status, _, body) = super::KbsClient::read(step, &url, response)?;
        match status {
            200 => Ok(body),
            404 => Err(ClientError::NotFound(path.to_owned())),
            _ => Err(super::KbsClient::refused(step, status, &body)),
        }
    }

    /// Stores `bytes` at `path`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn set_resource(&self, path: &ResourcePath, bytes: &[u8]) -> Result<(), ClientError> {
        self.call(
            "resource set",
            "POST",
            &format!("resource/{path}"),
            Some(bytes),
        )
        .map(|_| ())
    }

    /// Removes `path`.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when it does not exist.
    pub fn delete_resource(&self, path: &ResourcePath) -> Result<(), ClientError> {
        self.call("resource rm", "DELETE", &format!("resource/{path}"), None)
            .map(|_| ())
    }

    /// Sets the `default` policy of `kind` to `rego`.
    ///
    /// # Errors
    /// [`ClientError`] (the broker refuses Rego that does not parse).
    pub fn set_policy(&self, kind: AdminPolicy, rego: &str) -> Result<(), ClientError> {
        let policy = URL_SAFE_NO_PAD.encode(rego);
        let (path, body) = match kind {
            AdminPolicy::Attestation => (
                "attestation-policy",
                json!({"type": "rego", "policy_id": "default", "policy": policy}),
            ),
            AdminPolicy::Resource => ("resource-policy", json!({ "policy": policy })),
        };
        self.call(
            "policy set",
            "POST",
            path,
            Some(body.to_string().as_bytes()),
        )
        .map(|_| ())
    }

    /// Sets reference values (`name → JSON value`) with an RVPS `sample` message.
    ///
    /// # Errors
    /// [`ClientError`] (the broker checks the known names' formats).
    pub fn set_reference_values(
        &self,
        values: &serde_json::Map<String, Value>,
    ) -> Result<(), ClientError> {
        let message = json!({
            "version": "0.1.0",
            "type": "sample",
            "payload": STANDARD.encode(Value::Object(values.clone()).to_string()),
        });
        self.call(
            "reference-value set",
            "POST",
            "reference-value",
            Some(message.to_string().as_bytes()),
        )
        .map(|_| ())
    }

    /// Every reference value, as one object.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn reference_values(&self) -> Result<Value, ClientError> {
        let body = self.call("reference-value list", "GET", "reference-value", None)?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
            step: "reference-value list",
            why: e.to_string(),
        })
    }

    /// Appends `item` to the list `name` (kept once); returns the list.
    ///
    /// # Errors
    /// [`ClientError`] (the broker checks the known names' formats).
    pub fn add_reference_value(&self, name: &str, item: &Value) -> Result<Value, ClientError> {
        self.list_change("reference-value add", "POST", name, item)
    }

    /// Removes `item` from the list `name`; returns the list.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when it is not there.
    pub fn remove_reference_value(&self, name: &str, item: &Value) -> Result<Value, ClientError> {
        self.list_change("reference-value remove", "DELETE", name, item)
    }

    fn list_change(
        &self,
        step: &'static str,
        method: &str,
        name: &str,
        item: &Value,
    ) -> Result<Value, ClientError> {
        let body = self.call(
            step,
            method,
            &format!("reference-value/{name}/items"),
            Some(item.to_string().as_bytes()),
        )?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
            step,
            why: e.to_string(),
        })
    }

    /// The reference value `name`.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when unset.
    pub fn reference_value(&self, name: &str) -> Result<Value, ClientError> {
        let body = self.call(
            "reference-value get",
            "GET",
            &format!("reference-value/{name}"),
            None,
        )?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
            step: "reference-value get",
            why: e.to_string(),
        })
    }
}

/// How long admin tokens live.
pub const ADMIN_TOKEN_LIFETIME: Duration = Duration::from_secs(ADMIN_TOKEN_SECS);
