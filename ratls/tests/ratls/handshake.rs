//! Real rustls handshakes over loopback TCP: what is accepted, and one distinct refusal per
//! attack.

use std::sync::Arc;

use a3s_attestation::policy::AppraisalPolicy;
use a3s_attestation::verify::VerifyError;
use a3s_ratls::evidence::{Claims, Evidence, EvidenceKind, EVIDENCE_OID};
use a3s_ratls::freshness::{self, fresh_evidence, read_message, write_message, Message};
use a3s_ratls::{
    cert, connect, serve, Attested, ClientConfig, Identity, PeerError, ServerAuth, ServerConfig,
    SessionError, Verifier,
};
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P384_SHA384};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::support::{attested, pair, policy, sim_verifier, SimAttester, MEASUREMENT};

/// The client verifies an attested server; returns the client's result.
async fn client_verifies(
    server: ServerConfig,
    verifier: Verifier,
) -> Result<a3s_ratls::VerifiedPeer, SessionError> {
    let (_server, client) = pair(
        move |tcp| async move { serve(tcp, &server).await.map(|_| ()) },
        move |tcp| async move {
            let config = ClientConfig::new(ServerAuth::Attested(verifier));
            connect(tcp, &config)
                .await
                .map(|s| s.peer().cloned().unwrap())
        },
    )
    .await;
    client
}

fn peer_error(result: Result<impl std::fmt::Debug, SessionError>) -> Arc<PeerError> {
    match result {
        Err(SessionError::Peer(e)) => e,
        other => panic!("expected a peer error, got {other:?}"),
    }
}

fn signing_key(key: &KeyPair) -> Arc<dyn rustls::sign::SigningKey> {
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    a3s_ratls::provider()
        .key_provider
        .load_private_key(der)
        .unwrap()
}

fn extension(cert: &[u8], oid: &str) -> Option<Vec<u8>> {
    let (_, x509) = X509Certificate::from_der(cert).unwrap();
    x509.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == oid)
        .map(|e| e.value.to_vec())
}

#[tokio::test]
async fn accepts_simulated_evidence_when_allowed_and_returns_the_claims() {
    let server = attested(MEASUREMENT);
    let spki = server.identity().spki_der().to_vec();
    let peer = client_verifies(ServerConfig::attested(server), sim_verifier())
        .await
        .unwrap();
    assert!(peer.simulated());
    assert!(peer.verdict().simulated);
    assert!(peer.verdict().passed());
    assert_eq!(peer.measurement(), MEASUREMENT);
    assert!(peer.claims().pubkey_hash.matches(&spki));
    assert_eq!(peer.claims().nonce.as_ref().map(Vec::len), Some(32));
    // The certificate's evidence has no nonce; the fresh report is another report.
    assert_eq!(peer.certificate().claims().nonce, None);
    assert_ne!(
        peer.report().report().report_data(),
        peer.certificate().report().report().report_data()
    );
}

#[tokio::test]
async fn mutual_ratls_verifies_both_sides() {
    let server = ServerConfig::attested(attested(MEASUREMENT)).verify_clients(sim_verifier());
    let client_side = attested(MEASUREMENT);
    let (server, client) = pair(
        move |tcp| async move { serve(tcp, &server).await.map(|s| s.peer().cloned()) },
        move |tcp| async move {
            let config =
                ClientConfig::new(ServerAuth::Attested(sim_verifier())).with_identity(client_side);
            connect(tcp, &config).await.map(|s| s.peer().cloned())
        },
    )
    .await;
    let (server_saw, client_saw) = (server.unwrap().unwrap(), client.unwrap().unwrap());
    assert!(server_saw.simulated() && client_saw.simulated());
    // Each side saw the other's key.
    assert_ne!(
        server_saw.certificate().spki_der(),
        client_saw.certificate().spki_der()
    );
}

/// A relying party outside a TEE: an ordinary CA-issued server certificate, RA-TLS clients.
fn plain_server_key() -> (Arc<CertifiedKey>, rustls::RootCertStore) {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let certified = CertifiedKey::new(vec![leaf.der().clone()], signing_key(&key));
    (Arc::new(certified), roots)
}

#[tokio::test]
async fn plain_server_verifies_attested_clients() {
    let (key, roots) = plain_server_key();
    let server = ServerConfig::plain(key).verify_clients(sim_verifier());
    let client_side = attested(MEASUREMENT);
    let (server, client) = pair(
        move |tcp| async move { serve(tcp, &server).await.map(|s| s.peer().cloned()) },
        move |tcp| async move {
            let config = ClientConfig::new(ServerAuth::WebPki {
                roots: Arc::new(roots),
                server_name: ServerName::try_from("localhost").unwrap(),
            })
            .with_identity(client_side);
            connect(tcp, &config).await.map(|s| s.peer().is_none())
        },
    )
    .await;
    assert!(client.unwrap(), "the client did not verify evidence");
    let peer = server.unwrap().unwrap();
    assert_eq!(peer.measurement(), MEASUREMENT);
}

