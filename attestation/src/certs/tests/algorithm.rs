//! Strictness of the RSASSA-PSS AlgorithmIdentifier check, on DER built by hand from the
//! bytes `openssl asn1parse` shows in AMD's certificates.

use x509_parser::prelude::FromDer;
use x509_parser::x509::AlgorithmIdentifier;

use crate::certs::signature::check_rsa_pss_sha384;
use crate::certs::AlgorithmError;

const PSS: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A,
];
const SHA384: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
];
const SHA256: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
];
const MGF1: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x08,
];
const NULL: &[u8] = &[0x05, 0x00];

fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let contents = parts.concat();
    let mut out = vec![tag, u8::try_from(contents.len()).unwrap()];
    out.extend(contents);
    out
}

fn hash(oid: &[u8], null: bool) -> Vec<u8> {
    tlv(0x30, &[oid, if null { NULL } else { &[] }])
}

/// AlgorithmIdentifier { rsassaPss, params } with the given parameter fields.
fn pss(fields: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &[PSS, &tlv(0x30, fields)])
}

fn amd_fields(salt: u8) -> [Vec<u8>; 3] {
    [
        tlv(0xA0, &[&hash(SHA384, true)]),
        tlv(0xA1, &[&tlv(0x30, &[MGF1, &hash(SHA384, true)])]),
        tlv(0xA2, &[&[0x02, 0x01, salt]]),
    ]
}

fn check(der: &[u8]) -> Result<(), AlgorithmError> {
    let (rest, alg) = AlgorithmIdentifier::from_der(der).unwrap();
    assert!(rest.is_empty());
    check_rsa_pss_sha384(&alg)
}

#[test]
fn accepts_amds_encodings() {
    let [h, m, s] = amd_fields(0x30);
    let vcek_style = pss(&[&h, &m, &s]);
    // Byte-identical to the VCEK's AlgorithmIdentifier (xxd of oak-turin-oc-vcek.der @16).
    assert_eq!(
        hex::encode(&vcek_style),
        "304106092a864886f70d01010a3034a00f300d0609608648016503040202\
         0500a11c301a06092a864886f70d010108300d0609608648016503040202\
         0500a203020130"
    );
    check(&vcek_style).unwrap();
    // The ARKs spell out trailerField 1.
    check(&pss(&[&h, &m, &s, &tlv(0xA3, &[&[0x02, 0x01, 0x01]])])).unwrap();
    // Absent NULL parameters in the hash identifiers are equivalent.
    let h = tlv(0xA0, &[&hash(SHA384, false)]);
    let m = tlv(0xA1, &[&tlv(0x30, &[MGF1, &hash(SHA384, false)])]);
    check(&pss(&[&h, &m, &s])).unwrap();
}

#[test]
fn rejects_other_salts_hashes_and_defaults() {
    let [h, m, s] = amd_fields(0x30);
    let [_, _, s32] = amd_fields(0x20);
    assert_eq!(
        check(&pss(&[&h, &m, &s32])),
        Err(AlgorithmError::SaltLength {
            actual: "32".into()
        })
    );
    assert!(matches!(
        check(&pss(&[&h, &m])),
        Err(AlgorithmError::SaltLength { .. })
    ));
    let h256 = tlv(0xA0, &[&hash(SHA256, true)]);
    assert!(matches!(
        check(&pss(&[&h256, &m, &s])),
        Err(AlgorithmError::Parameter { field: "hash", .. })
    ));
    let m256 = tlv(0xA1, &[&tlv(0x30, &[MGF1, &hash(SHA256, true)])]);
    assert!(matches!(
        check(&pss(&[&h, &m256, &s])),
        Err(AlgorithmError::Parameter {
            field: "mgf1 hash",
            ..
        })
    ));
    let not_mgf1 = tlv(0xA1, &[&tlv(0x30, &[SHA384, &hash(SHA384, true)])]);
    assert!(matches!(
        check(&pss(&[&h, &not_mgf1, &s])),
        Err(AlgorithmError::Parameter {
            field: "mask generation function",
            ..
        })
    ));
    // Omitted hash or MGF mean SHA-1 (RFC 4055 defaults).
    assert!(matches!(
        check(&pss(&[&m, &s])),
        Err(AlgorithmError::Parameter { field: "hash", .. })
    ));
    assert!(matches!(
        check(&pss(&[&h, &s])),
        Err(AlgorithmError::Parameter {
            field: "mask generation function",
            ..
        })
    ));
    assert!(matches!(
        check(&pss(&[])),
        Err(AlgorithmError::Parameter { .. })
    ));
    assert_eq!(
        check(&pss(&[&h, &m, &s, &tlv(0xA3, &[&[0x02, 0x01, 0x02]])])),
        Err(AlgorithmError::TrailerField { actual: "2".into() })
    );
}

#[test]
fn rejects_other_algorithms_and_malformed_parameters() {
    // sha384WithRSAEncryption.
    let pkcs1 = tlv(
        0x30,
        &[
            &[
                0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0C,
            ],
            NULL,
        ],
    );
    assert_eq!(
        check(&pkcs1),
        Err(AlgorithmError::NotRsaPss {
            oid: "1.2.840.113549.1.1.12".into()
        })
    );
    assert_eq!(
        check(&tlv(0x30, &[PSS])),
        Err(AlgorithmError::MissingParameters)
    );
    assert_eq!(
        check(&tlv(0x30, &[PSS, NULL])),
        Err(AlgorithmError::MissingParameters)
    );
    let [h, m, s] = amd_fields(0x30);
    // Unknown trailing field, wrong order, non-empty NULL.
    assert!(matches!(
        check(&pss(&[&h, &m, &s, &tlv(0xA4, &[&[0x02, 0x01, 0x01]])])),
        Err(AlgorithmError::Malformed { .. })
    ));
    assert!(matches!(
        check(&pss(&[&m, &h, &s])),
        Err(AlgorithmError::Parameter { .. } | AlgorithmError::Malformed { .. })
    ));
    let bad_null = tlv(0xA0, &[&tlv(0x30, &[SHA384, &[0x05, 0x01, 0x00]])]);
    assert!(matches!(
        check(&pss(&[&bad_null, &m, &s])),
        Err(AlgorithmError::Malformed { .. })
    ));
    // A salt written as a non-minimal integer.
    let s_long = tlv(0xA2, &[&[0x02, 0x02, 0x00, 0x30]]);
    assert!(matches!(
        check(&pss(&[&h, &m, &s_long])),
        Err(AlgorithmError::Malformed { .. })
    ));
}
