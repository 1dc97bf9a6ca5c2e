//! `--format` of the list commands (`ps`, `images`, `network ls`, `volume ls`), as Docker takes
//! it: `table` (the default columns), `json` (one Docker-shaped object per line), or a Go
//! template evaluated over that object (`'{{.Names}}'`); `table TEMPLATE` aligns the
//! template's tab-separated cells under a header, as Docker's tabwriter does.

use std::io::Write;
use std::str::FromStr;

use clap::Args;
use serde_json::Value;

use crate::template;

/// How a list command prints its rows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum ListFormat {
    /// The command's own columns.
    #[default]
    Table,
    /// One Docker-shaped JSON object per line.
    Json,
    /// A Go template per row; `table` when it came after `table `.
    Template { text: String, table: bool },
}

impl FromStr for ListFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" | "table" | "text" => return Ok(Self::Table),
            "json" => return Ok(Self::Json),
            _ => {}
        }
        let (body, table) = match s.trim_start().strip_prefix("table ") {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        if !body.contains("{{") {
            return Err(format!(
                "{s:?} is not a format: use table, json or a Go template such as '{{{{.Names}}}}'"
            ));
        }
        // Docker turns the two-character escapes into the characters (`table {{.A}}\t{{.B}}`).
        let text = body.trim().replace("\\t", "\t").replace("\\n", "\n");
        Ok(Self::Template { text, table })
    }
}

/// The `--format` flag of a list command.
#[derive(Debug, Args)]
pub(crate) struct ListFormatArgs {
    /// Output format: table, json, or a Go template over the JSON row ('{{.Names}}';
    /// 'table {{.A}}\t{{.B}}' for aligned columns).
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub(crate) format: ListFormat,
}

/// Prints `rows` (Docker-shaped objects) as `format` says; nothing for [`ListFormat::Table`],
/// whose columns each command prints itself.
///
/// # Errors
/// See [`print_template`].
pub(crate) fn print_rows(
    format: &ListFormat,
    rows: &[Value],
    headers: &[(&str, &str)],
) -> anyhow::Result<()> {
    match format {
        ListFormat::Table => Ok(()),
        ListFormat::Json => {
            let mut out = std::io::stdout().lock();
            for row in rows {
                writeln!(out, "{}", serde_json::to_string(row)?)?;
            }
            Ok(())
        }
        ListFormat::Template { text, table } => print_template(text, *table, rows, headers),
    }
}

/// Prints `rows` (Docker-shaped objects) with `template`; under `table`, a header row names
/// each field (`headers` first, else the field's name in capitals) and cells are aligned.
///
/// # Errors
/// A template outside the supported subset (a usage error for the caller), or a write error.
pub(crate) fn print_template(
    text: &str,
    table: bool,
    rows: &[Value],
    headers: &[(&str, &str)],
) -> anyhow::Result<()> {
    let render = |v: &Value| {
        template::render(text, v).map_err(|e| crate::usage_error(anyhow::Error::new(e)))
    };
    let mut lines = Vec::with_capacity(rows.len() + 1);
    if table {
        lines.push(render(&header_row(text, headers))?);
    }
    for row in rows {
        lines.push(render(row)?);
    }
    let mut out = std::io::stdout().lock();
    if table {
        for line in aligned(&lines) {
            writeln!(out, "{line}")?;
        }
    } else {
        for line in &lines {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// An object giving each field the template names its header text.
fn header_row(text: &str, headers: &[(&str, &str)]) -> Value {
    let mut obj = serde_json::Map::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        for word in after[..end].split_whitespace() {
            if let Some(field) = word.trim_matches('-').strip_prefix('.') {
                let field = field.split('.').next().unwrap_or(field);
                let header = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(field))
                    .map_or_else(|| words_in_capitals(field), |(_, h)| (*h).to_owned());
                obj.insert(field.to_owned(), Value::String(header));
            }
        }
        rest = &after[end..];
    }
    Value::Object(obj)
}

/// `RunningFor` → `RUNNING FOR`.
fn words_in_capitals(field: &str) -> String {
    let mut out = String::new();
    for (i, c) in field.chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() && !out.ends_with(' ') {
            out.push(' ');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Tab-separated cells aligned in columns: each column as wide as its widest cell plus three
/// spaces and at least ten, the last cell of a line unpadded (Docker's tabwriter settings).
fn aligned(lines: &[String]) -> Vec<String> {
    let cells: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &cells {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            let w = (cell.chars().count() + 3).max(10);
            match widths.get_mut(i) {
                Some(have) => *have = (*have).max(w),
                None => widths.push(w),
            }
        }
    }
    cells
        .iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths.get(i).copied().unwrap_or(0);
                    line.extend(std::iter::repeat_n(
                        ' ',
                        pad.saturating_sub(cell.chars().count()),
                    ));
                }
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_docker_format_values() {
        assert_eq!("table".parse(), Ok(ListFormat::Table));
        assert_eq!("text".parse(), Ok(ListFormat::Table));
        assert_eq!("json".parse(), Ok(ListFormat::Json));
        assert_eq!(
            "{{.Names}}".parse(),
            Ok(ListFormat::Template {
                text: "{{.Names}}".into(),
                table: false
            })
        );
        assert_eq!(
            r"table {{.ID}}\t{{.Names}}".parse(),
            Ok(ListFormat::Template {
                text: "{{.ID}}\t{{.Names}}".into(),
                table: true
            })
        );
        let err = "yaml".parse::<ListFormat>().unwrap_err();
        assert!(err.contains("use table, json or a Go template"), "{err}");
    }

    #[test]
    fn table_templates_get_a_header_and_aligned_columns() {
        let header = header_row("{{.ID}}\t{{.RunningFor}}\t{{.Names}}", &[("ID", "BOX ID")]);
        assert_eq!(
            header,
            json!({"ID": "BOX ID", "RunningFor": "RUNNING FOR", "Names": "NAMES"})
        );
        let lines = aligned(&[
            "BOX ID\tNAMES".to_owned(),
            "0123456789abcdef\tweb".to_owned(),
        ]);
        assert_eq!(
            lines,
            vec![
                "BOX ID             NAMES".to_owned(),
                "0123456789abcdef   web".to_owned()
            ]
        );
    }
}
