//! Full auth → attest → resource round trips on loopback with 1, 8 and 64 concurrent
//! clients: latency p50/p99, attestations per second, server CPU per attestation and the
//! share of it spent verifying evidence, for a broker without its caches (every request
//! compiles its policies, every attestation verifies its VEK chain) and one with them
//! (compiled policies by content, verified VEKs per chip and TCB), in the same run, with the
//! ratio. Baseline measured in the same run: verifying the same evidence directly (no HTTP,
//! no sessions, no policy, no JWE).
//!
//! `cargo bench -p a3s-kbs --bench round_trip` (release build). Clients and server share
//! the machine, so the figures include the clients' own work (simulated report signing,
//! key generation, ECDH, AES-GCM).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // bench code: small counts

use std::sync::Arc;
use std::time::{Duration, Instant};

use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::key_request::KeyRequest;
use a3s_attestation::report::trustee::{CertType, Evidence};
use a3s_attestation::Product;
use a3s_kbs::client::KbsClient;
use a3s_kbs::storage::{Namespace, SqliteStorage, Storage};
use a3s_kbs::verifier::EvidenceVerifier;
use a3s_kbs::{AdminAuth, AppState, Config};
use a3s_simulator::{GuestContext, ReportRequest, Simulator};

const MEASUREMENT: [u8; 48] = [0x5a; 48];
const SERVER_THREAD: &str = "kbs-server";

struct SimAttester<'a> {
    sim: &'a Simulator,
    guest: GuestContext,
}

impl Attester for SimAttester<'_> {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Evidence, HwError> {
        let mut request = ReportRequest::new(self.guest.clone(), *report_data);
        request.vmpl = vmpl;
        let report = self
            .sim
            .report(&request)
            .map_err(|e| HwError::Simulator(e.to_string()))?;
        let p = self.sim.product();
        Ok(Evidence {
            report,
            cert_chain: vec![
                (CertType::Vcek, self.sim.default_chip().vcek_der().to_vec()),
                (CertType::Ask, self.sim.ask_der(p).unwrap().to_vec()),
                (CertType::Ark, self.sim.ark_der(p).unwrap().to_vec()),
            ],
        })
    }

    fn derived_key(&self, _: &KeyRequest) -> Result<[u8; 32], HwError> {
        Err(HwError::Simulator("unused".into()))
    }
}

/// CPU time (user + system) of this process's threads named `name`.
fn threads_cpu(name: &str) -> Duration {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != name {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After "pid (comm) ": state is field 0, utime 11, stime 12.
        let utime: f64 = fields[11].parse().unwrap();
        let stime: f64 = fields[12].parse().unwrap();
        total += (utime + stime) / tick;
    }
    Duration::from_secs_f64(total)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let home = tempfile::tempdir().unwrap();
    let sim: &'static Simulator = Box::leak(Box::new(
        Simulator::open_or_create(home.path(), Product::Milan).unwrap(),
    ));
    let db = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> =
        Arc::new(SqliteStorage::open(&db.path().join("kbs.db")).unwrap());
    storage
        .put(
            Namespace::ReferenceValue,
            "snp_launch_measurement",
            serde_json::json!([hex::encode(MEASUREMENT)])
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    storage
        .put(Namespace::Resource, "default/key/1", b"bench secret")
        .unwrap();
    let verifier = EvidenceVerifier::new(None).allow_simulated(sim.roots().unwrap());
    // Baseline: the same evidence verified directly, one thread.
    let rd = [7u8; 64];
    let ev = SimAttester {
        sim,
        guest: GuestContext::launch(MEASUREMENT),
    }
    .report(&rd, 0)
    .unwrap()
    .to_trustee_json()
    .unwrap();
    let n_base = 200;
    let t = Instant::now();
    for _ in 0..n_base {
        verifier
            .verify(&ev, &rd, time::OffsetDateTime::now_utc())
            .unwrap();
    }
    let baseline = t.elapsed() / n_base;
    println!(
        "baseline: evidence verification alone {:.3} ms",
        ms(baseline)
    );

    let mut results = Vec::new();
    for cached in [false, true] {
        let mut verifier = EvidenceVerifier::new(None).allow_simulated(sim.roots().unwrap());
        if !cached {
            verifier = verifier.without_vek_cache();
        }
        let mut config = Config::new(storage.clone(), verifier);
        config.admin = AdminAuth::DenyAll;
        let mut state = AppState::new(config).unwrap();
        if !cached {
            state.policies = Arc::new(a3s_kbs::policy::cache::PolicyCache::disabled());
        }
        println!(
            "\n{}",
            if cached {
                "with the caches"
            } else {
                "without the caches (policies compiled and VEK chains verified per request)"
            }
        );
        results.push(run(sim, state, baseline));
    }
    println!("\nwith / without the caches:");
    println!(
        "{:>7} {:>12} {:>12} {:>15}",
        "clients", "p50 ratio", "p99 ratio", "attest/s ratio"
    );
    for (before, after) in results[0].iter().zip(&results[1]) {
        println!(
            "{:>7} {:>12.2} {:>12.2} {:>15.2}",
            before.clients,
            after.p50.as_secs_f64() / before.p50.as_secs_f64(),
            after.p99.as_secs_f64() / before.p99.as_secs_f64(),
            after.rate / before.rate,
        );
    }
}

