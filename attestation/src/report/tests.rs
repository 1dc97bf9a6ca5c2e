use super::*;

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../fixtures/snp/reports/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

const REPORTS: [&str; 5] = [
    "oak-milan-oc-release-report.bin",
    "oak-genoa-oc-report.bin",
    "oak-turin-oc-report.bin",
    "trustee-test-report.bin",
    "trustee-test-vlek-report.bin",
];

#[test]
fn round_trips_every_fixture() {
    for name in REPORTS {
        let raw = fixture(name);
        let report = Report::from_bytes(&raw).unwrap();
        assert_eq!(report.as_bytes().as_slice(), raw.as_slice(), "{name}");
        let rebuilt = report.fields().encode().unwrap();
        assert_eq!(rebuilt.as_bytes(), report.as_bytes(), "{name}");
    }
}

#[test]
fn reads_known_fields_of_turin_v5() {
    let r = Report::from_bytes(&fixture("oak-turin-oc-report.bin")).unwrap();
    assert_eq!(r.version(), 5);
    assert_eq!(r.cpuid(), Some((0x1A, 0x02, 0x01)));
    assert_eq!(r.generation_hint(), GenerationHint::Known(Product::Turin));
    assert_eq!(hex::encode(&r.chip_id()[..8]), "3b42092f69c656d3");
    assert!(r.chip_id()[8..].iter().all(|&b| b == 0));
    let tcb = r.reported_tcb().decode(r.tcb_layout().unwrap());
    assert_eq!(
        tcb,
        Tcb {
            fmc: Some(0),
            bootloader: 1,
            tee: 0,
            snp: 2,
            microcode: 71
        }
    );
    assert!(hex::encode(r.measurement()).starts_with("f924dd18"));
    assert_eq!(r.policy().raw(), 0x30000);
    assert_eq!(r.key_info().signing_key(), SigningKey::Vcek);
    assert!(r.launch_mit_vector().is_some());
}

#[test]
fn reads_known_fields_of_milan_v2() {
    let r = Report::from_bytes(&fixture("trustee-test-report.bin")).unwrap();
    assert_eq!(r.version(), 2);
    assert_eq!(r.cpuid(), None);
    assert_eq!(r.generation_hint(), GenerationHint::MilanOrGenoa);
    assert_eq!(r.guest_svn(), 4);
    assert_eq!(r.policy().raw(), 0x3001f);
    assert_eq!(r.family_id()[0], 1);
    assert_eq!(r.image_id()[0], 2);
    let tcb = r.reported_tcb().decode(r.tcb_layout().unwrap());
    assert_eq!(
        tcb,
        Tcb {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115
        }
    );
    assert_eq!(r.launch_mit_vector(), None);
}

#[test]
fn reads_vlek_report_with_masked_chip_id() {
    let r = Report::from_bytes(&fixture("trustee-test-vlek-report.bin")).unwrap();
    assert_eq!(r.version(), 3);
    assert_eq!(r.vmpl(), 1);
    assert_eq!(r.key_info().signing_key(), SigningKey::Vlek);
    assert_eq!(r.chip_id(), [0u8; 64]);
    assert_eq!(r.platform_info().0, 0x27);
    assert_eq!(r.generation_hint(), GenerationHint::Known(Product::Milan));
}

#[test]
fn detects_genoa_from_cpuid() {
    let r = Report::from_bytes(&fixture("oak-genoa-oc-report.bin")).unwrap();
    assert_eq!(r.generation_hint(), GenerationHint::Known(Product::Genoa));
    assert_eq!(r.launch_mit_vector(), Some(1));
}

#[test]
fn rejects_wrong_length() {
    let raw = fixture("oak-milan-oc-release-report.bin");
    assert_eq!(
        Report::from_bytes(&raw[..1183]),
        Err(ReportError::Length { actual: 1183 })
    );
}

#[test]
fn rejects_unknown_versions() {
    let mut raw = fixture("oak-milan-oc-release-report.bin");
    for v in [0u32, 1, 6, 0xFFFF_FFFF] {
        raw[0..4].copy_from_slice(&v.to_le_bytes());
        assert_eq!(
            Report::from_bytes(&raw),
            Err(ReportError::UnsupportedVersion(v))
        );
    }
}

