//! Box lifecycle events (`a3s-box events`): what happened to which box, when, in Docker's event
//! shape.
//!
//! The runtime appends one JSON line per event to `A3S_HOME/events/events.jsonl` (0600, in a
//! 0700 directory) as it happens, from whichever process saw it (the CLI for `create`, `kill`,
//! `rename`, ...; the box's monitor for `start`, `die`, `health_status`). The file is bounded:
//! when it would pass [`MAX_FILE_BYTES`] it becomes `events.jsonl.1` (replacing the previous
//! one) and a new file begins, so at most twice that is kept. Unlike the audit log this is a
//! convenience stream, not evidence: nothing is hash-chained and a full disk loses events
//! rather than failing the operation.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::{lock_file, BoxRecord};

/// A file is rotated before it grows past this.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Longest line read back; longer ones (not written by us) are skipped.
const MAX_LINE_BYTES: usize = 64 << 10;
const FILE: &str = "events.jsonl";
const ROTATED: &str = "events.jsonl.1";
/// How often a live stream looks for new lines.
const POLL: Duration = Duration::from_millis(100);

/// One event, field for field what `docker events --format '{{json .}}'` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxEvent {
    /// Docker's legacy copy of `Action`.
    pub status: String,
    /// Box id.
    pub id: String,
    /// Image reference as the box was created with.
    pub from: String,
    /// Object type: always `container` (boxes are Docker's containers).
    #[serde(rename = "Type")]
    pub kind: String,
    /// `create`, `start`, `die`, `kill`, `stop`, `pause`, `unpause`, `rename`, `destroy`,
    /// `exec_create: CMD`, `exec_start: CMD`, `health_status: STATUS`.
    #[serde(rename = "Action")]
    pub action: String,
    /// Who it happened to.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Always `local`.
    pub scope: String,
    /// Unix seconds.
    pub time: i64,
    /// Unix nanoseconds.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

/// The box an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Box id.
    #[serde(rename = "ID")]
    pub id: String,
    /// `image`, `name`, the box's labels, and per action `exitCode`, `signal`, `oldName`.
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

impl BoxEvent {
    /// An event `action` of `rec` now, with `extra` attributes.
    pub fn new(rec: &BoxRecord, action: &str, extra: &[(&str, String)]) -> Self {
        let mut attributes = rec.spec.labels.clone();
        attributes.insert("image".into(), rec.image.clone());
        attributes.insert("name".into(), rec.name.clone());
        for (k, v) in extra {
            attributes.insert((*k).to_owned(), v.clone());
        }
        let now = time::OffsetDateTime::now_utc();
        let time_nano = i64::try_from(now.unix_timestamp_nanos()).unwrap_or(i64::MAX);
        Self {
            status: action.to_owned(),
            id: rec.id.to_string(),
            from: rec.image.clone(),
            kind: "container".into(),
            action: action.to_owned(),
            actor: Actor {
                id: rec.id.to_string(),
                attributes,
            },
            scope: "local".into(),
            time: now.unix_timestamp(),
            time_nano,
        }
    }

    /// When it happened.
    pub fn at(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.time_nano))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

/// Reading or writing the events file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventsError {
    /// i/o on the events directory (the message names the path).
    #[error("events file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A bad `--filter`.
    #[error("bad event filter {0:?}: use KEY=VALUE with KEY one of type, event, container, image, label")]
    BadFilter(String),
}

/// The events file of one A3S home.
#[derive(Clone, Debug)]
pub struct EventLog {
    dir: PathBuf,
}

impl EventLog {
    /// The events of the home rooted at `root`.
    pub fn open(root: &Path) -> Self {
        Self {
            dir: root.join("events"),
        }
    }

    fn io(&self, name: &str) -> impl FnOnce(std::io::Error) -> EventsError {
        let path = self.dir.join(name);
        move |source| EventsError::Io { path, source }
    }

