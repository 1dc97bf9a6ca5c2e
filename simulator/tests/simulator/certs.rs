//! The simulated chain in AMD's profile, checked with openssl.

use a3s_attestation::Product;

use crate::support::{fixture, openssl, pem_of, sim, temp_home, write};

/// Writes ARK, ASK and the default chip's VCEK of `product` as PEM; returns their paths.
fn chain_files(dir: &std::path::Path, product: Product) -> (String, String, String) {
    let sim = sim();
    let chip = &sim
        .info()
        .products
        .into_iter()
        .find(|p| p.product == product)
        .unwrap()
        .chips[0];
    (
        pem_of(dir, "ark", sim.ark_der(product).unwrap()),
        pem_of(dir, "ask", sim.ask_der(product).unwrap()),
        pem_of(dir, "vcek", sim.vcek_der(product, &chip.id).unwrap()),
    )
}

#[test]
fn chain_verifies_with_openssl() {
    for product in [Product::Milan, Product::Turin] {
        let dir = temp_home();
        let (ark, ask, vcek) = chain_files(dir.path(), product);
        let (ok, out) = openssl(&["verify", "-CAfile", &ark, "-untrusted", &ask, &vcek]);
        assert!(ok, "{product}: {out}");
        assert!(out.contains(": OK"), "{out}");
    }
}

#[test]
fn simulated_chain_never_verifies_against_amd_roots() {
    let dir = temp_home();
    let (_, ask, vcek) = chain_files(dir.path(), Product::Milan);
    let amd_ark = fixture("amd-roots/milan_ark.pem");
    let amd_ask = fixture("amd-roots/milan_ask.pem");
    let (ok, out) = openssl(&["verify", "-CAfile", &amd_ark, "-untrusted", &amd_ask, &vcek]);
    assert!(
        !ok,
        "a simulated VCEK verified against AMD's Milan root: {out}"
    );
    let (ok, out) = openssl(&["verify", "-CAfile", &amd_ark, "-untrusted", &ask, &vcek]);
    assert!(
        !ok,
        "a simulated ASK verified against AMD's Milan root: {out}"
    );
}

