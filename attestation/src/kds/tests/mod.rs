//! KDS client against a real HTTP server on loopback serving real AMD certificates.

mod fake_kds;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use self::fake_kds::{FakeKds, Reply};
use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/snp");

/// Path and query AMD serves the Oak Turin VCEK at (report: chip 3b42092f69c656d3, TCB fmc0 bl1
/// tee0 snp2 ucode71).
const TURIN_VCEK_TARGET: &str =
    "/vcek/v1/Turin/3b42092f69c656d3?fmcSPL=00&blSPL=01&teeSPL=00&snpSPL=02&ucodeSPL=71";

/// Path and query of the VCEK of `trustee-test-report.bin` (Milan, bl3 tee0 snp8 ucode115).
const MILAN_VCEK_TARGET: &str = "/vcek/v1/Milan/\
    c38427a30d4c7af9d96f7a15b97269825a64cb76a2352ffd5d18115d89ad473f\
    8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e\
    ?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115";

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{rel}")).unwrap()
}

fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/src/kds/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn turin_id() -> VcekId {
    let mut chip_id = [0u8; 64];
    chip_id[..8].copy_from_slice(&[0x3b, 0x42, 0x09, 0x2f, 0x69, 0xc6, 0x56, 0xd3]);
    VcekId {
        product: Product::Turin,
        chip_id,
        tcb: TcbSpls {
            bl: 1,
            tee: 0,
            snp: 2,
            ucode: 71,
            fmc: Some(0),
        },
    }
}

fn milan_id() -> VcekId {
    // CHIP_ID (offset 0x1A0) and REPORTED_TCB (0x180) of the real report.
    let report = fixture("reports/trustee-test-report.bin");
    let chip_id: [u8; 64] = report[0x1A0..0x1E0].try_into().unwrap();
    let tcb = &report[0x180..0x188];
    VcekId {
        product: Product::Milan,
        chip_id,
        tcb: TcbSpls {
            bl: tcb[0],
            tee: tcb[1],
            snp: tcb[6],
            ucode: tcb[7],
            fmc: None,
        },
    }
}

/// Every file below `dir`, relative to it.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn fetches_turin_vcek_at_amds_exact_url_then_serves_it_from_cache() {
    let kds = FakeKds::start();
    let vcek = fixture("reports/oak-turin-oc-vcek.der");
    kds.route(TURIN_VCEK_TARGET, Reply::ok(vcek.clone()));
    let dir = tempfile::tempdir().unwrap();
    let client = kds.client(dir.path());

    assert_eq!(client.vcek(&turin_id()).unwrap(), vcek);
    assert_eq!(kds.seen(), [TURIN_VCEK_TARGET]);
    let cached = dir
        .path()
        .join("vcek/v1/Turin/3b42092f69c656d3/bl01_tee00_snp02_ucode71_fmc00.der");
    assert_eq!(std::fs::read(&cached).unwrap(), vcek);

    // Second call: from the cache, the server sees nothing new.
    assert_eq!(client.vcek(&turin_id()).unwrap(), vcek);
    assert_eq!(kds.seen().len(), 1);
}

#[test]
fn fetches_milan_vcek_with_full_hwid_and_three_digit_ucode() {
    let kds = FakeKds::start();
    let vcek = fixture("reports/trustee-test-vcek.der");
    kds.route(MILAN_VCEK_TARGET, Reply::ok(vcek.clone()));
    let dir = tempfile::tempdir().unwrap();
    let source: &dyn CertSource = &kds.client(dir.path());

    assert_eq!(source.vcek(&milan_id()).unwrap(), vcek);
    assert_eq!(kds.seen(), [MILAN_VCEK_TARGET]);
    assert_eq!(
        files_below(dir.path()),
        [Path::new("vcek/v1/Milan")
            .join(hex::encode(milan_id().chip_id))
            .join("bl03_tee00_snp08_ucode115.der")]
    );
}

