use time::macros::datetime;

use super::*;
use crate::certs::Certificate;
use crate::report::tests::fixture;
use crate::report::trustee::{CertType, Evidence};

const AT: OffsetDateTime = datetime!(2025-09-01 00:00:00 UTC);

fn chain_of(der_name: &str) -> CertChain {
    let certs = Certificate::parse_all(&fixture(der_name)).unwrap();
    CertChain::from_certificates(certs).unwrap()
}

const PAIRS: [(&str, &str); 5] = [
    (
        "oak-milan-oc-release-report.bin",
        "oak-milan-oc-release-vcek.der",
    ),
    ("oak-genoa-oc-report.bin", "oak-genoa-oc-vcek.der"),
    ("oak-turin-oc-report.bin", "oak-turin-oc-vcek.der"),
    ("trustee-test-report.bin", "trustee-test-vcek.der"),
    ("trustee-test-vlek-report.bin", "trustee-test-vlek.der"),
];

#[test]
fn accepts_every_real_report() {
    for (report, vek) in PAIRS {
        let r = Report::from_bytes(&fixture(report)).unwrap();
        let v = verify(&r, &chain_of(vek), Roots::amd(), AT, None)
            .unwrap_or_else(|e| panic!("{report}: {e:?}"));
        assert!(!v.simulated(), "{report}");
    }
}

#[test]
fn accepts_trustee_evidence_json() {
    let e = Evidence::from_trustee_json(&fixture("trustee-genoa-v3-evidence.json")).unwrap();
    let (_, der) = e
        .cert_chain
        .iter()
        .find(|(t, _)| *t == CertType::Vcek)
        .unwrap();
    let chain = CertChain::from_vek(Certificate::from_der(der).unwrap()).unwrap();
    let v = verify(&e.report, &chain, Roots::amd(), AT, None).unwrap();
    assert_eq!(v.product(), Product::Genoa);
}

/// Every single-bit change of the signed bytes or the signature must fail. One report gets
/// every bit (the loop is the point of the test); the others every bit of every 7th byte to
/// keep debug-build time reasonable.
#[test]
fn rejects_every_flipped_bit() {
    for (i, (report, vek)) in PAIRS.iter().enumerate() {
        let raw = fixture(report);
        let chain = chain_of(vek);
        let vek = verify_chain(Roots::amd(), chain.vek().product().unwrap(), &chain, AT).unwrap();
        let step = if i == 2 { 1 } else { 7 };
        for byte in (0..0x330).step_by(step) {
            for bit in 0..8 {
                let mut bad = raw.clone();
                bad[byte] ^= 1 << bit;
                // Flips that break a parse rule are rejected even earlier.
                if let Ok(r) = Report::from_bytes(&bad) {
                    assert!(
                        verify_with_vek(&r, &vek).is_err(),
                        "{report}: byte {byte:#x} bit {bit}"
                    );
                }
            }
        }
    }
}

#[test]
fn rejects_another_chips_vcek() {
    let r = Report::from_bytes(&fixture("oak-milan-oc-release-report.bin")).unwrap();
    let err = verify(
        &r,
        &chain_of("trustee-test-vcek.der"),
        Roots::amd(),
        AT,
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::ChipId { .. } | VerifyError::Tcb { .. }),
        "{err:?}"
    );
    let r = Report::from_bytes(&fixture("oak-turin-oc-report.bin")).unwrap();
    let err = verify(&r, &chain_of("sev-vcek-turin.der"), Roots::amd(), AT, None).unwrap_err();
    assert!(
        matches!(err, VerifyError::ChipId { .. } | VerifyError::Tcb { .. }),
        "{err:?}"
    );
}

#[test]
fn rejects_wrong_generation_and_key_kind() {
    let r = Report::from_bytes(&fixture("oak-genoa-oc-report.bin")).unwrap();
    let err = verify(
        &r,
        &chain_of("oak-turin-oc-vcek.der"),
        Roots::amd(),
        AT,
        None,
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::Generation { .. }), "{err:?}");
    let r = Report::from_bytes(&fixture("trustee-test-report.bin")).unwrap();
    let err = verify(
        &r,
        &chain_of("trustee-test-vlek.der"),
        Roots::amd(),
        AT,
        None,
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::KeyKind { .. }), "{err:?}");
}

#[test]
fn rejects_expired_certificates() {
    let r = Report::from_bytes(&fixture("trustee-test-vlek-report.bin")).unwrap();
    let late = datetime!(2026-01-01 00:00:00 UTC);
    let err = verify(
        &r,
        &chain_of("trustee-test-vlek.der"),
        Roots::amd(),
        late,
        None,
    )
    .unwrap_err();
    assert_eq!(err.check_name(), "certificate_chain");
}

#[test]
fn rejects_reported_tcb_below_the_vcek_spls() {
    // A report whose REPORTED_TCB is lower than the VCEK's SPLs (a VCEK for a newer TCB).
    let mut raw = fixture("trustee-test-report.bin");
    raw[0x186] -= 1; // SNP SPL in the legacy layout
    let r = Report::from_bytes(&raw).unwrap();
    let err = verify(
        &r,
        &chain_of("trustee-test-vcek.der"),
        Roots::amd(),
        AT,
        None,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Tcb {
                component: "snp",
                cert: 8,
                report: 7
            }
        ),
        "{err:?}"
    );
}
