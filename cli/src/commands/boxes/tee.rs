//! The confidential-box parts of the lifecycle commands: TEE flags into a [`TeeSpec`], the
//! image signature gate, host-exec refusal, and `a3s-box attest BOX`.

use anyhow::Context;
use serde::Serialize;

use a3s_attestation::policy::AppraisalPolicy;
use a3s_image::cosign::{self, SignaturePolicy};
use a3s_runtime::audit::{AuditLog, Event, Outcome};
use a3s_runtime::boxes::{BoxRecord, Boxes};
use a3s_runtime::tee::attest::{self, AttestOutcome, AttestRequest};
use a3s_runtime::tee::spec::{parse_measurement, TeeMode};
use a3s_runtime::tee::{SecretRef, TeeSpec};
use a3s_runtime::A3sHome;

use super::args::TeeArgs;
use crate::args::{AttestBoxArgs, Format};
use crate::{output, usage_error, ExitCodeError, ExitStatus};

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

/// The image signature gate: `--verify-key`, or the signature policy when it asks for
/// signatures. Checks the digest the box will launch; audited either way.
pub(super) fn verify_image(home: &A3sHome, rec: &BoxRecord, a: &TeeArgs) -> anyhow::Result<()> {
    let policy = if a.verify_key.is_empty() {
        let p = crate::commands::image::signature_policy(None)?;
        if !p.requires_signatures() {
            return Ok(());
        }
        p
    } else {
        let keys = a
            .verify_key
            .iter()
            .map(|k| crate::commands::image::public_key(k))
            .collect::<anyhow::Result<Vec<_>>>()?;
        SignaturePolicy::require_keys(keys)
    };
    let store = a3s_image::ImageStore::open(home.root().join("images"))?;
    let reference: a3s_image::ImageRef = rec
        .image
        .parse()
        .map_err(|e| anyhow::anyhow!("image {:?}: {e}", rec.image))?;
    let result = cosign::verify_for_run(&store, &reference, &policy);
    let event = |outcome, msg: &str| {
        Event::new("image.verify", outcome, msg)
            .with_box(rec.id.as_str())
            .with("image", rec.image.as_str())
            .with("digest", rec.image_digest.as_str())
    };
    let log = AuditLog::open(home.audit());
    match result {
        Ok(v) => {
            let mut e = event(Outcome::Success, "signature verified before launch");
            if let Some(signer) = v.signer() {
                e = e.with("key", signer);
            }
            if let Some(d) = v.signed_digest() {
                e = e.with("signed_digest", d.as_str());
            }
            log.record(&e).context("writing the audit event")?;
            Ok(())
        }
        Err(err) => {
            log.record(&event(Outcome::Denied, &err.to_string()))
                .context("writing the audit event")?;
            Err(anyhow::Error::new(err).context(format!(
                "image {} ({}) may not run",
                rec.image, rec.image_digest
            )))
        }
    }
}

/// Refuses host `exec` into a TEE box without `--allow-exec` (audited). The monitor refuses
/// too, for clients that bypass the CLI.
pub(super) fn refuse_exec(home: &A3sHome, rec: &BoxRecord, what: &str) -> anyhow::Result<()> {
    let Some(tee) = &rec.spec.tee else {
        return Ok(());
    };
    if tee.allow_exec {
        return Ok(());
    }
    let err = a3s_runtime::tee::TeeError::ExecRefused {
        what: what.to_owned(),
        name: rec.name.clone(),
    };
    AuditLog::open(home.audit())
        .record(
            &Event::new("box.exec", Outcome::Denied, err.to_string())
                .with_box(rec.id.as_str())
                .with("name", rec.name.as_str()),
        )
        .context("writing the audit event")?;
    Err(anyhow::Error::new(ExitCodeError {
        code: 125,
        error: err.into(),
    }))
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
    let boxes = Boxes::open(&home);
    let rec = a.r#box.as_deref().map(|k| boxes.find(k)).transpose()?;
    let tee_rec = match &rec {
        Some(r) => Some(r.tee.clone().ok_or_else(|| {
            usage_error(anyhow::anyhow!(
                "box {} is not a TEE box (run it with --tee-simulate or --tee-enable)",
                r.name
            ))
        })?),
        None => None,
    };
    let policy = match (explicit_policy, &tee_rec) {
        (Some(p), _) => p,
        (None, Some(t)) => AppraisalPolicy {
            allow_simulated: t.simulated,
            measurements: vec![parse_measurement(&t.measurement)?],
            ..AppraisalPolicy::default()
        },
        (None, None) => {
            return Err(usage_error(anyhow::anyhow!(
                "--connect without a box needs --policy FILE (what the endpoint must prove)"
            )))
        }
    };
    let req = AttestRequest {
        nonce,
        policy,
        simulator_home: Some(home.root().to_owned()),
    };
    let outcome = match (&a.connect, &rec) {
        (Some(addr), _) => attest::attest_tcp(addr, &req)?,
        (None, Some(r)) => {
            let conn = boxes.attest_session(r)?;
            attest::attest_relayed(conn, &req)?
        }
        (None, None) => unreachable!("clap requires a box or --connect"),
    };
    let log = AuditLog::open(home.audit());
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
    log.record(&event).context("writing the audit event")?;
    let view = AttestView {
        r#box: rec.as_ref().map(|r| r.name.as_str()),
        endpoint: a.connect.as_deref(),
        launch_measurement: tee_rec.as_ref().map(|t| t.measurement.as_str()),
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
