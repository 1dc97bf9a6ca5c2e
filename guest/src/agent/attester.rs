//! Where the agent's reports and derived keys come from: the host-side simulator over the
//! channel ([`ChannelAttester`]) or the SEV-SNP hardware ([`HardwareAttester`]).

use std::sync::Arc;
use std::time::Duration;

use a3s_attestation::hw::{Attester, HardwareAttester, HwError};
use a3s_attestation::key_request::KeyRequest;
use a3s_attestation::report::trustee::{CertType, Evidence};
use a3s_attestation::Report;
use a3s_ratls::EvidenceKind;
use a3s_vmm::proto::{GuestMsg, ReportCert, TeeMode, WORKLOAD_SESSION};
use zeroize::{Zeroize, Zeroizing};

use super::requests::{Reply, Requests};
use crate::channel::Channel;

/// How long the agent waits for the host to answer one request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An attester usable from any thread (the KBS client, RA-TLS sessions, the seal socket).
pub(crate) type SharedAttester = Arc<dyn Attester + Send + Sync>;

/// A [`SharedAttester`] as an [`Attester`] value (for APIs generic over `A: Attester`).
#[derive(Clone)]
pub(crate) struct Shared(pub(crate) SharedAttester);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Attester for Shared {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Evidence, HwError> {
        self.0.report(report_data, vmpl)
    }

    fn derived_key(&self, request: &KeyRequest) -> Result<[u8; 32], HwError> {
        self.0.derived_key(request)
    }
}

/// The attester for `mode` and the kind of evidence it produces.
///
/// # Errors
/// For [`TeeMode::Snp`], [`HwError::NoInterface`] when this is not an SEV-SNP guest.
pub(crate) fn for_mode(
    mode: TeeMode,
    chan: &Channel,
    requests: &Arc<Requests>,
) -> Result<(SharedAttester, EvidenceKind), HwError> {
    match mode {
        TeeMode::Snp => Ok((Arc::new(HardwareAttester::open()?), EvidenceKind::Hardware)),
        // `TeeMode` is non-exhaustive: anything else is asked of the host, which refuses
        // what it does not simulate.
        _ => Ok((
            Arc::new(ChannelAttester::new(
                chan.clone(),
                requests.clone(),
                REQUEST_TIMEOUT,
            )),
            EvidenceKind::Simulated,
        )),
    }
}

/// Asks the host (which plays the secure processor for a simulated TEE) for reports and
/// derived keys: `ReportRequest`/`KeyRequest` out, `Report`/`DerivedKey`/`RequestFailed` back.
#[derive(Debug)]
pub(crate) struct ChannelAttester {
    chan: Channel,
    requests: Arc<Requests>,
    timeout: Duration,
}

impl ChannelAttester {
    /// Requests go out on `chan`; answers arrive through `requests`.
    pub(crate) fn new(chan: Channel, requests: Arc<Requests>, timeout: Duration) -> Self {
        Self {
            chan,
            requests,
            timeout,
        }
    }

    fn ask(&self, what: &str, msg: impl FnOnce(u64) -> GuestMsg) -> Result<Reply, HwError> {
        let (id, rx) = self.requests.register();
        if !self.chan.msg(WORKLOAD_SESSION, &msg(id)) {
            self.requests.cancel(id);
            return Err(HwError::Simulator(format!(
                "cannot send the {what} request: the host channel is closed"
            )));
        }
        match rx.recv_timeout(self.timeout) {
            Ok(Reply::Failed(message)) => Err(HwError::Simulator(format!(
                "the host refused the {what} request: {message}"
            ))),
            Ok(reply) => Ok(reply),
            Err(_) => {
                self.requests.cancel(id);
                Err(HwError::Simulator(format!(
                    "no answer to the {what} request within {} s (does the host run this box \
                     with --tee-simulate?)",
                    self.timeout.as_secs_f32()
                )))
            }
        }
    }
}

impl Attester for ChannelAttester {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Evidence, HwError> {
        let reply = self.ask("report", |request| GuestMsg::ReportRequest {
            request,
            report_data_hex: hex::encode(report_data),
            vmpl,
        })?;
        let Reply::Report { report_hex, certs } = reply else {
            return Err(HwError::Simulator(
                "the host answered the report request with a derived key".into(),
            ));
        };
        let raw = hex::decode(report_hex.trim())
            .map_err(|e| HwError::Simulator(format!("the host's report is not hex: {e}")))?;
        let report = Report::from_bytes(&raw)?;
        if report.report_data() != *report_data {
            return Err(HwError::Simulator(
                "the host's report does not carry the requested REPORT_DATA".into(),
            ));
        }
        Ok(Evidence {
            report,
            cert_chain: certs.iter().map(cert).collect::<Result<_, _>>()?,
        })
    }

