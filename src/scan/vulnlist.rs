//! Vulnerability lists read from a scanner's detail call (Harbor's report, ACR's
//! ListRepoTagScanResult), attached to a summary only when they agree with its counts.
//!
//! Why the agreement check: with `count: fixable`, `allow-cves` or `grace-days` the
//! policy recounts from the list instead of the summary's counts. A list that is
//! shorter than the counts (a capped read, a report of another scan type) would then
//! let vulnerabilities slip through, so such a list is dropped and the rules report
//! that they could not be applied, as they do without a list.

use std::future::Future;
use std::time::Duration;

use crate::domain::summary::{ScanSummary, Severity, SeverityCounts, Vulnerability};
use crate::image::ImageRef;

/// Most entries kept per digest: a summary is cached with its list, and a cache of
/// 100 000 summaries must stay bounded. Images with more are judged on counts alone.
pub const MAX_ENTRIES: usize = 2_000;

/// The same severities known as in `counts`, all zero: ACR's missing critical stays
/// `None` in counts derived from its list.
fn zero_like(counts: &SeverityCounts) -> SeverityCounts {
    let mut out = SeverityCounts::default();
    for s in Severity::ALL {
        *out.slot(s) = counts.get(s).map(|_| 0);
    }
    out
}

/// Fixable counts of a summary that has no vulnerability at all.
pub(crate) fn no_fixable(counts: &SeverityCounts) -> SeverityCounts {
    zero_like(counts)
}

/// Sets the summary's list and its per-severity fixable counts (known only when the
/// scanner said, for every entry, whether a fix exists). The list must count exactly
/// what the summary counts, severity by severity; otherwise it is refused with the
/// reason and the summary is left as it was.
pub fn attach(summary: &mut ScanSummary, list: Vec<Vulnerability>) -> Result<(), String> {
    if list.len() > MAX_ENTRIES {
        return Err(format!(
            "{} vulnerabilities, more than the {MAX_ENTRIES} kept per image",
            list.len()
        ));
    }
    let mut listed = zero_like(&summary.counts);
    let mut fixable = zero_like(&summary.counts);
    let mut fix_known = true;
    for v in &list {
        listed.bump(v.severity);
        match v.fixable {
            Some(true) => fixable.bump(v.severity),
            Some(false) => {}
            None => fix_known = false,
        }
    }
    if listed != summary.counts {
        return Err(format!(
            "the list ({}) does not match the summary's counts ({})",
            describe(&listed),
            describe(&summary.counts)
        ));
    }
    summary.fixable = fix_known.then_some(fixable);
    summary.vulnerabilities = list;
    Ok(())
}

/// Reads a summary's list with `read`, bounded by `timeout`, and attaches it. A summary
/// without vulnerabilities needs no call; one with more than the cap is not read. A
/// list that cannot be had or used is logged, and the summary keeps its counts: the
/// rules that need the list then say they could not be applied.
pub async fn fill(
    summary: &mut ScanSummary,
    image: &ImageRef,
    timeout: Duration,
    read: impl Future<Output = Result<Vec<Vulnerability>, String>>,
) {
    let total = summary.counts.total();
    if total == 0 {
        summary.fixable = Some(no_fixable(&summary.counts));
        return;
    }
    let result = if total > MAX_ENTRIES as u64 {
        Err(format!(
            "{total} vulnerabilities, more than the {MAX_ENTRIES} kept per image; not read"
        ))
    } else {
        // One time limit for the whole read, pages and retries included: a slow list
        // adds at most that to the lookup, and the counts stay.
        match tokio::time::timeout(timeout, read).await {
            Err(_) => Err(format!("no complete vulnerability list within {timeout:?}")),
            Ok(listed) => listed,
        }
        .and_then(|list| attach(summary, list))
    };
    if let Err(error) = result {
        tracing::warn!(
            scanner = summary.scanner,
            image = %image,
            %error,
            "vulnerability list not used: count: fixable, allow-cves and grace-days \
             are reported as not applied for this image"
        );
    }
}

/// `high 2, medium 1` (severities the scanner reports).
fn describe(counts: &SeverityCounts) -> String {
    let parts: Vec<String> = Severity::ALL
        .iter()
        .filter_map(|s| counts.get(*s).map(|n| format!("{s} {n}")))
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::summary::ScanStatus;

    fn vuln(id: &str, severity: Severity, fixable: Option<bool>) -> Vulnerability {
        Vulnerability {
            id: id.into(),
            severity,
            fixable,
            published: None,
        }
    }

    fn acr_like(high: u64, low: u64) -> ScanSummary {
        let mut s = ScanSummary::status_only("acr", ScanStatus::Complete);
        s.counts = SeverityCounts {
            critical: None,
            high: Some(high),
            medium: Some(0),
            low: Some(low),
            unknown: Some(0),
        };
        s
    }

    #[test]
    fn a_matching_list_gives_fixable_counts_of_the_same_shape() {
        let mut s = acr_like(2, 1);
        attach(
            &mut s,
            vec![
                vuln("CVE-1", Severity::High, Some(true)),
                vuln("CVE-2", Severity::High, Some(false)),
                vuln("CVE-3", Severity::Low, Some(true)),
            ],
        )
        .unwrap();
        let f = s.fixable.unwrap();
        assert_eq!(f.critical, None, "no critical level, not zero");
        assert_eq!((f.high, f.medium, f.low), (Some(1), Some(0), Some(1)));
        assert_eq!(s.vulnerabilities.len(), 3);
    }

    #[test]
    fn unknown_fix_state_leaves_fixable_counts_unknown() {
        let mut s = acr_like(1, 0);
        attach(&mut s, vec![vuln("CVE-1", Severity::High, None)]).unwrap();
        assert_eq!(s.fixable, None);
        assert_eq!(s.vulnerabilities.len(), 1);
    }

    #[test]
    fn a_list_that_disagrees_is_refused_and_changes_nothing() {
        let mut s = acr_like(2, 0);
        let err = attach(&mut s, vec![vuln("CVE-1", Severity::High, Some(true))]).unwrap_err();
        assert!(err.contains("high 1") && err.contains("high 2"), "{err}");
        // A severity the summary does not report (critical on ACR) is a mismatch too.
        let err = attach(
            &mut s,
            vec![
                vuln("CVE-1", Severity::High, Some(true)),
                vuln("CVE-2", Severity::Critical, Some(true)),
            ],
        )
        .unwrap_err();
        assert!(err.contains("critical 1"), "{err}");
        assert!(s.vulnerabilities.is_empty());
        assert_eq!(s.fixable, None);
    }

    #[test]
    fn too_long_a_list_is_refused() {
        let mut s = acr_like(MAX_ENTRIES as u64 + 1, 0);
        let list = (0..=MAX_ENTRIES)
            .map(|i| vuln(&format!("CVE-{i}"), Severity::High, Some(true)))
            .collect();
        assert!(attach(&mut s, list).unwrap_err().contains("more than"));
        assert!(s.vulnerabilities.is_empty());
    }
}
