//! Parsing arbitrary or mutated reports and trustee evidence never panics, and whatever parses
//! round-trips: `as_bytes()` is the input and `fields().encode()` rebuilds the same bytes.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

use super::tests::fixture;
use super::trustee::Evidence;
use super::*;

const SEEDS: [&str; 5] = [
    "oak-milan-oc-release-report.bin",
    "oak-genoa-oc-report.bin",
    "oak-turin-oc-report.bin",
    "trustee-test-report.bin",
    "trustee-test-vlek-report.bin",
];

/// Every property of a parsed report holds and every accessor runs.
fn check_parsed(input: &[u8], r: &Report) {
    assert_eq!(r.as_bytes().as_slice(), input);
    assert_eq!(r.signed_bytes(), &input[..SIGNED_LEN]);
    let rebuilt = r
        .fields()
        .encode()
        .expect("the fields of a parsed report encode");
    assert_eq!(rebuilt.as_bytes(), r.as_bytes());

    let _ = format!("{r:?}");
    assert!(matches!(r.version(), 2..=5));
    assert_eq!(r.signature_algo(), SIG_ALGO_ECDSA_P384_SHA384);
    let _ = (r.guest_svn(), r.family_id(), r.image_id(), r.vmpl());
    let _ = r.policy().decoded();
    let _ = r.platform_info().decoded();
    let key = r.key_info();
    let _ = (key.author_key_en(), key.mask_chip_key(), key.signing_key());
    let _ = (r.report_data(), r.measurement(), r.host_data());
    let _ = (r.id_key_digest(), r.author_key_digest());
    let _ = (r.report_id(), r.report_id_ma(), r.chip_id());
    let _ = (r.current_version(), r.committed_version());
    let _ = (r.signature_r(), r.signature_s());
    assert_eq!(r.cpuid().is_some(), r.version() >= 3);
    assert_eq!(r.launch_mit_vector().is_some(), r.version() >= 5);
    assert_eq!(r.current_mit_vector().is_some(), r.version() >= 5);
    for tcb in [
        r.current_tcb(),
        r.reported_tcb(),
        r.committed_tcb(),
        r.launch_tcb(),
    ] {
        for layout in [TcbLayout::Legacy, TcbLayout::Turin] {
            let _ = tcb.decode(layout);
        }
    }
    let hint = r.generation_hint();
    match r.tcb_layout() {
        Ok(layout) => {
            assert_ne!(hint, GenerationHint::Unknown);
            let _ = r.reported_tcb().decode(layout);
        }
        Err(e) => {
            assert_eq!(hint, GenerationHint::Unknown);
            let _ = e.to_string();
        }
    }
    for product in Product::ALL {
        let _ = r.tcb_layout_for(product);
    }
}

