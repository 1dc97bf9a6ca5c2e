//! Sanity checks on KDS documents before they are returned or cached.
//!
//! These checks only establish that a body is the *kind* of document asked for (so that an HTML
//! error page, a truncated download or a proxy's login form never lands in the cache). Whether a
//! certificate is genuine, chains to AMD and matches a report is the verifier's job.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::pem::Pem;

use crate::kds::KdsResource;

/// Number of PEM certificates in a KDS `cert_chain`: ASK (or ASVK), then ARK.
const CHAIN_CERTS: usize = 2;

/// A document that passed [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked {
    /// For a CRL, its nextUpdate (None when absent or not a CRL).
    pub(crate) next_update: Option<SystemTime>,
}

/// Why a body is not the document asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// What was expected.
    pub(crate) what: &'static str,
    /// What is wrong.
    pub(crate) reason: String,
}

/// Checks that `bytes` is plausibly the document `resource` names.
pub(crate) fn check(resource: &KdsResource, bytes: &[u8]) -> Result<Checked, Invalid> {
    let what = expected(resource);
    let fail = |reason: String| Invalid { what, reason };
    if bytes.is_empty() {
        return Err(fail("empty body".to_owned()));
    }
    if looks_like_html(bytes) {
        return Err(fail("body looks like an HTML page".to_owned()));
    }
    match resource {
        KdsResource::Vcek(_) => {
            check_der_certificate(bytes).map_err(fail)?;
            Ok(Checked { next_update: None })
        }
        KdsResource::CertChain { .. } => {
            check_pem_chain(bytes).map_err(fail)?;
            Ok(Checked { next_update: None })
        }
        KdsResource::Crl { .. } => {
            let next_update = check_der_crl(bytes).map_err(fail)?;
            Ok(Checked { next_update })
        }
    }
}

/// What `resource` should look like, for messages.
pub(crate) fn expected(resource: &KdsResource) -> &'static str {
    match resource {
        KdsResource::Vcek(_) => "DER certificate",
        KdsResource::CertChain { .. } => "PEM certificate chain",
        KdsResource::Crl { .. } => "DER CRL",
    }
}

/// Whether a CRL should be refetched: it is older than `max_age` (by `written`, the time it was
/// cached) or its nextUpdate has passed.
pub(crate) fn crl_is_fresh(
    written: SystemTime,
    next_update: Option<SystemTime>,
    now: SystemTime,
    max_age: Duration,
) -> bool {
    // A file from the future (clock change) counts as age 0 rather than stale forever.
    let age = now.duration_since(written).unwrap_or(Duration::ZERO);
    age < max_age && next_update.is_none_or(|next| now < next)
}

fn looks_like_html(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let head: Vec<u8> = bytes[start..]
        .iter()
        .take(64)
        .map(u8::to_ascii_lowercase)
        .collect();
    head.starts_with(b"<!doctype html")
        || head.starts_with(b"<html")
        || head.starts_with(b"<?xml")
        || head.starts_with(b"<head")
        || head.starts_with(b"<body")
}

fn check_der_certificate(bytes: &[u8]) -> Result<(), String> {
    let (rest, _) = x509_parser::parse_x509_certificate(bytes)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    if !rest.is_empty() {
        return Err(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        ));
    }
    Ok(())
}

fn check_pem_chain(bytes: &[u8]) -> Result<(), String> {
    let mut count = 0;
    for (i, block) in Pem::iter_from_buffer(bytes).enumerate() {
        let pem = block.map_err(|e| format!("PEM block {i}: {e}"))?;
        if pem.label != "CERTIFICATE" {
            return Err(format!(
                "PEM block {i} is a {:?}, not a CERTIFICATE",
                pem.label
            ));
        }
        pem.parse_x509()
            .map_err(|e| format!("PEM block {i} is not an X.509 certificate: {e}"))?;
        count += 1;
    }
    if count != CHAIN_CERTS {
        return Err(format!(
            "{count} PEM certificates, expected {CHAIN_CERTS} (ASK or ASVK, then ARK)"
        ));
    }
    Ok(())
}

