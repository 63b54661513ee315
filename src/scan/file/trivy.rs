//! Trivy's JSON report (`trivy image --format json`, SchemaVersion 2), counted as Trivy
//! counts it: one finding per (VulnerabilityID, PkgID, PkgName, InstalledVersion,
//! PkgPath) within a result, and every result's findings added up, as Trivy's table and
//! summary do (pkg/result/filter.go, pkg/report/table).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::KIND;
use super::document::{FileContent, check_digest};
use super::report_error::ReportError;
use crate::domain::digest_key::DigestKey;
use crate::domain::summary::{ScanStatus, ScanSummary, Severity, SeverityCounts, Vulnerability};
use crate::image::ImageRef;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TrivyReport {
    #[allow(dead_code)]
    schema_version: u32,
    #[serde(default)]
    artifact_name: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    metadata: TrivyMetadata,
    #[serde(default)]
    results: Vec<TrivyResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyMetadata {
    #[serde(default)]
    repo_tags: Vec<String>,
    #[serde(default)]
    repo_digests: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyResult {
    // A result without findings has `null` here, not an empty list.
    #[serde(default)]
    vulnerabilities: Option<Vec<TrivyVulnerability>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyVulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: String,
    #[serde(default, rename = "PkgID")]
    pkg_id: String,
    #[serde(default)]
    pkg_name: String,
    #[serde(default)]
    installed_version: String,
    #[serde(default)]
    pkg_path: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    published_date: Option<String>,
}

impl TrivyVulnerability {
    fn has_fix(&self) -> bool {
        self.fixed_version.as_deref().is_some_and(|f| !f.is_empty())
    }
}

/// The summary of a report, under every digest it names.
pub(super) fn into_content(report: TrivyReport) -> Result<FileContent, ReportError> {
    let digests: Vec<&str> = report
        .metadata
        .repo_digests
        .iter()
        .filter_map(|d| d.rsplit_once('@').map(|(_, d)| d))
        .collect();
    if digests.is_empty() {
        let artifact = report
            .artifact_name
            .as_deref()
            .unwrap_or("an unnamed artifact");
        return Err(ReportError::NoRepoDigests {
            artifact: artifact.to_string(),
        });
    }
    for d in &digests {
        check_digest(d)?;
    }
    let vulnerabilities = findings(&report.results);
    let mut counts = SeverityCounts::zero();
    let mut fixable = SeverityCounts::zero();
    for v in &vulnerabilities {
        counts.bump(v.severity);
        if v.fixable == Some(true) {
            fixable.bump(v.severity);
        }
    }
    let mut summary = ScanSummary::status_only(KIND, ScanStatus::Complete);
    summary.counts = counts;
    summary.fixable = Some(fixable);
    summary.vulnerabilities = vulnerabilities;
    summary.finished_at = report
        .created_at
        .as_deref()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());

    let mut content = FileContent::default();
    for tag in &report.metadata.repo_tags {
        if let Ok(parsed) = ImageRef::parse(tag) {
            content.add_tag(&parsed, digests[0]);
        }
    }
    let summary = Arc::new(summary);
    for d in digests {
        content
            .summaries
            .push((DigestKey::new(d), Arc::clone(&summary)));
    }
    Ok(content)
}

/// Every finding Trivy would show. A finding repeated within one result is one
/// finding; of the repeats Trivy keeps the one with a fix, and so fixable stays fixable.
fn findings(results: &[TrivyResult]) -> Vec<Vulnerability> {
    let mut out = Vec::new();
    for result in results {
        let mut seen: HashMap<(&str, &str, &str, &str, &str), usize> = HashMap::new();
        for v in result.vulnerabilities.iter().flatten() {
            let key = (
                v.vulnerability_id.as_str(),
                v.pkg_id.as_str(),
                v.pkg_name.as_str(),
                v.installed_version.as_str(),
                v.pkg_path.as_str(),
            );
            if let Some(&at) = seen.get(&key) {
                if v.has_fix() {
                    out[at] = vulnerability(v);
                }
                continue;
            }
            seen.insert(key, out.len());
            out.push(vulnerability(v));
        }
    }
    out
}

fn vulnerability(v: &TrivyVulnerability) -> Vulnerability {
    Vulnerability {
        id: v.vulnerability_id.clone(),
        severity: Severity::parse_loose(&v.severity),
        fixable: Some(v.has_fix()),
        published: v
            .published_date
            .as_deref()
            .and_then(|p| OffsetDateTime::parse(p, &Rfc3339).ok()),
    }
}
