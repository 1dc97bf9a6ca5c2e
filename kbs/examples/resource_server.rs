//! A broker for load tests of `GET /kbs/v0/resource` with a Bearer token (bench/kbs.sh):
//! in-memory storage holding one 64-byte resource and the launch measurement of a simulated
//! guest, served as `a3s-box kbs serve` serves (one single-threaded runtime per core) on a free
//! loopback port. It attests that guest once through the real
//! protocol (auth → attest with simulator evidence) and prints the address and the token:
//!
//! ```text
//! listening on 127.0.0.1:PORT
//! token eyJ...
//! ```
//!
//! Uses only the crate's public API, so the same file builds against older revisions for
//! before/after comparisons.

use std::sync::Arc;

use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::key_request::KeyRequest;
use a3s_attestation::report::trustee::{CertType, Evidence};
use a3s_attestation::Product;
use a3s_kbs::client::KbsClient;
use a3s_kbs::storage::{Namespace, SqliteStorage, Storage};
use a3s_kbs::verifier::EvidenceVerifier;
use a3s_kbs::{AppState, Config};
use a3s_simulator::{GuestContext, ReportRequest, Simulator};

const MEASUREMENT: [u8; 48] = [0x5a; 48];

struct SimAttester<'a> {
    sim: &'a Simulator,
}

impl Attester for SimAttester<'_> {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Evidence, HwError> {
        let mut request = ReportRequest::new(GuestContext::launch(MEASUREMENT), *report_data);
        request.vmpl = vmpl;
        let report = self
            .sim
            .report(&request)
            .map_err(|e| HwError::Simulator(e.to_string()))?;
        let p = self.sim.product();
        let der = |d: Option<&[u8]>| d.map(<[u8]>::to_vec).unwrap_or_default();
        Ok(Evidence {
            report,
            cert_chain: vec![
                (CertType::Vcek, self.sim.default_chip().vcek_der().to_vec()),
                (CertType::Ask, der(self.sim.ask_der(p).ok())),
                (CertType::Ark, der(self.sim.ark_der(p).ok())),
            ],
        })
    }

    fn derived_key(&self, _: &KeyRequest) -> Result<[u8; 32], HwError> {
        Err(HwError::Simulator("unused".into()))
    }
}

fn main() {
    let home = tempfile::tempdir().expect("a temporary simulator home");
    let sim = Simulator::open_or_create(home.path(), Product::Milan).expect("a simulator");
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::in_memory().expect("in-memory SQLite"));
    let measurement = format!("[\"{}\"]", hex::encode(MEASUREMENT));
    storage
        .put(
            Namespace::ReferenceValue,
            "snp_launch_measurement",
            measurement.as_bytes(),
        )
        .expect("storing the reference value");
    storage
        .put(Namespace::Resource, "default/key/1", &[0x42; 64])
        .expect("storing the resource");
    let verifier =
        EvidenceVerifier::new(None).allow_simulated(sim.roots().expect("simulator roots"));
    let state = AppState::new(Config::new(storage, verifier)).expect("broker state");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Served as `a3s-box kbs serve` serves; connections queue on the bound socket meanwhile.
    let server = std::thread::spawn(move || {
        a3s_kbs::serve::serve_per_core(listener, a3s_kbs::app(state), None, threads)
    });
    let client = KbsClient::new(&format!("http://{addr}")).expect("a client");
    let session = client
        .attest(&SimAttester { sim: &sim })
        .expect("attesting the simulated guest");
    println!("listening on {addr}");
    println!("token {}", session.token);
    match server.join() {
        Ok(result) => result.expect("serving"),
        Err(_) => panic!("the server thread panicked"),
    }
}
