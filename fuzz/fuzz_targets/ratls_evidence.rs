//! RA-TLS evidence: the CBOR of the certificate extension, its claims and endorsements.
#![no_main]

use a3s_ratls::evidence::{parse_endorsements, Claims, Evidence};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Evidence::parse(data);
    let _ = Claims::parse(data);
    let _ = parse_endorsements(data);
});
