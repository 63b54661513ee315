//! `hss`: Huawei Cloud Host Security Service (HSS v5) image scans of SWR images.
//!
//! For `swr.<region>.myhuaweicloud.com/<org>/<repo>@<digest>`:
//! 1. ListRegistryImages (`GET /v5/{project_id}/image/registries/images`) filtered by
//!    `namespace=<org>`, `image_name=<repo>` (and `image_version=<tag>` first when the
//!    reference has a tag), matching `image_digest` against the digest. Not found:
//!    not scanned (HSS has not synchronized the image).
//! 2. The record's `scan_status` gives the status; only a finished scan has counts.
//! 3. ListImageVulnerabilities (`GET /v5/{project_id}/image/{image_id}/vulnerabilities`)
//!    once per `repair_necessity` and once unfiltered, reading `total_num`:
//!    `immediate_repair` -> high, `delay_repair` -> medium, `not_needed_repair` -> low,
//!    the rest of the unfiltered total -> unknown. HSS has no critical level: critical
//!    stays `None` (not reported), never a made-up zero. HSS counts handled and
//!    unhandled vulnerabilities alike; `handleStatus: unhandled` asks for the
//!    unhandled ones only (`handle_status=unhandled`).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::backoff::{self, Attempt};
use super::{ScanTarget, Scanner};
use crate::cloud::huawei::auth::{AuthError, Authenticator, Outgoing};
use crate::cloud::huawei::error::ApiError;
use crate::cloud::query::{canonical_query, percent_encode};
use crate::config::huawei::{HandleStatus, HssConfig};
use crate::domain::scan_error::ScanError;
use crate::domain::summary::{ExtraCount, ScanStatus, ScanSummary, SeverityCounts};
use crate::scan::setup_error::SetupError;

pub(crate) const KIND: &str = "hss";

/// Versions of one repository looked through for a digest (200 a page).
const MAX_PAGES: u64 = 10;
const PAGE_SIZE: u64 = 200;

/// An authentication failure as the engine sees it.
fn auth_error(e: AuthError) -> ScanError {
    match e {
        AuthError::Config(message) => ScanError::Config {
            scanner: KIND,
            message,
        },
        AuthError::Unavailable(message) => ScanError::Unavailable {
            scanner: KIND,
            message,
        },
    }
}

/// One HSS operation, for messages.
#[derive(Clone, Copy)]
struct Op {
    name: &'static str,
    /// The IAM action an IAM user needs for it.
    permission: &'static str,
}

const LIST_IMAGES: Op = Op {
    name: "ListRegistryImages",
    permission: "hss:image:list",
};
const LIST_VULS: Op = Op {
    name: "ListImageVulnerabilities",
    permission: "hss:image:list",
};
const REPORT_STATISTIC: Op = Op {
    name: "ShowImageSecurityReportStatistic",
    permission: "hss:image:list",
};

/// One HTTP answer, whatever its status.
struct Reply {
    status: u16,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    body: bytes::Bytes,
}

pub struct HssScanner {
    config: HssConfig,
    http: reqwest::Client,
    auth: Authenticator,
    /// `scheme://host[:port]` without a trailing slash.
    base: String,
    /// The `Host` header value (signed).
    host: String,
}

#[derive(Debug, Deserialize)]
struct ListImagesResponse {
    #[serde(default)]
    total_num: Option<u64>,
    #[serde(default)]
    data_list: Vec<RegistryImage>,
}

