//! Trustee SNP evidence JSON (report plus certificate chain).
#![no_main]

use a3s_attestation::report::trustee::Evidence;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Evidence::from_trustee_json(data);
});
