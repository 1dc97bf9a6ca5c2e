//! Floor for bench/kbs-auth.sh: the same serving path as the broker (one single-threaded
//! runtime per core, axum, hyper) answering every POST /kbs/v0/auth with a fixed body, so the
//! bench shows what is left for the KBS's own work.

fn main() {
    let app = axum::Router::new().route(
        "/kbs/v0/auth",
        axum::routing::post(|| async {
            "{\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}"
        }),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    println!(
        "listening on {}",
        listener.local_addr().expect("local address")
    );
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    a3s_kbs::serve::serve_per_core(listener, app, None, threads).expect("serving");
}
