//! `attest BOX` (RA-TLS with a fresh nonce) and the verdicts of offline evidence checks.

use a3s_attestation::policy::AppraisalPolicy;

use super::{Engine, EngineError};
use crate::audit::{Event, Outcome};
use crate::tee::attest::{self, AttestOutcome, AttestRequest};
use crate::tee::spec::parse_measurement;

/// What `attest` asks for: a box, or an RA-TLS endpoint, or both (the endpoint is dialled,
/// the box names the event).
#[derive(Clone, Debug, Default)]
pub struct AttestBox {
    /// The box (name or id): relayed through its monitor unless `connect` is given.
    pub r#box: Option<String>,
    /// An RA-TLS endpoint `HOST:PORT` to dial instead.
    pub connect: Option<String>,
    /// The challenge nonce (random when absent).
    pub nonce: Option<[u8; 32]>,
    /// What the evidence must prove (default for a box: the launch measurement recorded
    /// when it booted, simulated evidence allowed for a simulated box).
    pub policy: Option<AppraisalPolicy>,
}

/// What `attest` found.
#[derive(Clone, Debug)]
pub struct AttestReport {
    /// The box's name, when a box was named.
    pub box_name: Option<String>,
    /// The launch measurement recorded when the box booted.
    pub launch_measurement: Option<String>,
    /// The verdict.
    pub outcome: AttestOutcome,
}

/// The verdict of an offline evidence check (`attest verify REPORT`), as audited.
#[derive(Clone, Debug, Default)]
pub struct EvidenceVerdict {
    /// Every check passed.
    pub verified: bool,
    /// The evidence came from the simulator.
    pub simulated: bool,
    /// The first failed check.
    pub failed_check: Option<String>,
    /// The reported measurement (hex).
    pub measurement: String,
    /// The chip id (hex).
    pub chip_id: String,
}

impl Engine {
    /// `attest`: challenges a running TEE box (or an endpoint) over RA-TLS with a fresh
    /// nonce and appraises its evidence. The verdict is audited (`tee.attest`), a refusal as
    /// `denied`; a refusal is a verdict, not an error.
    ///
    /// # Errors
    /// [`EngineError::NotTee`], [`EngineError::AttestNeedsPolicy`], connection errors.
    pub fn attest(&self, req: &AttestBox) -> Result<AttestReport, EngineError> {
        let rec = req
            .r#box
            .as_deref()
            .map(|k| self.boxes.find(k))
            .transpose()?;
        let tee_rec = match &rec {
            Some(r) => Some(
                r.tee
                    .clone()
                    .ok_or_else(|| EngineError::NotTee(r.name.clone()))?,
            ),
            None => None,
        };
        let policy = match (&req.policy, &tee_rec) {
            (Some(p), _) => p.clone(),
            (None, Some(t)) => AppraisalPolicy {
                allow_simulated: t.simulated,
                measurements: vec![parse_measurement(&t.measurement)?],
                ..AppraisalPolicy::default()
            },
            (None, None) => return Err(EngineError::AttestNeedsPolicy),
        };
        let areq = AttestRequest {
            nonce: req.nonce,
            policy,
            simulator_home: Some(self.home.root().to_owned()),
        };
        let outcome = match (&req.connect, &rec) {
            (Some(addr), _) => attest::attest_tcp(addr, &areq)?,
            (None, Some(r)) => {
                let conn = self.boxes.attest_session(r)?;
                attest::attest_relayed(conn, &areq)?
            }
            (None, None) => return Err(EngineError::AttestNeedsPolicy),
        };
        let mut event = Event::new(
            "tee.attest",
            if outcome.verified {
                Outcome::Success
            } else {
                Outcome::Denied
            },
            outcome
                .error
                .clone()
                .unwrap_or_else(|| "RA-TLS evidence verified with a fresh nonce".into()),
        )
        .with("nonce", outcome.nonce.as_str())
        .with("simulated", outcome.simulated.to_string().as_str());
        if let Some(r) = &rec {
            event = event.with_box(r.id.as_str());
        }
        if let Some(m) = &outcome.measurement {
            event = event.with("measurement", m.as_str());
        }
        self.record(&event)?;
        Ok(AttestReport {
            box_name: rec.map(|r| r.name),
            launch_measurement: tee_rec.map(|t| t.measurement),
            outcome,
        })
    }

    /// Records the verdict of an offline evidence check (`attest.verify`) before the front
    /// end reports it.
    ///
    /// # Errors
    /// [`EngineError::Audit`].
    pub fn record_evidence_verdict(&self, v: &EvidenceVerdict) -> Result<(), EngineError> {
        let (outcome, message) = if v.verified {
            (Outcome::Success, "evidence verified".to_owned())
        } else {
            let check = v.failed_check.as_deref().unwrap_or("unknown");
            (Outcome::Failure, format!("evidence failed check {check}"))
        };
        let event = Event::new("attest.verify", outcome, message)
            .with("simulated", v.simulated)
            .with("measurement", v.measurement.clone())
            .with("chip_id", v.chip_id.clone())
            .with("failed_check", v.failed_check.clone());
        self.audit
            .record(&event)
            .map_err(|e| EngineError::Context {
                what: "writing the audit event for this verdict".into(),
                source: Box::new(e),
            })?;
        Ok(())
    }
}