/// Parses `input` both ways; on success, checks [`check_parsed`].
fn parse_and_check(input: &[u8]) {
    let parsed = Report::from_bytes(input);
    match &parsed {
        Ok(r) => check_parsed(input, r),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // Raw input of the right length goes straight to `from_bytes`.
    if input.len() == REPORT_SIZE {
        assert_eq!(Report::from_bytes_or_hex(input), parsed);
    } else {
        let _ = Report::from_bytes_or_hex(input);
    }
}

/// 1184 random bytes, optionally made to pass each parse rule in turn, so that every rule
/// (and the success path) is reached, not only the length check.
fn report_shaped() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(any::<u8>(), REPORT_SIZE),
        (any::<bool>(), 2_u32..=5),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mut b, (fix_version, version), algo, policy, key, zero)| {
            if fix_version {
                b[offset::VERSION..offset::VERSION + 4].copy_from_slice(&version.to_le_bytes());
            }
            if algo {
                b[offset::SIG_ALGO..offset::SIG_ALGO + 4]
                    .copy_from_slice(&SIG_ALGO_ECDSA_P384_SHA384.to_le_bytes());
            }
            if policy {
                // Bit 17 set, bits 63:26 clear.
                b[offset::POLICY + 2] |= 0x02;
                b[offset::POLICY + 3] &= 0x03;
                b[offset::POLICY + 4..offset::POLICY + 8].fill(0);
            }
            if key {
                // Bits 31:5 clear; SIGNING_KEY (bits 4:2) 0, 1 or 7.
                let low = b[offset::KEY_INFO] & 0x03;
                let signing = [0_u8, 1, 7][usize::from(b[offset::KEY_INFO + 1] % 3)];
                b[offset::KEY_INFO] = low | (signing << 2);
                b[offset::KEY_INFO + 1..offset::KEY_INFO + 4].fill(0);
            }
            if zero {
                let version = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                for &(start, end) in reserved_ranges(version) {
                    b[start..end].fill(0);
                }
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..3000),
            proptest::collection::vec(any::<u8>(), REPORT_SIZE),
            report_shaped(),
        ],
    ) {
        parse_and_check(&bytes);
    }

    #[test]
    fn arbitrary_hex_text_never_panics(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..1300),
            report_shaped(),
        ],
        breaks in proptest::collection::vec((any::<Index>(), prop::sample::select(vec![" ", "\n", "\t", "\r\n", "g", "0"])), 0..4),
        upper in any::<bool>(),
    ) {
        let mut text = if upper { hex::encode_upper(&bytes) } else { hex::encode(&bytes) };
        for (at, s) in breaks {
            let at = at.index(text.len() + 1);
            text.insert_str(at, s);
        }
        if let Ok(r) = Report::from_bytes_or_hex(text.as_bytes()) {
            // Text exactly 1184 bytes long is taken as a raw report; other text is hex with
            // whitespace ignored (inserted digits may still leave valid hex).
            let expected = if text.len() == REPORT_SIZE {
                text.clone().into_bytes()
            } else {
                let digits: String = text.split_ascii_whitespace().collect();
                hex::decode(digits).expect("parsed, so the text was hex")
            };
            check_parsed(&expected, &r);
        }
    }

    #[test]
    fn mutated_fixtures_never_panic(
        seed in 0_usize..SEEDS.len(),
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..8),
        flips in proptest::collection::vec((any::<Index>(), 0_u8..8), 0..4),
        cut in prop_oneof![
            4 => Just(None),
            1 => any::<Index>().prop_map(Some),
        ],
        extra in proptest::collection::vec(any::<u8>(), 0..3),
    ) {
        let mut bytes = fixture(SEEDS[seed]);
        for (at, value) in edits {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        for (at, bit) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        match cut {
            Some(cut) => bytes.truncate(cut.index(bytes.len())),
            None => bytes.extend_from_slice(&extra),
        }
        parse_and_check(&bytes);
    }

    #[test]
    fn mutated_fields_of_fixtures_still_round_trip(
        seed in 0_usize..SEEDS.len(),
        field in 0_usize..FIELD_OFFSETS.len(),
        value in any::<u64>(),
    ) {
        // Whole little-endian words at field offsets: the likeliest way to build a report that
        // parses yet differs from the fixture in meaning (version, cpuid, tcb, key info).
        let mut bytes = fixture(SEEDS[seed]);
        let at = FIELD_OFFSETS[field];
        let width = if at == offset::VERSION || at == offset::KEY_INFO || at == offset::CPUID_FAM_ID { 4 } else { 8 };
        bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
        parse_and_check(&bytes);
    }

    #[test]
    fn mutated_trustee_json_never_panics(
        edits in proptest::collection::vec(json_edit(), 1..4),
    ) {
        let mut v = evidence_json();
        for edit in edits {
            edit.apply(&mut v);
        }
        check_evidence(&serde_json::to_vec(&v).expect("a Value serialises"));
    }

    #[test]
    fn mutated_trustee_json_text_never_panics(
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<Index>()),
    ) {
        let mut text = fixture("trustee-genoa-v3-evidence.json");
        for (at, value) in edits {
            let at = at.index(text.len());
            text[at] = value;
        }
        if let Some(cut) = cut {
            text.truncate(cut.index(text.len()));
        }
        check_evidence(&text);
    }
}

