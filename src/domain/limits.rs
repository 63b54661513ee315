//! Limit keys: what a limit counts.

use std::fmt;

use super::annotations::ANNOTATION_PREFIX;
use super::summary::{ExtraCount, ScanSummary, Severity, SeverityCounts};

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LimitKey {
    Severity(Severity),
    Total,
    Extra(ExtraCount),
}

impl LimitKey {
    pub const ALL: [LimitKey; 9] = [
        LimitKey::Severity(Severity::Critical),
        LimitKey::Severity(Severity::High),
        LimitKey::Severity(Severity::Medium),
        LimitKey::Severity(Severity::Low),
        LimitKey::Severity(Severity::Unknown),
        LimitKey::Total,
        LimitKey::Extra(ExtraCount::MaliciousFiles),
        LimitKey::Extra(ExtraCount::BaselineRisks),
        LimitKey::Extra(ExtraCount::ApplicationVulnerabilities),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitKey::Severity(s) => s.as_str(),
            LimitKey::Total => "total",
            LimitKey::Extra(e) => e.key(),
        }
    }

    pub fn parse(key: &str) -> Option<LimitKey> {
        LimitKey::ALL.into_iter().find(|k| k.as_str() == key)
    }

    pub(crate) fn is_known(key: &str) -> bool {
        LimitKey::parse(key).is_some()
    }

    pub(crate) fn known_list() -> String {
        LimitKey::ALL.map(LimitKey::as_str).join(", ")
    }

    pub fn annotation(self) -> String {
        format!("{ANNOTATION_PREFIX}max-{}", self.as_str())
    }

    /// The count for this key; `None` when the scanner does not report it.
    pub fn count(self, counts: &SeverityCounts, summary: &ScanSummary) -> Option<u64> {
        match self {
            LimitKey::Severity(s) => counts.get(s),
            LimitKey::Total => Some(counts.total()),
            LimitKey::Extra(e) => summary.extra.get(&e).copied(),
        }
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
