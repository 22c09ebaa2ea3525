//! Fuzz target: arbitrary bytes as a proxy config file (or a config the
//! control plane sends), through `ProxyConfig::from_json` and, when that
//! accepts it, `gitmesh_proxy::check_config`: the validation and the
//! compilation (routing tables, regexes, header edits, pools) a proxy runs
//! before it swaps a config in. "A bad config never crashes the proxy":
//! every input must end as accepted or as problems, never a panic or a
//! memory blow-up.

#![no_main]

use gitmesh_proxy_config::ProxyConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = ProxyConfig::from_json(data) else {
        return;
    };
    if let Err(invalid) = gitmesh_proxy::check_config(config) {
        assert!(!invalid.problems.is_empty(), "a refusal says why");
    }
});