const FIELD_OFFSETS: [usize; 9] = [
    offset::VERSION,
    offset::POLICY,
    offset::CURRENT_TCB,
    offset::PLATFORM_INFO,
    offset::KEY_INFO,
    offset::REPORTED_TCB,
    offset::CPUID_FAM_ID,
    offset::CHIP_ID,
    offset::LAUNCH_MIT_VECTOR,
];

fn evidence_json() -> Value {
    serde_json::from_slice(&fixture("trustee-genoa-v3-evidence.json"))
        .expect("the evidence fixture is JSON")
}

/// Parses evidence; when it parses, its report obeys [`check_parsed`] and writing it back
/// out does not panic either.
fn check_evidence(json: &[u8]) {
    match Evidence::from_trustee_json(json) {
        Ok(e) => {
            check_parsed(e.report.as_bytes(), &e.report);
            if let Ok(out) = e.to_trustee_json() {
                let again = Evidence::from_trustee_json(out.to_string().as_bytes());
                assert!(again.is_ok(), "our own JSON form does not read back");
            }
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
}

/// Keys of `attestation_report`, nested objects' keys given as paths.
const REPORT_KEYS: [&str; 41] = [
    "version",
    "guest_svn",
    "policy",
    "family_id",
    "image_id",
    "vmpl",
    "sig_algo",
    "current_tcb",
    "current_tcb.fmc",
    "current_tcb.bootloader",
    "current_tcb.microcode",
    "plat_info",
    "key_info",
    "report_data",
    "measurement",
    "host_data",
    "id_key_digest",
    "author_key_digest",
    "report_id",
    "report_id_ma",
    "reported_tcb",
    "reported_tcb.fmc",
    "reported_tcb.snp",
    "cpuid_fam_id",
    "cpuid_mod_id",
    "cpuid_step",
    "chip_id",
    "committed_tcb",
    "committed_tcb.tee",
    "current",
    "current.major",
    "committed",
    "committed.build",
    "launch_tcb",
    "launch_tcb.fmc",
    "launch_mit_vector",
    "current_mit_vector",
    "signature",
    "signature.r",
    "signature.s",
    "signature.extra",
];

/// One change to the evidence JSON.
#[derive(Clone, Debug)]
enum JsonEdit {
    /// Remove the key at a report path.
    Remove(&'static str),
    /// Set the value at a report path (inserting the key when missing).
    Set(&'static str, Value),
    /// Set one element of a byte array at a report path.
    SetElement(&'static str, Index, Value),
    /// Replace the certificate table.
    CertChain(Value),
    /// Replace the whole report.
    Report(Value),
}

impl JsonEdit {
    fn apply(self, v: &mut Value) {
        match self {
            Self::Remove(path) => {
                let (parent, key) = locate(v, path);
                if let Some(obj) = parent.and_then(Value::as_object_mut) {
                    obj.remove(key);
                }
            }
            Self::Set(path, value) => {
                let (parent, key) = locate(v, path);
                if let Some(obj) = parent.and_then(Value::as_object_mut) {
                    obj.insert(key.to_owned(), value);
                }
            }
            Self::SetElement(path, at, value) => {
                let (parent, key) = locate(v, path);
                if let Some(Value::Array(a)) = parent.and_then(|p| p.get_mut(key)) {
                    if !a.is_empty() {
                        let at = at.index(a.len());
                        a[at] = value;
                    }
                }
            }
            Self::CertChain(value) => v["cert_chain"] = value,
            Self::Report(value) => v["attestation_report"] = value,
        }
    }
}

/// The object holding the last segment of `path` under `attestation_report`, and that key.
fn locate<'a>(v: &'a mut Value, path: &'static str) -> (Option<&'a mut Value>, &'static str) {
    let mut parent = v.get_mut("attestation_report");
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        if segments.peek().is_none() {
            return (parent, segment);
        }
        parent = parent.and_then(|p| p.get_mut(segment));
    }
    (None, path)
}

/// Values for a field: mostly well-typed (any u8 fits every numeric field; byte arrays of any
/// length), so the evidence reaches the length, layout and report rules, and sometimes out of
/// u8/u32/u64 range, negative, fractional, of the wrong type, or arrays of bad elements.
fn json_value() -> impl Strategy<Value = Value> {
    let out_of_range = prop_oneof![
        Just(json!(256)),
        Just(json!(-1)),
        Just(json!(u32::MAX)),
        Just(json!(u64::from(u32::MAX) + 1)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1.5)),
        Just(json!(1e300)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
    ];
    let other = prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!("01")),
        Just(json!({})),
        Just(json!({"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 5})),
        Just(json!({"fmc": null, "bootloader": 300, "tee": 0, "snp": 0, "microcode": 0})),
        Just(json!({"major": 1, "minor": 2, "build": 3})),
        Just(json!({"r": [], "s": []})),
    ];
    let bytes = (0_usize..100, any::<u8>()).prop_map(|(len, b)| Value::Array(vec![json!(b); len]));
    let exact = prop_oneof![Just(16_usize), Just(32), Just(48), Just(64), Just(72)]
        .prop_map(|len| Value::Array(vec![json!(0); len]));
    let bad_elements = (
        0_usize..100,
        prop_oneof![Just(json!(256)), Just(json!(-1)), Just(Value::Null)],
    )
        .prop_map(|(len, element)| Value::Array(vec![element; len]));
    prop_oneof![
        6 => any::<u8>().prop_map(|n| json!(n)),
        2 => out_of_range,
        1 => other,
        3 => bytes,
        2 => exact,
        1 => bad_elements,
    ]
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    let path = prop::sample::select(REPORT_KEYS.to_vec());
    let chain = prop_oneof![
        Just(Value::Null),
        Just(json!([])),
        Just(json!([{"cert_type": "VCEK", "data": []}])),
        Just(json!([{"cert_type": "ARK", "data": [256]}])),
        Just(json!([{"cert_type": {"OTHER": "x"}, "data": [1, 2]}])),
        Just(json!([{"cert_type": "Empty", "data": [0]}])),
        Just(json!([{"cert_type": "NOPE", "data": []}])),
        Just(json!([{"data": []}])),
        Just(json!({"cert_type": "VCEK"})),
    ];
    // Keys serde may leave out (`Option`s): removing them reaches the layout and version rules.
    let optional = prop::sample::select(vec![
        "cpuid_fam_id",
        "cpuid_mod_id",
        "cpuid_step",
        "launch_mit_vector",
        "current_mit_vector",
        "current_tcb.fmc",
        "reported_tcb.fmc",
        "launch_tcb.fmc",
    ]);
    prop_oneof![
        1 => path.clone().prop_map(JsonEdit::Remove),
        2 => optional.prop_map(JsonEdit::Remove),
        5 => (path.clone(), json_value()).prop_map(|(p, v)| JsonEdit::Set(p, v)),
        3 => (path, any::<Index>(), json_value()).prop_map(|(p, i, v)| JsonEdit::SetElement(p, i, v)),
        1 => chain.prop_map(JsonEdit::CertChain),
        1 => prop_oneof![Just(Value::Null), Just(json!({})), Just(json!([]))].prop_map(JsonEdit::Report),
    ]
}

#[test]
fn unmodified_trustee_json_reads() {
    // The mutations start from a fixture that parses, so failures are the mutation's doing.
    check_evidence(&fixture("trustee-genoa-v3-evidence.json"));
    assert!(Evidence::from_trustee_json(&fixture("trustee-genoa-v3-evidence.json")).is_ok());
}
