//! `sas`: image scan results from Alibaba Cloud Security Center (OpenAPI `Sas`,
//! version 2018-12-03).
//!
//! Security Center grades image vulnerabilities by how urgently they need fixing,
//! not by CVSS severity. vulngate maps the three "repair necessity" levels:
//!
//! | Security Center necessity | vulngate severity |
//! |---|---|
//! | `asap` (fix as soon as possible) | high |
//! | `later` (fix later) | medium |
//! | `nntf` (no need to fix now) | low |
//!
//! There is no critical and no unknown level, so `counts.critical` and
//! `counts.unknown` are `None` (limits on them are reported as unenforceable).
//! Counted are the unhandled system (`cve`) vulnerabilities of the image digest
//! (with `countHandled`, the handled ones too), one `DescribeImageVulList` call per
//! level (its `TotalCount`).
//!
//! `DescribeImageSecurityScanCount` adds the extra counts: application (SCA)
//! vulnerabilities, malicious files and baseline risks (`vulngate.io/max-app-vulnerabilities`,
//! `max-malicious-files`, `max-baseline-risks`).
//!
//! The scan status comes from `DescribeImageLatestScanTask` for the digest: no task
//! whose `Target` is the digest means not scanned (with `scanOnMissing`,
//! `PublicCreateImageScanTask` is asked for within the `scanRequests` limit, and the
//! image reported as scanning once a task was created), `SUCCESS` complete,
//! `FAIL`/`TIMOUT` failed, anything else scanning.

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::alibaba_error::scan_error;
use super::{ScanTarget, Scanner};
use crate::cloud::alibaba::client::{Api, Method, RpcClient};
use crate::cloud::alibaba::scan_requests::{ScanRequestGate, sas_task_refusal};
use crate::cloud::alibaba::{digest_hex, json_str, json_u64};
use crate::config::alibaba::SasConfig;
use crate::domain::scan_error::ScanError;
use crate::domain::summary::{ExtraCount, ScanStatus, ScanSummary, Severity, SeverityCounts};
use crate::scan::setup_error::SetupError;

pub(crate) const KIND: &str = "sas";
const VERSION: &str = "2018-12-03";

static DESCRIBE_IMAGE_LATEST_SCAN_TASK: Api = Api {
    action: "DescribeImageLatestScanTask",
    method: Method::Post,
    ram_action: "yundun-sas:DescribeImageLatestScanTask",
};
static PUBLIC_CREATE_IMAGE_SCAN_TASK: Api = Api {
    action: "PublicCreateImageScanTask",
    method: Method::Post,
    ram_action: "yundun-sas:PublicCreateImageScanTask",
};
static DESCRIBE_IMAGE_VUL_LIST: Api = Api {
    action: "DescribeImageVulList",
    method: Method::Post,
    ram_action: "yundun-sas:DescribeImageVulList",
};
static DESCRIBE_IMAGE_SECURITY_SCAN_COUNT: Api = Api {
    action: "DescribeImageSecurityScanCount",
    method: Method::Post,
    ram_action: "yundun-sas:DescribeImageSecurityScanCount",
};

/// Necessity level -> the severity slot it fills.
const NECESSITY: [(&str, Severity); 3] = [
    ("asap", Severity::High),
    ("later", Severity::Medium),
    ("nntf", Severity::Low),
];

#[derive(Debug)]
pub struct SasScanner {
    client: RpcClient,
    instance_id: Option<String>,
    repo_region: Option<String>,
    scan_on_missing: bool,
    scan_requests: ScanRequestGate,
    count_handled: bool,
}

impl SasScanner {
    pub fn new(config: &SasConfig) -> Result<SasScanner, SetupError> {
        Self::with_env(config, &|k| std::env::var(k).ok())
    }

