use ring::digest::{digest, SHA256};

use super::*;
use crate::certs::{
    verify_chain, ChainError, IssueError, ProductRoots, Role, Roots, RootsError, TrustOrigin,
    VekKind,
};
use crate::Product;

/// The real VEKs and the product whose roots they chain to.
const REAL_VEKS: [(&str, Product, VekKind); 6] = [
    (
        "oak-milan-oc-release-vcek.der",
        Product::Milan,
        VekKind::Vcek,
    ),
    ("oak-genoa-oc-vcek.der", Product::Genoa, VekKind::Vcek),
    ("oak-turin-oc-vcek.der", Product::Turin, VekKind::Vcek),
    ("sev-vcek-turin.der", Product::Turin, VekKind::Vcek),
    ("trustee-test-vcek.der", Product::Milan, VekKind::Vcek),
    ("trustee-test-vlek.der", Product::Milan, VekKind::Vlek),
];

#[test]
fn builtin_roots_load_with_the_published_fingerprints() {
    // `openssl x509 -noout -fingerprint -sha256` of amd-roots/*_ark.pem and *_ask.pem.
    let expected = [
        (
            Product::Milan,
            "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
            "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
        ),
        (
            Product::Genoa,
            "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
            "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
        ),
        (
            Product::Turin,
            "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
            "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
        ),
    ];
    let roots = Roots::amd();
    assert_eq!(roots.origin(), TrustOrigin::Amd);
    assert_eq!(roots.iter().count(), 3);
    for (product, ark, ask) in expected {
        let anchors = roots.get(product).unwrap();
        let fingerprint = |cert: &Certificate| hex::encode(digest(&SHA256, cert.der()));
        assert_eq!(fingerprint(anchors.ark()), ark, "{product} ARK");
        assert_eq!(fingerprint(anchors.ask().unwrap()), ask, "{product} ASK");
        let asvk = anchors.asvk().unwrap();
        assert_eq!(asvk.role(), Role::Asvk);
        assert_eq!(asvk.common_name(), format!("SEV-VLEK-{product}"));
        // The copies in roots/ are the fixtures' certificates.
        let lower = product.as_str();
        assert_eq!(anchors.ark(), &root_cert(&format!("{lower}_ark.pem")));
        assert_eq!(
            anchors.ask().unwrap(),
            &root_cert(&format!("{lower}_ask.pem"))
        );
        let bundle =
            Certificate::parse_all(&fixture(&format!("amd-roots/{lower}_ask_ark_asvk.pem")))
                .unwrap();
        assert_eq!(&bundle[2], asvk);
    }
}

#[test]
fn every_real_vek_chains_to_its_product_roots() {
    for (name, product, kind) in REAL_VEKS {
        let verified = verify_chain(Roots::amd(), product, &vek_chain(name), AT)
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(verified.kind(), kind, "{name}");
        assert_eq!(verified.product(), product, "{name}");
        assert_eq!(verified.origin(), TrustOrigin::Amd, "{name}");
        assert!(!verified.is_simulated(), "{name}");
        assert_eq!(verified.certificate(), &report_cert(name));
        assert_eq!(verified.extensions().product, product);
    }
}

#[test]
fn full_supplied_chains_verify() {
    for (chain_file, product, vek) in [
        (
            "reports/sev-cert-chain-milan.pem",
            Product::Milan,
            "trustee-test-vcek.der",
        ),
        (
            "reports/sev-cert-chain-turin.pem",
            Product::Turin,
            "oak-turin-oc-vcek.der",
        ),
        (
            "amd-roots/milan_ask_ark_asvk.pem",
            Product::Milan,
            "trustee-test-vlek.der",
        ),
        (
            "amd-roots/genoa_ask_ark_asvk.pem",
            Product::Genoa,
            "oak-genoa-oc-vcek.der",
        ),
    ] {
        let mut certs = Certificate::parse_all(&fixture(chain_file)).unwrap();
        certs.push(report_cert(vek));
        let chain = CertChain::from_certificates(certs).unwrap();
        assert!(chain.ark().is_some());
        verify_chain(Roots::amd(), product, &chain, AT)
            .unwrap_or_else(|err| panic!("{chain_file} + {vek}: {err}"));
    }
}

