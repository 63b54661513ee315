//! `acr`: scan summaries from Alibaba Cloud Container Registry Enterprise Edition
//! (OpenAPI `cr`, version 2018-12-01).
//!
//! For `<host>/<namespace>/<repo>` at a digest:
//! 1. host -> InstanceId: `instanceId` from the config, or `ListInstance` +
//!    `ListInstanceEndpoint` matching the host among the instances' domains (cached);
//! 2. namespace/repo -> RepoId with `GetRepository` (cached);
//! 3. the tag that points at the digest: the pod's tag checked with `GetRepoTag`, or,
//!    for a digest-only reference or a tag that moved, a search with `ListRepoTag`;
//! 4. `GetRepoTagScanStatus`: `SCANNING`/`RETRYING` -> scanning, `FAILED` -> failed,
//!    no scan -> not scanned (or, with `scanOnMissing` and within its `scanRequests`
//!    limit, `CreateRepoTagScanTask` and scanning);
//! 5. `GetRepoTagScanSummary`: High/Medium/Low/Unknown counts. ACR has no critical
//!    level, so `counts.critical` is `None` (a `max-critical` limit is reported as
//!    unenforceable rather than met by a zero).
//! 6. `ListRepoTagScanResult` (unless `vulnerabilityDetails: false`, and only when
//!    there are findings): the vulnerability list, paged as the server pages it (at
//!    most `MAX_ENTRIES` entries), for `count: fixable` and `allow-cves`. If it fails, the counts
//!    of step 5 stand alone and those rules report that they could not be applied.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::time::Instant;

use super::alibaba_error::scan_error;
use super::vulnlist::{self, MAX_ENTRIES};
use super::{ScanTarget, Scanner};
use crate::cloud::alibaba::client::{Api, Method, RpcClient};
use crate::cloud::alibaba::error::RpcError;
use crate::cloud::alibaba::scan_requests::ScanRequestGate;
use crate::cloud::alibaba::{digest_hex, json_str, json_u64, same_digest};
use crate::config::alibaba::AcrConfig;
use crate::domain::scan_error::ScanError;
use crate::domain::summary::{ScanStatus, ScanSummary, Severity, SeverityCounts, Vulnerability};
use crate::scan::setup_error::SetupError;

pub(crate) const KIND: &str = "acr";
const VERSION: &str = "2018-12-01";
/// How long host -> instance and name -> repository ids are kept.
const ID_CACHE_TTL: Duration = Duration::from_secs(3600);
/// The page size asked of ListRepoTag (which takes at most 100) and ListRepoTagScanResult.
/// The server may answer with shorter pages.
const PAGE_SIZE: usize = 100;
/// Tags searched at most for a digest-only reference (or a moved tag).
const MAX_TAGS_SEARCHED: usize = 1000;
/// Longest vulnerability id accepted (CVE and distro ids are short).
const MAX_ID_LEN: usize = 128;

// RAM actions as the API reference pages name them (GetRepoTagScanSummary is
// `cr:GetScanCount`, GetRepoTagScanStatus `cr:GetScan`, GetRepoTag `cr:ListRepositoryTag`);
// the rest follow the same table and are listed in docs/scanners-alibaba.md. A denial
// that names its action (`AccessDeniedDetail.AuthAction`) is reported with that name.
static LIST_INSTANCE: Api = Api {
    action: "ListInstance",
    method: Method::Post,
    ram_action: "cr:ListInstance",
};
static LIST_INSTANCE_ENDPOINT: Api = Api {
    action: "ListInstanceEndpoint",
    method: Method::Post,
    ram_action: "cr:ListInstanceEndpoint",
};
static GET_REPOSITORY: Api = Api {
    action: "GetRepository",
    method: Method::Post,
    ram_action: "cr:GetRepository",
};
static GET_REPO_TAG: Api = Api {
    action: "GetRepoTag",
    method: Method::Get,
    ram_action: "cr:ListRepositoryTag",
};
static LIST_REPO_TAG: Api = Api {
    action: "ListRepoTag",
    method: Method::Post,
    ram_action: "cr:ListRepositoryTag",
};
static GET_REPO_TAG_SCAN_STATUS: Api = Api {
    action: "GetRepoTagScanStatus",
    method: Method::Post,
    ram_action: "cr:GetScan",
};
static CREATE_REPO_TAG_SCAN_TASK: Api = Api {
    action: "CreateRepoTagScanTask",
    method: Method::Post,
    ram_action: "cr:PutScan",
};
static GET_REPO_TAG_SCAN_SUMMARY: Api = Api {
    action: "GetRepoTagScanSummary",
    method: Method::Post,
    ram_action: "cr:GetScanCount",
};
static LIST_REPO_TAG_SCAN_RESULT: Api = Api {
    action: "ListRepoTagScanResult",
    method: Method::Post,
    ram_action: "cr:GetScan",
};

