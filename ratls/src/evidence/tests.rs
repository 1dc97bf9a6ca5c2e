use proptest::prelude::*;

use super::*;

/// A real Milan report (trustee's test fixture): any valid report will do for the format.
fn report() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/snp/reports/trustee-test-report.bin"
    ))
    .unwrap()
}

fn claims(nonce: Option<Vec<u8>>) -> Claims {
    Claims::for_key(b"an SPKI", nonce)
}

fn good() -> Vec<u8> {
    Evidence::encode(
        EvidenceKind::Hardware,
        &report(),
        &claims(Some(vec![9; 32])).encode(),
    )
}

#[test]
fn round_trips_both_kinds_with_and_without_nonce() {
    for kind in [EvidenceKind::Hardware, EvidenceKind::Simulated] {
        for nonce in [None, Some(vec![1; 32])] {
            let c = claims(nonce);
            let bytes = Evidence::encode(kind, &report(), &c.encode());
            let e = Evidence::parse(&bytes).unwrap();
            assert_eq!(e.kind(), kind);
            assert_eq!(e.claims(), &c);
            assert_eq!(e.claims_bytes(), c.encode());
            assert_eq!(e.report().as_bytes()[..], report()[..]);
        }
    }
}

#[test]
fn encodes_the_gramine_shape() {
    // Tag head, 2-array, 1184-byte bstr: D9/DA <tag> 82 59 04A0.
    let bytes = good();
    assert_eq!(bytes[0], 0xDA);
    assert_eq!(&bytes[1..5], &TAG_SNP.to_be_bytes()[4..]);
    assert_eq!(&bytes[5..9], &[0x82, 0x59, 0x04, 0xA0]);
    // Claims: nonce then pubkey-hash, the hash entry a bstr holding [7, h'<48>'].
    let c = claims(None).encode();
    assert_eq!(&c[..13], b"\xA1\x6Bpubkey-hash");
    assert_eq!(&c[13..17], &[0x58, 0x34, 0x82, 0x07]);
    assert_eq!(&c[17..19], &[0x58, 0x30]);
}

#[test]
fn simulated_tag_is_in_the_experimental_tn_range() {
    // RFC 9277: TN(ct) = 0x63740101 + (ct / 255) * 256 + ct % 255.
    let tn = |ct: u64| 0x6374_0101 + (ct / 255) * 256 + ct % 255;
    assert_eq!(TAG_SNP, tn(10572));
    assert_eq!(TAG_SNP_SIMULATED, tn(65000));
}

#[test]
fn rejects_every_truncation() {
    let bytes = good();
    for len in 0..bytes.len() {
        let err = Evidence::parse(&bytes[..len]).unwrap_err();
        assert!(
            matches!(err, ParseError::Truncated { .. }),
            "length {len}: {err:?}"
        );
    }
}

#[test]
fn rejects_trailing_bytes() {
    let mut bytes = good();
    bytes.push(0);
    assert!(matches!(
        Evidence::parse(&bytes),
        Err(ParseError::TrailingBytes { .. })
    ));
}

#[test]
fn rejects_unknown_tags() {
    for tag in [60000, TAG_SNP + 1, TAG_SNP_SIMULATED - 1, 0] {
        let mut bytes = Vec::new();
        cbor::head(&mut bytes, cbor::TAG, tag);
        bytes.extend_from_slice(&good()[5..]);
        assert!(
            matches!(Evidence::parse(&bytes), Err(ParseError::UnknownTag(t)) if t == tag),
            "{tag}"
        );
    }
}

#[test]
fn rejects_wrong_types() {
    let report = report();
    let claims = claims(None).encode();
    // No tag.
    let untagged = &good()[5..];
    assert!(matches!(
        Evidence::parse(untagged),
        Err(ParseError::WrongType {
            expected: "tag",
            ..
        })
    ));
    // A map instead of the array.
    let mut map = Vec::new();
    cbor::head(&mut map, cbor::TAG, TAG_SNP);
    cbor::head(&mut map, cbor::MAP, 1);
    assert!(matches!(
        Evidence::parse(&map),
        Err(ParseError::WrongType {
            expected: "evidence array",
            found: "map",
            ..
        })
    ));
    // The report as a text string.
    let mut text = Vec::new();
    cbor::head(&mut text, cbor::TAG, TAG_SNP);
    cbor::head(&mut text, cbor::ARRAY, 2);
    cbor::head(&mut text, cbor::TEXT, report.len() as u64);
    assert!(matches!(
        Evidence::parse(&text),
        Err(ParseError::WrongType {
            expected: "report",
            found: "text string",
            ..
        })
    ));
    // Three elements.
    let mut three = Vec::new();
    cbor::head(&mut three, cbor::TAG, TAG_SNP);
    cbor::head(&mut three, cbor::ARRAY, 3);
    assert!(matches!(
        Evidence::parse(&three),
        Err(ParseError::ArrayLength { found: 3, .. })
    ));
    // A short report.
    let short = Evidence::encode(EvidenceKind::Hardware, &report[..100], &claims);
    assert!(matches!(
        Evidence::parse(&short),
        Err(ParseError::ReportLength(100))
    ));
    // A report the report parser refuses (version 0).
    let mut bad = report.clone();
    bad[..4].fill(0);
    let bad = Evidence::encode(EvidenceKind::Hardware, &bad, &claims);
    assert!(matches!(Evidence::parse(&bad), Err(ParseError::Report(_))));
    // Claims that are not a map.
    let mut not_map = Vec::new();
    cbor::bytes(&mut not_map, b"x");
    let e = Evidence::encode(EvidenceKind::Hardware, &report, &not_map);
    assert!(matches!(
        Evidence::parse(&e),
        Err(ParseError::WrongType {
            expected: "claims map",
            ..
        })
    ));
}

