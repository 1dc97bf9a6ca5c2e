//! Health checks with Docker's semantics (`--health-cmd`, `HEALTHCHECK`).
//!
//! A box with a check starts `starting`. Every `interval` after the box runs (the first probe
//! too), the box's monitor runs the check in the guest exactly as an `exec` client would: it
//! connects to its own `monitor.sock` and opens an exec session with `/bin/sh -c CMD`. Exit code
//! 0 makes the box `healthy` and resets the failing streak; anything else (including a probe
//! that outlives `timeout`, which is then killed with SIGKILL) is a failure, and `retries`
//! consecutive failures make it `unhealthy`. While the box is still `starting`, failures within
//! `start_period` of the start are not counted. The last [`MAX_LOG_ENTRIES`] results are kept
//! with their output truncated to [`MAX_OUTPUT_BYTES`], like `docker inspect`'s `.State.Health`.
//!
//! The state lives in the box record (`state.json`, written through [`Boxes::update`]) so
//! every CLI process sees it, and every change of status is an audit event (`box.health`).
//!
//! The state machine ([`Health::record`]) takes the time since the start as an input, so it is
//! tested by feeding results, without clocks.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use a3s_vmm::proto::{self, Frame, HostMsg, Kind, ProcessSpec};

use super::client::{self, ClientMsg, MonitorMsg};
use super::state::{now_rfc3339, BoxId, BoxRecord, BoxState};
use super::{BoxError, Boxes};
use crate::audit::{AuditLog, Event, Outcome};

/// Default time between probes (Docker's).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Default time a probe may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default consecutive failures that make a box unhealthy.
pub const DEFAULT_RETRIES: u32 = 3;
/// Default grace period after the start.
pub const DEFAULT_START_PERIOD: Duration = Duration::ZERO;
/// Probe results kept in the record.
pub const MAX_LOG_ENTRIES: usize = 5;
/// Output kept per probe (bytes, cut at a character boundary).
pub const MAX_OUTPUT_BYTES: usize = 4096;
/// Exit code recorded for a probe that timed out or could not run (Docker's).
pub const PROBE_ERROR_CODE: i32 = -1;

/// A health-check option that cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    /// A duration that does not parse.
    #[error("{flag} {value:?}: {reason}")]
    BadDuration {
        /// The option, e.g. `--health-interval`.
        flag: String,
        /// As given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// `--no-healthcheck` together with a `--health-*` option.
    #[error("--no-healthcheck conflicts with --health-* options")]
    Conflict,
    /// A tunable without a command to run.
    #[error("{flag} was given but there is no health check: the image has none and --health-cmd is not set")]
    NoCommand {
        /// The tunable.
        flag: String,
    },
    /// `--health-cmd ""`.
    #[error("--health-cmd is empty")]
    EmptyCommand,
}

impl HealthError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::BadDuration { .. } => Some(
                "durations are a number with a unit (ns, us, ms, s, m, h), e.g. 500ms, 10s, 1m30s"
                    .into(),
            ),
            Self::NoCommand { .. } | Self::EmptyCommand => {
                Some("give the check with --health-cmd CMD (run with /bin/sh -c in the box)".into())
            }
            Self::Conflict => None,
        }
    }
}

/// Why a duration does not parse (see [`parse_duration`]).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Empty string.
    #[error("empty duration")]
    Empty,
    /// A negative duration.
    #[error("durations cannot be negative")]
    Negative,
    /// A number without a unit (other than `0`).
    #[error("missing unit in duration (use ns, us, ms, s, m or h)")]
    MissingUnit,
    /// A unit we do not know.
    #[error("unknown unit {0:?} in duration (use ns, us, ms, s, m or h)")]
    UnknownUnit(String),
    /// Not a number where one was expected.
    #[error("invalid duration")]
    Invalid,
    /// More than `u64` nanoseconds.
    #[error("duration out of range")]
    Overflow,
}

/// Parses a duration the way Docker's flags do (Go's `time.ParseDuration`): a sequence of
/// decimal numbers, each with an optional fraction and a unit, such as `500ms`, `10s`, `1m30s`,
/// `1.5h`; `0` needs no unit. Negative durations are refused.
///
/// # Errors
/// [`DurationError`].
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.starts_with('-') {
        return Err(DurationError::Negative);
    }
    if rest.is_empty() {
        return Err(DurationError::Empty);
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac = "";
        if let Some(after) = rest.strip_prefix('.') {
            let frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
            frac = &after[..frac_len];
            rest = &after[frac_len..];
        }
        if int.is_empty() && frac.is_empty() {
            return Err(DurationError::Invalid);
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per: u128 = match unit {
            "" => return Err(DurationError::MissingUnit),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(DurationError::UnknownUnit(other.to_owned())),
        };
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| DurationError::Overflow)?
        };
        // The fraction, scaled to the unit, truncated to whole nanoseconds (as Go does).
        let mut part = 0u128;
        let mut scale = nanos_per;
        for d in frac.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            part += u128::from(d - b'0') * scale;
        }
        total = whole
            .checked_mul(nanos_per)
            .and_then(|w| w.checked_add(part))
            .and_then(|v| total.checked_add(v))
            .ok_or(DurationError::Overflow)?;
    }
    let nanos = u64::try_from(total).map_err(|_| DurationError::Overflow)?;
    Ok(Duration::from_nanos(nanos))
}

