use super::*;

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn digest() -> Digest {
    format!("sha256:{HEX}").parse().unwrap()
}

#[test]
fn payload_is_byte_exact_cosign_simple_signing() {
    let p = simple_signing_payload("127.0.0.1:5000/test/busybox", &digest());
    let expected = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/test/busybox"}},"image":{{"docker-manifest-digest":"sha256:{HEX}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    assert_eq!(String::from_utf8(p).unwrap(), expected);
}

#[test]
fn simple_signature_checks_key_payload_and_digest() {
    let key = PrivateKey::generate();
    let payload = simple_signing_payload("r/x", &digest());
    let sig = Signature::SimpleSigning {
        signature: key.sign(&payload),
        payload: payload.clone(),
    };
    verify_signature(&sig, &key.public_key(), &digest()).unwrap();
    let other: Digest = format!("sha256:{}", "f".repeat(64)).parse().unwrap();
    assert!(matches!(
        verify_signature(&sig, &key.public_key(), &other),
        Err(SignatureError::WrongDigest { .. })
    ));
    assert!(matches!(
        verify_signature(&sig, &PrivateKey::generate().public_key(), &digest()),
        Err(SignatureError::BadSignature { .. })
    ));
    // Edited payload (same digest claim, extra whitespace): signature no longer covers it.
    let mut edited = payload.clone();
    edited.insert(1, b' ');
    let tampered = Signature::SimpleSigning {
        signature: key.sign(&payload),
        payload: edited,
    };
    assert!(matches!(
        verify_signature(&tampered, &key.public_key(), &digest()),
        Err(SignatureError::BadSignature { .. })
    ));
    // A validly signed payload of the wrong type.
    let wrong_type = payload_with_type("something else");
    let s = Signature::SimpleSigning {
        signature: key.sign(&wrong_type),
        payload: wrong_type,
    };
    assert!(matches!(
        verify_signature(&s, &key.public_key(), &digest()),
        Err(SignatureError::BadPayload(_))
    ));
}

fn payload_with_type(t: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {"identity": {"docker-reference": "r"}, "image": {"docker-manifest-digest": digest().to_string()}, "type": t},
        "optional": null
    }))
    .unwrap()
}

#[test]
fn dsse_bundle_is_verified_over_pae_and_subject() {
    let key = PrivateKey::generate();
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "r/x", "digest": {"sha256": HEX}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {}
    });
    let payload = serde_json::to_vec(&statement).unwrap();
    // PAE written out by hand from the DSSE spec.
    let mut pae_bytes =
        format!("DSSEv1 28 application/vnd.in-toto+json {} ", payload.len()).into_bytes();
    pae_bytes.extend_from_slice(&payload);
    let bundle = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "k"}},
        "dsseEnvelope": {
            "payload": B64.encode(&payload),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": B64.encode(key.sign(&pae_bytes)), "keyid": ""}]
        }
    });
    let sig = Signature::Bundle {
        bundle: serde_json::to_vec(&bundle).unwrap(),
    };
    verify_signature(&sig, &key.public_key(), &digest()).unwrap();
    let other: Digest = format!("sha256:{}", "e".repeat(64)).parse().unwrap();
    assert!(matches!(
        verify_signature(&sig, &key.public_key(), &other),
        Err(SignatureError::WrongDigest { .. })
    ));
    assert!(matches!(
        verify_signature(&sig, &PrivateKey::generate().public_key(), &digest()),
        Err(SignatureError::BadSignature { .. })
    ));
}

#[test]
fn select_valid_reports_every_reason() {
    let key = PrivateKey::generate();
    let r: ImageRef = "127.0.0.1:5000/a/b".parse().unwrap();
    assert!(matches!(
        select_valid(&r, &digest(), &[], &[key.public_key()]),
        Err(VerifyError::NoSignatures { .. })
    ));
    let payload = simple_signing_payload("r", &digest());
    let sig = Signature::SimpleSigning {
        signature: key.sign(&payload),
        payload,
    };
    let err = select_valid(
        &r,
        &digest(),
        std::slice::from_ref(&sig),
        &[PrivateKey::generate().public_key()],
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    let (valid, signer) = select_valid(&r, &digest(), &[sig], &[key.public_key()]).unwrap();
    assert_eq!(valid.len(), 1);
    assert_eq!(signer, key.public_key().fingerprint());
}
