//! `scanner: {acr: ...}` and `scanner: {sas: ...}`: one [`AlibabaConfig`] of the keys
//! they share (where to send requests, how to sign them, where the credentials come
//! from, the time limits and how many scans they may ask for) and each product's own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{ConfigError, EndpointError};

/// Which request signature to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureVersion {
    /// ACS3-HMAC-SHA256 in headers (the vendor's current default).
    #[default]
    Acs3,
    /// HMAC-SHA1 in the query string (`SignatureVersion=1.0`), for old gateways.
    V1,
}

/// Where the access key comes from. Tried in this order: key files (a mounted
/// Secret), access key environment variables (with an optional STS security
/// token), then RRSA (the pod's OIDC token exchanged with STS).
/// Secret values are never written inline in the config.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsConfig {
    /// File holding the AccessKeyId (e.g. a mounted Secret key). Re-read on each call.
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    /// File holding the AccessKeySecret.
    #[serde(default)]
    pub access_key_secret_file: Option<PathBuf>,
    /// File holding an STS SecurityToken that goes with the key in the two files above.
    #[serde(default)]
    pub security_token_file: Option<PathBuf>,
    /// Environment variable names (defaults: `ALIBABA_CLOUD_ACCESS_KEY_ID`,
    /// `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `ALIBABA_CLOUD_SECURITY_TOKEN`).
    #[serde(default)]
    pub access_key_id_env: Option<String>,
    #[serde(default)]
    pub access_key_secret_env: Option<String>,
    #[serde(default)]
    pub security_token_env: Option<String>,
    /// RAM Roles for Service Accounts; `rrsa: {}` takes everything from the
    /// variables ack-pod-identity-webhook injects.
    #[serde(default)]
    pub rrsa: Option<RrsaConfig>,
}

/// RRSA: AssumeRoleWithOIDC with the pod's projected service-account token.
/// Each field falls back to the variable ack-pod-identity-webhook injects.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RrsaConfig {
    /// Falls back to `ALIBABA_CLOUD_ROLE_ARN`.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// Falls back to `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`.
    #[serde(default)]
    pub oidc_provider_arn: Option<String>,
    /// Falls back to `ALIBABA_CLOUD_OIDC_TOKEN_FILE`. Re-read at every refresh.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// `host` or `scheme://host:port`. Falls back to `ALIBABA_CLOUD_STS_ENDPOINT`,
    /// then `sts.<ALIBABA_CLOUD_STS_REGION>.aliyuncs.com`, then `sts.aliyuncs.com`.
    #[serde(default)]
    pub sts_endpoint: Option<String>,
    #[serde(default)]
    pub role_session_name: Option<String>,
    /// 900..=43200; default 3600.
    #[serde(default)]
    pub duration_seconds: Option<u32>,
}

/// Transport settings of one Alibaba Cloud product client.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub endpoint: String,
    pub credentials: CredentialsConfig,
    pub signature_version: SignatureVersion,
    pub timeout: Duration,
    pub retry_budget: Duration,
}

