//! AMD certificates (ARK, ASK, VCEK, VLEK) and CRLs in DER.
#![no_main]

use a3s_attestation::certs::{Certificate, Crl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Certificate::from_der(data);
    let _ = Crl::from_der(data);
});
