//! `a3s-box cp BOX:PATH HOSTPATH` and `a3s-box cp HOSTPATH BOX:PATH` (issue 9).

use clap::Args;

use a3s_runtime::copy::CpEndpoint;
use a3s_runtime::engine::{Engine, EngineError};
use a3s_runtime::A3sHome;

use crate::commands::engine_error;
use crate::{output, usage_error, ExitStatus};

/// `cp SRC DEST`.
#[derive(Debug, Args)]
pub(crate) struct CpArgs {
    /// Source: BOX:/path or a host path.
    pub(crate) src: String,
    /// Destination: a host path or BOX:/path. An existing directory receives the source
    /// inside it; otherwise the copy takes this name.
    pub(crate) dest: String,
}

pub(crate) fn run(a: &CpArgs) -> anyhow::Result<ExitStatus> {
    let home = A3sHome::from_env()?;
    let engine = Engine::open(&home);
    match (CpEndpoint::parse(&a.src), CpEndpoint::parse(&a.dest)) {
        (CpEndpoint::Box { key, path }, CpEndpoint::Host(dest)) => {
            let placed = engine.copy_out(&key, &path, &dest).map_err(engine_error)?;
            output::line(&placed.display().to_string())?;
        }
        (CpEndpoint::Host(src), CpEndpoint::Box { key, path }) => {
            engine.copy_in(&key, &src, &path).map_err(|e| match e {
                e @ EngineError::NoHostPath(_) => usage_error(e.into()),
                e => engine_error(e),
            })?;
        }
        (CpEndpoint::Box { .. }, CpEndpoint::Box { .. }) => {
            return Err(usage_error(anyhow::anyhow!(
                "copying between two boxes is not supported: copy to the host first"
            )))
        }
        (CpEndpoint::Host(_), CpEndpoint::Host(_)) => {
            return Err(usage_error(anyhow::anyhow!(
                "one of SRC and DEST must be BOX:/path"
            )))
        }
    }
    Ok(ExitStatus::Success)
}
