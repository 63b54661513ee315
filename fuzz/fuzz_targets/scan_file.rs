//! Scan reports read by the file scanner: summaries files and Trivy JSON reports,
//! as CI pipelines write them (and as anyone with write access to the volume could).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vulngate::scan::file::FileScanner;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut scanner = FileScanner::default();
    let _ = scanner.add_document(text);
});
