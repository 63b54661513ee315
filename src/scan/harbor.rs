//! `harbor`: the scan overview Harbor v2.0 keeps for each artifact.
//!
//! `harbor.example.com/<project>/<repository...>@<digest>` is looked up with
//! `GET /api/v2.0/projects/<project>/repositories/<repository>/artifacts/<digest>?with_scan_overview=true`
//! (a repository name with `/` is URL-encoded twice, as Harbor requires) and the
//! `scan_overview` entry for the first report type vulngate accepts is read.
//!
//! For a finished scan with findings, the artifact's vulnerability report
//! (`.../artifacts/<digest>/additions/vulnerabilities`) is read too, unless
//! `vulnerabilityDetails: false`: each entry's id, severity and whether it has a
//! `fix_version` feed `count: fixable` and `allow-cves`. If that call fails, the
//! counts stand alone and those rules report that they could not be applied.

use std::collections::BTreeMap;

use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use time::OffsetDateTime;

use super::backoff::{self, Attempt};
use super::setup_error::SetupError;
use super::vulnlist::{self, MAX_ENTRIES};
use super::{ScanTarget, Scanner};
use crate::config::ConfigError;
use crate::config::harbor::HarborConfig;
use crate::domain::scan_error::ScanError;
use crate::domain::summary::{ScanStatus, ScanSummary, Severity, SeverityCounts, Vulnerability};

pub(crate) const KIND: &str = "harbor";

/// Report types vulngate reads, most preferred first (Harbor's own default list).
pub(crate) const ACCEPT_VULNERABILITIES: &str = "application/vnd.security.vulnerability.report; version=1.1, application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0";

/// `scanner: {harbor: {...}}`
/// Path segment encoding: everything but unreserved characters (and `:` of digests).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// Largest answer read from Harbor: a report of a few thousand findings with their
/// descriptions fits; anything larger is refused rather than buffered.
const MAX_BODY: usize = 16 << 20;

/// Longest vulnerability id accepted from a report (CVE, GHSA, distro ids are short).
const MAX_ID_LEN: usize = 128;

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// `<project>/<repository...>` -> (project, repository).
pub(crate) fn split_repository(repository: &str) -> Option<(&str, &str)> {
    repository
        .split_once('/')
        .filter(|(p, r)| !p.is_empty() && !r.is_empty())
}

/// The artifact path of a repository and reference; `a/b` becomes `a%252Fb`.
pub(crate) fn artifact_path(project: &str, repository: &str, reference: &str) -> String {
    format!(
        "/api/v2.0/projects/{}/repositories/{}/artifacts/{}",
        encode(project),
        encode(&encode(repository)),
        encode(reference)
    )
}

/// Harbor `scan_status` -> vulngate's status.
pub fn map_scan_status(status: &str) -> ScanStatus {
    match status.to_ascii_lowercase().as_str() {
        "success" => ScanStatus::Complete,
        "pending" | "running" | "scheduled" => ScanStatus::Scanning,
        // Stopped by a user: no result, and none is coming.
        "stopped" => ScanStatus::NotScanned,
        // Error, and anything new.
        _ => ScanStatus::Failed,
    }
}

#[derive(Debug, Deserialize)]
struct Artifact {
    #[serde(default)]
    scan_overview: Option<BTreeMap<String, ReportSummary>>,
}

#[derive(Debug, Deserialize)]
struct ReportSummary {
    #[serde(default)]
    scan_status: Option<String>,
    #[serde(default)]
    summary: Option<VulnerabilitySummary>,
    #[serde(default)]
    end_time: Option<String>,
}

#[derive(Debug, Deserialize)]
struct VulnerabilitySummary {
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    summary: Option<BTreeMap<String, u64>>,
}

/// `{"errors":[{"code":"UNAUTHORIZED","message":"..."}]}` -> (code, message).
fn harbor_error(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let first = v.get("errors")?.get(0)?;
    let code = first.get("code").and_then(|c| c.as_str()).unwrap_or("");
    let message = first.get("message").and_then(|m| m.as_str()).unwrap_or("");
    Some((code.to_string(), message.chars().take(200).collect()))
}

/// Harbor looks up the project, the repository, then the artifact, and its 404 says
/// which it did not find (`artifact <repository>@<digest> not found`). Only a missing
/// artifact means "not scanned"; a missing project or repository, or a 404 that is not
/// Harbor's (a url that is not Harbor's API root), is a configuration to fix.
fn is_missing_artifact(body: &[u8]) -> bool {
    harbor_error(body).is_some_and(|(code, message)| {
        code == "NOT_FOUND" && message.starts_with("artifact ") && message.ends_with("not found")
    })
}

