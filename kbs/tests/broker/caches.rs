//! Issue 17: the verified-VEK cache (per chip, reported TCB and key kind) takes the chain
//! out of the repeat path but never the report's own checks.

use serde_json::json;

use crate::support::{
    attestation, attested, auth, broker, json_post, send, tee_key, SimAttester, MEASUREMENT,
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
