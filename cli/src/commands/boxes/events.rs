//! `events`: Docker's event stream (text lines or `--format json`, one object per line).

use std::io::Write;

use a3s_runtime::boxes::events::{BoxEvent, EventFilter};
use a3s_runtime::engine::Engine;

use super::args::EventsArgs;
use crate::args::Format;
use crate::commands::EngineResult;
use crate::{usage_error, ExitStatus};

pub(super) fn events(engine: &Engine, a: &EventsArgs) -> anyhow::Result<ExitStatus> {
    let mut filter = EventFilter::parse(&a.filter).map_err(|e| usage_error(e.into()))?;
    let now = time::OffsetDateTime::now_utc();
    let at = |flag: &str, v: &Option<String>| -> anyhow::Result<_> {
        v.as_deref()
            .map(|t| a3s_runtime::boxes::logs::parse_log_time(t, now))
            .transpose()
            .map_err(|e| usage_error(anyhow::Error::new(e).context(flag.to_owned())))
    };
    filter.since = at("--since", &a.since)?;
    filter.until = at("--until", &a.until)?;
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    // Ctrl-C ends the process (Docker's behaviour); a closed pipe ends the stream.
    engine
        .events(&filter, &|| false, &mut |e| {
            let line = match a.format.format {
                Format::Json => serde_json::to_string(e).map_err(std::io::Error::from),
                Format::Text => Ok(text_line(e)),
            };
            match line.and_then(|l| writeln!(out, "{l}").and_then(|()| out.flush())) {
                Ok(()) => true,
                Err(err) => {
                    failed = Some(err);
                    false
                }
            }
        })
        .engine()?;
    match failed {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitStatus::Success),
    }
}

/// Docker's text form: `TIME TYPE ACTION ID (k=v, ...)`, time in RFC 3339 with nanoseconds.
fn text_line(e: &BoxEvent) -> String {
    let at = e.at();
    let time = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond()
    );
    let attrs: Vec<String> = e
        .actor
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{time} {} {} {} ({})",
        e.kind,
        e.action,
        e.actor.id,
        attrs.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_look_like_dockers() {
        let e: BoxEvent = serde_json::from_str(
            r#"{"status":"die","id":"ab12","from":"busybox","Type":"container","Action":"die",
            "Actor":{"ID":"ab12","Attributes":{"exitCode":"3","image":"busybox","name":"web"}},
            "scope":"local","time":1700000000,"timeNano":1700000000000000123}"#,
        )
        .unwrap();
        assert_eq!(
            text_line(&e),
            "2023-11-14T22:13:20.000000123Z container die ab12 (exitCode=3, image=busybox, name=web)"
        );
    }
}
