//! Restart policies (`--restart`, compose `restart:`) and Docker's back-off between restarts.
//!
//! The box's monitor applies them: when the workload ends it asks [`RestartPolicy::decide`]
//! whether to boot the box again, waiting [`Backoff::next_delay`] first.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// First delay before a restart (Docker: 100 ms, doubling each time).
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between restarts (Docker: one minute).
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the back-off (Docker: 10 s).
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// When a box whose workload ended is started again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    No,
    /// After a non-zero exit, at most `max_retries` times (0: without limit).
    OnFailure {
        /// `on-failure:N`.
        max_retries: u32,
    },
    /// Always, unless stopped by the user; also after a host reboot (see `contrib/`).
    Always,
    /// Like `always`, but a box the user stopped stays stopped across a host reboot.
    UnlessStopped,
}

impl RestartPolicy {
    /// Parses `no`, `on-failure[:N]`, `always` or `unless-stopped`.
    ///
    /// # Errors
    /// A message naming the accepted forms.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "no" | "" => Ok(Self::No),
            "always" => Ok(Self::Always),
            "unless-stopped" => Ok(Self::UnlessStopped),
            "on-failure" => Ok(Self::OnFailure { max_retries: 0 }),
            other => match other.strip_prefix("on-failure:") {
                Some(n) => n
                    .parse()
                    .map(|max_retries| Self::OnFailure { max_retries })
                    .map_err(|_| format!("restart policy {s:?}: {n:?} is not a retry count")),
                None => Err(format!(
                    "restart policy {s:?} is not one of no, on-failure[:N], always, unless-stopped"
                )),
            },
        }
    }

    /// Its name as given on the command line.
    pub fn to_arg(self) -> String {
        match self {
            Self::No => "no".into(),
            Self::OnFailure { max_retries: 0 } => "on-failure".into(),
            Self::OnFailure { max_retries } => format!("on-failure:{max_retries}"),
            Self::Always => "always".into(),
            Self::UnlessStopped => "unless-stopped".into(),
        }
    }

    /// Whether a workload that ended with `exit_code` after `restarts` earlier restarts is
    /// started again; never when the user stopped it (`stopped_by_user`).
    pub fn decide(self, exit_code: i32, restarts: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self {
            Self::No => false,
            Self::OnFailure { max_retries } => {
                exit_code != 0 && (max_retries == 0 || restarts < max_retries)
            }
            Self::Always | Self::UnlessStopped => true,
        }
    }
}

/// Docker's back-off: 100 ms doubling to a minute, reset by a run of 10 s or more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST_DELAY }
    }
}

impl Backoff {
    /// The wait before the next restart, given how long the last run lasted.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= RESET_AFTER {
            self.next = FIRST_DELAY;
        }
        let d = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print_back() {
        for s in [
            "no",
            "on-failure",
            "on-failure:3",
            "always",
            "unless-stopped",
        ] {
            assert_eq!(RestartPolicy::parse(s).unwrap().to_arg(), s);
        }
        for bad in ["sometimes", "on-failure:x", "on-failure:-1"] {
            assert!(RestartPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decisions_follow_docker() {
        let of3 = RestartPolicy::OnFailure { max_retries: 3 };
        assert!(of3.decide(1, 2, false));
        assert!(!of3.decide(1, 3, false));
        assert!(!of3.decide(0, 0, false));
        assert!(RestartPolicy::Always.decide(0, 99, false));
        assert!(!RestartPolicy::Always.decide(1, 0, true));
        assert!(!RestartPolicy::No.decide(1, 0, false));
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_a_long_run() {
        let mut b = Backoff::default();
        let short = Duration::from_secs(1);
        let delays: Vec<_> = (0..12).map(|_| b.next_delay(short)).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(delays[11], MAX_DELAY);
        assert_eq!(b.next_delay(Duration::from_secs(10)), FIRST_DELAY);
    }
}