/// One load level's figures.
struct Level {
    clients: usize,
    p50: Duration,
    p99: Duration,
    rate: f64,
}

/// Serves `state` on loopback and runs the 1/8/64-client levels against it.
fn run(sim: &'static Simulator, state: AppState, baseline: Duration) -> Vec<Level> {
    let metrics = state.metrics.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(SERVER_THREAD)
            .thread_keep_alive(Duration::from_secs(3600))
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            a3s_kbs::serve::serve(listener, a3s_kbs::app(state), None)
                .await
                .unwrap();
        });
    });
    let url = format!("http://{}", rx.recv().unwrap());
    let path: a3s_kbs::protocol::ResourcePath = "default/key/1".parse().unwrap();

    // Warm up (connections, allocator, policy engine).
    let warm = KbsClient::new(&url).unwrap();
    for _ in 0..10 {
        let att = SimAttester {
            sim,
            guest: GuestContext::launch(MEASUREMENT),
        };
        warm.get_resource(&att, &path).unwrap();
    }

    println!(
        "{:>7} {:>7} {:>9} {:>9} {:>11} {:>13} {:>13} {:>10}",
        "clients",
        "trips",
        "p50 ms",
        "p99 ms",
        "attest/s",
        "srv CPU/att",
        "verify share",
        "p50/base"
    );
    let mut levels = Vec::new();
    for clients in [1usize, 8, 64] {
        let per_client = match clients {
            1 => 200,
            8 => 50,
            _ => 10,
        };
        let cpu0 = threads_cpu(SERVER_THREAD);
        let (n0, acpu0, vcpu0) = metrics.attestation_cpu();
        let start = Instant::now();
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let url = url.clone();
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut lat = Vec::with_capacity(per_client);
                    for _ in 0..per_client {
                        let att = SimAttester {
                            sim,
                            guest: GuestContext::launch(MEASUREMENT),
                        };
                        let t = Instant::now();
                        let client = KbsClient::new(&url).unwrap();
                        let secret = client.get_resource(&att, &path).unwrap();
                        lat.push(t.elapsed());
                        assert_eq!(&secret[..], b"bench secret");
                    }
                    lat
                })
            })
            .collect();
        let mut lat: Vec<Duration> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let wall = start.elapsed();
        let cpu = threads_cpu(SERVER_THREAD).saturating_sub(cpu0);
        let (n1, acpu1, vcpu1) = metrics.attestation_cpu();
        lat.sort();
        let n = lat.len();
        assert_eq!(n1 - n0, n as u64);
        let p50 = percentile(&lat, 0.5);
        let verify_cpu = vcpu1.saturating_sub(vcpu0);
        let attest_cpu = acpu1.saturating_sub(acpu0);
        println!(
            "{:>7} {:>7} {:>9.2} {:>9.2} {:>11.1} {:>10.2} ms {:>12.0}% {:>9.1}x",
            clients,
            n,
            ms(p50),
            ms(percentile(&lat, 0.99)),
            n as f64 / wall.as_secs_f64(),
            ms(cpu / n as u32),
            100.0 * verify_cpu.as_secs_f64() / cpu.as_secs_f64().max(1e-9),
            p50.as_secs_f64() / baseline.as_secs_f64(),
        );
        println!(
            "        (in /attest: {:.2} ms CPU per attestation, of which verification {:.2} ms)",
            ms(attest_cpu / n as u32),
            ms(verify_cpu / n as u32)
        );
        levels.push(Level {
            clients,
            p50,
            p99: percentile(&lat, 0.99),
            rate: n as f64 / wall.as_secs_f64(),
        });
    }
    levels
}