#[test]
fn a_vek_fails_against_another_generation() {
    for (name, product, _) in REAL_VEKS {
        for other in Product::ALL.into_iter().filter(|&p| p != product) {
            let err = verify_chain(Roots::amd(), other, &vek_chain(name), AT).unwrap_err();
            assert!(
                matches!(err, ChainError::ProductName { product: p, .. } if p == other),
                "{name} as {other}: {err:?}"
            );
        }
    }
}

#[test]
fn another_generations_ask_cannot_issue_the_vek() {
    // The Genoa ASK, even presented as the intermediate of a Milan chain.
    let genoa_ask = root_cert("genoa_ask.pem");
    let milan_vcek = report_cert("trustee-test-vcek.der");
    assert!(matches!(
        genoa_ask.verify_issued(&milan_vcek, AT),
        Err(IssueError::Generation { .. })
    ));
    let chain = CertChain::from_certificates([genoa_ask, milan_vcek]).unwrap();
    let err = verify_chain(Roots::amd(), Product::Milan, &chain, AT).unwrap_err();
    assert_eq!(
        err,
        ChainError::Generation {
            product: Product::Milan,
            role: Role::Ask,
            actual: Product::Genoa
        }
    );
}

#[test]
fn the_wrong_intermediate_kind_cannot_issue_the_vek() {
    let anchors = Roots::amd().get(Product::Milan).unwrap();
    let vcek = report_cert("trustee-test-vcek.der");
    let vlek = report_cert("trustee-test-vlek.der");
    assert!(matches!(
        anchors.asvk().unwrap().verify_issued(&vcek, AT),
        Err(IssueError::Role {
            issuer: Role::Asvk,
            child: Role::Vcek
        })
    ));
    assert!(matches!(
        anchors.ask().unwrap().verify_issued(&vlek, AT),
        Err(IssueError::Role {
            issuer: Role::Ask,
            child: Role::Vlek
        })
    ));
}

#[test]
fn an_expired_vlek_fails() {
    let at = datetime!(2025-12-11 0:00 UTC);
    let err = verify_chain(
        Roots::amd(),
        Product::Milan,
        &vek_chain("trustee-test-vlek.der"),
        at,
    )
    .unwrap_err();
    match err {
        ChainError::Link {
            issuer: Role::Asvk,
            child: Role::Vlek,
            source:
                IssueError::Expired {
                    role,
                    not_after,
                    at: checked,
                },
            ..
        } => {
            assert_eq!(role, Role::Vlek);
            assert_eq!(not_after, datetime!(2025-12-10 22:14:21 UTC));
            assert_eq!(checked, at);
        }
        other => panic!("expected expiry, got {other:?}"),
    }
    // Still valid on its last second, by RFC 5280's inclusive bounds.
    let last = datetime!(2025-12-10 22:14:21 UTC);
    verify_chain(
        Roots::amd(),
        Product::Milan,
        &vek_chain("trustee-test-vlek.der"),
        last,
    )
    .unwrap();
}