#[test]
fn certificates_use_amds_pss_profile_and_names_marked_simulated() {
    let dir = temp_home();
    let (ark, ask, vcek) = chain_files(dir.path(), Product::Milan);
    for (path, issuer_cn, subject_cn) in [
        (&ark, "ARK-Milan", "ARK-Milan"),
        (&ask, "ARK-Milan", "SEV-Milan"),
        (&vcek, "SEV-Milan", "SEV-VCEK"),
    ] {
        let (ok, text) = openssl(&["x509", "-noout", "-text", "-in", path]);
        assert!(ok, "{text}");
        // Both the TBS and the outer signature algorithm.
        assert_eq!(
            text.matches("Signature Algorithm: rsassaPss").count(),
            2,
            "{text}"
        );
        assert_eq!(text.matches("Hash Algorithm: sha384").count(), 2, "{text}");
        assert_eq!(
            text.matches("Mask Algorithm: mgf1 with sha384").count(),
            2,
            "{text}"
        );
        assert_eq!(text.matches("Salt Length: 0x30").count(), 2, "{text}");
        let marked = "OU = Engineering, OU = A3S Box SEV-SNP simulator (not AMD), C = US, \
                      L = Santa Clara, ST = CA, O = Advanced Micro Devices, CN = ";
        assert!(
            text.contains(&format!("Issuer: {marked}{issuer_cn}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("Subject: {marked}{subject_cn}\n")),
            "{text}"
        );
    }
    let (_, text) = openssl(&["x509", "-noout", "-text", "-in", &vcek]);
    assert!(text.contains("Serial Number: 0 (0x0)"), "{text}");
    assert!(text.contains("NIST CURVE: P-384"), "{text}");
    let (_, text) = openssl(&["x509", "-noout", "-text", "-in", &ark]);
    assert!(text.contains("Public-Key: (4096 bit)"), "{text}");
    assert!(text.contains("CA:TRUE"), "{text}");
    let (_, text) = openssl(&["x509", "-noout", "-text", "-in", &ask]);
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
}

/// The AMD extensions of a DER certificate as (OID, hex of the extnValue content), in order.
fn amd_extensions(der_path: &str) -> Vec<(String, String)> {
    let (ok, text) = openssl(&["asn1parse", "-inform", "der", "-in", der_path]);
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(oid) = line.split(":1.3.6.1.4.1.3704.1.").nth(1) {
            let value = lines[i + 1]
                .split("[HEX DUMP]:")
                .nth(1)
                .expect("extension value is an OCTET STRING");
            out.push((
                format!("1.3.6.1.4.1.3704.1.{}", oid.trim()),
                value.trim().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn vcek_extensions_are_encoded_like_amds() {
    let dir = temp_home();
    for (product, real) in [
        (Product::Milan, "reports/oak-milan-oc-release-vcek.der"),
        (Product::Turin, "reports/oak-turin-oc-vcek.der"),
    ] {
        let sim = sim();
        let info = sim
            .info()
            .products
            .into_iter()
            .find(|p| p.product == product)
            .unwrap();
        let chip = &info.chips[0];
        let ours = write(
            dir.path(),
            "vcek.der",
            sim.vcek_der(product, &chip.id).unwrap(),
        );
        let ours = amd_extensions(&ours);
        let amd = amd_extensions(&fixture(real));
        let oids = |v: &[(String, String)]| v.iter().map(|(o, _)| o.clone()).collect::<Vec<_>>();
        assert_eq!(
            oids(&ours),
            oids(&amd),
            "{product}: same extensions in the same order"
        );
        let value = |oid: &str| {
            ours.iter()
                .find(|(o, _)| o == &format!("1.3.6.1.4.1.3704.1.{oid}"))
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let int = |n: u8| {
            if n < 0x80 {
                format!("0201{n:02X}")
            } else {
                format!("020200{n:02X}")
            }
        };
        let tcb = chip.config.tcb;
        assert_eq!(value("3.1"), int(tcb.bootloader));
        assert_eq!(value("3.2"), int(tcb.tee));
        assert_eq!(value("3.3"), int(tcb.snp));
        assert_eq!(value("3.8"), int(tcb.microcode));
        assert_eq!(value("4"), hex::encode_upper(chip.id.hw_id(product)));
        match product {
            Product::Turin => {
                assert_eq!(value("1"), "020101");
                assert_eq!(value("2"), "1605547572696E"); // IA5String "Turin"
                assert_eq!(value("3.9"), int(tcb.fmc.unwrap()));
                assert_eq!(value("4").len(), 16);
            }
            _ => {
                assert_eq!(value("1"), "020100");
                assert_eq!(value("2"), "16084D696C616E2D4230"); // IA5String "Milan-B0"
                assert_eq!(value("4").len(), 128);
            }
        }
    }
}

#[test]
fn crl_is_signed_by_the_ark() {
    let dir = temp_home();
    let sim = sim();
    let ark = pem_of(dir.path(), "ark", sim.ark_der(Product::Milan).unwrap());
    let crl = write(dir.path(), "crl.der", sim.crl_der(Product::Milan).unwrap());
    let (ok, out) = openssl(&[
        "crl", "-inform", "der", "-in", &crl, "-CAfile", &ark, "-noout", "-text",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("verify OK"), "{out}");
    assert!(out.contains("rsassaPss"), "{out}");
    assert!(out.contains("No Revoked Certificates"), "{out}");
}

#[test]
fn cert_chain_pem_is_ask_then_ark() {
    let sim = sim();
    let pem = sim.cert_chain_pem(Product::Milan).unwrap();
    let dir = temp_home();
    let path = write(dir.path(), "chain.pem", pem.as_bytes());
    // openssl reads the first certificate of a file: the ASK.
    let (ok, subject) = openssl(&["x509", "-noout", "-subject", "-in", &path]);
    assert!(ok && subject.contains("CN = SEV-Milan"), "{subject}");
    assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    // The ARK is the second block.
    let ark_block = pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .nth(1)
        .unwrap();
    let ark_path = write(dir.path(), "ark2.pem", ark_block.as_bytes());
    let (ok, subject) = openssl(&["x509", "-noout", "-subject", "-in", &ark_path]);
    assert!(ok && subject.contains("CN = ARK-Milan"), "{subject}");
}