#[test]
fn serves_cert_chains_verbatim_and_caches_them() {
    let kds = FakeKds::start();
    let milan = fixture("reports/sev-cert-chain-milan.pem");
    let turin = fixture("reports/sev-cert-chain-turin.pem"); // CRLF line endings
    kds.route("/vcek/v1/Milan/cert_chain", Reply::ok(milan.clone()));
    kds.route("/vcek/v1/Turin/cert_chain", Reply::ok(turin.clone()));
    let dir = tempfile::tempdir().unwrap();
    let client = kds.client(dir.path());

    for _ in 0..2 {
        assert_eq!(
            client.cert_chain(Product::Milan, VekKind::Vcek).unwrap(),
            milan
        );
        assert_eq!(
            client.cert_chain(Product::Turin, VekKind::Vcek).unwrap(),
            turin
        );
    }
    assert_eq!(
        kds.seen(),
        ["/vcek/v1/Milan/cert_chain", "/vcek/v1/Turin/cert_chain"]
    );
    assert_eq!(
        std::fs::read(dir.path().join("vcek/v1/Turin/cert_chain.pem")).unwrap(),
        turin
    );
}

#[test]
fn serves_vlek_chain_from_the_vlek_tree() {
    let kds = FakeKds::start();
    // trustee's bundle is ASK, ARK, ASVK; AMD's vlek cert_chain is ASVK then ARK.
    let bundle = fixture("amd-roots/milan_ask_ark_asvk.pem");
    let text = String::from_utf8(bundle).unwrap();
    let blocks: Vec<&str> = text
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("BEGIN"))
        .collect();
    let vlek_chain = format!("{}\n{}\n", blocks[2].trim(), blocks[1].trim()).into_bytes();
    kds.route("/vlek/v1/Milan/cert_chain", Reply::ok(vlek_chain.clone()));
    let dir = tempfile::tempdir().unwrap();
    let client = kds.client(dir.path());

    assert_eq!(
        client.cert_chain(Product::Milan, VekKind::Vlek).unwrap(),
        vlek_chain
    );
    assert!(dir.path().join("vlek/v1/Milan/cert_chain.pem").is_file());
}

#[test]
fn serves_fresh_crl_verbatim_and_from_cache() {
    let kds = FakeKds::start();
    let crl = testdata("crl-next-update-2099.der");
    kds.route("/vcek/v1/Genoa/crl", Reply::ok(crl.clone()));
    let dir = tempfile::tempdir().unwrap();
    let client = kds.client(dir.path());

    assert_eq!(client.crl(Product::Genoa, VekKind::Vcek).unwrap(), crl);
    assert_eq!(client.crl(Product::Genoa, VekKind::Vcek).unwrap(), crl);
    assert_eq!(kds.seen(), ["/vcek/v1/Genoa/crl"]);
    assert_eq!(
        std::fs::read(dir.path().join("vcek/v1/Genoa/crl.der")).unwrap(),
        crl
    );
}

#[test]
fn refetches_crl_past_next_update_and_falls_back_to_cache_when_kds_fails() {
    let kds = FakeKds::start();
    let old = testdata("crl-next-update-2020.der");
    let new = testdata("crl-next-update-2099.der");
    kds.route("/vcek/v1/Milan/crl", Reply::ok(old.clone()));
    let dir = tempfile::tempdir().unwrap();
    let client = kds.client(dir.path());

    // Cached although already stale: it is the newest the KDS has.
    assert_eq!(client.crl(Product::Milan, VekKind::Vcek).unwrap(), old);
    // Its nextUpdate has passed, so the next call asks again; the KDS is failing now.
    kds.route("/vcek/v1/Milan/crl", Reply::status(503));
    assert_eq!(client.crl(Product::Milan, VekKind::Vcek).unwrap(), old);
    assert_eq!(kds.seen().len(), 2);
    // Offline: the stale copy, without asking.
    let offline = kds.client(dir.path()).with_offline(true);
    assert_eq!(offline.crl(Product::Milan, VekKind::Vcek).unwrap(), old);
    assert_eq!(kds.seen().len(), 2);
    // The KDS recovers with a new CRL, which replaces the cached one.
    kds.route("/vcek/v1/Milan/crl", Reply::ok(new.clone()));
    assert_eq!(client.crl(Product::Milan, VekKind::Vcek).unwrap(), new);
    assert_eq!(client.crl(Product::Milan, VekKind::Vcek).unwrap(), new);
    assert_eq!(kds.seen().len(), 3);
}

