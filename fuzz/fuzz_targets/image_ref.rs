//! An image reference (`[registry/]name[:tag][@digest]`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        slipway_fuzz::check_image_ref(s);
    }
});
