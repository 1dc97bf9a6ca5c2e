//! `pull` and `push`.

use a3s_image::pull::{PullOptions, TransferError};
use a3s_runtime::engine::{is_verdict, Engine};
use serde::Serialize;

use super::{
    args, home, parse_ref, progress, public_key, registry_options, signature_policy, verdict_no,
};
use crate::args::Format;
use crate::commands::EngineResult;
use crate::{output, ExitStatus};

#[derive(Serialize)]
struct PullView {
    reference: String,
    digest: String,
    resolved_digest: String,
    layers: usize,
    cached_layers: usize,
    verified_by: Vec<String>,
}

pub(super) fn pull(a: &args::PullArgs) -> anyhow::Result<ExitStatus> {
    let reference = parse_ref(&a.image)?;
    let engine = Engine::open(&home()?);
    let mut verify_keys = Vec::new();
    for k in &a.verify_key {
        verify_keys.push(public_key(k)?);
    }
    let opts = PullOptions {
        registry: registry_options(&reference, &a.registry)?,
        policy: signature_policy(a.signature_policy.as_ref())?,
        verify_keys,
        skip_unpack: false,
    };
    if !a.quiet {
        eprintln!("Pulling {reference}");
    }
    let bars = progress(a.quiet, "downloading");
    let pulled = match engine.pull(&reference, &opts, bars.as_ref()) {
        Ok(p) => p,
        Err(e) => {
            let e = crate::commands::engine_error(e);
            let verdict = e
                .chain()
                .filter_map(|c| c.downcast_ref::<TransferError>())
                .any(|t| matches!(t, TransferError::Verify(v) if is_verdict(v)));
            return Err(if verdict { verdict_no(e) } else { e });
        }
    };
    let view = PullView {
        reference: reference.to_string(),
        digest: pulled.image.digest.to_string(),
        resolved_digest: pulled.resolved.to_string(),
        layers: pulled.layers,
        cached_layers: pulled.cached_layers,
        verified_by: pulled.verified_by.clone(),
    };
    match a.format {
        Format::Json => output::json(&view)?,
        Format::Text => {
            if !a.quiet {
                eprintln!("Digest: {}", view.resolved_digest);
                for k in &view.verified_by {
                    eprintln!("Verified signature by key {k}");
                }
            }
            output::line(&view.reference)?;
        }
    }
    Ok(ExitStatus::Success)
}

pub(super) fn push(a: &args::PushArgs) -> anyhow::Result<ExitStatus> {
    let source = parse_ref(&a.image)?;
    let target = match &a.to {
        Some(t) => parse_ref(t)?,
        None => source.clone(),
    };
    let engine = Engine::open(&home()?);
    let opts = registry_options(&target, &a.registry)?;
    let bars = progress(a.quiet, "uploading");
    let digest = engine
        .push(&source, &target, &opts, bars.as_ref())
        .engine()?;
    if !a.quiet {
        eprintln!("Pushed {target}");
    }
    output::line(&format!("{}@{digest}", target.name()))?;
    Ok(ExitStatus::Success)
}
