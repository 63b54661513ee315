//! What counts: all vulnerabilities, or only fixable ones; minus accepted ids and
//! those still in their grace period. Where the scanner lacks the data a rule
//! needs, the rule is reported as not applied and everything counts.

use time::{Duration, OffsetDateTime};

use super::NamespacePolicy;
use crate::domain::rules::CountRule;
use crate::domain::summary::{ScanSummary, SeverityCounts};

/// Counts of a summary under the namespace's counting rules; `notes` gets what was
/// left out and what could not be applied.
pub(crate) fn effective_counts(
    policy: &NamespacePolicy,
    summary: &ScanSummary,
    now: OffsetDateTime,
    notes: &mut Vec<String>,
) -> SeverityCounts {
    let today = now.date();
    let allow_active = policy.allow_cves.iter().any(|e| e.is_active(today));
    let fixable_only = policy.count == CountRule::Fixable;
    let grace = policy.grace_days.filter(|d| *d > 0);
    if !(allow_active || fixable_only || grace.is_some()) || summary.counts.total() == 0 {
        return summary.counts;
    }
    let scanner = summary.scanner;
    if summary.vulnerabilities.is_empty() {
        // No list to filter: fixable counts may still be known.
        let mut counts = summary.counts;
        if fixable_only {
            match summary.fixable {
                Some(fixable) => counts = fixable,
                None => notes.push(format!(
                    "count: fixable could not be applied: the {scanner} scanner does not report fixable vulnerabilities; all are counted"
                )),
            }
        }
        if allow_active {
            notes.push(format!(
                "accepted vulnerabilities could not be applied: the {scanner} scanner gives no vulnerability list; all are counted"
            ));
        }
        if grace.is_some() {
            notes.push(format!(
                "the grace period could not be applied: the {scanner} scanner gives no publication dates; all are counted"
            ));
        }
        return counts;
    }

    let mut counts = summary.counts;
    for s in crate::domain::summary::Severity::ALL {
        if let Some(slot) = counts.slot(s).as_mut() {
            *slot = 0;
        }
    }
    let mut accepted = Vec::new();
    let mut in_grace = Vec::new();
    let mut unknown_fix = 0usize;
    let mut undated = 0usize;
    let grace_start = grace.map(|days| now - Duration::days(i64::from(days)));
    for v in &summary.vulnerabilities {
        if let Some(entry) = policy
            .allow_cves
            .iter()
            .find(|e| e.id.eq_ignore_ascii_case(&v.id))
        {
            if entry.is_active(today) {
                accepted.push(format!("{} (accepted by {})", v.id, entry.source));
                continue;
            }
            if let Some(until) = entry.until {
                notes.push(format!(
                    "{} counts again: its acceptance expired on {until}",
                    v.id
                ));
            }
        }
        match (grace_start, v.published) {
            (Some(start), Some(published)) if published > start => {
                in_grace.push(format!(
                    "{} ({}, published {})",
                    v.id,
                    v.severity,
                    published.date()
                ));
                continue;
            }
            (Some(_), None) => undated += 1,
            _ => {}
        }
        if fixable_only {
            match v.fixable {
                Some(true) => {}
                Some(false) => continue,
                None => unknown_fix += 1,
            }
        }
        counts.bump(v.severity);
    }
    if !accepted.is_empty() {
        notes.push(format!("not counted: {}", accepted.join(", ")));
    }
    if !in_grace.is_empty() {
        notes.push(format!(
            "not counted yet, within the {}-day grace period: {}",
            grace.unwrap_or(0),
            in_grace.join(", ")
        ));
    }
    if undated > 0 {
        // ACR and Harbor lists carry no publication dates.
        notes.push(format!(
            "the grace period could not be applied to {undated} vulnerabilities: the {scanner} scanner gives no publication dates; they are counted"
        ));
    }
    if unknown_fix > 0 {
        notes.push(format!(
            "count: fixable: the {scanner} scanner does not say whether {unknown_fix} vulnerabilities are fixable; they are counted"
        ));
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyConfig;
    use crate::domain::summary::{ScanStatus, Severity, Vulnerability};
    use crate::policy::Source;
    use crate::policy::allowlist::parse_list;
    use time::macros::datetime;

    fn summary(vulns: &[(&str, Severity, Option<bool>, OffsetDateTime)]) -> ScanSummary {
        let mut s = ScanSummary::status_only("file", ScanStatus::Complete);
        s.counts = SeverityCounts::zero();
        for (id, sev, fix, published) in vulns {
            s.counts.bump(*sev);
            s.vulnerabilities.push(Vulnerability {
                id: id.to_string(),
                severity: *sev,
                fixable: *fix,
                published: Some(*published),
            });
        }
        s
    }

    #[test]
    fn fixable_accepted_and_grace() {
        let now = datetime!(2026-11-23 12:00 UTC);
        let old = datetime!(2025-01-01 0:00 UTC);
        let s = summary(&[
            ("CVE-1", Severity::High, Some(true), old),
            ("CVE-2", Severity::High, Some(false), old),
            (
                "CVE-3",
                Severity::High,
                Some(true),
                datetime!(2026-11-20 0:00 UTC),
            ),
            ("CVE-4", Severity::Critical, Some(true), old),
            ("CVE-5", Severity::Critical, Some(true), old),
        ]);
        let mut policy = NamespacePolicy::resolve(&PolicyConfig::default(), &[], "ns", None, now);
        policy.count = CountRule::Fixable;
        policy.grace_days = Some(14);
        let (entries, _) = parse_list("CVE-4, CVE-5 until 2026-11-01", &Source::ClusterDefault);
        policy.allow_cves = entries;
        let mut notes = Vec::new();
        let counts = effective_counts(&policy, &s, now, &mut notes);
        assert_eq!(counts.high, Some(1), "CVE-2 unfixable, CVE-3 in grace");
        assert_eq!(counts.critical, Some(1), "CVE-4 accepted, CVE-5 expired");
        let notes = notes.join("\n");
        assert!(notes.contains("CVE-5 counts again"), "{notes}");
        assert!(notes.contains("14-day grace period: CVE-3"), "{notes}");
        assert!(
            notes.contains("CVE-4 (accepted by the cluster default)"),
            "{notes}"
        );
    }

    #[test]
    fn a_list_without_dates_says_the_grace_period_was_not_applied() {
        let now = datetime!(2026-11-23 12:00 UTC);
        let mut s = summary(&[("CVE-1", Severity::High, Some(true), now)]);
        s.scanner = "harbor";
        s.vulnerabilities[0].published = None;
        let mut policy = NamespacePolicy::resolve(&PolicyConfig::default(), &[], "ns", None, now);
        policy.grace_days = Some(7);
        let mut notes = Vec::new();
        assert_eq!(effective_counts(&policy, &s, now, &mut notes).high, Some(1));
        assert_eq!(
            notes,
            vec!["the grace period could not be applied to 1 vulnerabilities: the harbor scanner gives no publication dates; they are counted".to_string()]
        );
    }

    #[test]
    fn rules_without_data_count_everything_and_say_so() {
        let now = datetime!(2026-11-23 12:00 UTC);
        let mut s = ScanSummary::status_only("acr", ScanStatus::Complete);
        s.counts.high = Some(4);
        let mut policy = NamespacePolicy::resolve(&PolicyConfig::default(), &[], "ns", None, now);
        policy.count = CountRule::Fixable;
        policy.grace_days = Some(7);
        let mut notes = Vec::new();
        assert_eq!(effective_counts(&policy, &s, now, &mut notes).high, Some(4));
        assert_eq!(notes.len(), 2, "{notes:?}");
    }
}