impl CredentialsConfig {
    /// Structural checks that need no environment.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.access_key_id_file.is_some() != self.access_key_secret_file.is_some() {
            return Err(ConfigError::invalid(
                format!("{at}.credentials"),
                "accessKeyIdFile and accessKeySecretFile go together",
            ));
        }
        if self.security_token_file.is_some() && self.access_key_id_file.is_none() {
            return Err(ConfigError::invalid(
                format!("{at}.credentials.securityTokenFile"),
                "needs accessKeyIdFile and accessKeySecretFile",
            ));
        }
        if let Some(d) = self.rrsa.as_ref().and_then(|r| r.duration_seconds) {
            if !(900..=43200).contains(&d) {
                return Err(ConfigError::invalid(
                    format!("{at}.credentials.rrsa.durationSeconds"),
                    format!("{d} is outside 900..=43200"),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn rebase_paths(&mut self, base: &Path) {
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.access_key_id_file.as_mut().map(rebase);
        self.access_key_secret_file.as_mut().map(rebase);
        self.security_token_file.as_mut().map(rebase);
        if let Some(rrsa) = self.rrsa.as_mut() {
            rrsa.token_file.as_mut().map(rebase);
        }
    }
}

/// Checks an endpoint override: `host[:port]` or `http(s)://host[:port]`.
pub(crate) fn validate_endpoint(at: &str, endpoint: &str) -> Result<(), ConfigError> {
    normalize_endpoint(endpoint)
        .map(|_| ())
        .map_err(|source| ConfigError::Endpoint {
            key: at.to_string(),
            source,
        })
}

/// `cr.cn-hangzhou.aliyuncs.com` -> `https://cr.cn-hangzhou.aliyuncs.com/`.
pub(crate) fn normalize_endpoint(endpoint: &str) -> Result<url::Url, EndpointError> {
    let text = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    };
    let endpoint = || endpoint.to_string();
    let url = url::Url::parse(&text).map_err(|source| EndpointError::Parse {
        endpoint: endpoint(),
        source,
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(EndpointError::NotHttp {
            endpoint: endpoint(),
        });
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(EndpointError::PathOrQuery {
            endpoint: endpoint(),
        });
    }
    Ok(url)
}

pub(crate) fn default_timeout() -> Duration {
    Duration::from_secs(3)
}

pub(crate) fn default_retry_budget() -> Duration {
    Duration::from_secs(3)
}

/// `scanRequests:` of an `acr` or `sas` scanner: at most `max` scan requests per `per`
/// (a burst of `max`, refilled evenly over `per`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScanRequestLimit {
    #[serde(default = "default_max")]
    pub max: u32,
    #[serde(default = "default_per", with = "humantime_serde")]
    pub per: Duration,
}

impl Default for ScanRequestLimit {
    fn default() -> Self {
        ScanRequestLimit {
            max: default_max(),
            per: default_per(),
        }
    }
}

// Security Center runs at most 10 scan tasks at once by default.
fn default_max() -> u32 {
    10
}
fn default_per() -> Duration {
    Duration::from_secs(60)
}

impl ScanRequestLimit {
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.max == 0 {
            return Err(ConfigError::invalid(
                format!("{at}.scanRequests.max"),
                "must be at least 1 (turn scanOnMissing off to ask for none)",
            ));
        }
        if self.per.is_zero() || self.per > Duration::from_secs(86_400) {
            return Err(ConfigError::invalid(
                format!("{at}.scanRequests.per"),
                "must be between 1s and 24h",
            ));
        }
        Ok(())
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} scan request(s) per {}",
            self.max,
            humantime::format_duration(self.per)
        )
    }
}

/// `scanner: {acr: {...}}`: Container Registry EE.
pub type AcrConfig = AlibabaConfig<AcrKeys>;

/// `scanner: {sas: {...}}`: Security Center.
pub type SasConfig = AlibabaConfig<SasKeys>;

/// The settings `acr` and `sas` share: where to send requests, how to sign them,
/// where the credentials come from, the time limits and how many scans they may ask
/// for; the product's own keys (`P`) are written beside them.
///
/// serde's `deny_unknown_fields` does not combine with `flatten`, so a key that neither
/// these settings nor the product know is refused by [`NoOtherKeys`], with its name.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlibabaConfig<P> {
    /// The region: of the ACR EE instance (endpoint `cr.<region>.aliyuncs.com`), or of
    /// the Security Center account (`cn-*` regions are served by
    /// `tds.cn-shanghai.aliyuncs.com`, all others by `tds.ap-southeast-1.aliyuncs.com`).
    pub region: String,
    /// The Container Registry instance (`cri-...`) of the images; found from the host
    /// (acr) or left out of requests (sas) when absent.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Endpoint override (`host` or `http(s)://host:port`).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub credentials: CredentialsConfig,
    /// `acs3` (default) or `v1`.
    #[serde(default)]
    pub signature_version: SignatureVersion,
    /// Ask for a scan of an image that was never scanned (acr: needs the scan-task
    /// permission; sas: uses scan quota).
    #[serde(default)]
    pub scan_on_missing: bool,
    /// How many scans `scanOnMissing` asks for at most.
    #[serde(default)]
    pub scan_requests: ScanRequestLimit,
    /// Time limit of one HTTP request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Throttled calls are retried until this long after the lookup started.
    #[serde(default = "default_retry_budget", with = "humantime_serde")]
    pub retry_budget: Duration,
    /// The keys only this product has.
    #[serde(flatten)]
    pub product: P,
    #[serde(flatten, skip_serializing)]
    _no_other_keys: NoOtherKeys,
}

/// The keys only `acr` has.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcrKeys {
    /// Read each finished scan's vulnerability list (ListRepoTagScanResult, paged)
    /// for `count: fixable` and `allow-cves`.
    #[serde(default = "super::default_vulnerability_details")]
    pub vulnerability_details: bool,
}

