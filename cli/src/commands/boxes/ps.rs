//! `ps`: Docker's listing, filters and table.

use std::io::Write;
use std::time::Duration;

use a3s_runtime::boxes::filter::BoxFilter;
use a3s_runtime::boxes::{BoxRecord, BoxState};
use a3s_runtime::engine::Engine;

use super::args::PsArgs;
use super::health;
use crate::commands::EngineResult;
use crate::docker;
use crate::list_format::{print_rows, ListFormat};
use crate::{output, usage_error, ExitStatus};

/// Docker truncates the command column to this many characters (`--no-trunc` keeps it whole).
const COMMAND_WIDTH: usize = 20;

pub(super) fn ps(engine: &Engine, a: &PsArgs) -> anyhow::Result<ExitStatus> {
    let filter = BoxFilter::parse(&a.filter).map_err(|e| usage_error(e.into()))?;
    let last = if a.latest { Some(1) } else { a.last };
    let mut recs = engine
        .list_filtered(a.all || last.is_some(), &filter)
        .engine()?;
    if let Some(n) = last {
        // Docker lists newest first; keep the newest `n`.
        recs.reverse();
        recs.truncate(n);
        recs.reverse();
    }
    if a.quiet {
        for r in &recs {
            output::line(if a.no_trunc {
                r.id.as_str()
            } else {
                r.id.short()
            })?;
        }
        return Ok(ExitStatus::Success);
    }
    let mut sizes = Vec::with_capacity(recs.len());
    for r in &recs {
        sizes.push(if a.size {
            Some(engine.box_size(r).engine()?.allocated)
        } else {
            None
        });
    }
    match &a.format.format {
        // Docker's `--format json`: one object per line, Docker's keys, string values; a
        // template is evaluated over the same object.
        ListFormat::Json | ListFormat::Template { .. } => {
            let mut rows = Vec::with_capacity(recs.len());
            for (r, size) in recs.iter().zip(&sizes) {
                let att = engine.attachments(r).engine()?;
                rows.push(docker::ps_row(
                    r,
                    &att,
                    command_column(&r.spec.process.argv, a.no_trunc),
                    status_text(r),
                    *size,
                    a.no_trunc,
                ));
            }
            print_rows(&a.format.format, &rows, &[("ID", "BOX ID")])?;
        }
        ListFormat::Table => {
            let mut header = vec!["BOX ID", "NAME", "IMAGE", "COMMAND", "STATUS", "PORTS"];
            if a.size {
                header.push("SIZE");
            }
            let mut rows: Vec<Vec<String>> = Vec::with_capacity(recs.len());
            for (r, size) in recs.iter().zip(&sizes) {
                let id = if a.no_trunc {
                    r.id.as_str()
                } else {
                    r.id.short()
                };
                let att = engine.attachments(r).engine()?;
                let mut row = vec![
                    id.to_owned(),
                    r.name.clone(),
                    r.image.clone(),
                    command_column(&r.spec.process.argv, a.no_trunc),
                    status_text(r),
                    docker::ports_text(&att),
                ];
                if let Some(b) = size {
                    row.push(output::human(*b));
                }
                rows.push(row);
            }
            table(&header, &rows)?;
        }
    }
    Ok(ExitStatus::Success)
}

/// Columns as wide as their widest cell, two spaces apart (the last one unpadded).
fn table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let mut line = |cells: Vec<&str>| -> std::io::Result<()> {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            text.push_str(cell);
            if i < last {
                let pad = w.saturating_sub(cell.chars().count()) + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(header.to_vec())?;
    for row in rows {
        line(row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

/// The command as Docker shows it: quoted, control characters escaped (a newline would break
/// the table), cut at [`COMMAND_WIDTH`] characters with `…` unless `no_trunc`.
fn command_column(argv: &[String], no_trunc: bool) -> String {
    let joined = argv.join(" ");
    let escaped: String = joined.chars().flat_map(char::escape_default).collect();
    // escape_default also escapes quotes and non-ASCII; keep those readable.
    let escaped = escaped.replace("\\\"", "\"").replace("\\'", "'");
    let escaped = unescape_unicode(&escaped);
    let shown = if !no_trunc && escaped.chars().count() > COMMAND_WIDTH {
        let cut: String = escaped.chars().take(COMMAND_WIDTH - 1).collect();
        format!("{cut}…")
    } else {
        escaped
    };
    format!("\"{shown}\"")
}

/// Turns `\u{e9}` escapes back into the (printable) characters they stand for.
fn unescape_unicode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\u{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        match after.find('}').and_then(|end| {
            let c = u32::from_str_radix(&after[..end], 16)
                .ok()
                .and_then(char::from_u32)?;
            (!c.is_control()).then_some((c, end))
        }) {
            Some((c, end)) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("\\u{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

pub(crate) fn status_text(rec: &BoxRecord) -> String {
    match &rec.state {
        BoxState::Created => "Created".into(),
        BoxState::Starting { .. } => "Starting".into(),
        BoxState::Running { .. } if rec.paused => {
            format!("Up {} (Paused)", up_for(rec.started_at.as_deref()))
        }
        BoxState::Running { .. } => format!(
            "Up {}{}",
            up_for(rec.started_at.as_deref()),
            health::suffix(rec.health.as_ref())
        ),
        BoxState::Exited { exit_code, .. } => match rec.finished_at.as_deref() {
            Some(t) => format!("Exited ({exit_code}) {}", docker::ago(t)),
            None => format!("Exited ({exit_code})"),
        },
        BoxState::Restarting { exit_code, .. } => format!("Restarting ({exit_code})"),
        _ => rec.state.name().into(),
    }
}

/// How long ago `started_at` (RFC 3339) was, in Docker's words.
fn up_for(started_at: Option<&str>) -> String {
    let started = started_at.and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    match started {
        Some(t) => {
            let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds();
            health::human_duration(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
        }
        None => "(start time unknown)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn commands_are_quoted_escaped_and_cut_on_characters() {
        assert_eq!(command_column(&argv(&["sleep", "5"]), false), "\"sleep 5\"");
        assert_eq!(
            command_column(&argv(&["sh", "-c", "echo a\nb"]), false),
            "\"sh -c echo a\\nb\""
        );
        // Multi-byte characters are cut whole (byte truncation used to panic here).
        let long = command_column(&argv(&["echo", "ééééééééééééééééééééé"]), false);
        assert_eq!(long.chars().count(), COMMAND_WIDTH + 2);
        assert!(long.ends_with("é…\""), "{long}");
        let whole = command_column(&argv(&["echo", "ééééééééééééééééééééé"]), true);
        assert_eq!(whole, "\"echo ééééééééééééééééééééé\"");
    }
}
