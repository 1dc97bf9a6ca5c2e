//! `a3s-box system df|prune` and `a3s-box container prune`: front ends over
//! `a3s_runtime::disk`. Every removal is audited as the matching single command (`rm`, `rmi`,
//! `volume rm`, `network rm`) audits it.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use clap::{Args, Subcommand};

use a3s_image::store::DiskUsage;
use a3s_runtime::audit::{AuditLog, Event, Outcome};
use a3s_runtime::boxes::Boxes;
use a3s_runtime::disk::{self, DiskReport};
use a3s_runtime::network::{NetError, Networks};
use a3s_runtime::A3sHome;

use crate::args::{Format, FormatArgs};
use crate::{output, usage_error, ExitStatus};

#[derive(Debug, Subcommand)]
pub(crate) enum SystemCommand {
    /// Show disk usage: images, boxes (writable layers, logs), volumes, caches; allocated
    /// bytes, as `du` counts them.
    Df(DfArgs),
    /// Remove stopped boxes, unused networks, dangling images, unused caches (and with
    /// --volumes, unused volumes).
    Prune(SystemPruneArgs),
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
    /// Also remove volumes no box mounts.
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
    }
}

pub(crate) fn run_container(cmd: ContainerCommand) -> anyhow::Result<ExitStatus> {
    let home = A3sHome::from_env().map_err(|e| usage_error(e.into()))?;
    match cmd {
        ContainerCommand::Prune(a) => {
            confirm(a.force, &["all stopped boxes"])?;
            let freed = prune_boxes(&home)?;
            output::line(&format!(
                "Total reclaimed space: {}",
                human(freed.allocated)
            ))?;
            Ok(ExitStatus::Success)
        }
    }
}

/// Sizes in binary units, like `images`.
pub(crate) fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1}GiB", b / 1024.0 / 1024.0 / 1024.0)
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1}MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.1}KiB", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

fn percent(part: u64, whole: u64) -> String {
    format!("{}%", (part * 100).checked_div(whole).unwrap_or(0))
}

