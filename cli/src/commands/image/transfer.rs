//! `pull` and `push`.

use a3s_image::pull::{self as xfer, PullOptions};
use a3s_runtime::audit::{Event, Outcome};
use anyhow::Context;
use serde::Serialize;

use super::{
    args, audit, is_verdict, parse_ref, progress, public_key, registry_options, runtime,
    signature_policy, store, verdict_no,
};
use crate::args::Format;
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
    let store = store()?;
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
    let pulled = match runtime()?.block_on(xfer::pull(&store, &reference, &opts, bars.as_ref())) {
        Ok(p) => p,
        Err(xfer::TransferError::Verify(e)) if is_verdict(&e) => {
            audit(
                Event::new("image.pull", Outcome::Denied, e.to_string())
                    .with("reference", reference.to_string()),
            )?;
            return Err(verdict_no(
                anyhow::Error::new(e).context(format!("pulling {reference}")),
            ));
        }
        Err(e) => {
            audit(
                Event::new("image.pull", Outcome::Failure, e.to_string())
                    .with("reference", reference.to_string()),
            )?;
            return Err(anyhow::Error::new(e).context(format!("pulling {reference}")));
        }
    };
    audit(
        Event::new(
            "image.pull",
            Outcome::Success,
            format!("pulled {reference}"),
        )
        .with("reference", reference.to_string())
        .with("digest", pulled.image.digest.to_string())
        .with("resolved_digest", pulled.resolved.to_string())
        .with("verified_by", pulled.verified_by.clone()),
    )?;
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
    let store = store()?;
    let opts = registry_options(&target, &a.registry)?;
    let bars = progress(a.quiet, "uploading");
    let digest = runtime()?
        .block_on(xfer::push(&store, &source, &target, &opts, bars.as_ref()))
        .with_context(|| format!("pushing {target}"))?;
    if !a.quiet {
        eprintln!("Pushed {target}");
    }
    output::line(&format!("{}@{digest}", target.name()))?;
    Ok(ExitStatus::Success)
}
