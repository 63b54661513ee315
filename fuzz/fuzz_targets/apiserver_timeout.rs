//! The query string of `POST /validate?timeout=...`, written by whoever reaches the port.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vulngate::server::apiserver_timeout;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let _ = apiserver_timeout(query);
});