pub struct AcrScanner {
    client: RpcClient,
    region: String,
    instance_id: Option<String>,
    scan_on_missing: bool,
    scan_requests: ScanRequestGate,
    vulnerability_details: bool,
    /// Time limit of the whole vulnerability-list read (one request's `timeout`).
    details_timeout: Duration,
    /// Registry host (lower case) -> InstanceId.
    instances: moka::future::Cache<String, String>,
    /// (InstanceId, namespace/repo) -> RepoId.
    repos: moka::future::Cache<(String, String), String>,
}

impl std::fmt::Debug for AcrScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcrScanner")
            .field("client", &self.client)
            .field("region", &self.region)
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

/// Where the image sits in ACR.
struct Located {
    instance: String,
    repo_id: String,
    tag: String,
    /// The digest as ACR itself writes it (passed back unchanged).
    digest: String,
}

impl AcrScanner {
    pub fn new(config: &AcrConfig) -> Result<AcrScanner, SetupError> {
        Self::with_env(config, &|k| std::env::var(k).ok())
    }

    /// As `new`, with the environment given (tests).
    pub fn with_env(
        config: &AcrConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AcrScanner, SetupError> {
        config.validate("acr")?;
        let client = RpcClient::new("cr", VERSION, &config.client_settings(), env)?;
        Ok(AcrScanner {
            client,
            region: config.region.trim().to_string(),
            instance_id: config.instance_id.clone().filter(|s| !s.trim().is_empty()),
            scan_on_missing: config.scan_on_missing,
            scan_requests: ScanRequestGate::new(config.scan_requests),
            vulnerability_details: config.product.vulnerability_details,
            details_timeout: config.timeout,
            instances: moka::future::Cache::builder()
                .max_capacity(1_000)
                .time_to_live(ID_CACHE_TTL)
                .build(),
            repos: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ID_CACHE_TTL)
                .build(),
        })
    }

    pub fn credential_source(&self) -> &'static str {
        self.client.credential_source()
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

    /// As `call`, with "does not exist" answers as `None`.
    async fn call_found(
        &self,
        api: &'static Api,
        params: &[(&str, String)],
        deadline: Instant,
    ) -> Result<Option<Value>, ScanError> {
        match self.client.call(api, params, deadline).await {
            Ok(v) => Ok(Some(v)),
            Err(RpcError::Api(e)) if e.is_not_found() => Ok(None),
            Err(e) => Err(scan_error(e, KIND)),
        }
    }

    async fn instance_for(&self, host: &str, deadline: Instant) -> Result<String, ScanError> {
        if let Some(id) = &self.instance_id {
            return Ok(id.clone());
        }
        if let Some(id) = self.instances.get(host).await {
            return Ok(id);
        }
        let mut checked = 0usize;
        let mut page = 1u64;
        loop {
            let answer = self
                .call(
                    &LIST_INSTANCE,
                    &[("PageNo", page.to_string()), ("PageSize", "50".to_string())],
                    deadline,
                )
                .await?;
            let instances = answer
                .get("Instances")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for instance in &instances {
                let Some(id) = json_str(instance, "InstanceId") else {
                    continue;
                };
                checked += 1;
                let endpoints = self
                    .call(
                        &LIST_INSTANCE_ENDPOINT,
                        &[
                            ("InstanceId", id.to_string()),
                            ("ModuleName", "Registry".to_string()),
                        ],
                        deadline,
                    )
                    .await?;
                let mut matched = false;
                for domain in endpoint_domains(&endpoints) {
                    let domain = domain.to_ascii_lowercase();
                    matched |= domain == host;
                    self.instances.insert(domain, id.to_string()).await;
                }
                if matched {
                    return Ok(id.to_string());
                }
            }
            let total = json_u64(&answer, "TotalCount").unwrap_or(0) as usize;
            if instances.is_empty() || checked >= total || page >= 20 {
                break;
            }
            page += 1;
        }
        Err(ScanError::Config {
            scanner: KIND,
            message: format!(
                "registry host {host} is not a domain of any of the {checked} ACR EE instances in region {} \
                 that these credentials can list; set instanceId in the acr scanner config",
                self.region
            ),
        })
    }

