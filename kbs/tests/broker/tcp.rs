//! Real TCP (and TLS) through our own client.

use std::net::SocketAddr;
use std::sync::Arc;

use a3s_kbs::client::{AdminClient, AdminPolicy, ClientError, KbsClient};
use a3s_kbs::protocol::ResourcePath;
use a3s_kbs::AppState;

use crate::support::*;

/// Serves `state` on a loopback port as `a3s-box kbs serve` does (several single-threaded
/// runtimes, so concurrent clients land on different threads); returns the address.
fn serve(state: AppState, tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        a3s_kbs::serve::serve_per_core(listener, a3s_kbs::app(state), tls, 3).unwrap();
    });
    addr
}

/// The same on the caller's runtime ([`a3s_kbs::serve::serve`], as the in-process KBS of
/// `run --tee-simulate` serves).
fn serve_on_runtime(state: AppState) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            a3s_kbs::serve::serve(listener, a3s_kbs::app(state), None)
                .await
                .unwrap();
        });
    });
    rx.recv().unwrap()
}

fn path(s: &str) -> ResourcePath {
    s.parse().unwrap()
}

#[test]
fn client_gets_the_secret_after_attesting() {
    let b = broker();
    let addr = serve(b.state.clone(), None);
    let client = KbsClient::new(&format!("http://{addr}")).unwrap();
    let secret = client
        .get_resource(&SimAttester::new(MEASUREMENT), &path("default/key/1"))
        .unwrap();
    assert_eq!(&secret[..], b"top secret");
    // The token also works as a bearer credential.
    let session = client.attest(&SimAttester::new(MEASUREMENT)).unwrap();
    assert_eq!(
        &client
            .resource_with_token(&session.token, &path("default/key/1"))
            .unwrap()[..],
        b"top secret"
    );
    assert!(matches!(
        client.resource(&session, &path("default/key/none")),
        Err(ClientError::NotFound(_))
    ));
}

#[test]
fn a_broker_on_the_callers_runtime_serves_the_protocol_too() {
    let b = broker();
    let addr = serve_on_runtime(b.state.clone());
    let client = KbsClient::new(&format!("http://{addr}")).unwrap();
    let secret = client
        .get_resource(&SimAttester::new(MEASUREMENT), &path("default/key/1"))
        .unwrap();
    assert_eq!(&secret[..], b"top secret");
}

#[test]
fn client_is_denied_for_an_unknown_measurement() {
    let b = broker();
    let addr = serve(b.state.clone(), None);
    let client = KbsClient::new(&format!("http://{addr}")).unwrap();
    let err = client
        .get_resource(&SimAttester::new([0x22; 48]), &path("default/key/1"))
        .unwrap_err();
    match &err {
        ClientError::Refused { status, kind, .. } => {
            assert_eq!((*status, kind.as_str()), (401, "PolicyDeny"))
        }
        other => panic!("{other:?}"),
    }
    assert!(err.hint().unwrap().contains("reference values"));
}

#[test]
fn concurrent_clients_are_isolated() {
    let b = broker();
    b.storage
        .put(
            a3s_kbs::storage::Namespace::Resource,
            "default/key/2",
            b"second",
        )
        .unwrap();
    let addr = serve(b.state.clone(), None);
    let url = format!("http://{addr}");
    let handles: Vec<_> = (0..12)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let client = KbsClient::new(&url).unwrap();
                // Half the guests run an unknown measurement: they must never see a secret.
                let good = i % 2 == 0;
                let m = if good { MEASUREMENT } else { [0x33; 48] };
                let tag = if i % 4 == 0 {
                    "default/key/1"
                } else {
                    "default/key/2"
                };
                (
                    good,
                    tag,
                    client.get_resource(&SimAttester::new(m), &path(tag)),
                )
            })
        })
        .collect();
    for h in handles {
        let (good, tag, result) = h.join().unwrap();
        if good {
            let want: &[u8] = if tag == "default/key/1" {
                b"top secret"
            } else {
                b"second"
            };
            assert_eq!(&result.unwrap()[..], want);
        } else {
            assert!(matches!(result, Err(ClientError::Refused { .. })));
        }
    }
}

#[test]
fn admin_client_manages_resources_policies_and_reference_values() {
    let b = broker();
    let addr = serve(b.state.clone(), None);
    let url = format!("http://{addr}");
    let admin = AdminClient::new(&url, Some(b.admin_key.clone()), None).unwrap();
    admin.set_resource(&path("app/tls/key"), b"k3y").unwrap();
    let m = [0x44; 48];
    let mut rv = serde_json::Map::new();
    rv.insert(
        "snp_launch_measurement".into(),
        serde_json::json!([hex::encode(m)]),
    );
    admin.set_reference_values(&rv).unwrap();
    assert_eq!(
        admin.reference_value("snp_launch_measurement").unwrap(),
        serde_json::json!([hex::encode(m)])
    );
    let client = KbsClient::new(&url).unwrap();
    assert_eq!(
        &client
            .get_resource(&SimAttester::new(m), &path("app/tls/key"))
            .unwrap()[..],
        b"k3y"
    );
    admin
        .set_policy(AdminPolicy::Resource, a3s_kbs::policy::RESOURCE_DENY_ALL)
        .unwrap();
    assert!(client
        .get_resource(&SimAttester::new(m), &path("app/tls/key"))
        .is_err());
    admin.delete_resource(&path("app/tls/key")).unwrap();
    assert!(matches!(
        admin.delete_resource(&path("app/tls/key")),
        Err(ClientError::NotFound(_))
    ));
    let err = admin
        .set_policy(AdminPolicy::Attestation, "package policy\nallow if {")
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Refused { ref kind, .. } if kind == "ParsePolicyError"),
        "{err:?}"
    );
    let anonymous = AdminClient::new(&url, None, None).unwrap();
    assert!(matches!(
        anonymous.set_resource(&path("a/b/c"), b"x"),
        Err(ClientError::Refused { ref kind, .. }) if kind == "AdminAuthAccess"
    ));
}

#[test]
fn client_works_over_tls_with_a_pinned_ca() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A CA, and a server certificate for 127.0.0.1 issued by it.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=test CA",
        "-days",
        "1",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("key.pem"),
        "-out",
        &p("req.csr"),
    ]);
    std::fs::write(
        dir.path().join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("req.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &p("ext"),
        "-out",
        &p("cert.pem"),
    ]);
    let b = broker();
    let tls = a3s_kbs::serve::tls_config(&cert, &key).unwrap();
    let addr = serve(b.state.clone(), Some(tls));
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let key_pair = a3s_kbs::jwe::TeeKeyPair::generate(a3s_kbs::jwe::TeeKeyKind::P256).unwrap();
    let client = KbsClient::with_key(&format!("https://{addr}"), key_pair, Some(&ca)).unwrap();
    assert_eq!(
        &client
            .get_resource(&SimAttester::new(MEASUREMENT), &path("default/key/1"))
            .unwrap()[..],
        b"top secret"
    );
    // Without the CA the server is not trusted.
    let untrusted = KbsClient::new(&format!("https://{addr}")).unwrap();
    assert!(matches!(
        untrusted.get_resource(&SimAttester::new(MEASUREMENT), &path("default/key/1")),
        Err(ClientError::Network { .. })
    ));
}

#[test]
fn client_rejects_bad_urls() {
    for url in ["ftp://x", "not a url", "http://"] {
        assert!(
            matches!(KbsClient::new(url), Err(ClientError::Url(_))),
            "{url}"
        );
    }
}