fn df(home: &A3sHome, a: &DfArgs) -> anyhow::Result<ExitStatus> {
    let r = disk::df(home)?;
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
            human(c.size.allocated),
            human(c.reclaimable.allocated),
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
            human(i.unpacked_bytes),
            human(i.shared.allocated),
            human(i.disk.allocated),
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
            human(b.writable.allocated),
            human(b.size.allocated)
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
            human(v.size.allocated)
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
            human(c.size.allocated),
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

fn audit(home: &A3sHome, event: Event) -> anyhow::Result<()> {
    AuditLog::open(home.audit())
        .record(&event)
        .context("writing the audit event")?;
    Ok(())
}

/// Removes every box that is not running through the runtime's remove path (network release
/// included), auditing each as `rm` does.
fn prune_boxes(home: &A3sHome) -> anyhow::Result<DiskUsage> {
    let boxes = Boxes::open(home);
    let mut freed = DiskUsage::default();
    let mut removed = Vec::new();
    for rec in boxes.list()? {
        if rec.state.is_active() {
            continue;
        }
        let size = disk::box_usage(home, &rec)?;
        let rec = match boxes.remove(rec.id.as_str(), false) {
            Ok(r) => r,
            // Started meanwhile: no longer stopped.
            Err(a3s_runtime::boxes::BoxError::StillRunning(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        audit(
            home,
            Event::new("box.remove", Outcome::Success, "removed (pruned)")
                .with_box(rec.id.as_str())
                .with("name", rec.name.as_str())
                .with("image", rec.image_digest.as_str()),
        )?;
        freed += size;
        removed.push(rec.id.to_string());
    }
    if !removed.is_empty() {
        output::line("Deleted Boxes:")?;
        for id in &removed {
            output::line(id)?;
        }
        output::line("")?;
    }
    Ok(freed)
}

/// Removes every network no box is attached to, auditing each as `network rm` does.
fn prune_networks(home: &A3sHome) -> anyhow::Result<()> {
    let nets = Networks::open(home);
    let mut removed = Vec::new();
    for n in nets.list()? {
        if !n.endpoints.is_empty() {
            continue;
        }
        match nets.remove(&n.name, false) {
            Ok(_) => {
                audit(
                    home,
                    Event::new("network.remove", Outcome::Success, "removed (pruned)")
                        .with("network", n.name.as_str()),
                )?;
                removed.push(n.name);
            }
            Err(NetError::InUse { .. }) => {}
            Err(e) => {
                audit(
                    home,
                    Event::new("network.remove", Outcome::Failure, e.to_string())
                        .with("network", n.name.as_str()),
                )?;
                return Err(e.into());
            }
        }
    }
    if !removed.is_empty() {
        output::line("Deleted Networks:")?;
        for n in &removed {
            output::line(n)?;
        }
        output::line("")?;
    }
    Ok(())
}

/// Image prune (dangling, or with `all` every image no box uses) and the legacy caches of the
/// removed images, audited as `rmi` does; prints what went.
pub(crate) fn prune_images(home: &A3sHome, all: bool) -> anyhow::Result<disk::ImagePrune> {
    let p = disk::prune_images(home, all)?;
    for r in &p.untagged {
        audit(
            home,
            Event::new("image.remove", Outcome::Success, "untagged (pruned)")
                .with("reference", r.to_string()),
        )?;
    }
    audit(
        home,
        Event::new(
            "image.prune",
            Outcome::Success,
            format!(
                "deleted {} blobs, {} image filesystems, {} cache entries",
                p.store.blobs.len(),
                p.store.rootfs.len(),
                p.cache.removed.len()
            ),
        )
        .with(
            "images",
            p.store
                .rootfs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )
        .with("freed_bytes", p.freed().allocated),
    )?;
    Ok(p)
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
        what.push("all volumes not used by at least one box");
    }
    what.push(
        "unused cache entries (per-image initrds and archives of older versions, stale temp files)",
    );
    confirm(a.force, &what)?;

    let mut freed = prune_boxes(home)?;
    prune_networks(home)?;
    let images = prune_images(home, a.all)?;
    if !images.untagged.is_empty() || !images.store.blobs.is_empty() {
        output::line("Deleted Images:")?;
        for r in &images.untagged {
            output::line(&format!("untagged: {}", r.familiar()))?;
        }
        for d in &images.store.blobs {
            output::line(&format!("deleted: {d}"))?;
        }
        output::line("")?;
    }
    freed += images.freed();
    if a.volumes {
        let removed = disk::prune_volumes(home)?;
        for (n, size) in &removed {
            audit(
                home,
                Event::new("volume.remove", Outcome::Success, "pruned (unused)")
                    .with("volume", n.as_str()),
            )?;
            freed += *size;
        }
        audit(
            home,
            Event::new(
                "volume.prune",
                Outcome::Success,
                format!("removed {} unused volume(s)", removed.len()),
            )
            .with("volume", ""),
        )?;
        if !removed.is_empty() {
            output::line("Deleted Volumes:")?;
            for (n, _) in &removed {
                output::line(n.as_str())?;
            }
            output::line("")?;
        }
    }
    let cache = disk::prune_caches(home)?;
    audit(
        home,
        Event::new(
            "cache.prune",
            Outcome::Success,
            format!("removed {} cache entries", cache.removed.len()),
        )
        .with("removed", cache.removed.clone())
        .with("freed_bytes", cache.freed.allocated),
    )?;
    if !cache.removed.is_empty() {
        output::line("Deleted Cache Entries:")?;
        for p in &cache.removed {
            output::line(p)?;
        }
        output::line("")?;
    }
    freed += cache.freed;
    output::line(&format!(
        "Total reclaimed space: {}",
        human(freed.allocated)
    ))?;
    Ok(ExitStatus::Success)
}

/// The hint of a disk error in a chain.
pub(crate) fn hint(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    cause
        .downcast_ref::<disk::DiskError>()
        .and_then(disk::DiskError::hint)
}
