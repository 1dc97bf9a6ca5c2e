//! Counters served at `/metrics` in the Prometheus text format (version 0.0.4).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The broker's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    auth: AtomicU64,
    attest_ok: AtomicU64,
    attest_failed: AtomicU64,
    attest_nanos: AtomicU64,
    attest_cpu_nanos: AtomicU64,
    verify_cpu_nanos: AtomicU64,
    resource_released: AtomicU64,
    resource_denied: AtomicU64,
    resource_not_found: AtomicU64,
}

/// How a resource request ended.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum ResourceOutcome {
    /// Released (JWE sent).
    Released,
    /// Refused by policy or token.
    Denied,
    /// No such resource.
    NotFound,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Metrics {
    /// Counts a challenge.
    pub fn auth(&self) {
        self.auth.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an attestation that took `wall` and `cpu` (thread CPU time), of which
    /// `verify_cpu` in evidence verification.
    pub fn attest(&self, ok: bool, wall: Duration, cpu: Duration, verify_cpu: Duration) {
        let counter = if ok {
            &self.attest_ok
        } else {
            &self.attest_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.attest_nanos.fetch_add(nanos(wall), Ordering::Relaxed);
        self.attest_cpu_nanos
            .fetch_add(nanos(cpu), Ordering::Relaxed);
        self.verify_cpu_nanos
            .fetch_add(nanos(verify_cpu), Ordering::Relaxed);
    }

    /// Attestations counted, CPU time spent in them and in evidence verification.
    pub fn attestation_cpu(&self) -> (u64, Duration, Duration) {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            g(&self.attest_ok) + g(&self.attest_failed),
            Duration::from_nanos(g(&self.attest_cpu_nanos)),
            Duration::from_nanos(g(&self.verify_cpu_nanos)),
        )
    }

    /// Counts a resource request.
    pub fn resource(&self, outcome: ResourceOutcome) {
        match outcome {
            ResourceOutcome::Released => &self.resource_released,
            ResourceOutcome::Denied => &self.resource_denied,
            ResourceOutcome::NotFound => &self.resource_not_found,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let secs = |a: &AtomicU64| g(a) as f64 / 1e9;
        let mut s = String::new();
        let _ = writeln!(s, "# HELP kbs_auth_total Challenges issued.\n# TYPE kbs_auth_total counter\nkbs_auth_total {}", g(&self.auth));
        let _ = writeln!(s, "# HELP kbs_attestation_total Attestations by result.\n# TYPE kbs_attestation_total counter");
        let _ = writeln!(
            s,
            "kbs_attestation_total{{result=\"ok\"}} {}",
            g(&self.attest_ok)
        );
        let _ = writeln!(
            s,
            "kbs_attestation_total{{result=\"failed\"}} {}",
            g(&self.attest_failed)
        );
        let _ = writeln!(s, "# HELP kbs_attestation_seconds_total Time spent in attestations.\n# TYPE kbs_attestation_seconds_total counter\nkbs_attestation_seconds_total {}", secs(&self.attest_nanos));
        let _ = writeln!(s, "# HELP kbs_attestation_cpu_seconds_total CPU time spent in attestations.\n# TYPE kbs_attestation_cpu_seconds_total counter\nkbs_attestation_cpu_seconds_total {}", secs(&self.attest_cpu_nanos));
        let _ = writeln!(s, "# HELP kbs_evidence_verification_cpu_seconds_total CPU time spent verifying evidence.\n# TYPE kbs_evidence_verification_cpu_seconds_total counter\nkbs_evidence_verification_cpu_seconds_total {}", secs(&self.verify_cpu_nanos));
        let _ = writeln!(s, "# HELP kbs_resource_total Resource requests by result.\n# TYPE kbs_resource_total counter");
        let _ = writeln!(
            s,
            "kbs_resource_total{{result=\"released\"}} {}",
            g(&self.resource_released)
        );
        let _ = writeln!(
            s,
            "kbs_resource_total{{result=\"denied\"}} {}",
            g(&self.resource_denied)
        );
        let _ = writeln!(
            s,
            "kbs_resource_total{{result=\"not_found\"}} {}",
            g(&self.resource_not_found)
        );
        s
    }
}
