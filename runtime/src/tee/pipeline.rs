//! The monitor's side of a TEE box's launch: measure the exact boot artefacts, refuse a
//! mismatching expected measurement, stand up the simulated secure processor and the
//! ephemeral KBS, tell the agent what to fetch, then answer its requests and audit each step.

use std::path::Path;

use a3s_vmm::proto::{GuestMsg, HostMsg, SecretSpec, TeeSetup};
use a3s_vmm::VmConfig;

use super::launch;
use super::layer_cache::{LayerCache, LayerId};
use super::local_kbs::{self, LocalKbs};
use super::secure_processor::SecureProcessor;
use super::spec::{parse_measurement, TeeMode, RATLS_GUEST_PORT};
use super::{TeeError, TeeRecord, TeeSpec};
use crate::audit::{AuditLog, Event, Outcome};

/// One TEE launch, alive for the monitor's life.
#[derive(Debug)]
pub struct TeeLaunch {
    /// What the agent is told in `Start`.
    pub setup: TeeSetup,
    /// What the box record shows.
    pub record: TeeRecord,
    sp: Option<SecureProcessor>,
    kbs: Option<LocalKbs>,
    /// The KBS as the host reaches it (`None`: the box fetches no secrets).
    host_kbs_url: Option<String>,
    /// A bridged box's relay to a host-loopback KBS ([`TeeLaunch::relay_kbs`]).
    relay: Option<crate::network::forward::Forwarders>,
    /// Where a layer the guest makes is kept ([`super::layer_cache`]).
    layer: Option<KeptLayer>,
    audit: AuditLog,
    box_id: String,
}

/// The box's layer disk and the cache entry it belongs to.
#[derive(Debug)]
struct KeptLayer {
    cache: LayerCache,
    mode: TeeMode,
    disk: std::path::PathBuf,
    measurement: String,
    policy: Option<u64>,
    size: u64,
}

impl KeptLayer {
    fn id(&self) -> LayerId<'_> {
        LayerId {
            mode: self.mode,
            measurement: &self.measurement,
            policy: self.policy,
            size: self.size,
        }
    }
}