/// Docker's short rendering of a duration (`30s`, `1m30s`, `500ms`), used in messages.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return format!("{}ns", d.as_nanos());
    }
    if ms % 1000 != 0 || ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

/// A box's health check, fixed when the box is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// Docker's form: `["CMD-SHELL", cmd]` (run with `/bin/sh -c`) or `["CMD", argv...]`.
    pub test: Vec<String>,
    /// Time between probes.
    #[serde(with = "nanos")]
    pub interval: Duration,
    /// Time a probe may take before it is killed and counted as failed.
    #[serde(with = "nanos")]
    pub timeout: Duration,
    /// Grace period after the start in which failures are not counted.
    #[serde(with = "nanos")]
    pub start_period: Duration,
    /// Consecutive failures that make the box unhealthy.
    pub retries: u32,
}

impl HealthConfig {
    /// The program and arguments of one probe.
    pub fn argv(&self) -> Vec<String> {
        match self.test.split_first() {
            Some((kind, rest)) if kind == "CMD-SHELL" => {
                vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
            }
            Some((kind, rest)) if kind == "CMD" => rest.to_vec(),
            _ => Vec::new(),
        }
    }
}

/// The `--health-*` options as given (already parsed); [`HealthOptions::resolve`] applies them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthOptions {
    /// `--health-cmd`.
    pub cmd: Option<String>,
    /// `--health-interval` (zero: the default).
    pub interval: Option<Duration>,
    /// `--health-timeout` (zero: the default).
    pub timeout: Option<Duration>,
    /// `--health-retries` (zero: the default).
    pub retries: Option<u32>,
    /// `--health-start-period`.
    pub start_period: Option<Duration>,
    /// `--no-healthcheck`.
    pub disable: bool,
}

impl HealthOptions {
    /// Parses the options' text forms; errors name the flag.
    ///
    /// # Errors
    /// [`HealthError::BadDuration`].
    pub fn parse(
        cmd: Option<&str>,
        interval: Option<&str>,
        timeout: Option<&str>,
        retries: Option<u32>,
        start_period: Option<&str>,
        disable: bool,
    ) -> Result<Self, HealthError> {
        let dur = |flag: &str, v: Option<&str>| -> Result<Option<Duration>, HealthError> {
            v.map(|s| {
                let d = parse_duration(s).map_err(|e| HealthError::BadDuration {
                    flag: flag.to_owned(),
                    value: s.to_owned(),
                    reason: e.to_string(),
                })?;
                if !d.is_zero() && d < Duration::from_millis(1) && flag != "--health-start-period" {
                    return Err(HealthError::BadDuration {
                        flag: flag.to_owned(),
                        value: s.to_owned(),
                        reason: "must be at least 1ms (or 0 for the default)".into(),
                    });
                }
                Ok(d)
            })
            .transpose()
        };
        Ok(Self {
            cmd: cmd.map(str::to_owned),
            interval: dur("--health-interval", interval)?,
            timeout: dur("--health-timeout", timeout)?,
            retries,
            start_period: dur("--health-start-period", start_period)?,
            disable,
        })
    }

