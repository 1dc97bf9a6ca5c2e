//! `a3s-box audit` and `a3s-box audit verify`.

pub(crate) mod args;

use std::path::{Path, PathBuf};

use a3s_runtime::audit::{
    read_checkpoint, AuditLog, CheckpointError, CheckpointKey, Filter, Outcome, TimeBound,
};
use a3s_runtime::A3sHome;
use anyhow::Context;

use self::args::{AuditArgs, AuditCommand, QueryArgs};
use crate::args::{Format, FormatArgs};
use crate::{output, usage_error, ExitStatus};

pub(crate) fn run(args: AuditArgs) -> anyhow::Result<ExitStatus> {
    let home = A3sHome::from_env()?;
    let engine = a3s_runtime::engine::Engine::open(&home);
    let log = engine.audit_log();
    match args.command {
        Some(AuditCommand::Verify(args)) => match &args.checkpoint {
            Some(file) => verify_checkpoint(log, &home, file, &args.format),
            None => verify(log, &args.format),
        },
        Some(AuditCommand::Checkpoint) => checkpoint(log, &home),
        None => query(log, &args.query),
    }
}

/// `--box` takes a name or an id (prefix): a name of an existing box becomes its id, anything
/// else (a removed box's id) is matched as an id prefix.
fn box_id_of(key: &str) -> String {
    a3s_runtime::A3sHome::from_env()
        .ok()
        .and_then(|home| a3s_runtime::engine::Engine::open(&home).inspect(key).ok())
        .map_or_else(|| key.to_owned(), |rec| rec.id.to_string())
}

fn query(log: &AuditLog, args: &QueryArgs) -> anyhow::Result<ExitStatus> {
    let now = time::OffsetDateTime::now_utc();
    let bound = |t: &Option<String>| {
        t.as_deref()
            .map(|t| TimeBound::parse(t, now))
            .transpose()
            .map_err(|e| usage_error(e.into()))
    };
    let filter = Filter {
        action: args.action.clone(),
        box_id: args.box_id.as_deref().map(box_id_of),
        outcome: args
            .outcome
            .as_deref()
            .map(str::parse::<Outcome>)
            .transpose()
            .map_err(|e| usage_error(e.into()))?,
        since: bound(&args.since)?,
        until: bound(&args.until)?,
        last: args.last,
    };
    let entries = log.query(&filter).context("reading the audit log")?;
    match args.format.format {
        Format::Json => output::json(&entries)?,
        Format::Text => {
            for e in &entries {
                let box_id = e
                    .box_id
                    .as_deref()
                    .map(|b| b.get(..12).unwrap_or(b))
                    .unwrap_or("-");
                output::line(&format!(
                    "{seq:>6}  {time}  {outcome:<7}  {action:<18}  {box_id:<12}  {message}",
                    seq = e.seq,
                    time = e.time,
                    outcome = e.outcome.as_str(),
                    action = e.action,
                    message = e.message,
                ))?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

#[derive(serde::Serialize)]
struct VerifyView {
    intact: bool,
    entries: Option<u64>,
    files: Option<usize>,
    last_seq: Option<u64>,
    error: Option<String>,
}

fn verify(log: &AuditLog, format: &FormatArgs) -> anyhow::Result<ExitStatus> {
    let result = log.verify();
    if let Err(a3s_runtime::audit::ChainError::Audit(e)) = &result {
        // Unreadable files are a failure of ours, not a verdict.
        return Err(anyhow::anyhow!("{e:#}")).context("reading the audit log");
    }
    let view = match &result {
        Ok(s) => VerifyView {
            intact: true,
            entries: Some(s.entries),
            files: Some(s.files),
            last_seq: Some(s.last_seq),
            error: None,
        },
        Err(e) => VerifyView {
            intact: false,
            entries: None,
            files: None,
            last_seq: None,
            error: Some(e.to_string()),
        },
    };
    match format.format {
        Format::Json => output::json(&view)?,
        Format::Text => match &result {
            Ok(s) => output::line(&format!(
                "audit chain intact: {} entries in {} file(s), last seq {}",
                s.entries, s.files, s.last_seq
            ))?,
            Err(e) => eprintln!("audit chain BROKEN: {e}"),
        },
    }
    Ok(if result.is_ok() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// The key that signs this home's checkpoints (0600, beside other credentials).
fn checkpoint_key_path(home: &A3sHome) -> PathBuf {
    home.root().join("auth/audit-checkpoint.key")
}

fn checkpoint(log: &AuditLog, home: &A3sHome) -> anyhow::Result<ExitStatus> {
    let key = CheckpointKey::load(&checkpoint_key_path(home), true)?;
    let note = log
        .checkpoint(&key)
        .context("checkpointing the audit log")?;
    output::line(note.trim_end())?;
    Ok(ExitStatus::Success)
}

#[derive(serde::Serialize)]
struct CheckpointView {
    intact: bool,
    checkpoint_size: Option<u64>,
    entries: Option<u64>,
    error: Option<String>,
}

fn verify_checkpoint(
    log: &AuditLog,
    home: &A3sHome,
    file: &Path,
    format: &FormatArgs,
) -> anyhow::Result<ExitStatus> {
    let note = read_checkpoint(file).map_err(|e| usage_error(e.into()))?;
    let key = CheckpointKey::load(&checkpoint_key_path(home), false)?;
    let result = log.verify_checkpoint(&note, &key);
    if let Err(CheckpointError::Audit(e)) = &result {
        return Err(anyhow::anyhow!("{e:#}")).context("reading the audit log");
    }
    let view = match &result {
        Ok(s) => CheckpointView {
            intact: true,
            checkpoint_size: Some(s.size),
            entries: Some(s.entries),
            error: None,
        },
        Err(e) => CheckpointView {
            intact: false,
            checkpoint_size: None,
            entries: None,
            error: Some(e.to_string()),
        },
    };
    match format.format {
        Format::Json => output::json(&view)?,
        Format::Text => match &result {
            Ok(s) => output::line(&format!(
                "audit log holds all {} entries of the checkpoint ({} entries now), chain intact",
                s.size, s.entries
            ))?,
            Err(e) => eprintln!("audit log BROKEN against the checkpoint: {e}"),
        },
    }
    Ok(if result.is_ok() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}