    pub fn with_env(
        config: &SasConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SasScanner, SetupError> {
        config.validate("sas")?;
        Ok(SasScanner {
            client: RpcClient::new("Sas", VERSION, &config.client_settings(), env)?,
            instance_id: config.instance_id.clone().filter(|s| !s.trim().is_empty()),
            repo_region: config
                .product
                .repo_region
                .clone()
                .filter(|s| !s.trim().is_empty()),
            scan_on_missing: config.scan_on_missing,
            scan_requests: ScanRequestGate::new(config.scan_requests),
            count_handled: config.product.count_handled,
        })
    }

    async fn call(
        &self,
        api: &'static Api,
        params: &[(&str, String)],
        deadline: Instant,
    ) -> Result<Value, ScanError> {
        self.client
            .call(api, params, deadline)
            .await
            .map_err(|e| scan_error(e, KIND))
    }

    fn repo_region(&self, host: &str) -> Option<String> {
        self.repo_region
            .clone()
            .or_else(|| region_of_acr_host(host))
    }

    async fn vul_count(
        &self,
        necessity: &str,
        filter: &[(&str, String)],
        deadline: Instant,
    ) -> Result<u64, ScanError> {
        let mut params = filter.to_vec();
        params.extend([
            ("Type", "cve".to_string()),
            ("Necessity", necessity.to_string()),
            ("CurrentPage", "1".to_string()),
            ("PageSize", "1".to_string()),
        ]);
        // Without the handling filter the list holds handled and unhandled findings.
        if !self.count_handled {
            params.push(("Dealed", "n".to_string()));
        }
        let answer = self
            .call(&DESCRIBE_IMAGE_VUL_LIST, &params, deadline)
            .await?;
        json_u64(&answer, "TotalCount").ok_or_else(|| ScanError::Unavailable {
            scanner: KIND,
            message: format!(
                "Sas DescribeImageVulList: answer without TotalCount (RequestId {})",
                json_str(&answer, "RequestId").unwrap_or("none")
            ),
        })
    }
}

impl SasScanner {
    /// Asks for a scan of an image Security Center has no task for: scanning when a
    /// task was created, else not scanned with the reason (the request limit, or the
    /// service's refusal, which holds the next requests back).
    async fn request_scan(
        &self,
        target: &ScanTarget<'_>,
        params: &[(&str, String)],
        deadline: Instant,
    ) -> Result<ScanSummary, ScanError> {
        if let Err(why) = self.scan_requests.permit() {
            tracing::info!(image = %target.image, digest = target.digest, reason = %why, "Security Center scan not requested");
            return Ok(ScanSummary::status_with_note(
                KIND,
                ScanStatus::NotScanned,
                why,
            ));
        }
        let answer = self
            .call(&PUBLIC_CREATE_IMAGE_SCAN_TASK, params, deadline)
            .await?;
        if let Some((why, hold)) = sas_task_refusal(&answer) {
            self.scan_requests.refused(&why, hold);
            tracing::warn!(image = %target.image, digest = target.digest, reason = %why, "Security Center refused a scan task");
            return Ok(ScanSummary::status_with_note(
                KIND,
                ScanStatus::NotScanned,
                format!("a scan was asked for, but {why}"),
            ));
        }
        tracing::info!(image = %target.image, digest = target.digest, "asked Security Center to scan");
        Ok(ScanSummary::status_only(KIND, ScanStatus::Scanning))
    }
}

/// `name-registry[-vpc].cn-hangzhou.cr.aliyuncs.com` -> `cn-hangzhou`.
pub(crate) fn region_of_acr_host(host: &str) -> Option<String> {
    let rest = host.to_ascii_lowercase();
    let rest = rest.strip_suffix(".cr.aliyuncs.com")?;
    let region = rest.rsplit('.').next()?;
    (!region.is_empty() && region != rest).then(|| region.to_string())
}

/// The latest scan task of the digest: its status and finish time. Only a task whose
/// `Target` names the digest counts: a finished task of another image (or one naming
/// none) would otherwise mark a never-scanned image complete with zero counts.
pub fn task_status(answer: &Value, hex: &str) -> Option<(ScanStatus, Option<OffsetDateTime>)> {
    let tasks = answer.get("Task").and_then(Value::as_array)?;
    let task = tasks
        .iter()
        .find(|t| json_str(t, "Target").is_some_and(|d| digest_hex(d).eq_ignore_ascii_case(hex)))?;
    let status = match json_str(task, "Status")
        .unwrap_or("")
        .to_ascii_uppercase()
        .as_str()
    {
        "SUCCESS" => ScanStatus::Complete,
        "FAIL" | "TIMOUT" | "TIMEOUT" => ScanStatus::Failed,
        _ => ScanStatus::Scanning,
    };
    let finished = json_u64(task, "FinishTime")
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok());
    Some((status, finished))
}

/// The extra counts of a DescribeImageSecurityScanCount answer.
pub fn extras_from_scan_count(answer: &Value) -> Vec<(ExtraCount, u64)> {
    let Some(data) = answer.get("Data") else {
        return Vec::new();
    };
    [
        (ExtraCount::ApplicationVulnerabilities, "ImageScaVulCount"),
        (ExtraCount::MaliciousFiles, "ImageMaliciousFileCount"),
        (ExtraCount::BaselineRisks, "ImageBaselineCount"),
    ]
    .into_iter()
    .filter_map(|(extra, key)| json_u64(data, key).map(|n| (extra, n)))
    .collect()
}