#[test]
fn a_vek_before_its_not_before_fails() {
    let at = datetime!(2025-01-01 0:00 UTC);
    let err = verify_chain(
        Roots::amd(),
        Product::Turin,
        &vek_chain("oak-turin-oc-vcek.der"),
        at,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::Link {
                source: IssueError::NotYetValid {
                    role: Role::Vcek,
                    ..
                },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn flipping_any_tbs_byte_of_a_vek_fails() {
    let original = fixture("reports/oak-turin-oc-vcek.der");
    let tbs_len = Certificate::from_der(&original).unwrap().tbs_der().len();
    // The TBS starts after the outer SEQUENCE header (4 bytes: 30 82 05 05).
    for offset in 4..4 + tbs_len {
        let mut bytes = original.clone();
        bytes[offset] ^= 0x01;
        let Ok(cert) = Certificate::from_der(&bytes) else {
            continue; // No longer parses: also a rejection.
        };
        let Ok(chain) = CertChain::from_vek(cert) else {
            continue;
        };
        assert!(
            verify_chain(Roots::amd(), Product::Turin, &chain, AT).is_err(),
            "flipped byte {offset:#x} still verifies"
        );
    }
}

#[test]
fn flipping_a_subject_byte_breaks_the_signature() {
    let mut bytes = fixture("reports/trustee-test-vcek.der");
    let at = rfind(&bytes, b"Santa Clara");
    bytes[at] = b's';
    let chain = CertChain::from_vek(Certificate::from_der(&bytes).unwrap()).unwrap();
    let err = verify_chain(Roots::amd(), Product::Milan, &chain, AT).unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::Link {
                source: IssueError::Signature {
                    issuer: Role::Ask,
                    child: Role::Vcek
                },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn flipping_an_issuer_byte_breaks_name_chaining() {
    let mut bytes = fixture("reports/trustee-test-vcek.der");
    // The issuer name comes first in the TBS.
    let at = bytes.windows(11).position(|w| w == b"Santa Clara").unwrap();
    bytes[at] = b's';
    let chain = CertChain::from_vek(Certificate::from_der(&bytes).unwrap()).unwrap();
    let err = verify_chain(Roots::amd(), Product::Milan, &chain, AT).unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::Link {
                source: IssueError::Name { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_substituted_ark_fails() {
    // Another generation's ARK, and a simulated ARK that claims to be ARK-Milan.
    for ark in [root_cert("genoa_ark.pem"), sim_cert("sim-ark.der")] {
        let chain =
            CertChain::from_certificates([ark, report_cert("trustee-test-vcek.der")]).unwrap();
        let err = verify_chain(Roots::amd(), Product::Milan, &chain, AT).unwrap_err();
        assert_eq!(
            err,
            ChainError::ArkMismatch {
                product: Product::Milan,
                origin: TrustOrigin::Amd
            }
        );
    }
}

#[test]
fn a_tampered_supplied_ark_fails_even_with_the_pinned_key() {
    let mut ark = root_cert("milan_ark.pem").der().to_vec();
    let at = rfind(&ark, b"kdsintf");
    ark[at] = b'K';
    let ark = Certificate::from_der(&ark).unwrap();
    let chain = CertChain::from_certificates([ark, report_cert("trustee-test-vcek.der")]).unwrap();
    assert!(matches!(
        verify_chain(Roots::amd(), Product::Milan, &chain, AT),
        Err(ChainError::ArkMismatch { .. })
    ));
}

#[test]
fn trustee_invalid_vceks_parse_but_do_not_chain() {
    for name in [
        "trustee-test-vcek-invalid-legacy.der",
        "trustee-test-vcek-invalid-new.der",
    ] {
        let err = verify_chain(Roots::amd(), Product::Milan, &vek_chain(name), AT).unwrap_err();
        assert!(
            matches!(
                err,
                ChainError::Link {
                    issuer: Role::Ask,
                    child: Role::Vcek,
                    source: IssueError::Signature { .. },
                    ..
                }
            ),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn chains_reject_duplicate_roles_and_missing_veks() {
    let vcek = report_cert("trustee-test-vcek.der");
    assert_eq!(
        CertChain::from_certificates([vcek.clone(), report_cert("trustee-test-vlek.der")])
            .unwrap_err(),
        ChainError::DuplicateRole { role: Role::Vlek }
    );
    assert_eq!(
        CertChain::from_certificates([root_cert("milan_ark.pem")]).unwrap_err(),
        ChainError::MissingVek
    );
    assert_eq!(
        CertChain::from_vek(root_cert("milan_ask.pem")).unwrap_err(),
        ChainError::MissingVek
    );
}

fn sim_roots() -> Roots {
    let anchors = ProductRoots::new(
        Product::Milan,
        sim_cert("sim-ark.der"),
        Some(sim_cert("sim-ask.der")),
        None,
    )
    .unwrap();
    Roots::custom([anchors]).unwrap()
}

#[test]
fn custom_roots_verify_simulated_chains_and_say_so() {
    let roots = sim_roots();
    assert_eq!(roots.origin(), TrustOrigin::Custom);
    let chain = CertChain::from_vek(sim_cert("sim-vcek.der")).unwrap();
    let verified = verify_chain(&roots, Product::Milan, &chain, AT).unwrap();
    assert!(verified.is_simulated());
    assert_eq!(verified.origin(), TrustOrigin::Custom);
    // No anchors for other products, and no ASVK for VLEKs.
    assert_eq!(
        verify_chain(&roots, Product::Genoa, &chain, AT).unwrap_err(),
        ChainError::UnknownProduct {
            product: Product::Genoa,
            origin: TrustOrigin::Custom
        }
    );
    let vlek = vek_chain("trustee-test-vlek.der");
    assert_eq!(
        verify_chain(&roots, Product::Milan, &vlek, AT).unwrap_err(),
        ChainError::MissingIntermediate {
            role: Role::Asvk,
            product: Product::Milan
        }
    );
}

#[test]
fn simulated_and_amd_trust_never_mix() {
    // A simulated VCEK never verifies against AMD's roots ...
    let sim = CertChain::from_vek(sim_cert("sim-vcek.der")).unwrap();
    assert!(verify_chain(Roots::amd(), Product::Milan, &sim, AT).is_err());
    let full = CertChain::from_certificates([
        sim_cert("sim-ark.der"),
        sim_cert("sim-ask.der"),
        sim_cert("sim-vcek.der"),
    ])
    .unwrap();
    assert!(verify_chain(Roots::amd(), Product::Milan, &full, AT).is_err());
    // ... and a real VCEK never against the simulator's.
    let real = vek_chain("trustee-test-vcek.der");
    assert!(verify_chain(&sim_roots(), Product::Milan, &real, AT).is_err());
    let with_amd_ask = CertChain::from_certificates([
        root_cert("milan_ask.pem"),
        report_cert("trustee-test-vcek.der"),
    ])
    .unwrap();
    assert!(matches!(
        verify_chain(&sim_roots(), Product::Milan, &with_amd_ask, AT),
        Err(ChainError::Link {
            issuer: Role::Ark,
            child: Role::Ask,
            ..
        })
    ));
}

#[test]
fn product_roots_reject_mismatched_anchors() {
    let milan_ark = root_cert("milan_ark.pem");
    assert!(matches!(
        ProductRoots::new(Product::Genoa, milan_ark.clone(), None, None),
        Err(RootsError::Generation {
            product: Product::Genoa,
            role: Role::Ark,
            actual: Product::Milan
        })
    ));
    assert!(matches!(
        ProductRoots::new(Product::Milan, root_cert("milan_ask.pem"), None, None),
        Err(RootsError::Role {
            expected: Role::Ark,
            actual: Role::Ask,
            ..
        })
    ));
    assert!(matches!(
        ProductRoots::new(
            Product::Milan,
            sim_cert("sim-ark.der"),
            Some(root_cert("milan_ask.pem")),
            None
        ),
        Err(RootsError::Issue {
            source: IssueError::Name { .. } | IssueError::Signature { .. },
            ..
        })
    ));
    let anchors = ProductRoots::new(Product::Milan, milan_ark, None, None).unwrap();
    assert!(matches!(
        Roots::custom([anchors.clone(), anchors]),
        Err(RootsError::DuplicateProduct {
            product: Product::Milan
        })
    ));
}

#[test]
fn a_vek_cannot_issue_certificates() {
    let vcek = report_cert("trustee-test-vcek.der");
    assert!(matches!(
        vcek.verify_issued(&vcek, AT),
        Err(IssueError::Role {
            issuer: Role::Vcek,
            child: Role::Vcek
        })
    ));
}

#[test]
fn error_messages_are_lowercase_with_context() {
    let err = verify_chain(
        Roots::amd(),
        Product::Milan,
        &vek_chain("trustee-test-vlek.der"),
        datetime!(2026-01-01 0:00 UTC),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Milan chain link ASVK -> VLEK does not verify"
    );
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        source.starts_with("VLEK certificate expired at 2025-12-10"),
        "{source}"
    );
    assert!(!source.ends_with('.'));
}
