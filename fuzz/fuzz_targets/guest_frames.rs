//! The frames a (possibly hostile) guest sends the host side of the guest channel.
#![no_main]

use a3s_vmm::proto::read_frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    while read_frame(&mut input).is_ok() {}
});
