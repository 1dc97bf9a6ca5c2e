//! RA-TLS handshake plus evidence verification against a plain rustls TLS 1.3 handshake with
//! the same key type (ECDSA P-384), both over loopback TCP in this process.
//!
//! | name | per iteration |
//! |------|---------------|
//! | `plain_tls13_p384` | TCP connect, TLS 1.3 handshake with a CA-issued P-384 server certificate verified by webpki, one byte echoed (so the server finished too) |
//! | `ratls_p384` | TCP connect, [`a3s_ratls::connect`] to [`a3s_ratls::serve`]: TLS 1.3 handshake with the server's RA-TLS certificate (evidence parsed, simulated report verified: VCEK ECDSA P-384, chain from the endorsements, RSA-PSS ASK→VCEK, appraisal), then the freshness exchange (the server gets a fresh report signed by the simulator, the client verifies it again) |
//!
//! Both sides set `TCP_NODELAY`: without it, Nagle's algorithm and delayed ACKs add about
//! 40 ms to every small-message round trip and swamp the cryptography being compared.
//!
//! The simulator stands in for the SNP firmware: its report signing is ECDSA P-384 in
//! software, where real firmware takes roughly a millisecond per MSG_REPORT_REQ. After the
//! criterion group, in benchmark mode, a summary times both again round-robin and prints the
//! ratio `ratls / plain` (how many times slower a connection is). `bench/ratls.sh` runs it.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::policy::AppraisalPolicy;
use a3s_attestation::report::trustee::{CertType, Evidence};
use a3s_attestation::Product;
use a3s_ratls::{
    connect, danger, serve, Attested, ClientConfig, EvidenceKind, Identity, ServerAuth,
    ServerConfig, Verifier,
};
use a3s_simulator::{GuestContext, KeyRequest, ReportRequest, Simulator};
use criterion::Criterion;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P384_SHA384};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const MEASUREMENT: [u8; 48] = [0x4D; 48];

struct SimAttester {
    sim: Arc<Simulator>,
    guest: GuestContext,
}

impl Attester for SimAttester {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Evidence, HwError> {
        let request = ReportRequest {
            vmpl,
            ..ReportRequest::new(self.guest.clone(), *report_data)
        };
        let report = self
            .sim
            .report(&request)
            .map_err(|e| HwError::Simulator(e.to_string()))?;
        Ok(Evidence {
            report,
            cert_chain: vec![(CertType::Vcek, self.sim.default_chip().vcek_der().to_vec())],
        })
    }

    fn derived_key(&self, request: &KeyRequest) -> Result<[u8; 32], HwError> {
        self.sim
            .derive_key(&self.guest, request)
            .map(|k| *k.as_bytes())
            .map_err(|e| HwError::Simulator(e.to_string()))
    }
}

struct Setup {
    rt: Runtime,
    plain_addr: std::net::SocketAddr,
    plain_client: TlsConnector,
    ratls_addr: std::net::SocketAddr,
    ratls_client: ClientConfig,
}

fn signing_key(key: &KeyPair) -> Arc<dyn rustls::sign::SigningKey> {
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    a3s_ratls::provider()
        .key_provider
        .load_private_key(der)
        .expect("a P-384 key loads")
}

