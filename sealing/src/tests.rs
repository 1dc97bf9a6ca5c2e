use super::*;

const GOLDEN: &str = include_str!("../tests/vectors/golden-v1.txt");

fn golden(name: &str) -> String {
    GOLDEN
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{name} missing from golden-v1.txt"))
        .to_owned()
}

fn key_source(byte: u8) -> StaticKey {
    StaticKey::new(Zeroizing::new([byte; 32]))
}

fn params() -> KeyParams {
    KeyParams {
        root_key: RootKey::Vmrk,
        field_select: GuestFieldSelect::MEASUREMENT | GuestFieldSelect::POLICY,
        guest_svn: 3,
        tcb_version: TcbVersion(0x1122_3344_5566_7788),
    }
}

#[test]
fn round_trips_and_uses_fresh_nonces() {
    let key = key_source(7);
    for plaintext in [&b""[..], b"x", &[0x5A; 1000]] {
        let envelope = seal(&key, &params(), plaintext).unwrap();
        assert_eq!(envelope.len(), HEADER_LEN + plaintext.len() + TAG_LEN);
        assert_eq!(envelope_params(&envelope).unwrap(), params());
        assert_eq!(unseal(&key, &envelope).unwrap().as_slice(), plaintext);
    }
    let a = seal(&key, &params(), b"same").unwrap();
    let b = seal(&key, &params(), b"same").unwrap();
    assert_ne!(a[NONCE_OFFSET..HEADER_LEN], b[NONCE_OFFSET..HEADER_LEN]);
    assert_ne!(a, b);
}

#[test]
fn golden_vector_matches_python() {
    let key: [u8; 32] = hex::decode(golden("key")).unwrap().try_into().unwrap();
    let nonce: [u8; NONCE_LEN] = hex::decode(golden("nonce")).unwrap().try_into().unwrap();
    let plaintext = hex::decode(golden("plaintext")).unwrap();
    assert_eq!(golden("root_key"), "1");
    assert_eq!(golden("field_select"), "0x9");
    assert_eq!(golden("guest_svn"), "3");
    assert_eq!(golden("tcb_version"), "0x1122334455667788");
    let source = StaticKey::new(Zeroizing::new(key));
    let envelope = seal_with_nonce(&source, &params(), nonce, &plaintext).unwrap();
    assert_eq!(hex::encode(&envelope), golden("envelope"));
    assert_eq!(unseal(&source, &envelope).unwrap().as_slice(), plaintext);
}

#[test]
fn a_different_key_fails_authentication() {
    let envelope = seal(&key_source(1), &params(), b"secret").unwrap();
    assert!(matches!(
        unseal(&key_source(2), &envelope),
        Err(UnsealError::Authentication)
    ));
}

/// What a header byte's flip must produce: its own error where the byte is checked, otherwise
/// (key parameters, nonce, ciphertext, tag) an authentication failure.
fn expect_flip_error(byte: usize, bit: u8, err: &UnsealError) {
    match byte {
        0..VERSION_OFFSET => assert!(matches!(err, UnsealError::Magic), "{err:?}"),
        VERSION_OFFSET => assert!(matches!(err, UnsealError::Version(_)), "{err:?}"),
        ROOT_KEY_OFFSET if bit != 0 => assert!(matches!(err, UnsealError::RootKey(_)), "{err:?}"),
        // Bits 63:7 of GUEST_FIELD_SELECT are reserved.
        FIELD_SELECT_OFFSET if bit == 7 => {
            assert!(matches!(err, UnsealError::FieldSelect(_)), "{err:?}");
        }
        b if (FIELD_SELECT_OFFSET + 1..GUEST_SVN_OFFSET).contains(&b) => {
            assert!(matches!(err, UnsealError::FieldSelect(_)), "{err:?}");
        }
        _ => assert!(matches!(err, UnsealError::Authentication), "{err:?}"),
    }
}

#[test]
fn every_single_bit_flip_fails() {
    let key = key_source(9);
    let envelope = seal(&key, &params(), b"short msg").unwrap();
    for byte in 0..envelope.len() {
        for bit in 0..8u8 {
            let mut tampered = envelope.clone();
            tampered[byte] ^= 1 << bit;
            let err = unseal(&key, &tampered).unwrap_err();
            expect_flip_error(byte, bit, &err);
        }
    }
}

#[test]
fn every_truncation_and_extension_fails() {
    let key = key_source(9);
    let envelope = seal(&key, &params(), b"short msg").unwrap();
    for len in 0..envelope.len() {
        let err = unseal(&key, &envelope[..len]).unwrap_err();
        if len < HEADER_LEN {
            assert!(
                matches!(err, UnsealError::Truncated(l) if l == len),
                "{len}: {err:?}"
            );
        } else {
            assert!(matches!(err, UnsealError::Authentication), "{len}: {err:?}");
        }
    }
    let mut extended = envelope.clone();
    extended.push(0);
    assert!(matches!(
        unseal(&key, &extended),
        Err(UnsealError::Authentication)
    ));
}

#[test]
fn malformed_headers_get_distinct_errors() {
    let key = key_source(3);
    let envelope = seal(&key, &params(), b"m").unwrap();

    let mut bad = envelope.clone();
    bad[..7].copy_from_slice(b"A3SSEAM");
    assert!(matches!(unseal(&key, &bad), Err(UnsealError::Magic)));

    for version in [0, 2, 0xFF] {
        let mut bad = envelope.clone();
        bad[VERSION_OFFSET] = version;
        assert!(matches!(unseal(&key, &bad), Err(UnsealError::Version(v)) if v == version));
    }

    let mut bad = envelope.clone();
    bad[ROOT_KEY_OFFSET] = 2;
    assert!(matches!(unseal(&key, &bad), Err(UnsealError::RootKey(2))));

    let mut bad = envelope.clone();
    bad[FIELD_SELECT_OFFSET + 7] = 0x80;
    assert!(matches!(
        unseal(&key, &bad),
        Err(UnsealError::FieldSelect(v)) if v == 0x8000_0000_0000_0009
    ));

    assert!(matches!(
        envelope_params(&envelope[..HEADER_LEN - 1]),
        Err(UnsealError::Truncated(40))
    ));
}

#[test]
fn key_parameters_map_onto_the_key_request() {
    let req = params().key_request();
    assert_eq!(req.root_key, RootKey::Vmrk);
    assert_eq!(req.key_select, KeySelect::Default);
    assert_eq!(req.field_select, params().field_select);
    assert_eq!(req.vmpl, 0);
    assert_eq!(req.guest_svn, 3);
    assert_eq!(req.tcb_version, TcbVersion(0x1122_3344_5566_7788));
    assert_eq!(req.launch_mit_vector, 0);
}

#[test]
fn key_debug_is_redacted() {
    let key = key_source(0xAB);
    let debug = format!("{key:?}");
    assert_eq!(debug, "StaticKey([redacted])");
    assert!(!debug.contains("171"));
}