    async fn repo_id(
        &self,
        instance: &str,
        namespace: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<String>, ScanError> {
        let key = (instance.to_string(), format!("{namespace}/{name}"));
        if let Some(id) = self.repos.get(&key).await {
            return Ok(Some(id));
        }
        let answer = self
            .call_found(
                &GET_REPOSITORY,
                &[
                    ("InstanceId", instance.to_string()),
                    ("RepoNamespaceName", namespace.to_string()),
                    ("RepoName", name.to_string()),
                ],
                deadline,
            )
            .await?;
        let Some(id) = answer.as_ref().and_then(|a| json_str(a, "RepoId")) else {
            return Ok(None);
        };
        self.repos.insert(key, id.to_string()).await;
        Ok(Some(id.to_string()))
    }

    /// The tag pointing at `digest` and ACR's spelling of the digest.
    async fn tag_for(
        &self,
        instance: &str,
        repo_id: &str,
        tag: Option<&str>,
        digest: &str,
        deadline: Instant,
    ) -> Result<Option<(String, String)>, ScanError> {
        if let Some(tag) = tag {
            let answer = self
                .call_found(
                    &GET_REPO_TAG,
                    &[
                        ("InstanceId", instance.to_string()),
                        ("RepoId", repo_id.to_string()),
                        ("Tag", tag.to_string()),
                    ],
                    deadline,
                )
                .await?;
            if let Some(d) = answer.as_ref().and_then(|a| json_str(a, "Digest")) {
                if same_digest(d, digest) {
                    return Ok(Some((tag.to_string(), d.to_string())));
                }
            }
            // The tag moved since it was resolved: look for another tag of the digest.
        }
        let mut seen = 0usize;
        for page in 1u64.. {
            let answer = self
                .call(
                    &LIST_REPO_TAG,
                    &[
                        ("InstanceId", instance.to_string()),
                        ("RepoId", repo_id.to_string()),
                        ("PageNo", page.to_string()),
                        ("PageSize", PAGE_SIZE.to_string()),
                    ],
                    deadline,
                )
                .await?;
            let images = answer
                .get("Images")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for image in images {
                if let (Some(t), Some(d)) = (json_str(image, "Tag"), json_str(image, "Digest")) {
                    if same_digest(d, digest) {
                        return Ok(Some((t.to_string(), d.to_string())));
                    }
                }
            }
            seen += images.len();
            if list_done(seen, images.len(), &answer) || seen >= MAX_TAGS_SEARCHED {
                break;
            }
        }
        Ok(None)
    }

    /// Every page of ListRepoTagScanResult, up to `MAX_ENTRIES` vulnerabilities. The
    /// server may serve shorter pages than asked: pages follow until `TotalCount`
    /// entries are read (or, without it, until a short or empty page).
    async fn scan_results(
        &self,
        params: &[(&str, String)],
        deadline: Instant,
    ) -> Result<Vec<Vulnerability>, String> {
        let mut out: Vec<Vulnerability> = Vec::new();
        for page in 1u64.. {
            let mut paged = params.to_vec();
            paged.push(("PageNo", page.to_string()));
            paged.push(("PageSize", PAGE_SIZE.to_string()));
            let answer = self
                .call(&LIST_REPO_TAG_SCAN_RESULT, &paged, deadline)
                .await
                .map_err(|e| e.to_string())?;
            let (entries, total) = scan_result_page(&answer)?;
            if total.is_some_and(|t| t > MAX_ENTRIES as u64) {
                return Err(format!(
                    "{} vulnerabilities listed, more than the {MAX_ENTRIES} kept per image",
                    total.unwrap_or(0)
                ));
            }
            let page_len = entries.len();
            out.extend(entries);
            if out.len() > MAX_ENTRIES {
                return Err(format!(
                    "more than the {MAX_ENTRIES} vulnerabilities kept per image"
                ));
            }
            if page_len == 0 && total.is_some_and(|t| (out.len() as u64) < t) {
                return Err(format!(
                    "the list ended after {} of {} vulnerabilities",
                    out.len(),
                    total.unwrap_or(0)
                ));
            }
            if list_done(out.len(), page_len, &answer) {
                break;
            }
        }
        Ok(out)
    }

    /// Adds the vulnerability list of a finished scan. Any failure keeps the
    /// counts: the rules that need the list then say they could not be applied.
    async fn add_vulnerabilities(
        &self,
        summary: &mut ScanSummary,
        params: &[(&str, String)],
        target: &ScanTarget<'_>,
        deadline: Instant,
    ) {
        vulnlist::fill(
            summary,
            target.image,
            self.details_timeout,
            self.scan_results(params, deadline),
        )
        .await;
    }

    async fn locate(
        &self,
        target: &ScanTarget<'_>,
        deadline: Instant,
    ) -> Result<Option<Located>, ScanError> {
        let host = target.image.host().to_ascii_lowercase();
        // ACR EE repositories are always `<namespace>/<name>`.
        let Some((namespace, name)) = target.image.repository.split_once('/') else {
            return Ok(None);
        };
        let instance = self.instance_for(&host, deadline).await?;
        let Some(repo_id) = self.repo_id(&instance, namespace, name, deadline).await? else {
            return Ok(None);
        };
        let tag = target.image.tag.as_deref();
        let Some((tag, digest)) = self
            .tag_for(&instance, &repo_id, tag, target.digest, deadline)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Located {
            instance,
            repo_id,
            tag,
            digest,
        }))
    }
}

