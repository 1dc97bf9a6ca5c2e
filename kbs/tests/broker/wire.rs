//! Trustee wire formats: the real trustee SNP evidence JSON parses and verifies.

use a3s_kbs::verifier::{EvidenceError, EvidenceVerifier};
use serde_json::Value;
use time::macros::datetime;

use crate::support::*;

fn trustee_evidence() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/snp/reports/trustee-genoa-v3-evidence.json"
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn fixture_report_data(v: &Value) -> [u8; 64] {
    let bytes: Vec<u8> = v["attestation_report"]["report_data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

#[test]
fn real_trustee_snp_evidence_verifies_against_amd_roots() {
    let ev = trustee_evidence();
    let rd = fixture_report_data(&ev);
    let v = EvidenceVerifier::new(None)
        .verify(&ev, &rd, datetime!(2025-09-01 00:00 UTC))
        .unwrap();
    assert!(!v.report.simulated());
    assert!(!v.verdict.simulated);
    assert_eq!(v.report.product(), a3s_attestation::Product::Genoa);
    assert_eq!(v.claims["simulated"], false);
    assert_eq!(v.claims["reported_tcb_snp"], 23);
    assert_eq!(v.claims["reported_tcb_bootloader"], 10);
    assert_eq!(v.claims["policy_debug_allowed"], false);
    assert_eq!(v.claims["measurement"].as_str().unwrap().len(), 96);
    // With simulated evidence allowed too, AMD evidence still verifies as hardware.
    let v = EvidenceVerifier::new(None)
        .allow_simulated(shared().sim.roots().unwrap())
        .verify(&ev, &rd, datetime!(2025-09-01 00:00 UTC))
        .unwrap();
    assert!(!v.report.simulated());
}

#[test]
fn real_trustee_evidence_for_other_runtime_data_is_a_binding_error() {
    let ev = trustee_evidence();
    let mut rd = fixture_report_data(&ev);
    rd[0] ^= 1;
    assert!(matches!(
        EvidenceVerifier::new(None).verify(&ev, &rd, datetime!(2025-09-01 00:00 UTC)),
        Err(EvidenceError::Binding)
    ));
}

#[test]
fn real_trustee_evidence_with_a_flipped_measurement_fails_the_signature() {
    let mut ev = trustee_evidence();
    let rd = fixture_report_data(&ev);
    let m = ev["attestation_report"]["measurement"][0].as_u64().unwrap();
    ev["attestation_report"]["measurement"][0] = (m ^ 1).into();
    match EvidenceVerifier::new(None).verify(&ev, &rd, datetime!(2025-09-01 00:00 UTC)) {
        Err(EvidenceError::Verify { check, .. }) => assert_eq!(check, "signature"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn real_trustee_evidence_is_outside_validity_before_its_vcek() {
    let ev = trustee_evidence();
    let rd = fixture_report_data(&ev);
    assert!(matches!(
        EvidenceVerifier::new(None).verify(&ev, &rd, datetime!(2000-01-01 00:00 UTC)),
        Err(EvidenceError::Verify {
            check: "certificate_chain",
            ..
        })
    ));
}

#[tokio::test]
async fn real_trustee_evidence_sent_to_a_session_is_evidence_for_another_nonce() {
    let b = broker();
    let (cookie, nonce) = auth(&b.state).await;
    let (_, jwk) = tee_key();
    let body = serde_json::json!({
        "init-data": null,
        "runtime-data": {"nonce": nonce, "tee-pubkey": jwk.0},
        "tee-evidence": {"primary_evidence": trustee_evidence(), "additional_evidence": ""},
    });
    let r = send(&b.state, json_post("/kbs/v0/attest", &body, Some(&cookie))).await;
    assert_eq!((r.status, r.kind().as_str()), (401, "AttestationError"));
    assert!(r.json()["detail"].as_str().unwrap().contains("REPORT_DATA"));
}

#[test]
fn our_evidence_json_has_the_trustee_shape() {
    let att = SimAttester::new(MEASUREMENT);
    let ev = a3s_attestation::hw::Attester::report(&att, &[7; 64], 0).unwrap();
    let json = ev.to_trustee_json().unwrap();
    let ours: std::collections::BTreeSet<&String> = json["attestation_report"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    let theirs = trustee_evidence();
    let trustee: std::collections::BTreeSet<&String> = theirs["attestation_report"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    // Ours is a v5 report: trustee's v3 fixture lacks only the two mitigation vectors.
    let extra: Vec<&&String> = ours.difference(&trustee).collect();
    assert_eq!(
        extra,
        [
            &&"current_mit_vector".to_owned(),
            &&"launch_mit_vector".to_owned()
        ]
    );
    assert!(trustee.is_subset(&ours));
    assert_eq!(json["cert_chain"][0]["cert_type"], "VCEK");
}
