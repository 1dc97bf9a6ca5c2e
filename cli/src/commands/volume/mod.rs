//! `a3s-box volume ...` and the `-v` flag of `create`/`run` (issue 9).

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};

use a3s_runtime::audit::{AuditLog, Event, Outcome};
use a3s_runtime::volumes::{MountSpec, VolumeError, VolumeName, Volumes};
use a3s_runtime::A3sHome;

use crate::args::{Format, FormatArgs};
use crate::{output, usage_error, ExitStatus};

/// `-v` on `create`/`run`.
#[derive(Debug, Args)]
pub(crate) struct MountArgs {
    /// Mount a named volume (NAME:/path, created if missing) or a host directory
    /// (/abs/host/dir:/path); append :ro for read-only. Repeatable.
    #[arg(short = 'v', long = "volume", value_name = "SOURCE:/PATH[:ro]")]
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
    Ls(FormatArgs),
    /// Print volumes as JSON: name, mountpoint on the host, created, used-by.
    Inspect(NamesArgs),
    /// Remove volumes and their data (refused while any box mounts them, unless --force).
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove every volume no box mounts.
    Prune,
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

fn audit(
    home: &A3sHome,
    action: &str,
    volume: &str,
    outcome: Outcome,
    message: &str,
) -> anyhow::Result<()> {
    let event = Event::new(action, outcome, message).with("volume", volume);
    AuditLog::open(home.audit())
        .record(&event)
        .context("writing the audit event")?;
    Ok(())
}

/// Creates the named volumes a new box mounts (Docker: `run -v NAME:/p` creates a missing
/// `NAME`), auditing each one created.
pub(crate) fn ensure_named(home: &A3sHome, mounts: &[MountSpec]) -> anyhow::Result<()> {
    let volumes = Volumes::open(home);
    for m in mounts {
        if let a3s_runtime::volumes::MountSource::Volume { name } = &m.source {
            if volumes.create(name)?.1 {
                audit(
                    home,
                    "volume.create",
                    name.as_str(),
                    Outcome::Success,
                    "created for -v",
                )?;
            }
        }
    }
    Ok(())
}

pub(crate) fn run(cmd: VolumeCommand) -> anyhow::Result<ExitStatus> {
    let home = A3sHome::from_env()?;
    let volumes = Volumes::open(&home);
    match cmd {
        VolumeCommand::Create(a) => {
            let n = name(&a.name)?;
            let (_, created) = volumes.create(&n)?;
            let what = if created {
                "created"
            } else {
                "already existed"
            };
            audit(&home, "volume.create", n.as_str(), Outcome::Success, what)?;
            output::line(n.as_str())?;
        }
        VolumeCommand::Ls(f) => {
            let infos = volumes
                .list()?
                .iter()
                .map(|r| volumes.info(r))
                .collect::<Result<Vec<_>, _>>()?;
            match f.format {
                Format::Json => output::json(&infos)?,
                Format::Text => {
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
                infos.push(volumes.info(&volumes.get(&name(n)?)?)?);
            }
            output::json(&infos)?;
        }
        VolumeCommand::Rm(a) => {
            let mut failed = None;
            for n in &a.names {
                let n = name(n)?;
                match volumes.remove(&n, a.force) {
                    Ok(_) => {
                        let what = if a.force {
                            "removed (forced)"
                        } else {
                            "removed"
                        };
                        audit(&home, "volume.remove", n.as_str(), Outcome::Success, what)?;
                        output::line(n.as_str())?;
                    }
                    Err(e) => {
                        let outcome = if matches!(e, VolumeError::InUse { .. }) {
                            Outcome::Denied
                        } else {
                            Outcome::Failure
                        };
                        audit(&home, "volume.remove", n.as_str(), outcome, &e.to_string())?;
                        if a.names.len() == 1 {
                            return Err(e.into());
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
        VolumeCommand::Prune => {
            let removed = volumes.prune()?;
            for n in &removed {
                audit(
                    &home,
                    "volume.remove",
                    n.as_str(),
                    Outcome::Success,
                    "pruned (unused)",
                )?;
                output::line(n.as_str())?;
            }
            audit(
                &home,
                "volume.prune",
                "",
                Outcome::Success,
                &format!("removed {} unused volume(s)", removed.len()),
            )?;
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
