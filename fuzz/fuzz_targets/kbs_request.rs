//! KBS request bodies as the broker decodes them: `/auth` requests, `/attest` attestations
//! (with their TEE public key) and resource paths.
#![no_main]

use a3s_kbs::protocol::{Attestation, Request, ResourcePath};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Request>(data);
    let _ = serde_json::from_slice::<Attestation>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let mut parts = text.splitn(3, '/');
        if let (Some(repo), Some(kind), Some(tag)) = (parts.next(), parts.next(), parts.next()) {
            let _ = ResourcePath::new(repo, kind, tag);
        }
    }
});