/// The report of the most preferred accepted type, or any report Harbor gave.
fn pick_report<T>(overview: BTreeMap<String, T>) -> Option<T> {
    let norm = |s: &str| s.replace(' ', "").to_ascii_lowercase();
    let mut overview: Vec<(String, T)> = overview.into_iter().collect();
    for wanted in ACCEPT_VULNERABILITIES.split(", ") {
        if let Some(i) = overview.iter().position(|(k, _)| norm(k) == norm(wanted)) {
            return Some(overview.swap_remove(i).1);
        }
    }
    overview.into_iter().next().map(|(_, r)| r)
}

/// Harbor's severity summary -> counts. Harbor omits severities with no
/// findings, so an absent key is zero. Findings of severity `None` (the bottom of
/// Harbor's scale: no severity at all) are not counted, here as in the report's list,
/// though Harbor's total includes them. A total above the keys' sum (a severity
/// vulngate does not know) is counted as unknown rather than dropped.
fn counts_from(summary: &VulnerabilitySummary) -> SeverityCounts {
    let mut counts = SeverityCounts::zero();
    let mut severity_none = 0u64;
    for (key, n) in summary.summary.iter().flatten() {
        if key.eq_ignore_ascii_case("none") {
            severity_none = severity_none.saturating_add(*n);
            continue;
        }
        let slot = counts.slot(Severity::parse_loose(key));
        *slot = Some(slot.unwrap_or(0).saturating_add(*n));
    }
    if let Some(total) = summary.total {
        let missing = total
            .saturating_sub(severity_none)
            .saturating_sub(counts.total());
        if missing > 0 {
            let slot = counts.slot(Severity::Unknown);
            *slot = Some(slot.unwrap_or(0).saturating_add(missing));
        }
    }
    counts
}

fn parse_artifact(body: &[u8]) -> Result<Artifact, String> {
    serde_json::from_slice::<Artifact>(body).map_err(|e| format!("unexpected artifact body: {e}"))
}

/// The summary an artifact's scan overview gives (without its vulnerability list).
fn summary_of(artifact: Artifact) -> Result<ScanSummary, String> {
    let Some(report) = artifact.scan_overview.and_then(pick_report) else {
        return Ok(ScanSummary::status_only(KIND, ScanStatus::NotScanned));
    };
    let status = map_scan_status(report.scan_status.as_deref().unwrap_or(""));
    if status != ScanStatus::Complete {
        return Ok(ScanSummary::status_only(KIND, status));
    }
    let Some(summary) = report.summary else {
        return Err("finished scan report without a summary".into());
    };
    let mut out = ScanSummary::status_only(KIND, status);
    out.counts = counts_from(&summary);
    // The overview's fixable total cannot serve per-severity limits; per-severity
    // fixable counts come from the report's list, or stay unknown.
    out.fixable = None;
    out.finished_at = report.end_time.as_deref().and_then(|t| {
        OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    Ok(out)
}

/// An artifact answer (`GET .../artifacts/<digest>?with_scan_overview=true`) read the
/// way the scanner reads it.
pub fn summary_of_artifact(body: &[u8]) -> Result<ScanSummary, String> {
    summary_of(parse_artifact(body)?)
}

/// The vulnerability list of an `additions/vulnerabilities` answer: a map from report
/// MIME type to `{vulnerabilities: [{id, severity, fix_version, ...}]}`, of which the
/// preferred type is read. Entries of severity `None` are left out, as the summary
/// leaves them out; an entry without a fix version has no fix (Harbor writes `""`,
/// scanner adapters omit it). Harbor's report has no publication date.
pub fn parse_report(body: &[u8]) -> Result<Vec<Vulnerability>, String> {
    let reports: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| format!("unexpected report body: {e}"))?;
    let report = pick_report(reports).ok_or("the answer holds no report")?;
    if !report.is_object() {
        return Err("the report is not an object".into());
    }
    let entries = match report.get("vulnerabilities") {
        None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
        Some(serde_json::Value::Array(entries)) => entries,
        Some(_) => return Err("`vulnerabilities` is not a list".into()),
    };
    if entries.len() > MAX_ENTRIES {
        return Err(format!(
            "{} vulnerabilities, more than the {MAX_ENTRIES} kept per image",
            entries.len()
        ));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let id = entry
            .get("id")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|id| !id.is_empty() && id.len() <= MAX_ID_LEN)
            .ok_or_else(|| format!("entry {i} has no usable id"))?;
        let severity = entry.get("severity").and_then(|v| v.as_str()).unwrap_or("");
        if severity.trim().eq_ignore_ascii_case("none") {
            continue;
        }
        let fixable = match entry.get("fix_version") {
            None | Some(serde_json::Value::Null) => Some(false),
            Some(serde_json::Value::String(v)) => Some(!v.trim().is_empty()),
            // Not Harbor's shape: whether a fix exists is unknown.
            Some(_) => None,
        };
        out.push(Vulnerability {
            id: id.to_string(),
            severity: Severity::parse_loose(severity),
            fixable,
            published: None,
        });
    }
    Ok(out)
}

