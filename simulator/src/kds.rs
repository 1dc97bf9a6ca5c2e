//! A KDS-compatible HTTP endpoint serving the simulated chain, VCEKs and CRLs at AMD's paths.
//!
//! | path | response |
//! |------|----------|
//! | `GET /vcek/v1/{Milan,Genoa,Turin}/cert_chain` | PEM: ASK then ARK (`application/x-pem-file`) |
//! | `GET /vcek/v1/{prod}/crl` | DER CRL signed by the ARK (`application/pkix-crl`) |
//! | `GET /vcek/v1/{prod}/{hwid hex}?blSPL=NN&teeSPL=NN&snpSPL=NN&ucodeSPL=NN[&fmcSPL=NN]` | DER VCEK (`application/pkix-cert`) |
//!
//! `fmcSPL` is required for Turin and refused for Milan and Genoa. A malformed hwID or query (a
//! missing, repeated, unknown or non-decimal parameter, or a value above 255) is answered 400; a
//! product the home has not provisioned, an unknown chip or a TCB other than the one the chip's
//! VCEK was issued for, 404.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use a3s_attestation::report::Tcb;
use a3s_attestation::Product;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::{ChipId, Simulator};

/// The router of the simulated KDS, for embedding in another server or `oneshot` tests.
pub fn router(sim: Arc<Simulator>) -> Router {
    Router::new()
        .route("/vcek/v1/{product}/cert_chain", get(cert_chain))
        .route("/vcek/v1/{product}/crl", get(crl))
        .route("/vcek/v1/{product}/{chip}", get(vcek))
        .with_state(sim)
}

/// Serves the simulated KDS on `listener` until the task is dropped or the listener fails.
///
/// # Errors
/// An I/O error of the listener.
pub async fn serve(listener: TcpListener, sim: Arc<Simulator>) -> io::Result<()> {
    axum::serve(listener, router(sim)).await
}

/// A simulated KDS running on its own thread and runtime, for callers without one (tests, the
/// CLI). Stops when dropped.
#[derive(Debug)]
pub struct KdsServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl KdsServer {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and starts serving `sim`.
    ///
    /// # Errors
    /// When the runtime cannot be built or the address cannot be bound.
    pub fn start(addr: SocketAddr, sim: Arc<Simulator>) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("a3s-sim-kds".into())
            .spawn(move || {
                runtime.block_on(async move {
                    axum::serve(listener, router(sim))
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await
                })
            })?;
        debug!(%addr, "simulated KDS listening");
        Ok(Self {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://<addr>`, to use in place of `https://kdsintf.amd.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for KdsServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "simulated KDS stopped with an error"),
                Err(_) => warn!("simulated KDS thread panicked"),
            }
        }
    }
}

fn not_found(what: &str) -> Response {
    debug!(what, "simulated KDS: 404");
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}

fn bad_request(what: &str) -> Response {
    debug!(what, "simulated KDS: 400");
    (StatusCode::BAD_REQUEST, format!("{what}\n")).into_response()
}

/// The product named in a KDS path, exactly as AMD spells it.
fn product_of(name: &str) -> Option<Product> {
    Product::ALL.into_iter().find(|p| p.kds_name() == name)
}