#[test]
fn rejects_nonzero_reserved_bytes() {
    let raw = fixture("oak-milan-oc-release-report.bin");
    for offset in [
        0x04C, 0x18B, 0x19F, 0x1EB, 0x1EF, 0x1F8, 0x29F, 0x330, 0x49F,
    ] {
        let mut bad = raw.clone();
        bad[offset] = 1;
        assert_eq!(
            Report::from_bytes(&bad),
            Err(ReportError::ReservedNonZero { offset }),
            "offset {offset:#x}"
        );
    }
}

#[test]
fn rejects_unknown_signature_algorithm_and_bad_policy() {
    let raw = fixture("oak-milan-oc-release-report.bin");
    let mut bad = raw.clone();
    bad[0x34] = 2;
    assert_eq!(
        Report::from_bytes(&bad),
        Err(ReportError::UnsupportedSignatureAlgorithm(2))
    );
    let mut bad = raw.clone();
    bad[0x0A] = 0; // clears reserved-one bit 17
    assert!(matches!(
        Report::from_bytes(&bad),
        Err(ReportError::Policy(_))
    ));
    let mut bad = raw;
    bad[0x48] = 0x08; // signing key 2 is reserved
    assert!(matches!(
        Report::from_bytes(&bad),
        Err(ReportError::KeyInfo(_))
    ));
}

#[test]
fn accepts_hex_text() {
    let raw = fixture("oak-turin-oc-report.bin");
    let mut text = hex::encode(&raw);
    text.insert(100, '\n');
    text.push('\n');
    let r = Report::from_bytes_or_hex(text.as_bytes()).unwrap();
    assert_eq!(r.as_bytes().as_slice(), raw.as_slice());
    assert!(Report::from_bytes_or_hex(b"zz").is_err());
}

#[test]
fn reads_trustee_evidence_json() {
    let json = fixture("trustee-genoa-v3-evidence.json");
    let e = trustee::Evidence::from_trustee_json(&json).unwrap();
    assert_eq!(e.report.version(), 3);
    assert_eq!(
        e.report.generation_hint(),
        GenerationHint::Known(Product::Genoa)
    );
    let tcb = e.report.current_tcb().decode(TcbLayout::Legacy);
    assert_eq!(
        tcb,
        Tcb {
            fmc: None,
            bootloader: 10,
            tee: 0,
            snp: 23,
            microcode: 25
        }
    );
    assert_eq!(e.cert_chain.len(), 1);
    assert_eq!(e.cert_chain[0].0, trustee::CertType::Vcek);
    // Our JSON form reads back to the same bytes.
    let again = serde_json::to_vec(&e.to_trustee_json().unwrap()).unwrap();
    let e2 = trustee::Evidence::from_trustee_json(&again).unwrap();
    assert_eq!(e2.report.as_bytes(), e.report.as_bytes());
    assert_eq!(e2.cert_chain, e.cert_chain);
}

#[test]
fn rejects_trustee_evidence_with_short_fields() {
    let json = fixture("trustee-genoa-v3-evidence.json");
    let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    v["attestation_report"]["measurement"] = serde_json::json!([1, 2, 3]);
    let err = trustee::Evidence::from_trustee_json(v.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("measurement"), "{err}");
}

/// Found by the fuzz tests: an `fmc` value on a Genoa report made the decoder pick the Turin
/// layout and shuffle the TCB. The CPUID decides the layout; `fmc` on a non-Turin report is refused.
#[test]
fn trustee_json_layout_follows_cpuid_not_fmc() {
    let json = fixture("trustee-genoa-v3-evidence.json");
    let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    v["attestation_report"]["reported_tcb"]["fmc"] = serde_json::json!(0);
    let err = trustee::Evidence::from_trustee_json(v.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("fmc"), "{err}");
}

#[test]
fn names_the_encoding_problem_of_text_that_is_not_hex() {
    let err = Report::from_bytes_or_hex(b"this is not a report").unwrap_err();
    assert_eq!(err, ReportError::Encoding { actual: 20 });
    assert!(err.to_string().contains("hex"), "{err}");
}
