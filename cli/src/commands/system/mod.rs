//! `a3s-box system df|prune` and `a3s-box container prune`: front ends over the engine's
//! `df`, `system_prune` and `prune_boxes` (which audit every removal as the matching single
//! command does).

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand};

use a3s_runtime::disk::{self, DiskReport};
use a3s_runtime::engine::{ContainerPrune, Engine, SystemPrune, SystemPruneRequest};
use a3s_runtime::A3sHome;

use crate::args::{Format, FormatArgs};
use crate::commands::EngineResult;
use crate::{output, usage_error, ExitStatus};

#[derive(Debug, Subcommand)]
pub(crate) enum SystemCommand {
    /// Show disk usage: images, boxes (writable layers, logs), volumes, caches; allocated
    /// bytes, as `du` counts them.
    Df(DfArgs),
    /// Remove stopped boxes, unused networks, dangling images, unused caches (and with
    /// --volumes, unused volumes).
    Prune(SystemPruneArgs),
    /// After a host reboot: start every box whose restart policy is `always`, and every
    /// `unless-stopped` one that was not stopped with `stop` (run by
    /// contrib/systemd/a3s-box-restart.service).
    Boot,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ContainerCommand {
    /// Remove all stopped boxes.
    Prune(ForceArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DfArgs {
    /// List every image, box, volume and cache entry.
    #[arg(short, long)]
    pub(crate) verbose: bool,
    #[command(flatten)]
    pub(crate) format: FormatArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SystemPruneArgs {
    /// Remove all images no box uses, not just dangling ones.
    #[arg(short, long)]
    pub(crate) all: bool,
    /// Also remove anonymous volumes no box mounts (named ones stay: `volume prune -a`).
    #[arg(long)]
    pub(crate) volumes: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ForceArgs {
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub(crate) force: bool,
}

pub(crate) fn run(cmd: SystemCommand) -> anyhow::Result<ExitStatus> {
    let home = A3sHome::from_env().map_err(|e| usage_error(e.into()))?;
    match cmd {
        SystemCommand::Df(a) => df(&home, &a),
        SystemCommand::Prune(a) => prune(&home, &a),
        SystemCommand::Boot => {
            let mut failed = false;
            for (name, result) in Engine::open(&home).start_after_boot().engine()? {
                match result {
                    Ok(()) => output::line(&name)?,
                    Err(e) => {
                        failed = true;
                        eprintln!("error: {name}: {:#}", crate::commands::engine_error(e));
                    }
                }
            }
            Ok(if failed {
                ExitStatus::Failure
            } else {
                ExitStatus::Success
            })
        }
    }
}

pub(crate) fn run_container(cmd: ContainerCommand) -> anyhow::Result<ExitStatus> {
    let home = A3sHome::from_env().map_err(|e| usage_error(e.into()))?;
    match cmd {
        ContainerCommand::Prune(a) => {
            confirm(a.force, &["all stopped boxes"])?;
            let pruned = Engine::open(&home).prune_boxes().engine()?;
            print_boxes(&pruned)?;
            output::line(&format!(
                "Total reclaimed space: {}",
                crate::output::human(pruned.freed.allocated)
            ))?;
            Ok(ExitStatus::Success)
        }
    }
}

fn percent(part: u64, whole: u64) -> String {
    format!("{}%", (part * 100).checked_div(whole).unwrap_or(0))
}

fn df(home: &A3sHome, a: &DfArgs) -> anyhow::Result<ExitStatus> {
    let r = Engine::open(home).df().engine()?;
    match a.format.format {
        Format::Json => output::json(&r)?,
        Format::Text => print_df(&r, a.verbose)?,
    }
    Ok(ExitStatus::Success)
}

fn print_df(r: &DiskReport, verbose: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<14}  {:>6}  {:>6}  {:>10}  RECLAIMABLE",
        "TYPE", "TOTAL", "ACTIVE", "SIZE"
    )?;
    for (name, c) in [
        ("Images", &r.images),
        ("Containers", &r.containers),
        ("Local Volumes", &r.volumes),
        ("Cache", &r.cache),
    ] {
        writeln!(
            out,
            "{:<14}  {:>6}  {:>6}  {:>10}  {} ({})",
            name,
            c.total,
            c.active,
            crate::output::human(c.size.allocated),
            crate::output::human(c.reclaimable.allocated),
            percent(c.reclaimable.allocated, c.size.allocated)
        )?;
    }
    if !verbose {
        return Ok(());
    }
    writeln!(out, "\nImages space usage:\n")?;
    writeln!(
        out,
        "{:<40}  {:<12}  {:>10}  {:>10}  {:>10}  BOXES",
        "REFERENCE", "DIGEST", "SIZE", "SHARED", "ON DISK"
    )?;
    for i in &r.image_rows {
        let names = if i.references.is_empty() {
            "<none>".to_owned()
        } else {
            i.references.join(",")
        };
        writeln!(
            out,
            "{:<40}  {:<12}  {:>10}  {:>10}  {:>10}  {}",
            names,
            i.digest.get(7..19).unwrap_or(&i.digest),
            crate::output::human(i.unpacked_bytes),
            crate::output::human(i.shared.allocated),
            crate::output::human(i.disk.allocated),
            i.boxes
        )?;
    }
    writeln!(out, "\nBoxes space usage:\n")?;
    writeln!(
        out,
        "{:<12}  {:<20}  {:<24}  {:<8}  {:>10}  {:>10}",
        "BOX ID", "NAME", "IMAGE", "STATE", "WRITABLE", "SIZE"
    )?;
    for b in &r.box_rows {
        writeln!(
            out,
            "{:<12}  {:<20}  {:<24}  {:<8}  {:>10}  {:>10}",
            b.id.get(..12).unwrap_or(&b.id),
            b.name,
            b.image,
            b.state,
            crate::output::human(b.writable.allocated),
            crate::output::human(b.size.allocated)
        )?;
    }
    writeln!(out, "\nLocal Volumes space usage:\n")?;
    writeln!(out, "{:<32}  {:>5}  {:>10}", "VOLUME NAME", "BOXES", "SIZE")?;
    for v in &r.volume_rows {
        writeln!(
            out,
            "{:<32}  {:>5}  {:>10}",
            v.name,
            v.boxes,
            crate::output::human(v.size.allocated)
        )?;
    }
    writeln!(out, "\nCache usage:\n")?;
    writeln!(
        out,
        "{:<60}  {:<14}  {:>10}  RECLAIMABLE",
        "PATH", "KIND", "SIZE"
    )?;
    for c in &r.cache_rows {
        writeln!(
            out,
            "{:<60}  {:<14}  {:>10}  {}",
            c.path,
            c.kind,
            crate::output::human(c.size.allocated),
            c.reclaimable
        )?;
    }
    Ok(())
}

/// Docker's confirmation: on a terminal ask, elsewhere refuse unless `-f`.
fn confirm(force: bool, what: &[&str]) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(usage_error(anyhow::anyhow!(
            "refusing to remove without confirmation: no terminal to ask on (pass -f to remove without asking)"
        )));
    }
    let mut err = std::io::stderr().lock();
    writeln!(err, "WARNING! This will remove:")?;
    for w in what {
        writeln!(err, "  - {w}")?;
    }
    write!(err, "\nAre you sure you want to continue? [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        Ok(())
    } else {
        Err(anyhow::Error::new(crate::ExitCodeError {
            code: 1,
            error: anyhow::anyhow!("nothing removed"),
        }))
    }
}

/// One line on stdout (the engine's stage callback wants an `io::Result`).
fn line(text: &str) -> std::io::Result<()> {
    writeln!(std::io::stdout().lock(), "{text}")
}

fn print_boxes(pruned: &ContainerPrune) -> std::io::Result<()> {
    if !pruned.removed.is_empty() {
        line("Deleted Boxes:")?;
        for id in &pruned.removed {
            line(id)?;
        }
        line("")?;
    }
    Ok(())
}

/// Prints one finished stage of `system prune`.
fn print_stage(stage: SystemPrune<'_>) -> std::io::Result<()> {
    match stage {
        SystemPrune::Boxes(b) => print_boxes(b)?,
        SystemPrune::Networks(removed) => {
            if !removed.is_empty() {
                line("Deleted Networks:")?;
                for n in removed {
                    line(n)?;
                }
                line("")?;
            }
        }
        SystemPrune::Images(images) => {
            if !images.untagged.is_empty() || !images.store.blobs.is_empty() {
                line("Deleted Images:")?;
                for r in &images.untagged {
                    line(&format!("untagged: {}", r.familiar()))?;
                }
                for d in &images.store.blobs {
                    line(&format!("deleted: {d}"))?;
                }
                line("")?;
            }
        }
        SystemPrune::Volumes(removed) => {
            if !removed.is_empty() {
                line("Deleted Volumes:")?;
                for (n, _) in removed {
                    line(n.as_str())?;
                }
                line("")?;
            }
        }
        SystemPrune::Caches(cache) => {
            if !cache.removed.is_empty() {
                line("Deleted Cache Entries:")?;
                for p in &cache.removed {
                    line(p)?;
                }
                line("")?;
            }
        }
    }
    Ok(())
}

fn prune(home: &A3sHome, a: &SystemPruneArgs) -> anyhow::Result<ExitStatus> {
    let mut what = vec![
        "all stopped boxes",
        "all networks not used by at least one box",
    ];
    what.push(if a.all {
        "all images without at least one box associated to them"
    } else {
        "all dangling images"
    });
    if a.volumes {
        what.push("all anonymous volumes not used by at least one box");
    }
    what.push(
        "unused cache entries (per-image initrds and archives of older versions, stale temp files)",
    );
    confirm(a.force, &what)?;

    let req = SystemPruneRequest {
        all_images: a.all,
        volumes: a.volumes,
    };
    let freed = Engine::open(home)
        .system_prune(req, &mut print_stage)
        .engine()?;
    output::line(&format!(
        "Total reclaimed space: {}",
        crate::output::human(freed.allocated)
    ))?;
    Ok(ExitStatus::Success)
}

/// The hint of a disk error in a chain.
pub(crate) fn hint(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    cause
        .downcast_ref::<disk::DiskError>()
        .and_then(disk::DiskError::hint)
}