fn check_der_crl(bytes: &[u8]) -> Result<Option<SystemTime>, String> {
    let (rest, crl) =
        x509_parser::parse_x509_crl(bytes).map_err(|e| format!("not an X.509 CRL: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the CRL", rest.len()));
    }
    Ok(crl.next_update().map(|t| {
        let secs = t.timestamp();
        match u64::try_from(secs) {
            Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
            // Before 1970: long past.
            Err(_) => UNIX_EPOCH,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kds::{TcbSpls, VcekId, VekKind};
    use crate::Product;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/snp");

    fn fixture(rel: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{rel}")).unwrap()
    }

    fn testdata(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/src/kds/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn vcek() -> KdsResource {
        KdsResource::Vcek(VcekId {
            product: Product::Turin,
            chip_id: [1; 64],
            tcb: TcbSpls {
                bl: 1,
                tee: 0,
                snp: 2,
                ucode: 71,
                fmc: Some(0),
            },
        })
    }

    fn chain() -> KdsResource {
        KdsResource::CertChain {
            product: Product::Turin,
            kind: VekKind::Vcek,
        }
    }

    fn crl() -> KdsResource {
        KdsResource::Crl {
            product: Product::Milan,
            kind: VekKind::Vcek,
        }
    }

    #[test]
    fn accepts_every_real_vcek_and_vlek() {
        for f in [
            "reports/oak-milan-oc-release-vcek.der",
            "reports/oak-genoa-oc-vcek.der",
            "reports/oak-turin-oc-vcek.der",
            "reports/sev-vcek-turin.der",
            "reports/trustee-test-vcek.der",
            "reports/trustee-test-vlek.der",
        ] {
            assert!(check(&vcek(), &fixture(f)).is_ok(), "{f}");
        }
    }

    #[test]
    fn accepts_real_chains_including_crlf() {
        for f in [
            "reports/sev-cert-chain-milan.pem",
            "reports/sev-cert-chain-turin.pem",
        ] {
            assert_eq!(
                check(&chain(), &fixture(f)),
                Ok(Checked { next_update: None }),
                "{f}"
            );
        }
    }

    #[test]
    fn rejects_chain_with_wrong_number_of_certificates() {
        let three = fixture("amd-roots/milan_ask_ark_asvk.pem");
        let err = check(&chain(), &three).unwrap_err();
        assert!(err.reason.contains("3 PEM certificates"), "{err:?}");
        let one = fixture("amd-roots/milan_ark.pem");
        assert!(check(&chain(), &one).is_err());
    }

    #[test]
    fn rejects_html_error_pages_for_every_kind() {
        let html = b"\r\n<!DOCTYPE html><html><body>Service Unavailable</body></html>";
        for r in [vcek(), chain(), crl()] {
            let err = check(&r, html).unwrap_err();
            assert!(err.reason.contains("HTML"), "{err:?}");
        }
    }

    #[test]
    fn rejects_truncated_and_padded_der() {
        let der = fixture("reports/oak-turin-oc-vcek.der");
        assert!(check(&vcek(), &der[..der.len() - 1]).is_err());
        let mut padded = der.clone();
        padded.push(0);
        assert!(check(&vcek(), &padded).is_err());
        assert!(check(&vcek(), &[]).is_err());
        // A PEM chain is not a DER certificate, and a certificate is not a CRL.
        assert!(check(&vcek(), &fixture("reports/sev-cert-chain-milan.pem")).is_err());
        assert!(check(&crl(), &der).is_err());
    }

    #[test]
    fn reads_crl_next_update() {
        let checked = check(&crl(), &testdata("crl-next-update-2020.der")).unwrap();
        // 2020-02-01T00:00:00Z, from `openssl crl -text`.
        assert_eq!(
            checked.next_update,
            Some(UNIX_EPOCH + Duration::from_secs(1_580_515_200))
        );
    }

    #[test]
    fn crl_freshness_rule() {
        let day = Duration::from_secs(24 * 3600);
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let hour_ago = now - Duration::from_secs(3600);
        assert!(crl_is_fresh(hour_ago, None, now, day));
        assert!(crl_is_fresh(hour_ago, Some(now + day), now, day));
        assert!(!crl_is_fresh(hour_ago, Some(now), now, day));
        assert!(!crl_is_fresh(now - 2 * day, Some(now + day), now, day));
        assert!(crl_is_fresh(now + day, None, now, day));
        assert!(!crl_is_fresh(now, None, now, Duration::ZERO));
    }
}
