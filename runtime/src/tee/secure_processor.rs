//! The host as the secure processor of a simulated VM: answers the guest agent's report and
//! derived-key requests with the simulator, for the measurement recorded at launch. (An SNP
//! guest asks its real secure processor; the host never answers those.)

use a3s_attestation::hw::Attester;
use a3s_attestation::key_request::KeyRequest;
use a3s_attestation::report::trustee::CertType;
use a3s_simulator::{GuestContext, SimAttester, Simulator};
use a3s_vmm::proto::{GuestMsg, HostMsg, ReportCert};

use super::TeeError;

/// The simulated secure processor of one launched VM.
#[derive(Debug)]
pub struct SecureProcessor {
    attester: SimAttester,
}

impl SecureProcessor {
    /// The secure processor of a VM launched with `measurement`, on this home's simulator.
    ///
    /// # Errors
    /// [`TeeError::Simulator`] when the simulator cannot be opened or created.
    pub fn launch(home: &std::path::Path, measurement: [u8; 48]) -> Result<Self, TeeError> {
        let sim = Simulator::open_or_create(home, a3s_attestation::Product::Milan)
            .map_err(|e| TeeError::Simulator(e.to_string()))?;
        Ok(Self {
            attester: SimAttester::new(sim, GuestContext::launch(measurement)),
        })
    }

    /// The launch measurement it reports.
    pub fn measurement(&self) -> [u8; 48] {
        self.attester.guest().measurement
    }

    /// The answer to a guest request, or `None` when `msg` is not a request for us.
    pub fn answer(&self, msg: &GuestMsg) -> Option<HostMsg> {
        match msg {
            GuestMsg::ReportRequest {
                request,
                report_data_hex,
                vmpl,
            } => Some(
                self.report(report_data_hex, *vmpl)
                    .unwrap_or_else(|message| HostMsg::RequestFailed {
                        request: *request,
                        message,
                    })
                    .with_request(*request),
            ),
            GuestMsg::KeyRequest {
                request,
                msg_key_req_hex,
            } => Some(match self.derived_key(msg_key_req_hex) {
                Ok(key_hex) => HostMsg::DerivedKey {
                    request: *request,
                    key_hex,
                },
                Err(message) => HostMsg::RequestFailed {
                    request: *request,
                    message,
                },
            }),
            _ => None,
        }
    }

    fn report(&self, report_data_hex: &str, vmpl: u32) -> Result<HostMsg, String> {
        let data = hex::decode(report_data_hex).map_err(|e| format!("report_data: {e}"))?;
        let data: [u8; 64] = data
            .as_slice()
            .try_into()
            .map_err(|_| format!("report_data is {} bytes, not 64", data.len()))?;
        let evidence = self
            .attester
            .report(&data, vmpl)
            .map_err(|e| e.to_string())?;
        let certs = evidence
            .cert_chain
            .iter()
            .map(|(kind, der)| ReportCert {
                kind: cert_name(kind).to_owned(),
                der_hex: hex::encode(der),
            })
            .collect();
        Ok(HostMsg::Report {
            request: 0,
            report_hex: hex::encode(evidence.report.as_bytes()),
            certs,
        })
    }

    fn derived_key(&self, msg_key_req_hex: &str) -> Result<String, String> {
        let bytes = hex::decode(msg_key_req_hex).map_err(|e| format!("MSG_KEY_REQ: {e}"))?;
        let request = KeyRequest::from_bytes(&bytes).map_err(|e| e.to_string())?;
        let mut key = self
            .attester
            .derived_key(&request)
            .map_err(|e| e.to_string())?;
        let text = hex::encode(key);
        zeroize::Zeroize::zeroize(&mut key);
        Ok(text)
    }
}

fn cert_name(kind: &CertType) -> &'static str {
    match kind {
        CertType::Ark => "ARK",
        CertType::Ask => "ASK",
        CertType::Vcek => "VCEK",
        CertType::Vlek => "VLEK",
        CertType::Crl => "CRL",
        _ => "OTHER",
    }
}

trait WithRequest {
    fn with_request(self, id: u64) -> Self;
}

impl WithRequest for HostMsg {
    fn with_request(self, id: u64) -> Self {
        match self {
            HostMsg::Report {
                report_hex, certs, ..
            } => HostMsg::Report {
                request: id,
                report_hex,
                certs,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_reports_for_the_recorded_measurement_and_keys() {
        let home = tempfile::tempdir().unwrap();
        let sp = SecureProcessor::launch(home.path(), [7u8; 48]).unwrap();
        let answer = sp
            .answer(&GuestMsg::ReportRequest {
                request: 9,
                report_data_hex: "ab".repeat(64),
                vmpl: 0,
            })
            .unwrap();
        let HostMsg::Report {
            request,
            report_hex,
            certs,
        } = answer
        else {
            panic!("{answer:?}")
        };
        assert_eq!(request, 9);
        let report =
            a3s_attestation::Report::from_bytes(&hex::decode(report_hex).unwrap()).unwrap();
        assert_eq!(report.measurement(), [7u8; 48]);
        assert_eq!(report.report_data(), [0xab; 64]);
        let kinds: Vec<&str> = certs.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["VCEK", "ASK", "ARK"]);

        let bad = sp
            .answer(&GuestMsg::ReportRequest {
                request: 10,
                report_data_hex: "ab".into(),
                vmpl: 0,
            })
            .unwrap();
        assert!(matches!(bad, HostMsg::RequestFailed { request: 10, .. }));

        let req = KeyRequest::from_bytes(&[0u8; 0x28]).unwrap();
        let key = sp
            .answer(&GuestMsg::KeyRequest {
                request: 11,
                msg_key_req_hex: hex::encode(req.to_bytes()),
            })
            .unwrap();
        assert!(
            matches!(&key, HostMsg::DerivedKey { request: 11, key_hex } if key_hex.len() == 64),
            "{key:?}"
        );
        // The same measurement on the same simulated chip derives the same key: what lets a
        // later box of the same image unseal.
        let again = SecureProcessor::launch(home.path(), [7u8; 48]).unwrap();
        let key2 = again
            .answer(&GuestMsg::KeyRequest {
                request: 12,
                msg_key_req_hex: hex::encode(req.to_bytes()),
            })
            .unwrap();
        let (HostMsg::DerivedKey { key_hex: a, .. }, HostMsg::DerivedKey { key_hex: b, .. }) =
            (&key, &key2)
        else {
            panic!()
        };
        assert_eq!(a, b);
        assert!(sp.answer(&GuestMsg::Pong { nonce: 1 }).is_none());
    }
}