async fn cert_chain(State(sim): State<Arc<Simulator>>, Path(product): Path<String>) -> Response {
    let Some(product) = product_of(&product) else {
        return not_found("unknown product");
    };
    match sim.cert_chain_pem(product) {
        Ok(pem) => ([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response(),
        Err(e) => not_found(&e.to_string()),
    }
}

async fn crl(State(sim): State<Arc<Simulator>>, Path(product): Path<String>) -> Response {
    let Some(product) = product_of(&product) else {
        return not_found("unknown product");
    };
    match sim.crl_der(product) {
        Ok(der) => (
            [(header::CONTENT_TYPE, "application/pkix-crl")],
            der.to_vec(),
        )
            .into_response(),
        Err(e) => not_found(&e.to_string()),
    }
}

async fn vcek(
    State(sim): State<Arc<Simulator>>,
    Path((product, chip)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(product) = product_of(&product) else {
        return not_found("unknown product");
    };
    let Ok(chip_id) = ChipId::from_kds_hex(product, &chip) else {
        return bad_request("malformed hwID");
    };
    let tcb = match parse_tcb_query(product, query.as_deref().unwrap_or("")) {
        Ok(tcb) => tcb,
        Err(why) => return bad_request(why),
    };
    let Ok(chip) = sim.chip(product, &chip_id) else {
        return not_found("unknown chip");
    };
    if chip.config().tcb != tcb {
        return not_found("no VCEK for this TCB");
    }
    (
        [(header::CONTENT_TYPE, "application/pkix-cert")],
        chip.vcek_der().to_vec(),
    )
        .into_response()
}

/// Parses `blSPL=NN&teeSPL=NN&snpSPL=NN&ucodeSPL=NN[&fmcSPL=NN]` strictly.
fn parse_tcb_query(product: Product, query: &str) -> Result<Tcb, &'static str> {
    let turin = product.uses_turin_tcb();
    let mut values: [Option<u8>; 5] = [None; 5];
    const NAMES: [&str; 5] = ["blSPL", "teeSPL", "snpSPL", "ucodeSPL", "fmcSPL"];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').ok_or("parameter without a value")?;
        let index = NAMES
            .iter()
            .position(|n| *n == name)
            .ok_or("unknown parameter")?;
        if index == 4 && !turin {
            return Err("fmcSPL is only defined for Turin");
        }
        if value.is_empty() || value.len() > 3 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err("SPL values are decimal numbers 0-255");
        }
        let value: u8 = value
            .parse()
            .map_err(|_| "SPL values are decimal numbers 0-255")?;
        if values[index].replace(value).is_some() {
            return Err("repeated parameter");
        }
    }
    let need = |i: usize| values[i].ok_or("missing SPL parameter");
    Ok(Tcb {
        fmc: if turin { Some(need(4)?) } else { None },
        bootloader: need(0)?,
        tee: need(1)?,
        snp: need(2)?,
        microcode: need(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kds_tcb_queries() {
        let tcb = parse_tcb_query(Product::Milan, "blSPL=04&teeSPL=00&snpSPL=24&ucodeSPL=219");
        assert_eq!(
            tcb,
            Ok(Tcb {
                fmc: None,
                bootloader: 4,
                tee: 0,
                snp: 24,
                microcode: 219
            })
        );
        let turin = parse_tcb_query(
            Product::Turin,
            "fmcSPL=00&blSPL=01&teeSPL=00&snpSPL=02&ucodeSPL=71",
        );
        assert_eq!(turin.map(|t| t.fmc), Ok(Some(0)));
    }

    #[test]
    fn rejects_malformed_tcb_queries() {
        for (product, query) in [
            (Product::Milan, ""),
            (Product::Milan, "blSPL=04&teeSPL=00&snpSPL=24"),
            (Product::Milan, "blSPL=04&teeSPL=00&snpSPL=24&ucodeSPL=256"),
            (Product::Milan, "blSPL=04&teeSPL=00&snpSPL=24&ucodeSPL=-1"),
            (
                Product::Milan,
                "blSPL=04&blSPL=04&teeSPL=00&snpSPL=24&ucodeSPL=1",
            ),
            (
                Product::Milan,
                "blSPL=04&teeSPL=00&snpSPL=24&ucodeSPL=1&fmcSPL=0",
            ),
            (
                Product::Milan,
                "blSPL=04&teeSPL=00&snpSPL=24&ucodeSPL=1&x=1",
            ),
            (Product::Milan, "blSPL&teeSPL=00&snpSPL=24&ucodeSPL=1"),
            (Product::Turin, "blSPL=01&teeSPL=00&snpSPL=02&ucodeSPL=71"),
        ] {
            assert!(parse_tcb_query(product, query).is_err(), "{query}");
        }
    }
}
