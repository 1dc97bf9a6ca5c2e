//! `run --pull` / `create --pull`: fetch the box's image first, as Docker does.

use a3s_image::pull::PullOptions;
use a3s_runtime::engine::{Engine, PullPolicy};

use super::args::CreateArgs;
use crate::commands::image::{self, args::RegistryArgs};
use crate::commands::EngineResult;
use crate::usage_error;

/// Pulls `a.image` when `--pull` says so (the home's signature policy applies, as for `pull`).
pub(super) fn ensure_image(engine: &Engine, a: &CreateArgs) -> anyhow::Result<()> {
    let policy: PullPolicy = a
        .pull
        .parse()
        .map_err(|e: String| usage_error(anyhow::anyhow!(e)))?;
    let reference: a3s_image::ImageRef = a.image.parse().map_err(|e| {
        usage_error(anyhow::anyhow!(
            "invalid image reference {:?}: {e}",
            a.image
        ))
    })?;
    let opts = PullOptions {
        registry: image::registry_options(&reference, &RegistryArgs::default())?,
        policy: image::signature_policy(None)?,
        verify_keys: Vec::new(),
        skip_unpack: false,
    };
    let quiet = std::env::var_os("A3S_BOX_QUIET").is_some();
    let bars = image::progress(quiet, "downloading");
    if let Some(p) = engine
        .ensure_image(&reference, policy, &opts, bars.as_ref())
        .engine()?
    {
        if !quiet {
            eprintln!("Pulled {reference} ({})", p.image.digest);
        }
    }
    Ok(())
}
