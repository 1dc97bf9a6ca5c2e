//! `secret inject BOX NAME=file:PATH`: a secret delivered to a running TEE box over RA-TLS,
//! after its evidence verified with a fresh nonce on that same connection.

use a3s_attestation::policy::AppraisalPolicy;
use a3s_ratls::delivery::{SecretDelivery, MAX_VALUE_BYTES};
use zeroize::Zeroizing;

use super::{Engine, EngineError};
use crate::audit::{Event, Outcome};
use crate::tee::attest::{self, AttestOutcome, AttestRequest};
use crate::tee::spec::{check_secret_name, parse_measurement};
use crate::tee::TeeError;

/// Largest secret `secret inject` delivers.
pub const MAX_INJECT_BYTES: usize = MAX_VALUE_BYTES;

/// What `secret inject` asks for.
#[derive(Debug)]
pub struct InjectSecret {
    /// The box (name or id).
    pub r#box: String,
    /// File name under `/run/secrets/` in the box.
    pub name: String,
    /// The value (at most [`MAX_VALUE_BYTES`]); never logged, audited or stored.
    pub value: Zeroizing<Vec<u8>>,
    /// The launch measurement the box must prove (default: the one recorded when it booted).
    pub expected_measurement: Option<String>,
    /// The challenge nonce (random when absent).
    pub nonce: Option<[u8; 32]>,
}

/// What `secret inject` found and did.
#[derive(Clone, Debug)]
pub struct InjectReport {
    /// The box's name.
    pub box_name: String,
    /// The secret's name.
    pub name: String,
    /// The attestation verdict of the session that carried (or would have carried) it.
    pub outcome: AttestOutcome,
    /// `Ok`: placed in `/run/secrets/<name>`; `Err`: why nothing was delivered or the box
    /// refused it.
    pub delivered: Result<(), String>,
}

impl Engine {
    /// `secret inject`: attests the running TEE box through its monitor with a fresh nonce
    /// and, only when its evidence verifies against the expected measurement (by default
    /// the one recorded at boot), sends the secret on that same RA-TLS session. Audited as
    /// `tee.secret_inject` by name only; a refusal is a report, not an error.
    ///
    /// # Errors
    /// A bad name or value, [`EngineError::NotTee`], a stopped box, connection errors.
    pub fn inject_secret(&self, req: InjectSecret) -> Result<InjectReport, EngineError> {
        check_secret_name(&req.name).map_err(|why| TeeError::Secret {
            spec: req.name.clone(),
            why,
        })?;
        if req.value.len() > MAX_VALUE_BYTES {
            return Err(TeeError::Secret {
                spec: req.name.clone(),
                why: format!(
                    "the value has {} bytes; the limit is {MAX_VALUE_BYTES}",
                    req.value.len()
                ),
            }
            .into());
        }
        let rec = self.boxes.find(&req.r#box)?;
        let tee = rec
            .tee
            .clone()
            .ok_or_else(|| EngineError::NotTee(rec.name.clone()))?;
        let expected = req
            .expected_measurement
            .as_deref()
            .unwrap_or(&tee.measurement);
        let policy = AppraisalPolicy {
            allow_simulated: tee.simulated,
            measurements: vec![parse_measurement(expected)?],
            ..AppraisalPolicy::default()
        };
        let areq = AttestRequest {
            nonce: req.nonce,
            policy,
            simulator_home: Some(self.home.root().to_owned()),
        };
        let conn = self.boxes.attest_session(&rec)?;
        let secret = SecretDelivery {
            name: req.name.clone(),
            value: req.value,
        };
        let (outcome, delivered) = attest::inject_relayed(conn, &areq, &secret)?;
        drop(secret);
        let delivered = match delivered {
            Some(d) => d,
            None => Err(format!(
                "nothing was delivered: the box's evidence did not verify ({})",
                outcome.error.as_deref().unwrap_or("policy checks failed")
            )),
        };
        let (result, message) = match (&delivered, outcome.verified) {
            (Ok(()), _) => (
                Outcome::Success,
                format!(
                    "secret {} placed in /run/secrets after RA-TLS verification",
                    req.name
                ),
            ),
            (Err(why), false) => (Outcome::Denied, why.clone()),
            (Err(why), true) => (Outcome::Failure, format!("the box refused it: {why}")),
        };
        let mut event = Event::new("tee.secret_inject", result, message)
            .with_box(rec.id.as_str())
            .with("secret", req.name.as_str())
            .with("nonce", outcome.nonce.as_str())
            .with("simulated", outcome.simulated);
        if let Some(m) = &outcome.measurement {
            event = event.with("measurement", m.as_str());
        }
        self.record(&event)?;
        Ok(InjectReport {
            box_name: rec.name,
            name: req.name,
            outcome,
            delivered,
        })
    }
}
