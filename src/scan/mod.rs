//! The normalized scan summary and the trait every scanner implements.

pub mod acr;
pub mod backoff;
pub mod cache;
pub mod digest_key;
pub mod file;
pub mod harbor;
pub mod hss;
pub mod rate_limit;
pub mod sas;
pub mod vulnlist;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::config::{HostPattern, RegistryRoute, ScannerConfig};
use crate::image::ImageRef;

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
    pub fn parse_loose(s: &str) -> Severity {
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
    pub fn is_pending(self) -> bool {
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
    pub fn status_with_note(scanner: &'static str, status: ScanStatus, note: String) -> Self {
        ScanSummary {
            note: Some(note),
            ..ScanSummary::status_only(scanner, status)
        }
    }
}

/// What a scanner is asked about: the normalized image and the digest it resolved to.
#[derive(Debug, Clone)]
pub struct ScanTarget<'a> {
    pub image: &'a ImageRef,
    /// `sha256:<hex>`
    pub digest: &'a str,
}

/// A scanner failed to answer; decided by the `onError` rule.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Network error, 5xx, timeout, throttling that outlived the deadline.
    #[error("{scanner} unavailable: {message}")]
    Unavailable {
        scanner: &'static str,
        message: String,
    },
    /// Wrong credentials, missing permission, bad endpoint: an operator must act.
    #[error("{scanner} configuration error: {message}")]
    Config {
        scanner: &'static str,
        message: String,
    },
}

/// A source of scan summaries, routed to by registry host.
#[async_trait]
pub trait Scanner: Send + Sync {
    /// The scanner kind (`file`, `acr`, ...), used in messages and metrics.
    fn kind(&self) -> &'static str;

    /// The scan summary of one digest. An image the scanner does not know is
    /// `Ok` with status `NotScanned`, not an error.
    async fn summary(&self, target: &ScanTarget<'_>) -> Result<ScanSummary, ScanError>;

    /// The same summary behind an `Arc`: what the summary cache keeps. A scanner that
    /// already holds its summaries in memory hands out its own, so caching costs no copy.
    async fn summary_shared(&self, target: &ScanTarget<'_>) -> Result<Arc<ScanSummary>, ScanError> {
        self.summary(target).await.map(Arc::new)
    }

    /// A digest the scanner itself knows for a tag (a Trivy report names its tags).
    /// Used only when the tag is not resolved on a registry.
    fn digest_for_tag(&self, _image: &ImageRef) -> Option<String> {
        None
    }
}

/// Builds the scanner a route names. Errors say what to fix in the config
/// (a missing credential file, a bad endpoint), prefixed by the kind.
pub fn build_scanner(config: &ScannerConfig) -> Result<Arc<dyn Scanner>, String> {
    match config {
        ScannerConfig::File(f) => {
            let scanner = Arc::new(file::FileScanner::load(&f.path).map_err(|e| e.to_string())?);
            if !f.reload_interval.is_zero() {
                scanner.watch(f.reload_interval);
            }
            Ok(scanner)
        }
        ScannerConfig::Hss(c) => hss::HssScanner::new(c)
            .map(|s| Arc::new(s) as Arc<dyn Scanner>)
            .map_err(|e| format!("hss: {e}")),
        ScannerConfig::Harbor(c) => harbor::HarborScanner::new(c)
            .map(|s| Arc::new(s) as Arc<dyn Scanner>)
            .map_err(|e| format!("harbor: {e}")),
        ScannerConfig::Acr(c) => {
            let scanner = acr::AcrScanner::new(c).map_err(|e| format!("acr scanner: {e}"))?;
            tracing::info!(
                credentials = scanner.credential_source(),
                "acr scanner ready"
            );
            Ok(Arc::new(scanner))
        }
        ScannerConfig::Sas(c) => Ok(Arc::new(
            sas::SasScanner::new(c).map_err(|e| format!("sas scanner: {e}"))?,
        )),
    }
}

/// One route of the config: which scanner holds the images of matching registries.
pub struct Route {
    pub index: usize,
    pub pattern: HostPattern,
    pub scanner: Arc<dyn Scanner>,
}

/// Picks the scanner for an image by its registry host; the first match wins.
pub struct ScannerRouter {
    routes: Vec<Route>,
}

impl ScannerRouter {
    pub fn from_config(routes: &[RegistryRoute]) -> Result<ScannerRouter, String> {
        let mut built = Vec::with_capacity(routes.len());
        for (index, route) in routes.iter().enumerate() {
            let scanner = build_scanner(&route.scanner)
                .and_then(|s| {
                    rate_limit::RateLimited::wrap(
                        s,
                        route.max_requests_per_second,
                        route.max_concurrent,
                    )
                })
                .map_err(|e| format!("registries[{index}] ({}): {e}", route.host_match.0))?;
            built.push(Route {
                index,
                pattern: route.host_match.clone(),
                scanner,
            });
        }
        Ok(ScannerRouter { routes: built })
    }

    pub fn from_routes(routes: Vec<Route>) -> ScannerRouter {
        ScannerRouter { routes }
    }

    /// The route for an image: matched on `host:port` as written, then on the host alone.
    pub fn route(&self, image: &ImageRef) -> Option<&Route> {
        self.position(image).and_then(|p| self.at(p))
    }

    /// Where [`ScannerRouter::route`]'s answer sits, to be remembered per reference.
    pub fn position(&self, image: &ImageRef) -> Option<usize> {
        let registry = lower(&image.registry);
        let host = lower(image.host());
        self.routes
            .iter()
            .position(|r| r.pattern.matches(&registry) || r.pattern.matches(&host))
    }

    pub fn at(&self, position: usize) -> Option<&Route> {
        self.routes.get(position)
    }
}

/// Host names are nearly always written in lower case already: no copy then.
fn lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}
