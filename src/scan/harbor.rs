//! `harbor`: the scan overview Harbor v2.0 keeps for each artifact.
//!
//! `harbor.example.com/<project>/<repository...>@<digest>` is looked up with
//! `GET /api/v2.0/projects/<project>/repositories/<repository>/artifacts/<digest>?with_scan_overview=true`
//! (a repository name with `/` is URL-encoded twice, as Harbor requires) and the
//! `scan_overview` entry for the first report type vulngate accepts is read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::backoff::{self, Attempt, RetryConfig};
use super::{ScanError, ScanStatus, ScanSummary, ScanTarget, Scanner, Severity, SeverityCounts};
use crate::secret::SecretSource;

pub const KIND: &str = "harbor";

/// Report types vulngate reads, most preferred first (Harbor's own default list).
pub const ACCEPT_VULNERABILITIES: &str = "application/vnd.security.vulnerability.report; version=1.1, application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0";

/// `scanner: {harbor: {...}}`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HarborConfig {
    /// Base URL of Harbor, e.g. `https://harbor.example.com`.
    pub url: String,
    /// Robot account name, e.g. `robot$vulngate` (project robots: `robot$<project>+<name>`).
    pub username: String,
    /// The robot account's secret: `{file: /path}` or `{env: NAME}`.
    pub password: SecretSource,
    /// PEM CA bundle trusted for Harbor's certificate, beside the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl HarborConfig {
    pub fn rebase_paths(&mut self, base: &std::path::Path) {
        self.password.rebase(base);
        if let Some(ca) = self.ca_file.as_mut() {
            if ca.is_relative() {
                *ca = base.join(&*ca);
            }
        }
    }
}

/// Path segment encoding: everything but unreserved characters (and `:` of digests).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// `<project>/<repository...>` -> (project, repository).
pub fn split_repository(repository: &str) -> Option<(&str, &str)> {
    repository
        .split_once('/')
        .filter(|(p, r)| !p.is_empty() && !r.is_empty())
}

/// The artifact path of a repository and reference; `a/b` becomes `a%252Fb`.
pub fn artifact_path(project: &str, repository: &str, reference: &str) -> String {
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

/// `{"errors":[{"code":"UNAUTHORIZED","message":"..."}]}`
fn harbor_error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let first = v.get("errors")?.get(0)?;
    let code = first.get("code").and_then(|c| c.as_str()).unwrap_or("");
    let message = first.get("message").and_then(|m| m.as_str()).unwrap_or("");
    let message: String = message.chars().take(200).collect();
    Some(
        format!("{code}: {message}")
            .trim_matches([' ', ':'])
            .to_string(),
    )
}

/// The report of the most preferred accepted type, or any report Harbor gave.
fn pick_report(overview: BTreeMap<String, ReportSummary>) -> Option<ReportSummary> {
    let norm = |s: &str| s.replace(' ', "").to_ascii_lowercase();
    let mut overview: Vec<(String, ReportSummary)> = overview.into_iter().collect();
    for wanted in ACCEPT_VULNERABILITIES.split(", ") {
        if let Some(i) = overview.iter().position(|(k, _)| norm(k) == norm(wanted)) {
            return Some(overview.swap_remove(i).1);
        }
    }
    overview.into_iter().next().map(|(_, r)| r)
}

/// Harbor's severity summary -> counts. Harbor omits severities with no
/// findings, so an absent key is zero; a total above the keys' sum (a severity
/// vulngate does not know) is counted as unknown rather than dropped.
fn counts_from(summary: &VulnerabilitySummary) -> SeverityCounts {
    let mut counts = SeverityCounts::zero();
    for (key, n) in summary.summary.iter().flatten() {
        if key.eq_ignore_ascii_case("none") {
            continue;
        }
        let slot = counts.slot(Severity::parse_loose(key));
        *slot = Some(slot.unwrap_or(0).saturating_add(*n));
    }
    if let Some(total) = summary.total {
        let missing = total.saturating_sub(counts.total());
        if missing > 0 {
            let slot = counts.slot(Severity::Unknown);
            *slot = Some(slot.unwrap_or(0).saturating_add(missing));
        }
    }
    counts
}

pub struct HarborScanner {
    config: HarborConfig,
    http: reqwest::Client,
    base: String,
}

impl HarborScanner {
    pub fn new(config: &HarborConfig) -> Result<HarborScanner, String> {
        let base = config.url.trim_end_matches('/').to_string();
        let url = url::Url::parse(&base).map_err(|e| format!("url {:?}: {e}", config.url))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "url {:?}: expected http(s)://host[:port]",
                config.url
            ));
        }
        if config.username.trim().is_empty() {
            return Err("username: the robot account name is empty".into());
        }
        if config.timeout.is_zero() {
            return Err("timeout: must be greater than zero".into());
        }
        config
            .password
            .load()
            .map_err(|e| format!("password: {e}"))?;
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout);
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("caFile {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("caFile {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("caFile {}: no certificate in it", ca.display()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
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
        backoff::retry_throttled(&self.config.retry, || async {
            match self.send_once(&url, project).await {
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
    ) -> Result<Attempt<Option<Artifact>>, ScanError> {
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
        let body = resp.bytes().await.map_err(|e| self.transport(&e))?;
        let detail = {
            let mut d = format!("HTTP {status}");
            if let Some(m) = harbor_error_message(&body) {
                d.push_str(&format!(
                    " ({})",
                    crate::httputil::scrub(&m, &[password.expose()])
                ));
            }
            if let Some(id) = &request_id {
                d.push_str(&format!(", request id {id}"));
            }
            d
        };
        let user = &self.config.username;
        Ok(match status {
            200..=299 => Attempt::Done(
                serde_json::from_slice::<Artifact>(&body)
                    .map(Some)
                    .map_err(|e| self.unavailable(format!("unexpected artifact body: {e} ({detail})"))),
            ),
            // Unknown project, repository or artifact: Harbor has no scan of it.
            404 => Attempt::Done(Ok(None)),
            429 => Attempt::Throttled {
                error: self.unavailable(format!("throttled, {detail}")),
                retry_after,
            },
            401 => Attempt::Done(Err(self.config_error(format!(
                "Harbor rejected the robot account credentials of {user:?}, {detail}; check username and password"
            )))),
            403 => Attempt::Done(Err(self.config_error(format!(
                "robot account {user:?} may not read artifacts of project {project:?}, {detail}; \
                 grant it the project permissions to read artifacts (repository pull) and scans"
            )))),
            400..=499 => Attempt::Done(Err(self.config_error(format!("Harbor rejected the request, {detail}")))),
            _ => Attempt::Done(Err(self.unavailable(detail))),
        })
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
        let Some(report) = artifact.scan_overview.and_then(pick_report) else {
            return Ok(ScanSummary::status_only(KIND, ScanStatus::NotScanned));
        };
        let status = map_scan_status(report.scan_status.as_deref().unwrap_or(""));
        if status != ScanStatus::Complete {
            return Ok(ScanSummary::status_only(KIND, status));
        }
        let Some(summary) = report.summary else {
            return Err(self.unavailable(format!(
                "{}: finished scan report without a summary",
                target.image
            )));
        };
        let mut out = ScanSummary::status_only(KIND, status);
        out.counts = counts_from(&summary);
        // Harbor's overview gives one fixable total, not one per severity, so it
        // cannot serve per-severity limits: `count: fixable` then says it could not
        // be applied and counts everything, rather than passing on a partial number.
        out.fixable = None;
        out.finished_at = report.end_time.as_deref().and_then(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
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
