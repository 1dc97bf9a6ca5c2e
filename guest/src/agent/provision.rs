//! Secrets before the workload: evidence → KBS attestation → each secret → files.
//!
//! Each finished step is reported (its name, the secret's name for `secret`, the time it
//! took); the first failure names its step and nothing after it runs:
//!
//! | step | what | elapsed |
//! |------|------|---------|
//! | `evidence` | the report for the KBS challenge | the report request |
//! | `kbs_attest` | `/kbs/v0/auth` and `/kbs/v0/attest` | the two round trips, without `evidence` |
//! | `secret` (detail: name) | `/kbs/v0/resource/...`, JWE decryption, `/run/secrets/<name>` written | that resource and its file |
//! | `secrets_written` | every secret is in place (the host may stop its ephemeral KBS) | the tmpfs mount and all file writes |
//!
//! The tmpfs is mounted after the KBS accepted the evidence; each secret is written as soon as
//! it arrives (its value is wiped from memory right after).

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::key_request::KeyRequest;
use a3s_attestation::report::trustee::Evidence;
use a3s_kbs::client::{ClientError, KbsClient};
use a3s_kbs::protocol::ResourcePath;
use a3s_vmm::proto::TeeSetup;

use super::secrets::{self, Secret};
use super::StepError;

/// One finished step, as sent in `TeeStep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) name: &'static str,
    pub(crate) detail: String,
    pub(crate) elapsed: Duration,
}

/// Where the secrets go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement<'a> {
    /// The directory (`/run/secrets` in the guest).
    pub(crate) root: &'a Path,
    /// Mount a tmpfs there first (the guest; tests write into a temporary directory).
    pub(crate) mount_tmpfs: bool,
    /// uid and gid of the workload's user.
    pub(crate) owner: Option<(u32, u32)>,
}

/// Fetches `tee.secrets` from the KBS with `attester`'s evidence and writes them, reporting
/// each step to `done`. No secrets: nothing to do.
///
/// # Errors
/// [`StepError`] naming the failed step.
pub(crate) fn provision(
    tee: &TeeSetup,
    attester: &dyn Attester,
    placement: Placement<'_>,
    done: &mut dyn FnMut(Step),
) -> Result<(), StepError> {
    if tee.secrets.is_empty() {
        return Ok(());
    }
    let mut paths = Vec::with_capacity(tee.secrets.len());
    for s in &tee.secrets {
        secrets::validate_name(&s.name).map_err(|e| StepError::new("secret", format!("{e:#}")))?;
        let path: ResourcePath = s
            .resource
            .parse()
            .map_err(|e| StepError::new("secret", format!("secret {}: {e}", s.name)))?;
        paths.push(path);
    }
    let Some(url) = tee.kbs_url.as_deref() else {
        return Err(StepError::new(
            "kbs_attest",
            format!(
                "{} secret(s) requested but no KBS URL was given",
                tee.secrets.len()
            ),
        ));
    };
    let client = KbsClient::new(url).map_err(|e| StepError::new("kbs_attest", describe(&e)))?;

    let timed = TimedAttester::new(attester);
    let started = Instant::now();
    let session = client.attest(&timed);
    let evidence = timed.elapsed.get();
    let session = match session {
        Ok(s) => s,
        Err(e @ ClientError::Attester(_)) => return Err(StepError::new("evidence", describe(&e))),
        Err(e) => {
            if let Some(t) = evidence {
                done(step("evidence", String::new(), t));
            }
            return Err(StepError::new("kbs_attest", describe(&e)));
        }
    };
    let evidence = evidence.unwrap_or_default();
    done(step("evidence", String::new(), evidence));
    done(step(
        "kbs_attest",
        String::new(),
        started.elapsed().saturating_sub(evidence),
    ));

    let t = Instant::now();
    if placement.mount_tmpfs {
        secrets::mount_tmpfs(placement.root)
            .map_err(|e| StepError::new("secrets_written", format!("{e:#}")))?;
    }
    secrets::prepare_root(placement.root, placement.owner)
        .map_err(|e| StepError::new("secrets_written", format!("{e:#}")))?;
    let mut writing = t.elapsed();

    for (spec, path) in tee.secrets.iter().zip(&paths) {
        let t = Instant::now();
        let value = client.resource(&session, path).map_err(|e| {
            StepError::new("secret", format!("secret {}: {}", spec.name, describe(&e)))
        })?;
        let secret = Secret {
            name: spec.name.clone(),
            value,
        };
        let w = Instant::now();
        secrets::write_one(placement.root, &secret, placement.owner)
            .map_err(|e| StepError::new("secret", format!("secret {}: {e:#}", spec.name)))?;
        writing += w.elapsed();
        drop(secret);
        done(step("secret", spec.name.clone(), t.elapsed()));
    }
    done(step("secrets_written", String::new(), writing));
    Ok(())
}

