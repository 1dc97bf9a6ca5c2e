//! The KBS client: auth → attest → resource, as guest-components' RCAR client does it, with
//! an [`Attester`] (the SNP hardware in a guest, the simulator on a host). Synchronous and
//! small (ureq), so the guest agent can use it without an async runtime.
//!
//! ```no_run
//! # use a3s_kbs::client::KbsClient;
//! # fn f(attester: &dyn a3s_attestation::hw::Attester) -> Result<(), Box<dyn std::error::Error>> {
//! let client = KbsClient::new("http://127.0.0.1:8080")?;
//! let secret = client.get_resource(attester, &"default/key/1".parse()?)?;
//! # Ok(()) }
//! ```

mod admin;
mod one_write;

use std::time::Duration;

use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::report::trustee::EvidenceError;
use zeroize::Zeroizing;

pub use admin::{admin_token, AdminClient, AdminPolicy, Credential, ADMIN_TOKEN_LIFETIME};

use crate::jwe::{JweError, TeeKeyKind, TeeKeyPair};
use crate::protocol::{
    self, Attestation, AttestationToken, Challenge, CompositeEvidence, ErrorInformation,
    JweResponse, Request, ResourcePath, RuntimeData, SESSION_COOKIE,
};

/// A client request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `http(s)://host[:port]`.
    #[error("KBS URL {0:?} is not http://host[:port] or https://host[:port]")]
    Url(String),
    /// The broker could not be reached.
    #[error("{step}: cannot reach the KBS at {url}")]
    Network {
        /// Which step.
        step: &'static str,
        /// The request URL.
        url: String,
        /// Cause.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The broker refused the request (its error body).
    #[error("{step}: the KBS answered {status} {kind}: {detail}")]
    Refused {
        /// Which step.
        step: &'static str,
        /// HTTP status.
        status: u16,
        /// Error kind (trustee's type URL's last segment).
        kind: String,
        /// The broker's detail.
        detail: String,
    },
    /// The resource does not exist (404).
    #[error("resource {0} not found at the KBS")]
    NotFound(String),
    /// The answer is not what the protocol says.
    #[error("{step}: unexpected answer from the KBS: {why}")]
    Protocol {
        /// Which step.
        step: &'static str,
        /// What was wrong.
        why: String,
    },
    /// The attester could not produce evidence.
    #[error("getting an attestation report")]
    Attester(#[from] HwError),
    /// The evidence could not be written as trustee JSON.
    #[error("encoding the evidence")]
    Evidence(#[from] EvidenceError),
    /// The TEE key could not be made, or the resource not decrypted.
    #[error("resource encryption")]
    Jwe(#[from] JweError),
    /// The CA certificate for TLS is unusable.
    #[error("CA certificate: {0}")]
    Ca(String),
}

impl ClientError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Refused { kind, .. } if kind == "AttestationError" => Some(
                "the KBS did not accept the evidence (see the detail above); simulated evidence is \
                 accepted only by a KBS run with --allow-simulated in the A3S_HOME whose simulator \
                 signed it"
                    .into(),
            ),
            Self::Refused { kind, .. } if kind == "PolicyDeny" => Some(
                "the resource policy refused this guest: check the reference values (`a3s-box kbs reference-value set`) and policies".into(),
            ),
            Self::Network { .. } => Some("is `a3s-box kbs serve` running at that URL?".into()),
            _ => None,
        }
    }
}

/// A KBS client with its TEE key.
#[derive(Debug)]
pub struct KbsClient {
    base: String,
    agent: ureq::Agent,
    key: TeeKeyPair,
}

/// An attested session: its cookie and token.
#[derive(Debug, Clone)]
pub struct Session {
    cookie: String,
    /// The attestation token (usable as `Authorization: Bearer`).
    pub token: String,
}

const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

impl KbsClient {
    /// A client of the broker at `url` with a fresh P-256 TEE key.
    ///
    /// # Errors
    /// [`ClientError::Url`].
    pub fn new(url: &str) -> Result<Self, ClientError> {
        Self::with_key(url, TeeKeyPair::generate(TeeKeyKind::P256)?, None)
    }

