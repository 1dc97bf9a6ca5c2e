//! `a3s-box secret inject BOX NAME=file:PATH`: a host file delivered into a running TEE box's
//! `/run/secrets/NAME` over RA-TLS, only after the box's evidence verified.

use clap::{Args, Subcommand};
use serde::Serialize;
use zeroize::Zeroizing;

use a3s_runtime::engine::{Engine, EngineError, InjectSecret};
use a3s_runtime::tee::attest::AttestOutcome;
use a3s_runtime::tee::spec::parse_measurement;
use a3s_runtime::tee::{SecretRef, SecretSource};
use a3s_runtime::A3sHome;

use crate::args::{Format, FormatArgs};
use crate::input::{read_limited, SECRET_INJECT_MAX_BYTES};
use crate::{output, usage_error, ExitStatus};

/// Secrets of running boxes.
#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Send a secret to a running TEE box over RA-TLS after verifying its evidence (fresh
    /// nonce, the box's recorded launch measurement); it lands in /run/secrets/NAME (tmpfs,
    /// 0400) and is audited by name only.
    ///
    /// Exit status: 0 placed, 1 evidence refused or the box refused the secret (nothing
    /// delivered), 2 unusable input, 125 the box is not running or cannot be reached.
    Inject(InjectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct InjectArgs {
    /// A running TEE box (name or id).
    pub(crate) r#box: String,
    /// NAME=file:PATH: the file name under /run/secrets and the host file holding the value
    /// (at most 1 MiB).
    #[arg(value_name = "NAME=file:PATH")]
    pub(crate) secret: String,
    /// The launch measurement the box must prove (96 hex digits); default: the one recorded
    /// when it booted.
    #[arg(long, value_name = "HEX")]
    pub(crate) expected_measurement: Option<String>,
    #[command(flatten)]
    pub(crate) format: FormatArgs,
}

#[derive(Serialize)]
struct InjectView<'a> {
    #[serde(rename = "box")]
    r#box: &'a str,
    secret: &'a str,
    delivered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    attestation: &'a AttestOutcome,
}

pub(crate) fn run(command: SecretCommand) -> anyhow::Result<ExitStatus> {
    match command {
        SecretCommand::Inject(a) => inject(&a),
    }
}

fn inject(a: &InjectArgs) -> anyhow::Result<ExitStatus> {
    let secret = SecretRef::parse(&a.secret).map_err(|e| usage_error(e.into()))?;
    let SecretSource::File { path } = &secret.source else {
        return Err(usage_error(anyhow::anyhow!(
            "secret inject takes NAME=file:PATH (a host file); a kbs:/// secret is fetched by \
             the box itself at start (run --secret)"
        )));
    };
    if let Some(m) = &a.expected_measurement {
        parse_measurement(m).map_err(|e| usage_error(e.into()))?;
    }
    let value = Zeroizing::new(read_limited(path, SECRET_INJECT_MAX_BYTES, "secret")?);
    let home = A3sHome::from_env()?;
    let req = InjectSecret {
        r#box: a.r#box.clone(),
        name: secret.name.clone(),
        value,
        expected_measurement: a.expected_measurement.clone(),
        nonce: None,
    };
    let report = match Engine::open(&home).inject_secret(req) {
        Ok(r) => r,
        Err(e @ EngineError::NotTee(_)) => return Err(usage_error(e.into())),
        Err(e) => return Err(crate::commands::engine_error(e)),
    };
    let reason = report.delivered.as_ref().err().map(String::as_str);
    let view = InjectView {
        r#box: &report.box_name,
        secret: &report.name,
        delivered: report.delivered.is_ok(),
        reason,
        attestation: &report.outcome,
    };
    match a.format.format {
        Format::Json => output::json(&view)?,
        Format::Text => {
            if view.delivered {
                println!(
                    "secret {} placed in {}:/run/secrets/{} (evidence verified, simulated: {})",
                    view.secret, view.r#box, view.secret, report.outcome.simulated
                );
            }
        }
    }
    match reason {
        None => Ok(ExitStatus::Success),
        Some(why) => {
            eprintln!(
                "error: secret {} was not delivered to {}: {why}",
                view.secret, view.r#box
            );
            Ok(ExitStatus::Failure)
        }
    }
}
