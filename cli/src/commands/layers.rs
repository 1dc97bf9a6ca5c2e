//! `diff`, `export`, `commit` and `snapshot`: a box's writable layer (the engine does the work).

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use a3s_runtime::engine::{CommitRequest, Engine};
use a3s_runtime::A3sHome;

use crate::args::Format;
use crate::commands::EngineResult;
use crate::{output, usage_error, ExitStatus};

/// `diff BOX`.
#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The box (name or id).
    pub(crate) box_name: String,
}

/// `export BOX [-o FILE]`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The box (name or id).
    pub(crate) box_name: String,
    /// Write to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

/// `commit BOX [REPO[:TAG]]`.
#[derive(Debug, Args)]
pub(crate) struct CommitArgs {
    /// The box (name or id).
    pub(crate) box_name: String,
    /// Name of the new image.
    pub(crate) reference: Option<String>,
    /// Commit message (the new history entry's comment).
    #[arg(short, long)]
    pub(crate) message: Option<String>,
    /// Author (e.g. "Jane Doe <jane@example.com>").
    #[arg(short, long)]
    pub(crate) author: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL); repeatable.
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub(crate) changes: Vec<String>,
    /// Stop the box's processes while its changes are read (Docker's default; --pause=false
    /// reads them while the workload runs on).
    #[arg(
        short,
        long,
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub(crate) pause: bool,
}

/// `snapshot create|ls|restore|rm`.
#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Copy a stopped box's writable layer as a snapshot (default name: the time).
    Create {
        /// The box (name or id).
        box_name: String,
        /// Snapshot name.
        name: Option<String>,
    },
    /// List a box's snapshots.
    #[command(alias = "list")]
    Ls {
        /// The box (name or id).
        box_name: String,
        #[command(flatten)]
        format: crate::args::FormatArgs,
    },
    /// Put a stopped box's writable layer back as it was in a snapshot.
    Restore {
        /// The box (name or id).
        box_name: String,
        /// Snapshot name.
        name: String,
    },
    /// Remove a snapshot.
    #[command(alias = "remove")]
    Rm {
        /// The box (name or id).
        box_name: String,
        /// Snapshot name.
        name: String,
    },
}

fn engine() -> anyhow::Result<Engine> {
    Ok(Engine::open(&A3sHome::from_env()?))
}

pub(crate) fn diff(a: &DiffArgs) -> anyhow::Result<ExitStatus> {
    for c in engine()?.diff(&a.box_name).engine()? {
        output::line(&c.to_string())?;
    }
    Ok(ExitStatus::Success)
}

pub(crate) fn export(a: &ExportArgs) -> anyhow::Result<ExitStatus> {
    let engine = engine()?;
    match &a.output {
        Some(path) => {
            // Beside the target, then a rename: a failed export leaves no partial file.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            engine.export(&a.box_name, tmp.as_file_mut()).engine()?;
            tmp.as_file().sync_all()?;
            // An ordinary file, as `docker export -o` writes it (0666 less the umask).
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(
                    crate::commands::image::local::ordinary_file_mode(),
                ))?;
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                return Err(usage_error(anyhow::anyhow!(
                    "refusing to write a tarball to a terminal: use -o FILE or redirect stdout"
                )));
            }
            engine
                .export(&a.box_name, &mut std::io::stdout().lock())
                .engine()?;
        }
    }
    Ok(ExitStatus::Success)
}

pub(crate) fn commit(a: &CommitArgs) -> anyhow::Result<ExitStatus> {
    let reference = a
        .reference
        .as_deref()
        .map(crate::commands::image::parse_ref)
        .transpose()?;
    let changes = a
        .changes
        .iter()
        .map(|c| a3s_build::ConfigChange::parse(c).map_err(|e| usage_error(e.into())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let edit = |config: &mut serde_json::Value| changes.iter().try_for_each(|c| c.apply(config));
    let req = CommitRequest {
        reference,
        message: a.message.clone(),
        author: a.author.clone(),
        edit_config: (!changes.is_empty()).then_some(&edit as _),
        pause: a.pause,
    };
    let digest = engine()?.commit(&a.box_name, &req).engine()?;
    output::line(&digest.to_string())?;
    Ok(ExitStatus::Success)
}

pub(crate) fn snapshot(cmd: &SnapshotCommand) -> anyhow::Result<ExitStatus> {
    let engine = engine()?;
    match cmd {
        SnapshotCommand::Create { box_name, name } => {
            let s = engine.snapshot_create(box_name, name.as_deref()).engine()?;
            output::line(&s.name)?;
        }
        SnapshotCommand::Ls { box_name, format } => {
            let list = engine.snapshot_list(box_name).engine()?;
            match format.format {
                Format::Json => output::json(&list)?,
                Format::Text => {
                    let width = list.iter().map(|s| s.name.len()).max().unwrap_or(0).max(4);
                    output::line(&format!("{:<width$}  {:<25}  SIZE", "NAME", "CREATED"))?;
                    for s in &list {
                        output::line(&format!(
                            "{:<width$}  {:<25}  {}",
                            s.name,
                            s.created,
                            output::human(s.size_bytes)
                        ))?;
                    }
                }
            }
        }
        SnapshotCommand::Restore { box_name, name } => {
            engine.snapshot_restore(box_name, name).engine()?;
        }
        SnapshotCommand::Rm { box_name, name } => {
            engine.snapshot_remove(box_name, name).engine()?;
            output::line(name)?;
        }
    }
    Ok(ExitStatus::Success)
}

/// Hints of layer errors.
pub(crate) fn hint(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    e.downcast_ref::<a3s_runtime::layers::LayersError>()
        .and_then(a3s_runtime::layers::LayersError::hint)
}
