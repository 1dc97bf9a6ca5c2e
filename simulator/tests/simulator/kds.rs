//! The simulated KDS over real HTTP on 127.0.0.1.

use std::sync::Arc;

use a3s_attestation::Product;
use a3s_simulator::kds::KdsServer;

use crate::support::{sim, FIXTURE};

fn server() -> KdsServer {
    KdsServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&FIXTURE.sim)).unwrap()
}

fn get(server: &KdsServer, path: &str) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(&format!("{}{path}", server.base_url()))
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, resp.body_mut().read_to_vec().unwrap())
}

fn tcb_query(product: Product) -> String {
    let chip = sim()
        .info()
        .products
        .into_iter()
        .find(|p| p.product == product)
        .unwrap()
        .chips[0]
        .clone();
    let t = chip.config.tcb;
    let base = format!(
        "blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
        t.bootloader, t.tee, t.snp, t.microcode
    );
    match t.fmc {
        Some(fmc) => format!("fmcSPL={fmc:02}&{base}"),
        None => base,
    }
}

fn chip_hex(product: Product) -> String {
    let info = sim()
        .info()
        .products
        .into_iter()
        .find(|p| p.product == product)
        .unwrap();
    info.chips[0].id.kds_hex(product)
}

#[test]
fn serves_the_chain_at_amds_path() {
    let server = server();
    for product in [Product::Milan, Product::Turin] {
        let (status, content_type, body) = get(
            &server,
            &format!("/vcek/v1/{}/cert_chain", product.kds_name()),
        );
        assert_eq!(status, 200);
        assert_eq!(content_type, "application/x-pem-file");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            sim().cert_chain_pem(product).unwrap()
        );
    }
}

#[test]
fn serves_vceks_for_the_chips_tcb() {
    let server = server();
    for product in [Product::Milan, Product::Turin] {
        let path = format!(
            "/vcek/v1/{}/{}?{}",
            product.kds_name(),
            chip_hex(product),
            tcb_query(product)
        );
        let (status, content_type, body) = get(&server, &path);
        assert_eq!(status, 200, "{path}");
        assert_eq!(content_type, "application/pkix-cert");
        let id = sim()
            .info()
            .products
            .into_iter()
            .find(|p| p.product == product)
            .unwrap()
            .chips[0]
            .id;
        assert_eq!(body, sim().vcek_der(product, &id).unwrap());
    }
}

#[test]
fn serves_the_crl() {
    let server = server();
    let (status, content_type, body) = get(&server, "/vcek/v1/Milan/crl");
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/pkix-crl");
    assert_eq!(body, sim().crl_der(Product::Milan).unwrap());
}

#[test]
fn answers_404_for_unknown_products_chips_and_tcbs() {
    let server = server();
    let milan = chip_hex(Product::Milan);
    let query = tcb_query(Product::Milan);
    let other_chip = "ab".repeat(64);
    let wrong_tcb = query.replace("snpSPL=", "snpSPL=1");
    for path in [
        "/vcek/v1/Genoa/cert_chain".to_owned(), // not provisioned in this home
        "/vcek/v1/Naples/cert_chain".to_owned(),
        "/vcek/v1/milan/cert_chain".to_owned(), // AMD's spelling only
        "/vcek/v1/Genoa/crl".to_owned(),
        format!("/vcek/v1/Milan/{other_chip}?{query}"),
        format!("/vcek/v1/Milan/{milan}?{wrong_tcb}"),
        format!("/vcek/v1/Genoa/{milan}?{query}"),
        "/vcek/v2/Milan/cert_chain".to_owned(),
    ] {
        assert_eq!(get(&server, &path).0, 404, "{path}");
    }
}

#[test]
fn answers_400_for_malformed_requests() {
    let server = server();
    let milan = chip_hex(Product::Milan);
    let turin = chip_hex(Product::Turin);
    let query = tcb_query(Product::Milan);
    for path in [
        format!("/vcek/v1/Milan/{milan}"),
        format!("/vcek/v1/Milan/{milan}?blSPL=04"),
        format!("/vcek/v1/Milan/{}?{query}", &milan[..126]),
        format!("/vcek/v1/Milan/{}zz?{query}", &milan[..126]),
        format!("/vcek/v1/Milan/{milan}?{query}&fmcSPL=00"),
        format!("/vcek/v1/Milan/{milan}?{query}&blSPL=04"),
        format!(
            "/vcek/v1/Milan/{milan}?{}",
            query.replace("teeSPL=00", "teeSPL=x")
        ),
        format!("/vcek/v1/Turin/{turin}?{query}"), // no fmcSPL
        format!("/vcek/v1/Turin/{milan}?{}", tcb_query(Product::Turin)), // 64-byte id for Turin
    ] {
        assert_eq!(get(&server, &path).0, 400, "{path}");
    }
}
