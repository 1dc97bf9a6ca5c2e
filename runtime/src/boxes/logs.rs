//! The workload's output log: `boxes/<id>/output.log`, one JSON object per line.
//!
//! `{"time":"<RFC 3339>","stream":"stdout"|"stderr","data":"<base64>"}`; each record is one line
//! of output (or a partial line that was waiting, such as a prompt). Base64 keeps binary output
//! and multi-byte characters split across reads exact.

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// Which stream a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output (or the terminal, with `-t`).
    Stdout,
    /// Standard error.
    Stderr,
}

/// One log record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// When the monitor received it.
    pub time: String,
    /// Which stream.
    pub stream: Stream,
    /// The bytes, base64.
    pub data: String,
}

impl LogRecord {
    /// The record's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.data)
            .unwrap_or_default()
    }
}

/// Appends output to the log, one record per line.
#[derive(Debug)]
pub struct LogWriter {
    file: std::fs::File,
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (appending) `path`.
    ///
    /// # Errors
    /// i/o.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .into_parts()
            .0;
        Ok(Self {
            file,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Records `data` from `stream`: complete lines become records; a trailing partial line is
    /// written too (it may be a prompt), so nothing waits in memory.
    ///
    /// # Errors
    /// i/o.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let idx = usize::from(stream == Stream::Stderr);
        let mut buf = std::mem::take(&mut self.pending[idx]);
        buf.extend_from_slice(data);
        let mut out = Vec::new();
        for piece in buf.split_inclusive(|b| *b == b'\n') {
            out.extend(record_line(stream, piece));
        }
        self.file.write_all(&out)?;
        Ok(())
    }

    /// Flushes to disk.
    ///
    /// # Errors
    /// i/o.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

fn record_line(stream: Stream, data: &[u8]) -> Vec<u8> {
    let rec = LogRecord {
        time: crate::boxes::state::now_rfc3339(),
        stream,
        data: base64::engine::general_purpose::STANDARD.encode(data),
    };
    let mut line = serde_json::to_vec(&rec).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Reads records from `path` starting at byte `offset`; returns them and the offset after the
/// last complete line (a line still being written is left for the next call).
///
/// # Errors
/// i/o.
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<LogRecord>, u64)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut r = BufReader::new(f);
    let mut records = Vec::new();
    let mut pos = offset;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        pos += n as u64;
        if let Ok(rec) = serde_json::from_slice::<LogRecord>(&line) {
            records.push(rec);
        }
    }
    Ok((records, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_keeps_partials_and_binary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("output.log");
        let mut w = LogWriter::open(&p).unwrap();
        w.write(Stream::Stdout, b"one\ntwo\npro").unwrap();
        w.write(Stream::Stderr, b"\xff\x00err\n").unwrap();
        let (recs, off) = read_from(&p, 0).unwrap();
        let got: Vec<(Stream, Vec<u8>)> = recs.iter().map(|r| (r.stream, r.bytes())).collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, b"one\n".to_vec()),
                (Stream::Stdout, b"two\n".to_vec()),
                (Stream::Stdout, b"pro".to_vec()),
                (Stream::Stderr, b"\xff\x00err\n".to_vec()),
            ]
        );
        w.write(Stream::Stdout, b"mpt\n").unwrap();
        let (more, _) = read_from(&p, off).unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].bytes(), b"mpt\n");
    }

    #[test]
    fn a_half_written_line_is_left_for_later() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("output.log");
        let complete = r#"{"time":"t","stream":"stdout","data":"aGk="}"#.to_owned() + "\n";
        std::fs::write(&p, format!("{complete}{{\"time\":")).unwrap();
        let (recs, off) = read_from(&p, 0).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].bytes(), b"hi");
        assert_eq!(off, complete.len() as u64);
    }
}

/// A `logs --since/--until` value that is not a time.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid time {0:?}: use RFC 3339 (2026-12-05T10:00:00Z), Unix seconds (1764928800), or a duration ago (10m, 1h30m)")]
pub struct BadLogTime(pub String);

/// Parses Docker's `--since`/`--until` forms relative to `now`: RFC 3339, Unix seconds (with an
/// optional fraction), or a Go duration meaning that long before `now`.
///
/// # Errors
/// [`BadLogTime`].
pub fn parse_log_time(
    s: &str,
    now: time::OffsetDateTime,
) -> Result<time::OffsetDateTime, BadLogTime> {
    let bad = || BadLogTime(s.to_owned());
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !s.is_empty() {
        let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
        let secs: i64 = secs.parse().map_err(|_| bad())?;
        let nanos: i64 = if frac.is_empty() {
            0
        } else {
            let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
            digits.parse().map_err(|_| bad())?
        };
        return time::OffsetDateTime::from_unix_timestamp(secs)
            .map(|t| t + time::Duration::nanoseconds(nanos))
            .map_err(|_| bad());
    }
    let ago = super::health::parse_duration(s).map_err(|_| bad())?;
    let ago = time::Duration::try_from(ago).map_err(|_| bad())?;
    now.checked_sub(ago).ok_or_else(bad)
}

/// Whether a record falls in `[since, until)` (a record whose time does not parse is kept).
pub fn in_window(
    rec: &LogRecord,
    since: Option<time::OffsetDateTime>,
    until: Option<time::OffsetDateTime>,
) -> bool {
    let Ok(t) =
        time::OffsetDateTime::parse(&rec.time, &time::format_description::well_known::Rfc3339)
    else {
        return true;
    };
    since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u)
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn docker_time_forms() {
        let now = time::macros::datetime!(2026-12-05 10:00:00 UTC);
        assert_eq!(
            parse_log_time("2026-12-05T09:00:00Z", now).unwrap(),
            time::macros::datetime!(2026-12-05 09:00:00 UTC)
        );
        assert_eq!(
            parse_log_time("10m", now).unwrap(),
            time::macros::datetime!(2026-12-05 09:50:00 UTC)
        );
        assert_eq!(
            parse_log_time("1764928800.5", now).unwrap(),
            time::OffsetDateTime::from_unix_timestamp(1_764_928_800).unwrap()
                + time::Duration::milliseconds(500)
        );
        assert!(parse_log_time("yesterday", now).is_err());
        assert!(parse_log_time("", now).is_err());
    }

    #[test]
    fn window_is_half_open() {
        let rec = |t: &str| LogRecord {
            time: t.into(),
            stream: Stream::Stdout,
            data: String::new(),
        };
        let s = Some(time::macros::datetime!(2026-12-05 10:00:00 UTC));
        let u = Some(time::macros::datetime!(2026-12-05 11:00:00 UTC));
        assert!(in_window(&rec("2026-12-05T10:00:00Z"), s, u));
        assert!(!in_window(&rec("2026-12-05T11:00:00Z"), s, u));
        assert!(!in_window(&rec("2026-12-05T09:59:59.9Z"), s, u));
        assert!(in_window(&rec("garbage"), s, u));
    }
}
