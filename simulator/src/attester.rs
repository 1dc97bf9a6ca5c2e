//! The simulator as an [`Attester`] for one launched guest: what the host hands a
//! `--tee-simulate` VM in place of the secure processor.

use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::key_request::KeyRequest;
use a3s_attestation::report::trustee::{CertType, Evidence};

use crate::{GuestContext, ReportRequest, SimError, Simulator};

/// Reports and derived keys for `guest`, signed and derived on the simulator's default chip.
/// Evidence carries the VCEK, ASK and ARK, as a host's extended report would.
#[derive(Debug)]
pub struct SimAttester {
    sim: Simulator,
    guest: GuestContext,
}

impl SimAttester {
    /// The attester of `guest` on `sim`.
    pub fn new(sim: Simulator, guest: GuestContext) -> Self {
        Self { sim, guest }
    }

    /// The guest it attests.
    pub fn guest(&self) -> &GuestContext {
        &self.guest
    }

    /// The simulator it signs with.
    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }
}

impl Attester for SimAttester {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Evidence, HwError> {
        let mut request = ReportRequest::new(self.guest.clone(), *report_data);
        request.vmpl = vmpl;
        let report = self
            .sim
            .report(&request)
            .map_err(|e| HwError::Simulator(e.to_string()))?;
        let product = self.sim.product();
        let sim_err = |e: SimError| HwError::Simulator(e.to_string());
        let cert_chain = vec![
            (CertType::Vcek, self.sim.default_chip().vcek_der().to_vec()),
            (
                CertType::Ask,
                self.sim.ask_der(product).map_err(sim_err)?.to_vec(),
            ),
            (
                CertType::Ark,
                self.sim.ark_der(product).map_err(sim_err)?.to_vec(),
            ),
        ];
        Ok(Evidence { report, cert_chain })
    }

    fn derived_key(&self, request: &KeyRequest) -> Result<[u8; 32], HwError> {
        self.sim
            .derive_key(&self.guest, request)
            .map(|k| *k.as_bytes())
            .map_err(|e| HwError::Simulator(e.to_string()))
    }
}
