//! The RPC-style OpenAPI client `cr` and `Sas` share: parameters in the query,
//! empty body, JSON answers, the vendor's error model, and retries of throttled
//! calls with exponential backoff and jitter, never past the caller's deadline.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::credentials::{self, CredentialProvider, Credentials, transport_text};
use super::error::{ApiError, RpcError, rpc_outcome_label};
use super::setup_error::ClientSetupError;
use super::{sign_v1, sign_v3};
use crate::cloud::query::{canonical_query, percent_encode};
use crate::config::alibaba::{ClientSettings, SignatureVersion, normalize_endpoint};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One API operation: its name, HTTP method and the RAM action that allows it
/// (named in permission errors).
#[derive(Debug)]
pub struct Api {
    pub action: &'static str,
    pub method: Method,
    pub ram_action: &'static str,
}

/// A signed request ready to send.
#[derive(Debug)]
pub struct SignedRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
}

pub struct RpcClient {
    http: reqwest::Client,
    base: url::Url,
    /// The `host` header as reqwest sends it (with the port when not the default).
    host: String,
    product: &'static str,
    version: &'static str,
    signature: SignatureVersion,
    credentials: Arc<dyn CredentialProvider>,
    timeout: Duration,
    retry_budget: Duration,
}

impl fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcClient")
            .field("endpoint", &self.base.as_str())
            .field("product", &self.product)
            .field("version", &self.version)
            .field("signature", &self.signature)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl RpcClient {
    /// `product` is the name in messages (`cr`, `Sas`), `version` the API version.
    pub fn new(
        product: &'static str,
        version: &'static str,
        settings: &ClientSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RpcClient, ClientSetupError> {
        let base = normalize_endpoint(&settings.endpoint).map_err(ClientSetupError::Endpoint)?;
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(ClientSetupError::NoHost(settings.endpoint.clone())),
        };
        let http = crate::crypto::http_client()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("vulngate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientSetupError::HttpClient)?;
        let credentials = credentials::from_config(&settings.credentials, env, http.clone())?;
        Ok(RpcClient {
            http,
            base,
            host,
            product,
            version,
            signature: settings.signature_version,
            credentials,
            timeout: settings.timeout,
            retry_budget: settings.retry_budget,
        })
    }

    /// Where credentials come from (`files`, `env`, `rrsa`).
    pub fn credential_source(&self) -> &'static str {
        self.credentials.source()
    }

    /// The deadline of a lookup that starts now: no retry is started past it.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.retry_budget
    }

    /// Signs one call. `params` are the operation's own parameters.
    pub fn sign(
        &self,
        api: &Api,
        params: &[(&str, String)],
        creds: &Credentials,
        now: OffsetDateTime,
        nonce: &str,
    ) -> SignedRequest {
        let mut query: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let date = super::timestamp(now);
        match self.signature {
            SignatureVersion::Acs3 => {
                let mut headers: Vec<(&'static str, String)> = vec![
                    ("host", self.host.clone()),
                    ("x-acs-action", api.action.to_string()),
                    ("x-acs-version", self.version.to_string()),
                    ("x-acs-date", date),
                    ("x-acs-signature-nonce", nonce.to_string()),
                    (
                        "x-acs-content-sha256",
                        sign_v3::EMPTY_BODY_SHA256.to_string(),
                    ),
                ];
                if let Some(token) = &creds.security_token {
                    headers.push(("x-acs-accesskey-id", creds.access_key_id.clone()));
                    headers.push(("x-acs-security-token", token.expose().to_string()));
                }
                let authorization = sign_v3::authorization(
                    api.method.as_str(),
                    &query,
                    &headers,
                    sign_v3::EMPTY_BODY_SHA256,
                    &creds.access_key_id,
                    creds.access_key_secret.expose(),
                );
                headers.push(("authorization", authorization));
                headers.push(("accept", "application/json".to_string()));
                // reqwest writes `host` itself from the URL; the value is the same.
                headers.retain(|(k, _)| *k != "host");
                SignedRequest {
                    url: format!("{}?{}", self.base, canonical_query(&query)),
                    headers,
                }
            }
            SignatureVersion::V1 => {
                query.extend(
                    [
                        ("Action", api.action.to_string()),
                        ("Version", self.version.to_string()),
                        ("Format", "JSON".to_string()),
                        ("AccessKeyId", creds.access_key_id.clone()),
                        ("SignatureMethod", "HMAC-SHA1".to_string()),
                        ("SignatureVersion", "1.0".to_string()),
                        ("SignatureNonce", nonce.to_string()),
                        ("Timestamp", date),
                    ]
                    .map(|(k, v)| (k.to_string(), v)),
                );
                if let Some(token) = &creds.security_token {
                    query.push(("SecurityToken".to_string(), token.expose().to_string()));
                }
                let signature = sign_v1::signature(
                    api.method.as_str(),
                    &query,
                    creds.access_key_secret.expose(),
                );
                SignedRequest {
                    url: format!(
                        "{}?{}&Signature={}",
                        self.base,
                        canonical_query(&query),
                        percent_encode(&signature)
                    ),
                    headers: vec![("accept", "application/json".to_string())],
                }
            }
        }
    }

    /// Calls an operation, retrying throttled attempts until `deadline`.
    pub async fn call(
        &self,
        api: &'static Api,
        params: &[(&str, String)],
        deadline: Instant,
    ) -> Result<Value, RpcError> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = self.call_once(api, params).await;
            tracing::debug!(
                product = self.product,
                action = api.action,
                attempt,
                outcome = rpc_outcome_label(&result),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "alibaba cloud call"
            );
            match result {
                Err(e) if e.is_retryable() => {
                    let hint = e.api().and_then(|a| a.retry_after);
                    let wait = backoff(attempt, hint);
                    if Instant::now() + wait >= deadline || attempt >= 10 {
                        return Err(RpcError::Exhausted {
                            last: Box::new(e),
                            attempts: attempt,
                        });
                    }
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once(&self, api: &Api, params: &[(&str, String)]) -> Result<Value, RpcError> {
        let creds = self
            .credentials
            .credentials()
            .await
            .map_err(RpcError::Credentials)?;
        let signed = self.sign(
            api,
            params,
            &creds,
            OffsetDateTime::now_utc(),
            &super::nonce(),
        );
        let transport = |e: &reqwest::Error| RpcError::Transport {
            product: self.product,
            action: api.action,
            message: transport_text(e),
        };
        let mut request = match api.method {
            Method::Get => self.http.get(&signed.url),
            Method::Post => self.http.post(&signed.url).body(Vec::<u8>::new()),
        };
        for (name, value) in &signed.headers {
            request = request.header(*name, value);
        }
        let response = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = response.status().as_u16();
        let retry_after = throttle_time_left(response.headers());
        let header_request_id = response
            .headers()
            .get("x-acs-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await.map_err(|e| transport(&e))?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        let text = |v: &Value, keys: &[&str]| {
            keys.iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str))
                .map(str::to_string)
        };
        let request_id = json
            .as_ref()
            .and_then(|j| text(j, &["RequestId", "requestId"]))
            .or(header_request_id);
        let api_error = |code: String, message: String, auth_action: Option<String>| ApiError {
            product: self.product,
            action: api.action,
            ram_action: api.ram_action,
            http_status: status,
            code,
            message,
            request_id: request_id.clone(),
            auth_action,
            retry_after,
        };
        match json {
            Some(j) if (200..300).contains(&status) => {
                if business_failure(&j) {
                    let code =
                        text(&j, &["Code", "code"]).unwrap_or_else(|| "IsSuccess=false".into());
                    let message = text(&j, &["Message", "message"]).unwrap_or_default();
                    return Err(RpcError::Api(api_error(code, message, None)));
                }
                Ok(j)
            }
            None if (200..300).contains(&status) => Err(RpcError::BadResponse {
                product: self.product,
                action: api.action,
                message: format!("HTTP {status} with a body that is not JSON"),
                request_id,
            }),
            Some(j) => {
                let code = text(&j, &["Code", "code"]).unwrap_or_default();
                let message = text(&j, &["Message", "message"]).unwrap_or_default();
                let auth_action = j
                    .get("AccessDeniedDetail")
                    .and_then(|d| text(d, &["AuthAction"]));
                Err(RpcError::Api(api_error(code, message, auth_action)))
            }
            None => {
                let snippet: String = String::from_utf8_lossy(&body).chars().take(200).collect();
                Err(RpcError::Api(api_error(String::new(), snippet, None)))
            }
        }
    }
}

