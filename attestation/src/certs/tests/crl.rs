//! CRLs signed by the simulated ARK (testdata/gen.sh; thisUpdate 2026-11-23, nextUpdate ten
//! years later). AMD's own CRL cannot be fetched here.

use super::*;
use crate::certs::{
    verify_chain_with_crl, AlgorithmError, ChainError, Crl, CrlError, ProductRoots, Role, Roots,
};
use crate::Product;

/// A time inside the simulated CRLs' and certificates' validity.
const CRL_AT: OffsetDateTime = datetime!(2027-01-01 0:00 UTC);

fn crl(name: &str) -> Crl {
    Crl::from_der(&testdata(name)).unwrap()
}

fn sim_roots() -> Roots {
    Roots::custom([ProductRoots::new(
        Product::Milan,
        sim_cert("sim-ark.der"),
        Some(sim_cert("sim-ask.der")),
        None,
    )
    .unwrap()])
    .unwrap()
}

fn sim_chain() -> CertChain {
    CertChain::from_vek(sim_cert("sim-vcek.der")).unwrap()
}

#[test]
fn parses_and_verifies_an_empty_crl() {
    let parsed = crl("sim-crl-empty.der");
    assert_eq!(parsed.der(), &testdata("sim-crl-empty.der")[..]);
    assert_eq!(parsed.revoked_serials().count(), 0);
    assert!(parsed.next_update().is_some());
    let verified = parsed.verify(&sim_cert("sim-ark.der"), CRL_AT).unwrap();
    assert!(!verified.is_revoked(&[0x10, 0x01]));
    let vek = verify_chain_with_crl(
        &sim_roots(),
        Product::Milan,
        &sim_chain(),
        CRL_AT,
        &verified,
    )
    .unwrap();
    assert!(vek.is_simulated());
}

#[test]
fn a_revoked_ask_fails_the_chain() {
    // `openssl crl -text` lists serial 1001, the simulated ASK.
    let verified = crl("sim-crl-ask-revoked.der")
        .verify(&sim_cert("sim-ark.der"), CRL_AT)
        .unwrap();
    assert_eq!(
        verified.crl().revoked_serials().collect::<Vec<_>>(),
        [&[0x10, 0x01][..]]
    );
    assert!(verified.is_revoked(&[0x10, 0x01]));
    assert!(verified.is_revoked(&[0x00, 0x10, 0x01]));
    assert!(!verified.is_revoked(&[0x10, 0x02]));
    assert_eq!(sim_cert("sim-ask.der").serial(), &[0x10, 0x01]);
    let err = verify_chain_with_crl(
        &sim_roots(),
        Product::Milan,
        &sim_chain(),
        CRL_AT,
        &verified,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ChainError::Revoked {
            role: Role::Ask,
            serial: "1001".into()
        }
    );
}

#[test]
fn a_crl_from_another_ark_is_refused_by_the_chain() {
    let verified = crl("sim-crl-empty.der")
        .verify(&sim_cert("sim-ark.der"), CRL_AT)
        .unwrap();
    let err = verify_chain_with_crl(
        Roots::amd(),
        Product::Milan,
        &vek_chain("trustee-test-vcek.der"),
        AT,
        &verified,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ChainError::CrlIssuer {
            product: Product::Milan
        }
    );
}

#[test]
fn rejects_a_crl_signed_with_pkcs1() {
    match Crl::from_der(&testdata("sim-crl-pkcs1.der")) {
        Err(CrlError::SignatureAlgorithm {
            source: AlgorithmError::NotRsaPss { oid },
        }) => assert_eq!(oid, "1.2.840.113549.1.1.12"),
        other => panic!("expected a rejected algorithm, got {other:?}"),
    }
}

#[test]
fn rejects_a_bad_signature() {
    let mut bytes = testdata("sim-crl-ask-revoked.der");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let err = Crl::from_der(&bytes)
        .unwrap()
        .verify(&sim_cert("sim-ark.der"), CRL_AT)
        .unwrap_err();
    assert!(
        matches!(err, CrlError::Signature { issuer: Role::Ark }),
        "{err:?}"
    );
}

#[test]
fn rejects_a_tampered_revocation_list() {
    // Un-revoke the ASK by changing its listed serial 0x1001 -> 0x1011.
    let mut bytes = testdata("sim-crl-ask-revoked.der");
    let at = bytes
        .windows(4)
        .position(|w| w == [0x02, 0x02, 0x10, 0x01])
        .unwrap();
    bytes[at + 3] = 0x11;
    let err = Crl::from_der(&bytes)
        .unwrap()
        .verify(&sim_cert("sim-ark.der"), CRL_AT)
        .unwrap_err();
    assert!(matches!(err, CrlError::Signature { .. }), "{err:?}");
}

#[test]
fn rejects_the_wrong_issuer() {
    // The ASK may not sign CRLs (key usage keyCertSign only).
    let err = crl("sim-crl-empty.der")
        .verify(&sim_cert("sim-ask.der"), CRL_AT)
        .unwrap_err();
    assert!(
        matches!(err, CrlError::IssuerNotCrlSigner { issuer: Role::Ask }),
        "{err:?}"
    );
    // AMD's Milan ARK has a different name (and key).
    let err = crl("sim-crl-empty.der")
        .verify(&root_cert("milan_ark.pem"), CRL_AT)
        .unwrap_err();
    assert!(
        matches!(err, CrlError::IssuerName { issuer: Role::Ark }),
        "{err:?}"
    );
    // A VEK is no CA.
    let err = crl("sim-crl-empty.der")
        .verify(&sim_cert("sim-vcek.der"), CRL_AT)
        .unwrap_err();
    assert!(
        matches!(err, CrlError::IssuerNotCrlSigner { issuer: Role::Vcek }),
        "{err:?}"
    );
}

#[test]
fn rejects_a_crl_outside_its_update_window() {
    let err = crl("sim-crl-empty.der")
        .verify(&sim_cert("sim-ark.der"), datetime!(2026-01-01 0:00 UTC))
        .unwrap_err();
    assert!(matches!(err, CrlError::NotYetValid { .. }), "{err:?}");
    let err = crl("sim-crl-empty.der")
        .verify(&sim_cert("sim-ark.der"), datetime!(2040-01-01 0:00 UTC))
        .unwrap_err();
    assert!(matches!(err, CrlError::Stale { .. }), "{err:?}");
}

#[test]
fn rejects_garbage_truncation_and_trailing_bytes() {
    for garbage in [&b""[..], b"not a crl", &[0x30, 0x00], &[0xFF; 64]] {
        assert!(
            matches!(Crl::from_der(garbage), Err(CrlError::Der { .. })),
            "{garbage:?}"
        );
    }
    let bytes = testdata("sim-crl-empty.der");
    for len in [1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(Crl::from_der(&bytes[..len]).is_err(), "truncated to {len}");
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        Crl::from_der(&trailing),
        Err(CrlError::TrailingData { len: 1 })
    ));
    // A certificate is not a CRL.
    assert!(Crl::from_der(&testdata("sim-ark.der")).is_err());
}
