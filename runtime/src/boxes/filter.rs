//! `ps --filter`: Docker's box filters, written once for every front end (CLI, compose, CRI).
//!
//! Several values of one key match any of them; different keys must all match; every `label`
//! filter must match. Keys: `id` (prefix), `name` (substring), `label` (`KEY` or `KEY=VALUE`),
//! `status`, `ancestor` (image as given or its digest), `exited` (exit code), `health`,
//! `before` and `since` (another box, by name or id).

use std::collections::BTreeMap;

use super::state::{BoxRecord, BoxState};

/// The status names `--filter status=` accepts (Docker's, for the states a box can be in).
pub const STATUSES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "paused",
    "exited",
    "dead",
];

/// A bad `--filter` value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// Not `KEY=VALUE`.
    #[error("bad filter {0:?}: use KEY=VALUE, e.g. status=running or label=tier=web")]
    Syntax(String),
    /// A key Docker's `ps` does not have (or this runtime does not keep).
    #[error(
        "unknown filter key {0:?}: use id, name, label, status, ancestor, exited, health, before or since"
    )]
    Key(String),
    /// A bad value for a known key.
    #[error("bad filter value {key}={value:?}: {why}")]
    Value {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// What is accepted.
        why: String,
    },
    /// `before=`/`since=` name a box that does not exist.
    #[error("no such box: {0} (in a before/since filter)")]
    NoSuchBox(String),
}

/// Parsed `--filter` arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BoxFilter {
    by_key: BTreeMap<String, Vec<String>>,
}

impl BoxFilter {
    /// Parses `KEY=VALUE` strings.
    ///
    /// # Errors
    /// A malformed filter, an unknown key or a bad value.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<Self, FilterError> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in filters {
            let f = f.as_ref();
            let (key, value) = f
                .split_once('=')
                .ok_or_else(|| FilterError::Syntax(f.to_owned()))?;
            let key = key.trim().to_ascii_lowercase();
            let bad = |why: &str| FilterError::Value {
                key: key.clone(),
                value: value.to_owned(),
                why: why.to_owned(),
            };
            match key.as_str() {
                "id" | "name" | "label" | "ancestor" | "before" | "since" => {}
                "status" if !STATUSES.contains(&value) => {
                    return Err(bad(&format!("use one of {}", STATUSES.join(", "))))
                }
                "health" if !["starting", "healthy", "unhealthy", "none"].contains(&value) => {
                    return Err(bad("use starting, healthy, unhealthy or none"))
                }
                "exited" if value.parse::<i32>().is_err() => return Err(bad("use an exit code")),
                "status" | "health" | "exited" => {}
                _ => return Err(FilterError::Key(key)),
            }
            by_key.entry(key).or_default().push(value.to_owned());
        }
        Ok(Self { by_key })
    }

    /// True when no filter was given.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Docker lists stopped boxes too when a filter asks about states other than running.
    pub fn implies_all(&self) -> bool {
        self.by_key.contains_key("exited")
            || self
                .by_key
                .get("status")
                .is_some_and(|v| v.iter().any(|s| s != "running"))
    }

    /// The boxes of `boxes` (oldest first) that match.
    ///
    /// # Errors
    /// [`FilterError::NoSuchBox`] for a `before`/`since` box that is not in `boxes`.
    pub fn apply(&self, boxes: Vec<BoxRecord>) -> Result<Vec<BoxRecord>, FilterError> {
        // before/since compare creation order: the position in the oldest-first list.
        let position = |key: &str| -> Result<Option<usize>, FilterError> {
            let Some(values) = self.by_key.get(key) else {
                return Ok(None);
            };
            let mut pos = None;
            for v in values {
                let p = boxes
                    .iter()
                    .position(|r| r.name == *v || r.id.as_str().starts_with(v.as_str()))
                    .ok_or_else(|| FilterError::NoSuchBox(v.clone()))?;
                pos = Some(pos.map_or(p, |q: usize| q.max(p)));
            }
            Ok(pos)
        };
        let before = position("before")?;
        let since = position("since")?;
        Ok(boxes
            .into_iter()
            .enumerate()
            .filter(|(i, r)| {
                before.is_none_or(|b| *i < b) && since.is_none_or(|s| *i > s) && self.matches(r)
            })
            .map(|(_, r)| r)
            .collect())
    }

    fn matches(&self, r: &BoxRecord) -> bool {
        self.by_key.iter().all(|(key, values)| match key.as_str() {
            "label" => values.iter().all(|v| has_label(r, v)),
            "before" | "since" => true,
            _ => values.iter().any(|v| match_one(r, key, v)),
        })
    }
}