fn setup(sim: Arc<Simulator>) -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");

    // Plain TLS 1.3: a CA and a P-384 leaf for "localhost".
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("leaf");
    let certified = Arc::new(CertifiedKey::new(
        vec![leaf.der().clone()],
        signing_key(&key),
    ));
    let mut server = rustls::ServerConfig::builder_with_provider(a3s_ratls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("CA root");
    let mut client = rustls::ClientConfig::builder_with_provider(a3s_ratls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.resumption = rustls::client::Resumption::disabled();
    let plain_client = TlsConnector::from(Arc::new(client));

    // RA-TLS with the simulator.
    let attester = Arc::new(SimAttester {
        sim: sim.clone(),
        guest: GuestContext::launch(MEASUREMENT),
    });
    let identity =
        Identity::generate(attester.as_ref(), EvidenceKind::Simulated).expect("identity");
    let ratls_server = ServerConfig::attested(Attested::new(Arc::new(identity), attester));
    let policy = AppraisalPolicy {
        measurements: vec![MEASUREMENT],
        ..Default::default()
    };
    let verifier =
        danger::accept_simulated(Verifier::new(policy), sim.roots().expect("simulator roots"));
    let ratls_client = ClientConfig::new(ServerAuth::Attested(verifier));

    let (plain_addr, ratls_addr) = rt.block_on(async {
        let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ratls = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addrs = (
            plain.local_addr().expect("addr"),
            ratls.local_addr().expect("addr"),
        );
        tokio::spawn(async move {
            while let Ok((tcp, _)) = plain.accept().await {
                tcp.set_nodelay(true).expect("TCP_NODELAY");
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = acceptor.accept(tcp).await {
                        let mut b = [0u8; 1];
                        if s.read_exact(&mut b).await.is_ok() {
                            let _ = s.write_all(&b).await;
                        }
                    }
                });
            }
        });
        tokio::spawn(async move {
            while let Ok((tcp, _)) = ratls.accept().await {
                tcp.set_nodelay(true).expect("TCP_NODELAY");
                let config = ratls_server.clone();
                tokio::spawn(async move {
                    let _ = serve(tcp, &config).await;
                });
            }
        });
        addrs
    });
    Setup {
        rt,
        plain_addr,
        plain_client,
        ratls_addr,
        ratls_client,
    }
}

fn plain_once(s: &Setup) {
    s.rt.block_on(async {
        let tcp = TcpStream::connect(s.plain_addr).await.expect("connect");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        let name = ServerName::try_from("localhost").expect("name");
        let mut tls = s.plain_client.connect(name, tcp).await.expect("handshake");
        tls.write_all(&[7]).await.expect("write");
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.expect("echo");
        black_box(b);
    });
}

fn ratls_once(s: &Setup) {
    s.rt.block_on(async {
        let tcp = TcpStream::connect(s.ratls_addr).await.expect("connect");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        let session = connect(tcp, &s.ratls_client).await.expect("RA-TLS session");
        assert!(session.peer().is_some_and(|p| p.verdict().passed()));
        black_box(session);
    });
}

/// Connections per second of `run` over about `budget`.
fn rate(s: &Setup, run: fn(&Setup), budget: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while n < 3 || start.elapsed() < budget {
        run(s);
        n += 1;
    }
    // Precision loss is irrelevant for counts below 2^52.
    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    n / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let home = tempfile::Builder::new()
        .prefix("ratls-bench-home-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a temporary home");
    let sim = Arc::new(Simulator::open_or_create(home.path(), Product::Milan).expect("simulator"));
    let s = setup(sim);
    // Both must work, or the timings mean nothing.
    plain_once(&s);
    ratls_once(&s);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut group = c.benchmark_group("handshake");
        group.bench_function("plain_tls13_p384", |b| b.iter(|| plain_once(&s)));
        group.bench_function("ratls_p384", |b| b.iter(|| ratls_once(&s)));
        group.finish();
    }
    c.final_summary();

    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a.split('=').next() == Some(flag));
    if has("--list") || has("--profile-time") {
        return;
    }
    let (rounds, budget, note) = if has("--bench") {
        let rounds = std::env::var("RATLS_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(5);
        (rounds, Duration::from_millis(500), "")
    } else {
        (1, Duration::ZERO, " (test mode: not a measurement)")
    };
    let (mut plain, mut ratls) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        plain.push(rate(&s, plain_once, budget));
        ratls.push(rate(&s, ratls_once, budget));
    }
    let (plain, ratls) = (median(plain), median(ratls));
    println!();
    println!(
        "summary: connections/s, median of {rounds} interleaved rounds of {budget:?} each{note}"
    );
    println!(
        "plain_tls13_p384 {plain:>10.1}/s  {:>8.3} ms",
        1000.0 / plain
    );
    println!(
        "ratls_p384       {ratls:>10.1}/s  {:>8.3} ms",
        1000.0 / ratls
    );
    println!(
        "ratio ratls/plain (time per connection): {:.2}x",
        plain / ratls
    );
}