/// Every `Endpoints[].Domains[].Domain` of a ListInstanceEndpoint answer.
fn endpoint_domains(answer: &Value) -> Vec<&str> {
    answer
        .get("Endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("Domains").and_then(Value::as_array))
        .flatten()
        .filter_map(|d| json_str(d, "Domain"))
        .collect()
}

/// Whether a paged list is complete after a page of `page_len` entries (`seen` read in
/// all): by the answer's `TotalCount` when it has one, else by an empty page or one
/// shorter than the answer's own `PageSize`. What was asked for decides nothing: the
/// server may page lower.
fn list_done(seen: usize, page_len: usize, answer: &Value) -> bool {
    match json_u64(answer, "TotalCount") {
        Some(total) => seen as u64 >= total || page_len == 0,
        None => {
            page_len == 0 || json_u64(answer, "PageSize").is_some_and(|s| (page_len as u64) < s)
        }
    }
}

/// GetRepoTagScanSummary counts. Critical stays `None`: ACR has no such level.
pub fn counts_from_summary(answer: &Value) -> Option<SeverityCounts> {
    let keys = [
        "HighSeverity",
        "MediumSeverity",
        "LowSeverity",
        "UnknownSeverity",
    ];
    if keys.iter().all(|k| answer.get(*k).is_none()) {
        return None;
    }
    let n = |k: &str| Some(json_u64(answer, k).unwrap_or(0));
    Some(SeverityCounts {
        critical: None,
        high: n("HighSeverity"),
        medium: n("MediumSeverity"),
        low: n("LowSeverity"),
        unknown: n("UnknownSeverity"),
    })
}

/// One ListRepoTagScanResult page: its entries and `TotalCount`. The severity maps
/// as GetRepoTagScanSummary's fields do (High/Medium/Low/Unknown, no critical); an
/// entry has a fix when `VersionFixed` or `FixCmd` is non-empty, none when they are
/// present and empty, and an unknown fix state when both are absent. ACR gives no
/// publication date.
pub fn scan_result_page(answer: &Value) -> Result<(Vec<Vulnerability>, Option<u64>), String> {
    let entries = match answer.get("Vulnerabilities") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(entries)) => entries.as_slice(),
        Some(_) => return Err("`Vulnerabilities` is not a list".into()),
    };
    if entries.len() > PAGE_SIZE {
        return Err(format!(
            "{} entries on a page of {PAGE_SIZE}",
            entries.len()
        ));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let id = ["CveName", "AliasName"]
            .iter()
            .filter_map(|k| json_str(entry, k))
            .map(str::trim)
            .find(|id| !id.is_empty())
            .filter(|id| id.len() <= MAX_ID_LEN)
            .ok_or_else(|| format!("entry {i} has no usable CveName"))?;
        let fix_fields: Vec<&str> = ["VersionFixed", "FixCmd"]
            .iter()
            .filter_map(|k| json_str(entry, k))
            .collect();
        let fixable = if fix_fields.iter().any(|f| !f.trim().is_empty()) {
            Some(true)
        } else if fix_fields.is_empty() {
            None
        } else {
            Some(false)
        };
        out.push(Vulnerability {
            id: id.to_string(),
            severity: Severity::parse_loose(json_str(entry, "Severity").unwrap_or("")),
            fixable,
            published: None,
        });
    }
    Ok((out, json_u64(answer, "TotalCount")))
}

