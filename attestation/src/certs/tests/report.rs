//! Report signatures over the raw 1184-byte fixture reports: signed bytes 0x000..0x2A0, R at
//! 0x2A0..0x2E8 and S at 0x2E8..0x330, little-endian.

use super::*;
use crate::certs::{danger, verify_chain, ReportSignatureError, Role, Roots, VerifiedVek};
use crate::Product;

const SIGNED_END: usize = 0x2A0;
const R: std::ops::Range<usize> = 0x2A0..0x2E8;
const S: std::ops::Range<usize> = 0x2E8..0x330;

const REPORTS: [(&str, &str, Product); 5] = [
    (
        "oak-milan-oc-release-report.bin",
        "oak-milan-oc-release-vcek.der",
        Product::Milan,
    ),
    (
        "oak-genoa-oc-report.bin",
        "oak-genoa-oc-vcek.der",
        Product::Genoa,
    ),
    (
        "oak-turin-oc-report.bin",
        "oak-turin-oc-vcek.der",
        Product::Turin,
    ),
    (
        "trustee-test-report.bin",
        "trustee-test-vcek.der",
        Product::Milan,
    ),
    (
        "trustee-test-vlek-report.bin",
        "trustee-test-vlek.der",
        Product::Milan,
    ),
];

fn report(name: &str) -> Vec<u8> {
    let bytes = fixture(&format!("reports/{name}"));
    assert_eq!(bytes.len(), 0x4A0, "{name}");
    bytes
}

fn components(report: &[u8]) -> ([u8; 72], [u8; 72]) {
    (report[R].try_into().unwrap(), report[S].try_into().unwrap())
}

fn verified(vek: &str, product: Product) -> VerifiedVek {
    verify_chain(Roots::amd(), product, &vek_chain(vek), AT).unwrap()
}

fn check(vek: &VerifiedVek, report: &[u8]) -> Result<(), ReportSignatureError> {
    let (r, s) = components(report);
    vek.verify_report_signature(&report[..SIGNED_END], &r, &s)
}

#[test]
fn every_real_report_verifies_with_its_vek() {
    for (report_name, vek_name, product) in REPORTS {
        let bytes = report(report_name);
        let vek = verified(vek_name, product);
        check(&vek, &bytes).unwrap_or_else(|err| panic!("{report_name}: {err}"));
        let (r, s) = components(&bytes);
        danger::verify_report_signature(&report_cert(vek_name), &bytes[..SIGNED_END], &r, &s)
            .unwrap_or_else(|err| panic!("{report_name} (danger): {err}"));
    }
}

#[test]
fn flipping_a_signed_bit_fails() {
    // One bit in every byte of the signed region (bit position rotating) for the Turin
    // report, every 16th byte for the others. ECDSA is slow in debug builds; the report
    // module's tests flip every bit of every report.
    for (report_name, vek_name, product) in REPORTS {
        let bytes = report(report_name);
        let vek = verified(vek_name, product);
        let step = if product == Product::Turin { 1 } else { 16 };
        for offset in (0..SIGNED_END).step_by(step) {
            let mut flipped = bytes.clone();
            flipped[offset] ^= 1 << (offset % 8);
            assert_eq!(
                check(&vek, &flipped),
                Err(ReportSignatureError::Invalid {
                    role: vek.kind().role()
                }),
                "{report_name} byte {offset:#x}"
            );
        }
    }
}

#[test]
fn flipping_a_significant_signature_bit_fails() {
    let bytes = report("trustee-test-report.bin");
    let vek = verified("trustee-test-vcek.der", Product::Milan);
    for offset in [R.start, R.start + 47, S.start, S.start + 20, S.start + 47] {
        let mut flipped = bytes.clone();
        flipped[offset] ^= 0x01;
        assert_eq!(
            check(&vek, &flipped),
            Err(ReportSignatureError::Invalid { role: Role::Vcek }),
            "{offset:#x}"
        );
    }
}

#[test]
fn non_zero_high_bytes_of_r_or_s_are_rejected() {
    let bytes = report("trustee-test-report.bin");
    let vek = verified("trustee-test-vcek.der", Product::Milan);
    for (offset, component) in [
        (R.start + 48, "r"),
        (R.end - 1, "r"),
        (S.start + 48, "s"),
        (S.end - 1, "s"),
    ] {
        let mut flipped = bytes.clone();
        flipped[offset] = 0x01;
        assert_eq!(
            check(&vek, &flipped),
            Err(ReportSignatureError::HighBytes { component }),
            "{offset:#x}"
        );
    }
}

#[test]
fn big_endian_or_swapped_components_fail() {
    let bytes = report("oak-genoa-oc-report.bin");
    let vek = verified("oak-genoa-oc-vcek.der", Product::Genoa);
    let (r, s) = components(&bytes);
    assert!(vek
        .verify_report_signature(&bytes[..SIGNED_END], &s, &r)
        .is_err());
    let mut r_be = [0_u8; 72];
    r_be[..48].copy_from_slice(&r[..48]);
    r_be[..48].reverse();
    assert!(vek
        .verify_report_signature(&bytes[..SIGNED_END], &r_be, &s)
        .is_err());
    // The signature covers exactly 0x000..0x2A0.
    assert!(vek
        .verify_report_signature(&bytes[..SIGNED_END - 1], &r, &s)
        .is_err());
    assert!(vek
        .verify_report_signature(&bytes[..SIGNED_END + 1], &r, &s)
        .is_err());
}

#[test]
fn a_report_fails_with_another_vek() {
    let bytes = report("trustee-test-vlek-report.bin");
    let vcek = verified("trustee-test-vcek.der", Product::Milan);
    assert_eq!(
        check(&vcek, &bytes),
        Err(ReportSignatureError::Invalid { role: Role::Vcek })
    );
    let vlek = verified("trustee-test-vlek.der", Product::Milan);
    assert_eq!(
        check(&vlek, &report("trustee-test-report.bin")),
        Err(ReportSignatureError::Invalid { role: Role::Vlek })
    );
}

#[test]
fn a_ca_certificate_cannot_verify_reports() {
    let bytes = report("trustee-test-report.bin");
    let (r, s) = components(&bytes);
    assert_eq!(
        danger::verify_report_signature(&root_cert("milan_ask.pem"), &bytes[..SIGNED_END], &r, &s),
        Err(ReportSignatureError::NotVek { role: Role::Ask })
    );
}