#[derive(Debug, Clone, Deserialize)]
struct RegistryImage {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    image_name: Option<String>,
    #[serde(default)]
    image_id: Option<String>,
    #[serde(default)]
    image_digest: Option<String>,
    #[serde(default)]
    image_version: Option<String>,
    #[serde(default)]
    scan_status: Option<String>,
    #[serde(default)]
    scan_failed_desc: Option<String>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    latest_scan_time: Option<i64>,
    #[serde(default)]
    unsafe_setting_num: Option<u64>,
    #[serde(default)]
    malicious_file_num: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct VulListResponse {
    total_num: u64,
}

/// HSS `scan_status` -> vulngate's status.
pub fn map_scan_status(status: &str) -> ScanStatus {
    match status {
        "success" => ScanStatus::Complete,
        "scanning" | "waiting_for_scan" => ScanStatus::Scanning,
        "unscan" => ScanStatus::NotScanned,
        // failed, download_failed, image_oversized, and anything new.
        _ => ScanStatus::Failed,
    }
}

/// Counts from the totals of the vulnerability list filtered by repair necessity
/// (immediate, delayed, not needed) and unfiltered: what no necessity covers is unknown.
/// HSS has no critical level.
pub fn counts_from_totals(high: u64, medium: u64, low: u64, all: u64) -> SeverityCounts {
    let classified = high.saturating_add(medium).saturating_add(low);
    SeverityCounts {
        critical: None,
        high: Some(high),
        medium: Some(medium),
        low: Some(low),
        unknown: Some(all.saturating_sub(classified)),
    }
}

/// `<org>/<repo...>` -> (namespace, image name). SWR names always have an organization.
pub(crate) fn split_repository(repository: &str) -> Option<(&str, &str)> {
    repository
        .split_once('/')
        .filter(|(org, name)| !org.is_empty() && !name.is_empty())
}

fn same_digest(a: &str, b: &str) -> bool {
    let strip = |s: &str| {
        let s = s.trim();
        s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase()
    };
    strip(a) == strip(b)
}

impl HssScanner {
    pub fn new(config: &HssConfig) -> Result<HssScanner, SetupError> {
        config.validate()?;
        let endpoint = config.endpoint();
        let url = SetupError::http_url("endpoint", &endpoint, &endpoint)?;
        // http_url checked that there is a host.
        let h = url.host_str().unwrap_or_default();
        let host = match url.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        };
        config.auth.check()?;
        let http = crate::crypto::http_client()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(SetupError::HttpClient)?;
        let auth = Authenticator::new(
            &config.auth,
            http.clone(),
            config.timeout,
            &config.region,
            &config.project_id,
        );
        Ok(HssScanner {
            config: config.clone(),
            http,
            auth,
            base: format!("{}://{host}", url.scheme()),
            host,
        })
    }

    fn common_query(&self) -> Vec<(String, String)> {
        let mut q = vec![("image_type".to_string(), self.config.image_type.clone())];
        if let Some(ep) = &self.config.enterprise_project_id {
            q.push(("enterprise_project_id".into(), ep.clone()));
        }
        if let Some(id) = &self.config.instance_id {
            q.push(("instance_id".into(), id.clone()));
        }
        q
    }

    /// One GET to HSS, throttling retried within the budget.
    async fn get<T: DeserializeOwned>(
        &self,
        op: Op,
        segments: &[&str],
        query: Vec<(String, String)>,
    ) -> Result<T, ScanError> {
        self.call(op, "GET", segments, query, None).await
    }

    /// One HSS call; `body` is sent as JSON and signed byte for byte.
    async fn call<T: DeserializeOwned>(
        &self,
        op: Op,
        method: &str,
        segments: &[&str],
        query: Vec<(String, String)>,
        body: Option<&[u8]>,
    ) -> Result<T, ScanError> {
        // The signature is computed over '/'-separated segments: a value with '/'
        // in it (an id HSS gave us) would be signed differently from how it is sent.
        if let Some(bad) = segments.iter().find(|s| s.is_empty() || s.contains('/')) {
            return Err(ScanError::Unavailable {
                scanner: KIND,
                message: format!("{}: cannot address path segment {bad:?}", op.name),
            });
        }
        let path = format!("/{}", segments.join("/"));
        backoff::retry_throttled(&self.config.retry, || async {
            let mut attempt = self.send_once(op, method, &path, &query, body).await;
            // A revoked token: fetch a new one and try once more.
            if matches!(&attempt, Ok(r) if r.status == 401) && self.auth.on_unauthorized().await {
                attempt = self.send_once(op, method, &path, &query, body).await;
            }
            match attempt {
                Err(e) => Attempt::Done(Err(e)),
                Ok(reply) => self.classify(op, reply),
            }
        })
        .await
    }

