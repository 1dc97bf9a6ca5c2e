//! Image layer tars unpacked into a scratch root (whiteouts, links, permissions, paths that
//! try to leave the root).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(root) = tempfile::tempdir() else {
        return;
    };
    let _ = a3s_image::unpack::unpack(data, root.path());
});
