//! SNP attestation reports as raw bytes or hex: `Report::from_bytes` and `from_bytes_or_hex`.
#![no_main]

use a3s_attestation::Report;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = Report::from_bytes(data) {
        let _ = report.generation_hint();
    }
    let _ = Report::from_bytes_or_hex(data);
});
