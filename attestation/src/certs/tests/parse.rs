use super::*;
use crate::certs::{CertError, Role, Roots};
use crate::Product;

#[test]
fn parses_every_real_vek_with_its_role() {
    for (name, role, product) in [
        ("oak-milan-oc-release-vcek.der", Role::Vcek, Product::Milan),
        ("oak-genoa-oc-vcek.der", Role::Vcek, Product::Genoa),
        ("oak-turin-oc-vcek.der", Role::Vcek, Product::Turin),
        ("sev-vcek-turin.der", Role::Vcek, Product::Turin),
        ("trustee-test-vcek.der", Role::Vcek, Product::Milan),
        ("trustee-test-vlek.der", Role::Vlek, Product::Milan),
        (
            "trustee-test-vcek-invalid-legacy.der",
            Role::Vcek,
            Product::Milan,
        ),
        (
            "trustee-test-vcek-invalid-new.der",
            Role::Vcek,
            Product::Milan,
        ),
    ] {
        let bytes = fixture(&format!("reports/{name}"));
        let cert = Certificate::from_der(&bytes).unwrap();
        assert_eq!(cert.role(), role, "{name}");
        assert_eq!(cert.product(), Some(product), "{name}");
        assert_eq!(cert.der(), &bytes[..], "{name} keeps its der");
        // Serial 0, as openssl shows for every VCEK/VLEK.
        assert_eq!(cert.serial(), &[0], "{name}");
        assert!(cert.vek_extensions().is_some(), "{name}");
    }
}

#[test]
fn keeps_validity_dates_as_openssl_shows_them() {
    let vlek = report_cert("trustee-test-vlek.der");
    assert_eq!(vlek.not_before(), datetime!(2024-12-10 22:14:21 UTC));
    assert_eq!(vlek.not_after(), datetime!(2025-12-10 22:14:21 UTC));
    let ark = root_cert("milan_ark.pem");
    assert_eq!(ark.not_before(), datetime!(2020-10-22 17:23:05 UTC));
    assert_eq!(ark.not_after(), datetime!(2045-10-22 17:23:05 UTC));
    assert_eq!(ark.serial(), &[0x01, 0x00, 0x00]);
}

#[test]
fn parses_amd_pem_chains_with_lf_and_crlf() {
    let milan = fixture("reports/sev-cert-chain-milan.pem");
    let turin = fixture("reports/sev-cert-chain-turin.pem");
    assert!(
        turin.windows(2).any(|w| w == b"\r\n"),
        "turin fixture has crlf"
    );
    for (bytes, product) in [(milan, Product::Milan), (turin, Product::Turin)] {
        let certs = Certificate::parse_all(&bytes).unwrap();
        let roles: Vec<_> = certs.iter().map(Certificate::role).collect();
        assert_eq!(roles, [Role::Ask, Role::Ark]);
        let anchors = Roots::amd().get(product).unwrap();
        assert_eq!(Some(&certs[0]), anchors.ask());
        assert_eq!(&certs[1], anchors.ark());
        certs[1].verify_issued(&certs[1], AT).unwrap();
        certs[1].verify_issued(&certs[0], AT).unwrap();
    }
}

#[test]
fn parses_trustee_bundles_in_ask_ark_asvk_order() {
    for gen in ["milan", "genoa", "turin"] {
        let certs =
            Certificate::parse_all(&fixture(&format!("amd-roots/{gen}_ask_ark_asvk.pem"))).unwrap();
        let roles: Vec<_> = certs.iter().map(Certificate::role).collect();
        assert_eq!(roles, [Role::Ask, Role::Ark, Role::Asvk], "{gen}");
    }
}

#[test]
fn parses_concatenated_der() {
    let mut bytes = fixture("reports/trustee-test-vcek.der");
    let ask = root_cert("milan_ask.pem");
    bytes.extend_from_slice(ask.der());
    let certs = Certificate::parse_all(&bytes).unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[1], ask);
}

#[test]
fn rejects_trailing_bytes_after_a_single_der_certificate() {
    let mut bytes = fixture("reports/trustee-test-vcek.der");
    bytes.push(0);
    assert!(matches!(
        Certificate::from_der(&bytes),
        Err(CertError::TrailingData { index: 0, len: 1 })
    ));
}

#[test]
fn rejects_empty_and_non_certificate_input() {
    assert!(matches!(Certificate::parse_all(b""), Err(CertError::Empty)));
    assert!(matches!(
        Certificate::parse_all(b"hello, no pem here\n"),
        Err(CertError::Empty)
    ));
    assert!(matches!(
        Certificate::parse_all(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        Err(CertError::PemLabel { index: 0, .. })
    ));
    assert!(matches!(
        Certificate::parse_all(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
        Err(CertError::Pem { index: 0, .. })
    ));
    assert!(matches!(
        Certificate::parse_all(b"-----BEGIN CERTIFICATE-----\nAAAA\n"),
        Err(CertError::Pem { index: 0, .. })
    ));
    assert!(matches!(
        Certificate::from_der(&[0x30, 0x03, 0x02, 0x01, 0x00]),
        Err(CertError::Der { index: 0, .. })
    ));
}

#[test]
fn rejects_unknown_roles() {
    // Same length, so the DER stays well-formed: only the subject common name changes.
    let mut bytes = fixture("reports/trustee-test-vcek.der");
    let at = rfind(&bytes, b"SEV-VCEK");
    bytes[at + 4] = b'X';
    match Certificate::from_der(&bytes) {
        Err(CertError::UnknownRole { common_name }) => assert_eq!(common_name, "SEV-XCEK"),
        other => panic!("expected unknown role, got {other:?}"),
    }
}

#[test]
fn rejects_a_vek_without_a_p384_key() {
    for name in ["sim-vcek-rsa.der", "sim-vcek-p256.der"] {
        match Certificate::from_der(&testdata(name)) {
            Err(CertError::PublicKey {
                role: Role::Vcek, ..
            }) => {}
            other => panic!("{name}: expected a public key error, got {other:?}"),
        }
    }
}

#[test]
fn debug_output_names_the_certificate() {
    let debug = format!("{:?}", report_cert("oak-turin-oc-vcek.der"));
    assert!(
        debug.contains("Vcek") && debug.contains("SEV-VCEK"),
        "{debug}"
    );
}
