//! `--health-*` options of `run`/`create`, and how health shows in `ps` and `inspect`.

use clap::Args;

use a3s_runtime::boxes::health::{Health, HealthOptions, HealthStatus};
use a3s_runtime::boxes::BoxRecord;

use crate::usage_error;

#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// Command to check health, run with /bin/sh -c in the box (exit 0: healthy).
    #[arg(long, value_name = "CMD")]
    pub(crate) health_cmd: Option<String>,
    /// Time between checks (ms|s|m|h, e.g. 10s, 1m30s), default 30s.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) health_interval: Option<String>,
    /// Maximum time one check may take, default 30s.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy, default 3.
    #[arg(long, value_name = "N")]
    pub(crate) health_retries: Option<u32>,
    /// Grace period after the start in which failures do not count, default 0s.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) health_start_period: Option<String>,
    /// Disable any health check (also the image's).
    #[arg(long)]
    pub(crate) no_healthcheck: bool,
}

impl HealthArgs {
    /// Parses and checks the options (before anything boots).
    pub(crate) fn options(&self) -> anyhow::Result<HealthOptions> {
        let opts = HealthOptions::parse(
            self.health_cmd.as_deref(),
            self.health_interval.as_deref(),
            self.health_timeout.as_deref(),
            self.health_retries,
            self.health_start_period.as_deref(),
            self.no_healthcheck,
        )
        .map_err(|e| usage_error(e.into()))?;
        // Conflicts and tunables without a command are refused now too, not only at create.
        opts.resolve(None).map_err(|e| usage_error(e.into()))?;
        Ok(opts)
    }
}

/// ` (healthy)`, ` (unhealthy)` or ` (health: starting)` after `Up ...`, like Docker.
pub(super) fn suffix(health: Option<&Health>) -> &'static str {
    match health.map(|h| h.status) {
        Some(HealthStatus::Starting) => " (health: starting)",
        Some(HealthStatus::Healthy) => " (healthy)",
        Some(HealthStatus::Unhealthy) => " (unhealthy)",
        None => "",
    }
}

/// Docker's `units.HumanDuration`: `Less than a second`, `5 seconds`, `About a minute`, ...
pub(crate) fn human_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (min, hours) = (secs / 60, secs / 3600);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        _ if min == 1 => "About a minute".into(),
        _ if min < 60 => format!("{min} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// A record as `inspect` prints it: the record, with its health under `state.health` (Docker's
/// `.State.Health`) and its security flags as `HostConfig`.
pub(super) fn inspect_view(rec: &BoxRecord) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(rec)?;
    if let Some(obj) = v.as_object_mut() {
        // Docker's State.Paused, and State.Status `paused`.
        let paused = obj.remove("paused").and_then(|p| p.as_bool()) == Some(true);
        if let Some(state) = obj.get_mut("state").and_then(|s| s.as_object_mut()) {
            state.insert("paused".into(), paused.into());
            if paused {
                state.insert("status".into(), "paused".into());
            }
        }
        let health = obj.remove("health");
        if let (Some(h), Some(state)) =
            (health, obj.get_mut("state").and_then(|s| s.as_object_mut()))
        {
            state.insert("health".into(), h);
        }
        // Docker's `.HostConfig` for the security and resource flags.
        if let Some(sec) = &rec.spec.security {
            obj.insert("HostConfig".into(), serde_json::to_value(sec)?);
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn durations_read_like_docker_ps() {
        let s = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(42)), "42 seconds");
        assert_eq!(human_duration(s(61)), "About a minute");
        assert_eq!(human_duration(s(120)), "2 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5 * 3600)), "5 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
    }
}
