//! GitLab deliveries: the first byte picks the event, the rest is the body.
#![no_main]

use gateway::webhooks::{GITLAB_EVENTS, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&selector, body)) = data.split_first() {
        let _ = parse("gitlab", slipway_fuzz::pick(GITLAB_EVENTS, selector), body);
    }
});
