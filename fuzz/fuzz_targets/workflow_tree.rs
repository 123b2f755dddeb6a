//! Workflow definitions built as YAML trees from the parser's own keys and
//! meaningful scalars, so that most inputs reach the values' rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway_fuzz::Node;

fuzz_target!(|root: Node| {
    slipway_fuzz::check_workflow(&root.to_yaml());
});