    /// Appends `event`, rotating first when the file would grow past [`MAX_FILE_BYTES`].
    ///
    /// # Errors
    /// i/o.
    pub fn append(&self, event: &BoxEvent) -> Result<(), EventsError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(self.io(""))?;
        let mut line = serde_json::to_vec(event).map_err(|e| self.io(FILE)(e.into()))?;
        line.push(b'\n');
        let _lock = lock_file(&self.dir.join(".lock"))
            .map_err(|e| self.io(".lock")(std::io::Error::other(e.to_string())))?;
        let path = self.dir.join(FILE);
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        if size > 0 && size + line.len() as u64 > MAX_FILE_BYTES {
            std::fs::rename(&path, self.dir.join(ROTATED)).map_err(self.io(ROTATED))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(self.io(FILE))?;
        f.write_all(&line).map_err(self.io(FILE))
    }

    /// Every stored event that passes `filter` (oldest first).
    ///
    /// # Errors
    /// i/o.
    pub fn read(&self, filter: &EventFilter) -> Result<Vec<BoxEvent>, EventsError> {
        let mut out = Vec::new();
        for name in [ROTATED, FILE] {
            let mut f = match File::open(self.dir.join(name)) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(name)(e)),
            };
            let mut tail = LineReader::default();
            tail.read_new(&mut f, &mut |e| {
                if filter.matches(&e) {
                    out.push(e);
                }
            })
            .map_err(self.io(name))?;
        }
        Ok(out)
    }

    /// Streams events to `sink` as they are appended, until `sink` returns `false` or
    /// `stop()` is true (checked after each read, so what is there is always read once).
    /// `stored`: begin with the events already stored (the rotated file, then the current
    /// one from its start); otherwise with the next event appended.
    ///
    /// # Errors
    /// i/o.
    pub fn follow(
        &self,
        filter: &EventFilter,
        stored: bool,
        stop: &dyn Fn() -> bool,
        sink: &mut dyn FnMut(&BoxEvent) -> bool,
    ) -> Result<(), EventsError> {
        let path = self.dir.join(FILE);
        let go_on = std::cell::Cell::new(true);
        let mut each = |e: BoxEvent| {
            if go_on.get() && filter.matches(&e) {
                go_on.set(sink(&e));
            }
        };
        if stored {
            if let Ok(mut f) = File::open(self.dir.join(ROTATED)) {
                LineReader::default()
                    .read_new(&mut f, &mut each)
                    .map_err(self.io(ROTATED))?;
            }
        }
        let mut current = match File::open(&path) {
            Ok(mut f) => {
                if !stored {
                    f.seek(SeekFrom::End(0)).map_err(self.io(FILE))?;
                }
                Some(f)
            }
            Err(_) => None,
        };
        let mut reader = LineReader::default();
        loop {
            if let Some(f) = current.as_mut() {
                reader.read_new(f, &mut each).map_err(self.io(FILE))?;
            }
            if !go_on.get() || stop() {
                return Ok(());
            }
            let on_disk = std::fs::metadata(&path).ok().map(|m| m.ino());
            let ours = current
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.ino());
            if on_disk.is_some() && on_disk != ours {
                // Rotated (or created): finish the old file (a line may have landed after the
                // read above, before the rename), then read the new one from its start.
                if let Some(f) = current.as_mut() {
                    reader.read_new(f, &mut each).map_err(self.io(FILE))?;
                }
                current = File::open(&path).ok();
                reader = LineReader::default();
                continue;
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Reads complete lines appended since the last call, keeping a partial last line for later.
#[derive(Default)]
struct LineReader {
    partial: Vec<u8>,
    /// Inside an over-long line: drop bytes up to its end.
    skipping: bool,
}

impl LineReader {
    fn read_new(
        &mut self,
        f: &mut File,
        each: &mut dyn FnMut(BoxEvent),
    ) -> Result<(), std::io::Error> {
        let mut buf = [0u8; 16 << 10];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            for &b in &buf[..n] {
                if b == b'\n' {
                    if !self.skipping {
                        // A line we cannot parse (a torn write, another tool) is skipped.
                        if let Ok(e) = serde_json::from_slice::<BoxEvent>(&self.partial) {
                            each(e);
                        }
                    }
                    self.partial.clear();
                    self.skipping = false;
                } else if !self.skipping {
                    self.partial.push(b);
                    if self.partial.len() > MAX_LINE_BYTES {
                        self.partial.clear();
                        self.skipping = true;
                    }
                }
            }
        }
    }
}

/// `--since`, `--until` and `--filter` of `events`: Docker's rules (values of one key: any of
/// them; different keys: all of them).
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only events at or after this time.
    pub since: Option<time::OffsetDateTime>,
    /// Only events before this time.
    pub until: Option<time::OffsetDateTime>,
    terms: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    /// Parses `KEY=VALUE` filters: `type`, `event`, `container` (name or id prefix), `image`,
    /// `label` (`KEY` or `KEY=VALUE`).
    ///
    /// # Errors
    /// [`EventsError::BadFilter`].
    pub fn parse(filters: &[String]) -> Result<Self, EventsError> {
        let mut terms: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in filters {
            let Some((k, v)) = f.split_once('=') else {
                return Err(EventsError::BadFilter(f.clone()));
            };
            if !["type", "event", "container", "image", "label"].contains(&k) || v.is_empty() {
                return Err(EventsError::BadFilter(f.clone()));
            }
            terms.entry(k.to_owned()).or_default().push(v.to_owned());
        }
        Ok(Self {
            terms,
            ..Self::default()
        })
    }

    /// Whether `e` passes.
    pub fn matches(&self, e: &BoxEvent) -> bool {
        let at = e.at();
        if self.since.is_some_and(|s| at < s) || self.until.is_some_and(|u| at >= u) {
            return false;
        }
        let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str);
        self.terms.iter().all(|(key, values)| {
            values.iter().any(|v| match key.as_str() {
                "type" => e.kind == *v,
                // `event=health_status` matches `health_status: healthy`, as in Docker.
                "event" => e.action == *v || e.action.split_once(':').is_some_and(|(a, _)| a == v),
                "container" => attr("name") == Some(v) || e.actor.id.starts_with(v.as_str()),
                "image" => e.from == *v,
                "label" => match v.split_once('=') {
                    Some((k, want)) => attr(k) == Some(want),
                    None => attr(v).is_some(),
                },
                _ => false,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boxes::state::tests::record;
    use std::os::unix::fs::PermissionsExt;

    fn filter(f: &[&str]) -> EventFilter {
        EventFilter::parse(&f.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn events_have_dockers_json_shape() {
        let mut rec = record("web");
        rec.spec.labels.insert("tier".into(), "front".into());
        let e = BoxEvent::new(&rec, "die", &[("exitCode", "3".into())]);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["Type"], "container");
        assert_eq!(v["Action"], "die");
        assert_eq!(v["status"], "die");
        assert_eq!(v["scope"], "local");
        assert_eq!(v["from"], "busybox:latest");
        assert_eq!(v["Actor"]["ID"], rec.id.as_str());
        assert_eq!(v["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(v["Actor"]["Attributes"]["name"], "web");
        assert_eq!(v["Actor"]["Attributes"]["tier"], "front");
        assert_eq!(v["time"].as_i64().unwrap(), e.time_nano / 1_000_000_000);
    }

    #[test]
    fn appended_events_read_back_filtered_and_the_file_is_private() {
        let home = tempfile::tempdir().unwrap();
        let log = EventLog::open(home.path());
        // Names that cannot be an id prefix: `container=` matches ids by prefix, and "db" once
        // matched the other box's random id (1 in 256).
        let (web, db) = (record("web"), record("pg"));
        log.append(&BoxEvent::new(&web, "create", &[])).unwrap();
        log.append(&BoxEvent::new(&db, "start", &[])).unwrap();
        log.append(&BoxEvent::new(&web, "health_status: healthy", &[]))
            .unwrap();
        let mode = std::fs::metadata(home.path().join("events").join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(log.read(&filter(&[])).unwrap().len(), 3);
        let only_web = log.read(&filter(&["container=web"])).unwrap();
        assert_eq!(only_web.len(), 2);
        let by_id = log.read(&filter(&[&format!("container={}", &db.id.as_str()[..8])]));
        assert_eq!(by_id.unwrap()[0].action, "start");
        let health = log.read(&filter(&["event=health_status"])).unwrap();
        assert_eq!(health.len(), 1);
        let either = log.read(&filter(&["event=create", "event=start"])).unwrap();
        assert_eq!(either.len(), 2);
        let both = log
            .read(&filter(&["event=create", "container=pg"]))
            .unwrap();
        assert!(both.is_empty());
        assert!(log.read(&filter(&["type=image"])).unwrap().is_empty());
        let mut later = filter(&[]);
        later.since = Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
        assert!(log.read(&later).unwrap().is_empty());
    }

    #[test]
    fn bad_filters_are_refused() {
        for bad in ["event", "colour=red", "event="] {
            assert!(
                EventFilter::parse(&[bad.to_owned()]).is_err(),
                "{bad} passed"
            );
        }
    }

    #[test]
    fn the_file_rotates_at_its_bound_and_keeps_both_generations() {
        let home = tempfile::tempdir().unwrap();
        let log = EventLog::open(home.path());
        let rec = record("big");
        let one = serde_json::to_vec(&BoxEvent::new(&rec, "start", &[]))
            .unwrap()
            .len() as u64
            + 1;
        let per_file = MAX_FILE_BYTES / one;
        for _ in 0..per_file + 3 {
            log.append(&BoxEvent::new(&rec, "start", &[])).unwrap();
        }
        let dir = home.path().join("events");
        assert!(std::fs::metadata(dir.join(FILE)).unwrap().len() <= MAX_FILE_BYTES);
        assert!(std::fs::metadata(dir.join(ROTATED)).unwrap().len() <= MAX_FILE_BYTES);
        assert_eq!(log.read(&filter(&[])).unwrap().len() as u64, per_file + 3);
    }

    #[test]
    fn torn_and_overlong_lines_are_skipped() {
        let home = tempfile::tempdir().unwrap();
        let log = EventLog::open(home.path());
        let rec = record("x");
        log.append(&BoxEvent::new(&rec, "create", &[])).unwrap();
        let path = home.path().join("events").join(FILE);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"torn\n").unwrap();
        f.write_all(&vec![b'a'; MAX_LINE_BYTES + 10]).unwrap();
        f.write_all(b"\n").unwrap();
        log.append(&BoxEvent::new(&rec, "start", &[])).unwrap();
        let got: Vec<String> = log
            .read(&filter(&[]))
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(got, ["create", "start"]);
    }

    #[test]
    fn follow_streams_new_events_across_a_rotation() {
        let home = tempfile::tempdir().unwrap();
        let log = EventLog::open(home.path());
        let rec = record("live");
        log.append(&BoxEvent::new(&rec, "create", &[])).unwrap();
        let writer = {
            let log = log.clone();
            let rec = rec.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                log.append(&BoxEvent::new(&rec, "start", &[])).unwrap();
                // Force a rotation between two events.
                let dir = home_dir(&log);
                std::fs::rename(dir.join(FILE), dir.join(ROTATED)).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                log.append(&BoxEvent::new(&rec, "die", &[("exitCode", "0".into())]))
                    .unwrap();
            })
        };
        let mut seen = Vec::new();
        log.follow(&filter(&[]), false, &|| false, &mut |e| {
            seen.push(e.action.clone());
            seen.len() < 2
        })
        .unwrap();
        writer.join().unwrap();
        // The event stored before following began is not repeated.
        assert_eq!(seen, ["start", "die"]);
    }

    #[test]
    fn follow_from_the_stored_events_reads_both_files_once() {
        let home = tempfile::tempdir().unwrap();
        let log = EventLog::open(home.path());
        let rec = record("old");
        log.append(&BoxEvent::new(&rec, "create", &[])).unwrap();
        let dir = home_dir(&log);
        std::fs::rename(dir.join(FILE), dir.join(ROTATED)).unwrap();
        log.append(&BoxEvent::new(&rec, "start", &[])).unwrap();
        let mut seen = Vec::new();
        log.follow(&filter(&[]), true, &|| true, &mut |e| {
            seen.push(e.action.clone());
            true
        })
        .unwrap();
        assert_eq!(seen, ["create", "start"]);
    }

    fn home_dir(log: &EventLog) -> PathBuf {
        log.dir.clone()
    }
}