#[tokio::test]
async fn rejects_a_client_with_the_wrong_measurement() {
    let (key, roots) = plain_server_key();
    let server = ServerConfig::plain(key).verify_clients(sim_verifier());
    let client_side = attested([0x01; 48]);
    let (server, _client) = pair(
        move |tcp| async move { serve(tcp, &server).await.map(|_| ()) },
        move |tcp| async move {
            let config = ClientConfig::new(ServerAuth::WebPki {
                roots: Arc::new(roots),
                server_name: ServerName::try_from("localhost").unwrap(),
            })
            .with_identity(client_side);
            connect(tcp, &config).await.map(|_| ())
        },
    )
    .await;
    let e = peer_error(server);
    assert!(
        matches!(
            *e,
            PeerError::Policy {
                check: "measurement",
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn rejects_a_server_with_the_wrong_measurement() {
    let server = ServerConfig::attested(attested([0x01; 48]));
    let e = peer_error(client_verifies(server, sim_verifier()).await);
    assert!(
        matches!(
            *e,
            PeerError::Policy {
                check: "measurement",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.hint().unwrap().contains("a3s-box measure"));
}

#[tokio::test]
async fn rejects_simulated_evidence_without_permission() {
    // Even a policy saying allow_simulated does not make a verifier trust the simulator's
    // roots: only danger::accept_simulated does.
    let lenient = AppraisalPolicy {
        allow_simulated: true,
        ..policy()
    };
    let server = ServerConfig::attested(attested(MEASUREMENT));
    let e = peer_error(client_verifies(server, Verifier::new(lenient)).await);
    assert!(matches!(*e, PeerError::SimulatedNotAllowed), "{e:?}");
    assert!(e.hint().unwrap().contains("accept_simulated"));
}

#[tokio::test]
async fn rejects_simulator_evidence_claiming_to_be_hardware() {
    let attester = SimAttester::launch(MEASUREMENT);
    let identity = Identity::generate(attester.as_ref(), EvidenceKind::Hardware).unwrap();
    let server = ServerConfig::attested(Attested::new(Arc::new(identity), attester));
    let e = peer_error(client_verifies(server, sim_verifier()).await);
    // Hardware-tagged evidence is verified against AMD's roots only, where the simulator's
    // chain does not lead.
    assert!(
        matches!(*e, PeerError::Report(VerifyError::Chain(_))),
        "{e:?}"
    );
}

#[tokio::test]
async fn rejects_evidence_made_for_another_key() {
    // The attacker takes a genuine certificate's evidence and puts it in a certificate for a
    // key it holds.
    let genuine = attested(MEASUREMENT);
    let cert = genuine.identity().certificate();
    let evidence = extension(cert, "2.23.133.5.4.9").unwrap();
    let endorsements = extension(cert, "2.23.133.5.4.2");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let forged = cert::self_signed(
        &key,
        EvidenceKind::Simulated,
        &evidence,
        endorsements.as_deref(),
    )
    .unwrap();
    let server = ServerConfig::plain(Arc::new(CertifiedKey::new(vec![forged], signing_key(&key))));
    let e = peer_error(client_verifies(server, sim_verifier()).await);
    assert!(matches!(*e, PeerError::PubkeyHashMismatch), "{e:?}");
    assert_eq!(EVIDENCE_OID, [2, 23, 133, 5, 4, 9]);
}

#[tokio::test]
async fn rejects_a_certificate_copied_onto_another_key() {
    // The attacker copies a genuine certificate byte for byte but has not got its key.
    let genuine = attested(MEASUREMENT);
    let other = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let server = ServerConfig::plain(Arc::new(CertifiedKey::new(
        vec![genuine.identity().certificate().clone()],
        signing_key(&other),
    )));
    let e = peer_error(client_verifies(server, sim_verifier()).await);
    assert!(matches!(*e, PeerError::HandshakeSignature(_)), "{e:?}");
}

#[tokio::test]
async fn rejects_a_certificate_without_evidence() {
    let (key, _) = plain_server_key();
    let e = peer_error(client_verifies(ServerConfig::plain(key), sim_verifier()).await);
    assert!(matches!(*e, PeerError::MissingEvidence), "{e:?}");
}

/// A server that holds `attested`'s key and certificate but answers the challenge with
/// whatever `answer(exporter, nonce)` makes, instead of following the protocol.
async fn misbehaving_server<F>(attested: Attested, answer: F) -> Result<(), SessionError>
where
    F: FnOnce([u8; 32], [u8; 32]) -> Vec<u8> + Send + 'static,
{
    let key = attested.identity().certified_key();
    let (_, client) = pair(
        move |tcp: TcpStream| async move {
            let tls = rustls::ServerConfig::builder_with_provider(a3s_ratls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
            let mut s = TlsAcceptor::from(Arc::new(tls)).accept(tcp).await.unwrap();
            let exporter = freshness::exporter(s.get_ref().1).unwrap();
            let Message::Challenge(nonce) = read_message(&mut s).await.unwrap() else {
                panic!("expected a challenge");
            };
            let evidence = answer(exporter, nonce);
            write_message(&mut s, &Message::Evidence(evidence))
                .await
                .unwrap();
            write_message(&mut s, &Message::Skip).await.unwrap();
            // Wait for the client to hang up.
            let _ = s.read(&mut [0u8; 1]).await;
        },
        move |tcp| async move {
            let config = ClientConfig::new(ServerAuth::Attested(sim_verifier()));
            connect(tcp, &config).await.map(|_| ())
        },
    )
    .await;
    client
}

#[tokio::test]
async fn the_misbehaving_server_harness_passes_when_it_behaves() {
    let a = attested(MEASUREMENT);
    let honest = a.clone();
    misbehaving_server(a, move |exporter, nonce| {
        fresh_evidence(
            honest.identity(),
            honest.attester().as_ref(),
            &exporter,
            &nonce,
        )
        .unwrap()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn rejects_a_stale_nonce() {
    // A genuine fresh report, but for a nonce the verifier did not send on this connection.
    let a = attested(MEASUREMENT);
    let honest = a.clone();
    let e = peer_error(
        misbehaving_server(a, move |exporter, _nonce| {
            fresh_evidence(
                honest.identity(),
                honest.attester().as_ref(),
                &exporter,
                &[0; 32],
            )
            .unwrap()
        })
        .await,
    );
    assert!(matches!(*e, PeerError::StaleNonce), "{e:?}");
}

#[tokio::test]
async fn rejects_evidence_replayed_from_another_connection() {
    // Connection 1 is honest; its answer is recorded and sent again on connection 2.
    let a = attested(MEASUREMENT);
    let (honest, recorder) = (a.clone(), Arc::new(std::sync::Mutex::new(Vec::new())));
    let rec = recorder.clone();
    misbehaving_server(a.clone(), move |exporter, nonce| {
        let e = fresh_evidence(
            honest.identity(),
            honest.attester().as_ref(),
            &exporter,
            &nonce,
        )
        .unwrap();
        *rec.lock().unwrap() = e.clone();
        e
    })
    .await
    .unwrap();
    let recorded = recorder.lock().unwrap().clone();
    let e = peer_error(misbehaving_server(a, move |_, _| recorded).await);
    assert!(matches!(*e, PeerError::StaleNonce), "{e:?}");
}

#[tokio::test]
async fn rejects_a_replayed_report_with_recomputed_claims() {
    // The attacker (holding the key, not the TEE) computes this connection's claims itself
    // but can only attach a report from an earlier connection.
    let a = attested(MEASUREMENT);
    let old_report = a.identity().report().as_bytes().to_vec();
    let spki = a.identity().spki_der().to_vec();
    let e = peer_error(
        misbehaving_server(a, move |exporter, nonce| {
            let claims =
                Claims::for_key(&spki, Some(freshness::binding(&exporter, &nonce).to_vec()));
            Evidence::encode(EvidenceKind::Simulated, &old_report, &claims.encode())
        })
        .await,
    );
    assert!(matches!(*e, PeerError::ReportDataMismatch { .. }), "{e:?}");
}

#[tokio::test]
async fn rejects_a_fresh_report_from_another_guest() {
    // Same key and a correctly bound nonce, but the report comes from another launch of the
    // guest than the certificate's (another REPORT_ID).
    let a = attested(MEASUREMENT);
    let other_guest = SimAttester::launch(MEASUREMENT);
    let honest = a.clone();
    let e = peer_error(
        misbehaving_server(a, move |exporter, nonce| {
            fresh_evidence(honest.identity(), other_guest.as_ref(), &exporter, &nonce).unwrap()
        })
        .await,
    );
    assert!(matches!(*e, PeerError::DifferentGuest), "{e:?}");
}
