//! The guest's KBS client, round after round in one process, for `bench/kbs-client.sh`: what
//! a box's `kbs_attest` and `secret` steps cost the first time their code runs and once it has
//! run. Under QEMU's TCG (the bench runs the client under `qemu-x86_64`) the first round also
//! pays for translating every piece of client code it reaches; a box attests once per boot,
//! so its steps are first rounds.
//!
//! ```text
//! attest_rounds serve HOME ADDR_FILE     a broker accepting HOME's simulator; writes its address
//! attest_rounds client HOME URL ROUNDS   one line per round: attest_ms evidence_ms resource_ms
//! ```
//!
//! The simulator signs the evidence in the client's process, standing in for the host's
//! answer to the guest's report request; its time is reported apart (`evidence_ms`) and not
//! counted in `attest_ms`, as a box reports its `evidence` step apart from `kbs_attest`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench tool: any failure ends the run

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::key_request::KeyRequest;
use a3s_attestation::report::trustee::Evidence;
use a3s_attestation::Product;
use a3s_kbs::client::KbsClient;
use a3s_kbs::protocol::ResourcePath;
use a3s_kbs::storage::{Namespace, SqliteStorage, Storage};
use a3s_kbs::verifier::EvidenceVerifier;
use a3s_kbs::{AdminAuth, AppState, Config};
use a3s_simulator::{GuestContext, SimAttester, Simulator};

const MEASUREMENT: [u8; 48] = [0x5a; 48];
const RESOURCE: &str = "default/key/1";
const SECRET: &[u8] = b"bench secret";

/// The simulator's evidence for [`MEASUREMENT`], each report timed.
struct Timed {
    inner: SimAttester,
    spent: Cell<Duration>,
}

impl Attester for Timed {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Evidence, HwError> {
        let t = Instant::now();
        let evidence = self.inner.report(report_data, vmpl);
        self.spent.set(self.spent.get() + t.elapsed());
        evidence
    }

    fn derived_key(&self, request: &KeyRequest) -> Result<[u8; 32], HwError> {
        self.inner.derived_key(request)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One box's worth: a client with a fresh key, `/auth` + `/attest`, one resource.
fn round(url: &str, home: &Path) -> (Duration, Duration, Duration) {
    let sim = Simulator::open_or_create(home, Product::Milan).unwrap();
    let attester = Timed {
        inner: SimAttester::new(sim, GuestContext::launch(MEASUREMENT)),
        spent: Cell::new(Duration::ZERO),
    };
    let t = Instant::now();
    let client = KbsClient::new(url).unwrap();
    let session = client.attest(&attester).unwrap();
    let attest = t.elapsed();
    let path: ResourcePath = RESOURCE.parse().unwrap();
    let t = Instant::now();
    let value = client.resource(&session, &path).unwrap();
    let resource = t.elapsed();
    assert_eq!(&value[..], SECRET);
    let evidence = attester.spent.get();
    (attest.saturating_sub(evidence), evidence, resource)
}

fn serve(home: &Path, addr_file: &Path, sim: &Simulator) {
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&home.join("kbs.db")).unwrap());
    let reference = serde_json::json!([hex::encode(MEASUREMENT)]).to_string();
    storage
        .put(
            Namespace::ReferenceValue,
            "snp_launch_measurement",
            reference.as_bytes(),
        )
        .unwrap();
    storage.put(Namespace::Resource, RESOURCE, SECRET).unwrap();
    let verifier = EvidenceVerifier::new(None).allow_simulated(sim.roots().unwrap());
    let mut config = Config::new(storage, verifier);
    config.admin = AdminAuth::DenyAll;
    let state = AppState::new(config).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tmp = addr_file.with_extension("tmp");
        std::fs::write(&tmp, listener.local_addr().unwrap().to_string()).unwrap();
        std::fs::rename(&tmp, addr_file).unwrap();
        a3s_kbs::serve::serve(listener, a3s_kbs::app(state), None)
            .await
            .unwrap();
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: attest_rounds serve HOME ADDR_FILE | client HOME URL ROUNDS";
    let home = PathBuf::from(args.get(2).expect(usage));
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            let sim = Simulator::open_or_create(&home, Product::Milan).unwrap();
            serve(&home, Path::new(args.get(3).expect(usage)), &sim);
        }
        Some("client") => {
            let url = args.get(3).expect(usage);
            let rounds: usize = args.get(4).expect(usage).parse().expect(usage);
            for _ in 0..rounds {
                let (attest, evidence, resource) = round(url, &home);
                println!("{:.3} {:.3} {:.3}", ms(attest), ms(evidence), ms(resource));
            }
        }
        _ => panic!("{usage}"),
    }
}
