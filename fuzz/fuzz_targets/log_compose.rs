//! A task's log composed from steps' chunks, paged anywhere.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway_fuzz::LogCase;

fuzz_target!(|case: LogCase| {
    slipway_fuzz::check_log(&case);
});
