//! The ephemeral KBS of a box with `--secret NAME=file:PATH`: a real trustee-protocol broker
//! on host loopback, in the box's monitor, holding the files in memory only. It releases them
//! (JWE-encrypted to the guest's TEE key) only to evidence whose launch measurement is the
//! one the host computed for this VM (or as the box's `--tee-policy` says), and accepts
//! simulated evidence only for a `--tee-simulate` box. It ends with the monitor.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use a3s_kbs::storage::{Namespace, SqliteStorage, Storage};
use a3s_kbs::verifier::EvidenceVerifier;
use a3s_kbs::{AppState, Config};
use tokio::sync::oneshot;

use super::{SecretSource, TeeError, TeeSpec};

/// Largest file secret (`--secret NAME=file:PATH`): its JWE answer must stay within the
/// guest client's 16 MiB response limit after base64.
pub const MAX_FILE_SECRET_BYTES: u64 = 8 << 20;

/// The id under which the broker looks up its policies.
const POLICY_ID: &str = "default";

/// A running ephemeral KBS.
#[derive(Debug)]
pub struct LocalKbs {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LocalKbs {
    /// Loads the box's file secrets and starts serving on `127.0.0.1:0`.
    ///
    /// # Errors
    /// [`TeeError::LocalKbs`] naming the file or the failure.
    pub fn start(
        home: &std::path::Path,
        spec: &TeeSpec,
        measurement: &[u8; 48],
    ) -> Result<Self, TeeError> {
        let fail =
            |what: &str, e: &dyn std::fmt::Display| TeeError::LocalKbs(format!("{what}: {e}"));
        let storage = SqliteStorage::in_memory().map_err(|e| fail("storage", &e))?;
        for s in &spec.secrets {
            if let SecretSource::File { path } = &s.source {
                let bytes = crate::bounded::read(path, MAX_FILE_SECRET_BYTES)
                    .map_err(|e| fail(&format!("secret {}", s.name), &e))?;
                storage
                    .put(Namespace::Resource, &s.resource(), &bytes)
                    .map_err(|e| fail("storage", &e))?;
            }
        }
        let reference = serde_json::to_vec(&[hex::encode(measurement)])
            .map_err(|e| fail("reference value", &e))?;
        storage
            .put(
                Namespace::ReferenceValue,
                "snp_launch_measurement",
                &reference,
            )
            .map_err(|e| fail("storage", &e))?;
        if let Some(p) = &spec.policy {
            let rego = crate::bounded::read(p, super::spec::MAX_POLICY_BYTES)
                .map_err(|e| fail("--tee-policy", &e))?;
            storage
                .put(Namespace::AttestationPolicy, POLICY_ID, &rego)
                .map_err(|e| fail("storage", &e))?;
        }
        // Hardware evidence: VCEK and chain from AMD's KDS (or the home's cache) when the
        // guest's extended report does not carry them.
        let kds = a3s_attestation::kds::KdsClient::new()
            .with_base_url(
                std::env::var("A3S_KDS_URL")
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| a3s_attestation::kds::DEFAULT_BASE_URL.to_owned()),
            )
            .with_cache(a3s_attestation::kds::KdsCache::new(
                home.join("cache").join("kds"),
            ));
        let mut verifier = EvidenceVerifier::new(Some(Arc::new(kds)));
        if spec.simulated() {
            let sim =
                a3s_simulator::Simulator::open_or_create(home, a3s_attestation::Product::Milan)
                    .map_err(|e| fail("simulator", &e))?;
            verifier =
                verifier.allow_simulated(sim.roots().map_err(|e| fail("simulator roots", &e))?);
        }
        let state = AppState::new(Config::new(Arc::new(storage), verifier))
            .map_err(|e| fail("state", &e))?;

        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| fail("listening on 127.0.0.1", &e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| fail("listener", &e))?;
        let addr = listener.local_addr().map_err(|e| fail("listener", &e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail("async runtime", &e))?;
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("local-kbs".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = a3s_kbs::serve::serve(listener, a3s_kbs::app(state), None) => {}
                        _ = rx => {}
                    }
                });
            })
            .map_err(|e| fail("thread", &e))?;
        Ok(Self {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Where it listens on the host.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its URL as the guest reaches it over QEMU user networking (host loopback is the
    /// gateway 10.0.2.2 there).
    pub fn guest_url(&self) -> String {
        format!("http://{}:{}", crate::network::GATEWAY, self.addr.port())
    }

    /// Stops serving (also on drop).
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LocalKbs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The URL the guest uses for a KBS the host reaches at `url`: loopback addresses become the
/// user-network gateway, which QEMU maps to host loopback.
pub fn guest_reachable(url: &str) -> String {
    for host in ["127.0.0.1", "localhost", "[::1]"] {
        for scheme in ["http://", "https://"] {
            let prefix = format!("{scheme}{host}");
            if let Some(rest) = url.strip_prefix(&prefix) {
                if rest.is_empty() || rest.starts_with(':') || rest.starts_with('/') {
                    return format!("{scheme}{}{rest}", crate::network::GATEWAY);
                }
            }
        }
    }
    url.to_owned()
}

/// A URL naming host loopback, split as (scheme with `://`, loopback address and port, the
/// rest: path and query); `None` for any other host.
pub fn loopback_target(url: &str) -> Option<(&'static str, SocketAddr, &str)> {
    let (scheme, after) = [("http://", 80), ("https://", 443)]
        .into_iter()
        .find_map(|(s, port)| url.strip_prefix(s).map(|r| ((s, port), r)))?;
    let (s, default_port) = scheme;
    let end = after.find('/').unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, p.parse().ok()?),
        _ => (authority, default_port),
    };
    let ip: std::net::IpAddr = match host {
        "localhost" => Ipv4Addr::LOCALHOST.into(),
        "[::1]" => std::net::Ipv6Addr::LOCALHOST.into(),
        h => h.parse().ok().filter(std::net::IpAddr::is_loopback)?,
    };
    Some((s, SocketAddr::new(ip, port), rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use a3s_kbs::client::KbsClient;
    use a3s_simulator::{GuestContext, SimAttester, Simulator};

    fn spec_with(dir: &std::path::Path, secret: &[u8], policy: Option<&str>) -> TeeSpec {
        let f = dir.join("greeting");
        std::fs::write(&f, secret).unwrap();
        let policy = policy.map(|rego| {
            let p = dir.join("policy.rego");
            std::fs::write(&p, rego).unwrap();
            p
        });
        TeeSpec {
            mode: super::super::spec::TeeMode::Simulated,
            kbs_url: None,
            secrets: vec![super::super::SecretRef::parse(&format!(
                "greeting=file:{}",
                f.display()
            ))
            .unwrap()],
            expected_measurement: None,
            policy,
            allow_exec: false,
        }
    }

    fn attester(home: &std::path::Path, m: [u8; 48]) -> SimAttester {
        let sim = Simulator::open_or_create(home, a3s_attestation::Product::Milan).unwrap();
        SimAttester::new(sim, GuestContext::launch(m))
    }

    #[test]
    fn loopback_kbs_urls_are_split_for_the_relay_and_others_are_not() {
        assert_eq!(
            loopback_target("http://127.0.0.1:8080/kbs"),
            Some(("http://", "127.0.0.1:8080".parse().unwrap(), "/kbs"))
        );
        assert_eq!(
            loopback_target("https://localhost"),
            Some(("https://", "127.0.0.1:443".parse().unwrap(), ""))
        );
        assert_eq!(
            loopback_target("http://[::1]:9000"),
            Some(("http://", "[::1]:9000".parse().unwrap(), ""))
        );
        assert_eq!(loopback_target("http://kbs.example:8080"), None);
        assert_eq!(loopback_target("http://10.1.2.3:8080"), None);
        assert_eq!(loopback_target("ftp://127.0.0.1"), None);
    }

    #[test]
    fn releases_the_file_only_to_the_measured_vm() {
        let home = tempfile::tempdir().unwrap();
        let spec = spec_with(home.path(), b"hello from the host", None);
        let kbs = LocalKbs::start(home.path(), &spec, &[3u8; 48]).unwrap();
        let url = format!("http://{}", kbs.addr());
        let path = spec.secrets[0].resource().parse().unwrap();
        let good = KbsClient::new(&url).unwrap();
        let secret = good
            .get_resource(&attester(home.path(), [3u8; 48]), &path)
            .unwrap();
        assert_eq!(secret.as_slice(), b"hello from the host");
        let other = KbsClient::new(&url).unwrap();
        assert!(other
            .get_resource(&attester(home.path(), [4u8; 48]), &path)
            .is_err());
    }

    #[test]
    fn a_denying_policy_releases_nothing() {
        let home = tempfile::tempdir().unwrap();
        let spec = spec_with(
            home.path(),
            b"s",
            Some("package policy\ndefault allow := false\n"),
        );
        let kbs = LocalKbs::start(home.path(), &spec, &[3u8; 48]).unwrap();
        let url = format!("http://{}", kbs.addr());
        let path = spec.secrets[0].resource().parse().unwrap();
        assert!(KbsClient::new(&url)
            .unwrap()
            .get_resource(&attester(home.path(), [3u8; 48]), &path)
            .is_err());
    }

    #[test]
    fn loopback_urls_become_the_gateway() {
        assert_eq!(
            guest_reachable("http://127.0.0.1:8080"),
            "http://10.0.2.2:8080"
        );
        assert_eq!(
            guest_reachable("https://localhost/kbs"),
            "https://10.0.2.2/kbs"
        );
        assert_eq!(
            guest_reachable("http://127.0.0.10:1"),
            "http://127.0.0.10:1"
        );
        assert_eq!(
            guest_reachable("http://kbs.example:80"),
            "http://kbs.example:80"
        );
    }
}