/// The keys only `sas` has.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SasKeys {
    /// Region of the images' registry (`RepoRegionId`); taken from an
    /// `*.<region>.cr.aliyuncs.com` host when absent.
    #[serde(default)]
    pub repo_region: Option<String>,
    /// Count the system vulnerabilities an operator marked as handled too (as `hss`
    /// counts), not only the unhandled ones.
    #[serde(default)]
    pub count_handled: bool,
}

/// What differs between the products' clients.
pub trait AlibabaProduct {
    /// The endpoint when the config names none.
    fn default_endpoint(region: &str) -> String;
}

impl AlibabaProduct for AcrKeys {
    fn default_endpoint(region: &str) -> String {
        format!("cr.{region}.aliyuncs.com")
    }
}

impl AlibabaProduct for SasKeys {
    fn default_endpoint(region: &str) -> String {
        let endpoint = if region.starts_with("cn-") {
            "tds.cn-shanghai.aliyuncs.com"
        } else {
            "tds.ap-southeast-1.aliyuncs.com"
        };
        endpoint.to_string()
    }
}

impl<P: AlibabaProduct> AlibabaConfig<P> {
    /// Where and how the scanner (and `vulngate precheck`) calls the product.
    pub(crate) fn client_settings(&self) -> ClientSettings {
        ClientSettings {
            endpoint: self
                .endpoint
                .clone()
                .unwrap_or_else(|| P::default_endpoint(self.region.trim())),
            credentials: self.credentials.clone(),
            signature_version: self.signature_version,
            timeout: self.timeout,
            retry_budget: self.retry_budget,
        }
    }
}

impl<P> AlibabaConfig<P> {
    /// Checks the settings; `at` is the config path for messages.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.region.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.region"),
                "must not be empty",
            ));
        }
        if let Some(e) = self.endpoint.as_deref() {
            validate_endpoint(&format!("{at}.endpoint"), e)?;
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid(
                format!("{at}.timeout"),
                "must be greater than zero",
            ));
        }
        self.credentials.validate(at)?;
        self.scan_requests.validate(at)
    }

    pub(crate) fn rebase_paths(&mut self, base: &Path) {
        self.credentials.rebase_paths(base);
    }
}

/// The keys of a flattened map that no field took: there must be none. Flattened
/// last, it sees only the keys the settings and the product's keys left.
#[derive(Debug, Clone)]
struct NoOtherKeys;

impl<'de> Deserialize<'de> for NoOtherKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Refuse;
        impl<'de> serde::de::Visitor<'de> for Refuse {
            type Value = NoOtherKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("no other keys")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<NoOtherKeys, A::Error> {
                match map.next_key::<String>()? {
                    None => Ok(NoOtherKeys),
                    Some(key) => Err(serde::de::Error::custom(format_args!(
                        "unknown field `{key}`"
                    ))),
                }
            }
        }
        deserializer.deserialize_map(Refuse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            normalize_endpoint("cr.cn-hangzhou.aliyuncs.com")
                .unwrap()
                .as_str(),
            "https://cr.cn-hangzhou.aliyuncs.com/"
        );
        assert_eq!(
            normalize_endpoint("http://127.0.0.1:9000")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9000/"
        );
        assert!(normalize_endpoint("ftp://x").is_err());
        assert!(normalize_endpoint("http://x/path").is_err());
    }

    #[test]
    fn half_a_key_pair_is_an_error() {
        let c = CredentialsConfig {
            access_key_id_file: Some("id".into()),
            ..Default::default()
        };
        assert!(
            c.validate("x")
                .unwrap_err()
                .to_string()
                .contains("go together")
        );
    }

    #[test]
    fn config_keys() {
        let c: AcrConfig = serde_saphyr::from_str(
            "region: cn-hangzhou\ninstanceId: cri-1\nsignatureVersion: v1\nscanOnMissing: true\n\
             timeout: 2s\nretryBudget: 1s\ncredentials: {accessKeyIdFile: id, accessKeySecretFile: s}\n",
        )
        .unwrap();
        assert_eq!(c.signature_version, SignatureVersion::V1);
        assert!(c.scan_on_missing);
        assert!(c.product.vulnerability_details, "on unless switched off");
        let off: AcrConfig =
            serde_saphyr::from_str("region: cn-hangzhou\nvulnerabilityDetails: false\n").unwrap();
        assert!(!off.product.vulnerability_details);
        assert_eq!(c.client_settings().endpoint, "cr.cn-hangzhou.aliyuncs.com");
        let err =
            serde_saphyr::from_str::<AcrConfig>("region: x\naccessKeySecret: oops\n").unwrap_err();
        assert!(err.to_string().contains("accessKeySecret"), "{err}");
    }
}