pub struct HarborScanner {
    config: HarborConfig,
    http: reqwest::Client,
    base: String,
}

impl HarborScanner {
    pub fn new(config: &HarborConfig) -> Result<HarborScanner, SetupError> {
        let base = config.url.trim_end_matches('/').to_string();
        SetupError::http_url("url", &config.url, &base)?;
        if config.username.trim().is_empty() {
            return Err(ConfigError::invalid("username", "the robot account name is empty").into());
        }
        if config.timeout.is_zero() {
            return Err(ConfigError::invalid("timeout", "must be greater than zero").into());
        }
        config
            .password
            .load()
            .map_err(|source| SetupError::Credential {
                key: "password",
                source,
            })?;
        let mut builder = crate::crypto::http_client()
            .timeout(config.timeout)
            .connect_timeout(config.timeout);
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca).map_err(|source| SetupError::ReadCa {
                path: ca.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                SetupError::CaPem {
                    path: ca.clone(),
                    source,
                }
            })?;
            if certs.is_empty() {
                return Err(SetupError::NoCa { path: ca.clone() });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(SetupError::HttpClient)?;
        Ok(HarborScanner {
            config: config.clone(),
            http,
            base,
        })
    }

    fn unavailable(&self, message: String) -> ScanError {
        ScanError::Unavailable {
            scanner: KIND,
            message,
        }
    }

    fn config_error(&self, message: String) -> ScanError {
        ScanError::Config {
            scanner: KIND,
            message,
        }
    }

    async fn fetch_artifact(
        &self,
        project: &str,
        repository: &str,
        digest: &str,
    ) -> Result<Option<Artifact>, ScanError> {
        let url = format!(
            "{}{}?with_scan_overview=true",
            self.base,
            artifact_path(project, repository, digest)
        );
        let Some(body) = self.get(&url, project).await? else {
            return Ok(None);
        };
        parse_artifact(&body)
            .map(Some)
            .map_err(|m| self.unavailable(m))
    }

    /// The artifact's vulnerability report, `None` when Harbor has none (404).
    async fn fetch_report(
        &self,
        project: &str,
        repository: &str,
        digest: &str,
    ) -> Result<Option<Vec<u8>>, ScanError> {
        let url = format!(
            "{}{}/additions/vulnerabilities",
            self.base,
            artifact_path(project, repository, digest)
        );
        self.get(&url, project).await
    }

    /// One GET, retried while throttled; the body of a 2xx, `None` for a 404.
    async fn get(&self, url: &str, project: &str) -> Result<Option<Vec<u8>>, ScanError> {
        backoff::retry_throttled(&self.config.retry, || async {
            match self.send_once(url, project).await {
                Ok(outcome) => outcome,
                Err(e) => Attempt::Done(Err(e)),
            }
        })
        .await
    }

