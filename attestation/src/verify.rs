//! Verifying a report: certificate chain to the trusted roots, VEK extensions against the
//! report, and the report signature. A [`VerifiedReport`] can only be built here.

use crate::report::{KeyInfo, SigningKey, Tcb, TcbLayout};
use crate::{Product, Report};

/// A report whose signature chains to trusted roots. Only the verifier constructs it.
#[derive(Debug, Clone)]
pub struct VerifiedReport {
    report: Report,
    product: Product,
    signing_key: SigningKey,
    simulated: bool,
}

impl VerifiedReport {
    pub(crate) fn new(report: Report, product: Product, simulated: bool) -> Self {
        let signing_key = report.key_info().signing_key();
        Self {
            report,
            product,
            signing_key,
            simulated,
        }
    }

    /// The verified report.
    pub fn report(&self) -> &Report {
        &self.report
    }
    /// The generation of the chip that signed it (from the VEK's product name).
    pub fn product(&self) -> Product {
        self.product
    }
    /// The TCB layout of the signing chip.
    pub fn tcb_layout(&self) -> TcbLayout {
        self.report.tcb_layout_for(self.product)
    }
    /// REPORTED_TCB decoded for the signing chip's layout.
    pub fn reported_tcb(&self) -> Tcb {
        self.report.reported_tcb().decode(self.tcb_layout())
    }
    /// Which key signed the report (VCEK or VLEK).
    pub fn signing_key(&self) -> SigningKey {
        self.signing_key
    }
    /// Key information of the report.
    pub fn key_info(&self) -> KeyInfo {
        self.report.key_info()
    }
    /// The report chains to a simulator's roots, not AMD's.
    pub fn simulated(&self) -> bool {
        self.simulated
    }
}
