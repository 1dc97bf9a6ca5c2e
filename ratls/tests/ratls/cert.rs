//! The certificate itself, and the verifier's checks called directly (no TLS needed).

use a3s_attestation::hw::Attester;
use a3s_attestation::verify::VerifyError;
use a3s_ratls::evidence::{
    encode_endorsements, parse_endorsements, Claims, Evidence, EvidenceKind,
};
use a3s_ratls::{cert, PeerError};
use rcgen::{KeyPair, PublicKeyData, PKCS_ECDSA_P384_SHA384};
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::support::{attested, home, sim_verifier, SimAttester, MEASUREMENT};

#[test]
fn carries_non_critical_evidence_and_endorsements_for_a_p384_key() {
    let a = attested(MEASUREMENT);
    let der = a.identity().certificate();
    let (rest, x509) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    let spki = &x509.tbs_certificate.subject_pki;
    assert_eq!(spki.raw, a.identity().spki_der());
    assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .unwrap()
        .as_oid()
        .unwrap();
    assert_eq!(curve.to_id_string(), "1.3.132.0.34", "secp384r1");

    let ext = |oid: &str| {
        x509.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid)
            .unwrap()
    };
    let evidence = ext("2.23.133.5.4.9");
    assert!(!evidence.critical);
    let evidence = Evidence::parse(evidence.value).unwrap();
    assert_eq!(evidence.kind(), EvidenceKind::Simulated);
    assert!(evidence.claims().pubkey_hash.matches(spki.raw));
    assert_eq!(evidence.claims().nonce, None);
    assert_eq!(
        evidence.report().report_data(),
        Claims::report_data(evidence.claims_bytes())
    );
    assert_eq!(evidence.report().measurement(), MEASUREMENT);

    let endorsements = ext("2.23.133.5.4.2");
    assert!(!endorsements.critical);
    let (kind, certs) = parse_endorsements(endorsements.value).unwrap();
    assert_eq!(kind, EvidenceKind::Simulated);
    assert_eq!(certs, [home().sim.default_chip().vcek_der()]);
}

#[test]
fn verifies_directly_and_refuses_outside_validity() {
    let a = attested(MEASUREMENT);
    let der = a.identity().certificate();
    let v = sim_verifier();
    let now = OffsetDateTime::now_utc();
    let ok = v.verify_certificate(der, &[], now).unwrap();
    assert!(ok.verdict().passed() && ok.verdict().simulated);
    for at in [now - Duration::hours(1), now + Duration::days(2)] {
        assert!(matches!(
            v.verify_certificate(der, &[], at),
            Err(PeerError::Validity { .. })
        ));
    }
    assert!(matches!(
        v.verify_certificate(der, std::slice::from_ref(der), now),
        Err(PeerError::Intermediates(1))
    ));
    assert!(matches!(
        v.verify_certificate(&CertificateDer::from(vec![0x30, 0x03]), &[], now),
        Err(PeerError::Certificate(_))
    ));
}

/// A certificate for `key` whose report is edited by `edit` after signing.
fn certificate_with(edit: impl FnOnce(&mut Vec<u8>)) -> CertificateDer<'static> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let claims = Claims::for_key(&key.subject_public_key_info(), None).encode();
    let attester = SimAttester::launch(MEASUREMENT);
    let evidence = attester.report(&Claims::report_data(&claims), 0).unwrap();
    let mut report = evidence.report.as_bytes().to_vec();
    edit(&mut report);
    let vcek = home().sim.default_chip().vcek_der();
    cert::self_signed(
        &key,
        EvidenceKind::Simulated,
        &Evidence::encode(EvidenceKind::Simulated, &report, &claims),
        Some(&encode_endorsements(EvidenceKind::Simulated, &[vcek])),
    )
    .unwrap()
}

#[test]
fn refuses_a_tampered_report() {
    let v = sim_verifier();
    let now = OffsetDateTime::now_utc();
    assert!(v
        .verify_certificate(&certificate_with(|_| {}), &[], now)
        .is_ok());
    // The measurement (offset 0x90) is inside the signed bytes.
    let tampered = certificate_with(|r| r[0x90] ^= 1);
    let e = v.verify_certificate(&tampered, &[], now).unwrap_err();
    assert!(
        matches!(e, PeerError::Report(VerifyError::Signature(_))),
        "{e:?}"
    );
    // Zero padding of REPORT_DATA (offset 0x50 + 32) is checked too.
    let padded = certificate_with(|r| r[0x50 + 40] = 1);
    let e = v.verify_certificate(&padded, &[], now).unwrap_err();
    assert!(matches!(e, PeerError::ReportDataMismatch { .. }), "{e:?}");
}

#[test]
fn refuses_endorsements_of_another_kind() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let claims = Claims::for_key(&key.subject_public_key_info(), None).encode();
    let attester = SimAttester::launch(MEASUREMENT);
    let evidence = attester.report(&Claims::report_data(&claims), 0).unwrap();
    let vcek = home().sim.default_chip().vcek_der();
    let der = cert::self_signed(
        &key,
        EvidenceKind::Simulated,
        &Evidence::encode(EvidenceKind::Simulated, evidence.report.as_bytes(), &claims),
        Some(&encode_endorsements(EvidenceKind::Hardware, &[vcek])),
    )
    .unwrap();
    let e = sim_verifier()
        .verify_certificate(&der, &[], OffsetDateTime::now_utc())
        .unwrap_err();
    assert!(matches!(e, PeerError::KindMismatch { .. }), "{e:?}");
}