#[test]
fn refetches_crl_older_than_max_age() {
    let kds = FakeKds::start();
    let crl = testdata("crl-next-update-2099.der");
    kds.route("/vcek/v1/Milan/crl", Reply::ok(crl.clone()));
    let dir = tempfile::tempdir().unwrap();
    let client = kds.client(dir.path()).with_crl_max_age(Duration::ZERO);

    assert_eq!(client.crl(Product::Milan, VekKind::Vcek).unwrap(), crl);
    assert_eq!(client.crl(Product::Milan, VekKind::Vcek).unwrap(), crl);
    assert_eq!(kds.seen().len(), 2);
}

#[test]
fn offline_miss_names_the_cache_path_and_how_to_fill_it() {
    let kds = FakeKds::start();
    kds.route(
        TURIN_VCEK_TARGET,
        Reply::ok(fixture("reports/oak-turin-oc-vcek.der")),
    );
    let dir = tempfile::tempdir().unwrap();
    let offline = kds.client(dir.path()).with_offline(true);

    let err = offline.vcek(&turin_id()).unwrap_err();
    let expected = dir
        .path()
        .join("vcek/v1/Turin/3b42092f69c656d3/bl01_tee00_snp02_ucode71_fmc00.der");
    assert!(
        matches!(&err, KdsError::OfflineMiss { path, url } if *path == expected
            && url.ends_with(TURIN_VCEK_TARGET)),
        "{err:?}"
    );
    assert!(err.to_string().contains(&expected.display().to_string()));
    let hint = err.hint().unwrap();
    assert!(
        hint.contains("a3s-box attest fetch-certs --report FILE"),
        "{hint}"
    );
    assert!(hint.contains("--vcek"), "{hint}");
    assert!(kds.seen().is_empty());

    let no_cache = KdsClient::new()
        .with_base_url(&kds.base_url)
        .with_offline(true);
    assert!(matches!(
        no_cache.cert_chain(Product::Milan, VekKind::Vcek),
        Err(KdsError::OfflineNoCache { .. })
    ));
    assert!(kds.seen().is_empty());
}

#[test]
fn offline_hit_works_after_an_online_fetch() {
    let kds = FakeKds::start();
    let vcek = fixture("reports/oak-turin-oc-vcek.der");
    let chain = fixture("reports/sev-cert-chain-turin.pem");
    kds.route(TURIN_VCEK_TARGET, Reply::ok(vcek.clone()));
    kds.route("/vcek/v1/Turin/cert_chain", Reply::ok(chain.clone()));
    let dir = tempfile::tempdir().unwrap();
    let online = kds.client(dir.path());
    online.vcek(&turin_id()).unwrap();
    online.cert_chain(Product::Turin, VekKind::Vcek).unwrap();

    // A different base URL proves the offline client never connects.
    let offline = KdsClient::new()
        .with_base_url("http://127.0.0.1:9")
        .with_cache(KdsCache::new(dir.path()))
        .with_offline(true);
    assert_eq!(offline.vcek(&turin_id()).unwrap(), vcek);
    assert_eq!(
        offline.cert_chain(Product::Turin, VekKind::Vcek).unwrap(),
        chain
    );
    assert_eq!(kds.seen().len(), 2);
}

#[test]
fn maps_404_to_not_found() {
    let kds = FakeKds::start();
    let dir = tempfile::tempdir().unwrap();
    let err = kds.client(dir.path()).vcek(&turin_id()).unwrap_err();
    let KdsError::NotFound { url } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*url, format!("{}{TURIN_VCEK_TARGET}", kds.base_url));
    assert_eq!(
        err.to_string(),
        format!(
            "KDS has no certificate at {}{TURIN_VCEK_TARGET}",
            kds.base_url
        )
    );
    assert!(files_below(dir.path()).is_empty());
}

