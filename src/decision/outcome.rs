//! What became of one image: its scans judged against the namespace's limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::domain::limits::LimitKey;
use crate::domain::summary::{ScanStatus, ScanSummary, SeverityCounts};
use crate::policy::{Limit, NamespacePolicy, Violation, judge};

/// What became of one image.
#[derive(Debug, Clone)]
pub(crate) enum ImageOutcome {
    /// Matched an exempt image pattern.
    Exempt,
    Passed {
        digest: String,
        /// The counts judged (the worst per severity over an index's platforms).
        counts: SeverityCounts,
        unenforceable: Vec<Unenforceable>,
        notes: Vec<String>,
    },
    OverLimit {
        digest: String,
        counts: SeverityCounts,
        violations: Vec<PlatformViolation>,
        unenforceable: Vec<Unenforceable>,
        notes: Vec<String>,
    },
    Unscanned {
        digest: Option<String>,
        reason: String,
    },
    NotFound {
        message: String,
    },
    BackendError {
        message: String,
    },
    Invalid {
        message: String,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct PlatformViolation {
    pub violation: Violation,
    /// For a multi-arch image judged by its platform manifests: the platform whose count this is.
    pub platform: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Unenforceable {
    pub limit: Limit,
    pub scanner: &'static str,
}

impl ImageOutcome {
    /// The image's digest, when it was resolved.
    pub(crate) fn digest(&self) -> Option<&str> {
        match self {
            ImageOutcome::Passed { digest, .. } | ImageOutcome::OverLimit { digest, .. } => {
                Some(digest)
            }
            ImageOutcome::Unscanned { digest, .. } => digest.as_deref(),
            _ => None,
        }
    }

    /// Finished scans (one, or one per platform of an index) judged under the
    /// namespace's rules, after `max-scan-age`; for each violated limit the platform
    /// with the worst count.
    pub(crate) fn of_scans(
        policy: &NamespacePolicy,
        digest: String,
        scans: &[(Option<String>, Arc<ScanSummary>)],
        now: time::OffsetDateTime,
    ) -> ImageOutcome {
        let mut age_notes = Vec::new();
        if let Some(max_age) = policy.max_scan_age {
            for (_, summary) in scans {
                match summary.finished_at {
                    Some(finished) if now - finished > max_age => {
                        return ImageOutcome::Unscanned {
                            digest: Some(digest),
                            reason: format!(
                                "the {} scan finished {}, longer ago than max-scan-age {}",
                                summary.scanner,
                                finished.date(),
                                humantime::format_duration(max_age)
                            ),
                        };
                    }
                    Some(_) => {}
                    None => age_notes.push(format!(
                        "max-scan-age could not be applied: the {} scanner does not say when its scan finished",
                        summary.scanner
                    )),
                }
            }
        }
        let mut outcome = worst_over_platforms(policy, digest, scans, now);
        if let ImageOutcome::Passed { notes, .. } | ImageOutcome::OverLimit { notes, .. } =
            &mut outcome
        {
            age_notes.dedup();
            notes.extend(age_notes);
        }
        outcome
    }

    /// An image whose scan is missing, running or failed.
    pub(crate) fn of_unfinished(digest: &str, summary: &ScanSummary) -> ImageOutcome {
        let reason = match summary.status {
            ScanStatus::Scanning => format!(
                "the {} scan of this image is not finished yet",
                summary.scanner
            ),
            ScanStatus::Failed => format!("the {} scan of this image failed", summary.scanner),
            _ => format!("{} has no scan of this image", summary.scanner),
        };
        let reason = match &summary.note {
            Some(note) => format!("{reason} ({note})"),
            None => reason,
        };
        ImageOutcome::Unscanned {
            digest: Some(digest.to_string()),
            reason,
        }
    }
}

fn worst_over_platforms(
    policy: &NamespacePolicy,
    digest: String,
    scans: &[(Option<String>, Arc<ScanSummary>)],
    now: time::OffsetDateTime,
) -> ImageOutcome {
    let mut worst: BTreeMap<LimitKey, PlatformViolation> = BTreeMap::new();
    let mut counts: Option<SeverityCounts> = None;
    let mut unenforceable = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (platform, summary) in scans {
        counts = Some(match counts {
            Some(c) => c.worst(&summary.counts),
            None => summary.counts,
        });
        let j = judge(policy, summary, now);
        for note in j.notes {
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
        for violation in j.violations {
            let replace = worst
                .get(&violation.key)
                .is_none_or(|w| w.violation.count < violation.count);
            if replace {
                worst.insert(
                    violation.key,
                    PlatformViolation {
                        violation,
                        platform: platform.clone(),
                    },
                );
            }
        }
        for limit in j.unenforceable {
            if !unenforceable
                .iter()
                .any(|u: &Unenforceable| u.limit.key == limit.key)
            {
                unenforceable.push(Unenforceable {
                    limit,
                    scanner: summary.scanner,
                });
            }
        }
    }
    let counts = counts.unwrap_or_default();
    if worst.is_empty() {
        ImageOutcome::Passed {
            digest,
            counts,
            unenforceable,
            notes,
        }
    } else {
        ImageOutcome::OverLimit {
            digest,
            counts,
            violations: worst.into_values().collect(),
            unenforceable,
            notes,
        }
    }
}
