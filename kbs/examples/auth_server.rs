//! A broker for load tests of `/kbs/v0/auth` (bench/kbs-auth.sh): in-memory storage, no
//! admin, the default session settings, served on a free loopback port printed on stdout.
//! Uses only the crate's public API, so the same file builds against older revisions for
//! before/after comparisons.

use std::sync::Arc;

use a3s_kbs::storage::{SqliteStorage, Storage};
use a3s_kbs::verifier::EvidenceVerifier;
use a3s_kbs::{AppState, Config};

fn main() {
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::in_memory().expect("in-memory SQLite"));
    let config = Config::new(storage, EvidenceVerifier::new(None));
    let state = AppState::new(config).expect("broker state");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        println!("listening on {addr}");
        a3s_kbs::serve::serve(listener, a3s_kbs::app(state), None)
            .await
            .expect("serving");
    });
}