    /// The check a box gets: the image's (if any) with these options applied, none with
    /// `--no-healthcheck`.
    ///
    /// # Errors
    /// [`HealthError::Conflict`], [`HealthError::NoCommand`], [`HealthError::EmptyCommand`].
    pub fn resolve(
        &self,
        image: Option<&HealthConfig>,
    ) -> Result<Option<HealthConfig>, HealthError> {
        let tunables = [
            ("--health-interval", self.interval.is_some()),
            ("--health-timeout", self.timeout.is_some()),
            ("--health-retries", self.retries.is_some()),
            ("--health-start-period", self.start_period.is_some()),
        ];
        let tuned = tunables.iter().find(|(_, set)| *set).map(|(f, _)| *f);
        if self.disable {
            if self.cmd.is_some() || tuned.is_some() {
                return Err(HealthError::Conflict);
            }
            return Ok(None);
        }
        let test = match (&self.cmd, image) {
            (Some(c), _) if c.trim().is_empty() => return Err(HealthError::EmptyCommand),
            (Some(c), _) => vec!["CMD-SHELL".to_owned(), c.clone()],
            (None, Some(img)) if !img.argv().is_empty() => img.test.clone(),
            (None, _) => {
                return match tuned {
                    Some(flag) => Err(HealthError::NoCommand {
                        flag: flag.to_owned(),
                    }),
                    None => Ok(None),
                };
            }
        };
        let or = |given: Option<Duration>, img: Option<Duration>, default: Duration| {
            given
                .filter(|d| !d.is_zero())
                .or(img.filter(|d| !d.is_zero()))
                .unwrap_or(default)
        };
        Ok(Some(HealthConfig {
            test,
            interval: or(self.interval, image.map(|i| i.interval), DEFAULT_INTERVAL),
            timeout: or(self.timeout, image.map(|i| i.timeout), DEFAULT_TIMEOUT),
            start_period: self
                .start_period
                .or(image.map(|i| i.start_period))
                .unwrap_or(DEFAULT_START_PERIOD),
            retries: self
                .retries
                .filter(|r| *r > 0)
                .or(image.map(|i| i.retries).filter(|r| *r > 0))
                .unwrap_or(DEFAULT_RETRIES),
        }))
    }
}

/// A box's health status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// No verdict yet.
    Starting,
    /// The last probe passed.
    Healthy,
    /// `retries` probes in a row failed.
    Unhealthy,
}

impl HealthStatus {
    /// `starting`, `healthy` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// One probe's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// When it started (RFC 3339).
    pub start: String,
    /// When it ended (RFC 3339).
    pub end: String,
    /// Its exit code ([`PROBE_ERROR_CODE`] when it timed out or could not run).
    pub exit_code: i32,
    /// Its output (stdout and stderr), at most [`MAX_OUTPUT_BYTES`].
    pub output: String,
}

/// A status change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Before.
    pub from: HealthStatus,
    /// After.
    pub to: HealthStatus,
}

/// A box's health, as persisted in its record (Docker's `.State.Health`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Current status.
    pub status: HealthStatus,
    /// Consecutive failed probes.
    pub failing_streak: u32,
    /// The last results, oldest first.
    pub log: Vec<Probe>,
}

impl Health {
    /// The state of a box that just started.
    pub fn starting() -> Self {
        Self {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: Vec::new(),
        }
    }

    /// Feeds one probe result (`since_start`: from the box's start to the probe's start) and
    /// returns the status change it causes, if any.
    pub fn record(
        &mut self,
        probe: Probe,
        since_start: Duration,
        config: &HealthConfig,
    ) -> Option<Transition> {
        let from = self.status;
        if probe.exit_code == 0 {
            self.failing_streak = 0;
            self.status = HealthStatus::Healthy;
        } else {
            let grace = from == HealthStatus::Starting && since_start < config.start_period;
            if !grace {
                self.failing_streak = self.failing_streak.saturating_add(1);
                if self.failing_streak >= config.retries.max(1) {
                    self.status = HealthStatus::Unhealthy;
                }
            }
        }
        self.log.push(Probe {
            output: truncate_output(probe.output),
            ..probe
        });
        if self.log.len() > MAX_LOG_ENTRIES {
            let extra = self.log.len() - MAX_LOG_ENTRIES;
            self.log.drain(..extra);
        }
        (self.status != from).then_some(Transition {
            from,
            to: self.status,
        })
    }
}

