//! Reports: requested fields, chip fields, and signatures checked with openssl.

use a3s_attestation::report::{layout_of, SigningKey, TcbLayout, SIGNED_LEN};
use a3s_attestation::{Product, Report};
use a3s_simulator::{GuestContext, ReportRequest, ReportVersion, SignError, Simulator};

use crate::support::{openssl, pem_of, sim, temp_home, write};

fn guest() -> GuestContext {
    let mut guest = GuestContext::launch([0x11; 48])
        .with_policy(0x3_001F)
        .unwrap();
    guest.family_id = [0x22; 16];
    guest.image_id = [0x33; 16];
    guest.host_data = [0x44; 32];
    guest.id_key_digest = [0x55; 48];
    guest.author_key_digest = Some([0x66; 48]);
    guest.guest_svn = 7;
    guest.launch_mit_vector = 0;
    guest
}

fn request() -> ReportRequest {
    let mut data = [0u8; 64];
    for (i, b) in data.iter_mut().enumerate() {
        *b = u8::try_from(i).unwrap();
    }
    let mut req = ReportRequest::new(guest(), data);
    req.vmpl = 1;
    req
}

/// DER ECDSA-Sig-Value from the report's little-endian R and S.
fn der_signature(report: &Report) -> Vec<u8> {
    fn integer(le: &[u8; 72]) -> Vec<u8> {
        assert!(
            le[48..].iter().all(|&b| b == 0),
            "only the low 48 bytes are significant"
        );
        let mut be: Vec<u8> = le[..48].iter().rev().copied().collect();
        while be.len() > 1 && be[0] == 0 {
            be.remove(0);
        }
        if be[0] & 0x80 != 0 {
            be.insert(0, 0);
        }
        let mut out = vec![0x02, u8::try_from(be.len()).unwrap()];
        out.extend(be);
        out
    }
    let body = [
        integer(&report.signature_r()),
        integer(&report.signature_s()),
    ]
    .concat();
    let mut out = vec![0x30, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out
}

/// Verifies `report` with the VCEK `vcek_der` using `openssl dgst`.
fn openssl_verifies(report: &Report, signed: &[u8], vcek_der: &[u8]) -> bool {
    let dir = temp_home();
    let vcek = pem_of(dir.path(), "vcek", vcek_der);
    let pubkey = dir.path().join("vcek_pub.pem");
    let pubkey = pubkey.to_str().unwrap();
    let (ok, out) = openssl(&["x509", "-in", &vcek, "-pubkey", "-noout", "-out", pubkey]);
    assert!(ok, "{out}");
    let sig = write(dir.path(), "sig.der", &der_signature(report));
    let data = write(dir.path(), "signed.bin", signed);
    let (ok, out) = openssl(&[
        "dgst",
        "-sha384",
        "-verify",
        pubkey,
        "-signature",
        &sig,
        &data,
    ]);
    if ok {
        assert!(out.contains("Verified OK"), "{out}");
    }
    ok
}

#[test]
fn report_signature_verifies_with_openssl_and_fails_when_a_signed_byte_changes() {
    let sim = sim();
    let report = sim.report(&request()).unwrap();
    let vcek = sim.default_chip().vcek_der();
    assert!(openssl_verifies(&report, report.signed_bytes(), vcek));
    let mut tampered = report.signed_bytes().to_vec();
    tampered[0x90] ^= 1; // a measurement bit
    assert!(!openssl_verifies(&report, &tampered, vcek));
    assert_eq!(report.signed_bytes().len(), SIGNED_LEN);
}

#[test]
fn turin_report_signature_verifies_with_openssl() {
    let sim = sim();
    let chip = sim
        .info()
        .products
        .into_iter()
        .find(|p| p.product == Product::Turin)
        .unwrap()
        .chips[0]
        .id;
    let chip = sim.chip(Product::Turin, &chip).unwrap();
    let report = a3s_simulator::sign::sign_report(chip, &request()).unwrap();
    assert!(openssl_verifies(
        &report,
        report.signed_bytes(),
        chip.vcek_der()
    ));
    assert_eq!(report.cpuid(), Some((0x1A, 0x02, 0x01)));
    assert_eq!(layout_of(Product::Turin), TcbLayout::Turin);
    assert_eq!(
        report.reported_tcb().decode(TcbLayout::Turin),
        chip.config().tcb
    );
    assert_eq!(&report.chip_id()[..8], &chip.id().as_bytes()[..8]);
    assert!(report.chip_id()[8..].iter().all(|&b| b == 0));
    assert!(report.chip_id()[..8].iter().any(|&b| b != 0));
}

#[test]
fn report_carries_exactly_the_requested_and_chip_fields() {
    let sim = sim();
    let req = request();
    let report = sim.report(&req).unwrap();
    // Parsing the bytes again checks every reserved byte and bit.
    let report = Report::from_bytes(report.as_bytes()).unwrap();
    let chip = sim.default_chip();
    let tcb = chip.config().tcb_version(Product::Milan);
    assert_eq!(report.version(), 5);
    assert_eq!(report.guest_svn(), 7);
    assert_eq!(report.policy().raw(), 0x3_001F);
    assert_eq!(report.family_id(), [0x22; 16]);
    assert_eq!(report.image_id(), [0x33; 16]);
    assert_eq!(report.vmpl(), 1);
    assert_eq!(report.signature_algo(), 1);
    assert_eq!(report.report_data(), req.report_data);
    assert_eq!(report.measurement(), [0x11; 48]);
    assert_eq!(report.host_data(), [0x44; 32]);
    assert_eq!(report.id_key_digest(), [0x55; 48]);
    assert_eq!(report.author_key_digest(), [0x66; 48]);
    assert_eq!(report.report_id(), req.guest.report_id);
    assert_eq!(report.report_id_ma(), [0xFF; 32]);
    assert!(report.key_info().author_key_en());
    assert!(!report.key_info().mask_chip_key());
    assert_eq!(report.key_info().signing_key(), SigningKey::Vcek);
    assert_eq!(report.chip_id(), *chip.id().as_bytes());
    assert_eq!(report.current_tcb(), tcb);
    assert_eq!(report.reported_tcb(), tcb);
    assert_eq!(report.committed_tcb(), tcb);
    assert_eq!(report.launch_tcb(), tcb);
    assert_eq!(report.cpuid(), Some((0x19, 0x01, 0x01)));
    assert_eq!(report.current_version(), chip.config().firmware);
    assert_eq!(report.committed_version(), chip.config().firmware);
    assert_eq!(report.platform_info().0, chip.config().platform_info);
    assert_eq!(report.launch_mit_vector(), Some(0));
    assert_eq!(report.current_mit_vector(), Some(chip.config().mit_vector));
}

#[test]
fn versions_two_and_three_are_selectable() {
    let sim = sim();
    let mut req = request();
    req.version = ReportVersion::V2;
    let v2 = sim.report(&req).unwrap();
    assert_eq!(v2.version(), 2);
    assert_eq!(v2.cpuid(), None);
    assert_eq!(v2.launch_mit_vector(), None);
    req.version = ReportVersion::V3;
    let v3 = sim.report(&req).unwrap();
    assert_eq!(v3.version(), 3);
    assert_eq!(v3.cpuid(), Some((0x19, 0x01, 0x01)));
    assert_eq!(v3.current_mit_vector(), None);
    for report in [v2, v3] {
        assert!(openssl_verifies(
            &report,
            report.signed_bytes(),
            sim.default_chip().vcek_der()
        ));
    }
}

#[test]
fn masked_chip_id_is_zero_and_flagged() {
    let mut req = request();
    req.mask_chip_id = true;
    let report = sim().report(&req).unwrap();
    assert_eq!(report.chip_id(), [0; 64]);
    assert!(report.key_info().mask_chip_key());
}

#[test]
fn report_id_is_stable_per_guest_and_differs_between_guests() {
    let sim = sim();
    let req = request();
    let a = sim.report(&req).unwrap();
    let b = sim.report(&req).unwrap();
    assert_eq!(a.report_id(), b.report_id());
    let other = sim
        .report(&ReportRequest::new(guest(), req.report_data))
        .unwrap();
    assert_ne!(a.report_id(), other.report_id());
}

#[test]
fn refuses_vmpls_the_requester_may_not_ask_for() {
    let sim = sim();
    let mut req = request();
    req.vmpl = 4;
    assert!(matches!(
        sim.report(&req),
        Err(SignError::VmplOutOfRange(4))
    ));
    req.guest.vmpl = 2;
    req.vmpl = 1;
    assert!(matches!(
        sim.report(&req),
        Err(SignError::VmplBelowGuest {
            requested: 1,
            guest: 2
        })
    ));
    req.vmpl = 3;
    assert_eq!(sim.report(&req).unwrap().vmpl(), 3);
}

#[test]
fn reports_from_a_reopened_home_verify_with_the_same_vcek() {
    let reopened = Simulator::open_or_create(crate::support::home(), Product::Milan).unwrap();
    let report = reopened.report(&request()).unwrap();
    assert_eq!(
        reopened.default_chip().vcek_der(),
        sim().default_chip().vcek_der()
    );
    assert!(openssl_verifies(
        &report,
        report.signed_bytes(),
        sim().default_chip().vcek_der()
    ));
}