impl TeeLaunch {
    /// Measures the launch and prepares the host side. Every decision is audited before it
    /// takes effect; a refusal is returned as the error.
    ///
    /// # Errors
    /// [`TeeError`]: no SNP host, unreadable artefacts, measurement mismatch, simulator or
    /// local KBS failures.
    pub fn prepare(
        home: &Path,
        box_id: &str,
        spec: &TeeSpec,
        config: &VmConfig,
        has_network: bool,
    ) -> Result<Self, TeeError> {
        let audit = AuditLog::open(home.join("audit"));
        let event = |action: &str, outcome: Outcome, msg: &str| {
            Event::new(action, outcome, msg).with_box(box_id)
        };
        if spec.mode == TeeMode::Snp {
            // Checked at create and at prepare; the host may have changed since.
            if let Err(e) = a3s_vmm::snp::check_host(Path::new("/")) {
                let err = TeeError::NoSnp(e.to_string());
                let _ = audit.record(&event("tee.launch", Outcome::Denied, &err.to_string()));
                return Err(err);
            }
        }
        let measured = if std::env::var(super::digest_cache::CACHE_ENV).as_deref() == Ok("off") {
            launch::measure_config(spec.mode, config)
        } else {
            super::digest_cache::DigestCache::open(home)
                .and_then(|cache| launch::measure_config_cached(spec.mode, config, &cache))
        };
        let measured = measured.inspect_err(|err| {
            if matches!(err, TeeError::NoSnp(_)) {
                let _ = audit.record(&event("tee.launch", Outcome::Denied, &err.to_string()));
            }
        })?;
        let actual = hex::encode(measured.digest);
        let mut measure_event = event(
            "tee.measure",
            Outcome::Success,
            "launch measurement computed",
        )
        .with("measurement", actual.as_str())
        .with("simulated", spec.simulated().to_string().as_str());
        if let Some(expected) = &spec.expected_measurement {
            measure_event = measure_event.with("expected", expected.to_lowercase().as_str());
        }
        record(&audit, &measure_event)?;
        if let Some(expected) = &spec.expected_measurement {
            let want = parse_measurement(expected)?;
            if want != measured.digest {
                let err = TeeError::MeasurementMismatch {
                    expected: hex::encode(want),
                    actual: actual.clone(),
                };
                record(
                    &audit,
                    &event("tee.measurement_check", Outcome::Denied, &err.to_string())
                        .with("expected", hex::encode(want).as_str())
                        .with("measurement", actual.as_str()),
                )?;
                return Err(err);
            }
            record(
                &audit,
                &event(
                    "tee.measurement_check",
                    Outcome::Success,
                    "matches --expected-measurement",
                )
                .with("measurement", actual.as_str()),
            )?;
        }
        // Only a simulated VM asks the host for reports; an SNP guest asks its own firmware.
        let sp = if spec.simulated() {
            Some(SecureProcessor::launch(home, measured.digest)?)
        } else {
            None
        };
        let kbs = if spec.has_file_secrets() {
            let kbs = LocalKbs::start(home, spec, &measured.digest)?;
            record(
                &audit,
                &event(
                    "tee.local_kbs",
                    Outcome::Success,
                    "ephemeral KBS serving file secrets",
                )
                .with("listen", kbs.addr().to_string().as_str())
                .with(
                    "secrets",
                    spec.secrets
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                        .as_str(),
                ),
            )?;
            Some(kbs)
        } else {
            None
        };
        let kbs_url = match (&kbs, &spec.kbs_url) {
            (Some(k), _) => Some(k.guest_url()),
            (None, Some(url)) => Some(local_kbs::guest_reachable(url)),
            (None, None) => None,
        };
        let host_kbs_url = match (&kbs, &spec.kbs_url) {
            (Some(k), _) => Some(format!("http://{}", k.addr())),
            (None, url) => url.clone(),
        };
        let (layer, layer_prefilled) = kept_layer(home, spec.mode, &actual, config);
        if layer_prefilled {
            let _ = audit.record(&event(
                "tee.layer_kept",
                Outcome::Success,
                "the first boot starts from the encrypted layer an earlier box of this \
                 measurement made",
            ));
        }
        let setup = TeeSetup {
            layer_prefilled,
            mode: spec.mode,
            kbs_url,
            secrets: spec
                .secrets
                .iter()
                .map(|s| SecretSpec {
                    name: s.name.clone(),
                    resource: s.resource(),
                })
                .collect(),
            ratls_port: has_network.then_some(RATLS_GUEST_PORT),
        };
        Ok(Self {
            setup,
            record: TeeRecord {
                mode: spec.mode,
                simulated: spec.simulated(),
                measurement: actual,
                expected_measurement: spec.expected_measurement.as_ref().map(|m| m.to_lowercase()),
                measure_ms: measured.elapsed_ms,
                steps: Vec::new(),
                layer_prefilled,
            },
            sp,
            kbs,
            host_kbs_url,
            relay: None,
            layer,
            audit,
            box_id: box_id.to_owned(),
        })
    }

    /// For a box on a bridge network or a pod VM on a CNI network, whose guest reaches the
    /// host only at its network's gateway: a KBS on host loopback (the ephemeral one, or a loopback `--kbs-url`) is
    /// reached through a TCP relay this monitor runs on `gateway` (a free port, alive while
    /// the launch is), and the agent is told that address. Other KBS URLs stay as given (the
    /// guest reaches them through the network's NAT). Nothing here is on the measured command
    /// line: the URL travels in `Start`.
    ///
    /// # Errors
    /// [`TeeError::LocalKbs`] when the relay cannot listen on the gateway.
    pub fn relay_kbs(&mut self, gateway: std::net::Ipv4Addr) -> Result<(), TeeError> {
        let Some(url) = self.host_kbs_url.as_deref() else {
            return Ok(());
        };
        let Some((scheme, target, rest)) = local_kbs::loopback_target(url) else {
            self.setup.kbs_url = Some(url.to_owned());
            return Ok(());
        };
        let (relay, at) =
            crate::network::forward::relay_to(std::net::SocketAddrV4::new(gateway, 0), target)
                .map_err(|e| {
                    TeeError::LocalKbs(format!("relaying the KBS on the gateway {gateway}: {e}"))
                })?;
        self.setup.kbs_url = Some(format!("{scheme}{at}{rest}"));
        let _ = self.audit.record(
            &Event::new(
                "tee.kbs_relay",
                Outcome::Success,
                "the box's bridge network reaches the KBS through the monitor",
            )
            .with_box(&self.box_id)
            .with("listen", at.to_string().as_str())
            .with("target", target.to_string().as_str()),
        );
        self.relay = Some(relay);
        Ok(())
    }

