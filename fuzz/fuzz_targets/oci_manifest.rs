//! OCI image manifests, indexes and image configs as pulled from a registry.
#![no_main]

use a3s_image::oci::{Index, Manifest};
use a3s_image::ImageConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Manifest>(data);
    let _ = serde_json::from_slice::<Index>(data);
    let _ = serde_json::from_slice::<ImageConfig>(data);
});
