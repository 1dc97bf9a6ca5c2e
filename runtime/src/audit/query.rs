//! Reading events back: filters applied across every rotated file, newest last.

use std::io::BufRead;

use time::OffsetDateTime;

use super::event::{Entry, Outcome};
use super::files;
use super::log::{AuditError, AuditLog};

/// A point in time given as RFC 3339 or as a duration before now (`90s`, `10m`, `2h`, `7d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBound(OffsetDateTime);

/// Neither an RFC 3339 time nor a relative duration.
#[derive(Debug, thiserror::Error)]
#[error("invalid time {0:?}: give an RFC 3339 time (2026-12-02T10:00:00Z) or a duration ago (30s, 10m, 2h, 7d)")]
pub struct TimeBoundError(String);

impl TimeBound {
    /// Parses `text` relative to `now`.
    ///
    /// # Errors
    /// [`TimeBoundError`] for anything else.
    pub fn parse(text: &str, now: OffsetDateTime) -> Result<Self, TimeBoundError> {
        let err = || TimeBoundError(text.to_owned());
        if let Ok(t) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
            return Ok(Self(t));
        }
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (num, unit) = text.split_at(split);
        let n: i64 = num.parse().map_err(|_| err())?;
        let secs = match unit {
            "s" => n,
            "m" => n.checked_mul(60).ok_or_else(err)?,
            "h" => n.checked_mul(3600).ok_or_else(err)?,
            "d" => n.checked_mul(86_400).ok_or_else(err)?,
            _ => return Err(err()),
        };
        now.checked_sub(time::Duration::seconds(secs))
            .map(Self)
            .ok_or_else(err)
    }

    /// The instant.
    pub fn instant(self) -> OffsetDateTime {
        self.0
    }
}

/// Which events to return.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Exact action name, or a prefix ending in `.*` (`box.*`).
    pub action: Option<String>,
    /// Box id (or a prefix of it, as `ps` prints short ids).
    pub box_id: Option<String>,
    /// Outcome.
    pub outcome: Option<Outcome>,
    /// Only events at or after this time.
    pub since: Option<TimeBound>,
    /// Only events at or before this time.
    pub until: Option<TimeBound>,
    /// Only the newest `n` matching events.
    pub last: Option<usize>,
}

impl Filter {
    fn matches(&self, e: &Entry) -> bool {
        if let Some(action) = &self.action {
            let ok = match action.strip_suffix(".*") {
                Some(prefix) => e
                    .action
                    .strip_prefix(prefix)
                    .is_some_and(|r| r.starts_with('.')),
                None => &e.action == action,
            };
            if !ok {
                return false;
            }
        }
        if let Some(b) = &self.box_id {
            if !e
                .box_id
                .as_deref()
                .is_some_and(|id| id.starts_with(b.as_str()))
            {
                return false;
            }
        }
        if self.outcome.is_some_and(|o| o != e.outcome) {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(t) =
                OffsetDateTime::parse(&e.time, &time::format_description::well_known::Rfc3339)
            else {
                return false;
            };
            if self.since.is_some_and(|s| t < s.0) || self.until.is_some_and(|u| t > u.0) {
                return false;
            }
        }
        true
    }
}

impl AuditLog {
    /// Events matching `filter`, oldest first, read across all rotated files.
    ///
    /// Lines that are not valid entries are skipped here; [`AuditLog::verify`] reports them.
    ///
    /// # Errors
    /// I/O failures reading the files.
    pub fn query(&self, filter: &Filter) -> Result<Vec<Entry>, AuditError> {
        let mut out = std::collections::VecDeque::new();
        for path in files::log_files(self.dir())? {
            let reader = std::io::BufReader::new(fs_err::File::open(&path)?);
            for line in reader.split(b'\n') {
                let line = line?;
                let Ok(entry) = serde_json::from_slice::<Entry>(&line) else {
                    continue;
                };
                if filter.matches(&entry) {
                    out.push_back(entry);
                    if filter.last.is_some_and(|n| out.len() > n) {
                        out.pop_front();
                    }
                }
            }
        }
        Ok(out.into())
    }
}
