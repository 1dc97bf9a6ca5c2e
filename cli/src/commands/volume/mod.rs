//! `a3s-box volume ...` and the `-v` flag of `create`/`run` (issue 9).

use std::io::Write;

use clap::{Args, Subcommand};

use a3s_runtime::engine::Engine;
use a3s_runtime::volumes::{MountSpec, VolumeError, VolumeName};
use a3s_runtime::A3sHome;

use crate::commands::EngineResult;
use crate::list_format::{print_rows, ListFormat};
use crate::{output, usage_error, ExitStatus};

/// `-v` on `create`/`run`.
#[derive(Debug, Args)]
pub(crate) struct MountArgs {
    /// Mount a named volume (NAME:/path, created if missing), a host directory
    /// (/abs/host/dir:/path) or a new anonymous volume (/path: removed by `rm -v` and `--rm`);
    /// append :ro for read-only. Repeatable.
    #[arg(short = 'v', long = "volume", value_name = "[SOURCE:]/PATH[:ro]")]
    pub(crate) volume: Vec<String>,
}

impl MountArgs {
    /// Parsed mounts; bind sources must exist now (a usage error, exit 2, otherwise).
    pub(crate) fn mounts(&self) -> anyhow::Result<Vec<MountSpec>> {
        let mut out = Vec::new();
        for v in &self.volume {
            let m = MountSpec::parse(v).map_err(|e| usage_error(e.into()))?;
            m.check_host().map_err(|e| usage_error(e.into()))?;
            out.push(m);
        }
        a3s_runtime::volumes::check_targets(&out).map_err(|e| usage_error(e.into()))?;
        Ok(out)
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum VolumeCommand {
    /// Create a named volume (an existing one is left as it is).
    Create(NameArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(crate::list_format::ListFormatArgs),
    /// Print volumes as JSON: name, mountpoint on the host, created, used-by.
    Inspect(NamesArgs),
    /// Remove volumes and their data (refused while any box mounts them, unless --force).
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove every anonymous volume no box mounts (with --all, every volume no box mounts).
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Named volumes too, not only anonymous ones (Docker's `volume prune --all`).
    #[arg(short = 'a', long)]
    pub(crate) all: bool,
}

#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    /// Volume name.
    pub(crate) name: String,
}

#[derive(Debug, Args)]
pub(crate) struct NamesArgs {
    /// Volume names.
    #[arg(required = true)]
    pub(crate) names: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Remove even if boxes mount it (they fail to start until it exists again).
    #[arg(short = 'f', long)]
    pub(crate) force: bool,
    /// Volume names.
    #[arg(required = true)]
    pub(crate) names: Vec<String>,
}

fn name(s: &str) -> anyhow::Result<VolumeName> {
    s.parse::<VolumeName>().map_err(|e| usage_error(e.into()))
}

pub(crate) fn run(cmd: VolumeCommand) -> anyhow::Result<ExitStatus> {
    let home = A3sHome::from_env()?;
    let engine = Engine::open(&home);
    match cmd {
        VolumeCommand::Create(a) => {
            let n = name(&a.name)?;
            engine.create_volume(&n).engine()?;
            output::line(n.as_str())?;
        }
        VolumeCommand::Ls(f) => {
            let infos = engine.list_volumes().engine()?;
            match &f.format {
                ListFormat::Json | ListFormat::Template { .. } => {
                    let rows: Vec<_> = infos.iter().map(crate::docker::volume_row).collect();
                    print_rows(&f.format, &rows, &[("Name", "VOLUME NAME")])?;
                }
                ListFormat::Table => {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{:<8}  {:<32}  USED BY", "DRIVER", "VOLUME NAME")?;
                    for i in &infos {
                        let users: Vec<&str> = i
                            .used_by
                            .iter()
                            .map(|u| {
                                if u.name.is_empty() {
                                    u.id.as_str()
                                } else {
                                    u.name.as_str()
                                }
                            })
                            .collect();
                        writeln!(out, "{:<8}  {:<32}  {}", i.driver, i.name, users.join(","))?;
                    }
                }
            }
        }
        VolumeCommand::Inspect(a) => {
            let mut infos = Vec::new();
            for n in &a.names {
                infos.push(engine.inspect_volume(&name(n)?).engine()?);
            }
            output::json(&infos)?;
        }
        VolumeCommand::Rm(a) => {
            let mut failed = None;
            for n in &a.names {
                let n = name(n)?;
                match engine.remove_volume(&n, a.force) {
                    Ok(_) => output::line(n.as_str())?,
                    Err(e) => {
                        let e = crate::commands::engine_error(e);
                        if a.names.len() == 1 {
                            return Err(e);
                        }
                        let _ = writeln!(std::io::stderr(), "error: {e}");
                        failed = Some(e);
                    }
                }
            }
            if failed.is_some() {
                anyhow::bail!("some volumes were not removed");
            }
        }
        VolumeCommand::Prune(a) => {
            for n in &engine.prune_volumes(a.all).engine()? {
                output::line(n.as_str())?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

/// The hint of a volume error in a chain.
pub(crate) fn hint(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(e) = cause.downcast_ref::<VolumeError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_runtime::copy::CopyError>() {
        e.hint()
    } else {
        cause
            .downcast_ref::<a3s_vmm::fs::FsError>()
            .and_then(a3s_vmm::fs::FsError::hint)
    }
}