#[test]
fn maps_429_to_rate_limited_with_retry_after() {
    let kds = FakeKds::start();
    kds.route(
        TURIN_VCEK_TARGET,
        Reply::status(429).header("Retry-After", "10"),
    );
    kds.route("/vcek/v1/Turin/cert_chain", Reply::status(429));
    let dir = tempfile::tempdir().unwrap();
    let client = kds.client(dir.path());

    let err = client.vcek(&turin_id()).unwrap_err();
    assert!(
        matches!(&err, KdsError::RateLimited { retry_after: Some(r), .. } if r == "10"),
        "{err:?}"
    );
    assert!(err.to_string().contains("rate-limited"));
    assert!(err.to_string().contains("retry after 10"));
    let hint = err.hint().unwrap();
    assert!(
        hint.contains("after 10") && hint.contains("cache"),
        "{hint}"
    );

    let err = client
        .cert_chain(Product::Turin, VekKind::Vcek)
        .unwrap_err();
    assert!(matches!(
        err,
        KdsError::RateLimited {
            retry_after: None,
            ..
        }
    ));
}

#[test]
fn maps_other_statuses_to_http_status() {
    let kds = FakeKds::start();
    kds.route("/vcek/v1/Genoa/cert_chain", Reply::status(500));
    let dir = tempfile::tempdir().unwrap();
    let err = kds
        .client(dir.path())
        .cert_chain(Product::Genoa, VekKind::Vcek)
        .unwrap_err();
    assert!(
        matches!(err, KdsError::HttpStatus { status: 500, .. }),
        "{err:?}"
    );
}

#[test]
fn rejects_html_with_status_200_and_caches_nothing() {
    let kds = FakeKds::start();
    let page = b"<!DOCTYPE html>\n<html><body>Access denied</body></html>\n".to_vec();
    // Sniffed from the body although labelled as binary...
    kds.route(TURIN_VCEK_TARGET, Reply::ok(page.clone()));
    // ...and refused by its Content-Type even when the body is a real chain.
    kds.route(
        "/vcek/v1/Milan/cert_chain",
        Reply::ok(fixture("reports/sev-cert-chain-milan.pem"))
            .header("Content-Type", "text/html; charset=utf-8"),
    );
    let dir = tempfile::tempdir().unwrap();
    let client = kds.client(dir.path());

    for _ in 0..2 {
        let err = client.vcek(&turin_id()).unwrap_err();
        assert!(
            matches!(&err, KdsError::InvalidResponse { reason, .. } if reason.contains("HTML")),
            "{err:?}"
        );
        let err = client
            .cert_chain(Product::Milan, VekKind::Vcek)
            .unwrap_err();
        assert!(
            matches!(&err, KdsError::InvalidResponse { reason, .. } if reason.contains("text/html")),
            "{err:?}"
        );
    }
    // Nothing cached, so every call went to the server.
    assert_eq!(kds.seen().len(), 4);
    assert!(files_below(dir.path()).is_empty());
}

