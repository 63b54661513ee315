//! The config file (a ConfigMap the chart renders, edited by operators).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vulngate::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::from_yaml(text, Path::new("/etc/vulngate")) {
        assert!(!config.deadline.is_zero());
        assert!(!config.registries.is_empty());
        assert!(config.cache.max_entries > 0);
    }
});