    /// Handles a TEE message from the guest: the reply to send (requests), or `None`.
    /// Steps are audited and appended to the record; a failure returns its message in `Err`.
    ///
    /// # Errors
    /// The guest agent's failure (`step: message`), after auditing it.
    pub fn on_guest(&mut self, msg: &GuestMsg) -> Result<Option<HostMsg>, String> {
        match msg {
            GuestMsg::ReportRequest { .. } | GuestMsg::KeyRequest { .. } => {
                Ok(self.sp.as_ref().and_then(|sp| sp.answer(msg)))
            }
            GuestMsg::LayerMade { request } => {
                // Once per boot, right after guest-init made the layer: a later request (from
                // whatever else in the guest could write to the channel) keeps nothing.
                if let Some(layer) = self.layer.take() {
                    if let Err(e) = layer.cache.keep(&layer.id(), &layer.disk) {
                        // The monitor's stderr is the box's monitor.log.
                        eprintln!("a3s-box monitor: keeping the new encrypted layer failed: {e}");
                    }
                }
                Ok(Some(HostMsg::LayerKept { request: *request }))
            }
            GuestMsg::TeeStep {
                step,
                detail,
                elapsed_ms,
            } => {
                let (action, message) = match step.as_str() {
                    "secret" => (
                        "tee.secret_released",
                        format!("secret {detail} placed in /run/secrets"),
                    ),
                    "kbs_attest" => (
                        "tee.kbs_attest",
                        "the KBS accepted the VM's evidence".to_owned(),
                    ),
                    "evidence" => ("tee.evidence", "the agent obtained its evidence".to_owned()),
                    other => ("tee.step", format!("agent step {other} done")),
                };
                let mut e = Event::new(action, Outcome::Success, &message)
                    .with_box(&self.box_id)
                    .with("elapsed_ms", elapsed_ms.to_string().as_str());
                if !detail.is_empty() {
                    e = e.with("name", detail.as_str());
                }
                let _ = self.audit.record(&e);
                let label = if detail.is_empty() {
                    step.clone()
                } else {
                    format!("{step}:{detail}")
                };
                self.record.steps.push((label, *elapsed_ms));
                if step == "secrets_written" {
                    // Every secret is in the guest: nobody else may fetch them.
                    if let Some(mut k) = self.kbs.take() {
                        k.stop();
                    }
                }
                Ok(None)
            }
            GuestMsg::TeeFailed { step, message } => {
                let text = format!("TEE step {step} failed: {message}");
                let _ = self.audit.record(
                    &Event::new("tee.agent", Outcome::Failure, &text)
                        .with_box(&self.box_id)
                        .with("step", step.as_str()),
                );
                Err(text)
            }
            _ => Ok(None),
        }
    }
}

/// The box's encrypted layer disk and its cache entry, and whether the disk (never written)
/// was filled from it. Without a disk or a cache the guest formats as before.
fn kept_layer(
    home: &Path,
    mode: TeeMode,
    measurement: &str,
    config: &VmConfig,
) -> (Option<KeptLayer>, bool) {
    let Some(disk) = config
        .disks
        .iter()
        .find(|d| d.serial == a3s_vmm::disk::RW_SERIAL && !d.readonly)
    else {
        return (None, false);
    };
    let (Ok(cache), Ok(meta)) = (LayerCache::open(home), std::fs::metadata(&disk.path)) else {
        return (None, false);
    };
    let layer = KeptLayer {
        cache,
        mode,
        disk: disk.path.clone(),
        measurement: measurement.to_owned(),
        policy: config.snp.as_ref().map(|s| s.policy),
        size: meta.len(),
    };
    let prefilled = match layer.cache.prefill(&layer.id(), &layer.disk) {
        Ok(filled) => filled,
        // The guest formats the disk as it is (a failed prefill leaves it as it was).
        Err(e) => {
            eprintln!("a3s-box monitor: starting from the kept encrypted layer failed: {e}");
            false
        }
    };
    (Some(layer), prefilled)
}

fn record(audit: &AuditLog, e: &Event) -> Result<(), TeeError> {
    audit
        .record(e)
        .map(|_| ())
        .map_err(|err| TeeError::Audit(err.to_string()))
}
