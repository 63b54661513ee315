//! A scanner's answer in vulngate's own scale: severities, counts and the summary.

use std::collections::BTreeMap;
use std::fmt;

use time::OffsetDateTime;

/// Severities in vulngate's own scale; every scanner maps onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Unknown,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Unknown => "unknown",
        }
    }

    /// Parses the spellings scanners use (`CRITICAL`, `High`, `negligible`...).
    pub(crate) fn parse_loose(s: &str) -> Severity {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" | "negligible" => Severity::Low,
            _ => Severity::Unknown,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts per severity. `None` means the scanner does not report that severity
/// (ACR has no critical level), which is not the same as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeverityCounts {
    pub critical: Option<u64>,
    pub high: Option<u64>,
    pub medium: Option<u64>,
    pub low: Option<u64>,
    pub unknown: Option<u64>,
}

impl SeverityCounts {
    /// All five severities known, all zero.
    pub fn zero() -> Self {
        SeverityCounts {
            critical: Some(0),
            high: Some(0),
            medium: Some(0),
            low: Some(0),
            unknown: Some(0),
        }
    }

    pub fn get(&self, severity: Severity) -> Option<u64> {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Unknown => self.unknown,
        }
    }

    pub fn slot(&mut self, severity: Severity) -> &mut Option<u64> {
        match severity {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Unknown => &mut self.unknown,
        }
    }

    /// Adds one to a severity, making it known.
    pub fn bump(&mut self, severity: Severity) {
        let slot = self.slot(severity);
        *slot = Some(slot.unwrap_or(0).saturating_add(1));
    }

    /// Sum of the severities the scanner reports.
    pub fn total(&self) -> u64 {
        Severity::ALL
            .iter()
            .filter_map(|s| self.get(*s))
            .fold(0u64, |a, b| a.saturating_add(b))
    }

    /// The worse of two count sets, severity by severity (for multi-arch images).
    pub fn worst(&self, other: &SeverityCounts) -> SeverityCounts {
        let mut out = SeverityCounts::default();
        for s in Severity::ALL {
            *out.slot(s) = match (self.get(s), other.get(s)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        out
    }
}

/// Counts beyond CVE severities that some scanners have (Security Center).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExtraCount {
    MaliciousFiles,
    BaselineRisks,
    ApplicationVulnerabilities,
}

impl ExtraCount {
    pub const ALL: [ExtraCount; 3] = [
        ExtraCount::MaliciousFiles,
        ExtraCount::BaselineRisks,
        ExtraCount::ApplicationVulnerabilities,
    ];

    /// The suffix of its namespace annotation (`vulngate.io/max-<key>`).
    pub fn key(self) -> &'static str {
        match self {
            ExtraCount::MaliciousFiles => "malicious-files",
            ExtraCount::BaselineRisks => "baseline-risks",
            ExtraCount::ApplicationVulnerabilities => "app-vulnerabilities",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStatus {
    Complete,
    Scanning,
    NotScanned,
    Failed,
}

impl ScanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Complete => "complete",
            ScanStatus::Scanning => "scanning",
            ScanStatus::NotScanned => "not_scanned",
            ScanStatus::Failed => "failed",
        }
    }

    /// A scan that may still finish: cached only briefly.
    pub(crate) fn is_pending(self) -> bool {
        !matches!(self, ScanStatus::Complete)
    }
}

/// One vulnerability, reduced to what policy rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vulnerability {
    pub id: String,
    pub severity: Severity,
    /// `Some(true)` when a fixed version exists; `None` when the scanner does not say.
    pub fixable: Option<bool>,
    pub published: Option<OffsetDateTime>,
}

/// The normalized scan summary of one image digest, whatever scanner produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSummary {
    /// Name of the scanner kind (`file`, `acr`, `sas`, `hss`, `harbor`).
    pub scanner: &'static str,
    pub status: ScanStatus,
    pub counts: SeverityCounts,
    /// Counts of vulnerabilities with a fix available, where the scanner knows them.
    pub fixable: Option<SeverityCounts>,
    pub extra: BTreeMap<ExtraCount, u64>,
    pub finished_at: Option<OffsetDateTime>,
    /// Vulnerability list where the scanner has one (empty otherwise).
    pub vulnerabilities: Vec<Vulnerability>,
    /// For an unfinished scan, what the response should add to its status (a scan
    /// that was not asked for, and why).
    pub note: Option<String>,
}

impl ScanSummary {
    /// A summary that only carries a status (not scanned, still scanning, failed).
    pub fn status_only(scanner: &'static str, status: ScanStatus) -> Self {
        ScanSummary {
            scanner,
            status,
            counts: SeverityCounts::default(),
            fixable: None,
            extra: BTreeMap::new(),
            finished_at: None,
            vulnerabilities: Vec::new(),
            note: None,
        }
    }

    /// A status with what the response should add to it.
    pub(crate) fn status_with_note(
        scanner: &'static str,
        status: ScanStatus,
        note: String,
    ) -> Self {
        ScanSummary {
            note: Some(note),
            ..ScanSummary::status_only(scanner, status)
        }
    }
}