    async fn send_once(
        &self,
        url: &str,
        project: &str,
    ) -> Result<Attempt<Option<Vec<u8>>>, ScanError> {
        let password = self
            .config
            .password
            .load()
            .map_err(|e| self.config_error(format!("robot account password: {e}")))?;
        let resp = self
            .http
            .get(url)
            .basic_auth(&self.config.username, Some(password.expose()))
            .header("Accept", "application/json")
            .header("X-Accept-Vulnerabilities", ACCEPT_VULNERABILITIES)
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        let status = resp.status().as_u16();
        let request_id = crate::httputil::request_id(resp.headers());
        let retry_after = backoff::retry_after(resp.headers());
        let body = self.read_limited(resp).await?;
        let detail = {
            let mut d = format!("HTTP {status}");
            if let Some((code, message)) = harbor_error(&body) {
                let m = format!("{code}: {message}");
                d.push_str(&format!(
                    " ({})",
                    crate::httputil::scrub(m.trim_matches([' ', ':']), &[password.expose()])
                ));
            }
            if let Some(id) = &request_id {
                d.push_str(&format!(", request id {id}"));
            }
            d
        };
        let user = &self.config.username;
        Ok(match status {
            200..=299 => Attempt::Done(Ok(Some(body))),
            // The repository has no such artifact: Harbor has no scan of it.
            404 if is_missing_artifact(&body) => Attempt::Done(Ok(None)),
            404 => Attempt::Done(Err(self.config_error(format!(
                "Harbor found no project {project:?} or no repository of the image there, {detail}; \
                 check the image name and that url {:?} is Harbor's address",
                self.base
            )))),
            429 => Attempt::Throttled {
                error: self.unavailable(format!("throttled, {detail}")),
                retry_after,
            },
            401 => Attempt::Done(Err(self.config_error(format!(
                "Harbor rejected the robot account credentials of {user:?}, {detail}; check username and password"
            )))),
            403 => Attempt::Done(Err(self.config_error(format!(
                "robot account {user:?} may not read artifacts of project {project:?}, {detail}; \
                 grant it the project permissions to read artifacts (repository pull), \
                 artifact additions (vulnerability reports) and scans"
            )))),
            400..=499 => Attempt::Done(Err(self.config_error(format!("Harbor rejected the request, {detail}")))),
            _ => Attempt::Done(Err(self.unavailable(detail))),
        })
    }

