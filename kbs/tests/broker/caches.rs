//! Issue 17: the verified-VEK cache (per chip, reported TCB and key kind) takes the chain
//! out of the repeat path but never the report's own checks; a revoked chip is refused.

use std::sync::Arc;

use a3s_attestation::certs::{Certificate, VekKind};
use a3s_attestation::kds::{CertSource, KdsError, VcekId};
use a3s_attestation::Product;
use a3s_kbs::verifier::EvidenceVerifier;
use serde_json::json;

use crate::support::{
    attestation, attested, auth, broker, broker_with, json_post, send, shared, tee_key,
    SimAttester, MEASUREMENT,
};

#[tokio::test]
async fn a_cached_vek_still_checks_every_report() {
    let b = broker();
    assert_eq!(b.state.verifier.cached_veks(), 0);
    attested(&b.state, MEASUREMENT).await;
    assert_eq!(b.state.verifier.cached_veks(), 1, "the chip's VEK is kept");
    // Another launch of the same chip and TCB: verified with the cached VEK.
    attested(&b.state, [0x11; 48]).await;
    assert_eq!(b.state.verifier.cached_veks(), 1);
    // A tampered report of that chip is still refused at its signature.
    let (cookie, nonce) = auth(&b.state).await;
    let (_, jwk) = tee_key();
    let mut body = attestation(&SimAttester::new(MEASUREMENT), &nonce, &jwk, &nonce, &jwk);
    body["tee-evidence"]["primary_evidence"]["attestation_report"]["measurement"][0] = json!(0);
    let r = send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await;
    assert_eq!((r.status, r.kind().as_str()), (401, "AttestationError"));
    assert!(
        r.json()["detail"].as_str().unwrap().contains("signature"),
        "{:?}",
        r.json()
    );
}

fn offline() -> KdsError {
    KdsError::OfflineNoCache {
        url: "test://crl".into(),
    }
}

/// CRLs as a KDS would serve them: `crl` is the simulated ARK's list, nothing else exists.
struct Crls(Vec<u8>);

impl CertSource for Crls {
    fn cert_chain(&self, _: Product, _: VekKind) -> Result<Vec<u8>, KdsError> {
        Err(offline())
    }

    fn vcek(&self, _: &VcekId) -> Result<Vec<u8>, KdsError> {
        Err(offline())
    }

    fn crl(&self, _: Product, _: VekKind) -> Result<Vec<u8>, KdsError> {
        if self.0.is_empty() {
            return Err(offline());
        }
        Ok(self.0.clone())
    }
}

fn with_crls(crl: Vec<u8>) -> crate::support::Broker {
    broker_with(|c| {
        c.verifier = EvidenceVerifier::new(None)
            .allow_simulated(shared().sim.roots().unwrap())
            .with_simulated_crls(Arc::new(Crls(crl)));
    })
}

async fn attest_status(b: &crate::support::Broker) -> (u16, String) {
    let (cookie, nonce) = auth(&b.state).await;
    let (_, jwk) = tee_key();
    let body = attestation(&SimAttester::new(MEASUREMENT), &nonce, &jwk, &nonce, &jwk);
    let r = send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await;
    let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
    (r.status, detail)
}

#[tokio::test]
async fn a_revoked_chip_is_refused_and_a_missing_crl_fails_closed() {
    let sim = &shared().sim;
    let vcek = Certificate::from_der(sim.default_chip().vcek_der()).unwrap();
    // The ARK's CRL listing another serial: the chip attests.
    let clean = sim.revocation_list(Product::Milan, &[vec![0x42]]).unwrap();
    assert_eq!(attest_status(&with_crls(clean)).await.0, 200);
    // Listing the chip's VCEK: refused, naming the revocation.
    let revoked = sim
        .revocation_list(Product::Milan, &[vcek.serial().to_vec()])
        .unwrap();
    let (status, detail) = attest_status(&with_crls(revoked)).await;
    assert_eq!(status, 401, "{detail}");
    assert!(detail.contains("revoked"), "{detail}");
    // No CRL to be had: revocation cannot be checked, so nothing is affirmed.
    let (status, detail) = attest_status(&with_crls(Vec::new())).await;
    assert_eq!(status, 401, "{detail}");
    assert!(detail.contains("checking revocation"), "{detail}");
}
