//! The confidential-box parts of the lifecycle commands: TEE flags into a [`TeeSpec`], the
//! image signature gate as a policy for the engine, and `a3s-box attest BOX`.

use anyhow::Context;
use serde::Serialize;

use a3s_attestation::policy::AppraisalPolicy;
use a3s_image::cosign::SignaturePolicy;
use a3s_runtime::engine::{AttestBox, Engine, EngineError};
use a3s_runtime::tee::attest::AttestOutcome;
use a3s_runtime::tee::spec::{parse_measurement, TeeMode};
use a3s_runtime::tee::{SecretRef, TeeSpec};
use a3s_runtime::A3sHome;

use super::args::TeeArgs;
use crate::args::{AttestBoxArgs, Format};
use crate::{output, usage_error, ExitStatus};

/// The TEE settings of `run`/`create`, or `None` for a plain box. Errors are usage errors.
pub(super) fn tee_spec(a: &TeeArgs) -> anyhow::Result<Option<TeeSpec>> {
    let mode = match (a.tee_enable, a.tee_simulate) {
        (true, _) => TeeMode::Snp,
        (false, true) => TeeMode::Simulated,
        (false, false) => {
            if let Some(flag) = a.tee_only_flags() {
                return Err(usage_error(anyhow::anyhow!(
                    "{flag} needs --tee-enable or --tee-simulate"
                )));
            }
            return Ok(None);
        }
    };
    let secrets = a
        .secret
        .iter()
        .map(|s| SecretRef::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| usage_error(e.into()))?;
    if let Some(m) = &a.expected_measurement {
        parse_measurement(m).map_err(|e| usage_error(e.into()))?;
    }
    let policy = a
        .tee_policy
        .as_ref()
        .map(|p| std::path::absolute(p).with_context(|| format!("--tee-policy {}", p.display())))
        .transpose()
        .map_err(usage_error)?;
    Ok(Some(TeeSpec {
        mode,
        kbs_url: a.kbs_url.clone(),
        secrets,
        expected_measurement: a.expected_measurement.clone(),
        policy,
        allow_exec: a.allow_exec,
    }))
}

/// The image signature gate of `run`/`create`: `--verify-key`, or the home's signature
/// policy when it asks for signatures (`None`: no signature required). The engine checks it
/// against the digest the box will launch.
pub(super) fn signature_gate(a: &TeeArgs) -> anyhow::Result<Option<SignaturePolicy>> {
    if a.verify_key.is_empty() {
        let p = crate::commands::image::signature_policy(None)?;
        return Ok(p.requires_signatures().then_some(p));
    }
    let keys = a
        .verify_key
        .iter()
        .map(|k| crate::commands::image::public_key(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(SignaturePolicy::require_keys(keys)))
}

#[derive(Serialize)]
struct AttestView<'a> {
    #[serde(rename = "box", skip_serializing_if = "Option::is_none")]
    r#box: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<&'a str>,
    /// The launch measurement recorded when the box booted.
    #[serde(skip_serializing_if = "Option::is_none")]
    launch_measurement: Option<&'a str>,
    #[serde(flatten)]
    outcome: &'a AttestOutcome,
}

/// `a3s-box attest BOX [--nonce HEX] [--policy FILE] [--connect HOST:PORT] [--format json]`.
pub(crate) fn attest(a: &AttestBoxArgs) -> anyhow::Result<ExitStatus> {
    let home = A3sHome::from_env()?;
    let nonce = a
        .nonce
        .as_deref()
        .map(|n| {
            let bytes = hex::decode(n.trim())
                .map_err(|e| anyhow::anyhow!("--nonce {n:?} is not hex: {e}"))?;
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                anyhow::anyhow!(
                    "--nonce is {} bytes; it must be 32 (64 hex digits)",
                    bytes.len()
                )
            })
        })
        .transpose()
        .map_err(usage_error)?;
    let explicit_policy = a
        .policy
        .as_ref()
        .map(|p| AppraisalPolicy::load(p).map_err(|e| usage_error(e.into())))
        .transpose()?;
    let req = AttestBox {
        r#box: a.r#box.clone(),
        connect: a.connect.clone(),
        nonce,
        policy: explicit_policy,
    };
    let report = match Engine::open(&home).attest(&req) {
        Ok(r) => r,
        Err(e @ (EngineError::NotTee(_) | EngineError::AttestNeedsPolicy)) => {
            return Err(usage_error(e.into()))
        }
        Err(e) => return Err(crate::commands::engine_error(e)),
    };
    let outcome = report.outcome;
    let view = AttestView {
        r#box: report.box_name.as_deref(),
        endpoint: a.connect.as_deref(),
        launch_measurement: report.launch_measurement.as_deref(),
        outcome: &outcome,
    };
    match a.format.format {
        Format::Json => output::json(&view)?,
        Format::Text => {
            let mut rows = vec![(
                "verified",
                if outcome.verified { "yes" } else { "NO" }.to_owned(),
            )];
            rows.push(("simulated", outcome.simulated.to_string()));
            if let Some(b) = view.r#box {
                rows.push(("box", b.to_owned()));
            }
            if let Some(m) = &outcome.measurement {
                rows.push(("measurement", m.clone()));
            }
            if let Some(m) = view.launch_measurement {
                rows.push(("launch measurement", m.to_owned()));
            }
            rows.push(("nonce", outcome.nonce.clone()));
            if let Some(b) = &outcome.bound_nonce {
                rows.push(("bound nonce", b.clone()));
            }
            for c in &outcome.checks {
                rows.push((
                    if c.passed { "check ok" } else { "check FAILED" },
                    format!("{}: {}", c.name, c.detail),
                ));
            }
            if let Some(e) = &outcome.error {
                rows.push(("error", e.clone()));
            }
            rows.push(("elapsed", format!("{} ms", outcome.elapsed_ms)));
            output::rows(&rows)?;
        }
    }
    Ok(if outcome.verified {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}
