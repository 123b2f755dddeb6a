//! A duration as a workflow writes it (`10m`, `300ms`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        slipway_fuzz::check_duration(s);
    }
});