#[async_trait]
impl Scanner for AcrScanner {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn summary(&self, target: &ScanTarget<'_>) -> Result<ScanSummary, ScanError> {
        let deadline = self.client.deadline();
        let Some(at) = self.locate(target, deadline).await? else {
            tracing::debug!(image = %target.image, digest = target.digest, "not found in ACR");
            return Ok(ScanSummary::status_only(KIND, ScanStatus::NotScanned));
        };
        let params = [
            ("InstanceId", at.instance.clone()),
            ("RepoId", at.repo_id.clone()),
            ("Tag", at.tag.clone()),
            ("Digest", at.digest.clone()),
        ];
        let status = self
            .call_found(&GET_REPO_TAG_SCAN_STATUS, &params, deadline)
            .await?;
        let status = status
            .as_ref()
            .and_then(|s| json_str(s, "Status"))
            .unwrap_or("")
            .to_ascii_uppercase();
        match status.as_str() {
            "COMPLETE" => {}
            "SCANNING" | "RETRYING" => {
                return Ok(ScanSummary::status_only(KIND, ScanStatus::Scanning));
            }
            "FAILED" => return Ok(ScanSummary::status_only(KIND, ScanStatus::Failed)),
            other => {
                if !other.is_empty() {
                    tracing::warn!(
                        status = other,
                        "unknown ACR scan status; taken as not scanned"
                    );
                }
                if self.scan_on_missing {
                    if let Err(why) = self.scan_requests.permit() {
                        tracing::info!(image = %target.image, digest = target.digest, reason = %why, "ACR scan not requested");
                        return Ok(ScanSummary::status_with_note(
                            KIND,
                            ScanStatus::NotScanned,
                            why,
                        ));
                    }
                    self.call(&CREATE_REPO_TAG_SCAN_TASK, &params, deadline)
                        .await?;
                    tracing::info!(image = %target.image, digest = target.digest, "asked ACR to scan");
                    return Ok(ScanSummary::status_only(KIND, ScanStatus::Scanning));
                }
                return Ok(ScanSummary::status_only(KIND, ScanStatus::NotScanned));
            }
        }
        let answer = self
            .call(&GET_REPO_TAG_SCAN_SUMMARY, &params, deadline)
            .await?;
        let counts = counts_from_summary(&answer).ok_or_else(|| ScanError::Unavailable {
            scanner: KIND,
            message: format!(
                "cr GetRepoTagScanSummary: answer without severity counts (RequestId {})",
                json_str(&answer, "RequestId").unwrap_or("none")
            ),
        })?;
        let mut summary = ScanSummary::status_only(KIND, ScanStatus::Complete);
        summary.counts = counts;
        if self.vulnerability_details {
            self.add_vulnerabilities(&mut summary, &params, target, deadline)
                .await;
        }
        tracing::debug!(digest = digest_hex(target.digest), "ACR summary read");
        Ok(summary)
    }
}

