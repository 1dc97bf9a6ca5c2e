//! Expected values read with `openssl asn1parse -inform der -in <file>` (the OCTET STRING
//! under each 1.3.6.1.4.1.3704.1.x OID).

use super::*;
use crate::certs::{CertError, ExtensionError, VekExtensions};
use crate::Product;

fn extensions(name: &str) -> VekExtensions {
    report_cert(name).vek_extensions().unwrap().clone()
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn decodes_oak_turin_vcek() {
    let ext = extensions("oak-turin-oc-vcek.der");
    assert_eq!(ext.struct_version, 1);
    assert_eq!(ext.product_name, "Turin");
    assert_eq!(ext.product, Product::Turin);
    assert_eq!(ext.fmc_spl, Some(0));
    assert_eq!(
        (ext.bl_spl, ext.tee_spl, ext.snp_spl, ext.ucode_spl),
        (1, 0, 2, 71)
    );
    assert_eq!(ext.spl_4_7, [None, Some(0), Some(0), Some(0)]);
    assert_eq!(ext.hw_id, Some(unhex("3b42092f69c656d3")));
    assert_eq!(ext.csp_id, None);
}

#[test]
fn decodes_sev_turin_vcek() {
    let ext = extensions("sev-vcek-turin.der");
    assert_eq!(ext.struct_version, 1);
    assert_eq!(ext.fmc_spl, Some(0));
    assert_eq!(
        (ext.bl_spl, ext.tee_spl, ext.snp_spl, ext.ucode_spl),
        (0, 0, 0, 9)
    );
    assert_eq!(ext.hw_id, Some(unhex("1e550a8ee5cf9f4d")));
}

#[test]
fn decodes_oak_milan_vcek() {
    let ext = extensions("oak-milan-oc-release-vcek.der");
    assert_eq!(ext.struct_version, 0);
    assert_eq!(ext.product_name, "Milan-B0");
    assert_eq!(ext.product, Product::Milan);
    assert_eq!(ext.fmc_spl, None);
    // ucodeSPL is encoded 02 02 00 db.
    assert_eq!(
        (ext.bl_spl, ext.tee_spl, ext.snp_spl, ext.ucode_spl),
        (4, 0, 24, 219)
    );
    assert_eq!(ext.spl_4_7, [Some(0); 4]);
    assert_eq!(
        ext.hw_id,
        Some(unhex(
            "a3fdc2c64dc299ab90d4238973864b586378e2e5ef9c9d4dc608f3bdaa89a969\
             a03f1b5752cad55a0c1547ade800dbd7404e9cb3f9738da3b280d1df69cf82e4"
        ))
    );
}

#[test]
fn decodes_oak_genoa_vcek() {
    let ext = extensions("oak-genoa-oc-vcek.der");
    assert_eq!(ext.product_name, "Genoa");
    assert_eq!(ext.product, Product::Genoa);
    assert_eq!(
        (ext.bl_spl, ext.tee_spl, ext.snp_spl, ext.ucode_spl),
        (10, 0, 25, 84)
    );
    assert_eq!(
        ext.hw_id,
        Some(unhex(
            "d2421d976f95ce0ba849b7cc5c789122f1e59c77a037272c137ae4d188bb102a\
             dbc7c53d0302bff82a432c94a305dec7a7a270ceb19a10f04a83316c6486968d"
        ))
    );
}

#[test]
fn decodes_trustee_vcek() {
    let ext = extensions("trustee-test-vcek.der");
    assert_eq!(
        (ext.bl_spl, ext.tee_spl, ext.snp_spl, ext.ucode_spl),
        (3, 0, 8, 115)
    );
    assert_eq!(
        ext.hw_id,
        Some(unhex(
            "c38427a30d4c7af9d96f7a15b97269825a64cb76a2352ffd5d18115d89ad473f\
             8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e"
        ))
    );
}

#[test]
fn decodes_aws_vlek_with_csp_id_and_no_hw_id() {
    let ext = extensions("trustee-test-vlek.der");
    assert_eq!(ext.product_name, "Milan");
    assert_eq!(ext.product, Product::Milan);
    assert_eq!(
        (ext.bl_spl, ext.tee_spl, ext.snp_spl, ext.ucode_spl),
        (4, 0, 24, 217)
    );
    assert_eq!(ext.hw_id, None);
    let csp = ext.csp_id.unwrap();
    assert_eq!(csp, "CN=cc-us-east-2.amazonaws.com");
    assert!(csp.contains("amazonaws.com"));
}

#[test]
fn accepts_raw_and_octet_string_wrapped_hw_id() {
    let counting: Vec<u8> = (0..64).collect();
    let legacy = extensions("trustee-test-vcek-invalid-legacy.der");
    let new = extensions("trustee-test-vcek-invalid-new.der");
    assert_eq!(legacy.hw_id.as_deref(), Some(&counting[..]));
    assert_eq!(new.hw_id.as_deref(), Some(&counting[..]));
    assert_eq!(
        (legacy.bl_spl, legacy.snp_spl, legacy.ucode_spl),
        (3, 10, 169)
    );
    assert_eq!((new.bl_spl, new.snp_spl, new.ucode_spl), (0, 0, 30));
}

#[test]
fn decodes_the_simulated_vcek() {
    // Values written by testdata/gen.sh.
    let ext = sim_cert("sim-vcek.der").vek_extensions().unwrap().clone();
    assert_eq!(
        (ext.bl_spl, ext.tee_spl, ext.snp_spl, ext.ucode_spl),
        (3, 0, 8, 217)
    );
    assert_eq!(ext.hw_id, Some(vec![0x5a; 64]));
    assert_eq!(ext.spl_4_7, [None; 4]);
}

/// Replaces the first occurrence of `from` with `to` (same length) in a fixture.
fn patched(name: &str, from: &[u8], to: &[u8]) -> Result<Certificate, CertError> {
    assert_eq!(from.len(), to.len());
    let mut bytes = fixture(&format!("reports/{name}"));
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    bytes[at..at + to.len()].copy_from_slice(to);
    Certificate::from_der(&bytes)
}

fn extension_error(result: Result<Certificate, CertError>) -> ExtensionError {
    match result {
        Err(CertError::Extension { role, source }) => {
            assert!(role.is_vek());
            source
        }
        other => panic!("expected an extension error, got {other:?}"),
    }
}

/// DER of OID 1.3.6.1.4.1.3704.1.3.8 (ucodeSPL) followed by its OCTET STRING header.
const UCODE_OID: &[u8] = &[
    0x06, 0x0A, 0x2B, 0x06, 0x01, 0x04, 0x01, 0x9C, 0x78, 0x01, 0x03, 0x08, 0x04,
];

#[test]
fn rejects_spl_out_of_range() {
    // Oak Milan ucodeSPL 02 02 00 db -> 02 02 01 db (475).
    let mut from = UCODE_OID.to_vec();
    from.extend([0x04, 0x02, 0x02, 0x00, 0xDB]);
    let mut to = UCODE_OID.to_vec();
    to.extend([0x04, 0x02, 0x02, 0x01, 0xDB]);
    let err = extension_error(patched("oak-milan-oc-release-vcek.der", &from, &to));
    assert!(
        matches!(
            err,
            ExtensionError::OutOfRange {
                name: "ucodeSPL",
                max: 255,
                ..
            }
        ),
        "{err:?}"
    );
    // Negative: 02 02 80 db.
    to[UCODE_OID.len() + 3] = 0x80;
    let err = extension_error(patched("oak-milan-oc-release-vcek.der", &from, &to));
    assert!(matches!(err, ExtensionError::OutOfRange { .. }), "{err:?}");
}

#[test]
fn rejects_spl_with_wrong_type_or_encoding() {
    let mut from = UCODE_OID.to_vec();
    from.extend([0x04, 0x02, 0x02, 0x00, 0xDB]);
    // OCTET STRING instead of INTEGER.
    let mut to = from.clone();
    to[UCODE_OID.len() + 1] = 0x04;
    let err = extension_error(patched("oak-milan-oc-release-vcek.der", &from, &to));
    assert!(
        matches!(
            err,
            ExtensionError::Malformed {
                name: "ucodeSPL",
                ..
            }
        ),
        "{err:?}"
    );
    // The Turin certificate's 02 01 47 with an integer length running past the value.
    let mut from = UCODE_OID.to_vec();
    from.extend([0x03, 0x02, 0x01, 0x47]);
    let mut to = from.clone();
    to[UCODE_OID.len() + 2] = 0x02;
    let err = extension_error(patched("oak-turin-oc-vcek.der", &from, &to));
    assert!(
        matches!(
            err,
            ExtensionError::Malformed {
                name: "ucodeSPL",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn rejects_unknown_product_name() {
    let err = extension_error(patched(
        "oak-turin-oc-vcek.der",
        b"\x16\x05Turin",
        b"\x16\x05Tulip",
    ));
    assert_eq!(
        err,
        ExtensionError::UnknownProduct {
            name: "Tulip".into()
        }
    );
}

#[test]
fn rejects_missing_fmc_spl_on_turin() {
    // fmcSPL 1.3.6.1.4.1.3704.1.3.9 -> .3.4, which the Turin VCEK does not have.
    let fmc_oid = [
        0x06, 0x0A, 0x2B, 0x06, 0x01, 0x04, 0x01, 0x9C, 0x78, 0x01, 0x03, 0x09,
    ];
    let mut to = fmc_oid;
    to[11] = 0x04;
    let err = extension_error(patched("oak-turin-oc-vcek.der", &fmc_oid, &to));
    assert_eq!(
        err,
        ExtensionError::FmcSpl {
            product: Product::Turin,
            present: false
        }
    );
}

#[test]
fn rejects_unknown_amd_extension_oid() {
    // 1.3.6.1.4.1.3704.1.3.8 -> 1.3.6.1.4.1.3704.1.3.10 (unknown).
    let mut to = UCODE_OID.to_vec();
    to[11] = 0x0A;
    let err = extension_error(patched("oak-turin-oc-vcek.der", UCODE_OID, &to));
    assert_eq!(
        err,
        ExtensionError::Unknown {
            oid: "1.3.6.1.4.1.3704.1.3.10".into()
        }
    );
}

#[test]
fn rejects_duplicate_extension() {
    // 1.3.6.1.4.1.3704.1.3.8 -> .3.7, which the Turin VCEK already has.
    let mut to = UCODE_OID.to_vec();
    to[11] = 0x07;
    let err = extension_error(patched("oak-turin-oc-vcek.der", UCODE_OID, &to));
    assert!(matches!(err, ExtensionError::Duplicate { .. }), "{err:?}");
}

#[test]
fn rejects_missing_hw_id_on_a_vcek() {
    let hwid_oid = [
        0x06, 0x09, 0x2B, 0x06, 0x01, 0x04, 0x01, 0x9C, 0x78, 0x01, 0x04,
    ];
    let mut to = hwid_oid;
    to[8] = 0x79; // 1.3.6.1.4.1.3705.1.4: outside AMD's arc, so ignored.
    let err = extension_error(patched("oak-turin-oc-vcek.der", &hwid_oid, &to));
    assert_eq!(err, ExtensionError::Missing { name: "hwID" });
}

#[test]
fn rejects_hw_id_of_the_wrong_length_for_the_product() {
    let err = extension_error(patched(
        "oak-turin-oc-vcek.der",
        b"\x16\x05Turin",
        b"\x16\x05Genoa",
    ));
    assert_eq!(
        err,
        ExtensionError::HwIdLength {
            product: Product::Genoa,
            expected: 64,
            actual: 8
        }
    );
    let err = extension_error(patched(
        "oak-milan-oc-release-vcek.der",
        b"\x16\x08Milan-B0",
        b"\x16\x08Turin-B0",
    ));
    assert_eq!(
        err,
        ExtensionError::HwIdLength {
            product: Product::Turin,
            expected: 8,
            actual: 64
        }
    );
}