    /// The body, refused beyond `MAX_BODY` instead of buffered whole.
    async fn read_limited(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, ScanError> {
        let too_large = || self.unavailable(format!("answer larger than {MAX_BODY} bytes"));
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(&e))? {
            if body.len().saturating_add(chunk.len()) > MAX_BODY {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Adds the vulnerability list of a finished scan. Any failure keeps the
    /// counts: the rules that need the list then say they could not be applied.
    async fn add_vulnerabilities(
        &self,
        out: &mut ScanSummary,
        project: &str,
        repository: &str,
        target: &ScanTarget<'_>,
    ) {
        let read = async {
            match self.fetch_report(project, repository, target.digest).await {
                Err(e) => Err(e.to_string()),
                Ok(None) => {
                    Err("Harbor has no vulnerability report of the artifact (HTTP 404)".into())
                }
                Ok(Some(body)) => parse_report(&body),
            }
        };
        vulnlist::fill(out, target.image, self.config.timeout, read).await;
    }

    fn transport(&self, e: &reqwest::Error) -> ScanError {
        let what = crate::httputil::transport_error(e, self.config.timeout);
        self.unavailable(format!("{}: {what}", self.base))
    }
}

#[async_trait]
impl Scanner for HarborScanner {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn summary(&self, target: &ScanTarget<'_>) -> Result<ScanSummary, ScanError> {
        let Some((project, repository)) = split_repository(&target.image.repository) else {
            return Err(self.config_error(format!(
                "{}: a Harbor image is <project>/<repository>; this route sends other images to harbor",
                target.image
            )));
        };
        let Some(artifact) = self
            .fetch_artifact(project, repository, target.digest)
            .await?
        else {
            return Ok(ScanSummary::status_only(KIND, ScanStatus::NotScanned));
        };
        let mut out =
            summary_of(artifact).map_err(|m| self.unavailable(format!("{}: {m}", target.image)))?;
        if out.status == ScanStatus::Complete && self.config.vulnerability_details {
            self.add_vulnerabilities(&mut out, project, repository, target)
                .await;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_repository_names_are_encoded_twice() {
        assert_eq!(
            artifact_path("library", "nginx", "sha256:ab"),
            "/api/v2.0/projects/library/repositories/nginx/artifacts/sha256:ab"
        );
        assert_eq!(
            artifact_path("proxy", "library/nginx", "sha256:ab"),
            "/api/v2.0/projects/proxy/repositories/library%252Fnginx/artifacts/sha256:ab"
        );
        assert_eq!(split_repository("p/a/b"), Some(("p", "a/b")));
        assert_eq!(split_repository("nginx"), None);
    }

    #[test]
    fn status_mapping() {
        assert_eq!(map_scan_status("Success"), ScanStatus::Complete);
        assert_eq!(map_scan_status("Pending"), ScanStatus::Scanning);
        assert_eq!(map_scan_status("Running"), ScanStatus::Scanning);
        assert_eq!(map_scan_status("Scheduled"), ScanStatus::Scanning);
        assert_eq!(map_scan_status("Error"), ScanStatus::Failed);
        assert_eq!(map_scan_status("Stopped"), ScanStatus::NotScanned);
    }

    #[test]
    fn severity_summary_mapping() {
        let s: VulnerabilitySummary = serde_json::from_str(
            r#"{"total":12,"fixable":4,"summary":{"Critical":1,"High":2,"Medium":3,"Low":1,"Negligible":2,"Unknown":1,"None":0}}"#,
        )
        .unwrap();
        let c = counts_from(&s);
        assert_eq!(
            c,
            SeverityCounts {
                critical: Some(1),
                high: Some(2),
                medium: Some(3),
                low: Some(3),
                unknown: Some(3),
            }
        );
        assert_eq!(c.total(), 12);
    }

    #[test]
    fn vulnerability_report_entries() {
        let body = br#"{
          "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0": {"vulnerabilities": []},
          "application/vnd.security.vulnerability.report; version=1.1": {
            "generated_at": "2026-11-20T10:00:42Z", "severity": "High",
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.0"},
            "vulnerabilities": [
              {"id": "CVE-2024-0001", "package": "openssl", "version": "3.0.1", "fix_version": "3.0.2",
               "severity": "High", "description": "text", "links": ["https://avd.aquasec.com/nvd/cve-2024-0001"],
               "preferred_cvss": {"score_v3": 7.5, "vector_v3": "CVSS:3.1/AV:N"}, "cwe_ids": ["CWE-125"]},
              {"id": "CVE-2024-0002", "package": "zlib", "version": "1", "fix_version": "", "severity": "Negligible"},
              {"id": "CVE-2024-0003", "package": "bash", "version": "5", "severity": "Critical"},
              {"id": "CVE-2024-0004", "package": "x", "version": "1", "fix_version": 5, "severity": "Medium"},
              {"id": "CVE-2024-0005", "package": "y", "version": "1", "severity": "None"}
            ]}}"#;
        let list = parse_report(body).unwrap();
        let got: Vec<(&str, Severity, Option<bool>)> = list
            .iter()
            .map(|v| (v.id.as_str(), v.severity, v.fixable))
            .collect();
        assert_eq!(
            got,
            vec![
                ("CVE-2024-0001", Severity::High, Some(true)),
                ("CVE-2024-0002", Severity::Low, Some(false)),
                ("CVE-2024-0003", Severity::Critical, Some(false)),
                ("CVE-2024-0004", Severity::Medium, None),
            ],
            "None-severity entries are left out, as in the summary"
        );
        assert!(list.iter().all(|v| v.published.is_none()));
    }

    #[test]
    fn malformed_reports_are_errors_not_panics() {
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"application/vnd.security.vulnerability.report; version=1.1": {"vulnerabilities": {"id": 1}}}"#,
            br#"{"application/vnd.security.vulnerability.report; version=1.1": {"vulnerabilities": [3]}}"#,
            br#"{"application/vnd.security.vulnerability.report; version=1.1": {"vulnerabilities": [{"id": "", "severity": "High"}]}}"#,
            br#"{"application/vnd.security.vulnerability.report; version=1.1": {"vulnerabilities": [{"id": 12, "severity": "High"}]}}"#,
        ] {
            assert!(
                parse_report(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(
            r#"{{"application/vnd.security.vulnerability.report; version=1.1": {{"vulnerabilities": [{{"id": "{}"}}]}}}}"#,
            "C".repeat(MAX_ID_LEN + 1)
        );
        assert!(parse_report(long.as_bytes()).is_err());
        // A report without findings (Harbor writes `[]`, older versions `null`).
        let empty = br#"{"application/vnd.security.vulnerability.report; version=1.1": {"vulnerabilities": null}}"#;
        assert!(parse_report(empty).unwrap().is_empty());
        let odd = br#"{"application/vnd.security.vulnerability.report; version=1.1": 5}"#;
        assert!(parse_report(odd).is_err());
    }

    #[test]
    fn vulnerability_details_switch_defaults_on() {
        let c: HarborConfig =
            serde_saphyr::from_str("url: https://h\nusername: r\npassword: {env: X}\n").unwrap();
        assert!(c.vulnerability_details);
        let c: HarborConfig = serde_saphyr::from_str(
            "url: https://h\nusername: r\npassword: {env: X}\nvulnerabilityDetails: false\n",
        )
        .unwrap();
        assert!(!c.vulnerability_details);
    }

    #[test]
    fn report_of_the_preferred_type_is_used() {
        let overview: BTreeMap<String, ReportSummary> = serde_json::from_str(
            r#"{"application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0":{"scan_status":"Error"},
                "application/vnd.security.vulnerability.report; version=1.1":{"scan_status":"Success"}}"#,
        )
        .unwrap();
        let r = pick_report(overview).unwrap();
        assert_eq!(r.scan_status.as_deref(), Some("Success"));
    }
}