impl AcrScanner {
    /// `[InstanceId, RepoId, Tag, Digest as ACR writes it]` of an image, or `None`
    /// when ACR does not hold it.
    pub(crate) async fn scan_task_ids(
        &self,
        target: &ScanTarget<'_>,
    ) -> Result<Option<[String; 4]>, ScanError> {
        let located = self.locate(target, self.client.deadline()).await?;
        Ok(located.map(|l| [l.instance, l.repo_id, l.tag, l.digest]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_example_counts() {
        // The example answer of the GetRepoTagScanSummary reference page.
        let answer: Value = serde_json::from_str(
            r#"{"UnknownSeverity": 4, "RequestId": "BC648259-91A7-4502-BED3-EDF64361FA83",
                "TotalSeverity": 196, "Code": "success", "MediumSeverity": 81,
                "IsSuccess": true, "HighSeverity": 22, "LowSeverity": 89}"#,
        )
        .unwrap();
        let c = counts_from_summary(&answer).unwrap();
        assert_eq!(c.critical, None);
        assert_eq!(
            (c.high, c.medium, c.low, c.unknown),
            (Some(22), Some(81), Some(89), Some(4))
        );
        assert_eq!(c.total(), 196);
        assert!(counts_from_summary(&serde_json::json!({"Code": "success"})).is_none());
    }

    #[test]
    fn scan_result_pages_are_read_without_trusting_their_shape() {
        let page = serde_json::json!({
            "TotalCount": "3", "PageNo": 1, "PageSize": 100, "Code": "success", "IsSuccess": true,
            "Vulnerabilities": [
                {"CveName": "CVE-2009-5155", "Severity": "High", "Feature": "libc6", "Version": "2.28",
                 "VersionFixed": "2.28-10", "FixCmd": "apt-get install --only-upgrade libc6",
                 "Description": "long text", "CveLink": "https://security-tracker.debian.org/tracker/CVE-2009-5155"},
                {"CveName": "CVE-2020-1", "Severity": "Low", "VersionFixed": "", "FixCmd": ""},
                {"AliasName": "CVE-2020-2", "Severity": "weird"}
            ]
        });
        let (list, total) = scan_result_page(&page).unwrap();
        assert_eq!(total, Some(3));
        assert_eq!(list[0].id, "CVE-2009-5155");
        assert_eq!(list[0].severity, Severity::High);
        assert_eq!(list[0].fixable, Some(true));
        assert_eq!(list[1].fixable, Some(false), "present and empty: no fix");
        assert_eq!(
            list[2].id, "CVE-2020-2",
            "the deprecated alias as a fallback"
        );
        assert_eq!(list[2].severity, Severity::Unknown);
        assert_eq!(list[2].fixable, None, "ACR did not say");
        assert!(list.iter().all(|v| v.published.is_none()));

        // Malformed answers are errors, never panics.
        for bad in [
            serde_json::json!({"Vulnerabilities": "x"}),
            serde_json::json!({"Vulnerabilities": [7]}),
            serde_json::json!({"Vulnerabilities": [{"Severity": "High"}]}),
            serde_json::json!({"Vulnerabilities": [{"CveName": "  ", "Severity": "High"}]}),
            serde_json::json!({"Vulnerabilities": [{"CveName": "C".repeat(500)}]}),
            serde_json::json!({"Vulnerabilities": (0..101).map(|i| serde_json::json!({"CveName": format!("CVE-{i}")})).collect::<Vec<_>>()}),
        ] {
            assert!(scan_result_page(&bad).is_err(), "{bad}");
        }
        let (list, total) =
            scan_result_page(&serde_json::json!({"TotalCount": -1, "Vulnerabilities": null}))
                .unwrap();
        assert!(list.is_empty());
        assert_eq!(total, None);
        assert!(
            scan_result_page(&serde_json::json!([1, 2]))
                .unwrap()
                .0
                .is_empty()
        );
    }
}