#[test]
fn rejects_a_chain_served_as_a_vcek() {
    let kds = FakeKds::start();
    kds.route(
        TURIN_VCEK_TARGET,
        Reply::ok(fixture("reports/sev-cert-chain-turin.pem")),
    );
    let dir = tempfile::tempdir().unwrap();
    let err = kds.client(dir.path()).vcek(&turin_id()).unwrap_err();
    assert!(
        matches!(
            err,
            KdsError::InvalidResponse {
                what: "DER certificate",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(files_below(dir.path()).is_empty());
}

#[test]
fn replaces_corrupt_cached_file_online_and_reports_it_offline() {
    let kds = FakeKds::start();
    let vcek = fixture("reports/oak-turin-oc-vcek.der");
    kds.route(TURIN_VCEK_TARGET, Reply::ok(vcek.clone()));
    let dir = tempfile::tempdir().unwrap();
    let cache = KdsCache::new(dir.path());
    let path = cache.path_of(&KdsResource::Vcek(turin_id())).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &vcek[..100]).unwrap();

    let offline = kds.client(dir.path()).with_offline(true);
    let err = offline.vcek(&turin_id()).unwrap_err();
    assert!(
        matches!(&err, KdsError::InvalidCached { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(err.hint().unwrap().contains(&path.display().to_string()));

    assert_eq!(kds.client(dir.path()).vcek(&turin_id()).unwrap(), vcek);
    assert_eq!(std::fs::read(&path).unwrap(), vcek);
    assert_eq!(kds.seen().len(), 1);
}

#[test]
fn atomic_writes_leave_no_temp_files() {
    let kds = FakeKds::start();
    kds.route(
        TURIN_VCEK_TARGET,
        Reply::ok(fixture("reports/oak-turin-oc-vcek.der")),
    );
    kds.route(
        "/vcek/v1/Turin/cert_chain",
        Reply::ok(fixture("reports/sev-cert-chain-turin.pem")),
    );
    kds.route(
        "/vcek/v1/Turin/crl",
        Reply::ok(testdata("crl-next-update-2099.der")),
    );
    let dir = tempfile::tempdir().unwrap();
    // Max age zero: every CRL call rewrites the file.
    let client = kds.client(dir.path()).with_crl_max_age(Duration::ZERO);
    client.vcek(&turin_id()).unwrap();
    client.cert_chain(Product::Turin, VekKind::Vcek).unwrap();
    for _ in 0..3 {
        client.crl(Product::Turin, VekKind::Vcek).unwrap();
    }
    assert_eq!(
        files_below(dir.path()),
        [
            PathBuf::from("vcek/v1/Turin/3b42092f69c656d3/bl01_tee00_snp02_ucode71_fmc00.der"),
            PathBuf::from("vcek/v1/Turin/cert_chain.pem"),
            PathBuf::from("vcek/v1/Turin/crl.der"),
        ]
    );
}

#[test]
fn masked_chip_id_is_refused_before_any_request() {
    let kds = FakeKds::start();
    let dir = tempfile::tempdir().unwrap();
    let mut id = milan_id();
    id.chip_id = [0; 64];
    let err = kds.client(dir.path()).vcek(&id).unwrap_err();
    assert!(matches!(
        err,
        KdsError::MaskedChipId {
            product: Product::Milan
        }
    ));
    assert_eq!(
        err.to_string(),
        "cannot fetch a Milan VCEK for a masked chip id"
    );
    assert!(err.hint().unwrap().contains("--vcek"));
    assert!(kds.seen().is_empty());
}

#[test]
fn network_error_names_the_url() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let client = KdsClient::new().with_base_url(&base);
    let err = client.crl(Product::Milan, VekKind::Vcek).unwrap_err();
    let KdsError::Network { url, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*url, format!("{base}/vcek/v1/Milan/crl"));
    assert!(std::error::Error::source(&err).is_some());
    assert!(err.hint().unwrap().contains("cache"));
}

#[test]
fn cert_source_is_object_safe_and_works_through_smart_pointers() {
    let kds = FakeKds::start();
    let chain = fixture("reports/sev-cert-chain-milan.pem");
    kds.route("/vcek/v1/Milan/cert_chain", Reply::ok(chain.clone()));
    let dir = tempfile::tempdir().unwrap();
    let boxed: Box<dyn CertSource + Send + Sync> = Box::new(kds.client(dir.path()));
    let shared: Arc<dyn CertSource + Send + Sync> = Arc::new(kds.client(dir.path()));
    assert_eq!(
        boxed.cert_chain(Product::Milan, VekKind::Vcek).unwrap(),
        chain
    );
    assert_eq!(
        shared.cert_chain(Product::Milan, VekKind::Vcek).unwrap(),
        chain
    );
    assert_eq!(kds.seen().len(), 1);
}
