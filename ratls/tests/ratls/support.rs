//! One simulated home per test binary (generating its RSA-4096 roots takes seconds), an
//! [`Attester`] backed by it, and helpers to run a server and a client over loopback TCP.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use a3s_attestation::certs::Roots;
use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::policy::AppraisalPolicy;
use a3s_attestation::report::trustee::{CertType, Evidence};
use a3s_attestation::Product;
use a3s_ratls::{danger, Attested, EvidenceKind, Identity, Verifier};
use a3s_simulator::{GuestContext, KeyRequest, ReportRequest, Simulator};
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug)]
pub(crate) struct Home {
    _dir: TempDir,
    pub(crate) sim: Simulator,
    pub(crate) roots: Roots,
}

pub(crate) fn home() -> &'static Home {
    static HOME: OnceLock<Home> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("ratls-sim-home-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("creating a temporary home");
        let sim = Simulator::open_or_create(dir.path(), Product::Milan).expect("a simulator");
        let roots = sim.roots().expect("simulator roots");
        Home {
            _dir: dir,
            sim,
            roots,
        }
    })
}

/// The measurement of the guest the tests attest.
pub(crate) const MEASUREMENT: [u8; 48] = [0x4D; 48];

/// A guest of the simulated chip: reports carry its context, plus the chip's VCEK as the
/// certificate table (like an extended report).
#[derive(Debug)]
pub(crate) struct SimAttester {
    guest: GuestContext,
}

impl SimAttester {
    pub(crate) fn launch(measurement: [u8; 48]) -> Arc<Self> {
        Arc::new(Self {
            guest: GuestContext::launch(measurement),
        })
    }
}

impl Attester for SimAttester {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Evidence, HwError> {
        let sim = &home().sim;
        let request = ReportRequest {
            vmpl,
            ..ReportRequest::new(self.guest.clone(), *report_data)
        };
        let report = sim
            .report(&request)
            .map_err(|e| HwError::Simulator(e.to_string()))?;
        Ok(Evidence {
            report,
            cert_chain: vec![(CertType::Vcek, sim.default_chip().vcek_der().to_vec())],
        })
    }

    fn derived_key(&self, request: &KeyRequest) -> Result<[u8; 32], HwError> {
        home()
            .sim
            .derive_key(&self.guest, request)
            .map(|k| *k.as_bytes())
            .map_err(|e| HwError::Simulator(e.to_string()))
    }
}

/// An attested side: a fresh guest with `measurement`, its identity and attester.
pub(crate) fn attested(measurement: [u8; 48]) -> Attested {
    let attester = SimAttester::launch(measurement);
    let identity = Identity::generate(attester.as_ref(), EvidenceKind::Simulated).unwrap();
    Attested::new(Arc::new(identity), attester)
}

/// A policy allowing only [`MEASUREMENT`].
pub(crate) fn policy() -> AppraisalPolicy {
    AppraisalPolicy {
        measurements: vec![MEASUREMENT],
        ..Default::default()
    }
}

/// A verifier that accepts this home's simulated evidence under [`policy`].
pub(crate) fn sim_verifier() -> Verifier {
    danger::accept_simulated(Verifier::new(policy()), home().roots.clone())
}

/// Runs `server` on one accepted loopback connection and `client` on a connection to it.
pub(crate) async fn pair<S, SF, SO, C, CF, CO>(server: S, client: C) -> (SO, CO)
where
    S: FnOnce(TcpStream) -> SF + Send + 'static,
    SF: Future<Output = SO> + Send,
    SO: Send + 'static,
    C: FnOnce(TcpStream) -> CF,
    CF: Future<Output = CO>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        server(tcp).await
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client = client(tcp).await;
    (server.await.unwrap(), client)
}
