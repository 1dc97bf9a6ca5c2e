//! A broker for load tests of `/kbs/v0/auth` (bench/kbs-auth.sh): in-memory storage, no
//! admin, the default session settings, served as `a3s-box kbs serve` serves (one
//! single-threaded runtime per core, [`a3s_kbs::serve::serve_per_core`]) on a free loopback
//! port printed on stdout. Uses only the crate's public API.

use std::sync::Arc;

use a3s_kbs::storage::{SqliteStorage, Storage};
use a3s_kbs::verifier::EvidenceVerifier;
use a3s_kbs::{AppState, Config};

fn main() {
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::in_memory().expect("in-memory SQLite"));
    let config = Config::new(storage, EvidenceVerifier::new(None));
    let state = AppState::new(config).expect("broker state");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    println!("listening on {addr}");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    a3s_kbs::serve::serve_per_core(listener, a3s_kbs::app(state), None, threads).expect("serving");
}
