//! GitHub deliveries: the first byte picks the event, the rest is the body.
#![no_main]

use gateway::webhooks::{GITHUB_EVENTS, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&selector, body)) = data.split_first() {
        let _ = parse("github", slipway_fuzz::pick(GITHUB_EVENTS, selector), body);
    }
});
