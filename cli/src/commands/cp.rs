//! `a3s-box cp BOX:PATH HOSTPATH` and `a3s-box cp HOSTPATH BOX:PATH` (issue 9).

use anyhow::Context;
use clap::Args;

use a3s_runtime::audit::{AuditLog, Event, Outcome};
use a3s_runtime::boxes::{BoxRecord, Boxes};
use a3s_runtime::copy::{self, CopyError, CpEndpoint};
use a3s_runtime::A3sHome;

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
    let boxes = Boxes::open(&home);
    match (CpEndpoint::parse(&a.src), CpEndpoint::parse(&a.dest)) {
        (CpEndpoint::Box { key, path }, CpEndpoint::Host(dest)) => {
            let rec = boxes.find(&key)?;
            let result = copy::copy_out(&boxes, &rec, &path, &dest);
            record(
                &home,
                &rec,
                "box.cp_out",
                &format!("{path} -> {}", dest.display()),
                &result,
            )?;
            let placed = result?;
            output::line(&placed.display().to_string())?;
        }
        (CpEndpoint::Host(src), CpEndpoint::Box { key, path }) => {
            let rec = boxes.find(&key)?;
            if std::fs::symlink_metadata(&src).is_err() {
                return Err(usage_error(anyhow::anyhow!(
                    "{}: no such file or directory",
                    src.display()
                )));
            }
            let result = copy::copy_in(&boxes, &rec, &src, &path);
            record(
                &home,
                &rec,
                "box.cp_in",
                &format!("{} -> {path}", src.display()),
                &result,
            )?;
            result?;
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

/// Audits a copy (refusals as `denied`) before it is reported.
fn record<T>(
    home: &A3sHome,
    rec: &BoxRecord,
    action: &str,
    what: &str,
    result: &Result<T, CopyError>,
) -> anyhow::Result<()> {
    let (outcome, message) = match result {
        Ok(_) => (Outcome::Success, what.to_owned()),
        Err(
            e @ (CopyError::RefusedInTee(_)
            | CopyError::ReadOnly { .. }
            | CopyError::NotPersistent { .. }),
        ) => (Outcome::Denied, format!("{what}: {e}")),
        Err(e) => (Outcome::Failure, format!("{what}: {e}")),
    };
    let event = Event::new(action, outcome, message)
        .with_box(rec.id.as_str())
        .with("name", rec.name.as_str())
        .with("state", rec.state.name());
    AuditLog::open(home.audit())
        .record(&event)
        .context("writing the audit event")?;
    Ok(())
}