    fn derived_key(&self, request: &KeyRequest) -> Result<[u8; 32], HwError> {
        let reply = self.ask("derived-key", |id| GuestMsg::KeyRequest {
            request: id,
            msg_key_req_hex: hex::encode(request.to_bytes()),
        })?;
        let Reply::Key(key_hex) = reply else {
            return Err(HwError::Simulator(
                "the host answered the derived-key request with a report".into(),
            ));
        };
        let mut bytes = Zeroizing::new(
            hex::decode(key_hex.trim())
                .map_err(|_| HwError::Simulator("the host's derived key is not hex".into()))?,
        );
        let mut key = [0u8; 32];
        if bytes.len() != key.len() {
            return Err(HwError::Simulator(format!(
                "the host's derived key is {} bytes, expected 32",
                bytes.len()
            )));
        }
        key.copy_from_slice(&bytes);
        bytes.zeroize();
        Ok(key)
    }
}

fn cert(c: &ReportCert) -> Result<(CertType, Vec<u8>), HwError> {
    let kind = match c.kind.as_str() {
        "ARK" => CertType::Ark,
        "ASK" => CertType::Ask,
        "VCEK" => CertType::Vcek,
        "VLEK" => CertType::Vlek,
        other => {
            return Err(HwError::Simulator(format!(
                "the host sent a certificate of unknown kind {other:?} (expected ARK, ASK, VCEK \
                 or VLEK)"
            )))
        }
    };
    let der = hex::decode(c.der_hex.trim()).map_err(|e| {
        HwError::Simulator(format!("the host's {} certificate is not hex: {e}", c.kind))
    })?;
    Ok((kind, der))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use a3s_attestation::certs::{CertChain, Certificate};
    use a3s_attestation::key_request::GuestFieldSelect;
    use time::OffsetDateTime;

    use super::*;
    use crate::agent::testing::{sim, SimHost, MEASUREMENT};

    #[test]
    fn report_round_trip_verifies_with_the_simulator_roots() {
        let host = SimHost::start(MEASUREMENT);
        let attester = host.attester(Duration::from_secs(30));
        let evidence = attester.report(&[0x5A; 64], 0).unwrap();
        assert_eq!(evidence.report.report_data(), [0x5A; 64]);
        assert_eq!(evidence.report.measurement(), MEASUREMENT);
        let certs = evidence
            .cert_chain
            .iter()
            .map(|(_, der)| Certificate::from_der(der).unwrap());
        let chain = CertChain::from_certificates(certs).unwrap();
        let roots = sim().roots().unwrap();
        a3s_attestation::verify::verify(
            &evidence.report,
            &chain,
            &roots,
            OffsetDateTime::now_utc(),
            None,
        )
        .unwrap();
    }

    #[test]
    fn derived_key_equals_the_simulators() {
        let host = SimHost::start(MEASUREMENT);
        let attester = host.attester(Duration::from_secs(30));
        let request = KeyRequest::new(GuestFieldSelect::MEASUREMENT | GuestFieldSelect::POLICY);
        let key = attester.derived_key(&request).unwrap();
        let want = sim().derive_key(&host.guest(), &request).unwrap();
        assert_eq!(&key, want.as_bytes());
        // Another measurement derives another key.
        let other = SimHost::start([0x11; 48]);
        let key2 = other
            .attester(Duration::from_secs(30))
            .derived_key(&request)
            .unwrap();
        assert_ne!(key, key2);
    }

    #[test]
    fn request_failed_surfaces_as_an_error_naming_the_reason() {
        let host = SimHost::start(MEASUREMENT);
        let attester = host.attester(Duration::from_secs(30));
        // The simulator refuses a VMPL beyond 3; the host relays its reason.
        let err = attester.report(&[0; 64], 7).unwrap_err().to_string();
        assert!(err.contains("refused the report request"), "{err}");
    }

    #[test]
    fn a_silent_host_times_out_with_a_clear_error() {
        let host = SimHost::silent();
        let attester = host.attester(Duration::from_millis(200));
        let err = attester.report(&[0; 64], 0).unwrap_err().to_string();
        assert!(err.contains("no answer to the report request"), "{err}");
        let err = attester
            .derived_key(&KeyRequest::new(GuestFieldSelect::MEASUREMENT))
            .unwrap_err()
            .to_string();
        assert!(err.contains("derived-key"), "{err}");
    }

    #[test]
    fn snp_mode_without_hardware_fails_with_the_hardware_error() {
        let host = SimHost::silent();
        let err = for_mode(TeeMode::Snp, host.chan(), host.requests())
            .err()
            .expect("this test machine is not an SEV-SNP guest");
        assert!(matches!(err, HwError::NoInterface), "{err}");
    }
}
