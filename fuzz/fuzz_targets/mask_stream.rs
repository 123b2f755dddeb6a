//! A secret and its base64 form in a text cut into chunks anywhere.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway_fuzz::MaskCase;

fuzz_target!(|case: MaskCase| {
    slipway_fuzz::check_mask(&case);
});