#[async_trait]
impl Scanner for SasScanner {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn summary(&self, target: &ScanTarget<'_>) -> Result<ScanSummary, ScanError> {
        let deadline = self.client.deadline();
        let hex = digest_hex(target.digest).to_ascii_lowercase();
        let host = target.image.host().to_ascii_lowercase();
        let region = self.repo_region(&host);
        let (namespace, name) = match target.image.repository.split_once('/') {
            Some((ns, n)) => (Some(ns.to_string()), Some(n.to_string())),
            None => (None, None),
        };

        let task = self
            .call(
                &DESCRIBE_IMAGE_LATEST_SCAN_TASK,
                &[("Digest", hex.clone())],
                deadline,
            )
            .await?;
        let (status, finished_at) = match task_status(&task, &hex) {
            Some(s) => s,
            None if self.scan_on_missing => {
                let mut params = vec![
                    ("Digests", hex.clone()),
                    ("RegistryTypes", "acr".to_string()),
                ];
                params.extend(region.clone().map(|r| ("RegionIds", r)));
                params.extend(self.instance_id.clone().map(|i| ("InstanceIds", i)));
                params.extend(namespace.clone().map(|n| ("RepoNamespaces", n)));
                params.extend(name.clone().map(|n| ("RepoNames", n)));
                params.extend(target.image.tag.clone().map(|t| ("Tags", t)));
                return self.request_scan(target, &params, deadline).await;
            }
            None => return Ok(ScanSummary::status_only(KIND, ScanStatus::NotScanned)),
        };
        if status != ScanStatus::Complete {
            return Ok(ScanSummary::status_only(KIND, status));
        }

        let mut filter = vec![("Digest", hex.clone())];
        filter.extend(namespace.map(|n| ("RepoNamespace", n)));
        filter.extend(name.map(|n| ("RepoName", n)));
        filter.extend(region.clone().map(|r| ("RepoRegionId", r)));
        filter.extend(self.instance_id.clone().map(|i| ("RepoInstanceId", i)));
        let mut count_params = vec![("ImageDigest", hex.clone()), ("Dealed", "N".to_string())];
        count_params.extend(region.map(|r| ("RepoRegionId", r)));
        count_params.extend(self.instance_id.clone().map(|i| ("RepoInstanceId", i)));

        // The four reads are independent: one round trip of latency instead of four.
        let (asap, later, nntf, scan_count) = futures::try_join!(
            self.vul_count(NECESSITY[0].0, &filter, deadline),
            self.vul_count(NECESSITY[1].0, &filter, deadline),
            self.vul_count(NECESSITY[2].0, &filter, deadline),
            self.call(&DESCRIBE_IMAGE_SECURITY_SCAN_COUNT, &count_params, deadline),
        )?;
        let mut counts = SeverityCounts::default();
        for ((_, severity), n) in NECESSITY.iter().zip([asap, later, nntf]) {
            *counts.slot(*severity) = Some(n);
        }
        let mut summary = ScanSummary::status_only(KIND, ScanStatus::Complete);
        summary.counts = counts;
        summary.finished_at = finished_at;
        summary.extra = extras_from_scan_count(&scan_count).into_iter().collect();
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_host_regions() {
        assert_eq!(
            region_of_acr_host("demo-registry.cn-hangzhou.cr.aliyuncs.com").as_deref(),
            Some("cn-hangzhou")
        );
        assert_eq!(
            region_of_acr_host("demo-registry-vpc.ap-southeast-1.cr.aliyuncs.com").as_deref(),
            Some("ap-southeast-1")
        );
        assert_eq!(region_of_acr_host("registry.example.com"), None);
    }

    #[test]
    fn seed_example_extras() {
        // The example answer of the DescribeImageSecurityScanCount reference page.
        let answer: Value = serde_json::from_str(
            r#"{"RequestId": "C699E4E4-F2F4-58FC-A949-457FFE59****",
                "Data": {"ImageBaselineCount": 0, "ImageMaliciousFileCount": 0,
                         "ImageScaVulCount": 0, "ImageCveVulCount": 0}}"#,
        )
        .unwrap();
        let extras = extras_from_scan_count(&answer);
        assert_eq!(extras.len(), 3);
        assert!(extras.iter().all(|(_, n)| *n == 0));
    }

    #[test]
    fn task_statuses() {
        let t = |s: &str| serde_json::json!({"Task": [{"Status": s, "Target": "ab", "FinishTime": 1669693430977u64}]});
        assert_eq!(
            task_status(&t("SUCCESS"), "ab").unwrap().0,
            ScanStatus::Complete
        );
        assert_eq!(
            task_status(&t("TIMOUT"), "ab").unwrap().0,
            ScanStatus::Failed
        );
        assert_eq!(
            task_status(&t("PRE_ANALYZER"), "ab").unwrap().0,
            ScanStatus::Scanning
        );
        assert!(task_status(&serde_json::json!({"Task": []}), "ab").is_none());
        let others = serde_json::json!({"Task": [{"Status": "SUCCESS", "Target": "cd"}, {"Status": "SUCCESS"}]});
        assert!(
            task_status(&others, "ab").is_none(),
            "no task of this digest"
        );
        let finished = task_status(&t("SUCCESS"), "ab").unwrap().1.unwrap();
        assert_eq!(finished.unix_timestamp(), 1669693430);
    }
}