/// ACR answers carry `IsSuccess` and `Code: "success"` even on HTTP 200; a false
/// `IsSuccess` or another code is a failure.
fn business_failure(j: &Value) -> bool {
    match j
        .get("IsSuccess")
        .or_else(|| j.get("Success"))
        .and_then(Value::as_bool)
    {
        Some(ok) => !ok,
        None => j
            .get("Code")
            .and_then(Value::as_str)
            .is_some_and(|c| !matches!(c.to_ascii_lowercase().as_str(), "success" | "200" | "ok")),
    }
}

/// `x-ratelimit-user-api: Limit:1,Remain:0,TimeLeft:2000,Reset:1234` -> 2 s.
fn throttle_time_left(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    ["x-ratelimit-user-api", "x-ratelimit-user"]
        .iter()
        .filter_map(|h| headers.get(*h)?.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| {
            part.trim()
                .strip_prefix("TimeLeft:")?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .max()
        .map(Duration::from_millis)
}

/// Exponential backoff (100 ms doubling, capped at 2 s) with jitter over its upper
/// half, or the service's own `TimeLeft` hint when it is longer.
pub(crate) fn backoff(attempt: u32, hint: Option<Duration>) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(5))
        .min(Duration::from_secs(2));
    let half = base / 2;
    let jitter_ms = super::random_u64() % (half.as_millis() as u64 + 1);
    let wait = half + Duration::from_millis(jitter_ms);
    match hint {
        Some(h) if h > wait => h.min(Duration::from_secs(10)),
        _ => wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::alibaba::CredentialsConfig;
    use crate::secret::Secret;

    static SUMMARY: Api = Api {
        action: "GetRepoTagScanSummary",
        method: Method::Post,
        ram_action: "cr:GetScanCount",
    };

    fn client(sig: SignatureVersion) -> RpcClient {
        let settings = ClientSettings {
            endpoint: "cr.cn-hangzhou.aliyuncs.com".into(),
            credentials: CredentialsConfig::default(),
            signature_version: sig,
            timeout: Duration::from_secs(1),
            retry_budget: Duration::from_secs(1),
        };
        let env = |k: &str| match k {
            "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("testid".to_string()),
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some("testsecret".to_string()),
            _ => None,
        };
        RpcClient::new("cr", "2018-12-01", &settings, &env).unwrap()
    }

    fn params() -> Vec<(&'static str, String)> {
        vec![
            ("InstanceId", "cri-xkx6vujuhay0abcd".into()),
            ("RepoId", "crr-xwvi3osiy4ffabcd".into()),
            ("Tag", "1.24".into()),
            (
                "Digest",
                "sha256:815386ebbe9a3490f38785ab11bda34ec8dacf4634af77b8912832d4f85dca04".into(),
            ),
        ]
    }

    fn creds(id: &str, secret: &str, token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: id.into(),
            access_key_secret: Secret::new(secret),
            security_token: token.map(Secret::new),
        }
    }

    #[test]
    fn v1_request_matches_the_derived_vector() {
        let c = client(SignatureVersion::V1);
        let now = time::macros::datetime!(2023-03-13 08:34:30 UTC);
        let r = c.sign(
            &SUMMARY,
            &params(),
            &creds("testid", "testsecret", None),
            now,
            "edb2b34af0af9a6d14deaf7c1a5315eb",
        );
        assert!(r.url.starts_with("https://cr.cn-hangzhou.aliyuncs.com/?AccessKeyId=testid&Action=GetRepoTagScanSummary&Digest=sha256%3A8153"), "{}", r.url);
        assert!(
            r.url
                .ends_with("&Signature=mxtsnBXz4BrNOq2evAv%2Flni7DLg%3D"),
            "{}",
            r.url
        );
        let r = c.sign(
            &SUMMARY,
            &params(),
            &creds("testid", "testsecret", Some("CAIS-test-token/+==")),
            now,
            "edb2b34af0af9a6d14deaf7c1a5315eb",
        );
        assert!(
            r.url.contains("SecurityToken=CAIS-test-token%2F%2B%3D%3D"),
            "{}",
            r.url
        );
        assert!(r.url.ends_with(&format!(
            "&Signature={}",
            percent_encode("p/tWPIoZaok/M4bpAA1hT/imvY0=")
        )));
    }

    #[test]
    fn acs3_request_matches_the_derived_vectors() {
        let c = client(SignatureVersion::Acs3);
        let now = time::macros::datetime!(2023-10-26 10:22:32 UTC);
        let nonce = "3156853299f313e23d1673dc12e1703d";
        let r = c.sign(
            &SUMMARY,
            &params(),
            &creds("YourAccessKeyId", "YourAccessKeySecret", None),
            now,
            nonce,
        );
        assert_eq!(
            r.url,
            "https://cr.cn-hangzhou.aliyuncs.com/?Digest=sha256%3A815386ebbe9a3490f38785ab11bda34ec8dacf4634af77b8912832d4f85dca04&InstanceId=cri-xkx6vujuhay0abcd&RepoId=crr-xwvi3osiy4ffabcd&Tag=1.24"
        );
        let auth = &r
            .headers
            .iter()
            .find(|(k, _)| *k == "authorization")
            .unwrap()
            .1;
        assert!(
            auth.ends_with(
                "Signature=5dd62a2fd56dfdc3d6287fc56e8fe329021673e6bbb8e40112d4b5ddb3a67427"
            ),
            "{auth}"
        );
        let r = c.sign(
            &SUMMARY,
            &params(),
            &creds(
                "STS.YourAccessKeyId",
                "YourAccessKeySecret",
                Some("CAIS-test-token/+=="),
            ),
            now,
            nonce,
        );
        let auth = &r
            .headers
            .iter()
            .find(|(k, _)| *k == "authorization")
            .unwrap()
            .1;
        assert!(
            auth.ends_with(
                "Signature=9c4239ab1b0697b601224d3b12399b527cf26d0b482cf2ef96d3665b392f6a38"
            ),
            "{auth}"
        );
    }

    #[test]
    fn backoff_grows_and_respects_hints() {
        for attempt in 1..8 {
            let b = backoff(attempt, None);
            let base = Duration::from_millis(100 * (1 << (attempt - 1).min(5)))
                .min(Duration::from_secs(2));
            assert!(b >= base / 2 && b <= base, "{attempt}: {b:?}");
        }
        assert_eq!(
            backoff(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn throttle_header_is_parsed() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "x-ratelimit-user-api",
            "Limit:1,Remain:0,TimeLeft:2000,Reset:1234".parse().unwrap(),
        );
        assert_eq!(throttle_time_left(&h), Some(Duration::from_millis(2000)));
    }
}
