//! Answers of the scanners' APIs, as a compromised or broken endpoint could send them.
//! The first byte picks the answer (and the reading the scanner applies to it), the
//! rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vulngate::scan::{acr, harbor, hss, sas, vulnlist};
use vulngate::domain::summary::{ScanStatus, Severity};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let json = || serde_json::from_slice::<serde_json::Value>(body).ok();
    match which % 6 {
        // ACR GetRepoTagScanSummary
        0 => {
            if let Some(counts) = json().as_ref().and_then(acr::counts_from_summary) {
                assert_eq!(counts.critical, None, "ACR has no critical level");
                let _ = counts.total();
            }
        }
        // ACR ListRepoTagScanResult page, attached to a summary of its own counts
        1 => {
            if let Some(Ok((list, _total))) = json().as_ref().map(acr::scan_result_page) {
                attach_checked(list);
            }
        }
        // Security Center: task list and scan counts
        2 => {
            if let Some(answer) = json() {
                let _ = sas::task_status(&answer, "ab12");
                for (_, n) in sas::extras_from_scan_count(&answer) {
                    let _ = n.checked_add(0);
                }
            }
        }
        // Harbor artifact with scan overview
        3 => {
            if let Ok(summary) = harbor::summary_of_artifact(body) {
                if summary.status != ScanStatus::Complete {
                    assert_eq!(summary.counts.total(), 0);
                }
            }
        }
        // Harbor vulnerability report
        4 => {
            if let Ok(list) = harbor::parse_report(body) {
                attach_checked(list);
            }
        }
        // HSS: a record's status and the four list totals
        _ => {
            let text = String::from_utf8_lossy(body);
            let _ = hss::map_scan_status(&text);
            let n: Vec<u64> = body
                .chunks(8)
                .map(|c| c.iter().fold(0u64, |a, b| a << 8 | u64::from(*b)))
                .collect();
            if let [high, medium, low, all, ..] = n[..] {
                let counts = hss::counts_from_totals(high, medium, low, all);
                assert_eq!(counts.high, Some(high));
                assert!(counts.unknown.is_some_and(|u| u <= all));
            }
        }
    }
});

/// A list attached to a summary counting exactly its entries is accepted (when within
/// the cap), and its fixable counts never exceed the counts.
fn attach_checked(list: Vec<vulngate::domain::summary::Vulnerability>) {
    let mut summary = vulngate::domain::summary::ScanSummary::status_only("fuzz", ScanStatus::Complete);
    summary.counts = vulngate::domain::summary::SeverityCounts::zero();
    for v in &list {
        summary.counts.bump(v.severity);
    }
    let within_cap = list.len() <= vulnlist::MAX_ENTRIES;
    let attached = vulnlist::attach(&mut summary, list);
    assert_eq!(attached.is_ok(), within_cap, "{attached:?}");
    if let Some(fixable) = summary.fixable {
        for s in Severity::ALL {
            assert!(fixable.get(s).unwrap_or(0) <= summary.counts.get(s).unwrap_or(0));
        }
    }
}