fn claims_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    cbor::head(&mut out, cbor::MAP, entries.len() as u64);
    for (k, v) in entries {
        cbor::text(&mut out, k);
        cbor::bytes(&mut out, v);
    }
    out
}

fn hash_entry(alg: u64, digest: &[u8]) -> Vec<u8> {
    let mut e = Vec::new();
    cbor::head(&mut e, cbor::ARRAY, 2);
    cbor::head(&mut e, cbor::UINT, alg);
    cbor::bytes(&mut e, digest);
    e
}

#[test]
fn accepts_gramine_sha256_claims() {
    let entry = hash_entry(1, &[0xAB; 32]);
    let c = Claims::parse(&claims_with(&[("pubkey-hash", &entry)])).unwrap();
    assert_eq!(c.pubkey_hash.alg(), HashAlg::Sha256);
    assert_eq!(c.nonce, None);
}

#[test]
fn rejects_bad_claims() {
    let entry = hash_entry(7, &[0; 48]);
    let nonce = [1u8; 32];
    let parse = |b: Vec<u8>| Claims::parse(&b).unwrap_err();
    assert!(matches!(
        parse(claims_with(&[("nonce", &nonce)])),
        ParseError::MissingPubkeyHash
    ));
    assert!(matches!(
        parse(claims_with(&[("pubkey-hash", &entry), ("nonce", &nonce)])),
        ParseError::NotDeterministic { .. }
    ));
    assert!(matches!(
        parse(claims_with(&[
            ("pubkey-hash", &entry),
            ("pubkey-hash", &entry)
        ])),
        ParseError::NotDeterministic { .. }
    ));
    assert!(matches!(
        parse(claims_with(&[("extra", b"x"), ("pubkey-hash", &entry)])),
        ParseError::UnknownClaim(k) if k == "extra"
    ));
    assert!(matches!(
        parse(claims_with(&[("nonce", &[]), ("pubkey-hash", &entry)])),
        ParseError::NonceLength(0)
    ));
    assert!(matches!(
        parse(claims_with(&[("nonce", &[0; 65]), ("pubkey-hash", &entry)])),
        ParseError::NonceLength(65)
    ));
    assert!(matches!(
        parse(claims_with(&[("pubkey-hash", &hash_entry(2, &[0; 32]))])),
        ParseError::UnknownHashAlg(2)
    ));
    assert!(matches!(
        parse(claims_with(&[("pubkey-hash", &hash_entry(7, &[0; 32]))])),
        ParseError::DigestLength { alg: 7, found: 32 }
    ));
    // The hash entry given directly instead of as a byte string.
    let mut raw = Vec::new();
    cbor::head(&mut raw, cbor::MAP, 1);
    cbor::text(&mut raw, "pubkey-hash");
    raw.extend_from_slice(&entry);
    assert!(matches!(
        parse(raw),
        ParseError::WrongType {
            expected: "pubkey-hash",
            found: "array",
            ..
        }
    ));
}

#[test]
fn report_data_is_sha256_of_the_claims_then_zeros() {
    let c = claims(Some(vec![3; 32])).encode();
    let rd = Claims::report_data(&c);
    assert_eq!(
        &rd[..32],
        digest::digest(&digest::SHA256, &c).as_ref(),
        "low half"
    );
    assert_eq!(rd[32..], [0; 32]);
}

#[test]
fn endorsements_round_trip_and_reject_bad_counts() {
    let certs: [&[u8]; 2] = [b"vcek", b"ask"];
    let bytes = encode_endorsements(EvidenceKind::Simulated, &certs);
    let (kind, parsed) = parse_endorsements(&bytes).unwrap();
    assert_eq!(kind, EvidenceKind::Simulated);
    assert_eq!(parsed, certs);
    let none = encode_endorsements(EvidenceKind::Simulated, &[]);
    assert!(matches!(
        parse_endorsements(&none),
        Err(ParseError::EndorsementCount(0))
    ));
    let many = encode_endorsements(EvidenceKind::Hardware, &[&b"x"[..]; 5]);
    assert!(matches!(
        parse_endorsements(&many),
        Err(ParseError::EndorsementCount(5))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let _ = Evidence::parse(&bytes);
        let _ = Claims::parse(&bytes);
        let _ = parse_endorsements(&bytes);
    }

    /// Any change of one byte of good evidence is either rejected or parses to evidence that
    /// re-encodes to exactly the changed bytes (one value, one encoding).
    #[test]
    fn mutations_are_rejected_or_canonical(index in 0usize..1300, value in any::<u8>()) {
        let mut bytes = good();
        let i = index % bytes.len();
        bytes[i] = value;
        if let Ok(e) = Evidence::parse(&bytes) {
            let again = Evidence::encode(e.kind(), e.report().as_bytes(), e.claims_bytes());
            prop_assert_eq!(&again, &bytes);
            prop_assert_eq!(e.claims().encode(), e.claims_bytes());
        }
    }

    /// Parsing arbitrary claims either fails or yields claims whose encoding is the input.
    #[test]
    fn parsed_claims_re_encode_exactly(
        nonce in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=64)),
        digest in proptest::collection::vec(any::<u8>(), 48),
        cut in 0usize..200,
    ) {
        let c = Claims { pubkey_hash: PubkeyHash { alg: HashAlg::Sha384, digest }, nonce };
        let bytes = c.encode();
        prop_assert_eq!(Claims::parse(&bytes).unwrap(), c);
        let cut = cut % bytes.len();
        prop_assert!(Claims::parse(&bytes[..cut]).is_err());
    }
}