    /// A client with `key` and, for HTTPS, trusting only `ca_pem` when given.
    ///
    /// # Errors
    /// [`ClientError::Url`], [`ClientError::Ca`].
    pub fn with_key(
        url: &str,
        key: TeeKeyPair,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, ClientError> {
        let base = url.trim_end_matches('/').to_owned();
        let parsed: ureq::http::Uri = base.parse().map_err(|_| ClientError::Url(url.into()))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(ClientError::Url(url.into()));
        }
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(60)))
            .user_agent(concat!("a3s-kbs-client/", env!("CARGO_PKG_VERSION")));
        let loopback = parsed.host().is_some_and(|h| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            h.eq_ignore_ascii_case("localhost")
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if loopback {
            config = config.proxy(None);
        }
        if let Some(pem) = ca_pem {
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(pem) {
                if let ureq::tls::PemItem::Certificate(c) =
                    item.map_err(|e| ClientError::Ca(e.to_string()))?
                {
                    certs.push(c);
                }
            }
            if certs.is_empty() {
                return Err(ClientError::Ca("no CERTIFICATE in the PEM".into()));
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        Ok(Self {
            base,
            agent: ureq::Agent::with_parts(
                config.build(),
                one_write::connector(),
                ureq::unversioned::resolver::DefaultResolver::default(),
            ),
            key,
        })
    }

    /// The TEE key's public JWK (what the broker encrypts to).
    pub fn tee_public_jwk(&self) -> serde_json::Value {
        self.key.public_jwk()
    }

    fn url(&self, path: &str) -> String {
        format!("{}/kbs/v0/{path}", self.base)
    }

    fn send(
        &self,
        step: &'static str,
        request: ureq::RequestBuilder<ureq::typestate::WithBody>,
        url: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<String>, Vec<u8>), ClientError> {
        let response = request
            .header("content-type", "application/json")
            .send(body)
            .map_err(|source| ClientError::Network {
                step,
                url: url.to_owned(),
                source: Box::new(source),
            })?;
        Self::read(step, url, response)
    }

    fn read(
        step: &'static str,
        url: &str,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<(u16, Vec<String>, Vec<u8>), ClientError> {
        let status = response.status().as_u16();
        let cookies = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|source| ClientError::Network {
                step,
                url: url.to_owned(),
                source: Box::new(source),
            })?;
        Ok((status, cookies, body))
    }

    fn refused(step: &'static str, status: u16, body: &[u8]) -> ClientError {
        match serde_json::from_slice::<ErrorInformation>(body) {
            Ok(e) => ClientError::Refused {
                step,
                status,
                kind: e.kind().to_owned(),
                detail: e.detail,
            },
            Err(_) => ClientError::Refused {
                step,
                status,
                kind: "unknown".into(),
                detail: String::from_utf8_lossy(body).chars().take(200).collect(),
            },
        }
    }

    /// Runs auth and attest; returns the attested session.
    ///
    /// # Errors
    /// [`ClientError`] naming the failed step.
    pub fn attest(&self, attester: &dyn Attester) -> Result<Session, ClientError> {
        let url = self.url("auth");
        let body = serde_json::to_vec(&Request::snp()).map_err(|e| ClientError::Protocol {
            step: "auth",
            why: e.to_string(),
        })?;
        let (status, cookies, body) = self.send("auth", self.agent.post(&url), &url, &body)?;
        if status != 200 {
            return Err(Self::refused("auth", status, &body));
        }
        let challenge: Challenge =
            serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
                step: "auth",
                why: format!("not a Challenge: {e}"),
            })?;
        let cookie = cookies
            .iter()
            .filter_map(|c| c.split(';').next())
            .find(|kv| kv.trim().starts_with(&format!("{SESSION_COOKIE}=")))
            .map(|kv| kv.trim().to_owned())
            .ok_or_else(|| ClientError::Protocol {
                step: "auth",
                why: format!("no {SESSION_COOKIE} cookie"),
            })?;

        let runtime = RuntimeData {
            nonce: challenge.nonce,
            tee_pubkey: self.key.public_jwk(),
        };
        let report_data =
            protocol::report_data(&runtime.nonce, &runtime.tee_pubkey, "").map_err(|e| {
                ClientError::Protocol {
                    step: "attest",
                    why: e.to_string(),
                }
            })?;
        let evidence = attester.report(&report_data, 0)?;
        let attestation = Attestation {
            init_data: None,
            runtime_data: runtime,
            tee_evidence: CompositeEvidence {
                primary_evidence: evidence.to_trustee_json()?,
                additional_evidence: String::new(),
            },
        };
        let body = serde_json::to_vec(&attestation).map_err(|e| ClientError::Protocol {
            step: "attest",
            why: e.to_string(),
        })?;
        let url = self.url("attest");
        let (status, _, body) = self.send(
            "attest",
            self.agent.post(&url).header("cookie", &cookie),
            &url,
            &body,
        )?;
        if status != 200 {
            return Err(Self::refused("attest", status, &body));
        }
        let token: AttestationToken =
            serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
                step: "attest",
                why: format!("not an attestation token: {e}"),
            })?;
        crate::jwt::claims_unverified(&token.token).map_err(|e| ClientError::Protocol {
            step: "attest",
            why: e.to_string(),
        })?;
        Ok(Session {
            cookie,
            token: token.token,
        })
    }

    /// Fetches and decrypts resource `path` in attested `session`.
    ///
    /// # Errors
    /// [`ClientError::NotFound`], [`ClientError::Refused`], [`ClientError::Jwe`].
    pub fn resource(
        &self,
        session: &Session,
        path: &ResourcePath,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        self.fetch(path, ("cookie", session.cookie.clone()))
    }

    /// Fetches resource `path` with a bearer token (no session).
    ///
    /// # Errors
    /// As [`KbsClient::resource`].
    pub fn resource_with_token(
        &self,
        token: &str,
        path: &ResourcePath,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        self.fetch(path, ("authorization", format!("Bearer {token}")))
    }

    fn fetch(
        &self,
        path: &ResourcePath,
        (name, value): (&str, String),
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let url = self.url(&format!("resource/{path}"));
        let response = self
            .agent
            .get(&url)
            .header(name, &value)
            .call()
            .map_err(|source| ClientError::Network {
                step: "resource",
                url: url.clone(),
                source: Box::new(source),
            })?;
        let (status, _, body) = Self::read("resource", &url, response)?;
        match status {
            200 => {}
            404 => return Err(ClientError::NotFound(path.to_string())),
            _ => return Err(Self::refused("resource", status, &body)),
        }
        let jwe: JweResponse =
            serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
                step: "resource",
                why: format!("not a JWE: {e}"),
            })?;
        Ok(self.key.decrypt(&jwe)?)
    }

    /// auth → attest → resource: the secret at `path`.
    ///
    /// # Errors
    /// [`ClientError`] naming the failed step.
    pub fn get_resource(
        &self,
        attester: &dyn Attester,
        path: &ResourcePath,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let session = self.attest(attester)?;
        self.resource(&session, path)
    }
}