    /// Sends one authenticated request; `Ok` carries any HTTP answer.
    async fn send_once(
        &self,
        op: Op,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, ScanError> {
        // Path segments are escaped as the signer escapes them, and the query is
        // sent in canonical form: what is signed is exactly what is sent.
        let wire_path = path
            .split('/')
            .map(percent_encode)
            .collect::<Vec<_>>()
            .join("/");
        let canonical_query = canonical_query(query);
        let mut url = format!("{}{wire_path}", self.base);
        if !canonical_query.is_empty() {
            url.push('?');
            url.push_str(&canonical_query);
        }
        let mut headers = vec![
            ("Host".to_string(), self.host.clone()),
            ("X-Project-Id".to_string(), self.config.project_id.clone()),
            ("region".to_string(), self.config.region.clone()),
        ];
        if body.is_some() {
            // Not signed (the SDK's rule), but sent.
            headers.push((
                "Content-Type".into(),
                "application/json;charset=UTF-8".into(),
            ));
        }
        let headers = self
            .auth
            .headers(Outgoing {
                method,
                path,
                query,
                headers,
                body: body.unwrap_or_default(),
            })
            .await
            .map_err(auth_error)?;
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| ScanError::Config {
                scanner: KIND,
                message: format!("{}: method: {e}", op.name),
            })?;
        let mut req = self.http.request(method, &url);
        for (name, value) in &headers {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(body) = body {
            req = req.body(body.to_vec());
        }
        let resp = req.send().await.map_err(|e| self.transport(op, &e))?;
        let status = resp.status().as_u16();
        let request_id = crate::httputil::request_id(resp.headers());
        let retry_after = backoff::retry_after(resp.headers());
        let body = resp.bytes().await.map_err(|e| self.transport(op, &e))?;
        Ok(Reply {
            status,
            request_id,
            retry_after,
            body,
        })
    }

    /// Checks credentials, permission and endpoint without naming an image:
    /// ShowImageSecurityReportStatistic (`POST /v5/{project_id}/image/security-report/statistic`)
    /// over all images. Returns the number of vulnerability records HSS would
    /// export (not a count vulngate judges). For start-up checks.
    pub async fn check_access(&self) -> Result<u64, ScanError> {
        #[derive(Deserialize)]
        struct Statistic {
            total_num: u64,
        }
        let project = self.config.project_id.clone();
        let mut query = vec![(
            "security_report_type".to_string(),
            "vulnerability".to_string(),
        )];
        if let Some(ep) = &self.config.enterprise_project_id {
            query.push(("enterprise_project_id".into(), ep.clone()));
        }
        let body = br#"{"operate_all":true}"#;
        let s: Statistic = self
            .call(
                REPORT_STATISTIC,
                "POST",
                &["v5", &project, "image", "security-report", "statistic"],
                query,
                Some(body),
            )
            .await?;
        Ok(s.total_num)
    }

    fn transport(&self, op: Op, e: &reqwest::Error) -> ScanError {
        ScanError::Unavailable {
            scanner: KIND,
            message: format!(
                "{} at {}: {}",
                op.name,
                self.base,
                crate::httputil::transport_error(e, self.config.timeout)
            ),
        }
    }

    fn classify<T: DeserializeOwned>(&self, op: Op, reply: Reply) -> Attempt<T> {
        let Reply {
            status,
            request_id,
            retry_after,
            body,
        } = reply;
        if (200..300).contains(&status) {
            return Attempt::Done(serde_json::from_slice::<T>(&body).map_err(|e| {
                ScanError::Unavailable {
                    scanner: KIND,
                    message: format!(
                        "{}: unexpected response body: {e}{}",
                        op.name,
                        request_id
                            .map(|id| format!(", request id {id}"))
                            .unwrap_or_default()
                    ),
                }
            }));
        }
        let err = ApiError::from_response(status, request_id, &body);
        let described = err.describe();
        let config = |message: String| {
            Attempt::Done(Err(ScanError::Config {
                scanner: KIND,
                message,
            }))
        };
        if err.is_throttling() {
            return Attempt::Throttled {
                error: ScanError::Unavailable {
                    scanner: KIND,
                    message: format!("{}: throttled, {described}", op.name),
                },
                retry_after,
            };
        }
        if err.is_permission_denied() {
            return config(format!(
                "{}: permission denied, {described}; the IAM user needs {} (HSS) in project {}",
                op.name, op.permission, self.config.project_id
            ));
        }
        match status {
            401 if self.auth.is_token() => config(format!(
                "{}: IAM token rejected, {described}; check the IAM user and its password",
                op.name
            )),
            401 => config(format!(
                "{}: AK/SK authentication failed, {described}; check the access key and secret key",
                op.name
            )),
            404 => config(format!(
                "{}: not found, {described}; check endpoint {} and projectId {}",
                op.name, self.base, self.config.project_id
            )),
            400..=499 => config(format!("{}: request rejected, {described}", op.name)),
            _ => Attempt::Done(Err(ScanError::Unavailable {
                scanner: KIND,
                message: format!("{}: {described}", op.name),
            })),
        }
    }

    /// The HSS record of the image with this digest, if HSS has it.
    async fn find_image(
        &self,
        namespace: &str,
        name: &str,
        tag: Option<&str>,
        digest: &str,
    ) -> Result<Option<RegistryImage>, ScanError> {
        // The tag narrows the listing to one record in the common case; when the
        // tag has moved on, the digest is looked for among all versions.
        if let Some(tag) = tag {
            let found = self.list_images(namespace, name, Some(tag), digest).await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        self.list_images(namespace, name, None, digest).await
    }

    async fn list_images(
        &self,
        namespace: &str,
        name: &str,
        version: Option<&str>,
        digest: &str,
    ) -> Result<Option<RegistryImage>, ScanError> {
        let project = self.config.project_id.clone();
        for page in 0..MAX_PAGES {
            let mut query = self.common_query();
            query.push(("namespace".into(), namespace.into()));
            query.push(("image_name".into(), name.into()));
            if let Some(v) = version {
                query.push(("image_version".into(), v.into()));
            }
            query.push(("offset".into(), (page * PAGE_SIZE).to_string()));
            query.push(("limit".into(), PAGE_SIZE.to_string()));
            let resp: ListImagesResponse = self
                .get(
                    LIST_IMAGES,
                    &["v5", &project, "image", "registries", "images"],
                    query,
                )
                .await?;
            let n = resp.data_list.len() as u64;
            // `image_name` may match loosely on the HSS side: check every field.
            let hit = resp.data_list.into_iter().find(|r| {
                r.namespace.as_deref() == Some(namespace)
                    && r.image_name.as_deref() == Some(name)
                    && r.image_digest
                        .as_deref()
                        .is_some_and(|d| same_digest(d, digest))
            });
            if hit.is_some() {
                return Ok(hit);
            }
            let seen = page * PAGE_SIZE + n;
            if n < PAGE_SIZE || resp.total_num.is_some_and(|t| seen >= t) {
                return Ok(None);
            }
        }
        tracing::warn!(
            scanner = KIND,
            namespace,
            image = name,
            "digest not among the first {} versions listed by HSS",
            MAX_PAGES * PAGE_SIZE
        );
        Ok(None)
    }

    async fn vul_total(
        &self,
        record: &RegistryImage,
        image_id: &str,
        namespace: &str,
        name: &str,
        necessity: Option<&str>,
    ) -> Result<u64, ScanError> {
        let mut query = self.common_query();
        query.push(("namespace".into(), namespace.into()));
        query.push(("image_name".into(), name.into()));
        query.push((
            "tag_name".into(),
            record.image_version.clone().unwrap_or_default(),
        ));
        query.push(("offset".into(), "0".into()));
        query.push(("limit".into(), "10".into()));
        if let Some(n) = necessity {
            query.push(("repair_necessity".into(), n.into()));
        }
        if self.config.handle_status == HandleStatus::Unhandled {
            query.push(("handle_status".into(), "unhandled".into()));
        }
        let project = self.config.project_id.clone();
        let resp: VulListResponse = self
            .get(
                LIST_VULS,
                &["v5", &project, "image", image_id, "vulnerabilities"],
                query,
            )
            .await?;
        Ok(resp.total_num)
    }
}

#[async_trait]
impl Scanner for HssScanner {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn summary(&self, target: &ScanTarget<'_>) -> Result<ScanSummary, ScanError> {
        let Some((namespace, name)) = split_repository(&target.image.repository) else {
            return Err(ScanError::Config {
                scanner: KIND,
                message: format!(
                    "{}: an SWR image is <organization>/<repository>; this route sends other images to hss",
                    target.image
                ),
            });
        };
        let Some(record) = self
            .find_image(namespace, name, target.image.tag.as_deref(), target.digest)
            .await?
        else {
            return Ok(ScanSummary::status_only(KIND, ScanStatus::NotScanned));
        };
        let raw_status = record.scan_status.clone().unwrap_or_default();
        let status = map_scan_status(&raw_status);
        if status != ScanStatus::Complete {
            if status == ScanStatus::Failed {
                tracing::info!(
                    scanner = KIND,
                    image = %target.image,
                    status = raw_status,
                    reason = record.scan_failed_desc.as_deref().unwrap_or(""),
                    "HSS scan of the image did not succeed"
                );
            }
            return Ok(ScanSummary::status_only(KIND, status));
        }
        let Some(image_id) = record.image_id.clone().filter(|id| !id.is_empty()) else {
            return Err(ScanError::Unavailable {
                scanner: KIND,
                message: format!(
                    "ListRegistryImages: record of {} has no image_id",
                    target.image
                ),
            });
        };
        let (high, medium, low, all) = futures::try_join!(
            self.vul_total(
                &record,
                &image_id,
                namespace,
                name,
                Some("immediate_repair")
            ),
            self.vul_total(&record, &image_id, namespace, name, Some("delay_repair")),
            self.vul_total(
                &record,
                &image_id,
                namespace,
                name,
                Some("not_needed_repair")
            ),
            self.vul_total(&record, &image_id, namespace, name, None),
        )?;
        let counts = counts_from_totals(high, medium, low, all);
        let mut extra = BTreeMap::new();
        if let Some(n) = record.unsafe_setting_num {
            extra.insert(ExtraCount::BaselineRisks, n);
        }
        if let Some(n) = record.malicious_file_num {
            extra.insert(ExtraCount::MaliciousFiles, n);
        }
        Ok(ScanSummary {
            scanner: KIND,
            status,
            counts,
            fixable: None,
            extra,
            finished_at: record.latest_scan_time.and_then(|ms| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
            }),
            vulnerabilities: Vec::new(),
            note: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::huawei::HuaweiAuthConfig;

    #[test]
    fn scan_status_mapping() {
        assert_eq!(map_scan_status("success"), ScanStatus::Complete);
        assert_eq!(map_scan_status("scanning"), ScanStatus::Scanning);
        assert_eq!(map_scan_status("waiting_for_scan"), ScanStatus::Scanning);
        assert_eq!(map_scan_status("unscan"), ScanStatus::NotScanned);
        for failed in ["failed", "download_failed", "image_oversized", "new_state"] {
            assert_eq!(map_scan_status(failed), ScanStatus::Failed);
        }
    }

    #[test]
    fn repository_split_and_digest_compare() {
        assert_eq!(split_repository("org/nginx"), Some(("org", "nginx")));
        assert_eq!(split_repository("org/a/b"), Some(("org", "a/b")));
        assert_eq!(split_repository("nginx"), None);
        assert!(same_digest("sha256:ABCD", "sha256:abcd"));
        assert!(same_digest("abcd", "sha256:abcd"));
        assert!(!same_digest("sha256:abce", "sha256:abcd"));
    }

    fn setup_error(config: &HssConfig) -> String {
        HssScanner::new(config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    fn config(yaml: &str) -> Result<HssConfig, String> {
        serde_saphyr::from_str::<HssConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn config_defaults_and_validation() {
        let c = config("region: cn-north-4\nprojectId: abc123\n").unwrap();
        assert_eq!(c.image_type, "private_image");
        assert_eq!(c.endpoint(), "https://hss.cn-north-4.myhuaweicloud.com");
        // Huawei Cloud Europe is served under its own domain (the SDK's region table).
        let eu = config("region: eu-west-101\nprojectId: abc123\n").unwrap();
        assert_eq!(eu.endpoint(), "https://hss.eu-west-101.myhuaweicloud.eu");
        assert_eq!(c.auth, HuaweiAuthConfig::default());
        assert_eq!(c.retry.max_retries, 3);
        assert!(
            config("region: r\nprojectId: p\nsecretKey: x\n")
                .unwrap_err()
                .contains("unknown field")
        );
        let bad = config("region: cn-north-4\nprojectId: p\nimageType: docker\n").unwrap();
        assert!(setup_error(&bad).contains("imageType"));
        let bad = config("region: cn-north-4\nprojectId: \"a/b\"\n").unwrap();
        assert!(setup_error(&bad).contains("projectId"));
    }

    #[test]
    fn missing_credentials_stop_construction_with_a_clear_message() {
        let c = config(
            "region: cn-north-4\nprojectId: p1\nauth: {akSk: {accessKey: {file: /nonexistent/ak}, secretKey: {env: VULNGATE_TEST_UNSET_SK}}}\n",
        )
        .unwrap();
        let err = setup_error(&c);
        assert!(
            err.contains("accessKey") && err.contains("/nonexistent/ak"),
            "{err}"
        );
    }
}