fn step(name: &'static str, detail: String, elapsed: Duration) -> Step {
    Step {
        name,
        detail,
        elapsed,
    }
}

/// A KBS client error with its causes and the client's hint.
fn describe(e: &ClientError) -> String {
    let mut out = super::error_chain(e);
    if let Some(hint) = e.hint() {
        out.push_str(" (hint: ");
        out.push_str(&hint);
        out.push(')');
    }
    out
}

/// Times the report the KBS client asks for (the `evidence` step).
struct TimedAttester<'a> {
    inner: &'a dyn Attester,
    elapsed: Cell<Option<Duration>>,
}

impl<'a> TimedAttester<'a> {
    fn new(inner: &'a dyn Attester) -> Self {
        Self {
            inner,
            elapsed: Cell::new(None),
        }
    }
}

impl Attester for TimedAttester<'_> {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Evidence, HwError> {
        let t = Instant::now();
        let r = self.inner.report(report_data, vmpl);
        let total = self.elapsed.get().unwrap_or_default() + t.elapsed();
        self.elapsed.set(Some(total));
        r
    }

    fn derived_key(&self, request: &KeyRequest) -> Result<[u8; 32], HwError> {
        self.inner.derived_key(request)
    }
}

#[cfg(test)]
mod tests {
    use a3s_vmm::proto::{SecretSpec, TeeMode};

    use super::*;

    fn setup(secrets: &[(&str, &str)], url: Option<&str>) -> TeeSetup {
        TeeSetup {
            layer_prefilled: false,
            mode: TeeMode::Simulated,
            kbs_url: url.map(str::to_owned),
            secrets: secrets
                .iter()
                .map(|(n, r)| SecretSpec {
                    name: (*n).into(),
                    resource: (*r).into(),
                })
                .collect(),
            ratls_port: None,
        }
    }

    struct NoTee;
    impl Attester for NoTee {
        fn report(&self, _: &[u8; 64], _: u32) -> Result<Evidence, HwError> {
            Err(HwError::NoInterface)
        }
        fn derived_key(&self, _: &KeyRequest) -> Result<[u8; 32], HwError> {
            Err(HwError::NoInterface)
        }
    }

    fn run(tee: &TeeSetup, root: &Path) -> (Result<(), StepError>, Vec<Step>) {
        let mut steps = Vec::new();
        let r = provision(
            tee,
            &NoTee,
            Placement {
                root,
                mount_tmpfs: false,
                owner: None,
            },
            &mut |s| steps.push(s),
        );
        (r, steps)
    }

    #[test]
    fn no_secrets_is_nothing_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let (r, steps) = run(&setup(&[], None), &tmp.path().join("s"));
        r.unwrap();
        assert!(steps.is_empty());
        assert!(!tmp.path().join("s").exists());
    }

    #[test]
    fn bad_names_paths_and_missing_url_fail_before_any_request() {
        let tmp = tempfile::tempdir().unwrap();
        let (r, _) = run(
            &setup(&[("../x", "default/a/b")], Some("http://127.0.0.1:9")),
            tmp.path(),
        );
        assert_eq!(r.unwrap_err().step, "secret");
        let (r, _) = run(
            &setup(&[("x", "not-a-path")], Some("http://127.0.0.1:9")),
            tmp.path(),
        );
        let e = r.unwrap_err();
        assert_eq!(e.step, "secret");
        assert!(e.message.contains("secret x"), "{}", e.message);
        let (r, _) = run(&setup(&[("x", "default/a/b")], None), tmp.path());
        assert_eq!(r.unwrap_err().step, "kbs_attest");
    }

    #[test]
    fn an_unreachable_kbs_fails_the_kbs_attest_step() {
        // A port nothing listens on: bind one and drop it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tmp = tempfile::tempdir().unwrap();
        let (r, steps) = run(
            &setup(
                &[("x", "default/a/b")],
                Some(&format!("http://127.0.0.1:{port}")),
            ),
            tmp.path(),
        );
        let e = r.unwrap_err();
        assert_eq!(e.step, "kbs_attest", "{}", e.message);
        assert!(e.message.contains("cannot reach the KBS"), "{}", e.message);
        assert!(steps.is_empty());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