fn has_label(r: &BoxRecord, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => r.spec.labels.get(k).is_some_and(|have| have == v),
        None => r.spec.labels.contains_key(filter),
    }
}

fn match_one(r: &BoxRecord, key: &str, value: &str) -> bool {
    match key {
        "id" => r.id.as_str().starts_with(value),
        "name" => r.name.contains(value),
        "status" => status_name(r) == value,
        "ancestor" => {
            r.image == value
                || r.image_digest == value
                || r.image
                    .split_once(':')
                    .is_some_and(|(repo, _)| repo == value)
        }
        "exited" => matches!(&r.state, BoxState::Exited { exit_code, .. }
            if Some(*exit_code) == value.parse().ok() && r.started_at.is_some()),
        "health" => {
            let status = r.health.as_ref().map_or("none", |h| h.status.as_str());
            status == value
        }
        _ => false,
    }
}

/// Docker's status word for a state (`starting` boxes count as `running`, as a container
/// whose process has been created does).
fn status_name(r: &BoxRecord) -> &'static str {
    match r.status_name() {
        "starting" => "running",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boxes::state::tests::record;

    fn boxes() -> Vec<BoxRecord> {
        let mut web = record("web");
        web.spec.labels.insert("tier".into(), "front".into());
        web.spec.labels.insert("team".into(), "a".into());
        web.state = BoxState::Running {
            monitor_pid: 1,
            qemu_pid: 2,
        };
        let mut db = record("db");
        db.spec.labels.insert("tier".into(), "back".into());
        db.image = "postgres:16".into();
        db.started_at = Some("2026-12-05T10:00:00Z".into());
        db.state = BoxState::Exited {
            exit_code: 3,
            error: None,
        };
        let mut fresh = record("fresh");
        fresh.state = BoxState::Created;
        vec![web, db, fresh]
    }

    fn names(f: &[&str]) -> Vec<String> {
        BoxFilter::parse(f)
            .unwrap()
            .apply(boxes())
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn same_key_values_are_alternatives_and_labels_must_all_match() {
        assert_eq!(
            names(&["status=running", "status=created"]),
            ["web", "fresh"]
        );
        assert_eq!(names(&["label=tier"]), ["web", "db"]);
        assert_eq!(names(&["label=tier", "label=team=a"]), ["web"]);
        assert_eq!(
            names(&["label=tier=back", "status=running"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn name_id_ancestor_exited_and_order_filters() {
        assert_eq!(names(&["name=e"]), ["web", "fresh"]);
        assert_eq!(names(&["ancestor=postgres"]), ["db"]);
        assert_eq!(names(&["ancestor=postgres:16"]), ["db"]);
        assert_eq!(names(&["exited=3"]), ["db"]);
        assert_eq!(names(&["exited=0"]), Vec::<String>::new());
        assert_eq!(names(&["before=fresh"]), ["web", "db"]);
        assert_eq!(names(&["since=web"]), ["db", "fresh"]);
        assert_eq!(names(&["health=none"]), ["web", "db", "fresh"]);
    }

    #[test]
    fn bad_filters_name_what_is_wrong() {
        assert_eq!(
            BoxFilter::parse(&["status"]),
            Err(FilterError::Syntax("status".into()))
        );
        assert_eq!(
            BoxFilter::parse(&["colour=red"]),
            Err(FilterError::Key("colour".into()))
        );
        let e = BoxFilter::parse(&["status=sleeping"]).unwrap_err();
        assert!(e.to_string().contains("running"), "{e}");
        assert!(BoxFilter::parse(&["exited=x"]).is_err());
        let e = BoxFilter::parse(&["before=nope"])
            .unwrap()
            .apply(boxes())
            .unwrap_err();
        assert_eq!(e, FilterError::NoSuchBox("nope".into()));
    }

    #[test]
    fn status_filters_other_than_running_list_stopped_boxes() {
        assert!(BoxFilter::parse(&["status=exited"]).unwrap().implies_all());
        assert!(!BoxFilter::parse(&["status=running"]).unwrap().implies_all());
        assert!(BoxFilter::parse(&["exited=1"]).unwrap().implies_all());
        assert!(!BoxFilter::parse(&["label=a"]).unwrap().implies_all());
    }
}