fn truncate_output(mut s: String) -> String {
    if s.len() > MAX_OUTPUT_BYTES {
        let mut cut = MAX_OUTPUT_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The initial health of a box that starts running (`None`: it has no check).
pub fn initial(rec: &BoxRecord) -> Option<Health> {
    rec.spec.health.as_ref().map(|_| Health::starting())
}

/// Keeps a box's probe thread going; dropping it stops the probes.
#[derive(Debug)]
pub struct Checker {
    _stop: mpsc::Sender<()>,
}

/// Starts probing box `id` (run by its monitor, `me`, once the box runs), or `None` when the
/// box has no health check.
pub fn spawn(boxes: &Boxes, rec: &BoxRecord, me: u32) -> Option<Checker> {
    let config = rec.spec.health.clone()?;
    let (stop, stopped) = mpsc::channel();
    let job = Job {
        boxes: boxes.clone(),
        id: rec.id.clone(),
        name: rec.name.clone(),
        socket: boxes.box_dir(&rec.id).join(super::MONITOR_SOCKET),
        process: ProcessSpec {
            argv: config.argv(),
            env: rec.spec.process.env.clone(),
            workdir: rec.spec.process.workdir.clone(),
            user: rec.spec.process.user.clone(),
            tty: false,
            tty_size: None,
            stdin: false,
        },
        config,
        me,
    };
    std::thread::spawn(move || job.run(&stopped));
    Some(Checker { _stop: stop })
}

struct Job {
    boxes: Boxes,
    id: BoxId,
    name: String,
    socket: PathBuf,
    process: ProcessSpec,
    config: HealthConfig,
    me: u32,
}

impl Job {
    fn run(self, stopped: &mpsc::Receiver<()>) {
        let started = Instant::now();
        loop {
            match stopped.recv_timeout(self.config.interval) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            // Docker does not probe a paused container: its probe would time out.
            if self.boxes.load(&self.id).is_ok_and(|r| r.paused) {
                continue;
            }
            let since_start = started.elapsed();
            let begin = now_rfc3339();
            let (exit_code, output) = probe(&self.socket, &self.process, self.config.timeout);
            let result = Probe {
                start: begin,
                end: now_rfc3339(),
                exit_code,
                output,
            };
            let mut change = None;
            let me = self.me;
            let updated = self.boxes.update(&self.id, |r| {
                // Only while this monitor's run lasts: never over the exit it recorded.
                if !matches!(r.state, BoxState::Running { monitor_pid, .. } if monitor_pid == me) {
                    return Err(BoxError::NotRunning(r.name.clone()));
                }
                let health = r.health.get_or_insert_with(Health::starting);
                change = health.record(result, since_start, &self.config);
                Ok(())
            });
            let Ok(rec) = updated else { return };
            if let (Some(t), Some(h)) = (change, &rec.health) {
                self.audit(t, h);
                let action = format!("health_status: {}", t.to.as_str());
                self.boxes.emit(&rec, &action, &[]);
            }
        }
    }

    fn audit(&self, t: Transition, health: &Health) {
        let last = health.log.last();
        let outcome = match t.to {
            HealthStatus::Unhealthy => Outcome::Failure,
            _ => Outcome::Success,
        };
        let event = Event::new(
            "box.health",
            outcome,
            format!(
                "health {} -> {} (failing streak {})",
                t.from.as_str(),
                t.to.as_str(),
                health.failing_streak
            ),
        )
        .with_box(self.id.as_str())
        .with("name", self.name.as_str())
        .with("status", t.to.as_str())
        .with("previous", t.from.as_str())
        .with("failing_streak", health.failing_streak)
        .with("exit_code", last.map_or(PROBE_ERROR_CODE, |p| p.exit_code));
        if let Err(e) = AuditLog::open(self.boxes.home().audit()).record(&event) {
            // The monitor's stderr is monitor.log.
            eprintln!("a3s-box monitor: writing the health audit event failed: {e}");
        }
    }
}

/// Runs one probe through the monitor's socket; returns its exit code and output.
fn probe(socket: &Path, process: &ProcessSpec, timeout: Duration) -> (i32, String) {
    let mut conn = match client::connect(
        socket,
        &ClientMsg::Exec {
            process: process.clone(),
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            return (
                PROBE_ERROR_CODE,
                format!("health check could not reach the box monitor: {e}"),
            )
        }
    };
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            kill(&mut conn);
            return (
                PROBE_ERROR_CODE,
                format!(
                    "Health check exceeded timeout ({})",
                    format_duration(timeout)
                ),
            );
        }
        match proto::read_frame(&mut conn) {
            Ok(f) => match f.kind {
                Kind::Stdout | Kind::Stderr if out.len() < MAX_OUTPUT_BYTES + 4 => {
                    out.extend_from_slice(&f.payload);
                }
                Kind::Control => match f.message::<MonitorMsg>() {
                    Ok(MonitorMsg::Exited { code }) => {
                        return (code, String::from_utf8_lossy(&out).into_owned())
                    }
                    Ok(MonitorMsg::SpawnFailed { code, message }) => return (code, message),
                    Ok(MonitorMsg::Error { message }) => return (PROBE_ERROR_CODE, message),
                    _ => {}
                },
                _ => {}
            },
            Err(proto::ProtoError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                return (
                    PROBE_ERROR_CODE,
                    format!("the health check's session ended without an exit code: {e}"),
                )
            }
        }
    }
}

/// SIGKILLs a probe's process (the monitor relays the signal to the connection's session).
fn kill(conn: &mut UnixStream) {
    if let Ok(f) = Frame::control(0, &HostMsg::Signal { signal: 9 }) {
        let _ = proto::write_frame(conn, &f);
    }
}

/// Durations as integer nanoseconds (Docker's JSON form).
mod nanos {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_nanos)
    }
}

#[cfg(test)]
mod tests;
