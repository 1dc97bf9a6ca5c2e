//! Where the time of a start goes: each phase between `start` being asked for and the
//! workload being exec'd in the guest, recorded by the monitor at every start and shown by
//! `inspect` as `timings` (bench/coldstart.sh and bench/tee.sh print their medians); and where
//! the time between the workload's start and the recorded exit went (`stop_timings`).
//!
//! The starting process (CLI, CRI server) hands the monitor the wall-clock instant it began
//! and how long preparing took (`A3S_BOX_START_NS`, `A3S_BOX_PREPARE_MS`), so the spawn of the
//! monitor itself is accounted for too.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Wall-clock nanoseconds since the epoch when `start` began.
pub const START_NS_ENV: &str = "A3S_BOX_START_NS";
/// Milliseconds the starting process spent preparing assets and the plan.
pub const PREPARE_MS_ENV: &str = "A3S_BOX_PREPARE_MS";

/// One phase of a start, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// What ran (`prepare`, `spawn_monitor`, `plan`, `tee_prepare`, `network`, `vm_boot` or
    /// `vm_restore` (started from a saved VM, see `a3s_vmm::template`), `guest_setup`).
    pub name: String,
    /// How long it took.
    pub ms: u64,
}

/// Marks the end of each phase as it happens.
#[derive(Clone, Debug)]
pub struct Stopwatch {
    last: Instant,
    phases: Vec<Phase>,
}

impl Default for Stopwatch {
    fn default() -> Self {
        Self::new()
    }
}

impl Stopwatch {
    /// Starts timing in the monitor, first recording what the starting process reported.
    pub fn for_monitor() -> Self {
        let env_u64 = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        let mut phases = Vec::new();
        if let (Some(start_ns), Some(prepare_ms)) = (env_u64(START_NS_ENV), env_u64(PREPARE_MS_ENV))
        {
            let now_ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            let total_ms = now_ns.saturating_sub(start_ns) / 1_000_000;
            phases.push(Phase {
                name: "prepare".into(),
                ms: prepare_ms,
            });
            phases.push(Phase {
                name: "spawn_monitor".into(),
                ms: total_ms.saturating_sub(prepare_ms),
            });
        }
        Self {
            last: Instant::now(),
            phases,
        }
    }

    /// Starts timing from now, with no phases yet (the stop side of a run).
    pub fn new() -> Self {
        Self {
            last: Instant::now(),
            phases: Vec::new(),
        }
    }

    /// Ends the current phase as `name`.
    pub fn mark(&mut self, name: &str) {
        let now = Instant::now();
        self.phases.push(Phase {
            name: name.to_owned(),
            ms: u64::try_from(now.duration_since(self.last).as_millis()).unwrap_or(u64::MAX),
        });
        self.last = now;
    }

    /// The phases so far.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }
}

/// The environment a starting process passes to the monitor.
pub fn handoff(started: SystemTime, prepare_ms: u64) -> [(&'static str, String); 2] {
    let ns = started
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    [
        (START_NS_ENV, ns.to_string()),
        (PREPARE_MS_ENV, prepare_ms.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_recorded_in_order() {
        let mut s = Stopwatch::new();
        s.mark("plan");
        s.mark("vm_boot");
        let names: Vec<&str> = s.phases().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["plan", "vm_boot"]);
    }

    #[test]
    fn the_handoff_carries_the_start_and_the_preparation() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(5);
        let h = handoff(t, 42);
        assert_eq!(h[0], (START_NS_ENV, "5000000000".to_owned()));
        assert_eq!(h[1], (PREPARE_MS_ENV, "42".to_owned()));
    }
}
