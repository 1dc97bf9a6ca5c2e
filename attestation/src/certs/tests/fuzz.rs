//! Parsing arbitrary or mutated bytes never panics (and never loops forever).

use proptest::prelude::*;

use super::*;
use crate::certs::Crl;

fn seeds() -> Vec<Vec<u8>> {
    vec![
        fixture("reports/oak-turin-oc-vcek.der"),
        fixture("reports/trustee-test-vlek.der"),
        fixture("reports/trustee-test-vcek-invalid-new.der"),
        fixture("amd-roots/milan_ark.pem"),
        fixture("reports/sev-cert-chain-turin.pem"),
        testdata("sim-crl-ask-revoked.der"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Certificate::parse_all(&bytes);
        let _ = Certificate::from_der(&bytes);
        let _ = Crl::from_der(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        seed in 0_usize..6,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = seeds().swap_remove(seed);
        for (index, value) in edits {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(certs) = Certificate::parse_all(&bytes) {
            for cert in &certs {
                let _ = cert.verify_issued(cert, AT);
            }
        }
        let _ = Crl::from_der(&bytes);
    }
}
